/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OpenSSL probes per covered process. A uprobe attached with a pid filter is installed by the
 * kernel in that process's memory only (now, and when it maps the file later), so processes
 * that no policy covers never take a trap. This module keeps one set of links per (covered
 * process, file): it learns the files (every libssl*.so* mapped on the node, and executables
 * with OpenSSL linked in) from /proc, attaches when a process becomes covered (told at once by
 * BPF on exec, fork and cgroup moves, or found by the periodic scan), and detaches when the
 * process exits or leaves coverage. Owned by the capture thread; not thread-safe.
 */
#ifndef MESHMASK_TLS_PROBE_H
#define MESHMASK_TLS_PROBE_H

#include <stdbool.h>
#include <stdint.h>

struct ssl;
struct tls_probes;

/* At most this many processes have probes at once (each holds about 12-16 fds); further
 * covered processes are not probed (counted) until some exit. */
#define TLS_MAX_PROBED_PROCS 1024

/* Covered processes' socket I/O that their probes were not in place for yet (reason
 * "before_probes": count of TCP/IP sends and receives), or processes not probed at all
 * ("probe_limit"). slot: the policy slot the process is covered by. */
typedef void (*tls_uncaptured_fn)(void *ctx, uint32_t slot, const char *reason, uint64_t n);

struct tls_probe_stats {
	uint64_t files; /* files with probes in at least one process */
	uint64_t procs; /* processes with probes */
	uint64_t attaches; /* processes probed since start */
	uint64_t late; /* of them, with socket I/O before their probes */
	uint64_t unprobed_io; /* that socket I/O (sends + receives) */
	uint64_t limit; /* covered processes not probed: TLS_MAX_PROBED_PROCS reached */
	uint64_t body_files; /* files probed at OpenSSL's shared read/write bodies (tls_elf.h) */
	bool node_wide; /* every process probed (stop-rewrite in force) */
};

/* skel: loaded (borrowed). public_only: never probe the shared bodies. 0 or -errno. */
int tls_probes_new(struct tls_probes **out, struct ssl *skel, bool public_only,
		   tls_uncaptured_fn uncaptured, void *ctx);
/* Detach everything, free. NULL-safe. */
void tls_probes_free(struct tls_probes *pr);

/* A periodic scan: begin, learn every pid's files, sync every covered pid, end (what was not
 * synced since begin is detached, files no process maps are forgotten). */
void tls_probes_begin(struct tls_probes *pr);
void tls_probes_learn(struct tls_probes *pr, int pid);
/*
 * Probe covered process pid (policy slot; hold: also the stop-rewrite wait at SSL_read).
 * guess: it just exec'd or moved in, its libssl may not be mapped yet: also probe the libssl
 * files that exist at the paths other processes mapped them from (inside its root). A probe
 * with a pid filter is installed when the process maps the file, and it stays with the process
 * across exec (it follows the task), so a process covered before it execs a TLS client is
 * probed from the client's first instruction. Idempotent.
 */
void tls_probes_sync(struct tls_probes *pr, int pid, uint32_t slot, bool hold, bool guess);
void tls_probes_end(struct tls_probes *pr);
/*
 * Node-wide mode: every file found is probed for every process (no pid filter; BPF filters
 * by cgroup), as before per-process probes. Stop-rewrite needs it: a covered process must be
 * held at its first SSL_read, which a window between becoming covered and being probed would
 * let through. Takes effect at the next tls_probes_end.
 */
void tls_probes_set_node_wide(struct tls_probes *pr, bool on);
/* Detach every process (nothing is covered). */
void tls_probes_clear(struct tls_probes *pr);

void tls_probes_get_stats(const struct tls_probes *pr, struct tls_probe_stats *out);

#endif
