/* SPDX-License-Identifier: MIT */
/*
 * nbd_conn.h - one queue's connection to an NBD server (nbd_conn.c), for
 * backend_nbd.c: libnbd driven from the queue's io_uring, and, when asked,
 * reconnecting with bounded retries.
 */
#ifndef UBLK_NBD_CONN_H
#define UBLK_NBD_CONN_H

#include <stddef.h>

#include <libnbd.h>

#include "backend.h"

struct nbd_conn;

/* A connected handle, or NULL with a one-line reason in err ("cannot
 * connect to 'URI': ...") and the errno in *errnum. */
struct nbd_handle *nbd_conn_connect(const char *uri, char *err, size_t len, int *errnum);

/* On q's thread (queue_init).  `reconnect`: how many times to try again
 * when the connection is lost (0: never; requests then fail with EIO). */
int nbd_conn_open(struct nbd_conn **cp, struct ublk_queue *q, const char *uri,
		  unsigned reconnect);
/* queue_exit: nothing may be in flight. */
void nbd_conn_close(struct nbd_conn *c);

/* Sends io's command: one external operation on io (backend.h), whose
 * result arrives through ublk_io_external_done, never from inside this
 * call.  While reconnecting the command waits and is sent on the new
 * connection, as are those the lost one had in flight. */
void nbd_conn_submit(struct nbd_conn *c, struct ublk_io *io);

#endif
