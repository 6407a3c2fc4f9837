/*
 * File-backed migration devices. Inputs answer holes from SEEK_DATA so that
 * sparse regions are never read; outputs skip all-zero blocks that were never
 * written, so a mostly-zero device stays sparse at the destination.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/io.h"
#include "core/util.h"
#include "core/xfer/filedev.h"

struct filedev {
	struct xfer_dev dev;
	int fd;
	char *name;
	char *path;    /* final path */
	char *tmp;     /* output: the temporary file until committed */
	uint64_t *written; /* output: blocks written at least once */
	uint64_t wb_lo, wb_hi; /* output: range written since writeback was last started */
	pthread_mutex_t ext_lock; /* input: guards the extent cache */
	uint64_t ext_lo, ext_hi;  /* input: [lo, hi) is known to be data or a hole */
	bool ext_data;
	bool output;
	struct wqueue *wq; /* output: blocks on their way to the writer thread */
};

/*
 * Outputs write from a thread of their own: the receiving thread only copies
 * a block's non-zero runs into a slot of a small queue, and the page cache
 * work of pwrite (one call per run; many for a memory image) overlaps with
 * receiving, decompressing and checking the next blocks. The queue holds
 * about WQ_BYTES, so memory stays bounded whatever the device size.
 */
#define WQ_BYTES (4u << 20)
#define WQ_MAX_SLOTS 64u

struct wrun {
	uint64_t off;
	uint32_t len;
};

struct wslot {
	uint8_t *data;
	struct wrun *runs;
	uint32_t nruns;
};

struct wqueue {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t not_empty, not_full;
	struct wslot *slots;
	uint32_t nslots, head, count;
	int err; /* first write failure, reported by the next deliver or the commit */
	bool stop;
};

/*
 * Outputs start the writeback of what they received every so often, so the
 * fsync before the rename finds little left to write and the disk works
 * while the network does.
 */
#define WRITEBACK_CHUNK (8ull << 20)

static void output_written(struct filedev *f, uint64_t off, uint64_t len)
{
	if (f->wb_hi <= f->wb_lo) {
		f->wb_lo = off;
		f->wb_hi = off + len;
	} else {
		if (off < f->wb_lo)
			f->wb_lo = off;
		if (off + len > f->wb_hi)
			f->wb_hi = off + len;
	}
	if (f->wb_hi - f->wb_lo >= WRITEBACK_CHUNK) {
		/* Only a hint: a failure shows up again in the final fsync. */
		(void)sync_file_range(f->fd, (off_t)f->wb_lo, (off_t)(f->wb_hi - f->wb_lo),
				      SYNC_FILE_RANGE_WRITE);
		f->wb_lo = f->wb_hi = 0;
	}
}

/*
 * The extent (data or hole) at POS, from a one-entry cache shared by the
 * sessions: SEEK_HOLE can walk the page cache, so asking once per block would
 * cost more than the read on a file that is one big data extent.
 */
static int input_extent(struct filedev *f, uint64_t pos, bool *data, uint64_t *end)
{
	int r = 0;

	pthread_mutex_lock(&f->ext_lock);
	if (pos < f->ext_lo || pos >= f->ext_hi) {
		off_t d = lseek(f->fd, (off_t)pos, SEEK_DATA);
		if (d < 0 && errno != ENXIO) {
			r = -errno;
			goto out;
		}
		if (d < 0 || (uint64_t)d > pos) {
			f->ext_data = false;
			f->ext_hi = d < 0 ? UINT64_MAX : (uint64_t)d;
		} else {
			off_t h = lseek(f->fd, (off_t)pos, SEEK_HOLE);
			if (h < 0) {
				r = -errno;
				goto out;
			}
			f->ext_data = true;
			f->ext_hi = (uint64_t)h > pos ? (uint64_t)h : UINT64_MAX;
		}
		f->ext_lo = pos;
	}
	*data = f->ext_data;
	*end = f->ext_hi;
out:
	pthread_mutex_unlock(&f->ext_lock);
	return r;
}

static ssize_t input_read(struct xfer_dev *d, uint64_t block, void *buf)
{
	struct filedev *f = d->ctx;
	uint64_t off = block * d->block_size;
	uint32_t len = xfer_dev_block_len(d, block);

	/* Holes read as zeros without I/O: only the data extents inside the
	 * block are read, so a sparse memory image costs a memset for its
	 * zero pages instead of a copy from the page cache. */
	uint64_t pos = off, end = off + len;
	uint8_t *p = buf;
	while (pos < end) {
		bool data = false;
		uint64_t ext_end = 0;
		int r = input_extent(f, pos, &data, &ext_end);
		if (r < 0)
			return r;
		uint64_t stop = ext_end < end ? ext_end : end;
		if (!data) {
			memset(p + (pos - off), 0, stop - pos);
		} else {
			ssize_t n = pread_full(f->fd, p + (pos - off), stop - pos, pos);
			if (n < 0)
				return n;
			if ((uint64_t)n < stop - pos) {
				/* The file shrank under us: the rest reads as zeros. */
				memset(p + (pos - off) + n, 0, end - pos - (uint64_t)n);
				break;
			}
		}
		pos = stop;
	}
	return len;
}

/* A block wholly inside a hole of the input reads as zeros: no need to read it. */
static int input_zero(struct xfer_dev *d, uint64_t block)
{
	struct filedev *f = d->ctx;
	uint64_t off = block * d->block_size, end = 0;
	bool data = true;

	if (input_extent(f, off, &data, &end) < 0)
		return 0;
	return !data && end >= off + xfer_dev_block_len(d, block);
}

static const struct xfer_dev_ops input_ops = {
	.read_block = input_read,
	.zero_block = input_zero,
};

#define OUT_PAGE 4096u

static void *writer_main(void *arg)
{
	struct filedev *f = arg;
	struct wqueue *q = f->wq;

	thread_name("xfer-writer");
	pthread_mutex_lock(&q->lock);
	for (;;) {
		while (q->count == 0 && !q->stop)
			pthread_cond_wait(&q->not_empty, &q->lock);
		if (q->count == 0)
			break;
		struct wslot *sl = &q->slots[q->head];
		bool failed = q->err < 0;
		pthread_mutex_unlock(&q->lock);

		int r = 0;
		size_t pos = 0;
		for (uint32_t i = 0; i < sl->nruns && !failed && r == 0; i++) {
			r = pwrite_all(f->fd, sl->data + pos, sl->runs[i].len, sl->runs[i].off);
			pos += sl->runs[i].len;
			if (r == 0)
				output_written(f, sl->runs[i].off, sl->runs[i].len);
		}

		pthread_mutex_lock(&q->lock);
		if (r < 0 && q->err == 0)
			q->err = r;
		q->head = (q->head + 1) % q->nslots;
		q->count--;
		pthread_cond_broadcast(&q->not_full);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

static int writer_start(struct filedev *f, uint32_t block_size)
{
	struct wqueue *q = xcalloc(1, sizeof(*q));
	uint32_t n = WQ_BYTES / block_size;
	sigset_t all, old;

	n = n < 2 ? 2 : n > WQ_MAX_SLOTS ? WQ_MAX_SLOTS : n;
	q->nslots = n;
	q->slots = xcalloc(n, sizeof(*q->slots));
	for (uint32_t i = 0; i < n; i++) {
		q->slots[i].data = malloc(block_size);
		q->slots[i].runs = xcalloc(block_size / OUT_PAGE / 2 + 2, sizeof(struct wrun));
		if (!q->slots[i].data) {
			q->stop = true; /* no thread to join */
			f->wq = q;
			return -ENOMEM;
		}
	}
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->not_empty, NULL);
	pthread_cond_init(&q->not_full, NULL);
	f->wq = q;
	/* Signals stay with the command's threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int r = pthread_create(&q->thread, NULL, writer_main, f);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r != 0) {
		pthread_cond_destroy(&q->not_full);
		pthread_cond_destroy(&q->not_empty);
		pthread_mutex_destroy(&q->lock);
		q->stop = true; /* no thread to join */
		return -r;
	}
	return 0;
}

/* Wait until the writer wrote everything queued; its first failure or 0. */
static int writer_drain(struct wqueue *q)
{
	pthread_mutex_lock(&q->lock);
	while (q->count > 0)
		pthread_cond_wait(&q->not_full, &q->lock);
	int r = q->err;
	pthread_mutex_unlock(&q->lock);
	return r;
}

static void writer_stop(struct wqueue *q)
{
	if (!q)
		return;
	if (!q->stop) {
		pthread_mutex_lock(&q->lock);
		q->stop = true;
		pthread_cond_signal(&q->not_empty);
		pthread_mutex_unlock(&q->lock);
		pthread_join(q->thread, NULL);
		pthread_cond_destroy(&q->not_full);
		pthread_cond_destroy(&q->not_empty);
		pthread_mutex_destroy(&q->lock);
	}
	for (uint32_t i = 0; i < q->nslots; i++) {
		free(q->slots[i].data);
		free(q->slots[i].runs);
	}
	free(q->slots);
	free(q);
}

static int output_deliver(struct xfer_dev *d, uint64_t block, const void *data, size_t len)
{
	struct filedev *f = d->ctx;
	struct wqueue *q = f->wq;
	uint64_t off = block * d->block_size;
	const uint8_t *p = data;
	int r;

	if (len > d->block_size)
		return -EINVAL;
	pthread_mutex_lock(&q->lock);
	while (q->count == q->nslots && q->err == 0)
		pthread_cond_wait(&q->not_full, &q->lock);
	r = q->err;
	struct wslot *sl = &q->slots[(q->head + q->count) % q->nslots];
	pthread_mutex_unlock(&q->lock);
	if (r < 0)
		return r;

	sl->nruns = 0;
	if (f->written[block / 64] >> (block % 64) & 1) {
		memcpy(sl->data, p, len);
		sl->runs[sl->nruns++] = (struct wrun){ off, (uint32_t)len };
	} else {
		/* First version of the block in a fresh sparse file: zero pages are
		 * holes already, so only the runs of non-zero pages are written. This
		 * keeps memory-like devices sparse and their final fsync short. */
		f->written[block / 64] |= 1ull << (block % 64);
		size_t pos = 0, used = 0;
		while (pos < len) {
			size_t n = len - pos < OUT_PAGE ? len - pos : OUT_PAGE;
			if (mem_is_zero(p + pos, n)) {
				pos += n;
				continue;
			}
			size_t end = pos + n;
			while (end < len) {
				size_t m = len - end < OUT_PAGE ? len - end : OUT_PAGE;
				if (mem_is_zero(p + end, m))
					break;
				end += m;
			}
			memcpy(sl->data + used, p + pos, end - pos);
			used += end - pos;
			sl->runs[sl->nruns++] = (struct wrun){ off + pos, (uint32_t)(end - pos) };
			pos = end;
		}
		if (sl->nruns == 0)
			return 0;
	}

	pthread_mutex_lock(&q->lock);
	q->count++;
	pthread_cond_signal(&q->not_empty);
	pthread_mutex_unlock(&q->lock);
	return 0;
}

static const struct xfer_dev_ops output_ops = {
	.deliver = output_deliver,
};

static struct filedev *filedev_new(const char *name, const char *path)
{
	struct filedev *f = xcalloc(1, sizeof(*f));

	f->fd = -1;
	f->name = xstrdup(name);
	f->path = xstrdup(path);
	f->dev.ctx = f;
	f->dev.name = f->name;
	pthread_mutex_init(&f->ext_lock, NULL);
	return f;
}

int xfer_filedev_open_input(const char *path, const char *name, uint32_t block_size,
			    struct xfer_dev **out)
{
	struct stat st;
	struct filedev *f;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		int r = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
		close(fd);
		return r;
	}
	if (block_size < XFER_MIN_BLOCK_SIZE || block_size > XFER_MAX_BLOCK_SIZE ||
	    (block_size & (block_size - 1))) {
		close(fd);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size / block_size >= XFER_MAX_BLOCKS) {
		close(fd);
		return -EFBIG;
	}
	f = filedev_new(name, path);
	f->fd = fd;
	f->dev.ops = &input_ops;
	f->dev.size = (uint64_t)st.st_size;
	f->dev.block_size = block_size;
	*out = &f->dev;
	return 0;
}

int xfer_filedev_open_output(const char *path, const char *name, uint64_t size,
			     uint32_t block_size, struct xfer_dev **out)
{
	struct filedev *f;
	int r;

	r = mkdir_parents(path);
	if (r < 0)
		return r;
	f = filedev_new(name, path);
	f->output = true;
	f->tmp = xcalloc(1, strlen(path) + 32);
	sprintf(f->tmp, "%s.part-XXXXXX", path);
	f->fd = mkostemp(f->tmp, O_CLOEXEC);
	if (f->fd < 0) {
		r = -errno;
		free(f->tmp);
		f->tmp = NULL;
		xfer_filedev_free(&f->dev);
		return r;
	}
	if (ftruncate(f->fd, (off_t)size) < 0) {
		r = -errno;
		xfer_filedev_free(&f->dev);
		return r;
	}
	(void)fchmod(f->fd, 0644);
	f->dev.ops = &output_ops;
	f->dev.size = size;
	f->dev.block_size = block_size;
	f->written = xcalloc((size + (uint64_t)block_size * 64 - 1) / ((uint64_t)block_size * 64) + 1, 8);
	r = writer_start(f, block_size);
	if (r < 0) {
		xfer_filedev_free(&f->dev);
		return r;
	}
	*out = &f->dev;
	return 0;
}

int xfer_filedev_commit(struct xfer_dev *d)
{
	struct filedev *f = d->ctx;

	if (!f->tmp)
		return 0;
	if (f->wq) {
		int r = writer_drain(f->wq);
		if (r < 0)
			return r;
	}
	if (fsync(f->fd) < 0)
		return -errno;
	if (rename(f->tmp, f->path) < 0)
		return -errno;
	free(f->tmp);
	f->tmp = NULL;
	return 0;
}

const char *xfer_filedev_path(const struct xfer_dev *d)
{
	const struct filedev *f = d->ctx;
	return f->path;
}

void xfer_filedev_free(struct xfer_dev *d)
{
	struct filedev *f;

	if (!d)
		return;
	f = d->ctx;
	writer_stop(f->wq);
	if (f->fd >= 0)
		close(f->fd);
	if (f->tmp)
		(void)unlink(f->tmp);
	free(f->tmp);
	free(f->written);
	free(f->name);
	free(f->path);
	pthread_mutex_destroy(&f->ext_lock);
	free(f);
}
