use super::*;
use std::sync::Arc;

const ALL_KINDS: [ThreadKind; 9] = [
    ThreadKind::Vcpu,
    ThreadKind::Events,
    ThreadKind::Spawner,
    ThreadKind::Blk,
    ThreadKind::Net,
    ThreadKind::Vsock,
    ThreadKind::Balloon,
    ThreadKind::Rng,
    ThreadKind::Api,
];

#[test]
fn every_thread_kind_has_a_filter_that_builds() {
    for kind in ALL_KINDS {
        let program = compile(kind).unwrap();
        assert!(!program.is_empty(), "{kind:?}");
    }
}

#[test]
fn every_worker_name_a_device_gives_has_a_kind() {
    for kind in ThreadKind::WORKERS {
        assert_eq!(ThreadKind::of_worker(kind.name()), Some(kind));
    }
    assert_eq!(ThreadKind::of_worker("test-worker"), None);
}

#[test]
fn the_spawner_may_do_whatever_a_worker_may() {
    let spawner = rules::rules(ThreadKind::Spawner);
    for kind in ThreadKind::WORKERS {
        for (nr, rules) in rules::rules(kind) {
            let theirs = spawner
                .get(&nr)
                .unwrap_or_else(|| panic!("{kind:?}'s syscall {nr} is not the spawner's"));
            assert!(
                theirs.is_empty() || theirs.len() >= rules.len(),
                "{kind:?}'s syscall {nr} is narrower in the spawner"
            );
        }
    }
}

#[test]
fn the_kvm_ioctl_numbers_are_the_kernels() {
    use kvm_bindings::*;
    // _IO(KVMIO, nr), _IOR(KVMIO, nr, T), _IOWR(KVMIO, nr, T) as the kernel encodes them.
    let io = |nr: u64| (0xae << 8) | nr;
    let ior = |nr: u64, size: usize| (2u64 << 30) | ((size as u64) << 16) | io(nr);
    let iowr = |nr: u64, size: usize| (3u64 << 30) | ((size as u64) << 16) | io(nr);
    let size = std::mem::size_of::<kvm_regs>;
    let vcpu = rules::rules(ThreadKind::Vcpu);
    let ioctl_rules = &vcpu[&libc::SYS_ioctl];
    let expected = [
        io(0x80),                                          // KVM_RUN
        ior(0x81, size()),                                 // KVM_GET_REGS
        ior(0x83, std::mem::size_of::<kvm_sregs>()),       // KVM_GET_SREGS
        ior(0x98, std::mem::size_of::<kvm_mp_state>()),    // KVM_GET_MP_STATE
        ior(0x8c, std::mem::size_of::<kvm_fpu>()),         // KVM_GET_FPU
        ior(0xa4, std::mem::size_of::<kvm_xsave>()),       // KVM_GET_XSAVE
        ior(0xcf, std::mem::size_of::<kvm_xsave>()),       // KVM_GET_XSAVE2
        ior(0xa6, std::mem::size_of::<kvm_xcrs>()),        // KVM_GET_XCRS
        ior(0xa1, std::mem::size_of::<kvm_debugregs>()),   // KVM_GET_DEBUGREGS
        ior(0x8e, std::mem::size_of::<kvm_lapic_state>()), // KVM_GET_LAPIC
        iowr(0x91, std::mem::size_of::<kvm_cpuid2>()),     // KVM_GET_CPUID2
        iowr(0x88, std::mem::size_of::<kvm_msrs>()),       // KVM_GET_MSRS
        ior(0x9f, std::mem::size_of::<kvm_vcpu_events>()), // KVM_GET_VCPU_EVENTS
        io(0xa3),                                          // KVM_GET_TSC_KHZ
    ];
    // KVM's, and the terminal's three (a panic gives it its settings back).
    assert_eq!(ioctl_rules.len(), expected.len() + 3);
    let rendered = format!("{ioctl_rules:?}");
    for n in expected {
        assert!(
            rendered.contains(&format!("value: {n}")),
            "{n:#x} not in {rendered}"
        );
    }
}

#[test]
fn the_api_threads_vm_ioctl_numbers_are_the_kernels() {
    use kvm_bindings::*;
    let io = |nr: u64| (0xae << 8) | nr;
    let ior = |nr: u64, size: usize| (2u64 << 30) | ((size as u64) << 16) | io(nr);
    let iowr = |nr: u64, size: usize| (3u64 << 30) | ((size as u64) << 16) | io(nr);
    let api = rules::rules(ThreadKind::Api);
    let rendered = format!("{:?}", api[&libc::SYS_ioctl]);
    for n in [
        iowr(0x62, std::mem::size_of::<kvm_irqchip>()), // KVM_GET_IRQCHIP
        ior(0x9f, std::mem::size_of::<kvm_pit_state2>()), // KVM_GET_PIT2
        ior(0x7c, std::mem::size_of::<kvm_clock_data>()), // KVM_GET_CLOCK
    ] {
        assert!(
            rendered.contains(&format!("value: {n}")),
            "{n:#x} not in {rendered}"
        );
    }
}

#[test]
fn report_numbers_are_written_in_full() {
    assert_eq!(report::format_for_test(0), "0");
    assert_eq!(report::format_for_test(41), "41");
    assert_eq!(report::format_for_test(-1), "-1");
    assert_eq!(report::format_for_test(i32::MIN), "-2147483648");
}

/// The status of a test child that could not confine itself.
const NOT_CONFINED: i32 = 90;

/// A child process confines itself as a thread of `kind` does, then makes `syscall`
/// (arguments all zero): its exit status (the call's errno when it failed, 0 when it
/// did not) and what it wrote on stderr.
fn in_confined_child(kind: ThreadKind, syscall: i64) -> (i32, String) {
    let program = compile(kind).unwrap();
    // Here, not in the child: it allocates.
    report::install_panic_hook();
    let mut fds = [0; 2];
    // SAFETY: a writable array of two ints.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the child only makes async-signal-safe calls (dup2, prctl, seccomp through
    // apply_filter on a program built before the fork, the syscall, _exit): it never
    // allocates or takes a lock another thread of this test process might hold.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            libc::dup2(fds[1], 2);
            if confine_with(kind, &program).is_err() {
                libc::_exit(NOT_CONFINED);
            }
            if libc::syscall(syscall, 0, 0, 0, 0, 0, 0) < 0 {
                libc::_exit(*libc::__errno_location());
            }
            libc::_exit(edge::exit_code::SUCCESS.into());
        }
    }
    // SAFETY: closing our copy of the write end, which nothing else uses.
    unsafe { libc::close(fds[1]) };
    let mut out = Vec::new();
    // SAFETY: the read end is ours alone; the File closes it.
    let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) };
    std::io::Read::read_to_end(&mut file, &mut out).unwrap();
    let mut status = 0;
    // SAFETY: our child, waited for once.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status), "status {status:#x}");
    (
        libc::WEXITSTATUS(status),
        String::from_utf8_lossy(&out).into_owned(),
    )
}

#[test]
fn a_disallowed_call_stops_the_vmm_with_a_report_naming_thread_and_call() {
    for kind in ALL_KINDS {
        // execve: nothing in the VMM runs another program once the guest runs.
        let (status, stderr) = in_confined_child(kind, libc::SYS_execve);
        assert_eq!(status, report::EXIT_STATUS, "{kind:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "thread {} made system call {}",
                kind.name(),
                libc::SYS_execve
            )),
            "{kind:?}: {stderr}"
        );
    }
}

#[test]
fn an_allowed_call_goes_through() {
    // getrandom(NULL, 0, 0) is allowed everywhere and harmless.
    let (status, stderr) = in_confined_child(ThreadKind::Vcpu, libc::SYS_getrandom);
    assert_eq!(status, 0, "{stderr}");
}

#[test]
fn no_thread_may_map_executable_memory() {
    for kind in [ThreadKind::Vcpu, ThreadKind::Spawner, ThreadKind::Blk] {
        let program = compile(kind).unwrap();
        report::install_panic_hook();
        // SAFETY: as in `in_confined_child`: only async-signal-safe calls in the child.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: see above; the mappings are the child's own and never used.
            unsafe {
                if confine_with(kind, &program).is_err() {
                    libc::_exit(NOT_CONFINED);
                }
                let rw = libc::PROT_READ | libc::PROT_WRITE;
                let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
                let page = libc::mmap(std::ptr::null_mut(), 4096, rw, flags, -1, 0);
                if page == libc::MAP_FAILED {
                    libc::_exit(NOT_CONFINED);
                }
                // Allowed: read-write. Not: executable, which traps.
                libc::mprotect(page, 4096, libc::PROT_READ | libc::PROT_EXEC);
                libc::_exit(edge::exit_code::SUCCESS.into());
            }
        }
        let mut status = 0;
        // SAFETY: our child, waited for once.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "{kind:?}: status {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), report::EXIT_STATUS, "{kind:?}");
    }
}

#[test]
fn openat_fails_with_eacces_on_every_thread_but_the_api_instead_of_stopping_the_vmm() {
    // glibc's free() may open /proc/sys/vm/overcommit_memory on any thread (see compile).
    for kind in ALL_KINDS {
        let (status, stderr) = in_confined_child(kind, libc::SYS_openat);
        // The API thread opens its logger, metrics and snapshot files: openat(0, NULL)
        // reaches the kernel, which faults on the null path.
        let expected = match kind {
            ThreadKind::Api => libc::EFAULT,
            _ => libc::EACCES,
        };
        assert_eq!(status, expected, "{kind:?}: {stderr}");
    }
}

#[test]
fn every_thread_may_read_its_cpu_affinity_for_the_allocator() {
    for kind in ALL_KINDS {
        // sched_getaffinity(0, 0, NULL): allowed, and refused by the kernel as EINVAL.
        let (status, stderr) = in_confined_child(kind, libc::SYS_sched_getaffinity);
        assert_eq!(status, libc::EINVAL, "{kind:?}: {stderr}");
    }
}

#[test]
fn a_vcpu_may_not_make_sockets_and_a_vsock_worker_only_unix_sockets() {
    let (status, _) = in_confined_child(ThreadKind::Vcpu, libc::SYS_socket);
    assert_eq!(status, report::EXIT_STATUS);
    // socket(AF_UNSPEC = 0, ...) is not AF_UNIX.
    let (status, _) = in_confined_child(ThreadKind::Vsock, libc::SYS_socket);
    assert_eq!(status, report::EXIT_STATUS);
}

#[test]
fn the_api_thread_may_open_type_and_size_a_disk_image_to_swap_it() {
    // With all-zero arguments each call reaches the kernel and fails there (or, lseek on
    // fd 0, succeeds): none traps.
    for syscall in [
        libc::SYS_openat,
        libc::SYS_fcntl,
        libc::SYS_statx,
        libc::SYS_fstat,
        libc::SYS_newfstatat,
        libc::SYS_lseek,
    ] {
        let (status, stderr) = in_confined_child(ThreadKind::Api, syscall);
        assert_ne!(status, report::EXIT_STATUS, "{syscall}: {stderr}");
        assert_ne!(status, NOT_CONFINED, "{syscall}: {stderr}");
    }
}

#[test]
fn a_blk_worker_may_not_stat_files_as_a_disk_swap_needs_none_there() {
    // A swap opens and sizes the new image on the API thread; the worker only takes the
    // disk's lock (futex).
    for syscall in [libc::SYS_statx, libc::SYS_newfstatat] {
        let (status, _) = in_confined_child(ThreadKind::Blk, syscall);
        assert_eq!(status, report::EXIT_STATUS, "{syscall}");
    }
}

/// The program as it was before the front: seccompiler's alone, for every rule (with the
/// openat refusal in front where the kind refuses it).
fn seccompiler_only(kind: ThreadKind) -> BpfProgram {
    let rules = rules::rules(kind);
    let refuses_openat = !rules.contains_key(&libc::SYS_openat);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Trap,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .unwrap();
    let program: BpfProgram = filter.try_into().unwrap();
    match refuses_openat {
        true => refusing_openat(program),
        false => program,
    }
}

/// Each argument-filtered rule of `kind` as (call, [(argument, value)]), read from the
/// rules' Debug text (seccompiler keeps their fields private).
fn filtered_cases(kind: ThreadKind) -> Vec<(u32, Vec<(usize, u64)>)> {
    let number_after = |text: &str, key: &str| -> Vec<u64> {
        text.split(key)
            .skip(1)
            .map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().unwrap()
            })
            .collect()
    };
    let mut cases = Vec::new();
    for (nr, chain) in rules::rules(kind) {
        for rule in chain {
            let text = format!("{rule:?}");
            let indices = number_after(&text, "arg_index: ");
            let values = number_after(&text, "value: ");
            assert_eq!(indices.len(), values.len(), "{text}");
            let pairs = indices.iter().map(|&i| i as usize).zip(values).collect();
            cases.push((nr as u32, pairs));
        }
    }
    cases
}

/// Calls that probe every branch: each number of 0..1024 with zero arguments, in x86_64,
/// as x32 and as i386; and each argument-filtered rule's own arguments, and each of them
/// changed in turn.
fn probe_calls(kind: ThreadKind) -> Vec<bpf_eval::Call> {
    const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
    let call = |nr, arch, args| bpf_eval::Call { nr, arch, args };
    let mut calls = Vec::new();
    for nr in (0..1024).chain([u32::MAX, 0x7fff_ffff]) {
        calls.push(call(nr, front::AUDIT_ARCH_X86_64, [0; 6]));
        calls.push(call(nr | 0x4000_0000, front::AUDIT_ARCH_X86_64, [0; 6]));
        calls.push(call(nr, AUDIT_ARCH_I386, [0; 6]));
    }
    for (nr, pairs) in filtered_cases(kind) {
        let mut args = [0u64; 6];
        for &(i, v) in &pairs {
            args[i] = v;
        }
        calls.push(call(nr, front::AUDIT_ARCH_X86_64, args));
        calls.push(call(nr | 0x4000_0000, front::AUDIT_ARCH_X86_64, args));
        for slot in 0..6 {
            for changed in [
                args[slot].wrapping_add(1),
                args[slot] ^ (1 << 32),
                libc::PROT_EXEC as u64 | args[slot],
                u64::MAX,
            ] {
                let mut other = args;
                other[slot] = changed;
                calls.push(call(nr, front::AUDIT_ARCH_X86_64, other));
            }
        }
    }
    calls
}

#[test]
fn the_front_answers_every_call_as_seccompilers_program_alone_does() {
    for kind in ALL_KINDS {
        let (ours, reference) = (compile(kind).unwrap(), seccompiler_only(kind));
        let calls = probe_calls(kind);
        let mut allowed = 0;
        for call in &calls {
            let (got, want) = (bpf_eval::run(&ours, call), bpf_eval::run(&reference, call));
            assert_eq!(got, want, "{kind:?}: {call:?}");
            allowed += usize::from(got == libc::SECCOMP_RET_ALLOW);
        }
        // The probes reach allowed calls and argument-filtered ones, not only refusals.
        assert!(allowed > 10, "{kind:?}: only {allowed} allowed");
    }
}

#[test]
fn the_front_kills_other_architectures_and_traps_x32_calls() {
    const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
    for kind in ALL_KINDS {
        let program = compile(kind).unwrap();
        // write (1) is allowed everywhere in x86_64; not as i386's exit (1) nor as x32.
        let write = |nr, arch| bpf_eval::Call {
            nr,
            arch,
            args: [0; 6],
        };
        let x86_64 = write(libc::SYS_write as u32, front::AUDIT_ARCH_X86_64);
        assert_eq!(bpf_eval::run(&program, &x86_64), libc::SECCOMP_RET_ALLOW);
        let i386 = write(libc::SYS_write as u32, AUDIT_ARCH_I386);
        assert_eq!(
            bpf_eval::run(&program, &i386),
            libc::SECCOMP_RET_KILL_PROCESS,
            "{kind:?}"
        );
        let x32 = write(
            libc::SYS_write as u32 | 0x4000_0000,
            front::AUDIT_ARCH_X86_64,
        );
        assert_eq!(
            bpf_eval::run(&program, &x32),
            libc::SECCOMP_RET_TRAP,
            "{kind:?}"
        );
    }
}

#[test]
fn front_shortens_every_filter() {
    for kind in ALL_KINDS {
        let (ours, reference) = (compile(kind).unwrap(), seccompiler_only(kind));
        assert!(
            ours.len() * 3 < reference.len() * 2,
            "{kind:?}: {} instructions, {} without the front",
            ours.len(),
            reference.len()
        );
    }
}

#[test]
fn each_kinds_program_is_compiled_once_and_shared() {
    for kind in ALL_KINDS {
        let first = program(kind).unwrap();
        let second = program(kind).unwrap();
        assert!(Arc::ptr_eq(&first, &second), "{kind:?}");
        assert_eq!(*first, compile(kind).unwrap(), "{kind:?}");
    }
}

#[test]
fn an_x32_call_is_stopped_by_the_installed_filter() {
    // write as x32 (the bit set): the kernel hands it to the filter as x86_64 arch.
    let (status, stderr) = in_confined_child(ThreadKind::Vcpu, libc::SYS_write | 0x4000_0000);
    assert_eq!(status, report::EXIT_STATUS, "{stderr}");
}
