/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Policy documents: jansson parses, a single validating walk collects every error with its
 * JSON pointer while it fills struct policy, and a document without errors is returned with its
 * canonical JSON and ETag. Hash keys are read here so that a policy that compiles can mask.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "meshmask/entity.h"
#include "pbschema.h"
#include "policy.h"
#include "schema.h"

/* Past this many, errors are counted but not stored: a bad generated document stays readable. */
#define POLICY_MAX_ERRORS 100
#define POLICY_MAX_FILE (1u << 20)
#define HASH_KEY_MAX 4096
/* Bounds the CRD schema states too: schema.h holds them. */
#define MASK_KEEP_MAX PS_MASK_KEEP_MAX
#define HASH_LEN_MAX PS_HASH_LEN_MAX
#define HASH_PREFIX_MAX PS_HASH_PREFIX_MAX
#define TOKEN_SPACE_MAX PS_RULE_NAME_MAX
#define TOKEN_KEY_LEN 32 /* AES-256 */
#define REPLACE_VALUE_MAX PS_REPLACE_VALUE_MAX
#define RULE_NAME_MAX PS_RULE_NAME_MAX
#define DNS_LABEL_MAX PS_DNS_LABEL_MAX
#define DNS_SUBDOMAIN_MAX PS_DNS_SUBDOMAIN_MAX

/* Validation context: where we are in the document and what went wrong so far. */
struct vctx {
	struct policy_errors *errs; /* may be NULL: count only */
	size_t n_errs;
	bool oom;
	char *ptr; /* current JSON pointer, NUL-terminated */
	size_t ptr_len, ptr_cap;
	enum policy_tls_enforce tls;
	uint32_t directions; /* the policy's, for rules that apply to one direction only */
};

/* Enum names, allowed keys and bounds come from the schema (schema.h) the CRDs are made of. */
#define mode_names pschema_mode_names
#define on_error_names pschema_on_error_names
#define failure_names pschema_failure_names
#define tls_names pschema_tls_names
#define existing_names pschema_existing_names
#define tunnel_names pschema_tunnel_names
#define action_names pschema_action_names
#define direction_names pschema_direction_names

const char *policy_action_name(enum policy_action_type t)
{
	return (unsigned)t < 6 ? action_names[t] : "unknown";
}

const char *policy_mode_name(enum policy_mode m)
{
	return (unsigned)m < 2 ? mode_names[m] : "unknown";
}

/* ---- errors ---- */

static int errs_append(struct policy_errors *errs, const char *pointer, int line, int col,
		       char *msg)
{
	struct policy_error *v = realloc(errs->v, (errs->n + 1) * sizeof(*v));
	char *ptr = NULL;

	if (!v)
		goto oom;
	errs->v = v;
	if (pointer && !(ptr = strdup(pointer)))
		goto oom;
	v[errs->n++] =
		(struct policy_error){.pointer = ptr, .line = line, .column = col, .message = msg};
	return 0;
oom:
	free(msg);
	return -ENOMEM;
}

void policy_errors_free(struct policy_errors *errs)
{
	if (!errs)
		return;
	for (size_t i = 0; i < errs->n; i++) {
		free(errs->v[i].pointer);
		free(errs->v[i].message);
	}
	free(errs->v);
	errs->v = NULL;
	errs->n = 0;
}

void policy_errors_print(FILE *f, const char *origin, const struct policy_errors *errs)
{
	const char *o = origin ? origin : "";
	const char *sep = origin ? ":" : "";

	for (size_t i = 0; errs && i < errs->n; i++) {
		const struct policy_error *e = &errs->v[i];
		if (!e->pointer && e->line > 0)
			fprintf(f, "%s%s%d:%d: %s\n", o, sep, e->line, e->column, e->message);
		else if (!e->pointer || !e->pointer[0])
			fprintf(f, "%s%s%s%s\n", o, sep, origin ? " " : "", e->message);
		else
			fprintf(f, "%s%s%s%s: %s\n", o, sep, origin ? " " : "", e->pointer,
				e->message);
	}
}

__attribute__((format(printf, 2, 3))) static void verr(struct vctx *c, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	if (c->oom)
		return;
	c->n_errs++;
	if (!c->errs || c->n_errs > POLICY_MAX_ERRORS + 1)
		return;
	if (c->n_errs == POLICY_MAX_ERRORS + 1) {
		msg = strdup("too many errors; the rest are not shown");
		if (!msg || errs_append(c->errs, "", 0, 0, msg))
			c->oom = true;
		return;
	}
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0) {
		c->oom = true;
		va_end(ap);
		return;
	}
	va_end(ap);
	if (errs_append(c->errs, c->ptr, 0, 0, msg))
		c->oom = true;
}

/* ---- JSON pointer (RFC 6901) ---- */

static bool ptr_reserve(struct vctx *c, size_t more)
{
	if (c->ptr_len + more + 1 <= c->ptr_cap)
		return true;
	size_t cap = c->ptr_cap ? c->ptr_cap : 64;
	while (cap < c->ptr_len + more + 1)
		cap *= 2;
	char *p = realloc(c->ptr, cap);
	if (!p) {
		c->oom = true;
		return false;
	}
	c->ptr = p;
	c->ptr_cap = cap;
	return true;
}

/* Append "/key" (escaped); returns the length to restore with ptr_pop(). */
static size_t ptr_push(struct vctx *c, const char *key)
{
	size_t mark = c->ptr_len;
	size_t n = strlen(key);

	if (!ptr_reserve(c, 1 + 2 * n))
		return mark;
	c->ptr[c->ptr_len++] = '/';
	for (size_t i = 0; i < n; i++) {
		if (key[i] == '~' || key[i] == '/') {
			c->ptr[c->ptr_len++] = '~';
			c->ptr[c->ptr_len++] = key[i] == '~' ? '0' : '1';
		} else {
			c->ptr[c->ptr_len++] = key[i];
		}
	}
	c->ptr[c->ptr_len] = '\0';
	return mark;
}

static size_t ptr_push_idx(struct vctx *c, size_t i)
{
	char b[24];
	snprintf(b, sizeof(b), "%zu", i);
	return ptr_push(c, b);
}

static void ptr_pop(struct vctx *c, size_t mark)
{
	if (mark <= c->ptr_len) {
		c->ptr_len = mark;
		if (c->ptr)
			c->ptr[mark] = '\0';
	}
}

#define verr_at(c, key, ...)                      \
	do {                                      \
		size_t m_ = ptr_push((c), (key)); \
		verr((c), __VA_ARGS__);           \
		ptr_pop((c), m_);                 \
	} while (0)

/* ---- small validators ---- */

static bool in_list(const char *s, const char *const *list)
{
	for (; list && *list; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

/* Every member of obj must be a property of schema s. */
static void check_keys(struct vctx *c, json_t *obj, const struct pschema *s)
{
	const char *k;
	json_t *v;

	json_object_foreach(obj, k, v)
	{
		if (!pschema_prop(s, k))
			verr_at(c, k, "unknown key");
	}
}

static char *xstrdup(struct vctx *c, const char *s)
{
	char *d = strdup(s);
	if (!d)
		c->oom = true;
	return d;
}

static void *xcalloc(struct vctx *c, size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (!p)
		c->oom = true;
	return p;
}

static bool is_dns_label(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
		if (!alnum && !(ch == '-' && i > 0 && i < n - 1))
			return false;
	}
	return true;
}

/* DNS-1123 subdomain: dot-separated labels, at most 253 bytes. */
static bool is_dns_subdomain(const char *s)
{
	size_t n = strlen(s), start = 0;
	char label[DNS_LABEL_MAX + 1];

	if (n == 0 || n > DNS_SUBDOMAIN_MAX)
		return false;
	for (size_t i = 0; i <= n; i++) {
		if (i < n && s[i] != '.')
			continue;
		if (i - start == 0 || i - start > DNS_LABEL_MAX)
			return false;
		memcpy(label, s + start, i - start);
		label[i - start] = '\0';
		if (!is_dns_label(label, DNS_LABEL_MAX))
			return false;
		start = i + 1;
	}
	return true;
}

static bool is_rule_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > RULE_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-'))
			return false;
	}
	return true;
}

/* RFC 9110 token characters: what an HTTP header name may contain. */
static bool is_token(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++) {
		char ch = *s;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || strchr("!#$%&'*+-.^_`|~", ch)))
			return false;
	}
	return true;
}

static bool is_env_name(const char *s)
{
	if (!*s || (*s >= '0' && *s <= '9') || strlen(s) > 255)
		return false;
	for (; *s; s++) {
		char ch = *s;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_'))
			return false;
	}
	return true;
}

/* ---- typed member access: each reports its own errors at the member's pointer ---- */

static json_t *get_member(struct vctx *c, json_t *obj, const char *key, json_type type,
			  const char *what, bool required)
{
	json_t *v = json_object_get(obj, key);

	if (!v) {
		if (required)
			verr_at(c, key, "is required");
		return NULL;
	}
	if (json_typeof(v) != type) {
		verr_at(c, key, "must be %s", what);
		return NULL;
	}
	return v;
}

static const char *get_str(struct vctx *c, json_t *obj, const char *key, bool required)
{
	json_t *v = get_member(c, obj, key, JSON_STRING, "a string", required);
	return v ? json_string_value(v) : NULL;
}

static json_t *get_obj(struct vctx *c, json_t *obj, const char *key, bool required)
{
	return get_member(c, obj, key, JSON_OBJECT, "an object", required);
}

/* A non-empty array member of obj (an object of schema s), within the schema's maxItems. */
static json_t *get_arr(struct vctx *c, const struct pschema *s, json_t *obj, const char *key,
		       bool required)
{
	json_t *v = get_member(c, obj, key, JSON_ARRAY, "an array", required);
	const struct pschema_prop *pp = pschema_prop(s, key);
	unsigned max = pp ? pp->schema->max_items : 0;
	if (v && json_array_size(v) == 0) {
		verr_at(c, key, "must not be empty");
		return NULL;
	}
	if (v && max && json_array_size(v) > max) {
		verr_at(c, key, "must have at most %u items", max);
		return NULL;
	}
	return v;
}

/* An integer member in [lo, hi]; *out is left alone when absent or invalid. */
static bool get_int(struct vctx *c, json_t *obj, const char *key, long long lo, long long hi,
		    uint32_t *out)
{
	json_t *v = json_object_get(obj, key);

	if (!v)
		return false;
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
		verr_at(c, key, "must be an integer from %lld to %lld", lo, hi);
		return false;
	}
	*out = (uint32_t)json_integer_value(v);
	return true;
}

/* One of `names` (index returned), `dflt` when absent, -1 when invalid. */
static int get_enum(struct vctx *c, json_t *obj, const char *key, const char *const *names,
		    int dflt, bool required)
{
	json_t *v = json_object_get(obj, key);
	char list[256];
	size_t off = 0;

	if (!v) {
		if (required)
			verr_at(c, key, "is required");
		return dflt;
	}
	for (int i = 0; json_is_string(v) && names[i]; i++)
		if (strcmp(json_string_value(v), names[i]) == 0)
			return i;
	list[0] = '\0';
	for (int i = 0; names[i] && off < sizeof(list); i++)
		off += snprintf(list + off, sizeof(list) - off, "%s\"%s\"", i ? ", " : "",
				names[i]);
	verr_at(c, key, "must be one of %s", list);
	return -1;
}

/* ---- metadata ---- */

static void check_string_map(struct vctx *c, json_t *obj, const char *key)
{
	json_t *m = get_obj(c, obj, key, false);
	const char *k;
	json_t *v;

	if (!m)
		return;
	size_t mark = ptr_push(c, key);
	json_object_foreach(m, k, v)
	{
		if (!*k)
			verr_at(c, k, "keys must not be empty");
		else if (!json_is_string(v))
			verr_at(c, k, "must be a string");
	}
	ptr_pop(c, mark);
}

static void parse_metadata(struct vctx *c, struct policy *p, json_t *root)
{
	json_t *md = get_obj(c, root, "metadata", true);
	const char *s;

	if (!md)
		return;
	size_t mark = ptr_push(c, "metadata");
	check_keys(c, md, &pschema_metadata);
	if ((s = get_str(c, md, "name", true))) {
		if (!is_dns_label(s, DNS_LABEL_MAX))
			verr_at(c, "name",
				"must be a DNS-1123 label: at most 63 lower-case letters, digits "
				"and '-', starting and ending with a letter or digit");
		else
			p->name = xstrdup(c, s);
	}
	if ((s = get_str(c, md, "namespace", false)) && !is_dns_label(s, DNS_LABEL_MAX))
		verr_at(c, "namespace",
			"must be a DNS-1123 label: at most 63 lower-case letters, digits and '-', "
			"starting and ending with a letter or digit");
	check_string_map(c, md, "labels");
	check_string_map(c, md, "annotations");
	ptr_pop(c, mark);
}

/* ---- selector ---- */

/* "10.0.0.0/8", "fd00::/8" or a plain address; host bits past the prefix are cleared. */
static const char *parse_cidr(const char *s, struct policy_dest *d)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	long prefix = -1;

	if (alen == 0 || alen >= sizeof(addr))
		return "must be an IP address or prefix such as 10.0.0.0/8 or fd00::/8";
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	if (slash) {
		const char *q = slash + 1;
		size_t n = strlen(q);
		if (n == 0 || n > 3 || (q[0] == '0' && n > 1))
			return "prefix length must be a decimal number";
		prefix = 0;
		for (size_t i = 0; i < n; i++) {
			if (q[i] < '0' || q[i] > '9')
				return "prefix length must be a decimal number";
			prefix = prefix * 10 + (q[i] - '0');
		}
	}
	memset(d->addr, 0, sizeof(d->addr));
	if (inet_pton(AF_INET, addr, d->addr) == 1) {
		d->family = AF_INET;
		if (prefix > 32)
			return "prefix length must be at most 32 for an IPv4 address";
		d->prefix_len = prefix < 0 ? 32 : (uint8_t)prefix;
	} else if (inet_pton(AF_INET6, addr, d->addr) == 1) {
		d->family = AF_INET6;
		if (prefix > 128)
			return "prefix length must be at most 128 for an IPv6 address";
		d->prefix_len = prefix < 0 ? 128 : (uint8_t)prefix;
	} else {
		return "must be an IP address or prefix such as 10.0.0.0/8 or fd00::/8";
	}
	for (unsigned bit = d->prefix_len; bit < 128; bit++)
		d->addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
	return NULL;
}

static void parse_dests(struct vctx *c, struct policy *p, json_t *sel)
{
	json_t *arr = get_arr(c, &pschema_selector, sel, "destinations", false);
	json_t *d;
	size_t i;

	if (!arr)
		return;
	p->dests = xcalloc(c, json_array_size(arr), sizeof(*p->dests));
	if (!p->dests)
		return;
	size_t mark = ptr_push(c, "destinations");
	json_array_foreach(arr, i, d)
	{
		struct policy_dest *out = &p->dests[p->n_dests];
		size_t m2 = ptr_push_idx(c, i);
		uint32_t port = 0;
		const char *cidr, *why;
		bool ok = true;

		if (!json_is_object(d)) {
			verr(c, "must be an object");
			ptr_pop(c, m2);
			continue;
		}
		check_keys(c, d, &pschema_destination);
		if (json_object_get(d, "port") && !get_int(c, d, "port", 1, 65535, &port))
			ok = false;
		if ((cidr = get_str(c, d, "cidr", false))) {
			if ((why = parse_cidr(cidr, out))) {
				verr_at(c, "cidr", "%s", why);
				ok = false;
			}
		} else if (json_object_get(d, "cidr")) {
			ok = false;
		}
		if (!json_object_get(d, "port") && !json_object_get(d, "cidr")) {
			verr(c, "must set port, cidr or both");
			ok = false;
		}
		if (ok) {
			out->port = (uint16_t)port;
			p->n_dests++;
		} else {
			memset(out, 0, sizeof(*out));
		}
		ptr_pop(c, m2);
	}
	ptr_pop(c, mark);
}

static void source_free(struct policy_source *s)
{
	free(s->cgroup);
	free(s->namespace_);
	free(s->service_account);
	for (size_t i = 0; i < s->n_labels; i++) {
		free(s->label_keys[i]);
		free(s->label_values[i]);
	}
	free(s->label_keys);
	free(s->label_values);
}

static void parse_source(struct vctx *c, json_t *src, struct policy_source *out)
{
	const char *s;
	json_t *labels;

	check_keys(c, src, &pschema_source);
	if (!json_object_get(src, "cgroup") && !json_object_get(src, "namespace") &&
	    !json_object_get(src, "serviceAccount") && !json_object_get(src, "labels"))
		verr(c, "must set at least one of cgroup, namespace, serviceAccount, labels");
	if ((s = get_str(c, src, "cgroup", false))) {
		if (!*s)
			verr_at(c, "cgroup", "must not be empty");
		else
			out->cgroup = xstrdup(c, s);
	}
	if ((s = get_str(c, src, "namespace", false))) {
		if (!is_dns_label(s, DNS_LABEL_MAX))
			verr_at(c, "namespace",
				"must be a DNS-1123 label (a Kubernetes namespace)");
		else
			out->namespace_ = xstrdup(c, s);
	}
	if ((s = get_str(c, src, "serviceAccount", false))) {
		if (!is_dns_subdomain(s))
			verr_at(c, "serviceAccount",
				"must be a DNS-1123 subdomain (a Kubernetes service account name)");
		else
			out->service_account = xstrdup(c, s);
	}
	if (!(labels = get_obj(c, src, "labels", false)))
		return;
	size_t n = json_object_size(labels), mark = ptr_push(c, "labels");
	const char *k;
	json_t *v;
	if (n == 0)
		verr(c, "must not be empty");
	out->label_keys = xcalloc(c, n, sizeof(char *));
	out->label_values = xcalloc(c, n, sizeof(char *));
	if (out->label_keys && out->label_values) {
		json_object_foreach(labels, k, v)
		{
			if (!*k) {
				verr_at(c, k, "label keys must not be empty");
			} else if (!json_is_string(v)) {
				verr_at(c, k, "must be a string");
			} else {
				out->label_keys[out->n_labels] = xstrdup(c, k);
				out->label_values[out->n_labels++] =
					xstrdup(c, json_string_value(v));
			}
		}
	}
	ptr_pop(c, mark);
}

/* selector.sources and spec.exempt share one shape. */
static void parse_sources(struct vctx *c, const struct pschema *schema, json_t *obj,
			  const char *key, struct policy_source **out, size_t *n_out)
{
	json_t *arr = get_arr(c, schema, obj, key, false);
	json_t *src;
	size_t i;

	if (!arr)
		return;
	*out = xcalloc(c, json_array_size(arr), sizeof(**out));
	if (!*out)
		return;
	size_t mark = ptr_push(c, key);
	json_array_foreach(arr, i, src)
	{
		size_t m2 = ptr_push_idx(c, i);
		if (json_is_object(src))
			parse_source(c, src, &(*out)[(*n_out)++]);
		else
			verr(c, "must be an object");
		ptr_pop(c, m2);
	}
	ptr_pop(c, mark);
}

static void parse_selector(struct vctx *c, struct policy *p, json_t *spec)
{
	json_t *sel = get_obj(c, spec, "selector", false);

	if (!sel)
		return;
	size_t mark = ptr_push(c, "selector");
	check_keys(c, sel, &pschema_selector);
	parse_dests(c, p, sel);
	parse_sources(c, &pschema_selector, sel, "sources", &p->sources, &p->n_sources);
	ptr_pop(c, mark);
}

static void parse_directions(struct vctx *c, struct policy *p, json_t *spec)
{
	json_t *arr = get_arr(c, &pschema_spec, spec, "directions", false);
	json_t *d;
	size_t i;

	if (!arr)
		return;
	p->directions = 0;
	size_t mark = ptr_push(c, "directions");
	json_array_foreach(arr, i, d)
	{
		size_t m2 = ptr_push_idx(c, i);
		const char *s = json_string_value(d);
		uint32_t bit = 0;
		if (s && strcmp(s, "request") == 0)
			bit = POLICY_DIR_REQUEST;
		else if (s && strcmp(s, "response") == 0)
			bit = POLICY_DIR_RESPONSE;
		if (!bit)
			verr(c, "must be one of \"%s\", \"%s\"", direction_names[0],
			     direction_names[1]);
		else if (p->directions & bit)
			verr(c, "duplicate direction \"%s\"", s);
		p->directions |= bit;
		ptr_pop(c, m2);
	}
	ptr_pop(c, mark);
}

/* ---- rules ---- */

/* policy_confine_keys(): set once at start, before any policy is parsed. */
static char *key_dir, *key_env_prefix;

int policy_confine_keys(const char *dir, const char *env_prefix)
{
	free(key_dir);
	free(key_env_prefix);
	key_dir = dir ? strdup(dir) : NULL;
	key_env_prefix = env_prefix ? strdup(env_prefix) : NULL;
	if ((dir && !key_dir) || (env_prefix && !key_env_prefix))
		return -ENOMEM;
	size_t n = key_dir ? strlen(key_dir) : 0;
	while (n > 1 && key_dir[n - 1] == '/')
		key_dir[--n] = 0;
	return 0;
}

/* The one answer for a confined key that cannot be used, whatever the cause. */
static void key_unavailable(struct vctx *c, const char *field, const char *name)
{
	if (!strcmp(field, "keyFile"))
		verr_at(c, field,
			"no usable key file \"%s\" in %s (a readable regular file of 1 to %d bytes)",
			name, key_dir, HASH_KEY_MAX);
	else
		verr_at(c, field, "no usable key in variable %s (set, 1 to %d bytes)", name,
			HASH_KEY_MAX);
}

/*
 * Open the key file `path` inside key_dir: relative to it or absolute under it, resolved
 * beneath it by the kernel (openat2 RESOLVE_BENEATH: no "..", absolute symlink or magic link
 * leads out). The fd, -EPERM for a path that names no file of the directory, or -ENOENT when
 * it cannot be opened (whatever the cause).
 */
static int open_confined(const char *path)
{
	size_t n = strlen(key_dir);
	const char *rel = path;
	if (path[0] == '/') {
		if (strncmp(path, key_dir, n) || path[n] != '/')
			return -EPERM;
		rel = path + n + 1;
	}
	if (!*rel || !strcmp(rel, ".") || !strncmp(rel, "../", 3) || !strcmp(rel, "..") ||
	    strstr(rel, "/../") || (strlen(rel) >= 3 && !strcmp(rel + strlen(rel) - 3, "/..")))
		return -EPERM;
	int dfd = open(key_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -ENOENT;
	struct open_how how = {.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY,
			       .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
	int fd = (int)syscall(SYS_openat2, dfd, rel, &how, sizeof(how));
	close(dfd);
	return fd < 0 ? -ENOENT : fd;
}

/* A key file that was opened but cannot be used: the precise cause unless keys are confined. */
#define key_err(c, path, ...)                                                                   \
	do {                                                                                       \
		if (key_dir)                                                                       \
			key_unavailable(c, "keyFile", path);                                       \
		else                                                                               \
			verr_at(c, "keyFile", __VA_ARGS__);                                        \
	} while (0)

/* Read a hash key; errors name the file or variable, never any byte of the key. */
static void load_key_file(struct vctx *c, const char *path, struct policy_action *a)
{
	unsigned char *buf;
	struct stat st;
	ssize_t r;
	size_t len = 0;
	int fd;

	if (key_dir) {
		fd = open_confined(path);
		if (fd == -EPERM) {
			verr_at(c, "keyFile", "must name a file in the key directory %s", key_dir);
			return;
		}
		if (fd < 0) {
			key_unavailable(c, "keyFile", path);
			return;
		}
	} else {
		/* O_NONBLOCK and the regular-file check keep a FIFO or a tty from hanging a
		 * load. */
		fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	}
	if (fd < 0) {
		verr_at(c, "keyFile", "cannot read key file \"%s\": %s", path, strerror(errno));
		return;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		key_err(c, path, "key file \"%s\" is not a regular file", path);
		close(fd);
		return;
	}
	buf = malloc(HASH_KEY_MAX + 3);
	if (!buf) {
		c->oom = true;
		close(fd);
		return;
	}
	while (len < HASH_KEY_MAX + 3) {
		r = read(fd, buf + len, HASH_KEY_MAX + 3 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			key_err(c, path, "cannot read key file \"%s\": %s", path,
				strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	if (len > 0 && buf[len - 1] == '\n') {
		len--;
		if (len > 0 && buf[len - 1] == '\r')
			len--;
	}
	if (len == 0) {
		key_err(c, path, "key file \"%s\" is empty", path);
	} else if (len > HASH_KEY_MAX) {
		key_err(c, path, "key file \"%s\" is larger than %d bytes", path,
			HASH_KEY_MAX);
	} else if (!(a->hash_key = malloc(len))) {
		c->oom = true;
	} else {
		memcpy(a->hash_key, buf, len);
		a->hash_key_len = len;
	}
out:
	OPENSSL_cleanse(buf, HASH_KEY_MAX + 3);
	free(buf);
	close(fd);
}

static void load_key_env(struct vctx *c, const char *name, struct policy_action *a)
{
	const char *v;
	size_t len;

	if (!is_env_name(name)) {
		verr_at(c, "keyEnv",
			"must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
		return;
	}
	if (key_env_prefix && strncmp(name, key_env_prefix, strlen(key_env_prefix))) {
		verr_at(c, "keyEnv", "must name a variable %s*", key_env_prefix);
		return;
	}
	v = getenv(name);
	if (key_dir && (!v || !*v || strlen(v) > HASH_KEY_MAX)) {
		key_unavailable(c, "keyEnv", name);
		return;
	}
	if (!v) {
		verr_at(c, "keyEnv", "environment variable %s is not set", name);
		return;
	}
	len = strlen(v);
	if (len == 0) {
		verr_at(c, "keyEnv", "environment variable %s is empty", name);
	} else if (len > HASH_KEY_MAX) {
		verr_at(c, "keyEnv", "environment variable %s is larger than %d bytes", name,
			HASH_KEY_MAX);
	} else if (!(a->hash_key = malloc(len))) {
		c->oom = true;
	} else {
		memcpy(a->hash_key, v, len);
		a->hash_key_len = len;
	}
}

/* Bytes in the UTF-8 character that starts with `lead` (input is valid UTF-8). */
static size_t utf8_len(unsigned char lead)
{
	return lead < 0x80 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
}

/* keyFile or keyEnv (exactly one) of a hash, tokenize or detokenize action, read into a. */
static void parse_key(struct vctx *c, json_t *act, struct policy_action *a)
{
	bool has_file = json_object_get(act, "keyFile") != NULL;
	bool has_env = json_object_get(act, "keyEnv") != NULL;
	const char *s;

	if (has_file && has_env) {
		verr(c, "set only one of keyFile and keyEnv");
	} else if (!has_file && !has_env) {
		verr(c, "%s needs a key: set keyFile or keyEnv", action_names[a->type]);
	} else if ((s = get_str(c, act, "keyFile", false))) {
		if (!*s)
			verr_at(c, "keyFile", "must not be empty");
		else
			load_key_file(c, s, a);
	} else if ((s = get_str(c, act, "keyEnv", false))) {
		load_key_env(c, s, a);
	}
}

static void get_bool(struct vctx *c, json_t *obj, const char *key, bool *out)
{
	json_t *v = json_object_get(obj, key);
	if (!v)
		return;
	if (!json_is_boolean(v))
		verr_at(c, key, "must be true or false");
	else
		*out = json_is_true(v);
}

static int hex_val(unsigned char ch)
{
	return ch >= '0' && ch <= '9'	? ch - '0'
	       : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
	       : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
					: -1;
}

/*
 * tokenize / detokenize: FF1 over AES-256, so the key is 32 bytes, written raw or as 64 hex
 * digits (an environment variable cannot hold every byte). Errors never show the key.
 */
static void parse_token_action(struct vctx *c, json_t *act, struct policy_action *a)
{
	const char *s;

	get_int(c, act, "keepFirst", 0, MASK_KEEP_MAX, &a->keep_first);
	get_int(c, act, "keepLast", 0, MASK_KEEP_MAX, &a->keep_last);
	get_bool(c, act, "luhn", &a->luhn);
	get_bool(c, act, "keepDomain", &a->keep_domain);
	if ((s = get_str(c, act, "tokenSpace", false)) && !is_rule_name(s))
		verr_at(c, "tokenSpace", "must be 1 to %d of A-Z a-z 0-9 _ . -", TOKEN_SPACE_MAX);
	else
		a->token_space = xstrdup(c, s ? s : "default");
	if (a->type == POLICY_ACTION_DETOKENIZE && (c->directions & POLICY_DIR_RESPONSE))
		verr_at(c, "type",
			"detokenize applies to requests only: set spec.directions to "
			"[\"request\"]");
	size_t before = c->n_errs;
	parse_key(c, act, a);
	if (c->n_errs != before || !a->hash_key)
		return;
	const char *where = json_object_get(act, "keyFile") ? "keyFile" : "keyEnv";
	if (a->hash_key_len == 2 * TOKEN_KEY_LEN) {
		unsigned char k[TOKEN_KEY_LEN];
		bool hex = true;
		for (size_t i = 0; i < TOKEN_KEY_LEN && hex; i++) {
			int hi = hex_val(a->hash_key[2 * i]), lo = hex_val(a->hash_key[2 * i + 1]);
			hex = hi >= 0 && lo >= 0;
			k[i] = (unsigned char)(hi << 4 | lo);
		}
		if (hex) {
			OPENSSL_cleanse(a->hash_key, a->hash_key_len);
			memcpy(a->hash_key, k, TOKEN_KEY_LEN);
			a->hash_key_len = TOKEN_KEY_LEN;
		}
		OPENSSL_cleanse(k, sizeof(k));
	}
	if (a->hash_key_len != TOKEN_KEY_LEN)
		verr_at(c, where, "must hold an AES-256 key: 32 bytes, or 64 hex digits");
}

/* Returns whether the action is valid. */
static bool parse_action(struct vctx *c, json_t *rule, struct policy_action *a)
{
	json_t *act = get_obj(c, rule, "action", true);
	size_t before = c->n_errs;
	const char *k, *s;
	json_t *v;
	int type;

	strcpy(a->mask_char, "*");
	a->hash_len = 16;
	a->keep_domain = true;
	if (!act)
		return false;
	size_t mark = ptr_push(c, "action");
	type = get_enum(c, act, "type", action_names, -1, true);
	json_object_foreach(act, k, v)
	{
		if (!pschema_prop(&pschema_action, k))
			verr_at(c, k, "unknown key");
		else if (type >= 0 && strcmp(k, "type") != 0 &&
			 !in_list(k, pschema_action_keys[type]))
			verr_at(c, k, "not allowed for action type %s", action_names[type]);
	}
	if (type < 0)
		goto out;
	a->type = (enum policy_action_type)type;
	switch (a->type) {
	case POLICY_ACTION_MASK:
		get_int(c, act, "keepFirst", 0, MASK_KEEP_MAX, &a->keep_first);
		get_int(c, act, "keepLast", 0, MASK_KEEP_MAX, &a->keep_last);
		if ((s = get_str(c, act, "char", false))) {
			size_t n = strlen(s);
			if (n == 0 || n != utf8_len((unsigned char)s[0]))
				verr_at(c, "char", "must be exactly one character");
			else if (n == 1 && ((unsigned char)s[0] < 0x20 || s[0] == 0x7f))
				verr_at(c, "char", "must be a printable character");
			else
				memcpy(a->mask_char, s, n + 1);
		}
		break;
	case POLICY_ACTION_REPLACE:
		if ((s = get_str(c, act, "value", false))) {
			if (strlen(s) > REPLACE_VALUE_MAX)
				verr_at(c, "value", "must be at most %d bytes", REPLACE_VALUE_MAX);
			else
				a->value = xstrdup(c, s);
		}
		break;
	case POLICY_ACTION_REDACT:
		break;
	case POLICY_ACTION_HASH:
		get_int(c, act, "length", 1, HASH_LEN_MAX, &a->hash_len);
		if ((s = get_str(c, act, "prefix", false))) {
			if (strlen(s) > HASH_PREFIX_MAX)
				verr_at(c, "prefix", "must be at most %d bytes", HASH_PREFIX_MAX);
			else
				a->hash_prefix = xstrdup(c, s);
		}
		parse_key(c, act, a);
		break;
	case POLICY_ACTION_TOKENIZE:
	case POLICY_ACTION_DETOKENIZE:
		parse_token_action(c, act, a);
		break;
	}
out:
	ptr_pop(c, mark);
	return c->n_errs == before;
}

static void parse_fields(struct vctx *c, json_t *rule, struct policy_rule *r)
{
	json_t *arr = get_arr(c, &pschema_rule, rule, "fields", false);
	json_t *f;
	size_t i;

	if (!arr)
		return;
	r->fields = xcalloc(c, json_array_size(arr), sizeof(*r->fields));
	if (!r->fields)
		return;
	size_t mark = ptr_push(c, "fields");
	json_array_foreach(arr, i, f)
	{
		size_t m2 = ptr_push_idx(c, i);
		const char *s = json_string_value(f), *why;
		char *text = NULL;
		size_t off, shift = 0;
		int ret;

		if (!s) {
			verr(c, "must be a string");
			goto next;
		}
		if (!*s) {
			verr(c, "must not be empty");
			goto next;
		}
		/* A path that does not start at the root is relative to any depth: x = $..x. */
		if (s[0] != '$') {
			if (asprintf(&text, "$..%s", s) < 0) {
				c->oom = true;
				goto next;
			}
			shift = 3;
		}
		ret = jpath_parse(text ? text : s, &r->fields[r->n_fields], &why, &off);
		if (ret == -ENOMEM) {
			c->oom = true;
		} else if (ret) {
			verr(c, "invalid path at byte %zu: %s", off >= shift ? off - shift : 0,
			     why);
		} else {
			struct jpath *jp = &r->fields[r->n_fields++];
			for (size_t j = 0; j + 1 < r->n_fields; j++)
				if (r->fields[j].text && strcmp(r->fields[j].text, s) == 0)
					verr(c, "duplicate field \"%s\"", s);
			if (text) {
				/* Keep the text as written, for messages and metrics. */
				free(jp->text);
				jp->text = xstrdup(c, s);
			}
		}
		free(text);
	next:
		ptr_pop(c, m2);
	}
	ptr_pop(c, mark);
}

static void parse_entities(struct vctx *c, json_t *rule, struct policy_rule *r)
{
	json_t *arr = get_arr(c, &pschema_rule, rule, "entities", false);
	json_t *e;
	size_t i;

	if (!arr)
		return;
	size_t mark = ptr_push(c, "entities");
	json_array_foreach(arr, i, e)
	{
		size_t m2 = ptr_push_idx(c, i);
		const char *s = json_string_value(e);
		int ent = s ? mm_entity_from_name(s) : -1;

		if (!s) {
			verr(c, "must be a string");
		} else if (ent < 0 || ent >= MM_ENT__COUNT) {
			char list[512];
			size_t off = 0;
			list[0] = '\0';
			for (int k = 0; k < MM_ENT__COUNT && off < sizeof(list); k++) {
				const char *n = mm_entity_name((enum mm_entity)k);
				off += snprintf(list + off, sizeof(list) - off, "%s%s",
						k ? ", " : "", n ? n : "?");
			}
			verr(c, "unknown entity \"%s\" (valid: %s)", s, list);
		} else if (r->entities & MM_ENT_BIT(ent)) {
			verr(c, "duplicate entity \"%s\"", s);
		} else {
			r->entities |= MM_ENT_BIT(ent);
		}
		ptr_pop(c, m2);
	}
	ptr_pop(c, mark);
}

static void parse_headers(struct vctx *c, json_t *rule, struct policy_rule *r)
{
	json_t *arr = get_arr(c, &pschema_rule, rule, "headers", false);
	json_t *h;
	size_t i;

	if (!arr)
		return;
	r->headers = xcalloc(c, json_array_size(arr), sizeof(char *));
	if (!r->headers)
		return;
	size_t mark = ptr_push(c, "headers");
	json_array_foreach(arr, i, h)
	{
		size_t m2 = ptr_push_idx(c, i);
		const char *s = json_string_value(h);

		if (!s) {
			verr(c, "must be a string");
		} else if (!is_token(s)) {
			verr(c,
			     "must be an HTTP header name (letters, digits and !#$%%&'*+-.^_`|~)");
		} else {
			char *l = xstrdup(c, s);
			for (char *q = l; q && *q; q++)
				if (*q >= 'A' && *q <= 'Z')
					*q = (char)(*q - 'A' + 'a');
			bool dup = false;
			for (size_t j = 0; l && j < r->n_headers; j++)
				dup |= strcmp(r->headers[j], l) == 0;
			if (dup) {
				verr(c, "duplicate header \"%s\"", s);
				free(l);
			} else if (l) {
				r->headers[r->n_headers++] = l;
			}
		}
		ptr_pop(c, m2);
	}
	ptr_pop(c, mark);
}

/* FF1's shortest string in base radix (NIST SP 800-38G Rev. 1: radix^minlen >= 1,000,000). */
static uint32_t fpe_min_len(uint32_t radix)
{
	uint32_t n = 0;
	for (uint64_t d = 1; d < 1000000u; d *= radix)
		n++;
	return n < 2 ? 2 : n;
}

/*
 * The shortest common form of each entity a tokenize rule can meet, as FF1 units: a rule whose
 * keepFirst/keepLast leave fewer than FF1's minimum domain of it is refused here (a value still
 * shorter at run time, say a 13-digit card, is masked instead and counted).
 */
static const struct {
	enum mm_entity ent;
	uint32_t len, radix;
} token_lengths[] = {
	{MM_ENT_US_SSN, 9, 10},	       {MM_ENT_CREDIT_CARD, 16, 10},
	{MM_ENT_PHONE_NUMBER, 10, 10}, {MM_ENT_IBAN_CODE, 15, 36},
	{MM_ENT_IP_ADDRESS, 4, 10},    {MM_ENT_AWS_ACCESS_KEY_ID, 20, 36},
};

/* What only the rule as a whole can tell about a tokenize or detokenize action. */
static void check_token_rule(struct vctx *c, json_t *rule, const struct policy_rule *r)
{
	const struct policy_action *a = &r->action;
	json_t *arr = json_object_get(rule, "entities"), *e;
	size_t i;

	json_array_foreach(arr, i, e)
	{
		int ent = mm_entity_from_name(json_string_value(e));
		const char *name = json_string_value(e);
		for (size_t k = 0; k < sizeof(token_lengths) / sizeof(token_lengths[0]); k++) {
			if ((int)token_lengths[k].ent != ent)
				continue;
			uint32_t len = token_lengths[k].len, radix = token_lengths[k].radix;
			uint32_t keep = a->keep_first + a->keep_last, need = fpe_min_len(radix);
			if (keep < len && len - keep >= need)
				break;
			const char *unit = radix == 10 ? "digits" : "characters";
			size_t mark = ptr_push(c, "action");
			if (keep)
				verr_at(c, a->keep_last ? "keepLast" : "keepFirst",
					"keepFirst %u and keepLast %u leave %u of the %u %s of a "
					"%s "
					"to tokenize: FF1 needs at least %u (radix^length >= "
					"1,000,000)",
					a->keep_first, a->keep_last, keep < len ? len - keep : 0,
					len, unit, name, need);
			ptr_pop(c, mark);
			if (!keep) {
				size_t m1 = ptr_push(c, "entities"), m2 = ptr_push_idx(c, i);
				verr(c,
				     "%s can be as short as %u %s: FF1 needs at least %u "
				     "(radix^length >= 1,000,000)",
				     name, len, unit, need);
				ptr_pop(c, m2);
				ptr_pop(c, m1);
			}
			break;
		}
		if (a->type != POLICY_ACTION_DETOKENIZE || ent < 0)
			continue;
		if (ent == MM_ENT_CREDIT_CARD && !a->luhn) {
			size_t mark = ptr_push(c, "action");
			verr(c,
			     "detokenize finds CREDIT_CARD tokens only when they are card numbers: "
			     "set luhn: true here and on the tokenize rule");
			ptr_pop(c, mark);
		} else if (ent != MM_ENT_CREDIT_CARD && ent != MM_ENT_US_SSN &&
			   ent != MM_ENT_PHONE_NUMBER && ent != MM_ENT_EMAIL_ADDRESS) {
			size_t m1 = ptr_push(c, "entities"), m2 = ptr_push_idx(c, i);
			verr(c,
			     "detokenize cannot find %s tokens (a token does not keep what the "
			     "detector checks): name the field instead",
			     name);
			ptr_pop(c, m2);
			ptr_pop(c, m1);
		}
	}
}

static void parse_rule(struct vctx *c, struct policy *p, json_t *rule, size_t idx)
{
	struct policy_rule *r = &p->rules[idx];
	const char *s;

	r->index = (uint32_t)idx;
	check_keys(c, rule, &pschema_rule);
	if ((s = get_str(c, rule, "name", true))) {
		if (!is_rule_name(s)) {
			verr_at(c, "name", "must be 1 to 63 of A-Z a-z 0-9 _ . -");
		} else {
			for (size_t j = 0; j < idx; j++) {
				if (p->rules[j].name && strcmp(p->rules[j].name, s) == 0) {
					verr_at(c, "name",
						"duplicate rule name \"%s\" (first used by "
						"/spec/rules/%zu)",
						s, j);
					break;
				}
			}
			r->name = xstrdup(c, s);
		}
	}
	if (!json_object_get(rule, "fields") && !json_object_get(rule, "entities") &&
	    !json_object_get(rule, "headers"))
		verr(c, "must set at least one of fields, entities, headers");
	parse_fields(c, rule, r);
	parse_entities(c, rule, r);
	parse_headers(c, rule, r);
	bool act_ok = parse_action(c, rule, &r->action);
	if (r->action.type == POLICY_ACTION_TOKENIZE || r->action.type == POLICY_ACTION_DETOKENIZE)
		check_token_rule(c, rule, r);
	if (act_ok && c->tls != POLICY_TLS_OFF &&
	    (r->action.type != POLICY_ACTION_MASK || r->action.mask_char[1] != '\0' ||
	     (unsigned char)r->action.mask_char[0] >= 0x80))
		verr_at(c, "action",
			"only length-preserving mask actions can apply when tls.enforce is not "
			"off");
}

static void parse_rules(struct vctx *c, struct policy *p, json_t *spec)
{
	json_t *arr = get_arr(c, &pschema_spec, spec, "rules", true);
	json_t *rule;
	size_t i;

	if (!arr)
		return;
	p->rules = xcalloc(c, json_array_size(arr), sizeof(*p->rules));
	if (!p->rules)
		return;
	p->n_rules = json_array_size(arr);
	size_t mark = ptr_push(c, "rules");
	json_array_foreach(arr, i, rule)
	{
		size_t m2 = ptr_push_idx(c, i);
		if (json_is_object(rule))
			parse_rule(c, p, rule, i);
		else
			verr(c, "must be an object");
		ptr_pop(c, m2);
	}
	ptr_pop(c, mark);
	for (i = 0; i < p->n_rules; i++)
		if (!p->rules[i].n_fields && !p->rules[i].n_headers)
			p->body_entities |= p->rules[i].entities;
}

/* spec.protobuf: descriptor sets are read and indexed now, like hash keys. */
static void parse_protobuf(struct vctx *c, struct policy *p, json_t *spec)
{
	json_t *pb = get_obj(c, spec, "protobuf", false);
	json_t *sets, *v;
	size_t i, n_before = c->n_errs;
	char err[512];

	if (!pb)
		return;
	size_t mark = ptr_push(c, "protobuf");
	check_keys(c, pb, &pschema_protobuf);
	if (!(sets = get_arr(c, &pschema_protobuf, pb, "descriptorSets", true)))
		goto out;
	size_t m2 = ptr_push(c, "descriptorSets");
	if (!(p->pb_paths = xcalloc(c, json_array_size(sets), sizeof(*p->pb_paths))))
		goto out2;
	json_array_foreach(sets, i, v)
	{
		const char *s = json_string_value(v);
		size_t m3 = ptr_push_idx(c, i);
		if (!s || !s[0])
			verr(c, "must be a non-empty string (a descriptor set file)");
		else if ((p->pb_paths[p->n_pb_paths] = xstrdup(c, s)))
			p->n_pb_paths++;
		ptr_pop(c, m3);
	}
	if (c->n_errs != n_before || c->oom)
		goto out2;
	size_t at = 0;
	p->pb_schema = pb_schema_load_at((const char *const *)p->pb_paths, p->n_pb_paths, err,
					 sizeof(err), &at);
	if (!p->pb_schema) {
		if (errno == ENOMEM) {
			c->oom = true;
		} else if (at < p->n_pb_paths) {
			size_t m3 = ptr_push_idx(c, at);
			verr(c, "%s", err);
			ptr_pop(c, m3);
		} else {
			verr(c, "%s", err);
		}
	}
out2:
	ptr_pop(c, m2);
out:
	ptr_pop(c, mark);
}

static void parse_spec(struct vctx *c, struct policy *p, json_t *root)
{
	json_t *spec = get_obj(c, root, "spec", true);
	json_t *tls;
	int v;

	if (!spec)
		return;
	size_t mark = ptr_push(c, "spec");
	check_keys(c, spec, &pschema_spec);
	if ((v = get_enum(c, spec, "mode", mode_names, POLICY_MODE_ENFORCE, false)) >= 0)
		p->mode = (enum policy_mode)v;
	parse_selector(c, p, spec);
	parse_sources(c, &pschema_spec, spec, "exempt", &p->exempt, &p->n_exempt);
	parse_directions(c, p, spec);
	if ((v = get_enum(c, spec, "onError", on_error_names, POLICY_ONERR_FALLBACK, false)) >= 0)
		p->on_error = (enum policy_on_error)v;
	if ((v = get_enum(c, spec, "failureMode", failure_names, POLICY_FAIL_CLOSED, false)) >= 0)
		p->failure_mode = (enum policy_failure_mode)v;
	/* Observe changes nothing: it does not reset connections unless told to. */
	p->existing = p->mode == POLICY_MODE_OBSERVE ? POLICY_EXISTING_KEEP : POLICY_EXISTING_RESET;
	if ((v = get_enum(c, spec, "existingConnections", existing_names, (int)p->existing,
			  false)) >= 0)
		p->existing = (enum policy_existing)v;
	/* Observe changes nothing, so by default it does not refuse a protocol switch either. */
	p->tunnels = p->mode == POLICY_MODE_OBSERVE ? POLICY_TUNNELS_PASS : POLICY_TUNNELS_BLOCK;
	if ((v = get_enum(c, spec, "tunnels", tunnel_names, (int)p->tunnels, false)) >= 0)
		p->tunnels = (enum policy_tunnels)v;
	if ((tls = get_obj(c, spec, "tls", false))) {
		size_t m2 = ptr_push(c, "tls");
		check_keys(c, tls, &pschema_tls);
		if ((v = get_enum(c, tls, "enforce", tls_names, POLICY_TLS_OFF, false)) >= 0)
			p->tls_enforce = (enum policy_tls_enforce)v;
		ptr_pop(c, m2);
	}
	c->tls = p->tls_enforce;
	c->directions = p->directions;
	parse_rules(c, p, spec);
	parse_protobuf(c, p, spec);
	ptr_pop(c, mark);
}

/* ---- lifetime ---- */

static void action_free(struct policy_action *a)
{
	free(a->value);
	free(a->hash_prefix);
	free(a->token_space);
	if (a->hash_key) {
		OPENSSL_cleanse(a->hash_key, a->hash_key_len);
		free(a->hash_key);
	}
}

static void policy_free(struct policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_rules; i++) {
		struct policy_rule *r = &p->rules[i];
		free(r->name);
		for (size_t j = 0; j < r->n_fields; j++)
			jpath_free(&r->fields[j]);
		free(r->fields);
		for (size_t j = 0; j < r->n_headers; j++)
			free(r->headers[j]);
		free(r->headers);
		action_free(&r->action);
	}
	free(p->rules);
	pb_schema_free(p->pb_schema);
	for (size_t i = 0; i < p->n_pb_paths; i++)
		free(p->pb_paths[i]);
	free(p->pb_paths);
	for (size_t i = 0; i < p->n_sources; i++)
		source_free(&p->sources[i]);
	free(p->sources);
	for (size_t i = 0; i < p->n_exempt; i++)
		source_free(&p->exempt[i]);
	free(p->exempt);
	free(p->dests);
	free(p->name);
	free(p->origin);
	free(p->json);
	free(p);
}

struct policy *policy_ref(struct policy *p)
{
	if (p)
		__atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
	return p;
}

void policy_unref(struct policy *p)
{
	if (p && __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) == 0)
		policy_free(p);
}

static int compute_etag(struct policy *p)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	if (!EVP_Digest(p->json, strlen(p->json), md, &n, EVP_sha256(), NULL) || n != 32)
		return -EIO;
	for (unsigned i = 0; i < n; i++)
		snprintf(p->etag + 2 * i, 3, "%02x", md[i]);
	return 0;
}

struct policy *policy_parse(const char *text, size_t len, const char *origin,
			    struct policy_errors *errs)
{
	struct vctx c = {.errs = errs};
	struct policy *p = NULL;
	json_error_t jerr;
	json_t *root;
	const char *s;
	int err = EINVAL;

	root = json_loadb(text ? text : "", text ? len : 0, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		char *msg = strdup(jerr.text[0] ? jerr.text : "invalid JSON");
		if (!msg || (errs && errs_append(errs, NULL, jerr.line > 0 ? jerr.line : 0,
						 jerr.column > 0 ? jerr.column : 0, msg))) {
			errno = ENOMEM;
			return NULL;
		}
		if (!errs)
			free(msg);
		errno = EINVAL;
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	c.ptr = calloc(1, 64);
	c.ptr_cap = 64;
	if (!p || !c.ptr) {
		err = ENOMEM;
		goto fail;
	}
	p->refs = 1;
	p->directions = POLICY_DIR_RESPONSE;
	if (!(p->origin = strdup(origin ? origin : "api"))) {
		err = ENOMEM;
		goto fail;
	}

	if (!json_is_object(root)) {
		verr(&c, "the document must be a JSON object");
	} else {
		check_keys(&c, root, &pschema_document);
		if ((s = get_str(&c, root, "apiVersion", true)) &&
		    strcmp(s, POLICY_API_VERSION) != 0)
			verr_at(&c, "apiVersion", "must be \"%s\"", POLICY_API_VERSION);
		if ((s = get_str(&c, root, "kind", true)) && strcmp(s, POLICY_KIND) != 0)
			verr_at(&c, "kind", "must be \"%s\"", POLICY_KIND);
		parse_metadata(&c, p, root);
		parse_spec(&c, p, root);
	}
	if (c.oom) {
		err = ENOMEM;
		goto fail;
	}
	if (c.n_errs)
		goto fail;
	if (!(p->json = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS))) {
		err = ENOMEM;
		goto fail;
	}
	if (compute_etag(p)) {
		err = EIO;
		goto fail;
	}
	json_decref(root);
	free(c.ptr);
	return p;
fail:
	json_decref(root);
	free(c.ptr);
	policy_free(p);
	errno = err;
	return NULL;
}

struct policy *policy_load_file(const char *path, struct policy_errors *errs)
{
	struct policy *p;
	char *buf = NULL, *msg;
	size_t len = 0, cap = 0;
	ssize_t r;
	int fd, err = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		err = errno;
		goto fail;
	}
	for (;;) {
		if (len == cap) {
			if (cap >= POLICY_MAX_FILE) {
				err = EFBIG;
				goto fail;
			}
			cap = cap ? cap * 2 : 4096;
			char *nb = realloc(buf, cap + 1);
			if (!nb) {
				err = ENOMEM;
				goto fail;
			}
			buf = nb;
		}
		r = read(fd, buf + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err = errno;
			goto fail;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	p = policy_parse(buf, len, path, errs);
	err = errno;
	free(buf);
	errno = err;
	return p;
fail:
	if (fd >= 0)
		close(fd);
	free(buf);
	if (errs && err != ENOMEM) {
		if (asprintf(&msg, "cannot read: %s", strerror(err)) < 0 ||
		    errs_append(errs, NULL, 0, 0, msg))
			err = ENOMEM;
	}
	errno = err;
	return NULL;
}

/* ---- sets ---- */

static int cmp_policy(const void *a, const void *b)
{
	return strcmp((*(struct policy *const *)a)->name, (*(struct policy *const *)b)->name);
}

struct policy_set *policy_set_new(struct policy *const *v, size_t n, uint64_t generation)
{
	struct policy_set *s = calloc(1, sizeof(*s));

	if (!s || !(s->v = calloc(n ? n : 1, sizeof(*s->v)))) {
		free(s);
		errno = ENOMEM;
		return NULL;
	}
	if (n)
		memcpy(s->v, v, n * sizeof(*v));
	qsort(s->v, n, sizeof(*s->v), cmp_policy);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(s->v[i - 1]->name, s->v[i]->name) == 0) {
			free(s->v);
			free(s);
			errno = EEXIST;
			return NULL;
		}
	}
	for (size_t i = 0; i < n; i++)
		policy_ref(s->v[i]);
	s->n = n;
	s->refs = 1;
	s->generation = generation;
	return s;
}

struct policy_set *policy_set_ref(struct policy_set *s)
{
	if (s)
		__atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
	return s;
}

void policy_set_unref(struct policy_set *s)
{
	if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	for (size_t i = 0; i < s->n; i++)
		policy_unref(s->v[i]);
	free(s->v);
	free(s);
}

struct policy *policy_set_find(const struct policy_set *s, const char *name)
{
	size_t lo = 0, hi = s ? s->n : 0;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = strcmp(name, s->v[mid]->name);
		if (r == 0)
			return s->v[mid];
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}
