/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Caller identity from cgroup v2: where the hierarchy is mounted, cgroup ids (the inode number
 * of a cgroup directory, what bpf_get_current_cgroup_id returns), a walk of a subtree and the
 * processes of one cgroup.
 */
#ifndef MESHMASK_CGROUP_H
#define MESHMASK_CGROUP_H

#include <stddef.h>
#include <stdint.h>

/* The cgroup v2 mount point from /proc/self/mountinfo into out. 0 or -errno (-ENOENT). */
int cgroup_find_root(char *out, size_t size);

/* The cgroup id of a cgroup directory. 0 or -errno. */
int cgroup_id_of(const char *dir, uint64_t *id);

/* The cgroup v2 directory of a process (root + /proc/PID/cgroup path) into out. 0 or -errno. */
int cgroup_of_pid(const char *root, int pid, char *out, size_t size);

/*
 * The calling process's own cgroup directory under `root`. Unlike cgroup_of_pid, right also
 * inside a private cgroup namespace (a Kubernetes container's): when the /proc path does not
 * list us, the hierarchy is searched for the cgroup that does. 0 or -errno.
 */
int cgroup_self(const char *root, char *out, size_t size);

/*
 * Call fn for `dir` and every cgroup below it (depth first). `rel` is the path relative to
 * `root` ("/" for the root itself), both borrowed for the call. A non-zero return from fn
 * stops the walk and is returned.
 */
typedef int (*cgroup_walk_fn)(void *ctx, const char *dir, const char *rel, uint64_t id);
int cgroup_walk(const char *root, const char *dir, cgroup_walk_fn fn, void *ctx);

/*
 * fn for each member process of the cgroup directory `dir` (cgroup.procs, pids as our pid
 * namespace sees them) until fn returns non-zero, which is returned; 0, or -errno.
 */
int cgroup_for_each_pid(const char *dir, int (*fn)(void *ctx, int pid), void *ctx);

/* Up to `max` pids of the cgroup's member processes (cgroup.procs). Count or -errno. */
int cgroup_pids(const char *dir, int *pids, int max);

#endif
