/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tls_elf: the x86-64 checks that decide whether OpenSSL's shared read/write bodies are probed
 * (on the code of Debian 12's libssl3 3.0, copied as bytes), and symbol offsets of a real ELF
 * file (this test's own executable).
 */
#include <stdio.h>
#include <string.h>

#include "tap.h"
#include "tls_elf.h"

/* SSL_read_ex at 0x354c0: sub $0x8,%rsp; call 0x35290; ... */
static const unsigned char read_ex[] = {0x48, 0x83, 0xec, 0x08, 0xe8, 0xc7, 0xfd, 0xff,
					0xff, 0x31, 0xd2, 0x85, 0xc0, 0x0f, 0x48, 0xc2};
/* SSL_read at 0x35430: sub $0x18,%rsp; mov %fs:0x28,%rax; mov %rax,0x8(%rsp); xor %eax,%eax;
 * test %edx,%edx; js; mov %rsp,%rcx; movslq %edx,%rdx; call 0x35290 */
static const unsigned char read_plain[] = {
	0x48, 0x83, 0xec, 0x18, 0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0x00, 0x00, 0x00,
	0x48, 0x89, 0x44, 0x24, 0x08, 0x31, 0xc0, 0x85, 0xd2, 0x78, 0x2f, 0x48, 0x89,
	0xe1, 0x48, 0x63, 0xd2, 0xe8, 0x3d, 0xfe, 0xff, 0xff, 0x85, 0xc0};
/* ssl_read_internal at 0x35290: push %r13; push %r12; push %rbp; push %rbx; sub $0x38,%rsp */
static const unsigned char body[] = {0x41, 0x55, 0x41, 0x54, 0x55, 0x53, 0x48, 0x83, 0xec, 0x38};

/* Exported so that the symbol table has it. */
int tls_elf_test_symbol(int x);
int tls_elf_test_symbol(int x)
{
	return x + 1;
}

int main(void)
{
	ok(tls_x86_wrapper_call(read_ex, sizeof(read_ex), 0x354c0) == 0x35290,
	   "SSL_read_ex: its first call goes to 0x35290 with the arguments untouched");
	ok(tls_x86_calls(read_plain, sizeof(read_plain), 0x35430, 0x35290),
	   "SSL_read calls the same body");
	ok(!tls_x86_calls(read_plain, sizeof(read_plain), 0x35430, 0x35291),
	   "a call elsewhere is not taken for it");
	ok(tls_x86_entry_emulated(body, sizeof(body)), "push %%r13: emulated by the kernel");
	ok(!tls_x86_entry_emulated(read_plain, sizeof(read_plain)),
	   "sub $0x18,%%rsp: single-stepped (not worth moving the probe for)");
	/* SSL_read itself is no wrapper: it writes %rcx and %rdx before its call. */
	ok(tls_x86_wrapper_call(read_plain, sizeof(read_plain), 0x35430) == 0,
	   "SSL_read is not a pass-through wrapper");
	static const unsigned char movrdi[] = {0x48, 0x89, 0xc7, 0xe8, 0, 0, 0, 0};
	ok(tls_x86_wrapper_call(movrdi, sizeof(movrdi), 0x1000) == 0,
	   "an instruction that may write an argument register ends the analysis");
	static const unsigned char endbr[] = {0xf3, 0x0f, 0x1e, 0xfa, 0x55, 0xe8, 0x10, 0, 0, 0};
	ok(tls_x86_wrapper_call(endbr, sizeof(endbr), 0x2000) == 0x2000 + 10 + 0x10,
	   "endbr64 and push before the call are fine");
	static const unsigned char cut[] = {0x48, 0x83, 0xec, 0x08, 0xe8, 0xc7};
	ok(tls_x86_wrapper_call(cut, sizeof(cut), 0) == 0, "a call cut short is not decoded");

	struct tls_probe_points pp;
	int r = tls_elf_probe_points("/proc/self/exe", &pp);
	ok(r == 0 && !pp.ssl_read && !pp.read_body, "an ELF without OpenSSL: nothing to probe");
	ok(tls_elf_probe_points("/proc/self/status", &pp) < 0, "not an ELF file: an error");
	return tap_done();
}
