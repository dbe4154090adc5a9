/* SPDX-License-Identifier: MIT */
/*
 * policy.c - what policies share: making the base backend they wrap from
 * their own options, and passing it what they leave alone.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends.h"
#include "policy.h"

#define PREFIX "base."

int ublk_policy_base_create(struct ublk_backend *b, struct ublk_backend *base,
			    const struct ublk_backend_conf *conf)
{
	struct ublk_backend_conf c = { .size = conf->size, .block_size = conf->block_size };
	const struct ublk_backend_ops *ops;
	const char **opts, *name, *size;
	size_t n = 0, len = strlen(PREFIX);
	int ret;

	for (const char *const *o = conf->opts; o && o[0] && o[1]; o += 2)
		n++;
	opts = calloc(2 * n + 1, sizeof(*opts));
	if (!opts)
		return -ENOMEM;
	n = 0;
	for (const char *const *o = conf->opts; o && o[0] && o[1]; o += 2)
		if (!strncmp(o[0], PREFIX, len)) {
			opts[n++] = o[0] + len;
			opts[n++] = o[1];
		}
	c.opts = opts;
	name = ublk_conf_get(&c, "backend");
	ops = name ? ublk_backend_find(name) : NULL;
	if (!ops) {
		snprintf(b->err, sizeof(b->err), "base backend '%.32s' is not a C backend",
			 name ? name : "");
		ret = -EINVAL;
		goto out;
	}
	size = ublk_conf_get(&c, "size");
	if (size)
		c.size = strtoull(size, NULL, 10);
	c.read_only = conf->read_only || ublk_conf_flag(&c, "read_only");
	memset(base, 0, sizeof(*base));
	base->ops = ops;
	ret = ops->create(base, &c);
	if (ret < 0) {
		snprintf(b->err, sizeof(b->err), "base %.16s: %.120s", ops->name,
			 base->err[0] ? base->err : strerror(-ret));
		goto out;
	}
	b->max_queues = base->max_queues;
	b->budget_ms = base->budget_ms;
	memcpy(b->note, base->note, sizeof(b->note));
	memcpy(b->store, base->store, sizeof(b->store));
	memcpy(b->made, base->made, sizeof(b->made));
out:
	free(opts);
	return ret;
}

/* A base without io_done passes its results through (backend.h). */
int ublk_policy_io_done(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io,
			int res)
{
	struct ublk_backend *base = b->priv;

	return base->ops->io_done ? base->ops->io_done(base, q, io, res) : res;
}

int ublk_policy_queue_init(struct ublk_backend *b, struct ublk_queue *q)
{
	struct ublk_backend *base = b->priv;

	return base->ops->queue_init ? base->ops->queue_init(base, q) : 0;
}

void ublk_policy_queue_exit(struct ublk_backend *b, struct ublk_queue *q)
{
	struct ublk_backend *base = b->priv;

	if (base->ops->queue_exit)
		base->ops->queue_exit(base, q);
}

void ublk_policy_tick(struct ublk_backend *b, struct ublk_queue *q)
{
	struct ublk_backend *base = b->priv;

	if (base->ops->tick)
		base->ops->tick(base, q);
}
