/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TLS data path: OpenSSL uprobes capture the plaintext of covered processes (bpf/ssl.bpf.c),
 * this module finds every libssl and OpenSSL-linked executable on the node, attaches once per
 * file, keeps the covered cgroups in the BPF map in line with the policies, and runs the entity
 * detectors over each connection's plaintext stream (observe + audit, never the value).
 */
#ifndef MESHMASK_TLS_H
#define MESHMASK_TLS_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"
#include "tls_stop.h"
#include "tls_probe.h"

struct tls;

/* The capture ring buffer's size when --tls-ring-kb does not set it. */
#define TLS_RING_DEFAULT_KB 8192u

struct tls_config {
	const char *cgroup_root; /* cgroup v2 mount (borrowed); NULL = from mountinfo */
	uint32_t ring_kb; /* capture ring buffer in KiB, a power of two; 0 = the default */
	/*
	 * Fallbacks an operator may choose (docs/tls.md): probe every process that maps a libssl
	 * (--tls-node-wide: no first records of a short-lived process missed, but uncovered
	 * processes take the traps), only OpenSSL's public entry points (--tls-public-entry: for a
	 * build whose shared bodies are mis-detected), connections named at syscall entry
	 * (--tls-syscall-attribution: kernels without the socket tracepoints).
	 */
	bool node_wide, public_entry, syscall_attribution;
	unsigned stop_delay_ms; /* tests only (tls_harness): every stop-rewrite mask this slower */
};

/* Load the uprobe object, subscribe to the store, start the capture thread. 0 or -errno. */
int tls_start(struct tls **out, const struct tls_config *cfg, struct store *st);
/* Stop the thread, detach everything, free. NULL-safe. */
void tls_stop(struct tls *t);
/* Whether the kernel lets BPF write user memory (spec.tls.enforce: inplace). */
bool tls_inplace_available(const struct tls *t);
/* Whether spec.tls.enforce: stop-rewrite is enforced by this agent (tracer running). */
bool tls_stop_rewrite_available(const struct tls *t);

/* Counters since start, for tests and /readyz. */
struct tls_stats {
	uint64_t records; /* data records consumed */
	uint64_t bytes; /* plaintext bytes scanned */
	uint64_t findings; /* values found */
	uint64_t dropped; /* records lost in BPF (ringbuf full, truncated, unreadable) */
	uint64_t targets; /* files (libssl, executables) probed in some process now */
	uint64_t covered; /* cgroups in the BPF filter now */
	uint64_t scans; /* completed /proc scans */
	uint64_t notified; /* processes BPF announced as newly covered (exec, fork, move) */
	uint64_t window_ns_sum, window_ns_max; /* from such an event to its probes in place */
	struct tls_probe_stats probes; /* per-process probes, as of the last scan */
	bool stop_available; /* spec.tls.enforce: stop-rewrite can be enforced */
	struct tls_stop_stats stop; /* stop-rewrite counters */
};
/* A snapshot at most one poll interval old; thread-safe. */
void tls_get_stats(struct tls *t, struct tls_stats *out);

#endif
