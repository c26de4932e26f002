//! `vmm-probe`: the one static binary `vmm compare` runs unchanged at every isolation level.
//! `isolation` and `bench` each print one JSON document ([`probe::report`]); `hold` is the
//! host's canary process; `true` exits at once and is the fork+exec benchmark's target, so
//! it is answered before Rust's runtime set-up or any allocation (hence `no_main`: this is
//! the C `main`, called straight from the C runtime).
//!
//! Exit status ([`edge::exit_code`]): 0 done, 1 a measurement failed (one line on stderr
//! says what), 2 bad usage.

#![no_main]

use std::ffi::{c_char, c_int, CStr, CString};
use std::io::{self, BufRead, Write};

use edge::{error_chain, exit_code};
use probe::args::{self, Command};
use probe::failure::{Failure, OrFail};
use serde::Serialize;

#[no_mangle]
pub extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    if is_true(argc, argv) {
        return exit_code::SUCCESS.into();
    }
    run()
}

/// `vmm-probe true ...`, or the probe installed as `true` (argv[0] ends in "/true" or is
/// "true"), as a minimal rootfs's /bin/true.
fn is_true(argc: c_int, argv: *const *const c_char) -> bool {
    let arg = |i: usize| {
        // SAFETY: the C runtime passes `argc` pointers to NUL-terminated strings, and
        // `i` < argc where this is called.
        unsafe { CStr::from_ptr(*argv.add(i)) }.to_bytes()
    };
    (argc >= 2 && arg(1) == b"true")
        || (argc >= 1 && {
            let arg0 = arg(0);
            arg0 == b"true" || arg0.ends_with(b"/true")
        })
}

fn run() -> c_int {
    // As Rust's own runtime would (this `main` bypasses it): a closed stdout is an error
    // to report, not a silent death.
    // SAFETY: setting a signal to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let args: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect();
    let command = match args {
        Ok(args) => args::parse(&args),
        Err(arg) => {
            complain(&format!("vmm-probe: argument {arg:?} is not UTF-8"));
            return exit_code::BAD_INPUT.into();
        }
    };
    let done = match command {
        Ok(Command::Help) => say(args::USAGE),
        Ok(Command::Hold { name }) => hold(&name),
        Ok(Command::Isolation {
            canaries,
            exceed_memory_limit,
        }) => print_json(&probe::isolation::observe(&canaries, exceed_memory_limit)),
        Ok(Command::Bench {
            settings,
            wait_for_go,
        }) => bench(&settings, wait_for_go),
        Err(e) => {
            complain(&format!("vmm-probe: {e}"));
            return exit_code::BAD_INPUT.into();
        }
    };
    match done {
        Ok(()) => exit_code::SUCCESS.into(),
        Err(e) => {
            complain(&format!("vmm-probe: {}", error_chain(&e)));
            exit_code::FAILED.into()
        }
    }
}

/// Names this process `name` (its comm), says `holding`, and sleeps until killed.
fn hold(name: &str) -> Result<(), Failure> {
    let name = CString::new(name).map_err(|_| Failure::wrong("hold", "NAME contains NUL"))?;
    // SAFETY: PR_SET_NAME reads a NUL-terminated string (at most 16 bytes of it).
    let rc = unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    if rc != 0 {
        return Err(Failure::new(
            "prctl(PR_SET_NAME)",
            io::Error::last_os_error(),
        ));
    }
    say("holding\n")?;
    loop {
        // SAFETY: pause has no preconditions; it returns only after a caught signal.
        unsafe { libc::pause() };
    }
}

fn bench(settings: &probe::bench::Settings, wait_for_go: bool) -> Result<(), Failure> {
    if wait_for_go {
        say("vmm-probe: ready\n")?;
        // Any line, or end of input, is the go.
        io::stdin()
            .lock()
            .read_line(&mut String::new())
            .or_fail(|| "read the go line from stdin".to_owned())?;
    }
    print_json(&probe::bench::run(settings)?)
}

/// The document as one line on stdout.
fn print_json(document: &impl Serialize) -> Result<(), Failure> {
    let mut line = serde_json::to_string(document)
        .map_err(|e| Failure::new("encode the report as JSON", io::Error::other(e)))?;
    line.push('\n');
    say(&line)
}

/// Writes to stdout and flushes (the host reads line by line while the probe waits).
fn say(text: &str) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .or_fail(|| "write to stdout".to_owned())
}

/// One line on stderr; if even that fails there is no one left to tell.
fn complain(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}
