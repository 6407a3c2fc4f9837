/*
 * Unit tests of the storage engine: file provider and hole detection,
 * copy-on-write overlay (read-through, copy-up, persistence, damaged state
 * files), the dirty tracker under concurrent writers, the volatility order,
 * and the destination's waiting cache.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/store/store.h"
#include "core/store/store-internal.h"
#include "core/util.h"
#include "tests/tap.h"

#define BS 4096u

static char dir[] = "/tmp/test-store.XXXXXX";

static char *path_in(const char *name)
{
	static char buf[4][256];
	static int i;

	i = (i + 1) % 4;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", dir, name);
	return buf[i];
}

static void fill(void *buf, size_t len, unsigned seed)
{
	unsigned char *p = buf;

	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(seed * 31 + i * 7 + 1);
}

static int write_file(const char *path, const void *data, size_t len, off_t off)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	ssize_t n = pwrite(fd, data, len, off);
	close(fd);
	return n == (ssize_t)len ? 0 : -EIO;
}

static off_t file_allocated(const char *path)
{
	struct stat st;

	return stat(path, &st) < 0 ? -1 : (off_t)st.st_blocks * 512;
}

static void test_file(void)
{
	struct store_provider *p = NULL;
	char buf[BS], want[BS];
	const char *f = path_in("sparse");

	is_int(store_file_open(path_in("missing"), STORE_FILE_RDONLY, 0, &p), -ENOENT,
	       "file: opening a missing file fails with ENOENT");
	is_int(store_file_open(f, STORE_FILE_CREATE, 16 * BS, &p), 0, "file: create 64 KiB sparse");
	is_int(store_size(p), 16 * BS, "file: size");
	is_int(store_is_zero(p, 0, 16 * BS), 1, "file: a new file is all hole");
	fill(want, BS, 1);
	is_int(store_write_at(p, want, BS, 5 * BS), BS, "file: write block 5");
	is_int(store_is_zero(p, 5 * BS, BS), 0, "file: block 5 holds data");
	is_int(store_is_zero(p, 0, 4 * BS), 1, "file: blocks 0-3 are still a hole");
	is_int(store_is_zero(p, 8 * BS, 8 * BS), 1, "file: blocks 8-15 are still a hole");
	is_int(store_read_at(p, buf, BS, 5 * BS), BS, "file: read block 5");
	ok(memcmp(buf, want, BS) == 0, "file: read back what was written");
	is_int(store_read_at(p, buf, BS, 15 * BS + 100), BS - 100,
	       "file: a read across the end is short");
	is_int(store_read_at(p, buf, BS, 16 * BS), 0, "file: a read at the end returns 0");
	is_int(store_write_at(p, want, BS, 16 * BS), 0, "file: a write at the end writes nothing");
	is_str(store_file_path(p), f, "file: path");
	store_close(p);

	is_int(store_file_open(f, STORE_FILE_RDONLY, 0, &p), 0, "file: reopen read-only");
	is_int(store_write_at(p, want, BS, 0), -EROFS, "file: read-only refuses writes");
	store_close(p);
	is_int(store_file_open(f, STORE_FILE_RDWR, 3 * BS, &p), -EINVAL,
	       "file: a size mismatch is refused");
}

/* Large reads skip holes (SEEK_DATA): data, holes and a file that shrank read as they should. */
static void test_file_holes(void)
{
	const size_t mib = 1u << 20;
	const char *f = path_in("holes");
	struct store_provider *p = NULL;
	_cleanup_free_ unsigned char *want = calloc(1, 2 * mib), *buf = malloc(2 * mib);

	is_int(store_file_open(f, STORE_FILE_CREATE, 2 * mib, &p), 0, "holes: a 2 MiB sparse file");
	fill(want + 300 * 1024, 4096, 2);
	fill(want + mib + 10 * 1024, 64 * 1024, 3);
	fill(want + 2 * mib - 4096, 4096, 4);
	ok(store_write_at(p, want + 300 * 1024, 4096, 300 * 1024) == 4096 &&
	   store_write_at(p, want + mib + 10 * 1024, 64 * 1024, mib + 10 * 1024) == 64 * 1024 &&
	   store_write_at(p, want + 2 * mib - 4096, 4096, 2 * mib - 4096) == 4096,
	   "holes: data at 300 KiB, 1 MiB + 10 KiB and in the last page");
	memset(buf, 0xee, 2 * mib);
	is_int(store_read_at(p, buf, 2 * mib, 0), (long long)(2 * mib), "holes: read all 2 MiB");
	ok(memcmp(buf, want, 2 * mib) == 0, "holes: data where written, zeros between");
	memset(buf, 0xee, 2 * mib);
	is_int(store_read_at(p, buf, mib, 512 * 1024), (long long)mib, "holes: read 1 MiB from 512 KiB");
	ok(memcmp(buf, want + 512 * 1024, mib) == 0, "holes: starting in a hole, ending in one");
	memset(buf, 0xee, 2 * mib);
	is_int(store_read_at(p, buf, 512 * 1024, 1536 * 1024), 512 * 1024, "holes: read the last 512 KiB");
	ok(memcmp(buf, want + 1536 * 1024, 512 * 1024) == 0, "holes: ending with data");
	ok(truncate(f, mib) == 0, "holes: the file shrinks to 1 MiB underneath");
	memset(buf, 0xee, 2 * mib);
	is_int(store_read_at(p, buf, 2 * mib, 0), (long long)(2 * mib), "holes: a read still returns the device size");
	memset(want + mib, 0, mib);
	ok(memcmp(buf, want, 2 * mib) == 0, "holes: what the file lost reads as zeros");
	store_close(p);
}

static void test_overlay(void)
{
	const char *basef = path_in("base"), *ovf = path_in("overlay"), *stf = path_in("state");
	struct store_provider *base = NULL, *ov = NULL;
	_cleanup_free_ char *data = malloc(8 * BS), *buf = malloc(8 * BS);
	struct store_bitmap present;

	fill(data, 8 * BS, 2);
	write_file(basef, data, 8 * BS, 0);
	is_int(store_file_open(basef, STORE_FILE_RDONLY, 0, &base), 0, "overlay: open base");
	is_int(store_overlay_open(base, ovf, stf, BS, &ov), 0, "overlay: open (no state yet)");
	is_int(store_read_at(ov, buf, 8 * BS, 0), 8 * BS, "overlay: read everything");
	ok(memcmp(buf, data, 8 * BS) == 0, "overlay: reads through to the base");

	/* partial write into block 2: copy-up of the whole block */
	char patch[100];
	memset(patch, 0xab, sizeof(patch));
	is_int(store_write_at(ov, patch, sizeof(patch), 2 * BS + 50), sizeof(patch),
	       "overlay: partial write");
	memcpy(data + 2 * BS + 50, patch, sizeof(patch));
	/* full-block write into block 6 */
	fill(data + 6 * BS, BS, 9);
	is_int(store_write_at(ov, data + 6 * BS, BS, 6 * BS), BS, "overlay: full-block write");
	is_int(store_read_at(ov, buf, 8 * BS, 0), 8 * BS, "overlay: read after writes");
	ok(memcmp(buf, data, 8 * BS) == 0, "overlay: sees its writes merged over the base");

	is_int(store_overlay_present(ov, &present), 0, "overlay: present blocks");
	is_int(store_bitmap_count(&present), 2, "overlay: holds exactly two blocks");
	ok(store_bitmap_test(&present, 2) && store_bitmap_test(&present, 6),
	   "overlay: blocks 2 and 6");
	store_bitmap_free(&present);
	is_int(store_is_zero(ov, 0, 8 * BS), 0, "overlay: not all zero (the base has data)");
	store_close(ov);

	/* the base is untouched, the overlay stores only the two blocks */
	_cleanup_free_ char *b2 = malloc(8 * BS);
	fill(b2, 8 * BS, 2);
	int fd = open(basef, O_RDONLY | O_CLOEXEC);
	ok(fd >= 0 && read(fd, buf, 8 * BS) == 8 * BS && memcmp(buf, b2, 8 * BS) == 0,
	   "overlay: the base file is unchanged");
	if (fd >= 0)
		close(fd);
	off_t alloc = file_allocated(ovf);
	ok(alloc >= 0 && alloc <= 2 * BS,
	   "overlay: overlay file allocates only changed blocks (%lld bytes)", (long long)alloc);

	/* reopen: the state file brings the blocks back */
	base = NULL;
	ov = NULL;
	is_int(store_file_open(basef, STORE_FILE_RDONLY, 0, &base), 0, "overlay: reopen base");
	is_int(store_overlay_open(base, ovf, stf, BS, &ov), 0, "overlay: reopen with state");
	is_int(store_read_at(ov, buf, 8 * BS, 0), 8 * BS, "overlay: read after reopen");
	ok(memcmp(buf, data, 8 * BS) == 0, "overlay: content persisted across reopen");
	is_int(store_overlay_present(ov, &present), 0, "overlay: present after reopen");
	is_int(store_bitmap_count(&present), 2, "overlay: still two blocks");
	store_bitmap_free(&present);
	store_close(ov);

	/* damage the state file in several ways: each is a clean -EBADMSG */
	struct stat st;
	stat(stf, &st);
	_cleanup_free_ char *orig = malloc((size_t)st.st_size);
	fd = open(stf, O_RDONLY | O_CLOEXEC);
	ok(fd >= 0 && read(fd, orig, (size_t)st.st_size) == st.st_size, "overlay: read state file");
	if (fd >= 0)
		close(fd);
	for (int k = 0; k < 3; k++) {
		const char *what[] = {"a flipped bit", "truncation", "another block size"};
		fd = open(stf, O_WRONLY | O_TRUNC | O_CLOEXEC);
		if (k == 0) {
			orig[st.st_size - 1] ^= 0x01;
			(void)!write(fd, orig, (size_t)st.st_size);
			orig[st.st_size - 1] ^= 0x01;
		} else if (k == 1) {
			(void)!write(fd, orig, (size_t)st.st_size - 3);
		} else {
			(void)!write(fd, orig, (size_t)st.st_size);
		}
		close(fd);
		base = NULL;
		ov = NULL;
		store_file_open(basef, STORE_FILE_RDONLY, 0, &base);
		int r = store_overlay_open(base, ovf, stf, k == 2 ? 2 * BS : BS, &ov);
		is_int(r, -EBADMSG, "overlay: state file with %s is refused", what[k]);
		if (r == 0)
			store_close(ov);
		else
			store_close(base);
	}
}

struct writer_arg {
	struct store_device *dev;
	unsigned id;
	unsigned rounds;
	uint64_t nblocks;
	uint32_t *last; /* last value written per block (one writer per block set) */
};

/* Writer id owns blocks b with b % 4 == id; writes a counter into them. */
static void *writer(void *p)
{
	struct writer_arg *a = p;
	uint32_t v[BS / 4];
	unsigned seed = a->id * 7919u + 1;

	for (unsigned i = 1; i <= a->rounds; i++) {
		seed = seed * 1103515245u + 12345u;
		uint64_t b = (seed >> 8) % (a->nblocks / 4) * 4 + a->id;
		for (size_t k = 0; k < BS / 4; k++)
			v[k] = i;
		if (store_device_write(a->dev, v, BS, b * BS) != BS)
			return (void *)1;
		a->last[b] = i;
	}
	return NULL;
}

static void test_tracker(void)
{
	struct store_provider *f = NULL;
	struct store_device *d = NULL;
	struct store_bitmap bm;
	uint64_t *list = NULL;
	size_t n = 0;
	const uint64_t nb = 256;

	store_file_open(path_in("tracked"), STORE_FILE_CREATE, nb * BS, &f);
	struct store_device_opts o = {.name = "disk", .block_size = BS};
	is_int(store_device_new(&o, f, &d), 0, "tracker: device over a file");
	is_int(store_device_blocks(d), nb, "tracker: block count");

	char buf[BS];
	memset(buf, 1, BS);
	store_device_write(d, buf, BS, 3 * BS);
	is_int(store_tracker_dirty_count(store_device_tracker(d)), 0,
	       "tracker: writes before tracking are not dirty");
	is_int(store_device_read_block(d, 3, buf), BS, "tracker: read block 3 for sending");
	store_device_write(d, buf, 10, 3 * BS + 7);
	store_device_write(d, buf, BS, 4 * BS); /* never sent: not dirty */
	is_int(store_tracker_sync_list(store_device_tracker(d), &list, &n), 0, "tracker: sync");
	ok(n == 1 && list[0] == 3, "tracker: only the sent-then-written block is dirty");
	free(list);
	/* a hole sent as zeros without a read is tracked the same */
	is_int(store_device_block_is_zero(d, 20), 1, "tracker: block 20 is a hole");
	is_int(store_device_block_is_zero(d, 4), 0, "tracker: block 4 holds data");
	store_device_write(d, buf, 1, 20 * BS + 5);
	store_tracker_sync_list(store_device_tracker(d), &list, &n);
	ok(n == 1 && list[0] == 20, "tracker: a hole sent as zeros, then written, is dirty");
	free(list);
	is_int(store_tracker_sync_list(store_device_tracker(d), &list, &n), 0,
	       "tracker: sync again");
	is_int(n, 0, "tracker: sync cleared the set");
	free(list);
	store_device_write(d, buf, BS, 3 * BS);
	store_tracker_sync_list(store_device_tracker(d), &list, &n);
	is_int(n, 0, "tracker: a synced block is untracked until read for sending again");
	free(list);

	/* a write spanning blocks marks each */
	store_tracker_track_all(store_device_tracker(d));
	_cleanup_free_ char *three = calloc(3, BS);
	is_int(store_device_write(d, three, 3 * BS, 10 * BS + 100), 3 * BS,
	       "tracker: unaligned write");
	store_tracker_sync(store_device_tracker(d), &bm);
	ok(store_bitmap_count(&bm) == 4 && store_bitmap_test(&bm, 10) && store_bitmap_test(&bm, 13),
	   "tracker: an unaligned 3-block write marks blocks 10-13");
	store_bitmap_free(&bm);

	/*
	 * Concurrent writers against a syncing migrator: after the last sync
	 * and re-read, the migrator's copy must equal the device (no lost write).
	 */
	uint32_t *copy = calloc(nb, sizeof(uint32_t));
	uint32_t *last = calloc(nb, sizeof(uint32_t));
	uint32_t v[BS / 4];
	memset(buf, 0, BS);
	for (uint64_t b = 0; b < nb; b++)
		store_device_write(d, buf, BS, b * BS);
	store_tracker_sync(store_device_tracker(d), &bm);
	store_bitmap_free(&bm);
	for (uint64_t b = 0; b < nb; b++) {
		store_device_read_block(d, b, v);
		copy[b] = v[0];
	}
	pthread_t th[4];
	struct writer_arg wa[4];
	for (unsigned i = 0; i < 4; i++) {
		wa[i] = (struct writer_arg){
		    .dev = d, .id = i, .rounds = 4000, .nblocks = nb, .last = last};
		pthread_create(&th[i], NULL, writer, &wa[i]);
	}
	unsigned syncs = 0, resent = 0;
	bool torn = false;
	for (int round = 0; round < 200; round++) {
		store_tracker_sync_list(store_device_tracker(d), &list, &n);
		syncs++;
		for (size_t i = 0; i < n; i++) {
			store_device_read_block(d, list[i], v);
			copy[list[i]] = v[0];
			resent++;
		}
		free(list);
	}
	bool failed = false;
	for (unsigned i = 0; i < 4; i++) {
		void *res;
		pthread_join(th[i], &res);
		failed |= res != NULL;
	}
	ok(!failed, "tracker: 4 writers x 4000 writes succeeded");
	/* final round after the writers stopped, as after a suspend */
	store_tracker_sync_list(store_device_tracker(d), &list, &n);
	for (size_t i = 0; i < n; i++) {
		store_device_read_block(d, list[i], v);
		copy[list[i]] = v[0];
		resent++;
	}
	free(list);
	uint64_t mismatch = 0;
	for (uint64_t b = 0; b < nb; b++) {
		store_device_read(d, v, BS, b * BS);
		if (copy[b] != v[0] || v[0] != last[b])
			mismatch++;
		for (size_t k = 1; k < BS / 4; k++)
			torn |= v[k] != v[0];
	}
	diag("%u syncs, %u blocks re-sent", syncs, resent);
	is_int(mismatch, 0, "tracker: the synced copy equals the device after concurrent writes");
	ok(!torn, "tracker: no torn blocks");
	free(copy);
	free(last);
	store_device_free(d);
}

static void test_volatility(void)
{
	struct store_volatility *v = NULL;
	uint64_t b;

	is_int(store_volatility_new(8, 60ull * 1000 * 1000 * 1000, &v), 0, "volatility: new");
	store_volatility_add_all(v);
	/* block 1 written 3 times, block 5 twice, block 2 once */
	for (int i = 0; i < 3; i++)
		store_volatility_record(v, 1, 1);
	store_volatility_record(v, 5, 1);
	store_volatility_record(v, 5, 1);
	store_volatility_record(v, 2, 1);
	store_volatility_remove(v, 7);
	is_int(store_volatility_remaining(v), 7, "volatility: 7 blocks available");
	is_int(store_volatility_prioritise(v, 5), 1, "volatility: prioritise 5");
	is_int(store_volatility_prioritise(v, 7), 0,
	       "volatility: a removed block cannot be prioritised");
	uint64_t order[8];
	int types[8], k = 0, r;
	while ((r = store_volatility_next(v, &b)) >= 0 && k < 8) {
		types[k] = r;
		order[k++] = b;
	}
	is_int(r, -ENOENT, "volatility: ends with ENOENT");
	is_int(k, 7, "volatility: every available block handed out once");
	ok(k == 7 && order[0] == 5 && types[0] == 1,
	   "volatility: the requested block comes first as priority");
	ok(k == 7 && order[1] == 0 && order[2] == 3 && order[3] == 4 && order[4] == 6,
	   "volatility: unwritten blocks next, ascending (0 3 4 6)");
	ok(k == 7 && order[5] == 2 && order[6] == 1 && types[6] == 0,
	   "volatility: then least often written (2 before 1)");
	/* a block handed out and added back (dirty) comes again */
	store_volatility_add(v, 4);
	is_int(store_volatility_next(v, &b), 0, "volatility: re-added block");
	is_int(b, 4, "volatility: it is block 4");
	store_volatility_free(v);

	/* ties by recency: of two blocks written once, the older goes first */
	store_volatility_new(4, 60ull * 1000 * 1000 * 1000, &v);
	store_volatility_add_all(v);
	/* a millisecond apart, so that the clock surely tells them apart */
	store_volatility_record(v, 3, 1);
	usleep(1000);
	store_volatility_record(v, 0, 1);
	usleep(1000);
	store_volatility_record(v, 1, 1);
	usleep(1000);
	store_volatility_record(v, 2, 1);
	store_volatility_record(v, 2, 1);
	k = 0;
	while (store_volatility_next(v, &b) >= 0 && k < 4)
		order[k++] = b;
	ok(k == 4 && order[0] == 3 && order[1] == 0 && order[2] == 1 && order[3] == 2,
	   "volatility: equal counts go least recently written first (3 0 1), then 2");
	store_volatility_free(v);

	/* writes older than expiry do not count */
	store_volatility_new(3, 1, &v);
	store_volatility_add_all(v);
	store_volatility_record(v, 0, 1);
	store_volatility_record(v, 0, 1);
	usleep(1000);
	store_volatility_next(v, &b);
	is_int(b, 0, "volatility: expired writes count as none");
	store_volatility_free(v);
}

/* ------------------------------------------------------ waiting cache */

struct req_log {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t blocks[64];
	int n;
};

static void on_request(void *ctx, struct store_device *dev, uint64_t block)
{
	struct req_log *l = ctx;

	(void)dev;
	pthread_mutex_lock(&l->lock);
	if (l->n < 64)
		l->blocks[l->n] = block;
	l->n++;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

static void wait_requests(struct req_log *l, int n)
{
	pthread_mutex_lock(&l->lock);
	while (l->n < n)
		pthread_cond_wait(&l->cond, &l->lock);
	pthread_mutex_unlock(&l->lock);
}

struct reader_arg {
	struct store_device *dev;
	uint64_t off;
	size_t len;
	ssize_t result;
	unsigned char buf[2 * BS];
	bool done;
	pthread_mutex_t *lock;
};

static void *reader(void *p)
{
	struct reader_arg *a = p;
	ssize_t r = store_device_read(a->dev, a->buf, a->len, a->off);

	pthread_mutex_lock(a->lock);
	a->result = r;
	a->done = true;
	pthread_mutex_unlock(a->lock);
	return NULL;
}

static bool is_done(struct reader_arg *a)
{
	pthread_mutex_lock(a->lock);
	bool d = a->done;
	pthread_mutex_unlock(a->lock);
	return d;
}

static void test_wait(void)
{
	struct store_provider *f = NULL;
	struct store_device *d = NULL;
	struct req_log log = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	unsigned char blk[BS], blk2[BS], out[BS];

	store_file_open(path_in("dest"), STORE_FILE_CREATE, 8 * BS, &f);
	struct store_device_opts o = {.name = "memory", .block_size = BS, .destination = true};
	is_int(store_device_new(&o, f, &d), 0, "wait: destination device");
	struct store_wait *w = store_device_wait(d);
	ok(w != NULL, "wait: has a waiting cache");
	is_int(store_wait_missing(w), 8, "wait: all 8 blocks missing at first");
	store_wait_set_request(w, on_request, &log);

	/* three readers of block 2: they block, and exactly one request goes out */
	struct reader_arg ra[3];
	pthread_t th[3];
	for (int i = 0; i < 3; i++) {
		ra[i] =
		    (struct reader_arg){.dev = d, .off = 2 * BS + 10, .len = 100, .lock = &lock};
		pthread_create(&th[i], NULL, reader, &ra[i]);
	}
	wait_requests(&log, 1);
	usleep(20000); /* give the others the chance to (wrongly) ask again */
	pthread_mutex_lock(&log.lock);
	is_int(log.n, 1, "wait: three readers of one block send one request");
	ok(log.blocks[0] == 2, "wait: the request is for block 2");
	pthread_mutex_unlock(&log.lock);
	ok(!is_done(&ra[0]) && !is_done(&ra[1]) && !is_done(&ra[2]),
	   "wait: readers block until delivery");
	fill(blk, BS, 5);
	is_int(store_device_deliver(d, 2, blk, BS), 1, "wait: deliver block 2");
	/* zeros over a hole: present, and the file keeps its hole */
	memset(blk2, 0, BS);
	is_int(store_device_deliver(d, 3, blk2, BS), 1, "wait: deliver a block of zeros");
	ok(store_wait_present(w, 3), "wait: the block of zeros is present");
	int zfd = open(path_in("dest"), O_RDONLY);
	off_t zd = lseek(zfd, 3 * BS, SEEK_DATA);
	ok(zd < 0 || zd >= 4 * BS, "wait: ... and still a hole in the file");
	close(zfd);
	is_int(store_device_read(d, out, BS, 3 * BS), BS, "wait: it reads back");
	ok(mem_is_zero(out, BS), "wait: ... as zeros");
	is_int(store_device_block_is_zero(d, 3), 1, "wait: an arrived hole can be sent on unread");
	is_int(store_device_block_is_zero(d, 1), 0, "wait: a missing one cannot");
	bool all = true;
	for (int i = 0; i < 3; i++) {
		pthread_join(th[i], NULL);
		all &= ra[i].result == 100 && memcmp(ra[i].buf, blk + 10, 100) == 0;
	}
	ok(all, "wait: every reader resumes with the delivered data");
	is_int(store_wait_missing(w), 6, "wait: 6 missing (2 and 3 came)");

	/* a local whole-block write wins over a later delivery */
	fill(blk2, BS, 6);
	is_int(store_device_write(d, blk2, BS, 4 * BS), BS,
	       "wait: local whole-block write of a missing block");
	ok(store_wait_present(w, 4), "wait: it makes the block present without a request");
	is_int(store_device_deliver(d, 4, blk, BS), 0, "wait: the late delivery is dropped");
	store_device_read(d, out, BS, 4 * BS);
	ok(memcmp(out, blk2, BS) == 0, "wait: the local data stayed");

	/* invalidate (dirty list): readers wait for the new version */
	uint64_t inv[] = {2, 4};
	is_int(store_wait_invalidate(w, inv, 2), 0, "wait: invalidate blocks 2 and 4");
	ok(!store_wait_present(w, 2), "wait: block 2 missing again");
	ok(store_wait_present(w, 4), "wait: block 4 written locally stays present");
	uint64_t bad[] = {99};
	is_int(store_wait_invalidate(w, bad, 1), -ERANGE,
	       "wait: an out-of-range dirty list is refused");
	int before = log.n;
	ra[0] = (struct reader_arg){.dev = d, .off = 2 * BS, .len = BS, .lock = &lock};
	pthread_create(&th[0], NULL, reader, &ra[0]);
	wait_requests(&log, before + 1);
	ok(!is_done(&ra[0]), "wait: a read of an invalidated block blocks and asks again");
	fill(blk, BS, 7);
	store_device_deliver(d, 2, blk, BS);
	pthread_join(th[0], NULL);
	ok(ra[0].result == BS && memcmp(ra[0].buf, blk, BS) == 0, "wait: it gets the new version");

	/* a reader of two blocks returns once both are here, with an invalidation between */
	before = log.n;
	ra[1] = (struct reader_arg){.dev = d, .off = 5 * BS, .len = 2 * BS, .lock = &lock};
	pthread_create(&th[1], NULL, reader, &ra[1]);
	wait_requests(&log, before + 2);
	fill(blk, BS, 8);
	store_device_deliver(d, 5, blk, BS);
	usleep(20000);
	ok(!is_done(&ra[1]), "wait: a two-block read waits while its second block is missing");
	uint64_t inv5[] = {5};
	store_wait_invalidate(w, inv5, 1);
	fill(blk2, BS, 9);
	store_device_deliver(d, 6, blk2, BS);
	usleep(20000);
	ok(!is_done(&ra[1]), "wait: ... and while its first block is missing again");
	fill(blk, BS, 10);
	store_device_deliver(d, 5, blk, BS);
	pthread_join(th[1], NULL);
	ok(ra[1].result == 2 * BS && memcmp(ra[1].buf, blk, BS) == 0 &&
	       memcmp(ra[1].buf + BS, blk2, BS) == 0,
	   "wait: it returns once both are here, with the new first block");

	/* fail-all: waiters get -EIO instead of hanging */
	before = log.n;
	ra[2] = (struct reader_arg){.dev = d, .off = 7 * BS, .len = 10, .lock = &lock};
	pthread_create(&th[2], NULL, reader, &ra[2]);
	wait_requests(&log, before + 1);
	store_wait_fail(w, -EIO);
	pthread_join(th[2], NULL);
	is_int(ra[2].result, -EIO, "wait: fail wakes a blocked reader with EIO");
	is_int(store_device_read(d, out, 10, 7 * BS), -EIO,
	       "wait: later reads of missing blocks fail at once");
	is_int(store_device_read(d, out, 10, 2 * BS), 10, "wait: present blocks still read");
	is_int(store_wait_complete(w), -EIO, "wait: complete reports the failure");
	store_device_free(d);

	/* completion: deliver everything, shared-base blocks marked present */
	f = NULL;
	store_file_open(path_in("dest2"), STORE_FILE_CREATE, 4 * BS + 100, &f);
	store_device_new(&o, f, &d);
	w = store_device_wait(d);
	is_int(store_device_blocks(d), 5, "wait: short last block counts");
	is_int(store_device_block_len(d, 4), 100, "wait: last block is 100 bytes");
	struct store_bitmap have;
	store_bitmap_init(&have, 5);
	store_bitmap_set(&have, 0);
	store_bitmap_set(&have, 1);
	store_wait_mark_present(w, &have);
	store_bitmap_free(&have);
	is_int(store_wait_missing(w), 3, "wait: shared-base blocks count as present");
	fill(blk, BS, 9);
	store_device_deliver(d, 2, blk, BS);
	store_device_deliver(d, 3, blk, BS);
	is_int(store_device_deliver(d, 4, blk, BS), -EINVAL,
	       "wait: a delivery of the wrong length is refused");
	store_device_deliver(d, 4, blk, 100);
	is_int(store_wait_complete(w), 0, "wait: complete once every block arrived");
	store_device_free(d);
}

static void *partial_writer(void *p)
{
	struct reader_arg *a = p;
	ssize_t r = store_device_write(a->dev, a->buf, a->len, a->off);

	pthread_mutex_lock(a->lock);
	a->result = r;
	a->done = true;
	pthread_mutex_unlock(a->lock);
	return NULL;
}

static void test_wait_partial(void)
{
	struct store_provider *f = NULL;
	struct store_device *d = NULL;
	struct req_log log = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	unsigned char blk[BS], out[BS];

	store_file_open(path_in("dest3"), STORE_FILE_CREATE, 2 * BS, &f);
	struct store_device_opts o = {.name = "disk", .block_size = BS, .destination = true};
	store_device_new(&o, f, &d);
	store_wait_set_request(store_device_wait(d), on_request, &log);
	struct reader_arg a = {.dev = d, .off = 100, .len = 10, .lock = &lock};
	memset(a.buf, 0xee, 10);
	pthread_t th;
	pthread_create(&th, NULL, partial_writer, &a);
	wait_requests(&log, 1);
	ok(!is_done(&a), "wait: a partial write of a missing block waits for it");
	fill(blk, BS, 3);
	store_device_deliver(d, 0, blk, BS);
	pthread_join(th, NULL);
	is_int(a.result, 10, "wait: then it is written");
	store_device_read(d, out, BS, 0);
	memset(blk + 100, 0xee, 10);
	ok(memcmp(out, blk, BS) == 0, "wait: merged over the delivered block");
	store_device_free(d);
}

/* The prefill's copies (read_present) of blocks delivered as zeros over a hole, then written. */
static void test_wait_holes(void)
{
	struct store_provider *f = NULL;
	struct store_device *d = NULL;
	unsigned char zero[BS] = {0}, blk[BS], out[BS];
	uint64_t gen, inv[] = {0};

	store_file_open(path_in("dest4"), STORE_FILE_CREATE, 2 * BS, &f);
	struct store_device_opts o = {.name = "memory", .block_size = BS, .destination = true};
	is_int(store_device_new(&o, f, &d), 0, "prefill holes: destination device");
	struct store_wait *w = store_device_wait(d);
	is_int(store_device_read_present(d, 0, out, &gen), -EAGAIN, "prefill holes: a missing block is not copied");
	ok(store_device_deliver(d, 0, zero, BS) == 1 && store_device_deliver(d, 1, zero, BS) == 1,
	   "prefill holes: zeros delivered for both blocks");
	memset(out, 0xee, BS);
	is_int(store_device_read_present(d, 0, out, &gen), BS, "prefill holes: a delivered hole is copied");
	ok(mem_is_zero(out, BS), "prefill holes: ... as zeros");
	store_wait_invalidate(w, inv, 1);
	fill(blk, BS, 12);
	is_int(store_device_deliver(d, 0, blk, BS), 1, "prefill holes: data delivered where the hole was");
	store_device_read_present(d, 0, out, &gen);
	ok(memcmp(out, blk, BS) == 0, "prefill holes: the copy is that data, not zeros");
	fill(blk, 10, 13);
	is_int(store_device_write(d, blk, 10, BS + 100), 10, "prefill holes: a local write into the other hole");
	store_device_read_present(d, 1, out, &gen);
	ok(memcmp(out + 100, blk, 10) == 0 && mem_is_zero(out, 100) && mem_is_zero(out + 110, BS - 110),
	   "prefill holes: the copy has the written bytes");
	store_device_free(d);
}

static void test_stack(void)
{
	struct store_provider *p = NULL;
	struct store_bitmap present;
	char buf[BS];
	const char *basef = path_in("stack-base");

	struct store_stack_opts o = {.base = basef, .size = 4 * BS};
	is_int(store_stack_open(&o, &p), 0, "stack: a plain base is created with its size");
	ok(p && !strcmp(p->ops->name, "file") && store_size(p) == 4 * BS,
	   "stack: it is a file provider");
	memset(buf, 0x11, BS);
	store_write_at(p, buf, BS, 0);
	store_close(p);
	o = (struct store_stack_opts){
	    .base = basef, .overlay = path_in("stack-ov"), .block_size = BS};
	is_int(store_stack_open(&o, &p), -EINVAL,
	       "stack: an overlay without a state file is refused");
	o.state = path_in("stack-state");
	is_int(store_stack_open(&o, &p), 0, "stack: base + overlay + state");
	ok(p && !strcmp(p->ops->name, "overlay"), "stack: it is an overlay");
	memset(buf, 0x22, BS);
	store_write_at(p, buf, 100, BS);
	store_overlay_present(p, &present);
	ok(store_bitmap_count(&present) == 1 && store_bitmap_test(&present, 1),
	   "stack: only the written block is in the overlay");
	store_bitmap_free(&present);
	store_read_at(p, buf, BS, 0);
	ok(buf[0] == 0x11, "stack: the rest reads from the base");
	store_close(p);
	o = (struct store_stack_opts){.base = basef, .read_only = true};
	is_int(store_stack_open(&o, &p), 0, "stack: read-only base");
	is_int(store_write_at(p, buf, 1, 0), -EROFS, "stack: which refuses writes");
	store_close(p);
	o = (struct store_stack_opts){.base = path_in("nonexistent")};
	is_int(store_stack_open(&o, &p), -ENOENT, "stack: a missing base without a size is ENOENT");
}

#define CB 1024u

static void test_open_cfg(void)
{
	struct store_device *d = NULL;
	struct cfg_device cd = {
	    .name = "disk", .base = path_in("cfg-base"), .block_size = BS, .expiry_ns = 1000};

	is_int(store_device_open_cfg(&cd, true, 5 * BS, &d), 0,
	       "cfg: destination device, base created");
	ok(d && store_device_wait(d) && store_device_size(d) == 5 * BS &&
	       store_device_blocks(d) == 5,
	   "cfg: with a waiting cache and the source's size");
	store_device_free(d);
	d = NULL;
	is_int(store_device_open_cfg(&cd, false, 0, &d), 0,
	       "cfg: source device over the existing base");
	ok(d && !store_device_wait(d) && !strcmp(store_device_name(d), "disk"),
	   "cfg: named, no waiting cache");
	store_device_free(d);
	d = NULL;
	cd.overlay = path_in("cfg-ov");
	cd.state = path_in("cfg-state");
	is_int(store_device_open_cfg(&cd, true, 6 * BS, &d), -EINVAL,
	       "cfg: a shared base of another size than the source's is refused");
	is_int(store_device_open_cfg(&cd, true, 5 * BS, &d), 0,
	       "cfg: destination over a shared base");
	ok(d && !strcmp(store_device_stack(d)->ops->name, "overlay"),
	   "cfg: its stack is an overlay");
	store_device_free(d);
	is_int(store_expose_kind_from_cfg(EXPOSE_FUSE), STORE_EXPOSE_FUSE, "cfg: exposure fuse");
	is_int(store_expose_kind_from_cfg(EXPOSE_AUTO), STORE_EXPOSE_AUTO, "cfg: exposure auto");
}

struct cow_arg {
	struct store_provider *ov;
	unsigned id;
};

/* Eight threads write disjoint 512-byte slices of the same blocks, all absent at first. */
static void *cow_writer(void *p)
{
	struct cow_arg *a = p;
	char slice[512];

	memset(slice, (int)(0x40 + a->id), sizeof(slice));
	for (uint64_t b = 0; b < CB; b++)
		if (store_write_at(a->ov, slice, sizeof(slice), b * BS + a->id * 512) != 512)
			return (void *)1;
	return NULL;
}

static void test_overlay_concurrent(void)
{
	const char *basef = path_in("cbase");
	struct store_provider *base = NULL, *ov = NULL;
	_cleanup_free_ char *data = malloc(CB * BS), *buf = malloc(CB * BS);

	fill(data, CB * BS, 4);
	write_file(basef, data, CB * BS, 0);
	store_file_open(basef, STORE_FILE_RDONLY, 0, &base);
	if (store_overlay_open(base, path_in("cov"), path_in("cstate"), BS, &ov) < 0) {
		ok(0, "overlay concurrent: open");
		return;
	}
	pthread_t th[8];
	struct cow_arg a[8];
	for (unsigned i = 0; i < 8; i++) {
		a[i] = (struct cow_arg){.ov = ov, .id = i};
		pthread_create(&th[i], NULL, cow_writer, &a[i]);
	}
	bool failed = false;
	for (unsigned i = 0; i < 8; i++) {
		void *res;
		pthread_join(th[i], &res);
		failed |= res != NULL;
	}
	ok(!failed, "overlay concurrent: 8 threads copy up the same blocks");
	for (uint64_t b = 0; b < CB; b++)
		for (unsigned i = 0; i < 8; i++)
			memset(data + b * BS + i * 512, 0x40 + (int)i, 512);
	store_read_at(ov, buf, CB * BS, 0);
	ok(memcmp(buf, data, CB * BS) == 0,
	   "overlay concurrent: no slice lost to a racing copy-up");
	store_close(ov);
}

/* A reader that arrives before the engine set the callback still gets its block asked for. */
static void test_wait_late_callback(void)
{
	struct store_provider *f = NULL;
	struct store_device *d = NULL;
	struct req_log log = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	unsigned char blk[BS];

	store_file_open(path_in("dest4"), STORE_FILE_CREATE, 4 * BS, &f);
	struct store_device_opts o = {.name = "memory", .block_size = BS, .destination = true};
	store_device_new(&o, f, &d);
	struct reader_arg a = {.dev = d, .off = 3 * BS, .len = 10, .lock = &lock};
	pthread_t th;
	pthread_create(&th, NULL, reader, &a);
	usleep(20000); /* let it block first (the test passes either way) */
	store_wait_set_request(store_device_wait(d), on_request, &log);
	wait_requests(&log, 1);
	ok(log.blocks[0] == 3,
	   "wait: a reader waiting before the callback was set asks once it is");
	fill(blk, BS, 1);
	store_device_deliver(d, 3, blk, BS);
	pthread_join(th, NULL);
	is_int(a.result, 10, "wait: and gets its data");
	store_device_free(d);
}

/*
 * Readers, a deliverer and invalidations at once: every block carries
 * (block, version) with version >= 1 in every word, so a reader that saw a
 * block before it arrived (zeros) or half of two versions is caught.
 */
#define SB 32u
struct stress {
	struct store_device *d;
	pthread_mutex_t lock;
	bool stop;
	unsigned bad, reads;
};

static void *stress_reader(void *p)
{
	struct stress *s = p;
	uint32_t v[BS / 4];
	unsigned seed = (unsigned)(uintptr_t)pthread_self();

	for (int i = 0; i < 3000; i++) {
		seed = seed * 1103515245u + 12345u;
		uint64_t b = (seed >> 8) % SB;
		if (store_device_read(s->d, v, BS, b * BS) != BS)
			continue; /* failed at the end: fine */
		bool good = (v[0] >> 16) == b && (v[0] & 0xffff) != 0;
		for (size_t k = 1; k < BS / 4; k++)
			good &= v[k] == v[0];
		pthread_mutex_lock(&s->lock);
		s->reads++;
		s->bad += !good;
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

static void noop_request(void *ctx, struct store_device *dev, uint64_t block)
{
	(void)ctx;
	(void)dev;
	(void)block;
}

/*
 * An in-memory provider that copies in four steps with a yield in between,
 * so that a read racing with a write would see both halves if the device
 * let it (a file rarely shows that).
 */
struct slow_mem {
	struct store_provider prov;
	unsigned char *data;
	uint64_t size;
};

static void slow_copy(unsigned char *to, const unsigned char *from, size_t len)
{
	size_t q = len / 4;

	for (int i = 0; i < 4; i++) {
		size_t n = i == 3 ? len - 3 * q : q;
		for (size_t k = 0; k < n; k++)
			__atomic_store_n(&to[i * q + k],
			                 __atomic_load_n(&from[i * q + k], __ATOMIC_RELAXED),
			                 __ATOMIC_RELAXED);
		sched_yield();
	}
}

static ssize_t slow_read(struct store_provider *p, void *buf, size_t len, uint64_t off)
{
	struct slow_mem *m = (struct slow_mem *)p;
	if (off >= m->size)
		return 0;
	if (len > m->size - off)
		len = (size_t)(m->size - off);
	slow_copy(buf, m->data + off, len);
	return (ssize_t)len;
}

static ssize_t slow_write(struct store_provider *p, const void *buf, size_t len, uint64_t off)
{
	struct slow_mem *m = (struct slow_mem *)p;
	if (off >= m->size)
		return 0;
	if (len > m->size - off)
		len = (size_t)(m->size - off);
	slow_copy(m->data + off, buf, len);
	return (ssize_t)len;
}

static uint64_t slow_size(struct store_provider *p)
{
	return ((struct slow_mem *)p)->size;
}

static void slow_close(struct store_provider *p)
{
	free(((struct slow_mem *)p)->data);
	free(p);
}

static const struct store_ops slow_ops = {
	.name = "slow-memory",
	.read_at = slow_read,
	.write_at = slow_write,
	.size = slow_size,
	.close = slow_close,
};

static void test_wait_stress(void)
{
	struct stress s = {.lock = PTHREAD_MUTEX_INITIALIZER};
	uint32_t v[BS / 4];
	struct slow_mem *m = calloc(1, sizeof(*m));
	m->prov.ops = &slow_ops;
	m->size = SB * BS;
	m->data = calloc(1, SB * BS);
	struct store_provider *f = &m->prov;

	struct store_device_opts o = {.name = "memory", .block_size = BS, .destination = true};
	store_device_new(&o, f, &s.d);
	store_wait_set_request(store_device_wait(s.d), noop_request, NULL);
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, stress_reader, &s);
	/*
	 * As the protocol does it: a dirty list makes blocks missing, then their
	 * new versions arrive. Harsher than the protocol: some blocks still
	 * present get a new version too, while readers read them.
	 */
	uint32_t cur[SB];
	for (uint64_t b = 0; b < SB; b++)
		cur[b] = 1;
	for (uint32_t version = 1; version <= 60; version++) {
		uint64_t dirty[SB / 2];
		bool in[SB] = {false};
		size_t n = 0;
		if (version > 1) {
			for (uint64_t i = 0; i < SB / 2; i++) {
				uint64_t b = (i * 7 + version) % SB;
				if (!in[b]) {
					in[b] = true;
					dirty[n++] = b;
				}
			}
			store_wait_invalidate(store_device_wait(s.d), dirty, n);
		}
		for (uint64_t b = 0; b < SB; b++) {
			if (version > 1 && !in[b] && b % 5)
				continue;
			cur[b] = version;
			for (size_t k = 0; k < BS / 4; k++)
				v[k] = (uint32_t)(b << 16) | cur[b];
			store_device_deliver(s.d, b, v, BS);
		}
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	diag("%u reads checked", s.reads);
	is_int(s.bad, 0, "wait stress: no reader saw a block before it arrived or a torn block");
	is_int(store_wait_complete(store_device_wait(s.d)), 0, "wait stress: complete at the end");
	store_device_free(s.d);
}

static void test_device_misc(void)
{
	struct store_provider *f = NULL;
	struct store_device *d = NULL;

	store_file_open(path_in("misc"), STORE_FILE_CREATE, 4 * BS, &f);
	struct store_device_opts o = {.name = "a/b"};
	is_int(store_device_new(&o, f, &d), -EINVAL, "device: a name with a slash is refused");
	o = (struct store_device_opts){.name = "disk", .block_size = 3000};
	is_int(store_device_new(&o, f, &d), -EINVAL,
	       "device: a block size that is no power of two is refused");
	o = (struct store_device_opts){.name = "disk"};
	is_int(store_device_new(&o, f, &d), 0, "device: default block size");
	is_int(store_device_block_size(d), STORE_DEFAULT_BLOCK_SIZE,
	       "device: 64 KiB blocks by default");
	is_int(store_device_blocks(d), 1, "device: 16 KiB is one block");
	is_int(store_device_block_is_zero(d, 0), 1, "device: a hole reads as zero without reading");
	ok(store_device_wait(d) == NULL, "device: a source device has no waiting cache");
	is_int(store_device_deliver(d, 0, "x", 1), -EINVAL, "device: delivery needs a destination");
	char one = 1;
	_cleanup_free_ char *back = malloc(4 * BS);
	store_device_set_read_only(d, true);
	is_int(store_device_write(d, &one, 1, 0), -EROFS,
	       "device: read-only after handover refuses local writes");
	is_int(store_device_read_block(d, 0, back), 4 * BS, "device: migration reads go on");
	store_device_set_read_only(d, false);
	is_int(store_device_write(d, &one, 1, 0), 1, "device: writable again");
	store_device_free(d);
}

/* The exposure's reads, block by block, in the order of their first read. */
/* Pop everything from Q into OUT as dev*100+block; returns how many. */
static size_t fillq_drain(struct store_fillq *q, uint64_t *out, size_t max)
{
	uint32_t dev;
	uint64_t block;
	size_t n = 0;

	while (n < max && store_fillq_pop(q, &dev, &block))
		out[n++] = dev * 100 + block;
	return n;
}

static void test_fillq(void)
{
	struct store_fillq q;
	uint64_t got[16];
	size_t n;

	ok(store_fillq_init(&q, 8, 2) == 0 && store_fillq_add_device(&q, 0, 50) == 0 &&
	   store_fillq_add_device(&q, 1, 50) == 0, "fillq: two devices");
	is_int(store_fillq_add_device(&q, 2, 50), -EINVAL, "fillq: a third is refused");
	/* first arrivals in arrival order, across devices */
	store_fillq_push(&q, 0, 1);
	store_fillq_push(&q, 1, 2);
	store_fillq_push(&q, 0, 3);
	/* 3 arrives again, then 1: newest again-arrival first, each block once */
	store_fillq_push(&q, 0, 3);
	store_fillq_push(&q, 0, 1);
	n = fillq_drain(&q, got, 16);
	ok(n == 3 && got[0] == 1 && got[1] == 3 && got[2] == 102,
	   "fillq: arrivals again first (latest first), then first arrivals in order, each once");
	/* a block copied already comes again after a new arrival */
	store_fillq_push(&q, 1, 2);
	n = fillq_drain(&q, got, 16);
	ok(n == 1 && got[0] == 102, "fillq: a copied block that arrives again is copied again");
	store_fillq_push(&q, 0, 60);
	store_fillq_push(&q, 3, 1);
	is_int(fillq_drain(&q, got, 16), 0, "fillq: blocks out of range are ignored");
	/* full: first arrivals are left out, arrivals again push the last entry out */
	for (uint64_t b = 10; b < 20; b++)
		store_fillq_push(&q, 0, b);
	store_fillq_push(&q, 0, 3);
	n = fillq_drain(&q, got, 16);
	ok(n == 8 && got[0] == 3 && got[1] == 10 && got[7] == 16,
	   "fillq: full, the first arrivals that did not fit are left out, an arrival again goes first");
	store_fillq_free(&q);
	ok(q.ring == NULL && q.pending == NULL, "fillq: freed");
}

static void test_access_order(void)
{
	struct store_provider *f = NULL;
	struct store_device *d = NULL;
	_cleanup_free_ char *buf = malloc(3 * BS);
	_cleanup_free_ uint64_t *order = NULL;
	size_t n = 99;

	store_file_open(path_in("access"), STORE_FILE_CREATE, 8 * BS, &f);
	struct store_device_opts o = {.name = "memory", .block_size = BS};
	is_int(store_device_new(&o, f, &d), 0, "access order: device");
	is_int(store_device_access_order(d, &order, &n), 0, "access order: before any read");
	is_int(n, 0, "access order: nothing read, nothing listed");
	free(order);
	order = NULL;
	store_device_read(d, buf, 1, 5 * BS + 100);        /* block 5 */
	store_device_read(d, buf, 2 * BS, 2 * BS + 1);     /* blocks 2, 3, 4 */
	store_device_read(d, buf, BS, 5 * BS);             /* 5 again */
	store_device_read(d, buf, 3 * BS, 7 * BS);         /* 7, cut at the end */
	store_device_read(d, buf, BS, 8 * BS);             /* past the end: nothing */
	store_device_read_block(d, 0, buf);                /* the migration's read */
	store_device_write(d, buf, BS, 6 * BS);            /* a write */
	is_int(store_device_access_order(d, &order, &n), 0, "access order: after reads");
	is_int(n, 5, "access order: each block read once listed once");
	ok(n == 5 && order[0] == 5 && order[1] == 2 && order[2] == 3 && order[3] == 4 && order[4] == 7,
	   "access order: first read first (5 2 3 4 7); migration reads and writes not listed");
	store_device_free(d);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_file();
	test_file_holes();
	test_overlay();
	test_tracker();
	test_volatility();
	test_wait();
	test_wait_partial();
	test_wait_holes();
	test_wait_late_callback();
	test_wait_stress();
	test_device_misc();
	test_access_order();
	test_fillq();
	test_stack();
	test_overlay_concurrent();
	test_open_cfg();
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)!system(cmd);
	return done_testing();
}
