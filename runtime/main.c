/* SPDX-License-Identifier: MIT */
/*
 * main.c - the `ublk-lua` executable: LuaJIT with ublk.core built in,
 * running lua/ublk/cli.lua.  All the logic lives in Lua; this file finds
 * the Lua modules, sets up how the server ends (signals.h), and lets a
 * termination signal interrupt the script's own Lua code.  `--reap` is the
 * reaper signals.c starts (reap.c), which needs no Lua.
 */
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lua/lua_bridge.h"
#include "queue/queue.h"
#include "shutdown/signals.h"

static pthread_t main_thread;

/* Called by the signal thread at the first termination signal: the
 * script's own code raises, if it is running (core.set_interruptible). */
static void interrupt_main(int sig)
{
	(void)sig;
	pthread_kill(main_thread, UBLK_INTERRUPT_SIGNAL);
}

/* Seconds the script gets to remove its devices after a signal. */
static unsigned stop_timeout_ms(void)
{
	const char *v = getenv("UBLK_STOP_TIMEOUT");
	double s = v ? atof(v) : 5;

	return s > 0 && s < 86400 ? (unsigned)(s * 1000) : 5000;
}

/* Look for modules next to the binary: ../lua (build tree) and
 * ../share/lua/5.1 (installed), before the default path. */
static void set_path(lua_State *L)
{
	char exe[PATH_MAX], buf[4 * PATH_MAX + 64];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	const char *dir;

	if (n <= 0)
		return;
	exe[n] = 0;
	dir = dirname(exe);
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "path");
	snprintf(buf, sizeof(buf),
		 "%s/../lua/?.lua;%s/../lua/?/init.lua;"
		 "%s/../share/lua/5.1/?.lua;%s/../share/lua/5.1/?/init.lua;%s",
		 dir, dir, dir, dir, lua_tostring(L, -1));
	lua_pop(L, 1);
	lua_pushstring(L, buf);
	lua_setfield(L, -2, "path");
	lua_pop(L, 1);
}

static int run(lua_State *L)
{
	int argc = (int)lua_tointeger(L, 1);
	char **argv = lua_touserdata(L, 2);

	lua_getglobal(L, "package");
	lua_getfield(L, -1, "preload");
	lua_pushcfunction(L, luaopen_ublk_core);
	lua_setfield(L, -2, "ublk.core");
	lua_pop(L, 2);
	set_path(L);

	/* the standalone interpreter's `arg` convention, for scripts */
	lua_createtable(L, argc, 1);
	for (int i = 0; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i);
	}
	lua_setglobal(L, "arg");

	lua_getglobal(L, "require");
	lua_pushstring(L, "ublk.cli");
	lua_call(L, 1, 1);
	lua_getfield(L, -1, "main");
	lua_createtable(L, argc, 0);
	for (int i = 1; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i);
	}
	lua_call(L, 1, 1);
	return 1;
}

int main(int argc, char **argv)
{
	lua_State *L;
	int status = 1, ret;

	if (argc >= 2 && !strcmp(argv[1], "--reap"))
		return ublk_reap_main(argc, argv);
	/* Before any thread exists, so that every queue thread inherits the
	 * mask and the termination signals reach only the signal thread. */
	main_thread = pthread_self();
	lua_interrupt_install();
	ret = ublk_signals_start(stop_timeout_ms(), interrupt_main);
	if (ret < 0) {
		fprintf(stderr, "ublk-lua: cannot set up signal handling: %s\n", strerror(-ret));
		return 1;
	}

	L = luaL_newstate();
	if (!L) {
		fputs("ublk-lua: cannot create a Lua state\n", stderr);
		return 1;
	}
	luaL_openlibs(L);
	lua_pushcfunction(L, run);
	lua_pushinteger(L, argc);
	lua_pushlightuserdata(L, argv);
	if (lua_pcall(L, 2, 1, 0) != 0)
		fprintf(stderr, "ublk-lua: %s\n", lua_tostring(L, -1));
	else
		status = (int)lua_tointeger(L, -1);
	lua_close(L); /* __gc closes any device a bug left open */
	return status;
}
