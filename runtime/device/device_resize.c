/* SPDX-License-Identifier: MIT */
/*
 * device_resize.c - a started device changes size (device.h): the order
 * of the backend's and the kernel's part is what keeps every request
 * inside what the backend serves.
 */
#include <errno.h>
#include <string.h>

#include "../base/log.h"
#include "device_private.h"

int ublk_dev_resize(struct ublk_dev *d, uint64_t size, bool force)
{
	const struct ublk_backend_ops *ops = d->backend.ops;
	uint64_t old = d->backend.size;
	unsigned bs = 1u << d->params.basic.logical_bs_shift;
	int ret;

	if (d->state != UBLK_DEV_STARTED)
		return ublk_dev_fail(d, -EINVAL, "device is not started");
	if (!(d->features & UBLK_F_UPDATE_SIZE))
		return ublk_dev_fail(d, -ENOTSUP, "resize needs UBLK_F_UPDATE_SIZE (Linux 6.16+), "
				     "which this kernel lacks");
	if (!ops->resize)
		return ublk_dev_fail(d, -ENOTSUP, "backend '%s' cannot be resized (memory, file "
				     "and nbd can)", ops->name);
	if (!(d->info.flags & UBLK_F_UPDATE_SIZE))
		return ublk_dev_fail(d, -ENOTSUP, "device %u was added without UBLK_F_UPDATE_SIZE "
				     "(by an older server): it cannot be resized", d->info.dev_id);
	if (!size || size % bs)
		return ublk_dev_fail(d, -EINVAL, "size %llu is not a positive multiple of "
				     "block_size %u", (unsigned long long)size, bs);
	if (size == old)
		return 0;
	if (size < old && !force)
		return ublk_dev_fail(d, -EINVAL, "size %llu is smaller than the device's %llu: the "
				     "data past it would be cut; shrink what is on it first (e.g. "
				     "resize2fs), then force it", (unsigned long long)size,
				     (unsigned long long)old);
	d->backend.err[0] = '\0';
	if (size > old) {
		ret = ops->resize(&d->backend, size);
		if (ret < 0)
			return ublk_dev_fail(d, ret, "backend '%s' cannot grow to %llu bytes: %s",
					     ops->name, (unsigned long long)size,
					     d->backend.err[0] ? d->backend.err : strerror(-ret));
		d->backend.size = size;
	}
	ret = ublk_ctrl_update_size(&d->ctrl, d->info.dev_id, size >> 9);
	if (ret < 0) {
		if (size > old && ops->resize(&d->backend, old) >= 0)
			d->backend.size = old;
		return ublk_dev_fail(d, ret, "UPDATE_SIZE refused: %s", strerror(-ret));
	}
	d->params.basic.dev_sectors = size >> 9;
	if (size < old) {
		/* the kernel sends nothing past size now: the backend can let
		 * it go (a failure leaves it serving more, which is harmless) */
		ret = ops->resize(&d->backend, size);
		if (ret < 0)
			ublk_warn("dev %u: backend '%s' could not give back what was cut: %s",
				  d->info.dev_id, ops->name, d->backend.err);
		d->backend.size = size;
	}
	return 0;
}
