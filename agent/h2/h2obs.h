/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Watching one direction of an HTTP/2 connection whose plaintext the TLS probes capture
 * (ALPN h2): frames are parsed, header blocks decoded with HPACK (nghttp2's inflater, one per
 * direction, as the connection's own state), and DATA payloads handed out per stream with
 * padding and frame headers removed, so a value that a frame boundary splits is seen whole.
 * Read-only: nothing is sent, nothing rewritten. Pure C over buffers; memory bounded by the
 * header-block limit.
 */
#ifndef MESHMASK_H2OBS_H
#define MESHMASK_H2OBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define H2OBS_MAX_HEADER_BLOCK (64u * 1024)

/* A stream's body bytes (borrowed for the call); p == NULL: the stream ended. */
typedef void (*h2obs_data_fn)(void *ctx, int32_t stream, const char *p, size_t n);
/* One decoded header field of a stream (borrowed for the call). */
typedef void (*h2obs_header_fn)(void *ctx, int32_t stream, const char *name, size_t name_len,
				const char *value, size_t value_len);

/*
 * Whether a direction starting with b[0, n) is HTTP/2: 1 (the client preface, or a SETTINGS
 * frame on stream 0 as a server starts), 0 (not), -1 (too few bytes to tell).
 */
int h2obs_sniff(const void *b, size_t n);

struct h2obs;

/* A watcher for a direction that starts with the client preface (client) or not. NULL+errno. */
struct h2obs *h2obs_new(bool client);

/*
 * Bytes of the direction, in order. Returns 0, or -EPROTO once they are not HTTP/2 after all
 * (or a header block over H2OBS_MAX_HEADER_BLOCK): the caller stops feeding it.
 */
int h2obs_feed(struct h2obs *o, const void *data, size_t len, h2obs_data_fn data_fn,
	       h2obs_header_fn header_fn, void *ctx);

void h2obs_free(struct h2obs *o);

#endif
