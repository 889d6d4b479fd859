/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Field paths of the policy language, a JSONPath subset: `$.a.b`, `$..key`, `*`, `[*]`, `[n]`,
 * `['quoted key']`. Parsed once at policy compile time; matched by the engine against the
 * path of the value it is looking at.
 */
#ifndef MESHMASK_JPATH_H
#define MESHMASK_JPATH_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

enum jpath_seg_type {
	JPATH_KEY,       /* .name or ['name']: one object member */
	JPATH_ANY_KEY,   /* .* : any object member */
	JPATH_INDEX,     /* [n]: one array element */
	JPATH_ANY_INDEX, /* [*]: any array element */
	JPATH_DESCEND,   /* ..  : zero or more levels of any kind; followed by another segment */
};

struct jpath_seg {
	enum jpath_seg_type type;
	char *key; /* JPATH_KEY: unescaped member name (owned, NUL-terminated) */
	size_t key_len;
	uint32_t index; /* JPATH_INDEX */
};

struct jpath {
	struct jpath_seg *segs; /* owned */
	size_t n;
	char *text; /* the source text, for error messages and metrics (owned) */
};

/* One level of the engine's current position: a member name (borrowed) or an array index. */
struct jpath_elem {
	const char *key; /* NULL for an array element */
	size_t key_len;
	uint32_t index;
};

/*
 * Parse `text` into `out`. Returns 0, or -EINVAL with a static message in *err and the byte
 * offset of the problem in *err_off.
 */
int jpath_parse(const char *text, struct jpath *out, const char **err, size_t *err_off);

/* Whether the path matches exactly the position `stack[0..depth)`. */
bool jpath_match(const struct jpath *p, const struct jpath_elem *stack, size_t depth);

void jpath_free(struct jpath *p);

#endif
