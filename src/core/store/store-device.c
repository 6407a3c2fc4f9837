/*
 * A device: a name and a block size over a provider stack, with the
 * source-side tracker and volatility monitor and, on a destination, the
 * waiting cache. The device is itself a provider: that "local view" is what
 * exposures serve to a VMM; the migration engine uses the store_device_*
 * calls, which go around the parts that only concern local access.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/store/store-internal.h"

static struct store_device *to_dev(struct store_provider *p)
{
	return (struct store_device *)p;
}

size_t store_device_block_len(const struct store_device *d, uint64_t block)
{
	uint64_t start = block << d->block_shift;

	if (block >= d->nblocks)
		return 0;
	return (size_t)(d->size - start < d->block_size ? d->size - start : d->block_size);
}

/* Mark the blocks of [OFF, OFF+LEN) dirty; a write that LANDED also counts for the volatility order. */
static void note_write(struct store_device *d, uint64_t off, size_t len, bool landed)
{
	if (!len)
		return;
	uint64_t first = off >> d->block_shift, last = (off + len - 1) >> d->block_shift;
	store_tracker_mark(d->tracker, first, last - first + 1);
	if (landed)
		store_volatility_record(d->vol, first, last - first + 1);
}

/* The stripes of blocks [first, last] as a mask, locked or unlocked in ascending order. */
static uint64_t stripe_mask(uint64_t first, uint64_t last)
{
	uint64_t m = 0;

	if (last - first + 1 >= STORE_STRIPES)
		return ~0ull;
	for (uint64_t b = first; b <= last; b++)
		m |= 1ull << (b % STORE_STRIPES);
	return m;
}

static void stripes_rdlock(struct store_device *d, uint64_t mask)
{
	for (unsigned i = 0; i < STORE_STRIPES; i++)
		if (mask & (1ull << i))
			pthread_rwlock_rdlock(&d->stripes[i]);
}

static void stripes_unlock(struct store_device *d, uint64_t mask)
{
	for (unsigned i = 0; i < STORE_STRIPES; i++)
		if (mask & (1ull << i))
			pthread_rwlock_unlock(&d->stripes[i]);
}

/* Remember the blocks of a read that were not read before, in order. */
static void note_access(struct store_device *d, uint64_t off, size_t len)
{
	uint64_t first = off >> d->block_shift, last = (off + len - 1) >> d->block_shift;

	pthread_mutex_lock(&d->access_lock);
	for (uint64_t b = first; b <= last; b++) {
		if (store_bitmap_test(&d->accessed, b))
			continue;
		if (d->access_len == d->access_cap) {
			/* at most one entry a block: nblocks bounds it */
			size_t cap = d->access_cap ? d->access_cap * 2 : 256;
			if (cap > d->nblocks)
				cap = (size_t)d->nblocks;
			uint64_t *n = reallocarray(d->access_order, cap, sizeof(*n));
			if (!n)
				break; /* only an ordering hint is lost */
			d->access_order = n;
			d->access_cap = cap;
		}
		store_bitmap_set(&d->accessed, b);
		d->access_order[d->access_len++] = b;
	}
	pthread_mutex_unlock(&d->access_lock);
}

int store_device_access_order(struct store_device *d, uint64_t **blocks, size_t *n)
{
	pthread_mutex_lock(&d->access_lock);
	uint64_t *out = malloc((d->access_len ? d->access_len : 1) * sizeof(*out));
	if (out) {
		if (d->access_len)
			memcpy(out, d->access_order, d->access_len * sizeof(*out));
		*n = d->access_len;
	}
	pthread_mutex_unlock(&d->access_lock);
	if (!out)
		return -ENOMEM;
	*blocks = out;
	return 0;
}

/* Destination: wait for the blocks, then read them while no delivery rewrites them. */
static ssize_t read_waiting(struct store_device *d, void *buf, size_t len, uint64_t off)
{
	uint64_t first = off >> d->block_shift, last = (off + len - 1) >> d->block_shift;
	uint64_t mask = stripe_mask(first, last);

	for (;;) {
		int r = store_wait_acquire(d->wait, first, last - first + 1);
		if (r < 0)
			return r;
		stripes_rdlock(d, mask);
		/* a dirty list may have come in between: then wait again */
		if (store_wait_all_present(d->wait, first, last - first + 1))
			break;
		stripes_unlock(d, mask);
	}
	ssize_t n = store_read_at(d->stack, buf, len, off);
	stripes_unlock(d, mask);
	return n;
}

ssize_t store_device_read(struct store_device *d, void *buf, size_t len, uint64_t off)
{
	len = store_clip(d->size, len, off);
	if (!len)
		return 0;
	note_access(d, off, len);
	if (d->wait)
		return read_waiting(d, buf, len, off);
	return store_read_at(d->stack, buf, len, off);
}

/* Destination: BLOCK is a hole (zeros were delivered) or not any more (data was written). */
static void set_hole(struct store_device *d, uint64_t block, bool hole)
{
	uint64_t bit = 1ull << (block % 64), *w = &d->holes.words[block / 64];

	if (hole)
		__atomic_fetch_or(w, bit, __ATOMIC_RELEASE);
	else
		__atomic_fetch_and(w, ~bit, __ATOMIC_RELEASE);
}

static bool is_hole(struct store_device *d, uint64_t block)
{
	return __atomic_load_n(&d->holes.words[block / 64], __ATOMIC_ACQUIRE) & (1ull << (block % 64));
}

/* Destination: block by block, so that each block's write is ordered against its delivery. */
static ssize_t write_waiting(struct store_device *d, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		uint64_t pos = off + done, b = pos >> d->block_shift;
		size_t blen = store_device_block_len(d, b);
		uint64_t bstart = b << d->block_shift;
		size_t n = (size_t)(bstart + blen - pos);
		if (n > len - done)
			n = len - done;
		bool whole = pos == bstart && n == blen;

		/* a partial write needs the rest of the block first (and still, once locked) */
		for (;;) {
			if (!whole) {
				int r = store_wait_acquire(d->wait, b, 1);
				if (r < 0)
					return done ? (ssize_t)done : r;
			}
			pthread_rwlock_wrlock(store_stripe(d, b));
			if (whole || store_wait_all_present(d->wait, b, 1))
				break;
			pthread_rwlock_unlock(store_stripe(d, b));
		}
		ssize_t w = store_write_at(d->stack, (const char *)buf + done, n, pos);
		set_hole(d, b, false);
		if (w == (ssize_t)n)
			store_wait_local_written(d->wait, b);
		pthread_rwlock_unlock(store_stripe(d, b));
		if (w < 0)
			return done ? (ssize_t)done : w;
		if (w != (ssize_t)n)
			return -EIO;
		note_write(d, pos, n, true);
		done += n;
	}
	return (ssize_t)done;
}

void store_device_set_read_only(struct store_device *d, bool read_only)
{
	__atomic_store_n(&d->read_only, read_only, __ATOMIC_SEQ_CST);
}

bool store_device_read_only(struct store_device *d)
{
	return __atomic_load_n(&d->read_only, __ATOMIC_SEQ_CST);
}

ssize_t store_device_write(struct store_device *d, const void *buf, size_t len, uint64_t off)
{
	if (store_device_read_only(d))
		return -EROFS;
	if (off > d->size)
		return -ENOSPC;
	len = store_clip(d->size, len, off);
	if (!len)
		return 0;
	if (d->wait)
		return write_waiting(d, buf, len, off);
	/*
	 * Marked before and after: a list taken while the write is under way
	 * already has its blocks (a migration's source waits for writes under
	 * way before its final lists, see xfer_storedev_gate), and one taken
	 * between a read of the block and the write's landing gets them again.
	 */
	note_write(d, off, len, false);
	ssize_t n = store_write_at(d->stack, buf, len, off);
	if (n > 0)
		note_write(d, off, (size_t)n, true);
	return n;
}

int store_device_flush(struct store_device *d)
{
	return store_flush(d->stack);
}

ssize_t store_device_read_block(struct store_device *d, uint64_t block, void *buf)
{
	size_t len = store_device_block_len(d, block);

	if (!len)
		return -ERANGE;
	/* track before reading: a write racing with the read is then dirty */
	store_tracker_track(d->tracker, block, 1);
	return store_read_at(d->stack, buf, len, block << d->block_shift);
}

int store_device_block_is_zero(struct store_device *d, uint64_t block)
{
	size_t len = store_device_block_len(d, block);

	if (!len)
		return -ERANGE;
	if (d->wait && !store_wait_present(d->wait, block))
		return 0; /* a missing block is a hole in the file too */
	store_tracker_track(d->tracker, block, 1);
	return store_is_zero(d->stack, block << d->block_shift, len);
}

int store_device_deliver(struct store_device *d, uint64_t block, const void *data, size_t len)
{
	if (!d->wait)
		return -EINVAL;
	if (len != store_device_block_len(d, block))
		return -EINVAL;
	int r = 0;
	pthread_rwlock_wrlock(store_stripe(d, block));
	if (store_wait_may_deliver(d->wait, block)) {
		uint64_t off = block << d->block_shift;
		/* zeros over a hole (a new file's blocks): nothing to write, or to write back */
		bool hole = mem_is_zero(data, len) && store_is_zero(d->stack, off, len) == 1;
		ssize_t n = hole ? (ssize_t)len : store_write_at(d->stack, data, len, off);
		set_hole(d, block, hole);
		if (n < 0)
			r = (int)n;
		else if ((size_t)n != len)
			r = -EIO;
		else
			r = 1;
		if (r == 1)
			store_wait_delivered(d->wait, block);
	}
	pthread_rwlock_unlock(store_stripe(d, block));
	if (r == 1) {
		pthread_mutex_lock(&d->changed_lock);
		if (d->stored)
			d->stored(d->stored_ctx, d, block);
		pthread_mutex_unlock(&d->changed_lock);
	}
	return r;
}

ssize_t store_device_read_present(struct store_device *d, uint64_t block, void *buf, uint64_t *gen)
{
	ssize_t n = -EAGAIN;

	if (!d->wait || block >= d->nblocks)
		return -EINVAL;
	/*
	 * Without the block's stripe: this read may wait for the kernel's I/O on
	 * the file's pages (25-60 ms in bench/migrate while the host wrote back),
	 * and under the stripe it held up the session thread's next delivery to
	 * that stripe just as long. Only a delivery after a dirty list rewrites
	 * a present block here (the VM does not run yet while this is used),
	 * and the list moves the generation first: a copy that raced with one
	 * is known by its GEN.
	 */
	*gen = store_wait_generation(d->wait);
	if (!store_wait_present(d->wait, block))
		return n;
	size_t len = store_device_block_len(d, block);
	/*
	 * A hole reads as zeros. Reading it made the kernel fill page cache
	 * pages of the file with zeros only to copy them out: most of a
	 * destination's guest memory is holes, and pread was 40 % of the
	 * prefill's CPU time (perf, bench/migrate). In twelve alternating
	 * rounds the prefill had 0-5151 blocks left at the load (median 2700)
	 * against 3200-5784 (median 4270).
	 */
	if (is_hole(d, block)) {
		memset(buf, 0, len);
		return (ssize_t)len;
	}
	return store_read_at(d->stack, buf, len, block << d->block_shift);
}

uint64_t store_device_generation(struct store_device *d)
{
	return d->wait ? store_wait_generation(d->wait) : 0;
}

static ssize_t dev_read_at(struct store_provider *p, void *buf, size_t len, uint64_t off)
{
	return store_device_read(to_dev(p), buf, len, off);
}

static ssize_t dev_write_at(struct store_provider *p, const void *buf, size_t len, uint64_t off)
{
	return store_device_write(to_dev(p), buf, len, off);
}

static uint64_t dev_size(struct store_provider *p)
{
	return to_dev(p)->size;
}

static int dev_flush(struct store_provider *p)
{
	return store_device_flush(to_dev(p));
}

static void dev_close(struct store_provider *p)
{
	/* owned by the device: closing the view is a no-op */
	(void)p;
}

static int dev_is_zero(struct store_provider *p, uint64_t off, uint64_t len)
{
	struct store_device *d = to_dev(p);

	return d->wait ? 0 : store_is_zero(d->stack, off, len);
}

static const struct store_ops device_ops = {
	.name = "device",
	.read_at = dev_read_at,
	.write_at = dev_write_at,
	.size = dev_size,
	.flush = dev_flush,
	.close = dev_close,
	.is_zero = dev_is_zero,
};

int store_device_new(const struct store_device_opts *o, struct store_provider *stack,
                     struct store_device **out)
{
	uint32_t bs = o->block_size ? o->block_size : STORE_DEFAULT_BLOCK_SIZE;
	struct store_device *d;
	int r;

	if (!o->name || !*o->name || strchr(o->name, '/') || !strcmp(o->name, ".") ||
	    !strcmp(o->name, ".."))
		return -EINVAL;
	if (bs < STORE_MIN_BLOCK_SIZE || bs > STORE_MAX_BLOCK_SIZE || (bs & (bs - 1)))
		return -EINVAL;
	if (store_size(stack) > STORE_MAX_DEVICE_SIZE)
		return -EFBIG;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->prov.ops = &device_ops;
	for (size_t i = 0; i < STORE_STRIPES; i++)
		pthread_rwlock_init(&d->stripes[i], NULL);
	pthread_mutex_init(&d->changed_lock, NULL);
	pthread_mutex_init(&d->access_lock, NULL);
	d->block_size = bs;
	d->block_shift = (unsigned)__builtin_ctz(bs);
	d->size = store_size(stack);
	d->nblocks = (d->size + bs - 1) >> d->block_shift;
	d->name = strdup(o->name);
	if (!d->name) {
		r = -ENOMEM;
		goto fail;
	}
	r = store_tracker_new(d->nblocks, &d->tracker);
	if (r < 0)
		goto fail;
	r = store_bitmap_init(&d->accessed, d->nblocks);
	if (r < 0)
		goto fail;
	r = store_volatility_new(d->nblocks, o->expiry_ns, &d->vol);
	if (r < 0)
		goto fail;
	if (o->destination) {
		r = store_wait_new(d, &d->wait);
		if (r == 0)
			r = store_bitmap_init(&d->holes, d->nblocks);
		if (r < 0)
			goto fail;
	}
	d->stack = stack;
	*out = d;
	return 0;
fail:
	store_device_free(d);
	return r;
}

void store_device_free(struct store_device *d)
{
	if (!d)
		return;
	if (d->stack) {
		(void)store_flush(d->stack);
		store_close(d->stack);
	}
	store_tracker_free(d->tracker);
	store_volatility_free(d->vol);
	store_wait_free(d->wait);
	for (size_t i = 0; i < STORE_STRIPES; i++)
		pthread_rwlock_destroy(&d->stripes[i]);
	pthread_mutex_destroy(&d->changed_lock);
	pthread_mutex_destroy(&d->access_lock);
	store_bitmap_free(&d->accessed);
	store_bitmap_free(&d->holes);
	free(d->access_order);
	free(d->name);
	free(d);
}

const char *store_device_name(const struct store_device *d)
{
	return d->name;
}
uint32_t store_device_block_size(const struct store_device *d)
{
	return d->block_size;
}
uint64_t store_device_size(const struct store_device *d)
{
	return d->size;
}
uint64_t store_device_blocks(const struct store_device *d)
{
	return d->nblocks;
}
struct store_provider *store_device_stack(struct store_device *d)
{
	return d->stack;
}
struct store_provider *store_device_provider(struct store_device *d)
{
	return &d->prov;
}
struct store_tracker *store_device_tracker(struct store_device *d)
{
	return d->tracker;
}
struct store_volatility *store_device_volatility(struct store_device *d)
{
	return d->vol;
}
struct store_wait *store_device_wait(struct store_device *d)
{
	return d->wait;
}

void store_device_set_changed(struct store_device *d, store_changed_fn fn, void *ctx)
{
	pthread_mutex_lock(&d->changed_lock);
	d->changed = fn;
	d->changed_ctx = ctx;
	pthread_mutex_unlock(&d->changed_lock);
}

void store_device_set_stored(struct store_device *d, store_stored_fn fn, void *ctx)
{
	pthread_mutex_lock(&d->changed_lock);
	d->stored = fn;
	d->stored_ctx = ctx;
	pthread_mutex_unlock(&d->changed_lock);
}

static void notify_changed(struct store_device *d, uint64_t off, uint64_t len, bool later)
{
	pthread_mutex_lock(&d->changed_lock);
	if (d->changed)
		d->changed(d->changed_ctx, d, off, len, later);
	pthread_mutex_unlock(&d->changed_lock);
}

void store_device_notify_changed(struct store_device *d, uint64_t off, uint64_t len)
{
	notify_changed(d, off, len, false);
}

void store_device_notify_changed_later(struct store_device *d, uint64_t off, uint64_t len)
{
	notify_changed(d, off, len, true);
}
