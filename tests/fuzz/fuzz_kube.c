/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kubernetes side of pod identity on arbitrary bytes: an API response (status line,
 * headers, Content-Length / chunked / close-delimited body) read in chunks of data[0]-chosen
 * size, either whole as a PodList or line by line as a watch stream; every pod object found
 * goes through identity_pod_from_json, the pods are published, and each line is also tried as
 * a cgroup path (identity_parse_cgroup, identity_lookup_cgroup). Bodies and lines must respect
 * the limits given.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "identity.h"
#include "kube.h"

struct feed {
	const uint8_t *data;
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

#define MAX_PODS 64

static size_t add_pod(struct identity_pod **pods, size_t n, const json_t *obj)
{
	if (n == MAX_PODS || !json_is_object(obj))
		return n;
	struct identity_pod *p = identity_pod_from_json(obj);
	if (p)
		pods[n++] = p;
	return n;
}

static void try_cgroup(const char *line)
{
	struct identity_cgroup cg;
	(void)identity_parse_cgroup(line, &cg);
	struct identity_pod *p = identity_lookup_cgroup(line);
	if (p)
		identity_pod_unref(p);
	char name[256];
	(void)identity_caller_name(line, name, sizeof(name));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	struct feed f = {data + 2, size - 2, 0, 1 + (data[0] & 63)};
	size_t max = 16 + (size_t)(data[1] >> 1) * 64;
	struct kube_stream *s = kube_stream_from_reader(feed_read, &f);
	if (!s)
		return 0;
	(void)kube_stream_status(s);

	struct identity_pod *pods[MAX_PODS];
	size_t n = 0;
	if (data[1] & 1) {
		/* A list: the whole body as a PodList. */
		char *body = NULL;
		size_t len = 0;
		if (kube_stream_read_all(s, &body, &len, max) == 0) {
			if (len > max || body[len] != 0)
				abort();
			json_t *j = json_loadb(body, len, 0, NULL);
			json_t *items = json_object_get(j, "items");
			size_t i;
			json_t *it;
			json_array_foreach(items, i, it) n = add_pod(pods, n, it);
			json_decref(j);
			try_cgroup(body);
		}
		free(body);
	} else {
		/* A watch: one event per line. */
		char *line;
		size_t len;
		for (int k = 0; k < 256 && kube_stream_read_line(s, &line, &len, max) == 0; k++) {
			if (len > max || line[len] != 0 || !len)
				abort();
			json_t *j = json_loadb(line, len, 0, NULL);
			n = add_pod(pods, n, json_object_get(j, "object"));
			json_decref(j);
			try_cgroup(line);
		}
	}
	kube_stream_close(s);
	identity_publish(pods, n);
	try_cgroup("/kubepods/besteffort/pod00000000-0000-0000-0000-000000000001/abc");
	for (size_t i = 0; i < n; i++)
		identity_pod_unref(pods[i]);
	identity_publish(NULL, 0);
	return 0;
}
