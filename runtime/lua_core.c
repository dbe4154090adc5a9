/* SPDX-License-Identifier: MIT */
/*
 * lua_core.c - the `ublk.core` Lua module: the only C file that includes
 * Lua headers.  It provides mechanism only; lua/ublk/init.lua validates
 * and names things.  Misuse raises; operational failures return
 * nil, message, errno.
 */
#include <errno.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "device.h"
#include "log.h"

#define DEV_MT "ublk.core.device"
#define UBLK_LUA_VERSION "0.1.0"

static int push_fail(lua_State *L, const char *msg, int err)
{
	lua_pushnil(L);
	lua_pushstring(L, msg);
	lua_pushinteger(L, err < 0 ? -err : err);
	return 3;
}

static struct ublk_dev *check_dev(lua_State *L)
{
	return luaL_checkudata(L, 1, DEV_MT);
}

/* ---- table field readers: the Lua layer already validated the values,
 * these only guard against a missing field from a programming mistake. */

static lua_Number num_field(lua_State *L, int t, const char *k)
{
	lua_Number v;

	lua_getfield(L, t, k);
	if (!lua_isnumber(L, -1))
		luaL_error(L, "ublk.core.create: field '%s' must be a number", k);
	v = lua_tonumber(L, -1);
	lua_pop(L, 1);
	return v;
}

static int bool_field(lua_State *L, int t, const char *k)
{
	int v;

	lua_getfield(L, t, k);
	v = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return v;
}

/* Returns a string that stays valid while the table is on the stack. */
static const char *str_field(lua_State *L, int t, const char *k)
{
	const char *v;

	lua_getfield(L, t, k);
	v = lua_isstring(L, -1) ? lua_tostring(L, -1) : NULL;
	lua_pop(L, 1);
	return v;
}

/* The Lua backend's description, from LuaBackend:core_spec(): a table at
 * index t.  Arrays are malloc'ed into *keep; strings stay owned by Lua
 * (valid while the table is on the stack). */
struct lua_conf_store {
	struct ublk_lua_conf conf;
	const char **names;
	struct ublk_backend_conf *inner;
};

static void read_lua_conf(lua_State *L, int t, const struct ublk_backend_conf *outer,
			  struct lua_conf_store *st)
{
	struct ublk_lua_conf *c = &st->conf;
	unsigned n;

	memset(st, 0, sizeof(*st));
	lua_getfield(L, t, "chunk");
	c->chunk = lua_tolstring(L, -1, &c->chunk_len);
	lua_pop(L, 1);
	if (!c->chunk)
		luaL_error(L, "ublk.core.create: lua.chunk must be a string");
	c->path = str_field(L, t, "path");
	c->cpath = str_field(L, t, "cpath");
	c->async = bool_field(L, t, "async");
	lua_getfield(L, t, "caps");
	if (lua_istable(L, -1)) {
		int caps = lua_gettop(L);

		if (bool_field(L, caps, "flush"))
			c->caps |= UBLK_CAN_FLUSH;
		if (bool_field(L, caps, "fua"))
			c->caps |= UBLK_CAN_FUA;
		if (bool_field(L, caps, "discard"))
			c->caps |= UBLK_CAN_DISCARD;
		if (bool_field(L, caps, "write_zeroes"))
			c->caps |= UBLK_CAN_WRITE_ZEROES;
	}
	lua_pop(L, 1);
	lua_getfield(L, t, "inner");
	n = lua_istable(L, -1) ? (unsigned)lua_objlen(L, -1) : 0;
	st->names = calloc(n + 1, sizeof(*st->names));
	st->inner = calloc(n + 1, sizeof(*st->inner));
	if (!st->names || !st->inner)
		luaL_error(L, "out of memory");
	for (unsigned i = 0; i < n; i++) {
		int e;

		lua_rawgeti(L, -1, (int)i + 1);
		e = lua_gettop(L);
		st->names[i] = str_field(L, e, "name");
		st->inner[i].size = (uint64_t)num_field(L, e, "size");
		st->inner[i].path = str_field(L, e, "path");
		st->inner[i].direct = bool_field(L, e, "direct");
		st->inner[i].block_size = outer->block_size;
		st->inner[i].read_only = outer->read_only || bool_field(L, e, "read_only");
		lua_pop(L, 1); /* strings stay referenced by the table */
	}
	lua_pop(L, 1);
	c->nr_inner = n;
	c->inner_names = st->names;
	c->inner = st->inner;
}

/* core.create{ size=, block_size=, queues=, depth=, max_io=, read_only=,
 *              discard=, id=, backend="name", path=, direct=, lua={...} } */
static int l_create(lua_State *L)
{
	struct ublk_dev_conf conf;
	struct ublk_backend_conf bconf;
	const struct ublk_backend_ops *ops;
	struct lua_conf_store lstore = { 0 };
	const char *backend;
	struct ublk_dev *d;
	int ret;

	luaL_checktype(L, 1, LUA_TTABLE);
	backend = str_field(L, 1, "backend");
	if (!backend)
		return luaL_argerror(L, 1, "field 'backend' must name a backend");
	ops = ublk_backend_find(backend);
	if (!ops)
		return luaL_argerror(L, 1, lua_pushfstring(L, "unknown backend '%s'", backend));
	memset(&conf, 0, sizeof(conf));
	memset(&bconf, 0, sizeof(bconf));
	conf.id = (int)num_field(L, 1, "id");
	conf.queues = (unsigned)num_field(L, 1, "queues");
	conf.depth = (unsigned)num_field(L, 1, "depth");
	conf.max_io = (unsigned)num_field(L, 1, "max_io");
	conf.block_size = (unsigned)num_field(L, 1, "block_size");
	conf.read_only = bool_field(L, 1, "read_only");
	conf.discard = bool_field(L, 1, "discard");
	conf.pin = bool_field(L, 1, "pin");
	bconf.size = (uint64_t)num_field(L, 1, "size");
	bconf.block_size = conf.block_size;
	bconf.read_only = conf.read_only;
	bconf.path = str_field(L, 1, "path");
	bconf.direct = bool_field(L, 1, "direct");
	lua_getfield(L, 1, "lua");
	if (lua_istable(L, -1)) {
		read_lua_conf(L, lua_gettop(L), &bconf, &lstore);
		bconf.lua = &lstore.conf;
	}

	d = lua_newuserdata(L, sizeof(*d));
	memset(d, 0, sizeof(*d));
	d->state = UBLK_DEV_CLOSED; /* __gc is a no-op unless create succeeds */
	luaL_getmetatable(L, DEV_MT);
	lua_setmetatable(L, -2);
	ret = ublk_dev_create(d, &conf, ops, &bconf);
	free(lstore.names);
	free(lstore.inner);
	if (ret < 0)
		return push_fail(L, d->err, ret);
	return 1;
}

/* start, stop, close: true, or nil, message, errno */
static int lifecycle(lua_State *L, int (*step)(struct ublk_dev *))
{
	struct ublk_dev *d = check_dev(L);
	int ret = step(d);

	if (ret < 0)
		return push_fail(L, d->err, ret);
	lua_pushboolean(L, 1);
	return 1;
}

static int l_start(lua_State *L) { return lifecycle(L, ublk_dev_start); }
static int l_stop(lua_State *L) { return lifecycle(L, ublk_dev_stop); }
static int l_close(lua_State *L) { return lifecycle(L, ublk_dev_close); }

/* __gc: the safety net for a device nobody closed. */
static int l_gc(lua_State *L)
{
	struct ublk_dev *d = check_dev(L);

	if (d->state != UBLK_DEV_CLOSED) {
		ublk_warn("dev %u was never closed: closing it now", d->info.dev_id);
		ublk_dev_close(d);
	}
	return 0;
}

static int l_state(lua_State *L)
{
	static const char *const names[] = { "created", "started", "stopped", "closed" };

	lua_pushstring(L, names[check_dev(L)->state]);
	return 1;
}

static void set_num(lua_State *L, const char *k, lua_Number v)
{
	lua_pushnumber(L, v);
	lua_setfield(L, -2, k);
}

static void push_features(lua_State *L, uint64_t f)
{
	lua_newtable(L);
	for (unsigned bit = 0; bit < 64; bit++) {
		const char *name = ublk_feature_name(bit);

		if (name && (f & (1ull << bit))) {
			lua_pushboolean(L, 1);
			lua_setfield(L, -2, name);
		}
	}
}

static int l_info(lua_State *L)
{
	struct ublk_dev *d = check_dev(L);
	const struct ublk_param_devt *devt = &d->params.devt;

	if (d->state == UBLK_DEV_CLOSED)
		return luaL_error(L, "device is closed");
	lua_newtable(L);
	set_num(L, "id", d->info.dev_id);
	set_num(L, "queues", d->info.nr_hw_queues);
	set_num(L, "depth", d->info.queue_depth);
	set_num(L, "max_io", d->info.max_io_buf_bytes);
	set_num(L, "size", (lua_Number)d->backend.size);
	set_num(L, "block_size", 1u << d->params.basic.logical_bs_shift);
	set_num(L, "create_us", (lua_Number)(d->create_ns / 1000));
	set_num(L, "start_us", (lua_Number)(d->start_ns / 1000));
	set_num(L, "char_major", devt->char_major);
	set_num(L, "char_minor", devt->char_minor);
	lua_pushstring(L, d->backend.ops->name);
	lua_setfield(L, -2, "backend");
	lua_pushboolean(L, (d->params.basic.attrs & UBLK_ATTR_VOLATILE_CACHE) != 0);
	lua_setfield(L, -2, "write_cache");
	lua_pushboolean(L, (d->params.types & UBLK_PARAM_TYPE_DISCARD) &&
				   d->params.discard.max_discard_sectors);
	lua_setfield(L, -2, "discard");
	lua_pushboolean(L, (d->params.types & UBLK_PARAM_TYPE_DISCARD) &&
				   d->params.discard.max_write_zeroes_sectors);
	lua_setfield(L, -2, "write_zeroes");
	push_features(L, d->info.flags);
	lua_setfield(L, -2, "flags");
	return 1;
}

/* One table per queue: op counters, bytes, and where its thread runs. */
static int l_stats(lua_State *L)
{
	static const char *const ops[UBLK_STAT_OPS] = {
		"reads", "writes", "flushes", "discards", "write_same", "write_zeroes",
	};
	struct ublk_dev *d = check_dev(L);

	lua_newtable(L);
	if (!d->queues)
		return 1;
	for (unsigned i = 0; i < d->info.nr_hw_queues; i++) {
		const struct ublk_queue *q = &d->queues[i];

		lua_newtable(L);
		for (unsigned op = 0; op < UBLK_STAT_OPS; op++)
			set_num(L, ops[op], (lua_Number)ublk_stat_load(&q->stats.ops[op]));
		set_num(L, "errors", (lua_Number)ublk_stat_load(&q->stats.errors));
		set_num(L, "read_bytes", (lua_Number)ublk_stat_load(&q->stats.read_bytes));
		set_num(L, "write_bytes", (lua_Number)ublk_stat_load(&q->stats.write_bytes));
		set_num(L, "tid", q->tid);
		set_num(L, "cpu", q->cpu);
		lua_newtable(L);
		for (int c = 0, n = 1; c < CPU_SETSIZE; c++)
			if (CPU_ISSET(c, &q->cpus)) {
				lua_pushinteger(L, c);
				lua_rawseti(L, -2, n++);
			}
		lua_setfield(L, -2, "cpus");
		lua_rawseti(L, -2, (int)i + 1);
	}
	return 1;
}

/* core.features() -> { name = true, ... } or nil, msg, errno */
static int l_features(lua_State *L)
{
	uint64_t f;
	int ret = ublk_probe_features(&f);

	if (ret == -ENOENT)
		return push_fail(L, UBLK_CTRL_DEV " not found: this kernel has no ublk driver", ret);
	if (ret < 0)
		return push_fail(L, strerror(-ret), ret);
	push_features(L, f);
	return 1;
}

/* ---- shared memory for Lua backends: C-owned, one address for all ---- */

#define SHARED_MT "ublk.core.shared"

struct shared {
	void *addr;
	size_t size;
};

static int l_shared_alloc(lua_State *L)
{
	size_t size = (size_t)luaL_checknumber(L, 1);
	struct shared *s = lua_newuserdata(L, sizeof(*s));

	s->addr = NULL;
	luaL_getmetatable(L, SHARED_MT);
	lua_setmetatable(L, -2);
	s->size = size;
	s->addr = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (s->addr == MAP_FAILED) {
		s->addr = NULL;
		return push_fail(L, strerror(errno), errno);
	}
	return 1;
}

static int l_shared_address(lua_State *L)
{
	struct shared *s = luaL_checkudata(L, 1, SHARED_MT);

	lua_pushlightuserdata(L, s->addr);
	return 1;
}

static int l_shared_gc(lua_State *L)
{
	struct shared *s = luaL_checkudata(L, 1, SHARED_MT);

	if (s->addr)
		munmap(s->addr, s->size);
	s->addr = NULL;
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

static int l_backends(lua_State *L)
{
	const char *const *names = ublk_backend_names();

	lua_newtable(L);
	for (int i = 0; names[i]; i++) {
		lua_pushstring(L, names[i]);
		lua_rawseti(L, -2, i + 1);
	}
	return 1;
}

static int l_set_log_level(lua_State *L)
{
	static const char *const levels[] = { "error", "warn", "info", "debug", NULL };

	ublk_log_set_level(luaL_checkoption(L, 1, NULL, levels));
	return 0;
}

/* core.wait_signal(): blocks until SIGINT or SIGTERM, which the caller
 * (the CLI's main) blocked in every thread first; returns its name. */
static int l_wait_signal(lua_State *L)
{
	sigset_t set;
	int sig;

	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	while ((sig = sigwaitinfo(&set, NULL)) < 0 && errno == EINTR)
		;
	if (sig < 0)
		return push_fail(L, strerror(errno), errno);
	lua_pushstring(L, sig == SIGINT ? "SIGINT" : "SIGTERM");
	return 1;
}

int luaopen_ublk_core(lua_State *L)
{
	static const luaL_Reg dev_methods[] = {
		{ "start", l_start },	{ "stop", l_stop },   { "close", l_close },
		{ "info", l_info },	{ "stats", l_stats }, { "state", l_state },
		{ NULL, NULL },
	};
	static const luaL_Reg funcs[] = {
		{ "create", l_create },
		{ "features", l_features },
		{ "nr_cpus", l_nr_cpus },
		{ "backends", l_backends },
		{ "set_log_level", l_set_log_level },
		{ "wait_signal", l_wait_signal },
		{ "shared_alloc", l_shared_alloc },
		{ "gettid", l_gettid },
		{ NULL, NULL },
	};

	ublk_log_init_from_env();
	if (luaL_newmetatable(L, DEV_MT)) {
		lua_newtable(L);
		luaL_register(L, NULL, dev_methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, l_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_pop(L, 1);
	if (luaL_newmetatable(L, SHARED_MT)) {
		lua_newtable(L);
		lua_pushcfunction(L, l_shared_address);
		lua_setfield(L, -2, "address");
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, l_shared_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_pop(L, 1);
	lua_newtable(L);
	luaL_register(L, NULL, funcs);
	lua_pushstring(L, UBLK_LUA_VERSION);
	lua_setfield(L, -2, "version");
	return 1;
}
