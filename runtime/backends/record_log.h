/* SPDX-License-Identifier: MIT */
/*
 * record_log.h - the recorder's log (docs/crash-testing.md): a 64-byte file
 * header, then entries, each a 40-byte head and its payload (a write's
 * data, a mark's name).  Little-endian, as the machines ublk runs on.
 * A log being written, or one whose server died, goes on past its last
 * entry in zeros (room the recorder mapped ahead, record_writer.c): the
 * log ends at the first head whose magic is not UBLK_LOG_ENTRY_MAGIC.
 * Version 1 (CRC32C checks, no zeros) is still read, not written.
 *
 * The recorder (backend_record.c) writes it; ublk.crash_log reads it and
 * appends marks.  The part between the FFI markers is that reader's
 * declaration too (core.record_log_cdef, made by the Makefile), so the
 * two sides cannot drift.
 */
#ifndef UBLK_RECORD_LOG_H
#define UBLK_RECORD_LOG_H

#include <stdint.h>

/* BEGIN FFI */
enum {
	UBLK_LOG_VERSION = 2,
	UBLK_LOG_ENTRY_MAGIC = 0x52454b42,
	/* an entry's type */
	UBLK_LOG_WRITE = 1,
	UBLK_LOG_FLUSH = 2,
	UBLK_LOG_DISCARD = 3,
	UBLK_LOG_WRITE_ZEROES = 4,
	UBLK_LOG_MARK = 5,
	/* an entry's flags */
	UBLK_LOG_FUA = 1,
};

/* The file header; check is the low 32 bits of the XXH64 (seed 0) of the
 * 60 bytes before it (version 1: their CRC32C). */
struct ublk_log_header {
	char magic[8];		/* "UBLKLOG1", no NUL */
	uint32_t version;
	uint32_t block_size;	/* the device's logical block size */
	uint64_t size;		/* the device's size in bytes */
	uint8_t zero[36];
	uint32_t check;
};

/* An entry's head; check is the low 32 bits of the XXH64 of the payload
 * seeded with the XXH64 (seed 0) of the head with check as zero (version
 * 1: the CRC32C of that head and then the payload). */
struct ublk_log_head {
	uint32_t magic;		/* UBLK_LOG_ENTRY_MAGIC, written last */
	uint32_t check;
	uint64_t offset;	/* bytes: writes, discards, write-zeroes */
	uint32_t len;		/* bytes the request covers */
	uint32_t data_len;	/* payload bytes after the head */
	uint8_t type;
	uint8_t flags;
	uint8_t zero[14];
};
/* END FFI */

#define UBLK_LOG_MAGIC "UBLKLOG1"

_Static_assert(sizeof(struct ublk_log_header) == 64, "the log's file header is 64 bytes");
_Static_assert(sizeof(struct ublk_log_head) == 40, "the log's entry head is 40 bytes");

#endif
