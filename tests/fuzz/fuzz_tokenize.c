/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The FF1 shape parser and tokens on arbitrary bytes. The first byte picks the options (bit 0
 * luhn, bit 1 keepDomain, bits 2-3 keepFirst, bits 4-5 keepLast), the rest is the value.
 * Aborts when the parser reports a shape outside the value or FF1's domain, when a value that
 * parses does not tokenize, when a token differs in length, separators or shape, or when
 * detokenizing it does not give the value back; also runs both actions through
 * action_apply_ctx (fallbacks included).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "action.h"
#include "tokenize.h"

static struct ff1_key *key;

static bool unit(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static unsigned char kb[32] = "fuzz-key-fuzz-key-fuzz-key-fuzz";
	static char tok[4096], back[4096];
	if (!key && !(key = ff1_key_new(kb, sizeof(kb))))
		abort();
	if (size < 1 || size > sizeof(tok))
		return 0;
	unsigned f = data[0];
	const char *v = (const char *)data + 1;
	size_t n = size - 1;
	struct tok_opts o = {.luhn = f & 1,
			     .keep_domain = f & 2,
			     .keep_first = (f >> 2) & 3,
			     .keep_last = (f >> 4) & 3,
			     .tweak = "fuzz",
			     .tweak_len = 4};
	struct tok_shape sh;
	const char *why = NULL;
	int r = tok_shape_parse(v, n, &o, &sh, &why);
	if (r && (r != -EDOM || !why))
		abort();
	if (!r) {
		if (sh.region_end > n || sh.first + sh.n > sh.units ||
		    !ff1_domain_ok(sh.radix, sh.n) || sh.radix != tok_radix(sh.kind))
			abort();
		int e = tok_transform(key, &o, false, v, n, tok);
		if (e && e != -EDOM) /* -EDOM: a walk over its bound, vanishingly rare */
			abort();
		if (!e) {
			for (size_t i = 0; i < n; i++)
				if (unit(v[i]) != unit(tok[i]) || (!unit(v[i]) && v[i] != tok[i]))
					abort();
			struct tok_shape sh2;
			if (tok_shape_parse(tok, n, &o, &sh2, NULL) || sh2.kind != sh.kind ||
			    sh2.n != sh.n || sh2.region_end != sh.region_end)
				abort();
			if (tok_transform(key, &o, true, tok, n, back) || memcmp(back, v, n))
				abort();
		}
	} else if (tok_transform(key, &o, false, v, n, tok) != -EDOM ||
		   tok_transform(key, &o, true, v, n, tok) != -EDOM) {
		abort();
	}

	/* Through the action: a tokenize never returns the value in clear unless it is short. */
	struct policy_action a = {.type = POLICY_ACTION_TOKENIZE,
				  .keep_first = o.keep_first,
				  .keep_last = o.keep_last,
				  .luhn = o.luhn,
				  .keep_domain = o.keep_domain,
				  .token_space = "fuzz",
				  .hash_key = kb,
				  .hash_key_len = sizeof(kb)};
	struct action_ctx c = {0};
	struct mm_buf out = {0};
	if (action_apply_ctx(&a, &c, -1, v, n, &out))
		abort();
	a.type = POLICY_ACTION_DETOKENIZE;
	out.len = 0;
	if (action_apply_ctx(&a, &c, -1, v, n, &out) || out.len != n)
		abort();
	action_ctx_free(&c);
	mm_buf_free(&out);
	return 0;
}
