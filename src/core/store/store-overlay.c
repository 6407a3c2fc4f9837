/*
 * Copy-on-write overlay: reads come from the overlay file for blocks it
 * holds and from the read-only base otherwise; the first write to a block
 * copies it up (whole block). The overlay file is sparse and has the base's
 * size, so it stores only written blocks; the state file records which
 * blocks those are (format in docs/storage.md).
 */
#include "config.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/io.h"
#include "core/store/store-internal.h"

#define STATE_MAGIC   "DRFTCOW1"
#define STATE_VERSION 1u
#define STATE_HEADER  48u

struct overlay {
	struct store_provider prov;
	struct store_provider *base;
	struct store_provider *top; /* the overlay file */
	char *state_path;
	uint32_t block_size;
	unsigned shift;
	uint64_t size;
	uint64_t nblocks;
	uint64_t *present; /* atomic words */
	bool changed;      /* state differs from the file; under save_lock */
	pthread_mutex_t save_lock;
	pthread_mutex_t cow[STORE_STRIPES];
};

static struct overlay *to_overlay(struct store_provider *p)
{
	return (struct overlay *)p;
}

static bool is_present(struct overlay *o, uint64_t b)
{
	return (__atomic_load_n(&o->present[b / 64], __ATOMIC_ACQUIRE) >> (b % 64)) & 1;
}

static void set_present(struct overlay *o, uint64_t b)
{
	__atomic_fetch_or(&o->present[b / 64], 1ull << (b % 64), __ATOMIC_RELEASE);
	pthread_mutex_lock(&o->save_lock);
	o->changed = true;
	pthread_mutex_unlock(&o->save_lock);
}

static ssize_t overlay_read_at(struct store_provider *p, void *buf, size_t len, uint64_t off)
{
	struct overlay *o = to_overlay(p);
	size_t done = 0;

	len = store_clip(o->size, len, off);
	/* runs of blocks with the same source go in one read */
	while (done < len) {
		uint64_t pos = off + done, b = pos >> o->shift;
		bool here = is_present(o, b);
		uint64_t end = (b + 1) << o->shift;
		while (end < off + len && is_present(o, end >> o->shift) == here)
			end += o->block_size;
		if (end > off + len)
			end = off + len;
		ssize_t n = store_read_at(here ? o->top : o->base, (char *)buf + done,
		                          (size_t)(end - pos), pos);
		if (n < 0)
			return n;
		if ((uint64_t)n != end - pos)
			return -EIO;
		done += (size_t)n;
	}
	return (ssize_t)len;
}

/* First write to block B: base block, the new bytes over it, into the overlay. */
static int copy_up(struct overlay *o, uint64_t b, const void *data, size_t len, uint64_t off)
{
	uint64_t start = b << o->shift;
	size_t blen = (size_t)(start + o->block_size > o->size ? o->size - start : o->block_size);
	_cleanup_free_ char *tmp = NULL;
	ssize_t n;

	if (off == start && len == blen) {
		n = store_write_at(o->top, data, len, off);
	} else {
		tmp = malloc(blen);
		if (!tmp)
			return -ENOMEM;
		n = store_read_at(o->base, tmp, blen, start);
		if (n < 0)
			return (int)n;
		if ((size_t)n != blen)
			return -EIO;
		memcpy(tmp + (off - start), data, len);
		n = store_write_at(o->top, tmp, blen, start);
		len = blen;
	}
	if (n < 0)
		return (int)n;
	if ((size_t)n != len)
		return -EIO;
	set_present(o, b);
	return 0;
}

static ssize_t overlay_write_at(struct store_provider *p, const void *buf, size_t len, uint64_t off)
{
	struct overlay *o = to_overlay(p);
	size_t done = 0;

	len = store_clip(o->size, len, off);
	while (done < len) {
		uint64_t pos = off + done, b = pos >> o->shift;
		uint64_t end = (b + 1) << o->shift;
		if (end > off + len)
			end = off + len;
		size_t n = (size_t)(end - pos);
		const char *data = (const char *)buf + done;

		if (is_present(o, b)) {
			ssize_t w = store_write_at(o->top, data, n, pos);
			if (w < 0)
				return w;
			if ((size_t)w != n)
				return -EIO;
		} else {
			pthread_mutex_t *m = &o->cow[b % STORE_STRIPES];
			int r;
			pthread_mutex_lock(m);
			if (is_present(o, b)) {
				ssize_t w = store_write_at(o->top, data, n, pos);
				r = w < 0 ? (int)w : (size_t)w != n ? -EIO : 0;
			} else {
				r = copy_up(o, b, data, n, pos);
			}
			pthread_mutex_unlock(m);
			if (r < 0)
				return r;
		}
		done += n;
	}
	return (ssize_t)len;
}

static uint64_t overlay_size(struct store_provider *p)
{
	return to_overlay(p)->size;
}

static int save_state(struct overlay *o)
{
	uint64_t nwords = (o->nblocks + 63) / 64, count = 0;
	size_t len = STATE_HEADER + nwords * 8;
	_cleanup_free_ unsigned char *buf = calloc(1, len);
	_cleanup_free_ char *tmp = NULL;
	_cleanup_close_ int fd = -EBADF;
	uint32_t u32;
	uint64_t u64;
	int r;

	if (!buf)
		return -ENOMEM;
	for (uint64_t i = 0; i < nwords; i++) {
		uint64_t w = __atomic_load_n(&o->present[i], __ATOMIC_ACQUIRE);
		count += (uint64_t)__builtin_popcountll(w);
		u64 = htole64(w);
		memcpy(buf + STATE_HEADER + i * 8, &u64, 8);
	}
	memcpy(buf, STATE_MAGIC, 8);
	u32 = htole32(STATE_VERSION);
	memcpy(buf + 8, &u32, 4);
	u32 = htole32(o->block_size);
	memcpy(buf + 12, &u32, 4);
	u64 = htole64(o->size);
	memcpy(buf + 16, &u64, 8);
	u64 = htole64(o->nblocks);
	memcpy(buf + 24, &u64, 8);
	u64 = htole64(count);
	memcpy(buf + 32, &u64, 8);
	uint64_t sum = store_fnv1a(STORE_FNV_INIT, buf, 40);
	sum = store_fnv1a(sum, buf + STATE_HEADER, len - STATE_HEADER);
	u64 = htole64(sum);
	memcpy(buf + 40, &u64, 8);

	if (asprintf(&tmp, "%s.tmp", o->state_path) < 0) {
		tmp = NULL;
		return -ENOMEM;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	r = write_all(fd, buf, len);
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	if (r == 0 && rename(tmp, o->state_path) < 0)
		r = -errno;
	if (r < 0)
		(void)unlink(tmp);
	return r;
}

static int load_state(struct overlay *o)
{
	uint64_t nwords = (o->nblocks + 63) / 64;
	size_t want = STATE_HEADER + nwords * 8;
	_cleanup_close_ int fd = open(o->state_path, O_RDONLY | O_CLOEXEC);
	_cleanup_free_ unsigned char *buf = NULL;
	struct stat st;
	uint32_t u32;
	uint64_t u64, sum, count = 0;

	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	/* the size is known before anything is read: a wrong one is damage */
	if ((uint64_t)st.st_size != want)
		return -EBADMSG;
	buf = malloc(want);
	if (!buf)
		return -ENOMEM;
	ssize_t got = read_full(fd, buf, want);
	if (got < 0)
		return (int)got;
	if ((size_t)got != want)
		return -EBADMSG;
	if (memcmp(buf, STATE_MAGIC, 8) != 0)
		return -EBADMSG;
	memcpy(&u32, buf + 8, 4);
	if (le32toh(u32) != STATE_VERSION)
		return -EBADMSG;
	memcpy(&u64, buf + 40, 8);
	sum = store_fnv1a(STORE_FNV_INIT, buf, 40);
	sum = store_fnv1a(sum, buf + STATE_HEADER, want - STATE_HEADER);
	if (le64toh(u64) != sum)
		return -EBADMSG;
	memcpy(&u32, buf + 12, 4);
	if (le32toh(u32) != o->block_size)
		return -EBADMSG;
	memcpy(&u64, buf + 16, 8);
	if (le64toh(u64) != o->size)
		return -EBADMSG;
	memcpy(&u64, buf + 24, 8);
	if (le64toh(u64) != o->nblocks)
		return -EBADMSG;
	for (uint64_t i = 0; i < nwords; i++) {
		memcpy(&u64, buf + STATE_HEADER + i * 8, 8);
		o->present[i] = le64toh(u64);
		count += (uint64_t)__builtin_popcountll(o->present[i]);
	}
	if (o->nblocks % 64 && (o->present[nwords - 1] >> (o->nblocks % 64)))
		return -EBADMSG;
	memcpy(&u64, buf + 32, 8);
	if (le64toh(u64) != count)
		return -EBADMSG;
	return 0;
}

static int overlay_flush(struct store_provider *p)
{
	struct overlay *o = to_overlay(p);
	int r = store_flush(o->top);

	if (r < 0)
		return r;
	pthread_mutex_lock(&o->save_lock);
	if (o->changed) {
		r = save_state(o);
		if (r == 0)
			o->changed = false;
	}
	pthread_mutex_unlock(&o->save_lock);
	return r;
}

static void overlay_free(struct overlay *o, bool close_base)
{
	if (close_base)
		store_close(o->base);
	store_close(o->top);
	pthread_mutex_destroy(&o->save_lock);
	for (size_t i = 0; i < STORE_STRIPES; i++)
		pthread_mutex_destroy(&o->cow[i]);
	free(o->present);
	free(o->state_path);
	free(o);
}

static void overlay_close(struct store_provider *p)
{
	struct overlay *o = to_overlay(p);

	/* close cannot report: a failed save leaves the previous state file */
	(void)overlay_flush(p);
	overlay_free(o, true);
}

static int overlay_is_zero(struct store_provider *p, uint64_t off, uint64_t len)
{
	struct overlay *o = to_overlay(p);

	if (off >= o->size || !len)
		return 1;
	if (len > o->size - off)
		len = o->size - off;
	for (uint64_t b = off >> o->shift; b <= (off + len - 1) >> o->shift; b++) {
		uint64_t s = b << o->shift, e = s + o->block_size;
		if (s < off)
			s = off;
		if (e > off + len)
			e = off + len;
		int r = store_is_zero(is_present(o, b) ? o->top : o->base, s, e - s);
		if (r <= 0)
			return r;
	}
	return 1;
}

static const struct store_ops overlay_ops = {
	.name = "overlay",
	.read_at = overlay_read_at,
	.write_at = overlay_write_at,
	.size = overlay_size,
	.flush = overlay_flush,
	.close = overlay_close,
	.is_zero = overlay_is_zero,
};

static bool valid_block_size(uint32_t bs)
{
	return bs >= STORE_MIN_BLOCK_SIZE && bs <= STORE_MAX_BLOCK_SIZE && !(bs & (bs - 1));
}

int store_overlay_open(struct store_provider *base, const char *overlay_path,
                       const char *state_path, uint32_t block_size, struct store_provider **out)
{
	struct overlay *o;
	int r;

	if (!valid_block_size(block_size) || !overlay_path || !state_path)
		return -EINVAL;
	o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->prov.ops = &overlay_ops;
	o->base = base;
	o->block_size = block_size;
	o->shift = (unsigned)__builtin_ctz(block_size);
	o->size = store_size(base);
	o->nblocks = (o->size + block_size - 1) >> o->shift;
	pthread_mutex_init(&o->save_lock, NULL);
	for (size_t i = 0; i < STORE_STRIPES; i++)
		pthread_mutex_init(&o->cow[i], NULL);
	o->state_path = strdup(state_path);
	o->present = calloc((o->nblocks + 63) / 64 + 1, sizeof(uint64_t));
	if (!o->state_path || !o->present) {
		r = -ENOMEM;
		goto fail;
	}
	r = load_state(o);
	if (r < 0)
		goto fail;
	r = store_file_open(overlay_path, STORE_FILE_CREATE, o->size, &o->top);
	if (r < 0)
		goto fail;
	*out = &o->prov;
	return 0;
fail:
	overlay_free(o, false);
	return r;
}

int store_overlay_present(struct store_provider *p, struct store_bitmap *out)
{
	if (!p || p->ops != &overlay_ops)
		return -EINVAL;
	struct overlay *o = to_overlay(p);
	int r = store_bitmap_init(out, o->nblocks);
	if (r < 0)
		return r;
	for (uint64_t i = 0; i < (o->nblocks + 63) / 64; i++)
		out->words[i] = __atomic_load_n(&o->present[i], __ATOMIC_ACQUIRE);
	return 0;
}

int store_overlay_save(struct store_provider *p)
{
	if (!p || p->ops != &overlay_ops)
		return -EINVAL;
	return overlay_flush(p);
}

int store_stack_open(const struct store_stack_opts *o, struct store_provider **out)
{
	_cleanup_store_ struct store_provider *base = NULL;
	int r;

	/* empty strings count as unset, as in the configuration */
	const char *ov = o->overlay && *o->overlay ? o->overlay : NULL;
	const char *st = o->state && *o->state ? o->state : NULL;

	if (!o->base || !*o->base)
		return -EINVAL;
	if (!ov != !st)
		return -EINVAL; /* an overlay without its state file (or the reverse) loses data */
	if (ov) {
		r = store_file_open(o->base, STORE_FILE_RDONLY, o->size, &base);
		if (r < 0)
			return r;
		r = store_overlay_open(
		    base, ov, st, o->block_size ? o->block_size : STORE_DEFAULT_BLOCK_SIZE, out);
		if (r < 0)
			return r;
		TAKE_PTR(base);
		return 0;
	}
	if (o->read_only)
		return store_file_open(o->base, STORE_FILE_RDONLY, o->size, out);
	return store_file_open(o->base, o->size ? STORE_FILE_CREATE : STORE_FILE_RDWR, o->size,
	                       out);
}
