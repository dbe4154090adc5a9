/* SPDX-License-Identifier: MIT */
/*
 * queue_thread.c - one queue's thread: setup on the thread, the
 * fetch/commit loop, teardown; and the startup latch the device waits on.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../base/log.h"
#include "queue_private.h"

/* ---- startup latch ---- */

void ublk_latch_init(struct ublk_latch *l, unsigned count)
{
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	l->pending = count;
	l->err = 0;
}

void ublk_latch_destroy(struct ublk_latch *l)
{
	pthread_cond_destroy(&l->cond);
	pthread_mutex_destroy(&l->lock);
}

void ublk_latch_count_down(struct ublk_latch *l, int err)
{
	pthread_mutex_lock(&l->lock);
	if (err && !l->err)
		l->err = err;
	l->pending--;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

int ublk_latch_wait(struct ublk_latch *l)
{
	int err;

	pthread_mutex_lock(&l->lock);
	while (l->pending > 0)
		pthread_cond_wait(&l->cond, &l->lock);
	err = l->err;
	pthread_mutex_unlock(&l->lock);
	return err;
}

/* ---- setup and teardown, on the queue thread ---- */

static size_t page_round(size_t n)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);

	return (n + ps - 1) & ~(ps - 1);
}

/* Offset of queue q's descriptor array in /dev/ublkcN: every queue gets a
 * slot sized for the largest depth, whatever the real depth, at the
 * device's descriptor size. */
static off_t desc_offset(const struct ublk_queue *q)
{
	return UBLKSRV_CMD_BUF_OFFSET +
	       (off_t)q->c.q_id * (off_t)page_round((size_t)UBLK_MAX_QUEUE_DEPTH *
						    q->c.desc_size);
}

static void arm_stop(struct ublk_queue *q)
{
	struct io_uring_sqe *sqe = ublk_queue_get_sqe(q);

	io_uring_prep_poll_add(sqe, q->stop_fd, POLLIN);
	sqe->user_data = UBLK_UD_STOP;
}

static int queue_setup(struct ublk_queue *q)
{
	struct ublk_backend *b = q->c.backend;
	int ret;

	__atomic_store_n(&q->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELAXED);
	q->descs_len = page_round((size_t)q->c.depth * q->c.desc_size);
	q->descs = mmap(NULL, q->descs_len, PROT_READ, MAP_SHARED | MAP_POPULATE,
			q->c.cdev_fd, desc_offset(q));
	if (q->descs == MAP_FAILED) {
		q->descs = NULL;
		return -errno;
	}
	ret = ublk_queue_alloc_tags(q);
	if (ret < 0)
		return ret;
	ret = ublk_queue_ring_init(q, q->c.cdev_fd);
	if (ret < 0)
		return ret;
	if (q->c.batch) {
		ret = ublk_batch_init(q);
		if (ret < 0)
			return ret;
	}
	if (b->ops->queue_init) {
		ret = b->ops->queue_init(b, q);
		if (ret < 0)
			return ret;
	}
	q->backend_up = true;
	ublk_queue_watch(q);
	arm_stop(q);
	if (q->c.batch)
		return ublk_batch_start(q);
	for (unsigned t = q->c.tag_first; t < q->c.depth; t += q->c.tag_step)
		ublk_queue_prep_cmd(q, (uint16_t)t, UBLK_IO_FETCH_REQ, UBLK_U_IO_FETCH_REQ, -1);
	ret = io_uring_submit(&q->ring);
	return ret < 0 ? ret : 0;
}

static void queue_teardown(struct ublk_queue *q)
{
	struct ublk_backend *b = q->c.backend;

	if (q->backend_up)
		ublk_queue_unwatch(q);
	if (q->backend_up && b->ops->queue_exit)
		b->ops->queue_exit(b, q);
	q->backend_up = false;
	if (q->ring_up)
		io_uring_queue_exit(&q->ring); /* cancels fetches still held */
	q->ring_up = false;
	if (q->c.batch)
		ublk_batch_free(q);
	ublk_queue_free_tags(q);
	if (q->descs)
		munmap(q->descs, q->descs_len);
	q->descs = NULL;
}

/* Leaves when the kernel has aborted every tag (STOP_DEV), or when the
 * owner asked us to; either way only once no backend I/O still uses a
 * buffer.  Not at the first abort: STOP_DEV cancels the tags
 * one by one, and closing the ring while it does makes the ring's own
 * cancel meet a command STOP_DEV is completing (7.3 warns in
 * ublk_uring_cmd_cancel_fn, "io->cmd != cmd").  The owner asks only after
 * STOP_DEV has returned, so its cancelling is over by then.  Under batch
 * I/O, the kernel's end is FETCH_IO_CMDS's ABORT, and every commit staged
 * or sent must have completed. */
static bool queue_done(const struct ublk_queue *q)
{
	if (q->backend_inflight)
		return false;
	if (q->c.batch)
		return ublk_batch_idle(q);
	return q->stopping || q->aborted == q->nr_tags;
}

static void queue_loop(struct ublk_queue *q)
{
	while (!queue_done(q)) {
		int ret = ublk_queue_run_once(q);

		if (ret < 0) {
			ublk_err("dev %u queue %u: io_uring_enter: %s", q->c.dev_id,
				 q->c.q_id, strerror(-ret));
			break;
		}
	}
}

static void *queue_thread(void *arg)
{
	struct ublk_queue *q = arg;
	sigset_t all;
	int ret;

	/* Signals are for the main thread (it tears devices down), but for
	 * the watchdog's poke where the backend handles it. */
	sigfillset(&all);
	if (q->c.backend->caps & UBLK_CAN_INTERRUPT)
		sigdelset(&all, UBLK_INTERRUPT_SIGNAL);
	pthread_sigmask(SIG_SETMASK, &all, NULL);
	if (q->c.pin == UBLK_PIN_ON)
		ublk_pin_fixed(q);
	/* SCHED_BATCH until requests come one at a time (queue_sched.c) */
	ublk_sched_start(q);

	/* Memory reclaim may write dirty pages to our own device: an I/O
	 * flusher's allocations do not recurse into that writeback, which
	 * could otherwise wait on this very thread (ublksrv does the same).
	 * Needs CAP_SYS_RESOURCE, which a ublk server has. */
	if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) < 0)
		ublk_dbg("queue %u: PR_SET_IO_FLUSHER: %s", q->c.q_id, strerror(errno));

	ublk_pin_init(q);
	ret = queue_setup(q);
	ublk_latch_count_down(q->c.latch, ret);
	if (ret < 0)
		ublk_err("dev %u queue %u: setup failed: %s", q->c.dev_id, q->c.q_id,
			 strerror(-ret));
	else
		queue_loop(q);
	queue_teardown(q);
	return NULL;
}

/* ---- the device's side ---- */

struct ublk_queue *ublk_queue_new(const struct ublk_queue_conf *conf)
{
	struct ublk_queue *q = calloc(1, sizeof(*q));

	if (!q)
		return NULL;
	q->c = *conf;
	if (!q->c.desc_size)
		q->c.desc_size = sizeof(struct ublksrv_io_desc);
	if (!q->c.tag_step)
		q->c.tag_step = 1;
	q->nr_tags = q->c.tag_first < q->c.depth
		? (q->c.depth - q->c.tag_first + q->c.tag_step - 1u) / q->c.tag_step : 0;
	q->stats = conf->stats ? conf->stats : &q->own_stats;
	q->stop_fd = -1;
	return q;
}

void ublk_queue_free(struct ublk_queue *q)
{
	free(q);
}

int ublk_queue_start(struct ublk_queue *q)
{
	int ret;

	q->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (q->stop_fd < 0)
		return -errno;
	ret = pthread_create(&q->thread, NULL, queue_thread, q);
	if (ret) {
		close(q->stop_fd);
		q->stop_fd = -1;
		return -ret;
	}
	q->thread_started = true;
	return 0;
}

void ublk_queue_request_stop(struct ublk_queue *q)
{
	uint64_t one = 1;

	if (q->stop_fd >= 0 && write(q->stop_fd, &one, sizeof(one)) < 0)
		ublk_warn("queue %u: stop eventfd: %s", q->c.q_id, strerror(errno));
}

void ublk_queue_join(struct ublk_queue *q)
{
	if (q->thread_started) {
		pthread_join(q->thread, NULL);
		q->thread_started = false;
	}
	if (q->stop_fd >= 0) {
		close(q->stop_fd);
		q->stop_fd = -1;
	}
}

void ublk_queue_get_stats(const struct ublk_queue *q, struct ublk_queue_stats *out)
{
	const uint64_t *from = (const uint64_t *)q->stats;
	uint64_t *to = (uint64_t *)out;

	/* word by word: each counter is whole, the set only nearly coherent */
	for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
		to[i] = __atomic_load_n(&from[i], __ATOMIC_RELAXED);
}

struct ublk_queue_stats *ublk_queue_stats_block(struct ublk_queue *q)
{
	return q->stats;
}

pid_t ublk_queue_tid(const struct ublk_queue *q)
{
	return __atomic_load_n(&q->tid, __ATOMIC_RELAXED);
}

const cpu_set_t *ublk_queue_cpus(const struct ublk_queue *q)
{
	return &q->c.cpus;
}
