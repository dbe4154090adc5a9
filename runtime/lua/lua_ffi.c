/* SPDX-License-Identifier: MIT */
/*
 * lua_ffi.c - the entry points a queue's Lua helpers reach through FFI
 * (struct ublk_lua_ctx in lua_ffi.h): delegates, ublk.sleep, ublk.io.*,
 * req.buf and req:copy.
 * Each acts for the request whose handler runs now, submits on the
 * queue's ring or runs a C backend, and returns: none calls into Lua.
 */
#include <errno.h>
#include <string.h>

#include <liburing.h>

#include "../queue/queue.h"
#include "lua_bridge.h"

_Static_assert(UBLK_LUA_QUEUED == UBLK_IO_QUEUED, "lua_ffi.h and backend.h agree on 'queued'");

/* Below this, req:copy uses user copy even where zero copy is granted, as
 * the memory backend does (backend_memory.c's ZC_MIN). */
#define LUA_ZC_MIN (64u << 10)

/* Whether the handler running now may wait: not outside one (open(),
 * close()), nor in a synchronous backend. */
static bool may_wait(const struct ublk_lua_queue *lq)
{
	return lq->running && lq->lb->async;
}

/* *io: the request whose handler runs now, for a wait.  -EPERM where it
 * may not wait; -ETIMEDOUT once it is over its time budget: what it waited
 * for was cancelled (lua_call_expire), and a handler that catches that and
 * tries again must end, so nothing new starts for it. */
static int waiting_io(struct ublk_lua_queue *lq, struct ublk_io **io)
{
	if (!may_wait(lq))
		return -EPERM;
	if (lq->tags[lq->cur_tag].expired)
		return -ETIMEDOUT;
	*io = lq->tags[lq->cur_tag].io;
	return 0;
}

/* Whether tag's request is the one whose handler runs now: the entry
 * points that take a tag act for no other.  A req kept from an earlier
 * call names a tag that may be idle (no request to copy, none to commit
 * when a delegate finishes) or serving another request.  An async handler
 * runs across its waits: each resume makes its tag current again (run()
 * in lua_call.c).  -ESTALE, not -EINVAL, so the Lua side can tell this
 * misuse from a range req:copy refuses. */
static bool serving(const struct ublk_lua_queue *lq, uint16_t tag)
{
	return lq->running && tag == lq->cur_tag;
}

static int ffi_delegate(struct ublk_lua_queue *lq, int index, int op, uint16_t tag,
			uint8_t *buf, uint32_t len, double off, uint32_t flags)
{
	struct lua_tag *t;

	if (!serving(lq, tag))
		return -ESTALE;
	if (index < 0 || (unsigned)index >= lq->lb->nr_inner || off < 0 ||
	    len > ublk_queue_max_io(lq->q))
		return -EINVAL;
	t = &lq->tags[tag];
	if (t->expired) /* as waiting_io() */
		return -ETIMEDOUT;
	if (ublk_io_outstanding(&t->sub)) /* the request's delegate is still busy */
		return -EBUSY;
	t->sub.op = (uint8_t)op;
	t->sub.flags = flags;
	t->sub.tag = tag;
	t->sub.len = len;
	t->sub.offset = (uint64_t)off;
	t->sub.buf = buf;
	return ublk_io_delegate(lq->q, t->io, &t->sub, &lq->lb->inner[index]);
}

static int ffi_sleep(struct ublk_lua_queue *lq, double ms)
{
	struct ublk_io *io;
	struct lua_tag *t = &lq->tags[lq->cur_tag];
	int ret = waiting_io(lq, &io);

	if (ret < 0)
		return ret;
	if (!(ms >= 0))
		return -EINVAL;
	t->ts.tv_sec = (long long)(ms / 1000);
	t->ts.tv_nsec = (long long)((ms - (double)t->ts.tv_sec * 1000) * 1e6);
	io_uring_prep_timeout(ublk_io_sqe(lq->q, io), &t->ts, 0, 0);
	return UBLK_LUA_QUEUED;
}

static int ffi_rw(struct ublk_lua_queue *lq, int write, int fd, void *buf, uint32_t len,
		  double off)
{
	struct ublk_io *io;
	int ret = waiting_io(lq, &io);

	if (ret < 0)
		return ret;
	if (!(off >= 0))
		return -EINVAL;
	if (write)
		io_uring_prep_write(ublk_io_sqe(lq->q, io), fd, buf, len, (uint64_t)off);
	else
		io_uring_prep_read(ublk_io_sqe(lq->q, io), fd, buf, len, (uint64_t)off);
	return UBLK_LUA_QUEUED;
}

static int ffi_fsync(struct ublk_lua_queue *lq, int fd)
{
	struct ublk_io *io;
	int ret = waiting_io(lq, &io);

	if (ret < 0)
		return ret;
	io_uring_prep_fsync(ublk_io_sqe(lq->q, io), fd, 0);
	return UBLK_LUA_QUEUED;
}

static uint8_t *ffi_buffer(struct ublk_lua_queue *lq, uint16_t tag)
{
	struct ublk_lua_req *r;
	struct lua_tag *t;

	if (!serving(lq, tag)) {
		errno = ESTALE;
		return NULL;
	}
	r = &lq->reqs[tag];
	t = &lq->tags[tag];
	if (!r->_buffered && r->op == UBLK_IO_OP_WRITE && ublk_io_user_copy(lq->q, t->io)) {
		int c = ublk_io_copy_user(lq->q, t->io, r->_buf, r->length, 0);

		if (c < 0) {
			errno = -c;
			return NULL;
		}
	}
	r->_buffered = 1;
	return r->_buf;
}

/* Zero copy of io's whole data between the request's pages and the
 * region holding mem: a *_FIXED read or write of the region's file.  An
 * async handler waits for it (QUEUED); a sync one's request ends when it
 * completes (its handler's result stands unless this fails), so the
 * copy's byte count is returned at once.  Numbers: docs/tuning.md. */
static int zero_copy(struct ublk_lua_queue *lq, struct ublk_io *io, void *mem, uint32_t len)
{
	uint8_t *p = mem;
	struct io_uring_sqe *sqe;

	for (unsigned i = 0; i < lq->nr_regions; i++) {
		const struct lua_region *rg = &lq->regions[i];

		if (p < rg->base || p + len > rg->base + rg->size)
			continue;
		sqe = ublk_io_sqe(lq->q, io);
		if (io->op == UBLK_IO_OP_READ)
			io_uring_prep_read_fixed(sqe, rg->fd, NULL, len, (uint64_t)(p - rg->base),
						 ublk_io_buf_index(lq->q, io));
		else
			io_uring_prep_write_fixed(sqe, rg->fd, NULL, len, (uint64_t)(p - rg->base),
						  ublk_io_buf_index(lq->q, io));
		return may_wait(lq) ? UBLK_LUA_QUEUED : (int)len;
	}
	return -ENOENT;
}

static int ffi_region(struct ublk_lua_queue *lq, void *base, double size, int fd)
{
	unsigned n = lq->nr_regions;

	if (n == sizeof(lq->regions) / sizeof(lq->regions[0]) || fd < 0 || !(size > 0))
		return -ENOSPC; /* more regions: they copy by user copy */
	lq->regions[n] = (struct lua_region){ .base = base, .size = (uint64_t)size, .fd = fd };
	lq->nr_regions = n + 1;
	return 0;
}

static int ffi_copy(struct ublk_lua_queue *lq, uint16_t tag, void *mem, uint32_t len,
		    uint32_t off)
{
	struct ublk_lua_req *r;
	struct lua_tag *t;

	if (!serving(lq, tag))
		return -ESTALE;
	r = &lq->reqs[tag];
	t = &lq->tags[tag];
	if (off > r->length || len > r->length - off ||
	    (r->op != UBLK_IO_OP_READ && r->op != UBLK_IO_OP_WRITE))
		return -EINVAL;
	if (off == 0 && len == r->length && len >= LUA_ZC_MIN &&
	    ublk_io_buf_index(lq->q, t->io) >= 0) {
		int ret = t->expired ? -ETIMEDOUT : zero_copy(lq, t->io, mem, len);

		if (ret != -ENOENT) /* ENOENT: mem is in no region */
			return ret;
	}
	if (ublk_io_user_copy(lq->q, t->io))
		return ublk_io_copy_user(lq->q, t->io, mem, len, off);
	if (r->op == UBLK_IO_OP_READ)
		memcpy(r->_buf + off, mem, len);
	else
		memcpy(mem, r->_buf + off, len);
	return (int)len;
}

void lua_ffi_fill(struct ublk_lua_queue *lq)
{
	lq->ctx = (struct ublk_lua_ctx){
		.q = lq,
		.reqs = lq->reqs,
		.queue = (uint16_t)ublk_queue_id(lq->q),
		.depth = (uint16_t)ublk_queue_depth(lq->q),
		.async = lq->lb->async,
		.delegate = ffi_delegate,
		.sleep = ffi_sleep,
		.rw = ffi_rw,
		.fsync = ffi_fsync,
		.buffer = ffi_buffer,
		.copy = ffi_copy,
		.region = ffi_region,
		.stats = ublk_queue_stats_block(lq->q),
	};
}
