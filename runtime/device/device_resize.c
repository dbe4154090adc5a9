/* SPDX-License-Identifier: MIT */
/*
 * device_resize.c - a started device changes size (device.h): the order
 * of the backend's and the kernel's part is what keeps every request
 * inside what the backend serves.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../backends/backends.h"
#include "../base/log.h"
#include "device_private.h"

/* The registered backends that have a resize op, as the refusal of one
 * without names them ("memory, file and nbd"): from the registry, so the
 * text cannot lag behind a backend that learns to resize. */
static const char *resizable(char *buf, size_t len)
{
	const char *const *names = ublk_backend_names();
	size_t n = 0, k = 0, at = 0;

	for (size_t i = 0; names[i]; i++)
		n += ublk_backend_find(names[i])->resize != NULL;
	buf[0] = '\0';
	for (size_t i = 0; names[i] && at < len; i++) {
		if (!ublk_backend_find(names[i])->resize)
			continue;
		at += (size_t)snprintf(buf + at, len - at, "%s%s",
				       !k ? "" : k == n - 1 ? " and " : ", ", names[i]);
		k++;
	}
	return buf;
}

int ublk_dev_resize(struct ublk_dev *d, uint64_t size, bool force)
{
	const struct ublk_backend_ops *ops = d->backend.ops;
	uint64_t old = d->backend.size;
	unsigned bs = 1u << d->params.basic.logical_bs_shift;
	char can[96];
	int ret;

	if (d->state != UBLK_DEV_STARTED)
		return ublk_dev_fail(d, -EINVAL, "device is not started");
	if (!(d->features & UBLK_F_UPDATE_SIZE))
		return ublk_dev_fail(d, -ENOTSUP, "resize needs UBLK_F_UPDATE_SIZE (Linux 6.16+), "
				     "which this kernel lacks");
	if (!ops->resize)
		return ublk_dev_fail(d, -ENOTSUP, "backend '%s' cannot be resized (%s can)",
				     ops->name, resizable(can, sizeof(can)));
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
