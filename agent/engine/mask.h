/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The streaming masking engine. One struct mask_stream masks one body (an HTTP message body,
 * a file given to `meshmask mask`, a TLS byte stream): feed arbitrary chunks, receive output
 * through a sink. Memory is bounded by constants, not by the size of the body, and the output
 * does not depend on how the input was split into chunks.
 *
 * Pure C: no sockets, no BPF, no OS dependency beyond malloc.
 */
#ifndef MESHMASK_MASK_H
#define MESHMASK_MASK_H

#include <stddef.h>
#include <stdint.h>

#include "policy.h"
#include "detect.h"
#include "meshmask/reason.h"

/* Output sink: receives bytes to send on; returns 0 or a negative errno to abort. */
typedef int (*mask_sink_fn)(void *ctx, const char *data, size_t len);

enum mask_format {
	MASK_FMT_AUTO,   /* decide from content_type */
	MASK_FMT_JSON,   /* application/json, application/<x>+json */
	MASK_FMT_NDJSON, /* application/x-ndjson, application/jsonl, ... */
	MASK_FMT_TEXT,   /* text/<any>: entity scan */
	MASK_FMT_FORM,   /* application/x-www-form-urlencoded */
	MASK_FMT_RAW,    /* unknown content: handled per policy onError */
};

struct mask_opts {
	const struct policy *policy; /* borrowed; must outlive the stream */
	uint32_t direction;          /* POLICY_DIR_REQUEST or POLICY_DIR_RESPONSE */
	const char *content_type;    /* may be NULL; copied */
	const char *content_encoding; /* "gzip", "deflate", "identity" or NULL; copied */
	enum mask_format format;     /* MASK_FMT_AUTO unless the caller knows better */
};

/* What happened to a stream, for metrics and audit. */
enum mask_outcome {
	MASK_OUTCOME_MASKED,   /* parsed and processed as its format */
	MASK_OUTCOME_FALLBACK, /* could not parse: entity scan over raw text (onError=fallback) */
	MASK_OUTCOME_PASSED,   /* could not parse: passed unchanged (onError=pass) */
	MASK_OUTCOME_BLOCKED,  /* could not parse: the caller must stop the stream (onError=block) */
};
/* "masked", "fallback", "passed", "blocked" (metric label and audit value); "unknown" else. */
const char *mask_outcome_name(enum mask_outcome o);

struct mask_rule_stats {
	uint64_t values;                   /* values the rule acted on (or would have, observe) */
	uint64_t by_entity[MM_ENT__COUNT]; /* of which found by each detector */
};

struct mask_stats {
	uint64_t bytes_in, bytes_out; /* body bytes as on the wire (encoded) */
	uint64_t bytes_scanned;       /* decoded bytes the engine looked at */
	uint64_t values;              /* sum of rules[].values */
	uint64_t errors[MM_REASON__COUNT];
	size_t n_rules;                /* == policy->n_rules */
	struct mask_rule_stats *rules; /* owned by the stream */
};

/* A new stream; NULL with errno (ENOMEM, EINVAL). */
struct mask_stream *mask_stream_new(const struct mask_opts *o);

/*
 * Start a new body on a stream that has been finished or abandoned, with the same policy
 * (o->policy must be the stream's, and alive): the same result as mask_stream_free and
 * mask_stream_new, without rebuilding what the stream derived from the policy (field-path
 * automaton, per-rule stats, keyed HMAC contexts) or reallocating its buffers. 0; -EINVAL
 * for another policy (the stream is unchanged); -ENOMEM (then only mask_stream_free).
 */
int mask_stream_reuse(struct mask_stream *s, const struct mask_opts *o);

/*
 * Feed `len` bytes. Output produced so far goes to `sink`. Returns 0, the sink's negative
 * error, or -EPROTO once the stream is blocked (onError=block); after an error the stream only
 * accepts mask_stream_free().
 */
int mask_stream_write(struct mask_stream *s, const void *data, size_t len, mask_sink_fn sink,
		      void *ctx);

/* End of input: flush what is held. Same returns as mask_stream_write(). */
int mask_stream_finish(struct mask_stream *s, mask_sink_fn sink, void *ctx);

const struct mask_stats *mask_stream_stats(const struct mask_stream *s);
enum mask_outcome mask_stream_outcome(const struct mask_stream *s);
/* The reason behind a non-MASKED outcome (MM_REASON_NONE otherwise). */
enum mm_reason mask_stream_reason(const struct mask_stream *s);

void mask_stream_free(struct mask_stream *s);

/* Format for a Content-Type value (parameters ignored, case-insensitive). */
enum mask_format mask_format_for(const char *content_type);

/*
 * Convenience for small, complete inputs (admin dry-run, tests): mask `in` into `out`
 * (appended). Returns 0 or a negative errno; the stats are copied into *stats if non-NULL
 * (its rules array is then owned by the caller: free(stats->rules)).
 */
struct mm_buf;
int mask_buffer(const struct mask_opts *o, const void *in, size_t len, struct mm_buf *out,
		struct mask_stats *stats);

#endif
