/* SPDX-License-Identifier: Apache-2.0 */
/* JSONPath subset: parsing (segments, errors with byte offsets) and matching. */
#include <errno.h>
#include <string.h>

#include "jpath.h"
#include "tap.h"

static void parse_ok(const char *text, const char *want)
{
	struct jpath p;
	const char *err;
	size_t off;
	char got[256] = "";
	size_t n = 0;

	int ret = jpath_parse(text, &p, &err, &off);
	if (!ok(ret == 0, "parse %s", text)) {
		printf("#   error at %zu: %s\n", off, err);
		return;
	}
	for (size_t i = 0; i < p.n; i++) {
		const struct jpath_seg *s = &p.segs[i];
		switch (s->type) {
		case JPATH_KEY:
			n += snprintf(got + n, sizeof(got) - n, "K(%s)", s->key);
			break;
		case JPATH_ANY_KEY:
			n += snprintf(got + n, sizeof(got) - n, "K*");
			break;
		case JPATH_INDEX:
			n += snprintf(got + n, sizeof(got) - n, "I(%u)", s->index);
			break;
		case JPATH_ANY_INDEX:
			n += snprintf(got + n, sizeof(got) - n, "I*");
			break;
		case JPATH_DESCEND:
			n += snprintf(got + n, sizeof(got) - n, "..");
			break;
		}
	}
	is_str(got, want, "segments of %s", text);
	is_str(p.text, text, "text kept for %s", text);
	jpath_free(&p);
}

static void parse_err(const char *text, size_t want_off, const char *want_msg)
{
	struct jpath p;
	const char *err = NULL;
	size_t off = 0;

	int ret = jpath_parse(text, &p, &err, &off);
	is_int(ret, -EINVAL, "reject %s", text);
	is_int(off, want_off, "offset for %s", text);
	is_str(err, want_msg, "message for %s", text);
	ok(p.segs == NULL && p.n == 0 && p.text == NULL, "nothing left allocated for %s", text);
}

#define K(s)                                         \
	{                                            \
		.key = (s), .key_len = sizeof(s) - 1 \
	}
#define I(n)                              \
	{                                 \
		.key = NULL, .index = (n) \
	}

static void match(const char *path, const struct jpath_elem *st, size_t depth, bool want,
		  const char *desc)
{
	struct jpath p;
	const char *err;
	size_t off;

	if (jpath_parse(path, &p, &err, &off)) {
		ok(0, "parse %s for matching: %s", path, err);
		return;
	}
	is_int(jpath_match(&p, st, depth), want, "%s %s %s", path, want ? "matches" : "rejects",
	       desc);
	jpath_free(&p);
}

#define M(path, want, desc, ...)                                            \
	do {                                                                \
		const struct jpath_elem st_[] = {__VA_ARGS__};              \
		match(path, st_, sizeof(st_) / sizeof(st_[0]), want, desc); \
	} while (0)

int main(void)
{
	parse_ok("$", "");
	parse_ok("$.a", "K(a)");
	parse_ok("$.a.b_c-d", "K(a)K(b_c-d)");
	parse_ok("$['a b']", "K(a b)");
	parse_ok("$['it\\'s']", "K(it's)");
	parse_ok("$['back\\\\slash']", "K(back\\slash)");
	parse_ok("$[\"dq\\\"x\"]", "K(dq\"x)");
	parse_ok("$['']", "K()");
	parse_ok("$[0]", "I(0)");
	parse_ok("$[4294967295]", "I(4294967295)");
	parse_ok("$[*]", "I*");
	parse_ok("$.*", "K*");
	parse_ok("$..name", "..K(name)");
	parse_ok("$..*", "..K*");
	parse_ok("$..[3]", "..I(3)");
	parse_ok("$..[*]", "..I*");
	parse_ok("$..['k.x']", "..K(k.x)");
	parse_ok("$.a[12].b..c", "K(a)I(12)K(b)..K(c)");
	parse_ok("$.caf\xc3\xa9", "K(caf\xc3\xa9)");

	parse_err("", 0, "a path must start with '$'");
	parse_err("ssn", 0, "a path must start with '$'");
	parse_err("$a", 1, "expected '.' or '['");
	parse_err("$.", 2, "expected a name or '*' after '.'");
	parse_err("$.a.", 4, "expected a name or '*' after '.'");
	parse_err("$..", 3, "expected a name, '*' or '[' after '..'");
	parse_err("$...a", 3, "expected a name, '*' or '[' after '..'");
	parse_err("$.a b", 3, "expected '.' or '['");
	parse_err("$[", 2, "unterminated '[': expected an index, '*' or a quoted key");
	parse_err("$[a]", 2, "expected an index, '*' or a quoted key after '['");
	parse_err("$[1", 3, "expected ']' after an array index");
	parse_err("$[1x]", 3, "expected ']' after an array index");
	parse_err("$[01]", 2, "leading zeros are not allowed in an array index");
	parse_err("$[-1]", 2, "negative array indexes are not supported");
	parse_err("$[4294967296]", 2, "array index too large");
	parse_err("$[*", 3, "expected ']' after '[*'");
	parse_err("$['abc", 2, "unterminated quoted key");
	parse_err("$['abc\\", 2, "unterminated quoted key");
	parse_err("$['a\\x']", 4, "unknown escape in quoted key (only \\' and \\\\)");
	parse_err("$['a'", 5, "expected ']' after a quoted key");
	parse_err("$['a']x", 6, "expected '.' or '['");
	{
		char longp[4100];
		memset(longp, 'a', sizeof(longp) - 1);
		longp[0] = '$';
		longp[1] = '.';
		longp[sizeof(longp) - 1] = '\0';
		parse_err(longp, 4096, "path too long");
		longp[4096] = '\0';
		struct jpath p;
		const char *e;
		size_t o;
		ok(jpath_parse(longp, &p, &e, &o) == 0 && p.n == 1 && p.segs[0].key_len == 4094,
		   "4096-byte path");
		jpath_free(&p);
	}
	parse_err("$.a[0]..", 8, "expected a name, '*' or '[' after '..'");

	{
		struct jpath p;
		const char *e;
		size_t o;
		jpath_parse("$", &p, &e, &o);
		ok(jpath_match(&p, NULL, 0), "$ matches depth 0");
		jpath_free(&p);
		jpath_parse("$..a", &p, &e, &o);
		ok(!jpath_match(&p, NULL, 0), "$..a rejects the root");
		jpath_free(&p);
	}
	M("$", false, "a member", K("a"));
	M("$.a", true, "[a]", K("a"));
	M("$.a", false, "[b]", K("b"));
	M("$.a", false, "[a, b]", K("a"), K("b"));
	M("$.a", false, "[0]", I(0));
	M("$.ab", false, "[a] (prefix)", K("a"));
	M("$.a", false, "[ab]", K("ab"));
	M("$..ssn", true, "[ssn]", K("ssn"));
	M("$..ssn", true, "[a, ssn]", K("a"), K("ssn"));
	M("$..ssn", true, "[a, 3, b, ssn]", K("a"), I(3), K("b"), K("ssn"));
	M("$..ssn", false, "[ssn, x]", K("ssn"), K("x"));
	M("$..ssn", true, "[ssn, ssn]", K("ssn"), K("ssn"));
	M("$..*", true, "[a]", K("a"));
	M("$..*", true, "[a, 0, b]", K("a"), I(0), K("b"));
	M("$..*", false, "[a, 0]", K("a"), I(0));
	M("$..[0]", true, "[0]", I(0));
	M("$..[0]", true, "[a, 0]", K("a"), I(0));
	M("$..[0]", false, "[a, 1]", K("a"), I(1));
	M("$..[*]", true, "[a, 7]", K("a"), I(7));
	M("$..['k']", true, "[x, y, k]", K("x"), K("y"), K("k"));
	M("$['a.b']", true, "[a.b]", K("a.b"));
	M("$['a.b']", false, "[a, b]", K("a"), K("b"));
	M("$['0']", false, "[0] (key vs index)", I(0));
	M("$[0]", false, "['0'] (index vs key)", K("0"));
	M("$.*", true, "[x]", K("x"));
	M("$.*", false, "[0]", I(0));
	M("$[*]", true, "[5]", I(5));
	M("$[*]", false, "[x]", K("x"));
	M("$.a[*].b", true, "[a, 0, b]", K("a"), I(0), K("b"));
	M("$.a[*].b", false, "[a, b, b]", K("a"), K("b"), K("b"));
	M("$.a[2]", true, "[a, 2]", K("a"), I(2));
	M("$.a[2]", false, "[a, 3]", K("a"), I(3));
	M("$.a..b..c", true, "[a, b, c]", K("a"), K("b"), K("c"));
	M("$.a..b..c", true, "[a, x, b, 0, y, c]", K("a"), K("x"), K("b"), I(0), K("y"), K("c"));
	M("$.a..b..c", false, "[a, c, b]", K("a"), K("c"), K("b"));
	M("$.a..b..c", false, "[x, a, b, c]", K("x"), K("a"), K("b"), K("c"));
	M("$..a.b", true, "[a, a, b] (backtracking)", K("a"), K("a"), K("b"));
	M("$..a.b", true, "[a, x, a, b]", K("a"), K("x"), K("a"), K("b"));
	M("$..a.b", false, "[a, b, x]", K("a"), K("b"), K("x"));
	M("$..a..a..a", true, "[a, a, a]", K("a"), K("a"), K("a"));
	M("$..a..a..a", false, "[a, x, a]", K("a"), K("x"), K("a"));

	/* The engine's keys are borrowed spans, not NUL-terminated strings. */
	{
		const struct jpath_elem st[] = {{.key = "ssnXYZ", .key_len = 3}};
		match("$..ssn", st, 1, true, "a 3-byte span of \"ssnXYZ\"");
	}
	{
		const struct jpath_elem st[] = {{.key = "a\0b", .key_len = 3}};
		match("$.a", st, 1, false, "a key with an embedded NUL");
	}

	jpath_free(NULL);
	return tap_done();
}
