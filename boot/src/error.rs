//! The one error type of the boot crate.

use vm_memory::GuestMemoryError;

/// What can go wrong while writing boot structures or building vCPU boot state.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A boot structure could not be written to (or read from) guest memory.
    #[error("cannot write the {what} to guest memory at {addr:#x}")]
    GuestMemory {
        /// The structure being written, e.g. "zero page".
        what: &'static str,
        /// The guest physical address of the access.
        addr: u64,
        #[source]
        source: GuestMemoryError,
    },
    /// The initrd does not fit in low RAM above the kernel load area.
    #[error("initrd ({size} bytes) does not fit below {limit:#x}")]
    InitrdTooLarge {
        /// Size of the initrd in bytes.
        size: u64,
        /// End of low RAM, the address the initrd must fit below.
        limit: u64,
    },
    /// The MP table (and xAPIC IDs) cannot describe this many vCPUs.
    #[error("{requested} vCPUs do not fit in the MP table (1 to {max} supported)")]
    TooManyCpus {
        /// Number of vCPUs asked for.
        requested: u8,
        /// Largest number supported.
        max: u8,
    },
    /// The boot MSR list exceeds what `kvm_msrs` can hold.
    #[error("cannot build the boot MSR list of {count} entries")]
    Msrs {
        /// Number of MSR entries.
        count: usize,
        #[source]
        source: vmm_sys_util::fam::Error,
    },
}

impl BootError {
    /// Builds a closure that wraps a guest memory error for the structure `what` at `addr`.
    pub(crate) fn mem(what: &'static str, addr: u64) -> impl FnOnce(GuestMemoryError) -> Self {
        move |source| BootError::GuestMemory { what, addr, source }
    }
}
