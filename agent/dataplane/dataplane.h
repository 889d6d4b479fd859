/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The data plane of the agent: loads and attaches the BPF objects (loader), keeps the steering
 * maps in line with the policy store and the node's cgroups/netns (steering), and proxies the
 * steered connections through HTTP framing and the masking engine (proxy).
 */
#ifndef MESHMASK_DATAPLANE_H
#define MESHMASK_DATAPLANE_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

struct dataplane;

/* Strings are borrowed and must outlive the data plane. */
struct dataplane_config {
	const char *cgroup_root;   /* cgroup v2 mount; NULL = from /proc/self/mountinfo */
	const char *attach_cgroup; /* where BPF attaches; NULL = the cgroup root */
	const char *bpffs;         /* bpffs mount */
	const char *instance;      /* pins under <bpffs>/meshmask/<instance>; NULL = "default" */
	uint16_t proxy_port;       /* agent listener port in covered netns */
	bool splice;               /* sk_msg splice of the agent->app loopback hop */
	bool no_zero_copy;         /* copy pass-through bytes instead of splice(2) */
	bool detach_on_exit;       /* unpin and detach BPF at clean shutdown */
	uint32_t idle_timeout;     /* seconds; 0 = the proxy's default */
	uint32_t head_timeout;     /* seconds for a request head; 0 = the proxy's default */
	uint32_t busy_poll_us;     /* poll this long after traffic, 0 = off */
	uint32_t grpc_max_message_kb; /* 0 = the framer's default */
	uint32_t callers_max;      /* steer_callers map size; 0 = the BPF object's (tests) */
	unsigned workers;          /* data-path threads, 1..WORKERS_MAX; 0 = 1 */
	size_t max_head_bytes;     /* HTTP/1.1 head size limit; 0 = 64 KiB */
	size_t max_headers;        /* HTTP/1.1 header field lines; 0 = 100 */
	size_t max_connections;    /* proxied connections on the node; 0 = no cap */
	size_t max_connections_per_pod; /* from one caller cgroup; 0 = no cap */
	size_t memory_budget;      /* bytes all held masked bodies may take together; 0 = none */
};

/* Load, attach, subscribe to the store. 0 or -errno (logged here). */
int dataplane_start(struct dataplane **out, const struct dataplane_config *cfg,
		    struct store *st);
/* Run the event loop until dataplane_request_stop(). 0 or -errno. */
int dataplane_run(struct dataplane *dp);
/* Async-signal-safe. */
void dataplane_request_stop(struct dataplane *dp);
/* BPF attached and steering maps filled (for /readyz). */
bool dataplane_ready(const struct dataplane *dp);
/* Detach what was attached (pinned links that must survive restarts stay), free. */
void dataplane_free(struct dataplane *dp);

#endif
