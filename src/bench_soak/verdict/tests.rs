use super::*;

// Where each sample of `clean()` is.
const HALF_CONTAINERS: usize = 1;
const CONTAINERS: usize = 2;
const FIRST_VM: usize = 3;
const HALF_VMS: usize = 4;
const VMS: usize = 5;

fn base() -> Snapshot {
    Snapshot {
        fds: 6,
        threads: 1,
        spawner: 0,
        rss_kib: 10_000,
        heap_kib: 500,
        maps: 40,
        cgroups: 0,
        mounts: 30,
        taps: 0,
        state_dirs: 0,
        work_files: 1,
    }
}

/// A soak in which nothing leaked: the first VM starts the spawner and sets up memory.
fn clean() -> Vec<Sample> {
    let after_first_vm = Snapshot {
        spawner: 1,
        rss_kib: 14_000,
        heap_kib: 700,
        ..base()
    };
    vec![
        Sample::new("before", Phase::Start, base()),
        Sample::new("10 containers", Phase::Containers, base()),
        Sample::new("20 containers", Phase::Containers, base()),
        Sample::new("1 VM", Phase::FirstVm, after_first_vm),
        Sample::new("10 VMs", Phase::Vms, after_first_vm),
        Sample::new("20 VMs", Phase::Vms, after_first_vm),
    ]
}

fn grown(samples: &[Sample]) -> Vec<(Metric, String)> {
    check(samples)
        .into_iter()
        .map(|g| (g.metric, g.to))
        .collect()
}

#[test]
fn a_soak_that_leaks_nothing_passes() {
    assert_eq!(check(&clean()), Vec::new());
    let table = table(&clean(), &[]);
    assert_eq!(table.last().unwrap(), "verdict: nothing grew");
}

#[test]
fn an_fd_left_by_each_vm_is_caught_against_the_first_vm() {
    let mut samples = clean();
    samples[HALF_VMS].snapshot.fds += 9;
    samples[VMS].snapshot.fds += 19;
    assert_eq!(
        grown(&samples),
        vec![
            (Metric::Fds, "10 VMs".to_owned()),
            (Metric::Fds, "20 VMs".to_owned())
        ]
    );
}

#[test]
fn a_thread_or_mount_left_by_the_containers_is_caught() {
    let mut samples = clean();
    samples[CONTAINERS].snapshot.threads += 1;
    samples[CONTAINERS].snapshot.mounts += 20;
    // Still there after the VMs: those are held against the first VM, which had them too.
    for s in &mut samples[FIRST_VM..] {
        s.snapshot.threads += 1;
        s.snapshot.mounts += 20;
    }
    assert_eq!(
        grown(&samples),
        vec![
            (Metric::Threads, "20 containers".to_owned()),
            (Metric::Mounts, "20 containers".to_owned())
        ]
    );
}

#[test]
fn cgroups_state_dirs_taps_and_files_left_behind_are_caught() {
    let mut samples = clean();
    samples[CONTAINERS].snapshot.cgroups = 3;
    samples[CONTAINERS].snapshot.state_dirs = 1;
    samples[VMS].snapshot.taps = 1;
    samples[VMS].snapshot.work_files = 2;
    let grown = grown(&samples);
    assert!(grown.contains(&(Metric::Cgroups, "20 containers".to_owned())));
    assert!(grown.contains(&(Metric::StateDirs, "20 containers".to_owned())));
    assert!(grown.contains(&(Metric::Taps, "20 VMs".to_owned())));
    assert!(grown.contains(&(Metric::WorkFiles, "20 VMs".to_owned())));
}

#[test]
fn memory_may_wander_within_its_tolerance_and_not_beyond() {
    let mut samples = clean();
    samples[HALF_VMS].snapshot.rss_kib += RSS_TOLERANCE_KIB;
    samples[VMS].snapshot.heap_kib += HEAP_TOLERANCE_KIB;
    assert_eq!(check(&samples), Vec::new());
    samples[VMS].snapshot.rss_kib += RSS_TOLERANCE_KIB + 1;
    samples[VMS].snapshot.heap_kib += 1;
    assert_eq!(
        grown(&samples),
        vec![
            (Metric::RssKib, "20 VMs".to_owned()),
            (Metric::HeapKib, "20 VMs".to_owned())
        ]
    );
}

#[test]
fn the_first_vm_may_start_one_spawner_and_set_up_memory_but_leave_nothing_else() {
    let mut samples = clean();
    samples[FIRST_VM].snapshot.rss_kib += 100_000;
    samples[FIRST_VM].snapshot.fds += 1;
    assert_eq!(grown(&samples), vec![(Metric::Fds, "1 VM".to_owned())]);
    let mut samples = clean();
    samples[FIRST_VM].snapshot.spawner = 2;
    assert_eq!(grown(&samples), vec![(Metric::Spawner, "1 VM".to_owned())]);
}

#[test]
fn a_second_spawner_after_the_first_vm_is_caught() {
    let mut samples = clean();
    samples[VMS].snapshot.spawner = 2;
    assert_eq!(
        grown(&samples),
        vec![(Metric::Spawner, "20 VMs".to_owned())]
    );
}

#[test]
fn a_vm_only_soak_holds_the_first_vm_against_the_start() {
    let mut samples = clean();
    samples.drain(HALF_CONTAINERS..FIRST_VM);
    samples[1].snapshot.state_dirs = 1;
    assert_eq!(
        grown(&samples),
        vec![(Metric::StateDirs, "1 VM".to_owned())]
    );
}

#[test]
fn the_table_marks_what_grew_and_says_so() {
    let mut samples = clean();
    samples[VMS].snapshot.fds += 3;
    let growths = check(&samples);
    let lines = table(&samples, &growths);
    let fds = lines.iter().find(|l| l.contains("open fds")).unwrap();
    assert!(fds.contains("9!"), "{fds}");
    assert_eq!(
        lines.last().unwrap(),
        "verdict: GREW: open fds from 6 (1 VM) to 9 (20 VMs), more than +0"
    );
}

#[test]
fn guest_ram_left_mapped_by_each_vm_is_caught() {
    let mut samples = clean();
    samples[HALF_VMS].snapshot.maps += 9;
    samples[VMS].snapshot.maps += 19;
    assert_eq!(grown(&samples), vec![(Metric::Maps, "20 VMs".to_owned())]);
}

#[test]
fn containers_that_leak_memory_by_the_half_are_held_against_the_start() {
    let mut samples = clean();
    samples[HALF_CONTAINERS].snapshot.heap_kib += HEAP_TOLERANCE_KIB;
    samples[CONTAINERS].snapshot.heap_kib += 2 * HEAP_TOLERANCE_KIB;
    for s in &mut samples[FIRST_VM..] {
        s.snapshot.heap_kib += 2 * HEAP_TOLERANCE_KIB;
    }
    assert_eq!(
        grown(&samples),
        vec![(Metric::HeapKib, "20 containers".to_owned())]
    );
}
