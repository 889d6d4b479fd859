/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Streaming entity detection over one direction of a TLS connection's plaintext, as it arrives
 * in records of any size. A hold-back window of DETECT_MAX_MATCH_LEN bytes keeps a value that
 * is split across records whole, so a stream fed in pieces reports exactly what one
 * detect_scan() over the whole stream would. Pure C, fixed memory per stream.
 */
#ifndef MESHMASK_TLS_SCAN_H
#define MESHMASK_TLS_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "detect.h"

/* Bytes appended per step; longer inputs are fed in steps of this size (memory per stream is
 * about a step plus the window). */
#define TLS_SCAN_STEP 4096
#define TLS_SCAN_CAP (TLS_SCAN_STEP + DETECT_MAX_MATCH_LEN + 2)

/* A zero-initialised struct is an empty stream at offset 0. */
struct tls_scan {
	uint64_t base; /* stream offset of buf[0] */
	size_t n, start; /* bytes in buf; first match start not yet decided */
	char buf[TLS_SCAN_CAP];
};

/* One value found: entity, stream offset and length (never the bytes). */
typedef void (*tls_scan_fn)(void *ctx, enum mm_entity entity, uint64_t off, size_t len);

/* Append data (borrowed) and report the matches that no later byte can change. */
void tls_scan_feed(struct tls_scan *s, const char *data, size_t len, uint32_t entities,
		   tls_scan_fn fn, void *ctx);

/* The stream ends (or has a gap) here: report what is left and continue as a new stream at
 * the current offset. */
void tls_scan_finish(struct tls_scan *s, uint32_t entities, tls_scan_fn fn, void *ctx);

/*
 * Stop-rewrite: length-preserving masking of what one SSL_read returned, in place. The last
 * TLS_MASK_TAIL bytes of the stream (before masking) are kept as context, so a value split
 * across two reads is still recognised; only its part in the current read can be masked.
 */
#define TLS_MASK_TAIL 1024

/* A zero-initialised struct is a stream with no context yet. */
struct tls_mask_stream {
	size_t n;
	char tail[TLS_MASK_TAIL];
};

struct policy;

/*
 * Mask data[0, len) in place with p's rules that name entities and keep the length (mask with
 * a one-byte char); field and header rules do not apply. scratch (TLS_MASK_TAIL + len bytes,
 * borrowed) is work space. Returns the values masked; *partial counts those that began in an
 * earlier read (only their later part was masked). -ENOMEM on allocation failure.
 */
long tls_mask_read(struct tls_mask_stream *st, const struct policy *p, char *data, size_t len,
		   char *scratch, size_t *partial);

#endif
