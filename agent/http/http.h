/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP/1.1 framing for the proxy: one struct http_session per proxied connection parses both
 * directions incrementally (Content-Length, chunked with trailers, close-delimited, keep-alive,
 * pipelining, HEAD/204/304, 1xx and Expect: 100-continue, Upgrade/CONNECT → tunnel), runs the
 * bodies the policy covers through the masking engine, masks the headers named by header
 * rules, and re-frames a body whose length changed. Pure C over byte buffers: no sockets.
 */
#ifndef MESHMASK_HTTP_H
#define MESHMASK_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "mask.h"
#include "message.h"
#include "policy.h"

/*
 * Bytes held by every session that shares it (any thread): a body that would go over `max`
 * streams instead of being held, or where it must be held (to an HTTP/1.0 server) is refused.
 */
struct http_budget {
	size_t max; /* 0 = no bound */
	size_t used; /* __atomic */
};

struct http_limits {
	size_t max_head; /* request/status line + headers; default 64 KiB: 431 / 502 */
	size_t max_headers; /* header (and trailer) field lines; default 100: 431 / 502 */
	/*
	 * A masked body up to this size is held and sent with an exact Content-Length; a larger
	 * one streams (chunked, or close-delimited to an HTTP/1.0 client). Default 64 KiB.
	 */
	size_t hold_body;
	/* The same for a request body to an HTTP/1.0 server, which can only be held (it cannot
	 * take chunked); larger ones are refused (limit). Default 1 MiB. */
	size_t hold_body10;
	struct http_budget *budget; /* all sessions' held bodies together; NULL = no bound */
};

struct http_hooks {
	/*
	 * A new message starts in `direction`: return the policy for it with a new reference
	 * (the session drops it when the message ends), or NULL to pass it through untouched.
	 * Called once per message, so a policy swap applies from the next message on.
	 */
	struct policy *(*policy_for)(void *ctx, uint32_t direction);
	/* A message has been forwarded completely. May be NULL. */
	void (*message_done)(void *ctx, const struct http_message_info *info);
	/*
	 * Bytes for the client (the side that sends requests) that the session answers itself,
	 * while it is fed in the request direction: an HTTP error in place of a request it
	 * refuses. May be NULL: then a refused request cuts the stream with no answer.
	 */
	int (*reply)(void *ctx, const char *data, size_t len);
	void *ctx;
};

/* New session; `lim` may be NULL for defaults. NULL with errno. hooks are copied. */
struct http_session *http_session_new(const struct http_hooks *hooks,
				      const struct http_limits *lim);

/*
 * Bytes that arrived from the client (direction POLICY_DIR_REQUEST) or from the server
 * (POLICY_DIR_RESPONSE). What must be sent to the other side goes to `sink`. Returns 0; the
 * sink's error; -EPROTO when the stream must be cut (bytes the session refuses, or a body
 * blocked by the engine): the caller closes both sides, abortively unless
 * http_session_replied() says the client was answered in HTTP.
 *
 * Fail closed: on a connection a policy covers, bytes reach the client only framed and masked
 * as the policy says, or raw because the policy says so (onError: pass, tunnels: pass), and
 * then counted. Bytes that are not HTTP/1.x are handled per direction with the connection's
 * policy: a request stream under onError=pass is forwarded as it is (responses are still
 * framed and masked), under fallback or block refused; a response stream under pass is
 * forwarded, under fallback entity-scanned (only at the start of the connection), under block
 * refused. A direction the policy does not mask is forwarded when it is not HTTP only if it is
 * the response one. With no policy at all the session is a tunnel, as before.
 */
int http_session_feed(struct http_session *s, uint32_t direction, const void *data, size_t len,
		      mask_sink_fn sink, void *sink_ctx);

/*
 * The peer sending in `direction` closed its side: finish a close-delimited body. Returns as
 * http_session_feed; -EPROTO if a message was cut short (truncated body).
 */
int http_session_eof(struct http_session *s, uint32_t direction, mask_sink_fn sink, void *sink_ctx);

/*
 * How many of the next input bytes in `direction` the session would forward verbatim without
 * looking at them: the rest of a Content-Length body or of a chunk that no policy covers, or
 * any number (UINT64_MAX) on a tunnel or an uncovered close-delimited body. 0 when the next
 * byte must be parsed. A caller may move up to that many bytes to the receiver itself
 * (splice(2), after everything the session already handed to its sink) and report them with
 * http_session_skip instead of feeding them.
 */
uint64_t http_session_passthrough(const struct http_session *s, uint32_t direction);

/*
 * n bytes (at most http_session_passthrough) of `direction` were forwarded by the caller: the
 * session advances as if it had forwarded them (a message that ends is reported through the
 * hooks). Returns as http_session_feed; -EINVAL when n is more than it allows.
 */
int http_session_skip(struct http_session *s, uint32_t direction, uint64_t n, mask_sink_fn sink,
		      void *sink_ctx);

/*
 * Free what the session keeps between messages (the last body's masking stream, reused by the
 * next message under the same policy): for connections that went idle.
 */
void http_session_trim(struct http_session *s);

/* Masking streams kept for reuse, over all sessions (at most 1024). */
size_t http_session_spares(void);

/*
 * Whether the session answered the client itself (an HTTP error in place of what it refused,
 * through the reply hook or the response sink). The caller delivers what is queued for the
 * client, then closes it gracefully; the server side is dropped.
 */
bool http_session_replied(const struct http_session *s);

/*
 * How much of `max` bytes the caller should read from `direction` per wake-up: less while a
 * compressed body is being scanned (it may decode to 200 times its size), so that one such
 * body cannot take a worker's time from every other connection: what decodes to about 64 KiB
 * at the body's expansion so far (512 B to 4 KiB).
 */
size_t http_session_read_hint(const struct http_session *s, uint32_t direction, size_t max);

/*
 * Whether the client's side is inside a request head: its first (nothing received yet) or a
 * head begun and not complete. False between keep-alive requests and inside bodies.
 */
bool http_session_in_head(const struct http_session *s);

/*
 * The request head took longer than the caller's deadline (a slow or silent client): the
 * client is answered 408 (x-meshmask-reason: timeout) when no response is under way. 0 when
 * answered (cut the server side, close the client gracefully), -EAGAIN otherwise (reset).
 */
int http_session_head_timeout(struct http_session *s);

/*
 * The upstream could not be reached or broke before answering: the client is answered 502
 * (x-meshmask-reason: upstream_error) when no response is under way, through `sink` if the
 * response direction has none yet. 0 when answered (then cut the server side and close the
 * client gracefully), -EAGAIN when HTTP can no longer be spoken (reset both).
 */
int http_session_upstream_failed(struct http_session *s, mask_sink_fn sink, void *sink_ctx);

/*
 * Whether the upstream took an h2c upgrade (its 101 with Upgrade: h2c to a request that asked
 * with HTTP2-Settings): the connection is HTTP/2 from the server's next byte on, to be handed
 * to h2.c (h2_conn_upgrade). settings and len: the request's HTTP2-Settings, decoded (borrowed
 * from s); head: the request was HEAD; rest receives the server's bytes after the 101 (the
 * caller owns them). The session takes no more input.
 */
bool http_session_h2c(struct http_session *s, const uint8_t **settings, size_t *len, bool *head,
		      struct mm_buf *rest);

/* Whether the session has become an opaque tunnel (Upgrade, CONNECT, non-HTTP under pass). */
bool http_session_is_tunnel(const struct http_session *s);

/*
 * Whether the side that receives `direction`'s output must now be closed: a re-framed body
 * was sent close-delimited (with Connection: close) to an HTTP/1.0 peer. Later input in that
 * direction is dropped. Additive to the original contract.
 */
bool http_session_must_close(const struct http_session *s, uint32_t direction);

/* Bytes the session holds (head being parsed + held body), for backpressure decisions. */
size_t http_session_buffered(const struct http_session *s, uint32_t direction);

void http_session_free(struct http_session *s);

#endif
