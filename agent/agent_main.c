/* SPDX-License-Identifier: Apache-2.0 */
/*
 * meshmask-agent: the node daemon. Wires the policy store, the admin API (libmicrohttpd's
 * thread), the audit log and the data plane (BPF + proxy event loop on the main thread).
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "agent.h"
#include "audit.h"
#include "dataplane.h"
#include "identity.h"
#include "metrics.h"
#include "store.h"
#include "tls.h"

enum agent_log_level agent_log_threshold = AGENT_LOG_INFO;

void agent_log(enum agent_log_level level, const char *fmt, ...)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	if (level > agent_log_threshold)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	char line[1024];
	int n = snprintf(line, sizeof(line),
			 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s: ", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 ts.tv_nsec / 1000000, names[level]);
	va_list ap;
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(line))
		vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
}

static void usage(FILE *f)
{
	fputs("usage: meshmask-agent [options]\n"
	      "  --policies DIR       policy files, hot-reloaded (default /etc/meshmask/policies)\n"
	      "  --state-dir DIR      pushed policies persist here (default /var/lib/meshmask)\n"
	      "  --admin HOST:PORT    admin API and /metrics (default 127.0.0.1:9477)\n"
	      "  --token-file F       bearer token for admin writes\n"
	      "  --detokenize-token-file F  bearer token for POST /v1/detokenize (else it is off)\n"
	      "  --tls-cert F --tls-key F  serve the admin API over HTTPS\n"
	      "  --public-read        allow policy reads without a token\n"
	      "  --audit-log F|-      audit log (default - = stdout)\n"
	      "  --cgroup-root DIR    cgroup v2 mount (default: from /proc/self/mountinfo)\n"
	      "  --bpffs DIR          bpffs mount (default /sys/fs/bpf)\n"
	      "  --proxy-port N       agent listener port in covered netns (default 15101)\n"
	      "  --no-bpf             control plane only: no steering\n"
	      "  --attach-cgroup DIR  cgroup the BPF programs attach to (default: cgroup root)\n"
	      "  --instance NAME      pin directory <bpffs>/meshmask/NAME (default \"default\")\n"
	      "  --detach-on-exit     at clean shutdown remove the BPF steering (uninstall)\n"
	      "  --splice             pass responses to apps through an sk_msg splice of the\n"
	      "                       loopback hop instead of TCP (lower latency; off by default)\n"
	      "  --no-zero-copy       copy bytes no rule covers through the agent instead of\n"
	      "                       splice(2) from socket to socket (for comparison)\n"
	      "  --idle-timeout SECS  close proxied connections idle this long (default 300)\n"
	      "  --busy-poll-us N     after traffic, keep polling for N us (0..1000) before\n"
	      "                       sleeping: lower latency on idle CPUs, costs CPU (default 0)\n"
	      "  --grpc-max-message-kb N  largest gRPC message masked, in KiB (1..262144,\n"
	      "                       default 4096 as gRPC's own); a larger one follows onError\n"
	      "  --tls-ring-kb N      TLS capture ring buffer in KiB, a power of two 64..262144\n"
	      "                       (default 8192; records that find it full are counted as\n"
	      "                       dropped)\n"
	      "  --admin-max-body N   admin request body limit in bytes (default 1048576)\n"
	      "  --admin-request-timeout SECS  close an admin connection whose request is not\n"
	      "                       received and answered within SECS (default 30)\n"
	      "  --log-level L        error|warn|info|debug (default info)\n"
	      "  --kube-api URL       Kubernetes API for pod identity (default: in-cluster)\n"
	      "  --kube-token-file F  API bearer token, re-read on reconnect (default: SA token)\n"
	      "  --kube-ca-file F     CA bundle of the API server (default: SA ca.crt)\n"
	      "  --node-name NAME     pods of this node (default $NODE_NAME)\n"
	      "  --no-kube            no pod identity: sources match cgroup paths only\n"
	      "  --version, --help\n",
	      f);
}

static struct dataplane *g_dp;
static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
	if (g_dp)
		dataplane_request_stop(g_dp);
}

static struct tls *g_tls;
static bool g_no_bpf;

/* For /readyz: BPF attach state and which TLS enforce modes work here. */
static void node_status(void *ctx, struct admin_node_status *ns)
{
	(void)ctx;
	ns->bpf_enabled = !g_no_bpf;
	ns->bpf_attached = g_dp && dataplane_ready(g_dp);
	ns->tls_capture = g_tls != NULL;
	ns->tls_user_write = tls_inplace_available(g_tls);
	ns->tls_applies_inplace = false; /* not built (docs/tls.md): observed and audited */
	if (g_tls) {
		struct tls_stats ts;
		tls_get_stats(g_tls, &ts);
		ns->tls_applies_stop_rewrite = ts.stop_available;
	}
}

static int parse_args(int argc, char **argv, struct agent_config *cfg)
{
	enum {
		O_POLICIES = 256,
		O_STATE,
		O_ADMIN,
		O_TOKEN,
		O_DETOK_TOKEN,
		O_CERT,
		O_KEY,
		O_PUBLIC,
		O_AUDIT,
		O_CGROUP,
		O_BPFFS,
		O_PORT,
		O_NOBPF,
		O_LOG,
		O_ATTACH,
		O_INSTANCE,
		O_DETACH,
		O_SPLICE,
		O_BUSY_POLL,
		O_TLS_RING,
		O_NO_ZERO_COPY,
		O_IDLE,
		O_KUBE_API,
		O_KUBE_TOKEN,
		O_KUBE_CA,
		O_NODE,
		O_NO_KUBE,
		O_MAXBODY,
		O_GRPC_MAX,
		O_REQ_TIMEOUT,
		O_VERSION,
		O_HELP
	};
	static const struct option opts[] = {
		{"policies", required_argument, NULL, O_POLICIES},
		{"state-dir", required_argument, NULL, O_STATE},
		{"admin", required_argument, NULL, O_ADMIN},
		{"token-file", required_argument, NULL, O_TOKEN},
		{"detokenize-token-file", required_argument, NULL, O_DETOK_TOKEN},
		{"tls-cert", required_argument, NULL, O_CERT},
		{"tls-key", required_argument, NULL, O_KEY},
		{"public-read", no_argument, NULL, O_PUBLIC},
		{"audit-log", required_argument, NULL, O_AUDIT},
		{"cgroup-root", required_argument, NULL, O_CGROUP},
		{"bpffs", required_argument, NULL, O_BPFFS},
		{"proxy-port", required_argument, NULL, O_PORT},
		{"no-bpf", no_argument, NULL, O_NOBPF},
		{"log-level", required_argument, NULL, O_LOG},
		{"attach-cgroup", required_argument, NULL, O_ATTACH},
		{"instance", required_argument, NULL, O_INSTANCE},
		{"detach-on-exit", no_argument, NULL, O_DETACH},
		{"splice", no_argument, NULL, O_SPLICE},
		{"busy-poll-us", required_argument, NULL, O_BUSY_POLL},
		{"tls-ring-kb", required_argument, NULL, O_TLS_RING},
		{"grpc-max-message-kb", required_argument, NULL, O_GRPC_MAX},
		{"no-zero-copy", no_argument, NULL, O_NO_ZERO_COPY},
		{"idle-timeout", required_argument, NULL, O_IDLE},
		{"kube-api", required_argument, NULL, O_KUBE_API},
		{"kube-token-file", required_argument, NULL, O_KUBE_TOKEN},
		{"kube-ca-file", required_argument, NULL, O_KUBE_CA},
		{"node-name", required_argument, NULL, O_NODE},
		{"no-kube", no_argument, NULL, O_NO_KUBE},
		{"admin-max-body", required_argument, NULL, O_MAXBODY},
		{"admin-request-timeout", required_argument, NULL, O_REQ_TIMEOUT},
		{"version", no_argument, NULL, O_VERSION},
		{"help", no_argument, NULL, O_HELP},
		{0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case O_POLICIES:
			cfg->policies_dir = optarg;
			break;
		case O_STATE:
			cfg->state_dir = optarg;
			break;
		case O_ADMIN:
			cfg->admin_addr = optarg;
			break;
		case O_DETOK_TOKEN:
			cfg->detokenize_token_file = optarg;
			break;
		case O_TOKEN:
			cfg->token_file = optarg;
			break;
		case O_CERT:
			cfg->tls_cert = optarg;
			break;
		case O_KEY:
			cfg->tls_key = optarg;
			break;
		case O_PUBLIC:
			cfg->public_read = true;
			break;
		case O_AUDIT:
			cfg->audit_log = optarg;
			break;
		case O_CGROUP:
			cfg->cgroup_root = optarg;
			break;
		case O_BPFFS:
			cfg->bpffs = optarg;
			break;
		case O_PORT: {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > 65535) {
				fprintf(stderr, "meshmask-agent: --proxy-port: not a port: %s\n",
					optarg);
				return 2;
			}
			cfg->proxy_port = (uint16_t)v;
			break;
		}
		case O_NOBPF:
			cfg->no_bpf = true;
			break;
		case O_LOG:
			if (!strcmp(optarg, "error"))
				cfg->log_level = AGENT_LOG_ERROR;
			else if (!strcmp(optarg, "warn"))
				cfg->log_level = AGENT_LOG_WARN;
			else if (!strcmp(optarg, "info"))
				cfg->log_level = AGENT_LOG_INFO;
			else if (!strcmp(optarg, "debug"))
				cfg->log_level = AGENT_LOG_DEBUG;
			else {
				fprintf(stderr, "meshmask-agent: --log-level: unknown level %s\n",
					optarg);
				return 2;
			}
			break;
		case O_ATTACH:
			cfg->attach_cgroup = optarg;
			break;
		case O_INSTANCE:
			if (!optarg[0] || strchr(optarg, '/') || !strcmp(optarg, ".") ||
			    !strcmp(optarg, "..")) {
				fprintf(stderr, "meshmask-agent: --instance: bad name %s\n", optarg);
				return 2;
			}
			cfg->instance = optarg;
			break;
		case O_DETACH:
			cfg->detach_on_exit = true;
			break;
		case O_NO_ZERO_COPY:
			cfg->no_zero_copy = true;
			break;
		case O_SPLICE:
			cfg->splice = true;
			break;
		case O_BUSY_POLL: {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (!*optarg || *end || v < 0 || v > 1000) {
				fprintf(stderr, "meshmask-agent: --busy-poll-us: 0..1000\n");
				return 2;
			}
			cfg->busy_poll_us = (uint32_t)v;
			break;
		}
		case O_GRPC_MAX: {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (!*optarg || *end || v < 1 || v > 262144) {
				fprintf(stderr, "meshmask-agent: --grpc-max-message-kb: 1..262144\n");
				return 2;
			}
			cfg->grpc_max_message_kb = (uint32_t)v;
			break;
		}
		case O_TLS_RING: {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (!*optarg || *end || v < 64 || v > 262144 || (v & (v - 1))) {
				fprintf(stderr, "meshmask-agent: --tls-ring-kb: a power of two, "
						"64..262144\n");
				return 2;
			}
			cfg->tls_ring_kb = (uint32_t)v;
			break;
		}
		case O_IDLE: {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > 86400) {
				fprintf(stderr, "meshmask-agent: --idle-timeout: 1..86400 seconds\n");
				return 2;
			}
			cfg->idle_timeout = (uint32_t)v;
			break;
		}
		case O_MAXBODY: {
			char *end;
			unsigned long long v = strtoull(optarg, &end, 10);
			if (*end || v < 1024 || v > (64ull << 20)) {
				fprintf(stderr, "meshmask-agent: --admin-max-body: 1024..67108864 bytes\n");
				return 2;
			}
			cfg->admin_max_body = (size_t)v;
			break;
		}
		case O_REQ_TIMEOUT: {
			char *end;
			long v = strtol(optarg, &end, 10);
			if (*end || v < 1 || v > 3600) {
				fprintf(stderr, "meshmask-agent: --admin-request-timeout: 1..3600 "
						"seconds\n");
				return 2;
			}
			cfg->admin_request_timeout = (uint32_t)v;
			break;
		}
		case O_KUBE_API:
			cfg->kube_api = optarg;
			break;
		case O_KUBE_TOKEN:
			cfg->kube_token_file = optarg;
			break;
		case O_KUBE_CA:
			cfg->kube_ca_file = optarg;
			break;
		case O_NODE:
			cfg->node_name = optarg;
			break;
		case O_NO_KUBE:
			cfg->no_kube = true;
			break;
		case O_VERSION:
			printf("meshmask-agent %s\n", MESHMASK_VERSION);
			exit(0);
		case O_HELP:
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "meshmask-agent: unexpected argument: %s\n", argv[optind]);
		return 2;
	}
	if (!cfg->tls_cert != !cfg->tls_key) {
		fprintf(stderr, "meshmask-agent: --tls-cert and --tls-key go together\n");
		return 2;
	}
	if (!cfg->token_file && access("/etc/meshmask/admin/token", R_OK) == 0)
		cfg->token_file = "/etc/meshmask/admin/token";
	if (!cfg->node_name && getenv("NODE_NAME") && *getenv("NODE_NAME"))
		cfg->node_name = getenv("NODE_NAME");
	return 0;
}

/* Pod identity for namespace/serviceAccount/labels sources; without it they match nothing. */
static void start_identity(const struct agent_config *cfg)
{
	if (cfg->no_kube || cfg->no_bpf) /* only steering and its audit events use it */
		return;
	if (!cfg->kube_api && !getenv("KUBERNETES_SERVICE_HOST")) {
		agent_log(AGENT_LOG_INFO, "identity: no Kubernetes API (not in a cluster, no "
					  "--kube-api): sources match on cgroup paths only");
		return;
	}
	if (!cfg->node_name) {
		agent_log(AGENT_LOG_WARN, "identity: no --node-name or NODE_NAME: sources naming a "
					  "namespace, serviceAccount or labels match nothing");
		return;
	}
	struct identity_config ic = {.kube_api = cfg->kube_api,
				     .token_file = cfg->kube_token_file,
				     .ca_file = cfg->kube_ca_file,
				     .node_name = cfg->node_name};
	int r = identity_start(&ic);
	if (r < 0)
		agent_log(AGENT_LOG_WARN,
			  "identity: not started: %s (check --kube-api, --node-name)",
			  strerror(-r));
	else
		agent_log(AGENT_LOG_INFO, "identity: watching the pods of node %s", cfg->node_name);
}

int main(int argc, char **argv)
{
	struct agent_config cfg = {
		.policies_dir = "/etc/meshmask/policies",
		.state_dir = "/var/lib/meshmask",
		.admin_addr = "127.0.0.1:9477",
		.audit_log = "-",
		.bpffs = "/sys/fs/bpf",
		.proxy_port = 15101,
		.instance = "default",
		.log_level = AGENT_LOG_INFO,
	};
	int r = parse_args(argc, argv, &cfg);
	if (r)
		return r;
	agent_log_threshold = cfg.log_level;

	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/*
	 * Two sockets per proxied connection, and a pipe per direction while a large body passes
	 * through: take the hard limit on open files, not the (often 1024) soft one.
	 */
	struct rlimit nofile;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
		nofile.rlim_cur = nofile.rlim_max;
		setrlimit(RLIMIT_NOFILE, &nofile);
	}
	/*
	 * Held bodies (up to hold_body each) are the agent's large allocations. A fixed mmap
	 * threshold hands each back to the system when its message is sent; glibc's default
	 * raises the threshold after the first such free, and the heap then keeps the peak.
	 */
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);

	struct store *st = NULL;
	struct admin *adm = NULL;
	struct tls *tls = NULL;
	int rc = 1;

	if ((r = metrics_init()) < 0) {
		agent_log(AGENT_LOG_ERROR, "metrics: %s", strerror(-r));
		return 1;
	}
	if ((r = audit_open(cfg.audit_log)) < 0) {
		agent_log(AGENT_LOG_ERROR, "audit log %s: %s", cfg.audit_log, strerror(-r));
		return 1;
	}
	if ((r = store_open(&st, &cfg)) < 0)
		goto out_audit; /* logged by the store */
	start_identity(&cfg);
	if (!cfg.no_bpf && dataplane_start(&g_dp, &cfg, st) < 0)
		goto out_store;
	if (!cfg.no_bpf && tls_start(&tls, &cfg, st) < 0)
		goto out_dp;
	g_tls = tls;
	g_no_bpf = cfg.no_bpf;
	if (admin_start(&adm, &cfg, st, node_status, NULL) < 0)
		goto out_dp;
	agent_log(AGENT_LOG_INFO, "meshmask-agent %s ready (admin %s%s)", MESHMASK_VERSION,
		  cfg.admin_addr, cfg.no_bpf ? ", no BPF" : "");

	if (g_dp) {
		rc = dataplane_run(g_dp) < 0;
	} else {
		while (!g_stop)
			pause();
		rc = 0;
	}
	agent_log(AGENT_LOG_INFO, "shutting down");
	admin_stop(adm);
out_dp:
	g_tls = NULL;
	tls_stop(tls);
	if (g_dp)
		dataplane_free(g_dp);
	g_dp = NULL;
out_store:
	identity_stop();
	store_close(st);
out_audit:
	audit_close();
	return rc;
}
