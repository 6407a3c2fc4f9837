/*
 * Block devices for drafter: providers (plain/base file, copy-on-write
 * overlay), the device that stacks them under a name and a block size, the
 * source-side dirty tracker and volatility order, the destination-side
 * waiting cache, and the exposure of devices to a VMM (FUSE, kernel NBD,
 * plain file). See docs/storage.md for the design and its decisions.
 *
 * Every function returns 0 (or a positive count) on success and -errno on
 * failure; nothing here prints. Everything below is thread safe unless
 * stated otherwise: FUSE serves requests from several threads while the
 * migration engine reads, delivers and syncs.
 */
#ifndef DRAFTER_STORE_H
#define DRAFTER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/config.h"
#include "core/util.h"

#define STORE_DEFAULT_BLOCK_SIZE (64u * 1024u)
/* Block sizes are powers of two within these bounds. */
#define STORE_MIN_BLOCK_SIZE    512u
#define STORE_MAX_BLOCK_SIZE    (16u * 1024u * 1024u)
#define STORE_DEFAULT_EXPIRY_NS (1000ull * 1000 * 1000)
/* Largest device drafter opens (bounds every per-block allocation). */
#define STORE_MAX_DEVICE_SIZE (1ull << 50)

struct store_device;

/* ---------------------------------------------------------------- bitmap */

/* A plain set of block numbers; not synchronised (a snapshot or a result). */
struct store_bitmap {
	uint64_t nbits;
	uint64_t *words;
};

int store_bitmap_init(struct store_bitmap *b, uint64_t nbits);
void store_bitmap_free(struct store_bitmap *b);
void store_bitmap_set(struct store_bitmap *b, uint64_t bit);
void store_bitmap_clear(struct store_bitmap *b, uint64_t bit);
bool store_bitmap_test(const struct store_bitmap *b, uint64_t bit);
void store_bitmap_set_all(struct store_bitmap *b);
void store_bitmap_clear_all(struct store_bitmap *b);
uint64_t store_bitmap_count(const struct store_bitmap *b);
/* The first set bit at or after FROM, or UINT64_MAX when there is none. */
uint64_t store_bitmap_next(const struct store_bitmap *b, uint64_t from);
/* The set bits in ascending order as a newly allocated array (NULL when empty). */
int store_bitmap_to_list(const struct store_bitmap *b, uint64_t **list, size_t *n);

/* -------------------------------------------------------------- providers */

struct store_provider;

/*
 * A provider is a byte array of fixed size. read_at and write_at return the
 * number of bytes transferred: LEN, or less only where the range crosses the
 * end (0 at or beyond it); -errno on failure. is_zero is optional: 1 when the
 * range is known to read as zeros without reading it (a hole), 0 when it may
 * hold data. close frees the provider and everything below it.
 */
struct store_ops {
	const char *name;
	ssize_t (*read_at)(struct store_provider *p, void *buf, size_t len, uint64_t off);
	ssize_t (*write_at)(struct store_provider *p, const void *buf, size_t len, uint64_t off);
	uint64_t (*size)(struct store_provider *p);
	int (*flush)(struct store_provider *p);
	void (*close)(struct store_provider *p);
	int (*is_zero)(struct store_provider *p, uint64_t off, uint64_t len);
};

/* Implementations embed this as their first member. */
struct store_provider {
	const struct store_ops *ops;
};

static inline ssize_t store_read_at(struct store_provider *p, void *buf, size_t len, uint64_t off)
{
	return p->ops->read_at(p, buf, len, off);
}
static inline ssize_t store_write_at(struct store_provider *p, const void *buf, size_t len,
                                     uint64_t off)
{
	return p->ops->write_at(p, buf, len, off);
}
static inline uint64_t store_size(struct store_provider *p)
{
	return p->ops->size(p);
}
static inline int store_flush(struct store_provider *p)
{
	return p->ops->flush ? p->ops->flush(p) : 0;
}
static inline int store_is_zero(struct store_provider *p, uint64_t off, uint64_t len)
{
	return p->ops->is_zero ? p->ops->is_zero(p, off, len) : 0;
}
static inline void store_close(struct store_provider *p)
{
	if (p)
		p->ops->close(p);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(struct store_provider *, store_close)
#define _cleanup_store_ _cleanup_(store_closep)

enum store_file_mode {
	STORE_FILE_RDONLY, /* existing file, writes fail with -EROFS */
	STORE_FILE_RDWR,   /* existing file */
	STORE_FILE_CREATE, /* created if missing; resized (sparsely) to SIZE */
};

/*
 * A plain file (also the base of an overlay). SIZE 0 with RDONLY/RDWR means
 * the file's size; otherwise RDONLY/RDWR require the file to be exactly SIZE
 * (-EINVAL if not). is_zero answers from SEEK_DATA/SEEK_HOLE.
 */
int store_file_open(const char *path, enum store_file_mode mode, uint64_t size,
                    struct store_provider **out);
/* The path of a file provider, NULL for other providers. */
const char *store_file_path(struct store_provider *p);

/*
 * Copy-on-write overlay over BASE (read only through it). OVERLAY_PATH is a
 * sparse file of the base's size holding only the blocks written through
 * the overlay; STATE_PATH lists which blocks those are (created when
 * missing; a corrupt or mismatching state file gives -EBADMSG). The state is
 * saved on flush and on close. On success the overlay owns BASE.
 */
int store_overlay_open(struct store_provider *base, const char *overlay_path,
                       const char *state_path, uint32_t block_size, struct store_provider **out);
/* Which blocks the overlay holds (the rest come from the base). -EINVAL if P is no overlay. */
int store_overlay_present(struct store_provider *p, struct store_bitmap *out);
/* Write the state file now (atomically: temporary file + rename). */
int store_overlay_save(struct store_provider *p);

/*
 * A device's provider stack from its files. With OVERLAY and STATE: a
 * copy-on-write overlay over BASE, which is opened read-only. Otherwise BASE
 * itself: read-only with READ_ONLY; created (sparse) or resized to SIZE
 * when SIZE is non-zero; else opened read-write at its own size.
 */
struct store_stack_opts {
	const char *base;
	const char *overlay;
	const char *state;
	uint32_t block_size; /* for the overlay; 0: STORE_DEFAULT_BLOCK_SIZE */
	uint64_t size;
	bool read_only;
};
int store_stack_open(const struct store_stack_opts *o, struct store_provider **out);

/*
 * A device from its configuration (struct cfg_device: name, base, overlay,
 * state, block_size, expiry). A destination gets a waiting cache, and its
 * base is created with SIZE (the source's) unless an overlay is given.
 * SIZE 0 opens an existing base at its own size.
 */
int store_device_open_cfg(const struct cfg_device *cd, bool destination, uint64_t size,
                          struct store_device **out);
/* The configuration's exposure setting as a store kind. */
enum store_expose_kind store_expose_kind_from_cfg(enum cfg_exposure e);

/* ----------------------------------------------------------- dirty tracker */

/*
 * Which blocks changed since the migration read them. A block is tracked
 * once it has been read for sending (store_device_read_block) or explicitly
 * (store_tracker_track); a write to a tracked block marks it dirty. sync
 * returns the dirty set and clears it, and untracks those blocks until they
 * are read for sending again.
 */
struct store_tracker;

int store_tracker_new(uint64_t nblocks, struct store_tracker **out);
void store_tracker_free(struct store_tracker *t);
void store_tracker_track(struct store_tracker *t, uint64_t first, uint64_t count);
void store_tracker_track_all(struct store_tracker *t);
/* Note a write to blocks [first, first+count). */
void store_tracker_mark(struct store_tracker *t, uint64_t first, uint64_t count);
/* OUT is initialised here (nblocks bits); free it with store_bitmap_free. */
int store_tracker_sync(struct store_tracker *t, struct store_bitmap *out);
/* The same as a sorted list of block numbers (NULL, 0 when clean). */
int store_tracker_sync_list(struct store_tracker *t, uint64_t **blocks, size_t *n);
uint64_t store_tracker_dirty_count(struct store_tracker *t);

/* ------------------------------------------------------ volatility order */

/*
 * The order in which the source sends blocks: blocks asked for by the
 * destination first (in the order asked), then the least volatile ones:
 * fewest writes within EXPIRY, then least recently written, then ascending.
 * Blocks are "available" until handed out by next or removed.
 */
struct store_volatility;

int store_volatility_new(uint64_t nblocks, uint64_t expiry_ns, struct store_volatility **out);
void store_volatility_free(struct store_volatility *v);
void store_volatility_record(struct store_volatility *v, uint64_t first, uint64_t count);
void store_volatility_add_all(struct store_volatility *v);
void store_volatility_add(struct store_volatility *v, uint64_t block);
void store_volatility_remove(struct store_volatility *v, uint64_t block);
/* Move BLOCK to the front if still available; 1 if it was, 0 if not, -ENOMEM. */
int store_volatility_prioritise(struct store_volatility *v, uint64_t block);
/* 1: BLOCK is a priority block, 0: a standard one, -ENOENT: none left. */
int store_volatility_next(struct store_volatility *v, uint64_t *block);
uint64_t store_volatility_remaining(struct store_volatility *v);

/* ---------------------------------------------------------- waiting cache */

/*
 * Destination side: which blocks have arrived. A local read or partial write
 * of a block that has not arrived blocks, and the first such access calls
 * the request callback once for that block; deliver writes the block and
 * wakes the waiters. A local write of a whole block makes it present and a
 * later delivery of that block is dropped (local writes win).
 */
struct store_wait;
struct store_device;

/* Called without locks held, from the thread that wants the block. */
typedef void (*store_request_fn)(void *ctx, struct store_device *dev, uint64_t block);

void store_wait_set_request(struct store_wait *w, store_request_fn fn, void *ctx);
/* Blocks the destination already has (a shared base): present without data. */
void store_wait_mark_present(struct store_wait *w, const struct store_bitmap *blocks);
void store_wait_mark_range(struct store_wait *w, uint64_t first, uint64_t count);
/* A dirty list: those blocks must arrive again (locally written ones stay). */
int store_wait_invalidate(struct store_wait *w, const uint64_t *blocks, size_t n);
/*
 * Ask for the missing blocks among COUNT from FIRST that nobody asked for
 * yet, without waiting for them (a reader that will want them soon).
 */
void store_wait_request(struct store_wait *w, uint64_t first, uint64_t count);
/* Blocks until every block is present (0) or the cache failed (its error). */
int store_wait_complete(struct store_wait *w);
/* Wake every waiter with ERR (e.g. -EIO) now and for every later wait. */
void store_wait_fail(struct store_wait *w, int err);
uint64_t store_wait_missing(struct store_wait *w);
bool store_wait_present(struct store_wait *w, uint64_t block);

/* ----------------------------------------------------------------- device */

struct store_device_opts {
	const char *name;
	uint32_t block_size; /* 0: STORE_DEFAULT_BLOCK_SIZE */
	uint64_t expiry_ns;  /* volatility window; 0: STORE_DEFAULT_EXPIRY_NS */
	bool destination;    /* with a waiting cache: every block starts missing */
};

/*
 * A named device over a provider stack. Local reads and writes (what the
 * VMM does through an exposure) go through the waiting cache, then to the
 * stack, then mark the tracker and the volatility monitor. On success the
 * device owns STACK.
 */
int store_device_new(const struct store_device_opts *o, struct store_provider *stack,
                     struct store_device **out);
/* Flushes and closes the stack. */
void store_device_free(struct store_device *d);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct store_device *, store_device_free)

const char *store_device_name(const struct store_device *d);
uint32_t store_device_block_size(const struct store_device *d);
uint64_t store_device_size(const struct store_device *d);
uint64_t store_device_blocks(const struct store_device *d);
/* The provider stack under the device (e.g. for store_overlay_present). */
struct store_provider *store_device_stack(struct store_device *d);
/* The device's local view as a provider (owned by the device; do not close). */
struct store_provider *store_device_provider(struct store_device *d);

/*
 * Refuse local writes (-EROFS) from now on, or allow them again: a source
 * after it handed authority over, a destination before it received it, so
 * that never both sides are writable. Migration reads and deliveries go on.
 */
void store_device_set_read_only(struct store_device *d, bool read_only);
bool store_device_read_only(struct store_device *d);

ssize_t store_device_read(struct store_device *d, void *buf, size_t len, uint64_t off);
ssize_t store_device_write(struct store_device *d, const void *buf, size_t len, uint64_t off);
int store_device_flush(struct store_device *d);

/* Source side. Bytes in BLOCK (block size, less for the last block). */
size_t store_device_block_len(const struct store_device *d, uint64_t block);
/* Read BLOCK for sending: tracks it first, so a later write makes it dirty. */
ssize_t store_device_read_block(struct store_device *d, uint64_t block, void *buf);
/*
 * For sending, instead of a read: 1 when BLOCK is known to be all zero
 * without reading it (a hole), 0 when not known. Tracks it first, like
 * store_device_read_block. A block still missing at a destination is 0.
 */
int store_device_block_is_zero(struct store_device *d, uint64_t block);
struct store_tracker *store_device_tracker(struct store_device *d);
struct store_volatility *store_device_volatility(struct store_device *d);
/*
 * The blocks read through store_device_read (an exposure: the VMM), each
 * once, in the order of their first read: *BLOCKS is malloc'd, *N may be 0.
 */
int store_device_access_order(struct store_device *d, uint64_t **blocks, size_t *n);

/* Destination side; NULL / -EINVAL on a device made without destination. */
struct store_wait *store_device_wait(struct store_device *d);
/*
 * Write a block that arrived (LEN = store_device_block_len) below the
 * waiting cache: 1 when written, 0 when dropped because the block was
 * written locally meanwhile.
 */
int store_device_deliver(struct store_device *d, uint64_t block, const void *data, size_t len);

/*
 * Called after content changed underneath the exposure (a write that did
 * not go through it, a dirty list), so that it can drop cached pages. Set
 * by the exposure. LATER: the pages may go after the call returns, from a
 * thread of the exposure's (store_expose_settle waits for them); the
 * caller may be the thread whose deliveries a reader of those pages waits
 * for.
 */
typedef void (*store_changed_fn)(void *ctx, struct store_device *dev, uint64_t off, uint64_t len,
                                 bool later);
void store_device_set_changed(struct store_device *d, store_changed_fn fn, void *ctx);
/*
 * Tell the exposure that [OFF, OFF+LEN) changed underneath it: its cached
 * pages are gone when this returns (_later: see store_changed_fn).
 */
void store_device_notify_changed(struct store_device *d, uint64_t off, uint64_t len);
void store_device_notify_changed_later(struct store_device *d, uint64_t off, uint64_t len);
/*
 * Called after a delivery wrote BLOCK, from the delivering thread (it must
 * not block). Set by the exposure.
 */
typedef void (*store_stored_fn)(void *ctx, struct store_device *dev, uint64_t block);
void store_device_set_stored(struct store_device *d, store_stored_fn fn, void *ctx);
/*
 * Destination: copy BLOCK into BUF (its length) if it has arrived, without
 * waiting: -EAGAIN when it is missing. *GEN: store_device_generation as of
 * the copy; if it has moved on since, the copy may be of an older version,
 * or torn by the new one's delivery. Meant for copies made before the
 * device is written locally (the prefill), which no lock is taken for.
 */
ssize_t store_device_read_present(struct store_device *d, uint64_t block, void *buf, uint64_t *gen);
/* Destination: how many dirty lists invalidated blocks so far. */
uint64_t store_device_generation(struct store_device *d);

/* --------------------------------------------------------------- exposure */

enum store_expose_kind {
	STORE_EXPOSE_AUTO, /* nbd if the kernel module is loaded, else fuse */
	STORE_EXPOSE_FUSE,
	STORE_EXPOSE_NBD,
	STORE_EXPOSE_FILE, /* the device's own file; only for a plain file stack */
};

struct store_expose_opts {
	enum store_expose_kind kind;
	const char *mount_dir; /* fuse: the mount point goes below it */
	const char *instance;  /* fuse: mount point name; NULL: "drafter-<pid>" */
	bool writeback_cache;  /* fuse: let the kernel cache write() too (see docs) */
};

struct store_expose;

/* One backend; designated initialisers in store-fuse.c, store-nbd.c, store-expose.c. */
struct store_expose_ops {
	const char *name;
	int (*start)(struct store_expose *e);
	/* Make writes cached by the kernel for device I reach the device. */
	int (*flush)(struct store_expose *e, size_t i);
	void (*stop)(struct store_expose *e);
	/* optional: store_expose_prefill_start (device I) and _stop (I == SIZE_MAX) */
	int (*prefill)(struct store_expose *e, size_t i);
	/* optional: store_expose_settle */
	void (*settle)(struct store_expose *e);
	/* optional: store_expose_warm */
	void (*warm)(struct store_expose *e);
};

/*
 * Expose N devices (not owned; they must outlive the exposure). On failure
 * nothing stays mounted or connected.
 */
int store_expose_new(const struct store_expose_opts *o, struct store_device **devs, size_t n,
                     struct store_expose **out);
/* Unmount/disconnect and free. */
void store_expose_free(struct store_expose *e);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct store_expose *, store_expose_free)
/* The path a VMM opens for device I ("/mnt/x/memory", "/dev/nbd3", the file). */
const char *store_expose_path(const struct store_expose *e, size_t i);
/* The mount point (fuse) or NULL. */
const char *store_expose_mountpoint(const struct store_expose *e);
const char *store_expose_kind_name(const struct store_expose *e);
/*
 * Destination, FUSE: from now on copy the blocks of device I that arrive
 * (all but blocks of zeros) into the kernel's page cache, so that a VMM
 * mapping the device later finds them there instead of asking for each
 * page in turn. Only while nothing writes through the exposure (a VM that
 * has not run yet): a copy could overwrite a write still in the cache.
 * Other backends: nothing to do (0). store_expose_prefill_stop ends it for
 * every device and returns once no copy is underway any more; from
 * store_expose_warm on the blocks that dirty lists dropped are read into
 * the cache as they come back (a read fills only pages the kernel does not
 * hold).
 */
int store_expose_prefill_start(struct store_expose *e, size_t i);
void store_expose_prefill_stop(struct store_expose *e);
/*
 * Return once the cached pages that dirty lists dropped so far are gone
 * (store_device_notify_changed_later; nbd: a destination's whole cache
 * goes once more): before a VM loads from the devices. Not from the
 * thread that delivers blocks: a drop may wait for a reader, and the
 * reader for a delivery.
 */
void store_expose_settle(struct store_expose *e);
/*
 * The VM loaded from the devices runs: after store_expose_prefill_stop the
 * dropped blocks are read into the cache from here on, not while it loads.
 */
void store_expose_warm(struct store_expose *e);
/* Write back pages a VMM dirtied through MAP_SHARED so the tracker sees them. */
int store_expose_flush(struct store_expose *e, size_t i);
int store_expose_flush_all(struct store_expose *e);
/*
 * Remove what a crashed drafter left below MOUNT_DIR: FUSE mounts of ours
 * whose server is gone (they answer ENOTCONN) are detached and their mount
 * points removed. Live mounts are left alone. Returns how many were removed.
 */
int store_expose_cleanup_stale(const char *mount_dir);
/* What auto resolves to on this machine. */
enum store_expose_kind store_expose_auto(void);
int store_expose_kind_from_string(const char *s, enum store_expose_kind *out);

/* ------------------------------------------------------------- NBD server */

#define STORE_NBD_MAX_REQUEST (32u * 1024u * 1024u)

/*
 * Serve NBD transmission requests (simple replies) on FD for DEV until
 * NBD_CMD_DISC (0) or until the peer closes (0) or a protocol error (-EPROTO,
 * after which the connection must be dropped). Bad offsets and lengths get
 * an error reply and the connection goes on. Reads and writes run on worker
 * threads and are answered in completion order; requests already taken are
 * answered before it returns (fail a destination's waiting cache to end
 * reads that wait for blocks).
 */
int store_nbd_serve(int fd, struct store_device *d);
/* 1 when the kernel's nbd module is loaded. */
bool store_nbd_available(void);

#endif
