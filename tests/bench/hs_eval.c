/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `bench_engine --hs`: Hyperscan (libhs) against the engine's hand-written candidate filter and
 * detectors, for the entities of the PII example (US_SSN, CREDIT_CARD, EMAIL_ADDRESS,
 * PHONE_NUMBER), on the string values of the benchmark's 64 KB document. Built only when
 * libhs is installed (Debian: libhyperscan-dev). Rows, in MB of values per CPU second:
 *
 *   detect_scan per value         what the engine does now: filter, detectors, validators
 *   hs block per value            hs_scan() of each value, nothing done with the matches
 *   hs stream, SOM                one stream over the values in 64 KiB writes, start of
 *                                 match reported (what replacing the filter would need)
 *   hs stream, no SOM             the same, ends only (a lower bound for any Hyperscan use)
 *   detect_scan over the text     the engine's text scanner's way: one pass over all values
 *   hs stream, triggers only      a stream with only the short shapes the hand-written filter
 *                                 starts from (three digits and a separator, '@', '+digit'...)
 *
 * The Hyperscan rows only find where a pattern matches: the word boundaries and validators
 * (Luhn, SSA rules) would still have to run on each report, so they are lower bounds.
 */
#include <hs/hs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "detect.h"

int hs_eval(const char *doc, size_t len, double secs);

/* The entities' shapes, as Hyperscan patterns (boundaries and validators left out). */
static const char *const patterns[] = {
	"\\d{3}-\\d{2}-\\d{4}|\\d{3} \\d{2} \\d{4}", /* US_SSN */
	"\\d{13,19}|\\d{4}([ -]\\d{3,6}){2,4}", /* CREDIT_CARD */
	"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+", /* EMAIL_ADDRESS */
	"(\\+1[-. ])?(\\(\\d{3}\\) ?|\\d{3}[-. ])\\d{3}[-. ]\\d{4}|\\+[1-9][0-9 "
	"-]{7,20}", /* PHONE */
};
#define N_PAT (sizeof(patterns) / sizeof(*patterns))

/* Only what the hand-written filter looks for first: short shapes a detector starts from. */
static const char *const triggers[] = {
	"\\d{3}[- .]", "\\d{4}[ -]\\d", "\\d{13}", "@[A-Za-z0-9]", "\\+\\d", "\\(\\d{3}\\)",
};
#define N_TRIG (sizeof(triggers) / sizeof(*triggers))

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int on_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
		    void *ctx)
{
	(void)id;
	(void)from;
	(void)to;
	(void)flags;
	(*(size_t *)ctx)++;
	return 0;
}

struct span {
	size_t off, len;
};

/* The member values of a JSON document without escapes that are strings (after ':'). */
static size_t values_of(const char *d, size_t n, struct span *v, size_t max)
{
	size_t k = 0;
	for (size_t i = 0; i < n && k < max; i++) {
		if (d[i] != '"')
			continue;
		const char *e = memchr(d + i + 1, '"', n - i - 1);
		if (!e)
			break;
		size_t j = (size_t)(e - d);
		if (i && d[i - 1] == ':')
			v[k++] = (struct span){i + 1, j - i - 1};
		i = j;
	}
	return k;
}

static hs_database_t *compile(const char *const *pats, unsigned n, unsigned mode, unsigned flags)
{
	hs_database_t *db = NULL;
	hs_compile_error_t *err = NULL;
	unsigned fl[16], ids[16];
	for (unsigned i = 0; i < n; i++) {
		fl[i] = flags;
		ids[i] = i;
	}
	if (hs_compile_multi(pats, fl, ids, n, mode, NULL, &db, &err) != HS_SUCCESS) {
		fprintf(stderr, "hs_compile_multi: %s\n", err ? err->message : "?");
		hs_free_compile_error(err);
		return NULL;
	}
	return db;
}

int hs_eval(const char *doc, size_t len, double secs)
{
	const uint32_t ents = MM_ENT_BIT(MM_ENT_US_SSN) | MM_ENT_BIT(MM_ENT_CREDIT_CARD) |
			      MM_ENT_BIT(MM_ENT_EMAIL_ADDRESS) | MM_ENT_BIT(MM_ENT_PHONE_NUMBER);
	static struct span v[8192];
	size_t nv = values_of(doc, len, v, 8192), bytes = 0;
	struct mm_buf text = {0};
	for (size_t k = 0; k < nv; k++) {
		bytes += v[k].len;
		mm_buf_append(&text, doc + v[k].off, v[k].len);
		mm_buf_putc(&text, '\n');
	}
	hs_database_t *blk = compile(patterns, N_PAT, HS_MODE_BLOCK, 0);
	hs_database_t *som = compile(patterns, N_PAT, HS_MODE_STREAM | HS_MODE_SOM_HORIZON_SMALL,
				     HS_FLAG_SOM_LEFTMOST);
	hs_database_t *end = compile(patterns, N_PAT, HS_MODE_STREAM, 0);
	hs_database_t *trig = compile(triggers, N_TRIG, HS_MODE_STREAM, 0);
	hs_scratch_t *scr = NULL;
	if (!blk || !som || !end || !trig || hs_alloc_scratch(blk, &scr) != HS_SUCCESS ||
	    hs_alloc_scratch(som, &scr) != HS_SUCCESS ||
	    hs_alloc_scratch(end, &scr) != HS_SUCCESS || hs_alloc_scratch(trig, &scr) != HS_SUCCESS)
		return 1;
	printf("hyperscan %s; %zu string values, %zu bytes, of a %zu-byte document\n", hs_version(),
	       nv, bytes, len);
	printf("%-34s %10s %12s\n", "candidates of the PII entities", "MB/s", "reports/doc");
	for (int row = 0; row < 6; row++) {
		static const char *const names[] = {"detect_scan per value",
						    "hs block per value",
						    "hs stream, SOM",
						    "hs stream, no SOM",
						    "detect_scan over the text",
						    "hs stream, triggers only"};
		size_t reports = 0, rounds = 0;
		double t0 = cpu_now(), t;
		do {
			for (int rep = 0; rep < 16; rep++, rounds++) {
				struct detect_match m[64];
				switch (row) {
				case 0:
					for (size_t k = 0; k < nv; k++)
						reports += detect_scan(doc + v[k].off, v[k].len, 0,
								       ents, 0, m, 64);
					break;
				case 1:
					for (size_t k = 0; k < nv; k++)
						hs_scan(blk, doc + v[k].off, (unsigned)v[k].len, 0,
							scr, on_match, &reports);
					break;
				case 2:
				case 3:
				case 5: {
					hs_stream_t *st = NULL;
					hs_open_stream(row == 2	  ? som
						       : row == 3 ? end
								  : trig,
						       0, &st);
					for (size_t o = 0; o < text.len; o += 65536) {
						size_t c =
							text.len - o < 65536 ? text.len - o : 65536;
						hs_scan_stream(st, text.data + o, (unsigned)c, 0,
							       scr, on_match, &reports);
					}
					hs_close_stream(st, scr, on_match, &reports);
					break;
				}
				default:
					for (size_t o = 0; o < text.len;) {
						size_t k = detect_scan(text.data, text.len, o, ents,
								       0, m, 64);
						reports += k;
						if (k < 64)
							break;
						o = m[63].off + m[63].len;
					}
				}
			}
			t = cpu_now() - t0;
		} while (t < secs);
		printf("%-34s %10.0f %12.1f\n", names[row], (double)bytes * rounds / t / 1e6,
		       (double)reports / rounds);
	}
	hs_free_scratch(scr);
	hs_free_database(blk);
	hs_free_database(som);
	hs_free_database(end);
	hs_free_database(trig);
	mm_buf_free(&text);
	return 0;
}
