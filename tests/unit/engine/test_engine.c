/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The streaming engine, bytes in and bytes out: the JSON tokenizer (valid documents copied
 * byte for byte, invalid ones reported as bad_json wherever they break), field paths, actions,
 * entity scanning, formats, encodings and onError.
 */
#include <errno.h>

#include "codec.h"
#include "engine_test.h"
#include "zhelp.h"

/* codec_out_fn counting the decoded bytes into a size_t. */
static int count_out(void *ctx, const char *p, size_t n)
{
	(void)p;
	*(size_t *)ctx += n;
	return 0;
}

/* Assert that masking `in` under `p` with content type `ct` gives exactly `want`. */
#define CHECK(p, ct, in, want, name)                      \
	do {                                              \
		char *got_ = run1((p), (ct), (in), NULL); \
		is_str(got_, (want), "%s", (name));       \
		free(got_);                               \
	} while (0)

static const char *valid_docs[] = {
	"{}",
	"[]",
	" \t\r\n{ \"a\" : 1 , \"b\":[ ] ,\"c\":{ } }\n ",
	"[1,-0,0.5,-12.25e+10,3E-2,1e5,0,123456789012345678901234567890]",
	"[true,false,null,\"\",\"x\"]",
	"\"just a string\"",
	"42",
	"-0.0e-0",
	"null",
	"{\"esc\":\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0041 \\u00e9 \\ud83d\\ude00\"}",
	"{\"utf8\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\",\"k\\u0065y\":\"v\"}",
	"[[[[[[[[[[{\"deep\":[[[[\"x\"]]]]}]]]]]]]]]]",
	"{\"a\":{\"b\":{\"c\":[1,{\"d\":\"e\"}]}},\"f\":[{\"g\":null}]}",
};

static const char *invalid_docs[] = {
	"{",	       "[1,]",	   "{\"a\"}",	 "{\"a\":}", "{,}",	 "[1 2]",
	"{\"a\":1,}",  "tru",	   "nul",	 "falsey",   "01",	 "1.",
	"1e",	       "-",	   "+1",	 ".5",	     "\"abc",	 "\"\\x\"",
	"\"\\u12g4\"", "\"a\tb\"", "{\"a\":1}}", "[1]x",     "{'a':1}",	 "[1,2",
	"{\"a\" 1}",   "{1:2}",	   "]",		 "\"\\",     "[\"\\u00", "1 2",
};

static void test_tokenizer(void)
{
	/* A field rule that never matches (paths tracked) and an entity rule (strings decoded). */
	struct policy *pf =
		mkpol("[{\"name\":\"f\",\"fields\":[\"$..zzz\",\"$.a[5].q\"],\"action\":{\"type\":"
		      "\"redact\"}}]",
		      "enforce", "pass");
	struct policy *pe = mkpol(
		"[{\"name\":\"e\",\"entities\":[\"US_SSN\"],\"action\":{\"type\":\"redact\"}}]",
		"enforce", "pass");
	struct policy *pb = mkpol(
		"[{\"name\":\"e\",\"entities\":[\"US_SSN\"],\"action\":{\"type\":\"redact\"}}]",
		"enforce", "block");

	for (size_t i = 0; i < sizeof(valid_docs) / sizeof(*valid_docs); i++) {
		struct run_result rr;
		char *a = run1(pf, "application/json", valid_docs[i], &rr);
		char *b = run1(pe, "application/json", valid_docs[i], NULL);
		ok(!strcmp(a, valid_docs[i]) && !strcmp(b, valid_docs[i]) &&
			   rr.outcome == MASK_OUTCOME_MASKED && rr.rc == 0,
		   "valid document %zu copied byte for byte", i);
		free(rr.st.rules);
		free(a);
		free(b);
	}
	for (size_t i = 0; i < sizeof(invalid_docs) / sizeof(*invalid_docs); i++) {
		struct run_result rr;
		char *a = run1(pe, "application/json", invalid_docs[i], &rr);
		ok(rr.rc == 0 && rr.outcome == MASK_OUTCOME_PASSED &&
			   rr.reason == MM_REASON_BAD_JSON &&
			   rr.st.errors[MM_REASON_BAD_JSON] == 1 && !strcmp(a, invalid_docs[i]),
		   "invalid document %zu: bad_json, passed unchanged", i);
		free(rr.st.rules);
		free(a);
		a = run1(pb, "application/json", invalid_docs[i], &rr);
		ok(rr.rc == -EPROTO && rr.outcome == MASK_OUTCOME_BLOCKED,
		   "invalid document %zu blocked under onError=block", i);
		free(rr.st.rules);
		free(a);
	}

	/* Every truncation and every control byte inserted anywhere breaks a document. */
	const char *doc = valid_docs[12];
	size_t n = strlen(doc), bad_trunc = 0, bad_ins = 0;
	for (size_t k = 1; k < n; k++) {
		char *t = strndup(doc, k);
		struct run_result rr;
		free(run1(pf, "application/json", t, &rr));
		bad_trunc += rr.reason == MM_REASON_BAD_JSON;
		free(rr.st.rules);
		free(t);
	}
	is_int(bad_trunc, n - 1, "every truncation of a document is bad_json");
	for (size_t k = 0; k <= n; k++) {
		char *t = malloc(n + 2);
		memcpy(t, doc, k);
		t[k] = '\x01';
		memcpy(t + k + 1, doc + k, n - k + 1);
		struct run_result rr;
		char *o = run1(pe, "application/json", t, &rr);
		bad_ins += rr.reason == MM_REASON_BAD_JSON && !strcmp(o, t);
		free(rr.st.rules);
		free(o);
		free(t);
	}
	is_int(bad_ins, n + 1, "a control byte at every position is bad_json");

	/* Nesting limit: 256 levels parse, 257 do not. */
	char deep[600];
	for (int depth = 256; depth <= 257; depth++) {
		memset(deep, '[', depth);
		memset(deep + depth, ']', depth);
		deep[2 * depth] = 0;
		struct run_result rr;
		free(run1(pf, "application/json", deep, &rr));
		is_int(rr.reason, depth == 256 ? MM_REASON_NONE : MM_REASON_BAD_JSON,
		       "nesting depth %d", depth);
		free(rr.st.rules);
	}

	/* Empty and blank JSON bodies are not errors. */
	struct run_result rr;
	free(run1(pe, "application/json", "", &rr));
	ok(rr.outcome == MASK_OUTCOME_MASKED, "empty JSON body is fine");
	free(rr.st.rules);
	free(run1(pe, "application/json", "  \n", &rr));
	ok(rr.outcome == MASK_OUTCOME_MASKED, "blank JSON body is fine");
	free(rr.st.rules);

	policy_unref(pf);
	policy_unref(pe);
	policy_unref(pb);
}

/*
 * Numbers and literals are consumed a whole token at a time where the chunk allows: every
 * split point (and one byte at a time) gives the one-shot output, outcome and reason, for valid
 * and broken scalars, copied through or under a whole-value rule (which holds them).
 */
static void test_scalars_split(void)
{
	static const char *const docs[] = {
		"[0,-0,1,-1,10,-10.5,0.25e3,1E+2,2e-2,123456789012345678901234567890,true,false,"
		"null]",
		"{\"n\":-12.5e+10,\"m\":[1,2.0,3e3],\"t\":true,\"f\":false,\"z\":null}",
		"{\"n\":tru}",
		"{\"n\":01}",
		"{\"n\":1.}",
		"{\"n\":1e+}",
		"{\"n\":-}",
		"{\"n\":1.5.2}",
		"{\"n\":truex}",
		"{\"n\":nul}",
		"[1e5e]",
		"[-.5]",
		"[2E]",
		"[1 , 2 ,true ,null]",
		"-0.0e-0",
		"12",
		"true",
		"1e",
	};
	struct policy *pols[] = {
		mkpol("[{\"name\":\"n\",\"fields\":[\"$..n\",\"$..t\"],\"action\":{\"type\":"
		      "\"mask\",\"keepLast\":1}},{\"name\":\"f\",\"fields\":[\"$..f\",\"$.m[1]\"],"
		      "\"action\":{\"type\":\"redact\"}}]",
		      "enforce", "fallback"),
		mkpol("[{\"name\":\"e\",\"entities\":[\"US_SSN\"],\"action\":{\"type\":\"redact\"}}"
		      "]",
		      "enforce", "pass"),
	};
	int bad = 0;
	for (size_t k = 0; k < sizeof(pols) / sizeof(*pols); k++) {
		for (size_t d = 0; d < sizeof(docs) / sizeof(*docs); d++) {
			const char *in = docs[d];
			size_t n = strlen(in);
			struct mm_buf ref = {0}, out = {0};
			struct run_result r0 = run_cuts(pols[k], "application/json", NULL, in, n,
							NULL, 0, 0, &ref);
			for (size_t cut = 0; cut <= n + 1; cut++) {
				/* cut == n + 1: one byte at a time */
				mm_buf_reset(&out);
				struct run_result r1 =
					cut <= n ? run_cuts(pols[k], "application/json", NULL, in,
							    n, &cut, 1, 0, &out)
						 : run_cuts(pols[k], "application/json", NULL, in,
							    n, NULL, 0, 1, &out);
				if (out.len != ref.len || memcmp(out.data, ref.data, ref.len) ||
				    r1.rc != r0.rc || r1.outcome != r0.outcome ||
				    r1.reason != r0.reason || r1.st.values != r0.st.values) {
					if (bad++ < 3)
						printf("#   policy %zu doc %zu cut %zu differs\n",
						       k, d, cut);
				}
				free(r1.st.rules);
			}
			free(r0.st.rules);
			mm_buf_free(&ref);
			mm_buf_free(&out);
		}
		policy_unref(pols[k]);
	}
	is_int(bad, 0, "numbers and literals: every split gives the one-shot output");

	/* What the whole-value rule makes of them (one shot). */
	struct policy *p = mkpol("[{\"name\":\"n\",\"fields\":[\"$..n\"],\"action\":{\"type\":"
				 "\"mask\",\"keepLast\":1}},{\"name\":\"r\",\"fields\":[\"$..r\"],"
				 "\"action\":{\"type\":\"redact\"}}]",
				 "enforce", "pass");
	CHECK(p, "application/json", "{\"n\":-12.5e+10,\"r\":true,\"x\":[1e5,false],\"n\":true}",
	      "{\"n\":\"-**.**+*0\",\"r\":null,\"x\":[1e5,false],\"n\":\"***e\"}",
	      "numbers and literals under whole-value rules");
	policy_unref(p);
}

static void test_decoding(void)
{
	/* keepFirst (64) longer than these values: the output is the decoded value, re-escaped. */
	struct policy *p = mkpol("[{\"name\":\"s\",\"fields\":[\"$.s\"],\"action\":{\"type\":"
				 "\"mask\",\"keepFirst\":64}}]",
				 "enforce", "fallback");
	CHECK(p, "application/json", "{\"s\":\"\\u0041\\u00e9\\ud83d\\ude00\\n\\/\\\"\"}",
	      "{\"s\":\"***\\n/\\\"\"}", "escapes decoded (a pair is one character), re-escaped");
	CHECK(p, "application/json", "{\"s\":\"a\\ud800b\\udc00\\ud800\"}", "{\"s\":\"*****\"}",
	      "lone surrogates are one U+FFFD each");
	CHECK(p, "application/json", "{\"s\":\"\\u0001\x7f\"}", "{\"s\":\"\\u0001\x7f\"}",
	      "control characters re-escaped");
	CHECK(p, "application/json", "{\"\\u0073\":\"x\"}", "{\"\\u0073\":\"*\"}",
	      "escaped key matches, value kept, key bytes kept");
	policy_unref(p);
}

static void test_paths_and_actions(void)
{
	setenv("MESHMASK_TEST_KEY", "0123456789abcdef0123456789abcdef", 1);
	struct policy *p = mkpol(
		"["
		"{\"name\":\"ab\",\"fields\":[\"$.a.b\"],\"action\":{\"type\":\"mask\","
		"\"keepLast\":4}},"
		"{\"name\":\"k\",\"fields\":[\"$..k\"],\"action\":{\"type\":\"replace\",\"value\":"
		"\"K\"}},"
		"{\"name\":\"all\",\"fields\":[\"$.arr[*]\"],\"action\":{\"type\":\"redact\"}},"
		"{\"name\":\"one\",\"fields\":[\"$.idx[1]\"],\"action\":{\"type\":\"replace\"}},"
		"{\"name\":\"q\",\"fields\":[\"$['a b']\"],\"action\":{\"type\":\"mask\"}},"
		"{\"name\":\"sub\",\"fields\":[\"$.sub\"],\"action\":{\"type\":\"mask\","
		"\"keepLast\":1}},"
		"{\"name\":\"h\",\"fields\":[\"$.h\"],\"action\":{\"type\":\"hash\",\"keyEnv\":"
		"\"MESHMASK_TEST_KEY\",\"length\":8,\"prefix\":\"h:\"}},"
		"{\"name\":\"ssn\",\"entities\":[\"US_SSN\"],\"action\":{\"type\":\"mask\","
		"\"keepLast\":4}}"
		"]",
		"enforce", "fallback");
	CHECK(p, "application/json", "{\"a\":{\"b\":\"secret-1234\",\"c\":\"keep\"},\"b\":\"x\"}",
	      "{\"a\":{\"b\":\"******-1234\",\"c\":\"keep\"},\"b\":\"x\"}",
	      "$.a.b masks one value");
	CHECK(p, "application/json", "{\"k\":1,\"x\":[{\"k\":\"v\"},{\"y\":{\"k\":true}}]}",
	      "{\"k\":\"K\",\"x\":[{\"k\":\"K\"},{\"y\":{\"k\":\"K\"}}]}",
	      "$..k at every depth, non-strings become strings");
	CHECK(p, "application/json", "{\"arr\":[\"a\",1,false,null,{\"z\":\"q\"}],\"n\":1}",
	      "{\"arr\":[null,null,null,null,{\"z\":null}],\"n\":1}",
	      "[*] with redact: every leaf null");
	CHECK(p, "application/json", "{\"idx\":[\"a\",\"b\",\"c\"]}",
	      "{\"idx\":[\"a\",\"<MASKED>\",\"c\"]}", "[1] replaces only the second element");
	CHECK(p, "application/json", "{\"a b\":\"xy\",\"a\":\"xy\"}",
	      "{\"a b\":\"**\",\"a\":\"xy\"}", "quoted key with a space");
	CHECK(p, "application/json", "{\"sub\":{\"x\":\"abc\",\"y\":[12,\"de\"],\"z\":null}}",
	      "{\"sub\":{\"x\":\"**c\",\"y\":[\"*2\",\"*e\"],\"z\":null}}",
	      "object at a matching path: every scalar leaf");
	char *h1 = run1(p, "application/json", "{\"h\":\"alice\"}", NULL);
	char *h2 = run1(p, "application/json", "{\"h\" : \"alice\"}", NULL);
	ok(!strncmp(h1, "{\"h\":\"h:", 8) && strlen(h1) == 8 + 8 + 2 && !strstr(h1, "alice") &&
		   !strcmp(h1 + 5, h2 + 7),
	   "hash: prefix, 8 hex digits, deterministic (%s)", h1);
	free(h1);
	free(h2);
	CHECK(p, "application/json", "{\"note\":\"ssn 536-22-8105.\",\"536-22-8105\":1}",
	      "{\"note\":\"ssn ***-**-8105.\",\"536-22-8105\":1}",
	      "entity in a string value, never in a key");
	CHECK(p, "application/json", "{\"n\":\"\\u0035\\u0033\\u0036-22-8105\"}",
	      "{\"n\":\"***-**-8105\"}", "escaped digits are an SSN");
	CHECK(p, "application/json", "[\"536-22-8105\", 536228105, \"536228105\"]",
	      "[\"***-**-8105\", 536228105, \"536228105\"]",
	      "numbers are not scanned; bare 9 digits need field context");
	CHECK(p, "application/json", "{\"a\":{\"b\":\"x 536-22-8105\"}}",
	      "{\"a\":{\"b\":\"* ***-**-8105\"}}", "field rule takes precedence over entity rule");
	policy_unref(p);

	p = mkpol("["
		  "{\"name\":\"r1\",\"fields\":[\"$.x.y\"],\"action\":{\"type\":\"replace\","
		  "\"value\":\"1\"}},"
		  "{\"name\":\"r2\",\"fields\":[\"$.x\"],\"action\":{\"type\":\"replace\","
		  "\"value\":\"2\"}},"
		  "{\"name\":\"r3\",\"fields\":[\"$..id\"],\"entities\":[\"US_SSN\"],\"action\":{"
		  "\"type\":"
		  "\"redact\"}},"
		  "{\"name\":\"num\",\"fields\":[\"$.n\"],\"action\":{\"type\":\"redact\"}}"
		  "]",
		  "enforce", "fallback");
	CHECK(p, "application/json", "{\"x\":{\"y\":\"a\",\"z\":\"b\"}}",
	      "{\"x\":{\"y\":\"1\",\"z\":\"2\"}}", "first matching rule in rule order wins");
	CHECK(p, "application/json", "{\"id\":\"536228105\",\"o\":{\"id\":\"id 536-22-8105 x\"}}",
	      "{\"id\":\"\",\"o\":{\"id\":\"id  x\"}}",
	      "fields+entities: bare SSN in field context, redact removes the match");
	CHECK(p, "application/json", "{\"id\":536228105,\"n\":12.5,\"m\":\"536228105\"}",
	      "{\"id\":\"\",\"n\":null,\"m\":\"536228105\"}",
	      "number scanned under fields+entities; number redacted to null");
	policy_unref(p);
}

static void test_observe(void)
{
	const char *rules =
		"[{\"name\":\"f\",\"fields\":[\"$.a\"],\"action\":{\"type\":\"redact\"}},"
		"{\"name\":\"e\",\"entities\":[\"US_SSN\",\"EMAIL_ADDRESS\"],\"action\":{"
		"\"type\":\"mask\"}}]";
	struct policy *pe = mkpol(rules, "enforce", "fallback");
	struct policy *po = mkpol(rules, "observe", "fallback");
	const char *in =
		"{\"a\":\"x\",\"b\":\"536-22-8105 a@b.example.com\",\"c\":[\"536-22-8105\"]}";
	struct run_result re, ro;
	char *oe = run1(pe, "application/json", in, &re);
	char *oo = run1(po, "application/json", in, &ro);
	is_str(oo, in, "observe: output is the input");
	ok(strcmp(oe, in) != 0, "enforce changes the same input");
	ok(re.st.values == 4 && ro.st.values == re.st.values &&
		   !memcmp(re.st.rules, ro.st.rules, 2 * sizeof(*re.st.rules)),
	   "observe counts exactly what enforce counts (%llu)", (unsigned long long)ro.st.values);
	free(oe);
	free(oo);
	free(re.st.rules);
	free(ro.st.rules);
	/* observe never blocks, and says what enforce would have done */
	struct policy *pob = mkpol(rules, "observe", "block");
	oo = run1(pob, "application/json", "{\"a\":", &ro);
	ok(ro.rc == 0 && ro.outcome == MASK_OUTCOME_BLOCKED && !strcmp(oo, "{\"a\":"),
	   "observe + block: passes, outcome BLOCKED");
	free(oo);
	free(ro.st.rules);
	policy_unref(pe);
	policy_unref(po);
	policy_unref(pob);
}

static void test_formats(void)
{
	struct policy *p =
		mkpol("[{\"name\":\"acct\",\"fields\":[\"$.acct\"],\"action\":{\"type\":\"mask\","
		      "\"keepLast\":2}},"
		      "{\"name\":\"pw\",\"fields\":[\"$.pw\"],\"action\":{\"type\":\"redact\"}},"
		      "{\"name\":\"ssn\",\"entities\":[\"US_SSN\"],\"action\":{\"type\":\"mask\","
		      "\"keepLast\":4}},"
		      "{\"name\":\"mail\",\"entities\":[\"EMAIL_ADDRESS\"],\"action\":{\"type\":"
		      "\"redact\"}}]",
		      "enforce", "fallback");
	CHECK(p, "text/plain; charset=utf-8", "call 536-22-8105 or mail bob@example.org.\n",
	      "call ***-**-8105 or mail .\n", "text body: entity scan");
	CHECK(p, "application/x-www-form-urlencoded",
	      "acct=12%2034&pw=p%40ss&note=ssn+536-22-8105&plain=a%2Bb&flag",
	      "acct=**+34&pw=&note=ssn+***-**-8105&plain=a%2Bb&flag",
	      "form: fields by name, values re-encoded, untouched kept");
	CHECK(p, "application/x-ndjson",
	      "{\"acct\":\"1234\"}\n\n{\"x\":\"536-22-8105\"\n{bad 536-22-8105}\n{\"pw\":1}\n",
	      "{\"acct\":\"**34\"}\n\n{\"x\":\"***-**-8105\"\n{bad ***-**-8105}\n{\"pw\":null}\n",
	      "ndjson: per line, a bad line falls back alone");
	CHECK(p, NULL, "  {\"acct\":\"1234\"}", "  {\"acct\":\"**34\"}", "sniff: JSON");
	CHECK(p, "", "id 536-22-8105", "id ***-**-8105", "sniff: text");
	CHECK(p, "application/vnd.api+json", "{\"acct\":\"1234\"}", "{\"acct\":\"**34\"}",
	      "+json is JSON");
	CHECK(p, "application/json", "{\"a\":1,\"b\":\"536-22-8105\" bad 536-22-8105",
	      "{\"a\":1,\"b\":\"***-**-8105\" bad ***-**-8105",
	      "bad JSON mid-stream: fallback scans the rest");
	CHECK(p, "application/json", "{\"b\":\"536-22-8105 \x01 x\"}",
	      "{\"b\":\"***-**-8105 \x01 x\"}", "bad JSON inside a held string: scanned as text");
	policy_unref(p);

	is_int(mask_format_for("Application/JSON; charset=utf-8"), MASK_FMT_JSON, "format: json");
	is_int(mask_format_for("application/problem+json"), MASK_FMT_JSON, "format: +json");
	is_int(mask_format_for("application/jsonl"), MASK_FMT_NDJSON, "format: jsonl");
	is_int(mask_format_for("text/html"), MASK_FMT_TEXT, "format: text");
	is_int(mask_format_for("application/x-www-form-urlencoded"), MASK_FMT_FORM, "format: form");
	is_int(mask_format_for("image/png"), MASK_FMT_RAW, "format: raw");
	is_int(mask_format_for(NULL), MASK_FMT_AUTO, "format: none");
	is_int(mask_format_for(" "), MASK_FMT_AUTO, "format: blank");
}

/* UTF-16LE of an ASCII string (with a byte-order mark when bom). */
static size_t utf16le(const char *a, bool bom, char *out)
{
	size_t k = 0;
	if (bom) {
		out[k++] = (char)0xff;
		out[k++] = (char)0xfe;
	}
	for (; *a; a++) {
		out[k++] = *a;
		out[k++] = 0;
	}
	return k;
}

/*
 * Fail closed on content labels (issue 13): JSON is read as JSON whatever the label says;
 * text the engine cannot read (UTF-16/32) follows onError, with fallback meaning block.
 */
static void test_sniffing(void)
{
	const char *rules =
		"[{\"name\":\"ssn\",\"fields\":[\"$..ssn\"],\"action\":{\"type\":\"mask\","
		"\"keepLast\":4,\"char\":\"X\"}},{\"name\":\"card\",\"entities\":[\"CREDIT_CARD\"],"
		"\"action\":{\"type\":\"mask\",\"keepLast\":4}}]";
	struct policy *fb = mkpol(rules, "enforce", "fallback");
	struct policy *bl = mkpol(rules, "enforce", "block");
	struct policy *ps = mkpol(rules, "enforce", "pass");
	const char *doc = "{\"ssn\":\"123-45-6789\",\"c\":\"4111111111111111\"}";
	const char *want = "{\"ssn\":\"XXX-XX-6789\",\"c\":\"************1111\"}";
	static const char *const labels[] = {"text/html",
					     "text/plain",
					     "application/octet-stream",
					     "application/xml",
					     "application/javascript",
					     "text/html; charset=utf-8"};
	for (size_t i = 0; i < sizeof(labels) / sizeof(*labels); i++)
		CHECK(bl, labels[i], doc, want, labels[i]);
	CHECK(bl, "text/plain", "\n {\"ssn\":\"123-45-6789\"}\n{\"a\":[{\"ssn\":\"123456789\"}]}\n",
	      "\n {\"ssn\":\"XXX-XX-6789\"}\n{\"a\":[{\"ssn\":\"XXXXX6789\"}]}\n",
	      "NDJSON labelled text/plain: every document");
	CHECK(bl, "text/html", "\xef\xbb\xbf{\"ssn\":\"123-45-6789\"}",
	      "\xef\xbb\xbf{\"ssn\":\"XXX-XX-6789\"}", "UTF-8 byte-order mark: read past, kept");
	CHECK(bl, "application/json", "\xef\xbb\xbf{\"ssn\":\"123-45-6789\"}",
	      "\xef\xbb\xbf{\"ssn\":\"XXX-XX-6789\"}", "UTF-8 BOM on application/json");
	/* Text that only starts like JSON is scanned as the text it is, even under block. */
	struct run_result rr;
	char *o = run1(bl, "text/plain", "{name} paid with 4111 1111 1111 1111", &rr);
	ok(rr.rc == 0 && !strcmp(o, "{name} paid with **** **** **** 1111"),
	   "text/plain starting with '{' but not JSON: entity scan, not blocked");
	free(o);
	free(rr.st.rules);

	/* UTF-16 and UTF-32 bodies, marked or not, and a UTF-16 charset label. */
	struct wide_case {
		const char *ct, *name;
		size_t len;
		char b[512];
	} *wide = calloc(5, sizeof(*wide));
	wide[0].ct = "application/json";
	wide[0].name = "UTF-16LE with BOM";
	wide[0].len = utf16le(doc, true, wide[0].b);
	wide[1].ct = "text/plain";
	wide[1].name = "UTF-16LE without BOM";
	wide[1].len = utf16le(doc, false, wide[1].b);
	wide[2].ct = "application/json";
	wide[2].name = "UTF-16BE without BOM";
	wide[2].len = utf16le(doc, false, wide[2].b + 1); /* shifted by one: big-endian */
	for (const char *a = doc; *a; a++)
		wide[3].b[wide[3].len += 4, wide[3].len - 4] = *a;
	wide[3].ct = "application/json";
	wide[3].name = "UTF-32LE without BOM";
	wide[4].ct = "application/json; charset=UTF-16";
	wide[4].name = "charset=UTF-16 label";
	wide[4].len = strlen(doc);
	memcpy(wide[4].b, doc, wide[4].len);
	for (int i = 0; i < 5; i++) {
		struct policy *pols[] = {fb, bl, ps};
		for (int m = 0; m < 3; m++) {
			struct mm_buf out = {0};
			struct run_result r2 = run_cuts(pols[m], wide[i].ct, NULL, wide[i].b,
							wide[i].len, NULL, 0, m == 0 ? 1 : 0, &out);
			bool identical =
				out.len == wide[i].len && !memcmp(out.data, wide[i].b, out.len);
			if (m < 2)
				ok(r2.rc == -EPROTO && r2.outcome == MASK_OUTCOME_BLOCKED &&
					   r2.reason == MM_REASON_BAD_CHARSET && out.len == 0,
				   "%s, onError=%s: blocked as bad_charset", wide[i].name,
				   m ? "block" : "fallback (bytewise)");
			else
				ok(r2.rc == 0 && r2.outcome == MASK_OUTCOME_PASSED && identical,
				   "%s, onError=pass: passed unchanged, counted", wide[i].name);
			mm_buf_free(&out);
			free(r2.st.rules);
		}
	}
	free(wide);
	policy_unref(fb);
	policy_unref(bl);
	policy_unref(ps);
}

static void test_on_error(void)
{
	const char *rules =
		"[{\"name\":\"ssn\",\"entities\":[\"US_SSN\"],\"action\":{\"type\":\"mask\","
		"\"keepLast\":4}},{\"name\":\"big\",\"fields\":[\"$.big\"],\"action\":{"
		"\"type\":\"redact\"}}]";
	const char *modes[] = {"fallback", "pass", "block"};
	const char *in = "bin 536-22-8105";
	for (int m = 0; m < 3; m++) {
		struct policy *p = mkpol(rules, "enforce", modes[m]);
		struct run_result rr;
		char *o = run1(p, "application/octet-stream", in, &rr);
		if (m == 0)
			ok(rr.rc == 0 && rr.outcome == MASK_OUTCOME_FALLBACK &&
				   !strcmp(o, "bin ***-**-8105"),
			   "unknown type + fallback: entity scan");
		else if (m == 1)
			ok(rr.rc == 0 && rr.outcome == MASK_OUTCOME_PASSED && !strcmp(o, in),
			   "unknown type + pass: unchanged");
		else
			ok(rr.rc == -EPROTO && rr.outcome == MASK_OUTCOME_BLOCKED && !*o,
			   "unknown type + block: blocked");
		is_int(rr.st.errors[MM_REASON_UNKNOWN_CONTENT_TYPE], 1, "counted (%s)", modes[m]);
		free(o);
		free(rr.st.rules);

		/* A whole-value field over the hold limit. */
		size_t big = 70000;
		char *doc = malloc(big + 64);
		size_t k = strlen(strcpy(doc, "{\"big\":\""));
		memset(doc + k, 'a', big);
		strcpy(doc + k + big, " 536-22-8105\",\"z\":1}");
		o = run1(p, "application/json", doc, &rr);
		is_int(rr.st.errors[MM_REASON_VALUE_TOO_LARGE], 1, "value_too_large counted (%s)",
		       modes[m]);
		if (m == 0)
			ok(rr.rc == 0 && strstr(o, "***-**-8105\",\"z\":1}") &&
				   strlen(o) == strlen(doc),
			   "too large + fallback: value entity-scanned");
		else if (m == 1)
			ok(rr.rc == 0 && !strcmp(o, doc), "too large + pass: unchanged");
		else
			ok(rr.rc == -EPROTO, "too large + block: blocked");
		free(o);
		free(doc);
		free(rr.st.rules);
		policy_unref(p);
	}
}

static void test_encodings(void)
{
	const char *rules =
		"[{\"name\":\"ssn\",\"entities\":[\"US_SSN\"],\"action\":{\"type\":\"mask\","
		"\"keepLast\":4}}]";
	struct policy *p = mkpol(rules, "enforce", "fallback");
	const char *in = "{\"a\":\"536-22-8105\",\"b\":[1,2,3]}";
	const char *want = "{\"a\":\"***-**-8105\",\"b\":[1,2,3]}";
	const struct {
		const char *ce;
		int wbits;
	} cs[] = {{"gzip", 31}, {"deflate", 15}, {"deflate", -15}, {"x-gzip", 31}};
	for (size_t i = 0; i < sizeof(cs) / sizeof(*cs); i++) {
		struct mm_buf z = {0}, out = {0}, plain = {0};
		zcompress(in, strlen(in), cs[i].wbits, &z);
		struct run_result rr =
			run_cuts(p, "application/json", cs[i].ce, z.data, z.len, NULL, 0, 0, &out);
		int dr = zdecompress(out.data, out.len, cs[i].wbits, &plain);
		ok(rr.rc == 0 && dr == 0 && plain.len == strlen(want) &&
			   !memcmp(plain.data, want, plain.len),
		   "%s (wbits %d): decoded, masked, re-encoded the same way", cs[i].ce,
		   cs[i].wbits);
		mm_buf_free(&z);
		mm_buf_free(&out);
		mm_buf_free(&plain);
		free(rr.st.rules);
	}
	/* An empty compressed body stays empty. */
	struct mm_buf out = {0};
	struct run_result rr = run_cuts(p, "application/json", "gzip", "", 0, NULL, 0, 0, &out);
	ok(rr.rc == 0 && out.len == 0, "empty gzip body stays empty");
	free(rr.st.rules);
	policy_unref(p);

	const char *modes[] = {"fallback", "pass", "block"};
	for (int m = 0; m < 3; m++) {
		p = mkpol(rules, "enforce", modes[m]);
		struct mm_buf z = {0}, o2 = {0};
		zcompress(in, strlen(in), 31, &z);
		z.data[z.len - 7] ^= 0x55; /* the CRC-32 in the trailer */
		rr = run_cuts(p, "application/json", "gzip", z.data, z.len, NULL, 0, 0, &o2);
		ok(rr.st.errors[MM_REASON_BAD_ENCODING] == 1 &&
			   rr.reason == MM_REASON_BAD_ENCODING &&
			   (m == 1 ? rr.rc == 0 && rr.outcome == MASK_OUTCOME_PASSED
				   : rr.rc == -EPROTO && rr.outcome == MASK_OUTCOME_BLOCKED),
		   "corrupt gzip + %s: bad_encoding, %s", modes[m], m == 1 ? "passed" : "blocked");
		free(rr.st.rules);
		mm_buf_free(&o2);
		/* truncated stream */
		rr = run_cuts(p, "application/json", "gzip", z.data, z.len / 3, NULL, 0, 0, &o2);
		ok(rr.st.errors[MM_REASON_BAD_ENCODING] == 1, "truncated gzip + %s: bad_encoding",
		   modes[m]);
		free(rr.st.rules);
		mm_buf_free(&o2);
		/* A decompression bomb: 32 MiB of one JSON string in ~32 KiB of gzip (1000x). */
		if (m != 1) {
			size_t bn = 32u << 20;
			char *bomb = malloc(bn);
			memset(bomb, 'a', bn);
			memcpy(bomb, "{\"s\":\"", 6);
			memcpy(bomb + bn - 2, "\"}", 2);
			struct mm_buf bz = {0};
			zcompress(bomb, bn, 31, &bz);
			free(bomb);
			rr = run_cuts(p, "application/json", "gzip", bz.data, bz.len, NULL, 0, 0, &o2);
			/* block: the stream is cut; fallback: what was decoded is scanned, no more */
			ok(rr.st.errors[MM_REASON_LIMIT] == 1 && o2.len < (4u << 20) &&
				   (m == 2 ? rr.rc == -EPROTO && rr.outcome == MASK_OUTCOME_BLOCKED
					   : rr.outcome == MASK_OUTCOME_FALLBACK),
			   "gzip bomb (%zu bytes -> 32 MiB) + %s: limit, stopped after at most %u:1 "
			   "(%zu bytes out)",
			   bz.len, modes[m], CODEC_MAX_RATIO, o2.len);
			free(rr.st.rules);
			mm_buf_free(&o2);
			if (m == 0) {
				/*
				 * The whole bomb handed over in one push (one large read): the bound
				 * counts what inflate consumed, so it stops near the free first MiB
				 * instead of 200x everything handed over (6 MiB here).
				 */
				struct codec_dec d;
				size_t got = 0, bad = 0;
				codec_dec_init(&d, CODEC_GZIP);
				int cr = codec_dec_push(&d, bz.data, bz.len, count_out, &got, &bad);
				codec_dec_free(&d);
				ok(cr == -EFBIG && got <= CODEC_RATIO_FREE + (64u << 10),
				   "gzip bomb in one push: stopped at %zu bytes out", got);
			}
			mm_buf_free(&bz);
		}
		rr = run_cuts(p, "application/json", "br", in, strlen(in), NULL, 0, 0, &o2);
		ok(rr.st.errors[MM_REASON_UNKNOWN_ENCODING] == 1 &&
			   (m == 1 ? rr.rc == 0 && o2.len == strlen(in) : rr.rc == -EPROTO),
		   "unknown encoding + %s: %s", modes[m], m == 1 ? "passed" : "blocked");
		free(rr.st.rules);
		mm_buf_free(&o2);
		mm_buf_free(&z);
		policy_unref(p);
	}
}

static void test_buffer(void)
{
	struct policy *p =
		mkpol("[{\"name\":\"ssn\",\"entities\":[\"US_SSN\"],\"action\":{\"type\":"
		      "\"mask\"}}]",
		      "enforce", "fallback");
	struct mask_opts o = {.policy = p, .content_type = "text/plain"};
	struct mm_buf out = {0};
	struct mask_stats st;
	const char *in = "a 536-22-8105 b 536-22-8105";
	int r = mask_buffer(&o, in, strlen(in), &out, &st);
	ok(r == 0 && out.len == strlen(in) && !memmem(out.data, out.len, "8105", 4) &&
		   st.values == 2 && st.rules && st.rules[0].by_entity[MM_ENT_US_SSN] == 2 &&
		   st.bytes_in == strlen(in) && st.bytes_out == out.len,
	   "mask_buffer masks and returns stats");
	free(st.rules);
	mm_buf_free(&out);
	policy_unref(p);
}

/* One body through stream s (new or reused), output and stats kept. */
static int reuse_run(struct mask_stream *s, const char *in, size_t len, struct mm_buf *out,
		     struct mask_stats *st, enum mask_outcome *oc)
{
	int r = mask_stream_write(s, in, len / 2, buf_sink_, out);
	r = r ? r : mask_stream_write(s, in + len / 2, len - len / 2, buf_sink_, out);
	r = r ? r : mask_stream_finish(s, buf_sink_, out);
	*st = *mask_stream_stats(s);
	st->rules = malloc((st->n_rules + 1) * sizeof(*st->rules));
	memcpy(st->rules, mask_stream_stats(s)->rules, st->n_rules * sizeof(*st->rules));
	*oc = mask_stream_outcome(s);
	return r;
}

/*
 * mask_stream_reuse: one stream through a sequence of bodies of every format (JSON with field
 * paths and HMAC, text, form, gzip, an unparsable one, one left unfinished) gives, body by
 * body, the bytes, result, outcome and statistics of a new stream; another policy is refused.
 */
static void test_reuse(void)
{
	setenv("MESHMASK_TEST_KEY", "k1", 1);
	struct policy *p = mkpol(
		"[{\"name\":\"f\",\"fields\":[\"$.a[1].ssn\",\"$..pw\"],\"action\":{\"type\":"
		"\"redact\"}},{\"name\":\"h\",\"entities\":[\"EMAIL_ADDRESS\"],\"action\":"
		"{\"type\":\"hash\",\"keyEnv\":\"MESHMASK_TEST_KEY\",\"prefix\":\"h:\"}},"
		"{\"name\":\"c\",\"entities\":[\"CREDIT_CARD\",\"US_SSN\"],\"action\":{\"type\":"
		"\"mask\",\"keepLast\":4}}]",
		"enforce", "fallback");
	struct policy *other = mkpol("[{\"name\":\"x\",\"fields\":[\"$..x\"],\"action\":"
				     "{\"type\":\"redact\"}}]",
				     "enforce", "fallback");
	static const char gz_src[] = "{\"pw\":\"secret\",\"m\":\"ann@example.com\"}";
	struct mm_buf gz = {0};
	ok(!zcompress(gz_src, strlen(gz_src), 31, &gz), "reuse: gzip body built");
	struct {
		const char *ct, *ce, *in;
		size_t len;
		bool unfinished;
	} bodies[] = {
		{.ct = "application/json",
		 .in = "{\"a\":[{\"ssn\":\"1\"},{\"ssn\":\"536-22-8105\",\"pw\":\"p\"}],"
		       "\"e\":\"ann@example.com\",\"c\":\"4111 1111 1111 1111\"}"},
		{.ct = "application/json",
		 .in = "{\"a\":[{\"deep\":[[[[{\"pw\":\"x",
		 .unfinished = true},
		{.ct = "text/plain",
		 .in = "mail bob@example.org card 4111111111111111 ssn 536-22-8105"},
		{.ct = "application/x-www-form-urlencoded",
		 .in = "pw=hunter2&e=ann%40example.com&z=1"},
		{.ct = "application/json", .ce = "gzip", .in = gz.data, .len = gz.len},
		{.ct = "application/json", .in = "{\"a\": nope 536-22-8105"},
		{.ct = "application/json", .in = "[{\"pw\":1},{\"e\":\"ann@example.com\"}]"},
	};
	struct mask_opts o0 = {.policy = p, .direction = POLICY_DIR_RESPONSE};
	struct mask_stream *re = mask_stream_new(&o0);
	int bad = 0;
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		struct mask_opts o = {.policy = p,
				      .direction = POLICY_DIR_RESPONSE,
				      .content_type = bodies[i].ct,
				      .content_encoding = bodies[i].ce};
		size_t len = bodies[i].len ? bodies[i].len : strlen(bodies[i].in);
		if (i && mask_stream_reuse(re, &o)) {
			bad++;
			break;
		}
		if (!i) {
			mask_stream_free(re);
			re = mask_stream_new(&o);
		}
		if (bodies[i].unfinished) {
			struct mm_buf junk = {0};
			mask_stream_write(re, bodies[i].in, len, buf_sink_, &junk);
			mm_buf_free(&junk);
			continue;
		}
		struct mask_stream *fresh = mask_stream_new(&o);
		struct mm_buf a = {0}, b = {0};
		struct mask_stats sa, sb;
		enum mask_outcome oa, ob;
		int ra = reuse_run(fresh, bodies[i].in, len, &a, &sa, &oa);
		int rb = reuse_run(re, bodies[i].in, len, &b, &sb, &ob);
		bool same = ra == rb && oa == ob && a.len == b.len &&
			    (!a.len || !memcmp(a.data, b.data, a.len)) && sa.values == sb.values &&
			    sa.bytes_in == sb.bytes_in && sa.bytes_out == sb.bytes_out &&
			    sa.bytes_scanned == sb.bytes_scanned &&
			    !memcmp(sa.errors, sb.errors, sizeof(sa.errors)) &&
			    !memcmp(sa.rules, sb.rules, sa.n_rules * sizeof(*sa.rules));
		if (!same) {
			bad++;
			printf("# body %zu: rc %d/%d, outcome %d/%d, %zu/%zu bytes, %llu/%llu "
			       "values\n",
			       i, ra, rb, (int)oa, (int)ob, a.len, b.len,
			       (unsigned long long)sa.values, (unsigned long long)sb.values);
		}
		bad += !sa.values && i != 5;
		free(sa.rules);
		free(sb.rules);
		mm_buf_free(&a);
		mm_buf_free(&b);
		mask_stream_free(fresh);
	}
	ok(!bad, "reuse: every body as through a new stream (bytes, outcome, statistics)");
	struct mask_opts oo = {.policy = other, .content_type = "application/json"};
	is_int(mask_stream_reuse(re, &oo), -EINVAL, "reuse: another policy is refused");
	struct mm_buf c = {0};
	struct mask_stats sc;
	enum mask_outcome oc;
	struct mask_opts oj = {.policy = p, .content_type = "application/json"};
	int rc = mask_stream_reuse(re, &oj);
	rc = rc ? rc : reuse_run(re, "{\"pw\":\"z\"}", 10, &c, &sc, &oc);
	ok(rc == 0 && sc.values == 1 && !memmem(c.data, c.len, "\"z\"", 3),
	   "reuse: after a refusal the stream is reused under its own policy");
	if (!rc)
		free(sc.rules);
	mm_buf_free(&c);
	mask_stream_free(re);
	mm_buf_free(&gz);
	policy_unref(p);
	policy_unref(other);
}

int main(void)
{
	test_tokenizer();
	test_scalars_split();
	test_decoding();
	test_paths_and_actions();
	test_observe();
	test_formats();
	test_sniffing();
	test_on_error();
	test_encodings();
	test_buffer();
	test_reuse();
	return tap_done();
}
