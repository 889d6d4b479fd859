/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Policies as Kubernetes resources (cluster.h). Three threads over one Kubernetes client:
 *  - a list/watch of MaskingPolicy (all namespaces) and one of ClusterMaskingPolicy: each
 *    version goes to the store as it arrives (a watch event is applied within milliseconds;
 *    a status-only change, same metadata.generation, is skipped); a completed list replaces
 *    what was known (resources deleted while the watch was down leave);
 *  - the status writer: after a change (a resource, or the store: a file now shadowing a
 *    resource) it waits status_delay_ms for more, then server-side applies this node's
 *    MaskingPolicyNodeStatus when its content changed. One object per node, one writer: no
 *    conflict, no read-modify-write, and no other agent receives it (agents do not watch
 *    status objects). It is owned by the Node object, so the garbage collector removes it
 *    when the node leaves the cluster.
 * Locking: c->lock guards the resource table and the writer's flags; it is never held while
 * calling into the store (whose subscriber callback takes c->lock under the store's lock).
 */
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cluster.h"
#include "kube.h"
#include "log.h"
#include "metrics.h"
#include "store.h"
#include "summary.h"

#define API_PREFIX "/apis/meshmask.io/v1alpha1"
#define CHANGED_AT_ANNOTATION "meshmask.io/changed-at"
#define STATUS_MAX_ERRORS 10
#define LIST_MAX (64u << 20)
#define EVENT_MAX (4u << 20)

/* A resource this node knows, by its key in the store. */
struct res {
	char *key; /* "pii" or "shop.pii" */
	char *resource; /* "ClusterMaskingPolicy/pii", "MaskingPolicy/shop/pii" */
	const char *kind; /* static */
	char *ns, *name;
	long long generation;
	char applied_at[32]; /* RFC 3339, when this generation was handed to the store */
	int rules; /* spec.rules entries, for the summary status */
	char ready[8], ready_since[40]; /* the Ready condition the resource carries */
	bool seen; /* in the list being read */
};

struct cluster;

/* One list/watch: a kind. */
struct kindw {
	struct cluster *c;
	const char *kind;
	const char *plural;
	bool namespaced;
	struct kube_watch *kw;
	pthread_t th;
	bool started;
	int state; /* 0 init, 1 synced, 2 down: log once per change */
};

struct cluster {
	struct store *st;
	struct kube_client *kc;
	char *node;
	int delay_ms;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool dirty, stop;
	struct res *v;
	size_t n;
	struct kindw w[2];
	pthread_t status_th;
	bool status_started, subscribed;
	char *last_written; /* the status body last applied */
	char node_uid[64];
	bool uid_tried;
	struct summary *summary; /* NULL without a lease namespace */
};

static void res_clear(struct res *r)
{
	free(r->key);
	free(r->resource);
	free(r->ns);
	free(r->name);
}

static ssize_t res_find(const struct cluster *c, const char *key)
{
	for (size_t i = 0; i < c->n; i++)
		if (!strcmp(c->v[i].key, key))
			return (ssize_t)i;
	return -1;
}

static void mark_dirty(struct cluster *c)
{
	pthread_mutex_lock(&c->lock);
	c->dirty = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void on_store_change(void *ctx, struct policy_set *set)
{
	(void)set;
	mark_dirty(ctx);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void rfc3339_now(char out[32])
{
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* "2024-05-01T10:00:00.123456Z" → Unix seconds; -1 when not that shape. */
static double parse_rfc3339(const char *s)
{
	struct tm tm = {0};
	const char *p = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
	if (!p)
		return -1;
	double frac = 0, scale = 0.1;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
			frac += (*p - '0') * scale;
	if (strcmp(p, "Z"))
		return -1;
	return (double)timegm(&tm) + frac;
}

/* ---- a resource → a policy document --------------------------------------------------- */

static void add_err(struct policy_errors *errs, const char *pointer, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void add_err(struct policy_errors *errs, const char *pointer, const char *fmt, ...)
{
	struct policy_error *nv = realloc(errs->v, (errs->n + 1) * sizeof(*nv));
	if (!nv)
		return;
	errs->v = nv;
	char *msg = NULL;
	va_list ap;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	nv[errs->n++] = (struct policy_error){.pointer = strdup(pointer), .message = msg};
}

/*
 * The policy document of a resource: kind MaskingPolicy, metadata name (and namespace), its
 * spec. A MaskingPolicy covers callers of its own namespace only: every source gets that
 * namespace (no sources: one source, the namespace), and a source naming another namespace is
 * an error (errs). Returns the JSON text (malloc'd) or NULL (errs filled, or ENOMEM).
 */
static char *policy_doc(const json_t *obj, const char *ns, const char *name,
			struct policy_errors *errs)
{
	json_t *spec = json_object_get(obj, "spec");
	json_t *doc = json_pack("{s:s,s:s,s:{s:s}}", "apiVersion", "meshmask.io/v1alpha1", "kind",
				"MaskingPolicy", "metadata", "name", name);
	if (!doc)
		return NULL;
	if (ns)
		json_object_set_new(json_object_get(doc, "metadata"), "namespace", json_string(ns));
	if (spec) {
		spec = json_deep_copy(spec);
		json_object_set_new(doc, "spec", spec);
	}
	if (ns && json_is_object(spec)) {
		json_t *sel = json_object_get(spec, "selector");
		if (!sel) {
			sel = json_object();
			json_object_set_new(spec, "selector", sel);
		}
		json_t *srcs = json_is_object(sel) ? json_object_get(sel, "sources") : NULL;
		if (json_is_object(sel) && !srcs)
			json_object_set_new(sel, "sources", json_pack("[{s:s}]", "namespace", ns));
		size_t i;
		json_t *src;
		json_array_foreach(srcs, i, src)
		{
			if (!json_is_object(src))
				continue; /* the validator reports it */
			const char *sn = json_string_value(json_object_get(src, "namespace"));
			if (sn && strcmp(sn, ns)) {
				char ptr[80];
				snprintf(ptr, sizeof(ptr), "/spec/selector/sources/%zu/namespace",
					 i);
				add_err(errs, ptr,
					"a MaskingPolicy covers callers in its own namespace (%s) "
					"only: "
					"use a ClusterMaskingPolicy for others",
					ns);
			} else if (!sn) {
				json_object_set_new(src, "namespace", json_string(ns));
			}
		}
	}
	char *text = errs->n ? NULL : json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	return text;
}

/* Keep what the summary needs of a resource: its rule count and its Ready condition. */
static void note_status(struct res *r, const json_t *obj)
{
	r->rules = (int)json_array_size(json_object_get(json_object_get(obj, "spec"), "rules"));
	r->ready[0] = r->ready_since[0] = 0;
	size_t i;
	json_t *cnd;
	json_array_foreach(json_object_get(json_object_get(obj, "status"), "conditions"), i, cnd)
	{
		const char *t = json_string_value(json_object_get(cnd, "type"));
		const char *st = json_string_value(json_object_get(cnd, "status"));
		const char *lt = json_string_value(json_object_get(cnd, "lastTransitionTime"));
		if (!t || strcmp(t, "Ready") || !st)
			continue;
		snprintf(r->ready, sizeof(r->ready), "%s", st);
		snprintf(r->ready_since, sizeof(r->ready_since), "%s", lt ? lt : "");
	}
}

/*
 * Hand one version of a resource to the store; update the table. event_t: when it arrived.
 * A watch event of the generation already applied (a status change) is skipped; a list item
 * never is, so a relist retries a version this node refused (a key file that appeared since).
 */
static int apply_object(struct kindw *w, const json_t *obj, double event_t, bool listed)
{
	struct cluster *c = w->c;
	json_t *md = json_object_get(obj, "metadata");
	const char *name = json_string_value(json_object_get(md, "name"));
	const char *ns = w->namespaced ? json_string_value(json_object_get(md, "namespace")) : NULL;
	long long gen = json_integer_value(json_object_get(md, "generation"));
	if (!name || !*name || (w->namespaced && (!ns || !*ns)) || strchr(name, '/') ||
	    (ns && strchr(ns, '/'))) {
		agent_log(AGENT_LOG_WARN, "policies: a %s without a name or namespace, skipped",
			  w->kind);
		return 0;
	}
	char key[300], resource[300];
	if (ns)
		snprintf(key, sizeof(key), "%s.%s", ns, name);
	else
		snprintf(key, sizeof(key), "%s", name);
	if (ns)
		snprintf(resource, sizeof(resource), "%s/%s/%s", w->kind, ns, name);
	else
		snprintf(resource, sizeof(resource), "%s/%s", w->kind, name);

	pthread_mutex_lock(&c->lock);
	ssize_t idx = res_find(c, key);
	bool known = idx >= 0 && gen > 0 && c->v[idx].generation == gen;
	bool same = !listed && known;
	if (idx >= 0) {
		c->v[idx].seen = true;
		note_status(&c->v[idx], obj);
	}
	pthread_mutex_unlock(&c->lock);
	if (same)
		return 0; /* a status change, or the same version listed again */

	struct policy_errors errs = {0};
	char *text = policy_doc(obj, ns, name, &errs);
	int r;
	if (text)
		r = store_crd_put(c->st, key, resource, text, strlen(text), NULL);
	else if (errs.n)
		r = store_crd_refuse(c->st, key, resource, &errs);
	else
		r = -ENOMEM;
	free(text);
	policy_errors_free(&errs);
	if (r == -ENOMEM)
		return r;
	if ((r == 0 || r == -EEXIST) && !known) { /* a new version, not one listed again */
		const char *ca = json_string_value(
			json_object_get(json_object_get(md, "annotations"), CHANGED_AT_ANNOTATION));
		double t0 = parse_rfc3339(ca), t = now_s();
		if (t0 < 0 || t0 > t + 5 || t - t0 > 3600)
			t0 = event_t;
		metrics_policy_applied("crd", t - t0);
	}

	pthread_mutex_lock(&c->lock);
	idx = res_find(c, key);
	if (idx < 0) {
		struct res *nv = realloc(c->v, (c->n + 1) * sizeof(*nv));
		if (nv) {
			c->v = nv;
			idx = (ssize_t)c->n++;
			c->v[idx] = (struct res){.key = strdup(key),
						 .resource = strdup(resource),
						 .kind = w->kind,
						 .ns = ns ? strdup(ns) : NULL,
						 .name = strdup(name)};
		}
	}
	if (idx >= 0) {
		c->v[idx].generation = gen;
		c->v[idx].seen = true;
		rfc3339_now(c->v[idx].applied_at);
		note_status(&c->v[idx], obj);
	}
	c->dirty = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	summary_kick(c->summary);
	return 0;
}

static void forget(struct cluster *c, const char *key)
{
	store_crd_delete(c->st, key);
	pthread_mutex_lock(&c->lock);
	ssize_t idx = res_find(c, key);
	if (idx >= 0) {
		res_clear(&c->v[idx]);
		c->v[idx] = c->v[--c->n];
	}
	c->dirty = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	summary_kick(c->summary);
}

/* ---- watch callbacks -------------------------------------------------------------------- */

static int on_list_item(void *ctx, const json_t *obj)
{
	return apply_object(ctx, obj, now_s(), true);
}

/* A complete list replaces what was known of its kind: the resources it lacks leave. */
static int on_list_done(void *ctx, bool complete)
{
	struct kindw *w = ctx;
	struct cluster *c = w->c;
	char **gone = NULL;
	size_t n_gone = 0;
	pthread_mutex_lock(&c->lock);
	if (complete)
		gone = calloc(c->n + 1, sizeof(*gone));
	for (size_t i = 0; i < c->n; i++) {
		if (c->v[i].kind != w->kind)
			continue;
		if (gone && !c->v[i].seen)
			gone[n_gone++] = strdup(c->v[i].key);
		c->v[i].seen = false;
	}
	pthread_mutex_unlock(&c->lock);
	for (size_t i = 0; i < n_gone; i++) {
		if (!gone[i])
			continue;
		agent_log(AGENT_LOG_INFO, "policies: %s %s is gone (not in the list)", w->kind,
			  gone[i]);
		forget(c, gone[i]);
		free(gone[i]);
	}
	free(gone);
	return 0;
}

static int on_event(void *ctx, const char *type, const json_t *obj)
{
	struct kindw *w = ctx;
	if (strcmp(type, "DELETED"))
		return apply_object(w, obj, now_s(), false);
	json_t *md = json_object_get(obj, "metadata");
	const char *name = json_string_value(json_object_get(md, "name"));
	const char *ns = json_string_value(json_object_get(md, "namespace"));
	if (!name)
		return 0;
	char key[300];
	if (w->namespaced && ns)
		snprintf(key, sizeof(key), "%s.%s", ns, name);
	else
		snprintf(key, sizeof(key), "%s", name);
	forget(w->c, key);
	return 0;
}

static void on_state(void *ctx, enum kube_watch_state st, const char *why)
{
	struct kindw *w = ctx;
	if (st == KUBE_WATCH_RELIST) {
		agent_log(AGENT_LOG_INFO, "policies: %s watch expired (%s); listing again", w->kind,
			  why);
		return;
	}
	int s = st == KUBE_WATCH_SYNCED ? 1 : 2;
	if (s == w->state)
		return;
	if (s == 1)
		agent_log(AGENT_LOG_INFO, "policies: %s resources listed%s, watching", w->kind,
			  w->state == 2 ? " again" : "");
	else
		agent_log(AGENT_LOG_WARN,
			  "policies: Kubernetes API unavailable for %s (%s); the policies last "
			  "known stay in force, retrying",
			  w->kind, why);
	w->state = s;
}

static void *watch_main(void *arg)
{
	struct kindw *w = arg;
	int r = kube_watch_run(w->kw, w->c->kc);
	if (r != -ECANCELED)
		agent_log(AGENT_LOG_ERROR, "policies: %s watch ended: %s", w->kind, strerror(-r));
	return NULL;
}

/* ---- the node's status object ----------------------------------------------------------- */

struct snap {
	char *key, *kind, *ns, *name, *applied_at;
	long long generation;
};

static int cmp_snap(const void *a, const void *b)
{
	const struct snap *x = a, *y = b;
	int r = strcmp(x->kind, y->kind);
	if (!r)
		r = strcmp(x->ns ? x->ns : "", y->ns ? y->ns : "");
	return r ? r : strcmp(x->name, y->name);
}

/* The status object's apply body from the table and the store; NULL on ENOMEM. */
static char *status_body(struct cluster *c)
{
	pthread_mutex_lock(&c->lock);
	size_t n = c->n;
	struct snap *v = calloc(n + 1, sizeof(*v));
	for (size_t i = 0; v && i < n; i++)
		v[i] = (struct snap){.key = strdup(c->v[i].key),
				     .kind = strdup(c->v[i].kind),
				     .ns = c->v[i].ns ? strdup(c->v[i].ns) : NULL,
				     .name = strdup(c->v[i].name),
				     .applied_at = strdup(c->v[i].applied_at),
				     .generation = c->v[i].generation};
	pthread_mutex_unlock(&c->lock);
	if (!v)
		return NULL;
	qsort(v, n, sizeof(*v), cmp_snap);
	json_t *pols = json_array();
	for (size_t i = 0; i < n; i++) {
		struct store_crd_state s;
		if (!v[i].key || !v[i].name || store_crd_state(c->st, v[i].key, &s) < 0)
			continue;
		json_t *e = json_pack("{s:s,s:s,s:s,s:I,s:s,s:s}", "kind", v[i].kind, "namespace",
				      v[i].ns ? v[i].ns : "", "name", v[i].name, "generation",
				      (json_int_t)v[i].generation, "state",
				      s.refused ? "Refused" : "InForce", "appliedAt",
				      v[i].applied_at ? v[i].applied_at : "");
		char msg[600];
		if (!s.refused) {
			snprintf(msg, sizeof(msg), "in force (etag %.12s)", s.etag);
		} else {
			const struct policy_error *e0 = s.errs.n ? &s.errs.v[0] : NULL;
			snprintf(msg, sizeof(msg), "%s%s%s%s%s",
				 e0 && e0->pointer ? e0->pointer : "",
				 e0 && e0->pointer && *e0->pointer ? ": " : "",
				 e0 && e0->message ? e0->message : "refused",
				 s.errs.n > 1 ? " (and more)" : "",
				 s.previous_in_force ? "; the previous version stays in force"
						     : "");
			json_t *errs = json_array();
			for (size_t k = 0; k < s.errs.n && k < STATUS_MAX_ERRORS; k++)
				json_array_append_new(
					errs,
					json_pack("{s:s,s:s}", "pointer",
						  s.errs.v[k].pointer ? s.errs.v[k].pointer : "",
						  "message",
						  s.errs.v[k].message ? s.errs.v[k].message : ""));
			json_object_set_new(e, "errors", errs);
		}
		json_object_set_new(e, "message", json_string(msg));
		json_array_append_new(pols, e);
		store_crd_state_clear(&s);
	}
	for (size_t i = 0; i < n; i++) {
		free(v[i].key);
		free(v[i].kind);
		free(v[i].ns);
		free(v[i].name);
		free(v[i].applied_at);
	}
	free(v);
	json_t *doc =
		json_pack("{s:s,s:s,s:{s:s},s:s,s:s,s:o}", "apiVersion", "meshmask.io/v1alpha1",
			  "kind", "MaskingPolicyNodeStatus", "metadata", "name", c->node,
			  "nodeName", c->node, "agentVersion", MESHMASK_VERSION, "policies", pols);
	if (doc && c->node_uid[0])
		json_object_set_new(json_object_get(doc, "metadata"), "ownerReferences",
				    json_pack("[{s:s,s:s,s:s,s:s}]", "apiVersion", "v1", "kind",
					      "Node", "name", c->node, "uid", c->node_uid));
	char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	return text;
}

/* The Node's uid, for the status object's owner reference (garbage collection). */
static void fetch_node_uid(struct cluster *c)
{
	if (c->uid_tried)
		return;
	char path[400];
	char *node = kube_query_escape(c->node);
	snprintf(path, sizeof(path), "/api/v1/nodes/%s", node ? node : "");
	free(node);
	struct kube_response resp = {0};
	int r = kube_request(c->kc, "GET", path, NULL, NULL, 0, 1 << 20, &resp);
	if (r == -ECANCELED) {
		kube_response_free(&resp);
		return;
	}
	c->uid_tried = true;
	json_t *o = r == 0 && resp.status == 200 ? json_loadb(resp.body, resp.len, 0, NULL) : NULL;
	const char *uid = json_string_value(json_object_get(json_object_get(o, "metadata"), "uid"));
	if (uid && strlen(uid) < sizeof(c->node_uid))
		snprintf(c->node_uid, sizeof(c->node_uid), "%s", uid);
	else
		agent_log(AGENT_LOG_WARN,
			  "policies: cannot read Node %s (%s): its status object will not be "
			  "removed with the node",
			  c->node, r < 0 ? resp.error : "no uid in the answer");
	json_decref(o);
	kube_response_free(&resp);
}

static int write_status(struct cluster *c, const char *body)
{
	char path[400];
	char *node = kube_query_escape(c->node);
	snprintf(path, sizeof(path),
		 API_PREFIX "/maskingpolicynodestatuses/%s?fieldManager=meshmask-agent&force=true",
		 node ? node : "");
	free(node);
	struct kube_response resp = {0};
	int r = kube_request(c->kc, "PATCH", path, "application/apply-patch+yaml", body,
			     strlen(body), 1 << 20, &resp);
	if (r == 0 && (resp.status < 200 || resp.status > 299)) {
		agent_log(AGENT_LOG_WARN, "policies: status of node %s refused (HTTP %d)", c->node,
			  resp.status);
		r = -EIO;
	} else if (r < 0 && r != -ECANCELED) {
		agent_log(AGENT_LOG_WARN, "policies: status of node %s not written: %s", c->node,
			  resp.error);
	}
	kube_response_free(&resp);
	return r;
}

/* Wait until `ms` passed or stop; c->lock held. Returns whether to stop. */
static bool wait_ms(struct cluster *c, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	while (!c->stop && pthread_cond_timedwait(&c->cond, &c->lock, &ts) == 0)
		;
	return c->stop;
}

static void *status_main(void *arg)
{
	struct cluster *c = arg;
	int backoff = 0;
	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (!c->stop && !c->dirty)
			pthread_cond_wait(&c->cond, &c->lock);
		if (c->stop || wait_ms(c, c->delay_ms)) /* gather a burst of changes */
			break;
		c->dirty = false;
		pthread_mutex_unlock(&c->lock);
		fetch_node_uid(c);
		char *body = status_body(c);
		int r = 0;
		if (body && (!c->last_written || strcmp(body, c->last_written)))
			r = write_status(c, body);
		pthread_mutex_lock(&c->lock);
		if (r == 0 && body) {
			free(c->last_written);
			c->last_written = body;
			body = NULL;
			backoff = 0;
		} else if (r != -ECANCELED) {
			c->dirty = true; /* again after a backoff */
			backoff = backoff ? (backoff * 2 > 30000 ? 30000 : backoff * 2) : 500;
			if (wait_ms(c, backoff)) {
				free(body);
				break;
			}
		}
		free(body);
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

/* ---- the summary's view of the resources ------------------------------------------------ */

static void each_policy(void *ctx, void (*fn)(void *arg, const struct summary_policy *v, size_t n),
			void *arg)
{
	struct cluster *c = ctx;
	pthread_mutex_lock(&c->lock);
	struct summary_policy *v = calloc(c->n + 1, sizeof(*v));
	for (size_t i = 0; v && i < c->n; i++)
		v[i] = (struct summary_policy){.kind = c->v[i].kind,
					       .ns = c->v[i].ns,
					       .name = c->v[i].name,
					       .generation = c->v[i].generation,
					       .rules = c->v[i].rules,
					       .ready = c->v[i].ready,
					       .ready_since = c->v[i].ready_since};
	fn(arg, v, v ? c->n : 0);
	pthread_mutex_unlock(&c->lock);
	free(v);
}

/* ---- start/stop ------------------------------------------------------------------------- */

int cluster_start(struct cluster **out, const struct cluster_config *cfg, struct store *st)
{
	*out = NULL;
	if (!cfg->node_name || !*cfg->node_name)
		return -EINVAL;
	struct cluster *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->cond, NULL);
	c->st = st;
	c->delay_ms = cfg->status_delay_ms > 0 ? cfg->status_delay_ms : 200;
	int watch_timeout_s = cfg->watch_timeout_s > 0 ? cfg->watch_timeout_s : 300;
	int r = -ENOMEM;
	if (!(c->node = strdup(cfg->node_name)))
		goto fail;
	struct kube_config kc = {.url = cfg->kube_api,
				 .token_file = cfg->token_file,
				 .ca_file = cfg->ca_file,
				 .read_timeout_s = watch_timeout_s + 60};
	if (!(c->kc = kube_client_new(&kc))) {
		r = -errno;
		goto fail;
	}
	static const struct kube_watch_ops ops = {.list_item = on_list_item,
						  .list_done = on_list_done,
						  .event = on_event,
						  .state = on_state};
	c->w[0] = (struct kindw){
		.c = c, .kind = "MaskingPolicy", .plural = "maskingpolicies", .namespaced = true};
	c->w[1] = (struct kindw){
		.c = c, .kind = "ClusterMaskingPolicy", .plural = "clustermaskingpolicies"};
	for (int i = 0; i < 2; i++) {
		char path[128];
		snprintf(path, sizeof(path), API_PREFIX "/%s", c->w[i].plural);
		struct kube_watch_config wc = {.path = path,
					       .timeout_s = watch_timeout_s,
					       .backoff_max_ms = cfg->backoff_max_ms,
					       .list_max = LIST_MAX,
					       .event_max = EVENT_MAX};
		if (!(c->w[i].kw = kube_watch_new(&wc, &ops, &c->w[i]))) {
			r = -errno;
			goto fail;
		}
	}
	if ((r = store_subscribe(st, on_store_change, c)) < 0)
		goto fail;
	c->subscribed = true;
	if ((r = -pthread_create(&c->status_th, NULL, status_main, c)) < 0)
		goto fail;
	c->status_started = true;
	for (int i = 0; i < 2; i++) {
		if ((r = -pthread_create(&c->w[i].th, NULL, watch_main, &c->w[i])) < 0)
			goto fail;
		c->w[i].started = true;
	}
	if (cfg->lease_ns && *cfg->lease_ns) {
		struct summary_config sc = {.kube = kc,
					    .node = cfg->node_name,
					    .lease_ns = cfg->lease_ns,
					    .lease_name = cfg->lease_name,
					    .lease_s = cfg->lease_s,
					    .interval_ms = cfg->summary_interval_ms,
					    .watch_timeout_s = watch_timeout_s,
					    .backoff_max_ms = cfg->backoff_max_ms,
					    .agent_selector = cfg->agent_selector,
					    .agent_grace_s = cfg->agent_grace_s};
		if ((r = summary_start(&c->summary, &sc, each_policy, c)) < 0)
			goto fail;
	}
	*out = c;
	return 0;
fail:
	cluster_stop(c);
	return r;
}

void cluster_stop(struct cluster *c)
{
	if (!c)
		return;
	if (c->subscribed)
		store_unsubscribe(c->st, on_store_change, c);
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	if (c->kc)
		kube_client_abort(c->kc);
	for (int i = 0; i < 2; i++) {
		if (c->w[i].started)
			pthread_join(c->w[i].th, NULL);
		kube_watch_free(c->w[i].kw);
	}
	if (c->status_started)
		pthread_join(c->status_th, NULL);
	summary_stop(c->summary); /* after the watches (they kick it), before the table goes */
	kube_client_free(c->kc);
	for (size_t i = 0; i < c->n; i++)
		res_clear(&c->v[i]);
	free(c->v);
	free(c->last_written);
	free(c->node);
	pthread_mutex_destroy(&c->lock);
	pthread_cond_destroy(&c->cond);
	free(c);
}
