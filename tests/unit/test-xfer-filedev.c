/*
 * File devices: an input answers every block exactly like a plain read of
 * the file, whether the block is data, hole or a mix of extents (the extent
 * cache must never answer a stale hole), and an output written out of order
 * past the writeback chunk commits to the same bytes, with zero pages left as
 * holes.
 */
#include "config.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/xfer/filedev.h"
#include "tests/tap.h"

#define BS 65536u
#define NB 200u
#define SIZE ((uint64_t)NB * BS - 3000) /* a short last block */

static uint64_t rng = 88172645463325252ull;
static uint32_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)rng;
}

int main(void)
{
	char dir[] = "/tmp/test-xfer-filedev.XXXXXX", in[64], outp[64];
	uint8_t *img = calloc(1, SIZE), *buf = malloc(BS);
	struct xfer_dev *d = NULL, *o = NULL;
	int bad = 0;

	if (!mkdtemp(dir) || !img || !buf) {
		ok(0, "temporary directory created");
		return done_testing();
	}
	snprintf(in, sizeof(in), "%s/in.img", dir);
	snprintf(outp, sizeof(outp), "%s/sub/out.img", dir);

	/* Page-sized extents: runs of data and holes of random lengths, a big
	 * data run over several blocks, and data in the last page. */
	int fd = open(in, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ok(fd >= 0 && ftruncate(fd, (off_t)SIZE) == 0, "sparse input created");
	for (uint64_t pg = 0; pg * 4096 < SIZE;) {
		uint32_t run = 1 + next_rand() % 12;
		bool data = next_rand() % 3 == 0 || (pg >= 1000 && pg < 1400);
		for (uint32_t k = 0; k < run && pg * 4096 < SIZE; k++, pg++) {
			uint64_t off = pg * 4096, n = SIZE - off < 4096 ? SIZE - off : 4096;
			if (!data && (pg + 1) * 4096 < SIZE)
				continue;
			for (uint64_t i = 0; i < n; i++)
				img[off + i] = (uint8_t)(next_rand() | 1);
			if (pwrite(fd, img + off, n, (off_t)off) != (ssize_t)n)
				bad++;
		}
	}
	close(fd);
	is_int(bad, 0, "input written");

	is_int(xfer_filedev_open_input(in, "d", BS, &d), 0, "input opened");
	if (!d)
		goto out;
	/* Forward, backward and random orders exercise the extent cache. */
	for (int pass = 0; pass < 3; pass++) {
		bad = 0;
		for (uint32_t i = 0; i < NB; i++) {
			uint64_t b = pass == 0 ? i : pass == 1 ? NB - 1 - i : next_rand() % NB;
			uint32_t len = xfer_dev_block_len(d, b);
			memset(buf, 0xAA, BS);
			ssize_t n = d->ops->read_block(d, b, buf);
			bad += n != (ssize_t)len || memcmp(buf, img + b * BS, len) != 0;
		}
		is_int(bad, 0, "every block reads like the file (order %d)", pass);
	}

	/* Output: blocks delivered in a shuffled order, some twice. */
	is_int(xfer_filedev_open_output(outp, "d", SIZE, BS, &o), 0, "output opened");
	if (!o)
		goto out;
	uint32_t order[NB];
	for (uint32_t i = 0; i < NB; i++)
		order[i] = i;
	for (uint32_t i = NB - 1; i > 0; i--) {
		uint32_t j = next_rand() % (i + 1), t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	bad = 0;
	for (uint32_t i = 0; i < NB; i++) {
		uint64_t b = order[i];
		uint32_t len = xfer_dev_block_len(o, b);
		if (i % 7 == 0) {
			memset(buf, 0x55, len); /* a stale version, overwritten below */
			bad += o->ops->deliver(o, b, buf, len) != 0;
		}
		bad += o->ops->deliver(o, b, img + b * BS, len) != 0;
	}
	is_int(bad, 0, "every block delivered");
	is_int(xfer_filedev_commit(o), 0, "output committed");
	uint8_t *got = malloc(SIZE);
	fd = open(outp, O_RDONLY | O_CLOEXEC);
	ok(fd >= 0 && got && pread(fd, got, SIZE, 0) == (ssize_t)SIZE && memcmp(got, img, SIZE) == 0,
	   "committed output equals the input");
	struct stat st = { 0 };
	int sr = fd >= 0 ? fstat(fd, &st) : -1;
	ok(sr == 0 && (uint64_t)st.st_blocks * 512 < SIZE,
	   "zero pages stayed holes (%llu of %llu bytes allocated)",
	   (unsigned long long)st.st_blocks * 512, (unsigned long long)SIZE);
	if (fd >= 0)
		close(fd);
	free(got);
out:
	xfer_filedev_free(d);
	xfer_filedev_free(o);
	unlink(in);
	unlink(outp);
	snprintf(in, sizeof(in), "%s/sub", dir);
	rmdir(in);
	rmdir(dir);
	free(img);
	free(buf);
	done_testing();
}
