/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers shared by the BPF suite's programs: the cgroup v2 root from mountinfo, joining a
 * cgroup, and loopback sockets of either family.
 */
#ifndef MESHMASK_TESTS_SOCKTEST_H
#define MESHMASK_TESTS_SOCKTEST_H

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* The cgroup v2 mount point, from /proc/self/mountinfo (never assumed). 0 or -1. */
static inline int st_cgroup_root(char *out, size_t len)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[4096], fmt[32];
	int r = -1;
	snprintf(fmt, sizeof(fmt), "%%*s %%*s %%*s %%*s %%%zus", len - 1);
	while (f && fgets(line, sizeof(line), f)) {
		char *sep = strstr(line, " - ");
		if (sep && !strncmp(sep + 3, "cgroup2 ", 8) && sscanf(line, fmt, out) == 1) {
			r = 0;
			break;
		}
	}
	if (f)
		fclose(f);
	return r;
}

/* Move the calling process into the cgroup directory `dir`. 0 or -errno. */
static inline int st_join_cgroup(const char *dir)
{
	char path[4300];
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	FILE *f = fopen(path, "we");
	if (!f)
		return -errno;
	fprintf(f, "%d\n", getpid());
	return fclose(f) ? -errno : 0;
}

/* The loopback address of `family` with `port`; returns its length. */
static inline socklen_t st_loopback(int family, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET6) {
		struct sockaddr_in6 *a = (void *)ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		a->sin6_addr = in6addr_loopback;
		return sizeof(*a);
	}
	struct sockaddr_in *a = (void *)ss;
	a->sin_family = AF_INET;
	a->sin_port = htons(port);
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return sizeof(*a);
}

/* A listener on the loopback of `family` (IPv6 only for AF_INET6), port 0 = any. fd or -1. */
static inline int st_listen(int family, uint16_t port)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	struct sockaddr_storage ss;
	socklen_t len = st_loopback(family, port, &ss);
	if (bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 256)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The local port of a socket (host order). */
static inline uint16_t st_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					      : ((struct sockaddr_in *)&ss)->sin_port);
}

/* connect() to the loopback of `family` at `port`: the client fd or -errno. */
static inline int st_connect(int family, uint16_t port)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_storage ss;
	socklen_t len = st_loopback(family, port, &ss);
	if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

/* accept() with a one-second timeout: the accepted fd or -1. */
static inline int st_accept(int lfd)
{
	struct timeval tv = {.tv_sec = 1};
	setsockopt(lfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
}

#endif
