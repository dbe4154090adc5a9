/* SPDX-License-Identifier: MIT */
/*
 * queue_sched.c - a queue thread's scheduling class, by how its requests
 * come (the waits and requests of a window, counted in queue.c).
 *
 * In batches: SCHED_BATCH.  A waking SCHED_BATCH thread does not preempt
 * the task that submits I/O on its CPU: the submitter keeps queueing
 * until it waits, and the thread then serves its whole batch in one pass.
 * Preempting it per request cost 2.6x in throughput (bench/, 4k QD64, 2
 * jobs, before 2026-12-06).
 *
 * One at a time: SCHED_OTHER, as kublk's threads run.  Then the request
 * is all the submitter has: under SCHED_BATCH it returns from submitting,
 * enters the kernel again to wait and sleeps, and the thread runs after;
 * under SCHED_OTHER the thread preempts it as it leaves the submitting
 * call, and the completion is there when it looks (fio's completion
 * latency 12-13 us where it was 97-105: the round trip moves into its
 * submission call).  Measured in one 6.12 boot without ERMS
 * (bench/exp/qd1-class.sh, 2026-12-06, null, 4k randread QD1, fio on CPU
 * 0, 3 interleaved rounds of 3 s): 4953-5405 IOPS under SCHED_BATCH,
 * 5521-5853 under SCHED_OTHER, kublk 5176-5459; the whole guest's CPU per
 * I/O 217-241 us against 200-212.
 *
 * A class changes only when a window says so, never per request; between
 * the two thresholds (ublk_pace_*) it stays as it is.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>

#include "../base/log.h"
#include "queue_private.h"

bool ublk_sched_want_batch(bool batch, unsigned waits, unsigned reqs)
{
	if (ublk_pace_batches(waits, reqs))
		return true;
	if (ublk_pace_one_by_one(waits, reqs))
		return false;
	return batch;
}

static void set_class(struct ublk_queue *q, bool batch)
{
	if (sched_setscheduler(0, batch ? SCHED_BATCH : SCHED_OTHER,
			       &(struct sched_param){ 0 }) < 0) {
		ublk_dbg("queue %u: %s: %s", q->c.q_id, batch ? "SCHED_BATCH" : "SCHED_OTHER",
			 strerror(errno));
		return;
	}
	q->sched_batch = batch;
}

void ublk_sched_start(struct ublk_queue *q)
{
	set_class(q, true);
}

void ublk_sched_decide(struct ublk_queue *q)
{
	bool batch = ublk_sched_want_batch(q->sched_batch, q->ap.waits, q->ap.reqs);

	/* a host queue runs on its caller's thread: not ours to change */
	if (batch != q->sched_batch && !q->host)
		set_class(q, batch);
}
