/* SPDX-License-Identifier: MIT */
/*
 * record_map.c - the recorder's log file mapped (record_map.h): a window
 * of address space reserved at open, the file mapped into it from offset
 * 0, and a thread of the log's own that grows the file a chunk ahead of
 * the tail and maps the new chunk populated for writing, so that the
 * queue threads neither enter the kernel nor fault pages in to log.
 * Populating is the dearest part of logging (about 18 us a page in the
 * 6.12 guest, the copy into a populated one 1.7 us): off the queue
 * threads, it runs beside them.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backends.h"
#include "record_map.h"

/* Gives the file blocks for [from, to), making it that long: 0 or -errno
 * (-ENOSPC when its file system is full: requests then fail with EIO,
 * where a page the mapping could not get would be a SIGBUS in a queue
 * thread).  A file system without fallocate gets zeros written.  (In the
 * 6.12 guest a tmpfs page cost 8.8 us to allocate and 10.8 us to map
 * populated then, 30 us to populate unallocated; the recorder's bench
 * moved within its noise.) */
static int allocate(int fd, uint64_t from, uint64_t to)
{
	static const char zeros[1 << 16];

	if (fallocate(fd, 0, (off_t)from, (off_t)(to - from)) == 0)
		return 0;
	if (errno != EOPNOTSUPP)
		return -errno;
	for (uint64_t at = from; at < to; at += sizeof(zeros))
		if (pwrite(fd, zeros, sizeof(zeros), (off_t)at) != (ssize_t)sizeof(zeros))
			return errno ? -errno : -EIO;
	return 0;
}

/* Faults [p, p + len) in for writing, so that the queue threads' copies
 * find its pages mapped writable.  MAP_POPULATE would not do: on a shared
 * mapping it faults pages in for reading, mapped read-only, and each
 * page's first copy faulted again to be made writable.  In the 6.12 guest
 * (CPU model without ERMS, 3 rounds) recorded 128 KiB writes went from
 * 1.4-2.7k to 2.3-3.1k IOPS with this, the busiest thread from 212-709 to
 * 185-408 us a write; 4 KiB writes did not move.  A kernel before 5.14
 * has no MADV_POPULATE_WRITE: pages then fault in as they are written. */
static void populate(char *p, size_t len)
{
	madvise(p, len, MADV_POPULATE_WRITE);
}

/* Maps the next chunk of the file, made that long: 0 or -errno. */
static int grow_chunk(struct ublk_record_log *l)
{
	uint64_t at = atomic_load(&l->mapped);
	int ret;

	if (at + UBLK_LOG_CHUNK > UBLK_LOG_WINDOW)
		return -EFBIG;
	ret = allocate(l->fd, at, at + UBLK_LOG_CHUNK);
	if (ret < 0)
		return ret;
	if (mmap(l->map + at, UBLK_LOG_CHUNK, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		 l->fd, (off_t)at) == MAP_FAILED)
		return -errno;
	populate(l->map + at, UBLK_LOG_CHUNK);
	atomic_store_explicit(&l->mapped, at + UBLK_LOG_CHUNK, memory_order_release);
	return 0;
}

static void *grower(void *arg)
{
	struct ublk_record_log *l = arg;
	sigset_t all;
	int ret = 0;

	sigfillset(&all); /* signals are for the main thread */
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_mutex_lock(&l->lock);
	for (;;) {
		while (!l->stop && !atomic_load(&l->asked))
			pthread_cond_wait(&l->wake, &l->lock);
		if (l->stop)
			break;
		atomic_store(&l->asked, false);
		pthread_mutex_unlock(&l->lock);
		do
			ret = grow_chunk(l);
		while (ret == 0 && atomic_load(&l->tail) + UBLK_LOG_AHEAD > atomic_load(&l->mapped));
		pthread_mutex_lock(&l->lock);
		if (ret < 0)
			l->grow_err = ret;
		pthread_cond_broadcast(&l->grown);
		if (ret < 0)
			break;
	}
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

int ublk_log_map_reach(struct ublk_record_log *l, uint64_t end)
{
	uint64_t m = atomic_load_explicit(&l->mapped, memory_order_acquire);
	int ret;

	if (end + UBLK_LOG_AHEAD <= m)
		return 0;
	if (!atomic_exchange(&l->asked, true)) {
		pthread_mutex_lock(&l->lock);
		pthread_cond_signal(&l->wake);
		pthread_mutex_unlock(&l->lock);
	}
	if (end <= m)
		return 0;
	pthread_mutex_lock(&l->lock);
	while (end > atomic_load(&l->mapped) && !l->grow_err) {
		atomic_store(&l->asked, true);
		pthread_cond_signal(&l->wake);
		pthread_cond_wait(&l->grown, &l->lock);
	}
	ret = end <= atomic_load(&l->mapped) ? 0 : l->grow_err;
	pthread_mutex_unlock(&l->lock);
	return ret;
}

int ublk_log_map_start(struct ublk_record_log *l, uint64_t tail)
{
	uint64_t len = (tail + UBLK_LOG_AHEAD + UBLK_LOG_CHUNK - 1) / UBLK_LOG_CHUNK *
		       UBLK_LOG_CHUNK;
	sigset_t all, old;
	int ret;

	ret = allocate(l->fd, tail, len);
	if (ret < 0)
		return ret;
	if (mmap(l->map, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, l->fd, 0) ==
	    MAP_FAILED)
		return -errno;
	/* the part the next writes go to, in now rather than page by page */
	populate(l->map + tail / 4096 * 4096, len - tail / 4096 * 4096);
	atomic_store(&l->tail, tail);
	atomic_store(&l->mapped, len);
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	ret = -pthread_create(&l->grower, NULL, grower, l);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	l->started = ret == 0;
	return ret;
}

void ublk_log_map_stop(struct ublk_record_log *l)
{
	pthread_mutex_lock(&l->lock);
	l->stop = true;
	pthread_cond_signal(&l->wake);
	pthread_mutex_unlock(&l->lock);
	pthread_join(l->grower, NULL);
}
