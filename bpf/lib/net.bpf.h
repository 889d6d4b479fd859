/* SPDX-License-Identifier: Apache-2.0 */
/* Constants vmlinux.h does not carry (they are #defines in UAPI headers). */
#ifndef MESHMASK_NET_BPF_H
#define MESHMASK_NET_BPF_H

#define MM_AF_INET 2
#define MM_AF_INET6 10
#define MM_SOCK_STREAM 1
#define MM_IPPROTO_TCP 6
#define MM_LOOPBACK4 0x7f000001u
#define MM_ENOENT 2
#define MM_EINVAL 22

/* True when a network-order IPv6 address (4 words) is v4-mapped (::ffff:a.b.c.d). */
static __always_inline int mm_ip6_is_v4mapped(__u32 w0, __u32 w1, __u32 w2)
{
	return w0 == 0 && w1 == 0 && w2 == bpf_htonl(0x0000ffffu);
}

#endif
