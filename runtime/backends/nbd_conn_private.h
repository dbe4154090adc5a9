/* SPDX-License-Identifier: MIT */
/*
 * nbd_conn_private.h - what nbd_conn.c (links and commands) shares with
 * nbd_reconnect.c (what happens when a connection is lost).  Both run on
 * the queue's thread only.
 */
#ifndef UBLK_NBD_CONN_PRIVATE_H
#define UBLK_NBD_CONN_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>

#include "../base/clock.h"
#include "nbd_conn.h"

struct nbd_link {
	struct nbd_handle *h;	/* NULL once closed */
	struct ublk_poll in, out;
	struct nbd_conn *c;
	struct nbd_link *next;	/* on c->closed */
};

/* A request this connection holds, by tag (one at a time per tag). */
struct nbd_cmd {
	struct ublk_io *io;	/* NULL: none */
	uint64_t since_ms;	/* when it arrived (ublk_now_ms) */
	bool waiting;		/* in `waiting`, not on the link */
};

struct nbd_conn {
	struct ublk_queue *q;
	const char *uri;
	struct nbd_link *link;	/* NULL: lost (reconnecting or given up) */
	struct nbd_link *closed;	/* links whose polls may still fire */
	unsigned reconnect, tries;
	unsigned delay_ms;
	unsigned connect_timeout_ms, timeout_ms;
	int timer_fd;
	struct ublk_poll timer;
	struct ublk_io **waiting;	/* commands for the next link */
	unsigned nr_waiting, depth;
	struct nbd_cmd *cmds;	/* depth of them */
	bool given_up;		/* requests fail with EIO (until retry_ms) */
	bool draining;		/* a stop waits: no reconnecting, no retry */
	uint64_t retry_ms;	/* given up: a request after this tries again */
	unsigned backoff_ms;	/* the next wait between giving up and retrying */
};

/* nbd_conn.c */
/* Polls a new link's socket as libnbd wants (its ready callbacks set). */
void nbd_link_init(struct nbd_link *l);
/* Polls the socket the way libnbd wants to move next; a dead handle is lost. */
void nbd_link_arm(struct nbd_link *l);
/* Sends io's command on c->link; a refusal by a dead handle loses it. */
void nbd_conn_send(struct nbd_conn *c, struct ublk_io *io);
/* Keeps io for the next link (EIO if there is no room). */
void nbd_conn_wait(struct nbd_conn *c, struct ublk_io *io);
/* io's command is over: it leaves cmds and its result goes to the queue. */
void nbd_conn_finish(struct nbd_conn *c, struct ublk_io *io, int res);

/* nbd_reconnect.c */
/* The link is gone: closed now; then reconnecting, or every request fails.
 * `why` NULL: libnbd's last error says. */
void nbd_conn_lose(struct nbd_conn *c, const char *why);
/* No more tries: what waits, and what follows for a while, fails with EIO. */
void nbd_conn_give_up(struct nbd_conn *c);
/* Given up a while ago and a request came: try once more (io waits). */
void nbd_conn_retry(struct nbd_conn *c, struct ublk_io *io);
/* Sends what waited, on a link just made; stops if it is lost again. */
void nbd_conn_resend(struct nbd_conn *c);
/* The reconnect timer's poll callback (c->timer.ready). */
void nbd_reconnect_ready(struct ublk_queue *q, struct ublk_poll *p, int revents);

#endif
