#!/usr/bin/env python3
"""A Firecracker API client with only Python's standard library (http.client over
AF_UNIX), replaying the calls firecracker-go-sdk makes to start a microVM and stop it:

  poll GET /machine-config until the socket answers, PUT /logger (a FIFO it reads),
  PUT /metrics, PUT /machine-config, PUT /boot-source, PUT /drives/rootfs,
  PUT /network-interfaces/eth0 (only as root with /dev/net/tun: the VMM creates the tap),
  PUT /vsock, PUT /actions InstanceStart, GET / (Running), then
  PUT /actions SendCtrlAltDel, and wait for the VMM to close the socket as it exits.

Every call goes over one keep-alive connection, as the SDK's HTTP client keeps it.
Prints one line per call (`call METHOD PATH -> STATUS`), `skip network: REASON` when it
leaves the interface out, and the log lines the FIFO carried (`log: ...`); exits 0 when
every answer was the one Firecracker gives, 1 otherwise (with the reason).

Usage: go_sdk_sequence.py SOCKET KERNEL WORKDIR
"""

import http.client
import json
import os
import socket
import sys
import threading
import time


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client's connection, over a unix socket instead of TCP."""

    def __init__(self, path, timeout=10.0):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


class Failure(Exception):
    pass


def call(conn, method, path, body=None, expect=204):
    headers = {"Accept": "application/json"}
    payload = None
    if body is not None:
        payload = json.dumps(body)
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=payload, headers=headers)
    response = conn.getresponse()
    text = response.read().decode()
    print(f"call {method} {path} -> {response.status}", flush=True)
    if response.status != expect:
        raise Failure(f"{method} {path}: status {response.status}, expected {expect}: {text}")
    return json.loads(text) if text else None


def wait_for_socket(path, deadline):
    """The SDK's waitForSocket: GET /machine-config every 10 ms until it answers."""
    while time.monotonic() < deadline:
        try:
            conn = UnixHTTPConnection(path, timeout=1.0)
            call(conn, "GET", "/machine-config", expect=200)
            return conn
        except (OSError, http.client.HTTPException):
            time.sleep(0.01)
    raise Failure(f"the API socket {path} never answered")


def network_skip_reason():
    if os.geteuid() != 0:
        return "not root (the VMM creates the tap, which needs CAP_NET_ADMIN)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    return None


def read_log(fifo, lines):
    # Blocks until the VMM opens the FIFO (PUT /logger); ends when it exits.
    with open(fifo, "r", errors="replace") as f:
        for line in f:
            lines.append(line.rstrip("\n"))


def main():
    sock, kernel, work = sys.argv[1], sys.argv[2], sys.argv[3]
    log_fifo = os.path.join(work, "log.fifo")
    metrics = os.path.join(work, "metrics.json")
    rootfs = os.path.join(work, "rootfs.img")
    os.mkfifo(log_fifo)
    with open(rootfs, "wb") as f:
        f.truncate(1 << 20)
    log_lines = []
    reader = threading.Thread(target=read_log, args=(log_fifo, log_lines), daemon=True)
    reader.start()

    conn = wait_for_socket(sock, time.monotonic() + 10)
    call(conn, "PUT", "/logger", {"log_path": log_fifo, "level": "Debug",
                                  "show_level": True, "show_log_origin": True})
    call(conn, "PUT", "/metrics", {"metrics_path": metrics})
    call(conn, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 64,
                                          "smt": False, "track_dirty_pages": False})
    call(conn, "PUT", "/boot-source", {"kernel_image_path": kernel,
                                       "boot_args": "console=ttyS0 tests=ctrlaltdel"})
    call(conn, "PUT", "/drives/rootfs", {"drive_id": "rootfs", "path_on_host": rootfs,
                                         "is_root_device": True, "is_read_only": False})
    skip = network_skip_reason()
    if skip:
        print(f"skip network: {skip}", flush=True)
    else:
        tap = f"vmmapi{os.getpid() % 100000}"
        call(conn, "PUT", "/network-interfaces/eth0",
             {"iface_id": "eth0", "host_dev_name": tap, "guest_mac": "06:00:ac:10:00:02"})
    call(conn, "PUT", "/vsock", {"guest_cid": 3, "uds_path": os.path.join(work, "v.sock")})
    call(conn, "PUT", "/actions", {"action_type": "InstanceStart"})
    info = call(conn, "GET", "/", expect=200)
    if info["state"] != "Running":
        raise Failure(f"GET / after InstanceStart: state {info['state']!r}")

    # The SDK's Shutdown: Ctrl-Alt-Del, then wait for the VMM to go away.
    call(conn, "PUT", "/actions", {"action_type": "SendCtrlAltDel"})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            call(UnixHTTPConnection(sock, timeout=1.0), "GET", "/", expect=200)
            time.sleep(0.05)
        except (OSError, http.client.HTTPException):
            break
    else:
        raise Failure("the VMM still answers 20 s after SendCtrlAltDel")
    reader.join(timeout=5)
    for line in log_lines:
        print(f"log: {line}")
    with open(metrics) as f:
        flushes = [json.loads(line) for line in f]
    print(f"metrics lines: {len(flushes)}")


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"FAIL: {e}", flush=True)
        sys.exit(1)
