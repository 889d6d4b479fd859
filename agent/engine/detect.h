/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Entity detectors: find sensitive values in text and validate them (Luhn, SSA rules, mod-97),
 * so that a number that merely looks like a card is not masked. Pure functions, no allocation.
 */
#ifndef MESHMASK_DETECT_H
#define MESHMASK_DETECT_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "meshmask/entity.h"

/*
 * Longest match any detector reports, in bytes. A streaming caller that keeps this many bytes
 * (plus one byte of context on each side) in view never misses or splits a match.
 */
#define DETECT_MAX_MATCH_LEN 4096

/* Flags for detect_scan(). */
enum {
	/*
	 * The text is one whole field value named by a field rule: a bare 9-digit US_SSN is
	 * accepted (outside field context only the dashed form is).
	 */
	DETECT_FIELD_CONTEXT = 1u << 0,
	/*
	 * Evaluate every candidate position, not only those the requested entities can start at,
	 * and every digit run whatever its shape (for tests: the matches are the same either way).
	 */
	DETECT_EVERY_CANDIDATE = 1u << 1,
};

struct detect_match {
	size_t off; /* byte offset in the scanned text */
	size_t len;
	enum mm_entity entity;
};

/*
 * Scan text[start, len) for the entities in `entities` (MM_ENT_BIT mask); text[0, start) is
 * context only (the byte before the scan, for word boundaries), and the text is taken to end at
 * len. Matches are reported left to right, never overlapping, longest first at one offset; at
 * most `max` are written to `out`. Returns the number written. A match at offset p depends only
 * on text[p-1, p+DETECT_MAX_MATCH_LEN], which is what makes streaming scans exact.
 */
size_t detect_scan(const char *text, size_t len, size_t start, uint32_t entities, unsigned flags,
		   struct detect_match *out, size_t max);

/* Validators, exposed for tests and for the policy compiler. `s` need not be NUL-terminated. */
bool detect_luhn_ok(const char *digits, size_t n);        /* digits only */
bool detect_ssn_ok(const char *s, size_t n);              /* "123-45-6789" or "123456789" */
bool detect_iban_ok(const char *s, size_t n);             /* spaces allowed */

#endif
