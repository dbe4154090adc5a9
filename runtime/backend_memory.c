/* SPDX-License-Identifier: MIT */
/*
 * backend_memory.c - a RAM disk in one lazily-populated mapping: anonymous,
 * or with option "store" a shared file (on /dev/shm) that outlives the
 * process, so that a server recovering the device finds the data.
 *
 * No locks: the block layer never has two overlapping writes in flight
 * that a correct user depends on, so queues copy in and out concurrently.
 * One copy per I/O: memcpy, or where the kernel has UBLK_F_USER_COPY the
 * kernel's own copy between the request's pages and the store.  Discard
 * and write-zeroes give whole pages back to the kernel (MADV_DONTNEED
 * reads back as zeroes) and zero the edges.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <liburing.h>

#include "backend.h"

struct memory {
	char *base;
	uint64_t size;
	uint64_t page;
	bool shared;	/* a store file: discard punches holes in it */
};

/* Maps the store file at `path`: an existing one must have the device's
 * size (its data is kept: a recovery); a new one is made sparse, if its
 * file system has room for all of it. */
static int map_store(struct ublk_backend *b, struct memory *m, const char *path)
{
	struct statvfs fs;
	struct stat st;
	bool made = false;
	int fd, ret = 0;

	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 || fstat(fd, &st) < 0) {
		ret = -errno;
		snprintf(b->err, sizeof(b->err), "store %s: %s", path, strerror(errno));
		goto out;
	}
	if (st.st_size == 0) {
		made = true;
		if (fstatvfs(fd, &fs) == 0 && (uint64_t)fs.f_bavail * fs.f_frsize < m->size) {
			snprintf(b->err, sizeof(b->err), "store %s (kept for recovery): its file "
				 "system has %llu MiB free, the device needs %llu MiB", path,
				 (unsigned long long)fs.f_bavail * fs.f_frsize >> 20,
				 (unsigned long long)m->size >> 20);
			ret = -ENOSPC;
			goto out;
		}
		if (ftruncate(fd, (off_t)m->size) < 0) {
			ret = -errno;
			snprintf(b->err, sizeof(b->err), "store %s: %s", path, strerror(errno));
			goto out;
		}
	} else if ((uint64_t)st.st_size != m->size) {
		snprintf(b->err, sizeof(b->err), "store %s holds %llu bytes, not the device's %llu",
			 path, (unsigned long long)st.st_size, (unsigned long long)m->size);
		ret = -EINVAL;
		goto out;
	}
	m->base = mmap(NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (m->base == MAP_FAILED) {
		ret = -errno;
		snprintf(b->err, sizeof(b->err), "store %s: mmap: %s", path, strerror(errno));
		goto out;
	}
	m->shared = true;
	snprintf(b->store, sizeof(b->store), "%s", path);
	if (!made)
		snprintf(b->note, sizeof(b->note), "data kept in %s", path);
out:
	if (fd >= 0)
		close(fd);
	if (ret < 0 && made)
		unlink(path);
	return ret;
}

static int memory_create(struct ublk_backend *b, const struct ublk_backend_conf *conf)
{
	const char *store = ublk_conf_get(conf, "store");
	struct memory *m;
	int ret = 0;

	if (!conf->size)
		return -EINVAL;
	if (store && strlen(store) >= sizeof(b->store)) {
		snprintf(b->err, sizeof(b->err), "store: a path of at most %zu bytes",
			 sizeof(b->store) - 1);
		return -ENAMETOOLONG;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->size = conf->size;
	m->page = (uint64_t)sysconf(_SC_PAGESIZE);
	if (store) {
		ret = map_store(b, m, store);
	} else {
		/* NORESERVE: a 64 GiB disk costs nothing until written. */
		m->base = mmap(NULL, m->size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (m->base == MAP_FAILED)
			ret = -errno;
	}
	if (ret < 0) {
		free(m);
		return ret;
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
	/* DONTNEED reads back zeroes only in a private mapping; a shared one
	 * needs its file's pages freed */
	if (madvise(m->base + start, end - start, m->shared ? MADV_REMOVE : MADV_DONTNEED) < 0)
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
