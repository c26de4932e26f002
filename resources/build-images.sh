#!/usr/bin/env bash
# Builds the guest images of the real-KVM tier (tests/realkvm/) from Debian packages only,
# into a cache outside the checkout, keyed by a hash of each image's inputs:
#
#   guest-<key>/initramfs.cpio.gz   busybox + tests/realkvm/guest-init as /init (+ the distro
#                                   kernel's virtio/pvpanic modules, loaded by guest-init)
#   guest-<key>/rootfs.ext4         the same tree as an ext4 image (mkfs.ext4 -d, no mount)
#   distro-<key>/bzImage            Debian's cloud kernel, as shipped (the "distro kernel")
#   distro-<key>/vmlinux            the ELF vmlinux extracted from that bzImage
#   kernel-<key>/vmlinux            the microVM kernel: linux-source + resources/microvm-kernel.config
#   agent-<key>/initramfs.cpio.gz   the guest of `vmm run --isolation vm|vm+container`: the
#                                   vmm-agent binary as /init, /dev/console, empty mount points
#   default/vmlinux                 links to the microVM kernel and agent initramfs built or
#   default/agent-initramfs.cpio.gz found last: what `vmm run` boots without --kernel/--initrd
#
# Usage: resources/build-images.sh [--kernel | --no-kernel] [--agent | --no-agent] [--env]
#   --kernel     also build the microVM kernel if it is not cached (~13-25 min on 2 cores)
#   --no-kernel  never build it (default): report it as missing instead
#   --agent      build vmm-agent (cargo, from this checkout) and its initramfs (default)
#   --no-agent   leave the agent initramfs and its default link alone
#   --env        print KEY=VALUE lines (paths) on stdout for tests/realkvm/run.sh
# Progress goes to stderr. Cache: ${XDG_CACHE_HOME:-~/.cache}/vmm/images.
# Packages: busybox-static e2fsprogs cpio linux-image-cloud-amd64 zstd xz-utils; for the
# kernel also linux-source bc flex bison libelf-dev make gcc; for the agent a Rust toolchain.
set -euo pipefail
# Only the --env lines go to stdout (fd 3); everything else, tools' chatter too, to stderr.
exec 3>&1 1>&2

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(dirname "$here")"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/vmm/images"
build_kernel=0
build_agent=1
print_env=0
for arg in "$@"; do
    case "$arg" in
        --kernel) build_kernel=1 ;;
        --no-kernel) build_kernel=0 ;;
        --agent) build_agent=1 ;;
        --no-agent) build_agent=0 ;;
        --env) print_env=1 ;;
        *) echo "usage: $0 [--kernel|--no-kernel] [--agent|--no-agent] [--env]" >&2; exit 2 ;;
    esac
done
mkdir -p "$cache"

say() { echo "build-images: $*" >&2; }
die() { say "error: $*"; exit 1; }
hash_of() { cat "$@" | sha256sum | cut -c1-16; }

busybox_bin=/bin/busybox
if ! { [ -x "$busybox_bin" ] && "$busybox_bin" --list | grep -x ash >/dev/null; }; then
    die "busybox-static is needed (/bin/busybox); apt-get install busybox-static"
fi
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 is needed: apt-get install e2fsprogs"
command -v cpio >/dev/null || die "cpio is needed: apt-get install cpio"

# --- the guest tree: busybox and our init, shared by the initramfs and the ext4 rootfs
guest_init="$repo/tests/realkvm/guest-init"
distro_bz=$(find /boot -maxdepth 1 -name 'vmlinuz-*-cloud-amd64' 2>/dev/null |
    sort -V | tail -1 || true)
[ -n "$distro_bz" ] || die "no /boot/vmlinuz-*-cloud-amd64: apt-get install linux-image-cloud-amd64"
distro_kver=${distro_bz#/boot/vmlinuz-}
# The distro kernel's virtio and pvpanic drivers are modules; the guest image carries
# them, in dependency order, and guest-init loads them when it runs on that kernel.
distro_modules="virtio_ring virtio virtio_mmio virtio_blk failover net_failover virtio_net
virtio-rng vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport virtio_balloon
pvpanic pvpanic-mmio"
vsock_echo_src="$repo/tests/realkvm/vsock-echo.c"
guest_key=$( (cat "$busybox_bin" "$guest_init" "$vsock_echo_src" "$0"; echo "$distro_kver") | sha256sum | cut -c1-16)
guest_dir="$cache/guest-$guest_key"
build_guest() {
    say "guest images $guest_key: busybox + guest-init → initramfs.cpio.gz, rootfs.ext4"
    local tmp tree
    tmp=$(mktemp -d "$cache/.guest.XXXXXX")
    tree="$tmp/tree"
    mkdir -p "$tree"/{bin,sbin,dev,proc,sys,tmp,mnt,etc,root,run}
    cp "$busybox_bin" "$tree/bin/busybox"
    for applet in $("$busybox_bin" --list); do
        [ -e "$tree/bin/$applet" ] || ln -s busybox "$tree/bin/$applet"
    done
    install -m 0755 "$guest_init" "$tree/init"
    # The vsock round trip's two ends (busybox has no AF_VSOCK or Unix-socket client); the
    # same static binary also serves the outer guest's side (run.sh copies it there).
    gcc -static -O2 -o "$tmp/vsock-echo" "$vsock_echo_src" || die "building vsock-echo failed"
    install -m 0755 "$tmp/vsock-echo" "$tree/bin/vsock-echo"
    local moddir="$tree/lib/modules/$distro_kver" m f
    mkdir -p "$moddir"
    for m in $distro_modules; do
        f=$(find "/lib/modules/$distro_kver/kernel" -name "$m.ko" | head -1)
        [ -n "$f" ] || die "module $m not found for $distro_kver"
        cp "$f" "$moddir/"
        echo "$m" >>"$moddir/load-order"
    done
    ln -s ../init "$tree/sbin/init"
    # The kernel opens /dev/console before running init from an initramfs.
    (cd "$tree" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
        gzip -9 >"$tmp/initramfs.cpio.gz"
    mkfs.ext4 -q -F -L realkvm-root -d "$tree" "$tmp/rootfs.ext4" 24M
    rm -rf "$tree"
    rm -rf "$guest_dir"
    mv "$tmp" "$guest_dir"
}
[ -f "$guest_dir/rootfs.ext4" ] || build_guest

# --- the distro kernel: Debian's cloud bzImage, and the vmlinux inside it
distro_key=$(hash_of "$distro_bz" "$0")
distro_dir="$cache/distro-$distro_key"

# Like the kernel's scripts/extract-vmlinux: find the compressed payload by its magic and
# decompress from there until the result is an ELF file.
extract_vmlinux() {
    local bz=$1 out=$2 magic tool pos
    for pair in '\x28\xb5\x2f\xfd:zstd -dcq' '\xfd\x37\x7a\x58\x5a\x00:xz -dcq' \
        '\x1f\x8b\x08:gzip -dcq' '\x02\x21\x4c\x18:lz4 -dcq'; do
        magic=${pair%%:*}
        tool=${pair#*:}
        command -v "${tool%% *}" >/dev/null || continue
        while read -r pos; do
            tail -c +$((pos + 1)) "$bz" | $tool >"$out" 2>/dev/null || true
            if [ "$(head -c 4 "$out" | od -An -c | tr -d ' ')" = '177ELF' ]; then
                return 0
            fi
        done < <(LC_ALL=C grep -obUaP "$magic" "$bz" | cut -d: -f1)
    done
    return 1
}
build_distro() {
    say "distro kernel $distro_key: $(basename "$distro_bz") and its extracted ELF vmlinux"
    local tmp
    tmp=$(mktemp -d "$cache/.distro.XXXXXX")
    cp "$distro_bz" "$tmp/bzImage"
    extract_vmlinux "$tmp/bzImage" "$tmp/vmlinux" || die "no ELF payload found in $distro_bz"
    echo "$distro_bz" >"$tmp/source"
    rm -rf "$distro_dir"
    mv "$tmp" "$distro_dir"
}
[ -f "$distro_dir/vmlinux" ] || build_distro

# --- the microVM kernel: linux-source + our config fragment
kernel_config="$here/microvm-kernel.config"
kernel_src_tar=$(find /usr/src -maxdepth 1 -name 'linux-source-*.tar.xz' 2>/dev/null |
    sort -V | tail -1 || true)
# Key: the fragment, the source package version and the recipe below (bump on change).
kernel_recipe=1
kernel_key=$( (cat "$kernel_config"; echo "recipe=$kernel_recipe";
    dpkg-query -W -f='${Package}=${Version}\n' 'linux-source-*' 2>/dev/null || true) |
    sha256sum | cut -c1-16)
kernel_dir="$cache/kernel-$kernel_key"

build_kernel_now() {
    [ -n "$kernel_src_tar" ] || die "no /usr/src/linux-source-*.tar.xz: apt-get install linux-source"
    for tool in make gcc bc flex bison; do
        command -v $tool >/dev/null || die "$tool is needed to build the kernel"
    done
    local tmp src jobs start pid n
    tmp=$(mktemp -d "$cache/.kernel.XXXXXX")
    say "microVM kernel $kernel_key: unpacking $(basename "$kernel_src_tar")"
    tar -C "$tmp" -xf "$kernel_src_tar"
    src=$(echo "$tmp"/linux-source-*)
    jobs=${KERNEL_JOBS:-$(nproc)}
    (
        cd "$src"
        make -s tinyconfig
        scripts/kconfig/merge_config.sh -m .config "$kernel_config" >/dev/null
        make -s olddefconfig
    ) >"$tmp/config.log" 2>&1 || die "kernel configuration failed: $tmp/config.log"
    # Every setting of the fragment must have survived olddefconfig: values verbatim, and
    # "is not set" options neither =y nor =m.
    local missing="" opt
    while IFS= read -r line; do
        case "$line" in
            CONFIG_*=*) grep -qx "$line" "$src/.config" || missing="$missing ${line%%=*}" ;;
            "# CONFIG_"*" is not set")
                opt=${line#\# }
                opt=${opt%% *}
                ! grep -qE "^$opt=(y|m)$" "$src/.config" || missing="$missing $opt(on)" ;;
        esac
    done <"$kernel_config"
    [ -z "$missing" ] || die "kernel options dropped by olddefconfig (missing dependencies?):$missing"
    say "microVM kernel $kernel_key: building with $jobs jobs at nice 19 (log: $tmp/build.log)"
    start=$(date +%s)
    (cd "$src" && nice -n 19 make -j"$jobs" vmlinux) >"$tmp/build.log" 2>&1 &
    pid=$!
    while kill -0 $pid 2>/dev/null; do
        sleep 30
        n=$(grep -c '^  CC ' "$tmp/build.log" || true)
        say "microVM kernel: $n files compiled, $(( ($(date +%s) - start) / 60 )) min"
    done
    wait $pid || die "kernel build failed: see $tmp/build.log"
    mkdir -p "$tmp/out"
    cp "$src/vmlinux" "$tmp/out/vmlinux"
    cp "$src/.config" "$tmp/out/config"
    mv "$tmp/build.log" "$tmp/out/build.log"
    rm -rf "$kernel_dir"
    mv "$tmp/out" "$kernel_dir"
    rm -rf "$tmp"
    say "microVM kernel $kernel_key: done in $(( ($(date +%s) - start) / 60 )) min"
}
if [ ! -f "$kernel_dir/vmlinux" ]; then
    if [ "$build_kernel" = 1 ]; then
        build_kernel_now
    else
        say "microVM kernel $kernel_key is not cached; build it with: $0 --kernel"
    fi
fi

# --- the agent initramfs: vmm-agent as /init, for `vmm run`
# Key: the agent binary, whether /dev/console could be made, and the recipe below (bump
# on change).
agent_recipe=1
agent_dir=""
agent_bin="${CARGO_TARGET_DIR:-$repo/target}/x86_64-unknown-linux-gnu/release/vmm-agent"
# The kernel opens /dev/console for init's stdio before running it. Making the node takes
# root; without it the kernel's built-in initramfs (CONFIG_INITRAMFS_SOURCE="", as in
# microvm-kernel.config) has one, which ours is unpacked over.
agent_console=0
if [ "$(id -u)" = 0 ]; then
    agent_console=1
fi
build_agent_initramfs() {
    say "agent initramfs $agent_key: vmm-agent as /init → initramfs.cpio.gz"
    local tmp tree
    tmp=$(mktemp -d "$cache/.agent.XXXXXX")
    tree="$tmp/tree"
    mkdir -p "$tree"/{dev,proc,sys,run,tmp,mnt}
    # The archive's "." becomes the guest's / (mode included): not mktemp's 0700.
    chmod 0755 "$tree"
    chmod 1777 "$tree/tmp"
    install -m 0755 "$agent_bin" "$tree/init"
    if [ "$agent_console" = 1 ]; then
        mknod -m 0600 "$tree/dev/console" c 5 1
    else
        say "agent initramfs: not root, so no /dev/console in it (the kernel's own has one)"
    fi
    (cd "$tree" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
        gzip -9n >"$tmp/initramfs.cpio.gz"
    rm -rf "$tree"
    # A concurrent run that built the same key first wins; its result is the same.
    mv -T "$tmp" "$agent_dir" 2>/dev/null || rm -rf "$tmp"
    [ -f "$agent_dir/initramfs.cpio.gz" ] || die "cannot create $agent_dir"
}
if [ "$build_agent" = 1 ]; then
    command -v cargo >/dev/null || die "cargo is needed to build vmm-agent: https://rustup.rs"
    say "agent: cargo build --release -p vmm-agent"
    (cd "$repo" && cargo build --release --quiet -p vmm-agent) || die "building vmm-agent failed"
    [ -x "$agent_bin" ] || die "cargo left no $agent_bin"
    # A dynamically linked /init cannot start: the initramfs has no loader or libc.
    if command -v readelf >/dev/null &&
        readelf -lW "$agent_bin" | grep -q 'Requesting program interpreter'; then
        die "$agent_bin is dynamically linked; /init must be static (.cargo/config.toml)"
    fi
    agent_key=$( (cat "$agent_bin"; echo "recipe=$agent_recipe console=$agent_console") |
        sha256sum | cut -c1-16)
    agent_dir="$cache/agent-$agent_key"
    if [ -f "$agent_dir/initramfs.cpio.gz" ]; then
        touch "$agent_dir"
    else
        build_agent_initramfs
    fi
    # Every change to the agent makes a new build: the three most recently used stay.
    find "$cache" -mindepth 1 -maxdepth 1 -type d -name 'agent-*' -printf '%T@ %p\n' |
        sort -rn | tail -n +4 | cut -d' ' -f2- | xargs -r rm -rf
fi

# --- stable names for `vmm run`: relative links into the keyed builds above, replaced by
# a rename so that a reader finds the old target or the new one, never no link. The
# kernel's link is left alone (at the previous kernel, if any) until the kernel is built.
point_default() { # NAME TARGET (relative to $cache)
    local tmp="$cache/default/.$1.$$"
    mkdir -p "$cache/default"
    ln -sfn "../$2" "$tmp"
    mv -T "$tmp" "$cache/default/$1"
}
if [ -f "$kernel_dir/vmlinux" ]; then
    point_default vmlinux "kernel-$kernel_key/vmlinux"
fi
if [ -n "$agent_dir" ]; then
    point_default agent-initramfs.cpio.gz "agent-$agent_key/initramfs.cpio.gz"
fi

if [ "$print_env" = 1 ]; then
    {
        echo "GUEST_DIR=$guest_dir"
        echo "VSOCK_ECHO=$guest_dir/vsock-echo"
        echo "DISTRO_DIR=$distro_dir"
        if [ -f "$kernel_dir/vmlinux" ]; then
            echo "KERNEL_VMLINUX=$kernel_dir/vmlinux"
        else
            echo "KERNEL_VMLINUX="
        fi
        echo "KERNEL_KEY=$kernel_key"
        echo "AGENT_INITRD=${agent_dir:+$agent_dir/initramfs.cpio.gz}"
    } >&3
fi
