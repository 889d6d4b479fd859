/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The JSON tokenizer's inner loop: find the next byte that ends a run of plain string bytes
 * ('"', '\\' or a control byte below 0x20). Plain bytes are skipped 16 at a time with SSE2, else
 * 8 at a time in a 64-bit word (SWAR), then one at a time. Header-only so the engine inlines it;
 * every variant is exposed for the unit test, which checks them against the byte loop.
 *
 * The structural pass (struct jsonscan_idx) does the same over 64-byte blocks of a chunk: one
 * 64-bit mask of the special bytes per block, computed once (AVX2 when the CPU has it, chosen at
 * run time; SSE2; or words) and kept while the tokenizer walks the block, so the many short
 * strings of a document cost a shift and a count of trailing zeros each instead of a vector scan.
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
	__m128i v, m;
	unsigned bits;
	/* unsigned v <= 0x1f  <=>  min(v, 0x1f) == v */
#define JSONSCAN_SSE2_MASK_()                                                                \
	(m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)), \
			  _mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v)),                          \
	 (unsigned)_mm_movemask_epi8(m))
	while (i < n && n - i >= 16) {
		v = _mm_loadu_si128((const __m128i *)(p + i));
		if ((bits = JSONSCAN_SSE2_MASK_()))
			return i + (size_t)__builtin_ctz(bits);
		i += 16;
	}
	if (i >= n)
		return n;
	if (n >= 16) {
		/* the last 16 bytes, overlapping bytes already known to be plain */
		v = _mm_loadu_si128((const __m128i *)(p + n - 16));
		bits = JSONSCAN_SSE2_MASK_() >> (i - (n - 16));
	} else {
		/* a short text: in a register padded with plain bytes */
		unsigned char b[16];
		memset(b, 'a', sizeof(b));
		memcpy(b, p + i, n - i);
		v = _mm_loadu_si128((const __m128i *)b);
		bits = JSONSCAN_SSE2_MASK_() & ((1u << (n - i)) - 1);
	}
#undef JSONSCAN_SSE2_MASK_
	return bits ? i + (size_t)__builtin_ctz(bits) : n;
}
#endif

/* ---- 64-byte blocks ---- */

#define JSONSCAN_BLOCK 64

/* Bit k: p[k] is special, for the k < len <= 64 bytes of a block. One byte at a time. */
static inline uint64_t jsonscan_mask_bytes(const unsigned char *p, size_t len)
{
	uint64_t m = 0;
	for (size_t k = 0; k < len; k++)
		m |= (uint64_t)jsonscan_special(p[k]) << k;
	return m;
}

/* jsonscan_mask_bytes() of a whole block, eight bytes at a time (SWAR). */
static inline uint64_t jsonscan_mask_words(const unsigned char *p)
{
	const uint64_t ones = 0x0101010101010101ull, highs = ones * 0x80;
	uint64_t m = 0;
	for (size_t k = 0; k < JSONSCAN_BLOCK; k += 8) {
		uint64_t x = jsonscan_load_le64(p + k);
		uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
		/*
		 * Exact per byte (no borrow across bytes): a byte is below 0x20, or equal to '"' or
		 * '\\', when its 7 low bits say so and its high bit is clear.
		 */
		uint64_t lo = x & ~highs;
		uint64_t ctl = ~((lo + ones * 0x60) | x) & highs;
		uint64_t eq =
			(~(((q & ~highs) + ~highs) | q) | ~(((b & ~highs) + ~highs) | b)) & highs;
		uint64_t t = (ctl | eq) >> 7; /* one bit per byte, at bit 8j */
		t = (t * 0x0102040810204080ull) >> 56; /* gather bits 8j -> j */
		m |= t << k;
	}
	return m;
}

#ifdef __SSE2__
/* jsonscan_mask_bytes() of a whole block, sixteen bytes at a time (SSE2). */
static inline uint64_t jsonscan_mask_sse2(const unsigned char *p)
{
	const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'),
		      ctl = _mm_set1_epi8(0x1f);
	uint64_t m = 0;
	for (int k = 0; k < JSONSCAN_BLOCK; k += 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(p + k));
		__m128i s = _mm_or_si128(
			_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, bslash)),
			_mm_cmpeq_epi8(_mm_min_epu8(v, ctl), v));
		m |= (uint64_t)(unsigned)_mm_movemask_epi8(s) << k;
	}
	return m;
}
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define JSONSCAN_HAVE_AVX2 1
/* jsonscan_mask_bytes() of k whole blocks at p into m[0, k); only on a CPU with AVX2. */
__attribute__((target("avx2"), unused)) static void jsonscan_masks_avx2(const unsigned char *p,
									size_t k, uint64_t *m)
{
	const __m256i quote = _mm256_set1_epi8('"'), bslash = _mm256_set1_epi8('\\'),
		      ctl = _mm256_set1_epi8(0x1f);
	for (size_t j = 0; j < k; j++, p += JSONSCAN_BLOCK) {
		__m256i a = _mm256_loadu_si256((const __m256i *)p),
			b = _mm256_loadu_si256((const __m256i *)(p + 32));
		__m256i sa = _mm256_or_si256(
			_mm256_or_si256(_mm256_cmpeq_epi8(a, quote), _mm256_cmpeq_epi8(a, bslash)),
			_mm256_cmpeq_epi8(_mm256_min_epu8(a, ctl), a));
		__m256i sb = _mm256_or_si256(
			_mm256_or_si256(_mm256_cmpeq_epi8(b, quote), _mm256_cmpeq_epi8(b, bslash)),
			_mm256_cmpeq_epi8(_mm256_min_epu8(b, ctl), b));
		m[j] = (uint64_t)(uint32_t)_mm256_movemask_epi8(sa) |
		       (uint64_t)(uint32_t)_mm256_movemask_epi8(sb) << 32;
	}
}
#endif

enum jsonscan_variant { JSONSCAN_WORDS, JSONSCAN_SSE2, JSONSCAN_AVX2 };

/* The best variant this CPU runs (AVX2 is chosen at run time, SSE2 at build time). */
static inline enum jsonscan_variant jsonscan_best(void)
{
#ifdef JSONSCAN_HAVE_AVX2
	if (__builtin_cpu_supports("avx2"))
		return JSONSCAN_AVX2;
#endif
#ifdef __SSE2__
	return JSONSCAN_SSE2;
#else
	return JSONSCAN_WORDS;
#endif
}

/* Blocks whose masks are computed in one go (1 KiB of text). */
#define JSONSCAN_BATCH 16

/*
 * The special-byte masks of one text p[0, n), block by block (blocks start at p + 64k),
 * computed JSONSCAN_BATCH blocks at a time as a tokenizer walks forward. Borrows p for its
 * lifetime; a zero-initialised index is not ready (jsonscan_idx_init).
 */
struct jsonscan_idx {
	const unsigned char *p;
	size_t n;
	size_t blk; /* offset of the block in view (none: far from every offset) */
	uint64_t bits; /* its mask */
	size_t base; /* offset of the first block in m */
	size_t end; /* offset past the last block in m (base when none) */
	enum jsonscan_variant v;
	uint64_t m[JSONSCAN_BATCH]; /* bits past n are clear */
};

static inline void jsonscan_idx_init(struct jsonscan_idx *x, const unsigned char *p, size_t n,
				     enum jsonscan_variant v)
{
	x->p = p;
	x->n = n;
	x->blk = (size_t)0 - 2 * JSONSCAN_BLOCK; /* i - blk >= 64 for every i */
	x->bits = 0;
	x->base = x->end = 0;
	x->v = v;
}

/* Compute the masks of the blocks from offset base (a multiple of 64, < n) on. */
static inline void jsonscan_idx_load(struct jsonscan_idx *x, size_t base)
{
	size_t full = (x->n - base) / JSONSCAN_BLOCK, k;
	if (full > JSONSCAN_BATCH)
		full = JSONSCAN_BATCH;
	const unsigned char *b = x->p + base;
	x->base = base;
#ifdef JSONSCAN_HAVE_AVX2
	if (x->v == JSONSCAN_AVX2)
		jsonscan_masks_avx2(b, full, x->m);
	else
#endif
#ifdef __SSE2__
		if (x->v == JSONSCAN_SSE2)
		for (k = 0; k < full; k++)
			x->m[k] = jsonscan_mask_sse2(b + k * JSONSCAN_BLOCK);
	else
#endif
		for (k = 0; k < full; k++)
			x->m[k] = jsonscan_mask_words(b + k * JSONSCAN_BLOCK);
	x->end = base + full * JSONSCAN_BLOCK;
	if (full < JSONSCAN_BATCH && x->end < x->n) {
		x->m[full] = jsonscan_mask_bytes(x->p + x->end, x->n - x->end);
		x->end = x->n;
	}
}

/* jsonscan_next() past the block in view: the blocks from i on, computing batches as needed. */
static __attribute__((noinline, unused)) size_t jsonscan_next_blocks(struct jsonscan_idx *x,
								     size_t i)
{
	while (i < x->n) {
		if (i < x->base || i >= x->end)
			jsonscan_idx_load(x, i & ~(size_t)(JSONSCAN_BLOCK - 1));
		size_t k = (i - x->base) / JSONSCAN_BLOCK;
		x->blk = x->base + k * JSONSCAN_BLOCK;
		x->bits = x->m[k];
		uint64_t m = x->bits >> (i - x->blk);
		if (m)
			return i + (size_t)__builtin_ctzll(m);
		i = x->blk + JSONSCAN_BLOCK;
	}
	return x->n;
}

/* First index >= i of '"', '\\' or a control byte in p[0, n), or n: jsonscan_string(). */
static inline size_t jsonscan_next(struct jsonscan_idx *x, size_t i)
{
	size_t d = i - x->blk; /* i < blk wraps around: not in view */
	if (d < JSONSCAN_BLOCK) {
		uint64_t m = x->bits >> d;
		if (m)
			return i + (size_t)__builtin_ctzll(m);
		i = x->blk + JSONSCAN_BLOCK;
	}
	return jsonscan_next_blocks(x, i);
}

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
