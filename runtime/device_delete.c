/* SPDX-License-Identifier: MIT */
/*
 * device_delete.c - the end of a device: the ids this process has added
 * (what signals.c removes when the script cannot), their owners recorded
 * in UBLK_STATE_DIR so that devices a killed server left (SIGKILL, the
 * OOM killer) are removed by the next one, and DEL_DEV that never waits
 * forever on a disk somebody still holds, saying who holds it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "device.h"
#include "log.h"
#include "stats.h"

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t registry[1024];
static unsigned registry_len;

static void owner_path(char *buf, size_t len, uint32_t id)
{
	snprintf(buf, len, "%s/dev%u", UBLK_STATE_DIR, id);
}

/* STATE_DIR/devN: {"pid": P, "store": "PATH"}; lua/ublk/state.lua
 * rewrites it with more once the device is started, keeping these two. */
static void record_owner(uint32_t id, const char *store)
{
	char path[64], json[256];
	int fd, n;

	mkdir(UBLK_STATE_DIR, 0755);
	owner_path(path, sizeof(path), id);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	n = snprintf(json, sizeof(json), "{\"id\": %u, \"pid\": %d%s%s%s}\n", id, (int)getpid(),
		     store[0] ? ", \"store\": \"" : "", store, store[0] ? "\"" : "");
	if (fd < 0 || write(fd, json, (size_t)n) != n)
		ublk_dbg("dev %u: cannot record its owner in %s: %s", id, path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* Where "key": is, as a key: not inside a string (escaped quotes). */
static const char *json_find(const char *json, const char *key)
{
	const char *p = json;

	while ((p = strstr(p, key)) && p > json && p[-1] == '\\')
		p++;
	return p;
}

/* The number after "key": in our JSON object, or 0. */
static long json_num(const char *json, const char *key)
{
	const char *p = json_find(json, key);

	return p ? strtol(p + strlen(key), NULL, 10) : 0;
}

/* The string after "key": (our own paths: no escapes), or "". */
static void json_str(const char *json, const char *key, char *out, size_t len)
{
	const char *p = json_find(json, key), *end;

	out[0] = 0;
	if (!p || !(p = strchr(p + strlen(key), '"')) || !(end = strchr(++p, '"')))
		return;
	if ((size_t)(end - p) < len) {
		memcpy(out, p, (size_t)(end - p));
		out[end - p] = 0;
	}
}

/* Device id's record into json (NUL-terminated); its length, 0 if none. */
static size_t read_record(uint32_t id, char *json, size_t len)
{
	char path[64];
	ssize_t n;
	int fd;

	json[0] = 0;
	owner_path(path, sizeof(path), id);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, json, len - 1);
	close(fd);
	json[n > 0 ? n : 0] = 0;
	return n > 0 ? (size_t)n : 0;
}

/* A recovering server takes over device id's record: the pid becomes
 * ours, the rest stays (the script, the device's index, the ublk.shared
 * regions: what the next recovery needs).  Replaced in one rename, as
 * lua/ublk/state.lua does.  False when there is no record to take over,
 * or one too long to read whole here (state.lua rewrites that one). */
static bool take_over_record(uint32_t id)
{
	char path[64], tmp[72], json[16384], out[16400];
	const char *p;
	size_t at, n = read_record(id, json, sizeof(json));
	int fd, len;

	if (!n || n == sizeof(json) - 1 || !(p = json_find(json, "\"pid\":")))
		return false;
	p += strlen("\"pid\":");
	p += strspn(p, " ");
	at = (size_t)(p - json);
	p += strspn(p, "-0123456789");
	len = snprintf(out, sizeof(out), "%.*s%d%s", (int)at, json, (int)getpid(), p);
	if (len < 0 || (size_t)len >= sizeof(out))
		return false;
	owner_path(path, sizeof(path), id);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, out, (size_t)len) != len || rename(tmp, path) < 0) {
		ublk_dbg("dev %u: cannot take over its record %s: %s", id, path, strerror(errno));
		unlink(tmp);
	}
	if (fd >= 0)
		close(fd);
	return true;
}

int ublk_dev_read_owner(uint32_t id, char *store, size_t len)
{
	char json[4096];

	if (store && len)
		store[0] = 0;
	if (!read_record(id, json, sizeof(json)))
		return 0;
	if (store && len)
		json_str(json, "\"store\":", store, len);
	return (int)json_num(json, "\"pid\":");
}

/* Does another record name server pid? */
static bool pid_has_other(int pid, uint32_t id)
{
	DIR *dir = opendir(UBLK_STATE_DIR);
	struct dirent *e;
	bool found = false;

	while (dir && !found && (e = readdir(dir))) {
		unsigned other;
		char tail;

		if (sscanf(e->d_name, "dev%u%c", &other, &tail) == 1 && other != id)
			found = ublk_dev_read_owner(other, NULL, 0) == pid;
	}
	if (dir)
		closedir(dir);
	return found;
}

/* Unlinks each string of the "shared": [...] list (our own paths). */
static void unlink_shared(const char *json)
{
	const char *p = json_find(json, "\"shared\":"), *end;
	char path[256];

	if (!p || !(p = strchr(p, '[')))
		return;
	while ((p = strpbrk(p, "\"]")) && *p == '"' && (end = strchr(p + 1, '"'))) {
		if ((size_t)(end - p - 1) < sizeof(path)) {
			memcpy(path, p + 1, (size_t)(end - p - 1));
			path[end - p - 1] = 0;
			unlink(path);
		}
		p = end + 1;
	}
}

/* The record goes, and the files it names: the store, and the server's
 * ublk.shared regions once no other device of that server is left. */
void ublk_dev_forget_owner(uint32_t id)
{
	char path[64], store[128], json[4096];
	int pid;

	read_record(id, json, sizeof(json));
	pid = (int)json_num(json, "\"pid\":");
	json_str(json, "\"store\":", store, sizeof(store));
	if (store[0] && unlink(store) < 0 && errno != ENOENT)
		ublk_warn("dev %u: cannot remove its store %s: %s", id, store, strerror(errno));
	if (pid > 0 && !pid_has_other(pid, id))
		unlink_shared(json);
	owner_path(path, sizeof(path), id);
	unlink(path);
	ublk_stats_forget(id);
}

bool ublk_dev_recoverable(const struct ublksrv_ctrl_dev_info *info)
{
	return (info->flags & UBLK_F_USER_RECOVERY) && info->state != UBLK_S_DEV_DEAD;
}

static bool recoverable(struct ublk_ctrl *c, uint32_t id)
{
	struct ublksrv_ctrl_dev_info info;

	return ublk_ctrl_get_dev_info(c, id, &info) >= 0 && ublk_dev_recoverable(&info);
}

void ublk_dev_remove_orphans(struct ublk_ctrl *c)
{
	DIR *dir = opendir(UBLK_STATE_DIR);
	struct dirent *e;

	while (dir && (e = readdir(dir))) {
		unsigned id;
		int pid;
		char tail;

		if (sscanf(e->d_name, "dev%u%c", &id, &tail) != 1)
			continue;
		pid = ublk_dev_read_owner(id, NULL, 0);
		if (pid <= 0 || pid == getpid() || kill(pid, 0) == 0 || errno != ESRCH)
			continue; /* its server lives (or we cannot tell) */
		if (recoverable(c, id))
			continue; /* waits for `ublk-lua recover` or `del` */
		ublk_warn("removing device %u, left by a server that ended without removing "
			  "it (pid %d)", id, pid);
		ublk_ctrl_del_dev_async(c, id);
		ublk_dev_forget_owner(id);
	}
	if (dir)
		closedir(dir);
}

void ublk_dev_register(uint32_t id, const char *store, bool recovered)
{
	if (!recovered || !take_over_record(id))
		record_owner(id, store);
	pthread_mutex_lock(&registry_lock);
	if (registry_len < sizeof(registry) / sizeof(registry[0]))
		registry[registry_len++] = id;
	pthread_mutex_unlock(&registry_lock);
}

void ublk_dev_unregister(uint32_t id)
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

/* Who keeps /dev/ublkbN open: the lasting holders, and "pid 123 (dd)". */
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
		snprintf(why, len, "/dev/ublkb%u is open%s%s: not stopped", id,
			 who[0] ? " by " : "", who);
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
		ublk_warn("dev %u: removed, but /dev/ublkb%u is still held open%s%s: its "
			  "number is freed when it is closed", id, id, who[0] ? " by " : "", who);
	}
	ublk_dev_unregister(id);
	if (ret >= 0 || ret == -ENODEV) /* else the next server tries again */
		ublk_dev_forget_owner(id);
	return ret;
}
