/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The engine on arbitrary JSON bodies: the output does not depend on where the input is split
 * (the split point comes from the first byte), and when jansson accepts the input, the masked
 * output is valid JSON too. A second policy has only `$..name` paths (the engine's shortcut) and
 * a hash action (prepared HMAC key): its output must equal that of the same rules plus a path
 * that never matches but forces the general path automaton.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fuzz_mask.h"

static const char policy_text[] =
	"{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","
	"\"metadata\":{\"name\":\"fuzz\"},\"spec\":{\"mode\":\"enforce\",\"onError\":\"fallback\","
	"\"rules\":["
	"{\"name\":\"ssnf\",\"fields\":[\"$..ssn\",\"$.a[1]\"],\"entities\":[\"US_SSN\"],"
	"\"action\":{\"type\":\"mask\",\"keepLast\":4}},"
	"{\"name\":\"pw\",\"fields\":[\"$..password\",\"$.u.*\"],\"action\":{\"type\":\"redact\"}},"
	"{\"name\":\"tok\",\"fields\":[\"$.t[*]\"],\"action\":{\"type\":\"replace\"}},"
	"{\"name\":\"m\",\"fields\":[\"$.m\"],\"action\":{\"type\":\"mask\",\"char\":\"\\u00e9\"}},"
	"{\"name\":\"ents\",\"entities\":[\"US_SSN\",\"CREDIT_CARD\",\"EMAIL_ADDRESS\","
	"\"PHONE_NUMBER\",\"IBAN_CODE\",\"IP_ADDRESS\",\"JWT\",\"AWS_ACCESS_KEY_ID\"],"
	"\"action\":{\"type\":\"mask\",\"keepLast\":2}},"
	"{\"name\":\"mail\",\"entities\":[\"EMAIL_ADDRESS\"],\"action\":{\"type\":\"redact\"}}"
	"]}}";

#define SIMPLE_RULES(extra)                                                                      \
	"{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","                   \
	"\"metadata\":{\"name\":\"fuzz2\"},\"spec\":{\"mode\":\"enforce\",\"onError\":\"pass\"," \
	"\"rules\":["                                                                            \
	"{\"name\":\"h\",\"fields\":[\"$..a\",\"b\"],\"action\":{\"type\":\"hash\","             \
	"\"keyEnv\":\"MESHMASK_FUZZ_KEY\",\"prefix\":\"h:\"}},"                                  \
	"{\"name\":\"r\",\"fields\":[\"$..b\",\"$..ssn\"" extra "],\"entities\":[\"US_SSN\"],"   \
	"\"action\":{\"type\":\"replace\"}},"                                                    \
	"{\"name\":\"e\",\"entities\":[\"EMAIL_ADDRESS\",\"CREDIT_CARD\"],"                      \
	"\"action\":{\"type\":\"hash\",\"keyEnv\":\"MESHMASK_FUZZ_KEY\",\"length\":9}}"          \
	"]}}"

static const char simple_text[] = SIMPLE_RULES("");
static const char general_text[] = SIMPLE_RULES(",\"$.zz[0].zz\"");

static struct policy *pol, *pol_simple, *pol_general;

static int run_with(struct policy *p, const uint8_t *d, size_t n, size_t cut, struct mm_buf *out)
{
	struct mask_opts o = {.policy = p, .content_type = "application/json"};
	return fuzz_mask(&o, d, n, cut, out);
}

static int run(const uint8_t *d, size_t n, size_t cut, struct mm_buf *out)
{
	return run_with(pol, d, n, cut, out);
}

static int same(int ra, const struct mm_buf *a, int rb, const struct mm_buf *b)
{
	return ra == rb && a->len == b->len && (!a->len || !memcmp(a->data, b->data, a->len));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!pol) {
		pol = fuzz_policy(policy_text);
		setenv("MESHMASK_FUZZ_KEY", "fuzz-key", 1);
		pol_simple = fuzz_policy(simple_text);
		pol_general = fuzz_policy(general_text);
	}
	if (size == 0)
		return 0;
	size_t cut = size > 1 ? 1 + data[0] * (size - 1) / 255 : 0;
	struct mm_buf a = {0}, b = {0};
	int ra = run(data, size, 0, &a);
	int rb = run(data, size, cut, &b);
	if (ra != rb || a.len != b.len || (a.len && memcmp(a.data, b.data, a.len))) {
		fprintf(stderr, "output depends on the split at %zu\n", cut);
		abort();
	}
	json_error_t err;
	json_t *in = json_loadb((const char *)data, size, JSON_DECODE_ANY, &err);
	if (in) {
		json_t *out = json_loadb(a.data ? a.data : "", a.len, JSON_DECODE_ANY, &err);
		if (!out) {
			fprintf(stderr, "valid JSON in, invalid JSON out: %s\n", err.text);
			abort();
		}
		json_decref(out);
		json_decref(in);
	}
	mm_buf_free(&a);
	mm_buf_free(&b);

	struct mm_buf c = {0}, d = {0}, e = {0};
	int rc = run_with(pol_simple, data, size, 0, &c);
	int rd = run_with(pol_simple, data, size, cut, &d);
	int re = run_with(pol_general, data, size, cut, &e);
	if (!same(rc, &c, rd, &d)) {
		fprintf(stderr, "simple policy: output depends on the split at %zu\n", cut);
		abort();
	}
	if (!same(rc, &c, re, &e)) {
		fprintf(stderr, "`$..name` shortcut and general automaton differ\n");
		abort();
	}
	mm_buf_free(&c);
	mm_buf_free(&d);
	mm_buf_free(&e);
	return 0;
}
