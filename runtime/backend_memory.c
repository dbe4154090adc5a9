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
	b->caps = UBLK_CAN_DISCARD | UBLK_CAN_WRITE_ZEROES;
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

	(void)q;
	if (req->offset > m->size || req->len > m->size - req->offset)
		return -EIO;
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

const struct ublk_backend_ops ublk_backend_memory = {
	.name = "memory",
	.create = memory_create,
	.destroy = memory_destroy,
	.handle_io = memory_handle_io,
};
