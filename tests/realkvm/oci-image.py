#!/usr/bin/env python3
"""oci-image.py ROOTFS LAYER_TAR OCI_TAR REF: a root filesystem as an image, offline.

Writes ROOTFS as one uncompressed layer tar (what `podman import` takes) and as an OCI
image archive naming REF (what `ctr image import` takes): oci-layout, index.json and the
blobs (layer, config, manifest). Both are deterministic (sorted, root-owned, mtime 0), so
the outer initramfs that carries them stays cached while ROOTFS is the same.

The same image as tests/oci_clients.rs makes on the host, for the real-KVM tier's vmm-runc
cases with Podman and containerd inside the outer guest."""
import hashlib
import io
import json
import subprocess
import sys
import tarfile


def main(rootfs, layer_path, archive_path, ref):
    subprocess.run(
        ["tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner",
         "-C", rootfs, "-cf", layer_path, "."],
        check=True)
    with open(layer_path, "rb") as f:
        layer = f.read()
    blobs = {}

    def blob(media_type, data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def canonical(value):
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()

    layer_desc = blob("application/vnd.oci.image.layer.v1.tar", layer)
    # Uncompressed, the layer's digest is its diff ID.
    config = blob("application/vnd.oci.image.config.v1+json", canonical({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
    }))
    manifest = blob("application/vnd.oci.image.manifest.v1+json", canonical({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config, "layers": [layer_desc],
    }))
    manifest["platform"] = {"architecture": "amd64", "os": "linux"}
    manifest["annotations"] = {"org.opencontainers.image.ref.name": ref}
    files = {
        "oci-layout": canonical({"imageLayoutVersion": "1.0.0"}),
        "index.json": canonical({"schemaVersion": 2, "manifests": [manifest]}),
    }
    for digest, data in blobs.items():
        files["blobs/sha256/" + digest.split(":")[1]] = data
    with tarfile.open(archive_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(files[name]), 0o644
            tar.addfile(info, io.BytesIO(files[name]))


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__.splitlines()[0])
    main(*sys.argv[1:])
