/* SPDX-License-Identifier: MIT */
/*
 * device.c - the staged lifecycle of one device (see device.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "device.h"
#include "log.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int fail(struct ublk_dev *d, int ret, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct ublk_dev *d, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->err, sizeof(d->err), fmt, ap);
	va_end(ap);
	return ret;
}

static unsigned shift_of(unsigned v)
{
	unsigned s = 0;

	while ((1u << s) < v)
		s++;
	return s;
}

static int open_ctrl(struct ublk_dev *d)
{
	int ret = ublk_ctrl_open(&d->ctrl);

	if (ret == -ENOENT)
		return fail(d, ret, "%s not found: this kernel has no ublk driver "
			    "(load it with 'modprobe ublk_drv')", UBLK_CTRL_DEV);
	if (ret == -EACCES || ret == -EPERM)
		return fail(d, ret, "cannot open %s: %s (run as root)",
			    UBLK_CTRL_DEV, strerror(-ret));
	if (ret < 0)
		return fail(d, ret, "cannot open %s: %s", UBLK_CTRL_DEV, strerror(-ret));
	ublk_ctrl_get_features(&d->ctrl, &d->features);
	return 0;
}

/* The flags we ask ADD_DEV for: what the kernel has and we can use. */
static uint64_t wanted_flags(const struct ublk_dev *d)
{
	uint64_t want = UBLK_F_CMD_IOCTL_ENCODE;

	if (d->backend.caps & UBLK_CAN_USER_COPY)
		want |= UBLK_F_USER_COPY;
	return d->features & want;
}

static int add_dev(struct ublk_dev *d, const struct ublk_dev_conf *conf)
{
	uint64_t want = wanted_flags(d);
	struct ublksrv_ctrl_dev_info *info = &d->info;
	int ret;

	memset(info, 0, sizeof(*info));
	info->nr_hw_queues = (uint16_t)conf->queues;
	info->queue_depth = (uint16_t)conf->depth;
	info->max_io_buf_bytes = conf->max_io;
	info->dev_id = conf->id < 0 ? UINT32_MAX : (uint32_t)conf->id;
	info->ublksrv_pid = getpid();
	info->flags = want;
	ret = ublk_ctrl_add_dev(&d->ctrl, info);
	if (ret == -EEXIST)
		return fail(d, ret, "device id %d is already in use", conf->id);
	if (ret < 0)
		return fail(d, ret, "ADD_DEV refused: %s", strerror(-ret));
	return 0;
}

/* The kernel clamps queues to its CPU count and drops flags it does not
 * know: check that it gave us what we asked for. */
static int check_granted(struct ublk_dev *d, const struct ublk_dev_conf *conf)
{
	uint64_t want = wanted_flags(d);
	struct ublksrv_ctrl_dev_info *info = &d->info;

	ublk_dbg("dev %u: asked flags %#llx, kernel granted %#llx", info->dev_id,
		 (unsigned long long)want, (unsigned long long)info->flags);
	if ((info->flags & want) != want)
		return fail(d, -ENOTSUP, "the kernel refused device flags %#llx",
			    (unsigned long long)(want & ~info->flags));
	if (info->nr_hw_queues != conf->queues)
		return fail(d, -EINVAL, "queues = %u, but this kernel allows at most %u",
			    conf->queues, info->nr_hw_queues);
	if (info->queue_depth != conf->depth)
		return fail(d, -EINVAL, "depth = %u, but the kernel set %u", conf->depth,
			    info->queue_depth);
	if (info->max_io_buf_bytes < conf->max_io)
		return fail(d, -EINVAL, "max_io = %u, but the kernel allows %u",
			    conf->max_io, info->max_io_buf_bytes);
	d->ctrl.ioctl_encode = (info->flags & UBLK_F_CMD_IOCTL_ENCODE) != 0;
	return 0;
}

static int set_params(struct ublk_dev *d, const struct ublk_dev_conf *conf)
{
	struct ublk_params p = { 0 };
	unsigned caps = d->backend.caps;
	unsigned bs_shift = shift_of(conf->block_size);
	int ret;

	p.types = UBLK_PARAM_TYPE_BASIC;
	p.basic.logical_bs_shift = (uint8_t)bs_shift;
	p.basic.physical_bs_shift = (uint8_t)(bs_shift > 12 ? bs_shift : 12);
	p.basic.io_min_shift = (uint8_t)bs_shift;
	p.basic.io_opt_shift = 12;
	p.basic.max_sectors = conf->max_io >> 9;
	p.basic.dev_sectors = d->backend.size >> 9;
	if (conf->read_only)
		p.basic.attrs |= UBLK_ATTR_READ_ONLY;
	/* A volatile cache is what makes the kernel send FLUSH (and FUA). */
	if (caps & UBLK_CAN_FLUSH) {
		p.basic.attrs |= UBLK_ATTR_VOLATILE_CACHE;
		if (caps & UBLK_CAN_FUA)
			p.basic.attrs |= UBLK_ATTR_FUA;
	}
	if (conf->discard && !conf->read_only &&
	    (caps & (UBLK_CAN_DISCARD | UBLK_CAN_WRITE_ZEROES))) {
		p.types |= UBLK_PARAM_TYPE_DISCARD;
		p.discard.discard_granularity = 4096;
		p.discard.max_discard_segments = 1; /* the only count ublk takes */
		if (caps & UBLK_CAN_DISCARD)
			p.discard.max_discard_sectors = UINT32_MAX >> 9;
		if (caps & UBLK_CAN_WRITE_ZEROES)
			p.discard.max_write_zeroes_sectors = UINT32_MAX >> 9;
	}
	ret = ublk_ctrl_set_params(&d->ctrl, d->info.dev_id, &p);
	if (ret < 0)
		return fail(d, ret, "SET_PARAMS refused: %s", strerror(-ret));
	ret = ublk_ctrl_get_params(&d->ctrl, d->info.dev_id, &d->params);
	if (ret < 0)
		return fail(d, ret, "GET_PARAMS failed: %s", strerror(-ret));
	if (d->params.basic.dev_sectors != p.basic.dev_sectors ||
	    d->params.basic.max_sectors != p.basic.max_sectors ||
	    (d->params.types & p.types) != p.types)
		return fail(d, -EIO, "the kernel did not keep the parameters we set");
	return 0;
}

static void free_queues(struct ublk_dev *d)
{
	if (!d->queues)
		return;
	for (unsigned i = 0; i < d->info.nr_hw_queues; i++)
		ublk_queue_free(d->queues[i]);
	free(d->queues);
	d->queues = NULL;
}

static int alloc_queues(struct ublk_dev *d, bool pin)
{
	unsigned nr = d->info.nr_hw_queues;

	d->queues = calloc(nr, sizeof(*d->queues));
	if (!d->queues)
		return fail(d, -ENOMEM, "out of memory");
	for (unsigned i = 0; i < nr; i++) {
		struct ublk_queue_conf c = {
			.q_id = (uint16_t)i,
			.depth = d->info.queue_depth,
			.dev_id = d->info.dev_id,
			.max_io = d->info.max_io_buf_bytes,
			.cdev_fd = d->cdev_fd,
			.ioctl_encode = d->ctrl.ioctl_encode,
			.user_copy = (d->info.flags & UBLK_F_USER_COPY) != 0,
			.pin = pin,
			.backend = &d->backend,
			.latch = &d->latch,
		};
		int ret = ublk_ctrl_get_queue_affinity(&d->ctrl, d->info.dev_id, c.q_id,
						       &c.cpus);

		if (ret < 0) /* unpinned threads still work; say so once */
			ublk_warn("dev %u queue %u: no CPU affinity: %s",
				  d->info.dev_id, i, strerror(-ret));
		d->queues[i] = ublk_queue_new(&c);
		if (!d->queues[i])
			return fail(d, -ENOMEM, "out of memory");
	}
	return 0;
}

/* Frees what exists; d->err is left as it is, for the caller's message. */
static void release(struct ublk_dev *d, bool added)
{
	free_queues(d);
	if (d->cdev_fd >= 0)
		close(d->cdev_fd);
	d->cdev_fd = -1;
	/* deletion completes when the char device is released: close it first */
	if (added)
		ublk_dev_delete(&d->ctrl, d->info.dev_id);
	ublk_ctrl_close(&d->ctrl);
	if (d->backend.ops)
		d->backend.ops->destroy(&d->backend);
	d->backend.ops = NULL;
	d->state = UBLK_DEV_CLOSED;
}

int ublk_dev_create(struct ublk_dev *d, const struct ublk_dev_conf *conf,
		    const struct ublk_backend_ops *ops,
		    const struct ublk_backend_conf *bconf)
{
	struct ublk_dev_conf lowered;
	char cdev[32];
	uint64_t t0;
	int ret;

	memset(d, 0, sizeof(*d));
	d->cdev_fd = -1;
	d->ctrl.fd = -1;
	d->state = UBLK_DEV_CLOSED;
	d->backend.ops = ops;
	ret = ops->create(&d->backend, bconf);
	if (ret < 0) {
		d->backend.ops = NULL;
		return fail(d, ret, "backend '%s': %s", ops->name,
			    d->backend.err[0] ? d->backend.err : strerror(-ret));
	}
	/* a backend whose queues cannot be independent asks for fewer */
	if (d->backend.max_queues && conf->queues > d->backend.max_queues) {
		lowered = *conf;
		lowered.queues = d->backend.max_queues;
		conf = &lowered;
	}
	if (!d->backend.size || d->backend.size % conf->block_size) {
		release(d, false);
		return fail(d, -EINVAL, "size %llu is not a positive multiple of block_size %u",
			    (unsigned long long)d->backend.size, conf->block_size);
	}
	ret = open_ctrl(d);
	if (ret < 0) {
		release(d, false);
		return ret;
	}
	ublk_dev_remove_orphans(&d->ctrl);
	t0 = now_ns();
	ret = add_dev(d, conf);
	if (ret < 0) {
		release(d, false); /* the kernel made no device */
		return ret;
	}
	ublk_dev_register(d->info.dev_id);
	ret = check_granted(d, conf);
	snprintf(cdev, sizeof(cdev), "/dev/ublkc%u", d->info.dev_id);
	if (ret >= 0) {
		d->cdev_fd = open(cdev, O_RDWR | O_CLOEXEC);
		if (d->cdev_fd < 0)
			ret = fail(d, -errno, "cannot open %s: %s", cdev, strerror(errno));
	}
	if (ret >= 0)
		ret = set_params(d, conf);
	if (ret >= 0)
		ret = alloc_queues(d, conf->pin);
	if (ret < 0) {
		release(d, true);
		return ret;
	}
	d->create_ns = now_ns() - t0;
	d->state = UBLK_DEV_CREATED;
	return 0;
}

static void stop_queues(struct ublk_dev *d, unsigned nr)
{
	for (unsigned i = 0; i < nr; i++)
		ublk_queue_request_stop(d->queues[i]);
	for (unsigned i = 0; i < nr; i++)
		ublk_queue_join(d->queues[i]);
}

int ublk_dev_start(struct ublk_dev *d)
{
	unsigned nr = d->info.nr_hw_queues, started = 0;
	uint64_t t0 = now_ns();
	int ret = 0;

	if (d->state != UBLK_DEV_CREATED)
		return fail(d, -EINVAL, "device is not in the created state");
	ublk_latch_init(&d->latch, nr);
	for (; started < nr; started++) {
		ret = ublk_queue_start(d->queues[started]);
		if (ret < 0)
			break;
	}
	if (ret < 0) /* threads that never started will not count down */
		for (unsigned i = started; i < nr; i++)
			ublk_latch_count_down(&d->latch, ret);
	ret = ublk_latch_wait(&d->latch);
	ublk_latch_destroy(&d->latch);
	if (ret < 0) {
		stop_queues(d, started);
		return fail(d, ret, "queue setup failed: %s", strerror(-ret));
	}
	/* Every tag is fetched: START_DEV adds the disk and returns when it
	 * is ready for I/O (the partition scan is served by our threads). */
	ret = ublk_ctrl_start_dev(&d->ctrl, d->info.dev_id, getpid());
	if (ret < 0) {
		stop_queues(d, nr);
		return fail(d, ret, "START_DEV refused: %s", strerror(-ret));
	}
	d->start_ns = now_ns() - t0;
	d->state = UBLK_DEV_STARTED;
	return 0;
}

static int stops_in_progress;

int ublk_dev_stop_in_progress(void)
{
	return __atomic_load_n(&stops_in_progress, __ATOMIC_ACQUIRE);
}

/* STOP_DEV waits, uninterruptibly, for every request in flight.  One held
 * by a queue thread that will never run again (a handler stuck in machine
 * code) would keep it waiting forever, and on 7.x keep even a killed
 * process from exiting: so first wait, here where a signal still ends us,
 * until no queue has been inside its backend for long, or the watchdog
 * has called one wedged (within its budget and a second). */
static int wait_unstuck(struct ublk_dev *d)
{
	for (;;) {
		bool busy = false;

		for (unsigned i = 0; i < d->info.nr_hw_queues; i++) {
			if (ublk_queue_wedged(d->queues[i]))
				return fail(d, -EDEADLK, "queue %u is stuck in its backend and cannot "
					    "be interrupted: only ending the process removes the "
					    "device", i);
			busy = busy || ublk_queue_busy_ms(d->queues[i]) > 200;
		}
		if (!busy)
			return 0;
		nanosleep(&(struct timespec){ .tv_nsec = 50000000 }, NULL);
	}
}

int ublk_dev_stop(struct ublk_dev *d)
{
	int ret;

	if (d->state != UBLK_DEV_STARTED)
		return fail(d, -EINVAL, "device is not started");
	ret = wait_unstuck(d);
	if (ret < 0)
		return ret;
	__atomic_add_fetch(&stops_in_progress, 1, __ATOMIC_ACQ_REL);
	ret = ublk_ctrl_stop_dev(&d->ctrl, d->info.dev_id);
	__atomic_sub_fetch(&stops_in_progress, 1, __ATOMIC_ACQ_REL);
	if (ret < 0)
		fail(d, ret, "STOP_DEV failed: %s", strerror(-ret));
	/* The kernel aborts every fetch on STOP_DEV and the threads leave by
	 * themselves; the eventfd covers a failed STOP_DEV. */
	stop_queues(d, d->info.nr_hw_queues);
	d->state = UBLK_DEV_STOPPED;
	return ret < 0 ? ret : 0;
}

int ublk_dev_close(struct ublk_dev *d)
{
	int ret = 0;

	if (d->state == UBLK_DEV_CLOSED)
		return 0;
	if (d->state == UBLK_DEV_STARTED)
		ret = ublk_dev_stop(d);
	if (ret == -EDEADLK) /* its threads still use everything */
		return ret;
	release(d, true);
	return ret;
}
