/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Policies as Kubernetes resources: lists and watches MaskingPolicy (every namespace) and
 * ClusterMaskingPolicy with the identity layer's client, hands each version to the policy store
 * (a namespaced policy is narrowed to callers of its own namespace first), and reports what
 * this node made of each in its own MaskingPolicyNodeStatus object (one per node, server-side
 * apply, one writer: no conflicts between nodes). docs/deploy.md has the design and its cost.
 */
#ifndef MESHMASK_CLUSTER_H
#define MESHMASK_CLUSTER_H

struct store;
struct cluster;

struct cluster_config {
	const char *kube_api; /* NULL = in-cluster */
	const char *token_file, *ca_file; /* NULL = the ServiceAccount's */
	const char *node_name; /* required: names this node's status object */
	int backoff_max_ms; /* list/watch retry backoff cap; 0 = 30000 */
	int watch_timeout_s; /* 0 = 300 */
	int status_delay_ms; /* gather changes this long before writing the status; 0 = 200 */
	/* The summary status of each policy (summary.h), by the holder of this Lease; no
	   lease_ns = never a candidate. */
	const char *lease_ns, *lease_name; /* lease_name NULL = "meshmask-policy-status" */
	int lease_s; /* 0 = 15 */
	int summary_interval_ms; /* 0 = 1000 */
	const char *agent_selector; /* the agents' Pods in lease_ns; NULL: readiness not used */
	int agent_grace_s; /* 0 = 300 */
};

/* Start the watch and status threads. 0 or -errno (-EINVAL without a node name). */
int cluster_start(struct cluster **out, const struct cluster_config *cfg, struct store *st);
/* Stop the threads (promptly, even inside a watch) and free; NULL is a no-op. */
void cluster_stop(struct cluster *c);

#endif
