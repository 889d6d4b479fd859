/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Network namespaces of covered pods: the agent's listener and its upstream sockets are
 * created inside the pod's netns (setns -> socket -> setns back, on the calling thread only);
 * a socket keeps the netns it was created in.
 */
#ifndef MESHMASK_NETNS_H
#define MESHMASK_NETNS_H

#include <stdint.h>

/* Remember the calling thread's own netns (once, before any netns_socket). 0 or -errno. */
int netns_init(void);
void netns_fini(void);

/* Open /proc/PID/ns/net; its inode into *ino. fd or -errno. */
int netns_open_pid(int pid, uint64_t *ino);

/* The netns inode of a pid without opening it. 0 or -errno. */
int netns_ino_of_pid(int pid, uint64_t *ino);

/* socket(family, type, 0) created inside the netns `ns_fd` (-1 = our own). fd or -errno. */
int netns_socket(int ns_fd, int family, int type);

/* A non-blocking TCP listener on 127.0.0.1:port (or [::1]:port) inside ns_fd. fd or -errno. */
int netns_listen(int ns_fd, int family, uint16_t port);

/* SO_NETNS_COOKIE of a socket. 0 or -errno. */
int netns_cookie(int fd, uint64_t *cookie);

#endif
