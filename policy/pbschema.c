/* SPDX-License-Identifier: Apache-2.0 */
/*
 * FileDescriptorSets decoded with protobuf-c (descriptor.pb-c.c is generated at build time by
 * protoc-c from libprotobuf-dev's descriptor.proto) and indexed: every message type (nested
 * ones too) by full name, every field by number, every gRPC method by its :path. Names are
 * borrowed from the decoded sets, which the schema keeps.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "descriptor.pb-c.h"
#include "pbschema.h"
#include "policy.h"

/* Descriptor sets are kilobytes; this only keeps a wrong path from eating memory. */
#define PB_SET_MAX (64u << 20)

typedef Google__Protobuf__FileDescriptorSet pb_fds;
typedef Google__Protobuf__FileDescriptorProto pb_fdp;
typedef Google__Protobuf__DescriptorProto pb_dp;
typedef Google__Protobuf__FieldDescriptorProto pb_fieldp;

struct pb_method {
	char *path; /* "/pkg.Service/Method" (owned) */
	size_t path_len;
	const struct pb_msgtype *in, *out;
};

/* A message type while indexing: its descriptor and the file it came from (for errors). */
struct pb_entry {
	struct pb_msgtype t;
	const pb_dp *dp;
	size_t file; /* index in paths */
};

struct pb_schema {
	pb_fds **sets; /* decoded sets, kept for the names the index borrows */
	size_t n_sets;
	struct pb_entry *types; /* sorted by full name */
	size_t n_types, cap_types;
	struct pb_method *methods; /* sorted by path */
	size_t n_methods, cap_methods;
};

__attribute__((format(printf, 3, 4))) static void seterr(char *err, size_t errlen, const char *fmt,
							 ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Read a whole regular file (bounded); 0 or -errno. */
static int read_file(const char *path, uint8_t **out, size_t *len)
{
	struct stat st;
	uint8_t *buf = NULL;
	size_t n = 0, cap = 0;
	int fd, r = 0;

	/* O_NONBLOCK and the regular-file check keep a FIFO or a tty from hanging a load. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	for (;;) {
		if (n == cap) {
			if (cap >= PB_SET_MAX) {
				r = -EFBIG;
				break;
			}
			cap = cap ? cap * 2 : 4096;
			uint8_t *nb = realloc(buf, cap);
			if (!nb) {
				r = -ENOMEM;
				break;
			}
			buf = nb;
		}
		ssize_t k = read(fd, buf + n, cap - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			r = -errno;
			break;
		}
		if (k == 0)
			break;
		n += (size_t)k;
	}
	close(fd);
	if (r) {
		free(buf);
		return r;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* ---- index ---- */

static int add_type(struct pb_schema *s, const char *prefix, const pb_dp *dp, size_t file)
{
	if (!dp->name || !dp->name[0])
		return -EINVAL;
	if (s->n_types == s->cap_types) {
		size_t cap = s->cap_types ? s->cap_types * 2 : 32;
		struct pb_entry *v = realloc(s->types, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		s->types = v;
		s->cap_types = cap;
	}
	struct pb_entry *e = &s->types[s->n_types];
	*e = (struct pb_entry){.dp = dp, .file = file};
	if (asprintf(&e->t.full_name, "%s%s%s", prefix, prefix[0] ? "." : "", dp->name) < 0)
		return -ENOMEM;
	e->t.map_entry = dp->options && dp->options->has_map_entry && dp->options->map_entry;
	s->n_types++;
	/* Nested types are named after this one (the name is its own allocation: it stays put
	 * when the array grows). */
	const char *name = e->t.full_name;
	for (size_t i = 0; i < dp->n_nested_type; i++) {
		int r = add_type(s, name, dp->nested_type[i], file);
		if (r)
			return r;
	}
	return 0;
}

static int cmp_entry(const void *a, const void *b)
{
	return strcmp(((const struct pb_entry *)a)->t.full_name,
		      ((const struct pb_entry *)b)->t.full_name);
}

static int cmp_field(const void *a, const void *b)
{
	uint32_t x = ((const struct pb_field *)a)->number, y = ((const struct pb_field *)b)->number;
	return x < y ? -1 : x > y;
}

static int cmp_method(const void *a, const void *b)
{
	return strcmp(((const struct pb_method *)a)->path, ((const struct pb_method *)b)->path);
}

static struct pb_entry *find_entry(const struct pb_schema *s, const char *full_name)
{
	struct pb_entry key = {.t.full_name = (char *)full_name};
	return bsearch(&key, s->types, s->n_types, sizeof(*s->types), cmp_entry);
}

/* A type name as descriptor sets write it: fully qualified with a leading dot. */
static struct pb_entry *resolve(const struct pb_schema *s, const char *type_name)
{
	if (!type_name || type_name[0] != '.')
		return NULL;
	return find_entry(s, type_name + 1);
}

static int kind_of(int type, uint8_t *kind)
{
	switch (type) {
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT64:
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_UINT64:
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_INT32:
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_BOOL:
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_UINT32:
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_ENUM:
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SINT32:
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SINT64:
		*kind = PB_KIND_VARINT;
		return 0;
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_DOUBLE:
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_FIXED64:
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SFIXED64:
		*kind = PB_KIND_I64;
		return 0;
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_FLOAT:
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_FIXED32:
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_SFIXED32:
		*kind = PB_KIND_I32;
		return 0;
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_STRING:
		*kind = PB_KIND_STRING;
		return 0;
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_BYTES:
		*kind = PB_KIND_BYTES;
		return 0;
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_MESSAGE:
		*kind = PB_KIND_MESSAGE;
		return 0;
	case GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_GROUP:
		*kind = PB_KIND_GROUP;
		return 0;
	default:
		return -EINVAL;
	}
}

/* Fill in the fields of every type; the types must be sorted (fields point at other types). */
static int index_fields(struct pb_schema *s, const char *const *paths, char *err, size_t errlen,
			size_t *err_index)
{
	for (size_t i = 0; i < s->n_types; i++) {
		struct pb_entry *e = &s->types[i];
		const pb_dp *dp = e->dp;
		if (!dp->n_field)
			continue;
		if (!(e->t.fields = calloc(dp->n_field, sizeof(*e->t.fields))))
			return -ENOMEM;
		for (size_t k = 0; k < dp->n_field; k++) {
			const pb_fieldp *f = dp->field[k];
			struct pb_field *o = &e->t.fields[e->t.n_fields];
			*err_index = e->file;
			if (!f->name || !f->has_number || f->number < 1 ||
			    f->number > (1 << 29) - 1 || !f->has_type ||
			    kind_of(f->type, &o->kind)) {
				seterr(err, errlen,
				       "descriptor set \"%s\": message %s has an invalid field",
				       paths[e->file], e->t.full_name);
				return -EINVAL;
			}
			o->number = (uint32_t)f->number;
			o->name = f->name;
			o->name_len = strlen(f->name);
			o->type = (uint8_t)f->type;
			o->repeated =
				f->has_label &&
				f->label ==
					GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED;
			if (o->kind == PB_KIND_MESSAGE || o->kind == PB_KIND_GROUP) {
				const struct pb_entry *t = resolve(s, f->type_name);
				if (!t) {
					seterr(err, errlen,
					       "descriptor set \"%s\": type %s of %s.%s is not in "
					       "the "
					       "set (build it with --include_imports)",
					       paths[e->file], f->type_name ? f->type_name : "?",
					       e->t.full_name, f->name);
					return -EINVAL;
				}
				/* Entries do not move from here on. */
				o->msg = &t->t;
			}
			e->t.n_fields++;
		}
		qsort(e->t.fields, e->t.n_fields, sizeof(*e->t.fields), cmp_field);
		for (size_t k = 1; k < e->t.n_fields; k++)
			if (e->t.fields[k].number == e->t.fields[k - 1].number) {
				seterr(err, errlen,
				       "descriptor set \"%s\": message %s uses field number %u "
				       "twice",
				       paths[e->file], e->t.full_name, e->t.fields[k].number);
				return -EINVAL;
			}
	}
	return 0;
}

static int add_methods(struct pb_schema *s, const pb_fdp *f, const char *path, char *err,
		       size_t errlen)
{
	const char *pkg = f->package ? f->package : "";
	for (size_t i = 0; i < f->n_service; i++) {
		const Google__Protobuf__ServiceDescriptorProto *sv = f->service[i];
		for (size_t k = 0; k < sv->n_method; k++) {
			const Google__Protobuf__MethodDescriptorProto *m = sv->method[k];
			const struct pb_entry *in = resolve(s, m->input_type);
			const struct pb_entry *out = resolve(s, m->output_type);
			if (!sv->name || !m->name || !in || !out) {
				seterr(err, errlen,
				       "descriptor set \"%s\": a method of service %s has a type "
				       "that is not in the set (build it with --include_imports)",
				       path, sv->name ? sv->name : "?");
				return -EINVAL;
			}
			if (s->n_methods == s->cap_methods) {
				size_t cap = s->cap_methods ? s->cap_methods * 2 : 16;
				struct pb_method *v = realloc(s->methods, cap * sizeof(*v));
				if (!v)
					return -ENOMEM;
				s->methods = v;
				s->cap_methods = cap;
			}
			struct pb_method *pm = &s->methods[s->n_methods];
			int n = asprintf(&pm->path, "/%s%s%s/%s", pkg, pkg[0] ? "." : "", sv->name,
					 m->name);
			if (n < 0)
				return -ENOMEM;
			pm->path_len = (size_t)n;
			pm->in = &in->t;
			pm->out = &out->t;
			s->n_methods++;
		}
	}
	return 0;
}

/* Drop later duplicates of a sorted array (a file may come with more than one set). */
static void dedup_types(struct pb_schema *s)
{
	size_t w = 0;
	for (size_t i = 0; i < s->n_types; i++) {
		if (w && !strcmp(s->types[w - 1].t.full_name, s->types[i].t.full_name)) {
			free(s->types[i].t.full_name);
			continue;
		}
		s->types[w++] = s->types[i];
	}
	s->n_types = w;
}

static void dedup_methods(struct pb_schema *s)
{
	size_t w = 0;
	for (size_t i = 0; i < s->n_methods; i++) {
		if (w && !strcmp(s->methods[w - 1].path, s->methods[i].path)) {
			free(s->methods[i].path);
			continue;
		}
		s->methods[w++] = s->methods[i];
	}
	s->n_methods = w;
}

struct pb_schema *pb_schema_load_at(const char *const *paths, size_t n, char *err, size_t errlen,
				    size_t *err_index)
{
	struct pb_schema *s = calloc(1, sizeof(*s));
	size_t dummy;
	int r = -ENOMEM;

	if (!err_index)
		err_index = &dummy;
	*err_index = n;
	seterr(err, errlen, "out of memory");
	if (!s || !(s->sets = calloc(n ? n : 1, sizeof(*s->sets))))
		goto fail;
	for (size_t i = 0; i < n; i++) {
		uint8_t *buf = NULL;
		size_t len = 0;
		*err_index = i;
		if ((r = read_file(paths[i], &buf, &len))) {
			if (r == -ENOMEM)
				goto fail;
			seterr(err, errlen, "cannot read descriptor set \"%s\": %s", paths[i],
			       r == -EINVAL ? "not a regular file" : strerror(-r));
			goto fail;
		}
		s->sets[i] = google__protobuf__file_descriptor_set__unpack(NULL, len, buf);
		free(buf);
		if (s->sets[i])
			s->n_sets++; /* freed with the schema, even when it is refused below */
		if (!s->sets[i] || !s->sets[i]->n_file) {
			r = -EINVAL;
			seterr(err, errlen, "descriptor set \"%s\": not a FileDescriptorSet",
			       paths[i]);
			goto fail;
		}
		for (size_t f = 0; f < s->sets[i]->n_file; f++) {
			const pb_fdp *fd = s->sets[i]->file[f];
			const char *pkg = fd->package ? fd->package : "";
			for (size_t m = 0; m < fd->n_message_type; m++)
				if ((r = add_type(s, pkg, fd->message_type[m], i))) {
					if (r == -EINVAL)
						seterr(err, errlen,
						       "descriptor set \"%s\": a message has no "
						       "name",
						       paths[i]);
					goto fail;
				}
		}
	}
	qsort(s->types, s->n_types, sizeof(*s->types), cmp_entry);
	dedup_types(s);
	if ((r = index_fields(s, paths, err, errlen, err_index)))
		goto fail;
	for (size_t i = 0; i < s->n_sets; i++)
		for (size_t f = 0; f < s->sets[i]->n_file; f++) {
			*err_index = i;
			if ((r = add_methods(s, s->sets[i]->file[f], paths[i], err, errlen)))
				goto fail;
		}
	qsort(s->methods, s->n_methods, sizeof(*s->methods), cmp_method);
	dedup_methods(s);
	*err_index = n;
	if (err && errlen)
		err[0] = '\0';
	return s;
fail:
	pb_schema_free(s);
	errno = -r;
	return NULL;
}

struct pb_schema *pb_schema_load(const char *const *paths, size_t n, char *err, size_t errlen)
{
	return pb_schema_load_at(paths, n, err, errlen, NULL);
}

void pb_schema_free(struct pb_schema *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_types; i++) {
		free(s->types[i].t.full_name);
		free(s->types[i].t.fields);
	}
	free(s->types);
	for (size_t i = 0; i < s->n_methods; i++)
		free(s->methods[i].path);
	free(s->methods);
	for (size_t i = 0; i < s->n_sets; i++)
		google__protobuf__file_descriptor_set__free_unpacked(s->sets[i], NULL);
	free(s->sets);
	free(s);
}

/* ---- lookups ---- */

static const struct pb_method *find_method(const struct pb_schema *s, const char *path,
					   size_t path_len)
{
	size_t lo = 0, hi = s ? s->n_methods : 0;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct pb_method *m = &s->methods[mid];
		size_t k = m->path_len < path_len ? m->path_len : path_len;
		int c = memcmp(m->path, path, k);
		if (!c)
			c = m->path_len < path_len ? -1 : m->path_len > path_len;
		if (!c)
			return m;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

const struct pb_msgtype *pb_schema_method(const struct pb_schema *s, const char *path,
					  size_t path_len, uint32_t direction)
{
	const struct pb_method *m = path ? find_method(s, path, path_len) : NULL;
	if (!m)
		return NULL;
	if (direction == POLICY_DIR_REQUEST)
		return m->in;
	if (direction == POLICY_DIR_RESPONSE)
		return m->out;
	return NULL;
}

const char *pb_schema_method_name(const struct pb_schema *s, const char *path, size_t path_len)
{
	const struct pb_method *m = path ? find_method(s, path, path_len) : NULL;
	return m ? m->path : NULL;
}

const struct pb_msgtype *pb_schema_type(const struct pb_schema *s, const char *full_name)
{
	const struct pb_entry *e = s && full_name ? find_entry(s, full_name) : NULL;
	return e ? &e->t : NULL;
}

const struct pb_field *pb_msgtype_field(const struct pb_msgtype *t, uint32_t number)
{
	size_t lo = 0, hi = t ? t->n_fields : 0;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint32_t k = t->fields[mid].number;
		if (k == number)
			return &t->fields[mid];
		if (k < number)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}
