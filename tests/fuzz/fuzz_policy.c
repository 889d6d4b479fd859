/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Policy parser on arbitrary bytes: parse, validate, compile, print the errors and free it all.
 * Short inputs are also tried as a field path, through jpath_parse() and jpath_match().
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jpath.h"
#include "policy.h"

static void fuzz_jpath(const uint8_t *data, size_t size)
{
	static const struct jpath_elem stack[] = {
		{.key = "a", .key_len = 1}, {.index = 0}, {.key = "ssn", .key_len = 3},
		{.key = "a", .key_len = 1}, {.index = 7}, {.key = "k v", .key_len = 3},
	};
	struct jpath p;
	const char *err;
	size_t off;
	char *text = malloc(size + 1);

	if (!text)
		return;
	memcpy(text, data, size);
	text[size] = '\0';
	if (jpath_parse(text, &p, &err, &off) == 0) {
		for (size_t d = 0; d <= sizeof(stack) / sizeof(stack[0]); d++)
			jpath_match(&p, stack, d);
		jpath_free(&p);
	} else if (!err || off > size) {
		abort();
	}
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *devnull;
	struct policy_errors errs = {0};
	struct policy *p;

	if (!devnull)
		devnull = fopen("/dev/null", "w");
	p = policy_parse((const char *)data, size, "fuzz", &errs);
	if (p) {
		/* A compiled policy is complete: what the engine reads must be there. */
		if (!p->name || !p->json || strlen(p->etag) != 64 || p->n_rules == 0)
			abort();
		struct policy *v[] = {p, p};
		struct policy_set *s = policy_set_new(v, 1, 1);
		if (!s || policy_set_find(s, p->name) != p)
			abort();
		if (policy_set_new(v, 2, 2))
			abort();
		policy_set_unref(s);
		policy_unref(p);
	} else if (errs.n == 0) {
		abort();
	}
	if (devnull)
		policy_errors_print(devnull, "fuzz", &errs);
	policy_errors_free(&errs);
	if (size < 512)
		fuzz_jpath(data, size);
	return 0;
}
