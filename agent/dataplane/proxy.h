/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The proxy of one worker (workers.c runs one per thread, each on its own epoll loop):
 * listeners inside covered pods' netns, and per accepted connection an upstream socket created
 * in the same netns, joined through an http_session (framing + masking). Non-blocking sockets,
 * bounded buffers with backpressure both ways, idle timeout, half-close propagation. Nothing a
 * peer sends can crash it: errors close that connection. Every function but proxy_active and
 * proxy_accepted runs on the worker's thread.
 */
#ifndef MESHMASK_PROXY_H
#define MESHMASK_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "meshmask/steer.h"
#include "policy.h"

/* Every fd in the loop carries one of these as its epoll data.ptr. */
struct ep_handler {
	void (*fn)(struct ep_handler *h, uint32_t events);
};

/* Who the caller is, for policies and audit. */
struct proxy_resolver {
	/*
	 * The first policy of the current set that covers the caller and destination of `orig`
	 * and one of the `directions` bits: a new reference, or NULL.
	 */
	struct policy *(*policy_for)(void *ctx, const struct steer_orig *orig, uint32_t directions);
	/* The caller's cgroup path copied into buf (then buf), or NULL. */
	const char *(*caller_name)(void *ctx, uint64_t cgroup_id, char *buf, size_t size);
	void *ctx;
};

struct proxy_config {
	int epfd;
	int by_port_fd; /* steer_by_port map */
	uint16_t port; /* host order */
	size_t max_buffer; /* per direction, bytes queued before reading pauses (256 KiB) */
	unsigned idle_secs; /* idle connections are closed after this (300) */
	unsigned head_secs; /* a request head (the first from accept) must be complete within (10) */
	struct proxy_resolver resolver;
	/*
	 * --splice is on (loader_splice): what the app has not read yet stays in the kernel,
	 * charged to nobody's buffer, so the app side is sent at most max_buffer minus that.
	 */
	bool splice;
	/*
	 * Bytes no rule covers (uncovered bodies with a known length, tunnels) go from socket to
	 * socket by splice(2), never copied through the agent (on by default; --no-zero-copy).
	 */
	bool zero_copy;
	size_t grpc_max_message; /* a larger gRPC message follows onError; 0 = 4 MiB */
	struct http_limits http; /* HTTP/1.1 heads: size and field count (0 = the defaults) */
	struct caps *caps; /* connection caps shared by the workers (borrowed), or NULL */
	/*
	 * The capacity of every send queue, shared by the workers (borrowed), or NULL: past its
	 * max, connections read only while their peer's queue holds less than 16 KiB, 16 KiB a
	 * wake-up (backpressure, never an error), so memory no longer grows by max_buffer a
	 * connection.
	 */
	struct http_budget *queue_budget;
};

struct proxy;

struct proxy *proxy_new(const struct proxy_config *cfg);

/* One covered netns's listening sockets for one worker (opened by the control thread). */
struct proxy_listeners {
	uint64_t ino, cookie; /* the netns */
	int ns_fd; /* the netns, for upstream sockets */
	int fd4, fd6; /* listening on 127.0.0.1 and [::1] (-1: no IPv6 there) */
};

/* Serve the listeners of a netns: takes ownership of every fd in l, also on failure. 0 or
 * -errno. */
int proxy_adopt_netns(struct proxy *px, const struct proxy_listeners *l);
/* Close the listeners of a netns (connections in flight continue). */
void proxy_unlisten_netns(struct proxy *px, uint64_t ino);

/* Free connections closed during the last batch of events; call after each epoll_wait. */
void proxy_reap(struct proxy *px);

/* Stop accepting anywhere (shutdown begins). */
void proxy_stop_accepting(struct proxy *px);

/* Close connections idle longer than idle_secs; call about once a second. */
void proxy_sweep(struct proxy *px);

/* Connections open now and accepted so far. */
size_t proxy_active(const struct proxy *px);
uint64_t proxy_accepted(const struct proxy *px);

/* Close every connection and listener, free. */
void proxy_free(struct proxy *px);

#endif
