//! The register traffic of the MMIO target: random reads and writes at any offset and
//! width, and the steps of a correct driver, each turned into the accesses it is made of.

use proptest::prelude::*;
use proptest::sample::select;
use virtio_bindings::virtio_config::VIRTIO_CONFIG_S_ACKNOWLEDGE;
use vm_memory::GuestMemoryMmap;

use super::model::QUEUE_REGS;
use super::{FEATURES, INIT, LIVE};
use crate::virtio::fuzz::ring::driver_queue;
use crate::virtio::mmio::regs::*;

/// One step of the driver.
#[derive(Debug, Clone)]
pub(super) enum Op {
    Read {
        offset: u64,
        width: usize,
    },
    Write {
        offset: u64,
        width: usize,
        value: u64,
    },
    /// ACKNOWLEDGE, DRIVER, the offered features masked, FEATURES_OK.
    Negotiate {
        mask: u64,
    },
    /// Queue `index` set up with a valid layout of `size` entries and made ready.
    SetupQueue {
        index: u32,
        size: u32,
    },
    /// DRIVER_OK.
    Live,
    /// Status 0.
    Reset,
}

/// Every register but the selected queue's own (`model::QUEUE_REGS`), and the start of
/// the config space.
const OTHER_REGISTERS: [u64; 16] = [
    MAGIC,
    VERSION,
    DEVICE_ID,
    VENDOR,
    DEVICE_FEATURES,
    DEVICE_FEATURES_SEL,
    DRIVER_FEATURES,
    DRIVER_FEATURES_SEL,
    QUEUE_SEL,
    QUEUE_NUM_MAX,
    QUEUE_NOTIFY,
    INTERRUPT_STATUS,
    INTERRUPT_ACK,
    STATUS,
    CONFIG_GENERATION,
    CONFIG,
];

fn register() -> impl Strategy<Value = u64> {
    select([OTHER_REGISTERS.as_slice(), QUEUE_REGS.as_slice()].concat())
}

fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => register(),
        2 => (register(), 1..4u64).prop_map(|(r, d)| r + d),
        2 => CONFIG..CONFIG + 0x40,
        1 => 0..0x1000u64,
        1 => select(vec![0x1000, 0x1004, 0xffc, 0xfff, u64::MAX, u64::MAX - 3, u64::MAX - 0x100]),
        1 => any::<u64>(),
    ]
}

fn width() -> impl Strategy<Value = usize> {
    prop_oneof![6 => Just(4usize), 1 => Just(1), 1 => Just(2), 1 => Just(8)]
}

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => select(vec![0u64, 1, 2, 3, 4, 8, 11, 15, 16, 32, 0x40, 0x80, 0x8b, 256, 512, 0x1000, 0x2000, 0xffff_ffff]),
        1 => any::<u32>().prop_map(u64::from),
        1 => any::<u64>(),
    ]
}

pub(super) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (offset(), width()).prop_map(|(offset, width)| Op::Read { offset, width }),
        6 => (offset(), width(), value()).prop_map(|(offset, width, value)| Op::Write { offset, width, value }),
        1 => prop_oneof![3 => Just(u64::MAX), 1 => any::<u64>()].prop_map(|mask| Op::Negotiate { mask }),
        2 => (0..4u32, prop_oneof![4 => (0..6u32).prop_map(|p| 1 << p), 1 => any::<u32>()])
            .prop_map(|(index, size)| Op::SetupQueue { index, size }),
        1 => Just(Op::Live),
        1 => Just(Op::Reset),
    ]
}

/// A register access: a read (`None`) or a write of `value`'s low `width` bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Access {
    pub offset: u64,
    pub width: usize,
    pub write: Option<u64>,
}

fn write4(offset: u64, value: u32) -> Access {
    Access {
        offset,
        width: 4,
        write: Some(u64::from(value)),
    }
}

/// The accesses a step is made of, for a device offering `offered`.
pub(super) fn accesses(op: &Op, offered: u64, mem: &GuestMemoryMmap) -> Vec<Access> {
    match *op {
        Op::Read { offset, width } => vec![Access {
            offset,
            width,
            write: None,
        }],
        Op::Write {
            offset,
            width,
            value,
        } => vec![Access {
            offset,
            width,
            write: Some(value),
        }],
        Op::Negotiate { mask } => {
            let features = offered & mask;
            vec![
                write4(STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE),
                write4(STATUS, INIT),
                write4(DRIVER_FEATURES_SEL, 0),
                write4(DRIVER_FEATURES, features as u32),
                write4(DRIVER_FEATURES_SEL, 1),
                write4(DRIVER_FEATURES, (features >> 32) as u32),
                write4(STATUS, FEATURES),
            ]
        }
        Op::SetupQueue { index, size } => {
            // The layout of a 32-entry queue at the queue's slot fits any smaller one.
            let vq = driver_queue(mem, index as usize, 32);
            let [desc, avail, used] = vq.ring_ranges().map(|r| r.start);
            let mut v = vec![write4(QUEUE_SEL, index), write4(QUEUE_NUM, size)];
            for (low, addr) in [
                (QUEUE_DESC_LOW, desc),
                (QUEUE_DRIVER_LOW, avail),
                (QUEUE_DEVICE_LOW, used),
            ] {
                v.push(write4(low, addr as u32));
                v.push(write4(low + 4, (addr >> 32) as u32));
            }
            v.push(write4(QUEUE_READY, 1));
            v
        }
        Op::Live => vec![write4(STATUS, LIVE)],
        Op::Reset => vec![write4(STATUS, 0)],
    }
}
