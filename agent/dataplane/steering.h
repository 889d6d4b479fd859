/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Steering state from policies and the node: which cgroups are flagged callers (policy
 * sources minus exempt, matched on the cgroup path), which destinations each policy covers,
 * and in which network namespaces the agent must listen. Keeps the BPF maps and the proxy's
 * listeners current as cgroups, processes and netns come and go (inotify on the cgroup tree,
 * plus a periodic rescan).
 */
#ifndef MESHMASK_STEERING_H
#define MESHMASK_STEERING_H

#include <stdbool.h>
#include <stdint.h>

#include "loader.h"
#include "meshmask/steer.h"
#include "policy.h"
#include "workers.h"

struct steering_config {
	const char *cgroup_root; /* cgroup v2 mount; paths in policies are relative to it */
	const char *attach_cgroup; /* subtree that is scanned (where the programs attach) */
	const struct loader_maps *maps;
	struct workers *workers; /* opens and closes the listeners in covered netns */
	const char *self_cgroup; /* the agent's own cgroup (never a caller); NULL = unknown */
	uint16_t proxy_port; /* the listeners' port, host order (their connections are steered) */
};

struct steering;

/*
 * NULL with errno. Chooses this agent's instance id and claims the steering maps: an older
 * agent still running (an overlapping restart) leaves them alone from then on.
 */
struct steering *steering_new(const struct steering_config *cfg);

/* inotify fd to poll for readability; then call steering_on_inotify. */
int steering_inotify_fd(const struct steering *s);
/* Drain inotify events; a rescan follows when the tree changed (then true). */
bool steering_on_inotify(struct steering *s);

/* Take the new policy set (a new reference is taken), rewrite the maps, rescan. 0 or -errno. */
int steering_apply(struct steering *s, struct policy_set *set);

/* Walk the cgroups: fill the callers map, open/close netns listeners. 0 or -errno. */
int steering_rescan(struct steering *s);

/* Refresh the liveness heartbeat (once a second); `alive` false marks the agent down. */
void steering_heartbeat(struct steering *s, bool alive);

/* Fold the BPF steering counters into the metrics (flows passed/refused while down). */
void steering_collect_stats(struct steering *s);

/*
 * The first policy of the current set covering `orig`'s caller and destination with one of
 * `directions`: a new reference, or NULL. Any thread (the workers call it per message).
 */
struct policy *steering_policy_for(struct steering *s, const struct steer_orig *orig,
				   uint32_t directions);
/* The cgroup path of a caller copied into buf (then buf), or NULL. Any thread. */
const char *steering_caller_name(struct steering *s, uint64_t cgroup_id, char *buf, size_t size);

/*
 * Whether a policy set has been applied, the tree scanned, this agent owns the maps and every
 * covered netns has its listener entry.
 */
bool steering_ready(const struct steering *s);

/* Another agent's programs run on the pinned links: close every listener, steer no more. */
void steering_yield(struct steering *s);

/* Shutting down: clear our heartbeat and listener entries (never another agent's). */
void steering_release(struct steering *s);

/* steering_release and free (the BPF maps stay pinned). */
void steering_free(struct steering *s);

#endif
