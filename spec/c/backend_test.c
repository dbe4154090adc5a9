/* SPDX-License-Identifier: MIT */
/*
 * spec/c/backend_test.c - the C backends on the host's real io_uring, no
 * ublk driver needed.  A queue with a real ring stands in for a queue
 * thread: the file backend's reads, writes, flushes, hole punches and zero
 * ranges really go through io_uring to a file.  The commit each request
 * ends with is read back from its SQE; the ring's fixed file 0 is
 * /dev/null, so those commits complete with an error nobody waits for.
 * Prints TAP.  Build: make build/backend-test
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../runtime/backend.h"
#include "../../runtime/queue.h"

#define DEPTH 4
#define MAX_IO (1u << 20)

static int checks, failed;

static void check(int ok, const char *what)
{
	checks++;
	if (!ok)
		failed++;
	printf("%sok %d - %s\n", ok ? "" : "not ", checks, what);
}

static struct ublk_queue q;
static struct ublksrv_io_desc descs[DEPTH];

static void queue_init(struct ublk_backend *b)
{
	int null_fd = open("/dev/null", O_RDWR);

	memset(&q, 0, sizeof(q));
	q.depth = DEPTH;
	q.max_io = MAX_IO;
	q.backend = b;
	q.descs = descs;
	q.tags = calloc(DEPTH, sizeof(*q.tags));
	for (int t = 0; t < DEPTH; t++)
		q.tags[t].buf = aligned_alloc(4096, MAX_IO);
	if (io_uring_queue_init(64, &q.ring, 0) < 0 ||
	    io_uring_register_files(&q.ring, &null_fd, 1) < 0) {
		printf("Bail out! no io_uring here\n");
		exit(1);
	}
}

/* The result the request committed: read from its COMMIT SQE. */
static int committed_result(void)
{
	unsigned idx = (q.ring.sq.sqe_tail - 1) & *q.ring.sq.kring_mask;

	return ((struct ublksrv_io_cmd *)q.ring.sq.sqes[idx].cmd)->result;
}

/* Runs one request to its commit, as the queue loop would. */
static int run(uint8_t op, uint32_t flags, uint64_t off, uint32_t len)
{
	struct ublk_backend *b = q.backend;
	unsigned before = q.cmd_inflight;
	struct ublk_io_req req = { .op = op, .flags = flags, .tag = 1, .len = len,
				   .offset = off, .buf = q.tags[1].buf };
	int ret;

	descs[1] = (struct ublksrv_io_desc){ .op_flags = op | flags,
					     .nr_sectors = len >> 9,
					     .start_sector = off >> 9 };
	q.tags[1].req = req;
	ret = b->ops->handle_io(b, &q, &q.tags[1].req);
	if (ret != UBLK_IO_QUEUED)
		return ret;
	while (q.cmd_inflight == before) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;

		io_uring_submit_and_wait(&q.ring, 1);
		io_uring_for_each_cqe(&q.ring, head, cqe) {
			n++;
			if (ublk_ud_kind(cqe->user_data) == UBLK_UD_BACKEND) {
				q.backend_inflight--;
				q.tags[1].io_owner->ops->io_done(q.tags[1].io_owner, &q,
								 1, cqe);
			}
		}
		io_uring_cq_advance(&q.ring, n);
	}
	return committed_result();
}

static void fill(uint32_t len, unsigned seed)
{
	unsigned char *p = q.tags[1].buf;

	for (uint32_t i = 0; i < len; i++)
		p[i] = (unsigned char)(seed + i * 7);
}

static int is_pattern(const void *buf, uint32_t len, unsigned seed)
{
	const unsigned char *p = buf;

	for (uint32_t i = 0; i < len; i++)
		if (p[i] != (unsigned char)(seed + i * 7))
			return 0;
	return 1;
}

static int is_zero(const void *buf, uint32_t len)
{
	const unsigned char *p = buf;

	for (uint32_t i = 0; i < len; i++)
		if (p[i])
			return 0;
	return 1;
}

static void test_file(void)
{
	char path[] = "/tmp/ublk-backend-test-XXXXXX";
	int fd = mkstemp(path);
	struct ublk_backend b = { .ops = ublk_backend_find("file") };
	struct ublk_backend_conf conf = { .size = 8 << 20, .block_size = 512, .path = path };
	unsigned char back[65536];
	struct stat st;
	blkcnt_t full;

	check(b.ops && b.ops->create(&b, &conf) == 0, "file: create grows the file to size");
	fstat(fd, &st);
	check(st.st_size == 8 << 20, "file: the file has the device size");
	queue_init(&b);
	check((b.caps & (UBLK_CAN_FLUSH | UBLK_CAN_FUA | UBLK_CAN_DISCARD | UBLK_CAN_WRITE_ZEROES)) ==
		      (UBLK_CAN_FLUSH | UBLK_CAN_FUA | UBLK_CAN_DISCARD | UBLK_CAN_WRITE_ZEROES),
	      "file: advertises flush, FUA, discard, write-zeroes");

	fill(65536, 3);
	check(run(UBLK_IO_OP_WRITE, 0, 4096 + 512, 65536) == 65536, "file: write commits its length");
	check(pread(fd, back, 65536, 4096 + 512) == 65536 && is_pattern(back, 65536, 3),
	      "file: the bytes are in the file at the offset");
	memset(q.tags[1].buf, 0, 65536);
	check(run(UBLK_IO_OP_READ, 0, 4096 + 512, 65536) == 65536 &&
		      is_pattern(q.tags[1].buf, 65536, 3),
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
	b.ops->destroy(&b);
	close(fd);
	unlink(path);

	struct ublk_backend bad = { .ops = ublk_backend_find("file") };
	struct ublk_backend_conf none = { .block_size = 512, .path = "/nonexistent/x" };

	check(bad.ops->create(&bad, &none) == -ENOENT && strstr(bad.err, "cannot open '/nonexistent/x'"),
	      "file: a missing file is refused with a message");
}

static void test_memory(void)
{
	struct ublk_backend b = { .ops = ublk_backend_find("memory") };
	struct ublk_backend_conf conf = { .size = 16 << 20, .block_size = 512 };

	check(b.ops && b.ops->create(&b, &conf) == 0, "memory: create");
	queue_init(&b);
	fill(8192, 5);
	check(run(UBLK_IO_OP_WRITE, 0, 512, 8192) == 8192, "memory: write");
	memset(q.tags[1].buf, 0, 8192);
	check(run(UBLK_IO_OP_READ, 0, 512, 8192) == 8192 && is_pattern(q.tags[1].buf, 8192, 5),
	      "memory: read returns the bytes");
	check(run(UBLK_IO_OP_DISCARD, 0, 0, 16384) == 16384, "memory: discard");
	run(UBLK_IO_OP_READ, 0, 512, 8192);
	check(is_zero(q.tags[1].buf, 8192), "memory: discarded bytes read as zeroes");
	check(run(UBLK_IO_OP_READ, 0, 16 << 20, 512) == -EIO, "memory: past the end is EIO");
	b.ops->destroy(&b);
}

static void test_null(void)
{
	struct ublk_backend b = { .ops = ublk_backend_find("null") };
	struct ublk_backend_conf conf = { .size = 1 << 30, .block_size = 512 };

	check(b.ops && b.ops->create(&b, &conf) == 0, "null: create");
	queue_init(&b);
	check(run(UBLK_IO_OP_WRITE, 0, 0, 65536) == 65536, "null: write completes");
	check(run(UBLK_IO_OP_READ, 0, 0, 65536) == 65536, "null: read completes");
	b.ops->destroy(&b);
}

int main(void)
{
	test_file();
	test_memory();
	test_null();
	check(ublk_backend_find("nope") == NULL, "registry: unknown names are not found");
	printf("1..%d\n", checks);
	return failed ? 1 : 0;
}
