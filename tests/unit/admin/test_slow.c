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
	double cut_at; /* seconds after start, 0 = not cut */
};

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

	/* Header bytes, then body bytes, one every 200 ms: never complete within the deadline. */
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
	send(slow[1].fd, slow[1].bytes, slow[1].sent, MSG_NOSIGNAL);

	int keep = dial();
	int served = 0, tries = 0, keep_ok = 0, keep_tries = 0;
	double t0 = now_s(), next_keep = t0;
	while (now_s() - t0 < DEADLINE_S + 3) {
		for (size_t i = 0; i < n_slow; i++) {
			struct slow *s = &slow[i];
			if (s->cut_at)
				continue;
			if (closed_by_server(s->fd)) {
				s->cut_at = now_s() - t0;
				continue;
			}
			if (s->bytes[s->sent] &&
			    send(s->fd, s->bytes + s->sent, 1, MSG_NOSIGNAL) == 1)
				s->sent++;
		}
		/* Others are served meanwhile. */
		int c = dial();
		tries++;
		served += get(c, "/healthz", true) == 200;
		close(c);
		/* One keep-alive connection, a request every 700 ms: each within the deadline. */
		if (now_s() >= next_keep && now_s() - t0 < DEADLINE_S + 1.5) {
			keep_tries++;
			keep_ok += get(keep, "/readyz", false) == 200;
			next_keep += 0.7;
		}
		usleep(200 * 1000);
	}
	for (size_t i = 0; i < n_slow; i++) {
		ok(slow[i].cut_at >= DEADLINE_S - 0.3 && slow[i].cut_at <= DEADLINE_S + 2.0,
		   "%s: cut after the deadline (%.2f s, deadline %d s)", slow[i].what,
		   slow[i].cut_at, DEADLINE_S);
		ok(slow[i].bytes[slow[i].sent] != 0, "%s: the request never completed",
		   slow[i].what);
		close(slow[i].fd);
	}
	ok(tries >= 10 && served == tries, "others served meanwhile (%d of %d)", served, tries);
	ok(keep_tries >= 4 && keep_ok == keep_tries,
	   "a keep-alive connection outliving the deadline is not cut (%d of %d answered)", keep_ok,
	   keep_tries);
	/* Idle longer than the deadline: that is the idle timeout's business, not a slow request. */
	usleep(1000 * 1000);
	ok(!closed_by_server(keep), "the keep-alive connection, idle %.1f s, is still open",
	   now_s() - t0 - 2.8);
	is_int(get(keep, "/healthz", false), 200, "and still serves");
	close(keep);

	struct mm_buf m = {0};
	metrics_render(&m);
	ok(m.len && memmem(m.data, m.len, "\nmeshmask_admin_request_timeouts_total 2\n", 41),
	   "both cuts counted");
	mm_buf_free(&m);

	admin_stop(a);
	store_close(st);
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", root);
	return tap_done();
}
