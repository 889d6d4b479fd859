/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A small Kubernetes API client over libcurl: one configured client (base URL, cluster CA,
 * bearer token file re-read for every request since projected tokens rotate) serving
 *   - kube_request(): one request (any method, optional body) answered whole, e.g. a GET or
 *     a server-side apply PATCH;
 *   - kube_watch_run(): list a collection (paginated) then watch it from the list's
 *     resourceVersion, handing each event to the caller as it streams in; the watch is
 *     resumed from the last resourceVersion, a 410 Gone lists again, failures back off.
 * Calls block; they are meant for background threads. kube_client_abort() ends them all
 * from any thread. Messages given to callers for logs never hold the token.
 */
#ifndef MESHMASK_KUBE_H
#define MESHMASK_KUBE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Default in-cluster credentials (the ServiceAccount token volume). */
#define KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define KUBE_DEFAULT_TOKEN_FILE KUBE_SA_DIR "/token"
#define KUBE_DEFAULT_CA_FILE KUBE_SA_DIR "/ca.crt"

struct kube_config {
	const char *url; /* "https://host[:port]"; NULL = in-cluster from the env */
	const char *token_file; /* NULL = KUBE_DEFAULT_TOKEN_FILE; a missing file or "" = no token */
	const char *ca_file; /* NULL = KUBE_DEFAULT_CA_FILE */
	int connect_timeout_ms; /* 0 = 5000 */
	int read_timeout_s; /* a server silent this long fails the request; 0 = 600 */
	/* A kubeconfig's credentials (the CLI): each given one replaces the above. */
	const char *token; /* the bearer token itself, instead of token_file */
	const char *ca_pem; /* the CA certificates (PEM text), instead of ca_file */
	const char *cert_file, *key_file; /* a client certificate and its key (PEM files) */
	const char *cert_pem, *key_pem; /* or their PEM text */
	const char *user_agent; /* NULL = "meshmask-agent/<version>" */
};

struct kube_client;

/*
 * The API URL of the cluster the process runs in (KUBERNETES_SERVICE_HOST/_PORT) into out.
 * 0, -ENOENT when not in a cluster, or -ENAMETOOLONG.
 */
int kube_in_cluster_url(char *out, size_t size);

/*
 * Client for cfg (strings copied; the token and key text are wiped when it is freed). NULL with
 * errno (EINVAL for a bad or non-https URL).
 */
struct kube_client *kube_client_new(const struct kube_config *cfg);
/* Free a client no thread uses any more; NULL is a no-op. */
void kube_client_free(struct kube_client *c);
/* Any thread: end every request and watch in progress, and all later ones, with -ECANCELED. */
void kube_client_abort(struct kube_client *c);

/* Percent-encode s for a query value (malloc'd, caller frees); NULL on ENOMEM. */
char *kube_query_escape(const char *s);

/* An answer read whole. A zeroed struct is empty; kube_response_free() empties it. */
struct kube_response {
	int status; /* HTTP status, 0 when no response arrived */
	char *body; /* NUL-terminated (owned), NULL when empty */
	size_t len;
	char error[256]; /* why the request failed, for logs ("" on success) */
};

/*
 * `method` `path` (path and query, e.g. "/api/v1/namespaces/a/pods/b") with an optional body
 * (borrowed; `content_type` required with it), the answer's body kept up to `max` bytes into
 * *resp. 0 when a response arrived, whatever its status; else -errno (resp->error says why):
 * -ECONNREFUSED etc. for the network, -EPROTO for TLS or verification, -ETIMEDOUT,
 * -EMSGSIZE for a body over `max`, -ECANCELED after kube_client_abort().
 */
int kube_request(struct kube_client *c, const char *method, const char *path,
		 const char *content_type, const void *body, size_t body_len, size_t max,
		 struct kube_response *resp);
/* Free resp's body and zero it. */
void kube_response_free(struct kube_response *resp);

/* What kube_watch_run reports through kube_watch_ops.state. */
enum kube_watch_state {
	KUBE_WATCH_SYNCED, /* a complete list was taken (list_done returned 0) */
	KUBE_WATCH_RELIST, /* the watch's resourceVersion expired (410): listing again */
	KUBE_WATCH_DOWN, /* a failure; retrying after a backoff */
};

/*
 * The caller's side of a list+watch; ctx is kube_watch_new's. Objects are borrowed for the
 * call. A negative return fails the list (list_item, list_done) or ends the watch (event):
 * -ESTALE lists again at once, anything else is a failure (state DOWN, backoff, list again).
 */
struct kube_watch_ops {
	/* One item of a list being read; keep it aside until list_done. */
	int (*list_item)(void *ctx, const json_t *obj);
	/* The list ended: complete (the items replace what was known) or not (drop them). */
	int (*list_done)(void *ctx, bool complete);
	/* A watch event: type "ADDED", "MODIFIED" or "DELETED" (BOOKMARK and ERROR are ours). */
	int (*event)(void *ctx, const char *type, const json_t *obj);
	/* Optional: the watch's state; why (NULL for SYNCED) is for logs. */
	void (*state)(void *ctx, enum kube_watch_state st, const char *why);
};

struct kube_watch_config {
	const char *path; /* the collection, e.g. "/api/v1/pods" or "/apis/g/v1/things" */
	const char *selector; /* query parameters for list and watch, already escaped, e.g.
				 "fieldSelector=spec.nodeName%3Dn1"; NULL for none */
	int timeout_s; /* server-side watch timeout; 0 = 300 */
	int backoff_max_ms; /* 0 = 30000 (from 500, doubling) */
	size_t list_max; /* bytes of one list page; 0 = 64 MiB */
	size_t event_max; /* bytes of one watch event line; 0 = 4 MiB */
};

struct kube_watch;

/* A list+watch of cfg (strings copied) calling ops with ctx. NULL with errno. */
struct kube_watch *kube_watch_new(const struct kube_watch_config *cfg,
				  const struct kube_watch_ops *ops, void *ctx);
void kube_watch_free(struct kube_watch *w);

/*
 * List, then watch, over c until kube_client_abort(c): returns -ECANCELED then (or -ENOMEM).
 * The callbacks run on the calling thread.
 */
int kube_watch_run(struct kube_watch *w, struct kube_client *c);

/*
 * The decoding kube_watch_run does, for tests and fuzzing. kube_watch_feed: bytes of a watch
 * response body, in any pieces; each newline-delimited event goes to the ops as it
 * completes (CR stripped, empty lines skipped). kube_watch_feed_end: the body ended (a last
 * line without newline is an event too). 0, -EMSGSIZE for an event over event_max (nothing
 * more is buffered), -EBADMSG for a malformed event, -ESTALE for an ERROR 410 event, -EIO
 * for another ERROR event, or an ops->event error; after an error the stream is done.
 */
int kube_watch_feed(struct kube_watch *w, const char *data, size_t n);
int kube_watch_feed_end(struct kube_watch *w);
/*
 * One list page body: each item to ops->list_item. 1 when a further page follows
 * (metadata.continue), 0 for the last page, -EBADMSG or an ops error.
 */
int kube_watch_list_page(struct kube_watch *w, const char *body, size_t len);
/* The resourceVersion the next watch starts from ("" before any). */
const char *kube_watch_resource_version(const struct kube_watch *w);

#endif
