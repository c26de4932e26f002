#!/usr/bin/env bash
# The real-KVM tier: boots real Linux guests with `vmm` on a genuine KVM. This host's
# /dev/kvm (PVM) cannot run unmodified Linux, but QEMU's TCG emulates AMD SVM, so an outer
# Debian guest under QEMU loads kvm_amd, and `vmm` runs inside it. See tests/realkvm/README.md.
#
# Usage: tests/realkvm/run.sh [--only case1,case2] [--bench N] [--build-kernel]
#   --only LIST      run only these cases (names in tests/realkvm/cases/*.sh)
#   --bench N        instead of the cases, boot the same guest N times with vmm and with
#                    QEMU -M microvm and report the medians and their ratio
#   --build-kernel   build the microVM kernel first if it is not cached (~13 min on 2 cores)
#   --verbose        inner kernels print their whole boot log; failures show all of it
#   --inner-cmdline "ARGS"  append ARGS to every inner guest's kernel command line
#   --known-fail LIST  cases known to fail (an open bug): reported as KNOWN-FAIL, loudly,
#                    without failing the run; one of them passing is reported too
# Env: VMM_BIN (default: cargo build --release → target/x86_64-unknown-linux-gnu/release/vmm,
# static; see .cargo/config.toml), REALKVM_ACCEL (QEMU -accel, default tcg,thread=multi),
# REALKVM_TIMEOUT
# (outer QEMU limit, s), BOOT_TIMEOUT (per inner boot, s), XDG_CACHE_HOME.
# Exit: 0 when every case passed or skipped, 1 when one failed or the run broke, 2 usage.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/vmm/realkvm"
only="" bench="" kernel_flag="--no-kernel" verbose=0 inner_extra="" known_fail=""
while [ $# -gt 0 ]; do
    case "$1" in
        --only) only=$2; shift 2 ;;
        --bench) bench=$2; shift 2 ;;
        --build-kernel) kernel_flag="--kernel"; shift ;;
        --verbose) verbose=1; shift ;;
        --inner-cmdline) inner_extra=$2; shift 2 ;;
        --known-fail) known_fail=$2; shift 2 ;;
        *) sed -n '6,20p' "$0" >&2; exit 2 ;;
    esac
done
say() { echo "realkvm: $*" >&2; }
die() { say "error: $*"; exit 1; }
t_start=$(date +%s)

# --- what the outer guest is made of, all from Debian packages
qemu=$(command -v qemu-system-x86_64 || true)
[ -n "$qemu" ] || die "qemu-system-x86_64 is needed: apt-get install qemu-system-x86"
outer_kernel=$(ls /boot/vmlinuz-*-cloud-amd64 2>/dev/null | sort -V | tail -1 || true)
[ -n "$outer_kernel" ] || die "no cloud kernel: apt-get install linux-image-cloud-amd64"
kver=${outer_kernel#/boot/vmlinuz-}
moddir=/lib/modules/$kver/kernel
modules=("$moddir/virt/lib/irqbypass.ko" "$moddir/arch/x86/kvm/kvm.ko"
    "$moddir/arch/x86/kvm/kvm-amd.ko" "$moddir/drivers/net/tun.ko")
for m in "${modules[@]}"; do [ -f "$m" ] || die "missing module $m"; done
command -v zstd >/dev/null || die "zstd is needed: apt-get install zstd"

# --- vmm, release build
if [ -z "${VMM_BIN:-}" ]; then
    say "building vmm (cargo build --release)"
    (cd "$repo" && cargo build --release --quiet) || die "cargo build --release failed"
    VMM_BIN=$repo/target/x86_64-unknown-linux-gnu/release/vmm
fi
[ -x "$VMM_BIN" ] || die "VMM_BIN=$VMM_BIN is not an executable"

# --- inner guest images (cached, keyed by their inputs)
images_env=$("$repo/resources/build-images.sh" $kernel_flag --env) || die "building the guest images failed"
eval "$images_env"

# --- the outer initramfs
mkdir -p "$cache"
tree=$(mktemp -d "$cache/.tree.XXXXXX")
trap 'rm -rf "$tree"' EXIT
mkdir -p "$tree"/{bin,dev,proc,sys,tmp,run,modules,realkvm/img,usr/local/bin}
cp /bin/busybox "$tree/bin/busybox"
install -m 0755 "$here/outer-init" "$tree/init"
cp -r "$here/cases.sh" "$here/cases" "$here/bench.sh" "$tree/realkvm/"
[ -x "${VSOCK_ECHO:-}" ] && cp "$VSOCK_ECHO" "$tree/realkvm/vsock-echo"
for m in "${modules[@]}"; do cp "$m" "$tree/modules/"; done
# A dynamically linked binary runs if its libraries sit at the paths ldd prints (a static
# one, like vmm, has none: ldd says "statically linked" or fails).
copy_with_libs() { # BINARY DEST
    local libs lib
    cp "$1" "$tree$2"
    libs=$(ldd "$1" 2>/dev/null | grep -o '/[^ ]*' | sort -u || true)
    for lib in $libs; do
        mkdir -p "$tree$(dirname "$lib")"
        cp -L "$lib" "$tree$lib"
    done
}
mkdir -p "$tree/usr/local/bin"
copy_with_libs "$VMM_BIN" /usr/local/bin/vmm
# vmm compare's probe, which cargo builds beside vmm.
probe_bin=$(dirname "$VMM_BIN")/vmm-probe
[ -x "$probe_bin" ] && copy_with_libs "$probe_bin" /usr/local/bin/vmm-probe
# vmm-runc, which executes the vmm beside it.
runc_bin=$(dirname "$VMM_BIN")/vmm-runc
[ -x "$runc_bin" ] && copy_with_libs "$runc_bin" /usr/local/bin/vmm-runc
# The images, as hard links into the tree (the cache is on the same file system; a copy
# otherwise). Not symlinks followed when packing: that would also turn every busybox applet
# link of the workload rootfs below into a copy of busybox.
add_image() { cp -al "$1" "$tree/realkvm/img/$2" 2>/dev/null || cp -a "$1" "$tree/realkvm/img/$2"; }
add_image "$GUEST_DIR" guest
add_image "$DISTRO_DIR" distro
if [ -n "$KERNEL_VMLINUX" ]; then add_image "$(dirname "$KERNEL_VMLINUX")" kernel; fi
if [ -n "${AGENT_INITRD:-}" ]; then add_image "$(dirname "$AGENT_INITRD")" agent; fi
# The `vmm run` cases' workload rootfs: busybox, a memory hog for the OOM cases, and 1 MiB
# of binary data for the byte-exact stdout check (the outer kernel's first MiB: compressed,
# so every byte value, and the same each run, so the outer initramfs stays cached). vmm
# packs it into ext4 itself, with mkfs.ext4.
"$repo/resources/container-rootfs.sh" "$tree/realkvm/workload" || die "building the workload rootfs failed"
gcc -static -O2 -o "$tree/realkvm/workload/memhog" "$here/memhog.c" || die "building tests/realkvm/memhog.c failed"
gcc -static -O2 -o "$tree/realkvm/kvm-pin" "$here/kvm-pin.c" || die "building tests/realkvm/kvm-pin.c failed"
gcc -static -O2 -o "$tree/realkvm/elapsed" "$here/elapsed.c" || die "building tests/realkvm/elapsed.c failed"
head -c 1048576 "$outer_kernel" >"$tree/realkvm/workload/blob"
# Podman and containerd, for the cases where they run vmm-runc (when the host has them),
# crun, which the snapshot benchmark measures beside our container level, script(1) to
# give `podman run -t` a terminal, and the busybox image they import, as a
# layer tar and an OCI archive.
mkdir -p "$tree/usr/bin"
for tool in containerd ctr containerd-shim-runc-v2 podman conmon script crun; do
    if command -v "$tool" >/dev/null; then copy_with_libs "$(command -v "$tool")" "/usr/bin/$tool"; fi
done
python3 "$here/oci-image.py" "$tree/realkvm/workload" "$tree/realkvm/busybox-layer.tar" \
    "$tree/realkvm/busybox-oci.tar" localhost/vmm-runc-test:busybox ||
    die "making the busybox image (tests/realkvm/oci-image.py) failed"
mkdir -p "$tree/sbin" "$tree/etc"
copy_with_libs "$(command -v mkfs.ext4)" /sbin/mkfs.ext4
[ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$tree/etc/"
if [ -n "$bench" ]; then
    # The benchmark also boots the guest with Debian's QEMU -M microvm, inside the outer guest.
    mkdir -p "$tree/usr/bin"
    copy_with_libs "$qemu" /usr/bin/qemu-system-x86_64
    gcc -static -O2 -o "$tree/realkvm/time-to-init" "$here/time-to-init.c" ||
        die "building tests/realkvm/time-to-init.c failed"
    for f in bios-microvm.bin qboot.rom pvh.bin linuxboot_dma.bin linuxboot.bin kvmvapic.bin; do
        [ -e "/usr/share/qemu/$f" ] || continue
        mkdir -p "$tree/usr/share/qemu"
        cp -L "/usr/share/qemu/$f" "$tree/usr/share/qemu/"
    done
fi
key=$( (cd "$tree" && find . -type f -o -type l | LC_ALL=C sort | while read -r f; do
    if [ -L "$f" ]; then echo "$f -> $(readlink "$f")"; else sha256sum "$f"; fi
done) | sha256sum | cut -c1-16)
initrd="$cache/outer-$key.cpio.zst"
if [ ! -f "$initrd" ]; then
    say "packing the outer initramfs $key"
    (cd "$tree" && find . | LC_ALL=C sort |
        cpio -o -H newc -R 0:0 --quiet) | zstd -q -T2 -3 >"$initrd.tmp"
    mv "$initrd.tmp" "$initrd"
    ls -t "$cache"/outer-*.cpio.zst | tail -n +4 | xargs -r rm -f # keep the 3 newest
fi
say "outer initramfs $(du -h "$initrd" | cut -f1) ($initrd), prepared in $(( $(date +%s) - t_start )) s"

# --- boot the outer guest under TCG with SVM, with an outer limit
# nokaslr: a hang dump's addresses can be looked up in the outer kernel's System.map.
append="console=ttyS0 panic=-1 quiet nokaslr"
[ -n "$only" ] && append="$append realkvm.only=$only"
[ -n "$bench" ] && append="$append realkvm.bench=$bench"
[ "$verbose" = 1 ] && append="$append realkvm.verbose=1"
[ -n "$inner_extra" ] && append="$append realkvm.inner_extra=$(echo "$inner_extra" | tr ' ' ',')"
[ -n "${BOOT_TIMEOUT:-}" ] && append="$append realkvm.boot_timeout=$BOOT_TIMEOUT"
limit=${REALKVM_TIMEOUT:-2400}
# A nested-virtualization outer guest occasionally hangs as a whole (measured here: about
# once in 20 full runs; seen as "soft lockup" reports of the outer kernel, once for 13 min
# with khugepaged stuck), which no per-case timeout inside it can catch. So a watchdog
# kills QEMU when the outer kernel reports a soft lockup or an RCU stall, or when no
# REALKVM/BENCH line came for REALKVM_STALL seconds (a case takes at most two 60 s boots),
# and the cases that got no result run again in a fresh outer guest, at most four times
# more (each hang costs REALKVM_STALL seconds and a boot; seen: up to two hangs a run).
stall=${REALKVM_STALL:-150}
accel=${REALKVM_ACCEL:-tcg,thread=multi}
log="$cache/last-run.log"
: >"$log"
rm -f "$log.hang-dump"
# dump_hung_outer: what a hung outer guest's vCPUs are doing, from QEMU's monitor and the
# host's view of QEMU's threads (spinning or sleeping), into the log before it is killed.
dump_hung_outer() {
    local pid
    pid=$(cat "$cache/qemu.pid" 2>/dev/null) || return 0
    {
        echo "REALKVM-HANG-DUMP QEMU threads (host view):"
        ps -L -o tid=,stat=,pcpu=,time=,comm= -p "$pid" 2>/dev/null | sed 's/^/  /'
        for round in 1 2 3; do
            echo "REALKVM-HANG-DUMP monitor, round $round:"
            python3 - "$cache/qemu.mon" <<'PY' 2>&1 | tr -d '\r' | grep -v '^(qemu)' | sed 's/^/  /'
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
# The registers of every vCPU, and the instructions each is at (a spin loop shows as
# pause/cmp/jne), which names the code even without symbols.
for cmd in ("info cpus", "info registers -a", "cpu 0", "x/6i $pc", "cpu 1", "x/6i $pc"):
    s.sendall((cmd + "\n").encode())
    time.sleep(1)
out = b""
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        out += chunk
except socket.timeout:
    pass
print(out.decode(errors="replace"))
PY
            sleep 2
        done
        # The outer kernel runs without KASLR (see append), so a System.map names the
        # functions the vCPUs were in. Debian ships a stub there; the real one comes with
        # linux-image-*-dbg (its path in REALKVM_SYSTEM_MAP).
        local map=${REALKVM_SYSTEM_MAP:-/boot/System.map-$kver}
        if [ "$(grep -c ' [tT] ' "$map" 2>/dev/null)" -gt 1000 ]; then
            echo "REALKVM-HANG-DUMP where the vCPUs were (System.map):"
            grep -o 'RIP=[0-9a-f]*' "$log.hang-dump" | cut -d= -f2 | sort | uniq -c |
                python3 -c '
import bisect, sys
syms = []
for line in open(sys.argv[1]):
    addr, kind, name = line.split()[:3]
    if kind in "tT":
        syms.append((int(addr, 16), name))
syms.sort()
addrs = [a for a, _ in syms]
for line in sys.stdin:
    n, rip = line.split()
    i = bisect.bisect_right(addrs, int(rip, 16)) - 1
    where = "%s+0x%x" % (syms[i][1], int(rip, 16) - syms[i][0]) if i >= 0 else "?"
    print("  %s x %s %s" % (n, rip, where))
' "$map"
        fi
    } >>"$log.hang-dump"
    say "what the hung outer guest was doing: $log.hang-dump"
}
boot_outer() { # APPEND: one outer boot; its serial output is appended to $log
    local part="$log.part" pidfile="$cache/qemu.pid" last_progress=-1 quiet_since progress killed=0
    : >"$part"
    rm -f "$pidfile" "$cache/qemu.mon"
    timeout -k 10 "$limit" "$qemu" -accel "$accel" -cpu EPYC,+svm -smp 2 -m 2048 \
        -nographic -no-reboot -nodefaults -serial stdio -pidfile "$pidfile" \
        -monitor "unix:$cache/qemu.mon,server=on,wait=off" \
        -kernel "$outer_kernel" -initrd "$initrd" -append "$1" </dev/null 2>"$log.qemu-stderr" |
        stdbuf -oL tr -d '\r' | tee "$part" | grep --line-buffered -E '^(REALKVM|BENCH|  )' >&2 &
    local pipeline=$!
    quiet_since=$(date +%s)
    while kill -0 "$pipeline" 2>/dev/null; do
        sleep 5
        progress=$(grep -c -E '^(REALKVM|BENCH)' "$part" || true)
        if grep -q -E 'soft lockup|rcu_(sched|preempt) (self-)?detected stall' "$part"; then
            say "the outer kernel reports: $(grep -m1 -o -E 'soft lockup.*|rcu_(sched|preempt) (self-)?detected stall.*' "$part"): killing it (a nested-virtualization hang)"
            [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
            killed=1
            break
        elif [ "$progress" != "$last_progress" ]; then
            last_progress=$progress quiet_since=$(date +%s)
        elif [ $(( $(date +%s) - quiet_since )) -ge "$stall" ]; then
            say "the outer guest reported no progress for ${stall}s: killing it (a nested-virtualization hang)"
            dump_hung_outer
            [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
            killed=1
            break
        fi
    done
    wait "$pipeline"
    if ! grep -q -E '^(REALKVM|BENCH)-DONE' "$part" && [ "$killed" = 0 ]; then
        # Ended by itself before its last case (an outer kernel panic or a reset ends QEMU,
        # as -no-reboot asks): its last words, which the log of the next boot would bury.
        say "the outer guest ended before its last case, not killed by the watchdog (a panic, a reset, or the ${limit}s limit); its console's last lines:"
        grep -v -E '^(REALKVM|BENCH)' "$part" | tail -n 25 | sed 's/^/  | /' >&2
    fi
    cat "$part" >>"$log"
}
say "booting the outer guest (QEMU -accel $accel, -cpu EPYC,+svm, limit ${limit}s); log: $log"
t_qemu=$(date +%s)
set +e
boot_outer "$append"
if [ -z "$bench" ]; then
    all_cases=${only:-$(cat "$here"/cases/*.sh | grep -o '^case_[a-z0-9_]*' | sed 's/^case_//' | paste -sd, -)}
    for retry in 1 2 3 4; do
        grep -q '^REALKVM-DONE' "$log" && break
        remaining=$(echo "$all_cases" | tr ',' '\n' | while read -r c; do
            grep -q "^REALKVM-RESULT $c " "$log" || echo "$c"
        done | paste -sd, -)
        [ -n "$remaining" ] || break
        say "outer boot $((retry + 1)): running the cases without a result: $remaining"
        boot_outer "${append/realkvm.only=$only/} realkvm.only=$remaining"
    done
else
    # A benchmark cut short by a hang runs again, whole, in a fresh outer guest (its
    # ratios come from one outer guest), at most twice more.
    for retry in 1 2; do
        grep -q '^BENCH-DONE' "$log" && break
        mv "$log" "$log.hung-$retry" # kept for a look at where it hung
        say "outer boot $((retry + 1)): the benchmark did not finish ($log.hung-$retry); running it again"
        boot_outer "$append"
    done
fi
set -e
say "outer guest(s) ran $(( $(date +%s) - t_qemu )) s; tier total $(( $(date +%s) - t_start )) s"

# --- verdict
if [ -n "$bench" ]; then
    grep -q '^BENCH-DONE' "$log" || die "the benchmark did not finish (see $log)"
    grep -E '^BENCH-(RUN-)?RESULT' "$log" | while read -r line; do say "$line"; done
    exit 0
fi
grep -q '^REALKVM-FATAL' "$log" && die "$(grep '^REALKVM-FATAL' "$log")"
grep -q '^REALKVM-DONE' "$log" || die "the outer guest did not finish its cases (see $log)"
pass=$(grep -c '^REALKVM-RESULT .* PASS' "$log" || true)
fail=0 known=0
skip=$(grep -c '^REALKVM-RESULT .* SKIP' "$log" || true)
grep '^REALKVM-RESULT .* SKIP' "$log" | sed 's/^REALKVM-RESULT //' >&2 || true
while read -r _ name verdict rest; do
    if [[ ",$known_fail," == *",$name,"* ]]; then
        if [ "$verdict" = FAIL ]; then
            known=$((known + 1))
            say "KNOWN-FAIL $name (an open bug, listed with --known-fail): $rest"
        elif [ "$verdict" = PASS ]; then
            say "NOTE: $name is listed with --known-fail but passed: take it off the list"
        fi
    elif [ "$verdict" = FAIL ]; then
        fail=$((fail + 1))
        say "FAIL $name $rest"
    fi
done < <(grep '^REALKVM-RESULT ' "$log")
say "passed=$pass failed=$fail known-fail=$known skipped=$skip"
[ "$fail" = 0 ] && [ "$pass" -gt 0 ]
