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

#define UBLK_STATE_DIR "/run/ublk-lua"

#endif
