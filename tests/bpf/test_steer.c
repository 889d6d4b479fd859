// SPDX-License-Identifier: Apache-2.0
/*
 * bpf suite: load (and so verify) the steering skeleton, check the map layouts against
 * include/meshmask/steer.h, then attach it to a fresh test cgroup and make real connect()s
 * from inside it: a flagged destination lands on the "agent" listener with its original
 * destination published for the accepted socket, getpeername shows the real peer, an unflagged
 * one is untouched, failureMode open/closed behave with a stale heartbeat, and close() cleans
 * the per-connection entries. Exit 77 when not root or BPF is unavailable.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
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

static uint64_t stat_sum(int fd, uint32_t idx)
{
	int n = libbpf_num_possible_cpus();
	uint64_t *v = calloc(n, sizeof(*v)), sum = 0;
	if (v && bpf_map_lookup_elem(fd, &idx, v) == 0)
		for (int i = 0; i < n; i++)
			sum += v[i];
	free(v);
	return sum;
}

static void heartbeat(int fd, uint64_t ns)
{
	uint32_t zero = 0;
	struct steer_state st = {.heartbeat_ns = ns};
	bpf_map_update_elem(fd, &zero, &st, BPF_ANY);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

int main(void)
{
	if (geteuid() != 0) {
		printf("1..0 # SKIP needs root\n");
		return 77;
	}
	libbpf_set_print(NULL);
	struct steer *skel = steer__open();
	if (!skel) {
		printf("1..0 # SKIP cannot open BPF skeleton: %s\n", strerror(errno));
		return 77;
	}
	skel->rodata->proxy_port = 0; /* set below, once the "agent" listener has a port */
	int proxy_fd = st_listen(AF_INET, 0), dest_fd = st_listen(AF_INET, 0),
	    other_fd = st_listen(AF_INET, 0);
	uint16_t proxy_port = st_port(proxy_fd), dest_port = st_port(dest_fd),
		 other_port = st_port(other_fd);
	skel->rodata->proxy_port = proxy_port;
	int r = steer__load(skel);
	if (r == -EPERM) {
		printf("1..0 # SKIP BPF not permitted\n");
		return 77;
	}
	ok(r == 0, "steer.bpf.o loads and passes the verifier (%s)", strerror(-r));
	if (r)
		return tap_done();

	struct {
		struct bpf_map *m;
		size_t key, value;
	} layouts[] = {
		{skel->maps.steer_callers, 8, sizeof(struct steer_caller)},
		{skel->maps.steer_dests, sizeof(struct steer_dest_key),
		 sizeof(struct steer_dest_val)},
		{skel->maps.steer_by_cookie, 8, sizeof(struct steer_orig)},
		{skel->maps.steer_by_port, sizeof(struct steer_conn_key),
		 sizeof(struct steer_orig)},
		{skel->maps.steer_listeners, 8, sizeof(struct steer_listener)},
		{skel->maps.steer_state, 4, sizeof(struct steer_state)},
		{skel->maps.steer_stats, 4, 8},
	};
	for (size_t i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++)
		ok(bpf_map__key_size(layouts[i].m) == layouts[i].key &&
			   bpf_map__value_size(layouts[i].m) == layouts[i].value,
		   "map %s layout matches steer.h", bpf_map__name(layouts[i].m));
	is_int(bpf_map__max_entries(skel->maps.steer_stats), STEER_STATS_SIZE, "stats size");

	if (st_cgroup_root(cg_root, sizeof(cg_root)) < 0) {
		printf("# no cgroup v2 mount: skipping the attach checks\n");
		return tap_done();
	}
	snprintf(cg_dir, sizeof(cg_dir), "%s/mmbpftest-%d", cg_root, getpid());
	ok(mkdir(cg_dir, 0755) == 0, "test cgroup created");
	int cgfd = open(cg_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct bpf_link *links[] = {
		bpf_program__attach_cgroup(skel->progs.mm_connect4, cgfd),
		bpf_program__attach_cgroup(skel->progs.mm_connect6, cgfd),
		bpf_program__attach_cgroup(skel->progs.mm_getpeername4, cgfd),
		bpf_program__attach_cgroup(skel->progs.mm_getpeername6, cgfd),
		bpf_program__attach_cgroup(skel->progs.mm_sockops, cgfd),
	};
	int attached = 1;
	for (size_t i = 0; i < 5; i++)
		attached &= links[i] != NULL;
	ok(attached, "all five programs attach to the test cgroup");

	struct stat st;
	stat(cg_dir, &st);
	uint64_t cgid = st.st_ino;
	int callers = bpf_map__fd(skel->maps.steer_callers);
	int dests = bpf_map__fd(skel->maps.steer_dests);
	int by_port = bpf_map__fd(skel->maps.steer_by_port);
	int by_cookie = bpf_map__fd(skel->maps.steer_by_cookie);
	int listeners = bpf_map__fd(skel->maps.steer_listeners);
	int state = bpf_map__fd(skel->maps.steer_state);
	int stats = bpf_map__fd(skel->maps.steer_stats);

	/* Policy 3 covers the caller cgroup and 127.0.0.0/8:dest_port. */
	struct steer_caller c = {.policy_mask = 1ull << 3};
	bpf_map_update_elem(callers, &cgid, &c, BPF_ANY);
	struct steer_dest_key k;
	memset(&k, 0, sizeof(k));
	k.prefixlen = 64 + 8;
	k.policy = 3;
	k.port = htons(dest_port);
	k.family = AF_INET;
	k.addr[0] = 127;
	struct steer_dest_val dv = {0};
	ok(bpf_map_update_elem(dests, &k, &dv, BPF_ANY) == 0, "destination entry accepted");
	uint64_t ns_cookie = 0;
	socklen_t cl = sizeof(ns_cookie);
	getsockopt(proxy_fd, SOL_SOCKET, SO_NETNS_COOKIE, &ns_cookie, &cl);
	struct steer_listener lv = {.owner = 1};
	bpf_map_update_elem(listeners, &ns_cookie, &lv, BPF_ANY);
	heartbeat(state, mono_ns());

	ok(st_join_cgroup(cg_dir) == 0, "test process joined the test cgroup");

	/* 1. Flagged destination: lands on the proxy listener. */
	int cfd = st_connect(AF_INET, dest_port);
	int afd = cfd >= 0 ? st_accept(proxy_fd) : -1;
	ok(afd >= 0, "flagged connect() is redirected to the agent listener");
	struct sockaddr_in peer;
	socklen_t plen = sizeof(peer);
	if (afd >= 0) {
		getpeername(afd, (struct sockaddr *)&peer, &plen);
		struct steer_conn_key ck;
		memset(&ck, 0, sizeof(ck));
		ck.netns_cookie = ns_cookie;
		ck.port = ntohs(peer.sin_port);
		ck.family = AF_INET;
		struct steer_orig o;
		r = bpf_map_lookup_elem(by_port, &ck, &o);
		ok(r == 0 && o.family == AF_INET && ntohs(o.port) == dest_port &&
			   o.addr[0] == 127 && o.addr[3] == 1 && o.cgroup_id == cgid &&
			   o.policy == 3,
		   "original destination published under (netns cookie, app port)");
		struct sockaddr_in seen;
		socklen_t slen = sizeof(seen);
		getpeername(cfd, (struct sockaddr *)&seen, &slen);
		is_int(ntohs(seen.sin_port), dest_port, "getpeername shows the real destination");
		is_int(stat_sum(stats, 3 * STEER_STAT__COUNT + STEER_STAT_STEERED), 1,
		       "steered counter");
		close(afd);
		close(cfd);
		int gone = 0;
		for (int i = 0; i < 50 && !gone; i++) {
			gone = bpf_map_lookup_elem(by_port, &ck, &o) < 0;
			if (!gone)
				usleep(20000);
		}
		ok(gone, "close() removes the per-connection entry");
	}

	/* 2. Unflagged destination: untouched. */
	cfd = st_connect(AF_INET, other_port);
	afd = cfd >= 0 ? st_accept(other_fd) : -1;
	ok(afd >= 0, "unflagged destination is not redirected");
	if (afd >= 0)
		close(afd);
	if (cfd >= 0)
		close(cfd);

	/* 3. Agent down (stale heartbeat), failureMode closed: still redirected (refused). */
	heartbeat(state, mono_ns() - 10 * 1000000000ull);
	cfd = st_connect(AF_INET, dest_port);
	afd = cfd >= 0 ? st_accept(proxy_fd) : -1;
	ok(afd >= 0, "closed mode, agent down: still steered, never leaks to the destination");
	is_int(stat_sum(stats, 3 * STEER_STAT__COUNT + STEER_STAT_REFUSED), 1,
	       "refused-while-down counter");
	if (afd >= 0)
		close(afd);
	if (cfd >= 0)
		close(cfd);

	/* 4. failureMode open, agent down: passes to the real destination, counted. */
	dv.flags = STEER_DEST_FAIL_OPEN;
	bpf_map_update_elem(dests, &k, &dv, BPF_ANY);
	cfd = st_connect(AF_INET, dest_port);
	afd = cfd >= 0 ? st_accept(dest_fd) : -1;
	ok(afd >= 0, "open mode, agent down: passes to the real destination");
	is_int(stat_sum(stats, 3 * STEER_STAT__COUNT + STEER_STAT_PASSED), 1,
	       "passed-while-down counter");
	if (afd >= 0)
		close(afd);
	if (cfd >= 0)
		close(cfd);

	/* 5. Open mode, agent alive but no listener in this netns: passes too. */
	heartbeat(state, mono_ns());
	bpf_map_delete_elem(listeners, &ns_cookie);
	cfd = st_connect(AF_INET, dest_port);
	afd = cfd >= 0 ? st_accept(dest_fd) : -1;
	ok(afd >= 0, "open mode, no listener in the caller's netns: passes");
	if (afd >= 0)
		close(afd);
	if (cfd >= 0)
		close(cfd);
	(void)by_cookie;

	st_join_cgroup(cg_root);
	for (size_t i = 0; i < 5; i++)
		bpf_link__destroy(links[i]);
	close(cgfd);
	ok(rmdir(cg_dir) == 0, "test cgroup removed");
	steer__destroy(skel);
	return tap_done();
}
