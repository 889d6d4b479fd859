/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Which of ssl.bpf.c's attribution programs this kernel can load: the socket-layer tracepoints
 * sock_send_length/sock_recv_length (Linux 6.3+) when vmlinux BTF has them; sys_enter works
 * everywhere. Asked before loading, since a tp_btf program whose tracepoint the kernel lacks
 * fails the whole object's load. Shared by the agent and the BPF tests.
 */
#ifndef MESHMASK_SSL_ATTACH_H
#define MESHMASK_SSL_ATTACH_H

#include <stdbool.h>

#include <bpf/btf.h>

static inline bool mm_have_sock_tracepoints(void)
{
	struct btf *vm = btf__load_vmlinux_btf();
	if (!vm)
		return false;
	bool ok = btf__find_by_name_kind(vm, "btf_trace_sock_send_length", BTF_KIND_TYPEDEF) > 0 &&
		  btf__find_by_name_kind(vm, "btf_trace_sock_recv_length", BTF_KIND_TYPEDEF) > 0;
	btf__free(vm);
	return ok;
}

#endif
