// SPDX-License-Identifier: Apache-2.0
/*
 * The data plane: wires the BPF loader, the steering state and the workers. Its own epoll loop
 * on the main thread is the control thread: policy changes (from the store's threads, through
 * a mutex-guarded slot and an eventfd), cgroup events and rescans, listener creation (setns),
 * the heartbeat and statistics. Connections are the workers' (workers.c), which resolve
 * policies through steering's published view and never wait for this thread.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "caps.h"
#include "cgroup.h"
#include "dataplane.h"
#include "identity.h"
#include "loader.h"
#include "log.h"
#include "netns.h"
#include "metrics.h"
#include "steering.h"
#include "workers.h"

/* The store refuses what the steering maps could not number. */
_Static_assert(STORE_MAX_POLICIES == STEER_MAX_POLICIES, "policy limit");

struct dataplane {
	int epfd, stop_fd, change_fd, timer_fd, burst_fd, ident_fd;
	struct ep_handler stop_h, change_h, timer_h, inotify_h, burst_h, ident_h;
	int burst_left; /* quick rescans still due after a cgroup event */
	struct loader *loader;
	struct steering *steer;
	struct workers *workers;
	struct caps *caps;
	struct http_budget budget; /* the workers' held bodies and send queues, together */
	pthread_mutex_t lock;
	struct policy_set *pending; /* newest set not yet applied, guarded by lock */
	volatile int stopping;
	bool stopped_cleanly;
	struct dataplane_config cfg; /* strings borrowed from the caller */
	struct store *store;
	int ready; /* read by the admin threads: __atomic */
	char cgroup_root[PATH_MAX];
};

static struct policy *resolve_policy(void *ctx, const struct steer_orig *orig, uint32_t dirs)
{
	struct dataplane *dp = ctx;
	return steering_policy_for(dp->steer, orig, dirs);
}

static const char *resolve_caller(void *ctx, uint64_t cgroup_id, char *buf, size_t size)
{
	struct dataplane *dp = ctx;
	return steering_caller_name(dp->steer, cgroup_id, buf, size);
}

/* Store subscription: any thread. */
static void on_policies(void *ctx, struct policy_set *set)
{
	struct dataplane *dp = ctx;
	pthread_mutex_lock(&dp->lock);
	struct policy_set *old = dp->pending;
	dp->pending = policy_set_ref(set);
	pthread_mutex_unlock(&dp->lock);
	uint64_t one = 1;
	ssize_t n = write(dp->change_fd, &one, sizeof(one));
	(void)n;
	if (old)
		policy_set_unref(old);
}

static void drain(int fd)
{
	uint64_t v;
	ssize_t n = read(fd, &v, sizeof(v));
	(void)n;
}

static void on_change(struct ep_handler *h, uint32_t ev)
{
	struct dataplane *dp = (void *)((char *)h - offsetof(struct dataplane, change_h));
	drain(dp->change_fd);
	pthread_mutex_lock(&dp->lock);
	struct policy_set *set = dp->pending;
	dp->pending = NULL;
	pthread_mutex_unlock(&dp->lock);
	if (!set)
		return;
	if (steering_apply(dp->steer, set) == 0)
		agent_log(AGENT_LOG_INFO, "steering: %zu policies (generation %llu)", set->n,
			  (unsigned long long)set->generation);
	__atomic_store_n(&dp->ready, steering_ready(dp->steer), __ATOMIC_RELEASE);
	policy_set_unref(set);
}

static void on_timer(struct ep_handler *h, uint32_t ev)
{
	struct dataplane *dp = (void *)((char *)h - offsetof(struct dataplane, timer_h));
	drain(dp->timer_fd);
	if (loader_superseded(dp->loader))
		steering_yield(dp->steer);
	steering_heartbeat(dp->steer, true);
	/* Safety net for what inotify cannot see (a process changing netns, missed events). */
	steering_rescan(dp->steer);
	__atomic_store_n(&dp->ready, steering_ready(dp->steer), __ATOMIC_RELEASE);
	steering_collect_stats(dp->steer);
	for (unsigned i = 0; i < workers_count(dp->workers); i++) {
		size_t active;
		uint64_t accepted;
		workers_stats(dp->workers, i, &active, &accepted);
		metrics_worker(i, accepted, active);
	}
}

/*
 * A process can enter a pod's cgroup before it enters the pod's netns (or the reverse), and
 * only the cgroup side raises an inotify event: rescan every 100 ms for a second after one.
 */
static void arm_burst(struct dataplane *dp)
{
	dp->burst_left = 10;
	struct itimerspec its = {.it_interval = {0, 100000000}, .it_value = {0, 100000000}};
	timerfd_settime(dp->burst_fd, 0, &its, NULL);
}

static void on_burst(struct ep_handler *h, uint32_t ev)
{
	struct dataplane *dp = (void *)((char *)h - offsetof(struct dataplane, burst_h));
	drain(dp->burst_fd);
	steering_rescan(dp->steer);
	__atomic_store_n(&dp->ready, steering_ready(dp->steer), __ATOMIC_RELEASE);
	if (--dp->burst_left <= 0) {
		struct itimerspec off = {0};
		timerfd_settime(dp->burst_fd, 0, &off, NULL);
	}
}

static void on_inotify(struct ep_handler *h, uint32_t ev)
{
	struct dataplane *dp = (void *)((char *)h - offsetof(struct dataplane, inotify_h));
	if (steering_on_inotify(dp->steer))
		arm_burst(dp);
	__atomic_store_n(&dp->ready, steering_ready(dp->steer), __ATOMIC_RELEASE);
}

/* Identity watcher thread: the pod table changed (a pod learnt, relabelled, gone). */
static void on_identity(void *ctx)
{
	struct dataplane *dp = ctx;
	uint64_t one = 1;
	ssize_t n = write(dp->ident_fd, &one, sizeof(one));
	(void)n;
}

/* Sources naming a namespace, serviceAccount or labels may now match other cgroups. */
static void on_identity_event(struct ep_handler *h, uint32_t ev)
{
	struct dataplane *dp = (void *)((char *)h - offsetof(struct dataplane, ident_h));
	drain(dp->ident_fd);
	agent_log(AGENT_LOG_DEBUG, "steering: rescan after a pod identity change");
	steering_rescan(dp->steer);
	__atomic_store_n(&dp->ready, steering_ready(dp->steer), __ATOMIC_RELEASE);
}

static void on_stop(struct ep_handler *h, uint32_t ev)
{
	struct dataplane *dp = (void *)((char *)h - offsetof(struct dataplane, stop_h));
	dp->stopping = 1;
}

static int watch(struct dataplane *dp, int fd, struct ep_handler *h,
		 void (*fn)(struct ep_handler *, uint32_t))
{
	h->fn = fn;
	struct epoll_event e = {.events = EPOLLIN, .data.ptr = h};
	return epoll_ctl(dp->epfd, EPOLL_CTL_ADD, fd, &e) < 0 ? -errno : 0;
}

int dataplane_start(struct dataplane **out, const struct dataplane_config *cfg,
		    struct store *st)
{
	struct dataplane *dp = calloc(1, sizeof(*dp));
	int r;
	if (!dp)
		return -ENOMEM;
	dp->epfd = dp->stop_fd = dp->change_fd = dp->timer_fd = dp->burst_fd = dp->ident_fd = -1;
	dp->cfg = *cfg;
	dp->budget.max = cfg->memory_budget;
	pthread_mutex_init(&dp->lock, NULL);

	if (cfg->cgroup_root) {
		snprintf(dp->cgroup_root, sizeof(dp->cgroup_root), "%s", cfg->cgroup_root);
	} else if ((r = cgroup_find_root(dp->cgroup_root, sizeof(dp->cgroup_root))) < 0) {
		agent_log(AGENT_LOG_ERROR, "no cgroup v2 mount in /proc/self/mountinfo: %s",
			  strerror(-r));
		goto err;
	}
	const char *attach = cfg->attach_cgroup ? cfg->attach_cgroup : dp->cgroup_root;
	if ((r = netns_init()) < 0) {
		agent_log(AGENT_LOG_ERROR, "own netns: %s", strerror(-r));
		goto err;
	}
	dp->epfd = epoll_create1(EPOLL_CLOEXEC);
	dp->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	dp->change_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	dp->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	dp->burst_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	dp->ident_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (dp->epfd < 0 || dp->stop_fd < 0 || dp->change_fd < 0 || dp->timer_fd < 0 ||
	    dp->burst_fd < 0 || dp->ident_fd < 0) {
		r = -errno;
		agent_log(AGENT_LOG_ERROR, "event loop: %s", strerror(-r));
		goto err;
	}

	char self_cg[PATH_MAX];
	if ((r = cgroup_self(dp->cgroup_root, self_cg, sizeof(self_cg))) < 0)
		agent_log(AGENT_LOG_WARN, "own cgroup: %s", strerror(-r));
	struct loader_config lc = {.bpffs = cfg->bpffs,
				   .instance = cfg->instance ? cfg->instance : "default",
				   .attach_cgroup = attach,
				   .proxy_port = cfg->proxy_port,
				   .self_cgroup = r < 0 ? NULL : self_cg,
				   .splice = cfg->splice};
	lc.callers_max = cfg->callers_max;
	dp->loader = loader_open(&lc);
	if (!dp->loader) {
		r = -errno;
		goto err; /* logged by the loader */
	}
	const struct loader_maps *maps = loader_maps(dp->loader);
	if (!(dp->caps = caps_new(cfg->max_connections, cfg->max_connections_per_pod))) {
		r = -ENOMEM;
		goto err;
	}
	struct proxy_config pc = {
		.by_port_fd = maps->by_port,
		.port = cfg->proxy_port,
		.idle_secs = cfg->idle_timeout,
		.head_secs = cfg->head_timeout,
		.splice = loader_splice(dp->loader),
		.zero_copy = !cfg->no_zero_copy,
		.grpc_max_message = (size_t)cfg->grpc_max_message_kb * 1024,
		.http = {.max_head = cfg->max_head_bytes,
			 .max_headers = cfg->max_headers,
			 .budget = &dp->budget},
		.caps = dp->caps,
		.queue_budget = &dp->budget, /* one budget: held bodies and send queues */
		.resolver = {.policy_for = resolve_policy,
			     .caller_name = resolve_caller,
			     .ctx = dp},
	};
	struct workers_config wc = {.n = cfg->workers ? cfg->workers : 1,
				    .proxy = pc,
				    .busy_poll_us = cfg->busy_poll_us};
	dp->workers = workers_new(&wc);
	struct steering_config sc = {.cgroup_root = dp->cgroup_root,
				     .attach_cgroup = attach,
				     .maps = maps,
				     .workers = dp->workers,
				     .self_cgroup = lc.self_cgroup,
				     .proxy_port = cfg->proxy_port};
	dp->steer = dp->workers ? steering_new(&sc) : NULL;
	if (!dp->steer) {
		r = -errno;
		agent_log(AGENT_LOG_ERROR, "steering: %s", strerror(-r));
		goto err;
	}
	if ((r = watch(dp, dp->stop_fd, &dp->stop_h, on_stop)) < 0 ||
	    (r = watch(dp, dp->change_fd, &dp->change_h, on_change)) < 0 ||
	    (r = watch(dp, dp->timer_fd, &dp->timer_h, on_timer)) < 0 ||
	    (r = watch(dp, dp->burst_fd, &dp->burst_h, on_burst)) < 0 ||
	    (r = watch(dp, dp->ident_fd, &dp->ident_h, on_identity_event)) < 0 ||
	    (r = watch(dp, steering_inotify_fd(dp->steer), &dp->inotify_h, on_inotify)) < 0) {
		agent_log(AGENT_LOG_ERROR, "event loop: %s", strerror(-r));
		goto err;
	}
	struct itimerspec its = {.it_interval = {1, 0}, .it_value = {1, 0}};
	timerfd_settime(dp->timer_fd, 0, &its, NULL);

	/* The subscription delivers the current set at once: apply it before serving. */
	if ((r = store_subscribe(st, on_policies, dp)) < 0) {
		agent_log(AGENT_LOG_ERROR, "policy subscription: %s", strerror(-r));
		goto err;
	}
	dp->store = st;
	if ((r = workers_start(dp->workers)) < 0)
		goto err;
	steering_heartbeat(dp->steer, true);
	identity_set_change_cb(on_identity, dp);
	on_change(&dp->change_h, 0);
	/* The maps are filled (policies, callers, listeners): only now do the links steer. */
	if ((r = loader_attach(dp->loader)) < 0)
		goto err;
	__atomic_store_n(&dp->ready, steering_ready(dp->steer), __ATOMIC_RELEASE);
	*out = dp;
	return 0;
err:
	dataplane_free(dp);
	return r < 0 ? r : -EINVAL;
}

int dataplane_run(struct dataplane *dp)
{
	struct epoll_event evs[16];
	while (!dp->stopping) {
		int n = epoll_wait(dp->epfd, evs, 16, 1000);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			agent_log(AGENT_LOG_ERROR, "epoll_wait: %s", strerror(errno));
			return -errno;
		}
		for (int i = 0; i < n; i++) {
			struct ep_handler *h = evs[i].data.ptr;
			h->fn(h, evs[i].events);
		}
	}
	/*
	 * Shutdown: no new connections, open-mode traffic bypasses us at once. Only our own
	 * heartbeat and listener entries go: a newer agent may already serve beside us.
	 */
	__atomic_store_n(&dp->ready, 0, __ATOMIC_RELEASE);
	steering_release(dp->steer);
	workers_stop_accepting(dp->workers);
	dp->stopped_cleanly = true;
	return 0;
}

void dataplane_request_stop(struct dataplane *dp)
{
	uint64_t one = 1;
	ssize_t n = write(dp->stop_fd, &one, sizeof(one));
	(void)n;
}

bool dataplane_ready(const struct dataplane *dp)
{
	return __atomic_load_n(&dp->ready, __ATOMIC_ACQUIRE);
}

void dataplane_free(struct dataplane *dp)
{
	if (!dp)
		return;
	/* Returns once no policy callback runs: none can reach dp after this. */
	store_unsubscribe(dp->store, on_policies, dp);
	/* Returns once no callback runs: none can write to ident_fd after this. */
	identity_set_change_cb(NULL, NULL);
	if (dp->steer)
		steering_release(dp->steer);
	workers_free(dp->workers); /* joins the threads: nothing resolves through steering after */
	steering_free(dp->steer);
	caps_free(dp->caps);
	loader_close(dp->loader);
	if (dp->loader && dp->stopped_cleanly && dp->cfg.detach_on_exit) {
		const char *inst = dp->cfg.instance ? dp->cfg.instance : "default";
		int r = loader_unpin_all(dp->cfg.bpffs, inst);
		if (r < 0)
			agent_log(AGENT_LOG_WARN, "removing BPF pins of %s: %s", inst,
				  strerror(-r));
		else
			agent_log(AGENT_LOG_INFO, "BPF steering detached and unpinned (%s)", inst);
	}
	if (dp->pending)
		policy_set_unref(dp->pending);
	int fds[] = {dp->epfd,	   dp->stop_fd,	 dp->change_fd,
		     dp->timer_fd, dp->burst_fd, dp->ident_fd};
	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
		if (fds[i] >= 0)
			close(fds[i]);
	pthread_mutex_destroy(&dp->lock);
	netns_fini();
	free(dp);
}
