/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz target for the admin API request path (admin_handle: routing, auth, If-Match, policy
 * parsing and persistence, the dry-run). Input: a request line "METHOD /path?query", header
 * lines, an empty line, then the body.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin.h"
#include "log.h"

static struct store *st;
static struct admin *adm;
static char root[] = "/tmp/meshmask-fuzz-admin-XXXXXX";

static void cleanup(void)
{
	admin_free(adm);
	store_close(st);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", root);
}

/* The agent's log lines are not what a fuzzer reads. */
static void quiet(enum agent_log_level level, const char *line)
{
}

static int setup(void)
{
	if (!mkdtemp(root))
		return -1;
	char path[256], pol[128], state[128], token[128];
	snprintf(pol, sizeof(pol), "%s/pol", root);
	snprintf(state, sizeof(state), "%s/state", root);
	snprintf(token, sizeof(token), "%s/token", root);
	mkdir(pol, 0755);
	snprintf(path, sizeof(path), "%s/file.json", pol);
	FILE *f = fopen(path, "w");
	if (!f)
		return -1;
	fputs("{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","
	      "\"metadata\":{\"name\":\"file\"},\"spec\":{\"rules\":[{\"name\":\"ssn\","
	      "\"fields\":[\"$..ssn\"],\"entities\":[\"US_SSN\"],\"action\":{\"type\":\"mask\","
	      "\"keepLast\":4}}]}}",
	      f);
	fclose(f);
	/* A file the store refuses: lists and /readyz carry a rejection. */
	snprintf(path, sizeof(path), "%s/broken.json", pol);
	f = fopen(path, "w");
	if (!f)
		return -1;
	fputs("{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","
	      "\"metadata\":{\"name\":\"broken\"},\"spec\":{\"rules\":[{\"name\":\"x\"}]}}",
	      f);
	fclose(f);
	f = fopen(token, "w");
	if (!f)
		return -1;
	fputs("fuzz-token\n", f);
	fclose(f);
	struct store_config sc = {.policies_dir = pol, .state_dir = state};
	struct admin_config cfg = {.token_file = token};
	agent_log_set_sink(quiet);
	if (store_open(&st, &sc) < 0)
		return -1;
	adm = admin_new(&cfg, st, NULL, NULL);
	if (!adm)
		return -1;
	atexit(cleanup);
	return 0;
}

/* Next line of [*p, end) as a NUL-terminated copy (caller frees); NULL at the end. */
static char *next_line(const char **p, const char *end)
{
	if (*p >= end)
		return NULL;
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));
	const char *e = nl ? nl : end;
	char *s = strndup(*p, (size_t)(e - *p));
	*p = nl ? nl + 1 : end;
	if (s && *s && s[strlen(s) - 1] == '\r')
		s[strlen(s) - 1] = 0;
	return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!adm && setup() < 0)
		abort();
	const char *p = (const char *)data, *end = p + size;
	char *line = next_line(&p, end);
	if (!line)
		return 0;
	struct admin_request rq = {0};
	char *sp = strchr(line, ' ');
	if (sp) {
		*sp = 0;
		rq.path = sp + 1;
	}
	rq.method = line;
	char *q = rq.path ? strchr(rq.path, '?') : NULL;
	if (q) {
		*q++ = 0;
		for (char *kv = strtok(q, "&"); kv; kv = strtok(NULL, "&")) {
			if (!strncmp(kv, "policy=", 7))
				rq.query_policy = kv + 7;
			else if (!strncmp(kv, "direction=", 10))
				rq.query_direction = kv + 10;
		}
	}
	char *hdrs[16];
	size_t n_hdrs = 0;
	char *h;
	while (n_hdrs < 16 && (h = next_line(&p, end))) {
		if (!*h) {
			free(h);
			break;
		}
		hdrs[n_hdrs++] = h;
		char *colon = strchr(h, ':');
		if (!colon)
			continue;
		*colon = 0;
		const char *v = colon + 1;
		while (*v == ' ')
			v++;
		if (!strcasecmp(h, "authorization"))
			rq.authorization = v;
		else if (!strcasecmp(h, "if-match"))
			rq.if_match = v;
		else if (!strcasecmp(h, "content-type"))
			rq.content_type = v;
		else if (!strcasecmp(h, "content-encoding"))
			rq.content_encoding = v;
		else if (!strcasecmp(h, "x-too-large"))
			rq.body_too_large = true;
	}
	rq.body = p;
	rq.body_len = (size_t)(end - p);
	struct admin_response rs = {0};
	admin_handle(adm, &rq, &rs);
	if (rs.status < 200 || rs.status > 599)
		abort();
	admin_response_free(&rs);
	for (size_t i = 0; i < n_hdrs; i++)
		free(hdrs[i]);
	free(line);
	return 0;
}
