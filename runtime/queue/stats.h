/* SPDX-License-Identifier: MIT */
/*
 * stats.h - a device's counters and latency histograms, one block per
 * queue, in a shared mapping (ublk_state_dir()/devN.stats) that `ublk-lua
 * stats` reads from another process while the server runs.  Each queue's
 * thread is the only writer of its block: plain relaxed stores, no locks,
 * no syscalls per I/O (two clock reads per pass of the queue's loop, see
 * queue.c time_pass).  The part between the FFI markers is also
 * lua/ublk/stats.lua's cdef (the Makefile generates it).
 *
 * Latency is the server's part of a request: from the start of the loop's
 * pass that took the request from the kernel to the end of the pass that
 * queued its commit.  Buckets are logarithmic with 8 steps per power of two (each
 * within 12.5%): bucket b < 8 holds b ns; above, b = (msb - 2) * 8 +
 * the three bits below the most significant one.
 */
#ifndef UBLK_STATS_H
#define UBLK_STATS_H

#include <stdint.h>

/* BEGIN FFI */
enum {
	UBLK_STATS_MAGIC = 0x75626c6b,	/* "ublk" */
	UBLK_STATS_VERSION = 3,		/* 2: inflight, errnos, counters; 3: shmem_zc, reg_fallback */
	UBLK_STATS_OPS = 8,		/* counters by UBLK_IO_OP_* (0..7) */
	UBLK_STATS_ERRNOS = 134,	/* Linux's errnos are 1..133; [0] counts any other */
	UBLK_STATS_COUNTERS = 16,	/* a Lua backend's own, at most */
	UBLK_STATS_COUNTER_NAME = 32,	/* bytes of a name, its NUL included */
	UBLK_LAT_BUCKETS = 320,		/* up to 2^42 ns: over an hour */
	UBLK_LAT_READ = 0, UBLK_LAT_WRITE = 1, UBLK_LAT_OTHER = 2, UBLK_LAT_KINDS = 3,
};

struct ublk_queue_stats {
	uint64_t ops[UBLK_STATS_OPS];	/* successful requests, by op */
	uint64_t errors;		/* requests that failed */
	uint64_t read_bytes;
	uint64_t write_bytes;
	uint64_t inflight;		/* taken from the kernel, not yet committed: a gauge */
	uint64_t shmem_zc;		/* requests whose data was in a registered file */
	uint64_t reg_fallback;		/* requests the kernel left us to register */
	uint64_t errnos[UBLK_STATS_ERRNOS];	/* the failed requests by errno */
	/* A Lua backend's own counters and gauges (ublk.backend's `counters`,
	 * lua/ublk/queue.lua): named by the queue's thread before its first
	 * request, then written by its handlers; the names end at the first
	 * empty one.  Doubles, as Lua numbers are: exact up to 2^53. */
	char counter_names[UBLK_STATS_COUNTERS][UBLK_STATS_COUNTER_NAME];
	uint8_t counter_gauge[UBLK_STATS_COUNTERS];	/* 1: a gauge, 0: a counter */
	double counters[UBLK_STATS_COUNTERS];
	uint64_t lat[UBLK_LAT_KINDS][UBLK_LAT_BUCKETS];	/* every request */
};

struct ublk_stats_header {
	uint32_t magic;
	uint32_t version;
	uint32_t nr_queues;		/* struct ublk_queue_stats follow, one each:
					 * one a queue thread (queues x threads) */
	uint32_t queue_stats_size;	/* sizeof(struct ublk_queue_stats) */
	uint64_t started_ns;		/* CLOCK_MONOTONIC when made */
	uint32_t threads;		/* each queue's (1, or `threads`) */
	uint32_t pad;
	uint64_t reserved[4];
};
/* END FFI */

/* read word by word (ublk_queue_get_stats) */
_Static_assert(sizeof(struct ublk_queue_stats) % sizeof(uint64_t) == 0,
	       "ublk_queue_stats is whole 64-bit words");

static inline unsigned ublk_lat_bucket(uint64_t ns)
{
	unsigned msb, b;

	if (ns < 8)
		return (unsigned)ns;
	msb = 63u - (unsigned)__builtin_clzll(ns);
	b = (msb - 2) * 8 + (unsigned)((ns >> (msb - 3)) & 7);
	return b < UBLK_LAT_BUCKETS ? b : UBLK_LAT_BUCKETS - 1;
}

static inline unsigned ublk_lat_kind(unsigned op)
{
	return op == 0 ? UBLK_LAT_READ : op == 1 ? UBLK_LAT_WRITE : UBLK_LAT_OTHER;
}

/* The mapping for a device of nr_queues queue threads (its queues x
 * `threads`, each queue's threads in a row): the file ublk_state_dir()/devN.stats
 * where it can be made, else anonymous memory (then only this process sees
 * it).  Never NULL but when out of memory. */
struct ublk_stats_header *ublk_stats_map(uint32_t dev_id, unsigned nr_queues,
					  unsigned threads);
void ublk_stats_unmap(struct ublk_stats_header *h);
/* Removes device dev_id's file (with the device). */
void ublk_stats_forget(uint32_t dev_id);
static inline struct ublk_queue_stats *ublk_stats_queue(struct ublk_stats_header *h, unsigned q)
{
	return (struct ublk_queue_stats *)(h + 1) + q;
}

#endif
