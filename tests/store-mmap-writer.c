/*
 * Test helper: a separate process that touches an exposed device file the
 * way a VMM does. Usage:
 *   store-mmap-writer FILE mmap OFF LEN BYTE   map MAP_SHARED, fill, unmap (no msync)
 *   store-mmap-writer FILE write OFF LEN BYTE  pwrite
 *   store-mmap-writer FILE read OFF LEN BYTE   read and check every byte is BYTE
 *   store-mmap-writer FILE sum OFF LEN 0        print the FNV-1a 64 hash of the range
 *   store-mmap-writer FILE mmap-loop OFF LEN SEED
 *     map MAP_SHARED and keep writing pseudo-random bytes to pseudo-random
 *     pages of the range until end of input (prints "ready" after the
 *     first round), then unmap and close
 * "mmap-hold" and "write-hold" do the same, then keep the file open (and
 * mapped), print "ready" and wait for end of input before exiting, as a VMM
 * that keeps running would: closing a FUSE file writes its pages back, so
 * only a held file shows what fsync itself does.
 * Exit 0 on success, 1 on a mismatch, 2 on a failed call (message on stderr).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/util.h"

static void wait_for_eof(void)
{
	char c;

	printf("ready\n");
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		;
}

int main(int argc, char **argv)
{
	uint64_t off, len;
	uint32_t byte;

	if (argc != 6 || parse_u64(argv[3], &off) < 0 || parse_u64(argv[4], &len) < 0 ||
	    parse_u32(argv[5], &byte) < 0 ||
	    (byte > 255 && strcmp(argv[2], "mmap-loop") && strcmp(argv[2], "sum")) || len == 0 ||
	    len > (1u << 30)) {
		fprintf(stderr, "usage: %s FILE mmap|write|read OFF LEN BYTE\n", argv[0]);
		return 2;
	}
	char mode[16];
	bool hold = false;
	snprintf(mode, sizeof(mode), "%s", argv[2]);
	char *dash = strstr(mode, "-hold");
	if (dash && !dash[5]) {
		*dash = 0;
		hold = true;
	}
	int fd = open(argv[1], (strcmp(mode, "read") && strcmp(mode, "sum") ? O_RDWR : O_RDONLY) |
	                           O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "open %s: %m\n", argv[1]);
		return 2;
	}
	if (!strcmp(mode, "sum")) {
		uint64_t h = 1469598103934665603ull;
		unsigned char *buf = malloc(1 << 20);
		if (!buf)
			return 2;
		for (uint64_t done = 0; done < len;) {
			size_t want = len - done > (1 << 20) ? (1 << 20) : (size_t)(len - done);
			ssize_t n = pread(fd, buf, want, (off_t)(off + done));
			if (n <= 0) {
				fprintf(stderr, "pread: %s\n",
				        n < 0 ? strerror(errno) : "end of file");
				free(buf);
				return 2;
			}
			for (ssize_t i = 0; i < n; i++)
				h = (h ^ buf[i]) * 1099511628211ull;
			done += (uint64_t)n;
		}
		free(buf);
		printf("%016llx\n", (unsigned long long)h);
	} else if (!strcmp(mode, "mmap-loop")) {
		long pg = sysconf(_SC_PAGESIZE);
		uint64_t start = off / (uint64_t)pg * (uint64_t)pg;
		size_t maplen = (size_t)(off + len - start);
		unsigned char *p =
		    mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)start);
		uint64_t x = byte * 2654435761u + 1, rounds = 0;
		if (p == MAP_FAILED) {
			fprintf(stderr, "mmap: %m\n");
			return 2;
		}
		for (;;) {
			for (int i = 0; i < 64; i++) {
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				size_t at = (size_t)(x % maplen) & ~(size_t)7;
				memcpy(p + at, &x, at + 8 <= maplen ? 8 : maplen - at);
			}
			if (++rounds == 1) {
				printf("ready\n");
				fflush(stdout);
			}
			struct pollfd in = {.fd = 0, .events = POLLIN};
			if (poll(&in, 1, 0) > 0)
				break; /* end of input (or data): stop */
		}
		munmap(p, maplen);
	} else if (!strcmp(mode, "mmap")) {
		long pg = sysconf(_SC_PAGESIZE);
		uint64_t start = off / (uint64_t)pg * (uint64_t)pg;
		size_t maplen = (size_t)(off + len - start);
		char *p = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)start);
		if (p == MAP_FAILED) {
			fprintf(stderr, "mmap: %m\n");
			return 2;
		}
		memset(p + (off - start), (int)byte, (size_t)len);
		/* no msync: the pages stay dirty in the page cache for drafter to flush */
		if (hold)
			wait_for_eof();
		munmap(p, maplen);
	} else {
		char *buf = malloc((size_t)len);
		if (!buf)
			return 2;
		if (!strcmp(mode, "write")) {
			memset(buf, (int)byte, (size_t)len);
			if (pwrite(fd, buf, (size_t)len, (off_t)off) != (ssize_t)len) {
				fprintf(stderr, "pwrite: %m\n");
				free(buf);
				return 2;
			}
		} else {
			ssize_t n = pread(fd, buf, (size_t)len, (off_t)off);
			if (n < 0) {
				fprintf(stderr, "pread: %m\n");
				free(buf);
				return 2;
			}
			bool same = n == (ssize_t)len;
			for (ssize_t i = 0; i < n; i++)
				same &= (unsigned char)buf[i] == byte;
			if (!same) {
				free(buf);
				return 1;
			}
		}
		free(buf);
		if (hold)
			wait_for_eof();
	}
	close(fd);
	return 0;
}
