/* SPDX-License-Identifier: MIT */
/*
 * spec/c/device_test.c - what the device lifecycle decides without asking
 * the kernel: which devices of a dead server are left for recovery.  No
 * ublk driver needed, no Lua.  Prints TAP.  Build: make build/device-test
 */
#include <stdio.h>
#include <string.h>

#include "../../runtime/device_private.h"

static int checks, failed;

static void check(int ok, const char *what)
{
	checks++;
	if (!ok)
		failed++;
	printf("%sok %d - %s\n", ok ? "" : "not ", checks, what);
}

/* The orphan sweep (device_delete.c) runs once the recorded server is
 * known dead, whatever the kernel has noticed of it yet. */
static void test_recoverable(void)
{
	struct ublksrv_ctrl_dev_info i = { .flags = UBLK_F_USER_RECOVERY };

	i.state = UBLK_S_DEV_LIVE;
	check(ublk_dev_recoverable(&i),
	      "sweep: a recovery device still LIVE after its server died is kept");
	i.state = UBLK_S_DEV_QUIESCED;
	check(ublk_dev_recoverable(&i), "sweep: a QUIESCED one is kept");
	i.state = UBLK_S_DEV_FAIL_IO;
	check(ublk_dev_recoverable(&i), "sweep: a FAIL_IO one is kept");
	i.state = UBLK_S_DEV_DEAD;
	check(!ublk_dev_recoverable(&i), "sweep: a DEAD one is removed");
	i.flags = 0;
	i.state = UBLK_S_DEV_LIVE;
	check(!ublk_dev_recoverable(&i), "sweep: one without recovery is removed, whatever its state");
}

int main(void)
{
	test_recoverable();
	printf("1..%d\n", checks);
	return failed ? 1 : 0;
}
