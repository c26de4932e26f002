#!/bin/sh
# Build a minimal busybox root filesystem for `vmm container run --rootfs DIR`.
#
#   resources/container-rootfs.sh DIR
#
# Uses the static busybox of Debian's busybox-static package (/bin/busybox). Every applet
# becomes a symlink to /bin/busybox; the directories the runtime mounts on are created.
# The build goes to a temporary directory next to DIR and is renamed into place, so a
# concurrent reader never sees a half-built rootfs. An existing DIR is left as it is.
set -eu

dir=${1:?usage: $0 DIR}
busybox=${BUSYBOX:-/bin/busybox}

if [ -x "$dir/bin/busybox" ]; then
    exit 0
fi
if ! [ -x "$busybox" ] || ! "$busybox" --list >/dev/null 2>&1; then
    echo "container-rootfs.sh: no static busybox at $busybox (apt-get install busybox-static)" >&2
    exit 1
fi
if ldd "$busybox" >/dev/null 2>&1; then
    echo "container-rootfs.sh: $busybox is dynamically linked; a static one is needed" >&2
    exit 1
fi

parent=$(dirname "$dir")
mkdir -p "$parent"
tmp=$(mktemp -d "$parent/.rootfs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$tmp/bin" "$tmp/sbin" "$tmp/usr/bin" "$tmp/usr/sbin" \
    "$tmp/proc" "$tmp/sys" "$tmp/dev" "$tmp/etc" "$tmp/tmp" "$tmp/root" "$tmp/mnt"
chmod 1777 "$tmp/tmp"
cp "$busybox" "$tmp/bin/busybox"
for applet in $("$busybox" --list-full); do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$tmp/$(dirname "$applet")"
    ln -sf /bin/busybox "$tmp/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$tmp/etc/passwd"
printf 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' >"$tmp/etc/group"
chmod -R a+rX "$tmp"

if ! mv -T "$tmp" "$dir" 2>/dev/null; then
    # Another build won the race; use its result.
    [ -x "$dir/bin/busybox" ] || { echo "container-rootfs.sh: cannot create $dir" >&2; exit 1; }
fi
trap - EXIT
rm -rf "$tmp"
