/* SPDX-License-Identifier: MIT */
/*
 * backend_lua.c - a backend whose handlers are Lua functions.
 *
 * Each queue thread gets its own lua_State (made in queue_init, on that
 * thread) holding its own copy of the backend (lua/ublk/transfer.lua), so
 * handlers run where the request arrived, with no locks and no hand-off.
 * Per request, C fills the tag's `struct ublk_lua_req` (which Lua sees as
 * cdata made once) and calls the handler through the C API with function,
 * self and req taken from registry refs: no allocation, no lookup by name.
 *
 * Synchronous backends are called with lua_pcall.  With async = true each
 * tag owns a coroutine (made once) that may yield while its I/O (a
 * delegate's, ublk.sleep, ublk.io.*) is in flight; the completion resumes
 * it.  The FFI helpers below submit SQEs and return: they never call back
 * into Lua, so JIT-compiled FFI calls stay safe.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "backend.h"
#include "log.h"
#include "queue.h"

int luaopen_ublk_core(lua_State *L);
extern const struct ublk_backend_ops ublk_backend_lua;

/* What a handler sees as `req`; mirrored by the cdef in ublk/queue.lua,
 * which checks the size and an offset at init. */
struct ublk_lua_req {
	uint8_t *buf;
	double offset;
	uint32_t length;
	uint32_t flags;
	uint16_t tag;
	uint16_t queue;
	uint8_t op;
};

struct lua_backend {
	struct ublk_lua_conf conf;	/* strings owned below */
	char *chunk, *path, *cpath;
	struct ublk_backend *inner;	/* C delegates */
	unsigned nr_inner;
};

struct lua_queue {
	lua_State *L;			/* stack slot 1: debug.traceback */
	struct ublk_queue *q;
	struct ublk_backend *b;
	struct lua_backend *lb;
	int self_ref, errno_ref;
	int handler_ref[UBLK_STAT_OPS];
	int *req_ref;			/* per tag */
	lua_State **co;			/* per tag, async only */
	int *co_ref;
	struct ublk_lua_req *reqs;	/* per tag */
	struct __kernel_timespec *ts;	/* per tag, for ublk.sleep */
	uint8_t *handed_over;		/* per tag: a delegate will commit */
	uint16_t cur_tag;		/* the request whose Lua code runs now */
	time_t log_second;		/* rate limit for handler errors */
	unsigned log_count, log_dropped;
};

/* Returned by a synchronous handler that handed its request to a delegate
 * still in flight: "the delegate completes this one". */
static char pending_mark;

/* ---- errors: one line each, at most 5 a second per queue ---- */

static void handler_error(struct lua_queue *lq, uint16_t tag, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void handler_error(struct lua_queue *lq, uint16_t tag, const char *fmt, ...)
{
	time_t now = time(NULL);
	char msg[768];
	va_list ap;

	if (now != lq->log_second) {
		if (lq->log_dropped)
			ublk_err("dev %u queue %u: %u more handler errors not shown",
				 lq->q->dev_id, lq->q->q_id, lq->log_dropped);
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
	ublk_err("dev %u queue %u tag %u: %s", lq->q->dev_id, lq->q->q_id, tag, msg);
}

/* ---- results: Lua's conventions to bytes or -errno ---- */

static int errno_of(struct lua_queue *lq, lua_State *L, int idx, uint16_t tag)
{
	int e;

	if (lua_type(L, idx) == LUA_TNUMBER) {
		e = (int)lua_tonumber(L, idx);
		return e < 0 ? e : -e;
	}
	if (lua_type(L, idx) == LUA_TSTRING) {
		/* read the name before pushing anything: idx is relative */
		const char *name = lua_tostring(L, idx);

		lua_rawgeti(L, LUA_REGISTRYINDEX, lq->errno_ref);
		lua_getfield(L, -1, name);
		e = (int)lua_tointeger(L, -1);
		lua_pop(L, 2);
		if (e > 0)
			return -e;
		handler_error(lq, tag, "handler failed with unknown errno name '%s': EIO", name);
	}
	return -EIO;
}

/* The two values at the top of L: nothing, true or a byte count succeed;
 * nil/false plus an errno (name or number) fail; a negative number is
 * -errno; the pending mark hands the request to a delegate. */
static int to_result(struct lua_queue *lq, lua_State *L, const struct ublk_lua_req *req)
{
	int full = req->op == UBLK_IO_OP_FLUSH ? 0 : (int)req->length;

	switch (lua_type(L, -2)) {
	case LUA_TNUMBER: {
		double v = lua_tonumber(L, -2);

		if (v < 0)
			return (int)v;
		if (v > req->length) {
			handler_error(lq, req->tag, "handler returned %.0f bytes for a %u-byte request",
				      v, req->length);
			return -EIO;
		}
		return (int)v;
	}
	case LUA_TNIL:
		return lua_isnil(L, -1) ? full : errno_of(lq, L, -1, req->tag);
	case LUA_TBOOLEAN:
		if (lua_toboolean(L, -2))
			return full;
		return lua_isnil(L, -1) ? -EIO : errno_of(lq, L, -1, req->tag);
	case LUA_TLIGHTUSERDATA:
		if (lua_touserdata(L, -2) == &pending_mark)
			return UBLK_IO_QUEUED;
		/* fall through */
	default:
		handler_error(lq, req->tag, "handler returned a %s: EIO",
			      lua_typename(L, lua_type(L, -2)));
		return -EIO;
	}
}

static const char *op_name(unsigned op)
{
	static const char *const names[UBLK_STAT_OPS] = {
		"read", "write", "flush", "discard", "write_same", "write_zeroes",
	};
	return op < UBLK_STAT_OPS ? names[op] : "?";
}

/* ---- calling handlers ---- */

static int call_sync(struct lua_queue *lq, int ref, const struct ublk_io_req *req)
{
	lua_State *L = lq->L;
	int res;

	lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
	lua_rawgeti(L, LUA_REGISTRYINDEX, lq->self_ref);
	lua_rawgeti(L, LUA_REGISTRYINDEX, lq->req_ref[req->tag]);
	if (lua_pcall(L, 2, 2, 1) != 0) {
		handler_error(lq, req->tag, "%s handler failed: %s", op_name(req->op),
			      lua_tostring(L, -1));
		res = -EIO;
	} else {
		res = to_result(lq, L, &lq->reqs[req->tag]);
	}
	lua_settop(L, 1);
	if (lq->handed_over[req->tag]) {
		/* a delegate's I/O is in flight and will commit this request,
		 * whatever the handler said: committing twice would be worse */
		if (res != UBLK_IO_QUEUED)
			handler_error(lq, req->tag, "%s handler ignored a delegate's pending "
				      "result (write 'return base:%s(req)')", op_name(req->op),
				      op_name(req->op));
		return UBLK_IO_QUEUED;
	}
	if (res == UBLK_IO_QUEUED) {
		handler_error(lq, req->tag, "%s handler returned the pending mark "
			      "without a delegate in flight", op_name(req->op));
		return -EIO;
	}
	return res;
}

/* Resumes tag's coroutine with nargs values on its stack. */
static int resume(struct lua_queue *lq, uint16_t tag, int nargs)
{
	lua_State *co = lq->co[tag];
	/* the request as the handler got it: a delegate may have replaced
	 * the tag's own copy with the I/O it was asked for */
	const struct ublk_lua_req *req = &lq->reqs[tag];
	int status, res;

	lq->cur_tag = tag;
	status = lua_resume(co, nargs);
	if (status == LUA_YIELD) {
		lua_settop(co, 0);
		return UBLK_IO_QUEUED;
	}
	if (status == 0) {
		lua_settop(co, 2);
		res = to_result(lq, co, req);
		lua_settop(co, 0);
		return res == UBLK_IO_QUEUED ? -EIO : res;
	}
	luaL_traceback(lq->L, co, lua_tostring(co, -1), 0);
	handler_error(lq, tag, "%s handler failed: %s", op_name(req->op),
		      lua_tostring(lq->L, -1));
	lua_settop(lq->L, 1);
	/* a coroutine that raised is dead: give the tag a fresh one */
	luaL_unref(lq->L, LUA_REGISTRYINDEX, lq->co_ref[tag]);
	lq->co[tag] = lua_newthread(lq->L);
	lq->co_ref[tag] = luaL_ref(lq->L, LUA_REGISTRYINDEX);
	return -EIO;
}

static int call_async(struct lua_queue *lq, int ref, const struct ublk_io_req *req)
{
	lua_State *co = lq->co[req->tag];

	lua_settop(co, 0);
	lua_rawgeti(co, LUA_REGISTRYINDEX, ref);
	lua_rawgeti(co, LUA_REGISTRYINDEX, lq->self_ref);
	lua_rawgeti(co, LUA_REGISTRYINDEX, lq->req_ref[req->tag]);
	return resume(lq, req->tag, 2);
}

/* A yielded coroutine's I/O finished: resume it with the result. */
static void wake(struct ublk_queue *q, uint16_t tag, int result)
{
	struct lua_queue *lq = q->backend_q;
	int res;

	lua_pushinteger(lq->co[tag], result);
	res = resume(lq, tag, 1);
	if (res != UBLK_IO_QUEUED)
		ublk_queue_complete(q, tag, res);
}

static int lua_handle_io(struct ublk_backend *b, struct ublk_queue *q,
			 const struct ublk_io_req *req)
{
	struct lua_queue *lq = q->backend_q;
	struct ublk_lua_req *r = &lq->reqs[req->tag];
	int ref = req->op < UBLK_STAT_OPS ? lq->handler_ref[req->op] : LUA_NOREF;

	(void)b;
	if (ref == LUA_NOREF)
		return -EOPNOTSUPP;
	r->buf = req->buf;
	r->offset = (double)req->offset;
	r->length = req->len;
	r->flags = req->flags;
	r->op = req->op;
	lq->cur_tag = req->tag;
	lq->handed_over[req->tag] = 0;
	return lq->lb->conf.async ? call_async(lq, ref, req) : call_sync(lq, ref, req);
}

static void lua_io_done(struct ublk_backend *b, struct ublk_queue *q, uint16_t tag,
			const struct io_uring_cqe *cqe)
{
	(void)b;
	wake(q, tag, cqe->res);
}

/* ---- FFI helpers: submit and return, never call Lua ---- */

static int ffi_delegate(void *ctx, int index, int op, uint16_t tag, uint8_t *buf,
			uint32_t len, double off, uint32_t flags)
{
	struct lua_queue *lq = ctx;
	struct ublk_backend *in;
	struct ublk_io_req r;
	int ret;

	if (index < 0 || (unsigned)index >= lq->lb->nr_inner || tag >= lq->q->depth)
		return -EINVAL;
	if (off < 0 || len > lq->q->max_io)
		return -EINVAL;
	in = &lq->lb->inner[index];
	r = (struct ublk_io_req){ .op = (uint8_t)op, .flags = flags, .tag = tag,
				  .len = len, .offset = (uint64_t)off, .buf = buf };
	ret = in->ops->handle_io(in, lq->q, &r);
	if (ret == UBLK_IO_QUEUED) {
		if (lq->lb->conf.async)
			lq->q->tags[tag].hook = wake;	/* resume the handler */
		else
			lq->handed_over[tag] = 1;	/* the delegate commits */
	}
	return ret;
}

static int ffi_sleep(void *ctx, double ms)
{
	struct lua_queue *lq = ctx;
	uint16_t tag = lq->cur_tag;
	struct io_uring_sqe *sqe;

	if (ms < 0)
		return -EINVAL;
	lq->ts[tag].tv_sec = (long long)(ms / 1000);
	lq->ts[tag].tv_nsec = (long long)((ms - (double)lq->ts[tag].tv_sec * 1000) * 1e6);
	sqe = ublk_queue_backend_sqe(lq->q, lq->b, tag);
	io_uring_prep_timeout(sqe, &lq->ts[tag], 0, 0);
	return 0;
}

static int ffi_rw(void *ctx, int write, int fd, void *buf, uint32_t len, double off)
{
	struct lua_queue *lq = ctx;
	struct io_uring_sqe *sqe = ublk_queue_backend_sqe(lq->q, lq->b, lq->cur_tag);

	if (write)
		io_uring_prep_write(sqe, fd, buf, len, (uint64_t)off);
	else
		io_uring_prep_read(sqe, fd, buf, len, (uint64_t)off);
	return 0;
}

static int ffi_fsync(void *ctx, int fd)
{
	struct lua_queue *lq = ctx;
	struct io_uring_sqe *sqe = ublk_queue_backend_sqe(lq->q, lq->b, lq->cur_tag);

	io_uring_prep_fsync(sqe, fd, 0);
	return 0;
}

/* ---- per-queue setup ---- */

static void set_ptr(lua_State *L, const char *k, void *p)
{
	lua_pushlightuserdata(L, p);
	lua_setfield(L, -2, k);
}

static void push_info(struct lua_queue *lq)
{
	lua_State *L = lq->L;
	struct lua_backend *lb = lq->lb;

	lua_newtable(L);
	set_ptr(L, "ctx", lq);
	set_ptr(L, "reqs", lq->reqs);
	set_ptr(L, "pending_mark", &pending_mark);
	lua_pushinteger(L, lq->q->q_id);
	lua_setfield(L, -2, "queue");
	lua_pushinteger(L, lq->q->depth);
	lua_setfield(L, -2, "depth");
	lua_pushinteger(L, UBLK_IO_QUEUED);
	lua_setfield(L, -2, "pending");
	lua_pushinteger(L, sizeof(struct ublk_lua_req));
	lua_setfield(L, -2, "req_size");
	lua_pushinteger(L, offsetof(struct ublk_lua_req, op));
	lua_setfield(L, -2, "req_op_offset");
	lua_pushboolean(L, lb->conf.async);
	lua_setfield(L, -2, "async");
	lua_pushlstring(L, lb->chunk, lb->conf.chunk_len);
	lua_setfield(L, -2, "chunk");
	lua_newtable(L);
	set_ptr(L, "delegate", (void *)ffi_delegate);
	set_ptr(L, "sleep", (void *)ffi_sleep);
	set_ptr(L, "rw", (void *)ffi_rw);
	set_ptr(L, "fsync", (void *)ffi_fsync);
	lua_setfield(L, -2, "fns");
}

static int new_state(struct lua_queue *lq)
{
	lua_State *L = luaL_newstate();

	if (!L)
		return -ENOMEM;
	lq->L = L;
	luaL_openlibs(L);
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "preload");
	lua_pushcfunction(L, luaopen_ublk_core);
	lua_setfield(L, -2, "ublk.core");
	lua_pop(L, 1);
	lua_pushstring(L, lq->lb->path);
	lua_setfield(L, -2, "path");
	lua_pushstring(L, lq->lb->cpath);
	lua_setfield(L, -2, "cpath");
	lua_pop(L, 1);
	lua_getglobal(L, "debug");
	lua_getfield(L, -1, "traceback");
	lua_remove(L, -2); /* slot 1: the message handler for every pcall */
	return 0;
}

/* Stack: self, handlers, reqs, errno (from ublk.queue.init). */
static void take_refs(struct lua_queue *lq)
{
	lua_State *L = lq->L;

	lq->errno_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	for (unsigned t = 0; t < lq->q->depth; t++) {
		lua_rawgeti(L, -1, (int)t);
		lq->req_ref[t] = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	lua_pop(L, 1);
	for (int op = 0; op < UBLK_STAT_OPS; op++) {
		lua_rawgeti(L, -1, op);
		if (lua_isfunction(L, -1))
			lq->handler_ref[op] = luaL_ref(L, LUA_REGISTRYINDEX);
		else {
			lq->handler_ref[op] = LUA_NOREF;
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 1);
	lq->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	if (lq->lb->conf.async)
		for (unsigned t = 0; t < lq->q->depth; t++) {
			lq->co[t] = lua_newthread(L);
			lq->co_ref[t] = luaL_ref(L, LUA_REGISTRYINDEX);
		}
}

static void lua_queue_free(struct lua_queue *lq)
{
	if (lq->L)
		lua_close(lq->L);
	free(lq->req_ref);
	free(lq->co);
	free(lq->co_ref);
	free(lq->reqs);
	free(lq->ts);
	free(lq->handed_over);
	free(lq);
}

static int lua_queue_init(struct ublk_backend *b, struct ublk_queue *q)
{
	struct lua_queue *lq = calloc(1, sizeof(*lq));
	unsigned depth = q->depth;
	int ret;

	if (!lq)
		return -ENOMEM;
	lq->q = q;
	lq->b = b;
	lq->lb = b->priv;
	lq->req_ref = calloc(depth, sizeof(int));
	lq->co = calloc(depth, sizeof(lua_State *));
	lq->co_ref = calloc(depth, sizeof(int));
	lq->reqs = calloc(depth, sizeof(struct ublk_lua_req));
	lq->ts = calloc(depth, sizeof(struct __kernel_timespec));
	lq->handed_over = calloc(depth, 1);
	if (!lq->req_ref || !lq->co || !lq->co_ref || !lq->reqs || !lq->ts || !lq->handed_over) {
		lua_queue_free(lq);
		return -ENOMEM;
	}
	for (unsigned t = 0; t < depth; t++) {
		lq->reqs[t].tag = (uint16_t)t;
		lq->reqs[t].queue = q->q_id;
	}
	ret = new_state(lq);
	if (ret < 0) {
		lua_queue_free(lq);
		return ret;
	}
	lua_getglobal(lq->L, "require");
	lua_pushstring(lq->L, "ublk.queue");
	if (lua_pcall(lq->L, 1, 1, 1) == 0) {
		lua_getfield(lq->L, -1, "init");
		lua_remove(lq->L, -2);
		push_info(lq);
		if (lua_pcall(lq->L, 1, 4, 1) == 0) {
			take_refs(lq);
			lua_settop(lq->L, 1);
			q->backend_q = lq;
			return 0;
		}
	}
	ublk_err("dev %u queue %u: Lua backend setup failed: %s", q->dev_id, q->q_id,
		 lua_tostring(lq->L, -1));
	lua_queue_free(lq);
	return -EINVAL;
}

static void lua_queue_exit(struct ublk_backend *b, struct ublk_queue *q)
{
	struct lua_queue *lq = q->backend_q;
	lua_State *L;

	(void)b;
	if (!lq)
		return;
	L = lq->L;
	lua_rawgeti(L, LUA_REGISTRYINDEX, lq->self_ref);
	lua_getfield(L, -1, "close");
	if (lua_isfunction(L, -1)) {
		lua_pushvalue(L, -2);
		if (lua_pcall(L, 1, 0, 1) != 0)
			ublk_err("dev %u queue %u: close hook failed: %s", q->dev_id,
				 q->q_id, lua_tostring(L, -1));
	}
	lua_queue_free(lq);
	q->backend_q = NULL;
}

/* ---- device-wide ---- */

static void lua_destroy(struct ublk_backend *b)
{
	struct lua_backend *lb = b->priv;

	for (unsigned i = 0; i < lb->nr_inner; i++)
		if (lb->inner[i].ops)
			lb->inner[i].ops->destroy(&lb->inner[i]);
	free(lb->inner);
	free(lb->chunk);
	free(lb->path);
	free(lb->cpath);
	free(lb);
}

static int lua_create(struct ublk_backend *b, const struct ublk_backend_conf *conf)
{
	const struct ublk_lua_conf *lc = conf->lua;
	struct lua_backend *lb;

	if (!lc || !lc->chunk || !conf->size)
		return -EINVAL;
	lb = calloc(1, sizeof(*lb));
	if (!lb)
		return -ENOMEM;
	b->priv = lb;
	lb->conf = *lc;
	lb->chunk = malloc(lc->chunk_len);
	lb->path = strdup(lc->path ? lc->path : "");
	lb->cpath = strdup(lc->cpath ? lc->cpath : "");
	lb->inner = calloc(lc->nr_inner ? lc->nr_inner : 1, sizeof(*lb->inner));
	if (!lb->chunk || !lb->path || !lb->cpath || !lb->inner) {
		lua_destroy(b);
		return -ENOMEM;
	}
	memcpy(lb->chunk, lc->chunk, lc->chunk_len);
	for (unsigned i = 0; i < lc->nr_inner; i++) {
		const struct ublk_backend_ops *ops = ublk_backend_find(lc->inner_names[i]);
		struct ublk_backend *in = &lb->inner[i];
		int ret;

		/* delegates run inside our queue_init's state: they may not
		 * need per-queue state of their own */
		if (!ops || ops->queue_init || ops == &ublk_backend_lua) {
			snprintf(b->err, sizeof(b->err), "cannot delegate to backend '%s'",
				 lc->inner_names[i]);
			lua_destroy(b);
			return -EINVAL;
		}
		in->ops = ops;
		ret = ops->create(in, &lc->inner[i]);
		if (ret < 0) {
			snprintf(b->err, sizeof(b->err), "delegate %.16s: %.120s", ops->name,
				 in->err[0] ? in->err : strerror(-ret));
			in->ops = NULL;
			lua_destroy(b);
			return ret;
		}
		lb->nr_inner++;
	}
	b->size = conf->size;
	b->caps = lc->caps;
	return 0;
}

const struct ublk_backend_ops ublk_backend_lua = {
	.name = "lua",
	.create = lua_create,
	.destroy = lua_destroy,
	.queue_init = lua_queue_init,
	.queue_exit = lua_queue_exit,
	.handle_io = lua_handle_io,
	.io_done = lua_io_done,
};
