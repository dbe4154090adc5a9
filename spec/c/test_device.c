/* SPDX-License-Identifier: MIT */
/*
 * spec/c/test_device.c - what the device lifecycle decides without asking
 * the kernel: which devices of a dead server are left for recovery, which
 * a recovering server refuses, what it records.  No ublk driver needed, no
 * Lua.  Prints TAP.  Build: make build/test-device
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../runtime/backends/backends.h"
#include "../../runtime/device/device_private.h"
#include "../../runtime/include/state.h"
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
		{ 1ull << 21, "flag bit 21" },
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
	d.info.flags |= UBLK_F_IO_DESC_SIZE; /* the queues map at its stride */
	d.info.io_desc_size = 256;
	check(ublk_dev_check_recovered(&d, 7) == 0,
	      "recover: takes a device with larger descriptors (IO_DESC_SIZE)");
	d.info.io_desc_size = 1000;
	check(ublk_dev_check_recovered(&d, 7) == -EINVAL &&
		      strstr(d.err, "device 7 reports io_desc_size 1000: expected a multiple of 8 "
				    "in 24..256"),
	      "recover: refuses descriptors of a size the kernel would not make");
	d.info.io_desc_size = 256;

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

static int read_pid(uint32_t id)
{
	struct ublk_owner o;

	return ublk_dev_read_owner(id, &o, NULL, 0) > 0 ? o.pid : 0;
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
	check(read_pid(id) == getpid() && strstr(json, pid) &&
		      strstr(json, "\"script\": \"/srv/disk.lua\"") && strstr(json, "\"index\": 2") &&
		      strstr(json, "\"args\": [\"v1\"]") &&
		      strstr(json, "\"shared\": [\"/dev/shm/ublk-lua.1.x\"]") &&
		      strstr(json, "\"store\": \"/dev/shm/ublk-lua.1.2\""),
	      "records: a recovering server changes only the pid of the old record");
	{
		struct ublk_owner o;
		unsigned long long start = 0;

		ublk_proc_start((int)getpid(), &start);
		check(ublk_dev_read_owner(id, &o, NULL, 0) == 1 && o.has_start && o.start == start,
		      "records: a recovering server records its start time with its pid");
	}
	ublk_dev_unregister(id);
	unlink(path);
	ublk_dev_register(id, "", true);
	check(read_pid(id) == getpid(),
	      "records: without an old record, a recovered device gets a new one");
	ublk_dev_unregister(id);
	unlink(path);
	if (made_dir)
		rmdir(UBLK_STATE_DIR);
}

/* A server is its pid and its start time: a process that gets the pid of
 * one that has gone is not it. */
static void test_owner_identity(void)
{
	unsigned long long start = 0;
	struct ublk_owner self = { .pid = (int)getpid(), .has_start = true };
	pid_t child = fork();

	if (child == 0)
		_exit(0);
	waitpid(child, NULL, 0);
	check(ublk_proc_start((int)getpid(), &start) == 0 && start > 0,
	      "identity: a process's start time is read from /proc/PID/stat");
	self.start = start;
	check(ublk_owner_alive(&self) == 1, "identity: a running server with its start time lives");
	self.start = start + 1;
	check(ublk_owner_alive(&self) == 0,
	      "identity: the same pid with another start time is another process: gone");
	self.pid = (int)child;
	self.start = start;
	check(ublk_owner_alive(&self) == 0, "identity: a pid that has exited is gone");
}

static void test_our_paths(void)
{
	check(ublk_dev_our_path("/dev/shm/ublk-lua.0123abcd.1") &&
		      ublk_dev_our_path("/dev/shm/ublk-lua.0123abcd.s2"),
	      "paths: a store and a region ublk-lua names are ours");
	check(!ublk_dev_our_path("/etc/passwd") && !ublk_dev_our_path("/dev/shm/other") &&
		      !ublk_dev_our_path("/dev/shm/ublk-lua.") &&
		      !ublk_dev_our_path("/dev/shm/ublk-lua.x/../../etc/passwd") &&
		      !ublk_dev_our_path("/dev/shm/ublk-lua.x/y") &&
		      !ublk_dev_our_path("/run/ublk-lua.1.2"),
	      "paths: anything else a record names is not ours");
}

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

/* Records are read whole and trusted only as far as they are ours: what
 * forgetting a device removes. */
static void test_forget(void)
{
	const uint32_t id = 1048001, other = 1048002;
	char path[64], opath[64], rec[8192], store[128], mine[128], foreign[64], shared[128];
	char args[5000];
	bool made_dir = mkdir(UBLK_STATE_DIR, 0755) == 0;
	struct ublk_owner o;

	snprintf(path, sizeof(path), "%s/dev%u", UBLK_STATE_DIR, id);
	snprintf(opath, sizeof(opath), "%s/dev%u", UBLK_STATE_DIR, other);
	if (exists(path) || exists(opath)) {
		printf("ok %d - # SKIP %s exists\n", ++checks, path);
		return;
	}
	snprintf(mine, sizeof(mine), "/dev/shm/ublk-lua.test%d.1", (int)getpid());
	snprintf(shared, sizeof(shared), "/dev/shm/ublk-lua.test%d.s1", (int)getpid());
	snprintf(foreign, sizeof(foreign), "/tmp/ublk-lua-test-%d", (int)getpid());

	/* a record with ~5 KiB of arguments: read whole, its store found */
	memset(args, 'a', sizeof(args) - 1);
	args[sizeof(args) - 1] = 0;
	snprintf(rec, sizeof(rec), "{\"args\": [\"%s\"], \"id\": %u, \"pid\": 1, \"start\": 5, "
		 "\"shared\": [\"%s\"], \"store\": \"%s\"}\n", args, id, shared, mine);
	write_file(path, rec);
	write_file(mine, "data");
	write_file(shared, "data");
	check(ublk_dev_read_owner(id, &o, store, sizeof(store)) == 1 && o.pid == 1 &&
		      o.has_start && o.start == 5 && !strcmp(store, mine),
	      "records: one with ~5 KiB of arguments is read whole");
	ublk_dev_forget_owner(id);
	check(!exists(path) && !exists(mine) && !exists(shared),
	      "records: forgetting it removes its store and regions, however long it is");

	/* a record naming a file that is not ours */
	write_file(foreign, "keep me");
	snprintf(rec, sizeof(rec), "{\"id\": %u, \"pid\": 1, \"start\": 5, \"shared\": "
		 "[\"%s\"], \"store\": \"%s\"}\n", id, foreign, foreign);
	write_file(path, rec);
	check(ublk_dev_read_owner(id, &o, store, sizeof(store)) == -EINVAL,
	      "records: one whose store is not ours is not trusted");
	ublk_dev_forget_owner(id);
	check(!exists(path) && exists(foreign),
	      "records: forgetting it leaves a file that is not ublk-lua's alone");

	/* a store another device's record names too */
	write_file(mine, "data");
	snprintf(rec, sizeof(rec), "{\"id\": %u, \"pid\": 1, \"store\": \"%s\"}\n", id, mine);
	write_file(path, rec);
	snprintf(rec, sizeof(rec), "{\"id\": %u, \"pid\": 2, \"store\": \"%s\"}\n", other, mine);
	write_file(opath, rec);
	ublk_dev_forget_owner(id);
	check(!exists(path) && exists(mine),
	      "records: a store that another device's record names is left alone");
	unlink(opath);

	/* cut short: nothing it names is trusted, and it can be removed */
	snprintf(rec, sizeof(rec), "{\"id\": %u, \"pid\": 1, \"start\": 5, \"store\": \"%s\"",
		 id, mine);
	write_file(path, rec);
	check(ublk_dev_read_owner(id, &o, NULL, 0) == -EINVAL,
	      "records: one cut short is not read as a server's");
	ublk_dev_forget_owner(id);
	check(!exists(path) && exists(mine),
	      "records: one cut short is removed, and the store it names left alone");
	write_file(path, "not json at all");
	check(ublk_dev_read_owner(id, &o, NULL, 0) == -EINVAL, "records: one that is no JSON is refused");
	ublk_dev_forget_owner(id);
	check(!exists(path), "records: one that is no JSON can be removed");

	unlink(mine);
	unlink(foreign);
	if (made_dir)
		rmdir(UBLK_STATE_DIR);
}

int main(void)
{
	test_recoverable();
	test_check_recovered();
	test_register_recovered();
	test_owner_identity();
	test_our_paths();
	test_forget();
	printf("1..%d\n", checks);
	return failed ? 1 : 0;
}
