/* SPDX-License-Identifier: MIT */
/*
 * nbd_conn.h - one queue's connection to an NBD server (nbd_conn.c), for
 * backend_nbd.c: libnbd driven from the queue's io_uring, and, when asked,
 * reconnecting with bounded retries.
 */
#ifndef UBLK_NBD_CONN_H
#define UBLK_NBD_CONN_H

#include <stdbool.h>
#include <stddef.h>

#include <libnbd.h>

#include "../include/backend.h"

struct nbd_conn;

/* A connected handle, or NULL with a one-line reason in err ("cannot
 * connect to 'URI': ...") and the errno in *errnum.  Connecting and the
 * handshake together take at most timeout_ms (then ETIMEDOUT): a server
 * that accepts and never answers cannot hold the caller. */
struct nbd_handle *nbd_conn_connect(const char *uri, unsigned timeout_ms, char *err, size_t len,
				    int *errnum);

struct nbd_conn_conf {
	const char *uri;
	/* how many times to try again when the connection is lost (0:
	 * never; requests then fail with EIO) */
	unsigned reconnect;
	unsigned connect_timeout_ms;	/* each connect + handshake */
	unsigned timeout_ms;		/* each request, from its arrival */
};

/* On q's thread (queue_init); conf->uri must outlive the connection. */
int nbd_conn_open(struct nbd_conn **cp, struct ublk_queue *q, const struct nbd_conn_conf *conf);
/* queue_exit: nothing may be in flight. */
void nbd_conn_close(struct nbd_conn *c);

/* The backend's tick (about every UBLK_TICK_MS): fails the requests that
 * have waited longer than the timeout with ETIMEDOUT, dropping the
 * connection that holds them (a new one is made with reconnect); once the
 * queue drains for a stop, everything unanswered for a second. */
void nbd_conn_tick(struct nbd_conn *c, bool draining);

/* Sends io's command: one external operation on io (backend.h), whose
 * result arrives through ublk_io_external_done, never from inside this
 * call.  While reconnecting the command waits and is sent on the new
 * connection, as are those the lost one had in flight. */
void nbd_conn_submit(struct nbd_conn *c, struct ublk_io *io);

#endif
