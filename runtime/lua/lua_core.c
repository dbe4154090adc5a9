/* SPDX-License-Identifier: MIT */
/*
 * lua_core.c - the `ublk.core` Lua module: its table, features, signals
 * and small services, and the declarations Lua shares with C (core.cdef,
 * core.ops).  Devices are lua_device.c, host queues lua_host.c, shared
 * memory lua_shared.c.  It provides mechanism only; lua/ublk/init.lua validates and
 * names things.  Misuse raises; operational failures return
 * nil, "ENAME: message", errno.  (The lua_*.c files, backend_lua.c and
 * main.c are the only code that includes Lua headers.)
 */
#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "../backends/backends.h"
#include "../base/log.h"
#include "../device/device.h"
#include "../shutdown/signals.h"
#include "lua_bridge.h"
#include "lua_ffi_cdef.h"
#include "record_log_cdef.h"
#include "stats_cdef.h"

#define UBLK_LUA_VERSION "0.2.0"

/* core.features() -> { name = true, ... }, mask (a number: every bit
 * the kernel has is below 53) or nil, msg, errno */
static int l_features(lua_State *L)
{
	uint64_t f;
	int ret = ublk_probe_features(&f);

	if (ret == -ENOENT)
		return lua_core_fail(L, UBLK_NO_DRIVER, ret);
	if (ret < 0)
		return lua_core_fail(L, strerror(-ret), ret);
	lua_core_push_features(L, f);
	lua_pushnumber(L, (lua_Number)f);
	return 2;
}

/* core.feature_names(mask) -> { name = true, ... }, bits without a name
 * as "bit N" (a mask from another kernel, or a device's flags) */
static int l_feature_names(lua_State *L)
{
	lua_Number m = luaL_checknumber(L, 1);

	if (m < 0 || m >= 9007199254740992.0 || m != (lua_Number)(uint64_t)m)
		return luaL_argerror(L, 1, "a whole number in 0 .. 2^53 - 1");
	lua_core_push_features(L, (uint64_t)m);
	return 1;
}

static int l_gettid(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)syscall(SYS_gettid));
	return 1;
}

static int l_nr_cpus(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)sysconf(_SC_NPROCESSORS_CONF));
	return 1;
}

static const char *const opt_kinds[] = {
	[UBLK_OPT_STRING] = "string", [UBLK_OPT_BOOL] = "bool", [UBLK_OPT_INT] = "int",
	[UBLK_OPT_SECONDS] = "seconds", [UBLK_OPT_CHOICE] = "choice", [UBLK_OPT_URI] = "uri",
};

/* "a|b|c" -> { "a", "b", "c" } */
static void push_values(lua_State *L, const char *v)
{
	int n = 0;

	lua_newtable(L);
	while (*v) {
		size_t len = strcspn(v, "|");

		lua_pushlstring(L, v, len);
		lua_rawseti(L, -2, ++n);
		v += len + (v[len] == '|');
	}
}

static void push_opt(lua_State *L, const struct ublk_backend_opt *o)
{
	lua_createtable(L, 0, 9);
	lua_pushstring(L, o->name);
	lua_setfield(L, -2, "name");
	lua_pushstring(L, opt_kinds[o->kind]);
	lua_setfield(L, -2, "kind");
	lua_pushboolean(L, o->flags & UBLK_OPT_REQUIRED);
	lua_setfield(L, -2, "required");
	lua_pushboolean(L, o->flags & UBLK_OPT_STORE);
	lua_setfield(L, -2, "store");
	lua_pushboolean(L, o->flags & UBLK_OPT_PLUGIN);
	lua_setfield(L, -2, "plugin");
	if (o->values) {
		push_values(L, o->values);
		lua_setfield(L, -2, "values");
	}
	if (o->kind == UBLK_OPT_INT || o->kind == UBLK_OPT_SECONDS) {
		lua_pushnumber(L, o->min);
		lua_setfield(L, -2, "min");
		lua_pushnumber(L, o->max);
		lua_setfield(L, -2, "max");
	}
	if (o->def) {
		lua_pushstring(L, o->def);
		lua_setfield(L, -2, "default");
	}
	lua_pushstring(L, o->help ? o->help : "");
	lua_setfield(L, -2, "help");
}

/* One backend's declaration as a table: { name = "file", sizes_itself =
 * true, options = { { name = "path", kind = "string", required = true,
 * help = ... }, ... } }. */
static void push_decl(lua_State *L, const struct ublk_backend_ops *ops)
{
	int n = 0;

	lua_createtable(L, 0, 4);
	lua_pushstring(L, ops->name);
	lua_setfield(L, -2, "name");
	lua_pushboolean(L, ops->sizes_itself);
	lua_setfield(L, -2, "sizes_itself");
	lua_pushboolean(L, ops->resize != NULL);
	lua_setfield(L, -2, "resizable");
	lua_newtable(L);
	for (const struct ublk_backend_opt *o = ops->opts; o && o->name; o++) {
		push_opt(L, o);
		lua_rawseti(L, -2, ++n);
	}
	lua_setfield(L, -2, "options");
}

/* core.backends() -> the C backends' declarations (backend.h), in the
 * registry's order.  lua/ublk/options.lua makes everything users see of
 * them. */
static int l_backends(lua_State *L)
{
	const char *const *names = ublk_backend_names();

	lua_newtable(L);
	for (int i = 0; names[i]; i++) {
		push_decl(L, ublk_backend_find(names[i]));
		lua_rawseti(L, -2, i + 1);
	}
	return 1;
}

/* core.plugin(path) -> the declaration of the plugin at path, as one of
 * core.backends()'s | nil, "ENAME: plugin ./x.so was built for ...", errno.
 * Loading it here checks it before any device exists; the plugin backend's
 * create() loads the same object again, which costs nothing. */
static int l_plugin(lua_State *L)
{
	const char *path = luaL_checkstring(L, 1);
	const struct ublk_backend_ops *ops;
	char err[256];
	int ret = ublk_plugin_load(path, &ops, err, sizeof(err));

	if (ret < 0)
		return lua_core_fail(L, err, ret);
	push_decl(L, ops);
	return 1;
}

/* core.ops -> { read = 0, write = 1, ... }: the ops handlers serve */
static void push_ops(lua_State *L)
{
	lua_newtable(L);
	for (unsigned op = 0; op < UBLK_NR_OPS; op++)
		if (ublk_op_name(op)) {
			lua_pushinteger(L, op);
			lua_setfield(L, -2, ublk_op_name(op));
		}
}

/* core.errmsg(errno) -> "ENAME: message" */
static int l_errmsg(lua_State *L)
{
	int e = (int)luaL_checkinteger(L, 1);
	const char *name = strerrorname_np(e < 0 ? -e : e);

	lua_pushfstring(L, "%s: %s", name ? name : "E?", strerror(e < 0 ? -e : e));
	return 1;
}

static int l_set_log_level(lua_State *L)
{
	static const char *const levels[] = { "error", "warn", "info", "debug", NULL };

	ublk_log_set_level(luaL_checkoption(L, 1, NULL, levels));
	return 0;
}

/* core.log(level, text): a line from Lua in the runtime's shape (log.h) */
static int l_log(lua_State *L)
{
	static const char *const levels[] = { "error", "warn", "info", "debug", NULL };
	int level = luaL_checkoption(L, 1, NULL, levels);

	ublk_log(level, "%s", luaL_checkstring(L, 2));
	return 0;
}

/* The script's code stops at a termination signal: at the next call,
 * return or few instructions (JIT-compiled loops excepted). */
static void script_hook(lua_State *L, lua_Debug *ar)
{
	(void)ar;
	lua_sethook(L, NULL, 0, 0);
	luaL_error(L, "interrupted by %s", ublk_signal_name(ublk_signals_received()));
}

/* core.wait_signal([timeout_ms [, fd]]) -> "SIGTERM" | nil on timeout
 * or once fd is readable: the first termination signal (signals.h), also
 * if it came before the call.  Code
 * that waits for signals handles them: from now on a signal does not
 * interrupt it, and a poke that came during the wait is dropped. */
static int l_wait_signal(lua_State *L)
{
	int sig;

	lua_interrupt_target(NULL, NULL, NULL, NULL);
	sig = ublk_signals_wait((int)luaL_optinteger(L, 1, -1), (int)luaL_optinteger(L, 2, -1));
	if (lua_gethook(L) == script_hook)
		lua_sethook(L, NULL, 0, 0);

	if (sig < 0)
		return lua_core_fail(L, strerror(-sig), sig);
	if (sig == 0)
		return 0;
	lua_pushstring(L, ublk_signal_name(sig));
	return 1;
}

/* core.abandon(status): leaves now; a reaper removes the devices once
 * this process has gone (only the ublk-lua executable has one). */
static int l_abandon(lua_State *L)
{
	ublk_signals_abandon((int)luaL_optinteger(L, 1, 1));
}

/* core.signal_received() -> "SIGTERM" | nil */
static int l_signal_received(lua_State *L)
{
	int sig = ublk_signals_received();

	if (!sig)
		return 0;
	lua_pushstring(L, ublk_signal_name(sig));
	return 1;
}

/* core.set_interruptible(bool): may a termination signal interrupt the
 * Lua code of this thread from now on? */
static int l_set_interruptible(lua_State *L)
{
	lua_interrupt_target(lua_toboolean(L, 1) ? L : NULL, script_hook, NULL, NULL);
	return 0;
}

int luaopen_ublk_core(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "create", lua_device_create },
		{ "features", l_features },
		{ "feature_names", l_feature_names },
		{ "nr_cpus", l_nr_cpus },
		{ "backends", l_backends },
		{ "plugin", l_plugin },
		{ "errmsg", l_errmsg },
		{ "host_queue", lua_host_queue },
		{ "set_log_level", l_set_log_level },
		{ "log", l_log },
		{ "wait_signal", l_wait_signal },
		{ "signal_received", l_signal_received },
		{ "abandon", l_abandon },
		{ "set_interruptible", l_set_interruptible },
		{ "gettid", l_gettid },
		{ NULL, NULL },
	};

	ublk_log_init_from_env();
	lua_host_register(L);
	lua_device_register(L);
	lua_newtable(L);
	luaL_register(L, NULL, funcs);
	lua_admin_register(L);
	lua_record_register(L);
	lua_shared_register(L);
	lua_process_register(L);
	lua_pushstring(L, UBLK_LUA_VERSION);
	lua_setfield(L, -2, "version");
	lua_pushstring(L, ublk_lua_ffi_cdef);
	lua_setfield(L, -2, "cdef");
	lua_pushstring(L, ublk_stats_cdef);
	lua_setfield(L, -2, "stats_cdef");
	lua_pushstring(L, ublk_record_log_cdef);
	lua_setfield(L, -2, "record_log_cdef");
	push_ops(L);
	lua_setfield(L, -2, "ops");
	/* a request's default and longest time budget (backend.h) */
	lua_pushinteger(L, UBLK_REQUEST_TIMEOUT_S);
	lua_setfield(L, -2, "request_timeout_s");
	lua_pushinteger(L, UBLK_TIMEOUT_MAX_S);
	lua_setfield(L, -2, "timeout_max_s");
	return 1;
}
