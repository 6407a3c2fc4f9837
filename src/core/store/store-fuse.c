/*
 * FUSE exposure (libfuse3 low-level API): one mount per instance, a flat
 * directory with one regular file per device. The page cache stays on (no
 * direct_io), so a VMM can map a device MAP_SHARED; pages it dirties reach
 * the device when the kernel writes them back, at the latest when drafter
 * fsyncs the file (store_expose_flush; the files behind a device are synced
 * to disk for a VMM's fsync, not for drafter's own). A few worker threads
 * wait on the /dev/fuse descriptor (a request wakes one of them) and an
 * eventfd, so stopping never depends on a request arriving.
 */
#include "config.h"

#define FUSE_USE_VERSION 34

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fuse_lowlevel.h>

#include "core/store/store-expose-internal.h"
#include "core/util.h"

/* Readers of missing blocks hold a worker each while they wait. */
#define FUSE_WORKERS  8
/* Prefill: arrived blocks waiting to be copied into the page cache (store-fillq.c). */
#define PREFILL_QUEUE 16384
/*
 * Prefill region, as a shift of bytes: once a region holds data, its blocks
 * of zeros are copied too, so that faults around the data find them cached.
 * Sized for a mapping advised for huge pages, where a fault reads whatever
 * of the 2 MiB around it is not cached, one FUSE read per gap; drafter's
 * QEMU no longer gives that advice (docs/vm.md), and reads the file's
 * read-ahead window around a fault instead.
 */
#define PREFILL_REGION_SHIFT 21
#define ROOT_INO      1
#define FIRST_DEV_INO 2
/* Attributes never change behind the kernel's back: cache them long. */
#define ATTR_TIMEOUT 3600.0

struct file_attr {
	uid_t uid;
	gid_t gid;
	mode_t mode; /* permission bits */
};

struct fuse_state {
	struct store_expose *e;
	struct fuse_session *se;
	int stop_fd;
	bool mounted;
	bool made_mountpoint;
	pthread_t workers[FUSE_WORKERS];
	size_t nworkers;
	uid_t uid;
	gid_t gid;
	/* per device file, changeable with chown/chmod (a jailed VMM runs as another user) */
	pthread_mutex_t attr_lock;
	struct file_attr *attrs;
	struct timespec started;
	/* prefill: the arrived blocks, in the order the copier thread takes them */
	pthread_mutex_t fill_lock;
	pthread_cond_t fill_cond;
	pthread_mutex_t fill_copy; /* held around each copy: a stop waits for that copy alone */
	pthread_t filler;
	bool filling;   /* the thread exists (it may be stopped, not joined yet) */
	bool fill_stop; /* atomic: nothing is copied any more */
	struct store_fillq fill_q;
	/* per device: a bit per region that holds data (the filler's alone) */
	struct store_bitmap *fill_regions;
	/* per device: its file held open from the prefill's start (-1: not), see fuse_prefill */
	int *held;
	/* pages that dirty lists drop, from a thread of their own (see dropper) */
	pthread_mutex_t drop_lock;
	pthread_cond_t drop_cond; /* work or the stop, for the dropper */
	pthread_cond_t drop_idle; /* drop_done moved, for a settle */
	struct store_bitmap *drop; /* per destination device: blocks whose pages go */
	uint64_t drop_queued, drop_done; /* requests so far, and how many are done */
	bool drop_stop;
	/* per destination device: blocks dropped and not read in again since (see warm) */
	struct store_bitmap *refill;
	bool warm_pending; /* the prefill stopped, or a refill block arrived since */
	bool warm_go;      /* the VM runs: reading in may start (fuse_warm) */
	pthread_t dropper;
	bool dropping; /* the thread exists */
};

static struct store_device *dev_of(struct fuse_state *s, fuse_ino_t ino)
{
	if (ino < FIRST_DEV_INO || ino - FIRST_DEV_INO >= s->e->n)
		return NULL;
	return s->e->devs[ino - FIRST_DEV_INO];
}

static void fill_attr(struct fuse_state *s, fuse_ino_t ino, struct stat *st)
{
	struct store_device *d = dev_of(s, ino);

	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = s->uid;
	st->st_gid = s->gid;
	st->st_atim = st->st_mtim = st->st_ctim = s->started;
	if (!d) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		return;
	}
	pthread_mutex_lock(&s->attr_lock);
	const struct file_attr *a = &s->attrs[ino - FIRST_DEV_INO];
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_mode = S_IFREG | a->mode;
	pthread_mutex_unlock(&s->attr_lock);
	st->st_nlink = 1;
	st->st_size = (off_t)store_device_size(d);
	st->st_blksize = (blksize_t)store_device_block_size(d);
	st->st_blocks = (blkcnt_t)((store_device_size(d) + 511) / 512);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fuse_state *s = userdata;

	if (s->e->writeback_cache && (conn->capable & FUSE_CAP_WRITEBACK_CACHE))
		conn->want |= FUSE_CAP_WRITEBACK_CACHE;
	else
		conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_state *s = fuse_req_userdata(req);
	struct fuse_entry_param ep;

	if (parent != ROOT_INO) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	for (size_t i = 0; i < s->e->n; i++) {
		if (strcmp(store_device_name(s->e->devs[i]), name))
			continue;
		memset(&ep, 0, sizeof(ep));
		ep.ino = FIRST_DEV_INO + i;
		ep.attr_timeout = ATTR_TIMEOUT;
		ep.entry_timeout = ATTR_TIMEOUT;
		fill_attr(s, ep.ino, &ep.attr);
		fuse_reply_entry(req, &ep);
		return;
	}
	fuse_reply_err(req, ENOENT);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_state *s = fuse_req_userdata(req);
	struct stat st;

	(void)fi;
	if (ino != ROOT_INO && !dev_of(s, ino)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_attr(s, ino, &st);
	fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
	struct fuse_state *s = fuse_req_userdata(req);
	struct store_device *d = dev_of(s, ino);
	struct stat st;

	(void)fi;
	/* a device's size is fixed; a truncate to its own size is fine (VMMs do that) */
	if ((to_set & FUSE_SET_ATTR_SIZE) &&
	    (!d || (uint64_t)attr->st_size != store_device_size(d))) {
		fuse_reply_err(req, d ? EPERM : EISDIR);
		return;
	}
	/* the kernel checked the caller's rights (default_permissions) */
	if (d && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID | FUSE_SET_ATTR_MODE))) {
		pthread_mutex_lock(&s->attr_lock);
		struct file_attr *a = &s->attrs[ino - FIRST_DEV_INO];
		if (to_set & FUSE_SET_ATTR_UID)
			a->uid = attr->st_uid;
		if (to_set & FUSE_SET_ATTR_GID)
			a->gid = attr->st_gid;
		if (to_set & FUSE_SET_ATTR_MODE)
			a->mode = attr->st_mode & 07777;
		pthread_mutex_unlock(&s->attr_lock);
	}
	fill_attr(s, ino, &st);
	fuse_reply_attr(req, &st, ATTR_TIMEOUT);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct fuse_state *s = fuse_req_userdata(req);

	if (!dev_of(s, ino)) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	/* the page cache is only ever stale where store_device_set_changed tells us */
	fi->keep_cache = 1;
	fi->direct_io = 0;
	fuse_reply_open(req, fi);
}

/*
 * A worker's read buffer, kept for its next read (requests are handled in
 * the worker threads only). A VMM's page fault reads up to 1 MiB, and an
 * allocation that size made afresh each time was a new mapping whose pages
 * fault in zeroed, each fault taking the process's mmap lock, which the
 * other workers' faults and mappings then waited for (perf sched, in a
 * migration's pause). The buffer is mapped with its pages in (MAP_POPULATE)
 * as the worker starts (1 MiB each, 8 MiB for the eight): a worker's first
 * large read used to come in a destination's pause, when the VMM loads, and
 * its page faults there were a fifth to a third of the FUSE workers' CPU
 * time from the pause to 150 ms after the resume (perf, bench/migrate).
 */
#define READ_BUF_START (1024 * 1024)

static __thread char *read_buf;
static __thread size_t read_cap;

static char *worker_read_buf(size_t size)
{
	if (size > read_cap) {
		if (read_buf)
			munmap(read_buf, read_cap);
		read_cap = 0;
		read_buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
		                -1, 0);
		if (read_buf == MAP_FAILED)
			read_buf = NULL;
		else
			read_cap = size;
	}
	return read_buf;
}

static void worker_read_buf_free(void)
{
	if (read_buf)
		munmap(read_buf, read_cap);
	read_buf = NULL;
	read_cap = 0;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
	struct fuse_state *s = fuse_req_userdata(req);
	struct store_device *d = dev_of(s, ino);
	char *buf;

	(void)fi;
	if (!d) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	buf = worker_read_buf(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	ssize_t n = store_device_read(d, buf, size, (uint64_t)off);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
	struct fuse_state *s = fuse_req_userdata(req);
	struct store_device *d = dev_of(s, ino);

	(void)fi;
	if (!d) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	ssize_t n = store_device_write(d, buf, size, (uint64_t)off);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else if (n == 0 && size)
		fuse_reply_err(req, ENOSPC);
	else
		fuse_reply_write(req, (size_t)n);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

/*
 * Whether a request comes from drafter itself: FUSE gives the caller's
 * thread id, which is one of ours when /proc/self/task lists it.
 */
static bool from_self(fuse_req_t req)
{
	pid_t tid = fuse_req_ctx(req)->pid;
	char path[48];

	if (tid <= 0)
		return false;
	if (tid == getpid())
		return true;
	snprintf(path, sizeof path, "/proc/self/task/%ld", (long)tid);
	return access(path, F_OK) == 0;
}

/*
 * By the time FSYNC arrives, the kernel has written back what was dirty in
 * its cache: the device holds it. A VMM's fsync (a guest's flush) also makes
 * the device's files durable. Drafter's own fsync only wants what a VMM
 * mapped or wrote in the device (to list it dirty, to send it), and syncing
 * the files to disk there would put disk flushes into a migration's pause
 * (0.05-0.15 ms each, more with data pending): it makes them durable itself
 * when it closes the devices.
 */
static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct fuse_state *s = fuse_req_userdata(req);
	struct store_device *d = dev_of(s, ino);

	(void)datasync;
	(void)fi;
	int r = d && !from_self(req) ? store_device_flush(d) : 0;
	fuse_reply_err(req, r < 0 ? -r : 0);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino != ROOT_INO)
		fuse_reply_err(req, ENOTDIR);
	else
		fuse_reply_open(req, fi);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
	struct fuse_state *s = fuse_req_userdata(req);
	_cleanup_free_ char *buf = NULL;
	size_t used = 0;

	(void)fi;
	if (ino != ROOT_INO) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	/* entry k: 0 ".", 1 "..", 2+i device i; the offset of an entry is k+1 */
	for (size_t k = (size_t)off; k < 2 + s->e->n; k++) {
		struct stat st;
		const char *name = k == 0   ? "."
		                   : k == 1 ? ".."
		                            : store_device_name(s->e->devs[k - 2]);
		fill_attr(s, k < 2 ? ROOT_INO : FIRST_DEV_INO + (k - 2), &st);
		size_t need =
		    fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)(k + 1));
		if (need > size - used)
			break;
		used += need;
	}
	fuse_reply_buf(req, buf, used);
}

static const struct fuse_lowlevel_ops fuse_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	/*
	 * No flush: the kernel writes a file's dirty pages back on every close
	 * whether or not there is one, and the FLUSH that follows had nothing
	 * left to do here. Without it the kernel stops sending FLUSH after the
	 * first ENOSYS, which saves a round trip per close.
	 */
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
};

/*
 * What woke a worker: 1 a request may be there, 0 stop (the stop eventfd,
 * an unmounted or aborted session), -errno. Each worker waits in an epoll
 * set of its own, with the /dev/fuse descriptor added EPOLLEXCLUSIVE so
 * that a request wakes one worker rather than all (with poll, the eight
 * workers woke for every request, seven to find nothing: in a migration's
 * pause each FUSE request cost eight context switches); the stop eventfd
 * wakes them all. Without an epoll set (EP < 0), poll as before.
 */
static int worker_wait(struct fuse_state *s, int ep, int fd)
{
	if (ep < 0) {
		struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = s->stop_fd, .events = POLLIN}};
		if (poll(p, 2, -1) < 0)
			return -errno;
		if (p[1].revents || (p[0].revents & (POLLERR | POLLHUP | POLLNVAL)))
			return 0;
		return 1;
	}
	struct epoll_event ev[2];
	int n = epoll_wait(ep, ev, 2, -1);
	if (n < 0)
		return -errno;
	for (int k = 0; k < n; k++)
		if (ev[k].data.u32 == 1 || (ev[k].events & (EPOLLERR | EPOLLHUP)))
			return 0;
	return 1;
}

static void *worker(void *arg)
{
	struct fuse_state *s = arg;
	struct fuse_buf fbuf = {.mem = NULL};
	int fd = fuse_session_fd(s->se);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event req = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u32 = 0};
	struct epoll_event stop = {.events = EPOLLIN, .data.u32 = 1};

	thread_name("fuse-worker");
	(void)worker_read_buf(READ_BUF_START); /* else at its first read */
	if (ep >= 0 && (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &req) < 0 ||
	                epoll_ctl(ep, EPOLL_CTL_ADD, s->stop_fd, &stop) < 0)) {
		close(ep);
		ep = -1;
	}
	for (;;) {
		int w = worker_wait(s, ep, fd);
		if (w == -EINTR)
			continue;
		if (w <= 0)
			break;
		int r = fuse_session_receive_buf(s->se, &fbuf);
		if (r == -EAGAIN || r == -EINTR)
			continue; /* another worker took it */
		if (r <= 0)
			break;
		fuse_session_process_buf(s->se, &fbuf);
	}
	free(fbuf.mem);
	worker_read_buf_free();
	if (ep >= 0)
		close(ep);
	return NULL;
}

static void changed(void *ctx, struct store_device *dev, uint64_t off, uint64_t len, bool later)
{
	struct fuse_state *s = ctx;

	if (!len)
		return;
	for (size_t i = 0; i < s->e->n; i++) {
		if (s->e->devs[i] != dev)
			continue;
		if (!later || !s->dropping || !s->drop[i].words) {
			(void)fuse_lowlevel_notify_inval_inode(s->se, FIRST_DEV_INO + i, (off_t)off,
			                                       (off_t)len);
			continue;
		}
		uint32_t bs = store_device_block_size(dev);
		pthread_mutex_lock(&s->drop_lock);
		for (uint64_t b = off / bs; b <= (off + len - 1) / bs && b < s->drop[i].nbits; b++)
			store_bitmap_set(&s->drop[i], b);
		s->drop_queued++;
		pthread_cond_signal(&s->drop_cond);
		pthread_mutex_unlock(&s->drop_lock);
	}
}

/*
 * Once the prefill stopped and the VM runs (fuse_warm): read in again the
 * dropped blocks that are back, a run of them at a time, as the VM would
 * have to on its first touch of each page (a FUSE read in its way; 30-50
 * such faults in the first 100 ms after the resume in bench/migrate). A
 * read only fills the pages not cached, so unlike the prefill's copy it
 * never replaces what the VM wrote. The readahead asks for the pages and
 * returns, the workers answer. Called with drop_lock held.
 */
static void warm(struct fuse_state *s)
{
	for (size_t i = 0; i < s->e->n; i++) {
		struct store_bitmap *q = &s->refill[i];
		struct store_wait *w = store_device_wait(s->e->devs[i]);
		uint32_t bs = store_device_block_size(s->e->devs[i]);
		uint64_t b = 0, end;

		if (!q->words || s->held[i] < 0)
			continue;
		while ((b = store_bitmap_next(q, b)) != UINT64_MAX) {
			for (end = b; end < q->nbits && store_bitmap_test(q, end); end++) {
				if (!store_wait_present(w, end))
					break;
				store_bitmap_clear(q, end);
			}
			if (end == b) {
				b++; /* not back yet: its arrival asks again */
				continue;
			}
			pthread_mutex_unlock(&s->drop_lock);
			(void)posix_fadvise(s->held[i], (off_t)(b * bs), (off_t)((end - b) * bs),
			                    POSIX_FADV_WILLNEED);
			pthread_mutex_lock(&s->drop_lock);
			b = end;
		}
	}
}

/* A delivery after the prefill's stop wrote BLOCK: read it in if a dirty list had dropped it. */
static void arrived_late(void *ctx, struct store_device *dev, uint64_t block)
{
	struct fuse_state *s = ctx;

	for (size_t i = 0; i < s->e->n; i++) {
		if (s->e->devs[i] != dev || !s->refill[i].words)
			continue;
		pthread_mutex_lock(&s->drop_lock);
		if (block < s->refill[i].nbits && store_bitmap_test(&s->refill[i], block)) {
			s->warm_pending = true;
			pthread_cond_signal(&s->drop_cond);
		}
		pthread_mutex_unlock(&s->drop_lock);
	}
}

/*
 * Drop the pages of the blocks queued by changed(), a run of blocks at a
 * time, and read them in again when asked (warm). The kernel waits for the
 * lock of each page, which a reader holds until all of its read is
 * answered, maybe after a block that only the session queueing these can
 * deliver: that session must not wait here.
 */
static void *dropper(void *arg)
{
	struct fuse_state *s = arg;

	thread_name("fuse-drop");
	pthread_mutex_lock(&s->drop_lock);
	for (;;) {
		while (!s->drop_stop && s->drop_done == s->drop_queued &&
		       !(s->warm_pending && s->warm_go))
			pthread_cond_wait(&s->drop_cond, &s->drop_lock);
		if (s->drop_stop)
			break;
		if (s->drop_done == s->drop_queued) {
			s->warm_pending = false;
			warm(s);
			continue;
		}
		uint64_t upto = s->drop_queued;
		for (size_t i = 0; i < s->e->n; i++) {
			struct store_bitmap *q = &s->drop[i];
			uint32_t bs = store_device_block_size(s->e->devs[i]);
			uint64_t b = 0, end;

			while ((b = store_bitmap_next(q, b)) != UINT64_MAX) {
				for (end = b; end < q->nbits && store_bitmap_test(q, end); end++) {
					store_bitmap_clear(q, end);
					store_bitmap_set(&s->refill[i], end);
				}
				pthread_mutex_unlock(&s->drop_lock);
				(void)fuse_lowlevel_notify_inval_inode(s->se, FIRST_DEV_INO + i,
				                                       (off_t)(b * bs), (off_t)((end - b) * bs));
				pthread_mutex_lock(&s->drop_lock);
				b = end;
			}
		}
		s->drop_done = upto;
		pthread_cond_broadcast(&s->drop_idle);
	}
	pthread_mutex_unlock(&s->drop_lock);
	return NULL;
}

static void fuse_settle(struct store_expose *e)
{
	struct fuse_state *s = e->priv;

	if (!s || !s->dropping)
		return;
	pthread_mutex_lock(&s->drop_lock);
	uint64_t upto = s->drop_queued;
	while (!s->drop_stop && s->drop_done < upto)
		pthread_cond_wait(&s->drop_idle, &s->drop_lock);
	pthread_mutex_unlock(&s->drop_lock);
}

/* After the reads waiting for blocks failed (a drop may wait for one). */
static void drop_stop(struct fuse_state *s)
{
	if (s->dropping) {
		pthread_mutex_lock(&s->drop_lock);
		s->drop_stop = true;
		pthread_cond_signal(&s->drop_cond);
		pthread_cond_broadcast(&s->drop_idle);
		pthread_mutex_unlock(&s->drop_lock);
		pthread_join(s->dropper, NULL);
		s->dropping = false;
	}
	for (size_t i = 0; i < s->e->n; i++) {
		if (s->drop)
			store_bitmap_free(&s->drop[i]);
		if (s->refill)
			store_bitmap_free(&s->refill[i]);
	}
	free(s->drop);
	free(s->refill);
	s->drop = NULL;
	s->refill = NULL;
}

/* A destination's devices get a dropper. */
static int drop_start(struct fuse_state *s)
{
	struct store_expose *e = s->e;
	bool any = false;

	s->drop = calloc(e->n ? e->n : 1, sizeof(*s->drop));
	s->refill = calloc(e->n ? e->n : 1, sizeof(*s->refill));
	if (!s->drop || !s->refill)
		return -ENOMEM;
	for (size_t i = 0; i < e->n; i++) {
		if (!store_device_wait(e->devs[i]))
			continue;
		if (store_bitmap_init(&s->drop[i], store_device_blocks(e->devs[i])) < 0 ||
		    store_bitmap_init(&s->refill[i], store_device_blocks(e->devs[i])) < 0)
			return -ENOMEM;
		any = true;
	}
	if (!any)
		return 0;
	if (pthread_create(&s->dropper, NULL, dropper, s) != 0)
		return -EAGAIN;
	s->dropping = true;
	return 0;
}

/* A delivery wrote BLOCK (the delivering thread: only queue it). */
static void stored(void *ctx, struct store_device *dev, uint64_t block)
{
	struct fuse_state *s = ctx;

	for (size_t i = 0; i < s->e->n; i++) {
		if (s->e->devs[i] != dev)
			continue;
		pthread_mutex_lock(&s->fill_lock);
		if (!s->fill_stop) {
			store_fillq_push(&s->fill_q, (uint32_t)i, block);
			pthread_cond_signal(&s->fill_cond);
		}
		pthread_mutex_unlock(&s->fill_lock);
	}
}

/*
 * Copy a block's content BUF (N bytes, read at generation GEN) into the page
 * cache, unless the prefill stopped. A dirty list may have dropped the block
 * since it was read: then the pages just filled may hold the old version and
 * go again. The copy holds fill_copy, which a stop takes once: the read
 * before it, which may wait for the kernel's I/O on the device's file
 * (25-60 ms in bench/migrate), stays out of what a stop waits for.
 */
static bool fill_pages(struct fuse_state *s, uint32_t i, uint64_t block, void *buf, size_t n,
                       uint64_t gen)
{
	struct store_device *d = s->e->devs[i];
	off_t off = (off_t)(block * store_device_block_size(d));
	struct fuse_bufvec bv = FUSE_BUFVEC_INIT(n);
	bool stopped;

	bv.buf[0].mem = buf;
	pthread_mutex_lock(&s->fill_copy);
	stopped = __atomic_load_n(&s->fill_stop, __ATOMIC_ACQUIRE);
	/* -ENOENT: the kernel has not looked the file up yet, nothing to fill */
	if (!stopped && fuse_lowlevel_notify_store(s->se, FIRST_DEV_INO + i, off, &bv, 0) == 0 &&
	    store_device_generation(d) != gen)
		(void)fuse_lowlevel_notify_inval_inode(s->se, FIRST_DEV_INO + i, off, (off_t)n);
	pthread_mutex_unlock(&s->fill_copy);
	return !stopped;
}

/* Blocks per prefill region of D, as a shift (a block of 2 MiB or more is a region). */
static unsigned region_shift(const struct store_device *d)
{
	unsigned bs = (unsigned)__builtin_ctz(store_device_block_size(d));

	return bs < PREFILL_REGION_SHIFT ? PREFILL_REGION_SHIFT - bs : 0;
}

/*
 * Copy one arrived block into the page cache. The kernel may have to wait
 * for a read of those pages (one waiting for another block): that is why
 * this runs in a thread of its own, never in the delivering one. A block of
 * zeros is left out while nothing else of its region holds data: it reads
 * fast enough from a hole, and most such regions are never touched. The
 * first block of data in a region brings the zeros that arrived before it.
 */
static void fill_block(struct fuse_state *s, uint32_t i, uint64_t block, void *buf)
{
	struct store_device *d = s->e->devs[i];
	uint64_t gen, region = block >> region_shift(d);
	struct store_bitmap *used = &s->fill_regions[i];
	bool had_data = store_bitmap_test(used, region);
	ssize_t n = store_device_read_present(d, block, buf, &gen);

	if (n <= 0)
		return;
	bool zero = mem_is_zero(buf, (size_t)n);
	if (zero && !had_data)
		return;
	if (!fill_pages(s, i, block, buf, (size_t)n, gen) || zero || had_data)
		return;
	store_bitmap_set(used, region);
	uint64_t end = (region + 1) << region_shift(d);
	if (end > store_device_blocks(d))
		end = store_device_blocks(d);
	/* The data just copied is no longer needed: BUF reads the others. */
	for (uint64_t b = region << region_shift(d); b < end; b++) {
		if (b == block)
			continue;
		n = store_device_read_present(d, b, buf, &gen);
		if (n > 0 && mem_is_zero(buf, (size_t)n) && !fill_pages(s, i, b, buf, (size_t)n, gen))
			break;
	}
}

static void *filler(void *arg)
{
	struct fuse_state *s = arg;
	uint32_t bs = 0;

	thread_name("fuse-fill");
	for (size_t i = 0; i < s->e->n; i++)
		if (store_device_block_size(s->e->devs[i]) > bs)
			bs = store_device_block_size(s->e->devs[i]);
	_cleanup_free_ void *buf = malloc(bs);
	/*
	 * The copies are for after the VM resumes; the cut-over before that
	 * (the suspend's acknowledgements, the check, the load) is a chain of
	 * threads that each wait for a core. SCHED_IDLE runs the copier only on
	 * a core nothing else wants: in bench/migrate own downtime 11-30 ms
	 * (median 16.5) against 14-30 (21.5) at nice 10, six rounds each.
	 */
	struct sched_param idle = { 0 };
	(void)pthread_setschedparam(pthread_self(), SCHED_IDLE, &idle);
	pthread_mutex_lock(&s->fill_lock);
	while (!s->fill_stop && buf) {
		uint32_t dev;
		uint64_t block;

		if (!store_fillq_pop(&s->fill_q, &dev, &block)) {
			pthread_cond_wait(&s->fill_cond, &s->fill_lock);
			continue;
		}
		pthread_mutex_unlock(&s->fill_lock);
		fill_block(s, dev, block, buf);
		pthread_mutex_lock(&s->fill_lock);
	}
	pthread_mutex_unlock(&s->fill_lock);
	return NULL;
}

static void fill_free(struct fuse_state *s)
{
	for (size_t k = 0; s->fill_regions && k < s->e->n; k++)
		store_bitmap_free(&s->fill_regions[k]);
	free(s->fill_regions);
	s->fill_regions = NULL;
	store_fillq_free(&s->fill_q);
}

/* After a stop: the thread's end, then its memory. */
static void fill_join(struct fuse_state *s)
{
	if (!s->filling)
		return;
	pthread_join(s->filler, NULL);
	fill_free(s);
	s->filling = false;
}

/*
 * Stop the prefill: once this returns no copy runs or starts, so none can
 * overwrite what the VM writes. With WARM the dropped blocks that are back,
 * and those that arrive from now on, are read in instead once the VM runs
 * (see warm, fuse_warm).
 */
static void fill_stop(struct fuse_state *s, bool warm)
{
	struct store_expose *e = s->e;

	for (size_t k = 0; k < e->n; k++) {
		bool late = warm && s->refill[k].words;
		store_device_set_stored(e->devs[k], late ? arrived_late : NULL, s);
	}
	pthread_mutex_lock(&s->fill_lock);
	__atomic_store_n(&s->fill_stop, true, __ATOMIC_RELEASE);
	pthread_cond_signal(&s->fill_cond);
	pthread_mutex_unlock(&s->fill_lock);
	/*
	 * A copier at SCHED_IDLE that holds fill_copy gets a core only when
	 * nothing else wants one, which in a handover can be milliseconds
	 * (0-4.9 ms of the pause in bench/migrate, six rounds): it finishes
	 * at the normal class, and ends.
	 */
	struct sched_param normal = { 0 };
	(void)pthread_setschedparam(s->filler, SCHED_OTHER, &normal);
	pthread_mutex_lock(&s->fill_copy);
	pthread_mutex_unlock(&s->fill_copy);
	if (warm) {
		/* the dropped blocks back already, once the VM runs */
		pthread_mutex_lock(&s->drop_lock);
		s->warm_pending = true;
		pthread_mutex_unlock(&s->drop_lock);
	}
}

/*
 * The VM runs: the reading-in starts. Not while it loads: the readahead's
 * FUSE reads took the workers and the cores from the load's own reads,
 * and the dropper, busy issuing them, could leave the final lists' drops
 * that the settle waits for. bench/migrate, alternating rounds (twelve
 * each, two runs): QEMU's load to its resume 1.35 against 2.0 ms, own
 * downtime 4.0-4.5 against 5.0-6.0 ms (medians).
 */
static void fuse_warm(struct store_expose *e)
{
	struct fuse_state *s = e->priv;

	if (!s || !s->dropping)
		return;
	pthread_mutex_lock(&s->drop_lock);
	s->warm_go = true;
	pthread_cond_signal(&s->drop_cond);
	pthread_mutex_unlock(&s->drop_lock);
}

static int fuse_prefill(struct store_expose *e, size_t i)
{
	struct fuse_state *s = e->priv;

	if (i != SIZE_MAX) {
		if (!store_device_wait(e->devs[i]))
			return -EINVAL; /* only a destination's blocks arrive */
		if (s->filling && __atomic_load_n(&s->fill_stop, __ATOMIC_ACQUIRE))
			fill_join(s); /* stopped before: start again */
		if (!s->filling) {
			s->fill_regions = calloc(e->n, sizeof(*s->fill_regions));
			if (!s->fill_regions || store_fillq_init(&s->fill_q, PREFILL_QUEUE, e->n) < 0) {
				fill_free(s);
				return -ENOMEM;
			}
			s->fill_stop = false;
			pthread_mutex_lock(&s->drop_lock);
			s->warm_go = false; /* a VM that ran before loads again */
			pthread_mutex_unlock(&s->drop_lock);
			if (pthread_create(&s->filler, NULL, filler, s) != 0) {
				fill_free(s);
				return -EAGAIN;
			}
			s->filling = true;
		}
		/* the filler reads it only for blocks queued after set_stored below */
		if (!s->fill_regions[i].words &&
		    store_bitmap_init(&s->fill_regions[i],
		                      (store_device_blocks(e->devs[i]) >> region_shift(e->devs[i])) + 1) < 0)
			return -ENOMEM;
		pthread_mutex_lock(&s->fill_lock);
		int r = store_fillq_add_device(&s->fill_q, (uint32_t)i, store_device_blocks(e->devs[i]));
		pthread_mutex_unlock(&s->fill_lock);
		if (r < 0)
			return r;
		/*
		 * FUSE_NOTIFY_STORE fills nothing (-ENOENT) until the kernel has
		 * looked the file up, which the VMM does when it starts, 60-90 ms
		 * into a migration in bench/migrate: the first blocks to arrive
		 * were never copied, and they are the working set the source sends
		 * first (what its VMM read first, which a VMM's load reads again).
		 * The file held open from here keeps its inode known. (The caller
		 * is not a FUSE worker: the workers answer this open.)
		 */
		if (s->held[i] < 0)
			s->held[i] = open(store_expose_path(e, i), O_RDONLY | O_CLOEXEC);
		store_device_set_stored(e->devs[i], stored, s);
		return 0;
	}
	/*
	 * Stop: it waits for the copy under way, if any, not for the thread:
	 * waking it up to see the stop took up to 3.5 ms of a handover with
	 * both cores busy. fuse_stop joins it.
	 */
	if (!s || !s->filling)
		return 0;
	fill_stop(s, s->dropping);
	return 0;
}

static void fuse_stop(struct store_expose *e)
{
	struct fuse_state *s = e->priv;

	if (!s)
		return;
	for (size_t i = 0; i < e->n; i++) {
		store_device_set_changed(e->devs[i], NULL, NULL);
		/* a worker waiting for a block that will not come would block the join */
		if (store_device_wait(e->devs[i]))
			store_wait_fail(store_device_wait(e->devs[i]), -EIO);
	}
	/* the filler and the dropper may wait for a page a worker is reading: after the reads failed */
	if (s->filling)
		fill_stop(s, false);
	fill_join(s);
	drop_stop(s);
	/* while the workers still answer the close */
	for (size_t i = 0; s->held && i < e->n; i++)
		if (s->held[i] >= 0)
			close(s->held[i]);
	/*
	 * Workers first: unmounting closes /dev/fuse, which a worker may still
	 * be replying on. Accesses in between wait until the unmount below
	 * aborts the connection.
	 */
	if (s->se)
		fuse_session_exit(s->se);
	if (s->stop_fd >= 0 && s->nworkers) {
		uint64_t one = 1;
		(void)!write(s->stop_fd, &one, sizeof(one));
	}
	for (size_t i = 0; i < s->nworkers; i++)
		pthread_join(s->workers[i], NULL);
	if (s->se) {
		if (s->mounted)
			fuse_session_unmount(s->se);
		s->mounted = false;
		fuse_session_destroy(s->se); /* closes /dev/fuse: aborts what is left */
	}
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	if (s->made_mountpoint && e->mountpoint)
		(void)rmdir(e->mountpoint);
	pthread_mutex_destroy(&s->attr_lock);
	pthread_mutex_destroy(&s->fill_lock);
	pthread_cond_destroy(&s->fill_cond);
	pthread_mutex_destroy(&s->fill_copy);
	pthread_mutex_destroy(&s->drop_lock);
	pthread_cond_destroy(&s->drop_cond);
	pthread_cond_destroy(&s->drop_idle);
	free(s->attrs);
	free(s->held);
	free(s);
	e->priv = NULL;
}

static int fuse_start(struct store_expose *e)
{
	struct fuse_state *s;
	int r;

	if (!e->mount_dir)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	e->priv = s;
	s->e = e;
	s->stop_fd = -1;
	s->uid = geteuid();
	s->gid = getegid();
	pthread_mutex_init(&s->attr_lock, NULL);
	pthread_mutex_init(&s->fill_lock, NULL);
	pthread_cond_init(&s->fill_cond, NULL);
	pthread_mutex_init(&s->fill_copy, NULL);
	pthread_mutex_init(&s->drop_lock, NULL);
	pthread_cond_init(&s->drop_cond, NULL);
	pthread_cond_init(&s->drop_idle, NULL);
	s->attrs = calloc(e->n ? e->n : 1, sizeof(*s->attrs));
	s->held = malloc((e->n ? e->n : 1) * sizeof(*s->held));
	if (!s->attrs || !s->held)
		return -ENOMEM;
	for (size_t i = 0; i < e->n; i++)
		s->held[i] = -1;
	for (size_t i = 0; i < e->n; i++)
		s->attrs[i] = (struct file_attr){.uid = s->uid, .gid = s->gid, .mode = 0600};
	clock_gettime(CLOCK_REALTIME, &s->started);
	if (asprintf(&e->mountpoint, "%s/%s", e->mount_dir, e->instance) < 0) {
		e->mountpoint = NULL;
		return -ENOMEM;
	}
	r = mkdir_parents(e->mountpoint);
	if (r < 0)
		return r;
	if (mkdir(e->mountpoint, 0700) == 0) {
		s->made_mountpoint = true;
	} else if (errno != EEXIST) {
		return -errno;
	} else {
		struct stat here, parent;
		/* a dead mount of a crashed run is ours to remove; a live one is someone's */
		if (stat(e->mountpoint, &here) < 0 && errno == ENOTCONN) {
			if (umount2(e->mountpoint, MNT_DETACH) < 0)
				return -errno;
		} else if (stat(e->mountpoint, &here) < 0 || stat(e->mount_dir, &parent) < 0) {
			return -errno;
		} else if (here.st_dev != parent.st_dev) {
			return -EBUSY;
		} else if (!S_ISDIR(here.st_mode)) {
			return -ENOTDIR;
		}
	}
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->stop_fd < 0)
		return -errno;

	/* allow_other so that a VMM running as another user can open it (root only) */
	char *argv[] = {"drafter", "-o",
	                "default_permissions,allow_other,fsname=drafter,subtype=drafter", NULL};
	struct fuse_args args = FUSE_ARGS_INIT(geteuid() == 0 ? 3 : 1, argv);
	s->se = fuse_session_new(&args, &fuse_ops, sizeof(fuse_ops), s);
	fuse_opt_free_args(&args);
	if (!s->se)
		return -EIO;
	if (fuse_session_mount(s->se, e->mountpoint) != 0)
		return access("/dev/fuse", R_OK | W_OK) < 0 ? -errno : -EPERM;
	s->mounted = true;
	int fd = fuse_session_fd(s->se);
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	for (size_t i = 0; i < FUSE_WORKERS; i++) {
		if (pthread_create(&s->workers[i], NULL, worker, s) != 0)
			return -EAGAIN;
		s->nworkers++;
	}
	r = drop_start(s);
	if (r < 0)
		return r;
	for (size_t i = 0; i < e->n; i++) {
		if (asprintf(&e->paths[i], "%s/%s", e->mountpoint, store_device_name(e->devs[i])) <
		    0) {
			e->paths[i] = NULL;
			return -ENOMEM;
		}
		store_device_set_changed(e->devs[i], changed, s);
	}
	return 0;
}

const struct store_expose_ops store_expose_fuse_ops = {
	.name = "fuse",
	.start = fuse_start,
	.flush = store_expose_path_flush,
	.stop = fuse_stop,
	.prefill = fuse_prefill,
	.settle = fuse_settle,
	.warm = fuse_warm,
};

/* /proc/mounts escapes blanks and backslashes as octal (\040). */
static void unescape_mount_path(char *s)
{
	char *o = s;

	for (char *p = s; *p; p++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
		    p[3] >= '0' && p[3] <= '7') {
			*o++ = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
			p += 3;
		} else {
			*o++ = *p;
		}
	}
	*o = 0;
}

int store_expose_cleanup_stale(const char *mount_dir)
{
	_cleanup_fclose_ FILE *f = NULL;
	_cleanup_free_ char *line = NULL;
	size_t cap = 0, dlen;
	char *dir;
	int n = 0;

	if (!mount_dir)
		return -EINVAL;
	dir = realpath(mount_dir, NULL);
	if (!dir)
		return errno == ENOENT ? 0 : -errno;
	dlen = strlen(dir);
	f = fopen("/proc/self/mounts", "re");
	if (!f) {
		free(dir);
		return -errno;
	}
	while (getline(&line, &cap, f) > 0) {
		char *src = strtok(line, " "), *mp = strtok(NULL, " "), *type = strtok(NULL, " ");
		struct stat st;

		if (!src || !mp || !type || strcmp(src, "drafter") || strcmp(type, "fuse.drafter"))
			continue;
		unescape_mount_path(mp);
		if (strncmp(mp, dir, dlen) || (mp[dlen] != '/' && mp[dlen] != 0))
			continue;
		/* a live server answers; only a dead connection says ENOTCONN */
		if (stat(mp, &st) == 0 || errno != ENOTCONN)
			continue;
		if (umount2(mp, MNT_DETACH) < 0)
			continue;
		(void)rmdir(mp);
		n++;
	}
	free(dir);
	return n;
}
