/* SPDX-License-Identifier: Apache-2.0 */
/* The engine's output: encoder and buffer, escapes, counters, onError, entity scan output. */
#include <errno.h>
#include <string.h>

#include "mask_internal.h"

/* ---- output ---- */

int mask_out_flush(struct mask_stream *s)
{
	if (!s->out.len)
		return 0;
	int r = s->sink(s->sink_ctx, s->out.data, s->out.len);
	s->st.bytes_out += s->out.len;
	s->out.len = 0;
	return r;
}

/* Wire bytes (already encoded, or no encoding). */
int mask_out_wire(void *ctx, const char *p, size_t n)
{
	struct mask_stream *s = ctx;
	int r;
	if (!n)
		return 0;
	if (n >= MASK_OUT_DIRECT) {
		if ((r = mask_out_flush(s)))
			return r;
		s->st.bytes_out += n;
		return s->sink(s->sink_ctx, p, n);
	}
	/* One allocation of a useful size rather than doubling up from 64 bytes. */
	if (!s->out.cap && (r = mm_buf_reserve(&s->out, MASK_OUT_FLUSH / 4)))
		return r;
	if ((r = mm_buf_append(&s->out, p, n)))
		return r;
	return s->out.len >= MASK_OUT_FLUSH ? mask_out_flush(s) : 0;
}

/* The encoder mirrors the decoder (raw deflate or zlib-wrapped), known once output exists. */
void mask_enc_ready(struct mask_stream *s)
{
	if (s->enc_inited)
		return;
	codec_enc_init(&s->enc, s->codec, s->dec.raw);
	s->enc_inited = true;
}

/* Decoded output of the format processors. */
int mask_out_put(struct mask_stream *s, const char *p, size_t n)
{
	if (s->observe || s->bypass || !n)
		return 0;
	if (s->codec == CODEC_GZIP || s->codec == CODEC_DEFLATE) {
		mask_enc_ready(s);
		return codec_enc_push(&s->enc, p, n, mask_out_wire, s);
	}
	return mask_out_wire(s, p, n);
}

static const char hexd[] = "0123456789abcdef";

/* The two-byte escape of each byte jsonscan_string() stops at; 0: \u00XX. */
static const char json_short_esc[0x60] = {
	['"'] = '"',  ['\\'] = '\\', ['\n'] = 'n', ['\r'] = 'r',
	['\t'] = 't', ['\b'] = 'b',  ['\f'] = 'f',
};

/* Minimal JSON escapes: '"', '\\' and control bytes; everything else (UTF-8 too) as it is. */
static int json_escape(struct mm_buf *b, const char *p, size_t n)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t i = 0;
	int r;
	while (i < n) {
		size_t j = jsonscan_string(u, i, n);
		if ((r = mm_buf_append(b, p + i, j - i)))
			return r;
		if (j == n)
			break;
		unsigned char c = u[j];
		char e[6] = {'\\', json_short_esc[c], '0', '0', hexd[c >> 4], hexd[c & 15]};
		if (!e[1])
			e[1] = 'u';
		if ((r = mm_buf_append(b, e, json_short_esc[c] ? 2 : 6)))
			return r;
		i = j + 1;
	}
	return 0;
}

int mask_form_escape(struct mm_buf *b, const char *p, size_t n)
{
	int r = 0;
	for (size_t i = 0; i < n && !r; i++) {
		unsigned char c = (unsigned char)p[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '*') {
			r = mm_buf_putc(b, (char)c);
		} else if (c == ' ') {
			r = mm_buf_putc(b, '+');
		} else {
			char e[3] = {'%', "0123456789ABCDEF"[c >> 4], "0123456789ABCDEF"[c & 15]};
			r = mm_buf_append(b, e, 3);
		}
	}
	return r;
}

/* Escape (JSON or form) into the output, without a copy when nothing re-encodes it. */
int mask_out_escaped(struct mask_stream *s, const char *p, size_t n, bool form)
{
	bool direct = s->codec != CODEC_GZIP && s->codec != CODEC_DEFLATE;
	struct mm_buf *d = direct ? &s->out : &s->tmp;
	int r;
	if (s->observe || s->bypass)
		return 0;
	if (!direct)
		mm_buf_reset(d);
	if ((r = form ? mask_form_escape(d, p, n) : json_escape(d, p, n)))
		return r;
	if (!direct)
		return mask_out_put(s, d->data, d->len);
	return s->out.len >= MASK_OUT_FLUSH ? mask_out_flush(s) : 0;
}
/* ---- stats and errors ---- */

void mask_count(struct mask_stream *s, int rule, int entity)
{
	if (rule < 0 || (size_t)rule >= s->st.n_rules)
		return;
	s->st.rules[rule].values++;
	s->st.values++;
	if (entity >= 0 && entity < MM_ENT__COUNT)
		s->st.rules[rule].by_entity[entity]++;
}

/*
 * Record an error and return what onError says to do with the affected bytes. Encoded bytes
 * cannot be entity-scanned: for encoding errors fallback means block.
 */
enum policy_on_error mask_note_error(struct mask_stream *s, enum mm_reason reason)
{
	enum policy_on_error oe = s->pol->on_error;
	/* Encoded bytes, or text in a charset the scanner does not read, cannot be scanned. */
	if (oe == POLICY_ONERR_FALLBACK &&
	    (reason == MM_REASON_BAD_ENCODING || reason == MM_REASON_UNKNOWN_ENCODING ||
	     reason == MM_REASON_BAD_CHARSET))
		oe = POLICY_ONERR_BLOCK;
	/* A text body that only looked like JSON is scanned as the text it is labelled. */
	if (s->sniff_text && reason == MM_REASON_BAD_JSON)
		oe = POLICY_ONERR_FALLBACK;
	s->st.errors[reason]++;
	enum mask_outcome oc = oe == POLICY_ONERR_BLOCK	 ? MASK_OUTCOME_BLOCKED
			       : oe == POLICY_ONERR_PASS ? MASK_OUTCOME_PASSED
							 : MASK_OUTCOME_FALLBACK;
	if (s->outcome == MASK_OUTCOME_MASKED || oc == MASK_OUTCOME_BLOCKED) {
		s->outcome = oc;
		s->reason = reason;
	}
	if (oe == POLICY_ONERR_BLOCK) {
		/* Observe never blocks: the rest is only counted. */
		if (s->observe)
			s->stopped = true;
		else
			s->blocked = true;
	}
	return oe;
}
/* ---- entity scanning ---- */

/* The action of `rule` on one value, appended to s->act. */
int mask_apply_rule(struct mask_stream *s, int rule, int entity, const char *p, size_t n)
{
	struct action_ctx *c = s->pg.actx ? &s->pg.actx[rule] : NULL;
	int r = action_apply_ctx(&s->pol->rules[rule].action, c, entity, p, n, &s->act);
	if (c && c->unfit) {
		/* Not an error of the body: counted, the outcome stays what it is. */
		s->st.errors[s->pol->rules[rule].action.type == POLICY_ACTION_DETOKENIZE
				     ? MM_REASON_DETOKENIZE_FAILED
				     : MM_REASON_TOKENIZE_FAILED] += c->unfit;
		c->unfit = 0;
	}
	return r;
}

int mask_scan_emit(void *ctx, const char *p, size_t n, int entity)
{
	struct scan_ctx *c = ctx;
	struct mask_stream *s = c->s;
	const char *w = p;
	size_t wn = n;
	int r;

	if (entity >= 0) {
		int rule = c->rule >= 0 ? c->rule : c->map[entity];
		mask_count(s, rule, entity);
		c->modified = true;
		if (s->observe || rule < 0)
			return 0;
		mm_buf_reset(&s->act);
		if ((r = mask_apply_rule(s, rule, entity, p, n)))
			return r;
		w = s->act.data;
		wn = s->act.len;
	} else if (s->observe) {
		return 0;
	}
	if (!c->escape && !c->form)
		return c->dst ? mm_buf_append(c->dst, w, wn) : mask_out_put(s, w, wn);
	if (!c->dst)
		return mask_out_escaped(s, w, wn, c->form);
	return c->escape ? json_escape(c->dst, w, wn) : mask_form_escape(c->dst, w, wn);
}

bool mask_val_has_match(struct mask_stream *s, const char *p, size_t n)
{
	struct detect_match m;
	return s->v_ents && detect_scan(p, n, 0, s->v_ents, s->v_flags, &m, 1) > 0;
}

/* ---- error mode: fallback scan or pass over the raw rest ---- */

void mask_em_begin(struct mask_stream *s, enum mm_reason reason, bool line)
{
	enum policy_on_error oe = mask_note_error(s, reason);
	s->em_line = line;
	if (oe == POLICY_ONERR_PASS) {
		s->em = E_PASS;
	} else {
		s->em = E_FALLBACK;
		s->sc_body = (struct scan_ctx){.s = s, .rule = -1, .map = s->pg.fb_rule};
		textscan_begin(&s->ts_body, s->pg.all_ents, 0, mask_scan_emit, &s->sc_body);
	}
}

int mask_em_put(struct mask_stream *s, const char *p, size_t n)
{
	if (s->blocked || s->stopped || !n)
		return 0;
	if (s->em == E_PASS)
		return mask_out_put(s, p, n);
	return textscan_push(&s->ts_body, p, n);
}

int mask_em_end(struct mask_stream *s)
{
	int r = 0;
	if (s->em == E_FALLBACK && !s->blocked && !s->stopped)
		r = textscan_finish(&s->ts_body);
	s->em = E_NONE;
	return r;
}
