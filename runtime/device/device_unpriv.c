/* SPDX-License-Identifier: MIT */
/*
 * device_unpriv.c - what a device made without CAP_SYS_ADMIN waits for.
 * The kernel makes /dev/ublkcN and /dev/ublkbN root's, as any node; the
 * udev rule (contrib/udev/70-ublk-lua.rules, docs/unprivileged.md) gives
 * them to the device's owner a moment later, from udevd's own process.
 * The server may open its char device, and its user the disk, only then.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../base/clock.h"
#include "device_private.h"

/* How long udev may take: its rule runs `ublk-lua udev` (a LuaJIT start)
 * for each node, which under emulation takes up to a second. */
#define UDEV_WAIT_NS (10ull * 1000000000ull)

int ublk_dev_wait_node(struct ublk_dev *d, const char *path, const char *then)
{
	uint64_t end = ublk_now_ns() + UDEV_WAIT_NS;

	while (access(path, R_OK | W_OK) < 0) {
		int err = errno;

		if ((err != EACCES && err != EPERM && err != ENOENT) || ublk_now_ns() > end)
			return ublk_dev_fail(d, -err, "%s is not yours (uid %u) %s: %s: is "
				    "ublk-lua's udev rule installed? (docs/unprivileged.md)%s", path,
				    (unsigned)getuid(), err == ENOENT ? "nor there" : "after 10 s",
				    strerror(err), then);
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	}
	return 0;
}
