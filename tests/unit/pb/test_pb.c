/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Protobuf masking by field names (agent/engine/pbmask.c) over the descriptor set of test.proto
 * (argv[1], built by protoc). Messages are encoded and the results decoded with protobuf-c code
 * generated from the same protos: a decoded result proves every length prefix is right, and
 * assertions name fields.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pbmask.h"
#include "pbschema.h"
#include "policy.h"
#include "tap.h"
#include "test.pb-c.h"

static struct pb_schema *schema;
static const struct pb_msgtype *customer_t, *node_t;

/* Tests write JSON with ' for " to stay readable. */
static struct policy *pol(const char *rules, const char *extra)
{
	char doc[4096];
	struct policy_errors e = {0};
	snprintf(doc, sizeof(doc),
		 "{'apiVersion':'meshmask.io/v1alpha1','kind':'MaskingPolicy',"
		 "'metadata':{'name':'t'},'spec':{%s'rules':[%s]}}",
		 extra ? extra : "", rules);
	for (char *c = doc; *c; c++)
		if (*c == '\'')
			*c = '"';
	struct policy *p = policy_parse(doc, strlen(doc), "t.json", &e);
	if (!p) {
		printf("# policy does not compile: %s\n", doc);
		policy_errors_print(stdout, "#", &e);
	}
	policy_errors_free(&e);
	return p;
}

static struct mm_buf pack(const ProtobufCMessage *m)
{
	struct mm_buf b = {0};
	size_t n = protobuf_c_message_get_packed_size(m);
	mm_buf_reserve(&b, n + 1);
	b.len = protobuf_c_message_pack(m, (uint8_t *)b.data);
	return b;
}

/* Mask `in` as a Customer under `rules`; the result decoded (NULL if it does not decode). */
static Mm__Test__Customer *run(const char *rules, const struct mm_buf *in, struct mm_buf *out,
			       int *rc)
{
	struct policy *p = pol(rules, NULL);
	mm_buf_reset(out);
	*rc = p ? pb_mask_message(p, customer_t, in->data, in->len, out, NULL) : -EINVAL;
	policy_unref(p);
	if (*rc)
		return NULL;
	return mm__test__customer__unpack(NULL, out->len, (const uint8_t *)out->data);
}

static Mm__Common__Address addr(const char *street, const char *city, const char *zip)
{
	Mm__Common__Address a = MM__COMMON__ADDRESS__INIT;
	a.street = (char *)street;
	a.city = (char *)city;
	a.zip = (char *)zip;
	return a;
}

/* A customer with a bit of everything; `ref` (may be NULL) as its referrer. */
static struct mm_buf sample(Mm__Test__Customer *ref)
{
	static Mm__Common__Address a;
	static Mm__Test__Card c0 = MM__TEST__CARD__INIT, c1 = MM__TEST__CARD__INIT;
	static Mm__Test__Card *cards[2] = {&c0, &c1};
	static Mm__Test__Customer__AttrsEntry e0 = MM__TEST__CUSTOMER__ATTRS_ENTRY__INIT,
					      e1 = MM__TEST__CUSTOMER__ATTRS_ENTRY__INIT;
	static Mm__Test__Customer__AttrsEntry *attrs[2] = {&e0, &e1};
	static char *phones[3] = {"555-010-0001", "+1 212 555 0199", "555-010-0003"};
	static int32_t scores[4] = {1, 300, -5, 70000};
	Mm__Test__Customer c = MM__TEST__CUSTOMER__INIT;

	a = addr("1 Main St", "Springfield", "12345");
	c0.number = "4111 1111 1111 1111";
	c0.holder = "Ann Smith";
	c0.exp_month = 7;
	c1.number = "5500 0000 0000 0004";
	c1.holder = "Bob Smith";
	c1.exp_month = 12;
	e0.key = "tier";
	e0.value = "gold";
	e1.key = "contact";
	e1.value = "ann@example.com";
	c.name = "Ann Smith";
	c.ssn = "145-22-1289";
	c.email = "ann@example.com";
	c.address = &a;
	c.n_phones = 3;
	c.phones = phones;
	c.n_cards = 2;
	c.cards = cards;
	c.n_attrs = 2;
	c.attrs = attrs;
	c.contact_case = MM__TEST__CUSTOMER__CONTACT_HOME_PHONE;
	c.home_phone = "212-555-0100";
	c.n_scores = 4;
	c.scores = scores;
	c.blob.data = (uint8_t *)"raw 536-22-1234 raw";
	c.blob.len = 19;
	c.secret_blob.data = (uint8_t *)"sb 536-22-1234 sb";
	c.secret_blob.len = 17;
	c.account = 536221234;
	c.referrer = ref;
	c.note = "call 536-22-1234 or mail bob@example.org";
	c.balance = 12.5;
	c.pin = 4321;
	return pack(&c.base);
}

static const char *attr(const Mm__Test__Customer *c, const char *key)
{
	for (size_t i = 0; c && i < c->n_attrs; i++)
		if (!strcmp(c->attrs[i]->key, key))
			return c->attrs[i]->value;
	return NULL;
}

static void test_fields(void)
{
	struct mm_buf in = sample(NULL), out = {0};
	Mm__Test__Customer *c;
	int rc;

	/* Nothing matches: byte-identical. */
	c = run("{'name':'r','fields':['$.nope','$..missing'],'action':{'type':'replace'}}", &in,
		&out, &rc);
	ok(rc == 0 && out.len == in.len && !memcmp(out.data, in.data, in.len),
	   "nothing matched: output byte-identical");
	mm__test__customer__free_unpacked(c, NULL);

	c = run("{'name':'r','fields':['$.ssn'],'action':{'type':'mask','keepLast':4}}", &in, &out,
		&rc);
	ok(c && out.len == in.len, "mask keeps the length");
	is_str(c ? c->ssn : NULL, "***-**-1289", "$.ssn masked");
	is_str(c ? c->name : NULL, "Ann Smith", "name untouched");
	mm__test__customer__free_unpacked(c, NULL);

	/* Nested */
	c = run("{'name':'r','fields':['$.address.zip'],'action':{'type':'mask','char':'X'}}", &in,
		&out, &rc);
	is_str(c && c->address ? c->address->zip : NULL, "XXXXX", "$.address.zip masked");
	is_str(c && c->address ? c->address->city : NULL, "Springfield", "city untouched");
	mm__test__customer__free_unpacked(c, NULL);

	/* Repeated strings */
	c = run("{'name':'r','fields':['$.phones[*]'],'action':{'type':'replace','value':'<P>'}}",
		&in, &out, &rc);
	ok(c && c->n_phones == 3 && !strcmp(c->phones[0], "<P>") && !strcmp(c->phones[2], "<P>"),
	   "$.phones[*] replaced (lengths changed)");
	mm__test__customer__free_unpacked(c, NULL);
	c = run("{'name':'r','fields':['$.phones[1]'],'action':{'type':'replace','value':'<P>'}}",
		&in, &out, &rc);
	ok(c && c->n_phones == 3 && !strcmp(c->phones[0], "555-010-0001") &&
		   !strcmp(c->phones[1], "<P>") && !strcmp(c->phones[2], "555-010-0003"),
	   "$.phones[1]: only the second");
	mm__test__customer__free_unpacked(c, NULL);
	c = run("{'name':'r','fields':['$.phones'],'action':{'type':'redact'}}", &in, &out, &rc);
	ok(c && c->n_phones == 0, "$.phones (the whole array) redacted: every element removed");
	mm__test__customer__free_unpacked(c, NULL);

	/* Repeated messages */
	c = run("{'name':'r','fields':['$.cards[*].number'],'action':{'type':'mask','keepLast':4}}",
		&in, &out, &rc);
	ok(c && c->n_cards == 2 && !strcmp(c->cards[0]->number, "**** **** **** 1111") &&
		   !strcmp(c->cards[1]->number, "**** **** **** 0004") &&
		   !strcmp(c->cards[1]->holder, "Bob Smith") && c->cards[1]->exp_month == 12,
	   "$.cards[*].number masked in each card");
	mm__test__customer__free_unpacked(c, NULL);
	c = run("{'name':'r','fields':['$.cards[0].holder'],'action':{'type':'redact'}}", &in, &out,
		&rc);
	ok(c && c->n_cards == 2 && !strcmp(c->cards[0]->holder, "") &&
		   !strcmp(c->cards[1]->holder, "Bob Smith"),
	   "$.cards[0].holder redacted in the first card only");
	mm__test__customer__free_unpacked(c, NULL);
	c = run("{'name':'r','fields':['$..holder'],'action':{'type':'hash','keyEnv':'MM_PB_KEY',"
		"'length':8,'prefix':'h:'}}",
		&in, &out, &rc);
	ok(c && c->n_cards == 2 && strlen(c->cards[0]->holder) == 10 &&
		   !strncmp(c->cards[0]->holder, "h:", 2) &&
		   strcmp(c->cards[0]->holder, c->cards[1]->holder),
	   "$..holder hashed");
	mm__test__customer__free_unpacked(c, NULL);
	/* An object at a path: every leaf below it. */
	c = run("{'name':'r','fields':['$.cards[1]'],'action':{'type':'replace','value':'-'}}", &in,
		&out, &rc);
	ok(c && c->n_cards == 2 && !strcmp(c->cards[1]->number, "-") &&
		   !strcmp(c->cards[1]->holder, "-") && c->cards[1]->exp_month == 0 &&
		   !strcmp(c->cards[0]->holder, "Ann Smith"),
	   "$.cards[1]: its strings replaced, its number removed");
	mm__test__customer__free_unpacked(c, NULL);

	/* Maps: repeated entries with key and value. */
	c = run("{'name':'r','fields':['$.attrs[*].value'],'action':{'type':'mask'}}", &in, &out,
		&rc);
	is_str(attr(c, "tier"), "****", "map values masked (key kept)");
	is_str(attr(c, "contact"), "***@*******.***", "... each of them");
	mm__test__customer__free_unpacked(c, NULL);

	/* oneof */
	c = run("{'name':'r','fields':['$.home_phone'],'action':{'type':'replace'}}", &in, &out,
		&rc);
	ok(c && c->contact_case == MM__TEST__CUSTOMER__CONTACT_HOME_PHONE &&
		   !strcmp(c->home_phone, "<MASKED>"),
	   "a oneof member replaced");
	mm__test__customer__free_unpacked(c, NULL);

	/* Numbers cannot hold a mask: removed. */
	c = run("{'name':'r','fields':['$.account','$.pin','$.balance'],'action':{'type':'mask'}}",
		&in, &out, &rc);
	ok(c && c->account == 0 && c->pin == 0 && c->balance == 0 && !strcmp(c->ssn, "145-22-1289"),
	   "numbers under a field rule removed");
	mm__test__customer__free_unpacked(c, NULL);
	c = run("{'name':'r','fields':['$.account','$.pin'],'entities':['US_SSN'],"
		"'action':{'type':'mask'}}",
		&in, &out, &rc);
	ok(c && c->account == 0 && c->pin == 4321,
	   "fields + entities: a number removed only when its digits are an entity");
	mm__test__customer__free_unpacked(c, NULL);

	/* Packed repeated scalars. */
	c = run("{'name':'r','entities':['US_SSN','CREDIT_CARD','PHONE_NUMBER'],"
		"'action':{'type':'mask'}}",
		&in, &out, &rc);
	ok(c && c->n_scores == 4 && c->scores[1] == 300 && c->scores[3] == 70000,
	   "packed scalars left intact by entity rules");
	{
		/* the packed record is byte-identical: tag 0x52 */
		const char *a = memchr(in.data, 0x52, in.len), *b = memchr(out.data, 0x52, out.len);
		ok(a && b && !memcmp(a, b, 2 + (unsigned char)a[1]), "... byte for byte");
	}
	mm__test__customer__free_unpacked(c, NULL);
	c = run("{'name':'r','fields':['$.scores[1]'],'action':{'type':'mask'}}", &in, &out, &rc);
	ok(c && c->n_scores == 3 && c->scores[0] == 1 && c->scores[1] == -5 &&
		   c->scores[2] == 70000,
	   "$.scores[1]: that element removed from the packed record");
	mm__test__customer__free_unpacked(c, NULL);
	c = run("{'name':'r','fields':['$.scores'],'action':{'type':'mask'}}", &in, &out, &rc);
	ok(c && c->n_scores == 0, "$.scores: the packed record removed");
	mm__test__customer__free_unpacked(c, NULL);
	mm_buf_free(&in);
	mm_buf_free(&out);
}

static void test_lengths(void)
{
	Mm__Test__Customer r2 = MM__TEST__CUSTOMER__INIT, r1 = MM__TEST__CUSTOMER__INIT;
	struct mm_buf in, out = {0};
	Mm__Test__Customer *c;
	char big[400], rules[1024];
	int rc;

	/* Two levels of referrers: a change deep inside rewrites every enclosing prefix. */
	r2.ssn = "078-05-1120";
	r2.email = "deep@example.com";
	r2.note = "x";
	r1.referrer = &r2;
	r1.ssn = "219-09-9999";
	in = sample(&r1);

	memset(big, 'L', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	snprintf(rules, sizeof(rules),
		 "{'name':'r','fields':['$..ssn'],'action':{'type':'replace','value':'%s'}}", big);
	c = run(rules, &in, &out, &rc);
	ok(c && !strcmp(c->ssn, big) && c->referrer && !strcmp(c->referrer->ssn, big) &&
		   c->referrer->referrer && !strcmp(c->referrer->referrer->ssn, big) &&
		   !strcmp(c->referrer->referrer->email, "deep@example.com"),
	   "replace longer than 127 bytes at three depths: every prefix rewritten");
	ok(c && out.len == in.len + 3 * (strlen(big) - 11) + 3 + 2, "... output length (%zu)",
	   out.len);
	mm__test__customer__free_unpacked(c, NULL);

	c = run("{'name':'r','fields':['$.referrer.referrer.email'],'action':{'type':'hash',"
		"'keyEnv':'MM_PB_KEY'}}",
		&in, &out, &rc);
	ok(c && c->referrer && c->referrer->referrer &&
		   strlen(c->referrer->referrer->email) == 16 &&
		   !strcmp(c->email, "ann@example.com"),
	   "hash deep inside: shorter, decodes");
	mm__test__customer__free_unpacked(c, NULL);

	c = run("{'name':'r','fields':['$..ssn','$..email'],'action':{'type':'redact'}}", &in, &out,
		&rc);
	ok(c && !strcmp(c->ssn, "") && !strcmp(c->email, "") && !strcmp(c->referrer->ssn, "") &&
		   !strcmp(c->referrer->referrer->email, "") &&
		   !strcmp(c->referrer->referrer->note, "x"),
	   "redact removes the fields at every depth");
	ok(out.len == in.len - (2 + 11) - (2 + 15) - (2 + 11) - (2 + 11) - (2 + 16),
	   "... from the wire (%zu bytes)", out.len);
	mm__test__customer__free_unpacked(c, NULL);
	mm_buf_free(&in);
	mm_buf_free(&out);
}

static void test_entities(void)
{
	struct mm_buf in = sample(NULL), out = {0};
	Mm__Test__Customer *c;
	struct mask_stats st = {0};
	int rc;

	c = run("{'name':'ssn','entities':['US_SSN'],'action':{'type':'mask','keepLast':4}},"
		"{'name':'mail','entities':['EMAIL_ADDRESS'],'action':{'type':'replace'}}",
		&in, &out, &rc);
	is_str(c ? c->note : NULL, "call ***-**-1234 or mail <EMAIL_ADDRESS>",
	       "entities in a string field");
	is_str(c ? c->ssn : NULL, "***-**-1289", "... in every string field");
	is_str(attr(c, "contact"), "<EMAIL_ADDRESS>", "... map values too");
	ok(c && c->blob.len == 19 && !memcmp(c->blob.data, "raw 536-22-1234 raw", 19),
	   "a bytes field is not scanned");
	mm__test__customer__free_unpacked(c, NULL);

	c = run("{'name':'ssn','entities':['US_SSN'],'action':{'type':'mask'}},"
		"{'name':'sb','fields':['$.secret_blob'],'entities':['US_SSN'],"
		"'action':{'type':'mask','keepLast':4}}",
		&in, &out, &rc);
	ok(c && c->secret_blob.len == 17 && !memcmp(c->secret_blob.data, "sb ***-**-1234 sb", 17),
	   "a bytes field named by a rule is scanned");
	ok(c && !memcmp(c->blob.data, "raw 536-22-1234 raw", 19), "... the others are not");
	mm__test__customer__free_unpacked(c, NULL);

	/* Stats: per rule and entity. */
	struct policy *p = pol("{'name':'a','fields':['$..city'],'action':{'type':'mask'}},"
			       "{'name':'b','entities':['US_SSN','EMAIL_ADDRESS'],"
			       "'action':{'type':'mask'}}",
			       NULL);
	st.n_rules = 2;
	st.rules = calloc(2, sizeof(*st.rules));
	mm_buf_reset(&out);
	rc = pb_mask_message(p, customer_t, in.data, in.len, &out, &st);
	ok(rc == 0 && st.rules[0].values == 1 && st.rules[1].values == 5 &&
		   st.rules[1].by_entity[MM_ENT_US_SSN] == 2 &&
		   st.rules[1].by_entity[MM_ENT_EMAIL_ADDRESS] == 3 && st.values == 6 &&
		   st.bytes_in == in.len && st.bytes_out == out.len,
	   "stats per rule and entity (%llu %llu)", (unsigned long long)st.rules[0].values,
	   (unsigned long long)st.rules[1].values);
	policy_unref(p);

	/* Observe: counted, unchanged. */
	p = pol("{'name':'b','entities':['US_SSN'],'action':{'type':'replace'}}",
		"'mode':'observe',");
	memset(st.rules, 0, 2 * sizeof(*st.rules));
	st.n_rules = 1;
	mm_buf_reset(&out);
	rc = pb_mask_message(p, customer_t, in.data, in.len, &out, &st);
	ok(rc == 0 && out.len == in.len && !memcmp(out.data, in.data, in.len) &&
		   st.rules[0].values == 2,
	   "observe: counted, output unchanged");
	policy_unref(p);
	free(st.rules);
	mm_buf_free(&in);
	mm_buf_free(&out);
}

static void test_unknown(void)
{
	Mm__Test__CustomerV2 v = MM__TEST__CUSTOMER_V2__INIT;
	Mm__Common__Address a = addr("2 Side St", "536-22-1234", "99999");
	struct mm_buf in, out = {0};
	int rc;

	v.name = "Ann";
	v.ssn = "536-22-1234";
	v.extra = "extra 536-22-1234";
	v.extra_num = -42;
	v.extra_addr = &a;
	v.extra_f64 = 0x1122334455667788ull;
	v.extra_f32 = 0xdeadbeef;
	in = pack(&v.base);
	/* A non-canonical varint length (0x8b 0x00 = 11) must survive too when nothing changes. */
	struct policy *p = pol("{'name':'r','fields':['$.ssn'],'entities':['US_SSN'],"
			       "'action':{'type':'mask','keepLast':4}}",
			       NULL);
	rc = pb_mask_message(p, customer_t, in.data, in.len, &out, NULL);
	Mm__Test__CustomerV2 *o =
		rc ? NULL : mm__test__customer_v2__unpack(NULL, out.len, (uint8_t *)out.data);
	ok(o && !strcmp(o->ssn, "***-**-1234") && !strcmp(o->extra, "extra 536-22-1234") &&
		   o->extra_num == -42 && o->extra_addr &&
		   !strcmp(o->extra_addr->city, "536-22-1234") &&
		   o->extra_f64 == 0x1122334455667788ull && o->extra_f32 == 0xdeadbeef,
	   "unknown fields kept (and not scanned)");
	ok(out.len == in.len && !memcmp(out.data + 18, in.data + 18, in.len - 18),
	   "... byte for byte");
	mm__test__customer_v2__free_unpacked(o, NULL);

	const char noncanon[] = "\x0a\x83\x00"
				"Ann"
				"\x12\x02"
				"ok";
	mm_buf_reset(&out);
	rc = pb_mask_message(p, customer_t, noncanon, sizeof(noncanon) - 1, &out, NULL);
	ok(rc == 0 && out.len == sizeof(noncanon) - 1 && !memcmp(out.data, noncanon, out.len),
	   "a non-canonical length prefix kept as it came");
	policy_unref(p);

	/* Under a path a rule names, an unknown field is removed. */
	const char sub[] = "\x22\x0a"
			   "\x0a\x01"
			   "a"
			   "\xf8\x07\x05"
			   "\x1a\x02"
			   "zz";
	p = pol("{'name':'r','fields':['$.address'],'action':{'type':'mask'}}", NULL);
	mm_buf_reset(&out);
	rc = pb_mask_message(p, customer_t, sub, sizeof(sub) - 1, &out, NULL);
	ok(rc == 0 && out.len == 9 && !memcmp(out.data, "\x22\x07\x0a\x01*\x1a\x02**", 9),
	   "an unknown field under a named path removed");
	policy_unref(p);
	mm_buf_free(&in);
	mm_buf_free(&out);
}

static void expect_proto(const char *what, const void *msg, size_t len)
{
	struct policy *p = pol("{'name':'r','entities':['US_SSN'],'action':{'type':'mask'}}", NULL);
	struct mm_buf out = {0};
	mm_buf_puts(&out, "keep");
	int rc = pb_mask_message(p, customer_t, msg, len, &out, NULL);
	ok(rc == -EPROTO && out.len == 4 && pb_check(customer_t, msg, len) == -EPROTO,
	   "-EPROTO: %s", what);
	policy_unref(p);
	mm_buf_free(&out);
}

/* Node{child: Node{child: ... {text: "536-22-1234"}}}, `depth` Nodes in all. */
static struct mm_buf nest(int depth)
{
	struct mm_buf a = {0}, b = {0};
	mm_buf_append(&a,
		      "\x12\x0b"
		      "536-22-1234",
		      13);
	for (int d = 1; d < depth; d++) {
		uint8_t t[12];
		size_t k = 0, v = a.len;
		t[k++] = 0x0a;
		do {
			t[k++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
			v >>= 7;
		} while (v);
		mm_buf_reset(&b);
		mm_buf_append(&b, t, k);
		mm_buf_append(&b, a.data, a.len);
		struct mm_buf x = a;
		a = b;
		b = x;
	}
	mm_buf_free(&b);
	return a;
}

static void test_invalid(void)
{
	struct mm_buf in = sample(NULL);

	for (size_t cut = 1; cut < in.len; cut += 7) {
		struct policy *p =
			pol("{'name':'r','entities':['US_SSN'],'action':{'type':'mask'}}", NULL);
		struct mm_buf out = {0};
		int rc = pb_mask_message(p, customer_t, in.data, cut, &out, NULL);
		/* Some cuts fall between fields: then it is a valid, shorter message. */
		if (rc != 0 && rc != -EPROTO)
			ok(0, "truncated at %zu: %d", cut, rc);
		policy_unref(p);
		mm_buf_free(&out);
	}
	expect_proto("truncated inside a string", in.data, 20);
	expect_proto("garbage", "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11);
	expect_proto("field number 0", "\x02\x00", 2);
	expect_proto("wire type 7", "\x0f", 1);
	expect_proto("a length past the end",
		     "\x0a\x05"
		     "ab",
		     4);
	expect_proto("a string field as a varint", "\x10\x01", 2);
	expect_proto("a message field as fixed32",
		     "\x25"
		     "abcd",
		     5);
	expect_proto("an end group without a start", "\x0c", 1);
	expect_proto("an unknown group without its end", "\xfb\x07\x08\x01", 4);
	expect_proto("a truncated fixed64",
		     "\x81\x01"
		     "abc",
		     5);
	expect_proto("a bad packed fixed32 record",
		     "\x8a\x01\x03"
		     "abc",
		     6);
	expect_proto("a nested message that is not one", "\x22\x02\xff\xff", 4);
	ok(pb_check(customer_t, "\xfb\x07\x08\x01\xfc\x07", 6) == 0,
	   "an unknown group with its end is fine");
	mm_buf_free(&in);

	struct policy *p = pol("{'name':'r','entities':['US_SSN'],'action':{'type':'mask'}}", NULL);
	struct mm_buf deep = nest(PB_MAX_DEPTH + 1), out = {0};
	int rc = pb_mask_message(p, node_t, deep.data, deep.len, &out, NULL);
	ok(rc == 0 && out.len == deep.len && !memcmp(out.data + out.len - 11, "***-**-****", 11),
	   "nesting at the bound (%d messages) masked", PB_MAX_DEPTH + 1);
	mm_buf_free(&deep);
	deep = nest(PB_MAX_DEPTH + 2);
	mm_buf_reset(&out);
	rc = pb_mask_message(p, node_t, deep.data, deep.len, &out, NULL);
	ok(rc == -EPROTO && out.len == 0, "one deeper: -EPROTO");
	mm_buf_free(&deep);
	deep = nest(100000);
	rc = pb_mask_message(p, node_t, deep.data, deep.len, &out, NULL);
	ok(rc == -EPROTO, "100,000 levels: -EPROTO, no stack overflow");
	/* Raw: past the bound a message is only bytes (not text here): nothing changes. */
	struct mm_buf copy = {0};
	mm_buf_append(&copy, deep.data, deep.len);
	long n = pb_mask_raw(p, deep.data, deep.len, NULL);
	ok(n == 0 && !memcmp(copy.data, deep.data, deep.len), "... raw: bounded, unchanged");
	mm_buf_free(&copy);
	mm_buf_free(&deep);
	mm_buf_free(&out);
	policy_unref(p);
}

static void test_raw(void)
{
	struct mm_buf in = sample(NULL), orig = {0};
	struct policy *p =
		pol("{'name':'ssn','entities':['US_SSN'],'action':{'type':'mask','keepLast':4}},"
		    "{'name':'mail','entities':['EMAIL_ADDRESS'],'action':{'type':'hash',"
		    "'keyEnv':'MM_PB_KEY'}}",
		    NULL);
	mm_buf_append(&orig, in.data, in.len);
	long n = pb_mask_raw(p, in.data, in.len, NULL);
	Mm__Test__Customer *c = mm__test__customer__unpack(NULL, in.len, (uint8_t *)in.data);
	ok(n > 0 && c, "raw: %ld values masked in place, still a message", n);
	is_str(c ? c->note : NULL, "call ***-**-1234 or mail ***@*******.***",
	       "raw: a hash rule becomes a full mask (same length)");
	is_str(c ? c->email : NULL, "***@*******.***", "raw: a bare email field");
	is_str(attr(c, "contact"), "***@*******.***", "raw: inside nested messages (map entries)");
	ok(c && !memcmp(c->blob.data, "raw ***-**-1234 raw", 19),
	   "raw: without a schema a printable bytes field is text");
	/*
	 * "145-22-1289" alone is also a valid encoding (a fixed64, then a varint): text wins, it
	 * is masked (the same length: the framing is intact either way).
	 */
	is_str(c ? c->ssn : NULL, "***-**-1289", "raw: text that also reads as tags is masked");
	ok(c && c->n_scores == 4 && c->scores[3] == 70000 && c->account == 536221234,
	   "raw: numbers untouched");
	mm__test__customer__free_unpacked(c, NULL);

	ok(pb_mask_raw(p,
		       (char *)"\x0a\x05"
			       "ab",
		       4, NULL) == -EPROTO,
	   "raw: not a message");
	char g[] = "\x0a\x0b"
		   "145-22-1289";
	ok(pb_mask_raw(p, g, 13, NULL) == 1 && !memcmp(g + 2, "***-**-1289", 11),
	   "raw: the same string nested: masked too");
	char s[] = "\x0a\x0f"
		   "ssn 536-22-1234";
	ok(pb_mask_raw(p, s, 17, NULL) == 1 && !memcmp(s + 2, "ssn ***-**-1234", 15),
	   "raw: text that is no message is masked");
	policy_unref(p);

	p = pol("{'name':'ssn','entities':['US_SSN'],'action':{'type':'mask'}}",
		"'mode':'observe',");
	memcpy(in.data, orig.data, in.len);
	n = pb_mask_raw(p, in.data, in.len, NULL);
	ok(n > 0 && !memcmp(in.data, orig.data, in.len), "raw observe: found %ld, unchanged", n);
	policy_unref(p);
	mm_buf_free(&in);
	mm_buf_free(&orig);
}

int main(int argc, char **argv)
{
	char err[512];

	if (argc < 2) {
		ok(0, "a descriptor set as argv[1]");
		return tap_done();
	}
	setenv("MM_PB_KEY", "pb-test-key", 1);
	const char *paths[] = {argv[1]};
	schema = pb_schema_load(paths, 1, err, sizeof(err));
	if (!ok(schema != NULL, "descriptor set loads")) {
		printf("# %s\n", err);
		return tap_done();
	}
	customer_t = pb_schema_type(schema, "mm.test.Customer");
	node_t = pb_schema_type(schema, "mm.test.Node");
	ok(customer_t && node_t, "types found");
	test_fields();
	test_lengths();
	test_entities();
	test_unknown();
	test_invalid();
	test_raw();
	pb_schema_free(schema);
	return tap_done();
}
