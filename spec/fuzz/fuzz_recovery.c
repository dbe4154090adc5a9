/* SPDX-License-Identifier: MIT */
/*
 * spec/fuzz/fuzz_recovery.c - libFuzzer target: whatever GET_DEV_INFO and
 * GET_PARAMS could say of a device a new server is asked to recover, and
 * whatever backend it brings (size, capabilities), through the check that
 * decides whether the recovery goes on (ublk_dev_check_recovered).
 * Invariants: no crash or sanitizer report; a device it accepts has
 * queues, depth and buffer size the queues can be made from, recovery on,
 * is not DEAD and has the backend's size; one it refuses has a message
 * that names the device.  Build and run: make fuzz.
 */
#include <stdlib.h>
#include <string.h>

#include "../../runtime/device_private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ublk_dev d;
	const struct ublksrv_ctrl_dev_info *i = &d.info;
	int ret;

	if (size < sizeof(d.info) + 8 + 8 + 4)
		return 0;
	memset(&d, 0, sizeof(d));
	memcpy(&d.info, data, sizeof(d.info));
	data += sizeof(d.info);
	memcpy(&d.params.basic.dev_sectors, data, 8);
	memcpy(&d.backend.size, data + 8, 8);
	memcpy(&d.backend.caps, data + 16, 4);
	d.backend.ops = ublk_backend_find("memory");

	ret = ublk_dev_check_recovered(&d, 7);
	if (ret == 0) {
		if (i->nr_hw_queues < 1 || i->nr_hw_queues > UBLK_MAX_NR_QUEUES ||
		    i->queue_depth < 1 || i->queue_depth > UBLK_MAX_QUEUE_DEPTH ||
		    i->max_io_buf_bytes < 4096 || i->max_io_buf_bytes > 1u << UBLK_IO_BUF_BITS ||
		    !(i->flags & UBLK_F_USER_RECOVERY) || i->state == UBLK_S_DEV_DEAD ||
		    d.params.basic.dev_sectors * 512 != d.backend.size)
			abort();
	} else if (ret != -EINVAL || !strstr(d.err, "device 7 ") ||
		   strnlen(d.err, sizeof(d.err)) == sizeof(d.err)) {
		abort();
	}
	return 0;
}
