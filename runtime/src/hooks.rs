//! The OCI lifecycle hooks: each a program run with the container's state JSON on its
//! stdin, failed when it exits non-zero or outlives its timeout (then killed). Where each
//! stage runs is the caller's business (see [`super::config::Hooks`]).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::config::Hook;
use super::error::{ContainerError, Result};

/// How long a hook without a timeout of its own may run: none would let a hung hook hang
/// the runtime and its caller forever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `hooks` of `stage` in order with `state` on their stdin; stops at the first failure.
pub fn run(stage: &'static str, hooks: &[Hook], state: &[u8]) -> Result<()> {
    for hook in hooks {
        run_one(stage, hook, state)?;
    }
    Ok(())
}

fn run_one(stage: &'static str, hook: &Hook, state: &[u8]) -> Result<()> {
    let fail = |reason: String| ContainerError::Hook {
        stage,
        path: hook.path.clone(),
        reason,
    };
    let mut command = Command::new(&hook.path);
    if let Some((arg0, rest)) = hook.args.split_first() {
        command.arg0(arg0).args(rest);
    }
    command
        .env_clear()
        .envs(hook.env.iter().filter_map(|e| e.split_once('=')))
        .stdin(Stdio::piped())
        .stdout(Stdio::null());
    let mut child = command
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin closes it: EPIPE is not its failure.
        let _ = stdin.write_all(state);
    }
    let timeout = hook
        .timeout_secs
        .map_or(DEFAULT_TIMEOUT, |s| Duration::from_secs(s.into()));
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(200);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(fail(format!("it ended with {status}"))),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("killed after its timeout of {timeout:?}")));
            }
            Ok(None) => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => return Err(fail(format!("cannot wait for it: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn sh(script: &str, timeout_secs: Option<u32>) -> Hook {
        Hook {
            path: PathBuf::from("/bin/sh"),
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec!["HOOK_ENV=seen".into()],
            timeout_secs,
        }
    }

    #[test]
    fn hook_gets_the_state_on_stdin_and_its_env() {
        let dir = std::env::temp_dir().join(format!("vmm-hook-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out");
        let script = format!("cat > {0}; echo \" $HOOK_ENV\" >> {0}", out.display());
        run("poststart", &[sh(&script, None)], br#"{"id":"c1"}"#).unwrap();
        let seen = std::fs::read_to_string(&out).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(seen, "{\"id\":\"c1\"} seen\n");
    }

    #[test]
    fn failing_hook_stops_the_stage_and_names_it() {
        let dir = std::env::temp_dir().join(format!("vmm-hook-fail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("second-ran");
        let hooks = [
            sh("exit 3", None),
            sh(&format!("touch {}", marker.display()), None),
        ];
        let err = run("createRuntime", &hooks, b"{}").unwrap_err();
        let ran = marker.exists();
        std::fs::remove_dir_all(&dir).unwrap();
        let text = err.to_string();
        assert!(
            text.contains("createRuntime") && text.contains("exit status: 3"),
            "{text}"
        );
        assert!(!ran, "a hook after the failing one ran");
    }

    #[test]
    fn hook_past_its_timeout_is_killed_and_fails() {
        let started = Instant::now();
        let err = run("poststop", &[sh("sleep 30", Some(1))], b"{}").unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(err.to_string().contains("timeout"), "{err}");
    }

    #[test]
    fn missing_hook_program_fails_with_its_path() {
        let hook = Hook {
            path: PathBuf::from("/no/such/hook"),
            args: Vec::new(),
            env: Vec::new(),
            timeout_secs: None,
        };
        let err = run("prestart", &[hook], b"{}").unwrap_err();
        assert!(err.to_string().contains("/no/such/hook"), "{err}");
    }
}
