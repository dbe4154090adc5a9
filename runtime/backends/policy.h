/* SPDX-License-Identifier: MIT */
/*
 * policy.h - for this folder's policies only (backend_record.c,
 * backend_lying.c): a policy wraps a base C backend as an nbdkit filter
 * wraps the next layer, calling the base's ops on the same request.
 */
#ifndef UBLK_POLICY_H
#define UBLK_POLICY_H

#include "../include/backend.h"

/* Makes `base` from the options "base.<key>" of conf (the prefix taken
 * off; "base.backend" names it, "base.size" its size, else conf's).  On
 * failure says why in b->err.  The base's note, store and made become b's,
 * so that the device records and removes them as the base's own. */
int ublk_policy_base_create(struct ublk_backend *b, struct ublk_backend *base,
			    const struct ublk_backend_conf *conf);

/* The ops a policy passes to its base unchanged.  They find the base at
 * b->priv: a policy's private struct begins with its base backend. */
int ublk_policy_io_done(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io,
			int res);
int ublk_policy_queue_init(struct ublk_backend *b, struct ublk_queue *q);
void ublk_policy_queue_exit(struct ublk_backend *b, struct ublk_queue *q);
void ublk_policy_tick(struct ublk_backend *b, struct ublk_queue *q);

#endif
