/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "cli_yaml.h"

#define DEPTH_MAX 64 /* aliases can nest a document into itself: bound the walk */
#define FILE_MAX (4u << 20)

/* A plain scalar per YAML 1.2's core schema. */
static json_t *plain(const char *s, size_t len)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
	static const char *const trues[] = {"true", "True", "TRUE"};
	static const char *const falses[] = {"false", "False", "FALSE"};
	for (size_t i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
		if (!strcmp(s, nulls[i]))
			return json_null();
	for (size_t i = 0; i < 3; i++) {
		if (!strcmp(s, trues[i]))
			return json_true();
		if (!strcmp(s, falses[i]))
			return json_false();
	}
	char *end;
	if (len &&
	    strspn(s + (*s == '-' || *s == '+'), "0123456789") == len - (*s == '-' || *s == '+') &&
	    len > (size_t)(*s == '-' || *s == '+')) {
		errno = 0;
		long long v = strtoll(s, &end, 10);
		if (!errno && !*end)
			return json_integer(v);
	}
	regex_t re;
	if (regcomp(&re, "^[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?$",
		    REG_EXTENDED | REG_NOSUB) == 0) {
		bool num = regexec(&re, s, 0, NULL, 0) == 0;
		regfree(&re);
		if (num)
			return json_real(strtod(s, NULL));
	}
	return json_stringn(s, len);
}

static json_t *convert(yaml_document_t *doc, yaml_node_t *n, int depth, char *err, size_t size)
{
	if (!n || depth > DEPTH_MAX) {
		snprintf(err, size, "nested too deep");
		return NULL;
	}
	char at[64];
	snprintf(at, sizeof(at), "%zu:%zu", n->start_mark.line + 1, n->start_mark.column + 1);
	switch (n->type) {
	case YAML_SCALAR_NODE: {
		const char *s = (const char *)n->data.scalar.value;
		size_t len = n->data.scalar.length;
		if (strlen(s) != len) {
			snprintf(err, size, "%s: a NUL byte in a scalar", at);
			return NULL;
		}
		if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
			return plain(s, len);
		return json_stringn(s, len);
	}
	case YAML_SEQUENCE_NODE: {
		json_t *a = json_array();
		for (yaml_node_item_t *i = n->data.sequence.items.start;
		     a && i < n->data.sequence.items.top; i++) {
			json_t *v =
				convert(doc, yaml_document_get_node(doc, *i), depth + 1, err, size);
			if (!v || json_array_append_new(a, v)) {
				json_decref(a);
				return NULL;
			}
		}
		return a;
	}
	case YAML_MAPPING_NODE: {
		json_t *o = json_object();
		for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
		     o && p < n->data.mapping.pairs.top; p++) {
			yaml_node_t *k = yaml_document_get_node(doc, p->key);
			if (!k || k->type != YAML_SCALAR_NODE) {
				snprintf(err, size, "%s: a mapping key that is not a scalar", at);
				json_decref(o);
				return NULL;
			}
			const char *key = (const char *)k->data.scalar.value;
			if (json_object_get(o, key)) {
				snprintf(err, size, "%zu:%zu: duplicate key \"%s\"",
					 k->start_mark.line + 1, k->start_mark.column + 1, key);
				json_decref(o);
				return NULL;
			}
			json_t *v = convert(doc, yaml_document_get_node(doc, p->value), depth + 1,
					    err, size);
			if (!v || json_object_set_new(o, key, v)) {
				json_decref(o);
				return NULL;
			}
		}
		return o;
	}
	default:
		snprintf(err, size, "%s: an empty node", at);
		return NULL;
	}
}

json_t *cli_yaml_load(const char *text, size_t len, char *err, size_t err_size)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	json_t *out = NULL;
	snprintf(err, err_size, "out of memory");
	if (!yaml_parser_initialize(&parser))
		return NULL;
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		snprintf(err, err_size, "%zu:%zu: %s", parser.problem_mark.line + 1,
			 parser.problem_mark.column + 1,
			 parser.problem ? parser.problem : "bad YAML");
		yaml_parser_delete(&parser);
		return NULL;
	}
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (!root)
		snprintf(err, err_size, "empty document");
	else
		out = convert(&doc, root, 0, err, err_size);
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return out;
}

json_t *cli_yaml_load_file(const char *path, char *err, size_t err_size)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		snprintf(err, err_size, "%s: %s", path, strerror(errno));
		return NULL;
	}
	char *buf = malloc(FILE_MAX + 1);
	size_t n = buf ? fread(buf, 1, FILE_MAX + 1, f) : 0;
	bool bad = !buf || ferror(f) || n > FILE_MAX;
	fclose(f);
	if (bad) {
		snprintf(err, err_size, "%s: %s", path,
			 !buf		? strerror(ENOMEM)
			 : n > FILE_MAX ? "over 4 MiB"
					: "read error");
		free(buf);
		return NULL;
	}
	char e[256];
	json_t *v = cli_yaml_load(buf, n, e, sizeof(e));
	if (!v)
		snprintf(err, err_size, "%s:%s", path, e);
	explicit_bzero(buf, n); /* a kubeconfig holds tokens and keys */
	free(buf);
	return v;
}
