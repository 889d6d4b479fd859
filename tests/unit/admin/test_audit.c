/* SPDX-License-Identifier: Apache-2.0 */
/* Audit log: one JSON line per (rule, entity) batch with who/what/where, rate-limited. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "audit.h"
#include "mask.h"
#include "tap.h"

/* The lines written so far (after the writer thread wrote what was queued). */
static size_t read_lines(const char *path, json_t **out, size_t max)
{
	audit_flush();
	FILE *f = fopen(path, "r");
	size_t n = 0;
	char line[4096];
	while (f && n < max && fgets(line, sizeof(line), f)) {
		json_error_t e;
		out[n] = json_loads(line, 0, &e);
		if (!out[n])
			printf("# bad line: %s", line);
		n++;
	}
	if (f)
		fclose(f);
	return n;
}

static const char *str(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

int main(void)
{
	char path[] = "/tmp/meshmask-audit-XXXXXX";
	int fd = mkstemp(path);
	ok(fd >= 0, "temp file");
	close(fd);
	ok(audit_open(path) == 0, "audit_open");

	struct policy_rule rules[2] = {
		{.name = "ssn", .action = {.type = POLICY_ACTION_MASK}},
		{.name = "auth", .action = {.type = POLICY_ACTION_REDACT}},
	};
	struct policy pol = {.name = "pii", .rules = rules, .n_rules = 2};
	struct mask_rule_stats rs[2] = {0};
	rs[0].values = 3;
	rs[0].by_entity[MM_ENT_US_SSN] = 2; /* 2 by the detector, 1 by field name */
	struct mask_stats st = {.values = 3, .n_rules = 2, .rules = rs};
	uint64_t hv[2] = {0, 1};
	struct http_message_info info = {.direction = POLICY_DIR_REQUEST,
					 .policy = &pol,
					 .masked = true,
					 .stats = &st,
					 .header_values = 1,
					 .header_rule_values = hv};
	struct audit_who who = {.caller = "/kubepods/pod-\"x\"",
				.cgroup_id = 42,
				.pid = 7,
				.dest = "10.0.0.7:8080"};
	audit_message(&who, &info);

	json_t *l[16] = {0};
	size_t n = read_lines(path, l, 16);
	is_int(n, 3, "one line per rule/entity batch");
	if (n == 3 && l[0] && l[1] && l[2]) {
		is_str(str(l[0], "event"), "mask", "event");
		is_str(str(l[0], "policy"), "pii", "policy");
		is_str(str(l[0], "rule"), "ssn", "rule");
		is_str(str(l[0], "entity"), "US_SSN", "entity");
		is_str(str(l[0], "action"), "mask", "action");
		is_str(str(l[0], "direction"), "request", "direction");
		is_str(str(l[0], "caller"), "/kubepods/pod-\"x\"", "caller escaped and intact");
		is_str(str(l[0], "destination"), "10.0.0.7:8080", "destination");
		is_int(json_integer_value(json_object_get(l[0], "count")), 2, "count");
		is_int(json_integer_value(json_object_get(l[0], "cgroupId")), 42, "cgroup id");
		ok(str(l[0], "time") && strlen(str(l[0], "time")) == 24, "time stamp");
		ok(json_is_null(json_object_get(l[1], "entity")), "field match has no entity");
		is_int(json_integer_value(json_object_get(l[1], "count")), 1, "field count");
		is_str(str(l[2], "rule"), "auth", "header rule line");
		is_str(str(l[2], "action"), "redact", "header rule action");
	}
	for (size_t i = 0; i < n; i++)
		json_decref(l[i]);

	/* Rate limit: a burst of 2, no refill: the rest is dropped, then summarised. */
	truncate(path, 0);
	audit_set_rate(0, 2);
	for (int i = 0; i < 5; i++)
		audit_message(&who, &info);
	n = read_lines(path, l, 16);
	is_int(n, 2, "burst bounded");
	for (size_t i = 0; i < n; i++)
		json_decref(l[i]);
	truncate(path, 0);
	audit_set_rate(1000, 1000);
	struct mask_rule_stats rs1[2] = {0};
	rs1[0].values = 1;
	st.rules = rs1;
	info.header_rule_values = NULL;
	audit_message(&who, &info);
	n = read_lines(path, l, 16);
	is_int(n, 1, "line after the limit");
	if (n == 1 && l[0])
		is_int(json_integer_value(json_object_get(l[0], "suppressedBefore")), 13,
		       "suppressed lines summarised");
	for (size_t i = 0; i < n; i++)
		json_decref(l[i]);

	/* Errors are audited with their reason. */
	truncate(path, 0);
	info.stats = NULL;
	info.outcome = MASK_OUTCOME_BLOCKED;
	info.reason = MM_REASON_BAD_JSON;
	audit_message(&who, &info);
	n = read_lines(path, l, 16);
	is_int(n, 1, "error line");
	if (n == 1 && l[0]) {
		is_str(str(l[0], "event"), "error", "error event");
		is_str(str(l[0], "outcome"), "blocked", "outcome");
		is_str(str(l[0], "reason"), "bad_json", "reason");
	}
	for (size_t i = 0; i < n; i++)
		json_decref(l[i]);
	audit_close();
	unlink(path);
	/* One table of names serves the audit log, the metrics and the CLI. */
	is_str(mask_outcome_name(MASK_OUTCOME_MASKED), "masked", "outcome name masked");
	is_str(mask_outcome_name(MASK_OUTCOME_FALLBACK), "fallback", "outcome name fallback");
	is_str(mask_outcome_name(MASK_OUTCOME_PASSED), "passed", "outcome name passed");
	is_str(mask_outcome_name(MASK_OUTCOME_BLOCKED), "blocked", "outcome name blocked");
	is_str(mask_outcome_name((enum mask_outcome)42), "unknown", "outcome out of range");
	return tap_done();
}
