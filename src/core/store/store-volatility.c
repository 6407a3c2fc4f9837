/*
 * The order in which a source sends blocks. Each block keeps a write count
 * for the current expiry window and the time of its last write (16 bytes a
 * block whatever the write rate; with the cached order 24 bytes a block in
 * all, about 40 MB for a 100 GiB disk in 64 KiB blocks). Blocks a
 * destination asks for go first, in the order asked; the rest follow least
 * volatile first. The sorted order is cached and rebuilt only when writes
 * happened and it is older than a short interval, so a full pass is not
 * quadratic in the block count.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/store/store-internal.h"

/* How stale the cached order may get while writes keep coming. */
#define RESORT_NS (50ull * 1000 * 1000)

struct block_hist {
	uint64_t last_write; /* now_ns() of the last write, 0: never written */
	uint32_t count;      /* writes since window_ms */
	uint32_t window_ms; /* start of the count's window, ms since the monitor began (mod 2^32) */
};

struct store_volatility {
	pthread_mutex_t lock;
	uint64_t nblocks;
	uint64_t expiry_ns;
	uint32_t expiry_ms;
	uint64_t start_ns;
	struct block_hist *hist;
	struct store_bitmap available;
	uint64_t remaining;
	/* priority FIFO, each block at most once; grows as requests come */
	uint64_t *prio;
	size_t prio_head, prio_len, prio_cap;
	struct store_bitmap queued;
	/* cached order of the blocks that were available when it was built */
	uint64_t *order;
	size_t order_len, order_pos;
	bool order_valid;
	bool written_since;
	uint64_t sorted_at;
	uint64_t resort_ns; /* at least RESORT_NS, and ten times the last sort */
};

int store_volatility_new(uint64_t nblocks, uint64_t expiry_ns, struct store_volatility **out)
{
	struct store_volatility *v;

	if (nblocks > SIZE_MAX / sizeof(struct block_hist))
		return -ENOMEM;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	pthread_mutex_init(&v->lock, NULL);
	v->nblocks = nblocks;
	v->expiry_ns = expiry_ns ? expiry_ns : STORE_DEFAULT_EXPIRY_NS;
	/* windows are kept in 32-bit milliseconds: half the range is the limit */
	uint64_t ms = (v->expiry_ns + 999999) / 1000000;
	v->expiry_ms = ms > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uint32_t)ms;
	v->start_ns = now_ns();
	v->hist = calloc(nblocks ? nblocks : 1, sizeof(*v->hist));
	v->order = calloc(nblocks ? nblocks : 1, sizeof(uint64_t));
	if (!v->hist || !v->order || store_bitmap_init(&v->available, nblocks) < 0 ||
	    store_bitmap_init(&v->queued, nblocks) < 0) {
		store_volatility_free(v);
		return -ENOMEM;
	}
	*out = v;
	return 0;
}

void store_volatility_free(struct store_volatility *v)
{
	if (!v)
		return;
	pthread_mutex_destroy(&v->lock);
	free(v->hist);
	free(v->prio);
	free(v->order);
	store_bitmap_free(&v->available);
	store_bitmap_free(&v->queued);
	free(v);
}

void store_volatility_record(struct store_volatility *v, uint64_t first, uint64_t count)
{
	uint64_t now = now_ns();
	uint32_t now_ms = (uint32_t)((now - v->start_ns) / 1000000);

	pthread_mutex_lock(&v->lock);
	for (uint64_t b = first; b < v->nblocks && b - first < count; b++) {
		struct block_hist *h = &v->hist[b];
		if (!h->last_write || (uint32_t)(now_ms - h->window_ms) > v->expiry_ms) {
			h->window_ms = now_ms;
			h->count = 0;
		}
		if (h->count < UINT32_MAX)
			h->count++;
		h->last_write = now;
	}
	v->written_since = true;
	pthread_mutex_unlock(&v->lock);
}

void store_volatility_add_all(struct store_volatility *v)
{
	pthread_mutex_lock(&v->lock);
	store_bitmap_set_all(&v->available);
	v->remaining = v->nblocks;
	v->order_valid = false;
	pthread_mutex_unlock(&v->lock);
}

void store_volatility_add(struct store_volatility *v, uint64_t block)
{
	pthread_mutex_lock(&v->lock);
	if (block < v->nblocks && !store_bitmap_test(&v->available, block)) {
		store_bitmap_set(&v->available, block);
		v->remaining++;
		v->order_valid = false;
	}
	pthread_mutex_unlock(&v->lock);
}

static bool take(struct store_volatility *v, uint64_t block)
{
	if (block >= v->nblocks || !store_bitmap_test(&v->available, block))
		return false;
	store_bitmap_clear(&v->available, block);
	v->remaining--;
	return true;
}

void store_volatility_remove(struct store_volatility *v, uint64_t block)
{
	pthread_mutex_lock(&v->lock);
	(void)take(v, block);
	pthread_mutex_unlock(&v->lock);
}

int store_volatility_prioritise(struct store_volatility *v, uint64_t block)
{
	int r = 0;

	pthread_mutex_lock(&v->lock);
	if (block < v->nblocks && store_bitmap_test(&v->available, block) &&
	    !store_bitmap_test(&v->queued, block)) {
		/* the queue holds each block once, so it never exceeds nblocks */
		if (v->prio_head + v->prio_len == v->prio_cap && v->prio_head) {
			memmove(v->prio, v->prio + v->prio_head, v->prio_len * sizeof(uint64_t));
			v->prio_head = 0;
		}
		if (v->prio_len == v->prio_cap) {
			size_t cap = v->prio_cap ? v->prio_cap * 2 : 64;
			if (cap > v->nblocks)
				cap = (size_t)v->nblocks;
			uint64_t *np = reallocarray(v->prio, cap, sizeof(uint64_t));
			if (!np) {
				pthread_mutex_unlock(&v->lock);
				return -ENOMEM;
			}
			v->prio = np;
			v->prio_cap = cap;
		}
		v->prio[v->prio_head + v->prio_len++] = block;
		store_bitmap_set(&v->queued, block);
		r = 1;
	} else if (block < v->nblocks && store_bitmap_test(&v->queued, block)) {
		r = 1;
	}
	pthread_mutex_unlock(&v->lock);
	return r;
}

struct sort_ctx {
	const struct block_hist *hist;
	uint64_t now;
	uint64_t expiry_ns;
};

/* Writes within the window count; older ones are as if never made. */
static void key_of(const struct sort_ctx *c, uint64_t b, uint32_t *count, uint64_t *last)
{
	const struct block_hist *h = &c->hist[b];
	bool live = h->last_write && c->now - h->last_write <= c->expiry_ns;

	*count = live ? h->count : 0;
	*last = live ? h->last_write : 0;
}

static int cmp_blocks(const void *a, const void *b, void *arg)
{
	const struct sort_ctx *c = arg;
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b, lx, ly;
	uint32_t cx, cy;

	key_of(c, x, &cx, &lx);
	key_of(c, y, &cy, &ly);
	if (cx != cy)
		return cx < cy ? -1 : 1;
	if (lx != ly)
		return lx < ly ? -1 : 1;
	return x < y ? -1 : x > y;
}

static int rebuild(struct store_volatility *v, uint64_t now)
{
	struct sort_ctx c = {.hist = v->hist, .now = now, .expiry_ns = v->expiry_ns};
	size_t n = 0;
	uint64_t t0 = now_ns();

	for (uint64_t b = store_bitmap_next(&v->available, 0); b != UINT64_MAX;
	     b = store_bitmap_next(&v->available, b + 1))
		v->order[n++] = b;
	qsort_r(v->order, n, sizeof(uint64_t), cmp_blocks, &c);
	v->order_len = n;
	v->order_pos = 0;
	v->order_valid = true;
	v->written_since = false;
	v->sorted_at = now;
	/* a big device sorts for long: then sorting may take at most a tenth of the time */
	uint64_t took = now_ns() - t0;
	v->resort_ns = took * 10 > RESORT_NS ? took * 10 : RESORT_NS;
	return 0;
}

int store_volatility_next(struct store_volatility *v, uint64_t *block)
{
	int r = -ENOENT;

	pthread_mutex_lock(&v->lock);
	while (v->prio_len) {
		uint64_t b = v->prio[v->prio_head++];
		if (--v->prio_len == 0)
			v->prio_head = 0;
		store_bitmap_clear(&v->queued, b);
		if (take(v, b)) {
			*block = b;
			r = 1;
			goto out;
		}
	}
	if (!v->remaining)
		goto out;
	uint64_t now = now_ns();
	if (!v->order_valid || (v->written_since && now - v->sorted_at >= v->resort_ns)) {
		r = rebuild(v, now);
		if (r < 0)
			goto out;
	}
	for (;;) {
		while (v->order_pos < v->order_len) {
			uint64_t b = v->order[v->order_pos++];
			if (take(v, b)) {
				*block = b;
				r = 0;
				goto out;
			}
		}
		/* blocks added back after the order was built */
		r = rebuild(v, now);
		if (r < 0)
			goto out;
		r = -ENOENT;
		if (!v->order_len)
			goto out;
	}
out:
	pthread_mutex_unlock(&v->lock);
	return r;
}

uint64_t store_volatility_remaining(struct store_volatility *v)
{
	pthread_mutex_lock(&v->lock);
	uint64_t r = v->remaining;
	pthread_mutex_unlock(&v->lock);
	return r;
}
