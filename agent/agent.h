/* SPDX-License-Identifier: Apache-2.0 */
/* Configuration of meshmask-agent (its command line, see agent_main.c). */
#ifndef MESHMASK_AGENT_H
#define MESHMASK_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum agent_log_level { AGENT_LOG_ERROR, AGENT_LOG_WARN, AGENT_LOG_INFO, AGENT_LOG_DEBUG };

struct agent_config {
	const char *policies_dir; /* --policies, default /etc/meshmask/policies */
	const char *state_dir;    /* --state-dir, default /var/lib/meshmask */
	const char *admin_addr;   /* --admin HOST:PORT, default 127.0.0.1:9477 */
	const char *token_file;   /* --token-file, NULL = no token configured */
	const char
		*detokenize_token_file; /* --detokenize-token-file, NULL = no POST /v1/detokenize */
	const char *tls_cert, *tls_key;
	bool public_read;
	size_t admin_max_body; /* admin request body limit; 0 = 1 MiB */
	uint32_t admin_request_timeout; /* --admin-request-timeout SECS per request; 0 = 30 */
	const char *audit_log;   /* --audit-log, "-" = stdout */
	const char *cgroup_root; /* NULL = find in /proc/self/mountinfo */
	const char *bpffs;       /* default /sys/fs/bpf */
	uint16_t proxy_port;     /* default 15101 */
	bool no_bpf;
	const char *attach_cgroup; /* --attach-cgroup: where BPF attaches; NULL = cgroup root */
	const char *instance;      /* --instance: pins under <bpffs>/meshmask/<instance> */
	bool detach_on_exit;       /* --detach-on-exit: unpin and detach BPF at clean shutdown */
	bool splice; /* --splice: sk_msg splice of the agent->app loopback hop (off by default) */
	bool no_zero_copy; /* --no-zero-copy: copy pass-through bytes instead of splice(2) */
	uint32_t idle_timeout;     /* --idle-timeout SECS for proxied connections, 0 = 300 */
	uint32_t busy_poll_us;     /* --busy-poll-us: poll this long after traffic, 0 = off */
	uint32_t grpc_max_message_kb; /* --grpc-max-message-kb: 0 = 4096 (gRPC's default) */
	uint32_t tls_ring_kb; /* --tls-ring-kb: TLS capture ring buffer, 0 = TLS_RING_DEFAULT_KB */
	enum agent_log_level log_level;
	/* Pod identity (identity.c): the Kubernetes API, NULL = in-cluster from the env. */
	const char *kube_api;        /* --kube-api URL */
	const char *kube_token_file; /* --kube-token-file, NULL = ServiceAccount token */
	const char *kube_ca_file;    /* --kube-ca-file, NULL = ServiceAccount CA */
	const char *node_name;       /* --node-name, default $NODE_NAME */
	bool no_kube;                /* --no-kube: sources match on cgroup paths only */
};

/* printf-style log line to stderr with a level prefix; never pass traffic values to it. */
void agent_log(enum agent_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

extern enum agent_log_level agent_log_threshold;

#endif
