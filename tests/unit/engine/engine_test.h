/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by the engine tests: policies from JSON text, one-shot and chunked runs. */
#ifndef MESHMASK_ENGINE_TEST_H
#define MESHMASK_ENGINE_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "mask.h"
#include "policy.h"
#include "tap.h"

/* A policy with `rules` (a JSON array text), mode and onError; aborts the test on failure. */
static inline struct policy *mkpol(const char *rules, const char *mode, const char *on_error)
{
	char *doc = NULL;
	struct policy_errors errs = {0};
	if (asprintf(&doc,
		     "{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","
		     "\"metadata\":{\"name\":\"t\"},\"spec\":{\"mode\":\"%s\",\"onError\":\"%s\","
		     "\"rules\":%s}}",
		     mode, on_error, rules) < 0)
		abort();
	struct policy *p = policy_parse(doc, strlen(doc), "test", &errs);
	if (!p) {
		policy_errors_print(stdout, "test", &errs);
		printf("Bail out! policy did not parse: %s\n", rules);
		exit(1);
	}
	policy_errors_free(&errs);
	free(doc);
	return p;
}

static inline int buf_sink_(void *ctx, const char *p, size_t n)
{
	return mm_buf_append(ctx, p, n);
}

struct run_result {
	int rc;
	enum mask_outcome outcome;
	enum mm_reason reason;
	struct mask_stats st; /* rules array owned */
};

/*
 * Feed `in` split at the sorted cut points `cuts[0..n_cuts)` (0 cuts = one shot; step > 0 =
 * fixed-size pieces instead), output appended to `out`.
 */
static inline struct run_result run_cuts(const struct policy *p, const char *ct, const char *ce,
					 const char *in, size_t len, const size_t *cuts,
					 size_t n_cuts, size_t step, struct mm_buf *out)
{
	struct mask_opts o = {.policy = p,
			      .direction = POLICY_DIR_RESPONSE,
			      .content_type = ct,
			      .content_encoding = ce};
	struct run_result rr = {0};
	struct mask_stream *s = mask_stream_new(&o);
	if (!s) {
		rr.rc = -12;
		return rr;
	}
	size_t pos = 0;
	int r = 0;
	if (step) {
		while (!r && pos < len) {
			size_t k = len - pos < step ? len - pos : step;
			r = mask_stream_write(s, in + pos, k, buf_sink_, out);
			pos += k;
		}
	} else {
		for (size_t i = 0; i < n_cuts && !r; i++) {
			r = mask_stream_write(s, in + pos, cuts[i] - pos, buf_sink_, out);
			pos = cuts[i];
		}
		if (!r)
			r = mask_stream_write(s, in + pos, len - pos, buf_sink_, out);
	}
	if (!r)
		r = mask_stream_finish(s, buf_sink_, out);
	rr.rc = r;
	rr.outcome = mask_stream_outcome(s);
	rr.reason = mask_stream_reason(s);
	rr.st = *mask_stream_stats(s);
	rr.st.rules = calloc(rr.st.n_rules + 1, sizeof(*rr.st.rules));
	memcpy(rr.st.rules, mask_stream_stats(s)->rules, rr.st.n_rules * sizeof(*rr.st.rules));
	mask_stream_free(s);
	return rr;
}

/* One-shot run returning the output as a NUL-terminated string (caller frees). */
static inline char *run1(const struct policy *p, const char *ct, const char *in,
			 struct run_result *rr_out)
{
	struct mm_buf out = {0};
	struct run_result rr = run_cuts(p, ct, NULL, in, strlen(in), NULL, 0, 0, &out);
	mm_buf_putc(&out, 0);
	if (rr_out)
		*rr_out = rr;
	else
		free(rr.st.rules);
	return out.data;
}

#endif
