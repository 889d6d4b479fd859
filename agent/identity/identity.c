// SPDX-License-Identifier: Apache-2.0
/*
 * The pods of this node, kept by one thread that lists and then watches them through the
 * Kubernetes API (kube.c). The thread owns a working set; after every change it publishes an
 * immutable, sorted table by pointer swap under a short mutex. Readers (steering rescans,
 * audit) hold that mutex only for a binary search, never across I/O, so a slow or absent API
 * server cannot stall the data path: lookups answer from the last table known.
 */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "identity.h"
#include "kube.h"
#include "log.h"

#define LIST_MAX_BYTES (64u << 20)
#define EVENT_MAX_BYTES (4u << 20) /* a watch event line over this: error, then relist */

/* ---- cgroup paths ---- */

static bool is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A pod UID (8-4-4-4-12 hex with `sep`) or a static pod's 32-hex config hash, normalised. */
static bool parse_uid(const char *s, size_t n, char sep, char *out)
{
	if (n != 36 && n != 32)
		return false;
	for (size_t i = 0; i < n; i++) {
		bool dash = n == 36 && (i == 8 || i == 13 || i == 18 || i == 23);
		if (dash ? s[i] != sep : !is_hex(s[i]))
			return false;
		out[i] = dash ? '-' : (char)tolower((unsigned char)s[i]);
	}
	out[n] = 0;
	return true;
}

static bool has_suffix(const char *s, size_t n, const char *suf, size_t *body)
{
	size_t k = strlen(suf);
	if (n <= k || memcmp(s + n - k, suf, k))
		return false;
	*body = n - k;
	return true;
}

static bool parse_pod_component(const char *c, size_t n, char *uid)
{
	size_t body;
	if (has_suffix(c, n, ".slice", &body)) {
		/* systemd: <...kubepods...>-pod<uid with _>.slice */
		for (size_t i = body; i >= 4; i--) {
			if (memcmp(c + i - 4, "-pod", 4))
				continue;
			if (!memmem(c, i - 4, "kubepods", 8))
				return false;
			return parse_uid(c + i, body - i, '_', uid);
		}
		return false;
	}
	return n > 3 && !memcmp(c, "pod", 3) && parse_uid(c + 3, n - 3, '-', uid);
}

/* [<runtime>-]<64 hex>[.scope]; anything else (crio-conmon-..., nested) is pod-level. */
static void parse_container_component(const char *c, size_t n, char *cid)
{
	static const char *const prefixes[] = {"cri-containerd-", "crio-", "docker-"};
	size_t body;
	if (has_suffix(c, n, ".scope", &body))
		n = body;
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		size_t k = strlen(prefixes[i]);
		if (n > k && !memcmp(c, prefixes[i], k)) {
			c += k;
			n -= k;
			break;
		}
	}
	if (n != 64)
		return;
	for (size_t i = 0; i < n; i++)
		if (!(c[i] >= '0' && c[i] <= '9') && !(c[i] >= 'a' && c[i] <= 'f'))
			return;
	memcpy(cid, c, n);
	cid[n] = 0;
}

int identity_parse_cgroup(const char *path, struct identity_cgroup *out)
{
	memset(out, 0, sizeof(*out));
	if (!path)
		return -ENOENT;
	bool kubepods = false, pod = false;
	const char *p = path;
	while (*p) {
		while (*p == '/')
			p++;
		size_t n = strcspn(p, "/");
		if (!n)
			break;
		if (pod) {
			parse_container_component(p, n, out->cid);
			return 0;
		}
		/* The pod's component comes below a kubepods one (or is one, systemd Guaranteed). */
		if (!kubepods)
			kubepods = memmem(p, n, "kubepods", 8) != NULL;
		if (kubepods && parse_pod_component(p, n, out->uid))
			pod = true;
		else if (kubepods && n > 3 && !memcmp(p, "pod", 3))
			break; /* pod-like but malformed: not a pod */
		p += n;
	}
	if (!pod)
		memset(out, 0, sizeof(*out));
	return pod ? 0 : -ENOENT;
}

/* ---- pods ---- */

struct identity_pod *identity_pod_ref(struct identity_pod *p)
{
	__atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
	return p;
}

void identity_pod_unref(struct identity_pod *p)
{
	if (!p || __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL))
		return;
	for (size_t i = 0; i < p->n_labels; i++) {
		free(p->label_keys[i]);
		free(p->label_values[i]);
	}
	free(p->label_keys);
	free(p->label_values);
	free(p->namespace_);
	free(p->name);
	free(p->service_account);
	free(p->resource_version);
	free(p);
}

static const char *jstr(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

struct kv {
	const char *k, *v;
};

static int cmp_kv(const void *a, const void *b)
{
	return strcmp(((const struct kv *)a)->k, ((const struct kv *)b)->k);
}

static int copy_labels(struct identity_pod *p, const json_t *labels)
{
	size_t n = json_is_object(labels) ? json_object_size(labels) : 0;
	if (!n)
		return 0;
	struct kv *v = calloc(n, sizeof(*v));
	p->label_keys = calloc(n, sizeof(char *));
	p->label_values = calloc(n, sizeof(char *));
	if (!v || !p->label_keys || !p->label_values) {
		free(v);
		return -ENOMEM;
	}
	size_t k = 0;
	const char *key;
	json_t *val;
	json_object_foreach((json_t *)labels, key, val)
	{
		if (json_is_string(val) && k < n)
			v[k++] = (struct kv){key, json_string_value(val)};
	}
	qsort(v, k, sizeof(*v), cmp_kv);
	for (size_t i = 0; i < k; i++) {
		p->label_keys[i] = strdup(v[i].k);
		p->label_values[i] = strdup(v[i].v);
		p->n_labels = i + 1;
		if (!p->label_keys[i] || !p->label_values[i]) {
			free(v);
			return -ENOMEM;
		}
	}
	free(v);
	return 0;
}

struct identity_pod *identity_pod_from_json(const json_t *obj)
{
	const json_t *meta = json_object_get(obj, "metadata");
	const json_t *spec = json_object_get(obj, "spec");
	const char *uid = jstr(meta, "uid"), *ns = jstr(meta, "namespace"),
		   *name = jstr(meta, "name");
	const char *sa = jstr(spec, "serviceAccountName");
	if (!sa || !*sa)
		sa = jstr(spec, "serviceAccount"); /* the deprecated alias */
	if (!sa || !*sa)
		sa = "default";
	struct identity_pod *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->refs = 1;
	if (!uid || !ns || !*ns || !name || !*name || !parse_uid(uid, strlen(uid), '-', p->uid)) {
		free(p);
		errno = EINVAL;
		return NULL;
	}
	const char *mirror =
		jstr(json_object_get(meta, "annotations"), "kubernetes.io/config.mirror");
	if (mirror && !parse_uid(mirror, strlen(mirror), '-', p->mirror))
		p->mirror[0] = 0;
	const char *rv = jstr(meta, "resourceVersion");
	p->namespace_ = strdup(ns);
	p->name = strdup(name);
	p->service_account = strdup(sa);
	p->resource_version = rv ? strdup(rv) : NULL;
	if (!p->namespace_ || !p->name || !p->service_account || (rv && !p->resource_version) ||
	    copy_labels(p, json_object_get(meta, "labels")) < 0) {
		identity_pod_unref(p);
		errno = ENOMEM;
		return NULL;
	}
	return p;
}

static const char *pod_label(const struct identity_pod *p, const char *key)
{
	size_t lo = 0, hi = p->n_labels;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(key, p->label_keys[mid]);
		if (!c)
			return p->label_values[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

bool identity_source_matches(const struct policy_source *src, const struct identity_pod *pod)
{
	if (!src->namespace_ && !src->service_account && !src->n_labels)
		return true;
	if (!pod)
		return false;
	if (src->namespace_ && strcmp(src->namespace_, pod->namespace_))
		return false;
	if (src->service_account && strcmp(src->service_account, pod->service_account))
		return false;
	for (size_t i = 0; i < src->n_labels; i++) {
		const char *v = pod_label(pod, src->label_keys[i]);
		if (!v || strcmp(v, src->label_values[i]))
			return false;
	}
	return true;
}

/* ---- the published table ---- */

struct table {
	struct identity_pod **by_uid; /* sorted by uid */
	size_t n;
	struct identity_pod **by_mirror; /* static pods, sorted by mirror hash */
	size_t n_mirror;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct table *g_table; /* guarded by g_lock; immutable once published */
static struct {
	pthread_mutex_t lock;
	void (*fn)(void *);
	void *ctx;
} g_cb = {PTHREAD_MUTEX_INITIALIZER, NULL, NULL};

static int cmp_uid(const void *a, const void *b)
{
	return strcmp((*(struct identity_pod *const *)a)->uid,
		      (*(struct identity_pod *const *)b)->uid);
}

static int cmp_mirror(const void *a, const void *b)
{
	return strcmp((*(struct identity_pod *const *)a)->mirror,
		      (*(struct identity_pod *const *)b)->mirror);
}

static void table_free(struct table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		identity_pod_unref(t->by_uid[i]);
	free(t->by_uid);
	free(t->by_mirror);
	free(t);
}

static struct identity_pod *find_in(struct identity_pod **v, size_t n, const char *key, bool mirror)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(key, mirror ? v[mid]->mirror : v[mid]->uid);
		if (!c)
			return v[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Caller holds g_lock. */
static struct identity_pod *table_find(const char *uid)
{
	if (!g_table)
		return NULL;
	struct identity_pod *p = find_in(g_table->by_uid, g_table->n, uid, false);
	return p ? p : find_in(g_table->by_mirror, g_table->n_mirror, uid, true);
}

int identity_publish(struct identity_pod *const *pods, size_t n)
{
	struct table *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->by_uid = calloc(n ? n : 1, sizeof(*t->by_uid));
	t->by_mirror = calloc(n ? n : 1, sizeof(*t->by_mirror));
	if (!t->by_uid || !t->by_mirror) {
		table_free(t);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		t->by_uid[t->n++] = identity_pod_ref(pods[i]);
		if (pods[i]->mirror[0])
			t->by_mirror[t->n_mirror++] = pods[i];
	}
	qsort(t->by_uid, t->n, sizeof(*t->by_uid), cmp_uid);
	qsort(t->by_mirror, t->n_mirror, sizeof(*t->by_mirror), cmp_mirror);
	pthread_mutex_lock(&g_lock);
	struct table *old = g_table;
	g_table = t;
	pthread_mutex_unlock(&g_lock);
	table_free(old);

	pthread_mutex_lock(&g_cb.lock);
	if (g_cb.fn)
		g_cb.fn(g_cb.ctx);
	pthread_mutex_unlock(&g_cb.lock);
	return 0;
}

size_t identity_count(void)
{
	pthread_mutex_lock(&g_lock);
	size_t n = g_table ? g_table->n : 0;
	pthread_mutex_unlock(&g_lock);
	return n;
}

void identity_set_change_cb(void (*fn)(void *ctx), void *ctx)
{
	pthread_mutex_lock(&g_cb.lock);
	g_cb.fn = fn;
	g_cb.ctx = ctx;
	pthread_mutex_unlock(&g_cb.lock);
}

bool identity_source_matches_cgroup(const struct policy_source *src, const char *cgroup_path)
{
	if (!src->namespace_ && !src->service_account && !src->n_labels)
		return true;
	struct identity_cgroup cg;
	if (identity_parse_cgroup(cgroup_path, &cg) < 0)
		return false;
	pthread_mutex_lock(&g_lock);
	bool m = identity_source_matches(src, table_find(cg.uid));
	pthread_mutex_unlock(&g_lock);
	return m;
}

struct identity_pod *identity_lookup_cgroup(const char *cgroup_path)
{
	struct identity_cgroup cg;
	if (identity_parse_cgroup(cgroup_path, &cg) < 0)
		return NULL;
	pthread_mutex_lock(&g_lock);
	struct identity_pod *p = table_find(cg.uid);
	if (p)
		identity_pod_ref(p);
	pthread_mutex_unlock(&g_lock);
	return p;
}

const char *identity_caller_name(const char *cgroup_path, char *buf, size_t size)
{
	struct identity_pod *p = identity_lookup_cgroup(cgroup_path);
	if (!p)
		return cgroup_path;
	int n = snprintf(buf, size, "%s/%s", p->namespace_, p->name);
	identity_pod_unref(p);
	return n > 0 && (size_t)n < size ? buf : cgroup_path;
}

/* ---- the list/watch thread ---- */

enum wstate { W_INIT, W_SYNCED, W_DOWN };

struct watcher {
	struct kube_client *kc;
	char *node;
	int backoff_max_ms, watch_timeout_s;
	pthread_t th;
	pthread_mutex_t lock; /* guards stop, for cond */
	pthread_cond_t cond;
	bool stop;
	bool synced; /* atomic */
	enum wstate state;
	struct identity_pod **pods; /* working set, sorted by uid */
	size_t n, cap;
	char *rv; /* resourceVersion to watch from */
};

static struct watcher *g_watcher;

static bool stopping(struct watcher *w)
{
	pthread_mutex_lock(&w->lock);
	bool s = w->stop;
	pthread_mutex_unlock(&w->lock);
	return s;
}

static void sleep_ms(struct watcher *w, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->lock);
	while (!w->stop && pthread_cond_timedwait(&w->cond, &w->lock, &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&w->lock);
}

static void set_rv(struct watcher *w, const char *rv)
{
	if (!rv || !*rv)
		return;
	char *c = strdup(rv);
	if (!c)
		return;
	free(w->rv);
	w->rv = c;
}

static void clear_set(struct watcher *w)
{
	for (size_t i = 0; i < w->n; i++)
		identity_pod_unref(w->pods[i]);
	w->n = 0;
}

/* Insert or replace by uid (takes the reference). */
static int upsert(struct watcher *w, struct identity_pod *p)
{
	size_t lo = 0, hi = w->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(p->uid, w->pods[mid]->uid);
		if (!c) {
			identity_pod_unref(w->pods[mid]);
			w->pods[mid] = p;
			return 0;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	if (w->n == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 64;
		struct identity_pod **v = realloc(w->pods, cap * sizeof(*v));
		if (!v) {
			identity_pod_unref(p);
			return -ENOMEM;
		}
		w->pods = v;
		w->cap = cap;
	}
	memmove(w->pods + lo + 1, w->pods + lo, (w->n - lo) * sizeof(*w->pods));
	w->pods[lo] = p;
	w->n++;
	return 0;
}

static void remove_uid(struct watcher *w, const char *uid)
{
	for (size_t i = 0; i < w->n; i++) {
		if (strcmp(w->pods[i]->uid, uid))
			continue;
		identity_pod_unref(w->pods[i]);
		memmove(w->pods + i, w->pods + i + 1, (w->n - i - 1) * sizeof(*w->pods));
		w->n--;
		return;
	}
}

/* Percent-encode `s` for a query value. */
static char *query_escape(const char *s)
{
	size_t n = strlen(s);
	char *o = malloc(n * 3 + 1), *q = o;
	if (!o)
		return NULL;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
			*q++ = (char)c;
		else
			q += sprintf(q, "%%%02X", c);
	}
	*q = 0;
	return o;
}

/* Why an API answer was not 200, for the log: the Status message when there is one. */
static int status_error(struct kube_stream *s, char *why, size_t size)
{
	int code = kube_stream_status(s);
	char *body = NULL;
	size_t len = 0;
	const char *msg = NULL;
	json_t *j = NULL;
	if (kube_stream_read_all(s, &body, &len, 65536) == 0) {
		j = json_loadb(body, len, 0, NULL);
		msg = jstr(j, "reason");
	}
	snprintf(why, size, "HTTP %d%s%s", code, msg ? " " : "", msg ? msg : "");
	json_decref(j);
	free(body);
	return code == 410 ? -ESTALE : code == 401 || code == 403 ? -EACCES : -EIO;
}

static int do_list(struct watcher *w, char *why, size_t size)
{
	char *node = query_escape(w->node), *cont = NULL, *target = NULL;
	struct identity_pod **got = NULL;
	size_t n = 0, cap = 0;
	int r = node ? 0 : -ENOMEM;
	char *rv = NULL;
	while (r == 0) {
		free(target);
		if (asprintf(&target,
			     "/api/v1/pods?fieldSelector=spec.nodeName%%3D%s&limit=500%s%s", node,
			     cont ? "&continue=" : "", cont ? cont : "") < 0) {
			target = NULL;
			r = -ENOMEM;
			break;
		}
		struct kube_stream *s;
		if ((r = kube_get(w->kc, target, &s)) < 0) {
			snprintf(why, size, "%s", kube_client_error(w->kc));
			break;
		}
		if (kube_stream_status(s) != 200) {
			r = status_error(s, why, size);
			kube_stream_close(s);
			break;
		}
		char *body = NULL;
		size_t len = 0;
		r = kube_stream_read_all(s, &body, &len, LIST_MAX_BYTES);
		kube_stream_close(s);
		if (r < 0) {
			snprintf(why, size, "reading the pod list: %s", strerror(-r));
			break;
		}
		json_error_t jerr;
		json_t *j = json_loadb(body, len, 0, &jerr);
		free(body);
		json_t *items = json_object_get(j, "items");
		if (!j || !json_is_array(items)) {
			snprintf(why, size, "pod list is not a PodList");
			json_decref(j);
			r = -EBADMSG;
			break;
		}
		size_t i;
		json_t *it;
		json_array_foreach(items, i, it)
		{
			struct identity_pod *p = identity_pod_from_json(it);
			if (!p)
				continue; /* a malformed item is skipped, not fatal */
			if (n == cap) {
				size_t nc = cap ? cap * 2 : 64;
				struct identity_pod **v = realloc(got, nc * sizeof(*v));
				if (!v) {
					identity_pod_unref(p);
					r = -ENOMEM;
					break;
				}
				got = v;
				cap = nc;
			}
			got[n++] = p;
		}
		const json_t *meta = json_object_get(j, "metadata");
		free(rv);
		rv = jstr(meta, "resourceVersion") ? strdup(jstr(meta, "resourceVersion")) : NULL;
		free(cont);
		const char *c = jstr(meta, "continue");
		cont = c && *c ? query_escape(c) : NULL;
		json_decref(j);
		if (r < 0 || !cont)
			break;
	}
	if (r == 0) {
		clear_set(w);
		for (size_t i = 0; i < n && r == 0; i++) {
			r = upsert(w, got[i]); /* takes the reference, also on failure */
			got[i] = NULL;
		}
		set_rv(w, rv);
		if (r == 0)
			r = identity_publish(w->pods, w->n);
	}
	for (size_t i = 0; i < n; i++)
		if (got[i])
			identity_pod_unref(got[i]);
	free(got);
	free(rv);
	free(cont);
	free(target);
	free(node);
	return r;
}

/* One watch event; 0, -ESTALE (relist), or -errno. */
static int on_event(struct watcher *w, const char *line, size_t len, char *why, size_t size)
{
	json_t *j = json_loadb(line, len, 0, NULL);
	const char *type = jstr(j, "type");
	json_t *obj = json_object_get(j, "object");
	int r = 0;
	if (!type || !json_is_object(obj)) {
		snprintf(why, size, "malformed watch event");
		r = -EBADMSG;
	} else if (!strcmp(type, "ERROR")) {
		json_int_t code = json_integer_value(json_object_get(obj, "code"));
		snprintf(why, size, "watch error %lld", (long long)code);
		r = code == 410 ? -ESTALE : -EIO;
	} else if (!strcmp(type, "BOOKMARK")) {
		set_rv(w, jstr(json_object_get(obj, "metadata"), "resourceVersion"));
	} else if (!strcmp(type, "ADDED") || !strcmp(type, "MODIFIED") ||
		   !strcmp(type, "DELETED")) {
		struct identity_pod *p = identity_pod_from_json(obj);
		if (!p) {
			agent_log(AGENT_LOG_DEBUG,
				  "identity: skipped a malformed pod in a %s event", type);
		} else {
			set_rv(w, p->resource_version);
			if (type[0] == 'D') {
				remove_uid(w, p->uid);
				identity_pod_unref(p);
			} else {
				r = upsert(w, p);
			}
			if (r == 0)
				r = identity_publish(w->pods, w->n);
		}
	}
	json_decref(j);
	return r;
}

/* Watch from w->rv: 0 when the server ended the watch, -ESTALE to relist, or -errno. */
static int do_watch(struct watcher *w, char *why, size_t size)
{
	char *node = query_escape(w->node), *rv = query_escape(w->rv ? w->rv : ""), *target = NULL;
	int r = -ENOMEM;
	if (node && rv &&
	    asprintf(&target,
		     "/api/v1/pods?fieldSelector=spec.nodeName%%3D%s&watch=1&resourceVersion=%s"
		     "&allowWatchBookmarks=true&timeoutSeconds=%d",
		     node, rv, w->watch_timeout_s) < 0)
		target = NULL;
	free(node);
	free(rv);
	if (!target)
		return r;
	struct kube_stream *s;
	r = kube_get(w->kc, target, &s);
	free(target);
	if (r < 0) {
		snprintf(why, size, "%s", kube_client_error(w->kc));
		return r;
	}
	if (kube_stream_status(s) != 200) {
		r = status_error(s, why, size);
		kube_stream_close(s);
		return r;
	}
	for (;;) {
		char *line;
		size_t len;
		r = kube_stream_read_line(s, &line, &len, EVENT_MAX_BYTES);
		if (r == -ENODATA) {
			r = 0;
			break;
		}
		if (r == -EMSGSIZE) {
			snprintf(why, size, "a watch event over %u bytes", EVENT_MAX_BYTES);
			break;
		}
		if (r < 0) {
			snprintf(why, size, "reading the watch: %s", strerror(-r));
			break;
		}
		if ((r = on_event(w, line, len, why, size)) < 0)
			break;
	}
	kube_stream_close(s);
	return r;
}

static void set_state(struct watcher *w, enum wstate st, const char *why)
{
	if (st == w->state)
		return;
	if (st == W_SYNCED)
		agent_log(AGENT_LOG_INFO, "identity: %zu pods of node %s known from the API%s",
			  w->n, w->node, w->state == W_DOWN ? " again" : "");
	else if (st == W_DOWN)
		agent_log(AGENT_LOG_WARN,
			  "identity: Kubernetes API unavailable (%s); keeping the %zu pods last "
			  "known, retrying",
			  why, w->n);
	w->state = st;
}

static void *watch_main(void *arg)
{
	struct watcher *w = arg;
	int backoff = 500;
	char why[320];
	while (!stopping(w)) {
		why[0] = 0;
		int r = do_list(w, why, sizeof(why));
		if (r < 0) {
			if (r == -ECANCELED)
				break;
			set_state(w, W_DOWN, why[0] ? why : strerror(-r));
			sleep_ms(w, backoff);
			backoff = backoff * 2 > w->backoff_max_ms ? w->backoff_max_ms : backoff * 2;
			continue;
		}
		__atomic_store_n(&w->synced, true, __ATOMIC_RELEASE);
		set_state(w, W_SYNCED, NULL);
		backoff = 500;
		while (!stopping(w)) {
			why[0] = 0;
			struct timespec t0, t1;
			clock_gettime(CLOCK_MONOTONIC, &t0);
			r = do_watch(w, why, sizeof(why));
			if (r == 0) {
				/* The server's timeout: watch again from the same point, but not in a
				 * tight loop against a server that ends every watch at once. */
				clock_gettime(CLOCK_MONOTONIC, &t1);
				if (t1.tv_sec - t0.tv_sec < 1)
					sleep_ms(w, 1000);
				continue;
			}
			if (r == -ESTALE) {
				agent_log(AGENT_LOG_DEBUG, "identity: %s; listing again", why);
				break;
			}
			if (r != -ECANCELED) {
				set_state(w, W_DOWN, why[0] ? why : strerror(-r));
				sleep_ms(w, backoff);
			}
			break;
		}
	}
	return NULL;
}

static bool valid_node_name(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > 253)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) && s[i] != '-' &&
		    s[i] != '.')
			return false;
	return true;
}

static void watcher_free(struct watcher *w)
{
	if (!w)
		return;
	kube_client_free(w->kc);
	clear_set(w);
	free(w->pods);
	free(w->rv);
	free(w->node);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

int identity_start(const struct identity_config *cfg)
{
	if (g_watcher)
		return -EALREADY;
	if (!cfg->node_name || !valid_node_name(cfg->node_name))
		return -EINVAL;
	struct watcher *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);
	w->backoff_max_ms = cfg->backoff_max_ms > 0 ? cfg->backoff_max_ms : 30000;
	w->watch_timeout_s = cfg->watch_timeout_s > 0 ? cfg->watch_timeout_s : 300;
	w->node = strdup(cfg->node_name);
	struct kube_config kc = {.url = cfg->kube_api,
				 .token_file = cfg->token_file,
				 .ca_file = cfg->ca_file,
				 .read_timeout_s = w->watch_timeout_s + 60};
	w->kc = w->node ? kube_client_new(&kc) : NULL;
	if (!w->kc) {
		int e = w->node ? errno : ENOMEM;
		watcher_free(w);
		return -e;
	}
	int r = pthread_create(&w->th, NULL, watch_main, w);
	if (r) {
		watcher_free(w);
		return -r;
	}
	g_watcher = w;
	return 0;
}

bool identity_synced(void)
{
	return g_watcher && __atomic_load_n(&g_watcher->synced, __ATOMIC_ACQUIRE);
}

void identity_stop(void)
{
	struct watcher *w = g_watcher;
	if (w) {
		pthread_mutex_lock(&w->lock);
		w->stop = true;
		pthread_cond_broadcast(&w->cond);
		pthread_mutex_unlock(&w->lock);
		kube_client_abort(w->kc);
		pthread_join(w->th, NULL);
		g_watcher = NULL;
		watcher_free(w);
	}
	identity_set_change_cb(NULL, NULL);
	pthread_mutex_lock(&g_lock);
	struct table *t = g_table;
	g_table = NULL;
	pthread_mutex_unlock(&g_lock);
	table_free(t);
}
