/* SPDX-License-Identifier: MIT */
/*
 * ctrl.h - the ublk control path: commands to /dev/ublk-control carried as
 * io_uring URING_CMDs in 128-byte SQEs.  Every call returns >= 0 or -errno.
 */
#ifndef UBLK_CTRL_H
#define UBLK_CTRL_H

#include <stdbool.h>
#include <stdint.h>
#include <liburing.h>
#include <sched.h>

#include "../include/ublk_uapi.h"

#define UBLK_CTRL_DEV "/dev/ublk-control"
/* What every caller says when opening UBLK_CTRL_DEV gives ENOENT. */
#define UBLK_NO_DRIVER UBLK_CTRL_DEV " not found: this kernel has no ublk driver " \
	"(load it with 'modprobe ublk_drv')"

struct ublk_ctrl {
	int fd;
	struct io_uring ring;
	bool ioctl_encode;	/* send UBLK_U_CMD_* rather than legacy numbers */
	bool unprivileged;	/* no CAP_SYS_ADMIN: see UBLK_ROOT_ONLY_FLAGS */
};

/*
 * A process without CAP_SYS_ADMIN may only make UBLK_F_UNPRIVILEGED_DEV
 * devices (6.3+), and the kernel gives those none of these (ublk_drv.c's
 * ADD_DEV: user copy and zero copy would let the server reach pages the
 * block layer trusts; recovery could hang the error handling).  Each
 * command on such a device carries the path of its /dev/ublkcN ahead of
 * the payload, and the kernel lets it through only if the caller may
 * open that node: the udev rule (docs/unprivileged.md) gives it to the
 * device's owner.  The calls below add the path where it is needed, for
 * root on a user's device too.
 */
#define UBLK_ROOT_ONLY_FLAGS (UBLK_F_USER_COPY | UBLK_F_SUPPORT_ZERO_COPY | \
	UBLK_F_AUTO_BUF_REG | UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE | \
	UBLK_F_USER_RECOVERY_FAIL_IO | UBLK_F_QUIESCE)

/* Whether this process has CAP_SYS_ADMIN, which ublk checks for root. */
bool ublk_ctrl_privileged(void);

/* Opens the control device and its ring; ioctl encoding stays off until
 * ublk_ctrl_get_features() proves the kernel has it. */
int ublk_ctrl_open(struct ublk_ctrl *c);
void ublk_ctrl_close(struct ublk_ctrl *c);

/* Features the kernel supports (UBLK_F_*).  Kernels before 6.5 have no
 * GET_FEATURES: then *features = 0 and the return is -EOPNOTSUPP. */
int ublk_ctrl_get_features(struct ublk_ctrl *c, uint64_t *features);

/* info->dev_id = -1 (UINT32_MAX) lets the kernel pick; on success info is
 * what the kernel accepted (id, clamped queues, flags it granted). */
int ublk_ctrl_add_dev(struct ublk_ctrl *c, struct ublksrv_ctrl_dev_info *info);
/* DEL_DEV waits until the device is freed: until its disk is closed by
 * everyone (a mount can hold it forever).  ublk_ctrl_del_dev_async uses
 * DEL_DEV_ASYNC (6.9+), which stops and removes it the same way but does
 * not wait for that, and falls back to DEL_DEV on older kernels, and for a
 * user's device (UBLK_ROOT_ONLY_FLAGS), whose permission check does not
 * list DEL_DEV_ASYNC (7.3): delete that one only once its server is gone. */
int ublk_ctrl_del_dev(struct ublk_ctrl *c, uint32_t dev_id);
int ublk_ctrl_del_dev_async(struct ublk_ctrl *c, uint32_t dev_id);
int ublk_ctrl_set_params(struct ublk_ctrl *c, uint32_t dev_id, struct ublk_params *p);
int ublk_ctrl_get_params(struct ublk_ctrl *c, uint32_t dev_id, struct ublk_params *p);
int ublk_ctrl_start_dev(struct ublk_ctrl *c, uint32_t dev_id, int pid);
int ublk_ctrl_stop_dev(struct ublk_ctrl *c, uint32_t dev_id);
/* TRY_STOP_DEV (UBLK_F_SAFE_STOP_DEV, 7.0+): STOP_DEV, unless somebody has
 * the disk open: then -EBUSY, and nothing changes.  Atomic in the kernel:
 * nobody can open the disk between its check and the stop. */
int ublk_ctrl_try_stop_dev(struct ublk_ctrl *c, uint32_t dev_id);
/* User recovery of a device whose server died (UBLK_F_USER_RECOVERY):
 * START refuses with -EBUSY until the old server's /dev/ublkcN is closed
 * and the device quiesced; END waits for every tag to be fetched again,
 * then serves the waiting I/O. */
int ublk_ctrl_start_user_recovery(struct ublk_ctrl *c, uint32_t dev_id);
int ublk_ctrl_end_user_recovery(struct ublk_ctrl *c, uint32_t dev_id, int pid);
/* QUIESCE_DEV (UBLK_F_QUIESCE, 6.15+): waits up to timeout_ms for the I/O
 * in flight, then aborts every fetch; new I/O waits for a recovering
 * server. */
int ublk_ctrl_quiesce_dev(struct ublk_ctrl *c, uint32_t dev_id, uint64_t timeout_ms);
/* UPDATE_SIZE (UBLK_F_UPDATE_SIZE, 6.16+): the disk's capacity becomes
 * `sectors` at once (set_capacity_and_notify: a uevent, no I/O drained). */
int ublk_ctrl_update_size(struct ublk_ctrl *c, uint32_t dev_id, uint64_t sectors);
/* REG_BUF (UBLK_F_SHMEM_ZC, 7.1+): the kernel pins len bytes of this
 * process's shared mapping at addr; requests whose pages all lie there
 * come with their place in it.  The buffer's index (>= 0) or -errno.  Only
 * ioctl-encoded. */
int ublk_ctrl_reg_buf(struct ublk_ctrl *c, uint32_t dev_id, void *addr, uint64_t len);
int ublk_ctrl_get_dev_info(struct ublk_ctrl *c, uint32_t dev_id,
			   struct ublksrv_ctrl_dev_info *info);
int ublk_ctrl_get_queue_affinity(struct ublk_ctrl *c, uint32_t dev_id,
				 uint16_t q_id, cpu_set_t *set);

/* Kernel feature bits, or -errno (e.g. -ENOENT: no /dev/ublk-control). */
int ublk_probe_features(uint64_t *features);

/* Name of a UBLK_F_* bit, for logs and for Lua; NULL if unknown. */
const char *ublk_feature_name(unsigned bit);

#endif
