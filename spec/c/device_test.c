/* SPDX-License-Identifier: MIT */
/*
 * spec/c/device_test.c - what the device lifecycle decides without asking
 * the kernel: which devices of a dead server are left for recovery, which
 * a recovering server refuses, what it records.  No ublk driver needed, no
 * Lua.  Prints TAP.  Build: make build/device-test
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../runtime/device_private.h"
#include "tap.h"

/* The orphan sweep (device_owner.c) runs once the recorded server is
 * known dead, whatever the kernel has noticed of it yet. */
static void test_recoverable(void)
{
	struct ublksrv_ctrl_dev_info i = { .flags = UBLK_F_USER_RECOVERY };

	i.state = UBLK_S_DEV_LIVE;
	check(ublk_dev_recoverable(&i),
	      "sweep: a recovery device still LIVE after its server died is kept");
	i.state = UBLK_S_DEV_QUIESCED;
	check(ublk_dev_recoverable(&i), "sweep: a QUIESCED one is kept");
	i.state = UBLK_S_DEV_FAIL_IO;
	check(ublk_dev_recoverable(&i), "sweep: a FAIL_IO one is kept");
	i.state = UBLK_S_DEV_DEAD;
	check(!ublk_dev_recoverable(&i), "sweep: a DEAD one is removed");
	i.flags = 0;
	i.state = UBLK_S_DEV_LIVE;
	check(!ublk_dev_recoverable(&i), "sweep: one without recovery is removed, whatever its state");
}

/* A device ublk-lua made and the memory backend that recovers it: what
 * ublk_dev_check_recovered accepts. */
static void recoverable_device(struct ublk_dev *d)
{
	memset(d, 0, sizeof(*d));
	d->info.nr_hw_queues = 2;
	d->info.queue_depth = 128;
	d->info.max_io_buf_bytes = 1 << 20;
	d->info.state = UBLK_S_DEV_QUIESCED;
	d->info.flags = UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE |
			UBLK_F_CMD_IOCTL_ENCODE | UBLK_F_USER_COPY;
	d->params.basic.dev_sectors = 2048;
	d->backend.size = 2048 * 512;
	d->backend.caps = UBLK_CAN_USER_COPY;
	d->backend.ops = ublk_backend_find("memory");
}

/* What a recovering server refuses before it touches the device, by name. */
static void test_check_recovered(void)
{
	static const struct {
		uint64_t flag;
		const char *name;
	} foreign[] = {
		{ UBLK_F_NEED_GET_DATA, "UBLK_F_NEED_GET_DATA" },
		{ UBLK_F_UNPRIVILEGED_DEV, "UBLK_F_UNPRIVILEGED_DEV" },
		{ UBLK_F_ZONED, "UBLK_F_ZONED" },
		{ UBLK_F_INTEGRITY, "UBLK_F_INTEGRITY" },
		{ UBLK_F_SHMEM_ZC, "UBLK_F_SHMEM_ZC" },
		{ 1ull << 20, "flag bit 20" },
	};
	static struct ublk_dev d;
	int named = 1;

	recoverable_device(&d);
	check(ublk_dev_check_recovered(&d, 7) == 0, "recover: accepts a device ublk-lua made");
	/* what 6.16+ and 7.0+ set on every device they make */
	d.info.flags |= UBLK_F_URING_CMD_COMP_IN_TASK | UBLK_F_PER_IO_DAEMON |
			UBLK_F_BUF_REG_OFF_DAEMON | UBLK_F_SAFE_STOP_DEV | UBLK_F_QUIESCE;
	check(ublk_dev_check_recovered(&d, 7) == 0,
	      "recover: accepts the flags newer kernels set on every device");

	recoverable_device(&d);
	d.params.basic.attrs = UBLK_ATTR_READ_ONLY;
	check(ublk_dev_check_recovered(&d, 7) == -EINVAL &&
		      strstr(d.err, "device 7 is read-only, the recovering server's is not") &&
		      strstr(d.err, "set read_only = true"),
	      "recover: refuses a writable server for a read-only device, saying so");
	d.read_only = true;
	check(ublk_dev_check_recovered(&d, 7) == 0, "recover: a read-only server takes it");
	d.params.basic.attrs = 0;
	check(ublk_dev_check_recovered(&d, 7) == -EINVAL &&
		      strstr(d.err, "device 7 is writable, the recovering server's has read_only = "
				    "true"),
	      "recover: refuses a read-only server for a writable device, saying so");

	for (size_t k = 0; k < sizeof(foreign) / sizeof(foreign[0]); k++) {
		recoverable_device(&d);
		d.info.flags |= foreign[k].flag;
		if (ublk_dev_check_recovered(&d, 7) != -EINVAL || !strstr(d.err, foreign[k].name) ||
		    !strstr(d.err, "device 7 ")) {
			printf("# %s: %s\n", foreign[k].name, d.err);
			named = 0;
		}
	}
	check(named, "recover: refuses, by name, a device with a flag its queues do not implement");
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static void read_file(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n = f ? fread(buf, 1, len - 1, f) : 0;

	buf[n] = 0;
	if (f)
		fclose(f);
}

/* A recovering server's registration keeps what the old one recorded.
 * The records live in UBLK_STATE_DIR: this uses an id no kernel hands out
 * soon (ids are taken lowest first), and leaves the directory as found. */
static void test_register_recovered(void)
{
	const uint32_t id = 1048000;
	char path[64], json[1024], pid[32];
	bool made_dir = mkdir(UBLK_STATE_DIR, 0755) == 0;

	snprintf(path, sizeof(path), "%s/dev%u", UBLK_STATE_DIR, id);
	snprintf(pid, sizeof(pid), "\"pid\": %d,", (int)getpid());
	if (access(path, F_OK) == 0) {
		printf("ok %d - # SKIP %s exists\n", ++checks, path);
		return;
	}
	write_file(path, "{\"args\": [\"v1\"], \"id\": 1048000, \"index\": 2, \"pid\": 1, "
			 "\"script\": \"/srv/disk.lua\", \"shared\": [\"/dev/shm/ublk-lua.1.x\"], "
			 "\"store\": \"/dev/shm/ublk-lua.1.2\"}\n");
	ublk_dev_register(id, "/dev/shm/ublk-lua.1.2", true);
	read_file(path, json, sizeof(json));
	check(ublk_dev_read_owner(id, NULL, 0) == getpid() && strstr(json, pid) &&
		      strstr(json, "\"script\": \"/srv/disk.lua\"") && strstr(json, "\"index\": 2") &&
		      strstr(json, "\"args\": [\"v1\"]") &&
		      strstr(json, "\"shared\": [\"/dev/shm/ublk-lua.1.x\"]") &&
		      strstr(json, "\"store\": \"/dev/shm/ublk-lua.1.2\""),
	      "records: a recovering server changes only the pid of the old record");
	ublk_dev_unregister(id);
	unlink(path);
	ublk_dev_register(id, "", true);
	check(ublk_dev_read_owner(id, NULL, 0) == getpid(),
	      "records: without an old record, a recovered device gets a new one");
	ublk_dev_unregister(id);
	unlink(path);
	if (made_dir)
		rmdir(UBLK_STATE_DIR);
}

int main(void)
{
	test_recoverable();
	test_check_recovered();
	test_register_recovered();
	printf("1..%d\n", checks);
	return failed ? 1 : 0;
}
