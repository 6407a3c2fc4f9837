/*
 * drafter run: resume a VM from a package, pass its serial console through,
 * and on SIGINT/SIGTERM suspend it back into the package, so that the next
 * run resumes where this one stopped.
 *
 * The package is never written while the VM runs: the VM works on copies of
 * its memory and disks next to the package files ("<path>.drafter-run"),
 * which replace the package files only after a complete suspend (the config
 * device, which names the snapshot, is written last). A VMM that dies, or a
 * drafter that is killed, leaves the package at its last good snapshot.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cmd/cmds.h"
#include "core/config.h"
#include "core/log.h"
#include "core/store/store.h"
#include "core/util.h"
#include "core/vm/vm.h"

#define MIB (1024ULL * 1024ULL)
#define RUN_SUFFIX ".drafter-run"
/* The original's AfterResume policy: 30 s per attempt, at most 9 attempts, 1 s apart. */
#define AFTER_RESUME_ATTEMPT_NS (30ULL * 1000000000ULL)
#define AFTER_RESUME_ATTEMPTS 9
#define AFTER_RESUME_PAUSE_NS (1000000000ULL)

struct work_file {
	char *path;    /* the package file */
	char *work;    /* the copy the VM runs on */
};

struct runner {
	struct config cfg;
	struct vm_meta meta;
	const char *state, *memory, *config, *kernel, *initramfs;
	struct work_file files[VM_MAX_DISKS + 1]; /* memory first, then the disks */
	size_t n_files;
	int lock_fd;
	int sigfd;
	char why[768];
	/* With exposure fuse or nbd: the working copies as store devices, shown to the VMM. */
	struct store_device *devs[VM_MAX_DISKS + 1];
	struct store_expose *expose;
	bool original;  /* a package of the original drafter: nothing to check it against */
};

static void drop_work(struct runner *rn)
{
	for (size_t i = 0; i < rn->n_files; i++) {
		if (rn->files[i].work)
			(void)unlink(rn->files[i].work);
		free(rn->files[i].work);
		free(rn->files[i].path);
	}
	rn->n_files = 0;
}

/* A resume adds one cause of its own to the VM layer's: the snapshot needs KVM. */
static const char *errtext(struct vm *vm, int r, char *buf, size_t len)
{
	if (r == -ENODEV) {
		snprintf(buf, len, "the snapshot was taken with KVM and /dev/kvm is not available");
		return buf;
	}
	return vm_error_text(vm, r, buf, len);
}

/*
 * A package made by the original: its config holds only agentVSockPort, the
 * rest lives in the (fork's) Firecracker state. Rebuild what a restore needs:
 * the memory size from the memory file, which the original padded by exactly
 * 1 MiB (guest memory is a whole number of MiB), and every device that is
 * not state, memory, config or kernel as a drive. The first suspend writes
 * drafter's full record, which the original still reads.
 */
static int adopt_original(struct runner *rn)
{
	struct vm_machine *m = &rn->meta.machine;
	struct stat st;

	if (rn->cfg.vm.vmm == VMM_QEMU) {
		log_error("cannot run '%s' with QEMU: the package was made by the original drafter for Firecracker",
			  rn->config);
		return -EOPNOTSUPP;
	}
	if (!rn->memory || stat(rn->memory, &st) < 0 || st.st_size % (off_t)MIB != 0 || st.st_size < 2 * (off_t)MIB) {
		log_error("cannot run '%s': its memory device is not padded as the original pads it", rn->config);
		return -EINVAL;
	}
	m->kind = VM_KIND_FIRECRACKER;
	m->fc_fork = true;
	m->cpu_count = 1;
	m->memory_mib = (uint32_t)((uint64_t)st.st_size / MIB - 1);
	snprintf(m->cpu_template, sizeof m->cpu_template, "None");
	for (size_t i = 0; i < rn->cfg.n_devices && m->n_disks < VM_MAX_DISKS; i++) {
		const char *n = rn->cfg.devices[i].name;
		if (str_eq(n, "state") || str_eq(n, "memory") || str_eq(n, "config") || str_eq(n, "kernel") ||
		    str_eq(n, "initramfs") || str_eq(n, "initrd") || str_empty(rn->cfg.devices[i].path))
			continue;
		m->disks[m->n_disks++] = xstrdup(n);
	}
	rn->original = true;
	log_info("'%s' was made by the original drafter: resuming it with the Firecracker fork", rn->config);
	return 0;
}

/* Sort the package devices into roles and check that everything the snapshot needs is there. */
static int find_devices(struct runner *rn)
{
	struct config *cfg = &rn->cfg;
	struct vm_machine *m = &rn->meta.machine;
	int r;

	for (size_t i = 0; i < cfg->n_devices; i++) {
		struct cfg_device *d = &cfg->devices[i];
		const char *p = str_empty(d->path) ? NULL : d->path;
		if (str_eq(d->name, "state"))
			rn->state = p;
		else if (str_eq(d->name, "memory"))
			rn->memory = p;
		else if (str_eq(d->name, "config"))
			rn->config = p;
		else if (str_eq(d->name, "kernel"))
			rn->kernel = p;
		else if (str_eq(d->name, "initramfs") || str_eq(d->name, "initrd"))
			rn->initramfs = p;
	}
	if (!rn->config) {
		log_error("cannot run: the package has no 'config' device");
		return -EINVAL;
	}
	r = vm_meta_read(rn->config, &rn->meta);
	if (r < 0) {
		if (r == -EINVAL || r == -E2BIG)
			log_error("cannot read snapshot config '%s': not a drafter snapshot config", rn->config);
		else
			log_error("cannot read snapshot config '%s': %s", rn->config, strerror(-r));
		return r;
	}
	if (!rn->meta.has_drafter) {
		r = adopt_original(rn);
		if (r < 0)
			return r;
	}
	for (const char *const *n = (const char *const[]){ "state", "memory", "kernel", NULL }; *n; n++) {
		const char *p = str_eq(*n, "state") ? rn->state : str_eq(*n, "memory") ? rn->memory : rn->kernel;
		struct stat st;
		if (!p) {
			log_error("cannot run: the package has no '%s' device", *n);
			return -EINVAL;
		}
		if (stat(p, &st) < 0) {
			r = -errno;
			log_error("cannot open %s '%s': %s", *n, p, strerror(errno));
			return r;
		}
	}
	if (m->initramfs && !rn->initramfs) {
		log_error("cannot run: the snapshot was booted with an initramfs and the package has no 'initramfs' device");
		return -EINVAL;
	}
	for (size_t i = 0; i < m->n_disks; i++) {
		struct cfg_device *d = config_find_device(cfg, m->disks[i]);
		struct stat st;
		if (!d || str_empty(d->path)) {
			log_error("cannot run: the snapshot has a disk '%s' that the package devices do not name",
				  m->disks[i]);
			return -EINVAL;
		}
		if (stat(d->path, &st) < 0) {
			r = -errno;
			log_error("cannot open disk '%s': %s", d->path, strerror(errno));
			return r;
		}
	}
	return 0;
}

static int check_match(struct runner *rn)
{
	int r = vm_check_snapshot(&rn->meta, rn->state, rn->memory);

	if (r == -EBADE)
		log_error("cannot run: state '%s' does not belong to config '%s' (snapshot %s)", rn->state, rn->config,
			  rn->meta.snapshot_id);
	else if (r == -ESTALE)
		log_error("cannot run: memory '%s' does not belong to snapshot %s in '%s'", rn->memory,
			  rn->meta.snapshot_id, rn->config);
	else if (r < 0)
		log_error("cannot check the snapshot: %s", strerror(-r));
	return r;
}

/*
 * The working copies: created at their full size first, filled by a thread
 * while the VMM starts and loads the device state (it maps and opens the
 * files but reads guest data only once the VM runs); joined before resume.
 */
struct copier {
	struct runner *rn;
	pthread_t th;
	bool running;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool memory_done;     /* under lock */
	int memory_result;    /* under lock */
	int result;           /* all files; read after join */
};

static void *copy_thread(void *arg)
{
	struct copier *c = arg;
	int r = 0;

	thread_name("run-copy");
	/* Memory first: the VMM needs it complete to load the device state, the disks only to run. */
	for (size_t i = 0; i < c->rn->n_files; i++) {
		if (r == 0)
			r = vm_copy_data(c->rn->files[i].path, c->rn->files[i].work);
		if (i == 0) {
			pthread_mutex_lock(&c->lock);
			c->memory_done = true;
			c->memory_result = r;
			pthread_cond_broadcast(&c->cond);
			pthread_mutex_unlock(&c->lock);
		}
	}
	c->result = r;
	return NULL;
}

/* All copies complete (joins the thread). */
static int copies_done(struct copier *c)
{
	if (c->running) {
		pthread_join(c->th, NULL);
		c->running = false;
	}
	return c->result;
}

/* The VMM is about to read guest memory: the memory copy must be complete. */
static int wait_memory_copy(void *arg)
{
	struct copier *c = arg;
	int r;

	if (!c->running)
		return c->result;
	pthread_mutex_lock(&c->lock);
	while (!c->memory_done)
		pthread_cond_wait(&c->cond, &c->lock);
	r = c->memory_result;
	pthread_mutex_unlock(&c->lock);
	return r;
}

static int make_work_copies(struct runner *rn, struct vm_spec *spec, struct copier *c)
{
	struct vm_machine *m = &rn->meta.machine;
	int r;

	rn->files[0].path = xstrdup(rn->memory);
	rn->files[0].work = xasprintf("%s%s", rn->memory, RUN_SUFFIX);
	rn->n_files = 1;
	for (size_t i = 0; i < m->n_disks; i++) {
		struct cfg_device *d = config_find_device(&rn->cfg, m->disks[i]);
		rn->files[rn->n_files].path = xstrdup(d->path);
		rn->files[rn->n_files].work = xasprintf("%s%s", d->path, RUN_SUFFIX);
		rn->n_files++;
	}
	for (size_t i = 0; i < rn->n_files; i++) {
		r = vm_copy_prepare(rn->files[i].path, rn->files[i].work);
		if (r < 0)
			return log_error_errno(r, "cannot create '%s': %m", rn->files[i].work);
	}
	spec->memory = xstrdup(rn->files[0].work);
	for (size_t i = 0; i < m->n_disks; i++)
		spec->disk_paths[i] = xstrdup(rn->files[i + 1].work);
	c->rn = rn;
	c->result = 0;
	if (pthread_create(&c->th, NULL, copy_thread, c) != 0)
		return log_error_errno(-EAGAIN, "cannot start a thread: %m");
	c->running = true;
	spec->before_load = wait_memory_copy;
	spec->before_load_ctx = c;
	return 0;
}

/* The original's AfterResume: reconnect and retry, 30 s per attempt, 9 attempts, 1 s apart. */
static int after_resume(struct runner *rn, struct vm *vm)
{
	uint64_t end = now_ns() + rn->cfg.vm.resume_timeout_ns;
	char err[512];
	int r = -ETIMEDOUT;

	for (int attempt = 1; attempt <= AFTER_RESUME_ATTEMPTS; attempt++) {
		uint64_t deadline = now_ns() + AFTER_RESUME_ATTEMPT_NS;
		int fd;

		if (deadline > end)
			deadline = end;
		fd = vm->ops->agent_connect(vm, deadline);
		if (fd >= 0) {
			r = vm_agent_call(fd, vm->pidfd, "AfterResume", deadline, err, sizeof err);
			close(fd);
			if (r == 0)
				return 0;
		} else {
			r = fd;
		}
		if (r == -ECHILD || r == -EINTR)
			return r;
		if (r == -EREMOTEIO)
			log_warn("the guest's after-resume command failed: %s (attempt %d)", err, attempt);
		else
			log_debug("AfterResume attempt %d failed: %s", attempt, strerror(-r));
		if (now_ns() >= end)
			break;
		/* Pause between attempts, but wake for a dying VMM or a signal. */
		struct pollfd p[2] = { { .fd = vm->pidfd, .events = POLLIN }, { .fd = rn->sigfd, .events = POLLIN } };
		if (poll(p, 2, vm_poll_ms(now_ns() + AFTER_RESUME_PAUSE_NS)) > 0)
			return p[0].revents ? -ECHILD : -EINTR;
	}
	if (r == -EREMOTEIO) {
		snprintf(rn->why, sizeof rn->why, "the guest's after-resume command failed: %s", err);
		return r;
	}
	return r == -ECONNRESET ? -ETIMEDOUT : r;
}

/* Unmount/disconnect the exposure and close the devices, so the working copies hold everything. */
static int unexpose(struct runner *rn)
{
	int r = 0;

	if (rn->expose) {
		r = store_expose_flush_all(rn->expose);
		store_expose_free(rn->expose);
		rn->expose = NULL;
	}
	for (size_t i = 0; i < rn->n_files; i++) {
		if (rn->devs[i]) {
			int q = store_device_flush(rn->devs[i]);
			if (r == 0)
				r = q;
			store_device_free(rn->devs[i]);
			rn->devs[i] = NULL;
		}
	}
	return r;
}

/*
 * Show the working copies to the VMM through the storage engine (FUSE or
 * NBD) instead of as plain files, when the configuration asks for it.
 */
static int expose(struct runner *rn, struct vm_spec *spec, enum cfg_exposure kind)
{
	struct vm_machine *m = &rn->meta.machine;
	int r;

	for (size_t i = 0; i < rn->n_files; i++) {
		struct store_provider *stack = NULL;
		struct store_stack_opts so = { .base = rn->files[i].work };
		struct store_device_opts o = { .name = i == 0 ? "memory" : m->disks[i - 1] };

		r = store_stack_open(&so, &stack);
		if (r < 0)
			return log_error_errno(r, "cannot open '%s': %m", rn->files[i].work);
		r = store_device_new(&o, stack, &rn->devs[i]);
		if (r < 0) {
			store_close(stack);
			return log_error_errno(r, "cannot set up device '%s': %m", o.name);
		}
	}
	struct store_expose_opts eo = {
		.kind = store_expose_kind_from_cfg(kind),
		.mount_dir = rn->cfg.transport.mount_dir,
	};
	r = store_expose_new(&eo, rn->devs, rn->n_files, &rn->expose);
	if (r < 0)
		return log_error_errno(r, "cannot expose the devices (%s): %m",
				       kind == EXPOSE_NBD ? "nbd" : "fuse");
	free(spec->memory);
	spec->memory = xstrdup(store_expose_path(rn->expose, 0));
	for (size_t i = 0; i < m->n_disks; i++) {
		free(spec->disk_paths[i]);
		spec->disk_paths[i] = xstrdup(store_expose_path(rn->expose, i + 1));
	}
	log_debug("devices exposed with %s", store_expose_kind_name(rn->expose));
	return 0;
}

/* Suspend the VM and write it back into the package. */
static int suspend_to_package(struct runner *rn, struct vm *vm)
{
	struct vm_meta meta = { 0 };
	_cleanup_free_ char *state_tmp = xasprintf("%s%s", rn->state, RUN_SUFFIX);
	/* Stopping is a rescue operation: a stuck guest agent must not hold it up for long. */
	uint64_t deadline = now_ns() + (rn->cfg.vm.rescue_timeout_ns ? rn->cfg.vm.rescue_timeout_ns
								 : rn->cfg.vm.resume_timeout_ns);
	uint64_t state_size = 0;
	char err[512];
	int r, fd;

	/* Further signals are ignored from here: a suspend must not be torn. */
	vm_set_interrupt_fd(-1);
	log_info("suspending the VM into the package");
	fd = vm->ops->agent_connect(vm, deadline);
	r = fd < 0 ? fd : vm_agent_call(fd, vm->pidfd, "BeforeSuspend", deadline, err, sizeof err);
	if (fd >= 0)
		close(fd);
	if (r == -ECHILD)
		goto fail;
	if (r == -EREMOTEIO)
		log_warn("the guest's before-suspend command failed: %s; suspending anyway", err);
	else if (r < 0)
		log_warn("the guest agent did not answer BeforeSuspend (%s); suspending anyway", strerror(-r));

	r = vm->ops->pause(vm);
	if (r == 0)
		r = vm->ops->save_state(vm, state_tmp, &state_size);
	if (r == 0)
		r = vm->ops->flush_memory(vm);
	if (r < 0)
		goto fail;
	vm->ops->stop(vm);
	r = unexpose(rn);
	if (r < 0) {
		log_error_errno(r, "cannot write the devices back: %m");
		goto out;
	}

	vm_machine_copy(&meta.machine, &rn->meta.machine);
	r = vm_seal_snapshot(state_tmp, state_size, vm_state_paddable(&meta.machine), rn->files[0].work, (uint64_t)meta.machine.memory_mib * MIB,
			     &meta);
	/* Disks keep their size: they were padded once, when the snapshot was made. */
	for (size_t i = 1; r == 0 && i < rn->n_files; i++)
		r = vm_fsync_path(rn->files[i].work);
	if (r < 0) {
		log_error_errno(r, "cannot write the snapshot: %m");
		goto out;
	}
	/* The config names the snapshot: it goes last, once state, memory and disks are in place. */
	if (rename(state_tmp, rn->state) < 0) {
		r = log_error_errno(-errno, "cannot replace '%s': %m", rn->state);
		goto out;
	}
	for (size_t i = 0; i < rn->n_files; i++) {
		if (rename(rn->files[i].work, rn->files[i].path) < 0) {
			r = log_error_errno(-errno, "cannot replace '%s': %m", rn->files[i].path);
			goto out;
		}
		free(rn->files[i].work);
		rn->files[i].work = NULL;
	}
	r = vm_meta_write(rn->config, &meta);
	if (r < 0) {
		log_error_errno(r, "cannot write config '%s': %m", rn->config);
		goto out;
	}
	log_info("suspended: snapshot %s written to the package", meta.snapshot_id);
	goto out;
fail:
	log_error("cannot suspend the VM: %s; the package keeps its previous snapshot",
		  errtext(vm, r, rn->why, sizeof rn->why));
out:
	(void)unlink(state_tmp);
	vm_meta_free(&meta);
	return r;
}

static int do_run(struct runner *rn)
{
	struct config *cfg = &rn->cfg;
	struct vm_spec spec = { 0 };
	struct vm vm = { 0 };
	enum vm_kind kind;
	uint64_t t0 = now_ns();
	struct copier copy = { .running = false, .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
	int r;

	vm.pidfd = -EBADF;
	vm.log_fd = -EBADF;
	r = find_devices(rn);
	if (r < 0)
		return r;
	kind = rn->meta.machine.kind;
	if (cfg->vm.vmm != VMM_AUTO && (cfg->vm.vmm == VMM_QEMU) != (kind == VM_KIND_QEMU)) {
		log_error("cannot run: the package was snapshotted with %s, not %s", vm_kind_name(kind),
			  cfg->vm.vmm == VMM_QEMU ? "qemu" : "firecracker");
		return -EINVAL;
	}
	rn->lock_fd = open(rn->config, O_RDONLY | O_CLOEXEC);
	if (rn->lock_fd < 0)
		return log_error_errno(-errno, "cannot open '%s': %m", rn->config);
	if (flock(rn->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK) {
			log_error("cannot run: package '%s' is in use by another drafter", rn->config);
			return -EBUSY;
		}
		return log_error_errno(-errno, "cannot lock '%s': %m", rn->config);
	}
	r = rn->original ? 0 : check_match(rn);
	if (r < 0)
		return r;
	log_debug("snapshot checked %.3f s after start", (double)(now_ns() - t0) / 1e9);
	r = vm_netns_check(cfg->vm.netns);
	if (r < 0) {
		if (r == -ENOENT)
			log_error("cannot run: network namespace '%s' does not exist (create it with 'drafter nat')",
				  cfg->vm.netns);
		else
			log_error("cannot use network namespace '%s': %s", cfg->vm.netns, strerror(-r));
		return r;
	}

	vm_machine_copy(&spec.machine, &rn->meta.machine);
	spec.cfg = &cfg->vm;
	spec.kernel = xstrdup(rn->kernel);
	spec.initramfs = rn->meta.machine.initramfs ? xstrdup(rn->initramfs) : NULL;
	spec.state = xstrdup(rn->state);
	spec.state_size = rn->meta.state_size;
	spec.enable_input = cfg->vm.enable_input;
	spec.enable_output = cfg->vm.enable_output;
	r = make_work_copies(rn, &spec, &copy);
	if (r < 0) {
		vm_spec_free(&spec);
		return r;
	}
	/* "auto" means the files themselves here: nothing of a local run migrates. */
	if (cfg->transport.exposure == EXPOSE_FUSE || cfg->transport.exposure == EXPOSE_NBD) {
		/* The storage engine reads the copies: they must be complete first. */
		r = copies_done(&copy);
		if (r == 0)
			r = expose(rn, &spec, cfg->transport.exposure);
		if (r < 0) {
			if (copy.result < 0)
				log_error("cannot copy the package's memory and disks: %s", strerror(-copy.result));
			vm_spec_free(&spec);
			(void)unexpose(rn);
			return r;
		}
	}
	vm_init(&vm, kind, &spec);
	r = vm.ops->restore(&vm);
	/* The disks may still be on their way: the guest reads them only once it runs. */
	(void)copies_done(&copy);
	log_debug("working copies made and state loaded %.3f s after start", (double)(now_ns() - t0) / 1e9);
	if (copy.result < 0) {
		log_error("cannot copy the package's memory and disks: %s", strerror(-copy.result));
		r = copy.result;
		goto out;
	}
	if (r == 0)
		r = vm.ops->resume(&vm);
	if (r < 0) {
		if (r == -EINTR)
			log_error("interrupted before the VM ran; the package is unchanged");
		else
			log_error("cannot resume the VM: %s", errtext(&vm, r, rn->why, sizeof rn->why));
		goto out;
	}
	log_debug("VM running %.3f s after start", (double)(now_ns() - t0) / 1e9);
	r = after_resume(rn, &vm);
	if (r == -EINTR) {
		/* Stopped before the guest answered: still save what runs. */
		r = suspend_to_package(rn, &vm);
		goto out;
	}
	if (r < 0) {
		if (r == -ETIMEDOUT)
			log_error("cannot resume the VM: the guest agent did not answer AfterResume within the resume timeout");
		else if (r == -EREMOTEIO)
			log_error("cannot resume the VM: %s", rn->why);
		else
			log_error("cannot resume the VM: %s", errtext(&vm, r, rn->why, sizeof rn->why));
		goto out;
	}
	log_info("VM resumed (%.3f s); stop it with Ctrl-C or SIGTERM to suspend it into the package",
		 (double)(now_ns() - t0) / 1e9);

	for (;;) {
		struct pollfd p[2] = { { .fd = vm.pidfd, .events = POLLIN }, { .fd = rn->sigfd, .events = POLLIN } };
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			r = log_error_errno(-errno, "poll: %m");
			break;
		}
		if (p[1].revents) {
			struct signalfd_siginfo si;
			(void)!read(rn->sigfd, &si, sizeof si);
			r = suspend_to_package(rn, &vm);
			break;
		}
		if (p[0].revents) {
			(void)vm_alive(&vm);
			/* With -no-reboot, a guest that powers off or reboots ends QEMU with status 0. */
			if (kind == VM_KIND_QEMU && WIFEXITED(vm.exit_status) && WEXITSTATUS(vm.exit_status) == 0)
				log_error("the guest shut down or rebooted; the package keeps its last snapshot");
			else
				log_error("VM stopped unexpectedly: %s; the package keeps its last snapshot",
					  errtext(&vm, -ECHILD, rn->why, sizeof rn->why));
			r = -ECHILD;
			break;
		}
	}
out:
	vm_free(&vm);
	(void)unexpose(rn);
	return r;
}

int cmd_run(int argc, char **argv)
{
	struct runner rn = { .lock_fd = -1, .sigfd = -1 };
	sigset_t mask;
	int r;

	r = config_setup(&rn.cfg, TOOL_RUN, argc, argv);
	if (r != 0) {
		config_free(&rn.cfg);
		return r > 0 ? 0 : 1;
	}
	stop_signals(&mask);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	rn.sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (rn.sigfd < 0) {
		log_error("cannot create a signalfd: %s", strerror(errno));
		config_free(&rn.cfg);
		return 1;
	}
	vm_set_interrupt_fd(rn.sigfd);

	r = do_run(&rn);

	vm_set_interrupt_fd(-1);
	drop_work(&rn);
	vm_meta_free(&rn.meta);
	if (rn.lock_fd >= 0)
		close(rn.lock_fd);
	close(rn.sigfd);
	config_free(&rn.cfg);
	return r < 0 ? 1 : 0;
}
