/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Protobuf masking over the wire format (varint, 64-bit, length-delimited, 32-bit; groups
 * skipped whole).
 *
 * With a schema, a message is rewritten into a new buffer: bytes nobody touches are copied as
 * they came (tags and length prefixes too, so an unmasked message is byte-identical), a changed
 * value gets a new length prefix, and an enclosing message whose length changed gets its prefix
 * rewritten (moved in place when the prefix's own size changes). Field paths are matched with
 * jpath_match() against a stack of proto field names and repeated-field indexes, the same
 * semantics as JSON: the first rule in rule order that matches the value or an ancestor wins.
 *
 * Without a schema, the message is walked as wire format and only printable-text leaves are
 * scanned; edits are collected and applied at the end, only if the whole message parsed.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "action.h"
#include "detect.h"
#include "pbmask.h"

#define PB_MAX_FIELD ((1u << 29) - 1)
/* Matches looked up at once in a value; more are found by scanning again after the last. */
#define PB_SCAN_BATCH 16

/* ---- wire primitives ---- */

static int rd_varint(const uint8_t *p, size_t n, size_t *i, uint64_t *v)
{
	uint64_t x = 0;
	for (unsigned k = 0; k < 10; k++) {
		if (*i >= n)
			return -EPROTO;
		uint8_t b = p[(*i)++];
		x |= (uint64_t)(b & 0x7f) << (7 * k);
		if (!(b & 0x80)) {
			*v = x;
			return 0;
		}
	}
	return -EPROTO;
}

static size_t varint_put(uint8_t *o, uint64_t v)
{
	size_t k = 0;
	do {
		o[k++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	return k;
}

static int put_varint(struct mm_buf *b, uint64_t v)
{
	uint8_t t[10];
	return mm_buf_append(b, t, varint_put(t, v));
}

/* A tag at p[*i]: its field number and wire type, checked. */
static int rd_tag(const uint8_t *p, size_t n, size_t *i, uint32_t *num, uint32_t *wt)
{
	uint64_t tag;
	if (rd_varint(p, n, i, &tag) || (tag >> 3) == 0 || (tag >> 3) > PB_MAX_FIELD ||
	    (tag & 7) > PB_WIRE_I32)
		return -EPROTO;
	*num = (uint32_t)(tag >> 3);
	*wt = (uint32_t)(tag & 7);
	return 0;
}

/* A length-delimited value's length at p[*i], checked against what is left. */
static int rd_len(const uint8_t *p, size_t n, size_t *i, size_t *len)
{
	uint64_t v;
	if (rd_varint(p, n, i, &v) || v > n - *i)
		return -EPROTO;
	*len = (size_t)v;
	return 0;
}

/* Skip the value of wire type wt after a tag of field num (a group up to its end tag). */
static int skip_value(const uint8_t *p, size_t n, size_t *i, uint32_t num, uint32_t wt, int depth)
{
	uint64_t v;
	size_t len;

	switch (wt) {
	case PB_WIRE_VARINT:
		return rd_varint(p, n, i, &v);
	case PB_WIRE_I64:
	case PB_WIRE_I32:
		len = wt == PB_WIRE_I64 ? 8 : 4;
		if (n - *i < len)
			return -EPROTO;
		*i += len;
		return 0;
	case PB_WIRE_LEN:
		if (rd_len(p, n, i, &len))
			return -EPROTO;
		*i += len;
		return 0;
	case PB_WIRE_SGROUP:
		if (depth >= PB_MAX_DEPTH)
			return -EPROTO;
		for (;;) {
			uint32_t gn, gw;
			if (rd_tag(p, n, i, &gn, &gw))
				return -EPROTO;
			if (gw == PB_WIRE_EGROUP)
				return gn == num ? 0 : -EPROTO;
			if (skip_value(p, n, i, gn, gw, depth + 1))
				return -EPROTO;
		}
	default:
		return -EPROTO;
	}
}

/* ---- the masker ---- */

struct pbm {
	const struct policy *p;
	struct mask_stats *st;
	struct action_ctx *actx; /* per rule, when a rule hashes */
	struct mm_buf val; /* one value's new bytes */
	struct jpath_elem stack[2 * PB_MAX_DEPTH + 4];
	size_t sp;
	int ent_rule[MM_ENT__COUNT]; /* first entity-only rule per entity */
	uint32_t body_ents;
	bool paths; /* some rule has field paths */
	bool check; /* pb_check(): no policy */
};

static void count(struct pbm *m, int rule, int entity)
{
	struct mask_stats *st = m->st;
	if (!st || rule < 0 || (size_t)rule >= st->n_rules || !st->rules)
		return;
	st->rules[rule].values++;
	st->values++;
	if (entity >= 0 && entity < MM_ENT__COUNT)
		st->rules[rule].by_entity[entity]++;
}

/* The first rule (before `rule`, which an ancestor gave) whose paths match the stack. */
static int match_rule(const struct pbm *m, int rule)
{
	if (!m->paths)
		return rule;
	for (size_t k = 0; k < m->p->n_rules && (rule < 0 || (int)k < rule); k++) {
		const struct policy_rule *ru = &m->p->rules[k];
		for (size_t f = 0; f < ru->n_fields; f++)
			if (jpath_match(&ru->fields[f], m->stack, m->sp))
				return (int)k;
	}
	return rule;
}

static void push_key(struct pbm *m, const struct pb_field *f)
{
	m->stack[m->sp++] = (struct jpath_elem){.key = f->name, .key_len = f->name_len};
}

static void push_index(struct pbm *m, uint32_t index)
{
	m->stack[m->sp++] = (struct jpath_elem){.index = index};
}

static int apply(struct pbm *m, int rule, int entity, const char *v, size_t n, struct mm_buf *dst)
{
	struct action_ctx *c = m->actx ? &m->actx[rule] : NULL;
	int r = action_apply_ctx(&m->p->rules[rule].action, c, entity, v, n, dst);
	if (c && c->unfit) {
		if (m->st)
			m->st->errors[m->p->rules[rule].action.type == POLICY_ACTION_DETOKENIZE
					      ? MM_REASON_DETOKENIZE_FAILED
					      : MM_REASON_TOKENIZE_FAILED] += c->unfit;
		c->unfit = 0;
	}
	return r;
}

/*
 * Scan v[0, n) for `ents`; matches go to `rule` (or, rule < 0, to each entity's body rule).
 * When something matched, the rewritten value is appended to dst. Returns the matches or -errno.
 */
static int scan_value(struct pbm *m, const char *v, size_t n, uint32_t ents, unsigned flags,
		      int rule, struct mm_buf *dst)
{
	struct detect_match mt[PB_SCAN_BATCH];
	size_t pos = 0, start = 0;
	int found = 0, r;

	for (;;) {
		size_t k = detect_scan(v, n, start, ents, flags, mt, PB_SCAN_BATCH);
		for (size_t j = 0; j < k; j++) {
			int ru = rule >= 0 ? rule : m->ent_rule[mt[j].entity];
			count(m, ru, (int)mt[j].entity);
			found++;
			if ((r = mm_buf_append(dst, v + pos, mt[j].off - pos)))
				return r;
			r = ru >= 0 ? apply(m, ru, (int)mt[j].entity, v + mt[j].off, mt[j].len, dst)
				    : mm_buf_append(dst, v + mt[j].off, mt[j].len);
			if (r)
				return r;
			pos = mt[j].off + mt[j].len;
		}
		if (k < PB_SCAN_BATCH)
			break;
		start = mt[k - 1].off + mt[k - 1].len;
	}
	if (found && (r = mm_buf_append(dst, v + pos, n - pos)))
		return r;
	return found;
}

/* The decimal text of a scalar, for a fields + entities rule ("" when it has none). */
static size_t scalar_text(const struct pb_field *f, uint64_t v, char *t, size_t tn)
{
	int n = 0;
	switch (f->type) {
	case 3: /* int64 */
	case 5: /* int32 */
	case 14: /* enum */
	case 16: /* sfixed64 */
		n = snprintf(t, tn, "%" PRId64, (int64_t)v);
		break;
	case 15: /* sfixed32 */
		n = snprintf(t, tn, "%" PRId32, (int32_t)(uint32_t)v);
		break;
	case 4: /* uint64 */
	case 6: /* fixed64 */
	case 7: /* fixed32 */
	case 13: /* uint32 */
		n = snprintf(t, tn, "%" PRIu64, v);
		break;
	case 17: /* sint32 */
	case 18: /* sint64 */
		n = snprintf(t, tn, "%" PRId64, (int64_t)(v >> 1) ^ -(int64_t)(v & 1));
		break;
	case 1: { /* double */
		double d;
		memcpy(&d, &v, sizeof(d));
		n = snprintf(t, tn, "%.17g", d);
		break;
	}
	case 2: { /* float */
		uint32_t w = (uint32_t)v;
		float fl;
		memcpy(&fl, &w, sizeof(fl));
		n = snprintf(t, tn, "%.9g", fl);
		break;
	}
	default: /* bool: never an entity */
		break;
	}
	return n > 0 && (size_t)n < tn ? (size_t)n : 0;
}

/*
 * Whether a scalar under field rule `rule` is removed: always, unless the rule also names
 * entities, then only when its decimal text holds one. Counts what it removes.
 */
static bool scalar_drop(struct pbm *m, const struct pb_field *f, int rule, uint64_t v)
{
	const struct policy_rule *ru = &m->p->rules[rule];
	struct detect_match mt[PB_SCAN_BATCH];
	char t[64];

	if (!ru->entities) {
		count(m, rule, -1);
		return true;
	}
	size_t n = scalar_text(f, v, t, sizeof(t));
	size_t k = n ? detect_scan(t, n, 0, ru->entities, DETECT_FIELD_CONTEXT, mt, 1) : 0;
	if (k)
		count(m, rule, (int)mt[0].entity);
	return k > 0;
}

/* Read one scalar element of kind f->kind at p[*i]. */
static int rd_scalar(const struct pb_field *f, const uint8_t *p, size_t n, size_t *i, uint64_t *v)
{
	if (f->kind == PB_KIND_VARINT)
		return rd_varint(p, n, i, v);
	size_t w = f->kind == PB_KIND_I64 ? 8 : 4;
	if (n - *i < w)
		return -EPROTO;
	uint64_t x = 0;
	for (size_t k = 0; k < w; k++)
		x |= (uint64_t)p[*i + k] << (8 * k);
	*i += w;
	*v = x;
	return 0;
}

/* Write a length-delimited field: the original tag bytes, then a new length and value. */
static int put_len_field(struct mm_buf *out, const uint8_t *tag, size_t tag_len, const char *v,
			 size_t n)
{
	int r;
	if ((r = mm_buf_append(out, tag, tag_len)) || (r = put_varint(out, n)) ||
	    (r = mm_buf_append(out, v, n)))
		return r;
	return 0;
}

static int mask_msg(struct pbm *m, const struct pb_msgtype *t, const uint8_t *p, size_t n,
		    int inherited, int depth, struct mm_buf *out);

/* A packed repeated scalar: elements a rule removes are dropped; else copied as it came. */
static int mask_packed(struct pbm *m, const struct pb_field *f, const uint8_t *p, size_t n,
		       size_t tag_len, size_t hdr_len, int rule, uint32_t *index,
		       struct mm_buf *out)
{
	const uint8_t *v = p + hdr_len;
	size_t vn = n - hdr_len, i = 0, w = f->kind == PB_KIND_I64 ? 8 : 4;
	struct mm_buf keep = {0};
	bool dropped = false;
	int r = 0;

	if (f->kind != PB_KIND_VARINT && vn % w)
		return -EPROTO;
	while (i < vn) {
		size_t s = i;
		uint64_t x;
		if ((r = rd_scalar(f, v, vn, &i, &x)))
			goto out;
		int er = rule;
		if (!m->check && m->paths) {
			push_index(m, (*index)++);
			er = match_rule(m, rule);
			m->sp--;
		}
		if (!m->check && er >= 0 && scalar_drop(m, f, er, x)) {
			if (!dropped && (r = mm_buf_append(&keep, v, s)))
				goto out;
			dropped = true;
		} else if (dropped && (r = mm_buf_append(&keep, v + s, i - s))) {
			goto out;
		}
	}
	if (!dropped)
		r = mm_buf_append(out, p, n);
	else if (keep.len)
		r = put_len_field(out, p, tag_len, keep.data, keep.len);
out:
	mm_buf_free(&keep);
	return r;
}

/* A string or bytes value v[0, n) under `rule` (-1: none): new bytes in m->val, 1 to remove,
 * 0 unchanged. */
static int mask_text(struct pbm *m, const struct pb_field *f, const char *v, size_t n, int rule,
		     bool *changed)
{
	int r;
	*changed = false;
	mm_buf_reset(&m->val);
	if (rule >= 0) {
		const struct policy_rule *ru = &m->p->rules[rule];
		if (ru->entities) {
			r = scan_value(m, v, n, ru->entities, DETECT_FIELD_CONTEXT, rule, &m->val);
			*changed = r > 0;
			return r < 0 ? r : 0;
		}
		count(m, rule, -1);
		if (ru->action.type == POLICY_ACTION_REDACT)
			return 1;
		*changed = true;
		return apply(m, rule, -1, v, n, &m->val);
	}
	if (f->kind == PB_KIND_STRING && m->body_ents) {
		r = scan_value(m, v, n, m->body_ents, 0, -1, &m->val);
		*changed = r > 0;
		return r < 0 ? r : 0;
	}
	return 0;
}

/* Whether wire type wt can carry field f (a repeated scalar may come packed). */
static bool wire_ok(const struct pb_field *f, uint32_t wt)
{
	switch (f->kind) {
	case PB_KIND_VARINT:
		return wt == PB_WIRE_VARINT || (f->repeated && wt == PB_WIRE_LEN);
	case PB_KIND_I64:
		return wt == PB_WIRE_I64 || (f->repeated && wt == PB_WIRE_LEN);
	case PB_KIND_I32:
		return wt == PB_WIRE_I32 || (f->repeated && wt == PB_WIRE_LEN);
	case PB_KIND_GROUP:
		return wt == PB_WIRE_SGROUP;
	default:
		return wt == PB_WIRE_LEN;
	}
}

/* A nested message at p[0, n) (tag, length, body): masked, its length prefix rewritten if the
 * body's length changed. */
static int mask_sub(struct pbm *m, const struct pb_field *f, const uint8_t *p, size_t n,
		    size_t tag_len, size_t hdr_len, int rule, int depth, struct mm_buf *out)
{
	size_t at = out->len, body;
	int r;

	if ((r = mm_buf_append(out, p, hdr_len)))
		return r;
	body = out->len;
	if ((r = mask_msg(m, f->msg, p + hdr_len, n - hdr_len, rule, depth + 1, out)))
		return r;
	size_t nlen = out->len - body;
	if (nlen == n - hdr_len)
		return 0; /* the original prefix still holds */
	uint8_t t[10];
	size_t k = varint_put(t, nlen), old = hdr_len - tag_len;
	if (k != old) {
		if (k > old && (r = mm_buf_reserve(out, k - old)))
			return r;
		memmove(out->data + body - old + k, out->data + body, nlen);
		out->len = out->len - old + k;
	}
	memcpy(out->data + at + tag_len, t, k);
	return 0;
}

static int mask_field(struct pbm *m, const struct pb_msgtype *t, const uint8_t *p, size_t n,
		      size_t *i, int inherited, int depth, uint32_t *counts, struct mm_buf *out)
{
	size_t start = *i, tag_len, len;
	uint32_t num, wt;
	int r;

	if (rd_tag(p, n, i, &num, &wt) || wt == PB_WIRE_EGROUP)
		return -EPROTO;
	tag_len = *i - start;
	const struct pb_field *f = pb_msgtype_field(t, num);
	if (!f) {
		if (skip_value(p, n, i, num, wt, depth))
			return -EPROTO;
		/* Under a rule's path nothing says what an unknown field holds: removed. */
		return inherited >= 0 && !m->check ? 0 : mm_buf_append(out, p + start, *i - start);
	}
	if (!wire_ok(f, wt))
		return -EPROTO;
	size_t sp = m->sp;
	int rule = inherited;
	uint32_t *index = counts ? &counts[f - t->fields] : NULL;
	uint32_t idx0 = index ? *index : 0;
	if (!m->check && m->paths) {
		push_key(m, f);
		rule = match_rule(m, rule);
		/* A packed record's elements get their indexes in mask_packed(). */
		if (f->repeated && !(wt == PB_WIRE_LEN && f->kind <= PB_KIND_I32)) {
			push_index(m, idx0);
			rule = match_rule(m, rule);
		}
	}
	if (index && !(wt == PB_WIRE_LEN && f->kind <= PB_KIND_I32))
		(*index)++;

	if (wt == PB_WIRE_SGROUP) {
		/* Groups (proto2, deprecated) are not looked into: kept whole, or removed whole. */
		if ((r = skip_value(p, n, i, num, wt, depth)))
			goto out;
		r = rule >= 0 && !m->check ? (count(m, rule, -1), 0)
					   : mm_buf_append(out, p + start, *i - start);
		goto out;
	}
	if (wt != PB_WIRE_LEN) {
		uint64_t v;
		if ((r = rd_scalar(f, p, n, i, &v)))
			goto out;
		if (rule >= 0 && !m->check && scalar_drop(m, f, rule, v))
			goto out;
		r = mm_buf_append(out, p + start, *i - start);
		goto out;
	}
	if ((r = rd_len(p, n, i, &len)))
		goto out;
	size_t hdr_len = *i - start;
	*i += len;
	if (f->kind <= PB_KIND_I32) {
		uint32_t zero = 0;
		r = mask_packed(m, f, p + start, *i - start, tag_len, hdr_len, rule,
				index ? index : &zero, out);
		goto out;
	}
	if (f->kind == PB_KIND_MESSAGE) {
		r = mask_sub(m, f, p + start, *i - start, tag_len, hdr_len, rule, depth, out);
		goto out;
	}
	bool changed = false;
	if (!m->check &&
	    (r = mask_text(m, f, (const char *)p + start + hdr_len, len, rule, &changed))) {
		if (r == 1) /* redacted: the field is removed */
			r = 0;
		goto out;
	}
	r = changed ? put_len_field(out, p + start, tag_len, m->val.data, m->val.len)
		    : mm_buf_append(out, p + start, *i - start);
out:
	m->sp = sp;
	return r;
}

static int mask_msg(struct pbm *m, const struct pb_msgtype *t, const uint8_t *p, size_t n,
		    int inherited, int depth, struct mm_buf *out)
{
	uint32_t small[32], *counts = NULL;
	size_t i = 0;
	int r = 0;

	if (depth > PB_MAX_DEPTH)
		return -EPROTO;
	/* Repeated-field indexes matter only to paths. */
	if (m->paths && t->n_fields) {
		if (t->n_fields <= 32) {
			counts = small;
			memset(small, 0, t->n_fields * sizeof(*small));
		} else if (!(counts = calloc(t->n_fields, sizeof(*counts)))) {
			return -ENOMEM;
		}
	}
	while (i < n && !r)
		r = mask_field(m, t, p, n, &i, inherited, depth, counts, out);
	if (counts != small)
		free(counts);
	return r;
}

static int pbm_init(struct pbm *m, const struct policy *p, struct mask_stats *stats)
{
	memset(m, 0, sizeof(*m));
	m->p = p;
	m->st = stats;
	for (int e = 0; e < MM_ENT__COUNT; e++)
		m->ent_rule[e] = -1;
	for (size_t k = 0; k < p->n_rules; k++) {
		const struct policy_rule *ru = &p->rules[k];
		m->paths |= ru->n_fields > 0;
		if (ru->n_fields || ru->n_headers)
			continue;
		m->body_ents |= ru->entities;
		for (int e = 0; e < MM_ENT__COUNT; e++)
			if ((ru->entities & MM_ENT_BIT(e)) && m->ent_rule[e] < 0)
				m->ent_rule[e] = (int)k;
	}
	for (size_t k = 0; k < p->n_rules && !m->actx; k++)
		if (action_keyed(&p->rules[k].action) &&
		    !(m->actx = calloc(p->n_rules, sizeof(*m->actx))))
			return -ENOMEM;
	return 0;
}

static void pbm_fini(struct pbm *m)
{
	if (m->actx)
		for (size_t k = 0; k < m->p->n_rules; k++)
			action_ctx_free(&m->actx[k]);
	free(m->actx);
	mm_buf_free(&m->val);
}

int pb_mask_message(const struct policy *p, const struct pb_msgtype *t, const void *in, size_t len,
		    struct mm_buf *out, struct mask_stats *stats)
{
	struct pbm *m;
	size_t at = out->len;
	int r;

	if (!p || !t || (!in && len))
		return -EINVAL;
	if (!(m = malloc(sizeof(*m))))
		return -ENOMEM;
	/* Counted apart, and added to stats only for a message that was one. */
	struct mask_stats mine = {.n_rules = p->n_rules};
	if (stats && p->n_rules && !(mine.rules = calloc(p->n_rules, sizeof(*mine.rules)))) {
		free(m);
		return -ENOMEM;
	}
	if ((r = pbm_init(m, p, stats ? &mine : NULL)))
		goto out;
	r = mask_msg(m, t, in, len, -1, 0, out);
	/* Observe: everything counted, nothing changed. */
	if (!r && p->mode == POLICY_MODE_OBSERVE) {
		out->len = at;
		r = mm_buf_append(out, in, len);
	}
	if (r)
		out->len = at;
	else if (stats) {
		stats->bytes_in += len;
		stats->bytes_scanned += len;
		stats->bytes_out += out->len - at;
		stats->values += mine.values;
		for (size_t k = 0; stats->rules && k < stats->n_rules && k < p->n_rules; k++) {
			stats->rules[k].values += mine.rules[k].values;
			for (int e = 0; e < MM_ENT__COUNT; e++)
				stats->rules[k].by_entity[e] += mine.rules[k].by_entity[e];
		}
	}
out:
	pbm_fini(m);
	free(m);
	free(mine.rules);
	return r;
}

int pb_check(const struct pb_msgtype *t, const void *in, size_t len)
{
	static const struct policy none = {0};
	struct mm_buf sink = {0};
	struct pbm *m;
	int r;

	if (!t || (!in && len))
		return -EINVAL;
	if (!(m = malloc(sizeof(*m))))
		return -ENOMEM;
	pbm_init(m, &none, NULL);
	m->check = true;
	r = mask_msg(m, t, in, len, -1, 0, &sink);
	pbm_fini(m);
	free(m);
	mm_buf_free(&sink);
	return r;
}

/* ---- without a schema: in place, same length, structure untouched ---- */

struct raw_edit {
	size_t off, len; /* in the message */
	size_t rep; /* the replacement's offset in rawctx.reps */
	int rule, entity;
};

struct rawctx {
	struct pbm *m;
	const uint8_t *base;
	uint8_t *marks; /* per byte: a tag or length under some reading of the message */
	struct raw_edit *edits;
	size_t n_edits, cap_edits;
	struct mm_buf reps; /* replacement bytes */
	int fb_rule[MM_ENT__COUNT]; /* first rule naming each entity */
	uint32_t ents;
};

/* Printable UTF-8 text: what a string field holds, and what a nested message almost never is. */
static bool text_like(const uint8_t *s, size_t n)
{
	size_t i = 0;
	if (!n)
		return false;
	while (i < n) {
		uint8_t c = s[i];
		if (c < 0x80) {
			if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f)
				return false;
			i++;
			continue;
		}
		size_t want = c >= 0xc2 && c <= 0xdf   ? 2
			      : c >= 0xe0 && c <= 0xef ? 3
			      : c >= 0xf0 && c <= 0xf4 ? 4
						       : 0;
		if (!want || n - i < want)
			return false;
		for (size_t k = 1; k < want; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
		if ((c == 0xe0 && s[i + 1] < 0xa0) || (c == 0xed && s[i + 1] > 0x9f) ||
		    (c == 0xf0 && s[i + 1] < 0x90) || (c == 0xf4 && s[i + 1] > 0x8f))
			return false;
		i += want;
	}
	return true;
}

static const struct policy_action full_mask = {.type = POLICY_ACTION_MASK, .mask_char = "*"};

/* Scan the text leaf base[off, off + n) and record the edits that change no marked byte. */
static int raw_scan(struct rawctx *c, size_t off, size_t n)
{
	const char *v = (const char *)c->base + off;
	struct detect_match mt[PB_SCAN_BATCH];
	size_t start = 0;
	int r;

	for (;;) {
		size_t k = detect_scan(v, n, start, c->ents, 0, mt, PB_SCAN_BATCH);
		for (size_t j = 0; j < k; j++) {
			int rule = c->fb_rule[mt[j].entity];
			const struct policy_action *a = &c->m->p->rules[rule].action;
			size_t rep = c->reps.len;
			if (!action_length_preserving(a))
				a = &full_mask;
			if ((r = action_apply(a, (int)mt[j].entity, v + mt[j].off, mt[j].len,
					      &c->reps)))
				return r;
			if (c->reps.len - rep != mt[j].len) {
				/* Not one byte per byte after all: hide every byte. */
				c->reps.len = rep;
				if ((r = mm_buf_reserve(&c->reps, mt[j].len)))
					return r;
				memset(c->reps.data + rep, '*', mt[j].len);
				c->reps.len += mt[j].len;
			}
			bool safe = true;
			for (size_t b = 0; b < mt[j].len && safe; b++)
				safe = !c->marks[off + mt[j].off + b] ||
				       c->reps.data[rep + b] == v[mt[j].off + b];
			if (!safe) {
				c->reps.len = rep;
				continue;
			}
			if (c->n_edits == c->cap_edits) {
				size_t cap = c->cap_edits ? 2 * c->cap_edits : 16;
				struct raw_edit *e = realloc(c->edits, cap * sizeof(*e));
				if (!e)
					return -ENOMEM;
				c->edits = e;
				c->cap_edits = cap;
			}
			c->edits[c->n_edits++] = (struct raw_edit){.off = off + mt[j].off,
								   .len = mt[j].len,
								   .rep = rep,
								   .rule = rule,
								   .entity = (int)mt[j].entity};
		}
		if (k < PB_SCAN_BATCH)
			break;
		start = mt[k - 1].off + mt[k - 1].len;
	}
	return 0;
}

static int raw_msg(struct rawctx *c, size_t off, size_t n, int depth);

/*
 * The fields of the message base[off, off + n) from *i on, up to its end (group 0) or to the end
 * tag of group `group`: tags and lengths marked, nested messages walked, text leaves scanned.
 * 1 if they are valid, 0 if not, or -errno.
 */
static int raw_fields(struct rawctx *c, size_t off, size_t n, size_t *i, int depth, uint32_t group)
{
	const uint8_t *p = c->base + off;
	int r;

	while (*i < n) {
		size_t s = *i, len;
		uint32_t num, wt;
		if (rd_tag(p, n, i, &num, &wt))
			return 0;
		memset(c->marks + off + s, 1, *i - s);
		if (wt == PB_WIRE_EGROUP)
			return group && num == group;
		if (wt == PB_WIRE_SGROUP) {
			if (depth >= PB_MAX_DEPTH)
				return 0;
			if ((r = raw_fields(c, off, n, i, depth + 1, num)) != 1)
				return r;
			continue;
		}
		if (wt != PB_WIRE_LEN) {
			/* A number's bytes too: a digit masked there would change a value. */
			if (skip_value(p, n, i, num, wt, depth))
				return 0;
			memset(c->marks + off + s, 1, *i - s);
			continue;
		}
		if (rd_len(p, n, i, &len))
			return 0;
		memset(c->marks + off + s, 1, *i - s);
		if (!len)
			continue;
		size_t q = off + *i, e1 = c->n_edits, r1 = c->reps.len;
		bool text = text_like(p + *i, len);
		if ((r = raw_msg(c, q, len, depth + 1)) < 0)
			return r;
		if (r == 1 && text) {
			/*
			 * Both: scanned as the text it most likely is. Masking keeps every length,
			 * so no enclosing framing can change; were it a nested message after all,
			 * the receiver gets a garbled field, never the value.
			 */
			c->n_edits = e1;
			c->reps.len = r1;
			memset(c->marks + q, 0, len);
		}
		if (text && (r = raw_scan(c, q, len)))
			return r;
		*i += len;
	}
	return !group;
}

/*
 * Read base[off, off + n) as a message: 1 if it is exactly one (its tags and lengths marked, the
 * edits of its text leaves recorded), 0 if not (its marks and edits undone), or -errno.
 */
static int raw_msg(struct rawctx *c, size_t off, size_t n, int depth)
{
	size_t i = 0, e0 = c->n_edits, r0 = c->reps.len;
	int r = depth > PB_MAX_DEPTH ? 0 : raw_fields(c, off, n, &i, depth, 0);

	if (r == 0) {
		memset(c->marks + off, 0, n);
		c->n_edits = e0;
		c->reps.len = r0;
	}
	return r;
}

long pb_mask_raw(const struct policy *p, void *data, size_t len, struct mask_stats *stats)
{
	struct rawctx c = {.base = data};
	struct pbm m;
	long r;

	if (!p || (!data && len))
		return -EINVAL;
	memset(&m, 0, sizeof(m));
	m.p = p;
	m.st = stats;
	c.m = &m;
	for (int e = 0; e < MM_ENT__COUNT; e++)
		c.fb_rule[e] = -1;
	for (size_t k = 0; k < p->n_rules; k++) {
		c.ents |= p->rules[k].entities;
		for (int e = 0; e < MM_ENT__COUNT; e++)
			if ((p->rules[k].entities & MM_ENT_BIT(e)) && c.fb_rule[e] < 0)
				c.fb_rule[e] = (int)k;
	}
	if (!len)
		return 0;
	if (!(c.marks = calloc(len, 1)))
		return -ENOMEM;
	r = raw_msg(&c, 0, len, 0);
	if (r == 0)
		r = -EPROTO;
	if (r == 1) {
		for (size_t k = 0; k < c.n_edits; k++) {
			const struct raw_edit *e = &c.edits[k];
			count(&m, e->rule, e->entity);
			if (p->mode != POLICY_MODE_OBSERVE)
				memcpy((uint8_t *)data + e->off, c.reps.data + e->rep, e->len);
		}
		r = (long)c.n_edits;
		if (stats) {
			stats->bytes_in += len;
			stats->bytes_out += len;
			stats->bytes_scanned += len;
		}
	}
	free(c.marks);
	free(c.edits);
	mm_buf_free(&c.reps);
	return r;
}
