/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "codec.h"

#define CODEC_CHUNK 16384

enum codec_kind codec_kind_for(const char *ce)
{
	if (!ce)
		return CODEC_NONE;
	while (*ce == ' ' || *ce == '\t')
		ce++;
	size_t n = strlen(ce);
	while (n && (ce[n - 1] == ' ' || ce[n - 1] == '\t'))
		n--;
	if (n == 0 || (n == 8 && !strncasecmp(ce, "identity", 8)))
		return CODEC_NONE;
	if ((n == 4 && !strncasecmp(ce, "gzip", 4)) || (n == 6 && !strncasecmp(ce, "x-gzip", 6)))
		return CODEC_GZIP;
	if (n == 7 && !strncasecmp(ce, "deflate", 7))
		return CODEC_DEFLATE;
	return CODEC_UNKNOWN;
}

void codec_dec_init(struct codec_dec *d, enum codec_kind kind)
{
	memset(d, 0, sizeof(*d));
	d->kind = kind;
}

static int codec_dec_start(struct codec_dec *d)
{
	int wbits = d->kind == CODEC_GZIP ? 15 + 16 : (d->raw ? -15 : 15);
	if (inflateInit2(&d->z, wbits) != Z_OK)
		return -ENOMEM;
	d->started = 1;
	return 0;
}

static int codec_inflate(struct codec_dec *d, const unsigned char *p, size_t n, codec_out_fn out,
			 void *ctx, size_t *left)
{
	unsigned char buf[CODEC_CHUNK];
	int r;

	/* The ratio bound counts the input inflate consumed, not what it was handed. */
	uint64_t in0 = d->in_total;

	d->z.next_in = (unsigned char *)p;
	d->z.avail_in = (uInt)n;
	for (;;) {
		if (d->ended) {
			if (!d->z.avail_in)
				break;
			/* Concatenated gzip members are one body; anything else is garbage. */
			if (d->kind != CODEC_GZIP || d->z.next_in[0] != 0x1f)
				goto bad;
			if (inflateReset(&d->z) != Z_OK)
				goto bad;
			d->ended = 0;
		}
		d->z.next_out = buf;
		d->z.avail_out = sizeof(buf);
		int zr = inflate(&d->z, Z_NO_FLUSH);
		size_t got = sizeof(buf) - d->z.avail_out;
		d->out_total += got;
		d->in_total = in0 + (n - d->z.avail_in);
		if (d->out_total > CODEC_RATIO_FREE &&
		    d->out_total / CODEC_MAX_RATIO > d->in_total) {
			*left = d->z.avail_in;
			return -EFBIG; /* a decompression bomb: nothing of this output goes on */
		}
		if (got && (r = out(ctx, (const char *)buf, got)))
			return r;
		if (zr == Z_STREAM_END) {
			d->ended = 1;
			continue;
		}
		if (zr == Z_BUF_ERROR || (zr == Z_OK && !d->z.avail_in && d->z.avail_out))
			break;
		if (zr != Z_OK)
			goto bad;
	}
	*left = 0;
	return 0;
bad:
	*left = d->z.avail_in;
	return -EBADMSG;
}

int codec_dec_push(struct codec_dec *d, const char *p, size_t n, codec_out_fn out, void *ctx,
		   size_t *bad_off)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t left = 0;
	int r;

	*bad_off = 0;
	if (!n)
		return 0;
	d->seen = 1;
	if (!d->started) {
		if (d->kind == CODEC_DEFLATE) {
			/* A zlib header is two bytes whose big-endian value is a multiple of 31. */
			if (!mm_gather(d->hdr, &d->n_hdr, 2, &u, &n))
				return 0;
			d->raw = !((d->hdr[0] & 0x0f) == 8 &&
				   ((d->hdr[0] << 8) | d->hdr[1]) % 31 == 0);
			if ((r = codec_dec_start(d)))
				return r;
			r = codec_inflate(d, d->hdr, 2, out, ctx, &left);
			if (r == -EBADMSG) {
				*bad_off = 0;
				return r;
			}
			if (r)
				return r;
		} else if ((r = codec_dec_start(d))) {
			return r;
		}
	}
	r = codec_inflate(d, u, n, out, ctx, &left);
	if (r == -EBADMSG)
		*bad_off = (size_t)((const char *)u - p) + (n - left);
	return r;
}

int codec_dec_finish(struct codec_dec *d, codec_out_fn out, void *ctx)
{
	if (!d->seen)
		return 0;
	if (!d->started || !d->ended)
		return -EBADMSG;
	return 0;
}

void codec_dec_free(struct codec_dec *d)
{
	if (d->started)
		inflateEnd(&d->z);
	d->started = 0;
}

void codec_enc_init(struct codec_enc *e, enum codec_kind kind, int raw)
{
	memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->raw = raw;
}

static int codec_deflate(struct codec_enc *e, const char *p, size_t n, int flush, codec_out_fn out,
			 void *ctx)
{
	unsigned char buf[CODEC_CHUNK];
	int r;

	if (!e->started) {
		int wbits = e->kind == CODEC_GZIP ? 15 + 16 : (e->raw ? -15 : 15);
		/* Level 1: a proxy trades a little ratio for much less CPU. */
		if (deflateInit2(&e->z, 1, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
			return -ENOMEM;
		e->started = 1;
	}
	e->z.next_in = (unsigned char *)p;
	e->z.avail_in = (uInt)n;
	for (;;) {
		e->z.next_out = buf;
		e->z.avail_out = sizeof(buf);
		int zr = deflate(&e->z, flush);
		size_t got = sizeof(buf) - e->z.avail_out;
		if (got && (r = out(ctx, (const char *)buf, got)))
			return r;
		if (zr == Z_STREAM_END)
			return 0;
		if (zr != Z_OK && zr != Z_BUF_ERROR)
			return -EIO;
		if (flush == Z_NO_FLUSH && !e->z.avail_in && e->z.avail_out)
			return 0;
	}
}

int codec_enc_push(struct codec_enc *e, const char *p, size_t n, codec_out_fn out, void *ctx)
{
	while (n) {
		/* avail_in is 32-bit. */
		size_t take = n > (1u << 30) ? (1u << 30) : n;
		int r = codec_deflate(e, p, take, Z_NO_FLUSH, out, ctx);
		if (r)
			return r;
		p += take;
		n -= take;
	}
	return 0;
}

int codec_enc_finish(struct codec_enc *e, codec_out_fn out, void *ctx)
{
	return codec_deflate(e, NULL, 0, Z_FINISH, out, ctx);
}

void codec_enc_free(struct codec_enc *e)
{
	if (e->started)
		deflateEnd(&e->z);
	e->started = 0;
}
