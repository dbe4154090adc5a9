/* SPDX-License-Identifier: MIT */
/*
 * backends.h - the backends folder as the runtime above it sees it: the
 * registry of built-in C backends and the names of the ops they serve
 * (backend.c), and the memory store (store.h).  A backend's author needs
 * none of this: runtime/include/backend.h is their contract.
 */
#ifndef UBLK_BACKENDS_H
#define UBLK_BACKENDS_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "../include/backend.h"
#include "store.h"

/* UBLK_IO_OP_* the data plane serves: names for handlers and logs ("read"),
 * and for counters ("reads").  NULL for any other op. */
enum { UBLK_NR_OPS = 6 };
const char *ublk_op_name(unsigned op);
const char *ublk_op_stat_name(unsigned op);

/* The built-in C backends by name; NULL if unknown.  (The Lua backend is
 * not here: it belongs to the Lua bridge.) */
const struct ublk_backend_ops *ublk_backend_find(const char *name);
/* Their names, NULL-terminated, in the registry's order (the first is the
 * default backend), for core.backends() and "unknown backend" messages. */
const char *const *ublk_backend_names(void);

/* Loads the plugin at `path` (backend_plugin.c) into *ops: 0, or -errno
 * with why in err ("plugin ./x.so was built for backend ABI 1, ..."). */
int ublk_plugin_load(const char *path, const struct ublk_backend_ops **ops, char *err,
		     size_t errlen);

/* The recorder's log (record_writer.c; its format: record_log.h), written
 * by the recorder policy and by a Lua backend that records: mapped into
 * memory, each entry a reservation and a copy, the file grown ahead by a
 * thread of its own.  fd < 0: none open. */
struct ublk_record_log {
	int fd;
	char *map;			/* the file from offset 0, in a reserved window */
	_Atomic uint64_t tail;		/* where the next entry goes */
	_Atomic uint64_t mapped;	/* bytes of the file mapped: its length */
	_Atomic bool asked;		/* the grower has been asked for more */
	_Atomic bool failed;		/* said once that the log cannot be written */
	_Atomic bool pending;		/* a log taken over: continued at its first entry */
	bool started;			/* the grower runs */
	bool stop;			/* the grower ends (under lock) */
	int grow_err;			/* -errno once growing failed (under lock) */
	pthread_t grower;
	pthread_mutex_t lock;
	pthread_cond_t wake, grown;	/* the grower's; the writers waiting on it */
	dev_t dev;			/* the file, for marks made in this process */
	ino_t ino;
	char path[256];			/* for messages */
	struct ublk_record_log *next;	/* the logs this process writes */
};
/* A new log at `path` for a device of `size` bytes in `block_size`
 * blocks, or with `recover` the log of the device being taken over, its
 * header checked now and the log continued at its first entry (once the
 * server before has let go of it; a torn last entry cut, in a log line).
 * 0, or -errno with why in b->err. */
int ublk_record_log_open(struct ublk_record_log *l, const char *path, bool recover,
			 uint32_t block_size, uint64_t size, struct ublk_backend *b);
/* What a recorded backend advertises, from the caps of the one under the
 * log: a volatile cache and FUA whatever it takes, so that flushes and
 * FUA writes reach the log, and no zero copy: a write's data must reach
 * the log (from the tag's buffer, or by user copy straight into it). */
unsigned ublk_record_caps(unsigned caps);
/* Logs io if it changes the disk (a write with its data, a flush, a
 * discard, write-zeroes; FUA kept), then says what the backend under the
 * log (of `caps`) still has to do with it: 0 serve it (a FUA it takes
 * none of dropped), 1 it is done (a FLUSH it takes none of), or -EIO.
 * q: io's queue, whose user copy moves a write's data when the device
 * has it; NULL: the data is io->buf. */
int ublk_record_log_io(struct ublk_record_log *l, const struct ublk_queue *q, struct ublk_io *io,
		       unsigned caps);
void ublk_record_log_close(struct ublk_record_log *l);
/* Appends a mark of `len` bytes to the log at `path` if this process
 * writes it: 0, -ENOENT if it does not (crash_log.mark appends then), or
 * -errno. */
int ublk_record_mark(const char *path, const char *name, size_t len);

/* The values of option "copy" of null and file, in the order
 * ublk_backend_copy_mode() takes them. */
#define UBLK_COPY_MODES "buffer|inline|auto_reg|register"

/* Option "copy" (declared with UBLK_COPY_MODES) onto b's caps and
 * zc_only: "buffer" neither, "inline" user copy, "auto_reg"/"register"
 * that zero copy only (backend.h, enum ublk_zc).  As ublk_conf_choice():
 * 1 given, 0 absent (nothing set), -EINVAL with b->err. */
int ublk_backend_copy_mode(struct ublk_backend *b, const struct ublk_backend_conf *conf);

#endif
