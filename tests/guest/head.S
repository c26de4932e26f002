/* Entry point, as for a Linux vmlinux: 64-bit mode, paging on (CR3 = 0x9000), RSI = zero
 * page, RSP = 0x8ff0, interrupts off. Every vCPU the VMM starts directly (--ap-start direct)
 * and every AP started by INIT/SIPI (through trampoline.S) arrives here or at ap_entry, and
 * all of them may share RSP = 0x8ff0, so the BSP/AP split happens before any stack use. */

#define MAX_CPUS 64          /* guest.h */
#define AP_STACK_SIZE 4096
#define BSP_STACK_SIZE 16384
#define MSR_APIC_BASE 0x1b
#define APIC_BASE_BSP 0x100

    .section .text.entry, "ax"
    .code64
    .globl _start
_start:
    movl $MSR_APIC_BASE, %ecx
    rdmsr                           /* clobbers eax/edx only: rsi and rsp are intact */
    testl $APIC_BASE_BSP, %eax
    jz ap_entry

    movq %rsi, boot_entry_rsi(%rip)
    movq %rsp, boot_entry_rsp(%rip)
    leaq bsp_stack_top(%rip), %rsp
    pushfq
    popq boot_entry_rflags(%rip)
    cli
    cld
    leaq __bss_start(%rip), %rdi    /* the loader need not zero p_memsz beyond p_filesz */
    leaq __bss_end(%rip), %rcx
    subq %rdi, %rcx
    shrq $3, %rcx                   /* 8 bytes a step: PVM's emulator pays per iteration */
    xorl %eax, %eax
    rep stosq
    call bsp_main
    jmp park

/* An application processor: stack = ap_stacks[apic_id], then ap_main(apic_id). */
    .globl ap_entry
ap_entry:
    cli
    cld
    movl $1, %eax
    xorl %ecx, %ecx
    cpuid
    shrl $24, %ebx                  /* initial APIC ID */
    cmpl $MAX_CPUS, %ebx
    jae park
    leal 1(%ebx), %eax
    shlq $12, %rax                  /* (id + 1) * AP_STACK_SIZE */
    leaq ap_stacks(%rip), %rsp
    addq %rax, %rsp
    movl %ebx, %edi
    call ap_main
park:
    cli
    hlt
    jmp park

    .data
    .balign 8
    .globl boot_entry_rsi, boot_entry_rsp, boot_entry_rflags
boot_entry_rsi:    .quad 0
boot_entry_rsp:    .quad 0
boot_entry_rflags: .quad 0

/* Stacks live outside .bss: the BSP clears .bss while APs started directly by the VMM
 * may already be running on theirs. */
    .section .noinit, "aw", @nobits
    .balign 4096
ap_stacks:
    .skip AP_STACK_SIZE * MAX_CPUS
    .balign 4096
    .skip BSP_STACK_SIZE
bsp_stack_top:

    .section .note.GNU-stack, "", @progbits
