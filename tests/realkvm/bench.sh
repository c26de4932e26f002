# The boot benchmark, sourced by outer-init when the outer command line has
# realkvm.bench=N (tests/realkvm/run.sh --bench N). In the same outer guest, boots the same
# inner kernel and initramfs to init N times with
# `vmm` and N times with Debian's QEMU (-M microvm, same memory and vCPUs), alternating,
# and reports per run and the medians:
#   BENCH run=I vmm|qemu secs_to_init=S exits=E io=.. mmio=.. halt=..  (KVM's own counters,
#   summed over the vCPUs, from VM creation to init's first line)
#   BENCH-RESULT vmm_median=S qemu_median=S ratio=R
# TCG distorts absolute times; the ratio within one run is what counts.

BENCH_MEM=256
BENCH_CPUS=1

# One KVM exit counter of the live VM, summed over its vCPUs (debugfs <pid>-<fd>/; a VM's counters vanish
# with it, so this is read while the guest runs).
kvm_stat() { cat /sys/kernel/debug/kvm/*-*/"$1" 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }

# bench_one NAME COMMAND...: starts it, and when the guest's init prints its first line
# takes the time since start and the exit counters, then stops it (time to init is what
# is compared; how each VMM tears down is not). One BENCH line; secs → /tmp/NAME.secs.
bench_one() {
    local name=$1 t0 pid secs
    shift
    rm -f /tmp/bench.init /tmp/bench.out
    t0=$(now)
    "$@" </dev/null >/tmp/bench.fifo 2>&1 &
    pid=$!
    ( sleep 120; kill -9 $pid 2>/dev/null ) &
    local watchdog=$!
    tr -d '\r' </tmp/bench.fifo | while IFS= read -r line; do
        echo "$line" >>/tmp/bench.out
        case "$line" in
            "REALKVM init-reached"*)
                echo "$(now) $(kvm_stat exits) $(kvm_stat io_exits) $(kvm_stat mmio_exits) $(kvm_stat halt_exits)" >/tmp/bench.init
                kill $pid 2>/dev/null ;;
        esac
    done
    wait $pid 2>/dev/null
    kill $watchdog 2>/dev/null
    if [ -f /tmp/bench.init ]; then
        set -- $(cat /tmp/bench.init)
        secs=$(awk -v a="$t0" -v b="$1" 'BEGIN { printf "%.2f", b - a }')
        echo "BENCH run=$RUN $name secs_to_init=$secs exits=$2 io=$3 mmio=$4 halt=$5"
        echo "$secs" >>"/tmp/$name.secs"
    else
        echo "BENCH run=$RUN $name no-init"
        tail -n 5 /tmp/bench.out | sed 's/^/  | /'
    fi
}

median() { sort -n "$1" | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

run_bench() {
    local n=$1 kernel cmdline
    mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
    rm -f /tmp/bench.fifo && mkfifo /tmp/bench.fifo
    if [ -f "$MICROVM_VMLINUX" ]; then kernel=$MICROVM_VMLINUX; else kernel=$DISTRO_BZIMAGE; fi
    cmdline="$BASE_CMDLINE realkvm.end=reboot"
    echo "BENCH kernel=$(basename "$(dirname "$kernel")")/$(basename "$kernel") initrd=$GUEST_INITRD mem=$BENCH_MEM cpus=$BENCH_CPUS runs=$n"
    rm -f /tmp/vmm.secs /tmp/qemu.secs
    RUN=1
    while [ "$RUN" -le "$n" ]; do
        bench_one vmm /usr/local/bin/vmm --kernel "$kernel" --initrd "$GUEST_INITRD" \
            --mem "$BENCH_MEM" --cpus "$BENCH_CPUS" --cmdline "$cmdline"
        bench_one qemu /usr/bin/qemu-system-x86_64 -M microvm -accel kvm -cpu host \
            -m "$BENCH_MEM" -smp "$BENCH_CPUS" -nographic -no-reboot -nodefaults -serial stdio \
            -L /usr/share/qemu -kernel "$kernel" -initrd "$GUEST_INITRD" -append "$cmdline"
        RUN=$((RUN + 1))
    done
    local vm qm
    vm=$(median /tmp/vmm.secs)
    qm=$(median /tmp/qemu.secs)
    echo "BENCH-RESULT vmm_median=$vm qemu_median=$qm ratio=$(awk -v a="$vm" -v b="$qm" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "nan" }') vmm_ok=$(wc -l </tmp/vmm.secs 2>/dev/null || echo 0) qemu_ok=$(wc -l </tmp/qemu.secs 2>/dev/null || echo 0)"
    echo "BENCH-DONE"
}
