// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockdiag.h"
#include "sockreset.h"

#ifndef INET_DIAG_CGROUP_ID
#define INET_DIAG_CGROUP_ID 21
#endif
#ifndef SOCK_DESTROY
#define SOCK_DESTROY 21
#endif

/* Kernel TCP states (include/net/tcp_states.h) as bits of idiag_states. */
#define ST_ESTABLISHED 1
#define ST_SYN_SENT 2
#define ST_FIN_WAIT1 4
#define ST_FIN_WAIT2 5
#define ST_LISTEN 10

struct entry {
	struct inet_diag_sockid id; /* as the kernel gave it: SOCK_DESTROY wants it back */
	uint8_t diag_family;
	bool listen;
	struct sockreset_sock sk;
};

struct dump {
	struct entry *v;
	size_t n, cap;
};

static bool v4mapped(const uint8_t *a)
{
	static const uint8_t pfx[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	return !memcmp(a, pfx, sizeof(pfx));
}

static int add_entry(struct dump *d, const struct inet_diag_msg *m, int len)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		struct entry *v = realloc(d->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		d->v = v;
		d->cap = cap;
	}
	struct entry *e = &d->v[d->n++];
	memset(e, 0, sizeof(*e));
	e->id = m->id;
	e->diag_family = m->idiag_family;
	e->listen = m->idiag_state == ST_LISTEN;
	struct sockreset_sock *s = &e->sk;
	s->state = m->idiag_state;
	s->sport = ntohs(m->id.idiag_sport);
	s->dport = ntohs(m->id.idiag_dport);
	s->family = m->idiag_family;
	if (m->idiag_family == AF_INET6 && v4mapped((const uint8_t *)m->id.idiag_dst)) {
		s->family = AF_INET;
		memcpy(s->src, (const uint8_t *)m->id.idiag_src + 12, 4);
		memcpy(s->dst, (const uint8_t *)m->id.idiag_dst + 12, 4);
	} else {
		memcpy(s->src, m->id.idiag_src, m->idiag_family == AF_INET ? 4 : 16);
		memcpy(s->dst, m->id.idiag_dst, m->idiag_family == AF_INET ? 4 : 16);
	}
	const void *cg = sockdiag_attr(m, len, INET_DIAG_CGROUP_ID, sizeof(uint64_t));
	if (cg)
		memcpy(&s->cgroup_id, cg, sizeof(uint64_t));
	return 0;
}

/* Append the family's TCP sockets in the states we care about to d. 0 or -errno. */
static int dump_family(int fd, uint8_t family, struct dump *d)
{
	struct inet_diag_req_v2 req = {
		.sdiag_family = family,
		.sdiag_protocol = IPPROTO_TCP,
		.idiag_states = 1u << ST_ESTABLISHED | 1u << ST_SYN_SENT | 1u << ST_FIN_WAIT1 |
				1u << ST_FIN_WAIT2 | 1u << ST_LISTEN,
	};
	int r = sockdiag_send(fd, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, &req);
	if (r < 0)
		return r;
	static __thread uint32_t buf[8192];
	for (;;) {
		ssize_t n = sockdiag_recv(fd, buf, sizeof(buf));
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EPROTO;
		for (struct nlmsghdr *h = (void *)buf; NLMSG_OK(h, (size_t)n);
		     h = NLMSG_NEXT(h, n)) {
			if (h->nlmsg_type == NLMSG_DONE)
				return 0;
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);
				return e->error < 0 ? e->error : -EPROTO;
			}
			if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY)
				continue;
			const struct inet_diag_msg *m = NLMSG_DATA(h);
			int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*m));
			if (len < 0)
				continue;
			if ((r = add_entry(d, m, len)) < 0)
				return r;
		}
	}
}

/* SOCK_DESTROY of one socket, identified exactly (addresses, ports, cookie). 0 or -errno. */
static int destroy(int fd, const struct entry *e)
{
	struct inet_diag_req_v2 req = {
		.sdiag_family = e->diag_family,
		.sdiag_protocol = IPPROTO_TCP,
		.idiag_states = ~0u,
		.id = e->id,
	};
	int r = sockdiag_send(fd, SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, &req);
	if (r < 0)
		return r;
	uint32_t buf[256];
	ssize_t n = sockdiag_recv(fd, buf, sizeof(buf));
	if (n < 0)
		return (int)n;
	for (struct nlmsghdr *h = (void *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n))
		if (h->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *err = NLMSG_DATA(h);
			return err->error;
		}
	return -EPROTO;
}

static bool listening_on(const struct dump *d, const struct entry *e)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->v[i].listen && d->v[i].sk.sport == e->sk.sport)
			return true;
	return false;
}

int sockreset_netns(int ns_fd, sockreset_filter_fn filter, void *ctx)
{
	int fd = sockdiag_open(ns_fd);
	if (fd < 0)
		return fd;
	struct dump d = {0};
	int r = dump_family(fd, AF_INET, &d);
	if (r == 0)
		r = dump_family(fd, AF_INET6, &d);
	int destroyed = 0;
	for (size_t i = 0; r == 0 && i < d.n; i++) {
		struct entry *e = &d.v[i];
		if (e->listen)
			continue;
		e->sk.server = listening_on(&d, e);
		if (!filter(ctx, &e->sk))
			continue;
		int x = destroy(fd, e);
		if (x == 0)
			destroyed++;
		else if (x == -EOPNOTSUPP)
			r = x; /* no CONFIG_INET_DIAG_DESTROY: none will work */
		/* -ENOENT: it closed meanwhile; nothing left to reset. */
	}
	free(d.v);
	close(fd);
	return r < 0 ? r : destroyed;
}
