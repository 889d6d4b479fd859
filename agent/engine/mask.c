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
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mask_internal.h"

/* ---- format dispatch ---- */

static int fmt_start(struct mask_stream *s)
{
	s->body_started = true;
	switch (s->fmt) {
	case MASK_FMT_NDJSON:
		s->ndjson = true;
		/* fall through */
	case MASK_FMT_JSON:
		mask_json_reset_doc(s);
		break;
	case MASK_FMT_TEXT:
		s->sc_body = (struct scan_ctx){.s = s, .rule = -1, .map = s->pg.ent_rule};
		textscan_begin(&s->ts_body, s->pg.body_ents, 0, mask_scan_emit, &s->sc_body);
		break;
	case MASK_FMT_RAW:
		mask_em_begin(s, s->raw_reason ? s->raw_reason : MM_REASON_UNKNOWN_CONTENT_TYPE,
			      false);
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
		if ((r = mask_out_put(s, b, 3)))
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
		if ((r = mask_out_put(s, p, i)))
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
		return mask_json_feed(s, p, n);
	case MASK_FMT_TEXT:
		return textscan_push(&s->ts_body, p, n);
	case MASK_FMT_FORM:
		return mask_form_feed(s, p, n);
	default:
		return mask_em_put(s, p, n);
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
		return mask_json_finish(s);
	case MASK_FMT_TEXT:
		return textscan_finish(&s->ts_body);
	case MASK_FMT_FORM:
		return mask_form_finish(s);
	default:
		return mask_em_end(s);
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
				mask_fw_add(NULL, &nw, &used, s->pg.fp[k].p, s->pg.fp[k].rule);
			/* one empty word when no path can match */
			if (!(s->pg.fw = calloc(nw ? nw : 1, sizeof(*s->pg.fw))))
				return -ENOMEM;
			used = 0;
			for (size_t k = 0; k < s->pg.n_fp; k++)
				mask_fw_add(s->pg.fw, &s->pg.n_fw, &used, s->pg.fp[k].p,
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
					s->pg.key_filter |= 1ull << mask_fp_key_hash(
								    s->pg.fp[k].p->segs[g].key,
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
		return mask_out_wire(s, p, n);
	if (s->bypass)
		return s->observe ? 0 : mask_out_wire(s, p, n);
	if (n && !s->wire_seen) {
		s->wire_seen = true;
		if (s->codec == CODEC_UNKNOWN) {
			if (mask_note_error(s, MM_REASON_UNKNOWN_ENCODING) != POLICY_ONERR_PASS) {
				if (!s->observe)
					s->blocked = true;
				s->stopped = true;
				return 0;
			}
			s->wire_pass = true;
			return s->observe ? 0 : mask_out_wire(s, p, n);
		}
	}
	if (s->codec != CODEC_GZIP && s->codec != CODEC_DEFLATE)
		return fmt_feed(s, p, n);
	size_t bad = 0;
	r = codec_dec_push(&s->dec, p, n, dec_out, s, &bad);
	if (r != -EBADMSG && r != -EFBIG)
		return r;
	/* A corrupt stream, or a bomb (the ratio bound): what onError says. */
	if (mask_note_error(s, r == -EFBIG ? MM_REASON_LIMIT : MM_REASON_BAD_ENCODING) !=
	    POLICY_ONERR_PASS) {
		s->stopped = true;
		return 0;
	}
	/* pass: complete the re-encoded prefix, then the undecodable rest as it came. */
	s->stopped = true;
	s->wire_pass = true;
	if (!s->observe) {
		s->enc_done = true;
		mask_enc_ready(s);
		if ((r = codec_enc_finish(&s->enc, mask_out_wire, s)))
			return r;
		return mask_out_wire(s, p + bad, n - bad);
	}
	return 0;
}

/* A write or finish on a stream: its earlier error, -EPROTO once blocked, else 0. */
static int call_begin(struct mask_stream *s, mask_sink_fn sink, void *ctx)
{
	if (s->err)
		return s->err;
	if (s->blocked)
		return -EPROTO;
	s->sink = sink;
	s->sink_ctx = ctx;
	return 0;
}

int mask_stream_write(struct mask_stream *s, const void *data, size_t len, mask_sink_fn sink,
		      void *ctx)
{
	int r = call_begin(s, sink, ctx);
	if (r)
		return r;
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
		r = mask_out_flush(s);
	else
		s->out.len = 0;
	/*
	 * Emptied at every write: a buffer grown past its first size by a large write is given
	 * back, so thousands of streams in flight do not each keep one (up to 128 KiB).
	 */
	if (s->out.cap > MASK_OUT_FLUSH / 4)
		mm_buf_free(&s->out);
	if (r)
		s->err = r;
	return r;
}

int mask_stream_finish(struct mask_stream *s, mask_sink_fn sink, void *ctx)
{
	int r = call_begin(s, sink, ctx);
	if (r)
		return r;
	bool coded = s->codec == CODEC_GZIP || s->codec == CODEC_DEFLATE;
	if (coded && !s->stopped && !s->bypass &&
	    codec_dec_finish(&s->dec, dec_out, s) == -EBADMSG) {
		if (mask_note_error(s, MM_REASON_BAD_ENCODING) != POLICY_ONERR_PASS)
			s->stopped = true;
	}
	if (!s->stopped && !s->bypass)
		r = fmt_finish(s);
	if (!r && s->blocked)
		r = -EPROTO;
	if (!r && coded && s->wire_seen && !s->enc_done && !s->observe && !s->bypass &&
	    !s->wire_pass) {
		s->enc_done = true;
		mask_enc_ready(s);
		r = codec_enc_finish(&s->enc, mask_out_wire, s);
	}
	if (!r)
		r = mask_out_flush(s);
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
