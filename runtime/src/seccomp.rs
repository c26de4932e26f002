//! Seccomp: an OCI `linux.seccomp` becomes a [`SeccompProfile`] ([`profile_from_oci`]), and a
//! profile becomes BPF programs ([`compile`]) through seccompiler's JSON front end, which knows
//! each architecture's syscall numbers. Names the architecture does not have are left out, as
//! runc and crun do with profiles written for several architectures.
//!
//! # One profile, a stack of filters
//!
//! A seccompiler filter has two actions: one for the calls its rules match, one for all
//! others. A profile has a default and any number of rule actions, so it becomes several
//! filters. The kernel runs every installed filter and keeps the answer of highest precedence
//! (KILL_PROCESS > KILL_THREAD > TRAP > ERRNO > USER_NOTIF > TRACE > LOG > ALLOW); between equal
//! actions with different data, such as two errnos, the filter installed last wins
//! (`seccomp_run_filters` in kernel/seccomp.c). The filters are:
//!
//! - the *base*: calls that any rule matches → ALLOW, all others → the default; left out when
//!   the default is ALLOW. It lets through the calls of every rule, not only of the ALLOW
//!   rules, or a default stricter than a rule (KILL, with an ERRNO rule) would win over it.
//! - one filter per other action A: calls that A's rules match → A, all others → ALLOW.
//!
//! A call that no rule matches gets the default from the base and ALLOW from the others; a call
//! that rules match gets ALLOW from the base and, from the others, the strictest action among
//! those rules. The base and a rule never both refuse one call, so an ERRNO(1) rule beats a
//! `defaultErrnoRet` of 38 whatever the order of installation. Rules with the default action
//! are ignored, as runc ignores them.
//!
//! The init installs the filters one by one with seccomp(2), so each filter but the last must
//! let that call through. The order: on x86_64 the x32 guard ([`abi_guard`]), the action
//! filters in the reverse order of their first rule (on a tie between two errnos the rule
//! listed first wins), the base; then the one filter that may refuse seccomp(2), if any, is
//! moved to the end. The base may, when the profile does not allow `seccomp`. A profile with
//! two such filters is refused.
//!
//! # Where this differs from libseccomp (runc, crun)
//!
//! - Overlapping rules for one syscall: libseccomp merges them into one decision tree, where an
//!   unconditional rule replaces the syscall's conditional rules whatever their actions, of two
//!   unconditional rules the first stays, and overlapping conditional rules with different
//!   actions make it fail. Here the strictest matching action wins: with `ALLOW umask` and
//!   `ERRNO(1) umask if arg0 == 0o77`, umask(0o77) fails with EPERM; libseccomp allows it.
//! - Architectures: every filter kills a process that calls through another ABI than the
//!   native one (seccompiler's architecture check, plus [`abi_guard`] for x32). A profile that
//!   names SCMP_ARCH_X86 or SCMP_ARCH_X32 is accepted, but 32-bit x86 and x32 programs die at
//!   their first syscall, where libseccomp would filter them by the rules.
//! - Argument width: arguments the kernel reads as 32 bits compare on 32 bits
//!   ([`ARGS_OF_32_BITS`]); libseccomp compares all 64.

use std::collections::{BTreeMap, BTreeSet};

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator, LinuxSyscall,
};
use seccompiler::TargetArch;
use serde_json::{json, Value};

use super::config::{SeccompArg, SeccompOp, SeccompProfile, SeccompRule, SeccompVerdict};
use super::error::{ContainerError, Result};
use super::sys::BpfInstruction;

const FILTER_NAME: &str = "container";

/// The largest errno; the kernel turns larger ERRNO data into this.
const MAX_ERRNO: u32 = 4095;

/// System call arguments are numbered 0 to 5.
const MAX_ARG_INDEX: usize = 5;

/// Arguments the kernel declares `int` or `unsigned int` (`SYSCALL_DEFINE` in net/socket.c
/// and kernel/exec_domain.c), so it reads only the lower 32 bits of the register. Conditions
/// on them compare those 32 bits; all others compare 64, as libseccomp does. With 64 bits,
/// `socket(0x1_0000_0028, ..)` passes Docker's `domain > 40` rule, and the kernel still makes
/// an AF_VSOCK (40) socket. A 64-bit argument listed here would have its upper half go
/// unchecked, so only arguments checked against the kernel's declarations belong here.
const ARGS_OF_32_BITS: &[(&str, &[u8])] = &[
    ("personality", &[0]),
    ("socket", &[0, 1, 2]),
    ("socketpair", &[0, 1, 2]),
];

/// The ABIs of this host's kernel that an OCI profile may name; the filters check only the
/// native one (see the module documentation).
#[cfg(target_arch = "x86_64")]
const HOST_ARCHES: &[Arch] = &[
    Arch::ScmpArchNative,
    Arch::ScmpArchX86_64,
    Arch::ScmpArchX86,
    Arch::ScmpArchX32,
];
#[cfg(target_arch = "aarch64")]
const HOST_ARCHES: &[Arch] = &[
    Arch::ScmpArchNative,
    Arch::ScmpArchAarch64,
    Arch::ScmpArchArm,
];
#[cfg(target_arch = "riscv64")]
const HOST_ARCHES: &[Arch] = &[Arch::ScmpArchNative, Arch::ScmpArchRiscv64];
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
)))]
const HOST_ARCHES: &[Arch] = &[Arch::ScmpArchNative];

fn unsupported(what: impl Into<String>) -> ContainerError {
    ContainerError::Unsupported(what.into())
}

/// The profile an OCI `linux.seccomp` asks for. Refuses what the filters cannot enforce:
/// notify and trace actions, a seccomp agent, architectures of another machine.
pub fn profile_from_oci(s: &LinuxSeccomp) -> Result<SeccompProfile> {
    check_architectures(s.architectures().iter().flatten())?;
    accept_flags(s.flags().iter().flatten());
    if s.listener_path().is_some() {
        return Err(unsupported(
            "seccomp listenerPath (there is no seccomp agent here)",
        ));
    }
    let default = verdict(s.default_action(), s.default_errno_ret())?;
    let mut rules = Vec::new();
    for syscall in s.syscalls().iter().flatten() {
        rules.extend(rules_from_oci(syscall)?);
    }
    Ok(SeccompProfile { default, rules })
}

fn check_architectures<'a>(arches: impl Iterator<Item = &'a Arch>) -> Result<()> {
    for arch in arches {
        if !HOST_ARCHES.contains(arch) {
            return Err(unsupported(format!(
                "seccomp architecture {arch} on a {} host",
                std::env::consts::ARCH
            )));
        }
    }
    Ok(())
}

/// Every flag oci-spec knows is safe to ignore here (it refuses other names when it parses);
/// the match makes a flag added to oci-spec a compile error until it is judged.
fn accept_flags<'a>(flags: impl Iterator<Item = &'a LinuxSeccompFilterFlag>) {
    for flag in flags {
        match flag {
            // Only logging: the actions taken stay the same.
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => {}
            // Keeping the speculative store bypass mitigation costs speed, not safety.
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {}
            // The init installs the filters with one thread, and execve leaves one anyway.
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => {}
            // Changes how a call waits for a seccomp agent; SCMP_ACT_NOTIFY is refused.
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {}
        }
    }
}

fn verdict(action: LinuxSeccompAction, errno: Option<u32>) -> Result<SeccompVerdict> {
    Ok(match action {
        LinuxSeccompAction::ScmpActAllow => SeccompVerdict::Allow,
        // Without errnoRet, EPERM, as runc does.
        LinuxSeccompAction::ScmpActErrno => SeccompVerdict::Errno(errno_value(errno)?),
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            SeccompVerdict::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => SeccompVerdict::KillProcess,
        LinuxSeccompAction::ScmpActTrap => SeccompVerdict::Trap,
        LinuxSeccompAction::ScmpActLog => SeccompVerdict::Log,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(unsupported(
                "seccomp action SCMP_ACT_NOTIFY (there is no seccomp agent here)",
            ))
        }
        LinuxSeccompAction::ScmpActTrace => {
            return Err(unsupported(
                "seccomp action SCMP_ACT_TRACE (the container has no tracer)",
            ))
        }
    })
}

fn errno_value(errno: Option<u32>) -> Result<u32> {
    match errno {
        None => Ok(libc::EPERM as u32),
        Some(n) if n <= MAX_ERRNO => Ok(n),
        Some(n) => Err(ContainerError::invalid(
            "seccomp errnoRet",
            &n.to_string(),
            format!("errno values end at {MAX_ERRNO}"),
        )),
    }
}

/// One OCI syscall entry. Several conditions on one argument make one rule each (OR), not one
/// rule (AND): runc does so, and profiles are written for runc.
fn rules_from_oci(syscall: &LinuxSyscall) -> Result<Vec<SeccompRule>> {
    let action = verdict(syscall.action(), syscall.errno_ret())?;
    let args = syscall
        .args()
        .iter()
        .flatten()
        .map(arg_from_oci)
        .collect::<Result<Vec<_>>>()?;
    let rule = |args| SeccompRule {
        names: syscall.names().clone(),
        action,
        args,
    };
    let indexes: BTreeSet<u8> = args.iter().map(|a| a.index).collect();
    if indexes.len() < args.len() {
        Ok(args.into_iter().map(|a| rule(vec![a])).collect())
    } else {
        Ok(vec![rule(args)])
    }
}

fn arg_from_oci(arg: &LinuxSeccompArg) -> Result<SeccompArg> {
    let index = u8::try_from(arg.index())
        .ok()
        .filter(|i| usize::from(*i) <= MAX_ARG_INDEX)
        .ok_or_else(|| {
            ContainerError::invalid(
                "seccomp argument index",
                &arg.index().to_string(),
                format!("system call arguments are numbered 0 to {MAX_ARG_INDEX}"),
            )
        })?;
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => SeccompOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => SeccompOp::LessThan,
        LinuxSeccompOperator::ScmpCmpLe => SeccompOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => SeccompOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => SeccompOp::GreaterOrEqual,
        LinuxSeccompOperator::ScmpCmpGt => SeccompOp::GreaterThan,
        LinuxSeccompOperator::ScmpCmpMaskedEq => SeccompOp::MaskedEqual,
    };
    Ok(SeccompArg {
        index,
        value: arg.value(),
        value_two: arg.value_two().unwrap_or(0),
        op,
    })
}

/// One seccompiler filter: `on_match` for the calls `rules` match, `otherwise` for the others.
struct Filter<'a> {
    on_match: SeccompVerdict,
    otherwise: SeccompVerdict,
    rules: Vec<&'a SeccompRule>,
}

/// The BPF programs for `profile`, in the order to install them; none when it allows every
/// call.
pub fn compile(profile: &SeccompProfile) -> Result<Vec<Vec<BpfInstruction>>> {
    let arch = target_arch()?;
    let filters = plan(profile);
    let names = profile.rules.iter().flat_map(|r| r.names.iter());
    let known = known_names(arch, names.map(String::as_str))?;
    let filters = install_order(prune(filters, &known))?;
    if filters.is_empty() {
        return Ok(Vec::new());
    }
    let mut programs: Vec<_> = abi_guard().into_iter().collect();
    for filter in &filters {
        programs.push(compile_filter(arch, filter, &known)?);
    }
    Ok(programs)
}

fn target_arch() -> Result<TargetArch> {
    std::env::consts::ARCH
        .try_into()
        .map_err(|_| ContainerError::Seccomp(format!("no support for {}", std::env::consts::ARCH)))
}

/// The action filters, in the reverse order of their first rule, then the base.
fn plan(profile: &SeccompProfile) -> Vec<Filter<'_>> {
    let rules: Vec<&SeccompRule> = profile
        .rules
        .iter()
        .filter(|r| r.action != profile.default)
        .collect();
    let mut actions: Vec<SeccompVerdict> = Vec::new();
    for rule in &rules {
        if rule.action != SeccompVerdict::Allow && !actions.contains(&rule.action) {
            actions.push(rule.action);
        }
    }
    let mut filters: Vec<Filter> = actions
        .iter()
        .rev()
        .map(|&action| Filter {
            on_match: action,
            otherwise: SeccompVerdict::Allow,
            rules: rules
                .iter()
                .copied()
                .filter(|r| r.action == action)
                .collect(),
        })
        .collect();
    if profile.default != SeccompVerdict::Allow {
        filters.push(Filter {
            on_match: SeccompVerdict::Allow,
            otherwise: profile.default,
            rules,
        });
    }
    filters
}

/// Without the rules that name no syscall of this architecture, and without the action
/// filters left with no rule (they would allow everything).
fn prune<'a>(filters: Vec<Filter<'a>>, known: &BTreeSet<&str>) -> Vec<Filter<'a>> {
    filters
        .into_iter()
        .map(|mut f| {
            f.rules
                .retain(|r| r.names.iter().any(|n| known.contains(n.as_str())));
            f
        })
        .filter(|f| !f.rules.is_empty() || f.on_match == SeccompVerdict::Allow)
        .collect()
}

/// `filters` with the one that may refuse seccomp(2) last, so the init can install the others.
fn install_order(filters: Vec<Filter>) -> Result<Vec<Filter>> {
    let (mut refusing, mut order): (Vec<_>, Vec<_>) =
        filters.into_iter().partition(may_refuse_seccomp);
    if refusing.len() > 1 {
        return Err(unsupported(
            "seccomp profiles that may refuse seccomp(2) with two different actions (the \
             runtime installs its filters one by one with seccomp(2))",
        ));
    }
    order.append(&mut refusing);
    Ok(order)
}

/// Whether `filter` may stop the init's own seccomp(2) call (LOG lets it run).
fn may_refuse_seccomp(filter: &Filter) -> bool {
    let stops = |v: SeccompVerdict| !matches!(v, SeccompVerdict::Allow | SeccompVerdict::Log);
    let naming: Vec<&&SeccompRule> = filter
        .rules
        .iter()
        .filter(|r| r.names.iter().any(|n| n == "seccomp"))
        .collect();
    let always_matched = naming.iter().any(|r| r.args.is_empty());
    (stops(filter.on_match) && !naming.is_empty()) || (stops(filter.otherwise) && !always_matched)
}

/// The names among `names` that seccompiler can number on `arch`. It keeps its syscall table
/// to itself and stops at the first name it lacks, so when the whole list fails each name is
/// tried alone: 8 ms for Podman's 432 names (79 unknown on x86_64, release build), where
/// leaving out the name of each error and retrying the list takes 35 ms.
fn known_names<'a>(
    arch: TargetArch,
    names: impl Iterator<Item = &'a str>,
) -> Result<BTreeSet<&'a str>> {
    let names: BTreeSet<&str> = names.collect();
    match probe(arch, names.iter().copied()) {
        Ok(()) => return Ok(names),
        Err(e) if !is_unknown_name(&e) => return Err(ContainerError::Seccomp(e.to_string())),
        Err(_) => {}
    }
    let mut known = BTreeSet::new();
    for name in names {
        match probe(arch, std::iter::once(name)) {
            Ok(()) => {
                known.insert(name);
            }
            Err(e) if is_unknown_name(&e) => {}
            Err(e) => return Err(ContainerError::Seccomp(e.to_string())),
        }
    }
    Ok(known)
}

fn probe<'a>(
    arch: TargetArch,
    names: impl Iterator<Item = &'a str>,
) -> std::result::Result<(), seccompiler::Error> {
    let filter: Vec<Value> = names.map(|n| json!({ "syscall": n })).collect();
    let doc = json!({
        "probe": { "mismatch_action": "allow", "match_action": "trap", "filter": filter }
    });
    seccompiler::compile_from_json(doc.to_string().as_bytes(), arch).map(drop)
}

/// seccompiler's "Invalid syscall name: NAME for given arch: ARCH." error.
fn is_unknown_name(e: &seccompiler::Error) -> bool {
    matches!(e, seccompiler::Error::JsonFrontend(inner)
        if inner.to_string().starts_with("Invalid syscall name"))
}

fn compile_filter(
    arch: TargetArch,
    filter: &Filter,
    known: &BTreeSet<&str>,
) -> Result<Vec<BpfInstruction>> {
    let doc = json!({
        FILTER_NAME: {
            "mismatch_action": action(filter.otherwise),
            "match_action": action(filter.on_match),
            "filter": json_rules(&filter.rules, known),
        }
    });
    let mut map = seccompiler::compile_from_json(doc.to_string().as_bytes(), arch)
        .map_err(|e| ContainerError::Seccomp(e.to_string()))?;
    map.remove(FILTER_NAME)
        .ok_or_else(|| ContainerError::Seccomp("seccompiler returned no filter".into()))
}

fn action(v: SeccompVerdict) -> Value {
    match v {
        SeccompVerdict::Allow => json!("allow"),
        SeccompVerdict::Errno(n) => json!({ "errno": n }),
        SeccompVerdict::KillThread => json!("kill_thread"),
        SeccompVerdict::KillProcess => json!("kill_process"),
        SeccompVerdict::Trap => json!("trap"),
        SeccompVerdict::Log => json!("log"),
    }
}

/// seccompiler's rules: per syscall either one unconditional rule, or its conditional rules,
/// any of which matches. seccompiler would drop an unconditional rule of a syscall that also
/// has conditional ones (it keeps only rules with conditions), hence the grouping.
fn json_rules(rules: &[&SeccompRule], known: &BTreeSet<&str>) -> Vec<Value> {
    // None: every call of the syscall matches.
    let mut by_name: BTreeMap<&str, Option<Vec<Value>>> = BTreeMap::new();
    for rule in rules {
        for name in rule.names.iter().map(String::as_str) {
            if !known.contains(name) {
                continue;
            }
            let entry = by_name.entry(name).or_insert_with(|| Some(Vec::new()));
            if rule.args.is_empty() {
                *entry = None;
            } else if let Some(alternatives) = entry {
                let conditions: Vec<Value> = rule.args.iter().map(|a| condition(name, a)).collect();
                alternatives.push(Value::Array(conditions));
            }
        }
    }
    let mut out = Vec::new();
    for (name, alternatives) in by_name {
        match alternatives {
            None => out.push(json!({ "syscall": name })),
            Some(list) => out.extend(
                list.into_iter()
                    .map(|args| json!({ "syscall": name, "args": args })),
            ),
        }
    }
    out
}

fn condition(syscall: &str, arg: &SeccompArg) -> Value {
    let (op, val) = match arg.op {
        SeccompOp::NotEqual => (json!("ne"), arg.value),
        SeccompOp::LessThan => (json!("lt"), arg.value),
        SeccompOp::LessOrEqual => (json!("le"), arg.value),
        SeccompOp::Equal => (json!("eq"), arg.value),
        SeccompOp::GreaterOrEqual => (json!("ge"), arg.value),
        SeccompOp::GreaterThan => (json!("gt"), arg.value),
        // seccompiler: (arg & mask) == (val & mask); libseccomp masks the value the same way.
        SeccompOp::MaskedEqual => (json!({ "masked_eq": arg.value }), arg.value_two),
    };
    json!({ "index": arg.index, "type": width(syscall, arg), "op": op, "val": val })
}

/// "dword" for an argument of [`ARGS_OF_32_BITS`] compared with 32-bit values, else "qword".
fn width(syscall: &str, arg: &SeccompArg) -> &'static str {
    let narrow = ARGS_OF_32_BITS
        .iter()
        .any(|(name, indexes)| *name == syscall && indexes.contains(&arg.index));
    let fits = |v: u64| u32::try_from(v).is_ok();
    if narrow && fits(arg.value) && fits(arg.value_two) {
        "dword"
    } else {
        "qword"
    }
}

/// x86_64 numbers x32 syscalls from 0x4000_0000 under the native AUDIT_ARCH, so seccompiler's
/// architecture check lets them through and they match no rule: under an ALLOW default they
/// would run unfiltered on a kernel with x32 support. This filter kills their caller, as
/// libseccomp does for a profile without SCMP_ARCH_X32. It lets -1 pass, as libseccomp does:
/// a tracer sets it to skip a call (seccomp(2)); the other filters treat it as unlisted.
#[cfg(target_arch = "x86_64")]
fn abi_guard() -> Option<Vec<BpfInstruction>> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let arch = std::mem::offset_of!(libc::seccomp_data, arch) as u32;
    let nr = std::mem::offset_of!(libc::seccomp_data, nr) as u32;
    let op = |code: u32, k: u32, jt: u8, jf: u8| BpfInstruction {
        code: code as u16,
        jt,
        jf,
        k,
    };
    Some(vec![
        op(BPF_LD | BPF_W | BPF_ABS, arch, 0, 0),
        // Another ABI: the other filters kill it.
        op(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 4),
        op(BPF_LD | BPF_W | BPF_ABS, nr, 0, 0),
        op(BPF_JMP | BPF_JGE | BPF_K, X32_SYSCALL_BIT, 0, 2),
        op(BPF_JMP | BPF_JEQ | BPF_K, u32::MAX, 1, 0),
        op(BPF_RET | BPF_K, libc::SECCOMP_RET_KILL_PROCESS, 0, 0),
        op(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW, 0, 0),
    ])
}

/// Other architectures number no second ABI under the native AUDIT_ARCH.
#[cfg(not(target_arch = "x86_64"))]
fn abi_guard() -> Option<Vec<BpfInstruction>> {
    None
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
