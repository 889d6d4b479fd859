/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers of the engine's fuzz targets: a policy that must parse, and a body fed in two parts. */
#ifndef MESHMASK_FUZZ_MASK_H
#define MESHMASK_FUZZ_MASK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "mask.h"
#include "policy.h"

/* Output sink appending to the struct mm_buf ctx. */
static inline int fuzz_sink(void *ctx, const char *p, size_t n)
{
	return mm_buf_append(ctx, p, n);
}

/* A built-in policy of the target; one that does not parse is the target's own bug. */
static inline struct policy *fuzz_policy(const char *text)
{
	struct policy_errors errs = {0};
	struct policy *p = policy_parse(text, strlen(text), "fuzz", &errs);
	if (!p) {
		policy_errors_print(stderr, "fuzz", &errs);
		abort();
	}
	return p;
}

/*
 * d[0..n) through a stream with options o, split at cut, output appended to out. With cut > 0
 * the stream is a reused one (mask_stream_reuse) that first took the same bytes as JSON (with
 * the same Content-Encoding) and was dropped unfinished, so comparing a run at cut 0 with one at cut > 0 also checks that reuse
 * leaves nothing of the previous body behind.
 */
static inline int fuzz_mask(const struct mask_opts *o, const uint8_t *d, size_t n, size_t cut,
			    struct mm_buf *out)
{
	struct mask_stream *s;
	if (cut) {
		struct mask_opts before = *o;
		before.content_type = "application/json";
		before.format = MASK_FMT_AUTO;
		struct mm_buf junk = {0};
		s = mask_stream_new(&before);
		if (!s)
			abort();
		mask_stream_write(s, d, n, fuzz_sink, &junk);
		mm_buf_free(&junk);
		if (mask_stream_reuse(s, o))
			abort();
	} else {
		s = mask_stream_new(o);
	}
	if (!s)
		abort();
	int r = mask_stream_write(s, d, cut, fuzz_sink, out);
	if (!r)
		r = mask_stream_write(s, d + cut, n - cut, fuzz_sink, out);
	if (!r)
		r = mask_stream_finish(s, fuzz_sink, out);
	mask_stream_free(s);
	return r;
}

#endif
