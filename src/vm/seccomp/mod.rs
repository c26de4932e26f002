//! seccomp filters on the VMM's threads, one allowlist per kind of thread (Firecracker's
//! model): each vCPU, the event loop, each device worker, and the spawner that starts the
//! workers. A thread confines itself once it is set up and before it handles anything
//! from the guest: a vCPU before its first KVM_RUN, a worker before its first event. A
//! disallowed call stops the whole VMM with a report naming the thread and the call
//! ([`report`]). `--no-seccomp` turns it off, for debugging.
//!
//! Not confined: the thread that built the VM. It handles nothing from the guest: it waits
//! for the event loop's end, then stops the vCPUs and reports, and goes on with its
//! caller's work (the next VM of `vmm compare`, `vmm run`'s workload). The loader thread
//! has ended before the first vCPU runs.

mod front;
mod report;
pub mod rules;
mod spawner;

use std::sync::{Arc, OnceLock};

use seccompiler::{sock_filter, BpfProgram, SeccompAction, SeccompFilter, TargetArch};

pub use rules::ThreadKind;
pub use spawner::start_spawner;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("building the seccomp filter of the {kind} threads: {source}")]
    Build {
        kind: &'static str,
        source: seccompiler::BackendError,
    },
    #[error("installing the seccomp filter of thread {kind}: {source}")]
    Install {
        kind: &'static str,
        source: seccompiler::Error,
    },
    #[error("starting the thread that starts device workers: {0}")]
    Spawner(#[source] std::io::Error),
    /// The first compilation's error, handed to every later caller (see [`program`]).
    #[error(transparent)]
    Compiled(Arc<SeccompError>),
}

/// Each kind's program, compiled by the first thread that needs it. A process compiles
/// each filter once, however many VMs (`vmm compare`, `vmm bench soak`), vCPUs and
/// workers it runs, and only the kinds it starts: compiling every worker's filter on each
/// start was most of what the filters cost in CPU on `vmm bench start`.
static PROGRAMS: [OnceLock<Result<Arc<BpfProgram>, Arc<SeccompError>>>; ThreadKind::COUNT] =
    [const { OnceLock::new() }; ThreadKind::COUNT];

/// The filter of a thread of `kind` (see [`compile`]), compiled once per process and
/// shared.
pub fn program(kind: ThreadKind) -> Result<Arc<BpfProgram>, SeccompError> {
    PROGRAMS[kind.index()]
        .get_or_init(|| compile(kind).map(Arc::new).map_err(Arc::new))
        .clone()
        .map_err(SeccompError::Compiled)
}

/// The filter of a thread of `kind`: its rules allow, openat (unless they allow it) fails
/// with EACCES, anything else traps (SIGSYS, which [`report`] turns into a message and the
/// VMM's end).
///
/// openat is refused rather than trapped. Only the API thread may open files (its logger,
/// metrics and snapshot files), but glibc's allocator does, once per process and from whichever thread first gives
/// memory of a thread arena back (`free` reads /proc/sys/vm/overcommit_memory to decide
/// how): trapping that stopped about one VM in five with every device attached (`vmm
/// bench soak` found it). Refused, glibc takes its default (madvise) and goes on.
///
/// The calls its rules allow whatever the arguments are come first, in a compact front
/// ([`front`]); seccompiler builds the rest from the rules that look at arguments.
pub fn compile(kind: ThreadKind) -> Result<BpfProgram, SeccompError> {
    let build = |source| SeccompError::Build {
        kind: kind.name(),
        source,
    };
    let rules = rules::rules(kind);
    let refuses_openat = !rules.contains_key(&libc::SYS_openat);
    let (unconditional, filtered): (rules::Rules, rules::Rules) =
        rules.into_iter().partition(|(nr, chain)| {
            chain.is_empty() && u32::try_from(*nr).is_ok_and(|nr| nr < front::BITMAP_CALLS)
        });
    let numbers: Vec<u32> = unconditional.keys().map(|&nr| nr as u32).collect();
    let filter = SeccompFilter::new(
        filtered,
        SeccompAction::Trap,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(build)?;
    let rest: BpfProgram = filter.try_into().map_err(build)?;
    let mut program = front::allowing(&numbers, libc::SECCOMP_RET_ALLOW);
    program.extend(rest);
    Ok(match refuses_openat {
        true => refusing_openat(program),
        false => program,
    })
}

/// `program` with openat answered EACCES before anything else: three instructions in
/// front of what seccompiler made. (seccompiler gives every call a filter matches one
/// action, so the refusal would otherwise be a second filter, and every filter a thread
/// installs costs a JIT compilation in the kernel, the bulk of what confining a thread
/// costs.) They come before the architecture check: a call of another ABI numbered as
/// openat is refused too, which takes nothing from anyone.
fn refusing_openat(program: BpfProgram) -> BpfProgram {
    /// `seccomp_data.nr`, the call's number.
    const NR_OFFSET: u32 = 0;
    let insn = |code: u32, jt: u8, jf: u8, k: u32| sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let mut refusing = vec![
        insn(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, NR_OFFSET),
        insn(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            0,
            1,
            libc::SYS_openat as u32,
        ),
        insn(
            libc::BPF_RET | libc::BPF_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | libc::EACCES as u32,
        ),
    ];
    refusing.extend(program);
    refusing
}

/// Confines the calling thread to `program`, the filter of `kind`, for the rest of its
/// life (and the threads it starts later).
pub fn confine_with(kind: ThreadKind, program: &BpfProgram) -> Result<(), SeccompError> {
    report::install_panic_hook();
    report::install(kind);
    seccompiler::apply_filter(program).map_err(|source| SeccompError::Install {
        kind: kind.name(),
        source,
    })
}

/// For a thread that cannot hand an error back (a worker): confines it, or ends the VMM
/// with the reason. A thread must never go on unconfined where the user asked for filters.
pub fn confine_or_exit(kind: ThreadKind, program: &BpfProgram) {
    if let Err(e) = confine_with(kind, program) {
        eprintln!("vmm: error: {}", edge::error_chain(&e));
        std::process::exit(edge::exit_code::FAILED.into());
    }
}

#[cfg(test)]
mod bpf_eval;
#[cfg(test)]
mod tests;
