// SPDX-License-Identifier: Apache-2.0
/*
 * The gRPC framer: length-prefixed messages reassembled whatever the split (every split point
 * of a stream of plain and compressed messages gives the same output), re-prefixed after a
 * length change, compressed messages inflated and deflated again, and its bounds: a message
 * over the maximum (-EMSGSIZE, or forwarded unread under pass), a stream cut inside a
 * message (-EPROTO), a compressed message that does not inflate (-EBADMSG).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "tap.h"
#include "buf.h"
#include "grpc.h"

static int sink(void *ctx, const char *p, size_t n)
{
	return mm_buf_append(ctx, p, n);
}

/* The rewrite under test: every 'x' becomes "XX" (the length changes), counted. */
static int grow(void *ctx, const char *msg, size_t len, struct mm_buf *out)
{
	(*(int *)ctx)++;
	for (size_t i = 0; i < len; i++) {
		int r = msg[i] == 'x' ? mm_buf_append(out, "XX", 2) : mm_buf_putc(out, msg[i]);
		if (r)
			return r;
	}
	return 0;
}

static void frame(struct mm_buf *b, int flag, const void *p, size_t n)
{
	unsigned char h[5] = {(unsigned char)flag, (unsigned char)(n >> 24),
			      (unsigned char)(n >> 16), (unsigned char)(n >> 8), (unsigned char)n};
	mm_buf_append(b, h, 5);
	mm_buf_append(b, p, n);
}

static size_t gz(const char *in, size_t n, unsigned char *out, size_t cap)
{
	z_stream z = {0};
	deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
	z.next_in = (unsigned char *)in;
	z.avail_in = (uInt)n;
	z.next_out = out;
	z.avail_out = (uInt)cap;
	deflate(&z, Z_FINISH);
	size_t k = cap - z.avail_out;
	deflateEnd(&z);
	return k;
}

static size_t gunzip(const unsigned char *in, size_t n, char *out, size_t cap)
{
	z_stream z = {0};
	inflateInit2(&z, 15 + 16);
	z.next_in = (unsigned char *)in;
	z.avail_in = (uInt)n;
	z.next_out = (unsigned char *)out;
	z.avail_out = (uInt)cap;
	int r = inflate(&z, Z_FINISH);
	size_t k = cap - z.avail_out;
	inflateEnd(&z);
	return r == Z_STREAM_END ? k : (size_t)-1;
}

/* Run `in` split at `cut` (0 = whole); output appended to out. */
static int run(const struct mm_buf *in, size_t cut, enum grpc_coding c, size_t max, bool pass,
	       struct mm_buf *out, int *calls)
{
	struct grpc_framer *g = grpc_framer_new(max, c, grow, calls, pass);
	int r = 0;
	if (cut && cut < in->len) {
		r = grpc_framer_feed(g, in->data, cut, sink, out);
		if (!r)
			r = grpc_framer_feed(g, in->data + cut, in->len - cut, sink, out);
	} else {
		r = grpc_framer_feed(g, in->data, in->len, sink, out);
	}
	if (!r)
		r = grpc_framer_finish(g);
	grpc_framer_free(g);
	return r;
}

static void test_splits(void)
{
	struct mm_buf in = {0}, want = {0};
	frame(&in, 0, "ax-b", 4);
	frame(&in, 0, "", 0);
	frame(&in, 0, "xxxx", 4);
	unsigned char z[256];
	size_t zn = gz("pxq", 3, z, sizeof(z));
	frame(&in, 1, z, zn);
	/* What it must become: the same messages, grown, the compressed one compressed again. */
	struct mm_buf whole = {0};
	int calls = 0;
	ok(run(&in, 0, GRPC_GZIP, 0, false, &whole, &calls) == 0 && calls == 4,
	   "four messages, one compressed: all through the rewrite (%d)", calls);
	frame(&want, 0, "aXX-b", 5);
	frame(&want, 0, "", 0);
	frame(&want, 0, "XXXXXXXX", 8);
	ok(whole.len > want.len && !memcmp(whole.data, want.data, want.len),
	   "plain messages re-prefixed with their new lengths");
	const unsigned char *last = (const unsigned char *)whole.data + want.len;
	size_t ln = (size_t)last[1] << 24 | (size_t)last[2] << 16 | (size_t)last[3] << 8 | last[4];
	char plain[64];
	size_t pn = last[0] == 1 && 5 + ln == whole.len - want.len
			    ? gunzip(last + 5, ln, plain, sizeof(plain))
			    : (size_t)-1;
	ok(pn == 4 && !memcmp(plain, "pXXq", 4),
	   "the compressed one inflated, rewritten, deflated");
	int bad = 0;
	for (size_t cut = 1; cut < in.len; cut++) {
		struct mm_buf o = {0};
		int k = 0;
		if (run(&in, cut, GRPC_GZIP, 0, false, &o, &k) || o.len != whole.len ||
		    memcmp(o.data, whole.data, o.len) || k != 4)
			bad++;
		mm_buf_free(&o);
	}
	ok(!bad, "every split point of the stream gives the same output (%d differ)", bad);
	/* Byte by byte. */
	struct grpc_framer *g = grpc_framer_new(0, GRPC_GZIP, grow, &calls, false);
	struct mm_buf o = {0};
	int r = 0;
	for (size_t i = 0; i < in.len && !r; i++)
		r = grpc_framer_feed(g, in.data + i, 1, sink, &o);
	ok(!r && !grpc_framer_finish(g) && o.len == whole.len && !memcmp(o.data, whole.data, o.len),
	   "byte by byte: the same output");
	ok(grpc_framer_messages(g) == 4 && grpc_framer_buffered(g) == 0, "counted, nothing held");
	grpc_framer_free(g);
	mm_buf_free(&o);
	mm_buf_free(&whole);
	mm_buf_free(&want);
	mm_buf_free(&in);
}

static void test_bounds(void)
{
	struct mm_buf in = {0}, o = {0};
	char big[100];
	memset(big, 'b', sizeof(big));
	frame(&in, 0, "ok", 2);
	frame(&in, 0, big, sizeof(big));
	frame(&in, 0, "x", 1);
	int calls = 0;
	ok(run(&in, 0, GRPC_IDENTITY, 64, false, &o, &calls) == -EMSGSIZE && calls == 1,
	   "a message over the maximum: -EMSGSIZE, before it is held");
	mm_buf_reset(&o);
	calls = 0;
	struct mm_buf want = {0};
	frame(&want, 0, "ok", 2);
	frame(&want, 0, big, sizeof(big));
	frame(&want, 0, "XX", 2);
	int bad = 0;
	for (size_t cut = 0; cut < in.len; cut++) {
		mm_buf_reset(&o);
		calls = 0;
		if (run(&in, cut, GRPC_IDENTITY, 64, true, &o, &calls) || calls != 2 ||
		    o.len != want.len || memcmp(o.data, want.data, o.len))
			bad++;
	}
	ok(!bad, "pass_oversize: forwarded unread, framing resumes after it (every split)");
	struct grpc_framer *g = grpc_framer_new(64, GRPC_IDENTITY, grow, &calls, true);
	grpc_framer_feed(g, in.data, in.len, sink, &o);
	ok(grpc_framer_oversize(g) == 1 && grpc_framer_messages(g) == 3,
	   "the oversize one counted");
	grpc_framer_free(g);

	mm_buf_reset(&o);
	ok(run(&(struct mm_buf){.data = in.data, .len = 4}, 0, GRPC_IDENTITY, 0, false, &o,
	       &calls) == -EPROTO,
	   "cut inside a prefix: -EPROTO at the end");
	ok(run(&(struct mm_buf){.data = in.data, .len = 6}, 0, GRPC_IDENTITY, 0, false, &o,
	       &calls) == -EPROTO,
	   "cut inside a message: -EPROTO at the end");
	mm_buf_reset(&in);
	frame(&in, 1, "not gzip", 8);
	mm_buf_reset(&o);
	ok(run(&in, 0, GRPC_GZIP, 0, false, &o, &calls) == -EBADMSG && o.len == 0,
	   "a compressed message that does not inflate: -EBADMSG, nothing out");
	ok(run(&in, 0, GRPC_IDENTITY, 0, false, &o, &calls) == -EBADMSG,
	   "a compressed message with no grpc-encoding: -EBADMSG");
	/* A small message that inflates past the maximum (a zip bomb): refused while inflating. */
	char *zeros = calloc(1, 1 << 20);
	unsigned char *bomb = malloc(1 << 16);
	size_t bn = gz(zeros, 1 << 20, bomb, 1 << 16);
	mm_buf_reset(&in);
	frame(&in, 1, bomb, bn);
	ok(bn < 4096 && run(&in, 0, GRPC_GZIP, 64 * 1024, false, &o, &calls) == -EMSGSIZE,
	   "a %zu-byte message inflating to 1 MiB, bound 64 KiB: -EMSGSIZE", bn);
	free(zeros);
	free(bomb);
	is_int(grpc_coding_for("gzip", 4), GRPC_GZIP, "grpc-encoding gzip");
	is_int(grpc_coding_for("DEFLATE", 7), GRPC_DEFLATE, "grpc-encoding deflate");
	is_int(grpc_coding_for(NULL, 0), GRPC_IDENTITY, "no grpc-encoding");
	is_int(grpc_coding_for("snappy", 6), GRPC_UNKNOWN, "an unknown coding");
	mm_buf_free(&in);
	mm_buf_free(&o);
	mm_buf_free(&want);
}

int main(void)
{
	test_splits();
	test_bounds();
	return tap_done();
}
