// SPDX-License-Identifier: Apache-2.0
/*
 * Test harness of the identity resolver (identity.c + kube.c, no BPF): starts the list/watch
 * thread against --kube-api and answers commands on stdin, one line each:
 *   lookup PATH                 -> "pod NS/NAME sa=SA labels=K=V,K=V" or "none"
 *   match PATH NS|- SA|- [K=V]  -> "yes" or "no" (identity_source_matches_cgroup)
 *   count | synced | changes    -> a number
 *   request METHOD PATH [CONTENT-TYPE BODY]
 *                               -> "status N BODY" or "error -ERRNO MESSAGE" (kube_request
 *                                  on a client of its own, bodies of at most 4096 bytes)
 *   quit
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "identity.h"
#include "kube.h"
#include "log.h"

static int changes; /* atomic */

static void on_change(void *ctx)
{
	__atomic_add_fetch(&changes, 1, __ATOMIC_RELAXED);
}

static void cmd_lookup(const char *path)
{
	struct identity_pod *p = identity_lookup_cgroup(path);
	if (!p) {
		puts("none");
		return;
	}
	printf("pod %s/%s sa=%s labels=", p->namespace_, p->name, p->service_account);
	for (size_t i = 0; i < p->n_labels; i++)
		printf("%s%s=%s", i ? "," : "", p->label_keys[i], p->label_values[i]);
	putchar('\n');
	identity_pod_unref(p);
}

static void cmd_match(char *args)
{
	char *save = NULL, *path = strtok_r(args, " ", &save);
	char *ns = strtok_r(NULL, " ", &save), *sa = strtok_r(NULL, " ", &save);
	char *keys[16], *vals[16];
	size_t n = 0;
	for (char *kv; n < 16 && (kv = strtok_r(NULL, " ", &save));) {
		char *eq = strchr(kv, '=');
		if (!eq)
			continue;
		*eq = 0;
		keys[n] = kv;
		vals[n++] = eq + 1;
	}
	if (!path || !ns || !sa) {
		puts("error");
		return;
	}
	struct policy_source src = {.namespace_ = strcmp(ns, "-") ? ns : NULL,
				    .service_account = strcmp(sa, "-") ? sa : NULL,
				    .label_keys = keys,
				    .label_values = vals,
				    .n_labels = n};
	puts(identity_source_matches_cgroup(&src, path) ? "yes" : "no");
}

static void cmd_request(const struct kube_config *kc, char *args)
{
	char *save = NULL, *method = strtok_r(args, " ", &save), *path = strtok_r(NULL, " ", &save);
	char *ctype = strtok_r(NULL, " ", &save), *body = strtok_r(NULL, "", &save);
	struct kube_client *c = kube_client_new(kc);
	if (!method || !path || !c) {
		puts("error");
		kube_client_free(c);
		return;
	}
	struct kube_response resp;
	int r = kube_request(c, method, path, ctype, body, body ? strlen(body) : 0, 4096, &resp);
	if (r < 0)
		printf("error %d %s\n", r, resp.error);
	else
		printf("status %d %s\n", resp.status, resp.body ? resp.body : "");
	kube_response_free(&resp);
	kube_client_free(c);
}

int main(int argc, char **argv)
{
	agent_log_set_level(AGENT_LOG_DEBUG);
	static const struct option opts[] = {
		{"kube-api", required_argument, NULL, 'a'},
		{"token-file", required_argument, NULL, 't'},
		{"ca-file", required_argument, NULL, 'c'},
		{"node-name", required_argument, NULL, 'n'},
		{"backoff-max-ms", required_argument, NULL, 'b'},
		{0},
	};
	struct identity_config cfg = {0};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			cfg.kube_api = optarg;
			break;
		case 't':
			cfg.token_file = optarg;
			break;
		case 'c':
			cfg.ca_file = optarg;
			break;
		case 'n':
			cfg.node_name = optarg;
			break;
		case 'b':
			cfg.backoff_max_ms = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: identity_harness --kube-api URL --token-file F "
					"--ca-file F --node-name N [--backoff-max-ms MS]\n");
			return 2;
		}
	}
	identity_set_change_cb(on_change, NULL);
	int r = identity_start(&cfg);
	if (r < 0) {
		fprintf(stderr, "identity_start: %s\n", strerror(-r));
		return 1;
	}
	char line[4096];
	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\n")] = 0;
		if (!strncmp(line, "lookup ", 7))
			cmd_lookup(line + 7);
		else if (!strncmp(line, "match ", 6))
			cmd_match(line + 6);
		else if (!strcmp(line, "count"))
			printf("%zu\n", identity_count());
		else if (!strcmp(line, "synced"))
			printf("%d\n", identity_synced());
		else if (!strcmp(line, "changes"))
			printf("%d\n", __atomic_load_n(&changes, __ATOMIC_RELAXED));
		else if (!strncmp(line, "request ", 8))
			cmd_request(&(struct kube_config){.url = cfg.kube_api,
							  .token_file = cfg.token_file,
							  .ca_file = cfg.ca_file},
				    line + 8);
		else if (!strcmp(line, "quit"))
			break;
		else
			puts("error");
		fflush(stdout);
	}
	identity_stop();
	return 0;
}
