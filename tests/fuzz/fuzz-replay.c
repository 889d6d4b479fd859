/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Replay main for libFuzzer targets: runs LLVMFuzzerTestOneInput on every file named on the
 * command line, or every file in a named directory, so the fuzz corpus is a regression test in
 * ordinary builds. Prints TAP.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int n;

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		printf("not ok %d - %s: %s\n", ++n, path, strerror(errno));
		return 1;
	}
	size_t cap = 4096, len = 0;
	uint8_t *buf = malloc(cap);
	size_t r;
	while (buf && (r = fread(buf + len, 1, cap - len, f)) > 0) {
		len += r;
		if (len == cap) {
			uint8_t *nb = realloc(buf, cap *= 2);
			if (!nb) {
				free(buf);
				buf = NULL;
			}
			buf = nb;
		}
	}
	fclose(f);
	if (!buf) {
		printf("not ok %d - %s: out of memory\n", ++n, path);
		return 1;
	}
	/* An exact-size copy so that ASan sees reads past the end. */
	uint8_t *exact = malloc(len ? len : 1);
	memcpy(exact, buf, len);
	free(buf);
	LLVMFuzzerTestOneInput(exact, len);
	free(exact);
	printf("ok %d - %s\n", ++n, path);
	return 0;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
	int fails = 0;
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
			struct dirent **ents;
			int k = scandir(argv[i], &ents, NULL, NULL);
			if (k < 0) {
				printf("not ok %d - %s: %s\n", ++n, argv[i], strerror(errno));
				fails++;
				continue;
			}
			char **names = calloc(k ? k : 1, sizeof(*names));
			int m = 0;
			for (int j = 0; j < k; j++) {
				if (ents[j]->d_name[0] != '.' &&
				    asprintf(&names[m], "%s/%s", argv[i], ents[j]->d_name) > 0)
					m++;
				free(ents[j]);
			}
			free(ents);
			qsort(names, m, sizeof(*names), cmp);
			for (int j = 0; j < m; j++) {
				fails += run_file(names[j]);
				free(names[j]);
			}
			free(names);
		} else {
			fails += run_file(argv[i]);
		}
	}
	if (n == 0) {
		printf("not ok 1 - no corpus files given\n");
		n = 1;
		fails++;
	}
	printf("1..%d\n", n);
	return fails ? 1 : 0;
}
