/* SPDX-License-Identifier: MIT */
/*
 * reap.c - `ublk-lua --reap PID ID...`: what is left of a server that had
 * to leave without removing its devices (signals.c).  Once PID has gone,
 * the kernel has failed its in-flight I/O and stopped its disks; this
 * deletes the devices, so nothing is left DEAD.  It ignores termination
 * signals and outlives the terminal: it has a few seconds of work.  It
 * deletes only what is still PID's: meanwhile another server's sweep may
 * have deleted a device and a new one taken its freed id.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../base/log.h"
#include "../ctrl/ctrl.h"
#include "../device/device.h"
#include "signals.h"

/* Waits up to timeout_ms for server o to exit.  A pidfd holds on to the
 * process it was opened for; checked against the start time after it is
 * opened, it is o's or o has already gone. */
static int wait_gone(const struct ublk_owner *o, int timeout_ms)
{
	int fd = (int)syscall(SYS_pidfd_open, o->pid, 0);

	if (fd >= 0) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int ret = ublk_owner_alive(o) == 1 ? poll(&p, 1, timeout_ms) : 1;

		close(fd);
		return ret > 0 ? 0 : -ETIMEDOUT;
	}
	/* no pidfd (before Linux 5.3) */
	for (int waited = 0; ublk_owner_alive(o) != 0; waited += 10) {
		if (waited >= timeout_ms)
			return -ETIMEDOUT;
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
	}
	return 0;
}

/* Is device id still the one server o left?  Its record says so; a device
 * made under a reused id has its own server's, and a server that reused
 * o's pid has another start time.  Without a record, only the kernel can
 * tell: its ublksrv_pid (-1 once the kernel has stopped the device, which
 * is then left alone: nothing says whose it is). */
static bool still_ours(struct ublk_ctrl *c, uint32_t id, const struct ublk_owner *o,
		       int *owner)
{
	struct ublksrv_ctrl_dev_info info;
	struct ublk_owner rec;
	int ret = ublk_dev_read_owner(id, &rec, NULL, 0);

	*owner = ret > 0 ? rec.pid : 0;
	if (ret > 0)
		return rec.pid == o->pid && (!rec.has_start || !o->has_start ||
					     rec.start == o->start);
	if (ret < 0 || ublk_ctrl_get_dev_info(c, id, &info) < 0)
		return false; /* a record we cannot read: not ours to judge */
	*owner = info.ublksrv_pid;
	return info.ublksrv_pid == o->pid;
}

int ublk_reap_main(int argc, char **argv)
{
	struct ublk_ctrl c;
	sigset_t set;
	struct ublk_owner o = { 0 };
	char *end;
	int status = 0, ret;

	if (argc < 3)
		return 2;
	/* its lines go to its server's log: in the same shape as the server's */
	ublk_log_init_from_env();
	ublk_signals_fill(&set);
	for (int s = 1; s < NSIG; s++)
		if (sigismember(&set, s) == 1)
			signal(s, SIG_IGN);
	setsid();
	/* PID:START (signals.c); PID alone from an older server */
	o.pid = (int)strtol(argv[2], &end, 10);
	if (*end == ':') {
		o.has_start = true;
		o.start = strtoull(end + 1, NULL, 10);
	}
	if (o.pid <= 0)
		return 2;
	if (wait_gone(&o, 30000) < 0) {
		ublk_err("reaper: process %d did not exit: its devices stay", o.pid);
		return 1;
	}
	ret = ublk_ctrl_open(&c);
	if (ret < 0) {
		ublk_err("reaper: %s: %s", UBLK_CTRL_DEV, strerror(-ret));
		return 1;
	}
	ublk_ctrl_get_features(&c, &(uint64_t){ 0 });
	for (int i = 3; i < argc; i++) {
		uint32_t id = (uint32_t)strtoul(argv[i], NULL, 10);
		int owner;

		if (!still_ours(&c, id, &o, &owner)) {
			if (owner > 0)
				ublk_warn("reaper: device %u is now pid %d's, no longer %d's: left alone",
					  id, owner, o.pid);
			else
				ublk_warn("reaper: nothing says device %u is still process %d's: "
					  "left alone", id, o.pid);
			continue;
		}
		/* async: a disk still held open (mounted) is deleted when it is
		 * closed, and we do not wait for that */
		ret = ublk_ctrl_del_dev_async(&c, id);
		if (ret < 0 && ret != -ENODEV) {
			/* its record stays, for the next sweep or `ublk-lua del` */
			ublk_err("reaper: device %u: DEL_DEV: %s", id, strerror(-ret));
			status = 1;
			continue;
		}
		ublk_info("reaper: device %u removed", id);
		ublk_dev_forget_owner(id);
	}
	ublk_ctrl_close(&c);
	return status;
}
