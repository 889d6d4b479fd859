/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Protobuf masking on arbitrary bytes taken as an mm.test.Customer (tests/unit/pb/test.proto,
 * its descriptor set built by meson; FUZZ_PB_DESC, or $MESHMASK_FUZZ_PB_DESC, names it):
 * - pb_mask_message() succeeds exactly when pb_check() accepts the input, under a policy with
 *   every action (field paths into nested, repeated, map and packed fields, entities), and its
 *   output is then a valid Customer too;
 * - under a mask-only policy, masking the output again changes nothing;
 * - pb_mask_raw() changes nothing when it refuses the input, and what was wire format stays wire
 *   format (it masks text in place: every tag and length of the enclosing messages holds; a
 *   text that was a nested message after all may arrive garbled, so a schema check of the
 *   result is not expected to pass).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_mask.h"
#include "pbmask.h"
#include "pbschema.h"

#ifndef FUZZ_PB_DESC
#define FUZZ_PB_DESC "test.pb"
#endif

#define POLICY(name, rules)                                                    \
	"{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\"," \
	"\"metadata\":{\"name\":\"" name "\"},\"spec\":{\"rules\":[" rules "]}}"

static const char all_text[] = POLICY(
	"pb-all",
	"{\"name\":\"ssn\",\"fields\":[\"$..ssn\"],\"action\":{\"type\":\"mask\",\"keepLast\":4}},"
	"{\"name\":\"card\",\"fields\":[\"$.cards[*].number\"],\"entities\":[\"CREDIT_CARD\"],"
	"\"action\":{\"type\":\"replace\",\"value\":\"<a rather long replacement for a card "
	"number, "
	"longer than one hundred and twenty-seven bytes so that its length prefix needs two>\"}},"
	"{\"name\":\"mail\",\"fields\":[\"$..email\",\"$.referrer.address\"],"
	"\"action\":{\"type\":\"hash\",\"keyEnv\":\"MESHMASK_FUZZ_KEY\",\"prefix\":\"h:\"}},"
	"{\"name\":\"attr\",\"fields\":[\"$.attrs[*].value\",\"$.phones[1]\",\"$.scores[2]\","
	"\"$.account\",\"$..pin\",\"$.cards[0]\"],\"action\":{\"type\":\"redact\"}},"
	"{\"name\":\"blob\",\"fields\":[\"$.secret_blob\",\"$..balance\"],\"entities\":[\"US_SSN\"]"
	","
	"\"action\":{\"type\":\"mask\",\"char\":\"\\u00e9\"}},"
	"{\"name\":\"ents\",\"entities\":[\"US_SSN\",\"CREDIT_CARD\",\"EMAIL_ADDRESS\","
	"\"PHONE_NUMBER\",\"IBAN_CODE\",\"IP_ADDRESS\",\"JWT\",\"AWS_ACCESS_KEY_ID\"],"
	"\"action\":{\"type\":\"mask\",\"keepLast\":2}},"
	"{\"name\":\"redact\",\"entities\":[\"EMAIL_ADDRESS\"],\"action\":{\"type\":\"redact\"}}");

/*
 * Whole values masked with no character kept: a masked value masks to itself (numbers are removed
 * whole: removing scores[1] again would remove another).
 */
static const char mask_text[] =
	POLICY("pb-mask",
	       "{\"name\":\"f\",\"fields\":[\"$..ssn\",\"$.cards[*]\",\"$.attrs[0]\",\"$.scores\","
	       "\"$.referrer.blob\"],\"action\":{\"type\":\"mask\"}},"
	       "{\"name\":\"e\",\"fields\":[\"$..note\"],\"entities\":[\"US_SSN\"],"
	       "\"action\":{\"type\":\"mask\"}}");

/* No entity at all: pb_mask_raw() only reads the wire format. */
static const char wire_text[] = POLICY(
	"pb-wire", "{\"name\":\"h\",\"headers\":[\"x-a\"],\"action\":{\"type\":\"redact\"}}");

static struct policy *pol_all, *pol_mask, *pol_wire;
static struct pb_schema *schema;
static const struct pb_msgtype *customer;

static void setup(void)
{
	const char *path = getenv("MESHMASK_FUZZ_PB_DESC");
	char err[512];

	setenv("MESHMASK_FUZZ_KEY", "fuzz-key", 1);
	pol_all = fuzz_policy(all_text);
	pol_mask = fuzz_policy(mask_text);
	pol_wire = fuzz_policy(wire_text);
	path = path ? path : FUZZ_PB_DESC;
	if (!(schema = pb_schema_load(&path, 1, err, sizeof(err))) ||
	    !(customer = pb_schema_type(schema, "mm.test.Customer"))) {
		fprintf(stderr, "fuzz_pb: %s\n", schema ? "no mm.test.Customer" : err);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mm_buf a = {0}, b = {0}, raw = {0};
	struct mask_stats st = {0};
	struct mask_rule_stats rs[8];

	if (!schema)
		setup();
	int valid = pb_check(customer, data, size);
	if (valid != 0 && valid != -EPROTO)
		abort();

	st.n_rules = pol_all->n_rules;
	st.rules = rs;
	memset(rs, 0, sizeof(rs));
	int r = pb_mask_message(pol_all, customer, data, size, &a, &st);
	if (r != valid || (r == 0 && pb_check(customer, a.data, a.len) != 0)) {
		fprintf(stderr, "fuzz_pb: every action: %d for a message pb_check calls %d\n", r,
			valid);
		abort();
	}
	if (r && (a.len || st.values))
		abort(); /* an error leaves no output and counts nothing */

	mm_buf_reset(&a);
	r = pb_mask_message(pol_mask, customer, data, size, &a, NULL);
	if (r != valid)
		abort();
	if (r == 0) {
		if (pb_mask_message(pol_mask, customer, a.data, a.len, &b, NULL) != 0 ||
		    a.len != b.len || (a.len && memcmp(a.data, b.data, a.len))) {
			fprintf(stderr, "fuzz_pb: masking twice is not stable\n");
			abort();
		}
	}

	mm_buf_append(&raw, data, size);
	long n = pb_mask_raw(pol_all, raw.data, raw.len, NULL);
	if (n < 0 && n != -EPROTO)
		abort();
	if (n == -EPROTO && (size == 0 || memcmp(raw.data, data, size)))
		abort(); /* refused: nothing changed */
	mm_buf_reset(&b);
	mm_buf_append(&b, data, size);
	long wire = pb_mask_raw(pol_wire, b.data, b.len, NULL); /* finds nothing: changes nothing */
	if ((valid == 0 && wire < 0) || (wire >= 0) != (n >= 0) ||
	    (n >= 0 && pb_mask_raw(pol_wire, raw.data, raw.len, NULL) < 0)) {
		fprintf(stderr, "fuzz_pb: the raw scan broke the wire format (%ld, %ld)\n", n,
			wire);
		abort();
	}
	mm_buf_free(&a);
	mm_buf_free(&b);
	mm_buf_free(&raw);
	return 0;
}
