/* SPDX-License-Identifier: Apache-2.0 */
/*
 * meshmask-agent: the node daemon. Parses the flags (one table: name, bounds, destination,
 * help) and wires the layers: the policy store, the admin API (libmicrohttpd's threads), the
 * audit log, pod identity, the data plane (BPF + proxy event loop on the main thread) and the
 * TLS capture. docs/architecture.md maps the layers.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <sys/resource.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "admin.h"
#include "audit.h"
#include "cgroup.h"
#include "cluster.h"
#include "dataplane.h"
#include "identity.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"
#include "store.h"
#include "tls.h"
#include "workers.h"

/* The command line: the flag table writes straight into each layer's own config struct. */
struct agent_config {
	struct store_config store;
	struct admin_config admin;
	struct dataplane_config dp;
	struct tls_config tls;
	struct identity_config identity;
	struct cluster_config cluster;
	const char *key_dir, *audit_log;
	bool no_bpf, no_kube, no_cluster_policies;
	size_t memory_budget_mb;
	enum agent_log_level log_level;
};

/* Timestamped lines on stderr (the container log). */
static void log_to_stderr(enum agent_log_level level, const char *msg)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s: %s\n", tm.tm_year + 1900,
		tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
		agent_log_level_name(level), msg);
}

/* libbpf's own messages into the agent log: warnings as warnings, the rest at debug. */
static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	enum agent_log_level l = level == LIBBPF_WARN ? AGENT_LOG_WARN : AGENT_LOG_DEBUG;
	if (level == LIBBPF_DEBUG || !agent_log_enabled(l))
		return 0;
	char line[512];
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	size_t len = strnlen(line, sizeof(line));
	while (len && line[len - 1] == '\n')
		line[--len] = 0;
	agent_log(l, "libbpf: %s", line);
	return n;
}

/* The CPUs this process may run on (its affinity mask), at most WORKERS_MAX. */
static unsigned default_workers(void)
{
	cpu_set_t set;
	int n = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
	return n < 1 ? 1 : n > WORKERS_MAX ? WORKERS_MAX : (unsigned)n;
}

/*
 * A quarter of this process's cgroup memory limit (memory.max of its cgroup v2 directory), in
 * MiB, or 512 when there is none. A quarter: each connection's own state (~40-46 KiB: masking
 * stream, HTTP session, a wake-up's buffers) comes on top, and 5,000 connections under a
 * 512 MiB limit peaked at ~510 MiB with half of it (docs/reliability.md).
 */
static size_t default_budget_mb(void)
{
	char root[4096], dir[4096], path[4200], buf[64];
	size_t mb = 512;
	if (cgroup_find_root(root, sizeof(root)) < 0 || cgroup_self(root, dir, sizeof(dir)) < 0)
		return mb;
	snprintf(path, sizeof(path), "%s/memory.max", dir);
	FILE *f = fopen(path, "re");
	if (f && fgets(buf, sizeof(buf), f)) {
		char *end;
		unsigned long long v = strtoull(buf, &end, 10);
		if (end != buf && v >= (64ull << 20))
			mb = (size_t)(v >> 22);
	}
	if (f)
		fclose(f);
	return mb;
}

/* ---- flags ---- */

enum flag_kind {
	F_STR, /* const char * */
	F_BOOL, /* bool, set by the flag's presence */
	F_U16, /* uint16_t within [min, max] */
	F_U32, /* uint32_t within [min, max] */
	F_SIZE, /* size_t within [min, max] */
	F_POW2, /* uint32_t power of two within [min, max] */
	F_NAME, /* const char *, a single path component */
	F_LEVEL, /* enum agent_log_level */
};

struct flag {
	const char *name;
	enum flag_kind kind;
	size_t off; /* of the destination in struct agent_config */
	long long min, max;
	const char *arg; /* the argument's name in --help; NULL for F_BOOL */
	const char *help;
};

#define CFG(field) offsetof(struct agent_config, field)

static const struct flag flags[] = {
	{"policies", F_STR, CFG(store.policies_dir), 0, 0, "DIR",
	 "policy files, hot-reloaded (default /etc/meshmask/policies)"},
	{"state-dir", F_STR, CFG(store.state_dir), 0, 0, "DIR",
	 "pushed policies persist here (default /var/lib/meshmask)"},
	{"key-dir", F_STR, CFG(key_dir), 0, 0, "DIR",
	 "the only directory keyFile may name (default /etc/meshmask/keys); keyEnv may name "
	 "MESHMASK_* variables only"},
	{"admin", F_STR, CFG(admin.addr), 0, 0, "HOST:PORT",
	 "admin API and /metrics (default 127.0.0.1:9477)"},
	{"token-file", F_STR, CFG(admin.token_file), 0, 0, "F", "bearer token for admin writes"},
	{"detokenize-token-file", F_STR, CFG(admin.detokenize_token_file), 0, 0, "F",
	 "bearer token for POST /v1/detokenize, which takes no other (else the endpoint is off)"},
	{"tls-cert", F_STR, CFG(admin.tls_cert), 0, 0, "F", "serve the admin API over HTTPS (with --tls-key)"},
	{"tls-key", F_STR, CFG(admin.tls_key), 0, 0, "F", "the private key of --tls-cert"},
	{"public-read", F_BOOL, CFG(admin.public_read), 0, 0, NULL, "allow policy reads without a token"},
	{"admin-max-body", F_SIZE, CFG(admin.max_body), 1024, 64ll << 20, "N",
	 "admin request body limit in bytes (default 1048576)"},
	{"admin-request-timeout", F_U32, CFG(admin.request_timeout), 1, 3600, "SECS",
	 "close an admin connection whose request is not received and answered within SECS "
	 "(default 30)"},
	{"audit-log", F_STR, CFG(audit_log), 0, 0, "F|-", "audit log (default - = stdout)"},
	{"cgroup-root", F_STR, CFG(dp.cgroup_root), 0, 0, "DIR",
	 "cgroup v2 mount (default: from /proc/self/mountinfo)"},
	{"bpffs", F_STR, CFG(dp.bpffs), 0, 0, "DIR", "bpffs mount (default /sys/fs/bpf)"},
	{"proxy-port", F_U16, CFG(dp.proxy_port), 1, 65535, "N",
	 "agent listener port in covered netns (default 15101)"},
	{"no-bpf", F_BOOL, CFG(no_bpf), 0, 0, NULL, "control plane only: no steering"},
	{"attach-cgroup", F_STR, CFG(dp.attach_cgroup), 0, 0, "DIR",
	 "cgroup the BPF programs attach to (default: cgroup root)"},
	{"instance", F_NAME, CFG(dp.instance), 0, 0, "NAME",
	 "pin directory <bpffs>/meshmask/NAME (default \"default\")"},
	{"detach-on-exit", F_BOOL, CFG(dp.detach_on_exit), 0, 0, NULL,
	 "at clean shutdown remove the BPF steering (uninstall)"},
	{"max-callers", F_U32, CFG(dp.callers_max), 1, 1 << 20, "N",
	 "cgroups the steering map holds (default 16384); more follow failureMode"},
	{"workers", F_U32, CFG(dp.workers), 1, WORKERS_MAX, "N",
	 "data-path threads, each owning its connections (default: the CPUs the agent may run "
	 "on, at most 16)"},
	{"splice", F_BOOL, CFG(dp.splice), 0, 0, NULL,
	 "pass responses to apps through an sk_msg splice of the loopback hop instead of TCP "
	 "(lower latency; off by default)"},
	{"no-zero-copy", F_BOOL, CFG(dp.no_zero_copy), 0, 0, NULL,
	 "copy bytes no rule covers through the agent instead of splice(2) from socket to "
	 "socket (for comparison)"},
	{"idle-timeout", F_U32, CFG(dp.idle_timeout), 1, 86400, "SECS",
	 "close proxied connections idle this long (default 300)"},
	{"head-timeout", F_U32, CFG(dp.head_timeout), 1, 3600, "SECS",
	 "a request head must be complete this long after its first byte (the first one after "
	 "the connection opens): else answered 408 and closed (default 10)"},
	{"busy-poll-us", F_U32, CFG(dp.busy_poll_us), 0, 1000, "N",
	 "after traffic, keep polling for N us before sleeping: lower latency on idle CPUs, "
	 "costs CPU (default 0)"},
	{"max-head-bytes", F_SIZE, CFG(dp.max_head_bytes), 1024, 1 << 20, "N",
	 "largest HTTP/1.1 request or response head (line and fields, default 65536): a larger "
	 "request is answered 431, a larger response 502"},
	{"max-headers", F_SIZE, CFG(dp.max_headers), 1, 10000, "N",
	 "most header (and trailer) field lines of an HTTP/1.1 message (default 100, as Envoy and "
	 "HAProxy): more is answered 431 for a request, 502 for a response"},
	{"max-connections", F_SIZE, CFG(dp.max_connections), 1, 1 << 22, "N",
	 "proxied connections on the node (default: what the open-file limit allows, 3 fds "
	 "each); past it new flagged connections follow failureMode"},
	{"max-connections-per-pod", F_SIZE, CFG(dp.max_connections_per_pod), 1, 1 << 22, "N",
	 "proxied connections from one caller pod (default a quarter of --max-connections); past "
	 "it that pod's new flagged connections follow failureMode"},
	{"memory-budget-mb", F_SIZE, CFG(memory_budget_mb), 16, 1 << 20, "N",
	 "MiB that masked bodies held for an exact Content-Length and send queues may take "
	 "together (default a quarter of the container's memory limit, else 512); past it bodies "
	 "stream and connections read 16 KiB at a time"},
	{"grpc-max-message-kb", F_U32, CFG(dp.grpc_max_message_kb), 1, 262144, "N",
	 "largest gRPC message masked, in KiB (default 4096 as gRPC's own); a larger one follows "
	 "onError"},
	{"tls-ring-kb", F_POW2, CFG(tls.ring_kb), 64, 262144, "N",
	 "TLS capture ring buffer in KiB, a power of two (default 8192; records that find it full "
	 "are counted as dropped)"},
	{"tls-node-wide", F_BOOL, CFG(tls.node_wide), 0, 0, NULL,
	 "probe every process that maps a libssl, not only covered ones (a short-lived covered "
	 "process never misses its first records; uncovered processes pay the uprobe traps)"},
	{"tls-public-entry", F_BOOL, CFG(tls.public_entry), 0, 0, NULL,
	 "probe OpenSSL's public SSL_read/SSL_write entry points instead of the shared bodies "
	 "they call (for an OpenSSL build where the bodies are not found right)"},
	{"tls-syscall-attribution", F_BOOL, CFG(tls.syscall_attribution), 0, 0, NULL,
	 "name TLS connections at syscall entry instead of the socket tracepoints (kernels "
	 "without them; costs every process on the node)"},
	{"log-level", F_LEVEL, CFG(log_level), 0, 0, "L", "error|warn|info|debug (default info)"},
	{"kube-api", F_STR, CFG(identity.kube_api), 0, 0, "URL",
	 "Kubernetes API for pod identity (default: in-cluster)"},
	{"kube-token-file", F_STR, CFG(identity.token_file), 0, 0, "F",
	 "API bearer token, re-read on reconnect (default: SA token)"},
	{"kube-ca-file", F_STR, CFG(identity.ca_file), 0, 0, "F",
	 "CA bundle of the API server (default: SA ca.crt)"},
	{"node-name", F_STR, CFG(identity.node_name), 0, 0, "NAME", "pods of this node (default $NODE_NAME)"},
	{"no-kube", F_BOOL, CFG(no_kube), 0, 0, NULL,
	 "no Kubernetes API: sources match cgroup paths only, no policy resources"},
	{"no-cluster-policies", F_BOOL, CFG(no_cluster_policies), 0, 0, NULL,
	 "do not watch MaskingPolicy / ClusterMaskingPolicy resources"},
	{"status-delay-ms", F_U32, CFG(cluster.status_delay_ms), 10, 60000, "MS",
	 "gather policy changes this long before writing the node's status (default 200)"},
	{"lease-namespace", F_STR, CFG(cluster.lease_ns), 0, 0, "NS",
	 "be a candidate to write the policies' summary status (\"in force on N of M nodes\"), "
	 "elected by a Lease in NS (default $POD_NAMESPACE; none: never)"},
	{"lease-name", F_NAME, CFG(cluster.lease_name), 0, 0, "NAME",
	 "that Lease's name (default meshmask-policy-status)"},
	{"lease-seconds", F_U32, CFG(cluster.lease_s), 2, 300, "S",
	 "lease duration: a holder that stops renewing is replaced after it (default 15)"},
	{"agent-selector", F_STR, CFG(cluster.agent_selector), 0, 0, "LABELS",
	 "the agents' Pods in the lease namespace (a label selector): the summary counts a node "
	 "whose agent Pod is not Ready as not in force"},
	{"agent-grace-seconds", F_U32, CFG(cluster.agent_grace_s), 1, 86400, "S",
	 "after this long not Ready (default 300: a rolling restart does not count)"},
	{"summary-interval-ms", F_U32, CFG(cluster.summary_interval_ms), 50, 60000, "MS",
	 "gather node reports this long before summing them into the policies' status (default "
	 "1000)"},
};

#define N_FLAGS (sizeof(flags) / sizeof(flags[0]))
enum { O_VERSION = 1000, O_HELP };

/* --help from the table: "  --name ARG" then the help folded at 100 columns. */
static void usage(FILE *f)
{
	fputs("usage: meshmask-agent [options]\n", f);
	for (size_t i = 0; i < N_FLAGS; i++) {
		const struct flag *fl = &flags[i];
		char left[64];
		int n = snprintf(left, sizeof(left), "  --%s%s%s", fl->name, fl->arg ? " " : "",
				 fl->arg ? fl->arg : "");
		fputs(left, f);
		int col = n;
		if (col >= 30) {
			fputs("\n", f);
			col = 0;
		}
		fprintf(f, "%*s", 30 - col, "");
		col = 30;
		const char *h = fl->help;
		while (*h) {
			const char *sp = strchr(h, ' ');
			size_t w = sp ? (size_t)(sp - h) : strlen(h);
			if (col > 30 && col + 1 + (int)w > 80) {
				fprintf(f, "\n%30s", "");
				col = 30;
			} else if (col > 30) {
				fputc(' ', f);
				col++;
			}
			fwrite(h, 1, w, f);
			col += (int)w;
			h += w;
			while (*h == ' ')
				h++;
		}
		fputc('\n', f);
	}
	fputs("  --version, --help\n", f);
}

/* Parse `arg` for `fl` into cfg. 0, or 2 after a message on stderr. */
static int set_flag(const struct flag *fl, const char *arg, struct agent_config *cfg)
{
	void *dst = (char *)cfg + fl->off;
	char *end;
	long long v = 0;
	switch (fl->kind) {
	case F_STR:
		*(const char **)dst = arg;
		return 0;
	case F_BOOL:
		*(bool *)dst = true;
		return 0;
	case F_NAME:
		if (!arg[0] || strchr(arg, '/') || !strcmp(arg, ".") || !strcmp(arg, "..")) {
			fprintf(stderr, "meshmask-agent: --%s: bad name %s\n", fl->name, arg);
			return 2;
		}
		*(const char **)dst = arg;
		return 0;
	case F_LEVEL:
		for (int l = AGENT_LOG_ERROR; l <= AGENT_LOG_DEBUG; l++) {
			if (!strcmp(arg, agent_log_level_name(l))) {
				*(enum agent_log_level *)dst = l;
				return 0;
			}
		}
		fprintf(stderr, "meshmask-agent: --%s: unknown level %s\n", fl->name, arg);
		return 2;
	case F_U16:
	case F_U32:
	case F_SIZE:
	case F_POW2:
		errno = 0;
		v = strtoll(arg, &end, 10);
		if (!*arg || *end || errno || v < fl->min || v > fl->max ||
		    (fl->kind == F_POW2 && (v & (v - 1)))) {
			fprintf(stderr, "meshmask-agent: --%s: %s%lld..%lld, not %s\n", fl->name,
				fl->kind == F_POW2 ? "a power of two, " : "", fl->min, fl->max, arg);
			return 2;
		}
		if (fl->kind == F_U16)
			*(uint16_t *)dst = (uint16_t)v;
		else if (fl->kind == F_SIZE)
			*(size_t *)dst = (size_t)v;
		else
			*(uint32_t *)dst = (uint32_t)v;
		return 0;
	}
	return 2;
}

static int parse_args(int argc, char **argv, struct agent_config *cfg)
{
	struct option opts[N_FLAGS + 3];
	for (size_t i = 0; i < N_FLAGS; i++)
		opts[i] = (struct option){flags[i].name,
					  flags[i].kind == F_BOOL ? no_argument : required_argument,
					  NULL, (int)i};
	opts[N_FLAGS] = (struct option){"version", no_argument, NULL, O_VERSION};
	opts[N_FLAGS + 1] = (struct option){"help", no_argument, NULL, O_HELP};
	opts[N_FLAGS + 2] = (struct option){0};
	int c, r;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c >= 0 && (size_t)c < N_FLAGS) {
			if ((r = set_flag(&flags[c], optarg, cfg)))
				return r;
		} else if (c == O_VERSION) {
			printf("meshmask-agent %s\n", MESHMASK_VERSION);
			exit(0);
		} else if (c == O_HELP) {
			usage(stdout);
			exit(0);
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "meshmask-agent: unexpected argument: %s\n", argv[optind]);
		return 2;
	}
	if (!cfg->admin.tls_cert != !cfg->admin.tls_key) {
		fprintf(stderr, "meshmask-agent: --tls-cert and --tls-key go together\n");
		return 2;
	}
	if (!cfg->admin.token_file && access("/etc/meshmask/admin/token", R_OK) == 0)
		cfg->admin.token_file = "/etc/meshmask/admin/token";
	if (!cfg->identity.node_name && getenv("NODE_NAME") && *getenv("NODE_NAME"))
		cfg->identity.node_name = getenv("NODE_NAME");
	if (!cfg->cluster.lease_ns && getenv("POD_NAMESPACE") && *getenv("POD_NAMESPACE"))
		cfg->cluster.lease_ns = getenv("POD_NAMESPACE");
	cfg->tls.cgroup_root = cfg->dp.cgroup_root;
	return 0;
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

/* Pod identity for namespace/serviceAccount/labels sources; without it they match nothing. */
static void start_identity(const struct agent_config *cfg)
{
	if (cfg->no_kube || cfg->no_bpf) /* only steering and its audit events use it */
		return;
	if (!cfg->identity.kube_api && !getenv("KUBERNETES_SERVICE_HOST")) {
		agent_log(AGENT_LOG_INFO, "identity: no Kubernetes API (not in a cluster, no "
					  "--kube-api): sources match on cgroup paths only");
		return;
	}
	if (!cfg->identity.node_name) {
		agent_log(AGENT_LOG_WARN, "identity: no --node-name or NODE_NAME: sources naming a "
					  "namespace, serviceAccount or labels match nothing");
		return;
	}
	int r = identity_start(&cfg->identity);
	if (r < 0)
		agent_log(AGENT_LOG_WARN,
			  "identity: not started: %s (check --kube-api, --node-name)",
			  strerror(-r));
	else
		agent_log(AGENT_LOG_INFO, "identity: watching the pods of node %s",
			  cfg->identity.node_name);
}

/* MaskingPolicy / ClusterMaskingPolicy resources into the store, and this node's status. */
static struct cluster *start_cluster(const struct agent_config *cfg, struct store *st)
{
	if (cfg->no_kube || cfg->no_cluster_policies)
		return NULL;
	if (!cfg->identity.kube_api && !getenv("KUBERNETES_SERVICE_HOST"))
		return NULL; /* not in a cluster: logged by start_identity */
	if (!cfg->identity.node_name) {
		agent_log(AGENT_LOG_WARN, "policies: no --node-name or NODE_NAME: policy resources "
					  "are not watched");
		return NULL;
	}
	/* The same API, credentials and node as pod identity. */
	struct cluster_config cc = cfg->cluster;
	cc.kube_api = cfg->identity.kube_api;
	cc.token_file = cfg->identity.token_file;
	cc.ca_file = cfg->identity.ca_file;
	cc.node_name = cfg->identity.node_name;
	struct cluster *c = NULL;
	int r = cluster_start(&c, &cc, st);
	if (r < 0)
		agent_log(AGENT_LOG_WARN, "policies: resources not watched: %s", strerror(-r));
	else
		agent_log(AGENT_LOG_INFO, "policies: watching MaskingPolicy and ClusterMaskingPolicy "
					  "resources for node %s", cfg->identity.node_name);
	return c;
}

int main(int argc, char **argv)
{
	struct agent_config cfg = {
		.store = {.policies_dir = "/etc/meshmask/policies", .state_dir = "/var/lib/meshmask"},
		.admin = {.addr = "127.0.0.1:9477"},
		.dp = {.bpffs = "/sys/fs/bpf", .proxy_port = 15101, .instance = "default"},
		.key_dir = "/etc/meshmask/keys",
		.audit_log = "-",
		.log_level = AGENT_LOG_INFO,
	};
	int r = parse_args(argc, argv, &cfg);
	if (r)
		return r;
	agent_log_set_level(cfg.log_level);
	agent_log_set_sink(log_to_stderr);
	libbpf_set_print(libbpf_print);

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
	 * Connection caps from the open-file limit: two sockets and, while a large body passes
	 * through, a pipe per connection; 1024 descriptors kept for the rest of the agent.
	 */
	struct dataplane_config *dp = &cfg.dp;
	if (!dp->max_connections && getrlimit(RLIMIT_NOFILE, &nofile) == 0)
		dp->max_connections = nofile.rlim_cur > 1024 + 3 * 64 ? (nofile.rlim_cur - 1024) / 3
								      : 64;
	if (dp->max_connections > (1u << 22))
		dp->max_connections = 1u << 22;
	if (!dp->max_connections_per_pod)
		dp->max_connections_per_pod = dp->max_connections / 4 ? dp->max_connections / 4 : 1;
	if (!dp->workers)
		dp->workers = default_workers();
	dp->memory_budget = (cfg.memory_budget_mb ? cfg.memory_budget_mb : default_budget_mb())
			    << 20;
	/*
	 * Held bodies (up to hold_body each) are the agent's large allocations. A fixed mmap
	 * threshold hands each back to the system when its message is sent; glibc's default
	 * raises the threshold after the first such free, and the heap then keeps the peak.
	 */
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);

	struct store *st = NULL;
	struct cluster *cl = NULL;
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
	/* Before any policy is read: a policy (pushed ones too) names keys of this node only. */
	if ((r = policy_confine_keys(cfg.key_dir, "MESHMASK_")) < 0) {
		agent_log(AGENT_LOG_ERROR, "--key-dir: %s", strerror(-r));
		goto out_audit;
	}
	if ((r = store_open(&st, &cfg.store)) < 0)
		goto out_audit; /* logged by the store */
	start_identity(&cfg);
	cl = start_cluster(&cfg, st);
	if (!cfg.no_bpf && dataplane_start(&g_dp, &cfg.dp, st) < 0)
		goto out_store;
	if (!cfg.no_bpf && tls_start(&tls, &cfg.tls, st) < 0)
		goto out_dp;
	g_tls = tls;
	g_no_bpf = cfg.no_bpf;
	if (admin_start(&adm, &cfg.admin, st, node_status, NULL) < 0)
		goto out_dp;
	agent_log(AGENT_LOG_INFO, "meshmask-agent %s ready (admin %s%s)", MESHMASK_VERSION,
		  cfg.admin.addr, cfg.no_bpf ? ", no BPF" : "");

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
	cluster_stop(cl);
	identity_stop();
	store_close(st);
out_audit:
	audit_close();
	return rc;
}
