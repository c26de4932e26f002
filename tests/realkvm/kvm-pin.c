/* kvm-pin: holds one idle KVM VM (an in-kernel irqchip and one vCPU that never runs) for
 * the whole life of the outer guest, so that the outer kernel's static keys that KVM flips
 * when the first VM or vCPU comes and the last one goes stay on from the start.
 *
 * Why: every hang of the real-KVM tier's outer guest that was dumped (README: outer-guest
 * hangs) had both vCPUs looping in the int3 handler (asm_exc_int3 → exc_int3 →
 * kprobe_int3_handler) on a 5-byte NOP at __schedule+0x2ab, the jump label of
 * preempt_notifier_key, which kvm_create_vm and kvm_destroy_vm flip. Linux patches a jump
 * label with int3 first; a CPU that traps on it after the patch ended finds no int3 in
 * memory and re-executes the instruction. Under QEMU 7.2's TCG with SVM the vCPU kept a
 * stale translation with the int3, so it trapped again, forever, with interrupts off. With
 * one VM always alive, the key (and the LAPIC's apic_sw_disabled) never change after this
 * program starts, so no code is patched while the cases run.
 *
 * Prints one line on stdout once the VM and vCPU exist, then sleeps until killed. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int fail(const char *what)
{
    printf("REALKVM-OUTER kvm-pin: %s: %s\n", what, strerror(errno));
    fflush(stdout);
    return 1;
}

int main(void)
{
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0)
        return fail("open /dev/kvm");
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0)
        return fail("KVM_CREATE_VM");
    if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0)
        return fail("KVM_CREATE_IRQCHIP");
    if (ioctl(vm, KVM_CREATE_VCPU, 0) < 0)
        return fail("KVM_CREATE_VCPU");
    printf("REALKVM-OUTER kvm-pin: holding an idle VM with one vCPU\n");
    fflush(stdout);
    for (;;)
        pause();
}
