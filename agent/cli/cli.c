/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `meshmask`: the engine and the policy language from the command line (dry runs, CI checks).
 * Exit codes: 0 ok, 1 invalid policy, 2 usage, 3 input/output error, 4 blocked by onError=block,
 * 5 refused by the agent (policy push|get|list|delete, see cli_remote.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "buf.h"
#include "mask.h"
#include "pbmask.h"
#include "pbschema.h"
#include "policy.h"
#include "cli_remote.h"
#include "cli_detok.h"
#include "cli_kube.h"

enum { EXIT_OK = 0, EXIT_POLICY = 1, EXIT_USAGE = 2, EXIT_IO = 3, EXIT_BLOCKED = 4 };

#define CLI_READ_SIZE (64 * 1024)
/* One gRPC message is held whole; gRPC's own default maximum is 4 MiB, this allows more. */
#define CLI_GRPC_MAX (64u << 20)
#define CLI_MAX_DESCRIPTOR_SETS 64

struct cli_cmd {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *usage;
};

static const char *prog = "meshmask";

static int usage_error(const char *usage, const char *fmt, const char *arg)
{
	if (fmt) {
		fprintf(stderr, "%s: ", prog);
		fprintf(stderr, fmt, arg);
		fputc('\n', stderr);
	}
	fprintf(stderr, "usage: %s %s\n", prog, usage);
	return EXIT_USAGE;
}

static int stdout_sink(void *ctx, const char *p, size_t n)
{
	(void)ctx;
	while (n) {
		ssize_t w = write(STDOUT_FILENO, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * Stats as one JSON object on stderr. Counts and names only, never a value from the input.
 * `reason` and `method` may be NULL.
 */
static void print_stats_of(const struct policy *pol, const struct mask_stats *st,
			   const char *outcome, const char *reason, const char *method)
{
	json_t *o = json_object(), *rules = json_object(), *errs = json_object();

	json_object_set_new(o, "policy", json_string(pol->name ? pol->name : ""));
	json_object_set_new(o, "mode", json_string(policy_mode_name(pol->mode)));
	if (method)
		json_object_set_new(o, "method", json_string(method));
	json_object_set_new(o, "outcome", json_string(outcome));
	if (reason)
		json_object_set_new(o, "reason", json_string(reason));
	json_object_set_new(o, "bytes_in", json_integer((json_int_t)st->bytes_in));
	json_object_set_new(o, "bytes_out", json_integer((json_int_t)st->bytes_out));
	json_object_set_new(o, "bytes_scanned", json_integer((json_int_t)st->bytes_scanned));
	json_object_set_new(o, "values", json_integer((json_int_t)st->values));
	for (size_t i = 0; i < st->n_rules; i++) {
		json_t *r = json_object(), *ents = json_object();
		json_object_set_new(r, "values", json_integer((json_int_t)st->rules[i].values));
		for (int e = 0; e < MM_ENT__COUNT; e++)
			if (st->rules[i].by_entity[e])
				json_object_set_new(
					ents, mm_entity_name(e),
					json_integer((json_int_t)st->rules[i].by_entity[e]));
		json_object_set_new(r, "entities", ents);
		json_object_set_new(rules, pol->rules[i].name ? pol->rules[i].name : "", r);
	}
	json_object_set_new(o, "rules", rules);
	for (int k = 0; k < MM_REASON__COUNT; k++)
		if (st->errors[k])
			json_object_set_new(errs, mm_reason_name(k),
					    json_integer((json_int_t)st->errors[k]));
	json_object_set_new(o, "errors", errs);
	char *txt = json_dumps(o, JSON_COMPACT);
	if (txt)
		fprintf(stderr, "%s\n", txt);
	free(txt);
	json_decref(o);
}

static void print_stats(const struct policy *pol, const struct mask_stream *s)
{
	enum mm_reason r = mask_stream_reason(s);
	print_stats_of(pol, mask_stream_stats(s), mask_outcome_name(mask_stream_outcome(s)),
		       r != MM_REASON_NONE ? mm_reason_name(r) : NULL, NULL);
}

static struct policy *load_policy(const char *path, int *code)
{
	struct policy_errors errs = {0};
	if (access(path, R_OK) < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
		*code = EXIT_IO;
		return NULL;
	}
	struct policy *p = policy_load_file(path, &errs);
	if (!p) {
		if (errs.n)
			policy_errors_print(stderr, path, &errs);
		else
			fprintf(stderr, "%s: %s: %s\n", prog, path, strerror(errno));
		*code = errs.n ? EXIT_POLICY : EXIT_IO;
	}
	policy_errors_free(&errs);
	return p;
}

static const char mask_usage[] =
	"mask --policy FILE [--content-type T] [--content-encoding gzip|deflate]\n"
	"       [--direction request|response] [--stats] [FILE|-]\n"
	"  meshmask mask --grpc --method /pkg.Service/Method [--descriptor-set F]...\n"
	"       --policy FILE [--direction request|response] [--stats] [FILE|-]";

/* Read all of fd into b, at most `max` bytes: 0, -EFBIG or -errno. */
static int read_all(int fd, struct mm_buf *b, size_t max)
{
	for (;;) {
		int r = mm_buf_reserve(b, CLI_READ_SIZE);
		if (r)
			return r;
		ssize_t n = read(fd, b->data + b->len, CLI_READ_SIZE);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return 0;
		b->len += (size_t)n;
		if (b->len > max)
			return -EFBIG;
	}
}

struct grpc_opts {
	const char *method;
	const char *sets[CLI_MAX_DESCRIPTOR_SETS];
	size_t n_sets;
	uint32_t dir;
	bool stats;
};

/*
 * One binary protobuf message in, the masked message out, as the agent does with one gRPC
 * message: the method's type from the policy's descriptor sets and --descriptor-set; without
 * one, or when the bytes are not a message of that type, onError decides (fallback: the
 * same-length scan of pb_mask_raw).
 */
static int mask_grpc(struct policy *pol, const struct grpc_opts *g, int fd, const char *in_name)
{
	const char *paths[2 * CLI_MAX_DESCRIPTOR_SETS];
	size_t n = 0, mlen = strlen(g->method);
	struct mask_stats st = {.n_rules = pol->n_rules};
	struct mm_buf in = {0}, out = {0};
	struct pb_schema *schema = NULL;
	const char *outcome = "masked", *reason = NULL;
	int code = EXIT_OK, r;
	char err[512];

	for (size_t i = 0; i < pol->n_pb_paths && n < CLI_MAX_DESCRIPTOR_SETS; i++)
		paths[n++] = pol->pb_paths[i];
	for (size_t i = 0; i < g->n_sets; i++)
		paths[n++] = g->sets[i];
	if (n && !(schema = pb_schema_load(paths, n, err, sizeof(err)))) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return errno == ENOMEM ? EXIT_IO : EXIT_POLICY;
	}
	if (pol->n_rules && !(st.rules = calloc(pol->n_rules, sizeof(*st.rules)))) {
		code = EXIT_IO;
		goto out;
	}
	if ((r = read_all(fd, &in, CLI_GRPC_MAX))) {
		fprintf(stderr, "%s: %s: %s\n", prog, in_name,
			r == -EFBIG ? "larger than 64 MiB" : strerror(-r));
		code = EXIT_IO;
		goto out;
	}
	const struct pb_msgtype *t = pb_schema_method(schema, g->method, mlen, g->dir);
	const char *method = pb_schema_method_name(schema, g->method, mlen);
	if (pol->directions && !(pol->directions & g->dir)) {
		/* A direction the policy does not cover passes unchanged. */
		r = mm_buf_append(&out, in.data, in.len);
	} else if (t && !(r = pb_mask_message(pol, t, in.data, in.len, &out, &st))) {
		/* masked */
	} else if (t && r != -EPROTO) {
		fprintf(stderr, "%s: %s\n", prog, strerror(-r));
		code = EXIT_IO;
		goto out;
	} else {
		reason = t ? "bad_protobuf" : "no_descriptor";
		mm_buf_reset(&out);
		r = 0;
		if (pol->on_error == POLICY_ONERR_PASS) {
			outcome = "passed";
			r = mm_buf_append(&out, in.data, in.len);
		} else if (pol->on_error == POLICY_ONERR_FALLBACK &&
			   pb_mask_raw(pol, in.data, in.len, &st) >= 0) {
			outcome = "fallback";
			r = mm_buf_append(&out, in.data, in.len);
		} else {
			outcome = "blocked";
		}
	}
	if (r) {
		code = EXIT_IO;
		goto out;
	}
	if (!strcmp(outcome, "blocked") && pol->mode != POLICY_MODE_OBSERVE) {
		fprintf(stderr, "%s: %s: blocked (%s, onError=%s)\n", prog, in_name, reason,
			pol->on_error == POLICY_ONERR_BLOCK ? "block" : "fallback");
		code = EXIT_BLOCKED;
	} else {
		if (!strcmp(outcome, "blocked")) /* observe never blocks */
			r = mm_buf_append(&out, in.data, in.len);
		if (r || (r = stdout_sink(NULL, out.data, out.len))) {
			fprintf(stderr, "%s: stdout: %s\n", prog, strerror(-r));
			code = EXIT_IO;
		}
	}
	if (g->stats) {
		st.bytes_in = in.len;
		st.bytes_out = code == EXIT_OK ? out.len : 0;
		print_stats_of(pol, &st, outcome, reason, method);
	}
out:
	free(st.rules);
	mm_buf_free(&in);
	mm_buf_free(&out);
	pb_schema_free(schema);
	return code;
}

static int cmd_mask(int argc, char **argv)
{
	static const struct option opts[] = {
		{"policy", required_argument, NULL, 'p'},
		{"content-type", required_argument, NULL, 't'},
		{"content-encoding", required_argument, NULL, 'e'},
		{"direction", required_argument, NULL, 'd'},
		{"stats", no_argument, NULL, 's'},
		{"grpc", no_argument, NULL, 'g'},
		{"descriptor-set", required_argument, NULL, 'D'},
		{"method", required_argument, NULL, 'm'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *policy_path = NULL, *ct = NULL, *ce = NULL, *in_path = "-";
	uint32_t dir = POLICY_DIR_RESPONSE;
	bool stats = false, grpc = false;
	struct grpc_opts g = {0};
	int c, code = EXIT_OK;

	optind = 1;
	while ((c = getopt_long(argc, argv, "p:t:e:d:sh", opts, NULL)) != -1) {
		switch (c) {
		case 'g':
			grpc = true;
			break;
		case 'D':
			if (g.n_sets == CLI_MAX_DESCRIPTOR_SETS)
				return usage_error(mask_usage, "%s", "too many --descriptor-set");
			g.sets[g.n_sets++] = optarg;
			break;
		case 'm':
			g.method = optarg;
			break;
		case 'p':
			policy_path = optarg;
			break;
		case 't':
			ct = optarg;
			break;
		case 'e':
			ce = optarg;
			break;
		case 's':
			stats = true;
			break;
		case 'd':
			if (!strcmp(optarg, "request"))
				dir = POLICY_DIR_REQUEST;
			else if (!strcmp(optarg, "response"))
				dir = POLICY_DIR_RESPONSE;
			else
				return usage_error(mask_usage, "bad --direction '%s'", optarg);
			break;
		case 'h':
			printf("usage: %s %s\n", prog, mask_usage);
			return EXIT_OK;
		default:
			return usage_error(mask_usage, NULL, NULL);
		}
	}
	if (!policy_path)
		return usage_error(mask_usage, "%s", "--policy is required");
	if (argc - optind > 1)
		return usage_error(mask_usage, "%s", "at most one input file");
	if (optind < argc)
		in_path = argv[optind];
	if (grpc && (ct || ce))
		return usage_error(mask_usage, "%s",
				   "--grpc takes no --content-type or --content-encoding");
	if (grpc && (!g.method || g.method[0] != '/'))
		return usage_error(mask_usage, "%s", "--grpc needs --method /pkg.Service/Method");
	if (!grpc && (g.method || g.n_sets))
		return usage_error(mask_usage, "%s", "--method and --descriptor-set need --grpc");

	struct policy *pol = load_policy(policy_path, &code);
	if (!pol)
		return code;
	int fd = STDIN_FILENO;
	const char *in_name = strcmp(in_path, "-") ? in_path : "stdin";
	if (strcmp(in_path, "-") && (fd = open(in_path, O_RDONLY | O_CLOEXEC)) < 0) {
		fprintf(stderr, "%s: %s: %s\n", prog, in_path, strerror(errno));
		policy_unref(pol);
		return EXIT_IO;
	}
	if (grpc) {
		g.dir = dir;
		g.stats = stats;
		code = mask_grpc(pol, &g, fd, in_name);
		if (fd != STDIN_FILENO)
			close(fd);
		policy_unref(pol);
		return code;
	}
	struct mask_opts mo = {
		.policy = pol, .direction = dir, .content_type = ct, .content_encoding = ce};
	struct mask_stream *s = mask_stream_new(&mo);
	char *buf = malloc(CLI_READ_SIZE);
	int r = 0;
	if (!s || !buf) {
		fprintf(stderr, "%s: %s\n", prog, strerror(ENOMEM));
		code = EXIT_IO;
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf, CLI_READ_SIZE);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "%s: %s: %s\n", prog, in_name, strerror(errno));
			code = EXIT_IO;
			goto out;
		}
		if (n == 0)
			break;
		if ((r = mask_stream_write(s, buf, (size_t)n, stdout_sink, NULL)))
			break;
	}
	if (!r)
		r = mask_stream_finish(s, stdout_sink, NULL);
	if (r == -EPROTO) {
		fprintf(stderr, "%s: %s: blocked (%s, onError=block)\n", prog, in_name,
			mm_reason_name(mask_stream_reason(s)));
		code = EXIT_BLOCKED;
	} else if (r) {
		fprintf(stderr, "%s: stdout: %s\n", prog, strerror(-r));
		code = EXIT_IO;
	}
	if (stats)
		print_stats(pol, s);
out:
	free(buf);
	mask_stream_free(s);
	if (fd != STDIN_FILENO)
		close(fd);
	policy_unref(pol);
	return code;
}

static const char validate_usage[] = "policy validate FILE...";

static int cmd_policy_validate(int argc, char **argv)
{
	int code = EXIT_OK;
	if (argc < 2)
		return usage_error(validate_usage, "%s", "no policy file given");
	for (int i = 1; i < argc; i++) {
		struct policy_errors errs = {0};
		struct policy *p = policy_load_file(argv[i], &errs);
		if (p) {
			printf("%s: ok\n", argv[i]);
			policy_unref(p);
		} else {
			if (errs.n)
				policy_errors_print(stderr, argv[i], &errs);
			else
				fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
			code = EXIT_POLICY;
		}
		policy_errors_free(&errs);
	}
	return code;
}

/* `meshmask policy <sub>`: add agent-facing subcommands (push, get, ...) to this table. */
static const struct cli_cmd policy_cmds[] = {
	{"validate", cmd_policy_validate, validate_usage},
	{"push", cli_policy_push, CLI_POLICY_PUSH_USAGE},
	{"get", cli_policy_get, CLI_POLICY_GET_USAGE},
	{"list", cli_policy_list, CLI_POLICY_LIST_USAGE},
	{"delete", cli_policy_delete, CLI_POLICY_DELETE_USAGE},
};

static const char policy_usage[] =
	"policy validate|push|get|list|delete ... (see policy SUB --help)";

static int cmd_policy(int argc, char **argv)
{
	if (argc < 2)
		return usage_error(policy_usage, "%s", "missing policy subcommand");
	for (size_t i = 0; i < sizeof(policy_cmds) / sizeof(policy_cmds[0]); i++)
		if (!strcmp(argv[1], policy_cmds[i].name))
			return policy_cmds[i].run(argc - 1, argv + 1);
	return usage_error(policy_usage, "unknown policy subcommand '%s'", argv[1]);
}

static int cmd_version(int argc, char **argv)
{
	printf("meshmask %s\n", MESHMASK_VERSION);
	return EXIT_OK;
}

static int cmd_help(int argc, char **argv);

static const struct cli_cmd cmds[] = {
	{"mask", cmd_mask, mask_usage},
	{"policy", cmd_policy, policy_usage},
	{"detokenize", cli_detokenize, CLI_DETOKENIZE_USAGE},
	{"version", cmd_version, "version"},
	{"help", cmd_help, "help"},
};

static int cmd_help(int argc, char **argv)
{
	printf("usage:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		printf("  %s %s\n", prog, cmds[i].usage);
	printf("\n"
	      "exit codes:\n"
	      "  0  success\n"
	      "  1  invalid policy: a local file, or a document the agent refused (400)\n"
	      "  2  usage error\n"
	      "  3  input/output error: a file, the agent unreachable, TLS, or an agent error\n"
	      "     (5xx or an unexpected answer)\n"
	      "  4  mask: the body was blocked (the policy says onError: block)\n"
	      "  5  the agent refused the request: 401/403 token missing, wrong or not\n"
	      "     configured, 404 no such policy, 409 the policy belongs to a file of the\n"
	      "     agent's --policies directory, 412 --if-match is stale, 413 too large\n"
	      "     (any other 4xx too)\n"
	      "\n"
	      "policy push|get|list|delete take --agent URL (default $MESHMASK_AGENT or\n"
	      "http://127.0.0.1:9477) and --token-file F (default $MESHMASK_TOKEN_FILE or\n"
	      "/etc/meshmask/admin/token)\n"
	      "detokenize takes the same --agent and --token-file F with the detokenize token\n"
	      "(default $MESHMASK_DETOKENIZE_TOKEN_FILE or /etc/meshmask/detokenize/token)\n"
	      "\n"
	      "  %s " CLI_POLICY_PUSH_CLUSTER_USAGE "\n"
	      "writes each FILE (YAML or JSON) as a MaskingPolicy or ClusterMaskingPolicy\n"
	      "resource through the Kubernetes API server (server-side apply, field manager\n"
	      "meshmask-cli) with the kubeconfig's context (--kubeconfig, else $KUBECONFIG,\n"
	      "else ~/.kube/config): exit 1 when the API server refuses the resource (422),\n"
	      "5 for 401/403/404/409, 3 for the network, TLS or 5xx\n",
	      prog);
	return EXIT_OK;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage_error("COMMAND ... (see --help)", NULL, NULL);
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return cmd_help(argc - 1, argv + 1);
	if (!strcmp(argv[1], "--version"))
		return cmd_version(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].run(argc - 1, argv + 1);
	return usage_error("COMMAND ... (see --help)", "unknown command '%s'", argv[1]);
}
