/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A minimal Kubernetes API client: HTTPS GET requests over OpenSSL (the CA file, hostname
 * verification, SNI), the bearer token re-read from its file on every connection (projected
 * tokens rotate), HTTP/1.1 responses with Content-Length, chunked or close-delimited bodies,
 * read whole (a list) or line by line (a watch stream). Blocking I/O meant for one background
 * thread; kube_client_abort() unblocks it from another thread.
 */
#ifndef MESHMASK_KUBE_H
#define MESHMASK_KUBE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Default in-cluster credentials (the ServiceAccount token volume). */
#define KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define KUBE_DEFAULT_TOKEN_FILE KUBE_SA_DIR "/token"
#define KUBE_DEFAULT_CA_FILE KUBE_SA_DIR "/ca.crt"

struct kube_config {
	const char *url; /* "https://host[:port]"; NULL = in-cluster from the env */
	const char *token_file; /* NULL = KUBE_DEFAULT_TOKEN_FILE; a missing file = no token */
	const char *ca_file; /* NULL = KUBE_DEFAULT_CA_FILE */
	int connect_timeout_ms; /* 0 = 5000 */
	int read_timeout_s; /* a silent server fails a read after this long; 0 = 600 */
};

struct kube_client;

/*
 * The API URL of the cluster the process runs in (KUBERNETES_SERVICE_HOST/_PORT) into out.
 * 0, -ENOENT when not in a cluster, or -ENAMETOOLONG.
 */
int kube_in_cluster_url(char *out, size_t size);

/* Client for cfg (strings copied). NULL with errno (EINVAL for a bad or non-https URL). */
struct kube_client *kube_client_new(const struct kube_config *cfg);
void kube_client_free(struct kube_client *c);
/* Any thread: fail the request in progress and every later one with -ECANCELED. */
void kube_client_abort(struct kube_client *c);
/* Detail of the last failure of kube_get (for logs; never holds the token). */
const char *kube_client_error(const struct kube_client *c);

/*
 * A response being read. Bodies are decoded (chunked) on the fly; memory stays bounded by
 * the limits the caller gives.
 */
struct kube_stream;

/*
 * GET `target` (path and query, e.g. "/api/v1/pods?watch=1"): connect, verify the server,
 * send the request, read the status line and headers. On success *out is the response (any
 * status; see kube_stream_status). -errno on failure: -ECONNREFUSED etc. for the network,
 * -EPROTO for a TLS or verification failure, -EBADMSG for a malformed response.
 */
int kube_get(struct kube_client *c, const char *target, struct kube_stream **out);

/* HTTP status code of the response. */
int kube_stream_status(const struct kube_stream *s);

/*
 * The whole remaining body into *body (NUL-terminated, caller frees), at most `max` bytes.
 * 0, -EMSGSIZE when longer, or -errno.
 */
int kube_stream_read_all(struct kube_stream *s, char **body, size_t *len, size_t max);

/*
 * The next newline-terminated line of the body into *line (borrowed until the next call,
 * NUL-terminated, newline removed; empty lines are skipped). 0, -ENODATA at the end of the
 * body, -EMSGSIZE for a line longer than `max` (the stream is unusable then), or -errno.
 */
int kube_stream_read_line(struct kube_stream *s, char **line, size_t *len, size_t max);

void kube_stream_close(struct kube_stream *s);

/*
 * For tests: a response read from `read` (returns bytes read, 0 at EOF, -errno) instead of a
 * connection; parses the status line and headers. NULL with errno (EBADMSG).
 */
typedef ssize_t (*kube_read_fn)(void *ctx, void *buf, size_t n);
struct kube_stream *kube_stream_from_reader(kube_read_fn read, void *ctx);

#endif
