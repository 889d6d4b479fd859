/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "util.h"

int mm_mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int mm_sha256(const void *p, size_t n, unsigned char out[32])
{
	unsigned int len = 32;
	return EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) && len == 32 ? 0 : -EIO;
}

int mm_sha256_hex(const void *p, size_t n, char hex[65])
{
	unsigned char d[32];
	int r = mm_sha256(p, n, d);
	if (r < 0)
		return r;
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	return 0;
}
