//! Virtio devices: planned (a window and an IRQ each, announced on the kernel command
//! line) before anything touches KVM, then created and attached: the transport goes on the
//! MMIO bus, each queue's notify register becomes a KVM ioeventfd and the device's
//! interrupt a KVM irqfd, so neither a notify nor an interrupt needs a userspace exit.

use std::sync::{Arc, Mutex, PoisonError};

use devices::virtio::mmio::{cmdline_arg, MmioTransport, QUEUE_NOTIFY_OFFSET};
use devices::virtio::rate_limiter::RateLimiterError;
use devices::virtio::{BalloonHandle, RateLimiterConfig, VirtioDevice};
use devices::Bus;
use kvm_ioctls::{IoEventAddress, VmFd};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::device_metrics::DeviceMetrics;
use super::device_slots::{DeviceSlot, DeviceSlots};
use super::device_specs::{BalloonSpec, DeviceSpecs, DiskSpec, NetSpec, RngSpec, VsockSpec};
use super::error::VmError;
use super::exit_stats::{DeviceNames, Registers};

mod restored;
pub use restored::attach_restored;

#[derive(Debug, Clone)]
pub enum VirtioSpec {
    Disk(DiskSpec),
    Net(NetSpec),
    Vsock(VsockSpec),
    Rng(RngSpec),
    Balloon(BalloonSpec),
}

impl VirtioSpec {
    /// The device type, as Linux's driver names it.
    pub fn kind(&self) -> &'static str {
        match self {
            VirtioSpec::Disk(_) => "blk",
            VirtioSpec::Net(_) => "net",
            VirtioSpec::Vsock(_) => "vsock",
            VirtioSpec::Rng(_) => "rng",
            VirtioSpec::Balloon(_) => "balloon",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PlannedDevice {
    pub spec: VirtioSpec,
    pub slot: DeviceSlot,
}

/// Gives every device its slot, the root disk first so that it is /dev/vda.
pub fn plan(specs: &DeviceSpecs) -> Result<Vec<PlannedDevice>, VmError> {
    let mut slots = DeviceSlots::new();
    let ordered = specs
        .rootfs
        .iter()
        .chain(&specs.disks)
        .cloned()
        .map(VirtioSpec::Disk)
        .chain(specs.nets.iter().cloned().map(VirtioSpec::Net))
        .chain(specs.vsock.iter().cloned().map(VirtioSpec::Vsock))
        .chain(specs.rng.iter().cloned().map(VirtioSpec::Rng))
        .chain(specs.balloon.iter().cloned().map(VirtioSpec::Balloon));
    ordered
        .map(|spec| {
            Ok(PlannedDevice {
                spec,
                slot: slots.allocate()?,
            })
        })
        .collect()
}

/// The command line the guest gets: the user's, `root=/dev/vda rw` for a root disk unless
/// the user chose a root, and one `virtio_mmio.device=` token per device.
pub fn guest_cmdline(user: &str, has_rootfs: bool, planned: &[PlannedDevice]) -> String {
    let mut cmdline = user.trim().to_string();
    let user_chose_root = user.split_whitespace().any(|t| t.starts_with("root="));
    if has_rootfs && !user_chose_root {
        push_token(&mut cmdline, "root=/dev/vda rw");
    }
    for device in planned {
        push_token(
            &mut cmdline,
            &cmdline_arg(device.slot.base, device.slot.len, device.slot.irq),
        );
    }
    cmdline
}

fn push_token(cmdline: &mut String, token: &str) {
    if !cmdline.is_empty() {
        cmdline.push(' ');
    }
    cmdline.push_str(token);
}

/// One attached device's transport, and where it is: a snapshot saves and resumes it.
#[derive(Clone)]
pub struct AttachedTransport {
    pub transport: Arc<Mutex<MmioTransport>>,
    pub kind: &'static str,
    pub slot: DeviceSlot,
}

impl AttachedTransport {
    /// "virtio-blk at 0xd0000000", for errors.
    pub fn name(&self) -> String {
        device_name(self.kind, self.slot.base)
    }
}

fn device_name(kind: &str, base: u64) -> String {
    format!("virtio-{kind} at {base:#x}")
}

/// The attached devices. Dropping this stops every device's worker.
pub struct AttachedVirtio {
    /// In window order.
    pub transports: Vec<AttachedTransport>,
    /// The balloon's statistics and target, when the VM has one.
    pub balloon: Option<BalloonHandle>,
    /// Every device's error counts.
    pub metrics: DeviceMetrics,
}

/// Creates each planned device and attaches it to the VM, naming its window in `names`.
pub fn attach(
    vm: &VmFd,
    mem: &GuestMemoryMmap,
    mmio_bus: &mut Bus,
    names: &mut DeviceNames,
    planned: &[PlannedDevice],
) -> Result<AttachedVirtio, VmError> {
    attach_with(vm, mmio_bus, names, planned, |index, model, irq| {
        MmioTransport::new(mem.clone(), model, irq).map_err(|source| VmError::DeviceIo {
            device: device_name(planned[index].spec.kind(), planned[index].slot.base),
            op: "creating its virtio-mmio transport",
            source,
        })
    })
}

/// Creates each planned device, has `make` put the `index`th in its transport (new or
/// restored) with its interrupt, and attaches it.
fn attach_with(
    vm: &VmFd,
    mmio_bus: &mut Bus,
    names: &mut DeviceNames,
    planned: &[PlannedDevice],
    mut make: impl FnMut(usize, Box<dyn VirtioDevice>, EventFd) -> Result<MmioTransport, VmError>,
) -> Result<AttachedVirtio, VmError> {
    let mut balloon = None;
    let metrics = DeviceMetrics::default();
    let transports = planned
        .iter()
        .enumerate()
        .map(|(index, device)| {
            let model = create_device(&device.spec, &mut balloon)?;
            let transport = attach_one(vm, mmio_bus, model, device, |model, irq| {
                make(index, model, irq)
            })?;
            let errors = transport
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .errors()
                .clone();
            metrics.add(device.spec.kind(), device.slot.base, errors);
            names.add_mmio(
                device.slot.base,
                device.slot.len,
                &format!("virtio-mmio ({})", device.spec.kind()),
                Registers::VirtioMmio,
            );
            Ok::<_, VmError>(AttachedTransport {
                transport,
                kind: device.spec.kind(),
                slot: device.slot,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(AttachedVirtio {
        transports,
        balloon,
        metrics,
    })
}

/// One line about the balloon for the user at exit: what was asked, what the guest did,
/// and its last memory statistics when it sends them.
pub fn balloon_summary(handle: &BalloonHandle) -> String {
    let s = handle.stats();
    let mib = |bytes: Option<u64>| bytes.map_or("?".to_string(), |b| (b >> 20).to_string());
    let mut line = format!(
        "balloon: target {} MiB, guest reached {} MiB; {} pages returned to the host, {} taken back",
        s.target_mib, s.actual_mib, s.inflated_pages, s.deflated_pages
    );
    if s.stats_updates > 0 {
        line.push_str(&format!(
            "; guest memory: {} MiB free, {} MiB available of {} MiB ({} statistics updates)",
            mib(s.free_memory),
            mib(s.available_memory),
            mib(s.total_memory),
            s.stats_updates
        ));
    }
    line
}

fn create_device(
    spec: &VirtioSpec,
    balloon_handle: &mut Option<BalloonHandle>,
) -> Result<Box<dyn VirtioDevice>, VmError> {
    use devices::virtio::{Balloon, Block, Net, QueueLimiter, Rng, Tap, Vsock};
    // The device's own error stays the source: "disk …: disk image … is a FIFO, not a
    // regular file or a block device" is printed whole at the edge.
    fn device_err<E>(what: String) -> impl FnOnce(E) -> VmError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        move |e| VmError::Device {
            what,
            source: Box::new(e),
        }
    }
    // The limits were checked when parsed: only making a limiter's timerfd can fail here.
    fn limiter(
        config: Option<RateLimiterConfig>,
        device: impl Fn() -> String,
    ) -> Result<QueueLimiter, VmError> {
        QueueLimiter::from_config(config).map_err(|e| match e {
            RateLimiterError::Timer(source) => VmError::DeviceIo {
                device: device(),
                op: "creating its rate limiter's timerfd",
                source,
            },
            bad => device_err(device())(bad),
        })
    }
    Ok(match spec {
        VirtioSpec::Disk(d) => {
            let what = || format!("disk {:?}", d.path);
            let block =
                Block::new(&d.path, d.read_only, d.id.clone()).map_err(device_err(what()))?;
            Box::new(block.with_rate_limiter(limiter(d.rate_limiter, what)?))
        }
        VirtioSpec::Net(n) => {
            let what = || format!("network tap {:?}", n.tap);
            let rx = limiter(n.rx_rate_limiter, what)?;
            let tx = limiter(n.tx_rate_limiter, what)?;
            let tap = Tap::open_or_create(&n.tap).map_err(device_err(what()))?;
            Box::new(Net::new(tap, n.mac).with_rate_limiters(rx, tx))
        }
        VirtioSpec::Vsock(v) => Box::new(
            Vsock::new(v.guest_cid, &v.uds_path)
                .map_err(device_err(format!("vsock on {:?}", v.uds_path)))?,
        ),
        VirtioSpec::Rng(r) => {
            Box::new(Rng::new().with_rate_limiter(limiter(r.rate_limiter, || "rng".into())?))
        }
        VirtioSpec::Balloon(b) => {
            let balloon = Balloon::new(b.amount_mib, b.deflate_on_oom, b.stats_interval_s);
            *balloon_handle = Some(balloon.handle());
            Box::new(balloon)
        }
    })
}

fn attach_one(
    vm: &VmFd,
    mmio_bus: &mut Bus,
    model: Box<dyn VirtioDevice>,
    planned: &PlannedDevice,
    make: impl FnOnce(Box<dyn VirtioDevice>, EventFd) -> Result<MmioTransport, VmError>,
) -> Result<Arc<Mutex<MmioTransport>>, VmError> {
    let slot = planned.slot;
    // Names the device in every error below: "virtio-blk at 0xd0000000".
    let device = device_name(planned.spec.kind(), slot.base);
    let kvm_failed = |op: String| {
        let device = device.clone();
        move |source| VmError::DeviceKvm { device, op, source }
    };
    let io_failed = |op: &'static str| {
        let device = device.clone();
        move |source| VmError::DeviceIo { device, op, source }
    };
    let irq = EventFd::new(EFD_NONBLOCK).map_err(io_failed("creating its interrupt eventfd"))?;
    let transport = make(model, irq)?;
    for (index, evt) in transport.queue_evts().iter().enumerate() {
        vm.register_ioevent(
            evt,
            &IoEventAddress::Mmio(slot.base + QUEUE_NOTIFY_OFFSET),
            index as u32,
        )
        .map_err(kvm_failed(format!(
            "registering the notify ioeventfd of queue {index}"
        )))?;
    }
    vm.register_irqfd(transport.interrupt().irq_eventfd(), slot.irq)
        .map_err(kvm_failed(format!(
            "registering its irqfd (IRQ {})",
            slot.irq
        )))?;
    let transport = Arc::new(Mutex::new(transport));
    mmio_bus
        .insert(slot.base, slot.len, transport.clone())
        .map_err(|source| VmError::BusPlacement {
            device,
            bus: "MMIO",
            source,
        })?;
    Ok(transport)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn disk(path: &str) -> DiskSpec {
        DiskSpec {
            path: PathBuf::from(path),
            read_only: false,
            id: None,
            rate_limiter: None,
        }
    }

    #[test]
    fn root_disk_comes_first_and_gets_the_first_window() {
        let specs = DeviceSpecs {
            rootfs: Some(disk("root.img")),
            disks: vec![disk("data.img")],
            rng: Some(RngSpec::default()),
            ..Default::default()
        };
        let planned = plan(&specs).unwrap();
        assert_eq!(planned.len(), 3);
        match &planned[0].spec {
            VirtioSpec::Disk(d) => assert_eq!(d.path, PathBuf::from("root.img")),
            other => panic!("first device is {other:?}"),
        }
        assert!(matches!(planned[2].spec, VirtioSpec::Rng(_)));
    }

    #[test]
    fn cmdline_gets_root_and_one_token_per_device() {
        let specs = DeviceSpecs {
            rootfs: Some(disk("root.img")),
            ..Default::default()
        };
        let planned = plan(&specs).unwrap();
        let cmdline = guest_cmdline("console=ttyS0", true, &planned);
        assert!(
            cmdline
                .starts_with("console=ttyS0 root=/dev/vda rw virtio_mmio.device=4K@0xd0000000:5"),
            "{cmdline}"
        );
    }

    #[test]
    fn users_root_is_kept() {
        let specs = DeviceSpecs {
            rootfs: Some(disk("root.img")),
            ..Default::default()
        };
        let planned = plan(&specs).unwrap();
        let cmdline = guest_cmdline("root=/dev/vda1 ro", true, &planned);
        assert!(!cmdline.contains("/dev/vda rw"), "{cmdline}");
    }
}
