/* SPDX-License-Identifier: MIT */
/*
 * watchdog.c - the thread that watches the queues (watchdog.h).
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "../base/log.h"
#include "watchdog.h"

#define PERIOD_MS 100
#define WEDGED_AFTER_MS 1000	/* after the poke */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake;	/* on CLOCK_MONOTONIC: see init() */
static struct ublk_watch *watched;
/* The thread runs while anything is watched and is joined when the last
 * watch goes: a thread left behind would outlive the library when a Lua
 * host unloads ublk.core (busted's lua_close), and crash in unmapped code.
 * Each thread serves one generation; ending it bumps the count, so a
 * thread still on its way out never serves the next one's watches. */
static pthread_t thread;
static bool running;
static unsigned long generation;

static void check(struct ublk_watch *w, uint64_t now)
{
	uint64_t since = __atomic_load_n(&w->busy_since_ms, __ATOMIC_RELAXED);
	int state = __atomic_load_n(&w->state, __ATOMIC_RELAXED);

	if (!since || now - since <= w->budget_ms) {
		if (state == UBLK_WATCH_POKED) /* it came back */
			__atomic_store_n(&w->state, UBLK_WATCH_OK, __ATOMIC_RELEASE);
		return;
	}
	if (state == UBLK_WATCH_OK && w->interruptible) {
		ublk_warn("dev %u queue %u: a handler has run for over %llu ms: interrupting it",
			  w->dev_id, w->q_id, (unsigned long long)w->budget_ms);
		__atomic_store_n(&w->state, UBLK_WATCH_POKED, __ATOMIC_RELEASE);
		pthread_kill(w->thread, UBLK_INTERRUPT_SIGNAL);
	} else if (state != UBLK_WATCH_WEDGED &&
		   (!w->interruptible || now - since > w->budget_ms + WEDGED_AFTER_MS)) {
		ublk_err("dev %u queue %u: stuck in its backend for %llu ms and cannot be "
			 "interrupted (a JIT-compiled loop?): the device can only be removed "
			 "by ending the process", w->dev_id, w->q_id,
			 (unsigned long long)(now - since));
		__atomic_store_n(&w->state, UBLK_WATCH_WEDGED, __ATOMIC_RELEASE);
	}
}

static void init(void)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&wake, &attr);
	pthread_condattr_destroy(&attr);
}

static void *watchdog_thread(void *arg)
{
	unsigned long mine = (unsigned long)(uintptr_t)arg;
	struct timespec next;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_mutex_lock(&lock);
	clock_gettime(CLOCK_MONOTONIC, &next);
	while (generation == mine) {
		next.tv_nsec += PERIOD_MS * 1000000L;
		if (next.tv_nsec >= 1000000000L) {
			next.tv_sec++;
			next.tv_nsec -= 1000000000L;
		}
		while (generation == mine &&
		       pthread_cond_timedwait(&wake, &lock, &next) != ETIMEDOUT)
			;
		if (generation != mine)
			break;
		uint64_t now = ublk_now_ms_coarse();

		for (struct ublk_watch *w = watched; w; w = w->next)
			if (w->budget_ms)
				check(w, now);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

void ublk_watch_add(struct ublk_watch *w)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, init);
	pthread_mutex_lock(&lock);
	w->state = UBLK_WATCH_OK;
	w->next = watched;
	watched = w;
	if (!running &&
	    pthread_create(&thread, NULL, watchdog_thread, (void *)(uintptr_t)generation) == 0)
		running = true;
	pthread_mutex_unlock(&lock);
}

void ublk_watch_del(struct ublk_watch *w)
{
	pthread_t last = 0;
	bool join = false;

	pthread_mutex_lock(&lock);
	for (struct ublk_watch **p = &watched; *p; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			break;
		}
	if (!watched && running) {
		generation++;
		running = false;
		last = thread;
		join = true;
		pthread_cond_broadcast(&wake);
	}
	pthread_mutex_unlock(&lock);
	if (join)
		pthread_join(last, NULL);
}
