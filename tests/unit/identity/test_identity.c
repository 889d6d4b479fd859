// SPDX-License-Identifier: Apache-2.0
/* Pod identity: cgroup path parsing, pods from API JSON, source matching, the published table,
 * and the Kubernetes client's response decoding (chunked bodies, bounded lines). */
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

/* A reader serving a fixed response `step` bytes at a time. */
struct feed {
	const char *data;
	size_t len, pos, step;
};

static ssize_t feed_read(void *ctx, void *buf, size_t n)
{
	struct feed *f = ctx;
	size_t k = f->len - f->pos;
	if (k > n)
		k = n;
	if (k > f->step)
		k = f->step;
	memcpy(buf, f->data + f->pos, k);
	f->pos += k;
	return (ssize_t)k;
}

static const char chunked[] = "HTTP/1.1 200 OK\r\n"
			      "Content-Type: application/json\r\n"
			      "Transfer-Encoding: chunked\r\n\r\n"
			      "7\r\n{\"a\":1}\r\n"
			      "3;ext=1\r\n\n{\"\r\n"
			      "A\r\nb\":2}\n{\"c\"\r\n"
			      "5\r\n:3}\n\n\r\n"
			      "1\r\n\n\r\n"
			      "0\r\nX-Trailer: 1\r\n\r\n";

static void test_stream(void)
{
	for (size_t step = 1; step <= 64; step *= 4) {
		struct feed f = {chunked, sizeof(chunked) - 1, 0, step};
		struct kube_stream *s = kube_stream_from_reader(feed_read, &f);
		ok(s && kube_stream_status(s) == 200, "chunked head (step %zu)", step);
		if (!s)
			continue;
		char *line;
		size_t len;
		int r = kube_stream_read_line(s, &line, &len, 100);
		is_int(r, 0, "line 1");
		if (r == 0)
			is_mem(line, len, "{\"a\":1}", "line 1");
		r = kube_stream_read_line(s, &line, &len, 100);
		is_int(r, 0, "line 2");
		if (r == 0)
			is_mem(line, len, "{\"b\":2}", "line 2 spans three chunks");
		r = kube_stream_read_line(s, &line, &len, 100);
		is_int(r, 0, "line 3");
		if (r == 0)
			is_mem(line, len, "{\"c\":3}", "line 3 spans two chunks");
		is_int(kube_stream_read_line(s, &line, &len, 100), -ENODATA,
		       "end of body after the last chunk (empty lines skipped)");
		kube_stream_close(s);
	}

	struct feed f = {chunked, sizeof(chunked) - 1, 0, 5};
	struct kube_stream *s = kube_stream_from_reader(feed_read, &f);
	char *body = NULL, *line;
	size_t len = 0;
	is_int(kube_stream_read_all(s, &body, &len, 1000), 0, "read_all on chunked");
	is_mem(body, len, "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n\n\n", "decoded body");
	free(body);
	kube_stream_close(s);

	static const char cl[] = "HTTP/1.1 410 Gone\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
	f = (struct feed){cl, sizeof(cl) - 1, 0, 3};
	s = kube_stream_from_reader(feed_read, &f);
	is_int(s ? kube_stream_status(s) : 0, 410, "status 410");
	body = NULL;
	is_int(s ? kube_stream_read_all(s, &body, &len, 100) : -1, 0, "content-length body");
	if (body)
		is_mem(body, len, "hello", "stops at Content-Length");
	free(body);
	kube_stream_close(s);

	static const char closed[] = "HTTP/1.0 200 OK\r\n\r\nline one\r\nlast";
	f = (struct feed){closed, sizeof(closed) - 1, 0, 7};
	s = kube_stream_from_reader(feed_read, &f);
	is_int(kube_stream_read_line(s, &line, &len, 100), 0, "close-delimited: line");
	is_mem(line, len, "line one", "CRLF removed");
	is_int(kube_stream_read_line(s, &line, &len, 100), 0, "last line without newline");
	is_mem(line, len, "last", "last line");
	is_int(kube_stream_read_line(s, &line, &len, 100), -ENODATA, "then the end");
	kube_stream_close(s);

	/* Bounds: a line over the limit is an error, without reading the rest into memory. */
	size_t big = 300000;
	char *longresp = malloc(big + 100);
	int n = snprintf(longresp, 100, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", big);
	memset(longresp + n, 'x', big);
	f = (struct feed){longresp, (size_t)n + big, 0, 65536};
	s = kube_stream_from_reader(feed_read, &f);
	is_int(kube_stream_read_line(s, &line, &len, 100000), -EMSGSIZE, "line over the limit");
	ok(f.pos < (size_t)n + big, "stopped reading early (%zu of %zu bytes)", f.pos,
	   (size_t)n + big);
	kube_stream_close(s);
	f = (struct feed){longresp, (size_t)n + big, 0, 65536};
	s = kube_stream_from_reader(feed_read, &f);
	body = NULL;
	is_int(kube_stream_read_all(s, &body, &len, 100000), -EMSGSIZE, "body over the limit");
	free(body);
	kube_stream_close(s);
	free(longresp);

	/* Malformed responses. */
	static const char *const bad_heads[] = {
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/2 200\r\n\r\n",
		"garbage\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
		"HTTP/1.1 200 OK\r\n", /* head cut short */
		"",
	};
	for (size_t i = 0; i < sizeof(bad_heads) / sizeof(bad_heads[0]); i++) {
		f = (struct feed){bad_heads[i], strlen(bad_heads[i]), 0, 4};
		errno = 0;
		s = kube_stream_from_reader(feed_read, &f);
		ok(!s && errno == EBADMSG, "malformed head %zu refused", i);
		kube_stream_close(s);
	}
	static const char *const bad_bodies[] = {
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
	};
	for (size_t i = 0; i < sizeof(bad_bodies) / sizeof(bad_bodies[0]); i++) {
		f = (struct feed){bad_bodies[i], strlen(bad_bodies[i]), 0, 3};
		s = kube_stream_from_reader(feed_read, &f);
		body = NULL;
		is_int(s ? kube_stream_read_all(s, &body, &len, 100) : 0, -EBADMSG,
		       "malformed chunked body %zu refused", i);
		free(body);
		kube_stream_close(s);
	}
	static const char trunc[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
	f = (struct feed){trunc, sizeof(trunc) - 1, 0, 100};
	s = kube_stream_from_reader(feed_read, &f);
	body = NULL;
	is_int(kube_stream_read_all(s, &body, &len, 100), -EPIPE, "truncated body");
	free(body);
	kube_stream_close(s);
	static const char trunc2[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab";
	f = (struct feed){trunc2, sizeof(trunc2) - 1, 0, 100};
	s = kube_stream_from_reader(feed_read, &f);
	is_int(kube_stream_read_line(s, &line, &len, 100), -EPIPE, "truncated chunk");
	kube_stream_close(s);
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
	test_stream();
	test_urls();
	return tap_done();
}
