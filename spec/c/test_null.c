/* SPDX-License-Identifier: MIT */
/*
 * spec/c/test_null.c - the null backend: every request done, nothing moved.
 * On a host queue (host.h).  Prints TAP.  Build: make build/test-null
 */
#include "host.h"

static void test_null(void)
{
	struct ublk_backend b = { .ops = ublk_backend_find("null") };
	struct ublk_backend_conf conf = { .size = 1 << 30, .block_size = 512 };

	check(b.ops && b.ops->create(&b, &conf) == 0, "null: create");
	queue_open(&b);
	check(run(UBLK_IO_OP_WRITE, 0, 0, 65536) == 65536, "null: write completes");
	check(run(UBLK_IO_OP_READ, 0, 0, 65536) == 65536, "null: read completes");
	queue_close(&b);

	/* a descriptor longer than the device allows (the kernel never sends
	 * one): EIO before any backend sees it, one line, the tag reusable */
	struct ublk_backend m = { .ops = ublk_backend_find("memory") };
	struct ublk_backend_conf mconf = { .size = 16 << 20, .block_size = 512 };
	char said[512];

	check(m.ops->create(&m, &mconf) == 0, "memory: create");
	queue_open(&m);
	stderr_begin();
	check(run(UBLK_IO_OP_READ, 0, 0, MAX_IO + 512) == -EIO &&
		      run(UBLK_IO_OP_WRITE, 0, 0, MAX_IO + 4096) == -EIO,
	      "queue: a data request past max_io fails with EIO");
	check(strstr(stderr_end(said, sizeof(said)), "more than the device allows: EIO") != NULL,
	      "queue: and says so");
	check(run(UBLK_IO_OP_READ, 0, 0, MAX_IO) == (int)MAX_IO, "queue: the tag serves on");
	queue_close(&m);
}

int main(void)
{
	test_null();
	printf("1..%d\n", checks);
	return failed ? 1 : 0;
}
