/* SPDX-License-Identifier: Apache-2.0 */
/* Streaming entity detection with a hold-back window (see tls_scan.h). */
#include <errno.h>
#include <string.h>

#include "action.h"
#include "buf.h"
#include "policy.h"
#include "tls_scan.h"

/*
 * Report matches that start before `horizon`: a match at p depends only on
 * buf[p - 1, p + DETECT_MAX_MATCH_LEN], so below the horizon nothing can change any more.
 * Then drop what is decided, keeping one byte of context.
 */
static void scan(struct tls_scan *s, size_t horizon, uint32_t entities, tls_scan_fn fn, void *ctx)
{
	size_t pos = s->start;
	struct detect_match m[64];

	while (entities && pos < horizon) {
		size_t got = detect_scan(s->buf, s->n, pos, entities, 0, m, 64);
		size_t i;
		for (i = 0; i < got && m[i].off < horizon; i++) {
			fn(ctx, m[i].entity, s->base + m[i].off, m[i].len);
			pos = m[i].off + m[i].len;
		}
		if (i < got || got < 64)
			break;
	}
	if (pos < horizon)
		pos = horizon;
	s->start = pos;

	size_t keep_from = s->start ? s->start - 1 : 0;
	if (keep_from) {
		memmove(s->buf, s->buf + keep_from, s->n - keep_from);
		s->n -= keep_from;
		s->start -= keep_from;
		s->base += keep_from;
	}
}

void tls_scan_feed(struct tls_scan *s, const char *data, size_t len, uint32_t entities,
		   tls_scan_fn fn, void *ctx)
{
	while (len) {
		size_t step = len < TLS_SCAN_STEP ? len : TLS_SCAN_STEP;
		/* After a scan at most DETECT_MAX_MATCH_LEN + 2 bytes remain: a step fits. */
		memcpy(s->buf + s->n, data, step);
		s->n += step;
		data += step;
		len -= step;
		size_t horizon =
			s->n > DETECT_MAX_MATCH_LEN + 1 ? s->n - DETECT_MAX_MATCH_LEN - 1 : 0;
		scan(s, horizon, entities, fn, ctx);
	}
}

void tls_scan_finish(struct tls_scan *s, uint32_t entities, tls_scan_fn fn, void *ctx)
{
	scan(s, s->n, entities, fn, ctx);
	s->base += s->n;
	s->n = s->start = 0;
}

/* The first rule that masks entity e on this path. */
static const struct policy_rule *mask_rule(const struct policy *p, enum mm_entity e)
{
	for (size_t i = 0; i < p->n_rules; i++) {
		const struct policy_rule *r = &p->rules[i];
		if (!r->n_fields && !r->n_headers && (r->entities & MM_ENT_BIT(e)) &&
		    action_length_preserving(&r->action))
			return r;
	}
	return NULL;
}

long tls_mask_read(struct tls_mask_stream *st, const struct policy *p, char *data, size_t len,
		   char *scratch, size_t *partial)
{
	size_t tail = st->n < TLS_MASK_TAIL ? st->n : TLS_MASK_TAIL, n = tail + len;
	uint32_t entities = 0;
	for (int e = 0; e < MM_ENT__COUNT; e++)
		if (mask_rule(p, (enum mm_entity)e))
			entities |= MM_ENT_BIT(e);
	memcpy(scratch, st->tail, tail);
	memcpy(scratch + tail, data, len);
	struct mm_buf out = {0};
	long masked = 0;
	size_t pos = 0;
	*partial = 0;
	while (entities && pos < n) {
		struct detect_match m[64];
		size_t got = detect_scan(scratch, n, pos, entities, 0, m, 64);
		for (size_t i = 0; i < got; i++) {
			pos = m[i].off + m[i].len;
			/* Wholly within earlier reads: handled (or missed) with them. */
			if (pos <= tail)
				continue;
			const struct policy_rule *r = mask_rule(p, m[i].entity);
			out.len = 0;
			int err = action_apply(&r->action, (int)m[i].entity, scratch + m[i].off,
					       m[i].len, &out);
			if (err == -ENOMEM) {
				mm_buf_free(&out);
				return -ENOMEM;
			}
			if (err < 0 || out.len != m[i].len)
				continue;
			size_t from = m[i].off < tail ? tail - m[i].off : 0;
			memcpy(data + m[i].off + from - tail, out.data + from, m[i].len - from);
			masked++;
			if (from)
				(*partial)++;
		}
		if (got < 64)
			break;
	}
	mm_buf_free(&out);
	/* Context for the next read: the original bytes, so a split value is found whole. */
	size_t keep = n < TLS_MASK_TAIL ? n : TLS_MASK_TAIL;
	memmove(st->tail, scratch + n - keep, keep);
	st->n = keep;
	return masked;
}
