/* SPDX-License-Identifier: Apache-2.0 */
/* OpenSSL probes per covered process (see tls_probe.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "log.h"
#include "ssl.skel.h"
#include "tls_elf.h"
#include "tls_probe.h"

#define TLS_MAX_LINKS 12
/* Files probed in one process: its libssl, its executable, and libssl paths tried at exec. */
#define TLS_PROC_FILES 6
/* Distinct libssl paths (as processes see them) tried in a process that just exec'd. */
#define TLS_MAX_PATHS 16
/* Processes remembered (probed, or covered and refused by the limit). */
#define TLS_MAX_TRACKED (4 * TLS_MAX_PROBED_PROCS)

/* A file that may be probed: a libssl, or an executable with OpenSSL linked in. */
struct tls_file {
	dev_t dev;
	ino_t ino;
	char *path; /* where it was found (/proc/PID/root/..., /proc/PID/exe), for logs */
	int fd; /* held open: probes attach through /proc/self/fd/N, whatever PID is gone */
	char attach_path[32];
	bool usable; /* defines SSL_read and SSL_write */
	struct tls_probe_points pp;
	uint64_t seen; /* scan generation that last found it mapped */
	size_t users; /* processes with probes on it */
	struct tls_pfile *global; /* node-wide probes (no pid filter), NULL = none */
};

/* An executable that was looked at: does it define SSL_read and SSL_write? */
struct tls_exe {
	dev_t dev;
	ino_t ino;
	bool openssl;
};

struct tls_pfile {
	struct tls_file *f;
	struct bpf_link *links[TLS_MAX_LINKS];
	size_t n;
};

struct tls_proc {
	int pid;
	uint64_t start; /* starttime in /proc/PID/stat: a reused pid is another process */
	uint64_t seen;
	uint32_t slot;
	bool probed; /* in the BPF `probed` map */
	bool refused; /* counted once under probe_limit */
	struct tls_pfile files[TLS_PROC_FILES];
	size_t n_files;
};

/*
 * Links are destroyed on a thread of their own: closing a uprobe's perf event waits for RCU
 * grace periods (tens of ms each, about 80 ms on the loaded development VM), which would stall
 * the capture thread's ringbuf and the probing of new processes.
 */
struct tls_reaper {
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct bpf_link **q;
	size_t n, cap;
	bool stop;
};

struct tls_probes {
	struct tls_reaper reaper;
	struct ssl *skel;
	bool public_only;
	tls_uncaptured_fn uncaptured;
	void *ctx;
	struct tls_file **files;
	size_t n_files;
	struct tls_exe *exes;
	size_t n_exes;
	char *paths[TLS_MAX_PATHS];
	size_t n_paths;
	struct tls_proc **procs;
	size_t n_procs;
	size_t n_probed;
	uint64_t gen;
	bool node_wide; /* probe every process (tls_probes_set_node_wide) */
	bool warned_limit;
	struct tls_probe_stats stats;
};

static void *reaper_main(void *arg)
{
	struct tls_reaper *r = arg;
	pthread_mutex_lock(&r->lock);
	for (;;) {
		while (!r->n && !r->stop)
			pthread_cond_wait(&r->cond, &r->lock);
		if (!r->n)
			break;
		struct bpf_link *l = r->q[--r->n];
		pthread_mutex_unlock(&r->lock);
		bpf_link__destroy(l);
		pthread_mutex_lock(&r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* Destroy l later, on the reaper (at once if there is none or no memory). */
static void reap(struct tls_probes *pr, struct bpf_link *l)
{
	struct tls_reaper *r = &pr->reaper;
	if (!r->running) {
		bpf_link__destroy(l);
		return;
	}
	pthread_mutex_lock(&r->lock);
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 64;
		struct bpf_link **q = realloc(r->q, cap * sizeof(*q));
		if (!q) {
			pthread_mutex_unlock(&r->lock);
			bpf_link__destroy(l);
			return;
		}
		r->q = q;
		r->cap = cap;
	}
	r->q[r->n++] = l;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

int tls_probes_new(struct tls_probes **out, struct ssl *skel, bool public_only,
		   tls_uncaptured_fn uncaptured, void *ctx)
{
	struct tls_probes *pr = calloc(1, sizeof(*pr));
	if (!pr)
		return -ENOMEM;
	pthread_mutex_init(&pr->reaper.lock, NULL);
	pthread_cond_init(&pr->reaper.cond, NULL);
	pr->reaper.running =
		pthread_create(&pr->reaper.thread, NULL, reaper_main, &pr->reaper) == 0;
	pr->skel = skel;
	pr->public_only = public_only;
	pr->uncaptured = uncaptured;
	pr->ctx = ctx;
	*out = pr;
	return 0;
}

/* ---- files ---- */

static void global_attach(struct tls_probes *pr, struct tls_file *f);

static void file_free(struct tls_file *f)
{
	free(f->global);
	if (f->fd >= 0)
		close(f->fd);
	free(f->path);
	free(f);
}

/* The file at path (valid in our mount namespace), known or new; NULL when it cannot be
 * opened or on allocation failure. */
static struct tls_file *file_get(struct tls_probes *pr, const char *path, const struct stat *st)
{
	for (size_t i = 0; i < pr->n_files; i++)
		if (pr->files[i]->dev == st->st_dev && pr->files[i]->ino == st->st_ino)
			return pr->files[i];
	struct tls_file *f = calloc(1, sizeof(*f));
	struct tls_file **v = realloc(pr->files, (pr->n_files + 1) * sizeof(*v));
	if (v)
		pr->files = v;
	if (!f || !v || !(f->path = strdup(path))) {
		free(f);
		return NULL;
	}
	f->dev = st->st_dev;
	f->ino = st->st_ino;
	f->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (f->fd < 0) {
		file_free(f);
		return NULL;
	}
	snprintf(f->attach_path, sizeof(f->attach_path), "/proc/self/fd/%d", f->fd);
	f->usable = tls_elf_probe_points(f->attach_path, &f->pp) == 0 && f->pp.ssl_read &&
		    f->pp.ssl_write;
	if (pr->public_only)
		f->pp.read_body = f->pp.write_body = 0;
	pr->files[pr->n_files++] = f;
	return f;
}

static bool exe_is_openssl(struct tls_probes *pr, const char *path, const struct stat *st)
{
	for (size_t i = 0; i < pr->n_exes; i++)
		if (pr->exes[i].dev == st->st_dev && pr->exes[i].ino == st->st_ino)
			return pr->exes[i].openssl;
	struct tls_probe_points pp;
	bool yes = tls_elf_probe_points(path, &pp) == 0 && pp.ssl_read && pp.ssl_write;
	if (pr->n_exes >= 65536)
		pr->n_exes = 0; /* a node that keeps running new binaries: start the cache over */
	struct tls_exe *v = realloc(pr->exes, (pr->n_exes + 1) * sizeof(*v));
	if (v) {
		pr->exes = v;
		pr->exes[pr->n_exes++] = (struct tls_exe){st->st_dev, st->st_ino, yes};
	}
	return yes;
}

/* Whether the shared object mapped at [start, end) of pid (file dev/ino) defines SSL_read
 * and SSL_write; cached per file. */
static bool elf_is_openssl(struct tls_probes *pr, int pid, unsigned long long start,
			   unsigned long long end, dev_t dev, ino_t ino)
{
	for (size_t i = 0; i < pr->n_exes; i++)
		if (pr->exes[i].dev == dev && pr->exes[i].ino == ino)
			return pr->exes[i].openssl;
	char path[4352];
	struct tls_probe_points pp;
	snprintf(path, sizeof(path), "/proc/%d/map_files/%llx-%llx", pid, start, end);
	bool yes = tls_elf_probe_points(path, &pp) == 0 && pp.ssl_read && pp.ssl_write;
	if (pr->n_exes >= 65536)
		pr->n_exes = 0;
	struct tls_exe *v = realloc(pr->exes, (pr->n_exes + 1) * sizeof(*v));
	if (v) {
		pr->exes = v;
		pr->exes[pr->n_exes++] = (struct tls_exe){dev, ino, yes};
	}
	return yes;
}

static bool is_libssl(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	return !strncmp(base, "libssl", 6) && strstr(base, ".so");
}

static void remember_path(struct tls_probes *pr, const char *name)
{
	for (size_t i = 0; i < pr->n_paths; i++)
		if (!strcmp(pr->paths[i], name))
			return;
	if (pr->n_paths < TLS_MAX_PATHS && (pr->paths[pr->n_paths] = strdup(name)))
		pr->n_paths++;
}

static void add_file(struct tls_file **out, size_t *n, size_t max, struct tls_file *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < *n; i++)
		if (out[i] == f)
			return;
	if (*n < max)
		out[(*n)++] = f;
}

/*
 * The files of process pid that need probes: its executable if OpenSSL is linked in, the
 * libssl files it maps; all marked seen. Returns how many were put in out.
 */
static size_t pid_files(struct tls_probes *pr, int pid, struct tls_file **out, size_t max)
{
	char path[4352], line[4608];
	struct stat st;
	size_t n = 0;

	snprintf(path, sizeof(path), "/proc/%d/exe", pid);
	if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && exe_is_openssl(pr, path, &st))
		add_file(out, &n, max, file_get(pr, path, &st));

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	FILE *fp = fopen(path, "re");
	unsigned long long last_ino = 0;
	while (fp && fgets(line, sizeof(line), fp)) {
		unsigned long long start, end, ino;
		unsigned int major, minor;
		char perms[8];
		int name_at = 0;
		if (sscanf(line, "%llx-%llx %7s %*s %x:%x %llu %n", &start, &end, perms, &major,
			   &minor, &ino, &name_at) < 6 ||
		    !name_at || line[name_at] != '/' || !ino || ino == last_ino)
			continue;
		char *name = line + name_at;
		name[strcspn(name, "\n")] = 0;
		/* libssl*.so*, or another shared object named *ssl*.so* that defines SSL_read and
		 * SSL_write (a bundled or renamed copy): looked at once per file. */
		const char *base = strrchr(name, '/') + 1;
		if (!is_libssl(name) &&
		    (!strchr(perms, 'x') || !strstr(base, "ssl") || !strstr(base, ".so") ||
		     !elf_is_openssl(pr, pid, start, end, makedev(major, minor), ino)))
			continue;
		last_ino = ino;
		remember_path(pr, name);
		/* The path as the process sees it: through its root, so a container's own copy is
		 * the one found. If the file at that path is not the mapped one (replaced, or a
		 * deleted file), the exact mapping is still reachable through map_files. */
		snprintf(path, sizeof(path), "/proc/%d/root%s", pid, name);
		if (stat(path, &st) < 0 || st.st_ino != ino) {
			snprintf(path, sizeof(path), "/proc/%d/map_files/%llx-%llx", pid, start,
				 end);
			if (stat(path, &st) < 0)
				continue;
		}
		if (S_ISREG(st.st_mode))
			add_file(out, &n, max, file_get(pr, path, &st));
	}
	if (fp)
		fclose(fp);
	for (size_t i = 0; i < n; i++) {
		out[i]->seen = pr->gen;
		global_attach(pr, out[i]);
	}
	return n;
}

/* ---- processes ---- */

/* starttime of pid (clock ticks since boot), 0 when it is gone. */
static uint64_t proc_start(int pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	/* Fields after the command (which may hold spaces and parentheses): state is field 3,
	 * starttime field 22. */
	char *p = strrchr(buf, ')');
	unsigned long long start = 0;
	if (!p || sscanf(p + 1,
			 " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d "
			 "%*d %*d %*d %llu",
			 &start) != 1)
		return 0;
	return start;
}

static struct tls_proc *proc_find(struct tls_probes *pr, int pid, size_t *at)
{
	for (size_t i = 0; i < pr->n_procs; i++) {
		if (pr->procs[i]->pid == pid) {
			*at = i;
			return pr->procs[i];
		}
	}
	return NULL;
}

static void pfile_detach(struct tls_probes *pr, struct tls_pfile *pf)
{
	for (size_t k = 0; k < pf->n; k++)
		reap(pr, pf->links[k]);
	pf->n = 0;
	if (--pf->f->users == 0)
		agent_log(AGENT_LOG_INFO,
			  "tls: probes detached from %s (no covered process maps it)", pf->f->path);
}

/* Detach and forget pr->procs[at]. */
static void proc_remove(struct tls_probes *pr, size_t at)
{
	struct tls_proc *p = pr->procs[at];
	for (size_t i = 0; i < p->n_files; i++)
		pfile_detach(pr, &p->files[i]);
	if (p->probed) {
		__u32 key = (__u32)p->pid;
		bpf_map__delete_elem(pr->skel->maps.probed, &key, sizeof(key), 0);
		bpf_map__delete_elem(pr->skel->maps.unprobed_io, &key, sizeof(key), 0);
		pr->n_probed--;
	}
	free(p);
	pr->procs[at] = pr->procs[--pr->n_procs];
}

struct plan {
	struct bpf_program *prog;
	uint64_t off;
	bool ret, required;
	const char *what;
};

/* The probes for file f: at OpenSSL's shared bodies when found, else at the public functions. */
static size_t probe_plan(const struct tls_probes *pr, const struct tls_file *f, bool hold,
			 struct plan *v)
{
	struct ssl_progs {
		struct bpf_program *we, *wl, *re, *rl, *wxe, *wxl, *rxe, *rxl;
	} g = {
		pr->skel->progs.ssl_write_enter,    pr->skel->progs.ssl_write_leave,
		pr->skel->progs.ssl_read_enter,	    pr->skel->progs.ssl_read_leave,
		pr->skel->progs.ssl_write_ex_enter, pr->skel->progs.ssl_write_ex_leave,
		pr->skel->progs.ssl_read_ex_enter,  pr->skel->progs.ssl_read_ex_leave,
	};
	const struct tls_probe_points *pp = &f->pp;
	size_t n = 0;
	if (pp->read_body && pp->write_body) {
		/* The bodies take the _ex variants' arguments: (ssl, buf, num, size_t *out). */
		v[n++] = (struct plan){g.wxe, pp->write_body, false, true, "SSL_write body"};
		v[n++] = (struct plan){g.wxl, pp->write_body, true, true, "SSL_write body"};
		v[n++] = (struct plan){g.rxe, pp->read_body, false, true, "SSL_read body"};
		v[n++] = (struct plan){g.rxl, pp->read_body, true, true, "SSL_read body"};
		if (hold)
			v[n++] = (struct plan){pr->skel->progs.ssl_read_hold, pp->read_body, false,
					       false, "SSL_read body"};
	} else {
		v[n++] = (struct plan){g.we, pp->ssl_write, false, true, "SSL_write"};
		v[n++] = (struct plan){g.wl, pp->ssl_write, true, true, "SSL_write"};
		v[n++] = (struct plan){g.re, pp->ssl_read, false, true, "SSL_read"};
		v[n++] = (struct plan){g.rl, pp->ssl_read, true, true, "SSL_read"};
		if (pp->ssl_write_ex) {
			v[n++] = (struct plan){g.wxe, pp->ssl_write_ex, false, false,
					       "SSL_write_ex"};
			v[n++] =
				(struct plan){g.wxl, pp->ssl_write_ex, true, false, "SSL_write_ex"};
		}
		if (pp->ssl_read_ex) {
			v[n++] = (struct plan){g.rxe, pp->ssl_read_ex, false, false, "SSL_read_ex"};
			v[n++] = (struct plan){g.rxl, pp->ssl_read_ex, true, false, "SSL_read_ex"};
		}
		for (int i = 0; hold && i < 2; i++)
			if (i ? pp->ssl_read_ex : pp->ssl_read)
				v[n++] = (struct plan){pr->skel->progs.ssl_read_hold,
						       i ? pp->ssl_read_ex : pp->ssl_read, false,
						       false, "SSL_read"};
	}
	if (pp->ssl_set_fd)
		v[n++] = (struct plan){pr->skel->progs.ssl_set_fd, pp->ssl_set_fd, false, false,
				       "SSL_set_fd"};
	if (pp->ssl_free)
		v[n++] = (struct plan){pr->skel->progs.ssl_free, pp->ssl_free, false, false,
				       "SSL_free"};
	return n;
}

/* Attach f's probes in process p (pid filter). 0 or -errno (nothing attached). */
static int pfile_attach(struct tls_probes *pr, int pid, struct tls_pfile *pf, struct tls_file *f,
			bool hold)
{
	struct plan plan[TLS_MAX_LINKS + 2];
	size_t n = probe_plan(pr, f, hold, plan);
	pf->f = f;
	pf->n = 0;
	for (size_t i = 0; i < n && pf->n < TLS_MAX_LINKS; i++) {
		LIBBPF_OPTS(bpf_uprobe_opts, opts, .retprobe = plan[i].ret);
		struct bpf_link *l = bpf_program__attach_uprobe_opts(
			plan[i].prog, pid, f->attach_path, plan[i].off, &opts);
		if (l) {
			pf->links[pf->n++] = l;
			continue;
		}
		int err = errno;
		/* ESRCH: the process is gone already. */
		agent_log(err == ESRCH ? AGENT_LOG_DEBUG : AGENT_LOG_WARN,
			  "tls: attaching %s%s to %s in pid %d: %s",
			  plan[i].ret ? "return of " : "", plan[i].what, f->path, pid,
			  strerror(err));
		if (plan[i].required) {
			/* Half a pair would stash calls that never complete: all or nothing. */
			for (size_t k = 0; k < pf->n; k++)
				reap(pr, pf->links[k]);
			pf->n = 0;
			return -err;
		}
	}
	if (f->users++ == 0)
		agent_log(AGENT_LOG_INFO, "tls: probes attached to %s (%zu probes%s; %s)", f->path,
			  pf->n, f->pp.read_body ? ", at OpenSSL's shared read/write bodies" : "",
			  pid < 0 ? "every process" : "per process");
	if (pid >= 0)
		agent_log(AGENT_LOG_DEBUG, "tls: pid %d probed through %s", pid, f->path);
	return 0;
}

/* p has its first probes: tell BPF, and count the socket I/O it made before them. */
static void mark_probed(struct tls_probes *pr, struct tls_proc *p)
{
	__u32 key = (__u32)p->pid, one = 1;
	__u64 io = 0;
	p->probed = true;
	pr->n_probed++;
	pr->stats.attaches++;
	bpf_map__update_elem(pr->skel->maps.probed, &key, sizeof(key), &one, sizeof(one), BPF_ANY);
	if (bpf_map__lookup_and_delete_elem(pr->skel->maps.unprobed_io, &key, sizeof(key), &io,
					    sizeof(io), 0) == 0 &&
	    io) {
		pr->stats.late++;
		pr->stats.unprobed_io += io;
		if (pr->uncaptured)
			pr->uncaptured(pr->ctx, p->slot, "before_probes", io);
	}
}

void tls_probes_sync(struct tls_probes *pr, int pid, uint32_t slot, bool hold, bool guess)
{
	if (pr->node_wide)
		return;
	uint64_t start = proc_start(pid);
	size_t at;
	struct tls_proc *p = proc_find(pr, pid, &at);
	if (p && p->start != start) {
		proc_remove(pr, at);
		p = NULL;
	}
	if (!start)
		return;
	if (!p) {
		if (pr->n_procs >= TLS_MAX_TRACKED)
			return;
		struct tls_proc **v = realloc(pr->procs, (pr->n_procs + 1) * sizeof(*v));
		if (!v)
			return;
		pr->procs = v;
		if (!(p = calloc(1, sizeof(*p))))
			return;
		p->pid = pid;
		p->start = start;
		pr->procs[pr->n_procs++] = p;
	}
	p->seen = pr->gen;
	p->slot = slot;

	struct tls_file *files[TLS_PROC_FILES];
	size_t n = pid_files(pr, pid, files, TLS_PROC_FILES);
	/* Just exec'd or moved in: the loader (or dlopen) maps its libssl later; a pid-filtered
	 * probe is installed when the process maps the file, so probe what its root has at the
	 * paths where other processes mapped one. */
	for (size_t i = 0; guess && i < pr->n_paths && n < TLS_PROC_FILES; i++) {
		char path[4352];
		struct stat st;
		snprintf(path, sizeof(path), "/proc/%d/root%s", pid, pr->paths[i]);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
			add_file(files, &n, TLS_PROC_FILES, file_get(pr, path, &st));
	}
	for (size_t i = 0; i < n; i++) {
		struct tls_file *f = files[i];
		bool have = !f->usable;
		for (size_t k = 0; !have && k < p->n_files; k++)
			have = p->files[k].f == f;
		if (have || p->n_files == TLS_PROC_FILES)
			continue;
		if (!p->probed && pr->n_probed >= TLS_MAX_PROBED_PROCS) {
			if (!p->refused) {
				p->refused = true;
				pr->stats.limit++;
				if (pr->uncaptured)
					pr->uncaptured(pr->ctx, slot, "probe_limit", 1);
				if (!pr->warned_limit)
					agent_log(AGENT_LOG_WARN,
						  "tls: %d processes probed, the limit: further "
						  "covered processes are not captured until some "
						  "exit",
						  TLS_MAX_PROBED_PROCS);
				pr->warned_limit = true;
			}
			break;
		}
		if (pfile_attach(pr, pid, &p->files[p->n_files], f, hold) < 0)
			continue;
		p->n_files++;
		if (!p->probed)
			mark_probed(pr, p);
	}
}

void tls_probes_begin(struct tls_probes *pr)
{
	pr->gen++;
}

void tls_probes_learn(struct tls_probes *pr, int pid)
{
	struct tls_file *files[TLS_PROC_FILES];
	pid_files(pr, pid, files, TLS_PROC_FILES);
}

static void global_detach(struct tls_probes *pr, struct tls_file *f)
{
	if (!f->global)
		return;
	pfile_detach(pr, f->global);
	free(f->global);
	f->global = NULL;
}

/* Node-wide mode: f probed for every process, once. */
static void global_attach(struct tls_probes *pr, struct tls_file *f)
{
	if (!pr->node_wide || !f->usable || f->global ||
	    !(f->global = calloc(1, sizeof(*f->global))))
		return;
	if (pfile_attach(pr, -1, f->global, f, true) < 0) {
		free(f->global);
		f->global = NULL;
	}
}

void tls_probes_set_node_wide(struct tls_probes *pr, bool on)
{
	if (pr->node_wide == on)
		return;
	pr->node_wide = on;
	__u32 all = 0, one = 1;
	if (on) {
		tls_probes_clear(pr);
		bpf_map__update_elem(pr->skel->maps.probed, &all, sizeof(all), &one, sizeof(one),
				     BPF_ANY);
		for (size_t i = 0; i < pr->n_files; i++)
			global_attach(pr, pr->files[i]);
	} else {
		for (size_t i = 0; i < pr->n_files; i++)
			global_detach(pr, pr->files[i]);
		bpf_map__delete_elem(pr->skel->maps.probed, &all, sizeof(all), 0);
	}
	agent_log(AGENT_LOG_INFO, "tls: OpenSSL probes %s",
		  on ? "node-wide (stop-rewrite in force)" : "per covered process");
}

void tls_probes_end(struct tls_probes *pr)
{
	for (size_t i = pr->n_procs; i-- > 0;)
		if (pr->procs[i]->seen != pr->gen)
			proc_remove(pr, i);
	size_t k = 0;
	for (size_t i = 0; i < pr->n_files; i++) {
		struct tls_file *f = pr->files[i];
		if (f->seen != pr->gen)
			global_detach(pr, f);
		if (f->seen == pr->gen || f->users)
			pr->files[k++] = f;
		else
			file_free(f);
	}
	pr->n_files = k;
	if (pr->n_probed < TLS_MAX_PROBED_PROCS / 2)
		pr->warned_limit = false;
}

void tls_probes_clear(struct tls_probes *pr)
{
	while (pr->n_procs)
		proc_remove(pr, pr->n_procs - 1);
}

void tls_probes_free(struct tls_probes *pr)
{
	if (!pr)
		return;
	tls_probes_clear(pr);
	for (size_t i = 0; i < pr->n_files; i++)
		global_detach(pr, pr->files[i]);
	/* The links go before the files they were attached through (and the skeleton). */
	if (pr->reaper.running) {
		pthread_mutex_lock(&pr->reaper.lock);
		pr->reaper.stop = true;
		pthread_cond_signal(&pr->reaper.cond);
		pthread_mutex_unlock(&pr->reaper.lock);
		pthread_join(pr->reaper.thread, NULL);
	}
	free(pr->reaper.q);
	pthread_mutex_destroy(&pr->reaper.lock);
	pthread_cond_destroy(&pr->reaper.cond);
	for (size_t i = 0; i < pr->n_files; i++)
		file_free(pr->files[i]);
	for (size_t i = 0; i < pr->n_paths; i++)
		free(pr->paths[i]);
	free(pr->files);
	free(pr->exes);
	free(pr->procs);
	free(pr);
}

void tls_probes_get_stats(const struct tls_probes *pr, struct tls_probe_stats *out)
{
	*out = pr->stats;
	out->procs = pr->n_probed;
	out->node_wide = pr->node_wide;
	out->files = out->body_files = 0;
	for (size_t i = 0; i < pr->n_files; i++) {
		if (!pr->files[i]->users)
			continue;
		out->files++;
		out->body_files += pr->files[i]->pp.read_body != 0;
	}
}
