/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The TCP/IP endpoints of a socket, or behind a file descriptor of the current task (CO-RE). */
#ifndef MESHMASK_SSL_SOCK_BPF_H
#define MESHMASK_SSL_SOCK_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "meshmask/ssl.h"

#define MM_S_IFMT 0170000
#define MM_S_IFSOCK 0140000
#define MM_AF_INET 2
#define MM_AF_INET6 10

/* Fill c's family and endpoints from sk when it is an IP socket (c->family stays 0 otherwise). */
static __always_inline void ssl_conn_of_sk(struct sock *sk, struct mm_ssl_conn *c)
{
	if (!sk)
		return;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);

	if (family == MM_AF_INET) {
		BPF_CORE_READ_INTO((__u32 *)c->laddr, sk, __sk_common.skc_rcv_saddr);
		BPF_CORE_READ_INTO((__u32 *)c->raddr, sk, __sk_common.skc_daddr);
	} else if (family == MM_AF_INET6) {
		BPF_CORE_READ_INTO(c->laddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(c->raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		return;
	}
	c->family = family;
	c->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	c->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
}

/*
 * Fill c from fd of the current task: c->fd always, the family and endpoints when fd is a
 * socket of an IP family. Ports of a not yet connected socket read as 0.
 */
static __always_inline void ssl_sock_of_fd(int fd, struct mm_ssl_conn *c)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	struct file *f = NULL;

	c->fd = fd;
	if (fd < 0 || (unsigned int)fd >= max)
		return;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return;
	if ((BPF_CORE_READ(f, f_inode, i_mode) & MM_S_IFMT) != MM_S_IFSOCK)
		return;
	struct socket *sock = BPF_CORE_READ(f, private_data);

	ssl_conn_of_sk(BPF_CORE_READ(sock, sk), c);
}

#endif
