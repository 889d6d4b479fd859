/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Actions applied to one value. mask is format-preserving: a "maskable" unit is an ASCII letter
 * or digit or one non-ASCII UTF-8 code point (an invalid byte counts as one unit, so the output
 * is never left with half a character); everything else (separators, punctuation, spaces) is
 * copied. Detected entities are ASCII, so masking them with a one-byte char keeps their length.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "action.h"
#include "detect.h"

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
	size_t l = strnlen(a->mask_char, sizeof(a->mask_char));
	if (l == 0 || l == sizeof(a->mask_char)) {
		*len = 1;
		return "*";
	}
	*len = l;
	return a->mask_char;
}

static int do_mask(const struct policy_action *a, const char *val, size_t len, struct mm_buf *out)
{
	const unsigned char *s = (const unsigned char *)val;
	size_t mlen, units = 0;
	const char *mc = mask_char(a, &mlen);

	if (len == 0)
		return 0;
	for (size_t i = 0; i < len; i += utf8_unit(s, len, i))
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
		size_t l = utf8_unit(s, len, i);
		if (maskable(s, i)) {
			bool keep = u < kf || u >= units - kl;
			u++;
			if (!keep) {
				memcpy(o, mc, mlen);
				o += mlen;
				i += l;
				continue;
			}
		}
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
	const char *name = entity >= 0 ? detect_entity_name((enum mm_entity)entity) : NULL;
	if (!name)
		return mm_buf_puts(out, "<MASKED>");
	int r = mm_buf_putc(out, '<');
	if (!r)
		r = mm_buf_puts(out, name);
	if (!r)
		r = mm_buf_putc(out, '>');
	return r;
}

static int do_hash(const struct policy_action *a, const char *val, size_t len, struct mm_buf *out)
{
	static const unsigned char empty[1];
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char txt[HASH_LEN_MAX];
	size_t hl = a->hash_len ? a->hash_len : HASH_LEN_DEFAULT;

	if (hl > HASH_LEN_MAX)
		hl = HASH_LEN_MAX;
	if (a->hash_key_len > INT_MAX)
		return -EINVAL;
	/* OpenSSL rejects a NULL key even with length 0. */
	const void *key = a->hash_key && a->hash_key_len ? a->hash_key : empty;
	if (!HMAC(EVP_sha256(), key, (int)a->hash_key_len, len ? (const unsigned char *)val : empty,
		  len, md, &mdlen) ||
	    mdlen != 32)
		return -EIO;
	for (size_t i = 0; i < hl; i++)
		txt[i] = hex[(md[i / 2] >> (i & 1 ? 0 : 4)) & 0xf];
	OPENSSL_cleanse(md, sizeof(md));

	int r = 0;
	if (a->hash_prefix)
		r = mm_buf_puts(out, a->hash_prefix);
	if (!r)
		r = mm_buf_append(out, txt, hl);
	return r;
}

int action_apply(const struct policy_action *a, int entity, const char *val, size_t len,
		 struct mm_buf *out)
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
		return do_hash(a, val, len, out);
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
