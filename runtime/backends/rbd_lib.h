/* SPDX-License-Identifier: MIT */
/*
 * rbd_lib.h - for backend_rbd.c only: librbd and librados, loaded when the
 * first rbd device is made rather than linked into every ublk-lua process.
 * Linked, the Ceph client (47 shared objects with its dependencies) cost
 * every `ublk-lua list` and every server 27 ms and 25 MB at start, against
 * 8.5 ms and 7.8 MB without it (perf stat -r 20 / time -f %M, this host).
 * The types come from the libraries' own headers (__typeof__), so a call
 * through this table is checked as a direct call would be.
 */
#ifndef UBLK_RBD_LIB_H
#define UBLK_RBD_LIB_H

#include <stddef.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

/* X(library, function) for every call backend_rbd.c makes */
#define UBLK_RBD_CALLS(X) \
	X(rados, rados_create) X(rados, rados_conf_read_file) X(rados, rados_conf_parse_env) \
	X(rados, rados_conf_set) X(rados, rados_connect) X(rados, rados_shutdown) \
	X(rados, rados_ioctx_create) X(rados, rados_ioctx_destroy) \
	X(rados, rados_ioctx_set_namespace) \
	X(rbd, rbd_open) X(rbd, rbd_open_read_only) X(rbd, rbd_close) X(rbd, rbd_get_size) \
	X(rbd, rbd_get_features) X(rbd, rbd_lock_acquire) X(rbd, rbd_set_image_notification) \
	X(rbd, rbd_poll_io_events) X(rbd, rbd_aio_create_completion) X(rbd, rbd_aio_release) \
	X(rbd, rbd_aio_get_arg) X(rbd, rbd_aio_get_return_value) X(rbd, rbd_aio_read) \
	X(rbd, rbd_aio_write) X(rbd, rbd_aio_flush) X(rbd, rbd_aio_discard) \
	X(rbd, rbd_aio_write_zeroes)

struct ublk_rbd_lib {
#define UBLK_RBD_FIELD(lib, fn) __typeof__(fn) *fn;
	UBLK_RBD_CALLS(UBLK_RBD_FIELD)
#undef UBLK_RBD_FIELD
};

/* The loaded table: valid once ublk_rbd_lib_load() has returned 0. */
extern struct ublk_rbd_lib ublk_rbd;

/* Loads both libraries and every call once (later calls return at once):
 * 0, or -ENOENT with why (the library or the symbol missing) in err. */
int ublk_rbd_lib_load(char *err, size_t len);

#endif
