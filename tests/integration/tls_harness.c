/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Runs the agent's TLS capture module (agent/tls.c) on its own, exactly as the daemon starts
 * it, with the store, metrics and audit replaced by small stand-ins that print what they get:
 *
 *   tls_harness --policy FILE [--policy FILE...] [--cgroup-root DIR] [--ring-kb N]
 *
 * stdout: "ready" once capture runs, then one line per audit event:
 *   finding policy=P entity=E count=N pid=PID caller=CGROUP dest=ADDR direction=D
 * and at SIGTERM/SIGINT, totals:
 *   records policy=P n=N bytes=B
 *   dropped policy=P n=N
 *   stats records=N bytes=N findings=N dropped=N targets=N covered=N scans=N inplace=0|1
 *   stop available=0|1 stops=N rewritten=N masked=N partial=N watchdog=N stale=N failed=N
 *        seized=N skip_traced=N skip_signal=N skip_denied=N unenforced=N
 * SIGUSR1 prints the stop line at once (the run goes on).
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "audit.h"
#include "metrics.h"
#include "policy.h"
#include "store.h"
#include "tls.h"

enum agent_log_level agent_log_threshold = AGENT_LOG_INFO;

void agent_log(enum agent_log_level level, const char *fmt, ...)
{
	if (level > agent_log_threshold)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "tls_harness: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long findings;

/* Per-policy totals, printed at exit. */
struct total {
	char name[128];
	unsigned long long records, bytes, dropped;
};
static struct total totals[64];

static struct total *total_of(const char *policy)
{
	for (size_t i = 0; i < 64; i++) {
		if (!totals[i].name[0])
			snprintf(totals[i].name, sizeof(totals[i].name), "%s",
				 policy ? policy : "");
		if (!strcmp(totals[i].name, policy ? policy : ""))
			return &totals[i];
	}
	return &totals[63];
}

void metrics_tls_record(const char *policy, uint64_t bytes, bool dropped)
{
	pthread_mutex_lock(&out_lock);
	struct total *t = total_of(policy);
	if (dropped) {
		t->dropped++;
	} else {
		t->records++;
		t->bytes += bytes;
	}
	pthread_mutex_unlock(&out_lock);
}

void metrics_bpf_map(const char *map, uint64_t entries, uint64_t capacity)
{
	(void)map;
	(void)entries;
	(void)capacity;
}

void metrics_tls_finding(const char *policy, const char *entity)
{
	(void)policy;
	(void)entity;
}

/* Stop-rewrite counters: the harness reports them from tls_get_stats instead. */
void metrics_tls_stop(const char *event, uint64_t total)
{
	(void)event;
	(void)total;
}

void metrics_tls_stop_traced(uint64_t n)
{
	(void)n;
}

void audit_tls(const struct audit_who *who, const char *policy, const char *entity, uint64_t count,
	       uint32_t direction)
{
	pthread_mutex_lock(&out_lock);
	findings += count;
	printf("finding policy=%s entity=%s count=%llu pid=%d caller=%s dest=%s direction=%s\n",
	       policy, entity, (unsigned long long)count, who->pid, who->caller ? who->caller : "-",
	       who->dest ? who->dest : "-",
	       direction == POLICY_DIR_REQUEST ? "request" : "response");
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

/* The store: a fixed set of policies loaded from files. */
struct store {
	struct policy_set *set;
};

int store_subscribe(struct store *st, store_change_fn fn, void *ctx)
{
	fn(ctx, st->set);
	return 0;
}

static volatile sig_atomic_t stop, want_stats;

static void on_signal(int sig)
{
	if (sig == SIGUSR1)
		want_stats = 1;
	else
		stop = 1;
}

static void print_stop(struct tls *t)
{
	struct tls_stats s;
	tls_get_stats(t, &s);
	const struct tls_stop_stats *p = &s.stop;
	pthread_mutex_lock(&out_lock);
	printf("stop available=%d stops=%llu rewritten=%llu masked=%llu partial=%llu watchdog=%llu "
	       "stale=%llu failed=%llu seized=%llu skip_traced=%llu skip_signal=%llu "
	       "skip_denied=%llu unenforced=%llu\n",
	       s.stop_available, (unsigned long long)p->stops, (unsigned long long)p->rewritten,
	       (unsigned long long)p->masked, (unsigned long long)p->partial,
	       (unsigned long long)p->watchdog, (unsigned long long)p->stale,
	       (unsigned long long)p->failed, (unsigned long long)p->seized,
	       (unsigned long long)p->skip_traced, (unsigned long long)p->skip_signal,
	       (unsigned long long)p->skip_denied, (unsigned long long)p->unenforced);
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

int main(int argc, char **argv)
{
	struct agent_config cfg = {.bpffs = "/sys/fs/bpf", .log_level = AGENT_LOG_INFO};
	struct policy *pol[16];
	size_t n = 0;
	static const struct option opts[] = {
		{"policy", required_argument, NULL, 'p'},
		{"cgroup-root", required_argument, NULL, 'c'},
		{"debug", no_argument, NULL, 'd'},
		{"ring-kb", required_argument, NULL, 'r'},
		{0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'p' && n < 16) {
			struct policy_errors errs = {0};
			pol[n] = policy_load_file(optarg, &errs);
			if (!pol[n]) {
				policy_errors_print(stderr, optarg, &errs);
				policy_errors_free(&errs);
				return 2;
			}
			n++;
		} else if (c == 'c') {
			cfg.cgroup_root = optarg;
		} else if (c == 'r') {
			cfg.tls_ring_kb = (uint32_t)strtoul(optarg, NULL, 10);
		} else if (c == 'd') {
			agent_log_threshold = AGENT_LOG_DEBUG;
		} else {
			fprintf(stderr, "usage: tls_harness --policy FILE... [--cgroup-root DIR] "
					"[--ring-kb N]\n");
			return 2;
		}
	}
	struct store st = {.set = policy_set_new(pol, n, 1)};
	for (size_t i = 0; i < n; i++)
		policy_unref(pol[i]);
	if (!st.set)
		return 1;

	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);

	/* Only this thread takes the control signals (the module's threads inherit the mask). */
	sigset_t ctl;
	sigemptyset(&ctl);
	sigaddset(&ctl, SIGINT);
	sigaddset(&ctl, SIGTERM);
	sigaddset(&ctl, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &ctl, NULL);
	struct tls *t;
	int r = tls_start(&t, &cfg, &st);
	pthread_sigmask(SIG_UNBLOCK, &ctl, NULL);
	if (r < 0) {
		fprintf(stderr, "tls_harness: tls_start: %s\n", strerror(-r));
		policy_set_unref(st.set);
		return 1;
	}
	pthread_mutex_lock(&out_lock);
	printf("ready\n");
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
	while (!stop) {
		pause();
		if (want_stats) {
			want_stats = 0;
			print_stop(t);
		}
	}

	struct tls_stats s;
	bool inplace = tls_inplace_available(t);
	/* Let the capture thread drain what the clients produced before it stops. */
	usleep(300000);
	print_stop(t);
	tls_get_stats(t, &s);
	tls_stop(t);
	for (size_t i = 0; i < 64 && totals[i].name[0]; i++) {
		printf("records policy=%s n=%llu bytes=%llu\n", totals[i].name, totals[i].records,
		       totals[i].bytes);
		printf("dropped policy=%s n=%llu\n", totals[i].name, totals[i].dropped);
	}
	printf("stats records=%llu bytes=%llu findings=%llu dropped=%llu targets=%llu covered=%llu "
	       "scans=%llu inplace=%d\n",
	       (unsigned long long)s.records, (unsigned long long)s.bytes, findings,
	       (unsigned long long)s.dropped, (unsigned long long)s.targets,
	       (unsigned long long)s.covered, (unsigned long long)s.scans, inplace);
	policy_set_unref(st.set);
	return 0;
}
