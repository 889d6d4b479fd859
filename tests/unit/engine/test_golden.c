/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The differential corpus: the engine's output must stay byte for byte what it was when the
 * digests in golden_engine.txt were written (by the engine of main before the speed work of
 * issue 15, `test_golden --write FILE DIR...`). Every input (generated here from a fixed seed,
 * plus the engine fuzz corpora named on the command line) goes through every policy below in
 * every format below, in six chunkings; the digest covers the output (decoded when it is gzip),
 * the return code, the outcome, the reason and the counters. A chunking that gives another
 * record than the whole-input run is a failure of the split property too (for a blocked
 * stream only the failure is compared: it may have sent a different prefix before it, and
 * its bytes_scanned includes the rest of the chunk it stopped in).
 *
 * The whole-input run goes through one stream per policy and format, reused for every input
 * (mask_stream_reuse), so state that a stream keeps across bodies (prepared keys, buffers)
 * is covered as well.
 *
 *   test_golden GOLDEN [DIR...]            compare (TAP)
 *   test_golden --write GOLDEN [DIR...]    write the digests of the engine built here
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>

#include "engine_test.h"
#include "util.h"
#include "zhelp.h"

#ifndef MESHMASK_SRCDIR
#define MESHMASK_SRCDIR "."
#endif

#define TOK_KEY "6d6573686d61736b2d746f6b656e2d746573742d6b65792d3332627974657321"

/* ---- policies ---- */

static const struct {
	const char *rules, *mode, *on_error;
} pol_text[] = {
	/* 0: the shipped PII policy (loaded from policy/examples) */
	{NULL, NULL, NULL},
	/* 1: the benchmark's 10 rules, hash */
	{"[{\"name\":\"ssn\",\"fields\":[\"$..ssn\"],\"action\":{\"type\":\"mask\",\"keepLast\":4}}"
	 ","
	 "{\"name\":\"pw\",\"fields\":[\"$..password\"],\"action\":{\"type\":\"redact\"}},"
	 "{\"name\":\"pan\",\"fields\":[\"$..card.number\"],\"action\":{\"type\":\"mask\","
	 "\"keepLast\":4}},"
	 "{\"name\":\"dob\",\"fields\":[\"$.users[*].dob\"],\"action\":{\"type\":\"redact\"}},"
	 "{\"name\":\"street\",\"fields\":[\"$.users[*].address.street\"],\"action\":{\"type\":"
	 "\"mask\"}},"
	 "{\"name\":\"cards\",\"entities\":[\"CREDIT_CARD\"],\"action\":{\"type\":\"mask\","
	 "\"keepLast\":4}},"
	 "{\"name\":\"email\",\"entities\":[\"EMAIL_ADDRESS\"],\"action\":{\"type\":\"hash\","
	 "\"keyEnv\":\"MESHMASK_HASH_KEY\"}},"
	 "{\"name\":\"phone\",\"entities\":[\"PHONE_NUMBER\"],\"action\":{\"type\":\"mask\","
	 "\"keepLast\":2}},"
	 "{\"name\":\"ssn-text\",\"entities\":[\"US_SSN\"],\"action\":{\"type\":\"mask\","
	 "\"keepLast\":4}},"
	 "{\"name\":\"iban\",\"entities\":[\"IBAN_CODE\"],\"action\":{\"type\":\"redact\"}}]",
	 "enforce", "fallback"},
	/* 2: five field rules */
	{"[{\"name\":\"ssn\",\"fields\":[\"$..ssn\"],\"action\":{\"type\":\"mask\",\"keepLast\":4}}"
	 ","
	 "{\"name\":\"pw\",\"fields\":[\"$..password\"],\"action\":{\"type\":\"redact\"}},"
	 "{\"name\":\"pan\",\"fields\":[\"$..card.number\"],\"action\":{\"type\":\"mask\","
	 "\"keepLast\":4}},"
	 "{\"name\":\"dob\",\"fields\":[\"$.users[*].dob\"],\"action\":{\"type\":\"redact\"}},"
	 "{\"name\":\"street\",\"fields\":[\"$.users[*].address.street\"],\"action\":{\"type\":"
	 "\"mask\"}}]",
	 "enforce", "fallback"},
	/* 3: nothing matches */
	{"[{\"name\":\"none\",\"fields\":[\"$.nothing\"],\"action\":{\"type\":\"redact\"}}]",
	 "enforce", "pass"},
	/* 4: AWS keys only */
	{"[{\"name\":\"aws\",\"entities\":[\"AWS_ACCESS_KEY_ID\"],\"action\":{\"type\":"
	 "\"redact\"}}]",
	 "enforce", "fallback"},
	/* 5: every entity, replace, block */
	{"[{\"name\":\"all\",\"entities\":[\"US_SSN\",\"CREDIT_CARD\",\"EMAIL_ADDRESS\","
	 "\"PHONE_NUMBER\",\"IBAN_CODE\",\"IP_ADDRESS\",\"JWT\",\"AWS_ACCESS_KEY_ID\"],"
	 "\"action\":{\"type\":\"replace\"}}]",
	 "enforce", "block"},
	/* 6: every entity, redact, pass */
	{"[{\"name\":\"all\",\"entities\":[\"US_SSN\",\"CREDIT_CARD\",\"EMAIL_ADDRESS\","
	 "\"PHONE_NUMBER\",\"IBAN_CODE\",\"IP_ADDRESS\",\"JWT\",\"AWS_ACCESS_KEY_ID\"],"
	 "\"action\":{\"type\":\"redact\"}}]",
	 "enforce", "pass"},
	/* 7: observe */
	{"[{\"name\":\"f\",\"fields\":[\"$..ssn\",\"$..password\"],\"action\":{\"type\":\"redact\"}"
	 "},"
	 "{\"name\":\"e\",\"entities\":[\"EMAIL_ADDRESS\",\"CREDIT_CARD\",\"US_SSN\"],"
	 "\"action\":{\"type\":\"mask\"}}]",
	 "observe", "block"},
	/* 8: general paths, hash without prefix at full length, keepFirst */
	{"[{\"name\":\"idx\",\"fields\":[\"$.users[1].email\",\"$['odd key'].v\",\"$.*.token\","
	 "\"$..items[*].id\",\"$[0][2]\"],\"action\":{\"type\":\"hash\",\"keyEnv\":"
	 "\"MESHMASK_HASH_KEY\",\"length\":64}},"
	 "{\"name\":\"kf\",\"fields\":[\"$..number\",\"$.users[*].phone\"],\"action\":{\"type\":"
	 "\"mask\",\"keepFirst\":2,\"keepLast\":1,\"char\":\"#\"}},"
	 "{\"name\":\"ent\",\"entities\":[\"EMAIL_ADDRESS\",\"IP_ADDRESS\"],\"action\":{\"type\":"
	 "\"hash\",\"keyEnv\":\"MESHMASK_HASH_KEY2\",\"prefix\":\"h:\",\"length\":8}}]",
	 "enforce", "fallback"},
	/* 9: a multi-byte mask char, field + entity rules */
	{"[{\"name\":\"fe\",\"fields\":[\"$..notes\",\"$..bio\",\"note\"],\"entities\":"
	 "[\"IBAN_CODE\",\"JWT\",\"IP_ADDRESS\",\"US_SSN\"],\"action\":{\"type\":\"mask\","
	 "\"keepFirst\":2,\"keepLast\":2,\"char\":\"\\u2022\"}},"
	 "{\"name\":\"ph\",\"entities\":[\"PHONE_NUMBER\",\"CREDIT_CARD\"],\"action\":{\"type\":"
	 "\"mask\",\"char\":\"\\u00d7\"}}]",
	 "enforce", "fallback"},
	/* 10: tokenize */
	{"[{\"name\":\"ssn\",\"fields\":[\"$..ssn\",\"ssn\"],\"action\":{\"type\":\"tokenize\","
	 "\"keyEnv\":\"MM_TOK_KEY\",\"tokenSpace\":\"pii\"}},"
	 "{\"name\":\"cards\",\"entities\":[\"CREDIT_CARD\"],\"action\":{\"type\":\"tokenize\","
	 "\"keyEnv\":\"MM_TOK_KEY\",\"keepFirst\":6,\"keepLast\":4,\"luhn\":true,"
	 "\"tokenSpace\":\"cards\"}},"
	 "{\"name\":\"mail\",\"entities\":[\"EMAIL_ADDRESS\"],\"action\":{\"type\":\"tokenize\","
	 "\"keyEnv\":\"MM_TOK_KEY\"}}]",
	 "enforce", "fallback"},
	/* 11: whole containers, replace with a value, block */
	{"[{\"name\":\"addr\",\"fields\":[\"$.users[*].address\",\"$..card\",\"$..orders\"],"
	 "\"action\":{\"type\":\"replace\",\"value\":\"[gone]\"}},"
	 "{\"name\":\"geo\",\"fields\":[\"$..geo\",\"$..active\",\"$..qty\"],\"action\":"
	 "{\"type\":\"redact\"}},"
	 "{\"name\":\"ssn\",\"entities\":[\"US_SSN\",\"PHONE_NUMBER\"],\"action\":{\"type\":"
	 "\"replace\"}}]",
	 "enforce", "block"},
	/* 12: two hash rules with different keys, entity and field */
	{"[{\"name\":\"hf\",\"fields\":[\"$..email\",\"$..token\",\"$..id\"],\"action\":{\"type\":"
	 "\"hash\",\"keyEnv\":\"MESHMASK_HASH_KEY2\",\"prefix\":\"f:\"}},"
	 "{\"name\":\"he\",\"entities\":[\"EMAIL_ADDRESS\",\"US_SSN\",\"CREDIT_CARD\"],"
	 "\"action\":{\"type\":\"hash\",\"keyEnv\":\"MESHMASK_HASH_KEY\",\"length\":20}}]",
	 "enforce", "pass"},
	/* 13: phones and IPs only, fallback */
	{"[{\"name\":\"p\",\"entities\":[\"PHONE_NUMBER\",\"IP_ADDRESS\"],\"action\":{\"type\":"
	 "\"mask\",\"keepLast\":3}}]",
	 "enforce", "fallback"},
	/* 14: field rules with entities scanning numbers and strings under them */
	{"[{\"name\":\"ssnf\",\"fields\":[\"$..ssn\"],\"entities\":[\"US_SSN\"],\"action\":"
	 "{\"type\":\"mask\",\"keepLast\":4}},"
	 "{\"name\":\"pw\",\"fields\":[\"$..password\",\"pw\"],\"action\":{\"type\":\"redact\"}},"
	 "{\"name\":\"tok\",\"fields\":[\"$.auth.token\"],\"action\":{\"type\":\"replace\"}},"
	 "{\"name\":\"ssn\",\"entities\":[\"US_SSN\"],\"action\":{\"type\":\"mask\",\"keepLast\":4}"
	 "},"
	 "{\"name\":\"card\",\"entities\":[\"CREDIT_CARD\"],\"action\":{\"type\":\"mask\","
	 "\"keepLast\":4}},"
	 "{\"name\":\"mail\",\"entities\":[\"EMAIL_ADDRESS\"],\"action\":{\"type\":\"redact\"}}]",
	 "enforce", "fallback"},
};
#define N_POL (sizeof(pol_text) / sizeof(*pol_text))

/* ---- formats and chunkings ---- */

static const struct {
	const char *ct, *ce;
} formats[] = {
	{"application/json", NULL},	      {"application/x-ndjson", NULL},
	{"text/plain; charset=utf-8", NULL},  {"application/x-www-form-urlencoded", NULL},
	{"application/octet-stream", NULL},   {NULL, NULL},
	{"application/vnd.api+json", "gzip"},
};
#define N_FMT (sizeof(formats) / sizeof(*formats))

/* 0: the whole input in one write. 1-byte writes only for inputs up to 8 KiB, else 3. */
static const size_t chunks[] = {0, 1, 7, 61, 4093, 65536};
#define N_CHUNK (sizeof(chunks) / sizeof(*chunks))

/* ---- generated inputs (splitmix64: the same on every platform) ---- */

static uint64_t rng;
static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}
static unsigned rn(unsigned n)
{
	return (unsigned)(rnd() % n);
}
#define PICK(a) ((a)[rn(sizeof(a) / sizeof(*(a)))])

static const char *const secrets[] = {
	"536-22-8105",
	"536228105",
	"078-05-1120",
	"457 55 5462",
	"666-12-3456",
	"4111 1111 1111 1111",
	"4111111111111111",
	"5500-0000-0000-0004",
	"340000000000009",
	"4111111111111112",
	"6011000000000004",
	"3530111333300000",
	"bob@example.org",
	"a.b+c@sub.example.co.uk",
	"x@y",
	"a..b@example.com",
	"joe@xn--p1ai.xn--p1ai",
	"+1 (415) 555-0100",
	"415-555-0100",
	"(415) 555 0100",
	"1 415.555.0100",
	"+44 20 7946 0958",
	"+4915123456789",
	"GB82 WEST 1234 5698 7654 32",
	"DE89370400440532013000",
	"GB82WEST12345698765431",
	"192.168.1.1",
	"10.0.0.1.nip.io",
	"256.1.1.1",
	"2001:db8::1",
	"fe80::",
	"::1",
	"1:2:3:4:5:6:7:8",
	"::ffff:192.0.2.1",
	"12:30:45",
	"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
	"eyJhbGciOiJub25lIn0.eyJ4IjoxfQ.",
	"AKIAIOSFODNN7EXAMPLE",
	"ASIAXXXXXXXXXXXXXXX1",
	"AKIAIOSFODNN7EXAMPL",
	"1.2.3.4.5",
	"v1.2.3.4",
	"2019-05-11",
	"94103",
	"123e4567-e89b-12d3-a456-426614174000",
	"caf\xc3\xa9",
	"\xf0\x9f\x98\x80",
	"\xe2\x82\xac 12.50",
	"\xff\xfe",
	"\xc3",
	"536-22-8105x",
	"x536-22-8105",
	"536-22-8105-1",
	"4111-1111-1111-1111.5",
	"+1 415 555 0100",
	"A-123",
	"pw-1-secret",
};
static const char *const json_secrets[] = {
	"\\u0035\\u0033\\u0036-22-8105",
	"\\ud83d\\ude00 536-22-8105",
	"\\ud83d",
	"\\udc00x",
	"x\\\"y\\\\z",
	"a\\/b\\b\\f\\n\\r\\t",
	"bob\\u0040example.org",
	"\\u00e9\\u20ac",
	"4111\\u00201111 1111 1111",
};
static const char *const words[] = {
	"lorem", "ipsum", "call", "mail", "ssn", "card:", "to",	 "the", "Customer",
	"since", "2019.", "tier", "gold", "a",	 "(x)",	  "[1]", "50%", "e-mail",
	"no.",	 "+",	  "-",	  ":",	  "@",	 "#",	  "=",	 "&",
};
static const char *const keys[] = {
	"ssn",	 "password", "email",	   "card",   "number", "token",	 "notes",
	"note",	 "users",    "address",	   "street", "dob",    "bio",	 "socialSecurityNumber",
	"id",	 "items",    "phone",	   "orders", "geo",    "active", "qty",
	"auth",	 "odd key",  "a\\u0073sn", "",	     "n",      "k\\\"q", "pw",
	"links", "v",
};

static void put_secret(struct mm_buf *b, bool json)
{
	if (json && rn(5) == 0)
		mm_buf_puts(b, PICK(json_secrets));
	else
		mm_buf_puts(b, PICK(secrets));
}

static void put_text(struct mm_buf *b, unsigned n, bool json)
{
	static const char *const seps[] = {" ", " ", " ", ", ", "; ", "\t", "/", "(", ")", "'"};
	for (unsigned i = 0; i < n; i++) {
		if (i)
			mm_buf_puts(b, json ? PICK(seps) : (rn(9) ? " " : "\n"));
		if (rn(3) == 0)
			put_secret(b, json);
		else
			mm_buf_puts(b, PICK(words));
	}
}

static void put_json(struct mm_buf *b, int depth);

static void put_scalar(struct mm_buf *b)
{
	static const char *const nums[] = {
		"0",	  "-1",	  "12.5e-3", "536228105", "4111111111111111",
		"1E5",	  "-0.0", "94103",   "3.14159",	  "1e+2",
		"100000", "4.5",  "7"};
	static const char *const lits[] = {"true", "false", "null"};
	switch (rn(6)) {
	case 0:
		mm_buf_puts(b, PICK(nums));
		break;
	case 1:
		mm_buf_puts(b, PICK(lits));
		break;
	default:
		mm_buf_putc(b, '"');
		put_text(b, rn(8), true);
		mm_buf_putc(b, '"');
	}
}

static void put_ws(struct mm_buf *b)
{
	static const char *const ws[] = {"", "", "", "", " ", "\n", "\r\n  ", "\t"};
	mm_buf_puts(b, PICK(ws));
}

static void put_json(struct mm_buf *b, int depth)
{
	unsigned k = rn(10);
	if (depth > 5 || k < 5) {
		put_scalar(b);
		return;
	}
	bool obj = k < 8;
	unsigned n = rn(6);
	mm_buf_putc(b, obj ? '{' : '[');
	for (unsigned i = 0; i < n; i++) {
		if (i)
			mm_buf_putc(b, ',');
		put_ws(b);
		if (obj) {
			mm_buf_putc(b, '"');
			mm_buf_puts(b, PICK(keys));
			mm_buf_puts(b, "\":");
			put_ws(b);
		}
		put_json(b, depth + 1);
	}
	put_ws(b);
	mm_buf_putc(b, obj ? '}' : ']');
}

/* The benchmark's user record, with variations. */
static void put_user(struct mm_buf *b, unsigned i)
{
	char rec[2048];
	snprintf(
		rec, sizeof(rec),
		"{\"id\":%u,\"name\":\"Al %u\",\"email\":\"al.%u@example.com\",\"ssn\":\"%s\","
		"\"dob\":\"19%02u-0%u-1%u\",\"phone\":\"+1 (415) 555-%04u\",\"active\":%s,"
		"\"address\":{\"street\":\"%u Market Street\",\"city\":\"San Francisco\","
		"\"zip\":\"94%03u\",\"geo\":[37.7749,-122.4194]},"
		"\"card\":{\"number\":\"%s\",\"exp\":\"1%u/2%u\",\"brand\":\"visa\"},"
		"\"orders\":[{\"sku\":\"A-%u\",\"qty\":%u,\"price\":%u.99,\"note\":\"gift wrap\"}],"
		"\"bio\":\"Customer since 2019; contact al.%u@example.com or call +1 415 555 "
		"%04u.\","
		"\"password\":\"pw-%u-secret\"}",
		i, i, i, PICK(secrets), 50 + i % 49, 1 + i % 9, i % 10, i % 10000,
		i % 2 ? "true" : "false", 100 + i % 900, i % 1000, PICK(secrets), i % 3, 5 + i % 4,
		i, 1 + i % 5, 10 + i % 90, i, i % 10000, i);
	mm_buf_puts(b, rec);
}

/* A few bytes changed, inserted or removed: broken documents. */
static void mutate(struct mm_buf *b)
{
	static const char junk[] = "{}[]\",:\\\n x0-.eu@";
	unsigned n = 1 + rn(3);
	for (unsigned k = 0; k < n && b->len; k++) {
		size_t at = rn((unsigned)b->len);
		switch (rn(3)) {
		case 0:
			b->data[at] = junk[rn(sizeof(junk) - 1)];
			break;
		case 1:
			memmove(b->data + at, b->data + at + 1, b->len - at - 1);
			b->len--;
			break;
		default:
			mm_buf_putc(b, 0);
			memmove(b->data + at + 1, b->data + at, b->len - at - 1);
			b->data[at] = junk[rn(sizeof(junk) - 1)];
		}
	}
}

/* Generated input number i (0 <= i < N_GEN). */
#define N_GEN 480
static void gen_input(unsigned i, struct mm_buf *b)
{
	rng = 0x6d61736b00000000ull + i;
	switch (i % 8) {
	case 0:
	case 1: { /* API documents of user records */
		unsigned n = i < 8 ? 40 + i * 20 : 1 + rn(6);
		mm_buf_puts(b, "{\"page\":1,\"users\":[");
		for (unsigned k = 0; k < n; k++) {
			if (k)
				mm_buf_putc(b, ',');
			put_user(b, k + i);
		}
		mm_buf_puts(b, "],\"links\":{\"next\":\"/v1/users?page=2\"}}");
		break;
	}
	case 2:
	case 3: /* random JSON */
		put_ws(b);
		put_json(b, 0);
		put_ws(b);
		break;
	case 4: /* text */
		put_text(b, 1 + rn(200), false);
		break;
	case 5: /* NDJSON */
		for (unsigned k = 0, n = 1 + rn(6); k < n; k++) {
			put_json(b, 1);
			mm_buf_puts(b, rn(4) ? "\n" : "\r\n");
		}
		break;
	case 6: { /* form */
		for (unsigned k = 0, n = 1 + rn(8); k < n; k++) {
			static const char *const vals[] = {"ssn+536-22-8105",
							   "bob%40example.org",
							   "hunter2",
							   "%7E%21",
							   "a+b",
							   "4111111111111111",
							   "",
							   "%",
							   "%zz",
							   "x=y"};
			if (k)
				mm_buf_putc(b, '&');
			mm_buf_puts(b, PICK(keys));
			if (rn(6))
				mm_buf_putc(b, '=');
			mm_buf_puts(b, PICK(vals));
		}
		break;
	}
	default: /* secrets dense, in a JSON string array */
		mm_buf_putc(b, '[');
		for (unsigned k = 0, n = 1 + rn(30); k < n; k++) {
			mm_buf_puts(b, k ? ",\"" : "\"");
			put_secret(b, true);
			mm_buf_putc(b, '"');
		}
		mm_buf_putc(b, ']');
	}
	if (i % 8 != 0 && rn(4) == 0)
		mutate(b);
	/* A few long ones: a string and a text past the 64 KiB hold limit and the scan window. */
	if (i == 9 || i == 12) {
		mm_buf_reset(b);
		mm_buf_puts(b, i == 9 ? "{\"a\":1,\"doc\":\"" : "");
		while (b->len < 70000) {
			put_text(b, 20, i == 9);
			mm_buf_putc(b, ' ');
		}
		mm_buf_puts(b, i == 9 ? "\",\"ssn\":\"536-22-8105\"}" : "");
	}
}

/* ---- runs ---- */

struct rec {
	int rc;
	int outcome, reason;
	uint64_t scanned, values, errs;
	unsigned char md[32];
};

static void digest_out(const struct mm_buf *out, bool gz, unsigned char md[32])
{
	struct mm_buf plain = {0};
	if (gz && zdecompress(out->data, out->len, 31, &plain) == 0)
		mm_sha256(plain.data ? plain.data : "", plain.len, md);
	else
		mm_sha256(out->data ? out->data : "", out->len, md);
	mm_buf_free(&plain);
}

static int sink(void *ctx, const char *p, size_t n)
{
	return mm_buf_append(ctx, p, n);
}

static void record(struct mask_stream *s, int rc, const struct mm_buf *out, bool gz, struct rec *r)
{
	const struct mask_stats *st = mask_stream_stats(s);
	memset(r, 0, sizeof(*r));
	r->rc = rc;
	r->outcome = mask_stream_outcome(s);
	r->reason = mask_stream_reason(s);
	r->scanned = st->bytes_scanned;
	r->values = st->values;
	for (size_t k = 0; k < st->n_rules; k++)
		for (int e = 0; e < MM_ENT__COUNT; e++)
			r->values = r->values * 31 + st->rules[k].by_entity[e] + k;
	for (int e = 0; e < MM_REASON__COUNT; e++)
		r->errs = r->errs * 131 + st->errors[e];
	digest_out(out, gz, r->md);
}

/* One run in pieces of `step` bytes (0: whole), through `s` when given (reused). */
static void run(struct mask_stream **keep, const struct policy *p, size_t f, const char *in,
		size_t len, size_t step, struct rec *r)
{
	struct mask_opts o = {.policy = p,
			      .direction = POLICY_DIR_RESPONSE,
			      .content_type = formats[f].ct,
			      .content_encoding = formats[f].ce};
	struct mask_stream *s = NULL;
	struct mm_buf out = {0};
	int rc = 0;
	if (keep && *keep && mask_stream_reuse(*keep, &o) == 0)
		s = *keep;
	else if (!(s = mask_stream_new(&o)))
		abort();
	for (size_t off = 0; !rc && off < len;) {
		size_t k = step && len - off > step ? step : len - off;
		rc = mask_stream_write(s, in + off, k, sink, &out);
		off += k;
	}
	if (!rc)
		rc = mask_stream_finish(s, sink, &out);
	record(s, rc, &out, formats[f].ce != NULL, r);
	mm_buf_free(&out);
	if (keep) {
		if (*keep != s)
			mask_stream_free(*keep);
		*keep = s;
	} else {
		mask_stream_free(s);
	}
}

/* ---- the corpus ---- */

struct input {
	char *name;
	struct mm_buf data;
};

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct input *)a)->name, ((const struct input *)b)->name);
}

static size_t load_dir(const char *dir, struct input **in, size_t n)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	const char *base = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
	if (!d) {
		printf("Bail out! %s: %s\n", dir, strerror(errno));
		exit(1);
	}
	while ((e = readdir(d))) {
		char path[4096];
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		FILE *fp = fopen(path, "rb");
		if (!fp)
			continue;
		*in = realloc(*in, (n + 1) * sizeof(**in));
		struct input *x = &(*in)[n++];
		memset(x, 0, sizeof(*x));
		if (asprintf(&x->name, "%s/%s", base, e->d_name) < 0)
			abort();
		char rd[65536];
		size_t k;
		while ((k = fread(rd, 1, sizeof(rd), fp)) > 0)
			mm_buf_append(&x->data, rd, k);
		fclose(fp);
	}
	closedir(d);
	return n;
}

/* The digest of one input under one policy: its 7 formats' records. */
static void pol_digest(const struct rec *r, char hex[17])
{
	unsigned char md[32];
	mm_sha256(r, N_FMT * sizeof(*r), md);
	for (int i = 0; i < 8; i++)
		sprintf(hex + 2 * i, "%02x", md[i]);
}

int main(int argc, char **argv)
{
	bool write = argc > 1 && !strcmp(argv[1], "--write");
	int a0 = write ? 2 : 1;
	if (argc <= a0) {
		fprintf(stderr, "usage: %s [--write] GOLDEN [DIR...]\n", argv[0]);
		return 2;
	}
	const char *golden = argv[a0];
	setenv("MESHMASK_HASH_KEY", "golden-key-0123456789abcdef", 1);
	setenv("MESHMASK_HASH_KEY2",
	       "another key, a longer one: past the 64-byte block size of "
	       "SHA-256, so HMAC hashes it first",
	       1);
	setenv("MM_TOK_KEY", TOK_KEY, 1);

	struct policy *pols[N_POL];
	for (size_t k = 0; k < N_POL; k++) {
		if (pol_text[k].rules) {
			pols[k] = mkpol(pol_text[k].rules, pol_text[k].mode, pol_text[k].on_error);
			continue;
		}
		struct policy_errors errs = {0};
		const char *path = MESHMASK_SRCDIR "/policy/examples/pii-default.json";
		if (!(pols[k] = policy_load_file(path, &errs))) {
			printf("Bail out! %s does not load\n", path);
			return 1;
		}
	}

	struct input *in = NULL;
	size_t n_in = 0;
	for (unsigned i = 0; i < N_GEN; i++) {
		in = realloc(in, (n_in + 1) * sizeof(*in));
		struct input *x = &in[n_in++];
		memset(x, 0, sizeof(*x));
		if (asprintf(&x->name, "gen/%03u", i) < 0)
			abort();
		gen_input(i, &x->data);
	}
	for (int k = a0 + 1; k < argc; k++)
		n_in = load_dir(argv[k], &in, n_in);
	qsort(in, n_in, sizeof(*in), by_name);

	FILE *g = fopen(golden, write ? "w" : "r");
	if (!g) {
		printf("Bail out! %s: %s\n", golden, strerror(errno));
		return 1;
	}
	/* name -> line of the golden file */
	char **want = calloc(n_in, sizeof(*want));
	if (!write) {
		char line[1024];
		while (fgets(line, sizeof(line), g)) {
			char *sp = strchr(line, ' ');
			if (line[0] == '#' || !sp)
				continue;
			*sp = 0;
			struct input key = {.name = line};
			struct input *x = bsearch(&key, in, n_in, sizeof(*in), by_name);
			if (x)
				want[x - in] = strdup(sp + 1);
		}
		fclose(g);
	} else {
		fprintf(g,
			"# test_golden: input, then per policy the digest of its %zu formats' "
			"records\n",
			N_FMT);
	}

	struct mask_stream *keep[N_POL][N_FMT] = {{0}};
	size_t checked = 0, unknown = 0, diff_golden = 0, diff_split = 0, runs = 0;
	for (size_t i = 0; i < n_in; i++) {
		const char *d = in[i].data.data ? in[i].data.data : "";
		size_t len = in[i].data.len;
		struct mm_buf gz = {0};
		char line[N_POL * 17 + 1];
		for (size_t k = 0; k < N_POL; k++) {
			struct rec rec[N_FMT];
			for (size_t f = 0; f < N_FMT; f++) {
				const char *fd = d;
				size_t fl = len;
				if (formats[f].ce) {
					if (!gz.len)
						zcompress(d, len, 31, &gz);
					fd = gz.data;
					fl = gz.len;
				}
				run(&keep[k][f], pols[k], f, fd, fl, 0, &rec[f]);
				runs++;
				for (size_t c = 1; c < N_CHUNK; c++) {
					struct rec rc;
					size_t step = chunks[c] == 1 && fl > 8192 ? 3 : chunks[c];
					if (step >= fl && c > 1)
						continue;
					run(NULL, pols[k], f, fd, fl, step, &rc);
					runs++;
					/*
					 * A blocked stream may have sent a different prefix before
					 * the failure; the failure must not depend on the chunking.
					 * Once a stream stops (observe with onError=block), its
					 * bytes_scanned counts the rest of the chunk it stopped in.
					 */
					if (rc.outcome == MASK_OUTCOME_BLOCKED)
						rc.scanned = rec[f].scanned;
					bool same =
						rec[f].rc ? rc.rc == rec[f].rc &&
								    rc.outcome == rec[f].outcome &&
								    rc.reason == rec[f].reason
							  : !memcmp(&rc, &rec[f], sizeof(rc));
					if (!same) {
						if (diff_split++ < 10)
							printf("# %s policy %zu format %zu: "
							       "%zu-byte "
							       "chunks differ from one write\n",
							       in[i].name, k, f, step);
					}
				}
			}
			pol_digest(rec, line + 17 * k);
			line[17 * k + 16] = k + 1 < N_POL ? ' ' : 0;
		}
		mm_buf_free(&gz);
		if (write) {
			fprintf(g, "%s %s\n", in[i].name, line);
			continue;
		}
		if (!want[i]) {
			unknown++;
			continue;
		}
		checked++;
		want[i][strcspn(want[i], "\n")] = 0;
		if (strcmp(want[i], line)) {
			for (size_t k = 0; k < N_POL && diff_golden < 20; k++)
				if (strncmp(want[i] + 17 * k, line + 17 * k, 16))
					printf("# %s: policy %zu differs from the golden output\n",
					       in[i].name, k);
			diff_golden++;
		}
	}
	for (size_t k = 0; k < N_POL; k++) {
		for (size_t f = 0; f < N_FMT; f++)
			mask_stream_free(keep[k][f]);
		policy_unref(pols[k]);
	}
	if (write) {
		fclose(g);
		printf("wrote %zu inputs x %zu policies x %zu formats (%zu runs) to %s\n", n_in,
		       N_POL, N_FMT, runs, golden);
	} else {
		if (unknown)
			printf("# %zu inputs not in the golden file (new corpus files): not "
			       "compared\n",
			       unknown);
		ok(checked >= N_GEN, "%zu inputs x %zu policies x %zu formats compared", checked,
		   N_POL, N_FMT);
		is_int(diff_golden, 0, "inputs whose output differs from the golden digests");
		is_int(diff_split, 0, "runs whose output depends on the chunking (%zu runs)", runs);
	}
	for (size_t i = 0; i < n_in; i++) {
		free(in[i].name);
		mm_buf_free(&in[i].data);
		free(want[i]);
	}
	free(want);
	free(in);
	return write ? 0 : tap_done();
}
