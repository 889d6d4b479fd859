/* SPDX-License-Identifier: Apache-2.0 */
/* FF1 (NIST SP 800-38G): the standard's sample vectors, round trips, both arithmetic paths. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ff1.h"
#include "tap.h"

static const char alpha36[] = "0123456789abcdefghijklmnopqrstuvwxyz";

static size_t unhex(const char *h, unsigned char *out)
{
	size_t n = strlen(h) / 2;
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		sscanf(h + 2 * i, "%2x", &v);
		out[i] = (unsigned char)v;
	}
	return n;
}

static void to_numerals(const char *s, uint8_t *x)
{
	for (size_t i = 0; s[i]; i++)
		x[i] = (uint8_t)(strchr(alpha36, s[i]) - alpha36);
}

/* NIST's FF1samples.pdf, samples 1 to 9. */
static const struct {
	const char *key, *tweak, *pt, *ct;
	unsigned radix;
} samples[] = {
	{"2B7E151628AED2A6ABF7158809CF4F3C", "", "0123456789", "2433477484", 10},
	{"2B7E151628AED2A6ABF7158809CF4F3C", "39383736353433323130", "0123456789", "6124200773",
	 10},
	{"2B7E151628AED2A6ABF7158809CF4F3C", "3737373770717273373737", "0123456789abcdefghi",
	 "a9tv40mll9kdu509eum", 36},
	{"2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F", "", "0123456789", "2830668132", 10},
	{"2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F", "39383736353433323130", "0123456789",
	 "2496655549", 10},
	{"2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F", "3737373770717273373737",
	 "0123456789abcdefghi", "xbj3kv35jrawxv32ysr", 36},
	{"2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94", "", "0123456789",
	 "6657667009", 10},
	{"2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94", "39383736353433323130",
	 "0123456789", "1001623463", 10},
	{"2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94",
	 "3737373770717273373737", "0123456789abcdefghi", "xs8a0azh2avyalyzuwd", 36},
};

static void test_samples(void)
{
	for (size_t s = 0; s < sizeof(samples) / sizeof(samples[0]); s++) {
		unsigned char key[32], tweak[32];
		uint8_t x[32], want[32], got[32], back[32], slow[32];
		size_t kl = unhex(samples[s].key, key), tl = unhex(samples[s].tweak, tweak);
		size_t n = strlen(samples[s].pt);
		struct ff1_key *k = ff1_key_new(key, kl);
		ok(k != NULL, "sample %zu: AES-%zu key", s + 1, kl * 8);
		if (!k)
			continue;
		to_numerals(samples[s].pt, x);
		to_numerals(samples[s].ct, want);
		is_int(ff1_encrypt(k, samples[s].radix, tweak, tl, x, n, got), 0,
		       "sample %zu: encrypt", s + 1);
		ok(!memcmp(got, want, n), "sample %zu: ciphertext %s", s + 1, samples[s].ct);
		is_int(ff1_decrypt(k, samples[s].radix, tweak, tl, got, n, back), 0,
		       "sample %zu: decrypt", s + 1);
		ok(!memcmp(back, x, n), "sample %zu: plaintext back", s + 1);
		is_int(ff1_crypt_bignum(k, samples[s].radix, tweak, tl, x, n, slow, false), 0,
		       "sample %zu: bignum path", s + 1);
		ok(!memcmp(slow, want, n), "sample %zu: bignum path gives the same", s + 1);
		ff1_key_free(k);
	}
}

/* The 128-bit and bignum paths agree, and decrypt inverts encrypt, over many shapes. */
static void test_paths(void)
{
	static const unsigned radices[] = {2, 10, 26, 36, 62, 256};
	unsigned char key[32];
	uint8_t x[FF1_MAX_LEN], a[FF1_MAX_LEN], b[FF1_MAX_LEN], back[FF1_MAX_LEN];
	int bad_fast = 0, bad_round = 0, tried = 0, errs = 0;
	unsigned seed = 42;

	for (int i = 0; i < 32; i++)
		key[i] = (unsigned char)rand_r(&seed);
	struct ff1_key *k = ff1_key_new(key, 32);
	for (size_t r = 0; r < sizeof(radices) / sizeof(radices[0]); r++) {
		for (size_t n = 2; n <= FF1_MAX_LEN; n += n < 40 ? 1 : 37) {
			if (!ff1_domain_ok(radices[r], n))
				continue;
			for (size_t i = 0; i < n; i++)
				x[i] = (uint8_t)(rand_r(&seed) % radices[r]);
			char tw[8] = "space";
			tried++;
			errs += ff1_encrypt(k, radices[r], tw, 5, x, n, a) != 0;
			errs += ff1_crypt_bignum(k, radices[r], tw, 5, x, n, b, false) != 0;
			bad_fast += memcmp(a, b, n) != 0;
			errs += ff1_decrypt(k, radices[r], tw, 5, a, n, back) != 0;
			bad_round += memcmp(back, x, n) != 0;
			errs += ff1_crypt_bignum(k, radices[r], tw, 5, a, n, back, true) != 0;
			bad_round += memcmp(back, x, n) != 0;
		}
	}
	ok(tried > 100, "%d shapes tried", tried);
	is_int(errs, 0, "no call failed");
	is_int(bad_fast, 0, "fast and bignum paths agree");
	is_int(bad_round, 0, "decrypt(encrypt(x)) == x on both paths");
	ff1_key_free(k);
}

static void test_limits(void)
{
	unsigned char key[32] = {1};
	uint8_t x[FF1_MAX_LEN + 1] = {0}, y[FF1_MAX_LEN + 1];
	struct ff1_key *k = ff1_key_new(key, 32);

	ok(ff1_key_new(key, 20) == NULL && errno == EINVAL, "a 20-byte key is refused");
	ok(!ff1_domain_ok(10, 5) && ff1_domain_ok(10, 6), "radix 10: 6 digits is the minimum");
	ok(!ff1_domain_ok(36, 3) && ff1_domain_ok(36, 4), "radix 36: 4 is the minimum");
	ok(!ff1_domain_ok(62, 3) && ff1_domain_ok(62, 4), "radix 62: 4 is the minimum");
	ok(!ff1_domain_ok(2, 19) && ff1_domain_ok(2, 20), "radix 2: 20 is the minimum");
	is_int(ff1_encrypt(k, 10, NULL, 0, x, 5, y), -EINVAL, "5 digits: below the domain");
	is_int(ff1_encrypt(k, 10, NULL, 0, x, FF1_MAX_LEN + 1, y), -EINVAL, "over FF1_MAX_LEN");
	is_int(ff1_encrypt(k, 257, NULL, 0, x, 8, y), -EINVAL, "radix over 256");
	x[3] = 10;
	is_int(ff1_encrypt(k, 10, NULL, 0, x, 8, y), -EINVAL, "a numeral out of range");
	x[3] = 0;
	is_int(ff1_encrypt(k, 10, x, FF1_MAX_TWEAK + 1, x, 8, y), -EINVAL, "tweak too long");
	is_int(ff1_encrypt(k, 10, x, FF1_MAX_TWEAK, x, 8, y), 0, "longest tweak");

	/* Another tweak or key gives another permutation. */
	uint8_t a[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 0}, b1[10], b2[10], b3[10];
	unsigned char key2[32] = {2};
	struct ff1_key *k2 = ff1_key_new(key2, 32);
	ff1_encrypt(k, 10, "a", 1, a, 10, b1);
	ff1_encrypt(k, 10, "b", 1, a, 10, b2);
	ff1_encrypt(k2, 10, "a", 1, a, 10, b3);
	ok(memcmp(b1, b2, 10) && memcmp(b1, b3, 10), "tweak and key change the ciphertext");
	ff1_key_free(k);
	ff1_key_free(k2);
}

int main(void)
{
	test_samples();
	test_paths();
	test_limits();
	return tap_done();
}
