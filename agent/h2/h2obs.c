// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "buf.h"
#include "h2.h"
#include "h2obs.h"

enum { F_DATA = 0x0, F_HEADERS = 0x1, F_PUSH_PROMISE = 0x5, F_CONTINUATION = 0x9 };
enum { FL_END_STREAM = 0x1, FL_END_HEADERS = 0x4, FL_PADDED = 0x8, FL_PRIORITY = 0x20 };

struct h2obs {
	size_t preface; /* client preface bytes still to skip */
	unsigned char hdr[9];
	size_t hdr_n;
	uint32_t len, left; /* of the frame's payload */
	uint8_t type, flags;
	int32_t stream;
	uint32_t skip_head, pad; /* payload bytes before / after the content (padding etc.) */
	unsigned char lead[6]; /* the pad length, priority or promised stream id, as it comes */
	size_t lead_n, lead_want;
	struct mm_buf block; /* a header block being collected (HEADERS + CONTINUATION) */
	int32_t block_stream;
	bool block_end_stream;
	nghttp2_hd_inflater *hd;
	int err;
};

int h2obs_sniff(const void *b, size_t n)
{
	const unsigned char *p = b;
	size_t k = n < H2_PREFACE_LEN ? n : H2_PREFACE_LEN;
	if (!memcmp(p, H2_PREFACE, k))
		return n >= H2_PREFACE_LEN ? 1 : -1;
	/* A server starts with SETTINGS (type 4, no flags) on stream 0, a multiple of 6 long. */
	static const unsigned char want[6] = {0x04, 0x00, 0, 0, 0, 0};
	for (size_t i = 3; i < n && i < 9; i++)
		if (p[i] != want[i - 3])
			return 0;
	if (n < 9)
		return -1;
	return ((size_t)p[0] << 16 | (size_t)p[1] << 8 | p[2]) % 6 == 0;
}

struct h2obs *h2obs_new(bool client)
{
	struct h2obs *o = calloc(1, sizeof(*o));
	if (!o)
		return NULL;
	if (nghttp2_hd_inflate_new(&o->hd)) {
		free(o);
		errno = ENOMEM;
		return NULL;
	}
	o->preface = client ? H2_PREFACE_LEN : 0;
	return o;
}

/* A whole header block: decoded, each field handed out; the stream may end with it. */
static int header_block(struct h2obs *o, h2obs_data_fn data_fn, h2obs_header_fn header_fn,
			void *ctx)
{
	const uint8_t *in = (const uint8_t *)o->block.data;
	size_t n = o->block.len;
	for (;;) {
		nghttp2_nv nv;
		int flags = 0;
		ssize_t k = nghttp2_hd_inflate_hd2(o->hd, &nv, &flags, in, n, 1);
		if (k < 0)
			return -EPROTO;
		in += k;
		n -= (size_t)k;
		if ((flags & NGHTTP2_HD_INFLATE_EMIT) && header_fn && o->block_stream)
			header_fn(ctx, o->block_stream, (const char *)nv.name, nv.namelen,
				  (const char *)nv.value, nv.valuelen);
		if (flags & NGHTTP2_HD_INFLATE_FINAL) {
			nghttp2_hd_inflate_end_headers(o->hd);
			break;
		}
		if (!k && !n)
			break;
	}
	mm_buf_reset(&o->block);
	if (o->block_end_stream && data_fn)
		data_fn(ctx, o->block_stream, NULL, 0);
	return 0;
}

/* The frame header is in: what of its payload is content, and where it goes. */
static int frame_start(struct h2obs *o)
{
	o->len = o->left = (uint32_t)o->hdr[0] << 16 | (uint32_t)o->hdr[1] << 8 | o->hdr[2];
	o->type = o->hdr[3];
	o->flags = o->hdr[4];
	o->stream = (int32_t)(((uint32_t)o->hdr[5] << 24 | (uint32_t)o->hdr[6] << 16 |
			       (uint32_t)o->hdr[7] << 8 | o->hdr[8]) &
			      0x7fffffff);
	o->lead_n = o->pad = 0;
	o->lead_want = 0;
	bool padded = o->flags & FL_PADDED;
	if (o->type == F_DATA || o->type == F_HEADERS || o->type == F_PUSH_PROMISE)
		o->lead_want = padded ? 1 : 0;
	if (o->type == F_HEADERS && (o->flags & FL_PRIORITY))
		o->lead_want += 5;
	if (o->type == F_PUSH_PROMISE)
		o->lead_want += 4;
	if (o->lead_want > o->len)
		return -EPROTO;
	if (o->type == F_HEADERS || o->type == F_PUSH_PROMISE) {
		if (o->block.len)
			return -EPROTO; /* a new block before the last one ended */
		o->block_stream = o->type == F_HEADERS ? o->stream : 0;
		o->block_end_stream = o->type == F_HEADERS && (o->flags & FL_END_STREAM);
	} else if (o->type == F_CONTINUATION && !o->block.len && !o->block_stream) {
		return -EPROTO;
	}
	return 0;
}

static bool in_block(const struct h2obs *o)
{
	return o->type == F_HEADERS || o->type == F_PUSH_PROMISE || o->type == F_CONTINUATION;
}

int h2obs_feed(struct h2obs *o, const void *data, size_t len, h2obs_data_fn data_fn,
	       h2obs_header_fn header_fn, void *ctx)
{
	const unsigned char *p = data;
	int r;
	if (o->err)
		return o->err;
	while (len) {
		if (o->preface) {
			size_t k = o->preface < len ? o->preface : len;
			if (memcmp(p, H2_PREFACE + H2_PREFACE_LEN - o->preface, k))
				return o->err = -EPROTO;
			o->preface -= k;
			p += k;
			len -= k;
			continue;
		}
		if (o->hdr_n < 9) {
			if (!mm_gather(o->hdr, &o->hdr_n, 9, &p, &len))
				break;
			if ((r = frame_start(o)))
				return o->err = r;
		}
		/* The lead: pad length, priority, promised stream id. */
		while (o->lead_n < o->lead_want && len) {
			o->lead[o->lead_n++] = *p++;
			len--;
			o->left--;
			if (o->lead_n == 1 && (o->flags & FL_PADDED)) {
				o->pad = o->lead[0];
				if (o->pad > o->len - o->lead_want)
					return o->err = -EPROTO;
			}
		}
		if (o->lead_n < o->lead_want)
			break;
		size_t content = o->left > o->pad ? o->left - o->pad : 0;
		size_t k = content < len ? content : len;
		if (k && o->type == F_DATA && data_fn) {
			data_fn(ctx, o->stream, (const char *)p, k);
		} else if (k && in_block(o)) {
			if (o->block.len + k > H2OBS_MAX_HEADER_BLOCK)
				return o->err = -EPROTO;
			if ((r = mm_buf_append(&o->block, p, k)))
				return o->err = r;
		}
		p += k;
		len -= k;
		o->left -= (uint32_t)k;
		if (k == content) {
			/* the padding: skipped */
			size_t pad = o->left < len ? o->left : len;
			p += pad;
			len -= pad;
			o->left -= (uint32_t)pad;
		}
		if (o->left)
			break;
		/* The frame is over. */
		o->hdr_n = 0;
		if (o->type == F_DATA && (o->flags & FL_END_STREAM) && data_fn)
			data_fn(ctx, o->stream, NULL, 0);
		if (in_block(o) && (o->flags & FL_END_HEADERS) &&
		    (r = header_block(o, data_fn, header_fn, ctx)))
			return o->err = r;
	}
	return 0;
}

void h2obs_free(struct h2obs *o)
{
	if (!o)
		return;
	nghttp2_hd_inflate_del(o->hd);
	mm_buf_free(&o->block);
	free(o);
}
