/* SPDX-License-Identifier: MIT */
/*
 * ublk_uapi.h - the kernel's ublk user ABI, written out for ublk-lua.
 *
 * Why our own copy: distribution headers lag the kernel (Debian 12's
 * linux/ublk_cmd.h predates GET_FEATURES and the ioctl encoding), and we
 * must speak to kernels from 6.1 to 7.x.  Every struct is pinned by the
 * static asserts at the bottom so that a typo cannot silently shift a field.
 */
#ifndef UBLK_UAPI_H
#define UBLK_UAPI_H

#include <stddef.h>
#include <stdint.h>
#include <linux/ioctl.h>

/* ---- control commands: legacy numbers (pre-6.3 kernels accept these) ---- */
#define UBLK_CMD_GET_QUEUE_AFFINITY	0x01
#define UBLK_CMD_GET_DEV_INFO		0x02
#define UBLK_CMD_ADD_DEV		0x04
#define UBLK_CMD_DEL_DEV		0x05
#define UBLK_CMD_START_DEV		0x06
#define UBLK_CMD_STOP_DEV		0x07
#define UBLK_CMD_SET_PARAMS		0x08
#define UBLK_CMD_GET_PARAMS		0x09
#define UBLK_CMD_START_USER_RECOVERY	0x10
#define UBLK_CMD_END_USER_RECOVERY	0x11
#define UBLK_CMD_GET_DEV_INFO2		0x12
#define UBLK_CMD_GET_FEATURES		0x13
#define UBLK_CMD_DEL_DEV_ASYNC		0x14
#define UBLK_CMD_UPDATE_SIZE		0x15
#define UBLK_CMD_QUIESCE_DEV		0x16
#define UBLK_CMD_TRY_STOP_DEV		0x17
#define UBLK_CMD_REG_BUF		0x18	/* 7.1: UBLK_F_SHMEM_ZC */
#define UBLK_CMD_UNREG_BUF		0x19

/* ---- io commands: legacy numbers ---- */
#define UBLK_IO_FETCH_REQ		0x20
#define UBLK_IO_COMMIT_AND_FETCH_REQ	0x21
#define UBLK_IO_NEED_GET_DATA		0x22

struct ublksrv_ctrl_cmd {
	uint32_t dev_id;	/* target device, or -1 for ADD_DEV "pick one" */
	uint16_t queue_id;	/* -1 unless the command is per queue */
	uint16_t len;		/* length of the buffer at addr */
	uint64_t addr;		/* in/out buffer */
	uint64_t data[1];	/* inline argument */
	uint16_t dev_path_len;	/* unprivileged mode only */
	uint16_t pad;
	uint32_t reserved;
};

struct ublksrv_ctrl_dev_info {
	uint16_t nr_hw_queues;
	uint16_t queue_depth;
	uint16_t state;
	uint16_t io_desc_size;	/* UBLK_F_IO_DESC_SIZE (7.3+); padding before */
	uint32_t max_io_buf_bytes;
	uint32_t dev_id;
	int32_t ublksrv_pid;
	uint32_t pad1;
	uint64_t flags;
	uint64_t ublksrv_flags;	/* for the server; the kernel ignores it */
	uint32_t owner_uid;
	uint32_t owner_gid;
	uint64_t reserved1;
	uint64_t reserved2;
};

struct ublksrv_io_desc {
	uint32_t op_flags;	/* op in bits 0-7, UBLK_IO_F_* above */
	uint32_t nr_sectors;	/* nr_zones for REPORT_ZONES */
	uint64_t start_sector;
	uint64_t addr;
};

struct ublksrv_io_cmd {
	uint16_t q_id;
	uint16_t tag;
	int32_t result;		/* COMMIT only */
	uint64_t addr;		/* our buffer for this tag */
};

/* The ioctl-encoded forms.  Kernels >= 6.3 prefer them; GET_FEATURES and
 * everything after it exist only in this form. */
#define UBLK_U_CMD_GET_QUEUE_AFFINITY	_IOR('u', UBLK_CMD_GET_QUEUE_AFFINITY, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_GET_DEV_INFO		_IOR('u', UBLK_CMD_GET_DEV_INFO, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_ADD_DEV		_IOWR('u', UBLK_CMD_ADD_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_DEL_DEV		_IOWR('u', UBLK_CMD_DEL_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_START_DEV		_IOWR('u', UBLK_CMD_START_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_STOP_DEV		_IOWR('u', UBLK_CMD_STOP_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_SET_PARAMS		_IOWR('u', UBLK_CMD_SET_PARAMS, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_GET_PARAMS		_IOR('u', UBLK_CMD_GET_PARAMS, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_START_USER_RECOVERY	_IOWR('u', UBLK_CMD_START_USER_RECOVERY, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_END_USER_RECOVERY	_IOWR('u', UBLK_CMD_END_USER_RECOVERY, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_GET_DEV_INFO2	_IOR('u', UBLK_CMD_GET_DEV_INFO2, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_GET_FEATURES		_IOR('u', UBLK_CMD_GET_FEATURES, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_DEL_DEV_ASYNC	_IOR('u', UBLK_CMD_DEL_DEV_ASYNC, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_UPDATE_SIZE		_IOWR('u', UBLK_CMD_UPDATE_SIZE, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_QUIESCE_DEV		_IOWR('u', UBLK_CMD_QUIESCE_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_TRY_STOP_DEV		_IOWR('u', UBLK_CMD_TRY_STOP_DEV, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_REG_BUF		_IOWR('u', UBLK_CMD_REG_BUF, struct ublksrv_ctrl_cmd)
#define UBLK_U_CMD_UNREG_BUF		_IOWR('u', UBLK_CMD_UNREG_BUF, struct ublksrv_ctrl_cmd)

/* REG_BUF's payload (ctrl_cmd.addr points to it): a shared mapping of the
 * server's, page-aligned, at most 4 GiB; the answer is its index. */
struct ublk_shmem_buf_reg {
	uint64_t addr;
	uint64_t len;
	uint32_t flags;		/* UBLK_SHMEM_BUF_READ_ONLY */
	uint32_t reserved;
};
#define UBLK_SHMEM_BUF_READ_ONLY	(1U << 0)
/* A request whose pages all lie in one registered buffer comes with
 * UBLK_IO_F_SHMEM_ZC and its data's place there in iod->addr: */
#define UBLK_SHMEM_ZC_OFF_MASK		0xffffffffULL	/* bits 0-31: byte offset */
#define UBLK_SHMEM_ZC_IDX_OFF		32		/* bits 32-47: the index */
#define UBLK_SHMEM_ZC_IDX_MASK		0xffffULL

#define UBLK_U_IO_FETCH_REQ		_IOWR('u', UBLK_IO_FETCH_REQ, struct ublksrv_io_cmd)
#define UBLK_U_IO_COMMIT_AND_FETCH_REQ	_IOWR('u', UBLK_IO_COMMIT_AND_FETCH_REQ, struct ublksrv_io_cmd)
#define UBLK_U_IO_NEED_GET_DATA		_IOWR('u', UBLK_IO_NEED_GET_DATA, struct ublksrv_io_cmd)
#define UBLK_U_IO_REGISTER_IO_BUF	_IOWR('u', 0x23, struct ublksrv_io_cmd)
#define UBLK_U_IO_UNREGISTER_IO_BUF	_IOWR('u', 0x24, struct ublksrv_io_cmd)

/* UBLK_F_BATCH_IO (7.0): per-queue commands carrying arrays, instead of a
 * FETCH/COMMIT_AND_FETCH per tag.  The command area holds a ublk_batch_io;
 * PREP and COMMIT point sqe->addr at nr_elem elements of elem_bytes, each
 * a ublk_elem_header then, with HAS_BUF_ADDR, the tag's buffer address.
 * FETCH is multishot over a provided-buffer ring, each CQE an array of
 * u16 tags (res bytes). */
struct ublk_batch_io {
	uint16_t q_id;
	uint16_t flags;		/* UBLK_BATCH_F_*; 0 for FETCH */
	uint16_t nr_elem;
	uint8_t elem_bytes;	/* 8 + 8 per optional field; 2 for FETCH */
	uint8_t reserved;
	uint64_t reserved2;
};

struct ublk_elem_header {
	uint16_t tag;
	uint16_t buf_index;	/* the buffer slot, with UBLK_F_AUTO_BUF_REG */
	int32_t result;		/* COMMIT only */
};

#define UBLK_BATCH_F_HAS_ZONE_LBA	(1 << 0)
#define UBLK_BATCH_F_HAS_BUF_ADDR	(1 << 1)
#define UBLK_BATCH_F_AUTO_BUF_REG_FALLBACK (1 << 2)
/* AUTO_BUF_REG: an io command's sqe->addr is the slot (bits 0-15) and
 * these flags (bits 16-23) */
#define UBLK_AUTO_BUF_REG_FALLBACK	(1 << 0)
#define UBLK_BATCH_IO_UNUSED_TAG	((uint16_t)-1)	/* in a FETCH array: skip */

#define UBLK_U_IO_PREP_IO_CMDS		_IOWR('u', 0x25, struct ublk_batch_io)
#define UBLK_U_IO_COMMIT_IO_CMDS	_IOWR('u', 0x26, struct ublk_batch_io)
#define UBLK_U_IO_FETCH_IO_CMDS		_IOWR('u', 0x27, struct ublk_batch_io)

/* io_uring's (6.19+/7.0): a multishot URING_CMD, fed by buffer select;
 * Debian 12's liburing predates it */
#ifndef IORING_URING_CMD_MULTISHOT
#define IORING_URING_CMD_MULTISHOT	(1U << 1)
#endif

#define UBLK_FEATURES_LEN		8

/* FETCH/COMMIT results; only ABORT means "do not fetch again" */
#define UBLK_IO_RES_OK			0
#define UBLK_IO_RES_NEED_GET_DATA	1
#define UBLK_IO_RES_ABORT		(-19)	/* -ENODEV */

/* mmap offsets on /dev/ublkcN */
#define UBLKSRV_CMD_BUF_OFFSET		0
#define UBLKSRV_IO_BUF_OFFSET		0x80000000ULL

#define UBLK_MAX_QUEUE_DEPTH		4096
#define UBLK_MAX_NR_QUEUES		4096
#define UBLK_IO_BUF_BITS		25	/* 32 MiB: the largest io buffer */
#define UBLK_TAG_OFF			UBLK_IO_BUF_BITS
#define UBLK_TAG_BITS			16
#define UBLK_QID_OFF			(UBLK_TAG_OFF + UBLK_TAG_BITS)

/* ---- device feature flags (ADD_DEV info.flags, GET_FEATURES) ---- */
#define UBLK_F_SUPPORT_ZERO_COPY	(1ULL << 0)
#define UBLK_F_URING_CMD_COMP_IN_TASK	(1ULL << 1)
#define UBLK_F_NEED_GET_DATA		(1ULL << 2)
#define UBLK_F_USER_RECOVERY		(1ULL << 3)
#define UBLK_F_USER_RECOVERY_REISSUE	(1ULL << 4)
#define UBLK_F_UNPRIVILEGED_DEV		(1ULL << 5)
#define UBLK_F_CMD_IOCTL_ENCODE		(1ULL << 6)
#define UBLK_F_USER_COPY		(1ULL << 7)
#define UBLK_F_ZONED			(1ULL << 8)
#define UBLK_F_USER_RECOVERY_FAIL_IO	(1ULL << 9)
#define UBLK_F_UPDATE_SIZE		(1ULL << 10)
#define UBLK_F_AUTO_BUF_REG		(1ULL << 11)
#define UBLK_F_QUIESCE			(1ULL << 12)
#define UBLK_F_PER_IO_DAEMON		(1ULL << 13)
#define UBLK_F_BUF_REG_OFF_DAEMON	(1ULL << 14)
#define UBLK_F_BATCH_IO			(1ULL << 15)
#define UBLK_F_INTEGRITY		(1ULL << 16)
#define UBLK_F_SAFE_STOP_DEV		(1ULL << 17)
#define UBLK_F_NO_AUTO_PART_SCAN	(1ULL << 18)
#define UBLK_F_SHMEM_ZC			(1ULL << 19)
#define UBLK_F_IO_DESC_SIZE		(1ULL << 20)	/* 7.3: dev_info picks the descriptor size */

/* device state (dev_info.state) */
#define UBLK_S_DEV_DEAD			0
#define UBLK_S_DEV_LIVE			1
#define UBLK_S_DEV_QUIESCED		2
#define UBLK_S_DEV_FAIL_IO		3

/* ---- io descriptor ops and flags ---- */
#define UBLK_IO_OP_READ			0
#define UBLK_IO_OP_WRITE		1
#define UBLK_IO_OP_FLUSH		2
#define UBLK_IO_OP_DISCARD		3
#define UBLK_IO_OP_WRITE_SAME		4
#define UBLK_IO_OP_WRITE_ZEROES		5
#define UBLK_IO_OP_ZONE_OPEN		10
#define UBLK_IO_OP_ZONE_CLOSE		11
#define UBLK_IO_OP_ZONE_FINISH		12
#define UBLK_IO_OP_ZONE_APPEND		13
#define UBLK_IO_OP_ZONE_RESET_ALL	14
#define UBLK_IO_OP_ZONE_RESET		15
#define UBLK_IO_OP_REPORT_ZONES		18

#define UBLK_IO_F_FAILFAST_DEV		(1U << 8)
#define UBLK_IO_F_FAILFAST_TRANSPORT	(1U << 9)
#define UBLK_IO_F_FAILFAST_DRIVER	(1U << 10)
#define UBLK_IO_F_META			(1U << 11)
#define UBLK_IO_F_FUA			(1U << 13)
#define UBLK_IO_F_NOUNMAP		(1U << 15)
#define UBLK_IO_F_SWAP			(1U << 16)
#define UBLK_IO_F_NEED_REG_BUF		(1U << 17)	/* AUTO_BUF_REG failed: register it */
#define UBLK_IO_F_INTEGRITY		(1U << 18)
#define UBLK_IO_F_SHMEM_ZC		(1U << 19)

static inline uint8_t ublksrv_get_op(const struct ublksrv_io_desc *iod)
{
	return (uint8_t)(iod->op_flags & 0xff);
}

static inline uint32_t ublksrv_get_flags(const struct ublksrv_io_desc *iod)
{
	return iod->op_flags >> 8;
}

/* ---- parameters (SET_PARAMS / GET_PARAMS) ---- */
#define UBLK_ATTR_READ_ONLY		(1U << 0)
#define UBLK_ATTR_ROTATIONAL		(1U << 1)
#define UBLK_ATTR_VOLATILE_CACHE	(1U << 2)
#define UBLK_ATTR_FUA			(1U << 3)

struct ublk_param_basic {
	uint32_t attrs;
	uint8_t logical_bs_shift;
	uint8_t physical_bs_shift;
	uint8_t io_opt_shift;
	uint8_t io_min_shift;
	uint32_t max_sectors;
	uint32_t chunk_sectors;
	uint64_t dev_sectors;
	uint64_t virt_boundary_mask;
};

struct ublk_param_discard {
	uint32_t discard_alignment;
	uint32_t discard_granularity;
	uint32_t max_discard_sectors;
	uint32_t max_write_zeroes_sectors;
	uint16_t max_discard_segments;	/* the kernel accepts only 1 */
	uint16_t reserved0;
};

struct ublk_param_devt {		/* read-only: GET_PARAMS fills it */
	uint32_t char_major;
	uint32_t char_minor;
	uint32_t disk_major;
	uint32_t disk_minor;
};

struct ublk_param_zoned {
	uint32_t max_open_zones;
	uint32_t max_active_zones;
	uint32_t max_zone_append_sectors;
	uint8_t reserved[20];
};

struct ublk_param_dma_align {
	uint32_t alignment;
	uint8_t pad[4];
};

struct ublk_param_segment {
	uint64_t seg_boundary_mask;
	uint32_t max_segment_size;
	uint16_t max_segments;
	uint8_t pad[2];
};

struct ublk_param_integrity {
	uint32_t flags;
	uint16_t max_integrity_segments;
	uint8_t interval_exp;
	uint8_t metadata_size;
	uint8_t pi_offset;
	uint8_t csum_type;
	uint8_t tag_size;
	uint8_t pad[5];
};

#define UBLK_PARAM_TYPE_BASIC		(1U << 0)
#define UBLK_PARAM_TYPE_DISCARD		(1U << 1)
#define UBLK_PARAM_TYPE_DEVT		(1U << 2)
#define UBLK_PARAM_TYPE_ZONED		(1U << 3)
#define UBLK_PARAM_TYPE_DMA_ALIGN	(1U << 4)
#define UBLK_PARAM_TYPE_SEGMENT		(1U << 5)
#define UBLK_PARAM_TYPE_INTEGRITY	(1U << 6)

/* Older kernels know a prefix of this struct; they clamp len to theirs. */
struct ublk_params {
	uint32_t len;
	uint32_t types;
	struct ublk_param_basic basic;
	struct ublk_param_discard discard;
	struct ublk_param_devt devt;
	struct ublk_param_zoned zoned;
	struct ublk_param_dma_align dma;
	struct ublk_param_segment seg;
	struct ublk_param_integrity integrity;
};

/* ---- layout pins: these match the kernel's own structs byte for byte ---- */
_Static_assert(sizeof(struct ublksrv_ctrl_cmd) == 32, "ctrl_cmd size");
_Static_assert(offsetof(struct ublksrv_ctrl_cmd, addr) == 8, "ctrl_cmd.addr");
_Static_assert(offsetof(struct ublksrv_ctrl_cmd, data) == 16, "ctrl_cmd.data");
_Static_assert(offsetof(struct ublksrv_ctrl_cmd, dev_path_len) == 24, "ctrl_cmd.dev_path_len");
_Static_assert(sizeof(struct ublksrv_ctrl_dev_info) == 64, "dev_info size");
_Static_assert(offsetof(struct ublksrv_ctrl_dev_info, max_io_buf_bytes) == 8, "dev_info.max_io");
_Static_assert(offsetof(struct ublksrv_ctrl_dev_info, ublksrv_pid) == 16, "dev_info.pid");
_Static_assert(offsetof(struct ublksrv_ctrl_dev_info, flags) == 24, "dev_info.flags");
_Static_assert(offsetof(struct ublksrv_ctrl_dev_info, owner_uid) == 40, "dev_info.owner_uid");
_Static_assert(sizeof(struct ublksrv_io_desc) == 24, "io_desc size");
_Static_assert(sizeof(struct ublk_shmem_buf_reg) == 24, "shmem_buf_reg size");
_Static_assert(offsetof(struct ublksrv_io_desc, start_sector) == 8, "io_desc.start_sector");
_Static_assert(offsetof(struct ublksrv_io_desc, addr) == 16, "io_desc.addr");
_Static_assert(sizeof(struct ublksrv_io_cmd) == 16, "io_cmd size");
_Static_assert(offsetof(struct ublksrv_io_cmd, result) == 4, "io_cmd.result");
_Static_assert(offsetof(struct ublksrv_io_cmd, addr) == 8, "io_cmd.addr");
_Static_assert(sizeof(struct ublk_param_basic) == 32, "param_basic size");
_Static_assert(offsetof(struct ublk_param_basic, max_sectors) == 8, "basic.max_sectors");
_Static_assert(offsetof(struct ublk_param_basic, dev_sectors) == 16, "basic.dev_sectors");
_Static_assert(sizeof(struct ublk_param_discard) == 20, "param_discard size");
_Static_assert(sizeof(struct ublk_param_devt) == 16, "param_devt size");
_Static_assert(sizeof(struct ublk_param_zoned) == 32, "param_zoned size");
_Static_assert(sizeof(struct ublk_param_dma_align) == 8, "param_dma size");
_Static_assert(sizeof(struct ublk_param_segment) == 16, "param_segment size");
_Static_assert(sizeof(struct ublk_param_integrity) == 16, "param_integrity size");
_Static_assert(offsetof(struct ublk_params, basic) == 8, "params.basic");
_Static_assert(offsetof(struct ublk_params, discard) == 40, "params.discard");
_Static_assert(offsetof(struct ublk_params, devt) == 60, "params.devt");
_Static_assert(offsetof(struct ublk_params, zoned) == 76, "params.zoned");
_Static_assert(offsetof(struct ublk_params, dma) == 108, "params.dma");
_Static_assert(offsetof(struct ublk_params, seg) == 120, "params.seg");
_Static_assert(offsetof(struct ublk_params, integrity) == 136, "params.integrity");
_Static_assert(sizeof(struct ublk_params) == 152, "params size");
_Static_assert(UBLK_U_CMD_ADD_DEV == 0xc0207504, "ioctl encoding of ADD_DEV");
_Static_assert(UBLK_U_CMD_GET_FEATURES == 0x80207513, "ioctl encoding of GET_FEATURES");
_Static_assert(UBLK_U_IO_FETCH_REQ == 0xc0107520, "ioctl encoding of FETCH_REQ");
_Static_assert(sizeof(struct ublk_batch_io) == 16, "batch_io size");
_Static_assert(sizeof(struct ublk_elem_header) == 8, "elem_header size");
_Static_assert(UBLK_U_IO_PREP_IO_CMDS == 0xc0107525, "ioctl encoding of PREP_IO_CMDS");
_Static_assert(UBLK_U_IO_FETCH_IO_CMDS == 0xc0107527, "ioctl encoding of FETCH_IO_CMDS");

#endif /* UBLK_UAPI_H */
