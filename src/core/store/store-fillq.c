/*
 * The prefill's work list (store-fuse.c): which arrived block to copy into
 * the page cache next. A migration delivers far more blocks than the copier
 * can take while both share the cores with the transfer (in bench/migrate
 * 2 000 to 5 500 of some 11 000 were still waiting when the VM resumed), so
 * the order decides what the resumed VM finds cached:
 *
 * - a block that arrives again (a dirty list brought it back: the VM wrote
 *   it lately) goes first, the latest first: the VM touches it right after
 *   it resumes;
 * - a first arrival goes last, in arrival order: a source sends its VM's
 *   working set (the blocks its VMM read, first read first) before the rest.
 *
 * A block queued again before its copy is copied once: its older entry is
 * skipped. Full: a first arrival is left out, an arrival again pushes out
 * the last entry. Not thread-safe: the exposure holds its lock around calls.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "core/store/store-internal.h"

int store_fillq_init(struct store_fillq *q, size_t cap, size_t ndev)
{
	*q = (struct store_fillq){0};
	q->ring = calloc(cap ? cap : 1, sizeof(*q->ring));
	q->pending = calloc(ndev ? ndev : 1, sizeof(*q->pending));
	q->seen = calloc(ndev ? ndev : 1, sizeof(*q->seen));
	q->cap = cap;
	q->ndev = ndev;
	if (!q->ring || !q->pending || !q->seen) {
		store_fillq_free(q);
		return -ENOMEM;
	}
	return 0;
}

int store_fillq_add_device(struct store_fillq *q, uint32_t dev, uint64_t nblocks)
{
	if (dev >= q->ndev)
		return -EINVAL;
	if (q->pending[dev].words)
		return 0;
	if (store_bitmap_init(&q->pending[dev], nblocks) < 0 ||
	    store_bitmap_init(&q->seen[dev], nblocks) < 0) {
		store_bitmap_free(&q->pending[dev]);
		return -ENOMEM;
	}
	return 0;
}

void store_fillq_push(struct store_fillq *q, uint32_t dev, uint64_t block)
{
	struct store_fillq_item it = {dev, block};
	bool again;

	if (dev >= q->ndev || !q->pending[dev].words || block >= q->pending[dev].nbits || !q->cap)
		return;
	again = store_bitmap_test(&q->seen[dev], block);
	if (!again && q->len == q->cap)
		return;
	store_bitmap_set(&q->seen[dev], block);
	store_bitmap_set(&q->pending[dev], block);
	if (!again) {
		q->ring[(q->head + q->len++) % q->cap] = it;
		return;
	}
	if (q->len == q->cap)
		q->len--;
	q->head = (q->head + q->cap - 1) % q->cap;
	q->ring[q->head] = it;
	q->len++;
}

bool store_fillq_pop(struct store_fillq *q, uint32_t *dev, uint64_t *block)
{
	while (q->len) {
		struct store_fillq_item it = q->ring[q->head];

		q->head = (q->head + 1) % q->cap;
		q->len--;
		if (!store_bitmap_test(&q->pending[it.dev], it.block))
			continue; /* copied already, through a later entry */
		store_bitmap_clear(&q->pending[it.dev], it.block);
		*dev = it.dev;
		*block = it.block;
		return true;
	}
	return false;
}

void store_fillq_free(struct store_fillq *q)
{
	for (size_t i = 0; q->pending && i < q->ndev; i++)
		store_bitmap_free(&q->pending[i]);
	for (size_t i = 0; q->seen && i < q->ndev; i++)
		store_bitmap_free(&q->seen[i]);
	free(q->pending);
	free(q->seen);
	free(q->ring);
	*q = (struct store_fillq){0};
}
