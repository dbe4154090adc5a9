/* SPDX-License-Identifier: MIT */
/*
 * record_writer.c - writing the recorder's log (record_log.h,
 * docs/crash-testing.md): a new log, or the log of a device being taken
 * over, continued; and one entry per request that changes the disk.  The
 * recorder policy (backend_record.c) and a Lua backend that records
 * (runtime/lua/backend_lua.c) both log through it.
 *
 * The hot path takes no lock of ours.  Each entry is one writev() on a
 * file opened O_APPEND: the kernel places it whole at the end under the
 * file's own lock, for which the queue threads (and `ublk-lua mark`)
 * contend only for the length of the copy into the page cache.  The log
 * is never fsynced: it must outlive the server, not the machine.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "../base/crc32c.h"
#include "../base/log.h"
#include "backends.h"
#include "record_log.h"

static int write_header(int fd, uint32_t block_size, uint64_t size)
{
	struct ublk_log_header h = { .version = UBLK_LOG_VERSION, .block_size = block_size,
				     .size = size };

	memcpy(h.magic, UBLK_LOG_MAGIC, sizeof(h.magic));
	h.crc = ublk_crc32c(0, &h, offsetof(struct ublk_log_header, crc));
	return write(fd, &h, sizeof(h)) == (ssize_t)sizeof(h) ? 0 : -EIO;
}

/* A server taking the device over continues the log of the one that
 * died: its header must say this device (size, block size), and an entry
 * cut short by the kill (a writev a fatal signal ended early) is cut off,
 * so the log reads whole up to its last complete entry and goes on from
 * there.  Requests in flight at the kill may come again (the kernel
 * reissues them) and be logged twice; replaying a write twice changes
 * nothing. */
static int continue_log(struct ublk_record_log *l, const char *log, uint32_t block_size,
			uint64_t size, struct ublk_backend *b)
{
	struct ublk_log_header h;
	struct ublk_log_head e;
	off_t pos = sizeof(h), end;
	int ret;

	l->fd = open(log, O_RDWR | O_APPEND | O_CLOEXEC);
	if (l->fd < 0) {
		ret = -errno;
		snprintf(b->err, sizeof(b->err), "log %.100s of the device being recovered: %s",
			 log, strerror(errno));
		return ret;
	}
	if (pread(l->fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    memcmp(h.magic, UBLK_LOG_MAGIC, sizeof(h.magic)) || h.version != UBLK_LOG_VERSION ||
	    h.crc != ublk_crc32c(0, &h, offsetof(struct ublk_log_header, crc))) {
		snprintf(b->err, sizeof(b->err), "log %.100s is not a recording ublk-lua can read",
			 log);
		return -EINVAL;
	}
	if (h.block_size != block_size || h.size != size) {
		snprintf(b->err, sizeof(b->err), "log %.80s records a device of %llu bytes in "
			 "%u-byte blocks, not this one of %llu in %u", log,
			 (unsigned long long)h.size, h.block_size, (unsigned long long)size,
			 block_size);
		return -EINVAL;
	}
	end = lseek(l->fd, 0, SEEK_END);
	while (pos + (off_t)sizeof(e) <= end &&
	       pread(l->fd, &e, sizeof(e), pos) == (ssize_t)sizeof(e) &&
	       e.magic == UBLK_LOG_ENTRY_MAGIC && pos + (off_t)sizeof(e) + e.data_len <= end)
		pos += (off_t)sizeof(e) + e.data_len;
	if (pos < end && ftruncate(l->fd, pos) < 0) {
		ret = -errno;
		snprintf(b->err, sizeof(b->err), "log %.100s: cutting its torn last entry: %s",
			 log, strerror(errno));
		return ret;
	}
	snprintf(b->note, sizeof(b->note), "log continued%s", pos < end ?
		 ", a torn last entry cut" : "");
	return 0;
}

int ublk_record_log_open(struct ublk_record_log *l, const char *log, bool recover,
			 uint32_t block_size, uint64_t size, struct ublk_backend *b)
{
	int ret;

	l->failed = false;
	if (recover) {
		ret = continue_log(l, log, block_size, size, b);
		if (ret < 0)
			ublk_record_log_close(l);
		return ret;
	}
	l->fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (l->fd < 0) {
		ret = -errno;
		snprintf(b->err, sizeof(b->err), "log %.100s: %s%s", log, strerror(errno),
			 ret == -EEXIST ? " (a recording is never overwritten)" : "");
		return ret;
	}
	ret = write_header(l->fd, block_size, size);
	if (ret < 0) {
		snprintf(b->err, sizeof(b->err), "log %.100s: cannot write its header", log);
		ublk_record_log_close(l);
		unlink(log);
	}
	return ret;
}

void ublk_record_log_close(struct ublk_record_log *l)
{
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
}

/* One entry for io, if it changes the disk: 0, or -EIO (said once). */
static int log_append(struct ublk_record_log *l, const struct ublk_io *io)
{
	static const uint8_t types[UBLK_NR_OPS] = {
		[UBLK_IO_OP_WRITE] = UBLK_LOG_WRITE, [UBLK_IO_OP_FLUSH] = UBLK_LOG_FLUSH,
		[UBLK_IO_OP_DISCARD] = UBLK_LOG_DISCARD,
		[UBLK_IO_OP_WRITE_ZEROES] = UBLK_LOG_WRITE_ZEROES,
	};
	uint8_t type = io->op < UBLK_NR_OPS ? types[io->op] : 0;
	struct ublk_log_head h = { .magic = UBLK_LOG_ENTRY_MAGIC, .offset = io->offset,
				   .len = io->len, .type = type };
	struct iovec iov[2] = { { &h, sizeof(h) }, { io->buf, 0 } };
	ssize_t n;

	if (!type) /* a read changes nothing */
		return 0;
	if (type == UBLK_LOG_WRITE) {
		h.data_len = io->len;
		iov[1].iov_len = io->len;
		if (io->flags & UBLK_IO_F_FUA)
			h.flags = UBLK_LOG_FUA;
	}
	if (type == UBLK_LOG_FLUSH)
		h.offset = h.len = 0;
	h.crc = ublk_crc32c(ublk_crc32c(0, &h, sizeof(h)), iov[1].iov_base, iov[1].iov_len);
	n = writev(l->fd, iov, 2);
	if (n == (ssize_t)(sizeof(h) + iov[1].iov_len))
		return 0;
	if (!l->failed) {
		l->failed = true;
		ublk_err("recorder: cannot append to the log (%s): requests fail with EIO",
			 n < 0 ? strerror(errno) : "short write");
	}
	return -EIO;
}

unsigned ublk_record_caps(unsigned caps)
{
	return (caps & ~(UBLK_CAN_USER_COPY | UBLK_CAN_ZERO_COPY)) | UBLK_CAN_FLUSH | UBLK_CAN_FUA;
}

int ublk_record_log_io(struct ublk_record_log *l, struct ublk_io *io, unsigned caps)
{
	int ret = log_append(l, io);

	if (ret < 0)
		return ret;
	if (io->op == UBLK_IO_OP_FLUSH && !(caps & UBLK_CAN_FLUSH))
		return 1;
	if (io->op == UBLK_IO_OP_WRITE && !(caps & UBLK_CAN_FUA))
		io->flags &= ~UBLK_IO_F_FUA;
	return 0;
}
