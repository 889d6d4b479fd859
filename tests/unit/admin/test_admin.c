/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Admin API request handling without a socket: routing, every status code, auth bypass
 * attempts, token rotation, conditional writes, validation and the dry-run.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "admin.h"
#include "metrics.h"
#include "tap.h"

static struct admin *adm;
static struct admin_node_status node = {.bpf_enabled = true, .bpf_attached = true};
static char token_path[512];

static void status_fn(void *ctx, struct admin_node_status *out)
{
	(void)ctx;
	*out = node;
}

struct req {
	const char *method, *path, *auth, *ct, *body, *if_match, *policy;
	bool too_large;
};

static struct admin_response last;

static int call(struct req r)
{
	admin_response_free(&last);
	memset(&last, 0, sizeof(last));
	struct admin_request rq = {
		.method = r.method,
		.path = r.path,
		.query_policy = r.policy,
		.authorization = r.auth,
		.if_match = r.if_match,
		.content_type = r.ct,
		.body = r.body,
		.body_len = r.body ? strlen(r.body) : 0,
		.body_too_large = r.too_large,
	};
	admin_handle(adm, &rq, &last);
	return last.status;
}

/* The last response is a JSON error body {"error": string, "details": array}. */
static bool is_error_body(void)
{
	json_error_t e;
	json_t *d = json_loadb(last.body.data ? last.body.data : "", last.body.len, 0, &e);
	bool r = d && json_is_string(json_object_get(d, "error")) &&
		 json_is_array(json_object_get(d, "details"));
	json_decref(d);
	return r;
}

/* The last response body as JSON (json_decref after). */
static json_t *body_json(void)
{
	json_error_t e;
	return json_loadb(last.body.data ? last.body.data : "", last.body.len, 0, &e);
}

/* The string at a JSON pointer-like path of keys/indexes ("tls.enforceModes.1.reason"). */
static const char *jstr(json_t *d, const char *path)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", path);
	json_t *cur = d;
	for (char *save, *k = strtok_r(buf, ".", &save); k && cur; k = strtok_r(NULL, ".", &save))
		cur = json_is_array(cur) ? json_array_get(cur, strtoul(k, NULL, 10))
					 : json_object_get(cur, k);
	return json_string_value(cur);
}

static json_t *jget(json_t *d, const char *path)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", path);
	json_t *cur = d;
	for (char *save, *k = strtok_r(buf, ".", &save); k && cur; k = strtok_r(NULL, ".", &save))
		cur = json_is_array(cur) ? json_array_get(cur, strtoul(k, NULL, 10))
					 : json_object_get(cur, k);
	return cur;
}

static void write_file(const char *path, const char *text)
{
	char tmp[700];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	fputs(text, f);
	fclose(f);
	rename(tmp, path);
}

/* Poll the list until `file` is (or is no longer) among the rejected files; its entry. */
static json_t *wait_rejected(const char *file, bool present)
{
	for (int i = 0; i < 500; i++) {
		call((struct req){"GET", "/v1/policies", "Bearer s3cret-token"});
		json_t *d = body_json();
		json_t *rej = json_object_get(d, "rejected"), *e, *found = NULL;
		size_t k;
		json_array_foreach(rej, k, e)
		{
			const char *f = json_string_value(json_object_get(e, "file"));
			if (f && !strcmp(f, file))
				found = json_incref(e);
		}
		json_decref(d);
		if (!!found == present)
			return found;
		json_decref(found);
		usleep(10000);
	}
	return NULL;
}

static void write_token(const char *t)
{
	char tmp[600];
	snprintf(tmp, sizeof(tmp), "%s.new", token_path);
	FILE *f = fopen(tmp, "w");
	fputs(t, f);
	fclose(f);
	rename(tmp, token_path); /* a new inode, as a Secret update */
}

static const char *pol_b =
	"{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","
	"\"metadata\":{\"name\":\"b\"},\"spec\":{\"selector\":{\"destinations\":[{\"port\":80}]},"
	"\"rules\":[{\"name\":\"ssn\",\"fields\":[\"$..ssn\"],"
	"\"action\":{\"type\":\"mask\",\"keepLast\":4,\"char\":\"X\"}}]}}";

static const char *pol_a =
	"{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","
	"\"metadata\":{\"name\":\"a\"},\"spec\":{\"rules\":[{\"name\":\"cards\","
	"\"entities\":[\"CREDIT_CARD\"],\"action\":{\"type\":\"mask\",\"keepLast\":4}}]}}";

#define AUTH "Bearer s3cret-token"
#define JSON "application/json"

int main(void)
{
	char root[] = "/tmp/meshmask-admin-XXXXXX";
	if (!mkdtemp(root))
		return 1;
	char pol[300], state[300], path[600];
	snprintf(pol, sizeof(pol), "%s/pol", root);
	snprintf(state, sizeof(state), "%s/state", root);
	snprintf(token_path, sizeof(token_path), "%s/token", root);
	mkdir(pol, 0755);
	snprintf(path, sizeof(path), "%s/a.json", pol);
	FILE *f = fopen(path, "w");
	fputs(pol_a, f);
	fclose(f);
	/* Broken from the start: no version of it was ever in force. */
	snprintf(path, sizeof(path), "%s/broken.json", pol);
	write_file(path, "{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","
			 "\"metadata\":{\"name\":\"broken\"},\"spec\":{\"rules\":[{\"name\":"
			 "\"x\",\"fields\":[\"$.a\"],\"action\":{\"type\":\"explode\"}}]}}");
	write_token("s3cret-token\n");

	struct store_config sc = {.policies_dir = pol, .state_dir = state};
	struct admin_config cfg = {.token_file = token_path};
	struct store *st = NULL;
	if (store_open(&st, &sc) < 0)
		return 1;
	adm = admin_new(&cfg, st, status_fn, NULL);
	ok(adm != NULL, "admin_new");

	is_int(call((struct req){"GET", "/healthz"}), 200, "healthz");
	is_int(call((struct req){"HEAD", "/healthz"}), 200, "healthz HEAD");
	is_int(call((struct req){"POST", "/healthz"}), 405, "healthz POST");
	is_str(last.allow, "GET, HEAD", "Allow header");
	ok(is_error_body(), "405 body");
	is_int(call((struct req){"GET", "/readyz"}), 200, "readyz");
	json_t *d = body_json();
	ok(json_is_true(jget(d, "bpf.enabled")) && json_is_true(jget(d, "bpf.attached")),
	   "readyz: BPF attached");
	ok(json_integer_value(jget(d, "policies.inForce")) == 1 &&
		   json_integer_value(jget(d, "policies.fromFiles")) == 1 &&
		   json_integer_value(jget(d, "policies.rejectedFiles")) == 1 &&
		   json_is_true(jget(d, "policies.loaded")),
	   "readyz: one policy in force, one file rejected");
	ok(json_is_false(jget(d, "tls.capture")), "readyz: no TLS capture");
	is_str(jstr(d, "tls.enforceModes.0.mode"), "off", "readyz: mode off listed");
	ok(json_is_true(jget(d, "tls.enforceModes.0.available")), "readyz: off always works");
	ok(json_is_false(jget(d, "tls.enforceModes.1.available")) &&
		   strstr(jstr(d, "tls.enforceModes.1.reason") ?: "", "not running"),
	   "readyz: inplace unavailable without capture, and why");
	json_decref(d);
	/* TLS capture on a kernel that refuses bpf_probe_write_user, stop-rewrite applied. */
	node.tls_capture = true;
	node.tls_applies_stop_rewrite = true;
	is_int(call((struct req){"GET", "/readyz"}), 200, "readyz with TLS capture");
	d = body_json();
	ok(json_is_true(jget(d, "tls.capture")) &&
		   json_is_false(jget(d, "tls.kernelAllowsUserWrite")),
	   "readyz: capture on, user writes refused");
	is_str(jstr(d, "tls.enforceModes.1.mode"), "inplace", "readyz: mode inplace listed");
	ok(json_is_false(jget(d, "tls.enforceModes.1.available")) &&
		   strstr(jstr(d, "tls.enforceModes.1.reason") ?: "", "bpf_probe_write_user"),
	   "readyz: inplace unavailable, the kernel named");
	is_str(jstr(d, "tls.enforceModes.2.mode"), "stop-rewrite", "readyz: stop-rewrite listed");
	ok(json_is_true(jget(d, "tls.enforceModes.2.available")) &&
		   !jget(d, "tls.enforceModes.2.reason"),
	   "readyz: stop-rewrite available");
	json_decref(d);
	node.tls_user_write = true;
	node.tls_applies_inplace = true;
	call((struct req){"GET", "/readyz"});
	d = body_json();
	ok(json_is_true(jget(d, "tls.enforceModes.1.available")),
	   "readyz: inplace available when applied and allowed");
	json_decref(d);
	node.bpf_attached = false;
	is_int(call((struct req){"GET", "/readyz"}), 503, "readyz without the data plane");
	d = body_json();
	ok(json_is_false(jget(d, "ready")) && json_is_false(jget(d, "checks.dataplane")) &&
		   json_is_false(jget(d, "bpf.attached")),
	   "readyz: not attached");
	json_decref(d);
	is_int(call((struct req){"GET", "/metrics"}), 200, "metrics while not ready");
	ok(memmem(last.body.data, last.body.len, "meshmask_ready{check=\"all\"} 0\n", 30) &&
		   memmem(last.body.data, last.body.len, "meshmask_ready{check=\"dataplane\"} 0\n",
			  36) &&
		   memmem(last.body.data, last.body.len, "meshmask_ready{check=\"policies\"} 1\n",
			  35),
	   "meshmask_ready: 0, the dataplane check failing");
	node.bpf_attached = true;
	node.bpf_enabled = false;
	is_int(call((struct req){"GET", "/readyz"}), 200,
	       "readyz with --no-bpf: nothing to wait for");
	is_int(call((struct req){"GET", "/metrics"}), 200, "metrics");
	ok(last.content_type && !strncmp(last.content_type, "text/plain; version=0.0.4", 25),
	   "metrics content type");
	ok(last.body.len && memmem(last.body.data, last.body.len, "meshmask_build_info", 19),
	   "metrics body");
	ok(memmem(last.body.data, last.body.len, "meshmask_ready{check=\"all\"} 1\n", 30) != NULL,
	   "meshmask_ready: 1 as /readyz answers 200");
	is_int(call((struct req){"GET", "/nope"}), 404, "unknown path");
	ok(is_error_body(), "404 body");
	is_int(call((struct req){"GET", "/v1/policies/"}), 401, "auth before anything else");

	/* Auth. */
	is_int(call((struct req){"GET", "/v1/policies"}), 401, "list without a token");
	ok(last.www_authenticate, "WWW-Authenticate");
	ok(is_error_body(), "401 body");
	static const char *const bad_auth[] = {
		"Basic czNjcmV0LXRva2Vu",
		"Bearer",
		"Bearer ",
		"Bearer s3cret",
		"Bearer s3cret-tokenX",
		"Bearer S3CRET-TOKEN",
		"Bearer s3cret-token,s3cret-token",
		"s3cret-token",
		"Bearer\ts3cret-token",
		"Bearers3cret-token",
	};
	for (size_t i = 0; i < sizeof(bad_auth) / sizeof(bad_auth[0]); i++)
		is_int(call((struct req){"PUT", "/v1/policies/b", bad_auth[i], JSON, pol_b}), 401,
		       "refused: %s", bad_auth[i]);
	is_int(call((struct req){"GET", "/v1/policies", AUTH}), 200, "list with the token");
	is_int(call((struct req){"GET", "/v1/policies", "bearer s3cret-token"}), 200,
	       "scheme is case-insensitive");

	/* Rejected files: why, where, when, and what stays in force. */
	json_t *r = wait_rejected("broken.json", true);
	ok(r != NULL, "list: a broken file is listed as rejected");
	is_str(jstr(r, "name"), "broken", "rejected: its metadata.name");
	is_str(jstr(r, "errors.0.pointer"), "/spec/rules/0/action/type",
	       "rejected: error location");
	ok(jstr(r, "errors.0.message") && *jstr(r, "errors.0.message"), "rejected: error message");
	ok(jstr(r, "time") && strlen(jstr(r, "time")) == 20 && jstr(r, "time")[19] == 'Z',
	   "rejected: RFC 3339 time");
	ok(json_is_false(jget(r, "previousVersionInForce")) && json_is_null(jget(r, "etagInForce")),
	   "rejected: no previous version");
	json_decref(r);
	call((struct req){"GET", "/v1/policies/a", AUTH});
	char etag_a[80];
	snprintf(etag_a, sizeof(etag_a), "%.*s", (int)strlen(last.etag) - 2, last.etag + 1);
	call((struct req){"GET", "/v1/policies", AUTH});
	char list_etag[80];
	snprintf(list_etag, sizeof(list_etag), "%s", last.etag);
	/* A ConfigMap edit that breaks a policy in force: a syntax error. */
	snprintf(path, sizeof(path), "%s/a.json", pol);
	write_file(path, "{\n  \"apiVersion\": \"meshmask.io/v1alpha1\",\n  \"kind\": }\n");
	r = wait_rejected("a.json", true);
	ok(r != NULL, "list: the broken edit is listed");
	is_str(jstr(r, "name"), "a", "rejected edit: the policy it defines");
	ok(json_integer_value(jget(r, "errors.0.line")) == 3 &&
		   json_integer_value(jget(r, "errors.0.column")) > 0,
	   "rejected edit: line and column of the syntax error");
	ok(json_is_true(jget(r, "previousVersionInForce")), "rejected edit: previous version kept");
	is_str(jstr(r, "etagInForce"), etag_a, "rejected edit: the etag in force");
	json_decref(r);
	ok(strcmp(last.etag, list_etag) != 0, "list ETag changes with the rejections");
	is_int(call((struct req){"GET", "/v1/policies/a", AUTH}), 200,
	       "the previous version serves");
	ok(memmem(last.body.data, last.body.len, "CREDIT_CARD", 11) != NULL,
	   "the previous version's content");
	call((struct req){"GET", "/readyz"});
	d = body_json();
	is_int(json_integer_value(jget(d, "policies.rejectedFiles")), 2, "readyz counts both");
	json_decref(d);
	/* Fixed: the rejection goes away. */
	write_file(path, pol_a);
	ok(wait_rejected("a.json", false) == NULL, "a fixed file is no longer rejected");
	snprintf(path, sizeof(path), "%s/broken.json", pol);
	unlink(path);
	ok(wait_rejected("broken.json", false) == NULL, "a removed file is no longer rejected");

	/* PUT. */
	is_int(call((struct req){"PUT", "/v1/policies/b", AUTH, "text/plain", pol_b}), 415,
	       "PUT with a wrong Content-Type");
	ok(is_error_body(), "415 body");
	is_int(call((struct req){"PUT", "/v1/policies/b", AUTH, NULL, pol_b}), 415,
	       "PUT without Content-Type");
	is_int(call((struct req){"PUT", "/v1/policies/b", AUTH, JSON, NULL, .too_large = true}),
	       413, "oversized body");
	ok(is_error_body(), "413 body");
	is_int(call((struct req){"PUT", "/v1/policies/b", AUTH, JSON, "{\"kind\": 3"}), 400,
	       "malformed JSON");
	ok(is_error_body(), "400 body");
	ok(last.body.len && memmem(last.body.data, last.body.len, "\"line\":1", 8),
	   "syntax error located");
	is_int(call((struct req){"PUT", "/v1/policies/b", AUTH, JSON,
				 "{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":"
				 "\"MaskingPolicy\",\"metadata\":{\"name\":\"b\"},\"spec\":{"
				 "\"rules\":[{\"name\":\"x\",\"fields\":[\"$.a\"],\"action\":"
				 "{\"type\":\"explode\"}}]}}"}),
	       400, "invalid policy");
	ok(last.body.len &&
		   memmem(last.body.data, last.body.len, "\"/spec/rules/0/action/type\"", 27),
	   "error names the JSON pointer");
	is_int(call((struct req){"PUT", "/v1/policies/b", AUTH, "application/json; charset=utf-8",
				 pol_b}),
	       201, "create");
	char etag[80];
	snprintf(etag, sizeof(etag), "%s", last.etag);
	ok(strlen(etag) == 66 && etag[0] == '"', "quoted ETag");
	is_int(call((struct req){"GET", "/v1/policies/b", AUTH}), 200, "get");
	is_str(last.etag, etag, "same ETag on read");
	is_str(last.source, "api", "source api");
	is_int(call((struct req){"PUT", "/v1/policies/b", AUTH, JSON, pol_b, "\"0123\""}), 412,
	       "stale If-Match");
	ok(is_error_body(), "412 body");
	is_int(call((struct req){"PUT", "/v1/policies/b", AUTH, JSON, pol_b, etag}), 200,
	       "matching If-Match");
	is_int(call((struct req){"PUT", "/v1/policies/a", AUTH, JSON, pol_b}), 400,
	       "URL and metadata.name differ");
	is_int(call((struct req){"PUT", "/v1/policies/a", AUTH, JSON,
				 "{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":"
				 "\"MaskingPolicy\",\"metadata\":{\"name\":\"a\"},\"spec\":{"
				 "\"rules\":[{\"name\":\"x\",\"fields\":[\"$.a\"],\"action\":"
				 "{\"type\":\"redact\"}}]}}"}),
	       409, "a file policy cannot be pushed over");
	ok(is_error_body(), "409 body");
	is_int(call((struct req){"DELETE", "/v1/policies/a", AUTH}), 409,
	       "a file policy cannot be deleted");
	is_int(call((struct req){"GET", "/v1/policies/zz", AUTH}), 404, "get absent");
	is_int(call((struct req){"GET", "/v1/policies/..%2f..", AUTH}), 404, "odd name");
	is_int(call((struct req){"GET", "/v1/policies/a/b", AUTH}), 404, "nested path");
	is_int(call((struct req){"PATCH", "/v1/policies/b", AUTH}), 405, "PATCH");

	/* Validate never applies. */
	is_int(call((struct req){"POST", "/v1/policies:validate", AUTH, JSON,
				 "{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":"
				 "\"MaskingPolicy\",\"metadata\":{\"name\":\"v\"},\"spec\":{"
				 "\"rules\":[{\"name\":\"x\",\"fields\":[\"$.a\"],\"action\":"
				 "{\"type\":\"redact\"}}]}}"}),
	       200, "validate ok");
	is_int(call((struct req){"GET", "/v1/policies/v", AUTH}), 404, "validated, not applied");
	is_int(call((struct req){"POST", "/v1/policies:validate", AUTH, JSON, "[]"}), 400,
	       "validate error");
	ok(is_error_body(), "validate error body");
	is_int(call((struct req){"POST", "/v1/policies:validate", NULL, JSON, "[]"}), 401,
	       "validate needs the token");
	is_int(call((struct req){"GET", "/v1/policies:validate", AUTH}), 405, "validate GET");

	/* Dry-run. */
	const char *body = "{\"ssn\":\"123-45-6789\",\"n\":1}";
	is_int(call((struct req){"POST", "/v1/mask", AUTH, JSON, body, .policy = "b"}), 200,
	       "dry-run");
	is_mem(last.body.data, last.body.len, "{\"ssn\":\"XXX-XX-6789\",\"n\":1}", "dry-run masks");
	ok(last.has_values && last.values == 1, "values header");
	is_int(call((struct req){"POST", "/v1/mask", AUTH, JSON, body}), 400, "dry-run no policy");
	is_int(call((struct req){"POST", "/v1/mask", AUTH, JSON, body, .policy = "zz"}), 404,
	       "dry-run unknown policy");
	is_int(call((struct req){"POST", "/v1/mask", AUTH, NULL, body, .policy = "b"}), 415,
	       "dry-run without Content-Type");
	is_int(call((struct req){"POST", "/v1/mask", NULL, JSON, body, .policy = "b"}), 401,
	       "dry-run needs the token (hash oracle)");
	is_int(call((struct req){"POST", "/v1/mask", AUTH, JSON, NULL, .policy = "b",
				 .too_large = true}),
	       413, "dry-run oversized");

	/* Delete. */
	is_int(call((struct req){"DELETE", "/v1/policies/b", AUTH, NULL, NULL, "\"0123\""}), 412,
	       "delete with a stale If-Match");
	is_int(call((struct req){"DELETE", "/v1/policies/b", AUTH}), 204, "delete");
	is_int(call((struct req){"DELETE", "/v1/policies/b", AUTH}), 404, "delete again");

	/* Token rotation and a read-only API. */
	write_token("n3w-token");
	is_int(call((struct req){"GET", "/v1/policies", AUTH}), 401, "old token refused");
	is_int(call((struct req){"GET", "/v1/policies", "Bearer n3w-token"}), 200,
	       "new token accepted");
	write_token("\n");
	is_int(call((struct req){"PUT", "/v1/policies/b", "Bearer ", JSON, pol_b}), 403,
	       "empty token file: read-only API");
	ok(is_error_body(), "403 body");
	unlink(token_path);
	is_int(call((struct req){"PUT", "/v1/policies/b", AUTH, JSON, pol_b}), 403,
	       "token file gone: read-only API");
	admin_free(adm);
	cfg.public_read = true;
	cfg.token_file = NULL;
	adm = admin_new(&cfg, st, NULL, NULL);
	is_int(call((struct req){"GET", "/v1/policies"}), 200, "public read: list");
	is_int(call((struct req){"GET", "/v1/policies/a"}), 200, "public read: get");
	is_int(call((struct req){"DELETE", "/v1/policies/a"}), 403, "public read: no writes");

	admin_response_free(&last);
	admin_free(adm);
	store_close(st);
	snprintf(path, sizeof(path), "rm -rf '%s'", root);
	if (system(path) != 0)
		printf("# could not remove %s\n", root);
	return tap_done();
}
