// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "netns.h"
#include "workers.h"

enum cmd_kind { CMD_ADOPT, CMD_UNLISTEN, CMD_STOP_ACCEPTING };

/* What the control thread asks of a worker, in order. */
struct cmd {
	enum cmd_kind kind;
	struct proxy_listeners l; /* CMD_ADOPT: fds owned by the command; CMD_UNLISTEN: l.ino */
	struct cmd *next;
};

struct worker {
	struct workers *group;
	unsigned idx;
	pthread_t thread;
	bool started;
	int epfd, cmd_fd, tick_fd;
	struct ep_handler cmd_h, tick_h;
	struct proxy *px;
	pthread_mutex_t lock; /* guards the command queue */
	struct cmd *head, *tail;
	int stop; /* __atomic: leave the loop */
};

struct workers {
	struct workers_config cfg;
	unsigned n;
	struct worker wk[WORKERS_MAX];
};

static void drain(int fd)
{
	uint64_t v;
	ssize_t n = read(fd, &v, sizeof(v));
	(void)n;
}

static void wake(struct worker *k)
{
	uint64_t one = 1;
	ssize_t n = write(k->cmd_fd, &one, sizeof(one));
	(void)n;
}

static void cmd_free(struct cmd *c)
{
	if (c->kind == CMD_ADOPT) {
		if (c->l.fd4 >= 0)
			close(c->l.fd4);
		if (c->l.fd6 >= 0)
			close(c->l.fd6);
		if (c->l.ns_fd >= 0)
			close(c->l.ns_fd);
	}
	free(c);
}

/* Queue c for worker k (taken over). */
static void post(struct worker *k, struct cmd *c)
{
	c->next = NULL;
	pthread_mutex_lock(&k->lock);
	if (k->tail)
		k->tail->next = c;
	else
		k->head = c;
	k->tail = c;
	pthread_mutex_unlock(&k->lock);
	wake(k);
}

/* Worker thread: run what the control thread asked, in order. */
static void on_cmd(struct ep_handler *h, uint32_t ev)
{
	struct worker *k = (void *)((char *)h - offsetof(struct worker, cmd_h));
	drain(k->cmd_fd);
	pthread_mutex_lock(&k->lock);
	struct cmd *c = k->head;
	k->head = k->tail = NULL;
	pthread_mutex_unlock(&k->lock);
	while (c) {
		struct cmd *next = c->next;
		int r;
		switch (c->kind) {
		case CMD_ADOPT:
			if ((r = proxy_adopt_netns(k->px, &c->l)) < 0)
				agent_log(AGENT_LOG_WARN, "worker %u: listeners of netns %llu: %s",
					  k->idx, (unsigned long long)c->l.ino, strerror(-r));
			c->l.fd4 = c->l.fd6 = c->l.ns_fd = -1; /* the proxy has them now */
			break;
		case CMD_UNLISTEN:
			proxy_unlisten_netns(k->px, c->l.ino);
			break;
		case CMD_STOP_ACCEPTING:
			proxy_stop_accepting(k->px);
			break;
		}
		cmd_free(c);
		c = next;
	}
}

static void on_tick(struct ep_handler *h, uint32_t ev)
{
	struct worker *k = (void *)((char *)h - offsetof(struct worker, tick_h));
	drain(k->tick_fd);
	proxy_sweep(k->px);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *worker_main(void *arg)
{
	struct worker *k = arg;
	char name[16];
	snprintf(name, sizeof(name), "mm-worker-%u", k->idx);
	pthread_setname_np(pthread_self(), name);
	struct epoll_event evs[64];
	/*
	 * --busy-poll-us: after events, poll without sleeping for a while. A request's next step
	 * (the server's answer, the client's next request) then finds the thread running instead
	 * of paying a wake-up of an idle CPU (tens of microseconds on a VM).
	 */
	const uint64_t busy_ns = (uint64_t)k->group->cfg.busy_poll_us * 1000;
	uint64_t spin_until = 0;
	while (!__atomic_load_n(&k->stop, __ATOMIC_ACQUIRE)) {
		int n = epoll_wait(k->epfd, evs, 64, spin_until ? 0 : 1000);
		if (busy_ns && n >= 0) {
			uint64_t now = mono_ns();
			if (n > 0)
				spin_until = now + busy_ns;
			else if (spin_until && now >= spin_until)
				spin_until = 0;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			agent_log(AGENT_LOG_ERROR, "worker %u: epoll_wait: %s", k->idx,
				  strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			struct ep_handler *h = evs[i].data.ptr;
			h->fn(h, evs[i].events);
		}
		proxy_reap(k->px);
	}
	return NULL;
}

static int watch(struct worker *k, int fd, struct ep_handler *h,
		 void (*fn)(struct ep_handler *, uint32_t))
{
	h->fn = fn;
	struct epoll_event e = {.events = EPOLLIN, .data.ptr = h};
	return epoll_ctl(k->epfd, EPOLL_CTL_ADD, fd, &e) < 0 ? -errno : 0;
}

static int worker_init(struct workers *w, unsigned i)
{
	struct worker *k = &w->wk[i];
	k->group = w;
	k->idx = i;
	pthread_mutex_init(&k->lock, NULL);
	k->epfd = epoll_create1(EPOLL_CLOEXEC);
	k->cmd_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	k->tick_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (k->epfd < 0 || k->cmd_fd < 0 || k->tick_fd < 0)
		return -errno;
	int r;
	if ((r = watch(k, k->cmd_fd, &k->cmd_h, on_cmd)) < 0 ||
	    (r = watch(k, k->tick_fd, &k->tick_h, on_tick)) < 0)
		return r;
	struct itimerspec its = {.it_interval = {1, 0}, .it_value = {1, 0}};
	timerfd_settime(k->tick_fd, 0, &its, NULL);
	struct proxy_config pc = w->cfg.proxy;
	pc.epfd = k->epfd;
	k->px = proxy_new(&pc);
	return k->px ? 0 : -errno;
}

struct workers *workers_new(const struct workers_config *cfg)
{
	if (cfg->n < 1 || cfg->n > WORKERS_MAX) {
		errno = EINVAL;
		return NULL;
	}
	struct workers *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->cfg = *cfg;
	for (unsigned i = 0; i < WORKERS_MAX; i++)
		w->wk[i].epfd = w->wk[i].cmd_fd = w->wk[i].tick_fd = -1;
	for (unsigned i = 0; i < cfg->n; i++) {
		w->n = i + 1;
		int r = worker_init(w, i);
		if (r < 0) {
			workers_free(w);
			errno = -r;
			return NULL;
		}
	}
	return w;
}

int workers_start(struct workers *w)
{
	/* Signals are the main thread's: the workers block them all. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int r = 0;
	for (unsigned i = 0; i < w->n && !r; i++) {
		r = -pthread_create(&w->wk[i].thread, NULL, worker_main, &w->wk[i]);
		w->wk[i].started = r == 0;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0)
		agent_log(AGENT_LOG_ERROR, "worker threads: %s", strerror(-r));
	else
		agent_log(AGENT_LOG_INFO, "data path on %u worker thread%s", w->n,
			  w->n == 1 ? "" : "s");
	return r;
}

int workers_listen_netns(struct workers *w, int ns_fd, uint64_t ino, uint64_t *cookie)
{
	struct cmd *c[WORKERS_MAX] = {0};
	int r = 0;
	for (unsigned i = 0; i < w->n && !r; i++) {
		if (!(c[i] = calloc(1, sizeof(*c[i])))) {
			r = -ENOMEM;
			break;
		}
		c[i]->kind = CMD_ADOPT;
		c[i]->l = (struct proxy_listeners){.ino = ino, .ns_fd = -1, .fd4 = -1, .fd6 = -1};
		c[i]->l.ns_fd = fcntl(ns_fd, F_DUPFD_CLOEXEC, 0);
		c[i]->l.fd4 = netns_listen(ns_fd, AF_INET, w->cfg.proxy.port);
		if (c[i]->l.ns_fd < 0)
			r = -errno;
		else if (c[i]->l.fd4 < 0)
			r = c[i]->l.fd4;
		else if (i == 0)
			r = netns_cookie(c[i]->l.fd4, cookie);
		/* [::1] only exists where IPv6 is up; IPv4 (and v4-mapped) steering works
		 * without. */
		if (!r)
			c[i]->l.fd6 = netns_listen(ns_fd, AF_INET6, w->cfg.proxy.port);
		if (c[i]->l.fd6 < 0)
			c[i]->l.fd6 = -1;
	}
	close(ns_fd);
	for (unsigned i = 0; i < w->n; i++) {
		if (!c[i])
			continue;
		c[i]->l.cookie = *cookie;
		if (r < 0)
			cmd_free(c[i]);
		else
			post(&w->wk[i], c[i]);
	}
	return r;
}

/* Post a command without listeners to every worker; a worker it could not reach is logged. */
static void post_all(struct workers *w, enum cmd_kind kind, uint64_t ino)
{
	for (unsigned i = 0; i < w->n; i++) {
		struct cmd *c = calloc(1, sizeof(*c));
		if (!c) {
			agent_log(AGENT_LOG_ERROR, "worker %u: no memory for a command", i);
			continue;
		}
		c->kind = kind;
		c->l = (struct proxy_listeners){.ino = ino, .ns_fd = -1, .fd4 = -1, .fd6 = -1};
		post(&w->wk[i], c);
	}
}

void workers_unlisten_netns(struct workers *w, uint64_t ino)
{
	post_all(w, CMD_UNLISTEN, ino);
}

void workers_stop_accepting(struct workers *w)
{
	post_all(w, CMD_STOP_ACCEPTING, 0);
}

unsigned workers_count(const struct workers *w)
{
	return w ? w->n : 0;
}

void workers_stats(const struct workers *w, unsigned i, size_t *active, uint64_t *accepted)
{
	*active = proxy_active(w->wk[i].px);
	*accepted = proxy_accepted(w->wk[i].px);
}

void workers_free(struct workers *w)
{
	if (!w)
		return;
	for (unsigned i = 0; i < w->n; i++) {
		struct worker *k = &w->wk[i];
		if (!k->started)
			continue;
		__atomic_store_n(&k->stop, 1, __ATOMIC_RELEASE);
		wake(k);
		pthread_join(k->thread, NULL);
	}
	for (unsigned i = 0; i < w->n; i++) {
		struct worker *k = &w->wk[i];
		/* Commands nobody ran: on_cmd runs them (listeners are adopted, then freed). */
		if (k->px && k->cmd_fd >= 0)
			on_cmd(&k->cmd_h, EPOLLIN);
		proxy_free(k->px);
		int fds[] = {k->epfd, k->cmd_fd, k->tick_fd};
		for (size_t j = 0; j < 3; j++)
			if (fds[j] >= 0)
				close(fds[j]);
		pthread_mutex_destroy(&k->lock);
	}
	free(w);
}
