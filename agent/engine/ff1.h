/* SPDX-License-Identifier: Apache-2.0 */
/*
 * FF1 format-preserving encryption (NIST SP 800-38G) over AES from OpenSSL's EVP API: a
 * permutation of the strings of n numerals in base `radix`, chosen by a key and a tweak. Pure C
 * over caller buffers; the only state is the key schedule.
 */
#ifndef MESHMASK_FF1_H
#define MESHMASK_FF1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FF1_RADIX_MAX 256 /* numerals are bytes (the standard allows up to 2^16) */
#define FF1_MAX_LEN 256 /* numerals per string (the standard allows 2^32) */
#define FF1_MAX_TWEAK 256 /* tweak bytes */
#define FF1_MIN_DOMAIN 1000000u /* SP 800-38G Rev. 1: radix^minlen >= 1,000,000 */

/* An AES key schedule, set up once. Not for concurrent use: one per thread or stream. */
struct ff1_key;

/* A key of 16, 24 or 32 bytes (AES-128/192/256), copied; NULL with errno (EINVAL, ENOMEM, EIO). */
struct ff1_key *ff1_key_new(const unsigned char *key, size_t len);
/* Free a key (its schedule is cleansed); NULL is fine. */
void ff1_key_free(struct ff1_key *k);

/* Whether strings of n numerals in base radix are an FF1 domain: radix^n >= FF1_MIN_DOMAIN. */
bool ff1_domain_ok(unsigned radix, size_t n);

/*
 * Encrypt the n numerals x[i] < radix into out (same length; may be x). 0, -EINVAL (a numeral
 * out of range, a domain below the minimum, n or tlen over the maxima) or -EIO (crypto error).
 */
int ff1_encrypt(struct ff1_key *k, unsigned radix, const void *tweak, size_t tlen, const uint8_t *x,
		size_t n, uint8_t *out);
/* The inverse of ff1_encrypt() with the same key, radix and tweak. */
int ff1_decrypt(struct ff1_key *k, unsigned radix, const void *tweak, size_t tlen, const uint8_t *x,
		size_t n, uint8_t *out);

/*
 * ff1_encrypt() (decrypt when `decrypt`) computed on the general arbitrary-precision path even
 * where the 128-bit fast path applies: for tests that compare the two.
 */
int ff1_crypt_bignum(struct ff1_key *k, unsigned radix, const void *tweak, size_t tlen,
		     const uint8_t *x, size_t n, uint8_t *out, bool decrypt);

#endif
