/*
 * Pieces shared by the store sources but not part of the public API: the
 * device layout (the waiting cache and the exposures need it) and the
 * waiting cache's hooks into the device's read and write paths.
 */
#ifndef DRAFTER_STORE_INTERNAL_H
#define DRAFTER_STORE_INTERNAL_H

#include <pthread.h>

#include "core/store/store.h"

#define STORE_STRIPES 64

struct store_device {
	struct store_provider prov; /* the local view */
	char *name;
	uint32_t block_size;
	unsigned block_shift;
	uint64_t size;
	uint64_t nblocks;
	struct store_provider *stack;
	struct store_tracker *tracker;
	struct store_volatility *vol;
	struct store_wait *wait;
	bool read_only; /* atomic */
	/* the exposure's hook; the lock keeps a call from racing with its removal */
	pthread_mutex_t changed_lock;
	store_changed_fn changed;
	void *changed_ctx;
	store_stored_fn stored;
	void *stored_ctx;
	/*
	 * Destination only: a delivery or a local write of a block holds its
	 * stripe exclusively, a local read shares it, so a reader never sees
	 * half of two versions and "local wins" holds against late deliveries.
	 */
	pthread_rwlock_t stripes[STORE_STRIPES];
	/*
	 * Destination only: the blocks delivered as zeros over a hole of the
	 * file (nothing was written), which read as zeros without reading the
	 * file. Bits change under the block's stripe, words with atomic ops.
	 */
	struct store_bitmap holes;
	/*
	 * The blocks in the order the exposure first read them: what the VMM
	 * reads once and then finds in its page cache, its working set.
	 */
	pthread_mutex_t access_lock;
	struct store_bitmap accessed;
	uint64_t *access_order;
	size_t access_len, access_cap;
};

/* How much of [OFF, OFF+LEN) lies inside SIZE bytes: I/O past the end is cut, not refused. */
static inline size_t store_clip(uint64_t size, size_t len, uint64_t off)
{
	if (off >= size)
		return 0;
	return (uint64_t)len > size - off ? (size_t)(size - off) : len;
}

static inline pthread_rwlock_t *store_stripe(struct store_device *d, uint64_t block)
{
	return &d->stripes[block % STORE_STRIPES];
}

int store_wait_new(struct store_device *d, struct store_wait **out);
void store_wait_free(struct store_wait *w);
/* Block until [first, first+count) are present; the first waiter of a block requests it. */
int store_wait_acquire(struct store_wait *w, uint64_t first, uint64_t count);
/* Whether every block of [first, first+count) is present now. */
bool store_wait_all_present(struct store_wait *w, uint64_t first, uint64_t count);
/* Caller holds the block's stripe. The block was written locally: present, and it wins. */
void store_wait_local_written(struct store_wait *w, uint64_t block);
/* Caller holds the block's stripe. 1 when a delivery may write the block. */
bool store_wait_may_deliver(struct store_wait *w, uint64_t block);
/* Caller holds the block's stripe. A delivery wrote the block. */
void store_wait_delivered(struct store_wait *w, uint64_t block);
/* How many dirty lists invalidated blocks so far. */
uint64_t store_wait_generation(struct store_wait *w);

/*
 * The FUSE prefill's work list (store-fillq.c): blocks that arrive again
 * first, latest first, then first arrivals in arrival order; each queued
 * block comes out once. Not synchronised.
 */
struct store_fillq_item {
	uint32_t dev;
	uint64_t block;
};

struct store_fillq {
	struct store_fillq_item *ring;
	size_t cap, head, len, ndev;
	struct store_bitmap *pending, *seen; /* per device: queued, arrived before */
};

/* Room for CAP entries over NDEV devices; each device is added before its blocks. */
int store_fillq_init(struct store_fillq *q, size_t cap, size_t ndev);
int store_fillq_add_device(struct store_fillq *q, uint32_t dev, uint64_t nblocks);
/* BLOCK of DEV arrived (blocks of a device not added are ignored). */
void store_fillq_push(struct store_fillq *q, uint32_t dev, uint64_t block);
/* The next block to copy: false when there is none. */
bool store_fillq_pop(struct store_fillq *q, uint32_t *dev, uint64_t *block);
void store_fillq_free(struct store_fillq *q);

/* 64-bit FNV-1a, for the overlay state file's checksum. */
uint64_t store_fnv1a(uint64_t h, const void *data, size_t len);
#define STORE_FNV_INIT 0xcbf29ce484222325ull

#endif
