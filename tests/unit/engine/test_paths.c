/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The engine's incremental field-path automaton agrees with jpath_match(): random documents,
 * one replace rule per path; a leaf must be replaced exactly when the path matches its position
 * or the position of one of its ancestors (jansson reads the output back).
 */
#include <jansson.h>

#include "engine_test.h"
#include "jpath.h"

static const char *paths[] = {
	"$.a",	"$..a",	   "$.a.b",  "$..b.c", "$.*",	   "$[*]",   "$[1]",	 "$..c[0]",
	"$..*", "$['ab']", "$.a..c", "$",      "$.*[*].b", "$..[*]", "$.b[0].a", "$..ab..a",
};

static const char *keys[] = {"a", "b", "c", "ab"};

static unsigned rnd_state = 12345;
static unsigned rnd(unsigned n)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return (rnd_state >> 16) % n;
}

static void gen(struct mm_buf *b, int depth)
{
	unsigned kind = depth >= 4 ? 2 + rnd(2) : depth < 2 ? rnd(2) : rnd(4);
	if (kind == 0) {
		unsigned n = 1 + rnd(4);
		mm_buf_putc(b, '{');
		for (unsigned i = 0; i < n; i++) {
			char k[16];
			snprintf(k, sizeof(k), "%s\"%s\":", i ? "," : "", keys[i]);
			mm_buf_puts(b, k);
			gen(b, depth + 1);
		}
		mm_buf_putc(b, '}');
	} else if (kind == 1) {
		unsigned n = rnd(4);
		mm_buf_putc(b, '[');
		for (unsigned i = 0; i < n; i++) {
			if (i)
				mm_buf_putc(b, ',');
			gen(b, depth + 1);
		}
		mm_buf_putc(b, ']');
	} else if (kind == 2) {
		mm_buf_puts(b, "\"v\"");
	} else {
		mm_buf_puts(b, "7");
	}
}

struct walk {
	const struct jpath *p;
	struct jpath_elem stack[16];
	size_t bad, leaves, hits;
};

static void walk(struct walk *w, json_t *in, json_t *out, size_t depth, bool matched)
{
	matched = matched || jpath_match(w->p, w->stack, depth);
	if (json_is_object(in)) {
		const char *k;
		json_t *v;
		/* Duplicate keys: jansson keeps the last one; compare what it kept. */
		json_object_foreach(in, k, v)
		{
			w->stack[depth] = (struct jpath_elem){.key = k, .key_len = strlen(k)};
			walk(w, v, json_object_get(out, k), depth + 1, matched);
		}
	} else if (json_is_array(in)) {
		for (size_t i = 0; i < json_array_size(in); i++) {
			w->stack[depth] = (struct jpath_elem){.index = (uint32_t)i};
			walk(w, json_array_get(in, i), json_array_get(out, i), depth + 1, matched);
		}
	} else {
		bool replaced = json_is_string(out) && !strcmp(json_string_value(out), "X");
		w->leaves++;
		w->hits += replaced;
		if (replaced != matched)
			w->bad++;
	}
}

/*
 * Policies whose paths are all `$..name` take a shortcut (no automaton states). The same rules
 * plus a path that never matches but is not of that form take the general automaton: the
 * outputs must be byte-identical, including which of two rules wins for nested matches.
 */
static void test_simple_paths(void)
{
	static const char *simple =
		"[{\"name\":\"r1\",\"fields\":[\"$..b\",\"c\"],\"action\":{\"type\":\"replace\","
		"\"value\":\"X\"}},"
		"{\"name\":\"r2\",\"fields\":[\"$..a\"],\"action\":{\"type\":\"replace\","
		"\"value\":\"Y\"}}]";
	static const char *general =
		"[{\"name\":\"r1\",\"fields\":[\"$..b\",\"c\"],\"action\":{\"type\":\"replace\","
		"\"value\":\"X\"}},"
		"{\"name\":\"r2\",\"fields\":[\"$..a\",\"$.zz[0].zz\"],\"action\":{\"type\":"
		"\"replace\",\"value\":\"Y\"}}]";
	struct policy *ps = mkpol(simple, "enforce", "block"),
		      *pg = mkpol(general, "enforce", "block");
	size_t same = 0, changed = 0;
	for (int d = 0; d < 500; d++) {
		struct mm_buf in = {0};
		gen(&in, 0);
		mm_buf_putc(&in, 0);
		char *a = run1(ps, "application/json", in.data, NULL);
		char *b = run1(pg, "application/json", in.data, NULL);
		same += a && b && !strcmp(a, b);
		changed += a && strcmp(a, in.data) != 0;
		free(a);
		free(b);
		mm_buf_free(&in);
	}
	ok(same == 500 && changed > 100,
	   "`$..name` shortcut and the general automaton agree on 500 documents (%zu changed)",
	   changed);
	policy_unref(ps);
	policy_unref(pg);
}

/* Two rules: X where a path of the first matches a leaf or an ancestor, else Y, else kept. */
struct walk2 {
	const struct jpath *p[2][16];
	size_t n[2];
	struct jpath_elem stack[16];
	size_t bad, leaves, hits;
};

static bool any_match(const struct walk2 *w, int r, size_t depth)
{
	for (size_t k = 0; k < w->n[r]; k++)
		if (jpath_match(w->p[r][k], w->stack, depth))
			return true;
	return false;
}

static void walk2(struct walk2 *w, json_t *in, json_t *out, size_t depth, bool m1, bool m2)
{
	m1 = m1 || any_match(w, 0, depth);
	m2 = m2 || any_match(w, 1, depth);
	if (json_is_object(in)) {
		const char *k;
		json_t *v;
		json_object_foreach(in, k, v)
		{
			w->stack[depth] = (struct jpath_elem){.key = k, .key_len = strlen(k)};
			walk2(w, v, json_object_get(out, k), depth + 1, m1, m2);
		}
	} else if (json_is_array(in)) {
		for (size_t i = 0; i < json_array_size(in); i++) {
			w->stack[depth] = (struct jpath_elem){.index = (uint32_t)i};
			walk2(w, json_array_get(in, i), json_array_get(out, i), depth + 1, m1, m2);
		}
	} else {
		const char *want = m1 ? "X" : m2 ? "Y" : NULL;
		bool ok_ = want ? json_is_string(out) && !strcmp(json_string_value(out), want)
				: json_equal(in, out);
		w->leaves++;
		w->hits += m1;
		w->bad += !ok_;
	}
}

/*
 * Many paths at once: the automaton packs paths side by side in 64-bit words, so a policy whose
 * paths take more than 64 bits spreads over several words, and a path of more than 62 segments
 * never matches. All the paths above in two rules (the second has `$`: every leaf is replaced,
 * by the first rule where one of its paths matches), with long paths in between that push the
 * rest into further words (a word filled to its last bit, and one path short of it), in two
 * orders: each leaf must get the rule jpath_match() gives.
 */
static void test_packed_paths(void)
{
	for (int v = 0; v < 8; v++) {
		/* the second word ends 4 bits short of 64 up to 3 bits over (its last path moves) */
		int order = v & 1, l1 = 25 + v, l2 = 34 + v;
		struct mm_buf rules = {0}, pad30 = {0}, pad40 = {0}, pad70 = {0};
		mm_buf_puts(&pad30, "$");
		mm_buf_puts(&pad40, "$..b");
		mm_buf_puts(&pad70, "$");
		for (int i = 0; i < 70; i++) {
			if (i < l1)
				mm_buf_puts(&pad30, ".zz");
			if (i < l2)
				mm_buf_puts(&pad40, ".zz");
			mm_buf_puts(&pad70, ".a");
		}
		mm_buf_putc(&pad30, 0);
		mm_buf_putc(&pad40, 0);
		mm_buf_putc(&pad70, 0);
		mm_buf_puts(&rules, "[");
		for (int r = 0; r < 2; r++) {
			mm_buf_puts(&rules, r ? ",{\"name\":\"r2\",\"fields\":["
					      : "{\"name\":\"r1\","
						"\"fields\":[");
			mm_buf_puts(&rules, "\"");
			mm_buf_puts(&rules, r ? pad40.data : pad30.data);
			mm_buf_puts(&rules, "\"");
			for (int k = 0; k < 8; k++) {
				/* the first rule's paths leave some leaves to the second's */
				static const int split[2][8] = {{0, 1, 2, 3, 6, 7, 9, 15},
								{4, 5, 8, 10, 11, 12, 13, 14}};
				/* order 1: each rule's paths reversed */
				int idx = split[r][order ? 7 - k : k];
				mm_buf_puts(&rules, ",\"");
				mm_buf_puts(&rules, paths[idx]);
				mm_buf_puts(&rules, "\"");
			}
			if (r) {
				mm_buf_puts(&rules, ",\"");
				mm_buf_puts(&rules, pad70.data);
				mm_buf_puts(&rules, "\"");
			}
			mm_buf_puts(&rules, "],\"action\":{\"type\":\"replace\",\"value\":\"");
			mm_buf_puts(&rules, r ? "Y\"}}" : "X\"}}");
		}
		mm_buf_puts(&rules, "]");
		mm_buf_putc(&rules, 0);
		struct policy *p = mkpol(rules.data, "enforce", "block");
		struct walk2 w = {0};
		for (int r = 0; r < 2; r++) {
			const struct policy_rule *ru = &p->rules[r];
			for (size_t f = 0; f < ru->n_fields; f++)
				if (ru->fields[f].n <= 16)
					w.p[r][w.n[r]++] = &ru->fields[f];
		}
		size_t docs = 0;
		for (int d = 0; d < 200; d++) {
			struct mm_buf in = {0};
			gen(&in, 0);
			mm_buf_putc(&in, 0);
			char *out = run1(p, "application/json", in.data, NULL);
			json_error_t e;
			json_t *ji = json_loads(in.data, JSON_DECODE_ANY, &e);
			json_t *jo = json_loads(out, JSON_DECODE_ANY, &e);
			if (ji && jo) {
				walk2(&w, ji, jo, 0, false, false);
				docs++;
			}
			json_decref(ji);
			json_decref(jo);
			free(out);
			mm_buf_free(&in);
		}
		ok(w.bad == 0 && docs == 200 && w.hits > 100 && w.hits < w.leaves,
		   "variant %d: 19 paths over several words agree with jpath_match on %zu leaves "
		   "(%zu by the first rule)",
		   v, w.leaves, w.hits);
		if (w.bad)
			printf("#   %zu leaves disagree\n", w.bad);
		policy_unref(p);
		mm_buf_free(&rules);
		mm_buf_free(&pad30);
		mm_buf_free(&pad40);
		mm_buf_free(&pad70);
	}
}

int main(void)
{
	for (size_t k = 0; k < sizeof(paths) / sizeof(*paths); k++) {
		char rules[256];
		snprintf(rules, sizeof(rules),
			 "[{\"name\":\"r\",\"fields\":[\"%s\"],\"action\":{\"type\":\"replace\","
			 "\"value\":\"X\"}}]",
			 paths[k]);
		struct policy *p = mkpol(rules, "enforce", "block");
		struct walk w = {.p = &p->rules[0].fields[0]};
		size_t docs = 0, parse_fail = 0;
		for (int d = 0; d < 300; d++) {
			struct mm_buf in = {0};
			gen(&in, 0);
			mm_buf_putc(&in, 0);
			char *out = run1(p, "application/json", in.data, NULL);
			json_error_t e;
			json_t *ji = json_loads(in.data, JSON_DECODE_ANY, &e);
			json_t *jo = json_loads(out, JSON_DECODE_ANY, &e);
			if (!ji || !jo) {
				parse_fail++;
			} else {
				walk(&w, ji, jo, 0, false);
				docs++;
			}
			json_decref(ji);
			json_decref(jo);
			free(out);
			mm_buf_free(&in);
		}
		ok(w.bad == 0 && parse_fail == 0 && docs == 300,
		   "%s: engine agrees with jpath_match on %zu leaves of %zu documents (%zu masked)",
		   paths[k], w.leaves, docs, w.hits);
		if (w.bad)
			printf("#   %zu leaves disagree\n", w.bad);
		policy_unref(p);
	}
	test_simple_paths();
	test_packed_paths();
	return tap_done();
}
