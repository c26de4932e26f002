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
distro_virtio_blk_via_acpi root_on_virtio_blk_rw disk_ro_refuses_writes net_ping_tap vsock_round_trip hwrng_readable"

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
