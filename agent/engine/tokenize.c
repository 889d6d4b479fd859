/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Format-preserving tokens (see tokenize.h). A value is read once into the positions of the
 * units FF1 encrypts; each FF1 pass rewrites those positions of the output, and the output's
 * class decides whether to walk on. The class of a value and of its token are computed by the
 * same function from the text alone, which is what lets the detokenizing side, holding only the
 * token and the options, retrace the walk backwards.
 */
#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>

#include "detect.h"
#include "tokenize.h"

/*
 * Bound of one cycle walk. The rarest class a value keeps is a card number in an issuer range
 * with nothing kept in clear (a few per cent of the numbers); past this bound the value is
 * refused rather than spending unbounded time.
 */
#define TOK_WALK_MAX 4096

static const char alpha_mixed[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
static const char alpha_lower[] = "0123456789abcdefghijklmnopqrstuvwxyz";

unsigned tok_radix(enum tok_kind kind)
{
	return kind == TOK_DIGITS ? 10 : kind == TOK_MIXED ? 62 : 36;
}

static inline bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static inline bool is_upper(char c)
{
	return c >= 'A' && c <= 'Z';
}

static inline bool is_lower(char c)
{
	return c >= 'a' && c <= 'z';
}

static inline bool is_unit(char c)
{
	return is_digit(c) || is_upper(c) || is_lower(c);
}

static uint8_t numeral(enum tok_kind k, char c)
{
	if (is_digit(c))
		return (uint8_t)(c - '0');
	if (k == TOK_UPPER)
		return (uint8_t)(c - 'A' + 10);
	if (k == TOK_LOWER)
		return (uint8_t)(c - 'a' + 10);
	return (uint8_t)(is_upper(c) ? c - 'A' + 10 : c - 'a' + 36);
}

static char symbol(enum tok_kind k, uint8_t x)
{
	if (k == TOK_LOWER)
		return alpha_lower[x];
	return alpha_mixed[x]; /* digits and upper case are its prefix */
}

/* Whether `luhn` applies: a value that is not an e-mail address and whose units are digits. */
static bool luhn_applies(const struct tok_opts *o, const struct tok_shape *sh, const char *v,
			 size_t len)
{
	if (!o->luhn || sh->email || sh->kind != TOK_DIGITS)
		return false;
	for (size_t i = 0; i < len; i++)
		if (is_upper(v[i]) || is_lower(v[i]))
			return false;
	return true;
}

static bool luhn_ok(const char *v, size_t len)
{
	char d[FF1_MAX_LEN];
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (!is_digit(v[i]))
			continue;
		if (n == sizeof(d))
			return false;
		d[n++] = v[i];
	}
	return detect_luhn_ok(d, n);
}

/*
 * Where units are tokenized: [0, *end) of a printable ASCII value, *email set for an e-mail
 * address. 0, or -EDOM with *why.
 */
static int region_of(const char *v, size_t len, const struct tok_opts *o, bool *email, size_t *end,
		     const char **why)
{
	size_t at = 0, n_at = 0;

	*email = false;
	*end = len;
	if (!v || !len) {
		*why = "empty value";
		return -EDOM;
	}
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] >= 0x7f) {
			*why = "not printable ASCII";
			return -EDOM;
		}
		if (v[i] == '@') {
			n_at++;
			at = i;
		}
	}
	if (!n_at)
		return 0;
	if (n_at > 1 || at == 0 || at + 1 == len) {
		*why = "not an e-mail address";
		return -EDOM;
	}
	*email = true;
	if (o->keep_domain) {
		*end = at;
	} else {
		for (size_t i = len; i-- > at + 2;)
			if (v[i] == '.') {
				*end = i; /* the top-level domain stays */
				break;
			}
	}
	return 0;
}

int tok_shape_parse(const char *v, size_t len, const struct tok_opts *o, struct tok_shape *sh,
		    const char **why)
{
	const char *w = NULL;

	memset(sh, 0, sizeof(*sh));
	if (region_of(v, len, o, &sh->email, &sh->region_end, &w))
		goto bad;
	for (size_t i = 0; i < sh->region_end; i++)
		sh->units += is_unit(v[i]);
	if ((uint64_t)o->keep_first + o->keep_last >= sh->units) {
		w = "too short: nothing left to tokenize";
		goto bad;
	}
	sh->first = o->keep_first;
	sh->n = sh->units - o->keep_first - o->keep_last;

	bool upper = false, lower = false;
	for (size_t i = 0, u = 0; i < sh->region_end; i++) {
		if (!is_unit(v[i]))
			continue;
		if (u >= sh->first && u < sh->first + sh->n) {
			upper |= is_upper(v[i]);
			lower |= is_lower(v[i]);
		}
		u++;
	}
	sh->kind = upper && lower ? TOK_MIXED : upper ? TOK_UPPER : lower ? TOK_LOWER : TOK_DIGITS;
	sh->radix = tok_radix(sh->kind);
	if (sh->n > FF1_MAX_LEN) {
		w = "too long to tokenize";
		goto bad;
	}
	if (!ff1_domain_ok(sh->radix, sh->n)) {
		w = "too short to tokenize (FF1 needs radix^length >= 1,000,000)";
		goto bad;
	}
	if (luhn_applies(o, sh, v, len) && !luhn_ok(v, len)) {
		w = "not a Luhn-valid number";
		goto bad;
	}
	return 0;
bad:
	if (why)
		*why = w;
	return -EDOM;
}

/*
 * The class a token keeps (see tokenize.h): bit 0 the kind's letters, bit 15 Luhn validity (the
 * cheap part, computed first), bits 1.. the entity detected over the whole text (+1, 0 for
 * none). With `cheap`, the entity is left out.
 */
static unsigned value_class(const struct tok_opts *o, const struct tok_shape *sh,
			    const size_t *pos, const char *v, size_t len, bool cheap)
{
	unsigned cls = 0;
	if (sh->kind != TOK_DIGITS) {
		bool upper = false, lower = false;
		for (size_t i = 0; i < sh->n; i++) {
			upper |= is_upper(v[pos[i]]);
			lower |= is_lower(v[pos[i]]);
		}
		cls |= sh->kind == TOK_MIXED ? (upper && lower) : (upper || lower);
	}
	bool luhn = luhn_applies(o, sh, v, len);
	if (luhn && luhn_ok(v, len))
		cls |= 1u << 15;
	if (cheap)
		return cls;
	uint32_t ents = MM_ENT_BIT(MM_ENT_US_SSN) | MM_ENT_BIT(MM_ENT_PHONE_NUMBER) |
			MM_ENT_BIT(MM_ENT_EMAIL_ADDRESS);
	if (luhn)
		ents |= MM_ENT_BIT(MM_ENT_CREDIT_CARD);
	struct detect_match m;
	if (detect_scan(v, len, 0, ents, DETECT_FIELD_CONTEXT, &m, 1) == 1 && m.off == 0 &&
	    m.len == len)
		cls |= ((unsigned)m.entity + 1) << 1;
	return cls;
}

int tok_mask(const struct tok_opts *o, const char *v, size_t len, char *out)
{
	bool email;
	size_t end, units = 0, u = 0;
	const char *why;
	int e = region_of(v, len, o, &email, &end, &why);

	if (e && len && v && strcmp(why, "not an e-mail address") == 0)
		end = len, e = 0; /* not an address: every unit is hidden */
	if (e)
		return e;
	for (size_t i = 0; i < end; i++)
		units += is_unit(v[i]);
	uint64_t kf = o->keep_first, kl = o->keep_last;
	if (kf + kl >= units)
		kf = kl = 0;
	for (size_t i = 0; i < len; i++) {
		bool hide = i < end && is_unit(v[i]) && u >= kf && u < units - kl;
		u += i < end && is_unit(v[i]);
		out[i] = hide ? '*' : v[i];
	}
	return 0;
}

int tok_transform(struct ff1_key *k, const struct tok_opts *o, bool detok, const char *v,
		  size_t len, char *out)
{
	struct tok_shape sh;
	size_t pos[FF1_MAX_LEN];
	uint8_t x[FF1_MAX_LEN];
	int e;

	if (!k || !o || !v || !out || out == v || o->tweak_len > FF1_MAX_TWEAK ||
	    (o->tweak_len && !o->tweak))
		return -EINVAL;
	if ((e = tok_shape_parse(v, len, o, &sh, NULL))) {
		memset(out, '*', len);
		return e;
	}
	for (size_t i = 0, u = 0, j = 0; i < sh.region_end && j < sh.n; i++) {
		if (!is_unit(v[i]))
			continue;
		if (u >= sh.first)
			pos[j++] = i;
		u++;
	}
	unsigned target = value_class(o, &sh, pos, v, len, false);
	unsigned cheap_target = value_class(o, &sh, pos, v, len, true);
	for (size_t j = 0; j < sh.n; j++)
		x[j] = numeral(sh.kind, v[pos[j]]);
	memcpy(out, v, len);
	e = -EDOM;
	for (int walk = 0; walk < TOK_WALK_MAX; walk++) {
		int r = detok ? ff1_decrypt(k, sh.radix, o->tweak, o->tweak_len, x, sh.n, x)
			      : ff1_encrypt(k, sh.radix, o->tweak, o->tweak_len, x, sh.n, x);
		if (r) {
			e = r;
			break;
		}
		for (size_t j = 0; j < sh.n; j++)
			out[pos[j]] = symbol(sh.kind, x[j]);
		if (value_class(o, &sh, pos, out, len, true) == cheap_target &&
		    value_class(o, &sh, pos, out, len, false) == target) {
			e = 0;
			break;
		}
	}
	OPENSSL_cleanse(x, sizeof(x));
	if (e)
		memset(out, '*', len); /* never half a token */
	return e;
}
