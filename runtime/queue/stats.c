/* SPDX-License-Identifier: MIT */
/*
 * stats.c - where a device's statistics live (stats.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../base/clock.h"
#include "../base/log.h"
#include "../include/state.h"
#include "stats.h"

static size_t map_size(unsigned nr_queues)
{
	return sizeof(struct ublk_stats_header) + nr_queues * sizeof(struct ublk_queue_stats);
}

static void path_of(char *buf, size_t len, uint32_t dev_id)
{
	snprintf(buf, len, "%s/dev%u.stats", ublk_state_dir(), dev_id);
}

struct ublk_stats_header *ublk_stats_map(uint32_t dev_id, unsigned nr_queues,
					  unsigned threads)
{
	size_t size = map_size(nr_queues);
	struct ublk_stats_header *h = MAP_FAILED;
	char path[64];
	int fd;

	path_of(path, sizeof(path), dev_id);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd >= 0 && ftruncate(fd, (off_t)size) == 0)
		h = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (h == MAP_FAILED) {
		ublk_dbg("dev %u: statistics stay in this process: %s: %s", dev_id, path,
			 strerror(errno));
		if (fd >= 0)
			unlink(path);
		h = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	}
	if (fd >= 0)
		close(fd);
	if (h == MAP_FAILED)
		return NULL;
	h->version = UBLK_STATS_VERSION;
	h->nr_queues = nr_queues;
	h->threads = threads;
	h->queue_stats_size = sizeof(struct ublk_queue_stats);
	h->started_ns = ublk_now_ns();
	__atomic_store_n(&h->magic, UBLK_STATS_MAGIC, __ATOMIC_RELEASE); /* complete now */
	return h;
}

void ublk_stats_unmap(struct ublk_stats_header *h)
{
	if (h)
		munmap(h, map_size(h->nr_queues));
}

void ublk_stats_forget(uint32_t dev_id)
{
	char path[64];

	path_of(path, sizeof(path), dev_id);
	unlink(path);
}
