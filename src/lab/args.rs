//! `vmm lab`'s command line.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct LabArgs {
    /// Read the labs from this directory (NN-name.md files) instead of the ones built into
    /// vmm (resources/labs/ in the source tree).
    #[arg(long, value_name = "DIR", global = true)]
    pub labs_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: LabCommand,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// The labs, by number, with what each is about.
    List,
    /// A lab's text: goal, background, steps with their commands, questions, reading.
    Show {
        /// The lab's number (`vmm lab list`).
        number: u32,
    },
    /// Run every step of a lab (or of all labs) and say, per step, what was expected, what
    /// was seen, and pass or fail, with a hint when it fails. Steps that need what this
    /// host lacks (root, Linux guests) are reported as skipped, with the reason. Exit
    /// status 1 when a step failed.
    Check {
        /// A lab's number, or `all`.
        #[arg(value_parser = parse_selection)]
        which: LabSelection,
        /// The busybox rootfs the steps use as $LAB_ROOTFS [default: one built with
        /// resources/container-rootfs.sh and cached].
        #[arg(long, value_name = "DIR")]
        rootfs: Option<PathBuf>,
        /// Check only the steps that need this (e.g. `linux-guests`, to run on a host that
        /// boots guests the steps another host skipped).
        #[arg(long, value_name = "NEED", value_enum)]
        only_needing: Option<super::format::Need>,
    },
    /// Walk through a lab: its text, each step's command run and its output shown, pausing
    /// before each step when on a terminal.
    Run {
        number: u32,
        /// As for `check`.
        #[arg(long, value_name = "DIR")]
        rootfs: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabSelection {
    All,
    One(u32),
}

fn parse_selection(s: &str) -> Result<LabSelection, String> {
    match s {
        "all" => Ok(LabSelection::All),
        _ => s
            .parse()
            .map(LabSelection::One)
            .map_err(|_| format!("{s:?} is not a lab number (or `all`)")),
    }
}
