//! The metrics handle end to end: the built-in test guest, as a hostile driver, sends
//! malformed chains to a virtio-blk device in a real VM of this process, and the count
//! the caller reads through [`RunOptions::device_metrics`] rises.

use std::sync::{Arc, Mutex};

use crate::guest_image::GuestFile;
use crate::vm::console_log::ConsoleLog;
use crate::vm::device_specs::{DeviceSpecs, DiskSpec};
use crate::vm::{self, Console, DeviceMetrics, RunOptions, VmConfig};

#[test]
fn hostile_chains_raise_the_blk_error_count_seen_through_run_options() {
    let test = "hostile_chains_raise_the_blk_error_count_seen_through_run_options";
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        eprintln!("SKIP {test}: /dev/kvm is not usable here: {e}");
        return;
    }
    let guest = GuestFile::create().unwrap();
    let disk = vmm_sys_util::tempfile::TempFile::new().unwrap();
    let image: Vec<u8> = (0..64 * 512u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(disk.as_path(), image).unwrap();
    let console = Arc::new(Mutex::new(ConsoleLog::new()));
    let config = VmConfig {
        kernel: guest.path(),
        mem_mib: 128,
        cpus: 1,
        cmdline: "console=ttyS0 tests=hostile".into(),
        initrd: None,
        devices: DeviceSpecs {
            disks: vec![DiskSpec {
                path: disk.as_path().to_path_buf(),
                read_only: false,
                id: None,
                rate_limiter: None,
            }],
            rng: Some(Default::default()),
            ..Default::default()
        },
        boot_timer: None,
    };
    let metrics = DeviceMetrics::default();
    let options = RunOptions {
        console: Console::Log(console.clone()),
        device_metrics: Some(metrics.clone()),
        ..Default::default()
    };

    let outcome = vm::run_with(&config, options);

    let tail = console.lock().unwrap().tail_lines(20).join("\n");
    assert!(outcome.is_ok(), "{outcome:?}\n{tail}");
    let blk = metrics
        .snapshot()
        .into_iter()
        .find(|d| d.kind == "blk")
        .expect("the disk's counters");
    assert!(
        blk.errors.chains_rejected > 0,
        "no rejected chain counted: {blk:?}\n{tail}"
    );
}
