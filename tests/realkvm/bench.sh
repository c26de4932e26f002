# The boot benchmark, sourced by outer-init when the outer command line has
# realkvm.bench=N (tests/realkvm/run.sh --bench N). In the same outer guest, boots the same
# inner kernel and root (the ext4 rootfs on virtio-blk, then the initramfs) to init N times with
# `vmm` and N times with Debian's QEMU (-M microvm, same memory and vCPUs), alternating,
# and reports per run and the medians:
#   BENCH-EXITS vmm|qemu EVENT total=N key=count...  (an unmeasured profiling boot of each:
#   exits by SVM exit code, port, MSR, CPUID leaf, MMIO address, from ftrace histograms of
#   the outer kernel's KVM events)
#   BENCH-PROFILE vmm|qemu first_ioctl=S create_vm=S first_entry=S init=S  (its timeline)
#   BENCH run=I vmm|qemu secs_to_init=S exits=E io=.. mmio=.. halt=..  (KVM's own counters,
#   summed over the vCPUs, from VM creation to init's first line)
#   BENCH-RESULT root=blk|initrd vmm_median=S qemu_median=S ratio=R paired_ratio_median=P
# Then `vmm run` of /bin/true at the vm and vm+container levels (`vmm bench run`, its table
# as BENCH-RUN lines), against the boot to init above (initramfs root, vmm):
#   BENCH-RUN-RESULT vm_ms=M vmc_ms=M boot_to_init_ms=M vmc_over_vm=R vm_over_boot=R
# TCG distorts absolute times; the ratio within one run is what counts.

BENCH_MEM=256
BENCH_CPUS=1
# Roots to boot from: blk = the ext4 rootfs on virtio-blk (`vmm --rootfs`), initrd = the
# initramfs.
BENCH_ROOTS="blk initrd"


# Where the exits come from: ftrace histogram triggers on the outer kernel's KVM
# tracepoints, armed for each VMM's profiling boot. Keys: SVM exit code; port; MSR; CPUID
# leaf; MMIO address.
TRACING=/sys/kernel/tracing
HISTS="kvm_exit:exit_reason.hex kvm_pio:port.hex,rw kvm_msr:ecx.hex,write kvm_cpuid:function.hex kvm_mmio:gpa.hex"
hist_arm() { # + to arm, ! to disarm
    local h ev keys
    for h in $HISTS; do
        ev=${h%%:*} keys=${h#*:}
        echo "$1hist:keys=$keys:sort=hitcount.descending:size=2048" \
            >"$TRACING/events/kvm/$ev/trigger" 2>/dev/null
    done
}
# hist_report NAME: one BENCH-EXITS line per histogram, its 12 biggest keys as key=count.
hist_report() {
    local h ev
    for h in $HISTS; do
        ev=${h%%:*}
        [ -r "$TRACING/events/kvm/$ev/hist" ] || continue
        awk -v name="$1" -v ev="$ev" '
            /^\{/ { key = $0; sub(/^\{ */, "", key); sub(/ *\}.*/, "", key); gsub(/[a-z_]+: +/, "", key);
                     gsub(/, +/, "/", key); n = $0; sub(/.*hitcount: */, "", n);
                     if (shown < 12) { out = out " " key "=" n + 0; shown++ } total += n }
            END { print "BENCH-EXITS " name " " ev " total=" total + 0 out }' \
            "$TRACING/events/kvm/$ev/hist"
    done
}

# profile_one NAME COMMAND...: one boot that is not measured, under the ftrace histograms
# and a timeline from the outer kernel's events (exec, KVM ioctls, first guest entry):
#   BENCH-EXITS ... lines, and
#   BENCH-PROFILE NAME first_ioctl=S create_vm=S first_entry=S init=S  (seconds since exec)
# The first entry is where the VMM's own start-up ends and the guest (or its firmware) runs.
profile_one() {
    local name=$1 e events="sched/sched_process_exec kvm/kvm_entry syscalls/sys_enter_ioctl"
    shift
    hist_arm ""
    echo 8192 >"$TRACING/buffer_size_kb"
    : >"$TRACING/trace"
    for e in $events; do echo 1 >"$TRACING/events/$e/enable"; done
    /realkvm/time-to-init "REALKVM init-reached" /tmp/bench.out 120 "$@" >/tmp/bench.result
    for e in $events; do echo 0 >"$TRACING/events/$e/enable"; done
    hist_report "$name" # ftrace histograms outlive the VM
    hist_arm "!"
    # Trace lines: "comm-pid [cpu] flags timestamp: event: ..."; the VMM is exec'd by
    # time-to-init, so its exec is the first one after time-to-init's own.
    awk -v name="$name" -v secs="$(sed -n 's/^secs=\([0-9.]*\) .*/\1/p' /tmp/bench.result)" '
        { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+:$/) { t = $i + 0; break } }
        /sched_process_exec/ && /time-to-init/ { tti = 1; next }
        /sched_process_exec/ && tti && t0 == "" { t0 = t }
        t0 == "" { next }
        /sys_ioctl/ && ioctl == "" { ioctl = t - t0 }
        /sys_ioctl/ && /cmd: ae01,/ && vm == "" { vm = t - t0 }
        /kvm_entry/ && entry == "" { entry = t - t0 }
        END { printf "BENCH-PROFILE %s first_ioctl=%.3f create_vm=%.3f first_entry=%.3f init=%s\n",
                     name, ioctl, vm, entry, secs }' "$TRACING/trace"
    [ "${VERBOSE:-0}" = 1 ] && sed "s/^/  | $name: /" /tmp/bench.out
}

# bench_one NAME COMMAND...: starts it under /realkvm/time-to-init, which at the guest
# init's first line takes the time since the start and KVM's exit counters, then stops it
# (time to init is what is compared; how each VMM tears down is not). One BENCH line;
# secs → /tmp/NAME.secs.
bench_one() {
    local name=$1 result secs
    shift
    result=$(/realkvm/time-to-init "REALKVM init-reached" /tmp/bench.out 120 "$@")
    case "$result" in
        secs=*)
            secs=$(echo "$result" | sed -n 's/^secs=\([0-9.]*\) .*/\1/p')
            echo "BENCH run=$RUN $name secs_to_init=$secs $(echo "$result" | sed 's/^secs=[0-9.]* //; s/ line=.*//')"
            echo "$secs" >>"/tmp/$name.secs"
            echo "$RUN $secs" >>"/tmp/$name.runs" ;;
        *)
            echo "BENCH run=$RUN $name no-init"
            tail -n 5 /tmp/bench.out | sed 's/^/  | /' ;;
    esac
}

median() { sort -n "$1" | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# each_vmm FUNCTION: FUNCTION NAME COMMAND... for vmm, then for QEMU -M microvm, both booting
# $kernel with $cmdline and, by $BENCH_ROOT, the initramfs as root or the ext4 rootfs on
# virtio-blk (a fresh copy each boot, made before the clock starts: a killed VMM leaves
# the filesystem dirty). run_bench's locals.
each_vmm() {
    local vmm_root qemu_root root_args
    if [ "$BENCH_ROOT" = blk ]; then
        cp "$GUEST_ROOTFS" /tmp/bench-root.ext4
        vmm_root="--rootfs /tmp/bench-root.ext4"
        qemu_root="-drive id=root,file=/tmp/bench-root.ext4,format=raw,if=none -device virtio-blk-device,drive=root"
        root_args="root=/dev/vda rw"
    else
        vmm_root="--initrd $GUEST_INITRD"
        qemu_root="-initrd $GUEST_INITRD"
        root_args=""
    fi
    "$1" vmm /usr/local/bin/vmm --kernel "$kernel" $vmm_root \
        --mem "$BENCH_MEM" --cpus "$BENCH_CPUS" --cmdline "$cmdline"
    [ "$BENCH_ROOT" = blk ] && cp "$GUEST_ROOTFS" /tmp/bench-root.ext4
    "$1" qemu /usr/bin/qemu-system-x86_64 -M microvm -accel kvm -cpu host \
        -m "$BENCH_MEM" -smp "$BENCH_CPUS" -nographic -no-reboot -nodefaults -serial stdio \
        -L /usr/share/qemu -kernel "$kernel" $qemu_root -append "$cmdline${root_args:+ $root_args}"
}

# run_bench N: for each root (the ext4 rootfs on virtio-blk, then the initramfs), a
# profiling boot of each VMM and N measured boots of each, alternating; one BENCH-RESULT
# line per root.
run_bench() {
    local n=$1 kernel cmdline vm qm boot_to_init=""
    mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
    mount -t tracefs tracefs "$TRACING" 2>/dev/null
    if [ -f "$MICROVM_VMLINUX" ]; then kernel=$MICROVM_VMLINUX; else kernel=$DISTRO_BZIMAGE; fi
    cmdline="$BASE_CMDLINE realkvm.end=reboot"
    for BENCH_ROOT in $BENCH_ROOTS; do
        echo "BENCH kernel=$(basename "$(dirname "$kernel")")/$(basename "$kernel") root=$BENCH_ROOT mem=$BENCH_MEM cpus=$BENCH_CPUS runs=$n"
        rm -f /tmp/vmm.secs /tmp/qemu.secs /tmp/vmm.runs /tmp/qemu.runs
        # One unmeasured profiling boot of each first; it also warms the caches for both.
        RUN=profile
        each_vmm profile_one
        RUN=1
        while [ "$RUN" -le "$n" ]; do
            each_vmm bench_one
            RUN=$((RUN + 1))
        done
        vm=$(median /tmp/vmm.secs)
        qm=$(median /tmp/qemu.secs)
        # Also the median of the per-run ratios (vmm and QEMU boot back to back, so a
        # slow spell of the host hits both halves of a pair).
        awk 'NR == FNR { v[$1] = $2; next } ($1 in v) && $2 > 0 { print v[$1] / $2 }' \
            /tmp/vmm.runs /tmp/qemu.runs >/tmp/pair.ratios 2>/dev/null
        [ "$BENCH_ROOT" = initrd ] && boot_to_init=$vm
        echo "BENCH-RESULT root=$BENCH_ROOT vmm_median=$vm qemu_median=$qm ratio=$(awk -v a="$vm" -v b="$qm" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "nan" }') paired_ratio_median=$(median /tmp/pair.ratios) vmm_ok=$(wc -l </tmp/vmm.secs 2>/dev/null || echo 0) qemu_ok=$(wc -l </tmp/qemu.secs 2>/dev/null || echo 0)"
    done
    bench_workload "$n" "$kernel" "$boot_to_init"
    echo "BENCH-DONE"
}

# bench_workload N KERNEL BOOT_TO_INIT_SECS: `vmm bench run` at the VM levels, and its
# medians against the plain boot to init of the same kernel.
bench_workload() {
    local vm_ms vmc_ms
    [ -f "$AGENT_INITRD" ] || { echo "BENCH-RUN skipped: no agent initramfs"; return; }
    /usr/local/bin/vmm bench run --isolation vm,vm+container --runs "$1" --kernel "$2" \
        --initrd "$AGENT_INITRD" --rootfs "$WORKLOAD" >/tmp/benchrun.out 2>&1
    sed 's/^/BENCH-RUN /' /tmp/benchrun.out
    vm_ms=$(awk '$1 == "vm" && $3 == "ms" { print $2 }' /tmp/benchrun.out)
    vmc_ms=$(awk '$1 == "vm+container" && $3 == "ms" { print $2 }' /tmp/benchrun.out)
    awk -v vm="$vm_ms" -v vmc="$vmc_ms" -v boot="$3" 'BEGIN {
        b = boot * 1000
        printf "BENCH-RUN-RESULT vm_ms=%s vmc_ms=%s boot_to_init_ms=%.1f vmc_over_vm=%s vm_over_boot=%s\n",
            vm, vmc, b, (vm > 0 ? sprintf("%.3f", vmc / vm) : "nan"), (b > 0 ? sprintf("%.3f", vm / b) : "nan") }'
}
