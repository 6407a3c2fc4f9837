/*
 * The destination's waiting cache: which blocks have arrived, which were
 * written locally (and so win over anything that arrives later), and which
 * have been asked for. A reader of missing blocks sleeps on a condition
 * variable of its own, with the number of blocks of its range still
 * missing; an arrival counts down the readers whose range holds the block
 * and wakes one only when its count reaches zero. (One condition variable
 * broadcast on every arrival woke every reader for each block; with post-copy
 * the session thread, which delivers, was preempted by them about a
 * thousand times a second.) Failures and a new request callback wake all.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "core/store/store-internal.h"

/* A thread waiting for the blocks [first, end), on the cache's list. */
struct waiter {
	struct waiter *next;
	uint64_t first, end;
	uint64_t left; /* blocks of the range still missing */
	pthread_cond_t cond;
};

struct store_wait {
	pthread_mutex_t lock;
	struct waiter *waiters;
	struct store_device *dev;
	uint64_t nblocks;
	struct store_bitmap present;
	struct store_bitmap local;
	struct store_bitmap requested;
	uint64_t missing;
	uint64_t gen; /* invalidations so far; atomic */
	int err;
	store_request_fn request;
	void *request_ctx;
};

int store_wait_new(struct store_device *d, struct store_wait **out)
{
	struct store_wait *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	pthread_mutex_init(&w->lock, NULL);
	w->dev = d;
	w->nblocks = d->nblocks;
	w->missing = d->nblocks;
	if (store_bitmap_init(&w->present, w->nblocks) < 0 ||
	    store_bitmap_init(&w->local, w->nblocks) < 0 ||
	    store_bitmap_init(&w->requested, w->nblocks) < 0) {
		store_wait_free(w);
		return -ENOMEM;
	}
	*out = w;
	return 0;
}

void store_wait_free(struct store_wait *w)
{
	if (!w)
		return;
	pthread_mutex_destroy(&w->lock);
	store_bitmap_free(&w->present);
	store_bitmap_free(&w->local);
	store_bitmap_free(&w->requested);
	free(w);
}

/* Under the lock. */
static void wake_all(struct store_wait *w)
{
	for (struct waiter *q = w->waiters; q; q = q->next)
		pthread_cond_signal(&q->cond);
}

/* Under the lock: the missing blocks of [FIRST, END). */
static uint64_t count_missing(struct store_wait *w, uint64_t first, uint64_t end)
{
	uint64_t n = 0;

	if (first == 0 && end == w->nblocks)
		return w->missing;
	for (uint64_t b = first; b < end; b++)
		n += !store_bitmap_test(&w->present, b);
	return n;
}

/*
 * Under the lock: sleep until the blocks of [FIRST, END) are all present,
 * the cache fails or wake_all (then the caller looks again).
 */
static void wait_range(struct store_wait *w, uint64_t first, uint64_t end)
{
	struct waiter q = { .first = first, .end = end, .left = count_missing(w, first, end) };

	if (q.left == 0 || w->err)
		return;
	pthread_cond_init(&q.cond, NULL);
	q.next = w->waiters;
	w->waiters = &q;
	pthread_cond_wait(&q.cond, &w->lock);
	for (struct waiter **pp = &w->waiters; *pp; pp = &(*pp)->next) {
		if (*pp == &q) {
			*pp = q.next;
			break;
		}
	}
	pthread_cond_destroy(&q.cond);
}

void store_wait_set_request(struct store_wait *w, store_request_fn fn, void *ctx)
{
	pthread_mutex_lock(&w->lock);
	w->request = fn;
	w->request_ctx = ctx;
	/* readers already waiting ask now */
	wake_all(w);
	pthread_mutex_unlock(&w->lock);
}

/* Under the lock. */
static void make_present(struct store_wait *w, uint64_t b)
{
	if (store_bitmap_test(&w->present, b))
		return;
	store_bitmap_set(&w->present, b);
	w->missing--;
	for (struct waiter *q = w->waiters; q; q = q->next)
		if (b >= q->first && b < q->end && --q->left == 0)
			pthread_cond_signal(&q->cond);
}

/* Under the lock. */
static void make_missing(struct store_wait *w, uint64_t b)
{
	if (!store_bitmap_test(&w->present, b))
		return;
	store_bitmap_clear(&w->present, b);
	w->missing++;
	for (struct waiter *q = w->waiters; q; q = q->next)
		if (b >= q->first && b < q->end)
			q->left++;
}

/*
 * Under the lock (dropped around each call). Ask once for every block of
 * [FIRST, END) that is missing and not asked for yet, nearest first.
 * Without a callback yet nothing is marked, so the block is asked for by
 * the next access after the callback is set.
 */
static void ask_missing(struct store_wait *w, uint64_t first, uint64_t end)
{
	for (uint64_t b = first; b < end && w->request; b++) {
		if (store_bitmap_test(&w->present, b) || store_bitmap_test(&w->requested, b))
			continue;
		store_bitmap_set(&w->requested, b);
		store_request_fn fn = w->request;
		void *ctx = w->request_ctx;
		pthread_mutex_unlock(&w->lock);
		fn(ctx, w->dev, b);
		pthread_mutex_lock(&w->lock);
	}
}

int store_wait_acquire(struct store_wait *w, uint64_t first, uint64_t count)
{
	uint64_t end = first + count > w->nblocks ? w->nblocks : first + count;
	int r = 0;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		uint64_t want = UINT64_MAX;
		for (uint64_t b = first; b < end; b++) {
			if (!store_bitmap_test(&w->present, b)) {
				want = b;
				break;
			}
		}
		if (want == UINT64_MAX)
			break;
		/* blocks that are here stay readable after a failure */
		if (w->err) {
			r = w->err;
			break;
		}
		ask_missing(w, want, end);
		wait_range(w, want, end);
	}
	pthread_mutex_unlock(&w->lock);
	return r;
}

void store_wait_request(struct store_wait *w, uint64_t first, uint64_t count)
{
	uint64_t end = first + count > w->nblocks || first + count < first ? w->nblocks : first + count;

	pthread_mutex_lock(&w->lock);
	if (!w->err)
		ask_missing(w, first, end);
	pthread_mutex_unlock(&w->lock);
}

bool store_wait_all_present(struct store_wait *w, uint64_t first, uint64_t count)
{
	bool all = true;

	pthread_mutex_lock(&w->lock);
	for (uint64_t b = first; b < w->nblocks && b - first < count && all; b++)
		all = store_bitmap_test(&w->present, b);
	pthread_mutex_unlock(&w->lock);
	return all;
}

void store_wait_local_written(struct store_wait *w, uint64_t block)
{
	pthread_mutex_lock(&w->lock);
	if (block < w->nblocks) {
		store_bitmap_set(&w->local, block);
		make_present(w, block);
	}
	pthread_mutex_unlock(&w->lock);
}

bool store_wait_may_deliver(struct store_wait *w, uint64_t block)
{
	pthread_mutex_lock(&w->lock);
	bool ok = block < w->nblocks && !store_bitmap_test(&w->local, block);
	pthread_mutex_unlock(&w->lock);
	return ok;
}

void store_wait_delivered(struct store_wait *w, uint64_t block)
{
	pthread_mutex_lock(&w->lock);
	make_present(w, block);
	store_bitmap_clear(&w->requested, block);
	pthread_mutex_unlock(&w->lock);
}

void store_wait_mark_present(struct store_wait *w, const struct store_bitmap *blocks)
{
	pthread_mutex_lock(&w->lock);
	for (uint64_t b = store_bitmap_next(blocks, 0); b != UINT64_MAX && b < w->nblocks;
	     b = store_bitmap_next(blocks, b + 1))
		make_present(w, b);
	pthread_mutex_unlock(&w->lock);
}

void store_wait_mark_range(struct store_wait *w, uint64_t first, uint64_t count)
{
	pthread_mutex_lock(&w->lock);
	for (uint64_t b = first; b < w->nblocks && b - first < count; b++)
		make_present(w, b);
	pthread_mutex_unlock(&w->lock);
}

int store_wait_invalidate(struct store_wait *w, const uint64_t *blocks, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (blocks[i] >= w->nblocks)
			return -ERANGE;
	/*
	 * Only the blocks that were here go missing, and only their cached
	 * pages are dropped; a block written here keeps its pages: they are
	 * newer than the list. The pages go later, from the exposure's thread:
	 * a reader holds the kernel's locks on the pages of its whole read
	 * until every block of it has come, and dropping pages waits for
	 * those locks, while the caller is the session that delivers the
	 * blocks (a destination hung so, unkillable, in a post-copy round of
	 * bench/migrate, when this dropped the pages itself).
	 */
	_cleanup_free_ uint64_t *gone = malloc((n ? n : 1) * sizeof(*gone));
	size_t ngone = 0;
	if (!gone)
		return -ENOMEM;
	pthread_mutex_lock(&w->lock);
	for (size_t i = 0; i < n; i++) {
		uint64_t b = blocks[i];
		if (store_bitmap_test(&w->local, b) || !store_bitmap_test(&w->present, b))
			continue;
		make_missing(w, b);
		store_bitmap_clear(&w->requested, b);
		gone[ngone++] = b;
	}
	/* before the pages go: a copy into them made earlier is known to be old */
	__atomic_add_fetch(&w->gen, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_unlock(&w->lock);
	/* pages cached from the old contents must go */
	struct store_device *d = w->dev;
	/* one call per run of consecutive blocks (dirty lists are sorted) */
	for (size_t i = 0; i < ngone;) {
		size_t j = i + 1;
		while (j < ngone && gone[j] == gone[j - 1] + 1)
			j++;
		uint64_t off = gone[i] << d->block_shift;
		uint64_t end = (gone[j - 1] << d->block_shift) + store_device_block_len(d, gone[j - 1]);
		store_device_notify_changed_later(d, off, end - off);
		i = j;
	}
	return 0;
}

uint64_t store_wait_generation(struct store_wait *w)
{
	return __atomic_load_n(&w->gen, __ATOMIC_SEQ_CST);
}

int store_wait_complete(struct store_wait *w)
{
	pthread_mutex_lock(&w->lock);
	while (w->missing && !w->err)
		wait_range(w, 0, w->nblocks);
	int r = w->err;
	pthread_mutex_unlock(&w->lock);
	return r;
}

void store_wait_fail(struct store_wait *w, int err)
{
	pthread_mutex_lock(&w->lock);
	if (!w->err)
		w->err = err < 0 ? err : -EIO;
	wake_all(w);
	pthread_mutex_unlock(&w->lock);
}

uint64_t store_wait_missing(struct store_wait *w)
{
	pthread_mutex_lock(&w->lock);
	uint64_t m = w->missing;
	pthread_mutex_unlock(&w->lock);
	return m;
}

bool store_wait_present(struct store_wait *w, uint64_t block)
{
	pthread_mutex_lock(&w->lock);
	bool p = store_bitmap_test(&w->present, block);
	pthread_mutex_unlock(&w->lock);
	return p;
}
