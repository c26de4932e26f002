//! A `vmm --api-sock` process driven with curl over its unix socket, for tests/api*.rs.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::{scratch_dir, spawn_vmm, LiveVm};

/// The `PUT /boot-source` body for the test guest running `tests`.
pub fn boot_source(tests: &str) -> String {
    format!(
        r#"{{"kernel_image_path": "{}", "boot_args": "console=ttyS0 tests={tests}"}}"#,
        super::TEST_GUEST
    )
}

/// True (after printing `SKIP`) when curl, the API tests' client, is not installed.
pub fn skip_without_curl(test: &str) -> bool {
    let found = Command::new("curl").arg("--version").output().is_ok();
    if !found {
        eprintln!("SKIP {test}: curl is not installed");
    }
    !found
}

/// A `vmm --api-sock` process and its scratch directory.
pub struct Api {
    pub vm: LiveVm,
    pub sock: PathBuf,
    pub dir: PathBuf,
}

impl Api {
    /// Starts `vmm --api-sock DIR/api.sock ARGS` and waits until the socket answers.
    pub fn start(name: &str, args: &[&str]) -> Api {
        let dir = scratch_dir(name);
        let sock = dir.join("api.sock");
        let mut all = vec!["--api-sock".to_string(), sock.display().to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        let vm = spawn_vmm(all);
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&sock).is_err() {
            assert!(Instant::now() < deadline, "the API socket never appeared");
            std::thread::sleep(Duration::from_millis(5));
        }
        Api { vm, sock, dir }
    }

    /// `curl --unix-socket SOCK -X METHOD http://localhost/PATH [-d BODY]`: status, body.
    pub fn curl(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-s", "--unix-socket"])
            .arg(&self.sock)
            .args(["-X", method, &format!("http://localhost{path}")])
            .args(["-H", "Accept: application/json", "-w", "\n%{http_code}"]);
        if let Some(body) = body {
            cmd.args(["-H", "Content-Type: application/json", "-d", body]);
        }
        let out = cmd.output().expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').expect("curl's status line");
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// Asserts `method path` answers `status`; the body.
    pub fn expect(&self, method: &str, path: &str, body: Option<&str>, status: u16) -> String {
        let (got, text) = self.curl(method, path, body);
        assert_eq!(got, status, "{method} {path} {body:?}: {text}");
        text
    }

    /// Asserts a 400 whose fault_message contains `needle`.
    pub fn expect_fault(&self, method: &str, path: &str, body: Option<&str>, needle: &str) {
        let text = self.expect(method, path, body, 400);
        let v: serde_json::Value = serde_json::from_str(&text).expect("a JSON fault");
        let message = v["fault_message"].as_str().expect("a fault_message");
        assert!(message.contains(needle), "{method} {path}: {message:?}");
    }
}

impl Api {
    /// Waits for the VMM to exit: its run, and the scratch directory (the caller's to
    /// remove once it has read it).
    pub fn finish(self, timeout: Duration) -> (super::Run, PathBuf) {
        (self.vm.finish(timeout), self.dir)
    }
}
