/* SPDX-License-Identifier: MIT */
/*
 * queue_host.c - a host queue: a backend's whole request path (handle_io,
 * its SQEs on a real io_uring, io_done, delegates, the commit) on the
 * calling thread, with no ublk driver.  Descriptors are ours instead of
 * the kernel's, the ring's fixed file 0 is /dev/null, and the commit each
 * request ends with is counted instead of sent.
 * For tests of backends: spec/c/test_*.c (spec/c/host.h), spec/lua_bridge_spec.lua.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "queue_private.h"

int ublk_host_queue_open(struct ublk_queue **qp, struct ublk_backend *b,
			 unsigned depth, uint32_t max_io)
{
	struct ublk_queue_conf conf = { .depth = (uint16_t)depth, .max_io = max_io,
					.backend = b };
	struct ublk_queue *q;
	int ret;

	if (!depth || depth > UBLK_MAX_QUEUE_DEPTH || !max_io)
		return -EINVAL;
	conf.cdev_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (conf.cdev_fd < 0)
		return -errno;
	q = ublk_queue_new(&conf);
	if (!q) {
		close(conf.cdev_fd);
		return -ENOMEM;
	}
	q->host = true;
	q->tid = getpid();
	q->descs = calloc(depth, sizeof(*q->descs));
	ret = q->descs ? ublk_queue_alloc_tags(q) : -ENOMEM;
	if (ret >= 0)
		ret = ublk_queue_ring_init(q, q->c.cdev_fd);
	if (ret >= 0 && b->ops->queue_init)
		ret = b->ops->queue_init(b, q);
	if (ret < 0) {
		ublk_host_queue_close(q);
		return ret;
	}
	q->backend_up = true;
	ublk_queue_watch(q);
	*qp = q;
	return 0;
}

int ublk_host_queue_io(struct ublk_queue *q, uint16_t tag, uint8_t op, uint32_t flags,
		       uint64_t offset, uint32_t len)
{
	unsigned long before;
	int ret;

	/* lengths past max_io are the request path's to refuse (queue.c) */
	if (tag >= q->c.depth || (offset | len) & 511)
		return -EINVAL;
	q->descs[tag] = (struct ublksrv_io_desc){ /* a host queue's stride is the struct's */ .op_flags = op | (flags & ~0xffu),
						  .nr_sectors = len >> 9,
						  .start_sector = offset >> 9 };
	before = q->host_commits;
	/* what the kernel's "request ready" completion of a fetch does */
	q->cmd_inflight++;
	ublk_watch_enter(&q->watch);
	ublk_queue_handle_cqe(q, &(struct io_uring_cqe){ .user_data = ublk_ud_cmd(tag),
							 .res = UBLK_IO_RES_OK });
	ublk_watch_leave(&q->watch);
	while (q->host_commits == before) {
		if (!q->backend_inflight)
			return -EDEADLK; /* not committed, and nothing will */
		if ((ret = ublk_queue_run_once(q)) < 0)
			return ret;
	}
	return ublk_io_track(&q->ios[tag])->result;
}

void *ublk_host_queue_buf(struct ublk_queue *q, uint16_t tag)
{
	return tag < q->c.depth ? q->ios[tag].buf : NULL;
}

void ublk_host_queue_close(struct ublk_queue *q)
{
	struct ublk_backend *b = q->c.backend;

	/* let outstanding work finish */
	while (q->ring_up && q->backend_inflight)
		if (ublk_queue_run_once(q) < 0)
			break;
	if (q->backend_up)
		ublk_queue_unwatch(q);
	if (q->backend_up && b->ops->queue_exit)
		b->ops->queue_exit(b, q);
	if (q->ring_up)
		io_uring_queue_exit(&q->ring);
	ublk_queue_free_tags(q);
	free(q->descs);
	close(q->c.cdev_fd);
	ublk_queue_free(q);
}
