//! Command-line arguments of `vmm container`.

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Run a command in a new container.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The command and its arguments.
    #[arg(last = true)]
    pub command: Vec<String>,
}
