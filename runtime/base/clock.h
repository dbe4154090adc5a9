/* SPDX-License-Identifier: MIT */
/*
 * clock.h - the runtime's one clock, CLOCK_MONOTONIC (a vDSO read, no
 * syscall), in the units its users count in.  The coarse reading (the
 * last tick, 1-4 ms old) is the watchdog's: it stamps every request and
 * needs only milliseconds, and the coarse clock costs a few ns less.
 */
#ifndef UBLK_CLOCK_H
#define UBLK_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t ublk_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t ublk_now_ms(void)
{
	return ublk_now_ns() / 1000000;
}

static inline uint64_t ublk_now_ms_coarse(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#endif
