/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The kubeconfig: the file named by --kubeconfig, else the first of $KUBECONFIG, else
 * ~/.kube/config. Of it, the context (--context, else current-context): its cluster's server
 * and CA (certificate-authority, a file relative to the kubeconfig, or -data), its user's token
 * (token, tokenFile) or client certificate (client-certificate/-key, or -data), its namespace.
 * exec and auth-provider plugins are not run: they are refused with a hint.
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "cli_kube.h"
#include "cli_yaml.h"
#include "kube.h"

enum { RC_OK = 0, RC_INVALID = 1, RC_USAGE = 2, RC_IO = 3, RC_REFUSED = 5 };

#define API_PREFIX "/apis/meshmask.io/v1alpha1"
#define FIELD_MANAGER "meshmask-cli"
#define ANSWER_MAX (4u << 20)

/* What the CLI takes from a kubeconfig. Strings owned; token and key wiped when freed. */
struct kubeconf {
	char *server, *ca_file, *ca_pem, *token, *cert_file, *cert_pem, *key_file, *key_pem;
	char *ns;
	char *where; /* "kubeconfig F, context C", for messages */
};

static void kubeconf_free(struct kubeconf *k)
{
	char *secret[] = {k->token, k->key_pem};
	for (size_t i = 0; i < 2; i++)
		if (secret[i])
			explicit_bzero(secret[i], strlen(secret[i]));
	char *all[] = {k->server,   k->ca_file,	 k->ca_pem,  k->token, k->cert_file,
		       k->cert_pem, k->key_file, k->key_pem, k->ns,    k->where};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		free(all[i]);
	memset(k, 0, sizeof(*k));
}

/* Base64 (standard alphabet, padding and whitespace allowed) into a NUL-terminated string. */
static char *b64_decode(const char *in)
{
	size_t n = strlen(in);
	char *out = malloc(n / 4 * 3 + 4), *o = out;
	unsigned acc = 0;
	int bits = 0;
	for (; out && *in; in++) {
		const char *set =
			"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		const char *p = *in ? strchr(set, *in) : NULL;
		if (*in == '=' || *in == ' ' || *in == '\n' || *in == '\r' || *in == '\t')
			continue;
		if (!p) {
			free(out);
			errno = EINVAL;
			return NULL;
		}
		acc = (acc << 6) | (unsigned)(p - set);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			*o++ = (char)((acc >> bits) & 0xff);
		}
	}
	if (out)
		*o = 0;
	return out;
}

/* The entry named `name` of a kubeconfig list (clusters, users, contexts): its `field`. */
static json_t *named(json_t *cfg, const char *list, const char *name, const char *field)
{
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(cfg, list), i, e)
	{
		const char *n = json_string_value(json_object_get(e, "name"));
		if (n && !strcmp(n, name))
			return json_object_get(e, field);
	}
	return NULL;
}

/* A path of the kubeconfig, relative to its directory unless absolute. */
static char *rel_path(const char *cfg_path, const char *p)
{
	if (!p || !*p)
		return NULL;
	if (p[0] == '/')
		return strdup(p);
	char *d = strdup(cfg_path), *out = NULL;
	if (d && asprintf(&out, "%s/%s", dirname(d), p) < 0)
		out = NULL;
	free(d);
	return out;
}

/* s's value as a string, or NULL. */
static const char *str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s && *s ? s : NULL;
}

/* A file's first line (a tokenFile); NULL with errno. */
static char *read_line(const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return NULL;
	char buf[16384];
	char *s = fgets(buf, sizeof(buf), f) ? strdup(buf) : NULL;
	fclose(f);
	explicit_bzero(buf, sizeof(buf));
	if (s)
		s[strcspn(s, "\r\n")] = 0;
	else
		errno = errno ? errno : EINVAL;
	return s;
}

/* Load k from the kubeconfig; 0, or an exit code after printing why. */
static int kubeconf_load(struct kubeconf *k, const char *path, const char *context)
{
	char err[600];
	json_t *cfg = cli_yaml_load_file(path, err, sizeof(err));
	if (!cfg) {
		fprintf(stderr, "meshmask: kubeconfig %s\n", err);
		return RC_IO;
	}
	int rc = RC_USAGE;
	const char *ctx_name = context ? context : str(cfg, "current-context");
	json_t *ctx = ctx_name ? named(cfg, "contexts", ctx_name, "context") : NULL;
	const char *cl_name = str(ctx, "cluster"), *user_name = str(ctx, "user");
	json_t *cl = cl_name ? named(cfg, "clusters", cl_name, "cluster") : NULL;
	json_t *user = user_name ? named(cfg, "users", user_name, "user") : NULL;
	if (asprintf(&k->where, "kubeconfig %s, context %s", path, ctx_name ? ctx_name : "(none)") <
	    0) {
		k->where = NULL;
		rc = RC_IO;
		goto out;
	}
	if (!ctx_name || !json_is_object(ctx)) {
		fprintf(stderr, "meshmask: %s: no such context (--context, current-context)\n",
			k->where);
		goto out;
	}
	if (!json_is_object(cl) || !str(cl, "server")) {
		fprintf(stderr, "meshmask: %s: cluster %s not found or without a server\n",
			k->where, cl_name ? cl_name : "(none)");
		goto out;
	}
	if (json_is_true(json_object_get(cl, "insecure-skip-tls-verify"))) {
		fprintf(stderr,
			"meshmask: %s: insecure-skip-tls-verify is not supported: give the "
			"cluster's certificate-authority\n",
			k->where);
		goto out;
	}
	k->server = strdup(str(cl, "server"));
	k->ns = strdup(str(ctx, "namespace") ? str(ctx, "namespace") : "default");
	if (str(cl, "certificate-authority-data"))
		k->ca_pem = b64_decode(str(cl, "certificate-authority-data"));
	else
		k->ca_file = rel_path(path, str(cl, "certificate-authority"));
	if (!k->ca_pem && !k->ca_file) {
		fprintf(stderr, "meshmask: %s: cluster %s has no certificate-authority(-data)\n",
			k->where, cl_name);
		goto out;
	}
	if (json_object_get(user, "exec") || json_object_get(user, "auth-provider")) {
		fprintf(stderr,
			"meshmask: %s: user %s authenticates through a plugin "
			"(exec/auth-provider), "
			"which meshmask does not run: use a kubeconfig with a token or a client "
			"certificate, or `kubectl apply -f FILE`\n",
			k->where, user_name);
		goto out;
	}
	if (str(user, "token"))
		k->token = strdup(str(user, "token"));
	else if (str(user, "tokenFile") && !(k->token = read_line(str(user, "tokenFile")))) {
		fprintf(stderr, "meshmask: %s: tokenFile: %s\n", k->where, strerror(errno));
		rc = RC_IO;
		goto out;
	}
	if (str(user, "client-certificate-data"))
		k->cert_pem = b64_decode(str(user, "client-certificate-data"));
	else
		k->cert_file = rel_path(path, str(user, "client-certificate"));
	if (str(user, "client-key-data"))
		k->key_pem = b64_decode(str(user, "client-key-data"));
	else
		k->key_file = rel_path(path, str(user, "client-key"));
	if (!k->token && !(k->cert_pem || k->cert_file)) {
		fprintf(stderr, "meshmask: %s: user %s has no token nor client certificate\n",
			k->where, user_name ? user_name : "(none)");
		goto out;
	}
	if (!(k->cert_pem || k->cert_file) != !(k->key_pem || k->key_file)) {
		fprintf(stderr,
			"meshmask: %s: a client certificate needs its key and the other way "
			"round\n",
			k->where);
		goto out;
	}
	if (!k->server || !k->ns) {
		rc = RC_IO;
		goto out;
	}
	rc = RC_OK;
out:
	json_decref(cfg); /* (jansson does not wipe the token's copy it held) */
	return rc;
}

/* The kubeconfig path: --kubeconfig, $KUBECONFIG's first entry, ~/.kube/config. */
static char *kubeconfig_path(const char *opt)
{
	if (opt)
		return strdup(opt);
	const char *env = getenv("KUBECONFIG");
	if (env && *env)
		return strndup(env, strcspn(env, ":"));
	const char *home = getenv("HOME");
	char *p = NULL;
	if (asprintf(&p, "%s/.kube/config", home && *home ? home : ".") < 0)
		return NULL;
	return p;
}

/* Print an API server's refusal: its Status message, and each cause's field. */
static void print_status(const char *file, const struct kube_response *resp)
{
	json_t *st = resp->body ? json_loadb(resp->body, resp->len, 0, NULL) : NULL;
	const char *msg = json_string_value(json_object_get(st, "message"));
	fprintf(stderr, "%s: HTTP %d %s\n", file, resp->status,
		msg ? msg
		: json_string_value(json_object_get(st, "reason"))
			? json_string_value(json_object_get(st, "reason"))
			: "");
	size_t i;
	json_t *c;
	json_array_foreach(json_object_get(json_object_get(st, "details"), "causes"), i, c)
		fprintf(stderr, "%s:   %s: %s\n", file,
			json_string_value(json_object_get(c, "field"))
				? json_string_value(json_object_get(c, "field"))
				: "",
			json_string_value(json_object_get(c, "message"))
				? json_string_value(json_object_get(c, "message"))
				: "");
	json_decref(st);
}

static bool name_ok(const char *n)
{
	return n && *n && strlen(n) < 254 &&
	       strspn(n, "abcdefghijklmnopqrstuvwxyz0123456789-.") == strlen(n);
}

/* One file: build the resource, apply it. The exit code. */
static int push_one(struct kube_client *kc, const char *file, const char *ns_opt,
		    const char *ns_ctx)
{
	char err[600];
	json_t *doc = cli_yaml_load_file(file, err, sizeof(err));
	if (!doc) {
		fprintf(stderr, "%s\n", err);
		return strstr(err, ": No such file") || strstr(err, "read error") ? RC_IO
										  : RC_INVALID;
	}
	int rc = RC_INVALID;
	json_t *res = NULL;
	char *body = NULL, *path = NULL, *ens = NULL, *enm = NULL;
	const char *kind = json_string_value(json_object_get(doc, "kind"));
	const char *api = json_string_value(json_object_get(doc, "apiVersion"));
	json_t *md = json_object_get(doc, "metadata");
	const char *name = json_string_value(json_object_get(md, "name"));
	const char *fns = json_string_value(json_object_get(md, "namespace"));
	bool cluster = kind && !strcmp(kind, "ClusterMaskingPolicy");
	if (!kind || (!cluster && strcmp(kind, "MaskingPolicy"))) {
		fprintf(stderr, "%s: /kind: MaskingPolicy or ClusterMaskingPolicy\n", file);
		goto out;
	}
	if (api && strcmp(api, "meshmask.io/v1alpha1")) {
		fprintf(stderr, "%s: /apiVersion: meshmask.io/v1alpha1\n", file);
		goto out;
	}
	if (!name_ok(name)) {
		fprintf(stderr, "%s: /metadata/name: missing or not a valid resource name\n", file);
		goto out;
	}
	if (!json_is_object(json_object_get(doc, "spec"))) {
		fprintf(stderr, "%s: /spec: missing\n", file);
		goto out;
	}
	/* as kubectl: -n, else the file's namespace, else the context's; they must agree */
	const char *ns = ns_opt ? ns_opt : fns ? fns : ns_ctx;
	if (!cluster && ns_opt && fns && strcmp(ns_opt, fns)) {
		fprintf(stderr, "%s: /metadata/namespace %s differs from -n %s\n", file, fns,
			ns_opt);
		rc = RC_USAGE;
		goto out;
	}
	if (cluster && ns_opt) {
		fprintf(stderr, "%s: a ClusterMaskingPolicy has no namespace (-n)\n", file);
		rc = RC_USAGE;
		goto out;
	}
	/* the resource: the file's labels and annotations, its spec; when it was changed
	   (meshmask_policy_apply_seconds measures change → applied on each node from it) */
	char now[40];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(now + n, sizeof(now) - n, ".%06ldZ", ts.tv_nsec / 1000);
	json_t *ann = json_deep_copy(json_object_get(md, "annotations"));
	if (!json_is_object(ann)) {
		json_decref(ann);
		ann = json_object();
	}
	json_object_set_new(ann, "meshmask.io/changed-at", json_string(now));
	res = json_pack("{s:s,s:s,s:{s:s,s:o},s:O}", "apiVersion", "meshmask.io/v1alpha1", "kind",
			kind, "metadata", "name", name, "annotations", ann, "spec",
			json_object_get(doc, "spec"));
	if (res && !cluster)
		json_object_set_new(json_object_get(res, "metadata"), "namespace", json_string(ns));
	if (res && json_is_object(json_object_get(md, "labels")))
		json_object_set(json_object_get(res, "metadata"), "labels",
				json_object_get(md, "labels"));
	body = res ? json_dumps(res, JSON_COMPACT) : NULL;
	ens = kube_query_escape(cluster ? "" : ns);
	enm = kube_query_escape(name);
	int pr = !body || !ens || !enm ? -1
		 : cluster ? asprintf(&path, API_PREFIX "/clustermaskingpolicies/%s?%s", enm,
				      "fieldManager=" FIELD_MANAGER "&force=true")
			   : asprintf(&path, API_PREFIX "/namespaces/%s/maskingpolicies/%s?%s", ens,
				      enm, "fieldManager=" FIELD_MANAGER "&force=true");
	if (pr < 0) {
		path = NULL;
		rc = RC_IO;
		goto out;
	}
	struct kube_response resp = {0};
	int r = kube_request(kc, "PATCH", path, "application/apply-patch+yaml", body, strlen(body),
			     ANSWER_MAX, &resp);
	if (r < 0) {
		fprintf(stderr, "%s: %s\n", file, resp.error);
		rc = RC_IO;
	} else if (resp.status == 200 || resp.status == 201) {
		json_t *o = json_loadb(resp.body, resp.len, 0, NULL);
		json_int_t gen = json_integer_value(
			json_object_get(json_object_get(o, "metadata"), "generation"));
		printf("%s: %s/%s%s%s applied", file,
		       cluster ? "clustermaskingpolicies" : "maskingpolicies", name,
		       cluster ? "" : " in namespace ", cluster ? "" : ns);
		if (gen > 0)
			printf(" (generation %lld)", (long long)gen);
		printf("\n");
		json_decref(o);
		rc = RC_OK;
	} else {
		print_status(file, &resp);
		rc = resp.status == 400 || resp.status == 422 ? RC_INVALID
		     : resp.status >= 500 || resp.status == 0 ? RC_IO
							      : RC_REFUSED;
	}
	kube_response_free(&resp);
out:
	free(path);
	free(ens);
	free(enm);
	free(body);
	json_decref(res);
	json_decref(doc);
	return rc;
}

int cli_policy_push_cluster(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"cluster", no_argument, NULL, 'C'},
		{"kubeconfig", required_argument, NULL, 'K'},
		{"context", required_argument, NULL, 'x'},
		{"namespace", required_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	const char *kubeconfig = NULL, *context = NULL, *ns = NULL;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "n:", longopts, NULL)) != -1) {
		switch (c) {
		case 'C':
			break;
		case 'K':
			kubeconfig = optarg;
			break;
		case 'x':
			context = optarg;
			break;
		case 'n':
			ns = optarg;
			break;
		case 'h':
			printf("usage: meshmask %s\n", CLI_POLICY_PUSH_CLUSTER_USAGE);
			return RC_OK;
		default:
			fprintf(stderr, "usage: meshmask %s\n", CLI_POLICY_PUSH_CLUSTER_USAGE);
			return RC_USAGE;
		}
	}
	if (optind >= argc || (ns && !name_ok(ns))) {
		fprintf(stderr, "usage: meshmask %s\n", CLI_POLICY_PUSH_CLUSTER_USAGE);
		return RC_USAGE;
	}
	char *path = kubeconfig_path(kubeconfig);
	struct kubeconf k = {0};
	int rc = path ? kubeconf_load(&k, path, context) : RC_IO;
	free(path);
	if (rc) {
		kubeconf_free(&k);
		return rc;
	}
	struct kube_config kcfg = {.url = k.server,
				   .token_file = "", /* none: the token below, or a certificate */
				   .ca_file = k.ca_file,
				   .ca_pem = k.ca_pem,
				   .token = k.token,
				   .cert_file = k.cert_file,
				   .cert_pem = k.cert_pem,
				   .key_file = k.key_file,
				   .key_pem = k.key_pem,
				   .read_timeout_s = 30,
				   .user_agent = "meshmask-cli/" MESHMASK_VERSION};
	struct kube_client *kc = kube_client_new(&kcfg);
	if (!kc) {
		fprintf(stderr, "meshmask: %s: %s\n", k.where,
			errno == EINVAL ? "the server must be https://HOST[:PORT]"
					: strerror(errno));
		kubeconf_free(&k);
		return errno == EINVAL ? RC_USAGE : RC_IO;
	}
	for (int i = optind; i < argc; i++) {
		int r = push_one(kc, argv[i], ns, k.ns);
		rc = rc ? rc : r;
	}
	kube_client_free(kc);
	kubeconf_free(&k);
	return rc;
}
