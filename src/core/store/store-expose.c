/*
 * Exposure of devices to a VMM: the backend-independent part (choosing the
 * backend, paths, flushing what the kernel caches) and the "file" backend,
 * which hands out the device's own file and tracks nothing.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/store/store-expose-internal.h"

enum store_expose_kind store_expose_auto(void)
{
	return store_nbd_available() ? STORE_EXPOSE_NBD : STORE_EXPOSE_FUSE;
}

int store_expose_kind_from_string(const char *s, enum store_expose_kind *out)
{
	static const struct {
		const char *name;
		enum store_expose_kind kind;
	} names[] = {
	    {"auto", STORE_EXPOSE_AUTO},
	    {"fuse", STORE_EXPOSE_FUSE},
	    {"nbd", STORE_EXPOSE_NBD},
	    {"file", STORE_EXPOSE_FILE},
	};

	for (size_t i = 0; s && i < ARRAY_SIZE(names); i++) {
		if (!strcmp(s, names[i].name)) {
			*out = names[i].kind;
			return 0;
		}
	}
	return -EINVAL;
}

static int file_start(struct store_expose *e)
{
	for (size_t i = 0; i < e->n; i++) {
		const char *path = store_file_path(store_device_stack(e->devs[i]));
		/* anything but a plain file would be bypassed by the VMM */
		if (!path || store_device_wait(e->devs[i]))
			return -EOPNOTSUPP;
		e->paths[i] = strdup(path);
		if (!e->paths[i])
			return -ENOMEM;
	}
	return 0;
}

static void file_stop(struct store_expose *e)
{
	(void)e;
}

/* fsync through the exposed path: writes back pages any process dirtied. */
static int path_flush(struct store_expose *e, size_t i)
{
	_cleanup_close_ int fd = open(e->paths[i], O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		return -errno;
	return 0;
}

const struct store_expose_ops store_expose_file_ops = {
	.name = "file",
	.start = file_start,
	.flush = path_flush,
	.stop = file_stop,
};

void store_expose_free(struct store_expose *e)
{
	if (!e)
		return;
	if (e->ops)
		e->ops->stop(e);
	for (size_t i = 0; e->paths && i < e->n; i++)
		free(e->paths[i]);
	free(e->paths);
	free(e->devs);
	free(e->mount_dir);
	free(e->mountpoint);
	free(e->instance);
	free(e);
}

int store_expose_new(const struct store_expose_opts *o, struct store_device **devs, size_t n,
                     struct store_expose **out)
{
	enum store_expose_kind kind = o->kind == STORE_EXPOSE_AUTO ? store_expose_auto() : o->kind;
	_cleanup_(store_expose_freep) struct store_expose *e = NULL;
	const struct store_expose_ops *ops;
	int r;

	switch (kind) {
	case STORE_EXPOSE_FUSE:
		ops = &store_expose_fuse_ops;
		break;
	case STORE_EXPOSE_NBD:
		ops = &store_expose_nbd_ops;
		break;
	case STORE_EXPOSE_FILE:
		ops = &store_expose_file_ops;
		break;
	default:
		return -EINVAL;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->n = n;
	e->devs = calloc(n ? n : 1, sizeof(*e->devs));
	e->paths = calloc(n ? n : 1, sizeof(*e->paths));
	if (!e->devs || !e->paths)
		return -ENOMEM;
	memcpy(e->devs, devs, n * sizeof(*devs));
	e->writeback_cache = o->writeback_cache;
	if (o->mount_dir) {
		e->mount_dir = strdup(o->mount_dir);
		if (!e->mount_dir)
			return -ENOMEM;
	}
	if (o->instance)
		e->instance = strdup(o->instance);
	else if (asprintf(&e->instance, "drafter-%ld", (long)getpid()) < 0)
		e->instance = NULL;
	if (!e->instance)
		return -ENOMEM;
	if (strchr(e->instance, '/') || !strcmp(e->instance, "..") || !strcmp(e->instance, "."))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < i; j++)
			if (!strcmp(store_device_name(devs[i]), store_device_name(devs[j])))
				return -EEXIST;
	r = ops->start(e);
	e->ops = ops; /* stop cleans up whatever start got done */
	if (r < 0)
		return r;
	*out = TAKE_PTR(e);
	return 0;
}

const char *store_expose_path(const struct store_expose *e, size_t i)
{
	return i < e->n ? e->paths[i] : NULL;
}

const char *store_expose_mountpoint(const struct store_expose *e)
{
	return e->mountpoint;
}

const char *store_expose_kind_name(const struct store_expose *e)
{
	return e->ops->name;
}

int store_expose_flush(struct store_expose *e, size_t i)
{
	if (i >= e->n)
		return -EINVAL;
	return e->ops->flush(e, i);
}

int store_expose_prefill_start(struct store_expose *e, size_t i)
{
	if (i >= e->n)
		return -EINVAL;
	return e->ops->prefill ? e->ops->prefill(e, i) : 0;
}

void store_expose_prefill_stop(struct store_expose *e)
{
	if (e && e->ops->prefill)
		(void)e->ops->prefill(e, SIZE_MAX);
}

void store_expose_settle(struct store_expose *e)
{
	if (e && e->ops->settle)
		e->ops->settle(e);
}

void store_expose_warm(struct store_expose *e)
{
	if (e && e->ops->warm)
		e->ops->warm(e);
}

int store_expose_flush_all(struct store_expose *e)
{
	for (size_t i = 0; i < e->n; i++) {
		int r = e->ops->flush(e, i);
		if (r < 0)
			return r;
	}
	return 0;
}

int store_expose_path_flush(struct store_expose *e, size_t i)
{
	return path_flush(e, i);
}
