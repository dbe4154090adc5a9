/* SPDX-License-Identifier: MIT */
/*
 * lua_interrupt.c - UBLK_INTERRUPT_SIGNAL (watchdog.h): makes the Lua code
 * running on the signalled thread raise at its next call, return or few
 * instructions, the way LuaJIT's own interpreter stops on Ctrl-C: the
 * handler only sets a hook.  Each thread says which of its lua_States may
 * be interrupted now, and with which hook (the CLI's script: "interrupted
 * by SIGTERM"; a queue's handler: "over its time budget").  Code that
 * LuaJIT compiled to machine code runs no hooks: the watchdog and the
 * stop deadline cover what this cannot stop.
 */
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "../queue/queue.h"
#include "lua_bridge.h"

static __thread lua_State *target;
static __thread lua_Hook target_hook;

static void on_interrupt(int sig)
{
	(void)sig;
	if (target && target_hook)
		lua_sethook(target, target_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static void install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_interrupt;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(UBLK_INTERRUPT_SIGNAL, &sa, NULL);
}

void lua_interrupt_install(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, install);
}

void lua_interrupt_target(lua_State *L, lua_Hook hook, lua_State **was_L, lua_Hook *was_hook)
{
	if (was_L) {
		*was_L = target;
		*was_hook = target_hook;
	}
	target = L;
	target_hook = hook;
}
