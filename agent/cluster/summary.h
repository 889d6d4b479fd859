/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The policies' summary status ("in force on N of M nodes"): written by one agent of the
 * cluster at a time, the holder of a coordination.k8s.io/v1 Lease. The holder watches the
 * MaskingPolicyNodeStatus objects (the other agents do not), sums them per policy and
 * server-side applies each policy's status subresource when its summary changed. M is the
 * number of MaskingPolicyNodeStatus objects: a node leaves with its Node object, whose
 * garbage collection deletes its status object (owner reference), and the holder sums again.
 * docs/deploy.md has the design and its cost.
 */
#ifndef MESHMASK_SUMMARY_H
#define MESHMASK_SUMMARY_H

#include <stddef.h>

#include "kube.h"

/* One policy resource as this agent knows it (borrowed strings, for one call). */
struct summary_policy {
	const char *kind; /* "MaskingPolicy" or "ClusterMaskingPolicy" */
	const char *ns; /* NULL for a ClusterMaskingPolicy */
	const char *name;
	long long generation;
	int rules; /* spec.rules entries */
	const char *ready; /* the Ready condition's status the resource carries ("" none) */
	const char *ready_since; /* and its lastTransitionTime */
};

/*
 * Called on the summary thread: hand the known policies to fn(arg, v, n) under the caller's
 * own lock (v and its strings live for the call only).
 */
typedef void (*summary_each_fn)(void *ctx,
				void (*fn)(void *arg, const struct summary_policy *v, size_t n),
				void *arg);

struct summary_config {
	struct kube_config kube; /* strings copied */
	const char *node; /* the holder identity */
	const char *lease_ns, *lease_name; /* lease_name NULL = "meshmask-policy-status" */
	int lease_s; /* lease duration; 0 = 15 (renewed every third of it) */
	int interval_ms; /* gather node-status changes this long before summing; 0 = 1000 */
	int watch_timeout_s; /* 0 = 300 */
	int backoff_max_ms; /* 0 = 30000 */
	/* The agents' Pods in lease_ns (a label selector, e.g. "app=meshmask"): a node whose agent
	   Pod has not been Ready for agent_grace_s (0 = 300) counts as not in force. NULL: off. */
	const char *agent_selector;
	int agent_grace_s;
};

struct summary;

/* Start the lease/summary thread. 0 or -errno. */
int summary_start(struct summary **out, const struct summary_config *cfg, summary_each_fn each,
		  void *ctx);
/* A policy changed (created, updated, deleted): sum again soon if holding the lease. */
void summary_kick(struct summary *s);
/* Stop (releasing the lease when held) and free; NULL is a no-op. */
void summary_stop(struct summary *s);

#endif
