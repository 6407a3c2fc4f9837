/*
 * Test helper: compare two files that may be huge and sparse without
 * reading their holes. Only ranges where either file has data (SEEK_DATA)
 * are read; a range that is a hole in both is equal by definition.
 * Exit 0 when equal, 1 when different, 2 on error.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Start of the next data at or after POS, or SIZE. */
static off_t next_data(int fd, off_t pos, off_t size)
{
	off_t d = lseek(fd, pos, SEEK_DATA);

	return d < 0 ? size : d;
}

static off_t next_hole(int fd, off_t pos, off_t size)
{
	off_t h = lseek(fd, pos, SEEK_HOLE);

	return h < 0 || h > size ? size : h;
}

int main(int argc, char **argv)
{
	static char a[1 << 20], b[1 << 20];
	struct stat sa, sb;
	int fa, fb;
	off_t pos = 0;

	if (argc != 3) {
		fprintf(stderr, "usage: %s FILE1 FILE2\n", argv[0]);
		return 2;
	}
	fa = open(argv[1], O_RDONLY | O_CLOEXEC);
	fb = open(argv[2], O_RDONLY | O_CLOEXEC);
	if (fa < 0 || fb < 0 || fstat(fa, &sa) < 0 || fstat(fb, &sb) < 0) {
		perror("open");
		return 2;
	}
	if (sa.st_size != sb.st_size) {
		fprintf(stderr, "sizes differ: %lld and %lld\n", (long long)sa.st_size,
			(long long)sb.st_size);
		return 1;
	}
	while (pos < sa.st_size) {
		off_t da = next_data(fa, pos, sa.st_size), db = next_data(fb, pos, sa.st_size);
		off_t start = da < db ? da : db, end;

		if (start >= sa.st_size)
			break;
		/* Compare up to where both files have a hole again. */
		end = start == da ? next_hole(fa, start, sa.st_size) : next_hole(fb, start, sa.st_size);
		while (start < end) {
			size_t n = end - start < (off_t)sizeof a ? (size_t)(end - start) : sizeof a;

			if (pread(fa, a, n, start) != (ssize_t)n || pread(fb, b, n, start) != (ssize_t)n) {
				perror("read");
				return 2;
			}
			if (memcmp(a, b, n) != 0) {
				fprintf(stderr, "files differ in [%lld, %lld)\n", (long long)start,
					(long long)(start + (off_t)n));
				return 1;
			}
			start += (off_t)n;
		}
		pos = end;
	}
	return 0;
}
