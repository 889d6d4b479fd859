/* SPDX-License-Identifier: Apache-2.0 */
/* The JSON (and NDJSON) state machine of the streaming engine. */
#include <errno.h>
#include <string.h>

#include "mask_internal.h"

/* ---- JSON ---- */

static int put_utf8(struct mm_buf *b, uint32_t c)
{
	char u[4];
	size_t n;
	if (c < 0x80) {
		u[0] = (char)c;
		n = 1;
	} else if (c < 0x800) {
		u[0] = (char)(0xc0 | c >> 6);
		u[1] = (char)(0x80 | (c & 0x3f));
		n = 2;
	} else if (c < 0x10000) {
		u[0] = (char)(0xe0 | c >> 12);
		u[1] = (char)(0x80 | (c >> 6 & 0x3f));
		u[2] = (char)(0x80 | (c & 0x3f));
		n = 3;
	} else {
		u[0] = (char)(0xf0 | c >> 18);
		u[1] = (char)(0x80 | (c >> 12 & 0x3f));
		u[2] = (char)(0x80 | (c >> 6 & 0x3f));
		u[3] = (char)(0x80 | (c & 0x3f));
		n = 4;
	}
	return mm_buf_append(b, u, n);
}

static struct mm_buf *str_target(struct mask_stream *s)
{
	return s->str_key ? &s->key : &s->dec_buf;
}

/* A pending high surrogate that is not followed by a low one decodes to U+FFFD. */
static int flush_high(struct mask_stream *s)
{
	if (!s->high)
		return 0;
	s->high = 0;
	return s->str_dec ? put_utf8(str_target(s), 0xfffd) : 0;
}

static int dec_code(struct mask_stream *s, uint32_t c)
{
	int r;
	if (c >= 0xd800 && c <= 0xdbff) {
		if ((r = flush_high(s)))
			return r;
		s->high = c;
		return 0;
	}
	if (c >= 0xdc00 && c <= 0xdfff) {
		if (!s->high)
			return s->str_dec ? put_utf8(str_target(s), 0xfffd) : 0;
		uint32_t cp = 0x10000 + ((s->high - 0xd800) << 10) + (c - 0xdc00);
		s->high = 0;
		return s->str_dec ? put_utf8(str_target(s), cp) : 0;
	}
	if ((r = flush_high(s)))
		return r;
	return s->str_dec ? put_utf8(str_target(s), c) : 0;
}

/* Scan decoded text, write the quoted, re-escaped result to the output. */
static int emit_scanned_string(struct mask_stream *s, const char *p, size_t n)
{
	int r;
	s->sc_val.dst = NULL;
	s->sc_val.escape = true;
	textscan_begin(&s->ts_val, s->v_ents, s->v_flags, mask_scan_emit, &s->sc_val);
	if ((r = mask_out_put(s, "\"", 1)) || (r = textscan_push(&s->ts_val, p, n)) ||
	    (r = textscan_finish(&s->ts_val)))
		return r;
	return mask_out_put(s, "\"", 1);
}

/* A value over MASK_HOLD_MAX under a whole-value rule. */
static int too_large(struct mask_stream *s, bool is_string)
{
	enum policy_on_error oe = mask_note_error(s, MM_REASON_VALUE_TOO_LARGE);
	if (oe == POLICY_ONERR_BLOCK)
		return 0;
	if (oe == POLICY_ONERR_PASS || !is_string) {
		s->vm = V_PASSRAW;
		return 0;
	}
	s->vm = V_SCAN;
	s->v_ents = s->pg.all_ents;
	s->v_flags = 0;
	s->v_rule = -1;
	s->sc_val = (struct scan_ctx){.s = s, .rule = -1, .map = s->pg.fb_rule, .escape = true};
	return 0;
}

/* Switch a held string over MASK_HOLD_MAX to streaming; raw and d are what is held so far. */
static int go_stream(struct mask_stream *s, const char *raw, size_t rawn, const char *d, size_t dn)
{
	int r;
	if (s->vm == V_WHOLE && (r = too_large(s, true)))
		return r;
	if (s->blocked)
		return 0;
	if (s->vm == V_PASSRAW) {
		s->str_dec = false;
		r = mask_out_put(s, raw, rawn);
	} else {
		s->vm = V_STREAM;
		s->sc_val.dst = NULL;
		s->sc_val.escape = true;
		textscan_begin(&s->ts_val, s->v_ents, s->v_flags, mask_scan_emit, &s->sc_val);
		if (!(r = mask_out_put(s, "\"", 1)))
			r = textscan_push(&s->ts_val, d, dn);
	}
	mm_buf_reset(&s->dec_buf);
	mm_buf_reset(&s->raw);
	return r;
}

static int whole_action(struct mask_stream *s, const char *p, size_t n)
{
	const struct policy_action *a = &s->pol->rules[s->v_rule].action;
	int r;
	mask_count(s, s->v_rule, -1);
	if (s->observe)
		return 0;
	if (a->type == POLICY_ACTION_REDACT)
		return mask_out_put(s, "null", 4);
	mm_buf_reset(&s->act);
	if ((r = mask_apply_rule(s, s->v_rule, -1, p, n)) || (r = mask_out_put(s, "\"", 1)) ||
	    (r = mask_out_escaped(s, s->act.data, s->act.len, false)))
		return r;
	return mask_out_put(s, "\"", 1);
}

/*
 * A held string or scalar is complete: `raw` is its text (quotes included), `d` the decoded
 * value. `pre` (copied-through bytes before it, not sent yet) goes out before anything the
 * value turns into. Returns 1 when the value stays as it is and sits in the current chunk (the
 * caller keeps copying through), 0 when its output was written, or a negative errno.
 */
static int held_end(struct mask_stream *s, const char *raw, size_t rawn, const char *d, size_t dn,
		    bool is_string, bool in_chunk, const char *pre, size_t pre_n)
{
	int r;

	s->holding = false;
	if (rawn > MASK_HOLD_MAX) {
		if ((r = mask_out_put(s, pre, pre_n)))
			return r;
		if (is_string) {
			if ((r = go_stream(s, raw, rawn, d, dn)) || s->blocked || s->vm != V_STREAM)
				return r;
			if ((r = textscan_finish(&s->ts_val)))
				return r;
			return mask_out_put(s, "\"", 1);
		}
		if ((r = too_large(s, false)) || s->blocked)
			return r;
		return mask_out_put(s, raw, rawn);
	}
	if (s->vm == V_WHOLE) {
		if ((r = mask_out_put(s, pre, pre_n)))
			return r;
		return whole_action(s, d, dn);
	}
	struct detect_match m[MASK_SCAN_BATCH];
	size_t k = s->v_ents ? detect_scan(d, dn, 0, s->v_ents, s->v_flags, m, MASK_SCAN_BATCH) : 0;
	if (!k) {
		if (in_chunk)
			return 1;
		if ((r = mask_out_put(s, pre, pre_n)))
			return r;
		return mask_out_put(s, raw, rawn);
	}
	if ((r = mask_out_put(s, pre, pre_n)))
		return r;
	if (k == MASK_SCAN_BATCH)
		return emit_scanned_string(s, d, dn);
	/* All matches are known: the same as the text scanner's one pass, without its copy. */
	size_t pos = 0;
	/* The value had no escape (it is its raw text): its plain pieces need none either. */
	bool raw_plain = d == raw + 1;
	s->sc_val.dst = NULL;
	s->sc_val.escape = true;
	if ((r = mask_out_put(s, "\"", 1)))
		return r;
	for (size_t j = 0; j <= k; j++) {
		size_t end = j < k ? m[j].off : dn;
		if (end > pos &&
		    (r = raw_plain ? mask_out_put(s, d + pos, end - pos)
				   : mask_scan_emit(&s->sc_val, d + pos, end - pos, -1)))
			return r;
		if (j == k)
			break;
		if ((r = mask_scan_emit(&s->sc_val, d + m[j].off, m[j].len, (int)m[j].entity)))
			return r;
		pos = m[j].off + m[j].len;
	}
	return mask_out_put(s, "\"", 1);
}

/*
 * End of a held token at cp[i] (exclusive) that began at cp[hold_from] in this chunk, or in an
 * earlier one (then its start is in s->raw and hold_from is 0). For a scalar, d is NULL.
 */
static int tok_end(struct mask_stream *s, const char *cp, size_t *emit_from, size_t hold_from,
		   size_t i, const char *d, size_t dn)
{
	bool in_chunk = s->raw.len == 0, is_string = d != NULL;
	const char *raw = cp + hold_from;
	size_t rawn = i - hold_from;
	int r;

	if (!in_chunk) {
		if ((r = mm_buf_append(&s->raw, cp + hold_from, i - hold_from)))
			return r;
		raw = s->raw.data;
		rawn = s->raw.len;
	}
	if (!is_string) {
		d = raw;
		dn = rawn;
	}
	r = held_end(s, raw, rawn, d, dn, is_string, in_chunk, cp + *emit_from,
		     hold_from - *emit_from);
	mm_buf_reset(&s->raw);
	if (r < 0)
		return r;
	if (r == 0)
		*emit_from = i;
	return 0;
}

/* The string began at cp[tok] and had no escape so far: its decoded text is its raw text. */
static int lazy_fill(struct mask_stream *s, const char *cp, size_t tok, size_t upto)
{
	struct mm_buf *t = str_target(s);
	int r = mm_buf_append(t, cp + tok + 1, upto - tok - 1);
	s->lazy = false;
	if (s->str_key && t->len > MASK_HOLD_MAX + 1)
		t->len = MASK_HOLD_MAX + 1;
	return r;
}

int mask_json_reset_doc(struct mask_stream *s)
{
	s->depth = 0;
	s->js = J_VALUE;
	s->holding = false;
	s->esc = 0;
	s->high = 0;
	return 0;
}

/*
 * A JSON syntax error at p[i]. Bytes before the held token (or before p[i]) are sent as parsed;
 * from the start of the held token (or from p[i]) on, bytes are handed to onError.
 */
static int json_error(struct mask_stream *s, const char *p, size_t n, size_t i, size_t emit_from,
		      size_t hold_from, enum mm_reason reason)
{
	int r;
	if (s->js == J_STR && s->vm == V_STREAM && !s->str_key) {
		if ((r = textscan_push(&s->ts_val, s->dec_buf.data, s->dec_buf.len)) ||
		    (r = textscan_finish(&s->ts_val)))
			return r;
		emit_from = i;
	}
	size_t upto = s->holding ? hold_from : i;
	if (upto > emit_from && (r = mask_out_put(s, p + emit_from, upto - emit_from)))
		return r;
	mask_em_begin(s, reason, s->ndjson);
	if (s->holding) {
		if ((r = mm_buf_append(&s->raw, p + hold_from, i - hold_from)))
			return r;
		if ((r = mask_em_put(s, s->raw.data, s->raw.len)))
			return r;
	}
	mm_buf_reset(&s->raw);
	s->holding = false;
	s->lazy = false;
	s->kview_chunk = false;
	return 0;
}

/* Start a value whose first byte is p[i]; sets s->js. Returns 0, 1 for a syntax error. */
static int value_begin(struct mask_stream *s, unsigned char c, bool *hold)
{
	int d = s->depth;
	const char *key = NULL;
	size_t key_len = 0;
	uint32_t index = 0;
	bool alive;

	if (d && s->pg.lv[d - 1].is_obj) {
		key = s->kview ? s->kview : "";
		key_len = s->kview_len;
		s->kview_chunk = false;
	} else if (d) {
		index = s->pg.lv[d - 1].index;
	}
	if (d && !s->pg.lv[d - 1].alive) {
		/* what mask_fp_value() says under a level no path lives in, without the call */
		s->v_rule = s->pg.lv[d - 1].rule;
		alive = false;
	} else if (d && s->pg.fp_simple &&
		   (!key || !(s->pg.key_filter >> mask_fp_key_hash(key, key_len) & 1))) {
		/* `$..name` paths only, and no path names this member: the same, without the call */
		s->v_rule = s->pg.lv[d - 1].rule;
		alive = true;
	} else {
		mask_fp_value(s, key, key_len, index, &s->v_rule, &alive);
	}
	*hold = false;
	s->vm = V_COPY;
	s->v_ents = 0;
	s->v_flags = 0;
	if (s->v_rule >= 0) {
		const struct policy_rule *ru = &s->pol->rules[s->v_rule];
		s->vm = ru->entities ? V_SCAN : V_WHOLE;
		s->v_ents = ru->entities;
		s->v_flags = DETECT_FIELD_CONTEXT;
		s->sc_val = (struct scan_ctx){.s = s, .rule = s->v_rule, .escape = true};
	}
	switch (c) {
	case '"':
		if (s->vm == V_COPY && s->pg.body_ents) {
			s->vm = V_SCAN;
			s->v_ents = s->pg.body_ents;
			s->sc_val = (struct scan_ctx){
				.s = s, .rule = -1, .map = s->pg.ent_rule, .escape = true};
		}
		s->js = J_STR;
		s->str_key = false;
		s->str_dec = s->vm != V_COPY;
		s->esc = 0;
		s->high = 0;
		*hold = s->vm != V_COPY;
		if (*hold)
			mm_buf_reset(&s->dec_buf);
		return 0;
	case '{':
	case '[':
		if (d >= MASK_MAX_DEPTH)
			return 1;
		s->pg.lv[d] =
			(struct jlevel){.is_obj = c == '{', .alive = alive, .rule = s->v_rule};
		s->depth++;
		s->js = c == '{' ? J_OBJ_FIRST : J_ARR_FIRST;
		return 0;
	case '-':
	case '0' ... '9':
		s->js = J_NUM;
		s->num_st = c == '-' ? 0 : c == '0' ? 1 : 2;
		*hold = s->vm != V_COPY;
		return 0;
	case 't':
	case 'f':
	case 'n':
		s->js = J_LIT;
		s->lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
		s->lit_i = 1;
		*hold = s->vm != V_COPY && c != 'n';
		if (s->vm == V_SCAN)
			*hold = false;
		return 0;
	default:
		return 1;
	}
}

static void value_end(struct mask_stream *s)
{
	s->js = s->depth ? J_AFTER : J_DONE;
}

/*
 * In NDJSON error mode: hand p[i, newline) to onError and return the newline's index, where
 * parsing resumes; n when the line goes on past this chunk (or the error covers the rest).
 */
static int em_line_skip(struct mask_stream *s, const char *p, size_t n, size_t i, size_t *resume)
{
	int r;
	const char *nl =
		s->em_line && !s->blocked && !s->stopped ? memchr(p + i, '\n', n - i) : NULL;
	*resume = n;
	if (!nl)
		return mask_em_put(s, p + i, n - i);
	size_t k = (size_t)(nl - p);
	if ((r = mask_em_put(s, p + i, k - i)) || (r = mask_em_end(s)))
		return r;
	if (!s->blocked && !s->stopped) {
		mask_json_reset_doc(s);
		*resume = k;
	}
	return 0;
}

/* Blanks between tokens; a newline ends an NDJSON document, so it takes the slow path. */
#define SKIP_BLANKS()                                                                         \
	while (i < n &&                                                                       \
	       (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || (p[i] == '\n' && !s->ndjson))) \
	i++

/* Straight on to what follows a value, without going through the state dispatch. */
#define FAST_AFTER()                                 \
	do {                                         \
		if (s->js == J_AFTER) {              \
			SKIP_BLANKS();               \
			if (i < n && !is_ws(p[i])) { \
				c = p[i];            \
				goto after_value;    \
			}                            \
		}                                    \
	} while (0)

/*
 * The JSON state machine over one chunk. Bytes are copied through in spans (emit_from..i); a
 * value that may change is held from hold_from until it is complete.
 */
int mask_json_feed(struct mask_stream *s, const char *cp, size_t n)
{
	const unsigned char *p = (const unsigned char *)cp;
	size_t i = 0, emit_from = 0, hold_from = 0, tok = 0;
	bool hold;
	int r;
	struct jsonscan_idx ix; /* the chunk's special bytes, a 64-byte block at a time */

	jsonscan_idx_init(&ix, p, n, jsonscan_best());
	if (s->em != E_NONE) {
		if ((r = em_line_skip(s, cp, n, 0, &i)))
			return r;
		emit_from = i;
	}
	while (i < n) {
		unsigned char c = p[i];
		switch (s->js) {
		case J_VALUE:
		case J_ARR_FIRST:
			if (is_ws(c)) {
				if (c == '\n' && s->ndjson && s->depth)
					goto bad;
				i++;
				break;
			}
			if (s->js == J_ARR_FIRST && c == ']') {
				s->depth--;
				i++;
				value_end(s);
				FAST_AFTER();
				break;
			}
		value_start:
			if (value_begin(s, c, &hold))
				goto bad;
			s->lazy = false;
			if (hold) {
				s->holding = true;
				s->lazy = s->js == J_STR;
				hold_from = tok = i;
				mm_buf_reset(&s->raw);
			}
			i++;
			if (i == n)
				break;
			c = p[i];
			if (s->js == J_STR)
				goto in_string;
			if (s->js == J_NUM)
				goto in_number;
			if (s->js == J_LIT)
				goto in_literal;
			break;
		case J_OBJ_FIRST:
		case J_KEY:
			if (is_ws(c)) {
				if (c == '\n' && s->ndjson)
					goto bad;
				i++;
				break;
			}
			if (s->js == J_OBJ_FIRST && c == '}') {
				s->depth--;
				i++;
				value_end(s);
				FAST_AFTER();
				break;
			}
		key_start:
			if (c != '"')
				goto bad;
			s->js = J_STR;
			s->str_key = true;
			s->str_dec = s->pg.lv[s->depth - 1].alive;
			s->lazy = s->str_dec;
			s->esc = 0;
			s->high = 0;
			tok = i;
			mm_buf_reset(&s->key);
			i++;
			if (i < n)
				goto in_string;
			break;
		case J_COLON:
			if (is_ws(c)) {
				if (c == '\n' && s->ndjson)
					goto bad;
				i++;
				break;
			}
			if (c != ':')
				goto bad;
			s->js = J_VALUE;
			i++;
			break;
		case J_AFTER:
			if (is_ws(c)) {
				if (c == '\n' && s->ndjson)
					goto bad;
				i++;
				break;
			}
		after_value:
			if (c == ',') {
				struct jlevel *l = &s->pg.lv[s->depth - 1];
				i++;
				SKIP_BLANKS();
				if (l->is_obj) {
					s->js = J_KEY;
					if (i < n && p[i] == '"') {
						c = '"';
						goto key_start;
					}
					break;
				}
				l->index++;
				s->js = J_VALUE;
				if (i < n && !is_ws(p[i])) {
					c = p[i];
					goto value_start;
				}
				break;
			}
			if (c == (s->pg.lv[s->depth - 1].is_obj ? '}' : ']')) {
				s->depth--;
				i++;
				value_end(s);
				FAST_AFTER();
				break;
			}
			goto bad;
		case J_DONE:
			if (c == '\n' && s->ndjson) {
				s->js = J_VALUE;
				i++;
				break;
			}
			if (s->multi_doc && !is_ws(c)) {
				mask_json_reset_doc(s); /* the next document starts at c */
				break;
			}
			if (!is_ws(c))
				goto bad;
			i++;
			break;
		case J_STR:
		in_string : {
			if (s->esc == 0) {
				size_t j = jsonscan_next(&ix, i);
				if (j > i && s->str_dec && !s->lazy) {
					if ((r = flush_high(s)) ||
					    (r = mm_buf_append(str_target(s), cp + i, j - i)))
						return r;
					/* A key this long matches no named segment: keep a bounded prefix. */
					if (s->str_key && s->key.len > MASK_HOLD_MAX + 1)
						s->key.len = MASK_HOLD_MAX + 1;
				} else if (j > i) {
					s->high = 0;
				}
				i = j;
				if (i == n)
					break;
				c = p[i];
				if (c == '\\') {
					if (s->lazy && (r = lazy_fill(s, cp, tok, i)))
						return r;
					s->esc = 1;
					i++;
					break;
				}
				if (c != '"')
					goto bad;
				if ((r = flush_high(s)))
					return r;
				i++;
				if (s->str_key) {
					if (s->lazy) {
						s->lazy = false;
						s->kview = cp + tok + 1;
						s->kview_len = i - tok - 2;
						s->kview_chunk = true;
					} else {
						s->kview = s->key.data;
						s->kview_len = s->key.len;
					}
					s->js = J_COLON;
					SKIP_BLANKS();
					if (i < n && p[i] == ':') {
						i++;
						s->js = J_VALUE;
						SKIP_BLANKS();
						if (i < n && !is_ws(p[i])) {
							c = p[i];
							goto value_start;
						}
					}
					break;
				}
				if (s->vm == V_STREAM) {
					if ((r = textscan_push(&s->ts_val, s->dec_buf.data,
							       s->dec_buf.len)) ||
					    (r = textscan_finish(&s->ts_val)) ||
					    (r = mask_out_put(s, "\"", 1)))
						return r;
					mm_buf_reset(&s->dec_buf);
					emit_from = i;
				} else if (s->holding) {
					const char *d = s->dec_buf.data ? s->dec_buf.data : "";
					size_t dn = s->dec_buf.len;
					if (s->lazy) {
						s->lazy = false;
						d = cp + tok + 1;
						dn = i - tok - 2;
					}
					if ((r = tok_end(s, cp, &emit_from, hold_from, i, d, dn)))
						return r;
					if (s->blocked)
						return 0;
				}
				value_end(s);
				FAST_AFTER();
				break;
			}
			if (s->esc == 1) {
				static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
				const char *e = c ? strchr(from, c) : NULL;
				if (c == 'u') {
					s->esc = 2;
					s->uval = 0;
					i++;
					break;
				}
				if (!e)
					goto bad;
				if ((r = flush_high(s)))
					return r;
				if (s->str_dec && (r = mm_buf_putc(str_target(s), to[e - from])))
					return r;
				s->esc = 0;
				i++;
				break;
			}
			int h = hexval(c);
			if (h < 0)
				goto bad;
			s->uval = s->uval << 4 | (uint32_t)h;
			i++;
			if (++s->esc == 6) {
				s->esc = 0;
				if ((r = dec_code(s, s->uval)))
					return r;
			}
			break;
		}
		case J_NUM:
		in_number : {
			/* The whole number in one go: no trip through the state dispatch per part. */
			uint8_t st = s->num_st, ns = 0xff;
			for (;;) {
				bool digit = c >= '0' && c <= '9';
				if (digit && (st == 2 || st == 4 || st == 7)) {
					while (++i < n && p[i] >= '0' && p[i] <= '9')
						;
				} else {
					switch (st) {
					case 0:
						ns = c == '0' ? 1 : digit ? 2 : 0xff;
						break;
					case 1:
					case 2:
						ns = c == '.'		      ? 3
						     : (c == 'e' || c == 'E') ? 5
									      : 0xfe;
						break;
					case 3:
						ns = digit ? 4 : 0xff;
						break;
					case 4:
						ns = (c == 'e' || c == 'E') ? 5 : 0xfe;
						break;
					case 5:
						ns = digit ? 7 : (c == '+' || c == '-') ? 6 : 0xff;
						break;
					case 6:
						ns = digit ? 7 : 0xff;
						break;
					case 7:
						ns = 0xfe;
						break;
					}
					if (ns >= 0xfe)
						break;
					st = ns;
					i++;
				}
				if (i == n)
					break;
				c = p[i];
			}
			s->num_st = st;
			if (i == n)
				break;
			if (ns == 0xff)
				goto bad;
			/* c ends the number; it is looked at again as what follows a value. */
			if (s->holding) {
				if ((r = tok_end(s, cp, &emit_from, hold_from, i, NULL, 0)))
					return r;
				if (s->blocked)
					return 0;
			}
			value_end(s);
			FAST_AFTER();
			break;
		}
		case J_LIT:
		in_literal:
			while (s->lit[s->lit_i]) {
				if (i == n)
					goto next;
				if (p[i] != (unsigned char)s->lit[s->lit_i])
					goto bad;
				i++;
				s->lit_i++;
			}
			if (s->holding) {
				if ((r = tok_end(s, cp, &emit_from, hold_from, i, NULL, 0)))
					return r;
				if (s->blocked)
					return 0;
			}
			value_end(s);
			FAST_AFTER();
			break;
		}
	next:
		continue;
	bad:
		if ((r = json_error(s, cp, n, i, emit_from, hold_from, MM_REASON_BAD_JSON)))
			return r;
		if (s->blocked || s->stopped)
			return 0;
		if ((r = em_line_skip(s, cp, n, i, &i)))
			return r;
		emit_from = hold_from = i;
	}
	if (s->em != E_NONE || s->blocked || s->stopped)
		return 0;
	/* End of the chunk: keep what is held (copied out of the chunk), send what is not. */
	if (s->js == J_STR && s->lazy && (r = lazy_fill(s, cp, tok, n)))
		return r;
	if (s->kview_chunk) {
		mm_buf_reset(&s->key);
		if ((r = mm_buf_append(&s->key, s->kview, s->kview_len)))
			return r;
		s->kview = s->key.data;
		s->kview_chunk = false;
	}
	if (s->js == J_STR && s->vm == V_STREAM && !s->str_key) {
		if ((r = textscan_push(&s->ts_val, s->dec_buf.data, s->dec_buf.len)))
			return r;
		mm_buf_reset(&s->dec_buf);
		return 0;
	}
	if (s->holding) {
		if (hold_from > emit_from &&
		    (r = mask_out_put(s, cp + emit_from, hold_from - emit_from)))
			return r;
		if ((r = mm_buf_append(&s->raw, cp + hold_from, n - hold_from)))
			return r;
		if (s->js == J_STR && s->raw.len > MASK_HOLD_MAX) {
			s->holding = false;
			return go_stream(s, s->raw.data, s->raw.len, s->dec_buf.data,
					 s->dec_buf.len);
		}
		if (s->js != J_STR && s->raw.len > MASK_HOLD_MAX) {
			s->holding = false;
			if ((r = too_large(s, false)) || s->blocked)
				return r;
			r = mask_out_put(s, s->raw.data, s->raw.len);
			mm_buf_reset(&s->raw);
			return r;
		}
		return 0;
	}
	return n > emit_from ? mask_out_put(s, cp + emit_from, n - emit_from) : 0;
}

int mask_json_finish(struct mask_stream *s)
{
	int r;
	if (s->em != E_NONE)
		return mask_em_end(s);
	if (s->js == J_NUM && s->depth == 0 &&
	    (s->num_st == 1 || s->num_st == 2 || s->num_st == 4 || s->num_st == 7)) {
		size_t ef = 0;
		if (s->holding && (r = tok_end(s, "", &ef, 0, 0, NULL, 0)))
			return r;
		s->js = J_DONE;
	}
	if (s->js == J_DONE || (s->js == J_VALUE && s->depth == 0))
		return 0;
	/* Truncated document. */
	if ((r = json_error(s, "", 0, 0, 0, 0, MM_REASON_BAD_JSON)))
		return r;
	return mask_em_end(s);
}
