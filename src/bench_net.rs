//! `vmm bench net`: the virtio-net data path in-process (a real device worker, guest memory
//! in this process, a socketpair as the tap), reporting frames per second and the VMM-side
//! cost per 1514-byte frame in each direction.

mod rig;

use std::process::ExitCode;

use edge::exit_code;
use rig::{bench_rx, bench_tx, PathResult, BENCH_FRAME_LEN};

pub fn run(frames: u32) -> ExitCode {
    if frames == 0 {
        eprintln!("vmm: error: --frames must be at least 1");
        return ExitCode::from(exit_code::BAD_INPUT);
    }
    // One unmeasured round warms the allocator, the page tables and the socket buffers.
    let warm = frames.min(1000);
    if let Err(e) = bench_tx(warm).and_then(|_| bench_rx(warm)) {
        eprintln!("vmm: bench net failed: {e}");
        return ExitCode::from(exit_code::FAILED);
    }
    println!(
        "virtio-net, {BENCH_FRAME_LEN}-byte frames, socketpair backend, {frames} frames each way"
    );
    for (name, result) in [
        ("tx guest->host", bench_tx(frames)),
        ("rx host->guest", bench_rx(frames)),
    ] {
        match result {
            Ok(r) => print_result(name, &r),
            Err(e) => {
                eprintln!("vmm: bench net {name} failed: {e}");
                return ExitCode::from(exit_code::FAILED);
            }
        }
    }
    ExitCode::SUCCESS
}

fn print_result(name: &str, r: &PathResult) {
    let mbit = r.frames_per_sec() * BENCH_FRAME_LEN as f64 * 8.0 / 1e6;
    let cpu = r
        .worker_micros_per_frame()
        .map_or("n/a".to_string(), |us| format!("{us:.2}"));
    println!(
        "  {name}: {:>8.0} frames/s  {:>6.2} us/frame wall  {cpu:>6} us/frame device CPU  \
         {mbit:>6.0} Mbit/s  ({} dropped)",
        r.frames_per_sec(),
        r.micros_per_frame(),
        r.dropped
    );
}
