/*
 * What both VMM drivers need around the process they run: starting it inside
 * a network namespace with chosen descriptors, watching it through a pidfd,
 * UNIX sockets for the guest channels, and driver selection.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#include "core/io.h"
#include "core/log.h"
#include "core/util.h"
#include "core/vm/vm.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

int vm_poll_ms(uint64_t deadline_ns)
{
	uint64_t now = now_ns();

	if (now >= deadline_ns)
		return 0;
	uint64_t ms = (deadline_ns - now + 999999) / 1000000;
	return ms > 1000000000 ? 1000000000 : (int)ms;
}

static int interrupt_fd = -1;

void vm_set_interrupt_fd(int fd)
{
	interrupt_fd = fd;
}

int vm_wait_readable(int fd, int pidfd, uint64_t deadline_ns)
{
	for (;;) {
		struct pollfd p[3] = {
			{ .fd = fd, .events = POLLIN },
			{ .fd = pidfd, .events = POLLIN },
			{ .fd = interrupt_fd, .events = POLLIN },
		};
		int r = poll(p, 3, vm_poll_ms(deadline_ns));
		if (r < 0) {
			if (errno == EINTR)
				return -EINTR;
			return -errno;
		}
		if (interrupt_fd >= 0 && p[2].revents)
			return -EINTR;
		if (p[0].revents)
			return 0;
		if (pidfd >= 0 && p[1].revents)
			return -ECHILD;
		if (r == 0)
			return -ETIMEDOUT;
	}
}

int vm_netns_check(const char *name)
{
	char path[PATH_MAX];
	struct stat st;

	if (str_empty(name))
		return 0;
	if (strchr(name, '/'))
		return -EINVAL;
	snprintf(path, sizeof path, "/run/netns/%s", name);
	if (stat(path, &st) < 0)
		return -errno;
	return 0;
}

int vm_numa_cpulist(int node, char *buf, size_t len)
{
	char path[128];

	if (node < 0)
		return -EINVAL;
	snprintf(path, sizeof path, "/sys/devices/system/node/node%d/cpulist", node);
	return read_small_file(path, buf, len) > 0 ? 0 : -ENOENT;
}

/* "0-3,8" → CPU set; 0 when at least one CPU was set. */
static int parse_cpulist(const char *s, cpu_set_t *set)
{
	CPU_ZERO(set);
	while (*s) {
		char *end;
		unsigned long a = strtoul(s, &end, 10), b = a;
		if (end == s)
			return -EINVAL;
		if (*end == '-') {
			s = end + 1;
			b = strtoul(s, &end, 10);
			if (end == s)
				return -EINVAL;
		}
		for (unsigned long c = a; c <= b && c < CPU_SETSIZE; c++)
			CPU_SET(c, set);
		s = *end == ',' ? end + 1 : end;
		if (*end && *end != ',')
			return -EINVAL;
	}
	return CPU_COUNT(set) ? 0 : -EINVAL;
}

#if defined(__x86_64__)
#define SECCOMP_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SECCOMP_ARCH AUDIT_ARCH_AARCH64
#endif
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define ARG_LOW(n) (offsetof(struct seccomp_data, args[n]))
#else
#define ARG_LOW(n) (offsetof(struct seccomp_data, args[n]) + 4)
#endif

/*
 * In the child: make madvise(MADV_HUGEPAGE) fail with EINVAL, as on a kernel
 * without transparent huge pages. QEMU gives that advice on all guest RAM.
 * drafter's guest RAM is a shared mapping of a file (through FUSE or not),
 * which gets no huge page from it, only a read-around of 2-4 MiB at every
 * page fault instead of the file's read-ahead window (docs/vm.md). Best
 * effort: without the privilege to install the filter, there is none.
 */
static void refuse_hugepage_advice(void)
{
#ifdef SECCOMP_ARCH
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SECCOMP_ARCH, 0, 5),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_madvise, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LOW(2)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, MADV_HUGEPAGE, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = ARRAY_SIZE(f), .filter = f };

	(void)prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
#endif
}

static _Noreturn void child_fail(int errfd, int err)
{
	/* The parent learns why exec failed through the CLOEXEC pipe. */
	(void)!write(errfd, &err, sizeof err);
	_exit(127);
}

int vm_spawn(const struct vm_spawn *sp, pid_t *ret_pid, int *ret_pidfd)
{
	_cleanup_close_ int nsfd = -EBADF, devnull = -EBADF;
	int pipefd[2];
	pid_t pid;
	int pidfd, err = 0;
	ssize_t n;

	if (!str_empty(sp->netns)) {
		char path[PATH_MAX];
		snprintf(path, sizeof path, "/run/netns/%s", sp->netns);
		nsfd = open(path, O_RDONLY | O_CLOEXEC);
		if (nsfd < 0)
			return -errno;
	}
	char cpus[1024];
	cpu_set_t cpuset;
	bool pin = sp->numa_node >= 0 && vm_numa_cpulist(sp->numa_node, cpus, sizeof cpus) == 0 &&
		   parse_cpulist(cpus, &cpuset) == 0;

	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0)
		return -errno;
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;

	pid_t parent = getpid();
	pid = fork();
	if (pid < 0) {
		err = -errno;
		close(pipefd[0]);
		close(pipefd[1]);
		return err;
	}
	if (pid == 0) {
		int fds[3] = { sp->stdin_fd, sp->stdout_fd, sp->stderr_fd };
		sigset_t none;

		close(pipefd[0]);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		/* A drafter that is killed must not leave its VMM running on files it owns. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			child_fail(pipefd[1], ECHILD);
		if (sp->new_pgrp)
			(void)setpgid(0, 0);
		if (nsfd >= 0 && setns(nsfd, CLONE_NEWNET) < 0)
			child_fail(pipefd[1], errno);
		if (pin && sched_setaffinity(0, sizeof cpuset, &cpuset) < 0)
			child_fail(pipefd[1], errno);
		if (sp->no_hugepage_advice)
			refuse_hugepage_advice();
		/* Drop privileges last: joining the namespace needs them. */
		if (sp->uid || sp->gid) {
			if (setgroups(0, NULL) < 0 || setresgid(sp->gid, sp->gid, sp->gid) < 0 ||
			    setresuid(sp->uid, sp->uid, sp->uid) < 0)
				child_fail(pipefd[1], errno);
		}
		for (int i = 0; i < 3; i++) {
			int src = fds[i] >= 0 ? fds[i] : devnull;
			if (src == i) {
				int fl = fcntl(i, F_GETFD);
				if (fl >= 0)
					fcntl(i, F_SETFD, fl & ~FD_CLOEXEC);
			} else if (dup2(src, i) < 0) {
				child_fail(pipefd[1], errno);
			}
		}
		for (size_t i = 0; i < sp->n_keep_fds; i++) {
			int fl = fcntl(sp->keep_fds[i], F_GETFD);
			if (fl < 0 || fcntl(sp->keep_fds[i], F_SETFD, fl & ~FD_CLOEXEC) < 0)
				child_fail(pipefd[1], errno);
		}
		execvp(sp->argv[0], sp->argv);
		child_fail(pipefd[1], errno);
	}

	close(pipefd[1]);
	do
		n = read(pipefd[0], &err, sizeof err);
	while (n < 0 && errno == EINTR);
	close(pipefd[0]);
	if (n == sizeof err) {
		(void)waitpid(pid, NULL, 0);
		return -err;
	}

	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		err = -errno;
		kill(pid, SIGKILL);
		(void)waitpid(pid, NULL, 0);
		return err;
	}
	/* pidfd_open(2) sets no CLOEXEC flag by itself on older kernels. */
	fcntl(pidfd, F_SETFD, FD_CLOEXEC);
	*ret_pid = pid;
	*ret_pidfd = pidfd;
	return 0;
}

int vm_wait_exit(pid_t pid, int pidfd, uint64_t timeout_ns, int *status)
{
	uint64_t deadline = now_ns() + timeout_ns;
	int st = 0;

	if (pid <= 0)
		return 0;
	if (pidfd >= 0) {
		for (;;) {
			struct pollfd p = { .fd = pidfd, .events = POLLIN };
			int r = poll(&p, 1, vm_poll_ms(deadline));
			if (r < 0 && errno == EINTR)
				continue;
			if (r == 0)
				return -ETIMEDOUT;
			break;
		}
	}
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	if (status)
		*status = st;
	return 0;
}

/* A stream socket, and in SA the address of PATH, for a listen or a connect. */
static int unix_socket(const char *path, struct sockaddr_un *sa)
{
	int fd;

	if (strlen(path) >= sizeof sa->sun_path)
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	return fd < 0 ? -errno : fd;
}

int vm_unix_listen(const char *path, uid_t uid, gid_t gid)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = unix_socket(path, &sa);

	if (fd < 0)
		return fd;
	(void)unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
		return -errno;
	if ((uid || gid) && chown(path, uid, gid) < 0)
		return -errno;
	if (listen(fd, 4) < 0)
		return -errno;
	return TAKE_FD(fd);
}

int vm_unix_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	_cleanup_close_ int fd = unix_socket(path, &sa);

	if (fd < 0)
		return fd;
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
		return -errno;
	return TAKE_FD(fd);
}

int vm_unix_accept(int lfd, int pidfd, uint64_t deadline_ns)
{
	int r = vm_wait_readable(lfd, pidfd, deadline_ns);
	if (r < 0)
		return r;
	r = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	return r < 0 ? -errno : r;
}

const char *vm_kind_name(enum vm_kind kind)
{
	return kind == VM_KIND_FIRECRACKER ? "firecracker" : "qemu";
}

int vm_kind_from_name(const char *s, enum vm_kind *kind)
{
	if (str_eq(s, "qemu"))
		*kind = VM_KIND_QEMU;
	else if (str_eq(s, "firecracker"))
		*kind = VM_KIND_FIRECRACKER;
	else
		return -EINVAL;
	return 0;
}

const struct vmm_ops *vm_ops_for(enum vm_kind kind)
{
	return kind == VM_KIND_FIRECRACKER ? &vm_firecracker_ops : &vm_qemu_ops;
}

/* Is BIN runnable: an absolute/relative path that is executable, or found in $PATH? */
static bool have_binary(const char *bin)
{
	const char *path;

	if (str_empty(bin))
		return false;
	if (strchr(bin, '/'))
		return access(bin, X_OK) == 0;
	path = getenv("PATH");
	if (!path)
		return false;
	while (*path) {
		const char *end = strchrnul(path, ':');
		char buf[PATH_MAX];
		int len = (int)(end - path);
		if (len > 0 && snprintf(buf, sizeof buf, "%.*s/%s", len, path, bin) < (int)sizeof buf &&
		    access(buf, X_OK) == 0)
			return true;
		path = *end ? end + 1 : end;
	}
	return false;
}

int vm_pick_kind(const struct cfg_vm *cfg, enum vm_kind *kind)
{
	switch (cfg->vmm) {
	case VMM_QEMU:
		*kind = VM_KIND_QEMU;
		return 0;
	case VMM_FIRECRACKER:
		*kind = VM_KIND_FIRECRACKER;
		return 0;
	case VMM_AUTO:
	default:
		if (access("/dev/kvm", R_OK | W_OK) == 0 && have_binary(cfg->firecracker_bin) &&
		    have_binary(cfg->jailer_bin))
			*kind = VM_KIND_FIRECRACKER;
		else
			*kind = VM_KIND_QEMU;
		return 0;
	}
}

void vm_init(struct vm *vm, enum vm_kind kind, struct vm_spec *spec)
{
	memset(vm, 0, sizeof *vm);
	vm->ops = vm_ops_for(kind);
	vm->spec = *spec;
	memset(spec, 0, sizeof *spec);
	vm->pid = 0;
	vm->pidfd = -EBADF;
	vm->exit_status = -1;
	vm->log_fd = -EBADF;
}

void vm_free(struct vm *vm)
{
	if (vm->ops && vm->ops->stop)
		vm->ops->stop(vm);
	if (vm->pidfd >= 0)
		close(vm->pidfd);
	vm->pidfd = -EBADF;
	if (vm->log_fd >= 0)
		close(vm->log_fd);
	vm->log_fd = -EBADF;
	vm_spec_free(&vm->spec);
}

bool vm_alive(struct vm *vm)
{
	int st;
	pid_t r;

	if (vm->pid <= 0)
		return false;
	r = waitpid(vm->pid, &st, WNOHANG);
	if (r == 0)
		return true;
	if (r == vm->pid)
		vm->exit_status = st;
	vm->pid = 0;
	return false;
}

void vm_describe_exit(const struct vm *vm, char *buf, size_t len)
{
	int st = vm->exit_status;

	if (st < 0)
		snprintf(buf, len, "exited");
	else if (WIFEXITED(st))
		snprintf(buf, len, "exited with status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
	else
		snprintf(buf, len, "stopped");
}

void vm_last_log_line(const struct vm *vm, char *buf, size_t len)
{
	char tail[4096];
	off_t end;
	ssize_t n;

	buf[0] = 0;
	if (vm->log_fd < 0 || len == 0)
		return;
	end = lseek(vm->log_fd, 0, SEEK_END);
	if (end <= 0)
		return;
	off_t start = end > (off_t)sizeof tail - 1 ? end - (off_t)sizeof tail + 1 : 0;
	n = pread(vm->log_fd, tail, sizeof tail - 1, start);
	if (n <= 0)
		return;
	tail[n] = 0;
	while (n > 0 && (tail[n - 1] == '\n' || tail[n - 1] == '\r' || tail[n - 1] == ' '))
		tail[--n] = 0;
	char *line = strrchr(tail, '\n');
	line = line ? line + 1 : tail;
	/* QEMU prefixes its messages with its own name; the caller names it already. */
	const char *p = strstr(line, ": ");
	if (str_startswith(line, "qemu-system-") && p)
		line = (char *)p + 2;
	snprintf(buf, len, "%s", line);
}

const char *vm_error_text(struct vm *vm, int r, char *buf, size_t len)
{
	const char *e = vm->ops && vm->ops->last_error ? vm->ops->last_error(vm) : "";

	if (r == -ECHILD) {
		char how[128], line[512];
		vm_describe_exit(vm, how, sizeof how);
		vm_last_log_line(vm, line, sizeof line);
		snprintf(buf, len, "%s %s%s%s", vm->ops ? vm->ops->name : "VMM", how, line[0] ? ": " : "",
			 line);
	} else if (r == -EIO && e && e[0]) {
		snprintf(buf, len, "%s", e);
	} else if (r == -ENONET) {
		snprintf(buf, len, "network namespace '%s' does not exist (create it with 'drafter nat')",
			 vm->spec.cfg && vm->spec.cfg->netns ? vm->spec.cfg->netns : "");
	} else {
		snprintf(buf, len, "%s", strerror(-r));
	}
	return buf;
}

void vm_spec_free(struct vm_spec *spec)
{
	vm_machine_free(&spec->machine);
	free(spec->run_dir);
	free(spec->kernel);
	free(spec->initramfs);
	free(spec->state);
	free(spec->memory);
	for (size_t i = 0; i < VM_MAX_DISKS; i++)
		free(spec->disk_paths[i]);
	memset(spec, 0, sizeof *spec);
}
