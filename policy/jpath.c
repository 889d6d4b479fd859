/* SPDX-License-Identifier: Apache-2.0 */
/*
 * JSONPath subset: parse into segments, match against the engine's position stack.
 * Grammar (byte oriented):
 *   path    = "$" *segment
 *   segment = "." name | ".*" | "[" index "]" | "[*]" | "[" quoted "]" | ".." step
 *   step    = name | "*" | "[" index "]" | "[*]" | "[" quoted "]"
 *   name    = 1*( ALPHA / DIGIT / "_" / "-" / %x80-FF )
 *   quoted  = "'" *( char / "\'" / "\\" ) "'"  (or the same with double quotes)
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "jpath.h"

/* Longest path text accepted; paths are written by people, not generated. */
#define JPATH_MAX_TEXT 4096

static bool name_char(unsigned char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '_' || ch == '-' || ch >= 0x80;
}

static int push_seg(struct jpath *p, size_t *cap, const struct jpath_seg *s)
{
	if (p->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 4;
		struct jpath_seg *v = realloc(p->segs, ncap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		p->segs = v;
		*cap = ncap;
	}
	p->segs[p->n++] = *s;
	return 0;
}

struct jp_state {
	const char *s;
	size_t len, i;
	const char *err;
	size_t err_off;
};

static int fail(struct jp_state *st, size_t off, const char *msg)
{
	st->err = msg;
	st->err_off = off;
	return -EINVAL;
}

/* A bracketed step; st->i is at '['. Fills *seg (key owned by the caller on success). */
static int parse_bracket(struct jp_state *st, struct jpath_seg *seg)
{
	st->i++; /* '[' */
	if (st->i >= st->len)
		return fail(st, st->i, "unterminated '[': expected an index, '*' or a quoted key");
	char c = st->s[st->i];
	if (c == '*') {
		st->i++;
		if (st->i >= st->len || st->s[st->i] != ']')
			return fail(st, st->i, "expected ']' after '[*'");
		st->i++;
		seg->type = JPATH_ANY_INDEX;
		return 0;
	}
	if (c >= '0' && c <= '9') {
		size_t start = st->i;
		uint64_t v = 0;
		while (st->i < st->len && st->s[st->i] >= '0' && st->s[st->i] <= '9') {
			v = v * 10 + (uint64_t)(st->s[st->i] - '0');
			if (v > UINT32_MAX)
				return fail(st, start, "array index too large");
			st->i++;
		}
		if (st->s[start] == '0' && st->i - start > 1)
			return fail(st, start, "leading zeros are not allowed in an array index");
		if (st->i >= st->len || st->s[st->i] != ']')
			return fail(st, st->i, "expected ']' after an array index");
		st->i++;
		seg->type = JPATH_INDEX;
		seg->index = (uint32_t)v;
		return 0;
	}
	if (c == '-')
		return fail(st, st->i, "negative array indexes are not supported");
	if (c != '\'' && c != '"')
		return fail(st, st->i, "expected an index, '*' or a quoted key after '['");

	char quote = c;
	size_t qstart = st->i++;
	/* The unescaped key is never longer than the quoted text. */
	char *key = malloc(st->len - st->i + 1);
	size_t klen = 0;
	if (!key)
		return -ENOMEM;
	for (;;) {
		if (st->i >= st->len) {
			free(key);
			return fail(st, qstart, "unterminated quoted key");
		}
		char ch = st->s[st->i];
		if (ch == quote)
			break;
		if (ch == '\\') {
			if (st->i + 1 >= st->len) {
				free(key);
				return fail(st, qstart, "unterminated quoted key");
			}
			char e = st->s[st->i + 1];
			if (e != '\\' && e != quote) {
				free(key);
				return fail(
					st, st->i,
					quote == '\''
						? "unknown escape in quoted key (only \\' and \\\\)"
						: "unknown escape in quoted key (only \\\" and "
						  "\\\\)");
			}
			key[klen++] = e;
			st->i += 2;
			continue;
		}
		key[klen++] = ch;
		st->i++;
	}
	st->i++; /* closing quote */
	if (st->i >= st->len || st->s[st->i] != ']') {
		free(key);
		return fail(st, st->i, "expected ']' after a quoted key");
	}
	st->i++;
	key[klen] = '\0';
	seg->type = JPATH_KEY;
	seg->key = key;
	seg->key_len = klen;
	return 0;
}

/* A dotted name or '*' at st->i (after '.' or '..'). */
static int parse_name(struct jp_state *st, struct jpath_seg *seg, const char *what)
{
	if (st->i < st->len && st->s[st->i] == '*') {
		st->i++;
		seg->type = JPATH_ANY_KEY;
		return 0;
	}
	size_t start = st->i;
	while (st->i < st->len && name_char((unsigned char)st->s[st->i]))
		st->i++;
	if (st->i == start)
		return fail(st, start, what);
	seg->type = JPATH_KEY;
	seg->key_len = st->i - start;
	seg->key = malloc(seg->key_len + 1);
	if (!seg->key)
		return -ENOMEM;
	memcpy(seg->key, st->s + start, seg->key_len);
	seg->key[seg->key_len] = '\0';
	return 0;
}

int jpath_parse(const char *text, struct jpath *out, const char **err, size_t *err_off)
{
	struct jp_state st = {.s = text, .len = text ? strlen(text) : 0};
	size_t cap = 0;
	int ret = 0;

	memset(out, 0, sizeof(*out));
	*err = NULL;
	*err_off = 0;
	if (st.len > JPATH_MAX_TEXT) {
		*err = "path too long";
		*err_off = JPATH_MAX_TEXT;
		return -EINVAL;
	}
	if (st.len == 0 || text[0] != '$') {
		*err = "a path must start with '$'";
		return -EINVAL;
	}
	st.i = 1;
	while (st.i < st.len) {
		struct jpath_seg seg = {0};
		char c = text[st.i];

		if (c == '.' && st.i + 1 < st.len && text[st.i + 1] == '.') {
			st.i += 2;
			struct jpath_seg d = {.type = JPATH_DESCEND};
			if (st.i < st.len && text[st.i] == '[')
				ret = parse_bracket(&st, &seg);
			else
				ret = parse_name(&st, &seg,
						 "expected a name, '*' or '[' after '..'");
			if (ret)
				break;
			ret = push_seg(out, &cap, &d);
		} else if (c == '.') {
			st.i++;
			ret = parse_name(&st, &seg, "expected a name or '*' after '.'");
		} else if (c == '[') {
			ret = parse_bracket(&st, &seg);
		} else {
			ret = fail(&st, st.i, "expected '.' or '['");
		}
		if (!ret)
			ret = push_seg(out, &cap, &seg);
		if (ret) {
			free(seg.key);
			break;
		}
	}
	if (!ret) {
		out->text = strdup(text);
		if (!out->text)
			ret = -ENOMEM;
	}
	if (ret) {
		jpath_free(out);
		if (ret == -ENOMEM) {
			*err = "out of memory";
			*err_off = 0;
		} else {
			*err = st.err;
			*err_off = st.err_off;
		}
	}
	return ret;
}

static bool seg_matches(const struct jpath_seg *s, const struct jpath_elem *e)
{
	switch (s->type) {
	case JPATH_KEY:
		return e->key && e->key_len == s->key_len &&
		       memcmp(e->key, s->key, s->key_len) == 0;
	case JPATH_ANY_KEY:
		return e->key != NULL;
	case JPATH_INDEX:
		return !e->key && e->index == s->index;
	case JPATH_ANY_INDEX:
		return !e->key;
	case JPATH_DESCEND:
		break;
	}
	return false;
}

/*
 * Glob matching with '..' as the star: every other segment consumes exactly one level, so the
 * classic single-backtrack-point algorithm is exact and O(segments * depth).
 */
bool jpath_match(const struct jpath *p, const struct jpath_elem *stack, size_t depth)
{
	size_t i = 0, j = 0, star_i = 0, star_j = 0;
	bool star = false;

	while (j < depth) {
		if (i < p->n && p->segs[i].type == JPATH_DESCEND) {
			star = true;
			star_i = i++;
			star_j = j;
		} else if (i < p->n && seg_matches(&p->segs[i], &stack[j])) {
			i++;
			j++;
		} else if (star) {
			i = star_i + 1;
			j = ++star_j;
		} else {
			return false;
		}
	}
	while (i < p->n && p->segs[i].type == JPATH_DESCEND)
		i++;
	return i == p->n;
}

void jpath_free(struct jpath *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++)
		free(p->segs[i].key);
	free(p->segs);
	free(p->text);
	p->segs = NULL;
	p->n = 0;
	p->text = NULL;
}
