# Cases of `vmm run --from-snapshot`, its benchmark, and what a restored guest is told.
# Sourced by tests/realkvm/cases.sh (its helpers and variables), inside the outer guest.

# --- `vmm run --from-snapshot`: the first run boots the guest once and keeps a warm
# snapshot (its agent waiting, a placeholder disk); the next restores it, swaps the
# workload's image in for the placeholder and runs the command through the agent.
SNAPSHOTS=${XDG_CACHE_HOME:-${HOME:-/}/.cache}/vmm/snapshots
case_run_vm_from_snapshot_runs_a_command() {
    need_run || return
    rm -rf "$SNAPSHOTS"
    local want
    want=$(md5sum <"$WORKLOAD/blob" | cut -c1-12)
    vrun vm --from-snapshot -- sh -c 'echo "first blob=$(md5sum </blob | cut -c1-12)"; exit 7'
    expect_status 7 || return 1
    grep -q "making the warm snapshot" /tmp/run.err || { WHY="the first run did not make a snapshot"; return 1; }
    grep -q "^first blob=$want$" /tmp/run.out ||
        { WHY="first run: the workload's rootfs is not the image ($(cat /tmp/run.out))"; return 1; }
    ls "$SNAPSHOTS"/*/state >/dev/null 2>&1 || { WHY="no snapshot kept in $SNAPSHOTS"; return 1; }
    vrun vm --from-snapshot --timings -- sh -c 'echo "again blob=$(md5sum </blob | cut -c1-12) kernel=$(uname -r)"; exit 9'
    expect_status 9 || return 1
    ! grep -q "making the warm snapshot" /tmp/run.err || { WHY="the second run made a snapshot again"; return 1; }
    grep -q "^again blob=$want kernel=" /tmp/run.out ||
        { WHY="restored run: wrong output ($(cat /tmp/run.out))"; return 1; }
    grep -q "vm restored" /tmp/run.err || { WHY="the second run was not restored (no 'vm restored' phase)"; return 1; }
    echo "  $(grep '^vmm: timings' /tmp/run.err)"
}
case_run_vmc_from_snapshot_identity_stdio_exit_42() { identity_case vm+container yes --from-snapshot; }

# The benchmark of issue 14: /bin/true start → exit at vm+container from a warm snapshot,
# against a cold boot of the same, our container level (vmm-runc) and crun, on this outer
# guest, interleaved round by round. Both container runtimes chroot (--no-pivot): the
# outer guest's root is an initramfs, which pivot_root cannot leave. Under TCG absolute
# times mean nothing; the ratios within this run do. Passes when every run exits 0; the
# numbers are the BENCH-SNAPSHOT lines.
snap_bench_median() { # VARIANT: the median of its samples, ms
    sort -n "/tmp/snap-bench-$1.ms" |
        awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
snap_bench_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
case_bench_vmc_from_snapshot() {
    need_run || return
    command -v crun >/dev/null || { WHY="no crun in the outer guest"; return 2; }
    [ -x /realkvm/elapsed ] || { WHY="no /realkvm/elapsed"; return 2; }
    [ -x /usr/local/bin/vmm-runc ] || { WHY="no vmm-runc in the outer guest"; return 2; }
    outer_as_host
    # The phases runs also count the VM's exits by kind (bench.sh's ftrace histograms):
    # after a restore, every guest page touched the first time is a nested page fault
    # (SVM exit 0x400), which a booted guest, its memory in huge pages, mostly does not take.
    . /realkvm/bench.sh
    local HISTS="kvm_exit:exit_reason.hex kvm_page_fault:error_code.hex"
    mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
    mount -t tracefs tracefs "$TRACING" 2>/dev/null
    local b=/tmp/snap-bench n=${SNAP_BENCH_RUNS:-8} round v results status
    rm -rf "$b" /tmp/snap-bench-*.ms /tmp/sb-vmm-root /tmp/sb-crun-root
    mkdir -p "$b"
    cat >"$b/config.json" <<EOF
{"ociVersion": "1.0.2",
 "process": {"args": ["/bin/true"], "cwd": "/", "env": ["PATH=/bin:/sbin:/usr/bin"],
   "user": {"uid": 0, "gid": 0}},
 "root": {"path": "$WORKLOAD"},
 "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
 "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
   {"type": "uts"}, {"type": "network"}]}}
EOF
    OUT=/tmp/snap-bench.log
    : >"$OUT"
    for round in $(seq 0 "$n"); do
        for v in container crun vmc_cold vmc_snapshot; do
            results=/tmp/snap-bench-$v.ms
            # Round 0 warms up: it packs the rootfs image and makes the warm snapshot.
            [ "$round" = 0 ] && results=/tmp/snap-bench-warmup.ms
            case $v in
                container) set -- /usr/local/bin/vmm-runc --root /tmp/sb-vmm-root run --no-pivot --bundle "$b" "sb-$round" ;;
                crun) set -- crun --root /tmp/sb-crun-root run --no-pivot --bundle "$b" "sb-$round" ;;
                vmc_cold) set -- /usr/local/bin/vmm run --isolation vm+container --kernel "$MICROVM_VMLINUX" \
                    --initrd "$AGENT_INITRD" --rootfs "$WORKLOAD" -- /bin/true ;;
                vmc_snapshot) set -- /usr/local/bin/vmm run --isolation vm+container --from-snapshot \
                    --kernel "$MICROVM_VMLINUX" --initrd "$AGENT_INITRD" --rootfs "$WORKLOAD" -- /bin/true ;;
            esac
            echo "== $v round $round: $*" >>"$OUT"
            timeout -s KILL 300 /realkvm/elapsed "$results" "$@" </dev/null >>"$OUT" 2>&1
            status=$?
            [ "$status" = 0 ] || { WHY="$v, round $round: exit status $status"; return 1; }
        done
        echo "BENCH-SNAPSHOT round $round/$n done"
    done
    # Where the time of one run goes, for each vmm run variant (the process level: vmm's
    # own start and end, without isolation).
    for v in process vm+container@snapshot vm+container; do
        set -- --isolation "${v%@snapshot}"
        [ "$v" != process ] && set -- "$@" --kernel "$MICROVM_VMLINUX" --initrd "$AGENT_INITRD"
        [ "$v" != "${v%@snapshot}" ] && set -- "$@" --from-snapshot
        [ "$v" != process ] && hist_arm ""
        rm -f /tmp/snap-bench-phases.ms
        /realkvm/elapsed /tmp/snap-bench-phases.ms /usr/local/bin/vmm run "$@" --rootfs "$WORKLOAD" \
            --timings -- /bin/true </dev/null >/dev/null 2>/tmp/snap-bench-phases.err
        echo "BENCH-SNAPSHOT phases of $v: $(sed -n 's/^vmm: timings (ms since start): //p' /tmp/snap-bench-phases.err), parent saw the exit $(cut -d' ' -f1 /tmp/snap-bench-phases.ms)"
        if [ "$v" != process ]; then
            hist_report "$v"
            hist_arm "!"
        fi
    done
    local c r cold snap
    c=$(snap_bench_median container)
    r=$(snap_bench_median crun)
    cold=$(snap_bench_median vmc_cold)
    snap=$(snap_bench_median vmc_snapshot)
    echo "BENCH-SNAPSHOT /bin/true start to exit, medians of $n interleaved runs, ms (nested TCG: compare ratios): container(vmm-runc)=$c crun=$r vm+container(cold)=$cold vm+container(snapshot)=$snap"
    echo "BENCH-SNAPSHOT ratios: snapshot/container=$(snap_bench_ratio "$snap" "$c") snapshot/crun=$(snap_bench_ratio "$snap" "$r") cold/snapshot=$(snap_bench_ratio "$cold" "$snap") container/crun=$(snap_bench_ratio "$c" "$r")"
}

# The VM generation ID (boot/src/vmgenid.rs): the guest kernel's vmgenid driver binds to
# the DSDT's device at boot; a cold boot is never told of a new generation, a restore is
# (the Generic Event Device's interrupt, then the driver's reseed, which it logs).
case_run_from_snapshot_new_vm_generation() {
    need_run || return
    local probe='ls /sys/bus/acpi/drivers/vmgenid/ 2>&1 | grep -c VMGENCTR;
        dmesg | grep -c "crng reseeded due to virtual machine fork";
        grep -i ged /proc/interrupts | tr -s " " | cut -d" " -f3'
    local bound reseeds events
    vrun vm -- sh -c "$probe"
    expect_status 0 || return 1
    # shellcheck disable=SC2046 # three numbers, split on purpose
    set -- $(cat /tmp/run.out)
    bound=${1:-} reseeds=${2:-} events=${3:-}
    echo "REALKVM-INFO cold boot: vmgenid devices bound=$bound, reseeds=$reseeds, GED interrupts=$events"
    [ "$bound" = 1 ] || { WHY="cold boot: the vmgenid driver did not bind: $(cat /tmp/run.out)"; return 1; }
    [ "$reseeds" = 0 ] || { WHY="cold boot: reseeded for a VM fork: $(cat /tmp/run.out)"; return 1; }
    vrun vm --from-snapshot -- sh -c "$probe"
    expect_status 0 || return 1
    # shellcheck disable=SC2046 # three numbers, split on purpose
    set -- $(cat /tmp/run.out)
    bound=${1:-} reseeds=${2:-} events=${3:-}
    echo "REALKVM-INFO restored: vmgenid devices bound=$bound, reseeds=$reseeds, GED interrupts=$events"
    [ "$reseeds" = 1 ] || { WHY="restored: the guest did not reseed once for a new generation: $(cat /tmp/run.out)"; return 1; }
    [ "${events:-0}" -ge 1 ] 2>/dev/null || { WHY="restored: no GED interrupt counted: $(cat /tmp/run.out)"; return 1; }
}

# Two runs from one warm snapshot: the workloads read different random bytes. Each
# restore gives the guest a new VM generation ID, on which its kernel reseeds (the case
# above), and each run's hello carries a fresh host seed that rekeys the generator before
# the workload runs, whatever the kernel does. Here the kernels diverge even without
# either (a try with both left out still read different bytes), so this case guards the
# property, not a mechanism; the mechanisms are the case above and
# agent/tests/bad_requests.rs.
case_run_from_snapshot_random_differs() {
    need_run || return
    local level first second
    for level in vm vm+container; do
        vrun "$level" --from-snapshot -- sh -c 'head -c 16 /dev/urandom | od -An -tx1'
        expect_status 0 || return 1
        first=$(tr -d ' \n' </tmp/run.out)
        vrun "$level" --from-snapshot -- sh -c 'head -c 16 /dev/urandom | od -An -tx1'
        expect_status 0 || return 1
        second=$(tr -d ' \n' </tmp/run.out)
        echo "REALKVM-INFO $level: two restores read $first and $second from /dev/urandom"
        [ ${#first} = 32 ] || { WHY="$level: no 16 random bytes: $first"; return 1; }
        [ "$first" != "$second" ] || { WHY="$level: two restores read the same random bytes $first"; return 1; }
    done
}
