/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the protocol framers (HTTP/1.1, HTTP/2, gRPC) report about each message they forwarded:
 * all that metrics and audit (control/) need to know of the data path.
 */
#ifndef MESHMASK_MESSAGE_H
#define MESHMASK_MESSAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "mask.h"
#include "meshmask/reason.h"
#include "policy.h"

/* A protocol switch seen on a message (spec.tunnels decides which). */
enum http_tunnel {
	HTTP_TUNNEL_NONE,
	HTTP_TUNNEL_STRIPPED, /* an upgrade request sent on without Upgrade (tunnels: block) */
	HTTP_TUNNEL_REFUSED, /* CONNECT answered by the agent, or a switch the agent refused */
	HTTP_TUNNEL_OPENED, /* 101 or 2xx to CONNECT: the connection is an opaque tunnel now */
};

/* "stripped", "refused", "opened" (metric label and audit value); "none" else. */
const char *http_tunnel_name(enum http_tunnel t);

/* What happened to one message, for metrics and audit (borrowed for the callback's duration). */
struct http_message_info {
	uint32_t direction; /* POLICY_DIR_REQUEST / POLICY_DIR_RESPONSE */
	const struct policy *policy; /* NULL when no policy applied */
	int status; /* response status code, 0 for requests */
	bool masked; /* the body went through the engine */
	bool reframed; /* Content-Length rewritten or switched to chunked */
	enum mask_outcome outcome;
	enum mm_reason reason; /* MM_REASON_NONE unless something went wrong */
	const struct mask_stats *stats; /* body stats, NULL if the body was not masked */
	uint64_t header_values; /* header values acted on by header rules */
	const uint64_t *header_rule_values; /* per rule index (policy->n_rules), may be NULL */
	enum http_tunnel tunnel;
	bool upgrade; /* with tunnel: the switch was an Upgrade (else CONNECT) */
	int reply_status; /* the agent answered the client itself with this status, 0 if not */
	const char *protocol; /* "http1", "h2" or "grpc"; NULL = "http1" */
	/* gRPC: the method as the policy's descriptor set names it ("/pkg.Svc/M"), else NULL:
	   never text from the traffic that no descriptor vouches for */
	const char *method;
};

/*
 * The values the policy's rules acted on in one message, one call per (rule, entity): body
 * values by the entity that found them, then body values no detector named and header values
 * (entity NULL). Nothing is called for a message without a policy.
 */
typedef void (*http_message_value_fn)(void *ctx, const struct policy_rule *rule,
				      const char *entity, uint64_t count);
void http_message_values(const struct http_message_info *info, http_message_value_fn fn,
			 void *ctx);

#endif
