// SPDX-License-Identifier: Apache-2.0
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "netns.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

static int self_ns = -1;

int netns_init(void)
{
	if (self_ns >= 0)
		return 0;
	self_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	return self_ns < 0 ? -errno : 0;
}

void netns_fini(void)
{
	if (self_ns >= 0)
		close(self_ns);
	self_ns = -1;
}

int netns_open_pid(int pid, uint64_t *ino)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/net", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	*ino = st.st_ino;
	return fd;
}

int netns_ino_of_pid(int pid, uint64_t *ino)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/net", pid);
	struct stat st;
	if (stat(path, &st) < 0)
		return -errno;
	*ino = st.st_ino;
	return 0;
}

int netns_socket(int ns_fd, int family, int type)
{
	if (ns_fd < 0) {
		int fd = socket(family, type | SOCK_CLOEXEC, 0);
		return fd < 0 ? -errno : fd;
	}
	if (self_ns < 0)
		return -EBADF;
	if (setns(ns_fd, CLONE_NEWNET) < 0)
		return -errno;
	int fd = socket(family, type | SOCK_CLOEXEC, 0);
	int err = fd < 0 ? -errno : 0;
	if (setns(self_ns, CLONE_NEWNET) < 0) {
		/* Staying in a pod's netns would misplace every later socket: give up loudly. */
		perror("meshmask-agent: setns back to own netns");
		_exit(1);
	}
	return fd < 0 ? err : fd;
}

int netns_listen(int ns_fd, int family, uint16_t port)
{
	int fd = netns_socket(ns_fd, family, SOCK_STREAM | SOCK_NONBLOCK);
	if (fd < 0)
		return fd;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/*
	 * An overlapping restart: the new agent listens beside the old one until it exits (the
	 * kernel spreads connections over both), instead of failing until the old one is gone.
	 */
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	int r;
	if (family == AF_INET6) {
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		struct sockaddr_in6 a = {.sin6_family = AF_INET6,
					 .sin6_port = htons(port),
					 .sin6_addr = IN6ADDR_LOOPBACK_INIT};
		r = bind(fd, (struct sockaddr *)&a, sizeof(a));
	} else {
		struct sockaddr_in a = {.sin_family = AF_INET,
					.sin_port = htons(port),
					.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		r = bind(fd, (struct sockaddr *)&a, sizeof(a));
	}
	if (r < 0 || listen(fd, 1024) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

int netns_cookie(int fd, uint64_t *cookie)
{
	socklen_t len = sizeof(*cookie);
	if (getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, cookie, &len) < 0)
		return -errno;
	return 0;
}
