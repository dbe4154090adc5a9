/* SPDX-License-Identifier: MIT */
/*
 * backend.h - everything a backend sees: the ops table it ends with, the
 * request it is asked to serve (struct ublk_io), and the few queue
 * functions it may call.  The queue itself is opaque here.
 *
 * The completion protocol, in one paragraph.  handle_io() returns the
 * request's bytes (>= 0), -errno, or UBLK_IO_QUEUED.  Every operation a
 * backend starts for an io (an SQE from ublk_io_sqe(), or a delegate's
 * queued request from ublk_io_delegate()) counts as one outstanding on that
 * io.  Each one's completion is handed to the backend's io_done(), which
 * again returns a result or UBLK_IO_QUEUED (a backend without io_done
 * passes the completion's own result on).  The last result returned is
 * the io's; the queue commits it to the kernel exactly once, when nothing
 * is outstanding any more (kublk's ublk_queued_tgt_io/ublk_completed_tgt_io).
 * A delegated io's result goes to its parent's backend instead, as one of
 * the parent's completions: a wrapping backend owns its request throughout.
 */
#ifndef UBLK_BACKEND_H
#define UBLK_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ublk_uapi.h"	/* UBLK_IO_OP_*, UBLK_IO_F_* */

/* The version of this contract.  A plugin (a backend built outside the
 * tree as a shared object, docs/c-backends.md) records the number it was
 * compiled against, and the runtime refuses one built for another: the
 * structs below are shared by layout, so a plugin from another version
 * would read the wrong fields.  Raised with any change to the layout or
 * meaning of what this file declares.  A function added is no reason: a
 * plugin that calls one an older runtime lacks is refused at load all the
 * same, dlopen() naming the symbol. */
#define UBLK_BACKEND_ABI 1

struct ublk_queue;
struct io_uring_sqe;

/* What the user configured.  size, block_size and read_only concern every
 * backend; anything else is one of the options it declares (ops->opts),
 * checked against that declaration and passed as a string: the file
 * backend reads "path" and "direct". */
struct ublk_backend_conf {
	uint64_t size;		/* bytes; 0 = the backend decides (file) */
	unsigned block_size;
	bool read_only;
	const char *const *opts;	/* NULL, or key, value, key, value, ..., NULL */
};

/* The value of option `key`, or NULL, unchecked: a declared option is
 * better read with its kind's accessor (ublk_conf_uint() and the rest,
 * below the declarations). */
const char *ublk_conf_get(const struct ublk_backend_conf *c, const char *key);
/* Option `key` as a flag: "1" or "true" is set, absent or anything else not. */
bool ublk_conf_flag(const struct ublk_backend_conf *c, const char *key);

/* Capabilities: only what a backend can do is advertised to the kernel,
 * so that flush, discard and write-zeroes really arrive when they can. */
enum {
	UBLK_CAN_FLUSH = 1 << 0,	/* has a volatile cache to flush */
	UBLK_CAN_FUA = 1 << 1,		/* honours UBLK_IO_F_FUA on writes */
	UBLK_CAN_DISCARD = 1 << 2,
	UBLK_CAN_WRITE_ZEROES = 1 << 3,
	/* Installs a handler for UBLK_INTERRUPT_SIGNAL (watchdog.h) that stops
	 * what runs too long in handle_io/io_done: the watchdog may poke. */
	UBLK_CAN_INTERRUPT = 1 << 5,
	/* Moves the data of the device's own requests with
	 * ublk_io_prep_user_copy(), so the kernel copies straight between
	 * request pages and the backend's memory (UBLK_F_USER_COPY). */
	UBLK_CAN_USER_COPY = 1 << 4,
	/* Serves the device's own reads and writes from the request's pages
	 * registered in the queue ring's buffer table (ublk_io_buf_index()):
	 * zero copy, where the kernel has it. */
	UBLK_CAN_ZERO_COPY = 1 << 6,
};

/* How a zero-copy request's pages reach the ring's buffer table. */
enum ublk_zc {
	UBLK_ZC_NONE,
	UBLK_ZC_AUTO_REG,	/* UBLK_F_AUTO_BUF_REG (6.16+): the kernel
				 * registers them before the request arrives
				 * and unregisters them at its commit */
	UBLK_ZC_REGISTER,	/* UBLK_F_SUPPORT_ZERO_COPY (6.15+): the queue
				 * registers them per request (REGISTER_IO_BUF,
				 * linked to the backend's first operation) */
	UBLK_ZC_AUTO_REG_FALLBACK, /* AUTO_BUF_REG asked at a slot the ring
				 * lacks, with UBLK_AUTO_BUF_REG_FALLBACK: each
				 * request comes with UBLK_IO_F_NEED_REG_BUF and the
				 * queue registers it as REGISTER does; the null
				 * backend's test of that path (kublk's null
				 * --auto_zc_fallback does the same) */
};

struct ublk_backend {
	const struct ublk_backend_ops *ops;
	void *priv;		/* device-wide state, shared by all queues */
	uint64_t size;		/* bytes served, set by create() */
	unsigned caps;		/* UBLK_CAN_* */
	/* Longest its queue thread may stay in handle_io/io_done at a time
	 * before the watchdog acts; 0: not watched. */
	unsigned budget_ms;
	/* Most queues the device may have (0: any): create() lowers it when
	 * queues cannot be independent (an NBD server without multi-conn
	 * gets one connection, so one queue); the device is made with fewer. */
	unsigned max_queues;
	/* With UBLK_CAN_ZERO_COPY: UBLK_ZC_NONE takes the best mode the
	 * kernel has (else copies); another mode is that one or a refusal. */
	enum ublk_zc zc_only;
	/* Memory alignment the backend needs of request pages under zero
	 * copy (O_DIRECT: the file's), as UBLK_PARAM_TYPE_DMA_ALIGN; 0: the
	 * kernel's default. */
	unsigned dma_align;
	char err[160];		/* why create() failed, for the user */
	char note[96];		/* what create() did the user should hear of ("created /x") */
	/* A file holding the data beyond this process (the memory backend's
	 * "store"), so a recovering server finds it: recorded with the device
	 * and deleted with it. */
	char store[128];
	/* A file create() made (the file backend's create = true): removed
	 * with the device when that never comes to be, kept otherwise. */
	char made[128];
};

/* One request as a backend is asked to serve it: the device's own request
 * (made by the queue for a tag), or a delegate's share of one (made by the
 * wrapping backend, with its own buffer, offset and length). */
struct ublk_io {
	uint8_t op;		/* UBLK_IO_OP_* */
	uint32_t flags;		/* UBLK_IO_F_* (op bits masked off) */
	uint16_t tag;		/* the device request this io serves */
	uint32_t len;		/* bytes */
	uint64_t offset;	/* bytes */
	void *buf;		/* READ: fill it; WRITE: read it */
	uint64_t scratch;	/* free for the backend serving this io */

	/* The queue's bookkeeping of this io (who serves it, for whom, what
	 * is outstanding: runtime/queue/queue_private.h), opaque here: a
	 * backend that makes a delegate's io zeroes it with the rest and
	 * never touches it after; ublk_io_outstanding() is the one fact of
	 * it a backend may ask for. */
	uint64_t queue_private[8];
};

/* handle_io() and io_done() return this when operations are outstanding. */
#define UBLK_IO_QUEUED 0x7fffffff

/* The most bytes one request carries, whatever its op: a backend answers
 * with the byte count as an int, and the commit sends an int32, so a
 * 2 GiB discard would come back negative and fail with EIO although its
 * work was done.  2 GiB - 4 KiB keeps it whole pages and below
 * UBLK_IO_QUEUED; device.c caps discard and write-zeroes at it. */
#define UBLK_MAX_REQ_BYTES (((uint32_t)INT32_MAX >> 12) << 12)

/* How many operations on io have not completed yet (0: none in flight). */
unsigned ublk_io_outstanding(const struct ublk_io *io);

/* How long a request may take unless the user says otherwise: the block
 * layer's own request timeout (blk-mq's default, 30 s), so that a backend
 * gives up on a request no later than the kernel would begin its own error
 * handling.  The nbd backend's timeout, rbd's osd_timeout and a Lua
 * backend's timeout default to it, and none takes more than
 * UBLK_TIMEOUT_MAX_S (a day).  UBLK_STR gives either as an option's
 * `def` text. */
#define UBLK_REQUEST_TIMEOUT_S 30
#define UBLK_TIMEOUT_MAX_S 86400
#define UBLK_STR_(x) #x
#define UBLK_STR(x) UBLK_STR_(x)

/* ---- the options a backend takes: declared once, beside its ops ----
 *
 * Everything users see of a C backend's options comes from its
 * declaration (as nbdkit's config/config_help): the checks made before a
 * device exists (lua/ublk/options.lua), ublk.NAME{...}, the fields of a
 * device table with backend = "NAME", `ublk-lua add -t NAME --OPTION
 * VALUE`, `add -t NAME --help` and the table in docs/backends.md.  What
 * passes the checks reaches create() as a string in conf->opts. */
enum ublk_opt_kind {
	UBLK_OPT_STRING,	/* a non-empty string */
	UBLK_OPT_BOOL,		/* the user's true/false; create() sees "1" or "0" */
	UBLK_OPT_INT,		/* a whole number from min to max, in decimal */
	UBLK_OPT_SECONDS,	/* the user's seconds from min to max (fractions
				 * too); create() sees whole milliseconds */
	UBLK_OPT_CHOICE,	/* one of `values` */
	UBLK_OPT_URI,		/* a string that starts with one of `values` */
};

enum {
	/* no device without it */
	UBLK_OPT_REQUIRED = 1 << 0,
	/* A file that holds the backend's data beyond the server (the
	 * memory backend's "store"): with recovery on and no file named, the
	 * runtime names one in /dev/shm, records it with the device, and
	 * passes "recover" = "1" beside it to a server that takes the device
	 * over, which then keeps what the file holds. */
	UBLK_OPT_STORE = 1 << 1,
	/* The path of a plugin whose declarations, not this backend's, say
	 * what else the device takes (the plugin backend's "path"). */
	UBLK_OPT_PLUGIN = 1 << 2,
};

struct ublk_backend_opt {
	const char *name;	/* NULL ends the list */
	enum ublk_opt_kind kind;
	unsigned flags;		/* UBLK_OPT_* */
	/* CHOICE: the values, '|' between them ("inline|ring"); URI: the
	 * prefixes allowed ("nbd://|nbd+unix://") */
	const char *values;
	double min, max;	/* INT, SECONDS */
	/* What applies when the option is absent, in words for the help
	 * ("30", "O_DIRECT for block devices"); NULL: nothing to say */
	const char *def;
	const char *help;	/* one line */
};

struct ublk_backend_ops {
	const char *name;
	/* Its options (above), ended by one whose name is NULL; NULL: none. */
	const struct ublk_backend_opt *opts;
	/* Without a size, create() finds one (a file's length, an export's):
	 * a device of this backend may leave its size out. */
	bool sizes_itself;
	/* Device-wide setup, run before ADD_DEV so that a bad path or size is
	 * refused before any device exists.  Sets b->size, b->caps, b->priv;
	 * on failure may explain in b->err. */
	int (*create)(struct ublk_backend *b, const struct ublk_backend_conf *conf);
	void (*destroy)(struct ublk_backend *b);
	/* Optional per-queue setup and teardown, run on the queue's thread.
	 * A backend that may be a Lua backend's delegate gets them called by
	 * the wrapper on each of its queues: its per-queue state then lives
	 * in its own b->priv (by ublk_queue_id), since ublk_queue_priv() is
	 * the wrapper's. */
	int (*queue_init)(struct ublk_backend *b, struct ublk_queue *q);
	void (*queue_exit)(struct ublk_backend *b, struct ublk_queue *q);
	/* Bytes done (>= 0), -errno, or UBLK_IO_QUEUED.  `b` is passed
	 * explicitly because a backend may serve as another one's delegate. */
	int (*handle_io)(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io);
	/* Optional: one of io's operations finished with `res` (a CQE's res,
	 * or a delegate's result).  Without it `res` itself is the result
	 * (nbd's commands complete with theirs: bytes, the server's -errno,
	 * -EIO for a lost connection, -ETIMEDOUT for no answer in time). */
	int (*io_done)(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io,
		       int res);
	/* Optional: called on the queue's thread about every
	 * UBLK_TICK_MS, e.g. to give up on requests that wait too long. */
	void (*tick)(struct ublk_backend *b, struct ublk_queue *q);
	/* Optional: serve `size` bytes from now on (ublk_dev_resize, on the
	 * script's thread while the queues serve): called before the kernel
	 * is told of a larger size and after it was told of a smaller one,
	 * so no request ever lies past what the backend serves.  0, or
	 * -errno with b->err saying why.  Without it a device cannot be
	 * resized. */
	int (*resize)(struct ublk_backend *b, uint64_t size);
};

#define UBLK_TICK_MS 250

/* ---- what create() reads of the user's configuration ----
 *
 * A declared option, read by its declaration in b->ops->opts (the ops
 * the runtime set before create(), a plugin's own for a plugin): the
 * value parsed as its kind says and checked against its min and max or
 * its values, so a backend parses nothing itself and a caller of the C
 * API that skipped the Lua checks is refused all the same.  Each returns
 * 1 with *out set when the option is given; 0 when it is absent, *out
 * untouched (set the default first); -EINVAL with b->err naming the
 * option, the value and what is allowed, as the Lua checks word it, when
 * the value is bad, when a UBLK_OPT_REQUIRED option is absent, or when
 * the backend declares no option `name` of that kind (a bug in it).
 */

/* STRING (not empty) or URI (starting with one of `values`). */
int ublk_conf_string(struct ublk_backend *b, const struct ublk_backend_conf *conf,
		     const char *name, const char **out);
/* BOOL: "1" or "true", "0" or "false". */
int ublk_conf_bool(struct ublk_backend *b, const struct ublk_backend_conf *conf,
		   const char *name, bool *out);
/* INT declared within 0 to UINT_MAX: a decimal from min to max. */
int ublk_conf_uint(struct ublk_backend *b, const struct ublk_backend_conf *conf,
		   const char *name, unsigned *out);
/* SECONDS as create() gets them: whole milliseconds, from min to max
 * seconds (each rounded up to a millisecond, as the Lua side rounds). */
int ublk_conf_ms(struct ublk_backend *b, const struct ublk_backend_conf *conf,
		 const char *name, unsigned *out);
/* CHOICE: *out is the value's place in `values`, from 0 ("inline|ring":
 * "ring" is 1). */
int ublk_conf_choice(struct ublk_backend *b, const struct ublk_backend_conf *conf,
		     const char *name, unsigned *out);

/* For a backend that sizes itself (ops->sizes_itself): the device's size
 * from the user's (conf->size, 0 for none) and `have`, the bytes its
 * storage holds: the user's when it fits, else every whole block of
 * `have`.  0 with b->size set, or -EINVAL with b->err naming `what` (a
 * path, a URI, an image) and both sizes. */
int ublk_conf_size(struct ublk_backend *b, const struct ublk_backend_conf *conf,
		   const char *what, uint64_t have);

/* A plugin ends with UBLK_BACKEND_PLUGIN(its_ops): it exports the ABI it
 * was built for and its ops table under the two names the runtime looks
 * up (`backend = "plugin", path = "./x.so"`, `add -t plugin --path`).
 * The runtime's functions below it finds in the process that loads it
 * (ublk-lua, or ublk.core in LuaJIT): a plugin links no library of ours. */
#define UBLK_BACKEND_PLUGIN(ops_table) \
	const unsigned ublk_backend_abi = UBLK_BACKEND_ABI; \
	const struct ublk_backend_ops *const ublk_backend_plugin = &(ops_table)

/* ---- what a backend may call, on the queue's own thread ---- */

/* An SQE whose completion goes to io's backend's io_done(); one more
 * operation outstanding on io.  Never NULL: when the submission queue is
 * full, what is pending is submitted first. */
struct io_uring_sqe *ublk_io_sqe(struct ublk_queue *q, struct ublk_io *io);

/* Has backend `b` serve `sub` (filled in by the caller: op, flags, tag,
 * len, offset, buf) on behalf of `parent`.  Returns sub's result when it
 * finished at once; UBLK_IO_QUEUED when it did not, in which case parent
 * has one more operation outstanding and sub's result later reaches
 * parent's io_done(); -EBUSY when sub is still serving an earlier call. */
int ublk_io_delegate(struct ublk_queue *q, struct ublk_io *parent, struct ublk_io *sub,
		     struct ublk_backend *b);

/* An operation on io that is neither an SQE nor a delegate's: a request
 * a library (libnbd) sends on its own socket and reports in a callback.
 * It counts as outstanding like an SQE until ublk_io_external_done(); at
 * most one such operation per io at a time. */
void ublk_io_external(struct ublk_queue *q, struct ublk_io *io);
/* That operation finished with `res` (bytes or -errno).  Safe anywhere on
 * the queue's thread, even inside handle_io or a library call made from
 * it: the completion is queued and reaches io's backend's io_done() after
 * what runs now has returned, as a CQE's would, so no backend (nor a Lua
 * parent) is ever re-entered. */
void ublk_io_external_done(struct ublk_queue *q, struct ublk_io *io, int res);

/* A backend's poll on a file descriptor of its own (a library's socket),
 * on the queue's ring: ublk_poll_arm() polls p->fd once for `events`
 * (POLLIN, POLLOUT); when they come, p->armed is cleared and p->ready()
 * runs on the queue's thread with the revents (or -errno).  A poll belongs
 * to no io and keeps no request or queue waiting: one still armed when the
 * queue ends goes with the ring, ready() never called, so `p` must live
 * until queue_exit.  A backend that must hear of both directions arms two. */
struct ublk_poll {
	int fd;
	void (*ready)(struct ublk_queue *q, struct ublk_poll *p, int revents);
	bool armed;		/* queue.c's: between arm and ready() */
};
void ublk_poll_arm(struct ublk_queue *q, struct ublk_poll *p, unsigned events);

/* Cancels io's outstanding SQEs: each completes, with -ECANCELED if it
 * had not finished, through io_done as usual. */
void ublk_io_cancel(struct ublk_queue *q, struct ublk_io *io);

/* True when io's data moves by user copy (the device's own request on a
 * device with UBLK_F_USER_COPY): then io->buf is not the request's data,
 * and ublk_io_copy_user() or ublk_io_prep_user_copy() moves it. */
bool ublk_io_user_copy(const struct ublk_queue *q, const struct ublk_io *io);
/* Prepares sqe to copy io's data between the request and `mem`: a READ
 * copies mem into the request, a WRITE the request into mem. */
void ublk_io_prep_user_copy(struct io_uring_sqe *sqe, const struct ublk_queue *q,
			    const struct ublk_io *io, void *mem);

/* The same copy done at once, on the calling (queue) thread: `len` bytes
 * at `off` in io's data.  Returns len, or -errno (a short copy is -EIO),
 * and the backend returns that as the io's result, so the commit goes to
 * the kernel in the same submission and no request waits on a copy.
 * /dev/ublkcN cannot do non-blocking reads and writes, so io_uring hands
 * a copy SQE to a worker thread: the synchronous form saves that hand-off
 * (7.3, 4k randread QD1: 4.3k IOPS against 1.8-3.1k by SQE; numbers in
 * docs/tuning.md).  kublk copies the same way. */
int ublk_io_copy_user(const struct ublk_queue *q, const struct ublk_io *io, void *mem,
		      uint32_t len, uint32_t off);

/* io's data as a fixed buffer of the queue's ring: its index for
 * io_uring_prep_read_fixed/write_fixed (addresses run from 0 at the start
 * of the request's data), or -1 when io's data is io->buf (no zero copy,
 * a delegate's io, or an op without data). */
int ublk_io_buf_index(const struct ublk_queue *q, const struct ublk_io *io);

/* The queue's number among the device's, 0 .. queues * threads - 1 (below
 * UBLK_MAX_NR_QUEUES): with `threads` > 1 each kernel queue is served by
 * that many threads, each a queue here with its ring and its share of the
 * tags, so per-queue state kept by this number is one thread's. */
unsigned ublk_queue_id(const struct ublk_queue *q);
unsigned ublk_queue_depth(const struct ublk_queue *q);
unsigned ublk_queue_dev_id(const struct ublk_queue *q);
/* True once the device is being stopped: STOP_DEV waits, uninterruptibly,
 * for every request in flight, so a backend waiting on a remote peer
 * should fail what the peer has not answered soon (see backend_nbd.c)
 * rather than hold the stop, and the server's exit, for its full timeout. */
bool ublk_queue_draining(const struct ublk_queue *q);
uint32_t ublk_queue_max_io(const struct ublk_queue *q);
/* The backend's per-queue state, set in queue_init. */
void *ublk_queue_priv(const struct ublk_queue *q);
void ublk_queue_set_priv(struct ublk_queue *q, void *priv);

#endif
