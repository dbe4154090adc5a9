/* SPDX-License-Identifier: MIT */
/*
 * backend_file.c - a regular file or block device behind the disk.
 *
 * Every operation is submitted on the queue's own io_uring and completes
 * asynchronously, so one queue keeps `depth` file I/Os in flight with no
 * extra threads.  flush = fdatasync, FUA = RWF_DSYNC, discard = punch hole,
 * write-zeroes = zero range (or punch + allocate).  Errors reach the
 * request: a failed or short transfer is EIO, never zeroes; block devices
 * are opened O_DIRECT unless told otherwise, so that a failed write is
 * not lost in the page cache (a buffered write's error would surface only
 * at the next flush, as that flush's EIO).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>

#include "../include/backend.h"
#include "backends.h"

struct file {
	int fd;
	bool read_only;
	bool no_zero_range;	/* the filesystem said EOPNOTSUPP to ZERO_RANGE */
};

static int file_size(struct ublk_backend *b, int fd, const char *path,
		     const struct ublk_backend_conf *conf, bool create)
{
	struct stat st;
	uint64_t have;
	size_t said;
	int ret;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &have) < 0)
			return -errno;
	} else if (S_ISREG(st.st_mode)) {
		have = (uint64_t)st.st_size;
	} else {
		snprintf(b->err, sizeof(b->err), "'%s' is not a regular file or block device",
			 path);
		return -EINVAL;
	}
	/* Grow a regular file only when asked to; never a block device. */
	if (conf->size > have && create && S_ISREG(st.st_mode) && !conf->read_only) {
		if (ftruncate(fd, (off_t)conf->size) < 0)
			return -errno;
		if (!b->note[0])
			snprintf(b->note, sizeof(b->note), "grew %.60s", path);
		have = conf->size;
	}
	ret = ublk_conf_size(b, conf, path, have);
	if (ret < 0 && S_ISREG(st.st_mode)) {
		said = strlen(b->err);
		snprintf(b->err + said, sizeof(b->err) - said, "%s", conf->size ?
			 " (create = true grows it)" : ": give a size (and create = true) to grow it");
	}
	return ret;
}

/* Is path's directory the filesystem /dev is (devtmpfs)?  There a missing
 * path is a mistyped device, not a file to make; /dev/shm and other
 * filesystems mounted below /dev are fine. */
static bool in_devfs(const char *path)
{
	char dir[4096];
	struct stat d, dev;
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash)
		return false;
	*(slash == dir ? slash + 1 : slash) = 0;
	return stat(dir, &d) == 0 && stat("/dev", &dev) == 0 && d.st_dev == dev.st_dev;
}

/* Opens path, creating it only when asked to, and never in /dev itself. */
static int file_open(struct ublk_backend *b, const char *path, int flags, bool create,
		     const struct ublk_backend_conf *conf)
{
	int fd = open(path, flags, 0600);

	if (fd >= 0 || errno != ENOENT)
		goto out;
	if (in_devfs(path)) {
		snprintf(b->err, sizeof(b->err), "'%s' does not exist (files under /dev "
			 "are never created)", path);
		return -ENOENT;
	}
	if (!create || !conf->size || conf->read_only) {
		snprintf(b->err, sizeof(b->err), "'%s' does not exist (create = true and a "
			 "size make it; on the command line: --create -s SIZE)", path);
		return -ENOENT;
	}
	fd = open(path, flags | O_CREAT | O_EXCL, 0600);
	if (fd >= 0) {
		snprintf(b->note, sizeof(b->note), "created %.60s", path);
		if (strlen(path) < sizeof(b->made))
			snprintf(b->made, sizeof(b->made), "%s", path);
	}
out:
	if (fd < 0) {
		int ret = -errno;

		snprintf(b->err, sizeof(b->err), "cannot open '%s'%s: %s", path,
			 flags & O_DIRECT ? " with O_DIRECT" : "", strerror(-ret));
		return ret;
	}
	return fd;
}

static unsigned dio_align(int fd)
{
	unsigned lbs = 0;

	if (ioctl(fd, BLKSSZGET, &lbs) < 0 || lbs < 512)
		lbs = 512; /* a regular file: what O_DIRECT usually asks */
	return lbs;
}

/* Options: path (required); create (make a missing file, grow a short
 * one); direct (O_DIRECT; default on for block devices, where a write
 * error must reach the request, not vanish in the page cache); copy:
 * absent, the best zero copy the kernel has (else the tag's buffer);
 * "buffer" never zero copy; "inline" user copy between the request and
 * the tag's buffer on the queue thread, around the file I/O (kublk's loop
 * -u: two copies, for testing the driver's user copy); "auto_reg" or
 * "register" only that mode (backend.h, enum ublk_zc). */
static int file_create(struct ublk_backend *b, const struct ublk_backend_conf *conf)
{
	const char *path;
	bool create = false, direct = false;
	int flags = (conf->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	struct stat st;
	struct file *f;
	int ret, has_direct, has_copy;

	if ((ret = ublk_conf_string(b, conf, "path", &path)) < 0 ||
	    (ret = ublk_conf_bool(b, conf, "create", &create)) < 0 ||
	    (ret = has_direct = ublk_conf_bool(b, conf, "direct", &direct)) < 0 ||
	    (ret = has_copy = ublk_backend_copy_mode(b, conf)) < 0)
		return ret;
	if (!has_copy)
		b->caps |= UBLK_CAN_ZERO_COPY;
	if (has_direct ? direct : stat(path, &st) == 0 && S_ISBLK(st.st_mode))
		flags |= O_DIRECT;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->fd = file_open(b, path, flags, create, conf);
	if (f->fd < 0) {
		ret = f->fd;
		free(f);
		return ret;
	}
	ret = file_size(b, f->fd, path, conf, create);
	if (ret < 0) {
		if (!strncmp(b->note, "created", 7))
			unlink(path); /* refused: leave nothing behind */
		close(f->fd);
		free(f);
		return ret;
	}
	b->priv = f;
	f->read_only = conf->read_only;
	b->caps |= UBLK_CAN_FLUSH | UBLK_CAN_FUA | UBLK_CAN_DISCARD | UBLK_CAN_WRITE_ZEROES;
	/* O_DIRECT I/O on the request's own pages needs them aligned as the
	 * file wants its buffers: its logical block size, 512 at least */
	if ((flags & O_DIRECT) && (b->caps & UBLK_CAN_ZERO_COPY))
		b->dma_align = dio_align(f->fd);
	return 0;
}

static void file_destroy(struct ublk_backend *b)
{
	struct file *f = b->priv;

	close(f->fd);
	free(f);
}

/* (Re)submits the part of a read or write not done yet; io->scratch
 * counts the bytes done.  Under zero copy the data is the request's own
 * pages, a fixed buffer whose addresses start at 0. */
static void file_submit_rw(struct file *f, struct ublk_queue *q, struct ublk_io *io)
{
	uint32_t done = (uint32_t)io->scratch;
	int idx = ublk_io_buf_index(q, io);
	struct io_uring_sqe *sqe = ublk_io_sqe(q, io);
	char *at = idx >= 0 ? (char *)(uintptr_t)done : (char *)io->buf + done;

	if (io->op == UBLK_IO_OP_READ) {
		if (idx >= 0)
			io_uring_prep_read_fixed(sqe, f->fd, at, io->len - done,
						 io->offset + done, idx);
		else
			io_uring_prep_read(sqe, f->fd, at, io->len - done, io->offset + done);
	} else {
		if (idx >= 0)
			io_uring_prep_write_fixed(sqe, f->fd, at, io->len - done,
						  io->offset + done, idx);
		else
			io_uring_prep_write(sqe, f->fd, at, io->len - done, io->offset + done);
		if (io->flags & UBLK_IO_F_FUA)
			sqe->rw_flags = RWF_DSYNC;
	}
}

/* Discard punches a hole.  Write-zeroes with NOUNMAP keeps the blocks:
 * FALLOC_FL_ZERO_RANGE where the filesystem has it; where it answers
 * EOPNOTSUPP (tmpfs), a hole punched and then allocated again. */
enum { ZERO_RANGE = 1, ZERO_PUNCH, ZERO_ALLOCATE };

static void file_submit_fallocate(struct file *f, struct ublk_queue *q, struct ublk_io *io)
{
	static const int modes[] = {
		[0] = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		[ZERO_RANGE] = FALLOC_FL_ZERO_RANGE,
		[ZERO_PUNCH] = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		[ZERO_ALLOCATE] = FALLOC_FL_KEEP_SIZE,
	};

	io_uring_prep_fallocate(ublk_io_sqe(q, io), f->fd, modes[io->scratch], io->offset,
				io->len);
}

static int file_handle_io(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io)
{
	struct file *f = b->priv;

	switch (io->op) {
	case UBLK_IO_OP_WRITE:
		if (ublk_io_user_copy(q, io)) { /* copy = "inline": the data first */
			int ret = ublk_io_copy_user(q, io, io->buf, io->len, 0);

			if (ret < 0)
				return ret;
		}
		/* fall through */
	case UBLK_IO_OP_READ:
		file_submit_rw(f, q, io);
		return UBLK_IO_QUEUED;
	case UBLK_IO_OP_FLUSH:
		io_uring_prep_fsync(ublk_io_sqe(q, io), f->fd, IORING_FSYNC_DATASYNC);
		return UBLK_IO_QUEUED;
	case UBLK_IO_OP_WRITE_ZEROES:
		if (io->flags & UBLK_IO_F_NOUNMAP)
			io->scratch = f->no_zero_range ? ZERO_PUNCH : ZERO_RANGE;
		/* fall through */
	case UBLK_IO_OP_DISCARD:
		file_submit_fallocate(f, q, io);
		return UBLK_IO_QUEUED;
	default:
		return -EOPNOTSUPP;
	}
}

static int file_io_done(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io,
			int res)
{
	struct file *f = b->priv;

	if (io->op == UBLK_IO_OP_WRITE_ZEROES && io->scratch) {
		if (res == -EOPNOTSUPP && io->scratch == ZERO_RANGE) {
			f->no_zero_range = true; /* queues may race to learn it: harmless */
			io->scratch = ZERO_PUNCH;
		} else if (res >= 0 && io->scratch == ZERO_PUNCH) {
			io->scratch = ZERO_ALLOCATE;
		} else {
			return res < 0 ? res : (int)io->len;
		}
		file_submit_fallocate(f, q, io);
		return UBLK_IO_QUEUED;
	}
	if (res < 0)
		return res;
	if (io->op != UBLK_IO_OP_READ && io->op != UBLK_IO_OP_WRITE)
		return (int)io->len; /* flush: 0 */
	/* Nothing moved inside the device's size: the file shrank or the
	 * block device went away.  Zeroes would hide it from a mirror. */
	if (res == 0)
		return -EIO;
	io->scratch += (uint32_t)res;
	if (io->scratch < io->len) {
		file_submit_rw(f, q, io);
		return UBLK_IO_QUEUED;
	}
	if (io->op == UBLK_IO_OP_READ && ublk_io_user_copy(q, io))
		return ublk_io_copy_user(q, io, io->buf, io->len, 0); /* len, or -errno */
	return (int)io->len;
}

static const struct ublk_backend_opt file_opts[] = {
	{ .name = "path", .kind = UBLK_OPT_STRING, .flags = UBLK_OPT_REQUIRED,
	  .help = "the file or block device to serve" },
	{ .name = "direct", .kind = UBLK_OPT_BOOL, .def = "on for block devices only",
	  .help = "open it with O_DIRECT" },
	{ .name = "create", .kind = UBLK_OPT_BOOL, .def = "false",
	  .help = "make a missing file, grow a short one, to the device's size" },
	{ .name = "copy", .kind = UBLK_OPT_CHOICE, .values = UBLK_COPY_MODES,
	  .def = "zero copy where the kernel has it, else buffer",
	  .help = "how request data moves (docs/tuning.md)" },
	{ 0 }
};

/* A regular file shorter than `size` grows (as create = true grows one);
 * a block device serves only what it has.  Shrinking leaves the file as
 * it is: its data past the new end stays the user's. */
static int file_resize(struct ublk_backend *b, uint64_t size)
{
	struct file *f = b->priv;
	struct stat st;
	uint64_t have;

	if (fstat(f->fd, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(f->fd, BLKGETSIZE64, &have) < 0)
			return -errno;
	} else {
		have = (uint64_t)st.st_size;
	}
	if (have >= size)
		return 0;
	if (S_ISBLK(st.st_mode) || f->read_only) {
		snprintf(b->err, sizeof(b->err), "the %s holds %llu bytes, less than %llu",
			 S_ISBLK(st.st_mode) ? "block device" : "read-only file",
			 (unsigned long long)have, (unsigned long long)size);
		return -EFBIG;
	}
	if (ftruncate(f->fd, (off_t)size) < 0) {
		int err = errno;

		snprintf(b->err, sizeof(b->err), "cannot grow the file to %llu bytes: %s",
			 (unsigned long long)size, strerror(err));
		return -err;
	}
	return 0;
}

const struct ublk_backend_ops ublk_backend_file = {
	.name = "file",
	.opts = file_opts,
	.sizes_itself = true,
	.create = file_create,
	.destroy = file_destroy,
	.handle_io = file_handle_io,
	.io_done = file_io_done,
	.resize = file_resize,
};
