/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The policy store. Two sources share one name space:
 *  - files in --policies DIR (a mounted ConfigMap, owned by Helm): rescanned on every inotify
 *    event of the directory, so the ConfigMap's "..data" symlink swap is seen as one change;
 *    files are compared by content digest, and a broken file keeps its previous version in
 *    force;
 *  - documents pushed through the admin API, persisted as <state-dir>/policies/<name>.json
 *    (write temp, fsync, rename, fsync the directory) and reloaded at start.
 *  - MaskingPolicy / ClusterMaskingPolicy resources handed in by the cluster layer
 *    (agent/cluster/) as they are listed and watched: not persisted (the API server is their
 *    store); a refused version keeps the previous one in force, as for a file.
 * Precedence by name: file > resource > push. Pushing or deleting a name a file or a resource
 * owns is refused (-EEXIST / -EPERM); a resource whose name a file owns is refused on this
 * node (kept, and in force once the file goes away); a file or resource that appears later
 * shadows a pushed document (kept on disk, logged) until it goes away.
 *
 * Every change builds a new immutable policy_set and swaps the pointer: readers holding the
 * old set keep it until they drop their reference.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "log.h"
#include "metrics.h"
#include "util.h"
#include "store.h"

#define STORE_MAX_FILE (4u << 20)
#define STORE_RESCAN_MS 30000 /* safety net beside inotify */
#define STORE_SETTLE_MS 50 /* let a burst of events (a ConfigMap swap) settle */

struct store_file {
	char *fname;
	unsigned char digest[32];
	struct policy *p; /* last good version, may be NULL */
	bool shadowed; /* another file has the same policy name */
	struct store_rejection *rej; /* why the current content is refused; NULL = it is not */
	bool rej_shadow; /* rej says "shadowed", not "broken" */
};

/* A policy resource (agent/cluster/). */
struct store_crd {
	char *key; /* the policy's name here: "pii", or "shop.pii" for a namespaced resource */
	char *resource; /* "ClusterMaskingPolicy/pii", "MaskingPolicy/shop/pii" */
	struct policy *p; /* last good version, may be NULL */
	struct policy_errors errs; /* why the current version is refused (n == 0: it is not) */
	int64_t time; /* when the current version was refused */
	bool in_force; /* set by publish_locked */
	char why[240]; /* with p and !in_force: what keeps it out (a file, the limit) */
};

struct store_sub {
	store_change_fn fn;
	void *ctx;
};

struct store {
	pthread_mutex_t wlock; /* serialises changes and subscriber calls */
	pthread_mutex_t slock; /* guards `cur` for store_get */
	struct policy_set *cur;
	uint64_t generation;

	char *policies_dir;
	char *api_dir;
	struct store_file *files;
	size_t n_files;
	struct policy **api;
	size_t n_api;
	bool *api_in_force; /* parallel to api, set by publish_locked */
	struct store_crd *crds;
	size_t n_crds;
	struct store_sub *subs;
	size_t n_subs;

	int ino_fd, ino_wd, stop_fd;
	pthread_t thread;
	bool thread_started;
	bool loaded;

	/* A copy of the files' rejections for readers that must not wait for wlock. */
	pthread_mutex_t rlock;
	struct store_rejection *rej;
	size_t n_rej;
	uint64_t rej_version;
};

static void log_errors(enum agent_log_level lvl, const char *origin,
		       const struct policy_errors *errs)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return;
	policy_errors_print(f, origin, errs);
	fclose(f);
	for (char *line = text, *nl; line && *line; line = nl ? nl + 1 : NULL) {
		nl = strchr(line, '\n');
		if (nl)
			*nl = 0;
		if (*line)
			agent_log(lvl, "policy rejected: %s", line);
	}
	free(text);
}

/* Names become file names: DNS subdomain rules (RFC 1123) keep them safe. */
bool store_name_valid(const char *name)
{
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && !((c == '-' || c == '.') && i > 0 && i < n - 1))
			return false;
	}
	return !strstr(name, "..");
}

/* The parser is expected to fill the etag; computed here when it did not. */
static void ensure_etag(struct policy *p, const char *text, size_t len)
{
	if (p->etag[0])
		return;
	unsigned char d[32];
	if (p->json)
		mm_sha256(p->json, strlen(p->json), d);
	else
		mm_sha256(text, len, d);
	for (int i = 0; i < 32; i++)
		snprintf(p->etag + 2 * i, 3, "%02x", d[i]);
}

static int read_file(int dirfd, const char *name, char **out, size_t *out_len)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat sb;
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	if ((size_t)sb.st_size > STORE_MAX_FILE) {
		close(fd);
		return -EFBIG;
	}
	size_t cap = (size_t)sb.st_size + 1, len = 0;
	char *buf = malloc(cap);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		if (len + 1 >= cap) {
			if (cap > STORE_MAX_FILE) {
				free(buf);
				close(fd);
				return -EFBIG;
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				close(fd);
				return -ENOMEM;
			}
			buf = nb;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + len, cap - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = -errno;
			free(buf);
			close(fd);
			return e;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = 0;
	*out = buf;
	*out_len = len;
	return 0;
}

static int cmp_policy_name(const void *a, const void *b)
{
	const struct policy *pa = *(const struct policy *const *)a;
	const struct policy *pb = *(const struct policy *const *)b;
	return strcmp(pa->name, pb->name);
}

static struct policy *file_policy(const struct store *st, const char *name)
{
	for (size_t i = 0; i < st->n_files; i++)
		if (st->files[i].p && !st->files[i].shadowed && !strcmp(st->files[i].p->name, name))
			return st->files[i].p;
	return NULL;
}

/* The resource owning `name` with a version to put in force, or NULL. */
static struct store_crd *crd_policy(const struct store *st, const char *name)
{
	for (size_t i = 0; i < st->n_crds; i++)
		if (st->crds[i].p && !strcmp(st->crds[i].key, name))
			return &st->crds[i];
	return NULL;
}

static ssize_t crd_index(const struct store *st, const char *key)
{
	for (size_t i = 0; i < st->n_crds; i++)
		if (!strcmp(st->crds[i].key, key))
			return (ssize_t)i;
	return -1;
}

static ssize_t api_index(const struct store *st, const char *name)
{
	for (size_t i = 0; i < st->n_api; i++)
		if (!strcmp(st->api[i]->name, name))
			return (ssize_t)i;
	return -1;
}

/*
 * Build and swap in a new set from the three sources (files, then resources, then pushes, at
 * most STORE_MAX_POLICIES), then tell subscribers. wlock held.
 */
static int publish_locked(struct store *st)
{
	size_t n = 0, n_file = 0, n_api = 0, n_crd = 0, file_refused = 0, crd_refused = 0;
	struct policy **v = calloc(st->n_files + st->n_crds + st->n_api + 1, sizeof(*v));
	bool *api_in = calloc(st->n_api + 1, sizeof(*api_in));
	if (!v || !api_in) {
		free(v);
		free(api_in);
		return -ENOMEM;
	}
	for (size_t i = 0; i < st->n_files; i++) {
		if (st->files[i].p && !st->files[i].shadowed) {
			v[n++] = st->files[i].p;
			n_file++;
		}
		file_refused += st->files[i].rej != NULL;
	}
	for (size_t i = 0; i < st->n_crds; i++) {
		struct store_crd *c = &st->crds[i];
		struct policy *f = c->p ? file_policy(st, c->key) : NULL;
		c->in_force = false;
		c->why[0] = 0;
		if (f) {
			const char *fname = "";
			for (size_t j = 0; j < st->n_files; j++)
				if (st->files[j].p == f)
					fname = st->files[j].fname;
			snprintf(c->why, sizeof(c->why),
				 "the name %s is taken by the policy file %s on this node (files "
				 "take precedence)",
				 c->key, fname);
		} else if (c->p && n >= STORE_MAX_POLICIES) {
			snprintf(c->why, sizeof(c->why), "a node holds at most %d policies",
				 STORE_MAX_POLICIES);
		} else if (c->p) {
			v[n++] = c->p;
			c->in_force = true;
			n_crd++;
		}
		crd_refused += !c->in_force || c->errs.n;
	}
	for (size_t i = 0; i < st->n_api; i++)
		if (!file_policy(st, st->api[i]->name) && !crd_policy(st, st->api[i]->name) &&
		    n < STORE_MAX_POLICIES) {
			v[n++] = st->api[i];
			api_in[i] = true;
			n_api++;
		}
	free(st->api_in_force);
	st->api_in_force = api_in;
	qsort(v, n, sizeof(*v), cmp_policy_name);
	struct policy_set *set = policy_set_new(v, n, st->generation + 1);
	free(v);
	if (!set)
		return -errno ?: -ENOMEM;
	st->generation++;
	pthread_mutex_lock(&st->slock);
	struct policy_set *old = st->cur;
	st->cur = set;
	pthread_mutex_unlock(&st->slock);
	if (old)
		policy_set_unref(old);
	metrics_policies("file", "in_force", n_file);
	metrics_policies("file", "refused", file_refused);
	metrics_policies("crd", "in_force", n_crd);
	metrics_policies("crd", "refused", crd_refused);
	metrics_policies("admin", "in_force", n_api);
	metrics_policies("admin", "refused", st->n_api - n_api);
	for (size_t i = 0; i < st->n_subs; i++)
		st->subs[i].fn(st->subs[i].ctx, set);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_policy_file(const char *name)
{
	size_t n = strlen(name);
	return name[0] != '.' && n > 5 && !strcmp(name + n - 5, ".json");
}

/* Sorted list of candidate policy files in `dir`; count or -errno. */
static ssize_t list_dir(int dirfd, char ***out)
{
	int fd = dup(dirfd);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	rewinddir(d);
	char **v = NULL;
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!is_policy_file(de->d_name))
			continue;
		char **nv = realloc(v, (n + 1) * sizeof(*v));
		if (!nv || !(nv[n] = strdup(de->d_name))) {
			v = nv ? nv : v;
			while (n--)
				free(v[n]);
			free(v);
			closedir(d);
			return -ENOMEM;
		}
		v = nv;
		n++;
	}
	closedir(d);
	if (n)
		qsort(v, n, sizeof(*v), cmp_str);
	*out = v;
	return (ssize_t)n;
}

static void free_names(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* ---- rejected files ----------------------------------------------------------------- */

static void rejection_clear(struct store_rejection *r)
{
	free(r->file);
	free(r->resource);
	free(r->name);
	free(r->etag_in_force);
	policy_errors_free(&r->errs);
	memset(r, 0, sizeof(*r));
}

static void rejection_free(struct store_rejection *r)
{
	if (!r)
		return;
	rejection_clear(r);
	free(r);
}

void store_rejections_free(struct store_rejection *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		rejection_clear(&v[i]);
	free(v);
}

static char *strdup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static bool same_str(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

static bool errors_equal(const struct policy_errors *a, const struct policy_errors *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (a->v[i].line != b->v[i].line || a->v[i].column != b->v[i].column ||
		    !same_str(a->v[i].pointer, b->v[i].pointer) ||
		    !same_str(a->v[i].message, b->v[i].message))
			return false;
	return true;
}

static int errors_copy(struct policy_errors *dst, const struct policy_errors *src)
{
	dst->v = src->n ? calloc(src->n, sizeof(*dst->v)) : NULL;
	dst->n = 0;
	if (src->n && !dst->v)
		return -ENOMEM;
	for (size_t i = 0; i < src->n; i++) {
		const struct policy_error *e = &src->v[i];
		struct policy_error *d = &dst->v[dst->n++];
		d->line = e->line;
		d->column = e->column;
		d->pointer = strdup_or_null(e->pointer);
		d->message = strdup_or_null(e->message);
		if ((e->pointer && !d->pointer) || (e->message && !d->message))
			return -ENOMEM;
	}
	return 0;
}

static int rejection_copy(struct store_rejection *dst, const struct store_rejection *src)
{
	*dst = (struct store_rejection){.time = src->time};
	dst->file = strdup_or_null(src->file);
	dst->resource = strdup_or_null(src->resource);
	dst->name = strdup_or_null(src->name);
	dst->etag_in_force = strdup_or_null(src->etag_in_force);
	if ((src->file && !dst->file) || (src->resource && !dst->resource) ||
	    (src->name && !dst->name) ||
	    (src->etag_in_force && !dst->etag_in_force) || errors_copy(&dst->errs, &src->errs) < 0)
		return -ENOMEM;
	return 0;
}

/* metadata.name of a document the parser refused, when it is readable JSON; else NULL. */
static char *document_name(const char *text, size_t len)
{
	json_error_t je;
	json_t *doc = json_loadb(text, len, 0, &je);
	const char *n =
		json_string_value(json_object_get(json_object_get(doc, "metadata"), "name"));
	char *r = n && store_name_valid(n) ? strdup(n) : NULL;
	json_decref(doc);
	return r;
}

/*
 * Record why file f's current content is refused; takes the errors (*errs is emptied). An
 * identical rejection already recorded keeps its time. Nothing when out of memory: the
 * refusal is logged and counted anyway.
 */
static void file_reject(struct store_file *f, struct policy_errors *errs, char *doc_name,
			bool shadow)
{
	struct store_rejection *r = calloc(1, sizeof(*r));
	if (!r) {
		free(doc_name);
		policy_errors_free(errs);
		return;
	}
	r->time = (int64_t)time(NULL);
	r->file = strdup(f->fname);
	r->errs = *errs;
	*errs = (struct policy_errors){0};
	if (f->p && !shadow) {
		r->name = strdup(f->p->name);
		r->etag_in_force = strdup(f->p->etag);
		free(doc_name);
	} else {
		r->name = doc_name ? doc_name : strdup_or_null(f->p ? f->p->name : NULL);
	}
	struct store_rejection *old = f->rej;
	if (old && errors_equal(&old->errs, &r->errs) && same_str(old->name, r->name) &&
	    same_str(old->etag_in_force, r->etag_in_force))
		r->time = old->time; /* the same refusal seen again (a rescan) */
	rejection_free(old);
	f->rej = r;
	f->rej_shadow = shadow;
}

static void file_reject_msg(struct store_file *f, const char *pointer, const char *message,
			    bool shadow)
{
	struct policy_errors errs = {0};
	errs.v = calloc(1, sizeof(*errs.v));
	if (errs.v) {
		errs.v[0] = (struct policy_error){.pointer = strdup_or_null(pointer),
						  .message = strdup(message)};
		errs.n = 1;
	}
	file_reject(f, &errs, NULL, shadow);
}

static void file_accept(struct store_file *f)
{
	rejection_free(f->rej);
	f->rej = NULL;
	f->rej_shadow = false;
}

static bool rejection_equal(const struct store_rejection *a, const struct store_rejection *b)
{
	return a->time == b->time && same_str(a->file, b->file) &&
	       same_str(a->resource, b->resource) && same_str(a->name, b->name) &&
	       same_str(a->etag_in_force, b->etag_in_force) && errors_equal(&a->errs, &b->errs);
}

/* Whether resource c's latest version is not in force (errors, or shadowed). */
static bool crd_refused(const struct store_crd *c)
{
	return c->errs.n || (c->p && !c->in_force);
}

/* Refresh the readers' copy of the rejections (files, then resources). wlock held. */
static void publish_rejections_locked(struct store *st)
{
	size_t n = 0;
	for (size_t i = 0; i < st->n_files; i++)
		n += st->files[i].rej != NULL;
	for (size_t i = 0; i < st->n_crds; i++)
		n += crd_refused(&st->crds[i]);
	struct store_rejection *v = n ? calloc(n, sizeof(*v)) : NULL;
	if (n && !v)
		return;
	size_t k = 0;
	for (size_t i = 0; i < st->n_files; i++) {
		if (!st->files[i].rej)
			continue;
		if (rejection_copy(&v[k++], st->files[i].rej) < 0) {
			store_rejections_free(v, k);
			return;
		}
	}
	for (size_t i = 0; i < st->n_crds; i++) {
		const struct store_crd *c = &st->crds[i];
		if (!crd_refused(c))
			continue;
		struct store_rejection tmp = {.resource = c->resource,
					      .name = c->key,
					      .etag_in_force = c->in_force ? c->p->etag : NULL,
					      .time = c->time,
					      .errs = c->errs};
		struct policy_error shadow = {.pointer = (char *)"/metadata/name",
					      .message = (char *)c->why};
		if (!c->errs.n)
			tmp.errs = (struct policy_errors){.v = &shadow, .n = 1};
		if (rejection_copy(&v[k++], &tmp) < 0) {
			store_rejections_free(v, k);
			return;
		}
	}
	pthread_mutex_lock(&st->rlock);
	bool same = n == st->n_rej;
	for (size_t i = 0; same && i < n; i++)
		same = rejection_equal(&v[i], &st->rej[i]);
	struct store_rejection *old = st->rej;
	size_t n_old = st->n_rej;
	st->rej = v;
	st->n_rej = n;
	if (!same)
		st->rej_version++;
	pthread_mutex_unlock(&st->rlock);
	store_rejections_free(old, n_old);
}

int store_rejections(struct store *st, struct store_rejection **out, size_t *n, uint64_t *version)
{
	*out = NULL;
	*n = 0;
	pthread_mutex_lock(&st->rlock);
	int r = 0;
	struct store_rejection *v = st->n_rej ? calloc(st->n_rej, sizeof(*v)) : NULL;
	size_t k = 0;
	if (st->n_rej && !v)
		r = -ENOMEM;
	for (; !r && k < st->n_rej; k++)
		if (rejection_copy(&v[k], &st->rej[k]) < 0)
			r = -ENOMEM;
	if (version)
		*version = st->rej_version;
	pthread_mutex_unlock(&st->rlock);
	if (r < 0) {
		store_rejections_free(v, k);
		return r;
	}
	*out = v;
	*n = k;
	return 0;
}

/* Re-read --policies DIR; publish when something changed. wlock held. */
/* Whether some file (in force or not) defines a policy called name. */
static bool file_defines(const struct store *st, const char *name)
{
	for (size_t i = 0; i < st->n_files; i++)
		if (st->files[i].p && !strcmp(st->files[i].p->name, name))
			return true;
	return false;
}

/*
 * The steering maps number at most STORE_MAX_POLICIES policies: files past the limit (in file
 * name order, after the pushed policies already in force) are refused like a shadowed file, and
 * come back when room is made. Returns whether that changed what is in force. wlock held.
 */
static bool limit_files_locked(struct store *st)
{
	size_t api_only = 0, in = 0;
	bool changed = false;
	for (size_t i = 0; i < st->n_api; i++)
		api_only += !file_defines(st, st->api[i]->name);
	size_t room = api_only < STORE_MAX_POLICIES ? STORE_MAX_POLICIES - api_only : 0;
	for (size_t i = 0; i < st->n_files; i++) {
		struct store_file *f = &st->files[i];
		if (!f->p || f->shadowed)
			continue;
		if (in < room) {
			in++;
			continue;
		}
		f->shadowed = true;
		changed = true;
		char msg[200];
		snprintf(msg, sizeof(msg),
			 "a node holds at most %d policies: this file would add one more (files "
			 "count in name order)",
			 STORE_MAX_POLICIES);
		if (!f->rej || !f->rej_shadow)
			agent_log(AGENT_LOG_ERROR, "policy file %s/%s: policy %s refused: %s",
				  st->policies_dir, f->fname, f->p->name, msg);
		file_reject_msg(f, "", msg, true);
	}
	return changed;
}

static void rescan_files_locked(struct store *st)
{
	if (!st->policies_dir)
		return;
	int dirfd = open(st->policies_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char **names = NULL;
	ssize_t n = 0;
	if (dirfd < 0 && errno != ENOENT) {
		agent_log(AGENT_LOG_WARN, "policies %s: %s", st->policies_dir, strerror(errno));
		return; /* keep what is in force */
	}
	if (dirfd >= 0) {
		n = list_dir(dirfd, &names);
		if (n < 0) {
			agent_log(AGENT_LOG_WARN, "policies %s: %s", st->policies_dir,
				  strerror((int)-n));
			close(dirfd);
			return; /* keep what is in force */
		}
	}
	bool changed = false;
	struct store_file *nf = calloc((size_t)n + 1, sizeof(*nf));
	if (!nf) {
		free_names(names, (size_t)n);
		if (dirfd >= 0)
			close(dirfd);
		return;
	}
	for (ssize_t i = 0; i < n; i++) {
		struct store_file *f = &nf[i];
		f->fname = names[i];
		names[i] = NULL;
		struct store_file *old = NULL;
		for (size_t j = 0; j < st->n_files; j++)
			if (st->files[j].fname && !strcmp(st->files[j].fname, f->fname))
				old = &st->files[j];
		if (old) {
			memcpy(f->digest, old->digest, sizeof(f->digest));
			f->p = old->p;
			old->p = NULL;
			f->rej = old->rej;
			f->rej_shadow = old->rej_shadow;
			old->rej = NULL;
		}
		char *text;
		size_t len;
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", st->policies_dir, f->fname);
		int r = read_file(dirfd, f->fname, &text, &len);
		if (r < 0) {
			/* vanished between readdir and open (a swap in progress): next event */
			if (r != -ENOENT) {
				agent_log(AGENT_LOG_WARN, "policy file %s: %s", path, strerror(-r));
				metrics_policy_reload("file", false);
				char msg[160];
				snprintf(msg, sizeof(msg), "cannot read the file: %s",
					 r == -EINVAL ? "not a regular file" : strerror(-r));
				file_reject_msg(f, "", msg, false);
			}
			continue;
		}
		unsigned char d[32];
		mm_sha256(text, len, d);
		if (old && !memcmp(d, f->digest, sizeof(d))) {
			free(text);
			continue;
		}
		memcpy(f->digest, d, sizeof(d));
		struct policy_errors errs = {0};
		struct policy *p = policy_parse(text, len, path, &errs);
		int parse_errno = errno;
		if (!p) {
			if (errs.n)
				log_errors(AGENT_LOG_ERROR, path, &errs);
			else
				agent_log(AGENT_LOG_ERROR, "policy file %s: %s", path,
					  strerror(parse_errno));
			if (f->p)
				agent_log(AGENT_LOG_WARN,
					  "policy file %s: previous version of %s stays in force",
					  path, f->p->name);
			if (!errs.n)
				file_reject_msg(f, "", strerror(parse_errno ?: EINVAL), false);
			else
				file_reject(f, &errs, document_name(text, len), false);
			policy_errors_free(&errs);
			metrics_policy_reload("file", false);
		} else {
			ensure_etag(p, text, len);
			if (f->p)
				policy_unref(f->p);
			f->p = p;
			file_accept(f);
			changed = true;
			agent_log(AGENT_LOG_INFO, "policy %s loaded from %s (etag %.12s)", p->name,
				  path, p->etag);
			metrics_policy_reload("file", true);
		}
		free(text);
	}
	free(names);
	if (dirfd >= 0)
		close(dirfd);

	/* Removed files. */
	for (size_t j = 0; j < st->n_files; j++) {
		if (st->files[j].p) {
			agent_log(AGENT_LOG_INFO, "policy %s removed (file %s gone)",
				  st->files[j].p->name, st->files[j].fname);
			policy_unref(st->files[j].p);
			changed = true;
		}
		rejection_free(st->files[j].rej);
		free(st->files[j].fname);
	}
	free(st->files);
	st->files = nf;
	st->n_files = (size_t)n;

	/* Two files naming the same policy: the first file name (sorted) wins. */
	for (size_t i = 0; i < st->n_files; i++) {
		bool was = st->files[i].shadowed;
		st->files[i].shadowed = false;
		for (size_t j = 0; st->files[i].p && j < i; j++)
			if (st->files[j].p && !st->files[j].shadowed &&
			    !strcmp(st->files[j].p->name, st->files[i].p->name))
				st->files[i].shadowed = true;
		if (st->files[i].shadowed != was)
			changed = true;
		if (st->files[i].shadowed && !was) {
			agent_log(AGENT_LOG_ERROR,
				  "policy file %s/%s: policy %s is already defined",
				  st->policies_dir, st->files[i].fname, st->files[i].p->name);
			metrics_policy_reload("file", false);
		}
		if (st->files[i].shadowed && !st->files[i].rej) {
			char msg[400] = "policy is already defined by another file";
			for (size_t j = 0; j < i; j++)
				if (st->files[j].p && !st->files[j].shadowed &&
				    !strcmp(st->files[j].p->name, st->files[i].p->name))
					snprintf(msg, sizeof(msg),
						 "policy %s is already defined by %s, which is in "
						 "force",
						 st->files[i].p->name, st->files[j].fname);
			file_reject_msg(&st->files[i], "/metadata/name", msg, true);
		} else if (!st->files[i].shadowed && st->files[i].rej_shadow) {
			file_accept(&st->files[i]);
		}
	}
	if (limit_files_locked(st))
		changed = true;
	publish_rejections_locked(st);
	if (changed) {
		for (size_t i = 0; i < st->n_api; i++)
			if (file_policy(st, st->api[i]->name))
				agent_log(AGENT_LOG_WARN,
					  "pushed policy %s is shadowed by a file policy of the "
					  "same name",
					  st->api[i]->name);
		int r = publish_locked(st);
		if (r < 0)
			agent_log(AGENT_LOG_ERROR, "policy store: %s", strerror(-r));
		publish_rejections_locked(st); /* resources a file now shadows, or no longer */
	}
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return r;
}

/* Write `text` as <api_dir>/<name>.json atomically; nothing without a state dir. */
static int persist(const struct store *st, const char *name, const char *text, size_t len)
{
	if (!st->api_dir)
		return 0;
	char tmp[4096], path[4096];
	snprintf(tmp, sizeof(tmp), "%s/.%s.json.tmp", st->api_dir, name);
	snprintf(path, sizeof(path), "%s/%s.json", st->api_dir, name);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int r = 0;
	for (size_t off = 0; off < len && !r;) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			r = -errno;
		else
			off += (size_t)w;
	}
	if (!r && fsync(fd) < 0)
		r = -errno;
	if (close(fd) < 0 && !r)
		r = -errno;
	if (!r && rename(tmp, path) < 0)
		r = -errno;
	if (r) {
		unlink(tmp);
		return r;
	}
	return fsync_dir(st->api_dir);
}

static void load_api_dir(struct store *st)
{
	int dirfd = open(st->api_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		return;
	/* A temp file left by a crash mid-write: the rename never happened, drop it. */
	DIR *d = fdopendir(dup(dirfd));
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (de->d_name[0] == '.' && strstr(de->d_name, ".json.tmp"))
			unlinkat(dirfd, de->d_name, 0);
	if (d)
		closedir(d);
	char **names = NULL;
	ssize_t n = list_dir(dirfd, &names);
	for (ssize_t i = 0; i < n; i++) {
		char *text;
		size_t len;
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", st->api_dir, names[i]);
		if (read_file(dirfd, names[i], &text, &len) < 0) {
			agent_log(AGENT_LOG_ERROR, "pushed policy %s: unreadable", path);
			continue;
		}
		struct policy_errors errs = {0};
		struct policy *p = policy_parse(text, len, "api", &errs);
		if (!p) {
			log_errors(AGENT_LOG_ERROR, path, &errs);
			policy_errors_free(&errs);
			metrics_policy_reload("api", false);
		} else if (strlen(names[i]) != strlen(p->name) + 5 ||
			   strncmp(names[i], p->name, strlen(p->name)) ||
			   api_index(st, p->name) >= 0) {
			agent_log(AGENT_LOG_ERROR,
				  "pushed policy %s: name %s does not match the file", path,
				  p->name);
			policy_unref(p);
		} else {
			ensure_etag(p, text, len);
			struct policy **nv = realloc(st->api, (st->n_api + 1) * sizeof(*nv));
			if (!nv) {
				policy_unref(p);
			} else {
				st->api = nv;
				st->api[st->n_api++] = p;
				agent_log(AGENT_LOG_INFO, "policy %s restored from %s (etag %.12s)",
					  p->name, path, p->etag);
			}
		}
		free(text);
	}
	if (n > 0)
		free_names(names, (size_t)n);
	close(dirfd);
}

static void watch_dir(struct store *st)
{
	if (st->ino_wd >= 0 || !st->policies_dir)
		return;
	st->ino_wd = inotify_add_watch(st->ino_fd, st->policies_dir,
				       IN_CREATE | IN_DELETE | IN_MODIFY | IN_CLOSE_WRITE |
					       IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB |
					       IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR);
}

static void *watch_main(void *arg)
{
	struct store *st = arg;
	for (;;) {
		struct pollfd pfd[2] = {{.fd = st->stop_fd, .events = POLLIN},
					{.fd = st->ino_fd, .events = POLLIN}};
		int timeout = st->ino_wd >= 0 ? STORE_RESCAN_MS : 2000;
		int r = poll(pfd, 2, timeout);
		if (r < 0 && errno == EINTR)
			continue;
		if (pfd[0].revents)
			break;
		bool rewatch = false;
		if (pfd[1].revents & POLLIN) {
			/* Drain the burst, then rescan once. */
			char evbuf[8192]
				__attribute__((aligned(__alignof__(struct inotify_event))));
			do {
				ssize_t n = read(st->ino_fd, evbuf, sizeof(evbuf));
				for (ssize_t off = 0; off < n;) {
					const struct inotify_event *ev =
						(const void *)(evbuf + off);
					if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF))
						rewatch = true;
					off += (ssize_t)sizeof(*ev) + ev->len;
				}
				r = poll(&pfd[1], 1, STORE_SETTLE_MS);
			} while (r > 0);
		}
		if (rewatch && st->ino_wd >= 0) {
			inotify_rm_watch(st->ino_fd, st->ino_wd);
			st->ino_wd = -1;
		}
		bool was_watching = st->ino_wd >= 0;
		watch_dir(st);
		if (!was_watching && st->ino_wd < 0 && !rewatch && !(pfd[1].revents & POLLIN))
			continue; /* directory still missing */
		pthread_mutex_lock(&st->wlock);
		rescan_files_locked(st);
		pthread_mutex_unlock(&st->wlock);
	}
	return NULL;
}

int store_open(struct store **out, const struct store_config *cfg)
{
	*out = NULL;
	struct store *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	pthread_mutex_init(&st->wlock, NULL);
	pthread_mutex_init(&st->slock, NULL);
	pthread_mutex_init(&st->rlock, NULL);
	st->ino_fd = st->ino_wd = st->stop_fd = -1;
	int r = -ENOMEM;
	if (cfg->policies_dir && !(st->policies_dir = strdup(cfg->policies_dir)))
		goto fail;
	if (cfg->state_dir) {
		if (asprintf(&st->api_dir, "%s/policies", cfg->state_dir) < 0) {
			st->api_dir = NULL;
			goto fail;
		}
		if ((r = mm_mkdir_p(st->api_dir, 0700)) < 0) {
			agent_log(AGENT_LOG_ERROR, "state dir %s: %s", st->api_dir, strerror(-r));
			goto fail;
		}
	}
	st->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	st->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (st->ino_fd < 0 || st->stop_fd < 0) {
		r = -errno;
		agent_log(AGENT_LOG_ERROR, "policy store: %s", strerror(-r));
		goto fail;
	}
	/* Watch before the first scan so that no change falls in between. */
	watch_dir(st);
	if (st->policies_dir && st->ino_wd < 0)
		agent_log(AGENT_LOG_WARN, "policies dir %s: %s (watching for it)", st->policies_dir,
			  strerror(errno));
	if (st->api_dir)
		load_api_dir(st);
	pthread_mutex_lock(&st->wlock);
	rescan_files_locked(st);
	r = st->cur ? 0 : publish_locked(st);
	pthread_mutex_unlock(&st->wlock);
	if (r < 0)
		goto fail;
	if ((r = -pthread_create(&st->thread, NULL, watch_main, st)) < 0) {
		agent_log(AGENT_LOG_ERROR, "policy store: %s", strerror(-r));
		goto fail;
	}
	st->thread_started = true;
	st->loaded = true;
	agent_log(AGENT_LOG_INFO, "policy store: %zu policies in force", st->cur->n);
	*out = st;
	return 0;
fail:
	store_close(st);
	return r;
}

bool store_ready(struct store *st)
{
	return st && st->loaded;
}

struct policy_set *store_get(struct store *st)
{
	pthread_mutex_lock(&st->slock);
	struct policy_set *s = policy_set_ref(st->cur);
	pthread_mutex_unlock(&st->slock);
	return s;
}

int store_subscribe(struct store *st, store_change_fn fn, void *ctx)
{
	pthread_mutex_lock(&st->wlock);
	struct store_sub *ns = realloc(st->subs, (st->n_subs + 1) * sizeof(*ns));
	if (!ns) {
		pthread_mutex_unlock(&st->wlock);
		return -ENOMEM;
	}
	st->subs = ns;
	st->subs[st->n_subs++] = (struct store_sub){fn, ctx};
	fn(ctx, st->cur);
	pthread_mutex_unlock(&st->wlock);
	return 0;
}

void store_unsubscribe(struct store *st, store_change_fn fn, void *ctx)
{
	if (!st)
		return;
	pthread_mutex_lock(&st->wlock); /* subscribers are called under it: none is running */
	for (size_t i = 0; i < st->n_subs; i++) {
		if (st->subs[i].fn == fn && st->subs[i].ctx == ctx) {
			memmove(&st->subs[i], &st->subs[i + 1],
				(st->n_subs - i - 1) * sizeof(st->subs[0]));
			st->n_subs--;
			break;
		}
	}
	pthread_mutex_unlock(&st->wlock);
}

static int add_error(struct policy_errors *errs, const char *pointer, const char *message)
{
	if (!errs)
		return 0;
	struct policy_error *nv = realloc(errs->v, (errs->n + 1) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	errs->v = nv;
	nv[errs->n] = (struct policy_error){.pointer = strdup(pointer), .message = strdup(message)};
	errs->n++;
	return 0;
}

/* If-Match against the current version (NULL = absent). 0 or -ESTALE. */
static int check_if_match(const struct policy *cur, const char *if_match)
{
	if (!if_match)
		return 0;
	if (!strcmp(if_match, "*"))
		return cur ? 0 : -ESTALE;
	return cur && !strcmp(cur->etag, if_match) ? 0 : -ESTALE;
}

int store_put(struct store *st, const char *name, const char *json, size_t len,
	      const char *if_match, struct policy_errors *errs, char etag_out[65])
{
	if (!store_name_valid(name)) {
		add_error(errs, "/metadata/name", "not a valid policy name (RFC 1123 subdomain)");
		return -EINVAL;
	}
	errno = 0;
	struct policy *p = policy_parse(json, len, "api", errs);
	if (!p) {
		metrics_policy_reload("api", false);
		return errno == ENOMEM ? -ENOMEM : -EINVAL;
	}
	if (!p->name || strcmp(p->name, name)) {
		policy_unref(p);
		add_error(errs, "/metadata/name", "must equal the policy name in the URL");
		metrics_policy_reload("api", false);
		return -EINVAL;
	}
	ensure_etag(p, json, len);

	pthread_mutex_lock(&st->wlock);
	int r;
	ssize_t idx = api_index(st, name);
	struct policy *cur = idx >= 0 ? st->api[idx] : NULL;
	size_t in_force = 0;
	for (size_t i = 0; i < st->n_files; i++)
		in_force += st->files[i].p && !st->files[i].shadowed;
	for (size_t i = 0; i < st->n_crds; i++)
		in_force += st->crds[i].in_force;
	for (size_t i = 0; i < st->n_api; i++)
		in_force += st->api_in_force && st->api_in_force[i];
	if (file_policy(st, name) || crd_policy(st, name)) {
		r = -EEXIST;
	} else if (!cur && in_force >= STORE_MAX_POLICIES) {
		char msg[120];
		snprintf(msg, sizeof(msg), "a node holds at most %d policies: delete one first",
			 STORE_MAX_POLICIES);
		add_error(errs, "/metadata/name", msg);
		metrics_policy_reload("api", false);
		r = -EINVAL;
	} else if ((r = check_if_match(cur, if_match)) < 0) {
	} else if (cur && !strcmp(cur->etag, p->etag)) {
		r = 0; /* same document: nothing to do */
	} else {
		const char *text = p->json ? p->json : json;
		size_t tlen = p->json ? strlen(p->json) : len;
		r = persist(st, name, text, tlen);
		if (r < 0) {
			agent_log(AGENT_LOG_ERROR, "persisting policy %s: %s", name, strerror(-r));
		} else if (cur) {
			st->api[idx] = policy_ref(p);
			policy_unref(cur);
		} else {
			struct policy **nv = realloc(st->api, (st->n_api + 1) * sizeof(*nv));
			if (!nv) {
				r = -ENOMEM;
			} else {
				st->api = nv;
				st->api[st->n_api++] = policy_ref(p);
				r = 1;
			}
		}
		if (r >= 0) {
			int pr = publish_locked(st);
			if (pr < 0)
				r = pr;
			else {
				metrics_policy_reload("api", true);
				agent_log(AGENT_LOG_INFO,
					  "policy %s %s through the API (etag %.12s)", name,
					  r == 1 ? "created" : "updated", p->etag);
			}
		}
	}
	if (r >= 0)
		memcpy(etag_out, p->etag, 65);
	pthread_mutex_unlock(&st->wlock);
	policy_unref(p);
	return r;
}

int store_delete(struct store *st, const char *name, const char *if_match)
{
	if (!store_name_valid(name))
		return -ENOENT;
	pthread_mutex_lock(&st->wlock);
	int r;
	ssize_t idx = api_index(st, name);
	if (file_policy(st, name) || crd_policy(st, name)) {
		r = -EPERM;
	} else if (idx < 0) {
		r = -ENOENT;
	} else if ((r = check_if_match(st->api[idx], if_match)) == 0) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s.json", st->api_dir ? st->api_dir : "", name);
		if (st->api_dir && unlink(path) < 0 && errno != ENOENT) {
			r = -errno;
			agent_log(AGENT_LOG_ERROR, "deleting policy %s: %s", name, strerror(-r));
		} else {
			if (st->api_dir)
				fsync_dir(st->api_dir);
			policy_unref(st->api[idx]);
			st->api[idx] = st->api[--st->n_api];
			r = publish_locked(st);
			if (r == 0) {
				metrics_policy_reload("api", true);
				agent_log(AGENT_LOG_INFO, "policy %s deleted through the API",
					  name);
			}
		}
	}
	pthread_mutex_unlock(&st->wlock);
	return r;
}

/* ---- policy resources (agent/cluster/) -------------------------------------------------- */

static void crd_clear(struct store_crd *c)
{
	free(c->key);
	free(c->resource);
	if (c->p)
		policy_unref(c->p);
	policy_errors_free(&c->errs);
}

const char *store_owner(struct store *st, const char *name)
{
	pthread_mutex_lock(&st->wlock);
	const char *r = file_policy(st, name) ? "file" : crd_policy(st, name) ? "resource" : NULL;
	pthread_mutex_unlock(&st->wlock);
	return r;
}

/* The entry of resource `key`, added when new (wlock held). NULL: out of memory. */
static struct store_crd *crd_get_locked(struct store *st, const char *key, const char *resource)
{
	ssize_t idx = crd_index(st, key);
	if (idx >= 0)
		return &st->crds[idx];
	struct store_crd *nv = realloc(st->crds, (st->n_crds + 1) * sizeof(*nv));
	if (nv)
		st->crds = nv;
	char *kd = nv ? strdup(key) : NULL, *rd = kd ? strdup(resource) : NULL;
	if (!rd) {
		free(kd);
		return NULL;
	}
	st->crds[st->n_crds] = (struct store_crd){.key = kd, .resource = rd};
	return &st->crds[st->n_crds++];
}

/* c's current version was refused (c->errs set): when, logged, counted (wlock held). */
static void crd_refused_locked(struct store_crd *c)
{
	c->time = (int64_t)time(NULL);
	log_errors(AGENT_LOG_ERROR, c->resource, &c->errs);
	if (c->p)
		agent_log(AGENT_LOG_WARN, "%s: the previous version stays in force", c->resource);
	metrics_policy_reload("crd", false);
}

int store_crd_put(struct store *st, const char *key, const char *resource, const char *json,
		  size_t len, struct policy_errors *errs)
{
	if (!store_name_valid(key))
		return -EINVAL;
	char origin[300];
	snprintf(origin, sizeof(origin), "crd:%s", resource);
	struct policy_errors perrs = {0};
	errno = 0;
	struct policy *p = policy_parse(json, len, origin, &perrs);
	if (!p && errno == ENOMEM) {
		policy_errors_free(&perrs);
		return -ENOMEM;
	}
	if (p) {
		/* A namespaced resource's policy is named "<namespace>.<name>" on the node (a
		 * policy file's or push's name has no dot): set before the policy is shared. */
		char *k = strdup(key);
		if (!k) {
			policy_unref(p);
			return -ENOMEM;
		}
		free(p->name);
		p->name = k;
		ensure_etag(p, json, len);
	}
	pthread_mutex_lock(&st->wlock);
	struct store_crd *c = crd_get_locked(st, key, resource);
	int r = 0;
	if (!c) {
		pthread_mutex_unlock(&st->wlock);
		if (p)
			policy_unref(p);
		policy_errors_free(&perrs);
		return -ENOMEM;
	}
	bool changed = false;
	if (!p) {
		policy_errors_free(&c->errs);
		c->errs = perrs;
		perrs = (struct policy_errors){0};
		crd_refused_locked(c);
		r = -EINVAL;
	} else {
		changed = !c->p || strcmp(c->p->etag, p->etag) != 0 || c->errs.n;
		policy_errors_free(&c->errs);
		if (c->p && !strcmp(c->p->etag, p->etag)) {
			policy_unref(p); /* the same document (a relist, a status change) */
		} else {
			if (c->p)
				policy_unref(c->p);
			c->p = p;
			agent_log(AGENT_LOG_INFO, "policy %s %s from %s (etag %.12s)", key,
				  changed ? "applied" : "unchanged", resource, p->etag);
			metrics_policy_reload("crd", true);
		}
	}
	if (changed || r < 0) {
		int pr = publish_locked(st);
		if (pr < 0)
			agent_log(AGENT_LOG_ERROR, "policy store: %s", strerror(-pr));
		publish_rejections_locked(st);
	}
	if (r == 0 && !c->in_force)
		r = -EEXIST;
	if (errs) {
		if (r == -EINVAL)
			errors_copy(errs, &c->errs);
		else if (r == -EEXIST)
			add_error(errs, "/metadata/name", c->why);
	}
	pthread_mutex_unlock(&st->wlock);
	policy_errors_free(&perrs);
	return r;
}

int store_crd_refuse(struct store *st, const char *key, const char *resource,
		     const struct policy_errors *errs)
{
	pthread_mutex_lock(&st->wlock);
	struct store_crd *c = crd_get_locked(st, key, resource);
	if (!c) {
		pthread_mutex_unlock(&st->wlock);
		return -ENOMEM;
	}
	policy_errors_free(&c->errs);
	int r = errors_copy(&c->errs, errs);
	if (r == 0) {
		crd_refused_locked(c);
		r = publish_locked(st);
		publish_rejections_locked(st);
	}
	pthread_mutex_unlock(&st->wlock);
	return r < 0 ? r : -EINVAL;
}

int store_crd_delete(struct store *st, const char *key)
{
	pthread_mutex_lock(&st->wlock);
	ssize_t idx = crd_index(st, key);
	if (idx < 0) {
		pthread_mutex_unlock(&st->wlock);
		return -ENOENT;
	}
	struct store_crd *c = &st->crds[idx];
	bool had = c->p != NULL;
	agent_log(AGENT_LOG_INFO, "policy %s removed (%s deleted)", key, c->resource);
	crd_clear(c);
	st->crds[idx] = st->crds[--st->n_crds];
	int r = had ? publish_locked(st) : 0;
	publish_rejections_locked(st);
	pthread_mutex_unlock(&st->wlock);
	return r;
}

int store_crd_state(struct store *st, const char *key, struct store_crd_state *out)
{
	*out = (struct store_crd_state){0};
	pthread_mutex_lock(&st->wlock);
	ssize_t idx = crd_index(st, key);
	int r = idx < 0 ? -ENOENT : 0;
	if (!r) {
		const struct store_crd *c = &st->crds[idx];
		out->in_force = c->in_force;
		out->refused = c->errs.n > 0 || !c->in_force;
		out->previous_in_force = c->errs.n > 0 && c->in_force;
		out->time = c->time;
		if (c->in_force && c->p)
			memcpy(out->etag, c->p->etag, sizeof(out->etag));
		if (c->errs.n)
			r = errors_copy(&out->errs, &c->errs);
		else if (!c->in_force)
			r = add_error(&out->errs, "/metadata/name", c->why[0] ? c->why : "not in force");
	}
	pthread_mutex_unlock(&st->wlock);
	return r;
}

void store_crd_state_clear(struct store_crd_state *s)
{
	policy_errors_free(&s->errs);
}

void store_close(struct store *st)
{
	if (!st)
		return;
	if (st->thread_started) {
		uint64_t one = 1;
		if (write(st->stop_fd, &one, sizeof(one)) == sizeof(one))
			pthread_join(st->thread, NULL);
	}
	if (st->ino_fd >= 0)
		close(st->ino_fd);
	if (st->stop_fd >= 0)
		close(st->stop_fd);
	for (size_t i = 0; i < st->n_files; i++) {
		if (st->files[i].p)
			policy_unref(st->files[i].p);
		rejection_free(st->files[i].rej);
		free(st->files[i].fname);
	}
	free(st->files);
	store_rejections_free(st->rej, st->n_rej);
	for (size_t i = 0; i < st->n_api; i++)
		policy_unref(st->api[i]);
	free(st->api);
	free(st->api_in_force);
	for (size_t i = 0; i < st->n_crds; i++)
		crd_clear(&st->crds[i]);
	free(st->crds);
	free(st->subs);
	if (st->cur)
		policy_set_unref(st->cur);
	free(st->policies_dir);
	free(st->api_dir);
	pthread_mutex_destroy(&st->wlock);
	pthread_mutex_destroy(&st->slock);
	pthread_mutex_destroy(&st->rlock);
	free(st);
}
