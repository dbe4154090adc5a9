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

#include "ctrl.h"
#include "device.h"
#include "log.h"
#include "signals.h"

/* Waits up to timeout_ms for pid to exit. */
static int wait_gone(pid_t pid, int timeout_ms)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	if (fd >= 0) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int ret = poll(&p, 1, timeout_ms);

		close(fd);
		return ret > 0 ? 0 : -ETIMEDOUT;
	}
	for (int waited = 0; kill(pid, 0) == 0 || errno != ESRCH; waited += 10) {
		if (waited >= timeout_ms)
			return -ETIMEDOUT;
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
	}
	return 0;
}

/* Is device id still the one pid left?  Its record says so; a device made
 * under a reused id has its own server's.  Without a record, only the
 * kernel can tell: its ublksrv_pid (-1 once the kernel has stopped the
 * device, which is then left alone: nothing says whose it is). */
static bool still_ours(struct ublk_ctrl *c, uint32_t id, pid_t pid, int *owner)
{
	struct ublksrv_ctrl_dev_info info;

	*owner = ublk_dev_read_owner(id, NULL, 0);
	if (*owner > 0)
		return *owner == pid;
	if (ublk_ctrl_get_dev_info(c, id, &info) < 0)
		return false;
	*owner = info.ublksrv_pid;
	return info.ublksrv_pid == pid;
}

int ublk_reap_main(int argc, char **argv)
{
	struct ublk_ctrl c;
	sigset_t set;
	pid_t pid;
	int status = 0, ret;

	if (argc < 3)
		return 2;
	ublk_signals_fill(&set);
	for (int s = 1; s < NSIG; s++)
		if (sigismember(&set, s) == 1)
			signal(s, SIG_IGN);
	setsid();
	pid = (pid_t)atoi(argv[2]);
	if (wait_gone(pid, 30000) < 0) {
		ublk_err("reaper: process %d did not exit: its devices stay", (int)pid);
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

		if (!still_ours(&c, id, pid, &owner)) {
			if (owner > 0)
				ublk_warn("reaper: device %u is now pid %d's, no longer %d's: left alone",
					  id, owner, (int)pid);
			else
				ublk_warn("reaper: nothing says device %u is still process %d's: "
					  "left alone", id, (int)pid);
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
