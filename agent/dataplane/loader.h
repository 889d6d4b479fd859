/* SPDX-License-Identifier: Apache-2.0 */
/*
 * BPF lifecycle of the steering programs: open the skeleton, set rodata, reuse or create the
 * maps pinned under <bpffs>/meshmask/<instance>/abi-<hash of the map definitions>/ (and
 * <instance>/maps, a symlink to the version in use), load, and attach to the cgroup through
 * links pinned in <instance>. A restarted agent of the same ABI finds the pins: maps keep their
 * state and the pinned links are switched to the new programs atomically, so steering never
 * lapses. An agent of another ABI (an upgrade whose maps changed, or a downgrade) pins its
 * maps beside the old ones, switches the links to its programs atomically, then removes the
 * other version's pins; the other agent, if still running, keeps reading its own maps by fd
 * (never the new layout) and yields (loader_superseded).
 */
#ifndef MESHMASK_LOADER_H
#define MESHMASK_LOADER_H

#include <stdbool.h>
#include <stdint.h>

struct loader_config {
	const char *bpffs; /* bpffs mount point (mounted here if missing) */
	const char *instance; /* pin directory name under <bpffs>/meshmask */
	const char *attach_cgroup; /* cgroup v2 directory the programs attach to */
	uint16_t proxy_port; /* host order */
	/*
	 * The agent's own cgroup v2 directory: the cgroup/getsockopt SO_ORIGINAL_DST answer is
	 * attached there (not pinned: it only serves this process's sockets). NULL = not attached.
	 */
	const char *self_cgroup;
	/*
	 * --splice: sockops + sk_msg splice of the agent->app loopback hop. The agent's accepted
	 * sockets join it from sockops in its own cgroup (self_cgroup, attached there too when it
	 * is outside attach_cgroup).
	 */
	bool splice;
	uint32_t callers_max; /* capacity of steer_callers; 0 = the default (tests set it small) */
};

struct loader;

/* Load, pin the maps (reusing this ABI's pins); nothing steers before loader_attach. NULL with
 * errno set (logged here). */
struct loader *loader_open(const struct loader_config *cfg);

/* Map fds (owned by the loader). */
struct loader_maps {
	int callers, dests, by_cookie, by_port, listeners, state, stats, overflow, slots;
	uint32_t callers_max; /* capacity of steer_callers */
	int splice_stats; /* -1 unless the splice is on */
};
const struct loader_maps *loader_maps(const struct loader *l);

/* Whether accepted sockets get SO_ORIGINAL_DST answered by BPF (self_cgroup attached). */
bool loader_orig_dst_sockopt(const struct loader *l);

/* Whether the splice is on (asked for and its sk_msg program attached). */
bool loader_splice(const struct loader *l);

/*
 * Switch the cgroup's pinned links to this loader's programs (created when absent), then
 * publish this version's maps as <instance>/maps and remove other versions' pins. Called once
 * the maps are filled (policies, callers, listeners): with maps of a new ABI, attaching
 * earlier would steer covered callers through empty maps. 0 or -errno.
 */
int loader_attach(struct loader *l);

/*
 * Whether the pinned links run programs of another ABI (programs that do not use this
 * loader's maps): an agent whose maps differ took over steering, so this one's maps no longer
 * steer anything and the caller stops serving. An agent of the same ABI shares the maps: that
 * is not superseding (the heartbeat in steer_state decides who writes).
 */
bool loader_superseded(const struct loader *l);

/* The pin directory (<bpffs>/meshmask/<instance>), borrowed. */
const char *loader_pin_dir(const struct loader *l);

/* Close fds; pinned maps and links stay, so steering survives until the next agent. */
void loader_close(struct loader *l);

/* Detach and remove every pin of an instance (for --cleanup style teardown). 0 or -errno. */
int loader_unpin_all(const char *bpffs, const char *instance);

#endif
