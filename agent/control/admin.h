/* SPDX-License-Identifier: Apache-2.0 */
/* Admin API over libmicrohttpd: policies, dry-run, health, readiness, metrics. */
#ifndef MESHMASK_ADMIN_H
#define MESHMASK_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#include "store.h"

struct admin;

/* The admin API's settings; strings borrowed for admin_start/admin_new. */
struct admin_config {
	const char *addr; /* HOST:PORT to listen on (admin_start only) */
	const char *token_file; /* bearer token for writes, re-read on change; NULL = none */
	const char *detokenize_token_file; /* the only token POST /v1/detokenize takes; NULL = off */
	const char *tls_cert, *tls_key; /* PEM files: serve HTTPS (admin_start only) */
	bool public_read; /* policy reads without a token */
	size_t max_body; /* request body limit in bytes; 0 = ADMIN_DEFAULT_MAX_BODY */
	uint32_t request_timeout; /* seconds per request; 0 = ADMIN_REQUEST_TIMEOUT_S */
};

/* What the daemon knows about this node, reported by /readyz. */
struct admin_node_status {
	bool bpf_enabled; /* steering wanted (false with --no-bpf) */
	bool bpf_attached; /* BPF programs attached and steering maps filled */
	bool tls_capture; /* OpenSSL uprobes running: TLS plaintext observed and audited */
	bool tls_user_write; /* the kernel lets BPF write user memory (tls_inplace_available) */
	/* spec.tls.enforce modes the TLS data path applies (else: observed and audited only) */
	bool tls_applies_inplace, tls_applies_stop_rewrite;
};

/* Fill *out (zeroed by the caller); called from the admin threads. */
typedef void (*admin_status_fn)(void *ctx, struct admin_node_status *out);

/*
 * Start serving (libmicrohttpd's own threads). `status` may be NULL (no data plane). Ready
 * means: policies loaded and, when bpf_enabled, BPF attached. 0 or -errno (logged here).
 */
int admin_start(struct admin **out, const struct admin_config *cfg, struct store *st,
		admin_status_fn status, void *status_ctx);
/* The TCP port the server listens on (for --admin HOST:0). */
uint16_t admin_port(const struct admin *a);
void admin_stop(struct admin *a);

/*
 * Request handling without a socket (used by admin_start's server, unit tests, the fuzzer).
 * All strings are borrowed and may be NULL when the request lacks them.
 */
struct admin_request {
	const char *method, *path; /* path without the query string, percent-decoded */
	const char *query_policy, *query_direction; /* ?policy= and ?direction= */
	const char *authorization, *if_match, *content_type, *content_encoding;
	const char *peer; /* client address, for the audit log of dry-runs */
	const char *body;
	size_t body_len;
	bool body_too_large; /* the body went over the limit and was dropped */
};

struct admin_response {
	int status;
	struct mm_buf body;
	const char *content_type; /* static or points into content_type_buf */
	char content_type_buf[256];
	char content_encoding[32];
	char etag[72]; /* quoted, "" = none */
	const char *allow;
	const char *source; /* X-Meshmask-Source of a policy read */
	bool www_authenticate;
	bool has_values; /* dry-run: X-Meshmask-Values */
	uint64_t values;
};

/* An admin API handler that serves nothing by itself; NULL with errno. */
struct admin *admin_new(const struct admin_config *cfg, struct store *st, admin_status_fn status,
			void *status_ctx);
/* Answer one request into *rs (zero-initialised by the caller; admin_response_free after). */
void admin_handle(struct admin *a, const struct admin_request *rq, struct admin_response *rs);
void admin_response_free(struct admin_response *rs);
void admin_free(struct admin *a);

#endif
