/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Format-preserving tokens of one value with FF1 (ff1.h): the value's shape picks the radix and
 * alphabet, the FF1 input is its tokenizable units, and everything else stays in place.
 *
 * Shape of a value (printable ASCII only):
 * - an e-mail address (one '@' with text on both sides): the local part's letters and digits;
 *   with keep_domain false also the domain's, except its last label (the top-level domain);
 * - otherwise every letter and digit of the value.
 * Separators (any other printable ASCII: '-', ' ', '.', '(', '+', ...) are copied in place. The
 * units that FF1 encrypts are those left after keep_first/keep_last; their kind picks the
 * alphabet: all digits: radix 10; letters of one case with digits: radix 36 in that case;
 * both cases: radix 62 (0-9A-Za-z).
 *
 * Class kept: a token has the class of its value, so that it is found where the value was and
 * checked as the value was: the same kind (an upper-case ID stays upper-case with at least one
 * letter), the same entity detected over the whole value (a valid US SSN or phone number stays
 * one, an e-mail address stays one, with `luhn` a card number in an issuer range stays one) and,
 * with `luhn`, a Luhn-valid number (luhn requires one). This is cycle walking: FF1 is applied
 * again until the class matches, which keeps the map a permutation of each class.
 */
#ifndef MESHMASK_TOKENIZE_H
#define MESHMASK_TOKENIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ff1.h"

struct tok_opts {
	uint32_t keep_first, keep_last; /* units left in clear at each end of the tokenized ones */
	bool luhn; /* digits: a Luhn-valid number keeps a valid check digit */
	bool keep_domain; /* e-mail: the domain is copied (else tokenized but TLD) */
	const void *tweak; /* the token space (FF1 tweak); borrowed */
	size_t tweak_len; /* at most FF1_MAX_TWEAK */
};

enum tok_kind { TOK_DIGITS, TOK_UPPER, TOK_LOWER, TOK_MIXED };

/* The shape of one value, as tok_shape_parse() reads it. */
struct tok_shape {
	enum tok_kind kind;
	unsigned radix;
	bool email;
	size_t units; /* tokenizable units of the value (ASCII letters and digits) */
	size_t first, n; /* units kept in clear before the FF1 input, units FF1 encrypts */
	size_t region_end; /* byte offset past which no unit is tokenized */
};

/*
 * Read the shape of `v[0, len)` under `o`. 0, or -EDOM with *why set (a static string) when the
 * value cannot be tokenized: empty, not printable ASCII, too few units left for FF1's minimum
 * domain (radix^n >= 1,000,000) or more than FF1_MAX_LEN, or not Luhn-valid under `luhn`.
 */
int tok_shape_parse(const char *v, size_t len, const struct tok_opts *o, struct tok_shape *sh,
		    const char **why);

/*
 * Tokenize (detok false) or restore (detok true) `v[0, len)` into out[0, len), which must not
 * overlap it (a value and its token have the same length). 0; -EDOM when the value does not
 * fit (tok_shape_parse(), or a cycle walk over its bound); -EIO on a crypto error; -EINVAL on
 * bad arguments. On an error out[0, len) holds '*' only.
 */
int tok_transform(struct ff1_key *k, const struct tok_opts *o, bool detok, const char *v,
		  size_t len, char *out);

/*
 * What a value that cannot be tokenized becomes: `out` (len bytes) is v with '*' for every unit
 * that would have been tokenized (keep_first/keep_last kept when something is left to hide),
 * so that an e-mail address keeps its domain as its token would. 0, or -EDOM when v is not
 * printable ASCII (the caller masks it otherwise).
 */
int tok_mask(const struct tok_opts *o, const char *v, size_t len, char *out);

/* The radix of a kind: 10, 36 or 62. */
unsigned tok_radix(enum tok_kind kind);

#endif
