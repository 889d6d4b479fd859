/* SPDX-License-Identifier: Apache-2.0 */
/* Probe points in an OpenSSL file (see tls_elf.h). */
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <string.h>
#include <unistd.h>

#include "tls_elf.h"

/* Bytes of a function read for the analysis. */
#define TLS_CODE_LEN 96

static int32_t rel32(const uint8_t *p)
{
	return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
			 (uint32_t)p[3] << 24);
}

uint64_t tls_x86_wrapper_call(const uint8_t *code, size_t len, uint64_t addr)
{
	size_t i = 0;
	for (int insn = 0; insn < 8 && i < len; insn++) {
		const uint8_t *p = code + i;
		size_t left = len - i;
		if (left >= 4 && p[0] == 0xf3 && p[1] == 0x0f && p[2] == 0x1e && p[3] == 0xfa)
			i += 4; /* endbr64 */
		else if (p[0] >= 0x50 && p[0] <= 0x57)
			i += 1; /* push %r64 */
		else if (left >= 2 && p[0] == 0x41 && p[1] >= 0x50 && p[1] <= 0x57)
			i += 2; /* push %r8-%r15 */
		else if (left >= 4 && p[0] == 0x48 && p[1] == 0x83 &&
			 (p[2] == 0xec || p[2] == 0xc4))
			i += 4; /* sub/add $imm8, %rsp */
		else if (left >= 7 && p[0] == 0x48 && p[1] == 0x81 &&
			 (p[2] == 0xec || p[2] == 0xc4))
			i += 7; /* sub/add $imm32, %rsp */
		else if (left >= 5 && p[0] == 0xe8)
			return addr + i + 5 + (int64_t)rel32(p + 1);
		else
			return 0;
	}
	return 0;
}

bool tls_x86_calls(const uint8_t *code, size_t len, uint64_t addr, uint64_t target)
{
	for (size_t i = 0; i + 5 <= len; i++)
		if (code[i] == 0xe8 && addr + i + 5 + (int64_t)rel32(code + i + 1) == target)
			return true;
	return false;
}

bool tls_x86_entry_emulated(const uint8_t *code, size_t len)
{
	if (!len)
		return false;
	if ((code[0] >= 0x50 && code[0] <= 0x57) || code[0] == 0x90 || code[0] == 0xe8 ||
	    code[0] == 0xe9 || code[0] == 0xeb)
		return true;
	if (len >= 2 && code[0] == 0x41 && code[1] >= 0x50 && code[1] <= 0x57)
		return true;
	return len >= 2 && code[0] == 0x0f && code[1] == 0x1f; /* nopl/nopw */
}

/* Virtual address -> file offset through the loadable segments; 0 = not in the file. */
static uint64_t file_offset(Elf *elf, uint64_t vaddr)
{
	size_t n;
	if (elf_getphdrnum(elf, &n) < 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		GElf_Phdr ph;
		if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_LOAD)
			continue;
		if (vaddr >= ph.p_vaddr && vaddr < ph.p_vaddr + ph.p_filesz)
			return vaddr - ph.p_vaddr + ph.p_offset;
	}
	return 0;
}

struct want {
	const char *name;
	uint64_t vaddr;
};

/* Virtual addresses of the defined functions named in w (dynamic and static symbols). */
static void find_symbols(Elf *elf, struct want *w, size_t n)
{
	Elf_Scn *scn = NULL;
	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		if (!gelf_getshdr(scn, &sh) ||
		    (sh.sh_type != SHT_DYNSYM && sh.sh_type != SHT_SYMTAB))
			continue;
		Elf_Data *data = elf_getdata(scn, NULL);
		size_t count = sh.sh_entsize ? sh.sh_size / sh.sh_entsize : 0;
		for (size_t i = 0; data && i < count; i++) {
			GElf_Sym sym;
			if (!gelf_getsym(data, (int)i, &sym) || sym.st_shndx == SHN_UNDEF ||
			    GELF_ST_TYPE(sym.st_info) != STT_FUNC || !sym.st_value)
				continue;
			const char *s = elf_strptr(elf, sh.sh_link, sym.st_name);
			for (size_t k = 0; s && k < n; k++)
				if (!w[k].vaddr && !strcmp(s, w[k].name))
					w[k].vaddr = sym.st_value;
		}
	}
}

/* The first TLS_CODE_LEN bytes at vaddr; false when they are not all in the file. */
static bool read_code(int fd, Elf *elf, uint64_t vaddr, uint8_t *code)
{
	uint64_t off = vaddr ? file_offset(elf, vaddr) : 0;
	return off && pread(fd, code, TLS_CODE_LEN, (off_t)off) == TLS_CODE_LEN;
}

/*
 * The body that wrapper `ex` (the _ex variant: same four arguments as the body) calls first,
 * if `plain` (SSL_read, SSL_write) calls it too and a probe on its entry is emulated.
 */
static uint64_t shared_body(int fd, Elf *elf, uint64_t ex, uint64_t plain)
{
	uint8_t a[TLS_CODE_LEN], b[TLS_CODE_LEN], c[TLS_CODE_LEN];
	if (!read_code(fd, elf, ex, a) || !read_code(fd, elf, plain, b))
		return 0;
	uint64_t body = tls_x86_wrapper_call(a, sizeof(a), ex);
	if (!body || body == ex || body == plain || !tls_x86_calls(b, sizeof(b), plain, body) ||
	    !read_code(fd, elf, body, c) || !tls_x86_entry_emulated(c, sizeof(c)))
		return 0;
	return file_offset(elf, body);
}

int tls_elf_probe_points(const char *path, struct tls_probe_points *pp)
{
	memset(pp, 0, sizeof(*pp));
	if (elf_version(EV_CURRENT) == EV_NONE)
		return -EINVAL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!elf || elf_kind(elf) != ELF_K_ELF) {
		if (elf)
			elf_end(elf);
		close(fd);
		return -ENOEXEC;
	}
	enum { W, R, WEX, REX, SETFD, FREE, N };
	struct want w[N] = {
		[W] = {"SSL_write", 0},	     [R] = {"SSL_read", 0},
		[WEX] = {"SSL_write_ex", 0}, [REX] = {"SSL_read_ex", 0},
		[SETFD] = {"SSL_set_fd", 0}, [FREE] = {"SSL_free", 0},
	};
	find_symbols(elf, w, N);
	uint64_t *out[N] = {&pp->ssl_write,   &pp->ssl_read,   &pp->ssl_write_ex,
			    &pp->ssl_read_ex, &pp->ssl_set_fd, &pp->ssl_free};
	for (int k = 0; k < N; k++)
		*out[k] = w[k].vaddr ? file_offset(elf, w[k].vaddr) : 0;
	GElf_Ehdr eh;
	if (gelf_getehdr(elf, &eh) && eh.e_machine == EM_X86_64 && w[W].vaddr && w[R].vaddr &&
	    w[WEX].vaddr && w[REX].vaddr) {
		pp->write_body = shared_body(fd, elf, w[WEX].vaddr, w[W].vaddr);
		pp->read_body = shared_body(fd, elf, w[REX].vaddr, w[R].vaddr);
		/* Both or neither: one programme of probes per file. */
		if (!pp->write_body || !pp->read_body || pp->write_body == pp->read_body)
			pp->write_body = pp->read_body = 0;
	}
	elf_end(elf);
	close(fd);
	return 0;
}
