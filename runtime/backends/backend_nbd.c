/* SPDX-License-Identifier: MIT */
/*
 * backend_nbd.c - an NBD server behind the disk, through libnbd.
 *
 * One libnbd handle (one connection) per queue, made on the queue's thread
 * and driven by its io_uring (nbd_conn.c), so a queue keeps `depth`
 * commands in flight with no threads of its own.  create() connects once,
 * to learn the size and what the server can do (only that is advertised),
 * and to refuse an unreachable server before any device exists.
 *
 * Options: uri (nbd://host[:port]/export, nbd+unix:///export?socket=PATH);
 * connections (most connections, one per queue; default one per queue);
 * reconnect (tries after a lost connection, default 0: its queue then
 * fails every request with EIO, promptly, and the device stays
 * removable); connect_timeout_ms (each connect and handshake, default
 * 10 s); timeout_ms (each request, default 30 s: then it fails with
 * ETIMEDOUT and its connection is dropped, nbd_conn.h).  Nothing waits on
 * the server unbounded: not create(), not a request, not a stop.  A
 * server without multi-conn gets one connection, so one queue: a flush on
 * one connection need not cover writes made on another.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../include/backend.h"
#include "nbd_conn.h"

#define CONNECT_TIMEOUT_MS 10000
#define TIMEOUT_MS (UBLK_REQUEST_TIMEOUT_S * 1000)

struct nbd_dev {
	char *uri;
	struct nbd_conn_conf conf;	/* what each queue's connection does */
	struct nbd_conn **conns;	/* by queue id */
	uint64_t export_size;		/* the server's: as far as a resize can grow */
};

/* What the server can do, and the size; refuses what cannot work.
 * b->max_queues holds the connections asked for (0: one a queue). */
static int probe(struct ublk_backend *b, struct nbd_handle *h, const char *uri,
		 const struct ublk_backend_conf *conf)
{
	int64_t size = nbd_get_size(h), min = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);

	if (size < 0) {
		snprintf(b->err, sizeof(b->err), "'%s': %s", uri, nbd_get_error());
		return -EIO;
	}
	if (min > (int64_t)conf->block_size) {
		snprintf(b->err, sizeof(b->err), "'%s' needs %lld-byte blocks, more than "
			 "block_size %u", uri, (long long)min, conf->block_size);
		return -EINVAL;
	}
	if (nbd_is_read_only(h) == 1 && !conf->read_only) {
		snprintf(b->err, sizeof(b->err), "'%s' is read-only: set read_only = true", uri);
		return -EROFS;
	}
	if (ublk_conf_size(b, conf, uri, (uint64_t)size) < 0)
		return -EINVAL;
	((struct nbd_dev *)b->priv)->export_size = (uint64_t)size;
	b->caps = (nbd_can_flush(h) == 1 ? UBLK_CAN_FLUSH : 0) |
		  (nbd_can_fua(h) == 1 ? UBLK_CAN_FUA : 0) |
		  (nbd_can_trim(h) == 1 ? UBLK_CAN_DISCARD : 0) |
		  (nbd_can_zero(h) == 1 ? UBLK_CAN_WRITE_ZEROES : 0);
	if (nbd_can_multi_conn(h) != 1 && b->max_queues != 1) {
		b->max_queues = 1;
		snprintf(b->note, sizeof(b->note), "no multi-conn on the server: one "
			 "connection, one queue");
	}
	return 0;
}

static void nbd_destroy(struct ublk_backend *b)
{
	struct nbd_dev *d = b->priv;

	free(d->conns);
	free(d->uri);
	free(d);
}

static int nbd_backend_create(struct ublk_backend *b, const struct ublk_backend_conf *conf)
{
	struct nbd_conn_conf c = { .connect_timeout_ms = CONNECT_TIMEOUT_MS,
				   .timeout_ms = TIMEOUT_MS };
	struct nbd_handle *h;
	struct nbd_dev *d;
	const char *uri;
	int ret;

	if ((ret = ublk_conf_string(b, conf, "uri", &uri)) < 0 ||
	    (ret = ublk_conf_uint(b, conf, "connections", &b->max_queues)) < 0 ||
	    (ret = ublk_conf_uint(b, conf, "reconnect", &c.reconnect)) < 0 ||
	    (ret = ublk_conf_ms(b, conf, "connect_timeout", &c.connect_timeout_ms)) < 0 ||
	    (ret = ublk_conf_ms(b, conf, "timeout", &c.timeout_ms)) < 0)
		return ret;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	b->priv = d;
	d->conf = c;
	d->uri = strdup(uri);
	d->conns = calloc(UBLK_MAX_NR_QUEUES, sizeof(*d->conns));
	ret = -ENOMEM;
	if (!d->uri || !d->conns)
		goto fail;
	d->conf.uri = d->uri;
	h = nbd_conn_connect(uri, d->conf.connect_timeout_ms, b->err, sizeof(b->err), &ret);
	if (!h) {
		ret = -ret;
		goto fail;
	}
	ret = probe(b, h, uri, conf);
	nbd_close(h);
	if (ret >= 0)
		return 0;
fail:
	nbd_destroy(b);
	b->priv = NULL;
	return ret;
}

/* ---- per queue ---- */

static int nbd_queue_init(struct ublk_backend *b, struct ublk_queue *q)
{
	struct nbd_dev *d = b->priv;

	return nbd_conn_open(&d->conns[ublk_queue_id(q)], q, &d->conf);
}

static void nbd_queue_exit(struct ublk_backend *b, struct ublk_queue *q)
{
	struct nbd_dev *d = b->priv;

	if (d->conns[ublk_queue_id(q)])
		nbd_conn_close(d->conns[ublk_queue_id(q)]);
	d->conns[ublk_queue_id(q)] = NULL;
}

static int nbd_handle_io(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io)
{
	struct nbd_dev *d = b->priv;
	struct nbd_conn *c = d->conns[ublk_queue_id(q)];

	if (!c)
		return -EIO;
	nbd_conn_submit(c, io);
	return UBLK_IO_QUEUED;
}

static void nbd_tick(struct ublk_backend *b, struct ublk_queue *q)
{
	struct nbd_dev *d = b->priv;
	struct nbd_conn *c = d->conns[ublk_queue_id(q)];

	if (c)
		nbd_conn_tick(c, ublk_queue_draining(q));
}

static const struct ublk_backend_opt nbd_opts[] = {
	{ .name = "uri", .kind = UBLK_OPT_URI, .flags = UBLK_OPT_REQUIRED,
	  .values = "nbd://|nbds://|nbd+unix://|nbds+unix://|nbd+vsock://",
	  .help = "the server: nbd://host:port/export or nbd+unix:///export?socket=PATH" },
	{ .name = "connections", .kind = UBLK_OPT_INT, .min = 1, .max = 4096,
	  .def = "one a queue",
	  .help = "the most connections, one a queue (1 without the server's multi-conn)" },
	{ .name = "reconnect", .kind = UBLK_OPT_INT, .min = 0, .max = 1000, .def = "0",
	  .help = "tries to connect again before a lost connection's requests fail" },
	{ .name = "timeout", .kind = UBLK_OPT_SECONDS, .min = 0.001, .max = UBLK_TIMEOUT_MAX_S,
	  .def = UBLK_STR(UBLK_REQUEST_TIMEOUT_S),
	  .help = "seconds a request may wait for its answer" },
	{ .name = "connect_timeout", .kind = UBLK_OPT_SECONDS, .min = 0.001,
	  .max = UBLK_TIMEOUT_MAX_S,
	  .def = "10", .help = "seconds each connect and handshake may take" },
	{ 0 }
};

/* The export is the server's: a device grows only as far as it goes (a
 * device made smaller than its export, or an export grown since, counts
 * from what the server said at connect) */
static int nbd_resize(struct ublk_backend *b, uint64_t size)
{
	struct nbd_dev *d = b->priv;

	if (size > d->export_size) {
		snprintf(b->err, sizeof(b->err), "'%s' holds %llu bytes, less than %llu", d->uri,
			 (unsigned long long)d->export_size, (unsigned long long)size);
		return -EFBIG;
	}
	return 0;
}

const struct ublk_backend_ops ublk_backend_nbd = {
	.name = "nbd",
	.opts = nbd_opts,
	.sizes_itself = true,
	.create = nbd_backend_create,
	.destroy = nbd_destroy,
	.queue_init = nbd_queue_init,
	.queue_exit = nbd_queue_exit,
	.handle_io = nbd_handle_io,
	.tick = nbd_tick,
	.resize = nbd_resize,
};
