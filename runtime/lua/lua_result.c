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

/* The block layer limits a device was given (dma_align, max_segments,
 * max_segment_size, segment_boundary: bytes), into the table on top; none
 * where it was given none. */
void lua_core_push_limits(lua_State *L, const struct ublk_params *p)
{
	if (p->types & UBLK_PARAM_TYPE_DMA_ALIGN) {
		lua_pushnumber(L, (lua_Number)p->dma.alignment + 1);
		lua_setfield(L, -2, "dma_align");
	}
	if (p->types & UBLK_PARAM_TYPE_SEGMENT) {
		lua_pushnumber(L, p->seg.max_segments);
		lua_setfield(L, -2, "max_segments");
		lua_pushnumber(L, p->seg.max_segment_size);
		lua_setfield(L, -2, "max_segment_size");
		lua_pushnumber(L, (lua_Number)p->seg.seg_boundary_mask + 1);
		lua_setfield(L, -2, "segment_boundary");
	}
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
