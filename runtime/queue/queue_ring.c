/* SPDX-License-Identifier: MIT */
/*
 * queue_ring.c - what a queue is made of, set up on its thread: the ring
 * (with the char device as fixed file 0 and, under zero copy, a buffer
 * slot per tag), each tag's buffer and io, the watchdog's view and the
 * backend's tick.  The requests themselves are queue.c's.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "queue_private.h"

/* The backend's tick: a one-shot timeout, armed again at each.  (Multishot
 * timeouts need 6.4 and a liburing newer than Debian 12's.) */
void ublk_queue_arm_tick(struct ublk_queue *q)
{
	struct io_uring_sqe *sqe = ublk_queue_get_sqe(q);

	io_uring_prep_timeout(sqe, &q->tick, 0, 0);
	sqe->user_data = UBLK_UD_TICK;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* poll_us: submit, then spin up to poll_us for the next event before
 * sleeping in the kernel.  A request for us arrives as deferred task work,
 * which the kernel announces with IORING_SQ_TASKRUN in the ring's flags
 * and which runs only when we enter; spinning on that flag costs no system
 * call until there is work.  Called only after a pass that had events, so
 * an idle queue spins once and then sleeps.
 * Measured (bench/results/2026-12-02-*-poll, TCG, memory backend
 * unpinned, 4k randread QD1): 300 us took 3.7k to 6.0k IOPS on 6.12 (163
 * to 224 us of server CPU per I/O) and 3.3k to 3.8k on 7.3 (204 to 350
 * us), and cost 7-14 % with two jobs QD64; 50 us gained nothing, shorter
 * than the client's round trip there.  So it is off by default. */
int ublk_queue_poll_then_wait(struct ublk_queue *q)
{
	int ret = io_uring_submit(&q->ring);
	uint64_t end;

	if (ret < 0 || io_uring_cq_ready(&q->ring))
		return ret;
	end = ublk_now_ns() + (uint64_t)q->c.poll_us * 1000;
	for (unsigned i = 1;; i++) {
		if (IO_URING_READ_ONCE(*q->ring.sq.kflags) & IORING_SQ_TASKRUN) {
			ret = io_uring_get_events(&q->ring);
			if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
				return ret;
		}
		if (io_uring_cq_ready(&q->ring))
			return 0;
		/* the clock is dear under emulation: read it every 64 spins */
		if (i % 64 == 0 && ublk_now_ns() >= end)
			break;
		cpu_relax();
	}
	return io_uring_submit_and_wait(&q->ring, 1);
}

void ublk_queue_watch(struct ublk_queue *q)
{
	struct ublk_backend *b = q->c.backend;

	q->watch = (struct ublk_watch){
		.dev_id = q->c.dev_id, .q_id = q->c.q_id, .budget_ms = b->budget_ms,
		.interruptible = (b->caps & UBLK_CAN_INTERRUPT) != 0, .thread = pthread_self(),
	};
	if (b->budget_ms)
		ublk_watch_add(&q->watch);
	if (b->ops->tick) {
		q->tick.tv_sec = UBLK_TICK_MS / 1000;
		q->tick.tv_nsec = (UBLK_TICK_MS % 1000) * 1000000LL;
		ublk_queue_arm_tick(q);
	}
}

void ublk_queue_unwatch(struct ublk_queue *q)
{
	if (q->watch.budget_ms)
		ublk_watch_del(&q->watch);
}

bool ublk_queue_wedged(const struct ublk_queue *q)
{
	return ublk_watch_wedged(&q->watch);
}

uint64_t ublk_queue_busy_ms(const struct ublk_queue *q)
{
	uint64_t since = __atomic_load_n(&q->watch.busy_since_ms, __ATOMIC_RELAXED);

	return since ? ublk_now_ms_coarse() - since : 0;
}

int ublk_queue_ring_init(struct ublk_queue *q, int fd)
{
	/* room for a commit and a backend op per tag (and a buffer command
	 * each way under UBLK_ZC_REGISTER), plus the stop poll */
	unsigned entries = (q->c.zero_copy == UBLK_ZC_REGISTER || q->c.auto_fallback ? 4u : 2u) *
			   q->c.depth + 2;
	struct io_uring_params p;
	int ret;

	memset(&p, 0, sizeof(p));
	/* TASKRUN_FLAG: the kernel marks the ring when task work waits for
	 * us, which is what ublk_queue_poll_then_wait spins on */
	p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
		  IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
	ret = io_uring_queue_init_params(entries, &q->ring, &p);
	if (ret == -EINVAL) {
		/* kernels before 6.1 lack DEFER_TASKRUN */
		memset(&p, 0, sizeof(p));
		ret = io_uring_queue_init_params(entries, &q->ring, &p);
	}
	if (ret < 0)
		return ret;
	ret = io_uring_register_files(&q->ring, &fd, 1);
	/* The ring's own fd registered, so that io_uring_enter skips the
	 * fd table (a refcount round trip per call: the process has other
	 * threads).  Per task: the queue thread, which made the ring, is
	 * the one that enters it.  Kernels before 5.18 lack it: the plain
	 * fd serves.  Null, 4k QD1, 7.3 guest, medians of 5 interleaved
	 * rounds: 3.48k against 3.32k IOPS, 102 against 107 us of system
	 * CPU per I/O (6.12: within the rounds' spread). */
	if (ret >= 0)
		io_uring_register_ring_fd(&q->ring);
	/* zero copy: one buffer slot per tag, filled per request */
	if (ret >= 0 && q->c.zero_copy != UBLK_ZC_NONE)
		ret = io_uring_register_buffers_sparse(&q->ring, q->c.depth);
	if (ret < 0) {
		io_uring_queue_exit(&q->ring);
		return ret;
	}
	q->ring_up = true;
	return 0;
}

int ublk_queue_alloc_tags(struct ublk_queue *q)
{
	size_t total = (size_t)q->c.depth * q->c.max_io;

	/* One mapping for every tag's buffer; pages appear when first used. */
	q->bufs = mmap(NULL, total, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (q->bufs == MAP_FAILED) {
		q->bufs = NULL;
		return -errno;
	}
	q->ios = calloc(q->c.depth, sizeof(*q->ios));
	q->timed = calloc(q->c.depth, sizeof(*q->timed));
	if (!q->ios || !q->timed)
		return -ENOMEM;
	for (unsigned t = 0; t < q->c.depth; t++) {
		q->ios[t].tag = (uint16_t)t;
		q->ios[t].buf = q->bufs + (size_t)t * q->c.max_io;
	}
	return 0;
}

void ublk_queue_free_tags(struct ublk_queue *q)
{
	if (q->bufs)
		munmap(q->bufs, (size_t)q->c.depth * q->c.max_io);
	free(q->ios);
	free(q->timed);
	q->bufs = NULL;
	q->ios = NULL;
	q->timed = NULL;
}
