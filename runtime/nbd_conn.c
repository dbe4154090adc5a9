/* SPDX-License-Identifier: MIT */
/*
 * nbd_conn.c - one queue's connection to an NBD server.
 *
 * A link is one libnbd handle with its two polls on the queue's ring
 * (ublk_poll): libnbd reads and writes its socket only inside
 * nbd_aio_notify_read/write, which we call when the ring says the socket
 * is ready, so nothing is missed between polls and no thread is needed.
 * Each command's completion callback hands its result to the io with
 * ublk_io_external_done (queued, delivered after we return).  A lost
 * connection goes to nbd_reconnect.c.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "log.h"
#include "nbd_conn_private.h"

/* io->scratch while a command is out: its conn, | CALLED once its
 * completion callback ran (libnbd may run it inside the aio call). */
#define CALLED 1u

static struct nbd_conn *conn_of(const struct ublk_io *io)
{
	return (struct nbd_conn *)(uintptr_t)(io->scratch & ~(uint64_t)CALLED);
}

struct nbd_handle *nbd_conn_connect(const char *uri, char *err, size_t len, int *errnum)
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

static bool connection_error(int err)
{
	return err == ENOTCONN || err == ESHUTDOWN || err == ECONNRESET || err == EPIPE ||
	       err == ECONNABORTED;
}

/* Fails (EIO) only if there is no room, which one command per tag at a
 * time rules out. */
void nbd_conn_wait(struct nbd_conn *c, struct ublk_io *io)
{
	if (c->nr_waiting == c->depth) {
		ublk_io_external_done(c->q, io, -EIO);
		return;
	}
	c->waiting[c->nr_waiting++] = io;
}

/* Runs inside libnbd, which holds the handle: no libnbd calls here. */
static int completed(void *user_data, int *error)
{
	struct ublk_io *io = user_data;
	struct nbd_conn *c = conn_of(io);
	int err = *error;

	io->scratch |= CALLED;
	if (connection_error(err)) {
		if (c->reconnect && !c->given_up) {
			nbd_conn_wait(c, io);
			return 1;
		}
		err = EIO;
	}
	/* otherwise the server's errno as it sent it */
	ublk_io_external_done(c->q, io, err ? -err : (int)io->len);
	return 1; /* retired: nobody asks libnbd about it later */
}

static void link_ready(struct nbd_link *l, int revents, unsigned want);

static void link_in(struct ublk_queue *q, struct ublk_poll *p, int revents)
{
	(void)q;
	link_ready((struct nbd_link *)((char *)p - offsetof(struct nbd_link, in)), revents,
		   LIBNBD_AIO_DIRECTION_READ);
}

static void link_out(struct ublk_queue *q, struct ublk_poll *p, int revents)
{
	(void)q;
	link_ready((struct nbd_link *)((char *)p - offsetof(struct nbd_link, out)), revents,
		   LIBNBD_AIO_DIRECTION_WRITE);
}

void nbd_link_init(struct nbd_link *l)
{
	l->in.ready = link_in;
	l->out.ready = link_out;
	nbd_link_arm(l);
}

void nbd_link_arm(struct nbd_link *l)
{
	unsigned dir;

	if (l != l->c->link)
		return;
	if (nbd_aio_is_dead(l->h) == 1 || nbd_aio_is_closed(l->h) == 1) {
		nbd_conn_lose(l->c);
		return;
	}
	dir = (unsigned)nbd_aio_get_direction(l->h);
	if ((dir & LIBNBD_AIO_DIRECTION_READ) && !l->in.armed)
		ublk_poll_arm(l->c->q, &l->in, POLLIN);
	if ((dir & LIBNBD_AIO_DIRECTION_WRITE) && !l->out.armed)
		ublk_poll_arm(l->c->q, &l->out, POLLOUT);
}

static void free_closed(struct nbd_conn *c, struct nbd_link *l)
{
	struct nbd_link **pp = &c->closed;

	if (l->in.armed || l->out.armed)
		return;
	while (*pp && *pp != l)
		pp = &(*pp)->next;
	if (*pp)
		*pp = l->next;
	free(l);
}

static void link_ready(struct nbd_link *l, int revents, unsigned want)
{
	unsigned dir;
	int r = 0;

	if (!l->h) { /* closed since it was armed */
		free_closed(l->c, l);
		return;
	}
	dir = (unsigned)nbd_aio_get_direction(l->h);
	if (revents >= 0 && (dir & want))
		r = want == LIBNBD_AIO_DIRECTION_READ ? nbd_aio_notify_read(l->h)
						      : nbd_aio_notify_write(l->h);
	else if (revents >= 0 && (revents & (POLLHUP | POLLERR)))
		/* a hung-up socket libnbd does not read now would fire forever:
		 * let it read, so that it sees the end */
		r = nbd_aio_notify_read(l->h);
	if (r == -1)
		nbd_conn_lose(l->c);
	else if (l->c->nr_waiting) /* ESHUTDOWN from a server still up */
		nbd_conn_resend(l->c);
	else
		nbd_link_arm(l);
}

void nbd_conn_send(struct nbd_conn *c, struct ublk_io *io)
{
	struct nbd_handle *h = c->link->h;
	nbd_completion_callback cb = { .callback = completed, .user_data = io };
	uint32_t fua = io->flags & UBLK_IO_F_FUA ? LIBNBD_CMD_FLAG_FUA : 0;
	int64_t cookie;
	int err;

	io->scratch = (uint64_t)(uintptr_t)c;
	switch (io->op) {
	case UBLK_IO_OP_READ:
		cookie = nbd_aio_pread(h, io->buf, io->len, io->offset, cb, 0);
		break;
	case UBLK_IO_OP_WRITE:
		cookie = nbd_aio_pwrite(h, io->buf, io->len, io->offset, cb, fua);
		break;
	case UBLK_IO_OP_FLUSH:
		cookie = nbd_aio_flush(h, cb, 0);
		break;
	case UBLK_IO_OP_DISCARD:
		cookie = nbd_aio_trim(h, io->len, io->offset, cb, 0);
		break;
	case UBLK_IO_OP_WRITE_ZEROES:
		cookie = nbd_aio_zero(h, io->len, io->offset, cb,
				      io->flags & UBLK_IO_F_NOUNMAP ? LIBNBD_CMD_FLAG_NO_HOLE : 0);
		break;
	default:
		ublk_io_external_done(c->q, io, -EOPNOTSUPP);
		return;
	}
	if (cookie != -1 || (io->scratch & CALLED))
		return;
	/* refused before it was sent: strict mode, or a dead handle */
	err = nbd_get_errno();
	if (nbd_aio_is_dead(h) != 1 && nbd_aio_is_closed(h) != 1) {
		ublk_io_external_done(c->q, io, -(err ? err : EIO));
		return;
	}
	nbd_conn_lose(c);
	if (c->given_up)
		ublk_io_external_done(c->q, io, -EIO);
	else
		nbd_conn_wait(c, io);
}

void nbd_conn_submit(struct nbd_conn *c, struct ublk_io *io)
{
	io->scratch = (uint64_t)(uintptr_t)c;
	ublk_io_external(c->q, io);
	if (c->given_up) {
		ublk_io_external_done(c->q, io, -EIO);
		return;
	}
	if (!c->link) {
		nbd_conn_wait(c, io);
		return;
	}
	nbd_conn_send(c, io);
	if (c->link)
		nbd_link_arm(c->link); /* the command may wait for the socket to take it */
}

int nbd_conn_open(struct nbd_conn **cp, struct ublk_queue *q, const char *uri,
		  unsigned reconnect)
{
	struct nbd_conn *c = calloc(1, sizeof(*c));
	char err[160];
	int errnum;

	if (!c)
		return -ENOMEM;
	c->q = q;
	c->uri = uri;
	c->reconnect = reconnect;
	c->depth = ublk_queue_depth(q);
	c->waiting = calloc(c->depth, sizeof(*c->waiting));
	c->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	c->link = calloc(1, sizeof(*c->link));
	if (!c->waiting || c->timer_fd < 0 || !c->link) {
		errnum = c->timer_fd < 0 ? errno : ENOMEM;
		nbd_conn_close(c);
		return -errnum;
	}
	c->timer.fd = c->timer_fd;
	c->timer.ready = nbd_reconnect_ready;
	c->link->h = nbd_conn_connect(uri, err, sizeof(err), &errnum);
	if (!c->link->h) {
		ublk_err("dev %u queue %u: %s", ublk_queue_dev_id(q), ublk_queue_id(q), err);
		nbd_conn_close(c);
		return -errnum;
	}
	c->link->c = c;
	c->link->in.fd = c->link->out.fd = nbd_aio_get_fd(c->link->h);
	nbd_link_init(c->link);
	*cp = c;
	return 0;
}

void nbd_conn_close(struct nbd_conn *c)
{
	struct nbd_link *l, *next;

	if (c->link) {
		if (c->link->h)
			nbd_close(c->link->h);
		free(c->link);
	}
	/* their polls go with the ring, ready() never called */
	for (l = c->closed; l; l = next) {
		next = l->next;
		free(l);
	}
	if (c->timer_fd >= 0)
		close(c->timer_fd);
	free(c->waiting);
	free(c);
}
