/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Content-Encoding codecs through zlib: a streaming decoder and encoder for gzip and deflate
 * (zlib-wrapped, or raw deflate as some servers send). Memory is zlib's fixed state.
 */
#ifndef MESHMASK_CODEC_H
#define MESHMASK_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

enum codec_kind { CODEC_NONE, CODEC_GZIP, CODEC_DEFLATE, CODEC_UNKNOWN };

/* Kind for a Content-Encoding value (case-insensitive; NULL, "" and "identity" are NONE). */
enum codec_kind codec_kind_for(const char *content_encoding);

/* Receives decoded or encoded bytes (borrowed for the call); 0 or a negative errno. */
typedef int (*codec_out_fn)(void *ctx, const char *p, size_t n);

struct codec_dec {
	z_stream z;
	enum codec_kind kind;
	int raw; /* deflate without zlib wrapper */
	int started; /* inflateInit done */
	int ended; /* a complete stream was decoded */
	int seen; /* any input at all */
	unsigned char hdr[2];
	size_t n_hdr;
	uint64_t in_total, out_total; /* compressed bytes consumed, decoded bytes produced */
};

/*
 * A decompression bomb bound: past the first CODEC_RATIO_FREE bytes of output, a body that
 * decodes to more than CODEC_MAX_RATIO times its compressed size is cut (-EFBIG). Real
 * JSON and text compress 5-50x; a gzip bomb 1,000x.
 */
#define CODEC_MAX_RATIO 200u
#define CODEC_RATIO_FREE (1u << 20)

struct codec_enc {
	z_stream z;
	int started;
	int raw;
	enum codec_kind kind;
};

void codec_dec_init(struct codec_dec *d, enum codec_kind kind);
/*
 * Decode `n` bytes. Returns 0, the output function's error, -EBADMSG for a corrupt stream
 * (then *bad_off is the offset in p of the first byte not consumed), or -EFBIG for a body
 * past the ratio bound (CODEC_MAX_RATIO).
 */
int codec_dec_push(struct codec_dec *d, const char *p, size_t n, codec_out_fn out, void *ctx,
		   size_t *bad_off);
/* End of input: -EBADMSG when the stream was truncated, else 0. */
int codec_dec_finish(struct codec_dec *d, codec_out_fn out, void *ctx);
void codec_dec_free(struct codec_dec *d);

/* `raw` selects raw deflate for CODEC_DEFLATE (mirror what was decoded). */
void codec_enc_init(struct codec_enc *e, enum codec_kind kind, int raw);
int codec_enc_push(struct codec_enc *e, const char *p, size_t n, codec_out_fn out, void *ctx);
/* Complete the stream (header, trailer); an empty input still yields a valid stream. */
int codec_enc_finish(struct codec_enc *e, codec_out_fn out, void *ctx);
void codec_enc_free(struct codec_enc *e);

#endif
