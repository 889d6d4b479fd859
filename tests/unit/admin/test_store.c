/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Policy store: pushes (etag, If-Match, conflicts with file policies), persistence across a
 * reopen, hot reload of the policies directory including a ConfigMap-style symlink swap, a
 * broken file keeping the previous version, and sets held across a swap.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "tap.h"

static char *doc(const char *name, const char *mask_char)
{
	char *s;
	if (asprintf(&s,
		     "{\"apiVersion\":\"meshmask.io/v1alpha1\",\"kind\":\"MaskingPolicy\","
		     "\"metadata\":{\"name\":\"%s\"},\"spec\":{\"selector\":{\"destinations\":"
		     "[{\"port\":8080}]},\"rules\":[{\"name\":\"ssn\",\"fields\":[\"$..ssn\"],"
		     "\"action\":{\"type\":\"mask\",\"char\":\"%s\"}}]}}",
		     name, mask_char) < 0)
		abort();
	return s;
}

static void write_file(const char *path, const char *text)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp~", path);
	FILE *f = fopen(tmp, "w");
	if (!f)
		abort();
	fputs(text, f);
	fclose(f);
	rename(tmp, path);
}

static int changes;
static void on_change(void *ctx, struct policy_set *set)
{
	(void)ctx;
	(void)set;
	__atomic_add_fetch(&changes, 1, __ATOMIC_SEQ_CST);
}

/* etag of `name` in the current set into buf ("" if absent). */
static const char *etag_of(struct store *st, const char *name, char buf[65])
{
	struct policy_set *s = store_get(st);
	struct policy *p = policy_set_find(s, name);
	snprintf(buf, 65, "%s", p ? p->etag : "");
	policy_set_unref(s);
	return buf;
}

static bool origin_is_api(struct store *st, const char *name)
{
	struct policy_set *s = store_get(st);
	struct policy *p = policy_set_find(s, name);
	bool r = p && p->origin && !strcmp(p->origin, "api");
	policy_set_unref(s);
	return r;
}

/* Wait up to 5 s until the etag of `name` differs from `old` ("" = absent). */
static bool wait_change(struct store *st, const char *name, const char *old)
{
	char buf[65];
	for (int i = 0; i < 500; i++) {
		if (strcmp(etag_of(st, name, buf), old))
			return true;
		usleep(10000);
	}
	return false;
}

static void rejection_release(struct store_rejection *r)
{
	free(r->file);
	free(r->name);
	free(r->etag_in_force);
	policy_errors_free(&r->errs);
	memset(r, 0, sizeof(*r));
}

/* Wait up to 5 s until `file` is (or is not) rejected; its rejection moved into *out. */
static bool wait_rejected(struct store *st, const char *file, bool present,
			  struct store_rejection *out, uint64_t *version)
{
	for (int i = 0; i < 500; i++) {
		struct store_rejection *v;
		size_t n;
		if (store_rejections(st, &v, &n, version) < 0)
			return false;
		size_t k = 0;
		while (k < n && strcmp(v[k].file, file))
			k++;
		bool found = k < n;
		if (found && present && out) {
			*out = v[k];
			memset(&v[k], 0, sizeof(v[k]));
		}
		store_rejections_free(v, n);
		if (found == present)
			return true;
		usleep(10000);
	}
	return false;
}

/* Policy resources: a third source, file > resource > push. */
static void test_crd(const char *root)
{
	char pol[256], path[512], etag[65], buf[65];
	snprintf(pol, sizeof(pol), "%s/crdpol", root);
	mkdir(pol, 0755);
	char *f = doc("owned", "*");
	snprintf(path, sizeof(path), "%s/owned.json", pol);
	write_file(path, f);
	struct store_config cfg = {.policies_dir = pol};
	struct store *st = NULL;
	if (store_open(&st, &cfg) < 0) {
		ok(false, "store_open (resources)");
		free(f);
		return;
	}
	struct policy_errors errs = {0};
	char *c1 = doc("pii", "X");
	is_int(store_crd_put(st, "pii", "ClusterMaskingPolicy/pii", c1, strlen(c1), &errs), 0,
	       "resource applied");
	struct policy_set *s = store_get(st);
	struct policy *p = policy_set_find(s, "pii");
	ok(p && !strcmp(p->origin, "crd:ClusterMaskingPolicy/pii"), "in force, origin crd:<resource>");
	policy_set_unref(s);
	char *ns = doc("pii", "Y");
	is_int(store_crd_put(st, "shop.pii", "MaskingPolicy/shop/pii", ns, strlen(ns), &errs), 0,
	       "a namespaced resource of the same name");
	ok(etag_of(st, "shop.pii", buf)[0], "named <namespace>.<name> on the node");
	char *push = doc("pii", "#");
	is_int(store_put(st, "pii", push, strlen(push), NULL, &errs, etag), -EEXIST,
	       "a push of a resource's name is refused");
	is_str(store_owner(st, "pii"), "resource", "the owner is the resource");
	is_int(store_delete(st, "pii", NULL), -EPERM, "a resource cannot be deleted by the API");
	char *bad = doc("pii", "ab");
	is_int(store_crd_put(st, "pii", "ClusterMaskingPolicy/pii", bad, strlen(bad), &errs),
	       -EINVAL, "an invalid version is refused");
	ok(errs.n && !strcmp(errs.v[0].pointer, "/spec/rules/0/action/char"), "... with its pointer");
	policy_errors_free(&errs);
	struct store_crd_state cs;
	is_int(store_crd_state(st, "pii", &cs), 0, "state");
	ok(cs.refused && cs.previous_in_force && cs.in_force && cs.errs.n == 1,
	   "refused, the previous version in force");
	store_crd_state_clear(&cs);
	struct store_rejection *rej = NULL;
	size_t n_rej = 0;
	store_rejections(st, &rej, &n_rej, NULL);
	ok(n_rej == 1 && rej[0].resource && !strcmp(rej[0].resource, "ClusterMaskingPolicy/pii") &&
		   !rej[0].file && rej[0].etag_in_force,
	   "listed among the rejections, by resource");
	store_rejections_free(rej, n_rej);
	char *owned = doc("owned", "Z");
	is_int(store_crd_put(st, "owned", "ClusterMaskingPolicy/owned", owned, strlen(owned), &errs),
	       -EEXIST, "a resource whose name a file holds is not in force");
	ok(errs.n && strstr(errs.v[0].message, "owned.json"), "... and the file is named");
	policy_errors_free(&errs);
	unlink(path);
	ok(wait_change(st, "owned", etag_of(st, "owned", buf)), "file removed: the resource takes over");
	is_int(store_crd_state(st, "owned", &cs), 0, "state after the file left");
	ok(cs.in_force && !cs.refused, "the resource is in force");
	store_crd_state_clear(&cs);
	is_int(store_crd_delete(st, "pii"), 0, "resource deleted");
	ok(!etag_of(st, "pii", buf)[0], "its policy left");
	is_int(store_put(st, "pii", push, strlen(push), NULL, &errs, etag), 1,
	       "the name is free for a push again");
	store_close(st);
	free(f);
	free(c1);
	free(ns);
	free(push);
	free(bad);
	free(owned);
}

int main(void)
{
	char root[] = "/tmp/meshmask-store-XXXXXX";
	if (!mkdtemp(root))
		return 1;
	char pol[256], state[256], path[512], path2[512];
	snprintf(pol, sizeof(pol), "%s/pol", root);
	snprintf(state, sizeof(state), "%s/state", root);
	mkdir(pol, 0755);
	char *a1 = doc("a", "*");
	snprintf(path, sizeof(path), "%s/a.json", pol);
	write_file(path, a1);
	snprintf(path, sizeof(path), "%s/README.md", pol);
	write_file(path, "not a policy");

	struct store_config cfg = {.policies_dir = pol, .state_dir = state};
	struct store *st = NULL;
	is_int(store_open(&st, &cfg), 0, "store_open");
	if (!st)
		return tap_done();
	ok(store_ready(st), "ready after open");
	struct policy_set *s0 = store_get(st);
	is_int(s0->n, 1, "file policy loaded, other files ignored");
	ok(store_subscribe(st, on_change, NULL) == 0 && changes == 1,
	   "subscriber called at subscription");

	char etag[65], buf[65];
	struct policy_errors errs = {0};
	char *b1 = doc("b", "#");
	is_int(store_put(st, "b", b1, strlen(b1), NULL, &errs, etag), 1, "push creates");
	is_str(etag_of(st, "b", buf), etag, "etag of the pushed policy");
	is_int(changes, 2, "subscriber told");
	snprintf(path, sizeof(path), "%s/policies/b.json", state);
	ok(access(path, R_OK) == 0, "persisted under the state dir");
	is_int(s0->n, 1, "a set held across a swap does not change");
	policy_set_unref(s0);

	char e2[65];
	is_int(store_put(st, "b", b1, strlen(b1), etag, &errs, e2), 0, "same document again");
	is_str(e2, etag, "same etag");
	is_int(changes, 2, "no-op push publishes nothing");
	char *b2 = doc("b", "X");
	is_int(store_put(st, "b", b2, strlen(b2), "0000", &errs, e2), -ESTALE, "stale If-Match");
	is_str(etag_of(st, "b", buf), etag, "stale push changed nothing");
	is_int(store_put(st, "b", b2, strlen(b2), etag, &errs, e2), 0, "matching If-Match");
	ok(strcmp(e2, etag) != 0, "new etag");
	is_int(store_put(st, "b", b2, strlen(b2), etag, &errs, buf), -ESTALE,
	       "the old etag is stale now");
	char *c1 = doc("c", "*");
	is_int(store_put(st, "c", c1, strlen(c1), "*", &errs, buf), -ESTALE,
	       "If-Match * on an absent policy");
	is_int(store_put(st, "a", a1, strlen(a1), NULL, &errs, buf), -EEXIST,
	       "a file policy's name is refused");
	is_int(store_delete(st, "a", NULL), -EPERM, "a file policy cannot be deleted");
	is_int(store_delete(st, "zz", NULL), -ENOENT, "delete of an absent policy");
	is_int(store_put(st, "c", b1, strlen(b1), NULL, &errs, buf), -EINVAL,
	       "URL name must match metadata.name");
	ok(errs.n == 1 && errs.v[0].pointer && !strcmp(errs.v[0].pointer, "/metadata/name"),
	   "error points at /metadata/name");
	policy_errors_free(&errs);
	is_int(store_put(st, "../x", b1, strlen(b1), NULL, &errs, buf), -EINVAL,
	       "path-like name refused");
	policy_errors_free(&errs);
	is_int(store_put(st, "c", "{\"a\":", 5, NULL, &errs, buf), -EINVAL, "syntax error");
	ok(errs.n >= 1 && errs.v[0].line == 1, "syntax error has a line");
	policy_errors_free(&errs);
	is_int(store_put(st, "c", c1, strlen(c1), NULL, &errs, buf), 1, "push c");
	is_int(store_delete(st, "c", "0000"), -ESTALE, "delete with a stale If-Match");
	is_int(store_delete(st, "c", buf), 0, "delete with the right If-Match");
	is_str(etag_of(st, "c", buf), "", "deleted");
	snprintf(path, sizeof(path), "%s/policies/c.json", state);
	ok(access(path, F_OK) < 0, "persisted file removed");

	/* Restart: exactly the pushed policies come back, with the same etags. */
	store_close(st);
	st = NULL;
	is_int(store_open(&st, &cfg), 0, "reopen");
	if (!st)
		return tap_done();
	is_str(etag_of(st, "b", buf), e2, "pushed policy restored with its etag");
	is_str(etag_of(st, "c", buf), "", "deleted policy stays deleted");
	ok(etag_of(st, "a", buf)[0] != 0, "file policy back");

	/* Hot reload of a new file. */
	snprintf(path, sizeof(path), "%s/d.json", pol);
	char *d1 = doc("d", "*");
	write_file(path, d1);
	ok(wait_change(st, "d", ""), "new file picked up");
	char d_etag[65];
	etag_of(st, "d", d_etag);
	/*
	 * A broken version is refused and the previous one stays in force. Its rejection shows the
	 * rescan has read the broken content (checking the etag alone would pass without a rescan).
	 */
	write_file(path, "{\"apiVersion\": broken");
	struct store_rejection rd = {0};
	ok(wait_rejected(st, "d.json", true, &rd, NULL), "broken file: refused by the rescan");
	ok(rd.etag_in_force && !strcmp(rd.etag_in_force, d_etag) && rd.errs.n >= 1,
	   "broken file: refusal names the version in force");
	rejection_release(&rd);
	is_str(etag_of(st, "d", buf), d_etag, "broken file: previous version in force");
	char *d2 = doc("d", "#");
	write_file(path, d2);
	ok(wait_change(st, "d", d_etag), "fixed file picked up");
	etag_of(st, "d", d_etag);
	unlink(path);
	ok(wait_change(st, "d", d_etag), "removed file: policy gone");
	is_str(etag_of(st, "d", buf), "", "d absent");

	/* ConfigMap layout: name.json -> ..data/name.json, ..data -> ..<timestamp>. */
	snprintf(path, sizeof(path), "%s/..v1", pol);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/..v1/e.json", pol);
	char *e_1 = doc("e", "*");
	write_file(path, e_1);
	snprintf(path, sizeof(path), "%s/..data", pol);
	symlink("..v1", path);
	snprintf(path, sizeof(path), "%s/e.json", pol);
	symlink("..data/e.json", path);
	ok(wait_change(st, "e", ""), "ConfigMap file picked up");
	char e_etag[65];
	etag_of(st, "e", e_etag);
	snprintf(path, sizeof(path), "%s/..v2", pol);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/..v2/e.json", pol);
	char *e_2 = doc("e", "#");
	write_file(path, e_2);
	snprintf(path, sizeof(path), "%s/..data_tmp", pol);
	symlink("..v2", path);
	snprintf(path2, sizeof(path2), "%s/..data", pol);
	rename(path, path2);
	snprintf(path, sizeof(path), "%s/..v1/e.json", pol);
	unlink(path);
	snprintf(path, sizeof(path), "%s/..v1", pol);
	rmdir(path);
	ok(wait_change(st, "e", e_etag), "symlink swap reloads");
	is_int(store_put(st, "e", e_2, strlen(e_2), NULL, &errs, buf), -EEXIST,
	       "ConfigMap policy cannot be pushed over");

	/* A file that appears with a pushed policy's name takes over. */
	snprintf(path, sizeof(path), "%s/b.json", pol);
	write_file(path, b1);
	for (int i = 0; i < 500 && origin_is_api(st, "b"); i++)
		usleep(10000);
	ok(!origin_is_api(st, "b"), "file policy shadows the pushed one");
	unlink(path);
	for (int i = 0; i < 500 && !origin_is_api(st, "b"); i++)
		usleep(10000);
	is_str(etag_of(st, "b", buf), e2, "pushed policy back when the file goes");

	/* Refused files: two files naming one policy, and a directory where a file should be. */
	char *dup = doc("dup", "*");
	snprintf(path, sizeof(path), "%s/dup1.json", pol);
	write_file(path, dup);
	ok(wait_change(st, "dup", ""), "dup1.json loaded");
	snprintf(path2, sizeof(path2), "%s/dup2.json", pol);
	write_file(path2, dup);
	struct store_rejection r = {0};
	uint64_t v1 = 0, v2 = 0;
	ok(wait_rejected(st, "dup2.json", true, &r, &v1),
	   "a second file naming a policy is refused");
	is_str(r.name, "dup", "refused: the policy it names");
	ok(r.errs.n == 1 && !strcmp(r.errs.v[0].pointer, "/metadata/name") &&
		   strstr(r.errs.v[0].message, "dup1.json"),
	   "refused: located at /metadata/name, naming the file in force");
	ok(r.etag_in_force == NULL, "refused: nothing of this file in force");
	int64_t t1 = r.time;
	rejection_release(&r);
	snprintf(path, sizeof(path), "%s/dir.json", pol);
	mkdir(path, 0755);
	ok(wait_rejected(st, "dir.json", true, &r, NULL), "a directory named *.json is refused");
	ok(r.errs.n == 1 && strstr(r.errs.v[0].message, "not a regular file"),
	   "refused: not a regular file");
	rejection_release(&r);
	rmdir(path);
	ok(wait_rejected(st, "dir.json", false, NULL, NULL), "gone once the directory is");
	/* An unrelated change rescans the directory: the refusal keeps its time and version. */
	sleep(1);
	ok(wait_rejected(st, "dup2.json", true, NULL, &v1), "still refused");
	char *zz = doc("zz", "*");
	snprintf(path, sizeof(path), "%s/zz.json", pol);
	write_file(path, zz);
	ok(wait_change(st, "zz", ""), "unrelated file loaded");
	ok(wait_rejected(st, "dup2.json", true, &r, &v2), "still refused after a rescan");
	ok(r.time == t1 && v2 == v1, "same refusal: same time and version");
	rejection_release(&r);
	/* The file in force goes: the other one takes over and is no longer refused. */
	snprintf(path, sizeof(path), "%s/dup1.json", pol);
	unlink(path);
	ok(wait_rejected(st, "dup2.json", false, NULL, &v2), "the second file takes over");
	ok(v2 != v1, "the rejections version moved");
	free(dup);
	free(zz);

	store_close(st);

	/* A policies directory that appears after the start is watched once it exists. */
	snprintf(path, sizeof(path), "%s/later", root);
	struct store_config cfg2 = {.policies_dir = path, .state_dir = state};
	st = NULL;
	is_int(store_open(&st, &cfg2), 0, "open with a missing policies dir");
	if (st) {
		mkdir(path, 0755);
		snprintf(path2, sizeof(path2), "%s/later/d.json", root);
		write_file(path2, d1);
		ok(wait_change(st, "d", ""), "directory created later is picked up");
		store_close(st);
	}
	free(a1);
	free(b1);
	free(b2);
	free(c1);
	free(d1);
	free(d2);
	free(e_1);
	free(e_2);
	char cmd[600];
	test_crd(root);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", root);
	return tap_done();
}
