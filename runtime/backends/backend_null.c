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
 * unregisters the request's pages around it), register (the queue does,
 * with REGISTER_IO_BUF and UNREGISTER_IO_BUF per request) or
 * auto_reg_fallback (auto registration asked at a slot the ring lacks, so
 * that every request takes the kernel's fallback: it arrives with
 * UBLK_IO_F_NEED_REG_BUF and the queue registers it itself).
 */
#include <errno.h>

#include "../include/backend.h"
#include "backends.h"

/* "copy": the shared modes, then its own test of the fallback path */
#define NULL_COPY_MODES UBLK_COPY_MODES "|auto_reg_fallback"
#define FALLBACK_MODE 4

static int null_create(struct ublk_backend *b, const struct ublk_backend_conf *conf)
{
	int ret;

	if (!conf->size)
		return -EINVAL;
	b->size = conf->size;
	unsigned mode;

	b->caps = UBLK_CAN_DISCARD | UBLK_CAN_WRITE_ZEROES;
	ret = ublk_conf_choice(b, conf, "copy", &mode);
	if (ret > 0 && mode == FALLBACK_MODE) {
		b->caps |= UBLK_CAN_ZERO_COPY;
		b->zc_only = UBLK_ZC_AUTO_REG_FALLBACK;
		return 0;
	}
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
	{ .name = "copy", .kind = UBLK_OPT_CHOICE, .values = NULL_COPY_MODES,
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
