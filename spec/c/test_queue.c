/* SPDX-License-Identifier: MIT */
/*
 * spec/c/test_queue.c - the queue's side of the contract: the completion protocol with
 * backends made for the test (fan-out, a delegating wrapper, a liar), the
 * latency buckets, a ring that fails at init, and the registry.
 * On a host queue (host.h).  Prints TAP.  Build: make build/test-queue
 */
#include "host.h"

/* A ring whose char device cannot be registered is exited at once and
 * not marked up, so teardown never exits it again (a double unmap, and a
 * close of an fd number another thread may own by then). */
static void test_ring_init_failure(void)
{
	struct ublk_queue_conf c = { .depth = DEPTH, .max_io = MAX_IO };
	struct ublk_queue *rq = ublk_queue_new(&c);
	int ret = rq ? ublk_queue_ring_init(rq, 1 << 20) : -ENOMEM; /* no such fd */

	check(ret == -EBADF && !rq->ring_up, "queue: a ring that fails to register its file is not up");
	/* The failed ring's fd number is free again: whoever takes it next
	 * must keep it through the queue's teardown (it used to be closed a
	 * second time there). */
	int other = open("/dev/null", O_RDONLY);
	rq->c.cdev_fd = -1;
	ublk_host_queue_close(rq);
	check(other >= 0 && fcntl(other, F_GETFD) >= 0,
	      "queue: tearing down a queue whose ring failed closes no fd of another owner");
	close(other);
}

/* The latency buckets (stats.h) that lua/ublk/stats.lua reads back. */
static void test_lat_buckets(void)
{
	unsigned prev = 0;
	int monotonic = 1, bounded = 1;

	for (uint64_t ns = 1; ns < (1ull << 45); ns += ns / 7 + 1) {
		unsigned b = ublk_lat_bucket(ns);

		monotonic = monotonic && b >= prev;
		bounded = bounded && b < UBLK_LAT_BUCKETS;
		prev = b;
	}
	check(ublk_lat_bucket(7) == 7 && ublk_lat_bucket(8) == 8 && ublk_lat_bucket(15) == 15 &&
		      ublk_lat_bucket(16) == 16 && ublk_lat_bucket(10000) == 89,
	      "stats: latency buckets are exact below 16 ns, 8 per power of two above");
	check(monotonic && bounded, "stats: buckets grow with latency and stay in the table");
}

/* ---- the completion protocol, with backends made for the test ---- */

static int done_calls, handle_calls;

/* Queues io->offset / 512 NOPs; each completion adds 100 to scratch; the
 * result is the sum, so the commit shows every completion was counted. */
static int fanout_handle(struct ublk_backend *b, struct ublk_queue *qq, struct ublk_io *io)
{
	(void)b;
	handle_calls++;
	for (uint64_t i = 0; i < io->offset / 512; i++)
		io_uring_prep_nop(ublk_io_sqe(qq, io));
	return io->offset ? UBLK_IO_QUEUED : 7;
}

static int fanout_done(struct ublk_backend *b, struct ublk_queue *qq, struct ublk_io *io, int res)
{
	(void)b;
	(void)qq;
	done_calls++;
	io->scratch += 100 + (uint64_t)res;
	return (int)io->scratch;
}

static const struct ublk_backend_ops fanout = {
	.name = "fanout", .handle_io = fanout_handle, .io_done = fanout_done,
};

/* A wrapper that hands each request to its delegate (a file backend) and
 * adds 1 to the delegate's result when it reaches it. */
static struct ublk_backend inner;
static struct ublk_io sub;
static int wrap_busy;

static int wrap_handle(struct ublk_backend *b, struct ublk_queue *qq, struct ublk_io *io)
{
	(void)b;
	sub.op = io->op;
	sub.flags = io->flags;
	sub.tag = io->tag;
	sub.len = io->len;
	sub.offset = io->offset;
	sub.buf = io->buf;
	int ret = ublk_io_delegate(qq, io, &sub, &inner);
	/* the same delegate again while it is busy is refused */
	wrap_busy = ublk_io_delegate(qq, io, &sub, &inner);
	return ret;
}

static int wrap_done(struct ublk_backend *b, struct ublk_queue *qq, struct ublk_io *io, int res)
{
	(void)b;
	(void)qq;
	(void)io;
	done_calls++;
	return res < 0 ? res : res + 1;
}

static const struct ublk_backend_ops wrapper = {
	.name = "wrapper", .handle_io = wrap_handle, .io_done = wrap_done,
};

/* Says queued with nothing outstanding: a bug the queue must not strand. */
static int liar_handle(struct ublk_backend *b, struct ublk_queue *qq, struct ublk_io *io)
{
	(void)b;
	(void)qq;
	(void)io;
	return UBLK_IO_QUEUED;
}

static const struct ublk_backend_ops liar = { .name = "liar", .handle_io = liar_handle };

static void test_protocol(void)
{
	struct ublk_backend b = { .ops = &fanout };
	char path[] = "/tmp/ublk-backend-test-XXXXXX";
	int fd = mkstemp(path);
	const char *opts[] = { "path", path, "create", "1", NULL };
	struct ublk_backend_conf conf = { .size = 1 << 20, .block_size = 512, .opts = opts };

	queue_open(&b);
	check(run(UBLK_IO_OP_WRITE, 0, 0, 512) == 7 && done_calls == 0,
	      "protocol: a result returned at once is committed at once");
	done_calls = handle_calls = 0;
	check(run(UBLK_IO_OP_WRITE, 0, 5 * 512, 512) == 500 && done_calls == 5 && handle_calls == 1,
	      "protocol: five outstanding operations, one commit after the fifth");
	check(run(UBLK_IO_OP_WRITE, 0, 512, 512) == 100,
	      "protocol: the next request on the tag starts afresh");
	ublk_host_queue_close(q);

	inner.ops = ublk_backend_find("file");
	check(inner.ops->create(&inner, &conf) == 0, "protocol: a file delegate");
	b.ops = &wrapper;
	queue_open(&b);
	fill(4096, 11);
	done_calls = 0;
	check(run(UBLK_IO_OP_WRITE, 0, 8192, 4096) == 4097 && done_calls == 1,
	      "protocol: the delegate's result reaches the wrapper, which commits once");
	check(wrap_busy == -EBUSY, "protocol: a delegate still serving a request is busy");
	check(pread(fd, buf(), 4096, 8192) == 4096 && is_pattern(buf(), 4096, 11),
	      "protocol: the delegate wrote the wrapper's bytes");
	ublk_host_queue_close(q);
	inner.ops->destroy(&inner);
	close(fd);
	unlink(path);

	b.ops = &liar;
	queue_open(&b);
	ublk_log_set_level(-1); /* the error line it logs is expected */
	check(run(UBLK_IO_OP_READ, 0, 0, 512) == -EIO,
	      "protocol: 'queued' with nothing outstanding commits EIO, never strands the tag");
	ublk_log_set_level(UBLK_LOG_WARN);
	ublk_host_queue_close(q);
}

int main(void)
{
	test_ring_init_failure();
	test_lat_buckets();
	test_protocol();
	check(ublk_backend_find("nope") == NULL, "registry: unknown names are not found");
	check(ublk_backend_find("lua") == NULL, "registry: holds only C backends");
	printf("1..%d\n", checks);
	return failed ? 1 : 0;
}
