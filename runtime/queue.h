/* SPDX-License-Identifier: MIT */
/*
 * queue.h - the data plane: one thread and one io_uring per queue.
 *
 * The thread fetches every tag (FETCH_REQ), then loops: wait for a batch of
 * completions, hand each request to the backend, queue its COMMIT_AND_FETCH,
 * and submit the whole batch with one io_uring_enter.  Everything in
 * struct ublk_queue belongs to that thread, except `stats` (read by others
 * with relaxed loads) and the startup latch.
 */
#ifndef UBLK_QUEUE_H
#define UBLK_QUEUE_H

#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "ublk_uapi.h"

/* user_data of every SQE on a queue ring: tag, kind, and 32 bits for the
 * backend.  Packed and unpacked only here. */
enum ublk_ud_kind {
	UBLK_UD_CMD = 0,	/* FETCH_REQ / COMMIT_AND_FETCH_REQ */
	UBLK_UD_BACKEND = 1,	/* an SQE a backend submitted for a tag */
	UBLK_UD_STOP = 2,	/* the stop eventfd became readable */
};

static inline uint64_t ublk_ud(uint16_t tag, enum ublk_ud_kind kind, uint32_t data)
{
	return (uint64_t)tag | (uint64_t)kind << 16 | (uint64_t)data << 32;
}
static inline uint16_t ublk_ud_tag(uint64_t ud) { return (uint16_t)ud; }
static inline enum ublk_ud_kind ublk_ud_kind(uint64_t ud) { return (enum ublk_ud_kind)((ud >> 16) & 0xff); }
static inline uint32_t ublk_ud_data(uint64_t ud) { return (uint32_t)(ud >> 32); }

/* Counters of one queue, indexed by UBLK_IO_OP_* for the ops we serve. */
enum { UBLK_STAT_OPS = 6 };
struct ublk_queue_stats {
	uint64_t ops[UBLK_STAT_OPS];
	uint64_t errors;
	uint64_t read_bytes;
	uint64_t write_bytes;
};

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

/* Called instead of committing when a wrapping backend (a Lua backend)
 * waits for the result of a delegate's asynchronous I/O. */
typedef void (*ublk_complete_hook)(struct ublk_queue *q, uint16_t tag, int result);

struct ublk_tag {
	void *buf;		/* max_io bytes, page aligned */
	struct ublk_io_req req;	/* the op in progress, as its backend got it */
	struct ublk_backend *io_owner;	/* gets this tag's backend CQEs */
	ublk_complete_hook hook;	/* one-shot; NULL commits */
	uint32_t done;		/* backend scratch: bytes done so far */
};

struct ublk_queue {
	/* set by the creator before the thread starts */
	uint16_t q_id;
	uint16_t depth;
	uint32_t dev_id;
	uint32_t max_io;
	int cdev_fd;
	bool ioctl_encode;
	bool user_copy;		/* UBLK_F_USER_COPY: data moves by cdev read/write */
	cpu_set_t cpus;		/* from GET_QUEUE_AFFINITY */
	bool pin;		/* run only on `cpus` */
	struct ublk_backend *backend;
	struct ublk_latch *latch;
	int stop_fd;		/* eventfd: the owner asks the thread to leave */

	/* owned by the queue thread */
	struct io_uring ring;
	struct ublksrv_io_desc *descs;
	size_t descs_len;
	char *bufs;
	struct ublk_tag *tags;
	unsigned cmd_inflight;	/* tags the kernel holds (fetch pending) */
	unsigned backend_inflight;
	bool stopping;
	void *backend_q;	/* per-queue backend state */
	pid_t tid;
	int cpu;		/* CPU the thread was last seen on */

	struct ublk_queue_stats stats;
	pthread_t thread;
	bool thread_started;
};

/* Starts the thread; the latch counts down once it has fetched every tag. */
int ublk_queue_start(struct ublk_queue *q);
/* Asks the thread to leave (after STOP_DEV, or when start failed). */
void ublk_queue_request_stop(struct ublk_queue *q);
void ublk_queue_join(struct ublk_queue *q);

/* ---- for backends, on the queue's own thread ---- */

/* Finishes a request: result is bytes or -errno.  Queues the commit (the
 * loop submits it with the rest of the batch), or hands the result to the
 * tag's hook when a wrapping backend is waiting for it. */
void ublk_queue_complete(struct ublk_queue *q, uint16_t tag, int result);

/* An SQE whose completion goes to b->ops->io_done() for `tag`.  Never
 * NULL: when the SQ is full the pending batch is submitted first. */
struct io_uring_sqe *ublk_queue_backend_sqe(struct ublk_queue *q, struct ublk_backend *b,
					     uint16_t tag);

static inline const struct ublksrv_io_desc *ublk_queue_desc(const struct ublk_queue *q,
							    uint16_t tag)
{
	return &q->descs[tag];
}

/* Offset on /dev/ublkcN of a request's data, for UBLK_F_USER_COPY. */
static inline uint64_t ublk_user_copy_pos(uint16_t q_id, uint16_t tag)
{
	return UBLKSRV_IO_BUF_OFFSET + ((uint64_t)q_id << UBLK_QID_OFF) +
	       ((uint64_t)tag << UBLK_TAG_OFF);
}

/* Relaxed load for readers on other threads. */
static inline uint64_t ublk_stat_load(const uint64_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}

#endif
