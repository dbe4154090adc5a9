/* SPDX-License-Identifier: MIT */
/*
 * record_map.h - the recorder's log file mapped and grown ahead
 * (record_map.c), for its writer (record_writer.c).  The log's fields
 * are struct ublk_record_log's (backends.h); its lock and conditions are
 * set up by the writer before ublk_log_map_start().
 */
#ifndef UBLK_RECORD_MAP_H
#define UBLK_RECORD_MAP_H

#include <stdint.h>

struct ublk_record_log;

/* The address space a log may fill (1 TiB), reserved, not memory. */
#define UBLK_LOG_WINDOW (1ull << 40)
/* The file grows a chunk at a time, once less than AHEAD is left. */
#define UBLK_LOG_CHUNK (16u << 20)
#define UBLK_LOG_AHEAD (8u << 20)

/* Maps the file from 0 with room ahead of `tail` (the file made that
 * long), and starts the grower.  0 or -errno. */
int ublk_log_map_start(struct ublk_record_log *l, uint64_t tail);
/* Makes sure [0, end) is mapped: 0, or -errno when the file could not
 * grow.  The grower is asked once the tail nears the end of what is
 * mapped, so that a writer seldom waits. */
int ublk_log_map_reach(struct ublk_record_log *l, uint64_t end);
/* Ends the grower (after ublk_log_map_start() succeeded). */
void ublk_log_map_stop(struct ublk_record_log *l);

#endif
