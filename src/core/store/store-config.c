/*
 * The bridge from the configuration (struct cfg_device, the exposure
 * setting) to store objects, so that every command builds devices the same
 * way.
 */
#include "config.h"

#include <errno.h>

#include "core/store/store.h"

int store_device_open_cfg(const struct cfg_device *cd, bool destination, uint64_t size,
                          struct store_device **out)
{
	_cleanup_store_ struct store_provider *stack = NULL;
	bool overlay = cd->overlay && *cd->overlay;
	int r;

	struct store_stack_opts so = {
	    .base = cd->base && *cd->base ? cd->base : cd->path,
	    .overlay = cd->overlay,
	    .state = cd->state,
	    .block_size = cd->block_size,
	    /* an overlay's size is its base's; a destination's plain base takes the source's */
	    .size = overlay ? 0 : size,
	};
	r = store_stack_open(&so, &stack);
	if (r < 0)
		return r;
	if (size && store_size(stack) != size)
		return -EINVAL; /* a shared base that differs from the source's cannot be right */
	struct store_device_opts o = {
	    .name = cd->name,
	    .block_size = cd->block_size,
	    .expiry_ns = cd->expiry_ns,
	    .destination = destination,
	};
	r = store_device_new(&o, stack, out);
	if (r < 0)
		return r;
	TAKE_PTR(stack);
	return 0;
}

enum store_expose_kind store_expose_kind_from_cfg(enum cfg_exposure e)
{
	switch (e) {
	case EXPOSE_FUSE:
		return STORE_EXPOSE_FUSE;
	case EXPOSE_NBD:
		return STORE_EXPOSE_NBD;
	case EXPOSE_FILE:
		return STORE_EXPOSE_FILE;
	case EXPOSE_AUTO:
	default:
		return STORE_EXPOSE_AUTO;
	}
}
