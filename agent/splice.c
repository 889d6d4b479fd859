// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "splice.h"

int splice_diag_open(int ns_fd)
{
	int self = -1, fd, err = 0;
	if (ns_fd >= 0) {
		self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
		if (self < 0)
			return -errno;
		if (setns(ns_fd, CLONE_NEWNET) < 0) {
			err = -errno;
			close(self);
			return err;
		}
	}
	fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		err = -errno;
	if (self >= 0) {
		if (setns(self, CLONE_NEWNET) < 0) {
			/* Staying in a pod's netns would misplace every later socket. */
			perror("meshmask-agent: setns back to own netns");
			_exit(1);
		}
		close(self);
	}
	return fd < 0 ? err : fd;
}

/* The app end's id as sock_diag wants it: its own address first. */
static int app_id(int fd, struct inet_diag_req_v2 *req)
{
	struct sockaddr_storage local, peer;
	socklen_t llen = sizeof(local), plen = sizeof(peer);
	if (getsockname(fd, (struct sockaddr *)&local, &llen) < 0 ||
	    getpeername(fd, (struct sockaddr *)&peer, &plen) < 0)
		return errno == ENOTCONN ? -ENOENT : -errno;
	req->sdiag_family = local.ss_family;
	if (local.ss_family == AF_INET) {
		const struct sockaddr_in *l = (void *)&local, *p = (void *)&peer;
		req->id.idiag_sport = p->sin_port;
		req->id.idiag_dport = l->sin_port;
		memcpy(req->id.idiag_src, &p->sin_addr, 4);
		memcpy(req->id.idiag_dst, &l->sin_addr, 4);
	} else if (local.ss_family == AF_INET6) {
		const struct sockaddr_in6 *l = (void *)&local, *p = (void *)&peer;
		req->id.idiag_sport = p->sin6_port;
		req->id.idiag_dport = l->sin6_port;
		memcpy(req->id.idiag_src, &p->sin6_addr, 16);
		memcpy(req->id.idiag_dst, &l->sin6_addr, 16);
	} else {
		return -EAFNOSUPPORT;
	}
	return 0;
}

int splice_unread(int diag_fd, int fd)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} msg;
	memset(&msg, 0, sizeof(msg));
	msg.nlh.nlmsg_len = sizeof(msg);
	msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	msg.nlh.nlmsg_flags = NLM_F_REQUEST;
	msg.req.sdiag_protocol = IPPROTO_TCP;
	msg.req.idiag_ext = 1 << (INET_DIAG_SKMEMINFO - 1);
	msg.req.idiag_states = ~0u;
	msg.req.id.idiag_cookie[0] = INET_DIAG_NOCOOKIE;
	msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
	int r = app_id(fd, &msg.req);
	if (r < 0)
		return r;
	struct sockaddr_nl nl = {.nl_family = AF_NETLINK};
	ssize_t n;
	do
		n = sendto(diag_fd, &msg, sizeof(msg), 0, (struct sockaddr *)&nl, sizeof(nl));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;

	/* One inet_diag_msg with its attributes, or an NLMSG_ERROR. */
	uint32_t buf[1024];
	do
		n = recv(diag_fd, buf, sizeof(buf), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	for (struct nlmsghdr *h = (void *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
		if (h->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *e = NLMSG_DATA(h);
			return e->error < 0 ? e->error : -EPROTO;
		}
		if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY)
			continue;
		const struct inet_diag_msg *d = NLMSG_DATA(h);
		int len = (int)h->nlmsg_len - NLMSG_LENGTH(sizeof(*d));
		for (const struct nlattr *a = (const void *)(d + 1);
		     len >= (int)sizeof(*a) && a->nla_len >= sizeof(*a) && a->nla_len <= len;
		     len -= NLA_ALIGN(a->nla_len), a = (const void *)((const char *)a +
								      NLA_ALIGN(a->nla_len))) {
			if ((a->nla_type & NLA_TYPE_MASK) != INET_DIAG_SKMEMINFO ||
			    a->nla_len <
				    NLA_HDRLEN + (SK_MEMINFO_RMEM_ALLOC + 1) * sizeof(uint32_t))
				continue;
			uint32_t rmem;
			memcpy(&rmem,
			       (const char *)a + NLA_HDRLEN +
				       SK_MEMINFO_RMEM_ALLOC * sizeof(uint32_t),
			       sizeof(rmem));
			return rmem > INT32_MAX ? INT32_MAX : (int)rmem;
		}
		/* No memory figures: a TIME_WAIT mini socket, the app end is closed. */
		return -ENOENT;
	}
	return -EPROTO;
}
