/* SPDX-License-Identifier: MIT */
/*
 * backend_lying.c - a disk that lies about flushes: a policy over any C
 * backend that completes FLUSH at once and drops FUA, passing neither
 * down, as a drive with a volatile cache that ignores cache flushes.
 * Over the recorder the log then has no FLUSH and no FUA: every write
 * since the start may be lost (docs/crash-testing.md), which is what such
 * a drive does to a file system at a power cut.
 *
 * Options: base.* (the base's).
 */
#include <errno.h>
#include <stdlib.h>

#include "policy.h"

static int lying_create(struct ublk_backend *b, const struct ublk_backend_conf *conf)
{
	struct ublk_backend *base = calloc(1, sizeof(*base));
	int ret;

	if (!base)
		return -ENOMEM;
	ret = ublk_policy_base_create(b, base, conf);
	if (ret < 0) {
		free(base);
		return ret;
	}
	b->priv = base;
	b->size = base->size;
	b->zc_only = base->zc_only;
	b->dma_align = base->dma_align;
	/* the lie: a cache to flush and FUA, whatever the base has */
	b->caps = base->caps | UBLK_CAN_FLUSH | UBLK_CAN_FUA;
	return 0;
}

static void lying_destroy(struct ublk_backend *b)
{
	struct ublk_backend *base = b->priv;

	base->ops->destroy(base);
	free(base);
}

static int lying_handle_io(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io)
{
	struct ublk_backend *base = b->priv;

	if (io->op == UBLK_IO_OP_FLUSH)
		return 0;
	io->flags &= ~UBLK_IO_F_FUA;
	return base->ops->handle_io(base, q, io);
}

const struct ublk_backend_ops ublk_backend_lying = {
	.name = "lying",
	.create = lying_create,
	.destroy = lying_destroy,
	.queue_init = ublk_policy_queue_init,
	.queue_exit = ublk_policy_queue_exit,
	.handle_io = lying_handle_io,
	.io_done = ublk_policy_io_done,
	.tick = ublk_policy_tick,
};
