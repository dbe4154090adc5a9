/* SPDX-License-Identifier: MIT */
/*
 * lua_shared.c - core.shared_alloc: memory Lua backends share across
 * their queues (ublk.shared, lua/ublk/backend.lua), C-owned, one address
 * for all: a memfd, or a file on /dev/shm that a recovering server takes
 * over with its data.  Either way a file, so that zero copy can read and
 * write it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "../backends/backends.h"
#include "lua_bridge.h"

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

void lua_shared_register(lua_State *L)
{
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
	lua_pushcfunction(L, l_shared_alloc);
	lua_setfield(L, -2, "shared_alloc");
}
