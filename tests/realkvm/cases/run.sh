# Cases of `vmm run` at the vm and vm+container levels (the guest agent runs the workload).
# Sourced by tests/realkvm/cases.sh (its helpers and variables), inside the outer guest.

case_run_vm_identity_stdio_exit_42() { identity_case vm no; }
case_run_vmc_identity_stdio_exit_42() { identity_case vm+container yes; }

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
# --net link in a VM: the workload's eth0 has 10.231.x.2/30 and a default route via the
# host's end of the TAP, which answers a ping; the TAP (vmm<pid>) is gone after the run.
link_case() { # LEVEL [more vmm run options]
    need_run || return
    local level=$1 before after addr gw
    shift
    before=$(ls /sys/class/net | tr '\n' ' ')
    vrun "$level" --net link "$@" -- sh -c 'ip addr show eth0; ip route; gw=$(ip route | sed -n "s/^default via \([0-9.]*\).*/\1/p"); echo "gateway=$gw"; ping -c1 -W3 "$gw"'
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
case_run_vm_net_link_pings_the_host() { link_case vm; }
# At vm+container the guest's NIC is moved into the container's network namespace: the
# container's eth0 is the VM's NIC.
case_run_vmc_net_link_pings_the_host() { link_case vm+container; }
# The same from a warm snapshot whose VM has a NIC (one for both levels): the first run
# (vm) makes it on its TAP and restores it; the second (vm+container) only restores it,
# its NIC put on a TAP of its own and then moved into the container.
case_run_vm_from_snapshot_net_link_pings_the_host() {
    link_case vm --from-snapshot || return
    link_case vm+container --from-snapshot || return
    ! grep -q "making the warm snapshot" /tmp/run.err ||
        { WHY="the second run made the snapshot again: $(cat /tmp/run.err)"; return 1; }
}
