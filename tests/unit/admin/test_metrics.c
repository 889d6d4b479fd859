/* SPDX-License-Identifier: Apache-2.0 */
/* Metrics: what a forwarded message adds to the scrape, label escaping, bounded labels. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "tap.h"

static char *render(void)
{
	struct mm_buf b = {0};
	if (metrics_render(&b) < 0 || mm_buf_putc(&b, 0) < 0)
		return NULL;
	return b.data;
}

/* The value of the sample line that starts with `series` (name{labels}), or -1. */
static long long sample(const char *text, const char *series)
{
	size_t n = strlen(series);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, series, n) && p[n] == ' ')
			return atoll(p + n + 1);
	return -1;
}

int main(void)
{
	ok(metrics_init() == 0, "metrics_init");

	struct policy_rule rules[2] = {
		{.name = "ssn", .index = 0, .action = {.type = POLICY_ACTION_MASK}},
		{.name = "cards", .index = 1, .action = {.type = POLICY_ACTION_HASH}},
	};
	struct policy pol = {
		.name = "pii", .mode = POLICY_MODE_ENFORCE, .rules = rules, .n_rules = 2};
	struct mask_rule_stats rs[2] = {0};
	rs[0].values = 3; /* field rule: no entity */
	rs[1].values = 2;
	rs[1].by_entity[MM_ENT_CREDIT_CARD] = 2;
	struct mask_stats st = {.bytes_in = 100,
				.bytes_out = 98,
				.bytes_scanned = 100,
				.values = 5,
				.n_rules = 2,
				.rules = rs};
	st.errors[MM_REASON_BAD_JSON] = 1;
	struct http_message_info info = {.direction = POLICY_DIR_RESPONSE,
					 .policy = &pol,
					 .status = 200,
					 .masked = true,
					 .outcome = MASK_OUTCOME_FALLBACK,
					 .reason = MM_REASON_BAD_JSON,
					 .stats = &st};
	metrics_message(&info, 0.0003);
	metrics_message(&info, 0.02);

	pol.mode = POLICY_MODE_OBSERVE;
	info.outcome = MASK_OUTCOME_MASKED;
	info.reason = MM_REASON_NONE;
	st.errors[MM_REASON_BAD_JSON] = 0;
	metrics_message(&info, 0.0001);

	metrics_flow("pii", METRICS_FLOW_STEERED, MM_REASON_NONE);
	metrics_flow("pii", METRICS_FLOW_REFUSED, MM_REASON_AGENT_DOWN);
	metrics_policy_reload("file", true);
	metrics_policy_reload("api", false);
	metrics_admin_request("GET", 200);
	metrics_admin_request("BREW\"COFFEE",
			      418); /* a client-chosen method never becomes a label */
	metrics_bpf_map("steer_dst", 3, 1024);
	metrics_tls_finding("a\"b\\c\nd", "US_SSN");

	char *t = render();
	ok(t != NULL, "render");
	if (!t)
		return tap_done();
	is_int(sample(t, "meshmask_values_masked_total{policy=\"pii\",rule=\"ssn\",entity=\"none\","
			 "action=\"mask\",direction=\"response\"}"),
	       6, "field rule values counted with entity none");
	is_int(sample(t, "meshmask_values_masked_total{policy=\"pii\",rule=\"cards\","
			 "entity=\"CREDIT_CARD\",action=\"hash\",direction=\"response\"}"),
	       4, "entity values counted per entity and action");
	is_int(sample(t, "meshmask_values_observed_total{policy=\"pii\",rule=\"cards\","
			 "entity=\"CREDIT_CARD\",action=\"hash\",direction=\"response\"}"),
	       2, "observe mode counted apart");
	is_int(sample(t, "meshmask_messages_total{policy=\"pii\",direction=\"response\",protocol="
			 "\"http1\",method=\"\"}"),
	       3, "messages");
	is_int(sample(t, "meshmask_bytes_scanned_total{policy=\"pii\",direction=\"response\"}"),
	       300, "bytes scanned");
	is_int(sample(t, "meshmask_fallbacks_total{policy=\"pii\",direction=\"response\","
			 "reason=\"bad_json\"}"),
	       2, "fallbacks by reason");
	is_int(sample(t, "meshmask_errors_total{policy=\"pii\",direction=\"response\","
			 "reason=\"bad_json\"}"),
	       2, "errors by reason, not double counted");
	is_int(sample(t, "meshmask_mask_duration_seconds_bucket{policy=\"pii\","
			 "direction=\"response\",le=\"0.0001\"}"),
	       1, "histogram bucket");
	is_int(sample(t, "meshmask_mask_duration_seconds_bucket{policy=\"pii\","
			 "direction=\"response\",le=\"0.0005\"}"),
	       2, "histogram buckets are cumulative");
	is_int(sample(t, "meshmask_mask_duration_seconds_bucket{policy=\"pii\","
			 "direction=\"response\",le=\"+Inf\"}"),
	       3, "histogram +Inf");
	is_int(sample(t, "meshmask_mask_duration_seconds_count{policy=\"pii\","
			 "direction=\"response\"}"),
	       3, "histogram count");
	is_int(sample(t, "meshmask_flows_steered_total{policy=\"pii\"}"), 1, "flows steered");
	is_int(sample(t, "meshmask_flows_refused_total{policy=\"pii\",reason=\"agent_down\"}"), 1,
	       "flows refused by reason");
	is_int(sample(t, "meshmask_policy_reloads_total{source=\"file\"}"), 1, "reloads");
	is_int(sample(t, "meshmask_policy_rejections_total{source=\"api\"}"), 1, "rejections");
	is_int(sample(t, "meshmask_admin_requests_total{method=\"other\",code=\"418\"}"), 1,
	       "unknown method folded into other");
	ok(!strstr(t, "COFFEE"), "client-chosen method not exported");
	is_int(sample(t, "meshmask_bpf_map_capacity{map=\"steer_dst\"}"), 1024, "map capacity");
	is_int(sample(t,
		      "meshmask_tls_findings_total{policy=\"a\\\"b\\\\c\\nd\",entity=\"US_SSN\"}"),
	       1, "label values escaped");
	ok(strstr(t, "# TYPE meshmask_mask_duration_seconds histogram\n") != NULL,
	   "histogram type line");
	ok(strstr(t, "meshmask_build_info{version=\"") != NULL, "build info");
	/* Every counter family name ends in _total. */
	int bad = 0;
	for (const char *p = strstr(t, "# TYPE "); p; p = strstr(p + 1, "# TYPE ")) {
		const char *sp = strchr(p + 7, ' ');
		if (sp && !strncmp(sp + 1, "counter", 7) && strncmp(sp - 6, "_total", 6))
			bad++;
	}
	is_int(bad, 0, "counters end in _total");
	free(t);

	/* The series cap: label values beyond it are dropped and counted, never allocated. */
	char name[32];
	for (int i = 0; i < 10100; i++) {
		snprintf(name, sizeof(name), "m%d", i);
		metrics_bpf_map(name, 1, 2);
	}
	t = render();
	ok(t && sample(t, "meshmask_metrics_series_dropped_total") > 0, "series cap enforced");
	ok(t && sample(t, "meshmask_bpf_map_entries{map=\"m10099\"}") == -1,
	   "series over the cap absent");
	free(t);
	return tap_done();
}
