/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS data path (see tls.h). One thread owns everything here: it polls the ringbuf, rescans
 * /proc and the cgroup tree every second, and applies policy changes that the store's thread
 * hands over under `lock`.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "audit.h"
#include "cgroup.h"
#include "detect.h"
#include "log.h"
#include "metrics.h"
#include "meshmask/ssl.h"
#include "ssl.skel.h"
#include "ssl_attach.h"
#include "tls.h"
#include "tls_scan.h"
#include "h2.h"
#include "h2obs.h"
#include "tls_stop.h"
#include "tls_probe.h"

#define TLS_SCAN_INTERVAL_NS 1000000000ull
#define TLS_POLL_MS 100
#define TLS_STREAM_IDLE_NS 30000000000ull
/* A stream quiet this long has its held-back bytes scanned as if it ended (reported now, not
 * when the connection closes); a value split across such a pause is not joined. */
#define TLS_STREAM_QUIET_NS 1000000000ull
/* About 8 KiB each (struct tls_scan). */
#define TLS_MAX_STREAMS 2048
#define TLS_STREAM_BUCKETS 1024

struct tls_slot {
	char *name; /* policy name; NULL = free */
	struct policy *pol; /* borrowed from the set in force */
	bool stop; /* its cgroups are enforced by stop-rewrite */
	uint32_t entities;
	uint64_t drop_events[MM_SSL_DROP__COUNT];
};

struct tls_cgroup {
	uint64_t id;
	uint32_t slot;
	uint32_t flags; /* MM_SSL_COVER_* */
	char *path;
};

/* One direction of one SSL object's plaintext. */
struct tls_stream {
	struct tls_stream *next;
	uint32_t pid;
	uint64_t ssl;
	uint8_t direction;
	uint64_t cgroup_id;
	uint32_t slot;
	bool have_conn; /* the socket's endpoints are known */
	bool server; /* the process accepted this connection */
	char peer[64]; /* the server's "ip:port", "" when unknown */
	uint64_t last_ns;
	struct tls_scan scan;
	/*
	 * HTTP/2 (ALPN h2): the first bytes are held until h2obs_sniff decides; then frames are
	 * parsed and each stream's body scanned on its own (values split by frame headers found),
	 * header fields decoded (HPACK) and scanned. At most TLS_H2_SCANNERS streams at once get
	 * their own scanner; the others share `scan`.
	 */
	char pre[H2_PREFACE_LEN];
	uint8_t pre_n;
	int8_t h2; /* 0 undecided, 1 HTTP/2, -1 not */
	struct h2obs *obs;
	struct tls_h2_scan {
		int32_t id; /* 0: free */
		struct tls_scan scan;
	} * h2s;
};

#define TLS_H2_SCANNERS 4

struct tls {
	struct ssl *skel;
	struct store *store; /* subscribed to, NULL before */
	struct ring_buffer *rb;
	pthread_t thread;
	atomic_bool stop;
	bool inplace;
	struct tls_stop *stopper; /* NULL: stop-rewrite unavailable */
	bool stop_dirty; /* the stop-rewrite cgroups or policies changed */
	char cgroup_root[4096];
	unsigned stop_delay_ms; /* tls_config.stop_delay_ms */

	pthread_mutex_t lock;
	struct policy_set *pending; /* a new set from the store, taken by the thread */
	struct policy_set *set;

	struct tls_probes *probes;
	bool node_wide; /* --tls-node-wide: always probe every process */

	struct tls_slot slots[MM_SSL_MAX_SLOTS];
	struct tls_cgroup *cgroups; /* sorted by id */
	size_t n_cgroups;

	struct tls_stream *streams[TLS_STREAM_BUCKETS];
	size_t n_streams;

	struct tls_stats stats; /* the thread's own */
	struct tls_stats published; /* a copy for tls_get_stats, under `lock` */
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- policies → covered cgroups ---- */

static bool source_matches(const struct policy_source *s, const char *path)
{
	/* Identity fields need the resolver; a source that names one cannot match a bare cgroup. */
	if (s->namespace_ || s->service_account || s->n_labels)
		return false;
	return !s->cgroup || fnmatch(s->cgroup, path, 0) == 0;
}

/* Callers a policy covers: its sources (none = every caller) minus its exemptions. */
static bool policy_covers(const struct policy *p, const char *path)
{
	bool in = p->n_sources == 0;
	for (size_t i = 0; !in && i < p->n_sources; i++)
		in = source_matches(&p->sources[i], path);
	if (!in)
		return false;
	for (size_t i = 0; i < p->n_exempt; i++)
		if (p->exempt[i].cgroup && source_matches(&p->exempt[i], path))
			return false;
	return true;
}

static uint32_t policy_entities(const struct policy *p)
{
	uint32_t e = 0;
	for (size_t i = 0; i < p->n_rules; i++)
		e |= p->rules[i].entities;
	return e;
}

/* Give every policy of the set a slot (kept across swaps), free the others. */
static void assign_slots(struct tls *t)
{
	bool used[MM_SSL_MAX_SLOTS] = {0};
	for (size_t i = 0; t->set && i < t->set->n; i++) {
		const struct policy *p = t->set->v[i];
		int free_slot = -1, slot = -1;
		for (int s = 0; s < MM_SSL_MAX_SLOTS; s++) {
			if (t->slots[s].name && !strcmp(t->slots[s].name, p->name)) {
				slot = s;
				break;
			}
			if (!t->slots[s].name && !used[s] && free_slot < 0)
				free_slot = s;
		}
		if (slot < 0 && free_slot >= 0) {
			slot = free_slot;
			/* drop_events keeps the BPF counters' current values (collect_drops ran
			 * just before), so the new policy starts counting from here. */
			t->slots[slot].name = strdup(p->name);
		}
		if (slot < 0 || !t->slots[slot].name) {
			agent_log(AGENT_LOG_WARN, "tls: no capture slot for policy %s", p->name);
			continue;
		}
		used[slot] = true;
		t->slots[slot].entities = policy_entities(p);
		t->slots[slot].pol = t->set->v[i];
		t->slots[slot].stop = t->stopper && p->mode == POLICY_MODE_ENFORCE &&
				      p->tls_enforce == POLICY_TLS_STOP_REWRITE;
	}
	for (int s = 0; s < MM_SSL_MAX_SLOTS; s++) {
		if (!used[s]) {
			free(t->slots[s].name);
			t->slots[s].name = NULL;
			t->slots[s].pol = NULL;
			t->slots[s].stop = false;
		}
	}
}

static int slot_of(const struct tls *t, const struct policy *p)
{
	for (int s = 0; s < MM_SSL_MAX_SLOTS; s++)
		if (t->slots[s].name && !strcmp(t->slots[s].name, p->name))
			return s;
	return -1;
}

static int cgroup_cmp(const void *a, const void *b)
{
	const struct tls_cgroup *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

static struct tls_cgroup *cgroup_find(struct tls *t, uint64_t id)
{
	struct tls_cgroup key = {.id = id};
	if (!t->n_cgroups)
		return NULL;
	return bsearch(&key, t->cgroups, t->n_cgroups, sizeof(key), cgroup_cmp);
}

struct walk {
	struct tls *t;
	struct tls_cgroup *v;
	size_t n, cap;
};

static int walk_one(void *ctx, const char *dir, const char *rel, uint64_t id)
{
	struct walk *w = ctx;
	struct policy_set *set = w->t->set;
	(void)dir;
	for (size_t i = 0; set && i < set->n; i++) {
		if (!policy_covers(set->v[i], rel))
			continue;
		int slot = slot_of(w->t, set->v[i]);
		if (slot < 0)
			break;
		if (w->n == w->cap) {
			size_t cap = w->cap ? w->cap * 2 : 64;
			struct tls_cgroup *v = realloc(w->v, cap * sizeof(*v));
			if (!v)
				return -ENOMEM;
			w->v = v;
			w->cap = cap;
		}
		char *path = strdup(rel);
		if (!path)
			return -ENOMEM;
		w->v[w->n++] = (struct tls_cgroup){
			.id = id,
			.slot = slot,
			.flags = w->t->slots[slot].stop ? MM_SSL_COVER_STOP : 0,
			.path = path,
		};
		break; /* first policy by name wins */
	}
	return 0;
}

static void free_cgroups(struct tls_cgroup *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].path);
	free(v);
}

/* Hand the stop-rewrite policies and their cgroups to the tracer. */
static void configure_stop(struct tls *t)
{
	struct policy *slots[MM_SSL_MAX_SLOTS] = {0};
	for (int s = 0; s < MM_SSL_MAX_SLOTS; s++)
		if (t->slots[s].stop)
			slots[s] = t->slots[s].pol;
	char **paths = calloc(t->n_cgroups ? t->n_cgroups : 1, sizeof(*paths));
	if (!paths)
		return;
	size_t n = 0;
	for (size_t i = 0; i < t->n_cgroups; i++)
		if (t->cgroups[i].flags & MM_SSL_COVER_STOP)
			paths[n++] = t->cgroups[i].path;
	if (tls_stop_configure(t->stopper, slots, paths, n) == 0)
		t->stop_dirty = false;
	free(paths);
}

/* Recompute the covered cgroups and apply the difference to the BPF map. */
static void refresh_cgroups(struct tls *t)
{
	struct walk w = {.t = t};
	int r = cgroup_walk(t->cgroup_root, t->cgroup_root, walk_one, &w);
	if (r < 0) {
		agent_log(AGENT_LOG_WARN, "tls: walking %s: %s", t->cgroup_root, strerror(-r));
		free_cgroups(w.v, w.n);
		return;
	}
	struct tls_cgroup *v = w.v;
	size_t n = w.n;
	if (n)
		qsort(v, n, sizeof(*v), cgroup_cmp);
	int fd = bpf_map__fd(t->skel->maps.covered_cgroups);
	for (size_t i = 0; i < n; i++) {
		struct tls_cgroup *old = cgroup_find(t, v[i].id);
		if (old && old->slot == v[i].slot && old->flags == v[i].flags)
			continue;
		if (v[i].flags || (old && old->flags))
			t->stop_dirty = true;
		struct mm_ssl_cover cover = {.slot = v[i].slot, .flags = v[i].flags};
		if (bpf_map_update_elem(fd, &v[i].id, &cover, BPF_ANY) < 0)
			agent_log(AGENT_LOG_WARN, "tls: covering cgroup %s: %s", v[i].path,
				  strerror(errno));
	}
	for (size_t i = 0; i < t->n_cgroups; i++) {
		struct tls_cgroup key = {.id = t->cgroups[i].id};
		if (!n || !bsearch(&key, v, n, sizeof(key), cgroup_cmp)) {
			bpf_map_delete_elem(fd, &key.id);
			t->stop_dirty |= t->cgroups[i].flags != 0;
		}
	}
	free_cgroups(t->cgroups, t->n_cgroups);
	t->cgroups = v;
	t->n_cgroups = n;
	t->stats.covered = n;
	metrics_bpf_map("ssl_covered_cgroups", n,
			bpf_map__max_entries(t->skel->maps.covered_cgroups));
	if (t->stopper && t->stop_dirty)
		configure_stop(t);
}

static void apply_pending(struct tls *t)
{
	pthread_mutex_lock(&t->lock);
	struct policy_set *next = t->pending;
	t->pending = NULL;
	pthread_mutex_unlock(&t->lock);
	if (!next)
		return;
	if (t->set)
		policy_set_unref(t->set);
	t->set = next;
	assign_slots(t);
	t->stop_dirty = true;
	for (size_t i = 0; i < next->n; i++) {
		const struct policy *p = next->v[i];
		if (p->tls_enforce == POLICY_TLS_INPLACE)
			agent_log(AGENT_LOG_WARN,
				  "tls: policy %s: spec.tls.enforce inplace is not applied by this "
				  "agent; its TLS traffic is observed and audited only%s",
				  p->name,
				  t->inplace ? ""
					     : " (the kernel also refuses bpf_probe_write_user)");
		else if (p->tls_enforce == POLICY_TLS_STOP_REWRITE && !t->stopper)
			agent_log(AGENT_LOG_WARN,
				  "tls: policy %s: stop-rewrite is unavailable here; its TLS "
				  "traffic is observed and audited only",
				  p->name);
		else if (p->tls_enforce == POLICY_TLS_STOP_REWRITE)
			agent_log(AGENT_LOG_INFO,
				  "tls: policy %s: SSL_read results are masked by stop-rewrite%s",
				  p->name,
				  p->mode == POLICY_MODE_ENFORCE ? "" : " (not: mode is observe)");
	}
	refresh_cgroups(t);
}

static void on_policies(void *ctx, struct policy_set *set)
{
	struct tls *t = ctx;
	struct policy_set *ref = policy_set_ref(set);
	pthread_mutex_lock(&t->lock);
	if (t->pending)
		policy_set_unref(t->pending);
	t->pending = ref;
	pthread_mutex_unlock(&t->lock);
}

/* ---- which processes are probed ---- */

struct sync_ctx {
	struct tls *t;
	uint32_t slot;
};

static int sync_pid(void *ctx, int pid)
{
	struct sync_ctx *c = ctx;
	if (pid != getpid())
		tls_probes_sync(c->t->probes, pid, c->slot, c->t->slots[c->slot].stop, false);
	return 0;
}

/*
 * Every second: learn the OpenSSL files mapped on the node (a process that execs later is
 * probed on the libssl paths found here before its loader maps them), probe every process of
 * the covered cgroups, detach the processes that exited or left. While no cgroup is covered
 * nothing is probed at all.
 */
static void scan_procs(struct tls *t)
{
	bool stop = false;
	for (int s = 0; s < MM_SSL_MAX_SLOTS; s++)
		stop |= t->slots[s].stop;
	/* --tls-node-wide: as before per-process probes. */
	stop |= t->node_wide;
	tls_probes_set_node_wide(t->probes, stop && t->n_cgroups);
	tls_probes_begin(t->probes);
	DIR *d = t->n_cgroups ? opendir("/proc") : NULL;
	int self = getpid();
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (de->d_name[0] < '1' || de->d_name[0] > '9' || atoi(de->d_name) == self)
			continue;
		tls_probes_learn(t->probes, atoi(de->d_name));
		/* Processes that became covered meanwhile are probed now, not after the scan. */
		ring_buffer__consume(t->rb);
	}
	if (d)
		closedir(d);
	char dir[8192];
	for (size_t i = 0; i < t->n_cgroups; i++) {
		struct sync_ctx c = {t, t->cgroups[i].slot};
		snprintf(dir, sizeof(dir), "%s%s", t->cgroup_root, t->cgroups[i].path);
		cgroup_for_each_pid(dir, sync_pid, &c);
	}
	tls_probes_end(t->probes);
	struct tls_probe_stats ps;
	tls_probes_get_stats(t->probes, &ps);
	t->stats.targets = ps.files;
	t->stats.probes = ps;
	t->stats.scans++;
}

/* BPF says a process became covered (exec, fork, cgroup move): probe it now, not at the
 * next scan. */
static int on_proc(void *ctx, void *data, size_t size)
{
	struct tls *t = ctx;
	struct mm_ssl_proc r;
	if (size < sizeof(r))
		return 0;
	memcpy(&r, data, sizeof(r));
	struct tls_cgroup *cg = cgroup_find(t, r.cgroup_id);
	if (!cg || (int)r.pid == getpid())
		return 0;
	/* Exec'd or moved: its libssl may be mapped later (loader, dlopen, a later exec). */
	tls_probes_sync(t->probes, (int)r.pid, cg->slot, t->slots[cg->slot].stop,
			r.why != MM_SSL_PROC_FORK);
	/* The window: from the event to the probes in place. */
	uint64_t now = now_ns(), took = now > r.ts_ns ? now - r.ts_ns : 0;
	t->stats.notified++;
	t->stats.window_ns_sum += took;
	if (took > t->stats.window_ns_max)
		t->stats.window_ns_max = took;
	agent_log(AGENT_LOG_DEBUG, "tls: pid %u (%s) handled %.2f ms after the event", r.pid,
		  r.why == MM_SSL_PROC_EXEC ? "exec" : r.why == MM_SSL_PROC_FORK ? "fork" : "moved",
		  took / 1e6);
	return 0;
}

static void on_uncaptured(void *ctx, uint32_t slot, const char *reason, uint64_t n)
{
	struct tls *t = ctx;
	metrics_tls_uncaptured(slot < MM_SSL_MAX_SLOTS ? t->slots[slot].name : NULL, reason, n);
}

/* ---- drop counters ---- */

static void collect_drops(struct tls *t)
{
	int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		return;
	struct mm_ssl_drop *v = calloc(ncpu, sizeof(*v));
	if (!v)
		return;
	int fd = bpf_map__fd(t->skel->maps.drops);
	for (uint32_t slot = 0; slot < MM_SSL_MAX_SLOTS; slot++) {
		for (uint32_t r = 0; r < MM_SSL_DROP__COUNT; r++) {
			uint32_t key = slot * MM_SSL_DROP__COUNT + r;
			if (bpf_map_lookup_elem(fd, &key, v) < 0)
				continue;
			uint64_t events = 0;
			for (int c = 0; c < ncpu; c++)
				events += v[c].events;
			uint64_t *seen = &t->slots[slot].drop_events[r];
			if (events <= *seen)
				continue;
			uint64_t n = events - *seen;
			*seen = events;
			t->stats.dropped += n;
			for (uint64_t i = 0; i < n && i < 100000; i++)
				metrics_tls_record(t->slots[slot].name, 0, true);
		}
	}
	free(v);
}

/* ---- streams and detection ---- */

static size_t stream_bucket(uint32_t pid, uint64_t ssl, uint8_t dir)
{
	uint64_t h = (ssl ^ ((uint64_t)pid << 32) ^ dir) * 0x9e3779b97f4a7c15ull;
	return (size_t)(h >> 54) % TLS_STREAM_BUCKETS;
}

/* "ip:port" / "[ip6]:port" of an endpoint in network order. */
static void format_addr(char *out, size_t len, int family, const uint8_t *addr, unsigned port)
{
	char ip[INET6_ADDRSTRLEN];
	out[0] = 0;
	if (!inet_ntop(family, addr, ip, sizeof(ip)))
		return;
	snprintf(out, len, family == AF_INET ? "%s:%u" : "[%s]:%u", ip, port);
}

/* Whether process `pid` has a listening TCP socket on `port` (it accepted the connection). */
static bool listens_on(uint32_t pid, unsigned port)
{
	static const char *const tables[] = {"tcp", "tcp6"};
	bool yes = false;
	for (int tb = 0; tb < 2 && !yes; tb++) {
		char path[64], line[512];
		snprintf(path, sizeof(path), "/proc/%u/net/%s", pid, tables[tb]);
		FILE *f = fopen(path, "re");
		if (!f)
			continue;
		while (!yes && fgets(line, sizeof(line), f)) {
			unsigned lp, state;
			if (sscanf(line, " %*d: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x", &lp,
				   &state) == 2)
				yes = state == 0x0a && lp == port;
		}
		fclose(f);
	}
	return yes;
}

/* Attribute a stream to its connection: the destination is the server's end. */
static void stream_conn(struct tls_stream *s, const struct mm_ssl_conn *c)
{
	if (s->have_conn || !c->rport || (c->family != AF_INET && c->family != AF_INET6))
		return;
	s->have_conn = true;
	s->server = listens_on(s->pid, c->lport);
	if (s->server)
		format_addr(s->peer, sizeof(s->peer), c->family, c->laddr, c->lport);
	else
		format_addr(s->peer, sizeof(s->peer), c->family, c->raddr, c->rport);
}

static void count_match(void *ctx, enum mm_entity entity, uint64_t off, size_t len)
{
	uint64_t *counts = ctx;
	(void)off;
	(void)len;
	counts[entity]++;
}

struct h2_scan_ctx {
	struct tls_stream *s;
	uint32_t entities;
	uint64_t *counts;
};

/* The scanner of HTTP/2 stream `id`: its own while there is room, else the shared one. */
static struct tls_scan *h2_scanner(struct tls_stream *s, int32_t id, bool take)
{
	struct tls_h2_scan *spare = NULL;
	if (!s->h2s && take)
		s->h2s = calloc(TLS_H2_SCANNERS, sizeof(*s->h2s));
	for (int i = 0; s->h2s && i < TLS_H2_SCANNERS; i++) {
		if (s->h2s[i].id == id)
			return &s->h2s[i].scan;
		if (!s->h2s[i].id && !spare)
			spare = &s->h2s[i];
	}
	if (!take || !spare)
		return &s->scan;
	memset(spare, 0, sizeof(*spare));
	spare->id = id;
	return &spare->scan;
}

static void h2_data(void *ctx, int32_t id, const char *p, size_t n)
{
	struct h2_scan_ctx *c = ctx;
	struct tls_scan *sc = h2_scanner(c->s, id, p != NULL);
	if (p) {
		tls_scan_feed(sc, p, n, c->entities, count_match, c->counts);
		return;
	}
	/* The stream ended: what its own scanner held is decided, its slot freed. */
	for (int i = 0; c->s->h2s && i < TLS_H2_SCANNERS; i++) {
		if (c->s->h2s[i].id == id) {
			tls_scan_finish(&c->s->h2s[i].scan, c->entities, count_match, c->counts);
			c->s->h2s[i].id = 0;
		}
	}
}

static void h2_header(void *ctx, int32_t id, const char *name, size_t nl, const char *val,
		      size_t vl)
{
	struct h2_scan_ctx *c = ctx;
	struct detect_match m[16];
	size_t start = 0, k;
	do {
		k = detect_scan(val, vl, start, c->entities, 0, m, 16);
		for (size_t j = 0; j < k; j++)
			c->counts[m[j].entity]++;
		start = k ? m[k - 1].off + m[k - 1].len : vl;
	} while (k == 16 && start < vl);
}

/*
 * A record of the stream's plaintext: flat, or through the HTTP/2 watcher once its first bytes
 * say HTTP/2. Counts per entity into counts.
 */
static void stream_feed(struct tls_stream *s, const char *data, size_t len, uint32_t entities,
			uint64_t *counts)
{
	struct h2_scan_ctx c = {.s = s, .entities = entities, .counts = counts};
	if (!s->h2) {
		size_t k = sizeof(s->pre) - s->pre_n < len ? sizeof(s->pre) - s->pre_n : len;
		memcpy(s->pre + s->pre_n, data, k);
		s->pre_n += (uint8_t)k;
		data += k;
		len -= k;
		int r = h2obs_sniff(s->pre, s->pre_n);
		if (r < 0 && s->pre_n < sizeof(s->pre))
			return; /* held until it is known */
		s->h2 = r == 1 ? 1 : -1;
		if (s->h2 == 1 && !(s->obs = h2obs_new(!memcmp(s->pre, "PRI ", 4))))
			s->h2 = -1;
		stream_feed(s, s->pre, s->pre_n, entities, counts);
	}
	if (!len)
		return;
	if (s->h2 == 1 && h2obs_feed(s->obs, data, len, h2_data, h2_header, &c) == 0)
		return;
	if (s->h2 == 1) {
		/* Not HTTP/2 after all: flat from here on. */
		h2obs_free(s->obs);
		s->obs = NULL;
		s->h2 = -1;
	}
	tls_scan_feed(&s->scan, data, len, entities, count_match, counts);
}

/* Feed a record to the stream's detection (NULL data = the stream ends or has a gap), and
 * report what was found: metrics per value, one audit event per entity. */
static void stream_scan(struct tls *t, struct tls_stream *s, const char *data, size_t len)
{
	const struct tls_slot *slot = &t->slots[s->slot < MM_SSL_MAX_SLOTS ? s->slot : 0];
	uint64_t counts[MM_ENT__COUNT] = {0};

	if (data) {
		stream_feed(s, data, len, slot->entities, counts);
	} else {
		tls_scan_finish(&s->scan, slot->entities, count_match, counts);
		for (int i = 0; s->h2s && i < TLS_H2_SCANNERS; i++)
			if (s->h2s[i].id)
				tls_scan_finish(&s->h2s[i].scan, slot->entities, count_match,
						counts);
	}

	const char *policy = slot->name ? slot->name : "";
	struct tls_cgroup *cg = NULL;
	for (int e = 0; e < MM_ENT__COUNT; e++) {
		if (!counts[e])
			continue;
		if (!cg)
			cg = cgroup_find(t, s->cgroup_id);
		struct audit_who who = {
			.caller = cg ? cg->path : NULL,
			.cgroup_id = s->cgroup_id,
			.pid = (int)s->pid,
			.dest = s->peer[0] ? s->peer : NULL,
		};
		/* What the process sends is a request unless it is the server of the connection. */
		bool sent = s->direction == MM_SSL_DIR_WRITE;
		uint32_t dir = sent != s->server ? POLICY_DIR_REQUEST : POLICY_DIR_RESPONSE;
		const char *name = mm_entity_name(e);
		t->stats.findings += counts[e];
		for (uint64_t i = 0; i < counts[e]; i++)
			metrics_tls_finding(policy, name);
		audit_tls(&who, policy, name, counts[e], dir);
	}
}

static void stream_free(struct tls *t, struct tls_stream *s, bool flush)
{
	if (flush)
		stream_scan(t, s, NULL, 0);
	size_t b = stream_bucket(s->pid, s->ssl, s->direction);
	for (struct tls_stream **pp = &t->streams[b]; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	t->n_streams--;
	h2obs_free(s->obs);
	free(s->h2s);
	free(s);
}

static struct tls_stream *stream_get(struct tls *t, const struct mm_ssl_event *ev)
{
	size_t b = stream_bucket(ev->pid, ev->ssl, ev->direction);
	for (struct tls_stream *s = t->streams[b]; s; s = s->next)
		if (s->pid == ev->pid && s->ssl == ev->ssl && s->direction == ev->direction)
			return s;
	if (t->n_streams >= TLS_MAX_STREAMS) {
		/* Bounded memory: the least recently used stream is finished early. */
		struct tls_stream *lru = NULL;
		for (size_t i = 0; i < TLS_STREAM_BUCKETS; i++)
			for (struct tls_stream *s = t->streams[i]; s; s = s->next)
				if (!lru || s->last_ns < lru->last_ns)
					lru = s;
		if (lru)
			stream_free(t, lru, true);
	}
	struct tls_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->pid = ev->pid;
	s->ssl = ev->ssl;
	s->direction = ev->direction;
	s->next = t->streams[b];
	t->streams[b] = s;
	t->n_streams++;
	return s;
}

static void streams_close(struct tls *t, uint32_t pid, uint64_t ssl)
{
	for (uint8_t d = MM_SSL_DIR_READ; d <= MM_SSL_DIR_WRITE; d++) {
		size_t b = stream_bucket(pid, ssl, d);
		for (struct tls_stream *s = t->streams[b]; s; s = s->next) {
			if (s->pid == pid && s->ssl == ssl && s->direction == d) {
				stream_free(t, s, true);
				break;
			}
		}
	}
}

static void streams_expire(struct tls *t, uint64_t now)
{
	for (size_t i = 0; i < TLS_STREAM_BUCKETS; i++) {
		struct tls_stream *s = t->streams[i];
		while (s) {
			struct tls_stream *next = s->next;
			uint64_t idle = s->last_ns < now ? now - s->last_ns : 0;
			if (idle > TLS_STREAM_IDLE_NS)
				stream_free(t, s, true);
			else if (idle > TLS_STREAM_QUIET_NS && s->scan.n)
				stream_scan(t, s, NULL, 0);
			s = next;
		}
	}
}

static int on_event(void *ctx, void *data, size_t size)
{
	struct tls *t = ctx;
	struct mm_ssl_event ev;
	if (size < sizeof(ev))
		return 0;
	memcpy(&ev, data, sizeof(ev));
	const char *payload = (const char *)data + sizeof(ev);
	if (ev.len > size - sizeof(ev) || ev.len > MM_SSL_CHUNK || ev.slot >= MM_SSL_MAX_SLOTS)
		return 0;
	if (ev.direction == MM_SSL_DIR_CLOSE) {
		streams_close(t, ev.pid, ev.ssl);
		return 0;
	}
	if (ev.direction != MM_SSL_DIR_READ && ev.direction != MM_SSL_DIR_WRITE)
		return 0;

	t->stats.records++;
	t->stats.bytes += ev.len;
	metrics_tls_record(t->slots[ev.slot].name, ev.len, false);

	struct tls_stream *s = stream_get(t, &ev);
	if (!s)
		return 0;
	s->last_ns = now_ns();
	s->cgroup_id = ev.cgroup_id;
	s->slot = ev.slot;
	stream_conn(s, &ev.conn);
	stream_scan(t, s, payload, ev.len);
	/* Bytes are missing after this record: what follows is not contiguous. */
	if ((ev.flags & MM_SSL_F_TRUNCATED) && (ev.flags & MM_SSL_F_LAST)) {
		stream_scan(t, s, NULL, 0);
		if (s->h2 == 1) {
			/* HTTP/2 frames cannot be followed across a gap: flat from here on. */
			h2obs_free(s->obs);
			s->obs = NULL;
			s->h2 = -1;
		}
	}
	return 0;
}

/* ---- start-up ---- */

/* Whether BPF may call bpf_probe_write_user here: the kernel refuses to load such a program
 * under lockdown (integrity or confidentiality). */
static bool probe_inplace(void)
{
	char mode[128] = "";
	FILE *f = fopen("/sys/kernel/security/lockdown", "re");
	if (f) {
		if (!fgets(mode, sizeof(mode), f))
			mode[0] = 0;
		fclose(f);
		mode[strcspn(mode, "\n")] = 0;
	}
	/*
	 * libbpf_probe_bpf_helper() reports the helper as present when the verifier's refusal
	 * is worded differently ("program of this type cannot use helper"), so load the smallest
	 * program that calls it: *(u64 *)(fp - 8) = 0; bpf_probe_write_user(0, fp - 8, 8).
	 */
	const struct bpf_insn insns[] = {
		{.code = BPF_ST | BPF_MEM | BPF_DW, .dst_reg = BPF_REG_10, .off = -8, .imm = 0},
		{.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_1, .imm = 0},
		{.code = BPF_ALU64 | BPF_MOV | BPF_X, .dst_reg = BPF_REG_2, .src_reg = BPF_REG_10},
		{.code = BPF_ALU64 | BPF_ADD | BPF_K, .dst_reg = BPF_REG_2, .imm = -8},
		{.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_3, .imm = 8},
		{.code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_probe_write_user},
		{.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0},
		{.code = BPF_JMP | BPF_EXIT},
	};
	int fd = bpf_prog_load(BPF_PROG_TYPE_KPROBE, "mm_probe_write", "GPL", insns,
			       sizeof(insns) / sizeof(insns[0]), NULL);
	bool ok = fd >= 0;
	if (fd >= 0)
		close(fd);
	agent_log(ok ? AGENT_LOG_INFO : AGENT_LOG_WARN,
		  "tls: in-place rewriting of TLS plaintext is %s (bpf_probe_write_user %s%s%s)",
		  ok ? "possible" : "unavailable", ok ? "allowed" : "refused by the kernel",
		  mode[0] ? "; lockdown: " : "", mode);
	return ok;
}

/* Stop-rewrite needs the exec tracepoint (seize new processes at once) and the tracer
 * threads. Without them, it is unavailable. */
static void start_stopper(struct tls *t)
{
	struct ssl *k = t->skel;
	if (!k->links.ssl_exec) {
		agent_log(AGENT_LOG_WARN, "tls: stop-rewrite unavailable: the exec tracepoint is "
					  "not attached");
		return;
	}
	struct tls_stop_maps maps = {
		.stops = bpf_map__fd(k->maps.stops),
		.stop_sig = bpf_map__fd(k->maps.stop_sig),
		.unenforced = bpf_map__fd(k->maps.unenforced),
	};
	int r = tls_stop_open(&t->stopper, &maps, t->cgroup_root, 0, t->stop_delay_ms);
	if (r < 0)
		agent_log(AGENT_LOG_WARN, "tls: stop-rewrite unavailable: %s", strerror(-r));
}

static void publish_stats(struct tls *t)
{
	pthread_mutex_lock(&t->lock);
	t->published = t->stats;
	pthread_mutex_unlock(&t->lock);
	if (!t->stopper)
		return;
	struct tls_stop_stats st;
	tls_stop_get_stats(t->stopper, &st);
	const struct {
		const char *event;
		uint64_t v;
	} ev[] = {
		{"stopped", st.stops},
		{"rewritten", st.rewritten},
		{"masked", st.masked},
		{"partial", st.partial},
		{"watchdog", st.watchdog},
		{"stale", st.stale},
		{"failed", st.failed},
		{"skipped_traced", st.skip_traced},
		{"skipped_signal", st.skip_signal},
		{"skipped_denied", st.skip_denied},
		{"unenforced", st.unenforced},
	};
	for (size_t i = 0; i < sizeof(ev) / sizeof(ev[0]); i++)
		metrics_tls_stop(ev[i].event, ev[i].v);
	metrics_tls_stop_traced(st.seized);
}

static void *tls_thread(void *arg)
{
	struct tls *t = arg;
	uint64_t last_scan = 0;
	while (!atomic_load(&t->stop)) {
		uint64_t now = now_ns();
		if (now - last_scan >= TLS_SCAN_INTERVAL_NS) {
			last_scan = now;
			collect_drops(t); /* before slots may change hands */
			apply_pending(t);
			refresh_cgroups(t);
			scan_procs(t);
			streams_expire(t, now);
		}
		/* Records arrive without wake-ups until an eighth of the ringbuf is used, so
		 * the timeout bounds how late a finding is reported. */
		int r = ring_buffer__poll(t->rb, TLS_POLL_MS);
		if (r >= 0)
			r = ring_buffer__consume(t->rb);
		if (r < 0 && r != -EINTR) {
			agent_log(AGENT_LOG_ERROR, "tls: ringbuf poll: %s", strerror(-r));
			break;
		}
		publish_stats(t);
	}
	/* Findings held back in windows are still findings. */
	ring_buffer__consume(t->rb);
	for (size_t i = 0; i < TLS_STREAM_BUCKETS; i++)
		while (t->streams[i])
			stream_free(t, t->streams[i], true);
	return NULL;
}

static void tls_free(struct tls *t)
{
	if (!t)
		return;
	tls_probes_free(t->probes);
	/* Before the BPF maps go: the tracer releases every thread it holds. */
	tls_stop_close(t->stopper);
	free_cgroups(t->cgroups, t->n_cgroups);
	for (int s = 0; s < MM_SSL_MAX_SLOTS; s++)
		free(t->slots[s].name);
	ring_buffer__free(t->rb);
	ssl__destroy(t->skel);
	if (t->pending)
		policy_set_unref(t->pending);
	if (t->set)
		policy_set_unref(t->set);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

int tls_start(struct tls **out, const struct tls_config *cfg, struct store *st)
{
	*out = NULL;
	struct tls *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	int r;
	if (cfg->cgroup_root) {
		snprintf(t->cgroup_root, sizeof(t->cgroup_root), "%s", cfg->cgroup_root);
	} else if ((r = cgroup_find_root(t->cgroup_root, sizeof(t->cgroup_root))) < 0) {
		agent_log(AGENT_LOG_ERROR, "tls: no cgroup v2 mount found");
		goto fail;
	}
	size_t rl = strlen(t->cgroup_root);
	while (rl > 1 && t->cgroup_root[rl - 1] == '/')
		t->cgroup_root[--rl] = 0;
	t->inplace = probe_inplace();

	t->skel = ssl__open();
	if (!t->skel) {
		r = -errno;
		agent_log(AGENT_LOG_ERROR, "tls: opening the uprobe object: %s", strerror(-r));
		goto fail;
	}
	uint32_t ring_kb = cfg->ring_kb ? cfg->ring_kb : TLS_RING_DEFAULT_KB;
	if ((r = bpf_map__set_max_entries(t->skel->maps.events, ring_kb * 1024u)) < 0) {
		agent_log(AGENT_LOG_ERROR, "tls: ring buffer of %u KiB: %s", ring_kb, strerror(-r));
		goto fail;
	}
	t->skel->rodata->wakeup_bytes = bpf_map__max_entries(t->skel->maps.events) / 8;
	t->skel->rodata->tracer_tgid = (uint32_t)getpid();
	/*
	 * Socket I/O inside SSL calls names connections: seen in the socket layer where the
	 * kernel has its tracepoints, else at every syscall's entry (a cost to every process on
	 * the node; see ssl.bpf.c).
	 */
	bool sock_tp = !cfg->syscall_attribution && mm_have_sock_tracepoints();
	bpf_program__set_autoload(t->skel->progs.ssl_sock_send, sock_tp);
	bpf_program__set_autoload(t->skel->progs.ssl_sock_recv, sock_tp);
	bpf_program__set_autoload(t->skel->progs.ssl_sys_enter, !sock_tp);
	if ((r = ssl__load(t->skel)) < 0) {
		agent_log(AGENT_LOG_ERROR, "tls: loading the uprobe object: %s", strerror(-r));
		goto fail;
	}
	bool attached;
	if (sock_tp)
		attached = (t->skel->links.ssl_sock_send =
				    bpf_program__attach(t->skel->progs.ssl_sock_send)) &&
			   (t->skel->links.ssl_sock_recv =
				    bpf_program__attach(t->skel->progs.ssl_sock_recv));
	else
		attached = (t->skel->links.ssl_sys_enter =
				    bpf_program__attach(t->skel->progs.ssl_sys_enter)) != NULL;
	if (attached)
		agent_log(AGENT_LOG_INFO, "tls: connections attributed %s",
			  sock_tp ? "through the socket-layer tracepoints"
				  : "at syscall entry (sys_enter: every syscall on the node takes "
				    "the tracing path)");
	else
		agent_log(AGENT_LOG_WARN,
			  "tls: %s unavailable (%s): connections are attributed only through "
			  "SSL_set_fd",
			  sock_tp ? "socket tracepoints" : "sys_enter tracing", strerror(errno));
	/*
	 * Probes are attached per covered process; these tell the agent at once of a process
	 * that becomes covered (exec, fork, moved into a covered cgroup), instead of at the
	 * next scan.
	 */
	struct ssl *k = t->skel;
	if (!(k->links.ssl_exec = bpf_program__attach(k->progs.ssl_exec)) ||
	    !(k->links.ssl_fork = bpf_program__attach(k->progs.ssl_fork)) ||
	    !(k->links.ssl_cgroup_move = bpf_program__attach(k->progs.ssl_cgroup_move)))
		agent_log(AGENT_LOG_WARN,
			  "tls: process tracepoints unavailable (%s): new covered processes are "
			  "probed by the next scan (within a second)",
			  strerror(errno));
	t->node_wide = cfg->node_wide;
	t->stop_delay_ms = cfg->stop_delay_ms;
	if ((r = tls_probes_new(&t->probes, t->skel, cfg->public_entry, on_uncaptured, t)) < 0)
		goto fail;
	start_stopper(t);
	t->rb = ring_buffer__new(bpf_map__fd(t->skel->maps.events), on_event, t, NULL);
	if (!t->rb || ring_buffer__add(t->rb, bpf_map__fd(t->skel->maps.procs), on_proc, t) < 0) {
		r = t->rb ? -EINVAL : -errno;
		agent_log(AGENT_LOG_ERROR, "tls: ringbuf: %s", strerror(-r));
		goto fail;
	}
	if ((r = store_subscribe(st, on_policies, t)) < 0) {
		agent_log(AGENT_LOG_ERROR, "tls: store subscription: %s", strerror(-r));
		goto fail;
	}
	t->store = st;
	/* Apply the current policies and attach to running processes before returning, so
	 * that a caller that starts TLS right after start-up is already captured. */
	apply_pending(t);
	scan_procs(t);
	if (t->stopper)
		tls_stop_rescan(t->stopper);
	publish_stats(t);
	if ((r = -pthread_create(&t->thread, NULL, tls_thread, t)) < 0) {
		agent_log(AGENT_LOG_ERROR, "tls: thread: %s", strerror(-r));
		goto fail;
	}
	agent_log(AGENT_LOG_INFO, "tls: capturing (cgroup root %s, %" PRIu64 " files probed)",
		  t->cgroup_root, t->stats.targets);
	*out = t;
	return 0;
fail:
	store_unsubscribe(t->store, on_policies, t);
	tls_free(t);
	return r;
}

void tls_stop(struct tls *t)
{
	if (!t)
		return;
	/* Returns once no policy callback runs: none can reach t after this. */
	store_unsubscribe(t->store, on_policies, t);
	atomic_store(&t->stop, true);
	pthread_join(t->thread, NULL);
	tls_free(t);
}

bool tls_inplace_available(const struct tls *t)
{
	return t && t->inplace;
}

bool tls_stop_rewrite_available(const struct tls *t)
{
	return t && t->stopper;
}

void tls_get_stats(struct tls *t, struct tls_stats *out)
{
	pthread_mutex_lock(&t->lock);
	*out = t->published;
	pthread_mutex_unlock(&t->lock);
	out->stop_available = t->stopper != NULL;
	if (t->stopper)
		tls_stop_get_stats(t->stopper, &out->stop);
}
