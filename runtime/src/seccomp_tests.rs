//! Tests of [`super`]: what the BPF programs look like, the OCI conversion, and what the
//! filters do to real calls in a forked child that installs them as the init does.

use super::super::defaults;
use super::super::sys::linux::LinuxSyscall;
use super::super::sys::Syscall;
use super::*;

const ENOSYS: SeccompVerdict = SeccompVerdict::Errno(libc::ENOSYS as u32);
const EPERM: SeccompVerdict = SeccompVerdict::Errno(libc::EPERM as u32);

fn rule(names: &[&str], action: SeccompVerdict, args: &[SeccompArg]) -> SeccompRule {
    SeccompRule {
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        action,
        args: args.to_vec(),
    }
}

fn arg(index: u8, op: SeccompOp, value: u64, value_two: u64) -> SeccompArg {
    SeccompArg {
        index,
        value,
        value_two,
        op,
    }
}

/// Default ENOSYS, as Podman's; what the child of [`call_under`] needs is allowed.
fn allow_list(mut rules: Vec<SeccompRule>) -> SeccompProfile {
    rules.insert(
        0,
        rule(
            &["getpid", "exit_group", "seccomp"],
            SeccompVerdict::Allow,
            &[],
        ),
    );
    SeccompProfile {
        default: ENOSYS,
        rules,
    }
}

/// The actions a program can answer with (its RET instructions).
fn answers(program: &[BpfInstruction]) -> BTreeSet<u32> {
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    program
        .iter()
        .filter(|i| i.code == ret)
        .map(|i| i.k)
        .collect()
}

fn without_guard(mut programs: Vec<Vec<BpfInstruction>>) -> Vec<Vec<BpfInstruction>> {
    if abi_guard().is_some() {
        programs.remove(0);
    }
    programs
}

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;
const RET_ERRNO: u32 = libc::SECCOMP_RET_ERRNO;

#[test]
fn default_profile_is_one_filter_answering_eperm() {
    let programs = without_guard(compile(&defaults::seccomp_profile()).unwrap());
    assert_eq!(programs.len(), 1);
    assert!(programs[0].len() > 20, "{} instructions", programs[0].len());
    let eperm = RET_ERRNO | libc::EPERM as u32;
    assert_eq!(answers(&programs[0]), BTreeSet::from([ALLOW, KILL, eperm]));
}

#[test]
fn profile_with_argument_conditions_compiles() {
    let profile = allow_list(vec![
        rule(
            &["personality"],
            SeccompVerdict::Allow,
            &[arg(0, SeccompOp::Equal, 0xffff_ffff, 0)],
        ),
        rule(
            &["clone"],
            SeccompVerdict::Allow,
            &[arg(0, SeccompOp::MaskedEqual, 0x7e02_0000, 0)],
        ),
        rule(
            &["socket"],
            SeccompVerdict::Allow,
            &[arg(0, SeccompOp::NotEqual, 40, 0)],
        ),
    ]);
    let programs = without_guard(compile(&profile).unwrap());
    assert_eq!(programs.len(), 1, "one action besides the default");
}

#[test]
fn each_other_action_gets_a_filter_and_the_base_comes_last() {
    let profile = allow_list(vec![
        rule(&["getppid"], EPERM, &[]),
        rule(&["sched_yield"], SeccompVerdict::KillProcess, &[]),
        rule(&["getuid"], EPERM, &[]),
    ]);
    let programs = without_guard(compile(&profile).unwrap());
    let answers: Vec<_> = programs.iter().map(|p| answers(p)).collect();
    let eperm = RET_ERRNO | libc::EPERM as u32;
    let enosys = RET_ERRNO | libc::ENOSYS as u32;
    assert_eq!(
        answers,
        [
            BTreeSet::from([ALLOW, KILL]),
            BTreeSet::from([ALLOW, KILL, eperm]),
            BTreeSet::from([ALLOW, KILL, enosys]),
        ],
        "kill filter, errno filter (first rule first reversed), base"
    );
}

#[test]
fn rules_with_the_default_action_add_no_filter() {
    let profile = allow_list(vec![rule(&["getuid"], ENOSYS, &[])]);
    assert_eq!(without_guard(compile(&profile).unwrap()).len(), 1);
}

#[test]
fn profile_allowing_everything_needs_no_filter() {
    let profile = SeccompProfile {
        default: SeccompVerdict::Allow,
        rules: vec![rule(&["getpid"], SeccompVerdict::Allow, &[])],
    };
    assert!(compile(&profile).unwrap().is_empty());
}

#[test]
fn unknown_syscall_names_are_left_out() {
    let known = allow_list(vec![rule(&["reboot"], EPERM, &[])]);
    let mut with_unknown = known.clone();
    with_unknown.rules[1].names.push("no_such_syscall".into());
    with_unknown
        .rules
        .push(rule(&["s390_runtime_instr"], EPERM, &[]));
    assert_eq!(compile(&with_unknown).unwrap(), compile(&known).unwrap());
}

#[test]
fn action_filter_with_only_unknown_names_is_left_out() {
    let profile = allow_list(vec![rule(&["no_such_syscall"], EPERM, &[])]);
    assert_eq!(without_guard(compile(&profile).unwrap()).len(), 1);
}

#[test]
fn filter_refusing_seccomp_is_installed_last() {
    let profile = SeccompProfile {
        default: SeccompVerdict::Allow,
        rules: vec![
            rule(&["seccomp"], EPERM, &[]),
            rule(&["reboot"], SeccompVerdict::KillProcess, &[]),
        ],
    };
    let programs = without_guard(compile(&profile).unwrap());
    let eperm = RET_ERRNO | libc::EPERM as u32;
    assert!(answers(programs.last().unwrap()).contains(&eperm));
}

#[test]
fn profile_refusing_seccomp_in_two_filters_is_unsupported() {
    let conditional = [arg(0, SeccompOp::Equal, 0, 0)];
    let profile = SeccompProfile {
        default: ENOSYS,
        rules: vec![rule(&["seccomp"], EPERM, &conditional)],
    };
    let err = compile(&profile).unwrap_err();
    assert!(matches!(err, ContainerError::Unsupported(_)), "{err}");
}

#[test]
fn argument_of_32_bits_compares_as_dword_unless_the_value_is_wider() {
    let narrow = arg(0, SeccompOp::NotEqual, 40, 0);
    let wide = arg(0, SeccompOp::Equal, 1 << 32, 0);
    assert_eq!(width("socket", &narrow), "dword");
    assert_eq!(width("socket", &wide), "qword");
    assert_eq!(width("clone", &narrow), "qword");
}

// OCI conversion.

fn oci(json: &str) -> Result<SeccompProfile> {
    profile_from_oci(&serde_json::from_str(json).unwrap())
}

#[test]
fn oci_kill_is_kill_thread_as_in_libseccomp() {
    let p = oci(r#"{"defaultAction": "SCMP_ACT_KILL"}"#).unwrap();
    assert_eq!(p.default, SeccompVerdict::KillThread);
}

#[test]
fn oci_errno_without_errno_ret_is_eperm() {
    let p = oci(r#"{"defaultAction": "SCMP_ACT_ERRNO"}"#).unwrap();
    assert_eq!(p.default, EPERM);
}

#[test]
fn oci_errno_above_4095_is_invalid() {
    let err = oci(r#"{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}"#);
    assert!(matches!(err, Err(ContainerError::InvalidValue { .. })));
}

#[test]
fn oci_notify_and_trace_are_unsupported() {
    for action in ["SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE"] {
        let json = format!(
            r#"{{"defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{{"names": ["getpid"], "action": "{action}"}}]}}"#
        );
        let err = oci(&json).unwrap_err();
        assert!(err.to_string().contains(action), "{err}");
    }
}

#[test]
fn oci_listener_path_is_unsupported() {
    let err = oci(r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent"}"#);
    assert!(matches!(err, Err(ContainerError::Unsupported(_))));
}

#[cfg(target_arch = "x86_64")]
#[test]
fn oci_architecture_of_another_machine_is_unsupported() {
    let ok = r#"{"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]}"#;
    assert!(oci(ok).is_ok());
    let err = oci(&ok.replace("SCMP_ARCH_X32", "SCMP_ARCH_AARCH64")).unwrap_err();
    assert!(err.to_string().contains("SCMP_ARCH_AARCH64"), "{err}");
}

#[test]
fn oci_known_flags_are_accepted() {
    let json = r#"{"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"]}"#;
    assert!(oci(json).is_ok());
}

#[test]
fn oci_conditions_on_one_argument_become_separate_rules() {
    let p = oci(r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]}"#)
    .unwrap();
    let values: Vec<Vec<u64>> = p
        .rules
        .iter()
        .map(|r| r.args.iter().map(|a| a.value).collect())
        .collect();
    assert_eq!(values, [[0], [8]]);
}

#[test]
fn oci_argument_index_above_5_is_invalid() {
    let err = oci(r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [
            {"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]}"#);
    assert!(matches!(err, Err(ContainerError::InvalidValue { .. })));
}

// Behaviour: the filters installed in a forked child, as the init installs them.

/// How a child that installed the filters and made one call ended.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The call returned a non-negative value.
    Ran,
    /// The call failed with this errno.
    Failed(i32),
    /// A signal (SIGSYS for a kill action) ended the child.
    Killed(i32),
}

/// The child's exit status when it could not install the filters (no errno is 200).
const INSTALL_FAILED: i32 = 200;

fn call_under(profile: &SeccompProfile, call: fn() -> libc::c_long) -> Outcome {
    let programs = compile(profile).unwrap();
    // SAFETY: sigemptyset only writes the set it is given.
    let sys = LinuxSyscall::new(unsafe {
        let mut set = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        set
    });
    // SAFETY: the child only makes system calls and `_exit`s: it allocates nothing and
    // takes no lock another thread of the test may hold.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        child(&sys, &programs, call);
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` outlives the call.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid, "waitpid: {}", std::io::Error::last_os_error());
    if libc::WIFSIGNALED(status) {
        return Outcome::Killed(libc::WTERMSIG(status));
    }
    match libc::WEXITSTATUS(status) {
        0 => Outcome::Ran,
        INSTALL_FAILED => panic!("the child could not install the filters"),
        errno => Outcome::Failed(errno),
    }
}

fn child(sys: &LinuxSyscall, programs: &[Vec<BpfInstruction>], call: fn() -> libc::c_long) -> ! {
    let installed =
        sys.set_no_new_privs().is_ok() && programs.iter().all(|p| sys.apply_seccomp(p).is_ok());
    let code = if !installed {
        INSTALL_FAILED
    } else if call() >= 0 {
        0
    } else {
        std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(INSTALL_FAILED)
    };
    // SAFETY: ends the forked child without running the test harness's exit handlers.
    unsafe { libc::_exit(code) }
}

fn getpid() -> libc::c_long {
    // SAFETY: no arguments.
    unsafe { libc::syscall(libc::SYS_getpid) }
}

fn getppid() -> libc::c_long {
    // SAFETY: no arguments.
    unsafe { libc::syscall(libc::SYS_getppid) }
}

fn sched_yield() -> libc::c_long {
    // SAFETY: no arguments.
    unsafe { libc::syscall(libc::SYS_sched_yield) }
}

fn personality(persona: u64) -> libc::c_long {
    // SAFETY: personality takes an integer; 0xffffffff only reads the persona, and the
    // child ends right after the call.
    unsafe { libc::syscall(libc::SYS_personality, persona) }
}

fn umask(mask: u64) -> libc::c_long {
    // SAFETY: umask takes an integer and cannot fail.
    unsafe { libc::syscall(libc::SYS_umask, mask) }
}

fn socket(domain: u64) -> libc::c_long {
    // SAFETY: socket takes integers; the child's exit closes the descriptor.
    unsafe { libc::syscall(libc::SYS_socket, domain, libc::SOCK_STREAM, 0) }
}

#[test]
fn allowed_syscall_runs() {
    assert_eq!(call_under(&allow_list(vec![]), getpid), Outcome::Ran);
}

#[test]
fn unlisted_syscall_gets_the_default_errno() {
    assert_eq!(
        call_under(&allow_list(vec![]), getppid),
        Outcome::Failed(libc::ENOSYS)
    );
}

#[test]
fn errno_rule_wins_over_the_default_errno() {
    let profile = allow_list(vec![rule(&["getppid"], EPERM, &[])]);
    assert_eq!(call_under(&profile, getppid), Outcome::Failed(libc::EPERM));
}

#[test]
fn errno_rule_wins_over_a_kill_default() {
    let mut profile = allow_list(vec![rule(&["getppid"], EPERM, &[])]);
    profile.default = SeccompVerdict::KillProcess;
    assert_eq!(call_under(&profile, getppid), Outcome::Failed(libc::EPERM));
}

#[test]
fn kill_rule_kills_the_process() {
    let profile = allow_list(vec![rule(
        &["sched_yield"],
        SeccompVerdict::KillProcess,
        &[],
    )]);
    assert_eq!(
        call_under(&profile, sched_yield),
        Outcome::Killed(libc::SIGSYS)
    );
}

#[test]
fn conditional_allow_holds_only_when_its_condition_does() {
    let query = arg(0, SeccompOp::Equal, 0xffff_ffff, 0);
    let profile = allow_list(vec![rule(
        &["personality"],
        SeccompVerdict::Allow,
        &[query],
    )]);
    assert_eq!(
        call_under(&profile, || personality(0xffff_ffff)),
        Outcome::Ran
    );
    assert_eq!(
        call_under(&profile, || personality(0)),
        Outcome::Failed(libc::ENOSYS)
    );
}

#[test]
fn masked_equal_compares_the_bits_of_the_mask() {
    let group_bits_are_2 = arg(0, SeccompOp::MaskedEqual, 0o070, 0o020);
    let profile = allow_list(vec![rule(
        &["umask"],
        SeccompVerdict::Allow,
        &[group_bits_are_2],
    )]);
    assert_eq!(call_under(&profile, || umask(0o027)), Outcome::Ran);
    assert_eq!(
        call_under(&profile, || umask(0o077)),
        Outcome::Failed(libc::ENOSYS)
    );
}

#[test]
fn unconditional_rule_is_not_hidden_by_a_conditional_one() {
    let profile = allow_list(vec![
        rule(
            &["umask"],
            SeccompVerdict::Allow,
            &[arg(0, SeccompOp::Equal, 0o22, 0)],
        ),
        rule(&["umask"], SeccompVerdict::Allow, &[]),
    ]);
    assert_eq!(call_under(&profile, || umask(0o077)), Outcome::Ran);
}

#[test]
fn stricter_rule_wins_where_rules_overlap() {
    let profile = allow_list(vec![
        rule(&["umask"], SeccompVerdict::Allow, &[]),
        rule(&["umask"], EPERM, &[arg(0, SeccompOp::Equal, 0o077, 0)]),
    ]);
    assert_eq!(call_under(&profile, || umask(0o022)), Outcome::Ran);
    assert_eq!(
        call_under(&profile, || umask(0o077)),
        Outcome::Failed(libc::EPERM)
    );
}

#[test]
fn socket_domain_compares_the_32_bits_the_kernel_reads() {
    let not_vsock = arg(0, SeccompOp::NotEqual, libc::AF_VSOCK as u64, 0);
    let profile = allow_list(vec![rule(&["socket"], SeccompVerdict::Allow, &[not_vsock])]);
    assert_eq!(
        call_under(&profile, || socket(libc::AF_UNIX as u64)),
        Outcome::Ran
    );
    const VSOCK_WITH_HIGH_BITS: u64 = (1 << 32) | libc::AF_VSOCK as u64;
    assert_eq!(
        call_under(&profile, || socket(VSOCK_WITH_HIGH_BITS)),
        Outcome::Failed(libc::ENOSYS)
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x32_syscall_is_killed_even_under_an_allow_default() {
    fn x32_getpid() -> libc::c_long {
        // SAFETY: getpid in the x32 numbering takes no arguments.
        unsafe { libc::syscall(0x4000_0000 | libc::SYS_getpid) }
    }
    assert_eq!(
        call_under(&defaults::seccomp_profile(), x32_getpid),
        Outcome::Killed(libc::SIGSYS)
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn i386_syscall_is_killed() {
    fn i386_getpid() -> libc::c_long {
        let ret: i32;
        // SAFETY: `int 0x80` with eax = 20 is getpid in the 32-bit ABI; it takes no
        // arguments and touches no memory. The kernel clobbers only eax.
        unsafe {
            std::arch::asm!("int 0x80", inlateout("eax") 20 => ret, options(nostack));
        }
        libc::c_long::from(ret)
    }
    assert_eq!(
        call_under(&defaults::seccomp_profile(), i386_getpid),
        Outcome::Killed(libc::SIGSYS)
    );
}
