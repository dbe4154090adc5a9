/* SPDX-License-Identifier: MIT */
/*
 * device_delete.c - the end of a device: DEL_DEV that never waits
 * forever on a disk somebody still holds, saying who holds it, and the
 * 7.x stop that leaves an open disk alone (TRY_STOP_DEV).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../base/log.h"
#include "device.h"

/* Who keeps /dev/ublkbN open for good: "mounted on /mnt", "used by md9"
 * (a device stacked on it).  Returns the length written to out. */
static size_t lasting_holders(uint32_t id, char *out, size_t len)
{
	char dev[32], path[300], line[512];
	size_t n = 0;
	FILE *f = fopen("/proc/self/mounts", "r");
	DIR *dir;
	struct dirent *e;

	out[0] = 0;
	snprintf(dev, sizeof(dev), "/dev/ublkb%u", id);
	while (f && fgets(line, sizeof(line), f) && n < len)
		if (!strncmp(line, dev, strlen(dev)) && line[strlen(dev)] == ' ' &&
		    sscanf(line + strlen(dev) + 1, "%255s", path) == 1)
			n += (size_t)snprintf(out + n, len - n, "%smounted on %s", n ? ", " : "", path);
	if (f)
		fclose(f);
	snprintf(path, sizeof(path), "/sys/block/ublkb%u/holders", id);
	dir = opendir(path);
	while (dir && (e = readdir(dir)) && n < len)
		if (e->d_name[0] != '.')
			n += (size_t)snprintf(out + n, len - n, "%sused by %s", n ? ", " : "",
					      e->d_name);
	if (dir)
		closedir(dir);
	return n < len ? n : len - 1;
}

/* Who keeps /dev/ublkbN open: the lasting holders, and "open in pid 123
 * (dd)".  Each phrase reads after "is" or "is still". */
static void holders(uint32_t id, char *out, size_t len)
{
	char dev[32], path[600], link[64], comm[64];
	size_t n = lasting_holders(id, out, len);
	FILE *f;
	DIR *proc;
	struct dirent *p;

	snprintf(dev, sizeof(dev), "/dev/ublkb%u", id);
	proc = opendir("/proc");
	while (proc && (p = readdir(proc)) && n < len) {
		DIR *fds;
		struct dirent *fd;

		if (p->d_name[0] < '1' || p->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/fd", p->d_name);
		fds = opendir(path);
		while (fds && (fd = readdir(fds))) {
			ssize_t l;

			snprintf(path, sizeof(path), "/proc/%s/fd/%s", p->d_name, fd->d_name);
			l = readlink(path, link, sizeof(link) - 1);
			/* "/dev/ublkbN", or "/dev/ublkbN (deleted)" once removed */
			if (l <= 0 || (link[l] = 0, strncmp(link, dev, strlen(dev))) ||
			    (link[strlen(dev)] && link[strlen(dev)] != ' '))
				continue;
			snprintf(path, sizeof(path), "/proc/%s/comm", p->d_name);
			f = fopen(path, "r");
			comm[0] = 0;
			if (f && fgets(comm, sizeof(comm), f))
				comm[strcspn(comm, "\n")] = 0;
			if (f)
				fclose(f);
			n += (size_t)snprintf(out + n, len - n, "%sopen in pid %s (%s)", n ? ", " : "",
					      p->d_name, comm);
			break;
		}
		if (fds)
			closedir(fds);
	}
	if (proc)
		closedir(proc);
}

/* The last reference to a deleted device drops some time after
 * DEL_DEV_ASYNC returns even when nobody holds it (the block device's
 * inode lets go of the disk): wait for that as DEL_DEV would, but for 5 s
 * at most, then say who holds it. */
static bool gone_soon(struct ublk_ctrl *c, uint32_t id, struct ublksrv_ctrl_dev_info *info)
{
	for (int i = 0; i < 500; i++) {
		if (ublk_ctrl_get_dev_info(c, id, info) < 0)
			return true;
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
	}
	return false;
}

int ublk_dev_try_stop(struct ublk_ctrl *c, uint32_t id, char *why, size_t len)
{
	struct ublksrv_ctrl_dev_info info;
	int ret = ublk_ctrl_get_dev_info(c, id, &info);

	why[0] = 0;
	if (ret < 0)
		return ret;
	if (!(info.flags & UBLK_F_SAFE_STOP_DEV)) {
		snprintf(why, len, "a safe stop needs UBLK_F_SAFE_STOP_DEV (Linux 7.0), which "
			 "this kernel lacks");
		return -ENOTSUP;
	}
	ret = ublk_ctrl_try_stop_dev(c, id);
	if (ret == -EBUSY) {
		char who[256];

		holders(id, who, sizeof(who));
		snprintf(why, len, "/dev/ublkb%u is %s: not stopped", id,
			 who[0] ? who : "open");
	}
	return ret;
}

/* DEL_DEV, without waiting for a disk someone still holds: that would be
 * forever for a mounted one.  The device is deleted when they let go.  A
 * mount or a stacked device will not let go soon: that is said at once,
 * rather than after gone_soon's 5 s (which would also outlast a signalled
 * server's stop deadline). */
int ublk_dev_delete(struct ublk_ctrl *c, uint32_t id)
{
	struct ublksrv_ctrl_dev_info info;
	char who[256];
	bool lasting = lasting_holders(id, who, sizeof(who)) > 0;
	int ret = ublk_ctrl_del_dev_async(c, id);

	if (ret < 0) {
		ublk_err("dev %u: DEL_DEV failed: %s", id, strerror(-ret));
	} else if (lasting || !gone_soon(c, id, &info)) {
		if (!lasting)
			holders(id, who, sizeof(who));
		ublk_warn("dev %u: removed, but /dev/ublkb%u is still %s: its number is "
			  "freed when it is closed", id, id, who[0] ? who : "open");
	}
	ublk_dev_unregister(id);
	if (ret >= 0 || ret == -ENODEV) /* else the next server tries again */
		ublk_dev_forget_owner(id);
	return ret;
}
