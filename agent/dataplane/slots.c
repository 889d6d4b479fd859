// SPDX-License-Identifier: Apache-2.0
#include <stdbool.h>
#include <string.h>

#include "slots.h"

static bool held(const char *s)
{
	return s && s[0];
}

static bool in_names(const char *name, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(names[i], name))
			return true;
	return false;
}

size_t slots_assign(const char *const *cur, size_t nslots, const char *const *names, size_t n,
		    int *out)
{
	bool taken[nslots ? nslots : 1];
	size_t done = 0;
	memset(taken, 0, sizeof(taken));
	for (size_t i = 0; i < n; i++) {
		out[i] = -1;
		for (size_t k = 0; k < nslots; k++)
			if (!taken[k] && held(cur[k]) && !strcmp(cur[k], names[i])) {
				out[i] = (int)k;
				taken[k] = true;
				done++;
				break;
			}
	}
	/* Free slots first: a slot released now may still have entries a flow can match. */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < n; i++) {
			if (out[i] >= 0)
				continue;
			for (size_t k = 0; k < nslots; k++) {
				if (taken[k])
					continue;
				if (pass == 0 ? held(cur[k])
					      : held(cur[k]) && in_names(cur[k], names, n))
					continue;
				out[i] = (int)k;
				taken[k] = true;
				done++;
				break;
			}
		}
	return done;
}
