// SPDX-License-Identifier: Apache-2.0
/*
 * Watching HTTP/2 plaintext as the TLS probes capture it: real frames from nghttp2 sessions
 * (a request with a header holding an e-mail; a response body in small padded DATA frames, so
 * that frame headers and padding fall inside its values), fed whole, byte by byte and at every
 * split point: the body of each stream comes out whole, the headers decoded by HPACK, and
 * what is not HTTP/2 is told apart at once.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "tap.h"
#include "buf.h"
#include "h2obs.h"

static const char body[] = "{\"ssn\":\"536-22-8710\",\"card\":\"4111 1111 1111 1111\","
			   "\"note\":\"reach me at ann@example.com\"}";

struct gen {
	struct mm_buf cli, srv; /* what each side sent */
	size_t sent[8]; /* per stream id */
};

static ssize_t srv_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
			nghttp2_data_source *src, void *ud)
{
	struct gen *g = ud;
	size_t *sent = &g->sent[id & 7];
	size_t n = sizeof(body) - 1 - *sent;
	if (n > 7)
		n = 7; /* small frames: values straddle frame headers */
	memcpy(buf, body + *sent, n);
	*sent += n;
	if (*sent == sizeof(body) - 1)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static ssize_t padding(nghttp2_session *s, const nghttp2_frame *f, size_t max, void *ud)
{
	return f->hd.length + 3 < max ? (ssize_t)f->hd.length + 3 : (ssize_t)f->hd.length;
}

static int srv_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	nghttp2_nv nv[] = {{(uint8_t *)":status", (uint8_t *)"200", 7, 3, 0},
			   {(uint8_t *)"x-owner", (uint8_t *)"bob@example.org", 7, 15, 0}};
	nghttp2_data_provider prd = {.read_callback = srv_read};
	return nghttp2_submit_response(s, f->hd.stream_id, nv, 2, &prd);
}

/* One exchange: the client's bytes and the server's. */
static void generate(struct gen *g)
{
	nghttp2_session_callbacks *cb;
	nghttp2_session *c, *s;
	nghttp2_session_callbacks_new(&cb);
	nghttp2_session_client_new(&c, cb, g);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, srv_frame);
	nghttp2_session_callbacks_set_select_padding_callback(cb, padding);
	nghttp2_session_server_new(&s, cb, g);
	nghttp2_session_callbacks_del(cb);
	nghttp2_submit_settings(c, 0, NULL, 0);
	nghttp2_submit_settings(s, 0, NULL, 0);
	nghttp2_nv nv[] = {{(uint8_t *)":method", (uint8_t *)"GET", 7, 3, 0},
			   {(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, 0},
			   {(uint8_t *)":authority", (uint8_t *)"x", 10, 1, 0},
			   {(uint8_t *)":path", (uint8_t *)"/c", 5, 2, 0},
			   {(uint8_t *)"x-from", (uint8_t *)"ann@example.com", 6, 15, 0}};
	nghttp2_submit_request(c, NULL, nv, 5, NULL, NULL);
	nghttp2_submit_request(c, NULL, nv, 5, NULL, NULL); /* a second stream: HPACK state */
	for (int round = 0; round < 50; round++) {
		const uint8_t *d;
		ssize_t n;
		while ((n = nghttp2_session_mem_send(c, &d)) > 0) {
			mm_buf_append(&g->cli, d, (size_t)n);
			nghttp2_session_mem_recv(s, d, (size_t)n);
		}
		while ((n = nghttp2_session_mem_send(s, &d)) > 0) {
			mm_buf_append(&g->srv, d, (size_t)n);
			nghttp2_session_mem_recv(c, d, (size_t)n);
		}
	}
	nghttp2_session_del(c);
	nghttp2_session_del(s);
}

struct seen {
	struct mm_buf data[8]; /* per stream id (1, 3) */
	int ended[8];
	int owner, from; /* header fields decoded, per stream */
};

static void on_data(void *ctx, int32_t stream, const char *p, size_t n)
{
	struct seen *v = ctx;
	if (stream < 0 || stream >= 8)
		return;
	if (!p)
		v->ended[stream]++;
	else
		mm_buf_append(&v->data[stream], p, n);
}

static void on_header(void *ctx, int32_t stream, const char *name, size_t nl, const char *val,
		      size_t vl)
{
	struct seen *v = ctx;
	if (nl == 7 && !memcmp(name, "x-owner", 7) && vl == 15 &&
	    !memcmp(val, "bob@example.org", 15))
		v->owner++;
	if (nl == 6 && !memcmp(name, "x-from", 6) && vl == 15 &&
	    !memcmp(val, "ann@example.com", 15))
		v->from++;
}

static bool watch(const struct mm_buf *b, bool client, size_t cut, bool bytewise, struct seen *v)
{
	struct h2obs *o = h2obs_new(client);
	int r = 0;
	if (bytewise) {
		for (size_t i = 0; i < b->len && !r; i++)
			r = h2obs_feed(o, b->data + i, 1, on_data, on_header, v);
	} else {
		r = h2obs_feed(o, b->data, cut, on_data, on_header, v);
		if (!r)
			r = h2obs_feed(o, b->data + cut, b->len - cut, on_data, on_header, v);
	}
	h2obs_free(o);
	return r == 0;
}

static void seen_free(struct seen *v)
{
	for (int i = 0; i < 8; i++)
		mm_buf_free(&v->data[i]);
}

int main(void)
{
	struct gen g = {0};
	generate(&g);
	ok(g.cli.len > 24 && g.srv.len > sizeof(body), "an exchange of %zu + %zu bytes", g.cli.len,
	   g.srv.len);
	ok(h2obs_sniff(g.cli.data, g.cli.len) == 1 && h2obs_sniff(g.srv.data, g.srv.len) == 1,
	   "both directions sniffed as HTTP/2");
	ok(h2obs_sniff("PRI * HTTP", 10) == -1 && h2obs_sniff("\x00\x00", 2) == -1,
	   "a few bytes: undecided");
	ok(h2obs_sniff("HTTP/1.1 200 OK\r\n", 17) == 0 && h2obs_sniff("GET / HTTP/1.1", 14) == 0,
	   "HTTP/1.1 is not");

	struct seen v = {0};
	ok(watch(&g.srv, false, 0, false, &v), "server direction parsed");
	ok(v.data[1].len == sizeof(body) - 1 && !memcmp(v.data[1].data, body, v.data[1].len) &&
		   v.data[3].len == sizeof(body) - 1 && v.ended[1] == 1 && v.ended[3] == 1,
	   "each stream's body whole, padding and frame headers gone (%zu, %zu bytes)",
	   v.data[1].len, v.data[3].len);
	ok(v.owner == 2, "response headers decoded for both streams (HPACK state kept)");
	seen_free(&v);
	memset(&v, 0, sizeof(v));
	ok(watch(&g.cli, true, 0, false, &v) && v.from == 2, "request headers decoded (%d)",
	   v.from);
	seen_free(&v);

	int bad = 0;
	for (size_t cut = 0; cut <= g.srv.len; cut++) {
		memset(&v, 0, sizeof(v));
		if (!watch(&g.srv, false, cut, false, &v) || v.data[1].len != sizeof(body) - 1 ||
		    memcmp(v.data[1].data, body, v.data[1].len) || v.owner != 2)
			bad++;
		seen_free(&v);
	}
	ok(!bad, "every split point gives the same streams (%d differ)", bad);
	memset(&v, 0, sizeof(v));
	ok(watch(&g.srv, false, 0, true, &v) && v.data[3].len == sizeof(body) - 1 && v.owner == 2,
	   "byte by byte too");
	seen_free(&v);

	struct h2obs *o = h2obs_new(true);
	ok(h2obs_feed(o, "GET / HTTP/1.1\r\n", 16, on_data, on_header, &v) == -EPROTO,
	   "not the preface: -EPROTO");
	h2obs_free(o);
	o = h2obs_new(false);
	unsigned char junk[64];
	memset(junk, 0xff, sizeof(junk));
	junk[3] = 0x01; /* a HEADERS frame whose block is garbage */
	junk[4] = 0x04;
	junk[0] = 0;
	junk[1] = 0;
	junk[2] = 20;
	ok(h2obs_feed(o, junk, sizeof(junk), on_data, on_header, &v) == -EPROTO,
	   "a header block HPACK cannot decode: -EPROTO");
	h2obs_free(o);
	mm_buf_free(&g.cli);
	mm_buf_free(&g.srv);
	return tap_done();
}
