/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The engine on arbitrary bodies of the formats other than plain JSON: NDJSON, text/plain,
 * application/x-www-form-urlencoded and an unknown type (onError), each with and without a
 * gzip/deflate Content-Encoding (the bytes are fed as they are, so mostly corrupt streams).
 * data[0] picks the format and encoding, data[1] where the input is split; the rest is the
 * body. Properties: success or failure and, on success, the output do not depend on the split
 * point, and a form body that needs no masking comes out unchanged.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_mask.h"

static const char policy_text[] =
	"{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","
	"\"metadata\":{\"name\":\"fuzzbody\"},\"spec\":{\"mode\":\"enforce\",\"onError\":\"fallback\","
	"\"rules\":["
	"{\"name\":\"f\",\"fields\":[\"$..ssn\",\"$..token\"],\"action\":{\"type\":\"mask\",\"keepLast\":2}},"
	"{\"name\":\"pw\",\"fields\":[\"$..password\"],\"action\":{\"type\":\"redact\"}},"
	"{\"name\":\"ents\",\"entities\":[\"US_SSN\",\"CREDIT_CARD\",\"EMAIL_ADDRESS\","
	"\"PHONE_NUMBER\",\"IBAN_CODE\",\"IP_ADDRESS\",\"JWT\",\"AWS_ACCESS_KEY_ID\"],"
	"\"action\":{\"type\":\"replace\"}}"
	"]}}";

static const char *const types[] = {
	"application/x-ndjson",
	"text/plain; charset=utf-8",
	"application/x-www-form-urlencoded",
	"application/octet-stream",
};
static const char *const encodings[] = {NULL, "gzip", "deflate", "identity"};

static struct policy *pol;

static int run(const char *type, const char *enc, const uint8_t *d, size_t n, size_t cut,
	       struct mm_buf *out)
{
	struct mask_opts o = {.policy = pol,
			      .direction = POLICY_DIR_RESPONSE,
			      .content_type = type,
			      .content_encoding = enc};
	return fuzz_mask(&o, d, n, cut, out);
}

/*
 * A form body no rule can touch: only the letters a-g (no parameter named ssn, token or
 * password, nothing a detector finds), '=' and '&'.
 */
static int harmless_form(const uint8_t *d, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((d[i] >= 'a' && d[i] <= 'g') || d[i] == '=' || d[i] == '&'))
			return 0;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!pol)
		pol = fuzz_policy(policy_text);
	if (size < 2)
		return 0;
	const char *type = types[data[0] & 3];
	const char *enc = encodings[(data[0] >> 2) & 3];
	const uint8_t *body = data + 2;
	size_t n = size - 2;
	size_t cut = n ? data[1] * n / 255 : 0;

	struct mm_buf a = {0}, b = {0};
	int ra = run(type, enc, body, n, 0, &a);
	int rb = run(type, enc, body, n, cut, &b);
	/* A stream that fails (blocked) may have sent a different prefix before the failure; the
	 * failure itself must not depend on the split. */
	if (ra != rb || (!ra && (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len))))) {
		fprintf(stderr, "%s (%s): output depends on the split at %zu\n", type,
			enc ? enc : "none", cut);
		abort();
	}
	if (ra == 0 && (data[0] & 3) == 2 && (!enc || !strcmp(enc, "identity")) &&
	    harmless_form(body, n) && (a.len != n || (n && memcmp(a.data, body, n)))) {
		fprintf(stderr, "a form body with nothing to mask changed\n");
		abort();
	}
	mm_buf_free(&a);
	mm_buf_free(&b);
	return 0;
}
