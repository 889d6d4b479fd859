// SPDX-License-Identifier: Apache-2.0
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "caps.h"

#define CAPS_BUCKETS 1024

struct pod {
	uint64_t id;
	size_t n;
	struct pod *next;
};

struct caps {
	pthread_mutex_t lock;
	size_t max_total, max_per_pod, total;
	struct pod *b[CAPS_BUCKETS];
};

struct caps *caps_new(size_t max_total, size_t max_per_pod)
{
	struct caps *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	pthread_mutex_init(&c->lock, NULL);
	c->max_total = max_total;
	c->max_per_pod = max_per_pod;
	return c;
}

static struct pod **slot(struct caps *c, uint64_t id)
{
	struct pod **pp = &c->b[(id * 0x9e3779b97f4a7c15ull) >> 54];
	while (*pp && (*pp)->id != id)
		pp = &(*pp)->next;
	return pp;
}

enum caps_verdict caps_take(struct caps *c, uint64_t cgroup_id)
{
	enum caps_verdict v = CAPS_OK;
	pthread_mutex_lock(&c->lock);
	struct pod **pp = slot(c, cgroup_id);
	if (c->max_total && c->total >= c->max_total) {
		v = CAPS_NODE;
	} else if (c->max_per_pod && *pp && (*pp)->n >= c->max_per_pod) {
		v = CAPS_POD;
	} else if (!*pp && !(*pp = calloc(1, sizeof(**pp)))) {
		v = CAPS_NODE; /* no memory to count it: as if the node were full */
	} else {
		(*pp)->id = cgroup_id;
		(*pp)->n++;
		c->total++;
	}
	pthread_mutex_unlock(&c->lock);
	return v;
}

void caps_put(struct caps *c, uint64_t cgroup_id)
{
	pthread_mutex_lock(&c->lock);
	struct pod **pp = slot(c, cgroup_id);
	if (*pp && (*pp)->n) {
		c->total--;
		if (!--(*pp)->n) {
			struct pod *p = *pp;
			*pp = p->next;
			free(p);
		}
	}
	pthread_mutex_unlock(&c->lock);
}

size_t caps_total(struct caps *c)
{
	pthread_mutex_lock(&c->lock);
	size_t n = c->total;
	pthread_mutex_unlock(&c->lock);
	return n;
}

void caps_free(struct caps *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < CAPS_BUCKETS; i++)
		while (c->b[i]) {
			struct pod *p = c->b[i];
			c->b[i] = p->next;
			free(p);
		}
	pthread_mutex_destroy(&c->lock);
	free(c);
}
