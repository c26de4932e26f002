//! From command-line style options (`vmm container run`, `vmm run`) to a
//! [`ContainerConfig`]: the value parsers the binary's clap options call, the plain
//! [`RunOptions`] they fill, and the checks that need the file system (rootfs, mount sources).

use std::path::{Path, PathBuf};

use super::caps;
use super::config::{
    CapabilitySets, ContainerConfig, CpuQuota, Hooks, IdMapping, Namespaces, NetLink,
    ProcessConfig, Resources, Rlimit, RootSwitch,
};
use super::defaults;
use super::error::{ContainerError, Result};
use super::hostname;
use super::mount_opts::mount_spec;
use super::netif::LinkAddresses;

/// CFS period used for `--cpus` (the kernel's default, as Docker uses).
pub const CPU_PERIOD_US: u64 = 100_000;

/// Host id that container root maps to with `--userns`, and how many ids are mapped.
pub const USERNS_HOST_ID: u32 = 100_000;
pub const USERNS_SIZE: u32 = 65_536;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: PathBuf,
    pub readonly: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuFraction(pub f64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserArg {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RlimitArg(pub Rlimit);

/// `64m`, `1G`, `4096`: bytes, with k/m/g (powers of 1024).
pub fn parse_bytes(s: &str) -> std::result::Result<i64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (digits, unit) = match lower.char_indices().last() {
        Some((i, 'k')) => (&lower[..i], 1i64 << 10),
        Some((i, 'm')) => (&lower[..i], 1i64 << 20),
        Some((i, 'g')) => (&lower[..i], 1i64 << 30),
        _ => (lower, 1),
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count (e.g. 4096, 64m, 1g)"))?;
    match n.checked_mul(unit) {
        Some(v) if v > 0 => Ok(v),
        _ => Err(format!("{s:?} must be positive and fit in 63 bits")),
    }
}

/// `0.5`, `2`: a positive number of CPUs.
pub fn parse_cpus(s: &str) -> std::result::Result<CpuFraction, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.01..=1024.0).contains(&v) => Ok(CpuFraction(v)),
        _ => Err(format!("{s:?} is not a CPU count between 0.01 and 1024")),
    }
}

/// `SRC:DST[:ro]` with absolute paths.
pub fn parse_mount(s: &str) -> std::result::Result<BindMount, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dst, readonly) = match parts.as_slice() {
        [src, dst] => (*src, *dst, false),
        [src, dst, "ro"] => (*src, *dst, true),
        [src, dst, "rw"] => (*src, *dst, false),
        _ => return Err(format!("{s:?} is not SRC:DST[:ro]")),
    };
    if src.is_empty() || !dst.starts_with('/') {
        return Err(format!("{s:?}: SRC must be given and DST must be absolute"));
    }
    Ok(BindMount {
        source: PathBuf::from(src),
        destination: PathBuf::from(dst),
        readonly,
    })
}

/// `K=V` with a non-empty key.
pub fn parse_env(s: &str) -> std::result::Result<String, String> {
    match s.split_once('=') {
        Some((k, _)) if !k.is_empty() && !k.contains('\0') => Ok(s.to_owned()),
        _ => Err(format!("{s:?} is not K=V")),
    }
}

/// `UID` or `UID:GID`, numeric.
pub fn parse_user(s: &str) -> std::result::Result<UserArg, String> {
    let bad = || format!("{s:?} is not UID[:GID] (numbers)");
    let (u, g) = s.split_once(':').unwrap_or((s, s));
    let uid = u.parse().map_err(|_| bad())?;
    let gid = if s.contains(':') {
        g.parse().map_err(|_| bad())?
    } else {
        uid
    };
    Ok(UserArg { uid, gid })
}

/// The `RLIMIT_*` number of a name such as `nofile` or `RLIMIT_NOFILE`.
pub fn rlimit_resource(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let short = upper.strip_prefix("RLIMIT_").unwrap_or(&upper);
    let r = match short {
        "CPU" => libc::RLIMIT_CPU,
        "FSIZE" => libc::RLIMIT_FSIZE,
        "DATA" => libc::RLIMIT_DATA,
        "STACK" => libc::RLIMIT_STACK,
        "CORE" => libc::RLIMIT_CORE,
        "RSS" => libc::RLIMIT_RSS,
        "NPROC" => libc::RLIMIT_NPROC,
        "NOFILE" => libc::RLIMIT_NOFILE,
        "MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "AS" => libc::RLIMIT_AS,
        "LOCKS" => libc::RLIMIT_LOCKS,
        "SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "NICE" => libc::RLIMIT_NICE,
        "RTPRIO" => libc::RLIMIT_RTPRIO,
        "RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    };
    Some(r)
}

/// `nofile=1024` or `nofile=1024:4096`.
pub fn parse_rlimit(s: &str) -> std::result::Result<RlimitArg, String> {
    let bad = || format!("{s:?} is not NAME=SOFT[:HARD] (e.g. nofile=1024:4096)");
    let (name, values) = s.split_once('=').ok_or_else(bad)?;
    let resource = rlimit_resource(name).ok_or_else(|| format!("{name:?} is not an rlimit"))?;
    let (soft, hard) = values.split_once(':').unwrap_or((values, values));
    let soft: u64 = soft.parse().map_err(|_| bad())?;
    let hard: u64 = hard.parse().map_err(|_| bad())?;
    if soft > hard {
        return Err(format!("{s:?}: soft limit above hard limit"));
    }
    Ok(RlimitArg(Rlimit {
        resource,
        soft,
        hard,
    }))
}

/// Network of the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetMode {
    /// A new network namespace with only the loopback interface (up).
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// A new network namespace with loopback and `eth0`, one end of a veth pair whose
    /// other end is on the host: a point-to-point /30 link out of 10.231.0.0/16
    /// ([`crate::netif::LinkAddresses`]), the host's end the default gateway.
    Link,
}

/// What a container run asks for, as the command line spells it (already parsed). The
/// binary's clap options fill it; [`config_from_options`] checks it and resolves defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    pub rootfs: PathBuf,
    /// Container name (its cgroup); default [`default_id`].
    pub name: Option<String>,
    /// Hostname; default the container name.
    pub hostname: Option<String>,
    pub memory: Option<i64>,
    pub pids: Option<i64>,
    pub cpus: Option<CpuFraction>,
    pub net: NetMode,
    pub userns: bool,
    pub read_only: bool,
    pub mounts: Vec<BindMount>,
    pub env: Vec<String>,
    pub workdir: PathBuf,
    pub user: Option<UserArg>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub rlimits: Vec<RlimitArg>,
    pub seccomp: bool,
    pub command: Vec<String>,
}

impl RunOptions {
    /// Options with every default: `command` run in `rootfs`, from `/`.
    pub fn new(rootfs: impl Into<PathBuf>, command: Vec<String>) -> Self {
        Self {
            rootfs: rootfs.into(),
            name: None,
            hostname: None,
            memory: None,
            pids: None,
            cpus: None,
            net: NetMode::None,
            userns: false,
            read_only: false,
            mounts: Vec::new(),
            env: Vec::new(),
            workdir: PathBuf::from("/"),
            user: None,
            cap_add: Vec::new(),
            cap_drop: Vec::new(),
            rlimits: Vec::new(),
            seccomp: false,
            command,
        }
    }
}

/// A default container name, unique among the runs on this host.
pub fn default_id() -> String {
    format!("vmm-{}", std::process::id())
}

/// Check a container name: it becomes a cgroup directory name.
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ContainerError::invalid(
            "container name",
            id,
            "use letters, digits, '-', '_' and '.'",
        ))
    }
}

/// The link of a `--net link` run: a /30 no interface here has yet, looked for from a slot
/// picked by this process's id (so concurrent runs start apart), and a host interface named
/// after the process (`vmm<pid>`, at most 10 bytes), unique while it runs.
pub fn host_link() -> Result<NetLink> {
    let pid = std::process::id();
    let addresses = LinkAddresses::allocate(pid)
        .map_err(|e| ContainerError::sys("pick the addresses of the link to the host", e))?;
    Ok(NetLink {
        host_interface: format!("vmm{pid}"),
        addresses,
        existing_interface: false,
    })
}

/// The rootfs as an absolute directory path.
pub fn resolve_rootfs(path: &Path) -> Result<PathBuf> {
    match path.canonicalize() {
        Ok(p) if p.is_dir() => Ok(p),
        _ => Err(ContainerError::MissingRootfs(path.to_owned())),
    }
}

/// Build the container described by `vmm container run --rootfs …` options.
pub fn config_from_options(args: &RunOptions) -> Result<ContainerConfig> {
    let rootfs = resolve_rootfs(&args.rootfs)?;
    if args.command.is_empty() {
        return Err(ContainerError::NoCommand);
    }
    let id = args.name.clone().unwrap_or_else(default_id);
    check_id(&id)?;
    if let Some(name) = &args.hostname {
        hostname::check("--hostname", name)?;
    }
    if !args.workdir.is_absolute() {
        return Err(ContainerError::invalid(
            "--workdir",
            &args.workdir.to_string_lossy(),
            "must be absolute",
        ));
    }

    let mut mounts = defaults::mounts();
    for m in &args.mounts {
        let source = m
            .source
            .canonicalize()
            .map_err(|_| ContainerError::MissingMountSource(m.source.clone()))?;
        let mut options = vec!["rbind"];
        if m.readonly {
            options.push("ro");
        }
        mounts.push(mount_spec(
            &m.destination.to_string_lossy(),
            "bind",
            &source.to_string_lossy(),
            &options,
        ));
    }

    // Drops apply to the default set, adds come after (so `--cap-drop ALL --cap-add X`).
    let cap_mask = (caps::mask_of(&defaults::CAPABILITIES)? & !caps::mask_of(&args.cap_drop)?)
        | caps::mask_of(&args.cap_add)?;

    let mut env = Vec::new();
    if !args.env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={}", defaults::PATH));
    }
    env.extend(args.env.iter().cloned());

    let namespaces = Namespaces {
        net: args.net != NetMode::Host,
        user: args.userns,
        ..Namespaces::DEFAULT
    };
    let mappings = if args.userns {
        vec![IdMapping {
            container_id: 0,
            host_id: USERNS_HOST_ID,
            size: USERNS_SIZE,
        }]
    } else {
        Vec::new()
    };
    let user = args.user.unwrap_or(UserArg { uid: 0, gid: 0 });
    let net_link = match args.net {
        NetMode::Link => Some(host_link()?),
        NetMode::None | NetMode::Host => None,
    };

    Ok(ContainerConfig {
        hostname: Some(
            args.hostname
                .clone()
                .unwrap_or_else(|| hostname::default_for(&id)),
        ),
        id,
        rootfs,
        root_switch: RootSwitch::PivotRoot,
        readonly_root: args.read_only,
        process: ProcessConfig {
            args: args.command.clone(),
            env,
            cwd: args.workdir.clone(),
            uid: user.uid,
            gid: user.gid,
            additional_gids: Vec::new(),
            umask: 0o022,
            capabilities: CapabilitySets::uniform(cap_mask),
            inherit_capabilities: false,
            no_new_privileges: true,
            rlimits: args.rlimits.iter().map(|r| r.0).collect(),
        },
        namespaces,
        uid_mappings: mappings.clone(),
        gid_mappings: mappings,
        mounts,
        default_devices: true,
        masked_paths: defaults::masked_paths(),
        readonly_paths: defaults::readonly_paths(),
        cgroup: true,
        resources: Resources {
            memory: args.memory,
            pids: args.pids,
            cpu: args.cpus.map(|CpuFraction(c)| CpuQuota {
                quota: (c * CPU_PERIOD_US as f64).round() as i64,
                period: CPU_PERIOD_US,
            }),
            ..Resources::default()
        },
        seccomp: args.seccomp.then(defaults::seccomp_profile),
        net_link,
        sysctl: Vec::new(),
        oom_score_adj: None,
        terminal: false,
        console_size: None,
        cgroup_path: None,
        hooks: Hooks::default(),
        join_namespaces: Vec::new(),
        device_rules: Vec::new(),
    })
}

/// Host paths bound into the rootfs of the unisolated baseline, so that it sees the
/// host's processes, devices and kernel objects as any host process does.
pub const BASELINE_BINDS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// The unisolated baseline (`vmm run --isolation process`, and the `vm` level inside a
/// guest): the command chrooted into the rootfs, as a plain process that shares the PID,
/// network, IPC, UTS, user and cgroup namespaces of whoever runs it, with its
/// capabilities unchanged. Its one namespace is a private mount namespace, in which the
/// host's /proc, /sys and /dev are bound into the rootfs before the chroot: those mounts
/// vanish with the process and never appear in the host's mount table. No cgroup, no
/// limits (a caller may turn on [`ContainerConfig::cgroup`] and set resources), no
/// hostname, no seccomp, no_new_privs off, no link to the host (it has the host's network).
pub fn baseline_config_from_options(args: &RunOptions) -> Result<ContainerConfig> {
    config_from_options(args).map(make_baseline)
}

/// Turns a container's configuration (from options or a bundle) into the unisolated
/// baseline of [`baseline_config_from_options`]: the same process (command, environment,
/// working directory, user, rlimits) and rootfs, none of the isolation.
pub fn make_baseline(mut cfg: ContainerConfig) -> ContainerConfig {
    cfg.root_switch = RootSwitch::Chroot;
    cfg.hostname = None;
    cfg.namespaces = Namespaces {
        pid: false,
        mount: true,
        uts: false,
        ipc: false,
        net: false,
        user: false,
        cgroup: false,
    };
    cfg.uid_mappings.clear();
    cfg.gid_mappings.clear();
    cfg.mounts = BASELINE_BINDS
        .iter()
        .map(|path| mount_spec(path, "bind", path, &["rbind"]))
        .collect();
    cfg.default_devices = false;
    cfg.masked_paths.clear();
    cfg.readonly_paths.clear();
    cfg.process.inherit_capabilities = true;
    cfg.process.no_new_privileges = false;
    cfg.cgroup = false;
    cfg.resources = Resources::default();
    cfg.seccomp = None;
    cfg.net_link = None;
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_accept_binary_suffixes() {
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64m"), Ok(64 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("512KB"), Ok(512 << 10));
    }

    #[test]
    fn byte_sizes_reject_junk_and_zero() {
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("-5m").is_err());
        assert!(parse_bytes("99999999999g").is_err());
    }

    #[test]
    fn cpus_must_be_a_positive_fraction() {
        assert_eq!(parse_cpus("0.5"), Ok(CpuFraction(0.5)));
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("half").is_err());
        assert!(parse_cpus("NaN").is_err());
    }

    #[test]
    fn mount_needs_absolute_destination() {
        let m = parse_mount("/src:/dst:ro").unwrap();
        assert_eq!(m.destination, PathBuf::from("/dst"));
        assert!(m.readonly);
        assert!(parse_mount("/src:dst").is_err());
        assert!(parse_mount("/src").is_err());
        assert!(parse_mount("/a:/b:rx").is_err());
    }

    #[test]
    fn rlimits_parse_soft_and_hard() {
        let r = parse_rlimit("nofile=100:200").unwrap().0;
        assert_eq!(
            (r.resource, r.soft, r.hard),
            (libc::RLIMIT_NOFILE, 100, 200)
        );
        assert!(parse_rlimit("nofile=300:200").is_err());
        assert!(parse_rlimit("bogus=1").is_err());
    }

    #[test]
    fn user_defaults_gid_to_uid() {
        assert_eq!(
            parse_user("1000"),
            Ok(UserArg {
                uid: 1000,
                gid: 1000
            })
        );
        assert_eq!(parse_user("1:2"), Ok(UserArg { uid: 1, gid: 2 }));
        assert!(parse_user("root").is_err());
    }

    fn options_with_net(net: NetMode) -> RunOptions {
        let mut options = RunOptions::new(std::env::temp_dir(), vec!["true".into()]);
        options.net = net;
        options
    }

    #[test]
    fn net_link_gets_a_host_interface_and_a_slash_30() {
        let cfg = config_from_options(&options_with_net(NetMode::Link)).unwrap();
        assert!(cfg.namespaces.net);
        let link = cfg.net_link.expect("a link");
        assert_eq!(link.host_interface, format!("vmm{}", std::process::id()));
        assert!(link.host_interface.len() < libc::IFNAMSIZ);
        assert_eq!(link.addresses.prefix_len, 30);
        assert_eq!(
            u32::from(link.addresses.workload),
            u32::from(link.addresses.host) + 1
        );
    }

    #[test]
    fn only_net_link_gets_a_link_and_the_baseline_never_does() {
        for net in [NetMode::None, NetMode::Host] {
            let cfg = config_from_options(&options_with_net(net)).unwrap();
            assert_eq!(cfg.net_link, None, "{net:?}");
        }
        let cfg = baseline_config_from_options(&options_with_net(NetMode::Link)).unwrap();
        assert_eq!(cfg.net_link, None);
    }

    #[test]
    fn config_json_without_net_link_still_parses() {
        let cfg = config_from_options(&options_with_net(NetMode::None)).unwrap();
        let mut json = serde_json::to_value(&cfg).unwrap();
        json.as_object_mut().unwrap().remove("net_link");
        let parsed: ContainerConfig = serde_json::from_value(json).unwrap();
        assert_eq!(parsed, cfg);
    }

    #[test]
    fn container_names_are_checked() {
        assert!(check_id("web-1.a_b").is_ok());
        assert!(check_id("../etc").is_err());
        assert!(check_id("").is_err());
    }
}
