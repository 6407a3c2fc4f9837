/*
 * The exposure object shared by the backends (store-expose.c holds the
 * common part and the file backend, store-fuse.c and store-nbd.c the
 * others).
 */
#ifndef DRAFTER_STORE_EXPOSE_INTERNAL_H
#define DRAFTER_STORE_EXPOSE_INTERNAL_H

#include "core/store/store-internal.h"

struct store_expose {
	const struct store_expose_ops *ops;
	struct store_device **devs;
	size_t n;
	char **paths; /* what a VMM opens, per device */
	char *mount_dir;
	char *mountpoint; /* fuse */
	char *instance;
	bool writeback_cache;
	void *priv; /* backend state */
};

extern const struct store_expose_ops store_expose_fuse_ops;
extern const struct store_expose_ops store_expose_nbd_ops;
extern const struct store_expose_ops store_expose_file_ops;

/* fsync of the exposed path (the fuse and nbd backends flush this way too). */
int store_expose_path_flush(struct store_expose *e, size_t i);

#endif
