/* SPDX-License-Identifier: MIT */
/*
 * lua_core.c - the `ublk.core` Lua module: its table, features, shared
 * memory, signals and small services, and the declarations Lua shares with
 * C (core.cdef, core.ops).  Devices are lua_device.c, host queues
 * lua_host.c.  It provides mechanism only; lua/ublk/init.lua validates and
 * names things.  Misuse raises; operational failures return
 * nil, "ENAME: message", errno.  (The lua_*.c files, backend_lua.c and
 * main.c are the only code that includes Lua headers.)
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
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

/* ---- shared memory for Lua backends: C-owned, one address for all ---- */

#define SHARED_MT "ublk.core.shared"

struct shared {
	void *addr;
	size_t size;
	int fd;		/* the mapped file's: zero copy reads and writes it */
	char *path;	/* a file on /dev/shm that outlives a crash; removed at gc */
};

/* Maps `path` for a region of `size`: with `existing` (a recovering
 * server takes its data over) the file must be there with that size;
 * otherwise it must not exist yet: a file of that name holds some other
 * region's data (or was left by one), never a new region's.  A file is
 * reserved whole (store.h), so a /dev/shm too full for it is refused here,
 * naming the size and the space free, and never met by a handler's write
 * as SIGBUS; a memfd stays lazy (nothing outlives us, and its memory is
 * not a file system's to run out of). */
static void *map_file(lua_State *L, const char *path, size_t size, bool existing,
		      const char **err, int *fdp)
{
	struct stat st;
	char why[192];
	int r;
	void *addr = MAP_FAILED;
	int fd = path ? open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW |
				       (existing ? 0 : O_CREAT | O_EXCL), 0600)
		      : memfd_create("ublk-shared", MFD_CLOEXEC);
	bool made = path && !existing && fd >= 0;
	const char *name = path ? path : "memfd";

	*err = NULL;
	if (fd < 0 && errno == EEXIST) {
		*err = lua_pushfstring(L, "%s exists: a new region starts empty, only a recovery "
				       "takes over an existing one", name);
	} else if (fd < 0 && existing && errno == ENOENT) {
		*err = lua_pushfstring(L, "%s, a region of the device being recovered, is gone: "
				       "its data is lost", name);
	} else if (fd < 0 || fstat(fd, &st) < 0) {
		*err = lua_pushfstring(L, "%s: %s", name, strerror(errno));
	} else if (!existing && ftruncate(fd, (off_t)size) < 0) {
		*err = lua_pushfstring(L, "%s: %s", name, strerror(errno));
	} else if (existing && (size_t)st.st_size != size) {
		*err = lua_pushfstring(L, "%s holds %d bytes, not the %d asked for", name,
				       (int)st.st_size, (int)size);
	} else if (path && (r = ublk_store_reserve(fd, 0, size, path, why, sizeof(why))) < 0) {
		lua_pushstring(L, why);
		*err = lua_tostring(L, -1);
		errno = -r;
	} else {
		addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
		if (addr == MAP_FAILED)
			*err = lua_pushfstring(L, "%s: mmap: %s", name, strerror(errno));
	}
	if (fd >= 0 && addr == MAP_FAILED) {
		close(fd);
		if (made) /* nothing of ours may stay behind in /dev/shm */
			unlink(path);
	} else {
		*fdp = fd;
	}
	return addr;
}

/* core.shared_alloc(size [, path [, existing]]) -> region | nil, msg,
 * errno: a memfd, or with path a shared file (kept for recovery, see
 * backend.lua; `existing`: a recovering server's, with its data); either
 * way a file, so that zero copy can read and write it. */
static int l_shared_alloc(lua_State *L)
{
	size_t size = (size_t)luaL_checknumber(L, 1);
	const char *path = luaL_optstring(L, 2, NULL), *err = NULL;
	bool existing = lua_toboolean(L, 3);
	struct shared *s = lua_newuserdata(L, sizeof(*s));

	s->addr = NULL;
	s->path = NULL;
	s->fd = -1;
	luaL_getmetatable(L, SHARED_MT);
	lua_setmetatable(L, -2);
	s->size = size;
	errno = 0;
	s->addr = map_file(L, path, size, existing, &err, &s->fd);
	if (path && s->addr != MAP_FAILED && !(s->path = strdup(path)))
		err = "out of memory";
	if (s->addr == MAP_FAILED || err) {
		int e = errno ? errno : EINVAL;

		if (s->addr != MAP_FAILED && s->addr)
			munmap(s->addr, size);
		s->addr = NULL;
		return lua_core_fail(L, err ? err : strerror(e), e);
	}
	return 1;
}

static int l_shared_address(lua_State *L)
{
	struct shared *s = luaL_checkudata(L, 1, SHARED_MT);

	lua_pushlightuserdata(L, s->addr);
	return 1;
}

/* region:fd() -> the file descriptor of the region's file */
static int l_shared_fd(lua_State *L)
{
	struct shared *s = luaL_checkudata(L, 1, SHARED_MT);

	lua_pushinteger(L, s->fd);
	return 1;
}

static int l_shared_gc(lua_State *L)
{
	struct shared *s = luaL_checkudata(L, 1, SHARED_MT);

	if (s->addr)
		munmap(s->addr, s->size);
	s->addr = NULL;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	if (s->path) /* the server ends normally: its regions go too */
		unlink(s->path);
	free(s->path);
	s->path = NULL;
	return 0;
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
		{ "shared_alloc", l_shared_alloc },
		{ "gettid", l_gettid },
		{ NULL, NULL },
	};

	ublk_log_init_from_env();
	lua_host_register(L);
	lua_device_register(L);
	if (luaL_newmetatable(L, SHARED_MT)) {
		lua_newtable(L);
		lua_pushcfunction(L, l_shared_address);
		lua_setfield(L, -2, "address");
		lua_pushcfunction(L, l_shared_fd);
		lua_setfield(L, -2, "fd");
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, l_shared_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_pop(L, 1);
	lua_newtable(L);
	luaL_register(L, NULL, funcs);
	lua_admin_register(L);
	lua_record_register(L);
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
