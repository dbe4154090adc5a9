/* SPDX-License-Identifier: MIT */
/*
 * device_stop.c - the ways a started device ends (device.h): stopped and
 * deleted (STOP_DEV, then DEL_DEV), or handed over to a server that will
 * recover it (reload); both first make sure no queue is stuck where a
 * STOP_DEV would wait for it forever.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "device_private.h"

static int stops_in_progress;

int ublk_dev_stop_in_progress(void)
{
	return __atomic_load_n(&stops_in_progress, __ATOMIC_ACQUIRE);
}

/* STOP_DEV waits, uninterruptibly, for every request in flight.  One held
 * by a queue thread that will never run again (a handler stuck in machine
 * code) would keep it waiting forever, and on 7.x keep even a killed
 * process from exiting: so first wait, here where a signal still ends us,
 * until no queue has been inside its backend for long, or the watchdog
 * has called one wedged (within its budget and a second). */
static int wait_unstuck(struct ublk_dev *d)
{
	for (;;) {
		bool busy = false;

		for (unsigned i = 0; i < d->nr_queues; i++) {
			if (ublk_queue_wedged(d->queues[i]))
				return ublk_dev_fail(d, -EDEADLK, "queue %u is stuck in its backend and cannot "
					    "be interrupted: only ending the process removes the "
					    "device", i);
			busy = busy || ublk_queue_busy_ms(d->queues[i]) > 200;
		}
		if (!busy)
			return 0;
		nanosleep(&(struct timespec){ .tv_nsec = 50000000 }, NULL);
	}
}

int ublk_dev_stop(struct ublk_dev *d)
{
	int ret;

	if (d->state != UBLK_DEV_STARTED)
		return ublk_dev_fail(d, -EINVAL, "device is not started");
	ret = wait_unstuck(d);
	if (ret < 0)
		return ret;
	for (unsigned i = 0; i < d->nr_queues; i++)
		ublk_queue_drain(d->queues[i]);
	__atomic_add_fetch(&stops_in_progress, 1, __ATOMIC_ACQ_REL);
	ret = ublk_ctrl_stop_dev(&d->ctrl, d->info.dev_id);
	__atomic_sub_fetch(&stops_in_progress, 1, __ATOMIC_ACQ_REL);
	if (ret < 0)
		ublk_dev_fail(d, ret, "STOP_DEV failed: %s", strerror(-ret));
	/* The kernel aborts every fetch on STOP_DEV and the threads leave by
	 * themselves; the eventfd covers a failed STOP_DEV. */
	ublk_dev_stop_queues(d, d->nr_queues);
	d->state = UBLK_DEV_STOPPED;
	return ret < 0 ? ret : 0;
}

int ublk_dev_handover(struct ublk_dev *d)
{
	int ret;

	if (d->state != UBLK_DEV_STARTED)
		return ublk_dev_fail(d, -EINVAL, "device is not started");
	if (!(d->info.flags & UBLK_F_USER_RECOVERY))
		return ublk_dev_fail(d, -EINVAL, "device %u was added with recovery = false: no "
				     "server can take it over", d->info.dev_id);
	ret = wait_unstuck(d);
	if (ret < 0)
		return ret;
	if (d->info.flags & UBLK_F_QUIESCE) {
		__atomic_add_fetch(&stops_in_progress, 1, __ATOMIC_ACQ_REL);
		ret = ublk_ctrl_quiesce_dev(&d->ctrl, d->info.dev_id, 10000);
		__atomic_sub_fetch(&stops_in_progress, 1, __ATOMIC_ACQ_REL);
		if (ret < 0) /* still ours: the caller removes it as a stop would */
			return ublk_dev_fail(d, ret, "QUIESCE_DEV failed: %s", strerror(-ret));
		ublk_dev_stop_queues(d, d->nr_queues);
		d->state = UBLK_DEV_STOPPED;
	}
	ublk_dev_unregister(d->info.dev_id); /* no reaper deletes it either */
	d->recovering = true; /* and no release its store */
	return 0;
}

int ublk_dev_close(struct ublk_dev *d)
{
	int ret = 0;

	if (d->state == UBLK_DEV_CLOSED)
		return 0;
	if (d->state == UBLK_DEV_STARTED)
		ret = ublk_dev_stop(d);
	if (ret == -EDEADLK) /* its threads still use everything */
		return ret;
	/* a recovery that never started leaves the device recoverable */
	ublk_dev_release(d, !(d->recovering && (d->state == UBLK_DEV_CREATED ||
						d->state == UBLK_DEV_PREPARED)));
	return ret;
}
