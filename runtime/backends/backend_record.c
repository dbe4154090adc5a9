/* SPDX-License-Identifier: MIT */
/*
 * backend_record.c - the recorder: a policy over any C backend that logs
 * every write (with its data), discard, write-zeroes, FLUSH and FUA flag
 * to an append-only, checksummed log (docs/crash-testing.md), then hands
 * the request to the base unchanged.
 *
 * Options: log (the log's path; it must not exist, unless `recover`: a
 * server taking the device over continues the dead one's log), base.*
 * (the base's).
 *
 * The log is written by record_writer.c.  The entry is written before the
 * base sees the request, so a write is in the log before it completes to
 * the kernel.  The device takes no zero copy (the data must pass through
 * this process to be logged): a write's data is copied into the log from
 * the tag's buffer, or by user copy straight from the request where the
 * base copies that way (memory by default).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "backends.h"
#include "policy.h"

struct record {
	struct ublk_backend base;	/* first: policy.c finds it at b->priv */
	struct ublk_record_log log;
};

static int record_create(struct ublk_backend *b, const struct ublk_backend_conf *conf)
{
	const char *log = ublk_conf_get(conf, "log");
	struct record *r;
	int ret;

	if (!log || !log[0]) {
		snprintf(b->err, sizeof(b->err), "the recorder needs a log path (log = PATH)");
		return -EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->log.fd = -1;
	ret = ublk_policy_base_create(b, &r->base, conf);
	if (ret < 0) {
		free(r);
		return ret;
	}
	ret = ublk_record_log_open(&r->log, log, ublk_conf_flag(conf, "recover"),
				   conf->block_size, r->base.size, b);
	if (ret < 0)
		goto fail;
	b->priv = r;
	b->size = r->base.size;
	b->caps = ublk_record_caps(r->base.caps);
	return 0;
fail:
	r->base.ops->destroy(&r->base);
	free(r);
	return ret;
}

static void record_destroy(struct ublk_backend *b)
{
	struct record *r = b->priv;

	r->base.ops->destroy(&r->base);
	ublk_record_log_close(&r->log);
	free(r);
}

static int record_handle_io(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io)
{
	struct record *r = b->priv;
	int ret = ublk_record_log_io(&r->log, q, io, r->base.caps);

	if (ret != 0) /* failed, or a FLUSH the base takes none of: done */
		return ret < 0 ? ret : 0;
	return r->base.ops->handle_io(&r->base, q, io);
}

const struct ublk_backend_ops ublk_backend_record = {
	.name = "record",
	.create = record_create,
	.destroy = record_destroy,
	.queue_init = ublk_policy_queue_init,
	.queue_exit = ublk_policy_queue_exit,
	.handle_io = record_handle_io,
	.io_done = ublk_policy_io_done,
	.tick = ublk_policy_tick,
};
