/* SPDX-License-Identifier: MIT */
/*
 * device.h - one ublk device through its staged lifecycle:
 *
 *   ublk_dev_create  backend setup, ADD_DEV, SET_PARAMS (+ GET_PARAMS check)
 *   ublk_dev_start   queue threads fetch every tag, then START_DEV
 *   ublk_dev_stop    STOP_DEV; the kernel aborts the fetches; threads leave
 *   ublk_dev_close   DEL_DEV and free everything (stops first if needed)
 *
 * Calls return >= 0 or -errno; on failure `err` holds a sentence for the
 * user.  A failed create leaves no device behind.
 */
#ifndef UBLK_DEVICE_H
#define UBLK_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "../ctrl/ctrl.h"
#include "../include/backend.h"
#include "../queue/queue.h"

struct ublk_dev_conf {
	int id;			/* -1: the kernel picks */
	unsigned queues;
	unsigned depth;
	unsigned max_io;	/* bytes per request at most */
	unsigned block_size;
	bool read_only;
	bool discard;		/* advertise discard/write-zeroes if the backend can */
	enum ublk_pin pin;	/* queue threads on the kernel's CPUs for them (queue.h) */
	bool batch;		/* UBLK_F_BATCH_IO: array commands, not one per request */
	/* UBLK_F_NEED_GET_DATA: a write comes without its data, which a
	 * second command (UBLK_IO_NEED_GET_DATA) fetches into the tag's
	 * buffer; the tag's-buffer copy mode only */
	bool need_get_data;
	/* UBLK_F_IO_DESC_SIZE (7.3+): bytes per request descriptor in the
	 * queues' shared arrays, 24..256; 0: not asked (the kernel's 24) */
	unsigned io_desc_size;
	/* threads a queue (UBLK_F_PER_IO_DAEMON, 6.16+), each with its ring
	 * and every threads-th tag; 0 or 1: one */
	unsigned threads;
	/* UBLK_F_SHMEM_ZC (7.1+): files to map and register, whose pages a
	 * client's O_DIRECT buffers may be in (device_shmem.c) */
	const char *shmem_zc[UBLK_SHMEM_MAX];
	unsigned nr_shmem_zc;
	unsigned poll_us;	/* spin this long for more work before sleeping */
	bool latency;		/* keep latency histograms (stats.h) */
	/* 0, or UBLK_F_USER_RECOVERY with _REISSUE or _FAIL_IO: what the
	 * kernel does with the device when its server dies (see README) */
	uint64_t recovery;
	bool no_auto_part_scan;	/* UBLK_F_NO_AUTO_PART_SCAN (7.0+) */
	/* block layer limits, 0 where not set: UBLK_PARAM_TYPE_DMA_ALIGN and
	 * _SEGMENT (6.15+) */
	unsigned dma_align;	/* bytes */
	unsigned max_segments;
	uint64_t max_segment_size;
	uint64_t segment_boundary; /* bytes: a power of two */
};

/* PREPARED: a recovery whose backend is ready and whose device has been
 * checked, before the kernel was asked anything (ublk_dev_prepare_recovery) */
enum ublk_dev_state { UBLK_DEV_CREATED, UBLK_DEV_STARTED, UBLK_DEV_STOPPED, UBLK_DEV_CLOSED,
		      UBLK_DEV_PREPARED };

struct ublk_dev {
	enum ublk_dev_state state;
	struct ublk_ctrl ctrl;
	uint64_t features;	/* GET_FEATURES, 0 on kernels without it */
	struct ublksrv_ctrl_dev_info info;	/* as the kernel accepted it */
	struct ublk_params params;		/* as read back */
	struct ublk_backend backend;
	int cdev_fd;
	/* nr_queues of them: each kernel queue's `threads` in a row
	 * (queue q's thread k is queues[q * threads + k]) */
	struct ublk_queue **queues;
	unsigned nr_queues;
	unsigned threads;
	struct ublk_stats_header *stats;	/* their counters, shared (stats.h) */
	struct ublk_latch latch;
	/* bumped by a queue thread whose pin = "auto" pin made it slower:
	 * the others let go of theirs (queue_pin.c) */
	uint32_t pin_slower;
	bool recovering;	/* made by ublk_dev_recover: start ends the recovery */
	int recover_lock;	/* held while recovering (device_recover.c), or -1 */
	bool read_only;		/* the user's read_only: the backend serves no writes */
	uint64_t create_ns;	/* ADD_DEV .. params set */
	uint64_t start_ns;	/* threads .. START_DEV returned */
	/* queues the user asked for, when fewer were made: the backend's
	 * limit (queues_by_backend) or the kernel's, one per CPU */
	unsigned queues_asked;
	bool queues_by_backend;
	struct ublk_shmem_region shmem[UBLK_SHMEM_MAX]; /* conf->shmem_zc, mapped */
	unsigned nr_shmem;
	char err[256];
};

/* The zero-copy mode device flags (as granted) give its queues. */
enum ublk_zc ublk_dev_zero_copy(uint64_t flags);

/* A started device serves `size` bytes from now on (UPDATE_SIZE, 6.16+):
 * the backend grows first, then the kernel is told; a smaller size is
 * refused unless `force` (the data past it would be cut), and then the
 * kernel is told first.  The device keeps serving throughout. */
int ublk_dev_resize(struct ublk_dev *d, uint64_t size, bool force);
int ublk_dev_create(struct ublk_dev *d, const struct ublk_dev_conf *conf,
		    const struct ublk_backend_ops *ops,
		    const struct ublk_backend_conf *bconf);
/* Takes over device `id`, whose server died with recovery on (state
 * QUIESCED or FAIL_IO): START_USER_RECOVERY (waiting up to 10 s for the old
 * server to be gone), then queues like create's.  ublk_dev_start then
 * fetches every tag and ends the recovery: the waiting I/O is served.  The
 * backend must have the device's size; of conf only pin and latency
 * count (the rest is the device's own).  A failed recovery leaves the
 * device as it was, recoverable, and its record as the old server wrote
 * it: the device is registered as ours once ublk_dev_start has ended the
 * recovery. */
int ublk_dev_recover(struct ublk_dev *d, uint32_t id, const struct ublk_dev_conf *conf,
		     const struct ublk_backend_ops *ops,
		     const struct ublk_backend_conf *bconf);
/* ublk_dev_recover in two steps, for a server that must not take a device
 * from one still serving it until it knows it can (`ublk-lua reload`):
 * prepare makes the backend and checks the device against it, asking the
 * kernel nothing but GET_DEV_INFO and GET_PARAMS (the device may still be
 * LIVE, its old server serving on); resume is START_USER_RECOVERY and the
 * queues.  Closing a prepared device leaves it as it was. */
int ublk_dev_prepare_recovery(struct ublk_dev *d, uint32_t id,
			      const struct ublk_backend_ops *ops,
			      const struct ublk_backend_conf *bconf);
int ublk_dev_resume_recovery(struct ublk_dev *d, const struct ublk_dev_conf *conf);
int ublk_dev_start(struct ublk_dev *d);
int ublk_dev_stop(struct ublk_dev *d);
/* Leaves device d to the server that will recover it (`ublk-lua reload`):
 * nothing here deletes it any more.  Where the device has UBLK_F_QUIESCE
 * (7.x) QUIESCE_DEV first lets the I/O in flight finish and the queue
 * threads leave; elsewhere the caller's exit hands it over, as a crash
 * would, and recovery "reissue" serves again what was in flight.  The
 * caller must end the process without closing d.  A failure leaves d as
 * it was, the caller's to close (without user recovery it cannot be
 * handed over: the kernel would leave it DEAD). */
int ublk_dev_handover(struct ublk_dev *d);
int ublk_dev_close(struct ublk_dev *d);

/* How many STOP_DEVs are under way in this process (signals.c must not
 * end the process then: see wait_unstuck in device.c). */
int ublk_dev_stop_in_progress(void);

/* device_owner.c.  Ids of the devices this process added (or recovered)
 * and has not deleted (up to max); safe from any thread. */
int ublk_dev_ids(uint32_t *ids, int max);
/* Adds id to them and records this process as its server: a new record,
 * or for a `recovered` device the old server's with only the pid changed. */
void ublk_dev_register(uint32_t id, const char *store, bool recovered);
void ublk_dev_unregister(uint32_t id);
/* Forgets device id: its state file, and the store that file names. */
void ublk_dev_forget_owner(uint32_t id);
/* Deletes the devices whose recorded owner has died without removing them
 * (SIGKILL, the OOM killer): the next server cleans up.  Not those the
 * kernel keeps for recovery (ublk_dev_recoverable): `ublk-lua recover` or
 * `ublk-lua del` decides for them. */
void ublk_dev_remove_orphans(struct ublk_ctrl *c);
/* Whether a device whose server has died is kept for a new one: user
 * recovery on, and not DEAD.  QUIESCED or FAIL_IO once the kernel has
 * noticed the death; LIVE until then, which can be well after the process
 * has gone: the kernel acts when the dead server's io_uring and
 * /dev/ublkcN are torn down, and that runs asynchronously.
 * START_USER_RECOVERY waits for it (device_recover.c). */
bool ublk_dev_recoverable(const struct ublksrv_ctrl_dev_info *info);
/* A server as records name it: its pid and the process's start time
 * (field 22 of /proc/PID/stat), which a later process given the same pid
 * does not share.  Records of older versions have no start time. */
struct ublk_owner {
	int pid;
	bool has_start;
	unsigned long long start;
};
/* Reads the /proc stat file at `path` (/proc/PID/stat,
 * /proc/self/task/TID/stat) into buf: *rest points at its third field
 * (the state), past the command name, which may hold spaces and
 * parentheses.  0, or -errno (-ESRCH: empty; -EINVAL: no end of the name). */
int ublk_proc_stat(const char *path, char *buf, size_t len, char **rest);
/* Process pid's start time: 0, or -ENOENT when there is no such process. */
int ublk_proc_start(int pid, unsigned long long *start);
/* 1 if o's process runs (the same process, by its start time), 0 if it
 * has gone, -errno if that cannot be told. */
int ublk_owner_alive(const struct ublk_owner *o);
/* Device id's recorded server into o (may be NULL) and its store into
 * `store`: 1; 0 without a record; -EINVAL for a record that is not one we
 * wrote (cut short, no valid pid, a store that is not ours): trusted with
 * nothing. */
int ublk_dev_read_owner(uint32_t id, struct ublk_owner *o, char *store, size_t len);
/* Is path one ublk-lua makes for a store or ublk.shared region
 * (/dev/shm/ublk-lua.NAME, NAME of [A-Za-z0-9._-] without ".."): the only
 * files a record may make us remove. */
bool ublk_dev_our_path(const char *path);

/* device_delete.c.  DEL_DEV without waiting on a disk still held open
 * (then says by whom); unregisters the id. */
int ublk_dev_delete(struct ublk_ctrl *c, uint32_t id);
/* Stops device id only if nobody has its disk open (TRY_STOP_DEV):
 * -EBUSY with who holds it in why, or -ENOTSUP where the device lacks
 * UBLK_F_SAFE_STOP_DEV (before 7.0; EOPNOTSUPP to Lua); why says so.  0: stopped. */
int ublk_dev_try_stop(struct ublk_ctrl *c, uint32_t id, char *why, size_t len);

#endif
