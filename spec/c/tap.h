/* SPDX-License-Identifier: MIT */
/*
 * tap.h - TAP output for the C test programs (spec/c/test_*.c):
 * one line per check; main prints the plan and exits 1
 * when `failed` is not 0.
 */
#ifndef UBLK_SPEC_TAP_H
#define UBLK_SPEC_TAP_H

#include <stdio.h>

static int checks, failed;

static void check(int ok, const char *what)
{
	checks++;
	if (!ok)
		failed++;
	printf("%sok %d - %s\n", ok ? "" : "not ", checks, what);
}

#endif
