/* SPDX-License-Identifier: MIT */
/*
 * backend_record.c - the recorder: a policy over any C backend that logs
 * every write (with its data), discard, write-zeroes, FLUSH and FUA flag
 * to an append-only, checksummed log (docs/crash-testing.md), then hands
 * the request to the base unchanged.
 *
 * Options: log (the log's path; it must not exist, unless `recover`: a
 * server taking the device over continues the dead one's log), base.*
 * (the base's).
 *
 * The hot path takes no lock of ours.  Each entry is one writev() on a
 * file opened O_APPEND: the kernel places it whole at the end under the
 * file's own lock, for which the queue threads (and `ublk-lua mark`)
 * contend only for the length of the copy into the page cache.  The log is
 * never fsynced: it must outlive the server, not the machine.  The entry
 * is written before the base sees the request, so a write is in the log
 * before it completes to the kernel.  The device moves data through the
 * tag buffers (no user copy, no zero copy), so the data to log is there.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../base/crc32c.h"
#include "../base/log.h"
#include "policy.h"
#include "record_log.h"

struct record {
	struct ublk_backend base;	/* first: policy.c finds it at b->priv */
	int fd;
	bool failed;	/* said once that the log cannot be written */
};

static int write_header(int fd, const struct ublk_backend_conf *conf, uint64_t size)
{
	struct ublk_log_header h = { .version = UBLK_LOG_VERSION, .block_size = conf->block_size,
				     .size = size };

	memcpy(h.magic, UBLK_LOG_MAGIC, sizeof(h.magic));
	h.crc = ublk_crc32c(0, &h, offsetof(struct ublk_log_header, crc));
	return write(fd, &h, sizeof(h)) == (ssize_t)sizeof(h) ? 0 : -EIO;
}

/* A server taking the device over (`recover`) continues the log of the one
 * that died: its header must say this device (size, block size), and an
 * entry cut short by the kill (a writev a fatal signal ended early) is cut
 * off, so the log reads whole up to its last complete entry and goes on
 * from there.  Requests in flight at the kill may come again (the kernel
 * reissues them) and be logged twice; replaying a write twice changes
 * nothing. */
static int continue_log(struct ublk_backend *b, struct record *r, const char *log,
			const struct ublk_backend_conf *conf)
{
	struct ublk_log_header h;
	struct ublk_log_head e;
	off_t pos = sizeof(h), end;
	int ret;

	r->fd = open(log, O_RDWR | O_APPEND | O_CLOEXEC);
	if (r->fd < 0) {
		ret = -errno;
		snprintf(b->err, sizeof(b->err), "log %.100s of the device being recovered: %s",
			 log, strerror(errno));
		return ret;
	}
	if (pread(r->fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    memcmp(h.magic, UBLK_LOG_MAGIC, sizeof(h.magic)) || h.version != UBLK_LOG_VERSION ||
	    h.crc != ublk_crc32c(0, &h, offsetof(struct ublk_log_header, crc))) {
		snprintf(b->err, sizeof(b->err), "log %.100s is not a recording ublk-lua can read",
			 log);
		return -EINVAL;
	}
	if (h.block_size != conf->block_size || h.size != r->base.size) {
		snprintf(b->err, sizeof(b->err), "log %.80s records a device of %llu bytes in "
			 "%u-byte blocks, not this one of %llu in %u", log,
			 (unsigned long long)h.size, h.block_size,
			 (unsigned long long)r->base.size, conf->block_size);
		return -EINVAL;
	}
	end = lseek(r->fd, 0, SEEK_END);
	while (pos + (off_t)sizeof(e) <= end &&
	       pread(r->fd, &e, sizeof(e), pos) == (ssize_t)sizeof(e) &&
	       e.magic == UBLK_LOG_ENTRY_MAGIC && pos + (off_t)sizeof(e) + e.data_len <= end)
		pos += (off_t)sizeof(e) + e.data_len;
	if (pos < end && ftruncate(r->fd, pos) < 0) {
		ret = -errno;
		snprintf(b->err, sizeof(b->err), "log %.100s: cutting its torn last entry: %s",
			 log, strerror(errno));
		return ret;
	}
	snprintf(b->note, sizeof(b->note), "log continued%s", pos < end ?
		 ", a torn last entry cut" : "");
	return 0;
}

static int record_create(struct ublk_backend *b, const struct ublk_backend_conf *conf)
{
	const char *log = ublk_conf_get(conf, "log");
	struct record *r;
	int ret;

	if (!log || !log[0]) {
		snprintf(b->err, sizeof(b->err), "the recorder needs a log path (log = PATH)");
		return -EINVAL;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->fd = -1;
	ret = ublk_policy_base_create(b, &r->base, conf);
	if (ret < 0) {
		free(r);
		return ret;
	}
	if (ublk_conf_flag(conf, "recover")) {
		ret = continue_log(b, r, log, conf);
		if (ret < 0)
			goto fail;
		goto made;
	}
	r->fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (r->fd < 0) {
		ret = -errno;
		snprintf(b->err, sizeof(b->err), "log %.100s: %s%s", log, strerror(errno),
			 ret == -EEXIST ? " (a recording is never overwritten)" : "");
		goto fail;
	}
	ret = write_header(r->fd, conf, r->base.size);
	if (ret < 0) {
		snprintf(b->err, sizeof(b->err), "log %.100s: cannot write its header", log);
		unlink(log);
		goto fail;
	}
made:
	b->priv = r;
	b->size = r->base.size;
	/* a volatile cache and FUA whatever the base has, so that the file
	 * system's flushes and FUA writes arrive where the log sees them;
	 * data through the tag buffers, where the log can read it */
	b->caps = (r->base.caps & ~(UBLK_CAN_USER_COPY | UBLK_CAN_ZERO_COPY)) |
		  UBLK_CAN_FLUSH | UBLK_CAN_FUA;
	return 0;
fail:
	if (r->fd >= 0)
		close(r->fd);
	r->base.ops->destroy(&r->base);
	free(r);
	return ret;
}

static void record_destroy(struct ublk_backend *b)
{
	struct record *r = b->priv;

	r->base.ops->destroy(&r->base);
	close(r->fd);
	free(r);
}

static int append(struct record *r, const struct ublk_io *io, uint8_t type)
{
	struct ublk_log_head h = { .magic = UBLK_LOG_ENTRY_MAGIC, .offset = io->offset,
				   .len = io->len, .type = type };
	struct iovec iov[2] = { { &h, sizeof(h) }, { io->buf, 0 } };
	ssize_t n;

	if (type == UBLK_LOG_WRITE) {
		h.data_len = io->len;
		iov[1].iov_len = io->len;
		if (io->flags & UBLK_IO_F_FUA)
			h.flags = UBLK_LOG_FUA;
	}
	if (type == UBLK_LOG_FLUSH)
		h.offset = h.len = 0;
	h.crc = ublk_crc32c(ublk_crc32c(0, &h, sizeof(h)), iov[1].iov_base, iov[1].iov_len);
	n = writev(r->fd, iov, 2);
	if (n == (ssize_t)(sizeof(h) + iov[1].iov_len))
		return 0;
	if (!r->failed) {
		r->failed = true;
		ublk_err("recorder: cannot append to the log (%s): requests fail with EIO",
			 n < 0 ? strerror(errno) : "short write");
	}
	return -EIO;
}

static int record_handle_io(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io)
{
	struct record *r = b->priv;
	int ret = 0;

	switch (io->op) {
	case UBLK_IO_OP_WRITE:
		ret = append(r, io, UBLK_LOG_WRITE);
		if (!(r->base.caps & UBLK_CAN_FUA))
			io->flags &= ~UBLK_IO_F_FUA;
		break;
	case UBLK_IO_OP_FLUSH:
		ret = append(r, io, UBLK_LOG_FLUSH);
		if (ret == 0 && !(r->base.caps & UBLK_CAN_FLUSH))
			return 0;
		break;
	case UBLK_IO_OP_DISCARD:
		ret = append(r, io, UBLK_LOG_DISCARD);
		break;
	case UBLK_IO_OP_WRITE_ZEROES:
		ret = append(r, io, UBLK_LOG_WRITE_ZEROES);
		break;
	}
	if (ret < 0)
		return ret;
	return r->base.ops->handle_io(&r->base, q, io);
}

const struct ublk_backend_ops ublk_backend_record = {
	.name = "record",
	.create = record_create,
	.destroy = record_destroy,
	.queue_init = ublk_policy_queue_init,
	.queue_exit = ublk_policy_queue_exit,
	.handle_io = record_handle_io,
	.io_done = ublk_policy_io_done,
	.tick = ublk_policy_tick,
};
