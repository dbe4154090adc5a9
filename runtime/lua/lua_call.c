/* SPDX-License-Identifier: MIT */
/*
 * lua_call.c - running a Lua handler for one request, and turning what it
 * returns into the request's result.
 *
 * Synchronous backends are called with lua_pcall.  With async = true each
 * tag owns a coroutine (made once) that yields while the I/O it waits for
 * is in flight; io_done resumes it with the result.  Per request, C fills
 * the tag's struct ublk_lua_req (cdata Lua made once) and calls the
 * handler with function, self and req fetched from registry refs: no
 * allocation, no lookup by name.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "../base/log.h"
#include "../queue/queue.h"
#include "lua_bridge.h"

/* ---- errors: one line each, at most 5 a second per queue ---- */

void lua_handler_error(struct ublk_lua_queue *lq, uint16_t tag, const char *fmt, ...)
{
	time_t now = time(NULL);
	char msg[768];
	va_list ap;

	if (now != lq->log_second) {
		if (lq->log_dropped)
			ublk_err("dev %u queue %u: %u more handler errors not shown",
				 ublk_queue_dev_id(lq->q), ublk_queue_id(lq->q), lq->log_dropped);
		lq->log_second = now;
		lq->log_count = lq->log_dropped = 0;
	}
	if (lq->log_count++ >= 5) {
		lq->log_dropped++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* one line per error: the traceback's lines joined with " | " */
	for (char *c = msg; *c; c++)
		if (*c == '\n' || *c == '\t')
			*c = *c == '\n' ? '|' : ' ';
	ublk_err("dev %u queue %u tag %u: %s", ublk_queue_dev_id(lq->q), ublk_queue_id(lq->q),
		 tag, msg);
}

/* ---- results: Lua's conventions to bytes or -errno ---- */

/* The number 1..4095 at idx as -errno, or 0 if it is none. */
static int errno_number(lua_State *L, int idx)
{
	double v;

	if (lua_type(L, idx) != LUA_TNUMBER)
		return 0;
	v = fabs(lua_tonumber(L, idx));
	return v >= 1 && v <= 4095 && v == floor(v) ? -(int)v : 0;
}

/* The errno a handler failed with, from the last two of its three values
 * (on top of L): a number, or a name ("ENOSPC", or "ENOSPC: message" as
 * the helpers' failures say it).  A name ublk.errno does not know may come
 * with its number after it, as a helper's failure does ("EPIPE: Broken
 * pipe", 32): `return ublk.io.pwrite(...)` passes on any errno. */
static int errno_of(struct ublk_lua_queue *lq, lua_State *L, const char *handler, uint16_t tag)
{
	int e;

	if (lua_type(L, -2) == LUA_TNUMBER) {
		e = errno_number(L, -2);
		if (e)
			return e;
		lua_handler_error(lq, tag, "%s handler failed with errno %g, not 1..4095: EIO",
				  handler, lua_tonumber(L, -2));
	} else if (lua_type(L, -2) == LUA_TSTRING) {
		const char *s = lua_tostring(L, -2);
		size_t n = strcspn(s, ":");

		lua_rawgeti(L, LUA_REGISTRYINDEX, lq->errno_ref);
		lua_pushlstring(L, s, n);
		lua_rawget(L, -2);
		e = (int)lua_tointeger(L, -1);
		lua_pop(L, 2);
		if (e > 0)
			return -e;
		e = errno_number(L, -1);
		if (e)
			return e;
		lua_handler_error(lq, tag, "%s handler failed with '%s', not an errno name: EIO",
				  handler, s);
	}
	return -EIO;
}

/* The three values at the top of L.  Success: nothing, true, or a byte
 * count within the request.  Failure: nil or false and an errno (name or
 * number, or a name and its number), or a negative errno.  Anything else
 * fails the request with EIO and a line that names the value. */
static int to_result(struct ublk_lua_queue *lq, lua_State *L, const struct ublk_lua_req *req)
{
	const char *handler = ublk_op_name(req->op);
	int full = req->op == UBLK_IO_OP_FLUSH ? 0 : (int)req->length;
	double v;

	switch (lua_type(L, -3)) {
	case LUA_TNUMBER:
		v = lua_tonumber(L, -3);
		if (v >= 0 && v <= req->length && v == floor(v))
			return (int)v;
		if (v < 0 && v >= -4095 && v == floor(v))
			return (int)v;
		lua_handler_error(lq, req->tag, "%s handler returned %g: expected a byte count "
				  "0..%u, a negative errno, true, or nil and an errno name: EIO",
				  handler, v, req->length);
		return -EIO;
	case LUA_TNIL:
		return lua_isnil(L, -2) ? full : errno_of(lq, L, handler, req->tag);
	case LUA_TBOOLEAN:
		if (lua_toboolean(L, -3))
			return full;
		return lua_isnil(L, -2) ? -EIO : errno_of(lq, L, handler, req->tag);
	case LUA_TSTRING:
		lua_handler_error(lq, req->tag, "%s handler returned the string '%.40s': expected "
				  "a byte count, true, or nil and an errno name: EIO", handler,
				  lua_tostring(L, -3));
		return -EIO;
	default:
		lua_handler_error(lq, req->tag, "%s handler returned a %s: expected a byte count, "
				  "true, or nil and an errno name: EIO", handler,
				  lua_typename(L, lua_type(L, -3)));
		return -EIO;
	}
}

/* ---- synchronous handlers ---- */

static int call_sync(struct ublk_lua_queue *lq, int ref, struct lua_tag *t, uint16_t tag)
{
	lua_State *L = lq->L;
	int res;

	lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
	lua_rawgeti(L, LUA_REGISTRYINDEX, lq->self_ref);
	lua_rawgeti(L, LUA_REGISTRYINDEX, t->req_ref);
	if (lua_pcall(L, 2, 3, 1) != 0) {
		lua_handler_error(lq, tag, "%s handler failed: %s",
				  ublk_op_name(lq->reqs[tag].op), lua_tostring(L, -1));
		res = -EIO;
	} else {
		res = to_result(lq, L, &lq->reqs[tag]);
	}
	lua_settop(L, 1);
	if (!ublk_io_outstanding(t->io))
		return res;
	/* It handed the request to a delegate still in flight ('return
	 * base:read(req)' passes on EINPROGRESS): that one finishes it. */
	t->handler_result = res;
	return UBLK_IO_QUEUED;
}

/* The delegate's result is the request's, unless the handler failed. */
static int sync_done(const struct lua_tag *t, int res)
{
	int h = t->handler_result;

	return h >= 0 || h == -EINPROGRESS ? res : h;
}

/* ---- async handlers: one coroutine per tag ---- */

static int resume(struct ublk_lua_queue *lq, uint16_t tag, int nargs)
{
	struct lua_tag *t = &lq->tags[tag];
	lua_State *co = t->co;
	const struct ublk_lua_req *req = &lq->reqs[tag];
	int status, res;

	t->waiting = false;
	status = lua_resume(co, nargs);
	if (status == LUA_YIELD && ublk_io_outstanding(t->io)) {
		lua_settop(co, 0);
		t->waiting = true;
		return UBLK_IO_QUEUED;
	}
	if (status == 0) {
		lua_settop(co, 3);
		res = to_result(lq, co, req);
		lua_settop(co, 0);
		return res;
	}
	if (status == LUA_YIELD) {
		lua_handler_error(lq, tag, "%s handler yielded with nothing to wait for "
				  "(only ublk helpers and delegates may yield): EIO",
				  ublk_op_name(req->op));
	} else {
		luaL_traceback(lq->L, co, lua_tostring(co, -1), 0);
		lua_handler_error(lq, tag, "%s handler failed: %s", ublk_op_name(req->op),
				  lua_tostring(lq->L, -1));
		lua_settop(lq->L, 1);
	}
	/* A coroutine that raised is dead, one that yielded for nothing is
	 * stuck: the tag gets a fresh one.  One that raised after a helper
	 * submitted I/O and before it yielded (a raise in the wait itself, or
	 * the budget's interrupt) is kept until that I/O is done: its stack
	 * may hold the buffer the I/O fills (lua_call_done lets it go). */
	if (ublk_io_outstanding(t->io))
		t->dead = true;
	else
		lua_queue_new_coroutine(lq, tag);
	return -EIO;
}

static int call_async(struct ublk_lua_queue *lq, int ref, struct lua_tag *t, uint16_t tag)
{
	lua_State *co = t->co;

	lua_settop(co, 0);
	lua_rawgeti(co, LUA_REGISTRYINDEX, ref);
	lua_rawgeti(co, LUA_REGISTRYINDEX, lq->self_ref);
	lua_rawgeti(co, LUA_REGISTRYINDEX, t->req_ref);
	return resume(lq, tag, 2);
}

/* ---- the time budget ---- */

static __thread struct ublk_lua_queue *current;	/* whose Lua runs on this thread */

static bool overdue(const struct ublk_lua_queue *lq, const struct lua_tag *t, uint64_t now)
{
	return t->started_ms && now - t->started_ms > lq->lb->budget_ms;
}

/* Set by the watchdog's poke (lua_interrupt.c) while a handler runs. */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
	struct ublk_lua_queue *lq = current;
	struct lua_tag *t;

	(void)ar;
	lua_sethook(L, NULL, 0, 0);
	if (!lq || !lq->running)
		return;
	t = &lq->tags[lq->cur_tag];
	if (!overdue(lq, t, ublk_now_ms_coarse())) /* a late poke: that request has finished */
		return;
	t->expired = true;
	luaL_error(L, "over its time budget of %u ms", lq->lb->budget_ms);
}

/* Runs Lua for tag: interruptible by the watchdog while it does. */
static int run(struct ublk_lua_queue *lq, struct lua_tag *t, int ref, uint16_t tag, int res,
	       bool resuming)
{
	lua_State *was_L;
	lua_Hook was_hook;
	int ret;

	lq->cur_tag = tag;
	lq->running = true;
	current = lq;
	lua_interrupt_target(lq->L, budget_hook, &was_L, &was_hook);
	if (!resuming)
		ret = lq->lb->async ? call_async(lq, ref, t, tag) : call_sync(lq, ref, t, tag);
	else {
		lua_pushinteger(t->co, res);
		ret = resume(lq, tag, 1);
	}
	lua_interrupt_target(was_L, was_hook, NULL, NULL);
	lq->running = false;
	return ret;
}

/* Nothing of tag's request is outstanding any more. */
static void idle(struct ublk_lua_queue *lq, struct lua_tag *t)
{
	if (t->dead)
		lua_queue_new_coroutine(lq, t->io->tag);
	t->expired = false;
	t->started_ms = 0;
}

/* A request's handler has answered: over its budget, it is ETIMEDOUT; a
 * read whose handler filled req.buf has it copied into the request (user
 * copy).  Its tag is idle once nothing of it is outstanding. */
static int finish(struct ublk_lua_queue *lq, struct lua_tag *t, int ret)
{
	struct ublk_lua_req *r = &lq->reqs[t->io->tag];

	if (ret == UBLK_IO_QUEUED)
		return ret;
	if (ret > 0 && r->_buffered && r->op == UBLK_IO_OP_READ &&
	    ublk_io_user_copy(lq->q, t->io)) {
		int c = ublk_io_copy_user(lq->q, t->io, r->_buf, (uint32_t)ret, 0);

		if (c < 0) {
			lua_handler_error(lq, t->io->tag, "read: copying req.buf into the request "
					  "failed: %s", strerror(-c));
			ret = c;
		}
	}
	r->_buffered = 0; /* a req kept for later reaches ffi_buffer, which refuses */
	if (t->expired)
		ret = -ETIMEDOUT;
	/* What its handler left in flight (see resume) still counts against
	 * the budget, so lua_call_expire cancels it when it runs over. */
	if (!ublk_io_outstanding(t->io))
		idle(lq, t);
	return ret;
}

void lua_call_expire(struct ublk_lua_queue *lq)
{
	unsigned depth = ublk_queue_depth(lq->q);
	uint64_t now = ublk_now_ms_coarse();

	for (unsigned tag = 0; tag < depth; tag++) {
		struct lua_tag *t = &lq->tags[tag];

		if (!overdue(lq, t, now))
			continue;
		if (!t->expired)
			lua_handler_error(lq, (uint16_t)tag, "%s request over its time budget of "
					  "%u ms: cancelling what it waits for, ETIMEDOUT",
					  ublk_op_name(lq->reqs[tag].op), lq->lb->budget_ms);
		t->expired = true;
		/* at every tick, not once: the budget's interrupt (which sets
		 * expired too) may leave I/O in flight that nothing waits for */
		ublk_io_cancel(lq->q, t->io);
		ublk_io_cancel(lq->q, &t->sub);
	}
}

/* ---- from the backend's ops ---- */

int lua_call_handler(struct ublk_lua_queue *lq, struct ublk_io *io)
{
	uint16_t tag = io->tag;
	struct lua_tag *t = &lq->tags[tag];
	struct ublk_lua_req *r = &lq->reqs[tag];
	int ref = io->op < UBLK_NR_OPS ? lq->handler_ref[io->op] : LUA_NOREF;

	if (ref == LUA_NOREF)
		return -EOPNOTSUPP;
	r->_buf = io->buf;
	r->_buffered = 0;
	r->offset = (double)io->offset;
	r->length = io->len;
	r->flags = io->flags;
	r->op = io->op;
	t->io = io;
	t->started_ms = ublk_now_ms_coarse();
	t->expired = false;
	return finish(lq, t, run(lq, t, ref, tag, 0, false));
}

int lua_call_done(struct ublk_lua_queue *lq, struct ublk_io *io, int res)
{
	struct lua_tag *t = &lq->tags[io->tag];

	if (!lq->lb->async)
		return finish(lq, t, sync_done(t, res));
	if (!t->waiting) { /* nobody waits for it: the handler's result stands */
		bool expired = t->expired;

		if (ublk_io_outstanding(io))
			return UBLK_IO_QUEUED;
		idle(lq, t);
		return expired ? -ETIMEDOUT : UBLK_IO_QUEUED;
	}
	return finish(lq, t, run(lq, t, LUA_NOREF, io->tag, res, true));
}
