/* SPDX-License-Identifier: MIT */
/*
 * device_recover.c - a new server for a device whose server died with
 * user recovery on (device.h: ublk_dev_recover).  The kernel kept the
 * device, quiesced: its I/O waits (or fails, with FAIL_IO) until a server
 * has fetched every tag again.  kublk and ublksrv do the same steps.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../base/log.h"
#include "../include/state.h"
#include "device_private.h"

#define RECOVER_WAIT_MS 10000

static const char *state_name(uint16_t state)
{
	switch (state) {
	case UBLK_S_DEV_DEAD: return "DEAD";
	case UBLK_S_DEV_LIVE: return "LIVE";
	case UBLK_S_DEV_QUIESCED: return "QUIESCED";
	case UBLK_S_DEV_FAIL_IO: return "FAIL_IO";
	}
	return "unknown";
}

/* START_USER_RECOVERY answers -EBUSY until the dead server's char device
 * is released and the kernel has quiesced the device: a moment after a
 * SIGKILL, longer while the dying process still exits. */
static int start_recovery(struct ublk_dev *d, uint32_t id)
{
	int ret = -EBUSY;

	for (int waited = 0; waited < RECOVER_WAIT_MS; waited += 20) {
		ret = ublk_ctrl_start_user_recovery(&d->ctrl, id);
		if (ret != -EBUSY)
			break;
		nanosleep(&(struct timespec){ .tv_nsec = 20000000 }, NULL);
	}
	if (ret == -EBUSY) {
		ublk_ctrl_get_dev_info(&d->ctrl, id, &d->info);
		return ublk_dev_fail(d, ret, "device %u is %s, served by pid %d: only a device "
				     "whose server has died can be recovered", id,
				     state_name(d->info.state), d->info.ublksrv_pid);
	}
	if (ret < 0)
		return ublk_dev_fail(d, ret, "START_USER_RECOVERY refused: %s", strerror(-ret));
	return 0;
}

/* The device flags a recovering server can meet and serve: what our queues
 * implement (device_flags.c asks for these), and what the kernel sets on
 * devices without changing how their requests are served: COMP_IN_TASK,
 * PER_IO_DAEMON (6.16+) and BUF_REG_OFF_DAEMON (6.17+) on every one (they
 * allow more threads; one per queue still is one), SAFE_STOP_DEV (7.0+);
 * UPDATE_SIZE allows a command we never send, NO_AUTO_PART_SCAN changes
 * only START_DEV, which a recovery does not send; IO_DESC_SIZE, the
 * descriptors' stride, the queues take from GET_DEV_INFO.  Any other
 * (NEED_GET_DATA, UNPRIVILEGED_DEV, ZONED, INTEGRITY, SHMEM_ZC, a bit this
 * header does not know) brings requests or commands in a form our queues
 * do not speak: such a device (another server's) is not ours to serve. */
static const uint64_t served_flags =
	UBLK_F_SUPPORT_ZERO_COPY | UBLK_F_URING_CMD_COMP_IN_TASK | UBLK_F_USER_RECOVERY |
	UBLK_F_USER_RECOVERY_REISSUE | UBLK_F_CMD_IOCTL_ENCODE | UBLK_F_USER_COPY |
	UBLK_F_USER_RECOVERY_FAIL_IO | UBLK_F_UPDATE_SIZE | UBLK_F_AUTO_BUF_REG | UBLK_F_QUIESCE |
	UBLK_F_PER_IO_DAEMON | UBLK_F_BUF_REG_OFF_DAEMON | UBLK_F_BATCH_IO | UBLK_F_SAFE_STOP_DEV |
	UBLK_F_NO_AUTO_PART_SCAN | UBLK_F_IO_DESC_SIZE;

/* "UBLK_F_NEED_GET_DATA" for the lowest bit of flags, or "flag bit 20". */
static const char *flag_name(uint64_t flags, char *buf, size_t len)
{
	unsigned bit = (unsigned)__builtin_ctzll(flags);
	const char *name = ublk_feature_name(bit);
	size_t n;

	if (!name) {
		snprintf(buf, len, "flag bit %u", bit);
		return buf;
	}
	n = (size_t)snprintf(buf, len, "UBLK_F_%s", name);
	for (size_t k = 7; k < n && k < len; k++)
		buf[k] = (char)toupper((unsigned char)buf[k]);
	return buf;
}

int ublk_dev_check_recovered(struct ublk_dev *d, uint32_t id)
{
	const struct ublksrv_ctrl_dev_info *i = &d->info;
	uint64_t sectors = d->params.basic.dev_sectors;
	bool read_only = d->params.basic.attrs & UBLK_ATTR_READ_ONLY;
	char name[32];

	/* what the queues are made from: the kernel's own limits */
	if (i->nr_hw_queues < 1 || i->nr_hw_queues > UBLK_MAX_NR_QUEUES)
		return ublk_dev_fail(d, -EINVAL, "device %u reports %u queues: expected 1..%u",
				     id, i->nr_hw_queues, UBLK_MAX_NR_QUEUES);
	if (i->queue_depth < 1 || i->queue_depth > UBLK_MAX_QUEUE_DEPTH)
		return ublk_dev_fail(d, -EINVAL, "device %u reports depth %u: expected 1..%u",
				     id, i->queue_depth, UBLK_MAX_QUEUE_DEPTH);
	if (i->max_io_buf_bytes < 4096 || i->max_io_buf_bytes > (1u << UBLK_IO_BUF_BITS) ||
	    i->max_io_buf_bytes % 512)
		return ublk_dev_fail(d, -EINVAL, "device %u reports max_io_buf_bytes %u: "
				     "expected a multiple of 512 in 4096..%u", id,
				     i->max_io_buf_bytes, (1u << UBLK_IO_BUF_BITS));
	/* the queues map the descriptor arrays at this stride (the kernel's
	 * own limits, ADD_DEV's check) */
	if ((i->flags & UBLK_F_IO_DESC_SIZE) &&
	    (i->io_desc_size < sizeof(struct ublksrv_io_desc) || i->io_desc_size > 256 ||
	     i->io_desc_size % 8))
		return ublk_dev_fail(d, -EINVAL, "device %u reports io_desc_size %u: expected a "
				     "multiple of 8 in 24..256", id, i->io_desc_size);
	if (!(i->flags & UBLK_F_USER_RECOVERY))
		return ublk_dev_fail(d, -EINVAL, "device %u was added with recovery = false: it "
				     "cannot be recovered, only removed (ublk-lua del -n %u)",
				     id, id);
	if (i->state == UBLK_S_DEV_DEAD)
		return ublk_dev_fail(d, -EINVAL, "device %u is DEAD: it cannot be recovered, "
				     "only removed (ublk-lua del -n %u)", id, id);
	/* compared in sectors: a byte count could wrap */
	if (sectors != d->backend.size >> 9 || d->backend.size % 512)
		return ublk_dev_fail(d, -EINVAL, "device %u has %llu sectors, the backend %llu "
				     "bytes: a recovering server must serve the same size", id,
				     (unsigned long long)sectors,
				     (unsigned long long)d->backend.size);
	if (read_only != d->read_only)
		return ublk_dev_fail(d, -EINVAL, "device %u is %s, the recovering server's %s: it "
				     "must serve it as it was (%s)", id,
				     read_only ? "read-only" : "writable",
				     read_only ? "is not" : "has read_only = true",
				     read_only ? "set read_only = true" : "leave read_only unset");
	if (i->flags & ~served_flags)
		return ublk_dev_fail(d, -EINVAL, "device %u has %s, which ublk-lua does not "
				     "implement: only a server that does can recover it", id,
				     flag_name(i->flags & ~served_flags, name, sizeof(name)));
	if ((d->info.flags & UBLK_F_USER_COPY) && !(d->backend.caps & UBLK_CAN_USER_COPY))
		return ublk_dev_fail(d, -EINVAL, "device %u moves data by user copy, which "
				     "backend '%s' cannot", id, d->backend.ops->name);
	if (ublk_dev_zero_copy(d->info.flags) != UBLK_ZC_NONE &&
	    !(d->backend.caps & UBLK_CAN_ZERO_COPY))
		return ublk_dev_fail(d, -EINVAL, "device %u moves data by zero copy, which "
				     "backend '%s' cannot", id, d->backend.ops->name);
	return 0;
}

static int check_device(struct ublk_dev *d, uint32_t id)
{
	int ret = ublk_ctrl_get_dev_info(&d->ctrl, id, &d->info);

	if (ret == -ENODEV || ret == -ENOENT)
		return ublk_dev_fail(d, -ENODEV, "there is no ublk device %u", id);
	if (ret < 0)
		return ublk_dev_fail(d, ret, "GET_DEV_INFO of device %u: %s", id, strerror(-ret));
	d->ctrl.ioctl_encode = (d->info.flags & UBLK_F_CMD_IOCTL_ENCODE) != 0;
	ret = ublk_ctrl_get_params(&d->ctrl, id, &d->params);
	if (ret < 0)
		return ublk_dev_fail(d, ret, "GET_PARAMS of device %u: %s", id, strerror(-ret));
	return ublk_dev_check_recovered(d, id);
}

/* One server at a time recovers a device: a second one would meet the
 * first's START_USER_RECOVERY or open char device and fail with a bare
 * EBUSY.  A lock on STATE_DIR/devN.recovering, held until the recovery
 * has ended (or the process has), tells it who is at it.  A POSIX lock,
 * so that the loser can name the holder's pid. */
static int recover_lock(struct ublk_dev *d, uint32_t id)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "%s/dev%u.recovering", ublk_state_dir(), id);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return 0; /* no lock to be had: the kernel's EBUSY is all we have */
	if (fcntl(fd, F_SETLK, &fl) == 0) {
		d->recover_lock = fd;
		return 0;
	}
	if (errno != EAGAIN && errno != EACCES) {
		close(fd);
		return 0;
	}
	fl.l_type = F_WRLCK;
	fl.l_pid = 0;
	fcntl(fd, F_GETLK, &fl);
	close(fd);
	if (fl.l_type != F_UNLCK && fl.l_pid > 0)
		return ublk_dev_fail(d, -EBUSY, "device %u: another server (pid %d) is recovering "
				     "it: wait for it to finish (ublk-lua list -n %u)", id,
				     (int)fl.l_pid, id);
	return ublk_dev_fail(d, -EBUSY, "device %u: another server is recovering it: wait for "
			     "it to finish (ublk-lua list -n %u)", id, id);
}

void ublk_dev_recover_unlock(struct ublk_dev *d)
{
	if (d->recover_lock >= 0)
		close(d->recover_lock); /* closing it releases the lock */
	d->recover_lock = -1;
}

int ublk_dev_prepare_recovery(struct ublk_dev *d, uint32_t id,
			      const struct ublk_backend_ops *ops,
			      const struct ublk_backend_conf *bconf)
{
	int ret;

	/* recovering: from here on nothing deletes the device or its store */
	ret = ublk_dev_init_backend(d, true, ops, bconf);
	if (ret < 0)
		return ret;
	ret = recover_lock(d, id);
	if (ret >= 0)
		ret = ublk_dev_open_ctrl(d);
	if (ret >= 0)
		ret = check_device(d, id);
	if (ret < 0) {
		ublk_dev_release(d, false);
		return ret;
	}
	d->state = UBLK_DEV_PREPARED;
	return 0;
}

int ublk_dev_resume_recovery(struct ublk_dev *d, const struct ublk_dev_conf *conf)
{
	int ret;

	if (d->state != UBLK_DEV_PREPARED)
		return ublk_dev_fail(d, -EINVAL, "device is not prepared for a recovery");
	ret = start_recovery(d, d->info.dev_id);
	if (ret >= 0)
		ret = ublk_dev_open_cdev(d);
	if (ret >= 0)
		ret = ublk_dev_alloc_queues(d, conf);
	if (ret < 0) {
		ublk_dev_release(d, false);
		return ret;
	}
	d->state = UBLK_DEV_CREATED; /* registered once started (device.c) */
	return 0;
}

int ublk_dev_recover(struct ublk_dev *d, uint32_t id, const struct ublk_dev_conf *conf,
		     const struct ublk_backend_ops *ops,
		     const struct ublk_backend_conf *bconf)
{
	int ret = ublk_dev_prepare_recovery(d, id, ops, bconf);

	return ret < 0 ? ret : ublk_dev_resume_recovery(d, conf);
}
