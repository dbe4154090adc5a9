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
 *
 * Nothing waits on the server unbounded: connecting polls against a
 * deadline (connect_timeout), and each request is timed from its arrival
 * (cmds, by tag) by the backend's tick, which fails what is past `timeout`
 * and drops the link that owes the answers.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "../base/log.h"
#include "nbd_conn_private.h"

/* io->scratch while a command is out: its conn, | CALLED once its
 * completion callback ran (libnbd may run it inside the aio call). */
#define CALLED 1u

static struct nbd_conn *conn_of(const struct ublk_io *io)
{
	return (struct nbd_conn *)(uintptr_t)(io->scratch & ~(uint64_t)CALLED);
}

/* libnbd's reason, without the call's name it starts with */
static const char *reason(void)
{
	const char *why = nbd_get_error();
	const char *colon = why ? strstr(why, ": ") : NULL;

	if (!why)
		return "unknown error";
	return !strncmp(why, "nbd_", 4) && colon ? colon + 2 : why;
}

/* libnbd's own nbd_connect_uri, but each wait bounded by the deadline:
 * the socket polled for what the handshake wants next. */
struct nbd_handle *nbd_conn_connect(const char *uri, unsigned timeout_ms, char *err, size_t len,
				    int *errnum)
{
	struct nbd_handle *h = nbd_create();
	uint64_t deadline = ublk_now_ms() + timeout_ms;

	if (!h) {
		*errnum = nbd_get_errno() ? nbd_get_errno() : ENOMEM;
		snprintf(err, len, "%s", nbd_get_error());
		return NULL;
	}
	if (nbd_aio_connect_uri(h, uri) == -1)
		goto fail;
	while (nbd_aio_is_connecting(h) == 1) {
		unsigned dir = (unsigned)nbd_aio_get_direction(h);
		struct pollfd p = { .fd = nbd_aio_get_fd(h) };
		uint64_t now = ublk_now_ms();
		int n;

		if (now >= deadline) {
			*errnum = ETIMEDOUT;
			snprintf(err, len, "cannot connect to '%s': no answer within %u ms "
				 "(connect_timeout)", uri, timeout_ms);
			nbd_close(h);
			return NULL;
		}
		p.events = (short)((dir & LIBNBD_AIO_DIRECTION_READ ? POLLIN : 0) |
				   (dir & LIBNBD_AIO_DIRECTION_WRITE ? POLLOUT : 0));
		n = poll(&p, 1, (int)(deadline - now));
		if (n < 0 && errno != EINTR) {
			*errnum = errno;
			snprintf(err, len, "cannot connect to '%s': poll: %s", uri, strerror(errno));
			nbd_close(h);
			return NULL;
		}
		if (n <= 0)
			continue;
		if ((p.revents & (POLLIN | POLLHUP | POLLERR)) && (dir & LIBNBD_AIO_DIRECTION_READ)) {
			if (nbd_aio_notify_read(h) == -1)
				goto fail;
		} else if (p.revents & (POLLOUT | POLLHUP | POLLERR)) {
			if (nbd_aio_notify_write(h) == -1)
				goto fail;
		}
	}
	if (nbd_aio_is_ready(h) == 1)
		return h;
fail:
	*errnum = nbd_get_errno() ? nbd_get_errno() : EIO;
	snprintf(err, len, "cannot connect to '%s': %s", uri, reason());
	nbd_close(h);
	return NULL;
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
		nbd_conn_finish(c, io, -EIO);
		return;
	}
	c->cmds[io->tag].waiting = true;
	c->waiting[c->nr_waiting++] = io;
}

void nbd_conn_finish(struct nbd_conn *c, struct ublk_io *io, int res)
{
	if (c->cmds[io->tag].io == io)
		c->cmds[io->tag] = (struct nbd_cmd){ 0 };
	ublk_io_external_done(c->q, io, res);
}

/* Runs inside libnbd, which holds the handle: no libnbd calls here. */
static int completed(void *user_data, int *error)
{
	struct ublk_io *io = user_data;
	struct nbd_conn *c = conn_of(io);
	int err = *error;

	io->scratch |= CALLED;
	/* finished already, or kept for the next link (its own dropped on a
	 * timeout): not this link's now */
	if (c->cmds[io->tag].io != io || c->cmds[io->tag].waiting)
		return 1;
	if (connection_error(err)) {
		if (c->reconnect && !c->given_up) {
			nbd_conn_wait(c, io);
			return 1;
		}
		err = EIO;
	}
	/* otherwise the server's errno as it sent it */
	nbd_conn_finish(c, io, err ? -err : (int)io->len);
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
		nbd_conn_lose(l->c, NULL);
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
		nbd_conn_lose(l->c, NULL);
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
	c->cmds[io->tag].waiting = false;
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
		nbd_conn_finish(c, io, -EOPNOTSUPP);
		return;
	}
	if (cookie != -1 || (io->scratch & CALLED))
		return;
	/* refused before it was sent: strict mode, or a dead handle */
	err = nbd_get_errno();
	if (nbd_aio_is_dead(h) != 1 && nbd_aio_is_closed(h) != 1) {
		nbd_conn_finish(c, io, -(err ? err : EIO));
		return;
	}
	nbd_conn_lose(c, NULL);
	if (c->given_up)
		nbd_conn_finish(c, io, -EIO);
	else
		nbd_conn_wait(c, io);
}

void nbd_conn_submit(struct nbd_conn *c, struct ublk_io *io)
{
	uint64_t now = ublk_now_ms();

	io->scratch = (uint64_t)(uintptr_t)c;
	ublk_io_external(c->q, io);
	c->cmds[io->tag] = (struct nbd_cmd){ .io = io, .since_ms = now };
	if (c->given_up) {
		if (!c->draining && now >= c->retry_ms)
			nbd_conn_retry(c, io);
		else
			nbd_conn_finish(c, io, -EIO);
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

int nbd_conn_open(struct nbd_conn **cp, struct ublk_queue *q, const struct nbd_conn_conf *conf)
{
	struct nbd_conn *c = calloc(1, sizeof(*c));
	char err[200];
	int errnum;

	if (!c)
		return -ENOMEM;
	c->q = q;
	c->uri = conf->uri;
	c->reconnect = conf->reconnect;
	c->connect_timeout_ms = conf->connect_timeout_ms;
	c->timeout_ms = conf->timeout_ms;
	c->depth = ublk_queue_depth(q);
	c->waiting = calloc(c->depth, sizeof(*c->waiting));
	c->cmds = calloc(c->depth, sizeof(*c->cmds));
	c->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	c->link = calloc(1, sizeof(*c->link));
	if (!c->waiting || !c->cmds || c->timer_fd < 0 || !c->link) {
		errnum = c->timer_fd < 0 ? errno : ENOMEM;
		nbd_conn_close(c);
		return -errnum;
	}
	c->timer.fd = c->timer_fd;
	c->timer.ready = nbd_reconnect_ready;
	c->link->h = nbd_conn_connect(c->uri, c->connect_timeout_ms, err, sizeof(err), &errnum);
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
	free(c->cmds);
	free(c);
}

/* Requests on the link past their time (or, draining, a second old) fail
 * with ETIMEDOUT; the link goes, since the answers it still owes could
 * only come late, for requests that are no longer there.  Those younger
 * wait for the next link (with reconnect) or fail with EIO.  libnbd never
 * calls back for a handle it has closed, and completed() ignores what is
 * no longer in cmds, so each request is finished once. */
static void expire_link(struct nbd_conn *c, uint64_t now, uint64_t limit)
{
	char why[96];
	bool late = false;

	for (unsigned t = 0; t < c->depth && !late; t++)
		late = c->cmds[t].io && !c->cmds[t].waiting && now - c->cmds[t].since_ms >= limit;
	if (!late)
		return;
	for (unsigned t = 0; t < c->depth; t++) {
		struct ublk_io *io = c->cmds[t].io;

		if (!io || c->cmds[t].waiting)
			continue;
		io->scratch |= CALLED;
		if (now - c->cmds[t].since_ms >= limit)
			nbd_conn_finish(c, io, -ETIMEDOUT);
		else if (c->reconnect && !c->draining)
			nbd_conn_wait(c, io);
		else
			nbd_conn_finish(c, io, -EIO);
	}
	snprintf(why, sizeof(why), "no answer within %llu ms%s", (unsigned long long)limit,
		 c->draining ? " while the device stops" : " (timeout)");
	nbd_conn_lose(c, why);
}

void nbd_conn_tick(struct nbd_conn *c, bool draining)
{
	uint64_t now = ublk_now_ms();
	/* a stop waits for every request: a second is grace enough for a
	 * server that is answering, and bounds how long the stop (and the
	 * server's exit on SIGTERM) can take */
	uint64_t limit = draining && c->timeout_ms > 1000 ? 1000 : c->timeout_ms;

	if (draining && !c->draining) {
		c->draining = true;
		if (!c->link && !c->given_up) /* no reconnecting under a stop */
			nbd_conn_give_up(c);
	}
	for (unsigned i = 0; i < c->nr_waiting;) {
		struct ublk_io *io = c->waiting[i];

		if (now - c->cmds[io->tag].since_ms >= limit || c->draining) {
			c->waiting[i] = c->waiting[--c->nr_waiting];
			nbd_conn_finish(c, io, -ETIMEDOUT);
		} else {
			i++;
		}
	}
	if (c->link)
		expire_link(c, now, limit);
}
