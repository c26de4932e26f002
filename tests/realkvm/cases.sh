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
run_vmc_sigterm_reaches_workload run_agent_survives_host_disconnect run_finds_default_images run_bad_input_exits_2 run_vm_smallest_memory_runs run_guest_panic_ends_the_run run_vm_net_link_pings_the_host run_vmc_net_link_pings_the_host run_vm_from_snapshot_net_link_pings_the_host
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

# The cases themselves, by theme (tests/realkvm/cases/*.sh); CASES above gives the order.
for cases_file in "${CASES_DIR:-/realkvm/cases}"/*.sh; do
    # shellcheck disable=SC1090 # the case files, by theme
    . "$cases_file"
done

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
