# The real-KVM cases, sourced by outer-init inside the outer guest. Each case_NAME boots
# an inner guest with `vmm` (through `boot`), then asserts on vmm's exit status and on the
# `REALKVM ...` lines the inner guest's own init printed (tests/realkvm/guest-init).
# A case returns 0 to pass; 1 with $WHY set to fail; 2 with $WHY set to skip.
# run_all runs every case with a per-boot timeout and one retry, and prints one
# `REALKVM-RESULT NAME PASS|FAIL|SKIP attempts=N secs=S [why=...]` line per case.

IMG=/realkvm/img
GUEST_INITRD=$IMG/guest/initramfs.cpio.gz
GUEST_ROOTFS=$IMG/guest/rootfs.ext4
DISTRO_BZIMAGE=$IMG/distro/bzImage
DISTRO_VMLINUX=$IMG/distro/vmlinux
MICROVM_VMLINUX=$IMG/kernel/vmlinux # absent when the microVM kernel was not built yet
AGENT_INITRD=$IMG/agent/initramfs.cpio.gz # the guest agent as PID 1 (resources/build-images.sh)
WORKLOAD=/realkvm/workload # busybox, /memhog and a 1 MiB /blob: the `vmm run` cases' rootfs
BOOT_TIMEOUT=${BOOT_TIMEOUT:-60}
# panic=-1: reboot at once on panic, so a panicking guest never hangs a case. quiet: every
# console byte is a nested exit; the lines we assert on come from init, not the kernel.
BASE_CMDLINE="console=ttyS0 reboot=k panic=-1 quiet"
[ "${VERBOSE:-0}" = 1 ] && BASE_CMDLINE="console=ttyS0 reboot=k panic=-1"
[ -n "${INNER_EXTRA:-}" ] && BASE_CMDLINE="$BASE_CMDLINE $INNER_EXTRA"

# The cases, in order. Cases needing the microVM kernel or devices skip themselves.
CASES="distro_bzimage_initrd distro_elf_initrd cmdline_is_ours mem_matches_512 mem_matches_768
cpus_2 cpus_4 reboot_exits_0 poweroff_exits_0 panic_exits_nonzero
microvm_elf_initrd microvm_cpus_4 microvm_poweroff_exits_0 microvm_panic_exits_nonzero
distro_virtio_blk_via_acpi root_on_virtio_blk_rw disk_ro_refuses_writes net_ping_tap vsock_round_trip hwrng_readable
run_vm_identity_stdio_exit_42 run_vmc_identity_stdio_exit_42
run_vm_from_snapshot_runs_a_command run_vmc_from_snapshot_identity_stdio_exit_42 run_from_snapshot_random_differs run_from_snapshot_new_vm_generation bench_vmc_from_snapshot
run_vm_stdin_eof_then_kill_9 run_vmc_stdin_eof_then_exit_3
run_vm_oom_is_reported run_vmc_oom_is_reported run_vm_pids_stop_fork_bomb run_vmc_pids_stop_fork_bomb
run_vmc_sigterm_reaches_workload run_agent_survives_host_disconnect run_finds_default_images run_bad_input_exits_2 run_vm_smallest_memory_runs run_guest_panic_ends_the_run run_vm_net_link_pings_the_host
compare_vm_levels_as_expected labs_with_linux_guests_pass runc_vmc_lifecycle ctr_run_vmc_annotation podman_run_vmc_annotation
jailed_vmm_boots_linux_on_cgroup_v2"

now() { cut -d' ' -f1 /proc/uptime; }

# boot KERNEL [vmm options...] [-- extra cmdline tokens]: runs vmm, sets $STATUS and $OUT.
boot() {
    local kernel=$1 opts="" extra=""
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do opts="$opts $1"; shift; done
    [ "${1:-}" = -- ] && shift
    extra="$*"
    OUT=/tmp/case.out
    rm -f /tmp/case.status
    # shellcheck disable=SC2086 # opts are split on purpose
    { timeout -s KILL "$BOOT_TIMEOUT" /usr/local/bin/vmm --kernel "$kernel" $opts \
        --cmdline "$BASE_CMDLINE $extra" </dev/null 2>&1; echo $? >/tmp/case.status; } |
        tr -d '\r' >"$OUT"
    STATUS=$(cat /tmp/case.status)
    [ "$STATUS" = 137 ] && STATUS="timeout"
}

line() { sed -n "s/^REALKVM $1//p" "$OUT" | head -1; }
expect_status() {
    [ "$STATUS" = "$1" ] && return 0
    WHY="vmm exited $STATUS, want $1"
    [ "$STATUS" = timeout ] && WHY="vmm killed after ${BOOT_TIMEOUT}s (no exit), want $1"
    return 1
}
expect_status_nonzero() {
    case "$STATUS" in
        0) WHY="vmm exited 0, want non-zero"; return 1 ;;
        timeout) WHY="vmm killed after ${BOOT_TIMEOUT}s, want a non-zero exit"; return 1 ;;
    esac
}
expect_line() { # PREFIX: the guest printed `REALKVM PREFIX...`
    grep -q "^REALKVM $1" "$OUT" && return 0
    WHY="guest did not print 'REALKVM $1'"
    return 1
}
expect_value() { # KEY VALUE: the guest printed `REALKVM KEY=VALUE` (first word after =)
    local got
    got=$(line "$1=" | cut -d' ' -f1)
    [ "$got" = "$2" ] && return 0
    WHY="guest says $1=${got:-<nothing>}, want $2"
    return 1
}
expect_check_ok() { # NAME: the guest's check NAME passed
    expect_line "check $1 " || return 1
    grep -q "^REALKVM check $1 ok" "$OUT" && return 0
    WHY="guest $(grep "^REALKVM check $1 " "$OUT" | head -1 | cut -c9-)"
    return 1
}
need_microvm_kernel() {
    [ -f "$MICROVM_VMLINUX" ] && return 0
    WHY="microVM kernel not built yet (resources/build-images.sh --kernel)"
    return 2
}
need_vmm_flag() { # FLAG: vmm's --help mentions it (the device is wired in)
    /usr/local/bin/vmm --help 2>&1 | grep -q -- "$1" && return 0
    WHY="vmm has no $1 option yet"
    return 2
}

# --- boot to init: the distro kernel as bzImage and as ELF vmlinux, initrd as root
case_distro_bzimage_initrd() {
    boot "$DISTRO_BZIMAGE" --initrd "$GUEST_INITRD" --mem 512 --cpus 1 -- realkvm.end=reboot
    expect_status 0 && expect_line init-reached && expect_line "root=rootfs:rootfs:rw"
}
case_distro_elf_initrd() {
    boot "$DISTRO_VMLINUX" --initrd "$GUEST_INITRD" --mem 512 --cpus 1 -- realkvm.end=reboot
    expect_status 0 && expect_line init-reached && expect_line "root=rootfs:rootfs:rw"
}
case_cmdline_is_ours() {
    boot "$DISTRO_BZIMAGE" --initrd "$GUEST_INITRD" --mem 512 --cpus 1 -- realkvm.end=reboot realkvm.marker=c0ffee
    expect_status 0 || return 1
    local got
    got=$(line "cmdline=")
    case "$got" in
        "$BASE_CMDLINE realkvm.end=reboot realkvm.marker=c0ffee"*) return 0 ;;
    esac
    WHY="guest /proc/cmdline is '$got'"
    return 1
}
# MemTotal is RAM minus what the kernel reserves for itself: within 12% below --mem.
mem_case() {
    local mib=$1 kb
    boot "$DISTRO_BZIMAGE" --initrd "$GUEST_INITRD" --mem "$mib" --cpus 1 -- realkvm.end=reboot
    expect_status 0 && expect_line memtotal_kb= || return 1
    kb=$(line "memtotal_kb=")
    echo "  memtotal_kb=$kb for --mem $mib"
    if [ "$kb" -le $((mib * 1024)) ] && [ "$kb" -ge $((mib * 1024 * 88 / 100)) ]; then return 0; fi
    WHY="MemTotal ${kb} kB for --mem $mib (want $((mib * 1024 * 88 / 100))..$((mib * 1024)))"
    return 1
}
case_mem_matches_512() { mem_case 512; }
case_mem_matches_768() { mem_case 768; }
cpus_case() { # KERNEL N
    boot "$1" --initrd "$GUEST_INITRD" --mem 512 --cpus "$2" -- realkvm.end=reboot
    expect_status 0 && expect_value cpus_online "$2"
}
case_cpus_2() { cpus_case "$DISTRO_BZIMAGE" 2; }
case_cpus_4() { cpus_case "$DISTRO_BZIMAGE" 4; }

# --- how the guest ends: reboot and poweroff are success, a panic is a failure
end_case() { # KERNEL END
    boot "$1" --initrd "$GUEST_INITRD" --mem 512 --cpus 1 -- "realkvm.end=$2"
    expect_line "end=$2" || return 1
}
case_reboot_exits_0() { end_case "$DISTRO_BZIMAGE" reboot && expect_status 0; }
case_poweroff_exits_0() {
    end_case "$DISTRO_BZIMAGE" poweroff || return 1
    expect_status 0 && return 0
    grep -q "reboot: Power down\|Power down" "$OUT" || WHY="$WHY; no ACPI power-off in the guest (FADT/_S5/sleep register wired?)"
    return 1
}
panic_case() { # KERNEL
    end_case "$1" panic || return 1
    expect_status_nonzero || {
        WHY="$WHY (the guest panicked; vmm must report it: pvpanic not wired?)"
        return 1
    }
    grep -q "Kernel panic" "$OUT" || { WHY="guest output has no 'Kernel panic'"; return 1; }
    echo "  vmm said: $(grep '^vmm' "$OUT" | tail -1)"
}
case_panic_exits_nonzero() { panic_case "$DISTRO_BZIMAGE"; }

# --- the microVM kernel (ELF vmlinux built from linux-source with resources/microvm-kernel.config)
case_microvm_elf_initrd() {
    need_microvm_kernel || return
    boot "$MICROVM_VMLINUX" --initrd "$GUEST_INITRD" --mem 256 --cpus 2 -- realkvm.end=reboot
    expect_status 0 && expect_line init-reached && expect_value cpus_online 2 &&
        expect_value tsc_deadline yes
}
case_microvm_cpus_4() { need_microvm_kernel || return; cpus_case "$MICROVM_VMLINUX" 4; }
case_microvm_poweroff_exits_0() {
    need_microvm_kernel || return
    end_case "$MICROVM_VMLINUX" poweroff && expect_status 0
}
case_microvm_panic_exits_nonzero() { need_microvm_kernel || return; panic_case "$MICROVM_VMLINUX"; }

# --- virtio devices (microVM kernel, virtio-mmio devices on the command line / in ACPI)
# The distro kernel's virtio_mmio (a module) takes no command-line devices: it finds the
# disk only through the DSDT's LNRO0005 entry.
case_distro_virtio_blk_via_acpi() {
    need_vmm_flag --disk || return
    cp "$GUEST_ROOTFS" /tmp/d.ext4
    boot "$DISTRO_BZIMAGE" --initrd "$GUEST_INITRD" --disk /tmp/d.ext4 --mem 512 --cpus 1 -- realkvm.checks=vda realkvm.end=reboot
    expect_status 0 && expect_check_ok vda
}
case_root_on_virtio_blk_rw() {
    need_microvm_kernel || return
    need_vmm_flag --rootfs || return
    cp "$GUEST_ROOTFS" /tmp/root.ext4
    boot "$MICROVM_VMLINUX" --rootfs /tmp/root.ext4 --mem 256 --cpus 1 -- realkvm.checks=blkrw realkvm.end=reboot
    expect_status 0 && expect_check_ok blkrw
}
case_disk_ro_refuses_writes() {
    need_microvm_kernel || return
    need_vmm_flag --disk || return
    cp "$GUEST_ROOTFS" /tmp/root.ext4
    cp "$GUEST_ROOTFS" /tmp/ro.ext4
    local before
    before=$(md5sum </tmp/ro.ext4)
    boot "$MICROVM_VMLINUX" --rootfs /tmp/root.ext4 --disk /tmp/ro.ext4,ro --mem 256 --cpus 1 -- realkvm.checks=blkro realkvm.end=reboot
    expect_status 0 && expect_check_ok blkro || return 1
    [ "$(md5sum </tmp/ro.ext4)" = "$before" ] || { WHY="the read-only disk image changed"; return 1; }
}
# The outer side of the guest's NIC: a persistent tap rk0, up, 172.30.0.1/24, made before
# vmm attaches to it. Busybox's `ip` has no `tuntap` subcommand, so it is made with
# busybox `tunctl` (TUNSETPERSIST); if vmm had to create it, it would be down and have no
# address, and every frame the guest sends would be dropped.
setup_outer_tap() {
    [ -e /sys/class/net/rk0 ] || tunctl -t rk0 >/dev/null ||
        { WHY="cannot create the outer tap rk0 (tunctl -t rk0)"; return 1; }
    ip addr show dev rk0 | grep -q 'inet 172\.30\.0\.1/24' || ip addr add 172.30.0.1/24 dev rk0 ||
        { WHY="cannot give rk0 the address 172.30.0.1/24"; return 1; }
    ip link set rk0 up || { WHY="cannot bring rk0 up"; return 1; }
}
case_net_ping_tap() {
    need_microvm_kernel || return
    need_vmm_flag --net || return
    setup_outer_tap || return 1
    boot "$MICROVM_VMLINUX" --initrd "$GUEST_INITRD" --net tap=rk0 --mem 256 --cpus 1 -- \
        realkvm.checks=ping realkvm.ip=172.30.0.2 realkvm.peer=172.30.0.1 realkvm.end=reboot
    expect_status 0 && expect_check_ok ping && return 0
    # What the outer side saw, for the failure report.
    echo "  rk0: $(ip -o link show rk0 2>&1); $(grep rk0: /proc/net/dev); neigh: $(ip neigh show dev rk0 2>&1)"
    return 1
}
case_vsock_round_trip() {
    need_microvm_kernel || return
    need_vmm_flag --vsock || return
    [ -x /realkvm/vsock-echo ] || { WHY="no vsock-echo program in the outer image"; return 2; }
    # The outer side connects through vmm's Unix socket (CONNECT 5001, Firecracker's
    # protocol) once the guest listens on vsock port 5001; the guest echoes one line.
    rm -f /tmp/v.sock /tmp/vsock.host
    /realkvm/vsock-echo host /tmp/v.sock 5001 hello-from-host >/tmp/vsock.host 2>&1 &
    local client=$!
    boot "$MICROVM_VMLINUX" --initrd "$GUEST_INITRD" --vsock cid=3,uds=/tmp/v.sock --mem 256 --cpus 1 \
        -- realkvm.checks=vsock realkvm.vsock_port=5001 realkvm.end=reboot
    wait "$client"
    expect_status 0 && expect_check_ok vsock || return 1
    grep -q '^answer=echo:hello-from-host$' /tmp/vsock.host ||
        { WHY="the host side got: $(tr '\n' ' ' </tmp/vsock.host)"; return 1; }
}
case_hwrng_readable() {
    need_microvm_kernel || return
    need_vmm_flag --rng || return
    boot "$MICROVM_VMLINUX" --initrd "$GUEST_INITRD" --rng --mem 256 --cpus 1 -- realkvm.checks=hwrng realkvm.end=reboot
    expect_status 0 && expect_check_ok hwrng
}

# --- `vmm run` in a microVM: the guest agent (PID 1 of its initramfs) runs the workload as a
# plain process (vm) or in a container (vm+container, "vmc" in case names)
RUN_TIMEOUT=${RUN_TIMEOUT:-90}
need_run() {
    need_microvm_kernel || return
    [ -f "$AGENT_INITRD" ] || { WHY="no agent initramfs (resources/build-images.sh)"; return 2; }
    /usr/local/bin/vmm run --help >/dev/null 2>&1 || { WHY="vmm has no run command yet"; return 2; }
}
# vrun LEVEL [vmm run options] -- CMD...: `vmm run` with the microVM kernel, the agent and
# the workload rootfs; stdin from $VRUN_STDIN (empty: /dev/null). Sets $STATUS; stdout in
# /tmp/run.out, stderr in /tmp/run.err (also $OUT, shown when a case fails).
vrun() {
    local level=$1 t0
    shift
    OUT=/tmp/run.err
    t0=$(now)
    if [ -n "${VRUN_STDIN:-}" ]; then
        printf '%s' "$VRUN_STDIN" | timeout -s KILL "$RUN_TIMEOUT" /usr/local/bin/vmm run --isolation "$level" \
            --kernel "$MICROVM_VMLINUX" --initrd "$AGENT_INITRD" --rootfs "$WORKLOAD" "$@" >/tmp/run.out 2>/tmp/run.err
    else
        timeout -s KILL "$RUN_TIMEOUT" /usr/local/bin/vmm run --isolation "$level" \
            --kernel "$MICROVM_VMLINUX" --initrd "$AGENT_INITRD" --rootfs "$WORKLOAD" "$@" </dev/null >/tmp/run.out 2>/tmp/run.err
    fi
    STATUS=$?
    timed_out "$t0" && STATUS=timeout
    return 0
}
# timed_out T0: the command begun at T0 ran into $RUN_TIMEOUT (its 137 is timeout's KILL,
# not the workload's own).
timed_out() { awk -v a="$1" -v b="$(now)" -v l="$RUN_TIMEOUT" 'BEGIN { exit !(b - a >= l - 1) }'; }
err_value() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" /tmp/run.err | head -1; }
# One boot: the guest's own kernel, hostname and PID of the workload on stderr; 1 MiB of
# binary data on stdout, byte-exact; exit status 42.
identity_case() { # LEVEL WANT_PID1(yes|no) [more vmm run options]
    need_run || return
    local level=$1 want_pid1=$2
    shift 2
    vrun "$level" "$@" --hostname rk-guest -- sh -c 'cat /blob; echo "kernel=$(uname -r) host=$(hostname) pid=$$" >&2; exit 42'
    expect_status 42 || return 1
    local want got kernel pid
    want=$(md5sum <"$WORKLOAD/blob" | cut -d' ' -f1)
    got=$(md5sum </tmp/run.out | cut -d' ' -f1)
    [ "$got" = "$want" ] || { WHY="stdout is not /blob ($(wc -c </tmp/run.out) bytes, md5 $got)"; return 1; }
    kernel=$(err_value kernel)
    [ -n "$kernel" ] && [ "$kernel" != "$(uname -r)" ] ||
        { WHY="guest kernel '$kernel' vs outer $(uname -r): not a kernel of its own"; return 1; }
    [ "$(err_value host)" = rk-guest ] || { WHY="hostname is '$(err_value host)', want rk-guest"; return 1; }
    pid=$(err_value pid)
    if [ "$want_pid1" = yes ]; then [ "$pid" = 1 ] || { WHY="workload pid $pid, want 1 (a PID namespace)"; return 1; }
    else [ -n "$pid" ] && [ "$pid" != 1 ] || { WHY="workload pid '$pid', want a plain guest process (not 1)"; return 1; }; fi
    echo "  kernel=$kernel pid=$pid outer=$(uname -r)"
}
case_run_vm_identity_stdio_exit_42() { identity_case vm no; }
case_run_vmc_identity_stdio_exit_42() { identity_case vm+container yes; }

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

# stdin and its end reach the workload (cat returns); then the vm workload kills itself
# with signal 9 (137). The container's PID 1 cannot (a PID namespace's init ignores
# signals from inside it, SIGKILL too): its signal-9 death is the OOM case's.
stdin_case() { # LEVEL ENDING WANT_STATUS
    need_run || return
    VRUN_STDIN="$(printf 'hello from the host\nsecond line')" vrun "$1" -- sh -c "cat; echo; echo eof-seen; $2"
    expect_status "$3" || return 1
    [ "$(cat /tmp/run.out)" = "$(printf 'hello from the host\nsecond line\neof-seen')" ] ||
        { WHY="stdout: $(tr '\n' '|' </tmp/run.out)"; return 1; }
}
case_run_vm_stdin_eof_then_kill_9() { stdin_case vm 'kill -9 $$' 137; }
case_run_vmc_stdin_eof_then_exit_3() { stdin_case vm+container 'exit 3' 3; }
# Past --memory: the guest's OOM killer (vm: --memory is the guest's RAM) or the container's
# cgroup (vm+container) ends the workload, and vmm says so.
oom_case() { # LEVEL MEMORY HOG_MIB
    need_run || return
    vrun "$1" --memory "$2" -- /memhog "$3"
    expect_status 137 || return 1
    grep -q "killed by the OOM killer" /tmp/run.err || { WHY="no OOM report: $(tail -1 /tmp/run.err)"; return 1; }
}
case_run_vm_oom_is_reported() { oom_case vm 96m 256; }
case_run_vmc_oom_is_reported() { oom_case vm+container 32m 128; }
# A fork bomb of 64 sleepers under --pids 16: the shell cannot fork past the limit, and the
# run ends at once (the sleepers are killed with the workload).
pids_case() { # LEVEL
    need_run || return
    local t0
    t0=$(now)
    vrun "$1" --pids 16 -- sh -c 'for i in $(seq 64); do sleep 60 & done; echo all-started'
    ! grep -q all-started /tmp/run.out || { WHY="64 processes started under --pids 16"; return 1; }
    grep -q "can't fork" /tmp/run.err || { WHY="no fork failure: $(tail -1 /tmp/run.err)"; return 1; }
    [ "$STATUS" != 0 ] && [ "$STATUS" != timeout ] || { WHY="vmm exited $STATUS"; return 1; }
    awk -v a="$t0" -v b="$(now)" 'BEGIN { exit !(b - a < 50) }' || { WHY="took until the sleepers ended"; return 1; }
}
case_run_vm_pids_stop_fork_bomb() { pids_case vm; }
case_run_vmc_pids_stop_fork_bomb() { pids_case vm+container; }
# SIGTERM to vmm reaches the workload (which traps it: PID 1 of a namespace ignores
# signals it has no handler for, as in any container).
case_run_vmc_sigterm_reaches_workload() {
    need_run || return
    rm -f /tmp/sig.out
    timeout -s KILL "$RUN_TIMEOUT" /usr/local/bin/vmm run --isolation vm+container --kernel "$MICROVM_VMLINUX" \
        --initrd "$AGENT_INITRD" --rootfs "$WORKLOAD" -- sh -c 'trap "echo got-term; exit 143" TERM; echo started; sleep 100 & wait' \
        </dev/null >/tmp/sig.out 2>/tmp/run.err &
    local pid=$! i=0
    while ! grep -q started /tmp/sig.out 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
    kill -TERM "$pid"
    wait "$pid"
    STATUS=$?
    OUT=/tmp/run.err
    expect_status 143 || return 1
    grep -q got-term /tmp/sig.out || { WHY="the workload did not see SIGTERM: $(tr '\n' '|' </tmp/sig.out)"; return 1; }
}
# A host (vmm run --vm-socket) that goes away mid-run: the agent kills that workload and
# keeps serving the next one.
case_run_agent_survives_host_disconnect() {
    need_run || return
    command -v mkfs.ext4 >/dev/null || { WHY="no mkfs.ext4 in the outer image"; return 2; }
    rm -f /tmp/agent.sock /tmp/disc.out /tmp/wl.ext4
    mkfs.ext4 -q -F -d "$WORKLOAD" -O ^has_journal /tmp/wl.ext4 32M >/tmp/mkfs.log 2>&1 ||
        { WHY="packing the workload rootfs failed: $(tail -2 /tmp/mkfs.log | tr '\n' ' ')"; return 1; }
    timeout -s KILL 300 /usr/local/bin/vmm --kernel "$MICROVM_VMLINUX" --initrd "$AGENT_INITRD" \
        --disk /tmp/wl.ext4,ro --vsock cid=3,uds=/tmp/agent.sock --mem 256 \
        --cmdline "console=ttyS0 reboot=k panic=-1 quiet" </dev/null >/tmp/agent-vm.log 2>&1 &
    local vm=$! i=0 run
    while [ ! -S /tmp/agent.sock ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    i=0
    timeout -s KILL "$RUN_TIMEOUT" /usr/local/bin/vmm run --isolation vm --vm-socket /tmp/agent.sock \
        -- sh -c 'echo started; exec sleep 100' </dev/null >/tmp/disc.out 2>/tmp/run.err &
    run=$!
    while ! grep -q started /tmp/disc.out 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$run"
    wait "$run" 2>/dev/null
    VRUN_STDIN="" timeout -s KILL "$RUN_TIMEOUT" /usr/local/bin/vmm run --isolation vm --vm-socket /tmp/agent.sock \
        -- sh -c 'sleep 1; echo alive; n=$(ps | grep -c "[s]leep 100"); echo "$n"' </dev/null >/tmp/run.out 2>/tmp/run.err
    STATUS=$?
    OUT=/tmp/run.err
    kill -TERM "$vm" 2>/dev/null
    wait "$vm" 2>/dev/null
    grep -q started /tmp/disc.out || { WHY="the first workload never started: $(tail -2 /tmp/run.err)"; return 1; }
    expect_status 0 || return 1
    [ "$(head -1 /tmp/run.out)" = alive ] || { WHY="second run printed: $(tr '\n' '|' </tmp/run.out)"; return 1; }
    [ "$(sed -n 2p /tmp/run.out)" = 0 ] || { WHY="the abandoned workload still runs ($(sed -n 2p /tmp/run.out) left)"; return 1; }
}
# Without --kernel and --initrd, vmm run takes the images build-images.sh points
# ~/.cache/vmm/images/default/ at.
case_run_finds_default_images() {
    need_run || return
    local cache=/tmp/xdg/vmm/images/default
    mkdir -p "$cache"
    ln -sf "$MICROVM_VMLINUX" "$cache/vmlinux"
    ln -sf "$AGENT_INITRD" "$cache/agent-initramfs.cpio.gz"
    XDG_CACHE_HOME=/tmp/xdg timeout -s KILL "$RUN_TIMEOUT" /usr/local/bin/vmm run --isolation vm \
        --rootfs "$WORKLOAD" -- echo defaults-work </dev/null >/tmp/run.out 2>/tmp/run.err
    STATUS=$?
    OUT=/tmp/run.err
    expect_status 0 && [ "$(cat /tmp/run.out)" = defaults-work ] || { WHY="${WHY:-stdout: $(cat /tmp/run.out)}"; return 1; }
}
# The smallest VM vmm run accepts (--memory 64m at the vm level) boots and runs a workload
# (MIN_VM_MEM_MIB in src/run/args.rs).
case_run_vm_smallest_memory_runs() {
    need_run || return
    vrun vm --memory 64m -- sh -c 'echo "memtotal=$(awk "/^MemTotal:/ { print \$2 }" /proc/meminfo)"'
    expect_status 0 || return 1
    grep -q '^memtotal=[0-9]' /tmp/run.out || { WHY="stdout: $(cat /tmp/run.out)"; return 1; }
    echo "  $(cat /tmp/run.out) kB with --memory 64m"
}
# A guest that panics mid-run (the workload, root in the guest, crashes it through sysrq)
# ends the run at once with an error that says so, not a hang.
case_run_guest_panic_ends_the_run() {
    need_run || return
    local t0
    t0=$(now)
    vrun vm -- sh -c 'echo c >/proc/sysrq-trigger; sleep 100'
    expect_status 1 || return 1
    grep -q "ended before the workload" /tmp/run.err || { WHY="stderr: $(head -2 /tmp/run.err | tr '\n' '|')"; return 1; }
    awk -v a="$t0" -v b="$(now)" 'BEGIN { exit !(b - a < 30) }' || { WHY="took more than 30 s"; return 1; }
    echo "  $(grep "ended before" /tmp/run.err)"
}
# Bad input on a host that boots Linux: one line, exit 2, before any VM starts (so at
# once), and nothing left behind.
case_run_bad_input_exits_2() {
    need_run || return
    local t0 line
    t0=$(now)
    for args in "--isolation vm --rootfs $WORKLOAD -- no-such-command" \
        "--isolation vm+container --rootfs $WORKLOAD --kernel /realkvm/cases.sh -- true" \
        "--isolation vm --rootfs $WORKLOAD --memory 16m -- true" \
        "--isolation vm+container --rootfs $WORKLOAD --net host -- true" \
        "--isolation vm --rootfs /nonexistent -- true"; do
        # shellcheck disable=SC2086 # split on purpose
        /usr/local/bin/vmm run --initrd "$AGENT_INITRD" $args </dev/null >/tmp/run.out 2>/tmp/run.err
        STATUS=$?
        OUT=/tmp/run.err
        expect_status 2 || { WHY="$WHY for: $args"; return 1; }
        [ "$(wc -l </tmp/run.err)" = 1 ] || { WHY="not one line for: $args: $(tr '\n' '|' </tmp/run.err)"; return 1; }
        echo "  $args: $(cat /tmp/run.err)"
    done
    awk -v a="$t0" -v b="$(now)" 'BEGIN { exit !(b - a < 10) }' || { WHY="bad input took $(awk -v a="$t0" -v b="$(now)" 'BEGIN { print b - a }') s"; return 1; }
    ! ls -d /tmp/vmm-run-* >/dev/null 2>&1 || { WHY="left behind: $(ls -d /tmp/vmm-run-*)"; return 1; }
}
# --net link at the vm level: the guest's eth0 has 10.231.x.2/30 and a default route via
# the host's end of the TAP, which answers a ping; the TAP (vmm<pid>) is gone after the run.
case_run_vm_net_link_pings_the_host() {
    need_run || return
    local before after addr gw
    before=$(ls /sys/class/net | tr '\n' ' ')
    vrun vm --net link -- sh -c 'ip addr show eth0; ip route; gw=$(ip route | sed -n "s/^default via \([0-9.]*\).*/\1/p"); echo "gateway=$gw"; ping -c1 -W3 "$gw"'
    after=$(ls /sys/class/net | tr '\n' ' ')
    expect_status 0 || { WHY="$WHY; stdout: $(tr '\n' '|' </tmp/run.out)"; return 1; }
    addr=$(sed -n 's/.*inet \(10\.231\.[0-9.]*\/30\).*/\1/p' /tmp/run.out | head -1)
    gw=$(sed -n 's/^gateway=//p' /tmp/run.out)
    [ -n "$addr" ] || { WHY="eth0 has no 10.231.x.x/30: $(tr '\n' '|' </tmp/run.out)"; return 1; }
    case "$gw" in 10.231.*) ;; *) WHY="no default route via the link: $(tr '\n' '|' </tmp/run.out)"; return 1 ;; esac
    grep -q '1 packets received\|1 received' /tmp/run.out || { WHY="the ping got no answer: $(tr '\n' '|' </tmp/run.out)"; return 1; }
    [ "$before" = "$after" ] || { WHY="interfaces before: $before; after: $after (a TAP left behind?)"; return 1; }
    ! echo "$after" | grep -q 'vmm[0-9]' || { WHY="a TAP is left behind: $after"; return 1; }
    echo "  eth0 $addr via $gw; outer interfaces after the run: $after"
}

# The outer guest stands for "the host" in the compare and lab cases: give it what a host
# has and its bare init lacks: loopback up (the process level's canary port and network
# benchmark are on 127.0.0.1), a cgroup2 hierarchy (host containers), /dev/shm, root's
# home, and the microVM images where `vmm run` looks by default (as
# resources/build-images.sh leaves them).
outer_as_host() {
    local images=${XDG_CACHE_HOME:-$HOME/.cache}/vmm/images/default
    ip link set lo up
    mkdir -p /sys/fs/cgroup "$images"
    grep -q ' /sys/fs/cgroup ' /proc/mounts || mount -t cgroup2 none /sys/fs/cgroup
    mkdir -p /dev/shm /dev/pts # Podman keeps its locks in /dev/shm; ptys come from devpts
    grep -q ' /dev/shm ' /proc/mounts || mount -t tmpfs shm /dev/shm
    grep -q ' /dev/pts ' /proc/mounts || mount -t devpts -o ptmxmode=0666 devpts /dev/pts
    ln -sf "$MICROVM_VMLINUX" "$images/vmlinux"
    ln -sf "$AGENT_INITRD" "$images/agent-initramfs.cpio.gz"
    # Root's home (the kernel starts init with HOME=/), with the images in its cache:
    # Podman runs vmm-runc with HOME but without XDG_CACHE_HOME.
    export HOME=/root
    mkdir -p /root/.cache/vmm/images
    ln -sfn "$images" /root/.cache/vmm/images/default
}

# --- `vmm compare` with the VM levels: the outer guest is the "host" here. Every probe
# result must be the expected one (exit 0): the VM levels see a kernel of their own
# (boot_id differs from the outer guest's) and none of the host's canaries; the process
# level sees them all.
case_compare_vm_levels_as_expected() {
    need_run || return
    [ -x /usr/local/bin/vmm-probe ] || { WHY="no vmm-probe in the outer guest"; return 2; }
    local t0
    t0=$(now)
    OUT=/tmp/compare.out
    : >/tmp/compare.out
    outer_as_host
    # Its progress lines pass to the console as they come (the outer watchdog wants a
    # sign of life within REALKVM_STALL seconds). The probes, start-up and memory only:
    # the in-workload benchmarks at the vm level (CPU, syscall and fork loops in the nested
    # guest) were running when the outer guest livelocked, in 3 of 3 boots of one CI run
    # and in most hangs before (tests/realkvm/README.md); under TCG their figures mean
    # nothing anyway.
    { timeout -s KILL 900 /usr/local/bin/vmm compare --levels process,vm,vm+container --runs 2 \
        --only probes,start,memory.idle_pss \
        --budget-ms 100 --kernel "$MICROVM_VMLINUX" --initrd "$AGENT_INITRD" \
        --json /tmp/compare.json </dev/null; echo $? >/tmp/compare.rc; } 2>&1 |
        while IFS= read -r l; do echo "  $l"; echo "$l" >>/tmp/compare.out; done
    STATUS=$(cat /tmp/compare.rc)
    expect_status 0 || return 1
    [ "$(grep -c '"skipped": null' /tmp/compare.json)" = 3 ] ||
        { WHY="a level was skipped: $(grep '"skipped"' /tmp/compare.json | tr '\n' ' ')"; return 1; }
    ! grep -q '"verdict": "not_run"\|"verdict": "unexpected"' /tmp/compare.json ||
        { WHY="a probe did not run or was unexpected"; return 1; }
    grep -q '"unexpected": 0' /tmp/compare.json || { WHY="unexpected results"; return 1; }
    # The VM levels' kernel row says "own: <release>", the process level's "host's".
    [ "$(grep -c '"observed": "own: ' /tmp/compare.json)" = 2 ] ||
        { WHY="the VM levels do not report a kernel of their own"; return 1; }
    echo "  compare took $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }') s"
}

# The teaching labs' steps that need Linux guests (`vmm lab list` marks the labs), checked
# here where guests boot: every one must pass, and none may be skipped for want of guests.
# (Their other steps pass in the main CI; a host container cannot pivot_root out of the
# outer guest's initramfs root.) Not in CASES yet: it passed whole once, but in 3 of 4
# later outer boots the outer guest went silent mid-case (no soft-lockup report, no
# heartbeat), a hang not understood yet. Run it with `run.sh --only
# labs_with_linux_guests_pass`.
case_labs_with_linux_guests_pass() {
    need_run || return
    local labs n
    outer_as_host
    labs=$(/usr/local/bin/vmm lab list | awk '/Linux guests/ { print $1 }')
    [ -n "$labs" ] || { WHY="no lab needs Linux guests"; return 2; }
    OUT=/tmp/labs.out
    : >/tmp/labs.out
    # A step prints when it ends, and a `vmm compare` step takes minutes under TCG: a sign
    # of life for the outer watchdog (a hung outer guest stops printing it too).
    (while sleep 60; do echo "REALKVM-ALIVE labs_with_linux_guests_pass"; done) &
    local heartbeat=$!
    for n in $labs; do
        { timeout -s KILL 900 /usr/local/bin/vmm lab check "$n" --rootfs "$WORKLOAD" \
            --only-needing linux-guests </dev/null
          echo $? >/tmp/labs.rc; } 2>&1 | while IFS= read -r l; do echo "  $l"; echo "$l" >>/tmp/labs.out; done
        STATUS=$(cat /tmp/labs.rc)
        expect_status 0 || { kill "$heartbeat"; WHY="lab $n: $WHY"; return 1; }
    done
    kill "$heartbeat"
    ! grep -q "skipped (needs a host that boots" /tmp/labs.out ||
        { WHY="a step was skipped for want of Linux guests"; return 1; }
    grep -q ": pass$" /tmp/labs.out || { WHY="no step ran"; return 1; }
}

# --- vmm-runc with the annotation io.vmm.isolation=vm+container: `run` boots a microVM,
# the workload runs in a container in it, its output and exit status come back; then the
# split lifecycle: `create` returns with the workload created in the guest (state
# "created"), `start` lets it run, `state` says "stopped" once it ended, `delete` removes it.
case_runc_vmc_lifecycle() {
    need_run || return
    [ -x /usr/local/bin/vmm-runc ] || { WHY="no vmm-runc in the outer guest"; return 2; }
    outer_as_host
    local b=/tmp/runc-bundle root=/tmp/runc-root runc="/usr/local/bin/vmm-runc --root /tmp/runc-root" i
    rm -rf "$b" "$root"
    mkdir -p "$b"
    cat >"$b/config.json" <<EOF
{"ociVersion": "1.0.2", "annotations": {"io.vmm.isolation": "vm+container"},
 "process": {"args": ["sh", "-c", "echo hi-from-vmc kernel=\$(uname -r) pid=\$\$; exit 3"],
   "cwd": "/", "env": ["PATH=/bin:/sbin:/usr/bin"], "user": {"uid": 0, "gid": 0}},
 "root": {"path": "$WORKLOAD"},
 "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
 "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
   {"type": "uts"}, {"type": "network"}]}}
EOF
    OUT=/tmp/runc.out
    { timeout -s KILL 120 $runc run --bundle "$b" c1 </dev/null; echo $? >/tmp/case.status; } >"$OUT" 2>&1
    STATUS=$(cat /tmp/case.status)
    expect_status 3 || return 1
    grep -q "hi-from-vmc kernel=.* pid=1$" "$OUT" ||
        { WHY="run: no line from the workload as PID 1 of its container"; return 1; }
    [ "$(sed -n 's/.*kernel=\([^ ]*\).*/\1/p' "$OUT")" != "$(uname -r)" ] ||
        { WHY="run: the workload saw the outer guest's kernel"; return 1; }
    [ ! -e "$root/c1" ] || { WHY="run left its state behind"; return 1; }

    timeout -s KILL 120 $runc create --bundle "$b" c2 </dev/null >"$OUT" 2>&1 ||
        { WHY="create failed"; return 1; }
    $runc state c2 | grep -q '"status": "created"' ||
        { WHY="after create: $($runc state c2 | tr -d '\n')"; return 1; }
    ! grep -q hi-from-vmc "$OUT" || { WHY="the workload ran before start"; return 1; }
    $runc start c2 || { WHY="start failed"; return 1; }
    for i in $(seq 1 60); do
        $runc state c2 | grep -q '"status": "stopped"' && break
        sleep 1
    done
    $runc state c2 | grep -q '"status": "stopped"' || { WHY="not stopped 60 s after start"; return 1; }
    grep -q hi-from-vmc "$OUT" || { WHY="no output from the started workload"; return 1; }
    $runc delete c2 || { WHY="delete failed"; return 1; }
    [ ! -e "$root/c2" ] || { WHY="delete left the state behind"; return 1; }
}

# --- Podman and containerd with vmm-runc, the container put in a microVM by the annotation
# io.vmm.isolation=vm+container: each client as its users call it (the busybox image
# imported offline, /realkvm/busybox-*.tar from oci-image.py), the workload's output and
# exit status back through the client, and nothing left after --rm (no container, no
# vmm-runc state, no VMM process).
OCI_IMAGE=localhost/vmm-runc-test:busybox
OCI_SCRIPT='echo hi-from-the-vm kernel=$(uname -r) pid=$$; exit 3'
# expect_oci_run CLIENT: the checks after `CLIENT run --rm` of $OCI_SCRIPT wrote $OUT.
expect_oci_run() {
    expect_status 3 || { WHY="$1 run: $WHY"; return 1; }
    grep -q "hi-from-the-vm kernel=.* pid=1$" "$OUT" ||
        { WHY="$1 run: no line from the workload as PID 1 of its container"; return 1; }
    [ "$(sed -n 's/.*hi-from-the-vm kernel=\([^ ]*\).*/\1/p' "$OUT")" != "$(uname -r)" ] ||
        { WHY="$1 run: the workload saw the outer guest's kernel, not a VM's"; return 1; }
    ! ps -o args | grep -v grep | grep -q "vmm run" ||
        { WHY="$1 run: a VMM is left running: $(ps -o pid,args | grep 'vmm run' | grep -v grep)"; return 1; }
}

case_ctr_run_vmc_annotation() {
    need_run || return
    local tool
    for tool in containerd ctr containerd-shim-runc-v2; do
        command -v $tool >/dev/null ||
            { WHY="no $tool in the outer guest (apt-get install containerd on the host)"; return 2; }
    done
    [ -x /usr/local/bin/vmm-runc ] || { WHY="no vmm-runc in the outer guest"; return 2; }
    outer_as_host
    local dir=/tmp/containerd pid rc
    rm -rf "$dir"
    mkdir -p "$dir"
    cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$dir/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
EOF
    containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 &
    pid=$!
    ctr_vmc_checks "ctr --address $dir/containerd.sock --namespace realkvm"
    rc=$?
    kill "$pid"
    wait "$pid"
    return $rc
}
ctr_vmc_checks() { # CTR: a ctr command line speaking to the case's containerd
    local ctr=$1 i
    OUT=/tmp/containerd/containerd.log
    for i in $(seq 1 60); do
        $ctr version >/dev/null 2>&1 && break
        sleep 1
    done
    $ctr version >/dev/null 2>&1 || { WHY="containerd is not serving after 60 s"; return 1; }
    OUT=/tmp/ctr.out
    $ctr image import --snapshotter native /realkvm/busybox-oci.tar >"$OUT" 2>&1 ||
        { WHY="ctr image import failed"; return 1; }
    { timeout -s KILL 120 $ctr run --rm --snapshotter native --runc-binary /usr/local/bin/vmm-runc \
        --annotation io.vmm.isolation=vm+container "$OCI_IMAGE" c1 sh -c "$OCI_SCRIPT" </dev/null
        echo $? >/tmp/case.status; } >>"$OUT" 2>&1
    STATUS=$(cat /tmp/case.status)
    expect_oci_run ctr || return 1
    [ -z "$($ctr containers list --quiet)" ] || { WHY="ctr run --rm left a container"; return 1; }
    [ ! -e /run/containerd/runc/realkvm/c1 ] || { WHY="vmm-runc's state of c1 is left"; return 1; }
    # A detached task, a process exec'd in it (`ctr task exec`), then killed and removed.
    ctr_exec_in_detached "$ctr" vm+container c2 'echo exec-in pid=$$ init=$(cat /proc/1/comm); exit 5' ||
        return 1
    [ "$STATUS" = 5 ] && grep -q "exec-in pid=[0-9]* init=sleep$" "$OUT" ||
        { WHY="ctr task exec: exited $STATUS, want 5 and a line from the container"; return 1; }
    [ -z "$($ctr containers list --quiet)" ] || { WHY="ctr left container c2"; return 1; }
    ! ps -o args | grep -v grep | grep -q "vmm run" || { WHY="ctr task kill left the VMM running"; return 1; }
    # The vm level (the workload is the guest's own process, chrooted into the image): a
    # detached task and a process exec'd in it, which must see the image's root.
    ctr_exec_in_detached "$ctr" vm c3 'echo exec-vm $(ls /memhog) kernel=$(uname -r); exit 6' ||
        return 1
    [ "$STATUS" = 6 ] && grep -q "exec-vm /memhog kernel=" "$OUT" ||
        { WHY="ctr task exec at the vm level: exited $STATUS, want 6 and a line from the image's root"; return 1; }
    ! grep -q "exec-vm .* kernel=$(uname -r)$" "$OUT" || { WHY="the vm level's exec ran in the outer guest"; return 1; }
    [ -z "$($ctr containers list --quiet)" ] || { WHY="ctr left container c3"; return 1; }
    grep -e hi-from-the-vm -e exec-in -e exec-vm "$OUT" | sed 's/^/  ctr: /'
}

# ctr_exec_in_detached CTR LEVEL ID SCRIPT: `ctr run -d` of a sleep at LEVEL, `ctr task
# exec` of SCRIPT in it ($STATUS its exit status, its output in $OUT), then the task killed
# and the container deleted.
ctr_exec_in_detached() {
    local ctr=$1 level=$2 id=$3 i
    timeout -s KILL 120 $ctr run -d --snapshotter native --runc-binary /usr/local/bin/vmm-runc \
        --annotation io.vmm.isolation="$level" "$OCI_IMAGE" "$id" sleep 1000 >>"$OUT" 2>&1 ||
        { WHY="ctr run -d at $level failed"; return 1; }
    { timeout -s KILL 60 $ctr task exec --exec-id "$id-exec" "$id" sh -c "$4" </dev/null
        echo $? >/tmp/case.status; } >>"$OUT" 2>&1
    STATUS=$(cat /tmp/case.status)
    $ctr task kill -s SIGKILL "$id" >>"$OUT" 2>&1
    for i in $(seq 1 30); do $ctr task list | grep -q "^$id .*STOPPED" && break; sleep 1; done
    $ctr task delete "$id" >>"$OUT" 2>&1
    $ctr container delete "$id" >>"$OUT" 2>&1
}

case_podman_run_vmc_annotation() {
    need_run || return
    local tool
    for tool in podman conmon script; do
        command -v $tool >/dev/null ||
            { WHY="no $tool in the outer guest (apt-get install podman bsdutils on the host)"; return 2; }
    done
    [ -x /usr/local/bin/vmm-runc ] || { WHY="no vmm-runc in the outer guest"; return 2; }
    outer_as_host
    local dir=/tmp/podman
    rm -rf "$dir"
    mkdir -p "$dir" /etc/containers /var/tmp
    # Podman's image copy asks for a signature policy; the image is a local file.
    [ -f /etc/containers/policy.json ] ||
        echo '{"default": [{"type": "insecureAcceptAnything"}]}' >/etc/containers/policy.json
    # Registered by name, so conmon passes vmm-runc --log-format=json (as on the host:
    # tests/oci_clients.rs).
    cat >"$dir/containers.conf" <<EOF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
runtime = "vmm-runc"
runtime_supports_json = ["crun", "runc", "vmm-runc"]
[engine.runtimes]
vmm-runc = ["/usr/local/bin/vmm-runc"]
EOF
    export CONTAINERS_CONF=$dir/containers.conf
    local podman="podman --root $dir/root --runroot $dir/run --storage-driver vfs"
    OUT=/tmp/podman.out
    $podman import /realkvm/busybox-layer.tar "$OCI_IMAGE" >"$OUT" 2>&1 ||
        { unset CONTAINERS_CONF; WHY="podman import failed"; return 1; }
    # Podman binds host files (/etc/hosts, /etc/hostname, /run/.containerenv) and its
    # /dev/shm directory: copied in, and the guest's own tmpfs.
    { timeout -s KILL 120 $podman run --rm --network none \
        --annotation io.vmm.isolation=vm+container "$OCI_IMAGE" sh -c \
        "echo hostname=\$(cat /etc/hostname) shm=\$(grep ' /dev/shm ' /proc/mounts | cut -d' ' -f3); $OCI_SCRIPT" </dev/null
        echo $? >/tmp/case.status; } >>"$OUT" 2>&1
    STATUS=$(cat /tmp/case.status)
    local left id
    left=$($podman ps --all --quiet)
    expect_oci_run podman || { unset CONTAINERS_CONF; return 1; }
    [ -z "$left" ] || { unset CONTAINERS_CONF; WHY="podman run --rm left a container"; return 1; }
    grep -q "hostname=[0-9a-f]\{12\} shm=tmpfs$" "$OUT" ||
        { unset CONTAINERS_CONF; WHY="no copied /etc/hostname or no tmpfs at /dev/shm"; return 1; }
    # -t: the workload's pty is the guest's, relayed to a host pty whose other end conmon
    # holds (script(1) gives podman a terminal of its own, as a user's would be).
    { timeout -s KILL 120 script -qec "$podman run --rm -t --network none \
        --annotation io.vmm.isolation=vm+container $OCI_IMAGE \
        sh -c 'echo run-tty=\$(tty); exit 4'" /dev/null </dev/null
        echo $? >/tmp/case.status; } >>"$OUT" 2>&1
    STATUS=$(cat /tmp/case.status)
    [ "$STATUS" = 4 ] && grep -q "run-tty=/dev/pts/0" "$OUT" ||
        { unset CONTAINERS_CONF; WHY="podman run -t: exited $STATUS, want 4 and a tty"; return 1; }
    # A detached container: `podman exec` in it (the process joins the container in the
    # guest: its hostname, not PID 1), then stopped (its sleep, PID 1 of the container,
    # ignores SIGTERM: after 2 s the SIGKILL ends the VM) and removed.
    id=$($podman run -d --network none --annotation io.vmm.isolation=vm+container \
        "$OCI_IMAGE" sleep 1000 2>>"$OUT")
    { timeout -s KILL 60 $podman exec "$id" sh -c 'echo exec-in=$(cat /etc/hostname) pid=$$ init=$(cat /proc/1/comm); exit 5' </dev/null
        echo $? >/tmp/case.status; } >>"$OUT" 2>&1
    STATUS=$(cat /tmp/case.status)
    [ "$STATUS" = 5 ] && grep -q "exec-in=$(echo "$id" | cut -c1-12) pid=[0-9]* init=sleep$" "$OUT" ||
        { unset CONTAINERS_CONF; $podman rm -f "$id" >/dev/null 2>&1
          WHY="podman exec: exited $STATUS, want 5 and a line from the container"; return 1; }
    { timeout -s KILL 60 script -qec "$podman exec -t $id \
        sh -c 'echo exec-tty=\$(tty); exit 6'" /dev/null </dev/null
        echo $? >/tmp/case.status; } >>"$OUT" 2>&1
    STATUS=$(cat /tmp/case.status)
    [ "$STATUS" = 6 ] && grep -q "exec-tty=/dev/pts/[0-9]" "$OUT" ||
        { unset CONTAINERS_CONF; $podman rm -f "$id" >/dev/null 2>&1
          WHY="podman exec -t: exited $STATUS, want 6 and a tty"; return 1; }
    timeout -s KILL 60 $podman stop -t 2 "$id" >>"$OUT" 2>&1 &&
        timeout -s KILL 60 $podman rm "$id" >>"$OUT" 2>&1
    STATUS=$?
    left=$($podman ps --all --quiet)
    unset CONTAINERS_CONF
    [ "$STATUS" = 0 ] || { WHY="podman stop or rm of a vm+container container failed"; return 1; }
    [ -z "$left" ] || { WHY="podman stop and rm left a container"; return 1; }
    ! ps -o args | grep -v grep | grep -q "vmm run" || { WHY="podman stop left the VMM running"; return 1; }
    grep -e hi-from-the-vm -e exec-in -e -tty= "$OUT" | sed 's/^/  podman: /'
}

# --- the VMM jailed (vmm --jail): Linux boots with the VMM as an unprivileged user in a
# root of its own files, under a cgroup v2 memory limit (the outer guest's cgroups are
# v2; the host tests run on hybrid v1). The files are the user's, as the jailer asks.
case_jailed_vmm_boots_linux_on_cgroup_v2() {
    outer_as_host
    local dir=/tmp/jail files=/tmp/jail-files
    rm -rf "$dir" "$files"
    mkdir -p "$dir" "$files"
    cp "$DISTRO_BZIMAGE" "$files/bzImage"
    cp "$GUEST_INITRD" "$files/initrd"
    chown -R 65534:65534 "$files"
    boot "$files/bzImage" --initrd "$files/initrd" --mem 512 --cpus 1 --jail "$dir" \
        --uid 65534 --gid 65534 --cgroup memory.max=600M -- realkvm.end=reboot
    expect_status 0 && expect_line init-reached && expect_line "root=rootfs:rootfs:rw"
}

# run_all [ONLY]: every case (or only those in the comma-separated ONLY list).
run_all() {
    local only=$1 name attempt t0 secs rc pass=0 fail=0 skip=0
    for name in $CASES; do
        if [ -n "$only" ]; then
            case ",$only," in *",$name,"*) ;; *) continue ;; esac
        fi
        attempt=0
        while :; do
            attempt=$((attempt + 1))
            WHY=""
            t0=$(now)
            echo "REALKVM-START $name attempt=$attempt"
            "case_$name"
            rc=$?
            secs=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
            [ $rc = 1 ] && [ $attempt = 1 ] || break
            echo "REALKVM-RETRY $name secs=$secs why=$WHY"
            tail -n "${TAIL_LINES:-40}" "$OUT" | sed 's/^/  | /'
        done
        case $rc in
            0) pass=$((pass + 1)); echo "REALKVM-RESULT $name PASS attempts=$attempt secs=$secs" ;;
            2) skip=$((skip + 1)); echo "REALKVM-RESULT $name SKIP why=$WHY" ;;
            *) fail=$((fail + 1)); echo "REALKVM-RESULT $name FAIL attempts=$attempt secs=$secs why=$WHY"
               tail -n "${TAIL_LINES:-40}" "$OUT" | sed 's/^/  | /' ;;
        esac
    done
    echo "REALKVM-DONE pass=$pass fail=$fail skip=$skip"
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
