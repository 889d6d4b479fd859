/* SPDX-License-Identifier: Apache-2.0 */
/* Streaming entity detection with a hold-back window (see tls_scan.h). */
#include <string.h>

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
