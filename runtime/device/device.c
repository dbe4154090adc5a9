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
#include <unistd.h>

#include "../base/clock.h"
#include "../base/log.h"
#include "device_private.h"

int ublk_dev_fail(struct ublk_dev *d, int ret, const char *fmt, ...)
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

int ublk_dev_open_ctrl(struct ublk_dev *d)
{
	int ret = ublk_ctrl_open(&d->ctrl);

	if (ret == -ENOENT)
		return ublk_dev_fail(d, ret, UBLK_NO_DRIVER);
	if (ret == -EACCES || ret == -EPERM)
		return ublk_dev_fail(d, ret, "cannot open %s: %s (run as root, or install "
			    "ublk-lua's udev rule for devices of your own: docs/unprivileged.md)",
			    UBLK_CTRL_DEV, strerror(-ret));
	if (ret < 0)
		return ublk_dev_fail(d, ret, "cannot open %s: %s", UBLK_CTRL_DEV, strerror(-ret));
	ublk_ctrl_get_features(&d->ctrl, &d->features);
	/* what the kernel would refuse or drop for a user's device is, for
	 * this device, what the kernel lacks (ctrl.h) */
	if (d->ctrl.unprivileged)
		d->features &= ~UBLK_ROOT_ONLY_FLAGS;
	return 0;
}

static int add_dev(struct ublk_dev *d, const struct ublk_dev_conf *conf)
{
	uint64_t want = ublk_dev_wanted_flags(d, conf);
	struct ublksrv_ctrl_dev_info *info = &d->info;
	int ret;

	memset(info, 0, sizeof(*info));
	info->nr_hw_queues = (uint16_t)conf->queues;
	info->queue_depth = (uint16_t)conf->depth;
	info->max_io_buf_bytes = conf->max_io;
	info->dev_id = conf->id < 0 ? UINT32_MAX : (uint32_t)conf->id;
	info->ublksrv_pid = getpid();
	info->flags = want;
	info->io_desc_size = (uint16_t)conf->io_desc_size;
	ret = ublk_ctrl_add_dev(&d->ctrl, info);
	if (ret == -EEXIST)
		return ublk_dev_fail(d, ret, "device id %d is already in use", conf->id);
	if (ret < 0)
		return ublk_dev_fail(d, ret, "ADD_DEV refused: %s", strerror(-ret));
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
			p.discard.max_discard_sectors = UBLK_MAX_REQ_BYTES >> 9;
		if (caps & UBLK_CAN_WRITE_ZEROES)
			p.discard.max_write_zeroes_sectors = UBLK_MAX_REQ_BYTES >> 9;
	}
	/* zero copy hands the request's own pages to the backend's I/O:
	 * they must suit it (O_DIRECT), so the block layer is told */
	if (ublk_dev_zero_copy(d->info.flags) != UBLK_ZC_NONE && d->backend.dma_align > 1) {
		p.types |= UBLK_PARAM_TYPE_DMA_ALIGN;
		p.dma.alignment = d->backend.dma_align - 1;
	}
	/* the user's, where stricter (both are powers of two) */
	if (conf->dma_align > p.dma.alignment + 1) {
		p.types |= UBLK_PARAM_TYPE_DMA_ALIGN;
		p.dma.alignment = conf->dma_align - 1;
	}
	/* params.lua checked them against the kernel's rules; what is not
	 * set is the block layer's widest: no boundary below 4 GiB, segments
	 * up to it, as many as a request has */
	if (conf->max_segments || conf->max_segment_size || conf->segment_boundary) {
		uint64_t boundary = conf->segment_boundary ? conf->segment_boundary : 1ull << 32;

		p.types |= UBLK_PARAM_TYPE_SEGMENT;
		p.seg.seg_boundary_mask = boundary - 1;
		p.seg.max_segment_size = (uint32_t)(conf->max_segment_size ? conf->max_segment_size
					 : (boundary > UINT32_MAX ? UINT32_MAX : boundary));
		p.seg.max_segments = (uint16_t)(conf->max_segments ? conf->max_segments : 65535);
	}
	ret = ublk_ctrl_set_params(&d->ctrl, d->info.dev_id, &p);
	if (ret < 0)
		return ublk_dev_fail(d, ret, "SET_PARAMS refused: %s", strerror(-ret));
	ret = ublk_ctrl_get_params(&d->ctrl, d->info.dev_id, &d->params);
	if (ret < 0)
		return ublk_dev_fail(d, ret, "GET_PARAMS failed: %s", strerror(-ret));
	if (d->params.basic.dev_sectors != p.basic.dev_sectors ||
	    d->params.basic.max_sectors != p.basic.max_sectors ||
	    (d->params.types & p.types) != p.types)
		return ublk_dev_fail(d, -EIO, "the kernel did not keep the parameters we set");
	return 0;
}

static void free_queues(struct ublk_dev *d)
{
	if (!d->queues)
		return;
	for (unsigned i = 0; i < d->nr_queues; i++)
		ublk_queue_free(d->queues[i]);
	free(d->queues);
	d->queues = NULL;
	d->nr_queues = 0;
}

int ublk_dev_alloc_queues(struct ublk_dev *d, const struct ublk_dev_conf *conf)
{
	unsigned threads = conf->threads > 1 ? conf->threads : 1;
	unsigned nr = d->info.nr_hw_queues * threads;

	d->queues = calloc(nr, sizeof(*d->queues));
	d->stats = ublk_stats_map(d->info.dev_id, nr, threads);
	if (!d->queues || !d->stats)
		return ublk_dev_fail(d, -ENOMEM, "out of memory");
	d->threads = threads;
	for (unsigned i = 0; i < nr; i++) {
		struct ublk_queue_conf c = {
			.q_id = (uint16_t)(i / threads),
			.index = (uint16_t)i,
			.tag_first = (uint16_t)(i % threads),
			.tag_step = (uint16_t)threads,
			.depth = d->info.queue_depth,
			.dev_id = d->info.dev_id,
			.max_io = d->info.max_io_buf_bytes,
			.cdev_fd = d->cdev_fd,
			.ioctl_encode = d->ctrl.ioctl_encode,
			.user_copy = (d->info.flags & UBLK_F_USER_COPY) != 0,
			.zero_copy = ublk_dev_zero_copy(d->info.flags),
			.auto_fallback = d->backend.zc_only == UBLK_ZC_AUTO_REG_FALLBACK,
			.batch = (d->info.flags & UBLK_F_BATCH_IO) != 0,
			/* without the flag the field was padding before 7.3:
			 * 0, the queue's 24 */
			.desc_size = d->info.flags & UBLK_F_IO_DESC_SIZE ? d->info.io_desc_size : 0,
			.shmem = d->shmem,
			.nr_shmem = d->nr_shmem,
			.pin = conf->pin,
			.poll_us = conf->poll_us,
			.latency = conf->latency,
			.backend = &d->backend,
			.latch = &d->latch,
			.pin_slower = &d->pin_slower,
			.stats = ublk_stats_queue(d->stats, i),
		};
		int ret = ublk_ctrl_get_queue_affinity(&d->ctrl, d->info.dev_id, c.q_id,
						       &c.cpus);

		if (ret < 0 && i % threads == 0) /* unpinned threads still work; say so once */
			ublk_warn("dev %u queue %u: no CPU affinity: %s",
				  d->info.dev_id, c.q_id, strerror(-ret));
		d->queues[i] = ublk_queue_new(&c);
		if (!d->queues[i])
			return ublk_dev_fail(d, -ENOMEM, "out of memory");
		d->nr_queues = i + 1;
	}
	return 0;
}

/* Frees what exists; d->err is left as it is, for the caller's message.
 * `added`: delete the device too.  A store made for a device that never
 * came to be goes with it; a recovering server's never does: the data
 * outlives a failed recovery. */
void ublk_dev_release(struct ublk_dev *d, bool added)
{
	free_queues(d);
	ublk_stats_unmap(d->stats);
	d->stats = NULL;
	if (d->cdev_fd >= 0)
		close(d->cdev_fd);
	d->cdev_fd = -1;
	/* deletion completes when the char device is released: close it first */
	if (added) {
		/* its own store goes with it, whatever its record says (another
		 * process trusts a record only as far as device_owner.c checks
		 * it; this one made or recovered the store) */
		if (ublk_dev_delete(&d->ctrl, d->info.dev_id) >= 0 && d->backend.ops &&
		    d->backend.store[0])
			unlink(d->backend.store);
	} else if (!d->recovering && d->backend.ops) {
		if (d->backend.store[0])
			unlink(d->backend.store);
		if (d->backend.made[0])
			unlink(d->backend.made);
	}
	ublk_dev_unmap_shmem(d); /* the kernel let go of its pins with the device */
	ublk_ctrl_close(&d->ctrl);
	ublk_dev_recover_unlock(d);
	if (d->backend.ops)
		d->backend.ops->destroy(&d->backend);
	d->backend.ops = NULL;
	d->state = UBLK_DEV_CLOSED;
}

int ublk_dev_init_backend(struct ublk_dev *d, bool recovering,
			  const struct ublk_backend_ops *ops,
			  const struct ublk_backend_conf *bconf)
{
	int ret;

	memset(d, 0, sizeof(*d));
	d->cdev_fd = -1;
	d->ctrl.fd = -1;
	d->recover_lock = -1;
	d->state = UBLK_DEV_CLOSED;
	d->recovering = recovering;
	d->read_only = bconf->read_only;
	d->backend.ops = ops;
	ret = ops->create(&d->backend, bconf);
	if (ret < 0) {
		d->backend.ops = NULL;
		return ublk_dev_fail(d, ret, "backend '%s': %s", ops->name,
				     d->backend.err[0] ? d->backend.err : strerror(-ret));
	}
	return 0;
}

int ublk_dev_open_cdev(struct ublk_dev *d)
{
	char cdev[32];

	snprintf(cdev, sizeof(cdev), "/dev/ublkc%u", d->info.dev_id);
	/* without it no command reaches the device either: it stays */
	if (d->ctrl.unprivileged) {
		int ret = ublk_dev_wait_node(d, cdev, "; the device stays until root deletes it");

		if (ret < 0)
			return ret;
	}
	d->cdev_fd = open(cdev, O_RDWR | O_CLOEXEC);
	if (d->cdev_fd < 0)
		return ublk_dev_fail(d, -errno, "cannot open %s: %s", cdev, strerror(errno));
	return 0;
}

int ublk_dev_create(struct ublk_dev *d, const struct ublk_dev_conf *conf,
		    const struct ublk_backend_ops *ops,
		    const struct ublk_backend_conf *bconf)
{
	struct ublk_dev_conf lowered;
	uint64_t t0;
	int ret;

	ret = ublk_dev_init_backend(d, false, ops, bconf);
	if (ret < 0)
		return ret;
	/* a backend whose queues cannot be independent asks for fewer */
	d->queues_asked = conf->queues;
	if (d->backend.max_queues && conf->queues > d->backend.max_queues) {
		d->queues_by_backend = true;
		lowered = *conf;
		lowered.queues = d->backend.max_queues;
		conf = &lowered;
	}
	if (!d->backend.size || d->backend.size % conf->block_size) {
		ublk_dev_release(d, false);
		return ublk_dev_fail(d, -EINVAL, "size %llu is not a positive multiple of block_size %u",
			    (unsigned long long)d->backend.size, conf->block_size);
	}
	ret = ublk_dev_open_ctrl(d);
	if (ret < 0) {
		ublk_dev_release(d, false);
		return ret;
	}
	ret = ublk_dev_check_kernel(d, conf);
	if (ret >= 0)
		ret = ublk_dev_map_shmem(d, conf);
	if (ret < 0) {
		ublk_dev_release(d, false);
		return ret;
	}
	ublk_dev_remove_orphans(&d->ctrl);
	t0 = ublk_now_ns();
	ret = add_dev(d, conf);
	if (ret < 0) {
		ublk_dev_release(d, false); /* the kernel made no device */
		return ret;
	}
	ublk_dev_register(d->info.dev_id, d->backend.store, false);
	ret = ublk_dev_check_granted(d, conf);
	if (ret >= 0)
		ret = ublk_dev_open_cdev(d);
	if (ret >= 0)
		ret = set_params(d, conf);
	if (ret >= 0)
		ret = ublk_dev_register_shmem(d, conf);
	if (ret >= 0)
		ret = ublk_dev_alloc_queues(d, conf);
	if (ret < 0) {
		ublk_dev_release(d, true);
		return ret;
	}
	d->create_ns = ublk_now_ns() - t0;
	d->state = UBLK_DEV_CREATED;
	return 0;
}

void ublk_dev_stop_queues(struct ublk_dev *d, unsigned nr)
{
	for (unsigned i = 0; i < nr; i++)
		ublk_queue_request_stop(d->queues[i]);
	for (unsigned i = 0; i < nr; i++)
		ublk_queue_join(d->queues[i]);
}

int ublk_dev_start(struct ublk_dev *d)
{
	unsigned nr = d->nr_queues, started = 0;
	uint64_t t0 = ublk_now_ns();
	int ret = 0;

	if (d->state != UBLK_DEV_CREATED)
		return ublk_dev_fail(d, -EINVAL, "device is not in the created state");
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
		ublk_dev_stop_queues(d, started);
		return ublk_dev_fail(d, ret, "queue setup failed: %s", strerror(-ret));
	}
	/* Every tag is fetched: START_DEV adds the disk and returns when it
	 * is ready for I/O (the partition scan is served by our threads);
	 * END_USER_RECOVERY lets the I/O that waited for us through. */
	if (d->recovering)
		ret = ublk_ctrl_end_user_recovery(&d->ctrl, d->info.dev_id, getpid());
	else
		ret = ublk_ctrl_start_dev(&d->ctrl, d->info.dev_id, getpid());
	if (ret < 0) {
		ublk_dev_stop_queues(d, nr);
		return ublk_dev_fail(d, ret, "%s refused: %s",
			    d->recovering ? "END_USER_RECOVERY" : "START_DEV", strerror(-ret));
	}
	/* a user's disk is usable once udev has given it to the user: the
	 * ready line promises that; the server goes on either way */
	if (d->ctrl.unprivileged && !d->recovering) {
		char disk[32];

		snprintf(disk, sizeof(disk), "/dev/ublkb%u", d->info.dev_id);
		if (ublk_dev_wait_node(d, disk, "") < 0) {
			ublk_warn("dev %u: %s", d->info.dev_id, d->err);
			d->err[0] = '\0';
		}
	}
	/* recovered: ours from now on (a recovery that failed before left the
	 * device and its record to the next one) */
	if (d->recovering) {
		ublk_dev_register(d->info.dev_id, d->backend.store, true);
		ublk_dev_recover_unlock(d);
	}
	d->start_ns = ublk_now_ns() - t0;
	d->state = UBLK_DEV_STARTED;
	return 0;
}
