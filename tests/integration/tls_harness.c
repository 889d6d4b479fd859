/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Runs the agent's TLS capture module (agent/tls/) on its own, exactly as the daemon starts
 * it, with the real store (policies put from files), metrics and audit log (read back here):
 *
 *   tls_harness --policy FILE [--policy FILE...] [--cgroup-root DIR] [--ring-kb N]
 *
 * stdout: "ready" once capture runs, then one line per audit event:
 *   finding policy=P entity=E count=N pid=PID caller=CGROUP dest=ADDR direction=D
 * and at SIGTERM/SIGINT, totals:
 *   records policy=P n=N bytes=B
 *   dropped policy=P n=N
 *   stats records=N bytes=N findings=N dropped=N targets=N covered=N scans=N inplace=0|1
 *         notified=N attaches=N late=N unprobed_io=N limit=N body_files=N window_ms_mean=F
 *         window_ms_max=F
 *   stop available=0|1 stops=N rewritten=N masked=N partial=N watchdog=N stale=N failed=N
 *        seized=N skip_traced=N skip_signal=N skip_denied=N unenforced=N
 * SIGUSR1 prints the stop line at once (the run goes on).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "audit.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"
#include "store.h"
#include "tls.h"

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long findings;

/*
 * Findings: the real audit log, written to a pipe this thread reads, printed as one line each
 * as they come (the scripts wait for them).
 */
static void *audit_reader(void *arg)
{
	FILE *in = fdopen((int)(intptr_t)arg, "r");
	char *line = NULL;
	size_t cap = 0;
	while (in && getline(&line, &cap, in) > 0) {
		json_t *ev = json_loads(line, 0, NULL);
		const char *kind = json_string_value(json_object_get(ev, "event"));
		if (kind && !strcmp(kind, "tls_finding")) {
			const char *caller = json_string_value(json_object_get(ev, "caller"));
			const char *dest = json_string_value(json_object_get(ev, "destination"));
			json_int_t count = json_integer_value(json_object_get(ev, "count"));
			pthread_mutex_lock(&out_lock);
			findings += (unsigned long long)count;
			printf("finding policy=%s entity=%s count=%lld pid=%lld caller=%s dest=%s "
			       "direction=%s\n",
			       json_string_value(json_object_get(ev, "policy")),
			       json_string_value(json_object_get(ev, "entity")), (long long)count,
			       (long long)json_integer_value(json_object_get(ev, "pid")),
			       caller ? caller : "-", dest ? dest : "-",
			       json_string_value(json_object_get(ev, "direction")));
			fflush(stdout);
			pthread_mutex_unlock(&out_lock);
		}
		json_decref(ev);
	}
	free(line);
	if (in)
		fclose(in);
	return NULL;
}

/* The value of `name{policy="<policy>"}` in the rendered metrics, 0 if absent. */
static unsigned long long metric(const char *text, const char *name, const char *policy)
{
	char key[256];
	snprintf(key, sizeof(key), "\n%s{policy=\"%s\"} ", name, policy);
	const char *p = strstr(text, key);
	return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

/* Per-policy record totals from the real metrics, printed at exit. */
static void print_records(char **names, size_t n)
{
	struct mm_buf m = {0};
	if (metrics_render(&m) < 0 || mm_buf_append(&m, "", 1) < 0) {
		mm_buf_free(&m);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		printf("records policy=%s n=%llu bytes=%llu\n", names[i],
		       metric(m.data, "meshmask_tls_records_total", names[i]),
		       metric(m.data, "meshmask_tls_bytes_scanned_total", names[i]));
		printf("dropped policy=%s n=%llu\n", names[i],
		       metric(m.data, "meshmask_tls_records_dropped_total", names[i]));
	}
	mm_buf_free(&m);
}

/* Log lines on stderr, prefixed with the harness's name. */
static void log_line(enum agent_log_level level, const char *line)
{
	fprintf(stderr, "tls_harness: %s\n", line);
}

static char *policy_names[64];
static size_t n_policies;

/* Validate the policy file at `path` and put it into the store under its own name. 0 or -1. */
static int put_policy(struct store *st, const char *path)
{
	struct policy_errors errs = {0};
	struct policy *p = policy_load_file(path, &errs);
	if (!p) {
		policy_errors_print(stderr, path, &errs);
		policy_errors_free(&errs);
		return -1;
	}
	FILE *f = fopen(path, "r");
	char *text = NULL;
	size_t cap = 0;
	ssize_t len = f ? getdelim(&text, &cap, 0, f) : -1;
	char etag[65];
	int r = len < 0 ? -EIO : store_put(st, p->name, text, (size_t)len, NULL, &errs, etag);
	if (r < 0) {
		fprintf(stderr, "tls_harness: %s: %s\n", path, strerror(-r));
		policy_errors_print(stderr, path, &errs);
	}
	policy_errors_free(&errs);
	if (r >= 0 && n_policies < 64)
		policy_names[n_policies++] = strdup(p->name);
	policy_unref(p);
	free(text);
	if (f)
		fclose(f);
	return r < 0 ? -1 : 0;
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
	struct tls_config cfg = {0};
	struct store *st = NULL;
	struct store_config sc = {0}; /* policies come from --policy, not persisted */
	if (store_open(&st, &sc) < 0)
		return 1;
	agent_log_set_sink(log_line);
	int pfd[2];
	char audit_path[64];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return 1;
	/* The capture thread writes audit lines synchronously: room for bursts. */
	fcntl(pfd[1], F_SETPIPE_SZ, 1 << 20);
	snprintf(audit_path, sizeof(audit_path), "/proc/self/fd/%d", pfd[1]);
	if (metrics_init() < 0 || audit_open(audit_path) < 0)
		return 1;
	close(pfd[1]);
	audit_set_rate(1e9, 1e9);
	pthread_t reader;
	if (pthread_create(&reader, NULL, audit_reader, (void *)(intptr_t)pfd[0]))
		return 1;
	static const struct option opts[] = {
		{"policy", required_argument, NULL, 'p'},
		{"cgroup-root", required_argument, NULL, 'c'},
		{"debug", no_argument, NULL, 'd'},
		{"ring-kb", required_argument, NULL, 'r'},
		{"stop-delay-ms", required_argument, NULL, 's'},
		{"node-wide", no_argument, NULL, 'n'},
		{"public-entry", no_argument, NULL, 'e'},
		{0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'p') {
			if (put_policy(st, optarg) < 0)
				return 2;
		} else if (c == 'c') {
			cfg.cgroup_root = optarg;
		} else if (c == 'r') {
			cfg.ring_kb = (uint32_t)strtoul(optarg, NULL, 10);
		} else if (c == 'n') {
			cfg.node_wide = true;
		} else if (c == 'e') {
			cfg.public_entry = true;
		} else if (c == 's') {
			cfg.stop_delay_ms = (unsigned)strtoul(optarg, NULL, 10);
		} else if (c == 'd') {
			agent_log_set_level(AGENT_LOG_DEBUG);
		} else {
			fprintf(stderr, "usage: tls_harness --policy FILE... [--cgroup-root DIR] "
					"[--ring-kb N] [--stop-delay-ms N] [--node-wide] "
					"[--public-entry]\n");
			return 2;
		}
	}

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
	int r = tls_start(&t, &cfg, st);
	pthread_sigmask(SIG_UNBLOCK, &ctl, NULL);
	if (r < 0) {
		fprintf(stderr, "tls_harness: tls_start: %s\n", strerror(-r));
		store_close(st);
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
	audit_close(); /* the reader sees the end of the pipe once it printed every finding */
	pthread_join(reader, NULL);
	print_records(policy_names, n_policies);
	printf("stats records=%llu bytes=%llu findings=%llu dropped=%llu targets=%llu covered=%llu "
	       "scans=%llu inplace=%d notified=%llu attaches=%llu late=%llu unprobed_io=%llu "
	       "limit=%llu body_files=%llu window_ms_mean=%.2f window_ms_max=%.2f\n",
	       (unsigned long long)s.records, (unsigned long long)s.bytes, findings,
	       (unsigned long long)s.dropped, (unsigned long long)s.targets,
	       (unsigned long long)s.covered, (unsigned long long)s.scans, inplace,
	       (unsigned long long)s.notified, (unsigned long long)s.probes.attaches,
	       (unsigned long long)s.probes.late, (unsigned long long)s.probes.unprobed_io,
	       (unsigned long long)s.probes.limit, (unsigned long long)s.probes.body_files,
	       s.notified ? s.window_ns_sum / 1e6 / s.notified : 0, s.window_ns_max / 1e6);
	store_close(st);
	for (size_t i = 0; i < n_policies; i++)
		free(policy_names[i]);
	return 0;
}
