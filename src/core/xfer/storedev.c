/*
 * Adapter between store devices and the migration engine, plus the write
 * gate provider that sits between a device and its files: the source pauses
 * writes when it suspends, so no write can land after the final dirty
 * lists; they go on if the migration fails before authority and fail with
 * EROFS once the destination owns the device.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "core/xfer/storedev.h"

struct gate {
	struct store_provider p;
	struct store_provider *below;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum xfer_gate state;
	unsigned writing; /* writes past the gate, not done yet */
};

static ssize_t gate_read(struct store_provider *p, void *buf, size_t len, uint64_t off)
{
	struct gate *g = (struct gate *)p;
	return store_read_at(g->below, buf, len, off);
}

/*
 * While the source is suspended a write waits (as a paused VM would not
 * write at all): it proceeds if the migration fails and the source resumes,
 * and fails with EROFS once the destination owns the device.
 */
static ssize_t gate_write(struct store_provider *p, const void *buf, size_t len, uint64_t off)
{
	struct gate *g = (struct gate *)p;
	enum xfer_gate st;

	pthread_mutex_lock(&g->lock);
	while (g->state == XFER_GATE_PAUSED)
		pthread_cond_wait(&g->cond, &g->lock);
	st = g->state;
	if (st != XFER_GATE_CLOSED)
		g->writing++;
	pthread_mutex_unlock(&g->lock);
	if (st == XFER_GATE_CLOSED)
		return -EROFS;
	ssize_t n = store_write_at(g->below, buf, len, off);
	pthread_mutex_lock(&g->lock);
	if (--g->writing == 0)
		pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
	return n;
}

static uint64_t gate_size(struct store_provider *p)
{
	return store_size(((struct gate *)p)->below);
}

static int gate_flush(struct store_provider *p)
{
	return store_flush(((struct gate *)p)->below);
}

static void gate_close(struct store_provider *p)
{
	struct gate *g = (struct gate *)p;
	store_close(g->below);
	pthread_mutex_destroy(&g->lock);
	pthread_cond_destroy(&g->cond);
	free(g);
}

static int gate_is_zero(struct store_provider *p, uint64_t off, uint64_t len)
{
	return store_is_zero(((struct gate *)p)->below, off, len);
}

static const struct store_ops gate_ops = {
	.name = "gate",
	.read_at = gate_read,
	.write_at = gate_write,
	.size = gate_size,
	.flush = gate_flush,
	.close = gate_close,
	.is_zero = gate_is_zero,
};

struct xfer_storedev {
	struct xfer_dev dev;
	struct store_device *sd;
	struct gate *gate;
	struct store_provider *files; /* the stack under the gate (overlay or file) */
	bool overlay;
	char *name;
	char *tmp;   /* destination: temporary base until committed */
	bool discard; /* destination: TMP stays temporary (no base configured) */
	char *final; /* destination: where the base goes */
	char *created_overlay, *created_state; /* destination: removed if never committed */
	struct xfer_conn *conn;
	uint16_t id;
};

static ssize_t sd_read_block(struct xfer_dev *d, uint64_t block, void *buf)
{
	struct xfer_storedev *s = d->ctx;
	return store_device_read_block(s->sd, block, buf);
}

static int sd_zero_block(struct xfer_dev *d, uint64_t block)
{
	struct xfer_storedev *s = d->ctx;
	return store_device_block_is_zero(s->sd, block);
}

static int sd_next_block(struct xfer_dev *d, uint64_t *block)
{
	struct xfer_storedev *s = d->ctx;
	int r = store_volatility_next(store_device_volatility(s->sd), block);
	return r < 0 ? r : 0;
}

/* The VM's working set (the blocks its VMM read, first read first) at the head of the pass. */
static int sd_working_set_first(struct xfer_dev *d)
{
	struct xfer_storedev *s = d->ctx;
	struct store_volatility *v = store_device_volatility(s->sd);
	_cleanup_free_ uint64_t *order = NULL;
	size_t n = 0;
	int r = store_device_access_order(s->sd, &order, &n);

	for (size_t i = 0; r >= 0 && i < n; i++)
		r = store_volatility_prioritise(v, order[i]);
	return r < 0 ? r : 0;
}

static int sd_read_order(struct xfer_dev *d, uint64_t **blocks, size_t *n)
{
	struct xfer_storedev *s = d->ctx;
	return store_device_access_order(s->sd, blocks, n);
}

static int sd_sync(struct xfer_dev *d, uint64_t **blocks, size_t *n)
{
	struct xfer_storedev *s = d->ctx;
	return store_tracker_sync_list(store_device_tracker(s->sd), blocks, n);
}

/* The blocks a destination holding the same base has: all not in the overlay. */
static int sd_have(struct xfer_dev *d, struct xfer_range **out, size_t *nout)
{
	struct xfer_storedev *s = d->ctx;
	struct store_bitmap present;
	struct xfer_range *r = NULL;
	size_t n = 0, cap = 0;
	uint64_t nb = xfer_dev_blocks(d), b = 0;
	int ret;

	*out = NULL;
	*nout = 0;
	if (!s->overlay)
		return 0;
	/* Track every block before looking: a block announced as "in the base"
	 * and written afterwards must come back as dirty, never be lost. */
	store_tracker_track_all(store_device_tracker(s->sd));
	ret = store_overlay_present(s->files, &present);
	if (ret < 0)
		return ret;
	while (b < nb) {
		if (store_bitmap_test(&present, b)) {
			b++;
			continue;
		}
		uint64_t start = b;
		while (b < nb && !store_bitmap_test(&present, b))
			b++;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			r = xreallocarray(r, cap, sizeof(*r));
		}
		r[n++] = (struct xfer_range){ start, b - start };
	}
	store_bitmap_free(&present);
	*out = r;
	*nout = n;
	return 0;
}

static int sd_deliver(struct xfer_dev *d, uint64_t block, const void *data, size_t len)
{
	struct xfer_storedev *s = d->ctx;
	int r = store_device_deliver(s->sd, block, data, len);
	return r < 0 ? r : 0;
}

static void sd_present(struct xfer_dev *d, uint64_t start, uint64_t count)
{
	struct xfer_storedev *s = d->ctx;
	struct store_bitmap bm;

	if (store_bitmap_init(&bm, xfer_dev_blocks(d)) < 0)
		return;
	for (uint64_t b = start; b < start + count; b++)
		store_bitmap_set(&bm, b);
	store_wait_mark_present(store_device_wait(s->sd), &bm);
	store_bitmap_free(&bm);
}

static int sd_invalidate(struct xfer_dev *d, const uint64_t *blocks, size_t n)
{
	struct xfer_storedev *s = d->ctx;
	return store_wait_invalidate(store_device_wait(s->sd), blocks, n);
}

static const struct xfer_dev_ops storedev_ops = {
	.read_block = sd_read_block,
	.zero_block = sd_zero_block,
	.next_block = sd_next_block,
	.working_set_first = sd_working_set_first,
	.read_order = sd_read_order,
	.sync_dirty = sd_sync,
	.have = sd_have,
	.deliver = sd_deliver,
	.mark_present = sd_present,
	.invalidate = sd_invalidate,
};

static void on_request(void *ctx, struct store_device *dev, uint64_t block)
{
	struct xfer_storedev *s = ctx;
	(void)dev;
	struct xfer_conn *c = __atomic_load_n(&s->conn, __ATOMIC_ACQUIRE);
	if (c)
		(void)xfer_request(c, s->id, block, 1);
}

static int storedev_finish(struct xfer_storedev *s, const struct cfg_device *cd,
			   struct store_provider *files, bool destination, uint32_t block_size)
{
	struct store_device_opts o = {
		.name = cd->name,
		.block_size = block_size,
		.expiry_ns = cd->expiry_ns,
		.destination = destination,
	};
	struct gate *g = xcalloc(1, sizeof(*g));
	int r;

	g->p.ops = &gate_ops;
	g->below = files;
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	g->state = XFER_GATE_OPEN;
	s->files = files;
	s->gate = g;
	r = store_device_new(&o, &g->p, &s->sd);
	if (r < 0) {
		gate_close(&g->p);
		s->gate = NULL;
		s->files = NULL;
		return r;
	}
	s->name = xstrdup(cd->name);
	s->dev.ops = &storedev_ops;
	s->dev.ctx = s;
	s->dev.name = s->name;
	s->dev.size = store_device_size(s->sd);
	s->dev.block_size = store_device_block_size(s->sd);
	s->dev.flags = cd->shared_base && s->overlay ? XFER_DEV_SHARED_BASE : 0;
	s->dev.max_dirty_blocks = cd->max_dirty_blocks;
	s->dev.min_cycles = cd->min_cycles;
	s->dev.max_cycles = cd->max_cycles;
	s->dev.cycle_throttle_ns = cd->cycle_throttle_ns;
	if (destination)
		store_wait_set_request(store_device_wait(s->sd), on_request, s);
	return 0;
}

int xfer_storedev_open_local(const struct cfg_device *cd, struct xfer_storedev **out)
{
	struct xfer_storedev *s = xcalloc(1, sizeof(*s));
	struct store_provider *files = NULL;
	bool overlay = !str_empty(cd->overlay) && !str_empty(cd->state);
	int r;

	struct store_stack_opts so = {
		.base = !str_empty(cd->base) ? cd->base : cd->path,
		.overlay = overlay ? cd->overlay : NULL,
		.state = overlay ? cd->state : NULL,
		.block_size = cd->block_size,
	};
	if (str_empty(so.base)) {
		free(s);
		return -EINVAL;
	}
	s->overlay = overlay;
	/* Overlay and state are created on first use, their directories too. */
	if (overlay && ((r = mkdir_parents(cd->overlay)) < 0 || (r = mkdir_parents(cd->state)) < 0)) {
		free(s);
		return r;
	}
	r = store_stack_open(&so, &files);
	if (r < 0) {
		free(s);
		return r;
	}
	r = storedev_finish(s, cd, files, false, cd->block_size);
	if (r < 0) {
		free(s);
		return r;
	}
	*out = s;
	return 0;
}

int xfer_storedev_open_dest(const struct cfg_device *cd, uint64_t size, uint32_t block_size,
			    bool shared, struct xfer_storedev **out)
{
	struct xfer_storedev *s = xcalloc(1, sizeof(*s));
	struct store_provider *files = NULL;
	const char *base = !str_empty(cd->base) ? cd->base : cd->path;
	int r;

	struct store_stack_opts so = { .base = base, .block_size = block_size };
	if (str_empty(base)) {
		/* Kept nowhere: a file of our own, removed when the device goes. */
		const char *dir = getenv("TMPDIR");
		s->tmp = xasprintf("%s/drafter-%s-XXXXXX", !str_empty(dir) ? dir : "/var/tmp", cd->name);
		int fd = mkostemp(s->tmp, O_CLOEXEC);
		if (fd < 0) {
			r = -errno;
			free(s->tmp);
			free(s);
			return r;
		}
		close(fd);
		s->discard = true;
		so.base = s->tmp;
		so.size = size;
	} else if (shared) {
		/* The overlay starts empty: what it held belongs to an older run. */
		bool had_overlay = access(cd->overlay, F_OK) == 0, had_state = access(cd->state, F_OK) == 0;
		(void)unlink(cd->overlay);
		(void)unlink(cd->state);
		r = mkdir_parents(cd->overlay);
		if (r >= 0)
			r = mkdir_parents(cd->state);
		if (r < 0) {
			free(s);
			return r;
		}
		so.overlay = cd->overlay;
		so.state = cd->state;
		s->overlay = true;
		if (!had_overlay)
			s->created_overlay = xstrdup(cd->overlay);
		if (!had_state)
			s->created_state = xstrdup(cd->state);
	} else {
		r = mkdir_parents(base);
		if (r < 0) {
			free(s);
			return r;
		}
		s->final = xstrdup(base);
		s->tmp = xcalloc(1, strlen(base) + 32);
		sprintf(s->tmp, "%s.part-XXXXXX", base);
		int fd = mkostemp(s->tmp, O_CLOEXEC);
		if (fd < 0) {
			r = -errno;
			free(s->tmp);
			free(s->final);
			free(s);
			return r;
		}
		close(fd);
		so.base = s->tmp;
		so.size = size;
	}
	r = store_stack_open(&so, &files);
	if (r >= 0 && store_size(files) != size) {
		store_close(files);
		r = -EINVAL; /* a shared base that differs from the source's cannot be right */
	}
	if (r >= 0)
		r = storedev_finish(s, cd, files, true, block_size);
	if (r < 0) {
		xfer_storedev_free(s);
		return r;
	}
	*out = s;
	return 0;
}

void xfer_storedev_set_conn(struct xfer_storedev *s, struct xfer_conn *c, uint16_t id)
{
	s->id = id;
	__atomic_store_n(&s->conn, c, __ATOMIC_RELEASE);
}

int xfer_storedev_commit(struct xfer_storedev *s)
{
	if (s->tmp && !s->discard) {
		if (rename(s->tmp, s->final) < 0)
			return -errno;
		free(s->tmp);
		s->tmp = NULL;
	}
	free(s->created_overlay);
	free(s->created_state);
	s->created_overlay = s->created_state = NULL;
	return 0;
}

void xfer_storedev_fail(struct xfer_storedev *s, int err)
{
	struct store_wait *w = s->sd ? store_device_wait(s->sd) : NULL;

	__atomic_store_n(&s->conn, NULL, __ATOMIC_RELEASE);
	if (w)
		store_wait_fail(w, err);
}

struct xfer_dev *xfer_storedev_dev(struct xfer_storedev *s)
{
	return &s->dev;
}

struct store_device *xfer_storedev_store(struct xfer_storedev *s)
{
	return s->sd;
}

void xfer_storedev_begin(struct xfer_storedev *s)
{
	uint64_t *list = NULL;
	size_t n = 0;

	store_volatility_add_all(store_device_volatility(s->sd));
	(void)store_tracker_sync_list(store_device_tracker(s->sd), &list, &n);
	free(list);
}

void xfer_storedev_gate(struct xfer_storedev *s, enum xfer_gate state)
{
	struct gate *g = s->gate;

	pthread_mutex_lock(&g->lock);
	g->state = state;
	pthread_cond_broadcast(&g->cond);
	/*
	 * Paused or closed: the writes already past the gate land first, so the
	 * final dirty lists see them (the device marks a block before it
	 * writes it). Until the thirteenth session only the flushes that came
	 * next gave them the time: without those, 3 of some 40 cut migrations
	 * in tests/migrate-kill.sh and migrate-stall.sh missed a write.
	 */
	while (state != XFER_GATE_OPEN && g->writing)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
}

void xfer_storedev_free(struct xfer_storedev *s)
{
	if (!s)
		return;
	if (s->sd)
		store_device_free(s->sd);
	if (s->tmp)
		(void)unlink(s->tmp);
	if (s->created_overlay)
		(void)unlink(s->created_overlay);
	if (s->created_state)
		(void)unlink(s->created_state);
	free(s->tmp);
	free(s->final);
	free(s->created_overlay);
	free(s->created_state);
	free(s->name);
	free(s);
}
