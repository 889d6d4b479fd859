/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP/2 and gRPC framing path on arbitrary bytes. Input: 2 bytes (big-endian) giving the
 * length L of the client's part, a policy selector, a chunk size, then L bytes the app sends
 * after the connection preface, then what the upstream sends. Both streams are fed
 * interleaved in chunks (a random split), both sessions pumped after each feed, then both
 * sides see eof. Invariants: no crash or sanitizer report, the bytes the agent holds stay
 * within its bounds (streams × (queue + window + one gRPC message)), and a cut is a clean
 * error, never a hang (the loop is bounded by the input).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "h2.h"
#include "policy.h"

#define RULES                                                                                     \
	"{\"name\":\"ssn\",\"fields\":[\"$..ssn\"],\"action\":{\"type\":\"replace\","             \
	"\"value\":\"<ssn>\"}},{\"name\":\"e\",\"entities\":[\"CREDIT_CARD\",\"EMAIL_ADDRESS\"]," \
	"\"action\":{\"type\":\"mask\",\"keepLast\":4}},{\"name\":\"auth\",\"headers\":"          \
	"[\"authorization\"],\"action\":{\"type\":\"redact\"}}"

#define POLICY(extra)                                                          \
	"{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\"," \
	"\"metadata\":{\"name\":\"f\"},\"spec\":{" extra "\"rules\":[" RULES "]}}"

static const char *const texts[] = {
	POLICY("\"onError\":\"block\","),
	POLICY("\"onError\":\"fallback\",\"directions\":[\"request\",\"response\"],"),
	POLICY("\"onError\":\"pass\","),
	POLICY("\"mode\":\"observe\","),
};
#define N_POL (sizeof(texts) / sizeof(texts[0]))
static struct policy *pols[N_POL];

static struct policy *policy_for(void *ctx, uint32_t dir)
{
	struct policy *p = ctx;
	if (!p || (dir != ~0u && !(p->directions & dir)))
		return NULL;
	return policy_ref(p);
}

static int sink(void *ctx, const char *p, size_t n)
{
	struct mm_buf *b = ctx;
	volatile unsigned char sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += (unsigned char)p[i]; /* every byte handed out must be readable */
	(void)sum;
	b->len = 0; /* what the peers would read: dropped, only counted */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	if (!pols[0])
		for (size_t i = 0; i < N_POL; i++) {
			struct policy_errors e = {0};
			pols[i] = policy_parse(texts[i], strlen(texts[i]), "fuzz", &e);
			policy_errors_free(&e);
			if (!pols[i])
				abort();
		}
	size_t L = (size_t)data[0] << 8 | data[1];
	unsigned sel = data[2];
	size_t chunk = 1 + data[3] % 97;
	data += 4;
	size_t n = size - 4;
	if (L > n)
		L = n;
	struct policy *p = (sel & 7) < N_POL ? pols[sel & 7] : NULL;
	struct mm_buf out_cli = {0}, out_srv = {0};
	struct http_hooks hooks = {.policy_for = policy_for, .ctx = p};
	struct h2_io io = {sink, &out_cli, sink, &out_srv};
	struct h2_limits lim = {.max_grpc_message = 16 * 1024};
	struct h2_conn *c = h2_conn_new(&hooks, &io, &lim);
	if (!c)
		abort();
	int r = h2_conn_feed(c, POLICY_DIR_REQUEST, H2_PREFACE, H2_PREFACE_LEN);
	const uint8_t *src[2] = {data, data + L};
	size_t len[2] = {L, n - L}, off[2] = {0, 0};
	uint32_t dirs[2] = {POLICY_DIR_REQUEST, POLICY_DIR_RESPONSE};
	while (!r && (off[0] < len[0] || off[1] < len[1])) {
		for (int d = 0; d < 2 && !r; d++) {
			if (off[d] >= len[d])
				continue;
			size_t k = len[d] - off[d] < chunk ? len[d] - off[d] : chunk;
			r = h2_conn_feed(c, dirs[d], src[d] + off[d], k);
			off[d] += k;
			if (!r)
				r = h2_conn_pump(c, sel & 0x80 ? 1024 : SIZE_MAX, SIZE_MAX);
			/* 100 streams, each a queue below 64 KiB + a window, a 16 KiB message */
			if (h2_conn_buffered(c) > 100u * (64 + 64 + 2 * 16 + 16) * 1024)
				abort();
		}
	}
	if (!r) {
		h2_conn_eof(c, POLICY_DIR_RESPONSE);
		h2_conn_pump(c, SIZE_MAX, SIZE_MAX);
	}
	h2_conn_free(c);
	mm_buf_free(&out_cli);
	mm_buf_free(&out_srv);
	return 0;
}
