/*
 * Plain files as migration devices: read-only inputs for the registry and
 * output files written through a temporary file for terminate.
 */
#ifndef DRAFTER_XFER_FILEDEV_H
#define DRAFTER_XFER_FILEDEV_H

#include "core/xfer/migrate.h"

/* A read-only input file served as device NAME. */
int xfer_filedev_open_input(const char *path, const char *name, uint32_t block_size,
			    struct xfer_dev **out);

/*
 * An output file of SIZE bytes for device NAME: written to a temporary file
 * next to PATH (sparse; all-zero blocks are not written), which
 * xfer_filedev_commit renames to PATH after fsync. Freeing an uncommitted
 * output removes the temporary file.
 */
int xfer_filedev_open_output(const char *path, const char *name, uint64_t size,
			     uint32_t block_size, struct xfer_dev **out);
int xfer_filedev_commit(struct xfer_dev *d);
const char *xfer_filedev_path(const struct xfer_dev *d);

void xfer_filedev_free(struct xfer_dev *d);

#endif
