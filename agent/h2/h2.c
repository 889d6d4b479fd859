// SPDX-License-Identifier: Apache-2.0
/*
 * One h2_conn per HTTP/2 connection: `srv` is the nghttp2 server session toward the app,
 * `cli` the client session toward the upstream. A request's HEADERS from the app become a
 * request on `cli`; the upstream's response HEADERS become the response on `srv`. Each stream
 * has two halves (request, response): what the sender's DATA becomes after masking waits in
 * the half's queue until the receiver's session pulls it (a data provider). Both sessions run
 * without automatic WINDOW_UPDATE: a half gives its sender window back (nghttp2_session_consume)
 * only while its queue holds less than H2_QUEUE_LOW, so the memory a stream holds is bounded
 * by that plus one window, and a slow reader stops the upstream.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <nghttp2/nghttp2.h>

#include "h2.h"
#include "grpc.h"
#include "hdrrules.h"
#include "pbmask.h"
#include "pbschema.h"

#define H2_QUEUE_LOW (64u * 1024)
#define H2_MAX_STREAMS 100u
#define H2_MAX_HEADER_BYTES (64u * 1024)

struct hdr {
	char *name, *value;
	size_t nlen, vlen;
};

struct hdrs {
	struct hdr *v;
	size_t n, cap, bytes;
};

enum body_kind { BK_RAW, BK_OBSERVE, BK_MASK, BK_GRPC };

struct h2_stream;

struct h2_half {
	struct h2_stream *st;
	uint32_t dir;
	struct policy *pol; /* the direction's policy (own reference), or NULL */
	enum body_kind kind;
	struct mask_stream *ms;
	bool ms_dead; /* observe: the engine gave up; forwarding goes on */
	struct grpc_framer *gf;
	const struct pb_msgtype *pbt;
	struct mask_stats gst; /* gRPC: values per rule (rules owned) */
	enum mask_outcome outcome; /* gRPC */
	enum mm_reason reason;
	struct mm_buf q; /* output waiting for the receiver */
	size_t q_off;
	bool started; /* headers went to the receiver */
	bool in_end; /* the sender ended its half */
	bool out_end; /* all of it went to the receiver's session */
	bool failed; /* refused: the rest of the sender's bytes are dropped */
	bool reported;
	struct hdrs trailers;
	bool has_trailers;
	/*
	 * A masked response's head waits for the first masked byte (or the end), so that a body
	 * the policy blocks can still be answered with an HTTP error instead of a reset.
	 */
	struct hdrs held;
	bool head_held;
	int reply_status;
	size_t unconsumed; /* sender bytes not yet given back as window */
	int status;
	uint64_t header_values;
	uint64_t *rule_values;
};

struct h2_stream {
	struct h2_conn *c;
	int32_t app_id, up_id;
	struct hdrs hdrs; /* headers being received, from either side */
	struct h2_half req, resp;
	char *path; /* :path of the request (a gRPC method) */
	bool grpc; /* the request was gRPC */
	bool app_done, up_done;
	struct h2_stream *prev, *next;
};

struct h2_conn {
	struct http_hooks hooks;
	struct h2_io io;
	struct h2_limits lim;
	nghttp2_session *srv, *cli;
	struct h2_stream *streams;
	int err; /* fatal, from a callback */
};

/* ---- headers ---- */

static void hdrs_clear(struct hdrs *h)
{
	for (size_t i = 0; i < h->n; i++) {
		free(h->v[i].name);
		free(h->v[i].value);
	}
	h->n = h->bytes = 0;
}

static void hdrs_free(struct hdrs *h)
{
	hdrs_clear(h);
	free(h->v);
	h->v = NULL;
	h->cap = 0;
}

static int hdrs_add(struct hdrs *h, const uint8_t *name, size_t nlen, const uint8_t *value,
		    size_t vlen)
{
	if (h->bytes + nlen + vlen + 32 > H2_MAX_HEADER_BYTES)
		return -EMSGSIZE;
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 16;
		struct hdr *v = realloc(h->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		h->v = v;
		h->cap = cap;
	}
	struct hdr *e = &h->v[h->n];
	e->name = malloc(nlen + 1);
	e->value = malloc(vlen + 1);
	if (!e->name || !e->value) {
		free(e->name);
		free(e->value);
		return -ENOMEM;
	}
	memcpy(e->name, name, nlen);
	e->name[nlen] = 0;
	memcpy(e->value, value, vlen);
	e->value[vlen] = 0;
	e->nlen = nlen;
	e->vlen = vlen;
	h->n++;
	h->bytes += nlen + vlen + 32;
	return 0;
}

static const struct hdr *hdrs_get(const struct hdrs *h, const char *name)
{
	for (size_t i = 0; i < h->n; i++)
		if (!strcmp(h->v[i].name, name))
			return &h->v[i];
	return NULL;
}

static bool is_grpc(const struct hdrs *h)
{
	const struct hdr *ct = hdrs_get(h, "content-type");
	return ct && ct->vlen >= 16 && !strncasecmp(ct->value, "application/grpc", 16) &&
	       (ct->vlen == 16 || ct->value[16] == '+' || ct->value[16] == ';');
}

/*
 * The name/value pairs to send on for headers h of half x: header rules applied (when the
 * policy masks this direction and enforces), content-length dropped when the body may change
 * length. *nv is allocated (the strings stay owned by h or by `vals`); 0 or -ENOMEM.
 */
static int build_nv(struct h2_half *x, const struct hdrs *h, bool drop_length, nghttp2_nv **nv,
		    size_t *n, struct hdrs *vals)
{
	bool rules = x->pol && (x->pol->directions & x->dir) && hdr_rules_any(x->pol);
	bool enforce = rules && x->pol->mode == POLICY_MODE_ENFORCE;
	*nv = calloc(h->n ? h->n : 1, sizeof(**nv));
	if (!*nv)
		return -ENOMEM;
	*n = 0;
	if (rules && !x->rule_values &&
	    !(x->rule_values = calloc(x->pol->n_rules ? x->pol->n_rules : 1, sizeof(uint64_t))))
		return -ENOMEM;
	for (size_t i = 0; i < h->n; i++) {
		const struct hdr *e = &h->v[i];
		const char *val = e->value;
		size_t vlen = e->vlen;
		if (drop_length && !strcmp(e->name, "content-length"))
			continue;
		if (rules && e->name[0] != ':') {
			struct mm_buf out = {0};
			bool changed, removed;
			int r = hdr_rules_apply(x->pol, e->name, e->nlen, e->value, e->vlen,
						enforce, &out, &changed, &removed, x->rule_values,
						&x->header_values);
			if (!r && changed)
				r = hdrs_add(vals, (const uint8_t *)"", 0,
					     (const uint8_t *)out.data, out.len);
			mm_buf_free(&out);
			if (r)
				return r;
			if (removed)
				continue;
			if (changed) {
				val = vals->v[vals->n - 1].value;
				vlen = vals->v[vals->n - 1].vlen;
			}
		}
		(*nv)[(*n)++] = (nghttp2_nv){.name = (uint8_t *)e->name,
					     .value = (uint8_t *)val,
					     .namelen = e->nlen,
					     .valuelen = vlen,
					     .flags = NGHTTP2_NV_FLAG_NONE};
	}
	return 0;
}

/* ---- streams ---- */

static void half_init(struct h2_half *x, struct h2_stream *st, uint32_t dir)
{
	x->st = st;
	x->dir = dir;
}

static struct h2_stream *stream_new(struct h2_conn *c)
{
	struct h2_stream *st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->c = c;
	st->app_id = st->up_id = -1;
	half_init(&st->req, st, POLICY_DIR_REQUEST);
	half_init(&st->resp, st, POLICY_DIR_RESPONSE);
	st->next = c->streams;
	if (c->streams)
		c->streams->prev = st;
	c->streams = st;
	return st;
}

static void half_free(struct h2_half *x)
{
	mask_stream_free(x->ms);
	grpc_framer_free(x->gf);
	if (x->pol)
		policy_unref(x->pol);
	free(x->gst.rules);
	free(x->rule_values);
	mm_buf_free(&x->q);
	hdrs_free(&x->trailers);
	hdrs_free(&x->held);
}

static void report(struct h2_conn *c, struct h2_half *x);

static void stream_free(struct h2_conn *c, struct h2_stream *st)
{
	report(c, &st->req);
	report(c, &st->resp);
	if (st->prev)
		st->prev->next = st->next;
	else
		c->streams = st->next;
	if (st->next)
		st->next->prev = st->prev;
	if (st->app_id > 0)
		nghttp2_session_set_stream_user_data(c->srv, st->app_id, NULL);
	if (st->up_id > 0)
		nghttp2_session_set_stream_user_data(c->cli, st->up_id, NULL);
	half_free(&st->req);
	half_free(&st->resp);
	hdrs_free(&st->hdrs);
	free(st->path);
	free(st);
}

static void stream_maybe_free(struct h2_conn *c, struct h2_stream *st)
{
	if (st->app_done && (st->up_done || st->up_id < 0))
		stream_free(c, st);
}

/* The session a half's bytes come from, and the stream id there. */
static nghttp2_session *sender(struct h2_half *x, int32_t *id)
{
	*id = x->dir == POLICY_DIR_REQUEST ? x->st->app_id : x->st->up_id;
	return x->dir == POLICY_DIR_REQUEST ? x->st->c->srv : x->st->c->cli;
}

/* The session a half's bytes go to, and the stream id there. */
static nghttp2_session *receiver(struct h2_half *x, int32_t *id)
{
	*id = x->dir == POLICY_DIR_REQUEST ? x->st->up_id : x->st->app_id;
	return x->dir == POLICY_DIR_REQUEST ? x->st->c->cli : x->st->c->srv;
}

static size_t pending(const struct h2_half *x)
{
	return x->q.len - x->q_off;
}

/* Give the sender back the window of what it sent, once the queue is low. */
static void give_window(struct h2_half *x)
{
	int32_t id;
	if (!x->unconsumed || pending(x) >= H2_QUEUE_LOW)
		return;
	nghttp2_session *s = sender(x, &id);
	if (id <= 0 || nghttp2_session_consume(s, id, x->unconsumed) != 0)
		nghttp2_session_consume_connection(s, x->unconsumed);
	x->unconsumed = 0;
}

static void wake_receiver(struct h2_half *x)
{
	int32_t id;
	nghttp2_session *s = receiver(x, &id);
	if (id > 0 && x->started)
		nghttp2_session_resume_data(s, id);
}

static void grpc_note(struct h2_half *x, enum mask_outcome oc, enum mm_reason reason)
{
	if (x->outcome == MASK_OUTCOME_MASKED || oc == MASK_OUTCOME_BLOCKED) {
		x->outcome = oc;
		x->reason = reason;
	}
	x->gst.errors[reason]++;
}

static void report(struct h2_conn *c, struct h2_half *x)
{
	if (x->reported || (!x->started && !x->failed) || !c->hooks.message_done)
		return;
	x->reported = true;
	if (x->kind == BK_GRPC && grpc_framer_oversize(x->gf))
		grpc_note(x, MASK_OUTCOME_PASSED, MM_REASON_LIMIT);
	struct http_message_info info = {
		.direction = x->dir,
		.policy = x->pol,
		.status = x->status,
		.masked = x->kind == BK_MASK || x->kind == BK_GRPC,
		.outcome = MASK_OUTCOME_MASKED,
		.reason = x->reason,
		.header_values = x->header_values,
		.header_rule_values = x->rule_values,
		.protocol = x->st->grpc ? "grpc" : "h2",
		.method = x->st->grpc && x->pol && x->pol->pb_schema && x->st->path
				  ? pb_schema_method_name(x->pol->pb_schema, x->st->path,
							  strlen(x->st->path))
				  : NULL,
	};
	if (x->ms) {
		info.outcome = mask_stream_outcome(x->ms);
		info.stats = mask_stream_stats(x->ms);
		if (info.reason == MM_REASON_NONE)
			info.reason = mask_stream_reason(x->ms);
	} else if (x->kind == BK_GRPC) {
		info.outcome = x->outcome;
		info.stats = &x->gst;
	}
	if (x->failed)
		info.outcome = MASK_OUTCOME_BLOCKED;
	info.reply_status = x->reply_status;
	c->hooks.message_done(c->hooks.ctx, &info);
}

static int q_sink(void *ctx, const char *p, size_t n)
{
	struct h2_half *x = ctx;
	return mm_buf_append(&x->q, p, n);
}

static int discard_sink(void *ctx, const char *p, size_t n)
{
	return 0;
}

/* ---- gRPC messages ---- */

/* One whole gRPC message: masked by its descriptor, or as onError says without one. */
static int grpc_message(void *ctx, const char *msg, size_t len, struct mm_buf *out)
{
	struct h2_half *x = ctx;
	const struct policy *p = x->pol;
	int r = -EPROTO;
	bool observe = p->mode == POLICY_MODE_OBSERVE;
	x->gst.bytes_in += len + 5;
	x->gst.bytes_scanned += len;
	if (x->pbt) {
		size_t before = out->len;
		r = pb_mask_message(p, x->pbt, msg, len, out, &x->gst); /* observe: unchanged */
		if (r != -EPROTO)
			return r;
		out->len = before;
	}
	if (observe) {
		grpc_note(x, MASK_OUTCOME_PASSED,
			  x->pbt ? MM_REASON_BAD_PROTOBUF : MM_REASON_NO_DESCRIPTOR);
		return mm_buf_append(out, msg, len);
	}
	enum mm_reason reason = x->pbt ? MM_REASON_BAD_PROTOBUF : MM_REASON_NO_DESCRIPTOR;
	switch (p->on_error) {
	case POLICY_ONERR_PASS:
		grpc_note(x, MASK_OUTCOME_PASSED, reason);
		return mm_buf_append(out, msg, len);
	case POLICY_ONERR_FALLBACK:
		/* Same length only: the message's framing can never change. */
		grpc_note(x, MASK_OUTCOME_FALLBACK, reason);
		if ((r = mm_buf_append(out, msg, len)))
			return r;
		if (len)
			pb_mask_raw(p, out->data + out->len - len, len, &x->gst);
		return 0;
	default:
		grpc_note(x, MASK_OUTCOME_BLOCKED, reason);
		return -EPROTO;
	}
}

/* ---- refusing a half ---- */

static int submit_grpc_error(struct h2_conn *c, struct h2_stream *st, const char *msg)
{
	/* A proper gRPC error: trailers-only when nothing was answered yet, else trailers. */
	nghttp2_nv nv[] = {
		{(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
		{(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16,
		 NGHTTP2_NV_FLAG_NONE},
		{(uint8_t *)"grpc-status", (uint8_t *)"7", 11, 1, NGHTTP2_NV_FLAG_NONE},
		{(uint8_t *)"grpc-message", (uint8_t *)msg, 12, strlen(msg), NGHTTP2_NV_FLAG_NONE},
	};
	if (!st->resp.started) {
		st->resp.started = true;
		st->resp.in_end = st->resp.out_end = true;
		return nghttp2_submit_headers(c->srv, NGHTTP2_FLAG_END_STREAM, st->app_id, NULL, nv,
					      4, NULL);
	}
	return 0;
}

/*
 * The policy refuses what a half carries (onError: block, a message over the bound): the
 * upstream stream is cancelled; the app gets a gRPC error status when the stream is gRPC and
 * can still take one, else the stream is reset. Counted as blocked.
 */
static ssize_t read_half(nghttp2_session *session, int32_t id, uint8_t *buf, size_t len,
			 uint32_t *flags, nghttp2_data_source *src, void *user_data);

static void half_refuse(struct h2_conn *c, struct h2_half *x, enum mm_reason reason)
{
	struct h2_stream *st = x->st;
	if (x->failed)
		return;
	x->failed = true;
	if (x->reason == MM_REASON_NONE)
		x->reason = reason;
	if (x->reason == MM_REASON_NONE && x->ms)
		x->reason = mask_stream_reason(x->ms);
	if (st->up_id > 0 && !st->up_done)
		nghttp2_submit_rst_stream(c->cli, NGHTTP2_FLAG_NONE, st->up_id, NGHTTP2_CANCEL);
	struct h2_half *r = &st->resp;
	if (st->grpc && x->dir == POLICY_DIR_RESPONSE && r->started && !r->out_end) {
		/* Messages already masked go out, then the error in the trailers. */
		hdrs_clear(&r->trailers);
		hdrs_add(&r->trailers, (const uint8_t *)"grpc-status", 11, (const uint8_t *)"7", 1);
		hdrs_add(&r->trailers, (const uint8_t *)"grpc-message", 12,
			 (const uint8_t *)"meshmask: blocked by policy", 27);
		r->has_trailers = true;
		r->in_end = true;
		wake_receiver(r);
		return;
	}
	if (st->grpc && !r->started) {
		submit_grpc_error(c, st, "meshmask: blocked by policy");
		return;
	}
	if (x == r && r->head_held) {
		/* Nothing of the answer went out yet: an HTTP error in its place. */
		static const char body[] = "meshmask: the body was blocked by policy\n";
		const char *why = mm_reason_name(x->reason);
		nghttp2_nv nv[] = {
			{(uint8_t *)":status", (uint8_t *)"403", 7, 3, NGHTTP2_NV_FLAG_NONE},
			{(uint8_t *)"content-type", (uint8_t *)"text/plain", 12, 10,
			 NGHTTP2_NV_FLAG_NONE},
			{(uint8_t *)"x-meshmask-reason", (uint8_t *)why, 17, strlen(why),
			 NGHTTP2_NV_FLAG_NONE},
		};
		nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_half};
		r->q.len = r->q_off = 0;
		hdrs_free(&r->held);
		r->head_held = false;
		r->in_end = true;
		if (!mm_buf_append(&r->q, body, sizeof(body) - 1) &&
		    !nghttp2_submit_response(c->srv, st->app_id, nv, 3, &prd)) {
			r->reply_status = 403;
			return;
		}
	}
	nghttp2_submit_rst_stream(c->srv, NGHTTP2_FLAG_NONE, st->app_id, NGHTTP2_INTERNAL_ERROR);
}

/* A held response head goes out (header rules applied), with the body's data provider. */
static void release_head(struct h2_conn *c, struct h2_half *x)
{
	nghttp2_nv *nv = NULL;
	size_t n;
	struct hdrs vals = {0};
	if (!x->head_held)
		return;
	x->head_held = false;
	int r = build_nv(x, &x->held, true, &nv, &n, &vals);
	if (!r) {
		nghttp2_data_provider prd = {.source.ptr = x->st, .read_callback = read_half};
		r = nghttp2_submit_response(c->srv, x->st->app_id, nv, n, &prd);
	}
	free(nv);
	hdrs_free(&vals);
	hdrs_free(&x->held);
	if (r == -ENOMEM)
		c->err = r;
	else if (r)
		nghttp2_submit_rst_stream(c->srv, NGHTTP2_FLAG_NONE, x->st->app_id,
					  NGHTTP2_INTERNAL_ERROR);
}

/* ---- bodies ---- */

static void half_input(struct h2_conn *c, struct h2_half *x, const uint8_t *data, size_t len)
{
	int r = 0;
	x->unconsumed += len;
	/* Refused, or nobody left to receive it: dropped, the window given back. */
	bool gone = x->dir == POLICY_DIR_RESPONSE ? x->st->app_done : x->st->up_done;
	if (x->failed || gone) {
		if (gone)
			x->q.len = x->q_off = 0;
		give_window(x);
		return;
	}
	switch (x->kind) {
	case BK_RAW:
		r = mm_buf_append(&x->q, data, len);
		break;
	case BK_OBSERVE:
		r = mm_buf_append(&x->q, data, len);
		if (!r && x->ms && !x->ms_dead &&
		    mask_stream_write(x->ms, data, len, discard_sink, NULL))
			x->ms_dead = true;
		break;
	case BK_MASK:
		r = mask_stream_write(x->ms, data, len, q_sink, x);
		break;
	case BK_GRPC:
		r = grpc_framer_feed(x->gf, data, len, q_sink, x);
		break;
	}
	if (r == -ENOMEM) {
		c->err = r;
		return;
	}
	if (r)
		half_refuse(c, x,
			    r == -EMSGSIZE  ? MM_REASON_LIMIT
			    : r == -EBADMSG ? MM_REASON_BAD_ENCODING
					    : MM_REASON_NONE);
	else if (pending(x))
		release_head(c, x);
	wake_receiver(x);
	give_window(x);
}

/* The sender ended its half (END_STREAM, or trailers). */
static void half_end(struct h2_conn *c, struct h2_half *x)
{
	int r = 0;
	if (x->in_end)
		return;
	x->in_end = true;
	if (!x->failed) {
		if (x->kind == BK_MASK)
			r = mask_stream_finish(x->ms, q_sink, x);
		else if (x->kind == BK_OBSERVE && x->ms && !x->ms_dead)
			mask_stream_finish(x->ms, discard_sink, NULL);
		else if (x->kind == BK_GRPC)
			r = grpc_framer_finish(x->gf);
	}
	if (r == -ENOMEM)
		c->err = r;
	else if (r)
		half_refuse(c, x,
			    r == -EPROTO && x->kind == BK_GRPC ? MM_REASON_BAD_HTTP
							       : MM_REASON_NONE);
	else
		release_head(c, x);
	wake_receiver(x);
}

/* The receiver's session pulls a half's bytes. */
static ssize_t read_half(nghttp2_session *session, int32_t id, uint8_t *buf, size_t len,
			 uint32_t *flags, nghttp2_data_source *src, void *user_data)
{
	struct h2_conn *c = user_data;
	struct h2_stream *st = src->ptr;
	struct h2_half *x = session == c->cli ? &st->req : &st->resp;
	size_t n = pending(x);
	if (!n) {
		if (!x->in_end)
			return NGHTTP2_ERR_DEFERRED;
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		x->out_end = true;
		if (x->has_trailers && x->trailers.n) {
			nghttp2_nv *nv;
			size_t k;
			struct hdrs vals = {0};
			if (build_nv(x, &x->trailers, false, &nv, &k, &vals) == 0 &&
			    nghttp2_submit_trailer(session, id, nv, k) == 0)
				*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
			free(nv);
			hdrs_free(&vals);
		}
		report(c, x);
		return 0;
	}
	if (n > len)
		n = len;
	memcpy(buf, x->q.data + x->q_off, n);
	x->q_off += n;
	if (x->q_off == x->q.len) {
		x->q.len = x->q_off = 0;
		if (x->q.cap > 4 * H2_QUEUE_LOW)
			mm_buf_free(&x->q);
	}
	give_window(x);
	return (ssize_t)n;
}

/* ---- starting a half: the message's policy and body kind ---- */

static void half_start(struct h2_conn *c, struct h2_half *x, const struct hdrs *h)
{
	struct h2_stream *st = x->st;
	if (c->hooks.policy_for)
		x->pol = c->hooks.policy_for(c->hooks.ctx, x->dir);
	bool cov = x->pol && (x->pol->directions & x->dir);
	bool observe = cov && x->pol->mode == POLICY_MODE_OBSERVE;
	x->kind = BK_RAW;
	if (!cov)
		return;
	if (st->grpc) {
		const struct hdr *enc = hdrs_get(h, "grpc-encoding");
		x->kind = BK_GRPC;
		if (x->pol->pb_schema && st->path)
			x->pbt = pb_schema_method(x->pol->pb_schema, st->path, strlen(st->path),
						  x->dir);
		x->gst.n_rules = x->pol->n_rules;
		x->gst.rules = calloc(x->pol->n_rules ? x->pol->n_rules : 1, sizeof(*x->gst.rules));
		/* Under onError: pass (and observe) a message too large to hold goes on unread. */
		x->gf = grpc_framer_new(
			c->lim.max_grpc_message,
			grpc_coding_for(enc ? enc->value : NULL, enc ? enc->vlen : 0), grpc_message,
			x, x->pol->on_error == POLICY_ONERR_PASS || observe);
		if (!x->gst.rules || !x->gf)
			c->err = -ENOMEM;
		return;
	}
	const struct hdr *ct = hdrs_get(h, "content-type");
	const struct hdr *ce = hdrs_get(h, "content-encoding");
	struct mask_opts o = {.policy = x->pol,
			      .direction = x->dir,
			      .content_type = ct ? ct->value : NULL,
			      .content_encoding = ce ? ce->value : NULL};
	x->ms = mask_stream_new(&o);
	if (!x->ms) {
		c->err = -ENOMEM;
		return;
	}
	x->kind = observe ? BK_OBSERVE : BK_MASK;
}

/*
 * A half's headers go to its receiver: its policy and body kind decided, header rules applied,
 * then submitted as a request (toward the upstream) or a response (toward the app), with a
 * data provider unless the sender already ended. The request's id, 0, or a negative nghttp2
 * error.
 */
static int32_t send_head(struct h2_conn *c, struct h2_half *x, bool end)
{
	struct h2_stream *st = x->st;
	nghttp2_nv *nv = NULL;
	size_t n;
	struct hdrs vals = {0};
	int32_t r;
	half_start(c, x, &st->hdrs);
	if (c->err)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	if (x->dir == POLICY_DIR_RESPONSE && x->kind == BK_MASK && !end) {
		/* Held until the first masked byte (release_head) or a refusal (half_refuse). */
		hdrs_free(&x->held);
		x->held = st->hdrs;
		st->hdrs = (struct hdrs){0};
		x->head_held = x->started = true;
		return 0;
	}
	r = build_nv(x, &st->hdrs, x->kind == BK_MASK || x->kind == BK_GRPC, &nv, &n, &vals);
	if (!r) {
		nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_half};
		r = x->dir == POLICY_DIR_REQUEST
			    ? nghttp2_submit_request(c->cli, NULL, nv, n, end ? NULL : &prd, st)
			    : nghttp2_submit_response(c->srv, st->app_id, nv, n, end ? NULL : &prd);
	} else {
		r = NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	free(nv);
	hdrs_free(&vals);
	hdrs_clear(&st->hdrs);
	if (r < 0)
		return r;
	x->started = true;
	if (end) {
		x->in_end = x->out_end = true;
		report(c, x);
	}
	return r;
}

static int on_request(struct h2_conn *c, struct h2_stream *st, bool end)
{
	const struct hdr *path = hdrs_get(&st->hdrs, ":path");
	if (path && !(st->path = strdup(path->value)))
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	st->grpc = is_grpc(&st->hdrs);
	int32_t id = send_head(c, &st->req, end);
	if (id == NGHTTP2_ERR_CALLBACK_FAILURE)
		return id;
	if (id < 0) {
		/* The upstream takes no more streams (GOAWAY): the app may retry elsewhere. */
		nghttp2_submit_rst_stream(c->srv, NGHTTP2_FLAG_NONE, st->app_id,
					  NGHTTP2_REFUSED_STREAM);
		st->up_done = true;
		return 0;
	}
	st->up_id = id;
	return 0;
}

static int on_response(struct h2_conn *c, struct h2_stream *st, bool end)
{
	struct h2_half *x = &st->resp;
	const struct hdr *status = hdrs_get(&st->hdrs, ":status");
	x->status = status ? atoi(status->value) : 0;
	/*
	 * Interim responses are not forwarded; nor anything after a refusal, a second head, or
	 * once the app's stream is gone (it reset the stream while the answer was on its way).
	 */
	if ((x->status >= 100 && x->status < 200) || st->req.failed || x->started || st->app_done) {
		hdrs_clear(&st->hdrs);
		return 0;
	}
	int32_t r = send_head(c, x, end);
	if (r == NGHTTP2_ERR_CALLBACK_FAILURE)
		return r;
	if (r < 0) /* the app's stream cannot take it: this stream ends, not the connection */
		nghttp2_submit_rst_stream(c->cli, NGHTTP2_FLAG_NONE, st->up_id, NGHTTP2_CANCEL);
	return 0;
}

/* ---- nghttp2 callbacks, both sessions ---- */

static struct h2_stream *stream_of(nghttp2_session *s, int32_t id)
{
	return id > 0 ? nghttp2_session_get_stream_user_data(s, id) : NULL;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct h2_conn *c = ud;
	if (f->hd.type != NGHTTP2_HEADERS)
		return 0;
	struct h2_stream *st = stream_of(s, f->hd.stream_id);
	if (s == c->srv && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
		if (!(st = stream_new(c)))
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		st->app_id = f->hd.stream_id;
		nghttp2_session_set_stream_user_data(s, st->app_id, st);
	}
	if (st)
		hdrs_clear(&st->hdrs);
	return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
		     const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
	struct h2_stream *st = stream_of(s, f->hd.stream_id);
	if (!st)
		return 0;
	int r = hdrs_add(&st->hdrs, name, nlen, value, vlen);
	if (r == -ENOMEM)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	return r ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE : 0; /* too large: the stream is reset */
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct h2_conn *c = ud;
	struct h2_stream *st = stream_of(s, f->hd.stream_id);
	bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;
	bool from_app = s == c->srv;
	struct h2_half *x = st ? (from_app ? &st->req : &st->resp) : NULL;
	switch (f->hd.type) {
	case NGHTTP2_HEADERS:
		if (!st)
			return 0;
		if (from_app && f->headers.cat == NGHTTP2_HCAT_REQUEST)
			return on_request(c, st, end);
		if (!from_app && f->headers.cat == NGHTTP2_HCAT_RESPONSE)
			return on_response(c, st, end);
		if (x->started && end && !x->failed) {
			/* Trailers (gRPC status lives there). */
			hdrs_free(&x->trailers);
			x->trailers = st->hdrs;
			st->hdrs = (struct hdrs){0};
			x->has_trailers = true;
			half_end(c, x);
		}
		hdrs_clear(&st->hdrs);
		return 0;
	case NGHTTP2_DATA:
		if (x && end && x->started)
			half_end(c, x);
		return 0;
	case NGHTTP2_GOAWAY:
		/* The upstream takes no new streams: neither does the app from now on. */
		if (!from_app)
			nghttp2_submit_goaway(c->srv, NGHTTP2_FLAG_NONE,
					      nghttp2_session_get_last_proc_stream_id(c->srv),
					      f->goaway.error_code, NULL, 0);
		else
			nghttp2_submit_goaway(c->cli, NGHTTP2_FLAG_NONE,
					      nghttp2_session_get_last_proc_stream_id(c->cli),
					      f->goaway.error_code, NULL, 0);
		return 0;
	default:
		return 0;
	}
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
		   void *ud)
{
	struct h2_conn *c = ud;
	struct h2_stream *st = stream_of(s, id);
	if (!st) {
		nghttp2_session_consume_connection(s, len);
		return 0;
	}
	struct h2_half *x = s == c->srv ? &st->req : &st->resp;
	if (!x->started) {
		nghttp2_session_consume(s, id, len);
		return 0;
	}
	half_input(c, x, data, len);
	return c->err ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

static int on_stream_close(nghttp2_session *s, int32_t id, uint32_t error, void *ud)
{
	struct h2_conn *c = ud;
	struct h2_stream *st = stream_of(s, id);
	if (!st)
		return 0;
	if (s == c->srv) {
		/* The app's stream is over; a reset or early close cancels the upstream's. */
		st->app_done = true;
		if (st->up_id > 0 && !st->up_done && (error || !st->resp.in_end))
			nghttp2_submit_rst_stream(c->cli, NGHTTP2_FLAG_NONE, st->up_id,
						  NGHTTP2_CANCEL);
	} else {
		st->up_done = true;
		struct h2_half *r = &st->resp;
		if (!st->app_done && !r->failed && (error || !r->in_end)) {
			/* Cut by the upstream: the app's stream ends the same way. */
			nghttp2_submit_rst_stream(c->srv, NGHTTP2_FLAG_NONE, st->app_id,
						  error ? error : NGHTTP2_INTERNAL_ERROR);
			r->reason = MM_REASON_UPSTREAM_ERROR;
		}
	}
	stream_maybe_free(c, st);
	return 0;
}

/* ---- API ---- */

static nghttp2_session_callbacks *callbacks(void)
{
	nghttp2_session_callbacks *cb;
	if (nghttp2_session_callbacks_new(&cb))
		return NULL;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
	return cb;
}

struct h2_conn *h2_conn_new(const struct http_hooks *hooks, const struct h2_io *io,
			    const struct h2_limits *lim)
{
	struct h2_conn *c = calloc(1, sizeof(*c));
	nghttp2_session_callbacks *cb = callbacks();
	nghttp2_option *opt = NULL;
	if (!c || !cb || nghttp2_option_new(&opt))
		goto fail;
	if (hooks)
		c->hooks = *hooks;
	c->io = *io;
	if (lim)
		c->lim = *lim;
	nghttp2_option_set_no_auto_window_update(opt, 1);
	if (nghttp2_session_server_new2(&c->srv, cb, c, opt) ||
	    nghttp2_session_client_new2(&c->cli, cb, c, opt))
		goto fail;
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, H2_MAX_HEADER_BYTES},
		/* toward the upstream: no server push (a pushed stream would have no app stream) */
		{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	};
	if (nghttp2_submit_settings(c->srv, NGHTTP2_FLAG_NONE, iv, 2) ||
	    nghttp2_submit_settings(c->cli, NGHTTP2_FLAG_NONE, iv + 1, 2))
		goto fail;
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cb);
	return c;
fail:
	if (opt)
		nghttp2_option_del(opt);
	if (cb)
		nghttp2_session_callbacks_del(cb);
	h2_conn_free(c);
	errno = ENOMEM;
	return NULL;
}

struct h2_conn *h2_conn_upgrade(const struct http_hooks *hooks, const struct h2_io *io,
				const struct h2_limits *lim, const uint8_t *settings, size_t len,
				bool head)
{
	struct h2_conn *c = h2_conn_new(hooks, io, lim);
	struct h2_stream *st = c ? stream_new(c) : NULL;
	if (!st) {
		h2_conn_free(c);
		errno = ENOMEM;
		return NULL;
	}
	/* Stream 1: the HTTP/1.1 request (masked and reported by http.c), its answer to come. */
	st->app_id = st->up_id = 1;
	st->req.started = st->req.in_end = st->req.out_end = st->req.reported = true;
	if (nghttp2_session_upgrade2(c->srv, settings, len, head, st) ||
	    nghttp2_session_set_stream_user_data(c->srv, 1, st) ||
	    nghttp2_session_upgrade2(c->cli, settings, len, head, st)) {
		h2_conn_free(c);
		errno = EPROTO;
		return NULL;
	}
	return c;
}

int h2_conn_feed(struct h2_conn *c, uint32_t direction, const void *data, size_t len)
{
	nghttp2_session *s = direction == POLICY_DIR_REQUEST ? c->srv : c->cli;
	ssize_t r = nghttp2_session_mem_recv(s, data, len);
	if (c->err)
		return c->err;
	if (r < 0)
		return r == NGHTTP2_ERR_NOMEM ? -ENOMEM : -EPROTO;
	return 0;
}

static int pump_one(nghttp2_session *s, mask_sink_fn sink, void *ctx, size_t budget)
{
	size_t sent = 0;
	while (sent < budget) {
		const uint8_t *p;
		ssize_t n = nghttp2_session_mem_send(s, &p);
		if (n < 0)
			return n == NGHTTP2_ERR_NOMEM ? -ENOMEM : -EPROTO;
		if (!n)
			break;
		int r = sink(ctx, (const char *)p, (size_t)n);
		if (r)
			return r;
		sent += (size_t)n;
	}
	return 0;
}

int h2_conn_pump(struct h2_conn *c, size_t budget_client, size_t budget_server)
{
	int r = pump_one(c->cli, c->io.to_server, c->io.server, budget_server);
	if (!r)
		r = pump_one(c->srv, c->io.to_client, c->io.client, budget_client);
	if (!r && c->err)
		r = c->err;
	return r;
}

void h2_conn_eof(struct h2_conn *c, uint32_t direction)
{
	/* The side is gone: the other one gets a GOAWAY, its streams end with the connection. */
	nghttp2_session *other = direction == POLICY_DIR_REQUEST ? c->cli : c->srv;
	nghttp2_session_terminate_session(other, NGHTTP2_NO_ERROR);
	nghttp2_session *gone = direction == POLICY_DIR_REQUEST ? c->srv : c->cli;
	nghttp2_session_terminate_session(gone, NGHTTP2_NO_ERROR);
}

bool h2_conn_done(const struct h2_conn *c)
{
	return (!nghttp2_session_want_read(c->srv) && !nghttp2_session_want_write(c->srv)) ||
	       (!nghttp2_session_want_read(c->cli) && !nghttp2_session_want_write(c->cli) &&
		!nghttp2_session_want_write(c->srv));
}

size_t h2_conn_buffered(const struct h2_conn *c)
{
	size_t n = 0;
	for (const struct h2_stream *st = c->streams; st; st = st->next)
		n += pending(&st->req) + pending(&st->resp) + grpc_framer_buffered(st->req.gf) +
		     grpc_framer_buffered(st->resp.gf);
	return n;
}

void h2_conn_free(struct h2_conn *c)
{
	if (!c)
		return;
	while (c->streams)
		stream_free(c, c->streams);
	nghttp2_session_del(c->srv);
	nghttp2_session_del(c->cli);
	free(c);
}
