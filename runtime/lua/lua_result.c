/* SPDX-License-Identifier: MIT */
/*
 * lua_result.c - how ublk.core's functions answer, shared by lua_core.c,
 * lua_device.c, lua_admin.c and lua_host.c: an operational failure as
 * nil, "ENAME: message", errno, and a feature mask as a table.  It calls
 * none of them, so they all sit above it.
 */
#include <string.h>

#include <lua.h>

#include "../ctrl/ctrl.h"
#include "lua_bridge.h"

/* nil, "ENAME: message", errno */
int lua_core_fail(lua_State *L, const char *msg, int err)
{
	const char *name;

	err = err < 0 ? -err : err;
	name = strerrorname_np(err);
	lua_pushnil(L);
	lua_pushfstring(L, "%s: %s", name ? name : "EIO", msg);
	lua_pushinteger(L, err);
	return 3;
}

/* { name = true, ... }, one for each bit set in f; a bit newer than
 * ublk_uapi.h is "bit N", so that what a newer kernel has still shows */
void lua_core_push_features(lua_State *L, uint64_t f)
{
	lua_newtable(L);
	for (unsigned bit = 0; bit < 64; bit++) {
		const char *name = ublk_feature_name(bit);

		if (!(f & (1ull << bit)))
			continue;
		if (name)
			lua_pushstring(L, name);
		else
			lua_pushfstring(L, "bit %d", (int)bit);
		lua_pushboolean(L, 1);
		lua_settable(L, -3);
	}
}
