// SPDX-License-Identifier: Apache-2.0
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>

#include "audit.h"
#include "buf.h"
#include "h2.h"
#include "http.h"
#include "identity.h"
#include "log.h"
#include "metrics.h"
#include "netns.h"
#include "caps.h"
#include "proxy.h"
#include "sockdiag.h"
#include "splice.h"

#define READ_CHUNK (64 * 1024)
/* Pass-through pipes: capacity asked for, and bytes moved per wake-up (fairness). */
#define PIPE_SIZE (256 * 1024)
#define PIPE_CHUNK (256 * 1024)
/*
 * A pipe (two fds) is opened for a side only when at least this much can pass through
 * (or a tunnel / close-delimited body): for less, one copy costs no more than the splices.
 */
#define PIPE_MIN (64 * 1024)
/* A connection quiet this long frees the masking stream kept for its next message. */
#define PROXY_TRIM_SECS 2
/*
 * A side's send queue that grew past this (a held masked body of up to hold_body) is freed
 * once it drains, instead of keeping its capacity for the connection's life.
 */
#define OUT_KEEP_MAX (256 * 1024)
/*
 * While all send queues together are over the queue budget (proxy_config.queue_budget), each
 * side reads while the other's queue holds less than this (instead of max_buffer), reads at
 * most this much per wake-up, and frees a larger queue once it drains.
 */
#define QUEUE_FLOOR (16 * 1024)

struct pns;

struct lsock {
	struct ep_handler h;
	struct pns *ns;
	int fd;
};

/* One covered netns: its listeners and the fd used to create upstream sockets in it. */
struct pns {
	struct proxy *px;
	uint64_t ino, cookie;
	int ns_fd;
	struct lsock l4, l6;
	struct pns *next;
};

struct conn;

struct side {
	struct ep_handler h;
	struct conn *c;
	int fd;
	struct mm_buf out; /* bytes to write to this side */
	size_t out_off;
	uint32_t events; /* registered with epoll */
	bool rd_eof; /* this side sent FIN */
	bool shut_pending; /* shut our write half once out drains */
	bool wr_shut;
	bool splice_wait; /* --splice: the app's unread bytes are at the budget; retry on a timer */
	size_t credit; /* --splice: bytes we may still send the app before asking sock_diag */
	/*
	 * Pass-through bytes for this side that no rule covers, moved from the other socket by
	 * splice(2) and not yet sent: they never enter the agent's memory. Bytes enter the pipe
	 * only while `out` is empty and the pipe drains before `out`, so order is kept.
	 */
	int pipe[2];
	size_t pipe_len;
	size_t pipe_cap;
	bool pipe_full; /* the last splice into the pipe found no room: wait for a drain */
	size_t charged; /* out.cap as counted in the queue budget */
};

struct conn {
	struct proxy *px;
	struct side cli, srv;
	struct http_session *hs;
	struct h2_conn *h2; /* the client started with the HTTP/2 preface (hs is then NULL) */
	char pre[H2_PREFACE_LEN]; /* the client's first bytes, while they may be that preface */
	size_t pre_n;
	bool decided; /* HTTP/2 or not is known */
	struct mm_buf
		early; /* the server's first bytes while undecided: an HTTP/2 SETTINGS frame */
	struct steer_orig orig;
	char dest[INET6_ADDRSTRLEN + 8];
	char policy[128];
	bool connecting;
	bool dead;
	bool reset; /* a side was reset: end the other one the same way once it drained */
	bool closing; /* the framing ended the exchange: drain one side, drop its input, close */
	bool no_pipe; /* pass-through by splice(2) failed here once: copy instead */
	bool capped; /* counted in the caps: given back when freed */
	bool over_cap; /* over a cap under failureMode open: relayed without a policy */
	int ns_fd, diag_fd; /* --splice: the pod's netns and a sock_diag socket in it, or -1 */
	time_t last;
	time_t head_since; /* a request head is due since (accept, or its first byte); 0 = none */
	struct timespec msg_start[2];
	struct conn *prev, *next;
};

struct proxy {
	struct proxy_config cfg;
	struct pns *nss;
	struct conn *conns;
	size_t active;
	uint64_t accepted;
	bool stopped;
	bool sockopt_warned; /* the fallback to the map read was logged */
	struct conn *graveyard; /* freed after the current event */
	struct ep_handler splice_h; /* --splice: retries app sides held at the budget */
	int splice_timer;
	bool splice_armed, splice_warned;
};

static time_t now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static void set_events(struct proxy *px, struct side *s, uint32_t ev)
{
	if (s->fd < 0 || s->events == ev)
		return;
	struct epoll_event e = {.events = ev, .data.ptr = &s->h};
	if (epoll_ctl(px->cfg.epfd, EPOLL_CTL_MOD, s->fd, &e) == 0)
		s->events = ev;
}

static size_t pending(const struct side *s)
{
	return s->out.len - s->out_off;
}

/* The queue budget's count follows s's queue capacity (the memory it holds). */
static void charge(struct side *s)
{
	struct http_budget *b = s->c->px->cfg.queue_budget;
	if (!b || s->charged == s->out.cap)
		return;
	if (s->out.cap > s->charged)
		__atomic_add_fetch(&b->used, s->out.cap - s->charged, __ATOMIC_RELAXED);
	else
		__atomic_sub_fetch(&b->used, s->charged - s->out.cap, __ATOMIC_RELAXED);
	s->charged = s->out.cap;
}

/* All send queues together are over the queue budget: every connection keeps to the floor. */
static bool queues_tight(const struct proxy *px)
{
	const struct http_budget *b = px->cfg.queue_budget;
	return b && b->max && __atomic_load_n(&b->used, __ATOMIC_RELAXED) > b->max;
}

/* Bytes queued for a side before reading its peer pauses. */
static size_t queue_limit(const struct proxy *px)
{
	return queues_tight(px) ? QUEUE_FLOOR : px->cfg.max_buffer;
}

/* Everything still to be delivered to s: its queue and its pass-through pipe. */
static size_t queued(const struct side *s)
{
	return pending(s) + s->pipe_len;
}

/* Close a side's pass-through pipe (what is still in it is dropped). */
static void pipe_close(struct side *s)
{
	if (s->pipe[0] < 0)
		return;
	close(s->pipe[0]);
	close(s->pipe[1]);
	s->pipe[0] = s->pipe[1] = -1;
	s->pipe_len = 0;
	s->pipe_full = false;
}

static struct side *other(struct side *s)
{
	return s == &s->c->cli ? &s->c->srv : &s->c->cli;
}

/* Close one side's socket and mark it done both ways (it leaves epoll first). */
static void side_close(struct side *s)
{
	if (s->events != UINT32_MAX)
		epoll_ctl(s->c->px->cfg.epfd, EPOLL_CTL_DEL, s->fd, NULL);
	close(s->fd);
	s->fd = -1;
	s->events = UINT32_MAX;
	s->rd_eof = s->wr_shut = true;
}

static void conn_close(struct conn *c, bool reset)
{
	if (c->dead)
		return;
	struct proxy *px = c->px;
	c->dead = true;
	struct side *sides[2] = {&c->cli, &c->srv};
	for (int i = 0; i < 2; i++) {
		struct side *s = sides[i];
		if (s->fd < 0)
			continue;
		if (reset) {
			/* An abortive close tells the app at once that the stream is broken. */
			struct linger lg = {.l_onoff = 1, .l_linger = 0};
			setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		side_close(s);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		px->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	__atomic_sub_fetch(&px->active, 1, __ATOMIC_RELAXED);
	c->next = px->graveyard;
	px->graveyard = c;
}

static void conn_free(struct conn *c)
{
	if (c->capped)
		caps_put(c->px->cfg.caps, c->orig.cgroup_id);
	if (c->ns_fd >= 0)
		close(c->ns_fd);
	if (c->diag_fd >= 0)
		close(c->diag_fd);
	if (c->hs)
		http_session_free(c->hs);
	h2_conn_free(c->h2);
	mm_buf_free(&c->early);
	pipe_close(&c->cli);
	pipe_close(&c->srv);
	mm_buf_free(&c->cli.out);
	mm_buf_free(&c->srv.out);
	charge(&c->cli);
	charge(&c->srv);
	free(c);
}

static void bury(struct proxy *px)
{
	while (px->graveyard) {
		struct conn *c = px->graveyard;
		px->graveyard = c->next;
		conn_free(c);
	}
}

static int sink_append(void *ctx, const char *data, size_t len)
{
	struct side *s = ctx;
	if (s->out_off && s->out_off == s->out.len) {
		s->out.len = 0;
		s->out_off = 0;
	}
	return mm_buf_append(&s->out, data, len);
}

/*
 * --splice: how much of `want` may go to the app side s now. Spliced bytes wait in the app
 * socket's receive queue, limited by nothing: keep what it has not read under max_buffer, as
 * read by sock_diag when the credit runs out. 0 = wait (s->splice_wait, retried on a timer).
 */
static size_t splice_credit(struct side *s, size_t want)
{
	struct conn *c = s->c;
	struct proxy *px = c->px;
	if (s->credit < want) {
		if (c->diag_fd < 0 && c->ns_fd >= 0)
			c->diag_fd = sockdiag_open(c->ns_fd);
		int unread = c->diag_fd < 0 ? c->diag_fd : splice_unread(c->diag_fd, s->fd);
		if (unread >= 0) {
			s->credit = (size_t)unread < px->cfg.max_buffer
					    ? px->cfg.max_buffer - unread
					    : 0;
		} else {
			/* App gone (the send says how), or no answer: never hold a connection up. */
			if (unread != -ENOENT && !px->splice_warned) {
				px->splice_warned = true;
				agent_log(AGENT_LOG_WARN,
					  "splice: sock_diag: %s: sending unbounded",
					  strerror(-unread));
			}
			s->credit = want;
		}
	}
	s->splice_wait = s->credit == 0;
	return want < s->credit ? want : s->credit;
}

/* Write what is queued for s; 0, or -errno when the side is broken. */
static int flush(struct side *s)
{
	if (s->fd < 0)
		return 0;
	while (s->pipe_len) {
		ssize_t n = splice(s->pipe[0], NULL, s->fd, NULL, s->pipe_len,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		s->pipe_len -= (size_t)n;
		s->pipe_full = false;
	}
	bool spliced = s == &s->c->cli && s->c->px->cfg.splice;
	while (pending(s)) {
		size_t len = spliced ? splice_credit(s, pending(s)) : pending(s);
		if (!len)
			break;
		ssize_t n = send(s->fd, s->out.data + s->out_off, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			return -errno;
		}
		s->out_off += n;
		if (spliced)
			s->credit -= (size_t)n;
	}
	if (!pending(s)) {
		s->out.len = 0;
		s->out_off = 0;
		if (s->out.cap > OUT_KEEP_MAX ||
		    (s->out.cap > QUEUE_FLOOR && queues_tight(s->c->px)))
			mm_buf_free(&s->out);
	} else if (s->out_off > s->out.len / 2) {
		memmove(s->out.data, s->out.data + s->out_off, pending(s));
		s->out.len -= s->out_off;
		s->out_off = 0;
	}
	if (!queued(s) && s->shut_pending && !s->wr_shut) {
		shutdown(s->fd, SHUT_WR);
		s->wr_shut = true;
	}
	return 0;
}

static void update(struct conn *c)
{
	if (c->dead)
		return;
	struct proxy *px = c->px;
	struct side *sides[2] = {&c->cli, &c->srv};
	for (int i = 0; i < 2; i++) {
		struct side *s = sides[i], *o = other(s);
		uint32_t ev = 0;
		bool conn_pending = s == &c->srv && c->connecting;
		if (s->fd < 0)
			continue;
		if (s->rd_eof && s->wr_shut) {
			/* Done both ways: only EPOLLHUP would still fire. */
			if (s->events != UINT32_MAX &&
			    epoll_ctl(px->cfg.epfd, EPOLL_CTL_DEL, s->fd, NULL) == 0)
				s->events = UINT32_MAX;
			continue;
		}
		if (!s->rd_eof && !conn_pending &&
		    (c->closing || (o->fd >= 0 && queued(o) < queue_limit(px) && !o->pipe_full)))
			ev |= EPOLLIN | EPOLLRDHUP;
		if ((pending(s) && !s->splice_wait) || s->pipe_len || conn_pending)
			ev |= EPOLLOUT;
		if (s->splice_wait && pending(s) && !px->splice_armed) {
			struct itimerspec its = {.it_value = {.tv_nsec = 1000000}};
			px->splice_armed = timerfd_settime(px->splice_timer, 0, &its, NULL) == 0;
		}
		set_events(px, s, ev);
	}
	charge(&c->cli);
	charge(&c->srv);
	if (c->cli.rd_eof && c->srv.rd_eof && !queued(&c->cli) && !queued(&c->srv))
		conn_close(c, c->reset);
	else if (c->closing ? c->cli.fd < 0 && c->srv.fd < 0
			    : (c->cli.fd < 0 && !queued(&c->srv)) ||
				      (c->srv.fd < 0 && !queued(&c->cli)))
		conn_close(c, c->reset);
}

/*
 * Side s is gone (reset, or closed both ways under us): close it, deliver what is queued for
 * the other side, then end that one too, abortively if s was reset.
 */
static void side_gone(struct side *s, bool reset)
{
	struct conn *c = s->c;
	struct side *o = other(s);
	agent_log(AGENT_LOG_DEBUG, "connection to %s: %s side %s", c->dest,
		  s == &c->cli ? "app" : "server", reset ? "reset" : "closed");
	side_close(s);
	c->reset |= reset;
	if (flush(o) < 0) {
		conn_close(c, true);
		return;
	}
	update(c);
}

static uint32_t dir_of(const struct side *s)
{
	return s == &s->c->cli ? POLICY_DIR_REQUEST : POLICY_DIR_RESPONSE;
}

static size_t room(const struct side *s)
{
	size_t max = queue_limit(s->c->px), q = queued(s);
	return q < max ? max - q : 0;
}

/*
 * HTTP/2: what the sessions have to send goes to the sides with room; once both sessions are
 * over, the connection closes gracefully.
 */
static int h2_pump(struct conn *c)
{
	int r = h2_conn_pump(c->h2, room(&c->cli), room(&c->srv));
	if (!r && h2_conn_done(c->h2))
		c->cli.shut_pending = c->srv.shut_pending = true;
	return r;
}

static struct policy *hook_policy_for(void *ctx, uint32_t direction);
static void hook_message_done(void *ctx, const struct http_message_info *info);

/*
 * The connection is HTTP/2 from here on: the client sent the preface (settings NULL), or the
 * upstream took an h2c upgrade (settings: the request's decoded HTTP2-Settings; head: it was
 * a HEAD). The HTTP/1.1 session goes.
 */
static int start_h2(struct conn *c, const uint8_t *settings, size_t len, bool head)
{
	struct http_hooks hooks = {
		.policy_for = hook_policy_for, .message_done = hook_message_done, .ctx = c};
	struct h2_io io = {.to_client = sink_append,
			   .client = &c->cli,
			   .to_server = sink_append,
			   .server = &c->srv};
	struct h2_limits lim = {.max_grpc_message = c->px->cfg.grpc_max_message};
	c->h2 = settings ? h2_conn_upgrade(&hooks, &io, &lim, settings, len, head)
			 : h2_conn_new(&hooks, &io, &lim);
	if (!c->h2)
		return errno ? -errno : -ENOMEM;
	http_session_free(c->hs);
	c->hs = NULL;
	agent_log(AGENT_LOG_DEBUG, "connection to %s: HTTP/2%s", c->dest,
		  settings ? " by h2c upgrade" : "");
	return 0;
}

/*
 * The upstream took an h2c upgrade: the connection is HTTP/2 from the bytes after its 101 on
 * (the 101 itself already went to the app through the HTTP/1.1 session).
 */
static int maybe_h2c(struct conn *c)
{
	const uint8_t *settings;
	size_t len;
	bool head;
	struct mm_buf rest = {0};
	if (!http_session_h2c(c->hs, &settings, &len, &head, &rest))
		return 0;
	int r = start_h2(c, settings, len, head);
	if (!r && rest.len)
		r = h2_conn_feed(c->h2, POLICY_DIR_RESPONSE, rest.data, rest.len);
	if (!r)
		r = h2_pump(c);
	mm_buf_free(&rest);
	return r;
}

/*
 * Whether b[0, n) can be the start of an HTTP/2 server's first frame (SETTINGS on stream 0):
 * an h2c server may speak before the client, and must not make the connection HTTP/1.1.
 */
static bool h2_server_start(const unsigned char *b, size_t n)
{
	static const unsigned char want[6] = {0x04, 0x00, 0, 0, 0, 0}; /* type, flags, stream */
	for (size_t i = 3; i < n && i < 9; i++)
		if (b[i] != want[i - 3])
			return false;
	return n < 3 || ((size_t)b[0] << 16 | (size_t)b[1] << 8 | b[2]) % 6 == 0;
}

static int feed_early(struct side *s);

/* Bytes read from s: through the HTTP session into the other side's queue. */
static int feed(struct side *s, const char *data, size_t len)
{
	struct conn *c = s->c;
	struct side *o = other(s);
	uint32_t dir = dir_of(s);
	int r;
	if (!c->decided && dir == POLICY_DIR_RESPONSE && c->early.len + len <= 16384) {
		/* Held (bounded) until the client's first bytes say whether this is HTTP/2. */
		if ((r = mm_buf_append(&c->early, data, len)))
			return r;
		if (h2_server_start((const unsigned char *)c->early.data, c->early.len))
			return 0;
		c->decided = true; /* a server that speaks first: not HTTP/2 prior knowledge */
		return feed_early(s);
	}
	if (!c->decided && dir == POLICY_DIR_REQUEST) {
		/* Hold the client's first bytes while they may be the HTTP/2 preface. */
		size_t k = H2_PREFACE_LEN - c->pre_n < len ? H2_PREFACE_LEN - c->pre_n : len;
		if (!memcmp(data, H2_PREFACE + c->pre_n, k)) {
			memcpy(c->pre + c->pre_n, data, k);
			c->pre_n += k;
			if (c->pre_n < H2_PREFACE_LEN)
				return 0;
			c->decided = true;
			if ((r = start_h2(c, NULL, 0, false)) ||
			    (r = h2_conn_feed(c->h2, dir, c->pre, c->pre_n)) ||
			    (r = h2_conn_feed(c->h2, dir, data + k, len - k)) ||
			    (r = feed_early(&c->srv)))
				return r;
			return h2_pump(c);
		}
		c->decided = true;
		if (c->pre_n &&
		    (r = http_session_feed(c->hs, dir, c->pre, c->pre_n, sink_append, o)))
			return r;
		if ((r = feed_early(&c->srv)))
			return r;
	}
	c->decided = true;
	if (c->h2) {
		if ((r = h2_conn_feed(c->h2, dir, data, len)))
			return r;
		return h2_pump(c);
	}
	if (!c->hs)
		return sink_append(o, data, len);
	struct timespec *t0 = &c->msg_start[dir == POLICY_DIR_RESPONSE];
	if (!t0->tv_sec && !t0->tv_nsec)
		clock_gettime(CLOCK_MONOTONIC, t0);
	r = http_session_feed(c->hs, dir, data, len, sink_append, o);
	if (!r && dir == POLICY_DIR_RESPONSE)
		r = maybe_h2c(c);
	if (!r && dir == POLICY_DIR_REQUEST) /* the head deadline runs from a head's first byte */
		c->head_since = !http_session_in_head(c->hs) ? 0
				: c->head_since		     ? c->head_since
							     : now_s();
	return r;
}

/* The server's bytes held while undecided, fed now that the connection's protocol is known. */
static int feed_early(struct side *srv)
{
	struct conn *c = srv->c;
	struct mm_buf b = c->early;
	c->early = (struct mm_buf){0};
	int r = b.len ? feed(srv, b.data, b.len) : 0;
	mm_buf_free(&b);
	return r;
}

/*
 * How many of the bytes s sends next may go to the other side by splice(2), 0 when they must
 * be read and fed: nothing is queued before them, the session would forward them untouched,
 * there are enough of them to be worth a pipe, and the receiver is not an app side under the
 * sk_msg splice (whose sends are budgeted through sock_diag).
 */
static uint64_t pipe_allowed(struct side *s)
{
	struct conn *c = s->c;
	struct side *o = other(s);
	if (!c->px->cfg.zero_copy || c->no_pipe || c->closing || !c->hs || o->fd < 0 ||
	    pending(o) || (o == &c->cli && c->px->cfg.splice))
		return 0;
	uint64_t pt = http_session_passthrough(c->hs, dir_of(s));
	return pt >= PIPE_MIN || o->pipe[0] >= 0 ? pt : 0;
}

/* Close a side's pass-through pipe if it is empty (an idle connection keeps no spare fds). */
static void pipe_trim(struct side *s)
{
	if (!s->pipe_len)
		pipe_close(s);
}

/*
 * Move up to `want` bytes from s into the other side's pipe. As recv: bytes moved, 0 at EOF,
 * -1 with errno (EAGAIN also when the pipe is full; then o->pipe_full waits for a drain).
 */
static ssize_t pipe_in(struct side *s, uint64_t want)
{
	struct conn *c = s->c;
	struct side *o = other(s);
	if (o->pipe[0] < 0) {
		if (pipe2(o->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
			o->pipe[0] = o->pipe[1] = -1;
			goto unusable;
		}
		fcntl(o->pipe[1], F_SETPIPE_SZ, PIPE_SIZE);
		int cap = fcntl(o->pipe[1], F_GETPIPE_SZ);
		o->pipe_cap = cap > 0 ? (size_t)cap : 65536;
	}
	size_t room = o->pipe_len < o->pipe_cap ? o->pipe_cap - o->pipe_len : 0;
	size_t n = want < room ? (size_t)want : room;
	if (n > PIPE_CHUNK)
		n = PIPE_CHUNK;
	ssize_t k = n ? splice(s->fd, NULL, o->pipe[1], NULL, n, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
		      : (errno = EAGAIN, -1);
	if (k > 0) {
		o->pipe_len += (size_t)k;
		metrics_passthrough(c->policy, dir_of(s), (uint64_t)k);
	} else if (k < 0 && errno == EAGAIN && o->pipe_len) {
		o->pipe_full = true; /* or s has nothing: either way a drain re-arms the read */
	} else if (k < 0 && (errno == EINVAL || errno == ENOSYS || errno == ENOMEM)) {
		goto unusable;
	}
	return k;
unusable:
	/* splice(2) refused here: copy from now on (level-triggered, so s is read again). */
	if (!c->no_pipe)
		agent_log(AGENT_LOG_DEBUG, "connection to %s: splice pass-through off: %s", c->dest,
			  strerror(errno));
	c->no_pipe = true;
	errno = EAGAIN;
	return -1;
}

/*
 * The framing ended the exchange after the message s just sent (its body was delimited by
 * closing the connection): s is done and closed; the receiver gets FIN once its queue drains,
 * and what it still sends is read and dropped until its own FIN, so closing never becomes a
 * reset that could destroy the end of the response in its receive queue.
 */
static void end_exchange(struct side *s)
{
	struct conn *c = s->c;
	struct side *o = other(s);
	agent_log(AGENT_LOG_DEBUG, "connection to %s: message delimited by close, closing %s side",
		  c->dest, o == &c->cli ? "app" : "server");
	c->closing = true;
	side_close(s);
	/* Whatever was queued for s (a pipelined request) can no longer be answered. */
	s->out.len = 0;
	s->out_off = 0;
	s->pipe_len = 0;
	o->shut_pending = true;
}

/*
 * The HTTP layer cut the stream (-EPROTO, counted there) or the connection broke. When the
 * session answered the client itself (an HTTP error in place of what it refused), the server
 * side is dropped abortively, the answer is delivered and the client closed gracefully, its
 * further bytes read and dropped until its FIN (as end_exchange does); otherwise both sides
 * are reset.
 */
static void cut(struct conn *c, int err)
{
	struct side *srv = &c->srv;
	agent_log(err == -EPROTO ? AGENT_LOG_DEBUG : AGENT_LOG_WARN, "connection to %s: %s%s",
		  c->dest, strerror(-err),
		  c->hs && http_session_replied(c->hs) ? " (answered in HTTP)" : "");
	if (err != -EPROTO || !c->hs || !http_session_replied(c->hs)) {
		conn_close(c, true);
		return;
	}
	if (srv->fd >= 0) {
		struct linger lg = {.l_onoff = 1, .l_linger = 0};
		setsockopt(srv->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		side_close(srv);
	}
	c->connecting = false;
	srv->out.len = 0;
	srv->out_off = 0;
	pipe_close(srv);
	c->closing = true;
	c->cli.shut_pending = true;
	if (flush(&c->cli) < 0) {
		conn_close(c, true);
		return;
	}
	update(c);
}

/*
 * The upstream refused or could not be reached: the client is answered 502 in HTTP where it
 * can still be (no response under way), then closed gracefully; else both sides are reset.
 */
static void upstream_failed(struct conn *c, int err)
{
	agent_log(AGENT_LOG_DEBUG, "upstream %s: %s", c->dest, strerror(err));
	metrics_flow(c->policy, METRICS_FLOW_REFUSED, MM_REASON_UPSTREAM_ERROR);
	c->connecting = false;
	if (c->hs && !c->h2 && http_session_upstream_failed(c->hs, sink_append, &c->cli) == 0)
		cut(c, -EPROTO);
	else
		conn_close(c, true);
}

static void on_side(struct ep_handler *h, uint32_t ev)
{
	struct side *s = (struct side *)h;
	struct conn *c = s->c;
	struct side *o = other(s);

	if (c->dead || s->fd < 0)
		return; /* closed by an earlier event of the same batch */
	if (s == &c->srv && c->connecting) {
		if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
			return;
		int err = 0;
		socklen_t len = sizeof(err);
		getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err || (ev & EPOLLERR)) {
			upstream_failed(c, err ? err : ECONNREFUSED);
			return;
		}
		c->connecting = false;
		ev &= ~(uint32_t)EPOLLIN;
	}
	c->last = now_s();
	if (ev & EPOLLERR) {
		side_gone(s, true);
		return;
	}
	if ((ev & EPOLLHUP) && s->rd_eof && !s->wr_shut) {
		side_gone(s, false);
		return;
	}
	if (!s->rd_eof && (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))) {
		char buf[READ_CHUNK];
		/*
		 * One chunk per wake-up (level-triggered) keeps connections fair; smaller while a
		 * compressed body is masked, whose decoding multiplies the work per byte.
		 */
		uint64_t pt = pipe_allowed(s);
		size_t want = c->hs && !c->h2 ? http_session_read_hint(c->hs, dir_of(s), sizeof(buf))
					     : sizeof(buf);
		if (want > QUEUE_FLOOR && queues_tight(c->px))
			want = QUEUE_FLOOR;
		ssize_t n = pt ? pipe_in(s, pt) : recv(s->fd, buf, want, 0);
		if (n > 0 && c->closing) {
			/* After the last message: dropped, only the peer's FIN is awaited. */
		} else if (n > 0 && pt) {
			int r = http_session_skip(c->hs, dir_of(s), (uint64_t)n, sink_append, o);
			if (r < 0) {
				cut(c, r);
				return;
			}
		} else if (n > 0) {
			int r = feed(s, buf, (size_t)n);
			if (r < 0) {
				cut(c, r);
				return;
			}
			if (http_session_must_close(c->hs, dir_of(s)))
				end_exchange(s);
		} else if (n == 0 && c->closing) {
			s->rd_eof = true;
		} else if (n == 0 && c->h2) {
			s->rd_eof = true;
			h2_conn_eof(c->h2, dir_of(s));
			if (h2_pump(c) < 0) {
				cut(c, -EPROTO);
				return;
			}
			o->shut_pending = true;
		} else if (n == 0) {
			s->rd_eof = true;
			int r = http_session_eof(c->hs, dir_of(s), sink_append, o);
			if (r < 0) {
				cut(c, r);
				return;
			}
			o->shut_pending = true;
		} else if (errno != EAGAIN && errno != EINTR) {
			side_gone(s, true);
			return;
		}
	}
	if (c->h2 && !c->dead && h2_pump(c) < 0) {
		cut(c, -EPROTO);
		return;
	}
	if (!c->connecting && flush(o) < 0) {
		side_gone(o, true);
		return;
	}
	if ((ev & EPOLLOUT) && flush(s) < 0) {
		side_gone(s, true);
		return;
	}
	update(c);
}

/* The session's own answer to the client (a refused request): queued for the app side. */
static int hook_reply(void *ctx, const char *data, size_t len)
{
	struct conn *c = ctx;
	return sink_append(&c->cli, data, len);
}

static struct policy *hook_policy_for(void *ctx, uint32_t direction)
{
	struct conn *c = ctx;
	const struct proxy_resolver *r = &c->px->cfg.resolver;
	if (c->over_cap)
		return NULL; /* failureMode open past a cap: relayed as if the agent were down */
	return r->policy_for ? r->policy_for(r->ctx, &c->orig, direction) : NULL;
}

static void hook_message_done(void *ctx, const struct http_message_info *info)
{
	struct conn *c = ctx;
	struct timespec *t0 = &c->msg_start[info->direction == POLICY_DIR_RESPONSE];
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = 0;
	if (t0->tv_sec || t0->tv_nsec)
		secs = (double)(t1.tv_sec - t0->tv_sec) + (t1.tv_nsec - t0->tv_nsec) / 1e9;
	*t0 = (struct timespec){0};
	metrics_message(info, secs);
	if (!info->policy)
		return;
	const struct proxy_resolver *r = &c->px->cfg.resolver;
	char pod[320], path[PATH_MAX];
	struct audit_who who = {
		/* "namespace/name" of the caller's pod when known, else its cgroup path. */
		.caller = identity_caller_name(
			r->caller_name ? r->caller_name(r->ctx, c->orig.cgroup_id, path, sizeof(path))
				       : NULL,
			pod, sizeof(pod)),
		.cgroup_id = c->orig.cgroup_id,
		.dest = c->dest,
	};
	audit_message(&who, info);
}

static void format_dest(const struct steer_orig *o, char *out, size_t size)
{
	char a[INET6_ADDRSTRLEN] = "?";
	inet_ntop(o->family == AF_INET6 ? AF_INET6 : AF_INET, o->addr, a, sizeof(a));
	if (o->family == AF_INET6)
		snprintf(out, size, "[%s]:%u", a, ntohs(o->port));
	else
		snprintf(out, size, "%s:%u", a, ntohs(o->port));
}

static int add_side(struct proxy *px, struct side *s, uint32_t ev)
{
	struct epoll_event e = {.events = ev, .data.ptr = &s->h};
	if (epoll_ctl(px->cfg.epfd, EPOLL_CTL_ADD, s->fd, &e) < 0)
		return -errno;
	s->events = ev;
	return 0;
}

/*
 * The original destination and caller of an accepted socket. First as an iptables REDIRECT
 * user would ask: cgroup/getsockopt (attached to our cgroup by the loader) answers
 * STEER_SO_CALLER; the kernel alone answers ENOPROTOOPT, so then read steer_by_port ourselves.
 * 0 (*via_sockopt says which), or -ENOENT when the connection was not steered.
 */
static int orig_dst(struct lsock *ls, int fd, struct steer_orig *orig, bool *via_sockopt)
{
	struct proxy *px = ls->ns->px;
	socklen_t olen = sizeof(*orig);
	*via_sockopt = false;
	if (getsockopt(fd, STEER_SOL_IP, STEER_SO_CALLER, orig, &olen) == 0 &&
	    olen == sizeof(*orig)) {
		*via_sockopt = true;
		return 0;
	}
	if (errno == ENOENT)
		return -ENOENT; /* the program ran and knows no such connection */
	int err = errno;
	if (!px->sockopt_warned) {
		px->sockopt_warned = true;
		agent_log(AGENT_LOG_WARN,
			  "SO_ORIGINAL_DST not answered on accepted sockets (%s): reading the "
			  "steer_by_port map instead",
			  strerror(err));
	}

	struct sockaddr_storage peer;
	socklen_t plen = sizeof(peer);
	struct steer_conn_key key = {0};
	key.netns_cookie = ls->ns->cookie;
	if (getpeername(fd, (struct sockaddr *)&peer, &plen) < 0)
		return -errno;
	if (peer.ss_family == AF_INET6) {
		key.family = AF_INET6;
		key.port = ntohs(((struct sockaddr_in6 *)&peer)->sin6_port);
		/* Like sockops, a v4-mapped peer is keyed as IPv4. */
		if (IN6_IS_ADDR_V4MAPPED(&((struct sockaddr_in6 *)&peer)->sin6_addr))
			key.family = AF_INET;
	} else {
		key.family = AF_INET;
		key.port = ntohs(((struct sockaddr_in *)&peer)->sin_port);
	}
	if (bpf_map_lookup_elem(px->cfg.by_port_fd, &key, orig) < 0)
		return -ENOENT;
	return 0;
}

/*
 * A new connection past a cap (the node's or its pod's), counted per pod. failureMode closed:
 * answered 503 (x-meshmask-reason: limit) and closed, -1. Open: relayed without a policy, as
 * when the agent is down (0).
 */
static int over_cap(struct conn *c, enum caps_verdict cv, bool open_mode, int fd)
{
	const struct proxy_resolver *r = &c->px->cfg.resolver;
	char pod[320], path[PATH_MAX];
	const char *caller = identity_caller_name(
		r->caller_name ? r->caller_name(r->ctx, c->orig.cgroup_id, path, sizeof(path)) : NULL,
		pod, sizeof(pod));
	metrics_connection_cap(c->policy, caller ? caller : "", cv == CAPS_POD ? "pod" : "node",
			       open_mode);
	metrics_flow(c->policy, open_mode ? METRICS_FLOW_PASSED : METRICS_FLOW_REFUSED,
		     MM_REASON_LIMIT);
	if (open_mode) {
		c->over_cap = true;
		return 0;
	}
	const char *body = cv == CAPS_POD ? "meshmask: too many connections from this pod\n"
					  : "meshmask: too many connections on this node\n";
	char m[256];
	int k = snprintf(m, sizeof(m),
			 "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\nx-meshmask-reason: limit\r\n"
			 "\r\n%s",
			 strlen(body), body);
	ssize_t n = send(fd, m, (size_t)k, MSG_DONTWAIT | MSG_NOSIGNAL);
	(void)n;
	shutdown(fd, SHUT_WR);
	close(fd);
	return -1;
}

static void accept_one(struct lsock *ls, int fd)
{
	struct proxy *px = ls->ns->px;
	struct steer_orig orig;
	bool via_sockopt;
	if (orig_dst(ls, fd, &orig, &via_sockopt) < 0) {
		/* The app closed before we accepted, or something dialled the port directly. */
		agent_log(AGENT_LOG_DEBUG, "accepted connection without a recorded destination");
		metrics_flow("", METRICS_FLOW_REFUSED, MM_REASON_NO_ORIG_DST);
		goto refuse;
	}

	struct conn *c = calloc(1, sizeof(*c));
	if (!c)
		goto refuse;
	c->px = px;
	c->orig = orig;
	c->cli = (struct side){.h.fn = on_side, .c = c, .fd = fd, .pipe = {-1, -1}};
	c->srv = (struct side){.h.fn = on_side, .c = c, .fd = -1, .pipe = {-1, -1}};
	c->ns_fd = px->cfg.splice ? fcntl(ls->ns->ns_fd, F_DUPFD_CLOEXEC, 0) : -1;
	c->diag_fd = -1;
	c->last = c->head_since = now_s();
	format_dest(&orig, c->dest, sizeof(c->dest));
	struct policy *p = hook_policy_for(c, ~0u);
	snprintf(c->policy, sizeof(c->policy), "%s", p ? p->name : "");
	bool open_mode = p && p->failure_mode == POLICY_FAIL_OPEN;
	if (p)
		policy_unref(p);
	enum caps_verdict cv = px->cfg.caps ? caps_take(px->cfg.caps, orig.cgroup_id) : CAPS_OK;
	c->capped = cv == CAPS_OK && px->cfg.caps;
	if (cv != CAPS_OK && over_cap(c, cv, open_mode, fd) < 0) {
		free(c);
		return;
	}

	struct http_hooks hooks = {.policy_for = hook_policy_for,
				   .message_done = hook_message_done,
				   .reply = hook_reply,
				   .ctx = c};
	c->hs = http_session_new(&hooks, &px->cfg.http);
	if (!c->hs) {
		metrics_flow(c->policy, METRICS_FLOW_REFUSED, MM_REASON_INTERNAL);
		free(c);
		goto refuse;
	}

	int family = orig.family == AF_INET6 ? AF_INET6 : AF_INET;
	int sfd = netns_socket(ls->ns->ns_fd, family, SOCK_STREAM | SOCK_NONBLOCK);
	if (sfd < 0) {
		metrics_flow(c->policy, METRICS_FLOW_REFUSED, MM_REASON_INTERNAL);
		conn_free(c);
		goto refuse;
	}
	c->srv.fd = sfd;
	int one = 1;
	setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	int r;
	if (family == AF_INET6) {
		struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = orig.port};
		memcpy(&a.sin6_addr, orig.addr, 16);
		r = connect(sfd, (struct sockaddr *)&a, sizeof(a));
	} else {
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = orig.port};
		memcpy(&a.sin_addr, orig.addr, 4);
		r = connect(sfd, (struct sockaddr *)&a, sizeof(a));
	}
	int connect_err = r < 0 && errno != EINPROGRESS ? errno : 0;
	c->connecting = r < 0 && !connect_err;
	if (add_side(px, &c->cli, EPOLLIN | EPOLLRDHUP) < 0 ||
	    add_side(px, &c->srv, c->connecting ? EPOLLOUT : EPOLLIN | EPOLLRDHUP) < 0) {
		epoll_ctl(px->cfg.epfd, EPOLL_CTL_DEL, fd, NULL);
		close(sfd);
		conn_free(c);
		goto refuse;
	}
	c->next = px->conns;
	if (px->conns)
		px->conns->prev = c;
	px->conns = c;
	__atomic_add_fetch(&px->active, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&px->accepted, 1, __ATOMIC_RELAXED);
	metrics_flow(c->policy, METRICS_FLOW_STEERED, MM_REASON_NONE);
	agent_log(AGENT_LOG_DEBUG, "steered connection to %s (policy %s, destination from %s)",
		  c->dest, c->policy, via_sockopt ? "SO_ORIGINAL_DST" : "steer_by_port map");
	if (connect_err) /* refused at once (a local port nobody listens on) */
		upstream_failed(c, connect_err);
	return;
refuse : {
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}
}

static void on_listener(struct ep_handler *h, uint32_t ev)
{
	struct lsock *ls = (struct lsock *)h;
	for (int i = 0; i < 64; i++) {
		int fd = accept4(ls->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				agent_log(AGENT_LOG_WARN, "accept: %s", strerror(errno));
			break;
		}
		accept_one(ls, fd);
	}
}

void proxy_reap(struct proxy *px)
{
	bury(px);
}

/* --splice: app sides held at the budget get another try (1 ms after the first was held). */
static void on_splice_timer(struct ep_handler *h, uint32_t ev)
{
	struct proxy *px = (struct proxy *)((char *)h - offsetof(struct proxy, splice_h));
	uint64_t ticks;
	(void)ev;
	if (read(px->splice_timer, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		return;
	px->splice_armed = false;
	for (struct conn *c = px->conns, *next; c; c = next) {
		next = c->next;
		if (!c->cli.splice_wait)
			continue;
		c->cli.splice_wait = false;
		if (flush(&c->cli) < 0)
			side_gone(&c->cli, true);
		else
			update(c);
	}
}

struct proxy *proxy_new(const struct proxy_config *cfg)
{
	struct proxy *px = calloc(1, sizeof(*px));
	if (!px)
		return NULL;
	px->cfg = *cfg;
	if (!px->cfg.max_buffer)
		px->cfg.max_buffer = 256 * 1024;
	if (!px->cfg.idle_secs)
		px->cfg.idle_secs = 300;
	if (!px->cfg.head_secs)
		px->cfg.head_secs = 10;
	px->splice_timer = -1;
	if (px->cfg.splice) {
		px->splice_h.fn = on_splice_timer;
		px->splice_timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		struct epoll_event e = {.events = EPOLLIN, .data.ptr = &px->splice_h};
		if (px->splice_timer < 0 ||
		    epoll_ctl(px->cfg.epfd, EPOLL_CTL_ADD, px->splice_timer, &e) < 0) {
			int err = errno;
			if (px->splice_timer >= 0)
				close(px->splice_timer);
			free(px);
			errno = err;
			return NULL;
		}
	}
	return px;
}

/* Watch the listening socket fd (taken over; -1 = none) for ns. 0 or -errno (fd closed). */
static int lsock_adopt(struct pns *ns, struct lsock *ls, int fd)
{
	ls->h.fn = on_listener;
	ls->ns = ns;
	ls->fd = fd;
	if (fd < 0)
		return 0;
	struct epoll_event e = {.events = EPOLLIN, .data.ptr = &ls->h};
	if (epoll_ctl(ns->px->cfg.epfd, EPOLL_CTL_ADD, ls->fd, &e) < 0) {
		int r = -errno;
		close(ls->fd);
		ls->fd = -1;
		return r;
	}
	return 0;
}

static void lsock_close(struct proxy *px, struct lsock *ls)
{
	if (ls->fd < 0)
		return;
	epoll_ctl(px->cfg.epfd, EPOLL_CTL_DEL, ls->fd, NULL);
	close(ls->fd);
	ls->fd = -1;
}

int proxy_adopt_netns(struct proxy *px, const struct proxy_listeners *l)
{
	struct pns *ns = calloc(1, sizeof(*ns));
	int r = -ENOMEM;
	if (!ns)
		goto fail;
	ns->px = px;
	ns->ino = l->ino;
	ns->cookie = l->cookie;
	ns->ns_fd = l->ns_fd;
	ns->l4.fd = ns->l6.fd = -1;
	if ((r = lsock_adopt(ns, &ns->l4, l->fd4)) < 0) {
		if (l->fd6 >= 0)
			close(l->fd6);
		close(l->ns_fd);
		free(ns);
		return r;
	}
	/* [::1] only exists where IPv6 is up; IPv4 (and v4-mapped) steering works without. */
	if (lsock_adopt(ns, &ns->l6, l->fd6) < 0)
		ns->l6.fd = -1;
	ns->next = px->nss;
	px->nss = ns;
	return 0;
fail:
	if (l->fd4 >= 0)
		close(l->fd4);
	if (l->fd6 >= 0)
		close(l->fd6);
	close(l->ns_fd);
	return r;
}

void proxy_unlisten_netns(struct proxy *px, uint64_t ino)
{
	for (struct pns **pp = &px->nss; *pp; pp = &(*pp)->next) {
		struct pns *ns = *pp;
		if (ns->ino != ino)
			continue;
		lsock_close(px, &ns->l4);
		lsock_close(px, &ns->l6);
		close(ns->ns_fd);
		*pp = ns->next;
		free(ns);
		return;
	}
}

void proxy_stop_accepting(struct proxy *px)
{
	px->stopped = true;
	while (px->nss)
		proxy_unlisten_netns(px, px->nss->ino);
}

/*
 * A request head is overdue (a slowloris trickling its head, or a client silent since it
 * connected): answered 408 where HTTP can still be spoken, then closed; else reset.
 */
static void head_timed_out(struct conn *c)
{
	agent_log(AGENT_LOG_DEBUG, "connection to %s: request head not complete within %u s",
		  c->dest, c->px->cfg.head_secs);
	metrics_flow(c->policy, METRICS_FLOW_REFUSED, MM_REASON_TIMEOUT);
	if (http_session_head_timeout(c->hs) == 0)
		cut(c, -EPROTO);
	else
		conn_close(c, true);
}

void proxy_sweep(struct proxy *px)
{
	time_t now = now_s();
	struct conn *c = px->conns;
	while (c) {
		struct conn *next = c->next;
		/* Whole seconds: "more than" so that a head is never cut before head_secs. */
		if (c->hs && !c->h2 && !c->dead && c->head_since &&
		    now - c->head_since > (time_t)px->cfg.head_secs) {
			c->head_since = 0;
			head_timed_out(c);
		} else if (now - c->last > (time_t)px->cfg.idle_secs) {
			agent_log(AGENT_LOG_DEBUG, "idle connection to %s closed", c->dest);
			conn_close(c, true);
		} else if (now - c->last >= PROXY_TRIM_SECS) {
			/* Quiet keep-alive connections give back what they keep for reuse. */
			http_session_trim(c->hs);
			pipe_trim(&c->cli);
			pipe_trim(&c->srv);
		}
		c = next;
	}
	bury(px);
}

size_t proxy_active(const struct proxy *px)
{
	return __atomic_load_n(&px->active, __ATOMIC_RELAXED);
}

uint64_t proxy_accepted(const struct proxy *px)
{
	return __atomic_load_n(&px->accepted, __ATOMIC_RELAXED);
}

void proxy_free(struct proxy *px)
{
	if (!px)
		return;
	proxy_stop_accepting(px);
	while (px->conns)
		conn_close(px->conns, false);
	bury(px);
	if (px->splice_timer >= 0) {
		epoll_ctl(px->cfg.epfd, EPOLL_CTL_DEL, px->splice_timer, NULL);
		close(px->splice_timer);
	}
	free(px);
}
