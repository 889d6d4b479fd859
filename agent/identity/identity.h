/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Workload identity: which pod a caller's cgroup belongs to (the pod UID and container id are
 * in the cgroup path for both kubelet cgroup drivers) and what the Kubernetes API says about
 * that pod (namespace, name, service account, labels). A background thread lists and watches
 * the pods of this node; lookups read an immutable table published by pointer swap, so the
 * data plane never waits for the API.
 */
#ifndef MESHMASK_IDENTITY_H
#define MESHMASK_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "policy.h"

#define IDENTITY_UID_MAX 37 /* 36 characters of a UID (or 32 of a static pod hash) + NUL */
#define IDENTITY_CID_MAX 65 /* 64 hex digits of a container id + NUL */

/* What a cgroup path says about its pod. */
struct identity_cgroup {
	char uid[IDENTITY_UID_MAX]; /* lower-case, dashes ("_" of systemd slices converted) */
	char cid[IDENTITY_CID_MAX]; /* container id, "" for the pod's own cgroup */
};

/*
 * Parse a cgroup v2 path (absolute or relative to the mount) of a kubelet-managed pod:
 * cgroupfs driver (/kubepods[/burstable|/besteffort]/pod<uid>[/<cid>]) or systemd driver
 * (/kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_>.slice/<rt>-<cid>.scope, with
 * <rt> cri-containerd, crio or docker). Cgroups below a container belong to it.
 * 0, or -ENOENT when the path is not a pod's.
 */
int identity_parse_cgroup(const char *path, struct identity_cgroup *out);

/* A pod as the API describes it. Immutable once published; strings owned. */
struct identity_pod {
	int refs; /* atomic */
	char uid[IDENTITY_UID_MAX];
	char mirror[IDENTITY_UID_MAX]; /* static pods: kubernetes.io/config.mirror, the UID the
					  kubelet uses in cgroup paths; "" otherwise */
	char *namespace_, *name, *service_account;
	char **label_keys, **label_values; /* sorted by key */
	size_t n_labels;
	char *resource_version;
};

/*
 * A pod from its JSON object (as in a list's items or a watch event's object). NULL with
 * errno: EINVAL when metadata.uid/name/namespace are missing or malformed, ENOMEM.
 */
struct identity_pod *identity_pod_from_json(const json_t *obj);
struct identity_pod *identity_pod_ref(struct identity_pod *p);
void identity_pod_unref(struct identity_pod *p);

/*
 * Whether `pod` is in the set of callers `src` describes, for the keys beyond the cgroup
 * path: namespace, serviceAccount and every label must match (AND). A source without those
 * keys matches any caller (pod or not); a NULL pod (not a pod, or not known yet) matches no
 * source that has them. The cgroup glob is the caller's to check.
 */
bool identity_source_matches(const struct policy_source *src, const struct identity_pod *pod);

/*
 * identity_source_matches() for the pod of a cgroup path, looked up in the current table.
 * Never blocks on the API: an unknown pod simply does not match.
 */
bool identity_source_matches_cgroup(const struct policy_source *src, const char *cgroup_path);

/*
 * The pod of a cgroup path from the current table: a new reference (identity_pod_unref), or
 * NULL when the path is not a pod's or the pod is not known (yet).
 */
struct identity_pod *identity_lookup_cgroup(const char *cgroup_path);

/*
 * How audit events name a caller: "namespace/name" of its pod when known, else the cgroup
 * path itself. Returns `buf` (filled) or `cgroup_path`; NULL only when cgroup_path is NULL.
 */
const char *identity_caller_name(const char *cgroup_path, char *buf, size_t size);

/* Replace the current table with these pods (references taken). 0 or -ENOMEM. For the
 * watcher and for tests. */
int identity_publish(struct identity_pod *const *pods, size_t n);
/* Number of pods in the current table. */
size_t identity_count(void);

/*
 * Called (from the watcher's thread) after a published table changed what is known, so the
 * data plane can re-evaluate sources sooner than its periodic rescan. fn must not block.
 */
void identity_set_change_cb(void (*fn)(void *ctx), void *ctx);

struct identity_config {
	const char *kube_api; /* NULL = in-cluster */
	const char *token_file; /* NULL = in-cluster default */
	const char *ca_file; /* NULL = in-cluster default */
	const char *node_name; /* pods of this node only; required */
	int backoff_max_ms; /* 0 = 30000 */
	int watch_timeout_s; /* server-side watch timeout; 0 = 300 */
};

/* Start the list/watch thread. 0, -ENOENT (no API configured or found), -EINVAL, -errno. */
int identity_start(const struct identity_config *cfg);
/* Stop the thread (joins it) and drop the table. Safe when not started. */
void identity_stop(void);
/* Whether the first full list has been received since start. */
bool identity_synced(void);

#endif
