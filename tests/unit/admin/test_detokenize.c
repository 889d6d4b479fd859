/* SPDX-License-Identifier: Apache-2.0 */
/*
 * POST /v1/detokenize without a socket: its own token (the admin token is refused), every
 * status it answers, tokens of a tokenize rule restored, non-tokens answered null, and each call
 * audited and counted without a value.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "action.h"
#include "admin.h"
#include "audit.h"
#include "metrics.h"
#include "tap.h"

static struct admin *adm;
static struct admin_response last;

static int call(const char *method, const char *auth, const char *ct, const char *body)
{
	admin_response_free(&last);
	memset(&last, 0, sizeof(last));
	struct admin_request rq = {.method = method,
				   .path = "/v1/detokenize",
				   .authorization = auth,
				   .content_type = ct,
				   .peer = "192.0.2.7",
				   .body = body,
				   .body_len = body ? strlen(body) : 0};
	admin_handle(adm, &rq, &last);
	return last.status;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
}

static char *slurp(const char *path)
{
	static char buf[65536];
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
	if (f)
		fclose(f);
	buf[n] = '\0';
	return buf;
}

#define KEY "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
#define DETOK "Bearer d3tok-token"
#define ADMIN "Bearer s3cret-token"
#define JSON "application/json"

static const char *pol =
	"{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","
	"\"metadata\":{\"name\":\"pii\"},\"spec\":{\"rules\":["
	"{\"name\":\"ssn\",\"fields\":[\"$..ssn\"],\"action\":{\"type\":\"tokenize\","
	"\"keyEnv\":\"MM_TEST_TOK_KEY\",\"tokenSpace\":\"pii\"}},"
	"{\"name\":\"cards\",\"entities\":[\"CREDIT_CARD\"],\"action\":{\"type\":\"tokenize\","
	"\"keyEnv\":\"MM_TEST_TOK_KEY\",\"keepFirst\":6,\"keepLast\":4,\"luhn\":true}},"
	"{\"name\":\"mail\",\"entities\":[\"EMAIL_ADDRESS\"],\"action\":{\"type\":\"mask\"}}]}}";

int main(void)
{
	char root[] = "/tmp/meshmask-detok-XXXXXX";
	if (!mkdtemp(root))
		return 1;
	char dir[300], state[300], tok[300], dtok[300], audit[300], path[400];
	snprintf(dir, sizeof(dir), "%s/pol", root);
	snprintf(state, sizeof(state), "%s/state", root);
	snprintf(tok, sizeof(tok), "%s/token", root);
	snprintf(dtok, sizeof(dtok), "%s/detok", root);
	snprintf(audit, sizeof(audit), "%s/audit.log", root);
	mkdir(dir, 0755);
	snprintf(path, sizeof(path), "%s/pii.json", dir);
	write_file(path, pol);
	write_file(tok, "s3cret-token\n");
	setenv("MM_TEST_TOK_KEY", KEY, 1);
	metrics_init();
	ok(audit_open(audit) == 0, "audit log");

	/* The tokens the rules make. */
	struct store *st = NULL;
	struct store_config sc = {.policies_dir = dir, .state_dir = state};
	struct admin_config cfg = {.token_file = tok};
	if (store_open(&st, &sc) < 0)
		return 1;
	struct policy_set *set = store_get(st);
	struct policy *p = policy_set_find(set, "pii");
	ok(p != NULL, "policy pii in force");
	if (!p)
		return tap_done();
	struct mm_buf t1 = {0}, t2 = {0};
	action_apply(&p->rules[0].action, -1, "536-22-1234", 11, &t1);
	action_apply(&p->rules[1].action, MM_ENT_CREDIT_CARD, "4111 1111 1111 1111", 19, &t2);
	mm_buf_putc(&t1, '\0');
	mm_buf_putc(&t2, '\0');
	ok(strcmp(t1.data, "536-22-1234") && strlen(t1.data) == 11, "an SSN token (%s)", t1.data);
	ok(!strncmp(t2.data, "4111 11", 7) && strcmp(t2.data, "4111 1111 1111 1111"),
	   "a card token (%s)", t2.data);
	policy_set_unref(set);

	/* Without --detokenize-token-file the endpoint is off, whatever the token. */
	adm = admin_new(&cfg, st, NULL, NULL);
	is_int(call("POST", ADMIN, JSON, "{}"), 403, "no detokenize token configured: 403");
	ok(strstr(last.body.data, "detokenize is off") != NULL, "and says so");
	admin_free(adm);

	write_file(dtok, "d3tok-token\n");
	cfg.detokenize_token_file = dtok;
	adm = admin_new(&cfg, st, NULL, NULL);
	char body[512];
	snprintf(body, sizeof(body),
		 "{\"policy\":\"pii\",\"rule\":\"ssn\",\"values\":[\"%s\",\"12\",\"%s\"]}", t1.data,
		 t1.data);

	is_int(call("POST", NULL, JSON, body), 401, "no token: 401");
	ok(last.www_authenticate, "with WWW-Authenticate");
	is_int(call("POST", ADMIN, JSON, body), 401, "the admin token is refused");
	is_int(call("POST", "Bearer nope", JSON, body), 401, "a wrong token is refused");
	is_int(call("GET", DETOK, NULL, NULL), 405, "GET: 405");
	is_str(last.allow, "POST", "Allow: POST");
	is_int(call("POST", DETOK, "text/plain", body), 415, "not JSON: 415");

	is_int(call("POST", DETOK, JSON, body), 200, "the detokenize token: 200");
	json_error_t je;
	json_t *d = json_loadb(last.body.data, last.body.len, 0, &je);
	json_t *vals = json_object_get(d, "values");
	is_str(json_string_value(json_array_get(vals, 0)), "536-22-1234", "the SSN is restored");
	ok(json_is_null(json_array_get(vals, 1)), "a value that is no token answers null");
	is_str(json_string_value(json_array_get(vals, 2)), "536-22-1234", "again");
	is_int(json_integer_value(json_object_get(d, "failed")), 1, "one failed");
	is_str(json_string_value(json_object_get(d, "rule")), "ssn", "the rule is named");
	json_decref(d);

	snprintf(body, sizeof(body), "{\"policy\":\"pii\",\"rule\":\"cards\",\"values\":[\"%s\"]}",
		 t2.data);
	is_int(call("POST", DETOK, JSON, body), 200, "cards rule");
	ok(strstr(last.body.data, "\"4111 1111 1111 1111\"") != NULL, "the card is restored");

	is_int(call("POST", DETOK, JSON, "{\"policy\":\"nope\",\"rule\":\"ssn\",\"values\":[]}"),
	       404, "unknown policy: 404");
	is_int(call("POST", DETOK, JSON, "{\"policy\":\"pii\",\"rule\":\"nope\",\"values\":[]}"),
	       404, "unknown rule: 404");
	is_int(call("POST", DETOK, JSON, "{\"policy\":\"pii\",\"rule\":\"mail\",\"values\":[]}"),
	       400, "a mask rule: 400");
	is_int(call("POST", DETOK, JSON, "{\"policy\":\"pii\",\"rule\":\"ssn\",\"values\":[1]}"),
	       400, "a value that is not a string: 400");
	is_int(call("POST", DETOK, JSON, "[1,2]"), 400, "not an object: 400");
	is_int(call("POST", DETOK, JSON, "{\"policy\":\"pii\"}"), 400, "no rule: 400");

	/* Audit: one line per call, counts and names, never a value or a token. */
	audit_flush();
	char *log = slurp(audit);
	int lines = 0;
	for (char *q = log; (q = strstr(q, "\"event\":\"detokenize\"")); q++)
		lines++;
	is_int(lines, 13, "every POST audited, refused ones too (%d lines)", lines);
	ok(strstr(log, "\"policy\":\"pii\",\"caller\":\"admin-api 192.0.2.7\"") != NULL,
	   "the caller is named");
	ok(strstr(log, "\"rule\":\"ssn\",\"count\":3,\"failed\":1,\"status\":200") != NULL,
	   "rule, value count, failures and status");
	ok(strstr(log,
		  "\"policy\":null,\"caller\":\"admin-api 192.0.2.7\",\"destination\":"
		  "\"detokenize\",\"rule\":null,\"count\":0,\"failed\":0,\"status\":401") != NULL,
	   "refused calls too");
	ok(!strstr(log, "536-22-1234") && !strstr(log, t1.data) && !strstr(log, "4111") &&
		   !strstr(log, "d3tok"),
	   "no value, token or bearer token in the audit log");

	struct mm_buf m = {0};
	metrics_render(&m);
	mm_buf_putc(&m, '\0');
	ok(strstr(m.data, "meshmask_detokenize_requests_total{code=\"200\"} 2") != NULL,
	   "calls counted by code");
	ok(strstr(m.data, "meshmask_detokenize_requests_total{code=\"401\"} 3") != NULL,
	   "refusals counted");
	ok(strstr(m.data, "meshmask_detokenize_values_total{policy=\"pii\",rule=\"ssn\","
			  "result=\"restored\"} 2") != NULL &&
		   strstr(m.data, "meshmask_detokenize_values_total{policy=\"pii\",rule=\"ssn\","
				  "result=\"failed\"} 1") != NULL,
	   "values counted per policy and rule");
	ok(!strstr(m.data, "nope"), "unknown names never become labels");
	mm_buf_free(&m);

	admin_response_free(&last);
	admin_free(adm);
	store_close(st);
	mm_buf_free(&t1);
	mm_buf_free(&t2);
	audit_close();
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	if (system(cmd) != 0)
		return 1;
	return tap_done();
}
