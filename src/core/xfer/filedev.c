/*
 * File-backed migration devices. Inputs answer holes from SEEK_DATA so that
 * sparse regions are never read; outputs skip all-zero blocks that were never
 * written, so a mostly-zero device stays sparse at the destination.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
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
	bool output;
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
		off_t data = lseek(f->fd, (off_t)pos, SEEK_DATA);
		if (data < 0 && errno != ENXIO)
			return -errno;
		uint64_t data_at = data < 0 || (uint64_t)data > end ? end : (uint64_t)data;
		memset(p + (pos - off), 0, data_at - pos);
		pos = data_at;
		if (pos >= end)
			break;
		off_t hole = lseek(f->fd, (off_t)pos, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		uint64_t hole_at = (uint64_t)hole > end || (uint64_t)hole <= pos ? end : (uint64_t)hole;
		ssize_t n = pread_full(f->fd, p + (pos - off), hole_at - pos, pos);
		if (n < 0)
			return n;
		if ((uint64_t)n < hole_at - pos) {
			/* The file shrank under us: the rest reads as zeros. */
			memset(p + (pos - off) + n, 0, end - pos - (uint64_t)n);
			break;
		}
		pos = hole_at;
	}
	return len;
}

static const struct xfer_dev_ops input_ops = {
	.read_block = input_read,
};

#define OUT_PAGE 4096u
static int output_deliver(struct xfer_dev *d, uint64_t block, const void *data, size_t len)
{
	struct filedev *f = d->ctx;
	uint64_t off = block * d->block_size;
	const uint8_t *p = data;


	output_written(f, off, len);
	if (f->written[block / 64] >> (block % 64) & 1)
		return pwrite_all(f->fd, p, len, off);
	/* First version of the block in a fresh sparse file: zero pages are
	 * holes already, so only the runs of non-zero pages are written. This
	 * keeps memory-like devices sparse and their final fsync short. */
	f->written[block / 64] |= 1ull << (block % 64);
	size_t pos = 0;
	while (pos < len) {
		size_t n = len - pos < OUT_PAGE ? len - pos : OUT_PAGE;
		if (xfer_is_zero(p + pos, n)) {
			pos += n;
			continue;
		}
		size_t end = pos + n;
		while (end < len) {
			size_t m = len - end < OUT_PAGE ? len - end : OUT_PAGE;
			if (xfer_is_zero(p + end, m))
				break;
			end += m;
		}
		int r = pwrite_all(f->fd, p + pos, end - pos, off + pos);
		if (r < 0)
			return r;
		pos = end;
	}
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
	*out = &f->dev;
	return 0;
}

int xfer_filedev_commit(struct xfer_dev *d)
{
	struct filedev *f = d->ctx;

	if (!f->tmp)
		return 0;
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
	if (f->fd >= 0)
		close(f->fd);
	if (f->tmp)
		(void)unlink(f->tmp);
	free(f->tmp);
	free(f->written);
	free(f->name);
	free(f->path);
	free(f);
}
