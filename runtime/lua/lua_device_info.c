/* SPDX-License-Identifier: MIT */
/*
 * lua_device_info.c - what a device userdata says of itself: d:info() (its
 * parameters, flags, copy mode and limits as the kernel granted them) and
 * d:stats() (each queue thread's counters and where it runs), for
 * lua/ublk/init.lua.  lua_device.c registers them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "../device/device.h"
#include "lua_bridge.h"

static void set_num(lua_State *L, const char *k, lua_Number v)
{
	lua_pushnumber(L, v);
	lua_setfield(L, -2, k);
}

/* How its requests' data moves (docs/tuning.md): zero copy, user copy, or
 * through each tag's buffer. */
static const char *copy_mode(const struct ublk_dev *d)
{
	switch (ublk_dev_zero_copy(d->info.flags)) {
	case UBLK_ZC_AUTO_REG: /* the memory backend: user copy for small requests */
		if (d->backend.zc_only == UBLK_ZC_AUTO_REG_FALLBACK)
			return "auto_reg_fallback";
		return d->info.flags & UBLK_F_USER_COPY ? "auto_reg+user_copy" : "auto_reg";
	case UBLK_ZC_REGISTER:
		return "register";
	default:
		return d->info.flags & UBLK_F_USER_COPY ? "user_copy" : "buffer";
	}
}

int lua_device_info(lua_State *L)
{
	struct ublk_dev *d = lua_device_check(L);
	const struct ublk_param_devt *devt = &d->params.devt;

	if (d->state == UBLK_DEV_CLOSED)
		return luaL_error(L, "device is closed");
	lua_newtable(L);
	set_num(L, "id", d->info.dev_id);
	set_num(L, "queues", d->info.nr_hw_queues);
	set_num(L, "threads", d->threads ? d->threads : 1); /* a queue */
	if (d->queues_asked > d->info.nr_hw_queues) {
		set_num(L, "queues_asked", d->queues_asked);
		lua_pushstring(L, d->queues_by_backend ? "backend" : "kernel");
		lua_setfield(L, -2, "queues_limited_by");
	}
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
	if (d->backend.store[0]) {
		lua_pushstring(L, d->backend.store);
		lua_setfield(L, -2, "store");
	}
	lua_pushboolean(L, d->recovering);
	lua_setfield(L, -2, "recovered");
	if (d->backend.note[0]) { /* e.g. "created /tmp/x.img" */
		lua_pushstring(L, d->backend.note);
		lua_setfield(L, -2, "note");
	}
	lua_pushboolean(L, (d->params.basic.attrs & UBLK_ATTR_VOLATILE_CACHE) != 0);
	lua_setfield(L, -2, "write_cache");
	lua_pushboolean(L, (d->params.types & UBLK_PARAM_TYPE_DISCARD) &&
				   d->params.discard.max_discard_sectors);
	lua_setfield(L, -2, "discard");
	lua_pushboolean(L, (d->params.types & UBLK_PARAM_TYPE_DISCARD) &&
				   d->params.discard.max_write_zeroes_sectors);
	lua_setfield(L, -2, "write_zeroes");
	lua_pushstring(L, copy_mode(d));
	lua_setfield(L, -2, "copy");
	lua_core_push_features(L, d->info.flags);
	lua_setfield(L, -2, "flags");
	if (d->info.flags & UBLK_F_IO_DESC_SIZE)
		set_num(L, "io_desc_size", d->info.io_desc_size);
	if (d->info.flags & UBLK_F_UNPRIVILEGED_DEV) { /* a user's (ctrl.h) */
		set_num(L, "owner_uid", d->info.owner_uid);
		set_num(L, "owner_gid", d->info.owner_gid);
	}
	lua_core_push_limits(L, &d->params);
	return 1;
}

/* The CPU a thread last ran on (field 39 of its stat), or -1. */
static int last_cpu(pid_t tid)
{
	char path[64], buf[1024], *p;
	int cpu = -1, field = 3;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	if (ublk_proc_stat(path, buf, sizeof(buf), &p) < 0)
		return -1;
	/* p is at field 3 (the state) */
	for (; *p; p++)
		if (*p == ' ' && ++field == 39) {
			cpu = atoi(p + 1);
			break;
		}
	return cpu;
}

/* One table per queue: op counters, bytes, and where its thread runs. */
int lua_device_stats(lua_State *L)
{
	struct ublk_dev *d = lua_device_check(L);

	lua_newtable(L);
	if (!d->queues)
		return 1;
	for (unsigned i = 0; i < d->nr_queues; i++) {
		const struct ublk_queue *q = d->queues[i];
		const cpu_set_t *cpus = ublk_queue_cpus(q);
		struct ublk_queue_stats st;
		pid_t tid = ublk_queue_tid(q);

		ublk_queue_get_stats(q, &st);
		lua_newtable(L);
		for (unsigned op = 0; op < UBLK_NR_OPS; op++)
			if (ublk_op_stat_name(op))
				set_num(L, ublk_op_stat_name(op), (lua_Number)st.ops[op]);
		set_num(L, "errors", (lua_Number)st.errors);
		set_num(L, "read_bytes", (lua_Number)st.read_bytes);
		set_num(L, "write_bytes", (lua_Number)st.write_bytes);
		set_num(L, "inflight", (lua_Number)st.inflight);
		set_num(L, "shmem_zc", (lua_Number)st.shmem_zc);
		set_num(L, "reg_fallback", (lua_Number)st.reg_fallback);
		set_num(L, "tid", tid);
		set_num(L, "cpu", tid ? last_cpu(tid) : -1);
		lua_newtable(L);
		for (int c = 0, n = 1; c < CPU_SETSIZE; c++)
			if (CPU_ISSET(c, cpus)) {
				lua_pushinteger(L, c);
				lua_rawseti(L, -2, n++);
			}
		lua_setfield(L, -2, "cpus");
		lua_rawseti(L, -2, (int)i + 1);
	}
	return 1;
}

/* d:stats_address() -> the device's statistics mapping (stats.h), for
 * lua/ublk/stats.lua; nil before its queues exist. */
int lua_device_stats_address(lua_State *L)
{
	struct ublk_dev *d = lua_device_check(L);

	if (!d->stats || d->state == UBLK_DEV_CLOSED)
		return 0;
	lua_pushlightuserdata(L, d->stats);
	return 1;
}
