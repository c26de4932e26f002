# Cases that boot Linux with vmm directly: the distro and microVM kernels, how a guest
# ends, the virtio devices, and the VMM jailed.
# Sourced by tests/realkvm/cases.sh (its helpers and variables), inside the outer guest.

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
