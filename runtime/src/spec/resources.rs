//! A bundle's `linux.resources`: each value this runtime applies is checked here (memory
//! limit, swap, reservation and swappiness; pids; CPU quota, period, shares and burst;
//! device rules), and every other field is refused by name, so no limit is silently
//! dropped.
//!
//! OCI limits say 0 for "not set" and -1 for "no limit": either leaves the new group at
//! its default, which is no limit (swap aside: by default this runtime ends swap at the
//! memory limit, and -1 lifts that). Other negative values are refused, as are values the
//! kernel would refuse (a CPU quota under 1 ms, a period outside 1 ms to 1 s, swappiness
//! over 100).

use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxResources};
use serde::Serialize;

use super::super::config::{CpuQuota, DeviceRule, Resources};
use super::super::error::{ContainerError, Result};
use super::super::options::CPU_PERIOD_US;

/// The CFS bandwidth period and quota the kernel takes, in µs (1 ms to 1 s; quota ≥ 1 ms).
const CFS_MIN_US: u64 = 1_000;
const CFS_PERIOD_MAX_US: u64 = 1_000_000;

fn unsupported(field: &str) -> ContainerError {
    ContainerError::Unsupported(format!("linux.resources.{field}"))
}

fn invalid(field: &'static str, value: impl ToString, reason: impl Into<String>) -> ContainerError {
    ContainerError::invalid(field, &value.to_string(), reason)
}

/// True when `value` asks for something: present and not an empty object or list.
fn is_set<T: Serialize>(value: &Option<T>) -> bool {
    match value.as_ref().map(serde_json::to_value) {
        None => false,
        Some(Ok(serde_json::Value::Object(o))) => !o.is_empty(),
        Some(Ok(serde_json::Value::Array(a))) => !a.is_empty(),
        Some(_) => true,
    }
}

/// The limits of `linux.resources` (its device rules: [`device_rules`]).
pub fn resources(r: Option<&LinuxResources>) -> Result<Resources> {
    let Some(r) = r else {
        return Ok(Resources::default());
    };
    let unapplied = [
        ("blockIO", is_set(r.block_io())),
        ("hugepageLimits", is_set(r.hugepage_limits())),
        ("network", is_set(r.network())),
        ("rdma", is_set(r.rdma())),
        ("unified", is_set(r.unified())),
    ];
    if let Some((field, _)) = unapplied.iter().find(|(_, set)| *set) {
        return Err(unsupported(field));
    }
    let mut out = Resources::default();
    if let Some(m) = r.memory() {
        memory(m, &mut out)?;
    }
    if let Some(p) = r.pids() {
        out.pids = limit("linux.resources.pids.limit", Some(p.limit()))?;
    }
    if let Some(c) = r.cpu() {
        cpu(c, &mut out)?;
    }
    Ok(out)
}

/// An OCI limit in bytes or tasks: positive, or unset (0, -1 or absent).
fn limit(field: &'static str, value: Option<i64>) -> Result<Option<i64>> {
    match value {
        None | Some(0) | Some(-1) => Ok(None),
        Some(v) if v > 0 => Ok(Some(v)),
        Some(v) => Err(invalid(field, v, "must be positive, or -1 for no limit")),
    }
}

fn memory(m: &LinuxMemory, out: &mut Resources) -> Result<()> {
    // Kernel memory limits are gone from the kernel (5.4; v2 never had them); a disabled
    // OOM killer would leave a workload at its limit hanging instead of killed; and
    // hierarchical accounting is always on.
    let refused = [
        ("kernel", m.kernel().is_some()),
        ("kernelTCP", m.kernel_tcp().is_some()),
        ("disableOOMKiller", m.disable_oom_killer() == Some(true)),
        ("useHierarchy", m.use_hierarchy() == Some(false)),
    ];
    if let Some((field, _)) = refused.iter().find(|(_, set)| *set) {
        return Err(unsupported(&format!("memory.{field}")));
    }
    out.memory = limit("linux.resources.memory.limit", m.limit())?;
    out.memory_reservation = limit("linux.resources.memory.reservation", m.reservation())?;
    out.memory_swap = swap(m.swap(), out.memory)?;
    if let Some(s) = m.swappiness() {
        if s > 100 {
            return Err(invalid(
                "linux.resources.memory.swappiness",
                s,
                "must be 0 to 100",
            ));
        }
        out.memory_swappiness = Some(s);
    }
    // checkBeforeUpdate is about `update`, which this runtime does not have.
    Ok(())
}

/// `memory.swap`, the limit of memory plus swap: at least the memory limit, or -1 for no
/// swap limit.
fn swap(swap: Option<i64>, memory: Option<i64>) -> Result<Option<i64>> {
    const FIELD: &str = "linux.resources.memory.swap";
    match (swap, memory) {
        (None | Some(0), _) => Ok(None),
        // Without a memory limit, swap has none either.
        (Some(-1), m) => Ok(m.map(|_| -1)),
        (Some(s), _) if s < -1 => Err(invalid(FIELD, s, "must be positive, or -1 for no limit")),
        (Some(s), None) => Err(invalid(
            FIELD,
            s,
            "limits memory plus swap, and needs memory.limit",
        )),
        (Some(s), Some(m)) if s < m => Err(invalid(
            FIELD,
            s,
            format!("limits memory plus swap, and cannot be below memory.limit ({m})"),
        )),
        (Some(s), Some(_)) => Ok(Some(s)),
    }
}

fn cpu(c: &LinuxCpu, out: &mut Resources) -> Result<()> {
    let text_set = |t: &Option<String>| t.as_deref().is_some_and(|t| !t.trim().is_empty());
    let refused = [
        ("cpus", text_set(c.cpus())),
        ("mems", text_set(c.mems())),
        (
            "realtimeRuntime",
            c.realtime_runtime().is_some_and(|r| r != 0),
        ),
        (
            "realtimePeriod",
            c.realtime_period().is_some_and(|p| p != 0),
        ),
        ("idle", c.idle().is_some_and(|i| i != 0)),
    ];
    if let Some((field, _)) = refused.iter().find(|(_, set)| *set) {
        return Err(unsupported(&format!("cpu.{field}")));
    }
    if let Some(shares) = c.shares() {
        if !(2..=262_144).contains(&shares) {
            return Err(invalid(
                "linux.resources.cpu.shares",
                shares,
                "must be 2 to 262144",
            ));
        }
        out.cpu_shares = Some(shares);
    }
    let quota = match c.quota() {
        None | Some(0) | Some(-1) => None,
        Some(q) if q >= CFS_MIN_US as i64 => Some(q),
        Some(q) => {
            return Err(invalid(
                "linux.resources.cpu.quota",
                q,
                "must be at least 1000 (µs), or -1 for no limit",
            ))
        }
    };
    if let Some(p) = c.period() {
        if !(CFS_MIN_US..=CFS_PERIOD_MAX_US).contains(&p) {
            return Err(invalid(
                "linux.resources.cpu.period",
                p,
                "must be 1000 to 1000000 (µs)",
            ));
        }
    }
    out.cpu = match (quota, c.period()) {
        (Some(quota), period) => Some(CpuQuota {
            quota,
            period: period.unwrap_or(CPU_PERIOD_US),
        }),
        // A period alone: the period is set, with no quota.
        (None, Some(period)) => Some(CpuQuota {
            quota: CpuQuota::UNLIMITED,
            period,
        }),
        (None, None) => None,
    };
    out.cpu_burst = match (c.burst(), quota) {
        (None | Some(0), _) => None,
        (Some(b), Some(q)) if b <= q as u64 => Some(b),
        (Some(b), Some(q)) => {
            return Err(invalid(
                "linux.resources.cpu.burst",
                b,
                format!("cannot exceed cpu.quota ({q})"),
            ))
        }
        (Some(b), None) => {
            return Err(invalid(
                "linux.resources.cpu.burst",
                b,
                "needs a cpu.quota to burst above",
            ))
        }
    };
    Ok(())
}

/// `linux.resources.devices` as v1 rules: a missing type is `a`, a missing number `*`,
/// missing access `rwm`.
pub fn device_rules(r: Option<&LinuxResources>) -> Vec<DeviceRule> {
    let number = |n: Option<i64>| n.map_or("*".to_owned(), |n| n.to_string());
    r.and_then(|r| r.devices().clone())
        .unwrap_or_default()
        .iter()
        .map(|d| DeviceRule {
            allow: d.allow(),
            rule: format!(
                "{} {}:{} {}",
                d.typ().map_or("a".to_owned(), |t| t.as_str().to_owned()),
                number(d.major()),
                number(d.minor()),
                d.access().clone().unwrap_or_else(|| "rwm".to_owned())
            ),
        })
        .collect()
}
