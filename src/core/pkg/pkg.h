/*
 * Packages: a VM's devices in one zstd-compressed POSIX tar, one regular
 * file entry per device named after the device, as the original drafter
 * writes them (so either implementation, and GNU tar, reads the other's).
 * Sparse devices stay sparse both ways; see docs/package.md.
 */
#ifndef DRAFTER_PKG_H
#define DRAFTER_PKG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct progress;

struct pkg_device {
	const char *name; /* entry name in the package */
	const char *path; /* file on disk */
};

struct pkg_options {
	int level;                  /* zstd level; 0 = PKG_DEFAULT_LEVEL */
	unsigned threads;           /* zstd workers; 0 = one per online CPU, at most 16 */
	struct progress *progress;  /* NULL: no progress display */
};

struct pkg_stats {
	uint64_t logical;  /* bytes of device content (holes included) */
	uint64_t data;     /* bytes stored as data (holes and zero runs left out) */
	uint64_t archive;  /* bytes of the package file */
	unsigned devices;
};

/* What went wrong, as the one line the user sees (without "drafter: "). */
struct pkg_error {
	char msg[1024];
};

#define PKG_DEFAULT_LEVEL 3
/* zstd job size, and the worker count "one per CPU" stops at (memory). */
#define PKG_ZSTD_JOB_SIZE (2u << 20)
#define PKG_MAX_AUTO_WORKERS 16
/* Limits on what a package can make the reader allocate or do. */
#define PKG_MAX_ENTRIES 4096            /* entries in one package */
#define PKG_MAX_NAME 4096               /* bytes of an entry name */
#define PKG_MAX_METADATA (4u << 20)     /* tar bytes read for one entry's headers */
#define PKG_MAX_SPARSE_MAP (4u << 20)   /* tar bytes of one entry's sparse map */
#define PKG_ZSTD_WINDOW_LOG_MAX 27      /* 128 MiB, zstd's own default limit */
/* Writer side: zero runs shorter than this stay data; the map never exceeds the cap. */
#define PKG_MIN_HOLE (64u << 10)
#define PKG_MAX_SPARSE_REGIONS 65536

/*
 * Write the N devices into the package ARCHIVE (through a temporary file
 * renamed into place, so a failure leaves nothing behind). 0 or -errno,
 * with ERR filled on failure.
 */
int pkg_create(const char *archive, const struct pkg_device *devs, size_t n,
	       const struct pkg_options *opt, struct pkg_stats *stats, struct pkg_error *err);

/*
 * Extract the N devices (any order) from ARCHIVE to their paths. Every
 * output is written to a temporary file and renamed only after the whole
 * package was read and checked; on failure no output is created or changed.
 */
int pkg_extract(const char *archive, const struct pkg_device *devs, size_t n,
		const struct pkg_options *opt, struct pkg_stats *stats, struct pkg_error *err);

/*
 * Data regions of the open file FD of SIZE bytes: holes (SEEK_HOLE) and runs
 * of zero bytes of at least MIN_HOLE (aligned to 4 KiB) are left out. Past
 * MAX_REGIONS (0: PKG_MAX_SPARSE_REGIONS) the minimum hole doubles and close
 * regions merge. 0 with *OUT (malloc'd) and *N_OUT set, or -errno. Exposed
 * for tests.
 */
struct pkg_region {
	uint64_t offset, length;
};
int pkg_scan_regions(int fd, uint64_t size, uint64_t min_hole, size_t max_regions,
		     struct pkg_region **out, size_t *n_out);

#endif
