use clap::Parser;
use runtime::config::RootSwitch;

use super::*;

#[derive(Parser)]
struct TestCli {
    #[command(flatten)]
    run: RunArgs,
}

/// `vmm run` options as the command line gives them, with a rootfs that exists.
fn parse(level: &str, extra: &[&str]) -> RunArgs {
    let tmp = std::env::temp_dir();
    let mut argv = vec![
        "vmm",
        "--isolation",
        level,
        "--rootfs",
        tmp.to_str().unwrap(),
    ];
    argv.extend_from_slice(extra);
    argv.extend_from_slice(&["--", "sh", "-c", "true"]);
    TestCli::try_parse_from(argv).unwrap().run
}

fn bad_input(result: Result<impl std::fmt::Debug, RunError>) -> String {
    let err = result.unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    err.to_string()
}

#[test]
fn isolation_names_parse_including_vm_plus_container() {
    assert_eq!(parse("vm+container", &[]).isolation, Isolation::VmContainer);
    assert_eq!(parse("process", &[]).isolation, Isolation::Process);
    assert!(
        TestCli::try_parse_from(["vmm", "--isolation", "jail", "--rootfs", "/", "--", "true"])
            .is_err()
    );
    assert_eq!(Isolation::VmContainer.name(), "vm+container");
    assert!(Isolation::Vm.in_vm() && !Isolation::Container.in_vm());
}

#[test]
fn vm_level_sizes_the_vm_from_memory_and_cpus_rounded_up() {
    let args = parse("vm", &["--memory", "128m", "--cpus", "1.5"]);
    assert_eq!(
        vm_size(&args).unwrap(),
        VmSize {
            mem_mib: 128,
            cpus: 2
        }
    );
    let args = parse("vm", &["--memory", "100000000"]);
    assert_eq!(vm_size(&args).unwrap().mem_mib, 96, "bytes round up to MiB");
}

#[test]
fn vm_mem_and_vm_cpus_override_memory_and_cpus() {
    let args = parse(
        "vm",
        &[
            "--memory",
            "128m",
            "--cpus",
            "3",
            "--vm-mem",
            "512",
            "--vm-cpus",
            "2",
        ],
    );
    assert_eq!(
        vm_size(&args).unwrap(),
        VmSize {
            mem_mib: 512,
            cpus: 2
        }
    );
    assert_eq!(
        ignored_options(&args).len(),
        1,
        "{:?}",
        ignored_options(&args)
    );
}

#[test]
fn vm_without_sizes_gets_the_defaults() {
    let args = parse("vm+container", &[]);
    assert_eq!(
        vm_size(&args).unwrap(),
        VmSize {
            mem_mib: DEFAULT_VM_MEM_MIB,
            cpus: 1
        }
    );
}

#[test]
fn vm_container_vm_keeps_headroom_above_the_memory_limit() {
    let args = parse("vm+container", &["--memory", "512m"]);
    assert_eq!(
        vm_size(&args).unwrap().mem_mib,
        512 + VM_CONTAINER_HEADROOM_MIB
    );
    let args = parse("vm+container", &["--memory", "32m"]);
    assert_eq!(vm_size(&args).unwrap().mem_mib, DEFAULT_VM_MEM_MIB);
}

#[test]
fn vm_smaller_than_the_minimum_is_bad_input() {
    let msg = bad_input(vm_size(&parse("vm", &["--memory", "32m"])));
    assert!(msg.contains("--memory") && msg.contains("64 MiB"), "{msg}");
    let msg = bad_input(vm_size(&parse("vm+container", &["--vm-mem", "16"])));
    assert!(msg.contains("--vm-mem"), "{msg}");
}

#[test]
fn host_network_is_refused_at_the_vm_levels() {
    for level in ["vm", "vm+container"] {
        let msg = bad_input(workload_config(&parse(level, &["--net", "host"])));
        assert!(msg.contains("--net host"), "{msg}");
    }
    assert!(workload_config(&parse("container", &["--net", "host"])).is_ok());
}

#[test]
fn vm_options_are_refused_at_the_host_levels() {
    for (flag, value) in [
        ("--kernel", "/vmlinux"),
        ("--vm-mem", "128"),
        ("--vm-cpus", "2"),
    ] {
        let msg = bad_input(workload_config(&parse("container", &[flag, value])));
        assert!(msg.contains(flag), "{msg}");
    }
}

#[test]
fn process_level_warns_about_every_limit_it_does_not_apply() {
    let args = parse(
        "process",
        &[
            "--memory",
            "64m",
            "--pids",
            "10",
            "--cpus",
            "0.5",
            "--hostname",
            "h",
            "--net",
            "none",
        ],
    );
    let ignored = ignored_options(&args);
    assert_eq!(ignored.len(), 5, "{ignored:?}");
    assert!(ignored.iter().all(|w| w.contains("process level")));
    assert!(ignored_options(&parse("container", &["--memory", "64m"])).is_empty());
}

#[test]
fn process_level_is_the_chroot_baseline_without_cgroup_or_namespaces() {
    let config = workload_config(&parse("process", &["--memory", "64m", "--env", "A=1"])).unwrap();
    assert_eq!(config.root_switch, RootSwitch::Chroot);
    let ns = config.namespaces;
    assert!(ns.mount && !ns.pid && !ns.net && !ns.uts && !ns.ipc && !ns.user && !ns.cgroup);
    assert!(!config.cgroup);
    assert_eq!(config.resources, Default::default());
    assert!(config.process.inherit_capabilities && !config.process.no_new_privileges);
    assert!(config.masked_paths.is_empty() && config.seccomp.is_none());
    let binds: Vec<_> = config
        .mounts
        .iter()
        .map(|m| m.destination.clone())
        .collect();
    assert_eq!(binds, ["/proc", "/sys", "/dev"].map(PathBuf::from));
    assert!(config.process.env.contains(&"A=1".to_owned()));
}

#[test]
fn container_level_is_what_container_run_builds_with_its_limits() {
    let args = parse(
        "container",
        &[
            "--memory",
            "64m",
            "--pids",
            "10",
            "--cpus",
            "0.5",
            "--hostname",
            "box",
        ],
    );
    let config = workload_config(&args).unwrap();
    assert_eq!(config.root_switch, RootSwitch::PivotRoot);
    assert!(config.namespaces.pid && config.namespaces.net && config.cgroup);
    assert_eq!(config.resources.memory, Some(64 << 20));
    assert_eq!(config.resources.pids, Some(10));
    assert_eq!(config.resources.cpu.unwrap().quota, 50_000);
    assert_eq!(config.hostname.as_deref(), Some("box"));
    let mut same = RunOptions::new(
        std::env::temp_dir(),
        vec!["sh".into(), "-c".into(), "true".into()],
    );
    same.memory = Some(64 << 20);
    same.pids = Some(10);
    same.cpus = args.cpus;
    same.hostname = Some("box".into());
    let mut expected = config_from_options(&same).unwrap();
    expected.id = config.id.clone();
    assert_eq!(config, expected);
}

#[test]
fn vm_level_is_the_baseline_in_a_guest_cgroup_with_pids_and_the_guests_hostname() {
    let args = parse(
        "vm",
        &["--memory", "128m", "--pids", "32", "--hostname", "guest1"],
    );
    let config = workload_config(&args).unwrap();
    assert_eq!(config.root_switch, RootSwitch::Chroot);
    assert!(!config.namespaces.pid && !config.namespaces.uts);
    assert!(config.cgroup, "a cgroup for --pids and OOM accounting");
    assert_eq!(config.resources.pids, Some(32));
    assert_eq!(config.resources.memory, None, "the VM's RAM is the limit");
    assert_eq!(config.hostname.as_deref(), Some("guest1"));
}

#[test]
fn vm_container_level_puts_the_limits_on_the_guest_container() {
    let args = parse(
        "vm+container",
        &["--memory", "64m", "--pids", "16", "--cpus", "0.25"],
    );
    let config = workload_config(&args).unwrap();
    assert_eq!(config.root_switch, RootSwitch::PivotRoot);
    assert!(config.namespaces.pid && config.cgroup);
    assert_eq!(config.resources.memory, Some(64 << 20));
    assert_eq!(config.resources.pids, Some(16));
    assert_eq!(config.resources.cpu.unwrap().quota, 25_000);
}

#[test]
fn missing_rootfs_is_bad_input() {
    let args = TestCli::try_parse_from([
        "vmm",
        "--isolation",
        "container",
        "--rootfs",
        "/nonexistent/rootfs",
        "--",
        "true",
    ])
    .unwrap()
    .run;
    let msg = bad_input(workload_config(&args));
    assert!(msg.contains("/nonexistent/rootfs"), "{msg}");
}

#[test]
fn bundle_binding_a_host_path_is_refused_in_a_vm() {
    let bundle = std::env::temp_dir().join(format!("vmm-run-bundle-{}", std::process::id()));
    std::fs::create_dir_all(bundle.join("rootfs")).unwrap();
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": { "args": ["/bin/true"], "cwd": "/", "user": { "uid": 0, "gid": 0 } },
        "root": { "path": "rootfs" },
        "mounts": [{ "destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind"] }],
        "linux": { "namespaces": [{ "type": "pid" }, { "type": "mount" }] }
    });
    std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    let run = |level: &str| {
        TestCli::try_parse_from([
            "vmm",
            "--isolation",
            level,
            "--bundle",
            bundle.to_str().unwrap(),
        ])
        .unwrap()
        .run
    };
    let refused = workload_config(&run("vm+container"));
    let on_host = workload_config(&run("container"));
    std::fs::remove_dir_all(&bundle).unwrap();
    let msg = bad_input(refused);
    assert!(msg.contains("\"/tmp\""), "{msg}");
    assert!(on_host.is_ok(), "{:?}", on_host.err());
}

#[test]
fn link_network_is_refused_where_it_cannot_work() {
    let msg = bad_input(workload_config(&parse("process", &["--net", "link"])));
    assert!(msg.contains("shares the host's network"), "{msg}");
    assert!(!msg.contains('\n'));
    // In a VM the container's link is the VM's NIC.
    assert!(workload_config(&parse("vm+container", &["--net", "link"])).is_ok());
}

#[test]
fn link_network_is_refused_with_a_vm_socket() {
    let args = TestCli::try_parse_from([
        "vmm",
        "--isolation",
        "vm",
        "--vm-socket",
        "/tmp/no-such.sock",
        "--net",
        "link",
        "--",
        "true",
    ])
    .unwrap()
    .run;
    let msg = bad_input(workload_config(&args));
    assert!(msg.contains("--vm-socket"), "{msg}");
}

#[test]
fn link_network_at_the_vm_level_keeps_the_guests_network_namespace() {
    let config = workload_config(&parse("vm", &["--net", "link"])).unwrap();
    assert!(
        !config.namespaces.net,
        "the workload must see the guest's eth0"
    );
    assert!(ignored_options(&parse("vm", &["--net", "link"])).is_empty());
}

#[test]
fn exec_in_needs_a_vm_socket_and_a_process() {
    let parse = |argv: &[&str]| TestCli::try_parse_from(argv).map(|cli| cli.run);
    let base = ["vmm", "--isolation", "vm+container"];
    let no_socket = [&base[..], &["--exec-in", "c1", "--exec-process", "/p.json"]].concat();
    assert!(parse(&no_socket).is_err());
    let no_process = [&base[..], &["--vm-socket", "/s", "--exec-in", "c1"]].concat();
    assert!(parse(&no_process).is_err());
    let orphan_process = [
        &base[..],
        &["--vm-socket", "/s", "--exec-process", "/p.json"],
    ]
    .concat();
    assert!(parse(&orphan_process).is_err());
    let full = [
        &base[..],
        &[
            "--vm-socket",
            "/s",
            "--exec-in",
            "c1",
            "--exec-process",
            "/p.json",
        ],
    ]
    .concat();
    let run = parse(&full).unwrap();
    assert_eq!(run.exec_in.as_deref(), Some("c1"));
}

#[test]
fn from_snapshot_is_refused_at_the_host_levels_and_with_a_vm_socket() {
    for level in ["process", "container"] {
        let msg = bad_input(workload_config(&parse(level, &["--from-snapshot"])));
        assert!(msg.contains("--from-snapshot"), "{msg}");
    }
    // A link is fine at the vm level: the warm snapshot's VM then has a NIC.
    assert!(workload_config(&parse("vm", &["--from-snapshot", "--net", "link"])).is_ok());
    let with_socket = TestCli::try_parse_from([
        "vmm",
        "--isolation",
        "vm",
        "--vm-socket",
        "/tmp/no-such.sock",
        "--from-snapshot",
        "--",
        "true",
    ]);
    assert!(with_socket.is_err());
    assert!(parse("vm+container", &["--from-snapshot"]).from_snapshot);
}
