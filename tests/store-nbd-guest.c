/*
 * The kernel NBD exposure for real, run inside a QEMU guest whose kernel has
 * the nbd module (tests/store-nbd-kernel.sh boots it): configure /dev/nbdN
 * through generic netlink, write and read it, map it MAP_SHARED and flush,
 * serve a destination device whose blocks arrive on demand, drop cached
 * pages on a dirty list, and disconnect. Prints TAP on stdout.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/fs.h>

#include "core/store/store.h"
#include "tests/tap.h"

#define BS (64u * 1024u)
#define NB 128u /* 8 MiB */

static struct store_device *make_dev(const char *name, bool destination)
{
	char path[256];
	struct store_provider *f = NULL;
	struct store_device *d = NULL;

	snprintf(path, sizeof(path), "/tmp/%s.img", name);
	if (store_file_open(path, STORE_FILE_CREATE, NB * BS, &f) < 0)
		return NULL;
	struct store_device_opts o = { .name = name, .block_size = BS, .destination = destination };
	if (store_device_new(&o, f, &d) < 0) {
		store_close(f);
		return NULL;
	}
	return d;
}

static bool stack_bytes_are(struct store_device *d, uint64_t off, size_t len, int byte)
{
	_cleanup_free_ unsigned char *buf = malloc(len);
	if (!buf || store_read_at(store_device_stack(d), buf, len, off) != (ssize_t)len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (buf[i] != byte)
			return false;
	return true;
}

static bool fd_bytes_are(int fd, uint64_t off, size_t len, int byte)
{
	_cleanup_free_ unsigned char *buf = malloc(len);
	if (!buf || pread(fd, buf, len, (off_t)off) != (ssize_t)len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (buf[i] != byte)
			return false;
	return true;
}

/* The "source" of the destination test: whatever is asked for arrives at once. */
static int version = 0x61;
static unsigned requests;

static void on_request(void *ctx, struct store_device *dev, uint64_t block)
{
	unsigned char *buf = malloc(BS);

	(void)ctx;
	if (!buf)
		return;
	__atomic_fetch_add(&requests, 1, __ATOMIC_SEQ_CST);
	memset(buf, __atomic_load_n(&version, __ATOMIC_SEQ_CST), BS);
	store_device_deliver(dev, block, buf, store_device_block_len(dev, block));
	free(buf);
}

static void test_source(void)
{
	struct store_device *d = make_dev("disk", false);
	struct store_expose *e = NULL;
	struct store_expose_opts o = { .kind = STORE_EXPOSE_NBD };
	unsigned char buf[BS];
	uint64_t size = 0;

	is_int(store_expose_new(&o, &d, 1, &e), 0, "nbd: connect a device through netlink");
	if (!e) {
		store_device_free(d);
		return;
	}
	const char *path = store_expose_path(e, 0);
	ok(path && !strncmp(path, "/dev/nbd", 8), "nbd: it is %s", path ? path : "(none)");
	int fd = open(path, O_RDWR | O_CLOEXEC);
	ok(fd >= 0, "nbd: open it");
	int r = fd >= 0 ? ioctl(fd, BLKGETSIZE64, &size) : -1;
	ok(r == 0 && size == NB * BS, "nbd: the block device has the device's size (%llu)",
	   (unsigned long long)size);

	store_tracker_track_all(store_device_tracker(d));
	memset(buf, 0x5a, BS);
	ok(pwrite(fd, buf, BS, 16 * BS) == BS && fsync(fd) == 0, "nbd: write a block and fsync");
	ok(stack_bytes_are(d, 16 * BS, BS, 0x5a), "nbd: the write is in the device");
	struct store_bitmap dirty;
	store_tracker_sync(store_device_tracker(d), &dirty);
	ok(store_bitmap_count(&dirty) == 1 && store_bitmap_test(&dirty, 16), "nbd: and block 16 is dirty");
	store_bitmap_free(&dirty);

	memset(buf, 0x33, BS);
	store_device_write(d, buf, BS, 40 * BS);
	ok(fd_bytes_are(fd, 40 * BS, BS, 0x33), "nbd: a read returns the device's data");

	store_tracker_sync(store_device_tracker(d), &dirty); /* start clean */
	store_bitmap_free(&dirty);
	store_tracker_track_all(store_device_tracker(d));
	char *map = fd >= 0 ? mmap(NULL, NB * BS, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) : MAP_FAILED;
	ok(map != MAP_FAILED, "nbd: map the block device MAP_SHARED");
	if (map != MAP_FAILED) {
		memset(map + 32 * BS + 4096, 0xa1, 4096);
		diag("dirty before the flush: %llu", (unsigned long long)store_tracker_dirty_count(
							       store_device_tracker(d)));
		is_int(store_expose_flush(e, 0), 0, "nbd: flush through the exposure");
		store_tracker_sync(store_device_tracker(d), &dirty);
		ok(store_bitmap_test(&dirty, 32), "nbd: the mapped write reached the tracker");
		store_bitmap_free(&dirty);
		ok(stack_bytes_are(d, 32 * BS + 4096, 4096, 0xa1), "nbd: and the device");
		munmap(map, NB * BS);
	}
	if (fd >= 0)
		close(fd);

	char pidfile[64];
	snprintf(pidfile, sizeof(pidfile), "/sys/block/%s/pid", path + 5);
	ok(access(pidfile, F_OK) == 0, "nbd: %s is connected", pidfile);
	store_expose_free(e);
	ok(access(pidfile, F_OK) < 0, "nbd: disconnected on close");
	store_device_free(d);
}

static void test_destination(void)
{
	struct store_device *d = make_dev("memory", true);
	struct store_expose *e = NULL;
	struct store_expose_opts o = { .kind = STORE_EXPOSE_NBD };

	store_wait_set_request(store_device_wait(d), on_request, NULL);
	is_int(store_expose_new(&o, &d, 1, &e), 0, "nbd dest: connect a destination device");
	if (!e) {
		store_device_free(d);
		return;
	}
	const char *path = store_expose_path(e, 0);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ok(fd >= 0 && fd_bytes_are(fd, 20 * BS, BS, 0x61), "nbd dest: a read gets blocks on demand");
	ok(__atomic_load_n(&requests, __ATOMIC_SEQ_CST) > 0, "nbd dest: through %u requests", requests);

	/* a dirty list: the cached pages must go, the new version must be read */
	__atomic_store_n(&version, 0x62, __ATOMIC_SEQ_CST);
	uint64_t inv[] = { 20 };
	store_wait_invalidate(store_device_wait(d), inv, 1);
	ok(fd >= 0 && fd_bytes_are(fd, 20 * BS, BS, 0x62), "nbd dest: after a dirty list the new version is read");

	/*
	 * A version that reached the device while its old pages stayed cached
	 * (a read under way when the list came: BLKFLSBUF skips locked pages)
	 * goes at the settle before a VM loads.
	 */
	ok(fd >= 0 && fd_bytes_are(fd, 30 * BS, BS, 0x62), "nbd dest: block 30 read, so cached");
	static uint8_t blk[BS];
	memset(blk, 0x63, BS);
	store_device_write(d, blk, BS, 30 * BS);
	ok(fd >= 0 && fd_bytes_are(fd, 30 * BS, BS, 0x62), "nbd dest: a change the cache was not told of stays unseen");
	store_expose_settle(e);
	ok(fd >= 0 && fd_bytes_are(fd, 30 * BS, BS, 0x63), "nbd dest: the settle drops the cache: the new version is read");

	store_wait_fail(store_device_wait(d), -EIO);
	uint64_t inv2[] = { 90 };
	store_wait_invalidate(store_device_wait(d), inv2, 1);
	char b[512];
	ok(fd >= 0 && pread(fd, b, sizeof(b), 90 * BS) < 0, "nbd dest: a missing block after a failure is an error");
	if (fd >= 0)
		close(fd);
	store_expose_free(e);
	store_device_free(d);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	ok(store_nbd_available(), "the nbd module is loaded");
	is_int(store_expose_auto(), STORE_EXPOSE_NBD, "auto picks nbd");
	test_source();
	test_destination();
	return done_testing();
}
