/* SPDX-License-Identifier: Apache-2.0 */
/*
 * detect_scan() on arbitrary bytes, every entity, with and without field context. Aborts when
 * a match is out of range, out of order, overlapping, too long, not reproduced when the scan
 * resumes after the previous match, or not found again from its own p-1..p+MAX window, or
 * when the entity-narrowed candidate filter finds something else than evaluating every
 * candidate; also runs the mask action over the input and each match.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "action.h"
#include "detect.h"

#define MAXM 512

static void check_scan(const char *t, size_t n, unsigned flags)
{
	static struct detect_match m[MAXM], r[MAXM];
	size_t k = detect_scan(t, n, 0, MM_ENT_ALL, flags, m, MAXM);
	size_t prev_end = 0;

	if (k > MAXM)
		abort();
	for (size_t i = 0; i < k; i++) {
		if (m[i].len == 0 || m[i].len > DETECT_MAX_MATCH_LEN || m[i].off < prev_end ||
		    m[i].off + m[i].len > n || (unsigned)m[i].entity >= MM_ENT__COUNT)
			abort();
		prev_end = m[i].off + m[i].len;
	}
	/* resuming after match i gives the remaining matches */
	for (size_t i = 0; i < k && i < 8; i++) {
		size_t s = m[i].off + m[i].len;
		size_t k2 = s < n ? detect_scan(t, n, s, MM_ENT_ALL, flags, r, MAXM) : 0;
		if (k2 != k - i - 1 && k != MAXM)
			abort();
		for (size_t j = 0; j < k2 && i + 1 + j < k; j++)
			if (r[j].off != m[i + 1 + j].off || r[j].len != m[i + 1 + j].len ||
			    r[j].entity != m[i + 1 + j].entity)
				abort();
	}
	/* locality: each match found from text[p-1, p+MAX] alone (copied: ASan sees overreads) */
	for (size_t i = 0; i < k && i < 16; i++) {
		size_t p = m[i].off, base = p ? p - 1 : 0;
		size_t end = n - p > DETECT_MAX_MATCH_LEN + 1 ? p + DETECT_MAX_MATCH_LEN + 1 : n;
		char *w = malloc(end - base);
		if (!w)
			return;
		memcpy(w, t + base, end - base);
		size_t k3 = detect_scan(w, end - base, p - base, MM_ENT_ALL, flags, r, 1);
		free(w);
		if (k3 != 1 || r[0].off != p - base || r[0].len != m[i].len ||
		    r[0].entity != m[i].entity)
			abort();
	}
	/* a subset of entities finds a subset of the matches of that entity at most */
	for (int e = 0; e < MM_ENT__COUNT; e++) {
		size_t ke = detect_scan(t, n, 0, MM_ENT_BIT(e), flags, r, MAXM);
		for (size_t j = 0; j < ke; j++)
			if (r[j].entity != (enum mm_entity)e)
				abort();
	}
	/*
	 * The candidate filter narrowed to the requested entities finds what evaluating every
	 * candidate finds: for each single entity and for sets drawn from the text's length.
	 */
	static struct detect_match x[MAXM];
	for (int e = 0; e <= MM_ENT__COUNT + 2; e++) {
		uint32_t ents = e < MM_ENT__COUNT ? MM_ENT_BIT(e)
				: e == MM_ENT__COUNT
					? MM_ENT_ALL
					: (uint32_t)(n * 2654435761u >> 8) & MM_ENT_ALL;
		size_t ka = detect_scan(t, n, 0, ents, flags, r, MAXM);
		size_t kb = detect_scan(t, n, 0, ents, flags | DETECT_EVERY_CANDIDATE, x, MAXM);
		if (ka != kb)
			abort();
		for (size_t j = 0; j < ka; j++)
			if (r[j].off != x[j].off || r[j].len != x[j].len ||
			    r[j].entity != x[j].entity)
				abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *t = (const char *)data;

	check_scan(t, size, 0);
	check_scan(t, size, DETECT_FIELD_CONTEXT);

	struct policy_action a = {
		.type = POLICY_ACTION_MASK, .keep_first = size % 3, .keep_last = size % 5};
	struct mm_buf out = {0};
	if (action_apply(&a, -1, t, size, &out) == 0) {
		/* ASCII is masked byte for byte; the output is never longer than the input */
		if (out.len > size)
			abort();
		for (size_t i = 0; i < size && out.len == size; i++)
			if ((unsigned char)t[i] < 0x80 && t[i] != out.data[i] && out.data[i] != '*')
				abort();
	}
	mm_buf_free(&out);
	return 0;
}
