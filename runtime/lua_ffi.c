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

#include "lua_bridge.h"

_Static_assert(UBLK_LUA_QUEUED == UBLK_IO_QUEUED, "lua_ffi.h and backend.h agree on 'queued'");

/* The request whose handler runs now, or NULL outside a handler (open(),
 * close(), or a synchronous backend, which may not wait). */
static struct ublk_io *waiting_io(struct ublk_lua_queue *lq)
{
	if (!lq->running || !lq->lb->async)
		return NULL;
	return lq->tags[lq->cur_tag].io;
}

static int ffi_delegate(struct ublk_lua_queue *lq, int index, int op, uint16_t tag,
			uint8_t *buf, uint32_t len, double off, uint32_t flags)
{
	struct lua_tag *t;

	if (!lq->running || index < 0 || (unsigned)index >= lq->lb->nr_inner ||
	    tag >= ublk_queue_depth(lq->q) || off < 0 || len > ublk_queue_max_io(lq->q))
		return -EINVAL;
	t = &lq->tags[tag];
	if (t->sub.outstanding) /* the request's delegate is still busy */
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
	struct ublk_io *io = waiting_io(lq);
	struct lua_tag *t = &lq->tags[lq->cur_tag];

	if (!io)
		return -EPERM;
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
	struct ublk_io *io = waiting_io(lq);

	if (!io)
		return -EPERM;
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
	struct ublk_io *io = waiting_io(lq);

	if (!io)
		return -EPERM;
	io_uring_prep_fsync(ublk_io_sqe(lq->q, io), fd, 0);
	return UBLK_LUA_QUEUED;
}

static uint8_t *ffi_buffer(struct ublk_lua_queue *lq, uint16_t tag)
{
	struct ublk_lua_req *r;
	struct lua_tag *t;

	if (tag >= ublk_queue_depth(lq->q)) {
		errno = EINVAL;
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

static int ffi_copy(struct ublk_lua_queue *lq, uint16_t tag, void *mem, uint32_t len,
		    uint32_t off)
{
	struct ublk_lua_req *r;
	struct lua_tag *t;

	if (tag >= ublk_queue_depth(lq->q))
		return -EINVAL;
	r = &lq->reqs[tag];
	t = &lq->tags[tag];
	if (off > r->length || len > r->length - off ||
	    (r->op != UBLK_IO_OP_READ && r->op != UBLK_IO_OP_WRITE))
		return -EINVAL;
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
	};
}
