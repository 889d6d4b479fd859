// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "grpc.h"

struct grpc_framer {
	size_t max;
	enum grpc_coding coding;
	grpc_msg_fn fn;
	void *ctx;
	unsigned char hdr[5];
	size_t hdr_n;
	uint32_t len; /* of the message being read */
	bool pass_oversize;
	uint32_t skip; /* bytes of an oversize message still to forward unread */
	struct mm_buf msg, plain, out, packed;
	uint64_t messages, oversize;
	int err;
};

enum grpc_coding grpc_coding_for(const char *v, size_t n)
{
	if (!v || !n || (n == 8 && !strncasecmp(v, "identity", 8)))
		return GRPC_IDENTITY;
	if (n == 4 && !strncasecmp(v, "gzip", 4))
		return GRPC_GZIP;
	if (n == 7 && !strncasecmp(v, "deflate", 7))
		return GRPC_DEFLATE;
	return GRPC_UNKNOWN;
}

struct grpc_framer *grpc_framer_new(size_t max_message, enum grpc_coding coding, grpc_msg_fn fn,
				    void *ctx, bool pass_oversize)
{
	struct grpc_framer *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	g->max = max_message ? max_message : GRPC_DEF_MAX_MESSAGE;
	g->coding = coding;
	g->fn = fn;
	g->ctx = ctx;
	g->pass_oversize = pass_oversize;
	return g;
}

static int wbits(enum grpc_coding c)
{
	return c == GRPC_GZIP ? 15 + 16 : 15; /* gzip wrapper, or zlib's (gRPC "deflate") */
}

/* Inflate in[0, n) into g->plain, at most g->max bytes. */
static int inflate_msg(struct grpc_framer *g, const unsigned char *in, size_t n)
{
	z_stream z = {0};
	if (inflateInit2(&z, wbits(g->coding)) != Z_OK)
		return -ENOMEM;
	mm_buf_reset(&g->plain);
	z.next_in = (unsigned char *)in;
	z.avail_in = (uInt)n;
	int zr = Z_OK, r = 0;
	while (zr != Z_STREAM_END) {
		size_t room = 64 * 1024;
		if (g->plain.len + room > g->max + 1)
			room = g->max + 1 - g->plain.len;
		if (!room) {
			r = -EMSGSIZE;
			break;
		}
		if ((r = mm_buf_reserve(&g->plain, room)))
			break;
		z.next_out = (unsigned char *)g->plain.data + g->plain.len;
		z.avail_out = (uInt)room;
		zr = inflate(&z, Z_NO_FLUSH);
		g->plain.len += room - z.avail_out;
		if (zr == Z_STREAM_END)
			break;
		if (zr != Z_OK || (!z.avail_in && z.avail_out)) {
			r = zr == Z_MEM_ERROR ? -ENOMEM : -EBADMSG;
			break;
		}
	}
	if (!r && (z.avail_in || g->plain.len > g->max))
		r = g->plain.len > g->max ? -EMSGSIZE : -EBADMSG;
	inflateEnd(&z);
	return r;
}

/* Deflate in[0, n) into g->packed. */
static int deflate_msg(struct grpc_framer *g, const char *in, size_t n)
{
	z_stream z = {0};
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, wbits(g->coding), 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		return -ENOMEM;
	size_t cap = deflateBound(&z, (uLong)n);
	mm_buf_reset(&g->packed);
	int r = mm_buf_reserve(&g->packed, cap);
	if (!r) {
		z.next_in = (unsigned char *)in;
		z.avail_in = (uInt)n;
		z.next_out = (unsigned char *)g->packed.data;
		z.avail_out = (uInt)cap;
		r = deflate(&z, Z_FINISH) == Z_STREAM_END ? 0 : -ENOMEM;
		g->packed.len = cap - z.avail_out;
	}
	deflateEnd(&z);
	return r;
}

/* A whole message is in g->msg: rewrite it and send it with its prefix. */
static int message(struct grpc_framer *g, mask_sink_fn sink, void *sink_ctx)
{
	bool packed = g->hdr[0] & 1;
	const char *in = g->msg.data ? g->msg.data : "";
	size_t n = g->msg.len;
	int r;
	if (packed) {
		if (g->coding == GRPC_IDENTITY || g->coding == GRPC_UNKNOWN)
			return -EBADMSG;
		if ((r = inflate_msg(g, (const unsigned char *)in, n)))
			return r;
		in = g->plain.data ? g->plain.data : "";
		n = g->plain.len;
	}
	mm_buf_reset(&g->out);
	if ((r = g->fn(g->ctx, in, n, &g->out)))
		return r;
	const char *o = g->out.data ? g->out.data : "";
	size_t on = g->out.len;
	if (packed) {
		if ((r = deflate_msg(g, o, on)))
			return r;
		o = g->packed.data;
		on = g->packed.len;
	}
	if (on > UINT32_MAX)
		return -EMSGSIZE;
	unsigned char h[5] = {packed ? 1 : 0, (unsigned char)(on >> 24), (unsigned char)(on >> 16),
			      (unsigned char)(on >> 8), (unsigned char)on};
	g->messages++;
	if ((r = sink(sink_ctx, (const char *)h, 5)))
		return r;
	return on ? sink(sink_ctx, o, on) : 0;
}

int grpc_framer_feed(struct grpc_framer *g, const void *data, size_t len, mask_sink_fn sink,
		     void *sink_ctx)
{
	const unsigned char *p = data;
	if (g->err)
		return g->err;
	while (len) {
		if (g->skip) {
			/* An oversize message under onError: pass, forwarded as it comes. */
			size_t k = g->skip < len ? g->skip : len;
			int r = sink(sink_ctx, (const char *)p, k);
			if (r)
				return g->err = r;
			g->skip -= (uint32_t)k;
			p += k;
			len -= k;
			if (!g->skip)
				g->hdr_n = 0;
			continue;
		}
		if (g->hdr_n < 5) {
			if (!mm_gather(g->hdr, &g->hdr_n, 5, &p, &len))
				break;
			g->len = (uint32_t)g->hdr[1] << 24 | (uint32_t)g->hdr[2] << 16 |
				 (uint32_t)g->hdr[3] << 8 | g->hdr[4];
			if (g->len > g->max) {
				if (!g->pass_oversize)
					return g->err = -EMSGSIZE;
				int r = sink(sink_ctx, (const char *)g->hdr, 5);
				if (r)
					return g->err = r;
				g->messages++;
				g->oversize++;
				g->skip = g->len;
				if (!g->skip)
					g->hdr_n = 0;
				continue;
			}
			mm_buf_reset(&g->msg);
		}
		size_t want = g->len - g->msg.len, k = want < len ? want : len;
		int r = k ? mm_buf_append(&g->msg, (const char *)p, k) : 0;
		if (r)
			return g->err = r;
		p += k;
		len -= k;
		if (g->msg.len == g->len) {
			if ((r = message(g, sink, sink_ctx)))
				return g->err = r;
			g->hdr_n = 0;
			mm_buf_reset(&g->msg);
			mm_buf_reset(&g->plain);
			mm_buf_reset(&g->out);
			mm_buf_reset(&g->packed);
			/* One message's buffers are not kept past a large one. */
			if (g->msg.cap > 256 * 1024) {
				mm_buf_free(&g->msg);
				mm_buf_free(&g->plain);
				mm_buf_free(&g->out);
				mm_buf_free(&g->packed);
			}
		}
	}
	return 0;
}

int grpc_framer_finish(struct grpc_framer *g)
{
	if (g->err)
		return g->err;
	return g->hdr_n || g->skip ? -EPROTO : 0;
}

uint64_t grpc_framer_messages(const struct grpc_framer *g)
{
	return g ? g->messages : 0;
}

uint64_t grpc_framer_oversize(const struct grpc_framer *g)
{
	return g ? g->oversize : 0;
}

size_t grpc_framer_buffered(const struct grpc_framer *g)
{
	return g ? g->hdr_n + g->msg.len + g->plain.len + g->out.len + g->packed.len : 0;
}

void grpc_framer_free(struct grpc_framer *g)
{
	if (!g)
		return;
	mm_buf_free(&g->msg);
	mm_buf_free(&g->plain);
	mm_buf_free(&g->out);
	mm_buf_free(&g->packed);
	free(g);
}
