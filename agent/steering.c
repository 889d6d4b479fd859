// SPDX-License-Identifier: Apache-2.0
#include <arpa/inet.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "agent.h"
#include "cgroup.h"
#include "identity.h"
#include "metrics.h"
#include "netns.h"
#include "steering.h"

#define MAX_PIDS 4096

struct caller {
	uint64_t id;
	uint64_t mask;
	char *path; /* relative to the cgroup root */
};

struct nsent {
	uint64_t ino, cookie;
	bool seen;
};

struct steering {
	char *root, *attach;
	struct loader_maps maps;
	struct proxy *px;
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

struct steering *steering_new(const struct steering_config *cfg)
{
	struct steering *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->root = strdup(cfg->cgroup_root);
	s->attach = strdup(cfg->attach_cgroup);
	s->maps = *cfg->maps;
	s->px = cfg->proxy;
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

	/* Listener entries of a previous agent name sockets that no longer exist. */
	uint64_t key, next;
	int r = bpf_map_get_next_key(s->maps.listeners, NULL, &next);
	while (r == 0) {
		key = next;
		r = bpf_map_get_next_key(s->maps.listeners, &key, &next);
		bpf_map_delete_elem(s->maps.listeners, &key);
	}
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

/* Destinations: one LPM entry per (policy, dest, family). */
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

static int write_dests(struct steering *s)
{
	size_t max = 4096, n = 0;
	struct steer_dest_key *keys = calloc(max, sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	size_t np = s->set ? s->set->n : 0;
	if (np > STEER_MAX_POLICIES) {
		agent_log(AGENT_LOG_WARN, "%zu policies: only the first %d steer connections", np,
			  STEER_MAX_POLICIES);
		np = STEER_MAX_POLICIES;
	}
	for (size_t i = 0; i < np; i++) {
		const struct policy *p = s->set->v[i];
		size_t before = n;
		dest_keys(p, (uint32_t)i, keys, &n, max);
		struct steer_dest_val v = {
			.flags = p->failure_mode == POLICY_FAIL_OPEN ? STEER_DEST_FAIL_OPEN : 0};
		for (size_t j = before; j < n; j++)
			if (bpf_map_update_elem(s->maps.dests, &keys[j], &v, BPF_ANY) < 0)
				agent_log(AGENT_LOG_WARN, "steer_dests update: %s",
					  strerror(errno));
	}
	/* Then remove what the new set no longer has. */
	struct steer_dest_key cur, next;
	struct steer_dest_key *stale = calloc(max, sizeof(*stale));
	size_t n_stale = 0;
	int r = stale ? bpf_map_get_next_key(s->maps.dests, NULL, &next) : -1;
	while (r == 0 && n_stale < max) {
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
	free(keys);
	metrics_bpf_map("steer_dests", n, max);
	return 0;
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

static void cover_netns(struct steering *s, const char *dir, const char *rel)
{
	int n = cgroup_pids(dir, s->pids, MAX_PIDS);
	for (int i = 0; i < n; i++) {
		uint64_t ino;
		if (netns_ino_of_pid(s->pids[i], &ino) < 0)
			continue;
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
		int r = proxy_listen_netns(s->px, fd, ino, &cookie);
		if (r < 0) {
			agent_log(AGENT_LOG_WARN, "listener in netns %llu (cgroup %s): %s",
				  (unsigned long long)ino, rel, strerror(-r));
			continue;
		}
		struct steer_listener l = {.ready = 1};
		bpf_map_update_elem(s->maps.listeners, &cookie, &l, BPF_ANY);
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
	for (size_t i = 0; i < s->set->n && i < STEER_MAX_POLICIES; i++)
		if (policy_covers_caller(s->set->v[i], rel))
			mask |= 1ULL << i;
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
	sc->v[sc->n++] = (struct caller){.id = id, .mask = mask, .path = p};
	cover_netns(s, dir, rel);
	return 0;
}

int steering_rescan(struct steering *s)
{
	struct scan sc = {.s = s};
	for (size_t i = 0; i < s->n_ns; i++)
		s->ns[i].seen = false;
	int r = cgroup_walk(s->root, s->attach, scan_one, &sc);
	if (r < 0) {
		agent_log(AGENT_LOG_ERROR, "cgroup scan of %s: %s", s->attach, strerror(-r));
		free_callers(sc.v, sc.n);
		return r;
	}
	if (sc.n)
		qsort(sc.v, sc.n, sizeof(*sc.v), cmp_caller);

	for (size_t i = 0; i < sc.n; i++) {
		struct steer_caller v = {.policy_mask = sc.v[i].mask};
		if (bpf_map_update_elem(s->maps.callers, &sc.v[i].id, &v, BPF_ANY) < 0)
			agent_log(AGENT_LOG_WARN, "steer_callers update: %s", strerror(errno));
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
	free_callers(s->callers, s->n_callers);
	s->callers = sc.v;
	s->n_callers = sc.n;
	metrics_bpf_map("steer_callers", sc.n, 16384);

	/* Netns whose covered processes are all gone: close their listeners. */
	for (size_t i = 0; i < s->n_ns;) {
		if (s->ns[i].seen) {
			i++;
			continue;
		}
		bpf_map_delete_elem(s->maps.listeners, &s->ns[i].cookie);
		proxy_unlisten_netns(s->px, s->ns[i].ino);
		agent_log(AGENT_LOG_INFO, "closed listener of netns %llu",
			  (unsigned long long)s->ns[i].ino);
		s->ns[i] = s->ns[--s->n_ns];
	}
	s->ready = s->set != NULL;
	return 0;
}

int steering_apply(struct steering *s, struct policy_set *set)
{
	struct policy_set *old = s->set;
	s->set = policy_set_ref(set);
	if (old)
		policy_set_unref(old);
	int r = write_dests(s);
	if (r < 0)
		return r;
	return steering_rescan(s);
}

void steering_heartbeat(struct steering *s, bool alive)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	struct steer_state st = {
		.heartbeat_ns = alive ? (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec : 0};
	uint32_t zero = 0;
	bpf_map_update_elem(s->maps.state, &zero, &st, BPF_ANY);
}

/* Entry idx of a per-CPU array summed over the CPUs (vals: ncpu scratch). 0 or -1. */
static int percpu_sum(const struct steering *s, int fd, uint32_t idx, uint64_t *vals,
		      uint64_t *sum)
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
		if ((stat != STEER_STAT_PASSED && stat != STEER_STAT_REFUSED) ||
		    percpu_sum(s, s->maps.stats, idx, vals, &sum) < 0)
			continue;
		uint64_t delta = sum - s->stats_seen[idx];
		s->stats_seen[idx] = sum;
		const char *name = s->set && pol < s->set->n ? s->set->v[pol]->name : "";
		for (uint64_t i = 0; i < delta && i < 100000; i++)
			metrics_flow(name,
				     stat == STEER_STAT_PASSED ? METRICS_FLOW_PASSED
							       : METRICS_FLOW_REFUSED,
				     MM_REASON_AGENT_DOWN);
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
	if (!s->set)
		return NULL;
	struct caller *c = find_caller(s, orig->cgroup_id);
	for (size_t i = 0; i < s->set->n && i < STEER_MAX_POLICIES; i++) {
		/* A caller whose cgroup vanished keeps the policy it was steered for. */
		bool mine = c ? (c->mask >> i) & 1 : i == orig->policy;
		struct policy *p = s->set->v[i];
		if (mine && (p->directions & directions) && policy_covers_dest(p, orig))
			return policy_ref(p);
	}
	return NULL;
}

const char *steering_caller_name(struct steering *s, uint64_t cgroup_id)
{
	struct caller *c = find_caller(s, cgroup_id);
	return c ? c->path : NULL;
}

bool steering_ready(const struct steering *s)
{
	return s->ready;
}

void steering_free(struct steering *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_ns; i++)
		bpf_map_delete_elem(s->maps.listeners, &s->ns[i].cookie);
	free(s->ns);
	free_callers(s->callers, s->n_callers);
	if (s->set)
		policy_set_unref(s->set);
	if (s->ino_fd >= 0)
		close(s->ino_fd);
	free(s->root);
	free(s->attach);
	free(s);
}
