/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Actions applied to one value. mask is format-preserving: a "maskable" unit is an ASCII letter
 * or digit or one non-ASCII UTF-8 code point (an invalid byte counts as one unit, so the output
 * is never left with half a character); everything else (separators, punctuation, spaces) is
 * copied. Detected entities are ASCII, so masking them with a one-byte char keeps their length.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "action.h"
#include "detect.h"
#include "tokenize.h"

#define HASH_LEN_DEFAULT 16
#define HASH_LEN_MAX 64

/* Length of the UTF-8 sequence at s[i] (1 for ASCII and for an invalid byte). */
static size_t utf8_unit(const unsigned char *s, size_t n, size_t i)
{
	unsigned char c = s[i];
	size_t want;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		want = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		want = 3;
		if (c == 0xe0)
			lo = 0xa0; /* overlong */
		else if (c == 0xed)
			hi = 0x9f; /* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		want = 4;
		if (c == 0xf0)
			lo = 0x90; /* overlong */
		else if (c == 0xf4)
			hi = 0x8f; /* above U+10FFFF */
	} else {
		return 1;
	}
	if (i + want > n || s[i + 1] < lo || s[i + 1] > hi)
		return 1;
	for (size_t k = 2; k < want; k++)
		if (s[i + k] < 0x80 || s[i + k] > 0xbf)
			return 1;
	return want;
}

static bool maskable(const unsigned char *s, size_t i)
{
	unsigned char c = s[i];
	return c >= 0x80 || (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

static const char *mask_char(const struct policy_action *a, size_t *len)
{
	if (a->mask_char[0] && !a->mask_char[1]) {
		*len = 1; /* the usual one-byte char, without a strnlen call */
		return a->mask_char;
	}
	size_t l = strnlen(a->mask_char, sizeof(a->mask_char));
	if (l == 0 || l == sizeof(a->mask_char)) {
		*len = 1;
		return "*";
	}
	*len = l;
	return a->mask_char;
}

/* Bytes per unit at s[i]: 1 for ASCII without a call, else utf8_unit(). */
static inline size_t unit_len(const unsigned char *s, size_t n, size_t i)
{
	return s[i] < 0x80 ? 1 : utf8_unit(s, n, i);
}

/* ASCII letters and digits: the maskable units of an ASCII value. */
static const unsigned char ascii_alnum[128] = {
	['0' ... '9'] = 1,
	['A' ... 'Z'] = 1,
	['a' ... 'z'] = 1,
};

static bool all_ascii(const unsigned char *s, size_t n)
{
	uint64_t acc = 0, w;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		memcpy(&w, s + i, 8);
		acc |= w;
	}
	for (; i < n; i++)
		acc |= s[i];
	return !(acc & 0x8080808080808080ull);
}

/*
 * do_mask() for an ASCII value and a one-byte mask char (every detected entity): one unit per
 * byte, so the output is the input with the hidden units replaced, without a branch per byte.
 */
static void mask_ascii(const unsigned char *s, size_t len, char mc, uint64_t kf, uint64_t kl,
		       char *o)
{
	uint64_t units = 0, u = 0;
	for (size_t i = 0; i < len; i++)
		units += ascii_alnum[s[i]];
	if (kf + kl >= units)
		kf = kl = 0;
	uint64_t lim = units - kl;
	for (size_t i = 0; i < len; i++) {
		unsigned m = ascii_alnum[s[i]];
		bool hide = m & (u >= kf) & (u < lim);
		o[i] = hide ? mc : (char)s[i];
		u += m;
	}
}

#ifdef __SSE2__
#include <emmintrin.h>

/*
 * mask_ascii() for a value of at most 64 bytes, without a loop over its bytes: the maskable
 * bytes as one 64-bit mask, the first kf and the last kl of them cleared from it, then a select
 * sixteen bytes at a time.
 */
static void mask_ascii64(const unsigned char *s, size_t len, char mc, uint64_t kf, uint64_t kl,
			 char *o)
{
	unsigned char in[64] = {0}, res[64]; /* zeros are not maskable */
	__m128i v[4];
	uint64_t m = 0;
	memcpy(in, s, len);
	for (int k = 0; k < 4; k++) {
		v[k] = _mm_loadu_si128((const __m128i *)(in + 16 * k));
		__m128i l = _mm_or_si128(v[k], _mm_set1_epi8(0x20));
		__m128i an =
			_mm_or_si128(_mm_and_si128(_mm_cmpgt_epi8(v[k], _mm_set1_epi8('0' - 1)),
						   _mm_cmplt_epi8(v[k], _mm_set1_epi8('9' + 1))),
				     _mm_and_si128(_mm_cmpgt_epi8(l, _mm_set1_epi8('a' - 1)),
						   _mm_cmplt_epi8(l, _mm_set1_epi8('z' + 1))));
		m |= (uint64_t)(unsigned)_mm_movemask_epi8(an) << (16 * k);
	}
	/* bits set, without a libgcc call where the build does not assume POPCNT */
	uint64_t units = m - ((m >> 1) & 0x5555555555555555ull);
	units = (units & 0x3333333333333333ull) + ((units >> 2) & 0x3333333333333333ull);
	units = (((units + (units >> 4)) & 0x0f0f0f0f0f0f0f0full) * 0x0101010101010101ull) >> 56;
	if (kf + kl >= units)
		kf = kl = 0;
	for (uint64_t i = 0; i < kf; i++)
		m &= m - 1;
	for (uint64_t i = 0; i < kl; i++)
		m &= ~(1ull << (63 - __builtin_clzll(m)));
	const __m128i bit = _mm_set_epi8((char)0x80, 0x40, 0x20, 0x10, 8, 4, 2, 1, (char)0x80, 0x40,
					 0x20, 0x10, 8, 4, 2, 1);
	const __m128i c = _mm_set1_epi8(mc);
	for (int k = 0; k < 4; k++) {
		uint64_t b = m >> (16 * k);
		__m128i rep = _mm_set_epi64x((long long)((b >> 8 & 0xff) * 0x0101010101010101ull),
					     (long long)((b & 0xff) * 0x0101010101010101ull));
		__m128i sel = _mm_cmpeq_epi8(_mm_and_si128(rep, bit), bit);
		_mm_storeu_si128((__m128i *)(res + 16 * k),
				 _mm_or_si128(_mm_and_si128(sel, c), _mm_andnot_si128(sel, v[k])));
	}
	memcpy(o, res, len);
}
#endif

static int do_mask(const struct policy_action *a, const char *val, size_t len, struct mm_buf *out)
{
	const unsigned char *s = (const unsigned char *)val;
	size_t mlen, units = 0;
	const char *mc = mask_char(a, &mlen);

	if (len == 0)
		return 0;
	if (mlen == 1 && all_ascii(s, len)) {
		int r = mm_buf_reserve(out, len);
		if (r)
			return r;
#ifdef __SSE2__
		if (len <= 64)
			mask_ascii64(s, len, mc[0], a->keep_first, a->keep_last,
				     out->data + out->len);
		else
#endif
			mask_ascii(s, len, mc[0], a->keep_first, a->keep_last,
				   out->data + out->len);
		out->len += len;
		return 0;
	}
	for (size_t i = 0; i < len; i += unit_len(s, len, i))
		units += maskable(s, i);

	/*
	 * Keep the first/last units only when something is left to hide: a value no longer than
	 * keep_first + keep_last would come out in clear, so it is masked entirely instead.
	 */
	uint64_t kf = a->keep_first, kl = a->keep_last;
	if (kf + kl >= units)
		kf = kl = 0;

	if (len > SIZE_MAX / sizeof(a->mask_char))
		return -ENOMEM;
	int r = mm_buf_reserve(out, len * (mlen > 1 ? mlen : 1));
	if (r)
		return r;

	char *o = out->data + out->len;
	size_t u = 0;
	for (size_t i = 0; i < len;) {
		size_t l = unit_len(s, len, i);
		if (maskable(s, i)) {
			bool keep = u < kf || u >= units - kl;
			u++;
			if (!keep) {
				if (mlen == 1)
					*o = mc[0];
				else
					memcpy(o, mc, mlen);
				o += mlen;
				i += l;
				continue;
			}
		}
		if (l == 1)
			*o = (char)s[i];
		else
			memcpy(o, s + i, l);
		o += l;
		i += l;
	}
	out->len = (size_t)(o - out->data);
	return 0;
}

static int do_replace(const struct policy_action *a, int entity, struct mm_buf *out)
{
	if (a->value)
		return mm_buf_puts(out, a->value);
	const char *name = entity >= 0 ? mm_entity_name((enum mm_entity)entity) : NULL;
	if (!name)
		return mm_buf_puts(out, "<MASKED>");
	int r = mm_buf_putc(out, '<');
	if (!r)
		r = mm_buf_puts(out, name);
	if (!r)
		r = mm_buf_putc(out, '>');
	return r;
}

/*
 * HMAC-SHA256 (RFC 2104) from the keyed midstates: H((K ^ opad) || H((K ^ ipad) || m)). The
 * two states after the key's padded block are computed once per key and copied per value
 * (EVP_MD_CTX_copy_ex), instead of re-keying an EVP_MAC_CTX, which copies two digest contexts
 * through the provider for every value. The output is HMAC-SHA256 (checked against RFC 4231
 * and EVP_MAC in tests/unit/detect/test_action.c).
 */
#define SHA256_BLOCK 64
#define SHA256_LEN 32

struct hmac_prep {
	EVP_MD_CTX *inner, *outer; /* after (K ^ ipad), (K ^ opad): never changed once keyed */
	EVP_MD_CTX *work; /* a copy of one of them, per value */
};

/* SHA-256, fetched once per process: an implicit fetch takes locks and walks tables. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_setup(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static void hmac_prep_free(struct hmac_prep *h)
{
	if (!h)
		return;
	EVP_MD_CTX_free(h->inner); /* cleanses the keyed states */
	EVP_MD_CTX_free(h->outer);
	EVP_MD_CTX_free(h->work);
	free(h);
}

/* The keyed states of `key`; NULL on failure. */
static struct hmac_prep *hmac_prep_new(const unsigned char *key, size_t key_len)
{
	unsigned char k[SHA256_BLOCK] = {0}, pad[SHA256_BLOCK];
	struct hmac_prep *h = NULL;
	bool ok = false;

	pthread_once(&sha256_once, sha256_setup);
	if (!sha256_md || !(h = calloc(1, sizeof(*h))) || !(h->inner = EVP_MD_CTX_new()) ||
	    !(h->outer = EVP_MD_CTX_new()) || !(h->work = EVP_MD_CTX_new()))
		goto out;
	/* A key longer than the block is hashed first; a shorter one is padded with zeros. */
	if (key_len > SHA256_BLOCK) {
		if (!EVP_DigestInit_ex(h->work, sha256_md, NULL) ||
		    !EVP_DigestUpdate(h->work, key, key_len) ||
		    !EVP_DigestFinal_ex(h->work, k, NULL))
			goto out;
	} else if (key_len) {
		memcpy(k, key, key_len);
	}
	for (size_t i = 0; i < SHA256_BLOCK; i++)
		pad[i] = k[i] ^ 0x36;
	if (!EVP_DigestInit_ex(h->inner, sha256_md, NULL) ||
	    !EVP_DigestUpdate(h->inner, pad, SHA256_BLOCK))
		goto out;
	for (size_t i = 0; i < SHA256_BLOCK; i++)
		pad[i] = k[i] ^ 0x5c;
	ok = EVP_DigestInit_ex(h->outer, sha256_md, NULL) &&
	     EVP_DigestUpdate(h->outer, pad, SHA256_BLOCK);
out:
	OPENSSL_cleanse(k, sizeof(k));
	OPENSSL_cleanse(pad, sizeof(pad));
	if (!ok) {
		hmac_prep_free(h);
		h = NULL;
	}
	return h;
}

/* HMAC-SHA256 of v[0, len) into md[32] from the keyed states. 0 or -EIO. */
static int hmac_prep_mac(struct hmac_prep *h, const unsigned char *v, size_t len, unsigned char *md)
{
	unsigned char ih[SHA256_LEN];
	int ok = EVP_MD_CTX_copy_ex(h->work, h->inner) && EVP_DigestUpdate(h->work, v, len) &&
		 EVP_DigestFinal_ex(h->work, ih, NULL) && EVP_MD_CTX_copy_ex(h->work, h->outer) &&
		 EVP_DigestUpdate(h->work, ih, SHA256_LEN) && EVP_DigestFinal_ex(h->work, md, NULL);
	OPENSSL_cleanse(ih, sizeof(ih));
	return ok ? 0 : -EIO;
}

/* HMAC-SHA256 of val into md[32]: with the prepared states of c, else one-shot. */
static int hmac_sha256(const struct policy_action *a, struct action_ctx *c, const char *val,
		       size_t len, unsigned char *md)
{
	static const unsigned char empty[1];
	const unsigned char *v = len ? (const unsigned char *)val : empty;

	if (!c) {
		unsigned int l = 0;
		const void *key = a->hash_key && a->hash_key_len ? a->hash_key : empty;
		if (!HMAC(EVP_sha256(), key, (int)a->hash_key_len, v, len, md, &l) || l != 32)
			return -EIO;
		return 0;
	}
	if (c->mac && c->key != a->hash_key)
		action_ctx_free(c);
	if (!c->mac) {
		/* Keyed once; later values only copy the keyed states. */
		if (!(c->mac = hmac_prep_new(a->hash_key, a->hash_key_len)))
			return -EIO;
		c->key = a->hash_key;
	}
	return hmac_prep_mac(c->mac, v, len, md);
}

static int do_hash(const struct policy_action *a, struct action_ctx *c, const char *val, size_t len,
		   struct mm_buf *out)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	char txt[HASH_LEN_MAX];
	size_t hl = a->hash_len ? a->hash_len : HASH_LEN_DEFAULT;

	if (hl > HASH_LEN_MAX)
		hl = HASH_LEN_MAX;
	if (a->hash_key_len > INT_MAX)
		return -EINVAL;
	int r = hmac_sha256(a, c, val, len, md);
	if (r)
		return r;
	for (size_t i = 0; i < (hl + 1) / 2; i++) {
		txt[2 * i] = hex[md[i] >> 4];
		txt[2 * i + 1] =
			hex[md[i] & 0xf]; /* past hl when odd: txt has room, not appended */
	}
	OPENSSL_cleanse(md, sizeof(md));

	if (a->hash_prefix)
		r = mm_buf_puts(out, a->hash_prefix);
	if (!r)
		r = mm_buf_append(out, txt, hl);
	return r;
}

/*
 * tokenize / detokenize (tokenize.h). A value that does not fit (too short for FF1, not ASCII,
 * not Luhn-valid under luhn) is masked as `mask` would with the same keepFirst/keepLast when
 * tokenizing, never passed in clear; when detokenizing it is copied unchanged. Either way it is
 * counted in c->unfit.
 */
static int do_token(const struct policy_action *a, struct action_ctx *c, const char *val,
		    size_t len, struct mm_buf *out)
{
	bool detok = a->type == POLICY_ACTION_DETOKENIZE;
	const char *space = a->token_space ? a->token_space : "default";
	struct tok_opts o = {.keep_first = a->keep_first,
			     .keep_last = a->keep_last,
			     .luhn = a->luhn,
			     .keep_domain = a->keep_domain,
			     .tweak = space,
			     .tweak_len = strlen(space)};
	struct ff1_key *k = NULL;
	int r;

	if (len == 0)
		return 0;
	if (c && c->ff1 && c->ff1_for != a->hash_key)
		action_ctx_free(c);
	if (c && c->ff1) {
		k = c->ff1;
	} else if (!(k = ff1_key_new(a->hash_key, a->hash_key_len))) {
		return errno == ENOMEM ? -ENOMEM : -EIO;
	} else if (c) {
		c->ff1 = k;
		c->ff1_for = a->hash_key;
	}
	if ((r = mm_buf_reserve(out, len)))
		goto out;
	r = tok_transform(k, &o, detok, val, len, out->data + out->len);
	if (!r) {
		out->len += len;
	} else if (r == -EDOM) {
		if (c)
			c->unfit++;
		if (detok) {
			r = mm_buf_append(out, val, len);
		} else if (!tok_mask(&o, val, len, out->data + out->len)) {
			out->len += len;
			r = 0;
		} else {
			struct policy_action m = {.type = POLICY_ACTION_MASK,
						  .keep_first = a->keep_first,
						  .keep_last = a->keep_last,
						  .mask_char = "*"};
			r = do_mask(&m, val, len, out);
		}
	}
out:
	if (!c || c->ff1 != k)
		ff1_key_free(k);
	return r;
}

int action_apply(const struct policy_action *a, int entity, const char *val, size_t len,
		 struct mm_buf *out)
{
	return action_apply_ctx(a, NULL, entity, val, len, out);
}

void action_ctx_free(struct action_ctx *c)
{
	if (!c)
		return;
	hmac_prep_free(c->mac);
	c->mac = NULL;
	c->key = NULL;
	ff1_key_free(c->ff1);
	c->ff1 = NULL;
	c->ff1_for = NULL;
}

int action_keyed(const struct policy_action *a)
{
	return a && (a->type == POLICY_ACTION_HASH || a->type == POLICY_ACTION_TOKENIZE ||
		     a->type == POLICY_ACTION_DETOKENIZE);
}

int action_apply_ctx(const struct policy_action *a, struct action_ctx *c, int entity,
		     const char *val, size_t len, struct mm_buf *out)
{
	if (!a || !out || (!val && len))
		return -EINVAL;
	switch (a->type) {
	case POLICY_ACTION_MASK:
		return do_mask(a, val, len, out);
	case POLICY_ACTION_REPLACE:
		return do_replace(a, entity, out);
	case POLICY_ACTION_REDACT:
		return 0;
	case POLICY_ACTION_HASH:
		return do_hash(a, c, val, len, out);
	case POLICY_ACTION_TOKENIZE:
	case POLICY_ACTION_DETOKENIZE:
		return do_token(a, c, val, len, out);
	}
	return -EINVAL;
}

int action_length_preserving(const struct policy_action *a)
{
	size_t mlen;
	if (!a || a->type != POLICY_ACTION_MASK)
		return 0;
	mask_char(a, &mlen);
	return mlen == 1;
}
