/*
 * Whole-buffer I/O on descriptors: the read and write loops that retry after
 * signals and short transfers, shared by the core modules and the guest
 * programs (this file and io.c use libc only, so that the static guest
 * binaries can compile them too).
 */
#ifndef DRAFTER_IO_H
#define DRAFTER_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Write all LEN bytes: 0, or -errno (-EIO when the descriptor takes nothing). */
int write_all(int fd, const void *buf, size_t len);
/* The same at offset OFF of a file. */
int pwrite_all(int fd, const void *buf, size_t len, uint64_t off);
/* The same on a socket with MSG_NOSIGNAL: a gone peer is -EPIPE, never SIGPIPE. */
int send_all(int fd, const void *buf, size_t len);

/*
 * Read until LEN bytes or end of file: the number of bytes read (less than
 * LEN only at end of file), or -errno. Callers decide what a short read means.
 */
ssize_t read_full(int fd, void *buf, size_t len);
ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off);
/* All LEN bytes at OFF: 0, -errno, or -ENODATA when the file ends first. */
int pread_exact(int fd, void *buf, size_t len, uint64_t off);

/*
 * Read a small text file (sysctl, sysfs, procfs) into BUF as a string of at
 * most LEN - 1 bytes, without its trailing newlines and blanks: the string's
 * length, or -errno. A longer file is cut at LEN - 1 bytes.
 */
ssize_t read_small_file(const char *path, char *buf, size_t len);

#endif
