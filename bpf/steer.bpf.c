// SPDX-License-Identifier: Apache-2.0
/*
 * Connection steering: cgroup/connect4/6 redirect a flagged caller's TCP connection to a
 * flagged destination to the agent's listener on the caller's own loopback (the agent opened
 * it inside the caller's netns), and remember the original destination; sockops publishes it
 * under (netns cookie, app's local port) for the agent's accepted socket and forgets it at
 * close; cgroup/getpeername4/6 show the app its real peer; cgroup/getsockopt answers
 * SO_ORIGINAL_DST on the agent's accepted sockets. With splice_enabled, sockops and sk_msg also
 * splice the agent->app loopback hop (see steer.h).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "meshmask/steer.h"
#include "net.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The agent's listener port in every covered netns, host order. Set before load. */
const volatile __u16 proxy_port = 15101;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct steer_caller);
} steer_callers SEC(".maps");

/* Policy slot -> name: read and written by the agents only (see steer.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, STEER_MAX_POLICIES);
	__type(key, __u32);
	__type(value, struct steer_slot);
} steer_slots SEC(".maps");

/* Callers that did not fit in steer_callers, by ancestor (see steer.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct steer_caller);
} steer_overflow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct steer_dest_key);
	__type(value, struct steer_dest_val);
} steer_dests SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct steer_orig);
} steer_by_cookie SEC(".maps");

/* --splice: set before load. */
const volatile __u8 splice_enabled = 0;

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct steer_splice_key);
	__type(value, __u64);
} splice_apps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct steer_splice_key);
	__type(value, __u64);
} splice_agents SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct steer_splice_key);
	__type(value, struct steer_splice_peer);
} splice_peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STEER_SPLICE__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} splice_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct steer_conn_key);
	__type(value, struct steer_orig);
} steer_by_port SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct steer_listener);
} steer_listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct steer_state);
} steer_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STEER_STATS_SIZE);
	__type(key, __u32);
	__type(value, __u64);
} steer_stats SEC(".maps");

static __always_inline void count(__u32 policy, __u32 stat)
{
	__u32 idx = policy * STEER_STAT__COUNT + stat;
	__u64 *v = bpf_map_lookup_elem(&steer_stats, &idx);
	if (v)
		*v += 1;
}

/*
 * The first policy of the caller's mask that covers (family, port, addr): its index, or -1.
 * *flags gets the destination entry's flags.
 */
static __always_inline int match_dest(__u64 mask, struct steer_dest_key *k, __u32 *flags)
{
	for (__u32 i = 0; i < STEER_MAX_POLICIES; i++) {
		if (!(mask & (1ULL << i)))
			continue;
		__be16 port = k->port;
		k->policy = i;
		struct steer_dest_val *v = bpf_map_lookup_elem(&steer_dests, k);
		if (!v) {
			k->port = 0;
			v = bpf_map_lookup_elem(&steer_dests, k);
			k->port = port;
		}
		if (v) {
			*flags = v->flags;
			return (int)i;
		}
	}
	return -1;
}

/* Policies of the deepest ancestor of the current cgroup in steer_overflow, or 0. */
static __always_inline __u64 overflow_mask(void)
{
	for (int lvl = STEER_OVERFLOW_LEVELS; lvl >= 0; lvl--) {
		__u64 id = bpf_get_current_ancestor_cgroup_id(lvl);
		if (!id)
			continue;
		struct steer_caller *c = bpf_map_lookup_elem(&steer_overflow, &id);
		if (c)
			return c->policy_mask;
	}
	return 0;
}

/*
 * Decide for a connect(): 1 = steer (orig filled), 0 = leave alone, -1 = refuse (EPERM). With
 * the agent down a fail-open destination is left alone; a fail-closed one is still steered so
 * the connection is refused by the (absent) listener instead of leaking unmasked. A covered
 * caller the agent could not put in steer_callers (map full) cannot be steered: closed refuses,
 * open passes, both counted.
 */
static __always_inline int decide(void *ctx, struct steer_dest_key *k, struct steer_orig *orig)
{
	__u64 cg = bpf_get_current_cgroup_id();
	__u32 zero = 0;
	struct steer_state *st = bpf_map_lookup_elem(&steer_state, &zero);
	struct steer_caller *c = bpf_map_lookup_elem(&steer_callers, &cg);
	__u32 flags = 0;
	int pol;
	if (!c) {
		if (!st || !st->overflow)
			return 0;
		__u64 omask = overflow_mask();
		if (!omask)
			return 0;
		pol = match_dest(omask, k, &flags);
		if (pol < 0 || pol >= STEER_MAX_POLICIES)
			return 0;
		if (flags & STEER_DEST_FAIL_OPEN) {
			count(pol, STEER_STAT_UNSTEERED_PASSED);
			return 0;
		}
		count(pol, STEER_STAT_UNSTEERED_REFUSED);
		return -1;
	}
	__u64 mask = c->policy_mask;
	pol = match_dest(mask, k, &flags);
	if (pol < 0 || pol >= STEER_MAX_POLICIES)
		return 0;

	__u64 now = bpf_ktime_get_ns();
	int alive = st && st->heartbeat_ns && now - st->heartbeat_ns < STEER_HEARTBEAT_NS;
	if (alive) {
		__u64 ns = bpf_get_netns_cookie(ctx);
		alive = bpf_map_lookup_elem(&steer_listeners, &ns) != NULL;
	}
	if (!alive) {
		if (flags & STEER_DEST_FAIL_OPEN) {
			count(pol, STEER_STAT_PASSED);
			return 0;
		}
		count(pol, STEER_STAT_REFUSED);
	} else {
		count(pol, STEER_STAT_STEERED);
	}
	orig->cgroup_id = cg;
	orig->policy = pol;
	orig->family = k->family;
	orig->port = k->port;
	__builtin_memcpy(orig->addr, k->addr, sizeof(orig->addr));
	return 1;
}

SEC("cgroup/connect4")
int mm_connect4(struct bpf_sock_addr *ctx)
{
	if (ctx->type != MM_SOCK_STREAM)
		return 1;
	__u32 ip = ctx->user_ip4;
	__u32 uport = ctx->user_port;
	struct steer_dest_key k = {};
	k.prefixlen = 64 + 32;
	k.family = MM_AF_INET;
	k.port = (__be16)uport;
	__builtin_memcpy(k.addr, &ip, 4);
	struct steer_orig orig = {};
	int d = decide(ctx, &k, &orig);
	if (d <= 0)
		return d < 0 ? 0 : 1;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	bpf_map_update_elem(&steer_by_cookie, &cookie, &orig, BPF_ANY);
	ctx->user_ip4 = bpf_htonl(MM_LOOPBACK4);
	ctx->user_port = bpf_htons(proxy_port);
	return 1;
}

SEC("cgroup/connect6")
int mm_connect6(struct bpf_sock_addr *ctx)
{
	if (ctx->type != MM_SOCK_STREAM)
		return 1;
	__u32 w0 = ctx->user_ip6[0], w1 = ctx->user_ip6[1];
	__u32 w2 = ctx->user_ip6[2], w3 = ctx->user_ip6[3];
	__u32 uport = ctx->user_port;
	int mapped = mm_ip6_is_v4mapped(w0, w1, w2);
	struct steer_dest_key k = {};
	k.port = (__be16)uport;
	if (mapped) {
		k.prefixlen = 64 + 32;
		k.family = MM_AF_INET;
		__builtin_memcpy(k.addr, &w3, 4);
	} else {
		k.prefixlen = 64 + 128;
		k.family = MM_AF_INET6;
		__builtin_memcpy(k.addr, &w0, 4);
		__builtin_memcpy(k.addr + 4, &w1, 4);
		__builtin_memcpy(k.addr + 8, &w2, 4);
		__builtin_memcpy(k.addr + 12, &w3, 4);
	}
	struct steer_orig orig = {};
	int d = decide(ctx, &k, &orig);
	if (d <= 0)
		return d < 0 ? 0 : 1;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	bpf_map_update_elem(&steer_by_cookie, &cookie, &orig, BPF_ANY);
	if (mapped) {
		/* ::ffff:127.0.0.1 reaches the agent's IPv4 listener. */
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0x0000ffffu);
		ctx->user_ip6[3] = bpf_htonl(MM_LOOPBACK4);
	} else {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = 0;
		ctx->user_ip6[3] = bpf_htonl(1);
	}
	ctx->user_port = bpf_htons(proxy_port);
	return 1;
}

SEC("cgroup/getpeername4")
int mm_getpeername4(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct steer_orig *o = bpf_map_lookup_elem(&steer_by_cookie, &cookie);
	if (!o || o->family != MM_AF_INET)
		return 1;
	__u32 ip;
	__builtin_memcpy(&ip, o->addr, 4);
	ctx->user_ip4 = ip;
	ctx->user_port = o->port;
	return 1;
}

SEC("cgroup/getpeername6")
int mm_getpeername6(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct steer_orig *o = bpf_map_lookup_elem(&steer_by_cookie, &cookie);
	if (!o)
		return 1;
	__u32 w[4];
	if (o->family == MM_AF_INET) {
		w[0] = 0;
		w[1] = 0;
		w[2] = bpf_htonl(0x0000ffffu);
		__builtin_memcpy(&w[3], o->addr, 4);
	} else {
		__builtin_memcpy(w, o->addr, 16);
	}
	ctx->user_ip6[0] = w[0];
	ctx->user_ip6[1] = w[1];
	ctx->user_ip6[2] = w[2];
	ctx->user_ip6[3] = w[3];
	ctx->user_port = o->port;
	return 1;
}

static __always_inline void conn_key(struct bpf_sock_ops *skops, struct steer_conn_key *key)
{
	__u32 family = skops->family;
	__u32 lport = skops->local_port;
	key->netns_cookie = bpf_get_netns_cookie(skops);
	key->port = (__u16)lport;
	key->family = MM_AF_INET;
	if (family == MM_AF_INET6) {
		__u32 w0 = skops->remote_ip6[0], w1 = skops->remote_ip6[1];
		__u32 w2 = skops->remote_ip6[2];
		if (!mm_ip6_is_v4mapped(w0, w1, w2))
			key->family = MM_AF_INET6;
	}
}

static __always_inline void splice_count(__u32 stat, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&splice_stats, &stat);
	if (v)
		*v += n;
}

/*
 * The splice key of one loopback connection from either end: app_local says whether the local
 * end is the app's. Addresses and ports are read into locals before the family decides.
 */
static __always_inline void splice_key(struct steer_splice_key *key, __u64 netns_cookie,
				       __u32 family, const __u32 *local6, const __u32 *remote6,
				       __u32 local4, __u32 remote4, __u16 lport, __u16 rport,
				       int app_local)
{
	__u32 l[4] = {local4, 0, 0, 0}, r[4] = {remote4, 0, 0, 0};
	key->netns_cookie = netns_cookie;
	key->family = MM_AF_INET;
	if (family == MM_AF_INET6) {
		if (mm_ip6_is_v4mapped(remote6[0], remote6[1], remote6[2])) {
			l[0] = local6[3];
			r[0] = remote6[3];
		} else {
			key->family = MM_AF_INET6;
			__builtin_memcpy(l, local6, 16);
			__builtin_memcpy(r, remote6, 16);
		}
	}
	if (app_local) {
		__builtin_memcpy(key->app_addr, l, 16);
		__builtin_memcpy(key->agent_addr, r, 16);
		key->app_port = lport;
		key->agent_port = rport;
	} else {
		__builtin_memcpy(key->app_addr, r, 16);
		__builtin_memcpy(key->agent_addr, l, 16);
		key->app_port = rport;
		key->agent_port = lport;
	}
}

static __always_inline void splice_key_ops(struct bpf_sock_ops *skops, struct steer_splice_key *key,
					   int app_local)
{
	__u32 family = skops->family;
	__u32 l6[4] = {}, r6[4] = {};
	if (family == MM_AF_INET6) {
		l6[0] = skops->local_ip6[0];
		l6[1] = skops->local_ip6[1];
		l6[2] = skops->local_ip6[2];
		l6[3] = skops->local_ip6[3];
		r6[0] = skops->remote_ip6[0];
		r6[1] = skops->remote_ip6[1];
		r6[2] = skops->remote_ip6[2];
		r6[3] = skops->remote_ip6[3];
	}
	__u32 l4 = skops->local_ip4, r4 = skops->remote_ip4;
	__u32 lport = skops->local_port, rport = skops->remote_port;
	splice_key(key, bpf_get_netns_cookie(skops), family, l6, r6, l4, r4, (__u16)lport,
		   (__u16)bpf_ntohl(rport), app_local);
}

/* A steered app socket, established, before any byte can reach it: splice_apps. */
static __always_inline void splice_app(struct bpf_sock_ops *skops)
{
	struct steer_splice_key key = {};
	splice_key_ops(skops, &key, 1);
	struct steer_splice_peer peer = {.app_cookie = bpf_get_socket_cookie(skops)};
	if (bpf_map_update_elem(&splice_peers, &key, &peer, BPF_ANY))
		return;
	if (bpf_sock_hash_update(skops, &splice_apps, &key, BPF_ANY)) {
		/* Not spliced: its agent's sends take TCP from the first byte. */
		bpf_map_delete_elem(&splice_peers, &key);
		return;
	}
	splice_count(STEER_SPLICE_APPS, 1);
}

/* The agent's accepted socket of a spliced app socket, before accept(): splice_agents. */
static __always_inline void splice_agent(struct bpf_sock_ops *skops)
{
	if (skops->local_port != proxy_port)
		return;
	struct steer_splice_key key = {};
	splice_key_ops(skops, &key, 0);
	if (!bpf_map_lookup_elem(&splice_peers, &key))
		return;
	if (bpf_sock_hash_update(skops, &splice_agents, &key, BPF_ANY) == 0)
		splice_count(STEER_SPLICE_AGENTS, 1);
}

SEC("sockops")
int mm_sockops(struct bpf_sock_ops *skops)
{
	__u32 op = skops->op;
	if (splice_enabled && op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) {
		splice_agent(skops);
		return 1;
	}
	if (op != BPF_SOCK_OPS_TCP_CONNECT_CB && op != BPF_SOCK_OPS_STATE_CB &&
	    !(splice_enabled && op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB))
		return 1;
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct steer_orig *o = bpf_map_lookup_elem(&steer_by_cookie, &cookie);
	if (!o)
		return 1;
	if (op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) {
		splice_app(skops);
		return 1;
	}
	struct steer_conn_key key = {};
	conn_key(skops, &key);
	if (op == BPF_SOCK_OPS_TCP_CONNECT_CB) {
		/* Before the SYN: the entry exists by the time the agent accepts. */
		struct steer_orig copy = *o;
		bpf_map_update_elem(&steer_by_port, &key, &copy, BPF_ANY);
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
							 BPF_SOCK_OPS_STATE_CB_FLAG);
		return 1;
	}
	if (skops->args[1] == BPF_TCP_CLOSE) {
		bpf_map_delete_elem(&steer_by_port, &key);
		bpf_map_delete_elem(&steer_by_cookie, &cookie);
		if (splice_enabled) {
			struct steer_splice_key sk_key = {};
			splice_key_ops(skops, &sk_key, 1);
			bpf_map_delete_elem(&splice_peers, &sk_key);
		}
	}
	return 1;
}

/*
 * Every byte the agent sends on a spliced connection goes into the app socket's receive
 * queue, from the first to the last: mixing with the TCP path would reorder them. Never
 * SK_DROP: on this kernel a drop verdict sticks to the socket (psock->eval is only reset after
 * a successful verdict), so every later send fails with EACCES. The agent bounds what it
 * sends by the app's unread bytes instead (agent/dataplane/splice.c). No spliced peer (never inserted,
 * or the app closed its socket): TCP, which is then the only path this connection ever used
 * or one nobody reads any more.
 */
SEC("sk_msg")
int mm_splice_msg(struct sk_msg_md *msg)
{
	__u32 family = msg->family, size = msg->size;
	__u32 l6[4] = {}, r6[4] = {};
	if (family == MM_AF_INET6) {
		l6[0] = msg->local_ip6[0];
		l6[1] = msg->local_ip6[1];
		l6[2] = msg->local_ip6[2];
		l6[3] = msg->local_ip6[3];
		r6[0] = msg->remote_ip6[0];
		r6[1] = msg->remote_ip6[1];
		r6[2] = msg->remote_ip6[2];
		r6[3] = msg->remote_ip6[3];
	}
	__u32 l4 = msg->local_ip4, r4 = msg->remote_ip4;
	__u32 lport = msg->local_port, rport = msg->remote_port;
	struct steer_splice_key key = {};
	splice_key(&key, bpf_get_netns_cookie(msg), family, l6, r6, l4, r4, (__u16)lport,
		   (__u16)bpf_ntohl(rport), 0);
	if (bpf_msg_redirect_hash(msg, &splice_apps, &key, BPF_F_INGRESS) != SK_PASS) {
		splice_count(STEER_SPLICE_PASS, 1);
		return SK_PASS;
	}
	splice_count(STEER_SPLICE_MSGS, 1);
	splice_count(STEER_SPLICE_BYTES, size);
	return SK_PASS;
}

/*
 * SO_ORIGINAL_DST for the agent's accepted sockets (attached to the agent's own cgroup, which
 * is where sockets cloned from its listeners belong). The kernel's own answer ran first:
 * without conntrack it is ENOPROTOOPT, and a miss becomes ENOENT, as with iptables.
 */
SEC("cgroup/getsockopt")
int mm_getsockopt(struct bpf_sockopt *ctx)
{
	int level = ctx->level, optname = ctx->optname;
	if (optname != STEER_SO_ORIGINAL_DST && optname != STEER_SO_CALLER)
		return 1;
	if (level != STEER_SOL_IP && level != STEER_SOL_IPV6)
		return 1;
	if (optname == STEER_SO_CALLER && level != STEER_SOL_IP)
		return 1;
	struct bpf_sock *sk = ctx->sk;
	if (!sk || sk->protocol != MM_IPPROTO_TCP)
		return 1;
	__u32 family = sk->family;
	struct steer_conn_key key = {};
	key.netns_cookie = bpf_get_netns_cookie(ctx);
	key.port = bpf_ntohs(sk->dst_port);
	key.family = MM_AF_INET;
	if (family == MM_AF_INET6) {
		__u32 w0 = sk->dst_ip6[0], w1 = sk->dst_ip6[1], w2 = sk->dst_ip6[2];
		if (!mm_ip6_is_v4mapped(w0, w1, w2))
			key.family = MM_AF_INET6;
	}
	struct steer_orig *o = bpf_map_lookup_elem(&steer_by_port, &key);
	int want = level == STEER_SOL_IPV6 ? MM_AF_INET6 : MM_AF_INET;
	if (!o || (optname == STEER_SO_ORIGINAL_DST && o->family != want)) {
		/* A conntrack answer for an unsteered socket stays; anything else is ENOENT. */
		if (ctx->retval != 0 || o)
			ctx->retval = -MM_ENOENT;
		return 1;
	}
	__u8 *p = ctx->optval, *end = ctx->optval_end;
	if (optname == STEER_SO_CALLER) {
		if (p + sizeof(struct steer_orig) > end) {
			ctx->retval = -MM_EINVAL;
			return 1;
		}
		__builtin_memcpy(p, o, sizeof(struct steer_orig));
		ctx->optlen = sizeof(struct steer_orig);
	} else if (want == MM_AF_INET) {
		struct sockaddr_in *sin = (void *)p;
		if (p + sizeof(*sin) > end) {
			ctx->retval = -MM_EINVAL;
			return 1;
		}
		__builtin_memset(sin, 0, sizeof(*sin));
		sin->sin_family = MM_AF_INET;
		sin->sin_port = o->port;
		__builtin_memcpy(&sin->sin_addr, o->addr, 4);
		ctx->optlen = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (void *)p;
		if (p + sizeof(*sin6) > end) {
			ctx->retval = -MM_EINVAL;
			return 1;
		}
		__builtin_memset(sin6, 0, sizeof(*sin6));
		sin6->sin6_family = MM_AF_INET6;
		sin6->sin6_port = o->port;
		__builtin_memcpy(&sin6->sin6_addr, o->addr, 16);
		ctx->optlen = sizeof(*sin6);
	}
	ctx->retval = 0;
	return 1;
}
