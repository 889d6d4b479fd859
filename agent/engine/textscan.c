/* SPDX-License-Identifier: Apache-2.0 */
#include "textscan.h"

#define TEXTSCAN_HOLD (DETECT_MAX_MATCH_LEN + 1)
#define TEXTSCAN_BATCH 64

void textscan_begin(struct textscan *t, uint32_t entities, unsigned flags, textscan_emit_fn emit,
		    void *emit_ctx)
{
	mm_buf_reset(&t->win);
	t->ctx = 0;
	t->entities = entities;
	t->flags = flags;
	t->emit = emit;
	t->emit_ctx = emit_ctx;
}

/*
 * Report what is final in the window. A match at p depends only on text[p-1, p+MAX], so with
 * `final` false only matches and plain bytes before len - HOLD are reported; detect_scan()
 * restarted at a position outside any match reports what the one-shot scan would.
 */
static int textscan_pass(struct textscan *t, int final)
{
	const char *w = t->win.data;
	size_t len = t->win.len, pos = t->ctx;
	size_t limit = final ? len : (len > TEXTSCAN_HOLD ? len - TEXTSCAN_HOLD : 0);
	struct detect_match m[TEXTSCAN_BATCH];
	int r;

	if (limit <= pos && !final)
		return 0;
	for (;;) {
		size_t k = t->entities ? detect_scan(w, len, pos, t->entities, t->flags, m,
						     TEXTSCAN_BATCH)
				       : 0;
		size_t i;
		int unsafe = 0;
		for (i = 0; i < k; i++) {
			if (!final && m[i].off >= limit) {
				unsafe = 1;
				break;
			}
			if (m[i].off > pos &&
			    (r = t->emit(t->emit_ctx, w + pos, m[i].off - pos, -1)))
				return r;
			if ((r = t->emit(t->emit_ctx, w + m[i].off, m[i].len, (int)m[i].entity)))
				return r;
			pos = m[i].off + m[i].len;
		}
		if (k == TEXTSCAN_BATCH && !unsafe)
			continue;
		break;
	}
	if (limit > pos) {
		if ((r = t->emit(t->emit_ctx, w + pos, limit - pos, -1)))
			return r;
		pos = limit;
	}
	if (final) {
		t->win.len = 0;
		t->ctx = 0;
		return 0;
	}
	/* Keep one byte of left context for word boundaries. */
	size_t keep_from = pos ? pos - 1 : 0;
	mm_buf_consume(&t->win, keep_from);
	t->ctx = pos - keep_from;
	return 0;
}

int textscan_push(struct textscan *t, const char *p, size_t n)
{
	while (n) {
		size_t room = t->win.len < TEXTSCAN_WINDOW + TEXTSCAN_HOLD
				      ? TEXTSCAN_WINDOW + TEXTSCAN_HOLD - t->win.len
				      : 0;
		size_t take = n < room ? n : room;
		int r = mm_buf_append(&t->win, p, take);
		if (r)
			return r;
		p += take;
		n -= take;
		if (t->win.len >= TEXTSCAN_WINDOW + TEXTSCAN_HOLD && (r = textscan_pass(t, 0)))
			return r;
	}
	return 0;
}

int textscan_finish(struct textscan *t)
{
	return textscan_pass(t, 1);
}

void textscan_free(struct textscan *t)
{
	mm_buf_free(&t->win);
}
