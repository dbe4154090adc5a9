/* SPDX-License-Identifier: MIT */
/*
 * backend_nbd.c - an NBD server behind the disk, through libnbd.
 *
 * One libnbd handle (one connection) per queue, made on the queue's thread
 * and driven by its io_uring: the handle's socket is polled there
 * (ublk_poll), libnbd is told when it is ready, and each command's
 * completion callback hands its result to the io (ublk_io_external_done).
 * So a queue keeps `depth` commands in flight with no threads of its own.
 * create() connects once, to learn the size and what the server can do,
 * and to refuse an unreachable server before any device exists.
 *
 * Options: uri (nbd://host[:port]/export, nbd+unix:///export?socket=PATH);
 * connections (most connections, one per queue; default one per queue).
 * A server without multi-conn gets one connection, so one queue: a flush
 * on one connection need not cover writes made on another.  Once a
 * connection is lost its queue fails every request with EIO, promptly:
 * the device stays removable.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

#include "backend.h"
#include "log.h"

struct nbd_conn {
	struct nbd_handle *h;
	struct ublk_queue *q;
	struct ublk_poll in, out;
	const char *uri;
	bool lost;		/* said so once; every request now fails */
};

struct nbd_dev {
	char *uri;
	struct nbd_conn **conns;	/* by queue id */
};

/* io->scratch while a command is out: its connection, | CALLED once its
 * completion callback ran (libnbd may run it inside the aio call). */
#define CALLED 1u

static struct nbd_handle *nbd_open(const char *uri, char *err, size_t len, int *errnum)
{
	struct nbd_handle *h = nbd_create();

	if (!h) {
		*errnum = nbd_get_errno() ? nbd_get_errno() : ENOMEM;
		snprintf(err, len, "%s", nbd_get_error());
		return NULL;
	}
	if (nbd_connect_uri(h, uri) == -1) {
		const char *why = nbd_get_error();

		*errnum = nbd_get_errno() ? nbd_get_errno() : EIO;
		/* libnbd names the call first ("nbd_connect_uri: connect: ...") */
		if (!strncmp(why, "nbd_connect_uri: ", 17))
			why += 17;
		snprintf(err, len, "cannot connect to '%s': %s", uri, why);
		nbd_close(h);
		return NULL;
	}
	return h;
}

/* What the server can do, and the size; refuses what cannot work. */
static int probe(struct ublk_backend *b, struct nbd_handle *h, const char *uri,
		 const struct ublk_backend_conf *conf)
{
	int64_t size = nbd_get_size(h), min = nbd_get_block_size(h, LIBNBD_SIZE_MINIMUM);
	const char *conns = ublk_conf_get(conf, "connections");

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
	if (conf->size > (uint64_t)size) {
		snprintf(b->err, sizeof(b->err), "'%s' holds %lld bytes, less than size %llu",
			 uri, (long long)size, (unsigned long long)conf->size);
		return -EINVAL;
	}
	b->size = conf->size ? conf->size : (uint64_t)size - (uint64_t)size % conf->block_size;
	b->caps = (nbd_can_flush(h) == 1 ? UBLK_CAN_FLUSH : 0) |
		  (nbd_can_fua(h) == 1 ? UBLK_CAN_FUA : 0) |
		  (nbd_can_trim(h) == 1 ? UBLK_CAN_DISCARD : 0) |
		  (nbd_can_zero(h) == 1 ? UBLK_CAN_WRITE_ZEROES : 0);
	if (conns)
		b->max_queues = (unsigned)strtoul(conns, NULL, 10);
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
	const char *uri = ublk_conf_get(conf, "uri");
	struct nbd_handle *h;
	struct nbd_dev *d;
	int ret = -ENOMEM;

	if (!uri || !*uri) {
		snprintf(b->err, sizeof(b->err), "the nbd backend needs a 'uri' "
			 "(nbd://host:port/export or nbd+unix:///export?socket=PATH)");
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	b->priv = d;
	d->uri = strdup(uri);
	d->conns = calloc(UBLK_MAX_NR_QUEUES, sizeof(*d->conns));
	if (!d->uri || !d->conns)
		goto fail;
	h = nbd_open(uri, b->err, sizeof(b->err), &ret);
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

/* ---- one queue's connection ---- */

static void conn_lost(struct nbd_conn *c)
{
	if (c->lost)
		return;
	c->lost = true;
	ublk_err("dev %u queue %u: lost the NBD connection to '%s': %s; requests fail "
		 "with EIO", ublk_queue_dev_id(c->q), ublk_queue_id(c->q), c->uri,
		 nbd_get_error() ? nbd_get_error() : "the server closed it");
}

/* Polls the socket the way libnbd wants to move next.  libnbd reads or
 * writes only when told (inside nbd_aio_notify_*), so nothing is missed
 * between polls. */
static void conn_arm(struct nbd_conn *c)
{
	unsigned dir;

	if (c->lost)
		return;
	if (nbd_aio_is_dead(c->h) == 1 || nbd_aio_is_closed(c->h) == 1) {
		conn_lost(c);
		return;
	}
	dir = (unsigned)nbd_aio_get_direction(c->h);
	if ((dir & LIBNBD_AIO_DIRECTION_READ) && !c->in.armed)
		ublk_poll_arm(c->q, &c->in, POLLIN);
	if ((dir & LIBNBD_AIO_DIRECTION_WRITE) && !c->out.armed)
		ublk_poll_arm(c->q, &c->out, POLLOUT);
}

static void conn_step(struct nbd_conn *c, int revents, unsigned want)
{
	unsigned dir = (unsigned)nbd_aio_get_direction(c->h);
	int r = 0;

	if (c->lost)
		return;
	if (revents < 0) /* the poll itself failed: ask again */
		goto out;
	if (dir & want) {
		r = want == LIBNBD_AIO_DIRECTION_READ ? nbd_aio_notify_read(c->h)
						      : nbd_aio_notify_write(c->h);
	} else if (revents & (POLLHUP | POLLERR)) {
		/* a hung-up socket libnbd does not read now would fire forever:
		 * let it read, so that it sees the end */
		r = nbd_aio_notify_read(c->h);
	}
	if (r == -1)
		conn_lost(c);
out:
	conn_arm(c);
}

static void conn_in(struct ublk_queue *q, struct ublk_poll *p, int revents)
{
	(void)q;
	conn_step((struct nbd_conn *)((char *)p - offsetof(struct nbd_conn, in)), revents,
		  LIBNBD_AIO_DIRECTION_READ);
}

static void conn_out(struct ublk_queue *q, struct ublk_poll *p, int revents)
{
	(void)q;
	conn_step((struct nbd_conn *)((char *)p - offsetof(struct nbd_conn, out)), revents,
		  LIBNBD_AIO_DIRECTION_WRITE);
}

static int nbd_queue_init(struct ublk_backend *b, struct ublk_queue *q)
{
	struct nbd_dev *d = b->priv;
	struct nbd_conn *c = calloc(1, sizeof(*c));
	char err[160];
	int ret;

	if (!c)
		return -ENOMEM;
	c->h = nbd_open(d->uri, err, sizeof(err), &ret);
	if (!c->h) {
		ublk_err("dev %u queue %u: %s", ublk_queue_dev_id(q), ublk_queue_id(q), err);
		free(c);
		return -ret;
	}
	c->q = q;
	c->uri = d->uri;
	c->in.fd = c->out.fd = nbd_aio_get_fd(c->h);
	c->in.ready = conn_in;
	c->out.ready = conn_out;
	d->conns[ublk_queue_id(q)] = c;
	conn_arm(c);
	return 0;
}

static void nbd_queue_exit(struct ublk_backend *b, struct ublk_queue *q)
{
	struct nbd_dev *d = b->priv;
	struct nbd_conn *c = d->conns[ublk_queue_id(q)];

	if (!c)
		return;
	/* nothing is in flight (the queue waited); polls go with the ring */
	nbd_close(c->h);
	d->conns[ublk_queue_id(q)] = NULL;
	free(c);
}

/* ---- requests ---- */

/* Runs inside libnbd, which holds the handle: no libnbd calls here. */
static int nbd_completed(void *user_data, int *error)
{
	struct ublk_io *io = user_data;
	struct nbd_conn *c = (struct nbd_conn *)(uintptr_t)(io->scratch & ~(uint64_t)CALLED);
	int err = *error;

	/* the server's errno as it sent it; a connection gone is EIO */
	if (err == ENOTCONN || err == ESHUTDOWN || err == ECONNRESET || err == EPIPE)
		err = EIO;
	io->scratch |= CALLED;
	ublk_io_external_done(c->q, io, err ? -err : (int)io->len);
	return 1; /* retired: nobody asks libnbd about it later */
}

static int nbd_handle_io(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io)
{
	struct nbd_dev *d = b->priv;
	struct nbd_conn *c = d->conns[ublk_queue_id(q)];
	nbd_completion_callback cb = { .callback = nbd_completed, .user_data = io };
	uint32_t fua = io->flags & UBLK_IO_F_FUA ? LIBNBD_CMD_FLAG_FUA : 0;
	int64_t cookie;

	if (!c || c->lost)
		return -EIO;
	io->scratch = (uint64_t)(uintptr_t)c;
	ublk_io_external(q, io);
	switch (io->op) {
	case UBLK_IO_OP_READ:
		cookie = nbd_aio_pread(c->h, io->buf, io->len, io->offset, cb, 0);
		break;
	case UBLK_IO_OP_WRITE:
		cookie = nbd_aio_pwrite(c->h, io->buf, io->len, io->offset, cb, fua);
		break;
	case UBLK_IO_OP_FLUSH:
		cookie = nbd_aio_flush(c->h, cb, 0);
		break;
	case UBLK_IO_OP_DISCARD:
		cookie = nbd_aio_trim(c->h, io->len, io->offset, cb, 0);
		break;
	case UBLK_IO_OP_WRITE_ZEROES:
		cookie = nbd_aio_zero(c->h, io->len, io->offset, cb,
				      io->flags & UBLK_IO_F_NOUNMAP ? LIBNBD_CMD_FLAG_NO_HOLE : 0);
		break;
	default:
		ublk_io_external_done(q, io, -EOPNOTSUPP);
		return UBLK_IO_QUEUED;
	}
	if (cookie == -1 && !(io->scratch & CALLED)) {
		int err = nbd_get_errno();

		/* refused before it was sent: a dead handle, or strict mode */
		if (nbd_aio_is_dead(c->h) == 1 || nbd_aio_is_closed(c->h) == 1) {
			conn_lost(c);
			err = EIO;
		}
		ublk_io_external_done(q, io, -(err ? err : EIO));
	}
	conn_arm(c); /* the command may wait for the socket to take it */
	return UBLK_IO_QUEUED;
}

static int nbd_io_done(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io,
		       int res)
{
	(void)b;
	(void)q;
	(void)io;
	return res;
}

const struct ublk_backend_ops ublk_backend_nbd = {
	.name = "nbd",
	.create = nbd_backend_create,
	.destroy = nbd_destroy,
	.queue_init = nbd_queue_init,
	.queue_exit = nbd_queue_exit,
	.handle_io = nbd_handle_io,
	.io_done = nbd_io_done,
};
