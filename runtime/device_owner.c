/* SPDX-License-Identifier: MIT */
/*
 * device_owner.c - who serves which device: the ids this process has added
 * or recovered (what signals.c removes when the script cannot), and a
 * record of each device's server in UBLK_STATE_DIR (lua/ublk/state.lua
 * adds to it), so that the devices a killed server left (SIGKILL, the OOM
 * killer) are removed by the next one, or kept for `recover`.
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

/* Replaces device id's record by buf in one rename, as lua/ublk/state.lua
 * does: a reader (`ublk-lua list`, another server's sweep) sees the old
 * record or the new one, never a file still being written. */
static void write_record(uint32_t id, const char *buf, size_t len)
{
	char path[64], tmp[72];
	int fd;

	mkdir(UBLK_STATE_DIR, 0755);
	owner_path(path, sizeof(path), id);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, buf, len) != (ssize_t)len || rename(tmp, path) < 0) {
		ublk_dbg("dev %u: cannot record its owner in %s: %s", id, path, strerror(errno));
		unlink(tmp);
	}
	if (fd >= 0)
		close(fd);
}

/* STATE_DIR/devN: {"pid": P, "store": "PATH"}; lua/ublk/state.lua
 * rewrites it with more once the device is started, keeping these two. */
static void record_owner(uint32_t id, const char *store)
{
	char json[256];
	int n = snprintf(json, sizeof(json), "{\"id\": %u, \"pid\": %d%s%s%s}\n", id,
			 (int)getpid(), store[0] ? ", \"store\": \"" : "", store,
			 store[0] ? "\"" : "");

	if (n > 0 && (size_t)n < sizeof(json))
		write_record(id, json, (size_t)n);
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
 * regions: what the next recovery needs).  False when there is no record
 * to take over, or one too long to read whole here (state.lua rewrites
 * that one). */
static bool take_over_record(uint32_t id)
{
	char json[16384], out[16400];
	const char *p;
	size_t at, n = read_record(id, json, sizeof(json));
	int len;

	if (!n || n == sizeof(json) - 1 || !(p = json_find(json, "\"pid\":")))
		return false;
	p += strlen("\"pid\":");
	p += strspn(p, " ");
	at = (size_t)(p - json);
	p += strspn(p, "-0123456789");
	len = snprintf(out, sizeof(out), "%.*s%d%s", (int)at, json, (int)getpid(), p);
	if (len < 0 || (size_t)len >= sizeof(out))
		return false;
	write_record(id, out, (size_t)len);
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
 * ublk.shared regions once no other device of that server is left; and
 * the copy of the script that last served it (devN.lua, lua/ublk/state.lua). */
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
	snprintf(path, sizeof(path), "%s/dev%u.lua", UBLK_STATE_DIR, id);
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
