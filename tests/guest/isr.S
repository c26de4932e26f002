/* Interrupt and exception entry stubs: one 16-byte stub per vector (isr_stubs + 16 * v)
 * pushes a dummy error code when the CPU does not push one, then the vector, and joins
 * isr_common, which saves the general registers, calls isr_dispatch(frame) and iretq's.
 * The layout matches struct irq_frame in guest.h. */

    .text
    .code64
    .altmacro

    .macro ISR_STUB vec
    .balign 16
    .if (\vec == 8) || ((\vec >= 10) && (\vec <= 14)) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
    .else
    pushq $0
    .endif
    pushq $\vec
    jmp isr_common
    .endm

    .balign 16
    .globl isr_stubs
isr_stubs:
    .set vec, 0
    .rept 256
    ISR_STUB %vec
    .set vec, vec + 1
    .endr

isr_common:
    pushq %rax
    pushq %rcx
    pushq %rdx
    pushq %rbx
    pushq %rbp
    pushq %rsi
    pushq %rdi
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    cld
    movq %rsp, %rdi                 /* 22 quadwords on a 16-byte aligned frame: aligned */
    call isr_dispatch
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rdi
    popq %rsi
    popq %rbp
    popq %rbx
    popq %rdx
    popq %rcx
    popq %rax
    addq $16, %rsp                  /* vector and error code */
    iretq

    .section .note.GNU-stack, "", @progbits
