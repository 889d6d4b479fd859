/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The data plane of the agent: loads and attaches the BPF objects (loader), keeps the steering
 * maps in line with the policy store and the node's cgroups/netns (steering), and proxies the
 * steered connections through HTTP framing and the masking engine (proxy).
 */
#ifndef MESHMASK_DATAPLANE_H
#define MESHMASK_DATAPLANE_H

#include <stdbool.h>

#include "agent.h"
#include "store.h"

struct dataplane;

/* Load, attach, subscribe to the store. 0 or -errno (logged here). */
int dataplane_start(struct dataplane **out, const struct agent_config *cfg, struct store *st);
/* Run the event loop until dataplane_request_stop(). 0 or -errno. */
int dataplane_run(struct dataplane *dp);
/* Async-signal-safe. */
void dataplane_request_stop(struct dataplane *dp);
/* BPF attached and steering maps filled (for /readyz). */
bool dataplane_ready(const struct dataplane *dp);
/* Detach what was attached (pinned links that must survive restarts stay), free. */
void dataplane_free(struct dataplane *dp);

#endif
