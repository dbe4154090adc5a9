/* SPDX-License-Identifier: MIT */
/*
 * record_writer.c - writing the recorder's log (record_log.h,
 * docs/crash-testing.md): a new log, or the log of a device being taken
 * over, continued; one entry per request that changes the disk; marks
 * made in this process.  The recorder policy (backend_record.c) and a
 * Lua backend that records (runtime/lua/backend_lua.c) both log through
 * it.
 *
 * The file is mapped (record_map.c: a window of address space, a thread
 * growing the file ahead).  An entry is a reservation (one atomic add on
 * the tail: queue threads take no lock) and a copy into the mapping (from
 * the tag's buffer, or by user copy straight from the request), its magic
 * stored last, so a reader never takes half an entry for a whole one.
 * The page cache holds what was copied the moment it is copied: the log
 * outlives a killed server (it is never fsynced: it must outlive the
 * server, not the machine).
 *
 * Why: writev() of each entry onto an O_APPEND file, with a CRC32C, cost
 * 23-37 us and 38 us a 4 KiB write in the 6.12 guest; the copy into a
 * mapped page and XXH64 1.7 and 1.8 us.  Recorded 4k randwrite QD64 there
 * went from 9.5k to 27-29k IOPS (docs/crash-testing.md).
 *
 * The writer holds an exclusive flock() on the log while it is open, so
 * that nothing else appends to it then (crash_log.mark takes the same
 * lock; `ublk-lua mark` asks the serving process).
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../base/log.h"
#include "../base/xxh64.h"
#include "backends.h"
#include "record_log.h"
#include "record_map.h"

/* How long a server taking a device over waits for the one before it to
 * let go of the log (a reload: the old server closes it as it ends). */
#define LOCK_WAIT_MS 10000

/* The logs this process writes, for ublk_record_mark(). */
static pthread_mutex_t logs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ublk_record_log *logs;

static uint32_t header_check(const struct ublk_log_header *h)
{
	return (uint32_t)ublk_xxh64(h, offsetof(struct ublk_log_header, check), 0);
}

/* Where the entries of the log mapped at l->map end, reading from pos
 * (bytes) up to len: a head with no magic (the zeros mapped ahead, or an
 * entry a kill left uncopied), or one that runs past len, ends them. */
static uint64_t entries_end(const struct ublk_record_log *l, uint64_t pos, uint64_t len)
{
	const struct ublk_log_head *e;

	while (pos + sizeof(*e) <= len) {
		e = (const struct ublk_log_head *)(const void *)(l->map + pos);
		if (e->magic != UBLK_LOG_ENTRY_MAGIC || pos + sizeof(*e) + e->data_len > len)
			break;
		pos += sizeof(*e) + e->data_len;
	}
	return pos;
}

/* Takes the log's lock; a server taking over waits a while for the one
 * before it.  0 or -errno (-EBUSY: still held). */
static int lock_log(int fd, bool wait)
{
	struct timespec pause = { 0, 50 * 1000000L };

	for (int waited = 0; flock(fd, LOCK_EX | LOCK_NB) < 0; waited += 50) {
		if (errno != EWOULDBLOCK && errno != EINTR)
			return -errno;
		if (!wait || waited >= LOCK_WAIT_MS)
			return -EBUSY;
		nanosleep(&pause, NULL);
	}
	return 0;
}

/* The log of a device taken over, at its first entry: once the server
 * before has let go of it (a reload's old server ends after the hand-over
 * this one waits for; a killed one has), its entries end where that
 * server's last complete one does, and what follows (an entry the kill
 * left half copied, the zeros it had mapped ahead) is cut off before the
 * log goes on.  Requests in flight at the kill may come again (the kernel
 * reissues them) and be logged twice; replaying a write twice changes
 * nothing.  0 or -errno (put() says it). */
static int take_over(struct ublk_record_log *l)
{
	uint64_t end = sizeof(struct ublk_log_header);
	bool torn = false;
	struct stat st;
	int ret = 0;

	pthread_mutex_lock(&l->lock);
	if (!atomic_load(&l->pending))
		goto out;
	ret = lock_log(l->fd, true);
	if (ret == -EBUSY)
		ublk_err("recorder: log %s: another process still writes it after 10 s", l->path);
	if (ret < 0)
		goto out;
	if (fstat(l->fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	if (st.st_size > (off_t)end) {
		if (mmap(l->map, st.st_size, PROT_READ, MAP_SHARED | MAP_FIXED, l->fd, 0) ==
		    MAP_FAILED) {
			ret = -errno;
			goto out;
		}
		end = entries_end(l, end, st.st_size);
		for (uint64_t i = end; i < (uint64_t)st.st_size && !torn; i++)
			torn = l->map[i] != 0;
	}
	/* what followed goes: the room mapped ahead comes back as zeros */
	ret = ftruncate(l->fd, (off_t)end) < 0 ? -errno : ublk_log_map_start(l, end);
	if (ret < 0)
		goto out;
	if (torn)
		ublk_warn("recorder: log %s continued after %llu bytes, a torn last entry cut",
			  l->path, (unsigned long long)end);
	else
		ublk_info("recorder: log %s continued after %llu bytes", l->path,
			  (unsigned long long)end);
	atomic_store_explicit(&l->pending, false, memory_order_release);
out:
	pthread_mutex_unlock(&l->lock);
	return ret;
}

/* The log cannot be written any more: said once, and every request that
 * would log fails with EIO from now on.  -EIO. */
static int give_up(struct ublk_record_log *l, const char *why, int err)
{
	if (!atomic_exchange(&l->failed, true))
		ublk_err("recorder: %s %s (%s): requests fail with EIO", why, l->path,
			 strerror(err));
	return -EIO;
}

/* Appends one entry: head h (magic and check filled in here) and n bytes
 * of payload, from `data`, or with q the data of io, copied from the
 * request straight into the log by user copy.  0, or -EIO (said once). */
static int put(struct ublk_record_log *l, struct ublk_log_head *h, const void *data, uint32_t n,
	       const struct ublk_queue *q, const struct ublk_io *io)
{
	uint64_t size = sizeof(*h) + n, at;
	char *p;
	int ret;

	if (atomic_load_explicit(&l->failed, memory_order_relaxed))
		return -EIO;
	if (atomic_load_explicit(&l->pending, memory_order_acquire)) {
		ret = take_over(l);
		if (ret < 0)
			return give_up(l, "cannot continue the log", -ret);
	}
	at = atomic_fetch_add_explicit(&l->tail, size, memory_order_relaxed);
	ret = ublk_log_map_reach(l, at + size);
	if (ret < 0)
		return give_up(l, "cannot grow the log", -ret); /* EFBIG: past 1 TiB */
	p = l->map + at;
	if (q) {
		ret = ublk_io_copy_user(q, io, p + sizeof(*h), n, 0);
		if (ret != (int)n) /* the entry stays without its magic: the log ends there */
			return give_up(l, "cannot copy a write's data into the log",
				       ret < 0 ? -ret : EIO);
	} else {
		memcpy(p + sizeof(*h), data, n);
	}
	h->magic = UBLK_LOG_ENTRY_MAGIC;
	h->check = 0;
	h->check = (uint32_t)ublk_xxh64(p + sizeof(*h), n, ublk_xxh64(h, sizeof(*h), 0));
	/* all but the magic, then the magic: a reader (or a server taking
	 * the log over after a kill) that sees it sees the rest */
	memcpy(p + sizeof(h->magic), (char *)h + sizeof(h->magic), sizeof(*h) - sizeof(h->magic));
	atomic_store_explicit((_Atomic uint32_t *)(void *)p, h->magic, memory_order_release);
	return 0;
}

/* The header of a log being taken over must say this device. */
static int check_header(struct ublk_record_log *l, uint32_t block_size, uint64_t size,
			struct ublk_backend *b)
{
	struct ublk_log_header h;

	if (pread(l->fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    memcmp(h.magic, UBLK_LOG_MAGIC, sizeof(h.magic)) ||
	    (h.version == UBLK_LOG_VERSION && h.check != header_check(&h))) {
		snprintf(b->err, sizeof(b->err), "log %.100s is not a recording ublk-lua can read",
			 l->path);
		return -EINVAL;
	}
	if (h.version != UBLK_LOG_VERSION) {
		snprintf(b->err, sizeof(b->err), "log %.60s is of version %u: it can be read, "
			 "not continued (this ublk-lua writes version %u)", l->path, h.version,
			 UBLK_LOG_VERSION);
		return -EINVAL;
	}
	if (h.block_size != block_size || h.size != size) {
		snprintf(b->err, sizeof(b->err), "log %.80s records a device of %llu bytes in "
			 "%u-byte blocks, not this one of %llu in %u", l->path,
			 (unsigned long long)h.size, h.block_size, (unsigned long long)size,
			 block_size);
		return -EINVAL;
	}
	snprintf(b->note, sizeof(b->note), "log continued");
	return 0;
}

/* A new log: its header, under the lock. */
static int begin(struct ublk_record_log *l, uint32_t block_size, uint64_t size,
		 struct ublk_backend *b)
{
	struct ublk_log_header h = { .version = UBLK_LOG_VERSION, .block_size = block_size,
				     .size = size };
	int ret = lock_log(l->fd, false);

	memcpy(h.magic, UBLK_LOG_MAGIC, sizeof(h.magic));
	h.check = header_check(&h);
	if (ret == 0 && pwrite(l->fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		ret = -EIO;
	if (ret == 0)
		ret = ublk_log_map_start(l, sizeof(h));
	if (ret < 0)
		snprintf(b->err, sizeof(b->err), "log %.100s: cannot begin it: %s", l->path,
			 strerror(-ret));
	return ret;
}

int ublk_record_log_open(struct ublk_record_log *l, const char *log, bool recover,
			 uint32_t block_size, uint64_t size, struct ublk_backend *b)
{
	struct stat st;
	int ret;

	memset(l, 0, sizeof(*l));
	snprintf(l->path, sizeof(l->path), "%s", log);
	l->fd = recover ? open(log, O_RDWR | O_CLOEXEC)
			: open(log, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (l->fd < 0) {
		ret = -errno;
		snprintf(b->err, sizeof(b->err), "log %.60s%s: %s%s", log,
			 recover ? " of the device being recovered" : "", strerror(errno),
			 ret == -EEXIST ? " (a recording is never overwritten)" : "");
		return ret;
	}
	l->map = mmap(NULL, UBLK_LOG_WINDOW, PROT_NONE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (l->map == MAP_FAILED || fstat(l->fd, &st) < 0) {
		ret = -errno;
		snprintf(b->err, sizeof(b->err), "log %.100s: %s", log, strerror(errno));
		if (l->map != MAP_FAILED)
			munmap(l->map, UBLK_LOG_WINDOW);
		goto fail;
	}
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->wake, NULL);
	pthread_cond_init(&l->grown, NULL);
	atomic_store(&l->pending, recover);
	ret = recover ? check_header(l, block_size, size, b) : begin(l, block_size, size, b);
	if (ret < 0) {
		pthread_cond_destroy(&l->grown);
		pthread_cond_destroy(&l->wake);
		pthread_mutex_destroy(&l->lock);
		munmap(l->map, UBLK_LOG_WINDOW);
		goto fail;
	}
	pthread_mutex_lock(&logs_lock);
	l->next = logs;
	logs = l;
	pthread_mutex_unlock(&logs_lock);
	return 0;
fail:
	close(l->fd);
	if (!recover)
		unlink(log);
	l->fd = -1;
	return ret;
}

void ublk_record_log_close(struct ublk_record_log *l)
{
	struct ublk_record_log **p;

	if (l->fd < 0)
		return;
	pthread_mutex_lock(&logs_lock);
	for (p = &logs; *p && *p != l; p = &(*p)->next)
		;
	if (*p)
		*p = l->next;
	pthread_mutex_unlock(&logs_lock);
	if (l->started) {
		ublk_log_map_stop(l);
		/* the file ends at its last entry, without the room mapped ahead */
		if (ftruncate(l->fd, (off_t)atomic_load(&l->tail)) < 0)
			ublk_warn("recorder: log %s: cannot cut the room mapped ahead: %s",
				  l->path, strerror(errno));
	}
	pthread_cond_destroy(&l->grown);
	pthread_cond_destroy(&l->wake);
	pthread_mutex_destroy(&l->lock);
	munmap(l->map, UBLK_LOG_WINDOW);
	close(l->fd);
	l->fd = -1;
}

int ublk_record_mark(const char *log, const char *name, size_t len)
{
	struct ublk_log_head h = { .type = UBLK_LOG_MARK, .data_len = (uint32_t)len };
	struct ublk_record_log *l;
	struct stat st;
	int ret = -ENOENT;

	if (stat(log, &st) < 0)
		return -errno;
	pthread_mutex_lock(&logs_lock);
	for (l = logs; l; l = l->next)
		if (l->dev == st.st_dev && l->ino == st.st_ino)
			break;
	if (l)
		ret = put(l, &h, name, (uint32_t)len, NULL, NULL);
	pthread_mutex_unlock(&logs_lock);
	return ret;
}

/* One entry for io, if it changes the disk: 0, or -EIO. */
static int log_append(struct ublk_record_log *l, const struct ublk_queue *q,
		      const struct ublk_io *io)
{
	static const uint8_t types[UBLK_NR_OPS] = {
		[UBLK_IO_OP_WRITE] = UBLK_LOG_WRITE, [UBLK_IO_OP_FLUSH] = UBLK_LOG_FLUSH,
		[UBLK_IO_OP_DISCARD] = UBLK_LOG_DISCARD,
		[UBLK_IO_OP_WRITE_ZEROES] = UBLK_LOG_WRITE_ZEROES,
	};
	uint8_t type = io->op < UBLK_NR_OPS ? types[io->op] : 0;
	struct ublk_log_head h = { .offset = io->offset, .len = io->len, .type = type };
	uint32_t n = 0;

	if (!type) /* a read changes nothing */
		return 0;
	if (type == UBLK_LOG_WRITE) {
		h.data_len = n = io->len;
		if (io->flags & UBLK_IO_F_FUA)
			h.flags = UBLK_LOG_FUA;
	}
	if (type == UBLK_LOG_FLUSH)
		h.offset = h.len = 0;
	return put(l, &h, io->buf, n, n && q && ublk_io_user_copy(q, io) ? q : NULL, io);
}

unsigned ublk_record_caps(unsigned caps)
{
	return (caps & ~UBLK_CAN_ZERO_COPY) | UBLK_CAN_FLUSH | UBLK_CAN_FUA;
}

int ublk_record_log_io(struct ublk_record_log *l, const struct ublk_queue *q, struct ublk_io *io,
		       unsigned caps)
{
	int ret = log_append(l, q, io);

	if (ret < 0)
		return ret;
	if (io->op == UBLK_IO_OP_FLUSH && !(caps & UBLK_CAN_FLUSH))
		return 1;
	if (io->op == UBLK_IO_OP_WRITE && !(caps & UBLK_CAN_FUA))
		io->flags &= ~UBLK_IO_F_FUA;
	return 0;
}
