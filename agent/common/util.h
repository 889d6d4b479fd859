/* SPDX-License-Identifier: Apache-2.0 */
/* Small helpers more than one layer needs. */
#ifndef MESHMASK_UTIL_H
#define MESHMASK_UTIL_H

#include <stddef.h>
#include <sys/types.h>

/* The struct that holds `ptr` as its `member`. */
#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* mkdir -p with `mode` for each missing directory. 0 or -errno (-ENAMETOOLONG). */
int mm_mkdir_p(const char *path, mode_t mode);

/* SHA-256 of p[0, n) into out[32]. 0 or -EIO. */
int mm_sha256(const void *p, size_t n, unsigned char out[32]);

/* SHA-256 of p[0, n) as 64 lowercase hex digits and a NUL into hex[65]. 0 or -EIO. */
int mm_sha256_hex(const void *p, size_t n, char hex[65]);

#endif
