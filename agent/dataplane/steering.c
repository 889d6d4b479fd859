// SPDX-License-Identifier: Apache-2.0
#include <arpa/inet.h>
#include <errno.h>
#include <fnmatch.h>
#include <pthread.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "cgroup.h"
#include "identity.h"
#include "log.h"
#include "metrics.h"
#include "netns.h"
#include "slots.h"
#include "sockreset.h"
#include "steering.h"

#define MAX_PIDS 4096
#define CALLER_NS 4 /* netns remembered per caller (a pod has one) */
/* A listener entry of another agent, for a netns we do not cover, outlives its agent by this. */
#define FOREIGN_STALE_SECS 10

struct caller {
	uint64_t id;
	uint64_t mask;
	uint64_t epoch; /* steering epoch its coverage was settled at (gap resets done) */
	char *path; /* relative to the cgroup root */
	bool unsteered; /* did not fit in steer_callers */
	uint32_t n_ns;
	uint64_t ns_ino[CALLER_NS]; /* netns of its processes, and one pid in each */
	int ns_pid[CALLER_NS];
};

struct nsent {
	uint64_t ino, cookie;
	bool seen;
};

struct slot {
	struct policy *p; /* a reference; NULL = free */
	uint64_t epoch; /* steering epoch at which its coverage last grew */
	char name[256]; /* holder; kept after it leaves (for late counters) until reused */
	bool inherited; /* name read from the pinned steer_slots (a previous agent's maps) */
};

struct foreign {
	uint64_t cookie;
	time_t since;
};

/*
 * What the workers resolve connections with (steering_policy_for, steering_caller_name): an
 * immutable copy of the callers and the slots' policies, published whole by the control thread
 * and read under a reference, so a worker never sees a half-applied change.
 */
struct view_caller {
	uint64_t id, mask;
	char *path;
};

struct steer_view {
	unsigned refs; /* __atomic */
	size_t n;
	struct view_caller *v; /* sorted by id */
	struct policy *slots[STEER_MAX_POLICIES];
};

struct steering {
	char *root, *attach;
	struct loader_maps maps;
	struct workers *wk;
	pthread_mutex_t view_lock; /* guards the pointer `view`, not its content */
	struct steer_view *view;
	int ino_fd;
	uint64_t self_cg;
	struct policy_set *set;
	struct caller *callers; /* sorted by id */
	size_t n_callers;
	struct nsent *ns;
	size_t n_ns, cap_ns;
	bool ready;
	int ncpu;
	uint64_t stats_seen[STEER_STATS_SIZE];
	int pids[MAX_PIDS];

	uint64_t owner; /* this agent's instance id, in the map entries it writes */
	bool superseded; /* a newer live agent owns the maps: leave them alone */
	bool yielded; /* the pinned links run programs of another ABI: this one serves no more */
	uint16_t proxy_port;
	uint64_t epoch;
	struct slot slots[STEER_MAX_POLICIES];
	size_t n_pending_ns; /* covered netns where our listener could not be opened */
	bool listeners_ok; /* every covered netns has our steer_listeners entry */
	struct foreign *foreign;
	size_t n_foreign;
	size_t n_unsteered;
	bool overflow_on;
	bool warned_full, warned_reset;
	uint64_t attach_id;
};

static bool source_matches(const struct policy_source *src, const char *rel)
{
	if (src->cgroup && fnmatch(src->cgroup, rel, 0) != 0)
		return false;
	/* namespace/serviceAccount/labels: the pod's identity, false while it is unknown. */
	return identity_source_matches_cgroup(src, rel);
}

static bool policy_covers_caller(const struct policy *p, const char *rel)
{
	bool in = p->n_sources == 0;
	for (size_t i = 0; !in && i < p->n_sources; i++)
		in = source_matches(&p->sources[i], rel);
	for (size_t i = 0; in && i < p->n_exempt; i++)
		if (source_matches(&p->exempt[i], rel))
			in = false;
	return in;
}

static bool dest_matches(const struct policy_dest *d, const struct steer_orig *o)
{
	if (d->port && d->port != ntohs(o->port))
		return false;
	if (!d->family)
		return true;
	if (d->family != o->family)
		return false;
	unsigned bits = d->prefix_len;
	for (unsigned i = 0; i < 16 && bits; i++) {
		unsigned n = bits >= 8 ? 8 : bits;
		uint8_t m = (uint8_t)(0xff << (8 - n));
		if ((d->addr[i] ^ o->addr[i]) & m)
			return false;
		bits -= n;
	}
	return true;
}

static bool policy_covers_dest(const struct policy *p, const struct steer_orig *o)
{
	if (!p->n_dests)
		return true;
	for (size_t i = 0; i < p->n_dests; i++)
		if (dest_matches(&p->dests[i], o))
			return true;
	return false;
}

static int cmp_caller(const void *a, const void *b)
{
	const struct caller *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

static struct caller *find_caller(const struct steering *s, uint64_t id)
{
	struct caller key = {.id = id};
	if (!s->n_callers)
		return NULL;
	return bsearch(&key, s->callers, s->n_callers, sizeof(key), cmp_caller);
}

static void free_callers(struct caller *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].path);
	free(v);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void write_state(struct steering *s, uint64_t heartbeat)
{
	struct steer_state st;
	memset(&st, 0, sizeof(st));
	st.heartbeat_ns = heartbeat;
	st.owner = s->owner;
	st.overflow = s->overflow_on;
	uint32_t zero = 0;
	bpf_map_update_elem(s->maps.state, &zero, &st, BPF_ANY);
}

/*
 * Whether this agent owns the shared maps. During an overlapping restart the newest agent
 * claims them at start (its heartbeat carries its id); an older one then leaves every map
 * alone. An owner whose heartbeat went stale (killed) is replaced by whoever is still alive.
 */
static bool in_charge(struct steering *s)
{
	if (s->yielded)
		return false;
	struct steer_state st;
	uint32_t zero = 0;
	memset(&st, 0, sizeof(st));
	if (bpf_map_lookup_elem(s->maps.state, &zero, &st) < 0)
		return !s->superseded;
	bool fresh = st.heartbeat_ns && mono_ns() - st.heartbeat_ns < STEER_HEARTBEAT_NS;
	if (st.owner == s->owner || !st.owner || !fresh) {
		if (s->superseded)
			agent_log(AGENT_LOG_WARN, "steering: the newer agent is gone; taking the "
						  "steering maps back");
		s->superseded = false;
		return true;
	}
	if (!s->superseded)
		agent_log(AGENT_LOG_INFO,
			  "steering: a newer agent (%016llx) owns the steering maps",
			  (unsigned long long)st.owner);
	s->superseded = true;
	s->ready = false;
	return false;
}

/* Our entry for a netns: 0 = present and ours, 1 = absent or another agent's. */
static int listener_mine(const struct steering *s, uint64_t cookie)
{
	struct steer_listener l;
	if (bpf_map_lookup_elem(s->maps.listeners, &cookie, &l) < 0)
		return 1;
	return l.owner == s->owner ? 0 : 1;
}

static void listener_put(struct steering *s, uint64_t cookie)
{
	struct steer_listener l = {.owner = s->owner};
	if (bpf_map_update_elem(s->maps.listeners, &cookie, &l, BPF_ANY) < 0)
		agent_log(AGENT_LOG_WARN, "steer_listeners update: %s", strerror(errno));
}

/* Delete a listener entry only if it is ours: an overlapping agent's stays. */
static void listener_drop(struct steering *s, uint64_t cookie)
{
	if (listener_mine(s, cookie) == 0)
		bpf_map_delete_elem(s->maps.listeners, &cookie);
}

static void load_slot_names(struct steering *s)
{
	for (uint32_t k = 0; k < STEER_MAX_POLICIES; k++) {
		struct steer_slot v;
		memset(&v, 0, sizeof(v));
		if (bpf_map_lookup_elem(s->maps.slots, &k, &v) == 0) {
			v.name[sizeof(v.name) - 1] = 0;
			memcpy(s->slots[k].name, v.name, sizeof(v.name));
			s->slots[k].inherited = v.name[0] != 0;
		}
	}
}

static void store_slot_name(struct steering *s, uint32_t k, const char *name)
{
	struct steer_slot v;
	memset(&v, 0, sizeof(v));
	snprintf((char *)v.name, sizeof(v.name), "%s", name);
	bpf_map_update_elem(s->maps.slots, &k, &v, BPF_ANY);
}

static void view_unref(struct steer_view *v)
{
	if (!v || __atomic_sub_fetch(&v->refs, 1, __ATOMIC_ACQ_REL))
		return;
	for (size_t i = 0; i < v->n; i++)
		free(v->v[i].path);
	free(v->v);
	for (uint32_t k = 0; k < STEER_MAX_POLICIES; k++)
		if (v->slots[k])
			policy_unref(v->slots[k]);
	free(v);
}

/* The current view with a new reference (view_unref when done), or NULL before the first. */
static struct steer_view *view_get(struct steering *s)
{
	pthread_mutex_lock(&s->view_lock);
	struct steer_view *v = s->view;
	if (v)
		__atomic_add_fetch(&v->refs, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&s->view_lock);
	return v;
}

/*
 * Publish the callers and slots as they are now. On failure (no memory) the previous view
 * stays; the next publication catches up.
 */
static void view_publish(struct steering *s)
{
	struct steer_view *v = calloc(1, sizeof(*v));
	if (!v || (s->n_callers && !(v->v = calloc(s->n_callers, sizeof(*v->v))))) {
		free(v);
		return;
	}
	v->refs = 1;
	for (size_t i = 0; i < s->n_callers; i++) {
		const struct caller *c = &s->callers[i];
		v->v[i] = (struct view_caller){c->id, c->mask, c->path ? strdup(c->path) : NULL};
		v->n++;
	}
	for (uint32_t k = 0; k < STEER_MAX_POLICIES; k++)
		v->slots[k] = s->slots[k].p ? policy_ref(s->slots[k].p) : NULL;
	pthread_mutex_lock(&s->view_lock);
	struct steer_view *old = s->view;
	s->view = v;
	pthread_mutex_unlock(&s->view_lock);
	view_unref(old);
}

static int cmp_view_caller(const void *a, const void *b)
{
	const struct view_caller *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

static const struct view_caller *view_caller(const struct steer_view *v, uint64_t id)
{
	struct view_caller key = {.id = id};
	return v->n ? bsearch(&key, v->v, v->n, sizeof(key), cmp_view_caller) : NULL;
}

struct steering *steering_new(const struct steering_config *cfg)
{
	struct steering *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->root = strdup(cfg->cgroup_root);
	s->attach = strdup(cfg->attach_cgroup);
	s->maps = *cfg->maps;
	s->wk = cfg->workers;
	pthread_mutex_init(&s->view_lock, NULL);
	s->proxy_port = cfg->proxy_port;
	s->ncpu = libbpf_num_possible_cpus();
	s->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (!s->root || !s->attach || s->ino_fd < 0 || s->ncpu <= 0) {
		int e = s->ino_fd < 0 ? errno : ENOMEM;
		steering_free(s);
		errno = e;
		return NULL;
	}
	if (cfg->self_cgroup)
		cgroup_id_of(cfg->self_cgroup, &s->self_cg);
	cgroup_id_of(s->attach, &s->attach_id);
	while (!s->owner)
		if (getrandom(&s->owner, sizeof(s->owner), 0) != sizeof(s->owner))
			s->owner = (uint64_t)mono_ns() ^ ((uint64_t)getpid() << 32);
	/*
	 * The newest agent owns the maps (claimed here, before anything is written). Listener
	 * entries of a previous agent stay: while it still runs (an overlapping restart) they
	 * name its live listeners; ours replace them netns by netns, and those nobody renews go
	 * after FOREIGN_STALE_SECS. Slot names are inherited so flows keep their policy.
	 */
	write_state(s, mono_ns());
	load_slot_names(s);
	agent_log(AGENT_LOG_INFO, "steering: instance %016llx", (unsigned long long)s->owner);
	return s;
}

int steering_inotify_fd(const struct steering *s)
{
	return s->ino_fd;
}

bool steering_on_inotify(struct steering *s)
{
	char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool any = false;
	while (read(s->ino_fd, buf, sizeof(buf)) > 0)
		any = true;
	if (any)
		steering_rescan(s);
	return any;
}

/* Destinations: one LPM entry per (slot, dest, family). */
static void dest_keys(const struct policy *p, uint32_t idx, struct steer_dest_key *out, size_t *n,
		      size_t max)
{
	struct policy_dest any = {0};
	const struct policy_dest *v = p->n_dests ? p->dests : &any;
	size_t nd = p->n_dests ? p->n_dests : 1;
	for (size_t i = 0; i < nd; i++) {
		const struct policy_dest *d = &v[i];
		int fams[2], nf = 0;
		if (d->family)
			fams[nf++] = d->family;
		else {
			fams[nf++] = AF_INET;
			fams[nf++] = AF_INET6;
		}
		for (int f = 0; f < nf && *n < max; f++) {
			struct steer_dest_key k;
			memset(&k, 0, sizeof(k));
			k.policy = idx;
			k.port = htons(d->port);
			k.family = (uint8_t)fams[f];
			if (d->family) {
				unsigned maxbits = d->family == AF_INET ? 32 : 128;
				unsigned bits = d->prefix_len > maxbits ? maxbits : d->prefix_len;
				k.prefixlen = 64 + bits;
				memcpy(k.addr, d->addr, d->family == AF_INET ? 4 : 16);
			} else {
				k.prefixlen = 64;
			}
			out[(*n)++] = k;
		}
	}
}

#define MAX_DEST_KEYS 4096

/* Write the destinations of every held slot (entries are only added or updated). */
static int write_dests(struct steering *s, struct steer_dest_key *keys, size_t *n)
{
	*n = 0;
	for (uint32_t k = 0; k < STEER_MAX_POLICIES; k++) {
		const struct policy *p = s->slots[k].p;
		if (!p)
			continue;
		size_t before = *n;
		dest_keys(p, k, keys, n, MAX_DEST_KEYS);
		struct steer_dest_val v = {
			.flags = p->failure_mode == POLICY_FAIL_OPEN ? STEER_DEST_FAIL_OPEN : 0};
		for (size_t j = before; j < *n; j++)
			if (bpf_map_update_elem(s->maps.dests, &keys[j], &v, BPF_ANY) < 0)
				agent_log(AGENT_LOG_WARN, "steer_dests update: %s",
					  strerror(errno));
	}
	metrics_bpf_map("steer_dests", *n, MAX_DEST_KEYS);
	return 0;
}

/* Remove the entries that are not in keys (after the callers' masks switched). */
static void delete_stale_dests(struct steering *s, const struct steer_dest_key *keys, size_t n)
{
	struct steer_dest_key cur, next;
	struct steer_dest_key *stale = calloc(MAX_DEST_KEYS, sizeof(*stale));
	size_t n_stale = 0;
	int r = stale ? bpf_map_get_next_key(s->maps.dests, NULL, &next) : -1;
	while (r == 0 && n_stale < MAX_DEST_KEYS) {
		cur = next;
		bool keep = false;
		for (size_t j = 0; j < n && !keep; j++)
			keep = !memcmp(&keys[j], &cur, sizeof(cur));
		if (!keep)
			stale[n_stale++] = cur;
		r = bpf_map_get_next_key(s->maps.dests, &cur, &next);
	}
	for (size_t j = 0; j < n_stale; j++)
		bpf_map_delete_elem(s->maps.dests, &stale[j]);
	free(stale);
}

struct scan {
	struct steering *s;
	struct caller *v;
	size_t n, cap;
	int err;
};

static struct nsent *find_ns(struct steering *s, uint64_t ino)
{
	for (size_t i = 0; i < s->n_ns; i++)
		if (s->ns[i].ino == ino)
			return &s->ns[i];
	return NULL;
}

static struct nsent *find_ns_cookie(struct steering *s, uint64_t cookie)
{
	for (size_t i = 0; i < s->n_ns; i++)
		if (s->ns[i].cookie == cookie)
			return &s->ns[i];
	return NULL;
}

static void caller_add_ns(struct caller *c, uint64_t ino, int pid)
{
	for (uint32_t i = 0; i < c->n_ns; i++)
		if (c->ns_ino[i] == ino)
			return;
	if (c->n_ns == CALLER_NS)
		return;
	c->ns_ino[c->n_ns] = ino;
	c->ns_pid[c->n_ns++] = pid;
}

static void cover_netns(struct steering *s, const char *dir, const char *rel, struct caller *c)
{
	int n = cgroup_pids(dir, s->pids, MAX_PIDS);
	for (int i = 0; i < n; i++) {
		uint64_t ino;
		if (netns_ino_of_pid(s->pids[i], &ino) < 0)
			continue;
		caller_add_ns(c, ino, s->pids[i]);
		struct nsent *e = find_ns(s, ino);
		if (e) {
			e->seen = true;
			continue;
		}
		int fd = netns_open_pid(s->pids[i], &ino);
		if (fd < 0)
			continue;
		if (s->n_ns == s->cap_ns) {
			size_t cap = s->cap_ns ? s->cap_ns * 2 : 16;
			struct nsent *v = realloc(s->ns, cap * sizeof(*v));
			if (!v) {
				close(fd);
				return;
			}
			s->ns = v;
			s->cap_ns = cap;
		}
		uint64_t cookie;
		int r = workers_listen_netns(s->wk, fd, ino, &cookie);
		if (r < 0) {
			/* Retried at the next rescan; not ready meanwhile. */
			s->n_pending_ns++;
			agent_log(AGENT_LOG_WARN, "listener in netns %llu (cgroup %s): %s",
				  (unsigned long long)ino, rel, strerror(-r));
			continue;
		}
		listener_put(s, cookie);
		s->ns[s->n_ns++] = (struct nsent){.ino = ino, .cookie = cookie, .seen = true};
		agent_log(AGENT_LOG_INFO, "listening in netns %llu for cgroup %s",
			  (unsigned long long)ino, rel);
	}
}

static int scan_one(void *ctx, const char *dir, const char *rel, uint64_t id)
{
	struct scan *sc = ctx;
	struct steering *s = sc->s;
	char path[PATH_MAX];
	inotify_add_watch(s->ino_fd, dir, IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_ONLYDIR);
	/* cgroup.events changes when the first process enters ("populated 1"). */
	if (snprintf(path, sizeof(path), "%s/cgroup.events", dir) < (int)sizeof(path))
		inotify_add_watch(s->ino_fd, path, IN_MODIFY);
	if (id == s->self_cg || !s->set)
		return 0;
	uint64_t mask = 0;
	for (uint32_t k = 0; k < STEER_MAX_POLICIES; k++)
		if (s->slots[k].p && policy_covers_caller(s->slots[k].p, rel))
			mask |= 1ULL << k;
	if (!mask)
		return 0;
	if (sc->n == sc->cap) {
		size_t cap = sc->cap ? sc->cap * 2 : 64;
		struct caller *v = realloc(sc->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		sc->v = v;
		sc->cap = cap;
	}
	char *p = strdup(rel);
	if (!p)
		return -ENOMEM;
	struct caller *c = &sc->v[sc->n++];
	*c = (struct caller){.id = id, .mask = mask, .path = p};
	cover_netns(s, dir, rel, c);
	return 0;
}

/* ---- gap resets ---- */

struct reset_ctx {
	struct steering *s;
	const struct caller *c;
	uint64_t gained;
	uint64_t reset[STEER_MAX_POLICIES], kept[STEER_MAX_POLICIES];
};

static bool is_loopback(const struct sockreset_sock *sk)
{
	static const uint8_t lo6[16] = {[15] = 1};
	return sk->family == AF_INET ? sk->dst[0] == 127 : !memcmp(sk->dst, lo6, 16);
}

/*
 * A socket of the caller, to a destination a newly covering policy has, that is not one of
 * ours: it went straight to the server. Steered connections go to our listener (loopback,
 * proxy port); the agent's own upstream sockets belong to the agent's cgroup; a socket whose
 * local port is listened on was accepted, not opened by the caller.
 */
static bool reset_filter(void *ctx, const struct sockreset_sock *sk)
{
	struct reset_ctx *x = ctx;
	if (sk->cgroup_id != x->c->id || sk->server)
		return false;
	if (is_loopback(sk) && sk->dport == x->s->proxy_port)
		return false;
	struct steer_orig o;
	memset(&o, 0, sizeof(o));
	o.family = sk->family;
	o.port = htons(sk->dport);
	memcpy(o.addr, sk->dst, sizeof(o.addr));
	for (uint32_t k = 0; k < STEER_MAX_POLICIES; k++) {
		const struct policy *p = x->s->slots[k].p;
		if (!((x->gained >> k) & 1) || !p || !policy_covers_dest(p, &o))
			continue;
		if (p->existing == POLICY_EXISTING_KEEP) {
			x->kept[k]++;
			return false;
		}
		x->reset[k]++;
		return true;
	}
	return false;
}

/* Reset the caller's connections that bypassed the agent to what `gained` now covers. */
static void reset_gap(struct steering *s, const struct caller *c, uint64_t gained)
{
	struct reset_ctx x = {.s = s, .c = c, .gained = gained};
	for (uint32_t i = 0; i < c->n_ns; i++) {
		uint64_t ino;
		int fd = netns_open_pid(c->ns_pid[i], &ino);
		if (fd < 0)
			continue;
		int r = ino == c->ns_ino[i] ? sockreset_netns(fd, reset_filter, &x) : 0;
		close(fd);
		if (r < 0 && !s->warned_reset) {
			s->warned_reset = true;
			agent_log(AGENT_LOG_WARN,
				  "cannot reset connections that bypassed the agent (netns %llu): "
				  "%s; they stay unmasked",
				  (unsigned long long)c->ns_ino[i], strerror(-r));
		}
	}
	for (uint32_t k = 0; k < STEER_MAX_POLICIES; k++) {
		const char *name = s->slots[k].name;
		for (int reset = 0; reset < 2; reset++) {
			uint64_t n = reset ? x.reset[k] : x.kept[k];
			if (!n)
				continue;
			metrics_existing_connections(name, reset, n);
			agent_log(AGENT_LOG_INFO,
				  "policy %s now covers cgroup %s: %s %llu connection(s) that "
				  "bypassed the agent%s",
				  name, c->path, reset ? "reset" : "kept", (unsigned long long)n,
				  reset ? "" : " (existingConnections: keep)");
		}
	}
}

/* Slots that newly cover c since it was last settled (all of them for a new caller). */
static uint64_t gained_slots(const struct steering *s, const struct caller *old,
			     const struct caller *c)
{
	if (!old)
		return c->mask;
	uint64_t g = c->mask & ~old->mask;
	for (uint32_t k = 0; k < STEER_MAX_POLICIES; k++)
		if (((c->mask & old->mask) >> k) & 1 && s->slots[k].epoch > old->epoch)
			g |= 1ULL << k;
	return g;
}

/* ---- callers that do not fit ---- */

/*
 * Callers that did not fit in steer_callers go to steer_overflow: under their own id while it
 * has room, else under the attach cgroup (one catch-all entry, so a full overflow map still
 * fails closed). The agent's own cgroup gets an empty mask there: the catch-all must never
 * refuse its upstream connections.
 */
static void write_overflow(struct steering *s, const struct caller *v, size_t n)
{
	uint32_t cap = 1024, used = 0;
	uint64_t catch_all = 0;
	size_t unsteered = 0;
	for (size_t i = 0; i < n; i++) {
		if (!v[i].unsteered)
			continue;
		unsteered++;
		struct steer_caller m = {.policy_mask = v[i].mask};
		if (used + 2 < cap &&
		    bpf_map_update_elem(s->maps.overflow, &v[i].id, &m, BPF_ANY) == 0)
			used++;
		else
			catch_all |= v[i].mask;
	}
	if (unsteered) {
		struct steer_caller none = {0};
		if (s->self_cg)
			bpf_map_update_elem(s->maps.overflow, &s->self_cg, &none, BPF_ANY);
		if (catch_all) {
			struct steer_caller m = {.policy_mask = catch_all};
			bpf_map_update_elem(s->maps.overflow, &s->attach_id, &m, BPF_ANY);
		}
	}
	/* Remove what no longer belongs there. */
	uint64_t key, next;
	int g = bpf_map_get_next_key(s->maps.overflow, NULL, &next);
	while (g == 0) {
		key = next;
		g = bpf_map_get_next_key(s->maps.overflow, &key, &next);
		bool keep = false;
		if (unsteered && (key == s->self_cg || (catch_all && key == s->attach_id)))
			keep = true;
		for (size_t i = 0; i < n && !keep; i++)
			keep = v[i].unsteered && v[i].id == key;
		if (!keep)
			bpf_map_delete_elem(s->maps.overflow, &key);
	}
	bool on = unsteered > 0;
	if (on != s->overflow_on) {
		s->overflow_on = on;
		write_state(s, mono_ns());
	}
	if (unsteered && !s->warned_full) {
		s->warned_full = true;
		agent_log(AGENT_LOG_ERROR,
			  "steer_callers is full (%u entries): %zu covered cgroup(s) cannot be "
			  "steered; their flagged connections follow failureMode (closed: refused)",
			  s->maps.callers_max, unsteered);
	} else if (!unsteered) {
		s->warned_full = false;
	}
	s->n_unsteered = unsteered;
	metrics_callers_unsteered(unsteered);
}

/* ---- listeners ---- */

static bool foreign_stale(struct steering *s, uint64_t cookie, time_t now)
{
	for (size_t i = 0; i < s->n_foreign; i++)
		if (s->foreign[i].cookie == cookie)
			return now - s->foreign[i].since > FOREIGN_STALE_SECS;
	struct foreign *v = realloc(s->foreign, (s->n_foreign + 1) * sizeof(*v));
	if (v) {
		s->foreign = v;
		s->foreign[s->n_foreign++] = (struct foreign){.cookie = cookie, .since = now};
	}
	return false;
}

/*
 * Every covered netns must have our entry: another agent's exit (or a bug) may have deleted
 * it, and without it BPF treats the agent as down there. Entries of other agents for netns we
 * do not cover are left to them for FOREIGN_STALE_SECS (an older agent still draining), then
 * removed (their agent is gone).
 */
static void check_listeners(struct steering *s)
{
	bool ok = true;
	for (size_t i = 0; i < s->n_ns; i++) {
		if (listener_mine(s, s->ns[i].cookie) == 0)
			continue;
		agent_log(AGENT_LOG_WARN,
			  "steer_listeners entry of netns %llu was missing or "
			  "another agent's: restored",
			  (unsigned long long)s->ns[i].ino);
		listener_put(s, s->ns[i].cookie);
		ok = ok && listener_mine(s, s->ns[i].cookie) == 0;
	}
	time_t now = time(NULL);
	struct foreign *keep = NULL;
	size_t n_keep = 0;
	uint64_t key, next;
	int g = bpf_map_get_next_key(s->maps.listeners, NULL, &next);
	while (g == 0) {
		key = next;
		g = bpf_map_get_next_key(s->maps.listeners, &key, &next);
		if (find_ns_cookie(s, key))
			continue;
		if (listener_mine(s, key) == 0) {
			bpf_map_delete_elem(s->maps.listeners, &key); /* ours, netns gone */
			continue;
		}
		if (foreign_stale(s, key, now)) {
			agent_log(AGENT_LOG_DEBUG,
				  "removed a stale listener entry of another agent");
			bpf_map_delete_elem(s->maps.listeners, &key);
			continue;
		}
		struct foreign *v = realloc(keep, (n_keep + 1) * sizeof(*v));
		if (v) {
			keep = v;
			for (size_t i = 0; i < s->n_foreign; i++)
				if (s->foreign[i].cookie == key)
					keep[n_keep++] = s->foreign[i];
		}
	}
	free(s->foreign);
	s->foreign = keep;
	s->n_foreign = n_keep;
	s->listeners_ok = ok;
}

int steering_rescan(struct steering *s)
{
	if (!in_charge(s))
		return 0;
	struct scan sc = {.s = s};
	for (size_t i = 0; i < s->n_ns; i++)
		s->ns[i].seen = false;
	s->n_pending_ns = 0;
	int r = cgroup_walk(s->root, s->attach, scan_one, &sc);
	if (r < 0) {
		agent_log(AGENT_LOG_ERROR, "cgroup scan of %s: %s", s->attach, strerror(-r));
		free_callers(sc.v, sc.n);
		return r;
	}
	if (sc.n)
		qsort(sc.v, sc.n, sizeof(*sc.v), cmp_caller);

	size_t in_map = 0;
	for (size_t i = 0; i < sc.n; i++) {
		struct steer_caller v = {.policy_mask = sc.v[i].mask};
		if (bpf_map_update_elem(s->maps.callers, &sc.v[i].id, &v, BPF_ANY) == 0) {
			in_map++;
		} else if (errno == E2BIG || errno == ENOSPC || errno == ENOMEM) {
			sc.v[i].unsteered = true;
		} else {
			agent_log(AGENT_LOG_WARN, "steer_callers update: %s", strerror(errno));
		}
	}
	uint64_t key, next;
	int g = bpf_map_get_next_key(s->maps.callers, NULL, &next);
	while (g == 0) {
		key = next;
		g = bpf_map_get_next_key(s->maps.callers, &key, &next);
		struct caller k = {.id = key};
		if (!sc.n || !bsearch(&k, sc.v, sc.n, sizeof(k), cmp_caller))
			bpf_map_delete_elem(s->maps.callers, &key);
	}
	write_overflow(s, sc.v, sc.n);
	metrics_bpf_map("steer_callers", in_map, s->maps.callers_max);

	/* Coverage the maps now give that the callers did not have: their raw connections. */
	for (size_t i = 0; i < sc.n; i++) {
		struct caller *c = &sc.v[i];
		uint64_t gained = gained_slots(s, find_caller(s, c->id), c);
		c->epoch = s->epoch;
		if (gained)
			reset_gap(s, c, gained);
	}
	free_callers(s->callers, s->n_callers);
	s->callers = sc.v;
	s->n_callers = sc.n;
	view_publish(s);

	/* Netns whose covered processes are all gone: close their listeners. */
	for (size_t i = 0; i < s->n_ns;) {
		if (s->ns[i].seen) {
			i++;
			continue;
		}
		listener_drop(s, s->ns[i].cookie);
		workers_unlisten_netns(s->wk, s->ns[i].ino);
		agent_log(AGENT_LOG_INFO, "closed listener of netns %llu",
			  (unsigned long long)s->ns[i].ino);
		s->ns[i] = s->ns[--s->n_ns];
	}
	check_listeners(s);
	s->ready = s->set != NULL && s->listeners_ok && !s->n_pending_ns;
	return 0;
}

static bool dests_equal(const struct policy *a, const struct policy *b)
{
	return a->n_dests == b->n_dests &&
	       (!a->n_dests || !memcmp(a->dests, b->dests, a->n_dests * sizeof(*a->dests)));
}

/*
 * A new policy set is published as a generation: slots are assigned (a policy keeps its
 * slot), the destinations of every slot are written, the callers' masks switch (rescan), and
 * only then are the entries no slot holds any more deleted. A flow never matches a policy it
 * was not meant to, and never none while both old and new cover it.
 */
int steering_apply(struct steering *s, struct policy_set *set)
{
	struct policy_set *old = s->set;
	s->set = policy_set_ref(set);
	if (old)
		policy_set_unref(old);
	if (!in_charge(s))
		return 0;
	s->epoch++;

	size_t n = set->n;
	const char **names = calloc(n + 1, sizeof(*names));
	int *slot_of = calloc(n + 1, sizeof(*slot_of));
	struct steer_dest_key *keys = calloc(MAX_DEST_KEYS, sizeof(*keys));
	if (!names || !slot_of || !keys) {
		free(names);
		free(slot_of);
		free(keys);
		return -ENOMEM;
	}
	const char *cur[STEER_MAX_POLICIES];
	for (uint32_t k = 0; k < STEER_MAX_POLICIES; k++)
		cur[k] = s->slots[k].p		 ? s->slots[k].p->name
			 : s->slots[k].inherited ? s->slots[k].name
						 : NULL;
	for (size_t i = 0; i < n; i++)
		names[i] = set->v[i]->name;
	size_t got = slots_assign(cur, STEER_MAX_POLICIES, names, n, slot_of);
	if (got < n)
		agent_log(AGENT_LOG_ERROR, "%zu policies: %zu have no steering slot (at most %d)",
			  n, n - got, STEER_MAX_POLICIES);

	struct policy *released[STEER_MAX_POLICIES] = {0};
	bool used[STEER_MAX_POLICIES] = {0};
	for (size_t i = 0; i < n; i++) {
		if (slot_of[i] < 0)
			continue;
		struct slot *sl = &s->slots[slot_of[i]];
		struct policy *p = set->v[i];
		used[slot_of[i]] = true;
		bool same = sl->p && !strcmp(sl->p->name, p->name);
		if (!same || !dests_equal(sl->p, p))
			sl->epoch = s->epoch; /* coverage may have grown */
		if (!same) {
			released[slot_of[i]] = sl->p;
			snprintf(sl->name, sizeof(sl->name), "%s", p->name);
			store_slot_name(s, (uint32_t)slot_of[i], p->name);
		} else {
			policy_unref(sl->p);
		}
		sl->p = policy_ref(p);
	}
	for (uint32_t k = 0; k < STEER_MAX_POLICIES; k++)
		if (!used[k] && s->slots[k].p) {
			released[k] = s->slots[k].p;
			s->slots[k].p = NULL;
		}

	/* The workers see the new slots before the maps steer anything for them. */
	view_publish(s);
	size_t nk = 0;
	write_dests(s, keys, &nk);
	int r = steering_rescan(s);
	delete_stale_dests(s, keys, nk);
	for (uint32_t k = 0; k < STEER_MAX_POLICIES; k++) {
		if (released[k])
			policy_unref(released[k]);
		if (!used[k] && (released[k] || s->slots[k].inherited))
			store_slot_name(s, k, ""); /* free for the next agent too; name kept here */
		s->slots[k].inherited = false;
	}
	free(names);
	free(slot_of);
	free(keys);
	return r;
}

void steering_heartbeat(struct steering *s, bool alive)
{
	if (alive) {
		if (in_charge(s))
			write_state(s, mono_ns());
		return;
	}
	/* Going down: clear only our own heartbeat, never a newer agent's. */
	struct steer_state st;
	uint32_t zero = 0;
	memset(&st, 0, sizeof(st));
	if (bpf_map_lookup_elem(s->maps.state, &zero, &st) == 0 && st.owner == s->owner)
		write_state(s, 0);
}

void steering_release(struct steering *s)
{
	steering_heartbeat(s, false);
	for (size_t i = 0; i < s->n_ns; i++)
		listener_drop(s, s->ns[i].cookie);
	s->ready = false;
}

/* Entry idx of a per-CPU array summed over the CPUs (vals: ncpu scratch). 0 or -1. */
static int percpu_sum(const struct steering *s, int fd, uint32_t idx, uint64_t *vals, uint64_t *sum)
{
	if (bpf_map_lookup_elem(fd, &idx, vals) < 0)
		return -1;
	*sum = 0;
	for (int c = 0; c < s->ncpu; c++)
		*sum += vals[c];
	return 0;
}

void steering_collect_stats(struct steering *s)
{
	uint64_t *vals = calloc(s->ncpu, sizeof(uint64_t));
	if (!vals)
		return;
	for (uint32_t idx = 0; idx < STEER_STATS_SIZE; idx++) {
		uint32_t stat = idx % STEER_STAT__COUNT, pol = idx / STEER_STAT__COUNT;
		uint64_t sum;
		if (stat == STEER_STAT_STEERED || stat > STEER_STAT_UNSTEERED_REFUSED ||
		    percpu_sum(s, s->maps.stats, idx, vals, &sum) < 0)
			continue;
		uint64_t delta = sum - s->stats_seen[idx];
		s->stats_seen[idx] = sum;
		const char *name = s->slots[pol].name;
		bool passed = stat == STEER_STAT_PASSED || stat == STEER_STAT_UNSTEERED_PASSED;
		enum mm_reason why = stat == STEER_STAT_PASSED || stat == STEER_STAT_REFUSED
					     ? MM_REASON_AGENT_DOWN
					     : MM_REASON_LIMIT;
		for (uint64_t i = 0; i < delta && i < 100000; i++)
			metrics_flow(name, passed ? METRICS_FLOW_PASSED : METRICS_FLOW_REFUSED,
				     why);
	}
	if (s->maps.splice_stats >= 0) {
		uint64_t tot[STEER_SPLICE__COUNT] = {0};
		for (uint32_t idx = 0; idx < STEER_SPLICE__COUNT; idx++)
			percpu_sum(s, s->maps.splice_stats, idx, vals, &tot[idx]);
		metrics_splice(tot[STEER_SPLICE_BYTES], tot[STEER_SPLICE_MSGS],
			       tot[STEER_SPLICE_PASS], tot[STEER_SPLICE_APPS],
			       tot[STEER_SPLICE_AGENTS]);
	}
	free(vals);
}

struct policy *steering_policy_for(struct steering *s, const struct steer_orig *orig,
				   uint32_t directions)
{
	struct steer_view *v = view_get(s);
	if (!v)
		return NULL;
	const struct view_caller *c = view_caller(v, orig->cgroup_id);
	struct policy *found = NULL;
	for (uint32_t k = 0; k < STEER_MAX_POLICIES && !found; k++) {
		/*
		 * The slot the BPF program steered the connection for always counts: the maps
		 * may already cover a caller the view has not caught up with. A caller whose
		 * cgroup vanished keeps that policy too.
		 */
		bool mine = k == orig->policy || (c && (c->mask >> k) & 1);
		struct policy *p = v->slots[k];
		if (mine && p && (p->directions & directions) && policy_covers_dest(p, orig))
			found = policy_ref(p);
	}
	view_unref(v);
	return found;
}

const char *steering_caller_name(struct steering *s, uint64_t cgroup_id, char *buf, size_t size)
{
	struct steer_view *v = view_get(s);
	const struct view_caller *c = v ? view_caller(v, cgroup_id) : NULL;
	const char *r = NULL;
	if (c && c->path && size && snprintf(buf, size, "%s", c->path) >= 0)
		r = buf;
	view_unref(v);
	return r;
}

void steering_yield(struct steering *s)
{
	if (s->yielded)
		return;
	agent_log(AGENT_LOG_WARN, "steering: the pinned links run another agent's programs (an "
				  "upgrade or downgrade whose maps differ): closing this agent's "
				  "listeners");
	s->yielded = s->superseded = true;
	s->ready = false;
	for (size_t i = 0; i < s->n_ns; i++)
		workers_unlisten_netns(s->wk, s->ns[i].ino);
	s->n_ns = 0;
}

bool steering_ready(const struct steering *s)
{
	return s->ready && !s->superseded;
}

void steering_free(struct steering *s)
{
	if (!s)
		return;
	if (s->owner)
		steering_release(s);
	free(s->ns);
	free(s->foreign);
	free_callers(s->callers, s->n_callers);
	for (uint32_t k = 0; k < STEER_MAX_POLICIES; k++)
		if (s->slots[k].p)
			policy_unref(s->slots[k].p);
	if (s->set)
		policy_set_unref(s->set);
	if (s->ino_fd >= 0)
		close(s->ino_fd);
	view_unref(s->view);
	pthread_mutex_destroy(&s->view_lock);
	free(s->root);
	free(s->attach);
	free(s);
}
