/* SPDX-License-Identifier: MIT */
/*
 * state_dir.c - which state directory this process uses (state.h).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../include/state.h"
#include "log.h"

/* Callers keep a record's path in 64 bytes: the folder, '/' and at most
 * "dev1048575.recovering" with room to spare; a longer $XDG_RUNTIME_DIR
 * is passed over for /tmp. */
#define DIR_MAX 40

static char dir[DIR_MAX + 1];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void choose(void)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	uid_t uid = geteuid();
	struct stat st;

	if (uid == 0) {
		snprintf(dir, sizeof(dir), "%s", UBLK_STATE_DIR);
		mkdir(dir, 0755);
		return;
	}
	if (xdg && xdg[0] == '/' && strlen(xdg) + sizeof("/ublk-lua") <= sizeof(dir))
		snprintf(dir, sizeof(dir), "%s/ublk-lua", xdg);
	else
		snprintf(dir, sizeof(dir), "/tmp/ublk-lua-%u", (unsigned)uid);
	mkdir(dir, 0700);
	/* /tmp is everyone's: a folder someone else made there first would
	 * let them write our records */
	if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != uid ||
	    (st.st_mode & 022)) {
		ublk_err("state directory %s is not a folder of uid %u's that only it can write: "
			 "no records will be kept", dir, (unsigned)uid);
		snprintf(dir, sizeof(dir), "/nonexistent/ublk-lua");
	}
}

const char *ublk_state_dir(void)
{
	pthread_once(&once, choose);
	return dir;
}
