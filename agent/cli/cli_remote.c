/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `meshmask policy push|get|list|delete --agent URL --token-file F`: a libcurl client of the
 * agent's admin API. One handle per command, so that a push of several files reuses its
 * connection; certificate and host name verification unless --insecure; no proxy and no
 * redirects, so the token goes to the agent named and nowhere else.
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

#include "buf.h"
#include "cli_kube.h"
#include "cli_remote.h"

enum { RC_OK = 0, RC_INVALID = 1, RC_USAGE = 2, RC_IO = 3, RC_REFUSED = 5 };

#define DEFAULT_TOKEN_FILE "/etc/meshmask/admin/token"
#define REPLY_MAX (64l << 20)
#define IO_TIMEOUT_S 15l /* to connect, and the longest stretch without a byte either way */

struct cli_remote {
	CURL *curl;
	char base[600]; /* scheme://host:port/prefix, without a trailing slash */
	char where[300]; /* host:port, for messages */
	char token[4096]; /* never printed; wiped by cli_remote_free */
	char err[CURL_ERROR_SIZE];
};

/* r->base and r->where from an http(s)://HOST[:PORT][/PREFIX] URL; 0 or -EINVAL. */
static int parse_url(struct cli_remote *r, const char *url)
{
	enum { SCHEME, HOST, PORT, PATH, USER, QUERY, FRAGMENT, NPARTS };
	static const CURLUPart part[NPARTS] = {CURLUPART_SCHEME,  CURLUPART_HOST, CURLUPART_PORT,
					       CURLUPART_PATH,	  CURLUPART_USER, CURLUPART_QUERY,
					       CURLUPART_FRAGMENT};
	char *v[NPARTS] = {0};
	CURLU *u = curl_url();
	bool ok = u && !curl_url_set(u, CURLUPART_URL, url, 0);
	for (int i = 0; ok && i < NPARTS; i++)
		curl_url_get(u, part[i], &v[i], i == PORT ? CURLU_DEFAULT_PORT : 0);
	/* Credentials, a query or a fragment have no place in the agent's address. */
	ok = ok && v[SCHEME] && (!strcmp(v[SCHEME], "http") || !strcmp(v[SCHEME], "https")) &&
	     v[HOST] && *v[HOST] && v[PORT] && v[PATH] && !v[USER] && !v[QUERY] && !v[FRAGMENT];
	if (ok) {
		int n = (int)strlen(v[PATH]);
		while (n && v[PATH][n - 1] == '/')
			n--;
		ok = snprintf(r->where, sizeof(r->where), "%s:%s", v[HOST], v[PORT]) <
			     (int)sizeof(r->where) &&
		     snprintf(r->base, sizeof(r->base), "%s://%s%.*s", v[SCHEME], r->where, n,
			      v[PATH]) < (int)sizeof(r->base);
	}
	for (int i = 0; i < NPARTS; i++)
		curl_free(v[i]);
	curl_url_cleanup(u);
	return ok ? 0 : -EINVAL;
}

static int read_token(struct cli_remote *r, const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		int e = errno;
		fprintf(stderr, "meshmask: --token-file %s: %s\n", path, strerror(e));
		return -e;
	}
	size_t n = fread(r->token, 1, sizeof(r->token) - 1, f);
	fclose(f);
	r->token[n] = 0;
	while (n && strchr(" \t\r\n", r->token[n - 1]))
		r->token[--n] = 0;
	size_t b = strspn(r->token, " \t\r\n");
	memmove(r->token, r->token + b, n - b + 1);
	if (!r->token[0] || strpbrk(r->token, "\r\n")) {
		fprintf(stderr, "meshmask: --token-file %s: no usable token\n", path);
		return -EINVAL;
	}
	return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct mm_buf *b = arg;
	/* A short count fails the transfer (CURLE_WRITE_ERROR). */
	return b->len + n > (size_t)REPLY_MAX || mm_buf_append(b, p, n) ? 0 : n;
}

#define SETOPT(opt, val) (cc = cc ?: curl_easy_setopt(r->curl, opt, val))

struct cli_remote *cli_remote_new(const struct cli_remote_cfg *cfg)
{
	const char *agent = cfg->agent ?: getenv("MESHMASK_AGENT") ?: "http://127.0.0.1:9477";
	const char *token_file = cfg->token_file ?: getenv("MESHMASK_TOKEN_FILE");
	/* What OpenSSL's default verify paths honour, libcurl does not by itself. */
	const char *cainfo = cfg->cacert ?: getenv("SSL_CERT_FILE");
	const char *capath = cfg->cacert ? NULL : getenv("SSL_CERT_DIR");
	struct cli_remote *r = calloc(1, sizeof(*r));
	CURLcode cc = CURLE_OK;
	int e = -ENOMEM;

	if (!r || curl_global_init(CURL_GLOBAL_DEFAULT)) {
		fprintf(stderr, "meshmask: cannot initialise libcurl\n");
		free(r);
		errno = ENOMEM;
		return NULL;
	}
	e = parse_url(r, agent);
	if (e) {
		fprintf(stderr, "meshmask: --agent: not an http(s)://HOST[:PORT] URL: %s\n", agent);
		goto fail;
	}
	if (!token_file && access(DEFAULT_TOKEN_FILE, R_OK) == 0)
		token_file = DEFAULT_TOKEN_FILE;
	if (token_file && (e = read_token(r, token_file)) < 0)
		goto fail;

	r->curl = curl_easy_init();
	if (!r->curl)
		cc = CURLE_OUT_OF_MEMORY;
	SETOPT(CURLOPT_ERRORBUFFER, r->err);
	SETOPT(CURLOPT_NOSIGNAL, 1l);
	SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
	SETOPT(CURLOPT_PROXY, ""); /* never through a *_proxy of the environment */
	SETOPT(CURLOPT_USERAGENT, "meshmask/" MESHMASK_VERSION);
	SETOPT(CURLOPT_PATH_AS_IS, 1l);
	SETOPT(CURLOPT_CONNECTTIMEOUT, IO_TIMEOUT_S);
	SETOPT(CURLOPT_LOW_SPEED_LIMIT, 1l);
	SETOPT(CURLOPT_LOW_SPEED_TIME, IO_TIMEOUT_S);
	SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)REPLY_MAX);
	SETOPT(CURLOPT_WRITEFUNCTION, on_body);
	SETOPT(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	SETOPT(CURLOPT_SSL_VERIFYPEER, cfg->insecure ? 0l : 1l);
	SETOPT(CURLOPT_SSL_VERIFYHOST, cfg->insecure ? 0l : 2l);
	if (cainfo && !cfg->insecure)
		SETOPT(CURLOPT_CAINFO, cainfo);
	if (capath && !cfg->insecure)
		SETOPT(CURLOPT_CAPATH, capath);
	if (cc) {
		fprintf(stderr, "meshmask: libcurl: %s\n", curl_easy_strerror(cc));
		e = cc == CURLE_OUT_OF_MEMORY ? -ENOMEM : -ENOTSUP;
		goto fail;
	}
	return r;
fail:
	cli_remote_free(r);
	errno = -e;
	return NULL;
}

void cli_remote_free(struct cli_remote *r)
{
	if (!r)
		return;
	curl_easy_cleanup(r->curl);
	explicit_bzero(r->token, sizeof(r->token));
	free(r);
	curl_global_cleanup();
}

/* Print why a transfer failed, from libcurl's message (which never holds the request); -errno. */
static int transfer_error(const struct cli_remote *r, CURLcode cc)
{
	const char *why = r->err[0] ? r->err : curl_easy_strerror(cc);
	long os_errno = 0;

	switch (cc) {
	case CURLE_COULDNT_CONNECT:
		if (!curl_easy_getinfo(r->curl, CURLINFO_OS_ERRNO, &os_errno) && os_errno)
			why = strerror((int)os_errno);
		/* fall through */
	case CURLE_COULDNT_RESOLVE_HOST:
		fprintf(stderr, "meshmask: connecting to %s: %s\n", r->where, why);
		return os_errno ? -(int)os_errno : -EHOSTUNREACH;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ISSUER_ERROR:
		fprintf(stderr, "meshmask: TLS with %s: %s\n", r->where, why);
		return -EPROTO;
	case CURLE_GOT_NOTHING:
		fprintf(stderr, "meshmask: %s closed the connection without answering\n", r->where);
		return -EPROTO;
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_UNSUPPORTED_PROTOCOL: /* an HTTP/0.9 answer */
		fprintf(stderr, "meshmask: %s did not answer HTTP (%s)\n", r->where, why);
		return -EPROTO;
	case CURLE_WRITE_ERROR:
	case CURLE_FILESIZE_EXCEEDED:
		fprintf(stderr, "meshmask: %s: reply over %ld MiB\n", r->where, REPLY_MAX >> 20);
		return -EFBIG;
	default:
		fprintf(stderr, "meshmask: talking to %s: %s\n", r->where, why);
		return cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EIO;
	}
}

int cli_remote_request(struct cli_remote *r, const char *method, const char *path,
		       const char *content_type, const char *body, size_t len, const char *if_match,
		       struct cli_reply *rep)
{
	char url[sizeof(r->base) + 600], auth[sizeof(r->token) + 32], im[160], ct[160];
	/* An empty Content-Type keeps libcurl from labelling a body as a form. */
	const char *lines[] = {"Accept: application/json", r->token[0] ? auth : NULL,
			       if_match ? im : NULL, body || content_type ? ct : NULL};
	struct curl_slist *h = NULL, *t;
	struct curl_header *etag;
	CURLcode cc = CURLE_OK;

	*rep = (struct cli_reply){0};
	if ((if_match && strpbrk(if_match, "\"\r\n")) ||
	    (content_type && strpbrk(content_type, "\r\n"))) {
		fprintf(stderr, "meshmask: bad If-Match or Content-Type\n");
		return -EINVAL;
	}
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", r->token);
	snprintf(im, sizeof(im), "If-Match: \"%s\"", if_match ?: "");
	snprintf(ct, sizeof(ct), "Content-Type:%s%s", content_type ? " " : "", content_type ?: "");
	for (size_t i = 0; !cc && i < sizeof(lines) / sizeof(lines[0]); i++) {
		if (lines[i] && !(t = curl_slist_append(h, lines[i])))
			cc = CURLE_OUT_OF_MEMORY;
		else if (lines[i])
			h = t;
	}
	explicit_bzero(auth, sizeof(auth));
	if (snprintf(url, sizeof(url), "%s%s", r->base, path) >= (int)sizeof(url))
		cc = CURLE_URL_MALFORMAT;
	r->err[0] = 0;
	SETOPT(CURLOPT_URL, url);
	SETOPT(CURLOPT_HTTPHEADER, h);
	SETOPT(CURLOPT_WRITEDATA, &rep->body);
	if (body) {
		SETOPT(CURLOPT_POSTFIELDS, body);
		SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	} else {
		SETOPT(CURLOPT_HTTPGET, 1l);
	}
	SETOPT(CURLOPT_CUSTOMREQUEST, strcmp(method, "GET") ? method : NULL);
	cc = cc ?: curl_easy_perform(r->curl);
	/* The handle must not keep pointers to these for its next request. */
	curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(r->curl, CURLOPT_POSTFIELDS, NULL);
	for (t = h; t; t = t->next)
		explicit_bzero(t->data, strlen(t->data));
	curl_slist_free_all(h);
	if (cc) {
		cli_reply_free(rep);
		return transfer_error(r, cc);
	}
	curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &rep->status);
	if (curl_easy_header(r->curl, "ETag", 0, CURLH_HEADER, -1, &etag) == CURLHE_OK) {
		const char *v = etag->value + strspn(etag->value, " \"");
		snprintf(rep->etag, sizeof(rep->etag), "%.*s", (int)strcspn(v, "\""), v);
	}
	return 0;
}

void cli_reply_free(struct cli_reply *rep)
{
	mm_buf_free(&rep->body);
	*rep = (struct cli_reply){0};
}

/* "what:line:col: message" or "what: /pointer: message" for each policy error in `errors`. */
static void print_policy_errors(FILE *f, const char *what, json_t *errors)
{
	size_t i;
	json_t *e;
	json_array_foreach(errors, i, e)
	{
		const char *ptr = json_string_value(json_object_get(e, "pointer"));
		const char *m = json_string_value(json_object_get(e, "message"));
		json_int_t line = json_integer_value(json_object_get(e, "line"));
		json_int_t col = json_integer_value(json_object_get(e, "column"));
		if (line)
			fprintf(f, "%s:%lld:%lld: %s\n", what, (long long)line, (long long)col,
				m ? m : "");
		else
			fprintf(f, "%s: %s: %s\n", what, ptr ? (*ptr ? ptr : "/") : "", m ? m : "");
	}
}

int cli_remote_report(const char *what, const struct cli_reply *rep)
{
	json_error_t je;
	json_t *d = json_loadb(rep->body.data ? rep->body.data : "", rep->body.len, 0, &je);
	const char *msg = json_string_value(json_object_get(d, "error"));
	fprintf(stderr, "%s: %ld %s\n", what, rep->status, msg ? msg : "(no error message)");
	print_policy_errors(stderr, what, json_object_get(d, "details"));
	json_decref(d);
	if (rep->status == 400)
		return RC_INVALID;
	return rep->status >= 500 || rep->status < 400 ? RC_IO : RC_REFUSED;
}

struct opts {
	struct cli_remote *remote;
	const char *if_match;
	bool json;
};

enum { OPTS_USAGE = -1, OPTS_HELP = -2, OPTS_IO = -3 };

bool cli_remote_opt(int c, const char *arg, struct cli_remote_cfg *cfg)
{
	switch (c) {
	case 'a':
		cfg->agent = arg;
		return true;
	case 't':
		cfg->token_file = arg;
		return true;
	case 'c':
		cfg->cacert = arg;
		return true;
	case 'k':
		cfg->insecure = true;
		return true;
	}
	return false;
}

/* Common options and the client; the index of the first operand, or OPTS_* after printing. */
static int parse_opts(int argc, char **argv, struct opts *o, const char *usage)
{
	static const struct option longopts[] = {
		CLI_REMOTE_LONGOPTS,
		{"if-match", required_argument, NULL, 'm'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct cli_remote_cfg cfg = {0};
	bool allow_if_match = strstr(usage, "--if-match") != NULL;
	bool allow_json = strstr(usage, "--json") != NULL;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (cli_remote_opt(c, optarg, &cfg))
			continue;
		switch (c) {
		case 'm':
			if (!allow_if_match)
				goto usage;
			o->if_match = optarg;
			break;
		case 'j':
			if (!allow_json)
				goto usage;
			o->json = true;
			break;
		case 'h':
			printf("usage: meshmask %s\n", usage);
			return OPTS_HELP;
		default:
			goto usage;
		}
	}
	if (o->if_match && strpbrk(o->if_match, "\"\r\n")) {
		fprintf(stderr, "meshmask: --if-match: bad etag\n");
		return OPTS_USAGE;
	}
	o->remote = cli_remote_new(&cfg);
	if (!o->remote)
		return errno == ENOMEM ? OPTS_IO : OPTS_USAGE;
	return optind;
usage:
	fprintf(stderr, "usage: meshmask %s\n", usage);
	return OPTS_USAGE;
}

static int opts_rc(int i)
{
	return i == OPTS_HELP ? RC_OK : i == OPTS_IO ? RC_IO : RC_USAGE;
}
static bool name_ok(const char *n)
{
	return *n && strlen(n) < 254 &&
	       strspn(n, "abcdefghijklmnopqrstuvwxyz0123456789-.") == strlen(n);
}

int cli_policy_push(int argc, char **argv)
{
	for (int k = 1; k < argc && strcmp(argv[k], "--"); k++)
		if (!strcmp(argv[k], "--cluster")) /* through the API server, not an agent */
			return cli_policy_push_cluster(argc, argv);
	struct opts o = {0};
	int i = parse_opts(argc, argv, &o, CLI_POLICY_PUSH_USAGE);
	if (i < 0)
		return opts_rc(i);
	int rc = RC_OK;
	if (i >= argc) {
		fprintf(stderr, "usage: meshmask %s\n", CLI_POLICY_PUSH_USAGE);
		rc = RC_USAGE;
		goto out;
	}
	if (o.if_match && argc - i > 1) {
		fprintf(stderr, "meshmask: --if-match applies to one file only\n");
		rc = RC_USAGE;
		goto out;
	}
	for (; i < argc; i++) {
		const char *file = argv[i];
		json_error_t je;
		json_t *doc = json_load_file(file, JSON_REJECT_DUPLICATES, &je);
		if (!doc) {
			fprintf(stderr, "%s:%d:%d: %s\n", file, je.line, je.column, je.text);
			rc = rc ?: (je.line > 0 ? RC_INVALID : RC_IO);
			continue;
		}
		const char *name = json_string_value(
			json_object_get(json_object_get(doc, "metadata"), "name"));
		if (!name || !name_ok(name)) {
			fprintf(stderr, "%s: /metadata/name: missing or not a valid policy name\n",
				file);
			json_decref(doc);
			rc = rc ?: RC_INVALID;
			continue;
		}
		/* Send the file's bytes as they are: the agent reports locations in them. */
		FILE *f = fopen(file, "re");
		struct mm_buf body = {0};
		char tmp[16384];
		size_t n;
		while (f && (n = fread(tmp, 1, sizeof(tmp), f)) > 0)
			mm_buf_append(&body, tmp, n);
		if (f)
			fclose(f);
		char path[600];
		snprintf(path, sizeof(path), "/v1/policies/%s", name);
		struct cli_reply rep;
		int e = cli_remote_request(o.remote, "PUT", path, "application/json",
					   body.data ? body.data : "", body.len, o.if_match, &rep);
		if (e < 0) {
			rc = RC_IO;
		} else if (rep.status == 200 || rep.status == 201) {
			printf("%s: %s %s (etag %s)\n", file, name,
			       rep.status == 201 ? "created" : "updated", rep.etag);
		} else {
			int code = cli_remote_report(file, &rep);
			rc = rc ?: code;
		}
		cli_reply_free(&rep);
		mm_buf_free(&body);
		json_decref(doc);
	}
out:
	cli_remote_free(o.remote);
	return rc;
}

/* `policy get|delete NAME`: the exit code. */
static int one_policy(int argc, char **argv, const char *usage, const char *method)
{
	bool get = !strcmp(method, "GET");
	struct cli_reply rep = {0};
	struct opts o = {0};
	char path[600];
	int rc = RC_USAGE, i = parse_opts(argc, argv, &o, usage);

	if (i < 0)
		return opts_rc(i);
	const char *name = argv[i];
	if (argc - i != 1) {
		fprintf(stderr, "usage: meshmask %s\n", usage);
		goto out;
	}
	if (!name_ok(name)) {
		fprintf(stderr, "meshmask: not a policy name: %s\n", name);
		goto out;
	}
	snprintf(path, sizeof(path), "/v1/policies/%s", name);
	if (cli_remote_request(o.remote, method, path, NULL, NULL, 0, o.if_match, &rep) < 0) {
		rc = RC_IO;
	} else if (rep.status == 200 && get) {
		fwrite(rep.body.data, 1, rep.body.len, stdout);
		fprintf(stderr, "etag %s\n", rep.etag);
		rc = RC_OK;
	} else if ((rep.status == 200 || rep.status == 204) && !get) {
		printf("%s: deleted\n", name);
		rc = RC_OK;
	} else {
		rc = cli_remote_report(name, &rep);
	}
out:
	cli_reply_free(&rep);
	cli_remote_free(o.remote);
	return rc;
}

int cli_policy_get(int argc, char **argv)
{
	return one_policy(argc, argv, CLI_POLICY_GET_USAGE, "GET");
}

/* Files of the agent's --policies DIR it refused: why, since when, what stays in force. */
static void print_rejected(json_t *rej)
{
	if (!json_array_size(rej))
		return;
	printf("\nrejected policies (files and resources; a version in force stays in force):\n");
	size_t k;
	json_t *r;
	json_array_foreach(rej, k, r)
	{
		const char *file = json_string_value(json_object_get(r, "file"));
		const char *name = json_string_value(json_object_get(r, "name"));
		const char *when = json_string_value(json_object_get(r, "time"));
		const char *etag = json_string_value(json_object_get(r, "etagInForce"));
		if (!file) /* a MaskingPolicy / ClusterMaskingPolicy resource (source crd) */
			file = json_string_value(json_object_get(r, "resource"));
		file = file ? file : "?";
		printf("%s: policy %s, refused since %s, ", file, name ? name : "(unknown)",
		       when ? when : "?");
		if (etag)
			printf("previous version in force (etag %.12s)\n", etag);
		else
			printf("no version of it in force\n");
		print_policy_errors(stdout, file, json_object_get(r, "errors"));
	}
}

int cli_policy_list(int argc, char **argv)
{
	struct opts o = {0};
	int i = parse_opts(argc, argv, &o, CLI_POLICY_LIST_USAGE);
	if (i < 0)
		return opts_rc(i);
	struct cli_reply rep = {0};
	int rc = RC_OK;
	if (i != argc) {
		fprintf(stderr, "usage: meshmask %s\n", CLI_POLICY_LIST_USAGE);
		rc = RC_USAGE;
	} else if (cli_remote_request(o.remote, "GET", "/v1/policies", NULL, NULL, 0, NULL, &rep) <
		   0) {
		rc = RC_IO;
	} else if (rep.status != 200) {
		rc = cli_remote_report("list", &rep);
	} else if (o.json) {
		fwrite(rep.body.data, 1, rep.body.len, stdout);
	} else {
		json_error_t je;
		json_t *d = json_loadb(rep.body.data ? rep.body.data : "", rep.body.len, 0, &je);
		json_t *arr = json_object_get(d, "policies");
		if (!json_is_array(arr)) {
			fprintf(stderr, "meshmask: unexpected reply from the agent\n");
			rc = RC_IO;
		} else {
			/* SOURCE: file (--policies), api (pushed), crd (a policy resource) */
			printf("%-32s %-6s %-8s %s\n", "NAME", "SOURCE", "MODE", "ETAG");
			size_t k;
			json_t *p;
			json_array_foreach(arr, k, p)
			{
				const char *pn = json_string_value(json_object_get(p, "name"));
				const char *src = json_string_value(json_object_get(p, "source"));
				const char *mode = json_string_value(json_object_get(p, "mode"));
				const char *et = json_string_value(json_object_get(p, "etag"));
				printf("%-32s %-6s %-8s %s\n", pn ? pn : "", src ? src : "",
				       mode ? mode : "", et ? et : "");
			}
			print_rejected(json_object_get(d, "rejected"));
		}
		json_decref(d);
	}
	cli_reply_free(&rep);
	cli_remote_free(o.remote);
	return rc;
}

int cli_policy_delete(int argc, char **argv)
{
	return one_policy(argc, argv, CLI_POLICY_DELETE_USAGE, "DELETE");
}
