/* SPDX-License-Identifier: MIT */
/*
 * spec/c/test_resize.c - the resize op of the backends that have one (memory, file).
 * On a host queue (host.h).  Prints TAP.  Build: make build/test-resize
 */
#include "host.h"

/* Resize (ublk_dev_resize calls the op: larger before the kernel is told,
 * smaller after): a memory store grows in place with its new pages
 * reserved and zero, data kept; shrinking gives pages back and refuses
 * what lies past the end; a file grows, and keeps its data on a shrink. */
static void test_resize(void)
{
	const char *path = "/dev/shm/ublk-backend-test-resize";
	const char *opts[] = { "store", path, "copy", "buffer", NULL };
	struct ublk_backend b = { .ops = ublk_backend_find("memory") };
	struct ublk_backend_conf conf = { .size = 4 << 20, .block_size = 512, .opts = opts };
	struct stat st;

	unlink(path);
	check(b.ops->create(&b, &conf) == 0, "resize: memory store created");
	queue_open(&b);
	fill(8192, 4);
	run(UBLK_IO_OP_WRITE, 0, (4 << 20) - 8192, 8192);
	check(run(UBLK_IO_OP_READ, 0, 6 << 20, 4096) == -EIO, "resize: past 4 MiB is EIO before");
	check(b.ops->resize(&b, 8 << 20) == 0 && stat(path, &st) == 0 && st.st_size == 8 << 20 &&
		      (uint64_t)st.st_blocks * 512 >= 8u << 20,
	      "resize: memory grows to 8 MiB, the store's new pages reserved");
	check(run(UBLK_IO_OP_READ, 0, 6 << 20, 4096) == 4096 && is_zero(buf(), 4096),
	      "resize: the new part reads as zeroes");
	fill(8192, 6);
	check(run(UBLK_IO_OP_WRITE, 0, (8 << 20) - 8192, 8192) == 8192,
	      "resize: a write at the new end is served");
	run(UBLK_IO_OP_READ, 0, (4 << 20) - 8192, 8192);
	check(is_pattern(buf(), 8192, 4), "resize: what was there before is kept");
	check(b.ops->resize(&b, 2 << 20) == 0 && stat(path, &st) == 0 && st.st_size == 2 << 20,
	      "resize: memory shrinks to 2 MiB, the store too");
	check(run(UBLK_IO_OP_READ, 0, 3 << 20, 4096) == -EIO, "resize: past the new end is EIO");
	check(b.ops->resize(&b, 4 << 20) == 0 && run(UBLK_IO_OP_READ, 0, 3 << 20, 4096) == 4096 &&
		      is_zero(buf(), 4096),
	      "resize: grown again, what was cut reads as zeroes, never as old data");
	check(b.ops->resize(&b, 1ull << 50) == -EFBIG && strstr(b.err, "grows to at most"),
	      "resize: memory past its reserved span is refused, saying how far it goes");
	queue_close(&b);
	unlink(path);

	char fpath[] = "/tmp/ublk-backend-test-resize-XXXXXX";
	int fd = mkstemp(fpath);
	struct ublk_backend f = { .ops = ublk_backend_find("file") };
	const char *fopts[] = { "path", fpath, "create", "1", NULL };
	struct ublk_backend_conf fconf = { .size = 1 << 20, .block_size = 512, .opts = fopts };

	check(f.ops->create(&f, &fconf) == 0 && f.ops->resize(&f, 3 << 20) == 0 &&
		      fstat(fd, &st) == 0 && st.st_size == 3 << 20,
	      "resize: a file grows");
	check(f.ops->resize(&f, 1 << 20) == 0 && fstat(fd, &st) == 0 && st.st_size == 3 << 20,
	      "resize: a file keeps its data when the device shrinks");
	f.ops->destroy(&f);
	close(fd);
	unlink(fpath);
}

int main(void)
{
	test_resize();
	printf("1..%d\n", checks);
	return failed ? 1 : 0;
}
