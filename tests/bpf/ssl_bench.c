/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cost of the TLS uprobes to the application (scripts/bench.sh tls). An in-process TLS session
 * over a socketpair does SSL_write + SSL_read round trips of a given size, in three setups:
 *   none      no probes
 *   idle      probes attached for every process (as the agent does), caller's cgroup not
 *             covered: what every other TLS process on the node pays
 *   capture   caller covered: records copied to the ringbuf, drained by a consumer thread
 *             that runs the streaming detection over them, as the agent does
 * Prints ns per round trip (one write + one read) and plaintext MB/s. Then what the
 * connection attribution (sys_enter, or the socket-layer tracepoints where the kernel has them,
 * attached node-wide while TLS capture runs) adds to a read(2) of an empty socket: every
 * process on the node pays it. Needs root.
 *   ssl_bench [--seconds S]
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

static int find_libssl(char *out, size_t len)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[4096];
	int r = -ENOENT;
	while (f && r && fgets(line, sizeof(line), f)) {
		char *p = strchr(line, '/');
		if (p && strstr(p, "/libssl.so")) {
			p[strcspn(p, "\n")] = 0;
			snprintf(out, len, "%s", p);
			r = 0;
		}
	}
	if (f)
		fclose(f);
	return r;
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

static double run(struct pair *p, size_t size, double seconds, uint64_t *rounds_out)
{
	static char out[16384], in[16384];
	for (size_t i = 0; i < size; i++)
		out[i] = (char)('a' + i % 26);
	/* Something for the detectors to do: an email per message. */
	if (size >= 64)
		memcpy(out + size / 2, " ann@example.com ", 17);
	uint64_t rounds = 0;
	double t0 = now_s(), t = t0;
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
	return (t - t0) / rounds * 1e9;
}

int main(int argc, char **argv)
{
	double seconds = 2;
	if (argc == 3 && !strcmp(argv[1], "--seconds"))
		seconds = atof(argv[2]);
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
	char libssl[1024];
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
	double res[3][3];
	uint64_t rounds;
	const char *names[] = {"none", "idle", "capture"};

	for (int setup = 0; setup < 3; setup++) {
		struct bpf_link *links[8] = {0};
		struct ring_buffer *rb = NULL;
		pthread_t th;
		if (setup >= 1) {
			const char *funcs[] = {"SSL_write", "SSL_read", "SSL_write_ex",
					       "SSL_read_ex"};
			struct bpf_program *progs[] = {
				skel->progs.ssl_write_enter,	skel->progs.ssl_write_leave,
				skel->progs.ssl_read_enter,	skel->progs.ssl_read_leave,
				skel->progs.ssl_write_ex_enter, skel->progs.ssl_write_ex_leave,
				skel->progs.ssl_read_ex_enter,	skel->progs.ssl_read_ex_leave,
			};
			for (int i = 0; i < 8; i++) {
				LIBBPF_OPTS(bpf_uprobe_opts, o, .func_name = funcs[i / 2],
					    .retprobe = i % 2);
				links[i] = bpf_program__attach_uprobe_opts(progs[i], -1, libssl, 0,
									   &o);
				if (!links[i]) {
					fprintf(stderr, "ssl_bench: attach %s: %s\n", funcs[i / 2],
						strerror(errno));
					return 1;
				}
			}
		}
		if (setup == 2) {
			struct mm_ssl_cover cover = {.slot = 0};
			bpf_map__update_elem(skel->maps.covered_cgroups, &cgid, sizeof(cgid),
					     &cover, sizeof(cover), BPF_ANY);
			rb = ring_buffer__new(bpf_map__fd(skel->maps.events), on_event, NULL, NULL);
			atomic_store(&stop, false);
			pthread_create(&th, NULL, consumer, rb);
		}
		for (int s = 0; s < 3; s++) {
			res[setup][s] = run(&p, sizes[s], seconds, &rounds);
			if (res[setup][s] < 0) {
				fprintf(stderr, "ssl_bench: TLS round trip failed\n");
				return 1;
			}
		}
		if (setup == 2) {
			atomic_store(&stop, true);
			pthread_join(th, NULL);
			ring_buffer__free(rb);
			bpf_map__delete_elem(skel->maps.covered_cgroups, &cgid, sizeof(cgid), 0);
		}
		for (int i = 0; i < 8; i++)
			bpf_link__destroy(links[i]);
	}

	printf("%-8s %10s %12s %12s %12s\n", "setup", "size", "ns/round", "MB/s", "vs none");
	for (int setup = 0; setup < 3; setup++)
		for (int s = 0; s < 3; s++)
			printf("%-8s %10zu %12.0f %12.1f %+11.1f%%\n", names[setup], sizes[s],
			       res[setup][s], sizes[s] / res[setup][s] * 1e3,
			       (res[setup][s] / res[0][s] - 1) * 100);
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
