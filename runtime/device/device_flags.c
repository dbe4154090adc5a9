/* SPDX-License-Identifier: MIT */
/*
 * device_flags.c - which UBLK_F_* a device asks ADD_DEV for (what the
 * kernel has, the backend can use and the user asked for), what is
 * refused before asking, and the check of what the kernel granted.
 */
#include <errno.h>

#include "../base/log.h"
#include "device_private.h"

/* The zero-copy flag a backend that can gets: the mode it asked for, or
 * the best this kernel has (auto registration saves two commands per
 * request); 0 when none. */
static uint64_t zero_copy_flag(const struct ublk_dev *d)
{
	const struct ublk_backend *b = &d->backend;

	if (!(b->caps & UBLK_CAN_ZERO_COPY))
		return 0;
	if (b->zc_only != UBLK_ZC_REGISTER && (d->features & UBLK_F_AUTO_BUF_REG))
		return UBLK_F_AUTO_BUF_REG;
	if (b->zc_only != UBLK_ZC_AUTO_REG && b->zc_only != UBLK_ZC_AUTO_REG_FALLBACK &&
	    (d->features & UBLK_F_SUPPORT_ZERO_COPY))
		return UBLK_F_SUPPORT_ZERO_COPY;
	return 0;
}

enum ublk_zc ublk_dev_zero_copy(uint64_t flags)
{
	if (flags & UBLK_F_AUTO_BUF_REG)
		return UBLK_ZC_AUTO_REG;
	return flags & UBLK_F_SUPPORT_ZERO_COPY ? UBLK_ZC_REGISTER : UBLK_ZC_NONE;
}

/* Why d->features lacks `flag`: a user's device cannot have it (ctrl.h),
 * or the kernel has not got it. */
static const char *lacks(const struct ublk_dev *d, uint64_t flag)
{
	return d->ctrl.unprivileged && (flag & UBLK_ROOT_ONLY_FLAGS)
		? "which a device made without root (CAP_SYS_ADMIN) cannot have"
		: "which this kernel lacks";
}

/* The flags we ask ADD_DEV for: what the kernel has and we can use, and
 * the recovery the user asked for (checked against the kernel first). */
uint64_t ublk_dev_wanted_flags(const struct ublk_dev *d, const struct ublk_dev_conf *conf)
{
	uint64_t want = UBLK_F_CMD_IOCTL_ENCODE;

	if (d->backend.caps & UBLK_CAN_USER_COPY)
		want |= UBLK_F_USER_COPY;
	want |= zero_copy_flag(d);
	if (conf->batch)
		want |= UBLK_F_BATCH_IO;
	if (conf->need_get_data)
		want |= UBLK_F_NEED_GET_DATA;
	if (conf->io_desc_size)
		want |= UBLK_F_IO_DESC_SIZE;
	if (conf->nr_shmem_zc)
		want |= UBLK_F_SHMEM_ZC;
	if (conf->recovery) /* a clean hand-over to a new server (reload) */
		want |= UBLK_F_QUIESCE;
	if (conf->no_auto_part_scan)
		want |= UBLK_F_NO_AUTO_PART_SCAN;
	if (d->backend.ops->resize) /* dev:resize, where the kernel has it */
		want |= UBLK_F_UPDATE_SIZE;
	if (d->ctrl.unprivileged) /* the only kind a user may make */
		want |= UBLK_F_UNPRIVILEGED_DEV;
	return (d->features & want) | conf->recovery;
}

/* `what` works only where the kernel copies a request's data into the
 * tag's buffer: refused when the device will copy otherwise.  What it
 * will ask for, not what the backend could do: a zero copy this kernel
 * lacks falls back to the tag's buffer. */
static int tag_buffer_only(struct ublk_dev *d, const struct ublk_dev_conf *conf,
			   const char *what)
{
	if (!(ublk_dev_wanted_flags(d, conf) & (UBLK_F_USER_COPY | UBLK_F_SUPPORT_ZERO_COPY |
						UBLK_F_AUTO_BUF_REG)))
		return 0;
	return ublk_dev_fail(d, -EINVAL, "%s needs the tag's-buffer copy mode, and the %s "
			     "backend copies by user copy or zero copy here: set copy = \"buffer\"",
			     what, d->backend.ops->name);
}

/* What the user asked for that this kernel lacks (recovery modes, a zero-copy
 * mode) is refused before ADD_DEV, naming it. */
int ublk_dev_check_kernel(struct ublk_dev *d, const struct ublk_dev_conf *conf)
{
	uint64_t missing = conf->recovery & ~d->features;

	if (d->ctrl.unprivileged && !(d->features & UBLK_F_UNPRIVILEGED_DEV))
		return ublk_dev_fail(d, -EPERM, "a device made without root (CAP_SYS_ADMIN) needs "
			    "UBLK_F_UNPRIVILEGED_DEV (Linux 6.3+), which this kernel lacks: run as root");
	if (conf->batch && !(d->features & UBLK_F_BATCH_IO))
		return ublk_dev_fail(d, -ENOTSUP, "batch = true needs UBLK_F_BATCH_IO (Linux 7.0+), "
			    "which this kernel lacks: leave batch unset");

	/* The kernel drops NEED_GET_DATA beside user copy, zero copy and
	 * batch I/O (ublk_drv.c: none of them has a write's data copied into
	 * a buffer the server names), so such a device would not get it. */
	if (conf->need_get_data) {
		if (!(d->features & UBLK_F_NEED_GET_DATA))
			return ublk_dev_fail(d, -ENOTSUP, "need_get_data = true needs "
				    "UBLK_F_NEED_GET_DATA (Linux 6.0+), which this kernel lacks");
		if (conf->batch)
			return ublk_dev_fail(d, -EINVAL, "need_get_data = true cannot go with "
				    "batch = true: batch I/O has no NEED_GET_DATA command");
		if (tag_buffer_only(d, conf, "need_get_data = true") < 0)
			return -EINVAL;
	}

	if (conf->threads > 1) {
		if (!(d->features & UBLK_F_PER_IO_DAEMON))
			return ublk_dev_fail(d, -ENOTSUP, "threads = %u needs UBLK_F_PER_IO_DAEMON "
				    "(Linux 6.16+), which this kernel lacks: one thread a queue "
				    "here; more queues (up to one a CPU) spread the work too",
				    conf->threads);
		if (conf->batch)
			return ublk_dev_fail(d, -EINVAL, "threads = %u cannot go with batch = true: "
				    "a batch is a queue's, fetched by one thread", conf->threads);
		/* each thread is a queue to the backend (ublk_queue_id) */
		if (conf->queues * conf->threads > UBLK_MAX_NR_QUEUES)
			return ublk_dev_fail(d, -EINVAL, "threads = %u x queues = %u is more than "
				    "%u queue threads", conf->threads, conf->queues,
				    UBLK_MAX_NR_QUEUES);
		if (d->backend.max_queues && conf->queues * conf->threads > d->backend.max_queues)
			return ublk_dev_fail(d, -EINVAL, "threads = %u x queues = %u: backend %s "
				    "serves at most %u queue threads (each needs its own "
				    "connection): lower threads or queues", conf->threads,
				    conf->queues, d->backend.ops->name, d->backend.max_queues);
	}
	if (conf->nr_shmem_zc) {
		if (!(d->features & UBLK_F_SHMEM_ZC))
			return ublk_dev_fail(d, -ENOTSUP, "shmem_zc needs UBLK_F_SHMEM_ZC (Linux "
				    "7.1+), which this kernel lacks: leave it unset");
		/* the backend reads a request's data at io->buf, which is the
		 * file's page only when the kernel would otherwise have copied
		 * it into the tag's buffer */
		if (tag_buffer_only(d, conf, "shmem_zc") < 0)
			return -EINVAL;
	}
	if (conf->io_desc_size && !(d->features & UBLK_F_IO_DESC_SIZE))
		return ublk_dev_fail(d, -ENOTSUP, "io_desc_size = %u needs UBLK_F_IO_DESC_SIZE "
			    "(Linux 7.3+), which this kernel lacks: leave it unset",
			    conf->io_desc_size);
	if (conf->no_auto_part_scan && !(d->features & UBLK_F_NO_AUTO_PART_SCAN))
		return ublk_dev_fail(d, -ENOTSUP, "no_auto_part_scan = true needs "
			    "UBLK_F_NO_AUTO_PART_SCAN (Linux 7.0+), which this kernel lacks: leave "
			    "it unset");
	/* DMA_ALIGN and SEGMENT came with working zero copy (6.15), which an
	 * older kernel does not report; one before would drop them unread */
	if ((conf->dma_align || conf->max_segments || conf->max_segment_size ||
	     conf->segment_boundary) && !(d->features & UBLK_F_SUPPORT_ZERO_COPY))
		return ublk_dev_fail(d, -ENOTSUP, "%s needs UBLK_PARAM_TYPE_%s (Linux 6.15+), "
			    "which this kernel lacks: leave it unset",
			    conf->dma_align ? "dma_align" : conf->max_segments ? "max_segments" :
			    conf->max_segment_size ? "max_segment_size" : "segment_boundary",
			    conf->dma_align ? "DMA_ALIGN" : "SEGMENT");

	/* batch commands name their slots in the commit elements and ask for
	 * the fallback per batch: the forced fallback would not be */
	if (conf->batch && d->backend.zc_only == UBLK_ZC_AUTO_REG_FALLBACK)
		return ublk_dev_fail(d, -EINVAL, "copy = \"auto_reg_fallback\" cannot go with "
			    "batch = true");
	if (d->backend.zc_only != UBLK_ZC_NONE && !zero_copy_flag(d)) {
		bool reg = d->backend.zc_only == UBLK_ZC_REGISTER;

		return ublk_dev_fail(d, -ENOTSUP, "copy = \"%s\" needs %s (Linux %s), %s: "
			    "leave copy unset for the best it has",
			    reg ? "register" : d->backend.zc_only == UBLK_ZC_AUTO_REG ? "auto_reg"
									: "auto_reg_fallback",
			    reg ? "UBLK_F_SUPPORT_ZERO_COPY" : "UBLK_F_AUTO_BUF_REG",
			    reg ? "6.15+" : "6.16+", lacks(d, UBLK_F_SUPPORT_ZERO_COPY));
	}

	/* User copy without zero copy beside it is a mode the user named
	 * (copy = "inline" or "ring"); beside it, the runtime's own pick,
	 * which falls back to the tag's buffer. */
	if ((d->backend.caps & (UBLK_CAN_USER_COPY | UBLK_CAN_ZERO_COPY)) == UBLK_CAN_USER_COPY &&
	    !(d->features & UBLK_F_USER_COPY))
		return ublk_dev_fail(d, -ENOTSUP, "copy by user copy (\"inline\", \"ring\") needs "
			    "UBLK_F_USER_COPY (Linux 6.5+), %s: leave copy unset for the best "
			    "it has", lacks(d, UBLK_F_USER_COPY));

	if (!missing)
		return 0;
	if (missing & UBLK_F_USER_RECOVERY_FAIL_IO)
		return ublk_dev_fail(d, -ENOTSUP, "recovery = \"fail\" needs USER_RECOVERY_FAIL_IO "
			    "(Linux 6.13+), %s: use %s", lacks(d, missing),
			    d->ctrl.unprivileged ? "recovery = false" : "\"reissue\", \"queue\" or false");
	return ublk_dev_fail(d, -ENOTSUP, "recovery needs USER_RECOVERY%s, %s: use recovery = "
		    "false", missing & UBLK_F_USER_RECOVERY_REISSUE ? "_REISSUE" : "",
		    lacks(d, missing));
}

/* The kernel drops flags it does not know: check that it gave us what we
 * asked for.  It also clamps queues to its CPU count (nr_cpu_ids): that
 * is taken, the queues are made from what it granted, and dev:info()
 * says what was asked (queues_asked). */
int ublk_dev_check_granted(struct ublk_dev *d, const struct ublk_dev_conf *conf)
{
	uint64_t want = ublk_dev_wanted_flags(d, conf);
	struct ublksrv_ctrl_dev_info *info = &d->info;

	ublk_dbg("dev %u: asked flags %#llx, kernel granted %#llx", info->dev_id,
		 (unsigned long long)want, (unsigned long long)info->flags);
	if ((info->flags & want) != want)
		return ublk_dev_fail(d, -ENOTSUP, "the kernel refused device flags %#llx",
			    (unsigned long long)(want & ~info->flags));
	if (info->nr_hw_queues < 1 || info->nr_hw_queues > conf->queues)
		return ublk_dev_fail(d, -EINVAL, "queues = %u, but the kernel made %u",
			    conf->queues, info->nr_hw_queues);
	if (info->nr_hw_queues < conf->queues)
		ublk_dbg("dev %u: queues = %u asked, the kernel allows %u (one per CPU)",
			  info->dev_id, conf->queues, info->nr_hw_queues);
	if (info->queue_depth != conf->depth)
		return ublk_dev_fail(d, -EINVAL, "depth = %u, but the kernel set %u", conf->depth,
			    info->queue_depth);
	if (conf->io_desc_size && info->io_desc_size != conf->io_desc_size)
		return ublk_dev_fail(d, -EINVAL, "io_desc_size = %u, but the kernel set %u",
			    conf->io_desc_size, info->io_desc_size);
	if (info->max_io_buf_bytes < conf->max_io)
		return ublk_dev_fail(d, -EINVAL, "max_io = %u, but the kernel allows %u",
			    conf->max_io, info->max_io_buf_bytes);
	d->ctrl.ioctl_encode = (info->flags & UBLK_F_CMD_IOCTL_ENCODE) != 0;
	return 0;
}
