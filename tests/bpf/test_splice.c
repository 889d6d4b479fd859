// SPDX-License-Identifier: Apache-2.0
/*
 * bpf suite: the sockops + sk_msg splice of the agent->app loopback hop. The steering programs
 * (splice on, a small budget) are attached to a fresh cgroup that this process joins, inside
 * a fresh network namespace; the "agent" is a listener in the same cgroup, as the real one is
 * covered through its own cgroup. Checks: bytes in == bytes out, in order, 1 KiB..4 MiB, every
 * agent byte redirected (none on the TCP path); a non-reading app bounds what the kernel holds
 * (EACCES, nothing queued, the stream intact afterwards); the FIN never overtakes redirected
 * bytes (shutdown, close, app half-closed first, read late); either side closing mid-stream;
 * keep-alive round trips; many concurrent connections read through epoll, poll and blocking
 * reads; IPv6 and v4-mapped. Exit 77 when not root or BPF is unavailable.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sock_diag.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "meshmask/steer.h"
#include "sockdiag.h"
#include "splice.h"
#include "steer.skel.h"
#include "socktest.h"
#include "tap.h"

#ifndef SO_MEMINFO
#define SO_MEMINFO 55
#endif

#define BUDGET (128 * 1024)
#define DEST_PORT 8080

static char cg_root[4096], cg_dir[4200];
static struct steer *skel;
static uint16_t proxy_port;
static int lst4 = -1, lst6 = -1;

static int lo_up(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
	int r = fd >= 0 && ioctl(fd, SIOCGIFFLAGS, &ifr) == 0 ? 0 : -1;
	ifr.ifr_flags |= IFF_UP;
	if (r == 0 && ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
		r = -1;
	if (fd >= 0)
		close(fd);
	return r;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Byte i of stream `seed`: not periodic in any power of two, so a reorder shows. */
static uint8_t pat(uint32_t seed, uint64_t i)
{
	uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull ^ ((uint64_t)seed << 32);
	x ^= x >> 29;
	x *= 0xbf58476d1ce4e5b9ull;
	return (uint8_t)(x >> 40);
}

static void fill(uint8_t *buf, size_t len, uint32_t seed, uint64_t off)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = pat(seed, off + i);
}

static uint64_t stat_sum(uint32_t idx)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t vals[ncpu > 0 ? ncpu : 1], sum = 0;
	if (ncpu <= 0 || bpf_map_lookup_elem(bpf_map__fd(skel->maps.splice_stats), &idx, vals))
		return 0;
	for (int i = 0; i < ncpu; i++)
		sum += vals[i];
	return sum;
}

enum dst_kind { DST4, DST6, DST_MAPPED, DST_PLAIN };

/*
 * A connection as an app makes it: to the steered destination (rewritten to the agent
 * listener), or DST_PLAIN straight to the listener (not steered, not spliced). *agent gets the
 * accepted socket, non-blocking as the agent's are. 0 or -1.
 */
static int pair(enum dst_kind kind, int *app, int *agent)
{
	struct sockaddr_storage ss = {0};
	socklen_t len;
	int family = kind == DST4 || kind == DST_PLAIN ? AF_INET : AF_INET6;
	if (family == AF_INET6) {
		struct sockaddr_in6 *a = (void *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(DEST_PORT);
		inet_pton(AF_INET6, kind == DST6 ? "fd00:77::1" : "::ffff:10.77.0.1",
			  &a->sin6_addr);
		len = sizeof(*a);
	} else {
		struct sockaddr_in *a = (void *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(kind == DST_PLAIN ? proxy_port : DEST_PORT);
		inet_pton(AF_INET, kind == DST_PLAIN ? "127.0.0.1" : "10.77.0.1", &a->sin_addr);
		len = sizeof(*a);
	}
	*app = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*app < 0 || connect(*app, (struct sockaddr *)&ss, len) < 0)
		goto fail;
	int lfd = kind == DST6 ? lst6 : lst4;
	struct pollfd p = {.fd = lfd, .events = POLLIN};
	if (poll(&p, 1, 2000) != 1)
		goto fail;
	*agent = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (*agent < 0)
		goto fail;
	int one = 1;
	setsockopt(*agent, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(*app, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return 0;
fail:
	if (*app >= 0)
		close(*app);
	*app = *agent = -1;
	return -1;
}

/* What an agent-side sender saw. */
struct send_stats {
	uint64_t sent; /* bytes the kernel accepted (sum of send() results) */
	uint64_t waits; /* 1 ms waits because the app's unread bytes were at the budget */
	uint64_t queries; /* sock_diag look-ups */
	int max_unread; /* largest unread figure sock_diag reported */
	int err; /* the errno that ended it, 0 = all sent; ETIMEDOUT = blocked max_wait */
};

/*
 * Send len bytes of stream `seed` as the agent does with --splice: non-blocking, never more
 * than BUDGET minus the app's unread bytes (splice_unread), 1 ms retries while at the budget,
 * EAGAIN waits for POLLOUT. Gives up after `max_wait` seconds without progress.
 */
static void agent_send(int fd, uint32_t seed, uint64_t len, size_t chunk, double max_wait,
		       struct send_stats *st)
{
	uint8_t *buf = malloc(chunk);
	double blocked_since = 0;
	size_t credit = 0;
	int diag = sockdiag_open(-1);
	memset(st, 0, sizeof(*st));
	while (buf && diag >= 0 && st->sent < len) {
		size_t n = len - st->sent < chunk ? len - st->sent : chunk;
		if (credit < n) {
			int unread = splice_unread(diag, fd);
			st->queries++;
			if (unread > st->max_unread)
				st->max_unread = unread;
			if (unread >= 0)
				credit = unread < BUDGET ? BUDGET - unread : 0;
			else if (unread == -ENOENT)
				credit = n; /* the app socket is gone: the send reports it */
			else {
				st->err = -unread;
				break;
			}
		}
		if (n > credit)
			n = credit;
		if (!n) {
			st->waits++;
			if (!blocked_since)
				blocked_since = now_s();
			else if (now_s() - blocked_since > max_wait) {
				st->err = ETIMEDOUT;
				break;
			}
			sleep_ms(1);
			continue;
		}
		fill(buf, n, seed, st->sent);
		ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
		if (w > 0) {
			st->sent += w;
			credit -= w;
			blocked_since = 0;
			continue;
		}
		if (w < 0 && errno == EAGAIN) {
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			poll(&p, 1, 100);
			continue;
		}
		st->err = w < 0 ? errno : EIO;
		break;
	}
	if (diag < 0)
		st->err = -diag;
	else
		close(diag);
	free(buf);
}

struct sender {
	pthread_t th;
	int fd;
	uint32_t seed;
	uint64_t len;
	size_t chunk;
	int delay_ms; /* before sending */
	int then; /* 0 nothing, 1 shutdown(SHUT_WR), 2 close */
	struct send_stats st;
};

static void *sender_main(void *arg)
{
	struct sender *s = arg;
	if (s->delay_ms)
		sleep_ms(s->delay_ms);
	agent_send(s->fd, s->seed, s->len, s->chunk, 5.0, &s->st);
	if (s->then == 1)
		shutdown(s->fd, SHUT_WR);
	else if (s->then == 2) {
		close(s->fd);
		s->fd = -1;
	}
	return NULL;
}

static void sender_start(struct sender *s, int fd, uint32_t seed, uint64_t len, size_t chunk,
			 int then)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->seed = seed;
	s->len = len;
	s->chunk = chunk;
	s->then = then;
	pthread_create(&s->th, NULL, sender_main, s);
}

/*
 * Read from a blocking app socket until EOF, `want` bytes, or an error, checking every byte
 * against stream `seed`. Returns bytes that matched in order; *eof set when read() gave 0.
 */
static uint64_t app_read(int fd, uint32_t seed, uint64_t want, bool until_eof, bool *eof, int *err)
{
	uint8_t buf[65536];
	uint64_t got = 0;
	*eof = false;
	*err = 0;
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (until_eof || got < want) {
		size_t cap = sizeof(buf);
		if (!until_eof && want - got < cap)
			cap = want - got;
		ssize_t n = read(fd, buf, cap);
		if (n == 0) {
			*eof = true;
			break;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			*err = errno;
			break;
		}
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != pat(seed, got + i))
				return got + i;
		got += n;
	}
	return got;
}

static int meminfo_rmem(int fd)
{
	uint32_t mi[SK_MEMINFO_VARS] = {0};
	socklen_t len = sizeof(mi);
	if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mi, &len) < 0)
		return -1;
	return (int)mi[SK_MEMINFO_RMEM_ALLOC];
}

/* 1. Transfers of every size arrive whole and in order, all through the splice. */
static void test_sizes(void)
{
	static const uint64_t sizes[] = {1, 1024, 16384, 65536, 200000, 1 << 20, 4 << 20};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		int app, agent;
		if (pair(DST4, &app, &agent) < 0) {
			ok(0, "steered connection for %llu bytes", (unsigned long long)sizes[i]);
			continue;
		}
		uint64_t b0 = stat_sum(STEER_SPLICE_BYTES), p0 = stat_sum(STEER_SPLICE_PASS);
		struct sender s;
		sender_start(&s, agent, 100 + i, sizes[i], 256 * 1024, 1);
		bool eof;
		int err;
		uint64_t got = app_read(app, 100 + i, 0, true, &eof, &err);
		pthread_join(s.th, NULL);
		ok(got == sizes[i] && eof && !err && s.st.sent == sizes[i] && !s.st.err,
		   "%llu bytes arrive in order, then EOF (got %llu, sent %llu, %llu waits, %s)",
		   (unsigned long long)sizes[i], (unsigned long long)got,
		   (unsigned long long)s.st.sent, (unsigned long long)s.st.waits,
		   err ? strerror(err) : "ok");
		uint64_t b1 = stat_sum(STEER_SPLICE_BYTES), p1 = stat_sum(STEER_SPLICE_PASS);
		ok(b1 - b0 == sizes[i] && p1 == p0,
		   "all %llu bytes were redirected, none passed to TCP",
		   (unsigned long long)sizes[i]);
		close(app);
		close(agent);
	}
}

/* What one sk_msg verdict covers: the sendmsg is cut into scatterlist-sized pieces. */
static void test_msg_size(void)
{
	int app, agent;
	if (pair(DST4, &app, &agent) < 0) {
		ok(0, "steered connection");
		return;
	}
	size_t len = 1 << 20;
	uint8_t *buf = malloc(len);
	fill(buf, len, 7, 0);
	/* A budget this big lets one send go through whole with the app not reading yet. */
	uint64_t m0 = stat_sum(STEER_SPLICE_MSGS), b0 = stat_sum(STEER_SPLICE_BYTES);
	ssize_t w = send(agent, buf, 60000, MSG_NOSIGNAL);
	uint64_t m1 = stat_sum(STEER_SPLICE_MSGS), b1 = stat_sum(STEER_SPLICE_BYTES);
	ok(w == 60000 && b1 - b0 == 60000, "a 60000-byte send is redirected whole (%zd)", w);
	printf("# 60000-byte send: %llu sk_msg verdict(s)\n", (unsigned long long)(m1 - m0));
	int rmem = meminfo_rmem(app);
	ok(rmem >= 60000, "the app socket's rmem_alloc holds the unread bytes (%d)", rmem);
	int inq = -1;
	ioctl(app, FIONREAD, &inq);
	is_int(inq, 60000, "FIONREAD counts the spliced bytes");
	struct pollfd pin = {.fd = app, .events = POLLIN};
	ok(poll(&pin, 1, 0) == 1 && (pin.revents & POLLIN), "poll() reports them readable");
	bool eof;
	int err;
	ok(app_read(app, 7, 60000, false, &eof, &err) == 60000, "they read back in order");
	rmem = meminfo_rmem(app);
	ok(rmem == 0, "rmem_alloc back to 0 once read (%d)", rmem);
	/* The kernel itself sets no bound: a 1 MiB send to an idle app is taken whole. */
	m0 = stat_sum(STEER_SPLICE_MSGS);
	w = send(agent, buf, len, MSG_NOSIGNAL);
	m1 = stat_sum(STEER_SPLICE_MSGS);
	rmem = meminfo_rmem(app);
	ok(w == (ssize_t)len && rmem >= (int)len,
	   "kernel alone: 1 MiB redirected to an idle app at once (%zd, rmem_alloc %d)", w, rmem);
	printf("# 1 MiB send: %llu sk_msg verdict(s)\n", (unsigned long long)(m1 - m0));
	int diag = sockdiag_open(-1);
	int unread = splice_unread(diag, agent);
	ok(unread == rmem, "sock_diag from the agent's socket reports the app's unread bytes (%d)",
	   unread);
	ok(app_read(app, 7, len, false, &eof, &err) == len, "they read back in order");
	unread = splice_unread(diag, agent);
	ok(unread == 0, "sock_diag: 0 unread once read (%d)", unread);
	close(diag);
	close(app);
	close(agent);
	free(buf);
}

/* 2. An app that never reads: the agent holds back at the budget, nothing is lost. */
static void test_bound(void)
{
	int app, agent;
	if (pair(DST4, &app, &agent) < 0) {
		ok(0, "steered connection");
		return;
	}
	struct send_stats st;
	agent_send(agent, 9, 64 << 20, 65536, 0.3, &st);
	int rmem = meminfo_rmem(app);
	ok(st.err == ETIMEDOUT && st.waits > 10,
	   "sending to a non-reading app stalls at the budget (%s, %llu waits)", strerror(st.err),
	   (unsigned long long)st.waits);
	ok(st.sent > BUDGET / 2 && st.sent <= BUDGET && rmem <= BUDGET,
	   "%llu bytes held for the app (rmem_alloc %d), budget %d", (unsigned long long)st.sent,
	   rmem, BUDGET);
	bool eof;
	int err;
	uint64_t first = st.sent;
	uint64_t got = app_read(app, 9, first, false, &eof, &err);
	ok(got == first, "the %llu held bytes read back in order", (unsigned long long)first);
	close(app);
	close(agent);

	/* A slow reader and a sender that keeps waiting for it: the stream stays intact. */
	if (pair(DST4, &app, &agent) < 0) {
		ok(0, "steered connection");
		return;
	}
	struct sender s;
	sender_start(&s, agent, 10, 8 << 20, 65536, 2);
	uint8_t buf[4096];
	uint64_t off = 0;
	bool good = true;
	int maxrmem = 0;
	for (;;) {
		int r = meminfo_rmem(app);
		if (r > maxrmem)
			maxrmem = r;
		ssize_t n = read(app, buf, sizeof(buf));
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n && good; i++)
			good = buf[i] == pat(10, off + i);
		off += n;
	}
	pthread_join(s.th, NULL);
	ok(good && off == 8 << 20 && s.st.sent == 8 << 20,
	   "8 MiB to a 4 KiB-at-a-time reader: whole and in order (%llu, %llu waits, %llu "
	   "sock_diag queries)",
	   (unsigned long long)off, (unsigned long long)s.st.waits,
	   (unsigned long long)s.st.queries);
	ok(maxrmem <= BUDGET && s.st.max_unread <= BUDGET,
	   "unread bytes never above the budget (%d, %d)", maxrmem, s.st.max_unread);
	close(app);
}

/*
 * 3. FIN ordering: the agent sends then ends (shutdown or close) at once; the app reads only
 * later and must get every byte before EOF. Also with the app half-closed first (its socket
 * goes to TIME_WAIT when the agent's FIN arrives, with the bytes still unread).
 */
static void test_fin(void)
{
	const char *how[] = {"shutdown", "close", "app half-closed first, agent close",
			     "app half-closed first, agent shutdown, poll()"};
	for (int mode = 0; mode < 4; mode++) {
		int app, agent;
		if (pair(DST4, &app, &agent) < 0) {
			ok(0, "steered connection");
			continue;
		}
		if (mode >= 2) {
			shutdown(app, SHUT_WR);
			char c;
			struct pollfd p = {.fd = agent, .events = POLLIN};
			poll(&p, 1, 1000);
			ok(recv(agent, &c, 1, 0) == 0, "agent sees the app's FIN");
		}
		struct send_stats st;
		agent_send(agent, 20 + mode, 100000, 65536, 1.0, &st);
		if (mode == 0 || mode == 3)
			shutdown(agent, SHUT_WR);
		else
			close(agent);
		sleep_ms(100);
		if (mode == 3) {
			struct pollfd p = {.fd = app, .events = POLLIN};
			ok(poll(&p, 1, 1000) == 1 && (p.revents & POLLIN), "poll() says readable");
		}
		bool eof;
		int err;
		uint64_t got = app_read(app, 20 + mode, 0, true, &eof, &err);
		ok(st.sent == 100000 && got == 100000 && eof,
		   "%s: 100000 bytes then EOF, read late (got %llu, %s)", how[mode],
		   (unsigned long long)got,
		   err	 ? strerror(err)
		   : eof ? "eof"
			 : "no eof");
		close(app);
		if (mode == 0 || mode == 3)
			close(agent);
	}
}

/* 4. Either side closing mid-stream ends the other promptly, never an endless EACCES. */
static void test_close_mid(void)
{
	int app, agent;
	if (pair(DST4, &app, &agent) == 0) {
		struct sender s;
		sender_start(&s, agent, 30, 64 << 20, 65536, 0);
		bool eof;
		int err;
		app_read(app, 30, 300000, false, &eof, &err);
		double t0 = now_s();
		close(app);
		pthread_join(s.th, NULL);
		ok(s.st.err == EPIPE || s.st.err == ECONNRESET,
		   "app closes mid-stream: agent's sending fails with %s after %.0f ms",
		   strerror(s.st.err), (now_s() - t0) * 1000);
		close(agent);
	} else {
		ok(0, "steered connection");
	}
	if (pair(DST4, &app, &agent) == 0) {
		struct send_stats st;
		agent_send(agent, 31, 50000, 65536, 1.0, &st);
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		setsockopt(agent, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(agent);
		bool eof;
		int err;
		double t0 = now_s();
		uint64_t got = app_read(app, 31, 0, true, &eof, &err);
		ok((eof || err == ECONNRESET) && got <= 50000 && now_s() - t0 < 2,
		   "agent resets mid-stream: app read ends (%llu bytes, %s)",
		   (unsigned long long)got, err ? strerror(err) : "eof");
		close(app);
	} else {
		ok(0, "steered connection");
	}
}

/* Request/response round trips; returns the mean microseconds, or -1. */
static double roundtrips(enum dst_kind kind, int n, size_t resp_len, bool nagle, bool *intact)
{
	int app, agent;
	*intact = false;
	if (pair(kind, &app, &agent) < 0)
		return -1;
	int nodelay = !nagle;
	setsockopt(app, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof(nodelay));
	char req[128];
	memset(req, 'q', sizeof(req));
	uint8_t *resp = malloc(resp_len), *in = malloc(resp_len);
	bool good = true;
	double t0 = now_s();
	for (int i = 0; i < n && good; i++) {
		fill(resp, resp_len, 40 + i, 0);
		good = write(app, req, sizeof(req)) == sizeof(req);
		size_t got = 0;
		while (good && got < sizeof(req)) {
			struct pollfd p = {.fd = agent, .events = POLLIN};
			poll(&p, 1, 1000);
			char rq[sizeof(req)];
			ssize_t r = recv(agent, rq, sizeof(req) - got, 0);
			good = r > 0 || (r < 0 && errno == EAGAIN);
			got += r > 0 ? r : 0;
		}
		/* One thread plays both ends: read the app side whenever the agent can't send. */
		size_t off = 0, rd = 0;
		while (good && rd < resp_len) {
			if (off < resp_len) {
				ssize_t w = send(agent, resp + off, resp_len - off, MSG_NOSIGNAL);
				if (w > 0)
					off += w;
				else if (w < 0 && errno != EAGAIN && errno != EACCES)
					good = false;
				if (w > 0 && off < resp_len)
					continue;
			}
			if (off == rd)
				continue;
			ssize_t r = read(app, in + rd, off - rd);
			good = good && r > 0;
			rd += r > 0 ? r : 0;
		}
		good = good && !memcmp(in, resp, resp_len);
	}
	double dt = now_s() - t0;
	close(app);
	close(agent);
	free(resp);
	free(in);
	*intact = good;
	return good ? dt / n * 1e6 : -1;
}

/* 5. Keep-alive: 100 request/response exchanges on one connection; latency vs plain TCP. */
static void test_keepalive(void)
{
	static const size_t sizes[] = {100, 1024, 16384, 65536};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		bool ok1, ok2;
		uint64_t b0 = stat_sum(STEER_SPLICE_BYTES);
		double spliced = roundtrips(DST4, 100, sizes[i], false, &ok1);
		uint64_t b1 = stat_sum(STEER_SPLICE_BYTES);
		ok(ok1 && b1 - b0 == 100 * sizes[i],
		   "100 keep-alive exchanges, %zu-byte responses, all spliced", sizes[i]);
		double plain = roundtrips(DST_PLAIN, 100, sizes[i], false, &ok2);
		ok(ok2 && stat_sum(STEER_SPLICE_BYTES) == b1,
		   "same on an unsteered connection, nothing spliced");
		/* Warm: a second run of each, reported. */
		spliced = roundtrips(DST4, 2000, sizes[i], false, &ok1);
		plain = roundtrips(DST_PLAIN, 2000, sizes[i], false, &ok2);
		printf("# round trip, %zu-byte response: spliced %.1f us, plain TCP %.1f us\n",
		       sizes[i], spliced, plain);
	}
	/* An app that leaves Nagle on: its next request must not wait for a delayed ACK. */
	bool ok1, ok2;
	double spliced = roundtrips(DST4, 200, 1024, true, &ok1);
	double plain = roundtrips(DST_PLAIN, 200, 1024, true, &ok2);
	printf("# round trip with Nagle on in the app: spliced %.1f us, plain TCP %.1f us\n",
	       spliced, plain);
	ok(ok1 && ok2 && spliced < 1000, "Nagle on in the app: no delayed-ACK stall (%.1f us)",
	   spliced);
}

/* 6. Many connections at once, read through epoll by one thread. */
static void test_concurrent(void)
{
	enum { N = 64 };
	const uint64_t len = 512 * 1024;
	int app[N], agent[N], made = 0;
	struct sender *s = calloc(N, sizeof(*s));
	uint64_t got[N] = {0};
	bool good[N], eof[N];
	int ep = epoll_create1(EPOLL_CLOEXEC);
	for (int i = 0; i < N; i++) {
		if (pair(i % 3 == 2 ? DST_MAPPED : DST4, &app[i], &agent[i]) < 0)
			break;
		fcntl(app[i], F_SETFL, O_NONBLOCK);
		struct epoll_event e = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = i};
		epoll_ctl(ep, EPOLL_CTL_ADD, app[i], &e);
		good[i] = true;
		eof[i] = false;
		made++;
	}
	ok(made == N, "%d concurrent steered connections (IPv4 and v4-mapped)", made);
	uint64_t b0 = stat_sum(STEER_SPLICE_BYTES);
	for (int i = 0; i < made; i++)
		sender_start(&s[i], agent[i], 1000 + i, len, 65536, 1);
	int open = made;
	double t0 = now_s();
	uint8_t buf[16384];
	while (open && now_s() - t0 < 30) {
		struct epoll_event ev[16];
		int n = epoll_wait(ep, ev, 16, 1000);
		for (int k = 0; k < n; k++) {
			int i = ev[k].data.u32;
			ssize_t r = read(app[i], buf, sizeof(buf));
			if (r > 0) {
				for (ssize_t j = 0; j < r && good[i]; j++)
					good[i] = buf[j] == pat(1000 + i, got[i] + j);
				got[i] += r;
			} else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
				eof[i] = r == 0;
				epoll_ctl(ep, EPOLL_CTL_DEL, app[i], NULL);
				open--;
			}
		}
	}
	int whole = 0;
	uint64_t waits = 0;
	for (int i = 0; i < made; i++) {
		pthread_join(s[i].th, NULL);
		whole += good[i] && eof[i] && got[i] == len && s[i].st.sent == len;
		waits += s[i].st.waits;
		close(app[i]);
		close(agent[i]);
	}
	ok(whole == made,
	   "%d/%d connections got 512 KiB whole and in order via epoll (%.2f s, "
	   "%llu budget waits)",
	   whole, made, now_s() - t0, (unsigned long long)waits);
	ok(stat_sum(STEER_SPLICE_BYTES) - b0 == len * made, "every byte of them spliced");
	close(ep);
	free(s);
}

/* 7. IPv6 and v4-mapped hops are spliced too; an unsteered connection is not. */
static void test_families(void)
{
	const enum dst_kind kinds[] = {DST6, DST_MAPPED, DST_PLAIN};
	const char *names[] = {"IPv6", "v4-mapped", "unsteered"};
	for (int k = 0; k < 3; k++) {
		if (kinds[k] == DST6 && lst6 < 0) {
			printf("# no IPv6 loopback: skipping IPv6\n");
			continue;
		}
		int app, agent;
		uint64_t a0 = stat_sum(STEER_SPLICE_AGENTS), b0 = stat_sum(STEER_SPLICE_BYTES);
		if (pair(kinds[k], &app, &agent) < 0) {
			ok(0, "%s connection", names[k]);
			continue;
		}
		struct sender s;
		sender_start(&s, agent, 50 + k, 300000, 65536, 1);
		bool eof;
		int err;
		uint64_t got = app_read(app, 50 + k, 0, true, &eof, &err);
		pthread_join(s.th, NULL);
		bool spliced = stat_sum(STEER_SPLICE_AGENTS) - a0 == 1 &&
			       stat_sum(STEER_SPLICE_BYTES) - b0 == 300000;
		bool none = stat_sum(STEER_SPLICE_BYTES) == b0;
		ok(got == 300000 && eof && (kinds[k] == DST_PLAIN ? none : spliced),
		   "%s: 300000 bytes in order, %s", names[k],
		   kinds[k] == DST_PLAIN ? "not spliced" : "spliced");
		close(app);
		close(agent);
	}
}

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
	if (unshare(CLONE_NEWNET) < 0 || lo_up() < 0) {
		printf("1..0 # SKIP cannot make a network namespace: %s\n", strerror(errno));
		return 77;
	}
	libbpf_set_print(NULL);
	skel = steer__open();
	if (!skel) {
		printf("1..0 # SKIP cannot open BPF skeleton: %s\n", strerror(errno));
		return 77;
	}
	int probe = st_listen(AF_INET, 0);
	proxy_port = st_port(probe);
	close(probe);
	skel->rodata->proxy_port = proxy_port;
	skel->rodata->splice_enabled = 1;
	int r = steer__load(skel);
	if (r == -EPERM) {
		printf("1..0 # SKIP BPF not permitted\n");
		return 77;
	}
	ok(r == 0, "steer.bpf.o with the splice loads (%s)", strerror(-r));
	if (r)
		return tap_done();

	snprintf(cg_dir, sizeof(cg_dir), "%s/mmsplicetest-%d", cg_root, getpid());
	ok(mkdir(cg_dir, 0755) == 0, "test cgroup created");
	int cgfd = open(cg_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct bpf_link *links[] = {
		bpf_program__attach_cgroup(skel->progs.mm_connect4, cgfd),
		bpf_program__attach_cgroup(skel->progs.mm_connect6, cgfd),
		bpf_program__attach_cgroup(skel->progs.mm_sockops, cgfd),
	};
	const size_t n_links = sizeof(links) / sizeof(links[0]);
	int attached = 1;
	for (size_t i = 0; i < n_links; i++)
		attached &= links[i] != NULL;
	ok(attached, "connect4/6 and sockops attach to the test cgroup");
	int msg_fd = bpf_program__fd(skel->progs.mm_splice_msg);
	int agents_fd = bpf_map__fd(skel->maps.splice_agents);
	r = bpf_prog_attach(msg_fd, agents_fd, BPF_SK_MSG_VERDICT, 0);
	ok(r == 0, "sk_msg attaches to splice_agents (%s)", r ? strerror(errno) : "ok");

	struct stat st;
	stat(cg_dir, &st);
	uint64_t cgid = st.st_ino;
	struct steer_caller c = {.policy_mask = 1};
	bpf_map_update_elem(bpf_map__fd(skel->maps.steer_callers), &cgid, &c, BPF_ANY);
	struct steer_dest_key k;
	struct steer_dest_val dv = {0};
	for (int fam = 0; fam < 2; fam++) {
		memset(&k, 0, sizeof(k));
		k.prefixlen = 64;
		k.port = htons(DEST_PORT);
		k.family = fam ? AF_INET6 : AF_INET;
		bpf_map_update_elem(bpf_map__fd(skel->maps.steer_dests), &k, &dv, BPF_ANY);
	}

	ok(st_join_cgroup(cg_dir) == 0, "test process joined the test cgroup");
	lst4 = st_listen(AF_INET, proxy_port);
	lst6 = st_listen(AF_INET6, proxy_port);
	ok(lst4 >= 0, "agent listener opened inside the cgroup and netns");

	if (lst4 >= 0) {
		test_sizes();
		test_msg_size();
		test_bound();
		test_fin();
		test_close_mid();
		test_keepalive();
		test_concurrent();
		test_families();
		ok(stat_sum(STEER_SPLICE_APPS) == stat_sum(STEER_SPLICE_AGENTS),
		   "every spliced app socket got its agent socket (%llu)",
		   (unsigned long long)stat_sum(STEER_SPLICE_APPS));
	}

	st_join_cgroup(cg_root);
	if (lst4 >= 0)
		close(lst4);
	if (lst6 >= 0)
		close(lst6);
	for (size_t i = 0; i < n_links; i++)
		bpf_link__destroy(links[i]);
	close(cgfd);
	/* Sockets closing drain out of the maps; give TIME_WAIT peers no say in rmdir. */
	ok(rmdir(cg_dir) == 0, "test cgroup removed");
	bpf_prog_detach2(msg_fd, agents_fd, BPF_SK_MSG_VERDICT);
	steer__destroy(skel);
	return tap_done();
}
