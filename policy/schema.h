/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shape of a policy document, described once: every object's keys (and which are
 * required), each value's type, enums, bounds, patterns and the cross-field rules a schema can
 * state. policy.c validates with it (allowed keys, enum names, bounds, list sizes) and
 * meshmask-crdgen turns it into the OpenAPI v3 schema of the MaskingPolicy and
 * ClusterMaskingPolicy CRDs (x-kubernetes-validations CEL rules included), so the two cannot
 * drift. What no schema can check (a key file present on the node, a JSONPath that compiles, a
 * CIDR, duplicate header names in any case) stays in policy.c alone.
 */
#ifndef MESHMASK_POLICY_SCHEMA_H
#define MESHMASK_POLICY_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>

/* Bounds shared by the validator and the generated schema. */
#define PS_MASK_KEEP_MAX 64
#define PS_HASH_LEN_MAX 64
#define PS_HASH_PREFIX_MAX 64
#define PS_REPLACE_VALUE_MAX 1024
#define PS_RULE_NAME_MAX 63
#define PS_DNS_LABEL_MAX 63
#define PS_DNS_SUBDOMAIN_MAX 253
#define PS_ENV_NAME_MAX 255
/*
 * List sizes: the API server estimates the cost of every CEL rule from the largest list it can
 * run over, so each list that holds objects with rules is bounded (and the validator refuses
 * what the CRD would).
 */
#define PS_MAX_RULES 256
#define PS_MAX_LIST 256 /* destinations, sources, exempt, fields, headers */
#define PS_MAX_DESCRIPTOR_SETS 64

enum pschema_type {
	PS_OBJECT, /* props */
	PS_ARRAY, /* items */
	PS_STRING,
	PS_INTEGER,
	PS_BOOLEAN,
	PS_STRING_MAP, /* an object of string values with any keys (labels) */
};

/* One x-kubernetes-validations rule: CEL over `self`, reported at self + field_path. */
struct pschema_rule {
	const char *rule;
	const char *message;
	const char *field_path; /* ".keepLast", or NULL for self */
};

struct pschema;

struct pschema_prop {
	const char *name;
	const struct pschema *schema;
	bool required;
};

struct pschema {
	enum pschema_type type;
	const char *description;
	const struct pschema_prop *props; /* PS_OBJECT: terminated by a NULL name */
	const struct pschema *items; /* PS_ARRAY */
	bool set; /* PS_ARRAY: x-kubernetes-list-type set (no duplicates) */
	unsigned min_items, max_items; /* PS_ARRAY; max 0 = none */
	unsigned min_props; /* PS_OBJECT, PS_STRING_MAP */
	const char *const *enum_values; /* PS_STRING: NULL-terminated */
	bool entities; /* PS_STRING: the entity names of include/meshmask/entity.h */
	const char *pattern; /* PS_STRING: anchored RE2/ECMA regex */
	unsigned min_len, max_len; /* PS_STRING, in characters; max 0 = none */
	long long minimum, maximum; /* PS_INTEGER */
	const struct pschema_rule *rules; /* terminated by a NULL rule */
};

/* Enum value names, indexed by the policy.h enums. */
extern const char *const pschema_mode_names[];
extern const char *const pschema_on_error_names[];
extern const char *const pschema_failure_names[];
extern const char *const pschema_tls_names[];
extern const char *const pschema_existing_names[];
extern const char *const pschema_tunnel_names[];
extern const char *const pschema_action_names[]; /* by enum policy_action_type */
extern const char *const pschema_direction_names[];
/* Keys each action type allows besides "type", by enum policy_action_type. */
extern const char *const *const pschema_action_keys[];
/* Action types that need exactly one of keyFile / keyEnv. */
extern const char *const pschema_keyed_actions[];

/* The document and the objects policy.c walks. */
extern const struct pschema pschema_document; /* apiVersion, kind, metadata, spec */
extern const struct pschema pschema_metadata;
extern const struct pschema pschema_spec;
extern const struct pschema pschema_selector;
extern const struct pschema pschema_destination;
extern const struct pschema pschema_source;
extern const struct pschema pschema_tls;
extern const struct pschema pschema_rule;
extern const struct pschema pschema_action;
extern const struct pschema pschema_protobuf;

/* The property `name` of object s, or NULL. */
const struct pschema_prop *pschema_prop(const struct pschema *s, const char *name);
/* Whether `type` (an action type name) allows `key`. */
bool pschema_action_allows(const char *type, const char *key);

#endif
