// SPDX-License-Identifier: Apache-2.0
/*
 * bpf suite: the cgroup/getsockopt SO_ORIGINAL_DST answer. The steering programs and the
 * getsockopt program are attached to a fresh test cgroup; this process joins it and only then
 * opens the "agent" listeners, so the accepted sockets belong to the cgroup as the agent's do
 * to its own. A steered IPv4 and IPv6 connection get the original destination back through
 * the same getsockopt calls iptables REDIRECT users make; a connection that was not steered
 * gets ENOENT; other options are untouched. Exit 77 when not root or BPF is unavailable.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "meshmask/steer.h"
#include "steer.skel.h"
#include "socktest.h"
#include "tap.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

static char cg_root[4096], cg_dir[4200];

int main(void)
{
	if (geteuid() != 0) {
		printf("1..0 # SKIP needs root\n");
		return 77;
	}
	if (st_cgroup_root(cg_root, sizeof(cg_root)) < 0) {
		printf("1..0 # SKIP no cgroup v2 mount\n");
		return 77;
	}
	libbpf_set_print(NULL);
	struct steer *skel = steer__open();
	if (!skel) {
		printf("1..0 # SKIP cannot open BPF skeleton: %s\n", strerror(errno));
		return 77;
	}
	/* Reserve a free port for the "agent", then listen on it from inside the cgroup. */
	int probe = st_listen(AF_INET, 0);
	uint16_t proxy_port = st_port(probe);
	close(probe);
	int dest4 = st_listen(AF_INET, 0), dest6 = st_listen(AF_INET6, 0);
	uint16_t dport4 = st_port(dest4), dport6 = dest6 >= 0 ? st_port(dest6) : 0;
	skel->rodata->proxy_port = proxy_port;
	int r = steer__load(skel);
	if (r == -EPERM) {
		printf("1..0 # SKIP BPF not permitted\n");
		return 77;
	}
	ok(r == 0, "steer.bpf.o with cgroup/getsockopt loads (%s)", strerror(-r));
	if (r)
		return tap_done();

	snprintf(cg_dir, sizeof(cg_dir), "%s/mmgsotest-%d", cg_root, getpid());
	ok(mkdir(cg_dir, 0755) == 0, "test cgroup created");
	int cgfd = open(cg_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct bpf_link *links[] = {
		bpf_program__attach_cgroup(skel->progs.mm_connect4, cgfd),
		bpf_program__attach_cgroup(skel->progs.mm_connect6, cgfd),
		bpf_program__attach_cgroup(skel->progs.mm_sockops, cgfd),
		bpf_program__attach_cgroup(skel->progs.mm_getsockopt, cgfd),
	};
	const size_t n_links = sizeof(links) / sizeof(links[0]);
	int attached = 1;
	for (size_t i = 0; i < n_links; i++)
		attached &= links[i] != NULL;
	ok(attached, "connect4/6, sockops and getsockopt attach to the test cgroup");

	struct stat st;
	stat(cg_dir, &st);
	uint64_t cgid = st.st_ino;
	struct steer_caller c = {.policy_mask = 1ull << 5};
	bpf_map_update_elem(bpf_map__fd(skel->maps.steer_callers), &cgid, &c, BPF_ANY);
	struct steer_dest_key k;
	memset(&k, 0, sizeof(k));
	k.prefixlen = 64 + 32;
	k.policy = 5;
	k.port = htons(dport4);
	k.family = AF_INET;
	memcpy(k.addr, (uint8_t[]){127, 0, 0, 1}, 4);
	struct steer_dest_val dv = {0};
	bpf_map_update_elem(bpf_map__fd(skel->maps.steer_dests), &k, &dv, BPF_ANY);
	memset(&k, 0, sizeof(k));
	k.prefixlen = 64 + 128;
	k.policy = 5;
	k.port = htons(dport6);
	k.family = AF_INET6;
	memcpy(k.addr, &in6addr_loopback, 16);
	bpf_map_update_elem(bpf_map__fd(skel->maps.steer_dests), &k, &dv, BPF_ANY);

	ok(st_join_cgroup(cg_dir) == 0, "test process joined the test cgroup");
	int px4 = st_listen(AF_INET, proxy_port), px6 = st_listen(AF_INET6, proxy_port);
	ok(px4 >= 0, "agent listener opened inside the cgroup");

	/* 1. Steered IPv4: SOL_IP/SO_ORIGINAL_DST gives the original sockaddr_in. */
	int cfd = st_connect(AF_INET, dport4);
	int afd = cfd >= 0 ? st_accept(px4) : -1;
	ok(afd >= 0, "IPv4 connect() steered to the agent listener");
	if (afd >= 0) {
		struct sockaddr_storage ss;
		memset(&ss, 0xaa, sizeof(ss));
		socklen_t len = sizeof(ss);
		r = getsockopt(afd, SOL_IP, STEER_SO_ORIGINAL_DST, &ss, &len);
		struct sockaddr_in *sin = (void *)&ss;
		ok(r == 0, "SO_ORIGINAL_DST answered (%s)", r ? strerror(errno) : "ok");
		is_int(len, sizeof(struct sockaddr_in), "optlen is sizeof(struct sockaddr_in)");
		ok(sin->sin_family == AF_INET && ntohs(sin->sin_port) == dport4 &&
			   sin->sin_addr.s_addr == htonl(INADDR_LOOPBACK),
		   "SO_ORIGINAL_DST is 127.0.0.1:%u", dport4);
		ok(!memcmp(sin->sin_zero, "\0\0\0\0\0\0\0\0", 8), "sin_zero is zeroed");

		struct sockaddr_in small;
		len = 8;
		r = getsockopt(afd, SOL_IP, STEER_SO_ORIGINAL_DST, &small, &len);
		ok(r < 0 && errno == EINVAL, "a buffer shorter than sockaddr_in: EINVAL");
		struct sockaddr_in6 six;
		len = sizeof(six);
		r = getsockopt(afd, SOL_IPV6, STEER_SO_ORIGINAL_DST, &six, &len);
		ok(r < 0, "IPv6 level on an IPv4 destination is refused");

		struct steer_orig o;
		len = sizeof(o);
		r = getsockopt(afd, SOL_IP, STEER_SO_CALLER, &o, &len);
		ok(r == 0 && len == sizeof(o) && o.cgroup_id == cgid && o.policy == 5 &&
			   o.family == AF_INET && ntohs(o.port) == dport4,
		   "STEER_SO_CALLER gives the caller's cgroup and policy");

		int nodelay = 1;
		setsockopt(afd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof(nodelay));
		nodelay = 0;
		len = sizeof(nodelay);
		r = getsockopt(afd, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len);
		ok(r == 0 && nodelay == 1, "other options pass through (TCP_NODELAY)");
		char big[8192];
		len = sizeof(big);
		r = getsockopt(afd, IPPROTO_TCP, TCP_INFO, big, &len);
		ok(r == 0 && len > 0 && len < sizeof(big), "TCP_INFO with an 8 KiB buffer works");
		close(afd);
	}
	if (cfd >= 0)
		close(cfd);

	/* 2. Not steered: a direct connection to the agent port gets ENOENT like iptables. */
	cfd = st_connect(AF_INET, proxy_port);
	afd = cfd >= 0 ? st_accept(px4) : -1;
	ok(afd >= 0, "direct connection to the agent port accepted");
	if (afd >= 0) {
		struct sockaddr_in sin;
		socklen_t len = sizeof(sin);
		errno = 0;
		r = getsockopt(afd, SOL_IP, STEER_SO_ORIGINAL_DST, &sin, &len);
		ok(r < 0 && errno == ENOENT, "unsteered socket: SO_ORIGINAL_DST fails with ENOENT (%s)",
		   strerror(errno));
		struct steer_orig o;
		len = sizeof(o);
		errno = 0;
		r = getsockopt(afd, SOL_IP, STEER_SO_CALLER, &o, &len);
		ok(r < 0 && errno == ENOENT, "unsteered socket: STEER_SO_CALLER fails with ENOENT");
		close(afd);
	}
	if (cfd >= 0)
		close(cfd);

	/* 3. Steered IPv6: SOL_IPV6/IP6T_SO_ORIGINAL_DST gives the original sockaddr_in6. */
	if (px6 < 0 || dest6 < 0) {
		printf("# no IPv6 loopback: skipping the IPv6 checks\n");
	} else {
		cfd = st_connect(AF_INET6, dport6);
		afd = cfd >= 0 ? st_accept(px6) : -1;
		ok(afd >= 0, "IPv6 connect() steered to the agent listener");
		if (afd >= 0) {
			struct sockaddr_storage ss;
			memset(&ss, 0xaa, sizeof(ss));
			socklen_t len = sizeof(ss);
			r = getsockopt(afd, SOL_IPV6, STEER_SO_ORIGINAL_DST, &ss, &len);
			struct sockaddr_in6 *s6 = (void *)&ss;
			ok(r == 0 && len == sizeof(*s6) && s6->sin6_family == AF_INET6 &&
				   ntohs(s6->sin6_port) == dport6 &&
				   !memcmp(&s6->sin6_addr, &in6addr_loopback, 16) &&
				   s6->sin6_flowinfo == 0 && s6->sin6_scope_id == 0,
			   "IP6T_SO_ORIGINAL_DST is [::1]:%u", dport6);
			struct sockaddr_in sin;
			len = sizeof(sin);
			r = getsockopt(afd, SOL_IP, STEER_SO_ORIGINAL_DST, &sin, &len);
			ok(r < 0 && errno == ENOENT, "IPv4 level on an IPv6 destination: ENOENT");
			close(afd);
		}
		if (cfd >= 0)
			close(cfd);
	}

	st_join_cgroup(cg_root);
	close(px4);
	if (px6 >= 0)
		close(px6);
	for (size_t i = 0; i < n_links; i++)
		bpf_link__destroy(links[i]);
	close(cgfd);
	ok(rmdir(cg_dir) == 0, "test cgroup removed");
	steer__destroy(skel);
	close(dest4);
	if (dest6 >= 0)
		close(dest6);
	return tap_done();
}
