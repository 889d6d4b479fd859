/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Resetting established TCP connections of a network namespace through sock_diag
 * (SOCK_DIAG_BY_FAMILY dump, then SOCK_DESTROY of the chosen ones: the kernel aborts them,
 * sending an RST to the peer and ECONNABORTED to the owner). Used when a policy starts
 * covering a caller: its connections opened before that went straight to the server and would
 * stay raw for their whole life.
 */
#ifndef MESHMASK_SOCKRESET_H
#define MESHMASK_SOCKRESET_H

#include <stdbool.h>
#include <stdint.h>

/* One TCP socket of the dump, as the filter sees it. */
struct sockreset_sock {
	uint64_t cgroup_id; /* cgroup v2 id of the socket (its creator's cgroup at socket()) */
	uint8_t family; /* AF_INET, or AF_INET6 for a native IPv6 peer (v4-mapped -> AF_INET) */
	uint8_t state; /* TCP_ESTABLISHED, TCP_SYN_SENT, ... */
	bool server; /* its local port is one a socket of the netns listens on */
	uint16_t sport, dport; /* host order */
	uint8_t src[16], dst[16]; /* network order; IPv4 in the first 4 bytes */
};

/* true = destroy this socket. `ctx` as given to sockreset_netns. */
typedef bool (*sockreset_filter_fn)(void *ctx, const struct sockreset_sock *sk);

/*
 * Dump the TCP sockets (established, connecting, half-closed) of the netns ns_fd (-1 = ours)
 * and destroy those `filter` picks. Returns the number destroyed, or -errno (-EOPNOTSUPP: the
 * kernel has no CONFIG_INET_DIAG_DESTROY).
 */
int sockreset_netns(int ns_fd, sockreset_filter_fn filter, void *ctx);

#endif
