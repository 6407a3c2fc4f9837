/*
 * The descriptor I/O loops declared in io.h. Kept free of any library but
 * libc (and of util.c: only util.h's inline cleanups), because the guest
 * programs link this file statically.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/io.h"
#include "core/util.h"

/*
 * One loop for write, pwrite and send. A transfer of zero bytes for a
 * non-empty request would repeat forever, so it is reported as -EIO.
 */
enum io_op { IO_WRITE, IO_PWRITE, IO_SEND };

static int put_all(enum io_op op, int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;
	size_t done = 0;

	while (done < len) {
		ssize_t n;

		switch (op) {
		case IO_PWRITE:
			n = pwrite(fd, p + done, len - done, (off_t)(off + done));
			break;
		case IO_SEND:
			n = send(fd, p + done, len - done, MSG_NOSIGNAL);
			break;
		default:
			n = write(fd, p + done, len - done);
			break;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		done += (size_t)n;
	}
	return 0;
}

int write_all(int fd, const void *buf, size_t len)
{
	return put_all(IO_WRITE, fd, buf, len, 0);
}

int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	return put_all(IO_PWRITE, fd, buf, len, off);
}

int send_all(int fd, const void *buf, size_t len)
{
	return put_all(IO_SEND, fd, buf, len, 0);
}

static ssize_t get_full(bool positioned, int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;
	size_t done = 0;

	if (len > SSIZE_MAX)
		return -EINVAL;
	while (done < len) {
		ssize_t n = positioned ? pread(fd, p + done, len - done, (off_t)(off + done))
				       : read(fd, p + done, len - done);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

ssize_t read_full(int fd, void *buf, size_t len)
{
	return get_full(false, fd, buf, len, 0);
}

ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	return get_full(true, fd, buf, len, off);
}

int pread_exact(int fd, void *buf, size_t len, uint64_t off)
{
	ssize_t n = pread_full(fd, buf, len, off);

	if (n < 0)
		return (int)n;
	return (size_t)n == len ? 0 : -ENODATA;
}

ssize_t read_small_file(const char *path, char *buf, size_t len)
{
	_cleanup_close_ int fd = -EBADF;
	ssize_t n;

	if (len == 0)
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read_full(fd, buf, len - 1);
	if (n < 0)
		return n;
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		n--;
	buf[n] = '\0';
	return n;
}
