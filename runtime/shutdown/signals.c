/* SPDX-License-Identifier: MIT */
/*
 * signals.c - the termination signals, the thread that takes them, and the
 * deadline after which the devices are removed without the script's help
 * (see signals.h).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "../base/log.h"
#include "../device/device.h"
#include "signals.h"

/* Default action "terminate" or "core", catchable, not a fault. */
static const int termination[] = {
	SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM,
	SIGPROF, SIGXCPU, SIGXFSZ, SIGIO, SIGPWR,
#ifdef SIGSTKFLT
	SIGSTKFLT,
#endif
};

static int received;		/* the first signal, atomically */
static int wake_fd = -1;	/* eventfd, readable once one arrived */
static unsigned grace;
static void (*interrupt_fn)(int sig);

void ublk_signals_fill(sigset_t *set)
{
	sigemptyset(set);
	for (size_t i = 0; i < sizeof(termination) / sizeof(termination[0]); i++)
		sigaddset(set, termination[i]);
}

const char *ublk_signal_name(int sig)
{
	static __thread char other[24];
	/* glibc names 29 by its System V alias, POLL; kill -l and users say IO */
	const char *abbrev = sig == SIGIO ? "IO" : sigabbrev_np(sig);

	if (abbrev) {
		snprintf(other, sizeof(other), "SIG%s", abbrev);
		return other;
	}
	snprintf(other, sizeof(other), "signal %d", sig);
	return other;
}

int ublk_signals_received(void)
{
	return __atomic_load_n(&received, __ATOMIC_ACQUIRE);
}


/* Starts `ublk-lua --reap PID:START ID...` for this process's devices, then
 * leaves at once with `status`: the kernel fails whatever was in flight
 * when our char devices close, and the reaper deletes the devices after. */
_Noreturn void ublk_signals_abandon(int status)
{
	uint32_t ids[256];
	int n = ublk_dev_ids(ids, 256);
	char args[258][32];
	char *argv[261];
	int argc = 0;

	if (n > 0) {
		argv[argc++] = "ublk-lua";
		argv[argc++] = "--reap";
		/* PID:START: the reaper must not take a later process that
		 * gets our pid for us (device.h: struct ublk_owner) */
		unsigned long long start = 0;

		if (ublk_proc_start((int)getpid(), &start) == 0)
			snprintf(args[0], sizeof(args[0]), "%d:%llu", (int)getpid(), start);
		else
			snprintf(args[0], sizeof(args[0]), "%d", (int)getpid());
		argv[argc++] = args[0];
		for (int i = 0; i < n; i++) {
			snprintf(args[i + 1], sizeof(args[i + 1]), "%u", ids[i]);
			argv[argc++] = args[i + 1];
		}
		argv[argc] = NULL;
		if (fork() == 0) {
			execv("/proc/self/exe", argv);
			_exit(127);
		}
	}
	_exit(status);
}

static void *signal_thread(void *arg)
{
	sigset_t set;
	siginfo_t si;
	int sig;

	(void)arg;
	ublk_signals_fill(&set);
	while ((sig = sigwaitinfo(&set, &si)) < 0)
		;
	__atomic_store_n(&received, sig, __ATOMIC_RELEASE);
	if (write(wake_fd, &(uint64_t){ 1 }, sizeof(uint64_t)) < 0)
		ublk_warn("signal thread: eventfd: %s", strerror(errno));
	if (interrupt_fn)
		interrupt_fn(sig);
	/* A second signal, or the deadline: no more waiting for the script. */
	struct timespec ts = { .tv_sec = grace / 1000, .tv_nsec = (long)(grace % 1000) * 1000000 };
	for (bool said = false;;) {
		if (sigtimedwait(&set, &si, &ts) < 0 && errno == EINTR)
			continue;
		/* But not while a STOP_DEV waits for requests in flight: ending
		 * the process then could leave it unable to exit (device.c);
		 * they finish within their time budget, then the script gets
		 * its grace again. */
		if (!ublk_dev_stop_in_progress())
			break;
		if (!said)
			ublk_warn("%s: waiting for the requests in flight to finish",
				  ublk_signal_name(sig));
		said = true;
		while (ublk_dev_stop_in_progress())
			nanosleep(&(struct timespec){ .tv_nsec = 100000000 }, NULL);
	}
	ublk_err("%s: the devices were not removed in time: removing them without the script",
		 ublk_signal_name(sig));
	ublk_signals_abandon(128 + sig);
	return NULL;
}

int ublk_signals_start(unsigned grace_ms, void (*interrupt)(int sig))
{
	sigset_t set;
	pthread_t t;
	int ret;

	ublk_signals_fill(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	grace = grace_ms;
	interrupt_fn = interrupt;
	wake_fd = eventfd(0, EFD_CLOEXEC);
	if (wake_fd < 0)
		return -errno;
	ret = pthread_create(&t, NULL, signal_thread, NULL);
	if (ret)
		return -ret;
	pthread_detach(t);
	return 0;
}

int ublk_signals_wait(int timeout_ms, int fd)
{
	if (wake_fd >= 0) {
		struct pollfd p[2] = { { .fd = wake_fd, .events = POLLIN },
				       { .fd = fd, .events = POLLIN } };
		int ret;

		if (ublk_signals_received())
			return ublk_signals_received();
		ret = poll(p, fd >= 0 ? 2 : 1, timeout_ms);
		if (ret < 0 && errno != EINTR)
			return -errno;
		return ublk_signals_received();
	}
	/* no signal thread: take them here */
	sigset_t set;
	int sig;

	if (ublk_signals_received())
		return ublk_signals_received();
	ublk_signals_fill(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (fd >= 0 && (timeout_ms < 0 || timeout_ms > 200)) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, 0) > 0)
			return 0;
		timeout_ms = 200;
	}
	if (timeout_ms < 0) {
		while ((sig = sigwaitinfo(&set, NULL)) < 0 && errno == EINTR)
			;
	} else {
		struct timespec ts = { .tv_sec = timeout_ms / 1000,
				       .tv_nsec = (long)(timeout_ms % 1000) * 1000000 };

		sig = sigtimedwait(&set, NULL, &ts);
		if (sig < 0)
			return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	}
	if (sig < 0)
		return -errno;
	__atomic_store_n(&received, sig, __ATOMIC_RELEASE);
	return sig;
}
