/* SPDX-License-Identifier: MIT */
/*
 * device_recover.c - a new server for a device whose server died with
 * user recovery on (device.h: ublk_dev_recover).  The kernel kept the
 * device, quiesced: its I/O waits (or fails, with FAIL_IO) until a server
 * has fetched every tag again.  kublk and ublksrv do the same steps.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "device_private.h"
#include "log.h"

#define RECOVER_WAIT_MS 10000

static const char *state_name(uint16_t state)
{
	switch (state) {
	case UBLK_S_DEV_DEAD: return "DEAD";
	case UBLK_S_DEV_LIVE: return "LIVE";
	case UBLK_S_DEV_QUIESCED: return "QUIESCED";
	case UBLK_S_DEV_FAIL_IO: return "FAIL_IO";
	}
	return "unknown";
}

/* START_USER_RECOVERY answers -EBUSY until the dead server's char device
 * is released and the kernel has quiesced the device: a moment after a
 * SIGKILL, longer while the dying process still exits. */
static int start_recovery(struct ublk_dev *d, uint32_t id)
{
	int ret = -EBUSY;

	for (int waited = 0; waited < RECOVER_WAIT_MS; waited += 20) {
		ret = ublk_ctrl_start_user_recovery(&d->ctrl, id);
		if (ret != -EBUSY)
			break;
		nanosleep(&(struct timespec){ .tv_nsec = 20000000 }, NULL);
	}
	if (ret == -EBUSY) {
		ublk_ctrl_get_dev_info(&d->ctrl, id, &d->info);
		return ublk_dev_fail(d, ret, "device %u is %s, served by pid %d: only a device "
				     "whose server has died can be recovered", id,
				     state_name(d->info.state), d->info.ublksrv_pid);
	}
	if (ret < 0)
		return ublk_dev_fail(d, ret, "START_USER_RECOVERY refused: %s", strerror(-ret));
	return 0;
}

int ublk_dev_check_recovered(struct ublk_dev *d, uint32_t id)
{
	const struct ublksrv_ctrl_dev_info *i = &d->info;
	uint64_t sectors = d->params.basic.dev_sectors;

	/* what the queues are made from: the kernel's own limits */
	if (i->nr_hw_queues < 1 || i->nr_hw_queues > UBLK_MAX_NR_QUEUES)
		return ublk_dev_fail(d, -EINVAL, "device %u reports %u queues: expected 1..%u",
				     id, i->nr_hw_queues, UBLK_MAX_NR_QUEUES);
	if (i->queue_depth < 1 || i->queue_depth > UBLK_MAX_QUEUE_DEPTH)
		return ublk_dev_fail(d, -EINVAL, "device %u reports depth %u: expected 1..%u",
				     id, i->queue_depth, UBLK_MAX_QUEUE_DEPTH);
	if (i->max_io_buf_bytes < 4096 || i->max_io_buf_bytes > (1u << UBLK_IO_BUF_BITS) ||
	    i->max_io_buf_bytes % 512)
		return ublk_dev_fail(d, -EINVAL, "device %u reports max_io_buf_bytes %u: "
				     "expected a multiple of 512 in 4096..%u", id,
				     i->max_io_buf_bytes, (1u << UBLK_IO_BUF_BITS));
	if (!(i->flags & UBLK_F_USER_RECOVERY))
		return ublk_dev_fail(d, -EINVAL, "device %u was added with recovery = false: it "
				     "cannot be recovered, only removed (ublk-lua del -n %u)",
				     id, id);
	if (i->state == UBLK_S_DEV_DEAD)
		return ublk_dev_fail(d, -EINVAL, "device %u is DEAD: it cannot be recovered, "
				     "only removed (ublk-lua del -n %u)", id, id);
	/* compared in sectors: a byte count could wrap */
	if (sectors != d->backend.size >> 9 || d->backend.size % 512)
		return ublk_dev_fail(d, -EINVAL, "device %u has %llu sectors, the backend %llu "
				     "bytes: a recovering server must serve the same size", id,
				     (unsigned long long)sectors,
				     (unsigned long long)d->backend.size);
	if ((d->info.flags & UBLK_F_USER_COPY) && !(d->backend.caps & UBLK_CAN_USER_COPY))
		return ublk_dev_fail(d, -EINVAL, "device %u moves data by user copy, which "
				     "backend '%s' cannot", id, d->backend.ops->name);
	if (ublk_dev_zero_copy(d->info.flags) != UBLK_ZC_NONE &&
	    !(d->backend.caps & UBLK_CAN_ZERO_COPY))
		return ublk_dev_fail(d, -EINVAL, "device %u moves data by zero copy, which "
				     "backend '%s' cannot", id, d->backend.ops->name);
	return 0;
}

static int check_device(struct ublk_dev *d, uint32_t id)
{
	int ret = ublk_ctrl_get_dev_info(&d->ctrl, id, &d->info);

	if (ret == -ENODEV || ret == -ENOENT)
		return ublk_dev_fail(d, -ENODEV, "there is no ublk device %u", id);
	if (ret < 0)
		return ublk_dev_fail(d, ret, "GET_DEV_INFO of device %u: %s", id, strerror(-ret));
	d->ctrl.ioctl_encode = (d->info.flags & UBLK_F_CMD_IOCTL_ENCODE) != 0;
	ret = ublk_ctrl_get_params(&d->ctrl, id, &d->params);
	if (ret < 0)
		return ublk_dev_fail(d, ret, "GET_PARAMS of device %u: %s", id, strerror(-ret));
	return ublk_dev_check_recovered(d, id);
}

int ublk_dev_recover(struct ublk_dev *d, uint32_t id, const struct ublk_dev_conf *conf,
		     const struct ublk_backend_ops *ops,
		     const struct ublk_backend_conf *bconf)
{
	int ret;

	/* recovering: from here on nothing deletes the device or its store */
	ret = ublk_dev_init_backend(d, true, ops, bconf);
	if (ret < 0)
		return ret;
	ret = ublk_dev_open_ctrl(d);
	if (ret >= 0)
		ret = check_device(d, id);
	if (ret >= 0)
		ret = start_recovery(d, id);
	if (ret >= 0)
		ret = ublk_dev_open_cdev(d);
	if (ret >= 0)
		ret = ublk_dev_alloc_queues(d, conf);
	if (ret < 0) {
		ublk_dev_release(d, false);
		return ret;
	}
	ublk_dev_register(id, d->backend.store);
	d->state = UBLK_DEV_CREATED;
	return 0;
}
