/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The HTTP/2 watcher of the TLS path (agent/h2/h2obs.c) on arbitrary bytes, in fuzz_h2's input
 * format (2 bytes client length L, a selector, a chunk size, the client's bytes after the
 * preface, the server's bytes): each direction is watched whole and in chunks, and both runs
 * must hand out the same stream bytes, the same header fields and the same verdict, up to an
 * error (after which nothing more is handed out).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "h2.h"
#include "h2obs.h"

/* Each byte with its stream: how the bytes were split into calls does not show. */
static void on_data(void *ctx, int32_t stream, const char *p, size_t n)
{
	struct mm_buf *b = ctx;
	if (!p) {
		mm_buf_append(b, &stream, sizeof(stream));
		mm_buf_append(b, "<end>", 5);
	}
	for (size_t i = 0; p && i < n; i++) {
		mm_buf_append(b, &stream, sizeof(stream));
		mm_buf_putc(b, p[i]);
	}
}

static void on_header(void *ctx, int32_t stream, const char *name, size_t nl, const char *val,
		      size_t vl)
{
	struct mm_buf *b = ctx;
	mm_buf_append(b, &stream, sizeof(stream));
	mm_buf_append(b, name, nl);
	mm_buf_append(b, ":", 1);
	mm_buf_append(b, val, vl);
}

static int run(bool client, const uint8_t *p, size_t n, size_t chunk, struct mm_buf *out)
{
	struct h2obs *o = h2obs_new(client);
	if (!o)
		abort();
	int r = 0;
	if (client)
		r = h2obs_feed(o, H2_PREFACE, H2_PREFACE_LEN, on_data, on_header, out);
	for (size_t off = 0; off < n && !r; off += chunk)
		r = h2obs_feed(o, p + off, n - off < chunk ? n - off : chunk, on_data, on_header,
			       out);
	h2obs_free(o);
	return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	size_t L = (size_t)data[0] << 8 | data[1];
	size_t chunk = 1 + data[3] % 97;
	data += 4;
	size -= 4;
	if (L > size)
		L = size;
	const uint8_t *src[2] = {data, data + L};
	size_t len[2] = {L, size - L};
	for (int d = 0; d < 2; d++) {
		struct mm_buf whole = {0}, split = {0};
		int r1 = run(d == 0, src[d], len[d], len[d] ? len[d] : 1, &whole);
		int r2 = run(d == 0, src[d], len[d], chunk, &split);
		/* The same verdict, and the same output up to where it failed. */
		size_t common = whole.len < split.len ? whole.len : split.len;
		if (r1 != r2 || (!r1 && whole.len != split.len) ||
		    (common && memcmp(whole.data, split.data, common)))
			abort();
		mm_buf_free(&whole);
		mm_buf_free(&split);
	}
	return 0;
}
