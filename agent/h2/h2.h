/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTP/2 for the proxy (libnghttp2): the agent is the app's server (one server session) and
 * the upstream's client (one client session), streams mapped one to one. Headers pass with
 * the policy's header rules applied; bodies go through the masking engine (JSON, NDJSON,
 * text, form, gzip/deflate) or, for gRPC (application/grpc), through the gRPC framer and the
 * protobuf masker; trailers are forwarded. Flow control is end to end: window is given back
 * to a sender only as what it sent drains toward the receiver, so a slow reader holds the
 * upstream and the agent's memory stays bounded per stream. SETTINGS, PING, GOAWAY,
 * RST_STREAM and WINDOW_UPDATE are handled by each session. Pure C over byte buffers: no
 * sockets.
 */
#ifndef MESHMASK_H2_H
#define MESHMASK_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"

/* The 24 bytes an HTTP/2 client starts with (prior knowledge, RFC 9113 §3.4). */
#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN 24

struct h2_limits {
	size_t max_grpc_message; /* 0 = 4 MiB, gRPC's default; a larger message follows onError */
};

/* Where each session's output goes (the proxy's send queues). */
struct h2_io {
	mask_sink_fn to_client;
	void *client;
	mask_sink_fn to_server;
	void *server;
};

struct h2_conn;

/*
 * A connection that starts (or started) with the HTTP/2 preface from the client. hooks as for
 * http_session (policy_for per message and direction, message_done per message). NULL with
 * errno.
 */
struct h2_conn *h2_conn_new(const struct http_hooks *hooks, const struct h2_io *io,
			    const struct h2_limits *lim);

/*
 * The same for a connection that switched from HTTP/1.1 by an h2c upgrade the upstream took
 * (http_session_h2c): stream 1 is the upgrade request, already sent and ended; its response
 * comes from the upstream as HTTP/2. settings: the request's decoded HTTP2-Settings; head:
 * the request was HEAD. The client's preface comes next in the request direction.
 */
struct h2_conn *h2_conn_upgrade(const struct http_hooks *hooks, const struct h2_io *io,
				const struct h2_limits *lim, const uint8_t *settings, size_t len,
				bool head);

/*
 * Bytes from the client (POLICY_DIR_REQUEST, the preface first) or from the server
 * (POLICY_DIR_RESPONSE). Returns 0, or -EPROTO when the connection must be cut (a peer broke
 * the protocol beyond what a GOAWAY settles), -ENOMEM.
 */
int h2_conn_feed(struct h2_conn *c, uint32_t direction, const void *data, size_t len);

/*
 * Hand what the sessions have to send to the io sinks, at most about budget_client /
 * budget_server bytes each (the room in the proxy's queues). 0 or a negative errno.
 */
int h2_conn_pump(struct h2_conn *c, size_t budget_client, size_t budget_server);

/* The side sending `direction` closed: the other session is told (GOAWAY) and ends. */
void h2_conn_eof(struct h2_conn *c, uint32_t direction);

/* Whether both sessions are over (nothing to read or write): the connection may close. */
bool h2_conn_done(const struct h2_conn *c);

/* Bytes held for streams (bodies waiting for their receiver, partial gRPC messages). */
size_t h2_conn_buffered(const struct h2_conn *c);

void h2_conn_free(struct h2_conn *c);

#endif
