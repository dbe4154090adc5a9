/* SPDX-License-Identifier: MIT */
/*
 * spec/c/test_memory.c - the memory backend: its copy modes, and its store on /dev/shm,
 * allocated whole at create and failing a request (not the process) when
 * it is truncated under the server.
 * On a host queue (host.h).  Prints TAP.  Build: make build/test-memory
 */
#include "host.h"

static void test_memory(void)
{
	struct ublk_backend b = { .ops = ublk_backend_find("memory") };
	struct ublk_backend_conf conf = { .size = 16 << 20, .block_size = 512 };

	check(b.ops && b.ops->create(&b, &conf) == 0, "memory: create");
	queue_open(&b);
	fill(8192, 5);
	check(run(UBLK_IO_OP_WRITE, 0, 512, 8192) == 8192, "memory: write");
	memset(buf(), 0, 8192);
	check(run(UBLK_IO_OP_READ, 0, 512, 8192) == 8192 && is_pattern(buf(), 8192, 5),
	      "memory: read returns the bytes");
	check(run(UBLK_IO_OP_DISCARD, 0, 0, 16384) == 16384, "memory: discard");
	run(UBLK_IO_OP_READ, 0, 512, 8192);
	check(is_zero(buf(), 8192), "memory: discarded bytes read as zeroes");
	check(run(UBLK_IO_OP_READ, 0, 16 << 20, 512) == -EIO, "memory: past the end is EIO");
	queue_close(&b);
}

/* A store on /dev/shm is allocated whole at create (a full file system is
 * refused there, not met by SIGBUS mid-write), stays so after a discard,
 * and a store truncated under the server fails the request with EIO in
 * the buffer copy mode (a memcpy) instead of killing the process. */
static void test_memory_store(void)
{
	const char *path = "/dev/shm/ublk-backend-test-store";
	const char *opts[] = { "store", path, "copy", "buffer", NULL };
	struct ublk_backend b = { .ops = ublk_backend_find("memory") };
	struct ublk_backend_conf conf = { .size = 4 << 20, .block_size = 512, .opts = opts };
	char said[4096];
	struct stat st;

	unlink(path);
	check(b.ops->create(&b, &conf) == 0 && stat(path, &st) == 0 &&
		      (uint64_t)st.st_blocks * 512 >= conf.size,
	      "memory store: every page is allocated at create");
	queue_open(&b);
	check(run(UBLK_IO_OP_DISCARD, 0, 0, 1 << 20) == 1 << 20 && stat(path, &st) == 0 &&
		      (uint64_t)st.st_blocks * 512 >= conf.size,
	      "memory store: a discard keeps the store's pages reserved");
	fill(8192, 3);
	check(run(UBLK_IO_OP_WRITE, 0, 8192, 8192) == 8192, "memory store: write");
	check(truncate(path, 0) == 0, "memory store: someone truncates the file");
	stderr_begin();
	fill(8192, 3);
	check(run(UBLK_IO_OP_WRITE, 0, 1 << 20, 8192) == -EIO &&
		      run(UBLK_IO_OP_READ, 0, 8192, 8192) == -EIO,
	      "memory store: a copy into a page that is gone fails with EIO, the server lives");
	check(strstr(stderr_end(said, sizeof(said)), "is gone") != NULL,
	      "memory store: and says so");
	queue_close(&b);
	unlink(path);
}

int main(void)
{
	test_memory();
	test_memory_store();
	printf("1..%d\n", checks);
	return failed ? 1 : 0;
}
