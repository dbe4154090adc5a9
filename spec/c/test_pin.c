/* SPDX-License-Identifier: MIT */
/*
 * spec/c/test_pin.c - pin = "auto"'s decisions (queue_pin.c), driven with
 * chosen numbers: the waits and requests of a window, its time per
 * request, the clock.  What moves the thread is the caller's; here only
 * the choice and the books it keeps (backoff, the unpinned time).
 * Prints TAP.  Build: make build/test-pin
 */
#include "host.h"

/* One window of UBLK_PIN_WINDOW requests, `waits` of which found the
 * thread asleep, at `ns` per request, ending at `now_ms`; the caller's
 * move applied as ublk_pin_decide applies it. */
static enum ublk_pin_move window(struct ublk_autopin *a, unsigned waits, uint64_t ns,
				 uint64_t now_ms)
{
	enum ublk_pin_move m;

	a->reqs = UBLK_PIN_WINDOW;
	a->waits = waits;
	m = ublk_pin_step(a, now_ms, ns, false);
	if (m == UBLK_PIN_PIN)
		a->pinned = true;
	else if (m == UBLK_PIN_UNPIN || m == UBLK_PIN_SLOWER)
		a->pinned = false;
	return m;
}

static struct ublk_autopin fresh(void)
{
	return (struct ublk_autopin){ .on = true, .backoff_ms = 10 };
}

/* Requests one at a time pin the thread, and a pin no slower holds. */
static void test_pins_one_by_one(void)
{
	struct ublk_autopin a = fresh();

	check(window(&a, UBLK_PIN_WINDOW / 2, 200000, 100) == UBLK_PIN_STAY,
	      "auto: requests in batches leave the thread unpinned");
	check(window(&a, UBLK_PIN_WINDOW, 200000, 200) == UBLK_PIN_PIN && a.free_ns == 200000,
	      "auto: requests one at a time pin it, keeping the unpinned time per request");
	check(window(&a, UBLK_PIN_WINDOW, 220000, 300) == UBLK_PIN_STAY,
	      "auto: a first pinned window 1.1x slower keeps the pin");
	check(window(&a, UBLK_PIN_WINDOW, 250000, 400) == UBLK_PIN_STAY && a.pinned,
	      "auto: and so does a later one 1.25x slower");
	check(window(&a, UBLK_PIN_WINDOW / 4, 50000, 500) == UBLK_PIN_UNPIN,
	      "auto: batches undo the pin");
	window(&a, UBLK_PIN_WINDOW, 200000, 600);
	for (int i = 0; i < 5; i++)
		window(&a, UBLK_PIN_WINDOW, 200000, 700 + i);
	check(window(&a, UBLK_PIN_WINDOW, 310000, 800) == UBLK_PIN_SLOWER,
	      "auto: a pin that held is undone once a window is 1.5x slower (the client moved)");
}

/* A pin whose first window took 1.5x the unpinned time per request is
 * undone and tried again later, ever later up to 8 s, which batches do
 * not raise past 1 s. */
static void test_slower_pin_undone(void)
{
	struct ublk_autopin a = fresh();
	uint64_t t = 1000;
	int backed_off = 1;

	window(&a, UBLK_PIN_WINDOW, 200000, t);
	check(window(&a, UBLK_PIN_WINDOW, 301000, t += 100) == UBLK_PIN_SLOWER && !a.pinned,
	      "auto: a first pinned window 1.5x slower than unpinned undoes the pin, for the device");
	check(a.next_try_ms == t + 10 && a.backoff_ms == 20, "auto: and waits 10 ms to try again");
	check(window(&a, UBLK_PIN_WINDOW, 200000, t + 5) == UBLK_PIN_STAY,
	      "auto: no new pin before the wait is over");
	check(window(&a, UBLK_PIN_WINDOW, 200000, t += 10) == UBLK_PIN_PIN,
	      "auto: a new pin once it is over");
	/* slower every time: the wait doubles, to 8 s and no further */
	for (int i = 0; i < 12; i++) {
		uint64_t wait = a.backoff_ms;

		backed_off = backed_off && window(&a, UBLK_PIN_WINDOW, 700000, t += 100) == UBLK_PIN_SLOWER &&
			     a.next_try_ms == t + wait;
		backed_off = backed_off && window(&a, UBLK_PIN_WINDOW, 200000, t = a.next_try_ms) == UBLK_PIN_PIN;
	}
	check(backed_off && a.backoff_ms == 8000, "auto: each slower pin waits twice as long, 8 s at most");
	window(&a, UBLK_PIN_WINDOW / 4, 50000, t += 100);
	check(a.backoff_ms == 1000, "auto: a pin batches undo waits 1 s at most");
}

/* A pin that held four windows or more starts the wait from 10 ms again. */
static void test_held_pin_resets_backoff(void)
{
	struct ublk_autopin a = fresh();

	a.backoff_ms = 640;
	window(&a, UBLK_PIN_WINDOW, 200000, 100);
	for (int i = 0; i < 4; i++)
		window(&a, UBLK_PIN_WINDOW, 200000, 200 + i);
	check(window(&a, UBLK_PIN_WINDOW / 4, 50000, 300) == UBLK_PIN_UNPIN && a.backoff_ms == 10 &&
		      a.next_try_ms <= 300,
	      "auto: after a pin that held, the next may come at once");
}

/* Another queue of the device found its pin slower: this one lets go too,
 * without telling the others again, and waits as after a slower pin of
 * its own. */
static void test_told_by_another_queue(void)
{
	struct ublk_autopin a = fresh();

	window(&a, UBLK_PIN_WINDOW, 200000, 100);
	a.reqs = a.waits = UBLK_PIN_WINDOW;
	check(ublk_pin_step(&a, 200, 200000, true) == UBLK_PIN_UNPIN && a.next_try_ms == 210,
	      "auto: told that another queue's pin was slower, a pin no slower is undone");
	a.pinned = false;
	a.reqs = a.waits = UBLK_PIN_WINDOW;
	check(ublk_pin_step(&a, 300, 200000, true) == UBLK_PIN_PIN,
	      "auto: an unpinned queue told so pins as it would (its own window decides)");
}

/* A pin that held 64 windows lets go for one and pins again, timing the
 * unpinned placement anew: a slow unpinned window (the device's first
 * requests) no longer keeps a slower pin for good.  Windows, not time:
 * a pause of the device holds nothing. */
static void test_retimed(void)
{
	struct ublk_autopin a = fresh();
	bool stayed = true;

	window(&a, UBLK_PIN_WINDOW, 900000, 100); /* a slow first window */
	for (int i = 0; i < 64; i++)
		stayed = stayed && window(&a, UBLK_PIN_WINDOW, 500000, 200 + 100000 * i) == UBLK_PIN_STAY;
	check(stayed, "auto: a pin stays 64 windows, however long they take");
	check(window(&a, UBLK_PIN_WINDOW, 500000, 7000000) == UBLK_PIN_UNPIN &&
		      a.next_try_ms == 7000000 && a.backoff_ms == 10,
	      "auto: then it lets go for a window, with no wait or backoff");
	check(window(&a, UBLK_PIN_WINDOW, 200000, 7000100) == UBLK_PIN_PIN && a.free_ns == 200000,
	      "auto: and pins again with that window's unpinned time");
	check(window(&a, UBLK_PIN_WINDOW, 500000, 7000200) == UBLK_PIN_SLOWER,
	      "auto: against which the slower pin is undone");
}

/* A sleep longer than 100 ms is a pause: the window's requests so far
 * are dropped and it starts again, so that the pause is not taken for
 * slow requests; shorter sleeps are the requests' own. */
static void test_pause_restarts_window(void)
{
	struct ublk_autopin a = fresh();

	ublk_pin_woke(&a, 1000000000);
	a.reqs = a.waits = 100;
	ublk_pin_woke(&a, 1000000000 + 2000000);
	check(a.reqs == 100 && a.waits == 100, "auto: a sleep of 2 ms keeps the window");
	ublk_pin_woke(&a, 1000000000 + 2000000 + 6000000000ull);
	check(a.reqs == 0 && a.waits == 0, "auto: a pause of 6 s starts it again");
}

int main(void)
{
	test_pins_one_by_one();
	test_slower_pin_undone();
	test_held_pin_resets_backoff();
	test_told_by_another_queue();
	test_retimed();
	test_pause_restarts_window();
	printf("1..%d\n", checks);
	return failed ? 1 : 0;
}
