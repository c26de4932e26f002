//! Test seam, debug builds only (integration tests run the debug build; release has no
//! such code): `VMM_TEST_SNAPSHOT=STATE,MEM,DELAY_MS[,AFTER]` snapshots the running VM
//! from a thread of its own, as the API socket's `PATCH /vm` and `PUT /snapshot/create`
//! will: DELAY_MS after the vCPUs start it pauses the VM, writes the snapshot, says so on
//! stderr (`vmm: test snapshot written` or `vmm: test snapshot failed: …`), and then, as
//! AFTER says, `stay`s paused (the default: the test kills the VMM, as a crash would) or
//! `resume`s.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::control::VmControl;
use super::VmError;

const VAR: &str = "VMM_TEST_SNAPSHOT";

struct Plan {
    state: PathBuf,
    mem: PathBuf,
    delay: Duration,
    resume: bool,
}

fn plan() -> Result<Option<Plan>, VmError> {
    let Some(value) = std::env::var_os(VAR) else {
        return Ok(None);
    };
    let value = value.to_string_lossy().into_owned();
    let bad = || VmError::Io {
        op: "reading VMM_TEST_SNAPSHOT (STATE,MEM,DELAY_MS[,stay|resume])",
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    };
    let parts: Vec<&str> = value.split(',').collect();
    let (state, mem, delay, after) = match parts[..] {
        [s, m, d] => (s, m, d, "stay"),
        [s, m, d, a] => (s, m, d, a),
        _ => return Err(bad()),
    };
    let delay = Duration::from_millis(delay.parse().map_err(|_| bad())?);
    let resume = match after {
        "stay" => false,
        "resume" => true,
        _ => return Err(bad()),
    };
    Ok(Some(Plan {
        state: state.into(),
        mem: mem.into(),
        delay,
        resume,
    }))
}

/// The control the run uses: the caller's, or one made for the seam when it is asked for.
pub fn control_for(control: Option<Arc<VmControl>>) -> Result<Option<Arc<VmControl>>, VmError> {
    Ok(match (control, plan()?) {
        (Some(control), _) => Some(control),
        (None, Some(_)) => Some(VmControl::new()),
        (None, None) => None,
    })
}

/// Starts the seam's thread, when it is asked for. Started by the VM's own (unconfined)
/// thread, so it runs without a seccomp filter, as the VM's builder does.
pub fn start(control: Option<&Arc<VmControl>>) {
    let (Ok(Some(plan)), Some(control)) = (plan(), control) else {
        return;
    };
    let control = control.clone();
    let spawned = std::thread::Builder::new()
        .name("vmm-test-snapshot".into())
        .spawn(move || {
            std::thread::sleep(plan.delay);
            let taken = control
                .pause()
                .and_then(|()| control.snapshot(&plan.state, &plan.mem));
            match taken {
                Ok(()) => eprintln!("vmm: test snapshot written"),
                Err(e) => eprintln!("vmm: test snapshot failed: {}", edge::error_chain(&e)),
            }
            if plan.resume {
                let _ = control.resume();
            }
        });
    if let Err(e) = spawned {
        eprintln!("vmm: test snapshot failed: starting its thread: {e}");
    }
}
