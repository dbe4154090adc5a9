/* SPDX-License-Identifier: MIT */
/*
 * backend.h - what a backend implements.  Each backend is one file that
 * ends in a `const struct ublk_backend_ops`; the data plane knows backends
 * only through this table and finds them by name in the registry.
 */
#ifndef UBLK_BACKEND_H
#define UBLK_BACKEND_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

struct ublk_queue;
struct io_uring_cqe;

struct ublk_lua_conf;

/* What the user configured; each backend reads the fields it knows. */
struct ublk_backend_conf {
	uint64_t size;		/* bytes; 0 = the backend decides (file) */
	unsigned block_size;
	bool read_only;
	const char *path;	/* file backend */
	bool direct;		/* file backend: O_DIRECT */
	const struct ublk_lua_conf *lua;	/* lua backend */
};

/* A backend written in Lua (backend_lua.c), as lua/ublk/backend.lua
 * packed it: handlers, where modules live, and the C backends it
 * delegates to. */
struct ublk_lua_conf {
	const char *chunk;	/* lua/ublk/transfer.lua's output */
	size_t chunk_len;
	const char *path, *cpath;	/* package.path / cpath for queue states */
	bool async;		/* handlers run as coroutines */
	unsigned caps;		/* UBLK_CAN_* from the handlers it has */
	unsigned nr_inner;
	const char *const *inner_names;
	const struct ublk_backend_conf *inner;
};

/* Capabilities: only what a backend can do is advertised to the kernel,
 * so that flush, discard and write-zeroes really arrive when they can. */
enum {
	UBLK_CAN_FLUSH = 1 << 0,	/* has a volatile cache to flush */
	UBLK_CAN_FUA = 1 << 1,		/* honours UBLK_IO_F_FUA on writes */
	UBLK_CAN_DISCARD = 1 << 2,
	UBLK_CAN_WRITE_ZEROES = 1 << 3,
	/* Moves data itself with read/write on the char device, so the
	 * kernel copies straight between request pages and the backend's
	 * memory (UBLK_F_USER_COPY): one copy instead of two. */
	UBLK_CAN_USER_COPY = 1 << 4,
};

struct ublk_backend {
	const struct ublk_backend_ops *ops;
	void *priv;		/* device-wide state, shared by all queues */
	uint64_t size;		/* bytes served, set by create() */
	unsigned caps;		/* UBLK_CAN_* */
	char err[160];		/* why create() failed, for the user */
};

/* One I/O as a backend sees it. */
struct ublk_io_req {
	uint8_t op;		/* UBLK_IO_OP_* */
	uint32_t flags;		/* UBLK_IO_F_* (op bits masked off) */
	uint16_t tag;
	uint32_t len;		/* bytes */
	uint64_t offset;	/* bytes */
	void *buf;		/* this tag's buffer (READ: fill it; WRITE: read it) */
};

/* handle_io() returns this when it submitted work on the queue's ring and
 * will finish the request later with ublk_queue_complete(). */
#define UBLK_IO_QUEUED 0x7fffffff

struct ublk_backend_ops {
	const char *name;
	/* Device-wide setup, run before ADD_DEV so that a bad path or size is
	 * refused before any device exists.  Sets b->size, b->caps, b->priv. */
	int (*create)(struct ublk_backend *b, const struct ublk_backend_conf *conf);
	void (*destroy)(struct ublk_backend *b);
	/* Optional per-queue setup and teardown, run on the queue's thread. */
	int (*queue_init)(struct ublk_backend *b, struct ublk_queue *q);
	void (*queue_exit)(struct ublk_backend *b, struct ublk_queue *q);
	/* Bytes done (>= 0), -errno, or UBLK_IO_QUEUED.  `b` is passed
	 * explicitly because a backend may serve as another one's delegate. */
	int (*handle_io)(struct ublk_backend *b, struct ublk_queue *q,
			 const struct ublk_io_req *req);
	/* Completion of an SQE this backend submitted with
	 * ublk_queue_backend_sqe() for `tag`. */
	void (*io_done)(struct ublk_backend *b, struct ublk_queue *q, uint16_t tag,
			const struct io_uring_cqe *cqe);
};

/* Registry: the built-in backends by name; NULL if unknown. */
const struct ublk_backend_ops *ublk_backend_find(const char *name);
/* Names, NULL-terminated, for messages such as "unknown backend". */
const char *const *ublk_backend_names(void);

#endif
