/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Where to put the OpenSSL probes in one file (a libssl, or an executable with OpenSSL linked
 * in): the file offsets of the public functions, and, on x86-64, of the two bodies that
 * OpenSSL's SSL_read/SSL_read_ex and SSL_write/SSL_write_ex share.
 *
 * Why the shared bodies: a uprobe on an instruction the kernel cannot emulate (SSL_read starts
 * with `sub $0x18,%rsp`) is executed out of line with a single step, a second trap, which costs
 * about 25 us in a nested VM; on `push` (what the shared bodies start with) the kernel emulates
 * the instruction and the probe costs about 1.5 us. A uretprobe needs the function's entry, so
 * it cannot be moved past the first instruction: probing the body that the wrapper calls is how
 * both the entry and the return get cheap. The body is used only when the code proves it:
 * SSL_read_ex's first instructions leave the four argument registers alone and call it, SSL_read
 * calls the same address, and its first instruction is one the kernel emulates.
 */
#ifndef MESHMASK_TLS_ELF_H
#define MESHMASK_TLS_ELF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* File offsets of the probe points; 0 = the file does not define it. */
struct tls_probe_points {
	uint64_t ssl_write, ssl_read, ssl_write_ex, ssl_read_ex, ssl_set_fd, ssl_free;
	/* OpenSSL's ssl_write_internal / ssl_read_internal (s, buf, num, size_t *out), found as
	 * described above; 0 = not found or not worth it (the public functions are probed). */
	uint64_t write_body, read_body;
};

/* Fill pp from the ELF file at path (borrowed). 0, or -errno (not an ELF file, unreadable). */
int tls_elf_probe_points(const char *path, struct tls_probe_points *pp);

/*
 * x86-64 code analysis, pure (exported for the unit test). `code` holds the first `len` bytes
 * of a function at virtual address `addr`.
 */
/* The target of a wrapper's first call when nothing before it (endbr64, push, sub/add on
 * %rsp) writes %rdi, %rsi, %rdx or %rcx: the callee gets the wrapper's four arguments. 0 = no. */
uint64_t tls_x86_wrapper_call(const uint8_t *code, size_t len, uint64_t addr);
/* Whether code contains a direct call (e8 rel32) to target. */
bool tls_x86_calls(const uint8_t *code, size_t len, uint64_t addr, uint64_t target);
/* Whether the first instruction is one the kernel's x86 uprobes emulate (push of a register,
 * nop, a relative jmp or call), so that a probe there costs one trap and no single step. */
bool tls_x86_entry_emulated(const uint8_t *code, size_t len);

#endif
