/*
 * The Firecracker driver: the jailer starts Firecracker inside the VM's
 * network namespace and a chroot (<chroot-base>/firecracker/<id>/root), and
 * drafter drives it over its API socket with libcurl, with the same calls in
 * the same order as the original (see docs/vm.md). The device files appear in
 * the chroot under their device names, as hard links to the files the VM runs
 * on (so Firecracker writes them in place). The guest channels are
 * Firecracker's hybrid vsock: the guest connects to CID 2, Firecracker
 * forwards that to the UNIX socket "vsock.sock_<port>" where drafter listens.
 *
 * Two flavours: the loopholelabs live-migration fork (snapshot types Msync
 * and MsyncAndState, "shared" memory on load, length-prefixed state) and
 * upstream Firecracker (full snapshots). Which one runs is found out after
 * boot by asking for an Msync, which only the fork knows, and recorded in the
 * snapshot, whose state format depends on it.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "core/log.h"
#include "core/util.h"
#include "core/vm/vm.h"

#define MIB (1024ULL * 1024ULL)
#define FC_API_TIMEOUT_NS (10ULL * 1000000000ULL)   /* the original's wait for the API socket */
#define FC_CALL_TIMEOUT_MS 60000L
#define FC_STOP_TIMEOUT_NS (5ULL * 1000000000ULL)
#define FC_MAX_RESPONSE (64 * 1024)
#define FC_GUEST_CID 3

DEFINE_TRIVIAL_CLEANUP_FUNC(CURL *, curl_easy_cleanup)
DEFINE_TRIVIAL_CLEANUP_FUNC(json_object *, json_object_put)

struct fc {
	char id[40];
	char *instance_dir;  /* <chroot-base>/firecracker/<id> */
	char *root;          /* .../root: Firecracker's chroot */
	char *api_sock;
	int liveness_lfd;
	int agent_lfd;
	char agent_path[PATH_MAX];
	char err[512];
	bool resumed_by_load; /* the load had resume_vm: true */
	char *binds[VM_MAX_DISKS + 4]; /* bind mounts in the chroot, undone at stop */
	size_t n_binds;
};

static struct fc *priv(struct vm *vm)
{
	return vm->priv;
}

struct resp {
	char buf[FC_MAX_RESPONSE + 1];
	size_t len;
};

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct resp *r = arg;
	size_t len = size * n, room = FC_MAX_RESPONSE - r->len;

	/* Firecracker's answers are small; anything beyond the limit is dropped. */
	if (len > room)
		len = room;
	memcpy(r->buf + r->len, data, len);
	r->len += len;
	r->buf[r->len] = 0;
	return size * n;
}

/*
 * One API call. Any status of 300 or more is an error (the original's rule);
 * Firecracker's "fault_message" becomes the error text.
 */
static int fc_call(struct vm *vm, const char *method, const char *path, const char *body, struct resp *out)
{
	struct fc *f = priv(vm);
	_cleanup_(curl_easy_cleanupp) CURL *c = curl_easy_init();
	struct curl_slist *hdr = NULL;
	struct resp local = { .len = 0 };
	struct resp *r = out ? out : &local;
	char url[512];
	long status = 0;
	CURLcode cc;

	if (!c)
		return -ENOMEM;
	r->len = 0;
	r->buf[0] = 0;
	snprintf(url, sizeof url, "http://localhost%s", path);
	hdr = curl_slist_append(hdr, "Content-Type: application/json");
	hdr = curl_slist_append(hdr, "Accept: application/json");
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, f->api_sock);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, FC_CALL_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	if (body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	log_debug("firecracker: %s %s %s", method, path, body ? body : "");
	cc = curl_easy_perform(c);
	curl_slist_free_all(hdr);
	if (cc != CURLE_OK) {
		snprintf(f->err, sizeof f->err, "%s %s: %s", method, path, curl_easy_strerror(cc));
		if (!vm_alive(vm))
			return -ECHILD;
		return cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -ECONNREFUSED;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (status >= 300) {
		_cleanup_(json_object_putp) json_object *o = json_tokener_parse(r->buf);
		json_object *m;
		const char *msg = o && json_object_object_get_ex(o, "fault_message", &m) ? json_object_get_string(m)
											  : r->buf;
		snprintf(f->err, sizeof f->err, "%s %s: %.300s (HTTP %ld)", method, path, msg, status);
		return -EIO;
	}
	return 0;
}

/* Build a JSON body with json-c, so names and values are always well formed. */
static char *body_of(json_object *o)
{
	char *s = xstrdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	return s;
}

static json_object *jstr(const char *s)
{
	return json_object_new_string(s ? s : "");
}

static int fc_put(struct vm *vm, const char *path, json_object *o)
{
	_cleanup_free_ char *b = body_of(o);
	return fc_call(vm, "PUT", path, b, NULL);
}

static int fc_patch(struct vm *vm, const char *path, json_object *o)
{
	_cleanup_free_ char *b = body_of(o);
	return fc_call(vm, "PATCH", path, b, NULL);
}

/* Wait for Firecracker's API socket to appear and answer (inotify on the chroot, no polling of the path). */
static int wait_api(struct vm *vm)
{
	struct fc *f = priv(vm);
	uint64_t deadline = now_ns() + FC_API_TIMEOUT_NS;
	_cleanup_close_ int in = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
	struct resp r;

	if (in < 0)
		return -errno;
	if (inotify_add_watch(in, f->root, IN_CREATE | IN_MOVED_TO) < 0)
		return -errno;
	for (;;) {
		if (access(f->api_sock, F_OK) == 0) {
			int c = fc_call(vm, "GET", "/machine-config", NULL, &r);
			if (c == 0)
				return 0;
			if (c == -ECHILD || c == -EIO)
				return c;
			/* Bound but not listening yet: wait a moment for the process, not for the file. */
			struct pollfd p = { .fd = vm->pidfd, .events = POLLIN };
			if (poll(&p, 1, 10) > 0)
				return -ECHILD;
		} else {
			int w = vm_wait_readable(in, vm->pidfd, deadline);
			if (w < 0)
				return w;
			char ev[4096];
			(void)!read(in, ev, sizeof ev);
		}
		if (now_ns() >= deadline)
			return -ETIMEDOUT;
	}
}

/*
 * Put FILE into the chroot as NAME, so that Firecracker works on the file
 * itself: a device node of the same device for a block device (an NBD
 * exposure, as the original does), else a hard link, else (another file
 * system, e.g. a FUSE exposure) a bind mount; read-only inputs may simply
 * be copied.
 */
static int stage(struct vm *vm, const char *file, const char *name, bool writable)
{
	struct fc *f = priv(vm);
	const struct cfg_vm *cfg = vm->spec.cfg;
	_cleanup_free_ char *dst = xasprintf("%s/%s", f->root, name);
	struct stat st;
	int r = 0;

	if (stat(file, &st) < 0)
		return -errno;
	(void)unlink(dst);
	if (S_ISBLK(st.st_mode)) {
		if (mknod(dst, S_IFBLK | 0660, st.st_rdev) < 0)
			return -errno;
	} else if (link(file, dst) < 0) {
		if (errno != EXDEV)
			return -errno;
		if (!writable) {
			r = vm_copy_file(file, dst);
			if (r < 0)
				return r;
		} else {
			_cleanup_close_ int fd = -EBADF;
			if (f->n_binds == ARRAY_SIZE(f->binds))
				return -E2BIG;
			fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
			if (fd < 0)
				return -errno;
			if (mount(file, dst, NULL, MS_BIND, NULL) < 0)
				return -errno;
			f->binds[f->n_binds++] = xstrdup(dst);
		}
	}
	if (cfg && (cfg->uid || cfg->gid) && chown(dst, cfg->uid, cfg->gid) < 0)
		return -errno;
	return 0;
}

/* Start the jailer with the original's arguments; it execs Firecracker in the namespace and chroot. */
static int fc_start(struct vm *vm)
{
	const struct cfg_vm *cfg = vm->spec.cfg;
	struct fc *f;
	char base[PATH_MAX], exe[PATH_MAX], cpus[256], netns[PATH_MAX];
	const char *fcbin = cfg && !str_empty(cfg->firecracker_bin) ? cfg->firecracker_bin : "firecracker";
	const char *jailer = cfg && !str_empty(cfg->jailer_bin) ? cfg->jailer_bin : "jailer";
	const char *base_dir = cfg && !str_empty(cfg->chroot_base_dir) ? cfg->chroot_base_dir : "out/vms";
	char *argv[40];
	int n = 0, r;
	char id[VM_ID_LEN + 1], uid[16], gid[16], mems[32], cgv[16], cpuarg[300];
	_cleanup_free_ char *probe = NULL;

	r = vm_netns_check(cfg ? cfg->netns : NULL);
	if (r < 0)
		return r == -ENOENT ? -ENONET : r;
	f = xcalloc(1, sizeof *f);
	f->liveness_lfd = f->agent_lfd = -EBADF;
	vm->priv = f;

	/* The jailer wants absolute paths; the original resolves the binary through $PATH. */
	probe = xasprintf("%s/.", base_dir);
	r = mkdir_parents(probe);
	if (r < 0)
		return r;
	if (!realpath(base_dir, base))
		return -errno;
	if (strchr(fcbin, '/')) {
		if (!realpath(fcbin, exe))
			return -errno;
	} else {
		const char *path = getenv("PATH");
		bool found = false;
		while (path && *path && !found) {
			const char *end = strchrnul(path, ':');
			snprintf(exe, sizeof exe, "%.*s/%s", (int)(end - path), path, fcbin);
			found = access(exe, X_OK) == 0;
			path = *end ? end + 1 : end;
		}
		if (!found)
			return -ENOENT;
	}
	r = vm_new_id(id);
	if (r < 0)
		return r;
	snprintf(f->id, sizeof f->id, "%.16s", id);
	const char *exe_base = strrchr(exe, '/') + 1;
	f->instance_dir = xasprintf("%s/%s/%s", base, exe_base, f->id);
	f->root = xasprintf("%s/root", f->instance_dir);
	f->api_sock = xasprintf("%s/firecracker.sock", f->root);
	_cleanup_free_ char *rootdot = xasprintf("%s/.", f->root);
	r = mkdir_parents(rootdot);
	if (r < 0)
		return r;

	snprintf(uid, sizeof uid, "%u", cfg ? cfg->uid : 0);
	snprintf(gid, sizeof gid, "%u", cfg ? cfg->gid : 0);
	snprintf(cgv, sizeof cgv, "%u", cfg && cfg->cgroup_version ? cfg->cgroup_version : 2);
	snprintf(netns, sizeof netns, "/var/run/netns/%s", cfg && cfg->netns ? cfg->netns : "");
	argv[n++] = (char *)jailer;
	argv[n++] = "--id";
	argv[n++] = f->id;
	argv[n++] = "--uid";
	argv[n++] = uid;
	argv[n++] = "--gid";
	argv[n++] = gid;
	argv[n++] = "--exec-file";
	argv[n++] = exe;
	/* The original pins to the NUMA node only when its CPU list can be read. */
	if (vm_numa_cpulist(cfg ? cfg->numa_node : 0, cpus, sizeof cpus - 16) == 0) {
		snprintf(mems, sizeof mems, "cpuset.mems=%d", cfg ? cfg->numa_node : 0);
		snprintf(cpuarg, sizeof cpuarg, "cpuset.cpus=%s", cpus);
		argv[n++] = "--cgroup";
		argv[n++] = mems;
		argv[n++] = "--cgroup";
		argv[n++] = cpuarg;
	}
	argv[n++] = "--cgroup-version";
	argv[n++] = cgv;
	argv[n++] = "--chroot-base-dir";
	argv[n++] = base;
	if (cfg && !str_empty(cfg->netns)) {
		argv[n++] = "--netns";
		argv[n++] = netns;
	}
	argv[n++] = "--";
	argv[n++] = "--api-sock";
	argv[n++] = "firecracker.sock";
	argv[n] = NULL;

	/* Listeners for the guest's vsock connections must exist before the guest runs. */
	snprintf(f->agent_path, sizeof f->agent_path, "%s/vsock.sock_%u", f->root,
		 vm->spec.machine.agent_port ? vm->spec.machine.agent_port : 26);
	_cleanup_free_ char *live = xasprintf("%s/vsock.sock_%u", f->root,
					  vm->spec.machine.liveness_port ? vm->spec.machine.liveness_port : 25);
	f->liveness_lfd = vm_unix_listen(live, cfg ? cfg->uid : 0, cfg ? cfg->gid : 0);
	if (f->liveness_lfd < 0)
		return f->liveness_lfd;
	f->agent_lfd = vm_unix_listen(f->agent_path, cfg ? cfg->uid : 0, cfg ? cfg->gid : 0);
	if (f->agent_lfd < 0)
		return f->agent_lfd;

	_cleanup_close_ int logfd = memfd_create("firecracker-stderr", MFD_CLOEXEC);
	if (logfd < 0)
		return -errno;
	struct vm_spawn sp = {
		.argv = argv,
		.netns = NULL, /* the jailer joins the namespace itself (--netns) */
		.stdin_fd = vm->spec.enable_input ? STDIN_FILENO : -1,
		.stdout_fd = vm->spec.enable_output ? STDOUT_FILENO : -1,
		.stderr_fd = vm->spec.enable_output ? STDERR_FILENO : logfd,
		.new_pgrp = !vm->spec.enable_input,
		.numa_node = -1, /* the jailer pins through its cgroup */
	};
	r = vm_spawn(&sp, &vm->pid, &vm->pidfd);
	if (r < 0)
		return r;
	vm->log_fd = TAKE_FD(logfd);
	vm->exit_status = -1;
	return wait_api(vm);
}

static int fc_boot(struct vm *vm)
{
	struct vm_machine *m = &vm->spec.machine;
	json_object *o;
	_cleanup_close_ int fd = -EBADF;
	int r;

	r = fc_start(vm);
	if (r < 0)
		return r;
	/* The snapshot's memory file: created empty here, written by Firecracker through the link. */
	fd = open(vm->spec.memory, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	r = stage(vm, vm->spec.kernel, "kernel", false);
	if (r == 0 && vm->spec.initramfs)
		r = stage(vm, vm->spec.initramfs, "initramfs", false);
	if (r == 0)
		r = stage(vm, vm->spec.memory, "memory", true);
	for (size_t i = 0; r == 0 && i < m->n_disks; i++)
		r = stage(vm, vm->spec.disk_paths[i], m->disks[i], true);
	if (r < 0)
		return r;

	o = json_object_new_object();
	json_object_object_add(o, "kernel_image_path", jstr("kernel"));
	json_object_object_add(o, "boot_args", jstr(m->boot_args));
	if (vm->spec.initramfs)
		json_object_object_add(o, "initrd_path", jstr("initramfs"));
	r = fc_put(vm, "/boot-source", o);
	for (size_t i = 0; r == 0 && i < m->n_disks; i++) {
		_cleanup_free_ char *p = xasprintf("/drives/%s", m->disks[i]);
		o = json_object_new_object();
		json_object_object_add(o, "drive_id", jstr(m->disks[i]));
		json_object_object_add(o, "path_on_host", jstr(m->disks[i]));
		json_object_object_add(o, "is_root_device", json_object_new_boolean(false));
		json_object_object_add(o, "is_read_only", json_object_new_boolean(false));
		json_object_object_add(o, "io_engine", jstr("Async"));
		r = fc_put(vm, p, o);
	}
	if (r == 0) {
		o = json_object_new_object();
		json_object_object_add(o, "vcpu_count", json_object_new_int64(m->cpu_count));
		json_object_object_add(o, "mem_size_mib", json_object_new_int64(m->memory_mib));
		json_object_object_add(o, "cpu_template", jstr(m->cpu_template[0] ? m->cpu_template : "None"));
		r = fc_put(vm, "/machine-config", o);
	}
	if (r == 0) {
		o = json_object_new_object();
		json_object_object_add(o, "guest_cid", json_object_new_int(FC_GUEST_CID));
		json_object_object_add(o, "uds_path", jstr("vsock.sock"));
		r = fc_put(vm, "/vsock", o);
	}
	if (r == 0 && m->interface[0]) {
		_cleanup_free_ char *p = xasprintf("/network-interfaces/%s", m->interface);
		o = json_object_new_object();
		json_object_object_add(o, "iface_id", jstr(m->interface));
		json_object_object_add(o, "guest_mac", jstr(m->mac));
		json_object_object_add(o, "host_dev_name", jstr(m->interface));
		r = fc_put(vm, p, o);
	}
	if (r == 0) {
		o = json_object_new_object();
		json_object_object_add(o, "action_type", jstr("InstanceStart"));
		r = fc_put(vm, "/actions", o);
	}
	if (r < 0)
		return r;
	/* Only the fork knows Msync; on a running VM it just writes memory back, so it is a safe probe. */
	o = json_object_new_object();
	json_object_object_add(o, "snapshot_type", jstr("Msync"));
	json_object_object_add(o, "snapshot_path", jstr("state"));
	json_object_object_add(o, "mem_file_path", jstr(""));
	r = fc_put(vm, "/snapshot/create", o);
	m->fc_fork = r == 0;
	log_debug("firecracker: %s", m->fc_fork ? "the loopholelabs fork (Msync works)" : "upstream (no Msync)");
	return r == -EIO ? 0 : r;
}

static int fc_restore(struct vm *vm)
{
	struct vm_machine *m = &vm->spec.machine;
	json_object *o, *be;
	int r;

	r = fc_start(vm);
	if (r < 0)
		return r;
	r = stage(vm, vm->spec.memory, "memory", true);
	for (size_t i = 0; r == 0 && i < m->n_disks; i++)
		r = stage(vm, vm->spec.disk_paths[i], m->disks[i], true);
	if (r == 0 && vm->spec.before_load)
		r = vm->spec.before_load(vm->spec.before_load_ctx);
	/* After before_load: a migration's destination gets its state only then (it may be copied). */
	if (r == 0)
		r = stage(vm, vm->spec.state, "state", false);
	if (r < 0)
		return r;
	o = json_object_new_object();
	be = json_object_new_object();
	json_object_object_add(be, "backend_type", jstr("File"));
	json_object_object_add(be, "backend_path", jstr("memory"));
	json_object_object_add(o, "snapshot_path", jstr("state"));
	json_object_object_add(o, "mem_backend", be);
	json_object_object_add(o, "enable_diff_snapshots", json_object_new_boolean(false));
	/* As the original: the load resumes the VM, resume() has nothing left to do. */
	json_object_object_add(o, "resume_vm", json_object_new_boolean(true));
	/* The fork maps the memory file shared, so the guest's writes reach it. */
	if (m->fc_fork)
		json_object_object_add(o, "shared", json_object_new_boolean(true));
	r = fc_put(vm, "/snapshot/load", o);
	if (r == 0)
		priv(vm)->resumed_by_load = true;
	return r;
}

static int fc_set_state(struct vm *vm, const char *state)
{
	json_object *o = json_object_new_object();
	json_object_object_add(o, "state", jstr(state));
	return fc_patch(vm, "/vm", o);
}

static int fc_resume(struct vm *vm)
{
	struct fc *f = priv(vm);

	if (f->resumed_by_load) {
		f->resumed_by_load = false;
		return 0;
	}
	return fc_set_state(vm, "Resumed");
}

static int fc_pause(struct vm *vm)
{
	return fc_set_state(vm, "Paused");
}

static int fc_save_state(struct vm *vm, const char *path, uint64_t *size)
{
	struct fc *f = priv(vm);
	struct vm_machine *m = &vm->spec.machine;
	/* After a load, "state" is the package's own file: the new state goes next to it. */
	const char *state_name = vm->spec.state ? "state.next" : "state";
	_cleanup_free_ char *out = xasprintf("%s/%s", f->root, state_name);
	_cleanup_free_ char *mem_next = xasprintf("%s/memory.next", f->root);
	bool full = !m->fc_fork || !vm->spec.state; /* a cold boot's memory is anonymous: dump it */
	json_object *o = json_object_new_object();
	struct stat st;
	int r;

	(void)unlink(out);
	json_object_object_add(o, "snapshot_type", jstr(full ? "Full" : "MsyncAndState"));
	json_object_object_add(o, "snapshot_path", jstr(state_name));
	/*
	 * A full snapshot writes all of guest memory. After a boot that is the
	 * staged memory file; after a restore the memory file is mapped (shared
	 * by the fork, private by upstream), so the dump goes to a new file
	 * that replaces it once written.
	 */
	json_object_object_add(o, "mem_file_path", jstr(!full ? "" : vm->spec.state ? "memory.next" : "memory"));
	r = fc_put(vm, "/snapshot/create", o);
	if (r < 0)
		return r;
	if (full && vm->spec.state) {
		if (rename(mem_next, vm->spec.memory) < 0) {
			r = errno == EXDEV ? vm_copy_file(mem_next, vm->spec.memory) : -errno;
			(void)unlink(mem_next);
			if (r < 0)
				return r;
		}
	}
	if (stat(out, &st) < 0)
		return -errno;
	if (rename(out, path) < 0) {
		if (errno != EXDEV)
			return -errno;
		r = vm_copy_file(out, path);
		(void)unlink(out);
		if (r < 0)
			return r;
	}
	*size = (uint64_t)st.st_size;
	return 0;
}

static int fc_flush_memory(struct vm *vm)
{
	struct vm_machine *m = &vm->spec.machine;
	json_object *o;
	int r;

	if (m->fc_fork && vm->spec.state) {
		o = json_object_new_object();
		json_object_object_add(o, "snapshot_type", jstr("Msync"));
		json_object_object_add(o, "snapshot_path", jstr("state"));
		json_object_object_add(o, "mem_file_path", jstr(""));
		r = fc_put(vm, "/snapshot/create", o);
		if (r < 0)
			return r;
	}
	return vm_fsync_path(vm->spec.memory);
}

/* rm -rf of the instance directory; it only holds links, sockets and Firecracker's own files. */
static void remove_tree(const char *dir, int depth)
{
	_cleanup_free_ char *cmdpath = NULL;
	int dfd;

	if (depth > 4)
		return;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (dfd < 0)
		return;
	DIR *d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		if (str_eq(e->d_name, ".") || str_eq(e->d_name, ".."))
			continue;
		if (e->d_type == DT_DIR) {
			_cleanup_free_ char *sub = xasprintf("%s/%s", dir, e->d_name);
			remove_tree(sub, depth + 1);
		} else {
			(void)unlinkat(dfd, e->d_name, 0);
		}
	}
	closedir(d);
	(void)rmdir(dir);
}

static void fc_stop(struct vm *vm)
{
	struct fc *f = priv(vm);
	int st = 0;

	/* The original stops Firecracker with SIGKILL: everything worth keeping is saved by then. */
	if (vm->pid > 0) {
		kill(vm->pid, SIGKILL);
		(void)vm_wait_exit(vm->pid, vm->pidfd, FC_STOP_TIMEOUT_NS, &st);
		vm->exit_status = st;
		vm->pid = 0;
	}
	if (!f)
		return;
	if (f->liveness_lfd >= 0)
		close(f->liveness_lfd);
	if (f->agent_lfd >= 0)
		close(f->agent_lfd);
	for (size_t i = 0; i < f->n_binds; i++) {
		(void)umount2(f->binds[i], MNT_DETACH);
		free(f->binds[i]);
	}
	f->n_binds = 0;
	if (f->instance_dir)
		remove_tree(f->instance_dir, 0);
	free(f->instance_dir);
	free(f->root);
	free(f->api_sock);
	free(f);
	vm->priv = NULL;
}

static int fc_liveness_wait(struct vm *vm, uint64_t deadline_ns)
{
	struct fc *f = priv(vm);
	char path[PATH_MAX];
	int fd;

	fd = vm_unix_accept(f->liveness_lfd, vm->pidfd, deadline_ns);
	if (fd < 0)
		return fd;
	close(fd);
	/* One connection is the signal; the listener goes away so the guest cannot reconnect. */
	snprintf(path, sizeof path, "%s/vsock.sock_%u", f->root,
		 vm->spec.machine.liveness_port ? vm->spec.machine.liveness_port : 25);
	(void)unlink(path);
	close(f->liveness_lfd);
	f->liveness_lfd = -EBADF;
	return 0;
}

static int fc_agent_connect(struct vm *vm, uint64_t deadline_ns)
{
	struct fc *f = priv(vm);
	return vm_unix_accept(f->agent_lfd, vm->pidfd, deadline_ns);
}

static const char *fc_agent_path(struct vm *vm)
{
	struct fc *f = priv(vm);
	return f ? f->agent_path : NULL;
}

static const char *fc_last_error(struct vm *vm)
{
	struct fc *f = priv(vm);
	return f ? f->err : "";
}

const struct vmm_ops vm_firecracker_ops = {
	.name = "firecracker",
	.boot = fc_boot,
	.restore = fc_restore,
	.resume = fc_resume,
	.pause = fc_pause,
	.save_state = fc_save_state,
	.flush_memory = fc_flush_memory,
	.stop = fc_stop,
	.liveness_wait = fc_liveness_wait,
	.agent_connect = fc_agent_connect,
	.agent_path = fc_agent_path,
	.last_error = fc_last_error,
};
