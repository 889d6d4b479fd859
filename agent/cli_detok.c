/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `meshmask detokenize`: the values (arguments, or lines of stdin) go to the agent's POST
 * /v1/detokenize with the detokenize token; the originals come back one per line, an empty
 * line for a value that is no token of the rule (counted on stderr). HTTP through libcurl.
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

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "buf.h"
#include "cli_detok.h"

enum { RC_OK = 0, RC_USAGE = 2, RC_IO = 3, RC_REFUSED = 5 };

#define DETOK_TIMEOUT_S 15
#define DETOK_REPLY_MAX (64u << 20)
#define DETOK_TOKEN_MAX 4096

static size_t on_data(char *p, size_t size, size_t n, void *ctx)
{
	struct mm_buf *b = ctx;
	if (b->len + size * n > DETOK_REPLY_MAX || mm_buf_append(b, p, size * n))
		return 0;
	return size * n;
}

/* The token in `path`, surrounding white space removed, into tok; 0 or -errno (reported). */
static int read_token(const char *path, char *tok, size_t size)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		fprintf(stderr, "meshmask: --token-file %s: %s\n", path, strerror(errno));
		return -ENOENT;
	}
	size_t n = fread(tok, 1, size - 1, f);
	fclose(f);
	tok[n] = '\0';
	while (n && strchr(" \t\r\n", tok[n - 1]))
		tok[--n] = '\0';
	size_t b = strspn(tok, " \t\r\n");
	memmove(tok, tok + b, n - b + 1);
	if (!tok[0] || strpbrk(tok, "\r\n")) {
		fprintf(stderr, "meshmask: --token-file %s: no usable token\n", path);
		return -EINVAL;
	}
	return 0;
}

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
		{"agent", required_argument, NULL, 'a'},
		{"token-file", required_argument, NULL, 't'},
		{"cacert", required_argument, NULL, 'c'},
		{"insecure", no_argument, NULL, 'k'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *agent = getenv("MESHMASK_AGENT"), *policy = NULL, *rule = NULL;
	const char *token_file = getenv("MESHMASK_DETOKENIZE_TOKEN_FILE"), *cacert = NULL;
	bool insecure = false, as_json = false;
	char tok[DETOK_TOKEN_MAX], *auth = NULL, *url = NULL, *body = NULL;
	struct mm_buf reply = {0};
	struct curl_slist *hdrs = NULL;
	json_t *req = NULL, *res = NULL;
	CURL *cu = NULL;
	int c, rc = RC_IO;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			policy = optarg;
			break;
		case 'r':
			rule = optarg;
			break;
		case 'a':
			agent = optarg;
			break;
		case 't':
			token_file = optarg;
			break;
		case 'c':
			cacert = optarg;
			break;
		case 'k':
			insecure = true;
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
	if (!agent)
		agent = "http://127.0.0.1:9477";
	if (strncmp(agent, "http://", 7) && strncmp(agent, "https://", 8)) {
		fprintf(stderr, "meshmask: --agent: not an http(s):// URL: %s\n", agent);
		return RC_USAGE;
	}
	if (!token_file && access("/etc/meshmask/detokenize/token", R_OK) == 0)
		token_file = "/etc/meshmask/detokenize/token";
	if (!token_file) {
		fprintf(stderr,
			"meshmask: detokenize needs the detokenize token: --token-file F\n");
		return RC_USAGE;
	}
	if (read_token(token_file, tok, sizeof(tok)))
		return RC_USAGE;

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
	size_t al = strlen(agent);
	while (al && agent[al - 1] == '/')
		al--;
	if (!body || asprintf(&url, "%.*s/v1/detokenize", (int)al, agent) < 0 ||
	    asprintf(&auth, "Authorization: Bearer %s", tok) < 0) {
		url = auth = NULL;
		goto out;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) || !(cu = curl_easy_init()))
		goto out;
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	hdrs = curl_slist_append(hdrs, auth);
	curl_easy_setopt(cu, CURLOPT_URL, url);
	curl_easy_setopt(cu, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(cu, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(cu, CURLOPT_WRITEDATA, &reply);
	curl_easy_setopt(cu, CURLOPT_TIMEOUT, (long)DETOK_TIMEOUT_S);
	curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(cu, CURLOPT_PROTOCOLS_STR, "http,https");
	if (cacert)
		curl_easy_setopt(cu, CURLOPT_CAINFO, cacert);
	if (insecure) {
		curl_easy_setopt(cu, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(cu, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	CURLcode cr = curl_easy_perform(cu);
	long status = 0;
	curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, &status);
	if (cr != CURLE_OK) {
		fprintf(stderr, "meshmask: %s: %s\n", agent, curl_easy_strerror(cr));
		goto out;
	}
	json_error_t je;
	res = json_loadb(reply.data ? reply.data : "", reply.len, 0, &je);
	if (status != 200) {
		const char *e = json_string_value(json_object_get(res, "error"));
		fprintf(stderr, "meshmask: the agent answered %ld: %s\n", status, e ? e : "");
		rc = status >= 400 && status < 500 ? RC_REFUSED : RC_IO;
		goto out;
	}
	json_t *got = json_object_get(res, "values"), *v;
	if (!json_is_array(got) || json_array_size(got) != json_array_size(vals)) {
		fprintf(stderr, "meshmask: unexpected answer from the agent\n");
		goto out;
	}
	if (as_json) {
		fwrite(reply.data, 1, reply.len, stdout);
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
	OPENSSL_cleanse(tok, sizeof(tok));
	if (auth)
		OPENSSL_cleanse(auth, strlen(auth));
	if (reply.data)
		OPENSSL_cleanse(reply.data, reply.cap);
	free(auth);
	free(url);
	free(body);
	mm_buf_free(&reply);
	curl_slist_free_all(hdrs);
	if (cu)
		curl_easy_cleanup(cu);
	json_decref(req);
	json_decref(res);
	return rc;
usage:
	fprintf(stderr, "usage: meshmask %s\n", CLI_DETOKENIZE_USAGE);
	return RC_USAGE;
}
