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
	struct kube_watch *kw;
	char *node;
	pthread_t th;
	bool synced; /* atomic */
	enum wstate state;
	struct identity_pod **pods; /* working set, sorted by uid */
	size_t n, cap;
	struct identity_pod **got; /* the items of the list being read */
	size_t n_got, cap_got;
};

static struct watcher *g_watcher;

static void clear_set(struct watcher *w)
{
	for (size_t i = 0; i < w->n; i++)
		identity_pod_unref(w->pods[i]);
	w->n = 0;
}

static void clear_got(struct watcher *w)
{
	for (size_t i = 0; i < w->n_got; i++)
		identity_pod_unref(w->got[i]);
	w->n_got = 0;
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

static int on_list_item(void *ctx, const json_t *obj)
{
	struct watcher *w = ctx;
	struct identity_pod *p = identity_pod_from_json(obj);
	if (!p)
		return errno == ENOMEM ? -ENOMEM : 0; /* a malformed item is skipped, not fatal */
	if (w->n_got == w->cap_got) {
		size_t cap = w->cap_got ? w->cap_got * 2 : 64;
		struct identity_pod **v = realloc(w->got, cap * sizeof(*v));
		if (!v) {
			identity_pod_unref(p);
			return -ENOMEM;
		}
		w->got = v;
		w->cap_got = cap;
	}
	w->got[w->n_got++] = p;
	return 0;
}

static int on_list_done(void *ctx, bool complete)
{
	struct watcher *w = ctx;
	int r = 0;
	if (complete) {
		clear_set(w);
		for (size_t i = 0; i < w->n_got; i++) {
			if (r == 0)
				r = upsert(w, w->got[i]); /* takes the reference, also on failure */
			else
				identity_pod_unref(w->got[i]);
		}
		w->n_got = 0;
		if (r == 0)
			r = identity_publish(w->pods, w->n);
	}
	clear_got(w);
	return r;
}

static int on_event(void *ctx, const char *type, const json_t *obj)
{
	struct watcher *w = ctx;
	struct identity_pod *p = identity_pod_from_json(obj);
	if (!p) {
		if (errno == ENOMEM)
			return -ENOMEM;
		agent_log(AGENT_LOG_DEBUG, "identity: skipped a malformed pod in a %s event", type);
		return 0;
	}
	int r = 0;
	if (type[0] == 'D') {
		remove_uid(w, p->uid);
		identity_pod_unref(p);
	} else {
		r = upsert(w, p);
	}
	return r < 0 ? r : identity_publish(w->pods, w->n);
}

static void on_state(void *ctx, enum kube_watch_state st, const char *why)
{
	struct watcher *w = ctx;
	enum wstate ws = W_DOWN;
	if (st == KUBE_WATCH_RELIST) {
		agent_log(AGENT_LOG_DEBUG, "identity: %s; listing again", why);
		return;
	}
	if (st == KUBE_WATCH_SYNCED) {
		__atomic_store_n(&w->synced, true, __ATOMIC_RELEASE);
		ws = W_SYNCED;
	}
	if (ws == w->state)
		return;
	if (ws == W_SYNCED)
		agent_log(AGENT_LOG_INFO, "identity: %zu pods of node %s known from the API%s",
			  w->n, w->node, w->state == W_DOWN ? " again" : "");
	else
		agent_log(AGENT_LOG_WARN,
			  "identity: Kubernetes API unavailable (%s); keeping the %zu pods last "
			  "known, retrying",
			  why, w->n);
	w->state = ws;
}

static void *watch_main(void *arg)
{
	struct watcher *w = arg;
	int r = kube_watch_run(w->kw, w->kc);
	if (r != -ECANCELED)
		agent_log(AGENT_LOG_ERROR, "identity: the pod watch ended: %s", strerror(-r));
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
	kube_watch_free(w->kw);
	kube_client_free(w->kc);
	clear_set(w);
	clear_got(w);
	free(w->pods);
	free(w->got);
	free(w->node);
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
	int watch_timeout_s = cfg->watch_timeout_s > 0 ? cfg->watch_timeout_s : 300;
	w->node = strdup(cfg->node_name);
	char *node = kube_query_escape(cfg->node_name), *selector = NULL;
	if (!w->node || !node || asprintf(&selector, "fieldSelector=spec.nodeName%%3D%s", node) < 0)
		selector = NULL;
	free(node);
	if (!selector) {
		watcher_free(w);
		return -ENOMEM;
	}
	static const struct kube_watch_ops ops = {
		.list_item = on_list_item,
		.list_done = on_list_done,
		.event = on_event,
		.state = on_state,
	};
	struct kube_watch_config wc = {.path = "/api/v1/pods",
				       .selector = selector,
				       .timeout_s = watch_timeout_s,
				       .backoff_max_ms = cfg->backoff_max_ms,
				       .list_max = LIST_MAX_BYTES,
				       .event_max = EVENT_MAX_BYTES};
	w->kw = kube_watch_new(&wc, &ops, w);
	int e = errno;
	free(selector);
	if (!w->kw) {
		watcher_free(w);
		return -e;
	}
	struct kube_config kc = {.url = cfg->kube_api,
				 .token_file = cfg->token_file,
				 .ca_file = cfg->ca_file,
				 .read_timeout_s = watch_timeout_s + 60};
	w->kc = kube_client_new(&kc);
	if (!w->kc) {
		e = errno;
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
