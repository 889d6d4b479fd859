/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One table of reason codes. The same numbers are BPF verdict reasons (in map values and
 * ringbuf events) and the `reason` label of metrics, so the table only ever grows at the end.
 */
#ifndef MESHMASK_REASON_H
#define MESHMASK_REASON_H

#define MM_REASONS(X)                                                                              \
	X(NONE, "none")                         /* nothing went wrong */                           \
	X(BAD_JSON, "bad_json")                 /* body said JSON but did not parse */             \
	X(BAD_ENCODING, "bad_encoding")         /* corrupt gzip/deflate stream */                  \
	X(UNKNOWN_CONTENT_TYPE, "unknown_content_type")                                            \
	X(UNKNOWN_ENCODING, "unknown_encoding") /* Content-Encoding we cannot decode */            \
	X(VALUE_TOO_LARGE, "value_too_large")   /* a field value over the hold limit */            \
	X(NOT_HTTP, "not_http")                 /* a flagged flow that is not HTTP/1.1 */          \
	X(BAD_HTTP, "bad_http")                 /* malformed HTTP/1.1 framing */                   \
	X(AGENT_DOWN, "agent_down")             /* flagged flow while the agent was not serving */ \
	X(NO_ORIG_DST, "no_orig_dst")           /* accepted socket with no recorded destination */ \
	X(UPSTREAM_ERROR, "upstream_error")     /* connecting to / talking to the real server */   \
	X(TIMEOUT, "timeout")                   /* idle or slow peer */                            \
	X(LIMIT, "limit")                       /* a configured bound was hit */                   \
	X(RINGBUF_FULL, "ringbuf_full")         /* event dropped: ringbuf had no room */           \
	X(INTERNAL, "internal")                 /* allocation failure or a bug */                  \
	X(TUNNEL, "tunnel")                     /* a protocol switch (Upgrade, CONNECT) */         \
	X(BAD_CHARSET, "bad_charset")           /* a body in a charset the engine does not read */ \
	X(NO_DESCRIPTOR, "no_descriptor")       /* a gRPC method no descriptor set describes */    \
	X(BAD_PROTOBUF, "bad_protobuf")         /* a gRPC message that is not its type */         \
	X(TOKENIZE_FAILED, "tokenize_failed")   /* a value FF1 cannot tokenize: masked instead */  \
	X(DETOKENIZE_FAILED, "detokenize_failed")

enum mm_reason {
#define MM_REASON_ENUM_(name, label) MM_REASON_##name,
	MM_REASONS(MM_REASON_ENUM_)
#undef MM_REASON_ENUM_
	MM_REASON__COUNT
};

#ifndef __bpf__
/* Label value of a reason ("bad_json"); "unknown" for an out-of-range code. */
static inline const char *mm_reason_name(unsigned int r)
{
	static const char *const names[] = {
#define MM_REASON_NAME_(name, label) label,
		MM_REASONS(MM_REASON_NAME_)
#undef MM_REASON_NAME_
	};
	return r < MM_REASON__COUNT ? names[r] : "unknown";
}
#endif

#endif
