/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The policy document's shape (schema.h): one table for the validator and the CRD generator.
 * Descriptions are what `kubectl explain maskingpolicy.spec...` shows; docs/policy.md is the
 * full reference.
 */
#include <string.h>

#include "schema.h"

const char *const pschema_mode_names[] = {"enforce", "observe", NULL};
const char *const pschema_on_error_names[] = {"fallback", "block", "pass", NULL};
const char *const pschema_failure_names[] = {"closed", "open", NULL};
const char *const pschema_tls_names[] = {"off", "inplace", "stop-rewrite", NULL};
const char *const pschema_existing_names[] = {"reset", "keep", NULL};
const char *const pschema_tunnel_names[] = {"block", "pass", NULL};
const char *const pschema_action_names[] = {"mask",	"replace",    "redact", "hash",
					    "tokenize", "detokenize", NULL};
const char *const pschema_direction_names[] = {"request", "response", NULL};

static const char *const mask_keys[] = {"keepFirst", "keepLast", "char", NULL};
static const char *const replace_keys[] = {"value", NULL};
static const char *const redact_keys[] = {NULL};
static const char *const hash_keys[] = {"keyFile", "keyEnv", "length", "prefix", NULL};
static const char *const token_keys[] = {"keepFirst",  "keepLast", "luhn",   "keepDomain",
					 "tokenSpace", "keyFile",  "keyEnv", NULL};
const char *const *const pschema_action_keys[] = {mask_keys, replace_keys, redact_keys,
						  hash_keys, token_keys,   token_keys};
const char *const pschema_keyed_actions[] = {"hash", "tokenize", "detokenize", NULL};

#define DNS_LABEL_RE "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
#define DNS_SUBDOMAIN_RE "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#define NAME_RE "^[A-Za-z0-9_.-]+$"

static const struct pschema str_nonempty = {.type = PS_STRING, .min_len = 1};
static const struct pschema dns_label = {
	.type = PS_STRING, .pattern = DNS_LABEL_RE, .max_len = PS_DNS_LABEL_MAX};
static const struct pschema string_map = {.type = PS_STRING_MAP};

const struct pschema pschema_metadata = {
	.type = PS_OBJECT,
	.props = (const struct pschema_prop[]){{"name", &dns_label, true},
					       {"namespace", &dns_label, false},
					       {"labels", &string_map, false},
					       {"annotations", &string_map, false},
					       {NULL, NULL, false}},
};

static const struct pschema port = {.type = PS_INTEGER,
				    .description = "TCP port of the servers, 1 to 65535",
				    .minimum = 1,
				    .maximum = 65535};
static const struct pschema cidr = {
	.type = PS_STRING,
	.description = "10.0.0.0/8, fd00::/8 or a plain address (a full-length prefix)",
	.min_len = 1,
	.max_len = 64};

const struct pschema pschema_destination = {
	.type = PS_OBJECT,
	.description = "a server: port, cidr or both (both must match)",
	.min_props = 1,
	.props = (const struct pschema_prop[]){{"port", &port, false},
					       {"cidr", &cidr, false},
					       {NULL, NULL, false}},
};

static const struct pschema label_map = {.type = PS_STRING_MAP, .min_props = 1};
static const struct pschema sa_name = {
	.type = PS_STRING, .pattern = DNS_SUBDOMAIN_RE, .max_len = PS_DNS_SUBDOMAIN_MAX};
static const struct pschema cgroup = {.type = PS_STRING,
				      .description =
					      "fnmatch(3) glob on the caller's cgroup v2 path",
				      .min_len = 1};

const struct pschema pschema_source = {
	.type = PS_OBJECT,
	.description = "a set of callers: every key given must match",
	.min_props = 1,
	.props = (const struct pschema_prop[]){{"cgroup", &cgroup, false},
					       {"namespace", &dns_label, false},
					       {"serviceAccount", &sa_name, false},
					       {"labels", &label_map, false},
					       {NULL, NULL, false}},
};

static const struct pschema destinations = {
	.type = PS_ARRAY, .items = &pschema_destination, .min_items = 1, .max_items = PS_MAX_LIST};
static const struct pschema sources = {
	.type = PS_ARRAY, .items = &pschema_source, .min_items = 1, .max_items = PS_MAX_LIST};

const struct pschema pschema_selector = {
	.type = PS_OBJECT,
	.description = "which connections the policy applies to",
	.props = (const struct pschema_prop[]){{"destinations", &destinations, false},
					       {"sources", &sources, false},
					       {NULL, NULL, false}},
};

static const struct pschema enum_mode = {.type = PS_STRING, .enum_values = pschema_mode_names};
static const struct pschema enum_on_error = {.type = PS_STRING,
					     .enum_values = pschema_on_error_names};
static const struct pschema enum_failure = {.type = PS_STRING,
					    .enum_values = pschema_failure_names};
static const struct pschema enum_tls = {.type = PS_STRING, .enum_values = pschema_tls_names};
static const struct pschema enum_existing = {.type = PS_STRING,
					     .enum_values = pschema_existing_names};
static const struct pschema enum_tunnels = {.type = PS_STRING, .enum_values = pschema_tunnel_names};
static const struct pschema enum_direction = {.type = PS_STRING,
					      .enum_values = pschema_direction_names};

static const struct pschema directions = {
	.type = PS_ARRAY, .items = &enum_direction, .set = true, .min_items = 1, .max_items = 2};

const struct pschema pschema_tls = {
	.type = PS_OBJECT,
	.props = (const struct pschema_prop[]){{"enforce", &enum_tls, false}, {NULL, NULL, false}},
};

static const struct pschema rule_name = {
	.type = PS_STRING, .pattern = NAME_RE, .min_len = 1, .max_len = PS_RULE_NAME_MAX};
static const struct pschema fields = {.type = PS_ARRAY,
				      .items = &str_nonempty,
				      .set = true,
				      .min_items = 1,
				      .max_items = PS_MAX_LIST};
static const struct pschema entity = {.type = PS_STRING, .entities = true};
static const struct pschema entities = {
	.type = PS_ARRAY, .items = &entity, .set = true, .min_items = 1};
static const struct pschema header = {.type = PS_STRING,
				      .pattern = "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"};
static const struct pschema headers = {
	.type = PS_ARRAY, .items = &header, .min_items = 1, .max_items = PS_MAX_LIST};

static const struct pschema enum_action = {.type = PS_STRING, .enum_values = pschema_action_names};
static const struct pschema keep = {.type = PS_INTEGER, .minimum = 0, .maximum = PS_MASK_KEEP_MAX};
static const struct pschema mask_char = {.type = PS_STRING,
					 .description = "one character, not a control character",
					 .pattern = "^[^\\x00-\\x1f\\x7f]$",
					 .min_len = 1,
					 .max_len = 1};
static const struct pschema replace_value = {.type = PS_STRING, .max_len = PS_REPLACE_VALUE_MAX};
static const struct pschema key_file = {.type = PS_STRING,
					.description =
						"file holding the key (e.g. a mounted Secret)",
					.min_len = 1};
static const struct pschema key_env = {.type = PS_STRING,
				       .description =
					       "environment variable of the agent holding the key",
				       .pattern = "^[A-Za-z_][A-Za-z0-9_]*$",
				       .max_len = PS_ENV_NAME_MAX};
static const struct pschema hash_len = {
	.type = PS_INTEGER, .minimum = 1, .maximum = PS_HASH_LEN_MAX};
static const struct pschema hash_prefix = {.type = PS_STRING, .max_len = PS_HASH_PREFIX_MAX};
static const struct pschema boolean = {.type = PS_BOOLEAN};

/* Per-type key rules are generated from pschema_action_keys by meshmask-crdgen. */
const struct pschema pschema_action = {
	.type = PS_OBJECT,
	.props = (const struct pschema_prop[]){{"type", &enum_action, true},
					       {"keepFirst", &keep, false},
					       {"keepLast", &keep, false},
					       {"char", &mask_char, false},
					       {"value", &replace_value, false},
					       {"keyFile", &key_file, false},
					       {"keyEnv", &key_env, false},
					       {"length", &hash_len, false},
					       {"prefix", &hash_prefix, false},
					       {"luhn", &boolean, false},
					       {"keepDomain", &boolean, false},
					       {"tokenSpace", &rule_name, false},
					       {NULL, NULL, false}},
};

const struct pschema pschema_rule = {
	.type = PS_OBJECT,
	.props = (const struct pschema_prop[]){{"name", &rule_name, true},
					       {"fields", &fields, false},
					       {"entities", &entities, false},
					       {"headers", &headers, false},
					       {"action", &pschema_action, true},
					       {NULL, NULL, false}},
	.rules =
		(const struct pschema_rule[]){
			{"has(self.fields) || has(self.entities) || has(self.headers)",
			 "must set at least one of fields, entities, headers", NULL},
			{NULL, NULL, NULL}},
};

static const struct pschema rules = {
	.type = PS_ARRAY, .items = &pschema_rule, .min_items = 1, .max_items = PS_MAX_RULES};
static const struct pschema descriptor_sets = {.type = PS_ARRAY,
					       .items = &str_nonempty,
					       .min_items = 1,
					       .max_items = PS_MAX_DESCRIPTOR_SETS};

const struct pschema pschema_protobuf = {
	.type = PS_OBJECT,
	.props = (const struct pschema_prop[]){{"descriptorSets", &descriptor_sets, true},
					       {NULL, NULL, false}},
};

const struct pschema pschema_spec = {
	.type = PS_OBJECT,
	.props = (const struct pschema_prop[]){{"mode", &enum_mode, false},
					       {"selector", &pschema_selector, false},
					       {"exempt", &sources, false},
					       {"directions", &directions, false},
					       {"onError", &enum_on_error, false},
					       {"failureMode", &enum_failure, false},
					       {"tls", &pschema_tls, false},
					       {"rules", &rules, true},
					       {"tunnels", &enum_tunnels, false},
					       {"existingConnections", &enum_existing, false},
					       {"protobuf", &pschema_protobuf, false},
					       {NULL, NULL, false}},
};

static const struct pschema any_string = {.type = PS_STRING};

const struct pschema pschema_document = {
	.type = PS_OBJECT,
	.props = (const struct pschema_prop[]){{"apiVersion", &any_string, true},
					       {"kind", &any_string, true},
					       {"metadata", &pschema_metadata, true},
					       {"spec", &pschema_spec, true},
					       {NULL, NULL, false}},
};

const struct pschema_prop *pschema_prop(const struct pschema *s, const char *name)
{
	for (const struct pschema_prop *p = s->props; p && p->name; p++)
		if (!strcmp(p->name, name))
			return p;
	return NULL;
}

bool pschema_action_allows(const char *type, const char *key)
{
	for (int t = 0; pschema_action_names[t]; t++) {
		if (strcmp(pschema_action_names[t], type))
			continue;
		for (const char *const *k = pschema_action_keys[t]; *k; k++)
			if (!strcmp(*k, key))
				return true;
		return false;
	}
	return false;
}
