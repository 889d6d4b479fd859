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

#include "sockdiag.h"
#include "splice.h"

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
	struct inet_diag_req_v2 req = {
		.sdiag_protocol = IPPROTO_TCP,
		.idiag_ext = 1 << (INET_DIAG_SKMEMINFO - 1),
		.idiag_states = ~0u,
		.id.idiag_cookie = {INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE},
	};
	int r = app_id(fd, &req);
	if (r < 0 || (r = sockdiag_send(diag_fd, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, &req)) < 0)
		return r;

	/* One inet_diag_msg with its attributes, or an NLMSG_ERROR. */
	uint32_t buf[1024];
	ssize_t n = sockdiag_recv(diag_fd, buf, sizeof(buf));
	if (n < 0)
		return (int)n;
	for (struct nlmsghdr *h = (void *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
		if (h->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *e = NLMSG_DATA(h);
			return e->error < 0 ? e->error : -EPROTO;
		}
		if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY)
			continue;
		const struct inet_diag_msg *d = NLMSG_DATA(h);
		int len = (int)h->nlmsg_len - NLMSG_LENGTH(sizeof(*d));
		const uint32_t *mem =
			sockdiag_attr(d, len, INET_DIAG_SKMEMINFO,
				      (SK_MEMINFO_RMEM_ALLOC + 1) * sizeof(uint32_t));
		if (mem) {
			uint32_t rmem;
			memcpy(&rmem, mem + SK_MEMINFO_RMEM_ALLOC, sizeof(rmem));
			return rmem > INT32_MAX ? INT32_MAX : (int)rmem;
		}
		/* No memory figures: a TIME_WAIT mini socket, the app end is closed. */
		return -ENOENT;
	}
	return -EPROTO;
}
