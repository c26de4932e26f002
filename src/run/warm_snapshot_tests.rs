use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use super::*;

/// A directory of its own for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("vmm-warm-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        create_dir(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn inputs<'a>(dir: &'a Path, kernel: &'a Path) -> Inputs<'a> {
    Inputs {
        vmm: dir,
        kernel,
        initrd: dir,
        mem_mib: 256,
        cpus: 1,
        cmdline: "console=ttyS0",
        nic: false,
    }
}

#[test]
fn the_key_changes_with_the_kernel_file_and_the_vms_shape() {
    let tmp = TempDir::new("key");
    let kernel = tmp.0.join("vmlinux");
    fs::write(&kernel, b"kernel one").unwrap();
    let base = inputs(&tmp.0, &kernel);
    let first = key(&base).unwrap();
    assert_eq!(
        first,
        key(&base).unwrap(),
        "the same inputs give the same key"
    );
    assert_ne!(
        first,
        key(&Inputs {
            mem_mib: 512,
            ..base.clone()
        })
        .unwrap()
    );
    assert_ne!(
        first,
        key(&Inputs {
            cpus: 2,
            ..base.clone()
        })
        .unwrap()
    );
    assert_ne!(
        first,
        key(&Inputs {
            cmdline: "quiet",
            ..base.clone()
        })
        .unwrap()
    );
    assert_ne!(
        first,
        key(&Inputs {
            nic: true,
            ..base.clone()
        })
        .unwrap(),
        "a VM with a NIC is another VM"
    );
    fs::write(&kernel, b"kernel two, rebuilt").unwrap();
    assert_ne!(
        first,
        key(&base).unwrap(),
        "a rebuilt kernel is another kernel"
    );
    let missing = tmp.0.join("no-such-kernel");
    assert!(key(&inputs(&tmp.0, &missing)).is_err());
}

#[test]
fn a_published_snapshot_is_found_and_a_discarded_one_is_not() {
    let tmp = TempDir::new("publish");
    assert!(!entry(&tmp.0, "k1").exists());
    let temp = temp_entry(&tmp.0, "k1").unwrap();
    fs::write(&temp.state, b"state").unwrap();
    fs::write(&temp.mem, b"mem").unwrap();
    let published = publish(&tmp.0, "k1", &temp).unwrap();
    assert_eq!(published, entry(&tmp.0, "k1"));
    assert!(published.exists());
    assert!(!temp.dir.exists());
    discard(&tmp.0, "k1");
    assert!(!entry(&tmp.0, "k1").exists());
}

#[test]
fn the_stub_disk_is_one_page_of_zeros_made_once() {
    let tmp = TempDir::new("stub");
    let stub_path = stub(&tmp.0).unwrap();
    assert_eq!(
        fs::read(&stub_path).unwrap(),
        vec![0u8; STUB_BYTES as usize]
    );
    let made = fs::metadata(&stub_path).unwrap().ino();
    assert_eq!(stub(&tmp.0).unwrap(), stub_path);
    assert_eq!(
        fs::metadata(&stub_path).unwrap().ino(),
        made,
        "reused, not rewritten"
    );
}

#[test]
fn eviction_keeps_the_newest_and_the_one_in_use_but_not_a_locked_one() {
    let tmp = TempDir::new("evict");
    let names: Vec<String> = (0..KEEP + 3).map(|i| format!("k{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let temp = temp_entry(&tmp.0, name).unwrap();
        fs::write(&temp.state, b"s").unwrap();
        fs::write(&temp.mem, b"m").unwrap();
        let published = publish(&tmp.0, name, &temp).unwrap();
        let age = Duration::from_secs(100 - i as u64);
        let file = fs::File::options()
            .write(true)
            .open(&published.state)
            .unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }
    // k0 is the oldest but in use; k1 is old but locked by a concurrent run.
    let _held = KeyLock::acquire(&tmp.0, "k1").unwrap();
    let mut removed = evict(&tmp.0, "k0");
    removed.sort();
    let expected: Vec<String> = names[2..names.len() - (KEEP - 1)].to_vec();
    assert_eq!(removed, expected);
    assert!(entry(&tmp.0, "k0").exists());
    assert!(entry(&tmp.0, "k1").exists());
    for name in &names[names.len() - (KEEP - 1)..] {
        assert!(entry(&tmp.0, name).exists(), "{name} is among the newest");
    }
}

#[test]
fn sweeping_removes_a_dead_makers_temp_directory_but_not_a_live_ones() {
    let tmp = TempDir::new("sweep");
    let dead = tmp.0.join(".tmp-kdead-4242");
    let live = tmp.0.join(".tmp-klive-4343");
    fs::create_dir(&dead).unwrap();
    fs::create_dir(&live).unwrap();
    let _maker = KeyLock::acquire(&tmp.0, "klive").unwrap();
    sweep(&tmp.0);
    assert!(!dead.exists());
    assert!(live.exists());
}
