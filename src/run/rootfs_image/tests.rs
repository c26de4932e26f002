//! The rootfs image cache: keys, the size estimate, hits, bad input, eviction and sweeping.
//! Tests that pack need mkfs.ext4 and print `SKIP <test>: ...` without it; none needs root.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::cache::{self, Bound, KeyLock};
use super::size::{self, Usage};
use super::*;

/// A fresh, empty directory of this test's own, removed when the test ends.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("vmm-rootfs-image-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// A small rootfs: directories, a file, an executable, a symlink, under `dir/root`.
fn small_tree(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::write(root.join("bin/tool"), vec![0x7f; 10_000]).unwrap();
    fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    symlink("tool", root.join("bin/sh")).unwrap();
    root
}

fn key(root: &Path) -> String {
    key_of(
        root,
        "mke2fs 1.47.0 (5-Feb-2023)",
        &tree::scan(root).unwrap(),
    )
}

fn mkfs_installed(test: &str) -> bool {
    let found = Mkfs::find().is_ok();
    if !found {
        println!("SKIP {test}: mkfs.ext4 not installed");
    }
    found
}

/// Lets the coarse kernel clock tick, so that the next change gets another timestamp.
fn next_tick() {
    std::thread::sleep(Duration::from_millis(20));
}

/// A progress callback that records what it heard.
struct Heard(Mutex<Vec<String>>);

impl Heard {
    fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }
    fn hear(&self, line: &str) {
        self.0.lock().unwrap().push(line.to_string());
    }
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[test]
fn key_is_stable_across_two_walks_of_the_same_tree() {
    let dir = scratch("stable");
    let root = small_tree(&dir);
    assert_eq!(key(&root), key(&root));
}

#[test]
fn key_changes_when_a_file_grows() {
    let dir = scratch("grows");
    let root = small_tree(&dir);
    let before = key(&root);
    fs::OpenOptions::new()
        .append(true)
        .open(root.join("etc/passwd"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"x"))
        .unwrap();
    assert_ne!(key(&root), before);
}

#[test]
fn key_changes_when_a_file_mtime_changes() {
    let dir = scratch("mtime");
    let root = small_tree(&dir);
    let before = key(&root);
    let file = fs::File::options()
        .write(true)
        .open(root.join("etc/passwd"))
        .unwrap();
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000))
        .unwrap();
    assert_ne!(key(&root), before);
}

#[test]
fn key_changes_when_a_file_is_rewritten_and_its_mtime_put_back() {
    let dir = scratch("rewrite");
    let root = small_tree(&dir);
    let passwd = root.join("etc/passwd");
    let mtime = fs::metadata(&passwd).unwrap().modified().unwrap();
    let before = key(&root);
    next_tick();
    fs::write(&passwd, "ROOT:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::File::options()
        .write(true)
        .open(&passwd)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(fs::metadata(&passwd).unwrap().modified().unwrap(), mtime);
    assert_ne!(key(&root), before, "the ctime shows the rewrite");
}

#[test]
fn key_changes_when_a_file_is_added() {
    let dir = scratch("added");
    let root = small_tree(&dir);
    let before = key(&root);
    fs::write(root.join("etc/hostname"), "vm\n").unwrap();
    assert_ne!(key(&root), before);
}

#[test]
fn key_changes_when_a_file_is_removed() {
    let dir = scratch("removed");
    let root = small_tree(&dir);
    let before = key(&root);
    fs::remove_file(root.join("etc/passwd")).unwrap();
    assert_ne!(key(&root), before);
}

#[test]
fn key_changes_when_a_file_is_renamed() {
    let dir = scratch("renamed");
    let root = small_tree(&dir);
    let before = key(&root);
    fs::rename(root.join("etc/passwd"), root.join("etc/passwd-")).unwrap();
    assert_ne!(key(&root), before);
}

#[test]
fn key_changes_when_a_file_is_chmodded() {
    let dir = scratch("chmod");
    let root = small_tree(&dir);
    let before = key(&root);
    fs::set_permissions(root.join("etc/passwd"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_ne!(key(&root), before);
}

#[test]
fn key_changes_when_a_symlink_points_elsewhere() {
    let dir = scratch("relink");
    let root = small_tree(&dir);
    let before = key(&root);
    fs::remove_file(root.join("bin/sh")).unwrap();
    symlink("tooL", root.join("bin/sh")).unwrap();
    assert_ne!(key(&root), before);
}

#[test]
fn key_changes_with_the_mkfs_version() {
    let dir = scratch("version");
    let root = small_tree(&dir);
    let tree = tree::scan(&root).unwrap();
    assert_ne!(
        key_of(&root, "mke2fs 1.47.0 (5-Feb-2023)", &tree),
        key_of(&root, "mke2fs 1.47.1 (20-May-2024)", &tree)
    );
}

#[test]
fn hard_linked_file_is_counted_once() {
    let dir = scratch("hardlink");
    let root = small_tree(&dir);
    let before = tree::scan(&root).unwrap();
    fs::hard_link(root.join("bin/tool"), root.join("bin/tool2")).unwrap();
    let after = tree::scan(&root).unwrap();
    assert_eq!(after.bytes, before.bytes);
    assert_eq!(after.usage.inodes, before.usage.inodes);
    assert_eq!(after.entries, before.entries + 1);
}

#[test]
fn size_estimate_grows_with_the_data_and_keeps_a_margin() {
    let mut usage = Usage::default();
    usage.add_file(20 << 20);
    let geometry = size::geometry(&usage);
    assert!(
        geometry.bytes >= (20 << 20) + (20 << 20) / 5,
        "{geometry:?}"
    );
    assert!(geometry.bytes <= 40 << 20, "{geometry:?}");
    assert_eq!(geometry.bytes % (1 << 20), 0);
}

#[test]
fn size_estimate_gives_many_inodes_the_block_groups_they_need() {
    let mut usage = Usage::default();
    for _ in 0..100_000 {
        usage.add_special();
    }
    let geometry = size::geometry(&usage);
    assert!(geometry.inodes >= 100_000);
    let groups = geometry.bytes / size::BLOCK_SIZE / (8 * size::BLOCK_SIZE);
    assert!(
        groups * 8 * size::BLOCK_SIZE >= geometry.inodes,
        "{geometry:?}"
    );
}

/// Packs `root` and checks the result with fsck; the image's size, in bytes.
fn pack_and_check(test: &str, root: &Path) -> Option<u64> {
    if !mkfs_installed(test) {
        return None;
    }
    let cache = root.parent().unwrap().join("cache");
    let heard = Heard::new();
    let image = image_in(&cache, root, &|line| heard.hear(line)).unwrap();
    if let Ok(fsck) = Command::new("fsck.ext4").arg("-fn").arg(&image).output() {
        let out = String::from_utf8_lossy(&fsck.stdout);
        assert!(fsck.status.success(), "fsck.ext4 -fn {image:?}: {out}");
    }
    Some(fs::metadata(&image).unwrap().len())
}

#[test]
fn size_estimate_holds_a_20_mib_file_without_waste() {
    let dir = scratch("big-file");
    let root = small_tree(&dir);
    fs::write(root.join("big"), vec![0x5a; 20 << 20]).unwrap();
    let Some(bytes) = pack_and_check("size_estimate_holds_a_20_mib_file_without_waste", &root)
    else {
        return;
    };
    assert!(
        bytes <= 34 << 20,
        "a {} MiB image for 20 MiB of data",
        bytes >> 20
    );
}

#[test]
fn size_estimate_holds_a_directory_of_many_long_names() {
    let dir = scratch("many-names");
    let root = small_tree(&dir);
    fs::create_dir(root.join("many")).unwrap();
    // 1000 entries of 216 bytes: a directory of some 50 blocks. (mkfs -d links entries
    // one by one into a linear directory, quadratic in their number: keep it modest.)
    for i in 0..1000 {
        let name = format!("{i:0>200}");
        fs::write(root.join("many").join(name), i.to_string()).unwrap();
    }
    pack_and_check("size_estimate_holds_a_directory_of_many_long_names", &root);
}

#[test]
fn second_lookup_of_an_unchanged_tree_reuses_the_image_without_packing() {
    let test = "second_lookup_of_an_unchanged_tree_reuses_the_image_without_packing";
    if !mkfs_installed(test) {
        return;
    }
    let dir = scratch("hit");
    let root = small_tree(&dir);
    let cache = dir.join("cache");
    let first = Heard::new();
    let image = image_in(&cache, &root, &|line| first.hear(line)).unwrap();
    assert_eq!(first.lines().len(), 2, "{:?}", first.lines());
    assert!(
        first.lines()[0].starts_with("packing "),
        "{:?}",
        first.lines()
    );
    let ino = fs::metadata(&image).unwrap().ino();

    let second = Heard::new();
    let again = image_in(&cache, &root, &|line| second.hear(line)).unwrap();
    assert_eq!(again, image);
    assert!(second.lines().is_empty(), "{:?}", second.lines());
    assert_eq!(fs::metadata(&again).unwrap().ino(), ino);
}

#[test]
fn changed_tree_gets_a_new_image() {
    if !mkfs_installed("changed_tree_gets_a_new_image") {
        return;
    }
    let dir = scratch("changed");
    let root = small_tree(&dir);
    let cache = dir.join("cache");
    let first = image_in(&cache, &root, &|_| {}).unwrap();
    fs::write(root.join("etc/hostname"), "vm\n").unwrap();
    let second = image_in(&cache, &root, &|_| {}).unwrap();
    assert_ne!(first, second);
    assert!(first.exists() && second.exists());
}

#[test]
fn concurrent_lookups_of_one_tree_pack_it_once() {
    if !mkfs_installed("concurrent_lookups_of_one_tree_pack_it_once") {
        return;
    }
    let dir = scratch("concurrent");
    let root = small_tree(&dir);
    let cache = dir.join("cache");
    let heard = Heard::new();
    let images: Vec<PathBuf> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| s.spawn(|| image_in(&cache, &root, &|line| heard.hear(line)).unwrap()))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert!(images.iter().all(|i| *i == images[0]), "{images:?}");
    let packs = heard
        .lines()
        .iter()
        .filter(|l| l.starts_with("packing "))
        .count();
    assert_eq!(packs, 1, "{:?}", heard.lines());
}

#[test]
fn missing_rootfs_is_bad_input() {
    let dir = scratch("missing");
    let err = image_in(&dir.join("cache"), &dir.join("absent"), &|_| {}).unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    assert!(err.to_string().contains("absent"), "{err}");
}

#[test]
fn regular_file_as_rootfs_is_bad_input() {
    let dir = scratch("file");
    fs::write(dir.join("rootfs.tar"), "not a directory").unwrap();
    let err = image_in(&dir.join("cache"), &dir.join("rootfs.tar"), &|_| {}).unwrap_err();
    assert!(matches!(err, RootfsImageError::NotADirectory(_)), "{err}");
    assert!(err.is_bad_input());
}

#[test]
fn missing_mkfs_is_not_bad_input_and_says_what_to_install() {
    let err = RootfsImageError::MkfsNotFound;
    assert!(!err.is_bad_input());
    assert!(
        err.to_string().contains("apt-get install e2fsprogs"),
        "{err}"
    );
}

/// A fake image of `mib` MiB (really allocated), last used `age_secs` ago.
fn fake_image(cache: &Path, key: &str, mib: usize, age_secs: u64) -> PathBuf {
    let path = cache::image_path(cache, key);
    fs::write(&path, vec![1u8; mib << 20]).unwrap();
    let used = SystemTime::now() - Duration::from_secs(age_secs);
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(used)
        .unwrap();
    path
}

#[test]
fn eviction_keeps_the_most_recently_used_within_the_count_bound() {
    let cache = scratch("evict-count");
    let images: Vec<PathBuf> = (0..6)
        .map(|i| fake_image(&cache, &format!("k{i}"), 0, 100 * i))
        .collect();
    let bound = Bound {
        images: 3,
        bytes: u64::MAX,
    };
    let removed = cache::evict(&cache, &images[0], bound);
    assert_eq!(removed, images[3..].to_vec());
    assert!(images[..3].iter().all(|i| i.exists()));
}

#[test]
fn eviction_keeps_the_byte_bound_and_spares_the_newest() {
    let cache = scratch("evict-bytes");
    let old = fake_image(&cache, "old", 2, 300);
    let older = fake_image(&cache, "older", 2, 400);
    let newest = fake_image(&cache, "newest", 3, 0);
    let bound = Bound {
        images: 8,
        bytes: 2 << 20,
    };
    let removed = cache::evict(&cache, &newest, bound);
    assert!(
        newest.exists(),
        "the image just used stays, even over the bound"
    );
    assert_eq!(removed, vec![old, older]);
}

#[test]
fn eviction_spares_an_image_someone_holds_locked() {
    let cache = scratch("evict-locked");
    let newest = fake_image(&cache, "newest", 0, 0);
    let busy = fake_image(&cache, "busy", 0, 500);
    let idle = fake_image(&cache, "idle", 0, 600);
    let _held = KeyLock::acquire(&cache, "busy").unwrap();
    let removed = cache::evict(
        &cache,
        &newest,
        Bound {
            images: 1,
            bytes: u64::MAX,
        },
    );
    assert_eq!(removed, vec![idle]);
    assert!(busy.exists());
}

#[test]
fn sweep_removes_a_dead_runs_temp_file_but_not_a_live_one() {
    let cache = scratch("sweep");
    let dead = cache.join(".tmp-dead-4242.ext4");
    let live = cache.join(".tmp-live-4343.ext4");
    fs::write(&dead, "half").unwrap();
    fs::write(&live, "half").unwrap();
    let _packing = KeyLock::acquire(&cache, "live").unwrap();
    cache::sweep(&cache);
    assert!(!dead.exists());
    assert!(!cache.join("dead.lock").exists());
    assert!(live.exists());
}

#[test]
fn packed_image_keeps_owners_modes_and_symlinks() {
    let test = "packed_image_keeps_owners_modes_and_symlinks";
    if !mkfs_installed(test) {
        return;
    }
    let dir = scratch("content");
    let root = small_tree(&dir);
    let image = image_in(&dir.join("cache"), &root, &|_| {}).unwrap();
    let Ok(out) = Command::new("debugfs")
        .args(["-R", "ls -l /bin"])
        .arg(&image)
        .output()
    else {
        println!("SKIP {test}: debugfs not installed");
        return;
    };
    let listing = String::from_utf8_lossy(&out.stdout);
    let uid = fs::metadata(root.join("bin/tool")).unwrap().uid();
    let tool = listing
        .lines()
        .find(|l| l.ends_with(" tool"))
        .expect(&listing);
    let fields: Vec<&str> = tool.split_whitespace().collect();
    assert_eq!(fields[1], "100755", "{tool}");
    assert_eq!(fields[3], uid.to_string(), "{tool}");
    assert_eq!(fields[5], "10000", "{tool}");
    let sh = listing
        .lines()
        .find(|l| l.ends_with(" sh"))
        .expect(&listing);
    assert!(
        sh.split_whitespace().nth(1).unwrap().starts_with("120777"),
        "{sh}"
    );
}
