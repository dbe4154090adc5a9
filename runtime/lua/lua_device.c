/* SPDX-License-Identifier: MIT */
/*
 * lua_device.c - ublk.core's device userdata: core.create and the methods
 * start, stop, close, resize and state, over device.h (info and stats:
 * lua_device_info.c).  The Lua layer
 * (lua/ublk/init.lua) has validated every value; the readers here guard
 * only against a programming mistake.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "../base/log.h"
#include "../device/device.h"
#include "lua_bridge.h"

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

/* "memory, null, file, or ublk.backend{...}" for messages */
static const char *backend_choices(lua_State *L)
{
	const char *const *names = ublk_backend_names();
	luaL_Buffer b;

	luaL_buffinit(L, &b);
	for (int i = 0; names[i]; i++) {
		luaL_addstring(&b, names[i]);
		luaL_addstring(&b, ", ");
	}
	luaL_addstring(&b, "or ublk.backend{...}");
	luaL_pushresult(&b);
	return lua_tostring(L, -1);
}

const struct ublk_backend_ops *lua_core_backend_conf(lua_State *L, int t,
						     struct ublk_backend_conf *bc,
						     const char ***opts_out)
{
	const char *name = str_field(L, t, "backend");
	const struct ublk_backend_ops *ops;
	const char **opts;
	size_t n = 0;

	if (!name)
		luaL_argerror(L, t, "field 'backend' must name a backend");
	ops = !strcmp(name, "lua") ? &ublk_backend_lua : ublk_backend_find(name);
	if (!ops)
		luaL_argerror(L, t, lua_pushfstring(L, "unknown backend '%s' (%s)", name,
						    backend_choices(L)));
	memset(bc, 0, sizeof(*bc));
	bc->size = (uint64_t)num_field(L, t, "size");
	bc->block_size = (unsigned)num_field(L, t, "block_size");
	bc->read_only = bool_field(L, t, "read_only");
	lua_getfield(L, t, "opts");
	if (lua_istable(L, -1))
		for (lua_pushnil(L); lua_next(L, -2); lua_pop(L, 1))
			n++;
	opts = calloc(2 * n + 1, sizeof(*opts));
	if (!opts)
		luaL_error(L, "out of memory");
	n = 0;
	if (lua_istable(L, -1))
		for (lua_pushnil(L); lua_next(L, -2); lua_pop(L, 1)) {
			if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
				free(opts);
				luaL_error(L, "ublk.core: backend options must be strings");
			}
			opts[n++] = lua_tostring(L, -2);
			opts[n++] = lua_tostring(L, -1);
		}
	lua_pop(L, 1); /* the strings stay referenced by the table */
	bc->opts = opts;
	*opts_out = opts;
	return ops;
}

/* The device half of a core.create table (the backend's is
 * lua_core_backend_conf's). */
static void read_conf(lua_State *L, int t, struct ublk_dev_conf *conf)
{
	memset(conf, 0, sizeof(*conf));
	conf->id = (int)num_field(L, t, "id");
	conf->queues = (unsigned)num_field(L, t, "queues");
	conf->depth = (unsigned)num_field(L, t, "depth");
	conf->max_io = (unsigned)num_field(L, t, "max_io");
	conf->block_size = (unsigned)num_field(L, t, "block_size");
	conf->read_only = bool_field(L, t, "read_only");
	conf->discard = bool_field(L, t, "discard");
	lua_getfield(L, t, "pin"); /* true, false or "auto" (params.lua checked) */
	conf->pin = lua_type(L, -1) == LUA_TSTRING ? UBLK_PIN_AUTO
		    : lua_toboolean(L, -1) ? UBLK_PIN_ON : UBLK_PIN_OFF;
	lua_pop(L, 1);
	conf->batch = bool_field(L, t, "batch");
	conf->need_get_data = bool_field(L, t, "need_get_data");
	conf->io_desc_size = (unsigned)num_field(L, t, "io_desc_size");
	conf->threads = (unsigned)num_field(L, t, "threads");
	/* params.lua checked it: a list of at most UBLK_SHMEM_MAX paths, which
	 * stay referenced by t while the device is made */
	lua_getfield(L, t, "shmem_zc");
	for (int i = 1; lua_istable(L, -1) && i <= UBLK_SHMEM_MAX; i++) {
		lua_rawgeti(L, -1, i);
		if (lua_type(L, -1) == LUA_TSTRING)
			conf->shmem_zc[conf->nr_shmem_zc++] = lua_tostring(L, -1);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	conf->poll_us = (unsigned)num_field(L, t, "poll_us");
	conf->latency = bool_field(L, t, "latency");
	conf->recovery = (uint64_t)num_field(L, t, "recovery_flags");
	conf->no_auto_part_scan = bool_field(L, t, "no_auto_part_scan");
	conf->dma_align = (unsigned)num_field(L, t, "dma_align");
	conf->max_segments = (unsigned)num_field(L, t, "max_segments");
	conf->max_segment_size = (uint64_t)num_field(L, t, "max_segment_size");
	conf->segment_boundary = (uint64_t)num_field(L, t, "segment_boundary");
}

/* core.create{ size=, block_size=, queues=, depth=, max_io=, read_only=,
 *              discard=, pin=, batch=, need_get_data=, io_desc_size=, threads=, shmem_zc={},
 *              poll_us=, id=, recovery_flags=,
 *              backend="name",
 *              opts={...} [, recover = ID [, prepare = true]] }: with `recover`,
 * takes over device ID for its dead server instead of adding one (the
 * queue and size parameters are then the device's own); with `prepare`
 * too, only prepares that (device.h): d:resume_recovery(same table) then
 * takes the device. */
int lua_device_create(lua_State *L)
{
	struct ublk_dev_conf conf;
	struct ublk_backend_conf bconf;
	const struct ublk_backend_ops *ops;
	const char **opts;
	struct ublk_dev *d;
	int ret, recover;

	luaL_checktype(L, 1, LUA_TTABLE);
	ops = lua_core_backend_conf(L, 1, &bconf, &opts);
	read_conf(L, 1, &conf);
	conf.block_size = bconf.block_size;
	conf.read_only = bconf.read_only;
	lua_getfield(L, 1, "recover");
	recover = lua_isnumber(L, -1) ? (int)lua_tointeger(L, -1) : -1;
	lua_pop(L, 1);

	d = lua_newuserdata(L, sizeof(*d));
	memset(d, 0, sizeof(*d));
	d->state = UBLK_DEV_CLOSED; /* __gc is a no-op unless create succeeds */
	luaL_getmetatable(L, LUA_DEVICE_MT);
	lua_setmetatable(L, -2);
	if (recover >= 0 && bool_field(L, 1, "prepare"))
		ret = ublk_dev_prepare_recovery(d, (uint32_t)recover, ops, &bconf);
	else if (recover >= 0)
		ret = ublk_dev_recover(d, (uint32_t)recover, &conf, ops, &bconf);
	else
		ret = ublk_dev_create(d, &conf, ops, &bconf);
	free(opts);
	if (ret < 0)
		return lua_core_fail(L, d->err, ret);
	return 1;
}

/* d:resume_recovery(spec) -> true | nil, message, errno (device.h) */
static int l_resume_recovery(lua_State *L)
{
	struct ublk_dev *d = lua_device_check(L);
	struct ublk_dev_conf conf;
	int ret;

	luaL_checktype(L, 2, LUA_TTABLE);
	read_conf(L, 2, &conf);
	ret = ublk_dev_resume_recovery(d, &conf);
	if (ret < 0)
		return lua_core_fail(L, d->err, ret);
	lua_pushboolean(L, 1);
	return 1;
}

/* start, stop, close: true, or nil, message, errno */
static int lifecycle(lua_State *L, int (*step)(struct ublk_dev *))
{
	struct ublk_dev *d = lua_device_check(L);
	int ret = step(d);

	if (ret < 0)
		return lua_core_fail(L, d->err, ret);
	lua_pushboolean(L, 1);
	return 1;
}

static int l_start(lua_State *L) { return lifecycle(L, ublk_dev_start); }
static int l_stop(lua_State *L) { return lifecycle(L, ublk_dev_stop); }
static int l_close(lua_State *L) { return lifecycle(L, ublk_dev_close); }
static int l_handover(lua_State *L) { return lifecycle(L, ublk_dev_handover); }

/* d:resize(bytes, force) -> true | nil, msg, errno */
static int l_resize(lua_State *L)
{
	struct ublk_dev *d = lua_device_check(L);
	lua_Number size = luaL_checknumber(L, 2);
	int ret;

	if (size < 0 || size >= 18446744073709551616.0)
		return luaL_argerror(L, 2, "a size in bytes");
	ret = ublk_dev_resize(d, (uint64_t)size, lua_toboolean(L, 3));
	if (ret < 0)
		return lua_core_fail(L, d->err, ret);
	lua_pushboolean(L, 1);
	return 1;
}

/* __gc: the safety net for a device nobody closed. */
static int l_gc(lua_State *L)
{
	struct ublk_dev *d = lua_device_check(L);

	if (d->state != UBLK_DEV_CLOSED) {
		ublk_warn("dev %u was never closed: closing it now", d->info.dev_id);
		ublk_dev_close(d);
	}
	return 0;
}

static int l_state(lua_State *L)
{
	static const char *const names[] = { "created", "started", "stopped", "closed",
					     "prepared" };

	lua_pushstring(L, names[lua_device_check(L)->state]);
	return 1;
}

void lua_device_register(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "start", l_start },	{ "stop", l_stop },   { "close", l_close },
		{ "info", lua_device_info }, { "stats", lua_device_stats }, { "state", l_state },
		{ "stats_address", lua_device_stats_address }, { "handover", l_handover },
		{ "resize", l_resize },
		{ "resume_recovery", l_resume_recovery },
		{ NULL, NULL },
	};

	if (luaL_newmetatable(L, LUA_DEVICE_MT)) {
		lua_newtable(L);
		luaL_register(L, NULL, methods);
		lua_setfield(L, -2, "__index");
		lua_pushcfunction(L, l_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_pop(L, 1);
}
