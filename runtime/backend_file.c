/* SPDX-License-Identifier: MIT */
/*
 * backend_file.c - a regular file or block device behind the disk.
 *
 * Every operation is submitted on the queue's own io_uring and completes
 * asynchronously, so one queue keeps `depth` file I/Os in flight with no
 * extra threads.  flush = fdatasync, FUA = RWF_DSYNC, discard = punch hole,
 * write-zeroes = zero range.
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

#include "backend.h"

struct file {
	int fd;
};

static int file_size(struct ublk_backend *b, int fd, const char *path,
		     const struct ublk_backend_conf *conf)
{
	struct stat st;
	uint64_t have;

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
	if (!conf->size) {
		b->size = have - have % conf->block_size;
		if (!b->size) {
			snprintf(b->err, sizeof(b->err),
				 "'%s' is empty: give a size to create it", path);
			return -EINVAL;
		}
		return 0;
	}
	b->size = conf->size;
	if (have >= conf->size)
		return 0;
	/* Grow a regular file to the size asked for; never a block device. */
	if (S_ISREG(st.st_mode) && !conf->read_only && ftruncate(fd, (off_t)conf->size) == 0)
		return 0;
	snprintf(b->err, sizeof(b->err), "'%s' holds %llu bytes, less than size %llu",
		 path, (unsigned long long)have, (unsigned long long)conf->size);
	return -EINVAL;
}

/* Options: path (required), direct ("1": O_DIRECT). */
static int file_create(struct ublk_backend *b, const struct ublk_backend_conf *conf)
{
	const char *path = ublk_conf_get(conf, "path");
	bool direct = ublk_conf_flag(conf, "direct");
	int flags = (conf->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	struct file *f;
	int ret;

	if (!path || !*path) {
		snprintf(b->err, sizeof(b->err), "the file backend needs a 'path'");
		return -EINVAL;
	}
	if (direct)
		flags |= O_DIRECT;
	if (!conf->read_only && conf->size)
		flags |= O_CREAT;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->fd = open(path, flags, 0600);
	if (f->fd < 0) {
		ret = -errno;
		snprintf(b->err, sizeof(b->err), "cannot open '%s'%s: %s", path,
			 direct ? " with O_DIRECT" : "", strerror(-ret));
		free(f);
		return ret;
	}
	ret = file_size(b, f->fd, path, conf);
	if (ret < 0) {
		close(f->fd);
		free(f);
		return ret;
	}
	b->priv = f;
	b->caps = UBLK_CAN_FLUSH | UBLK_CAN_FUA | UBLK_CAN_DISCARD | UBLK_CAN_WRITE_ZEROES;
	return 0;
}

static void file_destroy(struct ublk_backend *b)
{
	struct file *f = b->priv;

	close(f->fd);
	free(f);
}

/* (Re)submits the part of a read or write not done yet; io->scratch
 * counts the bytes done. */
static void file_submit_rw(struct file *f, struct ublk_queue *q, struct ublk_io *io)
{
	uint32_t done = (uint32_t)io->scratch;
	struct io_uring_sqe *sqe = ublk_io_sqe(q, io);

	if (io->op == UBLK_IO_OP_READ) {
		io_uring_prep_read(sqe, f->fd, (char *)io->buf + done, io->len - done,
				   io->offset + done);
	} else {
		io_uring_prep_write(sqe, f->fd, (char *)io->buf + done, io->len - done,
				    io->offset + done);
		if (io->flags & UBLK_IO_F_FUA)
			sqe->rw_flags = RWF_DSYNC;
	}
}

static int file_handle_io(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io)
{
	struct file *f = b->priv;
	int mode;

	switch (io->op) {
	case UBLK_IO_OP_READ:
	case UBLK_IO_OP_WRITE:
		file_submit_rw(f, q, io);
		return UBLK_IO_QUEUED;
	case UBLK_IO_OP_FLUSH:
		io_uring_prep_fsync(ublk_io_sqe(q, io), f->fd, IORING_FSYNC_DATASYNC);
		return UBLK_IO_QUEUED;
	case UBLK_IO_OP_DISCARD:
	case UBLK_IO_OP_WRITE_ZEROES:
		/* NOUNMAP asks us to keep the blocks allocated */
		mode = io->op == UBLK_IO_OP_WRITE_ZEROES && (io->flags & UBLK_IO_F_NOUNMAP)
			       ? FALLOC_FL_ZERO_RANGE
			       : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
		io_uring_prep_fallocate(ublk_io_sqe(q, io), f->fd, mode, io->offset, io->len);
		return UBLK_IO_QUEUED;
	default:
		return -EOPNOTSUPP;
	}
}

static int file_io_done(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io,
			int res)
{
	if (res < 0)
		return res;
	if (io->op != UBLK_IO_OP_READ && io->op != UBLK_IO_OP_WRITE)
		return (int)io->len; /* flush: 0 */
	io->scratch += (uint32_t)res;
	if (res == 0 && io->op == UBLK_IO_OP_READ) {
		/* past the end of a file that shrank under us: read zeroes */
		memset((char *)io->buf + io->scratch, 0, io->len - io->scratch);
		io->scratch = io->len;
	} else if (res == 0) {
		return -EIO;
	}
	if (io->scratch < io->len) {
		file_submit_rw(b->priv, q, io);
		return UBLK_IO_QUEUED;
	}
	return (int)io->len;
}

const struct ublk_backend_ops ublk_backend_file = {
	.name = "file",
	.create = file_create,
	.destroy = file_destroy,
	.handle_io = file_handle_io,
	.io_done = file_io_done,
};
