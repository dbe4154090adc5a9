/* SPDX-License-Identifier: MIT */
/*
 * lua_host.c - core.host_queue: a backend and one host queue (queue.h) on
 * the calling thread, with no kernel driver.  Requests are injected one at
 * a time and run through the real path: handle_io, SQEs on a real
 * io_uring, io_done, delegates, the commit.  A Lua backend gets its own
 * queue lua_State, as on a queue thread.  lua/ublk/host.lua wraps it.
 */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "../queue/queue.h"
#include "lua_bridge.h"

#define HOST_MT "ublk.core.host_queue"

struct host {
	struct ublk_backend b;
	struct ublk_queue *q;	/* NULL once closed */
};

static struct host *check_host(lua_State *L)
{
	struct host *h = luaL_checkudata(L, 1, HOST_MT);

	if (!h->q)
		luaL_error(L, "host queue is closed");
	return h;
}

/* core.host_queue(spec, depth, max_io) -> queue | nil, msg, errno
 * spec as for core.create: backend, size, block_size, read_only, opts. */
int lua_host_queue(lua_State *L)
{
	struct ublk_backend_conf bc;
	const struct ublk_backend_ops *ops;
	const char **opts;
	unsigned depth = (unsigned)luaL_checkinteger(L, 2);
	uint32_t max_io = (uint32_t)luaL_checkinteger(L, 3);
	struct host *h;
	int ret;

	luaL_checktype(L, 1, LUA_TTABLE);
	ops = lua_core_backend_conf(L, 1, &bc, &opts);
	h = lua_newuserdata(L, sizeof(*h));
	memset(h, 0, sizeof(*h));
	h->b.ops = ops;
	ret = ops->create(&h->b, &bc);
	free(opts);
	if (ret < 0)
		return lua_core_fail(L, h->b.err[0] ? h->b.err : "backend create failed", ret);
	ret = ublk_host_queue_open(&h->q, &h->b, depth, max_io);
	if (ret < 0) {
		h->b.ops->destroy(&h->b);	/* a plugin's, once it took over */
		return lua_core_fail(L, "host queue setup failed", ret);
	}
	luaL_getmetatable(L, HOST_MT);
	lua_setmetatable(L, -2);
	return 1;
}

/* q:io(tag, op, offset, len[, flags]) -> the committed result */
static int l_io(lua_State *L)
{
	struct host *h = check_host(L);
	int ret = ublk_host_queue_io(h->q, (uint16_t)luaL_checkinteger(L, 2),
				     (uint8_t)luaL_checkinteger(L, 3),
				     (uint32_t)luaL_optinteger(L, 6, 0),
				     (uint64_t)luaL_checknumber(L, 4),
				     (uint32_t)luaL_checkinteger(L, 5));

	lua_pushinteger(L, ret);
	return 1;
}

/* q:buf(tag) -> the tag's buffer, as a light userdata */
static int l_buf(lua_State *L)
{
	struct host *h = check_host(L);
	void *buf = ublk_host_queue_buf(h->q, (uint16_t)luaL_checkinteger(L, 2));

	if (!buf)
		return luaL_argerror(L, 2, "no such tag");
	lua_pushlightuserdata(L, buf);
	return 1;
}

/* q:stats_address() -> the queue's struct ublk_queue_stats (stats.h), as
 * a light userdata: ublk.host's Queue:stats() reads it */
static int l_stats_address(lua_State *L)
{
	lua_pushlightuserdata(L, ublk_queue_stats_block(check_host(L)->q));
	return 1;
}

/* q:close(): idempotent; also the __gc */
static int l_close(lua_State *L)
{
	struct host *h = luaL_checkudata(L, 1, HOST_MT);

	if (h->q) {
		ublk_host_queue_close(h->q);
		h->b.ops->destroy(&h->b);
		h->q = NULL;
	}
	return 0;
}

void lua_host_register(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "io", l_io }, { "buf", l_buf }, { "close", l_close },
		{ "stats_address", l_stats_address }, { NULL, NULL },
	};

	if (luaL_newmetatable(L, HOST_MT)) {
		lua_newtable(L);
		luaL_register(L, NULL, methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, l_close);
		lua_setfield(L, -2, "__gc");
	}
	lua_pop(L, 1);
}
