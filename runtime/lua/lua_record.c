/* SPDX-License-Identifier: MIT */
/*
 * lua_record.c - the recorder's log from Lua (lua/ublk/crash_log.lua):
 * its checks, computed by the writer's own code, and marks appended by
 * the writer when this process records to the log.
 */
#include <errno.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "../backends/backends.h"
#include "../base/xxh64.h"
#include "lua_bridge.h"

/* core.log_check(head [, payload]) -> the check record_log.h defines: of a
 * file header's first 60 bytes, or of an entry's head (check as zero)
 * and its payload. */
static int l_log_check(lua_State *L)
{
	size_t hn, pn;
	const char *h = luaL_checklstring(L, 1, &hn);
	const char *p = luaL_optlstring(L, 2, NULL, &pn);
	uint64_t x = ublk_xxh64(h, hn, 0);

	if (p)
		x = ublk_xxh64(p, pn, x);
	lua_pushnumber(L, (lua_Number)(uint32_t)x);
	return 1;
}

/* core.record_mark(log, name) -> true | false (this process does not write
 * that log) | nil, "ENAME: message", errno */
static int l_record_mark(lua_State *L)
{
	size_t n;
	const char *log = luaL_checkstring(L, 1), *name = luaL_checklstring(L, 2, &n);
	int ret = ublk_record_mark(log, name, n);

	if (ret == -ENOENT) {
		lua_pushboolean(L, 0);
		return 1;
	}
	if (ret < 0)
		return lua_core_fail(L, log, -ret);
	lua_pushboolean(L, 1);
	return 1;
}

void lua_record_register(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "log_check", l_log_check },
		{ "record_mark", l_record_mark },
		{ NULL, NULL },
	};

	luaL_register(L, NULL, funcs);
}
