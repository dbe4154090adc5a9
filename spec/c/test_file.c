/* SPDX-License-Identifier: MIT */
/*
 * spec/c/test_file.c - the file backend: reads, writes, flushes, hole punches and zero
 * ranges really go through io_uring to a file, and what a request
 * committed is what comes back.
 * On a host queue (host.h).  Prints TAP.  Build: make build/test-file
 */
#include "host.h"

static void test_file(void)
{
	char path[] = "/tmp/ublk-backend-test-XXXXXX";
	int fd = mkstemp(path);
	struct ublk_backend b = { .ops = ublk_backend_find("file") };
	const char *opts[] = { "path", path, "create", "1", NULL };
	struct ublk_backend_conf conf = { .size = 8 << 20, .block_size = 512, .opts = opts };
	unsigned char back[65536];
	struct stat st;
	blkcnt_t full;

	const char *no_create[] = { "path", path, NULL };
	struct ublk_backend_conf short_conf = { .size = 8 << 20, .block_size = 512,
						.opts = no_create };

	check(b.ops->create(&b, &short_conf) == -EINVAL &&
		      strstr(b.err, "less than size 8388608 (create = true grows it)"),
	      "file: a short file is refused without create");
	check(b.ops && b.ops->create(&b, &conf) == 0 && !strncmp(b.note, "grew ", 5),
	      "file: create = 1 grows the file to size, and says so");
	fstat(fd, &st);
	check(st.st_size == 8 << 20, "file: the file has the device size");
	queue_open(&b);
	check((b.caps & (UBLK_CAN_FLUSH | UBLK_CAN_FUA | UBLK_CAN_DISCARD | UBLK_CAN_WRITE_ZEROES)) ==
		      (UBLK_CAN_FLUSH | UBLK_CAN_FUA | UBLK_CAN_DISCARD | UBLK_CAN_WRITE_ZEROES),
	      "file: advertises flush, FUA, discard, write-zeroes");

	fill(65536, 3);
	check(run(UBLK_IO_OP_WRITE, 0, 4096 + 512, 65536) == 65536, "file: write commits its length");
	check(pread(fd, back, 65536, 4096 + 512) == 65536 && is_pattern(back, 65536, 3),
	      "file: the bytes are in the file at the offset");
	memset(buf(), 0, 65536);
	check(run(UBLK_IO_OP_READ, 0, 4096 + 512, 65536) == 65536 &&
		      is_pattern(buf(), 65536, 3),
	      "file: read returns them");
	fill(4096, 9);
	check(run(UBLK_IO_OP_WRITE, UBLK_IO_F_FUA, 1 << 20, 4096) == 4096, "file: FUA write");
	check(run(UBLK_IO_OP_FLUSH, 0, 0, 0) == 0, "file: flush (fdatasync) commits 0");

	fill(MAX_IO, 1);
	for (int i = 0; i < 4; i++)
		run(UBLK_IO_OP_WRITE, 0, (uint64_t)(2 + i) << 20, MAX_IO);
	fstat(fd, &st);
	full = st.st_blocks;
	check(run(UBLK_IO_OP_DISCARD, 0, 2 << 20, 4 << 20) == 4 << 20, "file: discard commits");
	fstat(fd, &st);
	check(full - st.st_blocks >= (4 << 20) / 512 / 2, "file: discard punched a hole");
	check(run(UBLK_IO_OP_WRITE_ZEROES, UBLK_IO_F_NOUNMAP, 4096 + 512, 4096) == 4096,
	      "file: write-zeroes (zero range) commits");
	check(pread(fd, back, 4096, 4096 + 512) == 4096 && is_zero(back, 4096),
	      "file: the range reads back as zeroes");
	check(run(200, 0, 0, 512) == -EOPNOTSUPP, "file: an unknown op fails with EOPNOTSUPP");
	check(ftruncate(fd, 1 << 20) == 0 && run(UBLK_IO_OP_READ, 0, 2 << 20, 4096) == -EIO,
	      "file: a read inside the device's size past the end of a file that shrank is EIO");
	queue_close(&b);
	close(fd);
	unlink(path);

	struct ublk_backend bad = { .ops = ublk_backend_find("file") };
	const char *none_opts[] = { "path", "/nonexistent/x", NULL };
	struct ublk_backend_conf none = { .block_size = 512, .opts = none_opts };

	check(bad.ops->create(&bad, &none) == -ENOENT &&
		      strstr(bad.err, "'/nonexistent/x' does not exist"),
	      "file: a missing file is refused with a message");
}

int main(void)
{
	test_file();
	printf("1..%d\n", checks);
	return failed ? 1 : 0;
}
