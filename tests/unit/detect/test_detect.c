/* SPDX-License-Identifier: Apache-2.0 */
/* Entity detectors: positives, near misses, boundaries, streaming equivalence. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "detect.h"
#include "tap.h"

#define MAXM 256

static size_t scan_all(const char *t, uint32_t ents, unsigned flags, struct detect_match *m)
{
	return detect_scan(t, strlen(t), 0, ents, flags, m, MAXM);
}

/* `t` printable on one TAP line: control bytes as '?', long texts cut. */
static const char *esc(const char *t)
{
	static char b[2][100];
	static int k;
	char *o = b[k ^= 1];
	size_t i;
	for (i = 0; t[i] && i < sizeof(b[0]) - 4; i++)
		o[i] = (unsigned char)t[i] < 0x20 ? '?' : t[i];
	strcpy(o + i, t[i] ? "..." : "");
	return o;
}

/* Exactly one match in `t` (all entities scanned): entity `e` covering the substring `want`. */
static void one_f(const char *t, enum mm_entity e, const char *want, unsigned flags)
{
	struct detect_match m[MAXM];
	size_t n = scan_all(t, MM_ENT_ALL, flags, m);
	const char *at = strstr(t, want);
	size_t off = at ? (size_t)(at - t) : (size_t)-1;
	int good = n == 1 && m[0].entity == e && m[0].off == off && m[0].len == strlen(want);
	if (!ok(good, "%s: \"%s\" found in \"%s\"", mm_entity_name(e), esc(want), esc(t))) {
		printf("#   %zu matches\n", n);
		for (size_t i = 0; i < n; i++)
			printf("#   %s at %zu len %zu\n", mm_entity_name(m[i].entity), m[i].off,
			       m[i].len);
	}
}

static void one(const char *t, enum mm_entity e, const char *want)
{
	one_f(t, e, want, 0);
}

/* No match at all in `t`, neither with only `e` nor with every entity enabled. */
static void none_f(const char *t, enum mm_entity e, unsigned flags)
{
	struct detect_match m[MAXM];
	size_t n1 = scan_all(t, MM_ENT_BIT(e), flags, m);
	size_t n2 = scan_all(t, MM_ENT_ALL, flags, m);
	if (!ok(n1 == 0 && n2 == 0, "%s: nothing in \"%s\"", mm_entity_name(e), esc(t)))
		printf("#   got %zu / %zu matches, first %s at %zu len %zu\n", n1, n2,
		       mm_entity_name(m[0].entity), m[0].off, m[0].len);
}

static void none(const char *t, enum mm_entity e)
{
	none_f(t, e, 0);
}

#define JWT_HS256                                              \
	"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."                \
	"eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwi" \
	"aWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
#define JWT_NONE "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."

static void test_names(void)
{
	is_str(mm_entity_name(MM_ENT_US_SSN), "US_SSN", "name of US_SSN");
	is_str(mm_entity_name(MM_ENT_AWS_ACCESS_KEY_ID), "AWS_ACCESS_KEY_ID", "name of AWS");
	ok(mm_entity_name(MM_ENT__COUNT) == NULL, "name out of range is NULL");
	ok(mm_entity_name((enum mm_entity) - 1) == NULL, "negative entity is NULL");
	is_int(mm_entity_from_name("IBAN_CODE"), MM_ENT_IBAN_CODE, "IBAN_CODE by name");
	is_int(mm_entity_from_name("EMAIL_ADDRESS"), MM_ENT_EMAIL_ADDRESS, "EMAIL by name");
	is_int(mm_entity_from_name("email_address"), -ENOENT, "names are case-sensitive");
	is_int(mm_entity_from_name("NOPE"), -ENOENT, "unknown name");
	is_int(mm_entity_from_name(NULL), -ENOENT, "NULL name");
	for (int e = 0; e < MM_ENT__COUNT; e++)
		is_int(mm_entity_from_name(mm_entity_name(e)), e, "round trip %d", e);
}

static void test_validators(void)
{
	ok(detect_luhn_ok("4111111111111111", 16), "luhn ok");
	ok(!detect_luhn_ok("4111111111111112", 16), "luhn bad");
	ok(!detect_luhn_ok("41111111111111a1", 16), "luhn rejects non-digits");
	ok(!detect_luhn_ok("", 0), "luhn rejects empty");
	ok(detect_ssn_ok("536-22-1234", 11), "ssn dashed");
	ok(detect_ssn_ok("536 22 1234", 11), "ssn spaced");
	ok(detect_ssn_ok("536221234", 9), "ssn bare");
	ok(!detect_ssn_ok("536-22 1234", 11), "ssn mixed separators");
	ok(!detect_ssn_ok("666221234", 9), "ssn area 666");
	ok(!detect_ssn_ok("536-22-123", 10), "ssn short");
	ok(detect_iban_ok("GB82 WEST 1234 5698 7654 32", 27), "iban grouped");
	ok(detect_iban_ok("DE89370400440532013000", 22), "iban plain");
	ok(!detect_iban_ok("DE89370400440532013001", 22), "iban bad checksum");
	ok(!detect_iban_ok("DE8937040044053201300", 21), "iban wrong length");
	ok(!detect_iban_ok("de89370400440532013000", 22), "iban lowercase");
	ok(!detect_iban_ok("QQ89370400440532013000", 22), "iban unknown country");
}

static void test_ssn(void)
{
	one("SSN: 536-22-1234", MM_ENT_US_SSN, "536-22-1234");
	one("078-05-1121 is fine", MM_ENT_US_SSN, "078-05-1121");
	one("ends with 001-01-0001", MM_ENT_US_SSN, "001-01-0001");
	one("(665-12-3456)", MM_ENT_US_SSN, "665-12-3456");
	one("ssn=899 99 9999;", MM_ENT_US_SSN, "899 99 9999");
	one("{\"ssn\":\"772-10-4821\",\"n\":1}", MM_ENT_US_SSN, "772-10-4821");
	one("a 667-01-2345.", MM_ENT_US_SSN, "667-01-2345");
	one("[219-09-9998]", MM_ENT_US_SSN, "219-09-9998");
	one("tab\t401-12-3456\nnext", MM_ENT_US_SSN, "401-12-3456");
	one("/users/536-22-1234/profile", MM_ENT_US_SSN, "536-22-1234");
	one_f("536221234", MM_ENT_US_SSN, "536221234", DETECT_FIELD_CONTEXT);
	one_f("536-22-1234", MM_ENT_US_SSN, "536-22-1234", DETECT_FIELD_CONTEXT);

	none("000-12-3456", MM_ENT_US_SSN);
	none("666-12-3456", MM_ENT_US_SSN);
	none("900-12-3456", MM_ENT_US_SSN);
	none("999-12-3456", MM_ENT_US_SSN);
	none("123-00-4567", MM_ENT_US_SSN);
	none("123-45-0000", MM_ENT_US_SSN);
	none("078-05-1120", MM_ENT_US_SSN);
	none("219-09-9999", MM_ENT_US_SSN);
	none("123-45-6789", MM_ENT_US_SSN);
	none("1536-22-1234", MM_ENT_US_SSN);
	none("536-22-12345", MM_ENT_US_SSN);
	none("536-22 1234", MM_ENT_US_SSN);
	none("x536-22-1234", MM_ENT_US_SSN);
	none("536-22-1234-5", MM_ENT_US_SSN);
	none("v536-22-1234", MM_ENT_US_SSN);
	none("536--22-1234", MM_ENT_US_SSN);
	none("536221234", MM_ENT_US_SSN); /* bare, no field context */
	none_f("id 536221234", MM_ENT_US_SSN, DETECT_FIELD_CONTEXT);
	none_f("5362212345", MM_ENT_US_SSN, DETECT_FIELD_CONTEXT);
	none_f("666221234", MM_ENT_US_SSN, DETECT_FIELD_CONTEXT);
}

static void test_card(void)
{
	one("4111111111111111", MM_ENT_CREDIT_CARD, "4111111111111111");
	one("card 5555 5555 5555 4444 exp", MM_ENT_CREDIT_CARD, "5555 5555 5555 4444");
	one("amex: 3782-822463-10005.", MM_ENT_CREDIT_CARD, "3782-822463-10005");
	one("6011111111111117,", MM_ENT_CREDIT_CARD, "6011111111111117");
	one("(3530111333300000)", MM_ENT_CREDIT_CARD, "3530111333300000");
	one("Diners 30569309025904", MM_ENT_CREDIT_CARD, "30569309025904");
	one("2221000000000009 end", MM_ENT_CREDIT_CARD, "2221000000000009");
	one("unionpay=6200000000000005&x", MM_ENT_CREDIT_CARD, "6200000000000005");
	one("visa13 4222222222222", MM_ENT_CREDIT_CARD, "4222222222222");
	one("4111-1111-1111-1111", MM_ENT_CREDIT_CARD, "4111-1111-1111-1111");
	one("4111 1111 1111 1111 2025", MM_ENT_CREDIT_CARD, "4111 1111 1111 1111");
	one("\"pan\":\"5105105105105100\"", MM_ENT_CREDIT_CARD, "5105105105105100");

	none("4111111111111112", MM_ENT_CREDIT_CARD); /* Luhn */
	none("1234567812345670", MM_ENT_CREDIT_CARD); /* no issuer */
	none("41111111111111110", MM_ENT_CREDIT_CARD); /* Visa has no 17 */
	none("94111111111111111", MM_ENT_CREDIT_CARD); /* inside a longer run */
	none("55555555555544440000", MM_ENT_CREDIT_CARD); /* 20 digits */
	none("4111-1111 1111-1111", MM_ENT_CREDIT_CARD); /* mixed separators */
	none("4111111111111111.5", MM_ENT_CREDIT_CARD); /* decimal */
	none("id-4111111111111111", MM_ENT_CREDIT_CARD);
	none("x4111111111111111", MM_ENT_CREDIT_CARD);
	none("41111111-1111-1111-1111-111111111111", MM_ENT_CREDIT_CARD); /* UUID shape */
	none("4111-1111-1111-1111-1111", MM_ENT_CREDIT_CARD);
	none("4111 1111 1111 111", MM_ENT_CREDIT_CARD); /* Visa has no 15 */
	none("3782822463100050", MM_ENT_CREDIT_CARD); /* Amex is 15 */
}

static void test_email(void)
{
	one("john.doe@example.com", MM_ENT_EMAIL_ADDRESS, "john.doe@example.com");
	one("Contact: <jane+tag@mail.example.co.uk>.", MM_ENT_EMAIL_ADDRESS,
	    "jane+tag@mail.example.co.uk");
	one("x a_b-c%d@sub-domain.example.org,", MM_ENT_EMAIL_ADDRESS,
	    "a_b-c%d@sub-domain.example.org");
	one("{\"email\":\"USER@EXAMPLE.COM\"}", MM_ENT_EMAIL_ADDRESS, "USER@EXAMPLE.COM");
	one("mailto:info@example.io", MM_ENT_EMAIL_ADDRESS, "info@example.io");
	one("end bob@example.museum", MM_ENT_EMAIL_ADDRESS, "bob@example.museum");
	one("(alice@example.com)", MM_ENT_EMAIL_ADDRESS, "alice@example.com");
	one("1st@example.de is it.", MM_ENT_EMAIL_ADDRESS, "1st@example.de");
	one("ivan@example.xn--p1ai", MM_ENT_EMAIL_ADDRESS, "ivan@example.xn--p1ai");
	one("4111111111111111@example.com", MM_ENT_EMAIL_ADDRESS, "4111111111111111@example.com");

	none("john@example", MM_ENT_EMAIL_ADDRESS);
	none("john@example.c", MM_ENT_EMAIL_ADDRESS);
	none("john@-example.com", MM_ENT_EMAIL_ADDRESS);
	none("john@example-.com", MM_ENT_EMAIL_ADDRESS);
	none("john..doe@example.com", MM_ENT_EMAIL_ADDRESS);
	none(".john@example.com", MM_ENT_EMAIL_ADDRESS);
	none("john.@example.com", MM_ENT_EMAIL_ADDRESS);
	none("john@example.c0m", MM_ENT_EMAIL_ADDRESS);
	none("john@@example.com", MM_ENT_EMAIL_ADDRESS);
	none("@example.com", MM_ENT_EMAIL_ADDRESS);
	none("john@example.com_x", MM_ENT_EMAIL_ADDRESS);
	none("john@example.com@x", MM_ENT_EMAIL_ADDRESS);
	none("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com",
	     MM_ENT_EMAIL_ADDRESS); /* local part of 65 */
}

static void test_phone(void)
{
	one("(555) 234-5678", MM_ENT_PHONE_NUMBER, "(555) 234-5678");
	one("call 212-555-0198 now", MM_ENT_PHONE_NUMBER, "212-555-0198");
	one("212.555.0198", MM_ENT_PHONE_NUMBER, "212.555.0198");
	one("tel 212 555 0198.", MM_ENT_PHONE_NUMBER, "212 555 0198");
	one("tel:+1 212 555 0198", MM_ENT_PHONE_NUMBER, "+1 212 555 0198");
	one("1-800-555-0199", MM_ENT_PHONE_NUMBER, "1-800-555-0199");
	one("+1 (212) 555-0198,", MM_ENT_PHONE_NUMBER, "+1 (212) 555-0198");
	one("\"phone\":\"+442079460958\"", MM_ENT_PHONE_NUMBER, "+442079460958");
	one("ring +44 20 7946 0958", MM_ENT_PHONE_NUMBER, "+44 20 7946 0958");
	one("+49-30-1234567.", MM_ENT_PHONE_NUMBER, "+49-30-1234567");
	one("fax:(212)555-0198", MM_ENT_PHONE_NUMBER, "(212)555-0198");

	none("2125550198", MM_ENT_PHONE_NUMBER); /* no separators */
	none("012-555-0198", MM_ENT_PHONE_NUMBER);
	none("212-055-0198", MM_ENT_PHONE_NUMBER);
	none("212-555-01988", MM_ENT_PHONE_NUMBER);
	none("212-555.0198", MM_ENT_PHONE_NUMBER);
	none("+0442079460958", MM_ENT_PHONE_NUMBER);
	none("+1234567", MM_ENT_PHONE_NUMBER);
	none("+1234567890123456", MM_ENT_PHONE_NUMBER);
	none("x212-555-0198", MM_ENT_PHONE_NUMBER);
	none("1212-555-0198", MM_ENT_PHONE_NUMBER);
	none("(212)-555-0198", MM_ENT_PHONE_NUMBER);
	none("f(212) 555-0198", MM_ENT_PHONE_NUMBER);
}

static void test_iban(void)
{
	one("GB82 WEST 1234 5698 7654 32", MM_ENT_IBAN_CODE, "GB82 WEST 1234 5698 7654 32");
	one("IBAN: DE89370400440532013000.", MM_ENT_IBAN_CODE, "DE89370400440532013000");
	one("FR14 2004 1010 0505 0001 3M02 606", MM_ENT_IBAN_CODE,
	    "FR14 2004 1010 0505 0001 3M02 606");
	one("\"iban\":\"NL91ABNA0417164300\"", MM_ENT_IBAN_CODE, "NL91ABNA0417164300");
	one("(CH93 0076 2011 6238 5295 7)", MM_ENT_IBAN_CODE, "CH93 0076 2011 6238 5295 7");
	one("pay NO9386011117947", MM_ENT_IBAN_CODE, "NO9386011117947");
	one("BE68539007547034, thanks", MM_ENT_IBAN_CODE, "BE68539007547034");
	one("ES91 2100 0418 4502 0005 1332", MM_ENT_IBAN_CODE, "ES91 2100 0418 4502 0005 1332");
	one("to IT60 X054 2811 1010 0000 0123 456", MM_ENT_IBAN_CODE,
	    "IT60 X054 2811 1010 0000 0123 456");
	one("AT611904300234573201", MM_ENT_IBAN_CODE, "AT611904300234573201");

	none("GB82 WEST 1234 5698 7654 33", MM_ENT_IBAN_CODE); /* checksum */
	none("DE89370400440532013001", MM_ENT_IBAN_CODE);
	none("XX82WEST12345698765432", MM_ENT_IBAN_CODE); /* unknown country */
	none("DE8937040044053201300", MM_ENT_IBAN_CODE); /* short */
	none("DE893704004405320130001", MM_ENT_IBAN_CODE); /* long */
	none("gb82west12345698765432", MM_ENT_IBAN_CODE); /* lowercase */
	none("xDE89370400440532013000", MM_ENT_IBAN_CODE); /* inside a word */
	none("DE89 37040044 0532 0130 00", MM_ENT_IBAN_CODE); /* irregular groups */
	none("DE89  3704 0044 0532 0130 00", MM_ENT_IBAN_CODE); /* double space */
	none("DE89370400440532013000-7", MM_ENT_IBAN_CODE);
}

static void test_ip(void)
{
	one("192.168.1.1", MM_ENT_IP_ADDRESS, "192.168.1.1");
	one("http://10.0.0.1:8080/x", MM_ENT_IP_ADDRESS, "10.0.0.1");
	one("host 255.255.255.255.", MM_ENT_IP_ADDRESS, "255.255.255.255");
	one("(8.8.8.8)", MM_ENT_IP_ADDRESS, "8.8.8.8");
	one("src=0.0.0.0", MM_ENT_IP_ADDRESS, "0.0.0.0");
	one("addr 2001:db8::1 up", MM_ENT_IP_ADDRESS, "2001:db8::1");
	one("fe80::1%eth0", MM_ENT_IP_ADDRESS, "fe80::1");
	one("lo ::1", MM_ENT_IP_ADDRESS, "::1");
	one("::ffff:192.168.1.1,", MM_ENT_IP_ADDRESS, "::ffff:192.168.1.1");
	one("2001:0db8:85a3:0000:0000:8a2e:0370:7334", MM_ENT_IP_ADDRESS,
	    "2001:0db8:85a3:0000:0000:8a2e:0370:7334");
	one("[2001:db8::ff00:42:8329]:443", MM_ENT_IP_ADDRESS, "2001:db8::ff00:42:8329");
	one("\"ip\":\"FE80::A\"", MM_ENT_IP_ADDRESS, "FE80::A");
	one("1:2:3:4:5:6:1.2.3.4", MM_ENT_IP_ADDRESS, "1:2:3:4:5:6:1.2.3.4");

	none("999.1.1.1", MM_ENT_IP_ADDRESS);
	none("1.2.3.4.5", MM_ENT_IP_ADDRESS);
	none("v1.2.3.4", MM_ENT_IP_ADDRESS);
	none("V1.2.3.4", MM_ENT_IP_ADDRESS);
	none("01.2.3.4", MM_ENT_IP_ADDRESS);
	none("1.2.3", MM_ENT_IP_ADDRESS);
	none("256.1.1.1", MM_ENT_IP_ADDRESS);
	none("at 12:30:45", MM_ENT_IP_ADDRESS);
	none("00:1A:2B:3C:4D:5E", MM_ENT_IP_ADDRESS);
	none("2024-01-15T10:20:30Z", MM_ENT_IP_ADDRESS);
	none("1:2:3:4:5:6:7", MM_ENT_IP_ADDRESS);
	none("1::2::3", MM_ENT_IP_ADDRESS);
	none("a :: b", MM_ENT_IP_ADDRESS);
	none("12345::1", MM_ENT_IP_ADDRESS);
	none("1:2:3:4:5:6:7:8:9", MM_ENT_IP_ADDRESS);
	none("123e4567-e89b-12d3-a456-426614174000", MM_ENT_IP_ADDRESS);
	none("version 1.2.3.4-rc1", MM_ENT_IP_ADDRESS);
}

static void test_jwt(void)
{
	one(JWT_HS256, MM_ENT_JWT, JWT_HS256);
	one("Authorization: Bearer " JWT_HS256, MM_ENT_JWT, JWT_HS256);
	one("the token is " JWT_HS256 ".", MM_ENT_JWT, JWT_HS256);
	one("{\"token\":\"" JWT_HS256 "\"}", MM_ENT_JWT, JWT_HS256);
	one(JWT_NONE " unsigned", MM_ENT_JWT, JWT_NONE);
	one("(" JWT_NONE ")", MM_ENT_JWT, JWT_NONE);
	one("token=" JWT_HS256 "&x=1", MM_ENT_JWT, JWT_HS256);
	one("a\n" JWT_HS256 "\n", MM_ENT_JWT, JWT_HS256);

	none("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0", MM_ENT_JWT); /* two parts */
	none("eyJhbGci.abcdef.ghi", MM_ENT_JWT); /* payload not JSON */
	none("x" JWT_HS256, MM_ENT_JWT);
	none("_" JWT_HS256, MM_ENT_JWT);
	none(JWT_HS256 ".more", MM_ENT_JWT); /* more than three parts */
	none("eyJhb!ciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", MM_ENT_JWT);
	none("eyJ", MM_ENT_JWT);
	none("eyj0.eyJ0.sig", MM_ENT_JWT);
	none("EyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig", MM_ENT_JWT);

	/* longer than DETECT_MAX_MATCH_LEN: not reported (and nothing inside it) */
	size_t big = DETECT_MAX_MATCH_LEN + 100;
	char *t = malloc(big + 1);
	memset(t, 'A', big);
	memcpy(t, "eyJ", 3);
	memcpy(t + 100, ".eyJ", 4);
	t[200] = '.';
	t[big] = 0;
	none(t, MM_ENT_JWT);
	/* exactly at the limit minus one: reported */
	t[DETECT_MAX_MATCH_LEN - 1] = 0;
	struct detect_match m[4];
	size_t n = detect_scan(t, DETECT_MAX_MATCH_LEN - 1, 0, MM_ENT_ALL, 0, m, 4);
	ok(n == 1 && m[0].off == 0 && m[0].len == DETECT_MAX_MATCH_LEN - 1,
	   "JWT of DETECT_MAX_MATCH_LEN-1 bytes is reported");
	free(t);
}

static void test_aws(void)
{
	one("AKIAIOSFODNN7EXAMPLE", MM_ENT_AWS_ACCESS_KEY_ID, "AKIAIOSFODNN7EXAMPLE");
	one("key ASIAY34FZKBOKMUTVV7A end", MM_ENT_AWS_ACCESS_KEY_ID, "ASIAY34FZKBOKMUTVV7A");
	one("\"id\":\"ABIAIOSFODNN7EXAMPLE\"", MM_ENT_AWS_ACCESS_KEY_ID, "ABIAIOSFODNN7EXAMPLE");
	one("ACCAIOSFODNN7EXAMPLE.", MM_ENT_AWS_ACCESS_KEY_ID, "ACCAIOSFODNN7EXAMPLE");
	one("aws_access_key_id=AKIAIOSFODNN7EXAMPLE\n", MM_ENT_AWS_ACCESS_KEY_ID,
	    "AKIAIOSFODNN7EXAMPLE");
	one("(AKIA2345672345672345)", MM_ENT_AWS_ACCESS_KEY_ID, "AKIA2345672345672345");
	one("k:AKIAZZZZZZZZZZZZZZZZ", MM_ENT_AWS_ACCESS_KEY_ID, "AKIAZZZZZZZZZZZZZZZZ");
	one("AKIAIOSFODNN7EXAMPLE/secret", MM_ENT_AWS_ACCESS_KEY_ID, "AKIAIOSFODNN7EXAMPLE");

	none("AKIAIOSFODNN7EXAMPL", MM_ENT_AWS_ACCESS_KEY_ID);
	none("AKIAIOSFODNN7EXAMPLE1", MM_ENT_AWS_ACCESS_KEY_ID);
	none("AKIAIOSFODNN7EXAMP1E", MM_ENT_AWS_ACCESS_KEY_ID); /* '1' is not base32 */
	none("AKIAIOSFODNN8EXAMPLE", MM_ENT_AWS_ACCESS_KEY_ID); /* '8' is not base32 */
	none("AKIBIOSFODNN7EXAMPLE", MM_ENT_AWS_ACCESS_KEY_ID);
	none("xAKIAIOSFODNN7EXAMPLE", MM_ENT_AWS_ACCESS_KEY_ID);
	none("akiaiosfodnn7example", MM_ENT_AWS_ACCESS_KEY_ID);
	none("AKIAIOSFODNN7EXAMPLE-x", MM_ENT_AWS_ACCESS_KEY_ID);
	none("AKIA IOSFODNN7EXAMPLE", MM_ENT_AWS_ACCESS_KEY_ID);
}

static void test_scan_api(void)
{
	const char *t = "ssn 536-22-1234, card 4111111111111111, mail a@b.io, ip 10.1.2.3, "
			"tel (212) 555-0198 key AKIAIOSFODNN7EXAMPLE";
	struct detect_match m[MAXM];
	size_t n = scan_all(t, MM_ENT_ALL, 0, m);
	static const struct {
		const char *s;
		enum mm_entity e;
	} want[] = {
		{"536-22-1234", MM_ENT_US_SSN},
		{"4111111111111111", MM_ENT_CREDIT_CARD},
		{"a@b.io", MM_ENT_EMAIL_ADDRESS},
		{"10.1.2.3", MM_ENT_IP_ADDRESS},
		{"(212) 555-0198", MM_ENT_PHONE_NUMBER},
		{"AKIAIOSFODNN7EXAMPLE", MM_ENT_AWS_ACCESS_KEY_ID},
	};
	is_int(n, 6, "six entities in a mixed line");
	for (size_t i = 0; i < 6 && i < n; i++) {
		size_t off = (size_t)(strstr(t, want[i].s) - t);
		ok(m[i].off == off && m[i].len == strlen(want[i].s) && m[i].entity == want[i].e,
		   "mixed line match %zu is %s", i, want[i].s);
	}

	n = scan_all(t, MM_ENT_BIT(MM_ENT_CREDIT_CARD) | MM_ENT_BIT(MM_ENT_IP_ADDRESS), 0, m);
	ok(n == 2 && m[0].entity == MM_ENT_CREDIT_CARD && m[1].entity == MM_ENT_IP_ADDRESS,
	   "only the requested entities");
	is_int(scan_all(t, 0, 0, m), 0, "no entities requested, no matches");
	is_int(detect_scan(t, strlen(t), 0, MM_ENT_ALL, 0, m, 2), 2, "max bounds the output");
	ok(m[1].entity == MM_ENT_CREDIT_CARD, "max keeps the first matches");

	/* context byte before start */
	const char *c = "x4111111111111111";
	is_int(detect_scan(c, strlen(c), 1, MM_ENT_ALL, 0, m, 4), 0, "context byte is a word byte");
	c = " 4111111111111111";
	n = detect_scan(c, strlen(c), 1, MM_ENT_ALL, 0, m, 4);
	ok(n == 1 && m[0].off == 1 && m[0].len == 16, "context byte is a boundary");
	/* len ends the text: what follows is not looked at */
	c = "4111111111111111999";
	n = detect_scan(c, 16, 0, MM_ENT_ALL, 0, m, 4);
	ok(n == 1 && m[0].len == 16, "len is the end of input");
	is_int(detect_scan(c, 16, 16, MM_ENT_ALL, 0, m, 4), 0, "start == len");
	is_int(detect_scan(NULL, 0, 0, MM_ENT_ALL, 0, m, 4), 0, "NULL text");

	/* longest first at one offset; non-overlapping left to right */
	c = "+1 212 555 0198";
	n = scan_all(c, MM_ENT_ALL, 0, m);
	ok(n == 1 && m[0].off == 0 && m[0].len == strlen(c), "prefix kept in the longest phone");
	c = "536-22-1234 536-22-1235";
	n = scan_all(c, MM_ENT_ALL, 0, m);
	ok(n == 2 && m[0].off == 0 && m[1].off == 12, "adjacent matches");
}

/*
 * Texts shorter than a vector block take the short-text filter: each text (exact-size copy, so
 * ASan sees a read past it) must give what the same bytes followed by 24 spaces give through
 * the block filter. Random texts over the bytes that start or end entities, every length 0..20.
 */
/*
 * The vector candidate filter at every length 0..64 and every alignment 0..15 (an exact-size
 * copy at that offset of its allocation, so ASan sees a read past it), with one snippet at
 * every position: entity texts, digit runs that start none (dates, zips, SKUs), and bytes the
 * JSON layer cares about (quote, backslash, control, UTF-8). The entity sets with no letter-led
 * kind take the filter's digit/punctuation-only variant, the others the full one; both must find
 * what evaluating every candidate finds.
 */
static void test_filter_alignment(void)
{
	static const char *const snip[] = {
		"536-22-8105",
		"4111 1111 1111 1111",
		"a.b@ex.co",
		"+1 415 555 0100",
		"(212) 555-0198",
		"10.1.2.3",
		"fe80::1",
		"1950-1-10",
		"94107",
		"A-12",
		"2019.",
		"\"",
		"\\",
		"\x01",
		"\xc3\xa9",
		"\xe6\x97\xa5",
		"AKIAIOSFODNN7EXAMPLE",
		"GB82WEST12345698765432",
		"eyJa.eyJb.c",
	};
	static const uint32_t sets[] = {
		MM_ENT_BIT(MM_ENT_US_SSN) | MM_ENT_BIT(MM_ENT_CREDIT_CARD) |
			MM_ENT_BIT(MM_ENT_EMAIL_ADDRESS) | MM_ENT_BIT(MM_ENT_PHONE_NUMBER),
		MM_ENT_BIT(MM_ENT_US_SSN) | MM_ENT_BIT(MM_ENT_CREDIT_CARD) |
			MM_ENT_BIT(MM_ENT_EMAIL_ADDRESS) | MM_ENT_BIT(MM_ENT_PHONE_NUMBER) |
			MM_ENT_BIT(MM_ENT_IBAN_CODE),
		MM_ENT_BIT(MM_ENT_IP_ADDRESS),
		MM_ENT_BIT(MM_ENT_AWS_ACCESS_KEY_ID) | MM_ENT_BIT(MM_ENT_JWT),
		MM_ENT_ALL,
	};
	struct detect_match a[MAXM], b[MAXM];
	unsigned bad = 0, found = 0;
	char t[64 + 32];

	for (size_t n = 0; n <= 64; n++) {
		for (size_t al = 0; al < 16; al++) {
			for (size_t k = 0; k < sizeof(snip) / sizeof(*snip); k++) {
				size_t sl = strlen(snip[k]);
				for (size_t pos = 0; pos <= n; pos++) {
					/* filler of words, then the snippet (cut at the end) */
					for (size_t i = 0; i < n; i++)
						t[i] = "ab c"[i % 4];
					memcpy(t + pos, snip[k], pos + sl <= n ? sl : n - pos);
					char *m = malloc(al + n + 1);
					memcpy(m + al, t, n);
					for (size_t e = 0; e < sizeof(sets) / sizeof(*sets); e++) {
						for (unsigned fl = 0; fl <= DETECT_FIELD_CONTEXT;
						     fl++) {
							size_t ka = detect_scan(
								m + al, n, 0, sets[e], fl, a, MAXM);
							size_t kb = detect_scan(
								m + al, n, 0, sets[e],
								fl | DETECT_EVERY_CANDIDATE, b,
								MAXM);
							int same = ka == kb;
							for (size_t j = 0; same && j < ka; j++)
								same = a[j].off == b[j].off &&
								       a[j].len == b[j].len &&
								       a[j].entity == b[j].entity;
							found += (unsigned)ka;
							if (!same && bad++ < 3)
								printf("#   differs: n %zu align "
								       "%zu "
								       "\"%.*s\" entities %#x\n",
								       n, al, (int)n, m + al,
								       sets[e]);
						}
					}
					free(m);
				}
			}
		}
	}
	ok(bad == 0 && found > 10000,
	   "vector filter, every length 0..64 and alignment 0..15, agrees with every candidate "
	   "(%u matches)",
	   found);
}

static void test_short_texts(void)
{
	static const char alpha[] = "0123456789-+@.:() AJeyEZa_%";
	struct detect_match a[MAXM], b[MAXM];
	unsigned seed = 12345, bad = 0, nbad = 0, found = 0, runs = 0;
	char pad[64];

	for (int iter = 0; iter < 20000; iter++) {
		size_t n = (size_t)(iter % 21);
		char *t = malloc(n ? n : 1);
		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			t[i] = alpha[(seed >> 16) % (sizeof(alpha) - 1)];
		}
		/* some texts are whole entities, so that matches are exercised too */
		static const char *const whole[] = {
			"536-22-8105", "a@b.co", "+14155550100",     "(212) 555-0198",
			"10.1.2.3",    "::1",	 "4111111111111111", "x@example.com"};
		if (iter % 7 == 0 && n >= strlen(whole[iter % 8]))
			memcpy(t + n - strlen(whole[iter % 8]), whole[iter % 8],
			       strlen(whole[iter % 8]));
		memset(pad, ' ', sizeof(pad));
		memcpy(pad, t, n);
		size_t ka = detect_scan(t, n, 0, MM_ENT_ALL, 0, a, MAXM);
		size_t kb = detect_scan(pad, n + 24, 0, MM_ENT_ALL, 0, b, MAXM);
		int same = ka == kb;
		for (size_t j = 0; same && j < ka; j++)
			same = a[j].off == b[j].off && a[j].len == b[j].len &&
			       a[j].entity == b[j].entity;
		if (!same && bad++ < 3)
			printf("#   differs: \"%.*s\" (%zu vs %zu matches)\n", (int)n, t, ka, kb);
		found += ka;
		runs++;
		/* narrowed to some entities, the filter finds what every candidate finds */
		for (int e = 0; e <= 2 * MM_ENT__COUNT + 1; e++) {
			uint32_t ents = e % (MM_ENT__COUNT + 1) < MM_ENT__COUNT
						? MM_ENT_BIT(e % (MM_ENT__COUNT + 1))
						: (uint32_t)iter & MM_ENT_ALL;
			/* the text alone (short-text filter), then padded (block filter) */
			const char *x = e <= MM_ENT__COUNT ? t : pad;
			size_t xn = e <= MM_ENT__COUNT ? n : n + 24;
			ka = detect_scan(x, xn, 0, ents, 0, a, MAXM);
			kb = detect_scan(x, xn, 0, ents, DETECT_EVERY_CANDIDATE, b, MAXM);
			same = ka == kb;
			for (size_t j = 0; same && j < ka; j++)
				same = a[j].off == b[j].off && a[j].len == b[j].len &&
				       a[j].entity == b[j].entity;
			if (!same && nbad++ < 3)
				printf("#   narrowed filter differs: \"%.*s\" entities %#x\n",
				       (int)n, t, ents);
		}
		free(t);
	}
	ok(bad == 0 && found > 100,
	   "short-text filter agrees with the block filter (%u runs, %u matches)", runs, found);
	ok(nbad == 0, "filter narrowed to the requested entities finds the same matches");
}

/*
 * The streaming caller of detect.h: input arrives `chunk` bytes at a time; the caller keeps
 * text[cursor-1, avail) (copied, so ASan sees any read outside it) and commits a match at p only
 * once text[p-1, p+DETECT_MAX_MATCH_LEN] is in view, or at the end of input.
 */
static size_t stream_scan(const char *t, size_t n, size_t chunk, uint32_t ents, unsigned flags,
			  struct detect_match *out, size_t max)
{
	size_t cursor = 0, avail = 0, got = 0;
	do {
		avail = avail + chunk < n ? avail + chunk : n;
		bool fin = avail == n;
		size_t frontier =
			fin ? n : (avail > DETECT_MAX_MATCH_LEN ? avail - DETECT_MAX_MATCH_LEN : 0);
		for (;;) {
			size_t base = cursor ? cursor - 1 : 0, wl = avail - base;
			struct detect_match m[8];
			char *w = malloc(wl ? wl : 1);
			memcpy(w, t + base, wl);
			size_t k = cursor < avail
					   ? detect_scan(w, wl, cursor - base, ents, flags, m, 8)
					   : 0;
			free(w);
			size_t i;
			for (i = 0; i < k; i++) {
				if (base + m[i].off >= frontier)
					break;
				if (got < max) {
					out[got] = m[i];
					out[got++].off += base;
				}
				cursor = base + m[i].off + m[i].len;
			}
			if (i == k && k == 8)
				continue;
			if (cursor < frontier)
				cursor = frontier;
			break;
		}
	} while (avail < n);
	return got;
}

static bool same(const struct detect_match *a, const struct detect_match *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i].off != b[i].off || a[i].len != b[i].len || a[i].entity != b[i].entity)
			return false;
	return true;
}

static void test_streaming(void)
{
	static const char *const parts[] = {
		"{\"ssn\":\"536-22-1234\",\"card\":\"4111 1111 1111 1111\",",
		"\"mail\":\"john.doe@example.com\",\"ip\":\"2001:db8::1\",",
		"\"t\":\"" JWT_HS256 "\",\"iban\":\"GB82 WEST 1234 5698 7654 32\",",
		"\"v\":\"v1.2.3.4\",\"ts\":\"2024-01-15T10:20:30Z\",\"tel\":\"+1 (212) 555-0198\",",
		"\"uuid\":\"123e4567-e89b-12d3-a456-426614174000\",\"k\":\"AKIAIOSFODNN7EXAMPLE\",",
		"lorem ipsum dolor sit amet 10.0.0.1 consectetur 12:30:45 adipiscing ",
	};
	size_t n = 0, cap = 64 * 1024;
	char *t = malloc(cap);
	for (unsigned i = 0; n + 512 < cap; i = (i * 7 + 3) % 6) {
		size_t l = strlen(parts[i]);
		memcpy(t + n, parts[i], l);
		n += l;
		/* vary the alignment of the next part */
		for (unsigned k = 0; k < (n % 5); k++)
			t[n++] = ' ';
	}
	static struct detect_match a[4096], b[4096];
	size_t na = detect_scan(t, n, 0, MM_ENT_ALL, 0, a, 4096);
	ok(na > 300, "composite text has many matches (%zu)", na);
	static const size_t chunks[] = {1, 13, 500, 4095, 4097, 9000};
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		size_t nb = stream_scan(t, n, chunks[c], MM_ENT_ALL, 0, b, 4096);
		ok(nb == na && same(a, b, na),
		   "streaming in chunks of %zu gives the same %zu matches", chunks[c], na);
	}
	/* every match depends only on text[p-1, p+DETECT_MAX_MATCH_LEN] */
	int local = 1;
	for (size_t i = 0; i < na; i++) {
		size_t p = a[i].off, base = p ? p - 1 : 0;
		size_t end = p + DETECT_MAX_MATCH_LEN + 1 < n ? p + DETECT_MAX_MATCH_LEN + 1 : n;
		char *w = malloc(end - base);
		memcpy(w, t + base, end - base);
		struct detect_match m;
		size_t k = detect_scan(w, end - base, p - base, MM_ENT_ALL, 0, &m, 1);
		free(w);
		if (k != 1 || m.off != p - base || m.len != a[i].len || m.entity != a[i].entity)
			local = 0;
	}
	ok(local, "each match is found from its own window");
	free(t);

	const char *f = "536221234";
	struct detect_match m[2];
	size_t k = stream_scan(f, 9, 1, MM_ENT_ALL, DETECT_FIELD_CONTEXT, m, 2);
	ok(k == 1 && m[0].off == 0 && m[0].len == 9, "bare SSN field value streamed byte by byte");
}

int main(void)
{
	test_names();
	test_validators();
	test_ssn();
	test_card();
	test_email();
	test_phone();
	test_iban();
	test_ip();
	test_jwt();
	test_aws();
	test_scan_api();
	test_short_texts();
	test_filter_alignment();
	test_streaming();
	return tap_done();
}
