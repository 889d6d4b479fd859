/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Audit log: one JSON line per masking decision batch (time, policy, rule, entity, action,
 * caller identity, destination, direction, count), rate-limited, never a sensitive value.
 */
#ifndef MESHMASK_AUDIT_H
#define MESHMASK_AUDIT_H

#include <stdint.h>

#include "message.h"

struct audit_who {
	const char *caller;  /* caller identity: cgroup path or pod (namespace/name) */
	uint64_t cgroup_id;
	int pid;             /* 0 when unknown */
	const char *dest;    /* "10.0.0.7:8080" */
};

/* Open the sink ("-" = stdout); 0 or -errno. */
int audit_open(const char *path);
/* Record what the engine did to one message. */
void audit_message(const struct audit_who *who, const struct http_message_info *info);
/* Record a TLS finding batch (issue 5). */
void audit_tls(const struct audit_who *who, const char *policy, const char *entity,
	       uint64_t count, uint32_t direction);
/*
 * One admin API detokenize call: who, the policy and rule it named (NULL when not known), how
 * many values and how many failed, the status answered. Never the values; never dropped by the
 * rate limit.
 */
void audit_detokenize(const struct audit_who *who, const char *policy, const char *rule,
		      uint64_t values, uint64_t failed, int status);
/* Rate limit (default 200 lines/s, bursts of 1000); drops are counted and summarised. */
void audit_set_rate(double lines_per_sec, double burst_lines);
void audit_close(void);
/* Wait until every line queued so far is written (tests, dry-runs that report the audit). */
void audit_flush(void);

#endif
