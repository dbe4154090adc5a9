/* SPDX-License-Identifier: MIT */
/*
 * backend_null.c - completes every request at once and moves no data, like
 * the kernel's null_blk: the cost of ublk itself, with nothing behind it.
 *
 * Its "copy" picks which of the kernel's data paths the device takes,
 * though nothing is copied (as kublk's null target does with -z and
 * --auto_zc), so that a test can drive the driver in each: the tag's
 * buffer (the kernel copies between it and the request), user copy
 * (UBLK_F_USER_COPY: no copy at all), auto_reg (the kernel registers and
 * unregisters the request's pages around it) or register (the queue does,
 * with REGISTER_IO_BUF and UNREGISTER_IO_BUF per request).
 */
#include <errno.h>

#include "../include/backend.h"
#include "backends.h"

static int null_create(struct ublk_backend *b, const struct ublk_backend_conf *conf)
{
	int ret;

	if (!conf->size)
		return -EINVAL;
	b->size = conf->size;
	b->caps = UBLK_CAN_DISCARD | UBLK_CAN_WRITE_ZEROES;
	ret = ublk_backend_copy_mode(b, conf);
	return ret < 0 ? ret : 0;
}

static void null_destroy(struct ublk_backend *b)
{
	(void)b;
}

static int null_handle_io(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io)
{
	(void)b;
	(void)q;
	switch (io->op) {
	case UBLK_IO_OP_READ:
	case UBLK_IO_OP_WRITE:
	case UBLK_IO_OP_DISCARD:
	case UBLK_IO_OP_WRITE_ZEROES:
		return (int)io->len;
	case UBLK_IO_OP_FLUSH:
		return 0;
	default:
		return -EOPNOTSUPP;
	}
}

static const struct ublk_backend_opt null_opts[] = {
	{ .name = "copy", .kind = UBLK_OPT_CHOICE, .values = UBLK_COPY_MODES,
	  .def = "buffer",
	  .help = "the kernel's data path the device takes, nothing copied (docs/tuning.md)" },
	{ 0 }
};

const struct ublk_backend_ops ublk_backend_null = {
	.name = "null",
	.opts = null_opts,
	.create = null_create,
	.destroy = null_destroy,
	.handle_io = null_handle_io,
};
