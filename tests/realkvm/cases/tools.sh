# Cases of the tools around the VMM with Linux guests: `vmm compare`, the labs, and the
# OCI clients (vmm-runc, containerd, Podman).
# Sourced by tests/realkvm/cases.sh (its helpers and variables), inside the outer guest.

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
# outer guest's initramfs root.) It was out of CASES for a while, after outer-guest hangs
# during it (tests/realkvm/README.md, "Outer-guest hangs"); it is back, and run.sh
# retries the cases of a hung outer boot in a new one.
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
