/* SPDX-License-Identifier: MIT */
/*
 * backend_memory.c - a RAM disk in one lazily-populated shared mapping: of
 * a memfd, or with option "store" of a file (on /dev/shm) that outlives
 * the process, so that a server recovering the device finds the data
 * (option "recover": take the existing store; without it the store must
 * not exist yet).
 *
 * No locks: the block layer never has two overlapping writes in flight
 * that a correct user depends on, so queues copy in and out concurrently.
 * One copy per I/O, done by the kernel (option "copy", docs/tuning.md):
 *   default   zero copy by auto buffer registration where the kernel has
 *             it (7.x) for requests of ZC_MIN bytes or more: the request's
 *             pages are read from / written to the store's file with
 *             *_FIXED ops on the queue's ring; smaller ones, and all on
 *             kernels without it, by inline user copy;
 *   inline    user copy on the queue thread (pread/pwrite of /dev/ublkcN);
 *   ring      user copy by an SQE (served by an io_uring worker);
 *   auto_reg  zero copy for every request;
 *   register  zero copy for every request, its pages registered by the
 *             queue per request (REGISTER_IO_BUF, 6.15+: the mode kernels
 *             without auto_reg have);
 *   buffer    no user copy: memcpy to the tag's buffer, which the kernel
 *             copies again at the commit.
 * Discard and write-zeroes give whole pages back (MADV_REMOVE) and zero
 * the edges; a store is allocated whole when it is made and its pages
 * taken again after a discard (store.h: a full /dev/shm is refused at
 * create, never met by SIGBUS in a copy).
 * The mapping spans more than the device (MEMORY_SPAN): a resize grows or
 * shrinks the file under it, and the queues' pointer never moves.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>

#include "../base/log.h"
#include "../include/backend.h"
#include "store.h"

/* Option "copy" absent, then its values in memory_opts' order: the
 * value at place i is i + 1 here. */
enum memory_copy { COPY_DEFAULT, COPY_INLINE, COPY_RING, COPY_BUFFER, COPY_AUTO_REG,
		   COPY_REGISTER };

/* Below this, the default mode copies inline even where zero copy is
 * granted.  Measured on 7.3 (bench/, one round, build/nb runs of this
 * session): 4k randread QD1 4.3k IOPS inline against 2.8k zero copy (a
 * second ring pass per request), QD64 2 jobs 29.2k against 27.1k; 128k
 * sequential read 335 MiB/s inline against 855 zero copy, write 269
 * against 675 (7.3's user copy runs the generic user-copy routine, which
 * emulation makes slow; a tmpfs read into registered pages does not).
 * On 6.12, which has no auto_reg, inline is what runs: 128k read 1077
 * MiB/s against 299 for the buffer mode. */
#define ZC_MIN (64u << 10)

/* Address space a device's mapping takes, so that it can grow in place:
 * four times its size, 64 GiB at least.  It costs no memory (NORESERVE,
 * nothing past the file's end is touched); 64 GiB each leaves room for
 * a thousand devices in x86-64's 128 TiB. */
static uint64_t memory_span(uint64_t size)
{
	uint64_t min = 64ull << 30;

	return size > min / 4 ? size * 4 : min;
}

struct memory {
	char *base;
	uint64_t size;	/* read by the queues, changed by a resize: atomic */
	uint64_t span;	/* the mapping's length (memory_span) */
	uint64_t page;
	int fd;		/* the store's or the memfd's: zero copy reads and writes it */
	enum memory_copy copy;
	bool reserved;	/* a store: its pages stay allocated (store.h) */
	bool refill_failed;	/* said once: a discarded range could not be reserved again */
	bool fault_said;	/* said once: a copy met a page that is gone */
};

/* Maps the store file at `path`.  A server recovering the device
 * (`recover`) takes the existing one, which must have the device's size,
 * with its data; any other makes it, and it must not exist: a file of
 * that name is some other device's data (or was left by one), never a
 * new device's.  Either way all of it is reserved now (store.h): a
 * /dev/shm too full for the device is refused here, before ADD_DEV, not
 * found by SIGBUS in mid-write; that holds for a recovering server too,
 * whose store may have holes. */
static int map_store(struct ublk_backend *b, struct memory *m, const char *path, bool recover)
{
	char what[160];
	struct stat st;
	bool made = !recover;
	int fd, ret = 0;

	fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (recover ? 0 : O_CREAT | O_EXCL), 0600);
	if (fd < 0) {
		ret = -errno;
		made = false;
		if (errno == EEXIST)
			snprintf(b->err, sizeof(b->err), "store %s exists: a new device starts from "
				 "an empty store, only a recovery takes over an existing one", path);
		else if (recover && errno == ENOENT)
			snprintf(b->err, sizeof(b->err), "store %s of the device being recovered is "
				 "gone: its data is lost (ublk-lua del removes the device)", path);
		else
			snprintf(b->err, sizeof(b->err), "store %s: %s", path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		snprintf(b->err, sizeof(b->err), "store %s: %s", path, strerror(errno));
		goto out;
	}
	if (made) {
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
	snprintf(what, sizeof(what), "store %s", path);
	ret = ublk_store_reserve(fd, 0, m->size, what, b->err, sizeof(b->err));
	if (ret < 0)
		goto out;
	ret = ublk_store_guard();
	if (ret < 0) {
		snprintf(b->err, sizeof(b->err), "store %s: SIGBUS handler: %s", path,
			 strerror(-ret));
		goto out;
	}
	m->base = mmap(NULL, m->span, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (m->base == MAP_FAILED) {
		ret = -errno;
		snprintf(b->err, sizeof(b->err), "store %s: mmap: %s", path, strerror(errno));
		goto out;
	}
	m->fd = fd;
	m->reserved = true;
	fd = -1;
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

/* Anonymous memory as a memfd, so that zero copy can read and write it as
 * a file; NORESERVE: a 64 GiB disk costs nothing until written. */
static int map_memfd(struct memory *m)
{
	m->fd = memfd_create("ublk-memory", MFD_CLOEXEC);
	if (m->fd < 0 || ftruncate(m->fd, (off_t)m->size) < 0)
		return -errno;
	m->base = mmap(NULL, m->span, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE,
		       m->fd, 0);
	return m->base == MAP_FAILED ? -errno : 0;
}

static int memory_create(struct ublk_backend *b, const struct ublk_backend_conf *conf)
{
	const char *store = NULL;
	struct memory *m;
	unsigned copy;
	int ret, has_copy;

	if (!conf->size)
		return -EINVAL;
	if ((ret = ublk_conf_string(b, conf, "store", &store)) < 0 ||
	    (ret = has_copy = ublk_conf_choice(b, conf, "copy", &copy)) < 0)
		return ret;
	if (store && strlen(store) >= sizeof(b->store)) {
		snprintf(b->err, sizeof(b->err), "store: a path of at most %zu bytes",
			 sizeof(b->store) - 1);
		return -ENAMETOOLONG;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->copy = has_copy ? (enum memory_copy)(copy + 1) : COPY_DEFAULT;
	m->size = conf->size;
	m->span = memory_span(conf->size);
	m->page = (uint64_t)sysconf(_SC_PAGESIZE);
	m->fd = -1;
	if (store)
		ret = map_store(b, m, store, ublk_conf_flag(conf, "recover"));
	else
		ret = map_memfd(m);
	if (ret < 0) {
		if (m->fd >= 0)
			close(m->fd);
		free(m);
		return ret;
	}
	b->priv = m;
	b->size = m->size;
	b->caps = UBLK_CAN_DISCARD | UBLK_CAN_WRITE_ZEROES;
	if (m->copy != COPY_BUFFER && m->copy != COPY_AUTO_REG && m->copy != COPY_REGISTER)
		b->caps |= UBLK_CAN_USER_COPY;
	if (m->copy == COPY_DEFAULT || m->copy == COPY_AUTO_REG || m->copy == COPY_REGISTER)
		b->caps |= UBLK_CAN_ZERO_COPY;
	if (m->copy == COPY_AUTO_REG)
		b->zc_only = UBLK_ZC_AUTO_REG;
	if (m->copy == COPY_REGISTER)
		b->zc_only = UBLK_ZC_REGISTER;
	return 0;
}

static void memory_destroy(struct ublk_backend *b)
{
	struct memory *m = b->priv;

	munmap(m->base, m->span);
	close(m->fd);
	free(m);
}

/* Zero [off, off+len): whole pages are dropped, partial ones memset.
 * A store's dropped pages are allocated again at once: a discard keeps
 * the store's memory rather than giving it back, so that what the device
 * was promised at add stays its own (someone else could take the freed
 * pages and a later write to them would fault).  If they cannot be had
 * again the zeroes stand (a hole reads as zeroes) and a write there later
 * fails that request with EIO (ublk_store_copy) rather than the server. */
static int memory_zero(struct memory *m, uint64_t off, uint64_t len)
{
	uint64_t start = (off + m->page - 1) & ~(m->page - 1);
	uint64_t end = (off + len) & ~(m->page - 1);
	char why[64];
	int ret;

	if (start >= end)
		return ublk_store_zero(m->base + off, len);
	ret = ublk_store_zero(m->base + off, start - off);
	if (ret == 0)
		ret = ublk_store_zero(m->base + end, off + len - end);
	if (ret < 0)
		return ret;
	/* a shared mapping's zeroes come from freeing its file's pages */
	if (madvise(m->base + start, end - start, MADV_REMOVE) < 0)
		return -errno;
	if (m->reserved && ublk_store_reserve(m->fd, start, end - start, "discard", why,
					      sizeof(why)) < 0 && !m->refill_failed) {
		m->refill_failed = true;
		ublk_warn("memory store: a discarded range could not be reserved again (%s): "
			  "writes there may fail with EIO", why);
	}
	return 0;
}

/* A copy the store's page may fault in (store.h): the request fails with
 * EIO, the server lives on, and the user hears of it once. */
static int store_copy(struct memory *m, struct ublk_io *io, void *dst, const void *src)
{
	if (ublk_store_copy(dst, src, io->len) == 0)
		return (int)io->len;
	if (!m->fault_said) {
		m->fault_said = true;
		ublk_err("memory store: the page at offset %llu is gone (its file was truncated, "
			 "or its file system is full): the request fails with EIO",
			 (unsigned long long)io->offset);
	}
	return -EIO;
}

static int memory_handle_io(struct ublk_backend *b, struct ublk_queue *q,
			    struct ublk_io *io)
{
	struct memory *m = b->priv;
	uint64_t size = __atomic_load_n(&m->size, __ATOMIC_ACQUIRE);

	if (io->offset > size || io->len > size - io->offset)
		return -EIO;
	/* Zero copy: the kernel copies between the request's pages and the
	 * store's file, as a *_FIXED read or write on our ring. */
	if (ublk_io_buf_index(q, io) >= 0 &&
	    (m->copy == COPY_AUTO_REG || m->copy == COPY_REGISTER || io->len >= ZC_MIN ||
	     !ublk_io_user_copy(q, io))) {
		struct io_uring_sqe *sqe = ublk_io_sqe(q, io);

		if (io->op == UBLK_IO_OP_READ)
			io_uring_prep_read_fixed(sqe, m->fd, NULL, io->len, io->offset,
						 ublk_io_buf_index(q, io));
		else
			io_uring_prep_write_fixed(sqe, m->fd, NULL, io->len, io->offset,
						  ublk_io_buf_index(q, io));
		return UBLK_IO_QUEUED;
	}
	/* User copy: the kernel copies between the request's pages and the
	 * store's mapping, by a cdev read or write. */
	if (ublk_io_user_copy(q, io) &&
	    (io->op == UBLK_IO_OP_READ || io->op == UBLK_IO_OP_WRITE)) {
		if (m->copy != COPY_RING)
			return ublk_io_copy_user(q, io, m->base + io->offset, io->len, 0);
		ublk_io_prep_user_copy(ublk_io_sqe(q, io), q, io, m->base + io->offset);
		return UBLK_IO_QUEUED;
	}
	switch (io->op) {
	case UBLK_IO_OP_READ:
		return store_copy(m, io, io->buf, m->base + io->offset);
	case UBLK_IO_OP_WRITE:
		return store_copy(m, io, m->base + io->offset, io->buf);
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

/* The copy (SQE) finished: all of it, or the request fails. */
static int memory_io_done(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io,
			  int res)
{
	(void)b;
	(void)q;
	if (res < 0)
		return res;
	return (uint32_t)res == io->len ? (int)io->len : -EIO;
}

static const struct ublk_backend_opt memory_opts[] = {
	{ .name = "copy", .kind = UBLK_OPT_CHOICE, .values = "inline|ring|buffer|auto_reg|register",
	  .def = "zero copy where the kernel has it, else inline",
	  .help = "how request data moves (docs/tuning.md)" },
	{ .name = "store", .kind = UBLK_OPT_STRING, .flags = UBLK_OPT_STORE,
	  .def = "memory of its own; with recovery on, a new /dev/shm/ublk-lua.* file",
	  .help = "a file that holds the data beyond the server, for recovery" },
	{ 0 }
};

/* Grows the file (a store's new pages reserved, as at create) before the
 * queues may use them; shrinks it after they no longer may, which gives
 * the cut pages back.  A copy still in flight past the new end meets a
 * missing page: EIO for that request (store.h), never SIGBUS. */
static int memory_resize(struct ublk_backend *b, uint64_t size)
{
	struct memory *m = b->priv;
	uint64_t old = m->size;
	int ret;

	if (size > m->span) {
		snprintf(b->err, sizeof(b->err), "the memory backend grows to at most %llu MiB "
			 "(4 times its size at create, 64 GiB at least)",
			 (unsigned long long)(m->span >> 20));
		return -EFBIG;
	}
	ret = ublk_store_guard();
	if (ret < 0)
		return ret;
	if (size < old) {
		__atomic_store_n(&m->size, size, __ATOMIC_RELEASE);
		if (ftruncate(m->fd, (off_t)size) < 0)
			ublk_warn("memory: the cut pages could not be given back: %s", strerror(errno));
		return 0;
	}
	if (ftruncate(m->fd, (off_t)size) < 0) {
		ret = -errno;
		snprintf(b->err, sizeof(b->err), "cannot grow the memory to %llu bytes: %s",
			 (unsigned long long)size, strerror(-ret));
		return ret;
	}
	if (m->reserved) {
		ret = ublk_store_reserve(m->fd, old, size - old, b->store, b->err, sizeof(b->err));
		if (ret < 0) {
			if (ftruncate(m->fd, (off_t)old) < 0)
				ublk_warn("memory: could not shrink the store back: %s", strerror(errno));
			return ret;
		}
	}
	__atomic_store_n(&m->size, size, __ATOMIC_RELEASE);
	return 0;
}

const struct ublk_backend_ops ublk_backend_memory = {
	.name = "memory",
	.opts = memory_opts,
	.create = memory_create,
	.destroy = memory_destroy,
	.handle_io = memory_handle_io,
	.io_done = memory_io_done,
	.resize = memory_resize,
};
