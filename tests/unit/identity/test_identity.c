// SPDX-License-Identifier: Apache-2.0
/* Pod identity: cgroup path parsing, pods from API JSON, source matching, the published table,
 * and the Kubernetes client's list+watch decoding (event lines in any pieces, bounds, errors,
 * resourceVersion, list pages). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "identity.h"
#include "kube.h"
#include "tap.h"

#define UID "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
#define UID_ "0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0"
#define CID "3a5f8e0c9b7d6a4f2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a99"
#define HASH "6f1c9b2a8d7e4f3a0b5c6d7e8f9a0b1c"

static void parse_ok(const char *path, const char *uid, const char *cid)
{
	struct identity_cgroup cg;
	int r = identity_parse_cgroup(path, &cg);
	is_int(r, 0, "pod path: %s", path);
	is_str(cg.uid, uid, "  uid");
	is_str(cg.cid, cid, "  container id");
}

static void parse_miss(const char *path)
{
	struct identity_cgroup cg;
	int r = identity_parse_cgroup(path, &cg);
	is_int(r, -ENOENT, "not a pod: %s", path ? path : "(null)");
	ok(cg.uid[0] == 0 && cg.cid[0] == 0, "  output cleared");
}

static void test_paths(void)
{
	/* cgroupfs driver */
	parse_ok("/kubepods/burstable/pod" UID "/" CID, UID, CID);
	parse_ok("/kubepods/besteffort/pod" UID "/" CID, UID, CID);
	parse_ok("/kubepods/pod" UID "/" CID, UID, CID); /* Guaranteed */
	parse_ok("/kubepods/burstable/pod" UID, UID, "");
	parse_ok("/kubepods/burstable/pod" UID "/", UID, "");
	parse_ok("kubepods/burstable/pod" UID "/" CID, UID, CID); /* relative */
	parse_ok("/kubepods/burstable/pod" UID "/crio-" CID, UID, CID);
	/* systemd driver */
	parse_ok("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UID_
		 ".slice/cri-containerd-" CID ".scope",
		 UID, CID);
	parse_ok("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" UID_
		 ".slice/crio-" CID ".scope",
		 UID, CID);
	parse_ok("/kubepods.slice/kubepods-pod" UID_ ".slice/docker-" CID ".scope", UID, CID);
	parse_ok("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UID_ ".slice",
		 UID, "");
	/* CRI-O's conmon and unknown children are the pod's, with no container id */
	parse_ok("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UID_
		 ".slice/crio-conmon-" CID ".scope",
		 UID, "");
	/* cgroups nested in a container (systemd inside, cgroup namespaces) stay its own */
	parse_ok("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UID_
		 ".slice/cri-containerd-" CID ".scope/init.scope",
		 UID, CID);
	/* kind / kubelet in a slice: the kubepods component is prefixed */
	parse_ok("/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
		 "kubelet-kubepods-besteffort-pod" UID_ ".slice/cri-containerd-" CID ".scope",
		 UID, CID);
	/* upper-case hex is normalised */
	parse_ok("/kubepods/burstable/pod0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0", UID, "");
	/* static pods: the kubelet's 32-hex config hash is the uid in the path */
	parse_ok("/kubepods/burstable/pod" HASH "/" CID, HASH, CID);
	/* below a test cgroup (how the integration tests name theirs) */
	parse_ok("/mmid-123/kubepods/besteffort/pod" UID "/" CID, UID, CID);

	parse_miss(NULL);
	parse_miss("");
	parse_miss("/");
	parse_miss("/system.slice/containerd.service");
	parse_miss("/user.slice/user-0.slice/session-1.scope");
	parse_miss("/kubepods");
	parse_miss("/kubepods/burstable");
	parse_miss("/kubepods.slice/kubepods-burstable.slice");
	parse_miss("/pod" UID "/" CID); /* no kubepods above */
	parse_miss("/system.slice/pod" UID); /* same */
	parse_miss("/kubepods/burstable/pod" UID "0"); /* too long */
	parse_miss("/kubepods/burstable/pod0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f"); /* short */
	parse_miss("/kubepods/burstable/pod0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0"); /* _ in fs */
	parse_miss("/kubepods/burstable/podzz1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"); /* not hex */
	parse_miss("/kubepods/burstable/pod0f1e2d3c4-b5a-6978-8796-a5b4c3d2e1f0"); /* dashes */
	parse_miss("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UID
		   ".slice"); /* systemd slices never carry '-' inside the uid */
	parse_miss("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UID_ ".scope");
	parse_miss("/kubepods.slice/kubepods-burstable.slice/other-pod" UID_ ".slice");
	parse_miss("/kubepods/burstable/pod/" UID);
	parse_miss("/kubepods/burstable/notpod" UID);

	struct identity_cgroup cg;
	identity_parse_cgroup("/kubepods/pod" UID "/abc", &cg);
	is_str(cg.cid, "", "short container component: no container id");
	identity_parse_cgroup("/kubepods/pod" UID "/cri-containerd-" CID "x.scope", &cg);
	is_str(cg.cid, "", "65-hex container component: no container id");
}

static struct identity_pod *pod_from(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);
	if (!j)
		return NULL;
	struct identity_pod *p = identity_pod_from_json(j);
	json_decref(j);
	return p;
}

static const char pod_json[] =
	"{\"metadata\":{\"uid\":\"" UID "\",\"name\":\"web-1\",\"namespace\":\"shop\","
	"\"resourceVersion\":\"42\",\"labels\":{\"tier\":\"front\",\"app\":\"web\","
	"\"zone\":\"a\"}},\"spec\":{\"serviceAccountName\":\"web-sa\",\"nodeName\":\"n1\"}}";

static void test_pods(void)
{
	struct identity_pod *p = pod_from(pod_json);
	ok(p != NULL, "pod from JSON");
	if (!p)
		return;
	is_str(p->uid, UID, "uid");
	is_str(p->namespace_, "shop", "namespace");
	is_str(p->name, "web-1", "name");
	is_str(p->service_account, "web-sa", "service account");
	is_str(p->resource_version, "42", "resourceVersion");
	is_int(p->n_labels, 3, "labels");
	is_str(p->label_keys[0], "app", "labels sorted by key");
	is_str(p->label_values[0], "web", "label value");
	is_str(p->mirror, "", "not a static pod");

	struct identity_pod *q = pod_from("{\"metadata\":{\"uid\":\"" UID "\",\"name\":\"x\","
					  "\"namespace\":\"kube-system\"},\"spec\":{}}");
	ok(q && !strcmp(q->service_account, "default") && q->n_labels == 0,
	   "no serviceAccountName: default, no labels");
	identity_pod_unref(q);
	q = pod_from("{\"metadata\":{\"uid\":\"" UID "\",\"name\":\"etcd-n1\",\"namespace\":"
		     "\"kube-system\",\"annotations\":{\"kubernetes.io/config.mirror\":\"" HASH
		     "\"}},\"spec\":{\"serviceAccount\":\"legacy\"}}");
	ok(q && !strcmp(q->mirror, HASH), "mirror pod: config hash kept");
	ok(q && !strcmp(q->service_account, "legacy"), "deprecated serviceAccount alias");
	identity_pod_unref(q);

	static const char *const bad[] = {
		"{}",
		"{\"metadata\":{\"name\":\"x\",\"namespace\":\"y\"}}",
		"{\"metadata\":{\"uid\":\"" UID "\",\"namespace\":\"y\"}}",
		"{\"metadata\":{\"uid\":\"" UID "\",\"name\":\"x\"}}",
		"{\"metadata\":{\"uid\":\"not-a-uid\",\"name\":\"x\",\"namespace\":\"y\"}}",
		"{\"metadata\":{\"uid\":7,\"name\":\"x\",\"namespace\":\"y\"}}",
		"[1,2]",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errno = 0;
		struct identity_pod *b = pod_from(bad[i]);
		ok(!b && errno == EINVAL, "malformed pod %zu refused with EINVAL", i);
		identity_pod_unref(b);
	}

	/* Matching: every key that is set must match. */
	char *lk[] = {"app", "tier"}, *lv[] = {"web", "front"}, *lv_bad[] = {"web", "back"};
	char *lk_missing[] = {"team"}, *lv_missing[] = {"x"};
	struct policy_source s_any = {0};
	struct policy_source s_ns = {.namespace_ = "shop"};
	struct policy_source s_ns2 = {.namespace_ = "other"};
	struct policy_source s_sa = {.namespace_ = "shop", .service_account = "web-sa"};
	struct policy_source s_sa2 = {.namespace_ = "shop", .service_account = "default"};
	struct policy_source s_lab = {.label_keys = lk, .label_values = lv, .n_labels = 2};
	struct policy_source s_lab2 = {.label_keys = lk, .label_values = lv_bad, .n_labels = 2};
	struct policy_source s_lab3 = {
		.label_keys = lk_missing, .label_values = lv_missing, .n_labels = 1};
	struct policy_source s_all = {.namespace_ = "shop",
				      .service_account = "web-sa",
				      .label_keys = lk,
				      .label_values = lv,
				      .n_labels = 2};
	struct policy_source s_cg = {.cgroup = "/kubepods*"};
	ok(identity_source_matches(&s_any, p), "empty source matches a pod");
	ok(identity_source_matches(&s_any, NULL), "empty source matches an unknown caller");
	ok(identity_source_matches(&s_cg, NULL), "cgroup-only source: identity not needed");
	ok(identity_source_matches(&s_ns, p), "namespace matches");
	ok(!identity_source_matches(&s_ns2, p), "other namespace does not");
	ok(!identity_source_matches(&s_ns, NULL), "unknown pod never matches a namespace");
	ok(identity_source_matches(&s_sa, p), "namespace + service account");
	ok(!identity_source_matches(&s_sa2, p), "wrong service account");
	ok(identity_source_matches(&s_lab, p), "all labels match");
	ok(!identity_source_matches(&s_lab2, p), "one label value differs");
	ok(!identity_source_matches(&s_lab3, p), "label missing on the pod");
	ok(!identity_source_matches(&s_lab, NULL), "unknown pod never matches labels");
	ok(identity_source_matches(&s_all, p), "namespace + sa + labels");

	/* The published table. */
	char path[300];
	snprintf(path, sizeof(path), "/kubepods/burstable/pod%s/%s", UID, CID);
	ok(!identity_source_matches_cgroup(&s_ns, path), "before publish: unknown");
	char buf[64];
	is_str(identity_caller_name(path, buf, sizeof(buf)), path,
	       "caller name: path when unknown");
	q = pod_from("{\"metadata\":{\"uid\":\"11111111-2222-3333-4444-555555555555\",\"name\":"
		     "\"kube-apiserver-n1\",\"namespace\":\"kube-system\",\"annotations\":{"
		     "\"kubernetes.io/config.mirror\":\"" HASH "\"}}}");
	struct identity_pod *v[] = {p, q};
	is_int(identity_publish(v, 2), 0, "publish");
	is_int(identity_count(), 2, "two pods");
	ok(identity_source_matches_cgroup(&s_ns, path), "after publish: namespace matches");
	ok(identity_source_matches_cgroup(&s_all, path), "after publish: all keys match");
	ok(!identity_source_matches_cgroup(&s_ns2, path), "after publish: other namespace");
	ok(identity_source_matches_cgroup(&s_any, "/system.slice/x.service"),
	   "keyless source on a non-pod cgroup");
	ok(!identity_source_matches_cgroup(&s_ns, "/system.slice/x.service"),
	   "namespace source on a non-pod cgroup");
	is_str(identity_caller_name(path, buf, sizeof(buf)), "shop/web-1", "caller name: pod");
	char tiny[4];
	is_str(identity_caller_name(path, tiny, sizeof(tiny)), path,
	       "caller name: too small a buffer falls back to the path");
	ok(identity_caller_name(NULL, buf, sizeof(buf)) == NULL, "caller name: NULL stays NULL");
	struct identity_pod *l = identity_lookup_cgroup("/kubepods.slice/kubepods-burstable.slice/"
							"kubepods-burstable-pod" HASH ".slice");
	ok(l && !strcmp(l->name, "kube-apiserver-n1"), "static pod found by its config hash");
	identity_pod_unref(l);
	identity_pod_unref(q);

	/* References outlive the table: publish a new one while holding a pod. */
	l = identity_lookup_cgroup(path);
	is_int(identity_publish(NULL, 0), 0, "publish an empty table");
	ok(l && !strcmp(l->namespace_, "shop"), "a held pod survives a swap");
	identity_pod_unref(l);
	ok(!identity_source_matches_cgroup(&s_ns, path), "deleted: no longer matches");
	identity_pod_unref(p);
	identity_stop(); /* drops the table */
}

static int changes;
static void on_change(void *ctx)
{
	(*(int *)ctx)++;
}

static void test_change_cb(void)
{
	identity_set_change_cb(on_change, &changes);
	identity_publish(NULL, 0);
	identity_publish(NULL, 0);
	is_int(changes, 2, "change callback after each publish");
	identity_set_change_cb(NULL, NULL);
	identity_publish(NULL, 0);
	is_int(changes, 2, "no callback once cleared");
	identity_stop();
}

/* What a list+watch handed to its caller, as text: "L:name", "E:TYPE:name", "D:1/0". */
struct rec {
	char log[4096];
	size_t len;
	int fail_event; /* returned by the event callback when set */
};

static void rec_add(struct rec *r, const char *what, const json_t *obj)
{
	const char *name =
		json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
	int n = snprintf(r->log + r->len, sizeof(r->log) - r->len, "%s%s%s;", what, obj ? ":" : "",
			 obj ? (name ? name : "?") : "");
	if (n > 0 && (size_t)n < sizeof(r->log) - r->len)
		r->len += (size_t)n;
}

static int rec_item(void *ctx, const json_t *obj)
{
	rec_add(ctx, "L", obj);
	return 0;
}

static int rec_done(void *ctx, bool complete)
{
	rec_add(ctx, complete ? "D:1" : "D:0", NULL);
	return 0;
}

static int rec_event(void *ctx, const char *type, const json_t *obj)
{
	struct rec *r = ctx;
	char what[32];
	snprintf(what, sizeof(what), "E:%s", type);
	rec_add(r, what, obj);
	return r->fail_event;
}

static const struct kube_watch_ops rec_ops = {rec_item, rec_done, rec_event, NULL};

/* Feed `body` to a new watch in pieces of `step` bytes; returns the first error or 0. */
static int feed_all(struct kube_watch *w, const char *body, size_t len, size_t step)
{
	for (size_t pos = 0; pos < len; pos += step) {
		int r = kube_watch_feed(w, body + pos, len - pos < step ? len - pos : step);
		if (r < 0)
			return r;
	}
	return kube_watch_feed_end(w);
}

#define EV(type, name, rv)                                                  \
	"{\"type\":\"" type "\",\"object\":{\"metadata\":{\"name\":\"" name \
	"\",\"resourceVersion\":\"" rv "\"}}}"

static void test_watch_events(void)
{
	static const char *const parts[] = {
		EV("ADDED", "a", "11"),	   "\n\n",
		EV("MODIFIED", "b", "12"), "\r\n\r\n",
		EV("BOOKMARK", "", "13"),  "\n{\"type\":\"FUTURE\",\"object\":{}}\n",
		EV("DELETED", "c", "14"), /* the last line without a newline */
	};
	char stream[1024] = "";
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		strcat(stream, parts[i]);
	struct kube_watch_config cfg = {.path = "/api/v1/pods", .event_max = 200};
	for (size_t step = 1; step <= 256; step *= 4) {
		struct rec rec = {0};
		struct kube_watch *w = kube_watch_new(&cfg, &rec_ops, &rec);
		is_int(feed_all(w, stream, strlen(stream), step), 0, "events (step %zu)", step);
		is_str(rec.log, "E:ADDED:a;E:MODIFIED:b;E:DELETED:c;",
		       "each event once, in order, whatever the pieces; CR, empty lines, "
		       "bookmarks and unknown types not handed on");
		is_str(kube_watch_resource_version(w), "14", "resourceVersion follows the events");
		kube_watch_free(w);
	}

	struct rec rec = {0};
	struct kube_watch *w = kube_watch_new(&cfg, &rec_ops, &rec);
	static const char bm[] = EV("ADDED", "a", "20") "\n" EV("BOOKMARK", "x", "25") "\n";
	is_int(feed_all(w, bm, sizeof(bm) - 1, 7), 0, "bookmark");
	is_str(kube_watch_resource_version(w), "25", "a bookmark moves the resourceVersion");
	is_str(rec.log, "E:ADDED:a;", "a bookmark is not an event");
	kube_watch_free(w);

	/* ERROR events: 410 relists, others are failures; nothing after them is read. */
	static const char *const errs[] = {
		"{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410}}\n" EV("ADDED",
											  "z", "9"),
		"{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":500}}\n",
		"{\"type\":\"ADDED\"}\n",
		"not json\n",
		"{\"type\":3,\"object\":{}}\n",
	};
	static const int want[] = {-ESTALE, -EIO, -EBADMSG, -EBADMSG, -EBADMSG};
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		rec = (struct rec){0};
		w = kube_watch_new(&cfg, &rec_ops, &rec);
		is_int(feed_all(w, errs[i], strlen(errs[i]), 5), want[i], "error stream %zu", i);
		is_str(rec.log, "", "nothing handed on (%zu)", i);
		is_int(kube_watch_feed(w, "\n", 1), want[i], "the stream stays failed (%zu)", i);
		kube_watch_free(w);
	}

	/* The caller's error ends the stream. */
	rec = (struct rec){.fail_event = -ESTALE};
	w = kube_watch_new(&cfg, &rec_ops, &rec);
	static const char two[] = EV("ADDED", "a", "1") "\n" EV("ADDED", "b", "2") "\n";
	is_int(feed_all(w, two, sizeof(two) - 1, 1000), -ESTALE, "event callback error returned");
	is_str(rec.log, "E:ADDED:a;", "and nothing after it");
	is_str(kube_watch_resource_version(w), "", "a failed event does not move the version");
	kube_watch_free(w);

	/* Bounds: a line over event_max fails as soon as it is known, without buffering it. */
	rec = (struct rec){0};
	w = kube_watch_new(&cfg, &rec_ops, &rec);
	char big[1000];
	memset(big, 'x', sizeof(big));
	is_int(kube_watch_feed(w, big, 150), 0, "150 bytes of a line: kept");
	is_int(kube_watch_feed(w, big, 51), -EMSGSIZE, "201 bytes: over the limit");
	kube_watch_free(w);
	w = kube_watch_new(&cfg, &rec_ops, &rec);
	is_int(kube_watch_feed(w, big, sizeof(big)), -EMSGSIZE, "one piece over the limit");
	kube_watch_free(w);
	w = kube_watch_new(&cfg, &rec_ops, &rec);
	char exact[202];
	memset(exact, 'x', 200);
	exact[200] = '\n';
	is_int(kube_watch_feed(w, exact, 201), -EBADMSG, "a line of exactly the limit is read");
	kube_watch_free(w);
}

static void test_list_pages(void)
{
	struct kube_watch_config cfg = {.path = "/api/v1/pods"};
	struct rec rec = {0};
	struct kube_watch *w = kube_watch_new(&cfg, &rec_ops, &rec);
	static const char p1[] = "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"7\","
				 "\"continue\":\"a&b\"},\"items\":[{\"metadata\":{\"name\":\"a\"}},"
				 "{\"metadata\":{\"name\":\"b\"}}]}";
	static const char p2[] = "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"8\"},"
				 "\"items\":[{\"metadata\":{\"name\":\"c\"}}]}";
	is_int(kube_watch_list_page(w, p1, sizeof(p1) - 1), 1, "a page with more to come");
	is_int(kube_watch_list_page(w, p2, sizeof(p2) - 1), 0, "the last page");
	is_str(rec.log, "L:a;L:b;L:c;", "every item handed on");
	static const char *const bad[] = {"", "{}", "{\"items\":{}}", "[1]", "{\"items\":[]"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		is_int(kube_watch_list_page(w, bad[i], strlen(bad[i])), -EBADMSG, "bad page %zu",
		       i);
	kube_watch_free(w);

	char *e = kube_query_escape("tok&1=+/ x~._-");
	is_str(e, "tok%261%3D%2B%2F%20x~._-", "query escaping");
	free(e);
	errno = 0;
	struct kube_watch_config nopath = {.path = "api/v1/pods"};
	ok(!kube_watch_new(&nopath, &rec_ops, &rec) && errno == EINVAL, "a relative path refused");
}

/* A client against nothing: refused at once, and abort ends later requests. */
static void test_request(void)
{
	struct kube_config kc = {.url = "https://127.0.0.1:1",
				 .token_file = "/nonexistent",
				 .ca_file = "/nonexistent"};
	struct kube_client *c = kube_client_new(&kc);
	struct kube_response resp;
	int r = kube_request(c, "GET", "/api", NULL, NULL, 0, 100, &resp);
	ok(r < 0 && r != -ECANCELED && resp.error[0] && !resp.status, "no server: %d (%s)", r,
	   resp.error);
	is_int(kube_request(c, "PATCH", "/x", NULL, "{}", 2, 100, &resp), -EINVAL,
	       "a body needs a content type");
	kube_client_abort(c);
	is_int(kube_request(c, "GET", "/api", NULL, NULL, 0, 100, &resp), -ECANCELED,
	       "after abort: cancelled");
	struct rec rec = {0};
	struct kube_watch_config cfg = {.path = "/api/v1/pods"};
	struct kube_watch *w = kube_watch_new(&cfg, &rec_ops, &rec);
	is_int(kube_watch_run(w, c), -ECANCELED, "an aborted client ends a watch");
	is_str(rec.log, "D:0;", "the list was dropped");
	kube_watch_free(w);
	kube_response_free(&resp);
	kube_client_free(c);
}

static void test_urls(void)
{
	static const char *const good[] = {"https://10.96.0.1", "https://10.96.0.1:443",
					   "https://[fd00::1]:6443", "https://api.example:6443/",
					   "HTTPS://kubernetes.default.svc"};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		struct kube_config kc = {.url = good[i]};
		struct kube_client *c = kube_client_new(&kc);
		ok(c != NULL, "url accepted: %s", good[i]);
		kube_client_free(c);
	}
	static const char *const bad[] = {
		"http://10.96.0.1",    "https://",	   "https://:443",     "https://host:",
		"https://host:123456", "https://host:44a", "https://[fd00::1", "https://[fd00::1]x",
		"https://host/api/v1", "10.96.0.1:443",	   "https://host?x=1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct kube_config kc = {.url = bad[i]};
		errno = 0;
		struct kube_client *c = kube_client_new(&kc);
		ok(!c && errno == EINVAL, "url refused: %s", bad[i]);
		kube_client_free(c);
	}
	char url[128];
	unsetenv("KUBERNETES_SERVICE_HOST");
	is_int(kube_in_cluster_url(url, sizeof(url)), -ENOENT, "not in a cluster");
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	is_int(kube_in_cluster_url(url, sizeof(url)), 0, "in-cluster url");
	is_str(url, "https://10.96.0.1:443", "from the env");
	setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1", 1);
	kube_in_cluster_url(url, sizeof(url));
	is_str(url, "https://[fd00:10:96::1]:443", "IPv6 in brackets");
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");

	/* identity_start refuses what it cannot use. */
	struct identity_config ic = {.kube_api = "https://127.0.0.1:1", .node_name = "Bad_Node"};
	is_int(identity_start(&ic), -EINVAL, "bad node name refused");
	ic.node_name = NULL;
	is_int(identity_start(&ic), -EINVAL, "no node name refused");
	ic.node_name = "n1";
	ic.kube_api = "http://127.0.0.1:1";
	is_int(identity_start(&ic), -EINVAL, "non-https API refused");
	ok(!identity_synced(), "not synced");
	identity_stop();
}

int main(void)
{
	test_paths();
	test_pods();
	test_change_cb();
	test_watch_events();
	test_list_pages();
	test_request();
	test_urls();
	return tap_done();
}
