/* SPDX-License-Identifier: MIT */
/*
 * device_delete.c - the end of a device: the ids this process has added
 * (what signals.c removes when the script cannot), and DEL_DEV that never
 * waits forever on a disk somebody still holds, saying who holds it.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "device.h"
#include "log.h"

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t registry[1024];
static unsigned registry_len;

void ublk_dev_register(uint32_t id)
{
	pthread_mutex_lock(&registry_lock);
	if (registry_len < sizeof(registry) / sizeof(registry[0]))
		registry[registry_len++] = id;
	pthread_mutex_unlock(&registry_lock);
}

static void registry_del(uint32_t id)
{
	pthread_mutex_lock(&registry_lock);
	for (unsigned i = 0; i < registry_len; i++)
		if (registry[i] == id) {
			registry[i] = registry[--registry_len];
			break;
		}
	pthread_mutex_unlock(&registry_lock);
}

int ublk_dev_ids(uint32_t *ids, int max)
{
	int n = 0;

	pthread_mutex_lock(&registry_lock);
	for (unsigned i = 0; i < registry_len && n < max; i++)
		ids[n++] = registry[i];
	pthread_mutex_unlock(&registry_lock);
	return n;
}

/* Who keeps /dev/ublkbN open: "mounted on /mnt" or "pid 123 (dd)". */
static void holders(uint32_t id, char *out, size_t len)
{
	char dev[32], path[600], line[512], link[64], comm[64];
	size_t n = 0;
	FILE *f = fopen("/proc/self/mounts", "r");
	DIR *proc;
	struct dirent *p;

	out[0] = 0;
	snprintf(dev, sizeof(dev), "/dev/ublkb%u", id);
	while (f && fgets(line, sizeof(line), f) && n < len)
		if (!strncmp(line, dev, strlen(dev)) && line[strlen(dev)] == ' ' &&
		    sscanf(line + strlen(dev) + 1, "%255s", path) == 1)
			n += (size_t)snprintf(out + n, len - n, "%smounted on %s", n ? ", " : "", path);
	if (f)
		fclose(f);
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
			if (l <= 0 || (link[l] = 0, strcmp(link, dev)))
				continue;
			snprintf(path, sizeof(path), "/proc/%s/comm", p->d_name);
			f = fopen(path, "r");
			comm[0] = 0;
			if (f && fgets(comm, sizeof(comm), f))
				comm[strcspn(comm, "\n")] = 0;
			if (f)
				fclose(f);
			n += (size_t)snprintf(out + n, len - n, "%spid %s (%s)", n ? ", " : "",
					      p->d_name, comm);
			break;
		}
		if (fds)
			closedir(fds);
	}
	if (proc)
		closedir(proc);
}

/* DEL_DEV, without waiting for a disk someone still holds: that would be
 * forever for a mounted one.  The device is deleted when they let go. */
void ublk_dev_delete(struct ublk_ctrl *c, uint32_t id)
{
	struct ublksrv_ctrl_dev_info info;
	int ret = ublk_ctrl_del_dev_async(c, id);

	if (ret == -EOPNOTSUPP || ret == -EINVAL) /* before 6.9: wait, as we must */
		ret = ublk_ctrl_del_dev(c, id);
	if (ret < 0) {
		ublk_err("dev %u: DEL_DEV failed: %s", id, strerror(-ret));
	} else if (ublk_ctrl_get_dev_info(c, id, &info) >= 0) {
		char who[256];

		holders(id, who, sizeof(who));
		ublk_warn("dev %u: removed, but /dev/ublkb%u is still held open%s%s: its "
			  "number is freed when it is closed", id, id, who[0] ? " by " : "", who);
	}
	registry_del(id);
}

