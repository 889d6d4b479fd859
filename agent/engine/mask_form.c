/* SPDX-License-Identifier: Apache-2.0 */
/* application/x-www-form-urlencoded bodies: one parameter at a time. */
#include <string.h>

#include "mask_internal.h"

/* ---- form ---- */

static int pct_decode(struct mm_buf *b, const char *p, size_t n)
{
	int r = mm_buf_reserve(b, n + 1);
	for (size_t i = 0; i < n && !r; i++) {
		int h1, h2;
		if (p[i] == '+') {
			r = mm_buf_putc(b, ' ');
		} else if (p[i] == '%' && i + 2 < n &&
			   (h1 = hexval((unsigned char)p[i + 1])) >= 0 &&
			   (h2 = hexval((unsigned char)p[i + 2])) >= 0) {
			r = mm_buf_putc(b, (char)(h1 << 4 | h2));
			i += 2;
		} else {
			r = mm_buf_putc(b, p[i]);
		}
	}
	return r;
}

/* One complete parameter (no '&') held in s->raw. */
static int form_param(struct mask_stream *s)
{
	const char *p = s->raw.data;
	size_t n = s->raw.len;
	const char *eq = n ? memchr(p, '=', n) : NULL;
	int r, rule = -1;
	bool alive;

	if (!eq)
		return mask_out_put(s, p, n);
	size_t name_len = (size_t)(eq - p);
	const char *v = eq + 1;
	size_t vn = n - name_len - 1;
	mm_buf_reset(&s->dec_buf);
	mm_buf_reset(&s->key);
	if (s->pg.n_fp) {
		if ((r = pct_decode(&s->key, p, name_len)))
			return r;
		s->depth = 0;
		mask_fp_value(s, NULL, 0, 0, &rule, &alive);
		s->pg.lv[0] = (struct jlevel){.is_obj = true, .alive = alive, .rule = rule};
		s->depth = 1;
		mask_fp_value(s, s->key.data ? s->key.data : "", s->key.len, 0, &rule, &alive);
		s->depth = 0;
	}
	if ((r = pct_decode(&s->dec_buf, v, vn)))
		return r;
	if (rule >= 0 && !s->pol->rules[rule].entities) {
		const struct policy_action *a = &s->pol->rules[rule].action;
		mask_count(s, rule, -1);
		if (s->observe)
			return 0;
		mm_buf_reset(&s->tmp);
		if ((r = mm_buf_append(&s->tmp, p, name_len + 1)))
			return r;
		if (a->type != POLICY_ACTION_REDACT) {
			mm_buf_reset(&s->act);
			if ((r = mask_apply_rule(s, rule, -1, s->dec_buf.data, s->dec_buf.len)) ||
			    (r = mask_form_escape(&s->tmp, s->act.data, s->act.len)))
				return r;
		}
		return mask_out_put(s, s->tmp.data, s->tmp.len);
	}
	if (rule >= 0) {
		s->v_ents = s->pol->rules[rule].entities;
		s->v_flags = DETECT_FIELD_CONTEXT;
		s->sc_val = (struct scan_ctx){.s = s, .rule = rule};
	} else {
		s->v_ents = s->pg.body_ents;
		s->v_flags = 0;
		s->sc_val = (struct scan_ctx){.s = s, .rule = -1, .map = s->pg.ent_rule};
	}
	if (!mask_val_has_match(s, s->dec_buf.data, s->dec_buf.len))
		return mask_out_put(s, p, n);
	mm_buf_reset(&s->tmp);
	if ((r = mm_buf_append(&s->tmp, p, name_len + 1)))
		return r;
	s->sc_val.form = true;
	s->sc_val.dst = &s->tmp;
	textscan_begin(&s->ts_val, s->v_ents, s->v_flags, mask_scan_emit, &s->sc_val);
	if ((r = textscan_push(&s->ts_val, s->dec_buf.data, s->dec_buf.len)) ||
	    (r = textscan_finish(&s->ts_val)))
		return r;
	return mask_out_put(s, s->tmp.data, s->tmp.len);
}

int mask_form_feed(struct mask_stream *s, const char *p, size_t n)
{
	int r;
	if (s->em != E_NONE)
		return mask_em_put(s, p, n);
	while (n) {
		const char *amp = memchr(p, '&', n);
		size_t k = amp ? (size_t)(amp - p) : n;
		if ((r = mm_buf_append(&s->raw, p, k)))
			return r;
		if (s->raw.len > MASK_HOLD_MAX) {
			mask_em_begin(s, MM_REASON_VALUE_TOO_LARGE, false);
			if ((r = mask_em_put(s, s->raw.data, s->raw.len)))
				return r;
			mm_buf_reset(&s->raw);
			return mask_em_put(s, p + k, n - k);
		}
		if (!amp)
			return 0;
		if ((r = form_param(s)) || (r = mask_out_put(s, "&", 1)))
			return r;
		mm_buf_reset(&s->raw);
		p += k + 1;
		n -= k + 1;
	}
	return 0;
}

int mask_form_finish(struct mask_stream *s)
{
	if (s->em != E_NONE)
		return mask_em_end(s);
	int r = s->raw.len ? form_param(s) : 0;
	mm_buf_reset(&s->raw);
	return r;
}
