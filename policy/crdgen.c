/* SPDX-License-Identifier: Apache-2.0 */
/*
 * meshmask-crdgen: writes the chart's CustomResourceDefinitions (helm/meshmask/files/crds.yaml)
 * from the policy schema (schema.h) the validator uses: MaskingPolicy (namespaced),
 * ClusterMaskingPolicy (cluster-scoped) and MaskingPolicyNodeStatus (one per node: what each
 * agent applied). The build compares its output with the checked-in file (test crd-generated).
 *   meshmask-crdgen [OUT]     (stdout without OUT)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "meshmask/entity.h"
#include "schema.h"

/* ---- YAML out: block style, every string JSON-quoted (valid YAML), keys in insertion order */

static bool plain_key(const char *k)
{
	if (!*k)
		return false;
	for (const char *p = k; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '/'))
			return false;
	return true;
}

static void put_scalar(FILE *f, json_t *v)
{
	char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	fputs(s ? s : "null", f);
	free(s);
}

static bool is_empty_container(json_t *v)
{
	return (json_is_object(v) && !json_object_size(v)) ||
	       (json_is_array(v) && !json_array_size(v));
}

static void put_yaml(FILE *f, json_t *v, int indent);

static void put_key(FILE *f, const char *k)
{
	if (plain_key(k)) {
		fputs(k, f);
	} else {
		json_t *s = json_string(k);
		put_scalar(f, s);
		json_decref(s);
	}
	fputc(':', f);
}

/* A member's value after "key:" (or an item's after "- "). */
static void put_value(FILE *f, json_t *v, int indent, bool after_dash)
{
	if (json_is_object(v) && json_object_size(v)) {
		if (after_dash) {
			/* first member on the dash's line */
			put_yaml(f, v, -(indent + 2));
		} else {
			fputc('\n', f);
			put_yaml(f, v, indent + 2);
		}
	} else if (json_is_array(v) && json_array_size(v)) {
		fputc('\n', f);
		put_yaml(f, v, after_dash ? indent + 2 : indent);
	} else {
		if (!after_dash)
			fputc(' ', f);
		if (is_empty_container(v))
			fputs(json_is_object(v) ? "{}" : "[]", f);
		else
			put_scalar(f, v);
		fputc('\n', f);
	}
}

/* indent < 0: the first line is already indented (after "- "), the rest at -indent. */
static void put_yaml(FILE *f, json_t *v, int indent)
{
	bool first_inline = indent < 0;
	int ind = first_inline ? -indent : indent;
	if (json_is_object(v)) {
		const char *k;
		json_t *m;
		json_object_foreach(v, k, m)
		{
			if (!first_inline)
				fprintf(f, "%*s", ind, "");
			first_inline = false;
			put_key(f, k);
			put_value(f, m, ind, false);
		}
	} else if (json_is_array(v)) {
		size_t i;
		json_t *m;
		json_array_foreach(v, i, m)
		{
			fprintf(f, "%*s- ", ind, "");
			if (json_is_object(m) && json_object_size(m))
				put_yaml(f, m, -(ind + 2));
			else if (json_is_array(m) && json_array_size(m)) {
				fputc('\n', f);
				put_yaml(f, m, ind + 2);
			} else
				put_value(f, m, ind, true);
		}
	}
}

/* ---- schema → OpenAPI v3 (structural) --------------------------------------------------- */

static json_t *str_list(const char *const *v)
{
	json_t *a = json_array();
	for (; v && *v; v++)
		json_array_append_new(a, json_string(*v));
	return a;
}

/* "['a', 'b']" for CEL. */
static void cel_list(char *out, size_t size, const char *const *v)
{
	size_t off = (size_t)snprintf(out, size, "[");
	for (int i = 0; v[i] && off < size; i++)
		off += (size_t)snprintf(out + off, size - off, "%s'%s'", i ? ", " : "", v[i]);
	if (off < size)
		snprintf(out + off, size - off, "]");
}

static json_t *rule_json(const char *rule, const char *message, const char *field_path)
{
	json_t *r = json_object();
	json_object_set_new(r, "rule", json_string(rule));
	json_object_set_new(r, "message", json_string(message));
	if (field_path)
		json_object_set_new(r, "fieldPath", json_string(field_path));
	return r;
}

/*
 * The action's per-type keys as CEL: a key only some types take is refused, at the key, for
 * the others; the keyed types need exactly one of keyFile and keyEnv.
 */
static void action_rules(json_t *arr)
{
	for (const struct pschema_prop *p = pschema_action.props; p->name; p++) {
		if (!strcmp(p->name, "type"))
			continue;
		const char *types[8], *others[8];
		size_t n = 0, n_others = 0;
		for (int t = 0; pschema_action_names[t]; t++)
			if (pschema_action_allows(pschema_action_names[t], p->name))
				types[n++] = pschema_action_names[t];
			else
				others[n_others++] = pschema_action_names[t];
		types[n] = others[n_others] = NULL;
		if (!n_others)
			continue;
		/* Written as "not one of the others" so that a type outside the enum (refused at
		 * .type) does not add an error here. */
		char list[256], rule[512], msg[300], path[80];
		cel_list(list, sizeof(list), others);
		snprintf(rule, sizeof(rule), "!has(self.%s) || !(self.type in %s)", p->name, list);
		size_t off = (size_t)snprintf(msg, sizeof(msg), "allowed only for action type%s ",
					      n > 1 ? "s" : "");
		for (size_t i = 0; i < n; i++)
			off += (size_t)snprintf(msg + off, sizeof(msg) - off, "%s%s",
						i ? (i + 1 == n ? " and " : ", ") : "", types[i]);
		snprintf(path, sizeof(path), ".%s", p->name);
		json_array_append_new(arr, rule_json(rule, msg, path));
	}
	char list[256], rule[512];
	cel_list(list, sizeof(list), pschema_keyed_actions);
	snprintf(rule, sizeof(rule), "!(self.type in %s) || has(self.keyFile) != has(self.keyEnv)",
		 list);
	json_array_append_new(arr, rule_json(rule, "set exactly one of keyFile and keyEnv", NULL));
}

static json_t *schema_json(const struct pschema *s)
{
	json_t *o = json_object();
	switch (s->type) {
	case PS_OBJECT:
	case PS_STRING_MAP:
		json_object_set_new(o, "type", json_string("object"));
		break;
	case PS_ARRAY:
		json_object_set_new(o, "type", json_string("array"));
		break;
	case PS_STRING:
		json_object_set_new(o, "type", json_string("string"));
		break;
	case PS_INTEGER:
		json_object_set_new(o, "type", json_string("integer"));
		break;
	case PS_BOOLEAN:
		json_object_set_new(o, "type", json_string("boolean"));
		break;
	}
	if (s->description)
		json_object_set_new(o, "description", json_string(s->description));
	if (s->type == PS_OBJECT) {
		json_t *req = json_array(), *props = json_object();
		for (const struct pschema_prop *p = s->props; p && p->name; p++) {
			json_object_set_new(props, p->name, schema_json(p->schema));
			if (p->required)
				json_array_append_new(req, json_string(p->name));
		}
		if (json_array_size(req))
			json_object_set_new(o, "required", req);
		else
			json_decref(req);
		json_object_set_new(o, "properties", props);
	}
	if (s->type == PS_STRING_MAP)
		json_object_set_new(o, "additionalProperties",
				    json_pack("{s:s}", "type", "string"));
	if ((s->type == PS_OBJECT || s->type == PS_STRING_MAP) && s->min_props)
		json_object_set_new(o, "minProperties", json_integer(s->min_props));
	if (s->type == PS_ARRAY) {
		json_object_set_new(o, "items", schema_json(s->items));
		if (s->min_items)
			json_object_set_new(o, "minItems", json_integer(s->min_items));
		if (s->max_items)
			json_object_set_new(o, "maxItems", json_integer(s->max_items));
		json_object_set_new(o, "x-kubernetes-list-type",
				    json_string(s->set ? "set" : "atomic"));
	}
	if (s->type == PS_STRING) {
		size_t longest = 0;
		if (s->enum_values) {
			json_object_set_new(o, "enum", str_list(s->enum_values));
			for (const char *const *v = s->enum_values; *v; v++)
				longest = strlen(*v) > longest ? strlen(*v) : longest;
		}
		if (s->entities) {
			json_t *e = json_array();
			for (unsigned i = 0; i < MM_ENT__COUNT; i++) {
				json_array_append_new(e, json_string(mm_entity_name(i)));
				longest = strlen(mm_entity_name(i)) > longest
						  ? strlen(mm_entity_name(i))
						  : longest;
			}
			json_object_set_new(o, "enum", e);
		}
		if (s->pattern)
			json_object_set_new(o, "pattern", json_string(s->pattern));
		if (s->min_len)
			json_object_set_new(o, "minLength", json_integer(s->min_len));
		/* An enum's longest value bounds the cost of CEL comparisons on it. */
		if (s->max_len || longest)
			json_object_set_new(
				o, "maxLength",
				json_integer(s->max_len ? s->max_len : (json_int_t)longest));
	}
	if (s->type == PS_INTEGER) {
		json_object_set_new(o, "minimum", json_integer(s->minimum));
		json_object_set_new(o, "maximum", json_integer(s->maximum));
	}
	json_t *rules = json_array();
	for (const struct pschema_rule *r = s->rules; r && r->rule; r++)
		json_array_append_new(rules, rule_json(r->rule, r->message, r->field_path));
	if (s == &pschema_action)
		action_rules(rules);
	if (json_array_size(rules))
		json_object_set_new(o, "x-kubernetes-validations", rules);
	else
		json_decref(rules);
	return o;
}

/* ---- the CRDs ---------------------------------------------------------------------------- */

static json_t *column(const char *name, const char *type, const char *path, const char *desc,
		      int priority)
{
	json_t *c = json_pack("{s:s,s:s,s:s}", "name", name, "type", type, "jsonPath", path);
	if (desc)
		json_object_set_new(c, "description", json_string(desc));
	if (priority)
		json_object_set_new(c, "priority", json_integer(priority));
	return c;
}

/* status of a policy, written by the status aggregator (docs/deploy.md). */
static json_t *policy_status_schema(void)
{
	json_t *cond =
		json_pack("{s:s,s:[s,s,s,s,s],s:{s:{s:s},s:{s:s,s:[s,s,s]},s:{s:s},s:{s:s},s:{s:s,"
			  "s:s},s:{s:s}}}",
			  "type", "object", "required", "type", "status", "reason", "message",
			  "lastTransitionTime", "properties", "type", "type", "string", "status",
			  "type", "string", "enum", "True", "False", "Unknown", "reason", "type",
			  "string", "message", "type", "string", "lastTransitionTime", "type",
			  "string", "format", "date-time", "observedGeneration", "type", "integer");
	json_t *refused = json_pack("{s:s,s:[s],s:{s:{s:s},s:{s:s},s:{s:s}}}", "type", "object",
				    "required", "node", "properties", "node", "type", "string",
				    "pointer", "type", "string", "message", "type", "string");
	return json_pack(
		"{s:s,s:s,s:{s:{s:s},s:{s:s},s:{s:s},s:{s:s},s:{s:s},s:{s:s},s:{s:s,s:o,s:i,s:s},"
		"s:{s:s,s:o,s:s,s:[s]}}}",
		"type", "object", "description",
		"what the agents report (summed from the MaskingPolicyNodeStatus objects)",
		"properties", "observedGeneration", "type", "integer", "rules", "type", "integer",
		"nodes", "type", "integer", "nodesInForce", "type", "integer", "nodesRefused",
		"type", "integer", "inForce", "type", "string", "refusedNodes", "type", "array",
		"items", refused, "maxItems", 20, "x-kubernetes-list-type", "atomic", "conditions",
		"type", "array", "items", cond, "x-kubernetes-list-type", "map",
		"x-kubernetes-list-map-keys", "type");
}

static json_t *policy_crd(const char *kind, const char *plural, const char *short_name,
			  bool namespaced)
{
	char name[128], singular[64];
	snprintf(name, sizeof(name), "%s.meshmask.io", plural);
	snprintf(singular, sizeof(singular), "%s", kind);
	for (char *p = singular; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');

	json_t *meta_name =
		json_pack("{s:s,s:{s:{s:s,s:s,s:i}}}", "type", "object", "properties", "name",
			  "type", "string", "pattern", pschema_metadata.props[0].schema->pattern,
			  "maxLength", PS_DNS_LABEL_MAX);
	json_t *spec = schema_json(&pschema_spec);
	json_object_set_new(
		spec, "description",
		json_string(namespaced
				    ? "the policy, as in a policy file (docs/policy.md); it covers "
				      "callers in the resource's own namespace only"
				    : "the policy, as in a policy file (docs/policy.md)"));
	json_t *schema = json_pack("{s:s,s:[s],s:{s:{s:s},s:{s:s},s:o,s:o,s:o}}", "type", "object",
				   "required", "spec", "properties", "apiVersion", "type", "string",
				   "kind", "type", "string", "metadata", meta_name, "spec", spec,
				   "status", policy_status_schema());
	json_t *cols = json_array();
	json_array_append_new(cols, column("Mode", "string", ".spec.mode", NULL, 0));
	json_array_append_new(cols, column("Rules", "integer", ".status.rules", NULL, 0));
	json_array_append_new(cols, column("In force", "string", ".status.inForce",
					   "nodes where the agent applied this generation / nodes "
					   "with an agent",
					   0));
	json_array_append_new(cols,
			      column("Ready", "string",
				     ".status.conditions[?(@.type==\"Ready\")].status", NULL, 1));
	json_array_append_new(cols, column("Age", "date", ".metadata.creationTimestamp", NULL, 0));
	return json_pack(
		"{s:s,s:s,s:{s:s,s:{s:s},s:{s:s}},s:{s:s,s:s,s:{s:s,s:s,s:s,s:[s],s:[s,s]},s:[{s:s,"
		"s:b,s:b,s:{s:o},s:{s:{}},s:o}]}}",
		"apiVersion", "apiextensions.k8s.io/v1", "kind", "CustomResourceDefinition",
		"metadata", "name", name, "labels", "app.kubernetes.io/part-of", "meshmask",
		"annotations", "helm.sh/resource-policy", "keep", "spec", "group", "meshmask.io",
		"scope", namespaced ? "Namespaced" : "Cluster", "names", "kind", kind, "plural",
		plural, "singular", singular, "shortNames", short_name, "categories", "meshmask",
		"all", "versions", "name", "v1alpha1", "served", 1, "storage", 1, "schema",
		"openAPIV3Schema", schema, "subresources", "status", "additionalPrinterColumns",
		cols);
}

static json_t *node_status_crd(void)
{
	json_t *err = json_pack("{s:s,s:{s:{s:s},s:{s:s}}}", "type", "object", "properties",
				"pointer", "type", "string", "message", "type", "string");
	json_t *item = json_pack(
		"{s:s,s:[s,s,s],s:{s:{s:s,s:[s,s]},s:{s:s},s:{s:s},s:{s:s},s:{s:s,s:[s,s]},"
		"s:{s:s},s:{s:s,s:s},s:{s:s,s:o,s:i,s:s}}}",
		"type", "object", "required", "kind", "namespace", "name", "properties", "kind",
		"type", "string", "enum", "MaskingPolicy", "ClusterMaskingPolicy", "namespace",
		"type", "string", "name", "type", "string", "generation", "type", "integer",
		"state", "type", "string", "enum", "InForce", "Refused", "message", "type",
		"string", "appliedAt", "type", "string", "format", "date-time", "errors", "type",
		"array", "items", err, "maxItems", 10, "x-kubernetes-list-type", "atomic");
	json_t *schema = json_pack(
		"{s:s,s:{s:{s:s},s:{s:s},s:{s:s},s:{s:s},s:{s:s},s:{s:s,s:o,s:s,s:[s,s,s]}}}",
		"type", "object", "properties", "apiVersion", "type", "string", "kind", "type",
		"string", "metadata", "type", "object", "nodeName", "type", "string",
		"agentVersion", "type", "string", "policies", "type", "array", "items", item,
		"x-kubernetes-list-type", "map", "x-kubernetes-list-map-keys", "kind", "namespace",
		"name");
	json_t *cols = json_array();
	json_array_append_new(cols, column("Node", "string", ".nodeName", NULL, 0));
	json_array_append_new(cols, column("Age", "date", ".metadata.creationTimestamp", NULL, 0));
	return json_pack(
		"{s:s,s:s,s:{s:s,s:{s:s},s:{s:s}},s:{s:s,s:s,s:{s:s,s:s,s:s,s:[s],s:[s]},s:[{s:s,"
		"s:b,s:b,s:{s:o},s:o}]}}",
		"apiVersion", "apiextensions.k8s.io/v1", "kind", "CustomResourceDefinition",
		"metadata", "name", "maskingpolicynodestatuses.meshmask.io", "labels",
		"app.kubernetes.io/part-of", "meshmask", "annotations", "helm.sh/resource-policy",
		"keep", "spec", "group", "meshmask.io", "scope", "Cluster", "names", "kind",
		"MaskingPolicyNodeStatus", "plural", "maskingpolicynodestatuses", "singular",
		"maskingpolicynodestatus", "shortNames", "mmns", "categories", "meshmask",
		"versions", "name", "v1alpha1", "served", 1, "storage", 1, "schema",
		"openAPIV3Schema", schema, "additionalPrinterColumns", cols);
}

int main(int argc, char **argv)
{
	FILE *f = argc > 1 ? fopen(argv[1], "w") : stdout;
	if (!f) {
		perror(argv[1]);
		return 1;
	}
	json_t *docs[] = {
		policy_crd("MaskingPolicy", "maskingpolicies", "mmp", true),
		policy_crd("ClusterMaskingPolicy", "clustermaskingpolicies", "cmmp", false),
		node_status_crd()};
	fputs("# Generated by meshmask-crdgen from policy/schema.c: do not edit (the test\n"
	      "# crd-generated fails when this file and the generator differ).\n",
	      f);
	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		if (!docs[i]) {
			fprintf(stderr, "meshmask-crdgen: building document %zu failed\n", i);
			return 1;
		}
		fputs("---\n", f);
		put_yaml(f, docs[i], 0);
		json_decref(docs[i]);
	}
	if (f != stdout && fclose(f) != 0) {
		perror(argv[1]);
		return 1;
	}
	return 0;
}
