// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * OpenSSL uprobes: capture the plaintext that covered processes pass to SSL_write/SSL_write_ex
 * and receive from SSL_read/SSL_read_ex, and hand it to the agent through a ringbuf.
 *
 * A shared libssl fires for every process on the node, so every program checks the caller's
 * cgroup against covered_cgroups before it touches anything else. Data is read at the return
 * of the call: by then OpenSSL has itself touched every byte of the buffer, so the pages are
 * present and a non-sleepable bpf_probe_read_user does not miss them.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#include "meshmask/ssl.h"
#include "ssl_sock.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * Wake the consumer only once this many bytes wait in the ringbuf; it also polls on a short
 * timer. A wake-up per record costs the application a context switch on every SSL call.
 * Set before load (the agent uses an eighth of the ringbuf); 0 = wake for every record.
 */
const volatile __u64 wakeup_bytes = 1 << 20;

/* The agent's tgid (set before load): threads it traces may be stopped for stop-rewrite. */
const volatile __u32 tracer_tgid = 0;
/* How long the first SSL_read of a process not seized yet waits for the agent to seize it. */
const volatile __u64 hold_ns = 50000000;

#define MM_PT_PTRACED 0x1 /* task_struct.ptrace: the task is traced */

/* cgroup v2 id -> policy slot; filled by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct mm_ssl_cover);
} covered_cgroups SEC(".maps");

/* An SSL_* call in progress, by pid_tgid (a thread is in at most one). */
struct ssl_call {
	__u64 ssl;
	__u64 buf;
	__u64 num;
	__u64 out_len; /* size_t * of the _ex variants, 0 otherwise */
	__u32 slot;
	__u32 direction;
	__u32 cover_flags; /* MM_SSL_COVER_* of the caller's cgroup at entry */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct ssl_call);
} calls SEC(".maps");

/* (tgid, SSL *) -> its socket, from SSL_set_fd or from socket I/O made inside an SSL call. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct mm_ssl_key);
	__type(value, struct mm_ssl_conn);
} ssl_conns SEC(".maps");

/*
 * The socket each covered thread last read from, by pid_tgid. OpenSSL over memory BIOs (node)
 * never touches the socket inside SSL_read: the event loop reads it and feeds the BIO, then
 * calls SSL_read on the same thread, so the last socket read names the connection.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct mm_ssl_conn);
} last_read SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MM_SSL_MAX_SLOTS *MM_SSL_DROP__COUNT);
	__type(key, __u32);
	__type(value, struct mm_ssl_drop);
} drops SEC(".maps");

/* Processes that became covered (meshmask/ssl.h, mm_ssl_proc): the agent probes them. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 << 10);
} procs SEC(".maps");

/* tgid -> 1 while the agent has probes attached for that process (filled by the agent). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u32);
} probed SEC(".maps");

/*
 * tgid -> TCP/IP socket sends and receives a covered process made while it had no probes:
 * the window between a process becoming covered and its probes being in place. The agent
 * reads and deletes the entry when it attaches (what may have been missed).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} unprobed_io SEC(".maps");

/* Stop-rewrite: records for the agent's tracer (see meshmask/ssl.h), always woken at once. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 << 10);
} stops SEC(".maps");

/* tgid -> the signal that stops its threads, set by the agent once it has seized them all;
 * 0 for a process it will not hold (no usable signal, ptrace refused). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u32);
} stop_sig SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MM_SSL_MAX_SLOTS *MM_SSL_UNENF__COUNT);
	__type(key, __u32);
	__type(value, __u64);
} unenforced SEC(".maps");

struct scratch {
	struct mm_ssl_event hdr;
	__u8 data[MM_SSL_CHUNK];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

static __always_inline void count_drop(__u32 slot, __u32 reason, __u64 bytes)
{
	__u32 key = slot * MM_SSL_DROP__COUNT + reason;
	struct mm_ssl_drop *d = bpf_map_lookup_elem(&drops, &key);

	if (d) {
		d->events++;
		d->bytes += bytes;
	}
}

static __always_inline struct mm_ssl_cover *covered(void)
{
	__u64 cgid = bpf_get_current_cgroup_id();

	return bpf_map_lookup_elem(&covered_cgroups, &cgid);
}

static __always_inline int enter(void *ssl, const void *buf, __u64 num, void *out_len,
				 __u32 direction)
{
	struct mm_ssl_cover *cover = covered();

	if (!cover)
		return 0;
	struct ssl_call c = {
		.ssl = (__u64)ssl,
		.buf = (__u64)buf,
		.num = num,
		.out_len = (__u64)out_len,
		.slot = cover->slot,
		.direction = direction,
		.cover_flags = cover->flags,
	};
	__u64 id = bpf_get_current_pid_tgid();

	bpf_map_update_elem(&calls, &id, &c, BPF_ANY);
	if (direction != MM_SSL_DIR_READ)
		return 0;
	struct mm_ssl_key key = {.tgid = id >> 32, .ssl = (__u64)ssl};
	struct mm_ssl_conn *last = bpf_map_lookup_elem(&last_read, &id);

	if (last && !bpf_map_lookup_elem(&ssl_conns, &key))
		bpf_map_update_elem(&ssl_conns, &key, last, BPF_NOEXIST);
	return 0;
}

struct emit_ctx {
	struct mm_ssl_event hdr;
	__u64 buf;
	__u64 captured; /* bytes to capture: min(total, MM_SSL_MAX_CHUNKS * MM_SSL_CHUNK) */
};

static __always_inline __u64 wakeup_flag(void)
{
	if (!wakeup_bytes || bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

static long emit_chunk(__u32 i, void *arg)
{
	struct emit_ctx *e = arg;
	__u64 off = (__u64)i * MM_SSL_CHUNK;
	__u32 zero = 0;

	if (off >= e->captured)
		return 1;
	__u64 n = e->captured - off;
	if (n > MM_SSL_CHUNK)
		n = MM_SSL_CHUNK;
	barrier_var(n);
	if (n > MM_SSL_CHUNK)
		return 1;

	struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
	if (!s)
		return 1;
	s->hdr = e->hdr;
	s->hdr.offset = off;
	s->hdr.len = n;
	if (off + n >= e->captured)
		s->hdr.flags |= MM_SSL_F_LAST;
	if (bpf_probe_read_user(s->data, n, (const void *)(e->buf + off))) {
		count_drop(e->hdr.slot, MM_SSL_DROP_READ, e->captured - off);
		return 1;
	}
	if (bpf_ringbuf_output(&events, s, sizeof(s->hdr) + n, wakeup_flag()))
		count_drop(e->hdr.slot, MM_SSL_DROP_RINGBUF, n);
	return 0;
}

static __always_inline void count_unenforced(__u32 slot, __u32 reason)
{
	__u32 key = slot * MM_SSL_UNENF__COUNT + reason;
	__u64 *n = bpf_map_lookup_elem(&unenforced, &key);

	if (n)
		(*n)++;
}

/* Whether the agent (tracer_tgid) ptrace-traces task. */
static __always_inline bool traced_by_agent(struct task_struct *task)
{
	if (!tracer_tgid || !(BPF_CORE_READ(task, ptrace) & MM_PT_PTRACED))
		return false;
	return BPF_CORE_READ(task, parent, tgid) == tracer_tgid;
}

static __always_inline void stop_notify(__u32 kind, __u32 pid)
{
	struct mm_ssl_stop *r = bpf_ringbuf_reserve(&stops, sizeof(*r), 0);

	if (!r)
		return;
	__builtin_memset(r, 0, sizeof(*r));
	r->ts_ns = bpf_ktime_get_ns();
	r->kind = kind;
	r->pid = pid;
	bpf_ringbuf_submit(r, BPF_RB_FORCE_WAKEUP);
}

/*
 * Stop-rewrite: hold the calling thread at the return of SSL_read until the agent rewrote
 * buf[0, len). The signal is queued for this thread only; on its way back to user space it
 * enters a signal-delivery-stop, which its tracer (the agent) ends with the signal suppressed.
 * If the agent is gone, the kernel has detached the thread and the signal, ignored by default,
 * is not acted upon.
 */
static __always_inline void stop_for_rewrite(struct pt_regs *ctx, const struct ssl_call *call,
					     __u64 len)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	__u32 *sig = bpf_map_lookup_elem(&stop_sig, &tgid);

	if (!sig || !traced_by_agent(task)) {
		count_unenforced(call->slot, MM_SSL_UNENF_UNTRACED);
		return;
	}
	__u32 s = *sig;
	/* 0: the agent knows the process but cannot hold it (it handles both signals). */
	if (s < 1 || s > 64) {
		count_unenforced(call->slot, MM_SSL_UNENF_UNTRACED);
		return;
	}
	/* A blocked signal would stop the thread later, at some unrelated point. */
	if (BPF_CORE_READ(task, blocked.sig[0]) & (1ULL << (s - 1))) {
		count_unenforced(call->slot, MM_SSL_UNENF_BLOCKED);
		return;
	}
	struct mm_ssl_stop *r = bpf_ringbuf_reserve(&stops, sizeof(*r), 0);

	if (!r) {
		count_unenforced(call->slot, MM_SSL_UNENF_RINGBUF);
		return;
	}
	r->ts_ns = bpf_ktime_get_ns();
	r->ssl = call->ssl;
	r->buf = call->buf;
	r->ip = PT_REGS_IP(ctx);
	r->sp = PT_REGS_SP(ctx);
	r->pid = tgid;
	r->tid = (__u32)id;
	r->len = len > 0xffffffffULL ? 0xffffffffU : (__u32)len;
	r->slot = call->slot;
	r->kind = MM_SSL_STOP_READ;
	r->sig = s;
	if (bpf_send_signal_thread(s)) {
		bpf_ringbuf_discard(r, 0);
		count_unenforced(call->slot, MM_SSL_UNENF_RINGBUF);
		return;
	}
	/* The stop itself wakes the tracer (it waits for its tracees), which then reads this. */
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
}

static __always_inline int leave(struct pt_regs *ctx, long ret, bool ex)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ssl_call *c = bpf_map_lookup_elem(&calls, &id);

	if (!c)
		return 0;
	struct ssl_call call = *c;
	bpf_map_delete_elem(&calls, &id);

	__u64 total;
	if (ex) {
		size_t moved = 0;

		if (ret <= 0 || !call.out_len ||
		    bpf_probe_read_user(&moved, sizeof(moved), (const void *)call.out_len))
			return 0;
		total = moved;
	} else {
		if (ret <= 0)
			return 0;
		total = ret;
	}
	if (total > call.num)
		total = call.num;
	if (!total)
		return 0;

	struct mm_ssl_key key = {.tgid = id >> 32, .ssl = call.ssl};
	struct mm_ssl_conn *conn = bpf_map_lookup_elem(&ssl_conns, &key);

	/* A socket given to SSL_set_fd before connect(): read its endpoints again. */
	if (conn && conn->fd >= 0 && !conn->rport)
		ssl_sock_of_fd(conn->fd, conn);
	struct emit_ctx e = {
		.hdr =
			{
				.ts_ns = bpf_ktime_get_ns(),
				.cgroup_id = bpf_get_current_cgroup_id(),
				.ssl = call.ssl,
				.pid = id >> 32,
				.tid = (__u32)id,
				.total = total > 0xffffffffULL ? 0xffffffffU : (__u32)total,
				.slot = call.slot,
				.direction = call.direction,
			},
		.buf = call.buf,
		.captured = total,
	};
	if (conn)
		e.hdr.conn = *conn;
	else
		e.hdr.conn.fd = -1;
	__u64 cap = (__u64)MM_SSL_MAX_CHUNKS * MM_SSL_CHUNK;

	if (total > cap) {
		e.captured = cap;
		e.hdr.flags = MM_SSL_F_TRUNCATED;
		count_drop(call.slot, MM_SSL_DROP_TRUNCATED, total - cap);
	}
	bpf_get_current_comm(e.hdr.comm, sizeof(e.hdr.comm));
	bpf_loop(MM_SSL_MAX_CHUNKS, emit_chunk, &e, 0);
	if (call.direction == MM_SSL_DIR_READ && (call.cover_flags & MM_SSL_COVER_STOP))
		stop_for_rewrite(ctx, &call, total);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_enter, void *ssl, const void *buf, int num)
{
	return enter(ssl, buf, num > 0 ? num : 0, NULL, MM_SSL_DIR_WRITE);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_write_leave, int ret)
{
	return leave(ctx, ret, false);
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_ex_enter, void *ssl, const void *buf, size_t num, size_t *written)
{
	return enter(ssl, buf, num, written, MM_SSL_DIR_WRITE);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_write_ex_leave, int ret)
{
	return leave(ctx, ret, true);
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_enter, void *ssl, void *buf, int num)
{
	return enter(ssl, buf, num > 0 ? num : 0, NULL, MM_SSL_DIR_READ);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_read_leave, int ret)
{
	return leave(ctx, ret, false);
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_ex_enter, void *ssl, void *buf, size_t num, size_t *readbytes)
{
	return enter(ssl, buf, num, readbytes, MM_SSL_DIR_READ);
}

SEC("uretprobe")
int BPF_KRETPROBE(ssl_read_ex_leave, int ret)
{
	return leave(ctx, ret, true);
}

SEC("uprobe")
int BPF_KPROBE(ssl_set_fd, void *ssl, int fd)
{
	if (!covered())
		return 0;
	struct mm_ssl_key key = {.tgid = bpf_get_current_pid_tgid() >> 32, .ssl = (__u64)ssl};
	struct mm_ssl_conn conn = {};

	ssl_sock_of_fd(fd, &conn);
	bpf_map_update_elem(&ssl_conns, &key, &conn, BPF_ANY);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_free, void *ssl)
{
	struct mm_ssl_cover *cover = covered();

	if (!cover || !ssl)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	struct mm_ssl_key key = {.tgid = id >> 32, .ssl = (__u64)ssl};
	struct mm_ssl_event ev = {
		.ts_ns = bpf_ktime_get_ns(),
		.cgroup_id = bpf_get_current_cgroup_id(),
		.ssl = (__u64)ssl,
		.pid = id >> 32,
		.tid = (__u32)id,
		.conn.fd = -1,
		.slot = cover->slot,
		.direction = MM_SSL_DIR_CLOSE,
		.flags = MM_SSL_F_LAST,
	};

	bpf_map_delete_elem(&ssl_conns, &key);
	if (bpf_ringbuf_output(&events, &ev, sizeof(ev), wakeup_flag()))
		count_drop(cover->slot, MM_SSL_DROP_RINGBUF, 0);
	return 0;
}

/*
 * Attribution for SSL objects whose fd was never given to SSL_set_fd (curl, s_client use a
 * socket BIO): the first socket read/write a thread makes inside an SSL call names the socket.
 * Outside SSL calls, only covered threads' socket reads are remembered (see last_read).
 *
 * Two ways to see that I/O. The sock_send_length/sock_recv_length tracepoints (Linux 6.3+)
 * fire in the socket layer only, with the socket at hand. Before them, sys_enter: attached, it
 * puts every syscall of every process on the node through the tracing entry path, and the fd
 * must be resolved. The agent loads the first where the kernel has it (tls.c).
 */
/*
 * Socket I/O (sk, or else fd) of the current thread, a receive when `recv`. Only covered callers
 * have SSL calls in flight (enter() records none for others) and reads worth remembering:
 * every other process on the node costs one lookup.
 */
static __always_inline void sock_io(struct sock *sk, int fd, bool recv)
{
	if (!covered())
		return;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;

	/* A covered process without probes (yet): count its TCP/IP socket I/O. Key 0: every
	 * process is probed (node-wide mode). */
	__u32 all = 0;

	if (sk && !bpf_map_lookup_elem(&probed, &tgid) && !bpf_map_lookup_elem(&probed, &all)) {
		__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

		if (family == MM_AF_INET || family == MM_AF_INET6) {
			__u64 one = 1, *n = bpf_map_lookup_elem(&unprobed_io, &tgid);

			if (n)
				__sync_fetch_and_add(n, 1);
			else
				bpf_map_update_elem(&unprobed_io, &tgid, &one, BPF_NOEXIST);
		}
	}
	struct ssl_call *c = bpf_map_lookup_elem(&calls, &id);
	struct mm_ssl_key key = {.tgid = id >> 32, .ssl = c ? c->ssl : 0};
	struct mm_ssl_conn conn = {.fd = -1};

	if (!c && !recv)
		return;
	if (c && bpf_map_lookup_elem(&ssl_conns, &key))
		return;
	/* The socket at hand (tracepoints), or behind the fd (sys_enter). */
	if (sk)
		ssl_conn_of_sk(sk, &conn);
	else
		ssl_sock_of_fd(fd, &conn);
	/* Only a TCP/IP socket names the connection (not a pipe or an eventfd). */
	if (!conn.family)
		return;
	if (c)
		bpf_map_update_elem(&ssl_conns, &key, &conn, BPF_NOEXIST);
	else /* a read outside an SSL call: remember the socket */
		bpf_map_update_elem(&last_read, &id, &conn, BPF_ANY);
}

SEC("tp_btf/sock_send_length")
int BPF_PROG(ssl_sock_send, struct sock *sk, int ret, int flags)
{
	sock_io(sk, -1, false);
	return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(ssl_sock_recv, struct sock *sk, int ret, int flags)
{
	sock_io(sk, -1, true);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(ssl_sys_enter, struct pt_regs *regs, long nr)
{
#if defined(__TARGET_ARCH_x86)
	/* read, write, readv, writev, sendto, recvfrom, sendmsg, recvmsg */
	if (nr == 0 || nr == 1 || nr == 19 || nr == 20 || (nr >= 44 && nr <= 47))
		sock_io(NULL, (int)BPF_CORE_READ(regs, di),
			nr == 0 || nr == 19 || nr == 45 || nr == 47);
#endif
	return 0;
}

static __always_inline void proc_notify(__u32 why, __u32 pid, __u64 cgroup_id)
{
	struct mm_ssl_proc *r = bpf_ringbuf_reserve(&procs, sizeof(*r), 0);

	if (!r)
		return;
	r->ts_ns = bpf_ktime_get_ns();
	r->cgroup_id = cgroup_id;
	r->pid = pid;
	r->why = why;
	bpf_ringbuf_submit(r, BPF_RB_FORCE_WAKEUP);
}

/*
 * A process starting in a covered cgroup: the agent probes it (its libraries are mapped by the
 * dynamic loader after this, and a pid-filtered uprobe is installed at that mapping), and, for
 * stop-rewrite, seizes it before it reads anything. Every exec on the node pays one lookup.
 */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(ssl_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	struct mm_ssl_cover *cover = covered();

	if (!cover)
		return 0;
	__u32 tgid = BPF_CORE_READ(p, tgid);

	proc_notify(MM_SSL_PROC_EXEC, tgid, bpf_get_current_cgroup_id());
	if (cover->flags & MM_SSL_COVER_STOP)
		stop_notify(MM_SSL_STOP_SEIZE, tgid);
	return 0;
}

/*
 * A covered process forked a new process (not a thread): the child shares the parent's
 * libraries but not its probes (a pid filter names one process), so it needs its own.
 */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(ssl_fork, struct task_struct *parent, struct task_struct *child)
{
	if (!covered())
		return 0;
	__u32 pid = BPF_CORE_READ(child, pid);

	if (pid == (__u32)BPF_CORE_READ(child, tgid))
		proc_notify(MM_SSL_PROC_FORK, pid, bpf_get_current_cgroup_id());
	return 0;
}

/* A process (or one of its threads) moved into a covered cgroup. */
SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(ssl_cgroup_move, struct cgroup *dst, const char *path, struct task_struct *task,
	     bool threadgroup)
{
	__u64 id = BPF_CORE_READ(dst, kn, id);

	if (bpf_map_lookup_elem(&covered_cgroups, &id))
		proc_notify(MM_SSL_PROC_MOVE, BPF_CORE_READ(task, tgid), id);
	return 0;
}

struct hold_ctx {
	__u64 deadline;
	__u32 tgid;
	__u32 seized;
};

static long hold_step(__u32 i, void *arg)
{
	struct hold_ctx *h = arg;

	if (bpf_map_lookup_elem(&stop_sig, &h->tgid)) {
		h->seized = 1;
		return 1;
	}
	return bpf_ktime_get_ns() > h->deadline;
}

/*
 * Stop-rewrite, at the entry of SSL_read(_ex): a covered process that the agent has not
 * seized yet (it raced the seize that its exec asked for, or it was forked or moved into the
 * cgroup) asks for it and waits, a bounded time, until the agent has it. Sleepable, so the wait
 * can be preempted; a thread traced by another tracer (a debugger) is left alone.
 */
SEC("uprobe.s")
int BPF_KPROBE(ssl_read_hold)
{
	struct mm_ssl_cover *cover = covered();

	if (!cover || !(cover->flags & MM_SSL_COVER_STOP) || !tracer_tgid)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct hold_ctx h = {.tgid = bpf_get_current_pid_tgid() >> 32};

	if (bpf_map_lookup_elem(&stop_sig, &h.tgid) || BPF_CORE_READ(task, ptrace))
		return 0;
	stop_notify(MM_SSL_STOP_SEIZE, h.tgid);
	h.deadline = bpf_ktime_get_ns() + hold_ns;
	bpf_loop(1 << 23, hold_step, &h, 0);
	return 0;
}
