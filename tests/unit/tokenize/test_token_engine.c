/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tokenize and detokenize through the streaming engine, wherever mask works: JSON, NDJSON,
 * text, form, gzip, any chunking. A response tokenized by one policy and sent back as a request
 * through a detokenize policy comes back byte for byte; values that do not fit are counted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action.h"
#include "buf.h"
#include "mask.h"
#include "policy.h"
#include "tap.h"
#include "../engine/zhelp.h"

#define KEY "6d6573686d61736b2d746f6b656e2d746573742d6b65792d3332627974657321"

/* The same rules as tokenize (responses) or detokenize (requests). */
static struct policy *mkpol(const char *type)
{
	char *doc = NULL;
	struct policy_errors errs = {0};
	bool detok = !strcmp(type, "detokenize");
	if (asprintf(
		    &doc,
		    "{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","
		    "\"metadata\":{\"name\":\"%s\"},\"spec\":{\"directions\":[\"%s\"],\"rules\":["
		    "{\"name\":\"ssn\",\"fields\":[\"$..ssn\",\"ssn\"],\"action\":{\"type\":\"%s\","
		    "\"keyEnv\":\"MM_TOK_KEY\",\"tokenSpace\":\"pii\"}},"
		    "{\"name\":\"cards\",\"entities\":[\"CREDIT_CARD\"],\"action\":{\"type\":\"%"
		    "s\","
		    "\"keyEnv\":\"MM_TOK_KEY\",\"keepFirst\":6,\"keepLast\":4,\"luhn\":true,"
		    "\"tokenSpace\":\"cards\"}},"
		    "{\"name\":\"mail\",\"entities\":[\"EMAIL_ADDRESS\"],\"action\":{\"type\":\"%"
		    "s\","
		    "\"keyEnv\":\"MM_TOK_KEY\"}}]}}",
		    type, detok ? "request" : "response", type, type, type) < 0)
		abort();
	struct policy *p = policy_parse(doc, strlen(doc), "test", &errs);
	if (!p) {
		policy_errors_print(stdout, "test", &errs);
		printf("Bail out! policy did not parse\n");
		exit(1);
	}
	free(doc);
	return p;
}

static int sink(void *ctx, const char *p, size_t n)
{
	return mm_buf_append(ctx, p, n);
}

/* Run `in` through p in pieces of `step` bytes (0: whole); stats copied to *st if non-NULL. */
static int run(const struct policy *p, uint32_t dir, const char *ct, const char *ce, const char *in,
	       size_t len, size_t step, struct mm_buf *out, uint64_t *unfit)
{
	struct mask_opts o = {
		.policy = p, .direction = dir, .content_type = ct, .content_encoding = ce};
	struct mask_stream *s = mask_stream_new(&o);
	int r = s ? 0 : -1;
	for (size_t off = 0; !r && off < len;) {
		size_t n = step && len - off > step ? step : len - off;
		r = mask_stream_write(s, in + off, n, sink, out);
		off += n;
	}
	if (!r)
		r = mask_stream_finish(s, sink, out);
	if (unfit && s)
		*unfit = mask_stream_stats(s)->errors[MM_REASON_TOKENIZE_FAILED] +
			 mask_stream_stats(s)->errors[MM_REASON_DETOKENIZE_FAILED];
	mask_stream_free(s);
	return r;
}

static struct policy *tok, *detok;

/*
 * Tokenize as a response, check what changed, detokenize as a request: the original back
 * (`want`, or `in` when NULL: a changed JSON string is re-escaped minimally).
 */
static void round_trip_as(const char *what, const char *ct, const char *in, const char *kept,
			  const char *gone, const char *want)
{
	struct mm_buf t = {0}, b = {0}, t1 = {0};
	is_int(run(tok, POLICY_DIR_RESPONSE, ct, NULL, in, strlen(in), 0, &t, NULL), 0,
	       "%s: tokenized", what);
	mm_buf_putc(&t, '\0');
	t.len--;
	ok(!strstr(t.data, gone), "%s: the value is gone (%s)", what, gone);
	ok(!kept || strstr(t.data, kept), "%s: what is kept stays (%s)", what, kept ? kept : "");
	is_int(t.len, strlen(want ? want : in), "%s: same length", what);
	is_int(run(tok, POLICY_DIR_RESPONSE, ct, NULL, in, strlen(in), 1, &t1, NULL), 0,
	       "%s: tokenized byte by byte", what);
	ok(t1.len == t.len && !memcmp(t1.data, t.data, t.len), "%s: chunking changes nothing",
	   what);
	is_int(run(detok, POLICY_DIR_REQUEST, ct, NULL, t.data, t.len, 3, &b, NULL), 0,
	       "%s: detokenized", what);
	is_mem(b.data ? b.data : "", b.len, want ? want : in, "%s: the original is back", what);
	mm_buf_free(&t);
	mm_buf_free(&t1);
	mm_buf_free(&b);
}

static void round_trip(const char *what, const char *ct, const char *in, const char *kept,
		       const char *gone)
{
	round_trip_as(what, ct, in, kept, gone, NULL);
}

static void test_formats(void)
{
	round_trip("JSON field and entities", "application/json",
		   "{\"ssn\":\"536-22-1234\",\"card\":\"4111 1111 1111 1111\","
		   "\"note\":\"mail john.doe@example.com or 5500-0000-0000-0004\"}",
		   "@example.com", "536-22-1234");
	round_trip("JSON: card keeps BIN and last four", "application/json",
		   "{\"card\":\"4111111111111111\"}", "\"411111", "4111111111111111");
	round_trip_as("JSON: escaped digits are digits", "application/json",
		      "{\"ssn\":\"\\u0035\\u00336-22-1234\"}", NULL, "-22-1234",
		      "{\"ssn\":\"536-22-1234\"}");
	round_trip("NDJSON", "application/x-ndjson",
		   "{\"ssn\":\"536-22-1234\"}\n{\"ssn\":\"219-09-9998\"}\n", NULL, "219-09-9998");
	round_trip("text", "text/plain",
		   "Card 4111 1111 1111 1111 belongs to jane.roe@example.org.\n", "@example.org",
		   "jane.roe");
	round_trip("form", "application/x-www-form-urlencoded",
		   "ssn=536-22-1234&card=4111111111111111&x=1", "x=1", "536-22-1234");
}

static void test_gzip(void)
{
	const char *in = "{\"ssn\":\"536-22-1234\",\"mail\":\"john.doe@example.com\"}";
	struct mm_buf z = {0}, t = {0}, tz = {0}, b = {0}, bz = {0};
	zcompress(in, strlen(in), 31, &z);
	is_int(run(tok, POLICY_DIR_RESPONSE, "application/json", "gzip", z.data, z.len, 7, &tz,
		   NULL),
	       0, "gzip: tokenized");
	ok(zdecompress(tz.data, tz.len, 31, &t) == 0, "gzip: output is gzip");
	ok(t.len == strlen(in) && memcmp(t.data, in, t.len), "gzip: values changed");
	is_int(run(detok, POLICY_DIR_REQUEST, "application/json", "gzip", tz.data, tz.len, 0, &bz,
		   NULL),
	       0, "gzip: detokenized");
	ok(zdecompress(bz.data, bz.len, 31, &b) == 0, "gzip: detokenized output is gzip");
	is_mem(b.data ? b.data : "", b.len, in, "gzip: the original is back");
	mm_buf_free(&z);
	mm_buf_free(&t);
	mm_buf_free(&tz);
	mm_buf_free(&b);
	mm_buf_free(&bz);
}

static void test_unfit(void)
{
	struct mm_buf out = {0};
	uint64_t unfit = 0;
	const char *in = "{\"ssn\":\"12-34\",\"x\":{\"ssn\":12345678901}}";
	is_int(run(tok, POLICY_DIR_RESPONSE, "application/json", NULL, in, strlen(in), 0, &out,
		   &unfit),
	       0, "a value too short for FF1");
	ok(out.len == strlen(in) + 2 &&
		   !memcmp(out.data, "{\"ssn\":\"**-**\",\"x\":{\"ssn\":\"", 27) &&
		   memcmp(out.data + 27, "12345678901", 11) && out.data[38] == '"',
	   "is masked instead; a number under a field rule becomes a string token");
	is_int(unfit, 1, "and counted as tokenize_failed");
	out.len = 0;
	in = "{\"ssn\":\"12-34\",\"x\":{\"ssn\":\"h\\u00e9llo wo\"}}";
	is_int(run(detok, POLICY_DIR_REQUEST, "application/json", NULL, in, strlen(in), 0, &out,
		   &unfit),
	       0, "values that are no tokens");
	is_mem(out.data, out.len, "{\"ssn\":\"12-34\",\"x\":{\"ssn\":\"h\xc3\xa9llo wo\"}}",
	       "pass unchanged (re-escaped minimally)");
	is_int(unfit, 2, "and are counted as detokenize_failed");
	out.len = 0;
	/* A response the detokenize policy does not cover passes unchanged. */
	in = "{\"ssn\":\"536-22-1234\"}";
	run(detok, POLICY_DIR_RESPONSE, "application/json", NULL, in, strlen(in), 0, &out, NULL);
	is_mem(out.data, out.len, in, "detokenize leaves responses alone");
	mm_buf_free(&out);
}

/* The prepared key: one per stream, reused for every value, freed with the stream. */
static void test_ctx(void)
{
	struct action_ctx c = {0};
	const struct policy_action *a = &tok->rules[0].action;
	struct mm_buf o1 = {0}, o2 = {0};
	is_int(action_apply_ctx(a, &c, -1, "536-22-1234", 11, &o1), 0, "with a context");
	ok(c.ff1 != NULL, "the key schedule is kept");
	is_int(action_apply(a, -1, "536-22-1234", 11, &o2), 0, "one-shot");
	ok(o1.len == 11 && o2.len == 11 && !memcmp(o1.data, o2.data, 11), "the same token");
	is_int(action_apply_ctx(a, &c, -1, "1", 1, &o1), 0, "a short value");
	is_int(c.unfit, 1, "counted in the context");
	ok(action_keyed(a) && action_keyed(&detok->rules[0].action), "tokenize actions are keyed");
	action_ctx_free(&c);
	ok(c.ff1 == NULL, "freed");
	mm_buf_free(&o1);
	mm_buf_free(&o2);
}

int main(void)
{
	setenv("MM_TOK_KEY", KEY, 1);
	tok = mkpol("tokenize");
	detok = mkpol("detokenize");
	test_formats();
	test_gzip();
	test_unfit();
	test_ctx();
	policy_unref(tok);
	policy_unref(detok);
	return tap_done();
}
