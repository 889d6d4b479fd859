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
static bool dp_ready = true;
static char token_path[512];

static bool ready_fn(void *ctx)
{
	(void)ctx;
	return dp_ready;
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
	fputs("{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","
	      "\"metadata\":{\"name\":\"a\"},\"spec\":{\"rules\":[{\"name\":\"cards\","
	      "\"entities\":[\"CREDIT_CARD\"],\"action\":{\"type\":\"mask\",\"keepLast\":4}}]}}",
	      f);
	fclose(f);
	write_token("s3cret-token\n");

	struct agent_config cfg = {
		.policies_dir = pol, .state_dir = state, .token_file = token_path};
	struct store *st = NULL;
	if (store_open(&st, &cfg) < 0)
		return 1;
	adm = admin_new(&cfg, st, ready_fn, NULL);
	ok(adm != NULL, "admin_new");

	is_int(call((struct req){"GET", "/healthz"}), 200, "healthz");
	is_int(call((struct req){"HEAD", "/healthz"}), 200, "healthz HEAD");
	is_int(call((struct req){"POST", "/healthz"}), 405, "healthz POST");
	is_str(last.allow, "GET, HEAD", "Allow header");
	ok(is_error_body(), "405 body");
	is_int(call((struct req){"GET", "/readyz"}), 200, "readyz");
	dp_ready = false;
	is_int(call((struct req){"GET", "/readyz"}), 503, "readyz without the data plane");
	dp_ready = true;
	is_int(call((struct req){"GET", "/metrics"}), 200, "metrics");
	ok(last.content_type && !strncmp(last.content_type, "text/plain; version=0.0.4", 25),
	   "metrics content type");
	ok(last.body.len && memmem(last.body.data, last.body.len, "meshmask_build_info", 19),
	   "metrics body");
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
