/* SPDX-License-Identifier: MIT */
/*
 * signals.h - how a server ends.  The termination signals it catches are
 * every signal whose default action ends the process and that can be
 * caught, except the synchronous faults; SIGPIPE is ignored instead, so
 * that writing to a closed stdout fails with EPIPE rather than killing the
 * server with its devices.  Calls return >= 0 or -errno.
 */
#ifndef UBLK_SIGNALS_H
#define UBLK_SIGNALS_H

#include <signal.h>
#include <stdbool.h>

/* The termination signals, for sigprocmask and friends. */
void ublk_signals_fill(sigset_t *set);
/* "SIGTERM"; "signal N" for others. */
const char *ublk_signal_name(int sig);

/* The CLI's way out (main.c calls it before any other thread exists):
 * blocks the termination signals in every thread to come, ignores SIGPIPE,
 * and starts one thread that takes them.  The first one wakes
 * ublk_signals_wait() and calls interrupt(sig) (main.c makes the script's
 * own Lua code stop, if it is running).  If the process is still there
 * grace_ms later, or at a second signal, that thread removes this
 * process's devices without it: it starts a reaper (`ublk-lua --reap PID
 * ID...`, reap.c) that deletes them once this process has gone, and exits
 * at once.  Whatever the script or a handler is stuck in, the devices go
 * and the process ends in bounded time. */
int ublk_signals_start(unsigned grace_ms, void (*interrupt)(int sig));

/* Leaves now with `status`, the devices removed by a reaper once this
 * process has gone (what the signal thread does at its deadline). */
_Noreturn void ublk_signals_abandon(int status);

/* The first termination signal, waiting up to timeout_ms (< 0: forever);
 * 0 on timeout or, with fd >= 0, as soon as fd is readable (a server
 * waits for signals and for requests at once).  Without
 * ublk_signals_start (ublk.core loaded by a plain LuaJIT), it blocks them
 * in the calling thread and waits for them there, and fd is only looked
 * at between waits of at most 200 ms. */
int ublk_signals_wait(int timeout_ms, int fd);
/* The first termination signal received so far, or 0. */
int ublk_signals_received(void);


/* reap.c: `ublk-lua --reap PID ID...`: waits until PID has exited, then
 * deletes the devices it left.  Returns the exit status. */
int ublk_reap_main(int argc, char **argv);

#endif
