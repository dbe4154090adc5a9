/* SPDX-License-Identifier: MIT */
/*
 * lua_process.c - the processes around a server, for ublk.core: starting
 * a server in the background (`add`, `recover`, `reload`), starting a
 * user's command as a shell would (crashtest's checks), and telling
 * systemd how the service is.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "../shutdown/signals.h"
#include "lua_bridge.h"

extern char **environ;

/* The strings of the table at index t as a NULL-terminated argv, `first`
 * before them if given; Lua owns the array (a userdata left on the stack)
 * and the strings (the table's). */
static char **table_argv(lua_State *L, int t, const char *first)
{
	int n = (int)lua_objlen(L, t), k = first ? 1 : 0;
	char **argv = lua_newuserdata(L, sizeof(char *) * (size_t)(n + k + 1));

	if (first)
		argv[0] = (char *)first;
	for (int i = 1; i <= n; i++) {
		lua_rawgeti(L, t, i);
		argv[i - 1 + k] = (char *)luaL_checkstring(L, -1);
		lua_pop(L, 1); /* still referenced by the table */
	}
	argv[n + k] = NULL;
	return argv;
}

/* core.spawn_server({ argv... }, log_path, env_value [, input]) -> pid, read_fd
 *                                                              [, write_fd]
 * Starts this executable detached (its own session, stdin /dev/null,
 * output appended to log_path) with UBLK_SERVE=env_value and
 * UBLK_READY_FD=3, the write end of a pipe whose read end is returned:
 * the server says there when it is ready, or why it failed.  With
 * `input`, its stdin is a pipe too, whose write end is returned: how
 * `reload` tells a prepared server to go on. */
static int l_spawn_server(lua_State *L)
{
	const char *log = luaL_checkstring(L, 2), *serve = luaL_checkstring(L, 3);
	int input = lua_toboolean(L, 4), in[2] = { -1, -1 };
	int n, pipefd[2], ret, nenv = 0;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	char exe[4096], **argv, **envp;
	ssize_t len;
	pid_t pid;

	luaL_checktype(L, 1, LUA_TTABLE);
	len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (len <= 0)
		return lua_core_fail(L, "cannot find this executable", errno);
	exe[len] = 0;
	while (environ[nenv])
		nenv++;
	argv = table_argv(L, 1, exe);
	envp = lua_newuserdata(L, sizeof(char *) * (size_t)(nenv + 3));
	n = 0;
	for (int i = 0; i < nenv; i++)
		if (strncmp(environ[i], "UBLK_SERVE=", 11) && strncmp(environ[i], "UBLK_READY_FD=", 14))
			envp[n++] = environ[i];
	lua_pushfstring(L, "UBLK_SERVE=%s", serve);
	envp[n++] = (char *)lua_tostring(L, -1);
	envp[n++] = "UBLK_READY_FD=3";
	envp[n] = NULL;
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return lua_core_fail(L, strerror(errno), errno);
	if (input && pipe2(in, O_CLOEXEC) < 0) {
		ret = errno;
		close(pipefd[0]);
		close(pipefd[1]);
		return lua_core_fail(L, strerror(ret), ret);
	}
	posix_spawn_file_actions_init(&fa);
	if (input)
		posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	else
		posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_APPEND | O_CREAT, 0644);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawn_file_actions_adddup2(&fa, pipefd[1], 3); /* dup2 clears CLOEXEC */
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK);
	{
		sigset_t none;

		sigemptyset(&none);
		posix_spawnattr_setsigmask(&attr, &none);
	}
	ret = posix_spawn(&pid, exe, &fa, &attr, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(pipefd[1]);
	if (input)
		close(in[0]);
	if (ret) {
		close(pipefd[0]);
		if (input)
			close(in[1]);
		return lua_core_fail(L, strerror(ret), ret);
	}
	lua_pushinteger(L, pid);
	lua_pushinteger(L, pipefd[0]);
	if (!input)
		return 2;
	lua_pushinteger(L, in[1]);
	return 3;
}

/* core.spawn_command({ argv... }, out_path) -> pid: runs argv (PATH
 * searched) in a session of its own (kill(-pid) ends it whole), stdin
 * /dev/null, stdout and stderr to out_path (created, truncated).  It
 * starts as a fresh shell would: no signal blocked and SIGPIPE at its
 * default, where this process blocks the termination signals (a thread
 * takes them: signals.c) and ignores SIGPIPE, which exec would pass on
 * and a user's command (crashtest --check) would not expect.  The caller
 * reaps it (waitpid). */
static int l_spawn_command(lua_State *L)
{
	const char *out = luaL_checkstring(L, 2);
	int ret;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, def;
	char **argv;
	pid_t pid;

	luaL_checktype(L, 1, LUA_TTABLE);
	if (lua_objlen(L, 1) < 1)
		return luaL_argerror(L, 1, "no command");
	argv = table_argv(L, 1, NULL);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK |
					POSIX_SPAWN_SETSIGDEF);
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&attr, &none);
	ublk_signals_fill(&def);
	sigaddset(&def, SIGPIPE);
	posix_spawnattr_setsigdefault(&attr, &def);
	ret = posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (ret)
		return lua_core_fail(L, strerror(ret), ret);
	lua_pushinteger(L, pid);
	return 1;
}

/* core.sd_notify("READY=1") -> true | false: tells systemd (a unit of
 * Type=notify) how the service is, one datagram to $NOTIFY_SOCKET (a path,
 * or "@name" in the abstract namespace).  false where there is none. */
static int l_sd_notify(lua_State *L)
{
	const char *msg = luaL_checkstring(L, 1), *where = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = where ? strlen(where) : 0;
	socklen_t salen;
	int fd;
	ssize_t n;

	if (!len || len >= sizeof(sa.sun_path) || (where[0] != '/' && where[0] != '@')) {
		lua_pushboolean(L, 0);
		return 1;
	}
	memcpy(sa.sun_path, where, len);
	if (where[0] == '@')
		sa.sun_path[0] = 0;
	salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	n = fd < 0 ? -1 : sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
	if (fd >= 0)
		close(fd);
	lua_pushboolean(L, n == (ssize_t)strlen(msg));
	return 1;
}

void lua_process_register(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "spawn_server", l_spawn_server },
		{ "spawn_command", l_spawn_command },
		{ "sd_notify", l_sd_notify },
		{ NULL, NULL },
	};

	luaL_register(L, NULL, funcs);
}
