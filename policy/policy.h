/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The policy language: a Kubernetes-shaped JSON document (apiVersion/kind/metadata/spec)
 * parsed with jansson, validated with a location for every error, and compiled into an
 * immutable, reference-counted struct policy that the engine, the HTTP layer and the BPF
 * steering maps consume. Swapping policies is swapping a pointer to a struct policy_set.
 */
#ifndef MESHMASK_POLICY_H
#define MESHMASK_POLICY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdbool.h>

#include "jpath.h"

#define POLICY_API_VERSION "meshmask.io/v1alpha1"
#define POLICY_KIND "MaskingPolicy"

enum policy_mode { POLICY_MODE_ENFORCE, POLICY_MODE_OBSERVE };
enum policy_on_error { POLICY_ONERR_FALLBACK, POLICY_ONERR_BLOCK, POLICY_ONERR_PASS };
enum policy_failure_mode { POLICY_FAIL_CLOSED, POLICY_FAIL_OPEN };
/*
 * spec.existingConnections: what happens to a caller's connections that went straight to the
 * server when the policy starts covering them.
 */
enum policy_existing { POLICY_EXISTING_RESET, POLICY_EXISTING_KEEP };
enum policy_tls_enforce { POLICY_TLS_OFF, POLICY_TLS_INPLACE, POLICY_TLS_STOP_REWRITE };
/* spec.tunnels: what a protocol switch (101 Upgrade, CONNECT) on a covered flow may do. */
enum policy_tunnels { POLICY_TUNNELS_BLOCK, POLICY_TUNNELS_PASS };

/* Bits of policy.directions. */
#define POLICY_DIR_REQUEST 0x1u
#define POLICY_DIR_RESPONSE 0x2u

enum policy_action_type {
	POLICY_ACTION_MASK,
	POLICY_ACTION_REPLACE,
	POLICY_ACTION_REDACT,
	POLICY_ACTION_HASH,
	POLICY_ACTION_TOKENIZE,
	POLICY_ACTION_DETOKENIZE
};

struct policy_action {
	enum policy_action_type type;
	/* mask, tokenize, detokenize */
	uint32_t keep_first, keep_last;
	char mask_char[8];  /* one UTF-8 character, NUL-terminated; default "*" */
	/* replace: NULL means "<ENTITY>" (or "<MASKED>" for a field rule without entity) */
	char *value;
	/* hash: HMAC-SHA256 with key, hex, truncated to hash_len hex digits, after prefix */
	unsigned char *hash_key; /* owned; never printed; tokenize/detokenize: the AES-256 key */
	size_t hash_key_len;
	uint32_t hash_len;  /* default 16, 1..64 */
	char *hash_prefix;  /* may be NULL */
	/* tokenize, detokenize: FF1 (tokenize.h) with hash_key, tweak token_space */
	bool luhn;
	bool keep_domain; /* default true */
	char *token_space; /* never NULL once parsed ("default") */
};

struct policy_rule {
	char *name;
	uint32_t index; /* position in spec.rules */
	struct jpath *fields; /* JSON paths / form parameter names; n_fields may be 0 */
	size_t n_fields;
	uint32_t entities; /* MM_ENT_BIT mask; 0 = whole field value */
	char **headers;    /* HTTP header names, lower-cased */
	size_t n_headers;
	struct policy_action action;
};

/* A destination the policy covers: a port, an address prefix, or both. */
struct policy_dest {
	uint16_t port;      /* host order; 0 = any port */
	uint8_t family;     /* 0 = any address, else AF_INET / AF_INET6 */
	uint8_t prefix_len; /* bits of addr that must match */
	uint8_t addr[16];   /* network order; IPv4 in the first 4 bytes */
};

/* A set of callers. Every field that is set must match (AND); NULL/0 means "any". */
struct policy_source {
	char *cgroup;          /* fnmatch(3) glob on the cgroup v2 path, e.g. "/kubepods*" */
	char *namespace_;      /* Kubernetes namespace (once identity is known) */
	char *service_account; /* Kubernetes service account */
	char **label_keys;     /* pod labels, all must match */
	char **label_values;
	size_t n_labels;
};

struct policy {
	int refs; /* atomic */
	char *name;
	char *origin; /* file name or "api", for messages */
	char etag[65]; /* hex SHA-256 of the canonical JSON */
	char *json;    /* canonical JSON text of the document (owned) */

	enum policy_mode mode;
	enum policy_on_error on_error;
	enum policy_failure_mode failure_mode;
	enum policy_existing existing; /* default reset under enforce, keep under observe */
	enum policy_tls_enforce tls_enforce;
	enum policy_tunnels tunnels; /* default block under enforce, pass under observe */
	uint32_t directions; /* POLICY_DIR_* */

	struct policy_dest *dests;
	size_t n_dests;
	struct policy_source *sources; /* none = every caller */
	size_t n_sources;
	struct policy_source *exempt;
	size_t n_exempt;

	struct policy_rule *rules;
	size_t n_rules;
	uint32_t body_entities; /* union of entities of rules with no fields and no headers */

	/* spec.protobuf.descriptorSets, loaded and indexed at parse time (NULL/0 when none). */
	char **pb_paths;
	size_t n_pb_paths;
	struct pb_schema *pb_schema; /* owned; pbschema.h */
};

/* One validation or syntax error. */
struct policy_error {
	char *pointer; /* JSON pointer ("/spec/rules/2/action/type"), "" for the document, or NULL
			  for a syntax error */
	int line, column; /* 1-based; 0 when unknown */
	char *message;
};

struct policy_errors {
	struct policy_error *v;
	size_t n;
};

/*
 * Parse, validate and compile one policy document. Returns a policy with one reference, or
 * NULL with every problem found appended to `errs` (errno = EINVAL), or NULL with errno =
 * ENOMEM. `origin` names the source in messages (copied). Hash keys and protobuf descriptor
 * sets are read here.
 */
struct policy *policy_parse(const char *text, size_t len, const char *origin,
			    struct policy_errors *errs);

/* policy_parse() on the contents of a file; a read error is reported as an error too. */
struct policy *policy_load_file(const char *path, struct policy_errors *errs);

/*
 * Confine the keys policies may name (the agent does, at start; the CLI reads what its user
 * names): keyFile must name a file inside `dir` (relative to it, or absolute under it; no
 * symlink or ".." leads out) and keyEnv a variable whose name starts with `env_prefix`. Every
 * way a named key can be unavailable then gives one error text, so validating a policy cannot
 * tell whether a file or variable exists. Strings copied; NULL dir = unconfined. 0 or -ENOMEM.
 */
int policy_confine_keys(const char *dir, const char *env_prefix);

struct policy *policy_ref(struct policy *p);
void policy_unref(struct policy *p);

/* Print "origin: /pointer: message" (or "origin:line:col: message") lines. */
void policy_errors_print(FILE *f, const char *origin, const struct policy_errors *errs);
void policy_errors_free(struct policy_errors *errs);

/* Name of an enum value as written in the policy ("enforce", "mask", ...). */
const char *policy_action_name(enum policy_action_type t);
const char *policy_mode_name(enum policy_mode m);

/*
 * An immutable set of policies (sorted by name), reference-counted so that a swap is a
 * pointer exchange and traffic in flight keeps the set it started with.
 */
struct policy_set {
	int refs; /* atomic */
	uint64_t generation;
	struct policy **v; /* each holds one reference */
	size_t n;
};

/* New set of `n` policies (references are taken, not stolen); NULL with errno. */
struct policy_set *policy_set_new(struct policy *const *v, size_t n, uint64_t generation);
struct policy_set *policy_set_ref(struct policy_set *s);
void policy_set_unref(struct policy_set *s);
/* The policy called `name`, borrowed from the set, or NULL. */
struct policy *policy_set_find(const struct policy_set *s, const char *name);

#endif
