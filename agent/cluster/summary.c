/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The policies' summary status (summary.h). One thread per agent:
 *  - not holding the lease: read it every lease_s (with jitter); take it when it is free,
 *    released, or has not changed for lease_s by this agent's clock (client-go's rule: no
 *    trust in another node's clock), by an update carrying the resourceVersion read, so two
 *    candidates cannot both win;
 *  - holding it: renew every lease_s/3 (lost when a renewal is refused, or none succeeded
 *    for 2/3 of lease_s), and for the term run a list/watch of the MaskingPolicyNodeStatus
 *    objects on a client of its own (ending the term aborts it alone). After a change (a
 *    node status, or a policy: summary_kick) it waits interval_ms for more, sums every policy
 *    over the nodes and applies the status of each policy whose summary changed.
 * Locking: s->lock guards the node table, the flags and the cache of what was written; it is
 * never held while calling `each` (which takes the cluster's lock) or making a request.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "log.h"
#include "summary.h"

#define API_PREFIX "/apis/meshmask.io/v1alpha1"
#define LEASE_PREFIX "/apis/coordination.k8s.io/v1/namespaces/"
#define FIELD_MANAGER "meshmask-summary"
#define REFUSED_MAX 20 /* status.refusedNodes maxItems in the CRD */
#define ANSWER_MAX (1u << 20)

struct node_rep { /* one MaskingPolicyNodeStatus */
	char *name;
	json_t *policies; /* its "policies" array (owned reference) */
	bool down; /* in a sum: its agent not ready for agent_grace_s */
};

struct agent_pod { /* an agent Pod (agent_selector) */
	char *name, *node;
	bool ready;
};

struct agent_node { /* since when a node has had no ready agent Pod (monotonic; 0: it has) */
	char *node;
	double down_since;
};

struct written { /* the status last applied to a policy, by "Kind/ns/name" */
	char *key;
	char *body; /* NULL before the first write */
	char ready[8], since[40], reason[24];
	long long generation;
	double written_at; /* monotonic */
	long long pending_gen; /* the generation some nodes have not reported, since when */
	double pending_since;
	bool seen; /* in the last sum */
};

struct summary {
	struct kube_config kcfg; /* strings owned */
	char *node, *lease_ns, *lease_name;
	int lease_s, interval_ms, watch_timeout_s, backoff_max_ms;
	char *agent_selector; /* NULL: agents' readiness not watched */
	int agent_grace_s;
	summary_each_fn each;
	void *ctx;
	struct kube_client *kc; /* lease and status writes */

	pthread_t th;
	bool started;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC */
	bool stop;

	/* the term: while holding the lease */
	bool holder;
	json_t *lease; /* the Lease as last written or read */
	double renewed_at; /* monotonic, last successful renewal */
	char seen_key[400]; /* holder + renewTime last observed, and when (monotonic) */
	double seen_at;
	struct kube_client *wc; /* the node-status watch's own client */
	struct kube_watch *kw, *pkw; /* node statuses; agent Pods */
	pthread_t wth, pth;
	bool wth_started, pth_started;

	bool synced, dirty;
	double dirty_at;
	double due; /* a held-back write's time (monotonic), 0 none */
	struct node_rep *nodes, *listing;
	size_t n_nodes, n_listing;
	struct agent_pod *pods, *pod_listing;
	size_t n_pods, n_pod_listing;
	struct agent_node *anodes;
	size_t n_anodes;
	bool pods_synced;
	struct written *w;
	size_t n_w;
};

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Kubernetes MicroTime of now: "2026-01-02T15:04:05.000000Z". */
static void micro_now(char out[40])
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 40 - n, ".%06ldZ", ts.tv_nsec / 1000);
}

static void rfc3339_now(char out[40])
{
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 40, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Wait on s->cond (s->lock held) until the monotonic time `until` or a signal. */
static void wait_until(struct summary *s, double until)
{
	struct timespec ts;
	double t = until > 0 ? until : 0;
	ts.tv_sec = (time_t)t;
	ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
	pthread_cond_timedwait(&s->cond, &s->lock, &ts);
}

static void nodes_free(struct node_rep *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		json_decref(v[i].policies);
	}
	free(v);
}

/* Put (name, policies) into *v (replacing a same-named entry); policies: a new reference. */
static int nodes_put(struct node_rep **v, size_t *n, const char *name, json_t *policies)
{
	for (size_t i = 0; i < *n; i++) {
		if (!strcmp((*v)[i].name, name)) {
			json_decref((*v)[i].policies);
			(*v)[i].policies = policies;
			return 0;
		}
	}
	struct node_rep *nv = realloc(*v, (*n + 1) * sizeof(*nv));
	char *nm = strdup(name);
	if (!nv || !nm) {
		if (nv)
			*v = nv;
		free(nm);
		json_decref(policies);
		return -ENOMEM;
	}
	*v = nv;
	nv[(*n)++] = (struct node_rep){.name = nm, .policies = policies};
	return 0;
}

static void mark_dirty(struct summary *s)
{
	if (!s->dirty) {
		s->dirty = true;
		s->dirty_at = mono_s();
	}
	pthread_cond_broadcast(&s->cond);
}

/* ---- the node-status watch (the term's thread) ------------------------------------------ */

/* The node name and a new reference to the policies array of a status object; NULL name when
 * the object is not one. */
static const char *node_of(const json_t *obj, json_t **policies)
{
	const char *name =
		json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
	json_t *p = json_object_get(obj, "policies");
	*policies = json_is_array(p) ? json_incref(p) : json_array();
	return name && *name ? name : NULL;
}

static int on_list_item(void *ctx, const json_t *obj)
{
	struct summary *s = ctx;
	json_t *p;
	const char *name = node_of(obj, &p);
	if (!name) {
		json_decref(p);
		return 0;
	}
	pthread_mutex_lock(&s->lock);
	int r = nodes_put(&s->listing, &s->n_listing, name, p);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int on_list_done(void *ctx, bool complete)
{
	struct summary *s = ctx;
	pthread_mutex_lock(&s->lock);
	if (complete) {
		nodes_free(s->nodes, s->n_nodes);
		s->nodes = s->listing;
		s->n_nodes = s->n_listing;
		s->synced = true;
		mark_dirty(s);
	} else {
		nodes_free(s->listing, s->n_listing);
	}
	s->listing = NULL;
	s->n_listing = 0;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int on_event(void *ctx, const char *type, const json_t *obj)
{
	struct summary *s = ctx;
	json_t *p;
	const char *name = node_of(obj, &p);
	int r = 0;
	if (!name) {
		json_decref(p);
		return 0;
	}
	pthread_mutex_lock(&s->lock);
	if (!strcmp(type, "DELETED")) {
		json_decref(p);
		for (size_t i = 0; i < s->n_nodes; i++) {
			if (strcmp(s->nodes[i].name, name))
				continue;
			free(s->nodes[i].name);
			json_decref(s->nodes[i].policies);
			s->nodes[i] = s->nodes[--s->n_nodes];
			break;
		}
	} else {
		r = nodes_put(&s->nodes, &s->n_nodes, name, p);
	}
	mark_dirty(s);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static void on_state(void *ctx, enum kube_watch_state st, const char *why)
{
	(void)ctx;
	if (st == KUBE_WATCH_DOWN)
		agent_log(AGENT_LOG_WARN, "policies: node statuses unavailable (%s); retrying",
			  why);
}

static void *watch_main(void *arg)
{
	struct summary *s = arg;
	int r = kube_watch_run(s->kw, s->wc);
	if (r != -ECANCELED)
		agent_log(AGENT_LOG_ERROR, "policies: node-status watch ended: %s", strerror(-r));
	return NULL;
}

/* ---- the agents' Pods (their readiness) ----------------------------------------------------- */

static void pods_free(struct agent_pod *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].node);
	}
	free(v);
}

/* The Pod's name, node and readiness; false when it is not one we can use. */
static bool pod_of(const json_t *obj, const char **name, const char **node, bool *ready)
{
	json_t *md = json_object_get(obj, "metadata");
	*name = json_string_value(json_object_get(md, "name"));
	*node = json_string_value(json_object_get(json_object_get(obj, "spec"), "nodeName"));
	*ready = false;
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(json_object_get(obj, "status"), "conditions"), i, c)
	{
		const char *t = json_string_value(json_object_get(c, "type"));
		const char *st = json_string_value(json_object_get(c, "status"));
		if (t && st && !strcmp(t, "Ready"))
			*ready = !strcmp(st, "True");
	}
	if (json_object_get(md, "deletionTimestamp"))
		*ready = false; /* terminating */
	return *name && **name && *node && **node;
}

/* Put (or replace) a Pod into *v; 0 or -ENOMEM. */
static int pods_put(struct agent_pod **v, size_t *n, const char *name, const char *node, bool ready)
{
	for (size_t i = 0; i < *n; i++) {
		if (strcmp((*v)[i].name, name))
			continue;
		char *nd = strdup(node);
		if (!nd)
			return -ENOMEM;
		free((*v)[i].node);
		(*v)[i].node = nd;
		(*v)[i].ready = ready;
		return 0;
	}
	struct agent_pod *nv = realloc(*v, (*n + 1) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	*v = nv;
	nv[*n] = (struct agent_pod){.name = strdup(name), .node = strdup(node), .ready = ready};
	if (!nv[*n].name || !nv[*n].node) {
		free(nv[*n].name);
		free(nv[*n].node);
		return -ENOMEM;
	}
	(*n)++;
	return 0;
}

/* The node's entry (added when missing); NULL on ENOMEM. s->lock held. */
static struct agent_node *anode_get(struct summary *s, const char *node)
{
	for (size_t i = 0; i < s->n_anodes; i++)
		if (!strcmp(s->anodes[i].node, node))
			return &s->anodes[i];
	struct agent_node *nv = realloc(s->anodes, (s->n_anodes + 1) * sizeof(*nv));
	char *nd = strdup(node);
	if (!nv || !nd) {
		if (nv)
			s->anodes = nv;
		free(nd);
		return NULL;
	}
	s->anodes = nv;
	nv[s->n_anodes] = (struct agent_node){.node = nd};
	return &nv[s->n_anodes++];
}

/* Whether the node has a ready agent Pod now; its down_since follows. s->lock held. */
static void anode_refresh(struct summary *s, const char *node, double now)
{
	bool ready = false;
	for (size_t i = 0; i < s->n_pods && !ready; i++)
		ready = s->pods[i].ready && !strcmp(s->pods[i].node, node);
	struct agent_node *a = anode_get(s, node);
	if (a && ready)
		a->down_since = 0;
	else if (a && !a->down_since)
		a->down_since = now;
}

static int on_pod_item(void *ctx, const json_t *obj)
{
	struct summary *s = ctx;
	const char *name, *node;
	bool ready;
	if (!pod_of(obj, &name, &node, &ready))
		return 0;
	pthread_mutex_lock(&s->lock);
	int r = pods_put(&s->pod_listing, &s->n_pod_listing, name, node, ready);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static int on_pods_listed(void *ctx, bool complete)
{
	struct summary *s = ctx;
	pthread_mutex_lock(&s->lock);
	if (complete) {
		pods_free(s->pods, s->n_pods);
		s->pods = s->pod_listing;
		s->n_pods = s->n_pod_listing;
		double now = mono_s();
		for (size_t i = 0; i < s->n_anodes; i++)
			anode_refresh(s, s->anodes[i].node, now);
		for (size_t i = 0; i < s->n_pods; i++)
			anode_refresh(s, s->pods[i].node, now);
		s->pods_synced = true;
		mark_dirty(s);
	} else {
		pods_free(s->pod_listing, s->n_pod_listing);
	}
	s->pod_listing = NULL;
	s->n_pod_listing = 0;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int on_pod_event(void *ctx, const char *type, const json_t *obj)
{
	struct summary *s = ctx;
	const char *name, *node;
	bool ready;
	int r = 0;
	if (!pod_of(obj, &name, &node, &ready))
		return 0;
	pthread_mutex_lock(&s->lock);
	if (!strcmp(type, "DELETED")) {
		for (size_t i = 0; i < s->n_pods; i++) {
			if (strcmp(s->pods[i].name, name))
				continue;
			free(s->pods[i].name);
			free(s->pods[i].node);
			s->pods[i] = s->pods[--s->n_pods];
			break;
		}
	} else {
		r = pods_put(&s->pods, &s->n_pods, name, node, ready);
	}
	anode_refresh(s, node, mono_s());
	mark_dirty(s);
	pthread_mutex_unlock(&s->lock);
	return r;
}

static void *pod_watch_main(void *arg)
{
	struct summary *s = arg;
	int r = kube_watch_run(s->pkw, s->wc);
	if (r != -ECANCELED)
		agent_log(AGENT_LOG_ERROR, "policies: agent-pod watch ended: %s", strerror(-r));
	return NULL;
}

/* The agent Pods' watch (agent_selector in the lease's namespace), on the term's client. */
static int pods_start(struct summary *s)
{
	static const struct kube_watch_ops ops = {.list_item = on_pod_item,
						  .list_done = on_pods_listed,
						  .event = on_pod_event,
						  .state = on_state};
	char *ns = kube_query_escape(s->lease_ns), *sel = kube_query_escape(s->agent_selector);
	char *path = NULL, *query = NULL;
	int r = -ENOMEM;
	if (ns && sel && asprintf(&path, "/api/v1/namespaces/%s/pods", ns) >= 0 &&
	    asprintf(&query, "labelSelector=%s", sel) >= 0) {
		struct kube_watch_config wc = {.path = path,
					       .selector = query,
					       .timeout_s = s->watch_timeout_s,
					       .backoff_max_ms = s->backoff_max_ms};
		r = (s->pkw = kube_watch_new(&wc, &ops, s)) ? 0 : -errno;
	}
	free(ns);
	free(sel);
	free(path);
	free(query);
	if (r == 0 && (r = -pthread_create(&s->pth, NULL, pod_watch_main, s)) == 0)
		s->pth_started = true;
	return r;
}

static int term_start(struct summary *s)
{
	static const struct kube_watch_ops ops = {.list_item = on_list_item,
						  .list_done = on_list_done,
						  .event = on_event,
						  .state = on_state};
	struct kube_watch_config wc = {.path = API_PREFIX "/maskingpolicynodestatuses",
				       .timeout_s = s->watch_timeout_s,
				       .backoff_max_ms = s->backoff_max_ms};
	struct kube_config kc = s->kcfg;
	kc.read_timeout_s = s->watch_timeout_s + 60;
	if (!(s->wc = kube_client_new(&kc)) || !(s->kw = kube_watch_new(&wc, &ops, s)))
		return -errno;
	int r = -pthread_create(&s->wth, NULL, watch_main, s);
	s->wth_started = r == 0;
	if (r == 0 && s->agent_selector)
		r = pods_start(s);
	return r;
}

static void term_end(struct summary *s)
{
	if (s->wc)
		kube_client_abort(s->wc);
	if (s->wth_started)
		pthread_join(s->wth, NULL);
	if (s->pth_started)
		pthread_join(s->pth, NULL);
	s->wth_started = s->pth_started = false;
	kube_watch_free(s->kw);
	kube_watch_free(s->pkw);
	kube_client_free(s->wc);
	s->kw = s->pkw = NULL;
	s->wc = NULL;
	pthread_mutex_lock(&s->lock);
	nodes_free(s->nodes, s->n_nodes);
	nodes_free(s->listing, s->n_listing);
	s->nodes = s->listing = NULL;
	s->n_nodes = s->n_listing = 0;
	pods_free(s->pods, s->n_pods);
	pods_free(s->pod_listing, s->n_pod_listing);
	s->pods = s->pod_listing = NULL;
	s->n_pods = s->n_pod_listing = 0;
	for (size_t i = 0; i < s->n_anodes; i++)
		free(s->anodes[i].node);
	free(s->anodes);
	s->anodes = NULL;
	s->n_anodes = 0;
	s->pods_synced = false;
	for (size_t i = 0; i < s->n_w; i++) {
		free(s->w[i].key);
		free(s->w[i].body);
	}
	free(s->w);
	s->w = NULL;
	s->n_w = 0;
	s->synced = s->dirty = false;
	s->due = 0;
	pthread_mutex_unlock(&s->lock);
}

/* ---- the lease --------------------------------------------------------------------------- */

/* The collection's path, or the lease's (item); cached: served from the watch cache. */
static char *lease_path(struct summary *s, bool item, bool cached)
{
	char *ns = kube_query_escape(s->lease_ns), *nm = kube_query_escape(s->lease_name), *p;
	if (!ns || !nm ||
	    asprintf(&p, LEASE_PREFIX "%s/leases%s%s%s", ns, item ? "/" : "", item ? nm : "",
		     cached ? "?resourceVersion=0" : "") < 0)
		p = NULL;
	free(ns);
	free(nm);
	return p;
}

/*
 * Send the lease (POST to create, PUT to update): 1 when the answer makes this node the
 * holder (s->lease replaced), 0 when another writer won (409), -errno otherwise.
 */
static int lease_send(struct summary *s, const char *method, json_t *lease)
{
	char *path = lease_path(s, !strcmp(method, "PUT"), false);
	char *body = json_dumps(lease, JSON_COMPACT);
	struct kube_response resp = {0};
	int r = path && body ? kube_request(s->kc, method, path, "application/json", body,
					    strlen(body), ANSWER_MAX, &resp)
			     : -ENOMEM;
	free(path);
	free(body);
	if (r == 0 && resp.status == 409) {
		r = 0;
	} else if (r == 0 && resp.status >= 200 && resp.status < 300) {
		json_t *o = json_loadb(resp.body, resp.len, 0, NULL);
		if (o) {
			json_decref(s->lease);
			s->lease = o;
			r = 1;
		} else {
			r = -EBADMSG;
		}
	} else if (r == 0) {
		agent_log(AGENT_LOG_WARN, "policies: lease %s/%s: %s refused (HTTP %d)",
			  s->lease_ns, s->lease_name, method, resp.status);
		r = -EIO;
	} else if (r != -ECANCELED) {
		agent_log(AGENT_LOG_WARN, "policies: lease %s/%s: %s", s->lease_ns, s->lease_name,
			  resp.error);
	}
	kube_response_free(&resp);
	return r;
}

/* The lease's spec set for this node holding it (acquire: a new term; transition: taken
 * from another holder). */
static void lease_hold(struct summary *s, json_t *lease, bool acquire, bool transition)
{
	char now[40];
	micro_now(now);
	json_t *spec = json_object_get(lease, "spec");
	if (!json_is_object(spec)) {
		spec = json_object();
		json_object_set_new(lease, "spec", spec);
	}
	json_object_set_new(spec, "leaseDurationSeconds", json_integer(s->lease_s));
	json_object_set_new(spec, "renewTime", json_string(now));
	json_object_set_new(spec, "holderIdentity", json_string(s->node));
	if (acquire) {
		json_int_t tr = json_integer_value(json_object_get(spec, "leaseTransitions"));
		json_object_set_new(spec, "acquireTime", json_string(now));
		json_object_set_new(spec, "leaseTransitions", json_integer(tr + transition));
	}
}

/* Try to take the lease: 1 taken, 0 held by another, -errno. */
static int lease_acquire(struct summary *s)
{
	/* A stale copy only makes the update below fail (409): the next read is a retry. */
	char *path = lease_path(s, true, true);
	struct kube_response resp = {0};
	int r = path ? kube_request(s->kc, "GET", path, NULL, NULL, 0, ANSWER_MAX, &resp) : -ENOMEM;
	free(path);
	if (r < 0) {
		if (r != -ECANCELED)
			agent_log(AGENT_LOG_DEBUG, "policies: lease: %s", resp.error);
		kube_response_free(&resp);
		return r;
	}
	json_t *lease = NULL;
	if (resp.status == 404) {
		lease = json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:i}}", "apiVersion",
				  "coordination.k8s.io/v1", "kind", "Lease", "metadata", "name",
				  s->lease_name, "namespace", s->lease_ns, "spec",
				  "leaseTransitions", 0);
		kube_response_free(&resp);
		if (!lease)
			return -ENOMEM;
		lease_hold(s, lease, true, false);
		r = lease_send(s, "POST", lease);
		json_decref(lease);
		return r;
	}
	if (resp.status != 200 || !(lease = json_loadb(resp.body, resp.len, 0, NULL))) {
		agent_log(AGENT_LOG_DEBUG, "policies: lease: HTTP %d", resp.status);
		kube_response_free(&resp);
		return -EIO;
	}
	kube_response_free(&resp);
	json_t *spec = json_object_get(lease, "spec");
	const char *holder = json_string_value(json_object_get(spec, "holderIdentity"));
	const char *renew = json_string_value(json_object_get(spec, "renewTime"));
	json_int_t dur = json_integer_value(json_object_get(spec, "leaseDurationSeconds"));
	char key[sizeof(s->seen_key)];
	snprintf(key, sizeof(key), "%s|%s", holder ? holder : "", renew ? renew : "");
	double now = mono_s();
	if (strcmp(key, s->seen_key)) { /* it moved: measure its expiry from now, on our clock */
		snprintf(s->seen_key, sizeof(s->seen_key), "%s", key);
		s->seen_at = now;
	}
	bool free_ = !holder || !*holder || !strcmp(holder, s->node);
	bool expired = now - s->seen_at > (double)(dur > 0 ? dur : s->lease_s);
	if (!free_ && !expired) {
		json_decref(lease);
		return 0;
	}
	bool mine = holder && !strcmp(holder, s->node);
	lease_hold(s, lease, !mine, holder && *holder && !mine);
	r = lease_send(s, "PUT", lease); /* carries the resourceVersion read: 409 if it moved */
	json_decref(lease);
	return r;
}

static int lease_renew(struct summary *s)
{
	json_t *lease = json_deep_copy(s->lease);
	if (!lease)
		return -ENOMEM;
	lease_hold(s, lease, false, false);
	int r = lease_send(s, "PUT", lease);
	json_decref(lease);
	return r;
}

/* Hand the lease over at once: no holder, as client-go's ReleaseOnCancel. */
static void lease_release(struct summary *s)
{
	json_t *lease = json_deep_copy(s->lease);
	json_t *spec = json_object_get(lease, "spec");
	if (!json_is_object(spec)) {
		json_decref(lease);
		return;
	}
	char now[40];
	micro_now(now);
	json_object_del(spec, "holderIdentity");
	json_object_set_new(spec, "leaseDurationSeconds", json_integer(1));
	json_object_set_new(spec, "renewTime", json_string(now));
	lease_send(s, "PUT", lease);
	json_decref(lease);
}

/* ---- summing ---------------------------------------------------------------------------- */

struct pol { /* a copy of a summary_policy */
	char *kind, *ns, *name, *ready, *since;
	long long generation;
	int rules;
};

struct pols {
	struct pol *v;
	size_t n;
};

static void copy_policies(void *arg, const struct summary_policy *v, size_t n)
{
	struct pols *out = arg;
	out->v = calloc(n + 1, sizeof(*out->v));
	if (!out->v)
		return;
	for (size_t i = 0; i < n; i++)
		out->v[i] = (struct pol){.kind = strdup(v[i].kind),
					 .ns = strdup(v[i].ns ? v[i].ns : ""),
					 .name = strdup(v[i].name),
					 .ready = strdup(v[i].ready ? v[i].ready : ""),
					 .since = strdup(v[i].ready_since ? v[i].ready_since : ""),
					 .generation = v[i].generation,
					 .rules = v[i].rules};
	out->n = n;
}

static void pols_free(struct pols *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->v[i].kind);
		free(p->v[i].ns);
		free(p->v[i].name);
		free(p->v[i].ready);
		free(p->v[i].since);
	}
	free(p->v);
}

static int cmp_node(const void *a, const void *b)
{
	return strcmp(((const struct node_rep *)a)->name, ((const struct node_rep *)b)->name);
}

/* The entry of policy p in a node's policies array, or NULL. */
static json_t *entry_of(json_t *policies, const struct pol *p)
{
	size_t i;
	json_t *e;
	json_array_foreach(policies, i, e)
	{
		const char *k = json_string_value(json_object_get(e, "kind"));
		const char *ns = json_string_value(json_object_get(e, "namespace"));
		const char *n = json_string_value(json_object_get(e, "name"));
		if (k && n && !strcmp(k, p->kind) && !strcmp(ns ? ns : "", p->ns) &&
		    !strcmp(n, p->name))
			return e;
	}
	return NULL;
}

static struct written *written_find(struct summary *s, const char *key)
{
	for (size_t i = 0; i < s->n_w; i++)
		if (!strcmp(s->w[i].key, key))
			return &s->w[i];
	return NULL;
}

/*
 * The status apply body of policy p over the nodes (sorted); ready/since carry the Ready
 * condition's status and transition time in and out. NULL on ENOMEM.
 */
static char *status_of(const struct pol *p, const struct node_rep *nodes, size_t n, char ready[8],
		       char since[40], char reason_out[24], size_t *pending_out)
{
	size_t in = 0, refused = 0, down = 0;
	json_t *ref = json_array();
	char first[400] = "", first_down[300] = "";
	for (size_t i = 0; i < n; i++) {
		if (nodes[i].down) { /* its last report says nothing of now */
			if (!down++)
				snprintf(first_down, sizeof(first_down), "%s", nodes[i].name);
			continue;
		}
		json_t *e = entry_of(nodes[i].policies, p);
		if (!e || json_integer_value(json_object_get(e, "generation")) != p->generation)
			continue; /* not reported for this generation yet */
		const char *st = json_string_value(json_object_get(e, "state"));
		if (st && !strcmp(st, "InForce")) {
			in++;
			continue;
		}
		if (!st || strcmp(st, "Refused"))
			continue;
		const char *msg = json_string_value(json_object_get(e, "message"));
		const char *ptr = json_string_value(json_object_get(
			json_array_get(json_object_get(e, "errors"), 0), "pointer"));
		if (!refused++)
			snprintf(first, sizeof(first), "%s: %s", nodes[i].name,
				 msg ? msg : "refused");
		if (refused <= REFUSED_MAX) {
			json_t *r = json_pack("{s:s}", "node", nodes[i].name);
			if (ptr)
				json_object_set_new(r, "pointer", json_string(ptr));
			if (msg)
				json_object_set_new(r, "message", json_string(msg));
			json_array_append_new(ref, r);
		}
	}
	const char *status, *reason;
	char msg[600];
	size_t pending = n - in - refused - down;
	if (!n) {
		status = "Unknown";
		reason = "NoNodes";
		snprintf(msg, sizeof(msg), "no node reports yet");
	} else if (in == n) {
		status = "True";
		reason = "InForce";
		snprintf(msg, sizeof(msg), "in force on %zu of %zu nodes", in, n);
	} else if (refused) {
		status = "False";
		reason = "RefusedOnSomeNodes";
		snprintf(msg, sizeof(msg), "in force on %zu of %zu nodes; refused on %zu (%s%s)",
			 in, n, refused, first, refused > 1 ? "; and more in refusedNodes" : "");
	} else if (down) {
		status = "False";
		reason = "AgentsNotReady";
		snprintf(msg, sizeof(msg),
			 "in force on %zu of %zu nodes; agent not ready on %zu (%s%s)", in, n, down,
			 first_down, down > 1 ? " and more" : "");
	} else {
		status = "False";
		reason = "Pending";
		snprintf(msg, sizeof(msg),
			 "in force on %zu of %zu nodes; %zu not reporting generation %lld yet", in,
			 n, pending, p->generation);
	}
	if (strcmp(ready, status) || !since[0]) {
		snprintf(ready, 8, "%s", status);
		rfc3339_now(since);
	}
	snprintf(reason_out, 24, "%s", reason);
	*pending_out = pending;
	char frac[48];
	snprintf(frac, sizeof(frac), "%zu/%zu", in, n);
	json_t *st = json_pack("{s:I,s:i,s:I,s:I,s:I,s:s,s:o,s:[{s:s,s:s,s:s,s:s,s:s,s:I}]}",
			       "observedGeneration", (json_int_t)p->generation, "rules", p->rules,
			       "nodes", (json_int_t)n, "nodesInForce", (json_int_t)in,
			       "nodesRefused", (json_int_t)refused, "inForce", frac, "refusedNodes",
			       ref, "conditions", "type", "Ready", "status", status, "reason",
			       reason, "message", msg, "lastTransitionTime", since,
			       "observedGeneration", (json_int_t)p->generation);
	json_t *doc = json_pack("{s:s,s:s,s:{s:s},s:o}", "apiVersion", "meshmask.io/v1alpha1",
				"kind", p->kind, "metadata", "name", p->name, "status", st);
	if (doc && *p->ns)
		json_object_set_new(json_object_get(doc, "metadata"), "namespace",
				    json_string(p->ns));
	char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(doc);
	return text;
}

/* Apply one policy's status: 0 (also when the policy is gone: 404), or -errno. */
static int write_status(struct summary *s, const struct pol *p, const char *body)
{
	bool cluster = !strcmp(p->kind, "ClusterMaskingPolicy");
	char *ns = kube_query_escape(p->ns), *nm = kube_query_escape(p->name), *path = NULL;
	int r = -ENOMEM;
	int n = !ns || !nm ? -1
		: cluster
			? asprintf(&path, API_PREFIX "/clustermaskingpolicies/%s/status?%s", nm,
				   "fieldManager=" FIELD_MANAGER "&force=true")
			: asprintf(&path, API_PREFIX "/namespaces/%s/maskingpolicies/%s/status?%s",
				   ns, nm, "fieldManager=" FIELD_MANAGER "&force=true");
	if (n >= 0) {
		struct kube_response resp = {0};
		r = kube_request(s->kc, "PATCH", path, "application/apply-patch+yaml", body,
				 strlen(body), ANSWER_MAX, &resp);
		if (r == 0 && resp.status != 404 && (resp.status < 200 || resp.status > 299)) {
			agent_log(AGENT_LOG_WARN, "policies: status of %s %s%s%s refused (HTTP %d)",
				  p->kind, p->ns, *p->ns ? "/" : "", p->name, resp.status);
			r = -EIO;
		} else if (r < 0 && r != -ECANCELED) {
			agent_log(AGENT_LOG_WARN, "policies: status of %s %s%s%s not written: %s",
				  p->kind, p->ns, *p->ns ? "/" : "", p->name, resp.error);
		}
		kube_response_free(&resp);
	}
	free(ns);
	free(nm);
	free(path);
	return r;
}

/*
 * Whether to hold back a changed summary, and until when (monotonic; 0 = write now). Two rules
 * keep the writes, each a watch event to every agent, to about one per policy change:
 *  - settle: a new generation some nodes have not reported yet is written when they all have,
 *    or settle_s after the holder first saw it pending (then as Pending);
 *  - coalesce: a summary whose Ready condition (status, reason) and generation are those last
 *    written (only the counts moved: nodes joining or leaving) waits until coalesce_s after
 *    that write, so node churn costs one write per policy per coalesce_s.
 * w is locked by the caller.
 */
static double hold_until(const struct summary *s, struct written *w, const struct pol *p,
			 const char *ready, const char *reason, size_t pending, double now)
{
	double settle_s = s->interval_ms * 5 / 1000.0, coalesce_s = s->interval_ms * 30 / 1000.0;
	if (pending) {
		if (w->pending_gen != p->generation || !w->pending_since) {
			w->pending_gen = p->generation;
			w->pending_since = now;
		}
		if (now < w->pending_since + settle_s)
			return w->pending_since + settle_s;
	} else {
		w->pending_since = 0;
	}
	if (w->body && w->generation == p->generation && !strcmp(w->ready, ready) &&
	    !strcmp(w->reason, reason) && now < w->written_at + coalesce_s)
		return w->written_at + coalesce_s;
	return 0;
}

/* Find or add the entry of key (s->lock held); NULL on ENOMEM. */
static struct written *written_get(struct summary *s, const char *key)
{
	struct written *w = written_find(s, key);
	if (w)
		return w;
	struct written *nv = realloc(s->w, (s->n_w + 1) * sizeof(*nv));
	char *k = strdup(key);
	if (!nv || !k) {
		if (nv)
			s->w = nv;
		free(k);
		return NULL;
	}
	s->w = nv;
	w = &nv[s->n_w++];
	*w = (struct written){.key = k};
	return w;
}

/*
 * Sum every policy and write the changed ones: 0, or the first write's -errno. *next: when a
 * held-back summary is due (monotonic), 0 for none.
 */
static int sum_and_write(struct summary *s, double *next)
{
	*next = 0;
	struct pols ps = {0};
	s->each(s->ctx, copy_policies, &ps);

	pthread_mutex_lock(&s->lock);
	size_t n = s->n_nodes;
	struct node_rep *nodes = calloc(n + 1, sizeof(*nodes));
	double t = mono_s();
	for (size_t i = 0; nodes && i < n; i++) {
		nodes[i] = (struct node_rep){.name = strdup(s->nodes[i].name),
					     .policies = json_incref(s->nodes[i].policies)};
		if (!s->agent_selector || !s->pods_synced)
			continue;
		anode_refresh(s, s->nodes[i].name, t); /* (a node never seen in a Pod: from now) */
		struct agent_node *a = anode_get(s, s->nodes[i].name);
		if (!a || !a->down_since)
			continue;
		double at = a->down_since + s->agent_grace_s;
		nodes[i].down = t >= at;
		if (!nodes[i].down && (!*next || at < *next))
			*next = at; /* sum again when its grace ends */
	}
	for (size_t i = 0; i < s->n_w; i++)
		s->w[i].seen = false;
	pthread_mutex_unlock(&s->lock);
	if (!nodes) {
		pols_free(&ps);
		return -ENOMEM;
	}
	qsort(nodes, n, sizeof(*nodes), cmp_node);

	int ret = 0;
	for (size_t i = 0; i < ps.n; i++) {
		const struct pol *p = &ps.v[i];
		if (!p->kind || !p->ns || !p->name || !p->ready || !p->since)
			continue;
		char key[600], ready[8], since[40], reason[24];
		size_t pending = 0;
		snprintf(key, sizeof(key), "%s/%s/%s", p->kind, p->ns, p->name);
		pthread_mutex_lock(&s->lock);
		struct written *w = written_get(s, key);
		if (!w) {
			pthread_mutex_unlock(&s->lock);
			ret = ret ? ret : -ENOMEM;
			continue;
		}
		w->seen = true;
		/* what was written last wins over the resource's copy, which may lag behind */
		snprintf(ready, sizeof(ready), "%s", w->body ? w->ready : p->ready);
		snprintf(since, sizeof(since), "%s", w->body ? w->since : p->since);
		char *body = status_of(p, nodes, n, ready, since, reason, &pending);
		bool same = body && w->body && !strcmp(body, w->body);
		double now = mono_s(), hold = 0;
		if (body && !same)
			hold = hold_until(s, w, p, ready, reason, pending, now);
		pthread_mutex_unlock(&s->lock);
		if (!body) {
			ret = ret ? ret : -ENOMEM;
			continue;
		}
		if (hold && (!*next || hold < *next))
			*next = hold;
		int r = same || hold ? 0 : write_status(s, p, body);
		pthread_mutex_lock(&s->lock);
		w = written_find(s, key); /* (the table may have moved) */
		if (!same && !hold && r == 0 && w) {
			free(w->body);
			w->body = body;
			body = NULL;
			snprintf(w->ready, sizeof(w->ready), "%s", ready);
			snprintf(w->since, sizeof(w->since), "%s", since);
			snprintf(w->reason, sizeof(w->reason), "%s", reason);
			w->generation = p->generation;
			w->written_at = now;
		}
		pthread_mutex_unlock(&s->lock);
		free(body);
		if (r < 0 && !ret)
			ret = r;
	}
	pthread_mutex_lock(&s->lock); /* policies that are gone: forget what was written */
	for (size_t i = 0; i < s->n_w;) {
		if (s->w[i].seen) {
			i++;
			continue;
		}
		free(s->w[i].key);
		free(s->w[i].body);
		s->w[i] = s->w[--s->n_w];
	}
	pthread_mutex_unlock(&s->lock);
	nodes_free(nodes, n);
	pols_free(&ps);
	return ret;
}

/* ---- the thread ------------------------------------------------------------------------- */

static void *summary_main(void *arg)
{
	struct summary *s = arg;
	unsigned seed = (unsigned)time(NULL) ^ (unsigned)(size_t)s;
	int backoff = 0;
	double renew_every = s->lease_s / 3.0, next_renew = 0;
	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		if (!s->holder) {
			pthread_mutex_unlock(&s->lock);
			int r = lease_acquire(s);
			pthread_mutex_lock(&s->lock);
			s->holder = r == 1; /* (released below when stopping now) */
			if (s->stop)
				break;
			if (r == 1) {
				s->renewed_at = mono_s();
				next_renew = s->renewed_at + renew_every;
				pthread_mutex_unlock(&s->lock);
				agent_log(AGENT_LOG_INFO,
					  "policies: node %s holds lease %s/%s: it writes the "
					  "policies' summary status",
					  s->node, s->lease_ns, s->lease_name);
				r = term_start(s);
				pthread_mutex_lock(&s->lock);
				if (r < 0)
					agent_log(AGENT_LOG_ERROR,
						  "policies: node-status watch not started: %s",
						  strerror(-r));
				continue;
			}
			/* a candidate reads the lease once per lease duration, jittered by 20% */
			double jitter = 0.8 + 0.4 * (rand_r(&seed) / (double)RAND_MAX);
			wait_until(s, mono_s() + s->lease_s * jitter);
			continue;
		}
		double now = mono_s();
		if (now >= next_renew) {
			pthread_mutex_unlock(&s->lock);
			int r = lease_renew(s);
			pthread_mutex_lock(&s->lock);
			if (s->stop)
				break;
			now = mono_s();
			if (r == 1) {
				s->renewed_at = now;
				next_renew = now + renew_every;
			} else if (r == 0 || now - s->renewed_at > s->lease_s * 2.0 / 3) {
				s->holder = false;
				pthread_mutex_unlock(&s->lock);
				agent_log(AGENT_LOG_INFO,
					  "policies: node %s lost lease %s/%s; another agent "
					  "writes the summary status",
					  s->node, s->lease_ns, s->lease_name);
				term_end(s);
				json_decref(s->lease);
				s->lease = NULL;
				pthread_mutex_lock(&s->lock);
				continue;
			} else {
				next_renew = now + 1; /* a failure: again in a second */
			}
			continue;
		}
		double sum_at = s->dirty && s->synced ? s->dirty_at + s->interval_ms / 1000.0 : 0;
		if (s->synced && s->due && (!sum_at || s->due < sum_at))
			sum_at = s->due;
		if (sum_at && now >= sum_at) {
			s->dirty = false;
			s->due = 0;
			pthread_mutex_unlock(&s->lock);
			double next;
			int r = sum_and_write(s, &next);
			pthread_mutex_lock(&s->lock);
			if (next && (!s->due || next < s->due))
				s->due = next;
			if (r < 0 && r != -ECANCELED) { /* again after a backoff */
				backoff = backoff ? (backoff * 2 > s->backoff_max_ms
							     ? s->backoff_max_ms
							     : backoff * 2)
						  : 500;
				mark_dirty(s);
				s->dirty_at = mono_s() + backoff / 1000.0;
			} else {
				backoff = 0;
			}
			continue;
		}
		wait_until(s, sum_at && sum_at < next_renew ? sum_at : next_renew);
	}
	bool held = s->holder;
	s->holder = false;
	pthread_mutex_unlock(&s->lock);
	term_end(s);
	if (held)
		lease_release(s);
	return NULL;
}

int summary_start(struct summary **out, const struct summary_config *cfg, summary_each_fn each,
		  void *ctx)
{
	*out = NULL;
	if (!cfg->node || !*cfg->node || !cfg->lease_ns || !*cfg->lease_ns || !each)
		return -EINVAL;
	struct summary *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cond, &ca);
	pthread_condattr_destroy(&ca);
	s->each = each;
	s->ctx = ctx;
	s->lease_s = cfg->lease_s > 0 ? cfg->lease_s : 15;
	s->interval_ms = cfg->interval_ms > 0 ? cfg->interval_ms : 1000;
	s->watch_timeout_s = cfg->watch_timeout_s > 0 ? cfg->watch_timeout_s : 300;
	s->backoff_max_ms = cfg->backoff_max_ms > 0 ? cfg->backoff_max_ms : 30000;
	s->agent_grace_s = cfg->agent_grace_s > 0 ? cfg->agent_grace_s : 300;
	s->kcfg = cfg->kube;
	s->kcfg.read_timeout_s = 10; /* small answers only; bounds a stop during a request */
	s->kcfg.url = cfg->kube.url ? strdup(cfg->kube.url) : NULL;
	s->kcfg.token_file = cfg->kube.token_file ? strdup(cfg->kube.token_file) : NULL;
	s->kcfg.ca_file = cfg->kube.ca_file ? strdup(cfg->kube.ca_file) : NULL;
	s->node = strdup(cfg->node);
	s->lease_ns = strdup(cfg->lease_ns);
	s->lease_name = strdup(cfg->lease_name ? cfg->lease_name : "meshmask-policy-status");
	s->agent_selector =
		cfg->agent_selector && *cfg->agent_selector ? strdup(cfg->agent_selector) : NULL;
	int r = -ENOMEM;
	if (!s->node || !s->lease_ns || !s->lease_name ||
	    (cfg->agent_selector && *cfg->agent_selector && !s->agent_selector) ||
	    (cfg->kube.url && !s->kcfg.url) || (cfg->kube.token_file && !s->kcfg.token_file) ||
	    (cfg->kube.ca_file && !s->kcfg.ca_file))
		goto fail;
	if (!(s->kc = kube_client_new(&s->kcfg))) {
		r = -errno;
		goto fail;
	}
	if ((r = -pthread_create(&s->th, NULL, summary_main, s)) < 0)
		goto fail;
	s->started = true;
	*out = s;
	return 0;
fail:
	summary_stop(s);
	return r;
}

void summary_kick(struct summary *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	if (s->holder)
		mark_dirty(s);
	pthread_mutex_unlock(&s->lock);
}

void summary_stop(struct summary *s)
{
	if (!s)
		return;
	if (s->started) {
		pthread_mutex_lock(&s->lock);
		s->stop = true;
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
		/* a request in progress ends by its timeouts; the lease is released after it */
		pthread_join(s->th, NULL);
	}
	kube_client_free(s->kc);
	json_decref(s->lease);
	free((char *)s->kcfg.url);
	free((char *)s->kcfg.token_file);
	free((char *)s->kcfg.ca_file);
	free(s->node);
	free(s->lease_ns);
	free(s->lease_name);
	free(s->agent_selector);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}
