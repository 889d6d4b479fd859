/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Stop-rewrite (see tls_stop.h). Three threads:
 * - the tracer, the one thread that seizes, waits for and resumes tracees (ptrace ties a
 *   tracee to its tracer thread). It sleeps in waitpid(), so every stop of a tracee (ours, and
 *   the signals the application receives, which a tracer sees first) is handled at once;
 * - the waker, which interrupts that waitpid() with SR_WAKE_SIG when there is other work: a
 *   process to seize (the `stops` ringbuf), a configuration change, the periodic rescan;
 * - the worker, which masks. The tracer never waits for it past a stop's deadline, so a slow
 *   or stuck mask cannot hold an application thread longer than the watchdog bound.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/eventfd.h>
#include <sys/ptrace.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "cgroup.h"
#include "log.h"
#include "tls_scan.h"
#include "tls_stop.h"

#define SR_MAX_STREAMS 1024
/* Larger reads are not rewritten (OpenSSL returns at most one 16 KiB record per call). */
#define SR_MAX_READ (1u << 20)
#define SR_PENDING 1024
#define SR_RESCAN_NS 1000000000ull
/* Interrupts the tracer's waitpid(); its handler does nothing. */
#define SR_WAKE_SIG (SIGRTMIN + 7)
/* Before sleeping on the condition variable, each side of the tracer/worker hand-off polls
 * this long: reads come back to back, and a futex sleep + wake-up per read costs more. */
#define SR_SPIN_NS 100000ull

struct sr_proc {
	uint32_t tgid;
	int sig;
	uint64_t gen; /* rescan generation that last found it in a covered cgroup */
};

struct sr_stream {
	uint32_t pid;
	uint64_t ssl;
	uint64_t last; /* use counter, for eviction */
	struct tls_mask_stream mask;
};

/* One rewrite handed to the worker. Written by the tracer only while the worker is idle. */
struct sr_job {
	uint32_t pid;
	uint64_t ssl;
	struct policy *pol; /* a reference, dropped by the worker */
	char *data; /* the plaintext, rewritten in place */
	size_t len;
	size_t masked, partial;
};

struct tls_stop {
	struct tls_stop_maps maps;
	char cgroup_root[4096];
	uint64_t watchdog_ns;
	unsigned test_delay_ms;
	pid_t self;

	pthread_t tracer, worker, waker;
	bool tracer_started, worker_started, waker_started;
	atomic_bool quit;
	atomic_int tracer_tid;
	atomic_uint_fast64_t poke_seq, poke_ack; /* the waker signals until the tracer acks */
	int efd; /* wakes the waker: configuration, rescan, quit */
	int epfd; /* the waker's: efd and the stops ringbuf (edge-triggered) */
	struct ring_buffer *rb; /* consumed by the tracer only */

	/* Configuration handed to the tracer. */
	pthread_mutex_t cfg_lock;
	pthread_cond_t cfg_cond;
	bool cfg_new;
	struct policy *cfg_slots[MM_SSL_MAX_SLOTS];
	char **cfg_cgroups;
	size_t cfg_n;
	uint64_t rescan_req, rescan_done;

	/* The tracer's own. */
	struct policy *slots[MM_SSL_MAX_SLOTS];
	char **cgroups;
	size_t n_cgroups;
	struct sr_proc *procs;
	size_t n_procs, cap_procs;
	uint64_t gen;
	struct mm_ssl_stop pending[SR_PENDING]; /* by tid, open addressing; tid 0 = free */
	uint32_t seize_q[256];
	size_t n_seize;
	bool seize_overflow;
	char *buf; /* the tracer's copy of a read */
	char *wbuf; /* the job's copy (the worker's while it is busy) */
	uint32_t skipped[64]; /* processes recently skipped: counted and logged once */
	size_t skip_next;

	/* Tracer <-> worker. */
	pthread_mutex_t w_lock;
	pthread_cond_t w_cond;
	atomic_bool w_busy; /* written under w_lock, read without it while spinning */
	_Atomic uint64_t w_seq, w_done;
	struct sr_job job;
	struct sr_stream *streams; /* the worker's */
	size_t n_streams;
	uint64_t stream_clock;

	pthread_mutex_t st_lock;
	struct tls_stop_stats stats;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void stat_add(struct tls_stop *s, uint64_t *field, uint64_t n)
{
	pthread_mutex_lock(&s->st_lock);
	*field += n;
	pthread_mutex_unlock(&s->st_lock);
}

/* ---- the worker: length-preserving masking with per-stream context ---- */

static struct sr_stream *stream_get(struct tls_stop *s, uint32_t pid, uint64_t ssl)
{
	struct sr_stream *lru = NULL;
	for (size_t i = 0; i < s->n_streams; i++) {
		struct sr_stream *st = &s->streams[i];
		if (st->pid == pid && st->ssl == ssl)
			return st;
		if (!lru || st->last < lru->last)
			lru = st;
	}
	struct sr_stream *st = s->n_streams < SR_MAX_STREAMS ? &s->streams[s->n_streams++] : lru;
	st->pid = pid;
	st->ssl = ssl;
	st->mask.n = 0;
	return st;
}

static void mask_job(struct tls_stop *s, struct sr_job *j, char *scratch)
{
	struct sr_stream *st = stream_get(s, j->pid, j->ssl);
	st->last = ++s->stream_clock;
	long n = tls_mask_read(&st->mask, j->pol, j->data, j->len, scratch, &j->partial);
	j->masked = n > 0 ? (size_t)n : 0;
}

/* The daemon's main thread waits for SIGTERM in pause(): these threads must not take it. */
static void block_signals(void)
{
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
}

static void *worker_main(void *arg)
{
	struct tls_stop *s = arg;
	block_signals();
	char *text = malloc(TLS_MASK_TAIL + SR_MAX_READ);
	pthread_mutex_lock(&s->w_lock);
	while (!atomic_load(&s->quit)) {
		if (!s->w_busy || s->w_done == s->w_seq) {
			pthread_mutex_unlock(&s->w_lock);
			uint64_t until = mono_ns() + SR_SPIN_NS;
			while (!(atomic_load(&s->w_busy) && s->w_done != s->w_seq) &&
			       !atomic_load(&s->quit) && mono_ns() < until)
				sched_yield();
			pthread_mutex_lock(&s->w_lock);
			if (!s->w_busy || s->w_done == s->w_seq)
				pthread_cond_wait(&s->w_cond, &s->w_lock);
			continue;
		}
		uint64_t seq = s->w_seq;
		struct sr_job *j = &s->job;
		pthread_mutex_unlock(&s->w_lock);
		if (s->test_delay_ms)
			usleep(s->test_delay_ms * 1000u);
		if (text)
			mask_job(s, j, text);
		policy_unref(j->pol);
		j->pol = NULL;
		pthread_mutex_lock(&s->w_lock);
		s->w_done = seq;
		s->w_busy = false;
		pthread_cond_broadcast(&s->w_cond);
	}
	pthread_mutex_unlock(&s->w_lock);
	free(text);
	return NULL;
}

static void abs_deadline(struct timespec *ts, uint64_t deadline_ns)
{
	ts->tv_sec = (time_t)(deadline_ns / 1000000000ull);
	ts->tv_nsec = (long)(deadline_ns % 1000000000ull);
}

/*
 * Have the worker mask s->buf[0, len) before deadline (CLOCK_MONOTONIC ns). Returns 1 when it
 * did (s->buf rewritten, counts set), 0 when the deadline passed first (s->buf untouched).
 */
static int run_job(struct tls_stop *s, const struct mm_ssl_stop *rec, struct policy *pol,
		   size_t len, uint64_t deadline, size_t *masked, size_t *partial)
{
	struct timespec ts;
	abs_deadline(&ts, deadline);
	int done = 0;
	if (mono_ns() >= deadline)
		return 0;
	pthread_mutex_lock(&s->w_lock);
	/* The worker may still be on a job the watchdog gave up on. */
	while (s->w_busy && !atomic_load(&s->quit))
		if (pthread_cond_timedwait(&s->w_cond, &s->w_lock, &ts) == ETIMEDOUT)
			break;
	if (!s->w_busy) {
		memcpy(s->wbuf, s->buf, len);
		s->job = (struct sr_job){
			.pid = rec->pid,
			.ssl = rec->ssl,
			.pol = policy_ref(pol),
			.data = s->wbuf,
			.len = len,
		};
		uint64_t seq = ++s->w_seq;
		s->w_busy = true;
		pthread_cond_broadcast(&s->w_cond);
		pthread_mutex_unlock(&s->w_lock);
		uint64_t until = mono_ns() + SR_SPIN_NS;
		if (until > deadline)
			until = deadline;
		while (s->w_done != seq && !atomic_load(&s->quit) && mono_ns() < until)
			sched_yield();
		pthread_mutex_lock(&s->w_lock);
		while (s->w_done != seq && !atomic_load(&s->quit))
			if (pthread_cond_timedwait(&s->w_cond, &s->w_lock, &ts) == ETIMEDOUT)
				break;
		if (s->w_done == seq) {
			done = 1;
			memcpy(s->buf, s->wbuf, len);
			*masked = s->job.masked;
			*partial = s->job.partial;
		}
	}
	pthread_mutex_unlock(&s->w_lock);
	return done;
}

/* ---- the tracer ---- */

static struct sr_proc *proc_find(struct tls_stop *s, uint32_t tgid)
{
	for (size_t i = 0; i < s->n_procs; i++)
		if (s->procs[i].tgid == tgid)
			return &s->procs[i];
	return NULL;
}

static void proc_remove(struct tls_stop *s, uint32_t tgid)
{
	struct sr_proc *p = proc_find(s, tgid);
	if (!p)
		return;
	bpf_map_delete_elem(s->maps.stop_sig, &tgid);
	*p = s->procs[--s->n_procs];
	pthread_mutex_lock(&s->st_lock);
	s->stats.seized = s->n_procs;
	pthread_mutex_unlock(&s->st_lock);
}

static size_t pending_slot(uint32_t tid)
{
	return (tid * 2654435761u) % SR_PENDING;
}

static void pending_put(struct tls_stop *s, const struct mm_ssl_stop *rec)
{
	size_t i = pending_slot(rec->tid);
	for (size_t k = 0; k < SR_PENDING; k++, i = (i + 1) % SR_PENDING) {
		if (!s->pending[i].tid || s->pending[i].tid == rec->tid) {
			s->pending[i] = *rec;
			return;
		}
	}
}

static struct mm_ssl_stop *pending_find(struct tls_stop *s, uint32_t tid)
{
	size_t i = pending_slot(tid);
	for (size_t k = 0; k < SR_PENDING; k++, i = (i + 1) % SR_PENDING) {
		if (s->pending[i].tid == tid)
			return &s->pending[i];
		if (!s->pending[i].tid)
			return NULL;
	}
	return NULL;
}

/* Remove an entry, re-placing the ones after it in its probe run. */
static void pending_drop(struct tls_stop *s, uint32_t tid)
{
	struct mm_ssl_stop *e = pending_find(s, tid);
	if (!e)
		return;
	size_t i = (size_t)(e - s->pending);
	s->pending[i].tid = 0;
	for (size_t j = (i + 1) % SR_PENDING; s->pending[j].tid; j = (j + 1) % SR_PENDING) {
		struct mm_ssl_stop r = s->pending[j];
		s->pending[j].tid = 0;
		pending_put(s, &r);
	}
}

static int on_record(void *ctx, void *data, size_t size)
{
	struct tls_stop *s = ctx;
	struct mm_ssl_stop rec;
	if (size < sizeof(rec))
		return 0;
	memcpy(&rec, data, sizeof(rec));
	switch (rec.kind) {
	case MM_SSL_STOP_READ:
		if (rec.tid)
			pending_put(s, &rec);
		break;
	case MM_SSL_STOP_SEIZE:
		if (s->n_seize < sizeof(s->seize_q) / sizeof(s->seize_q[0]))
			s->seize_q[s->n_seize++] = rec.pid;
		else
			s->seize_overflow = true;
		break;
	}
	return 0;
}

/* Whether pid was skipped already (else remember it): counters count processes. */
static bool skipped_before(struct tls_stop *s, uint32_t pid)
{
	for (size_t i = 0; i < 64; i++)
		if (s->skipped[i] == pid)
			return true;
	s->skipped[s->skip_next++ % 64] = pid;
	return false;
}

/* Tell BPF the process is known but not enforced (signal 0): its reads are not held while
 * waiting for a seize that will not come. */
static void mark_skipped(struct tls_stop *s, uint32_t pid)
{
	uint32_t none = 0;
	bpf_map_update_elem(s->maps.stop_sig, &pid, &none, BPF_ANY);
}

/* Forget skipped processes that have exited. */
static void prune_skipped(struct tls_stop *s)
{
	for (size_t i = 0; i < 64; i++) {
		uint32_t pid = s->skipped[i];
		if (pid && kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
			bpf_map_delete_elem(s->maps.stop_sig, &pid);
			s->skipped[i] = 0;
		}
	}
}

/* Fields of /proc/PID/status the tracer needs. */
static int read_status(uint32_t pid, uint32_t *tgid, uint32_t *tracer, uint64_t *caught)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%u/status", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	*tgid = *tracer = 0;
	*caught = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned v;
		unsigned long long x;
		if (sscanf(line, "Tgid: %u", &v) == 1)
			*tgid = v;
		else if (sscanf(line, "TracerPid: %u", &v) == 1)
			*tracer = v;
		else if (sscanf(line, "SigCgt: %llx", &x) == 1)
			*caught = x;
	}
	fclose(f);
	return 0;
}

/*
 * Seize every thread of process pid (no stop; new threads follow through TRACECLONE), then
 * publish its stop signal to BPF. A process that handles both candidate signals, or is traced
 * by another tracer, is left alone and counted.
 */
static void seize(struct tls_stop *s, uint32_t pid)
{
	uint32_t tgid, tracer;
	uint64_t caught;
	if (pid == (uint32_t)s->self || read_status(pid, &tgid, &tracer, &caught) < 0 ||
	    tgid != pid)
		return;
	struct sr_proc *known = proc_find(s, pid);
	if (known) {
		known->gen = s->gen;
		/* It started handling its stop signal: switch to the other one if free. */
		int other = known->sig == SIGURG ? SIGWINCH : SIGURG;
		if ((caught & (1ull << (known->sig - 1))) && !(caught & (1ull << (other - 1)))) {
			uint32_t v = (uint32_t)other;
			known->sig = other;
			bpf_map_update_elem(s->maps.stop_sig, &pid, &v, BPF_ANY);
		}
		return;
	}
	/* TracerPid names the tracer thread; the agent's own threads are its process. */
	uint32_t tracer_tgid = 0, x;
	uint64_t y;
	if (tracer && read_status(tracer, &tracer_tgid, &x, &y) < 0)
		tracer_tgid = tracer;
	if (tracer && tracer_tgid != (uint32_t)s->self) {
		if (skipped_before(s, pid))
			return;
		stat_add(s, &s->stats.skip_traced, 1);
		agent_log(AGENT_LOG_INFO, "tls: pid %u is traced by pid %u: not enforced", pid,
			  tracer);
		return;
	}
	/* A signal the process does not handle: should it ever be delivered (the agent died
	 * between sending and stopping), its default action is to be ignored. */
	int sig = !(caught & (1ull << (SIGURG - 1)))	 ? SIGURG
		  : !(caught & (1ull << (SIGWINCH - 1))) ? SIGWINCH
							 : 0;
	if (!sig) {
		if (skipped_before(s, pid))
			return;
		mark_skipped(s, pid);
		stat_add(s, &s->stats.skip_signal, 1);
		agent_log(AGENT_LOG_INFO,
			  "tls: pid %u handles SIGURG and SIGWINCH: stop-rewrite not enforced",
			  pid);
		return;
	}
	size_t seized = 0;
	int denied = 0;
	for (int round = 0; round < 4; round++) {
		char path[64];
		snprintf(path, sizeof(path), "/proc/%u/task", pid);
		DIR *d = opendir(path);
		if (!d)
			break;
		size_t fresh = 0;
		struct dirent *de;
		while ((de = readdir(d))) {
			long tid = strtol(de->d_name, NULL, 10);
			if (tid <= 0)
				continue;
			if (ptrace(PTRACE_SEIZE, (pid_t)tid, 0,
				   (void *)(long)PTRACE_O_TRACECLONE) == 0)
				fresh++;
			else if (errno == EPERM && !seized && !fresh)
				denied = EPERM;
		}
		closedir(d);
		seized += fresh;
		if (!fresh)
			break;
	}
	if (!seized) {
		/* A tracer that came between the status read and the seize (strace -f's child
		 * stops for its tracer before it execs). */
		bool other = read_status(pid, &tgid, &tracer, &caught) == 0 && tracer;
		if ((!other && !denied) || skipped_before(s, pid))
			return;
		stat_add(s, other ? &s->stats.skip_traced : &s->stats.skip_denied, 1);
		if (!other)
			mark_skipped(s, pid);
		if (other)
			agent_log(AGENT_LOG_INFO, "tls: pid %u is traced by pid %u: not enforced",
				  pid, tracer);
		else
			agent_log(AGENT_LOG_WARN,
				  "tls: pid %u: ptrace not permitted (CAP_SYS_PTRACE?): "
				  "stop-rewrite not enforced",
				  pid);
		return;
	}
	if (s->n_procs == s->cap_procs) {
		size_t cap = s->cap_procs ? s->cap_procs * 2 : 64;
		struct sr_proc *v = realloc(s->procs, cap * sizeof(*v));
		if (!v)
			return; /* stays seized without a signal: never stopped */
		s->procs = v;
		s->cap_procs = cap;
	}
	s->procs[s->n_procs++] = (struct sr_proc){.tgid = pid, .sig = sig, .gen = s->gen};
	uint32_t v = (uint32_t)sig;
	if (bpf_map_update_elem(s->maps.stop_sig, &pid, &v, BPF_ANY) < 0)
		agent_log(AGENT_LOG_WARN, "tls: stop_sig map: %s", strerror(errno));
	pthread_mutex_lock(&s->st_lock);
	s->stats.seized = s->n_procs;
	pthread_mutex_unlock(&s->st_lock);
	agent_log(AGENT_LOG_DEBUG, "tls: seized pid %u (%zu threads, signal %d)", pid, seized, sig);
}

/* Stop holding the threads of a process that is no longer covered: BPF stops signalling it
 * at once (it leaves the table); each thread is detached at its next (interrupt) stop. */
static void release(struct tls_stop *s, uint32_t tgid)
{
	proc_remove(s, tgid);
	char path[64];
	snprintf(path, sizeof(path), "/proc/%u/task", tgid);
	DIR *d = opendir(path);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		long tid = strtol(de->d_name, NULL, 10);
		if (tid > 0)
			ptrace(PTRACE_INTERRUPT, (pid_t)tid, 0, 0);
	}
	if (d)
		closedir(d);
}

/*
 * Whether a stopped thread is on its way back from the SSL_read that BPF saw return: at the
 * return address itself, or (x86-64 kernels that return from uretprobes through the
 * uretprobe syscall) in the kernel's trampoline, which has pushed r11, rcx, rax, and finishes
 * with a `ret` to the return address stored in the rax slot.
 */
static bool at_return(pid_t tid, const struct user_regs_struct *regs, const struct mm_ssl_stop *rec)
{
#if !defined(__x86_64__)
	/* Not checked elsewhere: never rewrite what cannot be verified. */
	(void)tid;
	(void)regs;
	(void)rec;
	return false;
#else
	if (regs->rip == rec->ip && regs->rsp == rec->sp)
		return true;
	if (regs->rsp + 24 != rec->sp)
		return false;
	errno = 0;
	long word = ptrace(PTRACE_PEEKDATA, tid, (void *)(uintptr_t)(regs->rsp + 16), 0);
	return !errno && (uint64_t)word == rec->ip;
#endif
}

/* Resume tid after its read stop: rewrite the plaintext if the worker is done in time. */
static void read_stop(struct tls_stop *s, pid_t tid, const struct mm_ssl_stop *rec)
{
	stat_add(s, &s->stats.stops, 1);
	struct user_regs_struct regs;
	struct policy *pol = rec->slot < MM_SSL_MAX_SLOTS ? s->slots[rec->slot] : NULL;
	/* The thread must be exactly where BPF saw it return from SSL_read. */
	if (ptrace(PTRACE_GETREGS, tid, 0, &regs) < 0 || !at_return(tid, &regs, rec) || !pol) {
		agent_log(AGENT_LOG_DEBUG, "tls: stale stop of %d: ip %llx/%llx sp %llx/%llx", tid,
			  (unsigned long long)regs.rip, (unsigned long long)rec->ip,
			  (unsigned long long)regs.rsp, (unsigned long long)rec->sp);
		stat_add(s, &s->stats.stale, 1);
		goto resume;
	}
	size_t len = rec->len;
	if (len > SR_MAX_READ) {
		stat_add(s, &s->stats.failed, 1);
		goto resume;
	}
	struct iovec local = {.iov_base = s->buf, .iov_len = len};
	struct iovec remote = {.iov_base = (void *)(uintptr_t)rec->buf, .iov_len = len};
	if (process_vm_readv((pid_t)rec->pid, &local, 1, &remote, 1, 0) != (ssize_t)len) {
		stat_add(s, &s->stats.failed, 1);
		goto resume;
	}
	size_t masked = 0, partial = 0;
	uint64_t deadline = rec->ts_ns + s->watchdog_ns;
	if (!run_job(s, rec, pol, len, deadline, &masked, &partial)) {
		stat_add(s, &s->stats.watchdog, 1);
		if (pol->failure_mode == POLICY_FAIL_OPEN)
			goto resume;
		/* failureMode closed: the plaintext is not handed over unmasked. */
		memset(s->buf, '*', len);
		masked = 0;
	} else if (!masked) {
		goto resume;
	}
	if (process_vm_writev((pid_t)rec->pid, &local, 1, &remote, 1, 0) != (ssize_t)len) {
		stat_add(s, &s->stats.failed, 1);
		goto resume;
	}
	pthread_mutex_lock(&s->st_lock);
	s->stats.rewritten++;
	s->stats.masked += masked;
	s->stats.partial += partial;
	pthread_mutex_unlock(&s->st_lock);
resume:
	ptrace(PTRACE_CONT, tid, 0, 0);
}

/* One wait status of a tracee. */
static void on_status(struct tls_stop *s, pid_t tid, int status)
{
	if (WIFEXITED(status) || WIFSIGNALED(status)) {
		pending_drop(s, (uint32_t)tid);
		proc_remove(s, (uint32_t)tid);
		return;
	}
	if (!WIFSTOPPED(status))
		return;
	int sig = WSTOPSIG(status), event = (unsigned)status >> 16;
	if (event == PTRACE_EVENT_STOP) {
		uint32_t tgid = 0, tracer;
		uint64_t caught;
		struct sr_proc *p = read_status((uint32_t)tid, &tgid, &tracer, &caught) == 0
					    ? proc_find(s, tgid)
					    : NULL;
		if (!p)
			ptrace(PTRACE_DETACH, tid, 0, 0);
		else if (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU)
			ptrace(PTRACE_LISTEN, tid, 0, 0); /* a group stop stays a stop */
		else
			ptrace(PTRACE_CONT, tid, 0, 0);
		return;
	}
	if (event) {
		ptrace(PTRACE_CONT, tid, 0, 0);
		return;
	}
	struct mm_ssl_stop *rec = pending_find(s, (uint32_t)tid);
	if (!rec) {
		ring_buffer__consume(s->rb);
		rec = pending_find(s, (uint32_t)tid);
	}
	if (rec && (int)rec->sig == sig) {
		struct mm_ssl_stop r = *rec;
		pending_drop(s, (uint32_t)tid);
		read_stop(s, tid, &r);
		return;
	}
	/* Not ours: deliver it as the kernel would have. */
	ptrace(PTRACE_CONT, tid, 0, (void *)(long)sig);
}

static int seize_one(void *ctx, int pid)
{
	if (pid > 0)
		seize(ctx, (uint32_t)pid);
	return 0;
}

static void seize_cgroup(struct tls_stop *s, const char *rel)
{
	char dir[4200];
	snprintf(dir, sizeof(dir), "%s%s", s->cgroup_root, rel);
	cgroup_for_each_pid(dir, seize_one, s);
}

static void rescan(struct tls_stop *s)
{
	s->gen++;
	prune_skipped(s);
	for (size_t i = 0; i < s->n_cgroups; i++)
		seize_cgroup(s, s->cgroups[i]);
	for (size_t i = s->n_procs; i-- > 0;)
		if (s->procs[i].gen != s->gen)
			release(s, s->procs[i].tgid);
}

static void collect_unenforced(struct tls_stop *s)
{
	int ncpu = libbpf_num_possible_cpus();
	if (ncpu <= 0)
		return;
	uint64_t *v = calloc((size_t)ncpu, sizeof(*v)), total = 0;
	if (!v)
		return;
	for (uint32_t k = 0; k < MM_SSL_MAX_SLOTS * MM_SSL_UNENF__COUNT; k++) {
		if (bpf_map_lookup_elem(s->maps.unenforced, &k, v) < 0)
			continue;
		for (int c = 0; c < ncpu; c++)
			total += v[c];
	}
	free(v);
	pthread_mutex_lock(&s->st_lock);
	s->stats.unenforced = total;
	pthread_mutex_unlock(&s->st_lock);
}

static void apply_config(struct tls_stop *s)
{
	pthread_mutex_lock(&s->cfg_lock);
	if (!s->cfg_new) {
		pthread_mutex_unlock(&s->cfg_lock);
		return;
	}
	s->cfg_new = false;
	struct policy *old[MM_SSL_MAX_SLOTS];
	memcpy(old, s->slots, sizeof(old));
	memcpy(s->slots, s->cfg_slots, sizeof(old));
	memset(s->cfg_slots, 0, sizeof(s->cfg_slots));
	char **oldc = s->cgroups;
	size_t oldn = s->n_cgroups;
	s->cgroups = s->cfg_cgroups;
	s->n_cgroups = s->cfg_n;
	s->cfg_cgroups = NULL;
	s->cfg_n = 0;
	pthread_mutex_unlock(&s->cfg_lock);
	for (int i = 0; i < MM_SSL_MAX_SLOTS; i++)
		if (old[i])
			policy_unref(old[i]);
	for (size_t i = 0; i < oldn; i++)
		free(oldc[i]);
	free(oldc);
}

static void on_wake_sig(int sig)
{
	(void)sig;
}

static void *tracer_main(void *arg)
{
	struct tls_stop *s = arg;
	uint64_t last_scan = 0, done = 0;
	/* SR_WAKE_SIG is let in only while waiting: the rest of the work (reads of /proc, ptrace,
	 * process_vm_*) is never interrupted by it. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SR_WAKE_SIG);
	block_signals();
	atomic_store(&s->tracer_tid, (int)gettid());
	while (!atomic_load(&s->quit)) {
		uint64_t seq = atomic_load(&s->poke_seq);
		/* Seize requests may also have come in with the records read for a stop. */
		if (seq != done || s->n_seize || s->seize_overflow) {
			done = seq;
			uint64_t now = mono_ns(), req;
			pthread_mutex_lock(&s->cfg_lock);
			req = s->rescan_req;
			pthread_mutex_unlock(&s->cfg_lock);
			if (now - last_scan >= SR_RESCAN_NS || req != s->rescan_done) {
				last_scan = now;
				apply_config(s);
				rescan(s);
				collect_unenforced(s);
				pthread_mutex_lock(&s->cfg_lock);
				s->rescan_done = req;
				pthread_cond_broadcast(&s->cfg_cond);
				pthread_mutex_unlock(&s->cfg_lock);
			}
			ring_buffer__consume(s->rb);
			for (size_t i = 0; i < s->n_seize; i++)
				seize(s, s->seize_q[i]);
			s->n_seize = 0;
			if (s->seize_overflow) {
				s->seize_overflow = false;
				rescan(s);
			}
			atomic_store(&s->poke_ack, seq);
		}
		/* Only this thread's tracees (__WNOTHREAD): never the agent's own children. */
		int status;
		pthread_sigmask(SIG_UNBLOCK, &set, NULL);
		pid_t tid = waitpid(-1, &status, __WALL | __WNOTHREAD);
		int err = errno;
		if (tid < 0 && err == ECHILD) {
			struct timespec ts = {.tv_sec = 1};
			nanosleep(&ts, NULL); /* no tracee: until poked */
		}
		pthread_sigmask(SIG_BLOCK, &set, NULL);
		if (tid > 0)
			on_status(s, tid, status);
	}
	/* Tell BPF first, then let this thread's exit detach every tracee. */
	for (size_t i = 0; i < s->n_procs; i++)
		bpf_map_delete_elem(s->maps.stop_sig, &s->procs[i].tgid);
	return NULL;
}

/*
 * Interrupt the tracer's wait until it has seen this request. A signal that lands between its
 * check and its waitpid() is lost, so it is repeated until acknowledged.
 */
static void poke(struct tls_stop *s)
{
	uint64_t seq = atomic_fetch_add(&s->poke_seq, 1) + 1;
	for (int i = 0; i < 5000 && !atomic_load(&s->quit) && atomic_load(&s->poke_ack) < seq;
	     i++) {
		int tid = atomic_load(&s->tracer_tid);
		if (tid > 0)
			syscall(SYS_tgkill, s->self, tid, SR_WAKE_SIG);
		usleep(i < 10 ? 100 : 1000);
	}
}

static void *waker_main(void *arg)
{
	struct tls_stop *s = arg;
	block_signals();
	while (!atomic_load(&s->quit)) {
		struct epoll_event ev[2];
		int n = epoll_wait(s->epfd, ev, 2, 1000);
		for (int i = 0; i < n; i++) {
			uint64_t v;
			if (ev[i].data.fd == s->efd && read(s->efd, &v, sizeof(v)) < 0 &&
			    errno != EAGAIN)
				agent_log(AGENT_LOG_DEBUG, "tls: eventfd: %s", strerror(errno));
		}
		/* New records, a request, or a second has passed (rescan). */
		poke(s);
	}
	return NULL;
}

static void wake(struct tls_stop *s)
{
	uint64_t one = 1;
	if (write(s->efd, &one, sizeof(one)) < 0)
		agent_log(AGENT_LOG_DEBUG, "tls: waking the tracer: %s", strerror(errno));
}

int tls_stop_configure(struct tls_stop *s, struct policy *const slots[MM_SSL_MAX_SLOTS],
		       char *const *cgroups, size_t n_cgroups)
{
	char **v = calloc(n_cgroups ? n_cgroups : 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < n_cgroups; i++) {
		if (!(v[i] = strdup(cgroups[i]))) {
			while (i--)
				free(v[i]);
			free(v);
			return -ENOMEM;
		}
	}
	pthread_mutex_lock(&s->cfg_lock);
	for (int i = 0; i < MM_SSL_MAX_SLOTS; i++) {
		if (s->cfg_slots[i])
			policy_unref(s->cfg_slots[i]);
		s->cfg_slots[i] = slots[i] ? policy_ref(slots[i]) : NULL;
	}
	for (size_t i = 0; i < s->cfg_n; i++)
		free(s->cfg_cgroups[i]);
	free(s->cfg_cgroups);
	s->cfg_cgroups = v;
	s->cfg_n = n_cgroups;
	s->cfg_new = true;
	s->rescan_req++;
	pthread_mutex_unlock(&s->cfg_lock);
	wake(s);
	return 0;
}

void tls_stop_rescan(struct tls_stop *s)
{
	pthread_mutex_lock(&s->cfg_lock);
	uint64_t want = ++s->rescan_req;
	pthread_mutex_unlock(&s->cfg_lock);
	wake(s);
	struct timespec ts;
	abs_deadline(&ts, mono_ns() + 2000000000ull);
	pthread_mutex_lock(&s->cfg_lock);
	while (s->rescan_done < want && !atomic_load(&s->quit))
		if (pthread_cond_timedwait(&s->cfg_cond, &s->cfg_lock, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&s->cfg_lock);
}

void tls_stop_get_stats(struct tls_stop *s, struct tls_stop_stats *out)
{
	pthread_mutex_lock(&s->st_lock);
	*out = s->stats;
	pthread_mutex_unlock(&s->st_lock);
}

static void free_all(struct tls_stop *s)
{
	for (int i = 0; i < MM_SSL_MAX_SLOTS; i++) {
		if (s->slots[i])
			policy_unref(s->slots[i]);
		if (s->cfg_slots[i])
			policy_unref(s->cfg_slots[i]);
	}
	for (size_t i = 0; i < s->n_cgroups; i++)
		free(s->cgroups[i]);
	free(s->cgroups);
	for (size_t i = 0; i < s->cfg_n; i++)
		free(s->cfg_cgroups[i]);
	free(s->cfg_cgroups);
	ring_buffer__free(s->rb);
	if (s->epfd >= 0)
		close(s->epfd);
	if (s->efd >= 0)
		close(s->efd);
	free(s->procs);
	free(s->streams);
	free(s->buf);
	free(s->wbuf);
	pthread_mutex_destroy(&s->cfg_lock);
	pthread_cond_destroy(&s->cfg_cond);
	pthread_mutex_destroy(&s->w_lock);
	pthread_cond_destroy(&s->w_cond);
	pthread_mutex_destroy(&s->st_lock);
	free(s);
}

void tls_stop_close(struct tls_stop *s)
{
	if (!s)
		return;
	atomic_store(&s->quit, true);
	wake(s);
	pthread_mutex_lock(&s->w_lock);
	pthread_cond_broadcast(&s->w_cond);
	pthread_mutex_unlock(&s->w_lock);
	if (s->waker_started)
		pthread_join(s->waker, NULL);
	if (s->tracer_started) {
		/* Until it has left its waitpid(). */
		while (pthread_tryjoin_np(s->tracer, NULL) == EBUSY) {
			int tid = atomic_load(&s->tracer_tid);
			if (tid > 0)
				syscall(SYS_tgkill, s->self, tid, SR_WAKE_SIG);
			usleep(1000);
		}
	}
	if (s->worker_started)
		pthread_join(s->worker, NULL);
	if (s->job.pol)
		policy_unref(s->job.pol);
	free_all(s);
}

int tls_stop_open(struct tls_stop **out, const struct tls_stop_maps *maps, const char *cgroup_root,
		  unsigned watchdog_ms, unsigned delay_ms)
{
	*out = NULL;
	struct tls_stop *s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->efd = s->epfd = -1;
	pthread_mutex_init(&s->cfg_lock, NULL);
	pthread_mutex_init(&s->w_lock, NULL);
	pthread_mutex_init(&s->st_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cfg_cond, &ca);
	pthread_cond_init(&s->w_cond, &ca);
	pthread_condattr_destroy(&ca);
	s->maps = *maps;
	s->self = getpid();
	snprintf(s->cgroup_root, sizeof(s->cgroup_root), "%s", cgroup_root);
	s->watchdog_ns = (uint64_t)(watchdog_ms ? watchdog_ms : TLS_STOP_WATCHDOG_MS) * 1000000ull;
	s->test_delay_ms = delay_ms;
	int r = -ENOMEM;
	s->buf = malloc(SR_MAX_READ);
	s->wbuf = malloc(SR_MAX_READ);
	s->streams = calloc(SR_MAX_STREAMS, sizeof(*s->streams));
	if (!s->buf || !s->wbuf || !s->streams)
		goto fail;
	s->rb = ring_buffer__new(maps->stops, on_record, s, NULL);
	if (!s->rb) {
		r = -errno;
		goto fail;
	}
	s->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (s->efd < 0 || s->epfd < 0) {
		r = -errno;
		goto fail;
	}
	struct epoll_event e1 = {.events = EPOLLIN, .data.fd = s->efd};
	struct epoll_event e2 = {.events = EPOLLIN | EPOLLET, .data.fd = maps->stops};
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, s->efd, &e1) < 0 ||
	    epoll_ctl(s->epfd, EPOLL_CTL_ADD, maps->stops, &e2) < 0) {
		r = -errno;
		goto fail;
	}
	/* The wake-up signal: its handler does nothing, its delivery ends a waitpid(). */
	struct sigaction old, sa = {.sa_handler = on_wake_sig};
	if (sigaction(SR_WAKE_SIG, NULL, &old) < 0 ||
	    (old.sa_handler != SIG_DFL && old.sa_handler != on_wake_sig)) {
		r = -EBUSY;
		agent_log(AGENT_LOG_WARN, "tls: signal SIGRTMIN+7 is in use");
		goto fail;
	}
	sigaction(SR_WAKE_SIG, &sa, NULL);
	if ((r = -pthread_create(&s->worker, NULL, worker_main, s)) < 0)
		goto fail;
	s->worker_started = true;
	if ((r = -pthread_create(&s->tracer, NULL, tracer_main, s)) < 0)
		goto fail;
	s->tracer_started = true;
	if ((r = -pthread_create(&s->waker, NULL, waker_main, s)) < 0)
		goto fail;
	s->waker_started = true;
	if (s->test_delay_ms)
		agent_log(AGENT_LOG_WARN, "tls: stop-rewrite test delay of %u ms per rewrite",
			  s->test_delay_ms);
	*out = s;
	return 0;
fail:
	tls_stop_close(s);
	return r;
}
