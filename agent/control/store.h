/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's policy store: policies from --policies DIR (hot-reloaded with inotify, including
 * a ConfigMap's symlink swap) and policies pushed through the admin API (persisted atomically
 * under --state-dir). Readers get an immutable struct policy_set; every change publishes a new
 * set with an atomic pointer swap and notifies subscribers.
 */
#ifndef MESHMASK_STORE_H
#define MESHMASK_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy.h"

struct store;

struct store_config {
	const char *policies_dir; /* policy files, hot-reloaded; NULL = none */
	const char *state_dir; /* pushed policies persist in <state_dir>/policies; NULL = not */
};

/* Load both sources and start watching the directory. NULL-safe out; 0 or -errno. */
int store_open(struct store **out, const struct store_config *cfg);

/* The current set, with a new reference (policy_set_unref when done). Never NULL. */
struct policy_set *store_get(struct store *st);

/*
 * Called after every change with the new set (borrowed for the call), from the thread that
 * made the change. Also called once at subscription with the current set.
 */
typedef void (*store_change_fn)(void *ctx, struct policy_set *set);
int store_subscribe(struct store *st, store_change_fn fn, void *ctx);
/* Remove the subscription (fn, ctx): when this returns, fn is running nowhere and is not
 * called again. Unknown pairs are ignored. */
void store_unsubscribe(struct store *st, store_change_fn fn, void *ctx);

/* Policies in force at once: the steering maps number them in 64-bit masks (steer.h). */
#define STORE_MAX_POLICIES 64

/*
 * Validate, compile, persist and publish a pushed policy document. `name` must equal its
 * metadata.name. `if_match` (may be NULL) must equal the current etag, "*" = must exist.
 * Returns 0 (replaced or unchanged) or 1 (created), etag_out filled; -EINVAL (errs filled),
 * -ESTALE (etag mismatch, or "*" and absent), -EEXIST (the name belongs to a file policy or a
 * policy resource: they win, see store_owner()), or another -errno.
 */
int store_put(struct store *st, const char *name, const char *json, size_t len,
	      const char *if_match, struct policy_errors *errs, char etag_out[65]);

/* Remove a pushed policy (and its persisted file). -ENOENT, -ESTALE as store_put; -EPERM for a
 * file or resource policy. */
int store_delete(struct store *st, const char *name, const char *if_match);

/*
 * A file in --policies DIR whose current content is refused. Its previous version, if any,
 * stays in force. Errors locate the problem in the file; they quote the policy at most (never
 * traffic, which the store never sees).
 */
struct store_rejection {
	char *file; /* file name within --policies DIR; NULL for a resource */
	char *resource; /* a policy resource ("MaskingPolicy/shop/pii"); NULL for a file */
	char *name; /* policy name: of the version in force, else metadata.name, or NULL */
	char *etag_in_force; /* etag of the previous version still in force; NULL = none */
	int64_t time; /* when this content was refused (Unix seconds) */
	struct policy_errors errs;
};

/*
 * A copy of the current rejections, sorted by file name, and a version that changes whenever
 * they do (version may be NULL). 0 or -ENOMEM; store_rejections_free() the copy.
 */
int store_rejections(struct store *st, struct store_rejection **out, size_t *n, uint64_t *version);
void store_rejections_free(struct store_rejection *v, size_t n);

/*
 * Policy resources (MaskingPolicy / ClusterMaskingPolicy), handed in by agent/cluster/. `key`
 * is the policy's name on this node ("pii"; "shop.pii" for a MaskingPolicy in namespace shop),
 * `resource` names it in messages and GET /v1/policies ("MaskingPolicy/shop/pii"), `json` is a
 * policy document (kind MaskingPolicy). Precedence by name: file > resource > push.
 * store_crd_put: 0 (in force, or unchanged), -EINVAL (refused: errs filled, the previous
 * version stays in force), -EEXIST (valid but not in force: a file owns the name, or the
 * node's limit; errs says which), or -ENOMEM.
 */
int store_crd_put(struct store *st, const char *key, const char *resource, const char *json,
		  size_t len, struct policy_errors *errs);
/* The resource's latest version is refused for errs (found before parsing, e.g. a namespaced
 * policy naming another namespace): recorded as store_crd_put's -EINVAL would. -EINVAL. */
int store_crd_refuse(struct store *st, const char *key, const char *resource,
		     const struct policy_errors *errs);
/* The resource went away: its policy leaves. 0, -ENOENT. */
int store_crd_delete(struct store *st, const char *key);

/* What a resource's latest version became on this node (store_crd_state_clear() it). */
struct store_crd_state {
	bool in_force; /* some version is in force */
	bool refused; /* the latest version is not the one in force */
	bool previous_in_force; /* refused, and an earlier version stays in force */
	char etag[65]; /* of the version in force ("" for none) */
	int64_t time; /* when the latest version was refused */
	struct policy_errors errs; /* why it is refused */
};
/* 0, -ENOENT (unknown key), -ENOMEM. */
int store_crd_state(struct store *st, const char *key, struct store_crd_state *out);
void store_crd_state_clear(struct store_crd_state *s);

/* Which source owns `name` against pushes: "file", "resource", or NULL. */
const char *store_owner(struct store *st, const char *name);

/* Initial load of both sources done (for /readyz). */
bool store_ready(struct store *st);
/* Whether `name` is acceptable as a policy name (RFC 1123 subdomain; it names a file). */
bool store_name_valid(const char *name);

void store_close(struct store *st);

#endif
