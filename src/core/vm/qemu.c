/*
 * The QEMU driver. Guest RAM is a memory-backend-file with share=on on the
 * `memory` device, so a snapshot only has to save device state (migration
 * capability x-ignore-shared) into the `state` device, and a restore is a new
 * QEMU with the same command line, -incoming defer and migrate-incoming.
 * QEMU 7.2 has no file: migration URI: drafter hands it descriptors instead
 * (getfd + "fd:" URIs), the state file when saving and a pipe that drafter
 * fills with exactly the recorded state bytes when restoring. The monitor,
 * liveness and agent channels are socketpairs passed at start: nothing to
 * wait for on the filesystem and no sockets left behind.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "core/io.h"
#include "core/log.h"
#include "core/util.h"
#include "core/vm/qmp.h"
#include "core/vm/vm.h"

#define MIB (1024ULL * 1024ULL)
#define QEMU_START_TIMEOUT_NS (30ULL * 1000000000ULL)
#define QEMU_CMD_TIMEOUT_NS (60ULL * 1000000000ULL)
#define QEMU_QUIT_TIMEOUT_NS (5ULL * 1000000000ULL)

struct qemu {
	struct qmp qmp;
	int agent_fd;
	int liveness_fd;
	int memory_fd; /* the memory file, opened at the first flush and kept for the next */
	bool have_qmp;
	bool autostarted; /* restore ran the VM: the next resume has nothing to do */
	char err[512]; /* last QMP error text */
};

static struct qemu *priv(struct vm *vm)
{
	return vm->priv;
}

/* The accelerator a new VM gets: DRAFTER_QEMU_ACCEL, else KVM when /dev/kvm opens, else TCG. */
static const char *pick_accel(void)
{
	const char *e = getenv("DRAFTER_QEMU_ACCEL");
	int fd;

	if (e && (str_eq(e, "kvm") || str_eq(e, "tcg")))
		return e;
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		return "kvm";
	}
	return "tcg";
}

/* The host's TSC rate in kHz (from /proc/cpuinfo), for microvm's tsc_early_khz. */
static unsigned long host_tsc_khz(void)
{
	_cleanup_fclose_ FILE *f = fopen("/proc/cpuinfo", "re");
	char line[256];

	while (f && fgets(line, sizeof line, f)) {
		double mhz;
		if (sscanf(line, "cpu MHz : %lf", &mhz) == 1 && mhz > 100 && mhz < 100000)
			return (unsigned long)(mhz * 1000.0);
	}
	return 2000000;
}

struct argv_buf {
	char **v;
	size_t n, cap;
};

static void add(struct argv_buf *a, const char *s)
{
	if (a->n + 2 > a->cap) {
		a->cap = a->cap ? a->cap * 2 : 64;
		a->v = xreallocarray(a->v, a->cap, sizeof *a->v);
	}
	a->v[a->n++] = xstrdup(s);
	a->v[a->n] = NULL;
}

_printf_(2, 3) static void addf(struct argv_buf *a, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = xvasprintf(fmt, ap);
	va_end(ap);
	add(a, s);
	free(s);
}

static void argv_free(struct argv_buf *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i]);
	free(a->v);
	a->v = NULL;
	a->n = a->cap = 0;
}

/* S as a QEMU option value: a ',' would end the value, QEMU reads ',,' as one comma. */
static char *qemu_escape(const char *s)
{
	size_t n = 0;
	for (const char *p = s; *p; p++)
		n += *p == ',' ? 2 : 1;
	char *out = xcalloc(1, n + 1), *o = out;
	for (const char *p = s; *p; p++) {
		*o++ = *p;
		if (*p == ',')
			*o++ = ',';
	}
	return out;
}

/*
 * The command line: identical for boot and restore (the migration stream
 * only loads into a machine built the same way), plus -incoming on restore.
 */
static void build_argv(struct vm *vm, struct argv_buf *a, int qmp_fd, int live_fd, int agent_fd, bool incoming)
{
	const struct vm_machine *m = &vm->spec.machine;
	const struct cfg_vm *cfg = vm->spec.cfg;
	bool mmio = str_eq(m->machine, "microvm");
	_cleanup_free_ char *mem = qemu_escape(vm->spec.memory);

	add(a, cfg && !str_empty(cfg->qemu_bin) ? cfg->qemu_bin : "qemu-system-x86_64");
	add(a, "-accel");
	add(a, m->accel);
	add(a, "-machine");
	addf(a, "%s,memory-backend=mem", m->machine);
	add(a, "-nodefaults");
	add(a, "-no-user-config");
	add(a, "-display");
	add(a, "none");
	add(a, "-no-reboot");
	add(a, "-smp");
	addf(a, "%u", m->cpu_count);
	add(a, "-m");
	addf(a, "%uM", m->memory_mib);
	add(a, "-object");
	addf(a, "memory-backend-file,id=mem,size=%uM,mem-path=%s,share=on", m->memory_mib, mem);
	if (vm->spec.kernel) {
		add(a, "-kernel");
		add(a, vm->spec.kernel);
	}
	if (vm->spec.initramfs) {
		add(a, "-initrd");
		add(a, vm->spec.initramfs);
	}
	if (m->boot_args) {
		add(a, "-append");
		add(a, m->boot_args);
	}
	add(a, "-chardev");
	add(a, "stdio,id=con,signal=off");
	add(a, "-serial");
	add(a, "chardev:con");
	add(a, "-chardev");
	addf(a, "socket,id=qmp,fd=%d", qmp_fd);
	add(a, "-mon");
	add(a, "chardev=qmp,mode=control");
	for (size_t i = 0; i < m->n_disks; i++) {
		_cleanup_free_ char *p = qemu_escape(vm->spec.disk_paths[i]);
		add(a, "-drive");
		addf(a, "file=%s,if=none,id=drive%zu,format=raw,discard=unmap,auto-read-only=off", p, i);
		add(a, "-device");
		addf(a, "%s,drive=drive%zu", mmio ? "virtio-blk-device" : "virtio-blk-pci", i);
	}
	add(a, "-device");
	const char *vser = mmio ? "virtio-serial-device" : "virtio-serial-pci";
	if (m->serial_ports)
		addf(a, "%s,id=vser0,max_ports=%u", vser, m->serial_ports);
	else
		addf(a, "%s,id=vser0", vser);
	add(a, "-chardev");
	addf(a, "socket,id=liveness,fd=%d", live_fd);
	add(a, "-device");
	add(a, "virtserialport,bus=vser0.0,chardev=liveness,name=org.drafter.liveness");
	add(a, "-chardev");
	addf(a, "socket,id=agent,fd=%d", agent_fd);
	add(a, "-device");
	add(a, "virtserialport,bus=vser0.0,chardev=agent,name=org.drafter.agent");
	if (!str_empty(m->interface)) {
		add(a, "-netdev");
		addf(a, "tap,id=net0,ifname=%s,script=no,downscript=no", m->interface);
		add(a, "-device");
		addf(a, "%s,netdev=net0,mac=%s", mmio ? "virtio-net-device" : "virtio-net-pci,romfile=", m->mac);
	}
	if (incoming) {
		add(a, "-incoming");
		add(a, "defer");
		if (!vm->spec.autostart)
			add(a, "-S");
	}
}

/* QEMU running as another user must be able to write the files it runs on. */
static int own_files(struct vm *vm)
{
	const struct cfg_vm *cfg = vm->spec.cfg;

	if (!cfg || (!cfg->uid && !cfg->gid))
		return 0;
	if (chown(vm->spec.memory, cfg->uid, cfg->gid) < 0)
		return -errno;
	for (size_t i = 0; i < vm->spec.machine.n_disks; i++)
		if (chown(vm->spec.disk_paths[i], cfg->uid, cfg->gid) < 0)
			return -errno;
	return 0;
}

static int qemu_start(struct vm *vm, bool incoming)
{
	struct qemu *q = priv(vm);
	struct argv_buf a = { 0 };
	int qmp[2] = { -1, -1 }, live[2] = { -1, -1 }, agent[2] = { -1, -1 };
	int keep[3];
	_cleanup_close_ int logfd = -EBADF;
	const char *netns = vm->spec.cfg ? vm->spec.cfg->netns : NULL;
	int r;

	if (!q) {
		q = xcalloc(1, sizeof *q);
		q->agent_fd = q->liveness_fd = q->memory_fd = q->qmp.fd = -EBADF;
		vm->priv = q;
	}
	r = vm_netns_check(netns);
	if (r < 0)
		return r == -ENOENT ? -ENONET : r;
	r = own_files(vm);
	if (r < 0)
		return r;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, qmp) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, live) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, agent) < 0) {
		r = -errno;
		goto out;
	}
	logfd = memfd_create("qemu-stderr", MFD_CLOEXEC);
	if (logfd < 0) {
		r = -errno;
		goto out;
	}
	build_argv(vm, &a, qmp[1], live[1], agent[1], incoming);
	if (log_get_level() >= LOG_LVL_DEBUG) {
		for (size_t i = 0; i < a.n; i++)
			log_debug("qemu argv[%zu]: %s", i, a.v[i]);
	}
	keep[0] = qmp[1];
	keep[1] = live[1];
	keep[2] = agent[1];
	struct vm_spawn sp = {
		.argv = a.v,
		.netns = netns,
		.stdin_fd = vm->spec.enable_input ? STDIN_FILENO : -1,
		.stdout_fd = vm->spec.enable_output ? STDOUT_FILENO : -1,
		.stderr_fd = logfd,
		.keep_fds = keep,
		.n_keep_fds = 3,
		.new_pgrp = true,
		.uid = vm->spec.cfg ? vm->spec.cfg->uid : 0,
		.gid = vm->spec.cfg ? vm->spec.cfg->gid : 0,
		.numa_node = vm->spec.cfg ? vm->spec.cfg->numa_node : -1,
		.no_hugepage_advice = true,
	};
	r = vm_spawn(&sp, &vm->pid, &vm->pidfd);
	if (r < 0)
		goto out;
	vm->log_fd = TAKE_FD(logfd);
	vm->exit_status = -1;
	close(qmp[1]);
	close(live[1]);
	close(agent[1]);
	qmp[1] = live[1] = agent[1] = -1;
	q->agent_fd = agent[0];
	q->liveness_fd = live[0];
	agent[0] = live[0] = -1;

	r = qmp_open(&q->qmp, qmp[0], vm->pidfd, now_ns() + QEMU_START_TIMEOUT_NS);
	qmp[0] = -1; /* owned by q->qmp now */
	if (r < 0)
		goto out;
	q->have_qmp = true;
	r = qmp_callf(&q->qmp, "migrate-set-capabilities",
		      "{\"capabilities\":[{\"capability\":\"x-ignore-shared\",\"state\":true},"
		      "{\"capability\":\"events\",\"state\":true}]}",
		      q->err, sizeof q->err, now_ns() + QEMU_CMD_TIMEOUT_NS);
	/*
	 * No self-announce after a restore. QEMU's default sends RARP frames
	 * and has the guest send gratuitous ARP, five rounds from the moment
	 * the state is loaded: kernel code the resumed guest's vCPU translates
	 * and runs right when a client waits for it (about 30 ms in
	 * bench/migrate). The guest's TAP is a routed link in its namespace,
	 * where nothing learns where a MAC lives; Firecracker never announces.
	 */
	if (r == 0)
		r = qmp_callf(&q->qmp, "migrate-set-parameters", "{\"announce-rounds\":0}",
			      q->err, sizeof q->err, now_ns() + QEMU_CMD_TIMEOUT_NS);
out:
	for (int i = 0; i < 2; i++) {
		if (qmp[i] >= 0)
			close(qmp[i]);
		if (live[i] >= 0)
			close(live[i]);
		if (agent[i] >= 0)
			close(agent[i]);
	}
	argv_free(&a);
	/* A QEMU that exited during start reports why on stderr. */
	if (r < 0 && vm->pid > 0 && !vm_alive(vm))
		r = -ECHILD;
	return r;
}

/* Append the kernel argument ARG to *ARGS unless the user already set KEY. */
static void add_boot_arg(char **args, const char *key, const char *arg)
{
	char *s;

	if (*args && strstr(*args, key))
		return;
	s = xasprintf("%s%s%s", *args ? *args : "", *args && (*args)[0] ? " " : "", arg);
	free(*args);
	*args = s;
}

static int qemu_boot(struct vm *vm)
{
	struct vm_machine *m = &vm->spec.machine;
	_cleanup_close_ int fd = -EBADF;

	if (!m->accel[0])
		snprintf(m->accel, sizeof m->accel, "%s", pick_accel());
	if (!m->machine[0])
		snprintf(m->machine, sizeof m->machine, "microvm");
	if (!m->serial_ports)
		m->serial_ports = VM_QEMU_SERIAL_PORTS;
	/* microvm under TCG can hang calibrating the TSC against the PIT: give it the rate. */
	if (str_eq(m->machine, "microvm")) {
		char arg[48];
		snprintf(arg, sizeof arg, "tsc_early_khz=%lu", host_tsc_khz());
		add_boot_arg(&m->boot_args, "tsc_early_khz=", arg);
	}
	/*
	 * Under TCG the clocksource watchdog sees the emulated TSC jitter, drops
	 * the guest onto jiffies and, under load, its clock can stand still for
	 * seconds: tell the kernel the TSC is to be trusted.
	 */
	if (str_eq(m->accel, "tcg"))
		add_boot_arg(&m->boot_args, "tsc=", "tsc=reliable");
	fd = open(vm->spec.memory, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)((uint64_t)m->memory_mib * MIB)) < 0)
		return -errno;
	return qemu_start(vm, false);
}

struct feeder {
	int in, out;
	const uint8_t *data; /* the state in memory, else read from IN */
	uint64_t len;
	int result;
};

/* Feed exactly LEN bytes of the state into the pipe QEMU reads the migration from. */
static void *feed_state(void *arg)
{
	struct feeder *f = arg;
	char buf[65536];
	uint64_t off = 0;

	thread_name("qemu-feed");
	f->result = 0;
	while (off < f->len) {
		size_t want = f->len - off > sizeof buf ? sizeof buf : (size_t)(f->len - off);
		if (f->data)
			f->result = write_all(f->out, f->data + off, want);
		else if ((f->result = pread_exact(f->in, buf, want, off)) == 0)
			f->result = write_all(f->out, buf, want);
		if (f->result < 0)
			break;
		off += want;
	}
	close(f->out);
	f->out = -1;
	return NULL;
}

/* Hand FD to QEMU under the name "state" (getfd), for an fd: migration URI. */
static int pass_state_fd(struct qemu *q, int fd)
{
	json_object *args = json_object_new_object();
	int r;

	json_object_object_add(args, "fdname", json_object_new_string("state"));
	r = qmp_call(&q->qmp, "getfd", args, fd, NULL, q->err, sizeof q->err, now_ns() + QEMU_CMD_TIMEOUT_NS);
	json_object_put(args);
	return r;
}

static int qemu_restore(struct vm *vm)
{
	struct qemu *q;
	struct vm_machine *m = &vm->spec.machine;
	_cleanup_close_ int state = -EBADF, rd = -EBADF;
	struct feeder f = { .in = -1, .out = -1 };
	pthread_t th;
	int pfd[2];
	int r;

	if (str_eq(m->accel, "kvm") && access("/dev/kvm", R_OK | W_OK) < 0)
		return -ENODEV;
	state = open(vm->spec.state, O_RDONLY | O_CLOEXEC);
	if (state < 0)
		return -errno;
	r = qemu_start(vm, true);
	if (r < 0)
		return r;
	q = priv(vm);
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	rd = pfd[0];
	/*
	 * The pipe goes over and the incoming migration starts before the
	 * wait: QEMU then waits for the state's first bytes, and once the
	 * state may load no command stands between it and the load. A wait
	 * that fails closes the pipe, which ends that migration and QEMU.
	 */
	r = pass_state_fd(q, rd);
	q->qmp.mig_status[0] = 0;
	q->qmp.resumed = false;
	if (r == 0)
		r = qmp_callf(&q->qmp, "migrate-incoming", "{\"uri\":\"fd:state\"}", q->err, sizeof q->err,
			      now_ns() + QEMU_CMD_TIMEOUT_NS);
	if (r == 0 && vm->spec.before_load)
		r = vm->spec.before_load(vm->spec.before_load_ctx);
	if (r < 0) {
		close(pfd[1]);
		return r;
	}
	f.in = state;
	f.out = pfd[1];
	f.data = vm->spec.state_data;
	f.len = vm->spec.state_size;
	if (pthread_create(&th, NULL, feed_state, &f) != 0) {
		close(pfd[1]);
		return -EAGAIN;
	}
	r = qmp_wait_migration(&q->qmp, q->err, sizeof q->err, now_ns() + QEMU_CMD_TIMEOUT_NS);
	if (r < 0 && f.out >= 0) {
		/* Unblock the feeder: QEMU will not read the rest. */
		close(rd);
		rd = -EBADF;
	}
	pthread_join(th, NULL);
	if (r == 0 && f.result < 0)
		r = f.result;
	/* QEMU sends RESUME before it says the migration completed. */
	q->autostarted = r == 0 && q->qmp.resumed;
	if (r < 0 && !vm_alive(vm))
		r = -ECHILD;
	return r;
}

static int qemu_resume(struct vm *vm)
{
	struct qemu *q = priv(vm);

	if (q->autostarted) {
		q->autostarted = false;
		return 0;
	}
	return qmp_callf(&q->qmp, "cont", NULL, q->err, sizeof q->err, now_ns() + QEMU_CMD_TIMEOUT_NS);
}

static int qemu_pause(struct vm *vm)
{
	struct qemu *q = priv(vm);
	if (!q || !q->have_qmp)
		return -ENOTCONN;
	return qmp_callf(&q->qmp, "stop", NULL, q->err, sizeof q->err, now_ns() + QEMU_CMD_TIMEOUT_NS);
}

/*
 * The device state (x-ignore-shared: no RAM) into PATH (created with MODE)
 * through QEMU's own migration, fsynced when SYNC; *SIZE = its bytes,
 * *ASKED = realtime just before `migrate` was sent. QMP's STOP times are
 * reset first.
 */
static int migrate_to_file(struct qemu *q, const char *path, mode_t mode, bool sync, uint64_t *size,
			   uint64_t *asked)
{
	_cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	struct stat st;
	int r;

	if (fd < 0)
		return -errno;
	r = pass_state_fd(q, fd);
	if (r < 0)
		return r;
	q->qmp.mig_status[0] = 0;
	q->qmp.stop_ns = q->qmp.before_stop_ns = 0;
	*asked = realtime_ns();
	r = qmp_callf(&q->qmp, "migrate", "{\"uri\":\"fd:state\"}", q->err, sizeof q->err,
		      now_ns() + QEMU_CMD_TIMEOUT_NS);
	if (r == 0)
		r = qmp_wait_migration(&q->qmp, q->err, sizeof q->err, now_ns() + QEMU_CMD_TIMEOUT_NS);
	if (r < 0)
		return r;
	if ((sync && fsync(fd) < 0) || fstat(fd, &st) < 0)
		return -errno;
	*size = (uint64_t)st.st_size;
	return 0;
}

static int qemu_save_state(struct vm *vm, const char *path, uint64_t *size)
{
	uint64_t asked;

	return migrate_to_file(priv(vm), path, 0644, true, size, &asked);
}

/*
 * Pause and save in one: `migrate` while the guest runs. QEMU sets the
 * migration up first (its dirty bitmaps, 0.5-4.6 ms here, under contention
 * the most) and, with no RAM to send (x-ignore-shared), stops the guest
 * (flushing its disks) and writes the device state right after. The guest
 * stopped between the event before STOP and STOP itself (which comes once
 * the devices have quiesced): *PAUSED_NS is the earlier one, so a downtime
 * counted from it is never too short. The migration leaves the VM in
 * "postmigrate", from where `cont` runs it again. PATH is a scratch file:
 * not synced.
 */
static int qemu_suspend(struct vm *vm, const char *path, uint64_t *size, uint64_t *paused_ns)
{
	struct qemu *q = priv(vm);
	uint64_t asked;
	int r;

	if (!q || !q->have_qmp)
		return -ENOTCONN;
	r = migrate_to_file(q, path, 0600, false, size, &asked);
	if (r == 0)
		*paused_ns = q->qmp.stop_ns && q->qmp.before_stop_ns > asked ? q->qmp.before_stop_ns : asked;
	return r;
}

/*
 * Pages QEMU dirtied through its MAP_SHARED mapping are in this file's page
 * cache: fsync writes them back. The descriptor stays open, as an exposed
 * file's open and close are a round trip each to the exposure's threads,
 * and a migration flushes before every dirty cycle and in the pause.
 */
static int qemu_flush_memory(struct vm *vm)
{
	struct qemu *q = priv(vm);

	if (!q)
		return -ENOTCONN;
	if (q->memory_fd < 0) {
		q->memory_fd = open(vm->spec.memory, O_RDONLY | O_CLOEXEC);
		if (q->memory_fd < 0)
			return -errno;
	}
	return fsync(q->memory_fd) < 0 ? -errno : 0;
}

static void qemu_stop(struct vm *vm)
{
	struct qemu *q = priv(vm);
	int st;

	if (vm->pid > 0 && q && q->have_qmp && vm_alive(vm)) {
		char err[128];
		(void)qmp_callf(&q->qmp, "quit", NULL, err, sizeof err, now_ns() + QEMU_QUIT_TIMEOUT_NS);
	}
	if (vm->pid > 0) {
		if (vm_wait_exit(vm->pid, vm->pidfd, QEMU_QUIT_TIMEOUT_NS, &st) == -ETIMEDOUT) {
			kill(vm->pid, SIGKILL);
			(void)vm_wait_exit(vm->pid, vm->pidfd, QEMU_QUIT_TIMEOUT_NS, &st);
		}
		vm->exit_status = st;
		vm->pid = 0;
	}
	if (q) {
		if (q->have_qmp)
			qmp_close(&q->qmp);
		q->have_qmp = false;
		if (q->agent_fd >= 0)
			close(q->agent_fd);
		if (q->liveness_fd >= 0)
			close(q->liveness_fd);
		if (q->memory_fd >= 0)
			close(q->memory_fd);
		free(q);
		vm->priv = NULL;
	}
}

static int qemu_liveness_wait(struct vm *vm, uint64_t deadline_ns)
{
	struct qemu *q = priv(vm);
	char c;

	/* The guest writes one line ("ready <boot id>") once it has booted. */
	for (;;) {
		int r = vm_wait_readable(q->liveness_fd, vm->pidfd, deadline_ns);
		if (r < 0)
			return r;
		ssize_t n = recv(q->liveness_fd, &c, 1, MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ECONNRESET;
		if (c == '\n')
			return 0;
	}
}

static int qemu_agent_connect(struct vm *vm, uint64_t deadline_ns)
{
	struct qemu *q = priv(vm);
	int fd;

	(void)deadline_ns;
	if (!q || q->agent_fd < 0)
		return -ENOTCONN;
	fd = fcntl(q->agent_fd, F_DUPFD_CLOEXEC, 3);
	return fd < 0 ? -errno : fd;
}

static const char *qemu_agent_path(struct vm *vm)
{
	(void)vm;
	return NULL;
}

static const char *qemu_last_error(struct vm *vm)
{
	struct qemu *q = priv(vm);
	return q ? q->err : "";
}

const struct vmm_ops vm_qemu_ops = {
	.name = "qemu",
	.boot = qemu_boot,
	.restore = qemu_restore,
	.resume = qemu_resume,
	.pause = qemu_pause,
	.save_state = qemu_save_state,
	.suspend = qemu_suspend,
	.flush_memory = qemu_flush_memory,
	.stop = qemu_stop,
	.liveness_wait = qemu_liveness_wait,
	.agent_connect = qemu_agent_connect,
	.agent_path = qemu_agent_path,
	.last_error = qemu_last_error,
};

