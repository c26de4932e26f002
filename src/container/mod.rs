//! `vmm container`: a container runtime (namespaces, pivot_root, cgroups v1/v2, OCI
//! bundles) whose code the guest agent reuses unchanged inside a VM.

pub mod cli;

use std::process::ExitCode;

pub fn run(cmd: cli::ContainerCommand) -> ExitCode {
    match cmd {
        cli::ContainerCommand::Run(_) => {
            eprintln!("vmm: error: vmm container run is not implemented yet");
            ExitCode::from(2)
        }
    }
}
