/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Admin API. Request handling (admin_handle) is plain C over a struct admin_request so that
 * unit tests and the fuzzer drive it without a socket; the libmicrohttpd glue below only
 * collects the body (bounded), calls it and sends what it answers.
 *
 * Auth: writes, dry-runs and validation need "Authorization: Bearer <token>"; policy reads
 * too unless --public-read. The token file is re-read whenever its inode, size or mtime
 * changes, so a rotated Secret takes effect at once. Tokens are compared as SHA-256 digests
 * with CRYPTO_memcmp: constant time, whatever the lengths. No token configured (or an empty
 * file) means the API is read-only: 403, never "any token goes". POST /v1/detokenize answers
 * only to a second token (--detokenize-token-file), never to the admin token, and is off (403)
 * without one.
 *
 * Slow clients: libmicrohttpd's idle timeout resets on every byte, so a client trickling a
 * header byte every few seconds would hold a connection (and one of the bounded slots)
 * forever. Each connection is registered when libmicrohttpd accepts it, and a sweeper thread
 * (every ADMIN_SWEEP_MS) shuts down the socket of any connection whose request was not
 * received and answered within --admin-request-timeout of its first byte (of the accept, for
 * a connection's first request, so a silent connection is cut too). The first byte is seen
 * in the kernel's count of bytes received (TCP_INFO), so a keep-alive connection idling
 * between requests is left to the idle timeout. shutdown(2) leaves the descriptor to
 * libmicrohttpd, which sees end-of-stream and closes the connection through its own path; the
 * registry lock is held across shutdown(2) and taken by the close notification, which
 * libmicrohttpd sends before it closes the descriptor, so the descriptor is never another
 * connection's.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <linux/tcp.h>

#include <jansson.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "action.h"
#include "admin.h"
#include "audit.h"
#include "log.h"
#include "mask.h"
#include "metrics.h"
#include "util.h"

#define ADMIN_DEFAULT_MAX_BODY (1u << 20)
#define ADMIN_CONN_LIMIT 64
#define ADMIN_TIMEOUT_S 15 /* idle */
#define ADMIN_REQUEST_TIMEOUT_S 30 /* whole request, default of --admin-request-timeout */
#define ADMIN_SWEEP_MS 250
#define ADMIN_CONN_MEMORY (64u << 10) /* request line + headers per connection */
#define ADMIN_THREADS 2
#define ADMIN_TOKEN_MAX 4096
#define ADMIN_DETOKENIZE_MAX_VALUES 1000
#define ADMIN_DETOKENIZE_MAX_VALUE 4096

/* One accepted connection (libmicrohttpd's socket context). */
struct admin_sock {
	struct admin_sock *prev, *next;
	int fd;
	uint64_t rx_answered; /* bytes received when the previous answer was sent */
	bool busy; /* a request started and is not answered yet */
	struct timespec since; /* CLOCK_MONOTONIC: when that request was first seen */
	bool cut;
	char peer[INET6_ADDRSTRLEN];
};

/* A bearer token read from a file (its SHA-256 digest), re-read when the file changes. */
struct admin_token {
	char *file;
	struct stat sb; /* identity of the file the digest came from */
	bool loaded;
	bool set; /* a non-empty token was read */
	unsigned char digest[32];
};

struct admin {
	struct store *st;
	admin_status_fn status;
	void *status_ctx;
	bool public_read;
	size_t max_body;
	unsigned int request_timeout; /* seconds */

	pthread_mutex_t token_lock; /* both tokens */
	struct admin_token token; /* --token-file */
	struct admin_token detok; /* --detokenize-token-file */

	struct MHD_Daemon *mhd;
	uint16_t port;
	char *tls_cert, *tls_key; /* PEM in memory for libmicrohttpd */
	size_t tls_key_len;

	pthread_mutex_t socks_lock;
	pthread_cond_t socks_cond; /* wakes the sweeper to stop */
	struct admin_sock *socks;
	pthread_t sweeper;
	bool sweeper_started, sweeper_stop;
};

/* ---- responses ---------------------------------------------------------------------- */

static void set_json(struct admin_response *rs, int status, json_t *doc)
{
	rs->status = status;
	rs->content_type = "application/json";
	mm_buf_reset(&rs->body);
	char *s = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(doc);
	if (!s) {
		rs->status = 500;
		mm_buf_puts(&rs->body, "{\"error\":\"out of memory\",\"details\":[]}\n");
		return;
	}
	mm_buf_puts(&rs->body, s);
	mm_buf_putc(&rs->body, '\n');
	free(s);
}

/* {"error": message, "details": details (stolen, NULL = [])} */
static void set_error(struct admin_response *rs, int status, json_t *details, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void set_error(struct admin_response *rs, int status, json_t *details, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_t *doc = json_object();
	json_object_set_new(doc, "error", json_string(msg));
	json_object_set_new(doc, "details", details ? details : json_array());
	set_json(rs, status, doc);
}

static json_t *errors_json(const struct policy_errors *errs)
{
	json_t *a = json_array();
	for (size_t i = 0; errs && i < errs->n; i++) {
		const struct policy_error *e = &errs->v[i];
		json_t *o = json_object();
		if (e->pointer)
			json_object_set_new(o, "pointer", json_string(e->pointer));
		if (e->line > 0) {
			json_object_set_new(o, "line", json_integer(e->line));
			json_object_set_new(o, "column", json_integer(e->column));
		}
		json_object_set_new(o, "message", json_string(e->message ? e->message : ""));
		json_array_append_new(a, o);
	}
	return a;
}

void admin_response_free(struct admin_response *rs)
{
	mm_buf_free(&rs->body);
}

/* ---- auth --------------------------------------------------------------------------- */

/* Refresh the token digest when the file changed. token_lock held. */
static void token_refresh_locked(struct admin_token *t)
{
	struct stat sb;
	if (!t->file || stat(t->file, &sb) < 0) {
		t->loaded = false;
		t->set = false;
		return;
	}
	if (t->loaded && sb.st_ino == t->sb.st_ino && sb.st_dev == t->sb.st_dev &&
	    sb.st_size == t->sb.st_size && sb.st_mtim.tv_sec == t->sb.st_mtim.tv_sec &&
	    sb.st_mtim.tv_nsec == t->sb.st_mtim.tv_nsec)
		return;
	t->loaded = true;
	t->set = false;
	t->sb = sb;
	int fd = open(t->file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char buf[ADMIN_TOKEN_MAX];
	ssize_t n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n <= 0 || n == (ssize_t)sizeof(buf)) {
		if (n == (ssize_t)sizeof(buf))
			agent_log(AGENT_LOG_ERROR, "token file %s: too long", t->file);
		OPENSSL_cleanse(buf, sizeof(buf));
		return;
	}
	/* Secrets often end with a newline; surrounding white space is never part of it. */
	size_t b = 0, e = (size_t)n;
	while (b < e && (buf[b] == ' ' || buf[b] == '\t' || buf[b] == '\n' || buf[b] == '\r'))
		b++;
	while (e > b && (buf[e - 1] == ' ' || buf[e - 1] == '\t' || buf[e - 1] == '\n' ||
			 buf[e - 1] == '\r'))
		e--;
	if (e > b) {
		mm_sha256(buf + b, e - b, t->digest);
		t->set = true;
	}
	OPENSSL_cleanse(buf, sizeof(buf));
}

/*
 * 0 when the request carries token t, else the status to answer (401, or 403 with `unset` as
 * the message when no token is configured).
 */
static int check_token(struct admin *a, struct admin_token *t, const char *unset,
		       const struct admin_request *rq, struct admin_response *rs)
{
	pthread_mutex_lock(&a->token_lock);
	token_refresh_locked(t);
	bool set = t->set;
	unsigned char want[32];
	memcpy(want, t->digest, sizeof(want));
	pthread_mutex_unlock(&a->token_lock);

	if (!set) {
		set_error(rs, 403, NULL, "%s", unset);
		return 403;
	}
	const char *h = rq->authorization;
	if (!h || strncasecmp(h, "Bearer ", 7)) {
		rs->www_authenticate = true;
		set_error(rs, 401, NULL, "a bearer token is required");
		return 401;
	}
	h += 7;
	while (*h == ' ')
		h++;
	size_t n = strlen(h);
	while (n && (h[n - 1] == ' ' || h[n - 1] == '\t'))
		n--;
	unsigned char got[32];
	mm_sha256(h, n, got);
	if (n == 0 || CRYPTO_memcmp(got, want, sizeof(got)) != 0) {
		rs->www_authenticate = true;
		set_error(rs, 401, NULL, "invalid bearer token");
		return 401;
	}
	return 0;
}

static int check_auth(struct admin *a, const struct admin_request *rq, struct admin_response *rs)
{
	return check_token(a, &a->token, "no admin token is configured: the admin API is read-only",
			   rq, rs);
}

/* ---- handlers ----------------------------------------------------------------------- */

static bool is_json_type(const char *ct)
{
	if (!ct)
		return false;
	while (*ct == ' ')
		ct++;
	size_t n = strcspn(ct, "; \t");
	return n == 16 && !strncasecmp(ct, "application/json", 16);
}

/* Strip the quotes of an If-Match value into buf; NULL when absent. */
static const char *if_match_value(const char *h, char *buf, size_t size)
{
	if (!h)
		return NULL;
	while (*h == ' ')
		h++;
	size_t n = strlen(h);
	while (n && h[n - 1] == ' ')
		n--;
	if (n >= 2 && h[0] == '"' && h[n - 1] == '"') {
		h++;
		n -= 2;
	}
	if (n >= size)
		n = size - 1;
	memcpy(buf, h, n);
	buf[n] = 0;
	return buf;
}

static void set_etag(struct admin_response *rs, const char *etag)
{
	snprintf(rs->etag, sizeof(rs->etag), "\"%s\"", etag);
}

/* "file", "api" (pushed) or "crd" (a MaskingPolicy / ClusterMaskingPolicy resource). */
static const char *policy_source(const struct policy *p)
{
	if (p->origin && !strncmp(p->origin, "crd:", 4))
		return "crd";
	return p->origin && !strcmp(p->origin, "api") ? "api" : "file";
}

static json_t *time_json(int64_t t)
{
	time_t tt = (time_t)t;
	struct tm tm;
	char buf[32];
	if (!gmtime_r(&tt, &tm) || !strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm))
		return json_null();
	return json_string(buf);
}

/* Files of --policies DIR whose content was refused, with why, when and what stays in force. */
static json_t *rejections_json(const struct store_rejection *v, size_t n)
{
	json_t *arr = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_object();
		if (v[i].resource)
			json_object_set_new(o, "resource", json_string(v[i].resource));
		else
			json_object_set_new(o, "file", json_string(v[i].file ? v[i].file : ""));
		json_object_set_new(o, "name", v[i].name ? json_string(v[i].name) : json_null());
		json_object_set_new(o, "source", json_string(v[i].resource ? "crd" : "file"));
		json_object_set_new(o, "time", time_json(v[i].time));
		json_object_set_new(o, "errors", errors_json(&v[i].errs));
		json_object_set_new(o, "previousVersionInForce",
				    json_boolean(v[i].etag_in_force != NULL));
		json_object_set_new(o, "etagInForce",
				    v[i].etag_in_force ? json_string(v[i].etag_in_force)
						       : json_null());
		json_array_append_new(arr, o);
	}
	return arr;
}

static void h_list(struct admin *a, struct admin_response *rs)
{
	struct store_rejection *rej = NULL;
	size_t n_rej = 0;
	uint64_t rej_version = 0;
	if (store_rejections(a->st, &rej, &n_rej, &rej_version) < 0) {
		set_error(rs, 500, NULL, "out of memory");
		return;
	}
	struct policy_set *set = store_get(a->st);
	json_t *doc = json_object(), *arr = json_array();
	json_object_set_new(doc, "generation", json_integer((json_int_t)set->generation));
	for (size_t i = 0; i < set->n; i++) {
		const struct policy *p = set->v[i];
		json_t *o = json_object();
		json_object_set_new(o, "name", json_string(p->name));
		json_object_set_new(o, "etag", json_string(p->etag));
		json_object_set_new(o, "source", json_string(policy_source(p)));
		if (!strcmp(policy_source(p), "crd"))
			json_object_set_new(o, "resource", json_string(p->origin + 4));
		json_object_set_new(o, "mode", json_string(policy_mode_name(p->mode)));
		json_array_append_new(arr, o);
	}
	json_object_set_new(doc, "policies", arr);
	json_object_set_new(doc, "rejected", rejections_json(rej, n_rej));
	/* The body changes with the set and with the rejections: both are in the tag. */
	char etag[48];
	snprintf(etag, sizeof(etag), "g%llu.%llu", (unsigned long long)set->generation,
		 (unsigned long long)rej_version);
	set_etag(rs, etag);
	policy_set_unref(set);
	store_rejections_free(rej, n_rej);
	set_json(rs, 200, doc);
}

static void h_get(struct admin *a, const char *name, struct admin_response *rs)
{
	struct policy_set *set = store_get(a->st);
	const struct policy *p = policy_set_find(set, name);
	if (!p) {
		set_error(rs, 404, NULL, "no policy named %s", name);
	} else if (!p->json) {
		set_error(rs, 500, NULL, "policy %s has no canonical form", name);
	} else {
		rs->status = 200;
		rs->content_type = "application/json";
		mm_buf_puts(&rs->body, p->json);
		if (!rs->body.len || rs->body.data[rs->body.len - 1] != '\n')
			mm_buf_putc(&rs->body, '\n');
		set_etag(rs, p->etag);
		rs->source = policy_source(p);
	}
	policy_set_unref(set);
}

static void h_put(struct admin *a, const struct admin_request *rq, const char *name,
		  struct admin_response *rs)
{
	char im[128];
	const char *if_match = if_match_value(rq->if_match, im, sizeof(im));
	struct policy_errors errs = {0};
	char etag[65] = "";
	int r = store_put(a->st, name, rq->body ? rq->body : "", rq->body_len, if_match, &errs,
			  etag);
	if (r >= 0) {
		json_t *doc = json_object();
		json_object_set_new(doc, "name", json_string(name));
		json_object_set_new(doc, "etag", json_string(etag));
		json_object_set_new(doc, "created", json_boolean(r == 1));
		set_json(rs, r == 1 ? 201 : 200, doc);
		set_etag(rs, etag);
	} else if (r == -EINVAL) {
		set_error(rs, 400, errors_json(&errs), "invalid policy");
	} else if (r == -ESTALE) {
		set_error(rs, 412, NULL, "If-Match does not match the current version of %s", name);
	} else if (r == -EEXIST) {
		const char *owner = store_owner(a->st, name);
		if (owner && !strcmp(owner, "resource"))
			set_error(rs, 409, NULL,
				  "policy %s is defined by a MaskingPolicy or ClusterMaskingPolicy "
				  "resource; change it with kubectl",
				  name);
		else
			set_error(rs, 409, NULL,
				  "policy %s is defined by a file in the policies directory; change "
				  "it there",
				  name);
	} else {
		set_error(rs, 500, NULL, "storing policy %s: %s", name, strerror(-r));
	}
	policy_errors_free(&errs);
}

static void h_delete(struct admin *a, const struct admin_request *rq, const char *name,
		     struct admin_response *rs)
{
	char im[128];
	int r = store_delete(a->st, name, if_match_value(rq->if_match, im, sizeof(im)));
	if (r == 0) {
		rs->status = 204;
	} else if (r == -ENOENT) {
		set_error(rs, 404, NULL, "no pushed policy named %s", name);
	} else if (r == -ESTALE) {
		set_error(rs, 412, NULL, "If-Match does not match the current version of %s", name);
	} else if (r == -EPERM) {
		const char *owner = store_owner(a->st, name);
		set_error(rs, 409, NULL, "policy %s is defined by %s; remove it there", name,
			  owner && !strcmp(owner, "resource")
				  ? "a MaskingPolicy or ClusterMaskingPolicy resource"
				  : "a file in the policies directory");
	} else {
		set_error(rs, 500, NULL, "deleting policy %s: %s", name, strerror(-r));
	}
}

static void h_validate(const struct admin_request *rq, struct admin_response *rs)
{
	struct policy_errors errs = {0};
	errno = 0;
	struct policy *p = policy_parse(rq->body ? rq->body : "", rq->body_len, "request", &errs);
	if (p) {
		json_t *doc = json_object();
		json_object_set_new(doc, "valid", json_true());
		json_object_set_new(doc, "name", json_string(p->name));
		set_json(rs, 200, doc);
		policy_unref(p);
	} else if (errno == ENOMEM && !errs.n) {
		set_error(rs, 500, NULL, "out of memory");
	} else {
		set_error(rs, 400, errors_json(&errs), "invalid policy");
	}
	policy_errors_free(&errs);
}

static void h_mask(struct admin *a, const struct admin_request *rq, struct admin_response *rs)
{
	if (!rq->query_policy || !*rq->query_policy) {
		set_error(rs, 400, NULL, "the policy query parameter is required");
		return;
	}
	uint32_t dir = POLICY_DIR_RESPONSE;
	if (rq->query_direction && !strcmp(rq->query_direction, "request"))
		dir = POLICY_DIR_REQUEST;
	else if (rq->query_direction && strcmp(rq->query_direction, "response")) {
		set_error(rs, 400, NULL, "direction must be request or response");
		return;
	}
	if (!rq->content_type || mask_format_for(rq->content_type) == MASK_FMT_RAW) {
		set_error(rs, 415, NULL, "the engine does not mask this Content-Type");
		return;
	}
	struct policy_set *set = store_get(a->st);
	struct policy *p = policy_set_find(set, rq->query_policy);
	if (!p) {
		set_error(rs, 404, NULL, "no policy named %s", rq->query_policy);
		policy_set_unref(set);
		return;
	}
	struct mask_opts o = {
		.policy = p,
		.direction = dir,
		.content_type = rq->content_type,
		.content_encoding = rq->content_encoding,
		.format = MASK_FMT_AUTO,
	};
	struct mask_stats stats = {0};
	struct mm_buf out = {0};
	int r = mask_buffer(&o, rq->body ? rq->body : "", rq->body_len, &out, &stats);
	if (r < 0) {
		json_t *d = json_array();
		json_array_append_new(
			d, json_pack("{s:s}", "reason", r == -EPROTO ? "blocked" : strerror(-r)));
		set_error(rs, r == -ENOMEM ? 500 : 400, d, "the engine refused the body");
	} else {
		rs->status = 200;
		snprintf(rs->content_type_buf, sizeof(rs->content_type_buf), "%s",
			 rq->content_type);
		rs->content_type = rs->content_type_buf;
		if (rq->content_encoding)
			snprintf(rs->content_encoding, sizeof(rs->content_encoding), "%s",
				 rq->content_encoding);
		rs->has_values = true;
		rs->values = stats.values;
		mm_buf_free(&rs->body);
		rs->body = out;
		out = (struct mm_buf){0};
		metrics_dryrun(p->name, stats.values);
		/* Dry-runs are masking decisions too: audited, with the admin client as caller. */
		char caller[128];
		snprintf(caller, sizeof(caller), "admin-api %s", rq->peer ? rq->peer : "local");
		struct audit_who who = {.caller = caller, .dest = "dry-run"};
		struct http_message_info info = {.direction = dir,
						 .policy = p,
						 .masked = true,
						 .outcome = MASK_OUTCOME_MASKED,
						 .stats = &stats};
		audit_message(&who, &info);
	}
	mm_buf_free(&out);
	free(stats.rules);
	policy_set_unref(set);
}

/*
 * POST /v1/detokenize {"policy": P, "rule": R, "values": [...]}: restore tokens with the key and
 * options of rule R of policy P (a tokenize or detokenize rule). A value that is not a token
 * of that rule answers null and is counted as failed. Audited and counted whatever the outcome:
 * names and counts only.
 */
static void h_detokenize(struct admin *a, const struct admin_request *rq, struct admin_response *rs,
			 const struct audit_who *who)
{
	json_error_t je;
	json_t *doc =
		json_loadb(rq->body ? rq->body : "", rq->body_len, JSON_REJECT_DUPLICATES, &je);
	json_t *vals = json_object_get(doc, "values"), *v, *out = NULL;
	const char *pname = json_string_value(json_object_get(doc, "policy"));
	const char *rname = json_string_value(json_object_get(doc, "rule"));
	struct policy_set *set = NULL;
	const struct policy_rule *rule = NULL;
	struct action_ctx c = {0};
	struct mm_buf b = {0};
	uint64_t failed = 0;
	size_t i, n = json_array_size(vals);
	bool known = false;

	if (!json_is_object(doc) || !pname || !rname || !json_is_array(vals)) {
		set_error(rs, 400, NULL,
			  "the body must be {\"policy\": string, \"rule\": string, \"values\": "
			  "[string, ...]}");
		goto out;
	}
	if (n > ADMIN_DETOKENIZE_MAX_VALUES) {
		set_error(rs, 400, NULL, "at most %d values per call", ADMIN_DETOKENIZE_MAX_VALUES);
		goto out;
	}
	json_array_foreach(vals, i, v)
	{
		if (!json_is_string(v) || json_string_length(v) > ADMIN_DETOKENIZE_MAX_VALUE) {
			set_error(rs, 400, NULL, "values/%zu must be a string of at most %d bytes",
				  i, ADMIN_DETOKENIZE_MAX_VALUE);
			goto out;
		}
	}
	set = store_get(a->st);
	struct policy *p = policy_set_find(set, pname);
	for (size_t k = 0; p && k < p->n_rules && !rule; k++)
		if (p->rules[k].name && !strcmp(p->rules[k].name, rname))
			rule = &p->rules[k];
	if (!rule) {
		set_error(rs, 404, NULL,
			  p ? "policy %s has no rule named %s" : "no policy named %s", pname,
			  rname);
		goto out;
	}
	if (rule->action.type != POLICY_ACTION_TOKENIZE &&
	    rule->action.type != POLICY_ACTION_DETOKENIZE) {
		set_error(rs, 400, NULL, "rule %s of policy %s neither tokenizes nor detokenizes",
			  rname, pname);
		goto out;
	}
	known = true;
	/* The rule's key and options, as the detokenize that reverses it. */
	struct policy_action act = rule->action;
	act.type = POLICY_ACTION_DETOKENIZE;
	out = json_array();
	json_array_foreach(vals, i, v)
	{
		uint64_t before = c.unfit;
		b.len = 0;
		int r = action_apply_ctx(&act, &c, -1, json_string_value(v), json_string_length(v),
					 &b);
		if (r) {
			set_error(rs, 500, NULL, "detokenize failed: %s", strerror(-r));
			goto out;
		}
		if (c.unfit != before) {
			failed++;
			json_array_append_new(out, json_null());
		} else {
			json_array_append_new(out, json_stringn(b.data ? b.data : "", b.len));
		}
	}
	set_json(rs, 200,
		 json_pack("{s:s, s:s, s:o, s:I}", "policy", pname, "rule", rname, "values", out,
			   "failed", (json_int_t)failed));
	out = NULL;
out:
	metrics_detokenize(rs->status, known ? pname : NULL, known ? rname : NULL, n - failed,
			   failed);
	audit_detokenize(who, known ? pname : NULL, known ? rname : NULL, n, failed, rs->status);
	json_decref(out);
	action_ctx_free(&c);
	if (b.data)
		OPENSSL_cleanse(b.data, b.cap);
	mm_buf_free(&b);
	policy_set_unref(set);
	json_decref(doc);
}

/* {"mode": m, "available": ok[, "reason": why]} */
static json_t *tls_mode_json(const char *mode, const char *why)
{
	json_t *o = json_pack("{s:s, s:b}", "mode", mode, "available", why == NULL);
	if (o && why)
		json_object_set_new(o, "reason", json_string(why));
	return o;
}

/* Which spec.tls.enforce modes mask TLS traffic on this node, and why the others do not. */
static json_t *tls_json(const struct admin_node_status *ns)
{
	json_t *modes = json_array();
	const char *why = NULL;
	json_array_append_new(modes, tls_mode_json("off", NULL));
	if (!ns->tls_capture)
		why = ns->bpf_enabled ? "TLS capture is not running on this node"
				      : "no BPF (--no-bpf): TLS traffic is not captured";
	else if (!ns->tls_applies_inplace && ns->tls_user_write)
		why = "this agent does not rewrite TLS plaintext in place: observed and audited "
		      "only";
	else if (!ns->tls_applies_inplace)
		why = "this agent does not rewrite TLS plaintext in place, and the kernel refuses "
		      "bpf_probe_write_user: observed and audited only";
	else if (!ns->tls_user_write)
		why = "the kernel refuses bpf_probe_write_user (lockdown): observed and audited "
		      "only";
	json_array_append_new(modes, tls_mode_json("inplace", why));
	why = NULL;
	if (!ns->tls_capture)
		why = ns->bpf_enabled ? "TLS capture is not running on this node"
				      : "no BPF (--no-bpf): TLS traffic is not captured";
	else if (!ns->tls_applies_stop_rewrite)
		why = "the TLS data path cannot stop and rewrite callers on this node (see the "
		      "agent log): observed and audited only";
	json_array_append_new(modes, tls_mode_json("stop-rewrite", why));
	return json_pack("{s:b, s:b, s:o}", "capture", ns->tls_capture, "kernelAllowsUserWrite",
			 ns->tls_user_write, "enforceModes", modes);
}

/* What /readyz checks: the policies loaded, and the BPF programs attached when BPF is on. */
static void readiness(struct admin *a, struct admin_node_status *ns, bool *pol, bool *dp)
{
	*ns = (struct admin_node_status){0};
	if (a->status)
		a->status(a->status_ctx, ns);
	*pol = store_ready(a->st);
	*dp = !ns->bpf_enabled || ns->bpf_attached;
}

static void h_readyz(struct admin *a, struct admin_response *rs)
{
	struct admin_node_status ns;
	bool pol, dp;
	readiness(a, &ns, &pol, &dp);
	struct policy_set *set = store_get(a->st);
	size_t n_file = 0, n_crd = 0, n_rej = 0, n_rej_files = 0;
	for (size_t i = 0; i < set->n; i++) {
		n_file += !strcmp(policy_source(set->v[i]), "file");
		n_crd += !strcmp(policy_source(set->v[i]), "crd");
	}
	struct store_rejection *rej = NULL;
	if (store_rejections(a->st, &rej, &n_rej, NULL) == 0) {
		for (size_t i = 0; i < n_rej; i++)
			n_rej_files += rej[i].file != NULL;
		store_rejections_free(rej, n_rej);
	}

	json_t *doc = json_object(), *checks = json_object();
	json_object_set_new(doc, "ready", json_boolean(pol && dp));
	json_object_set_new(checks, "policies", json_boolean(pol));
	json_object_set_new(checks, "dataplane", json_boolean(dp));
	json_object_set_new(doc, "checks", checks);
	json_object_set_new(doc, "policies",
			    json_pack("{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "loaded", pol,
				      "inForce", (json_int_t)set->n, "fromFiles", (json_int_t)n_file,
				      "fromResources", (json_int_t)n_crd, "pushed",
				      (json_int_t)(set->n - n_file - n_crd), "rejectedFiles",
				      (json_int_t)n_rej_files, "rejectedResources",
				      (json_int_t)(n_rej - n_rej_files), "generation",
				      (json_int_t)set->generation));
	json_object_set_new(doc, "bpf",
			    json_pack("{s:b, s:b}", "enabled", ns.bpf_enabled, "attached",
				      ns.bpf_enabled && ns.bpf_attached));
	json_object_set_new(doc, "tls", tls_json(&ns));
	policy_set_unref(set);
	set_json(rs, pol && dp ? 200 : 503, doc);
}

static void h_metrics(struct admin *a, struct admin_response *rs)
{
	struct admin_node_status ns;
	bool pol, dp;
	readiness(a, &ns, &pol, &dp);
	char ready[400];
	snprintf(ready, sizeof(ready),
		 "# HELP meshmask_ready Whether the agent is ready (GET /readyz answers 200), and "
		 "each of its checks (policies loaded, dataplane attached).\n"
		 "# TYPE meshmask_ready gauge\n"
		 "meshmask_ready{check=\"all\"} %d\nmeshmask_ready{check=\"policies\"} %d\n"
		 "meshmask_ready{check=\"dataplane\"} %d\n",
		 pol && dp, pol, dp);
	if (metrics_render(&rs->body) < 0 || mm_buf_append(&rs->body, ready, strlen(ready)) < 0) {
		set_error(rs, 500, NULL, "rendering metrics failed");
		return;
	}
	rs->status = 200;
	rs->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

static bool method_is(const struct admin_request *rq, const char *m)
{
	return rq->method && !strcmp(rq->method, m);
}

static bool not_allowed(const struct admin_request *rq, struct admin_response *rs,
			const char *allow)
{
	rs->allow = allow;
	set_error(rs, 405, NULL, "method %s not allowed here", rq->method ? rq->method : "");
	return true;
}

void admin_handle(struct admin *a, const struct admin_request *rq, struct admin_response *rs)
{
	const char *path = rq->path ? rq->path : "";
	bool get = method_is(rq, "GET") || method_is(rq, "HEAD");
	static const char pfx[] = "/v1/policies/";

	if (!strcmp(path, "/healthz")) {
		if (!get)
			not_allowed(rq, rs, "GET, HEAD");
		else
			set_json(rs, 200, json_pack("{s:s}", "status", "ok"));
	} else if (!strcmp(path, "/readyz")) {
		if (!get)
			not_allowed(rq, rs, "GET, HEAD");
		else
			h_readyz(a, rs);
	} else if (!strcmp(path, "/metrics")) {
		if (!get)
			not_allowed(rq, rs, "GET, HEAD");
		else
			h_metrics(a, rs);
	} else if (!strcmp(path, "/v1/policies")) {
		if (!get)
			not_allowed(rq, rs, "GET, HEAD");
		else if (a->public_read || !check_auth(a, rq, rs))
			h_list(a, rs);
	} else if (!strcmp(path, "/v1/policies:validate")) {
		if (!method_is(rq, "POST"))
			not_allowed(rq, rs, "POST");
		else if (check_auth(a, rq, rs))
			;
		else if (rq->body_too_large)
			set_error(rs, 413, NULL, "request body over %zu bytes", a->max_body);
		else if (!is_json_type(rq->content_type))
			set_error(rs, 415, NULL, "Content-Type must be application/json");
		else
			h_validate(rq, rs);
	} else if (!strncmp(path, pfx, sizeof(pfx) - 1)) {
		const char *name = path + sizeof(pfx) - 1;
		bool put = method_is(rq, "PUT"), del = method_is(rq, "DELETE");
		if (!get && !put && !del)
			not_allowed(rq, rs, "GET, HEAD, PUT, DELETE");
		else if ((get && a->public_read) ? false : check_auth(a, rq, rs) != 0)
			;
		else if (!store_name_valid(name))
			set_error(rs, 404, NULL, "not a policy name");
		else if (get)
			h_get(a, name, rs);
		else if (del)
			h_delete(a, rq, name, rs);
		else if (rq->body_too_large)
			set_error(rs, 413, NULL, "request body over %zu bytes", a->max_body);
		else if (!is_json_type(rq->content_type))
			set_error(rs, 415, NULL, "Content-Type must be application/json");
		else
			h_put(a, rq, name, rs);
	} else if (!strcmp(path, "/v1/detokenize")) {
		char caller[128];
		snprintf(caller, sizeof(caller), "admin-api %s", rq->peer ? rq->peer : "local");
		struct audit_who who = {.caller = caller, .dest = "detokenize"};
		if (!method_is(rq, "POST")) {
			not_allowed(rq, rs, "POST");
		} else if (check_token(a, &a->detok,
				       "no detokenize token is configured "
				       "(--detokenize-token-file): detokenize is off",
				       rq, rs)) {
			metrics_detokenize(rs->status, NULL, NULL, 0, 0);
			audit_detokenize(&who, NULL, NULL, 0, 0, rs->status);
		} else if (rq->body_too_large || !is_json_type(rq->content_type)) {
			if (rq->body_too_large)
				set_error(rs, 413, NULL, "request body over %zu bytes",
					  a->max_body);
			else
				set_error(rs, 415, NULL, "Content-Type must be application/json");
			metrics_detokenize(rs->status, NULL, NULL, 0, 0);
			audit_detokenize(&who, NULL, NULL, 0, 0, rs->status);
		} else {
			h_detokenize(a, rq, rs, &who);
		}
	} else if (!strcmp(path, "/v1/mask")) {
		if (!method_is(rq, "POST"))
			not_allowed(rq, rs, "POST");
		else if (check_auth(a, rq, rs))
			;
		else if (rq->body_too_large)
			set_error(rs, 413, NULL, "request body over %zu bytes", a->max_body);
		else
			h_mask(a, rq, rs);
	} else {
		set_error(rs, 404, NULL, "no such endpoint");
	}
}

struct admin *admin_new(const struct admin_config *cfg, struct store *st, admin_status_fn status,
			void *status_ctx)
{
	struct admin *a = calloc(1, sizeof(*a));
	if (!a)
		return NULL;
	a->st = st;
	a->status = status;
	a->status_ctx = status_ctx;
	a->public_read = cfg->public_read;
	a->max_body = cfg->max_body ? cfg->max_body : ADMIN_DEFAULT_MAX_BODY;
	a->request_timeout =
		cfg->request_timeout ? cfg->request_timeout : ADMIN_REQUEST_TIMEOUT_S;
	pthread_mutex_init(&a->token_lock, NULL);
	pthread_mutex_init(&a->socks_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&a->socks_cond, &ca);
	pthread_condattr_destroy(&ca);
	if ((cfg->token_file && !(a->token.file = strdup(cfg->token_file))) ||
	    (cfg->detokenize_token_file && !(a->detok.file = strdup(cfg->detokenize_token_file)))) {
		admin_free(a);
		errno = ENOMEM;
		return NULL;
	}
	return a;
}

void admin_free(struct admin *a)
{
	if (!a)
		return;
	free(a->token.file);
	free(a->detok.file);
	free(a->tls_cert);
	if (a->tls_key) {
		OPENSSL_cleanse(a->tls_key, a->tls_key_len);
		free(a->tls_key);
	}
	OPENSSL_cleanse(a->token.digest, sizeof(a->token.digest));
	OPENSSL_cleanse(a->detok.digest, sizeof(a->detok.digest));
	pthread_mutex_destroy(&a->token_lock);
	while (a->socks) { /* only when libmicrohttpd never ran */
		struct admin_sock *s = a->socks;
		a->socks = s->next;
		free(s);
	}
	pthread_cond_destroy(&a->socks_cond);
	pthread_mutex_destroy(&a->socks_lock);
	free(a);
}

/* ---- libmicrohttpd glue --------------------------------------------------------------- */

static void peer_name(const struct sockaddr *sa, char *buf, size_t size)
{
	buf[0] = 0;
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, size);
	else if (sa && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, size);
}

/* Bytes the kernel has received on a TCP socket; -errno when it does not say. */
static int rx_bytes(int fd, uint64_t *out)
{
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	memset(&ti, 0, sizeof(ti));
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0)
		return -errno;
	if (len < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(ti.tcpi_bytes_received))
		return -EOPNOTSUPP;
	*out = ti.tcpi_bytes_received;
	return 0;
}

struct admin_conn {
	struct mm_buf body;
	bool too_large;
	size_t discarded;
};

static enum MHD_Result respond(struct admin *a, struct MHD_Connection *c, const char *url,
			       const char *method, struct admin_conn *cs)
{
	struct admin_request rq = {
		.method = method,
		.path = url,
		.query_policy = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "policy"),
		.query_direction =
			MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "direction"),
		.authorization = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
		.if_match = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-Match"),
		.content_type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type"),
		.content_encoding =
			MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Encoding"),
		.body = cs->body.data,
		.body_len = cs->body.len,
		.body_too_large = cs->too_large,
	};
	char peer[INET6_ADDRSTRLEN] = "";
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci && ci->client_addr) {
		peer_name(ci->client_addr, peer, sizeof(peer));
		rq.peer = peer;
	}
	struct admin_response rs = {0};
	admin_handle(a, &rq, &rs);

	struct MHD_Response *resp = MHD_create_response_from_buffer(
		rs.body.len, rs.body.len ? rs.body.data : (void *)"", MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret = MHD_NO;
	if (resp) {
		if (rs.content_type)
			MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
						rs.content_type);
		if (rs.content_encoding[0])
			MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING,
						rs.content_encoding);
		if (rs.etag[0])
			MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, rs.etag);
		if (rs.allow)
			MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, rs.allow);
		if (rs.www_authenticate)
			MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
						"Bearer realm=\"meshmask\"");
		if (rs.source)
			MHD_add_response_header(resp, "X-Meshmask-Source", rs.source);
		if (rs.has_values) {
			char v[32];
			snprintf(v, sizeof(v), "%llu", (unsigned long long)rs.values);
			MHD_add_response_header(resp, "X-Meshmask-Values", v);
		}
		MHD_add_response_header(resp, "Cache-Control", "no-store");
		MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
		if (cs->too_large)
			MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
		ret = MHD_queue_response(c, (unsigned int)rs.status, resp);
		MHD_destroy_response(resp);
	}
	metrics_admin_request(method, rs.status);
	agent_log(AGENT_LOG_DEBUG, "admin: %s %s -> %d", method, url, rs.status);
	admin_response_free(&rs);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	struct admin *a = cls;
	struct admin_conn *cs = *con_cls;
	if (!cs) {
		cs = calloc(1, sizeof(*cs));
		if (!cs)
			return MHD_NO;
		*con_cls = cs;
		/* A declared oversized body is refused before a byte of it is read. */
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
							     MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > a->max_body) {
			cs->too_large = true;
			return respond(a, c, url, method, cs);
		}
		return MHD_YES;
	}
	if (*upload_data_size) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (!cs->too_large && cs->body.len + n <= a->max_body) {
			if (mm_buf_append(&cs->body, upload_data, n) < 0)
				return MHD_NO;
			return MHD_YES;
		}
		/* Chunked upload past the limit: drain a little for a clean 413, then hang up. */
		cs->too_large = true;
		mm_buf_free(&cs->body);
		cs->discarded += n;
		return cs->discarded > 4 * a->max_body ? MHD_NO : MHD_YES;
	}
	return respond(a, c, url, method, cs);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct admin *a = cls;
	/* Answered: the next request on this keep-alive connection gets a full deadline. */
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct admin_sock *s = ci ? ci->socket_context : NULL;
	if (s && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) {
		pthread_mutex_lock(&a->socks_lock);
		if (rx_bytes(s->fd, &s->rx_answered) == 0)
			s->busy = false;
		clock_gettime(CLOCK_MONOTONIC, &s->since);
		pthread_mutex_unlock(&a->socks_lock);
	}
	struct admin_conn *cs = *con_cls;
	if (!cs)
		return;
	mm_buf_free(&cs->body);
	free(cs);
	*con_cls = NULL;
}

/* Register a connection when libmicrohttpd accepts it, drop it before it closes the socket. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			  enum MHD_ConnectionNotificationCode code)
{
	struct admin *a = cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *fdi =
			MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		struct admin_sock *s = fdi ? calloc(1, sizeof(*s)) : NULL;
		if (!s)
			return; /* not tracked: the idle timeout still applies */
		s->fd = fdi->connect_fd;
		/*
		 * The first request's deadline runs from the accept, as the data path's first head
		 * does: a connection that stays silent would otherwise hold one of the bounded
		 * slots for the whole idle timeout (with the per-address limit, two addresses
		 * could hold them all). After an answer, the next request's clock starts at its
		 * first byte (rx_answered), so a keep-alive connection idling between requests is
		 * left to the idle timeout.
		 */
		s->busy = true;
		const union MHD_ConnectionInfo *ai =
			MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		peer_name(ai ? ai->client_addr : NULL, s->peer, sizeof(s->peer));
		clock_gettime(CLOCK_MONOTONIC, &s->since);
		pthread_mutex_lock(&a->socks_lock);
		s->next = a->socks;
		if (a->socks)
			a->socks->prev = s;
		a->socks = s;
		pthread_mutex_unlock(&a->socks_lock);
		*socket_context = s;
		return;
	}
	struct admin_sock *s = *socket_context;
	if (code != MHD_CONNECTION_NOTIFY_CLOSED || !s)
		return;
	pthread_mutex_lock(&a->socks_lock);
	if (s->prev)
		s->prev->next = s->next;
	else
		a->socks = s->next;
	if (s->next)
		s->next->prev = s->prev;
	pthread_mutex_unlock(&a->socks_lock);
	*socket_context = NULL;
	free(s);
}

static double elapsed_s(const struct timespec *from, const struct timespec *to)
{
	return (double)(to->tv_sec - from->tv_sec) + (double)(to->tv_nsec - from->tv_nsec) / 1e9;
}

/* Cut connections over the whole-request deadline, every ADMIN_SWEEP_MS until stopped. */
static void *sweep_main(void *arg)
{
	struct admin *a = arg;
	pthread_mutex_lock(&a->socks_lock);
	while (!a->sweeper_stop) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		for (struct admin_sock *s = a->socks; s; s = s->next) {
			uint64_t rx;
			if (!s->busy && rx_bytes(s->fd, &rx) == 0 && rx > s->rx_answered) {
				s->busy = true; /* the next request began since the last sweep */
				s->since = now;
			}
			if (s->cut || !s->busy ||
			    elapsed_s(&s->since, &now) < (double)a->request_timeout)
				continue;
			s->cut = true;
			shutdown(s->fd, SHUT_RDWR);
			metrics_admin_timeout();
			agent_log(AGENT_LOG_WARN,
				  "admin: closed a connection from %s: no complete request and "
				  "answer within %u s",
				  s->peer[0] ? s->peer : "?", a->request_timeout);
		}
		struct timespec until = now;
		until.tv_nsec += ADMIN_SWEEP_MS * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		while (!a->sweeper_stop &&
		       pthread_cond_timedwait(&a->socks_cond, &a->socks_lock, &until) == 0)
			;
	}
	pthread_mutex_unlock(&a->socks_lock);
	return NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	size_t n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = 0;
	agent_log(AGENT_LOG_WARN, "admin: %s", msg);
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return NULL;
	struct mm_buf b = {0};
	char tmp[4096];
	size_t n;
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		if (mm_buf_append(&b, tmp, n) < 0 || b.len > (1u << 20))
			break;
	int bad = ferror(f) || b.len > (1u << 20);
	fclose(f);
	OPENSSL_cleanse(tmp, sizeof(tmp));
	if (bad || mm_buf_putc(&b, 0) < 0) {
		if (b.data)
			OPENSSL_cleanse(b.data, b.cap);
		mm_buf_free(&b);
		errno = bad ? EINVAL : ENOMEM;
		return NULL;
	}
	*len = b.cap;
	return b.data;
}

/* A listening socket for "HOST:PORT", "[V6]:PORT" or ":PORT" (all addresses). */
static int listen_on(const char *addr, int *family)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	if (!colon || colon == addr + strlen(addr) - 1)
		return -EINVAL;
	size_t hl = (size_t)(colon - addr);
	if (hl >= sizeof(host))
		return -EINVAL;
	memcpy(host, addr, hl);
	host[hl] = 0;
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = 0;
	}
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
	struct addrinfo *res;
	int gr = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &res);
	if (gr)
		return gr == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
	int fd = -1, err = -EADDRNOTAVAIL;
	for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			err = -errno;
			continue;
		}
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
			err = -errno;
			close(fd);
			fd = -1;
			continue;
		}
		*family = ai->ai_family;
	}
	freeaddrinfo(res);
	return fd >= 0 ? fd : err;
}

int admin_start(struct admin **out, const struct admin_config *cfg, struct store *st,
		admin_status_fn status, void *status_ctx)
{
	*out = NULL;
	struct admin *a = admin_new(cfg, st, status, status_ctx);
	if (!a)
		return -ENOMEM;
	if (!a->token.file)
		agent_log(AGENT_LOG_WARN, "admin: no --token-file: the admin API is read-only");
	unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
	size_t cert_len = 0;
	if (cfg->tls_cert) {
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
			agent_log(AGENT_LOG_ERROR, "admin: this libmicrohttpd has no TLS support");
			admin_free(a);
			return -ENOTSUP;
		}
		a->tls_cert = slurp(cfg->tls_cert, &cert_len);
		if (!a->tls_cert) {
			int e = -errno;
			agent_log(AGENT_LOG_ERROR, "admin: --tls-cert %s: %s", cfg->tls_cert,
				  strerror(-e));
			admin_free(a);
			return e;
		}
		a->tls_key = slurp(cfg->tls_key, &a->tls_key_len);
		if (!a->tls_key) {
			int e = -errno;
			agent_log(AGENT_LOG_ERROR, "admin: --tls-key %s: %s", cfg->tls_key,
				  strerror(-e));
			admin_free(a);
			return e;
		}
		flags |= MHD_USE_TLS;
	}
	int family = AF_INET;
	int fd = listen_on(cfg->addr, &family);
	if (fd < 0) {
		agent_log(AGENT_LOG_ERROR, "admin: cannot listen on %s: %s", cfg->addr,
			  strerror(-fd));
		admin_free(a);
		return fd;
	}
	if (family == AF_INET6)
		flags |= MHD_USE_IPv6;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		a->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							 : ((struct sockaddr_in *)&ss)->sin_port);

	struct MHD_OptionItem tls_opts[] = {
		{MHD_OPTION_HTTPS_MEM_CERT, 0, a->tls_cert},
		{MHD_OPTION_HTTPS_MEM_KEY, 0, a->tls_key},
		{MHD_OPTION_END, 0, NULL},
	};
	a->mhd = MHD_start_daemon(
		flags, 0, NULL, NULL, on_request, a, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, a,
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd, MHD_OPTION_THREAD_POOL_SIZE,
		(unsigned int)ADMIN_THREADS, MHD_OPTION_CONNECTION_LIMIT,
		(unsigned int)ADMIN_CONN_LIMIT, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
		(unsigned int)(ADMIN_CONN_LIMIT / 2), MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned int)ADMIN_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		(size_t)ADMIN_CONN_MEMORY, MHD_OPTION_NOTIFY_COMPLETED, on_completed, a,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, a, MHD_OPTION_ARRAY,
		a->tls_cert ? tls_opts : tls_opts + 2, MHD_OPTION_END);
	if (!a->mhd) {
		agent_log(AGENT_LOG_ERROR, "admin: libmicrohttpd did not start on %s",
			  cfg->addr);
		close(fd);
		admin_free(a);
		return -EIO;
	}
	int r = -pthread_create(&a->sweeper, NULL, sweep_main, a);
	if (r < 0) {
		agent_log(AGENT_LOG_ERROR, "admin: sweeper thread: %s", strerror(-r));
		admin_stop(a);
		return r;
	}
	a->sweeper_started = true;
	agent_log(AGENT_LOG_INFO, "admin API on %s://%s (port %u)%s, requests time out after %u s",
		  a->tls_cert ? "https" : "http", cfg->addr, a->port,
		  a->public_read ? " (public reads)" : "", a->request_timeout);
	*out = a;
	return 0;
}

uint16_t admin_port(const struct admin *a)
{
	return a ? a->port : 0;
}

void admin_stop(struct admin *a)
{
	if (!a)
		return;
	if (a->sweeper_started) {
		pthread_mutex_lock(&a->socks_lock);
		a->sweeper_stop = true;
		pthread_cond_signal(&a->socks_cond);
		pthread_mutex_unlock(&a->socks_lock);
		pthread_join(a->sweeper, NULL);
	}
	if (a->mhd)
		MHD_stop_daemon(a->mhd); /* closes the listening socket too */
	admin_free(a);
}
