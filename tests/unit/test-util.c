/*
 * Unit tests of the helpers every module shares: the whole-buffer I/O loops
 * of io.c (short transfers, end of file, interrupted calls, a gone peer),
 * the small-file reader, xasprintf, random_bytes, stop_signals and the
 * libnl error mapping.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <netlink/errno.h>

#include "core/io.h"
#include "core/nlerr.h"
#include "core/util.h"
#include "tests/tap.h"

#define BIG (1024 * 1024 + 333) /* many times a pipe's capacity, not a multiple of a page */

static char tmpdir[] = "/tmp/test-util.XXXXXX";

static char *tmp_path(const char *name)
{
	return xasprintf("%s/%s", tmpdir, name);
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)((i * 131u + seed) >> 3);
}

struct writer {
	int fd;
	const void *buf;
	size_t len;
	int r;
};

static void *writer_thread(void *arg)
{
	struct writer *w = arg;

	w->r = write_all(w->fd, w->buf, w->len);
	close(w->fd);
	return NULL;
}

/* A pipe takes 64 KiB at a time: both loops must carry on after short transfers. */
static void test_pipe_short_transfers(void)
{
	_cleanup_free_ unsigned char *out = xcalloc(1, BIG), *in = xcalloc(1, BIG + 10);
	int p[2];
	pthread_t th;

	fill(out, BIG, 7);
	if (pipe2(p, O_CLOEXEC) < 0) {
		ok(0, "pipe: %s", strerror(errno));
		return;
	}
	struct writer w = { .fd = p[1], .buf = out, .len = BIG };
	pthread_create(&th, NULL, writer_thread, &w);
	ssize_t n = read_full(p[0], in, BIG);
	pthread_join(th, NULL);
	is_int(w.r, 0, "write_all: 1 MiB through a pipe");
	is_int(n, BIG, "read_full: gets all of it");
	ok(memcmp(in, out, BIG) == 0, "read_full: the bytes are the ones written, in order");
	is_int(read_full(p[0], in, 10), 0, "read_full: at end of file reads 0");
	close(p[0]);
}

static void test_eof_and_errors(void)
{
	char buf[200];
	int p[2];

	if (pipe2(p, O_CLOEXEC) < 0)
		return;
	memset(buf, 'x', 100);
	is_int(write_all(p[1], buf, 100), 0, "write_all: 100 bytes");
	close(p[1]);
	is_int(read_full(p[0], buf, sizeof buf), 100, "read_full: a short count at end of file");
	close(p[0]);
	is_int(read_full(p[0], buf, 1), -EBADF, "read_full: a closed descriptor is -EBADF");
	is_int(write_all(p[0], buf, 1), -EBADF, "write_all: a closed descriptor is -EBADF");
	is_int(write_all(-1, buf, 0), 0, "write_all: nothing to write succeeds without a call");

	/* A full non-blocking pipe: the error comes back instead of a spin. */
	if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0)
		return;
	_cleanup_free_ char *big = xcalloc(1, BIG);
	is_int(write_all(p[1], big, BIG), -EAGAIN, "write_all: a full non-blocking pipe is -EAGAIN");
	close(p[0]);
	close(p[1]);
}

static void test_positioned(void)
{
	_cleanup_free_ char *path = tmp_path("data");
	_cleanup_free_ unsigned char *out = xcalloc(1, BIG), *in = xcalloc(1, BIG);
	_cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	struct stat st;

	if (fd < 0) {
		ok(0, "create '%s': %s", path, strerror(errno));
		return;
	}
	fill(out, BIG, 3);
	is_int(pwrite_all(fd, out, BIG, 4096), 0, "pwrite_all: at offset 4096");
	ok(fstat(fd, &st) == 0 && st.st_size == 4096 + BIG, "the file ends where the write ended");
	is_int(lseek(fd, 0, SEEK_CUR), 0, "pwrite_all: the file position is untouched");
	is_int(pread_full(fd, in, BIG, 4096), BIG, "pread_full: reads it all back");
	ok(memcmp(in, out, BIG) == 0, "pread_full: same bytes");
	is_int(pread_full(fd, in, 1000, 4096 + BIG - 10), 10, "pread_full: short only at end of file");
	ok(memcmp(in, out + BIG - 10, 10) == 0, "pread_full: the last 10 bytes");
	is_int(pread_full(fd, in, 10, 1ull << 40), 0, "pread_full: beyond the end reads 0");
	is_int(pread_exact(fd, in, 100, 4096 + 5), 0, "pread_exact: a complete range is 0");
	ok(memcmp(in, out + 5, 100) == 0, "pread_exact: the right bytes");
	is_int(pread_exact(fd, in, 100, 4096 + BIG - 50), -ENODATA,
	       "pread_exact: a range past the end is -ENODATA");
	is_int(pread_full(fd, in, 1, 0), 1, "pread_full: the hole before the data reads");
	is_int(in[0], 0, "pread_full: as zero");
	unlink(path);
}

/* A signal without SA_RESTART makes a blocked read fail with EINTR; read_full must resume. */
static volatile sig_atomic_t got_signal;
static void on_usr1(int sig)
{
	(void)sig;
	got_signal = 1;
}

struct reader {
	int fd;
	char buf[64];
	ssize_t r;
	pid_t tid;
	int ready[2];
};

static void *reader_thread(void *arg)
{
	struct reader *rd = arg;

	rd->tid = (pid_t)syscall(SYS_gettid);
	(void)!write(rd->ready[1], "r", 1);
	rd->r = read_full(rd->fd, rd->buf, sizeof rd->buf);
	return NULL;
}

/* True once thread TID sleeps in the kernel (state S in its stat line). */
static bool thread_sleeping(pid_t tid)
{
	char path[64], line[512];
	ssize_t n;

	snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
	n = read_small_file(path, line, sizeof line);
	if (n <= 0)
		return false;
	const char *close_paren = strrchr(line, ')');
	return close_paren && close_paren[1] == ' ' && close_paren[2] == 'S';
}

static void test_eintr(void)
{
	struct sigaction sa = { .sa_handler = on_usr1 }; /* no SA_RESTART */
	struct reader rd = { .r = -1 };
	int p[2];
	pthread_t th;
	char c;
	int waits = 0;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	if (pipe2(p, O_CLOEXEC) < 0 || pipe2(rd.ready, O_CLOEXEC) < 0)
		return;
	rd.fd = p[0];
	pthread_create(&th, NULL, reader_thread, &rd);
	(void)!read(rd.ready[0], &c, 1);
	/* The reader has to be inside read() when the signal comes: wait until it sleeps there. */
	while (!thread_sleeping(rd.tid) && waits++ < 1000000)
		sched_yield();
	pthread_kill(th, SIGUSR1);
	while (!got_signal)
		sched_yield();
	is_int(write_all(p[1], "0123456789abcdef0123456789abcdef", 32), 0, "write the first half");
	is_int(write_all(p[1], "0123456789ABCDEF0123456789ABCDEF", 32), 0, "then the second half");
	pthread_join(th, NULL);
	ok(got_signal, "the reader was interrupted by a signal");
	is_int(rd.r, 64, "read_full: resumed after EINTR and read everything");
	ok(memcmp(rd.buf + 32, "0123456789ABCDEF", 16) == 0, "read_full: in order");
	close(p[0]);
	close(p[1]);
	close(rd.ready[0]);
	close(rd.ready[1]);
	signal(SIGUSR1, SIG_DFL);
}

static void test_send(void)
{
	_cleanup_free_ unsigned char *out = xcalloc(1, BIG), *in = xcalloc(1, BIG);
	int sv[2];
	pthread_t th;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return;
	fill(out, BIG, 11);
	/* through a socket buffer much smaller than the data */
	struct writer w = { .fd = sv[0], .buf = out, .len = BIG, .r = 1 };
	pthread_create(&th, NULL, writer_thread, &w); /* write_all on a socket works too */
	is_int(read_full(sv[1], in, BIG), BIG, "read_full: all of a socket's stream");
	pthread_join(th, NULL);
	is_int(w.r, 0, "write_all: through a socket");
	ok(memcmp(in, out, BIG) == 0, "the stream arrived intact");
	close(sv[1]);

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return;
	is_int(send_all(sv[0], out, 1000), 0, "send_all: 1000 bytes");
	is_int(read_full(sv[1], in, 1000), 1000, "arrive");
	close(sv[1]);
	/* SIGPIPE's default action would end this test here. */
	is_int(send_all(sv[0], out, 1000), -EPIPE, "send_all: a gone peer is -EPIPE, no SIGPIPE");
	close(sv[0]);
}

static void test_small_file(void)
{
	_cleanup_free_ char *path = tmp_path("value");
	_cleanup_free_ char *missing = tmp_path("missing");
	char buf[16];
	FILE *f;

	f = fopen(path, "we");
	if (!f)
		return;
	fputs("4096\t87380 \n\n", f);
	fclose(f);
	is_int(read_small_file(path, buf, sizeof buf), 10, "read_small_file: length without trailing blanks");
	is_str(buf, "4096\t87380", "read_small_file: inner blanks stay, trailing ones go");
	is_int(read_small_file(path, buf, 5), 4, "read_small_file: cut to the buffer");
	is_str(buf, "4096", "read_small_file: and terminated");
	is_int(read_small_file(path, buf, 0), -EINVAL, "read_small_file: no room is -EINVAL");
	is_int(read_small_file(missing, buf, sizeof buf), -ENOENT, "read_small_file: a missing file is -ENOENT");
	ok(read_small_file("/proc/sys/kernel/ostype", buf, sizeof buf) > 0 && strcmp(buf, "Linux") == 0,
	   "read_small_file: a procfs value");
	unlink(path);
}

static void test_xasprintf(void)
{
	_cleanup_free_ char *s = xasprintf("%s-%d-%05.2f", "disk", 42, 2.25);
	_cleanup_free_ char *e = xasprintf("%s", "");

	is_str(s, "disk-42-02.25", "xasprintf: formats");
	is_str(e, "", "xasprintf: an empty result is an empty string");
}

static void test_random(void)
{
	uint8_t a[32] = { 0 }, b[32] = { 0 }, zero[32] = { 0 };

	is_int(random_bytes(a, sizeof a), 0, "random_bytes: 32 bytes");
	is_int(random_bytes(b, sizeof b), 0, "random_bytes: 32 more");
	ok(memcmp(a, zero, sizeof a) != 0 && memcmp(a, b, sizeof a) != 0,
	   "random_bytes: filled, and not the same twice");
	is_int(random_bytes(NULL, 0), 0, "random_bytes: nothing asked, nothing done");
}

static void test_stop_signals(void)
{
	sigset_t m;

	sigfillset(&m);
	stop_signals(&m);
	ok(sigismember(&m, SIGINT) == 1 && sigismember(&m, SIGTERM) == 1 && sigismember(&m, SIGHUP) == 1,
	   "stop_signals: SIGINT, SIGTERM and SIGHUP");
	ok(sigismember(&m, SIGPIPE) == 0 && sigismember(&m, SIGCHLD) == 0 && sigismember(&m, SIGUSR1) == 0,
	   "stop_signals: and nothing else that was in the set before");
}

static void test_nlerr(void)
{
	is_int(nlerr_to_errno(0), 0, "nlerr: 0 stays 0");
	is_int(nlerr_to_errno(-NLE_EXIST), -EEXIST, "nlerr: -NLE_EXIST → -EEXIST");
	is_int(nlerr_to_errno(NLE_EXIST), -EEXIST, "nlerr: either sign");
	is_int(nlerr_to_errno(-NLE_OBJ_NOTFOUND), -ENOENT, "nlerr: object not found → -ENOENT");
	is_int(nlerr_to_errno(-NLE_NODEV), -ENODEV, "nlerr: no device → -ENODEV");
	is_int(nlerr_to_errno(-NLE_NOACCESS), -EPERM, "nlerr: no access → -EPERM");
	is_int(nlerr_to_errno(-NLE_NOADDR), -EADDRNOTAVAIL, "nlerr: no address → -EADDRNOTAVAIL");
	is_int(nlerr_to_errno(-NLE_AF_NOSUPPORT), -EAFNOSUPPORT, "nlerr: family → -EAFNOSUPPORT");
	is_int(nlerr_to_errno(-NLE_PARSE_ERR), -EIO, "nlerr: a code without errno twin → -EIO");
}

static int thread_nice(void)
{
	errno = 0;
	return getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
}

struct nice_result {
	int lowered, kept, after_lower, after_keep;
};

static void *nice_thread(void *arg)
{
	struct nice_result *res = arg;

	res->lowered = thread_lower_priority(thread_nice() + 5);
	res->after_lower = thread_nice();
	/* A request for a higher priority than the thread has leaves it as it is. */
	res->kept = thread_lower_priority(res->after_lower - 2);
	res->after_keep = thread_nice();
	return NULL;
}

static void test_thread_priority(void)
{
	struct nice_result res = { 0 };
	int before = thread_nice();
	pthread_t t;

	if (before > 14) {
		skip("this process already runs at nice 15 or lower");
		return;
	}
	ok(pthread_create(&t, NULL, nice_thread, &res) == 0 && pthread_join(t, NULL) == 0, "a thread lowers its priority");
	is_int(res.lowered, 0, "thread_lower_priority succeeds");
	is_int(res.after_lower, before + 5, "the thread runs 5 nice steps lower");
	is_int(res.kept, 0, "asking for a higher priority is no error");
	is_int(res.after_keep, before + 5, "and changes nothing");
	is_int(thread_nice(), before, "the other threads keep theirs");
}

static void *sleeper(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

/* A child of two threads, all moved to SCHED_IDLE; then one that is gone. */
static void test_process_to_idle(void)
{
	char path[64], c = 0;
	int p[2], idle = 0, threads = 0;
	pid_t pid;

	if (pipe(p) < 0) {
		skip("no pipe");
		return;
	}
	pid = fork();
	if (pid == 0) {
		pthread_t t;
		if (pthread_create(&t, NULL, sleeper, NULL) != 0)
			_exit(1);
		(void)write_all(p[1], "r", 1);
		sleeper(NULL);
	}
	close(p[1]);
	ok(pid > 0 && read(p[0], &c, 1) == 1, "a child with a second thread runs");
	close(p[0]);
	is_int(process_to_idle(pid), 2, "process_to_idle moves both threads");
	snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
	DIR *d = opendir(path);
	for (struct dirent *e; d && (e = readdir(d)) != NULL;)
		if (e->d_name[0] != '.') {
			threads++;
			idle += sched_getscheduler(atoi(e->d_name)) == SCHED_IDLE;
		}
	if (d)
		closedir(d);
	is_int(idle, threads, "every thread of the child is SCHED_IDLE");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	is_int(process_to_idle(pid), -ENOENT, "a process that is gone: -ENOENT");
}

/* next_data over a sparse file: 4 KiB of data at 64 KiB and at 192 KiB of 256 KiB. */
static void test_next_data(void)
{
	_cleanup_free_ char *path = tmp_path("sparse");
	char page[4096];
	uint64_t data = 0, hole = 0;
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	memset(page, 'x', sizeof page);
	if (!ok(fd >= 0 && ftruncate(fd, 256 << 10) == 0 && pwrite(fd, page, 4096, 64 << 10) == 4096 &&
	        pwrite(fd, page, 4096, 192 << 10) == 4096, "next_data: a sparse file")) {
		if (fd >= 0)
			close(fd);
		return;
	}
	if (lseek(fd, 0, SEEK_DATA) == 0) {
		skip("the temporary directory's file system keeps no holes");
		close(fd);
		return;
	}
	ok(next_data(fd, 0, 256 << 10, &data, &hole) == 1 && data == 64 << 10 && hole > data &&
	       hole <= 192 << 10, "next_data: from a hole, the first data range");
	ok(next_data(fd, 0, (64 << 10) + 100, &data, &hole) == 1 && hole == (64 << 10) + 100,
	   "next_data: the range ends at END");
	is_int(next_data(fd, 0, 64 << 10, &data, &hole), 0, "next_data: only a hole before END");
	ok(next_data(fd, (192 << 10) + 10, 256 << 10, &data, &hole) == 1 && data == (192 << 10) + 10,
	   "next_data: from inside data, data starts there");
	is_int(next_data(fd, 200 << 10, 256 << 10, &data, &hole), 0, "next_data: only the hole at the end");
	is_int(next_data(fd, 10, 10, &data, &hole), 0, "next_data: an empty range");
	is_int(next_data(-1, 0, 10, &data, &hole), -EBADF, "next_data: a bad descriptor is -EBADF");
	close(fd);
	unlink(path);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	test_pipe_short_transfers();
	test_eof_and_errors();
	test_positioned();
	test_eintr();
	test_send();
	test_small_file();
	test_xasprintf();
	test_random();
	test_stop_signals();
	test_nlerr();
	test_thread_priority();
	test_process_to_idle();
	test_next_data();
	rmdir(tmpdir);
	return done_testing();
}
