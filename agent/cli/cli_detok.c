/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `meshmask detokenize`: the values (arguments, or lines of stdin) go to the agent's POST
 * /v1/detokenize with the detokenize token; the originals come back one per line, an empty
 * line for a value that is no token of the rule (counted on stderr). HTTP through the CLI's
 * admin-API client (cli_remote.c).
 * The token is the detokenize token, not the admin token: --token-file, else
 * $MESHMASK_DETOKENIZE_TOKEN_FILE, else /etc/meshmask/detokenize/token.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <jansson.h>

#include "buf.h"
#include "cli_detok.h"
#include "cli_remote.h"

enum { RC_OK = 0, RC_USAGE = 2, RC_IO = 3 };

/* Lines of stdin appended to the array (a trailing CR is dropped). */
static int read_values(json_t *vals)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	while ((n = getline(&line, &cap, stdin)) >= 0) {
		while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (json_array_append_new(vals, json_stringn(line, (size_t)n))) {
			free(line);
			return -EINVAL; /* not UTF-8 */
		}
	}
	free(line);
	return 0;
}

int cli_detokenize(int argc, char **argv)
{
	static const struct option opts[] = {
		{"policy", required_argument, NULL, 'p'},
		{"rule", required_argument, NULL, 'r'},
		CLI_REMOTE_LONGOPTS,
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *policy = NULL, *rule = NULL;
	struct cli_remote_cfg cfg = {.token_file = getenv("MESHMASK_DETOKENIZE_TOKEN_FILE")};
	bool as_json = false;
	struct cli_remote *remote = NULL;
	struct cli_reply rep = {0};
	char *body = NULL;
	json_t *req = NULL, *res = NULL;
	int c, rc = RC_IO;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (cli_remote_opt(c, optarg, &cfg))
			continue;
		switch (c) {
		case 'p':
			policy = optarg;
			break;
		case 'r':
			rule = optarg;
			break;
		case 'j':
			as_json = true;
			break;
		case 'h':
			printf("usage: meshmask %s\n", CLI_DETOKENIZE_USAGE);
			return RC_OK;
		default:
			goto usage;
		}
	}
	if (!policy || !rule)
		goto usage;
	/* The detokenize token, never the admin token the client would default to. */
	if (!cfg.token_file && access("/etc/meshmask/detokenize/token", R_OK) == 0)
		cfg.token_file = "/etc/meshmask/detokenize/token";
	if (!cfg.token_file) {
		fprintf(stderr,
			"meshmask: detokenize needs the detokenize token: --token-file F\n");
		return RC_USAGE;
	}

	req = json_pack("{s:s, s:s, s:[]}", "policy", policy, "rule", rule, "values");
	json_t *vals = json_object_get(req, "values");
	bool from_stdin = optind == argc || (optind + 1 == argc && !strcmp(argv[optind], "-"));
	for (int i = optind; !from_stdin && i < argc; i++)
		if (json_array_append_new(vals, json_string(argv[i]))) {
			fprintf(stderr, "meshmask: value %d is not UTF-8\n", i - optind + 1);
			rc = RC_USAGE;
			goto out;
		}
	if (from_stdin && read_values(vals)) {
		fprintf(stderr, "meshmask: stdin: a value is not UTF-8\n");
		rc = RC_USAGE;
		goto out;
	}
	body = json_dumps(req, JSON_COMPACT);
	if (!body || !(remote = cli_remote_new(&cfg)) ||
	    cli_remote_request(remote, "POST", "/v1/detokenize", "application/json", body,
			       strlen(body), NULL, &rep) < 0)
		goto out;
	if (rep.status != 200) {
		rc = cli_remote_report("detokenize", &rep);
		goto out;
	}
	json_error_t je;
	res = json_loadb(rep.body.data ? rep.body.data : "", rep.body.len, 0, &je);
	json_t *got = json_object_get(res, "values"), *v;
	if (!json_is_array(got) || json_array_size(got) != json_array_size(vals)) {
		fprintf(stderr, "meshmask: unexpected answer from the agent\n");
		goto out;
	}
	if (as_json) {
		fwrite(rep.body.data, 1, rep.body.len, stdout);
		putchar('\n');
	} else {
		size_t i, failed = 0;
		json_array_foreach(got, i, v)
		{
			if (json_is_string(v))
				fwrite(json_string_value(v), 1, json_string_length(v), stdout);
			else
				failed++;
			putchar('\n');
		}
		if (failed)
			fprintf(stderr, "meshmask: %zu of %zu values are no tokens of rule %s\n",
				failed, json_array_size(got), rule);
	}
	rc = fflush(stdout) ? RC_IO : RC_OK;
out:
	if (rep.body.data) /* the originals */
		OPENSSL_cleanse(rep.body.data, rep.body.cap);
	cli_reply_free(&rep);
	cli_remote_free(remote);
	free(body);
	json_decref(req);
	json_decref(res);
	return rc;
usage:
	fprintf(stderr, "usage: meshmask %s\n", CLI_DETOKENIZE_USAGE);
	return RC_USAGE;
}
