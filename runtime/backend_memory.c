/* SPDX-License-Identifier: MIT */
/*
 * backend_memory.c - a RAM disk in one lazily-populated anonymous mapping.
 *
 * No locks: the block layer never has two overlapping writes in flight
 * that a correct user depends on, so queues copy in and out concurrently.
 * One copy per I/O: memcpy, or where the kernel has UBLK_F_USER_COPY the
 * kernel's own copy between the request's pages and the store.  Discard
 * and write-zeroes give whole pages back to the kernel (MADV_DONTNEED
 * reads back as zeroes) and zero the edges.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <liburing.h>

#include "backend.h"

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
			    struct ublk_io *io)
{
	struct memory *m = b->priv;

	if (io->offset > m->size || io->len > m->size - io->offset)
		return -EIO;
	/* With user copy the kernel copies between the request's pages and
	 * the store: one copy, done by a cdev read or write on our ring. */
	if (ublk_io_user_copy(q, io) &&
	    (io->op == UBLK_IO_OP_READ || io->op == UBLK_IO_OP_WRITE)) {
		ublk_io_prep_user_copy(ublk_io_sqe(q, io), q, io, m->base + io->offset);
		return UBLK_IO_QUEUED;
	}
	switch (io->op) {
	case UBLK_IO_OP_READ:
		memcpy(io->buf, m->base + io->offset, io->len);
		return (int)io->len;
	case UBLK_IO_OP_WRITE:
		memcpy(m->base + io->offset, io->buf, io->len);
		return (int)io->len;
	case UBLK_IO_OP_FLUSH:
		return 0;
	case UBLK_IO_OP_DISCARD:
	case UBLK_IO_OP_WRITE_ZEROES: {
		int ret = memory_zero(m, io->offset, io->len);

		return ret < 0 ? ret : (int)io->len;
	}
	default:
		return -EOPNOTSUPP;
	}
}

/* The user copy finished: all of it, or the request fails. */
static int memory_io_done(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io,
			  int res)
{
	(void)b;
	(void)q;
	if (res < 0)
		return res;
	return (uint32_t)res == io->len ? (int)io->len : -EIO;
}

const struct ublk_backend_ops ublk_backend_memory = {
	.name = "memory",
	.create = memory_create,
	.destroy = memory_destroy,
	.handle_io = memory_handle_io,
	.io_done = memory_io_done,
};
