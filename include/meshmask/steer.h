/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ABI between bpf/steer.bpf.c and the agent (agent/dataplane/loader.c, agent/dataplane/steering.c, agent/dataplane/proxy.c):
 * map keys and values of the connection steering programs. Only <linux/types.h> types,
 * explicit padding, sizes checked on both sides. Every key is zeroed before it is filled.
 */
#ifndef MESHMASK_STEER_H
#define MESHMASK_STEER_H

/* BPF programs get the same types from vmlinux.h. */
#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/*
 * Policies are numbered by slot: a policy keeps its slot for as long as it is in force (across
 * policy sets), a new one takes a free slot. A caller's mask has 64 bits, so a node holds at
 * most 64 policies (more are refused when pushed or loaded).
 */
#define STEER_MAX_POLICIES 64

/* steer_callers: cgroup id (inode of the cgroup v2 directory) -> policies covering it. */
struct steer_caller {
	__u64 policy_mask; /* bit i = policy slot i */
};
_Static_assert(sizeof(struct steer_caller) == 8, "steer_caller layout");

/*
 * steer_dests: LPM trie. The prefix always covers policy, port, family and pad (64 bits); the
 * address bits that must match follow. port 0 = any port; "any address" is one entry per
 * family with prefixlen 64.
 */
struct steer_dest_key {
	__u32 prefixlen; /* 64 + address bits */
	__u32 policy; /* policy slot; always wholly inside the prefix */
	__be16 port; /* destination port, network order; 0 = any */
	__u8 family; /* AF_INET / AF_INET6 */
	__u8 pad;
	__u8 addr[16]; /* network order; IPv4 in the first 4 bytes */
};
_Static_assert(sizeof(struct steer_dest_key) == 28, "steer_dest_key layout");

#define STEER_DEST_FAIL_OPEN 0x1u /* failureMode open: skip steering while the agent is down */

struct steer_dest_val {
	__u32 flags; /* STEER_DEST_* */
};
_Static_assert(sizeof(struct steer_dest_val) == 4, "steer_dest_val layout");

/* The original destination of a steered connection (value of steer_by_cookie/steer_by_port). */
struct steer_orig {
	__u64 cgroup_id; /* caller's cgroup at connect() */
	__u32 policy; /* policy slot that matched (at connect time, for counters) */
	__u8 family; /* AF_INET / AF_INET6 of the original destination */
	__u8 pad;
	__be16 port; /* network order */
	__u8 addr[16]; /* network order; IPv4 in the first 4 bytes */
};
_Static_assert(sizeof(struct steer_orig) == 32, "steer_orig layout");

/*
 * steer_by_port: how the agent finds the original destination of a socket it accepted: the
 * netns cookie of the accepted socket (SO_NETNS_COOKIE) and the app's local port (the agent's
 * peer port). Loopback 4-tuples repeat across pods, hence the netns cookie.
 */
struct steer_conn_key {
	__u64 netns_cookie;
	__u16 port; /* the app's local port, host order */
	__u8 family; /* family of the loopback hop: AF_INET (also for v4-mapped) or AF_INET6 */
	__u8 pad[5];
};
_Static_assert(sizeof(struct steer_conn_key) == 16, "steer_conn_key layout");

/*
 * cgroup/getsockopt answers on the agent's accepted sockets, found like steer_by_port (netns
 * cookie, peer port): SOL_IP/SO_ORIGINAL_DST gives a struct sockaddr_in and
 * SOL_IPV6/IP6T_SO_ORIGINAL_DST a struct sockaddr_in6, as iptables REDIRECT does (ENOENT when the
 * connection was not steered); SOL_IP/STEER_SO_CALLER is meshmask's own and gives the whole
 * struct steer_orig (the caller's cgroup and policy as well).
 */
#define STEER_SOL_IP 0
#define STEER_SOL_IPV6 41
#define STEER_SO_ORIGINAL_DST 80
#define STEER_SO_CALLER 0x4d4d

/*
 * steer_listeners: netns cookie -> the agent instance whose listener in that netns is open.
 * Agents overlap during a restart: each deletes only the entries it owns (agent/dataplane/steering.c).
 */
struct steer_listener {
	__u64 owner; /* instance id of the agent (random, never 0) */
};
_Static_assert(sizeof(struct steer_listener) == 8, "steer_listener layout");

/*
 * steer_state[0]: refreshed every second by the agent that owns it (the newest live one);
 * stale after STEER_HEARTBEAT_NS.
 */
struct steer_state {
	__u64 heartbeat_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) of the last heartbeat */
	__u64 owner; /* instance id of the agent that wrote it */
	__u32 overflow; /* 1 while steer_overflow has entries (callers that did not fit) */
	__u32 pad;
};
_Static_assert(sizeof(struct steer_state) == 24, "steer_state layout");

#define STEER_HEARTBEAT_NS 3000000000ULL

/*
 * steer_overflow: ancestor cgroup id -> policies of covered callers below it that did not fit
 * in steer_callers. A caller missing from steer_callers is looked up here by its ancestors
 * (deepest first, at most STEER_OVERFLOW_LEVELS levels): a match cannot be steered, so its
 * flows follow the policy's failureMode (closed: connect() fails with EPERM; open: passed,
 * counted).
 */
#define STEER_OVERFLOW_LEVELS 16

/*
 * steer_slots[slot]: the name of the policy holding that slot (userspace only). Pinned, so a
 * restarted (or overlapping) agent numbers policies as the maps it inherits do.
 */
struct steer_slot {
	__u8 name[256]; /* NUL-terminated policy name; empty = free */
};
_Static_assert(sizeof(struct steer_slot) == 256, "steer_slot layout");

/* steer_stats: per-CPU __u64 counters at index slot * STEER_STAT__COUNT + stat. */
#define STEER_STAT_STEERED 0 /* redirected to a live agent */
#define STEER_STAT_PASSED 1 /* agent down, failureMode open: passed unmasked */
#define STEER_STAT_REFUSED 2 /* agent down, failureMode closed: sent to a dead listener */
#define STEER_STAT_UNSTEERED_PASSED 3 /* caller not in steer_callers (full), open: passed */
#define STEER_STAT_UNSTEERED_REFUSED 4 /* caller not in steer_callers (full), closed: EPERM */
#define STEER_STAT__COUNT 8
#define STEER_STATS_SIZE (STEER_MAX_POLICIES * STEER_STAT__COUNT)

/*
 * Splice of the agent->app loopback hop (agent --splice). sockops puts a steered app socket
 * in splice_apps at ACTIVE_ESTABLISHED (before any byte can reach it) and the agent's accepted
 * socket in splice_agents at PASSIVE_ESTABLISHED (before accept()); the sk_msg program on
 * splice_agents moves every byte the agent sends into the app socket's receive queue, for the
 * whole life of the connection, so redirected and TCP bytes never interleave (only the FIN
 * takes the TCP path, after them). The kernel charges unread redirected bytes to the app
 * socket's rmem_alloc but never limits them: the agent keeps them under a budget itself
 * (agent/dataplane/splice.c, through sock_diag). The app->agent direction stays on TCP.
 * Both sockhashes and splice_peers use this key: one loopback connection, seen from the app.
 */
struct steer_splice_key {
	__u64 netns_cookie;
	__u8 app_addr[16]; /* network order; IPv4 (also v4-mapped) in the first 4 bytes */
	__u8 agent_addr[16];
	__u16 app_port; /* host order */
	__u16 agent_port; /* host order */
	__u8 family; /* AF_INET (also for v4-mapped) or AF_INET6 */
	__u8 pad[3];
};
_Static_assert(sizeof(struct steer_splice_key) == 48, "steer_splice_key layout");

/* splice_peers: key -> the spliced app socket, from ACTIVE_ESTABLISHED to TCP_CLOSE. */
struct steer_splice_peer {
	__u64 app_cookie; /* SO_COOKIE of the app socket (sock_diag finds it exactly) */
};
_Static_assert(sizeof(struct steer_splice_peer) == 8, "steer_splice_peer layout");

/* splice_stats: per-CPU __u64 counters. */
#define STEER_SPLICE_MSGS 0 /* sk_msg verdicts redirected */
#define STEER_SPLICE_BYTES 1 /* bytes redirected into app sockets */
#define STEER_SPLICE_PASS 2 /* no spliced peer (never inserted, or the app closed): TCP path */
#define STEER_SPLICE_APPS 3 /* app sockets inserted */
#define STEER_SPLICE_AGENTS 4 /* agent sockets inserted */
#define STEER_SPLICE__COUNT 8

#endif
