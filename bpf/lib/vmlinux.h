/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The kernel types the BPF programs use, and nothing else: checked in, so the build needs no
 * /sys/kernel/btf and gives the same objects on every machine (it replaces the full vmlinux.h
 * that `bpftool btf dump` used to generate from the build host).
 *
 * Every struct is CO-RE (preserve_access_index): a field's offset here is only the compiler's
 * guess, and libbpf relocates each access against the running kernel's BTF at load, by field
 * name. A field that the running kernel lacks, or whose type differs, fails the load with the
 * field's name (the bpf suite loads every object). So a struct lists only the fields a program
 * reads, and adding a field means copying its name and type from the kernel, nothing more.
 *
 * UAPI program contexts (bpf_sock_addr, bpf_sock_ops, sk_msg_md, bpf_sockopt, bpf_sock) keep
 * their include/uapi/linux/bpf.h layout (a prefix up to the last field used), so their offsets
 * are right even before relocation. The sockaddrs are a user ABI written into the caller's
 * buffer: fixed layout, no relocation. Constants are UAPI values, fixed by the kernel ABI.
 *
 * The guard is vmlinux.h's own: libbpf's bpf_tracing.h reads it to pick the kernel's pt_regs
 * field names, and the meshmask ABI headers to skip <linux/types.h>.
 */
#ifndef __VMLINUX_H__
#define __VMLINUX_H__

#if defined(__TARGET_ARCH_x86)
#elif defined(__TARGET_ARCH_arm64)
#else
#error "bpf/lib/vmlinux.h: pt_regs is defined for x86 and arm64 only"
#endif

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

/* Scalar types (include/uapi/asm-generic/int-ll64.h, linux/types.h). */
typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u64 __be64;
typedef __u32 __wsum;
typedef _Bool bool;
enum { false = 0, true = 1 };
typedef unsigned long size_t;
typedef int pid_t;
typedef unsigned short umode_t;

/* Map definitions and map helpers' flags (include/uapi/linux/bpf.h). */
enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_LPM_TRIE = 11,
	BPF_MAP_TYPE_SOCKHASH = 18,
	BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
	BPF_EXIST = 2,
};

enum {
	BPF_F_NO_PREALLOC = 1,
};

/* bpf_msg_redirect_hash() */
enum {
	BPF_F_INGRESS = 1,
};

/* bpf_ringbuf_output/submit/discard() flags, bpf_ringbuf_query() */
enum {
	BPF_RB_NO_WAKEUP = 1,
	BPF_RB_FORCE_WAKEUP = 2,
};

enum {
	BPF_RB_AVAIL_DATA = 0,
	BPF_RB_RING_SIZE = 1,
	BPF_RB_CONS_POS = 2,
	BPF_RB_PROD_POS = 3,
};

/* sk_msg verdicts */
enum sk_action {
	SK_DROP = 0,
	SK_PASS = 1,
};

/* bpf_sock_ops.op (the ones steer.bpf.c handles) */
enum {
	BPF_SOCK_OPS_TCP_CONNECT_CB = 3,
	BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB = 4,
	BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB = 5,
	BPF_SOCK_OPS_STATE_CB = 10,
};

/* bpf_sock_ops_cb_flags_set() */
enum {
	BPF_SOCK_OPS_STATE_CB_FLAG = 4,
};

/* bpf_sock_ops.args[1] of BPF_SOCK_OPS_STATE_CB: the new TCP state */
enum {
	BPF_TCP_CLOSE = 7,
};

/* Program contexts (include/uapi/linux/bpf.h). A pointer member is __bpf_md_ptr: 8 bytes. */
struct bpf_sock {
	__u32 bound_dev_if;
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 mark;
	__u32 priority;
	__u32 src_ip4;
	__u32 src_ip6[4];
	__u32 src_port;
	__be16 dst_port;
	__u32 dst_ip4;
	__u32 dst_ip6[4];
	__u32 state;
	__s32 rx_queue_mapping;
};

struct bpf_sock_addr {
	__u32 user_family;
	__u32 user_ip4;
	__u32 user_ip6[4];
	__u32 user_port;
	__u32 family;
	__u32 type;
	__u32 protocol;
	__u32 msg_src_ip4;
	__u32 msg_src_ip6[4];
	union {
		struct bpf_sock *sk;
	} __attribute__((aligned(8)));
};

struct bpf_sock_ops {
	__u32 op;
	union {
		__u32 args[4];
		__u32 reply;
		__u32 replylong[4];
	};
	__u32 family;
	__u32 remote_ip4;
	__u32 local_ip4;
	__u32 remote_ip6[4];
	__u32 local_ip6[4];
	__u32 remote_port;
	__u32 local_port;
	__u32 is_fullsock;
	__u32 snd_cwnd;
	__u32 srtt_us;
	__u32 bpf_sock_ops_cb_flags;
	/* ... (fields steer.bpf.c does not read) */
};

struct sk_msg_md {
	union {
		void *data;
	} __attribute__((aligned(8)));
	union {
		void *data_end;
	} __attribute__((aligned(8)));
	__u32 family;
	__u32 remote_ip4;
	__u32 local_ip4;
	__u32 remote_ip6[4];
	__u32 local_ip6[4];
	__u32 remote_port;
	__u32 local_port;
	__u32 size;
	union {
		struct bpf_sock *sk;
	} __attribute__((aligned(8)));
};

struct bpf_sockopt {
	union {
		struct bpf_sock *sk;
	} __attribute__((aligned(8)));
	union {
		void *optval;
	} __attribute__((aligned(8)));
	union {
		void *optval_end;
	} __attribute__((aligned(8)));
	__s32 level;
	__s32 optname;
	__s32 optlen;
	__s32 retval;
};

/* Registers: the uprobe context and sys_enter's argument (arch/<arch>/include/asm/ptrace.h). */
#if defined(__TARGET_ARCH_x86)
struct pt_regs {
	unsigned long r15;
	unsigned long r14;
	unsigned long r13;
	unsigned long r12;
	unsigned long bp;
	unsigned long bx;
	unsigned long r11;
	unsigned long r10;
	unsigned long r9;
	unsigned long r8;
	unsigned long ax;
	unsigned long cx;
	unsigned long dx;
	unsigned long si;
	unsigned long di;
	unsigned long orig_ax;
	unsigned long ip;
	unsigned long cs;
	unsigned long flags;
	unsigned long sp;
	unsigned long ss;
};
#elif defined(__TARGET_ARCH_arm64)
/* bpf_tracing.h reads arm64 registers through user_pt_regs, the head of pt_regs. */
struct user_pt_regs {
	__u64 regs[31];
	__u64 sp;
	__u64 pc;
	__u64 pstate;
};

struct pt_regs {
	union {
		struct user_pt_regs user_regs;
		struct {
			__u64 regs[31];
			__u64 sp;
			__u64 pc;
			__u64 pstate;
		};
	};
};
#endif

/* Kernel-internal types: only the fields read, offsets relocated at load. */
struct in6_addr {
	union {
		__u8 u6_addr8[16];
		__be16 u6_addr16[8];
		__be32 u6_addr32[4];
	} in6_u;
};

/* include/net/sock.h: the address and port fields sit inside anonymous unions there. */
struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
};

struct sock {
	struct sock_common __sk_common;
};

struct socket {
	struct sock *sk;
};

struct inode {
	umode_t i_mode;
};

struct file {
	struct inode *f_inode;
	void *private_data;
};

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
};

struct files_struct {
	struct fdtable *fdt;
};

typedef struct {
	unsigned long sig[1];
} sigset_t;

struct task_struct {
	unsigned int ptrace;
	pid_t pid;
	pid_t tgid;
	struct task_struct *parent;
	struct files_struct *files;
	sigset_t blocked;
};

/* Only passed through (tp_btf/sched_process_exec's argument). */
struct linux_binprm;

struct kernfs_node {
	__u64 id;
};

/* tp_btf/cgroup_attach_task's destination: its id is its kernfs node's. */
struct cgroup {
	struct kernfs_node *kn;
};

#pragma clang attribute pop

/* User ABI (include/uapi/linux/in.h, in6.h): written into the caller's buffer as is. */
struct in_addr {
	__be32 s_addr;
};

struct sockaddr_in {
	unsigned short sin_family;
	__be16 sin_port;
	struct in_addr sin_addr;
	unsigned char __pad[8];
};

struct sockaddr_in6 {
	unsigned short sin6_family;
	__be16 sin6_port;
	__be32 sin6_flowinfo;
	struct in6_addr sin6_addr;
	__u32 sin6_scope_id;
};
_Static_assert(sizeof(struct sockaddr_in) == 16, "sockaddr_in ABI");
_Static_assert(sizeof(struct sockaddr_in6) == 28, "sockaddr_in6 ABI");

#endif /* __VMLINUX_H__ */
