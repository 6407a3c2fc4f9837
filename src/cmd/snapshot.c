/*
 * drafter snapshot: boot a blueprint in the configured network namespace,
 * wait until the guest reports that it booted, let the guest agent prepare
 * (BeforeSuspend), pause, save the device state, and write the package
 * devices: state, memory, kernel, disk, config, oci and extra disks.
 *
 * The VM runs directly on temporary files next to the outputs
 * ("<output>.drafter-tmp"), which are renamed into place only once the whole
 * snapshot has been written, the config device last; a failed snapshot
 * leaves the outputs as they were.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd/cmds.h"
#include "core/config.h"
#include "core/log.h"
#include "core/util.h"
#include "core/vm/vm.h"

#define MIB (1024ULL * 1024ULL)
#define TMP_SUFFIX ".drafter-tmp"

/* A file to be moved into place at the end, or removed on failure. */
struct pending {
	char *tmp;
	char *final; /* NULL: scratch file, removed in any case */
};

struct snap {
	struct config cfg;
	struct pending files[VM_MAX_DISKS + 8];
	size_t n_files;
	const char *state_out, *memory_out, *config_out;
	const char *kernel_in, *kernel_out, *initramfs_in, *initramfs_out;
	char *scratch_dir;
};

static volatile sig_atomic_t interrupted;
static int wake_pipe[2] = { -1, -1 };

/* A self-pipe, so that a signal ends any wait the VM layer is in (vm_set_interrupt_fd). */
static void on_signal(int sig)
{
	int saved = errno;
	interrupted = sig;
	(void)!write(wake_pipe[1], "x", 1);
	errno = saved;
}

static const char *add_pending(struct snap *s, const char *final, const char *scratch_name)
{
	struct pending *p = &s->files[s->n_files++];

	if (final) {
		p->tmp = xasprintf("%s%s", final, TMP_SUFFIX);
		p->final = xstrdup(final);
	} else {
		p->tmp = xasprintf("%s/%s", s->scratch_dir, scratch_name);
	}
	return p->tmp;
}

static void drop_pending(struct snap *s)
{
	for (size_t i = 0; i < s->n_files; i++) {
		if (s->files[i].tmp)
			(void)unlink(s->files[i].tmp);
		free(s->files[i].tmp);
		free(s->files[i].final);
	}
	s->n_files = 0;
	if (s->scratch_dir) {
		(void)rmdir(s->scratch_dir);
		free(s->scratch_dir);
		s->scratch_dir = NULL;
	}
}

static bool file_exists(const char *p)
{
	struct stat st;
	return p && stat(p, &st) == 0;
}

/* Copy an input that the VM only reads (kernel, initramfs) to its output. */
static int copy_output(const char *in, const char *out)
{
	_cleanup_free_ char *tmp = NULL;
	int r;

	if (!out || str_eq(in, out))
		return 0;
	r = mkdir_parents(out);
	if (r < 0)
		return r;
	tmp = xasprintf("%s%s", out, TMP_SUFFIX);
	r = vm_copy_file(in, tmp);
	if (r == 0)
		r = vm_pad_file(tmp);
	if (r == 0)
		r = vm_fsync_path(tmp);
	if (r == 0 && rename(tmp, out) < 0)
		r = -errno;
	if (r < 0)
		(void)unlink(tmp);
	return r;
}

static void fill_machine(struct vm_machine *m, enum vm_kind kind, const struct cfg_vm *c)
{
	memset(m, 0, sizeof *m);
	m->kind = kind;
	m->cpu_count = c->cpu_count ? c->cpu_count : 1;
	m->memory_mib = c->memory_size ? c->memory_size : 1024;
	snprintf(m->cpu_template, sizeof m->cpu_template, "%s", c->cpu_template ? c->cpu_template : "None");
	m->boot_args = xstrdup(c->boot_args ? c->boot_args : "");
	snprintf(m->interface, sizeof m->interface, "%s",
		 !str_empty(c->netns) && c->interface ? c->interface : "");
	snprintf(m->mac, sizeof m->mac, "%s", c->mac ? c->mac : "02:0e:d9:fd:68:3d");
	m->agent_port = c->agent_vsock_port;
	m->liveness_port = c->liveness_vsock_port;
}

static int do_snapshot(struct snap *s)
{
	struct config *cfg = &s->cfg;
	struct vm_spec spec = { 0 };
	struct vm vm = { 0 };
	struct vm_meta meta = { 0 };
	enum vm_kind kind;
	const char *state_tmp, *mem_tmp;
	uint64_t state_size = 0, deadline;
	char why[768], agent_err[512];
	int r, fd;

	vm.pidfd = -EBADF;
	vm.log_fd = -EBADF;

	for (size_t i = 0; i < cfg->n_devices; i++) {
		struct cfg_device *d = &cfg->devices[i];
		const char *in = str_empty(d->input) ? NULL : d->input;
		const char *out = str_empty(d->output) ? NULL : d->output;

		if (str_eq(d->name, "state"))
			s->state_out = out;
		else if (str_eq(d->name, "memory"))
			s->memory_out = out;
		else if (str_eq(d->name, "config"))
			s->config_out = out;
		else if (str_eq(d->name, "kernel")) {
			s->kernel_in = in;
			s->kernel_out = out;
		} else if (str_eq(d->name, "initramfs") || str_eq(d->name, "initrd")) {
			s->initramfs_in = in;
			s->initramfs_out = out;
		}
	}
	if (!s->state_out || !s->memory_out || !s->config_out) {
		log_error("cannot snapshot: the devices 'state', 'memory' and 'config' need an output");
		return -EINVAL;
	}
	if (!s->kernel_in) {
		log_error("cannot snapshot: device 'kernel' needs an input (the blueprint's kernel)");
		return -EINVAL;
	}
	if (!file_exists(s->kernel_in)) {
		log_error("cannot open kernel '%s': %s", s->kernel_in, strerror(errno));
		return -ENOENT;
	}
	if (s->initramfs_in && !file_exists(s->initramfs_in)) {
		log_error("cannot open initramfs '%s': %s", s->initramfs_in, strerror(errno));
		return -ENOENT;
	}

	r = vm_pick_kind(&cfg->vm, &kind);
	if (r < 0)
		return log_error_errno(r, "cannot pick a VMM: %m");
	fill_machine(&spec.machine, kind, &cfg->vm);
	spec.machine.initramfs = s->initramfs_in != NULL;
	spec.cfg = &cfg->vm;
	spec.enable_input = cfg->vm.enable_input;
	spec.enable_output = cfg->vm.enable_output;
	spec.kernel = xstrdup(s->kernel_in);
	spec.initramfs = xstrdup(s->initramfs_in);
	r = vm_netns_check(cfg->vm.netns);
	if (r < 0) {
		vm_spec_free(&spec);
		if (r == -ENOENT)
			log_error("cannot snapshot: network namespace '%s' does not exist (create it with 'drafter nat')",
				  cfg->vm.netns);
		else
			log_error("cannot use network namespace '%s': %s", cfg->vm.netns, strerror(-r));
		return r;
	}

	s->scratch_dir = xasprintf("%s/scratch-%d",
				   cfg->vm.chroot_base_dir ? cfg->vm.chroot_base_dir : "out/vms",
				   (int)getpid());
	r = mkdir_parents(s->scratch_dir);
	if (r == 0 && mkdir(s->scratch_dir, 0700) < 0 && errno != EEXIST)
		r = -errno;
	if (r < 0) {
		vm_spec_free(&spec);
		return log_error_errno(r, "cannot create directory '%s': %m", s->scratch_dir);
	}

	/* Disks: the root disk first (the guest's /dev/vda), then the others in the order given. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < cfg->n_devices; i++) {
			struct cfg_device *d = &cfg->devices[i];
			bool root = str_eq(d->name, "disk");
			const char *tmp;

			if ((pass == 0) != root)
				continue;
			if (str_eq(d->name, "state") || str_eq(d->name, "memory") || str_eq(d->name, "config") ||
			    str_eq(d->name, "kernel") || str_eq(d->name, "initramfs") || str_eq(d->name, "initrd"))
				continue;
			if (str_empty(d->input)) {
				if (root) {
					log_error("cannot snapshot: device 'disk' needs an input (the blueprint's disk)");
					vm_spec_free(&spec);
					return -EINVAL;
				}
				log_info("device '%s' has no input: not attached", d->name);
				continue;
			}
			if (!file_exists(d->input)) {
				/* The original's default list names an oci disk most blueprints lack. */
				if (str_eq(d->name, "oci") && errno == ENOENT) {
					log_info("no OCI disk '%s': not attached", d->input);
					continue;
				}
				log_error("cannot open input '%s' of device '%s': %s", d->input, d->name,
					  strerror(errno));
				vm_spec_free(&spec);
				return -ENOENT;
			}
			if (spec.machine.n_disks == VM_MAX_DISKS) {
				log_error("cannot snapshot: more than %d disks", VM_MAX_DISKS);
				vm_spec_free(&spec);
				return -E2BIG;
			}
			if (!str_empty(d->output)) {
				r = mkdir_parents(d->output);
				if (r < 0) {
					vm_spec_free(&spec);
					return log_error_errno(r, "cannot create the directory of '%s': %m", d->output);
				}
			}
			tmp = add_pending(s, str_empty(d->output) ? NULL : d->output, d->name);
			r = vm_copy_file(d->input, tmp);
			if (r < 0) {
				vm_spec_free(&spec);
				return log_error_errno(r, "cannot copy '%s' to '%s': %m", d->input, tmp);
			}
			spec.machine.disks[spec.machine.n_disks] = xstrdup(d->name);
			spec.disk_paths[spec.machine.n_disks++] = xstrdup(tmp);
		}
	}

	for (const char *const *o = (const char *const[]){ s->state_out, s->memory_out, s->config_out, NULL }; *o;
	     o++) {
		r = mkdir_parents(*o);
		if (r < 0) {
			vm_spec_free(&spec);
			return log_error_errno(r, "cannot create the directory of '%s': %m", *o);
		}
	}
	state_tmp = add_pending(s, s->state_out, NULL);
	mem_tmp = add_pending(s, s->memory_out, NULL);
	spec.memory = xstrdup(mem_tmp);

	vm_init(&vm, kind, &spec);
	log_info("booting the blueprint with %s (%u vCPU, %u MiB)", vm.ops->name, vm.spec.machine.cpu_count,
		 vm.spec.machine.memory_mib);
	r = vm.ops->boot(&vm);
	if (r < 0) {
		log_error("cannot boot the VM: %s", vm_error_text(&vm, r, why, sizeof why));
		goto out;
	}
	deadline = now_ns() + cfg->vm.resume_timeout_ns;
	r = vm.ops->liveness_wait(&vm, deadline);
	if (r < 0) {
		if (r == -ETIMEDOUT)
			log_error("cannot snapshot: the guest did not report that it booted within the resume timeout");
		else if (r != -EINTR)
			log_error("cannot snapshot: waiting for the guest to boot failed: %s",
				  vm_error_text(&vm, r, why, sizeof why));
		goto out;
	}
	log_info("the guest has booted; asking its agent to prepare for the snapshot");
	fd = vm.ops->agent_connect(&vm, deadline);
	if (fd < 0) {
		r = fd;
		if (r != -EINTR)
			log_error("cannot reach the guest agent: %s",
				  vm_error_text(&vm, r, why, sizeof why));
		goto out;
	}
	r = vm_agent_call(fd, vm.pidfd, "BeforeSuspend", deadline, agent_err, sizeof agent_err);
	close(fd);
	if (r < 0) {
		if (r == -EREMOTEIO)
			log_error("cannot snapshot: the guest's before-suspend command failed: %s", agent_err);
		else if (r == -ETIMEDOUT)
			log_error("cannot snapshot: the guest agent did not answer BeforeSuspend within the resume timeout");
		else if (r != -EINTR)
			log_error("cannot snapshot: calling BeforeSuspend failed: %s",
				  vm_error_text(&vm, r, why, sizeof why));
		goto out;
	}
	r = vm.ops->pause(&vm);
	if (r == 0)
		r = vm.ops->save_state(&vm, state_tmp, &state_size);
	if (r == 0)
		r = vm.ops->flush_memory(&vm);
	if (r < 0) {
		log_error("cannot save the VM state: %s", vm_error_text(&vm, r, why, sizeof why));
		goto out;
	}
	vm.ops->stop(&vm);

	r = vm_machine_copy(&meta.machine, &vm.spec.machine);
	if (r == 0)
		r = vm_seal_snapshot(state_tmp, state_size, vm_state_paddable(&meta.machine), mem_tmp, (uint64_t)meta.machine.memory_mib * MIB, &meta);
	if (r < 0) {
		log_error_errno(r, "cannot write the snapshot: %m");
		goto out;
	}
	r = copy_output(s->kernel_in, s->kernel_out);
	if (r == 0 && s->initramfs_in)
		r = copy_output(s->initramfs_in, s->initramfs_out);
	if (r < 0) {
		log_error_errno(r, "cannot copy the kernel to the package: %m");
		goto out;
	}
	/* Disks were written by the guest: pad them like every output, then move everything into place. */
	for (size_t i = 0; i < s->n_files; i++) {
		struct pending *p = &s->files[i];
		if (!p->final)
			continue;
		if (p->tmp != state_tmp && p->tmp != mem_tmp) {
			r = vm_pad_file(p->tmp);
			if (r == 0)
				r = vm_fsync_path(p->tmp);
		}
		if (r == 0 && rename(p->tmp, p->final) < 0)
			r = -errno;
		if (r < 0) {
			log_error_errno(r, "cannot write '%s': %m", p->final);
			goto out;
		}
		free(p->tmp);
		p->tmp = NULL;
	}
	r = vm_meta_write(s->config_out, &meta);
	if (r < 0) {
		log_error_errno(r, "cannot write config '%s': %m", s->config_out);
		goto out;
	}
	log_info("snapshot %s written (state %" PRIu64 " bytes, %u MiB memory)", meta.snapshot_id, state_size,
		 meta.machine.memory_mib);
out:
	if (r == -EINTR || interrupted)
		log_error("snapshot interrupted: no package written");
	vm_free(&vm);
	vm_meta_free(&meta);
	return r;
}

int cmd_snapshot(int argc, char **argv)
{
	struct snap s = { 0 };
	struct sigaction sa = { .sa_handler = on_signal };
	int r;

	r = config_setup(&s.cfg, TOOL_SNAPSHOT, argc, argv);
	if (r != 0) {
		config_free(&s.cfg);
		return r > 0 ? 0 : 1;
	}
	/* A signal ends the current wait with -EINTR and the snapshot is abandoned. */
	if (pipe2(wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		log_error("cannot create a pipe: %s", strerror(errno));
		config_free(&s.cfg);
		return 1;
	}
	vm_set_interrupt_fd(wake_pipe[0]);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	r = do_snapshot(&s);
	drop_pending(&s);
	config_free(&s.cfg);
	vm_set_interrupt_fd(-1);
	close(wake_pipe[0]);
	close(wake_pipe[1]);
	return r < 0 ? 1 : 0;
}
