/* SPDX-License-Identifier: MIT */
/*
 * backend_null.c - completes every request at once and moves no data, like
 * the kernel's null_blk: the cost of ublk itself, with nothing behind it.
 */
#include <errno.h>

#include "../include/backend.h"

static int null_create(struct ublk_backend *b, const struct ublk_backend_conf *conf)
{
	if (!conf->size)
		return -EINVAL;
	b->size = conf->size;
	b->caps = UBLK_CAN_DISCARD | UBLK_CAN_WRITE_ZEROES;
	return 0;
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

const struct ublk_backend_ops ublk_backend_null = {
	.name = "null",
	.create = null_create,
	.destroy = null_destroy,
	.handle_io = null_handle_io,
};
