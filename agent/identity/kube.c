// SPDX-License-Identifier: Apache-2.0
/*
 * HTTP, TLS and body framing are libcurl's. Ours: the policy around them (cluster CA only,
 * token re-read per request, timeouts, abort) and the list+watch protocol (pages, newline-
 * delimited events, resourceVersion, 410 Gone, backoff).
 *
 * Each request gets a fresh easy handle, so a rotated CA bundle is loaded again, driven by
 * its own multi handle, whose poll kube_client_abort() wakes from another thread: a watch
 * idle for minutes still stops at once.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "kube.h"

#define AUTH_PREFIX "Authorization: Bearer "
#define TOKEN_MAX 16384
#define STATUS_BODY_MAX 65536 /* of an error answer, read for its Status reason */
#define BACKOFF_MIN_MS 500

struct active { /* a transfer in progress, for kube_client_abort() to wake */
	CURLM *m;
	struct active *next;
};

struct kube_client {
	char *url; /* "https://authority", no trailing slash */
	char *token_file, *ca_file;
	char *token, *ca_pem, *cert_file, *key_file, *cert_pem, *key_pem, *user_agent;
	int connect_timeout_ms, read_timeout_s;
	pthread_mutex_t lock; /* guards active; for cond */
	pthread_cond_t cond; /* wakes backoff sleeps */
	struct active *active;
	bool aborted; /* atomic */
};

int kube_in_cluster_url(char *out, size_t size)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	if (!host || !*host)
		return -ENOENT;
	if (!port || !*port)
		port = "443";
	int n = snprintf(out, size, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
			 port);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* Whether url is "https://host[:port][/]" (host a name, IPv4 or [IPv6]). */
static bool valid_url(const char *url)
{
	if (strncasecmp(url, "https://", 8))
		return false;
	const char *a = url + 8, *port = NULL;
	size_t alen = strcspn(a, "/?#");
	if (!alen || (a[alen] && strcmp(a + alen, "/")))
		return false;
	if (a[0] == '[') {
		const char *close = memchr(a, ']', alen);
		if (!close || close == a + 1 || (close + 1 < a + alen && close[1] != ':'))
			return false;
		port = close + 1 < a + alen ? close + 2 : NULL;
	} else {
		port = memchr(a, ':', alen);
		if (port == a)
			return false;
		port = port ? port + 1 : NULL;
	}
	size_t plen = port ? (size_t)(a + alen - port) : 0;
	return !port || (plen && plen <= 5 && strspn(port, "0123456789") >= plen);
}

struct kube_client *kube_client_new(const struct kube_config *cfg)
{
	char incluster[300];
	const char *url = cfg->url;
	int r = url ? 0 : kube_in_cluster_url(incluster, sizeof(incluster));
	if (r < 0 || !valid_url(url ? url : (url = incluster))) {
		errno = r < 0 ? -r : EINVAL;
		return NULL;
	}
	/* Reference-counted, and thread-safe in this libcurl (CURL_VERSION_THREADSAFE). */
	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		errno = EIO;
		return NULL;
	}
	struct kube_client *c = calloc(1, sizeof(*c));
	if (!c) {
		curl_global_cleanup();
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	c->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 5000;
	c->read_timeout_s = cfg->read_timeout_s > 0 ? cfg->read_timeout_s : 600;
	c->url = strndup(url, strlen(url) - (url[strlen(url) - 1] == '/'));
	c->token_file = strdup(cfg->token_file ? cfg->token_file : KUBE_DEFAULT_TOKEN_FILE);
	c->ca_file = strdup(cfg->ca_file ? cfg->ca_file : KUBE_DEFAULT_CA_FILE);
	c->user_agent =
		strdup(cfg->user_agent ? cfg->user_agent : "meshmask-agent/" MESHMASK_VERSION);
	bool bad = !c->url || !c->token_file || !c->ca_file || !c->user_agent;
	const char *in[] = {cfg->token,	   cfg->ca_pem,	  cfg->cert_file,
			    cfg->key_file, cfg->cert_pem, cfg->key_pem};
	char **out[] = {&c->token,    &c->ca_pem,   &c->cert_file,
			&c->key_file, &c->cert_pem, &c->key_pem};
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
		if (in[i] && !(*out[i] = strdup(in[i])))
			bad = true;
	if (bad) {
		kube_client_free(c);
		errno = ENOMEM;
		return NULL;
	}
	return c;
}

void kube_client_free(struct kube_client *c)
{
	if (!c)
		return;
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c->url);
	free(c->token_file);
	free(c->ca_file);
	char *secret[] = {c->token, c->key_pem};
	for (size_t i = 0; i < 2; i++)
		if (secret[i])
			explicit_bzero(secret[i], strlen(secret[i]));
	free(c->token);
	free(c->ca_pem);
	free(c->cert_file);
	free(c->key_file);
	free(c->cert_pem);
	free(c->key_pem);
	free(c->user_agent);
	free(c);
	curl_global_cleanup();
}

void kube_client_abort(struct kube_client *c)
{
	pthread_mutex_lock(&c->lock);
	__atomic_store_n(&c->aborted, true, __ATOMIC_RELEASE);
	for (struct active *a = c->active; a; a = a->next)
		curl_multi_wakeup(a->m);
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static bool aborted(struct kube_client *c)
{
	return __atomic_load_n(&c->aborted, __ATOMIC_ACQUIRE);
}

/* Sleep ms unless aborted: 0, or -ECANCELED. */
static int client_sleep(struct kube_client *c, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	long long ns = ts.tv_nsec + (long long)ms * 1000000;
	ts.tv_sec += (time_t)(ns / 1000000000);
	ts.tv_nsec = (long)(ns % 1000000000);
	pthread_mutex_lock(&c->lock);
	while (!aborted(c) && pthread_cond_timedwait(&c->cond, &c->lock, &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&c->lock);
	return aborted(c) ? -ECANCELED : 0;
}

char *kube_query_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char *o = malloc(strlen(s) * 3 + 1), *q = o;
	for (; o && *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || strchr("-._~", ch)) {
			*q++ = (char)ch;
		} else {
			*q++ = '%';
			*q++ = hex[ch >> 4];
			*q++ = hex[ch & 15];
		}
	}
	if (o)
		*q = 0;
	return o;
}

/* The token file's first line, trimmed, into buf; "" when the file does not exist. */
static int read_token(const char *path, char *buf, size_t size)
{
	buf[0] = 0;
	if (!*path) /* "": no token file (a client certificate authenticates) */
		return 0;
	FILE *f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	size_t n = fread(buf, 1, size - 1, f);
	int bad = ferror(f) || !feof(f);
	fclose(f);
	if (bad)
		return -EMSGSIZE;
	buf[n] = 0;
	buf[strcspn(buf, "\r\n")] = 0;
	size_t len = strlen(buf);
	while (len && (buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		buf[--len] = 0;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)buf[i] < 0x21 || (unsigned char)buf[i] > 0x7e)
			return -EINVAL; /* would break the header line */
	return 0;
}

/* Where a response body goes: fn's -errno stops the transfer and becomes its result. */
struct sink {
	int (*fn)(struct sink *s, const char *data, size_t n);
	CURL *h;
	long status; /* known from the body's first byte on */
	int err;
};

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
	struct sink *s = ud;
	if (!s->status)
		curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &s->status);
	int r = s->fn(s, data, size * nmemb);
	if (r < 0) {
		s->err = r;
		return CURL_WRITEFUNC_ERROR;
	}
	return size * nmemb;
}

/* A body kept whole (NUL-terminated) up to max; beyond: -EMSGSIZE, or cut if `truncate`. */
struct body_sink {
	struct sink s;
	char *buf;
	size_t len, cap, max;
	bool truncate;
};

static int body_append(struct body_sink *b, const char *data, size_t n)
{
	if (n > b->max - b->len) {
		if (!b->truncate)
			return -EMSGSIZE;
		n = b->max - b->len;
	}
	size_t cap = b->cap ? b->cap : 16384;
	while (cap - b->len <= n)
		cap *= 2;
	char *nb = cap == b->cap ? b->buf : realloc(b->buf, cap);
	if (!nb)
		return -ENOMEM;
	b->buf = nb;
	b->cap = cap;
	memcpy(b->buf + b->len, data, n);
	b->len += n;
	b->buf[b->len] = 0;
	return 0;
}

static int body_fn(struct sink *s, const char *data, size_t n)
{
	return body_append((struct body_sink *)s, data, n);
}

/* -errno for a failed transfer; why from libcurl's message (which never holds a header). */
static int transfer_error(struct kube_client *c, CURL *h, CURLcode e, const char *msg, char *why,
			  size_t size)
{
	long oserr = 0;
	int r = -EIO;
	switch (e) {
	case CURLE_SSL_CACERT_BADFILE:
		r = c->ca_pem ? -EPROTO : access(c->ca_file, R_OK) < 0 ? -errno : -EPROTO;
		break;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ISSUER_ERROR:
		r = -EPROTO;
		break;
	case CURLE_COULDNT_RESOLVE_HOST:
		r = -EHOSTUNREACH;
		break;
	case CURLE_COULDNT_CONNECT:
		curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &oserr);
		r = oserr > 0 ? -(int)oserr : -ECONNREFUSED;
		break;
	case CURLE_OPERATION_TIMEDOUT:
		r = -ETIMEDOUT;
		break;
	case CURLE_OUT_OF_MEMORY:
		r = -ENOMEM;
		break;
	case CURLE_ABORTED_BY_CALLBACK:
		r = -ECANCELED;
		break;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_PARTIAL_FILE:
	case CURLE_GOT_NOTHING:
		r = -EPIPE;
		break;
	default:
		break;
	}
	if (!msg[0])
		msg = curl_easy_strerror(e);
	if (e == CURLE_SSL_CACERT_BADFILE && c->ca_pem)
		snprintf(why, size, "TLS: CA data: %s", msg);
	else if (e == CURLE_SSL_CACERT_BADFILE)
		snprintf(why, size, "TLS: CA file %s: %s", c->ca_file, msg);
	else
		snprintf(why, size, "%s%s", r == -EPROTO ? "TLS: " : "", msg);
	return r;
}

/* Run h to completion, or until kube_client_abort(). */
static CURLcode perform(struct kube_client *c, CURL *h)
{
	CURLM *m = curl_multi_init();
	if (!m || curl_multi_add_handle(m, h) != CURLM_OK) {
		curl_multi_cleanup(m);
		return CURLE_OUT_OF_MEMORY;
	}
	struct active me = {.m = m};
	pthread_mutex_lock(&c->lock);
	me.next = c->active;
	c->active = &me;
	pthread_mutex_unlock(&c->lock);

	CURLcode res = CURLE_ABORTED_BY_CALLBACK;
	int running = 1;
	while (running && !aborted(c)) {
		CURLMcode mc = curl_multi_perform(m, &running);
		if (mc == CURLM_OK && running)
			mc = curl_multi_poll(m, NULL, 0, 1000, NULL);
		if (mc != CURLM_OK) {
			res = mc == CURLM_OUT_OF_MEMORY ? CURLE_OUT_OF_MEMORY : CURLE_RECV_ERROR;
			break;
		}
	}
	CURLMsg *msg;
	int left;
	while (!running && (msg = curl_multi_info_read(m, &left)))
		if (msg->msg == CURLMSG_DONE)
			res = msg->data.result;

	pthread_mutex_lock(&c->lock);
	struct active **p = &c->active;
	while (*p != &me)
		p = &(*p)->next;
	*p = me.next;
	pthread_mutex_unlock(&c->lock);
	curl_multi_remove_handle(m, h);
	curl_multi_cleanup(m);
	return aborted(c) ? CURLE_ABORTED_BY_CALLBACK : res;
}

/*
 * One request, its body to s. 0 when a response arrived (s->status), the sink's error when
 * it stopped the transfer (why left to the caller), else -errno with why set.
 */
static int transfer(struct kube_client *c, const char *method, const char *path, const char *ctype,
		    const void *body, size_t blen, struct sink *s, char *why, size_t size)
{
	char errbuf[CURL_ERROR_SIZE] = "", ct[160];
	char auth[sizeof(AUTH_PREFIX) + TOKEN_MAX] = AUTH_PREFIX;
	struct curl_slist *hdrs = NULL, *l;
	char *url = NULL;
	CURL *h = NULL;
	/* Re-read for every request: projected ServiceAccount tokens rotate. */
	int r = 0;
	if (!c->token)
		r = read_token(c->token_file, auth + strlen(AUTH_PREFIX), TOKEN_MAX);
	else if (strlen(c->token) >= TOKEN_MAX || strpbrk(c->token, "\r\n"))
		r = -EINVAL;
	else
		snprintf(auth + strlen(AUTH_PREFIX), TOKEN_MAX, "%s", c->token);
	if (r < 0 && c->token) {
		snprintf(why, size, "token: %s", strerror(-r));
		goto out;
	} else if (r < 0) {
		snprintf(why, size, "token file %s: %s", c->token_file, strerror(-r));
		goto out;
	}
	snprintf(ct, sizeof(ct), "Content-Type: %s", ctype ? ctype : "");
	const char *lines[] = {"Accept: application/json", auth[strlen(AUTH_PREFIX)] ? auth : NULL,
			       body ? ct : NULL,
			       body ? "Expect:" : NULL}; /* Expect: no 100-continue round trip */
	r = -ENOMEM;
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		if (!lines[i])
			continue;
		if (!(l = curl_slist_append(hdrs, lines[i])))
			goto out;
		hdrs = l;
	}
	if (asprintf(&url, "%s%s", c->url, path) < 0 || !(h = curl_easy_init())) {
		url = NULL;
		goto out;
	}
	*s = (struct sink){.fn = s->fn, .h = h};
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROXY, ""); /* the API server itself, whatever *_proxy says */
	/* One response per connection: HTTP/2 would buy nothing. */
	curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	struct curl_blob ca = {.data = c->ca_pem, .len = c->ca_pem ? strlen(c->ca_pem) : 0},
			 cert = {.data = c->cert_pem, .len = c->cert_pem ? strlen(c->cert_pem) : 0},
			 key = {.data = c->key_pem, .len = c->key_pem ? strlen(c->key_pem) : 0};
	if (c->ca_pem) /* replaces any CA file: the cluster CA only */
		curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &ca);
	else
		curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
	curl_easy_setopt(h, CURLOPT_CAPATH, NULL); /* the cluster CA only, not the system's */
	if (c->cert_pem)
		curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cert);
	else if (c->cert_file)
		curl_easy_setopt(h, CURLOPT_SSLCERT, c->cert_file);
	if (c->key_pem)
		curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &key);
	else if (c->key_file)
		curl_easy_setopt(h, CURLOPT_SSLKEY, c->key_file);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)c->read_timeout_s);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 30L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 10L);
	curl_easy_setopt(h, CURLOPT_USERAGENT, c->user_agent);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, s);
	if (body) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
	}
	if (strcmp(method, body ? "POST" : "GET"))
		curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);

	CURLcode e = perform(c, h);
	if (e == CURLE_WRITE_ERROR && s->err)
		r = s->err;
	else
		r = e ? transfer_error(c, h, e, errbuf, why, size) : 0;
	if (!r && !s->status)
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &s->status);
out:
	if (r == -ENOMEM && !s->err)
		snprintf(why, size, "%s", strerror(ENOMEM));
	curl_easy_cleanup(h);
	for (l = hdrs; l; l = l->next) /* no copy of the token left behind */
		explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(hdrs);
	explicit_bzero(auth, sizeof(auth));
	free(url);
	return r;
}

int kube_request(struct kube_client *c, const char *method, const char *path,
		 const char *content_type, const void *body, size_t body_len, size_t max,
		 struct kube_response *resp)
{
	memset(resp, 0, sizeof(*resp));
	if (body && !content_type)
		return -EINVAL;
	struct body_sink b = {.s.fn = body_fn, .max = max};
	int r = transfer(c, method, path, content_type, body, body_len, &b.s, resp->error,
			 sizeof(resp->error));
	if (r == -EMSGSIZE && b.s.err)
		snprintf(resp->error, sizeof(resp->error), "response body over %zu bytes", max);
	else if (r < 0 && b.s.err)
		snprintf(resp->error, sizeof(resp->error), "%s", strerror(-r));
	if (r < 0) {
		free(b.buf);
		return r;
	}
	resp->status = (int)b.s.status;
	resp->body = b.buf;
	resp->len = b.len;
	return 0;
}

void kube_response_free(struct kube_response *resp)
{
	free(resp->body);
	memset(resp, 0, sizeof(*resp));
}

/* Why an API answer was not 200, for the log: its Status reason when there is one. */
static int status_error(long code, const char *body, size_t len, char *why, size_t size)
{
	json_t *j = body ? json_loadb(body, len, 0, NULL) : NULL;
	const char *reason = json_string_value(json_object_get(j, "reason"));
	snprintf(why, size, "HTTP %ld%s%s", code, reason ? " " : "", reason ? reason : "");
	json_decref(j);
	return code == 410 ? -ESTALE : code == 401 || code == 403 ? -EACCES : -EIO;
}

/* ---- list+watch ---- */

struct kube_watch {
	struct kube_watch_config cfg; /* path and selector owned */
	struct kube_watch_ops ops;
	void *ctx;
	char *rv; /* to watch from: set when a list completes, then by events */
	char *list_rv, *cont; /* of the list being read; cont escaped */
	char *lb; /* the event line being received */
	size_t llen, lcap;
	int failed; /* the event stream's error, once it has one */
	char why[320];
};

struct kube_watch *kube_watch_new(const struct kube_watch_config *cfg,
				  const struct kube_watch_ops *ops, void *ctx)
{
	if (!cfg->path || cfg->path[0] != '/' || !ops->list_item || !ops->list_done ||
	    !ops->event) {
		errno = EINVAL;
		return NULL;
	}
	struct kube_watch *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->cfg = (struct kube_watch_config){
		.path = strdup(cfg->path),
		.selector = cfg->selector ? strdup(cfg->selector) : NULL,
		.timeout_s = cfg->timeout_s > 0 ? cfg->timeout_s : 300,
		.backoff_max_ms = cfg->backoff_max_ms > 0 ? cfg->backoff_max_ms : 30000,
		.list_max = cfg->list_max ? cfg->list_max : 64u << 20,
		.event_max = cfg->event_max ? cfg->event_max : 4u << 20,
	};
	w->ops = *ops;
	w->ctx = ctx;
	w->rv = strdup("");
	if (!w->cfg.path || !w->rv || (cfg->selector && !w->cfg.selector)) {
		kube_watch_free(w);
		errno = ENOMEM;
		return NULL;
	}
	return w;
}

void kube_watch_free(struct kube_watch *w)
{
	if (!w)
		return;
	free((char *)w->cfg.path);
	free((char *)w->cfg.selector);
	free(w->rv);
	free(w->list_rv);
	free(w->cont);
	free(w->lb);
	free(w);
}

const char *kube_watch_resource_version(const struct kube_watch *w)
{
	return w->rv;
}

/* Replace *dst by a copy of src; a missing or empty src keeps *dst. */
static void set_str(char **dst, const char *src)
{
	char *c = src && *src ? strdup(src) : NULL;
	if (c) {
		free(*dst);
		*dst = c;
	}
}

static const char *meta_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(json_object_get(obj, "metadata"), key));
}

/* One event line (CR stripped; empty lines are keep-alives). */
static int on_line(struct kube_watch *w, const char *line, size_t len)
{
	if (len && line[len - 1] == '\r')
		len--;
	if (!len)
		return 0;
	json_t *j = json_loadb(line, len, 0, NULL);
	const char *type = json_string_value(json_object_get(j, "type"));
	json_t *obj = json_object_get(j, "object");
	int r = 0;
	if (!type || !json_is_object(obj)) {
		snprintf(w->why, sizeof(w->why), "malformed watch event");
		r = -EBADMSG;
	} else if (!strcmp(type, "ERROR")) {
		json_int_t code = json_integer_value(json_object_get(obj, "code"));
		snprintf(w->why, sizeof(w->why), "watch error %lld", (long long)code);
		r = code == 410 ? -ESTALE : -EIO;
	} else if (!strcmp(type, "BOOKMARK")) {
		set_str(&w->rv, meta_str(obj, "resourceVersion"));
	} else if (!strcmp(type, "ADDED") || !strcmp(type, "MODIFIED") ||
		   !strcmp(type, "DELETED")) {
		if ((r = w->ops.event(w->ctx, type, obj)) < 0)
			snprintf(w->why, sizeof(w->why), "a %s event: %s", type, strerror(-r));
		else
			set_str(&w->rv, meta_str(obj, "resourceVersion"));
	} /* other types are for later API versions: ignored */
	json_decref(j);
	return r;
}

static int line_append(struct kube_watch *w, const char *data, size_t n)
{
	size_t cap = w->lcap ? w->lcap : 65536;
	while (cap - w->llen < n)
		cap *= 2;
	char *nb = cap == w->lcap ? w->lb : realloc(w->lb, cap);
	if (!nb)
		return -ENOMEM;
	w->lb = nb;
	w->lcap = cap;
	memcpy(w->lb + w->llen, data, n);
	w->llen += n;
	return 0;
}

static int feed_fail(struct kube_watch *w, int r)
{
	if (r == -EMSGSIZE)
		snprintf(w->why, sizeof(w->why), "a watch event over %zu bytes", w->cfg.event_max);
	else if (r == -ENOMEM)
		snprintf(w->why, sizeof(w->why), "%s", strerror(ENOMEM));
	w->failed = r;
	w->llen = 0;
	return r;
}

int kube_watch_feed(struct kube_watch *w, const char *data, size_t n)
{
	while (n && !w->failed) {
		const char *nl = memchr(data, '\n', n);
		size_t k = nl ? (size_t)(nl - data) : n;
		int r;
		if (k > w->cfg.event_max - w->llen)
			return feed_fail(w, -EMSGSIZE); /* before buffering it */
		if (!nl)
			return line_append(w, data, n) < 0 ? feed_fail(w, -ENOMEM) : 0;
		if (!w->llen)
			r = on_line(w, data, k); /* the whole line in this piece: no copy */
		else if ((r = line_append(w, data, k)) == 0)
			r = on_line(w, w->lb, w->llen);
		w->llen = 0;
		if (r < 0)
			return feed_fail(w, r);
		data += k + 1;
		n -= k + 1;
	}
	return w->failed;
}

int kube_watch_feed_end(struct kube_watch *w)
{
	int r = w->failed || !w->llen ? w->failed : on_line(w, w->lb, w->llen);
	w->llen = 0;
	return r < 0 && !w->failed ? feed_fail(w, r) : r;
}

int kube_watch_list_page(struct kube_watch *w, const char *body, size_t len)
{
	json_t *j = json_loadb(body, len, 0, NULL);
	json_t *items = json_object_get(j, "items"), *it;
	int r = json_is_array(items) ? 0 : -EBADMSG;
	if (r < 0)
		snprintf(w->why, sizeof(w->why), "the list of %s is not a list", w->cfg.path);
	size_t i;
	json_array_foreach(items, i, it)
	{
		if ((r = w->ops.list_item(w->ctx, it)) < 0) {
			snprintf(w->why, sizeof(w->why), "listing %s: %s", w->cfg.path,
				 strerror(-r));
			break;
		}
	}
	const char *rv = meta_str(j, "resourceVersion"), *cont = meta_str(j, "continue");
	free(w->list_rv);
	free(w->cont);
	w->list_rv = rv ? strdup(rv) : NULL;
	w->cont = cont && *cont ? kube_query_escape(cont) : NULL;
	if (r == 0 && ((rv && !w->list_rv) || (cont && *cont && !w->cont)))
		r = -ENOMEM;
	json_decref(j);
	return r < 0 ? r : w->cont ? 1 : 0;
}

/* "path?[selector&]" and the rest, or NULL. */
static char *target(const struct kube_watch *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static char *target(const struct kube_watch *w, const char *fmt, ...)
{
	char *rest, *t = NULL;
	const char *sel = w->cfg.selector;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&rest, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	if (asprintf(&t, "%s?%s%s%s", w->cfg.path, sel ? sel : "", sel ? "&" : "", rest) < 0)
		t = NULL;
	free(rest);
	return t;
}

/* Every page of the list, then list_done. 0, or -errno with w->why set. */
static int list_all(struct kube_watch *w, struct kube_client *c)
{
	char *t;
	int r;
	free(w->cont);
	w->cont = NULL;
	do {
		t = target(w, "limit=500%s%s", w->cont ? "&continue=" : "", w->cont ? w->cont : "");
		if (!t) {
			r = -ENOMEM;
			break;
		}
		struct body_sink b = {.s.fn = body_fn, .max = w->cfg.list_max};
		r = transfer(c, "GET", t, NULL, NULL, 0, &b.s, w->why, sizeof(w->why));
		free(t);
		if (r < 0 && b.s.err)
			snprintf(w->why, sizeof(w->why), "a list page of %s: %s", w->cfg.path,
				 r == -EMSGSIZE ? "too long" : strerror(-r));
		else if (r == 0 && b.s.status != 200)
			r = status_error(b.s.status, b.buf, b.len, w->why, sizeof(w->why));
		else if (r == 0)
			r = kube_watch_list_page(w, b.buf ? b.buf : "", b.len);
		free(b.buf);
	} while (r == 1);
	int d = w->ops.list_done(w->ctx, r == 0);
	if (r == 0 && d < 0)
		snprintf(w->why, sizeof(w->why), "listing %s: %s", w->cfg.path, strerror(-(r = d)));
	if (r == 0)
		set_str(&w->rv, w->list_rv);
	return r;
}

/* A watch's body: events while the answer is 200, else kept (cut) for its Status. */
struct watch_sink {
	struct body_sink b;
	struct kube_watch *w;
};

static int watch_fn(struct sink *s, const char *data, size_t n)
{
	struct watch_sink *ws = (struct watch_sink *)s;
	return s->status == 200 ? kube_watch_feed(ws->w, data, n) : body_append(&ws->b, data, n);
}

/* Watch from w->rv: 0 when the server ended the watch, -ESTALE to relist, or -errno. */
static int watch_once(struct kube_watch *w, struct kube_client *c)
{
	char *rv = kube_query_escape(w->rv);
	char *t = NULL;
	if (rv)
		t = target(w,
			   "watch=1&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=%d",
			   rv, w->cfg.timeout_s);
	free(rv);
	if (!t)
		return -ENOMEM;
	w->llen = 0;
	w->failed = 0;
	struct watch_sink ws = {{.s.fn = watch_fn, .max = STATUS_BODY_MAX, .truncate = true}, w};
	int r = transfer(c, "GET", t, NULL, NULL, 0, &ws.b.s, w->why, sizeof(w->why));
	free(t);
	if (r == 0 && ws.b.s.status != 200)
		r = status_error(ws.b.s.status, ws.b.buf, ws.b.len, w->why, sizeof(w->why));
	else if (r == 0)
		r = kube_watch_feed_end(w);
	free(ws.b.buf);
	return r;
}

static void report(struct kube_watch *w, enum kube_watch_state st, int r)
{
	if (st != KUBE_WATCH_SYNCED && !w->why[0])
		snprintf(w->why, sizeof(w->why), "%s", strerror(-r));
	if (w->ops.state)
		w->ops.state(w->ctx, st, st == KUBE_WATCH_SYNCED ? NULL : w->why);
}

int kube_watch_run(struct kube_watch *w, struct kube_client *c)
{
	int backoff = BACKOFF_MIN_MS, r;
	for (;;) {
		w->why[0] = 0;
		if ((r = list_all(w, c)) == -ECANCELED)
			return r;
		if (r < 0) {
			report(w, KUBE_WATCH_DOWN, r);
			if (client_sleep(c, backoff) < 0)
				return -ECANCELED;
			backoff = backoff > w->cfg.backoff_max_ms / 2 ? w->cfg.backoff_max_ms
								      : backoff * 2;
			continue;
		}
		report(w, KUBE_WATCH_SYNCED, 0);
		backoff = BACKOFF_MIN_MS;
		do {
			struct timespec t0, t1;
			w->why[0] = 0;
			clock_gettime(CLOCK_MONOTONIC, &t0);
			r = watch_once(w, c);
			clock_gettime(CLOCK_MONOTONIC, &t1);
			/* The server ended the watch (its timeout): watch again from the same point,
			 * but not in a tight loop against a server that ends every watch at once. */
			if (r == 0 && t1.tv_sec - t0.tv_sec < 1 && client_sleep(c, 1000) < 0)
				return -ECANCELED;
		} while (r == 0);
		if (r == -ECANCELED)
			return r;
		report(w, r == -ESTALE ? KUBE_WATCH_RELIST : KUBE_WATCH_DOWN, r);
		if (r != -ESTALE && client_sleep(c, backoff) < 0)
			return -ECANCELED;
	}
}
