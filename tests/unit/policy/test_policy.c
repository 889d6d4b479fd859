/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Policy documents: every validation error with its exact pointer and message, defaults, the
 * compiled form, hash keys (loaded, never printed), TLS restrictions, ETag, references, sets,
 * and the shipped examples (directory given as argv[1]).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "detect.h"
#include "pbschema.h"
#include "policy.h"
#include "tap.h"

/* Tests write JSON with ' for " (and ` for a literal '), to stay readable. */
static char *q(const char *s)
{
	char *t = strdup(s);
	for (char *c = t; *c; c++)
		*c = *c == '\'' ? '"' : *c == '`' ? '\'' : *c;
	return t;
}

static struct policy *parse(const char *doc, struct policy_errors *errs)
{
	char *t = q(doc);
	struct policy *p = policy_parse(t, strlen(t), "t.json", errs);
	int e = errno;
	free(t);
	errno = e;
	return p;
}

static bool has_error(const struct policy_errors *e, const char *ptr, const char *msg)
{
	for (size_t i = 0; i < e->n; i++) {
		const char *p = e->v[i].pointer;
		if (((!p && !ptr) || (p && ptr && strcmp(p, ptr) == 0)) &&
		    strcmp(e->v[i].message, msg) == 0)
			return true;
	}
	return false;
}

static void dump(const struct policy_errors *e)
{
	for (size_t i = 0; i < e->n; i++)
		printf("#   have %s: %s\n", e->v[i].pointer ? e->v[i].pointer : "(null)",
		       e->v[i].message);
}

static void expect_err(const char *doc, const char *ptr, const char *msg)
{
	struct policy_errors e = {0};
	struct policy *p = parse(doc, &e);
	int err = errno;

	if (!ok(!p && err == EINVAL && has_error(&e, ptr, msg), "%s: %s", ptr, msg))
		dump(&e);
	policy_unref(p);
	policy_errors_free(&e);
}

static struct policy *expect_ok(const char *doc, const char *desc)
{
	struct policy_errors e = {0};
	struct policy *p = parse(doc, &e);

	if (!ok(p && e.n == 0, "compiles: %s", desc))
		dump(&e);
	policy_errors_free(&e);
	return p;
}

#define HDR "'apiVersion':'meshmask.io/v1alpha1','kind':'MaskingPolicy','metadata':{'name':'t'}"
#define RULE_OK "{'name':'r','entities':['US_SSN'],'action':{'type':'redact'}}"
#define HDR_NAMED \
	"'apiVersion':'meshmask.io/v1alpha1','kind':'MaskingPolicy','metadata':{'name':'%s'}"
#define DOC_SPEC(spec) "{" HDR ",'spec':{" spec "}}"
#define DOC_RULES(rules) DOC_SPEC("'rules':[" rules "]")
#define DOC_RULE(body) DOC_RULES("{'name':'r'," body "}")
#define DOC_ACTION(action) DOC_RULE("'entities':['US_SSN'],'action':" action)
#define DOC_SEL(sel) DOC_SPEC("'selector':" sel ",'rules':[" RULE_OK "]")
#define DOC_MD(md)                                                                   \
	"{'apiVersion':'meshmask.io/v1alpha1','kind':'MaskingPolicy','metadata':" md \
	",'spec':{'rules':[" RULE_OK "]}}"

static void test_document(void)
{
	struct policy_errors e = {0};

	expect_err("[]", "", "the document must be a JSON object");
	ok(!parse("{}", &e), "{} is rejected");
	is_int(e.n, 4, "{} reports four missing keys");
	ok(has_error(&e, "/apiVersion", "is required") && has_error(&e, "/kind", "is required") &&
		   has_error(&e, "/metadata", "is required") &&
		   has_error(&e, "/spec", "is required"),
	   "each missing top-level key is named");
	policy_errors_free(&e);
	ok(e.v == NULL && e.n == 0, "policy_errors_free resets");

	expect_err("{'apiVersion':'v1','kind':'MaskingPolicy','metadata':{'name':'t'},'spec':{}}",
		   "/apiVersion", "must be \"meshmask.io/v1alpha1\"");
	expect_err("{'apiVersion':1}", "/apiVersion", "must be a string");
	expect_err("{'kind':'Policy'}", "/kind", "must be \"MaskingPolicy\"");
	expect_err("{'status':{}}", "/status", "unknown key");
	expect_err("{'a/b~c':1}", "/a~1b~0c", "unknown key");

	/* A pointer longer than any preset buffer. */
	char doc[1200], key[201], ptr[520];
	memset(key, 'k', 200);
	key[200] = '\0';
	snprintf(doc, sizeof(doc),
		 DOC_SPEC("'rules':[{'name':'r','entities':['US_SSN'],"
			  "'action':{'type':'redact','%s/%s':1}}]"),
		 key, key);
	snprintf(ptr, sizeof(ptr), "/spec/rules/0/action/%s~1%s", key, key);
	expect_err(doc, ptr, "unknown key");
	expect_err(DOC_MD("{'name':'t','labels':{'':'x'}}"), "/metadata/labels/",
		   "keys must not be empty");
}

static void test_metadata(void)
{
	const char *dns = "must be a DNS-1123 label: at most 63 lower-case letters, digits and "
			  "'-', starting and ending with a letter or digit";

	expect_err(DOC_MD("[]"), "/metadata", "must be an object");
	expect_err(DOC_MD("{}"), "/metadata/name", "is required");
	expect_err(DOC_MD("{'name':5}"), "/metadata/name", "must be a string");
	expect_err(DOC_MD("{'name':'Bad_Name'}"), "/metadata/name", dns);
	expect_err(DOC_MD("{'name':'-a'}"), "/metadata/name", dns);
	expect_err(DOC_MD("{'name':'a-'}"), "/metadata/name", dns);
	expect_err(DOC_MD("{'name':''}"), "/metadata/name", dns);
	expect_err(DOC_MD("{'name':'"
			  "a234567890123456789012345678901234567890123456789012345678901234'}"),
		   "/metadata/name", dns);
	struct policy *p = expect_ok(
		DOC_MD("{'name':'a23456789012345678901234567890123456789012345678901234567890123',"
		       "'namespace':'prod','labels':{'team':'x'},'annotations':{'a/b':'c'}}"),
		"63-character name, namespace, labels, annotations");
	if (p)
		is_int(strlen(p->name), 63, "name kept");
	policy_unref(p);
	expect_err(DOC_MD("{'name':'t','namespace':'Prod'}"), "/metadata/namespace", dns);
	expect_err(DOC_MD("{'name':'t','labels':{'a':1}}"), "/metadata/labels/a",
		   "must be a string");
	expect_err(DOC_MD("{'name':'t','annotations':'x'}"), "/metadata/annotations",
		   "must be an object");
	expect_err(DOC_MD("{'name':'t','uid':'x'}"), "/metadata/uid", "unknown key");
}

static void test_spec(void)
{
	expect_err("{" HDR ",'spec':[]}", "/spec", "must be an object");
	expect_err(DOC_SPEC("'rules':[" RULE_OK "],'rulez':[]"), "/spec/rulez", "unknown key");
	expect_err(DOC_SPEC("'mode':'enforce'"), "/spec/rules", "is required");
	expect_err(DOC_SPEC("'rules':[]"), "/spec/rules", "must not be empty");
	expect_err(DOC_SPEC("'rules':{}"), "/spec/rules", "must be an array");
	expect_err(DOC_SPEC("'mode':'strict','rules':[" RULE_OK "]"), "/spec/mode",
		   "must be one of \"enforce\", \"observe\"");
	expect_err(DOC_SPEC("'mode':1,'rules':[" RULE_OK "]"), "/spec/mode",
		   "must be one of \"enforce\", \"observe\"");
	expect_err(DOC_SPEC("'onError':'ignore','rules':[" RULE_OK "]"), "/spec/onError",
		   "must be one of \"fallback\", \"block\", \"pass\"");
	expect_err(DOC_SPEC("'failureMode':'half','rules':[" RULE_OK "]"), "/spec/failureMode",
		   "must be one of \"closed\", \"open\"");
	expect_err(DOC_SPEC("'tunnels':'allow','rules':[" RULE_OK "]"), "/spec/tunnels",
		   "must be one of \"block\", \"pass\"");
	expect_err(DOC_SPEC("'tunnels':true,'rules':[" RULE_OK "]"), "/spec/tunnels",
		   "must be one of \"block\", \"pass\"");
	expect_err(DOC_SPEC("'existingConnections':'drop','rules':[" RULE_OK "]"),
		   "/spec/existingConnections", "must be one of \"reset\", \"keep\"");
	expect_err(DOC_SPEC("'existingConnections':1,'rules':[" RULE_OK "]"),
		   "/spec/existingConnections", "must be one of \"reset\", \"keep\"");
	expect_err(DOC_SPEC("'tls':{'enforce':'on'},'rules':[" RULE_OK "]"), "/spec/tls/enforce",
		   "must be one of \"off\", \"inplace\", \"stop-rewrite\"");
	expect_err(DOC_SPEC("'tls':{'x':1},'rules':[" RULE_OK "]"), "/spec/tls/x", "unknown key");
	expect_err(DOC_SPEC("'tls':'off','rules':[" RULE_OK "]"), "/spec/tls", "must be an object");
	expect_err(DOC_SPEC("'directions':[],'rules':[" RULE_OK "]"), "/spec/directions",
		   "must not be empty");
	expect_err(DOC_SPEC("'directions':'response','rules':[" RULE_OK "]"), "/spec/directions",
		   "must be an array");
	expect_err(DOC_SPEC("'directions':['both'],'rules':[" RULE_OK "]"), "/spec/directions/0",
		   "must be one of \"request\", \"response\"");
	expect_err(DOC_SPEC("'directions':['response','response'],'rules':[" RULE_OK "]"),
		   "/spec/directions/1", "duplicate direction \"response\"");

	struct policy *p =
		expect_ok(DOC_SPEC("'mode':'observe','directions':['request','response'],"
				   "'onError':'block','failureMode':'open',"
				   "'tls':{'enforce':'off'},'rules':[" RULE_OK "]"),
			  "every spec enum set");
	if (p) {
		is_int(p->mode, POLICY_MODE_OBSERVE, "mode observe");
		is_int(p->directions, POLICY_DIR_REQUEST | POLICY_DIR_RESPONSE, "both directions");
		is_int(p->on_error, POLICY_ONERR_BLOCK, "onError block");
		is_int(p->failure_mode, POLICY_FAIL_OPEN, "failureMode open");
		is_str(policy_mode_name(p->mode), "observe", "policy_mode_name");
		is_int(p->tunnels, POLICY_TUNNELS_PASS, "observe: tunnels pass by default");
		is_int(p->existing, POLICY_EXISTING_KEEP, "observe: existingConnections keep");
	}
	policy_unref(p);
	p = expect_ok(DOC_SPEC("'mode':'observe','tunnels':'block','rules':[" RULE_OK "]"),
		      "observe with tunnels block");
	if (p)
		is_int(p->tunnels, POLICY_TUNNELS_BLOCK, "tunnels block as written");
	policy_unref(p);
	p = expect_ok(DOC_SPEC("'existingConnections':'keep','rules':[" RULE_OK "]"),
		      "existingConnections keep");
	if (p)
		is_int(p->existing, POLICY_EXISTING_KEEP, "existingConnections keep as written");
	policy_unref(p);
	p = expect_ok(DOC_SPEC("'tunnels':'pass','rules':[" RULE_OK "]"), "tunnels pass");
	if (p)
		is_int(p->tunnels, POLICY_TUNNELS_PASS, "tunnels pass as written");
	policy_unref(p);
	p = expect_ok(DOC_SPEC("'directions':['request'],'onError':'pass','rules':[" RULE_OK "]"),
		      "request only");
	if (p) {
		is_int(p->directions, POLICY_DIR_REQUEST, "request direction only");
		is_int(p->on_error, POLICY_ONERR_PASS, "onError pass");
	}
	policy_unref(p);
}

static void test_selector(void)
{
	const char *dst0 = "/spec/selector/destinations/0";
	const char *port_msg = "must be an integer from 1 to 65535";
	const char *cidr_msg = "must be an IP address or prefix such as 10.0.0.0/8 or fd00::/8";

	expect_err(DOC_SEL("[]"), "/spec/selector", "must be an object");
	expect_err(DOC_SEL("{'ports':[]}"), "/spec/selector/ports", "unknown key");
	expect_err(DOC_SEL("{'destinations':[]}"), "/spec/selector/destinations",
		   "must not be empty");
	expect_err(DOC_SEL("{'destinations':[1]}"), dst0, "must be an object");
	expect_err(DOC_SEL("{'destinations':[{}]}"), dst0, "must set port, cidr or both");
	expect_err(DOC_SEL("{'destinations':[{'port':80,'host':'x'}]}"),
		   "/spec/selector/destinations/0/host", "unknown key");
	expect_err(DOC_SEL("{'destinations':[{'port':0}]}"), "/spec/selector/destinations/0/port",
		   port_msg);
	expect_err(DOC_SEL("{'destinations':[{'port':65536}]}"),
		   "/spec/selector/destinations/0/port", port_msg);
	expect_err(DOC_SEL("{'destinations':[{'port':'80'}]}"),
		   "/spec/selector/destinations/0/port", port_msg);
	expect_err(DOC_SEL("{'destinations':[{'port':80.5}]}"),
		   "/spec/selector/destinations/0/port", port_msg);
	expect_err(DOC_SEL("{'destinations':[{'port':1},{'cidr':'foo'}]}"),
		   "/spec/selector/destinations/1/cidr", cidr_msg);
	expect_err(DOC_SEL("{'destinations':[{'cidr':''}]}"), "/spec/selector/destinations/0/cidr",
		   cidr_msg);
	expect_err(DOC_SEL("{'destinations':[{'cidr':'10.0.0.0/33'}]}"),
		   "/spec/selector/destinations/0/cidr",
		   "prefix length must be at most 32 for an IPv4 address");
	expect_err(DOC_SEL("{'destinations':[{'cidr':'fd00::/129'}]}"),
		   "/spec/selector/destinations/0/cidr",
		   "prefix length must be at most 128 for an IPv6 address");
	expect_err(DOC_SEL("{'destinations':[{'cidr':'10.0.0.0/'}]}"),
		   "/spec/selector/destinations/0/cidr", "prefix length must be a decimal number");
	expect_err(DOC_SEL("{'destinations':[{'cidr':'10.0.0.0/08'}]}"),
		   "/spec/selector/destinations/0/cidr", "prefix length must be a decimal number");
	expect_err(DOC_SEL("{'destinations':[{'cidr':'10.0.0.0/-1'}]}"),
		   "/spec/selector/destinations/0/cidr", "prefix length must be a decimal number");
	expect_err(DOC_SEL("{'destinations':[{'cidr':5}]}"), "/spec/selector/destinations/0/cidr",
		   "must be a string");

	const char *src0 = "/spec/selector/sources/0";
	expect_err(DOC_SEL("{'sources':{}}"), "/spec/selector/sources", "must be an array");
	expect_err(DOC_SEL("{'sources':[{}]}"), src0,
		   "must set at least one of cgroup, namespace, serviceAccount, labels");
	expect_err(DOC_SEL("{'sources':['x']}"), src0, "must be an object");
	expect_err(DOC_SEL("{'sources':[{'cgroup':''}]}"), "/spec/selector/sources/0/cgroup",
		   "must not be empty");
	expect_err(DOC_SEL("{'sources':[{'namespace':'Bad'}]}"),
		   "/spec/selector/sources/0/namespace",
		   "must be a DNS-1123 label (a Kubernetes namespace)");
	expect_err(DOC_SEL("{'sources':[{'serviceAccount':'a_b'}]}"),
		   "/spec/selector/sources/0/serviceAccount",
		   "must be a DNS-1123 subdomain (a Kubernetes service account name)");
	expect_err(DOC_SEL("{'sources':[{'labels':{}}]}"), "/spec/selector/sources/0/labels",
		   "must not be empty");
	expect_err(DOC_SEL("{'sources':[{'labels':{'app':1}}]}"),
		   "/spec/selector/sources/0/labels/app", "must be a string");
	expect_err(DOC_SEL("{'sources':[{'labels':{'':'x'}}]}"), "/spec/selector/sources/0/labels/",
		   "label keys must not be empty");
	expect_err(DOC_SPEC("'exempt':[{'pod':'x'}],'rules':[" RULE_OK "]"), "/spec/exempt/0/pod",
		   "unknown key");
	expect_err(DOC_SPEC("'exempt':[{'pod':'x'}],'rules':[" RULE_OK "]"), "/spec/exempt/0",
		   "must set at least one of cgroup, namespace, serviceAccount, labels");
	expect_err(DOC_SPEC("'exempt':'x','rules':[" RULE_OK "]"), "/spec/exempt",
		   "must be an array");

	struct policy *p = expect_ok(
		DOC_SPEC("'selector':{'destinations':[{'port':8080},{'cidr':'10.1.2.3/8'},"
			 "{'port':443,'cidr':'fd00::1/8'},{'cidr':'192.168.1.7'}],"
			 "'sources':[{'cgroup':'/kubepods*','namespace':'shop',"
			 "'serviceAccount':'web.front','labels':{'app':'web','tier':'fe'}}]},"
			 "'exempt':[{'cgroup':'/kubepods*/pod-fraud-*'}],'rules':[" RULE_OK "]"),
		"full selector");
	if (p) {
		static const unsigned char v4[16] = {10};
		static const unsigned char v6[16] = {0xfd};
		static const unsigned char host[16] = {192, 168, 1, 7};
		is_int(p->n_dests, 4, "four destinations");
		is_int(p->dests[0].port, 8080, "port only");
		is_int(p->dests[0].family, 0, "port only: any address");
		is_int(p->dests[1].port, 0, "cidr only: any port");
		is_int(p->dests[1].family, AF_INET, "IPv4 prefix");
		is_int(p->dests[1].prefix_len, 8, "/8");
		ok(memcmp(p->dests[1].addr, v4, 16) == 0, "host bits cleared: 10.0.0.0");
		is_int(p->dests[2].port, 443, "port and cidr");
		is_int(p->dests[2].family, AF_INET6, "IPv6 prefix");
		ok(memcmp(p->dests[2].addr, v6, 16) == 0, "host bits cleared: fd00::");
		is_int(p->dests[3].prefix_len, 32, "plain IPv4 address is a /32");
		ok(memcmp(p->dests[3].addr, host, 16) == 0, "address kept");
		is_int(p->n_sources, 1, "one source");
		is_str(p->sources[0].cgroup, "/kubepods*", "cgroup glob");
		is_str(p->sources[0].namespace_, "shop", "namespace");
		is_str(p->sources[0].service_account, "web.front", "service account");
		is_int(p->sources[0].n_labels, 2, "two labels");
		is_str(p->sources[0].label_keys[1], "tier", "label key");
		is_str(p->sources[0].label_values[1], "fe", "label value");
		is_int(p->n_exempt, 1, "one exemption");
		is_str(p->exempt[0].cgroup, "/kubepods*/pod-fraud-*", "exempt cgroup");
	}
	policy_unref(p);
	p = expect_ok(DOC_SEL("{'destinations':[{'cidr':'::1'}]}"), "plain IPv6 address");
	if (p)
		is_int(p->dests[0].prefix_len, 128, "plain IPv6 address is a /128");
	policy_unref(p);
}

static const char *valid_entities(void)
{
	return "US_SSN, CREDIT_CARD, EMAIL_ADDRESS, PHONE_NUMBER, IBAN_CODE, IP_ADDRESS, JWT, "
	       "AWS_ACCESS_KEY_ID";
}

static void test_rules(void)
{
	char msg[512];

	expect_err(DOC_RULES("1"), "/spec/rules/0", "must be an object");
	expect_err(DOC_RULES("{'entities':['US_SSN'],'action':{'type':'redact'}}"),
		   "/spec/rules/0/name", "is required");
	expect_err(DOC_RULES("{'name':'a b','entities':['US_SSN'],'action':{'type':'redact'}}"),
		   "/spec/rules/0/name", "must be 1 to 63 of A-Z a-z 0-9 _ . -");
	expect_err(DOC_RULES("{'name':'','entities':['US_SSN'],'action':{'type':'redact'}}"),
		   "/spec/rules/0/name", "must be 1 to 63 of A-Z a-z 0-9 _ . -");
	expect_err(DOC_RULES(RULE_OK "," RULE_OK), "/spec/rules/1/name",
		   "duplicate rule name \"r\" (first used by /spec/rules/0)");
	expect_err(DOC_RULE("'action':{'type':'redact'}"), "/spec/rules/0",
		   "must set at least one of fields, entities, headers");
	expect_err(DOC_RULE("'field':['a'],'action':{'type':'redact'}"), "/spec/rules/0/field",
		   "unknown key");
	expect_err(DOC_RULE("'fields':[],'action':{'type':'redact'}"), "/spec/rules/0/fields",
		   "must not be empty");
	expect_err(DOC_RULE("'fields':'ssn','action':{'type':'redact'}"), "/spec/rules/0/fields",
		   "must be an array");
	expect_err(DOC_RULE("'fields':[1],'action':{'type':'redact'}"), "/spec/rules/0/fields/0",
		   "must be a string");
	expect_err(DOC_RULE("'fields':['a',''],'action':{'type':'redact'}"),
		   "/spec/rules/0/fields/1", "must not be empty");
	expect_err(
		DOC_RULE("'fields':['$.a['],'action':{'type':'redact'}"), "/spec/rules/0/fields/0",
		"invalid path at byte 4: unterminated '[': expected an index, '*' or a quoted key");
	/* A bare path's offsets count in the text as written, not in the implied "$..". */
	expect_err(
		DOC_RULE("'fields':['a['],'action':{'type':'redact'}"), "/spec/rules/0/fields/0",
		"invalid path at byte 2: unterminated '[': expected an index, '*' or a quoted key");
	expect_err(DOC_RULE("'fields':['$.a','$.a'],'action':{'type':'redact'}"),
		   "/spec/rules/0/fields/1", "duplicate field \"$.a\"");
	expect_err(DOC_RULE("'entities':[],'action':{'type':'redact'}"), "/spec/rules/0/entities",
		   "must not be empty");
	snprintf(msg, sizeof(msg), "unknown entity \"SSN\" (valid: %s)", valid_entities());
	expect_err(DOC_RULE("'entities':['US_SSN','SSN'],'action':{'type':'redact'}"),
		   "/spec/rules/0/entities/1", msg);
	snprintf(msg, sizeof(msg), "unknown entity \"credit_card\" (valid: %s)", valid_entities());
	expect_err(DOC_RULE("'entities':['credit_card'],'action':{'type':'redact'}"),
		   "/spec/rules/0/entities/0", msg);
	expect_err(DOC_RULE("'entities':[7],'action':{'type':'redact'}"),
		   "/spec/rules/0/entities/0", "must be a string");
	expect_err(DOC_RULE("'entities':['US_SSN','US_SSN'],'action':{'type':'redact'}"),
		   "/spec/rules/0/entities/1", "duplicate entity \"US_SSN\"");
	expect_err(DOC_RULE("'headers':[],'action':{'type':'redact'}"), "/spec/rules/0/headers",
		   "must not be empty");
	expect_err(DOC_RULE("'headers':[1],'action':{'type':'redact'}"), "/spec/rules/0/headers/0",
		   "must be a string");
	expect_err(DOC_RULE("'headers':['Bad Header'],'action':{'type':'redact'}"),
		   "/spec/rules/0/headers/0",
		   "must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)");
	expect_err(DOC_RULE("'headers':['X-A','x-a'],'action':{'type':'redact'}"),
		   "/spec/rules/0/headers/1", "duplicate header \"x-a\"");

	struct policy *p = expect_ok(
		DOC_RULES("{'name':'ssn','fields':['$..ssn','user.tax_id','$.items[*][`k v`]'],"
			  "'action':{'type':'mask','keepLast':4,'char':'X'}},"
			  "{'name':'in-ssn','fields':['notes'],'entities':['US_SSN'],"
			  "'action':{'type':'mask'}},"
			  "{'name':'cards','entities':['CREDIT_CARD','IBAN_CODE'],"
			  "'action':{'type':'replace','value':'[card]'}},"
			  "{'name':'auth','headers':['Authorization','X-Api-Key'],"
			  "'action':{'type':'redact'}},"
			  "{'name':'hdr.email','headers':['From'],'entities':['EMAIL_ADDRESS'],"
			  "'action':{'type':'replace'}},"
			  "{'name':'phone_1','entities':['PHONE_NUMBER','CREDIT_CARD'],"
			  "'action':{'type':'mask','keepFirst':2,'char':'\\u00e9'}}"),
		"a rule of each kind");
	if (p) {
		is_int(p->n_rules, 6, "six rules");
		const struct policy_rule *r = &p->rules[0];
		is_str(r->name, "ssn", "rule name");
		is_int(r->index, 0, "rule index");
		is_int(r->n_fields, 3, "three fields");
		is_str(r->fields[1].text, "user.tax_id", "bare path kept as written");
		struct jpath_elem st[] = {{.key = "x", .key_len = 1},
					  {.key = "user", .key_len = 4},
					  {.key = "tax_id", .key_len = 6}};
		ok(jpath_match(&r->fields[1], st, 3), "bare path matches at any depth");
		ok(!jpath_match(&r->fields[0], st, 3), "$..ssn does not match user.tax_id");
		struct jpath_elem st2[] = {
			{.key = "items", .key_len = 5}, {.index = 3}, {.key = "k v", .key_len = 3}};
		ok(jpath_match(&r->fields[2], st2, 3), "quoted key path");
		is_int(r->entities, 0, "field rule without entities");
		is_int(r->action.type, POLICY_ACTION_MASK, "mask");
		is_int(r->action.keep_last, 4, "keepLast");
		is_int(r->action.keep_first, 0, "keepFirst default");
		is_str(r->action.mask_char, "X", "char");
		r = &p->rules[1];
		is_int(r->entities, MM_ENT_BIT(MM_ENT_US_SSN), "entities inside fields");
		is_str(r->action.mask_char, "*", "default mask char");
		r = &p->rules[2];
		is_int(r->entities, MM_ENT_BIT(MM_ENT_CREDIT_CARD) | MM_ENT_BIT(MM_ENT_IBAN_CODE),
		       "entity bits");
		is_str(r->action.value, "[card]", "replace value");
		is_str(policy_action_name(r->action.type), "replace", "policy_action_name");
		r = &p->rules[3];
		is_int(r->n_headers, 2, "two headers");
		is_str(r->headers[0], "authorization", "header lower-cased");
		is_str(r->headers[1], "x-api-key", "header lower-cased");
		is_int(r->action.type, POLICY_ACTION_REDACT, "redact");
		r = &p->rules[4];
		ok(r->action.value == NULL, "replace without value: NULL (engine default)");
		r = &p->rules[5];
		is_str(r->action.mask_char, "\xc3\xa9", "multi-byte mask char");
		is_int(r->action.keep_first, 2, "keepFirst");
		is_int(p->body_entities,
		       MM_ENT_BIT(MM_ENT_CREDIT_CARD) | MM_ENT_BIT(MM_ENT_IBAN_CODE) |
			       MM_ENT_BIT(MM_ENT_PHONE_NUMBER),
		       "body_entities: rules without fields or headers only");
	}
	policy_unref(p);
}

static void test_actions(void)
{
	const char *keep = "must be an integer from 0 to 64";

	expect_err(DOC_RULE("'entities':['US_SSN']"), "/spec/rules/0/action", "is required");
	expect_err(DOC_ACTION("'mask'"), "/spec/rules/0/action", "must be an object");
	expect_err(DOC_ACTION("{}"), "/spec/rules/0/action/type", "is required");
	expect_err(DOC_ACTION("{'type':'blur'}"), "/spec/rules/0/action/type",
		   "must be one of \"mask\", \"replace\", \"redact\", \"hash\", \"tokenize\", "
		   "\"detokenize\"");
	expect_err(DOC_ACTION("{'type':'mask','foo':1}"), "/spec/rules/0/action/foo",
		   "unknown key");
	expect_err(DOC_ACTION("{'type':'blur','foo':1}"), "/spec/rules/0/action/foo",
		   "unknown key");
	expect_err(DOC_ACTION("{'type':'mask','keepLast':-1}"), "/spec/rules/0/action/keepLast",
		   keep);
	expect_err(DOC_ACTION("{'type':'mask','keepFirst':65}"), "/spec/rules/0/action/keepFirst",
		   keep);
	expect_err(DOC_ACTION("{'type':'mask','keepLast':1.5}"), "/spec/rules/0/action/keepLast",
		   keep);
	expect_err(DOC_ACTION("{'type':'mask','keepLast':'4'}"), "/spec/rules/0/action/keepLast",
		   keep);
	expect_err(DOC_ACTION("{'type':'mask','char':''}"), "/spec/rules/0/action/char",
		   "must be exactly one character");
	expect_err(DOC_ACTION("{'type':'mask','char':'ab'}"), "/spec/rules/0/action/char",
		   "must be exactly one character");
	expect_err(DOC_ACTION("{'type':'mask','char':'\\u00e9x'}"), "/spec/rules/0/action/char",
		   "must be exactly one character");
	expect_err(DOC_ACTION("{'type':'mask','char':'\\n'}"), "/spec/rules/0/action/char",
		   "must be a printable character");
	expect_err(DOC_ACTION("{'type':'mask','char':1}"), "/spec/rules/0/action/char",
		   "must be a string");
	expect_err(DOC_ACTION("{'type':'mask','value':'x'}"), "/spec/rules/0/action/value",
		   "not allowed for action type mask");
	expect_err(DOC_ACTION("{'type':'replace','keepLast':4}"), "/spec/rules/0/action/keepLast",
		   "not allowed for action type replace");
	expect_err(DOC_ACTION("{'type':'redact','char':'#'}"), "/spec/rules/0/action/char",
		   "not allowed for action type redact");
	expect_err(DOC_ACTION("{'type':'hash','keyEnv':'HOME','char':'#'}"),
		   "/spec/rules/0/action/char", "not allowed for action type hash");
	expect_err(DOC_ACTION("{'type':'replace','value':1}"), "/spec/rules/0/action/value",
		   "must be a string");

	char doc[4096], big[1100];
	memset(big, 'v', 1025);
	big[1025] = '\0';
	snprintf(doc, sizeof(doc), DOC_ACTION("{'type':'replace','value':'%s'}"), big);
	expect_err(doc, "/spec/rules/0/action/value", "must be at most 1024 bytes");
	big[1024] = '\0';
	snprintf(doc, sizeof(doc), DOC_ACTION("{'type':'replace','value':'%s'}"), big);
	policy_unref(expect_ok(doc, "1024-byte replacement"));

	expect_err(DOC_ACTION("{'type':'hash'}"), "/spec/rules/0/action",
		   "hash needs a key: set keyFile or keyEnv");
	expect_err(DOC_ACTION("{'type':'hash','keyFile':'/k','keyEnv':'K'}"),
		   "/spec/rules/0/action", "set only one of keyFile and keyEnv");
	expect_err(DOC_ACTION("{'type':'hash','keyEnv':'HOME','length':0}"),
		   "/spec/rules/0/action/length", "must be an integer from 1 to 64");
	expect_err(DOC_ACTION("{'type':'hash','keyEnv':'HOME','length':65}"),
		   "/spec/rules/0/action/length", "must be an integer from 1 to 64");
	memset(big, 'p', 65);
	big[65] = '\0';
	snprintf(doc, sizeof(doc), DOC_ACTION("{'type':'hash','keyEnv':'HOME','prefix':'%s'}"),
		 big);
	expect_err(doc, "/spec/rules/0/action/prefix", "must be at most 64 bytes");
	expect_err(DOC_ACTION("{'type':'hash','keyEnv':'1BAD'}"), "/spec/rules/0/action/keyEnv",
		   "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
	expect_err(DOC_ACTION("{'type':'hash','keyEnv':7}"), "/spec/rules/0/action/keyEnv",
		   "must be a string");
	expect_err(DOC_ACTION("{'type':'hash','keyFile':''}"), "/spec/rules/0/action/keyFile",
		   "must not be empty");
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		printf("# cannot write %s\n", path);
	if (fd >= 0)
		close(fd);
}

/* No error message, printed or stored, may contain any part of a key. */
static void expect_no_secret(const struct policy_errors *e, const char *secret)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	policy_errors_print(f, "t.json", e);
	fclose(f);
	ok(len > 0 && !memmem(out, len, secret, strlen(secret)), "key absent from printed errors");
	free(out);
}

/* The one error of a confined key, for a doc naming `key` (keyFile or keyEnv). */
static char *confined_error(const char *field, const char *key)
{
	char doc[2048];
	snprintf(doc, sizeof(doc), DOC_ACTION("{'type':'hash','%s':'%s'}"), field, key);
	struct policy_errors e = {0};
	struct policy *p = parse(doc, &e);
	char *msg = !p && e.n == 1 ? strdup(e.v[0].message) : NULL;
	if (!msg)
		dump(&e);
	policy_unref(p);
	policy_errors_free(&e);
	return msg;
}

/*
 * policy_confine_keys (the agent's --key-dir): keyFile inside the key directory only, keyEnv
 * MESHMASK_* only, and one error text for every way a named key is unavailable (no existence
 * oracle through PUT or :validate).
 */
static void test_confined_keys(const char *dir)
{
	char kd[512], path[600], doc[2048];
	snprintf(kd, sizeof(kd), "%s/keys", dir);
	mkdir(kd, 0700);
	snprintf(path, sizeof(path), "%s/good", kd);
	write_file(path, "confined-key-bytes", 18);
	snprintf(path, sizeof(path), "%s/empty", kd);
	write_file(path, "", 0);
	snprintf(path, sizeof(path), "%s/sub", kd);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/escape", kd);
	symlink("/etc/hostname", path);
	snprintf(path, sizeof(path), "%s/outside", dir);
	write_file(path, "outside-key", 11);
	is_int(policy_confine_keys(kd, "MESHMASK_"), 0, "keys confined to %s", kd);

	struct policy *p = expect_ok(DOC_ACTION("{'type':'hash','keyFile':'good'}"),
				     "keyFile relative to the key directory");
	ok(p && p->rules[0].action.hash_key_len == 18, "the key read from the key directory");
	policy_unref(p);
	snprintf(doc, sizeof(doc), DOC_ACTION("{'type':'hash','keyFile':'%s/good'}"), kd);
	policy_unref(expect_ok(doc, "keyFile absolute under the key directory"));

	char want[700];
	snprintf(want, sizeof(want), "must name a file in the key directory %s", kd);
	snprintf(doc, sizeof(doc), DOC_ACTION("{'type':'hash','keyFile':'%s/outside'}"), dir);
	expect_err(doc, "/spec/rules/0/action/keyFile", want);
	expect_err(DOC_ACTION("{'type':'hash','keyFile':'/etc/passwd'}"),
		   "/spec/rules/0/action/keyFile", want);
	expect_err(DOC_ACTION("{'type':'hash','keyFile':'../outside'}"),
		   "/spec/rules/0/action/keyFile", want);
	expect_err(DOC_ACTION("{'type':'hash','keyFile':'sub/../../outside'}"),
		   "/spec/rules/0/action/keyFile", want);

	/* Missing, a directory, empty, a symlink out: one text, only the name differs. */
	const char *names[] = {"missing", "sub", "empty", "escape"};
	char *first = NULL;
	bool same = true;
	for (size_t i = 0; i < 4; i++) {
		char *m = confined_error("keyFile", names[i]);
		char *at = m ? strstr(m, names[i]) : NULL;
		if (!at) {
			same = false;
			free(m);
			continue;
		}
		memmove(at, at + strlen(names[i]), strlen(at + strlen(names[i])) + 1);
		if (!first)
			first = m;
		else {
			same &= !strcmp(first, m);
			free(m);
		}
	}
	ok(first && same, "keyFile: missing, directory, empty and escaping symlink: one error text");
	free(first);

	expect_err(DOC_ACTION("{'type':'hash','keyEnv':'HOME'}"), "/spec/rules/0/action/keyEnv",
		   "must name a variable MESHMASK_*");
	setenv("MESHMASK_TEST_EMPTY", "", 1);
	unsetenv("MESHMASK_TEST_UNSET");
	char *m1 = confined_error("keyEnv", "MESHMASK_TEST_EMPTY");
	char *m2 = confined_error("keyEnv", "MESHMASK_TEST_UNSET");
	ok(m1 && m2 && !strcmp(strstr(m1, " (") ? strstr(m1, " (") : "x",
			       strstr(m2, " (") ? strstr(m2, " (") : "y"),
	   "keyEnv: unset and empty: one error text (%s)", m1 ? m1 : "?");
	free(m1);
	free(m2);
	setenv("MESHMASK_TEST_KEY", "env-key-bytes", 1);
	policy_unref(expect_ok(DOC_ACTION("{'type':'hash','keyEnv':'MESHMASK_TEST_KEY'}"),
			       "keyEnv MESHMASK_*"));
	is_int(policy_confine_keys(NULL, NULL), 0, "keys unconfined again");
}

static void test_keys(const char *dir)
{
	char path[512], doc[2048];
	struct policy_errors e = {0};
	struct policy *p;

	setenv("MM_TEST_KEY", "s3cr3t-from-env", 1);
	p = expect_ok(DOC_ACTION("{'type':'hash','keyEnv':'MM_TEST_KEY','length':8,'prefix':'h:'}"),
		      "hash with keyEnv");
	if (p) {
		const struct policy_action *a = &p->rules[0].action;
		is_int(a->hash_key_len, 15, "env key length");
		ok(a->hash_key && memcmp(a->hash_key, "s3cr3t-from-env", 15) == 0, "env key bytes");
		is_int(a->hash_len, 8, "length");
		is_str(a->hash_prefix, "h:", "prefix");
		ok(!strstr(p->json, "s3cr3t"), "key not in the canonical JSON");
	}
	policy_unref(p);
	p = expect_ok(DOC_ACTION("{'type':'hash','keyEnv':'MM_TEST_KEY'}"), "hash defaults");
	if (p) {
		is_int(p->rules[0].action.hash_len, 16, "default hash length 16");
		ok(p->rules[0].action.hash_prefix == NULL, "no prefix by default");
	}
	policy_unref(p);
	unsetenv("MM_TEST_UNSET_KEY");
	expect_err(DOC_ACTION("{'type':'hash','keyEnv':'MM_TEST_UNSET_KEY'}"),
		   "/spec/rules/0/action/keyEnv",
		   "environment variable MM_TEST_UNSET_KEY is not set");
	setenv("MM_TEST_EMPTY_KEY", "", 1);
	expect_err(DOC_ACTION("{'type':'hash','keyEnv':'MM_TEST_EMPTY_KEY'}"),
		   "/spec/rules/0/action/keyEnv",
		   "environment variable MM_TEST_EMPTY_KEY is empty");
	{
		char huge[5000];
		memset(huge, 'Z', sizeof(huge) - 1);
		huge[sizeof(huge) - 1] = '\0';
		memcpy(huge, "HUGESECRET", 10);
		setenv("MM_TEST_HUGE_KEY", huge, 1);
		expect_err(DOC_ACTION("{'type':'hash','keyEnv':'MM_TEST_HUGE_KEY'}"),
			   "/spec/rules/0/action/keyEnv",
			   "environment variable MM_TEST_HUGE_KEY is larger than 4096 bytes");
	}

	/* Key files: trailing newline stripped, size limits, file name named in errors. */
	snprintf(path, sizeof(path), "%s/key-nl", dir);
	write_file(path, "file-secret-1\r\n", 15);
	snprintf(doc, sizeof(doc), DOC_ACTION("{'type':'hash','keyFile':'%s'}"), path);
	p = expect_ok(doc, "hash with keyFile");
	if (p) {
		const struct policy_action *a = &p->rules[0].action;
		is_int(a->hash_key_len, 13, "CRLF stripped from the key file");
		ok(a->hash_key && memcmp(a->hash_key, "file-secret-1", 13) == 0, "file key bytes");
	}
	policy_unref(p);

	char max[4097];
	memset(max, 'k', sizeof(max));
	max[4096] = '\n';
	snprintf(path, sizeof(path), "%s/key-max", dir);
	write_file(path, max, 4097);
	snprintf(doc, sizeof(doc), DOC_ACTION("{'type':'hash','keyFile':'%s'}"), path);
	p = expect_ok(doc, "4096-byte key plus newline");
	if (p)
		is_int(p->rules[0].action.hash_key_len, 4096, "4096-byte key");
	policy_unref(p);

	char too[4097];
	memset(too, 'T', sizeof(too));
	memcpy(too, "BIGFILESECRET", 13);
	snprintf(path, sizeof(path), "%s/key-big", dir);
	write_file(path, too, sizeof(too));
	snprintf(doc, sizeof(doc), DOC_ACTION("{'type':'hash','keyFile':'%s'}"), path);
	char msg[600];
	snprintf(msg, sizeof(msg), "key file \"%s\" is larger than 4096 bytes", path);
	expect_err(doc, "/spec/rules/0/action/keyFile", msg);
	parse(doc, &e);
	expect_no_secret(&e, "BIGFILESECRET");
	policy_errors_free(&e);

	snprintf(path, sizeof(path), "%s/key-empty", dir);
	write_file(path, "\n", 1);
	snprintf(doc, sizeof(doc), DOC_ACTION("{'type':'hash','keyFile':'%s'}"), path);
	snprintf(msg, sizeof(msg), "key file \"%s\" is empty", path);
	expect_err(doc, "/spec/rules/0/action/keyFile", msg);

	snprintf(path, sizeof(path), "%s/no-such-key", dir);
	snprintf(doc, sizeof(doc), DOC_ACTION("{'type':'hash','keyFile':'%s'}"), path);
	snprintf(msg, sizeof(msg), "cannot read key file \"%s\": No such file or directory", path);
	expect_err(doc, "/spec/rules/0/action/keyFile", msg);

	snprintf(doc, sizeof(doc), DOC_ACTION("{'type':'hash','keyFile':'%s'}"), dir);
	snprintf(msg, sizeof(msg), "key file \"%s\" is not a regular file", dir);
	expect_err(doc, "/spec/rules/0/action/keyFile", msg);

	/* A key that loads fine in a policy that fails elsewhere is wiped and never shown. */
	snprintf(path, sizeof(path), "%s/key-nl", dir);
	snprintf(doc, sizeof(doc),
		 DOC_RULES("{'name':'h','entities':['EMAIL_ADDRESS'],"
			   "'action':{'type':'hash','keyFile':'%s','length':99}},"
			   "{'name':'e','entities':['EMAIL_ADDRESS'],"
			   "'action':{'type':'hash','keyEnv':'MM_TEST_KEY','bogus':1}}"),
		 path);
	ok(!parse(doc, &e) && e.n == 2, "two errors beside two loaded keys");
	expect_no_secret(&e, "file-secret");
	expect_no_secret(&e, "s3cr3t");
	policy_errors_free(&e);
	setenv("MM_TEST_HUGE_KEY", "HUGESECRET", 1);
	ok(!parse(DOC_ACTION("{'type':'hash','keyEnv':'MM_TEST_HUGE_KEY','length':0}"), &e),
	   "env key with a bad length");
	expect_no_secret(&e, "HUGESECRET");
	policy_errors_free(&e);
}

#define TOK_KEY "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define DOC_TOK(ents, action) DOC_RULE("'entities':[" ents "],'action':" action)
#define DOC_DETOK(ents, action)                                                    \
	DOC_SPEC("'directions':['request'],'rules':[{'name':'r','entities':[" ents \
		 "],'action':" action "}]")

/* tokenize / detokenize: every option's errors, the key, FF1's minimum domain, defaults. */
static void test_tokens(const char *dir)
{
	char path[512], doc[2048];
	struct policy_errors e = {0};
	struct policy *p;
	const char *a0 = "/spec/rules/0/action";

	setenv("MM_TEST_TOK", TOK_KEY, 1);
	setenv("MM_TEST_TOK_SHORT", "tokensecret-short", 1);
	p = expect_ok(DOC_TOK("'CREDIT_CARD'", "{'type':'tokenize','keyEnv':'MM_TEST_TOK',"
					       "'keepFirst':6,'keepLast':4,'luhn':true}"),
		      "tokenize cards keepFirst 6 keepLast 4 luhn");
	if (p) {
		const struct policy_action *a = &p->rules[0].action;
		is_int(a->type, POLICY_ACTION_TOKENIZE, "type tokenize");
		is_str(policy_action_name(a->type), "tokenize", "its name");
		is_int(a->hash_key_len, 32, "64 hex digits are a 32-byte key");
		ok(a->hash_key && a->hash_key[0] == 0x00 && a->hash_key[1] == 0x11 &&
			   a->hash_key[31] == 0xff,
		   "hex decoded");
		ok(a->luhn && a->keep_domain, "luhn set, keepDomain true by default");
		is_str(a->token_space, "default", "tokenSpace defaults to default");
		is_int(a->keep_first, 6, "keepFirst");
		is_int(a->keep_last, 4, "keepLast");
	}
	policy_unref(p);

	snprintf(path, sizeof(path), "%s/tok-raw", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ok(fd >= 0 && write(fd, "0123456789abcdefTOKENSECRETxyz!!", 32) == 32, "raw key file");
	close(fd);
	snprintf(doc, sizeof(doc),
		 DOC_DETOK("'US_SSN','EMAIL_ADDRESS'",
			   "{'type':'detokenize','keyFile':'%s','tokenSpace':'pii.v2',"
			   "'keepDomain':false}"),
		 path);
	p = expect_ok(doc, "detokenize with a raw 32-byte key file, requests only");
	if (p) {
		const struct policy_action *a = &p->rules[0].action;
		is_int(a->type, POLICY_ACTION_DETOKENIZE, "type detokenize");
		is_int(a->hash_key_len, 32, "raw key kept as is");
		is_str(a->token_space, "pii.v2", "tokenSpace");
		ok(!a->keep_domain && !a->luhn, "keepDomain false, luhn false by default");
	}
	policy_unref(p);
	p = expect_ok(
		DOC_RULE("'fields':['$..id'],'action':{'type':'tokenize','keyEnv':'MM_TEST_TOK',"
			 "'keepFirst':60}"),
		"a field rule: no entity length to check");
	policy_unref(p);

	/* Every option. */
	expect_err(DOC_TOK("'US_SSN'", "{'type':'tokenize'}"), a0,
		   "tokenize needs a key: set keyFile or keyEnv");
	expect_err(DOC_DETOK("'US_SSN'", "{'type':'detokenize'}"), a0,
		   "detokenize needs a key: set keyFile or keyEnv");
	expect_err(DOC_TOK("'US_SSN'", "{'type':'tokenize','keyEnv':'MM_TEST_TOK','keyFile':'/k'}"),
		   a0, "set only one of keyFile and keyEnv");
	ok(!parse(DOC_TOK("'US_SSN'", "{'type':'tokenize','keyEnv':'MM_TEST_TOK_SHORT'}"), &e) &&
		   has_error(&e, "/spec/rules/0/action/keyEnv",
			     "must hold an AES-256 key: 32 bytes, or 64 hex digits"),
	   "a key that is not 32 bytes is refused");
	expect_no_secret(&e, "tokensecret");
	policy_errors_free(&e);
	expect_err(DOC_TOK("'US_SSN'", "{'type':'tokenize','keyEnv':'MM_TEST_TOK','luhn':1}"),
		   "/spec/rules/0/action/luhn", "must be true or false");
	expect_err(
		DOC_TOK("'US_SSN'", "{'type':'tokenize','keyEnv':'MM_TEST_TOK','keepDomain':'no'}"),
		"/spec/rules/0/action/keepDomain", "must be true or false");
	expect_err(DOC_TOK("'US_SSN'",
			   "{'type':'tokenize','keyEnv':'MM_TEST_TOK','tokenSpace':'a b'}"),
		   "/spec/rules/0/action/tokenSpace", "must be 1 to 63 of A-Z a-z 0-9 _ . -");
	expect_err(
		DOC_TOK("'US_SSN'", "{'type':'tokenize','keyEnv':'MM_TEST_TOK','tokenSpace':''}"),
		"/spec/rules/0/action/tokenSpace", "must be 1 to 63 of A-Z a-z 0-9 _ . -");
	expect_err(DOC_TOK("'US_SSN'", "{'type':'tokenize','keyEnv':'MM_TEST_TOK','tokenSpace':7}"),
		   "/spec/rules/0/action/tokenSpace", "must be a string");
	expect_err(DOC_TOK("'US_SSN'", "{'type':'tokenize','keyEnv':'MM_TEST_TOK','keepFirst':65}"),
		   "/spec/rules/0/action/keepFirst", "must be an integer from 0 to 64");
	expect_err(DOC_TOK("'US_SSN'", "{'type':'tokenize','keyEnv':'MM_TEST_TOK','keepLast':-1}"),
		   "/spec/rules/0/action/keepLast", "must be an integer from 0 to 64");
	expect_err(DOC_TOK("'US_SSN'", "{'type':'tokenize','keyEnv':'MM_TEST_TOK','char':'#'}"),
		   "/spec/rules/0/action/char", "not allowed for action type tokenize");
	expect_err(DOC_TOK("'US_SSN'", "{'type':'tokenize','keyEnv':'MM_TEST_TOK','length':8}"),
		   "/spec/rules/0/action/length", "not allowed for action type tokenize");
	expect_err(DOC_TOK("'US_SSN'", "{'type':'hash','keyEnv':'MM_TEST_TOK','luhn':true}"),
		   "/spec/rules/0/action/luhn", "not allowed for action type hash");
	expect_err(DOC_TOK("'US_SSN'", "{'type':'mask','tokenSpace':'x'}"),
		   "/spec/rules/0/action/tokenSpace", "not allowed for action type mask");

	/* FF1's minimum domain, against each entity's shortest common form. */
	expect_err(DOC_TOK("'US_SSN'", "{'type':'tokenize','keyEnv':'MM_TEST_TOK','keepLast':4}"),
		   "/spec/rules/0/action/keepLast",
		   "keepFirst 0 and keepLast 4 leave 5 of the 9 digits of a US_SSN to tokenize: "
		   "FF1 needs at least 6 (radix^length >= 1,000,000)");
	expect_err(DOC_TOK("'EMAIL_ADDRESS','CREDIT_CARD'",
			   "{'type':'tokenize','keyEnv':'MM_TEST_TOK','keepFirst':6,'keepLast':5}"),
		   "/spec/rules/0/action/keepLast",
		   "keepFirst 6 and keepLast 5 leave 5 of the 16 digits of a CREDIT_CARD to "
		   "tokenize: FF1 needs at least 6 (radix^length >= 1,000,000)");
	expect_err(DOC_TOK("'PHONE_NUMBER'",
			   "{'type':'tokenize','keyEnv':'MM_TEST_TOK','keepFirst':5}"),
		   "/spec/rules/0/action/keepFirst",
		   "keepFirst 5 and keepLast 0 leave 5 of the 10 digits of a PHONE_NUMBER to "
		   "tokenize: FF1 needs at least 6 (radix^length >= 1,000,000)");
	expect_err(DOC_TOK("'AWS_ACCESS_KEY_ID'",
			   "{'type':'tokenize','keyEnv':'MM_TEST_TOK','keepFirst':17}"),
		   "/spec/rules/0/action/keepFirst",
		   "keepFirst 17 and keepLast 0 leave 3 of the 20 characters of a "
		   "AWS_ACCESS_KEY_ID to tokenize: FF1 needs at least 4 (radix^length >= "
		   "1,000,000)");
	expect_err(DOC_TOK("'US_SSN','IP_ADDRESS'", "{'type':'tokenize','keyEnv':'MM_TEST_TOK'}"),
		   "/spec/rules/0/entities/1",
		   "IP_ADDRESS can be as short as 4 digits: FF1 needs at least 6 (radix^length >= "
		   "1,000,000)");
	p = expect_ok(
		DOC_TOK("'AWS_ACCESS_KEY_ID','IBAN_CODE'",
			"{'type':'tokenize','keyEnv':'MM_TEST_TOK','keepFirst':4,'keepLast':7}"),
		"4 characters left in radix 36 are enough");
	policy_unref(p);

	/* detokenize: requests only, and only entities whose tokens the detectors find. */
	expect_err(DOC_TOK("'US_SSN'", "{'type':'detokenize','keyEnv':'MM_TEST_TOK'}"),
		   "/spec/rules/0/action/type",
		   "detokenize applies to requests only: set spec.directions to [\"request\"]");
	expect_err(DOC_SPEC("'directions':['request','response'],'rules':[{'name':'r','entities':"
			    "['US_SSN'],'action':{'type':'detokenize','keyEnv':'MM_TEST_TOK'}}]"),
		   "/spec/rules/0/action/type",
		   "detokenize applies to requests only: set spec.directions to [\"request\"]");
	expect_err(DOC_DETOK("'CREDIT_CARD'", "{'type':'detokenize','keyEnv':'MM_TEST_TOK',"
					      "'keepFirst':6}"),
		   a0,
		   "detokenize finds CREDIT_CARD tokens only when they are card numbers: set "
		   "luhn: true here and on the tokenize rule");
	expect_err(
		DOC_DETOK("'US_SSN','IBAN_CODE'", "{'type':'detokenize','keyEnv':'MM_TEST_TOK'}"),
		"/spec/rules/0/entities/1",
		"detokenize cannot find IBAN_CODE tokens (a token does not keep what the "
		"detector checks): name the field instead");
	p = expect_ok(DOC_DETOK("'CREDIT_CARD','PHONE_NUMBER'",
				"{'type':'detokenize','keyEnv':'MM_TEST_TOK','luhn':true}"),
		      "detokenize cards (luhn) and phone numbers");
	policy_unref(p);
	expect_err(DOC_SPEC("'tls':{'enforce':'inplace'},'rules':[{'name':'t','entities':"
			    "['US_SSN'],'action':{'type':'tokenize','keyEnv':'MM_TEST_TOK'}}]"),
		   a0, "only length-preserving mask actions can apply when tls.enforce is not off");
	unlink(path);
}

static void test_tls(void)
{
	const char *msg =
		"only length-preserving mask actions can apply when tls.enforce is not off";

	expect_err(DOC_SPEC("'tls':{'enforce':'inplace'},'rules':[" RULE_OK "]"),
		   "/spec/rules/0/action", msg);
	expect_err(
		DOC_SPEC("'tls':{'enforce':'stop-rewrite'},'rules':[{'name':'m',"
			 "'entities':['CREDIT_CARD'],'action':{'type':'mask','char':'\\u2588'}}]"),
		"/spec/rules/0/action", msg);
	expect_err(
		DOC_SPEC("'tls':{'enforce':'inplace'},'rules':[{'name':'m',"
			 "'entities':['EMAIL_ADDRESS'],'action':{'type':'replace','value':'x'}}]"),
		"/spec/rules/0/action", msg);
	struct policy *p =
		expect_ok(DOC_SPEC("'tls':{'enforce':'inplace'},'rules':[{'name':'m',"
				   "'entities':['CREDIT_CARD'],"
				   "'action':{'type':'mask','keepLast':4,'char':'X'}},"
				   "{'name':'n','entities':['US_SSN'],'action':{'type':'mask'}}]"),
			  "tls inplace with one-byte masks");
	if (p)
		is_int(p->tls_enforce, POLICY_TLS_INPLACE, "tls inplace");
	policy_unref(p);
	p = expect_ok(DOC_SPEC("'tls':{'enforce':'stop-rewrite'},'rules':[{'name':'m',"
			       "'entities':['CREDIT_CARD'],'action':{'type':'mask'}}]"),
		      "tls stop-rewrite");
	if (p)
		is_int(p->tls_enforce, POLICY_TLS_STOP_REWRITE, "tls stop-rewrite");
	policy_unref(p);
}

static void test_collect_and_print(void)
{
	struct policy_errors e = {0};
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	ok(!parse(DOC_SPEC("'mode':'x','rulez':1,'rules':[{'name':'r','entities':['US_SSN'],"
			   "'action':{'type':'mask','keepLast':-1}}]"),
		  &e),
	   "three problems");
	is_int(e.n, 3, "all three collected");
	ok(has_error(&e, "/spec/rulez", "unknown key"), "unknown key collected");
	ok(has_error(&e, "/spec/mode", "must be one of \"enforce\", \"observe\""),
	   "mode collected");
	ok(has_error(&e, "/spec/rules/0/action/keepLast", "must be an integer from 0 to 64"),
	   "keepLast collected");
	f = open_memstream(&out, &len);
	policy_errors_print(f, "t.json", &e);
	fclose(f);
	ok(strstr(out, "t.json: /spec/rulez: unknown key\n") != NULL,
	   "printed as origin: ptr: msg");
	free(out);
	policy_errors_free(&e);

	/* Errors accumulate across calls until freed. */
	parse("[]", &e);
	parse("[]", &e);
	is_int(e.n, 2, "errors appended, not replaced");
	f = open_memstream(&out, &len);
	policy_errors_print(f, "x.json", &e);
	fclose(f);
	is_str(out,
	       "x.json: the document must be a JSON object\n"
	       "x.json: the document must be a JSON object\n",
	       "document-level errors print without a pointer");
	free(out);
	policy_errors_free(&e);

	/* Many bad rules: a bounded list, then one line saying so. */
	char *doc = malloc(200 * 64 + 256), *w = doc;
	w += sprintf(w, "{" HDR ",'spec':{'rules':[");
	for (int i = 0; i < 150; i++)
		w += sprintf(w, "%s{'name':'r%d','entities':['NOPE'],'action':{'type':'redact'}}",
			     i ? "," : "", i);
	sprintf(w, "]}}");
	ok(!parse(doc, &e), "150 bad rules rejected");
	is_int(e.n, 101, "100 errors kept plus a summary");
	if (e.n == 101) {
		is_str(e.v[100].message, "too many errors; the rest are not shown", "summary");
		is_str(e.v[99].pointer, "/spec/rules/99/entities/0", "errors in document order");
	}
	policy_errors_free(&e);
	free(doc);

	ok(!parse("[]", NULL) && errno == EINVAL, "NULL errs: still EINVAL");

	/* Without an origin, lines start with the location. */
	ok(!parse("{'kind':1,\n", &e), "syntax error");
	parse("{'kind':1}", &e);
	parse("[]", &e);
	f = open_memstream(&out, &len);
	policy_errors_print(f, NULL, &e);
	fclose(f);
	ok(strncmp(out, "2:0: string or '}' expected near end of file\n", 45) == 0,
	   "line:col first");
	ok(strstr(out, "\n/kind: must be a string\n") != NULL, "pointer first");
	ok(strstr(out, "\nthe document must be a JSON object\n") != NULL, "message alone");
	free(out);
	policy_errors_free(&e);
}

static void test_syntax(void)
{
	struct policy_errors e = {0};
	char *out = NULL;
	size_t len = 0;

	ok(!parse("{\n  'a': 1,\n  'b' 2\n}", &e) && errno == EINVAL, "syntax error rejected");
	if (ok(e.n == 1, "one syntax error")) {
		ok(e.v[0].pointer == NULL, "no pointer for a syntax error");
		is_int(e.v[0].line, 3, "line");
		is_int(e.v[0].column, 7, "column");
		FILE *f = open_memstream(&out, &len);
		policy_errors_print(f, "s.json", &e);
		fclose(f);
		ok(strncmp(out, "s.json:3:7: ", 12) == 0, "printed as origin:line:col: msg");
		free(out);
	}
	policy_errors_free(&e);

	ok(!parse("{'apiVersion':'a',\n'apiVersion':'b'}", &e), "duplicate key rejected");
	ok(e.n == 1 && e.v[0].pointer == NULL && e.v[0].line == 2 &&
		   strstr(e.v[0].message, "duplicate object key"),
	   "duplicate key is a syntax error on line 2");
	policy_errors_free(&e);

	ok(!policy_parse("", 0, "e.json", &e) && e.n == 1 && e.v[0].pointer == NULL, "empty input");
	policy_errors_free(&e);
	ok(!policy_parse("{\"a\":\"\\u0000\"}", 14, "n.json", &e) && e.n == 1,
	   "NUL in a string rejected");
	policy_errors_free(&e);
	ok(!policy_parse("{\"a\":\"\xff\"}", 8, "u.json", &e) && e.n == 1,
	   "invalid UTF-8 rejected");
	policy_errors_free(&e);
	ok(!policy_parse(NULL, 0, "null", &e) && e.n == 1, "NULL text");
	policy_errors_free(&e);
	/* The length is honoured: what follows is not read. */
	const char *two = "{}garbage";
	ok(!policy_parse(two, 2, "l.json", &e) && e.n == 4, "only len bytes parsed");
	policy_errors_free(&e);
}

static void test_defaults(void)
{
	struct policy *p = expect_ok(DOC_RULES(RULE_OK), "minimal policy");
	if (!p)
		return;
	is_str(p->name, "t", "name");
	is_str(p->origin, "t.json", "origin");
	is_int(p->mode, POLICY_MODE_ENFORCE, "default mode enforce");
	is_int(p->directions, POLICY_DIR_RESPONSE, "default directions [response]");
	is_int(p->on_error, POLICY_ONERR_FALLBACK, "default onError fallback");
	is_int(p->failure_mode, POLICY_FAIL_CLOSED, "default failureMode closed");
	is_int(p->tls_enforce, POLICY_TLS_OFF, "default tls off");
	is_int(p->tunnels, POLICY_TUNNELS_BLOCK, "default tunnels block (enforce)");
	is_int(p->existing, POLICY_EXISTING_RESET, "default existingConnections reset");
	is_int(p->n_dests + p->n_sources + p->n_exempt, 0, "no selector");
	is_int(p->refs, 1, "one reference");
	is_int(p->body_entities, MM_ENT_BIT(MM_ENT_US_SSN), "body entities");
	policy_unref(p);

	p = policy_parse("{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","
			 "\"metadata\":{\"name\":\"o\"},\"spec\":{\"rules\":[" RULE_OK "]}}",
			 0, NULL, NULL);
	ok(!p, "len 0 is an empty document");
}

static void test_etag(void)
{
	struct policy *a = expect_ok(DOC_SPEC("'mode':'observe','rules':[" RULE_OK "]"), "a");
	struct policy *b = expect_ok("{ 'spec' : { 'rules' : [ { 'action' : { 'type' : 'redact' },"
				     " 'entities' : [ 'US_SSN' ], 'name' : 'r' } ], 'mode' : "
				     "'observe' },\n 'metadata' : { 'name' : 't' }, 'kind' : "
				     "'MaskingPolicy', 'apiVersion' : 'meshmask.io/v1alpha1' }",
				     "same policy, other key order and spacing");
	struct policy *c = expect_ok(DOC_SPEC("'mode':'enforce','rules':[" RULE_OK "]"), "c");

	if (a && b && c) {
		unsigned char md[32];
		unsigned int n;
		char hex[65];
		is_int(strlen(a->etag), 64, "etag is 64 hex digits");
		is_str(a->etag, b->etag, "etag independent of key order and spacing");
		is_str(a->json, b->json, "same canonical JSON");
		ok(strcmp(a->etag, c->etag) != 0, "different content, different etag");
		is_str(a->json,
		       "{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","
		       "\"metadata\":{\"name\":\"t\"},\"spec\":{\"mode\":\"observe\",\"rules\":"
		       "[{\"action\":{\"type\":\"redact\"},\"entities\":[\"US_SSN\"],"
		       "\"name\":\"r\"}]}}",
		       "canonical JSON is compact with sorted keys");
		EVP_Digest(a->json, strlen(a->json), md, &n, EVP_sha256(), NULL);
		for (unsigned i = 0; i < 32; i++)
			sprintf(hex + 2 * i, "%02x", md[i]);
		is_str(a->etag, hex, "etag is SHA-256 of the canonical JSON");
	}
	policy_unref(a);
	policy_unref(b);
	policy_unref(c);
}

static struct policy *named(const char *name)
{
	char doc[512];
	snprintf(doc, sizeof(doc), "{" HDR_NAMED ",'spec':{'rules':[" RULE_OK "]}}", name);
	return expect_ok(doc, name);
}

static void test_refs_and_sets(void)
{
	struct policy *c = named("c"), *a = named("a"), *b = named("b"), *a2 = named("a");
	if (!a || !b || !c || !a2)
		return;
	ok(policy_ref(a) == a, "policy_ref returns its argument");
	is_int(a->refs, 2, "two references");
	policy_unref(a);
	is_int(a->refs, 1, "back to one");
	ok(policy_ref(NULL) == NULL, "policy_ref(NULL)");
	policy_unref(NULL);

	struct policy *v[] = {c, a, b};
	struct policy_set *s = policy_set_new(v, 3, 7);
	if (ok(s != NULL, "set of three")) {
		is_int(s->generation, 7, "generation");
		is_int(s->refs, 1, "set has one reference");
		ok(s->v[0] == a && s->v[1] == b && s->v[2] == c, "sorted by name");
		is_int(a->refs, 2, "set holds a reference to each policy");
		ok(policy_set_find(s, "b") == b, "find b");
		ok(policy_set_find(s, "a") == a && policy_set_find(s, "c") == c, "find a, c");
		ok(policy_set_find(s, "d") == NULL && policy_set_find(s, "") == NULL,
		   "missing names");
		ok(policy_set_ref(s) == s && s->refs == 2, "policy_set_ref");
		policy_set_unref(s);
		is_int(a->refs, 2, "still held");
		policy_set_unref(s);
		is_int(a->refs, 1, "released with the set");
	}
	struct policy *dup[] = {a, b, a2};
	errno = 0;
	ok(policy_set_new(dup, 3, 1) == NULL && errno == EEXIST, "duplicate names: EEXIST");
	is_int(a->refs + a2->refs + b->refs, 3, "no reference leaked on failure");
	struct policy_set *empty = policy_set_new(NULL, 0, 2);
	ok(empty && empty->n == 0 && policy_set_find(empty, "a") == NULL, "empty set");
	policy_set_unref(empty);
	ok(policy_set_find(NULL, "a") == NULL, "find in NULL set");
	policy_set_unref(NULL);

	/* The last reference may be dropped by the set, after the caller's. */
	s = policy_set_new(v, 3, 8);
	policy_unref(a);
	policy_unref(b);
	policy_unref(c);
	ok(s && s->v[0]->refs == 1 && strcmp(s->v[0]->name, "a") == 0, "set keeps policies alive");
	policy_set_unref(s);
	policy_unref(a2);
}

static void test_load_file(const char *dir)
{
	struct policy_errors e = {0};
	char path[512], *out = NULL;
	size_t len = 0;

	snprintf(path, sizeof(path), "%s/missing.json", dir);
	errno = 0;
	ok(!policy_load_file(path, &e) && errno == ENOENT, "missing file: ENOENT");
	if (ok(e.n == 1 && e.v[0].pointer == NULL && e.v[0].line == 0, "one read error")) {
		is_str(e.v[0].message, "cannot read: No such file or directory", "message");
		FILE *f = open_memstream(&out, &len);
		policy_errors_print(f, path, &e);
		fclose(f);
		char want[600];
		snprintf(want, sizeof(want), "%s: cannot read: No such file or directory\n", path);
		is_str(out, want, "printed with the path");
		free(out);
	}
	policy_errors_free(&e);
	ok(!policy_load_file(dir, &e) && e.n == 1 &&
		   strcmp(e.v[0].message, "cannot read: Is a directory") == 0,
	   "a directory");
	policy_errors_free(&e);

	/* Bigger than any policy: refused before parsing. */
	snprintf(path, sizeof(path), "%s/big.json", dir);
	{
		size_t n = (1u << 20) + 1;
		char *big = malloc(n);
		memset(big, ' ', n);
		write_file(path, big, n);
		free(big);
	}
	ok(!policy_load_file(path, &e) && errno == EFBIG && e.n == 1 &&
		   strcmp(e.v[0].message, "cannot read: File too large") == 0,
	   "a file over 1 MiB");
	policy_errors_free(&e);

	snprintf(path, sizeof(path), "%s/ok.json", dir);
	char *doc = q(DOC_RULES(RULE_OK));
	write_file(path, doc, strlen(doc));
	free(doc);
	struct policy *p = policy_load_file(path, &e);
	if (ok(p && e.n == 0, "load a file"))
		is_str(p->origin, path, "origin is the path");
	policy_unref(p);

	snprintf(path, sizeof(path), "%s/bad.json", dir);
	write_file(path, "{\n\"kind\": 1\n", 12);
	ok(!policy_load_file(path, &e) && errno == EINVAL && e.n == 1 && e.v[0].line == 3,
	   "syntax error in a file");
	policy_errors_free(&e);
}

static void test_examples(const char *dir)
{
	struct dirent **ents;
	int n = scandir(dir, &ents, NULL, alphasort), loaded = 0;

	setenv("MESHMASK_HASH_KEY", "example-test-key", 1);
	if (!ok(n > 0, "examples directory %s", dir))
		return;
	for (int i = 0; i < n; i++) {
		const char *name = ents[i]->d_name;
		size_t l = strlen(name);
		if (l > 5 && strcmp(name + l - 5, ".json") == 0) {
			char path[1024];
			struct policy_errors e = {0};
			snprintf(path, sizeof(path), "%s/%s", dir, name);
			struct policy *p = policy_load_file(path, &e);
			if (!ok(p != NULL, "example %s compiles", name))
				policy_errors_print(stdout, path, &e);
			loaded++;
			if (p && strcmp(name, "observe-only.json") == 0)
				is_int(p->mode, POLICY_MODE_OBSERVE, "observe-only is observe");
			if (p && strcmp(name, "pii-default.json") == 0) {
				bool hashed = false;
				for (size_t r = 0; r < p->n_rules; r++)
					hashed |= p->rules[r].action.type == POLICY_ACTION_HASH &&
						  p->rules[r].action.hash_key_len == 16;
				ok(hashed, "pii-default hashes with MESHMASK_HASH_KEY");
			}
			policy_unref(p);
			policy_errors_free(&e);
		}
		free(ents[i]);
	}
	free(ents);
	ok(loaded >= 3, "at least three examples (%d)", loaded);
}

/* spec.protobuf.descriptorSets: loaded at parse time, errors at the file's pointer. */
static void test_protobuf(const char *dir, const char *desc)
{
	char doc[2048], msg[1024], path[512];
	struct policy *p;

#define DOC_PB(pb) DOC_SPEC("'rules':[" RULE_OK "],'protobuf':" pb)
	snprintf(doc, sizeof(doc), DOC_PB("{'descriptorSets':['%s']}"), desc);
	p = expect_ok(doc, "protobuf.descriptorSets");
	ok(p && p->pb_schema && p->n_pb_paths == 1 && !strcmp(p->pb_paths[0], desc),
	   "the descriptor set is loaded");
	if (p && p->pb_schema) {
		const struct pb_msgtype *in, *out;
		const char *m = "/mm.test.Customers/Get";
		in = pb_schema_method(p->pb_schema, m, strlen(m), POLICY_DIR_REQUEST);
		out = pb_schema_method(p->pb_schema, m, strlen(m), POLICY_DIR_RESPONSE);
		is_str(in ? in->full_name : NULL, "mm.test.GetRequest", "method input type");
		is_str(out ? out->full_name : NULL, "mm.test.Customer", "method output type");
		is_str(pb_schema_method_name(p->pb_schema, m, strlen(m)), m, "method name");
		ok(!pb_schema_method(p->pb_schema, m, strlen(m) - 1, POLICY_DIR_REQUEST),
		   "a prefix of a method is no method");
		ok(!pb_schema_method_name(p->pb_schema, "/mm.test.Customers/Nope", 23),
		   "an unknown method");
		const struct pb_field *f = pb_msgtype_field(out, 4);
		ok(f && !strcmp(f->name, "address") && f->kind == PB_KIND_MESSAGE && f->msg &&
			   !strcmp(f->msg->full_name, "mm.common.Address"),
		   "a field's message type comes from an imported file");
		f = pb_msgtype_field(out, 7);
		ok(f && f->repeated && f->msg && f->msg->map_entry, "a map is repeated entries");
		f = pb_msgtype_field(out, 10);
		ok(f && f->repeated && f->kind == PB_KIND_VARINT, "repeated int32");
		ok(!pb_msgtype_field(out, 99), "no field 99");
		ok(pb_schema_type(p->pb_schema, "mm.test.Customer.AttrsEntry") != NULL,
		   "nested types are named after their parent");
	}
	policy_unref(p);
	snprintf(doc, sizeof(doc), DOC_PB("{'descriptorSets':['%s','%s']}"), desc, desc);
	p = expect_ok(doc, "the same set twice");
	policy_unref(p);

	snprintf(doc, sizeof(doc), DOC_PB("{'descriptorSets':['%s','%s/none.pb']}"), desc, dir);
	snprintf(msg, sizeof(msg),
		 "cannot read descriptor set \"%s/none.pb\": No such file or directory", dir);
	expect_err(doc, "/spec/protobuf/descriptorSets/1", msg);
	snprintf(path, sizeof(path), "%s/notaset.pb", dir);
	write_file(path, "{\"SECRET\": 1}", 13);
	snprintf(doc, sizeof(doc), DOC_PB("{'descriptorSets':['%s']}"), path);
	snprintf(msg, sizeof(msg), "descriptor set \"%s\": not a FileDescriptorSet", path);
	expect_err(doc, "/spec/protobuf/descriptorSets/0", msg);
	write_file(path, "", 0);
	expect_err(doc, "/spec/protobuf/descriptorSets/0", msg);
	unlink(path);
	snprintf(doc, sizeof(doc), DOC_PB("{'descriptorSets':['%s']}"), dir);
	snprintf(msg, sizeof(msg), "cannot read descriptor set \"%s\": not a regular file", dir);
	expect_err(doc, "/spec/protobuf/descriptorSets/0", msg);
	expect_err(DOC_PB("{'descriptorSets':[]}"), "/spec/protobuf/descriptorSets",
		   "must not be empty");
	expect_err(DOC_PB("{}"), "/spec/protobuf/descriptorSets", "is required");
	expect_err(DOC_PB("{'descriptorSets':[1]}"), "/spec/protobuf/descriptorSets/0",
		   "must be a non-empty string (a descriptor set file)");
	expect_err(DOC_PB("{'descriptorSets':['']}"), "/spec/protobuf/descriptorSets/0",
		   "must be a non-empty string (a descriptor set file)");
	expect_err(DOC_PB("{'descriptorSets':'x.pb'}"), "/spec/protobuf/descriptorSets",
		   "must be an array");
	expect_err(DOC_PB("{'descriptorSet':['x.pb']}"), "/spec/protobuf/descriptorSet",
		   "unknown key");
	expect_err(DOC_PB("[]"), "/spec/protobuf", "must be an object");
#undef DOC_PB

	/* A set without its imports cannot name the types it uses. */
	char cmd[1024];
	snprintf(path, sizeof(path), "%s/noimports.pb", dir);
	snprintf(cmd, sizeof(cmd), "protoc --descriptor_set_out=%s --proto_path=%s %s/test.proto",
		 path, getenv("MM_PB_PROTO_DIR") ? getenv("MM_PB_PROTO_DIR") : ".",
		 getenv("MM_PB_PROTO_DIR") ? getenv("MM_PB_PROTO_DIR") : ".");
	if (getenv("MM_PB_PROTO_DIR") && system(cmd) == 0) {
		char err[512];
		size_t at = 9;
		const char *paths[] = {desc, path};
		struct pb_schema *s = pb_schema_load_at(paths + 1, 1, err, sizeof(err), &at);
		ok(!s && errno == EINVAL && at == 0 && strstr(err, "--include_imports"),
		   "a set built without --include_imports: %s", err);
		pb_schema_free(s);
		s = pb_schema_load(paths, 2, err, sizeof(err));
		ok(s != NULL, "... loads with the set that has the imports");
		pb_schema_free(s);
		unlink(path);
	} else {
		ok(0, "protoc builds a set without imports (MM_PB_PROTO_DIR)");
	}
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/mm-policy-test-XXXXXX";

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_document();
	test_metadata();
	test_spec();
	test_selector();
	test_rules();
	test_actions();
	test_keys(dir);
	test_confined_keys(dir);
	test_tokens(dir);
	test_tls();
	test_collect_and_print();
	test_syntax();
	test_defaults();
	test_etag();
	test_refs_and_sets();
	test_load_file(dir);
	if (argc > 2)
		test_protobuf(dir, argv[2]);
	else
		ok(0, "a descriptor set given as argv[2]");
	if (argc > 1)
		test_examples(argv[1]);
	else
		ok(0, "examples directory given as argv[1]");

	const char *files[] = {"key-nl",  "key-max",  "key-big", "key-empty",
			       "ok.json", "bad.json", "big.json"};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char path[512];
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
	return tap_done();
}
