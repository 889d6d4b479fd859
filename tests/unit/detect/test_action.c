/* SPDX-License-Identifier: Apache-2.0 */
/* Actions: format-preserving mask, replace, redact, HMAC-SHA256 hash. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "action.h"
#include "detect.h"
#include "tap.h"

static struct policy_action mask_act(uint32_t kf, uint32_t kl, const char *ch)
{
	struct policy_action a = {.type = POLICY_ACTION_MASK, .keep_first = kf, .keep_last = kl};
	if (ch)
		strcpy(a.mask_char, ch);
	return a;
}

/* Apply `a` to `val` and compare the whole output with `want`. */
static void check(const struct policy_action *a, int entity, const char *val, const char *want,
		  const char *name)
{
	struct mm_buf out = {0};
	int r = action_apply(a, entity, val, strlen(val), &out);
	is_int(r, 0, "%s: returns 0", name);
	is_mem(out.data ? out.data : "", out.len, want, "%s", name);
	mm_buf_free(&out);
}

static void test_mask(void)
{
	struct policy_action a = mask_act(0, 4, NULL);
	check(&a, MM_ENT_CREDIT_CARD, "4111-1111-1111-1111", "****-****-****-1111",
	      "card keepLast 4, default char, dashes kept");
	check(&a, MM_ENT_CREDIT_CARD, "4111 1111 1111 1111", "**** **** **** 1111", "spaces kept");
	check(&a, -1, "1234", "****", "value no longer than keepLast is masked entirely");
	check(&a, -1, "12345", "*2345", "one masked, four kept");

	a = mask_act(2, 2, NULL);
	check(&a, MM_ENT_EMAIL_ADDRESS, "john.doe@example.com", "jo**.***@*******.*om",
	      "email keepFirst 2 keepLast 2, . and @ kept");
	check(&a, -1, "abcd", "****", "keepFirst+keepLast == length: all masked");
	check(&a, -1, "abcde", "ab*de", "keepFirst+keepLast < length");

	a = mask_act(0, 4, "X");
	check(&a, MM_ENT_US_SSN, "536-22-1234", "XXX-XX-1234", "ssn with char X");

	a = mask_act(0, 4, "\xe2\x80\xa2"); /* U+2022 BULLET */
	check(&a, MM_ENT_US_SSN, "536-22-1234",
	      "\xe2\x80\xa2\xe2\x80\xa2\xe2\x80\xa2-"
	      "\xe2\x80\xa2\xe2\x80\xa2-1234",
	      "multi-byte mask char");

	a = mask_act(1, 0, NULL);
	check(&a, -1, "Jos\xc3\xa9 M\xc3\xbcller", "J*** ******",
	      "UTF-8 letters are one unit each");
	a = mask_act(0, 1, NULL);
	check(&a, -1, "Zo\xc3\xab", "**\xc3\xab", "kept code point copied whole");
	a = mask_act(0, 0, "#");
	check(&a, -1, "\xe6\x97\xa5\xe6\x9c\xac-\xf0\x9f\x98\x80!", "##-#!",
	      "CJK and emoji masked per code point, punctuation kept");
	check(&a, -1,
	      "a\xff"
	      "b\xc3",
	      "####", "invalid UTF-8 bytes masked one by one");
	check(&a, -1, "\xe0\x80\x80", "###", "overlong sequence is three invalid bytes");
	check(&a, -1, "", "", "empty value");
	check(&a, -1, "--- ...", "--- ...", "nothing maskable");

	/* appends after what the buffer already holds */
	struct mm_buf out = {0};
	mm_buf_puts(&out, "pre:");
	a = mask_act(0, 2, NULL);
	is_int(action_apply(&a, -1, "abc", 3, &out), 0, "append returns 0");
	is_mem(out.data, out.len, "pre:*bc", "mask appends to the buffer");
	mm_buf_free(&out);

	/* a long value */
	char big[5000];
	memset(big, '7', sizeof(big));
	a = mask_act(0, 4, NULL);
	is_int(action_apply(&a, -1, big, sizeof(big), &out), 0, "long value");
	ok(out.len == sizeof(big) && out.data[0] == '*' && out.data[4995] == '*' &&
		   out.data[4996] == '7',
	   "long value masked but the last 4");
	mm_buf_free(&out);
}

/*
 * The mask rule written out plainly: every ASCII letter or digit is a unit, hidden unless among
 * the first kf or last kl (all hidden when kf + kl covers every unit).
 */
static size_t ref_mask(const char *v, size_t n, uint32_t kf, uint32_t kl, char mc, char *o)
{
	size_t units = 0, u = 0;
	for (size_t i = 0; i < n; i++)
		units += (v[i] >= '0' && v[i] <= '9') ||
			 ((v[i] | 0x20) >= 'a' && (v[i] | 0x20) <= 'z');
	if ((size_t)kf + kl >= units)
		kf = kl = 0;
	for (size_t i = 0; i < n; i++) {
		bool unit = (v[i] >= '0' && v[i] <= '9') ||
			    ((v[i] | 0x20) >= 'a' && (v[i] | 0x20) <= 'z');
		o[i] = unit && u >= kf && u + kl < units ? mc : v[i];
		u += unit;
	}
	return n;
}

/* The ASCII fast paths of mask against ref_mask(), every length 0..80, keeps 0..5, 30, 64. */
static void test_mask_ascii(void)
{
	static const char alphabet[] = "0123456789-. @AZaz_/~\x7f\x01";
	char v[81], want[81];
	unsigned seed = 12345;
	int bad = 0;
	struct mm_buf out = {0};
	for (size_t n = 0; n <= 80; n++) {
		for (int rep = 0; rep < 8; rep++) {
			for (size_t i = 0; i < n; i++) {
				seed = seed * 1103515245u + 12345u;
				v[i] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
			}
			static const uint32_t keeps[] = {0, 1, 2, 3, 4, 5, 30, 64};
			for (size_t fi = 0; fi < sizeof(keeps) / sizeof(*keeps); fi++) {
				for (size_t li = 0; li < sizeof(keeps) / sizeof(*keeps); li++) {
					uint32_t kf = keeps[fi], kl = keeps[li];
					struct policy_action a =
						mask_act(kf, kl, rep & 1 ? "#" : NULL);
					ref_mask(v, n, kf, kl, rep & 1 ? '#' : '*', want);
					mm_buf_reset(&out);
					if (action_apply(&a, -1, v, n, &out) || out.len != n ||
					    (n && memcmp(out.data, want, n)))
						bad++;
				}
			}
		}
	}
	is_int(bad, 0,
	       "ASCII mask matches the plain rule (lengths 0..80: the 64-byte vector path and the "
	       "loop, keep 0..5, 30, 64)");
	mm_buf_free(&out);
}

static void test_length_preserving(void)
{
	struct policy_action a = mask_act(0, 4, NULL);
	ok(action_length_preserving(&a), "mask with default char");
	a = mask_act(0, 4, "X");
	ok(action_length_preserving(&a), "mask with X");
	a = mask_act(0, 4, "\xe2\x80\xa2");
	ok(!action_length_preserving(&a), "mask with a 3-byte char");
	struct policy_action r = {.type = POLICY_ACTION_REPLACE};
	ok(!action_length_preserving(&r), "replace");
	r.type = POLICY_ACTION_REDACT;
	ok(!action_length_preserving(&r), "redact");
	r.type = POLICY_ACTION_HASH;
	ok(!action_length_preserving(&r), "hash");
	ok(!action_length_preserving(NULL), "NULL");
}

static void test_replace_redact(void)
{
	struct policy_action a = {.type = POLICY_ACTION_REPLACE};
	check(&a, MM_ENT_CREDIT_CARD, "4111111111111111", "<CREDIT_CARD>",
	      "replace default entity");
	check(&a, MM_ENT_EMAIL_ADDRESS, "a@b.io", "<EMAIL_ADDRESS>", "replace default email");
	check(&a, -1, "whatever", "<MASKED>", "replace default field");
	check(&a, 1000, "x", "<MASKED>", "replace with an unknown entity");
	char v[] = "[hidden]";
	a.value = v;
	check(&a, MM_ENT_US_SSN, "536-22-1234", "[hidden]", "replace with value");
	char e[] = "";
	a.value = e;
	check(&a, -1, "x", "", "replace with empty value");

	struct policy_action d = {.type = POLICY_ACTION_REDACT};
	struct mm_buf out = {0};
	mm_buf_puts(&out, "keep");
	is_int(action_apply(&d, -1, "secret", 6, &out), 0, "redact returns 0");
	is_mem(out.data, out.len, "keep", "redact appends nothing");
	mm_buf_free(&out);

	is_int(action_apply(NULL, -1, "x", 1, &out), -EINVAL, "NULL action");
	is_int(action_apply(&d, -1, NULL, 1, &out), -EINVAL, "NULL value with a length");
	struct policy_action bad = {.type = (enum policy_action_type)77};
	is_int(action_apply(&bad, -1, "x", 1, &out), -EINVAL, "unknown action type");
}

static void test_hash(void)
{
	unsigned char key[] = "Jefe";
	struct policy_action a = {
		.type = POLICY_ACTION_HASH, .hash_key = key, .hash_key_len = 4, .hash_len = 64};
	const char *msg = "what do ya want for nothing?";
	check(&a, -1, msg, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
	      "RFC 4231 test case 2");
	a.hash_len = 0;
	check(&a, -1, msg, "5bdcc146bf60754e", "default length 16");
	a.hash_len = 7;
	check(&a, -1, msg, "5bdcc14", "odd length");
	a.hash_len = 200;
	check(&a, -1, msg, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
	      "length capped at 64");
	char pre[] = "hash:";
	a.hash_len = 12;
	a.hash_prefix = pre;
	check(&a, MM_ENT_EMAIL_ADDRESS, msg, "hash:5bdcc146bf60", "prefix");

	/* deterministic, keyed */
	struct mm_buf o1 = {0}, o2 = {0}, o3 = {0};
	a.hash_prefix = NULL;
	a.hash_len = 64;
	action_apply(&a, -1, "john@example.com", 16, &o1);
	action_apply(&a, -1, "john@example.com", 16, &o2);
	unsigned char k2[] = "Jeff";
	a.hash_key = k2;
	action_apply(&a, -1, "john@example.com", 16, &o3);
	ok(o1.len == 64 && o2.len == 64 && memcmp(o1.data, o2.data, 64) == 0, "deterministic");
	ok(o3.len == 64 && memcmp(o1.data, o3.data, 64) != 0, "depends on the key");
	mm_buf_free(&o1);
	mm_buf_free(&o2);
	mm_buf_free(&o3);

	/* HMAC-SHA256 with an empty key over an empty message */
	struct policy_action z = {.type = POLICY_ACTION_HASH, .hash_len = 64};
	check(&z, -1, "", "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad",
	      "empty key, empty value");
}

/* The prepared context gives the one-shot output for every value, and follows a key change. */
static void test_hash_ctx(void)
{
	unsigned char key[] = "Jefe", k2[] = "another key";
	char pre[] = "h:";
	struct policy_action a = {.type = POLICY_ACTION_HASH,
				  .hash_key = key,
				  .hash_key_len = 4,
				  .hash_len = 64,
				  .hash_prefix = pre};
	struct policy_action b = a;
	b.hash_key = k2;
	b.hash_key_len = sizeof(k2) - 1;
	struct action_ctx c = {0};
	struct mm_buf o1 = {0}, o2 = {0};
	int same = 1, rc = 0;
	char val[300];

	for (int i = 0; i < 300; i++) {
		val[i] = (char)('a' + i % 26);
		const struct policy_action *act = i % 100 == 99 ? &b : &a;
		mm_buf_reset(&o1);
		mm_buf_reset(&o2);
		rc |= action_apply(act, -1, val, (size_t)i, &o1);
		rc |= action_apply_ctx(act, &c, -1, val, (size_t)i, &o2);
		same &= o1.len == o2.len && !memcmp(o1.data, o2.data, o1.len);
	}
	ok(!rc && same, "prepared context: same output as one-shot for 300 values, 3 key changes");
	mm_buf_reset(&o2);
	is_int(action_apply_ctx(&a, &c, -1, "what do ya want for nothing?", 28, &o2), 0,
	       "RFC 4231 case 2 through a reused context");
	is_mem(o2.data, o2.len,
	       "h:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
	       "RFC 4231 case 2 digest");
	action_ctx_free(&c);
	ok(c.mac == NULL, "freed context is empty");

	/* Keys around the SHA-256 block size: shorter ones are padded, longer ones hashed. */
	unsigned char lk[140];
	int keys_same = 1;
	for (size_t kl = 0; kl < sizeof(lk); kl++) {
		struct policy_action k = {.type = POLICY_ACTION_HASH, .hash_len = 64};
		lk[kl] = (unsigned char)(0xaa ^ kl);
		k.hash_key = kl ? lk : NULL;
		k.hash_key_len = kl;
		mm_buf_reset(&o1);
		mm_buf_reset(&o2);
		rc |= action_apply(&k, -1, val, kl % 70, &o1);
		rc |= action_apply_ctx(&k, &c, -1, val, kl % 70, &o2);
		keys_same &= o1.len == o2.len && !memcmp(o1.data, o2.data, o1.len);
		action_ctx_free(&c);
	}
	ok(!rc && keys_same, "prepared context: same output as one-shot for key lengths 0..139");
	unsigned char k131[131];
	memset(k131, 0xaa, sizeof(k131));
	struct policy_action big = {.type = POLICY_ACTION_HASH,
				    .hash_key = k131,
				    .hash_key_len = sizeof(k131),
				    .hash_len = 64};
	static const char msg6[] = "Test Using Larger Than Block-Size Key - Hash Key First";
	mm_buf_reset(&o2);
	is_int(action_apply_ctx(&big, &c, -1, msg6, sizeof(msg6) - 1, &o2), 0,
	       "RFC 4231 case 6 (131-byte key)");
	is_mem(o2.data, o2.len, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
	       "RFC 4231 case 6 digest");
	action_ctx_free(&c);

	struct policy_action z = {.type = POLICY_ACTION_HASH, .hash_len = 64};
	mm_buf_reset(&o2);
	action_apply_ctx(&z, &c, -1, "", 0, &o2);
	mm_buf_reset(&o2);
	is_int(action_apply_ctx(&z, &c, -1, "", 0, &o2), 0, "empty key twice");
	is_mem(o2.data, o2.len, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad",
	       "empty key, empty value, reused context");
	struct policy_action m = mask_act(0, 2, NULL);
	mm_buf_reset(&o2);
	action_apply_ctx(&m, &c, -1, "12345", 5, &o2);
	is_mem(o2.data, o2.len, "***45", "non-hash action ignores the context");
	action_ctx_free(&c);
	action_ctx_free(NULL);
	mm_buf_free(&o1);
	mm_buf_free(&o2);
}

/* HMAC-SHA256 through OpenSSL's EVP_MAC, as the reference for the engine's prepared states. */
static void evp_hmac(const unsigned char *key, size_t kl, const char *v, size_t n, char hex[65])
{
	static const unsigned char empty[1];
	unsigned char md[32];
	size_t mdl = 0;
	char digest[] = "SHA256";
	OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
			       OSSL_PARAM_construct_end()};
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *c = mac ? EVP_MAC_CTX_new(mac) : NULL;
	hex[0] = 0;
	if (c && EVP_MAC_init(c, kl ? key : empty, kl, params) &&
	    EVP_MAC_update(c, (const unsigned char *)(n ? v : ""), n) &&
	    EVP_MAC_final(c, md, &mdl, sizeof(md)) && mdl == 32)
		for (int i = 0; i < 32; i++)
			sprintf(hex + 2 * i, "%02x", md[i]);
	EVP_MAC_CTX_free(c);
	EVP_MAC_free(mac);
}

/* RFC 4231 section 4 (HMAC-SHA-256), and random keys and values against EVP_MAC. */
static void test_hmac_vectors(void)
{
	unsigned char k1[20], k3[20], k4[25], k5[20], k6[131];
	char d3[50], d4[50];
	memset(k1, 0x0b, sizeof(k1));
	memset(k3, 0xaa, sizeof(k3));
	memset(d3, 0xdd, sizeof(d3));
	for (int i = 0; i < 25; i++)
		k4[i] = (unsigned char)(i + 1);
	memset(d4, 0xcd, sizeof(d4));
	memset(k5, 0x0c, sizeof(k5));
	memset(k6, 0xaa, sizeof(k6));
	static const char m7[] = "This is a test using a larger than block-size key and a larger "
				 "than block-size data. The key needs to be hashed before being "
				 "used by the HMAC algorithm.";
	const struct {
		const unsigned char *key;
		size_t kl;
		const char *data;
		size_t dl;
		const char *want;
	} v[] = {
		{k1, 20, "Hi There", 8,
		 "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
		{(const unsigned char *)"Jefe", 4, "what do ya want for nothing?", 28,
		 "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
		{k3, 20, d3, 50,
		 "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
		{k4, 25, d4, 50,
		 "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
		{k5, 20, "Test With Truncation", 20, "a3b6167473100ee06e0c796c2955552b"},
		{k6, 131, "Test Using Larger Than Block-Size Key - Hash Key First", 54,
		 "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
		{k6, 131, m7, sizeof(m7) - 1,
		 "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
	};
	struct mm_buf o = {0};
	for (size_t i = 0; i < sizeof(v) / sizeof(*v); i++) {
		struct action_ctx c = {0};
		struct policy_action a = {.type = POLICY_ACTION_HASH,
					  .hash_key = (void *)v[i].key,
					  .hash_key_len = v[i].kl,
					  .hash_len = (uint32_t)strlen(v[i].want)};
		int same = 1;
		/* twice: the first value keys the context, the second copies the kept states */
		for (int k = 0; k < 2; k++) {
			mm_buf_reset(&o);
			same &= action_apply_ctx(&a, &c, -1, v[i].data, v[i].dl, &o) == 0 &&
				o.len == strlen(v[i].want) && !memcmp(o.data, v[i].want, o.len);
		}
		mm_buf_reset(&o);
		same &= action_apply(&a, -1, v[i].data, v[i].dl, &o) == 0 &&
			o.len == strlen(v[i].want) && !memcmp(o.data, v[i].want, o.len);
		ok(same, "RFC 4231 test case %zu: prepared states and one-shot", i + 1);
		action_ctx_free(&c);
	}

	/* random keys (0-200 bytes) and values (0-300 bytes) */
	uint64_t x = 0x243f6a8885a308d3ull;
	int bad = 0;
	for (int t = 0; t < 500; t++) {
		unsigned char key[200];
		char val[300], want[65];
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		size_t kl = (size_t)(x >> 33) % sizeof(key), vl = (size_t)(x >> 17) % sizeof(val);
		for (size_t i = 0; i < kl; i++)
			key[i] = (unsigned char)((x >> (i % 56)) + i * 7);
		for (size_t i = 0; i < vl; i++)
			val[i] = (char)((x >> (i % 48)) ^ i);
		struct action_ctx c = {0};
		struct policy_action a = {.type = POLICY_ACTION_HASH,
					  .hash_key = kl ? key : NULL,
					  .hash_key_len = kl,
					  .hash_len = 64};
		evp_hmac(key, kl, val, vl, want);
		for (int k = 0; k < 3; k++) {
			mm_buf_reset(&o);
			size_t n = k == 1 ? vl / 2 : vl;
			char w2[65];
			if (k == 1)
				evp_hmac(key, kl, val, n, w2);
			bad += action_apply_ctx(&a, &c, -1, val, n, &o) != 0 || o.len != 64 ||
			       memcmp(o.data, k == 1 ? w2 : want, 64) != 0;
		}
		action_ctx_free(&c);
	}
	is_int(bad, 0, "500 random keys x 3 values: the same digest as EVP_MAC HMAC-SHA256");
	mm_buf_free(&o);
}

int main(void)
{
	test_mask();
	test_mask_ascii();
	test_length_preserving();
	test_replace_redact();
	test_hash();
	test_hash_ctx();
	test_hmac_vectors();
	return tap_done();
}
