/* SPDX-License-Identifier: Apache-2.0 */
/*
 * NETLINK_SOCK_DIAG requests, shared by the splice's unread-bytes query and the gap reset of
 * existing connections (sockreset): a socket opened inside a pod's netns, one request, its
 * answers and their attributes.
 */
#ifndef MESHMASK_SOCKDIAG_H
#define MESHMASK_SOCKDIAG_H

#include <linux/inet_diag.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A sock_diag socket in the netns of ns_fd (-1 = our own). The fd or -errno. */
int sockdiag_open(int ns_fd);

/* Send one request of `type` (SOCK_DIAG_BY_FAMILY, SOCK_DESTROY) with `flags`. 0 or -errno. */
int sockdiag_send(int fd, uint16_t type, uint16_t flags, const struct inet_diag_req_v2 *req);

/* Receive one datagram of answers into buf (retried on EINTR). Its length or -errno. */
ssize_t sockdiag_recv(int fd, void *buf, size_t size);

/*
 * The payload of m's attribute `type` if it has at least `min` bytes, else NULL. `len` is what
 * follows m in its message (borrowed).
 */
const void *sockdiag_attr(const struct inet_diag_msg *m, int len, unsigned int type, size_t min);

#endif
