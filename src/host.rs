//! Host facts the VMM depends on: can /dev/kvm be opened, which KVM capabilities it has, is it
//! PVM (software virtualization), which cgroup hierarchy and namespaces are there for
//! containers. `vmm doctor` reports them; the VMM's start-up check uses the same functions.

use std::fs;
use std::io;
use std::ops::RangeInclusive;
use std::path::Path;

use kvm_ioctls::{Cap, Kvm};

/// The only KVM API version there has ever been (`KVM_GET_API_VERSION`).
pub const KVM_API_VERSION: i32 = 12;

/// KVM capabilities the VMM requires, with the kernel's names for them. All are part of
/// every x86_64 KVM since Linux 3.x (and of PVM); a host lacking one is too old or unusual.
pub const REQUIRED_CAPS: &[(Cap, &str)] = &[
    (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
    (Cap::Ioeventfd, "KVM_CAP_IOEVENTFD"),
    (Cap::Irqfd, "KVM_CAP_IRQFD"),
    (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
    (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
    (Cap::SetIdentityMapAddr, "KVM_CAP_SET_IDENTITY_MAP_ADDR"),
    (Cap::Pit2, "KVM_CAP_PIT2"),
    (Cap::PitState2, "KVM_CAP_PIT_STATE2"),
    (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
    (Cap::MpState, "KVM_CAP_MP_STATE"),
    (Cap::AdjustClock, "KVM_CAP_ADJUST_CLOCK"),
    (Cap::VcpuEvents, "KVM_CAP_VCPU_EVENTS"),
    (Cap::Debugregs, "KVM_CAP_DEBUGREGS"),
    (Cap::Xcrs, "KVM_CAP_XCRS"),
];

/// Names of the [`REQUIRED_CAPS`] this KVM does not report (`KVM_CHECK_EXTENSION` ≤ 0).
pub fn missing_caps(kvm: &Kvm) -> Vec<&'static str> {
    REQUIRED_CAPS
        .iter()
        .filter(|(cap, _)| !kvm.check_extension(*cap))
        .map(|(_, name)| *name)
        .collect()
}

/// Where the PVM module appears when it is loaded.
pub const PVM_MODULE_PATH: &str = "/sys/module/kvm_pvm";

/// PVM's own MSRs (`MSR_PVM_*`, "KVM" in ASCII then 0xf0..0xff). VMX and SVM hosts never
/// list these; the classic KVM paravirt MSRs (kvmclock etc.) are 0x4b564d00..0x4b564d07.
pub const PVM_MSR_RANGE: RangeInclusive<u32> = 0x4b56_4df0..=0x4b56_4dff;

/// Whether this host's KVM is PVM (`kvm_pvm`), a software virtualization whose instruction
/// emulator runs ring-0 guest code. `/sys/module/kvm_pvm` is the reliable sign; the MSR
/// index list is checked too, for hosts where /sys/module is hidden (e.g. in a container).
pub fn pvm_detected(kvm: Option<&Kvm>) -> bool {
    if Path::new(PVM_MODULE_PATH).exists() {
        return true;
    }
    kvm.and_then(|kvm| kvm.get_msr_index_list().ok())
        .is_some_and(|list| msrs_indicate_pvm(list.as_slice()))
}

/// Whether a `KVM_GET_MSR_INDEX_LIST` result contains a PVM MSR.
pub fn msrs_indicate_pvm(msrs: &[u32]) -> bool {
    msrs.iter().any(|msr| PVM_MSR_RANGE.contains(msr))
}

/// Why /dev/kvm cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KvmOpenError {
    #[error(
        "/dev/kvm does not exist: load kvm_intel or kvm_amd, or enable virtualization in firmware"
    )]
    NotFound,
    #[error(
        "/dev/kvm exists but no KVM module serves it: load kvm_intel or kvm_amd, or enable \
         virtualization in firmware"
    )]
    NoDevice,
    #[error(
        "permission denied opening /dev/kvm: add your user to the kvm group \
         (`usermod -aG kvm $USER`, then log in again) or run as root"
    )]
    PermissionDenied,
    #[error("/dev/kvm reports KVM API version {found}, but this VMM needs version {expected}")]
    ApiVersion { found: i32, expected: i32 },
    #[error("cannot open /dev/kvm: {0}")]
    Other(io::Error),
}

/// Opens /dev/kvm (close-on-exec) and checks its API version.
pub fn open_kvm() -> Result<Kvm, KvmOpenError> {
    let kvm = Kvm::new().map_err(|e| classify_open_error(io::Error::from(e)))?;
    let found = kvm.get_api_version();
    if found != KVM_API_VERSION {
        return Err(KvmOpenError::ApiVersion {
            found,
            expected: KVM_API_VERSION,
        });
    }
    Ok(kvm)
}

/// Maps the error from `open("/dev/kvm")` to what the user should do about it.
fn classify_open_error(err: io::Error) -> KvmOpenError {
    match err.raw_os_error() {
        Some(libc::ENOENT) => KvmOpenError::NotFound,
        Some(libc::ENODEV | libc::ENXIO) => KvmOpenError::NoDevice,
        Some(libc::EACCES | libc::EPERM) => KvmOpenError::PermissionDenied,
        _ => KvmOpenError::Other(err),
    }
}

/// Which cgroup hierarchy the host mounts: the runtime's own detection.
pub use runtime::cgroup::{detect_mode as cgroup_mode, CgroupMode};

/// The namespaces a container needs, by their /proc/self/ns names.
pub const NAMESPACES: &[&str] = &["pid", "mnt", "uts", "ipc", "net", "user", "cgroup"];

/// Which of [`NAMESPACES`] this kernel offers. A user namespace also needs
/// /proc/sys/user/max_user_namespaces > 0 (0 means it is disabled).
pub fn namespaces_available() -> Vec<(&'static str, bool)> {
    let max_user_ns = fs::read_to_string("/proc/sys/user/max_user_namespaces").ok();
    NAMESPACES
        .iter()
        .map(|&name| {
            let mut ok = Path::new("/proc/self/ns").join(name).exists();
            if name == "user" {
                ok &= user_namespaces_enabled(max_user_ns.as_deref());
            }
            (name, ok)
        })
        .collect()
}

/// Reads /proc/sys/user/max_user_namespaces; a kernel without that file does not limit them.
fn user_namespaces_enabled(max_user_namespaces: Option<&str>) -> bool {
    match max_user_namespaces {
        Some(text) => text.trim().parse::<u64>().is_ok_and(|n| n > 0),
        None => true,
    }
}

/// Hardware virtualization flags ("vmx" for Intel VT-x, "svm" for AMD-V) in /proc/cpuinfo;
/// None if /proc/cpuinfo cannot be read. Empty inside most VMs, and on PVM hosts.
pub fn hw_virt_flags() -> Option<Vec<&'static str>> {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .map(|text| cpuinfo_virt_flags(&text))
}

/// The virtualization flags on the first `flags` line of a /proc/cpuinfo text.
pub fn cpuinfo_virt_flags(cpuinfo: &str) -> Vec<&'static str> {
    let Some(flags) = cpuinfo.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key.trim() == "flags").then_some(value)
    }) else {
        return Vec::new();
    };
    let words: Vec<&str> = flags.split_whitespace().collect();
    ["vmx", "svm"]
        .into_iter()
        .filter(|flag| words.contains(flag))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pvm_msr_range_is_detected_and_kvm_paravirt_msrs_are_not() {
        assert!(msrs_indicate_pvm(&[0x174, 0x4b56_4df1]));
        assert!(!msrs_indicate_pvm(&[0x4b56_4d00, 0x4b56_4d07, 0xc000_0080]));
        assert!(!msrs_indicate_pvm(&[]));
    }

    #[test]
    fn cpuinfo_flags_find_vmx_and_svm_only_as_whole_words() {
        let intel = "processor\t: 0\nflags\t\t: fpu vme vmx sse2\nbugs\t\t: x\n";
        assert_eq!(cpuinfo_virt_flags(intel), vec!["vmx"]);
        let amd = "flags\t\t: fpu svm lm\n";
        assert_eq!(cpuinfo_virt_flags(amd), vec!["svm"]);
        let none = "flags\t\t: fpu vmxx nosvm\nvmx flags\t: ept\n";
        assert!(cpuinfo_virt_flags(none).is_empty());
    }

    #[test]
    fn user_namespaces_disabled_when_max_is_zero() {
        assert!(!user_namespaces_enabled(Some("0\n")));
        assert!(user_namespaces_enabled(Some("96362\n")));
        assert!(user_namespaces_enabled(None));
    }

    #[test]
    fn open_errors_map_to_advice() {
        let err = |errno| classify_open_error(io::Error::from_raw_os_error(errno));
        assert!(matches!(err(libc::ENOENT), KvmOpenError::NotFound));
        assert!(matches!(err(libc::EACCES), KvmOpenError::PermissionDenied));
        assert!(matches!(err(libc::ENXIO), KvmOpenError::NoDevice));
        let other = err(libc::EMFILE).to_string();
        assert!(other.starts_with("cannot open /dev/kvm: "), "{other}");
        assert!(other.contains("Too many open files"), "{other}");
    }

    #[test]
    fn api_version_error_names_both_versions() {
        let msg = KvmOpenError::ApiVersion {
            found: 11,
            expected: 12,
        }
        .to_string();
        assert!(msg.contains("11") && msg.contains("12"), "{msg}");
    }

    #[test]
    fn required_caps_have_unique_kernel_names() {
        let mut names: Vec<_> = REQUIRED_CAPS.iter().map(|(_, n)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), REQUIRED_CAPS.len());
        assert!(names.iter().all(|n| n.starts_with("KVM_CAP_")));
    }
}
