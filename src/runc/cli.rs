//! `vmm-runc`'s command line: runc's, as the OCI runtime spec's operations and as runc and
//! crun spell them, so Podman (through conmon), containerd's runc shim and Docker can
//! call it in runc's place.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Where state lives when `--root` is not given (runc's is /run/runc).
pub const DEFAULT_ROOT: &str = "/run/vmm-runc";

#[derive(Debug, Parser)]
#[command(
    name = "vmm-runc",
    version = concat!(env!("CARGO_PKG_VERSION"), "\nspec: ", "1.2.0"),
    about = "An OCI runtime with runc's command line: containers on the host, or (annotation \
             io.vmm.isolation=vm+container) inside a microVM",
    long_about = "An OCI runtime with runc's command line, for Podman (--runtime), Docker \
                  (daemon.json runtimes) and containerd (the runc shim's BinaryName). \
                  Containers run on the host, made by vmm's own runtime; a config.json \
                  annotation io.vmm.isolation=vm+container asks for a microVM around the \
                  container (on a host that boots Linux guests). See docs/vmm-runc.md."
)]
pub struct Cli {
    /// Directory of the containers' state.
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Also write errors (and with --debug, progress) to this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Format of the --log file: json lines (what containerd and Podman read) or text.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log progress, not only errors.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd to manage cgroups (not supported: refused).
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container from an OCI bundle: namespaces, cgroup, mounts, and its process,
    /// which waits until `start`.
    Create(CreateArgs),
    /// Let a created container's process run its program.
    Start { id: String },
    /// Print a container's state (runtime-spec state JSON).
    State { id: String },
    /// Send a signal (name or number; default SIGTERM) to a container's process.
    Kill {
        /// Signal every process in the container's cgroup.
        #[arg(long, short = 'a')]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Remove a created or stopped container (a running one with --force: killed first).
    Delete {
        #[arg(long, short = 'f')]
        force: bool,
        id: String,
    },
    /// Create, start and wait for a container; its exit status is vmm-runc's.
    Run(RunArgs),
    /// Run another process in a running container.
    Exec(ExecArgs),
    /// List the containers under --root.
    List {
        #[arg(long, short = 'f', value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// Only the IDs.
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// List the processes of a container.
    Ps {
        #[arg(long, short = 'f', value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        id: String,
    },
    /// Print what this runtime supports (runtime-spec features JSON).
    Features,
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The bundle directory (config.json and its rootfs).
    #[arg(long, short = 'b', value_name = "DIR", default_value = ".")]
    pub bundle: PathBuf,
    /// Write the container process's pid here.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// A unix socket that receives the pty's primary end (process.terminal).
    #[arg(long, value_name = "SOCKET")]
    pub console_socket: Option<PathBuf>,
    /// Use chroot instead of pivot_root (for a rootfs on a ramfs).
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted for runc compatibility: this runtime never makes a session keyring.
    #[arg(long)]
    pub no_new_keyring: bool,
    /// Accepted for runc compatibility: descriptors to keep beyond stdio (not supported
    /// beyond 0).
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: u32,
    pub id: String,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Return at once after start (the caller reaps the container).
    #[arg(long, short = 'd')]
    pub detach: bool,
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The process to run, as the `process` object of config.json.
    #[arg(long, short = 'p', value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Write the new process's pid here.
    #[arg(long, value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// A unix socket that receives the pty's primary end.
    #[arg(long, value_name = "SOCKET")]
    pub console_socket: Option<PathBuf>,
    /// Return once the process runs (the caller reaps it).
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Allocate a terminal (with --console-socket).
    #[arg(long, short = 't')]
    pub tty: bool,
    /// Working directory in the container.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Extra environment variables.
    #[arg(long, short = 'e', value_name = "K=V")]
    pub env: Vec<String>,
    /// UID[:GID] to run as.
    #[arg(long, short = 'u')]
    pub user: Option<String>,
    pub id: String,
    /// The command (without --process).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}
