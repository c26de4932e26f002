//! Which system calls each kind of VMM thread may make (x86_64, glibc), found by tracing
//! every thread of the VMM through the device and boot tests (`strace -f`), and kept as
//! small as that allows. Where an argument decides whether a call is harmless (ioctl
//! numbers, socket families), only the values the VMM uses pass.

use std::collections::BTreeMap;

use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};

/// Syscall number → the rules one of which its arguments must match (none: any).
pub type Rules = BTreeMap<i64, Vec<SeccompRule>>;

/// Every thread: its own end (and the report of a disallowed call), memory, locks,
/// signal masks, and what Rust's runtime does around them.
const EVERY_THREAD: &[i64] = &[
    libc::SYS_write, // the SIGSYS report and other messages on stderr
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_futex,
    libc::SYS_munmap,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_sched_yield,
    libc::SYS_gettid,
    libc::SYS_getrandom,
    libc::SYS_clock_gettime,
    libc::SYS_close,
    // glibc's allocator sizes its arena count, once per process and from whichever thread
    // makes its ninth arena, by the CPUs this process may run on. (Its other such call,
    // an openat, is refused ahead of these rules: see super::compile.)
    libc::SYS_sched_getaffinity,
];

/// A device worker: waiting on its fds, reading queue eventfds, writing interrupt ones.
const EVERY_WORKER: &[i64] = &[
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    libc::SYS_read,
    libc::SYS_timerfd_settime,
    libc::SYS_timerfd_gettime,
    libc::SYS_fcntl,
];

/// The kinds of thread the VMM runs while its guest runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadKind {
    /// A vCPU: KVM_RUN, and the device models its exits reach (they activate devices,
    /// whose workers the spawner starts).
    Vcpu,
    /// The event loop: console input to the serial port, the stop event.
    Events,
    /// Starts device workers for the vCPUs (see [`super::spawner`]).
    Spawner,
    Blk,
    Net,
    Vsock,
    Balloon,
    Rng,
    /// The API socket's server (`vmm --api-sock`): accepts and serves its clients,
    /// configures the VM before it starts and acts on it after.
    Api,
}

impl ThreadKind {
    pub const WORKERS: [ThreadKind; 5] = [
        ThreadKind::Blk,
        ThreadKind::Net,
        ThreadKind::Vsock,
        ThreadKind::Balloon,
        ThreadKind::Rng,
    ];

    /// How many kinds there are: [`ThreadKind::index`] is below it.
    pub const COUNT: usize = 9;

    /// A number of its own for each kind, below [`ThreadKind::COUNT`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The kind of the device worker thread named `name` (devices name their workers
    /// as [`ThreadKind::name`] says).
    pub fn of_worker(name: &str) -> Option<ThreadKind> {
        Self::WORKERS.into_iter().find(|kind| kind.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            ThreadKind::Vcpu => "vcpu",
            ThreadKind::Events => "vmm-events",
            ThreadKind::Spawner => "vmm-spawner",
            ThreadKind::Blk => "vmm-virtio-blk",
            ThreadKind::Net => "vmm-virtio-net",
            ThreadKind::Vsock => "vmm-vsock",
            ThreadKind::Balloon => "vmm-balloon",
            ThreadKind::Rng => "vmm-virtio-rng",
            ThreadKind::Api => "vmm-api",
        }
    }
}

/// The rules of a thread of `kind`.
pub fn rules(kind: ThreadKind) -> Rules {
    let mut rules = allow(EVERY_THREAD);
    // A panic, on any thread: the hook gives the terminal its settings back, and the
    // process aborts (raise SIGABRT).
    rules.insert(
        libc::SYS_ioctl,
        ioctl_numbers(&[libc::TCGETS, libc::TCSETS, libc::TCSETSW]),
    );
    add(&mut rules, &[libc::SYS_getpid, libc::SYS_rt_sigaction]);
    // Memory, but never executable: nothing the VMM maps once the guest runs holds code,
    // so a thread taken over cannot map some in.
    for nr in [libc::SYS_mmap, libc::SYS_mprotect] {
        rules.insert(nr, vec![no_exec_rule()]);
    }
    rules.insert(libc::SYS_tgkill, vec![rule(&[(2, libc::SIGABRT as u64)])]);
    match kind {
        ThreadKind::Vcpu => {
            add(
                &mut rules,
                &[
                    libc::SYS_read,
                    // Activating a device makes its worker's epoll and stop eventfd here
                    // (so a bad fd is the activation's error), and a timer for a limiter
                    // or the balloon's statistics, which it arms.
                    libc::SYS_epoll_create1,
                    libc::SYS_epoll_ctl,
                    libc::SYS_eventfd2,
                    libc::SYS_timerfd_create,
                    libc::SYS_timerfd_settime,
                    libc::SYS_fcntl,
                ],
            );
            rules = union(
                rules,
                Rules::from([(
                    libc::SYS_ioctl,
                    ioctl_numbers(
                        &[
                            kvm_bindings_ioctl::KVM_RUN,
                            kvm_bindings_ioctl::KVM_GET_REGS,
                            kvm_bindings_ioctl::KVM_GET_SREGS,
                        ]
                        .into_iter()
                        // A paused vCPU reads its own state for a snapshot
                        // (`snapshot::vcpu_state::save`); reads only, nothing is set.
                        .chain(kvm_bindings_ioctl::VCPU_STATE_READS)
                        .collect::<Vec<_>>(),
                    ),
                )]),
            );
        }
        ThreadKind::Events => add(
            &mut rules,
            &[
                libc::SYS_read,
                libc::SYS_epoll_create1,
                libc::SYS_epoll_ctl,
                libc::SYS_epoll_wait,
                libc::SYS_epoll_pwait,
                libc::SYS_eventfd2,
                libc::SYS_fcntl,
                // Input from a file is read whole, sized first.
                libc::SYS_statx,
                libc::SYS_fstat,
                libc::SYS_lseek,
            ],
        ),
        ThreadKind::Spawner => {
            // It starts threads that then confine themselves further: it may do what any
            // of them may, and what starting a thread takes.
            for worker in ThreadKind::WORKERS {
                rules = union(rules, super::rules::rules(worker));
            }
            add(
                &mut rules,
                &[
                    libc::SYS_clone3,
                    libc::SYS_clone,
                    libc::SYS_set_robust_list,
                    libc::SYS_rseq,
                    libc::SYS_prctl,
                    // Each worker installs its own filter on top.
                    libc::SYS_seccomp,
                ],
            );
        }
        ThreadKind::Blk => add(
            &mut rules,
            &[
                libc::SYS_pread64,
                libc::SYS_pwrite64,
                libc::SYS_preadv,
                libc::SYS_pwritev,
                libc::SYS_fsync,
                libc::SYS_fdatasync,
                libc::SYS_lseek,
            ],
        ),
        ThreadKind::Net => add(&mut rules, &[libc::SYS_readv, libc::SYS_writev]),
        ThreadKind::Vsock => {
            add(
                &mut rules,
                &[
                    libc::SYS_accept4,
                    libc::SYS_connect,
                    libc::SYS_recvfrom,
                    libc::SYS_recvmsg,
                    libc::SYS_sendto,
                    libc::SYS_sendmsg,
                    libc::SYS_shutdown,
                    libc::SYS_readv,
                    libc::SYS_writev,
                ],
            );
            // Connections to the host's unix sockets only.
            rules = union(
                rules,
                Rules::from([
                    (libc::SYS_socket, vec![rule(&[(0, libc::AF_UNIX as u64)])]),
                    (libc::SYS_ioctl, ioctl_numbers(&[libc::FIONBIO])),
                ]),
            );
        }
        ThreadKind::Balloon | ThreadKind::Rng => {}
        ThreadKind::Api => {
            add(
                &mut rules,
                &[
                    // Its clients: accepted and served without blocking, on one epoll
                    // (std's socket reads and writes are recvfrom and sendto).
                    libc::SYS_accept4,
                    libc::SYS_recvfrom,
                    libc::SYS_sendto,
                    libc::SYS_read,
                    libc::SYS_epoll_create1,
                    libc::SYS_epoll_ctl,
                    libc::SYS_epoll_wait,
                    libc::SYS_epoll_pwait,
                    libc::SYS_fcntl,
                    // PUT /logger and PUT /metrics open their file or FIFO; the logger
                    // moves stderr onto it.
                    libc::SYS_openat,
                    libc::SYS_dup2,
                    libc::SYS_dup3,
                ],
            );
            // PATCH /vm and PUT /snapshot/create (`vm::control`): kicking the vCPUs out
            // of KVM_RUN to park them, reading the VM's irqchip, PIT and clock, and
            // writing the state and memory files (temporaries renamed into place).
            if let Some(tgkill) = rules.get_mut(&libc::SYS_tgkill) {
                tgkill.push(rule(&[(2, super::super::signals::kick_signal() as u64)]));
            }
            add(
                &mut rules,
                &[
                    libc::SYS_ftruncate,
                    libc::SYS_pwrite64,
                    libc::SYS_rename,
                    libc::SYS_unlink,
                ],
            );
            // A snapshot stops each device (its worker joins, through the spawner's
            // eventfd) and a resume starts it again: activation makes the worker's epoll
            // and eventfds here, and a limiter's or the balloon's statistics timer.
            add(
                &mut rules,
                &[
                    libc::SYS_eventfd2,
                    libc::SYS_timerfd_create,
                    libc::SYS_timerfd_settime,
                ],
            );
            // PATCH /drives after boot (`vm::disk_update`): the new image is opened here,
            // its type read from the open fd (std's metadata is statx, fstat where statx
            // is missing) and its size found by seeking to its end. The blk worker only
            // takes the disk's lock, which every thread may.
            add(
                &mut rules,
                &[
                    libc::SYS_statx,
                    libc::SYS_fstat,
                    libc::SYS_newfstatat,
                    libc::SYS_lseek,
                ],
            );
            // Making a client's socket non-blocking.
            rules = union(
                rules,
                Rules::from([(
                    libc::SYS_ioctl,
                    ioctl_numbers(&[
                        libc::FIONBIO,
                        kvm_bindings_ioctl::KVM_GET_IRQCHIP,
                        kvm_bindings_ioctl::KVM_GET_PIT2,
                        kvm_bindings_ioctl::KVM_GET_CLOCK,
                    ]),
                )]),
            );
        }
    }
    if ThreadKind::WORKERS.contains(&kind) {
        add(&mut rules, EVERY_WORKER);
    }
    rules
}

/// The ioctl numbers the VMM's vCPUs use once the guest runs (kvm-ioctls' numbers, as
/// `_IO*` encodes them: checked against the kernel's in the tests).
mod kvm_bindings_ioctl {
    pub const KVM_RUN: u64 = 0xae80;
    pub const KVM_GET_REGS: u64 = 0x8090_ae81;
    pub const KVM_GET_SREGS: u64 = 0x8138_ae83;
    /// The VM's own state, read for a snapshot (`snapshot::vm_state::save`).
    pub const KVM_GET_IRQCHIP: u64 = 0xc208_ae62;
    pub const KVM_GET_PIT2: u64 = 0x8070_ae9f;
    pub const KVM_GET_CLOCK: u64 = 0x8030_ae7c;
    /// KVM_GET_MP_STATE, _FPU, _XSAVE, _XSAVE2, _XCRS, _DEBUGREGS, _LAPIC, _CPUID2, _MSRS,
    /// _VCPU_EVENTS and _TSC_KHZ.
    pub const VCPU_STATE_READS: [u64; 11] = [
        0x8004_ae98,
        0x81a0_ae8c,
        0x9000_aea4,
        0x9000_aecf,
        0x8188_aea6,
        0x8080_aea1,
        0x8400_ae8e,
        0xc008_ae91,
        0xc008_ae88,
        0x8040_ae9f,
        0xaea3,
    ];
}

fn allow(syscalls: &[i64]) -> Rules {
    syscalls.iter().map(|&nr| (nr, Vec::new())).collect()
}

fn add(rules: &mut Rules, syscalls: &[i64]) {
    for &nr in syscalls {
        rules.insert(nr, Vec::new());
    }
}

/// Allows what either allows: a call either allows whatever its arguments stays so.
fn union(mut a: Rules, b: Rules) -> Rules {
    for (nr, rules) in b {
        match a.get_mut(&nr) {
            None => {
                a.insert(nr, rules);
            }
            Some(existing) if existing.is_empty() => {}
            Some(existing) => {
                if rules.is_empty() {
                    existing.clear();
                } else {
                    existing.extend(rules);
                }
            }
        }
    }
    a
}

/// One rule per ioctl request number: argument 1 equals it.
fn ioctl_numbers(numbers: &[impl Copy + Into<u64>]) -> Vec<SeccompRule> {
    numbers.iter().map(|&n| rule(&[(1, n.into())])).collect()
}

/// The protection argument (2 of mmap and mprotect) has no PROT_EXEC.
#[allow(clippy::expect_used)] // valid by construction: argument index 2
fn no_exec_rule() -> SeccompRule {
    let condition = SeccompCondition::new(
        2,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64),
        0,
    )
    .expect("a valid seccomp condition");
    SeccompRule::new(vec![condition]).expect("a valid seccomp rule")
}

/// A rule whose conditions are (argument index, value) equalities. The conditions are
/// built from constants: they are valid, which the tests check by building every filter.
#[allow(clippy::expect_used)] // valid by construction: argument indices below 6, one or more
fn rule(equalities: &[(u8, u64)]) -> SeccompRule {
    let conditions = equalities
        .iter()
        .map(|&(arg, value)| {
            SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
                .expect("a valid seccomp condition")
        })
        .collect();
    SeccompRule::new(conditions).expect("a valid seccomp rule")
}
