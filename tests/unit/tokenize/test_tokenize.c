/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Format-preserving tokens, property tests over random values of every shape:
 * detokenize(tokenize(x)) == x, the format is kept (length, separators, kind, kept units), the
 * entity a value is detected as is the token's too, another tweak or key gives another token,
 * and with luhn the tokens are Luhn-valid.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect.h"
#include "tokenize.h"
#include "tap.h"

#define ROUNDS 300

static unsigned seed = 7;

static int rnd(int n)
{
	return rand_r(&seed) % n;
}

static struct ff1_key *key_of(unsigned char b)
{
	unsigned char key[32];
	for (int i = 0; i < 32; i++)
		key[i] = (unsigned char)(b + i * 7);
	return ff1_key_new(key, 32);
}

static struct tok_opts opts(uint32_t kf, uint32_t kl, bool luhn, const char *space)
{
	return (struct tok_opts){.keep_first = kf,
				 .keep_last = kl,
				 .luhn = luhn,
				 .keep_domain = true,
				 .tweak = space,
				 .tweak_len = strlen(space)};
}

/* The entity detected over the whole of s, or -1. */
static int whole_entity(const char *s, uint32_t ents)
{
	struct detect_match m;
	size_t n = strlen(s);
	if (detect_scan(s, n, 0, ents, DETECT_FIELD_CONTEXT, &m, 1) == 1 && m.off == 0 &&
	    m.len == n)
		return (int)m.entity;
	return -1;
}

static bool same_layout(const char *a, const char *b)
{
	size_t n = strlen(a);
	if (strlen(b) != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		bool da = a[i] >= '0' && a[i] <= '9', db = b[i] >= '0' && b[i] <= '9';
		bool ua = a[i] >= 'A' && a[i] <= 'Z', ub = b[i] >= 'A' && b[i] <= 'Z';
		bool la = a[i] >= 'a' && a[i] <= 'z', lb = b[i] >= 'a' && b[i] <= 'z';
		if ((da || ua || la) != (db || ub || lb))
			return false;
		if (!(da || ua || la) && a[i] != b[i])
			return false; /* a separator moved or changed */
	}
	return true;
}

struct stats {
	int fail_tok, fail_back, fail_layout, fail_keep, fail_entity, fail_luhn, fail_kind, same;
};

/* Tokenize v, check the properties, detokenize. */
static void one(struct ff1_key *k, const struct tok_opts *o, const char *v, struct stats *st,
		uint32_t ents)
{
	size_t n = strlen(v);
	char t[512], b[512];
	if (tok_transform(k, o, false, v, n, t)) {
		st->fail_tok++;
		printf("# tokenize failed on %s\n", v);
		return;
	}
	t[n] = '\0';
	if (tok_transform(k, o, true, t, n, b) || memcmp(b, v, n)) {
		st->fail_back++;
		printf("# %s -> %s did not come back\n", v, t);
	}
	st->same += !strcmp(t, v);
	st->fail_layout += !same_layout(v, t);
	/* Kept units: the first keep_first and last keep_last letters/digits are the same. */
	size_t units = 0, u = 0;
	for (size_t i = 0; i < n; i++)
		units += (v[i] >= '0' && v[i] <= '9') ||
			 ((v[i] | 0x20) >= 'a' && (v[i] | 0x20) <= 'z');
	for (size_t i = 0; i < n && !strchr(v, '@'); i++) {
		bool unit = (v[i] >= '0' && v[i] <= '9') ||
			    ((v[i] | 0x20) >= 'a' && (v[i] | 0x20) <= 'z');
		if (!unit)
			continue;
		if ((u < o->keep_first || u >= units - o->keep_last) && t[i] != v[i])
			st->fail_keep++;
		u++;
	}
	if (whole_entity(v, ents) != whole_entity(t, ents)) {
		st->fail_entity++;
		printf("# %s -> %s: entity changed\n", v, t);
	}
	if (o->luhn) {
		char d[64];
		size_t nd = 0;
		for (size_t i = 0; i < n; i++)
			if (t[i] >= '0' && t[i] <= '9')
				d[nd++] = t[i];
		st->fail_luhn += !detect_luhn_ok(d, nd);
	}
	bool vu = false, vl = false, tu = false, tl = false;
	for (size_t i = 0; i < n; i++) {
		vu |= v[i] >= 'A' && v[i] <= 'Z';
		vl |= v[i] >= 'a' && v[i] <= 'z';
		tu |= t[i] >= 'A' && t[i] <= 'Z';
		tl |= t[i] >= 'a' && t[i] <= 'z';
	}
	if (!strchr(v, '@') && (vu != tu || vl != tl))
		st->fail_kind++;
}

static void report(const char *what, const struct stats *st)
{
	is_int(st->fail_tok, 0, "%s: every value tokenizes", what);
	is_int(st->fail_back, 0, "%s: detokenize(tokenize(x)) == x", what);
	is_int(st->fail_layout, 0, "%s: length and separators kept", what);
	is_int(st->fail_keep, 0, "%s: keepFirst/keepLast units kept", what);
	is_int(st->fail_entity, 0, "%s: the detected entity is kept", what);
	is_int(st->fail_luhn, 0, "%s: Luhn-valid when asked", what);
	is_int(st->fail_kind, 0, "%s: letter case kept", what);
	ok(st->same < ROUNDS / 20, "%s: tokens differ from values (%d the same)", what, st->same);
}

static void digits(char *p, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (char)('0' + rnd(10));
}

static void luhn_fix(char *d, size_t n)
{
	for (char c = '0'; c <= '9'; c++) {
		d[n - 1] = c;
		if (detect_luhn_ok(d, n))
			return;
	}
}

static void test_ssn(struct ff1_key *k)
{
	struct stats st = {0};
	struct tok_opts o = opts(0, 0, false, "default");
	uint32_t ents = MM_ENT_BIT(MM_ENT_US_SSN);
	for (int r = 0; r < ROUNDS; r++) {
		char v[16];
		do {
			digits(v, 3);
			v[3] = '-';
			digits(v + 4, 2);
			v[6] = '-';
			digits(v + 7, 4);
			v[11] = '\0';
		} while (r % 4 && !detect_ssn_ok(v, 11)); /* mostly valid SSNs, some not */
		one(k, &o, v, &st, ents);
		char bare[10];
		memcpy(bare, v, 3);
		memcpy(bare + 3, v + 4, 2);
		memcpy(bare + 5, v + 7, 4);
		bare[9] = '\0';
		one(k, &o, bare, &st, ents);
	}
	st.same = 0;
	report("US_SSN ddd-dd-dddd and bare", &st);
}

static void test_cards(struct ff1_key *k)
{
	static const char *const bins[] = {"4", "51", "2221", "34", "6011", "3528", "62"};
	static const int lens[] = {16, 16, 16, 15, 16, 16, 19};
	uint32_t ents = MM_ENT_BIT(MM_ENT_CREDIT_CARD);
	struct {
		uint32_t kf, kl;
		bool luhn;
		const char *name;
	} cases[] = {
		{6, 4, false, "cards keepFirst 6 keepLast 4"},
		{6, 4, true, "cards keepFirst 6 keepLast 4 luhn"},
		{0, 0, true, "cards luhn, nothing kept"},
		{0, 4, true, "cards luhn keepLast 4"},
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct stats st = {0};
		struct tok_opts o = opts(cases[c].kf, cases[c].kl, cases[c].luhn, "cards");
		for (int r = 0; r < ROUNDS; r++) {
			int b = rnd(7), n = lens[b];
			char d[24], v[32];
			size_t bl = strlen(bins[b]);
			memcpy(d, bins[b], bl);
			digits(d + bl, n - (int)bl);
			luhn_fix(d, (size_t)n);
			d[n] = '\0';
			if (r % 3 == 0 && n == 16) { /* grouped by four */
				snprintf(v, sizeof(v), "%.4s %.4s %.4s %.4s", d, d + 4, d + 8,
					 d + 12);
				if (r % 2)
					for (char *q = v; *q; q++)
						*q = *q == ' ' ? '-' : *q;
			} else {
				strcpy(v, d);
			}
			if (n - (int)cases[c].kf - (int)cases[c].kl < 6)
				continue;
			/* Without luhn the token need not be a card: only cards are compared then. */
			one(k, &o, v, &st, cases[c].luhn ? ents : 0);
		}
		report(cases[c].name, &st);
	}
}

static void test_phones(struct ff1_key *k)
{
	struct stats st = {0};
	struct tok_opts o = opts(0, 0, false, "default");
	uint32_t ents = MM_ENT_BIT(MM_ENT_PHONE_NUMBER);
	for (int r = 0; r < ROUNDS; r++) {
		char v[32], a[4], x[4], l[5];
		digits(a, 3);
		digits(x, 3);
		digits(l, 4);
		a[0] = (char)('2' + rnd(8));
		x[0] = (char)('2' + rnd(8));
		switch (r % 4) {
		case 0:
			snprintf(v, sizeof(v), "(%.3s) %.3s-%.4s", a, x, l);
			break;
		case 1:
			snprintf(v, sizeof(v), "+1 %.3s-%.3s-%.4s", a, x, l);
			break;
		case 2:
			snprintf(v, sizeof(v), "%.3s.%.3s.%.4s", a, x, l);
			break;
		default:
			snprintf(v, sizeof(v), "+44 %.3s %.3s %.4s", a, x, l);
			break;
		}
		one(k, &o, v, &st, ents);
	}
	report("phone numbers", &st);
}

static void test_ids(struct ff1_key *k)
{
	static const char up[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
	static const char lo[] = "0123456789abcdefghijklmnopqrstuvwxyz";
	static const char mx[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	const char *alpha[] = {up, lo, mx};
	const char *names[] = {"upper-case IDs", "lower-case IDs", "mixed-case IDs"};
	for (int a = 0; a < 3; a++) {
		struct stats st = {0};
		struct tok_opts o = opts((uint32_t)a, 0, false, "ids");
		for (int r = 0; r < ROUNDS; r++) {
			char v[80];
			int n = 6 + rnd(a == 2 ? 60 : 30), m = 0;
			for (int i = 0; i < n; i++) {
				if (i && i % 5 == 0 && r % 2)
					v[m++] = '-';
				v[m++] = alpha[a][rnd((int)strlen(alpha[a]))];
			}
			v[m] = '\0';
			if (m < 2)
				continue;
			/* Make the kind what the case names: one letter of each case it has. */
			v[m - 1] = a == 1 ? 'q' : 'Q';
			if (a == 2)
				v[m - 2] = 'z';
			one(k, &o, v, &st, 0);
		}
		report(names[a], &st);
	}
}

static void test_email(struct ff1_key *k)
{
	static const char *const doms[] = {"example.com", "mail.example.org", "x.io"};
	struct stats st = {0}, st2 = {0};
	struct tok_opts o = opts(0, 0, false, "mail");
	uint32_t ents = MM_ENT_BIT(MM_ENT_EMAIL_ADDRESS);
	int dom_kept = 0, dom_changed = 0, tld_kept = 0;
	for (int r = 0; r < ROUNDS; r++) {
		char v[96], t[96];
		const char *local = r % 3 == 0 ? "john.doe" : r % 3 == 1 ? "a.b_c+tag" : "user1234";
		snprintf(v, sizeof(v), "%s%d@%s", local, rnd(1000), doms[rnd(3)]);
		o.keep_domain = true;
		one(k, &o, v, &st, ents);
		size_t n = strlen(v);
		tok_transform(k, &o, false, v, n, t);
		t[n] = '\0';
		dom_kept += !strcmp(strchr(v, '@'), strchr(t, '@'));
		o.keep_domain = false;
		one(k, &o, v, &st2, ents);
		tok_transform(k, &o, false, v, n, t);
		dom_changed += strcmp(strchr(v, '@'), strchr(t, '@')) != 0;
		tld_kept += !strcmp(strrchr(v, '.'), strrchr(t, '.'));
	}
	report("e-mail, domain kept", &st);
	is_int(dom_kept, ROUNDS, "e-mail: keepDomain copies the domain");
	report("e-mail, domain tokenized", &st2);
	ok(dom_changed > ROUNDS * 9 / 10, "e-mail: the domain is tokenized without keepDomain");
	is_int(tld_kept, ROUNDS, "e-mail: the top-level domain stays");
}

static void test_tweak_and_key(struct ff1_key *k)
{
	struct ff1_key *k2 = key_of(99);
	struct tok_opts a = opts(0, 0, false, "a"), b = opts(0, 0, false, "b");
	int same_tweak = 0, same_key = 0;
	for (int r = 0; r < ROUNDS; r++) {
		char v[20], t1[20], t2[20], t3[20];
		digits(v, 16);
		tok_transform(k, &a, false, v, 16, t1);
		tok_transform(k, &b, false, v, 16, t2);
		tok_transform(k2, &a, false, v, 16, t3);
		same_tweak += !memcmp(t1, t2, 16);
		same_key += !memcmp(t1, t3, 16);
	}
	is_int(same_tweak, 0, "another token space gives another token");
	is_int(same_key, 0, "another key gives another token");
	char t[20], t2[20];
	tok_transform(k, &a, false, "4111111111111111", 16, t);
	tok_transform(k, &a, false, "4111111111111111", 16, t2);
	ok(!memcmp(t, t2, 16), "the same value, key and space give the same token");
	ff1_key_free(k2);
}

static void test_unfit(struct ff1_key *k)
{
	struct tok_opts o = opts(0, 0, false, "default");
	struct tok_shape sh;
	const char *why = NULL;
	char out[64];

	is_int(tok_shape_parse("12345", 5, &o, &sh, &why), -EDOM, "5 digits: too short");
	ok(why && strstr(why, "1,000,000"), "the reason names FF1's minimum");
	is_int(tok_shape_parse("123456", 6, &o, &sh, NULL), 0, "6 digits: enough");
	is_int(sh.radix, 10, "digits: radix 10");
	is_int(tok_shape_parse("ABC1", 4, &o, &sh, NULL), 0, "4 upper-case units: enough");
	is_int(sh.radix, 36, "upper case: radix 36");
	is_int(tok_shape_parse("aB1", 3, &o, &sh, NULL), -EDOM, "3 mixed units: too short");
	is_int(tok_shape_parse("aBc1", 4, &o, &sh, NULL), 0, "4 mixed units");
	is_int(sh.radix, 62, "mixed case: radix 62");
	is_int(tok_shape_parse("Jos\xc3\xa9 M", 7, &o, &sh, &why), -EDOM, "not ASCII");
	is_int(tok_shape_parse("", 0, &o, &sh, NULL), -EDOM, "empty");
	is_int(tok_shape_parse("a@b@c.com", 9, &o, &sh, NULL), -EDOM, "two @");
	is_int(tok_shape_parse("bob@example.com", 15, &o, &sh, NULL), -EDOM,
	       "a 3-letter local part is too short");
	o.keep_last = 4;
	is_int(tok_shape_parse("536-22-1234", 11, &o, &sh, NULL), -EDOM,
	       "SSN keepLast 4: 5 digits left, too short");
	o.keep_last = 0;
	o.luhn = true;
	is_int(tok_shape_parse("4111111111111112", 16, &o, &sh, &why), -EDOM,
	       "luhn: a number that fails Luhn is refused");
	is_int(tok_transform(k, &o, false, "4111111111111112", 16, out), -EDOM,
	       "luhn: tok_transform refuses it");
	ok(out[0] == '*' && out[15] == '*', "and leaves only '*'");
	is_int(tok_transform(k, &o, true, "4111111111111112", 16, out), -EDOM,
	       "luhn: a token that fails Luhn does not detokenize");
	o.luhn = false;
	is_int(tok_transform(k, &o, false, out, 16, out), -EINVAL, "in place is refused");
	char m[32];
	o = opts(0, 0, false, "default");
	is_int(tok_mask(&o, "bob@example.com", 15, m), 0, "tok_mask: an e-mail address");
	is_mem(m, 15, "***@example.com", "tok_mask: the domain stays, as in a token");
	o.keep_domain = false;
	tok_mask(&o, "bob@example.com", 15, m);
	is_mem(m, 15, "***@*******.com", "tok_mask: without keepDomain the TLD stays");
	o.keep_domain = true;
	o.keep_last = 2;
	tok_mask(&o, "12-34", 5, m);
	is_mem(m, 5, "**-34", "tok_mask: keepLast kept when something is hidden");
	o.keep_last = 0;
	tok_mask(&o, "a@b@c", 5, m);
	is_mem(m, 5, "*@*@*", "tok_mask: not an address: every unit hidden");
	o.keep_last = 0;
	is_int(tok_mask(&o, "Jos\xc3\xa9", 5, m), -EDOM, "tok_mask: not ASCII is the caller's");
	char big[300];
	memset(big, '7', sizeof(big));
	is_int(tok_shape_parse(big, sizeof(big), &o, &sh, &why), -EDOM, "300 digits: too long");
}

int main(void)
{
	struct ff1_key *k = key_of(1);
	test_ssn(k);
	test_cards(k);
	test_phones(k);
	test_ids(k);
	test_email(k);
	test_tweak_and_key(k);
	test_unfit(k);
	ff1_key_free(k);
	return tap_done();
}
