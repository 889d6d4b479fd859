/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Arbitrary bytes as a gzip (or deflate, by the first byte) JSON body: never a crash, and a
 * stream that ends cleanly under onError=block yields a valid compressed output.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "buf.h"
#include "fuzz_mask.h"
#include "mask.h"
#include "policy.h"

static const char policy_text[] =
	"{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","
	"\"metadata\":{\"name\":\"fuzz\"},\"spec\":{\"mode\":\"enforce\",\"onError\":\"%s\","
	"\"rules\":["
	"{\"name\":\"pw\",\"fields\":[\"$..password\"],\"action\":{\"type\":\"redact\"}},"
	"{\"name\":\"ents\",\"entities\":[\"US_SSN\",\"CREDIT_CARD\",\"EMAIL_ADDRESS\"],"
	"\"action\":{\"type\":\"mask\",\"keepLast\":4}}]}}";

static struct policy *pols[3];

static int decodes(const struct mm_buf *b, int wbits)
{
	z_stream z = {0};
	unsigned char tmp[4096];
	int zr;
	if (inflateInit2(&z, wbits) != Z_OK)
		return 0;
	z.next_in = (unsigned char *)b->data;
	z.avail_in = (uInt)b->len;
	do {
		z.next_out = tmp;
		z.avail_out = sizeof(tmp);
		zr = inflate(&z, Z_NO_FLUSH);
	} while (zr == Z_OK);
	inflateEnd(&z);
	return zr == Z_STREAM_END;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const modes[] = {"fallback", "pass", "block"};
	if (!pols[0]) {
		for (int i = 0; i < 3; i++) {
			char doc[1024];
			struct policy_errors errs = {0};
			snprintf(doc, sizeof(doc), policy_text, modes[i]);
			pols[i] = policy_parse(doc, strlen(doc), "fuzz", &errs);
			if (!pols[i])
				abort();
		}
	}
	if (size < 2)
		return 0;
	const char *ce = data[0] & 1 ? "deflate" : "gzip";
	struct policy *p = pols[data[0] % 3];
	size_t cut = 1 + data[1] * (size - 1) / 255;
	struct mask_opts o = {
		.policy = p, .content_type = "application/json", .content_encoding = ce};
	struct mask_stream *s = mask_stream_new(&o);
	struct mm_buf out = {0};
	if (!s)
		abort();
	int r = mask_stream_write(s, data + 1, cut - 1, fuzz_sink, &out);
	if (!r)
		r = mask_stream_write(s, data + cut, size - cut, fuzz_sink, &out);
	if (!r)
		r = mask_stream_finish(s, fuzz_sink, &out);
	if (!r && p == pols[2] && mask_stream_outcome(s) == MASK_OUTCOME_MASKED && out.len &&
	    !decodes(&out, 47) && !decodes(&out, -15)) {
		fprintf(stderr, "a clean stream gave an undecodable output\n");
		abort();
	}
	mask_stream_free(s);
	mm_buf_free(&out);
	return 0;
}
