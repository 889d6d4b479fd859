// SPDX-License-Identifier: Apache-2.0
/*
 * HTTP/1.1 framing: byte identity of pass-through for every framing, independence from how
 * the input is split, smuggling defences, and masking with exact re-framing.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "tap.h"
#include "buf.h"
#include "http.h"
#include "mask.h"
#include "policy.h"

/* ---- harness ---- */

#define MAX_LOG 512

struct logent {
	uint32_t dir;
	int status;
	bool masked, reframed;
	int outcome, reason;
	int tunnel, reply_status;
	uint64_t values, header_values;
	uint64_t rule_values[8];
	const struct policy *pol;
};

struct ctx {
	struct policy *req_pol; /* returned for every request (may be NULL) */
	struct policy *resp_seq[8]; /* responses take these in turn, then resp_pol */
	int n_seq, seq_i;
	struct policy *resp_pol;
	int calls[2];
	struct logent log[MAX_LOG];
	int n_log;
	int done[2];
	struct mm_buf *reply_to; /* the session's own answers go where responses go (the client) */
	size_t reply_len; /* bytes it answered through the reply hook */
};

static int di(uint32_t dir)
{
	return dir == POLICY_DIR_RESPONSE;
}

static struct policy *policy_for(void *vctx, uint32_t dir)
{
	struct ctx *c = vctx;
	struct policy *p;
	if (dir != POLICY_DIR_REQUEST && dir != POLICY_DIR_RESPONSE) {
		/* the connection's policy, whatever the direction */
		p = c->resp_pol ? c->resp_pol : c->req_pol;
		return p ? policy_ref(p) : NULL;
	}
	c->calls[di(dir)]++;
	if (dir == POLICY_DIR_REQUEST)
		p = c->req_pol;
	else if (c->seq_i < c->n_seq)
		p = c->resp_seq[c->seq_i++];
	else
		p = c->resp_pol;
	return p ? policy_ref(p) : NULL;
}

static void message_done(void *vctx, const struct http_message_info *info)
{
	struct ctx *c = vctx;
	c->done[di(info->direction)]++;
	if (c->n_log == MAX_LOG)
		return;
	struct logent *e = &c->log[c->n_log++];
	e->dir = info->direction;
	e->status = info->status;
	e->masked = info->masked;
	e->reframed = info->reframed;
	e->outcome = info->outcome;
	e->reason = info->reason;
	e->tunnel = info->tunnel;
	e->reply_status = info->reply_status;
	e->values = info->stats ? info->stats->values : 0;
	e->header_values = info->header_values;
	e->pol = info->policy;
	for (size_t i = 0; info->header_rule_values && i < info->policy->n_rules && i < 8; i++)
		e->rule_values[i] = info->header_rule_values[i];
}

static int sink(void *ctx, const char *p, size_t n)
{
	return mm_buf_append(ctx, p, n);
}

static int reply(void *vctx, const char *p, size_t n)
{
	struct ctx *c = vctx;
	c->reply_len += n;
	return mm_buf_append(c->reply_to, p, n);
}

struct step {
	uint32_t dir;
	const char *data;
	size_t len; /* 0: strlen(data) */
	bool eof; /* http_session_eof after the data */
};

#define REQ POLICY_DIR_REQUEST
#define RESP POLICY_DIR_RESPONSE

struct run {
	struct mm_buf out[2];
	int rc;
	bool tunnel;
};

/*
 * SPLIT_SKIP: as the proxy's zero-copy path does, whatever http_session_passthrough allows
 * is appended to the output by the caller and reported with http_session_skip; the rest is
 * fed one byte at a time, so the pass-through is asked for at every offset.
 */
#define SPLIT_SKIP (-2)

static int feed_skipping(struct http_session *s, uint32_t dir, const char *p, size_t len,
			 struct mm_buf *o)
{
	int rc = 0;
	for (size_t k = 0; k < len && !rc;) {
		uint64_t pt = http_session_passthrough(s, dir);
		if (!pt) {
			rc = http_session_feed(s, dir, p + k, 1, sink, o);
			k++;
			continue;
		}
		size_t m = pt < len - k ? (size_t)pt : len - k;
		rc = mm_buf_append(o, p + k, m);
		if (!rc)
			rc = http_session_skip(s, dir, m, sink, o);
		k += m;
	}
	return rc;
}

/*
 * Feed a script; split: 0 whole, k > 0 each step cut at k, -1 one byte at a time,
 * SPLIT_SKIP pass-through by the caller.
 */
static void run_script(struct ctx *c, const struct http_limits *lim, const struct step *st,
		       size_t n, long split, struct run *r)
{
	struct http_hooks hooks = {
		.policy_for = policy_for, .message_done = message_done, .reply = reply, .ctx = c};
	struct http_session *s = http_session_new(&hooks, lim);
	memset(r, 0, sizeof(*r));
	c->reply_to = &r->out[1];
	c->reply_len = 0;
	for (size_t i = 0; i < n && !r->rc; i++) {
		const char *p = st[i].data;
		size_t len = st[i].len ? st[i].len : strlen(p);
		struct mm_buf *o = &r->out[di(st[i].dir)];
		if (split == 0) {
			r->rc = http_session_feed(s, st[i].dir, p, len, sink, o);
		} else if (split == SPLIT_SKIP) {
			r->rc = feed_skipping(s, st[i].dir, p, len, o);
		} else if (split < 0) {
			for (size_t k = 0; k < len && !r->rc; k++)
				r->rc = http_session_feed(s, st[i].dir, p + k, 1, sink, o);
		} else {
			size_t k = (size_t)split < len ? (size_t)split : len;
			r->rc = http_session_feed(s, st[i].dir, p, k, sink, o);
			if (!r->rc)
				r->rc = http_session_feed(s, st[i].dir, p + k, len - k, sink, o);
		}
		if (!r->rc && st[i].eof)
			r->rc = http_session_eof(s, st[i].dir, sink, o);
	}
	r->tunnel = http_session_is_tunnel(s);
	http_session_free(s);
}

static void run_free(struct run *r)
{
	mm_buf_free(&r->out[0]);
	mm_buf_free(&r->out[1]);
}

static void concat(const struct step *st, size_t n, uint32_t dir, struct mm_buf *b)
{
	for (size_t i = 0; i < n; i++)
		if (st[i].dir == dir)
			mm_buf_append(b, st[i].data, st[i].len ? st[i].len : strlen(st[i].data));
}

static bool same(const struct mm_buf *a, const struct mm_buf *b)
{
	return a->len == b->len && (!a->len || memcmp(a->data, b->data, a->len) == 0);
}

/*
 * Pass-through (no policy): the output of each direction is the input, whole, split at every
 * offset, and one byte at a time; `msgs` messages are reported per direction.
 */
static void check_identity(const char *name, const struct step *st, size_t n, int req_msgs,
			   int resp_msgs, bool tunnel)
{
	struct mm_buf want[2] = {0};
	concat(st, n, REQ, &want[0]);
	concat(st, n, RESP, &want[1]);
	size_t maxlen = 0;
	for (size_t i = 0; i < n; i++) {
		size_t l = st[i].len ? st[i].len : strlen(st[i].data);
		maxlen = l > maxlen ? l : maxlen;
	}
	int bad = 0;
	long first_bad = -2;
	for (long split = SPLIT_SKIP; split <= (long)maxlen; split++) {
		struct ctx c = {0};
		struct run r;
		run_script(&c, NULL, st, n, split, &r);
		bool good = r.rc == 0 && same(&r.out[0], &want[0]) && same(&r.out[1], &want[1]) &&
			    c.done[0] == req_msgs && c.done[1] == resp_msgs && r.tunnel == tunnel;
		if (!good && !bad++) {
			first_bad = split;
			printf("# split %ld: rc %d, out %zu/%zu want %zu/%zu, done %d/%d\n", split,
			       r.rc, r.out[0].len, r.out[1].len, want[0].len, want[1].len,
			       c.done[0], c.done[1]);
		}
		run_free(&r);
		if (split == 0 && maxlen > 2000)
			split = (long)maxlen -
				2000; /* long streams: whole, bytewise, last offsets */
	}
	ok(!bad, "%s: byte-identical at every split and with caller pass-through", name);
	if (bad)
		printf("#   first bad split %ld\n", first_bad);
	mm_buf_free(&want[0]);
	mm_buf_free(&want[1]);
}

/*
 * With a policy: the output does not depend on how the input is split (every offset of each
 * step, and one byte at a time, against the whole feed).
 */
static void normalize(struct mm_buf *b);

static void check_splits(const char *name, struct policy *p, const struct http_limits *lim,
			 const struct step *st, size_t n, bool decode)
{
	struct ctx c0 = {.resp_pol = p, .req_pol = p};
	struct run whole;
	run_script(&c0, lim, st, n, 0, &whole);
	if (decode)
		normalize(&whole.out[1]);
	size_t maxlen = 0;
	for (size_t i = 0; i < n; i++) {
		size_t l = st[i].len ? st[i].len : strlen(st[i].data);
		maxlen = l > maxlen ? l : maxlen;
	}
	int bad = 0;
	for (long split = SPLIT_SKIP; split <= (long)maxlen && !bad; split++) {
		struct ctx c = {.resp_pol = p, .req_pol = p};
		struct run r;
		run_script(&c, lim, st, n, split, &r);
		if (decode)
			normalize(&r.out[1]);
		if (r.rc != whole.rc || !same(&r.out[0], &whole.out[0]) ||
		    !same(&r.out[1], &whole.out[1]) || c.n_log != c0.n_log) {
			bad++;
			printf("# split %ld: rc %d/%d, out %zu/%zu vs %zu/%zu\n", split, r.rc,
			       whole.rc, r.out[0].len, r.out[1].len, whole.out[0].len,
			       whole.out[1].len);
		}
		run_free(&r);
	}
	ok(!bad && whole.rc == 0 && whole.out[1].len &&
		   !(decode && memmem(whole.out[1].data, whole.out[1].len, "<unparsed>", 10)),
	   "%s: same output at every split and with caller pass-through", name);
	run_free(&whole);
}

/* ---- a client-side parser of the output ---- */

struct parsed {
	char head[4096];
	int status;
	long cl; /* -1 none */
	bool chunked;
	struct mm_buf body;
	char trailers[512];
	size_t used;
};

static const char *hdr_find(const char *head, const char *name)
{
	size_t nl = strlen(name);
	for (const char *p = strstr(head, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n"))
		if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':')
			return p + 2 + nl + 1 + strspn(p + 3 + nl, " ");
	return NULL;
}

/* Parse one message from p[0, n) (close-delimited when neither CL nor chunked). 0 or -1. */
static int parse_msg(const char *p, size_t n, bool response, struct parsed *m)
{
	memset(m, 0, sizeof(*m));
	m->cl = -1;
	const char *e = memmem(p, n, "\r\n\r\n", 4);
	if (!e || (size_t)(e - p) + 4 >= sizeof(m->head))
		return -1;
	size_t hl = (size_t)(e - p) + 4;
	memcpy(m->head, p, hl);
	if (response)
		m->status = atoi(m->head + 9);
	const char *v = hdr_find(m->head, "content-length");
	if (v)
		m->cl = atol(v);
	v = hdr_find(m->head, "transfer-encoding");
	m->chunked = v && strncasecmp(v, "chunked", 7) == 0;
	const char *b = p + hl, *end = p + n;
	if (m->chunked) {
		for (;;) {
			char *x;
			unsigned long sz = strtoul(b, &x, 16);
			const char *le = memmem(b, (size_t)(end - b), "\r\n", 2);
			if (!le)
				return -1;
			b = le + 2;
			if (!sz)
				break;
			if ((size_t)(end - b) < sz + 2 || memcmp(b + sz, "\r\n", 2))
				return -1;
			mm_buf_append(&m->body, b, sz);
			b += sz + 2;
		}
		const char *te = memmem(b - 2, (size_t)(end - b + 2), "\r\n\r\n", 4);
		if (!te)
			return -1;
		size_t tl = (size_t)(te + 2 - b);
		if (tl < sizeof(m->trailers))
			memcpy(m->trailers, b, tl);
		b = te + 4;
	} else if (m->cl >= 0) {
		if ((size_t)(end - b) < (size_t)m->cl)
			return -1;
		mm_buf_append(&m->body, b, (size_t)m->cl);
		b += m->cl;
	} else {
		mm_buf_append(&m->body, b, (size_t)(end - b));
		b = end;
	}
	m->used = (size_t)(b - p);
	return 0;
}

/* Replace a stream of responses with their heads, decoded bodies and trailers. */
static void normalize(struct mm_buf *b)
{
	struct mm_buf o = {0};
	size_t off = 0;
	struct parsed m;
	while (off < b->len && !parse_msg(b->data + off, b->len - off, true, &m) && m.used) {
		mm_buf_puts(&o, m.head);
		mm_buf_append(&o, m.body.data, m.body.len);
		mm_buf_puts(&o, m.trailers);
		mm_buf_free(&m.body);
		off += m.used;
	}
	if (off < b->len) {
		mm_buf_puts(&o, "<unparsed>");
		mm_buf_append(&o, b->data + off, b->len - off);
	}
	mm_buf_free(b);
	*b = o;
}

/* ---- policies ---- */

#define POLICY(dirs, mode, onerr, rules)                                               \
	"{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","         \
	"\"metadata\":{\"name\":\"t\"},\"spec\":{\"mode\":\"" mode "\","               \
	"\"selector\":{\"destinations\":[{\"port\":8080}]},\"directions\":[" dirs "]," \
	"\"onError\":\"" onerr "\",\"rules\":[" rules "]}}"

#define RULES                                                                                     \
	"{\"name\":\"ssn\",\"fields\":[\"$..ssn\"],\"action\":{\"type\":\"mask\",\"keepLast\":4," \
	"\"char\":\"X\"}},"                                                                       \
	"{\"name\":\"ents\",\"entities\":[\"CREDIT_CARD\",\"US_SSN\"],\"action\":"                \
	"{\"type\":\"mask\",\"keepLast\":4}},"                                                    \
	"{\"name\":\"auth\",\"headers\":[\"Authorization\"],\"action\":{\"type\":\"redact\"}},"   \
	"{\"name\":\"tok\",\"headers\":[\"X-Token\"],\"action\":{\"type\":\"mask\","              \
	"\"keepLast\":2}},"                                                                       \
	"{\"name\":\"info\",\"headers\":[\"X-Info\"],\"entities\":[\"EMAIL_ADDRESS\"],"           \
	"\"action\":{\"type\":\"replace\",\"value\":\"[email]\"}}"

static struct policy *mkpol(const char *json)
{
	struct policy_errors e = {0};
	struct policy *p = policy_parse(json, strlen(json), "test", &e);
	if (!p)
		policy_errors_print(stdout, "# test", &e);
	policy_errors_free(&e);
	return p;
}

/* What the engine makes of a body on its own: the reference for re-framed output. */
static void engine_ref(struct policy *p, uint32_t dir, const char *ct, const char *ce,
		       const void *in, size_t len, struct mm_buf *out)
{
	struct mask_opts o = {
		.policy = p, .direction = dir, .content_type = ct, .content_encoding = ce};
	if (mask_buffer(&o, in, len, out, NULL))
		out->len = 0;
}

#define JSON_BODY "{\"name\":\"Ann\",\"ssn\":\"123-45-6789\",\"card\":\"4111111111111111\"}"

/* ---- pass-through tests ---- */

static void test_passthrough(void)
{
	const struct step cl[] = {
		{REQ, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /b "
		      "HTTP/1.1\r\nHost: x\r\n\r\n"},
		{RESP, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 404 Not "
		       "Found\r\ncontent-length: 0\r\n\r\n"},
	};
	check_identity("content-length", cl, 2, 2, 2, false);

	const struct step ch[] = {
		{REQ, "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nwiki\r\n"
		      "5 ; a=\"b\"\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n"},
		{RESP, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nA\r\n0123456789\r\n"
		       "0;last\r\nX-Sum: 1\r\nX-Two: 2\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding:"
		       " chunked\r\n\r\n0\r\n\r\n"},
	};
	struct step ch2[3] = {ch[0], {REQ, "GET /d HTTP/1.1\r\n\r\n"}, ch[1]};
	check_identity("chunked with trailers and extensions", ch2, 3, 2, 2, false);

	/* 100 pipelined requests and responses in one buffer each */
	struct mm_buf rq = {0}, rs = {0};
	for (int i = 0; i < 100; i++) {
		char b[256];
		snprintf(b, sizeof(b), "GET /item/%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
		mm_buf_puts(&rq, b);
		if (i % 2)
			snprintf(b, sizeof(b), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%0*d",
				 4 + i % 7, 4 + i % 7, i);
		else
			snprintf(
				b, sizeof(b),
				"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n%03d\r\n"
				"0\r\n\r\n",
				i);
		mm_buf_puts(&rs, b);
	}
	mm_buf_putc(&rq, 0);
	mm_buf_putc(&rs, 0);
	const struct step pipe[] = {{REQ, rq.data}, {RESP, rs.data}};
	check_identity("keep-alive, 100 pipelined", pipe, 2, 100, 100, false);
	mm_buf_free(&rq);
	mm_buf_free(&rs);

	const struct step head[] = {
		{REQ, "HEAD /big HTTP/1.1\r\n\r\nGET /small HTTP/1.1\r\n\r\n"},
		{RESP, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nHTTP/1.1 200 OK\r\n"
		       "Content-Length: 2\r\n\r\nhi"},
	};
	check_identity("HEAD with Content-Length, no body", head, 2, 2, 2, false);

	const struct step nob[] = {
		{REQ,
		 "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\nIf-None-Match: \"x\"\r\n\r\nGET /3 "
		 "HTTP/1.1\r\n\r\n"},
		{RESP, "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length:"
		       " 50\r\nETag: \"x\"\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz"},
	};
	check_identity("204 and 304", nob, 2, 3, 3, false);

	const struct step cont[] = {
		{REQ, "PUT /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"},
		{RESP, "HTTP/1.1 100 Continue\r\n\r\n"},
		{REQ, "dataGET /n HTTP/1.1\r\n\r\n"},
		{RESP, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 201 "
		       "Created\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: "
		       "3\r\n\r\nyes"},
	};
	check_identity("1xx and Expect: 100-continue", cont, 4, 2, 4, false);

	const struct step up[] = {
		{REQ, "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"},
		{RESP, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "
		       "websocket\r\n\r\n\x81\x05hello\x00\xff garbage HTTP"},
		{REQ, "\x81\x85\x01\x02\x03\x04 not http at all\r\n\r\n", 0, true},
		{RESP, "more raw", 0, true},
	};
	check_identity("101 upgrade then raw bytes", up, 4, 1, 1, true);

	const struct step conn[] = {
		{REQ, "CONNECT db:443 HTTP/1.1\r\nHost: db:443\r\n\r\n"},
		{RESP, "HTTP/1.1 200 Connection established\r\n\r\n"},
		{REQ, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"},
		{RESP, "\x16\x03\x03\x00\x7a\x02\x00\x00"},
	};
	check_identity("CONNECT tunnel", conn, 4, 1, 1, true);

	const struct step h10[] = {
		{REQ, "GET /old HTTP/1.0\r\n\r\n"},
		{RESP,
		 "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end\r\n\r\n"
		 "HTTP/1.1 200 OK\r\n",
		 0, true},
	};
	check_identity("HTTP/1.0 close-delimited", h10, 2, 1, 1, false);

	/* The close-delimited message is only reported once the server closes. */
	struct ctx c = {0};
	struct run r;
	run_script(&c, NULL,
		   (struct step[]){{REQ, "GET / HTTP/1.1\r\n\r\n"},
				   {RESP, "HTTP/1.1 200 OK\r\n\r\nbody"}},
		   2, 0, &r);
	is_int(c.done[1], 0, "close-delimited body not done before eof");
	run_free(&r);

	const struct step nh[] = {
		{REQ, "\x16\x03\x01\x00\x05hello"},
		{RESP, "\x16\x03\x03\x00\x02hi"},
	};
	check_identity("not HTTP, no policy: tunnel", nh, 2, 1, 0, true);
}

struct counter {
	size_t bytes;
	int calls;
	const char *last;
};

static int count_sink(void *ctx, const char *p, size_t n)
{
	struct counter *c = ctx;
	c->bytes += n;
	c->calls++;
	c->last = p;
	return 0;
}

/* A body with no policy is not copied or held: each input span goes straight to the sink. */
static void test_zero_copy(void)
{
	struct ctx c = {0};
	struct http_hooks hooks = {
		.policy_for = policy_for, .message_done = message_done, .ctx = &c};
	struct http_session *s = http_session_new(&hooks, NULL);
	struct counter k = {0};
	const char *rq = "GET / HTTP/1.1\r\n\r\n";
	const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n";
	char *piece = malloc(65536);
	memset(piece, 'x', 65536);
	int rc = http_session_feed(s, REQ, rq, strlen(rq), count_sink, &k);
	rc = rc ? rc : http_session_feed(s, RESP, h, strlen(h), count_sink, &k);
	bool direct = true, unbuffered = true;
	for (int i = 0; i < 16 && !rc; i++) {
		int calls = k.calls;
		rc = http_session_feed(s, RESP, piece, 65536, count_sink, &k);
		direct &= k.calls == calls + 1 && k.last == piece;
		unbuffered &= http_session_buffered(s, RESP) == 0;
	}
	ok(!rc && direct && k.bytes == strlen(rq) + strlen(h) + (1u << 20),
	   "pass-through body: one sink call per input, the caller's own bytes");
	ok(unbuffered && c.done[1] == 1, "pass-through body: nothing buffered");
	free(piece);
	http_session_free(s);
}

/*
 * What the session lets a caller move itself (the proxy's splice(2) path): the rest of an
 * uncovered body or chunk, any amount on a tunnel or a close-delimited body, nothing inside a
 * head or a covered body; more than allowed is refused.
 */
static void test_caller_passthrough(struct policy *resp)
{
	struct ctx c = {.resp_pol = NULL};
	struct http_hooks hooks = {
		.policy_for = policy_for, .message_done = message_done, .ctx = &c};
	struct http_session *s = http_session_new(&hooks, NULL);
	struct mm_buf o = {0};
	const char *rq = "GET / HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\nGET /z HTTP/1.0\r\n\r\n";
	int rc = http_session_feed(s, REQ, rq, strlen(rq), sink, &o);
	is_int((int)http_session_passthrough(s, REQ), 0, "caller pass-through: 0 at a head");
	/* A head may be followed by a compressed body in the same read: small reads until known. */
	is_int((int)http_session_read_hint(s, RESP, 65536), 4096, "read hint: 4 KiB at a head");
	const char *h = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789";
	rc = rc ? rc : http_session_feed(s, RESP, h, strlen(h), sink, &o);
	is_int((int)http_session_read_hint(s, RESP, 65536), 65536,
	       "read hint: whole reads in a body not compressed");
	ok(!rc && http_session_passthrough(s, RESP) == 990,
	   "caller pass-through: the rest of an uncovered Content-Length body");
	is_int(http_session_skip(s, RESP, 991, sink, &o), -EINVAL,
	       "caller pass-through: more than the body is refused");
	rc = http_session_skip(s, RESP, 500, sink, &o);
	rc = rc ? rc : http_session_skip(s, RESP, 490, sink, &o);
	ok(!rc && c.done[1] == 1 && http_session_passthrough(s, RESP) == 0,
	   "caller pass-through: the message ends when its last byte is skipped");
	const char *ch = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n";
	rc = http_session_feed(s, RESP, ch, strlen(ch), sink, &o);
	ok(!rc && http_session_passthrough(s, RESP) == 16, "caller pass-through: a chunk's data");
	rc = http_session_skip(s, RESP, 16, sink, &o);
	ok(!rc && http_session_passthrough(s, RESP) == 0,
	   "caller pass-through: the chunk's CRLF is parsed again");
	const char *end = "\r\n0\r\n\r\nHTTP/1.0 200 OK\r\n\r\nuntil eof";
	rc = http_session_feed(s, RESP, end, strlen(end), sink, &o);
	ok(!rc && c.done[1] == 2 && http_session_passthrough(s, RESP) == UINT64_MAX,
	   "caller pass-through: unbounded on a close-delimited body");
	rc = http_session_skip(s, RESP, 12345, sink, &o);
	rc = rc ? rc : http_session_eof(s, RESP, sink, &o);
	ok(!rc && c.done[1] == 3, "caller pass-through: close-delimited body ends at eof");
	http_session_free(s);
	mm_buf_free(&o);

	/* A covered body is never handed to the caller. */
	struct ctx c2 = {.resp_pol = resp};
	hooks.ctx = &c2;
	s = http_session_new(&hooks, NULL);
	rc = http_session_feed(s, REQ, rq, strlen(rq), sink, &o);
	const char *hj = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			 "Content-Length: 100\r\n\r\n{\"a\":";
	rc = rc ? rc : http_session_feed(s, RESP, hj, strlen(hj), sink, &o);
	ok(!rc && http_session_passthrough(s, RESP) == 0 &&
		   http_session_skip(s, RESP, 1, sink, &o) == -EINVAL,
	   "caller pass-through: none for a body the policy covers");
	http_session_free(s);
	mm_buf_free(&o);

	/* A tunnel: anything, both ways. */
	struct ctx c3 = {0};
	hooks.ctx = &c3;
	s = http_session_new(&hooks, NULL);
	const char *cq = "CONNECT db:5432 HTTP/1.1\r\n\r\n", *cr = "HTTP/1.1 200 OK\r\n\r\n";
	rc = http_session_feed(s, REQ, cq, strlen(cq), sink, &o);
	rc = rc ? rc : http_session_feed(s, RESP, cr, strlen(cr), sink, &o);
	ok(!rc && http_session_passthrough(s, REQ) == UINT64_MAX &&
		   http_session_passthrough(s, RESP) == UINT64_MAX &&
		   http_session_skip(s, REQ, 1 << 20, sink, &o) == 0,
	   "caller pass-through: unbounded both ways on a tunnel");
	http_session_free(s);
	mm_buf_free(&o);
}

/*
 * Each direction keeps its last body's masking stream for the next body (counted over all
 * sessions), gives it back on trim and on free, and reuses it: the second body's output is
 * the first's.
 */
static void test_spares(struct policy *resp)
{
	size_t base = http_session_spares();
	struct ctx c = {.resp_pol = resp};
	struct http_hooks hooks = {
		.policy_for = policy_for, .message_done = message_done, .ctx = &c};
	struct http_session *s[3];
	struct mm_buf out[3] = {{0}}, req_out = {0};
	const char *rq = "GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n";
	char rs[512];
	int k = snprintf(rs, sizeof(rs),
			 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu"
			 "\r\n\r\n%s",
			 strlen(JSON_BODY), JSON_BODY);
	int rc = 0;
	for (int i = 0; i < 3; i++) {
		s[i] = http_session_new(&hooks, NULL);
		rc |= http_session_feed(s[i], REQ, rq, strlen(rq), sink, &req_out);
		rc |= http_session_feed(s[i], RESP, rs, (size_t)k, sink, &out[i]);
	}
	ok(!rc && http_session_spares() == base + 3,
	   "spares: one kept per session after a body (%zu)", http_session_spares() - base);
	size_t first = out[0].len;
	rc = http_session_feed(s[0], RESP, rs, (size_t)k, sink, &out[0]);
	ok(!rc && http_session_spares() == base + 3 && out[0].len == 2 * first &&
		   !memcmp(out[0].data, out[0].data + first, first),
	   "spares: the next body reuses it, same output");
	http_session_trim(s[1]);
	ok(http_session_spares() == base + 2, "spares: trim gives it back");
	for (int i = 0; i < 3; i++) {
		http_session_free(s[i]);
		mm_buf_free(&out[i]);
	}
	ok(http_session_spares() == base, "spares: free gives them back");

	/* No more than 1024 are kept however many sessions are busy. */
	enum { MANY = 1100 };
	struct http_session **many = calloc(MANY, sizeof(*many));
	struct mm_buf o = {0};
	for (int i = 0; i < MANY; i++) {
		many[i] = http_session_new(&hooks, NULL);
		http_session_feed(many[i], REQ, rq, strlen(rq), sink, &req_out);
		http_session_feed(many[i], RESP, rs, (size_t)k, sink, &o);
		o.len = 0;
	}
	ok(http_session_spares() == 1024, "spares: at most 1024 kept (%zu with %d sessions)",
	   http_session_spares(), MANY);
	for (int i = 0; i < MANY; i++)
		http_session_free(many[i]);
	free(many);
	mm_buf_free(&o);
	mm_buf_free(&req_out);
	ok(http_session_spares() == base, "spares: all given back");
}

static void test_errors(void)
{
	static const char *const bad[] = {
		"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: "
		"chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: "
		"5\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
		"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nhello!",
		"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
		"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
		"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\nhello",
		"POST / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n",
		"POST / HTTP/1.1\r\nX: a\nY: b\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n\x16\x03\x01 not http mid-stream",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		for (int split = -1; split <= 0; split++) {
			struct ctx c = {0};
			struct run r;
			run_script(&c, NULL, (struct step[]){{REQ, bad[i]}}, 1, split, &r);
			bool any_bad =
				c.n_log > 0 && c.log[c.n_log - 1].reason == MM_REASON_BAD_HTTP;
			ok(r.rc == -EPROTO && any_bad,
			   "malformed request %zu (%s) -> -EPROTO bad_http", i,
			   split ? "bytewise" : "whole");
			run_free(&r);
		}
	}

	struct ctx c = {0};
	struct run r;
	run_script(&c, NULL,
		   (struct step[]){
			   {REQ, "GET / HTTP/1.1\r\n\r\n"},
			   {RESP, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0, true}},
		   2, 0, &r);
	is_int(r.rc, -EPROTO, "truncated body at eof -> -EPROTO");
	run_free(&r);

	memset(&c, 0, sizeof(c));
	run_script(&c, NULL,
		   (struct step[]){{REQ, "GET / HTTP/1.1\r\n\r\n"},
				   {RESP,
				    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
				    0, true}},
		   2, 0, &r);
	is_int(r.rc, -EPROTO, "truncated chunked body at eof -> -EPROTO");
	run_free(&r);

	struct http_limits lim = {.max_head = 64};
	memset(&c, 0, sizeof(c));
	run_script(&c, &lim,
		   (struct step[]){{REQ,
				    "GET / HTTP/1.1\r\nX-Long: "
				    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
				    "\r\n"}},
		   1, -1, &r);
	is_int(r.rc, -EPROTO, "head over max_head -> -EPROTO");
	is_int(r.out[0].len, 0, "nothing of an oversized head is forwarded");
	run_free(&r);
}

/* Header counts, chunk extensions and trailers (issue 16): strict, answered in HTTP. */
static void test_limits_grammar(void)
{
	struct ctx c = {0};
	struct run r;
	struct mm_buf many = {0};
	mm_buf_puts(&many, "GET / HTTP/1.1\r\n");
	for (int i = 0; i < 101; i++) {
		char h[32];
		snprintf(h, sizeof(h), "X-H%d: v\r\n", i);
		mm_buf_puts(&many, h);
	}
	mm_buf_puts(&many, "\r\n");
	run_script(&c, NULL, (struct step[]){{REQ, many.data, many.len}}, 1, 0, &r);
	ok(r.rc == -EPROTO && !r.out[0].len && strstr(r.out[1].data ? r.out[1].data : "",
						     "HTTP/1.1 431 ") &&
		   strstr(r.out[1].data, "x-meshmask-reason: limit"),
	   "101 header fields (default limit 100): answered 431, nothing forwarded");
	run_free(&r);
	struct http_limits lim = {.max_headers = 200};
	memset(&c, 0, sizeof(c));
	run_script(&c, &lim, (struct step[]){{REQ, many.data, many.len}}, 1, 0, &r);
	ok(r.rc == 0 && r.out[0].len == many.len, "the same head within max_headers 200: forwarded");
	run_free(&r);
	mm_buf_free(&many);

	memset(&c, 0, sizeof(c));
	run_script(&c, NULL,
		   (struct step[]){{REQ, "GET / HTTP/1.1\r\n\r\n"},
				   {RESP, "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"}},
		   2, 0, &r);
	ok(r.rc == 0, "a response head with 3 fields passes");
	run_free(&r);
	lim = (struct http_limits){.max_headers = 2};
	memset(&c, 0, sizeof(c));
	run_script(&c, &lim,
		   (struct step[]){{REQ, "GET / HTTP/1.1\r\n\r\n"},
				   {RESP, "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"}},
		   2, 0, &r);
	ok(r.rc == -EPROTO && strstr(r.out[1].data ? r.out[1].data : "", "HTTP/1.1 502 "),
	   "a response head over max_headers: answered 502");
	run_free(&r);

	static const char *const good_ext[] = {"5;a\r\nhello\r\n0\r\n\r\n",
					       "5 ; a = b ; c\r\nhello\r\n0\r\n\r\n",
					       "5;a=\"q \\\" ;x\"\r\nhello\r\n0;z\r\n\r\n",
					       "5\r\nhello\r\n0\r\nX-Sum: 1\r\nX-B: two\r\n\r\n"};
	static const char *const bad_ext[] = {
		"5;\r\nhello\r\n0\r\n\r\n",	    "5;=b\r\nhello\r\n0\r\n\r\n",
		"5;a=\r\nhello\r\n0\r\n\r\n",	    "5 x\r\nhello\r\n0\r\n\r\n",
		"5;a=\"b\r\nhello\r\n0\r\n\r\n",	    "5;a=b c\r\nhello\r\n0\r\n\r\n",
		"5;a\x01\r\nhello\r\n0\r\n\r\n",	    "5;a=\"\x01\"\r\nhello\r\n0\r\n\r\n",
		"5\r\nhello\r\n0\r\nContent-Length: 9\r\n\r\n",
		"5\r\nhello\r\n0\r\nTransfer-Encoding: gzip\r\n\r\n",
		"5\r\nhello\r\n0\r\nHost: evil\r\n\r\n",
		"5\r\nhello\r\n0\r\nX : 1\r\n\r\n",
		"5\r\nhello\r\n0\r\nX: 1\r\n folded\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(good_ext) / sizeof(good_ext[0]); i++) {
		char req[256];
		snprintf(req, sizeof(req), "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n%s",
			 good_ext[i]);
		for (int split = -1; split <= 0; split++) {
			memset(&c, 0, sizeof(c));
			run_script(&c, NULL, (struct step[]){{REQ, req}}, 1, split, &r);
			ok(r.rc == 0 && r.out[0].len == strlen(req),
			   "valid chunk line or trailer %zu passes unchanged (%s)", i,
			   split ? "bytewise" : "whole");
			run_free(&r);
		}
	}
	for (size_t i = 0; i < sizeof(bad_ext) / sizeof(bad_ext[0]); i++) {
		char req[256];
		snprintf(req, sizeof(req), "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n%s",
			 bad_ext[i]);
		for (int split = -1; split <= 0; split++) {
			memset(&c, 0, sizeof(c));
			run_script(&c, NULL, (struct step[]){{REQ, req}}, 1, split, &r);
			/* Neither the chunk after a bad line nor a bad trailer section is sent. */
			const char *fw = r.out[0].data ? r.out[0].data : "";
			const char *absent = i < 8 ? "hello" : strstr(bad_ext[i], "0\r\n") + 3;
			ok(r.rc == -EPROTO && !memmem(fw, r.out[0].len, absent, strlen(absent)),
			   "invalid chunk extension or trailer %zu refused, its rest not sent (%s)", i,
			   split ? "bytewise" : "whole");
			run_free(&r);
		}
	}
}

/* ---- masking ---- */

static void test_mask_cl(struct policy *p)
{
	const char *body = JSON_BODY;
	struct mm_buf ref = {0}, in = {0};
	engine_ref(p, RESP, "application/json", NULL, body, strlen(body), &ref);
	mm_buf_putc(&ref, 0);
	ok(strstr(ref.data, "123-45-6789") == NULL && strstr(ref.data, "6789"),
	   "engine masks the reference body");
	char resp[512];
	snprintf(resp, sizeof(resp),
		 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
		 "X-Other: 1\r\n\r\n%s",
		 strlen(body), body);
	mm_buf_puts(&in, resp);
	mm_buf_puts(&in, resp); /* two pipelined responses */
	mm_buf_putc(&in, 0);
	for (long split = -1; split <= 0; split++) {
		struct ctx c = {.resp_pol = p};
		struct run r;
		run_script(&c, NULL,
			   (struct step[]){{REQ, "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"},
					   {RESP, in.data}},
			   2, split, &r);
		struct parsed m1, m2;
		int e1 = parse_msg(r.out[1].data, r.out[1].len, true, &m1);
		int e2 = e1 ? -1
			    : parse_msg(r.out[1].data + m1.used, r.out[1].len - m1.used, true, &m2);
		ok(r.rc == 0 && !e1 && !e2, "masked CL response parses (split %ld)", split);
		if (!e1 && !e2) {
			ok(m1.cl == (long)ref.len - 1 && m2.cl == m1.cl && !m1.chunked,
			   "exact Content-Length %ld (engine output %zu)", m1.cl, ref.len - 1);
			is_mem(m1.body.data, m1.body.len, ref.data, "body is the engine's output");
			ok(m1.used + m2.used == r.out[1].len, "nothing after the two messages");
			ok(hdr_find(m1.head, "x-other") && hdr_find(m1.head, "content-type"),
			   "other headers kept");
		}
		ok(c.done[1] == 2 && c.log[3].masked && c.log[3].values >= 2,
		   "message_done: masked, values counted");
		mm_buf_free(&m1.body);
		mm_buf_free(&m2.body);
		run_free(&r);
	}
	mm_buf_free(&ref);
	mm_buf_free(&in);
}

/*
 * The shared budget of held bodies: while another session holds most of it, a masked body
 * streams chunked instead of being held; once it is given back, bodies are held again; the
 * budget is empty when the sessions end.
 */
static void test_budget(struct policy *p)
{
	struct mm_buf b = {0};
	mm_buf_puts(&b, "{\"items\":[");
	for (int i = 0; i < 1500; i++) /* past the engine's own output buffer */
		mm_buf_puts(&b, "{\"name\":\"Ann\",\"ssn\":\"123-45-6789\"},");
	mm_buf_puts(&b, "{}]}");
	mm_buf_putc(&b, 0);
	const char *body = b.data;
	static char resp[65536];
	snprintf(resp, sizeof(resp),
		 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
		 strlen(body), body);
	struct http_budget budget = {.max = strlen(body) + strlen(body) / 2};
	struct http_limits lim = {.hold_body = 256 * 1024, .budget = &budget};
	struct ctx c1 = {.resp_pol = p}, c2 = {.resp_pol = p};
	struct http_hooks h1 = {.policy_for = policy_for, .message_done = message_done,
				.reply = reply, .ctx = &c1};
	struct http_hooks h2 = h1;
	h2.ctx = &c2;
	struct mm_buf o1[2] = {0}, o2[2] = {0};
	c1.reply_to = &o1[1];
	c2.reply_to = &o2[1];
	struct http_session *s1 = http_session_new(&h1, &lim), *s2 = http_session_new(&h2, &lim);
	http_session_feed(s1, REQ, "GET / HTTP/1.1\r\n\r\n", 18, sink, &o1[0]);
	http_session_feed(s2, REQ, "GET / HTTP/1.1\r\n\r\n", 18, sink, &o2[0]);
	/* s1 holds all but its body's last byte: most of the budget */
	size_t k = strlen(resp) - 1;
	http_session_feed(s1, RESP, resp, k, sink, &o1[1]);
	ok(budget.used > 0 && !o1[1].len, "a held body is counted in the budget (%zu)",
	   budget.used);
	http_session_feed(s2, RESP, resp, strlen(resp), sink, &o2[1]);
	struct parsed m;
	int e = parse_msg(o2[1].data, o2[1].len, true, &m);
	ok(!e && m.chunked && m.cl < 0, "the budget is short: the other body streams chunked");
	if (!e)
		mm_buf_free(&m.body);
	http_session_feed(s1, RESP, resp + k, 1, sink, &o1[1]);
	e = parse_msg(o1[1].data, o1[1].len, true, &m);
	ok(!e && !m.chunked && m.cl > 0, "the held body goes out with its Content-Length");
	if (!e)
		mm_buf_free(&m.body);
	is_int((int)budget.used, 0, "sent: the budget is given back");
	http_session_feed(s1, REQ, "GET / HTTP/1.1\r\n\r\n", 18, sink, &o1[0]);
	http_session_feed(s1, RESP, resp, k, sink, &o1[1]);
	http_session_free(s1);
	http_session_free(s2);
	is_int((int)budget.used, 0, "a session freed with a held body gives it back");
	for (int i = 0; i < 2; i++) {
		mm_buf_free(&o1[i]);
		mm_buf_free(&o2[i]);
	}
	mm_buf_free(&b);
}

static void test_mask_chunked(struct policy *p)
{
	const char *body = JSON_BODY;
	struct mm_buf ref = {0}, in = {0};
	engine_ref(p, RESP, "application/json", NULL, body, strlen(body), &ref);
	mm_buf_putc(&ref, 0);
	char b[1024];
	size_t half = strlen(body) / 2;
	snprintf(b, sizeof(b),
		 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: "
		 "chunked\r\n\r\n%zx;x=y\r\n%.*s\r\n%zx\r\n%s\r\n0\r\nX-T: 1\r\n\r\n",
		 half, (int)half, body, strlen(body) - half, body + half);
	mm_buf_puts(&in, b);
	mm_buf_putc(&in, 0);

	/* held: re-framed with an exact Content-Length, trailers dropped */
	struct ctx c = {.resp_pol = p};
	struct run r;
	run_script(&c, NULL, (struct step[]){{REQ, "GET / HTTP/1.1\r\n\r\n"}, {RESP, in.data}}, 2,
		   -1, &r);
	struct parsed m;
	int e = parse_msg(r.out[1].data, r.out[1].len, true, &m);
	ok(!e && r.rc == 0 && !m.chunked && m.cl == (long)ref.len - 1 && m.used == r.out[1].len,
	   "chunked masked response re-framed with Content-Length");
	is_mem(m.body.data, m.body.len, ref.data, "chunked: body is the engine's output");
	ok(c.n_log == 2 && c.log[1].reframed, "reported as re-framed");
	mm_buf_free(&m.body);
	run_free(&r);

	/* streamed: chunked output, trailers forwarded */
	struct http_limits lim = {.hold_body = 8};
	memset(&c, 0, sizeof(c));
	c.resp_pol = p;
	run_script(&c, &lim, (struct step[]){{REQ, "GET / HTTP/1.1\r\n\r\n"}, {RESP, in.data}}, 2,
		   0, &r);
	e = parse_msg(r.out[1].data, r.out[1].len, true, &m);
	ok(!e && r.rc == 0 && m.chunked && m.cl < 0 && m.used == r.out[1].len,
	   "streamed masked response is chunked");
	is_mem(m.body.data, m.body.len, ref.data, "streamed: body is the engine's output");
	is_str(m.trailers, "X-T: 1\r\n", "trailers forwarded");
	mm_buf_free(&m.body);
	run_free(&r);
	mm_buf_free(&ref);
	mm_buf_free(&in);
}

static void test_mask_large(struct policy *p)
{
	struct mm_buf body = {0}, ref = {0}, in = {0};
	mm_buf_puts(&body, "[");
	for (int i = 0; i < 200; i++) {
		char rec[128];
		snprintf(rec, sizeof(rec),
			 "%s{\"id\":%d,\"ssn\":\"123-45-%04d\",\"note\":\"card "
			 "4111 1111 1111 1111\"}",
			 i ? "," : "", i, 1000 + i);
		mm_buf_puts(&body, rec);
	}
	mm_buf_puts(&body, "]");
	engine_ref(p, RESP, "application/json", NULL, body.data, body.len, &ref);
	char h[256];
	snprintf(h, sizeof(h),
		 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
		 body.len);
	mm_buf_puts(&in, h);
	mm_buf_append(&in, body.data, body.len);
	mm_buf_puts(&in, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
	mm_buf_putc(&in, 0);
	struct http_limits lim = {.hold_body = 1024};
	for (long split = 0; split <= 4096; split += 1365) {
		struct ctx c = {.resp_pol = p};
		struct run r;
		run_script(&c, &lim,
			   (struct step[]){{REQ, "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n"},
					   {RESP, in.data}},
			   2, split, &r);
		struct parsed m, m2;
		int e = parse_msg(r.out[1].data, r.out[1].len, true, &m);
		int e2 = e ? -1
			   : parse_msg(r.out[1].data + m.used, r.out[1].len - m.used, true, &m2);
		ok(!e && !e2 && r.rc == 0 && m.chunked && m.cl < 0,
		   "body > hold_body switches to chunked (split %ld)", split);
		ok(!e && m.body.len == ref.len && !memcmp(m.body.data, ref.data, ref.len) &&
			   !memmem(m.body.data, m.body.len, "123-45-1000", 11),
		   "client-side parse yields the masked JSON");
		ok(!e2 && m2.cl == 2 && m2.body.len == 2, "next message intact");
		if (!e) {
			mm_buf_free(&m.body);
			if (!e2)
				mm_buf_free(&m2.body);
		}
		run_free(&r);
	}

	/* An HTTP/1.0 client gets a close-delimited body and Connection: close. */
	struct ctx c = {.resp_pol = p};
	struct http_hooks hooks = {
		.policy_for = policy_for, .message_done = message_done, .ctx = &c};
	struct http_session *s = http_session_new(&hooks, &lim);
	struct mm_buf o0 = {0}, o1 = {0};
	const char *rq = "GET / HTTP/1.0\r\n\r\n";
	int rc = http_session_feed(s, REQ, rq, strlen(rq), sink, &o0);
	rc = rc ? rc : http_session_feed(s, RESP, in.data, strlen(in.data), sink, &o1);
	struct parsed m;
	int e = parse_msg(o1.data, o1.len, true, &m);
	ok(!rc && !e && !m.chunked && m.cl < 0 && hdr_find(m.head, "connection") &&
		   m.body.len == ref.len && !memcmp(m.body.data, ref.data, ref.len),
	   "HTTP/1.0 peer: close-delimited masked body");
	ok(http_session_must_close(s, RESP), "must_close after a close-delimited re-frame");
	if (!e)
		mm_buf_free(&m.body);
	http_session_free(s);
	mm_buf_free(&o0);
	mm_buf_free(&o1);
	mm_buf_free(&body);
	mm_buf_free(&ref);
	mm_buf_free(&in);
}

static int gz(const char *in, size_t len, struct mm_buf *out, bool inflate_)
{
	z_stream z = {0};
	int r = inflate_ ? inflateInit2(&z, 47) : deflateInit2(&z, 6, Z_DEFLATED, 31, 8, 0);
	if (r != Z_OK)
		return -1;
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)len;
	do {
		mm_buf_reserve(out, 4096);
		z.next_out = (Bytef *)out->data + out->len;
		z.avail_out = 4096;
		r = inflate_ ? inflate(&z, Z_NO_FLUSH) : deflate(&z, Z_FINISH);
		out->len = (size_t)((char *)z.next_out - out->data);
	} while (r == Z_OK);
	inflate_ ? inflateEnd(&z) : deflateEnd(&z);
	return r == Z_STREAM_END ? 0 : -1;
}

static void test_mask_gzip(struct policy *p)
{
	struct mm_buf z = {0}, in = {0}, plain = {0};
	const char *body = JSON_BODY;
	gz(body, strlen(body), &z, false);
	char h[256];
	int hl = snprintf(h, sizeof(h),
			  "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: "
			  "gzip\r\nContent-Length: %zu\r\n\r\n",
			  z.len);
	mm_buf_append(&in, h, (size_t)hl);
	mm_buf_append(&in, z.data, z.len);
	struct ctx c = {.resp_pol = p};
	struct run r;
	run_script(&c, NULL,
		   (struct step[]){{REQ, "GET / HTTP/1.1\r\n\r\n"}, {RESP, in.data, in.len}}, 2, 0,
		   &r);
	struct parsed m;
	int e = parse_msg(r.out[1].data, r.out[1].len, true, &m);
	ok(!e && r.rc == 0 && m.cl == (long)m.body.len && m.used == r.out[1].len &&
		   hdr_find(m.head, "content-encoding"),
	   "gzip body re-framed with an exact Content-Length");
	int ze = e ? -1 : gz(m.body.data, m.body.len, &plain, true);
	mm_buf_putc(&plain, 0);
	ok(!ze && !strstr(plain.data, "123-45-6789") && strstr(plain.data, "\"Ann\""),
	   "gzip body decodes to masked JSON");
	if (!e)
		mm_buf_free(&m.body);
	run_free(&r);
	mm_buf_free(&z);
	mm_buf_free(&in);
	mm_buf_free(&plain);
}

/*
 * The read hint while a compressed body is masked: 4 KiB for JSON of an ordinary expansion,
 * 512 B once a body has shown it decodes to ~100x (a bomb's wake-ups stay ~100 KB of work).
 */
static void test_read_hint(struct policy *p)
{
	for (int bomb = 0; bomb < 2; bomb++) {
		struct mm_buf json = {0}, z = {0}, o[2] = {0};
		mm_buf_append(&json, "{\"users\":[", 10);
		for (int i = 0; json.len < 400000; i++) {
			char rec[160];
			int n = bomb ? snprintf(rec, sizeof(rec), "%s{\"bio\":\"%0100d\"}", i ? "," : "", 0)
				     : snprintf(rec, sizeof(rec),
						"%s{\"id\":%d,\"ssn\":\"123-45-%04d\",\"n\":\"u%x\"}",
						i ? "," : "", i * 7919, i % 10000, i * 2654435761u);
			mm_buf_append(&json, rec, (size_t)n);
		}
		mm_buf_append(&json, "]}", 2);
		gz(json.data, json.len, &z, false);
		char h[256];
		int hl = snprintf(h, sizeof(h),
				  "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
				  "Content-Encoding: gzip\r\nContent-Length: %zu\r\n\r\n",
				  z.len);
		struct ctx c = {.resp_pol = p};
		struct http_hooks hooks = {.policy_for = policy_for,
					   .message_done = message_done,
					   .reply = reply,
					   .ctx = &c};
		struct http_session *s = http_session_new(&hooks, NULL);
		c.reply_to = &o[1];
		int r = http_session_feed(s, REQ, "GET / HTTP/1.1\r\n\r\n", 18, sink, &o[0]);
		r = r ? r : http_session_feed(s, RESP, h, (size_t)hl, sink, &o[1]);
		size_t first = http_session_read_hint(s, RESP, 65536);
		size_t fed = z.len / 2; /* the body's expansion known, the body not over */
		r = r ? r : http_session_feed(s, RESP, z.data, fed, sink, &o[1]);
		size_t then = http_session_read_hint(s, RESP, 65536);
		ok(!r && first == 4096 && then == (bomb ? 512u : 4096u),
		   "read hint for a %s body: %zu then %zu (ratio %.0f:1)", bomb ? "100x" : "JSON",
		   first, then, (double)json.len / (double)z.len);
		http_session_free(s);
		mm_buf_free(&json);
		mm_buf_free(&z);
		mm_buf_free(&o[0]);
		mm_buf_free(&o[1]);
	}
}

static void test_request_dir(struct policy *resp_only, struct policy *both)
{
	char rq[512];
	snprintf(rq, sizeof(rq),
		 "POST /p HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
		 "\r\n%s",
		 strlen(JSON_BODY), JSON_BODY);
	struct ctx c = {.req_pol = resp_only};
	struct run r;
	run_script(&c, NULL, (struct step[]){{REQ, rq}}, 1, 0, &r);
	is_mem(r.out[0].data, r.out[0].len, rq, "request untouched when directions = response");
	run_free(&r);

	memset(&c, 0, sizeof(c));
	c.req_pol = both;
	run_script(&c, NULL, (struct step[]){{REQ, rq}}, 1, 0, &r);
	struct parsed m;
	int e = parse_msg(r.out[0].data, r.out[0].len, false, &m);
	mm_buf_putc(&m.body, 0);
	ok(!e && r.rc == 0 && m.cl == (long)m.body.len - 1 && !strstr(m.body.data, "123-45-6789"),
	   "request body masked when directions include request");
	mm_buf_free(&m.body);
	run_free(&r);
}

/* A masked request that waits for 100 Continue must not have its head held back. */
static void test_expect_masked(struct policy *both)
{
	struct ctx c = {.req_pol = both};
	struct http_hooks hooks = {
		.policy_for = policy_for, .message_done = message_done, .ctx = &c};
	struct http_session *s = http_session_new(&hooks, NULL);
	struct mm_buf o = {0};
	char head[256];
	snprintf(head, sizeof(head),
		 "POST /p HTTP/1.1\r\nExpect: 100-continue\r\nContent-Type: application/json\r\n"
		 "Content-Length: %zu\r\n\r\n",
		 strlen(JSON_BODY));
	int rc = http_session_feed(s, REQ, head, strlen(head), sink, &o);
	mm_buf_putc(&o, 0);
	ok(!rc && o.data && strstr(o.data, "\r\nExpect: 100-continue\r\n") &&
		   strstr(o.data, "Transfer-Encoding: chunked\r\n\r\n") &&
		   !strstr(o.data, "Content-Length"),
	   "Expect: 100-continue: head sent at once, body to stream chunked");
	o.len--;
	rc = rc ? rc : http_session_feed(s, REQ, JSON_BODY, strlen(JSON_BODY), sink, &o);
	struct parsed m;
	int e = parse_msg(o.data, o.len, false, &m);
	mm_buf_putc(&m.body, 0);
	ok(!rc && !e && m.used == o.len && m.body.data && !strstr(m.body.data, "123-45-6789") &&
		   strstr(m.body.data, "\"Ann\""),
	   "Expect: 100-continue: masked body streamed");
	mm_buf_free(&m.body);
	mm_buf_free(&o);
	http_session_free(s);
}

static void test_headers(struct policy *p)
{
	const char *resp = "HTTP/1.1 200 OK\r\nAuthorization: Bearer abc.def\r\n"
			   "X-Token: secret123\r\nX-Info: mail bob@example.com now\r\n"
			   "Content-Length: 2\r\n\r\nok";
	struct ctx c = {.resp_pol = p};
	struct run r;
	run_script(&c, NULL, (struct step[]){{REQ, "GET / HTTP/1.1\r\n\r\n"}, {RESP, resp}}, 2, 0,
		   &r);
	mm_buf_putc(&r.out[1], 0);
	const char *o = r.out[1].data;
	ok(r.rc == 0 && !strstr(o, "Authorization") && !strstr(o, "abc.def"),
	   "redact removes the Authorization header");
	const char *t = o ? strstr(o, "X-Token: ") : NULL;
	ok(t && strncmp(t + 9, "secret123", 9) && strncmp(t + 9 + 7, "23\r\n", 4) == 0,
	   "mask keeps the length and the last 2");
	ok(o && strstr(o, "X-Info: mail [email] now\r\n"), "entity replaced inside a header");
	ok(o && strstr(o, "Content-Length: 2\r\n\r\nok"), "framing headers untouched");
	ok(c.n_log == 2 && c.log[1].rule_values[2] == 1 && c.log[1].rule_values[3] == 1 &&
		   c.log[1].rule_values[4] == 1 && c.log[1].rule_values[0] == 0,
	   "header values counted per rule");
	ok(c.n_log == 2 && c.log[1].header_values == 3, "header values counted (%llu)",
	   c.n_log == 2 ? (unsigned long long)c.log[1].header_values : 0ULL);
	run_free(&r);
}

static void test_observe(struct policy *p)
{
	char resp[512];
	snprintf(resp, sizeof(resp),
		 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nAuthorization: x\r\n"
		 "Transfer-Encoding: chunked\r\n\r\n%zx\r\n%s\r\n0\r\n\r\n",
		 strlen(JSON_BODY), JSON_BODY);
	for (long split = -1; split <= 0; split++) {
		struct ctx c = {.resp_pol = p};
		struct run r;
		run_script(&c, NULL, (struct step[]){{REQ, "GET / HTTP/1.1\r\n\r\n"}, {RESP, resp}},
			   2, split, &r);
		is_mem(r.out[1].data, r.out[1].len, resp, "observe: byte-identical (split %ld)",
		       split);
		ok(c.n_log == 2 && c.log[1].values >= 2 && c.log[1].header_values == 1,
		   "observe: stats counted");
		run_free(&r);
	}
}

static void test_not_http(struct policy *pass, struct policy *fallback, struct policy *block)
{
	const char *raw = "hello ssn 536-22-8710 card 4111 1111 1111 1111 bye\n";
	struct ctx c = {.resp_pol = pass};
	struct run r;
	run_script(&c, NULL, (struct step[]){{RESP, raw, 0, true}}, 1, 0, &r);
	ok(r.rc == 0 && r.out[1].len == strlen(raw) && !memcmp(r.out[1].data, raw, strlen(raw)),
	   "not HTTP, onError=pass: forwarded byte-identical");
	ok(c.n_log == 1 && c.log[0].outcome == MASK_OUTCOME_PASSED, "counted as passed");
	ok(c.n_log == 1 && c.log[0].reason == MM_REASON_NOT_HTTP, "counted as not_http");
	run_free(&r);

	for (long split = -1; split <= 0; split++) {
		memset(&c, 0, sizeof(c));
		c.resp_pol = fallback;
		run_script(&c, NULL, (struct step[]){{RESP, raw, 0, true}}, 1, split, &r);
		mm_buf_putc(&r.out[1], 0);
		ok(r.rc == 0 && !r.tunnel && r.out[1].data &&
			   !strstr(r.out[1].data, "536-22-8710") &&
			   !strstr(r.out[1].data, "4111 1111 1111 1111") &&
			   strstr(r.out[1].data, "hello ssn") && strstr(r.out[1].data, "bye\n"),
		   "not HTTP, onError=fallback: entity scan of the raw stream (split %ld)", split);
		ok(c.n_log == 1 && c.log[0].reason == MM_REASON_NOT_HTTP &&
			   c.log[0].outcome == MASK_OUTCOME_FALLBACK,
		   "fallback counted as not_http");
		run_free(&r);
	}

	memset(&c, 0, sizeof(c));
	c.resp_pol = block;
	run_script(&c, NULL, (struct step[]){{RESP, raw, 0, true}}, 1, 0, &r);
	mm_buf_putc(&r.out[1], 0);
	ok(r.rc == -EPROTO && !strstr(r.out[1].data, "536-22-8710") &&
		   !strncmp(r.out[1].data, "HTTP/1.1 502 Bad Gateway\r\n", 26) &&
		   strstr(r.out[1].data, "\r\nx-meshmask-reason: not_http\r\n"),
	   "not HTTP, onError=block: -EPROTO, the client gets a 502 and nothing raw");
	ok(c.n_log == 1 && c.log[0].reason == MM_REASON_NOT_HTTP &&
		   c.log[0].outcome == MASK_OUTCOME_BLOCKED && c.log[0].reply_status == 502,
	   "block counted as not_http");
	run_free(&r);
}

/* Whether a buffer starts with `pfx`. */
static bool starts(const struct mm_buf *b, const char *pfx)
{
	return b->len >= strlen(pfx) && !memcmp(b->data, pfx, strlen(pfx));
}

/* Whether a buffer holds `needle` (also where it holds NULs). */
static bool has(const struct mm_buf *b, const char *needle)
{
	return b->len && memmem(b->data, b->len, needle, strlen(needle)) != NULL;
}

#define RESP_JSON                                                                         \
	"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n" \
	"{\"name\":\"Ann\",\"ssn\":\"123-45-6789\",\"card\":\"4111111111111111\"}"

/*
 * Fail closed (issue 13): a request stream the agent cannot frame never switches off response
 * masking; it is refused (400 where the client speaks HTTP, a cut otherwise) unless the policy
 * says onError: pass, and then the responses are still masked.
 */
static void test_fail_closed_requests(struct policy *block, struct policy *fb, struct policy *pass)
{
	_Static_assert(sizeof(RESP_JSON) - 1 == 71 + 60, "RESP_JSON: 71 head bytes, 60 body bytes");
	static const char *const lenient[] = {
		"GET  /x HTTP/1.1\r\nHost: a\r\n\r\n", /* two spaces */
		"GET\t/x HTTP/1.1\r\nHost: a\r\n\r\n", /* a tab */
		"GET /x HTTP/1.1\nHost: a\n\n", /* bare LF */
		"GET /x\r\n\r\n", /* HTTP/0.9 */
		"GET /x HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", /* obs-fold */
		"GET /x HTTP/1.1\r\nContent-Type: a\r\nContent-Type: b\r\n\r\n",
	};
	struct policy *pols[] = {block, fb};
	for (size_t pi = 0; pi < 2; pi++) {
		for (size_t i = 0; i < sizeof(lenient) / sizeof(lenient[0]); i++) {
			for (long split = -1; split <= 0; split++) {
				struct ctx c = {.resp_pol = pols[pi]};
				struct run r;
				run_script(&c, NULL,
					   (struct step[]){{REQ, lenient[i]}, {RESP, RESP_JSON}}, 2,
					   split, &r);
				ok(r.rc == -EPROTO && !has(&r.out[1], "123-45-6789") &&
					   c.reply_len == r.out[1].len &&
					   starts(&r.out[1], "HTTP/1.1 400 Bad Request\r\n") &&
					   c.n_log >= 1 &&
					   c.log[0].outcome == MASK_OUTCOME_BLOCKED &&
					   c.log[0].pol == pols[pi],
				   "lenient request %zu under onError=%s (%s): 400, nothing "
				   "forwarded "
				   "raw, counted under the policy",
				   i, pi ? "fallback" : "block", split ? "bytewise" : "whole");
				run_free(&r);
			}
		}
	}

	/* Not HTTP at all (TLS, HTTP/2 prior knowledge): cut without an answer. */
	static const char *const opaque[] = {"\x16\x03\x01\x00\x05hello",
					     "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04"};
	for (size_t i = 0; i < 2; i++) {
		struct ctx c = {.resp_pol = fb};
		struct run r;
		run_script(&c, NULL, (struct step[]){{REQ, opaque[i]}, {RESP, RESP_JSON}}, 2, 0,
			   &r);
		ok(r.rc == -EPROTO && r.out[0].len == 0 && r.out[1].len == 0 && c.reply_len == 0 &&
			   c.n_log == 1 && c.log[0].reason == MM_REASON_NOT_HTTP &&
			   c.log[0].outcome == MASK_OUTCOME_BLOCKED,
		   "not HTTP %zu, response-only policy, onError=fallback: cut, counted not_http",
		   i);
		run_free(&r);
	}

	/* TLS under a policy that masks TLS plaintext in the process (spec.tls): relayed. */
	struct policy *tls = mkpol(
		"{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","
		"\"metadata\":{\"name\":\"tls\"},\"spec\":{\"tls\":{\"enforce\":\"stop-rewrite\"},"
		"\"onError\":\"block\",\"rules\":[{\"name\":\"e\",\"entities\":[\"US_SSN\"],"
		"\"action\":{\"type\":\"mask\"}}]}}");
	if (tls) {
		struct ctx c = {.resp_pol = tls};
		struct run r;
		run_script(
			&c, NULL,
			(struct step[]){{REQ, opaque[0], 10}, {RESP, "\x16\x03\x03\x00\x02hi", 7}},
			2, -1, &r);
		ok(r.rc == 0 && r.out[0].len == 10 && !memcmp(r.out[0].data, opaque[0], 10) &&
			   r.out[1].len == 7 && r.tunnel,
		   "TLS under tls.enforce: stop-rewrite: relayed both ways");
		run_free(&r);
	}
	ok(tls != NULL, "stop-rewrite policy parses");
	policy_unref(tls);

	/* onError: pass forwards the request stream as it is; responses are still masked. */
	for (size_t i = 0; i < 2; i++) {
		const char *rq = i ? "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" : lenient[0];
		struct ctx c = {.resp_pol = pass};
		struct run r;
		run_script(&c, NULL, (struct step[]){{REQ, rq}, {RESP, RESP_JSON}}, 2, -1, &r);
		ok(r.rc == 0 && r.out[0].len == strlen(rq) &&
			   !memcmp(r.out[0].data, rq, strlen(rq)) &&
			   has(&r.out[1], "\"XXX-XX-6789\"") && !has(&r.out[1], "123-45-6789") &&
			   !has(&r.out[1], "4111111111111111"),
		   "onError=pass, unparseable request %zu: forwarded, the response still masked",
		   i);
		ok(c.n_log == 2 && c.log[0].dir == REQ && c.log[0].outcome == MASK_OUTCOME_PASSED &&
			   c.log[0].pol == pass,
		   "the raw request stream counted as passed under its policy");
		run_free(&r);
	}
}

/* Protocol switches: only what a request asked for, and only under tunnels: pass. */
static void test_tunnels(struct policy *block, struct policy *pass_tunnels)
{
	const char *up = "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: "
			 "websocket\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";
	const char *sw = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "
			 "websocket\r\n\r\n{\"ssn\":\"123-45-6789\"}";
	struct ctx c = {.resp_pol = block};
	struct run r;
	run_script(&c, NULL, (struct step[]){{REQ, up}, {RESP, RESP_JSON}}, 2, -1, &r);
	ok(r.rc == 0 &&
		   has(&r.out[0], "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n\r\n") &&
		   !has(&r.out[0], "websocket") && !has(&r.out[0], "HTTP2-Settings") &&
		   has(&r.out[1], "XXX-XX-6789") && !has(&r.out[1], "123-45-6789"),
	   "tunnels: block: the upgrade request goes on without Upgrade, the answer is masked");
	ok(c.n_log == 2 && c.log[0].tunnel == HTTP_TUNNEL_STRIPPED && c.log[0].pol == block,
	   "the stripped upgrade is reported");
	run_free(&r);

	/* A server that switches anyway, or one nobody asked: refused, nothing raw. */
	const char *plain = "GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
	struct policy *pols[] = {block, pass_tunnels};
	for (int i = 0; i < 2; i++) {
		memset(&c, 0, sizeof(c));
		c.resp_pol = pols[i];
		run_script(&c, NULL, (struct step[]){{REQ, i ? plain : up}, {RESP, sw}}, 2, 0, &r);
		ok(r.rc == -EPROTO && !has(&r.out[1], "123-45-6789") &&
			   has(&r.out[1], "HTTP/1.1 502 Bad Gateway") &&
			   has(&r.out[1], "x-meshmask-reason: tunnel") && c.n_log == 2 &&
			   c.log[1].tunnel == HTTP_TUNNEL_REFUSED &&
			   c.log[1].outcome == MASK_OUTCOME_BLOCKED,
		   "a 101 %s: 502, nothing raw",
		   i ? "no request asked for" : "under tunnels: block");
		run_free(&r);
	}

	/* tunnels: pass: the asked-for switch opens a tunnel, counted as passed. */
	memset(&c, 0, sizeof(c));
	c.resp_pol = pass_tunnels;
	run_script(&c, NULL, (struct step[]){{REQ, up}, {RESP, sw}}, 2, 0, &r);
	ok(r.rc == 0 && r.out[0].len == strlen(up) && r.out[1].len == strlen(sw) && r.tunnel &&
		   c.n_log == 2 && c.log[1].tunnel == HTTP_TUNNEL_OPENED &&
		   c.log[1].outcome == MASK_OUTCOME_PASSED && c.log[1].reason == MM_REASON_TUNNEL,
	   "tunnels: pass: an asked-for 101 opens a tunnel, counted as passed (tunnel)");
	run_free(&r);

	/* CONNECT: answered by the agent under block; forwarded under pass. */
	const char *conn = "CONNECT db:443 HTTP/1.1\r\nHost: db:443\r\n\r\n";
	memset(&c, 0, sizeof(c));
	c.resp_pol = block;
	run_script(&c, NULL, (struct step[]){{REQ, conn}}, 1, -1, &r);
	ok(r.rc == -EPROTO && r.out[0].len == 0 && c.reply_len == r.out[1].len &&
		   starts(&r.out[1], "HTTP/1.1 403 Forbidden\r\n") &&
		   has(&r.out[1], "x-meshmask-reason: tunnel") && c.n_log == 1 &&
		   c.log[0].tunnel == HTTP_TUNNEL_REFUSED && c.log[0].reply_status == 403,
	   "tunnels: block: CONNECT answered 403, never sent on");
	run_free(&r);

	memset(&c, 0, sizeof(c));
	c.resp_pol = pass_tunnels;
	run_script(&c, NULL,
		   (struct step[]){{REQ, conn},
				   {RESP, "HTTP/1.1 200 Connection established\r\n\r\n\x16\x03"}},
		   2, 0, &r);
	ok(r.rc == 0 && r.tunnel && r.out[0].len == strlen(conn) &&
		   c.log[c.n_log - 1].tunnel == HTTP_TUNNEL_OPENED,
	   "tunnels: pass: CONNECT forwarded, its 200 opens a tunnel");
	run_free(&r);

	/*
	 * A desync: the server ignores a GET's body, which holds a second request; its answer to
	 * that one comes where the agent expects the CONNECT's. A 2xx with a body is no CONNECT
	 * answer: refused, nothing raw (under block the CONNECT is never even sent).
	 */
	const char *smuggle = "GET /a HTTP/1.1\r\nHost: a\r\nContent-Length: 28\r\n\r\n"
			      "GET /b HTTP/1.1\r\nHost: a\r\n\r\n\r\n"
			      "CONNECT db:443 HTTP/1.1\r\nHost: db\r\n\r\n";
	for (int i = 0; i < 2; i++) {
		memset(&c, 0, sizeof(c));
		c.resp_pol = pols[i];
		run_script(&c, NULL,
			   (struct step[]){{REQ, smuggle}, {RESP, RESP_JSON RESP_JSON RESP_JSON}},
			   2, 0, &r);
		ok(r.rc == -EPROTO && !has(&r.out[1], "123-45-6789") && c.n_log >= 1,
		   "request/response desync into CONNECT (tunnels: %s): cut, nothing raw",
		   i ? "pass" : "block");
		run_free(&r);
	}

	/* Upgrade: h2c (with HTTP2-Settings) is kept: the server's 101 hands over to HTTP/2. */
	const char *h2c = "GET /h HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
			  "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";
	for (int i = 0; i < 2; i++) {
		struct http_hooks hooks = {
			.policy_for = policy_for, .message_done = message_done, .ctx = &c};
		memset(&c, 0, sizeof(c));
		c.resp_pol = pols[i];
		struct http_session *hs = http_session_new(&hooks, NULL);
		struct mm_buf o[2] = {0};
		int r1 = http_session_feed(hs, REQ, h2c, strlen(h2c), sink, &o[0]);
		const char *sw101 = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
				    "Upgrade: h2c\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";
		int r2 = http_session_feed(hs, RESP, sw101, strlen(sw101) + 9, sink, &o[1]);
		const uint8_t *set;
		size_t setn;
		bool head;
		struct mm_buf rest = {0};
		bool switched = http_session_h2c(hs, &set, &setn, &head, &rest);
		ok(!r1 && !r2 && o[0].len == strlen(h2c) && switched && setn == 18 && !head &&
			   rest.len == 9 && o[1].len == strlen(sw101),
		   "Upgrade: h2c (tunnels: %s): forwarded whole, the 101 to the app, the HTTP/2 "
		   "bytes after it handed over, HTTP2-Settings decoded (%zu bytes)",
		   i ? "pass" : "block", setn);
		mm_buf_free(&rest);
		mm_buf_free(&o[0]);
		mm_buf_free(&o[1]);
		http_session_free(hs);
	}

	/* Two Content-Type labels on a response: refused, not guessed. */
	memset(&c, 0, sizeof(c));
	c.resp_pol = block;
	run_script(&c, NULL,
		   (struct step[]){{REQ, plain},
				   {RESP,
				    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Type: "
				    "application/json\r\nContent-Length: 22\r\n\r\n"
				    "{\"ssn\":\"123-45-6789\"}"}},
		   2, 0, &r);
	ok(r.rc == -EPROTO && !has(&r.out[1], "123-45-6789") && has(&r.out[1], " 502 "),
	   "two Content-Type headers: 502, nothing raw");
	run_free(&r);
}

static void test_policy_calls(struct policy *p)
{
	char one[512];
	snprintf(one, sizeof(one),
		 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
		 "%zu\r\n\r\n%s",
		 strlen(JSON_BODY), JSON_BODY);
	struct mm_buf in = {0};
	for (int i = 0; i < 3; i++)
		mm_buf_puts(&in, one);
	mm_buf_putc(&in, 0);
	/* the first response has no policy, the next two do */
	struct ctx c = {.resp_seq = {NULL}, .n_seq = 1, .resp_pol = p};
	struct run r;
	run_script(&c, NULL,
		   (struct step[]){{REQ, "GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\nGET /3 "
					 "HTTP/1.1\r\n\r\n"},
				   {RESP, in.data}},
		   2, -1, &r);
	is_int(c.calls[0], 3, "policy_for once per request");
	is_int(c.calls[1], 3, "policy_for once per response");
	ok(r.rc == 0 && r.out[1].len > strlen(one) && !memcmp(r.out[1].data, one, strlen(one)) &&
		   !memmem(r.out[1].data + strlen(one), r.out[1].len - strlen(one), "123-45-6789",
			   11),
	   "a swap between pipelined messages applies from the next message");
	ok(c.n_log == 6 && c.log[3].pol == NULL && c.log[4].pol == p && !c.log[3].masked &&
		   c.log[4].masked,
	   "message_done reports the policy of each message");
	run_free(&r);
	mm_buf_free(&in);
}

static void test_mask_splits(struct policy *resp, struct policy *both, struct policy *obs,
			     struct policy *fb)
{
	char one[512], ch[512], rq[512];
	snprintf(one, sizeof(one),
		 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Info: a@b.example\r\n"
		 "Content-Length: %zu\r\n\r\n%s",
		 strlen(JSON_BODY), JSON_BODY);
	snprintf(ch, sizeof(ch),
		 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: "
		 "chunked\r\n\r\n10;x\r\n%.16s\r\n%zx\r\n%s\r\n0\r\nX-T: 1\r\n\r\n",
		 JSON_BODY, strlen(JSON_BODY) - 16, JSON_BODY + 16);
	snprintf(rq, sizeof(rq),
		 "POST /p HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
		 "\r\n%sGET / HTTP/1.1\r\nAuthorization: x\r\n\r\nGET / HTTP/1.1\r\n\r\n",
		 strlen(JSON_BODY), JSON_BODY);
	struct mm_buf resp_s = {0};
	mm_buf_puts(&resp_s, one);
	mm_buf_puts(&resp_s, ch);
	mm_buf_puts(&resp_s, one);
	mm_buf_putc(&resp_s, 0);
	const struct step st[] = {{REQ, rq}, {RESP, resp_s.data}};
	check_splits("masked pipelined CL + chunked", resp, NULL, st, 2, false);
	check_splits("masked both directions", both, NULL, st, 2, false);
	struct http_limits small = {.hold_body = 20};
	/* chunk boundaries follow the input's: compare what the client decodes */
	check_splits("masked, streamed chunked", resp, &small, st, 2, true);
	check_splits("observe", obs, NULL, st, 2, false);
	const struct step nh[] = {{RESP, "junk 536-22-8710 and 4111 1111 1111 1111 end", 0, true}};
	check_splits("not HTTP, fallback scan", fb, NULL, nh, 1, false);
	mm_buf_free(&resp_s);
}

static void test_block_midbody(struct policy *block)
{
	const char *resp = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
			   "20\r\n\r\n{\"a\":[1,2,}}}}}}}}}}";
	struct ctx c = {.resp_pol = block};
	struct run r;
	run_script(&c, NULL, (struct step[]){{REQ, "GET / HTTP/1.1\r\n\r\n"}, {RESP, resp}}, 2, 0,
		   &r);
	ok(r.rc == -EPROTO &&
		   !memmem(r.out[1].data ? r.out[1].data : "", r.out[1].len, "{\"a\"", 4),
	   "engine blocks mid-body: -EPROTO, no body forwarded");
	ok(c.n_log == 2 && c.log[1].outcome == MASK_OUTCOME_BLOCKED, "reported as blocked");
	run_free(&r);
}

int main(void)
{
	test_passthrough();
	test_zero_copy();
	test_errors();
	test_limits_grammar();

	struct policy *resp = mkpol(POLICY("\"response\"", "enforce", "block", RULES));
	struct policy *both = mkpol(POLICY("\"request\",\"response\"", "enforce", "block", RULES));
	struct policy *obs = mkpol(POLICY("\"response\"", "observe", "block", RULES));
	struct policy *pass = mkpol(POLICY("\"response\"", "enforce", "pass", RULES));
	struct policy *fb = mkpol(POLICY("\"response\"", "enforce", "fallback", RULES));
	ok(resp && both && obs && pass && fb, "test policies parse");
	if (resp && both && obs && pass && fb) {
		test_caller_passthrough(resp);
		test_spares(resp);
		test_mask_cl(resp);
		test_budget(resp);
		test_mask_chunked(resp);
		test_mask_large(resp);
		test_mask_gzip(resp);
		test_read_hint(resp);
		test_request_dir(resp, both);
		test_headers(resp);
		test_expect_masked(both);
		test_observe(obs);
		test_not_http(pass, fb, resp);
		test_fail_closed_requests(resp, fb, pass);
		struct policy *tp =
			mkpol("{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","
			      "\"metadata\":{\"name\":\"tp\"},\"spec\":{\"tunnels\":\"pass\","
			      "\"onError\":\"block\",\"rules\":[" RULES "]}}");
		ok(tp != NULL, "tunnels: pass policy parses");
		if (tp)
			test_tunnels(resp, tp);
		policy_unref(tp);
		test_policy_calls(resp);
		test_block_midbody(resp);
		test_mask_splits(resp, both, obs, fb);
	}
	struct policy *all[] = {resp, both, obs, pass, fb};
	for (size_t i = 0; i < 5; i++)
		if (all[i])
			policy_unref(all[i]);
	return tap_done();
}
