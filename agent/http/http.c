// SPDX-License-Identifier: Apache-2.0
/*
 * HTTP/1.1 framing for the masking proxy. Each direction is an incremental state machine:
 * head (buffered up to max_head, parsed in place when it arrives whole), then the body as
 * Content-Length, chunked (size lines, data, trailers) or close-delimited. Bodies are handled
 * in one of three modes:
 *   raw      no policy / direction not covered: input spans go straight to the sink;
 *   observe  raw, and the decoded body is also fed to the engine for its statistics;
 *   mask     framing is removed, the body goes through the engine, the output is held up to
 *            hold_body and sent with an exact Content-Length, or streamed chunked (or
 *            close-delimited to an HTTP/1.0 peer) once it grows past that.
 * Output is ordered through a small stage buffer (copied bytes) followed by one pending span
 * of the caller's input (not copied), so sink calls are batched without copying raw bytes.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "http.h"
#include "buf.h"
#include "codec.h"
#include "hdrrules.h"

#define HTTP_DEF_MAX_HEAD (64u * 1024)
#define HTTP_DEF_MAX_HEADERS 100u /* as Envoy and HAProxy */
#define HTTP_DEF_HOLD_BODY (64u * 1024)
#define HTTP_DEF_HOLD_BODY10 (1024u * 1024)
/*
 * Input taken per wake-up while a compressed body is scanned (see http_session_read_hint):
 * about HTTP_DECODED_PER_WAKE decoded bytes, from what the body expanded by so far, within
 * [HTTP_ENCODED_READ_MIN, HTTP_ENCODED_READ_MAX]; HTTP_ENCODED_READ until that is known.
 * dp_fair, interleaved runs: 4 KiB flat and these bounds gave the other pod 2.0-2.2 ms beside
 * 1.0 ms idle; letting JSON of a 4x expansion read 16 KiB gave 5.4-7.3 ms. What they change
 * is a bomb: at 200x, 512 B (100 KB decoded) per wake-up instead of 4 KiB (800 KB).
 */
#define HTTP_ENCODED_READ 4096u
#define HTTP_ENCODED_READ_MIN 512u
#define HTTP_ENCODED_READ_MAX 4096u
#define HTTP_DECODED_PER_WAKE (16u * 1024)
#define HTTP_STAGE_MAX (16u * 1024)
#define HTTP_STAGE_DIRECT (4u * 1024) /* larger pieces bypass the stage */
#define HTTP_FIFO_MAX 4096u /* pipelined requests awaiting a response */
#define HTTP_CHUNK_LINE_MAX 4096u
#define HTTP_METHOD_MAX 32u
#define HTTP_MAX_SIZE (1ull << 60) /* larger Content-Length / chunk sizes are refused */

enum hstate {
	HS_HEAD,
	HS_BODY_CL,
	HS_CHUNK_SIZE,
	HS_CHUNK_EXT,
	HS_CHUNK_LF,
	HS_CHUNK_DATA,
	HS_CHUNK_DATA_CR,
	HS_CHUNK_DATA_LF,
	HS_TRAILER,
	HS_BODY_CLOSE,
	HS_TUNNEL, /* opaque bytes, forwarded as they come */
	HS_RAWSCAN, /* not HTTP under onError=fallback: entity scan of the raw stream */
	HS_CLOSED, /* output was closed-delimited or the peer sent eof: input is dropped */
	HS_DEAD, /* an error cut the stream */
	HS_H2C, /* the upstream accepted an h2c upgrade: its bytes are HTTP/2, kept for h2.c */
};

enum body_mode { BM_RAW, BM_OBSERVE, BM_MASK };
enum out_framing { OF_HELD, OF_CHUNKED, OF_CLOSE };

/* Entries of the request FIFO: what a response needs to know about its request. */
enum { RQ_OTHER = 0, RQ_HEAD = 1, RQ_CONNECT = 2, RQ_HTTP10 = 4, RQ_UPGRADE = 8, RQ_H2C = 16 };

/* Incremental check of a first line, so that non-HTTP bytes are recognised early. */
enum fl_state {
	FL_METHOD,
	FL_TARGET,
	FL_VERSION,
	FL_CR,
	FL_LF,
	FL_STATUS_SP,
	FL_STATUS,
	FL_REASON,
	FL_DONE,
};

struct hdir {
	struct http_session *s;
	uint32_t dir;
	enum hstate st;
	bool started; /* a message has been parsed: later garbage is bad_http, not not_http */
	bool must_close;
	bool eof;

	struct mm_buf head; /* partial head (or the head of a message awaiting its body) */
	size_t head_scan;
	enum fl_state fl;
	size_t fl_n;

	uint64_t remaining; /* Content-Length left, or chunk data left */
	size_t line_len; /* chunk-size line / trailer line length so far */
	bool seen_digit, cr;
	uint8_t ext; /* where in a chunk extension (enum ext_state) */

	/* the current message */
	bool have_policy;
	struct policy *pol;
	enum body_mode bm;
	struct mask_stream *ms;
	/* the last message's stream, kept for the next one with the same policy (its own ref) */
	struct mask_stream *spare;
	struct policy *spare_pol;
	bool ms_dead; /* observe: the engine gave up; keep forwarding */
	bool body; /* the message has a body that goes through the engine */
	enum out_framing of;
	bool head_sent;
	bool peer10; /* the receiver cannot take chunked */
	size_t charged; /* bytes of `held` counted in the shared budget */
	bool encoded; /* the body being scanned is compressed: each input byte may be 200 out */
	bool had_cl; /* input framing, to tell whether re-framing changed anything */
	uint64_t in_cl;
	struct mm_buf ohead; /* rewritten head without the final CRLF (mask mode) */
	struct mm_buf conn; /* Connection/Keep-Alive lines held back from ohead */
	struct mm_buf held;
	struct mm_buf trail;
	int status;
	bool reframed;
	bool pushed; /* a request whose FIFO entry is pushed */
	enum http_tunnel tunnel;
	bool tunnel_upgrade;
	int reply_status;
	enum mm_reason reason;
	enum mask_outcome outcome_override;
	bool has_outcome_override;
	uint64_t header_values;
	uint64_t *rule_values;
	size_t n_rule_values;

	/* output of the current feed call */
	mask_sink_fn sink;
	void *sink_ctx;
	struct mm_buf stage;
	const char *raw;
	size_t raw_len;
};

struct http_session {
	struct http_hooks hooks;
	struct http_limits lim;
	struct hdir d[2];
	bool tunnel;
	bool replied; /* the client was answered by the session itself: nothing more flows */
	bool req_opaque; /* the request stream is forwarded unparsed (onError: pass) */
	/* h2c upgrade (RFC 7540 §3.2): the request's HTTP2-Settings, decoded; the switch */
	uint8_t h2c_settings[512];
	size_t h2c_settings_len;
	bool h2c_head, h2c;
	struct mm_buf h2c_rest; /* the server's bytes after its 101 */
	unsigned char *fifo;
	size_t fifo_cap, fifo_head, fifo_len;
};

/* Parsed head. */
struct hinfo {
	bool req;
	int kind;
	bool http10;
	int status;
	bool has_cl, has_te, te_chunked, expect_continue, upgrade, h2c;
	struct mm_span h2settings;
	uint64_t cl;
	struct mm_span ct, ce;
};

static struct hdir *dir_of(struct http_session *s, uint32_t direction)
{
	if (direction == POLICY_DIR_REQUEST)
		return &s->d[0];
	if (direction == POLICY_DIR_RESPONSE)
		return &s->d[1];
	return NULL;
}

/* ---- output ---- */

static int flush_stage(struct hdir *d)
{
	if (!d->stage.len)
		return 0;
	int r = d->sink(d->sink_ctx, d->stage.data, d->stage.len);
	d->stage.len = 0;
	return r;
}

static int flush_all(struct hdir *d)
{
	int r = flush_stage(d);
	if (r)
		return r;
	if (d->raw_len) {
		r = d->sink(d->sink_ctx, d->raw, d->raw_len);
		d->raw_len = 0;
	}
	return r;
}

/* Forward a span of the caller's input (borrowed, not copied). */
static int fwd(struct hdir *d, const char *p, size_t n)
{
	if (!n)
		return 0;
	if (d->raw_len && d->raw + d->raw_len == p) {
		d->raw_len += n;
		return 0;
	}
	if (d->raw_len) {
		int r = flush_all(d);
		if (r)
			return r;
	}
	d->raw = p;
	d->raw_len = n;
	return 0;
}

/* Send bytes that are not the caller's input (copied into the stage when small). */
static int emit(struct hdir *d, const void *p, size_t n)
{
	int r;
	if (!n)
		return 0;
	if (d->raw_len || n >= HTTP_STAGE_DIRECT || d->stage.len + n > HTTP_STAGE_MAX) {
		r = flush_all(d);
		if (r)
			return r;
	}
	if (n >= HTTP_STAGE_DIRECT)
		return d->sink(d->sink_ctx, p, n);
	return mm_buf_append(&d->stage, p, n);
}

static int emit_str(struct hdir *d, const char *str)
{
	return emit(d, str, strlen(str));
}

static int emit_chunk(struct hdir *d, const char *p, size_t n)
{
	char hdr[24];
	if (!n)
		return 0;
	int k = snprintf(hdr, sizeof(hdr), "%zx\r\n", n);
	int r = emit(d, hdr, (size_t)k);
	if (!r)
		r = emit(d, p, n);
	if (!r)
		r = emit(d, "\r\n", 2);
	return r;
}

/* ---- request FIFO ---- */

static int fifo_push(struct http_session *s, unsigned char v)
{
	if (s->fifo_len == s->fifo_cap) {
		if (s->fifo_cap >= HTTP_FIFO_MAX)
			return -ENOBUFS;
		size_t cap = s->fifo_cap ? s->fifo_cap * 2 : 16;
		unsigned char *f = malloc(cap);
		if (!f)
			return -ENOMEM;
		for (size_t i = 0; i < s->fifo_len; i++)
			f[i] = s->fifo[(s->fifo_head + i) % s->fifo_cap];
		free(s->fifo);
		s->fifo = f;
		s->fifo_cap = cap;
		s->fifo_head = 0;
	}
	s->fifo[(s->fifo_head + s->fifo_len) % s->fifo_cap] = v;
	s->fifo_len++;
	return 0;
}

static unsigned char fifo_pop(struct http_session *s)
{
	if (!s->fifo_len)
		return RQ_OTHER; /* a response nobody asked for: frame it as a GET's */
	unsigned char v = s->fifo[s->fifo_head];
	s->fifo_head = (s->fifo_head + 1) % s->fifo_cap;
	s->fifo_len--;
	return v;
}

/* ---- message lifecycle ---- */

static struct policy *dir_policy(struct hdir *d)
{
	struct http_session *s = d->s;
	if (!d->have_policy) {
		d->have_policy = true;
		d->pol = s->hooks.policy_for ? s->hooks.policy_for(s->hooks.ctx, d->dir) : NULL;
	}
	return d->pol;
}

static bool covered(struct hdir *d)
{
	struct policy *p = dir_policy(d);
	return p && (p->directions & d->dir);
}

static struct policy *conn_policy(struct http_session *s);

static void msg_done(struct hdir *d)
{
	struct http_session *s = d->s;
	/* A protocol switch is reported under the connection's policy, whatever the direction. */
	if (d->tunnel != HTTP_TUNNEL_NONE && !d->pol) {
		d->have_policy = true;
		d->pol = conn_policy(s);
	}
	if (s->hooks.message_done) {
		struct http_message_info info = {
			.direction = d->dir,
			.policy = d->pol,
			.status = d->status,
			.masked = d->ms != NULL,
			.reframed = d->reframed,
			.outcome = MASK_OUTCOME_MASKED,
			.reason = d->reason,
			.header_values = d->header_values,
			.header_rule_values = d->pol && d->n_rule_values >= d->pol->n_rules
						      ? d->rule_values
						      : NULL,
			.tunnel = d->tunnel,
			.upgrade = d->tunnel_upgrade,
			.reply_status = d->reply_status,
		};
		if (d->ms) {
			info.outcome = mask_stream_outcome(d->ms);
			info.stats = mask_stream_stats(d->ms);
			if (info.reason == MM_REASON_NONE)
				info.reason = mask_stream_reason(d->ms);
		}
		if (d->has_outcome_override)
			info.outcome = d->outcome_override;
		s->hooks.message_done(s->hooks.ctx, &info);
	}
}

/*
 * Streams kept for reuse across all sessions, at most HTTP_MAX_SPARES (a kept stream is
 * ≈ 10–20 KiB): a node with more busy keep-alive connections than that allocates per
 * message on the rest, as before, instead of growing without bound.
 */
#define HTTP_MAX_SPARES 1024
static atomic_size_t spares_kept;

/* Take the kept stream out (its count and its policy reference go with it); NULL if none. */
static struct mask_stream *spare_take(struct hdir *d)
{
	struct mask_stream *ms = d->spare;
	if (ms)
		atomic_fetch_sub(&spares_kept, 1);
	d->spare = NULL;
	if (d->spare_pol)
		policy_unref(d->spare_pol);
	d->spare_pol = NULL;
	return ms;
}

static void spare_free(struct hdir *d)
{
	mask_stream_free(spare_take(d));
}

/*
 * A stream for a body under o->policy: the last message's when it had the same policy
 * (mask_stream_reuse keeps what it derived from the policy, its keyed HMAC contexts and its
 * buffers), else a new one. NULL with errno.
 */
static struct mask_stream *stream_for(struct hdir *d, const struct mask_opts *o)
{
	if (d->spare && d->spare_pol == o->policy && mask_stream_reuse(d->spare, o) == 0)
		return spare_take(d);
	spare_free(d);
	return mask_stream_new(o);
}

/* Count n more held bytes in the shared budget; false when it has no room for them. */
static bool budget_take(struct hdir *d, size_t n)
{
	struct http_budget *b = d->s->lim.budget;
	if (!b)
		return true;
	size_t now = __atomic_add_fetch(&b->used, n, __ATOMIC_RELAXED);
	if (b->max && now > b->max) {
		__atomic_sub_fetch(&b->used, n, __ATOMIC_RELAXED);
		return false;
	}
	d->charged += n;
	return true;
}

/* The held body left (sent, streamed or dropped): its bytes leave the budget. */
static void budget_release(struct hdir *d)
{
	if (d->charged && d->s->lim.budget)
		__atomic_sub_fetch(&d->s->lim.budget->used, d->charged, __ATOMIC_RELAXED);
	d->charged = 0;
}

static void msg_reset(struct hdir *d)
{
	if (d->ms && d->pol) {
		spare_free(d); /* (none: stream_for took it or freed it) */
		if (atomic_fetch_add(&spares_kept, 1) < HTTP_MAX_SPARES) {
			d->spare = d->ms;
			d->spare_pol = policy_ref(d->pol);
			d->ms = NULL;
		} else {
			atomic_fetch_sub(&spares_kept, 1);
		}
	}
	mask_stream_free(d->ms);
	d->ms = NULL;
	if (d->pol)
		policy_unref(d->pol);
	d->pol = NULL;
	d->have_policy = false;
	d->bm = BM_RAW;
	d->ms_dead = false;
	d->body = false;
	budget_release(d);
	d->encoded = false;
	d->of = OF_HELD;
	d->head_sent = false;
	d->peer10 = false;
	d->had_cl = false;
	d->in_cl = 0;
	mm_buf_reset(&d->ohead);
	mm_buf_reset(&d->conn);
	if (d->held.cap > HTTP_STAGE_MAX)
		mm_buf_free(&d->held);
	mm_buf_reset(&d->held);
	mm_buf_reset(&d->trail);
	d->status = 0;
	d->reframed = false;
	d->pushed = false;
	d->tunnel = HTTP_TUNNEL_NONE;
	d->tunnel_upgrade = false;
	d->reply_status = 0;
	d->reason = MM_REASON_NONE;
	d->has_outcome_override = false;
	d->header_values = 0;
	if (d->rule_values)
		memset(d->rule_values, 0, d->n_rule_values * sizeof(*d->rule_values));
}

static void msg_end(struct hdir *d)
{
	msg_done(d);
	msg_reset(d);
}

/* Cut the stream: report the message with `reason` and refuse everything after. */
static int fail(struct hdir *d, enum mm_reason reason, int err)
{
	if (d->st != HS_DEAD) {
		if (d->reason == MM_REASON_NONE)
			d->reason = reason;
		/* report only a message in progress (not a sink error between messages) */
		if (d->have_policy || d->st != HS_HEAD || d->head.len)
			msg_done(d);
		msg_reset(d);
		d->st = HS_DEAD;
	}
	return err;
}

/* The connection's policy, whatever the direction it masks (a new reference), or NULL. */
static struct policy *conn_policy(struct http_session *s)
{
	return s->hooks.policy_for ? s->hooks.policy_for(s->hooks.ctx, ~0u) : NULL;
}

/*
 * The policy a message is reported under: the direction's, else (a direction the policy does
 * not mask) the connection's. Only once the message is ending: header rules and body modes
 * go by the direction's policy alone.
 */
static void report_policy(struct hdir *d)
{
	dir_policy(d);
	if (!d->pol)
		d->pol = conn_policy(d->s);
}

static const char *status_text(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 408:
		return "Request Timeout";
	case 431:
		return "Request Header Fields Too Large";
	default:
		return "Bad Gateway";
	}
}

/*
 * Answer the client in HTTP in place of what d refuses, where HTTP can still be spoken: for a
 * request, no response is under way or owed (but the one to this request); for a response,
 * nothing of it has been sent. 0 when answered, -EAGAIN when it cannot be, or the sink's error.
 * The answer names the reason, never anything from the traffic.
 */
static int local_reply(struct hdir *d, int status, enum mm_reason reason, const char *what)
{
	struct http_session *s = d->s;
	const struct hdir *rd = &s->d[1];
	char body[192], msg[512];
	int r;
	if (s->replied)
		return -EAGAIN;
	if (d->dir == POLICY_DIR_REQUEST) {
		if (!s->hooks.reply || rd->st != HS_HEAD || rd->head.len ||
		    s->fifo_len > (d->pushed ? 1u : 0u))
			return -EAGAIN;
	} else if (d->head_sent || s->req_opaque) {
		return -EAGAIN;
	}
	int bn = snprintf(body, sizeof(body), "meshmask: %s\n", what);
	int k = snprintf(msg, sizeof(msg),
			 "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
			 "Connection: close\r\nx-meshmask-reason: %s\r\n\r\n%s",
			 status, status_text(status), bn, mm_reason_name(reason), body);
	if (d->dir == POLICY_DIR_REQUEST)
		r = s->hooks.reply(s->hooks.ctx, msg, (size_t)k);
	else if (!(r = flush_all(d)))
		r = d->sink(d->sink_ctx, msg, (size_t)k);
	if (r)
		return r;
	s->replied = true;
	d->reply_status = status;
	return 0;
}

/*
 * Refuse what d is receiving: the message is reported as blocked for `reason` (under the
 * connection's policy when the direction is not masked), the client gets an HTTP error with
 * `status` (0: 400 for a request, 502 for a response) when it can still take one, and the
 * stream is cut. Returns -EPROTO.
 */
static int refuse(struct hdir *d, enum mm_reason reason, int status, const char *what)
{
	if (d->st == HS_DEAD)
		return -EPROTO;
	report_policy(d);
	if (d->reason == MM_REASON_NONE)
		d->reason = reason;
	if (d->reason == MM_REASON_NONE && d->ms)
		d->reason = mask_stream_reason(d->ms);
	d->has_outcome_override = true;
	d->outcome_override = MASK_OUTCOME_BLOCKED;
	if (!status)
		status = d->dir == POLICY_DIR_REQUEST ? 400 : 502;
	if (!what)
		what = d->dir == POLICY_DIR_REQUEST ? "the request is not valid HTTP/1.1"
						    : "the upstream response is not valid HTTP/1.1";
	local_reply(d, status, d->reason, what);
	return fail(d, d->reason, -EPROTO);
}

/* ---- masked body output ---- */

static int discard_sink(void *ctx, const char *p, size_t n)
{
	return 0;
}

/* Send the engine output collected for the next chunk. */
static int flush_chunk(struct hdir *d)
{
	if (d->of != OF_CHUNKED || !d->held.len)
		return 0;
	int r = emit_chunk(d, d->held.data, d->held.len);
	d->held.len = 0;
	return r;
}

/* The held body outgrew hold_body: send the head and stream from now on. */
static int start_stream(struct hdir *d)
{
	int r;
	if (d->peer10) {
		if (d->dir == POLICY_DIR_REQUEST)
			return -EMSGSIZE; /* a request body cannot be delimited by closing */
		d->of = OF_CLOSE;
		d->must_close = true;
		r = emit(d, d->ohead.data, d->ohead.len);
		if (!r)
			r = emit_str(d, "Connection: close\r\n\r\n");
	} else {
		d->of = OF_CHUNKED;
		r = emit(d, d->ohead.data, d->ohead.len);
		if (!r)
			r = emit(d, d->conn.data, d->conn.len);
		if (!r)
			r = emit_str(d, "Transfer-Encoding: chunked\r\n\r\n");
	}
	d->head_sent = true;
	d->reframed = true;
	d->ohead.len = d->conn.len = 0;
	if (r)
		return r;
	r = d->of == OF_CHUNKED ? flush_chunk(d) : emit(d, d->held.data, d->held.len);
	mm_buf_free(&d->held);
	budget_release(d);
	return r;
}

static int body_out(void *ctx, const char *p, size_t n)
{
	struct hdir *d = ctx;
	int r;
	if (!n)
		return 0;
	if (d->of == OF_HELD) {
		/* Only a request to an HTTP/1.0 server must be held whole; others may stream. */
		bool must = d->peer10 && d->dir == POLICY_DIR_REQUEST;
		size_t hold = must ? d->s->lim.hold_body10 : d->s->lim.hold_body;
		if (d->held.len + n <= hold && budget_take(d, n))
			return mm_buf_append(&d->held, p, n);
		r = start_stream(d);
		if (r)
			return r;
	}
	if (d->of != OF_CHUNKED)
		return emit(d, p, n);
	/*
	 * The engine hands out small pieces: coalesce them into chunks of a useful size. A large
	 * piece with nothing staged goes out as it is: staging it would only keep a copy of it
	 * (and a buffer its size) per connection.
	 */
	if (!d->held.len && n >= HTTP_STAGE_MAX)
		return emit_chunk(d, p, n);
	r = mm_buf_append(&d->held, p, n);
	if (r || d->held.len < HTTP_STAGE_MAX)
		return r;
	return flush_chunk(d);
}

/* Engine input errors are mapped to the stream cut they require. */
static int engine_err(struct hdir *d, int r)
{
	if (r == -EMSGSIZE)
		return refuse(d, MM_REASON_LIMIT, 0, "a body over the agent's limit was blocked");
	if (r == -EPROTO)
		return refuse(d, MM_REASON_NONE, 403, "the body was blocked by policy (onError)");
	return fail(d, r == -ENOMEM ? MM_REASON_INTERNAL : MM_REASON_NONE, r);
}

/* Body bytes (framing removed) at p[0, n) of the caller's input. */
static int body_bytes(struct hdir *d, const char *p, size_t n)
{
	int r;
	if (!n)
		return 0;
	switch (d->bm) {
	case BM_RAW:
		return fwd(d, p, n);
	case BM_OBSERVE:
		r = fwd(d, p, n);
		if (r)
			return r;
		if (d->ms && !d->ms_dead && mask_stream_write(d->ms, p, n, discard_sink, NULL))
			d->ms_dead = true;
		return 0;
	case BM_MASK:
		r = mask_stream_write(d->ms, p, n, body_out, d);
		return r ? engine_err(d, r) : 0;
	}
	return 0;
}

/*
 * Framing bytes: chunk lines are forwarded unless the body is re-framed; the trailer section is
 * kept (within max_head) until it is complete and checked (trailers_ok).
 */
static int framing_bytes(struct hdir *d, const char *p, size_t n, bool trailer)
{
	if (trailer) {
		if (d->trail.len + n > d->s->lim.max_head)
			return refuse(d, MM_REASON_LIMIT, 0, "the trailer section is over the limit");
		return mm_buf_append(&d->trail, p, n);
	}
	return d->bm != BM_MASK ? fwd(d, p, n) : 0;
}

static int enter_head(struct hdir *d);

/* The message body ended (also for bodyless messages). */
static int body_end(struct hdir *d)
{
	int r = 0;
	char hdr[64];
	if (d->bm == BM_OBSERVE && d->ms && !d->ms_dead) {
		if (mask_stream_finish(d->ms, discard_sink, NULL))
			d->ms_dead = true;
	} else if (d->bm == BM_MASK && d->ms) {
		r = mask_stream_finish(d->ms, body_out, d);
		if (r)
			return engine_err(d, r);
		if (d->of == OF_HELD) {
			if (!d->had_cl || d->in_cl != d->held.len)
				d->reframed = true;
			int k = snprintf(hdr, sizeof(hdr), "Content-Length: %zu\r\n\r\n",
					 d->held.len);
			r = emit(d, d->ohead.data, d->ohead.len);
			if (!r)
				r = emit(d, d->conn.data, d->conn.len);
			if (!r)
				r = emit(d, hdr, (size_t)k);
			if (!r)
				r = emit(d, d->held.data, d->held.len);
		} else if (d->of == OF_CHUNKED) {
			r = flush_chunk(d);
			if (!r)
				r = emit_str(d, "0\r\n");
			if (!r)
				r = d->trail.len ? emit(d, d->trail.data, d->trail.len)
						 : emit_str(d, "\r\n");
		}
		if (r)
			return fail(d, MM_REASON_NONE, r);
	}
	bool close = d->must_close;
	msg_end(d);
	if (close) {
		d->st = HS_CLOSED;
		return 0;
	}
	return enter_head(d);
}

static int enter_head(struct hdir *d)
{
	d->st = d->s->tunnel ? HS_TUNNEL : HS_HEAD;
	d->head.len = 0;
	d->head_scan = 0;
	d->fl = d->dir == POLICY_DIR_REQUEST ? FL_METHOD : FL_VERSION;
	d->fl_n = 0;
	return 0;
}

/* ---- h2c upgrade ---- */

/* Decode a request's HTTP2-Settings (base64url, no padding) into the session: 0 or -EINVAL. */
static int h2c_settings(struct http_session *s, struct mm_span v)
{
	char b64[sizeof(s->h2c_settings) / 3 * 4 + 4];
	size_t n = 0;
	if (!v.base || v.len > sizeof(b64) - 4)
		return -EINVAL;
	for (size_t i = 0; i < v.len; i++) {
		char c = v.base[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return -EINVAL;
		b64[n++] = c == '-' ? '+' : c == '_' ? '/' : c;
	}
	size_t pad = (4 - n % 4) % 4;
	if (pad == 3)
		return -EINVAL;
	memset(b64 + n, '=', pad);
	n += pad;
	int k = n ? EVP_DecodeBlock(s->h2c_settings, (const unsigned char *)b64, (int)n) : 0;
	if (k < 0 || (size_t)k < pad || ((size_t)k - pad) % 6)
		return -EINVAL; /* SETTINGS entries are 6 bytes each */
	s->h2c_settings_len = (size_t)k - pad;
	return 0;
}

/* ---- head parsing ---- */

static bool is_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_vchar_or_obs(unsigned char c)
{
	return (c > 0x20 && c != 0x7f);
}

/* One byte of a first line: 1 when the line is complete, 0 to go on, -1 if not HTTP/1.x. */
static int fl_step(struct hdir *d, unsigned char c)
{
	static const char ver[] = "HTTP/1.";
	switch (d->fl) {
	case FL_METHOD:
		if (c == ' ' && d->fl_n) {
			d->fl = FL_TARGET;
			d->fl_n = 0;
			return 0;
		}
		if (!is_tchar(c) || ++d->fl_n > HTTP_METHOD_MAX)
			return -1;
		return 0;
	case FL_TARGET:
		if (c == ' ' && d->fl_n) {
			d->fl = FL_VERSION;
			d->fl_n = 0;
			return 0;
		}
		if (!is_vchar_or_obs(c))
			return -1;
		d->fl_n++;
		return 0;
	case FL_VERSION:
		if (d->fl_n < 7) {
			if (c != (unsigned char)ver[d->fl_n])
				return -1;
			d->fl_n++;
			return 0;
		}
		if (c < '0' || c > '9')
			return -1;
		d->fl_n = 0;
		d->fl = d->dir == POLICY_DIR_REQUEST ? FL_CR : FL_STATUS_SP;
		return 0;
	case FL_STATUS_SP:
		if (c != ' ')
			return -1;
		d->fl = FL_STATUS;
		return 0;
	case FL_STATUS:
		if (c < '0' || c > '9')
			return -1;
		if (++d->fl_n == 3)
			d->fl = FL_REASON;
		return 0;
	case FL_REASON:
		if (c == '\r') {
			d->fl = FL_LF;
			return 0;
		}
		if (c == '\t' || c >= 0x20)
			return c == 0x7f ? -1 : 0;
		return -1;
	case FL_CR:
		if (c != '\r')
			return -1;
		d->fl = FL_LF;
		return 0;
	case FL_LF:
		if (c != '\n')
			return -1;
		d->fl = FL_DONE;
		return 1;
	case FL_DONE:
		return 1;
	}
	return -1;
}

static bool span_ieq(const char *p, size_t n, const char *lit)
{
	return strlen(lit) == n && strncasecmp(p, lit, n) == 0;
}

static void trim(const char **p, size_t *n)
{
	while (*n && ((*p)[0] == ' ' || (*p)[0] == '\t')) {
		(*p)++;
		(*n)--;
	}
	while (*n && ((*p)[*n - 1] == ' ' || (*p)[*n - 1] == '\t'))
		(*n)--;
}

/* Content-Length: digits, or a list of identical values ("5, 5"). */
static int parse_cl(const char *v, size_t n, struct hinfo *hi)
{
	size_t i = 0;
	for (;;) {
		while (i < n && (v[i] == ' ' || v[i] == '\t'))
			i++;
		if (i == n || v[i] < '0' || v[i] > '9')
			return -1;
		uint64_t x = 0;
		while (i < n && v[i] >= '0' && v[i] <= '9') {
			x = x * 10 + (uint64_t)(v[i++] - '0');
			if (x > HTTP_MAX_SIZE)
				return -1;
		}
		if (hi->has_cl && hi->cl != x)
			return -1;
		hi->has_cl = true;
		hi->cl = x;
		while (i < n && (v[i] == ' ' || v[i] == '\t'))
			i++;
		if (i == n)
			return 0;
		if (v[i++] != ',')
			return -1;
	}
}

/* Transfer-Encoding: a list whose last coding must be chunked, and chunked only last. */
static int parse_te(const char *v, size_t n, struct hinfo *hi)
{
	size_t i = 0;
	for (;;) {
		size_t b = i;
		while (i < n && v[i] != ',')
			i++;
		const char *t = v + b;
		size_t tn = i - b;
		trim(&t, &tn);
		if (!tn)
			return -1;
		if (hi->te_chunked)
			return -1; /* something after chunked */
		if (span_ieq(t, tn, "chunked"))
			hi->te_chunked = true;
		else
			return -1; /* other transfer codings are not supported: refuse */
		if (i == n)
			break;
		i++;
	}
	hi->has_te = true;
	return 0;
}

/* Iterate header lines of a complete head: *pos at a line start. 1 = a line, 0 = end, -1. */
struct hline {
	const char *line;
	size_t line_len; /* including CRLF */
	const char *name, *val;
	size_t name_len, val_len;
};

static int next_header(const char *h, size_t hlen, size_t *pos, struct hline *l)
{
	const char *p = h + *pos, *end = h + hlen;
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	if (!nl || nl == p || nl[-1] != '\r')
		return -1;
	size_t n = (size_t)(nl - p) - 1;
	*pos += n + 2;
	if (!n)
		return 0;
	l->line = p;
	l->line_len = n + 2;
	size_t i = 0;
	while (i < n && is_tchar((unsigned char)p[i]))
		i++;
	if (!i || i == n || p[i] != ':')
		return -1; /* empty name, obs-fold, whitespace before the colon */
	l->name = p;
	l->name_len = i;
	l->val = p + i + 1;
	l->val_len = n - i - 1;
	for (size_t j = 0; j < l->val_len; j++) {
		unsigned char c = (unsigned char)l->val[j];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return -1;
	}
	trim(&l->val, &l->val_len);
	return 1;
}

/* 0, -1 (not valid HTTP/1.1 or ambiguous), or -2 (more than max_headers field lines). */
static int parse_head(const char *h, size_t hlen, bool req, size_t max_headers, struct hinfo *hi,
		      size_t *first)
{
	memset(hi, 0, sizeof(*hi));
	hi->req = req;
	const char *nl = memchr(h, '\n', hlen);
	if (!nl || nl == h || nl[-1] != '\r')
		return -1;
	size_t n = (size_t)(nl - h) - 1;
	*first = n + 2;
	const char *sp1 = memchr(h, ' ', n);
	if (!sp1)
		return -1;
	if (req) {
		const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(h + n - sp1 - 1));
		if (!sp2 || h + n - sp2 != 9 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0)
			return -1;
		hi->http10 = sp2[8] == '0';
		size_t mlen = (size_t)(sp1 - h);
		if (mlen == 4 && memcmp(h, "HEAD", 4) == 0)
			hi->kind = RQ_HEAD;
		else if (mlen == 7 && memcmp(h, "CONNECT", 7) == 0)
			hi->kind = RQ_CONNECT;
	} else {
		if (sp1 - h != 8 || memcmp(h, "HTTP/1.", 7) != 0 || n < 12 ||
		    (n > 12 && h[12] != ' '))
			return -1;
		for (int i = 9; i < 12; i++)
			if (h[i] < '0' || h[i] > '9')
				return -1;
		hi->http10 = h[7] == '0';
		hi->status = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
	}
	size_t pos = *first, fields = 0;
	struct hline l;
	int r;
	while ((r = next_header(h, hlen, &pos, &l)) > 0) {
		if (++fields > max_headers)
			return -2;
		if (span_ieq(l.name, l.name_len, "content-length")) {
			if (parse_cl(l.val, l.val_len, hi))
				return -1;
		} else if (span_ieq(l.name, l.name_len, "transfer-encoding")) {
			if (parse_te(l.val, l.val_len, hi))
				return -1;
		} else if (span_ieq(l.name, l.name_len, "content-type")) {
			/* Two labels: clients disagree on which one counts, so neither is guessed. */
			if (hi->ct.base)
				return -1;
			hi->ct = (struct mm_span){l.val, l.val_len};
		} else if (span_ieq(l.name, l.name_len, "upgrade")) {
			hi->upgrade = l.val_len > 0;
			hi->h2c = span_ieq(l.val, l.val_len, "h2c");
		} else if (span_ieq(l.name, l.name_len, "http2-settings")) {
			hi->h2settings = (struct mm_span){l.val, l.val_len};
		} else if (span_ieq(l.name, l.name_len, "expect")) {
			hi->expect_continue = span_ieq(l.val, l.val_len, "100-continue");
		} else if (span_ieq(l.name, l.name_len, "content-encoding")) {
			/* Codings in two header lines: the engine sees one unknown coding. */
			hi->ce = hi->ce.base ? (struct mm_span){"multiple", 8}
					     : (struct mm_span){l.val, l.val_len};
		}
	}
	if (r < 0 || pos != hlen)
		return -1;
	if (hi->has_te && (hi->has_cl || hi->http10))
		return -1; /* request smuggling: ambiguous framing */
	return 0;
}

/* ---- header rules ---- */

static bool framing_header(const char *n, size_t len)
{
	static const char *const names[] = {
		"connection", "keep-alive", "proxy-connection",	 "te",
		"trailer",    "upgrade",    "transfer-encoding", "content-length",
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (span_ieq(n, len, names[i]))
			return true;
	return false;
}

/* Header rules on one header line (see hdrrules.h), counted per rule for the message. */
static int header_apply(struct hdir *d, const struct hline *l, bool enforce, struct mm_buf *out,
			bool *changed, bool *removed)
{
	if (!d->rule_values || d->n_rule_values < d->pol->n_rules) {
		uint64_t *v = calloc(d->pol->n_rules ? d->pol->n_rules : 1, sizeof(*v));
		if (!v)
			return -ENOMEM;
		free(d->rule_values);
		d->rule_values = v;
		d->n_rule_values = d->pol->n_rules;
	}
	return hdr_rules_apply(d->pol, l->name, l->name_len, l->val, l->val_len, enforce, out,
			       changed, removed, d->rule_values, &d->header_values);
}

/*
 * Build d->ohead (first line + headers, no final CRLF) with header rules applied and, when
 * the body is re-framed, its framing headers removed. *changed tells whether it differs.
 */
static int build_head(struct hdir *d, const char *h, size_t hlen, size_t first, bool enforce,
		      bool reframe, bool strip_upgrade, bool *changed)
{
	bool rules = d->pol && hdr_rules_any(d->pol);
	bool write = enforce || strip_upgrade;
	struct mm_buf val = {0};
	struct hline l;
	size_t pos = first;
	int r = 0, k;
	*changed = reframe;
	mm_buf_reset(&d->ohead);
	mm_buf_reset(&d->conn);
	if (write)
		r = mm_buf_append(&d->ohead, h, first);
	while (!r && (k = next_header(h, hlen, &pos, &l)) > 0) {
		bool framing = framing_header(l.name, l.name_len);
		/* tunnels: block. Without Upgrade the server answers in HTTP/1.1. */
		if (strip_upgrade && (span_ieq(l.name, l.name_len, "upgrade") ||
				      span_ieq(l.name, l.name_len, "http2-settings"))) {
			*changed = true;
			continue;
		}
		if (reframe && (span_ieq(l.name, l.name_len, "content-length") ||
				span_ieq(l.name, l.name_len, "transfer-encoding")))
			continue;
		if (reframe && d->peer10 &&
		    (span_ieq(l.name, l.name_len, "connection") ||
		     span_ieq(l.name, l.name_len, "keep-alive"))) {
			r = mm_buf_append(&d->conn, l.line, l.line_len);
			continue;
		}
		if (rules && !framing) {
			bool ch, rm;
			mm_buf_reset(&val);
			r = header_apply(d, &l, enforce, &val, &ch, &rm);
			if (r)
				break;
			if (rm) {
				*changed = true;
				continue;
			}
			if (ch) {
				*changed = true;
				r = mm_buf_append(&d->ohead, l.name, l.name_len);
				if (!r)
					r = mm_buf_append(&d->ohead, ": ", 2);
				if (!r)
					r = mm_buf_append(&d->ohead, val.data, val.len);
				if (!r)
					r = mm_buf_append(&d->ohead, "\r\n", 2);
				continue;
			}
		}
		if (write)
			r = mm_buf_append(&d->ohead, l.line, l.line_len);
	}
	mm_buf_free(&val);
	return r;
}

static void set_tunnel(struct http_session *s)
{
	s->tunnel = true;
	for (int i = 0; i < 2; i++)
		if (s->d[i].st == HS_HEAD)
			s->d[i].st = HS_TUNNEL;
}

/* A complete head h[0, hlen): in the caller's input when `in_place`, else in d->head. */
static int head_done(struct hdir *d, const char *h, size_t hlen, bool in_place)
{
	struct http_session *s = d->s;
	bool req = d->dir == POLICY_DIR_REQUEST;
	struct hinfo hi;
	size_t first;
	int r;

	dir_policy(d);
	int ph = parse_head(h, hlen, req, d->s->lim.max_headers, &hi, &first);
	if (ph == -2)
		return refuse(d, MM_REASON_LIMIT, req ? 431 : 502,
			      req ? "the request has more header fields than the agent's limit"
				  : "the upstream response has more header fields than the agent's "
				    "limit");
	if (ph)
		return refuse(d, MM_REASON_BAD_HTTP, 0, NULL);
	d->started = true;

	enum { B_NONE, B_CL, B_CHUNKED, B_CLOSE } framing = B_NONE;
	bool tunnel = false, strip = false, to_h2 = false;
	if (req) {
		if (hi.has_te)
			framing = B_CHUNKED;
		else if (hi.has_cl && hi.cl)
			framing = B_CL;
		bool pass = true; /* no policy left on the connection: nothing to mask */
		if (hi.kind == RQ_CONNECT || hi.upgrade) {
			struct policy *cp = conn_policy(s);
			pass = !cp || cp->tunnels == POLICY_TUNNELS_PASS;
			if (cp)
				policy_unref(cp);
		}
		if (hi.kind == RQ_CONNECT && !pass) {
			d->tunnel = HTTP_TUNNEL_REFUSED;
			return refuse(d, MM_REASON_TUNNEL, 403,
				      "CONNECT is refused by policy (spec.tunnels: block)");
		}
		/* Upgrade: h2c is masked as HTTP/2 when the server takes it, not tunnelled. */
		bool h2c = hi.h2c && hi.kind != RQ_CONNECT && !hi.http10 &&
			   h2c_settings(s, hi.h2settings) == 0;
		if (h2c)
			s->h2c_head = hi.kind == RQ_HEAD;
		strip = hi.upgrade && !pass && !h2c;
		if (strip) {
			d->tunnel = HTTP_TUNNEL_STRIPPED;
			d->tunnel_upgrade = true;
		}
		r = fifo_push(s, (unsigned char)(hi.kind | (hi.http10 ? RQ_HTTP10 : 0) |
						 (hi.upgrade && (pass || h2c) ? RQ_UPGRADE : 0) |
						 (h2c ? RQ_H2C : 0)));
		if (r)
			return refuse(d, MM_REASON_LIMIT, 0, "too many pipelined requests");
		d->pushed = true;
		d->peer10 = hi.http10;
	} else {
		d->status = hi.status;
		if (hi.status < 100)
			return refuse(d, MM_REASON_BAD_HTTP, 0, NULL);
		if (hi.status >= 200 || hi.status == 101) {
			unsigned char rq = fifo_pop(s);
			d->peer10 = hi.http10 || (rq & RQ_HTTP10);
			if (hi.status == 101) {
				/* Only an upgrade a request asked for, and the server names. */
				if (!(rq & RQ_UPGRADE) || !hi.upgrade) {
					d->tunnel = HTTP_TUNNEL_REFUSED;
					d->tunnel_upgrade = true;
					return refuse(d, MM_REASON_TUNNEL, 502,
						      "a protocol switch no request asked for");
				}
				if ((rq & RQ_H2C) && hi.h2c)
					to_h2 = true;
				else
					tunnel = true;
			} else if ((rq & 3) == RQ_CONNECT && hi.status < 300) {
				/* RFC 9110 §9.3.6: no framing; a response with a body is not this. */
				if (hi.has_cl || hi.has_te)
					return refuse(d, MM_REASON_BAD_HTTP, 0, NULL);
				tunnel = true;
			} else if ((rq & 3) == RQ_HEAD || hi.status == 204 || hi.status == 304)
				framing = B_NONE;
			else if (hi.has_te)
				framing = B_CHUNKED;
			else if (hi.has_cl)
				framing = hi.cl ? B_CL : B_NONE;
			else
				framing = B_CLOSE;
		}
	}

	bool cov = covered(d);
	d->bm = !cov ? BM_RAW : d->pol->mode == POLICY_MODE_OBSERVE ? BM_OBSERVE : BM_MASK;
	d->body = cov && framing != B_NONE;
	d->had_cl = framing == B_CL;
	d->in_cl = hi.cl;
	d->remaining = hi.cl;

	if (d->body) {
		char ct[256], ce[64];
		struct mask_opts o = {.policy = d->pol, .direction = d->dir};
		if (hi.ct.base) {
			size_t n = hi.ct.len < sizeof(ct) - 1 ? hi.ct.len : sizeof(ct) - 1;
			memcpy(ct, hi.ct.base, n);
			ct[n] = 0;
			o.content_type = ct;
		}
		if (hi.ce.base) {
			size_t n = hi.ce.len < sizeof(ce) - 1 ? hi.ce.len : sizeof(ce) - 1;
			memcpy(ce, hi.ce.base, n);
			ce[n] = 0;
			o.content_encoding = ce;
			d->encoded = codec_kind_for(ce) != CODEC_NONE;
		}
		d->ms = stream_for(d, &o);
		if (!d->ms)
			return fail(d, MM_REASON_INTERNAL, errno ? -errno : -ENOMEM);
	}

	/* The head. */
	bool changed = false;
	if (!strip &&
	    (d->bm == BM_RAW || (d->pol && !hdr_rules_any(d->pol) && d->bm == BM_OBSERVE))) {
		r = 0;
	} else {
		r = build_head(d, h, hlen, first, d->bm == BM_MASK, d->bm == BM_MASK && d->body,
			       strip, &changed);
		if (r)
			return fail(d, MM_REASON_INTERNAL, r);
	}
	if (d->bm == BM_MASK && d->body) {
		/*
		 * The head goes out with the body's final framing, except when the client waits
		 * for 100 Continue before sending the body: then the body streams chunked.
		 */
		d->of = OF_HELD;
		if (hi.expect_continue && !d->peer10)
			r = start_stream(d);
	} else if (changed) {
		r = emit(d, d->ohead.data, d->ohead.len);
		if (!r)
			r = emit(d, "\r\n", 2);
		d->head_sent = true;
		d->ohead.len = 0;
	} else {
		r = in_place ? fwd(d, h, hlen) : emit(d, h, hlen);
		d->head_sent = true;
	}
	if (r)
		return fail(d, MM_REASON_NONE, r);
	d->head.len = 0;

	if (to_h2) {
		/* HTTP/2 from the next byte on: h2.c takes the connection over (proxy.c). */
		msg_end(d);
		s->h2c = true;
		d->st = HS_H2C;
		return 0;
	}
	if (tunnel) {
		/* From here on nothing is masked: an explicit pass (tunnels: pass), counted. */
		d->tunnel = HTTP_TUNNEL_OPENED;
		d->tunnel_upgrade = hi.status == 101;
		report_policy(d);
		if (d->pol) {
			d->has_outcome_override = true;
			d->outcome_override = MASK_OUTCOME_PASSED;
			d->reason = MM_REASON_TUNNEL;
		}
		msg_end(d);
		set_tunnel(s);
		d->st = HS_TUNNEL;
		return 0;
	}
	switch (framing) {
	case B_NONE:
		return body_end(d);
	case B_CL:
		d->st = HS_BODY_CL;
		break;
	case B_CHUNKED:
		d->st = HS_CHUNK_SIZE;
		d->remaining = 0;
		d->line_len = 0;
		d->seen_digit = false;
		break;
	case B_CLOSE:
		d->st = HS_BODY_CLOSE;
		break;
	}
	return 0;
}

/* ---- not HTTP ---- */

/* Whether what a client sent starts like an HTTP/1.x request (a method, then a blank). */
static bool looks_http1(const struct hdir *d, const char *p, size_t n)
{
	char b[16];
	size_t k = d->head.len < sizeof(b) ? d->head.len : sizeof(b);
	if (k)
		memcpy(b, d->head.data, k);
	size_t m = n < sizeof(b) - k ? n : sizeof(b) - k;
	if (m)
		memcpy(b + k, p, m);
	k += m;
	if (k >= 6 && !memcmp(b, "PRI * ", 6))
		return false; /* the HTTP/2 preface */
	size_t i = 0;
	while (i < k && b[i] >= 'A' && b[i] <= 'Z')
		i++;
	return i && i < k && (b[i] == ' ' || b[i] == '\t');
}

/* Whether a client's first bytes are a TLS handshake record (content type 22, version 3.x). */
static bool looks_tls(const struct hdir *d, const char *p, size_t n)
{
	unsigned char b[2];
	size_t k = 0;
	for (size_t i = 0; i < d->head.len && k < 2; i++)
		b[k++] = (unsigned char)d->head.data[i];
	for (size_t i = 0; i < n && k < 2; i++)
		b[k++] = (unsigned char)p[i];
	return k == 2 && b[0] == 0x16 && b[1] == 0x03;
}

/* From here on this direction forwards its bytes unparsed (and only this direction). */
static int go_opaque(struct hdir *d, const char *p, size_t n)
{
	if (d->dir == POLICY_DIR_REQUEST)
		d->s->req_opaque = true;
	d->st = HS_TUNNEL;
	int r = emit(d, d->head.data, d->head.len);
	d->head.len = 0;
	return r ? r : fwd(d, p, n);
}

/*
 * The bytes at the start of a message are not HTTP/1.x: d->head holds what came before,
 * p[0, n) the rest of this input. `first` tells not_http (start of the connection) from
 * bad_http (mid-stream). Each direction goes by the connection's policy (see http.h): an
 * unparseable request never switches off response masking.
 */
static int garbage(struct hdir *d, const char *p, size_t n)
{
	struct http_session *s = d->s;
	bool first = !d->started, req = d->dir == POLICY_DIR_REQUEST;
	int r;

	/* What may be a TLS record: wait for its second byte before deciding. */
	if (req && first && n && d->head.len + n < 2 &&
	    (d->head.len ? d->head.data[0] : *p) == 0x16)
		return mm_buf_append(&d->head, p, n);
	report_policy(d);
	struct policy *pol = d->pol;
	d->reason = first ? MM_REASON_NOT_HTTP : MM_REASON_BAD_HTTP;
	d->started = true;
	if (!pol) {
		/* No policy covers the connection (any more): nothing to mask, as before. */
		if (!first)
			return refuse(d, d->reason, 0, NULL);
		msg_end(d);
		set_tunnel(s);
		return go_opaque(d, p, n);
	}
	if (!req && !(pol->directions & POLICY_DIR_RESPONSE)) {
		/* Responses are not masked under this policy: what they are does not matter. */
		msg_reset(d);
		return go_opaque(d, p, n);
	}
	if (req && first && pol->tls_enforce != POLICY_TLS_OFF && looks_tls(d, p, n)) {
		/*
		 * TLS under a policy that masks TLS plaintext inside the process (spec.tls): the
		 * agent relays the ciphertext; the OpenSSL probes mask what the caller reads.
		 */
		msg_reset(d);
		set_tunnel(s);
		return go_opaque(d, p, n);
	}
	enum policy_on_error oe = pol->on_error;
	bool observe = pol->mode == POLICY_MODE_OBSERVE;
	/*
	 * fallback scans a response stream from its start; a request stream the agent cannot
	 * frame is refused, since the responses to it could not be paired with anything.
	 */
	if (oe == POLICY_ONERR_FALLBACK && (req || !first))
		oe = POLICY_ONERR_BLOCK;
	if (observe && oe == POLICY_ONERR_BLOCK)
		oe = POLICY_ONERR_PASS; /* observe changes nothing, so it refuses nothing */
	if (oe == POLICY_ONERR_PASS) {
		d->has_outcome_override = true;
		d->outcome_override = MASK_OUTCOME_PASSED;
		msg_end(d);
		return go_opaque(d, p, n);
	}
	if (oe == POLICY_ONERR_BLOCK) {
		int status = req && !first ? 400 : req ? (looks_http1(d, p, n) ? 400 : -1) : 502;
		if (status < 0) {
			/* Not HTTP at all: no answer it could read; the stream is cut. */
			d->has_outcome_override = true;
			d->outcome_override = MASK_OUTCOME_BLOCKED;
			return fail(d, d->reason, -EPROTO);
		}
		return refuse(d, d->reason, status, NULL);
	}
	/* fallback: an entity scan of everything from here on */
	struct mask_opts o = {.policy = pol, .direction = d->dir, .format = MASK_FMT_TEXT};
	d->ms = stream_for(d, &o);
	if (!d->ms)
		return fail(d, MM_REASON_INTERNAL, errno ? -errno : -ENOMEM);
	d->has_outcome_override = true;
	d->outcome_override = MASK_OUTCOME_FALLBACK;
	d->bm = observe ? BM_OBSERVE : BM_MASK;
	d->of = OF_CLOSE;
	d->st = HS_RAWSCAN;
	if (d->bm == BM_OBSERVE) {
		r = emit(d, d->head.data, d->head.len);
		if (!r && mask_stream_write(d->ms, d->head.data, d->head.len, discard_sink, NULL))
			d->ms_dead = true;
	} else {
		r = mask_stream_write(d->ms, d->head.data, d->head.len, body_out, d);
		if (r)
			return engine_err(d, r);
	}
	d->head.len = 0;
	if (r)
		return fail(d, MM_REASON_NONE, r);
	return body_bytes(d, p, n);
}

/* ---- the per-state input loop ---- */

/* The first line of the head at p[0, n) reads as HTTP/1.x: a request or a status line. */
static bool first_line_http(const struct hdir *d, const char *p, size_t n)
{
	const char *eol = memchr(p, '\n', n);
	if (!eol)
		return false;
	size_t l = (size_t)(eol - p);
	if (l && p[l - 1] == '\r')
		l--;
	if (d->dir == POLICY_DIR_RESPONSE)
		return l >= 12 && !memcmp(p, "HTTP/1.", 7);
	return l >= 14 && !memcmp(p + l - 8, "HTTP/1.", 7) && memchr(p, ' ', l - 9);
}

/*
 * A head past max_head bytes (p[0, n) what is buffered of it). It is over the limit when its
 * first line reads as HTTP; else it may well not be HTTP at all (counted as such).
 */
static int head_too_large(struct hdir *d, const char *p, size_t n)
{
	bool req = d->dir == POLICY_DIR_REQUEST;
	enum mm_reason why = MM_REASON_LIMIT;
	if (!first_line_http(d, p, n))
		why = d->started ? MM_REASON_BAD_HTTP : MM_REASON_NOT_HTTP;
	return refuse(d, why, req ? 431 : 502,
		      req ? "the request head is over the agent's limit"
			  : "the upstream response head is over the agent's limit");
}

static int do_head(struct hdir *d, const char **pp, const char *end)
{
	const char *p = *pp;
	size_t max = d->s->lim.max_head;
	int r;

	/* Empty lines between messages are tolerated (RFC 9112 §2.2) and forwarded. */
	if (!d->head.len && d->fl_n == 0 && (d->fl == FL_METHOD || d->fl == FL_VERSION) &&
	    d->started) {
		const char *q = p;
		while (q < end && (*q == '\r' || *q == '\n'))
			q++;
		if (q != p) {
			r = fwd(d, p, (size_t)(q - p));
			*pp = q;
			return r;
		}
	}

	/* Recognise a first line that cannot be HTTP/1.x as early as possible. */
	if (d->fl != FL_DONE) {
		for (const char *q = p; q < end; q++) {
			int k = fl_step(d, (unsigned char)*q);
			if (k < 0) {
				*pp = end;
				return garbage(d, p, (size_t)(end - p));
			}
			if (k > 0)
				break;
		}
	}

	if (!d->head.len) {
		/* Common case: the whole head is in this input; parse it in place. */
		size_t n = (size_t)(end - p);
		const char *e = memmem(p, n < max ? n : max, "\r\n\r\n", 4);
		if (e) {
			size_t hlen = (size_t)(e - p) + 4;
			if (hlen > max)
				return head_too_large(d, p, n);
			*pp = p + hlen;
			return head_done(d, p, hlen, true);
		}
	}
	size_t old = d->head.len;
	size_t room = max - old;
	size_t n = (size_t)(end - p);
	if (n > room)
		n = room;
	r = mm_buf_append(&d->head, p, n);
	if (r)
		return fail(d, MM_REASON_INTERNAL, r);
	size_t from = d->head_scan;
	const char *e = memmem(d->head.data + from, d->head.len - from, "\r\n\r\n", 4);
	if (!e) {
		if (d->head.len >= max)
			return head_too_large(d, d->head.data, d->head.len);
		d->head_scan = d->head.len > 3 ? d->head.len - 3 : 0;
		*pp = p + n;
		return 0;
	}
	size_t hlen = (size_t)(e - d->head.data) + 4;
	*pp = p + (hlen - old);
	d->head.len = hlen;
	return head_done(d, d->head.data, hlen, false);
}

/*
 * chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ( token / quoted-string ) ] ), RFC 9112
 * §7.1.1, one byte at a time: anything else is refused, so that the agent and the server
 * cannot read a chunk line two ways.
 */
enum ext_state {
	EXT_BWS_SEMI, /* after the size or a value: BWS, then ";" or CR */
	EXT_NAME_START, /* after ";": BWS, then a tchar */
	EXT_NAME, /* in the name */
	EXT_AFTER_NAME, /* BWS, then "=", ";" or CR */
	EXT_VAL_START, /* after "=": BWS, then a tchar or DQUOTE */
	EXT_TOKEN, /* in a token value */
	EXT_QUOTED, /* in a quoted-string */
	EXT_QPAIR, /* after a backslash in a quoted-string */
};

/* One byte of a chunk extension: 1 at the CR that ends the line, 0 to go on, -1 if invalid. */
static int ext_step(struct hdir *d, unsigned char c)
{
	bool ws = c == ' ' || c == '\t';
	switch (d->ext) {
	case EXT_BWS_SEMI:
	case EXT_AFTER_NAME:
		if (ws)
			return 0;
		if (c == '=' && d->ext == EXT_AFTER_NAME) {
			d->ext = EXT_VAL_START;
			return 0;
		}
		break;
	case EXT_NAME_START:
		if (ws)
			return 0;
		if (!is_tchar(c))
			return -1;
		d->ext = EXT_NAME;
		return 0;
	case EXT_NAME:
		if (is_tchar(c))
			return 0;
		if (ws || c == '=') {
			d->ext = c == '=' ? EXT_VAL_START : EXT_AFTER_NAME;
			return 0;
		}
		break;
	case EXT_VAL_START:
		if (ws)
			return 0;
		if (c == '"')
			d->ext = EXT_QUOTED;
		else if (is_tchar(c))
			d->ext = EXT_TOKEN;
		else
			return -1;
		return 0;
	case EXT_TOKEN:
		if (is_tchar(c))
			return 0;
		if (ws) {
			d->ext = EXT_BWS_SEMI;
			return 0;
		}
		break;
	case EXT_QUOTED:
		if (c == '"')
			d->ext = EXT_BWS_SEMI;
		else if (c == '\\')
			d->ext = EXT_QPAIR;
		else if (c != '\t' && (c < 0x20 || c == 0x7f))
			return -1;
		return 0;
	case EXT_QPAIR:
		if (c != '\t' && (c < 0x20 || c == 0x7f))
			return -1;
		d->ext = EXT_QUOTED;
		return 0;
	}
	/* EXT_BWS_SEMI, EXT_AFTER_NAME, EXT_NAME, EXT_TOKEN: a ";" or the line's end */
	if (c == ';') {
		d->ext = EXT_NAME_START;
		return 0;
	}
	return c == '\r' ? 1 : -1;
}

static int do_chunk_line(struct hdir *d, const char **pp, const char *end)
{
	const char *p = *pp, *q = p;
	int r = 0;
	for (; q < end && !r; q++) {
		unsigned char c = (unsigned char)*q;
		if (++d->line_len > HTTP_CHUNK_LINE_MAX)
			return refuse(d, MM_REASON_BAD_HTTP, 0, NULL);
		if (d->st == HS_CHUNK_SIZE) {
			int v = c >= '0' && c <= '9'   ? c - '0'
				: c >= 'a' && c <= 'f' ? c - 'a' + 10
				: c >= 'A' && c <= 'F' ? c - 'A' + 10
						       : -1;
			if (v >= 0) {
				if (d->remaining > HTTP_MAX_SIZE >> 4)
					return refuse(d, MM_REASON_BAD_HTTP, 0, NULL);
				d->remaining = d->remaining * 16 + (uint64_t)v;
				d->seen_digit = true;
				continue;
			}
			if (!d->seen_digit)
				return refuse(d, MM_REASON_BAD_HTTP, 0, NULL);
			if (c == '\r') {
				d->st = HS_CHUNK_LF;
				continue;
			}
			d->st = HS_CHUNK_EXT;
			d->ext = EXT_BWS_SEMI;
			if (ext_step(d, c) < 0)
				return refuse(d, MM_REASON_BAD_HTTP, 0, NULL);
		} else if (d->st == HS_CHUNK_EXT) {
			int e = ext_step(d, c);
			if (e < 0)
				return refuse(d, MM_REASON_BAD_HTTP, 0, NULL);
			if (e > 0)
				d->st = HS_CHUNK_LF;
		} else {
			if (c != '\n')
				return refuse(d, MM_REASON_BAD_HTTP, 0, NULL);
			d->line_len = 0;
			d->cr = false;
			d->st = d->remaining ? HS_CHUNK_DATA : HS_TRAILER;
			q++;
			break;
		}
	}
	r = framing_bytes(d, p, (size_t)(q - p), false);
	*pp = q;
	return r;
}

/*
 * The trailer section (its field lines and the final CRLF) reads as a header section does,
 * within max_headers, and carries no field that frames, routes or authenticates a message,
 * which a recipient must not take from trailers (RFC 9110 §6.5.1).
 */
static bool trailers_ok(const struct hdir *d)
{
	static const char *const banned[] = {"host", "authorization", "content-type",
					     "content-encoding", "content-range", "cookie",
					     "set-cookie"};
	size_t pos = 0, n = 0;
	struct hline l;
	int r;
	while ((r = next_header(d->trail.data, d->trail.len, &pos, &l)) > 0) {
		if (++n > d->s->lim.max_headers || framing_header(l.name, l.name_len))
			return false;
		for (size_t i = 0; i < sizeof(banned) / sizeof(banned[0]); i++)
			if (span_ieq(l.name, l.name_len, banned[i]))
				return false;
	}
	return r == 0 && pos == d->trail.len;
}

static int do_trailer(struct hdir *d, const char **pp, const char *end)
{
	const char *p = *pp, *q = p;
	bool done = false;
	for (; q < end; q++) {
		unsigned char c = (unsigned char)*q;
		if (d->cr) {
			if (c != '\n')
				return refuse(d, MM_REASON_BAD_HTTP, 0, NULL);
			d->cr = false;
			if (!d->line_len) {
				done = true;
				q++;
				break;
			}
			d->line_len = 0;
		} else if (c == '\r') {
			d->cr = true;
		} else if ((c < 0x20 && c != '\t') || c == 0x7f) {
			return refuse(d, MM_REASON_BAD_HTTP, 0, NULL);
		} else {
			d->line_len++;
		}
	}
	int r = framing_bytes(d, p, (size_t)(q - p), true);
	*pp = q;
	if (r || !done)
		return r;
	if (!trailers_ok(d))
		return refuse(d, MM_REASON_BAD_HTTP, 0, "a trailer field is not allowed or not valid");
	if (d->bm != BM_MASK) { /* forwarded once checked; a re-framed body sends it itself */
		r = emit(d, d->trail.data, d->trail.len);
		d->trail.len = 0;
		if (r)
			return r;
	}
	return body_end(d);
}

static int step(struct hdir *d, const char **pp, const char *end)
{
	const char *p = *pp;
	size_t n = (size_t)(end - p), k;
	int r;
	switch (d->st) {
	case HS_HEAD:
		return do_head(d, pp, end);
	case HS_BODY_CL:
	case HS_CHUNK_DATA:
		k = n < d->remaining ? n : (size_t)d->remaining;
		r = body_bytes(d, p, k);
		*pp = p + k;
		d->remaining -= k;
		if (r || d->remaining)
			return r;
		if (d->st == HS_BODY_CL)
			return body_end(d);
		d->st = HS_CHUNK_DATA_CR;
		return 0;
	case HS_CHUNK_DATA_CR:
	case HS_CHUNK_DATA_LF:
		if (*p != (d->st == HS_CHUNK_DATA_CR ? '\r' : '\n'))
			return refuse(d, MM_REASON_BAD_HTTP, 0, NULL);
		r = framing_bytes(d, p, 1, false);
		*pp = p + 1;
		if (d->st == HS_CHUNK_DATA_LF) {
			d->st = HS_CHUNK_SIZE;
			d->remaining = 0;
			d->line_len = 0;
			d->seen_digit = false;
		} else {
			d->st = HS_CHUNK_DATA_LF;
		}
		return r;
	case HS_CHUNK_SIZE:
	case HS_CHUNK_EXT:
	case HS_CHUNK_LF:
		return do_chunk_line(d, pp, end);
	case HS_TRAILER:
		return do_trailer(d, pp, end);
	case HS_BODY_CLOSE:
	case HS_RAWSCAN:
		*pp = end;
		return body_bytes(d, p, n);
	case HS_TUNNEL:
		/* a partial head left when the other side switched the session to a tunnel */
		r = emit(d, d->head.data, d->head.len);
		d->head.len = 0;
		*pp = end;
		return r ? r : fwd(d, p, n);
	case HS_CLOSED:
		*pp = end;
		return 0;
	case HS_H2C:
		*pp = end;
		return mm_buf_append(&d->s->h2c_rest, p, n);
	case HS_DEAD:
		return -EPROTO;
	}
	return -EINVAL;
}

/* ---- API ---- */

struct http_session *http_session_new(const struct http_hooks *hooks, const struct http_limits *lim)
{
	struct http_session *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	if (hooks)
		s->hooks = *hooks;
	s->lim.max_head = lim && lim->max_head ? lim->max_head : HTTP_DEF_MAX_HEAD;
	s->lim.max_headers = lim && lim->max_headers ? lim->max_headers : HTTP_DEF_MAX_HEADERS;
	s->lim.hold_body = lim && lim->hold_body ? lim->hold_body : HTTP_DEF_HOLD_BODY;
	s->lim.hold_body10 = lim && lim->hold_body10 ? lim->hold_body10 : HTTP_DEF_HOLD_BODY10;
	if (s->lim.hold_body10 < s->lim.hold_body)
		s->lim.hold_body10 = s->lim.hold_body;
	s->lim.budget = lim ? lim->budget : NULL;
	for (int i = 0; i < 2; i++) {
		s->d[i].s = s;
		s->d[i].dir = i ? POLICY_DIR_RESPONSE : POLICY_DIR_REQUEST;
		enter_head(&s->d[i]);
	}
	return s;
}

static int feed_begin(struct hdir *d, mask_sink_fn sink, void *sink_ctx)
{
	d->sink = sink;
	d->sink_ctx = sink_ctx;
	d->raw_len = 0;
	d->stage.len = 0;
	return 0;
}

static int feed_end(struct hdir *d, int r)
{
	if (!r && d->bm == BM_MASK)
		r = flush_chunk(d); /* what this input produced goes out now, not later */
	if (!r)
		r = flush_all(d);
	else
		d->raw_len = d->stage.len = 0;
	if (r && d->st != HS_DEAD)
		fail(d, MM_REASON_NONE, r);
	if (d->stage.cap > HTTP_STAGE_MAX * 2)
		mm_buf_free(&d->stage);
	return r;
}

int http_session_feed(struct http_session *s, uint32_t direction, const void *data, size_t len,
		      mask_sink_fn sink, void *sink_ctx)
{
	struct hdir *d = s ? dir_of(s, direction) : NULL;
	if (!d || (len && !data) || !sink)
		return -EINVAL;
	if (d->st == HS_DEAD || s->replied)
		return -EPROTO;
	feed_begin(d, sink, sink_ctx);
	const char *p = data, *end = p + len;
	int r = 0;
	while (!r && p < end)
		r = step(d, &p, end);
	return feed_end(d, r);
}

int http_session_eof(struct http_session *s, uint32_t direction, mask_sink_fn sink, void *sink_ctx)
{
	struct hdir *d = s ? dir_of(s, direction) : NULL;
	int r = 0;
	if (!d || !sink)
		return -EINVAL;
	if (s->replied)
		return -EPROTO;
	if (d->eof)
		return d->st == HS_DEAD ? -EPROTO : 0;
	feed_begin(d, sink, sink_ctx);
	switch (d->st) {
	case HS_HEAD:
		if (d->head.len) {
			if (!d->started && d->fl != FL_DONE)
				r = garbage(d, NULL, 0); /* a short non-HTTP stream */
			else
				r = refuse(d, MM_REASON_BAD_HTTP, 0, NULL);
			if (!r && d->st == HS_RAWSCAN) {
				r = mask_stream_finish(
					d->ms, d->bm == BM_MASK ? body_out : discard_sink, d);
				if (r && d->bm == BM_MASK) {
					r = engine_err(d, r);
					break;
				}
				r = 0;
				msg_end(d);
			}
		}
		break;
	case HS_BODY_CLOSE:
		r = body_end(d);
		break;
	case HS_RAWSCAN:
		if (d->bm == BM_MASK) {
			r = mask_stream_finish(d->ms, body_out, d);
			if (r) {
				r = engine_err(d, r);
				break;
			}
		} else if (!d->ms_dead) {
			mask_stream_finish(d->ms, discard_sink, NULL);
		}
		msg_end(d);
		break;
	case HS_TUNNEL:
		r = emit(d, d->head.data, d->head.len);
		d->head.len = 0;
		break;
	case HS_CLOSED:
	case HS_H2C:
		break;
	case HS_DEAD:
		return -EPROTO;
	default:
		r = refuse(d, MM_REASON_BAD_HTTP, 0, NULL); /* cut short inside a body */
		break;
	}
	r = feed_end(d, r);
	d->eof = true;
	if (!r && d->st != HS_TUNNEL)
		d->st = HS_CLOSED;
	return r;
}

uint64_t http_session_passthrough(const struct http_session *s, uint32_t direction)
{
	const struct hdir *d = s ? dir_of((struct http_session *)s, direction) : NULL;
	if (!d)
		return 0;
	switch (d->st) {
	case HS_BODY_CL:
	case HS_CHUNK_DATA:
		return d->bm == BM_RAW ? d->remaining : 0;
	case HS_BODY_CLOSE:
		return d->bm == BM_RAW ? UINT64_MAX : 0;
	case HS_TUNNEL:
		return d->head.len ? 0 : UINT64_MAX;
	default:
		return 0;
	}
}

int http_session_skip(struct http_session *s, uint32_t direction, uint64_t n, mask_sink_fn sink,
		      void *sink_ctx)
{
	struct hdir *d = s ? dir_of(s, direction) : NULL;
	if (!d || !sink || n > http_session_passthrough(s, direction))
		return -EINVAL;
	if (s->replied)
		return -EPROTO;
	if (!n || d->st == HS_TUNNEL || d->st == HS_BODY_CLOSE)
		return 0;
	/* As step() does for body bytes it forwards. */
	feed_begin(d, sink, sink_ctx);
	int r = 0;
	d->remaining -= n;
	if (!d->remaining) {
		if (d->st == HS_BODY_CL)
			r = body_end(d);
		else
			d->st = HS_CHUNK_DATA_CR;
	}
	return feed_end(d, r);
}

size_t http_session_spares(void)
{
	return atomic_load(&spares_kept);
}

void http_session_trim(struct http_session *s)
{
	if (s)
		for (int i = 0; i < 2; i++)
			spare_free(&s->d[i]);
}

void http_message_values(const struct http_message_info *info, http_message_value_fn fn,
			 void *ctx)
{
	const struct policy *p = info->policy;
	const struct mask_stats *st = info->stats;
	if (!p)
		return;
	for (size_t i = 0; st && st->rules && i < st->n_rules && i < p->n_rules; i++) {
		const struct mask_rule_stats *rs = &st->rules[i];
		uint64_t by_entity = 0;
		for (int e = 0; e < MM_ENT__COUNT; e++) {
			if (rs->by_entity[e])
				fn(ctx, &p->rules[i], mm_entity_name(e), rs->by_entity[e]);
			by_entity += rs->by_entity[e];
		}
		if (rs->values > by_entity)
			fn(ctx, &p->rules[i], NULL, rs->values - by_entity);
	}
	for (size_t i = 0; info->header_rule_values && i < p->n_rules; i++)
		if (info->header_rule_values[i])
			fn(ctx, &p->rules[i], NULL, info->header_rule_values[i]);
}

const char *http_tunnel_name(enum http_tunnel t)
{
	switch (t) {
	case HTTP_TUNNEL_STRIPPED:
		return "stripped";
	case HTTP_TUNNEL_REFUSED:
		return "refused";
	case HTTP_TUNNEL_OPENED:
		return "opened";
	default:
		return "none";
	}
}

bool http_session_h2c(struct http_session *s, const uint8_t **settings, size_t *len, bool *head,
		      struct mm_buf *rest)
{
	if (!s || !s->h2c)
		return false;
	*settings = s->h2c_settings;
	*len = s->h2c_settings_len;
	*head = s->h2c_head;
	*rest = s->h2c_rest;
	s->h2c_rest = (struct mm_buf){0};
	return true;
}

size_t http_session_read_hint(const struct http_session *s, uint32_t direction, size_t max)
{
	const struct hdir *d = direction == POLICY_DIR_REQUEST ? &s->d[0] : &s->d[1];
	/*
	 * A compressed body the engine scans decodes up to CODEC_MAX_RATIO times its size: read
	 * what decodes to about HTTP_DECODED_PER_WAKE bytes at the body's expansion so far. So is
	 * the start of a body read with its head: while a head is awaited, it cannot be known
	 * whether the bytes after it are compressed (a 64 KiB read of a gzip bomb's head and
	 * first bytes took 60 ms of its worker).
	 */
	if (d->st == HS_HEAD)
		return max < HTTP_ENCODED_READ ? max : HTTP_ENCODED_READ;
	if (!d->encoded || !d->ms)
		return max;
	const struct mask_stats *st = mask_stream_stats(d->ms);
	size_t want = HTTP_ENCODED_READ;
	if (st->bytes_in >= HTTP_ENCODED_READ_MIN && st->bytes_scanned > st->bytes_in) {
		uint64_t per = HTTP_DECODED_PER_WAKE / (st->bytes_scanned / st->bytes_in);
		want = per < HTTP_ENCODED_READ_MIN   ? HTTP_ENCODED_READ_MIN
		       : per > HTTP_ENCODED_READ_MAX ? HTTP_ENCODED_READ_MAX
						     : (size_t)per;
	}
	return want < max ? want : max;
}

bool http_session_in_head(const struct http_session *s)
{
	const struct hdir *d = &s->d[0];
	return d->st == HS_HEAD && (!d->started || d->head.len || d->fl_n);
}

int http_session_head_timeout(struct http_session *s)
{
	struct hdir *d = &s->d[0];
	if (d->st != HS_HEAD)
		return -EAGAIN;
	refuse(d, MM_REASON_TIMEOUT, 408, "the request head did not arrive within the head timeout");
	return s->replied ? 0 : -EAGAIN;
}

int http_session_upstream_failed(struct http_session *s, mask_sink_fn sink, void *sink_ctx)
{
	struct hdir *d = &s->d[1];
	if (d->st == HS_DEAD)
		return -EAGAIN;
	if (!d->sink) {
		d->sink = sink;
		d->sink_ctx = sink_ctx;
	}
	refuse(d, MM_REASON_UPSTREAM_ERROR, 502, "the upstream server could not be reached");
	return s->replied ? 0 : -EAGAIN;
}

bool http_session_replied(const struct http_session *s)
{
	return s && s->replied;
}

bool http_session_is_tunnel(const struct http_session *s)
{
	return s && s->tunnel;
}

size_t http_session_buffered(const struct http_session *s, uint32_t direction)
{
	if (!s)
		return 0;
	const struct hdir *d = dir_of((struct http_session *)s, direction);
	if (!d)
		return 0;
	return d->head.len + d->held.len + d->trail.len + d->ohead.len + d->stage.len;
}

bool http_session_must_close(const struct http_session *s, uint32_t direction)
{
	if (!s)
		return false;
	const struct hdir *d = dir_of((struct http_session *)s, direction);
	return d && d->st == HS_CLOSED && !d->eof;
}

void http_session_free(struct http_session *s)
{
	if (!s)
		return;
	for (int i = 0; i < 2; i++) {
		struct hdir *d = &s->d[i];
		mask_stream_free(d->ms);
		spare_free(d);
		budget_release(d);
		if (d->pol)
			policy_unref(d->pol);
		mm_buf_free(&d->head);
		mm_buf_free(&d->ohead);
		mm_buf_free(&d->conn);
		mm_buf_free(&d->held);
		mm_buf_free(&d->trail);
		mm_buf_free(&d->stage);
		free(d->rule_values);
	}
	free(s->fifo);
	mm_buf_free(&s->h2c_rest);
	free(s);
}
