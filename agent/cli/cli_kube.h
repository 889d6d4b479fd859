/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `meshmask policy push --cluster`: a policy written as a MaskingPolicy or ClusterMaskingPolicy
 * resource through the Kubernetes API server, with the caller's kubeconfig (its current
 * context: server, CA, bearer token or client certificate), by server-side apply. The HTTP
 * client is the agent's (identity/kube.c). Exit codes as cli_remote.h's.
 */
#ifndef MESHMASK_CLI_KUBE_H
#define MESHMASK_CLI_KUBE_H

#define CLI_POLICY_PUSH_CLUSTER_USAGE \
	"policy push --cluster [--kubeconfig F] [--context NAME] [-n NS] FILE..."

/* argv as the dispatch table passes it (argv[0] is "push"). */
int cli_policy_push_cluster(int argc, char **argv);

#endif
