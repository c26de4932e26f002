//! Compiling a [`SeccompProfile`] to BPF with seccompiler (its JSON front end knows the
//! syscall names of each architecture). Names the architecture does not have are left out,
//! as runc and crun do with OCI profiles written for several architectures.

use serde_json::{json, Value};

use super::config::{SeccompProfile, SeccompVerdict};
use super::error::{ContainerError, Result};
use super::sys::BpfInstruction;

const FILTER_NAME: &str = "container";

fn action(v: SeccompVerdict) -> Value {
    match v {
        SeccompVerdict::Allow => json!("allow"),
        SeccompVerdict::Errno(n) => json!({ "errno": n }),
        SeccompVerdict::KillProcess => json!("kill_process"),
        SeccompVerdict::Trap => json!("trap"),
        SeccompVerdict::Log => json!("log"),
    }
}

fn compile_names(
    profile: &SeccompProfile,
    names: &[&str],
) -> std::result::Result<Vec<BpfInstruction>, String> {
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|_| format!("no seccomp support for {}", std::env::consts::ARCH))?;
    let filter: Vec<Value> = names.iter().map(|n| json!({ "syscall": n })).collect();
    let doc = json!({
        FILTER_NAME: {
            "mismatch_action": action(profile.default),
            "match_action": action(profile.listed),
            "filter": filter,
        }
    });
    let text = doc.to_string();
    let mut map =
        seccompiler::compile_from_json(text.as_bytes(), arch).map_err(|e| e.to_string())?;
    map.remove(FILTER_NAME)
        .ok_or_else(|| "seccompiler returned no filter".to_owned())
}

/// The BPF program for `profile`.
pub fn compile(profile: &SeccompProfile) -> Result<Vec<BpfInstruction>> {
    if profile.default == profile.listed {
        return Err(ContainerError::Seccomp(
            "the listed syscalls get the default action: nothing to filter".into(),
        ));
    }
    let names: Vec<&str> = profile.syscalls.iter().map(String::as_str).collect();
    match compile_names(profile, &names) {
        Ok(prog) => Ok(prog),
        Err(e) if e.contains("Invalid syscall name") => {
            // Keep the names this architecture knows (each checked on its own).
            let known: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| compile_names(profile, &[n]).is_ok())
                .collect();
            compile_names(profile, &known).map_err(ContainerError::Seccomp)
        }
        Err(e) => Err(ContainerError::Seccomp(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::defaults;
    use super::*;

    #[test]
    fn default_profile_compiles() {
        let prog = compile(&defaults::seccomp_profile()).unwrap();
        assert!(prog.len() > 20, "{} instructions", prog.len());
    }

    #[test]
    fn unknown_syscall_names_are_left_out() {
        let profile = SeccompProfile {
            default: SeccompVerdict::Allow,
            listed: SeccompVerdict::Errno(1),
            syscalls: vec!["reboot".into(), "no_such_syscall".into()],
        };
        let with_unknown = compile(&profile).unwrap();
        let only_known = compile(&SeccompProfile {
            syscalls: vec!["reboot".into()],
            ..profile
        })
        .unwrap();
        assert_eq!(with_unknown, only_known);
    }
}
