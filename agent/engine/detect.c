/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Entity detectors. One pass over the text, byte classes from a table, no allocation.
 *
 * Every entity starts at a "token start": a byte of the e-mail local-part class
 * [A-Za-z0-9._%+-] whose predecessor is not of that class (or '(' / ':' for phones and IPv6).
 * Inside a token nothing can start, and most token starts cannot begin any entity either, so a
 * filter (16 bytes at a time with SSE2, short texts assembled in a register) flags only token
 * starts with a promising first byte and the bytes '@', ':' and '(', and of those only the kinds
 * the requested entities can start from; everything else costs a few vector instructions per
 * 16 bytes.
 * Each detector reads at most DETECT_MAX_MATCH_LEN bytes past its start and the one byte before
 * it, so a streaming caller that keeps that window sees the same matches.
 *
 * Word boundaries: the byte before a match is never [A-Za-z0-9._%+-] (so nothing starts inside
 * a longer digit run, a UUID, a version string "v1.2.3.4" or after "1." / "1-"); the byte after
 * a numeric match is not alphanumeric or '_' and not '-' or '.' followed by a digit ("1.2.3.4.5",
 * "…-426614174000"). A space is always a boundary.
 */
#include <errno.h>
#include <string.h>

#include "detect.h"

enum {
	C_DIGIT = 1 << 0,
	C_UPPER = 1 << 1,
	C_LOWER = 1 << 2,
	C_HEX = 1 << 3,
	C_LOCAL = 1 << 4, /* e-mail local part: [A-Za-z0-9._%+-] */
	C_B64 = 1 << 5, /* base64url: [A-Za-z0-9_-] */
	C_WORD = 1 << 6, /* [A-Za-z0-9_] */
};

#define C_ALNUM_ (C_LOCAL | C_B64 | C_WORD)

static const unsigned char cls[256] = {
	['0' ... '9'] = C_DIGIT | C_HEX | C_ALNUM_,
	['A' ... 'F'] = C_UPPER | C_HEX | C_ALNUM_,
	['G' ... 'Z'] = C_UPPER | C_ALNUM_,
	['a' ... 'f'] = C_LOWER | C_HEX | C_ALNUM_,
	['g' ... 'z'] = C_LOWER | C_ALNUM_,
	['_'] = C_LOCAL | C_B64 | C_WORD,
	['-'] = C_LOCAL | C_B64,
	['.'] = C_LOCAL,
	['%'] = C_LOCAL,
	['+'] = C_LOCAL,
};

#define IS(c, m) (cls[(unsigned char)(c)] & (m))

struct scan {
	const char *s;
	size_t n;
	uint32_t ents;
	unsigned flags;
	size_t cursor; /* nothing is reported before this offset */
	size_t last_eval; /* last token start evaluated, +1 (0: none) */
	struct detect_match *out;
	size_t max, found;
};

/* Numeric entities end before a non-word byte that does not continue the number. */
static bool end_ok_num(const char *s, size_t n, size_t e)
{
	if (e >= n)
		return true;
	char c = s[e];
	if (IS(c, C_WORD))
		return false;
	if ((c == '-' || c == '.') && e + 1 < n && IS(s[e + 1], C_DIGIT))
		return false;
	return true;
}

/* Alphanumeric entities (IBAN, AWS key) end before a non-word byte that does not continue it. */
static bool end_ok_word(const char *s, size_t n, size_t e)
{
	if (e >= n)
		return true;
	char c = s[e];
	if (IS(c, C_WORD))
		return false;
	if ((c == '-' || c == '.') && e + 1 < n && IS(s[e + 1], C_WORD))
		return false;
	return true;
}

/* Number of consecutive digits at s[i], reading at most `max` of them. */
static size_t digits_at(const char *s, size_t n, size_t i, size_t max)
{
	size_t k = 0;
	while (i + k < n && k < max && IS(s[i + k], C_DIGIT))
		k++;
	return k;
}

static unsigned num(const char *s, size_t k)
{
	unsigned v = 0;
	for (size_t i = 0; i < k; i++)
		v = v * 10 + (unsigned)(s[i] - '0');
	return v;
}

#ifdef __SSE2__
#include <emmintrin.h>

/* Bit k: p[k] is not in [lo, hi] (16 bytes). */
static inline unsigned outside16(const char *p, char lo, char hi)
{
	__m128i v = _mm_loadu_si128((const __m128i *)p);
	__m128i in = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8((char)(lo - 1))),
				   _mm_cmplt_epi8(v, _mm_set1_epi8((char)(hi + 1))));
	return ~(unsigned)_mm_movemask_epi8(in) & 0xffff;
}

/* Bit k: p[k] is not one of [A-Za-z0-9._%+-] (16 bytes). */
static inline unsigned nonlocal16(const char *p)
{
	__m128i v = _mm_loadu_si128((const __m128i *)p);
	__m128i l = _mm_or_si128(v, _mm_set1_epi8(0x20));
	__m128i in = _mm_or_si128(
		_mm_or_si128(_mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('0' - 1)),
					   _mm_cmplt_epi8(v, _mm_set1_epi8('9' + 1))),
			     _mm_and_si128(_mm_cmpgt_epi8(l, _mm_set1_epi8('a' - 1)),
					   _mm_cmplt_epi8(l, _mm_set1_epi8('z' + 1)))),
		_mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('.')),
					  _mm_cmpeq_epi8(v, _mm_set1_epi8('_'))),
			     _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('%')),
						       _mm_cmpeq_epi8(v, _mm_set1_epi8('+'))),
					  _mm_cmpeq_epi8(v, _mm_set1_epi8('-')))));
	return ~(unsigned)_mm_movemask_epi8(in) & 0xffff;
}
#endif

/* digits_at() for the long reads of a token start: sixteen bytes at a time. */
static size_t digit_run(const char *s, size_t n, size_t i, size_t max)
{
	size_t k = 0;
#ifdef __SSE2__
	while (k < max && i + k + 16 <= n) {
		unsigned m = outside16(s + i + k, '0', '9');
		if (m) {
			k += (size_t)__builtin_ctz(m);
			return k < max ? k : max;
		}
		k += 16;
	}
	if (k >= max)
		return max;
#endif
	return k + digits_at(s, n, i + k, max - k);
}

/* ---- US_SSN ---------------------------------------------------------------------------- */

static bool ssn_parts_ok(unsigned area, unsigned group, unsigned serial)
{
	if (area == 0 || area == 666 || area >= 900 || group == 0 || serial == 0)
		return false;
	/* Numbers published in advertising or by the SSA as examples. */
	if ((area == 78 && group == 5 && serial == 1120) ||
	    (area == 219 && group == 9 && serial == 9999) ||
	    (area == 123 && group == 45 && serial == 6789))
		return false;
	return true;
}

bool detect_ssn_ok(const char *s, size_t n)
{
	if (!s)
		return false;
	if (n == 9) {
		if (digits_at(s, n, 0, 9) != 9)
			return false;
		return ssn_parts_ok(num(s, 3), num(s + 3, 2), num(s + 5, 4));
	}
	if (n != 11 || (s[3] != '-' && s[3] != ' ') || s[6] != s[3])
		return false;
	if (digits_at(s, n, 0, 3) != 3 || digits_at(s, n, 4, 2) != 2 || digits_at(s, n, 7, 4) != 4)
		return false;
	return ssn_parts_ok(num(s, 3), num(s + 4, 2), num(s + 7, 4));
}

/* "AAA-GG-SSSS" / "AAA GG SSSS" at p (whose first digit run is 3 long). */
static size_t ssn_at(const struct scan *sc, size_t p)
{
	const char *s = sc->s;
	if (p + 11 > sc->n || !detect_ssn_ok(s + p, 11) || !end_ok_num(s, sc->n, p + 11))
		return 0;
	return 11;
}

/* ---- CREDIT_CARD ----------------------------------------------------------------------- */

bool detect_luhn_ok(const char *digits, size_t n)
{
	unsigned sum = 0;
	if (!digits || n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)digits[n - 1 - i];
		if (c < '0' || c > '9')
			return false;
		unsigned d = c - '0';
		if (i & 1) {
			d *= 2;
			if (d > 9)
				d -= 9;
		}
		sum += d;
	}
	return sum % 10 == 0;
}

/* Issuer ranges on the leading digits, with the lengths the network issues (bit n = n digits). */
struct card_range {
	unsigned lo, hi; /* inclusive, on the first `digits` digits */
	unsigned char digits;
	uint32_t lengths;
};

#define LEN_(n) (1u << (n))
#define LENS_(a, b) (((1u << ((b) + 1)) - 1) & ~((1u << (a)) - 1))

static const struct card_range card_ranges[] = {
	{4, 4, 1, LEN_(13) | LEN_(16) | LEN_(19)}, /* Visa */
	{51, 55, 2, LEN_(16)}, /* Mastercard */
	{2221, 2720, 4, LEN_(16)}, /* Mastercard 2-series */
	{34, 34, 2, LEN_(15)}, /* American Express */
	{37, 37, 2, LEN_(15)}, /* American Express */
	{6011, 6011, 4, LENS_(16, 19)}, /* Discover */
	{644, 649, 3, LENS_(16, 19)}, /* Discover */
	{65, 65, 2, LENS_(16, 19)}, /* Discover */
	{300, 305, 3, LENS_(14, 19)}, /* Diners Club */
	{36, 36, 2, LENS_(14, 19)}, /* Diners Club */
	{38, 38, 2, LENS_(14, 19)}, /* Diners Club */
	{3528, 3589, 4, LENS_(16, 19)}, /* JCB */
	{62, 62, 2, LENS_(16, 19)}, /* UnionPay */
};

static bool card_ok(const char *d, size_t n)
{
	if (n < 13 || n > 19)
		return false;
	bool issuer = false;
	for (size_t i = 0; i < sizeof(card_ranges) / sizeof(card_ranges[0]); i++) {
		const struct card_range *r = &card_ranges[i];
		unsigned v = num(d, r->digits);
		if (v >= r->lo && v <= r->hi && (r->lengths & LEN_(n))) {
			issuer = true;
			break;
		}
	}
	return issuer && detect_luhn_ok(d, n);
}

/*
 * 13-19 digits in one run, or a first group of 4 followed by groups of 3-6 digits with one
 * consistent separator (space or dash). The longest grouping that validates wins.
 */
static size_t card_at(const struct scan *sc, size_t p, size_t run)
{
	const char *s = sc->s;
	size_t n = sc->n;
	if (run >= 13 && run <= 19)
		return end_ok_num(s, n, p + run) && card_ok(s + p, run) ? run : 0;
	if (run != 4 || p + 4 >= n || (s[p + 4] != ' ' && s[p + 4] != '-'))
		return 0;

	char d[19], sep = s[p + 4];
	size_t nd = 4, i = p + 4, ends[8], counts[8], ne = 0;
	memcpy(d, s + p, 4);
	while (ne < 8 && i + 1 < n && s[i] == sep) {
		size_t g = digits_at(s, n, i + 1, 7);
		if (g < 3 || g > 6 || nd + g > 19)
			break;
		memcpy(d + nd, s + i + 1, g);
		nd += g;
		i += 1 + g;
		ends[ne] = i;
		counts[ne++] = nd;
	}
	while (ne-- > 0)
		if (counts[ne] >= 13 && end_ok_num(s, n, ends[ne]) && card_ok(d, counts[ne]))
			return ends[ne] - p;
	return 0;
}

/* ---- PHONE_NUMBER ---------------------------------------------------------------------- */

static bool is_sep(char c)
{
	return c == '-' || c == '.' || c == ' ';
}

/* Three digits at s[i], the first 2-9 (an NANP area code or exchange). */
static bool nxx_at(const char *s, size_t n, size_t i)
{
	return digits_at(s, n, i, 3) == 3 && s[i] >= '2';
}

/*
 * NANP: [+1<sep>|1<sep>] then "(NXX) NXX-XXXX" (space after ')' optional, '-', '.' or ' '
 * before the line number) or "NXX-NXX-XXXX" with one consistent separator from "-. ".
 */
static size_t nanp_at(const struct scan *sc, size_t p)
{
	const char *s = sc->s;
	size_t n = sc->n, i = p;

	if (s[i] == '+') {
		if (i + 3 > n || s[i + 1] != '1' || !is_sep(s[i + 2]))
			return 0;
		i += 3;
	} else if (s[i] == '1' && i + 2 <= n && is_sep(s[i + 1])) {
		i += 2;
	}
	if (i + 12 > n)
		return 0;
	if (s[i] == '(') {
		if (!nxx_at(s, n, i + 1) || s[i + 4] != ')')
			return 0;
		i += 5;
		if (i < n && s[i] == ' ')
			i++;
		if (i + 8 > n || !nxx_at(s, n, i) || !is_sep(s[i + 3]) ||
		    digits_at(s, n, i + 4, 4) != 4)
			return 0;
		i += 8;
	} else {
		char sep = s[i + 3];
		if (!nxx_at(s, n, i) || !is_sep(sep) || !nxx_at(s, n, i + 4) || s[i + 7] != sep ||
		    digits_at(s, n, i + 8, 4) != 4)
			return 0;
		i += 12;
	}
	return end_ok_num(s, n, i) ? i - p : 0;
}

/* E.164: '+', 8-15 digits (first 1-9), optionally in groups split by single spaces or dashes. */
static size_t e164_at(const struct scan *sc, size_t p)
{
	const char *s = sc->s;
	size_t n = sc->n, i = p + 1, nd = 0, best = 0;

	if (i >= n || s[i] < '1' || s[i] > '9')
		return 0;
	for (;;) {
		size_t g = digits_at(s, n, i, 16);
		nd += g;
		if (nd > 15)
			break;
		i += g;
		if (nd >= 8 && end_ok_num(s, n, i))
			best = i - p;
		if (i + 1 < n && (s[i] == ' ' || s[i] == '-') && IS(s[i + 1], C_DIGIT))
			i++;
		else
			break;
	}
	return best;
}

/* ---- IBAN_CODE ------------------------------------------------------------------------- */

/* IBAN length per country (SWIFT IBAN registry). */
static const struct {
	char cc[3];
	unsigned char len;
} iban_countries[] = {
	{"AD", 24}, {"AE", 23}, {"AL", 28}, {"AT", 20}, {"AZ", 28}, {"BA", 20}, {"BE", 16},
	{"BG", 22}, {"BH", 22}, {"BR", 29}, {"BY", 28}, {"CH", 21}, {"CR", 22}, {"CY", 28},
	{"CZ", 24}, {"DE", 22}, {"DK", 18}, {"DO", 28}, {"EE", 20}, {"EG", 29}, {"ES", 24},
	{"FI", 18}, {"FO", 18}, {"FR", 27}, {"GB", 22}, {"GE", 22}, {"GI", 23}, {"GL", 18},
	{"GR", 27}, {"GT", 28}, {"HR", 21}, {"HU", 28}, {"IE", 22}, {"IL", 23}, {"IQ", 23},
	{"IS", 26}, {"IT", 27}, {"JO", 30}, {"KW", 30}, {"KZ", 20}, {"LB", 28}, {"LC", 32},
	{"LI", 21}, {"LT", 20}, {"LU", 20}, {"LV", 21}, {"MC", 27}, {"MD", 24}, {"ME", 22},
	{"MK", 19}, {"MR", 27}, {"MT", 31}, {"MU", 30}, {"NL", 18}, {"NO", 15}, {"PK", 24},
	{"PL", 28}, {"PS", 29}, {"PT", 25}, {"QA", 29}, {"RO", 24}, {"RS", 22}, {"SA", 24},
	{"SC", 31}, {"SE", 24}, {"SI", 19}, {"SK", 24}, {"SM", 27}, {"ST", 25}, {"SV", 28},
	{"TL", 23}, {"TN", 24}, {"TR", 26}, {"UA", 29}, {"VA", 22}, {"VG", 24}, {"XK", 20},
};

#define IBAN_MAX 34

static size_t iban_len(char a, char b)
{
	for (size_t i = 0; i < sizeof(iban_countries) / sizeof(iban_countries[0]); i++)
		if (iban_countries[i].cc[0] == a && iban_countries[i].cc[1] == b)
			return iban_countries[i].len;
	return 0;
}

/* mod-97 of the IBAN with its first four characters moved to the end (ISO 13616). */
static bool iban_mod97(const char *c, size_t n)
{
	unsigned r = 0;
	for (size_t k = 0; k < n; k++) {
		char ch = c[(k + 4) % n];
		if (IS(ch, C_DIGIT))
			r = (r * 10 + (unsigned)(ch - '0')) % 97;
		else
			r = (r * 100 + (unsigned)(ch - 'A' + 10)) % 97;
	}
	return r == 1;
}

/*
 * Collect the IBAN at s[p]: plain, or in groups of four split by single spaces. Returns the
 * bytes used (0 if it is not shaped like an IBAN of its country) and the characters in `c`.
 */
static size_t iban_collect(const char *s, size_t n, size_t p, char *c, size_t *nc)
{
	if (p + 4 > n || !IS(s[p], C_UPPER) || !IS(s[p + 1], C_UPPER) || !IS(s[p + 2], C_DIGIT) ||
	    !IS(s[p + 3], C_DIGIT))
		return 0;
	size_t want = iban_len(s[p], s[p + 1]), i = p, k = 0;
	if (!want)
		return 0;
	bool grouped = p + 4 < n && s[p + 4] == ' ';
	while (k < want) {
		if (grouped && k > 0 && k % 4 == 0) {
			if (i >= n || s[i] != ' ')
				return 0;
			i++;
		}
		if (i >= n || !IS(s[i], C_UPPER | C_DIGIT))
			return 0;
		c[k++] = s[i++];
	}
	*nc = k;
	return i - p;
}

bool detect_iban_ok(const char *s, size_t n)
{
	char c[IBAN_MAX];
	size_t k = 0;
	if (!s)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == ' ')
			continue;
		if (k == IBAN_MAX || !IS(s[i], C_UPPER | C_DIGIT))
			return false;
		c[k++] = s[i];
	}
	if (k < 5 || !IS(c[0], C_UPPER) || !IS(c[1], C_UPPER) || !IS(c[2], C_DIGIT) ||
	    !IS(c[3], C_DIGIT) || iban_len(c[0], c[1]) != k)
		return false;
	return iban_mod97(c, k);
}

static size_t iban_at(const struct scan *sc, size_t p)
{
	char c[IBAN_MAX];
	size_t nc = 0, l = iban_collect(sc->s, sc->n, p, c, &nc);
	if (!l || !end_ok_word(sc->s, sc->n, p + l) || !iban_mod97(c, nc))
		return 0;
	return l;
}

/* ---- IP_ADDRESS ------------------------------------------------------------------------ */

/* A dotted quad at s[p] (0-255, no leading zeros); length or 0. No boundary check. */
static size_t ipv4_len(const char *s, size_t n, size_t p)
{
	size_t i = p;
	for (int k = 0; k < 4; k++) {
		if (k) {
			if (i >= n || s[i] != '.')
				return 0;
			i++;
		}
		size_t d = digits_at(s, n, i, 4);
		if (d == 0 || d > 3 || (d > 1 && s[i] == '0') || num(s + i, d) > 255)
			return 0;
		i += d;
	}
	return i - p;
}

static size_t ipv4_at(const struct scan *sc, size_t p)
{
	size_t l = ipv4_len(sc->s, sc->n, p);
	/* "1.2.3.4-rc1", "10.0.0.1.nip.io": part of a longer name */
	return l && end_ok_word(sc->s, sc->n, p + l) ? l : 0;
}

static size_t hex_run(const char *s, size_t n, size_t i, size_t max)
{
	size_t k = 0;
	while (i + k < n && k < max && IS(s[i + k], C_HEX))
		k++;
	return k;
}

/*
 * IPv6 (RFC 4291 section 2.2): eight groups of 1-4 hex digits, or fewer with exactly one "::",
 * optionally ending in a dotted quad that stands for two groups. A string is reported only if
 * it is a complete address of that form, so it has 8 groups or a "::": "12:30:45", MAC
 * addresses and "a:b" never match, and neither does a bare "::". The byte before is not ':'
 * and the byte after is not ':', a word byte or ".digit".
 */
static size_t ipv6_at(const struct scan *sc, size_t p)
{
	const char *s = sc->s;
	size_t n = sc->n, i = p;
	int groups = 0;
	bool dcolon = false;

	if (p > 0 && s[p - 1] == ':')
		return 0;
	if (s[i] == ':') {
		if (i + 1 >= n || s[i + 1] != ':')
			return 0;
		dcolon = true;
		i += 2;
	}
	for (;;) {
		size_t h = hex_run(s, n, i, 5);
		if (h == 0) {
			/* only right after "::" (e.g. "fe80::"); a lone trailing ':' is not ours */
			if (!dcolon || i < p + 2 || s[i - 1] != ':' || s[i - 2] != ':')
				return 0;
			if (groups == 0)
				return 0;
			break;
		}
		if (i + h < n && s[i + h] == '.') {
			size_t l = ipv4_len(s, n, i);
			if (!l || groups > 6)
				return 0;
			groups += 2;
			i += l;
			break;
		}
		if (h > 4)
			return 0;
		groups++;
		i += h;
		if (groups == 8 || i >= n || s[i] != ':')
			break;
		if (i + 1 < n && s[i + 1] == ':') {
			if (dcolon)
				return 0;
			dcolon = true;
			i += 2;
			continue;
		}
		if (i + 1 < n && IS(s[i + 1], C_HEX)) {
			i++;
			continue;
		}
		return 0; /* "1:2:" followed by something else */
	}
	if (dcolon ? groups > 7 : groups != 8)
		return 0;
	if (i < n) {
		char c = s[i];
		if (IS(c, C_WORD) || c == ':' || (c == '.' && i + 1 < n && IS(s[i + 1], C_DIGIT)))
			return 0;
	}
	return i - p;
}

/* ---- JWT, AWS_ACCESS_KEY_ID, EMAIL_ADDRESS --------------------------------------------- */

static size_t b64_run(const char *s, size_t lim, size_t i)
{
	while (i < lim && IS(s[i], C_B64))
		i++;
	return i;
}

/* eyJ<b64url>.eyJ<b64url>.<b64url>: header and payload are JSON objects; signature may be empty. */
static size_t jwt_at(const struct scan *sc, size_t p)
{
	const char *s = sc->s;
	size_t n = sc->n;
	/* one byte short of the maximum so that the ".x" look-ahead stays in the window */
	size_t lim = n < p + DETECT_MAX_MATCH_LEN - 1 ? n : p + DETECT_MAX_MATCH_LEN - 1;
	size_t i = b64_run(s, lim, p + 3);

	if (i >= lim || s[i] != '.' || i + 4 > lim || memcmp(s + i + 1, "eyJ", 3) != 0)
		return 0;
	i = b64_run(s, lim, i + 4);
	if (i >= lim || s[i] != '.')
		return 0;
	i = b64_run(s, lim, i + 1);
	if (i < n && (IS(s[i], C_B64) || (s[i] == '.' && i + 1 < n && IS(s[i + 1], C_B64))))
		return 0;
	return i - p;
}

static size_t aws_at(const struct scan *sc, size_t p)
{
	const char *s = sc->s;
	if (p + 20 > sc->n)
		return 0;
	if (memcmp(s + p, "AKIA", 4) != 0 && memcmp(s + p, "ASIA", 4) != 0 &&
	    memcmp(s + p, "ABIA", 4) != 0 && memcmp(s + p, "ACCA", 4) != 0)
		return 0;
	for (size_t i = p + 4; i < p + 20; i++)
		if (!IS(s[i], C_UPPER) && (s[i] < '2' || s[i] > '7'))
			return 0;
	return end_ok_word(s, sc->n, p + 20) ? 20 : 0;
}

#define EMAIL_LOCAL_MAX 64
#define EMAIL_MAX 254

/* s[p, at) is a run of local-part bytes and s[at] == '@'. */
static size_t email_at(const struct scan *sc, size_t p, size_t at)
{
	const char *s = sc->s;
	size_t n = sc->n;
	size_t lim = n < p + EMAIL_MAX ? n : p + EMAIL_MAX;

	if (at == p || at - p > EMAIL_LOCAL_MAX || s[p] == '.' || s[at - 1] == '.')
		return 0;
	for (size_t i = p; i + 1 < at; i++)
		if (s[i] == '.' && s[i + 1] == '.')
			return 0;

	size_t i = at + 1, labels = 0, last = 0;
	for (;;) {
		size_t b = i;
		while (i < lim && i - b < 64 &&
		       (IS(s[i], C_UPPER | C_LOWER | C_DIGIT) || s[i] == '-'))
			i++;
		if (i == b || i - b > 63 || s[b] == '-' || s[i - 1] == '-')
			return 0;
		labels++;
		last = b;
		if (i + 1 < lim && s[i] == '.' && IS(s[i + 1], C_UPPER | C_LOWER | C_DIGIT))
			i++;
		else
			break;
	}
	if (labels < 2 || i - last < 2)
		return 0;
	/* the TLD is letters, or an internationalised one in punycode ("xn--p1ai") */
	bool idn = i - last > 4 && memcmp(s + last, "xn--", 4) == 0;
	for (size_t k = last; k < i && !idn; k++)
		if (!IS(s[k], C_UPPER | C_LOWER))
			return 0;
	if (i < n && (IS(s[i], C_WORD) || s[i] == '-' || s[i] == '@'))
		return 0;
	return i - p;
}

/* ---- the scanner ----------------------------------------------------------------------- */

static size_t skip_local(const char *s, size_t n, size_t i)
{
#ifdef __SSE2__
	while (i + 16 <= n) {
		unsigned m = nonlocal16(s + i);
		if (m)
			return i + (size_t)__builtin_ctz(m);
		i += 16;
	}
#endif
	while (i < n && IS(s[i], C_LOCAL))
		i++;
	return i;
}

#define TRY_(ent, expr)                                    \
	do {                                               \
		if (sc->ents & MM_ENT_BIT(MM_ENT_##ent)) { \
			size_t l_ = (expr);                \
			if (l_ > m->len) {                 \
				m->len = l_;               \
				m->entity = MM_ENT_##ent;  \
			}                                  \
		}                                          \
	} while (0)

/* Detectors for the token s[p, q) (maximal run of local-part bytes, s[p-1] not one of them). */
static bool match_token(const struct scan *sc, size_t p, size_t q, size_t run,
			struct detect_match *m)
{
	const char *s = sc->s;
	size_t n = sc->n;
	char c = s[p];

	m->off = p;
	m->len = 0;
	if (IS(c, C_DIGIT)) {
		char next = p + run < n ? s[p + run] : 0;
		if (run == 3 && (next == '-' || next == ' '))
			TRY_(US_SSN, ssn_at(sc, p));
		else if (run == 9 && p == 0 && n == 9 && (sc->flags & DETECT_FIELD_CONTEXT))
			TRY_(US_SSN, detect_ssn_ok(s, 9) ? 9 : 0);
		if (run == 4 || (run >= 13 && run <= 19))
			TRY_(CREDIT_CARD, card_at(sc, p, run));
		if ((run == 3 || (run == 1 && c == '1')) && is_sep(next))
			TRY_(PHONE_NUMBER, nanp_at(sc, p));
		if (run <= 3 && next == '.')
			TRY_(IP_ADDRESS, ipv4_at(sc, p));
	} else if (c == '+') {
		TRY_(PHONE_NUMBER, nanp_at(sc, p));
		TRY_(PHONE_NUMBER, e164_at(sc, p));
	} else if (IS(c, C_UPPER)) {
		if (p + 4 <= n && IS(s[p + 1], C_UPPER) && IS(s[p + 2], C_DIGIT))
			TRY_(IBAN_CODE, iban_at(sc, p));
		if (c == 'A' && q - p >= 20)
			TRY_(AWS_ACCESS_KEY_ID, aws_at(sc, p));
	} else if (c == 'e' && p + 3 <= n && s[p + 1] == 'y' && s[p + 2] == 'J') {
		TRY_(JWT, jwt_at(sc, p));
	}
	/* an IPv6 address's first group ends the token: it is followed by ':' */
	if (q - p <= 4 && q < n && s[q] == ':' && hex_run(s, n, p, 4) == q - p)
		TRY_(IP_ADDRESS, ipv6_at(sc, p));
	if (q < n && s[q] == '@')
		TRY_(EMAIL_ADDRESS, email_at(sc, p, q));
	return m->len > 0;
}

static bool emit(struct scan *sc, const struct detect_match *m)
{
	sc->out[sc->found++] = *m;
	sc->cursor = m->off + m->len;
	return true;
}

/*
 * Whether a run of `run` digits at p (capped at 20) followed by `next` has the shape that a
 * requested numeric entity starts with: the same conditions as match_token()'s.
 */
static bool digit_lead_ok(const struct scan *sc, size_t p, size_t run, char next)
{
	uint32_t e = sc->ents;
	if ((e & MM_ENT_BIT(MM_ENT_US_SSN)) &&
	    ((run == 3 && (next == '-' || next == ' ')) ||
	     (run == 9 && p == 0 && sc->n == 9 && (sc->flags & DETECT_FIELD_CONTEXT))))
		return true;
	if ((e & MM_ENT_BIT(MM_ENT_CREDIT_CARD)) && (run == 4 || (run >= 13 && run <= 19)))
		return true;
	if ((e & MM_ENT_BIT(MM_ENT_PHONE_NUMBER)) && (run == 3 || (run == 1 && sc->s[p] == '1')) &&
	    is_sep(next))
		return true;
	return (e & MM_ENT_BIT(MM_ENT_IP_ADDRESS)) && run <= 3 && next == '.';
}

/*
 * Run the detectors at token start p once; true if a match was reported. A digit-led token
 * whose digits have no requested shape is rejected before any other work, unless `trigger`
 * (called from its '@' or ':'): what else could start there (an e-mail address, an IPv6
 * address) is evaluated from that byte, which is always a candidate when those are asked for.
 */
static bool eval_token(struct scan *sc, size_t p, bool trigger)
{
	struct detect_match m;
	size_t run = 0;
	if (p < sc->cursor || p < sc->last_eval)
		return false;
	if (IS(sc->s[p], C_DIGIT)) {
		run = digit_run(sc->s, sc->n, p, 20);
		if (!trigger && !(sc->flags & DETECT_EVERY_CANDIDATE) &&
		    !digit_lead_ok(sc, p, run, p + run < sc->n ? sc->s[p + run] : 0))
			return false;
	}
	sc->last_eval = p + 1;
	/*
	 * The token end matters only if it is within 64 bytes (e-mail '@', IPv6 ':'); a longer
	 * token is cut there, which keeps a long run from being walked at every start.
	 */
	size_t lim = sc->n - p > EMAIL_LOCAL_MAX + 1 ? p + EMAIL_LOCAL_MAX + 1 : sc->n;
	return match_token(sc, p, skip_local(sc->s, lim, p + 1), run, &m) && emit(sc, &m);
}

/* Detectors that start on a byte outside the token class: "(NXX) …" and "::…". */
static bool eval_punct(struct scan *sc, size_t p)
{
	const char *s = sc->s;
	struct detect_match mm, *m = &mm;

	if (p > 0 && IS(s[p - 1], C_LOCAL))
		return false;
	m->off = p;
	m->len = 0;
	if (s[p] == '(')
		TRY_(PHONE_NUMBER, nanp_at(sc, p));
	else if (s[p] == ':')
		TRY_(IP_ADDRESS, ipv6_at(sc, p));
	return m->len > 0 && emit(sc, m);
}

/*
 * Candidate positions: token starts whose first bytes can begin an entity (a digit, '+', two
 * capitals and a digit (IBAN), 'A' and a capital (AWS), "eyJ"), and the bytes '@', ':' and '('.
 * An e-mail address or an IPv6 address beginning with a letter is found from its '@' or first
 * ':' by walking back to the start of its token, which is always at or after the cursor.
 */
static bool on_candidate(struct scan *sc, size_t c)
{
	const char *s = sc->s;
	char ch = s[c];

	if (ch == '(')
		return c + 1 < sc->n && IS(s[c + 1], C_DIGIT) && eval_punct(sc, c);
	if (ch != '@' && ch != ':')
		return eval_token(sc, c, false);
	/* the common `"key":` case */
	if (c == 0 || !IS(s[c - 1], C_LOCAL))
		return ch == ':' && c + 1 < sc->n && s[c + 1] == ':' && eval_punct(sc, c);

	size_t lim = ch == '@' ? EMAIL_LOCAL_MAX : 4, p = c;
	while (p > sc->cursor && c - p <= lim && IS(s[p - 1], C_LOCAL))
		p--;
	if (p < c && c - p <= lim && (p == 0 || !IS(s[p - 1], C_LOCAL)) && eval_token(sc, p, true))
		return true;
	return ch == ':' && eval_punct(sc, c);
}

/*
 * Which kinds of candidate the entities asked for need (each match is reachable from one of
 * them): a digit at a token start (US_SSN, CREDIT_CARD, PHONE_NUMBER, IP_ADDRESS), '+' and '('
 * (PHONE_NUMBER), two capitals and a digit (IBAN_CODE), 'A' and a capital (AWS_ACCESS_KEY_ID),
 * "eyJ" (JWT), '@' (EMAIL_ADDRESS, whatever its first byte) and ':' (IPv6).
 */
enum {
	K_DIGIT = 1 << 0,
	K_PLUS = 1 << 1,
	K_IBAN = 1 << 2,
	K_AWS = 1 << 3,
	K_JWT = 1 << 4,
	K_AT = 1 << 5,
	K_COLON = 1 << 6,
	K_PAREN = 1 << 7,
	K_ALL = 0xff,
};

static unsigned kinds_for(uint32_t ents, unsigned flags)
{
	unsigned k = 0;
	if (flags & DETECT_EVERY_CANDIDATE)
		return K_ALL;
	if (ents & (MM_ENT_BIT(MM_ENT_US_SSN) | MM_ENT_BIT(MM_ENT_CREDIT_CARD) |
		    MM_ENT_BIT(MM_ENT_PHONE_NUMBER) | MM_ENT_BIT(MM_ENT_IP_ADDRESS)))
		k |= K_DIGIT;
	if (ents & MM_ENT_BIT(MM_ENT_PHONE_NUMBER))
		k |= K_PLUS | K_PAREN;
	if (ents & MM_ENT_BIT(MM_ENT_IBAN_CODE))
		k |= K_IBAN;
	if (ents & MM_ENT_BIT(MM_ENT_AWS_ACCESS_KEY_ID))
		k |= K_AWS;
	if (ents & MM_ENT_BIT(MM_ENT_JWT))
		k |= K_JWT;
	if (ents & MM_ENT_BIT(MM_ENT_EMAIL_ADDRESS))
		k |= K_AT;
	if (ents & MM_ENT_BIT(MM_ENT_IP_ADDRESS))
		k |= K_COLON;
	return k;
}

/* Scalar form of the candidate filter, for the last bytes of the text (and non-x86 builds). */
static bool is_candidate(const char *s, size_t n, size_t c, unsigned kinds)
{
	char ch = s[c];
	if ((ch == '@' && (kinds & K_AT)) || (ch == ':' && (kinds & K_COLON)) ||
	    (ch == '(' && (kinds & K_PAREN)))
		return true;
	if (c > 0 && IS(s[c - 1], C_LOCAL))
		return false;
	if ((IS(ch, C_DIGIT) && (kinds & K_DIGIT)) || (ch == '+' && (kinds & K_PLUS)))
		return true;
	if (c + 2 >= n)
		return false;
	if (IS(ch, C_UPPER) && IS(s[c + 1], C_UPPER) &&
	    ((ch == 'A' && (kinds & K_AWS)) || (IS(s[c + 2], C_DIGIT) && (kinds & K_IBAN))))
		return true;
	return ch == 'e' && s[c + 1] == 'y' && s[c + 2] == 'J' && (kinds & K_JWT);
}

#ifdef __SSE2__
#include <emmintrin.h>
#define BLOCK_ 16

static inline __m128i in_range(__m128i v, char lo, char hi)
{
	return _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8((char)(lo - 1))),
			     _mm_cmplt_epi8(v, _mm_set1_epi8((char)(hi + 1))));
}

static inline __m128i eq(__m128i v, char c)
{
	return _mm_cmpeq_epi8(v, _mm_set1_epi8(c));
}

/* The candidate kinds as byte masks (0xff: wanted). */
struct kind_vec {
	__m128i digit, plus, iban, aws, jwt, at, colon, paren;
};

static inline __m128i kind_mask(unsigned kinds, unsigned k)
{
	return _mm_set1_epi8(kinds & k ? (char)0xff : 0);
}

static void kind_vec_init(struct kind_vec *kv, unsigned kinds)
{
	*kv = (struct kind_vec){
		.digit = kind_mask(kinds, K_DIGIT),
		.plus = kind_mask(kinds, K_PLUS),
		.iban = kind_mask(kinds, K_IBAN),
		.aws = kind_mask(kinds, K_AWS),
		.jwt = kind_mask(kinds, K_JWT),
		.at = kind_mask(kinds, K_AT),
		.colon = kind_mask(kinds, K_COLON),
		.paren = kind_mask(kinds, K_PAREN),
	};
}

/*
 * is_candidate() for 16 bytes v0, with v1/v2 the same shifted by one/two bytes. Without
 * `letters` (no IBAN, AWS key or JWT asked for: no kind starts on a letter) v1 and v2 are not
 * read and the letter-led kinds are not computed.
 */
static inline unsigned vec_candidates(__m128i v0, __m128i v1, __m128i v2, unsigned prev_local,
				      const struct kind_vec *kv, bool letters)
{
	__m128i digit = in_range(v0, '0', '9');
	__m128i letter = in_range(_mm_or_si128(v0, _mm_set1_epi8(0x20)), 'a', 'z');
	__m128i local = _mm_or_si128(
		_mm_or_si128(digit, letter),
		_mm_or_si128(_mm_or_si128(eq(v0, '.'), eq(v0, '_')),
			     _mm_or_si128(_mm_or_si128(eq(v0, '%'), eq(v0, '+')), eq(v0, '-'))));
	unsigned lm = (unsigned)_mm_movemask_epi8(local);
	unsigned starts = lm & ~((lm << 1) | prev_local);

	__m128i strong =
		_mm_or_si128(_mm_and_si128(digit, kv->digit), _mm_and_si128(eq(v0, '+'), kv->plus));
	if (letters) {
		__m128i up0 = in_range(v0, 'A', 'Z'), up1 = in_range(v1, 'A', 'Z');
		__m128i caps = _mm_and_si128(
			up1, _mm_or_si128(_mm_and_si128(_mm_and_si128(up0, in_range(v2, '0', '9')),
							kv->iban),
					  _mm_and_si128(eq(v0, 'A'), kv->aws)));
		__m128i jwt = _mm_and_si128(_mm_and_si128(eq(v0, 'e'), kv->jwt),
					    _mm_and_si128(eq(v1, 'y'), eq(v2, 'J')));
		strong = _mm_or_si128(strong, _mm_or_si128(caps, jwt));
	}
	__m128i trig = _mm_or_si128(_mm_and_si128(eq(v0, '@'), kv->at),
				    _mm_or_si128(_mm_and_si128(eq(v0, ':'), kv->colon),
						 _mm_and_si128(eq(v0, '('), kv->paren)));

	return (starts & (unsigned)_mm_movemask_epi8(strong)) | (unsigned)_mm_movemask_epi8(trig);
}

/* is_candidate() for s[i, i+16), reading s[i-1, i+18). */
static inline unsigned block_candidates(const char *s, size_t i, const struct kind_vec *kv,
					bool letters)
{
	__m128i v0 = _mm_loadu_si128((const __m128i *)(s + i)), v1 = v0, v2 = v0;
	if (letters) {
		v1 = _mm_loadu_si128((const __m128i *)(s + i + 1));
		v2 = _mm_loadu_si128((const __m128i *)(s + i + 2));
	}
	return vec_candidates(v0, v1, v2, i > 0 && IS(s[i - 1], C_LOCAL), kv, letters);
}

/* The k <= 16 bytes at p in the low bytes of a vector, zeros above; reads only p[0, k). */
static inline __m128i load_partial(const char *p, size_t k)
{
	uint64_t lo = 0, hi = 0;
	if (k >= 8) {
		memcpy(&lo, p, 8);
		if (k > 8) {
			memcpy(&hi, p + k - 8, 8);
			hi >>= 8 * (16 - k);
		}
	} else if (k >= 4) {
		uint32_t a, b;
		memcpy(&a, p, 4);
		memcpy(&b, p + k - 4, 4);
		/* the overlapping bytes are the same in both */
		lo = a | (uint64_t)b << (8 * (k - 4));
	} else if (k) {
		lo = (uint64_t)(unsigned char)p[0] |
		     (uint64_t)(unsigned char)p[k / 2] << (8 * (k / 2)) |
		     (uint64_t)(unsigned char)p[k - 1] << (8 * (k - 1));
	}
	return _mm_set_epi64x((long long)hi, (long long)lo);
}

/*
 * block_candidates() for the last k = n - i <= 16 bytes: most values are short strings, too
 * short for a whole block. The bytes are assembled in registers (no read past n, no store to
 * reload); the zeros above them are no byte class, so they add no candidate that the scalar
 * filter rejects, except a capital pair at the very end, which the detectors reject again.
 */
static inline unsigned tail_candidates(const char *s, size_t n, size_t i, const struct kind_vec *kv,
				       bool letters)
{
	size_t k = n - i;
	__m128i v0 = load_partial(s + i, k);
	unsigned m = vec_candidates(v0, _mm_srli_si128(v0, 1), _mm_srli_si128(v0, 2),
				    i > 0 && IS(s[i - 1], C_LOCAL), kv, letters);
	return k < BLOCK_ ? m & ((1u << k) - 1) : m;
}
#endif

/*
 * The candidates of s[i, n) in order, each evaluated until the output is full. Inlined twice,
 * with and without the letter-led kinds, so that each loop computes only what it needs.
 */
static inline __attribute__((always_inline)) void
scan_from(struct scan *sc, size_t i, unsigned kinds, const void *kvv, bool letters)
{
	const char *text = sc->s;
	size_t len = sc->n;
#ifdef BLOCK_
	const struct kind_vec *kvp = kvv;
#else
	(void)kvv;
	(void)letters;
#endif
	while (i < len) {
		unsigned cand, width = 1;
#ifdef BLOCK_
		if (i + BLOCK_ + 2 <= len) {
			cand = block_candidates(text, i, kvp, letters);
			width = BLOCK_;
		} else if (len - i > 1 && len - i <= BLOCK_) {
			cand = tail_candidates(text, len, i, kvp, letters);
			width = BLOCK_;
		} else
#endif
			cand = is_candidate(text, len, i, kinds);
		bool hit = false;
		while (cand && !hit) {
			unsigned b = (unsigned)__builtin_ctz(cand);
			cand &= cand - 1;
			hit = on_candidate(sc, i + b);
		}
		if (!hit) {
			i += width;
			continue;
		}
		if (sc->found == sc->max)
			break;
		i = sc->cursor;
	}
}

size_t detect_scan(const char *text, size_t len, size_t start, uint32_t entities, unsigned flags,
		   struct detect_match *out, size_t max)
{
	struct scan sc = {
		.s = text,
		.n = len,
		.ents = entities & MM_ENT_ALL,
		.flags = flags,
		.cursor = start,
		.out = out,
		.max = max,
	};

	if (!text || !out || !max || start >= len || !sc.ents)
		return 0;
#ifdef BLOCK_
	/*
	 * Most calls scan one short string with the same entities and flags as the last call:
	 * keep the kinds and their masks.
	 */
	static _Thread_local struct {
		uint32_t ents;
		unsigned flags, kinds;
		struct kind_vec kv;
	} last = {.flags = ~0u};
	if (last.ents != sc.ents || last.flags != flags) {
		last.kinds = kinds_for(sc.ents, flags);
		kind_vec_init(&last.kv, last.kinds);
		last.ents = sc.ents;
		last.flags = flags;
	}
	unsigned kinds = last.kinds;
	const struct kind_vec *kvp = &last.kv;
	if (kinds & (K_IBAN | K_AWS | K_JWT))
		scan_from(&sc, start, kinds, kvp, true);
	else
		scan_from(&sc, start, kinds, kvp, false);
#else
	scan_from(&sc, start, kinds_for(sc.ents, flags), NULL, false);
#endif
	return sc.found;
}
