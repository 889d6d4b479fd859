/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Engine throughput: a realistic API JSON document (user records with names, emails, SSNs,
 * cards, phones, addresses, nested arrays, numbers) of about 1 KB, 64 KB and 1 MB, masked
 * through mask_stream_write() in 64 KiB chunks, against memcpy of the same bytes in the same
 * run; then the peak RSS while streaming 1 GB generated on the fly. Rates are per CPU second of
 * the benchmark thread (CLOCK_THREAD_CPUTIME_ID), so a busy machine slows them less. The last
 * policy is policy/examples/pii-default.json itself (its hash key from MESHMASK_HASH_KEY). The
 * tokenize row is the hash row with cards and SSNs tokenized (FF1) instead of masked.
 *
 * --threads 1,2: N threads mask the 64 KB document at once (the PII example, or --policy K):
 * MB/s of all together per wall second, per CPU-second, and the scaling against one thread.
 *
 * Small documents are also run on one stream reused for each (mask_stream_reuse), the way
 * the proxy masks the bodies of a keep-alive connection.
 *
 *   bench_engine [--seconds S] [--stream-mb N] [--policy K] [--doc KB] [--file F] [--mb M]
 *   (K: one policy, KB: one document size, for profiling; F: a JSON file instead of the
 *   generated documents, e.g. the payloads of `scripts/bench.sh all`; M: mask M MB of each
 *   document instead of timing it, and no memcpy run, for instruction counts under
 *   `valgrind --tool=callgrind`, which a loaded machine does not change)
 *   bench_engine --hs [--seconds S]: Hyperscan against the engine's candidate filter and
 *   detectors (hs_eval.c; only when built with libhs)
 */
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "buf.h"
#include "mask.h"
#include "policy.h"

#define CHUNK (64 * 1024)

#ifdef MESHMASK_HAVE_HS
int hs_eval(const char *doc, size_t len, double secs);
#endif

static const char *policies[][2] = {
	{"10 rules (5 field, 5 entity; hash)",
	 "[{\"name\":\"ssn\",\"fields\":[\"$..ssn\"],\"action\":{\"type\":\"mask\",\"keepLast\":4}}"
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
	 "\"keyEnv\":\"MESHMASK_BENCH_KEY\"}},"
	 "{\"name\":\"phone\",\"entities\":[\"PHONE_NUMBER\"],\"action\":{\"type\":\"mask\","
	 "\"keepLast\":2}},"
	 "{\"name\":\"ssn-text\",\"entities\":[\"US_SSN\"],\"action\":{\"type\":\"mask\","
	 "\"keepLast\":4}},"
	 "{\"name\":\"iban\",\"entities\":[\"IBAN_CODE\"],\"action\":{\"type\":\"redact\"}}]"},
	{"same 10 rules, cards+SSNs FF1",
	 "[{\"name\":\"ssn\",\"fields\":[\"$..ssn\"],\"action\":{\"type\":\"tokenize\","
	 "\"keyEnv\":\"MESHMASK_BENCH_TOKEN_KEY\"}},"
	 "{\"name\":\"pw\",\"fields\":[\"$..password\"],\"action\":{\"type\":\"redact\"}},"
	 "{\"name\":\"pan\",\"fields\":[\"$..card.number\"],\"action\":{\"type\":"
	 "\"tokenize\",\"keyEnv\":\"MESHMASK_BENCH_TOKEN_KEY\",\"keepFirst\":6,\"keepLast\":4}},"
	 "{\"name\":\"dob\",\"fields\":[\"$.users[*].dob\"],\"action\":{\"type\":\"redact\"}},"
	 "{\"name\":\"street\",\"fields\":[\"$.users[*].address.street\"],\"action\":{\"type\":"
	 "\"mask\"}},"
	 "{\"name\":\"cards\",\"entities\":[\"CREDIT_CARD\"],\"action\":{\"type\":\"tokenize\","
	 "\"keyEnv\":\"MESHMASK_BENCH_TOKEN_KEY\",\"keepFirst\":6,\"keepLast\":4}},"
	 "{\"name\":\"email\",\"entities\":[\"EMAIL_ADDRESS\"],\"action\":{\"type\":\"hash\","
	 "\"keyEnv\":\"MESHMASK_BENCH_KEY\"}},"
	 "{\"name\":\"phone\",\"entities\":[\"PHONE_NUMBER\"],\"action\":{\"type\":\"mask\","
	 "\"keepLast\":2}},"
	 "{\"name\":\"ssn-text\",\"entities\":[\"US_SSN\"],\"action\":{\"type\":\"tokenize\","
	 "\"keyEnv\":\"MESHMASK_BENCH_TOKEN_KEY\"}},"
	 "{\"name\":\"iban\",\"entities\":[\"IBAN_CODE\"],\"action\":{\"type\":\"redact\"}}]"},
	{"same 10 rules, cards+SSNs FF1 +luhn",
	 "[{\"name\":\"ssn\",\"fields\":[\"$..ssn\"],\"action\":{\"type\":\"tokenize\","
	 "\"keyEnv\":\"MESHMASK_BENCH_TOKEN_KEY\"}},"
	 "{\"name\":\"pw\",\"fields\":[\"$..password\"],\"action\":{\"type\":\"redact\"}},"
	 "{\"name\":\"pan\",\"fields\":[\"$..card.number\"],\"action\":{\"type\":"
	 "\"tokenize\",\"keyEnv\":\"MESHMASK_BENCH_TOKEN_KEY\",\"keepFirst\":6,\"keepLast\":4,"
	 "\"luhn\":true}},"
	 "{\"name\":\"dob\",\"fields\":[\"$.users[*].dob\"],\"action\":{\"type\":\"redact\"}},"
	 "{\"name\":\"street\",\"fields\":[\"$.users[*].address.street\"],\"action\":{\"type\":"
	 "\"mask\"}},"
	 "{\"name\":\"cards\",\"entities\":[\"CREDIT_CARD\"],\"action\":{\"type\":\"tokenize\","
	 "\"keyEnv\":\"MESHMASK_BENCH_TOKEN_KEY\",\"keepFirst\":6,\"keepLast\":4,\"luhn\":true}},"
	 "{\"name\":\"email\",\"entities\":[\"EMAIL_ADDRESS\"],\"action\":{\"type\":\"hash\","
	 "\"keyEnv\":\"MESHMASK_BENCH_KEY\"}},"
	 "{\"name\":\"phone\",\"entities\":[\"PHONE_NUMBER\"],\"action\":{\"type\":\"mask\","
	 "\"keepLast\":2}},"
	 "{\"name\":\"ssn-text\",\"entities\":[\"US_SSN\"],\"action\":{\"type\":\"tokenize\","
	 "\"keyEnv\":\"MESHMASK_BENCH_TOKEN_KEY\"}},"
	 "{\"name\":\"iban\",\"entities\":[\"IBAN_CODE\"],\"action\":{\"type\":\"redact\"}}]"},
	{"same 10 rules, hash -> mask",
	 "[{\"name\":\"ssn\",\"fields\":[\"$..ssn\"],\"action\":{\"type\":\"mask\",\"keepLast\":4}}"
	 ","
	 "{\"name\":\"pw\",\"fields\":[\"$..password\"],\"action\":{\"type\":\"redact\"}},"
	 "{\"name\":\"pan\",\"fields\":[\"$..card.number\"],\"action\":{\"type\":\"mask\","
	 "\"keepLast\":4}},"
	 "{\"name\":\"dob\",\"fields\":[\"$.users[*].dob\"],\"action\":{\"type\":\"redact\"}},"
	 "{\"name\":\"street\",\"fields\":[\"$.users[*].address.street\"],\"action\":{\"type\":"
	 "\"mask\"}},"
	 "{\"name\":\"cards\",\"entities\":[\"CREDIT_CARD\"],\"action\":{\"type\":\"mask\","
	 "\"keepLast\":4}},"
	 "{\"name\":\"email\",\"entities\":[\"EMAIL_ADDRESS\"],\"action\":{\"type\":\"mask\"}},"
	 "{\"name\":\"phone\",\"entities\":[\"PHONE_NUMBER\"],\"action\":{\"type\":\"mask\","
	 "\"keepLast\":2}},"
	 "{\"name\":\"ssn-text\",\"entities\":[\"US_SSN\"],\"action\":{\"type\":\"mask\","
	 "\"keepLast\":4}},"
	 "{\"name\":\"iban\",\"entities\":[\"IBAN_CODE\"],\"action\":{\"type\":\"redact\"}}]"},
	{"5 field rules only",
	 "[{\"name\":\"ssn\",\"fields\":[\"$..ssn\"],\"action\":{\"type\":\"mask\",\"keepLast\":4}}"
	 ","
	 "{\"name\":\"pw\",\"fields\":[\"$..password\"],\"action\":{\"type\":\"redact\"}},"
	 "{\"name\":\"pan\",\"fields\":[\"$..card.number\"],\"action\":{\"type\":\"mask\","
	 "\"keepLast\":4}},"
	 "{\"name\":\"dob\",\"fields\":[\"$.users[*].dob\"],\"action\":{\"type\":\"redact\"}},"
	 "{\"name\":\"street\",\"fields\":[\"$.users[*].address.street\"],\"action\":{\"type\":"
	 "\"mask\"}}]"},
	{"no rule matches (tokenizer only)",
	 "[{\"name\":\"none\",\"fields\":[\"$.nothing\"],\"action\":{\"type\":\"redact\"}}]"},
	{"entity scan, nothing found (AWS key)",
	 "[{\"name\":\"aws\",\"entities\":[\"AWS_ACCESS_KEY_ID\"],\"action\":{\"type\":"
	 "\"redact\"}}]"},
	{"PII example (pii-default.json)", NULL},
};

#ifndef MESHMASK_SRCDIR
#define MESHMASK_SRCDIR "."
#endif

static struct policy *mkpol(const char *rules)
{
	char *doc = NULL;
	struct policy_errors errs = {0};
	if (!rules) {
		const char *path = MESHMASK_SRCDIR "/policy/examples/pii-default.json";
		struct policy *p = policy_load_file(path, &errs);
		if (!p) {
			policy_errors_print(stderr, path, &errs);
			exit(1);
		}
		return p;
	}
	if (asprintf(&doc,
		     "{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","
		     "\"metadata\":{\"name\":\"bench\"},\"spec\":{\"mode\":\"enforce\","
		     "\"onError\":\"fallback\",\"rules\":%s}}",
		     rules) < 0)
		abort();
	struct policy *p = policy_parse(doc, strlen(doc), "bench", &errs);
	if (!p) {
		policy_errors_print(stderr, "bench", &errs);
		exit(1);
	}
	free(doc);
	return p;
}

static const char *first[] = {"Alice", "Bob", "Carol", "Dave", "Eve", "Frank", "Grace", "Heidi"};
static const char *last[] = {"Smith", "Jones", "Garcia", "Miller", "Davis", "Lopez", "Wilson"};
static const char *ssns[] = {"536-22-8105", "219-09-9999", "457-55-5462", "078-05-1121"};
static const char *cards[] = {"4111 1111 1111 1111", "5500-0000-0000-0004", "340000000000009",
			      "6011000000000004"};

/* One user record; returns its length. */
static size_t gen_user(char *b, size_t cap, unsigned i)
{
	const char *f = first[i % 8], *l = last[i % 7];
	return (size_t)snprintf(
		b, cap,
		"{\"id\":%u,\"name\":\"%s %s\",\"email\":\"%s.%s%u@example.com\",\"ssn\":\"%s\","
		"\"dob\":\"19%02u-0%u-1%u\",\"phone\":\"+1 (415) 555-%04u\",\"active\":%s,"
		"\"address\":{\"street\":\"%u Market Street\",\"city\":\"San Francisco\","
		"\"zip\":\"94%03u\",\"geo\":[37.7749,-122.4194]},"
		"\"card\":{\"number\":\"%s\",\"exp\":\"1%u/2%u\",\"brand\":\"visa\"},"
		"\"orders\":[{\"sku\":\"A-%u\",\"qty\":%u,\"price\":%u.99,\"note\":\"gift wrap, "
		"deliver after 5pm to the front "
		"desk\"},{\"sku\":\"B-%u\",\"qty\":1,\"price\":4.5}],"
		"\"bio\":\"Customer since 2019. Prefers email contact; contact %s.%s%u@example.com "
		"or call +1 415 555 %04u. Loyalty tier gold.\",\"password\":\"pw-%u-secret\"}",
		i, f, l, f, l, i, ssns[i % 4], 50 + i % 49, 1 + i % 9, i % 10, i % 10000,
		i % 2 ? "true" : "false", 100 + i % 900, i % 1000, cards[i % 4], i % 3, 5 + i % 4,
		i, 1 + i % 5, 10 + i % 90, i, f, l, i, i % 10000, i);
}

/* A document {"page":..,"users":[...]} of about `target` bytes. */
static void gen_doc(struct mm_buf *b, size_t target)
{
	char rec[2048];
	mm_buf_puts(b, "{\"page\":1,\"per_page\":100,\"total\":123456,\"users\":[");
	for (unsigned i = 0;; i++) {
		size_t n = gen_user(rec, sizeof(rec), i);
		if (i)
			mm_buf_putc(b, ',');
		mm_buf_append(b, rec, n);
		if (b->len + n > target)
			break;
	}
	mm_buf_puts(b, "],\"links\":{\"next\":\"/v1/users?page=2\"}}");
}

/* CPU time of this thread: the machine may be shared, and waiting for a CPU is not work. */
static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static _Thread_local uint64_t sink_bytes;
static int null_sink(void *ctx, const char *p, size_t n)
{
	(void)ctx;
	(void)p;
	sink_bytes += n;
	return 0;
}

/* Reuse one stream for every document (mask_stream_reuse), as the proxy does per connection. */
static bool reuse;
static struct mask_stream *kept;

static int mask_once(const struct policy *pol, const char *d, size_t n)
{
	struct mask_opts o = {.policy = pol, .content_type = "application/json"};
	struct mask_stream *s;
	if (reuse && kept && mask_stream_reuse(kept, &o) == 0) {
		s = kept;
	} else {
		mask_stream_free(kept);
		kept = NULL;
		s = mask_stream_new(&o);
	}
	int r = 0;
	for (size_t off = 0; !r && off < n; off += CHUNK)
		r = mask_stream_write(s, d + off, n - off < CHUNK ? n - off : CHUNK, null_sink,
				      NULL);
	if (!r)
		r = mask_stream_finish(s, null_sink, NULL);
	if (reuse)
		kept = s;
	else
		mask_stream_free(s);
	return r;
}

/* --mb: a fixed amount of work instead of a fixed time. */
static uint64_t fixed_bytes;

static double mbps_mask(const struct policy *pol, const struct mm_buf *doc, double secs)
{
	uint64_t bytes = 0;
	double t0 = now(), t;
	if (fixed_bytes) {
		for (; bytes < fixed_bytes; bytes += doc->len)
			if (mask_once(pol, doc->data, doc->len)) {
				fprintf(stderr, "mask failed\n");
				exit(1);
			}
		t = now() - t0;
		return bytes / t / 1e6;
	}
	do {
		/* at least 256 KiB between clock reads: a read is a system call */
		for (uint64_t b = 0; b < (256 << 10); b += doc->len) {
			if (mask_once(pol, doc->data, doc->len)) {
				fprintf(stderr, "mask failed\n");
				exit(1);
			}
			bytes += doc->len;
		}
		t = now() - t0;
	} while (t < secs);
	return bytes / t / 1e6;
}

static double mbps_memcpy(const struct mm_buf *doc, double secs)
{
	static char dst[CHUNK];
	uint64_t bytes = 0;
	double t0 = now(), t;
	do {
		for (uint64_t b = 0; b < (4 << 20); b += doc->len) {
			for (size_t off = 0; off < doc->len; off += CHUNK) {
				size_t n = doc->len - off < CHUNK ? doc->len - off : CHUNK;
				memcpy(dst, doc->data + off, n);
				__asm__ volatile("" : : "r"(dst) : "memory");
				null_sink(NULL, dst, n);
			}
			bytes += doc->len;
		}
		t = now() - t0;
	} while (t < secs);
	return bytes / t / 1e6;
}

/* --threads: N threads mask the same document at once, each its own streams. */
struct thr {
	const struct policy *pol;
	const struct mm_buf *doc;
	double secs;
	uint64_t bytes;
	double cpu;
	pthread_t id;
};

static double wall(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *thr_main(void *arg)
{
	struct thr *t = arg;
	double w0 = wall(), c0 = now();
	do {
		for (uint64_t b = 0; b < (256 << 10); b += t->doc->len) {
			if (mask_once(t->pol, t->doc->data, t->doc->len)) {
				fprintf(stderr, "mask failed\n");
				exit(1);
			}
			t->bytes += t->doc->len;
		}
	} while (wall() - w0 < t->secs);
	t->cpu = now() - c0;
	return NULL;
}

/* The scaling rows: MB/s of all threads together per wall second, and per CPU-second. */
static void scaling(const struct policy *pol, const char *name, const struct mm_buf *doc,
		    const char *list, double secs)
{
	printf("%-36s %-8s %14s %16s %8s\n", "policy (scaling)", "threads", "MB/s (wall)",
	       "MB per CPU-s", "scaling");
	double one = 0;
	for (const char *p = list; *p;) {
		int n = atoi(p);
		if (n >= 1 && n <= 64) {
			struct thr t[64];
			double w0 = wall();
			for (int i = 0; i < n; i++) {
				t[i] = (struct thr){.pol = pol, .doc = doc, .secs = secs};
				pthread_create(&t[i].id, NULL, thr_main, &t[i]);
			}
			uint64_t bytes = 0;
			double cpu = 0;
			for (int i = 0; i < n; i++) {
				pthread_join(t[i].id, NULL);
				bytes += t[i].bytes;
				cpu += t[i].cpu;
			}
			double mbs = bytes / (wall() - w0) / 1e6;
			if (!one)
				one = mbs;
			printf("%-36s %-8d %14.0f %16.0f %7.2fx\n", name, n, mbs, bytes / cpu / 1e6,
			       mbs / one);
		}
		p += strcspn(p, ",");
		p += *p == ',';
	}
}

static long maxrss_kb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* Stream `total` bytes of one huge document generated on the fly; returns MB/s. */
static double stream_big(const struct policy *pol, uint64_t total, long *rss_before,
			 long *rss_after)
{
	static char buf[CHUNK];
	char rec[2048];
	struct mask_opts o = {.policy = pol, .content_type = "application/json"};
	struct mask_stream *s = mask_stream_new(&o);
	uint64_t made = 0;
	size_t n = (size_t)sprintf(buf, "{\"users\":[");
	unsigned i = 0;
	int r = 0;
	*rss_before = maxrss_kb();
	double t0 = now();
	while (!r && made < total) {
		size_t k = gen_user(rec, sizeof(rec), i);
		if (n + k + 2 > CHUNK) {
			r = mask_stream_write(s, buf, n, null_sink, NULL);
			made += n;
			n = 0;
		}
		if (i++)
			buf[n++] = ',';
		memcpy(buf + n, rec, k);
		n += k;
	}
	n += (size_t)sprintf(buf + n, "]}");
	if (!r)
		r = mask_stream_write(s, buf, n, null_sink, NULL);
	if (!r)
		r = mask_stream_finish(s, null_sink, NULL);
	double t = now() - t0;
	*rss_after = maxrss_kb();
	if (r || mask_stream_outcome(s) != MASK_OUTCOME_MASKED) {
		fprintf(stderr, "streaming failed (%d)\n", r);
		exit(1);
	}
	mask_stream_free(s);
	return (made + n) / t / 1e6;
}

int main(int argc, char **argv)
{
	double secs = 1.0;
	uint64_t stream_mb = 1024;
	int only = -1, only_kb = -1;
	const char *file = NULL;
	bool hs = false;
	const char *threads = NULL; /* --threads 1,2: the scaling rows only */
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--hs")) {
			hs = true; /* the one option without a value */
			continue;
		}
		if (i + 1 >= argc)
			break;
		if (!strcmp(argv[i], "--seconds"))
			secs = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--stream-mb"))
			stream_mb = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--policy"))
			only = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--doc"))
			only_kb = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--file"))
			file = argv[i + 1];
		else if (!strcmp(argv[i], "--threads"))
			threads = argv[i + 1];
		else if (!strcmp(argv[i], "--mb"))
			fixed_bytes = (uint64_t)(atof(argv[i + 1]) * 1e6);
		i++;
	}
	setenv("MESHMASK_BENCH_KEY", "bench-key-0123456789abcdef0123456789", 1);
	setenv("MESHMASK_HASH_KEY", "bench-key-0123456789abcdef0123456789", 1);
	setenv("MESHMASK_BENCH_TOKEN_KEY",
	       "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 1);

	struct mm_buf small = {0}, mid = {0}, big = {0};
	if (file) {
		/* the file takes the place of the 64 KB document */
		FILE *f = fopen(file, "rb");
		char rd[65536];
		size_t n;
		if (!f) {
			perror(file);
			return 1;
		}
		while ((n = fread(rd, 1, sizeof(rd), f)) > 0)
			mm_buf_append(&mid, rd, n);
		fclose(f);
		only_kb = 64;
		stream_mb = 0;
	} else {
		gen_doc(&small, 1000);
		gen_doc(&mid, 64 << 10);
		gen_doc(&big, 1 << 20);
	}
	if (hs) {
#ifdef MESHMASK_HAVE_HS
		return hs_eval(mid.data, mid.len, secs);
#else
		fprintf(stderr, "built without libhs\n");
		return 2;
#endif
	}
	if (threads) {
		/* the PII example (the last row) on the 64 KB document unless --policy says */
		size_t k = only >= 0 ? (size_t)only : sizeof(policies) / sizeof(*policies) - 1;
		struct policy *pol = mkpol(policies[k][1]);
		scaling(pol, policies[k][0], &mid, threads, secs);
		policy_unref(pol);
		return 0;
	}
	printf("%-36s %-14s %10s %10s %7s\n", "policy", "document", "mask MB/s", "memcpy MB/s",
	       "ratio");
	for (size_t k = 0; k < sizeof(policies) / sizeof(*policies); k++) {
		if (only >= 0 && (size_t)only != k)
			continue;
		struct policy *pol = mkpol(policies[k][1]);
		const struct mm_buf *docs[] = {&small, &mid, &big};
		const int kbs[] = {1, 64, 1024};
		for (int d = 0; d < 3; d++) {
			if (only_kb >= 0 && only_kb != kbs[d])
				continue;
			double m = mbps_mask(pol, docs[d], secs);
			double c = fixed_bytes ? 1 : mbps_memcpy(docs[d], secs / 4);
			char label[32];
			snprintf(label, sizeof(label), "%zu B", docs[d]->len);
			printf("%-36s %-14s %10.0f %10.0f %6.3f\n", policies[k][0], label, m, c,
			       m / c);
			if (d == 0) {
				/* small documents on one reused stream (a keep-alive connection) */
				reuse = true;
				m = mbps_mask(pol, docs[d], secs);
				reuse = false;
				mask_stream_free(kept);
				kept = NULL;
				snprintf(label, sizeof(label), "%zu B, reused", docs[d]->len);
				printf("%-36s %-14s %10.0f %10.0f %6.3f\n", policies[k][0], label,
				       m, c, m / c);
			}
		}
		policy_unref(pol);
	}
	if (only >= 0 || !stream_mb)
		return 0;
	struct policy *pol = mkpol(policies[0][1]);
	long before, after;
	double m = stream_big(pol, stream_mb << 20, &before, &after);
	printf("streamed %llu MB through the 10-rule policy in 64 KiB chunks: %.0f MB/s, "
	       "peak RSS %ld KiB before, %ld KiB after (+%ld KiB)\n",
	       (unsigned long long)stream_mb, m, before, after, after - before);
	policy_unref(pol);
	mm_buf_free(&small);
	mm_buf_free(&mid);
	mm_buf_free(&big);
	return 0;
}
