/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tls_scan: a stream fed in pieces of any size reports exactly the matches (entity, offset,
 * length) that one detect_scan() over the whole text reports, including values split across
 * pieces and values in the last hold-back window; a gap (finish) splits values.
 * tls_mask_read (stop-rewrite): one read masked in place, length kept; for every split of a
 * text into two reads, the second read comes out exactly as masking the whole text would
 * make it (the later part of a split value included), the first read too outside split values.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "tap.h"
#include "tls_scan.h"

struct found {
	enum mm_entity entity;
	uint64_t off;
	size_t len;
};

struct list {
	struct found v[4096];
	size_t n;
};

static void collect(void *ctx, enum mm_entity entity, uint64_t off, size_t len)
{
	struct list *l = ctx;
	if (l->n < 4096)
		l->v[l->n++] = (struct found){entity, off, len};
}

/* All matches of one scan over the whole text. */
static void reference(const char *text, size_t len, struct list *out)
{
	struct detect_match m[64];
	size_t pos = 0;
	out->n = 0;
	for (;;) {
		size_t got = detect_scan(text, len, pos, MM_ENT_ALL, 0, m, 64);
		for (size_t i = 0; i < got; i++)
			collect(out, m[i].entity, m[i].off, m[i].len);
		if (got < 64)
			break;
		pos = m[got - 1].off + m[got - 1].len;
	}
}

static size_t fill(char *text, size_t cap, unsigned seed)
{
	static const char *const values[] = {
		"536-22-8841",
		"4111 1111 1111 1111",
		"ann@example.com",
		"4111-1111-1111-1111",
		"bob.smith@mail.example.org",
		"5500 0000 0000 0004",
		"GB82 WEST 1234 5698 7654 32",
	};
	static const char *const filler[] = {"lorem ", "{\"k\": \"", "\", ", "ipsum\n", "x", " "};
	size_t n = 0;
	srand(seed);
	while (n + 64 < cap) {
		const char *p = rand() % 4 ? filler[rand() % 6] : values[rand() % 7];
		size_t l = strlen(p);
		memcpy(text + n, p, l);
		n += l;
		/* Long runs without values, so that the window really slides. */
		if (rand() % 50 == 0) {
			size_t run = (size_t)(rand() % 9000);
			if (n + run + 64 >= cap)
				break;
			memset(text + n, 'z', run);
			n += run;
		}
	}
	return n;
}

static int same(const struct list *a, const struct list *b)
{
	if (a->n != b->n)
		return 0;
	for (size_t i = 0; i < a->n; i++)
		if (a->v[i].entity != b->v[i].entity || a->v[i].off != b->v[i].off ||
		    a->v[i].len != b->v[i].len)
			return 0;
	return 1;
}

static struct tls_scan scanner;
#define FEED(str, ents) tls_scan_feed(&scanner, str, strlen(str), ents, collect, &got)
static struct list want, got;
static char text[120000];

/* Feed text in pieces: fixed size `piece`, or random sizes 1..-piece when piece < 0. */
static void feed(const char *t, size_t len, long piece)
{
	memset(&scanner, 0, sizeof(scanner));
	got.n = 0;
	size_t off = 0;
	while (off < len) {
		size_t n = piece > 0 ? (size_t)piece : 1 + (size_t)rand() % (size_t)(-piece);
		if (n > len - off)
			n = len - off;
		tls_scan_feed(&scanner, t + off, n, MM_ENT_ALL, collect, &got);
		off += n;
	}
	tls_scan_finish(&scanner, MM_ENT_ALL, collect, &got);
}

static struct policy *load_policy(const char *json)
{
	struct policy_errors errs = {0};
	struct policy *p = policy_parse(json, strlen(json), "test", &errs);
	if (!p)
		policy_errors_print(stderr, "test", &errs);
	policy_errors_free(&errs);
	return p;
}

static const char *const sr_policy =
	"{\"apiVersion\": \"meshmask.io/v1alpha1\", \"kind\": \"MaskingPolicy\","
	" \"metadata\": {\"name\": \"sr\"}, \"spec\": {\"tls\": {\"enforce\": \"stop-rewrite\"},"
	" \"rules\": [{\"name\": \"pii\", \"entities\": [\"US_SSN\", \"CREDIT_CARD\"],"
	" \"action\": {\"type\": \"mask\", \"keepLast\": 4}}]}}";

/* Outside TLS enforcement a policy may hash: such rules are skipped, never half-applied. */
static const char *const hash_policy =
	"{\"apiVersion\": \"meshmask.io/v1alpha1\", \"kind\": \"MaskingPolicy\","
	" \"metadata\": {\"name\": \"h\"}, \"spec\": {"
	" \"rules\": [{\"name\": \"e\", \"entities\": [\"EMAIL_ADDRESS\"],"
	" \"action\": {\"type\": \"replace\", \"value\": \"x\"}},"
	" {\"name\": \"s\", \"entities\": [\"US_SSN\"], \"action\": {\"type\": \"mask\"}}]}}";

static char scratch[TLS_MASK_TAIL + 4096];

static void mask_tests(void)
{
	struct policy *p = load_policy(sr_policy);
	ok(p != NULL, "stop-rewrite policy parses");
	if (!p)
		return;
	const char *doc = "{\"ssn\": \"536-22-8841\", \"card\": \"4111 1111 1111 1111\", \"n\": 7}";
	size_t n = strlen(doc);
	char want_doc[256], buf[256];
	struct tls_mask_stream st = {0};
	size_t partial = 0;
	memcpy(want_doc, doc, n + 1);
	long m = tls_mask_read(&st, p, want_doc, n, scratch, &partial);
	ok(m == 2 && partial == 0 &&
		   !strcmp(want_doc,
			   "{\"ssn\": \"***-**-8841\", \"card\": \"**** **** **** 1111\", "
			   "\"n\": 7}"),
	   "one read: both values masked in place, length kept");

	/* Every split into two reads. Values: ssn at [9, 20), card at [32, 51). */
	const size_t vals[2][2] = {{9, 20}, {32, 51}};
	int second_ok = 1, first_ok = 1, partial_ok = 1;
	for (size_t k = 1; k < n; k++) {
		memset(&st, 0, sizeof(st));
		memcpy(buf, doc, n + 1);
		size_t p1 = 0, p2 = 0;
		tls_mask_read(&st, p, buf, k, scratch, &p1);
		tls_mask_read(&st, p, buf + k, n - k, scratch, &p2);
		size_t crossing = 0;
		for (int v = 0; v < 2; v++)
			crossing += vals[v][0] < k && k < vals[v][1];
		for (size_t i = 0; i < n; i++) {
			int in_split = 0;
			for (int v = 0; v < 2; v++)
				in_split |= vals[v][0] <= i && i < vals[v][1] && vals[v][0] < k &&
					    k < vals[v][1];
			if (i >= k && buf[i] != want_doc[i])
				second_ok = 0;
			if (i < k && !in_split && buf[i] != want_doc[i])
				first_ok = 0;
		}
		if (p2 != crossing)
			partial_ok = 0;
	}
	ok(second_ok, "every split: the second read is masked as the whole text would be");
	ok(first_ok, "every split: the first read too, outside the value that is split");
	ok(partial_ok, "every split: a value split across the reads is counted as partial");

	/* Small reads: context carries over many reads. */
	memset(&st, 0, sizeof(st));
	memcpy(buf, doc, n + 1);
	for (size_t i = 0; i < n; i += 3)
		tls_mask_read(&st, p, buf + i, n - i < 3 ? n - i : 3, scratch, &partial);
	ok(!strncmp(buf + 16, "8841", 4) && buf[47] == '1',
	   "reads of 3 bytes: the kept digits stay, nothing else changes length");
	policy_unref(p);

	p = load_policy(hash_policy);
	ok(p != NULL, "observe-only policy with a replace rule parses");
	if (!p)
		return;
	const char *mail = "to ann@example.com 536-22-8841.";
	memset(&st, 0, sizeof(st));
	memcpy(buf, mail, strlen(mail) + 1);
	m = tls_mask_read(&st, p, buf, strlen(buf), scratch, &partial);
	ok(m == 1 && !strcmp(buf, "to ann@example.com ***-**-****."),
	   "a length-changing rule is skipped, a mask rule applies (%s)", buf);
	policy_unref(p);
}

int main(void)
{
	size_t len = fill(text, sizeof(text), 1);
	reference(text, len, &want);
	ok(want.n > 100, "the text holds values (%zu)", want.n);

	const long pieces[] = {100, 4095, 4096, 4097, 16383, 16384, 16385, 50000, 120000};
	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		feed(text, len, pieces[i]);
		ok(same(&want, &got), "pieces of %ld: %zu matches, as one scan", pieces[i], got.n);
	}
	for (unsigned seed = 2; seed < 8; seed++) {
		len = fill(text, sizeof(text), seed);
		reference(text, len, &want);
		feed(text, len, -20000);
		ok(same(&want, &got), "random pieces, text %u: %zu matches, as one scan", seed,
		   got.n);
	}

	/* Byte by byte over a short text. */
	len = fill(text, 3000, 9);
	reference(text, len, &want);
	feed(text, len, 1);
	ok(same(&want, &got) && want.n > 10, "byte by byte: %zu matches, as one scan", got.n);

	/* A card split across two records, each far smaller than the window. */
	memset(&scanner, 0, sizeof(scanner));
	got.n = 0;
	FEED("{\"card\": \"4111 1111 ", MM_ENT_ALL);
	FEED("1111 1111\"}", MM_ENT_ALL);
	ok(got.n == 0, "held back while more may come");
	tls_scan_finish(&scanner, MM_ENT_ALL, collect, &got);
	ok(got.n == 1 && got.v[0].entity == MM_ENT_CREDIT_CARD && got.v[0].off == 10 &&
		   got.v[0].len == 19,
	   "found at the end of the stream, at its stream offset");

	/* A gap (finish) in the middle of a value: the halves are not one value. */
	got.n = 0;
	FEED("536-22-", MM_ENT_ALL);
	tls_scan_finish(&scanner, MM_ENT_ALL, collect, &got);
	FEED("8841 ", MM_ENT_ALL);
	tls_scan_finish(&scanner, MM_ENT_ALL, collect, &got);
	ok(got.n == 0, "a gap splits values");

	/* Offsets keep counting across finish. */
	FEED(" 536-22-8841 ", MM_ENT_ALL);
	tls_scan_finish(&scanner, MM_ENT_ALL, collect, &got);
	ok(got.n == 1 && got.v[0].entity == MM_ENT_US_SSN && got.v[0].off == 31 + 12 + 1,
	   "stream offsets continue after a gap");

	/* Entities outside the mask are not reported. */
	memset(&scanner, 0, sizeof(scanner));
	got.n = 0;
	FEED("ann@example.com 536-22-8841 ", MM_ENT_BIT(MM_ENT_US_SSN));
	tls_scan_finish(&scanner, MM_ENT_BIT(MM_ENT_US_SSN), collect, &got);
	ok(got.n == 1 && got.v[0].entity == MM_ENT_US_SSN, "only the entities asked for");

	mask_tests();
	return tap_done();
}
