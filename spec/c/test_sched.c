/* SPDX-License-Identifier: MIT */
/*
 * spec/c/test_sched.c - which scheduling class a queue thread asks for
 * (queue_sched.c), driven with chosen windows: SCHED_OTHER where requests
 * come one at a time, SCHED_BATCH where they come in batches, no change
 * between.  Whether the class is set is the guest's to show (the bench's
 * QD1 and QD64 rows).  Prints TAP.  Build: make build/test-sched
 */
#include "host.h"

#define W UBLK_PIN_WINDOW

static void test_one_by_one(void)
{
	check(!ublk_sched_want_batch(true, W, W),
	      "sched: every request woke the thread: SCHED_OTHER");
	check(!ublk_sched_want_batch(true, W * 9 / 10 + 1, W),
	      "sched: nine in ten woke it: SCHED_OTHER");
	check(!ublk_sched_want_batch(false, W, W), "sched: SCHED_OTHER stays while they do");
}

static void test_batches(void)
{
	check(ublk_sched_want_batch(false, W / 2 - 1, W),
	      "sched: fewer than half woke the thread: SCHED_BATCH");
	check(ublk_sched_want_batch(false, 0, W), "sched: none woke it (a poll): SCHED_BATCH");
	check(ublk_sched_want_batch(true, 1, W), "sched: SCHED_BATCH stays while they batch");
}

static void test_between_keeps(void)
{
	check(ublk_sched_want_batch(true, W * 3 / 4, W),
	      "sched: between the two, SCHED_BATCH stays");
	check(!ublk_sched_want_batch(false, W * 3 / 4, W),
	      "sched: between the two, SCHED_OTHER stays");
}

int main(void)
{
	test_one_by_one();
	test_batches();
	test_between_keeps();
	printf("1..%d\n", checks);
	return failed ? 1 : 0;
}
