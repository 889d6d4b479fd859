/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The streaming masking engine.
 *
 * Contract (what a policy does to a body):
 * - Rules with fields only act on the whole value at each matching path; an object or array at
 *   a matching path means every scalar leaf under it. Rules with entities only (no fields, no
 *   headers) scan every JSON string value (never keys) and text/form bodies; the matched
 *   substring is replaced by action_apply()'s output (redact removes it). Rules with fields and
 *   entities scan only values under those paths, with DETECT_FIELD_CONTEXT (a bare 9-digit SSN
 *   counts when it is the whole value); a number under such a path is scanned too. Header-only
 *   rules belong to the HTTP layer. For one value, the first matching field rule in rule order
 *   wins (an ancestor's match counts), and field rules take precedence over entity-only rules.
 * - JSON output is always valid JSON. A modified string is re-escaped (minimal escapes, UTF-8
 *   kept); an unmodified one keeps its original bytes, as do whitespace, key order and number
 *   text. Numbers and true/false under a whole-value mask/replace/hash become strings, under
 *   redact null; a string under a whole-value redact becomes null; null is left alone. Escapes
 *   are decoded before matching and detection (a lone surrogate decodes to U+FFFD).
 * - Bounds (memory does not grow with the body): nesting depth MASK_MAX_DEPTH (deeper is
 *   bad_json); a string, number or key is held whole up to MASK_HOLD_MAX raw bytes. A longer
 *   string that is entity-scanned is streamed through the text scanner and always re-escaped;
 *   a longer value under a whole-value field rule, or a longer key/form parameter, is a
 *   value_too_large error handled per onError (for a JSON value: block, pass the value
 *   unchanged, or fallback = entity-scan that value with every entity of every rule; for a key
 *   or form parameter: the rest of the body is handled per onError).
 * - Output is byte-identical whatever the chunking of the input: every decision depends only
 *   on the bytes, and the text scanner holds back DETECT_MAX_MATCH_LEN + 1 bytes.
 * - Formats: see mask_format_for(); an empty Content-Type sniffs the first non-blank byte
 *   ('{' or '[' is JSON, else text). An empty or blank JSON body is fine. NDJSON is one
 *   document per line: a bad line is handled per onError up to its newline, and the next line
 *   is parsed again.
 * - onError when the body cannot be processed as its format: fallback = from the failing token
 *   on (bytes already emitted stay), entity scan of the raw text with every entity of every
 *   rule, outcome FALLBACK; pass = the rest unchanged, PASSED; block = mask_stream_write()
 *   returns -EPROTO, BLOCKED. Every error is counted in stats.errors[reason].
 * - Content-Encoding gzip/deflate is decoded, masked and re-encoded with the same encoding. A
 *   corrupt stream (bad_encoding) or an unknown encoding (unknown_encoding) cannot be scanned,
 *   so fallback blocks as block does; pass completes the re-encoded prefix (bad_encoding) and
 *   passes the undecodable rest unchanged.
 * - Mode observe: everything is detected and counted as in enforce, but the output is the
 *   input byte for byte and the stream is never blocked (the outcome still says BLOCKED, so
 *   metrics can tell what enforce would have done).
 * - A direction the policy does not cover passes unchanged.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "action.h"
#include "buf.h"
#include "codec.h"
#include "jsonscan.h"
#include "mask.h"
#include "textscan.h"

#define MASK_MAX_DEPTH 256
#define MASK_HOLD_MAX (64 * 1024)
#define MASK_OUT_FLUSH (64 * 1024)
/* Spans at least this long bypass the output buffer. */
#define MASK_OUT_DIRECT (16 * 1024)
/* Field paths longer than this never match (the matcher keeps its states in a u64). */
#define MASK_PATH_MAX_SEGS 62
/* Matches looked up at once in a held value; more go through the text scanner. */
#define MASK_SCAN_BATCH 16

enum jstate {
	J_VALUE,
	J_ARR_FIRST,
	J_OBJ_FIRST,
	J_KEY,
	J_COLON,
	J_AFTER,
	J_DONE,
	J_STR,
	J_NUM,
	J_LIT
};

/* How the current string or scalar is handled. */
enum vmode {
	V_COPY, /* copied through as it streams */
	V_WHOLE, /* held; a whole-value action applies */
	V_SCAN, /* held; entity scan, original bytes kept when nothing matches */
	V_STREAM, /* too long to hold: decoded through the text scanner, re-escaped */
	V_PASSRAW, /* too long under a whole-value rule with onError=pass: copied through */
};

enum errmode { E_NONE, E_FALLBACK, E_PASS };

struct jlevel {
	bool is_obj;
	bool alive; /* some field path may still match below */
	int rule; /* field rule inherited by every leaf below, -1 if none */
	uint32_t index;
	/*
	 * Members whose name no path names (elements, when no path has an index) all get the
	 * same path states: computed for the first one, kept in s->pg.memo for the others.
	 */
	bool memo_ok, memo_alive;
	int memo_rule;
};

/* A field path of a rule. */
struct fpath {
	const struct jpath *p;
	int rule;
};

/*
 * Field paths as bit masks over their segments, packed side by side in one u64 (as many as
 * fit, usually all): a path of n segments at offset o owns bits o..o+n, bit o+i = "segments
 * [0, i) consumed", bit o+n = "matched". A step shifts states by one bit and never out of a
 * path (its top bit is no segment), so one word steps every path it holds at once.
 */
struct fpword {
	uint64_t start; /* bit o of each path */
	uint64_t done; /* bit o+n of each path: the whole path matched */
	uint64_t below; /* bits o..o+n-1: something may still match below */
	uint64_t descend, any_key, any_idx; /* segments of each kind */
	uint64_t key, idx; /* named keys and indexes: compared one by one */
	/*
	 * The last step that compared no name or index, [0] for a member, [1] for an element: it
	 * depends on the state only, and records in an array repeat the same states.
	 */
	uint64_t memo_in[2], memo_out[2];
	const struct jpath_seg *seg[64]; /* the segment of each key/idx bit */
	int rule[64]; /* the rule of each done bit */
};

struct scan_ctx {
	struct mask_stream *s;
	bool escape; /* JSON string content */
	bool form; /* percent-encode */
	int rule; /* the one rule acting, or -1: by entity through map */
	const int *map; /* entity -> rule */
	bool modified;
	struct mm_buf *dst; /* NULL: the stream's output */
};

/*
 * What a stream derives from its policy (policy_init), with the scratch arrays whose size the
 * policy sets: mask_stream_reuse keeps it as a whole, so a field added here is kept too.
 */
struct mask_prog {
	uint32_t body_ents, all_ents;
	int ent_rule[MM_ENT__COUNT]; /* first entity-only rule per entity */
	int fb_rule[MM_ENT__COUNT]; /* first rule of any kind per entity (fallback) */

	struct fpath *fp;
	size_t n_fp;
	struct fpword *fw; /* the paths of fp (those of at most MASK_PATH_MAX_SEGS segments) */
	size_t n_fw; /* >= 1 when n_fp */
	uint64_t *states; /* (MASK_MAX_DEPTH + 1) * n_fw */
	uint64_t *memo; /* as many, after states: see jlevel.memo_ok */
	bool has_idx; /* some path has an [n] segment */
	uint64_t key_filter; /* fp_key_hash() bits of every named segment */
	bool fp_simple; /* every path is `$..name`: no states, one name compare per path */

	struct jlevel *lv; /* MASK_MAX_DEPTH + 1 levels, written on entry */
	struct action_ctx *actx; /* per rule: prepared hash keys (NULL: no hash rule) */
};

struct mask_stream {
	const struct policy *pol;
	char *content_type, *content_encoding;
	bool observe, bypass;
	enum mask_format fmt;
	enum codec_kind codec;
	bool wire_seen, wire_pass;
	struct codec_dec dec;
	struct codec_enc enc;
	bool enc_inited, enc_done;

	struct mm_buf out;
	mask_sink_fn sink;
	void *sink_ctx;
	int err;
	bool blocked, stopped;
	enum mask_outcome outcome;
	enum mm_reason reason;
	struct mask_stats st;

	struct mask_prog pg;

	/* JSON */
	enum jstate js;
	int depth;
	bool ndjson;
	int v_rule;
	enum vmode vm;
	bool str_key, str_dec;
	uint8_t esc; /* 0, 1 after '\\', 2..5 hex digits read + 2 */
	uint32_t uval, high;
	uint8_t num_st;
	const char *lit;
	uint8_t lit_i;
	bool holding;
	bool lazy; /* the string in view had no escape yet: decode it from the chunk when needed */
	const char *kview; /* the last key, decoded: in s->key or in the chunk (kview_chunk) */
	size_t kview_len;
	bool kview_chunk;
	struct mm_buf raw, dec_buf, key, tmp, act;
	uint32_t v_ents;
	unsigned v_flags;
	struct textscan ts_val;
	struct scan_ctx sc_val;

	/* error mode and text bodies */
	enum errmode em;
	bool em_line; /* NDJSON: the error ends at the next newline */
	struct textscan ts_body;
	struct scan_ctx sc_body;
	bool body_started;

	/* Content sniffing (sniff_end): the first bytes are held until the body's kind is known. */
	unsigned char sniff[8];
	uint8_t sniff_n;
	bool sniff_done;
	bool charset_bad; /* Content-Type names a charset the engine does not read (UTF-16/32) */
	bool multi_doc; /* sniffed JSON: documents may follow one another (NDJSON, concatenated) */
	bool sniff_text; /* labelled text, sniffed as JSON: a JSON error goes back to the text scan */
	enum mm_reason raw_reason; /* why a MASK_FMT_RAW body is handed to onError */
};

/* Buffers larger than this are not kept by mask_stream_reuse. */
#define MASK_REUSE_MAX_BUF (64 * 1024)

/* ---- output ---- */

static int out_flush(struct mask_stream *s)
{
	if (!s->out.len)
		return 0;
	int r = s->sink(s->sink_ctx, s->out.data, s->out.len);
	s->st.bytes_out += s->out.len;
	s->out.len = 0;
	return r;
}

/* Wire bytes (already encoded, or no encoding). */
static int out_wire(void *ctx, const char *p, size_t n)
{
	struct mask_stream *s = ctx;
	int r;
	if (!n)
		return 0;
	if (n >= MASK_OUT_DIRECT) {
		if ((r = out_flush(s)))
			return r;
		s->st.bytes_out += n;
		return s->sink(s->sink_ctx, p, n);
	}
	/* One allocation of a useful size rather than doubling up from 64 bytes. */
	if (!s->out.cap && (r = mm_buf_reserve(&s->out, MASK_OUT_FLUSH / 4)))
		return r;
	if ((r = mm_buf_append(&s->out, p, n)))
		return r;
	return s->out.len >= MASK_OUT_FLUSH ? out_flush(s) : 0;
}

/* The encoder mirrors the decoder (raw deflate or zlib-wrapped), known once output exists. */
static void enc_ready(struct mask_stream *s)
{
	if (s->enc_inited)
		return;
	codec_enc_init(&s->enc, s->codec, s->dec.raw);
	s->enc_inited = true;
}

/* Decoded output of the format processors. */
static int out_put(struct mask_stream *s, const char *p, size_t n)
{
	if (s->observe || s->bypass || !n)
		return 0;
	if (s->codec == CODEC_GZIP || s->codec == CODEC_DEFLATE) {
		enc_ready(s);
		return codec_enc_push(&s->enc, p, n, out_wire, s);
	}
	return out_wire(s, p, n);
}

/* First index >= i of '"', '\\' or a control byte, or n (16 or 8 bytes at a time). */
static inline size_t str_scan(const unsigned char *p, size_t i, size_t n)
{
	return jsonscan_string(p, i, n);
}

static const char hexd[] = "0123456789abcdef";

static int json_escape(struct mm_buf *b, const char *p, size_t n)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t i = 0;
	int r;
	while (i < n) {
		size_t j = str_scan(u, i, n);
		if ((r = mm_buf_append(b, p + i, j - i)))
			return r;
		if (j == n)
			break;
		unsigned char c = u[j];
		char e[6] = {'\\', 0};
		size_t el = 2;
		switch (c) {
		case '"':
			e[1] = '"';
			break;
		case '\\':
			e[1] = '\\';
			break;
		case '\n':
			e[1] = 'n';
			break;
		case '\r':
			e[1] = 'r';
			break;
		case '\t':
			e[1] = 't';
			break;
		case '\b':
			e[1] = 'b';
			break;
		case '\f':
			e[1] = 'f';
			break;
		default:
			memcpy(e, "\\u00", 4);
			e[4] = hexd[c >> 4];
			e[5] = hexd[c & 15];
			el = 6;
		}
		if ((r = mm_buf_append(b, e, el)))
			return r;
		i = j + 1;
	}
	return 0;
}

static int form_escape(struct mm_buf *b, const char *p, size_t n)
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
static int out_escaped(struct mask_stream *s, const char *p, size_t n, bool form)
{
	bool direct = s->codec != CODEC_GZIP && s->codec != CODEC_DEFLATE;
	struct mm_buf *d = direct ? &s->out : &s->tmp;
	int r;
	if (s->observe || s->bypass)
		return 0;
	if (!direct)
		mm_buf_reset(d);
	if ((r = form ? form_escape(d, p, n) : json_escape(d, p, n)))
		return r;
	if (!direct)
		return out_put(s, d->data, d->len);
	return s->out.len >= MASK_OUT_FLUSH ? out_flush(s) : 0;
}

/* ---- stats and errors ---- */

static void count(struct mask_stream *s, int rule, int entity)
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
static enum policy_on_error note_error(struct mask_stream *s, enum mm_reason reason)
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
static int apply_rule(struct mask_stream *s, int rule, int entity, const char *p, size_t n)
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

static int scan_emit(void *ctx, const char *p, size_t n, int entity)
{
	struct scan_ctx *c = ctx;
	struct mask_stream *s = c->s;
	const char *w = p;
	size_t wn = n;
	int r;

	if (entity >= 0) {
		int rule = c->rule >= 0 ? c->rule : c->map[entity];
		count(s, rule, entity);
		c->modified = true;
		if (s->observe || rule < 0)
			return 0;
		mm_buf_reset(&s->act);
		if ((r = apply_rule(s, rule, entity, p, n)))
			return r;
		w = s->act.data;
		wn = s->act.len;
	} else if (s->observe) {
		return 0;
	}
	if (!c->escape && !c->form)
		return c->dst ? mm_buf_append(c->dst, w, wn) : out_put(s, w, wn);
	if (!c->dst)
		return out_escaped(s, w, wn, c->form);
	return c->escape ? json_escape(c->dst, w, wn) : form_escape(c->dst, w, wn);
}

/* ---- field paths: an NFA per path, packed in u64 words of states per nesting level ---- */

/*
 * Pack path p of `rule` into the words w[0, *n), opening a new one when it does not fit; with w
 * NULL, only count the words.
 */
static void fw_add(struct fpword *w, size_t *n, unsigned *used, const struct jpath *p, int rule)
{
	if (p->n > MASK_PATH_MAX_SEGS)
		return; /* never matches */
	if (!*n || *used + p->n + 1 > 64) {
		(*n)++;
		*used = 0;
	}
	unsigned o = *used;
	*used += (unsigned)p->n + 1;
	if (!w)
		return;
	struct fpword *f = &w[*n - 1];
	f->start |= 1ull << o;
	f->done |= 1ull << (o + p->n);
	f->below |= ((1ull << p->n) - 1) << o;
	f->rule[o + p->n] = rule;
	for (size_t i = 0; i < p->n; i++) {
		uint64_t b = 1ull << (o + i);
		f->seg[o + i] = &p->segs[i];
		switch (p->segs[i].type) {
		case JPATH_DESCEND:
			f->descend |= b;
			break;
		case JPATH_ANY_KEY:
			f->any_key |= b;
			break;
		case JPATH_ANY_INDEX:
			f->any_idx |= b;
			break;
		case JPATH_KEY:
			f->key |= b;
			break;
		case JPATH_INDEX:
			f->idx |= b;
			break;
		}
	}
}

/* '..' matches zero levels too: a state before it is also a state after it. */
static uint64_t fp_closure(const struct fpword *f, uint64_t st)
{
	uint64_t prev;
	do {
		prev = st;
		st |= (st & f->descend) << 1;
	} while (st != prev);
	return st;
}

/* A 64-bit filter of the member names that paths name: most keys are in none. */
static unsigned fp_key_hash(const char *key, size_t len)
{
	return (unsigned)(len * 7 +
			  (len ? (unsigned char)key[0] * 3 + (unsigned char)key[len - 1] : 0)) &
	       63;
}

static uint64_t fp_step(struct fpword *f, uint64_t st, const char *key, size_t key_len,
			uint32_t index, bool named)
{
	uint64_t ns = st & f->descend, cand;
	if (key) {
		ns |= (st & f->any_key) << 1;
		cand = named ? st & f->key : 0;
	} else {
		ns |= (st & f->any_idx) << 1;
		cand = st & f->idx;
	}
	if (!cand) {
		int w = !key;
		if (f->memo_in[w] != st) {
			f->memo_in[w] = st;
			f->memo_out[w] = ns ? fp_closure(f, ns) : 0;
		}
		return f->memo_out[w];
	}
	while (cand) {
		int i = __builtin_ctzll(cand);
		const struct jpath_seg *g = f->seg[i];
		cand &= cand - 1;
		if (key ? g->key_len == key_len && (!key_len || g->key[0] == key[0]) &&
				    !memcmp(g->key, key, key_len)
			: g->index == index)
			ns |= 1ull << (i + 1);
	}
	return ns ? fp_closure(f, ns) : 0;
}

/* The rule and liveness that the states `cur` of the current value give. */
static void fp_result(const struct mask_stream *s, const uint64_t *cur, int *rule, bool *alive)
{
	for (size_t k = 0; k < s->pg.n_fw; k++) {
		const struct fpword *f = &s->pg.fw[k];
		uint64_t m = cur[k] & f->done;
		while (m) {
			int r = f->rule[__builtin_ctzll(m)];
			m &= m - 1;
			if (*rule < 0 || r < *rule)
				*rule = r;
		}
		if (cur[k] & f->below)
			*alive = true;
	}
}

/*
 * Compute the state of the value starting at the current depth (member `key` of the enclosing
 * object, or element `index` of the enclosing array), its field rule and whether any path may
 * match below it.
 */
static void fp_value(struct mask_stream *s, const char *key, size_t key_len, uint32_t index,
		     int *rule, bool *alive)
{
	int d = s->depth;
	int inherited = d ? s->pg.lv[d - 1].rule : -1;
	*rule = inherited;
	*alive = false;
	if (!s->pg.n_fp)
		return;
	if (s->pg.fp_simple) {
		/* `$..name` may match at any depth below the root, and only a member called name. */
		*alive = true;
		if (!d || !key || !(s->pg.key_filter >> fp_key_hash(key, key_len) & 1))
			return;
		for (size_t k = 0; k < s->pg.n_fp; k++) {
			const struct jpath_seg *g = &s->pg.fp[k].p->segs[1];
			if (g->key_len == key_len && !memcmp(g->key, key, key_len) &&
			    (*rule < 0 || s->pg.fp[k].rule < *rule))
				*rule = s->pg.fp[k].rule;
		}
		return;
	}
	size_t nw = s->pg.n_fw;
	uint64_t *cur = s->pg.states + (size_t)d * nw;
	if (d == 0) {
		for (size_t k = 0; k < nw; k++)
			cur[k] = fp_closure(&s->pg.fw[k], s->pg.fw[k].start);
	} else if (!s->pg.lv[d - 1].alive) {
		/* Nothing reads the states of a level under a dead one: left as they are. */
		return;
	} else {
		const uint64_t *par = cur - nw;
		struct jlevel *pl = &s->pg.lv[d - 1];
		bool named =
			key ? s->pg.key_filter >> fp_key_hash(key, key_len) & 1 : s->pg.has_idx;
		uint64_t *memo = s->pg.memo + (size_t)d * nw;
		if (!named && pl->memo_ok) {
			memcpy(cur, memo, nw * sizeof(*cur));
			*rule = pl->memo_rule;
			*alive = pl->memo_alive;
			return;
		}
		for (size_t k = 0; k < nw; k++)
			cur[k] = par[k] ? fp_step(&s->pg.fw[k], par[k], key, key_len, index,
						  !key || named)
					: 0;
		fp_result(s, cur, rule, alive);
		if (!named) {
			memcpy(memo, cur, nw * sizeof(*cur));
			pl->memo_ok = true;
			pl->memo_rule = *rule;
			pl->memo_alive = *alive;
		}
		return;
	}
	fp_result(s, cur, rule, alive);
}

/* ---- error mode: fallback scan or pass over the raw rest ---- */

static void em_begin(struct mask_stream *s, enum mm_reason reason, bool line)
{
	enum policy_on_error oe = note_error(s, reason);
	s->em_line = line;
	if (oe == POLICY_ONERR_PASS) {
		s->em = E_PASS;
	} else {
		s->em = E_FALLBACK;
		s->sc_body = (struct scan_ctx){.s = s, .rule = -1, .map = s->pg.fb_rule};
		textscan_begin(&s->ts_body, s->pg.all_ents, 0, scan_emit, &s->sc_body);
	}
}

static int em_put(struct mask_stream *s, const char *p, size_t n)
{
	if (s->blocked || s->stopped || !n)
		return 0;
	if (s->em == E_PASS)
		return out_put(s, p, n);
	return textscan_push(&s->ts_body, p, n);
}

static int em_end(struct mask_stream *s)
{
	int r = 0;
	if (s->em == E_FALLBACK && !s->blocked && !s->stopped)
		r = textscan_finish(&s->ts_body);
	s->em = E_NONE;
	return r;
}

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

static bool val_has_match(struct mask_stream *s, const char *p, size_t n)
{
	struct detect_match m;
	return s->v_ents && detect_scan(p, n, 0, s->v_ents, s->v_flags, &m, 1) > 0;
}

/* Scan decoded text, write the quoted, re-escaped result to the output. */
static int emit_scanned_string(struct mask_stream *s, const char *p, size_t n)
{
	int r;
	s->sc_val.dst = NULL;
	s->sc_val.escape = true;
	textscan_begin(&s->ts_val, s->v_ents, s->v_flags, scan_emit, &s->sc_val);
	if ((r = out_put(s, "\"", 1)) || (r = textscan_push(&s->ts_val, p, n)) ||
	    (r = textscan_finish(&s->ts_val)))
		return r;
	return out_put(s, "\"", 1);
}

/* A value over MASK_HOLD_MAX under a whole-value rule. */
static int too_large(struct mask_stream *s, bool is_string)
{
	enum policy_on_error oe = note_error(s, MM_REASON_VALUE_TOO_LARGE);
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
		r = out_put(s, raw, rawn);
	} else {
		s->vm = V_STREAM;
		s->sc_val.dst = NULL;
		s->sc_val.escape = true;
		textscan_begin(&s->ts_val, s->v_ents, s->v_flags, scan_emit, &s->sc_val);
		if (!(r = out_put(s, "\"", 1)))
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
	count(s, s->v_rule, -1);
	if (s->observe)
		return 0;
	if (a->type == POLICY_ACTION_REDACT)
		return out_put(s, "null", 4);
	mm_buf_reset(&s->act);
	if ((r = apply_rule(s, s->v_rule, -1, p, n)) || (r = out_put(s, "\"", 1)) ||
	    (r = out_escaped(s, s->act.data, s->act.len, false)))
		return r;
	return out_put(s, "\"", 1);
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
		if ((r = out_put(s, pre, pre_n)))
			return r;
		if (is_string) {
			if ((r = go_stream(s, raw, rawn, d, dn)) || s->blocked || s->vm != V_STREAM)
				return r;
			if ((r = textscan_finish(&s->ts_val)))
				return r;
			return out_put(s, "\"", 1);
		}
		if ((r = too_large(s, false)) || s->blocked)
			return r;
		return out_put(s, raw, rawn);
	}
	if (s->vm == V_WHOLE) {
		if ((r = out_put(s, pre, pre_n)))
			return r;
		return whole_action(s, d, dn);
	}
	struct detect_match m[MASK_SCAN_BATCH];
	size_t k = s->v_ents ? detect_scan(d, dn, 0, s->v_ents, s->v_flags, m, MASK_SCAN_BATCH) : 0;
	if (!k) {
		if (in_chunk)
			return 1;
		if ((r = out_put(s, pre, pre_n)))
			return r;
		return out_put(s, raw, rawn);
	}
	if ((r = out_put(s, pre, pre_n)))
		return r;
	if (k == MASK_SCAN_BATCH)
		return emit_scanned_string(s, d, dn);
	/* All matches are known: the same as the text scanner's one pass, without its copy. */
	size_t pos = 0;
	s->sc_val.dst = NULL;
	s->sc_val.escape = true;
	if ((r = out_put(s, "\"", 1)))
		return r;
	for (size_t j = 0; j < k; j++) {
		if (m[j].off > pos && (r = scan_emit(&s->sc_val, d + pos, m[j].off - pos, -1)))
			return r;
		if ((r = scan_emit(&s->sc_val, d + m[j].off, m[j].len, (int)m[j].entity)))
			return r;
		pos = m[j].off + m[j].len;
	}
	if (dn > pos && (r = scan_emit(&s->sc_val, d + pos, dn - pos, -1)))
		return r;
	return out_put(s, "\"", 1);
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

static int json_reset_doc(struct mask_stream *s)
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
	if (upto > emit_from && (r = out_put(s, p + emit_from, upto - emit_from)))
		return r;
	em_begin(s, reason, s->ndjson);
	if (s->holding) {
		if ((r = mm_buf_append(&s->raw, p + hold_from, i - hold_from)))
			return r;
		if ((r = em_put(s, s->raw.data, s->raw.len)))
			return r;
	}
	mm_buf_reset(&s->raw);
	s->holding = false;
	s->lazy = false;
	s->kview_chunk = false;
	return 0;
}

static bool is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
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
	fp_value(s, key, key_len, index, &s->v_rule, &alive);
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
		return em_put(s, p + i, n - i);
	size_t k = (size_t)(nl - p);
	if ((r = em_put(s, p + i, k - i)) || (r = em_end(s)))
		return r;
	if (!s->blocked && !s->stopped) {
		json_reset_doc(s);
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
static int json_feed(struct mask_stream *s, const char *cp, size_t n)
{
	const unsigned char *p = (const unsigned char *)cp;
	size_t i = 0, emit_from = 0, hold_from = 0, tok = 0;
	bool hold;
	int r;

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
				json_reset_doc(s); /* the next document starts at c */
				break;
			}
			if (!is_ws(c))
				goto bad;
			i++;
			break;
		case J_STR:
		in_string : {
			if (s->esc == 0) {
				size_t j = str_scan(p, i, n);
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
					    (r = out_put(s, "\"", 1)))
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
		    (r = out_put(s, cp + emit_from, hold_from - emit_from)))
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
			r = out_put(s, s->raw.data, s->raw.len);
			mm_buf_reset(&s->raw);
			return r;
		}
		return 0;
	}
	return n > emit_from ? out_put(s, cp + emit_from, n - emit_from) : 0;
}

static int json_finish(struct mask_stream *s)
{
	int r;
	if (s->em != E_NONE)
		return em_end(s);
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
	return em_end(s);
}

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
		return out_put(s, p, n);
	size_t name_len = (size_t)(eq - p);
	const char *v = eq + 1;
	size_t vn = n - name_len - 1;
	mm_buf_reset(&s->dec_buf);
	mm_buf_reset(&s->key);
	if (s->pg.n_fp) {
		if ((r = pct_decode(&s->key, p, name_len)))
			return r;
		s->depth = 0;
		fp_value(s, NULL, 0, 0, &rule, &alive);
		s->pg.lv[0] = (struct jlevel){.is_obj = true, .alive = alive, .rule = rule};
		s->depth = 1;
		fp_value(s, s->key.data ? s->key.data : "", s->key.len, 0, &rule, &alive);
		s->depth = 0;
	}
	if ((r = pct_decode(&s->dec_buf, v, vn)))
		return r;
	if (rule >= 0 && !s->pol->rules[rule].entities) {
		const struct policy_action *a = &s->pol->rules[rule].action;
		count(s, rule, -1);
		if (s->observe)
			return 0;
		mm_buf_reset(&s->tmp);
		if ((r = mm_buf_append(&s->tmp, p, name_len + 1)))
			return r;
		if (a->type != POLICY_ACTION_REDACT) {
			mm_buf_reset(&s->act);
			if ((r = apply_rule(s, rule, -1, s->dec_buf.data, s->dec_buf.len)) ||
			    (r = form_escape(&s->tmp, s->act.data, s->act.len)))
				return r;
		}
		return out_put(s, s->tmp.data, s->tmp.len);
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
	if (!val_has_match(s, s->dec_buf.data, s->dec_buf.len))
		return out_put(s, p, n);
	mm_buf_reset(&s->tmp);
	if ((r = mm_buf_append(&s->tmp, p, name_len + 1)))
		return r;
	s->sc_val.form = true;
	s->sc_val.dst = &s->tmp;
	textscan_begin(&s->ts_val, s->v_ents, s->v_flags, scan_emit, &s->sc_val);
	if ((r = textscan_push(&s->ts_val, s->dec_buf.data, s->dec_buf.len)) ||
	    (r = textscan_finish(&s->ts_val)))
		return r;
	return out_put(s, s->tmp.data, s->tmp.len);
}

static int form_feed(struct mask_stream *s, const char *p, size_t n)
{
	int r;
	if (s->em != E_NONE)
		return em_put(s, p, n);
	while (n) {
		const char *amp = memchr(p, '&', n);
		size_t k = amp ? (size_t)(amp - p) : n;
		if ((r = mm_buf_append(&s->raw, p, k)))
			return r;
		if (s->raw.len > MASK_HOLD_MAX) {
			em_begin(s, MM_REASON_VALUE_TOO_LARGE, false);
			if ((r = em_put(s, s->raw.data, s->raw.len)))
				return r;
			mm_buf_reset(&s->raw);
			return em_put(s, p + k, n - k);
		}
		if (!amp)
			return 0;
		if ((r = form_param(s)) || (r = out_put(s, "&", 1)))
			return r;
		mm_buf_reset(&s->raw);
		p += k + 1;
		n -= k + 1;
	}
	return 0;
}

static int form_finish(struct mask_stream *s)
{
	if (s->em != E_NONE)
		return em_end(s);
	int r = s->raw.len ? form_param(s) : 0;
	mm_buf_reset(&s->raw);
	return r;
}

/* ---- format dispatch ---- */

static int fmt_start(struct mask_stream *s)
{
	s->body_started = true;
	switch (s->fmt) {
	case MASK_FMT_NDJSON:
		s->ndjson = true;
		/* fall through */
	case MASK_FMT_JSON:
		json_reset_doc(s);
		break;
	case MASK_FMT_TEXT:
		s->sc_body = (struct scan_ctx){.s = s, .rule = -1, .map = s->pg.ent_rule};
		textscan_begin(&s->ts_body, s->pg.body_ents, 0, scan_emit, &s->sc_body);
		break;
	case MASK_FMT_RAW:
		em_begin(s, s->raw_reason ? s->raw_reason : MM_REASON_UNKNOWN_CONTENT_TYPE, false);
		break;
	default:
		break;
	}
	return 0;
}

/*
 * Whether the first bytes are text in UTF-16 or UTF-32: a byte-order mark, or ASCII
 * characters with NUL bytes between them in the pattern of those encodings.
 */
static bool wide_text(const unsigned char *b, size_t k)
{
	if (k >= 2 && ((b[0] == 0xff && b[1] == 0xfe) || (b[0] == 0xfe && b[1] == 0xff)))
		return true;
	if (k >= 4 && !b[0] && !b[1] && b[2] == 0xfe && b[3] == 0xff)
		return true;
	if (k < 4)
		return false;
	unsigned nul = 0, text = 0;
	for (size_t i = 0; i < 4; i++) {
		if (!b[i])
			nul |= 1u << i;
		else if ((b[i] >= 0x20 && b[i] < 0x7f) || (b[i] >= '\t' && b[i] <= '\r'))
			text |= 1u << i;
	}
	/* LE/BE UTF-16, LE/BE UTF-32 */
	return (nul == 0xa && text == 0x5) || (nul == 0x5 && text == 0xa) ||
	       (nul == 0xe && text == 0x1) || (nul == 0x7 && text == 0x8);
}

static int fmt_body(struct mask_stream *s, const char *p, size_t n);

/*
 * The first bytes of the decoded body are in: a body in a charset the engine does not read
 * follows onError (fallback means block); a UTF-8 byte-order mark is passed on and skipped;
 * then the held bytes go through as the body's start.
 */
static int sniff_end(struct mask_stream *s)
{
	const char *b = (const char *)s->sniff;
	size_t k = s->sniff_n;
	int r;
	s->sniff_done = true;
	if (s->charset_bad || wide_text(s->sniff, k)) {
		s->fmt = MASK_FMT_RAW;
		s->raw_reason = MM_REASON_BAD_CHARSET;
	} else if (k >= 3 && !memcmp(b, "\xef\xbb\xbf", 3)) {
		s->st.bytes_scanned += 3;
		if ((r = out_put(s, b, 3)))
			return r;
		b += 3;
		k -= 3;
	}
	return fmt_body(s, b, k);
}

static int fmt_feed(struct mask_stream *s, const char *p, size_t n)
{
	if (s->blocked || s->stopped || !n)
		return 0;
	if (!s->sniff_done) {
		size_t k = sizeof(s->sniff) - s->sniff_n;
		k = k < n ? k : n;
		memcpy(s->sniff + s->sniff_n, p, k);
		s->sniff_n += (uint8_t)k;
		if (s->sniff_n < sizeof(s->sniff))
			return 0;
		int r = sniff_end(s);
		if (r || s->blocked || s->stopped)
			return r;
		p += k;
		n -= k;
	}
	return fmt_body(s, p, n);
}

/*
 * Body bytes after sniffing. A body with no label is JSON when it starts like JSON, else
 * text; one labelled text (text/any) or with a label the engine does not know that starts like JSON
 * is read as JSON (documents one after another allowed), so field rules apply whatever the
 * label says (docs/policy.md lists what is sniffed).
 */
static int fmt_body(struct mask_stream *s, const char *p, size_t n)
{
	int r;
	if (s->blocked || s->stopped || !n)
		return 0;
	s->st.bytes_scanned += n;
	if (!s->body_started && (s->fmt == MASK_FMT_AUTO || s->fmt == MASK_FMT_TEXT ||
				 (s->fmt == MASK_FMT_RAW && !s->raw_reason))) {
		size_t i = 0;
		while (i < n && is_ws((unsigned char)p[i]))
			i++;
		if ((r = out_put(s, p, i)))
			return r;
		if (i == n)
			return 0;
		bool json = p[i] == '{' || p[i] == '[';
		if (s->fmt == MASK_FMT_AUTO) {
			s->fmt = json ? MASK_FMT_JSON : MASK_FMT_TEXT;
		} else if (json) {
			s->sniff_text = s->fmt == MASK_FMT_TEXT;
			s->fmt = MASK_FMT_JSON;
			s->multi_doc = true;
		}
		p += i;
		n -= i;
	}
	if (!s->body_started)
		fmt_start(s);
	switch (s->fmt) {
	case MASK_FMT_JSON:
	case MASK_FMT_NDJSON:
		return json_feed(s, p, n);
	case MASK_FMT_TEXT:
		return textscan_push(&s->ts_body, p, n);
	case MASK_FMT_FORM:
		return form_feed(s, p, n);
	default:
		return em_put(s, p, n);
	}
}

static int fmt_finish(struct mask_stream *s)
{
	if (!s->sniff_done && !s->blocked && !s->stopped) {
		int r = sniff_end(s);
		if (r)
			return r;
	}
	if (s->blocked || s->stopped || !s->body_started)
		return 0;
	switch (s->fmt) {
	case MASK_FMT_JSON:
	case MASK_FMT_NDJSON:
		return json_finish(s);
	case MASK_FMT_TEXT:
		return textscan_finish(&s->ts_body);
	case MASK_FMT_FORM:
		return form_finish(s);
	default:
		return em_end(s);
	}
}

static int dec_out(void *ctx, const char *p, size_t n)
{
	return fmt_feed(ctx, p, n);
}

/* ---- public API ---- */

static bool ct_eq(const char *a, size_t n, const char *b)
{
	return strlen(b) == n && !strncasecmp(a, b, n);
}

enum mask_format mask_format_for(const char *ct)
{
	if (!ct)
		return MASK_FMT_AUTO;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	size_t n = strcspn(ct, ";");
	while (n && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	if (!n)
		return MASK_FMT_AUTO;
	if (ct_eq(ct, n, "application/json") || (n > 17 && !strncasecmp(ct, "application/", 12) &&
						 !strncasecmp(ct + n - 5, "+json", 5)))
		return MASK_FMT_JSON;
	if (ct_eq(ct, n, "application/x-ndjson") || ct_eq(ct, n, "application/ndjson") ||
	    ct_eq(ct, n, "application/jsonl") || ct_eq(ct, n, "application/x-jsonl"))
		return MASK_FMT_NDJSON;
	if (n > 5 && !strncasecmp(ct, "text/", 5))
		return MASK_FMT_TEXT;
	if (ct_eq(ct, n, "application/x-www-form-urlencoded"))
		return MASK_FMT_FORM;
	return MASK_FMT_RAW;
}

/* Whether a Content-Type's charset parameter names UTF-16 or UTF-32 (UCS-2/4). */
static bool wide_charset(const char *ct)
{
	for (const char *q = ct; q && (q = strchr(q, ';'));) {
		q++;
		while (*q == ' ' || *q == '\t')
			q++;
		if (strncasecmp(q, "charset=", 8))
			continue;
		q += 8;
		if (*q == '"')
			q++;
		return !strncasecmp(q, "utf-16", 6) || !strncasecmp(q, "utf-32", 6) ||
		       !strncasecmp(q, "utf16", 5) || !strncasecmp(q, "utf32", 5) ||
		       !strncasecmp(q, "ucs-2", 5) || !strncasecmp(q, "ucs-4", 5) ||
		       !strncasecmp(q, "unicode", 7);
	}
	return false;
}

/* What a stream takes from the message it masks (the rest comes from its policy). */
static int message_init(struct mask_stream *s, const struct mask_opts *o)
{
	const struct policy *pol = o->policy;
	s->observe = pol->mode == POLICY_MODE_OBSERVE;
	s->bypass = o->direction && pol->directions && !(o->direction & pol->directions);
	if ((o->content_type && !(s->content_type = strdup(o->content_type))) ||
	    (o->content_encoding && !(s->content_encoding = strdup(o->content_encoding))))
		return -ENOMEM;
	s->fmt = o->format != MASK_FMT_AUTO ? o->format : mask_format_for(o->content_type);
	s->charset_bad = wide_charset(o->content_type);
	s->codec = codec_kind_for(o->content_encoding);
	if (s->codec == CODEC_GZIP || s->codec == CODEC_DEFLATE)
		codec_dec_init(&s->dec, s->codec);
	return 0;
}

/* What a stream derives from its policy: kept by mask_stream_reuse. */
static int policy_init(struct mask_stream *s, const struct policy *pol)
{
	s->pol = pol;
	s->st.n_rules = pol->n_rules;
	if (!(s->pg.lv = malloc((MASK_MAX_DEPTH + 1) * sizeof(*s->pg.lv))))
		return -ENOMEM;
	if (pol->n_rules && !(s->st.rules = calloc(pol->n_rules, sizeof(*s->st.rules))))
		return -ENOMEM;
	for (int e = 0; e < MM_ENT__COUNT; e++)
		s->pg.ent_rule[e] = s->pg.fb_rule[e] = -1;
	size_t n_fp = 0;
	for (size_t k = 0; k < pol->n_rules; k++) {
		const struct policy_rule *ru = &pol->rules[k];
		if (ru->n_fields)
			n_fp += ru->n_fields;
		s->pg.all_ents |= ru->entities;
		for (int e = 0; e < MM_ENT__COUNT; e++) {
			if (!(ru->entities & MM_ENT_BIT(e)))
				continue;
			if (s->pg.fb_rule[e] < 0)
				s->pg.fb_rule[e] = (int)k;
			if (!ru->n_fields && !ru->n_headers && s->pg.ent_rule[e] < 0)
				s->pg.ent_rule[e] = (int)k;
		}
		if (!ru->n_fields && !ru->n_headers)
			s->pg.body_ents |= ru->entities;
	}
	for (size_t k = 0; k < pol->n_rules && !s->pg.actx; k++)
		if (action_keyed(&pol->rules[k].action) &&
		    !(s->pg.actx = calloc(pol->n_rules, sizeof(*s->pg.actx))))
			return -ENOMEM;
	if (n_fp) {
		if (!(s->pg.fp = calloc(n_fp, sizeof(*s->pg.fp))))
			return -ENOMEM;
		for (size_t k = 0; k < pol->n_rules; k++)
			for (size_t f = 0; f < pol->rules[k].n_fields; f++)
				s->pg.fp[s->pg.n_fp++] = (struct fpath){
					.p = &pol->rules[k].fields[f], .rule = (int)k};
		s->pg.fp_simple = true;
		for (size_t k = 0; k < s->pg.n_fp; k++)
			s->pg.fp_simple &= s->pg.fp[k].p->n == 2 &&
					   s->pg.fp[k].p->segs[0].type == JPATH_DESCEND &&
					   s->pg.fp[k].p->segs[1].type == JPATH_KEY;
		/* Written for each level as it is entered: no need to zero. */
		if (!s->pg.fp_simple) {
			unsigned used = 0;
			size_t nw = 0;
			for (size_t k = 0; k < s->pg.n_fp; k++)
				fw_add(NULL, &nw, &used, s->pg.fp[k].p, s->pg.fp[k].rule);
			/* one empty word when no path can match */
			if (!(s->pg.fw = calloc(nw ? nw : 1, sizeof(*s->pg.fw))))
				return -ENOMEM;
			used = 0;
			for (size_t k = 0; k < s->pg.n_fp; k++)
				fw_add(s->pg.fw, &s->pg.n_fw, &used, s->pg.fp[k].p,
				       s->pg.fp[k].rule);
			if (!s->pg.n_fw)
				s->pg.n_fw = 1;
			size_t per = (size_t)(MASK_MAX_DEPTH + 1) * s->pg.n_fw;
			if (!(s->pg.states = malloc(2 * per * sizeof(*s->pg.states))))
				return -ENOMEM;
			s->pg.memo = s->pg.states + per;
			for (size_t k = 0; k < s->pg.n_fw; k++)
				s->pg.has_idx |= s->pg.fw[k].idx != 0;
		}
		for (size_t k = 0; k < s->pg.n_fp; k++)
			for (size_t g = 0; g < s->pg.fp[k].p->n; g++)
				if (s->pg.fp[k].p->segs[g].type == JPATH_KEY)
					s->pg.key_filter |=
						1ull << fp_key_hash(s->pg.fp[k].p->segs[g].key,
								    s->pg.fp[k].p->segs[g].key_len);
	}
	return 0;
}

struct mask_stream *mask_stream_new(const struct mask_opts *o)
{
	if (!o || !o->policy) {
		errno = EINVAL;
		return NULL;
	}
	struct mask_stream *s = calloc(1, sizeof(*s));
	if (!s || policy_init(s, o->policy) || message_init(s, o)) {
		mask_stream_free(s);
		errno = ENOMEM;
		return NULL;
	}
	return s;
}

/* Buffers a reused stream keeps: emptied, and freed when a message made them large. */
static void keep_buf(struct mm_buf *dst, struct mm_buf *src)
{
	if (src->cap > MASK_REUSE_MAX_BUF)
		mm_buf_free(src);
	*dst = *src;
	dst->len = 0;
}

int mask_stream_reuse(struct mask_stream *s, const struct mask_opts *o)
{
	if (!s || !o || !o->policy || o->policy != s->pol)
		return -EINVAL;
	/* In place: zlib refuses to end a stream whose state was moved. */
	free(s->content_type);
	free(s->content_encoding);
	codec_dec_free(&s->dec);
	codec_enc_free(&s->enc);
	struct mask_stream k = *s;
	/* Everything per message starts from zero, as in a new stream. */
	memset(s, 0, sizeof(*s));
	s->pol = k.pol;
	s->st.n_rules = k.st.n_rules;
	s->st.rules = k.st.rules;
	if (s->st.rules)
		memset(s->st.rules, 0, s->st.n_rules * sizeof(*s->st.rules));
	s->pg = k.pg; /* keyed HMAC contexts too: the same policy, the same keys */
	keep_buf(&s->out, &k.out);
	keep_buf(&s->raw, &k.raw);
	keep_buf(&s->dec_buf, &k.dec_buf);
	keep_buf(&s->key, &k.key);
	keep_buf(&s->tmp, &k.tmp);
	keep_buf(&s->act, &k.act);
	keep_buf(&s->ts_val.win, &k.ts_val.win);
	keep_buf(&s->ts_body.win, &k.ts_body.win);
	return message_init(s, o);
}

static int wire_feed(struct mask_stream *s, const char *p, size_t n)
{
	int r;
	if (s->wire_pass)
		return out_wire(s, p, n);
	if (s->bypass)
		return s->observe ? 0 : out_wire(s, p, n);
	if (n && !s->wire_seen) {
		s->wire_seen = true;
		if (s->codec == CODEC_UNKNOWN) {
			if (note_error(s, MM_REASON_UNKNOWN_ENCODING) != POLICY_ONERR_PASS) {
				if (!s->observe)
					s->blocked = true;
				s->stopped = true;
				return 0;
			}
			s->wire_pass = true;
			return s->observe ? 0 : out_wire(s, p, n);
		}
	}
	if (s->codec != CODEC_GZIP && s->codec != CODEC_DEFLATE)
		return fmt_feed(s, p, n);
	size_t bad = 0;
	r = codec_dec_push(&s->dec, p, n, dec_out, s, &bad);
	if (r != -EBADMSG)
		return r;
	if (note_error(s, MM_REASON_BAD_ENCODING) != POLICY_ONERR_PASS) {
		s->stopped = true;
		return 0;
	}
	/* pass: complete the re-encoded prefix, then the undecodable rest as it came. */
	s->stopped = true;
	s->wire_pass = true;
	if (!s->observe) {
		s->enc_done = true;
		enc_ready(s);
		if ((r = codec_enc_finish(&s->enc, out_wire, s)))
			return r;
		return out_wire(s, p + bad, n - bad);
	}
	return 0;
}

int mask_stream_write(struct mask_stream *s, const void *data, size_t len, mask_sink_fn sink,
		      void *ctx)
{
	int r;
	if (s->err)
		return s->err;
	if (s->blocked)
		return -EPROTO;
	s->sink = sink;
	s->sink_ctx = ctx;
	s->st.bytes_in += len;
	if (s->observe && len) {
		s->st.bytes_out += len;
		if ((r = sink(ctx, data, len)))
			return s->err = r;
	}
	if (s->stopped && !s->wire_pass)
		return 0;
	r = wire_feed(s, data, len);
	if (!r && s->blocked)
		r = -EPROTO;
	if (!r)
		r = out_flush(s);
	else
		s->out.len = 0;
	if (r)
		s->err = r;
	return r;
}

int mask_stream_finish(struct mask_stream *s, mask_sink_fn sink, void *ctx)
{
	int r = 0;
	if (s->err)
		return s->err;
	if (s->blocked)
		return -EPROTO;
	s->sink = sink;
	s->sink_ctx = ctx;
	bool coded = s->codec == CODEC_GZIP || s->codec == CODEC_DEFLATE;
	if (coded && !s->stopped && !s->bypass &&
	    codec_dec_finish(&s->dec, dec_out, s) == -EBADMSG) {
		if (note_error(s, MM_REASON_BAD_ENCODING) != POLICY_ONERR_PASS)
			s->stopped = true;
	}
	if (!s->stopped && !s->bypass)
		r = fmt_finish(s);
	if (!r && s->blocked)
		r = -EPROTO;
	if (!r && coded && s->wire_seen && !s->enc_done && !s->observe && !s->bypass &&
	    !s->wire_pass) {
		s->enc_done = true;
		enc_ready(s);
		r = codec_enc_finish(&s->enc, out_wire, s);
	}
	if (!r)
		r = out_flush(s);
	if (r)
		s->err = r;
	return r;
}

const struct mask_stats *mask_stream_stats(const struct mask_stream *s)
{
	return &s->st;
}

enum mask_outcome mask_stream_outcome(const struct mask_stream *s)
{
	return s->outcome;
}

enum mm_reason mask_stream_reason(const struct mask_stream *s)
{
	return s->outcome == MASK_OUTCOME_MASKED ? MM_REASON_NONE : s->reason;
}

void mask_stream_free(struct mask_stream *s)
{
	if (!s)
		return;
	free(s->content_type);
	free(s->content_encoding);
	codec_dec_free(&s->dec);
	codec_enc_free(&s->enc);
	mm_buf_free(&s->out);
	mm_buf_free(&s->raw);
	mm_buf_free(&s->dec_buf);
	mm_buf_free(&s->key);
	mm_buf_free(&s->tmp);
	mm_buf_free(&s->act);
	textscan_free(&s->ts_val);
	textscan_free(&s->ts_body);
	for (size_t k = 0; s->pg.actx && k < s->pol->n_rules; k++)
		action_ctx_free(&s->pg.actx[k]);
	free(s->pg.actx);
	free(s->st.rules);
	free(s->pg.fp);
	free(s->pg.fw);
	free(s->pg.states);
	free(s->pg.lv);
	free(s);
}

static int buf_sink(void *ctx, const char *p, size_t n)
{
	return mm_buf_append(ctx, p, n);
}

int mask_buffer(const struct mask_opts *o, const void *in, size_t len, struct mm_buf *out,
		struct mask_stats *stats)
{
	struct mask_stream *s = mask_stream_new(o);
	if (!s)
		return -errno;
	int r = mask_stream_write(s, in, len, buf_sink, out);
	if (!r)
		r = mask_stream_finish(s, buf_sink, out);
	if (stats) {
		*stats = s->st;
		stats->rules = NULL;
		if (s->st.n_rules) {
			stats->rules = malloc(s->st.n_rules * sizeof(*stats->rules));
			if (stats->rules)
				memcpy(stats->rules, s->st.rules,
				       s->st.n_rules * sizeof(*stats->rules));
			else
				stats->n_rules = 0;
		}
	}
	mask_stream_free(s);
	return r;
}

const char *mask_outcome_name(enum mask_outcome o)
{
	static const char *const names[] = {"masked", "fallback", "passed", "blocked"};
	return (unsigned)o < sizeof(names) / sizeof(names[0]) ? names[o] : "unknown";
}
