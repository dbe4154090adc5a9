/* SPDX-License-Identifier: MIT */
/*
 * lua_admin.c - ublk.core's view of every ublk device on the machine, for
 * `ublk-lua list / del / add / recover` (lua/ublk/cli_*.lua): the ids the
 * kernel has, what GET_DEV_INFO and GET_PARAMS say of each, deleting one
 * whatever its server's state.  (Starting a server in the background:
 * lua_process.c.)
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "../base/clock.h"
#include "../device/device.h"
#include "../include/state.h"
#include "../shutdown/signals.h"
#include "lua_bridge.h"

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* core.dev_ids() -> { 0, 3, ... }: every ublk device, from sysfs. */
static int l_dev_ids(lua_State *L)
{
	DIR *dir = opendir("/sys/class/ublk-char");
	uint32_t ids[1024];
	struct dirent *e;
	int n = 0;

	while (dir && (e = readdir(dir)) && n < 1024) {
		unsigned id;
		char tail;

		if (sscanf(e->d_name, "ublkc%u%c", &id, &tail) == 1)
			ids[n++] = id;
	}
	if (dir)
		closedir(dir);
	qsort(ids, (size_t)n, sizeof(ids[0]), cmp_u32);
	lua_createtable(L, n, 0);
	for (int i = 0; i < n; i++) {
		lua_pushinteger(L, ids[i]);
		lua_rawseti(L, -2, i + 1);
	}
	return 1;
}

/* core.list_dir(path) -> { names... } (no . and ..), {} if unreadable */
static int l_list_dir(lua_State *L)
{
	DIR *dir = opendir(luaL_checkstring(L, 1));
	struct dirent *e;
	int n = 0;

	lua_newtable(L);
	while (dir && (e = readdir(dir)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
			lua_pushstring(L, e->d_name);
			lua_rawseti(L, -2, ++n);
		}
	if (dir)
		closedir(dir);
	return 1;
}

static int open_ctrl(lua_State *L, struct ublk_ctrl *c)
{
	int ret = ublk_ctrl_open(c);

	if (ret == -ENOENT)
		return lua_core_fail(L, UBLK_NO_DRIVER, ret);
	if (ret < 0)
		return lua_core_fail(L, strerror(-ret), ret);
	ublk_ctrl_get_features(c, &(uint64_t){ 0 });
	return 0;
}

static void set_num(lua_State *L, const char *k, lua_Number v)
{
	lua_pushnumber(L, v);
	lua_setfield(L, -2, k);
}

/* Has process pid ended (gone, or a zombie)? */
static bool ended(pid_t pid)
{
	char path[64], buf[512], *state;

	if (pid <= 0)
		return true;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	return ublk_proc_stat(path, buf, sizeof(buf), &state) < 0 || *state == 'Z' ||
	       *state == 'X';
}

/* The number in /sys/block/ublkb<id>/<what>; 0 if it cannot be read. */
static unsigned long long sysfs_number(uint32_t id, const char *what)
{
	char path[96];
	unsigned long long v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/block/ublkb%u/%s", id, what);
	if ((f = fopen(path, "re"))) {
		if (fscanf(f, "%llu", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v;
}

/* A LIVE device whose server has ended is being released by the kernel:
 * 6.12 quiesces it from a work item that holds the device's mutex until
 * every request the dead server held is requeued (under heavy buffered
 * I/O, 30 s: the block layer's request timeout), and GET_PARAMS takes that
 * mutex, uninterruptibly.  Its size and block size are in sysfs too, and
 * reading them there keeps `ublk-lua list` from hanging with it. */
static void params_from_sysfs(uint32_t id, struct ublk_params *p)
{
	unsigned long long sectors = sysfs_number(id, "size");
	unsigned long long bs = sysfs_number(id, "queue/logical_block_size");

	if (!sectors || !bs || (bs & (bs - 1)))
		return;
	p->types = UBLK_PARAM_TYPE_BASIC;
	p->basic.dev_sectors = sectors;
	p->basic.logical_bs_shift = (uint8_t)__builtin_ctzll(bs);
}

/* core.dev_info(id) -> { id, state, pid, queues, depth, max_io, owner_uid,
 * owner_gid, [io_desc_size,] flags, size, block_size, releasing } | nil, "ENODEV: ...", errno.  `releasing`:
 * LIVE, its server ended, the kernel not yet done with it; its size and
 * block size then come from sysfs (params_from_sysfs says why). */
static int l_dev_info(lua_State *L)
{
	static const char *const states[] = { "DEAD", "LIVE", "QUIESCED", "FAIL_IO" };
	uint32_t id = (uint32_t)luaL_checkinteger(L, 1);
	struct ublksrv_ctrl_dev_info info;
	struct ublk_params p;
	struct ublk_ctrl c;
	bool releasing;
	int ret = open_ctrl(L, &c);

	if (ret)
		return ret;
	ret = ublk_ctrl_get_dev_info(&c, id, &info);
	if (ret >= 0)
		c.ioctl_encode = c.ioctl_encode || (info.flags & UBLK_F_CMD_IOCTL_ENCODE);
	memset(&p, 0, sizeof(p));
	releasing = ret >= 0 && info.state == UBLK_S_DEV_LIVE && ended(info.ublksrv_pid);
	if (releasing)
		params_from_sysfs(id, &p);
	else if (ret >= 0 && ublk_ctrl_get_params(&c, id, &p) < 0)
		memset(&p, 0, sizeof(p)); /* before SET_PARAMS: no size yet */
	ublk_ctrl_close(&c);
	if (ret < 0)
		return lua_core_fail(L, ret == -ENODEV ? "no such ublk device" : strerror(-ret),
				     ret);
	lua_newtable(L);
	set_num(L, "id", info.dev_id);
	lua_pushstring(L, info.state < 4 ? states[info.state] : "unknown");
	lua_setfield(L, -2, "state");
	set_num(L, "pid", info.ublksrv_pid);
	set_num(L, "queues", info.nr_hw_queues);
	set_num(L, "depth", info.queue_depth);
	set_num(L, "max_io", info.max_io_buf_bytes);
	set_num(L, "owner_uid", info.owner_uid); /* whoever sent ADD_DEV */
	set_num(L, "owner_gid", info.owner_gid);
	if (info.flags & UBLK_F_IO_DESC_SIZE)
		set_num(L, "io_desc_size", info.io_desc_size);
	set_num(L, "size", (lua_Number)p.basic.dev_sectors * 512);
	set_num(L, "block_size", p.types ? 1u << p.basic.logical_bs_shift : 0);
	lua_core_push_features(L, info.flags);
	lua_setfield(L, -2, "flags");
	lua_pushboolean(L, releasing);
	lua_setfield(L, -2, "releasing");

	lua_core_push_limits(L, &p);
	return 1;
}

/* core.delete(id) -> true | nil, msg, errno: DEL_DEV without waiting on a
 * disk still held (device_delete.c); forgets its state file and store. */
static int l_delete(lua_State *L)
{
	uint32_t id = (uint32_t)luaL_checkinteger(L, 1);
	struct ublk_ctrl c;
	int ret = open_ctrl(L, &c);

	if (ret)
		return ret;
	ret = ublk_dev_delete(&c, id);
	ublk_ctrl_close(&c);
	if (ret < 0)
		return lua_core_fail(L, ret == -ENODEV ? "no such ublk device" : strerror(-ret),
				     ret);
	lua_pushboolean(L, 1);
	return 1;
}

/* core.try_stop(id) -> true | nil, msg, errno: STOP_DEV unless the disk is
 * open (TRY_STOP_DEV, 7.0+); EBUSY names who has it, ENOTSUP an older
 * kernel. */
static int l_try_stop(lua_State *L)
{
	uint32_t id = (uint32_t)luaL_checkinteger(L, 1);
	struct ublk_ctrl c;
	char why[320];
	int ret = open_ctrl(L, &c);

	if (ret)
		return ret;
	ret = ublk_dev_try_stop(&c, id, why, sizeof(why));
	ublk_ctrl_close(&c);
	if (ret < 0)
		return lua_core_fail(L, why[0] ? why : ret == -ENODEV ? "no such ublk device"
							  : strerror(-ret), ret);
	lua_pushboolean(L, 1);
	return 1;
}

/* core.forget(id): removes device id's record and the files it names (a
 * device already gone). */
static int l_forget(lua_State *L)
{
	ublk_dev_forget_owner((uint32_t)luaL_checkinteger(L, 1));
	return 0;
}

/* core.clock() -> seconds on the monotonic clock (for rates) */
static int l_clock(lua_State *L)
{
	lua_pushnumber(L, (lua_Number)ublk_now_ns() * 1e-9);
	return 1;
}

/* core.privileged() -> whether this process may make any device (ctrl.h:
 * without CAP_SYS_ADMIN, only a user's, with less) */
static int l_privileged(lua_State *L)
{
	lua_pushboolean(L, ublk_ctrl_privileged());
	return 1;
}

/* core.state_dir() -> this process's state directory (state.h) */
static int l_state_dir(lua_State *L)
{
	lua_pushstring(L, ublk_state_dir());
	return 1;
}

void lua_admin_register(lua_State *L)
{
	static const luaL_Reg funcs[] = {
		{ "dev_ids", l_dev_ids },
		{ "list_dir", l_list_dir },
		{ "dev_info", l_dev_info },
		{ "delete", l_delete },
		{ "try_stop", l_try_stop },
		{ "forget", l_forget },
		{ "clock", l_clock },
		{ "privileged", l_privileged },
		{ "state_dir", l_state_dir },
		{ NULL, NULL },
	};

	luaL_register(L, NULL, funcs);
}
