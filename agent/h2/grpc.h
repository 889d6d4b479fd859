/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gRPC message framing for one direction of one stream: length-prefixed messages (1 flag byte,
 * 4-byte big-endian length) reassembled across DATA frames whatever the split, each handed
 * whole to a callback that rewrites it, then re-prefixed. A compressed message (flag 1, with
 * grpc-encoding gzip or deflate) is inflated first and deflated again after. Memory is bounded
 * by the maximum message size. Pure C over buffers (zlib).
 */
#ifndef MESHMASK_GRPC_H
#define MESHMASK_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "mask.h"

#define GRPC_DEF_MAX_MESSAGE (4u * 1024 * 1024) /* gRPC's own default */

enum grpc_coding { GRPC_IDENTITY, GRPC_GZIP, GRPC_DEFLATE, GRPC_UNKNOWN };

/* The coding named by a grpc-encoding value (NULL or empty: identity). */
enum grpc_coding grpc_coding_for(const char *value, size_t len);

/*
 * Rewrite one whole decoded message msg[0, len) into out (appended). Returns 0, or a negative
 * errno that stops the framer and is returned by grpc_framer_feed.
 */
typedef int (*grpc_msg_fn)(void *ctx, const char *msg, size_t len, struct mm_buf *out);

struct grpc_framer;

/*
 * A framer; max_message 0 = GRPC_DEF_MAX_MESSAGE. pass_oversize: a message over the maximum is
 * forwarded as it comes, unread (onError: pass), instead of failing with -EMSGSIZE. NULL with
 * errno.
 */
struct grpc_framer *grpc_framer_new(size_t max_message, enum grpc_coding coding, grpc_msg_fn fn,
				    void *ctx, bool pass_oversize);

/*
 * Bytes of the stream's body. Each complete message goes through fn and out to sink with its
 * new prefix. Returns 0; -EMSGSIZE for a message over the maximum (before or after
 * inflating); -EBADMSG for a compressed message that does not inflate, or one whose coding is
 * unknown; fn's or the sink's error. After an error only grpc_framer_free.
 */
int grpc_framer_feed(struct grpc_framer *g, const void *data, size_t len, mask_sink_fn sink,
		     void *sink_ctx);

/* End of the body: 0, or -EPROTO when it ends inside a message. */
int grpc_framer_finish(struct grpc_framer *g);

/* Messages seen so far, and of them those forwarded unread for their size. */
uint64_t grpc_framer_messages(const struct grpc_framer *g);
uint64_t grpc_framer_oversize(const struct grpc_framer *g);

/* Bytes held (a partial message). */
size_t grpc_framer_buffered(const struct grpc_framer *g);

void grpc_framer_free(struct grpc_framer *g);

#endif
