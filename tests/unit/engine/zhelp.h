/* SPDX-License-Identifier: Apache-2.0 */
/* zlib one-shot helpers for the engine tests: wbits 31 = gzip, 15 = zlib, -15 = raw deflate. */
#ifndef MESHMASK_ZHELP_H
#define MESHMASK_ZHELP_H

#include <zlib.h>

#include "buf.h"

static inline int zcompress(const char *in, size_t len, int wbits, struct mm_buf *out)
{
	z_stream z = {0};
	unsigned char tmp[16384];
	int zr;
	if (deflateInit2(&z, 6, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	z.next_in = (unsigned char *)in;
	z.avail_in = (uInt)len;
	do {
		z.next_out = tmp;
		z.avail_out = sizeof(tmp);
		zr = deflate(&z, Z_FINISH);
		mm_buf_append(out, tmp, sizeof(tmp) - z.avail_out);
	} while (zr == Z_OK);
	deflateEnd(&z);
	return zr == Z_STREAM_END ? 0 : -1;
}

/* Decode a complete stream; 0 only if it is valid and complete. */
static inline int zdecompress(const char *in, size_t len, int wbits, struct mm_buf *out)
{
	z_stream z = {0};
	unsigned char tmp[16384];
	int zr;
	if (inflateInit2(&z, wbits) != Z_OK)
		return -1;
	z.next_in = (unsigned char *)in;
	z.avail_in = (uInt)len;
	do {
		z.next_out = tmp;
		z.avail_out = sizeof(tmp);
		zr = inflate(&z, Z_NO_FLUSH);
		mm_buf_append(out, tmp, sizeof(tmp) - z.avail_out);
	} while (zr == Z_OK);
	int ok = zr == Z_STREAM_END && z.avail_in == 0;
	inflateEnd(&z);
	return ok ? 0 : -1;
}

#endif
