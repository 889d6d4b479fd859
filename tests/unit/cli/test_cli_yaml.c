/* SPDX-License-Identifier: Apache-2.0 */
/* cli_yaml: YAML (and JSON) documents as jansson values, as `policy push --cluster` reads
 * kubeconfigs and resources. */
#include <string.h>

#include <jansson.h>

#include "cli_yaml.h"
#include "tap.h"

static json_t *load(const char *text, char *err)
{
	return cli_yaml_load(text, strlen(text), err, 200);
}

/* Whether text loads to the same value as the JSON `want`. */
static int same(const char *text, const char *want)
{
	char err[200] = "";
	json_t *got = load(text, err), *w = json_loads(want, 0, NULL);
	int r = got && w && json_equal(got, w);
	if (!r) {
		char *g = got ? json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
		printf("#   got %s (%s)\n", g ? g : "NULL", err);
		free(g);
	}
	json_decref(got);
	json_decref(w);
	return r;
}

/* Whether text is refused with an error containing `part`. */
static int refused(const char *text, const char *part)
{
	char err[200] = "";
	json_t *got = load(text, err);
	int r = !got && strstr(err, part);
	if (!r)
		printf("#   error \"%s\"\n", err);
	json_decref(got);
	return r;
}

int main(void)
{
	ok(same("a: 1\nb: -3\nc: 1.5\nd: .5\ne: +7\n",
		"{\"a\":1,\"b\":-3,\"c\":1.5,\"d\":0.5,\"e\":7}"),
	   "plain numbers: integers and reals");
	ok(same("t: true\nf: False\nn: null\nm: ~\ne:\n",
		"{\"t\":true,\"f\":false,\"n\":null,\"m\":null,\"e\":null}"),
	   "plain booleans and nulls (YAML 1.2 core schema)");
	ok(same("q: \"1\"\ns: '8080'\ny: yes\nv: 1.2.3\nx: 0x1F\n",
		"{\"q\":\"1\",\"s\":\"8080\",\"y\":\"yes\",\"v\":\"1.2.3\",\"x\":\"0x1F\"}"),
	   "quoted scalars and other words stay strings");
	ok(same("spec:\n  selector: { destinations: [ { port: 8080 } ] }\n  rules:\n"
		"    - { name: ssn, fields: [\"$..ssn\"], action: { type: mask, keepLast: 4 } }\n",
		"{\"spec\":{\"selector\":{\"destinations\":[{\"port\":8080}]},\"rules\":[{\"name\":"
		"\"ssn\",\"fields\":[\"$..ssn\"],\"action\":{\"type\":\"mask\",\"keepLast\":4}}]}"
		"}"),
	   "a policy resource in block and flow styles");
	ok(same("{\"a\": [true, 1, \"x\"], \"b\": {\"c\": null}}",
		"{\"a\":[true,1,\"x\"],\"b\":{\"c\":null}}"),
	   "JSON is YAML");
	ok(same("base: &b { server: \"https://k:6443\" }\nuse: *b\n",
		"{\"base\":{\"server\":\"https://k:6443\"},\"use\":{\"server\":\"https://"
		"k:6443\"}}"),
	   "anchors and aliases");
	ok(same("cert: |\n  line one\n  line two\n", "{\"cert\":\"line one\\nline two\\n\"}"),
	   "a literal block keeps its newlines");
	ok(same("- a\n- 2\n", "[\"a\",2]"), "a sequence at the root");
	ok(refused("a: 1\na: 2\n", "2:1: duplicate key \"a\""), "duplicate key refused, located");
	ok(refused("? [a, b]\n: 1\n", "not a scalar"), "a key that is not a scalar refused");
	ok(refused("a: [1, 2\nb: 3\n", "did not find expected"), "syntax error reported");
	ok(refused("a: [1, 2\nb: 3\n", "2:2: "), "... with its line and column");
	ok(refused("", "empty document"), "empty input refused");
	ok(refused("a: &x [*x]\n", ""), "a self-referencing alias does not loop");
	char err[200];
	json_t *v = cli_yaml_load_file("/nonexistent/kubeconfig", err, sizeof(err));
	ok(!v && strstr(err, "/nonexistent/kubeconfig: No such file"), "missing file named");
	return tap_done();
}
