// SPDX-License-Identifier: Apache-2.0
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "agent.h"
#include "loader.h"
#include "meshmask/steer.h"
#include "steer.skel.h"

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

struct loader {
	struct steer *skel;
	int cgroup_fd;
	char pin_dir[PATH_MAX];
	struct loader_maps maps;
};

static int mkdir_p(const char *path, mode_t mode)
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

static int ensure_bpffs(const char *dir)
{
	struct statfs sfs;
	if (statfs(dir, &sfs) == 0 && sfs.f_type == (typeof(sfs.f_type))BPF_FS_MAGIC)
		return 0;
	int r = mkdir_p(dir, 0700);
	if (r < 0)
		return r;
	if (mount("bpf", dir, "bpf", 0, "mode=0700") < 0)
		return -errno;
	agent_log(AGENT_LOG_INFO, "mounted bpffs at %s", dir);
	return 0;
}

static int pin_path(const struct loader *l, const char *name, char *out, size_t size)
{
	int n = snprintf(out, size, "%s/%s", l->pin_dir, name);
	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* Attach prog to the cgroup through the link pinned as `name`, reusing a pinned link. */
static int attach(struct loader *l, struct bpf_program *prog, const char *name)
{
	char path[PATH_MAX];
	int r = pin_path(l, name, path, sizeof(path));
	if (r < 0)
		return r;
	struct bpf_link *link = access(path, F_OK) == 0 ? bpf_link__open(path) : NULL;
	if (link) {
		r = bpf_link__update_program(link, prog);
		bpf_link__destroy(link); /* closes our fd; the pin keeps the link */
		if (r == 0)
			return 0;
		/* A link whose cgroup went away cannot be updated: replace it. */
		agent_log(AGENT_LOG_WARN, "pinned link %s not reusable (%s): replacing", path,
			  strerror(-r));
		unlink(path);
	}
	link = bpf_program__attach_cgroup(prog, l->cgroup_fd);
	if (!link) {
		r = -errno;
		agent_log(AGENT_LOG_ERROR, "attach %s: %s", bpf_program__name(prog), strerror(-r));
		return r;
	}
	r = bpf_link__pin(link, path);
	if (r < 0)
		agent_log(AGENT_LOG_ERROR, "pin %s: %s", path, strerror(-r));
	bpf_link__destroy(link);
	return r;
}

struct loader *loader_open(const struct loader_config *cfg)
{
	struct loader *l = calloc(1, sizeof(*l));
	int r;
	if (!l)
		return NULL;
	l->cgroup_fd = -1;
	if ((r = ensure_bpffs(cfg->bpffs)) < 0) {
		agent_log(AGENT_LOG_ERROR, "bpffs %s: %s", cfg->bpffs, strerror(-r));
		goto err;
	}
	if (snprintf(l->pin_dir, sizeof(l->pin_dir), "%s/meshmask/%s", cfg->bpffs, cfg->instance) >=
		    (int)sizeof(l->pin_dir) ||
	    strchr(cfg->instance, '/') || !cfg->instance[0]) {
		r = -EINVAL;
		agent_log(AGENT_LOG_ERROR, "bad instance name");
		goto err;
	}
	if ((r = mkdir_p(l->pin_dir, 0700)) < 0) {
		agent_log(AGENT_LOG_ERROR, "%s: %s", l->pin_dir, strerror(-r));
		goto err;
	}
	l->cgroup_fd = open(cfg->attach_cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (l->cgroup_fd < 0) {
		r = -errno;
		agent_log(AGENT_LOG_ERROR, "cgroup %s: %s", cfg->attach_cgroup, strerror(-r));
		goto err;
	}

	l->skel = steer__open();
	if (!l->skel) {
		r = -errno;
		agent_log(AGENT_LOG_ERROR, "open BPF skeleton: %s", strerror(-r));
		goto err;
	}
	l->skel->rodata->proxy_port = cfg->proxy_port;
	struct bpf_map *m;
	bpf_object__for_each_map(m, l->skel->obj)
	{
		if (bpf_map__is_internal(m))
			continue;
		char path[PATH_MAX];
		if ((r = pin_path(l, bpf_map__name(m), path, sizeof(path))) < 0 ||
		    (r = bpf_map__set_pin_path(m, path)) < 0)
			goto err;
	}
	r = steer__load(l->skel);
	if (r < 0) {
		agent_log(AGENT_LOG_ERROR, "load BPF steering programs: %s", strerror(-r));
		goto err;
	}

	struct {
		struct bpf_program *prog;
		const char *name;
	} progs[] = {
		{l->skel->progs.mm_connect4, "link_connect4"},
		{l->skel->progs.mm_connect6, "link_connect6"},
		{l->skel->progs.mm_getpeername4, "link_getpeername4"},
		{l->skel->progs.mm_getpeername6, "link_getpeername6"},
		{l->skel->progs.mm_sockops, "link_sockops"},
	};
	for (size_t i = 0; i < sizeof(progs) / sizeof(progs[0]); i++)
		if ((r = attach(l, progs[i].prog, progs[i].name)) < 0)
			goto err;

	l->maps = (struct loader_maps){
		.callers = bpf_map__fd(l->skel->maps.steer_callers),
		.dests = bpf_map__fd(l->skel->maps.steer_dests),
		.by_cookie = bpf_map__fd(l->skel->maps.steer_by_cookie),
		.by_port = bpf_map__fd(l->skel->maps.steer_by_port),
		.listeners = bpf_map__fd(l->skel->maps.steer_listeners),
		.state = bpf_map__fd(l->skel->maps.steer_state),
		.stats = bpf_map__fd(l->skel->maps.steer_stats),
	};
	agent_log(AGENT_LOG_INFO, "BPF steering attached to %s (pins %s)", cfg->attach_cgroup,
		  l->pin_dir);
	return l;
err:
	loader_close(l);
	errno = -r;
	return NULL;
}

const struct loader_maps *loader_maps(const struct loader *l)
{
	return &l->maps;
}

const char *loader_pin_dir(const struct loader *l)
{
	return l->pin_dir;
}

void loader_close(struct loader *l)
{
	if (!l)
		return;
	steer__destroy(l->skel);
	if (l->cgroup_fd >= 0)
		close(l->cgroup_fd);
	free(l);
}

int loader_unpin_all(const char *bpffs, const char *instance)
{
	char dir[PATH_MAX];
	if (snprintf(dir, sizeof(dir), "%s/meshmask/%s", bpffs, instance) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char path[PATH_MAX];
		if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path))
			continue;
		if (!strncmp(e->d_name, "link_", 5)) {
			int fd = bpf_obj_get(path);
			if (fd >= 0) {
				bpf_link_detach(fd);
				close(fd);
			}
		}
		unlink(path);
	}
	closedir(d);
	return rmdir(dir) < 0 ? -errno : 0;
}
