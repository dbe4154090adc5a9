/* SPDX-License-Identifier: MIT */
/*
 * ctrl.c - control commands.  One generic function builds the SQE and waits
 * for its completion; each command is a few-line wrapper around it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/capability.h>

#include "../base/log.h"
#include "ctrl.h"

bool ublk_ctrl_privileged(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct caps[2];

	memset(caps, 0, sizeof(caps));
	if (syscall(SYS_capget, &h, caps) < 0)
		return geteuid() == 0;
	return (caps[CAP_SYS_ADMIN / 32].effective >> (CAP_SYS_ADMIN % 32)) & 1;
}

int ublk_ctrl_open(struct ublk_ctrl *c)
{
	int ret;

	memset(c, 0, sizeof(*c));
	c->unprivileged = !ublk_ctrl_privileged();
	c->fd = open(UBLK_CTRL_DEV, O_RDWR | O_CLOEXEC);
	if (c->fd < 0)
		return -errno;
	/* URING_CMD payloads for ublk are 32 bytes: they need 128-byte SQEs. */
	ret = io_uring_queue_init(4, &c->ring, IORING_SETUP_SQE128);
	if (ret < 0) {
		close(c->fd);
		c->fd = -1;
		return ret;
	}
	return 0;
}

void ublk_ctrl_close(struct ublk_ctrl *c)
{
	if (c->fd < 0)
		return;
	io_uring_queue_exit(&c->ring);
	close(c->fd);
	c->fd = -1;
}

/*
 * Issues one command and waits for its completion.  `legacy` and `encoded`
 * are the two spellings of the same command; encoded == legacy means the
 * command exists only in its ioctl form.
 */
static int ctrl_cmd(struct ublk_ctrl *c, uint32_t legacy, uint32_t encoded,
		    const struct ublksrv_ctrl_cmd *cmd)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&c->ring);
	struct io_uring_cqe *cqe;
	int ret;

	if (!sqe)
		return -EBUSY;
	memset(sqe, 0, 2 * sizeof(*sqe)); /* both halves of the 128-byte SQE */
	sqe->opcode = IORING_OP_URING_CMD;
	sqe->fd = c->fd;
	sqe->cmd_op = c->ioctl_encode ? encoded : legacy;
	memcpy(sqe->cmd, cmd, sizeof(*cmd));

	ret = io_uring_submit(&c->ring);
	if (ret < 0)
		return ret;
	do
		ret = io_uring_wait_cqe(&c->ring, &cqe);
	while (ret == -EINTR);
	if (ret < 0)
		return ret;
	ret = cqe->res;
	io_uring_cqe_seen(&c->ring, cqe);
	return ret;
}

static struct ublksrv_ctrl_cmd cmd_for(uint32_t dev_id, void *buf, uint16_t len)
{
	return (struct ublksrv_ctrl_cmd){
		.dev_id = dev_id,
		.queue_id = (uint16_t)-1,
		.addr = (uint64_t)(uintptr_t)buf,
		.len = len,
	};
}

/* The longest payload a device command has (GET_QUEUE_AFFINITY's). */
#define PAYLOAD_MAX 512
_Static_assert(sizeof(struct ublk_params) <= PAYLOAD_MAX, "ublk_params fits");
_Static_assert(sizeof(cpu_set_t) <= PAYLOAD_MAX, "cpu_set_t fits");

/* `cmd` with /dev/ublkcN ahead of its payload (ctrl.h says why); what the
 * kernel writes back lands after the path and is copied to the caller. */
static int cmd_with_path(struct ublk_ctrl *c, uint32_t legacy, uint32_t encoded,
			 struct ublksrv_ctrl_cmd cmd)
{
	char buf[32 + PAYLOAD_MAX];
	void *payload = (void *)(uintptr_t)cmd.addr;
	uint16_t len = cmd.len;
	int n = snprintf(buf, 32, "/dev/ublkc%u", cmd.dev_id);
	int ret;

	if (len > PAYLOAD_MAX)
		return -EINVAL;
	if (len)
		memcpy(buf + n, payload, len);
	cmd.dev_path_len = (uint16_t)n;
	cmd.addr = (uint64_t)(uintptr_t)buf;
	cmd.len = (uint16_t)(n + len);
	ret = ctrl_cmd(c, legacy, encoded, &cmd);
	if (len)
		memcpy(payload, buf + n, len);
	return ret;
}

/* Is device id a user's (UBLK_F_UNPRIVILEGED_DEV)?  GET_DEV_INFO2 with
 * the path answers for either kind. */
static bool users_device(struct ublk_ctrl *c, uint32_t id)
{
	struct ublksrv_ctrl_dev_info info;

	return cmd_with_path(c, UBLK_CMD_GET_DEV_INFO2, UBLK_U_CMD_GET_DEV_INFO2,
			     cmd_for(id, &info, sizeof(info))) >= 0 &&
	       (info.flags & UBLK_F_UNPRIVILEGED_DEV);
}

/* A command on one device.  Without CAP_SYS_ADMIN every device we may
 * touch is a user's, so the path always goes; root's plain command on a
 * user's device is refused with EINVAL before it runs (the kernel's
 * permission check), and is sent again with the path. */
static int dev_cmd(struct ublk_ctrl *c, uint32_t legacy, uint32_t encoded,
		   const struct ublksrv_ctrl_cmd *cmd)
{
	int ret;

	if (c->unprivileged)
		return cmd_with_path(c, legacy, encoded, *cmd);
	ret = ctrl_cmd(c, legacy, encoded, cmd);
	if (ret == -EINVAL && users_device(c, cmd->dev_id))
		ret = cmd_with_path(c, legacy, encoded, *cmd);
	return ret;
}

int ublk_ctrl_get_features(struct ublk_ctrl *c, uint64_t *features)
{
	struct ublksrv_ctrl_cmd cmd = cmd_for((uint32_t)-1, features, sizeof(*features));
	bool was = c->ioctl_encode;
	int ret;

	*features = 0;
	c->ioctl_encode = true; /* GET_FEATURES only exists ioctl-encoded */
	ret = ctrl_cmd(c, UBLK_U_CMD_GET_FEATURES, UBLK_U_CMD_GET_FEATURES, &cmd);
	if (ret < 0) {
		/* Pre-6.5 kernels answer with EINVAL or EOPNOTSUPP: treat both
		 * as "no feature query", and keep the legacy encoding. */
		c->ioctl_encode = was;
		*features = 0;
		return -EOPNOTSUPP;
	}
	c->ioctl_encode = (*features & UBLK_F_CMD_IOCTL_ENCODE) != 0;
	return 0;
}

int ublk_ctrl_add_dev(struct ublk_ctrl *c, struct ublksrv_ctrl_dev_info *info)
{
	struct ublksrv_ctrl_cmd cmd = cmd_for(info->dev_id, info, sizeof(*info));

	return ctrl_cmd(c, UBLK_CMD_ADD_DEV, UBLK_U_CMD_ADD_DEV, &cmd);
}

int ublk_ctrl_del_dev(struct ublk_ctrl *c, uint32_t dev_id)
{
	struct ublksrv_ctrl_cmd cmd = cmd_for(dev_id, NULL, 0);

	return dev_cmd(c, UBLK_CMD_DEL_DEV, UBLK_U_CMD_DEL_DEV, &cmd);
}

int ublk_ctrl_del_dev_async(struct ublk_ctrl *c, uint32_t dev_id)
{
	struct ublksrv_ctrl_cmd cmd = cmd_for(dev_id, NULL, 0);

	int ret = -EOPNOTSUPP;

	if (c->ioctl_encode) /* it exists only ioctl-encoded (6.9+) */
		ret = dev_cmd(c, UBLK_U_CMD_DEL_DEV_ASYNC, UBLK_U_CMD_DEL_DEV_ASYNC, &cmd);
	if (ret == -EOPNOTSUPP || ret == -EINVAL) /* before 6.9: wait, as we must */
		ret = ublk_ctrl_del_dev(c, dev_id);
	return ret;
}

int ublk_ctrl_set_params(struct ublk_ctrl *c, uint32_t dev_id, struct ublk_params *p)
{
	struct ublksrv_ctrl_cmd cmd = cmd_for(dev_id, p, sizeof(*p));

	p->len = sizeof(*p);
	return dev_cmd(c, UBLK_CMD_SET_PARAMS, UBLK_U_CMD_SET_PARAMS, &cmd);
}

int ublk_ctrl_get_params(struct ublk_ctrl *c, uint32_t dev_id, struct ublk_params *p)
{
	struct ublksrv_ctrl_cmd cmd = cmd_for(dev_id, p, sizeof(*p));

	memset(p, 0, sizeof(*p));
	p->len = sizeof(*p);
	return dev_cmd(c, UBLK_CMD_GET_PARAMS, UBLK_U_CMD_GET_PARAMS, &cmd);
}

int ublk_ctrl_start_dev(struct ublk_ctrl *c, uint32_t dev_id, int pid)
{
	struct ublksrv_ctrl_cmd cmd = cmd_for(dev_id, NULL, 0);

	cmd.data[0] = (uint64_t)pid;
	return dev_cmd(c, UBLK_CMD_START_DEV, UBLK_U_CMD_START_DEV, &cmd);
}

int ublk_ctrl_start_user_recovery(struct ublk_ctrl *c, uint32_t dev_id)
{
	struct ublksrv_ctrl_cmd cmd = cmd_for(dev_id, NULL, 0);

	return dev_cmd(c, UBLK_CMD_START_USER_RECOVERY, UBLK_U_CMD_START_USER_RECOVERY, &cmd);
}

int ublk_ctrl_end_user_recovery(struct ublk_ctrl *c, uint32_t dev_id, int pid)
{
	struct ublksrv_ctrl_cmd cmd = cmd_for(dev_id, NULL, 0);

	cmd.data[0] = (uint64_t)pid;
	return dev_cmd(c, UBLK_CMD_END_USER_RECOVERY, UBLK_U_CMD_END_USER_RECOVERY, &cmd);
}

int ublk_ctrl_quiesce_dev(struct ublk_ctrl *c, uint32_t dev_id, uint64_t timeout_ms)
{
	struct ublksrv_ctrl_cmd cmd = cmd_for(dev_id, NULL, 0);

	cmd.data[0] = timeout_ms;
	return dev_cmd(c, UBLK_CMD_QUIESCE_DEV, UBLK_U_CMD_QUIESCE_DEV, &cmd);
}

int ublk_ctrl_update_size(struct ublk_ctrl *c, uint32_t dev_id, uint64_t sectors)
{
	struct ublksrv_ctrl_cmd cmd = cmd_for(dev_id, NULL, 0);

	cmd.data[0] = sectors;
	return dev_cmd(c, UBLK_CMD_UPDATE_SIZE, UBLK_U_CMD_UPDATE_SIZE, &cmd);
}

int ublk_ctrl_stop_dev(struct ublk_ctrl *c, uint32_t dev_id)
{
	struct ublksrv_ctrl_cmd cmd = cmd_for(dev_id, NULL, 0);

	return dev_cmd(c, UBLK_CMD_STOP_DEV, UBLK_U_CMD_STOP_DEV, &cmd);
}

int ublk_ctrl_try_stop_dev(struct ublk_ctrl *c, uint32_t dev_id)
{
	struct ublksrv_ctrl_cmd cmd = cmd_for(dev_id, NULL, 0);

	return dev_cmd(c, UBLK_CMD_TRY_STOP_DEV, UBLK_U_CMD_TRY_STOP_DEV, &cmd);
}

int ublk_ctrl_reg_buf(struct ublk_ctrl *c, uint32_t dev_id, void *addr, uint64_t len)
{
	struct ublk_shmem_buf_reg reg = { .addr = (uint64_t)(uintptr_t)addr, .len = len };
	struct ublksrv_ctrl_cmd cmd = cmd_for(dev_id, &reg, sizeof(reg));

	return dev_cmd(c, UBLK_U_CMD_REG_BUF, UBLK_U_CMD_REG_BUF, &cmd);
}

int ublk_ctrl_get_dev_info(struct ublk_ctrl *c, uint32_t dev_id,
			   struct ublksrv_ctrl_dev_info *info)
{
	struct ublksrv_ctrl_cmd cmd = cmd_for(dev_id, info, sizeof(*info));

	return dev_cmd(c, UBLK_CMD_GET_DEV_INFO, UBLK_U_CMD_GET_DEV_INFO, &cmd);
}

int ublk_ctrl_get_queue_affinity(struct ublk_ctrl *c, uint32_t dev_id,
				 uint16_t q_id, cpu_set_t *set)
{
	struct ublksrv_ctrl_cmd cmd = cmd_for(dev_id, set, sizeof(*set));

	CPU_ZERO(set);
	cmd.data[0] = q_id; /* the kernel reads the queue from data[0] */
	return dev_cmd(c, UBLK_CMD_GET_QUEUE_AFFINITY,
			UBLK_U_CMD_GET_QUEUE_AFFINITY, &cmd);
}

const char *ublk_feature_name(unsigned bit)
{
	static const char *const names[] = {
		"zero_copy", "comp_in_task", "need_get_data", "user_recovery",
		"user_recovery_reissue", "unprivileged_dev", "cmd_ioctl_encode",
		"user_copy", "zoned", "user_recovery_fail_io", "update_size",
		"auto_buf_reg", "quiesce", "per_io_daemon", "buf_reg_off_daemon",
		"batch_io", "integrity", "safe_stop_dev", "no_auto_part_scan",
		"shmem_zc", "io_desc_size",
	};

	return bit < sizeof(names) / sizeof(names[0]) ? names[bit] : NULL;
}

/* Opens the control device only to ask for its features. */
int ublk_probe_features(uint64_t *features)
{
	struct ublk_ctrl c;
	int ret = ublk_ctrl_open(&c);

	*features = 0;
	if (ret < 0)
		return ret;
	ublk_ctrl_get_features(&c, features);
	ublk_ctrl_close(&c);
	return 0;
}
