/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streaming entity scanner: text pushed in arbitrary pieces is reported as plain runs and
 * matches exactly as one detect_scan() over the whole text would report them. It holds back
 * DETECT_MAX_MATCH_LEN + 1 bytes (plus one byte of left context), so memory is bounded by
 * TEXTSCAN_WINDOW whatever the length of the text.
 */
#ifndef MESHMASK_TEXTSCAN_H
#define MESHMASK_TEXTSCAN_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "detect.h"

/* Bytes gathered before a scan pass; the hold-back is carried over to the next pass. */
#define TEXTSCAN_WINDOW (64 * 1024)

/*
 * Receives the text in order: a plain run (entity == -1) or one match (entity >= 0). The
 * bytes are borrowed for the duration of the call. Returns 0 or a negative errno.
 */
typedef int (*textscan_emit_fn)(void *ctx, const char *p, size_t n, int entity);

struct textscan {
	struct mm_buf win; /* [0, ctx) left context, [ctx, len) not yet reported */
	size_t ctx;
	uint32_t entities;
	unsigned flags;
	textscan_emit_fn emit;
	void *emit_ctx;
};

/* Start a scan (keeps the window's storage of a previous scan). */
void textscan_begin(struct textscan *t, uint32_t entities, unsigned flags, textscan_emit_fn emit,
		    void *emit_ctx);

/* Add text; reports what is final. Returns 0 or the emitter's negative errno. */
int textscan_push(struct textscan *t, const char *p, size_t n);

/* End of text: reports everything still held. Returns 0 or the emitter's negative errno. */
int textscan_finish(struct textscan *t);

void textscan_free(struct textscan *t);

#endif
