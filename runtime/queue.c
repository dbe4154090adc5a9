/* SPDX-License-Identifier: MIT */
/*
 * queue.c - one queue's thread: setup, the fetch/commit loop, teardown.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "queue.h"

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

/* ---- helpers ---- */

static inline void stat_add(uint64_t *p, uint64_t v)
{
	/* single writer: a relaxed load/store pair is a plain add, no lock */
	__atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

static size_t page_round(size_t n)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);

	return (n + ps - 1) & ~(ps - 1);
}

/* Offset of queue q's descriptor array in /dev/ublkcN: every queue gets a
 * slot sized for the largest depth, whatever the real depth. */
static off_t desc_offset(uint16_t q_id)
{
	return UBLKSRV_CMD_BUF_OFFSET +
	       (off_t)q_id * (off_t)page_round(UBLK_MAX_QUEUE_DEPTH *
					       sizeof(struct ublksrv_io_desc));
}

static struct io_uring_sqe *get_sqe(struct ublk_queue *q)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);

	if (!sqe) {
		/* SQ full: flush what we have; the kernel consumes SQEs at
		 * submit time, so the next get succeeds. */
		io_uring_submit(&q->ring);
		sqe = io_uring_get_sqe(&q->ring);
	}
	if (!sqe) {
		/* The ring has room for a command and a backend op per tag, so
		 * this is a backend submitting more than one op per request. */
		ublk_err("queue %u: submission ring overflow", q->q_id);
		abort();
	}
	return sqe;
}

static void prep_io_cmd(struct ublk_queue *q, uint16_t tag, unsigned legacy_op,
			unsigned encoded_op, int result)
{
	struct io_uring_sqe *sqe = get_sqe(q);
	struct ublksrv_io_cmd *cmd = (struct ublksrv_io_cmd *)sqe->cmd;

	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = 0; /* the char device, registered as fixed file 0 */
	sqe->flags = IOSQE_FIXED_FILE;
	sqe->cmd_op = q->ioctl_encode ? encoded_op : legacy_op;
	sqe->user_data = ublk_ud(tag, UBLK_UD_CMD, 0);
	cmd->q_id = q->q_id;
	cmd->tag = tag;
	cmd->result = result;
	/* with user copy the kernel wants no buffer: data moves by cdev I/O */
	cmd->addr = q->user_copy ? 0 : (uint64_t)(uintptr_t)q->tags[tag].buf;
	q->cmd_inflight++;
}

void ublk_queue_complete(struct ublk_queue *q, uint16_t tag, int result)
{
	const struct ublksrv_io_desc *iod = &q->descs[tag];
	unsigned op = ublksrv_get_op(iod);
	struct ublk_tag *t = &q->tags[tag];

	if (t->hook) {
		ublk_complete_hook hook = t->hook;

		t->hook = NULL;
		hook(q, tag, result);
		return;
	}
	if (result < 0) {
		stat_add(&q->stats.errors, 1);
	} else {
		if (op < UBLK_STAT_OPS)
			stat_add(&q->stats.ops[op], 1);
		if (op == UBLK_IO_OP_READ)
			stat_add(&q->stats.read_bytes, (uint64_t)result);
		else if (op == UBLK_IO_OP_WRITE)
			stat_add(&q->stats.write_bytes, (uint64_t)result);
	}
	prep_io_cmd(q, tag, UBLK_IO_COMMIT_AND_FETCH_REQ,
		    UBLK_U_IO_COMMIT_AND_FETCH_REQ, result);
}

struct io_uring_sqe *ublk_queue_backend_sqe(struct ublk_queue *q, struct ublk_backend *b,
					     uint16_t tag)
{
	struct io_uring_sqe *sqe = get_sqe(q);

	q->tags[tag].io_owner = b;
	/* liburing's prep helpers leave user_data alone, so set it here */
	sqe->user_data = ublk_ud(tag, UBLK_UD_BACKEND, 0);
	q->backend_inflight++;
	return sqe;
}

/* ---- the loop ---- */

static void arm_stop(struct ublk_queue *q)
{
	struct io_uring_sqe *sqe = get_sqe(q);

	io_uring_prep_poll_add(sqe, q->stop_fd, POLLIN);
	sqe->user_data = ublk_ud(0, UBLK_UD_STOP, 0);
}

static void handle_request(struct ublk_queue *q, uint16_t tag)
{
	const struct ublksrv_io_desc *iod = &q->descs[tag];
	struct ublk_tag *t = &q->tags[tag];
	int ret;

	t->req = (struct ublk_io_req){
		.op = ublksrv_get_op(iod),
		.flags = iod->op_flags & ~0xffu,
		.tag = tag,
		.len = iod->nr_sectors << 9,
		.offset = iod->start_sector << 9,
		.buf = t->buf,
	};
	t->done = 0;
	ret = q->backend->ops->handle_io(q->backend, q, &t->req);
	if (ret != UBLK_IO_QUEUED)
		ublk_queue_complete(q, tag, ret);
}

static void handle_cqe(struct ublk_queue *q, const struct io_uring_cqe *cqe)
{
	uint64_t ud = cqe->user_data;
	uint16_t tag = ublk_ud_tag(ud);

	switch (ublk_ud_kind(ud)) {
	case UBLK_UD_CMD:
		q->cmd_inflight--;
		if (cqe->res == UBLK_IO_RES_OK) {
			handle_request(q, tag);
		} else if (cqe->res == UBLK_IO_RES_ABORT) {
			q->stopping = true; /* STOP_DEV: this tag is done */
		} else {
			ublk_err("dev %u queue %u tag %u: io command failed: %s",
				 q->dev_id, q->q_id, tag, strerror(-cqe->res));
			q->stopping = true;
		}
		break;
	case UBLK_UD_BACKEND: {
		struct ublk_backend *b = q->tags[tag].io_owner;

		q->backend_inflight--;
		b->ops->io_done(b, q, tag, cqe);
		break;
	}
	case UBLK_UD_STOP:
		q->stopping = true;
		break;
	}
}

/* Leaves when the kernel aborted every tag (STOP_DEV), or when the owner
 * asked us to and no backend I/O is still using a buffer. */
static bool queue_done(const struct ublk_queue *q)
{
	return q->stopping && q->backend_inflight == 0;
}

static void queue_loop(struct ublk_queue *q)
{
	while (!queue_done(q)) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		int ret = io_uring_submit_and_wait(&q->ring, 1);

		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
			ublk_err("dev %u queue %u: io_uring_enter: %s",
				 q->dev_id, q->q_id, strerror(-ret));
			break;
		}
		io_uring_for_each_cqe(&q->ring, head, cqe) {
			handle_cqe(q, cqe);
			n++;
		}
		io_uring_cq_advance(&q->ring, n);
	}
}

/* ---- setup and teardown, on the queue thread ---- */

static int ring_init(struct ublk_queue *q)
{
	/* room for a commit and a backend op per tag, plus the stop poll */
	unsigned entries = 2u * q->depth + 2;
	struct io_uring_params p;
	int ret;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
		  IORING_SETUP_DEFER_TASKRUN;
	ret = io_uring_queue_init_params(entries, &q->ring, &p);
	if (ret == -EINVAL) {
		/* kernels before 6.1 lack DEFER_TASKRUN */
		memset(&p, 0, sizeof(p));
		ret = io_uring_queue_init_params(entries, &q->ring, &p);
	}
	if (ret < 0)
		return ret;
	ret = io_uring_register_files(&q->ring, &q->cdev_fd, 1);
	if (ret < 0)
		io_uring_queue_exit(&q->ring);
	return ret;
}

static int queue_setup(struct ublk_queue *q)
{
	size_t buf_total = (size_t)q->depth * q->max_io;
	int ret;

	q->tid = (pid_t)syscall(SYS_gettid);
	q->descs_len = page_round(q->depth * sizeof(struct ublksrv_io_desc));
	q->descs = mmap(NULL, q->descs_len, PROT_READ, MAP_SHARED | MAP_POPULATE,
			q->cdev_fd, desc_offset(q->q_id));
	if (q->descs == MAP_FAILED) {
		q->descs = NULL;
		return -errno;
	}
	/* One mapping for every tag's buffer; pages appear when first used. */
	q->bufs = mmap(NULL, buf_total, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (q->bufs == MAP_FAILED) {
		q->bufs = NULL;
		return -errno;
	}
	q->tags = calloc(q->depth, sizeof(*q->tags));
	if (!q->tags)
		return -ENOMEM;
	for (unsigned t = 0; t < q->depth; t++)
		q->tags[t].buf = q->bufs + (size_t)t * q->max_io;

	ret = ring_init(q);
	if (ret < 0)
		return ret;
	if (q->backend->ops->queue_init) {
		ret = q->backend->ops->queue_init(q->backend, q);
		if (ret < 0)
			return ret;
	}
	arm_stop(q);
	for (unsigned t = 0; t < q->depth; t++)
		prep_io_cmd(q, (uint16_t)t, UBLK_IO_FETCH_REQ, UBLK_U_IO_FETCH_REQ, -1);
	ret = io_uring_submit(&q->ring);
	return ret < 0 ? ret : 0;
}

static void queue_teardown(struct ublk_queue *q, bool ring_up)
{
	if (q->backend->ops->queue_exit && ring_up)
		q->backend->ops->queue_exit(q->backend, q);
	if (ring_up)
		io_uring_queue_exit(&q->ring); /* cancels fetches still held */
	if (q->bufs)
		munmap(q->bufs, (size_t)q->depth * q->max_io);
	if (q->descs)
		munmap(q->descs, q->descs_len);
	free(q->tags);
	q->bufs = NULL;
	q->descs = NULL;
	q->tags = NULL;
}

static void *queue_thread(void *arg)
{
	struct ublk_queue *q = arg;
	sigset_t all;
	int ret;

	/* Signals are for the main thread (it tears devices down). */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	if (q->pin && CPU_COUNT(&q->cpus) > 0 &&
	    sched_setaffinity(0, sizeof(q->cpus), &q->cpus) < 0)
		ublk_warn("dev %u queue %u: cannot pin to its CPUs: %s",
			  q->dev_id, q->q_id, strerror(errno));
	q->cpu = sched_getcpu();
	/* SCHED_BATCH: a waking queue thread does not preempt the task that
	 * submits I/O on this CPU.  The submitter keeps queueing until it
	 * waits, and we then serve its whole batch in one pass; preempting it
	 * per request cost 2.6x in throughput (bench/, 4k QD64, 2 jobs). */
	if (sched_setscheduler(0, SCHED_BATCH, &(struct sched_param){ 0 }) < 0)
		ublk_dbg("queue %u: SCHED_BATCH: %s", q->q_id, strerror(errno));

	ret = queue_setup(q);
	ublk_latch_count_down(q->latch, ret);
	if (ret < 0) {
		ublk_err("dev %u queue %u: setup failed: %s", q->dev_id,
			 q->q_id, strerror(-ret));
		queue_teardown(q, q->ring.ring_fd > 0);
		return NULL;
	}
	queue_loop(q);
	queue_teardown(q, true);
	return NULL;
}

int ublk_queue_start(struct ublk_queue *q)
{
	int ret;

	q->ring.ring_fd = -1;
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
		ublk_warn("queue %u: stop eventfd: %s", q->q_id, strerror(errno));
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
