/* SPDX-License-Identifier: Apache-2.0 */
/*
 * FF1 (NIST SP 800-38G, section 6.2): a ten-round Feistel network over the two halves of a
 * numeral string, whose round function is AES-CBC-MAC (zero IV) of P || Q.
 *
 * Cost: P and the tweak's full blocks of Q are the same in every round, so their CBC-MAC state
 * is computed once per shape and tweak (kept in the key); a round then costs one AES block per remaining block of Q (one,
 * for values of up to 56 digits) and one more per extra 16 bytes of S. AES runs through one
 * EVP_CIPHER_CTX in ECB mode keyed once per key: CBC-MAC is chained here, a block at a time.
 *
 * Arithmetic: when radix^v < 2^96 (b <= 12, so d <= 16 and every number fits 128 bits) the
 * halves are unsigned __int128; otherwise OpenSSL's BIGNUM does it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "ff1.h"

typedef unsigned __int128 u128;

/* The largest b (bytes of NUM(B)) and d (bytes of S) that FF1_MAX_LEN and FF1_RADIX_MAX give. */
#define FF1_B_MAX ((FF1_MAX_LEN - FF1_MAX_LEN / 2) * 8 / 8)
#define FF1_D_MAX (4 * ((FF1_B_MAX + 3) / 4) + 4)
#define FF1_Q_MAX (FF1_MAX_TWEAK + 15 + 1 + FF1_B_MAX)

/*
 * CBC-MAC state after P and the tweak's full blocks: the same for every value of one shape and
 * tweak, so a few are kept per key (a stream meets a few shapes: SSNs, cards, IDs).
 */
#define FF1_PREFIX_CACHE 4
struct ff1_prefix {
	bool valid;
	unsigned radix;
	size_t n, tlen;
	uint8_t tweak[FF1_MAX_TWEAK];
	uint8_t y0[16];
};

struct ff1_key {
	EVP_CIPHER_CTX *ecb;
	struct ff1_prefix cache[FF1_PREFIX_CACHE];
	unsigned next; /* the entry replaced next */
};

struct ff1_key *ff1_key_new(const unsigned char *key, size_t len)
{
	const EVP_CIPHER *c = len == 16	  ? EVP_aes_128_ecb()
			      : len == 24 ? EVP_aes_192_ecb()
			      : len == 32 ? EVP_aes_256_ecb()
					  : NULL;
	if (!c || !key) {
		errno = EINVAL;
		return NULL;
	}
	struct ff1_key *k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	if (!(k->ecb = EVP_CIPHER_CTX_new())) {
		free(k);
		errno = ENOMEM;
		return NULL;
	}
	if (!EVP_EncryptInit_ex(k->ecb, c, NULL, key, NULL) ||
	    !EVP_CIPHER_CTX_set_padding(k->ecb, 0)) {
		ff1_key_free(k);
		errno = EIO;
		return NULL;
	}
	return k;
}

void ff1_key_free(struct ff1_key *k)
{
	if (!k)
		return;
	EVP_CIPHER_CTX_free(k->ecb); /* cleanses the key schedule */
	OPENSSL_cleanse(k, sizeof(*k));
	free(k);
}

static int aes(struct ff1_key *k, const uint8_t in[16], uint8_t out[16])
{
	int ol = 0;
	if (!EVP_EncryptUpdate(k->ecb, out, &ol, in, 16) || ol != 16)
		return -EIO;
	return 0;
}

bool ff1_domain_ok(unsigned radix, size_t n)
{
	uint64_t d = 1;
	if (radix < 2 || radix > FF1_RADIX_MAX || n < 2 || n > FF1_MAX_LEN)
		return false;
	for (size_t i = 0; i < n && d < FF1_MIN_DOMAIN; i++)
		d *= radix;
	return d >= FF1_MIN_DOMAIN;
}

/* ceil(ceil(v * log2(radix)) / 8): the bytes of radix^v - 1, computed exactly. */
static size_t num_bytes(unsigned radix, size_t v)
{
	u128 p = 1;
	size_t e = 0;
	for (; e < v && p < ((u128)1 << 119); e++) /* radix <= 2^8: no overflow */
		p *= radix;
	if (e == v) {
		p -= 1;
		uint64_t hi = (uint64_t)(p >> 64), lo = (uint64_t)p;
		size_t bits = hi   ? 128 - (size_t)__builtin_clzll(hi)
			      : lo ? 64 - (size_t)__builtin_clzll(lo)
				   : 0;
		return (bits + 7) / 8;
	}
	uint32_t l[FF1_B_MAX / 4 + 2] = {1};
	size_t nl = 1;
	for (size_t i = 0; i < v; i++) {
		uint64_t carry = 0;
		for (size_t j = 0; j < nl; j++) {
			uint64_t x = (uint64_t)l[j] * radix + carry;
			l[j] = (uint32_t)x;
			carry = x >> 32;
		}
		if (carry)
			l[nl++] = (uint32_t)carry;
	}
	for (size_t j = 0; j < nl && l[j]-- == 0; j++) /* radix^v - 1 */
		;
	while (nl > 1 && !l[nl - 1])
		nl--;
	size_t bits = (nl - 1) * 32;
	for (uint32_t top = l[nl - 1]; top; top >>= 1)
		bits++;
	return (bits + 7) / 8;
}

/* What every round of one call shares: the CBC-MAC state after P and Q's constant blocks. */
struct ff1_run {
	struct ff1_key *k;
	size_t b, d, qlen, qconst; /* qconst: Q's leading blocks that are the same each round */
	uint8_t y0[16];
	uint8_t q[FF1_Q_MAX + 16];
};

static int run_init(struct ff1_run *r, struct ff1_key *k, unsigned radix, const uint8_t *t,
		    size_t tlen, size_t n, size_t u, size_t b)
{
	uint8_t p[16] = {1,
			 2,
			 1,
			 (uint8_t)(radix >> 16),
			 (uint8_t)(radix >> 8),
			 (uint8_t)radix,
			 10,
			 (uint8_t)u,
			 (uint8_t)(n >> 24),
			 (uint8_t)(n >> 16),
			 (uint8_t)(n >> 8),
			 (uint8_t)n,
			 (uint8_t)(tlen >> 24),
			 (uint8_t)(tlen >> 16),
			 (uint8_t)(tlen >> 8),
			 (uint8_t)tlen};
	size_t pad = (16 - (tlen + b + 1) % 16) % 16;
	int e;

	r->k = k;
	r->b = b;
	r->d = 4 * ((b + 3) / 4) + 4;
	r->qlen = tlen + pad + 1 + b;
	r->qconst = (tlen + pad) / 16;
	if (tlen)
		memcpy(r->q, t, tlen);
	memset(r->q + tlen, 0, pad);
	for (unsigned c = 0; c < FF1_PREFIX_CACHE; c++) {
		const struct ff1_prefix *h = &k->cache[c];
		if (h->valid && h->radix == radix && h->n == n && h->tlen == tlen &&
		    (!tlen || !memcmp(h->tweak, t, tlen))) {
			memcpy(r->y0, h->y0, 16);
			return 0;
		}
	}
	if ((e = aes(k, p, r->y0)))
		return e;
	for (size_t j = 0; j < r->qconst; j++) {
		uint8_t x[16];
		for (int i = 0; i < 16; i++)
			x[i] = r->y0[i] ^ r->q[16 * j + i];
		if ((e = aes(k, x, r->y0)))
			return e;
	}
	struct ff1_prefix *h = &k->cache[k->next++ % FF1_PREFIX_CACHE];
	*h = (struct ff1_prefix){.valid = true, .radix = radix, .n = n, .tlen = tlen};
	if (tlen)
		memcpy(h->tweak, t, tlen);
	memcpy(h->y0, r->y0, 16);
	return 0;
}

/* S (r->d bytes) of round i, where numb holds [NUM_radix(B)]^b. */
static int run_prf(struct ff1_run *r, unsigned i, const uint8_t *numb, uint8_t *s)
{
	uint8_t y[16], x[16];
	size_t tail = r->qlen - r->b - 1;
	int e;

	r->q[tail] = (uint8_t)i;
	memcpy(r->q + tail + 1, numb, r->b);
	memcpy(y, r->y0, 16);
	for (size_t j = r->qconst; j < r->qlen / 16; j++) {
		for (int k = 0; k < 16; k++)
			x[k] = y[k] ^ r->q[16 * j + k];
		if ((e = aes(r->k, x, y)))
			return e;
	}
	/* S = R || CIPH(R ^ [1]^16) || CIPH(R ^ [2]^16) ..., first d bytes. */
	memcpy(s, y, r->d < 16 ? r->d : 16);
	for (size_t j = 1; 16 * j < r->d; j++) {
		uint8_t o[16];
		memcpy(x, y, 16);
		x[15] ^= (uint8_t)j;
		x[14] ^= (uint8_t)(j >> 8);
		if ((e = aes(r->k, x, o)))
			return e;
		memcpy(s + 16 * j, o, r->d - 16 * j < 16 ? r->d - 16 * j : 16);
	}
	return 0;
}

/* ---- 128-bit path ---------------------------------------------------------------------- */

static u128 num_u128(const uint8_t *x, size_t m, unsigned radix)
{
	u128 v = 0;
	size_t i = 0;
	uint64_t v64 = 0;
	/* 64-bit steps while they cannot overflow (radix^9 < 2^64 for radix <= 137). */
	for (; i < m && v64 <= (UINT64_MAX - 255) / 256; i++)
		v64 = v64 * radix + x[i];
	v = v64;
	for (; i < m; i++)
		v = v * radix + x[i];
	return v;
}

static void str_u128(u128 c, unsigned radix, uint8_t *out, size_t m)
{
	size_t j = m;
	while (j && (c >> 64)) {
		out[--j] = (uint8_t)(c % radix);
		c /= radix;
	}
	uint64_t c64 = (uint64_t)c;
	while (j) {
		out[--j] = (uint8_t)(c64 % radix);
		c64 /= radix;
	}
}

/* The last len (<= 16) bytes of v, big-endian. */
static void be_bytes(u128 v, uint8_t *out, size_t len)
{
	uint8_t w[16];
	uint64_t hi = __builtin_bswap64((uint64_t)(v >> 64)), lo = __builtin_bswap64((uint64_t)v);
	memcpy(w, &hi, 8);
	memcpy(w + 8, &lo, 8);
	memcpy(out, w + 16 - len, len);
}

/* NUM of len (<= 16) big-endian bytes. */
static u128 be_num(const uint8_t *in, size_t len)
{
	uint8_t w[16] = {0};
	uint64_t hi, lo;
	memcpy(w + 16 - len, in, len);
	memcpy(&hi, w, 8);
	memcpy(&lo, w + 8, 8);
	return (u128)__builtin_bswap64(hi) << 64 | __builtin_bswap64(lo);
}

static int crypt_u128(struct ff1_run *r, unsigned radix, uint8_t *a, uint8_t *bb, size_t u,
		      size_t v, bool dec)
{
	u128 pw[2] = {1, 1}; /* radix^u, radix^v */
	uint8_t numb[16], s[16];
	int e;

	for (size_t i = 0; i < v; i++) {
		if (i < u)
			pw[0] *= radix;
		pw[1] *= radix;
	}
	/* A and B swap roles each round; keep them as numbers and convert to numerals at the end. */
	u128 na = num_u128(a, u, radix), nb = num_u128(bb, v, radix);
	for (unsigned k = 0; k < 10; k++) {
		unsigned i = dec ? 9 - k : k;
		u128 m = pw[i & 1];
		be_bytes(dec ? na : nb, numb, r->b);
		if ((e = run_prf(r, i, numb, s)))
			return e;
		u128 y = be_num(s, r->d) % m;
		if (!dec) {
			u128 c = na + y;
			if (c >= m)
				c -= m;
			na = nb;
			nb = c;
		} else {
			u128 c = nb >= y ? nb - y : nb + m - y;
			nb = na;
			na = c;
		}
	}
	str_u128(na, radix, a, u);
	str_u128(nb, radix, bb, v);
	OPENSSL_cleanse(s, sizeof(s));
	return 0;
}

/* ---- arbitrary precision ----------------------------------------------------------------- */

static int num_bn(BIGNUM *out, const uint8_t *x, size_t m, unsigned radix)
{
	BN_zero(out);
	for (size_t i = 0; i < m; i++)
		if (!BN_mul_word(out, radix) || !BN_add_word(out, x[i]))
			return -ENOMEM;
	return 0;
}

static int crypt_bn(struct ff1_run *r, unsigned radix, uint8_t *a, uint8_t *bb, size_t u, size_t v,
		    bool dec)
{
	uint8_t numb[FF1_B_MAX], s[FF1_D_MAX];
	int e = -ENOMEM;
	BN_CTX *ctx = BN_CTX_new();
	if (!ctx)
		return -ENOMEM;
	BN_CTX_start(ctx);
	BIGNUM *na = BN_CTX_get(ctx), *nb = BN_CTX_get(ctx), *y = BN_CTX_get(ctx);
	BIGNUM *c = BN_CTX_get(ctx), *pw[2] = {BN_CTX_get(ctx), BN_CTX_get(ctx)};
	BIGNUM *rad = BN_CTX_get(ctx), *ex = BN_CTX_get(ctx);
	if (!ex || !BN_set_word(rad, radix) || !BN_set_word(ex, u) ||
	    !BN_exp(pw[0], rad, ex, ctx) || !BN_set_word(ex, v) || !BN_exp(pw[1], rad, ex, ctx) ||
	    num_bn(na, a, u, radix) || num_bn(nb, bb, v, radix))
		goto out;
	for (unsigned k = 0; k < 10; k++) {
		unsigned i = dec ? 9 - k : k;
		if (BN_bn2binpad(dec ? na : nb, numb, (int)r->b) < 0) {
			e = -EINVAL;
			goto out;
		}
		if ((e = run_prf(r, i, numb, s)))
			goto out;
		e = -ENOMEM;
		if (!BN_bin2bn(s, (int)r->d, y))
			goto out;
		if (!dec) {
			if (!BN_mod_add(c, na, y, pw[i & 1], ctx) || !BN_copy(na, nb) ||
			    !BN_copy(nb, c))
				goto out;
		} else {
			if (!BN_mod_sub(c, nb, y, pw[i & 1], ctx) || !BN_copy(nb, na) ||
			    !BN_copy(na, c))
				goto out;
		}
	}
	for (size_t j = u; j-- > 0;)
		a[j] = (uint8_t)BN_div_word(na, radix);
	for (size_t j = v; j-- > 0;)
		bb[j] = (uint8_t)BN_div_word(nb, radix);
	e = 0;
out:
	OPENSSL_cleanse(s, sizeof(s));
	BN_CTX_end(ctx);
	BN_CTX_free(ctx);
	return e;
}

static int ff1_crypt(struct ff1_key *k, unsigned radix, const void *tweak, size_t tlen,
		     const uint8_t *x, size_t n, uint8_t *out, bool dec, bool force_bn)
{
	struct ff1_run r;
	uint8_t buf[FF1_MAX_LEN];
	int e;

	if (!k || !x || !out || (tlen && !tweak) || tlen > FF1_MAX_TWEAK ||
	    !ff1_domain_ok(radix, n))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (x[i] >= radix)
			return -EINVAL;
	size_t u = n / 2, v = n - u, b = num_bytes(radix, v);
	if ((e = run_init(&r, k, radix, tweak, tlen, n, u, b)))
		return e;
	memcpy(buf, x, n);
	if (b <= 12 && !force_bn)
		e = crypt_u128(&r, radix, buf, buf + u, u, v, dec);
	else
		e = crypt_bn(&r, radix, buf, buf + u, u, v, dec);
	if (!e)
		memcpy(out, buf, n);
	OPENSSL_cleanse(buf, n);
	OPENSSL_cleanse(&r, sizeof(r));
	return e;
}

int ff1_encrypt(struct ff1_key *k, unsigned radix, const void *tweak, size_t tlen, const uint8_t *x,
		size_t n, uint8_t *out)
{
	return ff1_crypt(k, radix, tweak, tlen, x, n, out, false, false);
}

int ff1_decrypt(struct ff1_key *k, unsigned radix, const void *tweak, size_t tlen, const uint8_t *x,
		size_t n, uint8_t *out)
{
	return ff1_crypt(k, radix, tweak, tlen, x, n, out, true, false);
}

int ff1_crypt_bignum(struct ff1_key *k, unsigned radix, const void *tweak, size_t tlen,
		     const uint8_t *x, size_t n, uint8_t *out, bool decrypt)
{
	return ff1_crypt(k, radix, tweak, tlen, x, n, out, decrypt, true);
}
