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

#include "backend.h"
#include "queue.h"

struct file {
	int fd;
};

static int file_size(struct ublk_backend *b, int fd, const struct ublk_backend_conf *conf)
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
			 conf->path);
		return -EINVAL;
	}
	if (!conf->size) {
		b->size = have - have % conf->block_size;
		if (!b->size) {
			snprintf(b->err, sizeof(b->err),
				 "'%s' is empty: give a size to create it", conf->path);
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
		 conf->path, (unsigned long long)have, (unsigned long long)conf->size);
	return -EINVAL;
}

static int file_create(struct ublk_backend *b, const struct ublk_backend_conf *conf)
{
	int flags = (conf->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	struct file *f;
	int ret;

	if (!conf->path || !*conf->path) {
		snprintf(b->err, sizeof(b->err), "the file backend needs a 'path'");
		return -EINVAL;
	}
	if (conf->direct)
		flags |= O_DIRECT;
	if (!conf->read_only && conf->size)
		flags |= O_CREAT;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->fd = open(conf->path, flags, 0600);
	if (f->fd < 0) {
		ret = -errno;
		snprintf(b->err, sizeof(b->err), "cannot open '%s'%s: %s", conf->path,
			 conf->direct ? " with O_DIRECT" : "", strerror(-ret));
		free(f);
		return ret;
	}
	ret = file_size(b, f->fd, conf);
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

/* (Re)submits the part of the tag's read or write not done yet. */
static void file_submit_rw(struct ublk_backend *b, struct ublk_queue *q, uint16_t tag)
{
	struct file *f = b->priv;
	struct ublk_tag *t = &q->tags[tag];
	const struct ublk_io_req *req = &t->req;
	char *buf = (char *)req->buf + t->done;
	struct io_uring_sqe *sqe = ublk_queue_backend_sqe(q, b, tag);

	if (req->op == UBLK_IO_OP_READ) {
		io_uring_prep_read(sqe, f->fd, buf, req->len - t->done, req->offset + t->done);
	} else {
		io_uring_prep_write(sqe, f->fd, buf, req->len - t->done, req->offset + t->done);
		if (req->flags & UBLK_IO_F_FUA)
			sqe->rw_flags = RWF_DSYNC;
	}
}

static int file_handle_io(struct ublk_backend *b, struct ublk_queue *q,
			  const struct ublk_io_req *req)
{
	struct file *f = b->priv;
	struct ublk_tag *t = &q->tags[req->tag];
	struct io_uring_sqe *sqe;
	int mode;

	/* keep the request: completions need it, and a delegating backend
	 * may have passed its own offset, length and buffer */
	t->req = *req;
	t->done = 0;
	switch (req->op) {
	case UBLK_IO_OP_READ:
	case UBLK_IO_OP_WRITE:
		file_submit_rw(b, q, req->tag);
		return UBLK_IO_QUEUED;
	case UBLK_IO_OP_FLUSH:
		sqe = ublk_queue_backend_sqe(q, b, req->tag);
		io_uring_prep_fsync(sqe, f->fd, IORING_FSYNC_DATASYNC);
		return UBLK_IO_QUEUED;
	case UBLK_IO_OP_DISCARD:
	case UBLK_IO_OP_WRITE_ZEROES:
		/* NOUNMAP asks us to keep the blocks allocated */
		mode = req->op == UBLK_IO_OP_WRITE_ZEROES && (req->flags & UBLK_IO_F_NOUNMAP)
			       ? FALLOC_FL_ZERO_RANGE
			       : FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
		sqe = ublk_queue_backend_sqe(q, b, req->tag);
		io_uring_prep_fallocate(sqe, f->fd, mode, req->offset, req->len);
		return UBLK_IO_QUEUED;
	default:
		return -EOPNOTSUPP;
	}
}

static void file_io_done(struct ublk_backend *b, struct ublk_queue *q, uint16_t tag,
			 const struct io_uring_cqe *cqe)
{
	struct ublk_tag *t = &q->tags[tag];
	const struct ublk_io_req *req = &t->req;

	if (cqe->res < 0) {
		ublk_queue_complete(q, tag, cqe->res);
		return;
	}
	if (req->op != UBLK_IO_OP_READ && req->op != UBLK_IO_OP_WRITE) {
		ublk_queue_complete(q, tag, (int)req->len);
		return;
	}
	t->done += (uint32_t)cqe->res;
	if (cqe->res == 0 && req->op == UBLK_IO_OP_READ) {
		/* past the end of a file that shrank under us: read zeroes */
		memset((char *)req->buf + t->done, 0, req->len - t->done);
		t->done = req->len;
	} else if (cqe->res == 0) {
		ublk_queue_complete(q, tag, -EIO);
		return;
	}
	if (t->done < req->len)
		file_submit_rw(b, q, tag);
	else
		ublk_queue_complete(q, tag, (int)req->len);
}

const struct ublk_backend_ops ublk_backend_file = {
	.name = "file",
	.create = file_create,
	.destroy = file_destroy,
	.handle_io = file_handle_io,
	.io_done = file_io_done,
};
