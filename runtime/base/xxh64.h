/* SPDX-License-Identifier: MIT */
/*
 * xxh64.h - XXH64, the 64-bit xxHash (its published algorithm; `xxhsum
 * -H1` prints the same), the check of the recorder's log entries
 * (record_log.h).  lua/ublk/crash_log.lua computes the same one to read
 * them.
 *
 * Why not the CRC32C the log had: under QEMU's TCG, where CI runs the
 * recorder, the crc32 instruction is emulated one call at a time: 38 us
 * to check a 4 KiB write against 1.8 us for this (6.12 guest, the
 * table-driven CRC no better than 15 us); on this 2-core host the two
 * cost 0.5 and 0.6 us.  Only plain 64-bit multiplies, adds and rotates.
 */
#ifndef UBLK_XXH64_H
#define UBLK_XXH64_H

#include <stddef.h>
#include <stdint.h>

/* XXH64 of `len` bytes at `p` with `seed`. */
uint64_t ublk_xxh64(const void *p, size_t len, uint64_t seed);

#endif
