/* SPDX-License-Identifier: MIT */
/*
 * store.h - memory that lives in a file on /dev/shm (a memory device's
 * store, a ublk.shared region kept for recovery): its pages reserved up
 * front, and copies into or out of its mapping that cannot kill the
 * server (store.c).
 */
#ifndef UBLK_STORE_H
#define UBLK_STORE_H

#include <stddef.h>
#include <stdint.h>

/* Allocates every page of the file's first `size` bytes (fallocate, mode
 * 0: tmpfs then charges them now, and a write through a mapping can no
 * longer find the file system full).  A file that already holds data
 * keeps it.  0, or -errno with a line in err naming `what`, the size
 * asked for and the space free ("-ENOSPC: ... 64 MiB asked for, /dev/shm
 * has 35 MiB free"). */
int ublk_store_reserve(int fd, uint64_t off, uint64_t size, const char *what, char *err,
		       size_t len);

/* memcpy / memset where dst or src is a store's mapping: 0, or -EIO when
 * a page of it is gone (SIGBUS: the file was truncated under us, or a
 * page given back could not be had again) instead of the signal killing
 * the process.  ublk_store_guard() installs the handler, once per
 * process; it must have run before a fault can happen (mapping a store). */
int ublk_store_copy(void *dst, const void *src, size_t n);
int ublk_store_zero(void *dst, size_t n);
int ublk_store_guard(void);

#endif
