/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Audit log: JSON lines built with jansson (so identities and names are escaped properly),
 * queued (bounded) and written by a writer thread of their own, with one write(2) each on an
 * O_APPEND descriptor so that lines never interleave: a slow sink never stalls the data path's
 * workers, it costs at most dropped lines, counted like the rate limit's.
 * Only names and counts go in: the engine's statistics never carry a value from traffic, and
 * this module never sees one. A token bucket bounds the rate; what it drops is counted and
 * summarised in the next line written.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "audit.h"
#include "detect.h"
#include "mask.h"
#include "metrics.h"

/* Lines queued for the writer: at most this many (beyond, dropped and counted). */
#define AUDIT_QUEUE_MAX 8192

struct qline {
	struct qline *next;
	size_t len;
	char text[];
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queued = PTHREAD_COND_INITIALIZER, drained = PTHREAD_COND_INITIALIZER;
static struct qline *q_head, *q_tail;
static size_t q_len;
static bool writer_running, writer_stop, writer_busy;
static pthread_t writer;
static int audit_fd = -1;
static double rate_per_sec = 200, burst = 1000, tokens = 1000;
static struct timespec last_refill;
static uint64_t suppressed;

static void write_all(int fd, const char *p, size_t n);

/* The writer thread: takes the queue whole and writes it without the lock. */
static void *writer_main(void *arg)
{
	pthread_mutex_lock(&lock);
	for (;;) {
		while (!q_head && !writer_stop)
			pthread_cond_wait(&queued, &lock);
		if (!q_head && writer_stop)
			break;
		struct qline *l = q_head;
		int fd = audit_fd;
		q_head = q_tail = NULL;
		q_len = 0;
		writer_busy = true;
		pthread_mutex_unlock(&lock);
		while (l) {
			struct qline *next = l->next;
			if (fd >= 0)
				write_all(fd, l->text, l->len);
			free(l);
			l = next;
		}
		pthread_mutex_lock(&lock);
		writer_busy = false;
		pthread_cond_broadcast(&drained);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

int audit_open(const char *path)
{
	int fd;
	if (!path || !strcmp(path, "-"))
		fd = STDOUT_FILENO;
	else if ((fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640)) < 0)
		return -errno;
	pthread_mutex_lock(&lock);
	if (audit_fd > STDERR_FILENO)
		close(audit_fd);
	audit_fd = fd;
	tokens = burst;
	clock_gettime(CLOCK_MONOTONIC, &last_refill);
	int r = 0;
	if (!writer_running) {
		writer_stop = false;
		/* Signals are the main thread's. */
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		r = -pthread_create(&writer, NULL, writer_main, NULL);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		writer_running = r == 0;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

void audit_flush(void)
{
	pthread_mutex_lock(&lock);
	while (writer_running && (q_head || writer_busy))
		pthread_cond_wait(&drained, &lock);
	pthread_mutex_unlock(&lock);
}

void audit_set_rate(double lines_per_sec, double burst_lines)
{
	pthread_mutex_lock(&lock);
	rate_per_sec = lines_per_sec;
	burst = burst_lines;
	tokens = burst_lines;
	clock_gettime(CLOCK_MONOTONIC, &last_refill);
	pthread_mutex_unlock(&lock);
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* a broken sink must not stop masking */
		p += w;
		n -= (size_t)w;
	}
}

/*
 * Whether one more event may be written now (the rate limit's token bucket); a refused one is
 * counted as suppressed. Asked before an event is built, so that events over the rate cost
 * nothing but this. Locked.
 */
static bool admit_locked(void)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double dt = (double)(now.tv_sec - last_refill.tv_sec) +
		    (double)(now.tv_nsec - last_refill.tv_nsec) / 1e9;
	last_refill = now;
	tokens += dt * rate_per_sec;
	if (tokens > burst)
		tokens = burst;
	if (audit_fd < 0 || tokens < 1) {
		if (audit_fd >= 0) {
			suppressed++;
			metrics_audit_suppressed(1);
		}
		return false;
	}
	tokens -= 1;
	return true;
}

/* Write one admitted event (stolen); locked. */
static void emit_locked(json_t *ev)
{
	struct timespec wall;
	clock_gettime(CLOCK_REALTIME, &wall);
	struct tm tm;
	gmtime_r(&wall.tv_sec, &tm);
	char ts[96];
	snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		 wall.tv_nsec / 1000000);
	json_object_set_new(ev, "time", json_string(ts));
	if (suppressed) {
		json_object_set_new(ev, "suppressedBefore", json_integer((json_int_t)suppressed));
		suppressed = 0;
	}
	char *line = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(ev);
	if (!line)
		return;
	size_t n = strlen(line);
	struct qline *l = q_len < AUDIT_QUEUE_MAX ? malloc(sizeof(*l) + n + 1) : NULL;
	if (!l) {
		suppressed++;
		metrics_audit_suppressed(1);
		free(line);
		return;
	}
	memcpy(l->text, line, n);
	l->text[n] = '\n';
	l->len = n + 1;
	l->next = NULL;
	free(line);
	if (q_tail)
		q_tail->next = l;
	else
		q_head = l;
	q_tail = l;
	q_len++;
	pthread_cond_signal(&queued);
}

static json_t *event_new(const char *kind, const struct audit_who *who, const char *policy,
			 uint32_t direction)
{
	json_t *ev = json_object();
	if (!ev)
		return NULL;
	json_object_set_new(ev, "time", json_null()); /* first key; filled when written */
	json_object_set_new(ev, "event", json_string(kind));
	json_object_set_new(ev, "policy", json_string(policy ? policy : ""));
	json_object_set_new(ev, "direction",
			    json_string(direction == POLICY_DIR_REQUEST ? "request" : "response"));
	if (who) {
		if (who->caller)
			json_object_set_new(ev, "caller", json_string(who->caller));
		if (who->cgroup_id)
			json_object_set_new(ev, "cgroupId",
					    json_integer((json_int_t)who->cgroup_id));
		if (who->pid > 0)
			json_object_set_new(ev, "pid", json_integer(who->pid));
		if (who->dest)
			json_object_set_new(ev, "destination", json_string(who->dest));
	}
	return ev;
}

/* The message's protocol, and its gRPC method when a descriptor set names it. */
static void with_protocol(json_t *ev, const struct http_message_info *info)
{
	json_object_set_new(ev, "protocol",
			    json_string(info && info->protocol ? info->protocol : "http1"));
	if (info && info->method)
		json_object_set_new(ev, "method", json_string(info->method));
}

struct rule_event_ctx {
	const struct audit_who *who;
	const struct http_message_info *info;
};

/* One rule's count of values in a message (http_message_value_fn). lock held. */
static void rule_event_locked(void *ctx, const struct policy_rule *r, const char *entity,
			      uint64_t count)
{
	const struct rule_event_ctx *rc = ctx;
	const struct audit_who *who = rc->who;
	const struct http_message_info *info = rc->info;
	const struct policy *p = info->policy;
	uint32_t direction = info->direction;
	json_t *ev = admit_locked() ? event_new("mask", who, p->name, direction) : NULL;
	if (!ev)
		return;
	json_object_set_new(ev, "rule", json_string(r->name ? r->name : ""));
	json_object_set_new(ev, "entity", entity ? json_string(entity) : json_null());
	json_object_set_new(ev, "action", json_string(policy_action_name(r->action.type)));
	json_object_set_new(ev, "mode", json_string(policy_mode_name(p->mode)));
	json_object_set_new(ev, "count", json_integer((json_int_t)count));
	with_protocol(ev, info);
	emit_locked(ev);
}

void audit_message(const struct audit_who *who, const struct http_message_info *info)
{
	if (!info || !info->policy)
		return;
	const struct policy *p = info->policy;
	pthread_mutex_lock(&lock);
	struct rule_event_ctx rc = {who, info};
	http_message_values(info, rule_event_locked, &rc);
	if (info->tunnel != HTTP_TUNNEL_NONE) {
		json_t *ev =
			admit_locked() ? event_new("tunnel", who, p->name, info->direction) : NULL;
		if (ev) {
			json_object_set_new(ev, "kind",
					    json_string(info->upgrade ? "upgrade" : "connect"));
			json_object_set_new(ev, "action",
					    json_string(http_tunnel_name(info->tunnel)));
			with_protocol(ev, info);
			emit_locked(ev);
		}
	}
	if (info->outcome != MASK_OUTCOME_MASKED || info->reason != MM_REASON_NONE) {
		json_t *ev =
			admit_locked() ? event_new("error", who, p->name, info->direction) : NULL;
		if (ev) {
			json_object_set_new(ev, "outcome",
					    json_string(mask_outcome_name(info->outcome)));
			json_object_set_new(ev, "reason",
					    json_string(mm_reason_name(info->reason)));
			if (info->reply_status)
				json_object_set_new(ev, "answered",
						    json_integer(info->reply_status));
			with_protocol(ev, info);
			emit_locked(ev);
		}
	}
	pthread_mutex_unlock(&lock);
}

void audit_tls(const struct audit_who *who, const char *policy, const char *entity, uint64_t count,
	       uint32_t direction)
{
	pthread_mutex_lock(&lock);
	json_t *ev = admit_locked() ? event_new("tls_finding", who, policy, direction) : NULL;
	if (ev) {
		json_object_set_new(ev, "entity", json_string(entity ? entity : ""));
		json_object_set_new(ev, "count", json_integer((json_int_t)count));
		emit_locked(ev);
	}
	pthread_mutex_unlock(&lock);
}

void audit_detokenize(const struct audit_who *who, const char *policy, const char *rule,
		      uint64_t values, uint64_t failed, int status)
{
	pthread_mutex_lock(&lock);
	json_t *ev =
		audit_fd >= 0 ? event_new("detokenize", who, policy, POLICY_DIR_REQUEST) : NULL;
	if (ev) {
		json_object_del(ev, "direction");
		if (!policy)
			json_object_set_new(ev, "policy", json_null());
		json_object_set_new(ev, "rule", rule ? json_string(rule) : json_null());
		json_object_set_new(ev, "count", json_integer((json_int_t)values));
		json_object_set_new(ev, "failed", json_integer((json_int_t)failed));
		json_object_set_new(ev, "status", json_integer(status));
		emit_locked(ev);
	}
	pthread_mutex_unlock(&lock);
}

void audit_close(void)
{
	pthread_mutex_lock(&lock);
	bool join = writer_running;
	writer_stop = true;
	pthread_cond_signal(&queued);
	pthread_mutex_unlock(&lock);
	if (join)
		pthread_join(writer, NULL); /* it writes what is queued first */
	pthread_mutex_lock(&lock);
	writer_running = false;
	if (audit_fd > STDERR_FILENO)
		close(audit_fd);
	audit_fd = -1;
	pthread_mutex_unlock(&lock);
}
