/* SPDX-License-Identifier: MIT */
/*
 * backend_lua.c - a backend whose handlers are Lua functions: the ops
 * table, and the device-wide part (what ublk.backend{} packed, and the C
 * backends its handlers delegate to).  Per queue: lua_queue.c; per
 * request: lua_call.c; the helpers' entry points: lua_ffi.c.
 *
 * Options (from LuaBackend:core_spec in lua/ublk/backend.lua):
 *   chunk          the backend, packed by lua/ublk/transfer.lua
 *   path, cpath    package.path and package.cpath for the queue states
 *   async          "1": handlers run as coroutines and may wait
 *   flush, fua, discard, write_zeroes   "1": advertise them
 *   timeout_ms     a request's time budget (default UBLK_REQUEST_TIMEOUT_S)
 *   delegates      how many C delegates; delegate N's own options are
 *                  "delegate.N.<key>", with .backend its name; their
 *                  queue_init and queue_exit run with ours (lua_queue.c)
 *   record         ublk.record{ base = this }: the log every request that
 *                  changes the disk goes to before its handler sees it
 *                  (runtime/backends/record_writer.c); with "recover",
 *                  the dead server's log, continued
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua_bridge.h"

static void lua_destroy(struct ublk_backend *b)
{
	struct lua_backend *lb = b->priv;

	for (unsigned i = 0; i < lb->nr_inner; i++)
		lb->inner[i].ops->destroy(&lb->inner[i]);
	ublk_record_log_close(&lb->log);
	free(lb->inner);
	free(lb->chunk);
	free(lb->path);
	free(lb->cpath);
	free(lb);
}

static char *dup_opt(const struct ublk_backend_conf *conf, const char *key)
{
	const char *v = ublk_conf_get(conf, key);

	return strdup(v ? v : "");
}

/* Delegate i's options: "delegate.i.*" with the prefix taken off. */
static const char **delegate_opts(const struct ublk_backend_conf *conf, unsigned i)
{
	char prefix[32];
	size_t n = 0, len = (size_t)snprintf(prefix, sizeof(prefix), "delegate.%u.", i);
	const char **opts;

	for (const char *const *o = conf->opts; o[0] && o[1]; o += 2)
		n++;
	opts = calloc(2 * n + 1, sizeof(*opts));
	if (!opts)
		return NULL;
	n = 0;
	for (const char *const *o = conf->opts; o[0] && o[1]; o += 2)
		if (!strncmp(o[0], prefix, len)) {
			opts[n++] = o[0] + len;
			opts[n++] = o[1];
		}
	return opts;
}

static int create_delegate(struct ublk_backend *b, const struct ublk_backend_conf *conf,
			   unsigned i)
{
	struct lua_backend *lb = b->priv;
	struct ublk_backend *in = &lb->inner[i];
	struct ublk_backend_conf c = { .block_size = conf->block_size };
	const struct ublk_backend_ops *ops;
	const char *name, *size;
	int ret;

	c.opts = delegate_opts(conf, i);
	if (!c.opts)
		return -ENOMEM;
	name = ublk_conf_get(&c, "backend");
	ops = name ? ublk_backend_find(name) : NULL;
	/* a delegate with per-queue state (nbd's connections) gets its
	 * queue_init/queue_exit from ours: lua_queue.c */
	if (!ops || ops == &ublk_backend_lua) {
		snprintf(b->err, sizeof(b->err), "cannot delegate to backend '%s'",
			 name ? name : "?");
		ret = -EINVAL;
		goto out;
	}
	size = ublk_conf_get(&c, "size");
	c.size = size ? strtoull(size, NULL, 10) : 0;
	c.read_only = conf->read_only || ublk_conf_flag(&c, "read_only");
	in->ops = ops;
	ret = ops->create(in, &c);
	if (ret < 0)
		snprintf(b->err, sizeof(b->err), "delegate %.16s: %.120s", ops->name,
			 in->err[0] ? in->err : strerror(-ret));
	else
		lb->nr_inner++;
	/* the device has no more queues than its most limited delegate */
	if (ret >= 0 && in->max_queues && (!b->max_queues || in->max_queues < b->max_queues))
		b->max_queues = in->max_queues;
	if (ret >= 0 && in->note[0] && !b->note[0])
		snprintf(b->note, sizeof(b->note), "%.8s: %.80s", ops->name, in->note);
out:
	free((void *)c.opts);
	return ret;
}

static int lua_create(struct ublk_backend *b, const struct ublk_backend_conf *conf)
{
	const char *nr = ublk_conf_get(conf, "delegates"), *timeout, *copy, *record;
	unsigned nr_inner = nr ? (unsigned)strtoul(nr, NULL, 10) : 0;
	struct lua_backend *lb;
	int ret = -ENOMEM;

	/* size 0: the smallest of the delegates' (ublk.backend allows it
	 * only with a delegate that sizes itself: a file's length, an export's) */
	if (!ublk_conf_get(conf, "chunk") || (!conf->size && !nr_inner)) {
		snprintf(b->err, sizeof(b->err), "a Lua backend needs its chunk and a size");
		return -EINVAL;
	}
	lb = calloc(1, sizeof(*lb));
	if (!lb)
		return -ENOMEM;
	lb->log.fd = -1;
	b->priv = lb;
	lb->async = ublk_conf_flag(conf, "async");
	lb->chunk = dup_opt(conf, "chunk");
	lb->path = dup_opt(conf, "path");
	lb->cpath = dup_opt(conf, "cpath");
	lb->inner = calloc(nr_inner ? nr_inner : 1, sizeof(*lb->inner));
	if (!lb->chunk || !lb->path || !lb->cpath || !lb->inner)
		goto fail;
	for (unsigned i = 0; i < nr_inner; i++) {
		ret = create_delegate(b, conf, i);
		if (ret < 0)
			goto fail;
	}
	b->size = conf->size;
	for (unsigned i = 0; !conf->size && i < lb->nr_inner; i++)
		if (lb->inner[i].size && (!b->size || lb->inner[i].size < b->size))
			b->size = lb->inner[i].size - lb->inner[i].size % conf->block_size;
	if (!b->size) {
		snprintf(b->err, sizeof(b->err), "a Lua backend without a size takes its "
			 "delegates' smallest, and none of its %u has one", lb->nr_inner);
		ret = -EINVAL;
		goto fail;
	}
	timeout = ublk_conf_get(conf, "timeout_ms");
	lb->budget_ms = timeout ? (unsigned)strtoul(timeout, NULL, 10)
				: UBLK_REQUEST_TIMEOUT_S * 1000;
	b->budget_ms = lb->budget_ms;
	lua_interrupt_install();
	/* user copy: req:copy moves data straight between the request and
	 * the backend's memory (zero copy for large requests where the kernel
	 * has auto_reg); req.buf still works, copied at need.  The script's
	 * copy (ublk.backend checked it) narrows that: "buffer" neither,
	 * "inline" user copy only, "auto_reg" both or a refusal. */
	copy = ublk_conf_get(conf, "copy");
	b->caps = UBLK_CAN_INTERRUPT;
	if (!copy || strcmp(copy, "buffer"))
		b->caps |= UBLK_CAN_USER_COPY;
	if (!copy || !strcmp(copy, "auto_reg"))
		b->caps |= UBLK_CAN_ZERO_COPY;
	if (copy && !strcmp(copy, "auto_reg"))
		b->zc_only = UBLK_ZC_AUTO_REG;
	b->caps |= (ublk_conf_flag(conf, "flush") ? UBLK_CAN_FLUSH : 0) |
		  (ublk_conf_flag(conf, "fua") ? UBLK_CAN_FUA : 0) |
		  (ublk_conf_flag(conf, "discard") ? UBLK_CAN_DISCARD : 0) |
		  (ublk_conf_flag(conf, "write_zeroes") ? UBLK_CAN_WRITE_ZEROES : 0);
	record = ublk_conf_get(conf, "record");
	if (record) {
		ret = ublk_record_log_open(&lb->log, record, ublk_conf_flag(conf, "recover"),
					   conf->block_size, b->size, b);
		if (ret < 0)
			goto fail;
		/* as the recorder policy advertises: what the handlers take
		 * is kept for lua_handle_io */
		lb->caps = b->caps;
		b->caps = ublk_record_caps(b->caps);
		b->zc_only = UBLK_ZC_NONE;
	}
	return 0;
fail:
	lua_destroy(b);
	return ret;
}

static int lua_handle_io(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io)
{
	struct lua_backend *lb = b->priv;

	if (lb->log.fd >= 0) { /* recorded: logged first, as the recorder does */
		int ret = ublk_record_log_io(&lb->log, q, io, lb->caps);

		if (ret != 0) /* failed, or a FLUSH no handler takes: done */
			return ret < 0 ? ret : 0;
	}
	return lua_call_handler(ublk_queue_priv(q), io);
}

static int lua_io_done(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io,
		       int res)
{
	(void)b;
	return lua_call_done(ublk_queue_priv(q), io, res);
}

/* A Lua backend keeps its data in its C delegates, or in memory of its
 * own (ublk.shared, Lua tables) that no one can grow from here: it serves
 * a new size when it has delegates and every one of them does (each holds
 * the whole device, as at create).  Its handlers see the new size in the
 * requests the kernel sends; one that checks against a size it was made
 * with keeps that size.  A delegate that failed leaves those before it
 * resized: grown, which is harmless, or shrunk, which only happens after
 * the kernel has stopped sending past the new end. */
static int lua_resize(struct ublk_backend *b, uint64_t size)
{
	struct lua_backend *lb = b->priv;
	int ret;

	if (!lb->nr_inner) {
		snprintf(b->err, sizeof(b->err), "a Lua backend without C delegates keeps its "
			 "data itself, which cannot be resized from outside it");
		return -ENOTSUP;
	}
	for (unsigned i = 0; i < lb->nr_inner; i++)
		if (!lb->inner[i].ops->resize) {
			snprintf(b->err, sizeof(b->err), "its delegate %u (%s) cannot be resized",
				 i + 1, lb->inner[i].ops->name);
			return -ENOTSUP;
		}
	if (lb->log.fd >= 0) {
		snprintf(b->err, sizeof(b->err), "it is recorded, and a recording is of one size");
		return -ENOTSUP;
	}
	for (unsigned i = 0; i < lb->nr_inner; i++) {
		lb->inner[i].err[0] = '\0';
		ret = lb->inner[i].ops->resize(&lb->inner[i], size);
		if (ret < 0) {
			snprintf(b->err, sizeof(b->err), "delegate %u (%s): %.100s", i + 1,
				 lb->inner[i].ops->name,
				 lb->inner[i].err[0] ? lb->inner[i].err : strerror(-ret));
			return ret;
		}
		lb->inner[i].size = size;
	}
	return 0;
}

/* Ours, then the C delegates' (an nbd delegate times its requests out). */
static void lua_tick(struct ublk_backend *b, struct ublk_queue *q)
{
	struct lua_backend *lb = b->priv;

	lua_call_expire(ublk_queue_priv(q));
	for (unsigned i = 0; i < lb->nr_inner; i++)
		if (lb->inner[i].ops->tick)
			lb->inner[i].ops->tick(&lb->inner[i], q);
}

const struct ublk_backend_ops ublk_backend_lua = {
	.name = "lua",
	.create = lua_create,
	.destroy = lua_destroy,
	.queue_init = lua_queue_init,
	.queue_exit = lua_queue_exit,
	.handle_io = lua_handle_io,
	.io_done = lua_io_done,
	.tick = lua_tick,
	.resize = lua_resize,
};
