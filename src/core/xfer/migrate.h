/*
 * Migration of a group of devices over one connection (docs/migration.md):
 * the source side (full pass, dirty cycles, suspend, final dirty lists,
 * authority, post-copy, completion) and the destination side. The engine
 * reaches devices through a small adapter vtable (struct xfer_dev_ops), so the
 * same code serves read-only files (registry, terminate) and live store
 * devices (peer); the VM layer plugs in through struct xfer_hooks.
 */
#ifndef DRAFTER_XFER_MIGRATE_H
#define DRAFTER_XFER_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/xfer/transport.h"
#include "core/xfer/wire.h"

/* Per-device block count limit: bounds the per-block state the engine keeps. */
#define XFER_MAX_BLOCKS (1ull << 26)

struct xfer_dev;

/* Adapter between the engine and a device. Optional members may be NULL. */
struct xfer_dev_ops {
	/* Source: read BLOCK (block_len bytes) for sending; this (re)starts tracking it. */
	ssize_t (*read_block)(struct xfer_dev *d, uint64_t block, void *buf);
	/*
	 * Source, optional: 1 when BLOCK is known to be all zero without reading
	 * it (a hole); it is then sent as such and tracked as if read. 0: read it.
	 */
	int (*zero_block)(struct xfer_dev *d, uint64_t block);
	/* Source, optional: next block of the full pass (-ENOENT at the end); NULL = ascending. */
	int (*next_block)(struct xfer_dev *d, uint64_t *block);
	/* Source, optional: return and clear the dirty set (sorted, malloc'd). NULL = never changes. */
	int (*sync_dirty)(struct xfer_dev *d, uint64_t **blocks, size_t *n);
	/*
	 * Source, optional: put the blocks its VMM read (first read first) at
	 * the head of the full pass. Post-copy: the resumed VM waits for what
	 * it touches. Pre-copy: the destination copies arrivals into its page
	 * cache in that order, so the resumed VM finds its working set there.
	 */
	int (*working_set_first)(struct xfer_dev *d);
	/*
	 * Source, optional: the blocks its VMM read, first read first (malloc'd).
	 * The final dirty blocks go in that order after the authority: the
	 * destination's VMM and the resumed VM read them in much the same order.
	 */
	int (*read_order)(struct xfer_dev *d, uint64_t **blocks, size_t *n);
	/* Source, optional: block ranges a destination with the shared base already holds. */
	int (*have)(struct xfer_dev *d, struct xfer_range **ranges, size_t *n);

	/* Destination: a block arrived (verified). */
	int (*deliver)(struct xfer_dev *d, uint64_t block, const void *data, size_t len);
	/* Destination, optional: blocks present without data (HAVE). */
	void (*mark_present)(struct xfer_dev *d, uint64_t start, uint64_t count);
	/* Destination, optional: blocks changed at the source (DIRTY), before the ACK. */
	int (*invalidate)(struct xfer_dev *d, const uint64_t *blocks, size_t n);
};

struct xfer_dev {
	const struct xfer_dev_ops *ops;
	void *ctx;
	const char *name;
	uint64_t size;
	uint32_t block_size;
	uint32_t flags; /* XFER_DEV_* */
	/* Source dirty-cycle settings (struct cfg_device). */
	uint32_t max_dirty_blocks;
	uint32_t min_cycles;
	uint32_t max_cycles;
	uint64_t cycle_throttle_ns;
};

static inline uint64_t xfer_dev_blocks(const struct xfer_dev *d)
{
	return (d->size + d->block_size - 1) / d->block_size;
}
static inline uint32_t xfer_dev_block_len(const struct xfer_dev *d, uint64_t block)
{
	uint64_t off = block * d->block_size;
	return d->size - off < d->block_size ? (uint32_t)(d->size - off) : d->block_size;
}

/*
 * The VM layer's part of a migration. Every member is optional; return 0 or
 * -errno. Source: flush before every dirty cycle (write back memory);
 * suspend once when the devices are ready (pause, save state, flush: the
 * devices stop changing); resume if the migration fails before authority;
 * handover after authority was sent (the source never runs again).
 * authority_data fills what travels with the authority event.
 * Destination: authority when the event arrives (the VM may resume now).
 */
struct xfer_hooks {
	void *ctx;
	int (*flush)(void *ctx);
	/*
	 * Source, optional: the VM is about to be suspended (BeforeSuspend).
	 * What it writes meanwhile goes out in one more dirty cycle while it
	 * still runs, then suspend follows.
	 */
	int (*before_suspend)(void *ctx);
	int (*suspend)(void *ctx);
	int (*resume)(void *ctx);
	int (*handover)(void *ctx);
	int (*authority_data)(void *ctx, uint8_t *buf, size_t cap);
	/*
	 * Source, optional: calls EMIT with the byte ranges of devices (by
	 * name) that the destination reads before anything else once it has
	 * authority; their blocks still to send go first in post-copy.
	 */
	void (*first)(void *ctx, void (*emit)(void *arg, const char *name, uint64_t off, uint64_t len),
		      void *arg);
	int (*authority)(void *ctx, const uint8_t *data, size_t len);
	/*
	 * Destination, optional: at DONE, before acknowledging it: when the VM
	 * ran again (realtime ns; 0: nothing to report). It travels as RESUMED
	 * so that the source can tell the downtime.
	 */
	uint64_t (*resumed)(void *ctx);
	/* Progress: bytes of block data moved so far and the total of the full pass. */
	void (*progress)(void *ctx, uint64_t done, uint64_t total);
};

struct xfer_stats {
	uint64_t blocks_raw, blocks_zero, blocks_zstd, blocks_have, blocks_priority;
	uint64_t bytes_data;    /* device bytes carried by BLOCK messages */
	uint64_t bytes_wire;    /* bytes on the connection */
	uint64_t requests;      /* REQUEST messages sent (destination) or served (source) */
	uint32_t cycles;        /* dirty cycles before the suspend */
	uint64_t final_dirty;   /* blocks in the final dirty lists */
	uint64_t blocks_postcopy; /* source: blocks sent after AUTHORITY */
	uint64_t dest_resumed_ns; /* source: realtime the destination's VM ran again (RESUMED), 0: unknown */
	uint64_t ready_wait_ns;   /* source: how long the freeze waited for the destination's READY */
	uint64_t start_ns, suspend_ns, authority_ns, end_ns;
};

struct xfer_source_opts {
	bool read_only;     /* registry: authority at once, no dirty cycles */
	bool postcopy;      /* suspend and hand over before any block: everything is post-copied */
	uint32_t concurrency; /* bound on queued priority requests (0: 4096) */
};

/*
 * Run the source side on a connection that completed its handshake (role
 * source). Returns 0 when the destination acknowledged DONE. On failure
 * ERR says why and *AUTHORITY_SENT tells which side owns the devices: false
 * means hooks->resume ran and the source keeps them.
 */
int xfer_source_run(struct xfer_conn *c, struct xfer_dev **devs, size_t n,
		    const struct xfer_source_opts *o, const struct xfer_hooks *h,
		    struct xfer_stats *st, bool *authority_sent, char *err, size_t errlen);

/* Destination: how devices announced by the source are opened. */
struct xfer_dest_opts {
	void *ctx;
	/* Return an adapter for the device (owned by the caller), or -errno with ERR. */
	int (*open)(void *ctx, uint16_t id, const char *name, uint64_t size, uint32_t block_size,
		    uint32_t flags, struct xfer_dev **out, char *err, size_t errlen);
	/* Optional: all devices announced. */
	int (*ready)(void *ctx);
};

/*
 * Run the destination side until DONE (0) or failure (-errno with ERR).
 * *AUTHORITY tells whether authority arrived before a failure.
 */
int xfer_dest_run(struct xfer_conn *c, const struct xfer_dest_opts *o, const struct xfer_hooks *h,
		  struct xfer_stats *st, bool *authority, char *err, size_t errlen);

/* Destination: ask for blocks now (priority lane); safe from any thread. */
int xfer_request(struct xfer_conn *c, uint16_t dev, uint64_t block, uint32_t count);

#endif
