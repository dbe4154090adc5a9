/* SPDX-License-Identifier: MIT */
/*
 * lua_bridge.h - the Lua bridge's internal header, for the C files that
 * see Lua (main.c and lua_*.c): ublk.core (lua_core, lua_device, lua_host,
 * lua_admin, lua_interrupt) and the Lua backend's pieces:
 *   backend_lua.c  the ops table; device-wide create/destroy, delegates
 *   lua_queue.c    one queue's lua_State: made, filled, closed
 *   lua_call.c     calling and resuming handlers; results; error lines
 *   lua_ffi.c      the entry points queue-side Lua helpers call
 */
#ifndef UBLK_LUA_BRIDGE_H
#define UBLK_LUA_BRIDGE_H

#include <linux/time_types.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "../backends/backends.h"
#include "lua_ffi.h"

/* Device-wide: what ublk.backend{} packed, and the C delegates. */
struct lua_backend {
	char *chunk, *path, *cpath;	/* lua/ublk/transfer.lua's output; package paths */
	bool async;			/* handlers run as coroutines */
	unsigned budget_ms;		/* a request's time budget */
	struct ublk_backend *inner;	/* C delegates, by index */
	unsigned nr_inner;
	/* ublk.record{ base = this backend }: its log (fd -1: none), and
	 * the caps its handlers have under it (FLUSH, FUA taken or not) */
	struct ublk_record_log log;
	unsigned caps;
};

/* Per tag. */
struct lua_tag {
	struct ublk_io *io;		/* the request being served */
	struct ublk_io sub;		/* a delegate's share of it */
	lua_State *co;			/* async: this tag's coroutine */
	int co_ref, req_ref;
	bool waiting;			/* async: yielded until a completion */
	bool dead;			/* async: co raised with I/O in flight: kept, with
					 * the buffers its stack holds, until that is done */
	bool expired;			/* over its time budget: fails ETIMEDOUT */
	uint64_t started_ms;		/* when the request reached Lua; 0: idle */
	int handler_result;		/* sync: the handler's answer while its delegate ran */
	struct __kernel_timespec ts;	/* ublk.sleep's timeout */
};

/* Per queue, on its thread. */
struct ublk_lua_queue {
	lua_State *L;			/* stack slot 1: debug.traceback */
	struct ublk_queue *q;
	struct ublk_backend *b;
	struct lua_backend *lb;
	int self_ref, errno_ref;
	int handler_ref[UBLK_NR_OPS];
	struct lua_tag *tags;
	struct ublk_lua_req *reqs;	/* by tag, seen by Lua */
	struct ublk_lua_ctx ctx;	/* handed to ublk.queue.init */
	struct lua_region {		/* ublk.shared regions (ctx.region) */
		uint8_t *base;
		uint64_t size;
		int fd;
	} regions[8];
	unsigned nr_regions;
	uint16_t cur_tag;		/* the request whose Lua code runs now */
	bool running;			/* a handler runs now */
	time_t log_second;		/* rate limit for handler errors */
	unsigned log_count, log_dropped;
};

/* lua_queue.c */
int lua_queue_init(struct ublk_backend *b, struct ublk_queue *q);
void lua_queue_exit(struct ublk_backend *b, struct ublk_queue *q);
/* A fresh coroutine for tag (after one raised or was abandoned): the old
 * one is let go. */
void lua_queue_new_coroutine(struct ublk_lua_queue *lq, uint16_t tag);

/* lua_call.c */
int lua_call_handler(struct ublk_lua_queue *lq, struct ublk_io *io);
int lua_call_done(struct ublk_lua_queue *lq, struct ublk_io *io, int res);
/* Gives up on requests over their time budget (ops->tick). */
void lua_call_expire(struct ublk_lua_queue *lq);
void lua_handler_error(struct ublk_lua_queue *lq, uint16_t tag, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* lua_ffi.c */
void lua_ffi_fill(struct ublk_lua_queue *lq);

/* lua_interrupt.c: installs the UBLK_INTERRUPT_SIGNAL handler (once per
 * process); a thread names the state it may interrupt (NULL: none), and
 * may learn which one it named before, to restore it. */
void lua_interrupt_install(void);
void lua_interrupt_target(lua_State *L, lua_Hook hook, lua_State **was_L, lua_Hook *was_hook);

/* lua_core.c */
int luaopen_ublk_core(lua_State *L);

/* lua_result.c: how ublk.core's functions answer */
/* Pushes nil, "ENAME: msg", errno; returns 3. */
int lua_core_fail(lua_State *L, const char *msg, int err);
void lua_core_push_features(lua_State *L, uint64_t features);
void lua_core_push_limits(lua_State *L, const struct ublk_params *p);

/* lua_device.c: core.create and the device userdata (its metatable) */
#define LUA_DEVICE_MT "ublk.core.device"
struct ublk_dev;
/* The device userdata at argument 1 of a method; raises if it is none. */
static inline struct ublk_dev *lua_device_check(lua_State *L)
{
	return luaL_checkudata(L, 1, LUA_DEVICE_MT);
}
int lua_device_create(lua_State *L);
void lua_device_register(lua_State *L);
/* lua_device_info.c: d:info(), d:stats(), d:stats_address() */
int lua_device_info(lua_State *L);
int lua_device_stats(lua_State *L);
int lua_device_stats_address(lua_State *L);
/* Reads a backend spec at index t: { backend = name, size =, block_size =,
 * read_only =, opts = { key = "value" } }.  *opts_out is malloc'ed (the
 * strings stay Lua's: valid while the table is).  Raises on misuse. */
const struct ublk_backend_ops *lua_core_backend_conf(lua_State *L, int t,
						     struct ublk_backend_conf *bc,
						     const char ***opts_out);

extern const struct ublk_backend_ops ublk_backend_lua;

/* lua_admin.c: every ublk device on the machine, into core's table */
void lua_admin_register(lua_State *L);

/* lua_record.c: the recorder's log's checks and marks, into core's table */
void lua_record_register(lua_State *L);
/* lua_shared.c: core.shared_alloc and its regions, into core's table */
void lua_shared_register(lua_State *L);
/* lua_process.c: spawning servers and commands, sd_notify, into core's table */
void lua_process_register(lua_State *L);

/* lua_host.c: core.host_queue, a backend's queue on the host (tests) */
int lua_host_queue(lua_State *L);
void lua_host_register(lua_State *L);

#endif
