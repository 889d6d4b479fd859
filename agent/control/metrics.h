/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Prometheus metrics of the agent (prefix meshmask_, counters end in _total). Labels are only
 * bounded values: policy, rule, entity, action, direction, reason, code. Never a value from
 * traffic. All functions are thread-safe and cheap enough for the data path.
 */
#ifndef MESHMASK_METRICS_H
#define MESHMASK_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "buf.h"
#include "message.h"
#include "meshmask/reason.h"

enum metrics_flow_verdict {
	METRICS_FLOW_STEERED, /* flagged and proxied through the agent */
	METRICS_FLOW_PASSED,  /* flagged but passed unmasked (failureMode open, onError pass) */
	METRICS_FLOW_REFUSED, /* flagged and refused (failureMode closed) */
};

int metrics_init(void);
/* A flagged connection and what became of it; reason is MM_REASON_NONE when healthy. */
void metrics_flow(const char *policy, enum metrics_flow_verdict v, enum mm_reason reason);
/* One HTTP message forwarded (values masked per rule/entity/action, bytes, errors, timing). */
void metrics_message(const struct http_message_info *info, double seconds);
/* TLS capture (issue 5): records seen/dropped, bytes scanned, findings. */
void metrics_tls_record(const char *policy, uint64_t bytes, bool dropped);
void metrics_tls_finding(const char *policy, const char *entity);
/* Stop-rewrite counters (totals since start, set as they are) and traced processes. */
void metrics_tls_stop(const char *event, uint64_t total);
void metrics_tls_stop_traced(uint64_t n);
/* TLS capture gaps of covered processes (reason: before_probes, probe_limit). */
void metrics_tls_uncaptured(const char *policy, const char *reason, uint64_t n);
/* --splice: the kernel's totals (splice_stats), set on each collection. */
void metrics_splice(uint64_t bytes, uint64_t redirected, uint64_t passed, uint64_t apps,
		    uint64_t agents);
/* Pass-through bytes moved socket to socket by splice(2) (proxy_config.zero_copy). */
void metrics_passthrough(const char *policy, uint32_t direction, uint64_t bytes);
/* Control plane. */
void metrics_policy_reload(const char *source, bool ok);
void metrics_admin_request(const char *method, int code);
/* An admin connection cut by --admin-request-timeout (a slow or stalled client). */
void metrics_admin_timeout(void);
void metrics_bpf_map(const char *map, uint64_t entries, uint64_t capacity);
/* Connections that bypassed the agent when a policy started covering them: reset or kept. */
void metrics_existing_connections(const char *policy, bool reset, uint64_t n);
/* A connection past a cap ("node" or "pod") of its caller (pod name or cgroup path). */
void metrics_connection_cap(const char *policy, const char *caller, const char *cap,
			    bool passed);
/* One data-path worker's connections: accepted so far (a counter's value) and open now. */
void metrics_worker(unsigned idx, uint64_t accepted, uint64_t active);
/* Covered callers that could not be steered (gauge). */
void metrics_callers_unsteered(uint64_t n);
/* Policies of one source ("file", "crd", "admin") in one state ("in_force", "refused"). */
void metrics_policies(const char *source, const char *state, uint64_t n);
/* A policy resource applied `seconds` after it changed (histogram). */
void metrics_policy_applied(const char *source, double seconds);
/* One admin API dry-run (kept out of the traffic counters). */
void metrics_dryrun(const char *policy, uint64_t values);
/*
 * One admin API detokenize call answered `code`; with the policy and rule it named (only once
 * both exist, so the labels stay bounded) the values restored and failed.
 */
void metrics_detokenize(int code, const char *policy, const char *rule, uint64_t restored,
			uint64_t failed);
/* Audit lines dropped by the audit rate limit. */
void metrics_audit_suppressed(uint64_t n);
/* Render everything in the Prometheus text exposition format (appended to out). */
int metrics_render(struct mm_buf *out);

#endif
