/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP framing on arbitrary bytes. data[0] picks where the input splits into a request and a
 * response stream, data[1] the policy, the chunk size and the limits; the two streams are fed
 * interleaved in chunks, then both sides see eof. With no policy, in observe mode and in a
 * direction the policy does not cover, the output must be a prefix of the input (identity when
 * nothing failed) unless the session changed it on purpose: an upgrade request sent on without
 * Upgrade (tunnels: block) or its own HTTP answer to the client (which goes, as in the proxy,
 * where responses go); the buffered bytes must stay within the limits. The same input is run a
 * second time with the caller moving what http_session_passthrough allows (the proxy's splice
 * path): both runs must give the same results, and the same bytes (up to an error).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "http.h"
#include "policy.h"

#define RULES                                                                                      \
	"{\"name\":\"ssn\",\"fields\":[\"$..ssn\"],\"action\":{\"type\":\"mask\",\"keepLast\":4}}" \
	","                                                                                        \
	"{\"name\":\"ents\",\"entities\":[\"CREDIT_CARD\",\"US_SSN\",\"EMAIL_ADDRESS\"],"          \
	"\"action\":{\"type\":\"mask\",\"keepLast\":4}},"                                          \
	"{\"name\":\"auth\",\"headers\":[\"Authorization\"],\"action\":{\"type\":\"redact\"}},"    \
	"{\"name\":\"info\",\"headers\":[\"X-Info\"],\"entities\":[\"EMAIL_ADDRESS\"],"            \
	"\"action\":{\"type\":\"replace\",\"value\":\"[e]\"}}"

#define POLICY(dirs, mode, onerr)                                                    \
	"{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","       \
	"\"metadata\":{\"name\":\"f\"},\"spec\":{\"mode\":\"" mode "\","             \
	"\"selector\":{\"destinations\":[{\"port\":80}]},\"directions\":[" dirs "]," \
	"\"onError\":\"" onerr "\",\"rules\":[" RULES "]}}"

static const char *const policy_texts[] = {
	POLICY("\"response\"", "enforce", "block"),
	POLICY("\"request\",\"response\"", "enforce", "fallback"),
	POLICY("\"response\"", "observe", "pass"),
	POLICY("\"request\",\"response\"", "enforce", "pass"),
};
#define N_POLICIES (sizeof(policy_texts) / sizeof(policy_texts[0]))

static struct policy *policies[N_POLICIES];

struct out {
	struct mm_buf b;
};

struct fctx {
	struct policy *pol;
	struct out *resp_out; /* the client's side: responses and the session's own answers */
	bool altered[2]; /* the session changed the bytes of a direction on purpose */
};

static struct policy *policy_for(void *ctx, uint32_t dir)
{
	struct fctx *c = ctx;
	if (c->pol && dir != ~0u && !(c->pol->directions & dir))
		return NULL; /* as the proxy: a direction the policy does not mask has none */
	return c->pol ? policy_ref(c->pol) : NULL;
}

static void message_done(void *ctx, const struct http_message_info *info)
{
	struct fctx *c = ctx;
	if (info->stats && info->stats->n_rules && !info->stats->rules)
		abort();
	if (info->tunnel == HTTP_TUNNEL_STRIPPED)
		c->altered[0] = true;
	if (info->reply_status)
		c->altered[1] = true;
}

static int reply(void *ctx, const char *p, size_t n)
{
	struct fctx *c = ctx;
	c->altered[1] = true;
	return mm_buf_append(&c->resp_out->b, p, n);
}

static int sink(void *ctx, const char *p, size_t n)
{
	struct out *o = ctx;
	volatile unsigned char sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += (unsigned char)p[i]; /* every byte handed out must be readable */
	(void)sum;
	return mm_buf_append(&o->b, p, n);
}

/*
 * The same k bytes as one feed, with the caller moving what http_session_passthrough allows
 * (the proxy's splice path) and the rest fed as it comes, so that both runs consume the same
 * input per step (a masked body, never passed through, is fed exactly as in the other run:
 * its re-chunking follows the feeds).
 */
static int feed_skipping(struct http_session *s, uint32_t dir, const char *p, size_t k,
			 struct out *o)
{
	int rc = 0;
	for (size_t i = 0; i < k && !rc;) {
		uint64_t pt = http_session_passthrough(s, dir);
		size_t m = pt && pt < k - i ? (size_t)pt : k - i;
		if (pt) {
			rc = sink(o, p + i, m);
			rc = rc ? rc : http_session_skip(s, dir, m, sink, o);
		} else {
			rc = http_session_feed(s, dir, p + i, m, sink, o);
		}
		i += m;
	}
	return rc;
}

/*
 * Feed both streams interleaved in chunks, then eof. skip: what http_session_passthrough
 * allows is appended by the caller and reported with http_session_skip (the proxy's splice
 * path) instead of being fed.
 */
static void run(struct fctx *fc, const struct http_limits *lim, const char *const src[2],
		const size_t len[2], size_t chunk, bool skip, struct out out[2], int rc[2])
{
	uint32_t dirs[2] = {POLICY_DIR_REQUEST, POLICY_DIR_RESPONSE};
	size_t off[2] = {0, 0};
	fc->resp_out = &out[1];
	struct http_hooks hooks = {
		.policy_for = policy_for, .message_done = message_done, .reply = reply, .ctx = fc};
	struct http_session *s = http_session_new(&hooks, lim);
	if (!s)
		abort();
	size_t max_head = lim->max_head ? lim->max_head : 64 * 1024;
	/* what a session may hold: a body to an HTTP/1.0 server up to hold_body10 */
	size_t hold = lim->hold_body10 ? lim->hold_body10 : 1024 * 1024;
	if (lim->hold_body > hold)
		hold = lim->hold_body;
	rc[0] = rc[1] = 0;
	while ((off[0] < len[0] && !rc[0]) || (off[1] < len[1] && !rc[1])) {
		for (int d = 0; d < 2; d++) {
			if (off[d] >= len[d] || rc[d])
				continue;
			size_t k = len[d] - off[d] < chunk ? len[d] - off[d] : chunk;
			if (skip)
				rc[d] = feed_skipping(s, dirs[d], src[d] + off[d], k, &out[d]);
			else
				rc[d] = http_session_feed(s, dirs[d], src[d] + off[d], k, sink,
							  &out[d]);
			off[d] += k;
			/* the held body may overshoot by one engine output piece */
			if (http_session_buffered(s, dirs[d]) > 3 * (max_head + hold) + 65536)
				abort();
		}
	}
	/* An h2c switch hands the server's bytes after its 101 over (to h2.c in the proxy). */
	const uint8_t *set;
	size_t setn;
	bool head;
	struct mm_buf rest = {0};
	if (http_session_h2c(s, &set, &setn, &head, &rest)) {
		if (setn % 6 || setn > 512)
			abort();
		mm_buf_append(&out[1].b, rest.data, rest.len);
		mm_buf_free(&rest);
		http_session_free(s);
		return;
	}
	for (int d = 0; d < 2; d++)
		if (!rc[d])
			rc[d] = http_session_eof(s, dirs[d], sink, &out[d]);
	http_session_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	if (!policies[0]) {
		for (size_t i = 0; i < N_POLICIES; i++) {
			struct policy_errors e = {0};
			policies[i] =
				policy_parse(policy_texts[i], strlen(policy_texts[i]), "fuzz", &e);
			policy_errors_free(&e);
			if (!policies[i])
				abort();
		}
	}
	unsigned sel = data[1];
	struct policy *pol = (sel & 7) < N_POLICIES ? policies[sel & 7] : NULL;
	size_t chunk = 1 + ((sel >> 3) & 7) * 9;
	struct http_limits lim = {
		.max_head = sel & 0x40 ? 256 : 0,
		.hold_body = sel & 0x80 ? 16 : 0,
	};
	const char *in = (const char *)data + 2;
	size_t n = size - 2;
	size_t split = n * data[0] / 256;
	const char *const src[2] = {in, in + split};
	const size_t len[2] = {split, n - split};
	uint32_t dirs[2] = {POLICY_DIR_REQUEST, POLICY_DIR_RESPONSE};
	/* Byte identity is required with no policy, in observe mode, and where not covered. */
	bool ident[2];
	for (int d = 0; d < 2; d++)
		ident[d] = !pol || pol->mode == POLICY_MODE_OBSERVE || !(pol->directions & dirs[d]);
	struct out out[2] = {{{0}}, {{0}}}, skipped[2] = {{{0}}, {{0}}};
	int rc[2], rc_skip[2];
	struct fctx fc = {.pol = pol}, fc_skip = {.pol = pol};
	run(&fc, &lim, src, len, chunk, false, out, rc);
	run(&fc_skip, &lim, src, len, chunk, true, skipped, rc_skip);
	for (int d = 0; d < 2; d++) {
		/*
		 * Moving pass-through bytes outside the session changes nothing. After an error
		 * only a prefix counts: what a failing feed call produced is dropped, and the two
		 * runs hand the session different spans.
		 */
		size_t common = out[d].b.len < skipped[d].b.len ? out[d].b.len : skipped[d].b.len;
		if (rc[d] != rc_skip[d] || (!rc[d] && out[d].b.len != skipped[d].b.len) ||
		    (common && memcmp(out[d].b.data, skipped[d].b.data, common)))
			abort();
		if (!ident[d] || fc.altered[d])
			continue;
		if (out[d].b.len > len[d] ||
		    memcmp(out[d].b.data ? out[d].b.data : "", src[d], out[d].b.len))
			abort(); /* pass-through must be byte-identical */
		if (!rc[d] && out[d].b.len != len[d])
			abort();
	}
	for (int d = 0; d < 2; d++) {
		mm_buf_free(&out[d].b);
		mm_buf_free(&skipped[d].b);
	}
	return 0;
}
