/* SPDX-License-Identifier: MIT */
/*
 * lua_queue.c - one queue's lua_State, made in queue_init on the queue's
 * own thread and closed in queue_exit there.  It holds its own copy of the
 * backend (lua/ublk/transfer.lua), rebuilt by lua/ublk/queue.lua, so
 * handlers run where the request arrived, with no locks and no hand-off.
 */
#include <errno.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lualib.h>

#include "../base/log.h"
#include "lua_bridge.h"

static int new_state(struct ublk_lua_queue *lq)
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

void lua_queue_new_coroutine(struct ublk_lua_queue *lq, uint16_t tag)
{
	struct lua_tag *t = &lq->tags[tag];

	if (t->co)
		luaL_unref(lq->L, LUA_REGISTRYINDEX, t->co_ref);
	t->co = lua_newthread(lq->L);
	t->co_ref = luaL_ref(lq->L, LUA_REGISTRYINDEX);
	t->waiting = false;
	t->dead = false;
}

/* Stack: self, handlers (by op), reqs (by tag), errno (from init). */
static void take_refs(struct ublk_lua_queue *lq)
{
	lua_State *L = lq->L;
	unsigned depth = ublk_queue_depth(lq->q);

	lq->errno_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	for (unsigned t = 0; t < depth; t++) {
		lua_rawgeti(L, -1, (int)t);
		lq->tags[t].req_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	}
	lua_pop(L, 1);
	for (int op = 0; op < UBLK_NR_OPS; op++) {
		lua_rawgeti(L, -1, op);
		if (lua_isfunction(L, -1)) {
			lq->handler_ref[op] = luaL_ref(L, LUA_REGISTRYINDEX);
		} else {
			lq->handler_ref[op] = LUA_NOREF;
			lua_pop(L, 1);
		}
	}
	lua_pop(L, 1);
	lq->self_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	if (lq->lb->async)
		for (unsigned t = 0; t < depth; t++)
			lua_queue_new_coroutine(lq, (uint16_t)t);
}

static void lua_queue_free(struct ublk_lua_queue *lq)
{
	if (lq->L)
		lua_close(lq->L);
	free(lq->tags);
	free(lq->reqs);
	free(lq);
}

/* ublk.queue.init(ctx, chunk) -> self, handlers, reqs, errno */
static int run_init(struct ublk_lua_queue *lq)
{
	lua_State *L = lq->L;

	lua_getglobal(L, "require");
	lua_pushstring(L, "ublk.queue");
	if (lua_pcall(L, 1, 1, 1) != 0)
		return -1;
	lua_getfield(L, -1, "init");
	lua_remove(L, -2);
	lua_pushlightuserdata(L, &lq->ctx);
	lua_pushstring(L, lq->lb->chunk);
	if (lua_pcall(L, 2, 4, 1) != 0)
		return -1;
	take_refs(lq);
	lua_settop(L, 1);
	return 0;
}

/* The C delegates' own per-queue setup (an nbd delegate connects). */
static void delegates_exit(struct ublk_backend *b, struct ublk_queue *q, unsigned n)
{
	struct lua_backend *lb = b->priv;

	for (unsigned i = 0; i < n; i++)
		if (lb->inner[i].ops->queue_exit)
			lb->inner[i].ops->queue_exit(&lb->inner[i], q);
}

static int delegates_init(struct ublk_backend *b, struct ublk_queue *q)
{
	struct lua_backend *lb = b->priv;

	for (unsigned i = 0; i < lb->nr_inner; i++) {
		struct ublk_backend *in = &lb->inner[i];
		int ret = in->ops->queue_init ? in->ops->queue_init(in, q) : 0;

		if (ret < 0) {
			delegates_exit(b, q, i);
			return ret;
		}
	}
	return 0;
}

int lua_queue_init(struct ublk_backend *b, struct ublk_queue *q)
{
	struct ublk_lua_queue *lq = calloc(1, sizeof(*lq));
	unsigned depth = ublk_queue_depth(q);
	int ret;

	if (!lq)
		return -ENOMEM;
	lq->q = q;
	lq->b = b;
	lq->lb = b->priv;
	lq->tags = calloc(depth, sizeof(*lq->tags));
	lq->reqs = calloc(depth, sizeof(*lq->reqs));
	if (!lq->tags || !lq->reqs) {
		lua_queue_free(lq);
		return -ENOMEM;
	}
	for (unsigned t = 0; t < depth; t++) {
		lq->reqs[t].tag = (uint16_t)t;
		lq->reqs[t].queue = (uint16_t)ublk_queue_id(q);
	}
	lua_ffi_fill(lq);
	ret = new_state(lq);
	if (ret < 0) {
		lua_queue_free(lq);
		return ret;
	}
	if (run_init(lq) < 0) {
		ublk_err("dev %u queue %u: Lua backend setup failed: %s", ublk_queue_dev_id(q),
			 ublk_queue_id(q), lua_tostring(lq->L, -1));
		lua_queue_free(lq);
		return -EINVAL;
	}
	ublk_queue_set_priv(q, lq);
	ret = delegates_init(b, q);
	if (ret < 0) {
		lua_queue_free(lq);
		ublk_queue_set_priv(q, NULL);
	}
	return ret;
}

/* Runs the backend's close hook, then frees the state. */
void lua_queue_exit(struct ublk_backend *b, struct ublk_queue *q)
{
	struct ublk_lua_queue *lq = ublk_queue_priv(q);
	lua_State *L = lq->L;

	lua_rawgeti(L, LUA_REGISTRYINDEX, lq->self_ref);
	lua_getfield(L, -1, "close");
	if (lua_isfunction(L, -1)) {
		lua_pushvalue(L, -2);
		if (lua_pcall(L, 1, 0, 1) != 0)
			ublk_err("dev %u queue %u: close hook failed: %s", ublk_queue_dev_id(q),
				 ublk_queue_id(q), lua_tostring(L, -1));
	}
	lua_queue_free(lq);
	ublk_queue_set_priv(q, NULL);
	delegates_exit(b, q, ((struct lua_backend *)b->priv)->nr_inner);
}
