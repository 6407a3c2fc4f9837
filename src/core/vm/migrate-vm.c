/*
 * The VM side of a migration (see migrate-vm.h): the glue between the VMM
 * drivers of vm.h and the hooks of the migration engine. Everything the VM
 * writes lands in exposed store devices, so the saved state, the memory
 * stamp and the snapshot record travel as ordinary dirty blocks.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/io.h"
#include "core/log.h"
#include "core/util.h"
#include "core/vm/migrate-vm.h"
#include "core/vm/vm.h"

#define MIB (1024ULL * 1024ULL)
#define AGENT_ATTEMPT_NS (30ULL * 1000000000ULL)
#define AGENT_PAUSE_NS (1000000000ULL)

struct vmmig {
	const struct config *cfg;
	struct vm vm;
	struct vm_meta meta;
	char *state, *memory, *config;
	int sigfd;
	bool started;
	struct vmmig_wait wait; /* destination: the VMM starts before the devices are ours */
	char hook_err[256];
	uint64_t resumed_ns; /* realtime, when the VM last started running */
	bool told;           /* BeforeSuspend done, the suspend comes next */
	void *state_data;    /* destination: the state read with wait.read, fed to QEMU */
	vmmig_write_fn write; /* optional: the devices written directly (vmmig_set_writer) */
	void *write_ctx;
};

bool vmmig_wanted(const struct config *cfg)
{
	const char *need[] = { "state", "memory", "config" };

	for (size_t i = 0; i < 3; i++) {
		const struct cfg_device *d = config_find_device((struct config *)cfg, need[i]);
		if (!d || d->shared)
			return false;
	}
	return true;
}

static void vm_err(struct vmmig *m, int r, char *buf, size_t len)
{
	struct vm *vm = &m->vm;
	const char *e = vm->ops && vm->ops->last_error ? vm->ops->last_error(vm) : "";

	if (r == -ECHILD) {
		char how[128], line[512];
		vm_describe_exit(vm, how, sizeof how);
		vm_last_log_line(vm, line, sizeof line);
		snprintf(buf, len, "%s %s%s%s", vm->ops ? vm->ops->name : "VMM", how, line[0] ? ": " : "", line);
	} else if (r == -EIO && e && e[0]) {
		snprintf(buf, len, "%s", e);
	} else if (r == -ENODEV) {
		snprintf(buf, len, "the snapshot was taken with KVM and /dev/kvm is not available");
	} else {
		snprintf(buf, len, "%s", strerror(-r));
	}
}

/* AfterResume as the original does it: reconnect and retry within the resume timeout. */
static int after_resume(struct vmmig *m, char *err, size_t errlen)
{
	struct vm *vm = &m->vm;
	uint64_t end = now_ns() + m->cfg->vm.resume_timeout_ns;
	char why[512] = "";
	int r = -ETIMEDOUT;

	for (;;) {
		uint64_t deadline = now_ns() + AGENT_ATTEMPT_NS;
		int fd;

		if (deadline > end)
			deadline = end;
		fd = vm->ops->agent_connect(vm, deadline);
		if (fd >= 0) {
			r = vm_agent_call(fd, vm->pidfd, "AfterResume", deadline, why, sizeof why);
			close(fd);
			if (r == 0)
				return 0;
		} else {
			r = fd;
		}
		if (r == -ECHILD || r == -EINTR || now_ns() >= end)
			break;
		struct pollfd p[2] = { { .fd = vm->pidfd, .events = POLLIN }, { .fd = m->sigfd, .events = POLLIN } };
		if (poll(p, m->sigfd >= 0 ? 2 : 1, vm_poll_ms(now_ns() + AGENT_PAUSE_NS)) > 0) {
			r = p[0].revents ? -ECHILD : -EINTR;
			break;
		}
	}
	if (r == -EREMOTEIO)
		snprintf(err, errlen, "the guest's after-resume command failed: %s", why);
	else if (r == -ETIMEDOUT || r == -ECONNRESET)
		snprintf(err, errlen, "the guest agent did not answer AfterResume within the resume timeout");
	else
		vm_err(m, r, err, errlen);
	return r;
}

/* A device of the destination, read with wait.read (vm_read_fn). */
struct direct {
	struct vmmig *m;
	const char *name;
};

static ssize_t direct_read(void *ctx, void *buf, size_t len, uint64_t off)
{
	struct direct *d = ctx;
	return d->m->wait.read(d->m->wait.ctx, d->name, buf, len, off);
}

/*
 * The snapshot record in the `config` device (read from the store with
 * wait.read when there is one, else through its file), if it describes a
 * VM drafter can migrate: QEMU, or Firecracker's live-migration fork, whose
 * memory is mapped shared so the guest's writes reach the memory device. Upstream
 * Firecracker maps it privately: nothing the guest writes would be seen
 * before the suspend writes all of memory again.
 */
static int read_meta(struct vmmig *m, struct vm_meta *meta, char *err, size_t errlen)
{
	struct direct config = { m, "config" };
	int r = m->wait.read ? vm_meta_read_from(direct_read, &config, meta)
			     : vm_meta_read(m->config, meta);

	if (r < 0) {
		snprintf(err, errlen, "cannot read snapshot config '%s': %s", m->config,
			 r == -EINVAL || r == -E2BIG ? "not a drafter snapshot config" : strerror(-r));
		return r;
	}
	if (!meta->has_drafter) {
		snprintf(err, errlen, "the snapshot was made by the original drafter: resume it once with 'drafter run' before migrating it");
		return -EOPNOTSUPP;
	}
	if (meta->machine.kind == VM_KIND_FIRECRACKER && !meta->machine.fc_fork) {
		snprintf(err, errlen, "the snapshot was made with upstream Firecracker, which maps guest memory privately: live migration needs the loopholelabs fork");
		return -EOPNOTSUPP;
	}
	return 0;
}

static void check_err(int r, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s",
		 r == -EBADE	? "the state device does not belong to the snapshot config"
		 : r == -ESTALE ? "the memory device belongs to another snapshot"
				: strerror(-r));
}

static int check_snapshot(struct vmmig *m, const struct vm_meta *meta, char *err, size_t errlen)
{
	int r = vm_check_snapshot(meta, m->state, m->memory);

	if (r < 0)
		check_err(r, err, errlen);
	return r;
}

/* A larger state (some KiB to a few MiB in practice) is checked and fed from its file. */
#define STATE_BUF_MAX (64u << 20)

/*
 * The state into memory (for QEMU), checked against META, and the memory
 * stamp, read with wait.read: no round trip through the exposure for
 * either (not even a stat: in the pause, a FUSE request waits for a core
 * like everything else, 2.7 ms in one of three traced rounds). STATE_BUF_MAX
 * bounds what a record can make us hold; a state device shorter than the
 * record says ends the read early.
 */
static int check_snapshot_direct(struct vmmig *m, const struct vm_meta *meta, char *err,
				 size_t errlen)
{
	struct direct state = { m, "state" }, memory = { m, "memory" };
	ssize_t n;
	int r;

	free(m->state_data);
	m->state_data = NULL;
	if (meta->state_size > STATE_BUF_MAX ||
	    !(m->state_data = calloc(1, meta->state_size ? (size_t)meta->state_size : 1)))
		return check_snapshot(m, meta, err, errlen);
	n = direct_read(&state, m->state_data, (size_t)meta->state_size, 0);
	r = n < 0 ? (int)n : (uint64_t)n < meta->state_size ? -EBADE : vm_state_check(meta, m->state_data);
	if (r == 0)
		r = vm_memory_check_from(meta, direct_read, &memory);
	if (r < 0)
		check_err(r, err, errlen);
	return r;
}

void vmmig_first_ranges(const struct vmmig *m, vmmig_range_fn fn, void *ctx)
{
	fn(ctx, "config", 0, UINT64_MAX);
	fn(ctx, "state", 0, UINT64_MAX);
	fn(ctx, "memory", (uint64_t)m->meta.machine.memory_mib * MIB, VM_STAMP_LEN);
}

/*
 * The VMM of a destination started ahead of the handover: it is up (with
 * -incoming) and about to load the device state. Wait for the devices to
 * become ours, then take the snapshot record the source sealed at its
 * suspend. -EAGAIN: that record describes another machine than the one
 * started (the caller starts the VMM again).
 */
static int authority_then_load(void *ctx)
{
	struct vmmig *m = ctx;
	struct vm_meta meta = { 0 };
	int r;

	log_debug("VMM ready for the state at %.6f", (double)realtime_ns() / 1e9);
	r = m->wait.fn(m->wait.ctx);
	if (r < 0) {
		snprintf(m->hook_err, sizeof m->hook_err, "the migration ended before the VM could run");
		return r;
	}
	log_debug("devices ours at %.6f", (double)realtime_ns() / 1e9);
	/* The record, the state and the stamp are read next, one after the other. */
	if (m->wait.prefetch)
		vmmig_first_ranges(m, m->wait.prefetch, m->wait.ctx);
	r = read_meta(m, &meta, m->hook_err, sizeof m->hook_err);
	if (r == 0 && !vm_machine_equal(&meta.machine, &m->meta.machine)) {
		snprintf(m->hook_err, sizeof m->hook_err, "the machine changed during the migration");
		r = -EAGAIN;
	}
	if (r == 0)
		r = m->wait.read ? check_snapshot_direct(m, &meta, m->hook_err, sizeof m->hook_err)
				 : check_snapshot(m, &meta, m->hook_err, sizeof m->hook_err);
	if (r < 0) {
		vm_meta_free(&meta);
		return r;
	}
	vm_meta_free(&m->meta);
	m->meta = meta;
	m->vm.spec.state_size = meta.state_size;
	m->vm.spec.state_data = m->state_data;
	log_debug("snapshot %s checked at %.6f", meta.snapshot_id, (double)realtime_ns() / 1e9);
	if (m->wait.settle)
		m->wait.settle(m->wait.ctx);
	log_debug("settled at %.6f", (double)realtime_ns() / 1e9);
	return 0;
}

int vmmig_start(const struct config *cfg, vmmig_path_fn path, void *ctx, int sigfd, const struct vmmig_wait *wait,
		struct vmmig **out, char *err, size_t errlen)
{
	struct vmmig *m = xcalloc(1, sizeof(*m));
	struct vm_spec spec = { 0 };
	const char *kernel = path(ctx, "kernel");
	const char *initramfs = path(ctx, "initramfs");
	int r;

	m->cfg = cfg;
	m->sigfd = sigfd;
	m->vm.pidfd = -EBADF;
	m->vm.log_fd = -EBADF;
	m->state = xstrdup(path(ctx, "state"));
	m->memory = xstrdup(path(ctx, "memory"));
	m->config = xstrdup(path(ctx, "config"));
	*out = m;

	r = read_meta(m, &m->meta, err, errlen);
	if (r == 0 && !wait)
		r = check_snapshot(m, &m->meta, err, errlen);
	if (r < 0)
		return r;
	r = vm_netns_check(cfg->vm.netns);
	if (r < 0) {
		snprintf(err, errlen, "network namespace '%s' %s", cfg->vm.netns,
			 r == -ENOENT ? "does not exist (create it with 'drafter nat')" : strerror(-r));
		return r;
	}
	vm_machine_copy(&spec.machine, &m->meta.machine);
	spec.cfg = &cfg->vm;
	spec.kernel = kernel ? xstrdup(kernel) : NULL;
	spec.initramfs = m->meta.machine.initramfs && initramfs ? xstrdup(initramfs) : NULL;
	spec.state = xstrdup(m->state);
	spec.state_size = m->meta.state_size;
	spec.memory = xstrdup(m->memory);
	spec.enable_input = false;
	spec.enable_output = cfg->vm.enable_output;
	spec.autostart = true; /* resumed right after the restore anyway */
	if (wait) {
		m->wait = *wait;
		spec.before_load = authority_then_load;
		spec.before_load_ctx = m;
	}
	for (size_t i = 0; i < m->meta.machine.n_disks; i++) {
		const char *p = path(ctx, m->meta.machine.disks[i]);
		if (!p) {
			snprintf(err, errlen, "the snapshot has a disk '%s' that the devices do not name",
				 m->meta.machine.disks[i]);
			vm_spec_free(&spec);
			return -EINVAL;
		}
		spec.disk_paths[i] = xstrdup(p);
	}
	vm_hash_prepare(); /* both sides hash the state in the pause */
	vm_init(&m->vm, m->meta.machine.kind, &spec);
	m->started = true;
	r = m->vm.ops->restore(&m->vm);
	if (r == 0)
		r = m->vm.ops->resume(&m->vm);
	m->resumed_ns = realtime_ns();
	log_debug("VM restored and resumed at %.6f", (double)m->resumed_ns / 1e9);
	if (r < 0 && m->hook_err[0])
		snprintf(err, errlen, "%s", m->hook_err);
	else if (r < 0)
		vm_err(m, r, err, errlen);
	return r;
}

int vmmig_after_resume(struct vmmig *m, char *err, size_t errlen)
{
	int r = after_resume(m, err, errlen);

	log_debug("AfterResume answered at %.6f", (double)realtime_ns() / 1e9);
	return r;
}

int vmmig_flush(struct vmmig *m)
{
	if (!m || !m->started)
		return 0;
	return m->vm.ops->flush_memory(&m->vm);
}

void vmmig_set_writer(struct vmmig *m, vmmig_write_fn fn, void *ctx)
{
	m->write = fn;
	m->write_ctx = ctx;
}

/*
 * LEN bytes at OFF of device NAME (exposed at PATH): with the writer when
 * there is one, else through the exposed file (then fsynced). -EFBIG when
 * the device is too small for them.
 */
static int dev_write(struct vmmig *m, const char *name, const char *path, const void *buf, size_t len,
		     uint64_t off)
{
	_cleanup_close_ int fd = -EBADF;
	struct stat st;
	int r;

	if (m->write) {
		ssize_t n = m->write(m->write_ctx, name, buf, len, off);
		return n < 0 ? (int)n : (size_t)n < len ? -EFBIG : 0;
	}
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size < off + len)
		return -EFBIG;
	r = pwrite_all(fd, buf, len, off);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	return r;
}

/* The memory's stamp, for vm_seal_state. */
static ssize_t stamp_write(void *arg, const void *buf, size_t len, uint64_t off)
{
	struct vmmig *m = arg;
	int r = dev_write(m, "memory", m->memory, buf, len, off);

	return r < 0 ? r : (ssize_t)len;
}

/*
 * The saved state (SIZE bytes of the scratch file FROM, what the VMM
 * saved) into memory, and from there into the (fixed-size) state device:
 * the seal hashes it where it is. -EFBIG when the device is too small.
 */
static int state_into(struct vmmig *m, const char *from, uint64_t size, void **data)
{
	_cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ void *buf = NULL;
	int r;

	if (in < 0)
		return -errno;
	buf = xcalloc(1, size ? (size_t)size : 1);
	r = pread_exact(in, buf, (size_t)size, 0);
	if (r == 0)
		r = dev_write(m, "state", m->state, buf, (size_t)size, 0);
	if (r == 0)
		*data = TAKE_PTR(buf);
	return r;
}

/* The snapshot record goes into the config device in place, NUL-terminated (the parser stops there). */
static int write_config(struct vmmig *m, const struct vm_meta *meta)
{
	_cleanup_free_ char *json = vm_meta_to_json(meta);

	if (!json)
		return -ENOMEM;
	return dev_write(m, "config", m->config, json, strlen(json) + 1, 0);
}

int vmmig_before_suspend(struct vmmig *m, char *err, size_t errlen)
{
	struct vm *vm = &m->vm;
	uint64_t deadline = now_ns() + (m->cfg->vm.rescue_timeout_ns ? m->cfg->vm.rescue_timeout_ns
								    : m->cfg->vm.resume_timeout_ns);
	char why[512];
	int r, fd;

	log_debug("BeforeSuspend at %.6f", (double)realtime_ns() / 1e9);
	fd = vm->ops->agent_connect(vm, deadline);
	r = fd < 0 ? fd : vm_agent_call(fd, vm->pidfd, "BeforeSuspend", deadline, why, sizeof why);
	if (fd >= 0)
		close(fd);
	if (r == -ECHILD) {
		vm_err(m, r, err, errlen);
		return r;
	}
	if (r == -EREMOTEIO)
		log_warn("the guest's before-suspend command failed: %s; suspending anyway", why);
	else if (r < 0)
		log_warn("the guest agent did not answer BeforeSuspend (%s); suspending anyway", strerror(-r));
	m->told = true;
	return 0;
}

/* A scratch file for the saved state: on tmpfs when there is one, so no disk is involved. */
static int scratch_file(char *path, size_t len)
{
	struct stat st;
	int fd;

	snprintf(path, len, "%s/drafter-state-XXXXXX",
		 stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp");
	fd = mkostemp(path, O_CLOEXEC);
	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

/* Pause the VM and save its state into TMP, its disks flushed: with the driver's own suspend when it has one. */
static int pause_and_save(struct vm *vm, const char *tmp, uint64_t *size, uint64_t *paused_ns)
{
	int r;

	if (vm->ops->suspend)
		return vm->ops->suspend(vm, tmp, size, paused_ns);
	/*
	 * The downtime starts before the pause is asked for, not when it has
	 * been done: a VMM may flush the disks before it answers.
	 */
	*paused_ns = realtime_ns();
	r = vm->ops->pause(vm);
	if (r == 0)
		r = vm->ops->save_state(vm, tmp, size);
	for (size_t i = 0; r == 0 && i < vm->spec.machine.n_disks; i++)
		r = vm_fsync_path(vm->spec.disk_paths[i]);
	return r;
}

int vmmig_suspend(struct vmmig *m, uint64_t *paused_ns, char *err, size_t errlen)
{
	struct vm *vm = &m->vm;
	struct vm_meta meta = { 0 };
	_cleanup_free_ void *state = NULL;
	char tmp[64];
	uint64_t size = 0, t = 0;
	int r;

	if (!m->told && (r = vmmig_before_suspend(m, err, errlen)) < 0)
		return r;
	m->told = false;
	r = scratch_file(tmp, sizeof tmp);
	if (r < 0) {
		snprintf(err, errlen, "cannot create a scratch file for the VM state: %s", strerror(-r));
		return r;
	}
	r = pause_and_save(vm, tmp, &size, &t);
	if (paused_ns)
		*paused_ns = t;
	log_debug("VM paused at %.6f and saved at %.6f", (double)t / 1e9, (double)realtime_ns() / 1e9);
	if (r < 0) {
		vm_err(m, r, err, errlen);
		goto out;
	}
	r = state_into(m, tmp, size, &state);
	if (r < 0) {
		snprintf(err, errlen, "cannot write the VM state into '%s': %s", m->state,
			 r == -EFBIG ? "the state device is too small" : strerror(-r));
		goto out;
	}
	r = vm->ops->flush_memory(vm);
	if (r < 0) {
		vm_err(m, r, err, errlen);
		goto out;
	}
	log_debug("memory written back at %.6f", (double)realtime_ns() / 1e9);
	vm_machine_copy(&meta.machine, &m->meta.machine);
	r = vm_seal_state(state, size, stamp_write, m, (uint64_t)meta.machine.memory_mib * MIB, &meta);
	if (r == 0)
		r = write_config(m, &meta);
	if (r < 0) {
		snprintf(err, errlen, "cannot seal the snapshot: %s", strerror(-r));
		goto out;
	}
	log_debug("VM suspended into its devices at %.6f: snapshot %s, %" PRIu64 " bytes of state",
		  (double)realtime_ns() / 1e9, meta.snapshot_id, size);
	/* The next suspend (after a failed migration) seals against this record. */
	vm_meta_free(&m->meta);
	m->meta = meta;
	memset(&meta, 0, sizeof meta);
out:
	vm_meta_free(&meta);
	(void)unlink(tmp);
	return r;
}

int vmmig_resume(struct vmmig *m, char *err, size_t errlen)
{
	int r = m->vm.ops->resume(&m->vm);

	m->told = false; /* a later suspend tells the guest again */
	m->resumed_ns = realtime_ns();
	if (r < 0)
		vm_err(m, r, err, errlen);
	return r;
}

/*
 * The VMM's exit (unmapping guest memory, closing its TAP) costs 2-4 ms of
 * CPU, and a halt comes at the handover, while the destination loads and
 * resumes the VM: at SCHED_IDLE it runs on a core nothing else wants.
 * bench/migrate, alternating rounds: with it, the exit's samples in the
 * pause went from 9-15 to 1-5 and own downtime 6.7-7.2 ms against 7.6-24 ms.
 */
void vmmig_halt(struct vmmig *m)
{
	if (m && m->started && m->vm.pid > 0 && m->vm.pidfd >= 0) {
		(void)process_to_idle(m->vm.pid);
		(void)syscall(SYS_pidfd_send_signal, m->vm.pidfd, SIGKILL, NULL, 0);
	}
}

void vmmig_stop(struct vmmig *m)
{
	if (m && m->started) {
		m->vm.ops->stop(&m->vm);
		(void)vm_alive(&m->vm);
	}
}

uint64_t vmmig_resumed_ns(const struct vmmig *m)
{
	return m ? m->resumed_ns : 0;
}

const char *vmmig_guest_mac(const struct vmmig *m)
{
	return m ? m->meta.machine.mac : "";
}

int vmmig_pidfd(struct vmmig *m)
{
	return m && m->started && m->vm.pid > 0 ? m->vm.pidfd : -1;
}

bool vmmig_owns(const struct vmmig *m, const char *name)
{
	const char *own[] = { "state", "memory", "config", "kernel", "initramfs" };

	for (size_t i = 0; i < sizeof own / sizeof own[0]; i++)
		if (str_eq(name, own[i]))
			return true;
	for (size_t i = 0; i < m->meta.machine.n_disks; i++)
		if (str_eq(name, m->meta.machine.disks[i]))
			return true;
	return false;
}

void vmmig_describe_exit(struct vmmig *m, char *buf, size_t len)
{
	(void)vm_alive(&m->vm);
	vm_err(m, -ECHILD, buf, len);
}

void vmmig_free(struct vmmig *m)
{
	if (!m)
		return;
	if (m->started)
		vm_free(&m->vm);
	vm_meta_free(&m->meta);
	free(m->state_data);
	free(m->state);
	free(m->memory);
	free(m->config);
	free(m);
}
