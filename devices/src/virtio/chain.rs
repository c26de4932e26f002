//! Taking a descriptor chain off a queue, checked once for every device.
//!
//! virtio-queue's `DescriptorChain` follows an indirect descriptor (VIRTQ_DESC_F_INDIRECT)
//! into a table of up to 65535 entries whether or not the driver negotiated
//! VIRTIO_RING_F_INDIRECT_DESC, and reads each descriptor from guest memory again every
//! time it is walked. So a guest could make a device walk 65535 descriptors per chain, and
//! a check made before the walk could be undone by the guest between the two reads. Here
//! the chain is read from guest memory once, into a copy that is checked and is all the
//! device ever sees:
//! - no descriptor may refer to an indirect table: no device offers
//!   VIRTIO_RING_F_INDIRECT_DESC and the transport never shows it (see `mmio`), so a
//!   driver cannot have negotiated it;
//! - the chain must end within the queue's size (more descriptors than the table holds
//!   means a loop), every `next` index must lie in the table, and the lengths must add up
//!   to less than 4 GiB (§2.7.5.2).
//!
//! A chain that breaks a rule is still taken off the queue, as a malformed one: its
//! [`Chain::descriptors`], [`Reader`] and [`Writer`] are errors, so each device handles it
//! the way it handles any malformed chain (counted as rejected, and given back with length
//! 0 or answered with DEVICE_NEEDS_RESET). [`Reader`] and [`Writer`] give the readable and
//! writable buffers of a well-formed chain as byte streams.

use std::collections::VecDeque;
use std::io;

use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Error, Queue, QueueOwnedT, QueueT};
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryError, GuestMemoryMmap,
};

/// The bytes of one split-queue descriptor in the table.
const DESC_SIZE: u64 = 16;

/// A chain taken off a queue and checked (see the module docs).
#[derive(Debug)]
pub struct Chain {
    head: u16,
    /// The descriptors, or the rule the chain broke.
    descs: Result<Vec<Descriptor>, Error>,
}

impl Chain {
    /// The index of the chain's first descriptor, which the used ring gives back.
    pub fn head_index(&self) -> u16 {
        self.head
    }

    /// The descriptors, in chain order (the last one has no NEXT flag), or the rule the
    /// chain broke.
    pub fn descriptors(&self) -> Result<&[Descriptor], &Error> {
        self.descs.as_deref()
    }
}

/// Takes the next available chain off `queue`, or `None` when the driver has made none
/// available; a malformed chain comes back as such (see the module docs). An error when
/// the available index runs more than a queue ahead: the queue itself is broken.
pub fn pop(queue: &mut Queue, mem: &GuestMemoryMmap) -> Result<Option<Chain>, Error> {
    let Some(head) = queue.iter(mem)?.next().map(|chain| chain.head_index()) else {
        return Ok(None);
    };
    let descs = read_chain(mem, GuestAddress(queue.desc_table()), queue.size(), head);
    Ok(Some(Chain { head, descs }))
}

/// Copies the chain from `head` out of the `size`-entry table at `table`, reading each
/// descriptor once, and checks it.
fn read_chain(
    mem: &GuestMemoryMmap,
    table: GuestAddress,
    size: u16,
    head: u16,
) -> Result<Vec<Descriptor>, Error> {
    let mut descs = Vec::new();
    let mut total_len: u32 = 0;
    let mut index = head;
    loop {
        if descs.len() == usize::from(size) {
            // Every descriptor of the table is in the chain and the last still says NEXT.
            return Err(Error::InvalidChain);
        }
        if index >= size {
            return Err(Error::InvalidDescriptorIndex);
        }
        let addr = table
            .checked_add(u64::from(index) * DESC_SIZE)
            .ok_or(Error::AddressOverflow)?;
        let desc: Descriptor = mem.read_obj(addr).map_err(Error::GuestMemory)?;
        if desc.refers_to_indirect_table() {
            return Err(Error::InvalidIndirectDescriptor);
        }
        total_len = total_len
            .checked_add(desc.len())
            .ok_or(Error::DescriptorChainOverflow)?;
        descs.push(desc);
        if !desc.has_next() {
            return Ok(descs);
        }
        index = desc.next();
    }
}

/// The buffers of one direction of a chain, each checked to lie in guest memory.
#[derive(Debug)]
struct Buffers<'a> {
    mem: &'a GuestMemoryMmap,
    /// (address, bytes left) of each buffer not used up yet, in order.
    left: VecDeque<(GuestAddress, usize)>,
    done: usize,
}

impl<'a> Buffers<'a> {
    fn new(mem: &'a GuestMemoryMmap, chain: &Chain, writable: bool) -> Result<Self, Error> {
        let descs = chain.descriptors().map_err(|_| Error::InvalidChain)?;
        let mut left = VecDeque::new();
        for d in descs.iter().filter(|d| d.is_write_only() == writable) {
            let len = d.len() as usize;
            if len == 0 {
                continue;
            }
            if !mem.check_range(d.addr(), len) {
                return Err(Error::GuestMemory(GuestMemoryError::InvalidGuestAddress(
                    d.addr(),
                )));
            }
            left.push_back((d.addr(), len));
        }
        Ok(Buffers { mem, left, done: 0 })
    }

    fn available(&self) -> usize {
        self.left.iter().map(|&(_, len)| len).sum()
    }

    /// Copies between guest memory and `buf` with `copy(guest address, part of buf)`,
    /// as far as both reach; the bytes copied.
    fn copy(
        &mut self,
        len: usize,
        mut copy: impl FnMut(GuestAddress, std::ops::Range<usize>) -> Result<(), GuestMemoryError>,
    ) -> io::Result<usize> {
        let mut at = 0;
        while at < len {
            let Some((addr, left)) = self.left.front_mut() else {
                break;
            };
            let n = (*left).min(len - at);
            copy(*addr, at..at + n).map_err(io::Error::other)?;
            at += n;
            *left -= n;
            // Inside the buffer checked in `new`, so no overflow.
            *addr = addr.unchecked_add(n as u64);
            if *left == 0 {
                self.left.pop_front();
            }
        }
        self.done += at;
        Ok(at)
    }
}

/// The device-readable buffers of a checked chain as one byte stream.
#[derive(Debug)]
pub struct Reader<'a>(Buffers<'a>);

impl<'a> Reader<'a> {
    /// An error when the chain is malformed or a readable buffer does not lie in guest
    /// memory.
    pub fn new(mem: &'a GuestMemoryMmap, chain: &Chain) -> Result<Self, Error> {
        Buffers::new(mem, chain, false).map(Reader)
    }

    /// Bytes not read yet.
    pub fn available_bytes(&self) -> usize {
        self.0.available()
    }
}

impl io::Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mem = self.0.mem;
        self.0.copy(buf.len(), |addr, range| {
            mem.read_slice(&mut buf[range], addr)
        })
    }
}

/// The device-writable buffers of a checked chain as one byte stream.
#[derive(Debug)]
pub struct Writer<'a>(Buffers<'a>);

impl<'a> Writer<'a> {
    /// An error when the chain is malformed or a writable buffer does not lie in guest
    /// memory.
    pub fn new(mem: &'a GuestMemoryMmap, chain: &Chain) -> Result<Self, Error> {
        Buffers::new(mem, chain, true).map(Writer)
    }

    /// Room not written yet.
    pub fn available_bytes(&self) -> usize {
        self.0.available()
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> usize {
        self.0.done
    }
}

impl io::Write for Writer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mem = self.0.mem;
        self.0
            .copy(buf.len(), |addr, range| mem.write_slice(&buf[range], addr))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use virtio_bindings::virtio_ring::{
        VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
    };
    use virtio_queue::desc::RawDescriptor;

    use super::*;
    use crate::testing::DriverQueue;

    const QSIZE: u16 = 16;
    const BUF: u64 = 0x1_0000;
    const NEXT: u16 = VRING_DESC_F_NEXT as u16;
    const WRITE: u16 = VRING_DESC_F_WRITE as u16;
    const INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;

    fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
        RawDescriptor::from(Descriptor::new(addr, len, flags, next))
    }

    /// The rule the next chain on `q` broke.
    fn refusal(q: &mut Queue, mem: &GuestMemoryMmap) -> Error {
        let chain = pop(q, mem).unwrap().unwrap();
        assert!(Reader::new(mem, &chain).is_err());
        assert!(Writer::new(mem, &chain).is_err());
        chain.descs.unwrap_err()
    }

    /// Guest memory with a driver's queue at 0 and the device's view of it.
    fn queue() -> (GuestMemoryMmap, DriverQueue, Queue) {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let vq = DriverQueue::new(&mem, 0, QSIZE).unwrap();
        let q = vq.create_queue().unwrap();
        (mem, vq, q)
    }

    #[test]
    fn a_malformed_chain_is_taken_off_the_queue_and_the_next_one_served() {
        let (mem, vq, mut q) = queue();
        let descs = [desc(BUF, 16, INDIRECT, 0), desc(BUF, 1, 0, 0)];
        vq.add_desc_chains(&descs, 0).unwrap();
        let bad = pop(&mut q, &mem).unwrap().unwrap();
        assert_eq!(bad.head_index(), 0);
        assert!(bad.descriptors().is_err());
        let good = pop(&mut q, &mem).unwrap().unwrap();
        assert_eq!(good.head_index(), 1);
        assert!(good.descriptors().is_ok());
    }

    #[test]
    fn an_avail_index_a_queue_ahead_breaks_the_queue() {
        let (mem, vq, mut q) = queue();
        vq.publish(QSIZE + 1).unwrap();
        assert!(matches!(
            pop(&mut q, &mem),
            Err(Error::InvalidAvailRingIndex)
        ));
    }

    #[test]
    fn a_chain_is_given_whole_and_in_order() {
        let (mem, vq, mut q) = queue();
        let descs = [desc(BUF, 4, NEXT, 5), desc(BUF + 8, 2, WRITE, 0)];
        vq.store_descs(&descs[1..], 5).unwrap();
        vq.store_descs(&descs[..1], 3).unwrap();
        vq.set_avail_entry(0, 3).unwrap();
        vq.publish(1).unwrap();
        let chain = pop(&mut q, &mem).unwrap().unwrap();
        assert_eq!(chain.head_index(), 3);
        let addrs: Vec<u64> = chain
            .descriptors()
            .unwrap()
            .iter()
            .map(|d| d.addr().0)
            .collect();
        assert_eq!(addrs, [BUF, BUF + 8]);
        assert!(pop(&mut q, &mem).unwrap().is_none());
    }

    #[test]
    fn an_indirect_descriptor_is_refused_without_reading_its_table() {
        let (mem, vq, mut q) = queue();
        // A 65535-entry table (1 MiB minus 16 bytes), the largest virtio-queue follows.
        let table = desc(BUF, 0xffff * 16, INDIRECT, 0);
        vq.add_desc_chains(&[table], 0).unwrap();
        assert!(matches!(
            refusal(&mut q, &mem),
            Error::InvalidIndirectDescriptor
        ));
    }

    #[test]
    fn an_indirect_descriptor_after_direct_ones_is_refused() {
        let (mem, vq, mut q) = queue();
        let descs = [desc(BUF, 16, NEXT, 1), desc(BUF + 0x100, 64, INDIRECT, 0)];
        vq.add_desc_chains(&descs, 0).unwrap();
        assert!(matches!(
            refusal(&mut q, &mem),
            Error::InvalidIndirectDescriptor
        ));
    }

    #[test]
    fn a_chain_longer_than_the_queue_is_refused() {
        let (mem, vq, mut q) = queue();
        // Two descriptors pointing at each other: a chain without end.
        let descs = [desc(BUF, 1, NEXT, 1), desc(BUF, 1, NEXT, 0)];
        vq.add_desc_chains(&descs, 0).unwrap();
        assert!(matches!(refusal(&mut q, &mem), Error::InvalidChain));
    }

    #[test]
    fn a_chain_of_exactly_the_queue_size_is_accepted() {
        let (mem, vq, mut q) = queue();
        let descs: Vec<_> = (0..QSIZE)
            .map(|i| desc(BUF, 1, if i + 1 < QSIZE { NEXT } else { 0 }, i + 1))
            .collect();
        vq.add_desc_chains(&descs, 0).unwrap();
        let chain = pop(&mut q, &mem).unwrap().unwrap();
        assert_eq!(chain.descriptors().unwrap().len(), usize::from(QSIZE));
    }

    #[test]
    fn a_next_index_past_the_table_is_refused() {
        let (mem, vq, mut q) = queue();
        vq.add_desc_chains(&[desc(BUF, 1, NEXT, QSIZE)], 0).unwrap();
        assert!(matches!(
            refusal(&mut q, &mem),
            Error::InvalidDescriptorIndex
        ));
    }

    #[test]
    fn a_chain_of_4_gib_or_more_is_refused() {
        let (mem, vq, mut q) = queue();
        let descs = [
            desc(BUF, 0x8000_0000, NEXT, 1),
            desc(BUF, 0x8000_0000, 0, 0),
        ];
        vq.add_desc_chains(&descs, 0).unwrap();
        assert!(matches!(
            refusal(&mut q, &mem),
            Error::DescriptorChainOverflow
        ));
    }

    #[test]
    fn reader_and_writer_see_only_their_direction_across_buffers() {
        let (mem, vq, mut q) = queue();
        mem.write_slice(b"abc", GuestAddress(BUF)).unwrap();
        mem.write_slice(b"defg", GuestAddress(BUF + 0x100)).unwrap();
        let descs = [
            desc(BUF, 3, NEXT, 1),
            desc(BUF + 0x100, 4, NEXT, 2),
            desc(BUF + 0x200, 2, WRITE | NEXT, 3),
            desc(BUF + 0x300, 5, WRITE, 0),
        ];
        vq.add_desc_chains(&descs, 0).unwrap();
        let chain = pop(&mut q, &mem).unwrap().unwrap();

        let mut reader = Reader::new(&mem, &chain).unwrap();
        assert_eq!(reader.available_bytes(), 7);
        let mut read = Vec::new();
        reader.read_to_end(&mut read).unwrap();
        assert_eq!(read, b"abcdefg");

        let mut writer = Writer::new(&mem, &chain).unwrap();
        assert_eq!(writer.available_bytes(), 7);
        assert_eq!(writer.write(b"0123456789").unwrap(), 7);
        assert_eq!(writer.bytes_written(), 7);
        let mut got = [0u8; 5];
        mem.read_slice(&mut got, GuestAddress(BUF + 0x300)).unwrap();
        assert_eq!(&got, b"23456");
    }

    #[test]
    fn a_buffer_outside_guest_memory_fails_the_reader() {
        let (mem, vq, mut q) = queue();
        vq.add_desc_chains(&[desc(0x1_0000_0000, 8, 0, 0)], 0)
            .unwrap();
        let chain = pop(&mut q, &mem).unwrap().unwrap();
        assert!(Reader::new(&mem, &chain).is_err());
        assert_eq!(Writer::new(&mem, &chain).unwrap().available_bytes(), 0);
    }
}
