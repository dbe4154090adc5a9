/* SPDX-License-Identifier: MIT */
/*
 * watchdog.c - the thread that watches the queues (watchdog.h).
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "watchdog.h"

#define PERIOD_MS 100
#define WEDGED_AFTER_MS 1000	/* after the poke */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct ublk_watch *watched;
static bool running;

uint64_t ublk_watch_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

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

static void *watchdog_thread(void *arg)
{
	sigset_t all;

	(void)arg;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		nanosleep(&(struct timespec){ .tv_nsec = PERIOD_MS * 1000000L }, NULL);
		pthread_mutex_lock(&lock);
		if (!watched) { /* nothing left: leave; the next add starts one */
			running = false;
			pthread_mutex_unlock(&lock);
			return NULL;
		}
		for (struct ublk_watch *w = watched; w; w = w->next)
			if (w->budget_ms)
				check(w, ublk_watch_now_ms());
		pthread_mutex_unlock(&lock);
	}
}

void ublk_watch_add(struct ublk_watch *w)
{
	pthread_t t;

	pthread_mutex_lock(&lock);
	w->state = UBLK_WATCH_OK;
	w->next = watched;
	watched = w;
	if (!running && pthread_create(&t, NULL, watchdog_thread, NULL) == 0) {
		pthread_detach(t);
		running = true;
	}
	pthread_mutex_unlock(&lock);
}

void ublk_watch_del(struct ublk_watch *w)
{
	pthread_mutex_lock(&lock);
	for (struct ublk_watch **p = &watched; *p; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			break;
		}
	pthread_mutex_unlock(&lock);
}
