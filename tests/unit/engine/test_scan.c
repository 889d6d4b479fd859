/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The JSON string scanner (agent/engine/jsonscan.h): the SSE2 and word-at-a-time variants find the
 * same byte as the byte loop, at every start offset and length, over bytes that include every
 * special byte, the bytes around the control range and bytes >= 0x80 (a signed compare would
 * take them for control bytes). Buffers are exact-size copies so ASan sees any read past them.
 * The structural pass (jsonscan_idx) finds the same bytes with every block variant: words,
 * SSE2 and AVX2 (when this CPU has it), over texts longer than a batch of blocks.
 */
#include <stdlib.h>
#include <string.h>

#include "jsonscan.h"
#include "tap.h"

static const unsigned char interesting[] = {'"',  '\\', 0x00, 0x1f, 0x20, 0x7f, 0x80,
					    0x9f, 0xa0, 0xdc, 0xff, '\n', 'a',	'0'};

static unsigned rnd(unsigned *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return *seed >> 16;
}

/* Check every variant on p[0, n) from every start; returns the number of disagreements. */
static unsigned check_all(const unsigned char *p, size_t n)
{
	unsigned bad = 0;
	for (size_t i = 0; i <= n; i++) {
		size_t want = jsonscan_bytes(p, i, n);
		bad += jsonscan_words(p, i, n) != want;
		bad += jsonscan_string(p, i, n) != want;
#ifdef __SSE2__
		bad += jsonscan_sse2(p, i, n) != want;
#endif
	}
	return bad;
}

/* jsonscan_next() with variant v from every start (and walking forward) vs the byte loop. */
static unsigned check_idx(const unsigned char *p, size_t n, enum jsonscan_variant v)
{
	unsigned bad = 0;
	struct jsonscan_idx x;
	for (size_t i = 0; i <= n; i += 1 + i / 97) {
		jsonscan_idx_init(&x, p, n, v);
		bad += jsonscan_next(&x, i) != jsonscan_bytes(p, i, n);
	}
	jsonscan_idx_init(&x, p, n, v);
	for (size_t i = 0; i < n;) {
		size_t j = jsonscan_next(&x, i);
		bad += j != jsonscan_bytes(p, i, n);
		i = j + 1 + (j % 3);
	}
	return bad;
}

static void test_blocks(void)
{
	enum jsonscan_variant vs[3] = {JSONSCAN_WORDS};
	int nv = 1;
#ifdef __SSE2__
	vs[nv++] = JSONSCAN_SSE2;
#endif
#ifdef JSONSCAN_HAVE_AVX2
	if (__builtin_cpu_supports("avx2"))
		vs[nv++] = JSONSCAN_AVX2;
#endif
	unsigned seed = 11, bad = 0, runs = 0;
	unsigned char blk[64];
	for (int iter = 0; iter < 20000; iter++) {
		for (size_t k = 0; k < 64; k++)
			blk[k] = iter % 7 == 0	  ? interesting[rnd(&seed) % sizeof(interesting)]
				 : rnd(&seed) % 5 ? (unsigned char)('a' + k % 26)
						  : (unsigned char)rnd(&seed);
		uint64_t want = jsonscan_mask_bytes(blk, 64);
		bad += jsonscan_mask_words(blk) != want;
#ifdef __SSE2__
		bad += jsonscan_mask_sse2(blk) != want;
#endif
	}
	memset(blk, '"', 64);
	bad += jsonscan_mask_words(blk) != ~0ull;
	ok(bad == 0, "64-byte block masks: words and SSE2 agree with the byte loop");

	bad = 0;
	for (int iter = 0; iter < 300; iter++) {
		size_t n = (size_t)(iter * 37 % 2300);
		unsigned char *p = malloc(n ? n : 1);
		for (size_t i = 0; i < n; i++)
			p[i] = (unsigned char)('a' + rnd(&seed) % 26);
		for (unsigned k = rnd(&seed) % (1 + (unsigned)n / 16); k > 0 && n; k--)
			p[rnd(&seed) % n] = interesting[rnd(&seed) % sizeof(interesting)];
		for (int v = 0; v < nv; v++)
			bad += check_idx(p, n, vs[v]);
		runs++;
		free(p);
	}
	ok(bad == 0, "structural pass: %d block variants agree with the byte loop (%u texts)", nv,
	   runs);
}

int main(void)
{
	unsigned char b[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	is_int(jsonscan_load_le64(b) & 0xff, 1, "first byte in memory is the low byte");
	is_int(jsonscan_load_le64(b) >> 56, 8, "eighth byte in memory is the high byte");

	unsigned seed = 7, bad = 0, runs = 0;
	for (int iter = 0; iter < 4000; iter++) {
		size_t n = (size_t)(iter % 70);
		unsigned char *p = malloc(n ? n : 1);
		/* mostly plain text with a few special or edge bytes, at random places */
		for (size_t i = 0; i < n; i++)
			p[i] = (unsigned char)('a' + rnd(&seed) % 26);
		for (unsigned k = rnd(&seed) % 4; k > 0 && n; k--)
			p[rnd(&seed) % n] = interesting[rnd(&seed) % sizeof(interesting)];
		bad += check_all(p, n);
		runs++;
		free(p);
	}
	ok(bad == 0, "SSE2, word and byte scans agree (%u buffers, every start)", runs);

	/* each single byte value, at each position of a 40-byte run of plain bytes */
	bad = 0;
	unsigned char *q = malloc(40);
	for (unsigned v = 0; v < 256; v++) {
		for (size_t pos = 0; pos < 40; pos++) {
			memset(q, 'x', 40);
			q[pos] = (unsigned char)v;
			size_t want = jsonscan_special((unsigned char)v) ? pos : 40;
			bad += jsonscan_string(q, 0, 40) != want;
			bad += jsonscan_words(q, 0, 40) != want;
			bad += check_all(q, 40) != 0;
		}
	}
	free(q);
	ok(bad == 0, "every byte value at every position: only '\"', '\\\\' and < 0x20 stop");

	/* a special byte followed by one that borrows in the word arithmetic */
	unsigned char t[16] = "abc\x01\x00xyz\"defghij";
	is_int(jsonscan_words(t, 0, 16), 3, "first of two adjacent control bytes");
	is_int(jsonscan_string(t, 4, 16), 4, "NUL byte");
	is_int(jsonscan_string(t, 5, 16), 8, "quote");
	is_int(jsonscan_string(t, 16, 16), 16, "start at the end");
	test_blocks();
	return tap_done();
}
