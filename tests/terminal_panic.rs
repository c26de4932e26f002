//! A panic restores the terminal: `vmm` runs on a pseudo-terminal, puts it in raw mode,
//! and a vCPU thread panics (the debug build's `VMM_TEST_PANIC_IN` seam, in
//! `src/vm/vcpu.rs`, which then aborts as a release build would, so no Drop can restore
//! it). The pty's settings afterwards must be the ones it had before.

// A test reports failure by panicking: unwrap and expect are how it says so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{skip_without_kvm, GUEST_TIMEOUT, TEST_GUEST, VMM};

#[test]
fn terminal_is_restored_after_a_vcpu_thread_panics_in_raw_mode() {
    if skip_without_kvm("terminal_is_restored_after_a_vcpu_thread_panics_in_raw_mode") {
        return;
    }
    if !cfg!(debug_assertions) {
        eprintln!(
            "SKIP terminal_is_restored_after_a_vcpu_thread_panics_in_raw_mode: \
             the VMM_TEST_PANIC_IN seam exists in debug builds only"
        );
        return;
    }
    let pty = Pty::open();
    let before = pty.settings();
    assert_eq!(
        before.c_lflag & (libc::ICANON | libc::ECHO),
        libc::ICANON | libc::ECHO,
        "a fresh pty is canonical and echoes, so raw mode changes it"
    );

    let mut command = Command::new(VMM);
    command
        .args(["--kernel", TEST_GUEST, "--cmdline", "console=ttyS0"])
        .env("VMM_TEST_PANIC_IN", "vcpu0")
        .stdin(pty.secondary_stdio())
        .stdout(pty.secondary_stdio())
        .stderr(pty.secondary_stdio());
    // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent; the
    // closure runs in the child between fork and exec.
    unsafe {
        command.pre_exec(|| {
            // The abort must not leave a core file behind.
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::setrlimit(libc::RLIMIT_CORE, &none) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().expect("spawn vmm");
    let output = pty.read_primary();

    let deadline = Instant::now() + GUEST_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "vmm did not end after the forced panic; its output:\n{}",
                output.text()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let after = pty.settings();
    let seen = output.text_containing("forced panic in vcpu0", Duration::from_secs(5));

    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}\n{seen}");
    assert!(
        seen.contains("forced panic in vcpu0 (raw mode on: true)"),
        "the panic came from vcpu0 while raw mode was on:\n{seen}"
    );
    assert_eq!(Settings::of(&after), Settings::of(&before), "{seen}");
}

/// A pseudo-terminal: the test keeps both ends open, so the settings can be read after
/// `vmm` has exited and its output stays readable until the test is done.
struct Pty {
    primary: OwnedFd,
    secondary: OwnedFd,
}

impl Pty {
    fn open() -> Self {
        let (mut primary, mut secondary) = (-1, -1);
        // SAFETY: openpty writes two fds into the locals; the null name, termios and
        // winsize pointers ask for the defaults.
        let rc = unsafe {
            libc::openpty(
                &mut primary,
                &mut secondary,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty succeeded, so both fds are open and owned by nobody else.
        unsafe {
            Self {
                primary: OwnedFd::from_raw_fd(primary),
                secondary: OwnedFd::from_raw_fd(secondary),
            }
        }
    }

    fn secondary_stdio(&self) -> Stdio {
        Stdio::from(self.secondary.try_clone().expect("dup the pty"))
    }

    fn settings(&self) -> libc::termios {
        // SAFETY: a zeroed termios is a valid value for tcgetattr to overwrite.
        let mut termios: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `termios` is valid to write into; the fd is the pty's secondary end.
        let rc = unsafe { libc::tcgetattr(self.secondary.as_raw_fd(), &mut termios) };
        assert_eq!(rc, 0, "tcgetattr: {}", std::io::Error::last_os_error());
        termios
    }

    /// Everything written to the pty, read on a thread (so `vmm` never blocks on a full
    /// buffer) that ends when the test drops the pty.
    fn read_primary(&self) -> Output {
        let mut primary = File::from(self.primary.try_clone().expect("dup the pty"));
        let (tx, chunks) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = primary.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Output {
            chunks,
            text: String::new(),
        }
    }
}

struct Output {
    chunks: mpsc::Receiver<Vec<u8>>,
    text: String,
}

impl Output {
    /// What has arrived so far.
    fn text(mut self) -> String {
        while let Ok(chunk) = self.chunks.try_recv() {
            self.text.push_str(&String::from_utf8_lossy(&chunk));
        }
        self.text
    }

    /// What has arrived once `needle` has, or after `timeout`.
    fn text_containing(mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while !self.text.contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.chunks.recv_timeout(left) {
                Ok(chunk) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                Err(_) => break,
            }
        }
        self.text
    }
}

/// The comparable fields of a termios (libc's type has no PartialEq by default).
#[derive(Debug, PartialEq, Eq)]
struct Settings {
    iflag: libc::tcflag_t,
    oflag: libc::tcflag_t,
    cflag: libc::tcflag_t,
    lflag: libc::tcflag_t,
    line: libc::cc_t,
    cc: [libc::cc_t; libc::NCCS],
    ispeed: libc::speed_t,
    ospeed: libc::speed_t,
}

impl Settings {
    fn of(t: &libc::termios) -> Self {
        Self {
            iflag: t.c_iflag,
            oflag: t.c_oflag,
            cflag: t.c_cflag,
            lflag: t.c_lflag,
            line: t.c_line,
            cc: t.c_cc,
            ispeed: t.c_ispeed,
            ospeed: t.c_ospeed,
        }
    }
}
