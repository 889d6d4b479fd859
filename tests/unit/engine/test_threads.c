/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One compiled policy shared by threads, as the agent shares it between connections: streams
 * masking at the same time (hash rules with prepared HMAC keys, field paths, detectors) give
 * the single-threaded output byte for byte.
 */
#include <pthread.h>

#include "engine_test.h"

#define THREADS 4
#define ROUNDS 150

static const char *rules =
	"[{\"name\":\"h\",\"fields\":[\"$..token\"],\"action\":{\"type\":\"hash\","
	"\"keyEnv\":\"MESHMASK_TEST_KEY\",\"prefix\":\"t:\"}},"
	"{\"name\":\"pan\",\"fields\":[\"$.users[*].card.number\"],\"action\":{\"type\":\"mask\","
	"\"keepLast\":4}},"
	"{\"name\":\"mail\",\"entities\":[\"EMAIL_ADDRESS\"],\"action\":{\"type\":\"hash\","
	"\"keyEnv\":\"MESHMASK_TEST_KEY\",\"length\":12}},"
	"{\"name\":\"ssn\",\"entities\":[\"US_SSN\",\"PHONE_NUMBER\"],\"action\":{\"type\":"
	"\"mask\"}}]";

static const char *doc =
	"{\"users\":[{\"token\":\"abc\",\"email\":\"a.b@example.com\",\"card\":{\"number\":"
	"\"4111111111111111\"},\"note\":\"ssn 536-22-8105, call +1 415 555 0100\"},"
	"{\"token\":12345,\"email\":\"x@example.org\",\"card\":{\"number\":\"5500-0000-0000-0004\"}"
	","
	"\"note\":\"mail c.d@example.net\"}]}\n";

static struct policy *pol;
static char *want;

static void *worker(void *arg)
{
	long *bad = arg;
	for (int i = 0; i < ROUNDS; i++) {
		char *got = run1(pol, "application/json", doc, NULL);
		*bad += !got || strcmp(got, want) != 0;
		free(got);
	}
	return NULL;
}

int main(void)
{
	setenv("MESHMASK_TEST_KEY", "thread-test-key", 1);
	pol = mkpol(rules, "enforce", "block");
	want = run1(pol, "application/json", doc, NULL);
	ok(want && !strstr(want, "a.b@example.com") && !strstr(want, "536-22-8105") &&
		   strstr(want, "\"t:") && strstr(want, "1111\""),
	   "reference output is masked and hashed");

	pthread_t th[THREADS];
	long bad[THREADS] = {0};
	int started = 0;
	for (int t = 0; t < THREADS; t++)
		started += pthread_create(&th[t], NULL, worker, &bad[t]) == 0;
	long total = 0;
	for (int t = 0; t < started; t++) {
		pthread_join(th[t], NULL);
		total += bad[t];
	}
	is_int(started, THREADS, "threads started");
	is_int(total, 0, "%d threads x %d streams on one policy: same output as one thread",
	       THREADS, ROUNDS);
	free(want);
	policy_unref(pol);
	return tap_done();
}
