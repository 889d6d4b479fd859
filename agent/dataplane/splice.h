/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The agent's half of the agent->app loopback splice (--splice, see include/meshmask/steer.h):
 * the kernel charges redirected bytes to the app socket's rmem_alloc but never limits them, so
 * the agent reads that figure through sock_diag (NETLINK_SOCK_DIAG, inside the pod's netns)
 * and sends no more than its budget minus what the app has not read yet.
 */
#ifndef MESHMASK_SPLICE_H
#define MESHMASK_SPLICE_H

/*
 * Bytes queued and not yet read on the app end of `fd` (the agent's accepted socket of a
 * loopback connection): the app socket's rmem_alloc. >= 0, or -errno (-ENOENT: the app socket
 * is gone).
 */
int splice_unread(int diag_fd, int fd);

#endif
