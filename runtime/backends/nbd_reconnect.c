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
 * When the tries run out they fail with EIO, and so does what follows for
 * a while: the first request after a backoff (1 s, doubling up to 30 s
 * while the server stays away) tries again, so a server that comes back
 * is used again.  A queue draining for a stop neither reconnects nor
 * retries.  A closed link stays allocated until its polls have fired (or
 * the ring goes), since they point at it.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "../base/log.h"
#include "nbd_conn_private.h"

#define BACKOFF_MIN_MS 1000
#define BACKOFF_MAX_MS 30000

void nbd_conn_give_up(struct nbd_conn *c)
{
	c->given_up = true;
	if (c->backoff_ms < BACKOFF_MIN_MS)
		c->backoff_ms = BACKOFF_MIN_MS;
	c->retry_ms = ublk_now_ms() + c->backoff_ms;
	c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
	while (c->nr_waiting)
		nbd_conn_finish(c, c->waiting[--c->nr_waiting], -EIO);
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

/* libnbd has failed what the link had in flight (or, on a timeout,
 * nbd_conn.c has), into `waiting` or EIO. */
void nbd_conn_lose(struct nbd_conn *c, const char *why)
{
	struct nbd_link *l = c->link;
	bool again = c->reconnect && !c->draining;

	if (!l)
		return;
	if (!why)
		why = nbd_get_error();
	c->link = NULL;
	ublk_err("dev %u queue %u: lost the NBD connection to '%s': %s; %s",
		 ublk_queue_dev_id(c->q), ublk_queue_id(c->q), c->uri,
		 why ? why : "the server closed it",
		 again ? "reconnecting" : "requests fail with EIO");
	nbd_close(l->h);
	l->h = NULL;
	if (l->in.armed || l->out.armed) {
		l->next = c->closed;
		c->closed = l;
	} else {
		free(l);
	}
	if (!again) {
		nbd_conn_give_up(c);
		return;
	}
	c->tries = c->reconnect;
	c->delay_ms = 100;
	arm_timer(c);
}

void nbd_conn_retry(struct nbd_conn *c, struct ublk_io *io)
{
	ublk_warn("dev %u queue %u: trying '%s' again", ublk_queue_dev_id(c->q),
		  ublk_queue_id(c->q), c->uri);
	c->given_up = false;
	c->tries = c->reconnect ? c->reconnect : 1;
	c->delay_ms = 1; /* now, from the loop: not inside handle_io */
	nbd_conn_wait(c, io);
	arm_timer(c);
}

static void try_connect(struct nbd_conn *c)
{
	struct nbd_link *l;
	char err[200];
	int errnum;
	struct nbd_handle *h = nbd_conn_connect(c->uri, c->connect_timeout_ms, err, sizeof(err),
						&errnum);

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
	c->backoff_ms = 0;
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
	if (c->draining) {
		nbd_conn_give_up(c);
		return;
	}
	try_connect(c);
	if (c->link) {
		nbd_link_init(c->link);
		nbd_conn_resend(c);
	}
}
