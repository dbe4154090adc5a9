/* SPDX-License-Identifier: MIT */
/*
 * queue.c - one queue's requests: from the kernel's descriptor to the
 * backend, the completion protocol of backend.h, and the one commit each
 * request ends with.  The thread around it is queue_thread.c.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../base/log.h"
#include "queue_private.h"

static inline void stat_add(uint64_t *p, uint64_t v)
{
	/* single writer: a relaxed load/store pair is a plain add, no lock */
	__atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

struct io_uring_sqe *ublk_queue_get_sqe(struct ublk_queue *q)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&q->ring);

	if (!sqe) {
		/* SQ full: flush what we have; the kernel consumes SQEs at
		 * submit time, so the next get succeeds. */
		io_uring_submit(&q->ring);
		sqe = io_uring_get_sqe(&q->ring);
	}
	if (!sqe) {
		ublk_err("dev %u queue %u: submission ring overflow", q->c.dev_id, q->c.q_id);
		abort();
	}
	return sqe;
}

struct io_uring_sqe *ublk_queue_cmd_sqe(struct ublk_queue *q, unsigned op, uint64_t ud)
{
	struct io_uring_sqe *sqe = ublk_queue_get_sqe(q);

	memset(sqe, 0, sizeof(*sqe));
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = 0; /* the char device, registered as fixed file 0 */
	sqe->flags = IOSQE_FIXED_FILE;
	sqe->cmd_op = op;
	sqe->user_data = ud;
	return sqe;
}

void ublk_queue_prep_cmd(struct ublk_queue *q, uint16_t tag, unsigned legacy_op,
			 unsigned encoded_op, int result)
{
	struct io_uring_sqe *sqe = ublk_queue_cmd_sqe(q, q->c.ioctl_encode ? encoded_op : legacy_op,
						      ublk_ud_cmd(tag));
	struct ublksrv_io_cmd *cmd = (struct ublksrv_io_cmd *)sqe->cmd;

	cmd->q_id = q->c.q_id;
	cmd->tag = tag;
	cmd->result = result;
	/* with user copy or zero copy the kernel wants no buffer address */
	if (!q->c.user_copy && q->c.zero_copy == UBLK_ZC_NONE)
		cmd->addr = (uint64_t)(uintptr_t)ublk_queue_tag_buf(q, tag);
	/* AUTO_BUF_REG: the SQE's own addr names the buffer slot the next
	 * request's pages go to (struct ublk_auto_buf_reg: index in bits
	 * 0-15, no flags: a failed registration fails that request).  The
	 * fallback test asks for slot 0xffff, which no ring of ours has, and
	 * to be told (UBLK_IO_F_NEED_REG_BUF) rather than fail. */
	if (q->c.zero_copy == UBLK_ZC_AUTO_REG)
		sqe->addr = q->c.auto_fallback ? 0xffff | UBLK_AUTO_BUF_REG_FALLBACK << 16 : tag;
	q->cmd_inflight++;
}

/* Room for `n` SQEs in one submission: a link must not be cut by the
 * flush ublk_queue_get_sqe does when the ring is full. */
static void reserve_sqes(struct ublk_queue *q, unsigned n)
{
	if (io_uring_sq_space_left(&q->ring) < n)
		io_uring_submit(&q->ring);
}

/* UBLK_ZC_REGISTER: (un)registers tag's request pages as buffer slot
 * `tag`; the completion is a command's, flagged UBLK_UD_BUF. */
static struct io_uring_sqe *prep_buf_cmd(struct ublk_queue *q, uint16_t tag, bool reg)
{
	struct io_uring_sqe *sqe = ublk_queue_cmd_sqe(q, reg ? UBLK_U_IO_REGISTER_IO_BUF
							  : UBLK_U_IO_UNREGISTER_IO_BUF,
						      ublk_ud_cmd(tag) | UBLK_UD_BUF);
	struct ublksrv_io_cmd *cmd = (struct ublksrv_io_cmd *)sqe->cmd;

	cmd->q_id = q->c.q_id;
	cmd->tag = tag;
	cmd->addr = tag; /* the buffer slot */
	return sqe;
}

/* Whether the queue registers io's pages itself (and gives the slot back
 * at its commit): always under REGISTER; under AUTO_REG when the kernel
 * could not (UBLK_IO_F_NEED_REG_BUF, asked for by the fallback flag). */
static bool registered_by_us(const struct ublk_queue *q, const struct ublk_io *io)
{
	return (q->c.zero_copy == UBLK_ZC_REGISTER || (io->flags & UBLK_IO_F_NEED_REG_BUF)) &&
	       ublk_io_buf_index(q, io) >= 0;
}

static void time_pass(struct ublk_queue *q);

/* The end of a device request: count it and queue its COMMIT_AND_FETCH
 * (the loop submits it with the rest of the batch), or under batch I/O
 * stage it for the pass's one COMMIT_IO_CMDS. */
static void commit(struct ublk_queue *q, const struct ublk_io *io)
{
	struct ublk_queue_stats *st = q->stats;
	int result = ublk_io_track(io)->result;

	if (q->c.latency) { /* timed at the end of the pass (time_pass) */
		if (q->nr_timed == q->c.depth)
			time_pass(q);
		q->timed[q->nr_timed++] = io;
	}
	stat_add(&st->inflight, (uint64_t)-1);
	if (result < 0) {
		stat_add(&st->errors, 1);
		stat_add(&st->errnos[(unsigned)-(long)result < UBLK_STATS_ERRNOS ? -result : 0], 1);
	} else {
		if (io->op < UBLK_STATS_OPS)
			stat_add(&st->ops[io->op], 1);
		if (io->op == UBLK_IO_OP_READ)
			stat_add(&st->read_bytes, (uint64_t)result);
		else if (io->op == UBLK_IO_OP_WRITE)
			stat_add(&st->write_bytes, (uint64_t)result);
	}
	if (__builtin_expect(q->host, 0)) {
		q->host_commits++; /* a host queue has no kernel to commit to */
		return;
	}
	/* REGISTER: the slot is given back first.  Under batch I/O on an SQE
	 * of its own (the kernel takes it beside the batch commands, 7.0+):
	 * it goes ahead of the pass's COMMIT_IO_CMDS on the ring, and the
	 * kernel completes the request only once both have come, in either
	 * order (the buffer holds a reference on it).  Otherwise hard-linked
	 * to the COMMIT_AND_FETCH, which commits whatever it says. */
	if (registered_by_us(q, io)) {
		struct io_uring_sqe *unreg;

		reserve_sqes(q, q->c.batch ? 1 : 2);
		unreg = prep_buf_cmd(q, io->tag, false);
		if (!q->c.batch)
			unreg->flags |= IOSQE_IO_HARDLINK;
	}
	if (q->c.batch) { /* sent with the pass's others (queue_batch.c) */
		ublk_batch_stage(q, io->tag, result);
		return;
	}
	ublk_queue_prep_cmd(q, io->tag, UBLK_IO_COMMIT_AND_FETCH_REQ,
			    UBLK_U_IO_COMMIT_AND_FETCH_REQ, result);
}

static void op_done(struct ublk_queue *q, struct ublk_io *io, int res);

/* io's backend returned `ret`.  Once nothing is outstanding, the last
 * result it returned is io's: committed, or handed to the parent. */
static void settle(struct ublk_queue *q, struct ublk_io *io, int ret)
{
	struct ublk_io_track *t = ublk_io_track(io);

	if (ret != UBLK_IO_QUEUED)
		t->result = ret;
	if (t->outstanding)
		return;
	if (t->result == UBLK_IO_QUEUED) {
		ublk_err("dev %u queue %u tag %u: backend '%s' said queued with nothing "
			 "outstanding: EIO", q->c.dev_id, q->c.q_id, io->tag,
			 t->backend->ops->name);
		t->result = -EIO;
	}
	if (t->parent)
		op_done(q, t->parent, t->result);
	else
		commit(q, io);
}

/* One of io's operations finished with res: its backend's io_done says
 * what that makes of the io; a backend without io_done passes res on as
 * the io's result (backend.h). */
static void op_done(struct ublk_queue *q, struct ublk_io *io, int res)
{
	struct ublk_io_track *t = ublk_io_track(io);
	struct ublk_backend *b = t->backend;

	t->outstanding--;
	settle(q, io, b->ops->io_done ? b->ops->io_done(b, q, io, res) : res);
}

/* Starts io on backend b, the queue's or a delegate's. */
static void begin(struct ublk_io *io, struct ublk_backend *b)
{
	struct ublk_io_track *t = ublk_io_track(io);

	t->backend = b;
	t->parent = NULL;
	t->result = UBLK_IO_QUEUED;
	t->outstanding = 0;
	io->scratch = 0;
}

/* UBLK_ZC_REGISTER: the request's pages are registered by a command
 * linked to the backend's first SQE (a failed registration cancels that
 * operation: the request fails, and its commit still unregisters).  A
 * backend that started no SQE gets no link, and that is known before the
 * result is settled: a result given at once commits, and a link left on
 * would chain the commit behind the registration, where a failed one
 * would cancel it, strand the tag and stop the queue. */
static void register_then_handle(struct ublk_queue *q, struct ublk_io *io)
{
	struct ublk_backend *b = q->c.backend;
	struct io_uring_sqe *reg;
	unsigned tail;
	int ret;

	reserve_sqes(q, 2);
	reg = prep_buf_cmd(q, io->tag, true);
	reg->flags |= IOSQE_IO_LINK;
	tail = q->ring.sq.sqe_tail;
	ret = b->ops->handle_io(b, q, io);
	if (q->ring.sq.sqe_tail == tail)
		reg->flags &= (uint8_t)~IOSQE_IO_LINK;
	settle(q, io, ret);
}

/* Where io's data is (UBLK_F_SHMEM_ZC): in a registered file, where the
 * kernel names it, or the tag's buffer; -EIO for a place past the file. */
static int shmem_place(struct ublk_queue *q, struct ublk_io *io,
		       const struct ublksrv_io_desc *iod)
{
	uint64_t idx = iod->addr >> UBLK_SHMEM_ZC_IDX_OFF & UBLK_SHMEM_ZC_IDX_MASK;
	uint64_t off = iod->addr & UBLK_SHMEM_ZC_OFF_MASK;

	if (!(io->flags & UBLK_IO_F_SHMEM_ZC)) {
		io->buf = ublk_queue_tag_buf(q, io->tag);
		return 0;
	}
	if (idx >= q->c.nr_shmem || off > q->c.shmem[idx].len ||
	    io->len > q->c.shmem[idx].len - off) {
		ublk_err("dev %u queue %u tag %u: the kernel names %u bytes at %llu of shared "
			 "buffer %llu, which this server has not registered so: EIO",
			 q->c.dev_id, q->c.q_id, io->tag, io->len, (unsigned long long)off,
			 (unsigned long long)idx);
		return -EIO;
	}
	io->buf = q->c.shmem[idx].base + off;
	stat_add(&q->stats->shmem_zc, 1);
	return 0;
}

void ublk_queue_handle_request(struct ublk_queue *q, uint16_t tag)
{
	const struct ublksrv_io_desc *iod = ublk_queue_desc(q, tag);
	struct ublk_io *io = &q->ios[tag];
	struct ublk_backend *b = q->c.backend;

	begin(io, b);
	/* an "auto" window's time runs from its first request, so that the
	 * idle time before it (a device before its first I/O) is not
	 * counted: one clock read a window */
	if (q->ap.reqs++ == 0 && q->ap.on)
		q->ap.window_ns = ublk_now_ns();
	if (q->ap.slept) { /* the first request after a sleep: it woke us */
		q->ap.waits++;
		q->ap.slept = false;
	}
	stat_add(&q->stats->inflight, 1);
	ublk_io_track(io)->start_ns = q->pass_ns;
	io->op = (uint8_t)ublksrv_get_op(iod);
	io->flags = iod->op_flags & ~0xffu;
	io->len = iod->nr_sectors << 9;
	io->offset = iod->start_sector << 9;
	/* The kernel keeps data requests within max_io (max_sectors) and the
	 * others within UBLK_MAX_REQ_BYTES (device.c): past that a backend
	 * would overrun the tag's buffer, or its byte count would not fit its
	 * result.  Never seen; one compare to be sure. */
	if (iod->nr_sectors >
	    (io->op <= UBLK_IO_OP_WRITE ? q->c.max_io : UBLK_MAX_REQ_BYTES) >> 9) {
		ublk_err("dev %u queue %u tag %u: the kernel sent %u sectors, more than the "
			 "device allows: EIO", q->c.dev_id, q->c.q_id, io->tag, iod->nr_sectors);
		settle(q, io, -EIO);
		return;
	}
	if (q->c.nr_shmem && shmem_place(q, io, iod) < 0) {
		settle(q, io, -EIO);
		return;
	}
	if (registered_by_us(q, io)) {
		if (io->flags & UBLK_IO_F_NEED_REG_BUF)
			stat_add(&q->stats->reg_fallback, 1);
		register_then_handle(q, io);
		return;
	}
	settle(q, io, b->ops->handle_io(b, q, io));
}

void ublk_queue_handle_cqe(struct ublk_queue *q, const struct io_uring_cqe *cqe)
{
	uint64_t ud = cqe->user_data;

	switch (ublk_ud_kind(ud)) {
	case UBLK_UD_IO:
		q->backend_inflight--;
		op_done(q, ublk_ud_to_io(ud), cqe->res);
		break;
	case UBLK_UD_CMD:
		if (ud & UBLK_UD_BATCH) {
			ublk_batch_handle_cqe(q, cqe);
			break;
		}
		if (ud & UBLK_UD_BUF) { /* a failure shows in the linked operation */
			if (cqe->res < 0 && cqe->res != -ECANCELED)
				ublk_dbg("dev %u queue %u tag %u: buffer (un)register: %s",
					 q->c.dev_id, q->c.q_id, ublk_ud_tag(ud),
					 strerror(-cqe->res));
			break;
		}
		q->cmd_inflight--;
		if (cqe->res == UBLK_IO_RES_OK) {
			ublk_queue_handle_request(q, ublk_ud_tag(ud));
		} else if (cqe->res == UBLK_IO_RES_NEED_GET_DATA) {
			/* UBLK_F_NEED_GET_DATA: a write without its data yet;
			 * naming the tag's buffer has the kernel copy it there,
			 * and that command completes OK with the request */
			ublk_queue_prep_cmd(q, ublk_ud_tag(ud), UBLK_IO_NEED_GET_DATA,
					    UBLK_U_IO_NEED_GET_DATA, 0);
		} else if (cqe->res == UBLK_IO_RES_ABORT) {
			q->aborted++; /* STOP_DEV: this tag is done */
		} else {
			ublk_err("dev %u queue %u tag %u: io command failed: %s", q->c.dev_id,
				 q->c.q_id, ublk_ud_tag(ud), strerror(-cqe->res));
			q->stopping = true;
		}
		break;
	case UBLK_UD_STOP:
		q->stopping = true;
		break;
	case UBLK_UD_TICK: /* cancel completions carry this too: ignored */
		if (ud == UBLK_UD_TICK && q->c.backend->ops->tick) {
			q->c.backend->ops->tick(q->c.backend, q);
			ublk_queue_arm_tick(q);
		} else if (ublk_ud_to_poll(ud)) {
			struct ublk_poll *p = ublk_ud_to_poll(ud);

			p->armed = false;
			p->ready(q, p, cqe->res);
		}
		break;
	}
}

/* Hands external completions to their backends, in the order they came;
 * io_done may start (and finish) more, which join the end. */
static void deliver_external(struct ublk_queue *q)
{
	struct ublk_io *io;

	while ((io = q->done_head)) {
		struct ublk_io_track *t = ublk_io_track(io);

		q->done_head = t->done_next;
		if (!q->done_head)
			q->done_tail = NULL;
		t->done_next = NULL;
		q->backend_inflight--;
		op_done(q, io, t->done_res);
	}
}

/* The latency of the requests committed in this pass: from the pass that
 * took each (its start) to the end of this one.  Two clock reads per pass,
 * not two per request: per request they cost 13% of 4k IOPS in the TCG
 * guest, where the clock is a syscall (bench, 6.12, randread QD64 2 jobs:
 * 40.8k against 47.0k without histograms, 25.7 against 20.5 us of CPU per
 * I/O); per pass, 46.9k against 46.8k and 20.5 against 20.0 us
 * (bench/results/2026-11-25-*-stats-cost*.md). */
static void time_pass(struct ublk_queue *q)
{
	uint64_t now = ublk_now_ns();
	struct ublk_queue_stats *st = q->stats;

	for (unsigned i = 0; i < q->nr_timed; i++) {
		const struct ublk_io *io = q->timed[i];

		uint64_t ns = now - ublk_io_track(io)->start_ns;

		stat_add(&st->lat[ublk_lat_kind(io->op)][ublk_lat_bucket(ns)], 1);
	}
	q->nr_timed = 0;
}

int ublk_queue_run_once(struct ublk_queue *q)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	int ret;

	if (q->c.batch)
		ublk_batch_flush(q);
	q->ap.slept = false;
	/* completions already waiting must not wait for the ring */
	if (q->done_head) {
		ret = io_uring_submit(&q->ring);
	} else if (q->c.poll_us && q->worked) {
		ret = ublk_queue_poll_then_wait(q);
	} else {
		/* the pace counts the requests that found the thread asleep
		 * (queue_sched.c, pin = "auto"): this wait sleeps if nothing
		 * is there yet, and the request it wakes for (not a backend's
		 * completion) counts */
		q->ap.slept = !io_uring_cq_ready(&q->ring) &&
			      !(IO_URING_READ_ONCE(*q->ring.sq.kflags) & IORING_SQ_TASKRUN);
		ret = io_uring_submit_and_wait(&q->ring, 1);
	}

	if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
		return ret;
	ublk_watch_enter(&q->watch);
	if (q->c.latency)
		q->pass_ns = ublk_now_ns();
	/* pin = "auto" times its windows without the device's pauses: one
	 * clock read a sleep, the pass's own where latency reads it */
	if (q->ap.on && q->ap.slept)
		ublk_pin_woke(&q->ap, q->c.latency ? q->pass_ns : ublk_now_ns());
	io_uring_for_each_cqe(&q->ring, head, cqe) {
		ublk_queue_handle_cqe(q, cqe);
		n++;
	}
	io_uring_cq_advance(&q->ring, n);
	q->worked = n > 0;
	deliver_external(q);
	if (q->nr_timed)
		time_pass(q);
	ublk_watch_leave(&q->watch);
	if (q->ap.reqs >= UBLK_PIN_WINDOW) {
		ublk_sched_decide(q);
		if (q->ap.on)
			ublk_pin_decide(q);
		q->ap.waits = q->ap.reqs = 0;
	}
	return 0;
}

/* ---- backend.h: delegating (the rest of what backends call is in
 * queue_api.c) ---- */

int ublk_io_delegate(struct ublk_queue *q, struct ublk_io *parent, struct ublk_io *sub,
		     struct ublk_backend *b)
{
	struct ublk_io_track *t = ublk_io_track(sub);
	int ret;

	if (t->outstanding)
		return -EBUSY;
	begin(sub, b);
	ret = b->ops->handle_io(b, q, sub);
	if (ret != UBLK_IO_QUEUED)
		t->result = ret;
	if (!t->outstanding)
		return t->result == UBLK_IO_QUEUED ? -EIO : t->result;
	t->parent = parent;
	ublk_io_track(parent)->outstanding++;
	return UBLK_IO_QUEUED;
}
