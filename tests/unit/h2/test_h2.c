// SPDX-License-Identifier: Apache-2.0
/*
 * The HTTP/2 framer between two in-memory nghttp2 peers: a client standing for the app and a
 * server standing for the upstream, bytes carried by the test (whole, or one byte at a time).
 * A JSON response is masked and its content-length dropped; a gRPC message with no descriptor
 * under onError: block becomes a gRPC error status; a reset from the upstream reaches the app;
 * a reader that takes nothing holds the upstream back (the agent's memory stays bounded).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "tap.h"
#include "buf.h"
#include "h2.h"
#include "policy.h"

/* ---- the upstream: answers every request with the scenario's response ---- */

struct scenario {
	const char *ctype;
	const char *body;
	size_t body_len; /* repeated `repeat` times */
	size_t repeat;
	bool reset; /* RST_STREAM after the headers instead of a body */
	size_t sent;
};

struct peer {
	nghttp2_session *s;
	struct mm_buf in; /* bytes for this peer, not yet delivered */
	struct scenario *sc;
	/* the app side: what it received */
	struct mm_buf body;
	char status[8], ctype[64], grpc_status[8], reason[24];
	bool has_length, reset, closed;
	bool goaway; /* the upstream side: a GOAWAY arrived */
};

static ssize_t up_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
		       nghttp2_data_source *src, void *ud)
{
	struct peer *p = ud;
	struct scenario *sc = p->sc;
	size_t total = sc->body_len * sc->repeat, n = total - sc->sent;
	if (n > len)
		n = len;
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)sc->body[(sc->sent + i) % sc->body_len];
	sc->sent += n;
	if (sc->sent == total)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static int up_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct peer *p = ud;
	if (f->hd.type == NGHTTP2_GOAWAY)
		p->goaway = true;
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST ||
	    !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	nghttp2_nv nv[] = {
		{(uint8_t *)":status", (uint8_t *)"200", 7, 3, 0},
		{(uint8_t *)"content-type", (uint8_t *)p->sc->ctype, 12, strlen(p->sc->ctype), 0},
		{(uint8_t *)"content-length", (uint8_t *)"999", 14, 3, 0},
	};
	nghttp2_data_provider prd = {.read_callback = up_read};
	if (p->sc->reset) {
		nghttp2_submit_headers(s, 0, f->hd.stream_id, NULL, nv, 2, NULL);
		nghttp2_submit_rst_stream(s, 0, f->hd.stream_id, NGHTTP2_INTERNAL_ERROR);
		return 0;
	}
	char cl[24];
	snprintf(cl, sizeof(cl), "%zu", p->sc->body_len * p->sc->repeat);
	nv[2].value = (uint8_t *)cl;
	nv[2].valuelen = strlen(cl);
	return nghttp2_submit_response(s, f->hd.stream_id, nv, 3, &prd);
}

/* ---- the app: one request, what comes back recorded ---- */

static int app_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
		      const uint8_t *value, size_t vlen, uint8_t flags, void *ud)
{
	struct peer *p = ud;
	char *dst = NULL;
	if (nlen == 7 && !memcmp(name, ":status", 7))
		dst = p->status;
	else if (nlen == 12 && !memcmp(name, "content-type", 12))
		dst = p->ctype;
	else if (nlen == 11 && !memcmp(name, "grpc-status", 11))
		dst = p->grpc_status;
	else if (nlen == 17 && !memcmp(name, "x-meshmask-reason", 17)) {
		snprintf(p->reason, sizeof(p->reason), "%.*s", (int)vlen, value);
		return 0;
	} else if (nlen == 14 && !memcmp(name, "content-length", 14))
		p->has_length = true;
	if (dst)
		snprintf(dst, 8, "%.*s", (int)(vlen < 7 ? vlen : 7), value);
	return 0;
}

static int app_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *d, size_t n,
		    void *ud)
{
	struct peer *p = ud;
	return mm_buf_append(&p->body, d, n);
}

static int app_close(nghttp2_session *s, int32_t id, uint32_t err, void *ud)
{
	struct peer *p = ud;
	p->closed = true;
	p->reset = err != 0;
	return 0;
}

static int to_buf(void *ctx, const char *p, size_t n)
{
	return mm_buf_append(ctx, p, n);
}

/* ---- the agent's hooks ---- */

static struct policy *pol;
static int messages;

static struct policy *policy_for(void *ctx, uint32_t dir)
{
	if (dir != ~0u && !(pol->directions & dir))
		return NULL;
	return policy_ref(pol);
}

static void message_done(void *ctx, const struct http_message_info *info)
{
	messages++;
}

static struct policy *mkpol(const char *extra)
{
	char doc[1024];
	snprintf(
		doc, sizeof(doc),
		"{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","
		"\"metadata\":{\"name\":\"t\"},\"spec\":{%s\"rules\":[{\"name\":\"ssn\","
		"\"fields\":[\"$..ssn\"],\"action\":{\"type\":\"replace\",\"value\":\"<ssn>\"}}]}}",
		extra);
	struct policy_errors e = {0};
	struct policy *p = policy_parse(doc, strlen(doc), "t", &e);
	policy_errors_free(&e);
	return p;
}

struct world {
	struct peer app, up;
	struct h2_conn *c;
	struct mm_buf to_app, to_up; /* the agent's output */
	bool app_stalled;
};

/* Carry bytes until nothing moves; bytewise: into the agent one byte at a time. */
static int settle(struct world *w, bool bytewise)
{
	for (int round = 0; round < 100000; round++) {
		bool moved = false;
		const uint8_t *d;
		ssize_t n;
		while ((n = nghttp2_session_mem_send(w->app.s, &d)) > 0) {
			for (ssize_t i = 0; i < n; i += bytewise ? 1 : n)
				if (h2_conn_feed(w->c, POLICY_DIR_REQUEST, d + i,
						 bytewise ? 1 : (size_t)n))
					return -1;
			moved = true;
		}
		while ((n = nghttp2_session_mem_send(w->up.s, &d)) > 0) {
			for (ssize_t i = 0; i < n; i += bytewise ? 1 : n)
				if (h2_conn_feed(w->c, POLICY_DIR_RESPONSE, d + i,
						 bytewise ? 1 : (size_t)n))
					return -1;
			moved = true;
		}
		if (h2_conn_pump(w->c, SIZE_MAX, SIZE_MAX))
			return -1;
		if (w->to_up.len) {
			if (nghttp2_session_mem_recv(w->up.s, (uint8_t *)w->to_up.data,
						     w->to_up.len) < 0)
				return -1;
			w->to_up.len = 0;
			moved = true;
		}
		if (w->to_app.len && !w->app_stalled) {
			if (nghttp2_session_mem_recv(w->app.s, (uint8_t *)w->to_app.data,
						     w->to_app.len) < 0)
				return -1;
			w->to_app.len = 0;
			moved = true;
		}
		if (!moved)
			return 0;
	}
	return -1;
}

static void world_init(struct world *w, struct scenario *sc, const char *ctype_req)
{
	memset(w, 0, sizeof(*w));
	nghttp2_session_callbacks *cb;
	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_callbacks_set_on_header_callback(cb, app_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, app_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, app_close);
	nghttp2_session_client_new(&w->app.s, cb, &w->app);
	nghttp2_session_callbacks_del(cb);
	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, up_frame);
	w->up.sc = sc;
	nghttp2_session_server_new(&w->up.s, cb, &w->up);
	nghttp2_session_callbacks_del(cb);
	nghttp2_submit_settings(w->app.s, 0, NULL, 0);
	nghttp2_submit_settings(w->up.s, 0, NULL, 0);
	struct http_hooks hooks = {.policy_for = policy_for, .message_done = message_done};
	struct h2_io io = {to_buf, &w->to_app, to_buf, &w->to_up};
	/* The app's own first bytes are its preface: settle() hands them over with the rest. */
	w->c = h2_conn_new(&hooks, &io, NULL);
	nghttp2_nv nv[] = {
		{(uint8_t *)":method", (uint8_t *)"GET", 7, 3, 0},
		{(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
		{(uint8_t *)":authority", (uint8_t *)"x", 10, 1, 0},
		{(uint8_t *)":path", (uint8_t *)"/pkg.S/M", 5, 8, 0},
		{(uint8_t *)"content-type", (uint8_t *)ctype_req, 12, strlen(ctype_req), 0},
	};
	nghttp2_submit_request(w->app.s, NULL, nv, 5, NULL, NULL);
}

static void world_free(struct world *w)
{
	h2_conn_free(w->c);
	nghttp2_session_del(w->app.s);
	nghttp2_session_del(w->up.s);
	mm_buf_free(&w->app.body);
	mm_buf_free(&w->to_app);
	mm_buf_free(&w->to_up);
}

static void test_json(void)
{
	const char *doc = "{\"a\":1,\"ssn\":\"123-45-6789\"}";
	for (int bytewise = 0; bytewise < 2; bytewise++) {
		struct scenario sc = {.ctype = "application/json",
				      .body = doc,
				      .body_len = strlen(doc),
				      .repeat = 1};
		struct world w;
		world_init(&w, &sc, "text/plain");
		int r = settle(&w, bytewise);
		mm_buf_putc(&w.app.body, 0);
		ok(!r && !strcmp(w.app.status, "200") &&
			   !strcmp(w.app.body.data, "{\"a\":1,\"ssn\":\"<ssn>\"}"),
		   "JSON response masked (%s): %s", bytewise ? "byte by byte" : "whole",
		   w.app.body.data);
		ok(!w.app.has_length && !w.app.reset,
		   "content-length dropped (the length changed)");
		world_free(&w);
	}
}

static void test_blocked_body(void)
{
	/* A JSON body that does not parse, under onError: block: nothing of it went out, so the
	 * app gets an HTTP error with the reason instead of a reset. */
	const char *doc = "{\"ssn\":\"123-45-6789\",}}}";
	struct scenario sc = {
		.ctype = "application/json", .body = doc, .body_len = strlen(doc), .repeat = 1};
	struct world w;
	world_init(&w, &sc, "text/plain");
	int r = settle(&w, false);
	mm_buf_putc(&w.app.body, 0);
	ok(!r && !strcmp(w.app.status, "403") && !strcmp(w.app.reason, "bad_json") &&
		   !strstr(w.app.body.data, "123-45-6789") && !w.app.reset,
	   "a blocked body: 403 with x-meshmask-reason %s, nothing raw", w.app.reason);
	world_free(&w);
}

static void test_grpc_block(void)
{
	/* A gRPC message with no descriptor under onError: block: a gRPC error, not a cut. */
	const char msg[] = {0, 0, 0, 0, 3, 0x0a, 0x01, 'x'};
	struct scenario sc = {.ctype = "application/grpc", .body = msg, .body_len = 8, .repeat = 1};
	struct world w;
	world_init(&w, &sc, "application/grpc");
	int r = settle(&w, false);
	ok(!r && !strcmp(w.app.grpc_status, "7") && w.app.body.len == 0 && w.app.closed,
	   "gRPC, no descriptor, onError block: grpc-status 7 (%s), no body", w.app.grpc_status);
	world_free(&w);
}

static void test_reset(void)
{
	struct scenario sc = {.ctype = "application/json",
			      .body = "{}",
			      .body_len = 2,
			      .repeat = 1,
			      .reset = true};
	struct world w;
	world_init(&w, &sc, "text/plain");
	int r = settle(&w, false);
	ok(!r && w.app.closed && w.app.reset, "a reset from the upstream reaches the app");
	world_free(&w);
}

static void test_goaway_from_app(void)
{
	const char *doc = "{\"ssn\":\"123-45-6789\"}";
	struct scenario sc = {
		.ctype = "application/json", .body = doc, .body_len = strlen(doc), .repeat = 1};
	struct world w;
	world_init(&w, &sc, "text/plain");
	int r = settle(&w, false);
	nghttp2_submit_goaway(w.app.s, 0, 0, NGHTTP2_NO_ERROR, NULL, 0);
	r |= settle(&w, false);
	ok(!r && w.app.closed && !w.app.reset && w.up.goaway,
	   "GOAWAY from the app reaches the upstream, the stream before it complete");
	world_free(&w);
}

static void test_backpressure(void)
{
	/* 8 MiB of one JSON array toward an app that reads nothing. */
	const char *rec = "{\"ssn\":\"123-45-6789\"},";
	size_t rep = (8u << 20) / strlen(rec);
	struct scenario sc = {
		.ctype = "text/plain", .body = rec, .body_len = strlen(rec), .repeat = rep};
	struct world w;
	world_init(&w, &sc, "text/plain");
	w.app_stalled = true; /* it sends its request and settings, and reads nothing */
	settle(&w, false);
	size_t held = h2_conn_buffered(w.c) + w.to_app.len;
	ok(sc.sent < (1u << 20) && held < (512u << 10),
	   "a reader that takes nothing: the upstream sent %zu of %zu bytes, the agent holds %zu",
	   sc.sent, rep * strlen(rec), held);
	w.app_stalled = false;
	settle(&w, false);
	ok(sc.sent == rep * strlen(rec) && w.app.body.len > rep * 10,
	   "once it reads, all of it arrives (%zu bytes)", w.app.body.len);
	world_free(&w);
}

int main(void)
{
	pol = mkpol("\"onError\":\"block\",");
	ok(pol != NULL, "policy");
	if (!pol)
		return tap_done();
	test_json();
	test_blocked_body();
	test_grpc_block();
	test_reset();
	test_goaway_from_app();
	test_backpressure();
	ok(messages > 0, "messages reported (%d)", messages);
	policy_unref(pol);
	return tap_done();
}
