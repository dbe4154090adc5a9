/* SPDX-License-Identifier: MIT */
/*
 * queue_private.h - struct ublk_queue, shared by the files of the data
 * plane only (queue.c: requests and completions; queue_ring.c: the ring,
 * tags and watch; queue_thread.c: the thread and its loop; queue_api.c:
 * what backends call; queue_host.c: the host queue; queue_batch.c: the
 * UBLK_F_BATCH_IO commands; queue_pin.c: pin = "auto").  Backends never
 * include it: they use the functions in backend.h.
 */
#ifndef UBLK_QUEUE_PRIVATE_H
#define UBLK_QUEUE_PRIVATE_H

#include <liburing.h>
#include <stdint.h>
#include <time.h>

#include "../base/clock.h"
#include "../include/ublk_uapi.h"
#include "queue.h"
#include "watchdog.h"

/* What the queue keeps of each io, in its queue_private bytes
 * (backend.h), where backends cannot reach it: set when a backend starts
 * serving the io (queue.c's begin()), counted by what it starts. */
struct __attribute__((may_alias)) ublk_io_track {
	struct ublk_backend *backend;	/* whose io_done() gets completions */
	struct ublk_io *parent;		/* NULL: commit to the kernel */
	int result;
	unsigned outstanding;
	uint64_t start_ns;		/* when the queue took the request (stats.h) */
	struct ublk_io *done_next;	/* ublk_io_external_done()'s queue */
	int done_res;
};
_Static_assert(sizeof(struct ublk_io_track) <= sizeof(((struct ublk_io *)0)->queue_private),
	       "struct ublk_io_track outgrew backend.h's queue_private");

static inline struct ublk_io_track *ublk_io_track(const struct ublk_io *io)
{
	return (struct ublk_io_track *)(uintptr_t)io->queue_private;
}

/* UBLK_F_BATCH_IO's state (queue_batch.c).  Commits are staged in one of
 * a few element buffers and sent as one COMMIT_IO_CMDS per pass; a sent
 * buffer is not touched until its completion. */
#define UBLK_BATCH_COMMIT_BUFS 4
struct ublk_batch {
	struct io_uring_buf_ring *br;	/* FETCH's provided buffers */
	size_t br_len;
	uint16_t *tags;		/* nr_bufs arrays of buf_tags tags, one per buffer */
	unsigned nr_bufs, buf_tags;
	char *commit[UBLK_BATCH_COMMIT_BUFS];	/* depth elements each */
	uint16_t sent[UBLK_BATCH_COMMIT_BUFS];	/* elements in flight (0: free) */
	unsigned staging;	/* the buffer commits are staged in */
	unsigned staged;	/* elements there */
	unsigned owned;		/* tags delivered and not yet staged */
	uint8_t elem_bytes;
	uint16_t elem_flags;	/* UBLK_BATCH_F_* of PREP and COMMIT */
	bool aborted;		/* FETCH ended with ABORT: the queue is stopping */
	int prep_res;		/* PREP_IO_CMDS's result; 1 until it comes */
};

struct ublk_queue {
	struct ublk_queue_conf c;	/* as the device set it */
	int stop_fd;		/* eventfd: the owner asks the thread to leave */
	pthread_t thread;
	bool thread_started;
	bool host;		/* a host queue: no kernel, commits are counted */
	unsigned long host_commits;

	/* owned by the queue's thread from here on */
	struct io_uring ring;
	bool ring_up;		/* ring made: exit it once */
	bool backend_up;	/* queue_init done: queue_exit once */
	/* the kernel's, mmapped (host: ours), c.desc_size bytes apart:
	 * ublk_queue_desc() */
	struct ublksrv_io_desc *descs;
	size_t descs_len;
	char *bufs;		/* depth * max_io, one slice per tag */
	struct ublk_io *ios;	/* per tag: the device's own request */
	const struct ublk_io **timed;	/* committed this pass, latency not yet counted */
	unsigned nr_timed;
	bool worked;		/* the last pass had events (c.poll_us) */
	uint64_t pass_ns;	/* when this pass of the loop began (with c.latency) */
	unsigned cmd_inflight;	/* tags the kernel holds (fetch pending) */
	unsigned backend_inflight;	/* SQEs from ublk_io_sqe() and external
					 * operations not completed */
	struct ublk_io *done_head, *done_tail;	/* external completions to deliver */
	unsigned aborted;	/* tags STOP_DEV has given back */
	unsigned nr_tags;	/* the tags this thread serves (c.tag_first, ...) */
	struct ublk_batch batch;	/* with c.batch */
	bool stopping;		/* the owner asked, or a command failed */
	bool draining;		/* a STOP_DEV waits for what is in flight (atomic) */
	void *priv;		/* the backend's per-queue state */

	struct ublk_watch watch;	/* the watchdog's view of this thread */
	struct __kernel_timespec tick;	/* ops->tick's period */
	pid_t tid;		/* written once by the thread, read by others */
	struct ublk_queue_stats *stats;	/* c.stats or own_stats; read by others */
	struct ublk_queue_stats own_stats;
	bool sched_batch;	/* runs SCHED_BATCH, not SCHED_OTHER (queue_sched.c) */
	struct ublk_autopin {	/* c.pin == UBLK_PIN_AUTO (queue_pin.c); the pace
				 * (slept, waits, reqs) is counted on every queue,
				 * for queue_sched.c too */
		bool on, pinned;
		bool slept;		/* this pass began with a wait that slept */
		unsigned waits, reqs;	/* this window's requests, and those that woke it */
		unsigned held;		/* windows since it pinned */
		uint64_t next_try_ms, backoff_ms;
		uint64_t window_ns;	/* this window's first request */
		uint64_t woke_ns;	/* the last wait that slept ended (pin = "auto") */
		uint64_t free_ns;	/* per request, the unpinned window before the pin */
		uint32_t slower_seen;	/* *c.pin_slower as this queue last saw it */
		cpu_set_t all;		/* the thread's CPUs before it pinned */
		cpu_set_t mine;		/* the queue's CPUs among them: where it pins */
	} ap;
};

/* user_data of every SQE on a queue ring, packed and unpacked only here:
 * a backend operation carries its struct ublk_io's address (aligned, so
 * the low two bits are 0); commands carry tag << 2 | kind.  The queue's
 * own events are kind TICK: the tick is exactly UBLK_UD_TICK, a cancel's
 * completion 1 << 2 | TICK, and a backend's poll its struct ublk_poll's
 * address | TICK (an address, so never below 8). */
enum ublk_ud_kind { UBLK_UD_IO = 0, UBLK_UD_CMD = 1, UBLK_UD_STOP = 2, UBLK_UD_TICK = 3 };

static inline uint64_t ublk_ud_io(struct ublk_io *io) { return (uint64_t)(uintptr_t)io; }
static inline uint64_t ublk_ud_cmd(uint16_t tag) { return (uint64_t)tag << 2 | UBLK_UD_CMD; }
/* on a command: a buffer (un)registration's, not the tag's fetch/commit */
#define UBLK_UD_BUF ((uint64_t)1 << 32)
/* on a command: a batch command's (queue_batch.c), its "tag" saying which */
#define UBLK_UD_BATCH ((uint64_t)1 << 33)
static inline enum ublk_ud_kind ublk_ud_kind(uint64_t ud) { return (enum ublk_ud_kind)(ud & 3); }
static inline uint16_t ublk_ud_tag(uint64_t ud) { return (uint16_t)(ud >> 2); }
static inline struct ublk_io *ublk_ud_to_io(uint64_t ud) { return (struct ublk_io *)(uintptr_t)ud; }
#define UBLK_UD_CANCEL ((uint64_t)1 << 2 | UBLK_UD_TICK)
static inline uint64_t ublk_ud_poll(struct ublk_poll *p) { return (uint64_t)(uintptr_t)p | UBLK_UD_TICK; }
static inline struct ublk_poll *ublk_ud_to_poll(uint64_t ud)
{
	return ud > UBLK_UD_CANCEL ? (struct ublk_poll *)(uintptr_t)(ud & ~(uint64_t)3) : NULL;
}

/* Tag's own buffer, which every commit names: io->buf may be elsewhere
 * for one request (UBLK_IO_F_SHMEM_ZC). */
static inline void *ublk_queue_tag_buf(const struct ublk_queue *q, uint16_t tag)
{
	return q->bufs + (size_t)tag * q->c.max_io;
}

/* Tag's descriptor: the array's stride is the device's (UBLK_F_IO_DESC_SIZE,
 * 7.3+), at least the struct's own 24 bytes. */
static inline const struct ublksrv_io_desc *ublk_queue_desc(const struct ublk_queue *q,
							    uint16_t tag)
{
	return (const struct ublksrv_io_desc *)((const char *)q->descs +
						(size_t)tag * q->c.desc_size);
}

_Static_assert(_Alignof(struct ublk_io) >= 4, "user_data packs a kind in an io pointer's low bits");
_Static_assert(_Alignof(struct ublk_poll) >= 4, "user_data packs a kind in a poll pointer's low bits");

/* queue.c */
struct io_uring_sqe *ublk_queue_get_sqe(struct ublk_queue *q);
/* A zeroed URING_CMD SQE on the char device (fixed file 0). */
struct io_uring_sqe *ublk_queue_cmd_sqe(struct ublk_queue *q, unsigned op, uint64_t ud);
void ublk_queue_prep_cmd(struct ublk_queue *q, uint16_t tag, unsigned legacy_op,
			 unsigned encoded_op, int result);
void ublk_queue_handle_cqe(struct ublk_queue *q, const struct io_uring_cqe *cqe);
/* One batch: submit what is pending, wait for one completion at least,
 * handle every completion there is.  Returns io_uring_enter's error. */
int ublk_queue_run_once(struct ublk_queue *q);

/* queue_ring.c */
/* The queue's ring with `fd` as fixed file 0. */
int ublk_queue_ring_init(struct ublk_queue *q, int fd);
/* Maps the tags' buffers and the io array (descs are the caller's). */
int ublk_queue_alloc_tags(struct ublk_queue *q);
void ublk_queue_free_tags(struct ublk_queue *q);
/* After the backend's queue_init, on the queue's thread: the watchdog and
 * the tick; ublk_queue_unwatch before queue_exit. */
void ublk_queue_watch(struct ublk_queue *q);
void ublk_queue_unwatch(struct ublk_queue *q);
/* Arms ops->tick's one-shot timeout (again at each tick). */
void ublk_queue_arm_tick(struct ublk_queue *q);
/* With c.poll_us: submit, spin up to poll_us for an event, then wait for
 * one.  >= 0 or -errno, as io_uring_submit_and_wait. */
int ublk_queue_poll_then_wait(struct ublk_queue *q);

/* queue_batch.c, with c.batch */
/* Before the backend's queue_init: the provided buffers FETCH fills. */
int ublk_batch_init(struct ublk_queue *q);
void ublk_batch_free(struct ublk_queue *q);
/* Hands every tag to the kernel (PREP_IO_CMDS) and waits for its answer;
 * then arms the multishot FETCH.  0 or -errno. */
int ublk_batch_start(struct ublk_queue *q);
/* A finished request: staged for the pass's COMMIT_IO_CMDS. */
void ublk_batch_stage(struct ublk_queue *q, uint16_t tag, int result);
/* Sends what is staged (at the start of each pass, before submitting). */
void ublk_batch_flush(struct ublk_queue *q);
void ublk_batch_handle_cqe(struct ublk_queue *q, const struct io_uring_cqe *cqe);
/* Whether the queue may leave: the kernel ended FETCH (or the owner asked)
 * and nothing staged or sent is left. */
bool ublk_batch_idle(const struct ublk_queue *q);

/* How a window's requests came: nearly every one found the thread asleep
 * (one at a time: the submitter waits for each), or fewer than half did
 * (in batches).  Between the two, neither. */
#define UBLK_PIN_WINDOW 256	/* requests between decisions */
static inline bool ublk_pace_one_by_one(unsigned waits, unsigned reqs)
{
	return waits * 10 >= reqs * 9;
}

static inline bool ublk_pace_batches(unsigned waits, unsigned reqs)
{
	return waits * 2 < reqs;
}

/* queue_sched.c: the thread's scheduling class by the pace of a window.
 * The class a window asks for, from the present one (`batch`: SCHED_BATCH)
 * and its waits and requests; apart so that a test can drive it. */
bool ublk_sched_want_batch(bool batch, unsigned waits, unsigned reqs);
/* SCHED_BATCH, as a thread starts */
void ublk_sched_start(struct ublk_queue *q);
/* at the end of a window: the class its pace asks for */
void ublk_sched_decide(struct ublk_queue *q);

/* queue_pin.c: pin = true and "auto", on the queue's thread */
void ublk_pin_init(struct ublk_queue *q);
/* What "auto" does at the end of a window, from its waits per request,
 * its time per request (ns) and whether another queue of the device found
 * its pin slower (`told`); it keeps its own books (backoff, held, the
 * unpinned time) and the caller moves the thread, and on SLOWER tells the
 * device's other queues.  Apart so that a test can drive it with any
 * numbers. */
enum ublk_pin_move { UBLK_PIN_STAY, UBLK_PIN_PIN, UBLK_PIN_UNPIN, UBLK_PIN_SLOWER };
enum ublk_pin_move ublk_pin_step(struct ublk_autopin *a, uint64_t now_ms, uint64_t ns_per_req,
				 bool told);
/* Pins or lets go, by this window's waits per request and its time per
 * request against the unpinned window's. */
void ublk_pin_decide(struct ublk_queue *q);
/* A wait that slept ended at now_ns: after a pause of the device the
 * window starts again (the pause is no request's time). */
void ublk_pin_woke(struct ublk_autopin *a, uint64_t now_ns);
/* pin = true: the thread onto its queue's CPUs, those the process may use */
void ublk_pin_fixed(struct ublk_queue *q);

/* queue.c: starts a request the kernel delivered on `tag` */
void ublk_queue_handle_request(struct ublk_queue *q, uint16_t tag);

#endif
