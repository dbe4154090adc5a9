/* SPDX-License-Identifier: MIT */
/*
 * crc32c.h - CRC32C (Castagnoli), the checksum of the recorder's log
 * entries (docs/crash-testing.md); lua/ublk/crash_log.lua computes the
 * same one to read them.
 */
#ifndef UBLK_CRC32C_H
#define UBLK_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* The CRC of `len` bytes at `p` continuing from `crc` (0 to start). */
uint32_t ublk_crc32c(uint32_t crc, const void *p, size_t len);

#endif
