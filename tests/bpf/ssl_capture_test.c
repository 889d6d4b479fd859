/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bpf suite: bpf/ssl.bpf.c loads and verifies, its uprobes attach to the libssl this test is
 * linked with, and a TLS session inside this process (client and server over a socketpair)
 * is captured byte for byte: SSL_write, SSL_write_ex, SSL_read, SSL_read_ex, the fd given to
 * SSL_set_fd, SSL_free; nothing is captured once the cgroup is no longer covered.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "meshmask/ssl.h"
#include "ssl.skel.h"
#include "ssl_attach.h"
#include "tls_elf.h"
#include "tap.h"

#define MAX_RECORDS 256

struct record {
	struct mm_ssl_event ev;
	char data[256];
};

static struct record records[MAX_RECORDS];
static size_t n_records;

static int on_event(void *ctx, void *data, size_t size)
{
	(void)ctx;
	if (n_records == MAX_RECORDS || size < sizeof(struct mm_ssl_event))
		return 0;
	struct record *r = &records[n_records++];
	memcpy(&r->ev, data, sizeof(r->ev));
	size_t n = r->ev.len < sizeof(r->data) ? r->ev.len : sizeof(r->data);
	memcpy(r->data, (char *)data + sizeof(r->ev), n);
	return 0;
}

/* Sum over CPUs of one drop counter. */
/* Stop-rewrite records seen on the `stops` ringbuf. */
static struct mm_ssl_stop stops_seen[64];
static size_t n_stops;
static pid_t our_child; /* the child this test forked last */

/*
 * Only this process's records and its child's: the covered cgroup is the test's own, which
 * processes of other tests (run in parallel) may share and exec in.
 */
static int on_stop(void *ctx, void *data, size_t size)
{
	(void)ctx;
	struct mm_ssl_stop st;
	if (size < sizeof(st) || n_stops >= 64)
		return 0;
	memcpy(&st, data, sizeof(st));
	if (st.pid == (__u32)getpid() || (our_child && st.pid == (__u32)our_child))
		stops_seen[n_stops++] = st;
	return 0;
}

static __u64 unenforced_sum(struct ssl *skel, __u32 slot, __u32 reason)
{
	int ncpu = libbpf_num_possible_cpus();
	__u64 v[ncpu > 0 ? ncpu : 1], total = 0;
	__u32 key = slot * MM_SSL_UNENF__COUNT + reason;
	if (ncpu > 0 && bpf_map__lookup_elem(skel->maps.unenforced, &key, sizeof(key), v,
					     sizeof(__u64) * ncpu, 0) == 0)
		for (int i = 0; i < ncpu; i++)
			total += v[i];
	return total;
}

static struct mm_ssl_drop drop_sum(struct ssl *skel, __u32 slot, __u32 reason)
{
	struct mm_ssl_drop sum = {0};
	__u32 key = slot * MM_SSL_DROP__COUNT + reason;
	int ncpu = libbpf_num_possible_cpus();
	struct mm_ssl_drop *d = calloc(ncpu > 0 ? ncpu : 1, sizeof(*d));
	if (d && bpf_map_lookup_elem(bpf_map__fd(skel->maps.drops), &key, d) == 0) {
		for (int i = 0; i < ncpu; i++) {
			sum.events += d[i].events;
			sum.bytes += d[i].bytes;
		}
	}
	free(d);
	return sum;
}

/* The libssl mapped into this process (as any process on the node would show it). */
static int find_libssl(char *out, size_t len)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[4096];
	int r = -ENOENT;
	while (f && r && fgets(line, sizeof(line), f)) {
		char *p = strchr(line, '/');
		if (!p || !strstr(p, "/libssl.so"))
			continue;
		p[strcspn(p, "\n")] = 0;
		snprintf(out, len, "%s", p);
		r = 0;
	}
	if (f)
		fclose(f);
	return r;
}

/* cgroup v2 id of this process: the inode of its cgroup directory. */
static int own_cgroup_id(__u64 *id)
{
	char root[1024] = "", path[2048], line[2048];
	FILE *f = fopen("/proc/self/mountinfo", "r");
	while (f && fgets(line, sizeof(line), f)) {
		const char *sep = strstr(line, " - cgroup2 ");
		if (sep && sscanf(line, "%*s %*s %*s %*s %1023s", root) == 1)
			break;
	}
	if (f)
		fclose(f);
	f = fopen("/proc/self/cgroup", "r");
	char rel[1024] = "";
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "0::", 3))
			sscanf(line + 3, "%1023s", rel);
	if (f)
		fclose(f);
	if (!root[0] || !rel[0])
		return -ENOENT;
	snprintf(path, sizeof(path), "%s%s", root, rel);
	struct stat st;
	if (stat(path, &st) < 0)
		return -errno;
	*id = st.st_ino;
	return 0;
}

/* A throwaway self-signed P-256 certificate for the server side. */
static SSL_CTX *server_ctx(void)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!key || !x || !ctx)
		return NULL;
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, key);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)"localhost", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_sign(x, key, EVP_sha256());
	SSL_CTX_use_certificate(ctx, x);
	SSL_CTX_use_PrivateKey(ctx, key);
	X509_free(x);
	EVP_PKEY_free(key);
	return ctx;
}

static const struct record *find_record(__u8 dir, __u64 ssl, const char *text)
{
	for (size_t i = 0; i < n_records; i++) {
		const struct record *r = &records[i];
		if (r->ev.direction == dir && r->ev.ssl == ssl && r->ev.len == strlen(text) &&
		    !memcmp(r->data, text, r->ev.len))
			return r;
	}
	return NULL;
}

/* Client and server handshakes driven in turn (non-blocking); true once both are done. */
static bool handshake(SSL *cli, SSL *srv, int tries)
{
	SSL_set_accept_state(srv);
	SSL_set_connect_state(cli);
	int done = 0;
	for (int i = 0; i < tries && done != 3; i++) {
		if (!(done & 1) && SSL_do_handshake(cli) == 1)
			done |= 1;
		if (!(done & 2) && SSL_do_handshake(srv) == 1)
			done |= 2;
	}
	return done == 3;
}

int main(void)
{
	if (geteuid() != 0) {
		printf("1..0 # SKIP needs root\n");
		return 0;
	}

	/* Stop-rewrite needs an agent: pretend it is pid 1 (which traces nothing here). */
	struct ssl *skel = ssl__open();
	/* Kernels before the socket-layer tracepoints load everything but those two. */
	bool sock_tp = mm_have_sock_tracepoints();
	if (skel) {
		skel->rodata->tracer_tgid = 1;
		bpf_program__set_autoload(skel->progs.ssl_sock_send, sock_tp);
		bpf_program__set_autoload(skel->progs.ssl_sock_recv, sock_tp);
		if (ssl__load(skel)) {
			ssl__destroy(skel);
			skel = NULL;
		}
	}
	ok(skel != NULL, "ssl.bpf.o loads and verifies");
	if (!skel)
		return tap_done();
	struct bpf_program *prog;
	size_t n_progs = 0, n_loaded = 0;
	bpf_object__for_each_program(prog, skel->obj)
	{
		n_progs++;
		n_loaded += bpf_program__fd(prog) >= 0;
	}
	ok(n_progs == 17 && n_loaded == n_progs - (sock_tp ? 0 : 2), "%zu of %zu programs loaded%s",
	   n_loaded, n_progs, sock_tp ? "" : " (no socket tracepoints in this kernel)");

	char libssl[1024];
	ok(find_libssl(libssl, sizeof(libssl)) == 0, "libssl is mapped: %s", libssl);
	const struct {
		const char *func;
		struct bpf_program *prog;
		bool ret;
	} probes[] = {
		{"SSL_write", skel->progs.ssl_write_enter, false},
		{"SSL_write", skel->progs.ssl_write_leave, true},
		{"SSL_read", skel->progs.ssl_read_enter, false},
		{"SSL_read", skel->progs.ssl_read_leave, true},
		{"SSL_write_ex", skel->progs.ssl_write_ex_enter, false},
		{"SSL_write_ex", skel->progs.ssl_write_ex_leave, true},
		{"SSL_read_ex", skel->progs.ssl_read_ex_enter, false},
		{"SSL_read_ex", skel->progs.ssl_read_ex_leave, true},
		{"SSL_set_fd", skel->progs.ssl_set_fd, false},
		{"SSL_free", skel->progs.ssl_free, false},
	};
	struct bpf_link *links[10] = {0};
	size_t n_links = 0;
	for (size_t i = 0; i < 10; i++) {
		LIBBPF_OPTS(bpf_uprobe_opts, opts, .func_name = probes[i].func,
			    .retprobe = probes[i].ret);
		links[i] =
			bpf_program__attach_uprobe_opts(probes[i].prog, getpid(), libssl, 0, &opts);
		n_links += links[i] != NULL;
	}
	ok(n_links == 10, "10 uprobes attached by symbol name");
	skel->links.ssl_sys_enter = bpf_program__attach(skel->progs.ssl_sys_enter);
	ok(skel->links.ssl_sys_enter != NULL, "tp_btf/sys_enter attached");

	__u64 cgid = 0;
	ok(own_cgroup_id(&cgid) == 0, "own cgroup id");
	struct mm_ssl_cover cover = {.slot = 7};
	ok(bpf_map__update_elem(skel->maps.covered_cgroups, &cgid, sizeof(cgid), &cover,
				sizeof(cover), BPF_ANY) == 0,
	   "own cgroup covered");
	struct ring_buffer *rb =
		ring_buffer__new(bpf_map__fd(skel->maps.events), on_event, NULL, NULL);

	int sv[2];
	socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	SSL_CTX *sctx = server_ctx();
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
	SSL *srv = SSL_new(sctx), *cli = SSL_new(cctx);
	SSL_set_fd(srv, sv[1]);
	SSL_set_fd(cli, sv[0]);
	ok(handshake(cli, srv, 1000), "TLS handshake in process");

	const char *req = "GET /ssn/536-22-8841 HTTP/1.1\r\n\r\n";
	const char *resp = "{\"card\":\"4111 1111 1111 1111\"}";
	char buf[512];
	size_t n = 0;
	ok(SSL_write(cli, req, (int)strlen(req)) == (int)strlen(req), "SSL_write");
	int got = SSL_read(srv, buf, sizeof(buf));
	ok(got == (int)strlen(req), "SSL_read");
	ok(SSL_write_ex(srv, resp, strlen(resp), &n) == 1, "SSL_write_ex");
	ok(SSL_read_ex(cli, buf, sizeof(buf), &n) == 1 && n == strlen(resp), "SSL_read_ex");

	ring_buffer__consume(rb);
	const struct record *w = find_record(MM_SSL_DIR_WRITE, (__u64)cli, req);
	const struct record *r = find_record(MM_SSL_DIR_READ, (__u64)srv, req);
	const struct record *wx = find_record(MM_SSL_DIR_WRITE, (__u64)srv, resp);
	const struct record *rx = find_record(MM_SSL_DIR_READ, (__u64)cli, resp);
	ok(w && r && wx && rx, "all four calls captured byte for byte (%zu records)", n_records);
	ok(w && w->ev.pid == (__u32)getpid() && w->ev.cgroup_id == cgid && w->ev.slot == 7 &&
		   w->ev.total == strlen(req) && w->ev.offset == 0 &&
		   (w->ev.flags & MM_SSL_F_LAST) && !(w->ev.flags & MM_SSL_F_TRUNCATED),
	   "record header: pid, cgroup, slot, total, flags");
	ok(w && w->ev.conn.fd == sv[0] && r && r->ev.conn.fd == sv[1],
	   "fd from SSL_set_fd attributed (%d, %d)", w ? w->ev.conn.fd : -2,
	   r ? r->ev.conn.fd : -2);

	/* A call larger than one record is emitted as consecutive records. */
	static char big[40000];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	size_t first = n_records;
	ok(SSL_write(cli, big, sizeof(big)) == (int)sizeof(big), "SSL_write of 40000 bytes");
	ring_buffer__consume(rb);
	bool chunks_ok = n_records == first + 3;
	for (size_t i = 0; chunks_ok && i < 3; i++) {
		const struct mm_ssl_event *e = &records[first + i].ev;
		__u32 want_len = i < 2 ? MM_SSL_CHUNK : sizeof(big) - 2 * MM_SSL_CHUNK;
		chunks_ok = e->direction == MM_SSL_DIR_WRITE && e->offset == i * MM_SSL_CHUNK &&
			    e->len == want_len && e->total == sizeof(big) &&
			    !!(e->flags & MM_SSL_F_LAST) == (i == 2) &&
			    !memcmp(records[first + i].data, big + i * MM_SSL_CHUNK,
				    sizeof(records[0].data));
	}
	ok(chunks_ok, "40000 bytes as 3 records at offsets 0, 16384, 32768");
	while (SSL_read(srv, big, sizeof(big)) > 0)
		;
	ring_buffer__consume(rb);

	/* Past MM_SSL_MAX_CHUNKS records, a call is cut and the rest counted as dropped. */
	static char huge[300000];
	int force = 4 << 20;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUFFORCE, &force, sizeof(force));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUFFORCE, &force, sizeof(force));
	first = n_records;
	ok(SSL_write(cli, huge, sizeof(huge)) == (int)sizeof(huge), "SSL_write of 300000 bytes");
	ring_buffer__consume(rb);
	bool cut_ok = n_records == first + MM_SSL_MAX_CHUNKS;
	for (size_t i = 0; cut_ok && i < MM_SSL_MAX_CHUNKS; i++) {
		const struct mm_ssl_event *e = &records[first + i].ev;
		cut_ok = e->len == MM_SSL_CHUNK && e->total == sizeof(huge) &&
			 (e->flags & MM_SSL_F_TRUNCATED) &&
			 !!(e->flags & MM_SSL_F_LAST) == (i == MM_SSL_MAX_CHUNKS - 1);
	}
	ok(cut_ok, "%d records marked truncated (%zu)", MM_SSL_MAX_CHUNKS, n_records - first);
	struct mm_ssl_drop cut = drop_sum(skel, 7, MM_SSL_DROP_TRUNCATED);
	ok(cut.events == 1 && cut.bytes == sizeof(huge) - MM_SSL_MAX_CHUNKS * MM_SSL_CHUNK,
	   "truncation counted: %llu bytes", (unsigned long long)cut.bytes);
	while (SSL_read(srv, huge, sizeof(huge)) > 0)
		;
	ring_buffer__consume(rb);

	/*
	 * Stop-rewrite: a thread that the agent does not trace is never signalled, only counted;
	 * a process exec'd in a covered stop-rewrite cgroup is announced for seizing.
	 */
	struct ring_buffer *srb =
		ring_buffer__new(bpf_map__fd(skel->maps.stops), on_stop, NULL, NULL);
	skel->links.ssl_exec = bpf_program__attach(skel->progs.ssl_exec);
	ok(srb && skel->links.ssl_exec, "tp_btf/sched_process_exec attached");
	struct mm_ssl_cover stop_cover = {.slot = 7, .flags = MM_SSL_COVER_STOP};
	bpf_map__update_elem(skel->maps.covered_cgroups, &cgid, sizeof(cgid), &stop_cover,
			     sizeof(stop_cover), BPF_ANY);
	/* Not seized yet: the first SSL_read asks for it and waits (bounded: hold_ns, 50 ms). */
	LIBBPF_OPTS(bpf_uprobe_opts, hopts, .func_name = "SSL_read");
	struct bpf_link *hold = bpf_program__attach_uprobe_opts(skel->progs.ssl_read_hold, getpid(),
								libssl, 0, &hopts);
	SSL_write(cli, req, (int)strlen(req));
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	got = SSL_read(srv, buf, sizeof(buf));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long waited_ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	ring_buffer__consume(srb);
	ok(hold && got == (int)strlen(req) && n_stops == 1 &&
		   stops_seen[0].kind == MM_SSL_STOP_SEIZE &&
		   stops_seen[0].pid == (__u32)getpid() && waited_ms >= 45 && waited_ms < 1000,
	   "not seized: seize requested, SSL_read held %ld ms (bound 50; link %d, %zu records)",
	   waited_ms, hold != NULL, n_stops);
	n_stops = 0;
	ok(unenforced_sum(skel, 7, MM_SSL_UNENF_UNTRACED) == 1,
	   "the read was not enforced, and counted");
	__u32 self = (__u32)getpid(), sig = 23;
	bpf_map__update_elem(skel->maps.stop_sig, &self, sizeof(self), &sig, sizeof(sig), BPF_ANY);
	SSL_write(cli, req, (int)strlen(req));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	got = SSL_read(srv, buf, sizeof(buf));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	waited_ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	bpf_link__destroy(hold);
	ring_buffer__consume(srb);
	ok(waited_ms < 45, "once its signal is published, no wait (%ld ms)", waited_ms);
	ok(got == (int)strlen(req) && n_stops == 0 &&
		   unenforced_sum(skel, 7, MM_SSL_UNENF_UNTRACED) == 2,
	   "stop-rewrite, thread not traced: no signal, counted as unenforced");
	pid_t child = fork();
	if (child == 0) {
		execl("/bin/true", "true", (char *)NULL);
		_exit(127);
	}
	our_child = child;
	int wst = 0;
	waitpid(child, &wst, 0);
	ring_buffer__consume(srb);
	bool seize = false;
	for (size_t i = 0; i < n_stops; i++)
		seize |= stops_seen[i].kind == MM_SSL_STOP_SEIZE &&
			 stops_seen[i].pid == (__u32)child;
	ok(seize, "exec in a stop-rewrite cgroup: seize requested for pid %d", (int)child);
	bpf_map__update_elem(skel->maps.covered_cgroups, &cgid, sizeof(cgid), &cover, sizeof(cover),
			     BPF_ANY);
	n_stops = 0;
	child = fork();
	if (child == 0) {
		execl("/bin/true", "true", (char *)NULL);
		_exit(127);
	}
	our_child = child;
	waitpid(child, &wst, 0);
	ring_buffer__consume(srb);
	ok(n_stops == 0, "observe-only cgroup: no stop-rewrite records");
	ring_buffer__free(srb);
	ring_buffer__consume(rb);

	/* Once the cgroup is no longer covered, nothing is captured. */
	bpf_map__delete_elem(skel->maps.covered_cgroups, &cgid, sizeof(cgid), 0);
	size_t before = n_records;
	SSL_write(cli, req, (int)strlen(req));
	SSL_read(srv, buf, sizeof(buf));
	ring_buffer__consume(rb);
	ok(n_records == before, "uncovered cgroup: nothing captured");

	bpf_map__update_elem(skel->maps.covered_cgroups, &cgid, sizeof(cgid), &cover, sizeof(cover),
			     BPF_ANY);
	__u64 cli_ptr = (__u64)cli;
	SSL_free(cli);
	ring_buffer__consume(rb);
	bool closed = false;
	for (size_t i = before; i < n_records; i++)
		closed |=
			records[i].ev.direction == MM_SSL_DIR_CLOSE && records[i].ev.ssl == cli_ptr;
	ok(closed, "SSL_free ends the stream");

	/*
	 * SSL objects without SSL_set_fd (a socket BIO, as curl's): their connection is named by
	 * the socket I/O inside their calls, seen at syscall entry (sys_enter, attached above),
	 * then in the socket layer (the sock_send_length/sock_recv_length tracepoints) instead.
	 */
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in la = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t llen = sizeof(la);
	ok(lfd >= 0 && bind(lfd, (struct sockaddr *)&la, sizeof(la)) == 0 && listen(lfd, 4) == 0 &&
		   getsockname(lfd, (struct sockaddr *)&la, &llen) == 0,
	   "TCP listener on loopback");
	unsigned port = ntohs(la.sin_port);
	for (int way = 0; way < 2; way++) {
		if (way == 1 && !sock_tp) {
			ok(1, "socket tracepoints: attribution # SKIP not in this kernel");
			break;
		}
		const char *how = way ? "socket tracepoints" : "sys_enter";
		if (way == 1) {
			bpf_link__destroy(skel->links.ssl_sys_enter);
			skel->links.ssl_sys_enter = NULL;
			skel->links.ssl_sock_send = bpf_program__attach(skel->progs.ssl_sock_send);
			skel->links.ssl_sock_recv = bpf_program__attach(skel->progs.ssl_sock_recv);
			ok(skel->links.ssl_sock_send && skel->links.ssl_sock_recv,
			   "tp_btf/sock_send_length and sock_recv_length attached");
		}
		int cfd = socket(AF_INET, SOCK_STREAM, 0);
		int afd = -1;
		if (connect(cfd, (struct sockaddr *)&la, sizeof(la)) == 0)
			afd = accept(lfd, NULL, NULL);
		fcntl(cfd, F_SETFL, O_NONBLOCK);
		fcntl(afd, F_SETFL, O_NONBLOCK);
		SSL *bs = SSL_new(sctx), *bc = SSL_new(cctx);
		BIO *sb = BIO_new_socket(afd, BIO_NOCLOSE), *cb = BIO_new_socket(cfd, BIO_NOCLOSE);
		SSL_set_bio(bs, sb, sb);
		SSL_set_bio(bc, cb, cb);
		bool hs = handshake(bc, bs, 10000);
		size_t from = n_records;
		int wrote = SSL_write(bc, req, (int)strlen(req)), read_n = -1;
		for (int i = 0; i < 1000 && read_n <= 0; i++) {
			read_n = SSL_read(bs, buf, sizeof(buf));
			if (read_n <= 0)
				usleep(1000);
		}
		ring_buffer__consume(rb);
		const struct record *bw = NULL, *br = NULL;
		for (size_t i = from; i < n_records; i++) {
			const struct record *x = &records[i];
			if (x->ev.ssl == (__u64)bc && x->ev.direction == MM_SSL_DIR_WRITE)
				bw = x;
			if (x->ev.ssl == (__u64)bs && x->ev.direction == MM_SSL_DIR_READ)
				br = x;
		}
		ok(hs && wrote == (int)strlen(req) && read_n == (int)strlen(req) && bw && br,
		   "%s: TLS over a socket BIO captured", how);
		ok(bw && bw->ev.conn.family == AF_INET && bw->ev.conn.rport == port && br &&
			   br->ev.conn.family == AF_INET && br->ev.conn.lport == port &&
			   !memcmp(br->ev.conn.laddr, &la.sin_addr, 4),
		   "%s: its connection attributed (client to port %u: %u, server on %u)", how, port,
		   bw ? bw->ev.conn.rport : 0, br ? br->ev.conn.lport : 0);
		SSL_free(bs);
		SSL_free(bc);
		close(cfd);
		close(afd);
	}
	close(lfd);

	ok(drop_sum(skel, 7, MM_SSL_DROP_RINGBUF).events == 0 &&
		   drop_sum(skel, 7, MM_SSL_DROP_READ).events == 0,
	   "no ringbuf or read drops counted");

	/*
	 * OpenSSL's shared bodies (tls_elf.h): found in the libssl this test links (x86-64 and
	 * OpenSSL 1.1.1/3.x), and one pair of probes on each captures all four calls once.
	 */
	struct tls_probe_points pp;
	bool bodies = tls_elf_probe_points(libssl, &pp) == 0 && pp.read_body && pp.write_body;
#if defined(__x86_64__)
	ok(bodies, "shared read/write bodies found in %s (%#llx, %#llx)", libssl,
	   (unsigned long long)pp.read_body, (unsigned long long)pp.write_body);
#endif
	if (bodies) {
		for (size_t i = 0; i < 8; i++) {
			bpf_link__destroy(links[i]);
			links[i] = NULL;
		}
		struct bpf_link *bl[4];
		for (int i = 0; i < 4; i++) {
			LIBBPF_OPTS(bpf_uprobe_opts, opts, .retprobe = i % 2);
			struct bpf_program *pg[] = {
				skel->progs.ssl_write_ex_enter, skel->progs.ssl_write_ex_leave,
				skel->progs.ssl_read_ex_enter, skel->progs.ssl_read_ex_leave};
			bl[i] = bpf_program__attach_uprobe_opts(
				pg[i], getpid(), libssl, i < 2 ? pp.write_body : pp.read_body, &opts);
		}
		ok(bl[0] && bl[1] && bl[2] && bl[3], "4 probes attached at the bodies");
		cover.slot = 7;
		bpf_map__update_elem(skel->maps.covered_cgroups, &cgid, sizeof(cgid), &cover,
				     sizeof(cover), BPF_ANY);
		int bv[2];
		socketpair(AF_UNIX, SOCK_STREAM, 0, bv);
		fcntl(bv[0], F_SETFL, O_NONBLOCK);
		fcntl(bv[1], F_SETFL, O_NONBLOCK);
		SSL *bsrv = SSL_new(sctx), *bcli = SSL_new(cctx);
		SSL_set_fd(bsrv, bv[1]);
		SSL_set_fd(bcli, bv[0]);
		bool hs = handshake(bcli, bsrv, 1000);
		ring_buffer__consume(rb);
		size_t first_rec = n_records;
		const char *q = "body ssn 536-22-8841", *a = "body card 4111 1111 1111 1111";
		ok(hs && SSL_write(bcli, q, (int)strlen(q)) == (int)strlen(q) &&
			   SSL_read(bsrv, buf, sizeof(buf)) == (int)strlen(q) &&
			   SSL_write_ex(bsrv, a, strlen(a), &n) == 1 &&
			   SSL_read_ex(bcli, buf, sizeof(buf), &n) == 1 && n == strlen(a),
		   "SSL_write, SSL_read, SSL_write_ex, SSL_read_ex");
		ring_buffer__consume(rb);
		const struct record *bw = find_record(MM_SSL_DIR_WRITE, (__u64)bcli, q);
		const struct record *br = find_record(MM_SSL_DIR_READ, (__u64)bsrv, q);
		const struct record *bwx = find_record(MM_SSL_DIR_WRITE, (__u64)bsrv, a);
		const struct record *brx = find_record(MM_SSL_DIR_READ, (__u64)bcli, a);
		ok(bw && br && bwx && brx && n_records == first_rec + 4,
		   "through the bodies: all four captured byte for byte, once each (%zu records)",
		   n_records - first_rec);
		ok(br && br->ev.total == strlen(q) && br->ev.conn.fd == bv[1],
		   "SSL_read through the body: length from *readbytes, fd attributed");
		for (int i = 0; i < 4; i++)
			bpf_link__destroy(bl[i]);
		SSL_free(bsrv);
		SSL_free(bcli);
		close(bv[0]);
		close(bv[1]);
	}

	ring_buffer__free(rb);
	for (size_t i = 0; i < 10; i++)
		bpf_link__destroy(links[i]);
	ssl__destroy(skel);

	/* A ringbuf too small for any record: the loss is counted, never silent. */
	skel = ssl__open();
	struct bpf_link *wl[2] = {0};
	ok(skel && bpf_map__set_max_entries(skel->maps.events, 4096) == 0 && ssl__load(skel) == 0,
	   "loads with a 4 KiB ringbuf");
	if (skel) {
		for (int i = 0; i < 2; i++) {
			LIBBPF_OPTS(bpf_uprobe_opts, opts, .func_name = "SSL_write", .retprobe = i);
			wl[i] = bpf_program__attach_uprobe_opts(i ? skel->progs.ssl_write_leave
								  : skel->progs.ssl_write_enter,
								getpid(), libssl, 0, &opts);
		}
		cover.slot = 3;
		bpf_map__update_elem(skel->maps.covered_cgroups, &cgid, sizeof(cgid), &cover,
				     sizeof(cover), BPF_ANY);
		memset(big, 'q', 5000);
		ok(wl[0] && wl[1] && SSL_write(srv, big, 5000) == 5000, "SSL_write of 5000 bytes");
		struct mm_ssl_drop d = drop_sum(skel, 3, MM_SSL_DROP_RINGBUF);
		ok(d.events == 1 && d.bytes == 5000,
		   "ringbuf drop counted: %llu records, %llu bytes", (unsigned long long)d.events,
		   (unsigned long long)d.bytes);
		bpf_link__destroy(wl[0]);
		bpf_link__destroy(wl[1]);
		ssl__destroy(skel);
	}

	SSL_free(srv);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	close(sv[0]);
	close(sv[1]);
	return tap_done();
}
