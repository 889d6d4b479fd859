/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `meshmask policy push|get|list|delete --agent URL --token-file F`. None of the allowed
 * libraries is an HTTP client, so this is the smallest one that the admin API needs: one
 * request per connection (Connection: close), Content-Length or chunked replies, and TLS
 * through OpenSSL with certificate and host name verification (unless --insecure).
 */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "buf.h"
#include "cli_remote.h"

enum { RC_OK = 0, RC_INVALID = 1, RC_USAGE = 2, RC_IO = 3, RC_REFUSED = 5 };

#define REPLY_MAX (64u << 20)
#define IO_TIMEOUT_S 15

struct remote {
	bool tls, insecure;
	char host[256], port[8], prefix[512];
	const char *cacert;
	char token[4096]; /* never printed */
	const char *if_match;
	bool json;
};

struct reply {
	int status;
	char etag[128];
	struct mm_buf body;
};

static int parse_url(struct remote *r, const char *url)
{
	const char *p;
	if (!strncmp(url, "http://", 7)) {
		p = url + 7;
		snprintf(r->port, sizeof(r->port), "80");
	} else if (!strncmp(url, "https://", 8)) {
		p = url + 8;
		r->tls = true;
		snprintf(r->port, sizeof(r->port), "443");
	} else {
		return -EINVAL;
	}
	const char *slash = strchr(p, '/');
	const char *hend = slash ? slash : p + strlen(p);
	const char *colon = NULL;
	if (*p == '[') {
		const char *rb = memchr(p, ']', (size_t)(hend - p));
		if (!rb)
			return -EINVAL;
		if ((size_t)(rb - p - 1) >= sizeof(r->host))
			return -EINVAL;
		memcpy(r->host, p + 1, (size_t)(rb - p - 1));
		r->host[rb - p - 1] = 0;
		if (rb + 1 < hend && rb[1] == ':')
			colon = rb + 1;
	} else {
		colon = memchr(p, ':', (size_t)(hend - p));
		const char *he = colon ? colon : hend;
		if (he == p || (size_t)(he - p) >= sizeof(r->host))
			return -EINVAL;
		memcpy(r->host, p, (size_t)(he - p));
		r->host[he - p] = 0;
	}
	if (colon) {
		size_t n = (size_t)(hend - colon - 1);
		if (n == 0 || n >= sizeof(r->port))
			return -EINVAL;
		memcpy(r->port, colon + 1, n);
		r->port[n] = 0;
		if (strspn(r->port, "0123456789") != n)
			return -EINVAL;
	}
	snprintf(r->prefix, sizeof(r->prefix), "%s", slash ? slash : "");
	size_t n = strlen(r->prefix);
	while (n && r->prefix[n - 1] == '/')
		r->prefix[--n] = 0;
	return 0;
}

static int read_token(struct remote *r, const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		fprintf(stderr, "meshmask: --token-file %s: %s\n", path, strerror(errno));
		return -errno;
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

struct conn {
	int fd;
	SSL_CTX *ctx;
	SSL *ssl;
};

static void conn_close(struct conn *c)
{
	if (c->ssl) {
		SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	if (c->ctx)
		SSL_CTX_free(c->ctx);
	if (c->fd >= 0)
		close(c->fd);
}

static int conn_open(struct conn *c, const struct remote *r)
{
	*c = (struct conn){.fd = -1};
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res;
	int gr = getaddrinfo(r->host, r->port, &hints, &res);
	if (gr) {
		fprintf(stderr, "meshmask: %s: %s\n", r->host, gai_strerror(gr));
		return -EHOSTUNREACH;
	}
	int err = ECONNREFUSED;
	for (struct addrinfo *ai = res; ai && c->fd < 0; ai = ai->ai_next) {
		c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (c->fd < 0)
			continue;
		struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
		setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
			err = errno;
			close(c->fd);
			c->fd = -1;
		}
	}
	freeaddrinfo(res);
	if (c->fd < 0) {
		fprintf(stderr, "meshmask: connecting to %s:%s: %s\n", r->host, r->port,
			strerror(err));
		return -err;
	}
	if (!r->tls)
		return 0;

	c->ctx = SSL_CTX_new(TLS_client_method());
	if (!c->ctx)
		goto tls_fail;
	SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
	if (!r->insecure) {
		SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
		if (r->cacert ? SSL_CTX_load_verify_locations(c->ctx, r->cacert, NULL) != 1
			      : SSL_CTX_set_default_verify_paths(c->ctx) != 1)
			goto tls_fail;
	}
	c->ssl = SSL_new(c->ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
		goto tls_fail;
	unsigned char ipbuf[16];
	bool is_ip =
		inet_pton(AF_INET, r->host, ipbuf) == 1 || inet_pton(AF_INET6, r->host, ipbuf) == 1;
	if (!is_ip)
		SSL_set_tlsext_host_name(c->ssl, r->host);
	if (!r->insecure) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
		if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, r->host) != 1
			  : X509_VERIFY_PARAM_set1_host(vp, r->host, 0) != 1)
			goto tls_fail;
	}
	if (SSL_connect(c->ssl) != 1)
		goto tls_fail;
	return 0;
tls_fail:;
	unsigned long e = ERR_get_error();
	char msg[256];
	ERR_error_string_n(e, msg, sizeof(msg));
	fprintf(stderr, "meshmask: TLS with %s:%s: %s\n", r->host, r->port,
		e ? msg : "handshake failed");
	conn_close(c);
	return -EPROTO;
}

static int conn_write(struct conn *c, const char *p, size_t n)
{
	while (n) {
		ssize_t w;
		if (c->ssl) {
			int k = SSL_write(c->ssl, p, n > 1u << 30 ? 1 << 30 : (int)n);
			w = k > 0 ? k : -1;
		} else {
			w = send(c->fd, p, n, MSG_NOSIGNAL);
		}
		if (w < 0 && !c->ssl && errno == EINTR)
			continue;
		if (w <= 0)
			return -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static ssize_t conn_read(struct conn *c, char *p, size_t n)
{
	if (c->ssl) {
		int k = SSL_read(c->ssl, p, (int)n);
		if (k > 0)
			return k;
		int e = SSL_get_error(c->ssl, k);
		return e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL ? 0 : -EIO;
	}
	for (;;) {
		ssize_t k = recv(c->fd, p, n, 0);
		if (k < 0 && errno == EINTR)
			continue;
		return k < 0 ? -errno : k;
	}
}

/* Decode a chunked body in place; 0 or -EPROTO. */
static int dechunk(struct mm_buf *b)
{
	size_t in = 0, out = 0;
	for (;;) {
		char *end;
		if (in >= b->len)
			return -EPROTO;
		unsigned long long sz = strtoull(b->data + in, &end, 16);
		char *crlf = memmem(b->data + in, b->len - in, "\r\n", 2);
		if (!crlf || end == b->data + in)
			return -EPROTO;
		in = (size_t)(crlf - b->data) + 2;
		if (sz == 0)
			break;
		if (sz > b->len - in)
			return -EPROTO;
		memmove(b->data + out, b->data + in, sz);
		out += sz;
		in += sz + 2;
	}
	b->len = out;
	return 0;
}

static int request(const struct remote *r, const char *method, const char *path,
		   const char *content_type, const char *body, size_t len, struct reply *rep)
{
	struct conn c;
	int e = conn_open(&c, r);
	if (e < 0)
		return e;
	struct mm_buf req = {0};
	char line[1024];
	snprintf(line, sizeof(line),
		 "%s %s%s HTTP/1.1\r\nHost: %s%s%s:%s\r\nUser-Agent: meshmask/%s\r\n"
		 "Accept: application/json\r\nConnection: close\r\n",
		 method, r->prefix, path, strchr(r->host, ':') ? "[" : "", r->host,
		 strchr(r->host, ':') ? "]" : "", r->port, MESHMASK_VERSION);
	mm_buf_puts(&req, line);
	if (r->token[0]) {
		mm_buf_puts(&req, "Authorization: Bearer ");
		mm_buf_puts(&req, r->token);
		mm_buf_puts(&req, "\r\n");
	}
	if (r->if_match) {
		snprintf(line, sizeof(line), "If-Match: \"%s\"\r\n", r->if_match);
		mm_buf_puts(&req, line);
	}
	if (content_type) {
		snprintf(line, sizeof(line), "Content-Type: %s\r\n", content_type);
		mm_buf_puts(&req, line);
	}
	if (body || strcmp(method, "GET")) {
		snprintf(line, sizeof(line), "Content-Length: %zu\r\n", body ? len : 0);
		mm_buf_puts(&req, line);
	}
	mm_buf_puts(&req, "\r\n");
	e = conn_write(&c, req.data, req.len);
	OPENSSL_cleanse(req.data, req.cap);
	mm_buf_free(&req);
	if (!e && body)
		e = conn_write(&c, body, len);
	/* The agent may answer (413, 401) and close before the whole body is sent: read on. */
	bool write_failed = e != 0;
	e = 0;

	struct mm_buf in = {0};
	char tmp[16384];
	ssize_t n;
	while (!e && (n = conn_read(&c, tmp, sizeof(tmp))) != 0) {
		if (n < 0 && in.len)
			break; /* a reset after the answer (the agent hung up on our body) */
		if (n < 0 || in.len + (size_t)n > REPLY_MAX || mm_buf_append(&in, tmp, (size_t)n))
			e = -EIO;
	}
	conn_close(&c);
	if (e) {
		fprintf(stderr, "meshmask: talking to %s:%s: %s\n", r->host, r->port, strerror(-e));
		mm_buf_free(&in);
		return e;
	}
	char *hend = in.len ? memmem(in.data, in.len, "\r\n\r\n", 4) : NULL;
	int status = 0;
	if (!hend || sscanf(in.data, "HTTP/1.%*d %d", &status) != 1) {
		fprintf(stderr, "meshmask: %s:%s %s\n", r->host, r->port,
			write_failed ? "closed the connection" : "did not answer HTTP");
		mm_buf_free(&in);
		return -EPROTO;
	}
	*hend = 0;
	rep->status = status;
	bool chunked = false;
	long long clen = -1;
	for (char *h = strstr(in.data, "\r\n"); h && *h; h = strstr(h, "\r\n")) {
		h += 2;
		if (!strncasecmp(h, "ETag:", 5)) {
			const char *v = h + 5 + strspn(h + 5, " \"");
			size_t vl = strcspn(v, "\"\r");
			snprintf(rep->etag, sizeof(rep->etag), "%.*s", (int)vl, v);
		} else if (!strncasecmp(h, "Transfer-Encoding:", 18)) {
			chunked = strstr(h, "chunked") != NULL;
		} else if (!strncasecmp(h, "Content-Length:", 15)) {
			clen = atoll(h + 15);
		}
	}
	size_t off = (size_t)(hend + 4 - in.data);
	mm_buf_append(&rep->body, in.data + off, in.len - off);
	mm_buf_free(&in);
	if (chunked && dechunk(&rep->body) < 0) {
		fprintf(stderr, "meshmask: bad chunked reply\n");
		return -EPROTO;
	}
	if (clen >= 0 && (size_t)clen < rep->body.len)
		rep->body.len = (size_t)clen;
	return 0;
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

/* Print the agent's JSON error body; exit code for the status. */
static int report_error(const char *what, const struct reply *rep)
{
	json_error_t je;
	json_t *d = json_loadb(rep->body.data ? rep->body.data : "", rep->body.len, 0, &je);
	const char *msg = json_string_value(json_object_get(d, "error"));
	fprintf(stderr, "%s: %d %s\n", what, rep->status, msg ? msg : "(no error message)");
	print_policy_errors(stderr, what, json_object_get(d, "details"));
	json_decref(d);
	if (rep->status == 400)
		return RC_INVALID;
	return rep->status >= 500 || rep->status < 400 ? RC_IO : RC_REFUSED;
}

/* Common options; the index of the first operand, or -1 after printing a usage error. */
static int parse_opts(int argc, char **argv, struct remote *r, const char *usage)
{
	static const struct option opts[] = {
		{"agent", required_argument, NULL, 'a'},
		{"token-file", required_argument, NULL, 't'},
		{"cacert", required_argument, NULL, 'c'},
		{"insecure", no_argument, NULL, 'k'},
		{"if-match", required_argument, NULL, 'm'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *agent = getenv("MESHMASK_AGENT");
	const char *token_file = getenv("MESHMASK_TOKEN_FILE");
	bool allow_if_match = strstr(usage, "--if-match") != NULL;
	bool allow_json = strstr(usage, "--json") != NULL;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			agent = optarg;
			break;
		case 't':
			token_file = optarg;
			break;
		case 'c':
			r->cacert = optarg;
			break;
		case 'k':
			r->insecure = true;
			break;
		case 'm':
			if (!allow_if_match)
				goto usage;
			r->if_match = optarg;
			break;
		case 'j':
			if (!allow_json)
				goto usage;
			r->json = true;
			break;
		case 'h':
			printf("usage: meshmask %s\n", usage);
			return -2;
		default:
			goto usage;
		}
	}
	if (!agent)
		agent = "http://127.0.0.1:9477";
	if (parse_url(r, agent) < 0) {
		fprintf(stderr, "meshmask: --agent: not an http(s)://HOST[:PORT] URL: %s\n", agent);
		return -1;
	}
	if (r->if_match && strpbrk(r->if_match, "\"\r\n")) {
		fprintf(stderr, "meshmask: --if-match: bad etag\n");
		return -1;
	}
	if (!token_file && access("/etc/meshmask/admin/token", R_OK) == 0)
		token_file = "/etc/meshmask/admin/token";
	if (token_file && read_token(r, token_file) < 0)
		return -1;
	return optind;
usage:
	fprintf(stderr, "usage: meshmask %s\n", usage);
	return -1;
}

static int opts_rc(int i)
{
	return i == -2 ? RC_OK : RC_USAGE;
}

static bool name_ok(const char *n)
{
	return *n && strlen(n) < 254 &&
	       strspn(n, "abcdefghijklmnopqrstuvwxyz0123456789-.") == strlen(n);
}

int cli_policy_push(int argc, char **argv)
{
	struct remote r = {0};
	int i = parse_opts(argc, argv, &r, CLI_POLICY_PUSH_USAGE);
	if (i < 0)
		return opts_rc(i);
	if (i >= argc) {
		fprintf(stderr, "usage: meshmask %s\n", CLI_POLICY_PUSH_USAGE);
		return RC_USAGE;
	}
	if (r.if_match && argc - i > 1) {
		fprintf(stderr, "meshmask: --if-match applies to one file only\n");
		return RC_USAGE;
	}
	int rc = RC_OK;
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
		struct reply rep = {0};
		int e = request(&r, "PUT", path, "application/json", body.data ? body.data : "",
				body.len, &rep);
		if (e < 0) {
			rc = RC_IO;
		} else if (rep.status == 200 || rep.status == 201) {
			printf("%s: %s %s (etag %s)\n", file, name,
			       rep.status == 201 ? "created" : "updated", rep.etag);
		} else {
			int code = report_error(file, &rep);
			rc = rc ?: code;
		}
		mm_buf_free(&rep.body);
		mm_buf_free(&body);
		json_decref(doc);
	}
	return rc;
}

static int one_name(int argc, char **argv, struct remote *r, const char *usage, const char **name)
{
	int i = parse_opts(argc, argv, r, usage);
	if (i < 0)
		return opts_rc(i);
	if (argc - i != 1) {
		fprintf(stderr, "usage: meshmask %s\n", usage);
		return RC_USAGE;
	}
	if (!name_ok(argv[i])) {
		fprintf(stderr, "meshmask: not a policy name: %s\n", argv[i]);
		return RC_USAGE;
	}
	*name = argv[i];
	return -1;
}

int cli_policy_get(int argc, char **argv)
{
	struct remote r = {0};
	const char *name;
	int rc = one_name(argc, argv, &r, CLI_POLICY_GET_USAGE, &name);
	if (rc >= 0)
		return rc;
	char path[600];
	snprintf(path, sizeof(path), "/v1/policies/%s", name);
	struct reply rep = {0};
	if (request(&r, "GET", path, NULL, NULL, 0, &rep) < 0)
		return RC_IO;
	if (rep.status == 200) {
		fwrite(rep.body.data, 1, rep.body.len, stdout);
		fprintf(stderr, "etag %s\n", rep.etag);
		rc = RC_OK;
	} else {
		rc = report_error(name, &rep);
	}
	mm_buf_free(&rep.body);
	return rc;
}

/* Files of the agent's --policies DIR it refused: why, since when, what stays in force. */
static void print_rejected(json_t *rej)
{
	if (!json_array_size(rej))
		return;
	printf("\nrejected policy files (a version in force stays in force):\n");
	size_t k;
	json_t *r;
	json_array_foreach(rej, k, r)
	{
		const char *file = json_string_value(json_object_get(r, "file"));
		const char *name = json_string_value(json_object_get(r, "name"));
		const char *when = json_string_value(json_object_get(r, "time"));
		const char *etag = json_string_value(json_object_get(r, "etagInForce"));
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
	struct remote r = {0};
	int i = parse_opts(argc, argv, &r, CLI_POLICY_LIST_USAGE);
	if (i < 0)
		return opts_rc(i);
	if (i != argc) {
		fprintf(stderr, "usage: meshmask %s\n", CLI_POLICY_LIST_USAGE);
		return RC_USAGE;
	}
	struct reply rep = {0};
	if (request(&r, "GET", "/v1/policies", NULL, NULL, 0, &rep) < 0)
		return RC_IO;
	int rc = RC_OK;
	if (rep.status != 200) {
		rc = report_error("list", &rep);
	} else if (r.json) {
		fwrite(rep.body.data, 1, rep.body.len, stdout);
	} else {
		json_error_t je;
		json_t *d = json_loadb(rep.body.data ? rep.body.data : "", rep.body.len, 0, &je);
		json_t *arr = json_object_get(d, "policies");
		if (!json_is_array(arr)) {
			fprintf(stderr, "meshmask: unexpected reply from the agent\n");
			rc = RC_IO;
		} else {
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
	mm_buf_free(&rep.body);
	return rc;
}

int cli_policy_delete(int argc, char **argv)
{
	struct remote r = {0};
	const char *name;
	int rc = one_name(argc, argv, &r, CLI_POLICY_DELETE_USAGE, &name);
	if (rc >= 0)
		return rc;
	char path[600];
	snprintf(path, sizeof(path), "/v1/policies/%s", name);
	struct reply rep = {0};
	if (request(&r, "DELETE", path, NULL, NULL, 0, &rep) < 0)
		return RC_IO;
	if (rep.status == 204 || rep.status == 200) {
		printf("%s: deleted\n", name);
		rc = RC_OK;
	} else {
		rc = report_error(name, &rep);
	}
	mm_buf_free(&rep.body);
	return rc;
}
