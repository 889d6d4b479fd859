/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kubernetes side of pod identity on arbitrary bytes. Input: data[0] picks the piece size
 * (1..64), data[1] bit 0 a list page (else a watch body), its other bits the event line limit;
 * the rest is the body. A watch body goes through kube_watch_feed in pieces (the line
 * splitter and event decoding libcurl's write callback drives), a list page through
 * kube_watch_list_page; every object handed on goes through identity_pod_from_json, the pods
 * are published, and each line of the body is also tried as a cgroup path.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "identity.h"
#include "kube.h"
#include "log.h"

/* The agent's log lines are not what a fuzzer reads. */
static void quiet(enum agent_log_level level, const char *line)
{
}

#define MAX_PODS 64

struct got {
	struct identity_pod *pods[MAX_PODS];
	size_t n;
};

static int add_pod(struct got *g, const json_t *obj)
{
	if (!json_is_object(obj))
		abort(); /* the decoder hands on objects only */
	struct identity_pod *p = g->n < MAX_PODS ? identity_pod_from_json(obj) : NULL;
	if (p)
		g->pods[g->n++] = p;
	return 0;
}

static int on_item(void *ctx, const json_t *obj)
{
	return add_pod(ctx, obj);
}

static int on_done(void *ctx, bool complete)
{
	return 0;
}

static int on_event(void *ctx, const char *type, const json_t *obj)
{
	if (strcmp(type, "ADDED") && strcmp(type, "MODIFIED") && strcmp(type, "DELETED"))
		abort();
	return add_pod(ctx, obj);
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
	agent_log_set_sink(quiet);
	if (size < 2)
		return 0;
	static const struct kube_watch_ops ops = {on_item, on_done, on_event, NULL};
	const char *body = (const char *)data + 2;
	size_t len = size - 2, step = 1 + (data[0] & 63);
	struct kube_watch_config cfg = {.path = "/api/v1/pods",
					.event_max = 16 + (size_t)(data[1] >> 1) * 64};
	struct got g = {.n = 0};
	struct kube_watch *w = kube_watch_new(&cfg, &ops, &g);
	if (!w)
		return 0;
	if (data[1] & 1) {
		int r = kube_watch_list_page(w, body, len);
		if (r < -4095 || r > 1)
			abort();
	} else {
		int r = 0;
		for (size_t pos = 0; pos < len && r == 0; pos += step)
			r = kube_watch_feed(w, body + pos, len - pos < step ? len - pos : step);
		if (r == 0)
			r = kube_watch_feed_end(w);
		/* A failed stream stays failed with the same error. */
		if (r > 0 || (r < 0 && kube_watch_feed(w, "\n", 1) != r))
			abort();
	}
	kube_watch_free(w);

	identity_publish(g.pods, g.n);
	char *copy = malloc(len + 1);
	if (copy) {
		memcpy(copy, body, len);
		copy[len] = 0;
		char *save = NULL;
		for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
			try_cgroup(l);
		free(copy);
	}
	try_cgroup("/kubepods/besteffort/pod00000000-0000-0000-0000-000000000001/abc");
	for (size_t i = 0; i < g.n; i++)
		identity_pod_unref(g.pods[i]);
	identity_publish(NULL, 0);
	return 0;
}
