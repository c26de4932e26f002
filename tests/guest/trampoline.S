/* INIT/SIPI trampoline for application processors. smp.c copies trampoline_start ..
 * trampoline_end to TRAMPOLINE_BASE (SIPI vector TRAMPOLINE_BASE >> 12) and fills in
 * tramp_cr3 and tramp_boot_gdtr. The AP then goes real mode -> 32-bit protected mode
 * (own GDT) -> long mode (CR3 from the BSP, EFER.LME) -> the boot GDT at 0x500 -> the
 * 64-bit AP path ap_entry in head.S.
 *
 * The code runs at TRAMPOLINE_BASE, not where it is linked, so every address in it is
 * TRAMPOLINE_BASE + (label - trampoline_start). It sits in a data section so that
 * objdump -d (tests/guest_instructions.rs) does not decode 16-bit code as 64-bit. */

#define TRAMPOLINE_BASE 0x3000      /* guest.h TRAMPOLINE_ADDR */
#define REL(label) ((label) - trampoline_start)
#define ABS(label) (TRAMPOLINE_BASE + REL(label))

#define SEL_CODE64 0x08
#define SEL_DATA 0x10
#define SEL_CODE32 0x18
#define MSR_EFER 0xc0000080
#define EFER_LME 0x100
#define CR0_PE 0x1
#define CR0_CD_NW 0x60000000        /* caches off: the state INIT leaves */
#define CR0_PG 0x80000000
#define CR4_PAE 0x20

    .section .rodata.trampoline, "a"
    .balign 16
    .globl trampoline_start, trampoline_end, tramp_cr3, tramp_boot_gdtr

    .code16
trampoline_start:
    cli
    cld
    movw %cs, %ax                   /* CS = TRAMPOLINE_BASE >> 4 after SIPI */
    movw %ax, %ds
    lgdtl REL(tramp_gdtr)
    movl %cr0, %eax
    orl $CR0_PE, %eax
    movl %eax, %cr0
    ljmpl $SEL_CODE32, $ABS(tramp_pm32)

    .code32
tramp_pm32:
    movw $SEL_DATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movw %ax, %fs
    movw %ax, %gs
    movl %cr4, %eax
    orl $CR4_PAE, %eax
    movl %eax, %cr4
    movl ABS(tramp_cr3), %eax
    movl %eax, %cr3
    movl $MSR_EFER, %ecx
    rdmsr
    orl $EFER_LME, %eax
    wrmsr
    movl %cr0, %eax
    andl $~CR0_CD_NW, %eax
    orl $CR0_PG, %eax
    movl %eax, %cr0                 /* long mode active (compatibility mode) */
    ljmpl $SEL_CODE64, $ABS(tramp_lm64)

    .code64
tramp_lm64:
    lgdt ABS(tramp_boot_gdtr)       /* the boot GDT: same selectors as the BSP */
    movw $SEL_DATA, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorl %eax, %eax
    movw %ax, %fs
    movw %ax, %gs
    /* CS keeps selector 0x08, the boot GDT's 64-bit code segment too. No far return to
     * reload it: after SIPI RSP is 0, there is no stack until ap_entry picks one. */
    movabsq $ap_entry, %rax
    jmp *%rax

    .balign 8
tramp_gdt:
    .quad 0                         /* null */
    .quad 0x00af9a000000ffff        /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff        /* 0x10: data, 4 GiB flat */
    .quad 0x00cf9a000000ffff        /* 0x18: 32-bit code, 4 GiB flat */
tramp_gdt_end:
    .balign 4
tramp_gdtr:
    .word tramp_gdt_end - tramp_gdt - 1
    .long ABS(tramp_gdt)
    .balign 8
tramp_cr3:
    .quad 0                         /* filled by smp.c */
    .balign 8
    .word 0, 0, 0                   /* pad so that the base below is 8-byte aligned */
tramp_boot_gdtr:
    .word 0                         /* limit, filled by smp.c (sgdt) */
    .quad 0                         /* base */
trampoline_end:

    .section .note.GNU-stack, "", @progbits
