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

#include "loader.h"
#include "log.h"
#include "util.h"
#include "meshmask/steer.h"
#include "steer.skel.h"

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif

struct loader {
	struct steer *skel;
	int cgroup_fd;
	struct bpf_link *sockopt_link; /* mm_getsockopt on our own cgroup, not pinned */
	struct bpf_link *splice_link; /* mm_sockops on our own cgroup for --splice, not pinned */
	bool splice;
	char pin_dir[PATH_MAX];
	char abi[32]; /* "abi-<hash of the map definitions>": where this version's maps are pinned */
	__u32 connect4_id, callers_id; /* our mm_connect4 program and steer_callers map (loaded) */
	struct loader_maps maps;
};

static int ensure_bpffs(const char *dir)
{
	struct statfs sfs;
	if (statfs(dir, &sfs) == 0 && sfs.f_type == (typeof(sfs.f_type))BPF_FS_MAGIC)
		return 0;
	int r = mm_mkdir_p(dir, 0700);
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

/* Whether m is pinned: not libbpf's internal maps, not the splice maps (this process's own). */
static bool pinned_map(const struct bpf_map *m)
{
	return !bpf_map__is_internal(m) && strncmp(bpf_map__name(m), "splice_", 7) != 0;
}

/* The kernel's id of the program (prog_id_of) or map (map_id_of) behind fd; 0 when unknown. */
static __u32 prog_id_of(int fd)
{
	struct bpf_prog_info pi;
	__u32 len = sizeof(pi);
	memset(&pi, 0, sizeof(pi));
	return bpf_obj_get_info_by_fd(fd, &pi, &len) < 0 ? 0 : pi.id;
}

static __u32 map_id_of(int fd)
{
	struct bpf_map_info mi;
	__u32 len = sizeof(mi);
	memset(&mi, 0, sizeof(mi));
	return bpf_obj_get_info_by_fd(fd, &mi, &len) < 0 ? 0 : mi.id;
}

/*
 * The ABI of the pinned maps: a hash of every pinned map's name, type, key and value sizes,
 * capacity and flags. Agents of one ABI share the maps (a restart keeps their state); an agent
 * of another ABI pins its own beside them, so neither ever reads maps of the other's layout.
 */
static void map_abi(struct loader *l)
{
	uint64_t h = 1469598103934665603ull;
	struct bpf_map *m;
	bpf_object__for_each_map(m, l->skel->obj)
	{
		if (!pinned_map(m))
			continue;
		uint32_t v[5] = {bpf_map__type(m), bpf_map__key_size(m), bpf_map__value_size(m),
				 bpf_map__max_entries(m), bpf_map__map_flags(m)};
		for (const char *c = bpf_map__name(m); *c; c++)
			h = (h ^ (unsigned char)*c) * 1099511628211ull;
		for (size_t i = 0; i < sizeof(v); i++)
			h = (h ^ ((const unsigned char *)v)[i]) * 1099511628211ull;
	}
	snprintf(l->abi, sizeof(l->abi), "abi-%016llx", (unsigned long long)h);
}

/* Remove a directory of map pins (unlinking a pin never frees a map a process still holds). */
static void remove_pins(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		char path[PATH_MAX];
		if (e->d_name[0] != '.' &&
		    snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) < (int)sizeof(path))
			unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

/*
 * Once the links run this version's programs: "maps" names this version's map directory
 * (switched by a rename of "maps_new", so a reader never finds it missing; bpffs refuses names
 * with a dot), and the maps of other versions
 * (a directory per ABI, or the flat pins of agents from before ABI directories) go. An agent
 * of the other version still running keeps its maps by its fds and yields (loader_superseded).
 */
static void publish_abi(struct loader *l)
{
	char tmp[PATH_MAX], dst[PATH_MAX];
	if (pin_path(l, "maps_new", tmp, sizeof(tmp)) < 0 ||
	    pin_path(l, "maps", dst, sizeof(dst)) < 0)
		return;
	unlink(tmp);
	if (symlink(l->abi, tmp) < 0 || rename(tmp, dst) < 0) {
		agent_log(AGENT_LOG_WARN, "pin %s: %s", dst, strerror(errno));
		unlink(tmp);
	}
	DIR *d = opendir(l->pin_dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		const char *n = e->d_name;
		char path[PATH_MAX];
		if (n[0] == '.' || !strcmp(n, "maps") || !strcmp(n, "maps_new") ||
		    !strcmp(n, l->abi) || !strncmp(n, "link_", 5) ||
		    pin_path(l, n, path, sizeof(path)) < 0)
			continue;
		if (!strncmp(n, "abi-", 4)) {
			agent_log(AGENT_LOG_INFO, "steering maps of another version (%s) removed",
				  n);
			remove_pins(path);
		} else {
			unlink(path); /* a map pinned flat by an agent from before ABI directories */
		}
	}
	closedir(d);
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

/*
 * SO_ORIGINAL_DST for the agent's accepted sockets: their cgroup is the one of the thread that
 * created the listener (accept clones it), i.e. ours, whatever netns the listener is in. Not
 * pinned: the link dies with this process. A failure only costs the proxy its fast path.
 */
/* prog attached to the cgroup directory `dir` by an unpinned link; NULL with errno. */
static struct bpf_link *attach_dir(struct bpf_program *prog, const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct bpf_link *link = bpf_program__attach_cgroup(prog, fd);
	int err = errno;
	close(fd);
	errno = err;
	return link;
}

static void attach_self(struct loader *l, const char *dir)
{
	l->sockopt_link = attach_dir(l->skel->progs.mm_getsockopt, dir);
	if (!l->sockopt_link) {
		agent_log(AGENT_LOG_WARN,
			  "attach cgroup/getsockopt to %s: %s: original destinations from the map",
			  dir, strerror(errno));
		return;
	}
	agent_log(AGENT_LOG_INFO, "cgroup/getsockopt (SO_ORIGINAL_DST) attached to own cgroup %s",
		  dir);
}

/*
 * --splice: the sk_msg program goes on splice_agents (the map keeps it), and our accepted
 * sockets must meet mm_sockops at PASSIVE_ESTABLISHED to join that map: attach it to our own
 * cgroup unless attach_cgroup already covers it. A failure leaves the splice off.
 */
static void attach_splice(struct loader *l, const struct loader_config *cfg)
{
	const char *self = cfg->self_cgroup;
	if (!self) {
		agent_log(AGENT_LOG_WARN, "--splice: own cgroup unknown: splice off");
		return;
	}
	size_t n = strlen(cfg->attach_cgroup);
	while (n > 1 && cfg->attach_cgroup[n - 1] == '/')
		n--;
	bool covered = !strncmp(self, cfg->attach_cgroup, n) && (self[n] == 0 || self[n] == '/');
	if (bpf_prog_attach(bpf_program__fd(l->skel->progs.mm_splice_msg),
			    bpf_map__fd(l->skel->maps.splice_agents), BPF_SK_MSG_VERDICT, 0) < 0) {
		agent_log(AGENT_LOG_WARN, "--splice: attach sk_msg: %s: splice off",
			  strerror(errno));
		return;
	}
	if (!covered && !(l->splice_link = attach_dir(l->skel->progs.mm_sockops, self))) {
		agent_log(AGENT_LOG_WARN, "--splice: sockops on own cgroup %s: %s: splice off",
			  self, strerror(errno));
		return;
	}
	l->splice = true;
	agent_log(AGENT_LOG_INFO, "agent->app loopback splice on (sk_msg)");
}

/*
 * A map pinned by an agent of another version whose shape differs (value size, capacity)
 * cannot be reused: libbpf would refuse the whole load. Replace it: its state is only lost
 * once, at that upgrade.
 */
static void drop_incompatible_pin(struct bpf_map *m, const char *path)
{
	int fd = bpf_obj_get(path);
	if (fd < 0)
		return;
	struct bpf_map_info info;
	__u32 len = sizeof(info);
	memset(&info, 0, sizeof(info));
	int r = bpf_obj_get_info_by_fd(fd, &info, &len);
	close(fd);
	if (r < 0)
		return;
	if (info.type == bpf_map__type(m) && info.key_size == bpf_map__key_size(m) &&
	    info.value_size == bpf_map__value_size(m) &&
	    info.max_entries == bpf_map__max_entries(m) && info.map_flags == bpf_map__map_flags(m))
		return;
	agent_log(AGENT_LOG_WARN, "pinned map %s has another shape (older agent?): replaced", path);
	unlink(path);
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
	if ((r = mm_mkdir_p(l->pin_dir, 0700)) < 0) {
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
	/* Off, the splice programs are neither loaded nor reachable (dead code to the verifier). */
	l->skel->rodata->splice_enabled = cfg->splice;
	bpf_program__set_autoload(l->skel->progs.mm_splice_msg, cfg->splice);
	struct bpf_map *m;
	bpf_object__for_each_map(m, l->skel->obj)
	{
		if (bpf_map__is_internal(m))
			continue;
		/* The splice maps serve this agent's own connections: never pinned, tiny when off. */
		if (!strncmp(bpf_map__name(m), "splice_", 7)) {
			if (!cfg->splice && bpf_map__type(m) != BPF_MAP_TYPE_PERCPU_ARRAY &&
			    (r = bpf_map__set_max_entries(m, 1)) < 0)
				goto err;
			continue;
		}
		if (cfg->callers_max && !strcmp(bpf_map__name(m), "steer_callers") &&
		    (r = bpf_map__set_max_entries(m, cfg->callers_max)) < 0)
			goto err;
	}
	/* The maps have their final shapes: their ABI names the directory they are pinned in. */
	map_abi(l);
	char path[PATH_MAX], name[PATH_MAX];
	if ((r = pin_path(l, l->abi, path, sizeof(path))) < 0 ||
	    (mkdir(path, 0700) < 0 && errno != EEXIST && (r = -errno))) {
		agent_log(AGENT_LOG_ERROR, "%s: %s", path, strerror(-r));
		goto err;
	}
	bpf_object__for_each_map(m, l->skel->obj)
	{
		if (!pinned_map(m))
			continue;
		snprintf(name, sizeof(name), "%s/%s", l->abi, bpf_map__name(m));
		if ((r = pin_path(l, name, path, sizeof(path))) < 0)
			goto err;
		drop_incompatible_pin(m, path);
		if ((r = bpf_map__set_pin_path(m, path)) < 0)
			goto err;
	}
	r = steer__load(l->skel);
	if (r < 0) {
		agent_log(AGENT_LOG_ERROR, "load BPF steering programs: %s", strerror(-r));
		goto err;
	}
	l->connect4_id = prog_id_of(bpf_program__fd(l->skel->progs.mm_connect4));
	l->callers_id = map_id_of(bpf_map__fd(l->skel->maps.steer_callers));

	if (cfg->self_cgroup)
		attach_self(l, cfg->self_cgroup);
	if (cfg->splice)
		attach_splice(l, cfg);

	l->maps = (struct loader_maps){
		.callers = bpf_map__fd(l->skel->maps.steer_callers),
		.callers_max = bpf_map__max_entries(l->skel->maps.steer_callers),
		.overflow = bpf_map__fd(l->skel->maps.steer_overflow),
		.slots = bpf_map__fd(l->skel->maps.steer_slots),
		.dests = bpf_map__fd(l->skel->maps.steer_dests),
		.by_cookie = bpf_map__fd(l->skel->maps.steer_by_cookie),
		.by_port = bpf_map__fd(l->skel->maps.steer_by_port),
		.listeners = bpf_map__fd(l->skel->maps.steer_listeners),
		.state = bpf_map__fd(l->skel->maps.steer_state),
		.stats = bpf_map__fd(l->skel->maps.steer_stats),
		.splice_stats = l->splice ? bpf_map__fd(l->skel->maps.splice_stats) : -1,
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

bool loader_splice(const struct loader *l)
{
	return l->splice;
}

bool loader_orig_dst_sockopt(const struct loader *l)
{
	return l->sockopt_link != NULL;
}

int loader_attach(struct loader *l)
{
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
	for (size_t i = 0; i < sizeof(progs) / sizeof(progs[0]); i++) {
		int r = attach(l, progs[i].prog, progs[i].name);
		if (r < 0)
			return r;
	}
	publish_abi(l); /* the links run this version's programs now */
	return 0;
}

bool loader_superseded(const struct loader *l)
{
	char path[PATH_MAX];
	if (pin_path(l, "link_connect4", path, sizeof(path)) < 0)
		return false;
	int fd = bpf_obj_get(path);
	if (fd < 0)
		return false; /* unpinned (detached for good): nobody else took over */
	struct bpf_link_info li;
	__u32 ll = sizeof(li);
	memset(&li, 0, sizeof(li));
	int r = bpf_obj_get_info_by_fd(fd, &li, &ll);
	close(fd);
	if (r < 0 || li.prog_id == l->connect4_id)
		return false;
	/*
	 * Another agent's program: superseded only if it does not use our maps (another ABI).
	 * An agent of this ABI shares them, and the heartbeat decides who writes (steering.c).
	 */
	int pfd = bpf_prog_get_fd_by_id(li.prog_id);
	if (pfd < 0)
		return false; /* gone meanwhile: look again at the next tick */
	__u32 ids[64];
	struct bpf_prog_info pi;
	__u32 pl = sizeof(pi);
	memset(&pi, 0, sizeof(pi));
	pi.nr_map_ids = sizeof(ids) / sizeof(ids[0]);
	pi.map_ids = (__u64)(uintptr_t)ids;
	r = bpf_obj_get_info_by_fd(pfd, &pi, &pl);
	close(pfd);
	if (r < 0)
		return false;
	for (__u32 i = 0; i < pi.nr_map_ids && i < 64; i++)
		if (ids[i] == l->callers_id)
			return false;
	return true;
}

const char *loader_pin_dir(const struct loader *l)
{
	return l->pin_dir;
}

void loader_close(struct loader *l)
{
	if (!l)
		return;
	bpf_link__destroy(l->sockopt_link); /* detaches: the link was never pinned */
	bpf_link__destroy(l->splice_link);
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
		if (!strncmp(e->d_name, "abi-", 4))
			remove_pins(path);
		else
			unlink(path);
	}
	closedir(d);
	return rmdir(dir) < 0 ? -errno : 0;
}
