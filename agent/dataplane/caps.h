/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Connection caps shared by every worker: at most max_total proxied connections on the node
 * and max_per_pod from one caller cgroup, so that one pod cannot take the agent's file
 * descriptors (and the upstream connections behind them) from the others. Taken at accept,
 * given back when the connection is freed; any thread.
 */
#ifndef MESHMASK_CAPS_H
#define MESHMASK_CAPS_H

#include <stddef.h>
#include <stdint.h>

enum caps_verdict { CAPS_OK, CAPS_NODE, CAPS_POD };

struct caps;

/* Caps of max_total and max_per_pod connections (0 = none). NULL with errno. */
struct caps *caps_new(size_t max_total, size_t max_per_pod);
/* Count a new connection of cgroup_id, unless over a cap (then nothing is counted). */
enum caps_verdict caps_take(struct caps *c, uint64_t cgroup_id);
/* A connection caps_take counted has ended. */
void caps_put(struct caps *c, uint64_t cgroup_id);
/* Connections counted now. */
size_t caps_total(struct caps *c);
void caps_free(struct caps *c);

#endif
