/*
 * FUSE exposure for real: mount, then a separate process (store-mmap-writer)
 * reads, writes and maps the device files the way a VMM would. Checks that
 * MAP_SHARED writes reach the dirty tracker once drafter fsyncs the file,
 * that a destination's missing block blocks the reader until it arrives,
 * and that nothing stays mounted. Needs root and /dev/fuse.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <grp.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/store/store.h"
#include "tests/tap.h"

#define BS (64u * 1024u)
#define NB 64u

extern char **environ;
static char helper[512];
static char dir[] = "/tmp/test-store-fuse.XXXXXX";

static pid_t spawn_helper(const char *file, const char *mode, uint64_t off, uint64_t len, int byte)
{
	char o[32], l[32], b[8];
	pid_t pid;

	snprintf(o, sizeof(o), "%llu", (unsigned long long)off);
	snprintf(l, sizeof(l), "%llu", (unsigned long long)len);
	snprintf(b, sizeof(b), "%d", byte);
	char *argv[] = {helper, (char *)file, (char *)mode, o, l, b, NULL};
	if (posix_spawn(&pid, helper, NULL, NULL, argv, environ) != 0)
		return -1;
	return pid;
}

/* Start a "-hold" helper; returns once it has done its write, with *IN to end it. */
static pid_t spawn_held(const char *file, const char *mode, uint64_t off, uint64_t len, int byte,
                        int *in)
{
	char o[32], l[32], b[8], line[16];
	int to[2], from[2];
	pid_t pid;
	posix_spawn_file_actions_t fa;

	snprintf(o, sizeof(o), "%llu", (unsigned long long)off);
	snprintf(l, sizeof(l), "%llu", (unsigned long long)len);
	snprintf(b, sizeof(b), "%d", byte);
	char *argv[] = {helper, (char *)file, (char *)mode, o, l, b, NULL};
	if (pipe2(to, O_CLOEXEC) < 0 || pipe2(from, O_CLOEXEC) < 0)
		return -1;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, to[0], 0);
	posix_spawn_file_actions_adddup2(&fa, from[1], 1);
	int r = posix_spawn(&pid, helper, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(to[0]);
	close(from[1]);
	if (r != 0) {
		close(to[1]);
		close(from[0]);
		return -1;
	}
	ssize_t n = read(from[0], line, sizeof(line));
	close(from[0]);
	*in = to[1];
	return n > 0 && !strncmp(line, "ready", 5) ? pid : -pid;
}

static int wait_helper(pid_t pid)
{
	int st;

	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int run_helper(const char *file, const char *mode, uint64_t off, uint64_t len, int byte)
{
	return wait_helper(spawn_helper(file, mode, off, len, byte));
}

/* Whether MNT_PATH is a mount point now (/proc/mounts escapes blanks as \040). */
static bool mounted(const char *mnt_path)
{
	char line[4096], mnt[2048];
	bool found = false;
	size_t o = 0;

	for (const char *p = mnt_path; *p && o + 5 < sizeof(mnt); p++) {
		if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\\')
			o +=
			    (size_t)snprintf(mnt + o, sizeof(mnt) - o, "\\%03o", (unsigned char)*p);
		else
			mnt[o++] = *p;
	}
	mnt[o] = 0;
	FILE *f = fopen("/proc/mounts", "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		char *sp = strchr(line, ' ');
		if (!sp)
			continue;
		char *mp = sp + 1, *end = strchr(mp, ' ');
		if (end && (size_t)(end - mp) == strlen(mnt) && !strncmp(mp, mnt, strlen(mnt)))
			found = true;
	}
	fclose(f);
	return found;
}

/* Open PATH read-write in a child running as UID:UID; 0 or -errno. */
static int open_as(const char *path, uid_t uid)
{
	int st;
	pid_t pid = fork();

	if (pid == 0) {
		if (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0)
			_exit(100);
		int fd = open(path, O_RDWR | O_CLOEXEC);
		_exit(fd >= 0 ? 0 : errno);
	}
	if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st))
		return -EIO;
	return -WEXITSTATUS(st);
}

static bool bytes_are(struct store_device *d, uint64_t off, size_t len, int byte)
{
	_cleanup_free_ unsigned char *buf = malloc(len);
	/* read below the device's caches: what the stack really holds */
	if (store_read_at(store_device_stack(d), buf, len, off) != (ssize_t)len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (buf[i] != byte)
			return false;
	return true;
}

static struct store_device *make_dev(const char *name, bool destination)
{
	char path[600];
	struct store_provider *f = NULL;
	struct store_device *d = NULL;

	snprintf(path, sizeof(path), "%s/%s.img", dir, name);
	if (store_file_open(path, STORE_FILE_CREATE, NB * BS, &f) < 0)
		return NULL;
	struct store_device_opts o = {.name = name, .block_size = BS, .destination = destination};
	if (store_device_new(&o, f, &d) < 0) {
		store_close(f);
		return NULL;
	}
	return d;
}

static void test_source(void)
{
	struct store_device *devs[2] = {make_dev("memory", false), make_dev("disk", false)};
	struct store_expose *e = NULL;
	char mdir[600];

	snprintf(mdir, sizeof(mdir), "%s/mnt", dir);
	struct store_expose_opts o = {
	    .kind = STORE_EXPOSE_FUSE, .mount_dir = mdir, .instance = "vm1"};
	int r = store_expose_new(&o, devs, 2, &e);
	is_int(r, 0, "fuse: expose two devices");
	if (r < 0) {
		store_device_free(devs[0]);
		store_device_free(devs[1]);
		return;
	}
	_cleanup_free_ char *mnt = strdup(store_expose_mountpoint(e));
	char *mem = strdup(store_expose_path(e, 0)), *disk = strdup(store_expose_path(e, 1));
	ok(mounted(mnt), "fuse: mounted at %s", mnt);
	is_str(store_expose_kind_name(e), "fuse", "fuse: backend name");
	struct stat st;
	ok(stat(mem, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == (off_t)(NB * BS),
	   "fuse: one regular file per device, with the device's size");

	struct store_tracker *t = store_device_tracker(devs[0]);
	struct store_bitmap dirty;
	store_tracker_track_all(t);

	/* write() from another process reaches the device synchronously */
	int hin;
	pid_t hp = spawn_held(mem, "write-hold", 3 * BS + 10, 5000, 0x5a, &hin);
	ok(hp > 0, "fuse: a separate process writes (and keeps the file open)");
	ok(bytes_are(devs[0], 3 * BS + 10, 5000, 0x5a),
	   "fuse: without writeback cache the write is in the device at once");
	close(hin);
	wait_helper(hp > 0 ? hp : -hp);
	store_tracker_sync(t, &dirty);
	ok(store_bitmap_count(&dirty) == 1 && store_bitmap_test(&dirty, 3),
	   "fuse: and block 3 is dirty");
	store_bitmap_free(&dirty);

	/* what the device holds is what another process reads */
	unsigned char pat[BS];
	memset(pat, 0x33, sizeof(pat));
	store_device_write(devs[1], pat, BS, 7 * BS);
	is_int(run_helper(disk, "read", 7 * BS, BS, 0x33), 0,
	       "fuse: a separate process reads device data");
	/* a write that bypasses the exposure: the kernel's cached copy is stale until told */
	memset(pat, 0x44, sizeof(pat));
	store_device_write(devs[1], pat, BS, 7 * BS);
	is_int(run_helper(disk, "read", 7 * BS, BS, 0x33), 0,
	       "fuse: a direct write leaves the cached pages as they were");
	store_device_notify_changed(devs[1], 7 * BS, BS);
	is_int(run_helper(disk, "read", 7 * BS, BS, 0x44), 0,
	       "fuse: once notified, readers see the direct write");

	/* MAP_SHARED writes by another process, then fsync from drafter */
	store_tracker_track_all(t);
	store_tracker_sync(t, &dirty);
	store_bitmap_free(&dirty);
	store_tracker_track_all(t);
	int in1, in2;
	pid_t p1 = spawn_held(mem, "mmap-hold", 5 * BS, 4096, 0xa1, &in1);
	pid_t p2 = spawn_held(mem, "mmap-hold", 9 * BS + 8192, BS, 0xb2, &in2);
	ok(p1 > 0 && p2 > 0,
	   "fuse: two processes write through MAP_SHARED and keep the file mapped");
	uint64_t before = store_tracker_dirty_count(t);
	diag(
	    "dirty blocks seen before the fsync, file still mapped: %llu (kernel writeback timing)",
	    (unsigned long long)before);
	is_int(store_expose_flush(e, 0), 0, "fuse: drafter fsyncs the memory file");
	store_tracker_sync(t, &dirty);
	ok(store_bitmap_test(&dirty, 5) && store_bitmap_test(&dirty, 9) &&
	       store_bitmap_test(&dirty, 10),
	   "fuse: after fsync the tracker has the mapped writes (blocks 5, 9, 10)");
	is_int(store_bitmap_count(&dirty), 3, "fuse: and nothing else");
	store_bitmap_free(&dirty);
	ok(bytes_are(devs[0], 5 * BS, 4096, 0xa1) && bytes_are(devs[0], 9 * BS + 8192, BS, 0xb2),
	   "fuse: the mapped bytes are in the device while the writers still run");
	close(in1);
	close(in2);
	is_int(wait_helper(p1 > 0 ? p1 : -p1), 0, "fuse: first writer ends cleanly");
	is_int(wait_helper(p2 > 0 ? p2 : -p2), 0, "fuse: second writer ends cleanly");
	is_int(store_expose_flush_all(e), 0, "fuse: flush all");

	is_int(run_helper(mem, "write", NB * BS, 10, 1), 2, "fuse: a write past the end fails");
	int fd = open(mem, O_RDWR | O_CLOEXEC);
	ok(fd >= 0 && ftruncate(fd, 5) < 0 && errno == EPERM, "fuse: a device cannot be resized");
	ok(fd >= 0 && ftruncate(fd, (off_t)(NB * BS)) == 0,
	   "fuse: truncating to its own size is allowed");
	if (fd >= 0)
		close(fd);

	/* a jailed VMM runs as another user: chown/chmod of a device file work */
	ok(open_as(mem, 4321) == -EACCES, "fuse: another user cannot open a device file at first");
	ok(chown(mem, 4321, 4321) == 0 && chmod(mem, 0640) == 0,
	   "fuse: chown and chmod a device file");
	ok(stat(mem, &st) == 0 && st.st_uid == 4321 && st.st_gid == 4321 &&
	       (st.st_mode & 07777) == 0640,
	   "fuse: stat shows the new owner and mode");
	is_int(open_as(mem, 4321), 0, "fuse: now that user can open it");

	store_expose_free(e);
	ok(!mounted(mnt), "fuse: unmounted on close");
	ok(access(mnt, F_OK) < 0, "fuse: mount point removed");
	store_device_free(devs[0]);
	store_device_free(devs[1]);
	free(mem);
	free(disk);
}

static void test_writeback(void)
{
	struct store_device *d = make_dev("memory", false);
	struct store_expose *e = NULL;
	char mdir[600];

	snprintf(mdir, sizeof(mdir), "%s/mnt", dir);
	struct store_expose_opts o = {.kind = STORE_EXPOSE_FUSE,
	                              .mount_dir = mdir,
	                              .instance = "wb",
	                              .writeback_cache = true};
	if (!ok(store_expose_new(&o, &d, 1, &e) == 0,
	        "fuse writeback: expose with writeback cache")) {
		store_device_free(d);
		return;
	}
	char *mem = strdup(store_expose_path(e, 0));
	store_tracker_track_all(store_device_tracker(d));
	int in;
	pid_t pid = spawn_held(mem, "write-hold", 2 * BS, 4096, 0x42, &in);
	ok(pid > 0, "fuse writeback: a separate process writes and keeps the file open");
	uint64_t seen = store_tracker_dirty_count(store_device_tracker(d));
	diag("with writeback cache, blocks dirty right after write(): %llu (0: the kernel held it)",
	     (unsigned long long)seen);
	is_int(store_expose_flush(e, 0), 0, "fuse writeback: fsync");
	ok(store_tracker_dirty_count(store_device_tracker(d)) == 1 &&
	       bytes_are(d, 2 * BS, 4096, 0x42),
	   "fuse writeback: after fsync the write is in the device and dirty");
	close(in);
	is_int(wait_helper(pid > 0 ? pid : -pid), 0, "fuse writeback: writer ends cleanly");
	const char *mnt = strdup(store_expose_mountpoint(e));
	store_expose_free(e);
	ok(!mounted(mnt), "fuse writeback: unmounted");
	free((void *)mnt);
	free(mem);
	store_device_free(d);
}

struct reqs {
	pthread_mutex_t lock;
	int n;
	uint64_t last;
	int efd; /* counts requests, so the test can poll it with the child's pidfd */
};

static void on_request(void *ctx, struct store_device *dev, uint64_t block)
{
	struct reqs *r = ctx;

	(void)dev;
	pthread_mutex_lock(&r->lock);
	r->n++;
	r->last = block;
	pthread_mutex_unlock(&r->lock);
	uint64_t one = 1;
	(void)!write(r->efd, &one, sizeof(one));
}

/* Wait until a request arrives (true) or the child exits first (false). */
static bool request_or_exit(struct reqs *r, pid_t pid)
{
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	struct pollfd p[2] = {{.fd = r->efd, .events = POLLIN}, {.fd = pfd, .events = POLLIN}};
	uint64_t v;

	while (poll(p, pfd >= 0 ? 2 : 1, -1) < 0 && errno == EINTR)
		;
	if (pfd >= 0)
		close(pfd);
	if (p[0].revents & POLLIN) {
		(void)!read(r->efd, &v, sizeof(v));
		return true;
	}
	return false;
}

/* D exposed through FUSE as INSTANCE under the test's mount dir; NULL (D freed) on failure. */
static struct store_expose *expose_dest(struct store_device *d, const char *instance, const char *what)
{
	struct store_expose *e = NULL;
	char mdir[600];

	snprintf(mdir, sizeof(mdir), "%s/mnt", dir);
	struct store_expose_opts o = {.kind = STORE_EXPOSE_FUSE, .mount_dir = mdir, .instance = instance};
	if (!ok(store_expose_new(&o, &d, 1, &e) == 0, "%s: expose a destination device", what)) {
		store_device_free(d);
		return NULL;
	}
	return e;
}

/* A destination device exposed through FUSE, its requests counted in RQ, its file at MEM. */
struct dest_fix {
	struct store_device *d;
	struct store_expose *e;
	struct reqs rq;
	char *mem;
};

static bool dest_setup(struct dest_fix *f, const char *name, const char *instance, const char *what)
{
	f->d = make_dev(name, true);
	f->e = expose_dest(f->d, instance, what);
	if (!f->e)
		return false;
	f->rq = (struct reqs){.lock = PTHREAD_MUTEX_INITIALIZER, .efd = eventfd(0, EFD_CLOEXEC)};
	store_wait_set_request(store_device_wait(f->d), on_request, &f->rq);
	f->mem = strdup(store_expose_path(f->e, 0));
	return true;
}

/* Unexpose and free what dest_setup made. */
static void dest_teardown(struct dest_fix *f)
{
	store_expose_free(f->e);
	free(f->mem);
	store_device_free(f->d);
	close(f->rq.efd);
}

static void test_destination(void)
{
	struct dest_fix f;
	unsigned char blk[BS];

	if (!dest_setup(&f, "memory", "dest", "fuse dest"))
		return;
	pid_t pid = spawn_helper(f.mem, "read", 12 * BS + 100, 1000, 0x77);
	bool asked = request_or_exit(&f.rq, pid);
	pthread_mutex_lock(&f.rq.lock);
	uint64_t last = f.rq.last;
	pthread_mutex_unlock(&f.rq.lock);
	ok(asked && last >= 12, "fuse dest: the reader's access asks for the missing block (%llu)",
	   (unsigned long long)last);
	/* the kernel may read ahead: deliver whatever it asks for, block 12 with 0x77 */
	for (uint64_t b = 0; b < NB; b++) {
		memset(blk, b == 12 ? 0x77 : 0, BS);
		store_device_deliver(f.d, b, blk, BS);
	}
	is_int(wait_helper(pid), 0, "fuse dest: the reader resumes with the delivered data");

	/* block 12 is in the page cache now; a dirty list must not leave it stale */
	uint64_t inv[] = {12, 20};
	is_int(store_wait_invalidate(store_device_wait(f.d), inv, 2), 0,
	       "fuse dest: invalidate cached blocks 12 and 20");
	store_expose_settle(f.e); /* their pages go from the dropper: gone now */
	/* drain requests the read-ahead of the first reader may have left */
	uint64_t v;
	int fl = fcntl(f.rq.efd, F_GETFL);
	fcntl(f.rq.efd, F_SETFL, fl | O_NONBLOCK);
	(void)!read(f.rq.efd, &v, sizeof(v));
	fcntl(f.rq.efd, F_SETFL, fl);
	pid = spawn_helper(f.mem, "read", 12 * BS + 100, 1000, 0x99);
	ok(request_or_exit(&f.rq, pid), "fuse dest: reading an invalidated block asks for it again");
	memset(blk, 0x99, BS);
	store_device_deliver(f.d, 12, blk, BS);
	is_int(wait_helper(pid), 0,
	       "fuse dest: a reader waits for and sees the re-sent version, not cached pages");

	store_wait_fail(store_device_wait(f.d), -EIO);
	is_int(run_helper(f.mem, "read", 20 * BS, 10, 0), 2,
	       "fuse dest: after a failure a missing block reads as EIO");
	is_int(run_helper(f.mem, "read", 12 * BS + 100, 1000, 0x99), 0,
	       "fuse dest: present blocks still read");
	const char *mnt = strdup(store_expose_mountpoint(f.e));
	dest_teardown(&f);
	ok(!mounted(mnt), "fuse dest: unmounted");
	free((void *)mnt);
}

struct inval_arg {
	struct store_wait *w;
	uint64_t blocks[2];
	size_t n;
	int done; /* atomic */
};

static void *inval_thread(void *arg)
{
	struct inval_arg *a = arg;

	(void)store_wait_invalidate(a->w, a->blocks, a->n);
	__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Whether A's invalidation returns within two seconds. */
static bool inval_quick(struct inval_arg *a, pthread_t *th)
{
	bool quick = false;

	pthread_create(th, NULL, inval_thread, a);
	for (int i = 0; i < 200 && !quick; i++) {
		quick = __atomic_load_n(&a->done, __ATOMIC_ACQUIRE);
		if (!quick)
			usleep(10000);
	}
	return quick;
}

/*
 * A dirty list for blocks that a reader is waiting for (its read holds the
 * kernel's pages of them locked): the thread that applies the list also
 * delivers the blocks, so it must not wait for that reader.
 */
static void test_dest_inval_pending(void)
{
	struct dest_fix f;
	unsigned char blk[BS];

	if (!dest_setup(&f, "memory2", "dest2", "fuse dest inval"))
		return;
	pid_t pid = spawn_helper(f.mem, "read", 12 * BS + 100, 1000, 0x55);
	ok(request_or_exit(&f.rq, pid), "fuse dest inval: a reader waits for missing block 12");
	struct inval_arg a = {.w = store_device_wait(f.d), .blocks = {12, 13}, .n = 2};
	pthread_t th;
	ok(inval_quick(&a, &th),
	   "fuse dest inval: a dirty list for blocks a reader waits for does not wait for it");
	for (uint64_t b = 0; b < NB; b++) {
		memset(blk, b == 12 ? 0x55 : 0, BS);
		store_device_deliver(f.d, b, blk, BS);
	}
	pthread_join(th, NULL);
	is_int(wait_helper(pid), 0, "fuse dest inval: the reader gets the block delivered after the list");
	dest_teardown(&f);
}

/*
 * A dirty list for a block that has arrived but whose pages a read holds
 * locked, the read waiting for another block: the kernel drops the pages
 * only after the read, and the read waits for the thread applying the list
 * to deliver that other block.
 */
static void test_dest_inval_batch(void)
{
	struct dest_fix f;
	unsigned char blk[BS];

	if (!dest_setup(&f, "memory3", "dest3", "fuse dest batch"))
		return;
	memset(blk, 0x66, BS);
	store_device_deliver(f.d, 11, blk, BS);
	/* one read of blocks 11 and 12: the kernel locks the pages of both for it */
	pid_t pid = spawn_helper(f.mem, "read", 11 * BS, 2 * BS, 0x66);
	ok(request_or_exit(&f.rq, pid), "fuse dest batch: a read of blocks 11-12 waits for 12");
	struct inval_arg a = {.w = store_device_wait(f.d), .blocks = {11}, .n = 1};
	pthread_t th;
	ok(inval_quick(&a, &th),
	   "fuse dest batch: a dirty list for block 11, under that read, does not wait for it");
	for (uint64_t b = 0; b < NB; b++) {
		memset(blk, b == 11 || b == 12 ? 0x66 : 0, BS);
		store_device_deliver(f.d, b, blk, BS);
	}
	pthread_join(th, NULL);
	is_int(wait_helper(pid), 0, "fuse dest batch: the read completes once its blocks came");
	memset(blk, 0x67, BS);
	a.blocks[0] = 11;
	is_int(store_wait_invalidate(store_device_wait(f.d), a.blocks, 1), 0,
	       "fuse dest batch: block 11 listed again");
	store_device_deliver(f.d, 11, blk, BS);
	store_expose_settle(f.e);
	is_int(run_helper(f.mem, "read", 11 * BS, BS, 0x67), 0,
	       "fuse dest batch: after the settle a read sees block 11's new version");
	dest_teardown(&f);
}

static void test_errors_and_stale(void)
{
	struct store_device *d = make_dev("memory", false);
	struct store_device *twice[2] = {d, d};
	struct store_expose *e = NULL, *live = NULL;
	char mdir[600], file[600];

	snprintf(file, sizeof(file), "%s/memory.img", dir);
	/* a blank in the path: /proc/mounts escapes it, the cleanup must not mind */
	snprintf(mdir, sizeof(mdir), "%s/mount dir", dir);
	struct store_expose_opts o = {
	    .kind = STORE_EXPOSE_FUSE, .mount_dir = file, .instance = "x"};
	is_int(store_expose_new(&o, &d, 1, &e), -ENOTDIR,
	       "fuse errors: a mount dir below a file is ENOTDIR");
	o.mount_dir = mdir;
	is_int(store_expose_new(&o, twice, 2, &e), -EEXIST,
	       "fuse errors: two devices with one name are refused");
	char xdir[700];
	snprintf(xdir, sizeof(xdir), "%s/x", mdir);
	ok(!mounted(xdir) && access(xdir, F_OK) < 0,
	   "fuse errors: nothing left mounted or created");

	/* a drafter that dies without unmounting leaves a dead mount */
	pid_t pid = fork();
	if (pid == 0) {
		struct store_expose *ce = NULL;
		struct store_expose_opts co = {
		    .kind = STORE_EXPOSE_FUSE, .mount_dir = mdir, .instance = "crashed"};
		_exit(store_expose_new(&co, &d, 1, &ce) == 0 ? 0 : 1);
	}
	int st;
	waitpid(pid, &st, 0);
	char crashed[700];
	snprintf(crashed, sizeof(crashed), "%s/crashed", mdir);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0 && mounted(crashed),
	   "fuse stale: a crashed process left its mount");
	struct stat sb;
	ok(stat(crashed, &sb) < 0 && errno == ENOTCONN, "fuse stale: which answers ENOTCONN");
	o.instance = "alive";
	is_int(store_expose_new(&o, &d, 1, &live), 0, "fuse stale: a live exposure next to it");
	is_int(store_expose_cleanup_stale(mdir), 1,
	       "fuse stale: cleanup removes exactly the dead one");
	ok(!mounted(crashed) && access(crashed, F_OK) < 0,
	   "fuse stale: dead mount and mount point gone");
	ok(live && mounted(store_expose_mountpoint(live)),
	   "fuse stale: the live mount is untouched");
	struct store_expose *again = NULL;
	is_int(store_expose_new(&o, &d, 1, &again), -EBUSY,
	       "fuse errors: an instance name in use is EBUSY");
	ok(live && mounted(store_expose_mountpoint(live)), "fuse errors: and the live mount stays");
	store_expose_free(live);
	is_int(store_expose_cleanup_stale(mdir), 0, "fuse stale: nothing left to clean");

	/* a new exposure over a crashed one's dead mount takes its place */
	pid = fork();
	if (pid == 0) {
		struct store_expose *ce = NULL;
		struct store_expose_opts co = {
		    .kind = STORE_EXPOSE_FUSE, .mount_dir = mdir, .instance = "reuse"};
		_exit(store_expose_new(&co, &d, 1, &ce) == 0 ? 0 : 1);
	}
	waitpid(pid, &st, 0);
	o.instance = "reuse";
	is_int(store_expose_new(&o, &d, 1, &again), 0,
	       "fuse stale: exposing over a dead mount of the same name works");
	char reuse[700];
	snprintf(reuse, sizeof(reuse), "%s/reuse", mdir);
	ok(again && stat(store_expose_path(again, 0), &sb) == 0, "fuse stale: and serves");
	store_expose_free(again);
	ok(!mounted(reuse), "fuse stale: nothing left after close");

	/* file exposure: the plain file itself */
	o.kind = STORE_EXPOSE_FILE;
	is_int(store_expose_new(&o, &d, 1, &e), 0, "file exposure: a plain file device");
	is_str(store_expose_path(e, 0), file, "file exposure: the path is the device's file");
	is_int(store_expose_flush(e, 0), 0, "file exposure: flush");
	store_expose_free(e);
	store_device_free(d);
	struct store_device *dd = make_dev("dest", true);
	is_int(store_expose_new(&o, &dd, 1, &e), -EOPNOTSUPP,
	       "file exposure: refused for a destination");
	store_device_free(dd);
}

int main(void)
{
	const char *top = getenv("top_builddir");

	if (geteuid() != 0) {
		printf("1..0 # SKIP FUSE exposure needs root\n");
		return 0; /* "1..0 # SKIP" is the skip; tap-driver counts exit 77 as an error */
	}
	if (access("/dev/fuse", R_OK | W_OK) < 0) {
		printf("1..0 # SKIP /dev/fuse is not available\n");
		return 0; /* "1..0 # SKIP" is the skip; tap-driver counts exit 77 as an error */
	}
	snprintf(helper, sizeof(helper), "%s/tests/store-mmap-writer", top ? top : ".");
	if (access(helper, X_OK) < 0)
		snprintf(helper, sizeof(helper), "./store-mmap-writer");
	if (!mkdtemp(dir))
		return 1;
	chmod(dir, 0711); /* another user must reach the mount below it */
	/* /dev/fuse without the right to mount (a container): nothing to test here */
	struct store_device *probe = make_dev("probe", false);
	struct store_expose *pe = NULL;
	char pdir[600];
	snprintf(pdir, sizeof(pdir), "%s/mnt", dir);
	struct store_expose_opts po = {
	    .kind = STORE_EXPOSE_FUSE, .mount_dir = pdir, .instance = "probe"};
	int r = probe ? store_expose_new(&po, &probe, 1, &pe) : -ENOMEM;
	store_expose_free(pe);
	store_device_free(probe);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (r == -EPERM || r == -EACCES) {
		(void)!system(cmd);
		printf("1..0 # SKIP cannot mount FUSE here (%s)\n", strerror(-r));
		return 0; /* "1..0 # SKIP" is the skip; tap-driver counts exit 77 as an error */
	}
	test_source();
	test_writeback();
	test_destination();
	test_dest_inval_pending();
	test_dest_inval_batch();
	test_errors_and_stale();
	(void)!system(cmd);
	return done_testing();
}
