//! The virtio-mmio register layout (virtio 1.x §4.2.2, table "MMIO Device Register
//! Layout"): what the transport answers, and what a driver (the test driver, the
//! in-process benches) writes.

/// "virt" in little endian.
pub(crate) const MAGIC_VALUE: u32 = 0x7472_6976;
/// virtio-mmio version 2 is the virtio 1.x (non-legacy) layout.
pub(crate) const MMIO_VERSION: u32 = 2;
/// No PCI vendor behind an MMIO device; Firecracker and Cloud Hypervisor report 0.
pub(crate) const VENDOR_ID: u32 = 0;

// Register offsets (virtio 1.x §4.2.2, table "MMIO Device Register Layout").
pub(crate) const MAGIC: u64 = 0x00;
pub(crate) const VERSION: u64 = 0x04;
pub(crate) const DEVICE_ID: u64 = 0x08;
pub(crate) const VENDOR: u64 = 0x0c;
pub(crate) const DEVICE_FEATURES: u64 = 0x10;
pub(crate) const DEVICE_FEATURES_SEL: u64 = 0x14;
pub(crate) const DRIVER_FEATURES: u64 = 0x20;
pub(crate) const DRIVER_FEATURES_SEL: u64 = 0x24;
pub(crate) const QUEUE_SEL: u64 = 0x30;
pub(crate) const QUEUE_NUM_MAX: u64 = 0x34;
pub(crate) const QUEUE_NUM: u64 = 0x38;
pub(crate) const QUEUE_READY: u64 = 0x44;
pub(crate) const QUEUE_NOTIFY: u64 = 0x50;
pub(crate) const INTERRUPT_STATUS: u64 = 0x60;
pub(crate) const INTERRUPT_ACK: u64 = 0x64;
pub(crate) const STATUS: u64 = 0x70;
pub(crate) const QUEUE_DESC_LOW: u64 = 0x80;
pub(crate) const QUEUE_DESC_HIGH: u64 = 0x84;
pub(crate) const QUEUE_DRIVER_LOW: u64 = 0x90;
pub(crate) const QUEUE_DRIVER_HIGH: u64 = 0x94;
pub(crate) const QUEUE_DEVICE_LOW: u64 = 0xa0;
pub(crate) const QUEUE_DEVICE_HIGH: u64 = 0xa4;
pub(crate) const CONFIG_GENERATION: u64 = 0xfc;
pub(crate) const CONFIG: u64 = 0x100;
