// SPDX-License-Identifier: Apache-2.0
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup.h"

/* Where a line's finding goes, and the root path cgroup_of_pid prefixes. */
struct found {
	char *out;
	size_t size;
	const char *root;
};

/* fn on each line of the file at path until it returns other than -ENOENT: that, or -ENOENT. */
static int scan_lines(const char *path, int (*fn)(char *line, struct found *f), struct found *f)
{
	FILE *file = fopen(path, "re");
	if (!file)
		return -errno;
	char *line = NULL;
	size_t cap = 0;
	int r = -ENOENT;
	while (r == -ENOENT && getline(&line, &cap, file) > 0)
		r = fn(line, f);
	free(line);
	fclose(file);
	return r;
}

/* A mountinfo line: the cgroup v2 mount point. */
static int mount_line(char *line, struct found *f)
{
	/* id parent maj:min root mountpoint opts [optional...] - fstype source superopts */
	char *sep = strstr(line, " - ");
	char mnt[PATH_MAX];
	if (!sep || strncmp(sep + 3, "cgroup2 ", 8) ||
	    sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1)
		return -ENOENT;
	int n = snprintf(f->out, f->size, "%s", mnt);
	return n >= 0 && (size_t)n < f->size ? 0 : -ENAMETOOLONG;
}

int cgroup_find_root(char *out, size_t size)
{
	struct found f = {out, size, NULL};
	return scan_lines("/proc/self/mountinfo", mount_line, &f);
}

int cgroup_id_of(const char *dir, uint64_t *id)
{
	struct stat st;
	if (stat(dir, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	*id = st.st_ino;
	return 0;
}

/* A /proc/PID/cgroup line: the cgroup v2 path ("0::/path") under the root. */
static int cgroup_line(char *line, struct found *f)
{
	if (strncmp(line, "0::", 3))
		return -ENOENT;
	line[strcspn(line, "\n")] = 0;
	int n = snprintf(f->out, f->size, "%s%s", f->root, strcmp(line + 3, "/") ? line + 3 : "");
	return n >= 0 && (size_t)n < f->size ? 0 : -ENAMETOOLONG;
}

int cgroup_of_pid(const char *root, int pid, char *out, size_t size)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/cgroup", pid);
	struct found f = {out, size, root};
	return scan_lines(path, cgroup_line, &f);
}

static int walk(const char *dir, size_t root_len, cgroup_walk_fn fn, void *ctx, int depth)
{
	uint64_t id = 0;
	int r = cgroup_id_of(dir, &id);
	if (r < 0)
		return r == -ENOENT ? 0 : r; /* removed while we walk */
	const char *rel = dir[root_len] ? dir + root_len : "/";
	r = fn(ctx, dir, rel, id);
	if (r)
		return r;
	if (depth > 32)
		return 0;
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_type != DT_DIR || e->d_name[0] == '.')
			continue;
		char sub[PATH_MAX];
		if (snprintf(sub, sizeof(sub), "%s/%s", dir, e->d_name) >= (int)sizeof(sub))
			continue;
		r = walk(sub, root_len, fn, ctx, depth + 1);
		if (r)
			break;
	}
	closedir(d);
	return r;
}

int cgroup_walk(const char *root, const char *dir, cgroup_walk_fn fn, void *ctx)
{
	size_t root_len = strlen(root);
	while (root_len > 1 && root[root_len - 1] == '/')
		root_len--;
	if (strncmp(dir, root, root_len) || (dir[root_len] && dir[root_len] != '/'))
		return -EINVAL;
	return walk(dir, root_len, fn, ctx, 0);
}

int cgroup_for_each_pid(const char *dir, int (*fn)(void *ctx, int pid), void *ctx)
{
	char path[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/cgroup.procs", dir) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	int pid, r = 0;
	while (!r && fscanf(f, "%d", &pid) == 1)
		r = fn(ctx, pid);
	fclose(f);
	return r;
}

struct pid_list {
	int *pids, max, n;
};

static int collect_pid(void *ctx, int pid)
{
	struct pid_list *l = ctx;
	if (l->n == l->max)
		return 1;
	l->pids[l->n++] = pid;
	return 0;
}

int cgroup_pids(const char *dir, int *pids, int max)
{
	struct pid_list l = {pids, max, 0};
	int r = cgroup_for_each_pid(dir, collect_pid, &l);
	return r < 0 ? r : l.n;
}

static int is_pid(void *ctx, int pid)
{
	return pid == *(const int *)ctx;
}

/* Whether `pid` is a member process of the cgroup directory `dir`. */
static bool has_pid(const char *dir, int pid)
{
	return cgroup_for_each_pid(dir, is_pid, &pid) == 1;
}

struct find_self {
	int pid;
	char *out;
	size_t size;
};

static int find_self_one(void *ctx, const char *dir, const char *rel, uint64_t id)
{
	struct find_self *f = ctx;
	(void)rel;
	(void)id;
	if (!has_pid(dir, f->pid))
		return 0;
	int n = snprintf(f->out, f->size, "%s", dir);
	return n >= 0 && (size_t)n < f->size ? 1 : -ENAMETOOLONG;
}

int cgroup_self(const char *root, char *out, size_t size)
{
	int pid = getpid();
	int r = cgroup_of_pid(root, pid, out, size);
	if (r == 0 && has_pid(out, pid))
		return 0;
	/* /proc/self/cgroup is relative to our cgroup namespace (a container's is private, "/"
	 * there is some cgroup deep in the host's tree): find the cgroup that lists us instead.
	 * cgroup.procs shows pids as our pid namespace sees them, so this works in any. */
	struct find_self f = {.pid = pid, .out = out, .size = size};
	r = cgroup_walk(root, root, find_self_one, &f);
	return r == 1 ? 0 : r < 0 ? r : -ENOENT;
}
