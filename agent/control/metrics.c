/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Prometheus metrics: one registry of series (family + label values) in a hash table. The data
 * path's workers update them without a lock: a series, once published, is never moved or freed
 * (the process exits with them), so a lookup walks the hash chain with acquire loads and an
 * update is one atomic add. Only creating a series (a label set seen for the first time) and
 * rendering take the registry's mutex, so a scrape never holds up a worker that updates series
 * that exist. The number of series is capped: label values come from
 * policies (bounded by their size), and a cap keeps a pathological policy set from growing
 * the scrape without bound; what is dropped is counted.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect.h"
#include "metrics.h"

#define METRICS_MAX_LABELS 5
#define METRICS_MAX_SERIES 10000
#define METRICS_HASH_SIZE 1024

enum metrics_type { MT_COUNTER, MT_GAUGE, MT_HISTOGRAM };

enum metrics_family {
	F_VALUES_MASKED,
	F_VALUES_OBSERVED,
	F_MESSAGES,
	F_BYTES_SCANNED,
	F_BYTES_IN,
	F_BYTES_OUT,
	F_FALLBACKS,
	F_BLOCKED,
	F_PASSED,
	F_TUNNELS,
	F_ERRORS,
	F_DURATION,
	F_FLOWS_STEERED,
	F_FLOWS_PASSED,
	F_FLOWS_REFUSED,
	F_TLS_RECORDS,
	F_TLS_DROPPED,
	F_TLS_BYTES,
	F_TLS_FINDINGS,
	F_TLS_STOP,
	F_TLS_STOP_SEIZED,
	F_SPLICE_BYTES,
	F_PASSTHROUGH,
	F_SPLICE_MSGS,
	F_SPLICE_SOCKS,
	F_RELOADS,
	F_REJECTIONS,
	F_POLICIES,
	F_APPLY,
	F_DRYRUN,
	F_DRYRUN_VALUES,
	F_ADMIN,
	F_ADMIN_TIMEOUTS,
	F_MAP_ENTRIES,
	F_MAP_CAPACITY,
	F_AUDIT_SUPPRESSED,
	F_EXISTING_CONNS,
	F_CALLERS_UNSTEERED,
	F_CONN_CAPS,
	F_WORKER_CONNS,
	F_WORKER_ACTIVE,
	F_DETOKENIZE,
	F_DETOKENIZE_VALUES,
	F_TLS_UNCAPTURED,
	F__COUNT
};

struct metrics_family_def {
	const char *name;
	const char *help;
	enum metrics_type type;
	const char *labels[METRICS_MAX_LABELS + 1]; /* NULL-terminated */
};

static const struct metrics_family_def families[F__COUNT] = {
	[F_VALUES_MASKED] =
		{"meshmask_values_masked_total",
		 "Values the masking engine changed, by policy, rule, entity and action.",
		 MT_COUNTER,
		 {"policy", "rule", "entity", "action", "direction"}},
	[F_VALUES_OBSERVED] = {"meshmask_values_observed_total",
			       "Values a policy in observe mode would have changed.",
			       MT_COUNTER,
			       {"policy", "rule", "entity", "action", "direction"}},
	[F_MESSAGES] =
		{"meshmask_messages_total",
		 "HTTP requests and responses processed under a policy, by protocol (http1, "
		 "h2, grpc) and gRPC method (from the policy's descriptor sets, else empty).",
		 MT_COUNTER,
		 {"policy", "direction", "protocol", "method"}},
	[F_BYTES_SCANNED] = {"meshmask_bytes_scanned_total",
			     "Decoded body bytes the masking engine looked at.",
			     MT_COUNTER,
			     {"policy", "direction"}},
	[F_BYTES_IN] = {"meshmask_body_bytes_in_total",
			"Body bytes received as on the wire.",
			MT_COUNTER,
			{"policy", "direction"}},
	[F_BYTES_OUT] = {"meshmask_body_bytes_out_total",
			 "Body bytes sent on as on the wire.",
			 MT_COUNTER,
			 {"policy", "direction"}},
	[F_FALLBACKS] = {"meshmask_fallbacks_total",
			 "Bodies that could not be parsed and were entity-scanned as raw text.",
			 MT_COUNTER,
			 {"policy", "direction", "reason"}},
	[F_BLOCKED] = {"meshmask_blocked_total",
		       "Messages refused: onError: block, tunnels: block, or bytes the agent "
		       "cannot frame on a covered connection.",
		       MT_COUNTER,
		       {"policy", "direction", "reason"}},
	[F_PASSED] =
		{"meshmask_passed_unmasked_total",
		 "Bodies or streams passed unmasked because the policy says so (onError: pass, "
		 "tunnels: pass).",
		 MT_COUNTER,
		 {"policy", "direction", "reason"}},
	[F_TUNNELS] = {"meshmask_tunnels_total",
		       "Protocol switches on covered connections: kind upgrade or connect; action "
		       "stripped (Upgrade removed), refused or opened.",
		       MT_COUNTER,
		       {"policy", "kind", "action"}},
	[F_ERRORS] = {"meshmask_errors_total",
		      "Errors met while masking, by reason.",
		      MT_COUNTER,
		      {"policy", "direction", "reason"}},
	[F_DURATION] = {"meshmask_mask_duration_seconds",
			"Time spent masking one body.",
			MT_HISTOGRAM,
			{"policy", "direction"}},
	[F_FLOWS_STEERED] = {"meshmask_flows_steered_total",
			     "Flagged connections proxied through the agent.",
			     MT_COUNTER,
			     {"policy"}},
	[F_FLOWS_PASSED] = {"meshmask_flows_passed_total",
			    "Flagged connections passed unmasked (failureMode open).",
			    MT_COUNTER,
			    {"policy", "reason"}},
	[F_FLOWS_REFUSED] = {"meshmask_flows_refused_total",
			     "Flagged connections refused (failureMode closed).",
			     MT_COUNTER,
			     {"policy", "reason"}},
	[F_TLS_RECORDS] = {"meshmask_tls_records_total",
			   "TLS plaintext records captured.",
			   MT_COUNTER,
			   {"policy"}},
	[F_TLS_DROPPED] = {"meshmask_tls_records_dropped_total",
			   "TLS plaintext records lost before inspection.",
			   MT_COUNTER,
			   {"policy"}},
	[F_TLS_BYTES] = {"meshmask_tls_bytes_scanned_total",
			 "TLS plaintext bytes inspected.",
			 MT_COUNTER,
			 {"policy"}},
	[F_TLS_FINDINGS] = {"meshmask_tls_findings_total",
			    "Sensitive values found in TLS plaintext.",
			    MT_COUNTER,
			    {"policy", "entity"}},
	[F_TLS_STOP] =
		{"meshmask_tls_stop_events_total",
		 "TLS stop-rewrite enforcement: threads held, reads rewritten, values masked, "
		 "partial values, watchdog resumes, skipped processes, reads not held.",
		 MT_COUNTER,
		 {"event"}},
	[F_TLS_UNCAPTURED] =
		{"meshmask_tls_uncaptured_total",
		 "TLS capture gaps: socket I/O of covered processes before their probes "
		 "(before_probes), processes not probed (probe_limit).",
		 MT_COUNTER,
		 {"policy", "reason"}},
	[F_TLS_STOP_SEIZED] = {"meshmask_tls_stop_traced_processes",
			       "Processes under the stop-rewrite tracer now.",
			       MT_GAUGE,
			       {NULL}},
	[F_SPLICE_BYTES] =
		{"meshmask_splice_bytes_total",
		 "Response bytes the agent passed to apps through the sk_msg splice (--splice).",
		 MT_COUNTER,
		 {NULL}},
	[F_PASSTHROUGH] = {"meshmask_passthrough_spliced_bytes_total",
			   "Bytes no rule covers (uncovered bodies, tunnels) moved from socket to "
			   "socket by splice(2), never copied through the agent.",
			   MT_COUNTER,
			   {"policy", "direction"}},
	[F_SPLICE_MSGS] =
		{"meshmask_splice_messages_total",
		 "Agent sends seen by the splice, redirected into the app socket or passed to "
		 "TCP (no spliced peer).",
		 MT_COUNTER,
		 {"verdict"}},
	[F_SPLICE_SOCKS] = {"meshmask_splice_sockets_total",
			    "Sockets put into the splice maps, app and agent ends.",
			    MT_COUNTER,
			    {"side"}},
	[F_RELOADS] = {"meshmask_policy_reloads_total",
		       "Policy changes applied, by source (file or api).",
		       MT_COUNTER,
		       {"source"}},
	[F_REJECTIONS] = {"meshmask_policy_rejections_total",
			  "Policy documents refused as invalid, by source (file or api).",
			  MT_COUNTER,
			  {"source"}},
	[F_POLICIES] = {"meshmask_policies",
			"Policies on this node by source (file, crd, admin) and state (in_force, "
			"refused: the current version is not in force).",
			MT_GAUGE,
			{"source", "state"}},
	[F_APPLY] = {"meshmask_policy_apply_seconds",
		     "Time from a policy resource's change to the agent applying it (from the "
		     "meshmask.io/changed-at annotation when present, else from the watch event).",
		     MT_HISTOGRAM,
		     {"source"}},
	[F_DRYRUN] = {"meshmask_dryrun_total",
		      "Dry-runs of the engine through the admin API (not traffic).",
		      MT_COUNTER,
		      {"policy"}},
	[F_DRYRUN_VALUES] = {"meshmask_dryrun_values_total",
			     "Values changed by admin API dry-runs (not traffic).",
			     MT_COUNTER,
			     {"policy"}},
	[F_ADMIN] = {"meshmask_admin_requests_total",
		     "Admin API requests by method and status code.",
		     MT_COUNTER,
		     {"method", "code"}},
	[F_ADMIN_TIMEOUTS] = {"meshmask_admin_request_timeouts_total",
			      "Admin API connections closed because a request was not received "
			      "and answered within --admin-request-timeout.",
			      MT_COUNTER,
			      {NULL}},
	[F_MAP_ENTRIES] = {"meshmask_bpf_map_entries", "Entries in a BPF map.", MT_GAUGE, {"map"}},
	[F_MAP_CAPACITY] = {"meshmask_bpf_map_capacity",
			    "Maximum entries of a BPF map.",
			    MT_GAUGE,
			    {"map"}},
	[F_AUDIT_SUPPRESSED] = {"meshmask_audit_suppressed_total",
				"Audit lines dropped by the audit rate limit.",
				MT_COUNTER,
				{NULL}},
	[F_EXISTING_CONNS] = {"meshmask_existing_connections_total",
			      "Connections that bypassed the agent, found when a policy started "
			      "covering their caller and destination: reset, or kept "
			      "(existingConnections: keep).",
			      MT_COUNTER,
			      {"policy", "action"}},
	[F_CALLERS_UNSTEERED] = {"meshmask_callers_unsteered",
				 "Covered caller cgroups that could not be steered (steer_callers "
				 "full): their flows follow failureMode.",
				 MT_GAUGE,
				 {NULL}},
	[F_CONN_CAPS] = {"meshmask_connections_over_cap_total",
			 "Steered connections past the node's or a pod's connection cap, by caller: "
			 "refused (failureMode closed) or relayed unmasked (open).",
			 MT_COUNTER,
			 {"policy", "caller", "cap", "action"}},
	[F_WORKER_CONNS] = {"meshmask_worker_connections_total",
			    "Steered connections accepted, per data-path worker thread.",
			    MT_COUNTER,
			    {"worker"}},
	[F_WORKER_ACTIVE] = {"meshmask_worker_connections_active",
			     "Steered connections open now, per data-path worker thread.",
			     MT_GAUGE,
			     {"worker"}},
	[F_DETOKENIZE] = {"meshmask_detokenize_requests_total",
			  "Admin API detokenize calls by status code (refused ones included).",
			  MT_COUNTER,
			  {"code"}},
	[F_DETOKENIZE_VALUES] =
		{"meshmask_detokenize_values_total",
		 "Values sent to the admin API detokenize call, by policy and rule: "
		 "restored, or failed (not a token of that rule).",
		 MT_COUNTER,
		 {"policy", "rule", "result"}},
};

/* Upper bounds of the masking-time histogram, in seconds. */
static const double duration_buckets[] = {0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
					  0.0025,  0.005,   0.01,   0.025,   0.05,   0.1,
					  0.25,	   0.5,	    1,	    2.5};
#define N_BUCKETS (sizeof(duration_buckets) / sizeof(duration_buckets[0]))

struct series {
	struct series *hnext; /* hash chain */
	struct series *fnext; /* family list, in creation order */
	enum metrics_family fam;
	uint64_t hash;
	char *labels[METRICS_MAX_LABELS];
	uint64_t value; /* counter or gauge */
	/* histogram */
	uint64_t buckets[N_BUCKETS];
	uint64_t count;
	uint64_t sum_ns; /* the observations' sum, in nanoseconds */
};

/* Guards creation (the chains, the family lists, the counts below) and rendering. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct series *table[METRICS_HASH_SIZE];
static struct series *fam_head[F__COUNT], *fam_tail[F__COUNT];
static size_t n_series;
static uint64_t series_dropped;

static size_t family_nlabels(enum metrics_family f)
{
	size_t n = 0;
	while (n < METRICS_MAX_LABELS && families[f].labels[n])
		n++;
	return n;
}

static uint64_t series_hash(enum metrics_family f, const char *const *labels, size_t n)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)f;
	for (size_t i = 0; i < n; i++) {
		for (const unsigned char *p = (const unsigned char *)labels[i]; *p; p++)
			h = (h ^ *p) * 1099511628211ull;
		h = (h ^ 0x1f) * 1099511628211ull;
	}
	return h;
}

/* The published series for these label values, or NULL. Any thread, no lock. */
static struct series *series_find(enum metrics_family f, const char *const *labels, size_t n,
				  uint64_t h)
{
	struct series *s = __atomic_load_n(&table[h % METRICS_HASH_SIZE], __ATOMIC_ACQUIRE);
	for (; s; s = s->hnext) {
		if (s->hash != h || s->fam != f)
			continue;
		size_t i = 0;
		while (i < n && !strcmp(s->labels[i], labels[i] ? labels[i] : ""))
			i++;
		if (i == n)
			return s;
	}
	return NULL;
}

/* The series for these label values, created if needed; NULL when over the cap. Any thread. */
static struct series *series_get(enum metrics_family f, const char *const *labels)
{
	size_t n = family_nlabels(f);
	uint64_t h = series_hash(f, labels, n);
	struct series *s = series_find(f, labels, n, h);
	if (s)
		return s;
	pthread_mutex_lock(&lock);
	s = series_find(f, labels, n, h); /* another thread may have made it meanwhile */
	if (s || n_series >= METRICS_MAX_SERIES || !(s = calloc(1, sizeof(*s)))) {
		if (!s)
			series_dropped++;
		pthread_mutex_unlock(&lock);
		return s;
	}
	for (size_t i = 0; i < n; i++) {
		s->labels[i] = strdup(labels[i] ? labels[i] : "");
		if (!s->labels[i]) {
			while (i--)
				free(s->labels[i]);
			free(s);
			series_dropped++;
			pthread_mutex_unlock(&lock);
			return NULL;
		}
	}
	s->fam = f;
	s->hash = h;
	struct series **slot = &table[h % METRICS_HASH_SIZE];
	s->hnext = *slot;
	__atomic_store_n(slot, s, __ATOMIC_RELEASE); /* complete before readers can see it */
	if (fam_tail[f])
		fam_tail[f]->fnext = s;
	else
		fam_head[f] = s;
	fam_tail[f] = s;
	n_series++;
	pthread_mutex_unlock(&lock);
	return s;
}

static void add(enum metrics_family f, const char *const *labels, uint64_t v)
{
	struct series *s = series_get(f, labels);
	if (s)
		__atomic_add_fetch(&s->value, v, __ATOMIC_RELAXED);
}

static void set(enum metrics_family f, const char *const *labels, uint64_t v)
{
	struct series *s = series_get(f, labels);
	if (s)
		__atomic_store_n(&s->value, v, __ATOMIC_RELAXED);
}

static const char *direction_label(uint32_t d)
{
	return d == POLICY_DIR_REQUEST ? "request" : "response";
}

int metrics_init(void)
{
	return 0;
}

void metrics_flow(const char *policy, enum metrics_flow_verdict v, enum mm_reason reason)
{
	const char *l[] = {policy ? policy : "", mm_reason_name(reason)};
	switch (v) {
	case METRICS_FLOW_STEERED:
		add(F_FLOWS_STEERED, l, 1);
		break;
	case METRICS_FLOW_PASSED:
		add(F_FLOWS_PASSED, l, 1);
		break;
	case METRICS_FLOW_REFUSED:
		add(F_FLOWS_REFUSED, l, 1);
		break;
	}
}

/* One rule's count of values in a message (http_message_value_fn, ctx: the message). */
static void rule_values_locked(void *ctx, const struct policy_rule *r, const char *entity,
			       uint64_t v)
{
	const struct http_message_info *info = ctx;
	const struct policy *p = info->policy;
	const char *dir = direction_label(info->direction);
	if (!entity)
		entity = "none";
	const char *l[] = {p->name, r->name ? r->name : "", entity,
			   policy_action_name(r->action.type), dir};
	add(p->mode == POLICY_MODE_OBSERVE ? F_VALUES_OBSERVED : F_VALUES_MASKED, l, v);
}

void metrics_message(const struct http_message_info *info, double seconds)
{
	if (!info)
		return;
	const struct policy *p = info->policy;
	const char *dir = direction_label(info->direction);
	const char *pl[] = {p && p->name ? p->name : "", dir, NULL};
	const struct mask_stats *st = info->stats;

	const char *ml[] = {pl[0], dir, info->protocol ? info->protocol : "http1",
			    info->method ? info->method : ""};
	add(F_MESSAGES, ml, 1);
	if (st) {
		add(F_BYTES_SCANNED, pl, st->bytes_scanned);
		add(F_BYTES_IN, pl, st->bytes_in);
		add(F_BYTES_OUT, pl, st->bytes_out);
	}
	if (p && p->name) {
		http_message_values(info, rule_values_locked, (void *)info);
	}
	enum metrics_family of = F__COUNT;
	if (info->outcome == MASK_OUTCOME_FALLBACK)
		of = F_FALLBACKS;
	else if (info->outcome == MASK_OUTCOME_BLOCKED)
		of = F_BLOCKED;
	else if (info->outcome == MASK_OUTCOME_PASSED)
		of = F_PASSED;
	if (of != F_FALLBACKS && of != F__COUNT && !(p && p->name))
		of = F__COUNT;
	if (of != F__COUNT) {
		pl[2] = mm_reason_name(info->reason);
		add(of, pl, 1);
	}
	if (info->tunnel != HTTP_TUNNEL_NONE && p && p->name) {
		const char *tl[] = {p->name, info->upgrade ? "upgrade" : "connect",
				    http_tunnel_name(info->tunnel)};
		add(F_TUNNELS, tl, 1);
	}
	bool reason_counted = info->reason == MM_REASON_NONE;
	for (int r = 1; st && r < MM_REASON__COUNT; r++) {
		if (!st->errors[r])
			continue;
		pl[2] = mm_reason_name(r);
		add(F_ERRORS, pl, st->errors[r]);
		if ((enum mm_reason)r == info->reason)
			reason_counted = true;
	}
	if (!reason_counted) {
		pl[2] = mm_reason_name(info->reason);
		add(F_ERRORS, pl, 1);
	}
	if (info->masked && seconds >= 0) {
		struct series *s = series_get(F_DURATION, pl);
		if (s) {
			for (size_t b = 0; b < N_BUCKETS; b++)
				if (seconds <= duration_buckets[b])
					__atomic_add_fetch(&s->buckets[b], 1, __ATOMIC_RELAXED);
			__atomic_add_fetch(&s->count, 1, __ATOMIC_RELAXED);
			__atomic_add_fetch(&s->sum_ns, (uint64_t)(seconds * 1e9), __ATOMIC_RELAXED);
		}
	}
}

void metrics_tls_record(const char *policy, uint64_t bytes, bool dropped)
{
	const char *l[] = {policy ? policy : ""};
	add(dropped ? F_TLS_DROPPED : F_TLS_RECORDS, l, 1);
	if (!dropped)
		add(F_TLS_BYTES, l, bytes);
}

void metrics_tls_finding(const char *policy, const char *entity)
{
	const char *l[] = {policy ? policy : "", entity ? entity : "none"};
	add(F_TLS_FINDINGS, l, 1);
}

void metrics_tls_stop(const char *event, uint64_t total)
{
	const char *l[] = {event};
	set(F_TLS_STOP, l, total);
}

void metrics_tls_uncaptured(const char *policy, const char *reason, uint64_t n)
{
	const char *l[] = {policy ? policy : "", reason};
	add(F_TLS_UNCAPTURED, l, n);
}

void metrics_tls_stop_traced(uint64_t n)
{
	set(F_TLS_STOP_SEIZED, NULL, n);
}

void metrics_splice(uint64_t bytes, uint64_t redirected, uint64_t passed, uint64_t apps,
		    uint64_t agents)
{
	const char *red[] = {"redirected"}, *pass[] = {"passed"}, *app[] = {"app"},
		   *agent[] = {"agent"};
	set(F_SPLICE_BYTES, NULL, bytes);
	set(F_SPLICE_MSGS, red, redirected);
	set(F_SPLICE_MSGS, pass, passed);
	set(F_SPLICE_SOCKS, app, apps);
	set(F_SPLICE_SOCKS, agent, agents);
}

void metrics_passthrough(const char *policy, uint32_t direction, uint64_t bytes)
{
	const char *l[] = {policy ? policy : "", direction_label(direction)};
	add(F_PASSTHROUGH, l, bytes);
}

void metrics_policy_reload(const char *source, bool ok)
{
	const char *l[] = {source ? source : ""};
	add(ok ? F_RELOADS : F_REJECTIONS, l, 1);
}

void metrics_policies(const char *source, const char *state, uint64_t n)
{
	const char *l[] = {source ? source : "", state ? state : ""};
	set(F_POLICIES, l, n);
}

void metrics_policy_applied(const char *source, double seconds)
{
	const char *l[] = {source ? source : ""};
	struct series *s = series_get(F_APPLY, l);
	if (!s || seconds < 0)
		return;
	for (size_t b = 0; b < N_BUCKETS; b++)
		if (seconds <= duration_buckets[b])
			__atomic_add_fetch(&s->buckets[b], 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&s->count, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&s->sum_ns, (uint64_t)(seconds * 1e9), __ATOMIC_RELAXED);
}

void metrics_dryrun(const char *policy, uint64_t values)
{
	const char *l[] = {policy ? policy : ""};
	add(F_DRYRUN, l, 1);
	add(F_DRYRUN_VALUES, l, values);
}

void metrics_detokenize(int code, const char *policy, const char *rule, uint64_t restored,
			uint64_t failed)
{
	char c[16];
	snprintf(c, sizeof(c), "%d", code);
	const char *l[] = {c};
	add(F_DETOKENIZE, l, 1);
	if (policy && rule) {
		const char *ok[] = {policy, rule, "restored"}, *bad[] = {policy, rule, "failed"};
		add(F_DETOKENIZE_VALUES, ok, restored);
		add(F_DETOKENIZE_VALUES, bad, failed);
	}
}

void metrics_audit_suppressed(uint64_t n)
{
	add(F_AUDIT_SUPPRESSED, NULL, n);
}

void metrics_admin_request(const char *method, int code)
{
	/* Methods are a fixed set so that a client cannot mint series. */
	static const char *const known[] = {"GET", "HEAD", "PUT", "POST", "DELETE"};
	const char *m = "other";
	for (size_t i = 0; method && i < sizeof(known) / sizeof(known[0]); i++)
		if (!strcmp(method, known[i]))
			m = known[i];
	char c[16];
	snprintf(c, sizeof(c), "%d", code >= 100 && code <= 599 ? code : 0);
	const char *l[] = {m, c};
	add(F_ADMIN, l, 1);
}

void metrics_admin_timeout(void)
{
	add(F_ADMIN_TIMEOUTS, NULL, 1);
}

void metrics_existing_connections(const char *policy, bool reset, uint64_t n)
{
	const char *l[] = {policy ? policy : "", reset ? "reset" : "kept"};
	add(F_EXISTING_CONNS, l, n);
}

void metrics_connection_cap(const char *policy, const char *caller, const char *cap,
			    bool passed)
{
	const char *l[] = {policy ? policy : "", caller ? caller : "", cap,
			   passed ? "passed" : "refused"};
	add(F_CONN_CAPS, l, 1);
}

void metrics_worker(unsigned idx, uint64_t accepted, uint64_t active)
{
	char w[16];
	snprintf(w, sizeof(w), "%u", idx);
	const char *l[] = {w};
	set(F_WORKER_CONNS, l, accepted);
	set(F_WORKER_ACTIVE, l, active);
}

void metrics_callers_unsteered(uint64_t n)
{
	set(F_CALLERS_UNSTEERED, NULL, n);
}

void metrics_bpf_map(const char *map, uint64_t entries, uint64_t capacity)
{
	const char *l[] = {map ? map : ""};
	set(F_MAP_ENTRIES, l, entries);
	set(F_MAP_CAPACITY, l, capacity);
}

/* Append a label value escaped as the exposition format wants (\\, \", \n). */
static int put_label_value(struct mm_buf *out, const char *v)
{
	int r = 0;
	for (; *v && !r; v++) {
		if (*v == '\\')
			r = mm_buf_puts(out, "\\\\");
		else if (*v == '"')
			r = mm_buf_puts(out, "\\\"");
		else if (*v == '\n')
			r = mm_buf_puts(out, "\\n");
		else
			r = mm_buf_putc(out, *v);
	}
	return r;
}

static int put_labels(struct mm_buf *out, enum metrics_family f, const struct series *s,
		      const char *extra_name, const char *extra_value)
{
	size_t n = family_nlabels(f);
	if (!n && !extra_name)
		return 0;
	int r = mm_buf_putc(out, '{');
	for (size_t i = 0; i < n && !r; i++) {
		r = mm_buf_puts(out, i ? "," : "");
		r = r ?: mm_buf_puts(out, families[f].labels[i]);
		r = r ?: mm_buf_puts(out, "=\"");
		r = r ?: put_label_value(out, s->labels[i]);
		r = r ?: mm_buf_putc(out, '"');
	}
	if (extra_name && !r) {
		r = mm_buf_puts(out, n ? "," : "");
		r = r ?: mm_buf_puts(out, extra_name);
		r = r ?: mm_buf_puts(out, "=\"");
		r = r ?: mm_buf_puts(out, extra_value);
		r = r ?: mm_buf_putc(out, '"');
	}
	return r ?: mm_buf_putc(out, '}');
}

static int put_fmt(struct mm_buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int put_fmt(struct mm_buf *out, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -EINVAL;
	return mm_buf_append(out, tmp, (size_t)n);
}

static int render_family(struct mm_buf *out, enum metrics_family f)
{
	const struct metrics_family_def *d = &families[f];
	static const char *const types[] = {"counter", "gauge", "histogram"};
	bool unlabeled = !d->labels[0];
	if (!fam_head[f] && !unlabeled)
		return 0;
	int r = put_fmt(out, "# HELP %s %s\n# TYPE %s %s\n", d->name, d->help, d->name,
			types[d->type]);
	if (!fam_head[f] && unlabeled)
		return r ?: put_fmt(out, "%s 0\n", d->name);
	for (const struct series *s = fam_head[f]; s && !r; s = s->fnext) {
		if (d->type != MT_HISTOGRAM) {
			r = mm_buf_puts(out, d->name);
			r = r ?: put_labels(out, f, s, NULL, NULL);
			r = r ?: put_fmt(out, " %" PRIu64 "\n",
					 __atomic_load_n(&s->value, __ATOMIC_RELAXED));
			continue;
		}
		for (size_t b = 0; b <= N_BUCKETS && !r; b++) {
			char le[32];
			if (b < N_BUCKETS)
				snprintf(le, sizeof(le), "%g", duration_buckets[b]);
			else
				snprintf(le, sizeof(le), "+Inf");
			r = put_fmt(out, "%s_bucket", d->name);
			r = r ?: put_labels(out, f, s, "le", le);
			r = r
				    ?: put_fmt(out, " %" PRIu64 "\n",
					       __atomic_load_n(b < N_BUCKETS ? &s->buckets[b] : &s->count,
							       __ATOMIC_RELAXED));
		}
		r = r ?: put_fmt(out, "%s_sum", d->name);
		r = r ?: put_labels(out, f, s, NULL, NULL);
		r = r ?: put_fmt(out, " %.9g\n",
				 (double)__atomic_load_n(&s->sum_ns, __ATOMIC_RELAXED) / 1e9);
		r = r ?: put_fmt(out, "%s_count", d->name);
		r = r ?: put_labels(out, f, s, NULL, NULL);
		r = r ?: put_fmt(out, " %" PRIu64 "\n", __atomic_load_n(&s->count, __ATOMIC_RELAXED));
	}
	return r;
}

int metrics_render(struct mm_buf *out)
{
	int r = put_fmt(out,
			"# HELP meshmask_build_info Build of the running agent.\n"
			"# TYPE meshmask_build_info gauge\n"
			"meshmask_build_info{version=\"%s\"} 1\n",
			MESHMASK_VERSION);
	pthread_mutex_lock(&lock);
	for (int f = 0; f < F__COUNT && !r; f++)
		r = render_family(out, f);
	r = r
		    ?: put_fmt(out,
			       "# HELP meshmask_metrics_series_dropped_total Series not created "
			       "because "
			       "of the series cap.\n"
			       "# TYPE meshmask_metrics_series_dropped_total counter\n"
			       "meshmask_metrics_series_dropped_total %" PRIu64 "\n",
			       series_dropped);
	pthread_mutex_unlock(&lock);
	return r;
}
