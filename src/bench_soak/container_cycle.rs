//! One container run of the soak: `vmm-probe true` in `vmm compare`'s minimal rootfs, with
//! memory, pids and CPU limits (so a cgroup in each of those controllers), made, run and
//! removed in this process as `vmm container run` does it ([`runtime::run_state::run`]:
//! its state directory under /run/vmm/containers, its cgroups, its namespaces).

use std::path::PathBuf;

use runtime::config::ContainerConfig;
use runtime::options::{self, RunOptions};
use runtime::run_state;

use super::error::SoakError;
use super::snapshot::Scope;
use crate::compare;

const MEMORY_LIMIT: i64 = 64 << 20;
const PIDS_LIMIT: i64 = 64;
const CPUS: &str = "0.5";

pub struct SoakContainers {
    /// Run `i`'s config but for its ID, which is the soak's own per run.
    config: ContainerConfig,
    /// What every run's ID starts with (the soak's prefix).
    id_prefix: String,
}

impl SoakContainers {
    /// The container every run starts: the probe (`probe`, or the one beside this vmm) in
    /// the minimal rootfs `vmm compare` makes and caches.
    pub fn new(scope: &Scope, probe: Option<&PathBuf>) -> Result<Self, SoakError> {
        let probe = compare::probe_binary(probe).map_err(SoakError::Probe)?;
        let rootfs = compare::rootfs::minimal(&probe, &compare::rootfs::cache_dir())
            .map_err(SoakError::setup("make the probe's minimal rootfs"))?;
        let mut run = RunOptions::new(
            &rootfs.path,
            vec![
                compare::runner::PROBE_IN_ROOTFS.to_owned(),
                "true".to_owned(),
            ],
        );
        run.memory = Some(MEMORY_LIMIT);
        run.pids = Some(PIDS_LIMIT);
        run.cpus = Some(options::parse_cpus(CPUS).map_err(SoakError::BadInput)?);
        let config = options::config_from_options(&run)
            .map_err(|source| SoakError::Container { run: 0, source })?;
        Ok(Self {
            config,
            id_prefix: scope.prefix().to_owned(),
        })
    }

    /// Run `run`, under an ID of its own; an error unless the probe exited 0.
    pub fn run_once(&self, run: u32) -> Result<(), SoakError> {
        let mut config = self.config.clone();
        config.id = format!("{}-{run}", self.id_prefix);
        let outcome = run_state::run(&PathBuf::from(run_state::DEFAULT_ROOT), &config)
            .map_err(|source| SoakError::Container { run, source })?;
        match outcome.status {
            0 => Ok(()),
            status => Err(SoakError::ContainerStatus { run, status }),
        }
    }
}
