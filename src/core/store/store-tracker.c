/*
 * Dirty tracking for the migration source. Two bitmaps of atomic words:
 * "tracked" (the destination has a copy of the block) and "dirty" (written
 * since). Writers only set bits and sync swaps whole words out, so writers
 * never wait for each other or for a sync, and no write is lost: a write
 * that lands after a block's word was swapped out is in the next sync.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "core/store/store-internal.h"

struct store_tracker {
	uint64_t nblocks;
	uint64_t nwords;
	uint64_t *tracked;
	uint64_t *dirty;
};

int store_tracker_new(uint64_t nblocks, struct store_tracker **out)
{
	struct store_tracker *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->nblocks = nblocks;
	t->nwords = (nblocks + 63) / 64;
	t->tracked = calloc(t->nwords + 1, sizeof(uint64_t));
	t->dirty = calloc(t->nwords + 1, sizeof(uint64_t));
	if (!t->tracked || !t->dirty) {
		store_tracker_free(t);
		return -ENOMEM;
	}
	*out = t;
	return 0;
}

void store_tracker_free(struct store_tracker *t)
{
	if (!t)
		return;
	free(t->tracked);
	free(t->dirty);
	free(t);
}

/* Calls FN(word index, mask) for the words covering [first, first+count). */
#define FOR_EACH_WORD(t, first, count, w, mask, body)                                              \
	do {                                                                                       \
		uint64_t _end = (first) + (count);                                                 \
		if (_end > (t)->nblocks || _end < (first))                                         \
			_end = (t)->nblocks;                                                       \
		for (uint64_t _b = (first); _b < _end;) {                                          \
			uint64_t w = _b / 64, _lo = _b % 64;                                       \
			uint64_t _hi = _end - w * 64 >= 64 ? 64 : _end - w * 64;                   \
			uint64_t mask = (_hi == 64 ? ~0ull : (1ull << _hi) - 1) & (~0ull << _lo);  \
			body;                                                                      \
			_b = (w + 1) * 64;                                                         \
		}                                                                                  \
	} while (0)

void store_tracker_track(struct store_tracker *t, uint64_t first, uint64_t count)
{
	FOR_EACH_WORD(t, first, count, w, mask,
	              __atomic_fetch_or(&t->tracked[w], mask, __ATOMIC_SEQ_CST));
}

void store_tracker_track_all(struct store_tracker *t)
{
	store_tracker_track(t, 0, t->nblocks);
}

void store_tracker_mark(struct store_tracker *t, uint64_t first, uint64_t count)
{
	FOR_EACH_WORD(t, first, count, w, mask, {
		uint64_t m = __atomic_load_n(&t->tracked[w], __ATOMIC_SEQ_CST) & mask;
		if (m)
			__atomic_fetch_or(&t->dirty[w], m, __ATOMIC_SEQ_CST);
	});
}

int store_tracker_sync(struct store_tracker *t, struct store_bitmap *out)
{
	int r = store_bitmap_init(out, t->nblocks);

	if (r < 0)
		return r;
	for (uint64_t w = 0; w < t->nwords; w++) {
		uint64_t d = __atomic_exchange_n(&t->dirty[w], 0, __ATOMIC_SEQ_CST);
		if (!d)
			continue;
		/* re-tracked when the block is read for sending again */
		__atomic_fetch_and(&t->tracked[w], ~d, __ATOMIC_SEQ_CST);
		out->words[w] = d;
	}
	return 0;
}

int store_tracker_sync_list(struct store_tracker *t, uint64_t **blocks, size_t *n)
{
	struct store_bitmap b;
	int r = store_tracker_sync(t, &b);

	if (r < 0)
		return r;
	r = store_bitmap_to_list(&b, blocks, n);
	if (r < 0) {
		/* do not lose the set: put it back */
		for (uint64_t w = 0; w < t->nwords; w++) {
			__atomic_fetch_or(&t->tracked[w], b.words[w], __ATOMIC_SEQ_CST);
			__atomic_fetch_or(&t->dirty[w], b.words[w], __ATOMIC_SEQ_CST);
		}
	}
	store_bitmap_free(&b);
	return r;
}

uint64_t store_tracker_dirty_count(struct store_tracker *t)
{
	uint64_t c = 0;

	for (uint64_t w = 0; w < t->nwords; w++)
		c +=
		    (uint64_t)__builtin_popcountll(__atomic_load_n(&t->dirty[w], __ATOMIC_SEQ_CST));
	return c;
}
