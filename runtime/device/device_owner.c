/* SPDX-License-Identifier: MIT */
/*
 * device_owner.c - who serves which device: the ids this process has added
 * or recovered (what signals.c removes when the script cannot), and a
 * record of each device's server in ublk_state_dir() (device_record.c;
 * lua/ublk/state.lua adds to it), so that the devices a killed server left
 * (SIGKILL, the OOM killer) are removed by the next one, or kept for
 * `recover`.  A record is read, not trusted: only files of ours it names
 * are removed.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../base/log.h"
#include "../include/state.h"
#include "../queue/queue.h"
#include "device_private.h"

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t registry[1024];
static unsigned registry_len;

/* A recovering server takes over device id's record: pid and start
 * become ours, the rest stays (the script, the device's index, the
 * ublk.shared regions: what the next recovery needs).  False when there
 * is no whole record to take over. */
static bool take_over_record(uint32_t id)
{
	struct ublk_owner self = ublk_owner_self(), old;
	char *json = ublk_record_read(id), *a = NULL, *b = NULL;
	bool ok = false;

	if (json && ublk_record_owner(json, &old) == 0 && self.has_start &&
	    (a = ublk_record_with_num(json, "\"pid\":", (unsigned long long)self.pid)) &&
	    (b = ublk_record_with_num(a, "\"start\":", self.start))) {
		ublk_record_write(id, b, strlen(b));
		ok = true;
	}
	free(b);
	free(a);
	free(json);
	return ok;
}

/* Does a record other than id's name server o, or (o NULL) the path? */
static bool other_record_has(uint32_t id, const struct ublk_owner *o, const char *path)
{
	DIR *dir = opendir(ublk_state_dir());
	struct dirent *e;
	bool found = false;

	while (dir && !found && (e = readdir(dir))) {
		unsigned other;
		struct ublk_owner oo;
		char tail, *json, quoted[140];

		if (sscanf(e->d_name, "dev%u%c", &other, &tail) != 1 || other == id)
			continue;
		if (!(json = ublk_record_read(other)))
			continue;
		if (o)
			found = ublk_record_owner(json, &oo) == 0 && ublk_owner_same(o, &oo);
		else if (snprintf(quoted, sizeof(quoted), "\"%s\"", path) < (int)sizeof(quoted))
			found = strstr(json, quoted) != NULL;
		free(json);
	}
	if (dir)
		closedir(dir);
	return found;
}

/* Unlinks path if it is one of ours and no other device's record names
 * it: a record is read, not trusted. */
static void unlink_ours(uint32_t id, const char *path, const char *what)
{
	if (!ublk_dev_our_path(path)) {
		ublk_warn("dev %u: its record names %s %s, which is not one of ublk-lua's "
			  "(/dev/shm/ublk-lua.*): left alone", id, what, path);
		return;
	}
	if (other_record_has(id, NULL, path)) {
		ublk_warn("dev %u: its %s %s is named by another device's record too: left alone",
			  id, what, path);
		return;
	}
	if (unlink(path) < 0 && errno != ENOENT)
		ublk_warn("dev %u: cannot remove its %s %s: %s", id, what, path, strerror(errno));
}

/* Unlinks each string of the "shared": [...] list that is ours. */
static void unlink_shared(uint32_t id, const char *json)
{
	const char *p = ublk_record_find(json, "\"shared\":"), *end;
	char path[256];

	if (!p || !(p = strchr(p, '[')))
		return;
	while ((p = strpbrk(p, "\"]")) && *p == '"' && (end = strchr(p + 1, '"'))) {
		if ((size_t)(end - p - 1) < sizeof(path)) {
			memcpy(path, p + 1, (size_t)(end - p - 1));
			path[end - p - 1] = 0;
			unlink_ours(id, path, "ublk.shared region");
		}
		p = end + 1;
	}
}

/* The record goes, and the files it names that are ours: the store, and
 * the server's ublk.shared regions once no other device of that server is
 * left.  A record that is not whole names nothing we trust: only it goes.
 * So do the copy of the script that last served it (devN.lua,
 * lua/ublk/state.lua) and the recovery lock. */
void ublk_dev_forget_owner(uint32_t id)
{
	char path[64], store[128];
	char *json = ublk_record_read(id);
	struct ublk_owner o;

	if (json && ublk_record_owner(json, &o) == 0) {
		ublk_record_str(json, "\"store\":", store, sizeof(store));
		if (store[0])
			unlink_ours(id, store, "store");
		if (!other_record_has(id, &o, NULL))
			unlink_shared(id, json);
	} else if (json) {
		ublk_warn("dev %u: its record is not one ublk-lua wrote whole: removed, and no "
			  "file it names", id);
	}
	free(json);
	ublk_record_path(path, sizeof(path), id);
	unlink(path);
	snprintf(path, sizeof(path), "%s/dev%u.lua", ublk_state_dir(), id);
	unlink(path);
	ublk_record_path(path, sizeof(path), id);
	strncat(path, ".recovering", sizeof(path) - strlen(path) - 1);
	unlink(path); /* device_recover.c's lock */
	ublk_stats_forget(id);
}

bool ublk_dev_recoverable(const struct ublksrv_ctrl_dev_info *info)
{
	return (info->flags & UBLK_F_USER_RECOVERY) && info->state != UBLK_S_DEV_DEAD;
}

/* Is an orphan to be left where it is?  Recoverable ones wait for
 * `ublk-lua recover` or `del`.  LIVE ones too: their server has ended but
 * the kernel is still releasing them (it waits for the dead server's
 * io_uring to give back the request buffers it registered, then fails or
 * requeues its requests).  That takes milliseconds, but should a buffer
 * never be given back, a DEL_DEV would wait in del_gendisk for good
 * holding the driver's one control mutex, and every ADD_DEV and DEL_DEV on
 * the machine behind it.  Once released, the next sweep or `del` takes it
 * (cli_admin.lua's `settled` is the same rule). */
static bool leave_alone(struct ublk_ctrl *c, uint32_t id)
{
	struct ublksrv_ctrl_dev_info info;

	return ublk_ctrl_get_dev_info(c, id, &info) >= 0 &&
	       (ublk_dev_recoverable(&info) || info.state == UBLK_S_DEV_LIVE);
}

void ublk_dev_remove_orphans(struct ublk_ctrl *c)
{
	DIR *dir = opendir(ublk_state_dir());
	struct dirent *e;

	while (dir && (e = readdir(dir))) {
		struct ublk_owner o, self = ublk_owner_self();
		unsigned id;
		char tail;

		if (sscanf(e->d_name, "dev%u%c", &id, &tail) != 1)
			continue;
		if (ublk_dev_read_owner(id, &o, NULL, 0) <= 0 || ublk_owner_same(&o, &self) ||
		    ublk_owner_alive(&o) != 0)
			continue; /* its server lives (or we cannot tell) */
		if (leave_alone(c, id))
			continue;
		ublk_warn("removing device %u, left by a server that ended without removing "
			  "it (pid %d)", id, o.pid);
		ublk_ctrl_del_dev_async(c, id);
		ublk_dev_forget_owner(id);
	}
	if (dir)
		closedir(dir);
}

void ublk_dev_register(uint32_t id, const char *store, bool recovered)
{
	if (!recovered || !take_over_record(id))
		ublk_record_new(id, store);
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
