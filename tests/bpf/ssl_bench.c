/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cost of the TLS uprobes to the application (scripts/bench.sh tls). An in-process TLS session
 * over a socketpair does SSL_write + SSL_read round trips of a given size, in these setups:
 *   none          no probes
 *   idle-node     probes on SSL_read/SSL_write for every process (the agent before per-process
 *                 probes, and now while stop-rewrite is in force), caller not covered
 *   idle-pid      probes attached for another process only (a pid filter, as the agent does
 *                 for covered processes): what an uncovered process pays now
 *   capture-entry caller covered, probes at the public entry points (SSL_read, SSL_write...):
 *                 records copied to the ringbuf, drained by a consumer thread that runs the
 *                 streaming detection, as the agent does
 *   capture-body  the same with the probes at OpenSSL's shared bodies (tls_elf.h), where the
 *                 kernel emulates the probed instruction instead of single-stepping it
 * Setups are interleaved over --rounds rounds; per setup and size the median round. Prints ns
 * per round trip (one write + one read) of wall time and of the thread's CPU time (the trap
 * costs are CPU time of the thread; wall time also moves with the machine's load), and
 * plaintext MB/s. Then what the
 * connection attribution (sys_enter, or the socket-layer tracepoints where the kernel has them,
 * attached node-wide while TLS capture runs) adds to a read(2) of an empty socket: every
 * process on the node pays it. Needs root.
 *   ssl_bench [--seconds S] [--rounds N] [--setups none,idle-pid,...]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "meshmask/ssl.h"
#include "ssl.skel.h"
#include "ssl_attach.h"
#include "tls_elf.h"
#include "tls_scan.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static SSL_CTX *server_ctx(void)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_sign(x, key, EVP_sha256());
	SSL_CTX_use_certificate(ctx, x);
	SSL_CTX_use_PrivateKey(ctx, key);
	X509_free(x);
	EVP_PKEY_free(key);
	return ctx;
}

/* The file SSL_read came from: libssl, or a private copy through LD_LIBRARY_PATH
 * (scripts/bench.sh tls), which other agents on a shared machine do not probe. */
static int find_libssl(char *out, size_t len)
{
	Dl_info info;
	if (!dladdr((void *)SSL_read, &info) || !info.dli_fname || !realpath(info.dli_fname, out))
		return -ENOENT;
	(void)len;
	return 0;
}

static int own_cgroup_id(__u64 *id)
{
	char root[1024] = "", rel[1024] = "", line[2048], path[2048];
	FILE *f = fopen("/proc/self/mountinfo", "r");
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, " - cgroup2 ") &&
		    sscanf(line, "%*s %*s %*s %*s %1023s", root) == 1)
			break;
	if (f)
		fclose(f);
	f = fopen("/proc/self/cgroup", "r");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "0::", 3))
			sscanf(line + 3, "%1023s", rel);
	if (f)
		fclose(f);
	snprintf(path, sizeof(path), "%s%s", root, rel);
	struct stat st;
	if (!root[0] || stat(path, &st) < 0)
		return -ENOENT;
	*id = st.st_ino;
	return 0;
}

/*
 * What one trap costs here, by the probed instruction: the kernel's x86 uprobes emulate push,
 * nop and relative jumps/calls (one trap), and run anything else out of line with a single
 * step (a second trap). Three empty functions, probed at their first instruction.
 */
#if defined(__x86_64__)
__asm__(".text\n"
	".globl mm_trap_sub\n.type mm_trap_sub,@function\nmm_trap_sub:\n"
	"	sub $0x18,%rsp\n	add $0x18,%rsp\n	ret\n"
	".globl mm_trap_push\n.type mm_trap_push,@function\nmm_trap_push:\n"
	"	push %rbp\n	pop %rbp\n	ret\n"
	".globl mm_trap_nop5\n.type mm_trap_nop5,@function\nmm_trap_nop5:\n"
	"	.byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n	ret\n");
void mm_trap_sub(void);
void mm_trap_push(void);
void mm_trap_nop5(void);
#endif

/* The consumer: what the agent does per record (streaming detection), without the output. */
static struct tls_scan scan;
static uint64_t consumed_bytes, findings;
static atomic_bool stop;

static void count(void *ctx, enum mm_entity e, uint64_t off, size_t len)
{
	(void)ctx;
	(void)e;
	(void)off;
	(void)len;
	findings++;
}

static int on_event(void *ctx, void *data, size_t size)
{
	(void)ctx;
	const struct mm_ssl_event *ev = data;
	if (size < sizeof(*ev) || ev->len > size - sizeof(*ev))
		return 0;
	tls_scan_feed(&scan, (const char *)data + sizeof(*ev), ev->len, MM_ENT_ALL, count, NULL);
	consumed_bytes += ev->len;
	return 0;
}

static void *consumer(void *arg)
{
	struct ring_buffer *rb = arg;
	while (!atomic_load(&stop)) {
		ring_buffer__poll(rb, 50);
		ring_buffer__consume(rb); /* records come without wake-ups below the threshold */
	}
	ring_buffer__consume(rb);
	return NULL;
}

struct pair {
	SSL *cli, *srv;
};

/* ns per read(2) of an empty non-blocking fd (EAGAIN), over `seconds`. */
static double read_ns(int fd, double seconds)
{
	char b;
	uint64_t n = 0;
	double t0 = now_s(), t;
	do {
		for (int i = 0; i < 10000; i++)
			if (read(fd, &b, 1) >= 0)
				return -1; /* the pipe is never written */
		n += 10000;
	} while ((t = now_s()) - t0 < seconds);
	return (t - t0) / (double)n * 1e9;
}

static double median(double *v, int n)
{
	double t[15];
	memcpy(t, v, n * sizeof(*t));
	for (int i = 1; i < n; i++)
		for (int k = i; k > 0 && t[k - 1] > t[k]; k--) {
			double x = t[k];
			t[k] = t[k - 1];
			t[k - 1] = x;
		}
	return t[n / 2];
}

/* Runs of the SSL_* uprobe programs so far (0 without BPF stats). */
static uint64_t prog_runs(struct ssl *skel)
{
	struct bpf_program *progs[] = {
		skel->progs.ssl_write_enter,	skel->progs.ssl_write_leave,
		skel->progs.ssl_read_enter,	skel->progs.ssl_read_leave,
		skel->progs.ssl_write_ex_enter, skel->progs.ssl_write_ex_leave,
		skel->progs.ssl_read_ex_enter,	skel->progs.ssl_read_ex_leave,
	};
	uint64_t n = 0;
	for (size_t i = 0; i < sizeof(progs) / sizeof(progs[0]); i++) {
		struct bpf_prog_info info = {0};
		__u32 len = sizeof(info);
		if (bpf_obj_get_info_by_fd(bpf_program__fd(progs[i]), &info, &len) == 0)
			n += info.run_cnt;
	}
	return n;
}

/* Whether setup `name` is in the comma-separated list (NULL: all). "none" always runs. */
static bool wanted(const char *list, const char *name)
{
	if (!list || !strcmp(name, "none"))
		return true;
	size_t n = strlen(name);
	for (const char *p = list; (p = strstr(p, name)); p += n)
		if ((p == list || p[-1] == ',') && (p[n] == ',' || !p[n]))
			return true;
	return false;
}

static double thread_cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double last_cpu_ns; /* CPU ns per round of the last run() */

static double run(struct pair *p, size_t size, double seconds, uint64_t *rounds_out)
{
	static char out[16384], in[16384];
	for (size_t i = 0; i < size; i++)
		out[i] = (char)('a' + i % 26);
	/* Something for the detectors to do: an email per message. */
	if (size >= 64)
		memcpy(out + size / 2, " ann@example.com ", 17);
	uint64_t rounds = 0;
	double c0 = thread_cpu_s(), t0 = now_s(), t = t0;
	while (t - t0 < seconds) {
		for (int k = 0; k < 256; k++) {
			if (SSL_write(p->cli, out, (int)size) != (int)size)
				return -1;
			size_t got = 0;
			while (got < size) {
				int n = SSL_read(p->srv, in, sizeof(in));
				if (n <= 0)
					return -1;
				got += (size_t)n;
			}
		}
		rounds += 256;
		t = now_s();
	}
	*rounds_out = rounds;
	last_cpu_ns = (thread_cpu_s() - c0) / rounds * 1e9;
	return (t - t0) / rounds * 1e9;
}

int main(int argc, char **argv)
{
	double seconds = 1;
	int n_rounds = 3;
	const char *only = NULL; /* --setups none,idle-pid: only these (comma-separated names) */
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--seconds"))
			seconds = atof(argv[i + 1]);
		else if (!strcmp(argv[i], "--rounds"))
			n_rounds = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--setups"))
			only = argv[i + 1];
	}
	if (n_rounds < 1 || n_rounds > 15)
		n_rounds = 3;
	if (geteuid() != 0) {
		fprintf(stderr, "ssl_bench: needs root\n");
		return 77;
	}
	int sv[2];
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	int force = 4 << 20;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUFFORCE, &force, sizeof(force));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUFFORCE, &force, sizeof(force));
	SSL_CTX *sctx = server_ctx(), *cctx = SSL_CTX_new(TLS_client_method());
	struct pair p = {SSL_new(cctx), SSL_new(sctx)};
	SSL_set_fd(p.srv, sv[1]);
	SSL_set_fd(p.cli, sv[0]);
	SSL_set_accept_state(p.srv);
	SSL_set_connect_state(p.cli);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	int done = 0;
	for (int i = 0; i < 1000 && done != 3; i++) {
		if (!(done & 1) && SSL_do_handshake(p.cli) == 1)
			done |= 1;
		if (!(done & 2) && SSL_do_handshake(p.srv) == 1)
			done |= 2;
	}
	fcntl(sv[0], F_SETFL, 0);
	fcntl(sv[1], F_SETFL, 0);
	char libssl[PATH_MAX];
	__u64 cgid;
	if (done != 3 || find_libssl(libssl, sizeof(libssl)) < 0 || own_cgroup_id(&cgid) < 0) {
		fprintf(stderr, "ssl_bench: set-up failed\n");
		return 1;
	}

	/* Kernels before the socket-layer tracepoints load everything but those two. */
	bool sock_tp = mm_have_sock_tracepoints();
	struct ssl *skel = ssl__open();
	if (skel) {
		bpf_program__set_autoload(skel->progs.ssl_sock_send, sock_tp);
		bpf_program__set_autoload(skel->progs.ssl_sock_recv, sock_tp);
		if (ssl__load(skel)) {
			ssl__destroy(skel);
			skel = NULL;
		}
	}
	if (!skel) {
		fprintf(stderr, "ssl_bench: loading ssl.bpf.o: %s\n", strerror(errno));
		return 1;
	}
	const size_t sizes[] = {64, 1024, 16384};
	enum { NONE, IDLE_NODE, IDLE_PID, CAP_ENTRY, CAP_BODY, N_SETUPS };
	const char *names[] = {"none", "idle-node", "idle-pid", "capture-entry", "capture-body"};
	double wall[N_SETUPS][3][15], cpu[N_SETUPS][3][15];
	/* BPF program runs per round trip, from the kernel's run counters: a probe that fires
	 * for this process runs its program (every trap does), one that does not never runs. */
	double runs[N_SETUPS][3] = {{0}};
	int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
	uint64_t rounds = 1;
	struct tls_probe_points bpp;
	bool bodies = tls_elf_probe_points(libssl, &bpp) == 0 && bpp.read_body && bpp.write_body;
	/* Another process that maps libssl: idle-pid's probes are attached for it only. */
	pid_t other = fork();
	if (other == 0) {
		pause();
		_exit(0);
	}

	for (int round = 0; round < n_rounds; round++) {
		for (int setup = 0; setup < N_SETUPS; setup++) {
			if (!wanted(only, names[setup]))
				continue;
			struct bpf_link *links[8] = {0};
			struct ring_buffer *rb = NULL;
			pthread_t th;
			bool body = setup == CAP_BODY && bodies;
			int pid = setup == IDLE_PID ? other : setup == IDLE_NODE ? -1 : getpid();
			const char *funcs[] = {"SSL_write", "SSL_read", "SSL_write_ex", "SSL_read_ex"};
			struct bpf_program *progs[] = {
				skel->progs.ssl_write_enter,	skel->progs.ssl_write_leave,
				skel->progs.ssl_read_enter,	skel->progs.ssl_read_leave,
				skel->progs.ssl_write_ex_enter, skel->progs.ssl_write_ex_leave,
				skel->progs.ssl_read_ex_enter,	skel->progs.ssl_read_ex_leave,
			};
			for (int i = 0; setup != NONE && i < 8; i++) {
				LIBBPF_OPTS(bpf_uprobe_opts, o, .func_name = funcs[i / 2],
					    .retprobe = i % 2);
				uint64_t off = 0;
				if (body) {
					/* The _ex programs at the bodies; nothing on the wrappers. */
					if (i < 4)
						continue;
					o.func_name = NULL;
					off = i < 6 ? bpp.write_body : bpp.read_body;
				}
				links[i] = bpf_program__attach_uprobe_opts(progs[i], pid, libssl,
									   off, &o);
				if (!links[i]) {
					fprintf(stderr, "ssl_bench: attach %s: %s\n", funcs[i / 2],
						strerror(errno));
					return 1;
				}
			}
			if (setup >= CAP_ENTRY) {
				struct mm_ssl_cover cover = {.slot = 0};
				bpf_map__update_elem(skel->maps.covered_cgroups, &cgid, sizeof(cgid),
						     &cover, sizeof(cover), BPF_ANY);
				rb = ring_buffer__new(bpf_map__fd(skel->maps.events), on_event, NULL,
						      NULL);
				atomic_store(&stop, false);
				pthread_create(&th, NULL, consumer, rb);
			}
			for (int s = 0; s < 3; s++) {
				uint64_t before = prog_runs(skel);
				wall[setup][s][round] = run(&p, sizes[s], seconds, &rounds);
				cpu[setup][s][round] = last_cpu_ns;
				runs[setup][s] += (double)(prog_runs(skel) - before) / rounds / n_rounds;
				if (wall[setup][s][round] < 0) {
					fprintf(stderr, "ssl_bench: TLS round trip failed\n");
					return 1;
				}
			}
			if (rb) {
				atomic_store(&stop, true);
				pthread_join(th, NULL);
				ring_buffer__free(rb);
				bpf_map__delete_elem(skel->maps.covered_cgroups, &cgid, sizeof(cgid),
						     0);
			}
			for (int i = 0; i < 8; i++)
				bpf_link__destroy(links[i]);
		}
	}
	if (stats_fd >= 0)
		close(stats_fd);
	kill(other, SIGKILL);
	waitpid(other, NULL, 0);

	printf("%d rounds of %.1f s per setup and size, interleaved; median round%s\n", n_rounds,
	       seconds, bodies ? "" : " (no shared bodies in this libssl: capture-body = entry)");
	printf("%-14s %6s %12s %10s %12s %10s %10s %10s\n", "setup", "size", "wall ns", "vs none",
	       "cpu ns", "vs none", "MB/s", "BPF runs");
	for (int setup = 0; setup < N_SETUPS; setup++) {
		for (int s = 0; s < 3 && wanted(only, names[setup]); s++) {
			double w = median(wall[setup][s], n_rounds), c = median(cpu[setup][s], n_rounds);
			double w0 = median(wall[NONE][s], n_rounds), c0 = median(cpu[NONE][s], n_rounds);
			printf("%-14s %6zu %12.0f %+9.1f%% %12.0f %+9.1f%% %10.1f %10.2f\n",
			       names[setup], sizes[s], w, (w / w0 - 1) * 100, c, (c / c0 - 1) * 100,
			       sizes[s] / w * 1e3, stats_fd >= 0 ? runs[setup][s] : -1.0);
		}
	}
	__u32 key;
	uint64_t lost = 0;
	int ncpu = libbpf_num_possible_cpus();
	struct mm_ssl_drop *d = calloc(ncpu, sizeof(*d));
	for (key = 0; d && key < MM_SSL_DROP__COUNT; key++)
		if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.drops), &key, d) == 0)
			for (int c = 0; c < ncpu; c++)
				lost += d[c].events;
	free(d);
	printf("capture: %.1f MB scanned by the consumer, %llu findings, %llu records dropped\n",
	       consumed_bytes / 1e6, (unsigned long long)findings, (unsigned long long)lost);

	/* Trap costs: CPU ns per call of an empty function, no probe / entry / entry + return.
	 * The program is ssl_set_fd: one map lookup (caller not covered), then it returns. */
#if defined(__x86_64__)
	{
		const char *tn[] = {"mm_trap_sub", "mm_trap_push", "mm_trap_nop5"};
		const char *what[] = {"sub $0x18,%rsp (single-stepped)", "push %rbp (emulated)",
				      "nop5 (emulated)"};
		void (*tf[])(void) = {mm_trap_sub, mm_trap_push, mm_trap_nop5};
		printf("trap cost, CPU ns per call (median of %d rounds):\n", n_rounds);
		printf("  %-34s %10s %10s %14s\n", "first instruction", "no probe", "entry",
		       "entry+return");
		for (int f = 0; f < 3; f++) {
			double v[3][15];
			for (int round = 0; round < n_rounds; round++) {
				struct bpf_link *l[2] = {0};
				for (int k = 0; k < 3; k++) {
					if (k) {
						LIBBPF_OPTS(bpf_uprobe_opts, o, .func_name = tn[f],
							    .retprobe = k == 2);
						l[k - 1] = bpf_program__attach_uprobe_opts(
							skel->progs.ssl_set_fd, getpid(), "/proc/self/exe",
							0, &o);
					}
					uint64_t calls = 0;
					double c0 = thread_cpu_s(), t0 = now_s();
					do {
						for (int i = 0; i < 1000; i++)
							tf[f]();
						calls += 1000;
					} while (now_s() - t0 < seconds / 4);
					v[k][round] = (thread_cpu_s() - c0) / calls * 1e9;
				}
				bpf_link__destroy(l[0]);
				bpf_link__destroy(l[1]);
			}
			printf("  %-34s %10.0f %10.0f %14.0f\n", what[f], median(v[0], n_rounds),
			       median(v[1], n_rounds), median(v[2], n_rounds));
		}
	}
#endif

	/*
	 * What attribution costs every process on the node: read(2) of an empty non-blocking
	 * socket and of an empty pipe (EAGAIN: the syscall and the socket or pipe code, nothing
	 * else) with no program, with sys_enter, and with the socket-layer tracepoints; on the
	 * socket, the caller uncovered (every other process) and covered.
	 */
	int sp[2] = {-1, -1}, pp[2] = {-1, -1};
	double sys[3][3] = {{0}};
	const char *how[] = {"no program", "sys_enter", "socket tracepoints"};
	bool measured = socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sp) == 0 &&
			pipe2(pp, O_NONBLOCK) == 0;
	for (int w = 0; measured && w < (sock_tp ? 3 : 2); w++) {
		struct bpf_link *l1 = NULL, *l2 = NULL;
		if (w == 1)
			measured = (l1 = bpf_program__attach(skel->progs.ssl_sys_enter)) != NULL;
		if (w == 2)
			measured = (l1 = bpf_program__attach(skel->progs.ssl_sock_send)) != NULL &&
				   (l2 = bpf_program__attach(skel->progs.ssl_sock_recv)) != NULL;
		/* k: 0 socket uncovered, 1 socket covered, 2 pipe uncovered */
		for (int k = 0; measured && k < 3; k++) {
			struct mm_ssl_cover cover = {.slot = 0};
			if (k == 1)
				bpf_map__update_elem(skel->maps.covered_cgroups, &cgid,
						     sizeof(cgid), &cover, sizeof(cover), BPF_ANY);
			sys[w][k] = read_ns(k == 2 ? pp[0] : sp[0], seconds);
			measured = sys[w][k] > 0;
			bpf_map__delete_elem(skel->maps.covered_cgroups, &cgid, sizeof(cgid), 0);
		}
		bpf_link__destroy(l1);
		bpf_link__destroy(l2);
	}
	if (measured) {
		printf("read(2) of an empty fd, ns per call (added): %18s %15s %15s\n",
		       "socket, uncovered", "socket, covered", "pipe");
		for (int w = 0; w < (sock_tp ? 3 : 2); w++)
			printf("  %-42s %11.0f (%+4.0f) %8.0f (%+4.0f) %8.0f (%+4.0f)\n", how[w],
			       sys[w][0], sys[w][0] - sys[0][0], sys[w][1], sys[w][1] - sys[0][1],
			       sys[w][2], sys[w][2] - sys[0][2]);
	} else {
		printf("read(2) of an empty fd: not measured (%s)\n", strerror(errno));
	}
	for (int i = 0; i < 2; i++) {
		close(sp[i]);
		close(pp[i]);
	}
	ssl__destroy(skel);
	SSL_free(p.cli);
	SSL_free(p.srv);
	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	return 0;
}
