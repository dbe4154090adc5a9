/* SPDX-License-Identifier: MIT */
/*
 * lua_ffi.h - what C and a queue's Lua code share, written once.  The
 * part between the FFI markers is also the Lua side's cdef: the build
 * turns it into a string (build/gen/lua_ffi_cdef.h) that ublk.core hands
 * to lua/ublk/queue.lua as core.cdef, so the two sides cannot drift.
 * Keep that part plain C that LuaJIT's ffi.cdef accepts: no macros.
 */
#ifndef UBLK_LUA_FFI_H
#define UBLK_LUA_FFI_H

#include <stdbool.h>
#include <stdint.h>

/* BEGIN FFI */
/* A request as a Lua handler sees it (`req`): one per tag, made once.
 * Handlers read `req.buf` (lua/ublk/queue.lua): the tag's buffer, which
 * under user copy is filled from the request at its first use by a write
 * and copied into the request after a read's handler has filled it;
 * req:copy(mem) moves the data between the request and mem directly. */
struct ublk_lua_req {
	uint8_t *_buf;		/* the tag's buffer */
	uint8_t _buffered;	/* req.buf used: under user copy, copy it out */
	double offset;		/* bytes */
	uint32_t length;	/* bytes */
	uint32_t flags;		/* UBLK_IO_F_* */
	uint16_t tag;
	uint16_t queue;
	uint8_t op;		/* 0 read, 1 write, 2 flush, 3 discard, 5 write_zeroes */
};

/* One queue's Lua bridge (opaque to Lua). */
struct ublk_lua_queue;

/* What a queue's Lua state gets from C: its requests and the entry points
 * its helpers call.  Each entry point submits work and returns at once
 * (>= 0, -errno, or UBLK_LUA_QUEUED): none calls back into Lua, so a
 * JIT-compiled FFI call to them is safe.  They act for the request whose
 * handler runs now; given another's tag they refuse with -ESTALE. */
struct ublk_lua_ctx {
	struct ublk_lua_queue *q;
	struct ublk_lua_req *reqs;	/* by tag */
	uint16_t queue;
	uint16_t depth;
	bool async;
	/* delegate `index` serves op on buf/len/off for request `tag` */
	int (*delegate)(struct ublk_lua_queue *q, int index, int op, uint16_t tag,
			uint8_t *buf, uint32_t len, double off, uint32_t flags);
	int (*sleep)(struct ublk_lua_queue *q, double ms);
	int (*rw)(struct ublk_lua_queue *q, int write, int fd, void *buf, uint32_t len,
		  double off);
	int (*fsync)(struct ublk_lua_queue *q, int fd);
	/* req.buf's first use for request `tag`: returns the buffer, filled
	 * with a write's data where it moves by user copy; NULL if that copy
	 * failed (errno set) */
	uint8_t *(*buffer)(struct ublk_lua_queue *q, uint16_t tag);
	/* req:copy: `len` bytes at `off` of request `tag`'s data to mem (a
	 * write) or from mem (a read); len or -errno */
	int (*copy)(struct ublk_lua_queue *q, uint16_t tag, void *mem, uint32_t len,
		    uint32_t off);
	/* a ublk.shared region [base, base + size) mapped from file fd: a
	 * req:copy of a whole large request into it may go by zero copy */
	int (*region)(struct ublk_lua_queue *q, void *base, double size, int fd);
	/* the queue's struct ublk_queue_stats (runtime/queue/stats.h): the
	 * backend's own counters go there */
	void *stats;
};

/* An entry point's "submitted: wait for the completion". */
enum { UBLK_LUA_QUEUED = 0x7fffffff };
/* END FFI */

#endif
