/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The JSON tokenizer's inner loop: find the next byte that ends a run of plain string bytes
 * ('"', '\\' or a control byte below 0x20). Plain bytes are skipped 16 at a time with SSE2, else
 * 8 at a time in a 64-bit word (SWAR), then one at a time. Header-only so the engine inlines it;
 * every variant is exposed for the unit test, which checks them against the byte loop.
 */
#ifndef MESHMASK_JSONSCAN_H
#define MESHMASK_JSONSCAN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Whether a byte ends a plain run inside a JSON string. */
static inline int jsonscan_special(unsigned char c)
{
	return c < 0x20 || c == '"' || c == '\\';
}

/* First index >= i of a special byte in p[0, n), or n: one byte at a time. */
static inline size_t jsonscan_bytes(const unsigned char *p, size_t i, size_t n)
{
	while (i < n && !jsonscan_special(p[i]))
		i++;
	return i;
}

/*
 * Eight bytes with p[0] in the least significant byte, whatever the host byte order: the word
 * scan below reads the lowest set bit as the first byte in memory.
 */
static inline uint64_t jsonscan_load_le64(const unsigned char *p)
{
	uint64_t x;
	memcpy(&x, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	x = __builtin_bswap64(x);
#elif !defined(__BYTE_ORDER__)
	x = (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
	    (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
	    (uint64_t)p[7] << 56;
#endif
	return x;
}

/* jsonscan_bytes(), eight bytes at a time (SWAR), portable to either byte order. */
static inline size_t jsonscan_words(const unsigned char *p, size_t i, size_t n)
{
	const uint64_t ones = 0x0101010101010101ull, highs = ones * 0x80;
	while (i < n && n - i >= 8) {
		uint64_t x = jsonscan_load_le64(p + i), q, b, t;
		q = x ^ (ones * '"');
		b = x ^ (ones * '\\');
		t = (((q - ones) & ~q) | ((b - ones) & ~b) | ((x - ones * 0x20) & ~x)) & highs;
		/*
		 * A borrow only makes a false hit in a more significant byte than a true one, which
		 * is a later byte in memory: the lowest set bit is exact.
		 */
		if (t)
			return i + (size_t)(__builtin_ctzll(t) >> 3);
		i += 8;
	}
	return jsonscan_bytes(p, i, n);
}

#ifdef __SSE2__
/* jsonscan_bytes(), sixteen bytes at a time with SSE2, then words. */
static inline size_t jsonscan_sse2(const unsigned char *p, size_t i, size_t n)
{
	const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'),
		      ctl = _mm_set1_epi8(0x1f);
	while (i < n && n - i >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(p + i));
		/* unsigned v <= 0x1f  <=>  min(v, 0x1f) == v */
		__m128i m = _mm_or_si128(
			_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
			_mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v));
		unsigned bits = (unsigned)_mm_movemask_epi8(m);
		if (bits)
			return i + (size_t)__builtin_ctz(bits);
		i += 16;
	}
	return jsonscan_words(p, i, n);
}
#endif

/* First index >= i of '"', '\\' or a control byte in p[0, n), or n. */
static inline size_t jsonscan_string(const unsigned char *p, size_t i, size_t n)
{
#ifdef __SSE2__
	return jsonscan_sse2(p, i, n);
#else
	return jsonscan_words(p, i, n);
#endif
}

#endif
