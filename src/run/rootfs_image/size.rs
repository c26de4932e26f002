//! How large an ext4 image must be to hold a tree, and how many inodes it needs. mkfs.ext4
//! takes both up front (fs-size, -N) and fails when either is short, so the estimate errs
//! on the roomy side: the image file is sparse, and blocks nobody wrote cost no disk.

/// The image's block size (`-b`); given, because mke2fs.conf picks 1 KiB for small images.
pub const BLOCK_SIZE: u64 = 4096;
/// The image's inode size (`-I`): room for nanosecond timestamps and small xattrs.
pub const INODE_SIZE: u64 = 256;

/// A block group spans the blocks one bitmap block can map, and holds at most as many
/// inodes as one bitmap block can map.
const BLOCKS_PER_GROUP: u64 = 8 * BLOCK_SIZE;
const MAX_INODES_PER_GROUP: u64 = 8 * BLOCK_SIZE;
/// An extent maps at most 128 MiB; the inode holds four, an index block 340 more.
const EXTENT_MAX_BLOCKS: u64 = 32768;
const EXTENTS_IN_INODE: u64 = 4;
const EXTENTS_PER_BLOCK: u64 = (BLOCK_SIZE - 12) / 12;
/// A directory block's room for entries: the block less its checksum tail (metadata_csum).
const DIR_BLOCK_ROOM: u64 = BLOCK_SIZE - 12;
/// A symlink target shorter than this lives in the inode itself ("fast" symlink).
const FAST_SYMLINK_MAX: usize = 59;
/// Superblock, group descriptors, the root directory and lost+found (16 KiB), with room.
const FIXED_BLOCKS: u64 = 32;
/// Per group: block and inode bitmaps, a backup superblock and descriptors, and the
/// inode table's rounding up to whole blocks.
const GROUP_BLOCKS: u64 = 8;
/// On top of the estimate: a fifth more, and 8 MiB.
const MARGIN_BYTES: u64 = 8 << 20;

/// What a tree's entries take in an image, summed over the walk.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub inodes: u64,
    pub blocks: u64,
}

impl Usage {
    /// A regular file of `len` bytes. A sparse file is counted at its full length: mkfs
    /// copies only its data, so the difference stays a hole in the image file.
    pub fn add_file(&mut self, len: u64) {
        let data = len.div_ceil(BLOCK_SIZE);
        // Each 128 MiB run may be split once (by a group's metadata); past four extents
        // the inode needs index blocks.
        let extents = 2 * data.div_ceil(EXTENT_MAX_BLOCKS);
        let index = if extents > EXTENTS_IN_INODE {
            extents.div_ceil(EXTENTS_PER_BLOCK)
        } else {
            0
        };
        self.inodes += 1;
        self.blocks += data + index;
    }

    /// A directory whose entries have names of these lengths (in bytes).
    pub fn add_dir(&mut self, name_lens: impl Iterator<Item = usize>) {
        // "." and ".." take 12 bytes each, an entry 8 bytes and its name padded to 4.
        let bytes = 24
            + name_lens
                .map(|len| 8 + (len as u64).next_multiple_of(4))
                .sum::<u64>();
        let leaves = bytes.div_ceil(DIR_BLOCK_ROOM);
        // Past one block a directory may be indexed (dir_index): a root block, and leaves
        // that splits leave partly empty.
        let blocks = if leaves <= 1 {
            1
        } else {
            1 + leaves + leaves / 2
        };
        self.inodes += 1;
        self.blocks += blocks;
    }

    pub fn add_symlink(&mut self, target_len: usize) {
        self.inodes += 1;
        if target_len > FAST_SYMLINK_MAX {
            self.blocks += 1;
        }
    }

    /// A device node, FIFO or socket: an inode and nothing else.
    pub fn add_special(&mut self) {
        self.inodes += 1;
    }

    /// Extended attributes too large for the inode take a block of their own.
    pub fn add_xattr_block(&mut self) {
        self.blocks += 1;
    }
}

/// What mkfs.ext4 is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// The image's size, a whole number of MiB.
    pub bytes: u64,
    /// `-N`: mkfs reserves the first 11 (lost+found is the 11th).
    pub inodes: u64,
}

pub fn geometry(usage: &Usage) -> Geometry {
    let inodes = usage.inodes + usage.inodes / 10 + 16;
    let inode_table = (inodes * INODE_SIZE).div_ceil(BLOCK_SIZE);
    let content = usage.blocks + inode_table + FIXED_BLOCKS;
    let groups = content.div_ceil(BLOCKS_PER_GROUP);
    let mut blocks = content + groups * GROUP_BLOCKS;
    // Many small files can need more groups for their inodes than for their blocks (one
    // group, however small, holds up to the maximum).
    let inode_groups = inodes.div_ceil(MAX_INODES_PER_GROUP);
    if inode_groups > 1 {
        blocks = blocks.max(inode_groups * BLOCKS_PER_GROUP);
    }
    let bytes = blocks * BLOCK_SIZE;
    Geometry {
        bytes: (bytes + bytes / 5 + MARGIN_BYTES).next_multiple_of(1 << 20),
        inodes,
    }
}
