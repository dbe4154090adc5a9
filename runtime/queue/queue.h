/* SPDX-License-Identifier: MIT */
/*
 * queue.h - the data plane as the device sees it: one thread and one
 * io_uring per queue.  The thread fetches every tag (FETCH_REQ), then
 * loops: wait for a batch of completions, hand each request to the
 * backend, queue its COMMIT_AND_FETCH, and submit the whole batch with one
 * io_uring_enter.  Backends see the queue only through backend.h.
 *
 * Also here: a host queue, the same request path on the caller's thread
 * with no kernel driver behind it, for tests of backends.
 */
#ifndef UBLK_QUEUE_H
#define UBLK_QUEUE_H

#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "../include/backend.h"
#include "stats.h"
#include "watchdog.h"

/* A countdown the creator waits on until every queue has fetched. */
struct ublk_latch {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned pending;
	int err;		/* first error a queue reported */
};

void ublk_latch_init(struct ublk_latch *l, unsigned count);
void ublk_latch_destroy(struct ublk_latch *l);
void ublk_latch_count_down(struct ublk_latch *l, int err);
int ublk_latch_wait(struct ublk_latch *l);

/* Where a queue's thread runs (docs/tuning.md, pin): anywhere; only on
 * the CPUs the kernel maps to its queue; or there while requests come one
 * at a time and anywhere while they come in batches (queue_pin.c). */
enum ublk_pin { UBLK_PIN_OFF, UBLK_PIN_ON, UBLK_PIN_AUTO };

/* What the device decides for each queue before its thread starts. */
/* A file the device's requests may name data in (UBLK_F_SHMEM_ZC, 7.1+;
 * device_shmem.c): this process's shared mapping of it, registered with the
 * kernel under its index in the device's list. */
struct ublk_shmem_region {
	uint8_t *base;
	uint64_t len;
};
#define UBLK_SHMEM_MAX 16

struct ublk_queue_conf {
	uint16_t q_id;		/* the kernel's queue */
	/* With several threads a queue (UBLK_F_PER_IO_DAEMON, 6.16+), this
	 * thread serves tags tag_first, tag_first + tag_step, ... of queue
	 * q_id (tag_step 0: every tag), and `index` tells it from the
	 * others: q_id * threads + its place, what ublk_queue_id() gives a
	 * backend, which keeps per-thread state by it. */
	uint16_t index;
	uint16_t tag_first, tag_step;
	uint16_t depth;
	uint32_t dev_id;
	uint32_t max_io;	/* bytes: each tag's buffer */
	int cdev_fd;		/* /dev/ublkcN */
	bool ioctl_encode;	/* UBLK_U_IO_* command numbers */
	bool user_copy;		/* UBLK_F_USER_COPY granted */
	enum ublk_zc zero_copy;	/* UBLK_F_AUTO_BUF_REG or _SUPPORT_ZERO_COPY granted */
	bool batch;		/* UBLK_F_BATCH_IO granted: queue_batch.c's commands */
	bool auto_fallback;	/* zero_copy AUTO_REG at no slot: UBLK_ZC_AUTO_REG_FALLBACK */
	uint16_t desc_size;	/* bytes from one tag's descriptor to the next; 0: 24 */
	/* the device's registered files, by index (nr_shmem 0: none); a
	 * request that comes with UBLK_IO_F_SHMEM_ZC has io->buf in one */
	const struct ublk_shmem_region *shmem;
	unsigned nr_shmem;
	enum ublk_pin pin;	/* where the thread runs: on `cpus`, or anywhere */
	unsigned poll_us;	/* after a pass with work, spin this long before sleeping */
	bool latency;		/* time each request into the histograms */
	cpu_set_t cpus;		/* from GET_QUEUE_AFFINITY */
	struct ublk_backend *backend;
	struct ublk_latch *latch;	/* counted down once every tag is fetched */
	/* the device's, shared by its queues: pin = "auto" bumps it when a
	 * pin made its queue slower, and every queue then lets go (NULL: a
	 * queue alone) */
	uint32_t *pin_slower;
	/* where its counters go (stats.h): the device's shared mapping;
	 * NULL: a block of the queue's own */
	struct ublk_queue_stats *stats;
};

/* NULL when out of memory. */
struct ublk_queue *ublk_queue_new(const struct ublk_queue_conf *conf);
void ublk_queue_free(struct ublk_queue *q);

/* Starts the thread; the latch counts down once it has fetched every tag
 * (or failed to). */
int ublk_queue_start(struct ublk_queue *q);
/* Asks the thread to leave (after STOP_DEV, or when start failed). */
void ublk_queue_request_stop(struct ublk_queue *q);
/* A STOP_DEV is about to wait for every request in flight on q: its
 * backend hears of it (ublk_queue_draining) and stops waiting on others. */
void ublk_queue_drain(struct ublk_queue *q);
void ublk_queue_join(struct ublk_queue *q);

/* A copy of its counters (histograms included), read while it runs. */
void ublk_queue_get_stats(const struct ublk_queue *q, struct ublk_queue_stats *out);
/* Its counters themselves, for what writes them on its own thread (a Lua
 * backend's counters). */
struct ublk_queue_stats *ublk_queue_stats_block(struct ublk_queue *q);
/* The watchdog found the thread stuck in its backend for good. */
bool ublk_queue_wedged(const struct ublk_queue *q);
/* How long the thread has been inside its backend now (0: it is not, or
 * it is not watched). */
uint64_t ublk_queue_busy_ms(const struct ublk_queue *q);
/* The thread's id once it has started, else 0. */
pid_t ublk_queue_tid(const struct ublk_queue *q);
const cpu_set_t *ublk_queue_cpus(const struct ublk_queue *q);

/* ---- host queue: a backend's request path without the kernel ----
 * A real io_uring on the calling thread, real buffers, the backend's own
 * queue_init; requests are injected one at a time and run until the
 * commit they end with. */
int ublk_host_queue_open(struct ublk_queue **qp, struct ublk_backend *b,
			 unsigned depth, uint32_t max_io);
/* Runs one request on `tag`; returns what it committed (bytes or -errno). */
int ublk_host_queue_io(struct ublk_queue *q, uint16_t tag, uint8_t op, uint32_t flags,
		       uint64_t offset, uint32_t len);
/* The tag's buffer: fill it before a WRITE, read it after a READ. */
void *ublk_host_queue_buf(struct ublk_queue *q, uint16_t tag);
void ublk_host_queue_close(struct ublk_queue *q);

#endif
