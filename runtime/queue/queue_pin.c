/* SPDX-License-Identifier: MIT */
/*
 * queue_pin.c - where a queue thread runs.  pin = true: on its queue's
 * CPUs from the start.  pin = "auto": it pins itself to its queue's CPUs
 * while every request finds it asleep (requests one at a time: the
 * submitter then sleeps and the server runs on its CPU, with no wakeup
 * across CPUs either way), and lets go when requests come in batches (a
 * deep queue, where a CPU of its own serves it better) or when, pinned,
 * it serves them clearly slower than unpinned (a submitter that does not
 * stay on the queue's CPU: SLOWER_NUM below).
 *
 * Measured in one 7.3 boot (bench/results/2026-12-05-7.3.4+deb13-amd64-
 * qd1-autopin.md, medians of 3 interleaved rounds, null backend): 4k QD1
 * 4.1k IOPS against 2.7k unpinned and 4.3k pinned (kublk, pinned: 3.9k);
 * 4k QD64 one job 44.6k against 40.0k unpinned and 21.0k pinned; two jobs
 * 35.6k against 33.0k and 36.2k; 128k QD16 417 MiB/s against 397 and 245.
 * Unpinned, a QD1 request woke the server on the other CPU about half the
 * time (1.15 wakeups per I/O, 0.73 of them on CPU 1 while fio ran on CPU 0),
 * 127 us of server CPU per I/O against 102 pinned; the system calls (1.0
 * per I/O) and context switches (1.0) were the same in all three and
 * in kublk's.
 *
 * A thread's io-wq workers (the kernel's threads that do what cannot be
 * done without blocking, such as every read and write on tmpfs) move
 * with it: those running are moved (pin_workers), and the ring's io-wq
 * is given the same CPUs for those it starts later (they take the
 * io-wq's CPUs, not the thread's, and an idle worker ends after 5 s, so
 * a pin that holds sees new ones); otherwise a QD1 request crosses CPUs
 * twice (to the worker and back).  Measured in one 7.3 boot, the file backend
 * on tmpfs, 4k randread QD1, 3 interleaved rounds: 1.43k IOPS and 373 us
 * of server CPU per I/O when only the thread moved, 2.24-2.41k and 236-251
 * us with its workers (pinned from the start: 2.0-2.3k; kublk's loop:
 * 2.1-2.3k and 241-262 us).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../base/log.h"
#include "queue_private.h"

/* After a pin that batching undid at once, the next try waits this long,
 * doubling up to MAX: a deep queue pays one pinned window a second. */
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 1000
/* A pin under which a window took 1.5x the time per request of the
 * unpinned window before it is undone, and tried again up to 8 s later
 * (at once after a pin that held): the submitter does not stay on the
 * queue's CPU.  That is what a client the scheduler may move does on
 * 6.12 (bench/qd1-placement.sh, 2026-12-06, null, fio free): each
 * completion woke it on the idle CPU (0.69 IPIs per I/O), its next
 * request went to the other queue, and "auto" made 2.8k IOPS against
 * 4.6k unpinned (kublk, pinned: 3.3k); a queue then saw about half the
 * requests, each pinned window 3x the time per request.  Every pinned
 * window is held against it, not only the first: a pin made while the
 * client stayed put holds until it moves.  The device's other queues let
 * go too (c.pin_slower): one queue's pin moves the client for all of
 * them, and a queue timing its unpinned window while another's pin moves
 * the client would take that slow time for the unpinned one (which left
 * both queues pinned in one round of three before they did).  1.5x, not
 * less: with fio on one CPU pinned took up to 1.17x unpinned's time on
 * 7.3 and is kept, as the 12-05 boots had it 1.5x ahead (which placement
 * wins has changed between boots). */
#define SLOWER_NUM 3
#define SLOWER_DEN 2
#define SLOW_BACKOFF_MAX_MS 8000
/* A pin that has held this many windows lets go for one, to time the
 * unpinned placement again, and pins again after it: a window that ran
 * slow unpinned (the device's first requests) would otherwise keep a
 * slower pin for good.  It cost one round of three on 6.12 with fio free
 * before it.  Counted in windows served, not in time: it was 2 s of
 * wall time, which for the file backend at 4k QD1 on 7.3 (its unpinned
 * windows at 2x the pinned time a request) let go once every 16 pinned
 * windows and cost about 6 %; one window in 65 costs about 1.5 %. */
#define RETIME_WINDOWS 64
/* A sleep this long is a pause of the device, not a request's time: the
 * window starts again after it.  Before, a window that spanned the pause
 * between two clients (bench rounds a few seconds apart) took it for
 * requests served 30-60x slower and let go of a pin that held, with the
 * slower pin's backoff: the file backend at 4k QD1 on 7.3 ran unpinned
 * into the next client's first seconds and crossed CPUs 0.33-0.40 times
 * an I/O, where pinned it crossed 0.04-0.07 (bench/exp/file-qd1-pin.sh,
 * 2026-12-06).  No request at QD1 takes this long in the guest (p99.9
 * about 2 ms); what is timed is from one wake to the next, so a backend
 * slower than this a request (a remote one in trouble) is never pinned
 * by "auto" and stays SCHED_BATCH, where its own wait outweighs either. */
#define PAUSE_NS (100 * 1000000ull)

/* Gives the calling thread's io-wq workers the CPUs in SET.  io-wq names a
 * worker "iou-wrk-TID" after the thread whose ring it serves.  Runs only
 * when the pin changes, never per request, so reading /proc here is off
 * the request path. */
static void pin_workers(const cpu_set_t *set)
{
	char want[16], comm[32], path[sizeof(((struct dirent *)0)->d_name) + 8];
	struct dirent *e;
	DIR *dir = opendir("/proc/self/task");

	if (!dir)
		return;
	snprintf(want, sizeof(want), "iou-wrk-%d", gettid());
	while ((e = readdir(dir))) {
		int fd, n;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/comm", e->d_name);
		fd = openat(dirfd(dir), path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = (int)read(fd, comm, sizeof(comm) - 1);
		close(fd);
		if (n <= 0)
			continue;
		comm[n] = '\0';
		comm[strcspn(comm, "\n")] = '\0';
		if (!strcmp(comm, want))
			sched_setaffinity(atoi(e->d_name), sizeof(*set), set);
	}
	closedir(dir);
}

/* The queue's CPUs among those the process may run on (never onto one it
 * was kept off: taskset, a cpuset) in MINE, and those in ALL: 0 or -errno. */
static int queue_cpus(const struct ublk_queue *q, cpu_set_t *all, cpu_set_t *mine)
{
	if (sched_getaffinity(0, sizeof(*all), all) < 0)
		return -errno;
	CPU_AND(mine, &q->c.cpus, all);
	return 0;
}

void ublk_pin_fixed(struct ublk_queue *q)
{
	cpu_set_t all, mine = q->c.cpus;

	if (CPU_COUNT(&q->c.cpus) == 0)
		return;
	/* setting the queue's own CPUs would take the thread out of a taskset */
	queue_cpus(q, &all, &mine);
	if (CPU_COUNT(&mine) == 0)
		ublk_warn("dev %u queue %u: pin = true: none of the queue's CPUs is one this "
			  "process may run on (taskset, cpuset); left unpinned",
			  q->c.dev_id, q->c.q_id);
	else if (sched_setaffinity(0, sizeof(mine), &mine) < 0)
		ublk_warn("dev %u queue %u: cannot pin to its CPUs: %s", q->c.dev_id, q->c.q_id,
			  strerror(errno));
}

void ublk_pin_init(struct ublk_queue *q)
{
	struct ublk_autopin *a = &q->ap;

	if (q->c.pin != UBLK_PIN_AUTO || queue_cpus(q, &a->all, &a->mine) < 0)
		return;
	a->on = CPU_COUNT(&a->mine) > 0;
	a->backoff_ms = BACKOFF_MIN_MS;
}

enum ublk_pin_move ublk_pin_step(struct ublk_autopin *a, uint64_t now_ms, uint64_t ns_per_req,
				 bool told)
{
	/* asleep for (nearly) every request: they come one at a time */
	bool one_by_one = ublk_pace_one_by_one(a->waits, a->reqs);
	bool batches = ublk_pace_batches(a->waits, a->reqs);
	/* a pinned window against the unpinned one before the pin */
	bool slower = ns_per_req * SLOWER_DEN > a->free_ns * SLOWER_NUM;
	enum ublk_pin_move move = UBLK_PIN_STAY;

	if (!a->pinned && one_by_one && now_ms >= a->next_try_ms) {
		a->free_ns = ns_per_req;
		a->held = 0;
		move = UBLK_PIN_PIN;
	} else if (a->pinned && (batches || slower || told)) {
		uint64_t max = batches ? BACKOFF_MAX_MS : SLOW_BACKOFF_MAX_MS;

		if (a->held < 4) {
			a->next_try_ms = now_ms + a->backoff_ms;
			a->backoff_ms = a->backoff_ms * 2 > max ? max : a->backoff_ms * 2;
		} else {
			a->backoff_ms = BACKOFF_MIN_MS;
		}
		move = slower && !batches && !told ? UBLK_PIN_SLOWER : UBLK_PIN_UNPIN;
	} else if (a->pinned && a->held >= RETIME_WINDOWS) {
		a->next_try_ms = now_ms; /* pin again after one unpinned window */
		move = UBLK_PIN_UNPIN;
	} else if (a->pinned) {
		a->held++;
	}
	return move;
}

void ublk_pin_woke(struct ublk_autopin *a, uint64_t now_ns)
{
	if (a->woke_ns && now_ns - a->woke_ns > PAUSE_NS)
		a->waits = a->reqs = 0;
	a->woke_ns = now_ns;
}

void ublk_pin_decide(struct ublk_queue *q)
{
	struct ublk_autopin *a = &q->ap;
	uint64_t now = ublk_now_ns(); /* once a window, not a request */
	/* called once a window is full: reqs >= UBLK_PIN_WINDOW */
	uint64_t per_req = (now - a->window_ns) / a->reqs;
	uint32_t seen = q->c.pin_slower ? __atomic_load_n(q->c.pin_slower, __ATOMIC_RELAXED) : 0;
	bool told = seen != a->slower_seen;
	enum ublk_pin_move move;

	a->slower_seen = seen;
	move = ublk_pin_step(a, now / 1000000, per_req, told);
	if (move == UBLK_PIN_SLOWER && q->c.pin_slower)
		a->slower_seen = __atomic_add_fetch(q->c.pin_slower, 1, __ATOMIC_RELAXED);
	if (move != UBLK_PIN_STAY)
		ublk_dbg("dev %u queue %u: %s (%llu ns a request, unpinned %llu)", q->c.dev_id,
			 q->c.q_id, move == UBLK_PIN_PIN ? "pins" : move == UBLK_PIN_SLOWER ?
			 "lets go: slower pinned" : told ? "lets go: another queue's pin was slower" :
			 "lets go", (unsigned long long)per_req, (unsigned long long)a->free_ns);
	switch (move) {
	case UBLK_PIN_PIN:
		if (sched_setaffinity(0, sizeof(a->mine), &a->mine) == 0) {
			pin_workers(&a->mine);
			io_uring_register_iowq_aff(&q->ring, sizeof(a->mine), &a->mine);
			a->pinned = true;
		}
		break;
	case UBLK_PIN_UNPIN:
	case UBLK_PIN_SLOWER:
		if (sched_setaffinity(0, sizeof(a->all), &a->all) == 0) {
			pin_workers(&a->all);
			io_uring_unregister_iowq_aff(&q->ring);
			a->pinned = false;
		}
		break;
	case UBLK_PIN_STAY:
		break;
	}
}
