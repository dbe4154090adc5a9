/* SPDX-License-Identifier: MIT */
/*
 * spec/fuzz/fuzz_recovery.c - libFuzzer target: whatever GET_DEV_INFO and
 * GET_PARAMS could say of a device a new server is asked to recover, and
 * whatever backend it brings (size, capabilities), through the check that
 * decides whether the recovery goes on (ublk_dev_check_recovered).
 * Invariants: no crash or sanitizer report; a device it accepts has
 * queues, depth and buffer size the queues can be made from, recovery on,
 * is not DEAD, has the backend's size, is read-only as the server is and
 * has no flag that changes the protocol our queues speak, and descriptors
 * of a size the kernel allows where it sets one; one it refuses
 * has a message that names the device.  Build and run: make fuzz.
 *
 * Input: GET_DEV_INFO's answer, dev_sectors, the backend's size and caps;
 * then, if present, the device's attrs and the server's read_only (a
 * shorter input has neither: both writable).
 */
#include <stdlib.h>
#include <string.h>

#include "../../runtime/backends/backends.h"
#include "../../runtime/device/device_private.h"

/* Flags whose requests or commands our queues do not speak: whatever else
 * the check allows, never these (nor a bit past the header's last, 20). */
#define FOREIGN (UBLK_F_NEED_GET_DATA | UBLK_F_UNPRIVILEGED_DEV | UBLK_F_ZONED | \
		 UBLK_F_INTEGRITY | UBLK_F_SHMEM_ZC | ~((1ull << 21) - 1))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ublk_dev d;
	const struct ublksrv_ctrl_dev_info *i = &d.info;
	const size_t base = sizeof(d.info) + 8 + 8 + 4;
	int ret;

	if (size < base)
		return 0;
	memset(&d, 0, sizeof(d));
	memcpy(&d.info, data, sizeof(d.info));
	memcpy(&d.params.basic.dev_sectors, data + sizeof(d.info), 8);
	memcpy(&d.backend.size, data + sizeof(d.info) + 8, 8);
	memcpy(&d.backend.caps, data + sizeof(d.info) + 16, 4);
	if (size >= base + 5) {
		memcpy(&d.params.basic.attrs, data + base, 4);
		d.read_only = data[base + 4] & 1;
	}
	d.backend.ops = ublk_backend_find("memory");

	ret = ublk_dev_check_recovered(&d, 7);
	if (ret == 0) {
		if (i->nr_hw_queues < 1 || i->nr_hw_queues > UBLK_MAX_NR_QUEUES ||
		    i->queue_depth < 1 || i->queue_depth > UBLK_MAX_QUEUE_DEPTH ||
		    i->max_io_buf_bytes < 4096 || i->max_io_buf_bytes > 1u << UBLK_IO_BUF_BITS ||
		    !(i->flags & UBLK_F_USER_RECOVERY) || i->state == UBLK_S_DEV_DEAD ||
		    d.params.basic.dev_sectors * 512 != d.backend.size ||
		    !(d.params.basic.attrs & UBLK_ATTR_READ_ONLY) != !d.read_only ||
		    (i->flags & FOREIGN) ||
		    ((i->flags & UBLK_F_IO_DESC_SIZE) &&
		     (i->io_desc_size < 24 || i->io_desc_size > 256 || i->io_desc_size % 8)))
			abort();
	} else if (ret != -EINVAL || !strstr(d.err, "device 7 ") ||
		   strnlen(d.err, sizeof(d.err)) == sizeof(d.err)) {
		abort();
	}
	return 0;
}
