/* SPDX-License-Identifier: MIT */
/*
 * queue_batch.c - a queue's side of UBLK_F_BATCH_IO (Linux 7.0+): one
 * PREP_IO_CMDS hands the kernel every tag at startup, one multishot
 * FETCH_IO_CMDS delivers requests as arrays of tags into a ring of
 * provided buffers, and the requests a pass finishes go back in one
 * COMMIT_IO_CMDS, instead of a COMMIT_AND_FETCH per request.  What a
 * request does in between is queue.c's, unchanged.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../base/log.h"
#include "queue_private.h"

/* which batch command a completion is for: the "tag" of its user_data */
enum { BATCH_PREP = 0, BATCH_FETCH = 1, BATCH_COMMIT = 2 /* + buffer */ };
#define BATCH_BGID 0	/* the ring's only provided-buffer group */
#define FETCH_MAX_TAGS 128	/* the kernel puts at most this many in one CQE */

static unsigned pow2_at_least(unsigned n)
{
	unsigned p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

static struct io_uring_sqe *batch_sqe(struct ublk_queue *q, unsigned op, uint16_t which)
{
	struct io_uring_sqe *sqe = ublk_queue_cmd_sqe(q, op, ublk_ud_cmd(which) | UBLK_UD_BATCH);
	struct ublk_batch_io *cmd = (struct ublk_batch_io *)sqe->cmd;

	cmd->q_id = q->c.q_id;
	cmd->flags = q->batch.elem_flags;
	cmd->elem_bytes = q->batch.elem_bytes;
	return sqe;
}

int ublk_batch_init(struct ublk_queue *q)
{
	struct ublk_batch *b = &q->batch;
	struct io_uring_buf_reg reg;
	unsigned mask;

	/* copy mode names each tag's buffer; user copy and auto_reg need
	 * nothing but the tag (auto_reg's slot is the tag: buf_index) */
	b->elem_flags = !q->c.user_copy && q->c.zero_copy == UBLK_ZC_NONE
		? UBLK_BATCH_F_HAS_BUF_ADDR : 0;
	b->elem_bytes = (uint8_t)(sizeof(struct ublk_elem_header) +
				  (b->elem_flags & UBLK_BATCH_F_HAS_BUF_ADDR ? 8 : 0));
	b->prep_res = 1;
	for (unsigned i = 0; i < UBLK_BATCH_COMMIT_BUFS; i++) {
		b->commit[i] = calloc(q->c.depth, b->elem_bytes);
		if (!b->commit[i])
			return -ENOMEM;
	}
	/* a buffer per tag: each FETCH completion carries one tag at least,
	 * so the kernel cannot run out while we hold back none */
	b->buf_tags = q->c.depth < FETCH_MAX_TAGS ? q->c.depth : FETCH_MAX_TAGS;
	b->nr_bufs = pow2_at_least(q->c.depth);
	b->tags = calloc((size_t)b->nr_bufs * b->buf_tags, sizeof(uint16_t));
	if (!b->tags)
		return -ENOMEM;
	b->br_len = (size_t)b->nr_bufs * sizeof(struct io_uring_buf);
	b->br = mmap(NULL, b->br_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		     -1, 0);
	if (b->br == MAP_FAILED) {
		b->br = NULL;
		return -errno;
	}
	io_uring_buf_ring_init(b->br);
	mask = (unsigned)io_uring_buf_ring_mask(b->nr_bufs);
	for (unsigned i = 0; i < b->nr_bufs; i++)
		io_uring_buf_ring_add(b->br, b->tags + (size_t)i * b->buf_tags,
				      b->buf_tags * sizeof(uint16_t), (unsigned short)i, (int)mask,
				      (int)i);
	io_uring_buf_ring_advance(b->br, (int)b->nr_bufs);
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uint64_t)(uintptr_t)b->br;
	reg.ring_entries = b->nr_bufs;
	reg.bgid = BATCH_BGID;
	return io_uring_register_buf_ring(&q->ring, &reg, 0);
}

/* After the ring is gone: the kernel no longer writes to any of this. */
void ublk_batch_free(struct ublk_queue *q)
{
	struct ublk_batch *b = &q->batch;

	for (unsigned i = 0; i < UBLK_BATCH_COMMIT_BUFS; i++)
		free(b->commit[i]);
	free(b->tags);
	if (b->br)
		munmap(b->br, b->br_len);
	memset(b, 0, sizeof(*b));
}

/* Element i of buffer `buf`: its header, then the buffer address. */
static void put_elem(struct ublk_queue *q, char *buf, unsigned i, uint16_t tag, int result)
{
	struct ublk_batch *b = &q->batch;
	char *e = buf + (size_t)i * b->elem_bytes;
	struct ublk_elem_header h = {
		.tag = tag,
		.buf_index = q->c.zero_copy == UBLK_ZC_AUTO_REG ? tag : 0,
		.result = result,
	};

	memcpy(e, &h, sizeof(h));
	if (b->elem_flags & UBLK_BATCH_F_HAS_BUF_ADDR) {
		uint64_t addr = (uint64_t)(uintptr_t)ublk_queue_tag_buf(q, tag);

		memcpy(e + sizeof(h), &addr, sizeof(addr));
	}
}

static void arm_fetch(struct ublk_queue *q)
{
	struct io_uring_sqe *sqe = batch_sqe(q, UBLK_U_IO_FETCH_IO_CMDS, BATCH_FETCH);
	struct ublk_batch_io *cmd = (struct ublk_batch_io *)sqe->cmd;

	cmd->flags = 0;
	cmd->elem_bytes = sizeof(uint16_t);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BATCH_BGID;
	sqe->uring_cmd_flags = IORING_URING_CMD_MULTISHOT;
}

int ublk_batch_start(struct ublk_queue *q)
{
	struct ublk_batch *b = &q->batch;
	struct io_uring_sqe *sqe;
	int ret;

	for (unsigned t = 0; t < q->c.depth; t++)
		put_elem(q, b->commit[0], t, (uint16_t)t, 0);
	sqe = batch_sqe(q, UBLK_U_IO_PREP_IO_CMDS, BATCH_PREP);
	((struct ublk_batch_io *)sqe->cmd)->nr_elem = q->c.depth;
	sqe->addr = (uint64_t)(uintptr_t)b->commit[0];
	/* its answer says whether the tags are the kernel's: wait for it
	 * (and handle whatever else completes meanwhile) */
	ret = io_uring_submit(&q->ring);
	while (ret >= 0 && b->prep_res == 1) {
		struct io_uring_cqe *cqe;

		ret = io_uring_wait_cqe(&q->ring, &cqe);
		if (ret == -EINTR) {
			ret = 0;
			continue;
		}
		if (ret < 0)
			break;
		ublk_queue_handle_cqe(q, cqe);
		io_uring_cqe_seen(&q->ring, cqe);
	}
	if (ret < 0)
		return ret;
	if (b->prep_res < 0)
		return b->prep_res;
	arm_fetch(q);
	ret = io_uring_submit(&q->ring);
	return ret < 0 ? ret : 0;
}

void ublk_batch_stage(struct ublk_queue *q, uint16_t tag, int result)
{
	struct ublk_batch *b = &q->batch;

	/* a tag comes back from the kernel only after its commit is sent, so
	 * no more than depth are ever staged */
	put_elem(q, b->commit[b->staging], b->staged++, tag, result);
	b->owned--;
}

void ublk_batch_flush(struct ublk_queue *q)
{
	struct ublk_batch *b = &q->batch;
	struct io_uring_sqe *sqe;
	unsigned next;

	if (!b->staged)
		return;
	/* the staging buffer is sent; another, free one takes over.  All
	 * busy: keep staging, and send when one of them completes (its
	 * completion is the next pass). */
	for (next = 0; next < UBLK_BATCH_COMMIT_BUFS; next++)
		if (next != b->staging && !b->sent[next])
			break;
	if (next == UBLK_BATCH_COMMIT_BUFS)
		return;
	sqe = batch_sqe(q, UBLK_U_IO_COMMIT_IO_CMDS, (uint16_t)(BATCH_COMMIT + b->staging));
	((struct ublk_batch_io *)sqe->cmd)->nr_elem = (uint16_t)b->staged;
	sqe->addr = (uint64_t)(uintptr_t)b->commit[b->staging];
	b->sent[b->staging] = (uint16_t)b->staged;
	b->staging = next;
	b->staged = 0;
}

/* A FETCH completion: the tags in its buffer are requests to start. */
static void fetched(struct ublk_queue *q, const struct io_uring_cqe *cqe)
{
	struct ublk_batch *b = &q->batch;

	unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;

	/* (a buffer id is one we gave: checked once, not per tag) */
	if ((cqe->flags & IORING_CQE_F_BUFFER) && bid < b->nr_bufs) {
		uint16_t *tags = b->tags + (size_t)bid * b->buf_tags;
		unsigned n = cqe->res > 0 ? (unsigned)cqe->res / sizeof(uint16_t) : 0;

		for (unsigned i = 0; i < n; i++) {
			if (tags[i] == UBLK_BATCH_IO_UNUSED_TAG)
				continue;
			if (tags[i] >= q->c.depth) {
				ublk_err("dev %u queue %u: FETCH_IO_CMDS gave tag %u, past depth %u",
					 q->c.dev_id, q->c.q_id, tags[i], q->c.depth);
				continue;
			}
			b->owned++;
			ublk_queue_handle_request(q, tags[i]);
		}
		/* handled: the buffer goes back to the kernel */
		io_uring_buf_ring_add(b->br, tags, b->buf_tags * sizeof(uint16_t),
				      (unsigned short)bid, io_uring_buf_ring_mask(b->nr_bufs), 0);
		io_uring_buf_ring_advance(b->br, 1);
	}
	if (cqe->flags & IORING_CQE_F_MORE)
		return;
	if (cqe->res == UBLK_IO_RES_ABORT) {
		b->aborted = true; /* STOP_DEV or QUIESCE_DEV */
	} else if (cqe->res >= 0 || cqe->res == -ENOBUFS) {
		if (!q->stopping) /* ended, not failed: re-arm */
			arm_fetch(q);
	} else {
		ublk_err("dev %u queue %u: FETCH_IO_CMDS failed: %s", q->c.dev_id, q->c.q_id,
			 strerror(-cqe->res));
		q->stopping = true;
	}
}

/* A COMMIT completion: res is the bytes of elements committed, in order,
 * up to the first that failed. */
static void committed(struct ublk_queue *q, unsigned buf, int res)
{
	struct ublk_batch *b = &q->batch;
	unsigned n = b->sent[buf];
	unsigned done = res < 0 ? 0 : (unsigned)res / b->elem_bytes;

	b->sent[buf] = 0;
	if (done >= n)
		return;
	if (res == UBLK_IO_RES_ABORT) { /* the device is going: its requests with it */
		ublk_dbg("dev %u queue %u: COMMIT_IO_CMDS: %u tags after abort", q->c.dev_id,
			 q->c.q_id, n - done);
		return;
	}
	ublk_err("dev %u queue %u: COMMIT_IO_CMDS committed %u of %u requests (tag %u "
		 "refused%s%s)", q->c.dev_id, q->c.q_id, done, n,
		 ((const struct ublk_elem_header *)(b->commit[buf] +
						    (size_t)done * b->elem_bytes))->tag,
		 res < 0 ? ": " : "", res < 0 ? strerror(-res) : "");
	q->stopping = true;
}

void ublk_batch_handle_cqe(struct ublk_queue *q, const struct io_uring_cqe *cqe)
{
	unsigned which = ublk_ud_tag(cqe->user_data);

	if (which == BATCH_PREP) {
		q->batch.prep_res = cqe->res > 0 ? 0 : cqe->res;
		if (cqe->res < 0)
			ublk_err("dev %u queue %u: PREP_IO_CMDS: %s", q->c.dev_id, q->c.q_id,
				 strerror(-cqe->res));
	} else if (which == BATCH_FETCH) {
		fetched(q, cqe);
	} else if (which - BATCH_COMMIT < UBLK_BATCH_COMMIT_BUFS) {
		committed(q, which - BATCH_COMMIT, cqe->res);
	}
}

bool ublk_batch_idle(const struct ublk_queue *q)
{
	const struct ublk_batch *b = &q->batch;

	if (b->staged)
		return false;
	for (unsigned i = 0; i < UBLK_BATCH_COMMIT_BUFS; i++)
		if (b->sent[i])
			return false;
	/* after ABORT, every request delivered must have been answered */
	return q->stopping || (b->aborted && b->owned == 0);
}
