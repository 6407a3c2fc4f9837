/*
 * The file provider: a device backed by one regular file (or block device),
 * read and written with pread/pwrite, so it is safe from many threads.
 * Holes are reported through SEEK_DATA so that all-zero ranges of a sparse
 * base need not be read or sent.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "core/io.h"
#include "core/store/store-internal.h"

/*
 * Written data goes to the disk in steps of this much: a flush (a guest's
 * fsync, a suspend) then finds little left to write, instead of everything
 * a migration delivered in the last seconds.
 */
#define WRITEBACK_STEP (8ull << 20)

struct file_provider {
	struct store_provider prov;
	int fd;
	bool rdonly;
	uint64_t size;
	char *path;
	uint64_t unstarted; /* bytes written since writeback was last started; atomic */
};

static struct file_provider *to_file(struct store_provider *p)
{
	return (struct file_provider *)p;
}

/*
 * Reads this large or larger skip the file's holes: SEEK_DATA and SEEK_HOLE
 * find them and zeros are written for them, instead of the kernel filling a
 * page cache page with zeros for each and copying it out. A guest's memory
 * file is mostly holes (a package's; a destination's, where blocks of zeros
 * are not written), and a fault in it reads 1 MiB at a time (QEMU advises
 * huge pages, so the kernel reads 4 MiB around each fault).
 */
#define HOLE_AWARE_READ (256u << 10)

static ssize_t file_read_at(struct store_provider *p, void *buf, size_t len, uint64_t off)
{
	struct file_provider *f = to_file(p);
	size_t want = store_clip(f->size, len, off);
	uint64_t pos = off, end = off + want, data = off, hole = end;
	char *b = buf;

	while (pos < end) {
		int r = want >= HOLE_AWARE_READ ? next_data(f->fd, pos, end, &data, &hole) : 1;
		if (r < 0) /* no hole known: read it all */
			data = pos, hole = end;
		else if (r == 0)
			data = hole = end;
		memset(b + (pos - off), 0, (size_t)(data - pos));
		ssize_t n = data < hole ? pread_full(f->fd, b + (data - off), (size_t)(hole - data), data) : 0;
		if (n < 0)
			return n;
		if ((uint64_t)n < hole - data) {
			/* the file shrank under us: what is missing reads as zeros */
			memset(b + (data - off) + n, 0, (size_t)(end - data) - (size_t)n);
			break;
		}
		pos = hole;
	}
	return (ssize_t)want;
}

static ssize_t file_write_at(struct store_provider *p, const void *buf, size_t len, uint64_t off)
{
	struct file_provider *f = to_file(p);
	size_t want = store_clip(f->size, len, off);
	int r;

	if (f->rdonly)
		return -EROFS;
	r = pwrite_all(f->fd, buf, want, off);
	if (r < 0)
		return r;
	/* start writing back what is dirty (never waits for it), one writer at a time */
	uint64_t before = __atomic_fetch_add(&f->unstarted, want, __ATOMIC_RELAXED);
	if (before < WRITEBACK_STEP && before + want >= WRITEBACK_STEP) {
		(void)sync_file_range(f->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
		__atomic_store_n(&f->unstarted, 0, __ATOMIC_RELAXED);
	}
	return (ssize_t)want;
}

static uint64_t file_size(struct store_provider *p)
{
	return to_file(p)->size;
}

static int file_flush(struct store_provider *p)
{
	struct file_provider *f = to_file(p);

	if (f->rdonly)
		return 0;
	return fdatasync(f->fd) < 0 ? -errno : 0;
}

static void file_close(struct store_provider *p)
{
	struct file_provider *f = to_file(p);

	if (f->fd >= 0)
		close(f->fd);
	free(f->path);
	free(f);
}

static int file_is_zero(struct store_provider *p, uint64_t off, uint64_t len)
{
	struct file_provider *f = to_file(p);

	if (off >= f->size || len == 0)
		return 1;
	off_t data = lseek(f->fd, (off_t)off, SEEK_DATA);
	if (data < 0)
		return errno == ENXIO ? 1 : 0; /* ENXIO: no data after OFF */
	return (uint64_t)data >= off + len ? 1 : 0;
}

static const struct store_ops file_ops = {
	.name = "file",
	.read_at = file_read_at,
	.write_at = file_write_at,
	.size = file_size,
	.flush = file_flush,
	.close = file_close,
	.is_zero = file_is_zero,
};

int store_file_open(const char *path, enum store_file_mode mode, uint64_t size,
                    struct store_provider **out)
{
	int flags = O_CLOEXEC | (mode == STORE_FILE_RDONLY ? O_RDONLY : O_RDWR);
	_cleanup_close_ int fd = -EBADF;
	struct stat st;

	if (mode == STORE_FILE_CREATE)
		flags |= O_CREAT;
	if (size > STORE_MAX_DEVICE_SIZE)
		return -EFBIG;
	fd = open(path, flags, 0600);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(fd, 0, SEEK_END);
		if (end < 0)
			return -errno;
		st.st_size = end;
	} else if (!S_ISREG(st.st_mode)) {
		return -EINVAL;
	}
	if (mode == STORE_FILE_CREATE) {
		if ((uint64_t)st.st_size != size && ftruncate(fd, (off_t)size) < 0)
			return -errno;
	} else if (size == 0) {
		size = (uint64_t)st.st_size;
		if (size > STORE_MAX_DEVICE_SIZE)
			return -EFBIG;
	} else if ((uint64_t)st.st_size != size) {
		return -EINVAL;
	}

	struct file_provider *f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->path = strdup(path);
	if (!f->path) {
		free(f);
		return -ENOMEM;
	}
	f->prov.ops = &file_ops;
	f->fd = TAKE_FD(fd);
	f->rdonly = mode == STORE_FILE_RDONLY;
	f->size = size;
	*out = &f->prov;
	return 0;
}

const char *store_file_path(struct store_provider *p)
{
	return p && p->ops == &file_ops ? to_file(p)->path : NULL;
}
