/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Stop-rewrite enforcement of TLS plaintext (spec.tls.enforce: stop-rewrite). A tracer thread
 * ptrace-seizes (no stop) every process of the cgroups it is given; at the return of SSL_read
 * the BPF program sends the calling thread a signal the process does not handle, so only that
 * thread enters a signal-delivery-stop. The tracer reads the plaintext, masks it in place
 * (length-preserving actions only), and resumes the thread with the signal suppressed. A
 * watchdog resumes a thread that waited longer than the bound, unmodified (failureMode open)
 * or with the whole read overwritten (closed). If the agent dies, the kernel detaches its
 * tracees and the suppressed-by-default signal is dropped: the threads run on, unmasked.
 */
#ifndef MESHMASK_TLS_STOP_H
#define MESHMASK_TLS_STOP_H

#include <stddef.h>
#include <stdint.h>

#include "meshmask/ssl.h"
#include "policy.h"

struct tls_stop;

/* Default bound on how long one thread stays stopped (ms). */
#define TLS_STOP_WATCHDOG_MS 50

/* The BPF maps of bpf/ssl.bpf.c the tracer works with (fds, borrowed). */
struct tls_stop_maps {
	int stops; /* ringbuf of struct mm_ssl_stop */
	int stop_sig; /* tgid -> signal */
	int unenforced; /* per-CPU counters, slot * MM_SSL_UNENF__COUNT + reason */
};

struct tls_stop_stats {
	uint64_t stops; /* threads held at the return of SSL_read */
	uint64_t rewritten; /* reads whose plaintext was changed */
	uint64_t masked; /* values masked */
	uint64_t partial; /* values split across two reads: only the later part was masked */
	uint64_t watchdog; /* threads resumed by the watchdog instead of after a rewrite */
	uint64_t stale; /* stops that did not match their record (resumed untouched) */
	uint64_t failed; /* reads the tracer could not read or write (resumed untouched) */
	uint64_t seized; /* processes under the tracer now */
	uint64_t skip_traced; /* processes skipped: traced by someone else (gdb, strace) */
	uint64_t skip_signal; /* processes skipped: they handle both SIGURG and SIGWINCH */
	uint64_t skip_denied; /* processes the kernel would not let the agent trace */
	uint64_t unenforced; /* covered reads not held (not seized yet, signal blocked, full) */
};

/*
 * Start the tracer thread. watchdog_ms bounds a stop (0 = TLS_STOP_WATCHDOG_MS); delay_ms
 * makes every rewrite that much slower (tests of the watchdog only; 0 in the agent).
 * 0 or -errno.
 */
int tls_stop_open(struct tls_stop **out, const struct tls_stop_maps *maps, const char *cgroup_root,
		  unsigned watchdog_ms, unsigned delay_ms);

/* Stop the tracer thread, which releases every tracee; NULL-safe. */
void tls_stop_close(struct tls_stop *s);

/*
 * The policy of each slot (NULL = none; references are taken, the array is borrowed) and the
 * cgroups (paths under the root, copied) whose processes are to be traced. Applied by the
 * tracer thread within a second; processes no longer covered are released.
 */
int tls_stop_configure(struct tls_stop *s, struct policy *const slots[MM_SSL_MAX_SLOTS],
		       char *const *cgroups, size_t n_cgroups);

/* Seize the processes of the configured cgroups now (before returning). Thread-safe. */
void tls_stop_rescan(struct tls_stop *s);

/* Counters since start; thread-safe. */
void tls_stop_get_stats(struct tls_stop *s, struct tls_stop_stats *out);

#endif
