/* SPDX-License-Identifier: MIT */
/*
 * queue_api.c - what a backend may call on its queue (backend.h): SQEs and
 * external operations counted on an io, polls, cancelling, user copy, and
 * the queue's own facts.  Delegating lives in queue.c, beside the request
 * path it re-enters.
 */
#include <errno.h>
#include <unistd.h>

#include <liburing.h>

#include "queue_private.h"

struct io_uring_sqe *ublk_io_sqe(struct ublk_queue *q, struct ublk_io *io)
{
	struct io_uring_sqe *sqe = ublk_queue_get_sqe(q);

	/* liburing's prep helpers leave user_data alone, so set it here */
	sqe->user_data = ublk_ud_io(io);
	ublk_io_track(io)->outstanding++;
	q->backend_inflight++;
	return sqe;
}

void ublk_io_external(struct ublk_queue *q, struct ublk_io *io)
{
	ublk_io_track(io)->outstanding++;
	q->backend_inflight++;
}

void ublk_io_external_done(struct ublk_queue *q, struct ublk_io *io, int res)
{
	struct ublk_io_track *t = ublk_io_track(io);

	t->done_res = res;
	t->done_next = NULL;
	if (q->done_tail)
		ublk_io_track(q->done_tail)->done_next = io;
	else
		q->done_head = io;
	q->done_tail = io;
}

unsigned ublk_io_outstanding(const struct ublk_io *io)
{
	return ublk_io_track(io)->outstanding;
}

void ublk_poll_arm(struct ublk_queue *q, struct ublk_poll *p, unsigned events)
{
	struct io_uring_sqe *sqe = ublk_queue_get_sqe(q);

	io_uring_prep_poll_add(sqe, p->fd, events);
	sqe->user_data = ublk_ud_poll(p);
	p->armed = true;
}

void ublk_io_cancel(struct ublk_queue *q, struct ublk_io *io)
{
	struct io_uring_sqe *sqe;

	if (!ublk_io_track(io)->outstanding)
		return;
	sqe = ublk_queue_get_sqe(q);
	io_uring_prep_cancel64(sqe, ublk_ud_io(io), IORING_ASYNC_CANCEL_ALL);
	sqe->user_data = UBLK_UD_CANCEL; /* not the tick itself */
}

bool ublk_io_user_copy(const struct ublk_queue *q, const struct ublk_io *io)
{
	/* a delegate's io has the wrapper's buffer, not the request's pages */
	return q->c.user_copy && io == &q->ios[io->tag];
}

/* Where io's request data sits in /dev/ublkcN for user copy. */
static uint64_t user_copy_pos(const struct ublk_queue *q, const struct ublk_io *io)
{
	return UBLKSRV_IO_BUF_OFFSET + ((uint64_t)q->c.q_id << UBLK_QID_OFF) +
	       ((uint64_t)io->tag << UBLK_TAG_OFF);
}

void ublk_io_prep_user_copy(struct io_uring_sqe *sqe, const struct ublk_queue *q,
			    const struct ublk_io *io, void *mem)
{
	uint64_t pos = user_copy_pos(q, io);

	/* a READ writes the store into the request; a WRITE reads it out */
	if (io->op == UBLK_IO_OP_READ)
		io_uring_prep_write(sqe, 0, mem, io->len, pos);
	else
		io_uring_prep_read(sqe, 0, mem, io->len, pos);
	sqe->flags |= IOSQE_FIXED_FILE; /* file 0: the char device */
}

int ublk_io_copy_user(const struct ublk_queue *q, const struct ublk_io *io, void *mem,
		      uint32_t len, uint32_t off)
{
	uint64_t pos = user_copy_pos(q, io) + off;
	ssize_t n;

	if (off > io->len || len > io->len - off)
		return -EINVAL;
	do {
		n = io->op == UBLK_IO_OP_READ ? pwrite(q->c.cdev_fd, mem, len, (off_t)pos)
					      : pread(q->c.cdev_fd, mem, len, (off_t)pos);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return (uint32_t)n == len ? (int)len : -EIO;
}

int ublk_io_buf_index(const struct ublk_queue *q, const struct ublk_io *io)
{
	if (q->c.zero_copy == UBLK_ZC_NONE || io != &q->ios[io->tag] ||
	    (io->op != UBLK_IO_OP_READ && io->op != UBLK_IO_OP_WRITE))
		return -1;
	return io->tag; /* buffer slot = tag: one request per tag at a time */
}

unsigned ublk_queue_id(const struct ublk_queue *q) { return q->c.index; }
unsigned ublk_queue_depth(const struct ublk_queue *q) { return q->c.depth; }
unsigned ublk_queue_dev_id(const struct ublk_queue *q) { return q->c.dev_id; }
uint32_t ublk_queue_max_io(const struct ublk_queue *q) { return q->c.max_io; }
void *ublk_queue_priv(const struct ublk_queue *q) { return q->priv; }

void ublk_queue_drain(struct ublk_queue *q)
{
	__atomic_store_n(&q->draining, true, __ATOMIC_RELEASE);
}

bool ublk_queue_draining(const struct ublk_queue *q)
{
	return __atomic_load_n(&q->draining, __ATOMIC_ACQUIRE);
}
void ublk_queue_set_priv(struct ublk_queue *q, void *priv) { q->priv = priv; }
