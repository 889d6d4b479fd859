/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ABI between bpf/ssl.bpf.c (OpenSSL uprobes) and agent/tls/tls.c: map keys and values, the
 * ringbuf record that carries captured plaintext, drop reasons. Only <linux/types.h> types.
 */
#ifndef MESHMASK_SSL_H
#define MESHMASK_SSL_H

/* BPF programs get the same types from vmlinux.h, which clashes with the uapi header. */
#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Plaintext bytes per ringbuf record (one TLS record's worth). */
#define MM_SSL_CHUNK 16384
/* Records emitted for one SSL_read/SSL_write call; bytes past this are counted as dropped. */
#define MM_SSL_MAX_CHUNKS 16
/* Policy slots the agent hands out (covered_cgroups values, drop counters). */
#define MM_SSL_MAX_SLOTS 64

/* mm_ssl_event.direction */
#define MM_SSL_DIR_READ 1 /* SSL_read / SSL_read_ex: bytes the process received */
#define MM_SSL_DIR_WRITE 2 /* SSL_write / SSL_write_ex: bytes the process sent */
#define MM_SSL_DIR_CLOSE 3 /* SSL_free: no data, the stream of this SSL object ends */

/* mm_ssl_event.flags */
#define MM_SSL_F_LAST 0x1u /* last record of this call */
#define MM_SSL_F_TRUNCATED 0x2u /* the call moved more bytes than were captured (a gap) */

/* Drop reasons: index (slot * MM_SSL_DROP__COUNT + reason) into the per-CPU `drops` array. */
#define MM_SSL_DROP_RINGBUF 0 /* ringbuf had no room for a record */
#define MM_SSL_DROP_TRUNCATED 1 /* bytes beyond MM_SSL_MAX_CHUNKS records of one call */
#define MM_SSL_DROP_READ 2 /* bpf_probe_read_user failed (page not present) */
#define MM_SSL_DROP__COUNT 3

/* mm_ssl_cover.flags */
#define MM_SSL_COVER_STOP 0x1u /* the policy enforces with stop-rewrite (SSL_read results) */

/* Value of covered_cgroups (key: __u64 cgroup v2 id). */
struct mm_ssl_cover {
	__u32 slot; /* policy slot, < MM_SSL_MAX_SLOTS */
	__u32 flags; /* MM_SSL_COVER_* */
};
_Static_assert(sizeof(struct mm_ssl_cover) == 8, "mm_ssl_cover ABI");

/* Key of ssl_conns: one SSL object in one process. Zero-initialise (pad). */
struct mm_ssl_key {
	__u32 tgid;
	__u32 pad;
	__u64 ssl; /* SSL * in that process */
};
_Static_assert(sizeof(struct mm_ssl_key) == 16, "mm_ssl_key ABI");

/* The socket under an SSL object, read from the kernel's socket when its fd became known. */
struct mm_ssl_conn {
	__s32 fd; /* -1 when not known */
	__u16 family; /* AF_INET, AF_INET6, 0 = fd known but not a TCP/IP socket (yet) */
	__u16 lport; /* local port, host order */
	__u16 rport; /* remote port, host order */
	__u16 pad;
	__u32 pad2;
	__u8 laddr[16]; /* network order; IPv4 in the first 4 bytes */
	__u8 raddr[16];
};
_Static_assert(sizeof(struct mm_ssl_conn) == 48, "mm_ssl_conn ABI");

/* One drop counter (per CPU). */
struct mm_ssl_drop {
	__u64 events;
	__u64 bytes;
};
_Static_assert(sizeof(struct mm_ssl_drop) == 16, "mm_ssl_drop ABI");

/* Ringbuf record header; `len` bytes of plaintext follow it. */
struct mm_ssl_event {
	__u64 ts_ns; /* bpf_ktime_get_ns() at the return of the call */
	__u64 cgroup_id; /* cgroup v2 id of the calling thread */
	__u64 ssl; /* SSL * in the process */
	__u32 pid; /* tgid */
	__u32 tid;
	__u32 len; /* bytes of data in this record, <= MM_SSL_CHUNK */
	__u32 offset; /* offset of this record's data within the call */
	__u32 total; /* bytes the call moved (confirmed at return) */
	__u32 slot; /* policy slot of the cgroup at capture time */
	__u8 direction; /* MM_SSL_DIR_* */
	__u8 flags; /* MM_SSL_F_* */
	__u16 pad;
	__u32 pad2;
	__u8 comm[16];
	struct mm_ssl_conn conn; /* fd -1 and family 0 when not known */
};
_Static_assert(sizeof(struct mm_ssl_event) == 120, "mm_ssl_event ABI");

/*
 * Probes are attached per process (a pid filter: the kernel puts breakpoints only in that
 * process's memory), so the agent must hear at once of processes that become covered: BPF
 * sends an mm_ssl_proc record on the `procs` ringbuf when a covered process execs or forks a
 * new process, and when a process moves into a covered cgroup.
 */
#define MM_SSL_PROC_EXEC 1
#define MM_SSL_PROC_FORK 2
#define MM_SSL_PROC_MOVE 3

struct mm_ssl_proc {
	__u64 ts_ns; /* bpf_ktime_get_ns() at the event (CLOCK_MONOTONIC) */
	__u64 cgroup_id; /* cgroup v2 id the process is in */
	__u32 pid; /* tgid of the process to probe */
	__u32 why; /* MM_SSL_PROC_* */
};
_Static_assert(sizeof(struct mm_ssl_proc) == 24, "mm_ssl_proc ABI");

/*
 * Stop-rewrite (spec.tls.enforce: stop-rewrite). The agent ptrace-seizes the processes of
 * covered cgroups and puts their signal in stop_sig; at the return of SSL_read(_ex) BPF sends
 * that signal to the calling thread only, which enters a signal-delivery-stop, and tells the
 * agent (a `stops` record) where the plaintext is. The agent rewrites it and resumes the thread
 * with the signal suppressed.
 */
#define MM_SSL_STOP_READ 1 /* the thread stops with `sig`: rewrite buf[0, len) */
#define MM_SSL_STOP_SEIZE 2 /* a process of a covered cgroup exec'd: seize it */

/* Why a covered SSL_read was not held: index slot * MM_SSL_UNENF__COUNT + reason into the
 * per-CPU `unenforced` array (counts of calls). */
#define MM_SSL_UNENF_UNTRACED 0 /* not held by the agent (not seized yet, or it cannot be) */
#define MM_SSL_UNENF_BLOCKED 1 /* the thread blocks the stop signal */
#define MM_SSL_UNENF_RINGBUF 2 /* no room for the stop record, or the signal failed */
#define MM_SSL_UNENF__COUNT 3

/* Record of the `stops` ringbuf. */
struct mm_ssl_stop {
	__u64 ts_ns; /* bpf_ktime_get_ns() when the signal was sent */
	__u64 ssl; /* SSL * in the process */
	__u64 buf; /* user address of the plaintext (READ) */
	__u64 ip; /* instruction and stack pointer the thread resumes with (READ) */
	__u64 sp;
	__u32 pid; /* tgid */
	__u32 tid;
	__u32 len; /* bytes the call returned (READ) */
	__u32 slot;
	__u32 kind; /* MM_SSL_STOP_* */
	__u32 sig; /* the signal sent (READ) */
};
_Static_assert(sizeof(struct mm_ssl_stop) == 64, "mm_ssl_stop ABI");

#endif
