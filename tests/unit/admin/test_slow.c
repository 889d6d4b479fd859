/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The whole-request deadline of the admin server over real loopback sockets: a client that
 * trickles header bytes, and one that trickles its body, are cut after --admin-request-timeout
 * (counted in meshmask_admin_request_timeouts_total) while other clients are served meanwhile;
 * a keep-alive connection whose requests together last longer than the deadline, and which
 * then idles longer than the deadline, is not cut (idling is the idle timeout's business).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "metrics.h"
#include "tap.h"

#define DEADLINE_S 2

static uint16_t port;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dial(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Send one GET on fd and read its answer (Content-Length framed); the status or -1. */
static int get(int fd, const char *path, bool close_after)
{
	char req[256];
	int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n", path,
			 close_after ? "Connection: close\r\n" : "");
	if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
		return -1;
	char buf[8192];
	size_t len = 0;
	double until = now_s() + 3;
	while (len < sizeof(buf) - 1 && now_s() < until) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t r = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);
		if (r <= 0)
			break;
		len += (size_t)r;
		buf[len] = 0;
		char *eoh = strstr(buf, "\r\n\r\n");
		const char *cl = strcasestr(buf, "\r\nContent-Length:");
		if (eoh && cl && (size_t)(eoh + 4 - buf) + strtoul(cl + 17, NULL, 10) <= len)
			break;
	}
	buf[len] = 0;
	int status = -1;
	if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
		return -1;
	return status;
}

/* Whether the server has closed fd (EOF or reset), without waiting. */
static bool closed_by_server(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, 0) <= 0)
		return false;
	char c;
	ssize_t r = recv(fd, &c, 1, MSG_DONTWAIT);
	return r == 0 || (r < 0 && errno != EAGAIN);
}

struct slow {
	const char *what;
	const char *bytes;
	size_t sent;
	int fd;
	double start; /* when its first byte went out */
	double cut_after; /* seconds from its first byte to the cut seen, 0 = not cut */
};

/*
 * Conditions are waited for, never timed: a loaded machine makes everything late, so only
 * "not before" is asserted, and every wait has a deadline far past what it should take.
 */
#define WAIT_S 20 /* 8 times what the loop takes; the test's meson timeout is 60 s */

/* The exposition's meshmask_admin_request_timeouts_total, or -1. */
static long timeouts_total(void)
{
	struct mm_buf m = {0};
	metrics_render(&m);
	const char *k = "\nmeshmask_admin_request_timeouts_total ";
	const char *p = m.len ? memmem(m.data, m.len, k, strlen(k)) : NULL;
	long v = p ? strtol(p + strlen(k), NULL, 10) : -1;
	mm_buf_free(&m);
	return v;
}

int main(void)
{
	char root[] = "/tmp/meshmask-slow-XXXXXX";
	if (!mkdtemp(root))
		return 1;
	char pol[300], state[300];
	snprintf(pol, sizeof(pol), "%s/pol", root);
	snprintf(state, sizeof(state), "%s/state", root);
	mkdir(pol, 0755);
	struct store_config sc = {.policies_dir = pol, .state_dir = state};
	struct admin_config cfg = {.addr = "127.0.0.1:0", .request_timeout = DEADLINE_S};
	struct store *st = NULL;
	if (store_open(&st, &sc) < 0)
		return 1;
	struct admin *a = NULL;
	is_int(admin_start(&a, &cfg, st, NULL, NULL), 0, "admin server started");
	port = admin_port(a);
	ok(port != 0, "bound to a port chosen by the kernel (%u)", port);

	int fd = dial();
	is_int(get(fd, "/healthz", true), 200, "a normal request is answered");
	close(fd);

	/*
	 * Header bytes, then body bytes, one every 200 ms: neither request can ever complete (no
	 * blank line after the headers; a body shorter than its Content-Length).
	 */
	struct slow slow[] = {
		{"trickled headers", "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: "
				     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
		{"trickled body", "POST /v1/policies:validate HTTP/1.1\r\nHost: t\r\n"
				  "Content-Type: application/json\r\nContent-Length: 400\r\n\r\n"
				  "{\"apiVersion\": \"meshmask.io/v1alpha1\", \"kind\": "
				  "\"MaskingPolicy\", \"metadata\": {\"name\": \"slow\"}}"},
	};
	const size_t n_slow = sizeof(slow) / sizeof(slow[0]);
	for (size_t i = 0; i < n_slow; i++)
		slow[i].fd = dial();
	/* The body client sends its headers at once: only the body is slow. */
	const char *body = strstr(slow[1].bytes, "\r\n\r\n") + 4;
	slow[1].sent = (size_t)(body - slow[1].bytes);
	slow[1].start = now_s();
	send(slow[1].fd, slow[1].bytes, slow[1].sent, MSG_NOSIGNAL);

	/*
	 * Until both slow clients are cut, and one keep-alive connection has made requests (each
	 * well within the deadline) for longer than the deadline in all. Others are served
	 * meanwhile.
	 */
	int keep = dial();
	int served = 0, tries = 0, served_during = 0, keep_ok = 0, keep_tries = 0;
	double t0 = now_s(), next_keep = t0, keep_last = t0;
	bool all_cut = false, keep_done = false;
	while ((!all_cut || !keep_done) && now_s() - t0 < WAIT_S) {
		all_cut = true;
		for (size_t i = 0; i < n_slow; i++) {
			struct slow *s = &slow[i];
			if (s->cut_after)
				continue;
			if (s->start && closed_by_server(s->fd)) {
				s->cut_after = now_s() - s->start;
				continue;
			}
			all_cut = false;
			if (!s->start)
				s->start = now_s();
			if (s->bytes[s->sent] &&
			    send(s->fd, s->bytes + s->sent, 1, MSG_NOSIGNAL) == 1)
				s->sent++;
		}
		int c = dial();
		tries++;
		int status = get(c, "/healthz", true);
		served += status == 200;
		served_during += status == 200 && !all_cut;
		close(c);
		if (!keep_done && now_s() >= next_keep) {
			keep_tries++;
			keep_ok += get(keep, "/readyz", false) == 200;
			keep_last = now_s();
			next_keep += 0.7;
			keep_done = keep_last - t0 > DEADLINE_S + 1 && keep_tries >= 4;
		}
		usleep(200 * 1000);
	}
	for (size_t i = 0; i < n_slow; i++) {
		ok(slow[i].cut_after >= DEADLINE_S,
		   "%s: cut, not before the deadline (%.2f s after its first byte, deadline %d s)",
		   slow[i].what, slow[i].cut_after, DEADLINE_S);
		ok(slow[i].bytes[slow[i].sent] != 0, "%s: the request never completed",
		   slow[i].what);
		close(slow[i].fd);
	}
	ok(served_during >= 3 && served == tries,
	   "others served meanwhile (%d of %d, %d while a slow client held on)", served, tries,
	   served_during);
	ok(keep_done && keep_ok == keep_tries,
	   "a keep-alive connection outliving the deadline is not cut (%d of %d answered over "
	   "%.1f s)",
	   keep_ok, keep_tries, keep_last - t0);
	/*
	 * Idle longer than the deadline (and a sweep) after its last answer: that is the idle
	 * timeout's business, not a slow request.
	 */
	while (now_s() < keep_last + DEADLINE_S + 1.0)
		usleep(50 * 1000);
	ok(!closed_by_server(keep), "the keep-alive connection, idle %.1f s, is still open",
	   now_s() - keep_last);
	is_int(get(keep, "/healthz", false), 200, "and still serves");
	close(keep);

	/* Counted once the sweeper has shut the sockets down: the client may see that first. */
	long cuts = -1;
	for (double until = now_s() + 10; now_s() < until; usleep(50 * 1000))
		if ((cuts = timeouts_total()) >= 2)
			break;
	is_int(cuts, 2, "both cuts counted");

	admin_stop(a);
	store_close(st);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", root);
	return tap_done();
}
