/* SPDX-License-Identifier: MIT */
/*
 * store.c - reserving a /dev/shm file's pages, and copying through its
 * mapping without dying of SIGBUS (store.h).
 *
 * A shared mapping of a tmpfs file allocates a page at its first write;
 * when the file system is full that write gets SIGBUS, which kills the
 * server in the middle of a request (and leaves its writers in D state).
 * So a store is allocated whole when it is made (ublk_store_reserve), and
 * a full /dev/shm is refused with a message before any device exists.
 *
 * What reservation cannot rule out is someone else truncating the file
 * (or a hole punched by a discard that could not be filled again).  Then
 * the copy faults.  We guard the copy rather than check the file's size
 * first: a check is a system call per request and still races with a
 * truncate that comes between it and the copy, while a guard costs a
 * sigsetjmp (no system call: the mask is not saved, SA_NODEFER keeps
 * SIGBUS unblocked after the jump) and catches every fault.  A SIGBUS
 * outside a guarded copy goes on to whatever handled it before (the
 * default: the process dies, as it should for a bug).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#include "store.h"

int ublk_store_reserve(int fd, uint64_t off, uint64_t size, const char *what, char *err,
		       size_t len)
{
	struct statvfs fs;
	int e;

	if (size == 0 || fallocate(fd, 0, (off_t)off, (off_t)size) == 0)
		return 0;
	e = errno;
	if (e == EOPNOTSUPP) /* not tmpfs: its pages cannot be had up front */
		return 0;
	if (e == ENOSPC && fstatvfs(fd, &fs) == 0)
		snprintf(err, len, "%s: %llu MiB asked for, its file system has %llu MiB free",
			 what, (unsigned long long)(size >> 20),
			 (unsigned long long)((uint64_t)fs.f_bavail * fs.f_frsize >> 20));
	else
		snprintf(err, len, "%s: reserving %llu MiB: %s", what,
			 (unsigned long long)(size >> 20), strerror(e));
	return -e;
}

/* The calling thread's copy in progress, if any. */
static __thread sigjmp_buf *volatile guard_jump;
static struct sigaction guard_old;
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;
static int guard_err;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	sigjmp_buf *jump = guard_jump;

	if (jump) {
		guard_jump = NULL;
		siglongjmp(*jump, 1);
	}
	if ((guard_old.sa_flags & SA_SIGINFO) && guard_old.sa_sigaction) {
		guard_old.sa_sigaction(sig, si, uc);
		return;
	}
	if (guard_old.sa_handler != SIG_DFL && guard_old.sa_handler != SIG_IGN) {
		guard_old.sa_handler(sig);
		return;
	}
	/* the faulting access runs again, now under the default action */
	signal(SIGBUS, SIG_DFL);
}

static void install(void)
{
	struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER };

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, &guard_old) < 0)
		guard_err = -errno;
}

int ublk_store_guard(void)
{
	pthread_once(&guard_once, install);
	return guard_err;
}

/* memcpy, or with no src memset 0, under the guard: -EIO if it faulted */
static int guarded(void *dst, const void *src, size_t n)
{
	sigjmp_buf jump;

	if (sigsetjmp(jump, 0))
		return -EIO;
	guard_jump = &jump;
	if (src)
		memcpy(dst, src, n);
	else
		memset(dst, 0, n);
	guard_jump = NULL;
	return 0;
}

int ublk_store_copy(void *dst, const void *src, size_t n)
{
	return guarded(dst, src, n);
}

int ublk_store_zero(void *dst, size_t n)
{
	return guarded(dst, NULL, n);
}
