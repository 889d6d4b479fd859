/* SPDX-License-Identifier: Apache-2.0 */
/* Field paths of a stream's policy, matched as the JSON tokenizer enters each value. */
#include <string.h>

#include "mask_internal.h"

/* ---- field paths: an NFA per path, packed in u64 words of states per nesting level ---- */

/*
 * Pack path p of `rule` into the words w[0, *n), opening a new one when it does not fit; with w
 * NULL, only count the words.
 */
void mask_fw_add(struct fpword *w, size_t *n, unsigned *used, const struct jpath *p, int rule)
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
void mask_fp_value(struct mask_stream *s, const char *key, size_t key_len, uint32_t index,
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
		if (!d || !key || !(s->pg.key_filter >> mask_fp_key_hash(key, key_len) & 1))
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
		bool named = key ? s->pg.key_filter >> mask_fp_key_hash(key, key_len) & 1
				 : s->pg.has_idx;
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
