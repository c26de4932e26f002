//! `vmm-runc`: the OCI runtime command line of vmm, for Podman, Docker and containerd. It
//! executes the `vmm` binary beside it under the name `vmm-runc`, which makes `vmm` speak
//! runc's command line (src/runc/). One copy of the runtime, and a path that clients can
//! be given (`podman --runtime /path/to/vmm-runc`).

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

use edge::exit_code;

fn main() -> ExitCode {
    let vmm = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name("vmm"),
        Err(e) => {
            eprintln!("vmm-runc: cannot find its own path: {e}");
            return ExitCode::from(exit_code::FAILED);
        }
    };
    let err = Command::new(&vmm)
        .arg0("vmm-runc")
        .args(std::env::args_os().skip(1))
        .exec();
    eprintln!("vmm-runc: cannot run {}: {err}", vmm.display());
    ExitCode::from(exit_code::FAILED)
}
