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

#include "core/util.h"
#include "core/xfer/filedev.h"

struct filedev {
	struct xfer_dev dev;
	int fd;
	char *name;
	char *path;    /* final path */
	char *tmp;     /* output: the temporary file until committed */
	uint64_t *written; /* output: blocks written at least once */
	bool output;
};

static ssize_t input_read(struct xfer_dev *d, uint64_t block, void *buf)
{
	struct filedev *f = d->ctx;
	uint64_t off = block * d->block_size;
	uint32_t len = xfer_dev_block_len(d, block);
	size_t got = 0;

	/* A hole covering the whole block reads as zeros without I/O. */
	off_t data = lseek(f->fd, (off_t)off, SEEK_DATA);
	if ((data < 0 && errno == ENXIO) || (data >= 0 && (uint64_t)data >= off + len)) {
		memset(buf, 0, len);
		return len;
	}
	while (got < len) {
		ssize_t n = pread(f->fd, (uint8_t *)buf + got, len - got, (off_t)(off + got));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static const struct xfer_dev_ops input_ops = {
	.read_block = input_read,
};

static int write_all_at(int fd, const uint8_t *p, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pwrite(fd, p + done, len - done, (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	return 0;
}

#define OUT_PAGE 4096u
static int output_deliver(struct xfer_dev *d, uint64_t block, const void *data, size_t len)
{
	struct filedev *f = d->ctx;
	uint64_t off = block * d->block_size;
	const uint8_t *p = data;


	if (f->written[block / 64] >> (block % 64) & 1)
		return write_all_at(f->fd, p, len, off);
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
		int r = write_all_at(f->fd, p + pos, end - pos, off + pos);
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
