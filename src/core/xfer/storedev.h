/*
 * Live store devices (src/core/store) as migration devices, for `peer`:
 * the source side reads blocks, follows the volatility order, syncs the
 * dirty tracker and lists the blocks of a shared base; the destination side
 * delivers into the waiting cache. A write gate under each device lets the
 * source pause it at suspend so that it is never writable on both hosts.
 */
#ifndef DRAFTER_XFER_STOREDEV_H
#define DRAFTER_XFER_STOREDEV_H

#include "core/config.h"
#include "core/store/store.h"
#include "core/xfer/migrate.h"

struct xfer_storedev;

/*
 * Open device CD from local files (source): base, or a copy-on-write
 * overlay over the base when overlay and state are set.
 */
int xfer_storedev_open_local(const struct cfg_device *cd, struct xfer_storedev **out);

/*
 * Open device CD as a migration destination of SIZE bytes and BLOCK_SIZE
 * blocks. With SHARED (the source announces a shared base and CD has an
 * overlay over an existing base) the blocks come from the local base unless
 * sent; otherwise the device is written to a temporary file next to the base
 * that xfer_storedev_commit renames into place.
 */
int xfer_storedev_open_dest(const struct cfg_device *cd, uint64_t size, uint32_t block_size,
			    bool shared, struct xfer_storedev **out);
/* Destination: route waiting-cache requests to C as device ID. */
void xfer_storedev_set_conn(struct xfer_storedev *s, struct xfer_conn *c, uint16_t id);
/* Destination: the device's files take their final names. */
int xfer_storedev_commit(struct xfer_storedev *s);
/* Destination: fail every reader still waiting for blocks (the source is gone). */
void xfer_storedev_fail(struct xfer_storedev *s, int err);

struct xfer_dev *xfer_storedev_dev(struct xfer_storedev *s);
struct store_device *xfer_storedev_store(struct xfer_storedev *s);

/* Source: prepare a new migration (fresh order, clean dirty set). */
void xfer_storedev_begin(struct xfer_storedev *s);
/* Source: writes go through (OPEN), wait (PAUSED, suspended), or fail with EROFS (CLOSED, handed over). */
enum xfer_gate { XFER_GATE_OPEN, XFER_GATE_PAUSED, XFER_GATE_CLOSED };
void xfer_storedev_gate(struct xfer_storedev *s, enum xfer_gate state);

void xfer_storedev_free(struct xfer_storedev *s);

#endif
