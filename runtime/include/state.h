/* SPDX-License-Identifier: MIT */
/*
 * state.h - where a server leaves what others read about its devices.
 * Each device's owner is recorded there while it exists: devN, a JSON
 * object with at least "pid" (written at ADD_DEV) and "store" when the
 * backend keeps the data in a file of its own (lua/ublk/state.lua adds
 * the rest once the device is started; device_owner.c); its statistics
 * mapping devN.stats (stats.c); and the copy of its script, devN.lua.
 */
#ifndef UBLK_STATE_H
#define UBLK_STATE_H

/* root's: every root process shares it */
#define UBLK_STATE_DIR "/run/ublk-lua"

/*
 * The state directory of this process: UBLK_STATE_DIR for root; for any
 * other user (devices of their own, docs/unprivileged.md) one nobody else
 * can write, $XDG_RUNTIME_DIR/ublk-lua, or /tmp/ublk-lua-UID without it
 * (or when that path would pass 40 bytes).
 * Made (0755 for root, 0700 else) at the first call; a user's is refused
 * (logged once, and every record then fails to write) when someone else
 * owns it.  runtime/base/state_dir.c.
 */
const char *ublk_state_dir(void);

#endif
