/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The data path on N worker threads. Each worker runs its own epoll loop with its own proxy
 * (proxy.c) and owns its connections end to end, from accept to close. Connections are spread
 * without a shared accept lock: in every covered netns each worker has its own listening
 * socket, all bound with SO_REUSEPORT to the same port, and the kernel hashes each new
 * connection to one of them. The control thread (dataplane.c) opens the sockets (setns) and
 * hands them to the workers through a per-worker command queue; a worker never blocks on
 * anything but its epoll_wait.
 */
#ifndef MESHMASK_WORKERS_H
#define MESHMASK_WORKERS_H

#include <stddef.h>
#include <stdint.h>

#include "proxy.h"

/* Most worker threads one agent runs. */
#define WORKERS_MAX 16

struct workers_config {
	unsigned n; /* worker threads, 1..WORKERS_MAX */
	struct proxy_config proxy; /* for each worker's proxy; epfd is the worker's own */
	uint32_t busy_poll_us; /* after traffic, poll this long before sleeping (0 = off) */
};

struct workers;

/* The workers with their loops and proxies, not running yet. NULL with errno. */
struct workers *workers_new(const struct workers_config *cfg);
/* Start the threads. 0 or -errno (logged). */
int workers_start(struct workers *w);

/*
 * Control thread: open one listener pair per worker inside the netns ns_fd (taken over) and
 * hand each to its worker. *cookie gets the netns cookie. 0 or -errno.
 */
int workers_listen_netns(struct workers *w, int ns_fd, uint64_t ino, uint64_t *cookie);
/* Control thread: every worker closes its listeners of that netns (connections go on). */
void workers_unlisten_netns(struct workers *w, uint64_t ino);
/* Control thread: no worker accepts any more (shutdown begins). */
void workers_stop_accepting(struct workers *w);

/* Workers running, and per worker the connections open now and accepted so far. */
unsigned workers_count(const struct workers *w);
void workers_stats(const struct workers *w, unsigned i, size_t *active, uint64_t *accepted);

/* Stop and join the threads, close every connection and listener, free. NULL-safe. */
void workers_free(struct workers *w);

#endif
