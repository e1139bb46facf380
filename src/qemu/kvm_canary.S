/* kiln's KVM canary: a 64 KiB firmware image (qemu -bios) that walks the CPU through the
 * modes a boot loader and a kernel use, taking a software interrupt and returning from it
 * (iret) in each, as nested KVM fails on exactly these transitions on some hosts:
 *
 *   real mode  -> writes 'R' to the debug port 0xe9 (isa-debugcon)
 *   32-bit protected mode, paging off  -> 'P'
 *   64-bit long mode, paging on         -> 'L'
 *
 * then exits qemu through isa-debug-exit (port 0xf4, value 0x20: exit status 65).
 * src/qemu/canary.rs holds the assembled bytes; its test reassembles this file:
 *   as -o canary.o kvm_canary.S && ld -Ttext=0 -e 0 --oformat binary -o canary.bin canary.o
 * The image is mapped at 0xf0000 (and below 4 GiB); the CPU starts at f000:fff0.
 */
    .code16
    .text
start:
    cli
    xor %ax, %ax
    mov %ax, %ss
    mov %ax, %ds
    mov %ax, %es
    mov $0x7000, %sp
    /* real mode: interrupt vector 5 -> rm_handler (segment f000) */
    movw $rm_handler, 5*4
    movw $0xf000, 5*4+2
    int $5
    mov $'R', %al
    outb %al, $0xe9
    /* into 32-bit protected mode, paging off */
    mov %cs, %ax
    mov %ax, %ds
    lgdtl gdtr
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $(0xf0000 + pm32)
rm_handler:
    iret

    .code32
pm32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7000, %esp
    /* IDT at 0x500, gate 5 -> pm_handler */
    mov $(0xf0000 + pm_handler), %eax
    mov %ax, 0x500 + 5*8
    movw $0x08, 0x502 + 5*8
    movw $0x8e00, 0x504 + 5*8
    shr $16, %eax
    mov %ax, 0x506 + 5*8
    movw $(6*8 - 1), 0x4f0
    movl $0x500, 0x4f2
    lidt 0x4f0
    int $5
    mov $'P', %al
    outb %al, $0xe9
    /* identity-map the first 2 MiB: PML4 at 0x1000, PDPT at 0x2000, PD at 0x3000 */
    mov $0x1000, %edi
    mov $(3*4096/4), %ecx
    xor %eax, %eax
    rep stosl
    movl $0x2003, 0x1000
    movl $0x3003, 0x2000
    movl $0x83, 0x3000
    mov $0x1000, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x20, %eax              /* PAE */
    mov %eax, %cr4
    mov $0xc0000080, %ecx       /* EFER.LME */
    rdmsr
    or $0x100, %eax
    wrmsr
    mov %cr0, %eax
    or $0x80000000, %eax        /* paging on: long mode */
    mov %eax, %cr0
    ljmp $0x18, $(0xf0000 + lm64)
pm_handler:
    iret

    .code64
lm64:
    mov $0x7000, %rsp
    /* 64-bit IDT at 0x600, gate 5 -> lm_handler */
    mov $(0xf0000 + lm_handler), %eax
    mov %ax, 0x600 + 5*16
    movw $0x18, 0x602 + 5*16
    movw $0x8e00, 0x604 + 5*16
    shr $16, %eax
    mov %ax, 0x606 + 5*16
    movl $0, 0x608 + 5*16
    movl $0, 0x60c + 5*16
    movw $(6*16 - 1), 0x4e0
    movq $0x600, 0x4e2
    lidt 0x4e0
    int $5
    mov $'L', %al
    outb %al, $0xe9
    mov $0x20, %al              /* isa-debug-exit: qemu exits with (0x20 << 1) | 1 */
    outb %al, $0xf4
1:  hlt
    jmp 1b
lm_handler:
    iretq

    .p2align 3
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff    /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff    /* 0x10: data */
    .quad 0x00af9a000000ffff    /* 0x18: 64-bit code */
gdtr:
    .word gdtr - gdt - 1
    .long 0xf0000 + gdt

    .org 0xfff0
    .code16
reset:
    ljmp $0xf000, $start
    .org 0x10000
