// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockdiag.h"

int sockdiag_open(int ns_fd)
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

int sockdiag_send(int fd, uint16_t type, uint16_t flags, const struct inet_diag_req_v2 *req)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
	} msg;
	memset(&msg, 0, sizeof(msg));
	msg.nlh.nlmsg_len = sizeof(msg);
	msg.nlh.nlmsg_type = type;
	msg.nlh.nlmsg_flags = flags;
	msg.req = *req;
	struct sockaddr_nl nl = {.nl_family = AF_NETLINK};
	ssize_t n;
	do
		n = sendto(fd, &msg, sizeof(msg), 0, (struct sockaddr *)&nl, sizeof(nl));
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : 0;
}

ssize_t sockdiag_recv(int fd, void *buf, size_t size)
{
	ssize_t n;
	do
		n = recv(fd, buf, size, 0);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

const void *sockdiag_attr(const struct inet_diag_msg *m, int len, unsigned int type, size_t min)
{
	for (const struct nlattr *a = (const void *)(m + 1);
	     len >= (int)sizeof(*a) && a->nla_len >= sizeof(*a) && a->nla_len <= len;
	     len -= NLA_ALIGN(a->nla_len),
				 a = (const void *)((const char *)a + NLA_ALIGN(a->nla_len))) {
		if ((a->nla_type & NLA_TYPE_MASK) == type && a->nla_len >= NLA_HDRLEN + min)
			return (const char *)a + NLA_HDRLEN;
	}
	return NULL;
}
