// SPDX-License-Identifier: Apache-2.0
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "kube.h"

#define KUBE_RAW_SIZE 32768 /* also the bound on the response head */
#define KUBE_TOKEN_MAX 16384

struct kube_client {
	char *host; /* without brackets */
	char *port;
	char *authority; /* Host header, as in the URL */
	char *token_file, *ca_file;
	int connect_timeout_ms, read_timeout_s;
	pthread_mutex_t lock; /* guards fd and aborted */
	int fd;
	bool aborted;
	char err[256];
};

enum body_state { B_LENGTH, B_CLOSE, B_CHUNK_SIZE, B_CHUNK_DATA, B_CHUNK_CRLF, B_TRAILERS, B_DONE };

struct kube_stream {
	kube_read_fn read;
	void *rctx;
	struct kube_client *c; /* NULL for a reader stream */
	SSL_CTX *sctx;
	SSL *ssl;
	int fd;
	int status;
	enum body_state st;
	uint64_t left; /* bytes left of the Content-Length body or of the current chunk */
	char raw[KUBE_RAW_SIZE];
	size_t rpos, rlen;
	bool eof;
	char *lb; /* line buffer: lb[lstart..llen) not yet returned */
	size_t lstart, llen, lcap;
};

static void set_err(struct kube_client *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void set_err(struct kube_client *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err, sizeof(c->err), fmt, ap);
	va_end(ap);
}

int kube_in_cluster_url(char *out, size_t size)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	if (!host || !*host)
		return -ENOENT;
	if (!port || !*port)
		port = "443";
	int n = snprintf(out, size, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
			 port);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* "https://host[:port][/]" into its parts; -EINVAL otherwise. */
static int parse_url(struct kube_client *c, const char *url)
{
	static const char scheme[] = "https://";
	if (strncasecmp(url, scheme, sizeof(scheme) - 1))
		return -EINVAL;
	const char *a = url + sizeof(scheme) - 1;
	size_t alen = strcspn(a, "/?#");
	if (!alen || (a[alen] && strcmp(a + alen, "/")))
		return -EINVAL;
	c->authority = strndup(a, alen);
	if (!c->authority)
		return -ENOMEM;
	const char *port = NULL;
	size_t hlen;
	if (a[0] == '[') {
		const char *close = memchr(a, ']', alen);
		if (!close || close == a + 1)
			return -EINVAL;
		hlen = (size_t)(close - a - 1);
		c->host = strndup(a + 1, hlen);
		if (close + 1 < a + alen) {
			if (close[1] != ':')
				return -EINVAL;
			port = close + 2;
		}
	} else {
		const char *colon = memchr(a, ':', alen);
		hlen = colon ? (size_t)(colon - a) : alen;
		if (!hlen)
			return -EINVAL;
		c->host = strndup(a, hlen);
		port = colon ? colon + 1 : NULL;
	}
	if (port) {
		size_t plen = (size_t)(a + alen - port);
		if (!plen || plen > 5 || strspn(port, "0123456789") < plen)
			return -EINVAL;
		c->port = strndup(port, plen);
	} else {
		c->port = strdup("443");
	}
	return c->host && c->port ? 0 : -ENOMEM;
}

struct kube_client *kube_client_new(const struct kube_config *cfg)
{
	char incluster[300];
	const char *url = cfg->url;
	if (!url) {
		int r = kube_in_cluster_url(incluster, sizeof(incluster));
		if (r < 0) {
			errno = -r;
			return NULL;
		}
		url = incluster;
	}
	struct kube_client *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	pthread_mutex_init(&c->lock, NULL);
	c->fd = -1;
	c->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 5000;
	c->read_timeout_s = cfg->read_timeout_s > 0 ? cfg->read_timeout_s : 600;
	c->token_file = strdup(cfg->token_file ? cfg->token_file : KUBE_DEFAULT_TOKEN_FILE);
	c->ca_file = strdup(cfg->ca_file ? cfg->ca_file : KUBE_DEFAULT_CA_FILE);
	int r = c->token_file && c->ca_file ? parse_url(c, url) : -ENOMEM;
	if (r < 0) {
		kube_client_free(c);
		errno = -r;
		return NULL;
	}
	return c;
}

void kube_client_free(struct kube_client *c)
{
	if (!c)
		return;
	pthread_mutex_destroy(&c->lock);
	free(c->host);
	free(c->port);
	free(c->authority);
	free(c->token_file);
	free(c->ca_file);
	free(c);
}

void kube_client_abort(struct kube_client *c)
{
	pthread_mutex_lock(&c->lock);
	c->aborted = true;
	/* Wakes a thread blocked in connect/read on it; the fd stays the owner's to close. */
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
	pthread_mutex_unlock(&c->lock);
}

const char *kube_client_error(const struct kube_client *c)
{
	return c->err;
}

static bool client_aborted(struct kube_client *c)
{
	pthread_mutex_lock(&c->lock);
	bool a = c->aborted;
	pthread_mutex_unlock(&c->lock);
	return a;
}

static void set_fd(struct kube_client *c, int fd)
{
	pthread_mutex_lock(&c->lock);
	c->fd = fd;
	if (fd >= 0 && c->aborted)
		shutdown(fd, SHUT_RDWR);
	pthread_mutex_unlock(&c->lock);
}

/* The token file's first line, trimmed, into buf; "" when the file does not exist. */
static int read_token(const char *path, char *buf, size_t size)
{
	buf[0] = 0;
	FILE *f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	size_t n = fread(buf, 1, size - 1, f);
	int bad = ferror(f) || !feof(f);
	fclose(f);
	if (bad)
		return -EMSGSIZE;
	buf[n] = 0;
	buf[strcspn(buf, "\r\n")] = 0;
	size_t len = strlen(buf);
	while (len && (buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		buf[--len] = 0;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)buf[i] < 0x21 || (unsigned char)buf[i] > 0x7e)
			return -EINVAL; /* would break the header line */
	return 0;
}

static int dial(struct kube_client *c)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
	struct addrinfo *res = NULL;
	int g = getaddrinfo(c->host, c->port, &hints, &res);
	if (g) {
		set_err(c, "resolving %s: %s", c->host, gai_strerror(g));
		return -EHOSTUNREACH;
	}
	int r = -ECONNREFUSED;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
				ai->ai_protocol);
		if (fd < 0) {
			r = -errno;
			continue;
		}
		set_fd(c, fd);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
			r = -errno;
		} else {
			/* In slices, so that kube_client_abort() is seen while connecting. */
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			int pr = 0;
			for (int waited = 0; waited < c->connect_timeout_ms && !pr; waited += 200) {
				if (client_aborted(c))
					break;
				pr = poll(&p, 1, 200);
			}
			int soerr = 0;
			socklen_t sl = sizeof(soerr);
			if (pr == 0)
				r = -ETIMEDOUT;
			else if (pr < 0)
				r = -errno;
			else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr)
				r = soerr ? -soerr : -errno;
			else
				r = 0;
		}
		if (r == 0 && client_aborted(c))
			r = -ECANCELED;
		if (r == 0) {
			int fl = fcntl(fd, F_GETFL);
			fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
			int one = 1, idle = 30, intvl = 10, cnt = 3;
			setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
			setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
			setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
			setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
			struct timeval tv = {.tv_sec = c->read_timeout_s};
			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
			setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
			freeaddrinfo(res);
			return fd;
		}
		set_fd(c, -1);
		close(fd);
	}
	freeaddrinfo(res);
	set_err(c, "connecting to %s:%s: %s", c->host, c->port, strerror(-r));
	return r;
}

static ssize_t ssl_read_fn(void *ctx, void *buf, size_t n)
{
	struct kube_stream *s = ctx;
	size_t got = 0;
	errno = 0;
	if (SSL_read_ex(s->ssl, buf, n, &got) == 1)
		return (ssize_t)got;
	int e = SSL_get_error(s->ssl, 0);
	if (s->c && client_aborted(s->c))
		return -ECANCELED;
	if (e == SSL_ERROR_ZERO_RETURN)
		return 0;
	if (e == SSL_ERROR_SYSCALL)
		return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT
		       : errno				       ? -errno
			       : 0; /* EOF without close_notify: framing decides */
	return -EIO;
}

/* More raw bytes; 0, or -ENODATA at EOF, or -errno. */
static int fill(struct kube_stream *s)
{
	if (s->eof)
		return -ENODATA;
	if (s->rpos) {
		memmove(s->raw, s->raw + s->rpos, s->rlen - s->rpos);
		s->rlen -= s->rpos;
		s->rpos = 0;
	}
	if (s->rlen == sizeof(s->raw))
		return -ENOBUFS;
	ssize_t n;
	do
		n = s->read(s->rctx, s->raw + s->rlen, sizeof(s->raw) - s->rlen);
	while (n == -EINTR);
	if (n < 0)
		return (int)n;
	if (n == 0) {
		s->eof = true;
		return -ENODATA;
	}
	s->rlen += (size_t)n;
	return 0;
}

/* A CRLF- or LF-terminated line of raw input: start and length without the terminator. */
static int raw_line(struct kube_stream *s, const char **line, size_t *len)
{
	for (;;) {
		char *nl = memchr(s->raw + s->rpos, '\n', s->rlen - s->rpos);
		if (nl) {
			*line = s->raw + s->rpos;
			*len = (size_t)(nl - *line);
			if (*len && (*line)[*len - 1] == '\r')
				(*len)--;
			s->rpos = (size_t)(nl + 1 - s->raw);
			return 0;
		}
		int r = fill(s);
		if (r == -ENOBUFS || r == -ENODATA)
			return -EBADMSG;
		if (r < 0)
			return r;
	}
}

static bool header_is(const char *line, size_t len, const char *name, const char **val,
		      size_t *vlen)
{
	size_t n = strlen(name);
	if (len <= n || line[n] != ':' || strncasecmp(line, name, n))
		return false;
	const char *v = line + n + 1, *end = line + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*val = v;
	*vlen = (size_t)(end - v);
	return true;
}

static int parse_head(struct kube_stream *s)
{
	const char *l;
	size_t len;
	int r = raw_line(s, &l, &len);
	if (r < 0)
		return r;
	if (len < 12 || strncmp(l, "HTTP/1.", 7) || l[8] != ' ' || l[9] < '1' || l[9] > '5' ||
	    l[10] < '0' || l[10] > '9' || l[11] < '0' || l[11] > '9' || (len > 12 && l[12] != ' '))
		return -EBADMSG;
	s->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
	bool chunked = false, has_len = false;
	uint64_t clen = 0;
	for (;;) {
		if ((r = raw_line(s, &l, &len)) < 0)
			return r;
		if (!len)
			break;
		const char *v;
		size_t vl;
		if (header_is(l, len, "Transfer-Encoding", &v, &vl)) {
			if (vl < 7 || strncasecmp(v + vl - 7, "chunked", 7))
				return -EBADMSG; /* only chunked is sent by the API server */
			chunked = true;
		} else if (header_is(l, len, "Content-Length", &v, &vl)) {
			if (!vl || vl > 18)
				return -EBADMSG;
			uint64_t n = 0;
			for (size_t i = 0; i < vl; i++) {
				if (v[i] < '0' || v[i] > '9')
					return -EBADMSG;
				n = n * 10 + (uint64_t)(v[i] - '0');
			}
			if (has_len && n != clen)
				return -EBADMSG;
			has_len = true;
			clen = n;
		}
	}
	if (s->status == 204 || s->status == 304) {
		s->st = B_DONE;
	} else if (chunked) {
		s->st = B_CHUNK_SIZE;
	} else if (has_len) {
		s->st = clen ? B_LENGTH : B_DONE;
		s->left = clen;
	} else {
		s->st = B_CLOSE;
	}
	return 0;
}

/* Decoded body bytes into out: count, 0 at the end of the body, or -errno. */
static ssize_t body_read(struct kube_stream *s, char *out, size_t n)
{
	for (;;) {
		size_t avail = s->rlen - s->rpos;
		switch (s->st) {
		case B_DONE:
			return 0;
		case B_CLOSE:
		case B_LENGTH:
		case B_CHUNK_DATA: {
			if (!avail) {
				int r = fill(s);
				if (r == -ENODATA && s->st == B_CLOSE) {
					s->st = B_DONE;
					return 0;
				}
				if (r == -ENODATA)
					return -EPIPE; /* truncated body */
				if (r < 0)
					return r;
				continue;
			}
			size_t k = n < avail ? n : avail;
			if (s->st != B_CLOSE && k > s->left)
				k = (size_t)s->left;
			memcpy(out, s->raw + s->rpos, k);
			s->rpos += k;
			if (s->st != B_CLOSE) {
				s->left -= k;
				if (!s->left)
					s->st = s->st == B_LENGTH ? B_DONE : B_CHUNK_CRLF;
			}
			return (ssize_t)k;
		}
		case B_CHUNK_SIZE: {
			const char *l;
			size_t len;
			int r = raw_line(s, &l, &len);
			if (r < 0)
				return r;
			uint64_t v = 0;
			size_t i = 0;
			for (; i < len; i++) {
				char ch = l[i];
				int d = ch >= '0' && ch <= '9'	 ? ch - '0'
					: ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
					: ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
								 : -1;
				if (d < 0)
					break;
				if (v >> 56)
					return -EBADMSG;
				v = v * 16 + (uint64_t)d;
			}
			if (!i || (i < len && l[i] != ';' && l[i] != ' ' && l[i] != '\t'))
				return -EBADMSG;
			s->left = v;
			s->st = v ? B_CHUNK_DATA : B_TRAILERS;
			continue;
		}
		case B_CHUNK_CRLF: {
			const char *l;
			size_t len;
			int r = raw_line(s, &l, &len);
			if (r < 0)
				return r;
			if (len)
				return -EBADMSG;
			s->st = B_CHUNK_SIZE;
			continue;
		}
		case B_TRAILERS: {
			const char *l;
			size_t len;
			int r = raw_line(s, &l, &len);
			if (r < 0)
				return r;
			if (!len)
				s->st = B_DONE;
			continue;
		}
		}
	}
}

int kube_stream_status(const struct kube_stream *s)
{
	return s->status;
}

int kube_stream_read_all(struct kube_stream *s, char **body, size_t *len, size_t max)
{
	size_t cap = 16384, n = 0;
	char *b = malloc(cap);
	if (!b)
		return -ENOMEM;
	for (;;) {
		if (cap - n < 4096) {
			if (cap > max) {
				free(b);
				return -EMSGSIZE;
			}
			char *nb = realloc(b, cap * 2);
			if (!nb) {
				free(b);
				return -ENOMEM;
			}
			b = nb;
			cap *= 2;
		}
		ssize_t k = body_read(s, b + n, cap - n - 1);
		if (k < 0) {
			free(b);
			return (int)k;
		}
		if (!k)
			break;
		n += (size_t)k;
		if (n > max) {
			free(b);
			return -EMSGSIZE;
		}
	}
	b[n] = 0;
	*body = b;
	*len = n;
	return 0;
}

int kube_stream_read_line(struct kube_stream *s, char **line, size_t *len, size_t max)
{
	for (;;) {
		char *start = s->lb ? s->lb + s->lstart : NULL;
		char *nl = start ? memchr(start, '\n', s->llen - s->lstart) : NULL;
		bool end = false;
		if (!nl && s->st == B_DONE && s->llen > s->lstart) {
			nl = s->lb + s->llen; /* the last line has no newline */
			end = true;
		}
		if (nl) {
			size_t l = (size_t)(nl - start);
			if (l > max)
				return -EMSGSIZE;
			s->lstart += l + !end;
			if (end)
				s->llen = s->lstart;
			if (l && start[l - 1] == '\r')
				l--;
			if (!l)
				continue;
			start[l] = 0; /* a newline or '\r' or the spare byte is overwritten */
			*line = start;
			*len = l;
			return 0;
		}
		if (s->llen - s->lstart > max)
			return -EMSGSIZE;
		if (s->st == B_DONE)
			return -ENODATA;
		/* Move the partial line to the front, then make room for more. */
		if (s->lstart) {
			memmove(s->lb, s->lb + s->lstart, s->llen - s->lstart);
			s->llen -= s->lstart;
			s->lstart = 0;
		}
		if (s->lcap - s->llen < 8192) {
			size_t cap = s->lcap ? s->lcap * 2 : 65536;
			char *nb = realloc(s->lb, cap);
			if (!nb)
				return -ENOMEM;
			s->lb = nb;
			s->lcap = cap;
		}
		ssize_t k = body_read(s, s->lb + s->llen, s->lcap - s->llen - 1);
		if (k < 0)
			return (int)k;
		s->llen += (size_t)k;
	}
}

void kube_stream_close(struct kube_stream *s)
{
	if (!s)
		return;
	if (s->c)
		set_fd(s->c, -1);
	if (s->ssl)
		SSL_free(s->ssl);
	if (s->sctx)
		SSL_CTX_free(s->sctx);
	if (s->fd >= 0)
		close(s->fd);
	free(s->lb);
	free(s);
}

struct kube_stream *kube_stream_from_reader(kube_read_fn read, void *ctx)
{
	struct kube_stream *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->fd = -1;
	s->read = read;
	s->rctx = ctx;
	int r = parse_head(s);
	if (r < 0) {
		kube_stream_close(s);
		errno = r == -EBADMSG ? EBADMSG : -r;
		return NULL;
	}
	return s;
}

static bool is_ip_literal(const char *host)
{
	unsigned char a[16];
	return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

static void ssl_err(struct kube_client *c, const char *what)
{
	char e[160] = "";
	unsigned long code = ERR_get_error();
	if (code)
		ERR_error_string_n(code, e, sizeof(e));
	ERR_clear_error();
	set_err(c, "%s: %s", what, e[0] ? e : "failed");
}

static int write_all(SSL *ssl, const char *p, size_t n)
{
	while (n) {
		size_t w = 0;
		if (SSL_write_ex(ssl, p, n, &w) != 1)
			return -EIO;
		p += w;
		n -= w;
	}
	return 0;
}

int kube_get(struct kube_client *c, const char *target, struct kube_stream **out)
{
	*out = NULL;
	c->err[0] = 0;
	if (client_aborted(c))
		return -ECANCELED;
	char *token = malloc(KUBE_TOKEN_MAX);
	char *req = NULL;
	struct kube_stream *s = calloc(1, sizeof(*s));
	int r;
	if (!token || !s) {
		r = -ENOMEM;
		goto fail;
	}
	s->fd = -1;
	s->c = c;
	s->read = ssl_read_fn;
	s->rctx = s;
	/* Re-read on every connection: projected ServiceAccount tokens rotate. */
	if ((r = read_token(c->token_file, token, KUBE_TOKEN_MAX)) < 0) {
		set_err(c, "token file %s: %s", c->token_file, strerror(-r));
		goto fail;
	}
	/* A new context each time also picks up a rotated CA bundle. */
	s->sctx = SSL_CTX_new(TLS_client_method());
	if (!s->sctx) {
		r = -ENOMEM;
		goto fail;
	}
	SSL_CTX_set_min_proto_version(s->sctx, TLS1_2_VERSION);
	/* An EOF without close_notify reads as an end; the HTTP framing tells truncation. */
	SSL_CTX_set_options(s->sctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_verify(s->sctx, SSL_VERIFY_PEER, NULL);
	if (SSL_CTX_load_verify_locations(s->sctx, c->ca_file, NULL) != 1) {
		ssl_err(c, c->ca_file);
		r = access(c->ca_file, R_OK) < 0 ? -errno : -EPROTO;
		goto fail;
	}
	if ((s->fd = dial(c)) < 0) {
		r = s->fd;
		goto fail;
	}
	s->ssl = SSL_new(s->sctx);
	if (!s->ssl || SSL_set_fd(s->ssl, s->fd) != 1) {
		r = -ENOMEM;
		goto fail;
	}
	if (is_ip_literal(c->host)) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(s->ssl);
		if (X509_VERIFY_PARAM_set1_ip_asc(vp, c->host) != 1) {
			r = -EINVAL;
			goto fail;
		}
	} else if (SSL_set_tlsext_host_name(s->ssl, c->host) != 1 ||
		   SSL_set1_host(s->ssl, c->host) != 1) {
		r = -EINVAL;
		goto fail;
	}
	if (SSL_connect(s->ssl) != 1) {
		long v = SSL_get_verify_result(s->ssl);
		if (client_aborted(c)) {
			r = -ECANCELED;
		} else if (v != X509_V_OK) {
			ERR_clear_error();
			set_err(c, "TLS verification of %s: %s", c->host,
				X509_verify_cert_error_string(v));
			r = -EPROTO;
		} else {
			ssl_err(c, "TLS handshake");
			r = -EPROTO;
		}
		goto fail;
	}
	int n = asprintf(&req,
			 "GET %s HTTP/1.1\r\nHost: %s\r\n%s%s%sAccept: application/json\r\n"
			 "User-Agent: meshmask-agent/" MESHMASK_VERSION "\r\n"
			 "Connection: close\r\n\r\n",
			 target, c->authority, token[0] ? "Authorization: Bearer " : "", token,
			 token[0] ? "\r\n" : "");
	if (n < 0) {
		req = NULL;
		r = -ENOMEM;
		goto fail;
	}
	r = write_all(s->ssl, req, (size_t)n);
	OPENSSL_cleanse(req, (size_t)n);
	if (r < 0) {
		r = client_aborted(c) ? -ECANCELED : -EPIPE;
		set_err(c, "sending the request: %s", strerror(-r));
		goto fail;
	}
	if ((r = parse_head(s)) < 0) {
		set_err(c, "reading the response: %s", strerror(-r));
		goto fail;
	}
	OPENSSL_cleanse(token, KUBE_TOKEN_MAX);
	free(token);
	free(req);
	*out = s;
	return 0;
fail:
	if (token)
		OPENSSL_cleanse(token, KUBE_TOKEN_MAX);
	free(token);
	free(req);
	if (s && !c->err[0])
		set_err(c, "%s", strerror(-r));
	kube_stream_close(s);
	return r;
}
