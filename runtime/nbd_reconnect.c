/* SPDX-License-Identifier: MIT */
/*
 * nbd_reconnect.c - a queue's NBD connection that is lost (nbd_conn.c
 * finds out: a dead handle, a failed notify).
 *
 * The link is closed at once: libnbd has failed its commands by then.
 * Without `reconnect` they, and every later request, fail with EIO.  With
 * it, they wait (at most one per tag) while a timer (a timerfd, polled on
 * the queue's ring) tries to connect again, 0.1 s after the loss and then
 * doubling up to 2 s, `reconnect` times; the new link sends them again.
 * When the tries run out they fail with EIO, and so does all that follows.
 * A closed link stays allocated until its polls have fired (or the ring
 * goes), since they point at it.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "log.h"
#include "nbd_conn_private.h"

void nbd_conn_give_up(struct nbd_conn *c)
{
	c->given_up = true;
	while (c->nr_waiting)
		ublk_io_external_done(c->q, c->waiting[--c->nr_waiting], -EIO);
}

static void arm_timer(struct nbd_conn *c)
{
	struct itimerspec t = { .it_value = { .tv_sec = c->delay_ms / 1000,
					      .tv_nsec = (long)(c->delay_ms % 1000) * 1000000 } };

	if (timerfd_settime(c->timer_fd, 0, &t, NULL) < 0) {
		ublk_err("queue %u: NBD reconnect timer: %s", ublk_queue_id(c->q), strerror(errno));
		nbd_conn_give_up(c);
		return;
	}
	if (!c->timer.armed)
		ublk_poll_arm(c->q, &c->timer, POLLIN);
}

/* libnbd has failed what the link had in flight, into `waiting` or EIO. */
void nbd_conn_lose(struct nbd_conn *c)
{
	struct nbd_link *l = c->link;
	const char *why = nbd_get_error();

	if (!l)
		return;
	c->link = NULL;
	ublk_err("dev %u queue %u: lost the NBD connection to '%s': %s; %s",
		 ublk_queue_dev_id(c->q), ublk_queue_id(c->q), c->uri,
		 why ? why : "the server closed it",
		 c->reconnect ? "reconnecting" : "requests fail with EIO");
	nbd_close(l->h);
	l->h = NULL;
	if (l->in.armed || l->out.armed) {
		l->next = c->closed;
		c->closed = l;
	} else {
		free(l);
	}
	if (!c->reconnect) {
		nbd_conn_give_up(c);
		return;
	}
	c->tries = c->reconnect;
	c->delay_ms = 100;
	arm_timer(c);
}

static void try_connect(struct nbd_conn *c)
{
	struct nbd_link *l;
	char err[160];
	int errnum;
	struct nbd_handle *h = nbd_conn_connect(c->uri, err, sizeof(err), &errnum);

	if (!h || !(l = calloc(1, sizeof(*l)))) {
		if (h)
			nbd_close(h);
		if (--c->tries == 0) {
			ublk_err("dev %u queue %u: %s; giving up, requests fail with EIO",
				 ublk_queue_dev_id(c->q), ublk_queue_id(c->q), h ? "out of memory" : err);
			nbd_conn_give_up(c);
			return;
		}
		c->delay_ms = c->delay_ms * 2 > 2000 ? 2000 : c->delay_ms * 2;
		arm_timer(c);
		return;
	}
	l->h = h;
	l->c = c;
	l->in.fd = l->out.fd = nbd_aio_get_fd(h);
	c->link = l;
	ublk_warn("dev %u queue %u: reconnected to '%s'; sending %u waiting requests again",
		  ublk_queue_dev_id(c->q), ublk_queue_id(c->q), c->uri, c->nr_waiting);
}

void nbd_conn_resend(struct nbd_conn *c)
{
	while (c->link && c->nr_waiting)
		nbd_conn_send(c, c->waiting[--c->nr_waiting]);
	if (c->link)
		nbd_link_arm(c->link);
}

void nbd_reconnect_ready(struct ublk_queue *q, struct ublk_poll *p, int revents)
{
	struct nbd_conn *c = (struct nbd_conn *)((char *)p - offsetof(struct nbd_conn, timer));
	uint64_t n;

	(void)q;
	(void)revents;
	if (read(c->timer_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		ublk_dbg("NBD reconnect timer: %s", strerror(errno));
	if (c->link || c->given_up)
		return;
	try_connect(c);
	if (c->link) {
		nbd_link_init(c->link);
		nbd_conn_resend(c);
	}
}
