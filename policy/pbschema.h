/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Protobuf schemas of the policy language: the message types and gRPC methods of one or more
 * FileDescriptorSets (`protoc --descriptor_set_out --include_imports`), decoded with protobuf-c
 * and indexed once at policy load time (like field paths), so that the engine can name the
 * fields of a message it only sees as wire bytes. Immutable once loaded: shared by threads.
 */
#ifndef MESHMASK_PBSCHEMA_H
#define MESHMASK_PBSCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How a field's value is laid out on the wire and what it holds. */
enum pb_kind {
	PB_KIND_VARINT, /* int32/64, uint32/64, sint32/64 (zigzag), bool, enum: wire type 0 */
	PB_KIND_I64, /* fixed64, sfixed64, double: wire type 1 */
	PB_KIND_I32, /* fixed32, sfixed32, float: wire type 5 */
	PB_KIND_STRING, /* wire type 2, text */
	PB_KIND_BYTES, /* wire type 2, binary */
	PB_KIND_MESSAGE, /* wire type 2, a nested message of type `msg` */
	PB_KIND_GROUP, /* wire types 3..4 (proto2 groups), a nested message of type `msg` */
};

/* Wire types (the low 3 bits of a tag). */
enum pb_wire {
	PB_WIRE_VARINT = 0,
	PB_WIRE_I64 = 1,
	PB_WIRE_LEN = 2,
	PB_WIRE_SGROUP = 3,
	PB_WIRE_EGROUP = 4,
	PB_WIRE_I32 = 5,
};

struct pb_msgtype;

struct pb_field {
	uint32_t number;
	const char *name; /* borrowed from the decoded set, NUL-terminated */
	size_t name_len;
	uint8_t kind; /* enum pb_kind */
	uint8_t type; /* descriptor.proto FieldDescriptorProto.Type (TYPE_INT64 = 3...) */
	bool repeated;
	const struct pb_msgtype *msg; /* PB_KIND_MESSAGE / PB_KIND_GROUP; else NULL */
};

struct pb_msgtype {
	char *full_name; /* "pkg.Outer.Inner" (owned) */
	struct pb_field *fields; /* sorted by number (owned) */
	size_t n_fields;
	bool map_entry; /* a map<K,V> field's entry type (fields key = 1, value = 2) */
};

struct pb_schema;

/*
 * Load and index the FileDescriptorSet files paths[0, n) (protoc --descriptor_set_out
 * --include_imports). NULL with a message in err (naming the file, never its bytes) and errno
 * (ENOENT/EACCES... for a file that cannot be read, EINVAL for one that is not a set).
 */
struct pb_schema *pb_schema_load(const char *const *paths, size_t n, char *err, size_t errlen);

/* pb_schema_load() that also says which file the error is about (n: none in particular). */
struct pb_schema *pb_schema_load_at(const char *const *paths, size_t n, char *err, size_t errlen,
				    size_t *err_index);

void pb_schema_free(struct pb_schema *s);

/*
 * The input (POLICY_DIR_REQUEST) or output (POLICY_DIR_RESPONSE) type of the gRPC method
 * "/pkg.Service/Method" (exact, as in :path), borrowed from s; NULL if unknown.
 */
const struct pb_msgtype *pb_schema_method(const struct pb_schema *s, const char *path,
					  size_t path_len, uint32_t direction);

/* The method's canonical name as the descriptor set spells it ("/pkg.Service/Method"), for
 * metrics (borrowed from s); NULL if unknown. */
const char *pb_schema_method_name(const struct pb_schema *s, const char *path, size_t path_len);

/* The message type called `full_name` ("pkg.Msg", no leading dot), borrowed; NULL if unknown. */
const struct pb_msgtype *pb_schema_type(const struct pb_schema *s, const char *full_name);

/* The field numbered `number` in t, borrowed; NULL if t has none (an unknown field). */
const struct pb_field *pb_msgtype_field(const struct pb_msgtype *t, uint32_t number);

#endif
