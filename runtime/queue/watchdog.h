/* SPDX-License-Identifier: MIT */
/*
 * watchdog.h - one thread that watches every queue of the process.  A
 * queue thread marks when it enters its backend (a batch of completions)
 * and when it leaves; a queue inside its backend for longer than its
 * budget is poked once with UBLK_INTERRUPT_SIGNAL (where the backend can
 * be interrupted: a Lua backend raises in the handler), and called wedged
 * if it is still inside a second later: nothing on its thread will run
 * again, so the device can only be removed by ending the process.
 */
#ifndef UBLK_WATCHDOG_H
#define UBLK_WATCHDOG_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "../base/clock.h"

/* Sent to a queue thread over its budget; its handler (lua_interrupt.c)
 * makes the Lua code running there raise. */
#define UBLK_INTERRUPT_SIGNAL (SIGRTMIN + 1)

struct ublk_watch {
	/* set before ublk_watch_add */
	unsigned dev_id, q_id;
	uint64_t budget_ms;	/* 0: not watched */
	bool interruptible;	/* poke with UBLK_INTERRUPT_SIGNAL */
	pthread_t thread;
	/* written by the queue thread: when it entered its backend, 0 outside */
	uint64_t busy_since_ms;
	/* written by the watchdog */
	int state;		/* UBLK_WATCH_* */
	struct ublk_watch *next;
};

enum { UBLK_WATCH_OK, UBLK_WATCH_POKED, UBLK_WATCH_WEDGED };

/* Watches w until ublk_watch_del; starts the thread the first time. */
void ublk_watch_add(struct ublk_watch *w);
void ublk_watch_del(struct ublk_watch *w);

static inline void ublk_watch_enter(struct ublk_watch *w)
{
	if (w->budget_ms)
		__atomic_store_n(&w->busy_since_ms, ublk_now_ms_coarse(), __ATOMIC_RELAXED);
}

static inline void ublk_watch_leave(struct ublk_watch *w)
{
	if (w->budget_ms)
		__atomic_store_n(&w->busy_since_ms, 0, __ATOMIC_RELAXED);
}

static inline bool ublk_watch_wedged(const struct ublk_watch *w)
{
	return __atomic_load_n(&w->state, __ATOMIC_ACQUIRE) == UBLK_WATCH_WEDGED;
}

#endif
