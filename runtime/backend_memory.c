/* SPDX-License-Identifier: MIT */
/*
 * backend_memory.c - a RAM disk in one lazily-populated anonymous mapping.
 *
 * No locks: the block layer never has two overlapping writes in flight
 * that a correct user depends on, so queues copy in and out concurrently.
 * One memcpy per I/O.  Discard and write-zeroes give whole pages back to
 * the kernel (MADV_DONTNEED reads back as zeroes) and zero the edges.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend.h"
#include "queue.h"

struct memory {
	char *base;
	uint64_t size;
	uint64_t page;
};

static int memory_create(struct ublk_backend *b, const struct ublk_backend_conf *conf)
{
	struct memory *m;

	if (!conf->size)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->size = conf->size;
	m->page = (uint64_t)sysconf(_SC_PAGESIZE);
	/* NORESERVE: a 64 GiB disk costs nothing until written. */
	m->base = mmap(NULL, m->size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m->base == MAP_FAILED) {
		int err = -errno;

		free(m);
		return err;
	}
	b->priv = m;
	b->size = m->size;
	b->caps = UBLK_CAN_DISCARD | UBLK_CAN_WRITE_ZEROES | UBLK_CAN_USER_COPY;
	return 0;
}

static void memory_destroy(struct ublk_backend *b)
{
	struct memory *m = b->priv;

	munmap(m->base, m->size);
	free(m);
}

/* Zero [off, off+len): whole pages are dropped, partial ones memset. */
static int memory_zero(struct memory *m, uint64_t off, uint64_t len)
{
	uint64_t start = (off + m->page - 1) & ~(m->page - 1);
	uint64_t end = (off + len) & ~(m->page - 1);

	if (start >= end) {
		memset(m->base + off, 0, len);
		return 0;
	}
	memset(m->base + off, 0, start - off);
	memset(m->base + end, 0, off + len - end);
	if (madvise(m->base + start, end - start, MADV_DONTNEED) < 0)
		return -errno;
	return 0;
}

static int memory_handle_io(struct ublk_backend *b, struct ublk_queue *q,
			    const struct ublk_io_req *req)
{
	struct memory *m = b->priv;


	if (req->offset > m->size || req->len > m->size - req->offset)
		return -EIO;
	/* The device's own requests with user copy: the kernel copies between
	 * the request's pages and the store (a delegated request carries a
	 * buffer of its wrapper's and takes the memcpy path). */
	if (q->user_copy && req->buf == q->tags[req->tag].buf &&
	    (req->op == UBLK_IO_OP_READ || req->op == UBLK_IO_OP_WRITE)) {
		struct io_uring_sqe *sqe = ublk_queue_backend_sqe(q, b, req->tag);
		uint64_t pos = ublk_user_copy_pos(q->q_id, req->tag);

		/* READ: write the store into the request; WRITE: read it out */
		if (req->op == UBLK_IO_OP_READ)
			io_uring_prep_write(sqe, 0, m->base + req->offset, req->len, pos);
		else
			io_uring_prep_read(sqe, 0, m->base + req->offset, req->len, pos);
		sqe->flags |= IOSQE_FIXED_FILE; /* file 0: the char device */
		return UBLK_IO_QUEUED; /* req is the tag's own: io_done reads it */
	}
	switch (req->op) {
	case UBLK_IO_OP_READ:
		memcpy(req->buf, m->base + req->offset, req->len);
		return (int)req->len;
	case UBLK_IO_OP_WRITE:
		memcpy(m->base + req->offset, req->buf, req->len);
		return (int)req->len;
	case UBLK_IO_OP_FLUSH:
		return 0;
	case UBLK_IO_OP_DISCARD:
	case UBLK_IO_OP_WRITE_ZEROES: {
		int ret = memory_zero(m, req->offset, req->len);

		return ret < 0 ? ret : (int)req->len;
	}
	default:
		return -EOPNOTSUPP;
	}
}

static void memory_io_done(struct ublk_backend *b, struct ublk_queue *q, uint16_t tag,
			   const struct io_uring_cqe *cqe)
{
	uint32_t len = q->tags[tag].req.len;

	(void)b;
	ublk_queue_complete(q, tag, cqe->res < 0 ? cqe->res : (uint32_t)cqe->res == len ? (int)len : -EIO);
}

const struct ublk_backend_ops ublk_backend_memory = {
	.name = "memory",
	.create = memory_create,
	.destroy = memory_destroy,
	.handle_io = memory_handle_io,
	.io_done = memory_io_done,
};
