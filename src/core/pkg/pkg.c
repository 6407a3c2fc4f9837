/*
 * Package archives: devices in and out of a zstd-compressed POSIX tar.
 *
 * libarchive does the tar format (pax_restricted writer: ustar headers,
 * PAX records only when needed, GNU sparse 1.0 for sparse entries; tar-only
 * reader), libzstd does the compression directly, so that compression runs
 * on a worker pool of our size, decompression is bounded (window limit) and
 * the reader can put explicit limits on what a hostile package makes us read
 * into memory. Outputs go through unnamed temporary files (O_TMPFILE) that
 * are linked into place only when everything succeeded.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "core/io.h"
#include "core/pkg/pkg.h"
#include "core/progress.h"
#include "core/util.h"

#define IO_CHUNK (1u << 20)  /* read/write unit for device data */
#define ZERO_BLOCK 4096u     /* granularity of zero detection */

/* Not const: zero-filled .bss costs no file space, .rodata would. Never written. */
static uint8_t zero_block[ZERO_BLOCK];
/* Holes are fed to the pax writer from here; it counts them and writes nothing. */
static uint8_t zero_chunk[IO_CHUNK];

DEFINE_TRIVIAL_CLEANUP_FUNC(ZSTD_CCtx *, ZSTD_freeCCtx)
DEFINE_TRIVIAL_CLEANUP_FUNC(ZSTD_DCtx *, ZSTD_freeDCtx)
DEFINE_TRIVIAL_CLEANUP_FUNC(struct archive_entry *, archive_entry_free)

static void archive_write_freep(struct archive **a)
{
	if (*a)
		archive_write_free(*a);
}

static void archive_read_freep(struct archive **a)
{
	if (*a)
		archive_read_free(*a);
}

static int pkg_fail(struct pkg_error *err, int r, const char *fmt, ...) _printf_(3, 4);
static int pkg_fail(struct pkg_error *err, int r, const char *fmt, ...)
{
	va_list ap;

	if (err) {
		va_start(ap, fmt);
		vsnprintf(err->msg, sizeof err->msg, fmt, ap);
		va_end(ap);
	}
	return r < 0 ? r : -EIO;
}

static bool is_zero(const uint8_t *p, size_t n)
{
	while (n > ZERO_BLOCK) {
		if (memcmp(p, zero_block, ZERO_BLOCK) != 0)
			return false;
		p += ZERO_BLOCK;
		n -= ZERO_BLOCK;
	}
	return memcmp(p, zero_block, n) == 0;
}

/*
 * The next run of data in BUF (which holds the file from offset OFF), from
 * *POS on, in ZERO_BLOCK-aligned blocks: sets [*START, *POS) to it, or
 * returns false when only zero blocks are left. Both the scan and the
 * sparse writer cut the same way, so what one calls a hole the other leaves.
 */
static bool next_data_run(const uint8_t *buf, size_t len, uint64_t off, size_t *pos, size_t *start)
{
	bool in_run = false;

	while (*pos < len) {
		size_t blk = ZERO_BLOCK - (size_t)((off + *pos) % ZERO_BLOCK);

		if (blk > len - *pos)
			blk = len - *pos;
		if (is_zero(buf + *pos, blk)) {
			if (in_run)
				return true;
		} else if (!in_run) {
			*start = *pos;
			in_run = true;
		}
		*pos += blk;
	}
	return in_run;
}

/* ---- names and device lists ---- */

static bool name_is_plain(const char *name)
{
	return !str_empty(name) && !strchr(name, '/') && !str_eq(name, ".") &&
	       !str_eq(name, "..") && strlen(name) < PKG_MAX_NAME;
}

static int check_devices(const struct pkg_device *devs, size_t n, bool extract,
			 struct pkg_error *err)
{
	if (n == 0)
		return pkg_fail(err, -EINVAL, "no devices given");
	for (size_t i = 0; i < n; i++) {
		if (!name_is_plain(devs[i].name))
			return pkg_fail(err, -EINVAL,
					"invalid device name '%s': expected a non-empty name without '/'",
					devs[i].name ? devs[i].name : "");
		if (str_empty(devs[i].path))
			return pkg_fail(err, -EINVAL, "device '%s' has no path", devs[i].name);
		for (size_t j = 0; j < i; j++) {
			if (str_eq(devs[i].name, devs[j].name))
				return pkg_fail(err, -EINVAL, "device '%s' is listed twice",
						devs[i].name);
			if (extract && str_eq(devs[i].path, devs[j].path))
				return pkg_fail(err, -EINVAL,
						"devices '%s' and '%s' are both extracted to '%s'",
						devs[j].name, devs[i].name, devs[i].path);
		}
	}
	return 0;
}

static int check_options(const struct pkg_options *opt, int *level, int *workers,
			 struct pkg_error *err)
{
	ZSTD_bounds b = ZSTD_cParam_getBounds(ZSTD_c_compressionLevel);
	long cpus;

	*level = opt && opt->level ? opt->level : PKG_DEFAULT_LEVEL;
	if (ZSTD_isError(b.error) || *level < b.lowerBound || *level > b.upperBound)
		return pkg_fail(err, -EINVAL, "invalid compression level %d: expected %d to %d",
				*level, b.lowerBound, b.upperBound);
	if (opt && opt->threads) {
		if (opt->threads > 256)
			return pkg_fail(err, -EINVAL,
					"invalid thread count %u: expected 0 (one per CPU) to 256",
					opt->threads);
		*workers = (int)opt->threads;
	} else {
		cpus = sysconf(_SC_NPROCESSORS_ONLN);
		*workers = cpus > 0 ? (int)(cpus > PKG_MAX_AUTO_WORKERS ? PKG_MAX_AUTO_WORKERS : cpus) : 1;
	}
	return 0;
}

/* ---- output files: unnamed until committed ---- */

struct outfile {
	int fd;
	int dirfd;
	char *dir;
	char *base;
	char *tmpname; /* named temporary (no O_TMPFILE support), else NULL */
};

static void outfile_abort(struct outfile *o)
{
	if (o->fd >= 0)
		close(o->fd);
	if (o->tmpname && o->dirfd >= 0)
		(void)unlinkat(o->dirfd, o->tmpname, 0);
	if (o->dirfd >= 0)
		close(o->dirfd);
	free(o->dir);
	free(o->base);
	free(o->tmpname);
	*o = (struct outfile){ .fd = -1, .dirfd = -1 };
}

static int outfile_open(struct outfile *o, const char *path, mode_t mode)
{
	const char *slash = strrchr(path, '/');
	int r;

	*o = (struct outfile){ .fd = -1, .dirfd = -1 };
	if (slash) {
		o->dir = slash == path ? xstrdup("/") : strndup(path, (size_t)(slash - path));
		o->base = xstrdup(slash + 1);
	} else {
		o->dir = xstrdup(".");
		o->base = xstrdup(path);
	}
	if (!o->dir || str_empty(o->base)) {
		r = o->dir ? -EISDIR : -ENOMEM;
		outfile_abort(o);
		return r;
	}
	r = mkdir_parents(path);
	if (r < 0)
		goto fail;
	o->dirfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (o->dirfd < 0) {
		r = -errno;
		goto fail;
	}
	o->fd = openat(o->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
	if (o->fd >= 0)
		return 0;
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
		r = -errno;
		goto fail;
	}
	/* No O_TMPFILE on this filesystem: a hidden name, removed on failure. */
	for (unsigned i = 0; i < 100; i++) {
		char name[PATH_MAX];

		snprintf(name, sizeof name, ".%s.drafter-%ld-%u", o->base, (long)getpid(), i);
		o->fd = openat(o->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
		if (o->fd >= 0) {
			o->tmpname = xstrdup(name);
			return 0;
		}
		if (errno != EEXIST)
			break;
	}
	r = -errno;
fail:
	outfile_abort(o);
	return r;
}

/* Make the finished file visible under its name, durably. */
static int outfile_commit(struct outfile *o)
{
	char tmp[PATH_MAX];
	int r;

	if (fsync(o->fd) < 0)
		return -errno;
	if (!o->tmpname) {
		snprintf(tmp, sizeof tmp, ".%s.drafter-%ld", o->base, (long)getpid());
		(void)unlinkat(o->dirfd, tmp, 0);
		if (linkat(o->fd, "", o->dirfd, tmp, AT_EMPTY_PATH) < 0) {
			char proc[64];

			/* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc does not. */
			snprintf(proc, sizeof proc, "/proc/self/fd/%d", o->fd);
			if (linkat(AT_FDCWD, proc, o->dirfd, tmp, AT_SYMLINK_FOLLOW) < 0)
				return -errno;
		}
		o->tmpname = xstrdup(tmp);
	}
	if (renameat(o->dirfd, o->tmpname, o->dirfd, o->base) < 0)
		return -errno;
	free(o->tmpname);
	o->tmpname = NULL;
	r = fsync(o->dirfd) < 0 ? -errno : 0;
	outfile_abort(o); /* closes; nothing left to unlink */
	return r;
}

/* ---- scanning a device for data ---- */

struct region_list {
	struct pkg_region *v;
	size_t n, cap, max;
	uint64_t min_hole;
};

/* Merge regions separated by less than min_hole. */
static void regions_merge(struct region_list *l)
{
	size_t w = 0;

	for (size_t i = 0; i < l->n; i++) {
		if (w > 0 && l->v[i].offset - (l->v[w - 1].offset + l->v[w - 1].length) < l->min_hole)
			l->v[w - 1].length = l->v[i].offset + l->v[i].length - l->v[w - 1].offset;
		else
			l->v[w++] = l->v[i];
	}
	l->n = w;
}

/* Add data [off, off+len), merging across gaps shorter than min_hole. */
static void regions_add(struct region_list *l, uint64_t off, uint64_t len)
{
	if (l->n > 0) {
		struct pkg_region *last = &l->v[l->n - 1];
		uint64_t end = last->offset + last->length;

		if (off - end < l->min_hole) {
			last->length = off + len - last->offset;
			return;
		}
	}
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 64;
		l->v = xreallocarray(l->v, l->cap, sizeof *l->v);
	}
	l->v[l->n++] = (struct pkg_region){ off, len };
	/* Keep the map small: coarser holes rather than an unbounded list. */
	while (l->n > l->max) {
		l->min_hole *= 2;
		regions_merge(l);
	}
}

static int scan_regions(int fd, uint64_t size, uint64_t min_hole, size_t max_regions,
			struct pkg_region **out, size_t *n_out, struct progress *prog)
{
	struct region_list l = {
		.min_hole = min_hole ? min_hole : ZERO_BLOCK,
		.max = max_regions ? max_regions : PKG_MAX_SPARSE_REGIONS,
	};
	_cleanup_free_ uint8_t *buf = NULL;
	uint64_t pos = 0, data, hole;
	int r = 0;

	buf = malloc(IO_CHUNK);
	if (!buf)
		return -ENOMEM;
	while ((r = next_data(fd, pos, size, &data, &hole)) > 0) {
		/* Look for zero blocks inside the data extent. */
		for (uint64_t off = data; off < hole;) {
			size_t len = (size_t)(hole - off < IO_CHUNK ? hole - off : IO_CHUNK);
			size_t i = 0, start = 0;

			r = pread_exact(fd, buf, len, off);
			if (r < 0)
				goto out;
			if (prog)
				progress_add(prog, len);
			while (next_data_run(buf, len, off, &i, &start))
				regions_add(&l, off + start, i - start);
			off += len;
		}
		pos = hole;
	}
out:
	if (r < 0) {
		free(l.v);
		return r;
	}
	*out = l.v;
	*n_out = l.n;
	return 0;
}

int pkg_scan_regions(int fd, uint64_t size, uint64_t min_hole, size_t max_regions,
		     struct pkg_region **out, size_t *n_out)
{
	return scan_regions(fd, size, min_hole, max_regions, out, n_out, NULL);
}

/* Bytes SEEK_DATA reports in FD: what the scan will read. */
static uint64_t data_extent_bytes(int fd, uint64_t size)
{
	uint64_t pos = 0, total = 0;

	while (pos < size) {
		off_t data = lseek(fd, (off_t)pos, SEEK_DATA), hole;

		if (data < 0)
			return errno == ENXIO ? total : total + (size - pos);
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > size)
			hole = (off_t)size;
		total += (uint64_t)(hole - data);
		pos = (uint64_t)hole;
	}
	return total;
}

/* ---- create ---- */

struct zsink {
	ZSTD_CCtx *c;
	int fd;
	uint8_t *out;
	size_t out_size;
	uint64_t written;
	int err;          /* -errno of the first failure */
	char why[256];    /* its text, when not an errno */
	bool discard;     /* the package is abandoned: drop what still comes */
};

static int zsink_push(struct zsink *z, const void *buf, size_t len, ZSTD_EndDirective mode)
{
	ZSTD_inBuffer in = { buf, len, 0 };

	for (;;) {
		ZSTD_outBuffer out = { z->out, z->out_size, 0 };
		size_t rem = ZSTD_compressStream2(z->c, &out, &in, mode);
		int r;

		if (ZSTD_isError(rem)) {
			snprintf(z->why, sizeof z->why, "zstd: %s", ZSTD_getErrorName(rem));
			return z->err = -EIO;
		}
		if (out.pos) {
			r = write_all(z->fd, z->out, out.pos);
			if (r < 0)
				return z->err = r;
			z->written += out.pos;
		}
		if (mode == ZSTD_e_end ? rem == 0 : in.pos == in.size)
			return 0;
	}
}

static la_ssize_t zsink_write(struct archive *a, void *data, const void *buf, size_t len)
{
	struct zsink *z = data;

	if (z->discard)
		return (la_ssize_t)len;
	if (zsink_push(z, buf, len, ZSTD_e_continue) < 0) {
		archive_set_error(a, -z->err, "%s", z->why[0] ? z->why : strerror(-z->err));
		return -1;
	}
	return (la_ssize_t)len;
}

struct src_device {
	int fd;
	struct stat st;
	struct pkg_region *regions;
	size_t n_regions;
};

/* The error of a failed libarchive write call: ours if the sink failed. */
static int write_error(struct archive *a, struct zsink *z, const char **why)
{
	if (z->err) {
		*why = z->why[0] ? z->why : strerror(-z->err);
		return z->err;
	}
	*why = archive_error_string(a) ? archive_error_string(a) : "archive error";
	return archive_errno(a) > 0 ? -archive_errno(a) : -EIO;
}

static int feed(struct archive *a, struct zsink *z, const void *buf, size_t len,
		const char **why)
{
	la_ssize_t n = archive_write_data(a, buf, len);

	if (n < 0)
		return write_error(a, z, why);
	if ((size_t)n != len) {
		*why = "short write to the archive";
		return -EIO;
	}
	return 0;
}

static int write_device(struct archive *a, struct zsink *z, const struct pkg_device *dev,
			struct src_device *s, uint8_t *buf, struct progress *prog,
			const char **why)
{
	_cleanup_(archive_entry_freep) struct archive_entry *e = archive_entry_new();
	uint64_t size = (uint64_t)s->st.st_size, pos = 0;
	bool dense = s->n_regions == 1 && s->regions[0].offset == 0 &&
		     s->regions[0].length == size;
	int r;

	if (!e)
		return -ENOMEM;
	archive_entry_set_pathname(e, dev->name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, s->st.st_mode & 0777);
	archive_entry_set_size(e, (la_int64_t)size);
	archive_entry_set_uid(e, s->st.st_uid);
	archive_entry_set_gid(e, s->st.st_gid);
	archive_entry_set_mtime(e, s->st.st_mtim.tv_sec, s->st.st_mtim.tv_nsec);
	if (!dense && size > 0) {
		for (size_t i = 0; i < s->n_regions; i++)
			archive_entry_sparse_add_entry(e, (la_int64_t)s->regions[i].offset,
						       (la_int64_t)s->regions[i].length);
		if (s->n_regions == 0) /* all hole: an empty data block marks it sparse */
			archive_entry_sparse_add_entry(e, (la_int64_t)size, 0);
	}
	if (archive_write_header(a, e) != ARCHIVE_OK)
		return write_error(a, z, why);

	for (size_t i = 0; i <= s->n_regions; i++) {
		uint64_t start = i < s->n_regions ? s->regions[i].offset : size;
		uint64_t end = i < s->n_regions ? start + s->regions[i].length : size;

		/* The hole before this region: counted by the writer, not stored. */
		while (pos < start) {
			size_t len = start - pos < IO_CHUNK ? (size_t)(start - pos) : IO_CHUNK;

			r = feed(a, z, zero_chunk, len, why);
			if (r < 0)
				return r;
			pos += len;
		}
		while (pos < end) {
			size_t len = end - pos < IO_CHUNK ? (size_t)(end - pos) : IO_CHUNK;

			r = pread_exact(s->fd, buf, len, pos);
			if (r < 0) {
				*why = r == -ENODATA ? "the file shrank while it was being packaged"
						     : strerror(-r);
				return r;
			}
			r = feed(a, z, buf, len, why);
			if (r < 0)
				return r;
			pos += len;
			if (prog)
				progress_add(prog, len);
		}
	}
	if (archive_write_finish_entry(a) != ARCHIVE_OK)
		return write_error(a, z, why);
	return 0;
}

int pkg_create(const char *archive, const struct pkg_device *devs, size_t n,
	       const struct pkg_options *opt, struct pkg_stats *stats, struct pkg_error *err)
{
	_cleanup_(ZSTD_freeCCtxp) ZSTD_CCtx *cctx = NULL;
	_cleanup_(archive_write_freep) struct archive *a = NULL;
	_cleanup_free_ struct src_device *src = NULL;
	_cleanup_free_ uint8_t *buf = NULL, *zbuf = NULL;
	struct progress *prog = opt ? opt->progress : NULL;
	struct outfile out = { .fd = -1, .dirfd = -1 };
	struct zsink z = { 0 };
	struct pkg_stats st = { .devices = (unsigned)n };
	const char *why = NULL;
	uint64_t scan_total = 0;
	int level = 0, workers = 0, r;
	size_t i;

	r = check_options(opt, &level, &workers, err);
	if (r < 0)
		return r;
	r = check_devices(devs, n, false, err);
	if (r < 0)
		return r;
	if (str_empty(archive))
		return pkg_fail(err, -EINVAL, "no package path given");

	src = xcalloc(n, sizeof *src);
	for (i = 0; i < n; i++)
		src[i].fd = -1;

	/* Open and map every device first: a missing one must not cost a half-written package. */
	for (i = 0; i < n; i++) {
		src[i].fd = open(devs[i].path, O_RDONLY | O_CLOEXEC);
		if (src[i].fd < 0) {
			r = pkg_fail(err, -errno, "cannot open device '%s' at '%s': %s",
				     devs[i].name, devs[i].path, strerror(errno));
			goto out;
		}
		if (fstat(src[i].fd, &src[i].st) < 0) {
			r = pkg_fail(err, -errno, "cannot stat device '%s' at '%s': %s",
				     devs[i].name, devs[i].path, strerror(errno));
			goto out;
		}
		if (!S_ISREG(src[i].st.st_mode)) {
			r = pkg_fail(err, -EINVAL, "cannot package device '%s': '%s' is not a regular file",
				     devs[i].name, devs[i].path);
			goto out;
		}
		scan_total += data_extent_bytes(src[i].fd, (uint64_t)src[i].st.st_size);
	}
	/* Scanning a big dense image takes a while: show it as its own phase. */
	if (prog)
		progress_restart(prog, "scanning", scan_total);
	for (i = 0; i < n; i++) {
		r = scan_regions(src[i].fd, (uint64_t)src[i].st.st_size, PKG_MIN_HOLE,
				 PKG_MAX_SPARSE_REGIONS, &src[i].regions, &src[i].n_regions, prog);
		if (r < 0) {
			pkg_fail(err, r, "cannot read device '%s' at '%s': %s", devs[i].name,
				 devs[i].path, strerror(-r));
			goto out;
		}
		st.logical += (uint64_t)src[i].st.st_size;
		for (size_t k = 0; k < src[i].n_regions; k++)
			st.data += src[i].regions[k].length;
	}
	if (prog)
		progress_restart(prog, "packaging", st.data);

	cctx = ZSTD_createCCtx();
	buf = malloc(IO_CHUNK);
	z.out_size = ZSTD_CStreamOutSize();
	zbuf = malloc(z.out_size);
	if (!cctx || !buf || !zbuf) {
		r = pkg_fail(err, -ENOMEM, "cannot create package '%s': %s", archive, strerror(ENOMEM));
		goto out;
	}
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
	/*
	 * zstd's default job size at level 3 is 8 MiB, and every worker holds
	 * several jobs' worth of buffers: 240 MiB of RSS with 8 workers. 2 MiB
	 * jobs compress as fast and as well (measured: docs/package.md).
	 */
	ZSTD_CCtx_setParameter(cctx, ZSTD_c_jobSize, PKG_ZSTD_JOB_SIZE);
	/* A libzstd built without threads refuses workers: compress in this thread then. */
	if (ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_nbWorkers, workers)))
		ZSTD_CCtx_setParameter(cctx, ZSTD_c_nbWorkers, 0);

	r = outfile_open(&out, archive, 0644);
	if (r < 0) {
		pkg_fail(err, r, "cannot create package '%s': %s", archive, strerror(-r));
		goto out;
	}
	z.c = cctx;
	z.fd = out.fd;
	z.out = zbuf;

	a = archive_write_new();
	if (!a || archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
	    archive_write_add_filter_none(a) != ARCHIVE_OK ||
	    /* No record blocking: every write goes straight to the compressor. */
	    archive_write_set_bytes_per_block(a, 0) != ARCHIVE_OK ||
	    archive_write_open(a, &z, NULL, zsink_write, NULL) != ARCHIVE_OK) {
		r = pkg_fail(err, -ENOMEM, "cannot create package '%s': %s", archive,
			     a && archive_error_string(a) ? archive_error_string(a) : "libarchive setup failed");
		goto out;
	}
	for (i = 0; i < n; i++) {
		r = write_device(a, &z, &devs[i], &src[i], buf, prog, &why);
		if (r < 0) {
			pkg_fail(err, r, "cannot write device '%s' to package '%s': %s", devs[i].name,
				 archive, why ? why : strerror(-r));
			goto out;
		}
	}
	if (archive_write_close(a) != ARCHIVE_OK) {
		r = write_error(a, &z, &why);
		pkg_fail(err, r, "cannot write package '%s': %s", archive, why);
		goto out;
	}
	r = zsink_push(&z, NULL, 0, ZSTD_e_end);
	if (r < 0) {
		pkg_fail(err, r, "cannot write package '%s': %s", archive,
			 z.why[0] ? z.why : strerror(-r));
		goto out;
	}
	st.archive = z.written;
	r = outfile_commit(&out);
	if (r < 0) {
		pkg_fail(err, r, "cannot write package '%s': %s", archive, strerror(-r));
		goto out;
	}
	if (stats)
		*stats = st;
out:
	/*
	 * Freeing an archive that is still open closes it, which writes its end
	 * blocks: after a failure they must go nowhere, and before the buffers
	 * and the file they would go to are released.
	 */
	z.discard = true;
	if (a)
		archive_write_free(TAKE_PTR(a));
	if (prog)
		progress_end(prog);
	outfile_abort(&out);
	for (i = 0; i < n; i++) {
		if (src[i].fd >= 0)
			close(src[i].fd);
		free(src[i].regions);
	}
	return r;
}

/* ---- extract ---- */

enum phase { PHASE_HEADER, PHASE_MAP, PHASE_DATA };

/* Decompressing source for libarchive, with per-phase read limits. */
struct zsource {
	int fd;
	ZSTD_DCtx *d;
	uint8_t *in, *out;
	size_t in_size, in_len, in_pos, out_size;
	bool in_eof;
	bool mid_frame;         /* a frame was started and not finished */
	uint64_t consumed;      /* compressed bytes read */
	uint64_t produced;      /* tar bytes handed out */
	uint8_t tail[1024];     /* the last bytes produced (zeros before the first) */
	enum phase phase;
	uint64_t phase_bytes;
	int err;
	char why[256];
	struct progress *prog;
};

static la_ssize_t zsource_fail(struct archive *a, struct zsource *s, int r, const char *fmt, ...)
	_printf_(4, 5);
static la_ssize_t zsource_fail(struct archive *a, struct zsource *s, int r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->why, sizeof s->why, fmt, ap);
	va_end(ap);
	s->err = r;
	if (a)
		archive_set_error(a, -r, "%s", s->why);
	return -1;
}

/* Next piece of tar stream: >0 bytes, 0 at the end, -1 on error (s->err set). */
static la_ssize_t zsource_next(struct archive *a, struct zsource *s, const void **buf)
{
	ZSTD_outBuffer out = { s->out, s->out_size, 0 };

	while (out.pos == 0) {
		ZSTD_inBuffer in;
		size_t ret;

		if (s->in_pos == s->in_len) {
			ssize_t n;

			if (s->in_eof)
				break;
			n = read(s->fd, s->in, s->in_size);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				return zsource_fail(a, s, -errno, "%s", strerror(errno));
			}
			if (n == 0) {
				s->in_eof = true;
				break;
			}
			s->in_len = (size_t)n;
			s->in_pos = 0;
			s->consumed += (uint64_t)n;
			if (s->prog)
				progress_set(s->prog, s->consumed);
		}
		in = (ZSTD_inBuffer){ s->in, s->in_len, s->in_pos };
		ret = ZSTD_decompressStream(s->d, &out, &in);
		s->in_pos = in.pos;
		if (ZSTD_isError(ret)) {
			int r = ZSTD_getErrorCode(ret) == ZSTD_error_memory_allocation ? -ENOMEM
											 : -EBADMSG;
			return zsource_fail(a, s, r, "corrupt package (zstd: %s)",
					    ZSTD_getErrorName(ret));
		}
		s->mid_frame = ret != 0;
	}
	if (out.pos == 0) {
		if (s->mid_frame)
			return zsource_fail(a, s, -EBADMSG,
					    "truncated package (the zstd stream ends early)");
		return 0;
	}
	s->produced += out.pos;
	/* Keep the last bytes of the tar stream: its end marker is checked at the end. */
	if (out.pos >= sizeof s->tail) {
		memcpy(s->tail, s->out + out.pos - sizeof s->tail, sizeof s->tail);
	} else {
		memmove(s->tail, s->tail + out.pos, sizeof s->tail - out.pos);
		memcpy(s->tail + sizeof s->tail - out.pos, s->out, out.pos);
	}
	*buf = s->out;
	return (la_ssize_t)out.pos;
}

static la_ssize_t zsource_read(struct archive *a, void *data, const void **buf)
{
	struct zsource *s = data;
	la_ssize_t n = zsource_next(a, s, buf);
	uint64_t limit;

	if (n <= 0 || s->phase == PHASE_DATA)
		return n;
	s->phase_bytes += (uint64_t)n;
	limit = s->phase == PHASE_HEADER ? PKG_MAX_METADATA : PKG_MAX_SPARSE_MAP;
	/* A bounded read-ahead beyond the limit is fine; an unbounded one is not. */
	if (s->phase_bytes > limit + s->out_size)
		return zsource_fail(a, s, -E2BIG,
				    "the %s of an entry exceed%s the limit of %" PRIu64 " MiB",
				    s->phase == PHASE_HEADER ? "headers" : "sparse map",
				    s->phase == PHASE_HEADER ? "" : "s",
				    limit >> 20);
	return n;
}

static void zsource_phase(struct zsource *s, enum phase p)
{
	s->phase = p;
	s->phase_bytes = 0;
}

struct dst_device {
	struct outfile out;
	bool found;
	uint64_t size;
};

static const char *entry_kind(struct archive_entry *e)
{
	if (archive_entry_hardlink(e))
		return "a hard link";
	switch (archive_entry_filetype(e)) {
	case AE_IFREG:
		return NULL;
	case AE_IFLNK:
		return "a symbolic link";
	case AE_IFDIR:
		return "a directory";
	case AE_IFCHR:
	case AE_IFBLK:
		return "a device node";
	case AE_IFIFO:
		return "a FIFO";
	case AE_IFSOCK:
		return "a socket";
	default:
		return "not a regular file";
	}
}

/* Why NAME cannot be a package entry, or NULL. Strips a leading "./". */
static const char *entry_name_problem(const char *name, const char **plain)
{
	const char *p;

	if (!name || !*name)
		return "has an empty name";
	if (strlen(name) >= PKG_MAX_NAME)
		return "has a name that is too long";
	if (name[0] == '/')
		return "has an absolute name";
	for (p = name; *p;) {
		size_t len = strcspn(p, "/");

		if (len == 2 && p[0] == '.' && p[1] == '.')
			return "has a '..' component";
		p += len;
		while (*p == '/')
			p++;
	}
	while (name[0] == '.' && name[1] == '/') {
		name += 2;
		while (*name == '/')
			name++;
	}
	if (!*name)
		return "has an empty name";
	*plain = name;
	return NULL;
}

/* Write a data block, leaving zero blocks as holes (the file starts empty). */
static int write_sparse(int fd, const uint8_t *buf, size_t len, uint64_t off)
{
	size_t i = 0, start = 0;

	while (next_data_run(buf, len, off, &i, &start)) {
		int r = pwrite_all(fd, buf + start, i - start, off + start);

		if (r < 0)
			return r;
	}
	return 0;
}

static int read_error(struct archive *a, struct zsource *s, const char **why)
{
	if (s->err) {
		*why = s->why;
		return s->err;
	}
	*why = archive_error_string(a) ? archive_error_string(a) : "unreadable tar data";
	/* libarchive's format errors are not errnos worth showing. */
	return -EBADMSG;
}

static int extract_entry(struct archive *a, struct zsource *s, struct archive_entry *e,
			 const struct pkg_device *dev, struct dst_device *d, struct pkg_stats *st,
			 const char **why)
{
	la_int64_t size = archive_entry_size(e);
	uint64_t next = 0;
	mode_t mode = archive_entry_perm(e) & 0777;
	int r;

	if (size < 0) {
		*why = "the entry has no size";
		return -EBADMSG;
	}
	r = outfile_open(&d->out, dev->path, mode ? mode : 0644);
	if (r < 0) {
		*why = strerror(-r);
		return r;
	}
	zsource_phase(s, PHASE_MAP);
	for (;;) {
		const void *buf;
		size_t len;
		la_int64_t off;

		r = archive_read_data_block(a, &buf, &len, &off);
		if (r == ARCHIVE_EOF)
			break;
		if (r != ARCHIVE_OK)
			return read_error(a, s, why);
		zsource_phase(s, PHASE_DATA);
		if (off < 0 || (uint64_t)off < next || (uint64_t)off > (uint64_t)size ||
		    len > (uint64_t)size - (uint64_t)off) {
			*why = "corrupt package (data outside the entry or out of order)";
			return -EBADMSG;
		}
		r = write_sparse(d->out.fd, buf, len, (uint64_t)off);
		if (r < 0) {
			*why = strerror(-r);
			return r;
		}
		next = (uint64_t)off + len;
		st->data += len;
	}
	/* Trailing holes, and the length of an all-hole entry. */
	if (ftruncate(d->out.fd, (off_t)size) < 0) {
		*why = strerror(errno);
		return -errno;
	}
	d->found = true;
	d->size = (uint64_t)size;
	st->logical += (uint64_t)size;
	return 0;
}

struct seen_names {
	char **v;
	size_t n;
};

static void seen_free(struct seen_names *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
}

int pkg_extract(const char *archive, const struct pkg_device *devs, size_t n,
		const struct pkg_options *opt, struct pkg_stats *stats, struct pkg_error *err)
{
	static const uint8_t zstd_magic[4] = { 0x28, 0xb5, 0x2f, 0xfd };
	_cleanup_(ZSTD_freeDCtxp) ZSTD_DCtx *dctx = NULL;
	_cleanup_(archive_read_freep) struct archive *a = NULL;
	_cleanup_free_ struct dst_device *dst = NULL;
	_cleanup_free_ uint8_t *inbuf = NULL, *outbuf = NULL;
	_cleanup_close_ int fd = -1;
	_cleanup_(seen_free) struct seen_names seen = { 0 };
	struct progress *prog = opt ? opt->progress : NULL;
	struct zsource s = { 0 };
	struct pkg_stats st = { .devices = (unsigned)n };
	uint8_t magic[4];
	struct stat ast;
	const char *why = NULL;
	ssize_t got;
	size_t i;
	int r;

	r = check_devices(devs, n, true, err);
	if (r < 0)
		return r;
	if (str_empty(archive))
		return pkg_fail(err, -EINVAL, "no package path given");
	dst = xcalloc(n, sizeof *dst);
	for (i = 0; i < n; i++)
		dst[i].out = (struct outfile){ .fd = -1, .dirfd = -1 };

	fd = open(archive, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return pkg_fail(err, -errno, "cannot open package '%s': %s", archive, strerror(errno));
	if (fstat(fd, &ast) < 0)
		return pkg_fail(err, -errno, "cannot open package '%s': %s", archive, strerror(errno));
	if (!S_ISREG(ast.st_mode) && !S_ISFIFO(ast.st_mode))
		return pkg_fail(err, -EINVAL, "cannot open package '%s': not a regular file", archive);
	got = read(fd, magic, sizeof magic);
	if (got < 0)
		return pkg_fail(err, -errno, "cannot read package '%s': %s", archive, strerror(errno));
	/* A zstd frame, or a skippable frame (magic 0x184D2A50-5F, little endian). */
	if (got != (ssize_t)sizeof magic ||
	    (memcmp(magic, zstd_magic, sizeof magic) != 0 &&
	     !((magic[0] & 0xf0) == 0x50 && magic[1] == 0x2a && magic[2] == 0x4d && magic[3] == 0x18)))
		return pkg_fail(err, -EBADMSG, "cannot read package '%s': not a zstd-compressed tar",
				archive);

	dctx = ZSTD_createDCtx();
	s.in_size = ZSTD_DStreamInSize() * 8;
	s.out_size = IO_CHUNK;
	inbuf = malloc(s.in_size);
	outbuf = malloc(s.out_size);
	if (!dctx || !inbuf || !outbuf)
		return pkg_fail(err, -ENOMEM, "cannot read package '%s': %s", archive, strerror(ENOMEM));
	ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, PKG_ZSTD_WINDOW_LOG_MAX);
	s.fd = fd;
	s.d = dctx;
	s.in = inbuf;
	s.out = outbuf;
	s.prog = prog;
	/* The magic was read already: hand it to the decoder first. */
	memcpy(s.in, magic, sizeof magic);
	s.in_len = sizeof magic;
	s.consumed = sizeof magic;
	if (prog)
		progress_set_total(prog, S_ISREG(ast.st_mode) ? (uint64_t)ast.st_size : 0);

	a = archive_read_new();
	if (!a || archive_read_support_format_tar(a) != ARCHIVE_OK ||
	    archive_read_open(a, &s, NULL, zsource_read, NULL) != ARCHIVE_OK) {
		if (s.err)
			r = pkg_fail(err, s.err, "cannot read package '%s': %s", archive, s.why);
		else
			r = pkg_fail(err, -EBADMSG, "cannot read package '%s': %s", archive,
				     a && archive_error_string(a) ? archive_error_string(a)
								  : "libarchive setup failed");
		goto out;
	}

	for (;;) {
		struct archive_entry *e;
		const char *name = NULL, *problem, *kind;
		struct dst_device *d = NULL;
		const struct pkg_device *dev = NULL;

		zsource_phase(&s, PHASE_HEADER);
		r = archive_read_next_header(a, &e);
		if (r == ARCHIVE_EOF)
			break;
		if (r != ARCHIVE_OK) {
			r = read_error(a, &s, &why);
			pkg_fail(err, r, "cannot read package '%s': %s", archive, why);
			goto out;
		}
		if (seen.n >= PKG_MAX_ENTRIES) {
			r = pkg_fail(err, -E2BIG, "refusing package '%s': more than %d entries", archive,
				     PKG_MAX_ENTRIES);
			goto out;
		}
		problem = entry_name_problem(archive_entry_pathname(e), &name);
		if (problem) {
			r = pkg_fail(err, -EPERM, "refusing package '%s': entry '%.256s' %s", archive,
				     archive_entry_pathname(e) ? archive_entry_pathname(e) : "", problem);
			goto out;
		}
		kind = entry_kind(e);
		if (kind) {
			r = pkg_fail(err, -EPERM, "refusing package '%s': entry '%.256s' is %s", archive,
				     name, kind);
			goto out;
		}
		for (i = 0; i < seen.n; i++)
			if (str_eq(seen.v[i], name)) {
				r = pkg_fail(err, -EPERM,
					     "refusing package '%s': entry '%.256s' appears twice", archive,
					     name);
				goto out;
			}
		seen.v = xreallocarray(seen.v, seen.n + 1, sizeof *seen.v);
		seen.v[seen.n++] = xstrdup(name);

		for (i = 0; i < n; i++)
			if (str_eq(devs[i].name, name)) {
				dev = &devs[i];
				d = &dst[i];
				break;
			}
		if (!dev) {
			zsource_phase(&s, PHASE_DATA);
			if (archive_read_data_skip(a) != ARCHIVE_OK) {
				r = read_error(a, &s, &why);
				pkg_fail(err, r, "cannot read package '%s': %s", archive, why);
				goto out;
			}
			continue;
		}
		r = extract_entry(a, &s, e, dev, d, &st, &why);
		if (r < 0) {
			pkg_fail(err, r, "cannot extract device '%s' from package '%s' to '%s': %s",
				 dev->name, archive, dev->path, why);
			goto out;
		}
	}

	/* Read to the end: the zstd frame must be complete and its checksum right. */
	zsource_phase(&s, PHASE_DATA);
	for (;;) {
		const void *b;
		la_ssize_t k = zsource_next(NULL, &s, &b);

		if (k == 0)
			break;
		if (k < 0) {
			r = pkg_fail(err, s.err, "cannot read package '%s': %s", archive, s.why);
			goto out;
		}
	}
	/* Two zero blocks end a tar; an archive cut at an entry boundary lacks them. */
	if (s.produced < sizeof s.tail || !is_zero(s.tail, sizeof s.tail)) {
		r = pkg_fail(err, -EBADMSG,
			     "cannot read package '%s': truncated package (no end-of-archive marker)",
			     archive);
		goto out;
	}
	for (i = 0; i < n; i++)
		if (!dst[i].found) {
			r = pkg_fail(err, -ENOENT, "device '%s' is not in package '%s'", devs[i].name,
				     archive);
			goto out;
		}
	for (i = 0; i < n; i++) {
		r = outfile_commit(&dst[i].out);
		if (r < 0) {
			pkg_fail(err, r, "cannot write device '%s' to '%s': %s", devs[i].name,
				 devs[i].path, strerror(-r));
			goto out;
		}
	}
	st.archive = s.consumed;
	if (stats)
		*stats = st;
	r = 0;
out:
	if (prog)
		progress_end(prog);
	for (i = 0; i < n; i++)
		outfile_abort(&dst[i].out);
	return r;
}
