/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The split-point property: however the input is cut into chunks, the output is byte-identical
 * to the one-shot output, and no secret survives. Payloads: JSON with secrets near token
 * boundaries, strings and text longer than the hold limit with secrets across it, NDJSON with
 * a bad line, a form, and gzip-compressed JSON.
 *
 * Small payloads: every 2-chunk split, every 3-chunk split over a grid, 1 byte at a time.
 * Large payloads (> 8 KiB): every 2-chunk split within 400 bytes of each interesting offset
 * (secrets, the 64 KiB hold limit, the text scanner's window) and every 97th byte elsewhere.
 */
#include <errno.h>

#include "engine_test.h"
#include "zhelp.h"

#define SMALL 8192

struct payload {
	const char *name;
	const char *ct, *ce;
	struct mm_buf in;
	const char *secrets[8];
	struct policy *pol;
};

static const char *rules =
	"["
	"{\"name\":\"ssnf\",\"fields\":[\"$..ssn\"],\"entities\":[\"US_SSN\"],\"action\":{\"type\":"
	"\"mask\",\"keepLast\":4}},"
	"{\"name\":\"pw\",\"fields\":[\"$..password\",\"pw\"],\"action\":{\"type\":\"redact\"}},"
	"{\"name\":\"tok\",\"fields\":[\"$.auth.token\"],\"action\":{\"type\":\"replace\"}},"
	"{\"name\":\"ssn\",\"entities\":[\"US_SSN\"],\"action\":{\"type\":\"mask\",\"keepLast\":4}}"
	","
	"{\"name\":\"card\",\"entities\":[\"CREDIT_CARD\"],\"action\":{\"type\":\"mask\","
	"\"keepLast\":4}},"
	"{\"name\":\"mail\",\"entities\":[\"EMAIL_ADDRESS\"],\"action\":{\"type\":\"redact\"}}"
	"]";

static size_t count_secret(const struct mm_buf *b, const char *sec)
{
	size_t n = 0, l = strlen(sec);
	const char *p = b->data, *end = b->data + b->len;
	while (p && (p = memmem(p, (size_t)(end - p), sec, l))) {
		n++;
		p++;
	}
	return n;
}

static int same(const struct mm_buf *a, const struct mm_buf *b)
{
	return a->len == b->len && !memcmp(a->data, b->data, a->len);
}

/* Run with cuts; compare with the reference; returns 1 when equal. */
static int try_cuts(struct payload *pl, const struct mm_buf *ref, const size_t *cuts, size_t n,
		    size_t step)
{
	struct mm_buf out = {0};
	struct run_result rr =
		run_cuts(pl->pol, pl->ct, pl->ce, pl->in.data, pl->in.len, cuts, n, step, &out);
	int eq = rr.rc == 0 && same(&out, ref);
	if (!eq) {
		printf("#   %s: differs at cuts", pl->name);
		for (size_t i = 0; i < n; i++)
			printf(" %zu", cuts[i]);
		printf(" step %zu (rc %d, %zu vs %zu bytes)\n", step, rr.rc, out.len, ref->len);
	}
	free(rr.st.rules);
	mm_buf_free(&out);
	return eq;
}

static void check_payload(struct payload *pl, const size_t *marks, size_t n_marks)
{
	struct mm_buf ref = {0}, plain = {0};
	struct run_result rr =
		run_cuts(pl->pol, pl->ct, pl->ce, pl->in.data, pl->in.len, NULL, 0, 0, &ref);
	ok(rr.rc == 0, "%s: one-shot run succeeds (%zu bytes in, %zu out)", pl->name, pl->in.len,
	   ref.len);
	free(rr.st.rules);
	const struct mm_buf *view = &ref;
	if (pl->ce) {
		ok(zdecompress(ref.data, ref.len, 31, &plain) == 0, "%s: output decodes", pl->name);
		view = &plain;
	}
	size_t leaks = 0;
	for (int i = 0; pl->secrets[i]; i++)
		leaks += count_secret(view, pl->secrets[i]);
	is_int(leaks, 0, "%s: no secret in the output", pl->name);

	size_t len = pl->in.len, bad = 0, runs = 0;
	for (size_t c = 1; c < len && bad < 5; c++) {
		int near = len <= SMALL || c % 97 == 0;
		for (size_t m = 0; !near && m < n_marks; m++)
			near = c + 400 >= marks[m] && c <= marks[m] + 400;
		if (!near)
			continue;
		runs++;
		bad += !try_cuts(pl, &ref, &c, 1, 0);
	}
	is_int(bad, 0, "%s: %zu two-chunk splits identical", pl->name, runs);
	if (len <= SMALL) {
		size_t g = len / 40 ? len / 40 : 1, cuts[2];
		bad = runs = 0;
		for (cuts[0] = 1; cuts[0] < len && bad < 5; cuts[0] += g)
			for (cuts[1] = cuts[0] + 1; cuts[1] < len; cuts[1] += g) {
				runs++;
				bad += !try_cuts(pl, &ref, cuts, 2, 0);
			}
		is_int(bad, 0, "%s: %zu three-chunk splits identical", pl->name, runs);
		ok(try_cuts(pl, &ref, NULL, 0, 1), "%s: one byte at a time identical", pl->name);
	} else {
		ok(try_cuts(pl, &ref, NULL, 0, 4093), "%s: 4093-byte chunks identical", pl->name);
		ok(try_cuts(pl, &ref, NULL, 0, 65536), "%s: 64 KiB chunks identical", pl->name);
	}
	mm_buf_free(&ref);
	mm_buf_free(&plain);
}

static void fill_text(struct mm_buf *b, size_t upto, const size_t *at, const char *const *what,
		      size_t n)
{
	static const char words[] = "lorem ipsum dolor sit amet consectetur adipiscing elit ";
	size_t k = 0;
	while (b->len < upto) {
		if (k < n && b->len >= at[k]) {
			mm_buf_putc(b, ' ');
			mm_buf_puts(b, what[k++]);
			mm_buf_putc(b, ' ');
			continue;
		}
		mm_buf_putc(b, words[b->len % (sizeof(words) - 1)]);
	}
}

int main(void)
{
	struct policy *pol = mkpol(rules, "enforce", "fallback");
	struct payload pl = {0};

	/* 1: small JSON, secrets against every kind of boundary */
	pl = (struct payload){
		.name = "json-small",
		.ct = "application/json",
		.pol = pol,
		.secrets = {"536-22", "536228", "4111 1111", "hunter2", "bob@example", "s3cr3t"}};
	mm_buf_puts(
		&pl.in,
		"{\"ssn\":\"536228105\",\"user\":{\"password\":\"hunter2\",\"ssn\":536228105,"
		"\"name\":\"Bob\",\"mail\":\"bob@example.org\"},\"auth\":{\"token\":\"s3cr3t\"},"
		"\"notes\":[\"card 4111 1111 1111 1111\",\"\\u0035\\u0033\\u0036-22-8105\","
		"\"x\\\"y\\\\z \\ud83d\\ude00 536-22-8105\",12.5e-3,true,null],"
		"\"deep\":{\"a\":[{\"ssn\":\"536-22-8105\"},{\"password\":[1,\"hunter2\"]}]}}");
	check_payload(&pl, NULL, 0);
	mm_buf_free(&pl.in);

	/* 2: a string longer than the hold limit, secrets across the limit and the window */
	pl = (struct payload){
		.name = "json-long-string",
		.ct = "application/json",
		.pol = pol,
		.secrets = {"536-22", "4111 1111", "4111-1111", "411111", "bob@example"}};
	{
		size_t at[] = {100, 65500, 65530, 69600, 69630, 131000};
		const char *what[] = {"536-22-8105",	 "4111 1111 1111 1111", "536-22-8105",
				      "bob@example.org", "536-22-8105",		"536-22-8105"};
		mm_buf_puts(&pl.in, "{\"a\":1,\"doc\":\"");
		fill_text(&pl.in, 132000, at, what, 6);
		mm_buf_puts(&pl.in, "\",\"ssn\":\"536-22-8105\"}");
		size_t marks[] = {14,	 100,	65500,	65536,	65550,
				  69633, 69650, 131000, 132000, 132020};
		check_payload(&pl, marks, 10);
	}
	mm_buf_free(&pl.in);

	/* 3: text, longer than the scanner window */
	pl = (struct payload){
		.name = "text",
		.ct = "text/plain",
		.pol = pol,
		.secrets = {"536-22", "4111 1111", "4111-1111", "411111", "bob@example"}};
	{
		size_t at[] = {10, 65530, 69620, 69640, 100000};
		const char *what[] = {"536-22-8105", "536-22-8105", "bob@example.org",
				      "4111-1111-1111-1111", "536-22-8105"};
		fill_text(&pl.in, 101000, at, what, 5);
		size_t marks[] = {10, 65536, 69633, 69650, 100000, 101000};
		check_payload(&pl, marks, 6);
	}
	mm_buf_free(&pl.in);

	/* 4: small text */
	pl = (struct payload){
		.name = "text-small",
		.ct = "text/plain",
		.pol = pol,
		.secrets = {"536-22", "4111 1111", "4111-1111", "411111", "bob@example"}};
	mm_buf_puts(&pl.in, "536-22-8105 starts, mail bob@example.org, card 4111111111111111 ends "
			    "536-22-8105");
	check_payload(&pl, NULL, 0);
	mm_buf_free(&pl.in);

	/* 5: NDJSON with a bad line in the middle */
	pl = (struct payload){.name = "ndjson",
			      .ct = "application/x-ndjson",
			      .pol = pol,
			      .secrets = {"536-22", "536228", "hunter2", "bob@example"}};
	mm_buf_puts(&pl.in, "{\"ssn\":\"536228105\",\"password\":\"hunter2\"}\n"
			    "{\"m\":\"bob@example.org\",\n"
			    "not json 536-22-8105 bob@example.org\n"
			    "[\"536-22-8105\",{\"password\":\"hunter2\"}]\n\n");
	check_payload(&pl, NULL, 0);
	mm_buf_free(&pl.in);

	/* 6: form */
	pl = (struct payload){.name = "form",
			      .ct = "application/x-www-form-urlencoded",
			      .pol = pol,
			      .secrets = {"536-22", "536228", "hunter2", "bob%40example"}};
	mm_buf_puts(&pl.in, "user=bob&pw=hunter2&note=ssn+536-22-8105+and+bob%40example.org"
			    "&ssn=536228105&x=%7E%21");
	check_payload(&pl, NULL, 0);
	mm_buf_free(&pl.in);

	/* 7: gzip-compressed JSON (splits of the compressed bytes) */
	pl = (struct payload){.name = "json-gzip",
			      .ct = "application/json",
			      .ce = "gzip",
			      .pol = pol,
			      .secrets = {"536-22", "4111 1111", "hunter2"}};
	{
		struct mm_buf j = {0};
		mm_buf_putc(&j, '[');
		for (int i = 0; i < 200; i++)
			mm_buf_puts(&j, i ? ",{\"ssn\":\"536-22-8105\",\"n\":\"card 4111 1111 1111 "
					    "1111\",\"password\":\"hunter2\"}"
					  : "{\"id\":0}");
		mm_buf_putc(&j, ']');
		zcompress(j.data, j.len, 31, &pl.in);
		mm_buf_free(&j);
		check_payload(&pl, NULL, 0);
	}
	mm_buf_free(&pl.in);

	policy_unref(pol);
	return tap_done();
}
