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

#endif
