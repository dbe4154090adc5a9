/* SPDX-License-Identifier: MIT */
/*
 * device_record.c - a device's record (ublk_state_dir()/devN, JSON) as a
 * format: written whole in one rename, read whole, believed only once it
 * parses as one object with a valid pid; and the server it names, a pid
 * with its process's start time (field 22 of /proc/PID/stat), so that a
 * process that gets a dead server's pid is never taken for it.
 * lua/ublk/state.lua reads and writes the same records.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../base/log.h"
#include "../include/state.h"
#include "device_private.h"

/* A record longer than this is not one we wrote (a script's arguments
 * make it a few KiB at most): it is refused rather than read. */
#define RECORD_MAX (1u << 20)

void ublk_record_path(char *buf, size_t len, uint32_t id)
{
	snprintf(buf, len, "%s/dev%u", ublk_state_dir(), id);
}

int ublk_proc_stat(const char *path, char *buf, size_t len, char **rest)
{
	ssize_t n;
	char *p;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return n < 0 ? -errno : -ESRCH;
	buf[n] = 0;
	/* the name (field 2) may hold spaces and parentheses: its last ')'
	 * ends it, and one space is between it and field 3 */
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return -EINVAL;
	*rest = p + 2;
	return 0;
}

int ublk_proc_start(int pid, unsigned long long *start)
{
	char path[64], buf[1024], *p;
	int ret, field;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	ret = ublk_proc_stat(path, buf, sizeof(buf), &p);
	if (ret < 0)
		return ret;
	/* p is at field 3: the space before field 22 is its 19th */
	for (p--, field = 3; p && field < 22; field++)
		p = strchr(p + 1, ' ');
	if (!p)
		return -EINVAL;
	*start = strtoull(p + 1, NULL, 10);
	return 0;
}

/* This process as records name it, read once. */
struct ublk_owner ublk_owner_self(void)
{
	static struct ublk_owner self;

	if (!self.pid) {
		unsigned long long start = 0;

		self.has_start = ublk_proc_start((int)getpid(), &start) == 0;
		self.start = start;
		self.pid = (int)getpid();
	}
	return self;
}

int ublk_owner_alive(const struct ublk_owner *o)
{
	unsigned long long start;
	int ret;

	if (o->pid <= 0)
		return -EINVAL;
	if (!o->has_start) /* a record of an older ublk-lua: the pid alone */
		return kill(o->pid, 0) == 0 || errno != ESRCH ? 1 : 0;
	ret = ublk_proc_start(o->pid, &start);
	if (ret == -ENOENT || ret == -ESRCH)
		return 0;
	if (ret < 0)
		return ret;
	return start == o->start;
}

bool ublk_owner_same(const struct ublk_owner *a, const struct ublk_owner *b)
{
	return a->pid == b->pid && a->has_start == b->has_start &&
	       (!a->has_start || a->start == b->start);
}

/* Replaces device id's record by buf in one rename, as lua/ublk/state.lua
 * does: a reader (`ublk-lua list`, another server's sweep) sees the old
 * record or the new one, never a file still being written. */
void ublk_record_write(uint32_t id, const char *buf, size_t len)
{
	char path[64], tmp[72];
	int fd;

	ublk_record_path(path, sizeof(path), id);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, buf, len) != (ssize_t)len || rename(tmp, path) < 0) {
		ublk_dbg("dev %u: cannot record its owner in %s: %s", id, path, strerror(errno));
		unlink(tmp);
	}
	if (fd >= 0)
		close(fd);
}

bool ublk_dev_our_path(const char *path)
{
	static const char prefix[] = "/dev/shm/ublk-lua.";
	size_t n = strlen(path);

	if (strncmp(path, prefix, sizeof(prefix) - 1) || n >= 128 || n == sizeof(prefix) - 1 ||
	    strstr(path, ".."))
		return false;
	for (const char *p = path + sizeof(prefix) - 1; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '_')
			return false;
	return true;
}

/* STATE_DIR/devN: {"id": N, "pid": P, "start": S, "store": "PATH"};
 * lua/ublk/state.lua rewrites it with more once the device is started,
 * keeping these.  S, the process's start time, makes P unmistakable: a
 * process that gets P once this server is gone has another. */
void ublk_record_new(uint32_t id, const char *store)
{
	struct ublk_owner self = ublk_owner_self();
	char json[256], start[40] = "";
	int n;

	if (store[0] && !ublk_dev_our_path(store))
		store = ""; /* a path of the user's own: theirs to keep or remove */
	if (self.has_start) /* (without /proc: the pid alone, as before) */
		snprintf(start, sizeof(start), ", \"start\": %llu", self.start);
	n = snprintf(json, sizeof(json), "{\"id\": %u, \"pid\": %d%s%s%s%s}\n", id, self.pid,
		     start, store[0] ? ", \"store\": \"" : "", store, store[0] ? "\"" : "");
	if (n > 0 && (size_t)n < sizeof(json))
		ublk_record_write(id, json, (size_t)n);
}

/* Where "key": is as a key of the top-level object: not inside a string,
 * not in a nested object. */
const char *ublk_record_find(const char *json, const char *key)
{
	bool in_string = false;
	size_t klen = strlen(key);
	int depth = 0;

	for (const char *p = json; *p; p++) {
		if (in_string) {
			if (*p == '\\' && p[1])
				p++;
			else if (*p == '"')
				in_string = false;
		} else if (*p == '"') {
			if (depth == 1 && !strncmp(p, key, klen))
				return p;
			in_string = true;
		} else if (*p == '{' || *p == '[') {
			depth++;
		} else if (*p == '}' || *p == ']') {
			depth--;
		}
	}
	return NULL;
}

/* Is json one whole object: braces and brackets closed, strings ended,
 * nothing after?  A record cut short (a full disk, a hand edit) is not. */
static bool json_whole(const char *json)
{
	int depth = 0;
	bool in_string = false, seen = false;
	const char *p = json + strspn(json, " \t\r\n");

	if (*p != '{')
		return false;
	for (; *p; p++) {
		if (in_string) {
			if (*p == '\\' && p[1])
				p++;
			else if (*p == '"')
				in_string = false;
		} else if (*p == '"') {
			in_string = true;
		} else if (*p == '{' || *p == '[') {
			depth++;
		} else if (*p == '}' || *p == ']') {
			if (--depth < 0)
				return false;
			if (depth == 0) {
				seen = true;
				p++;
				break;
			}
		}
	}
	return seen && p[strspn(p, " \t\r\n")] == 0;
}

/* The non-negative integer after "key": in our JSON object; -ENOENT if the
 * key is absent, -EINVAL if its value is not one. */
static int json_uint(const char *json, const char *key, unsigned long long *out)
{
	const char *p = ublk_record_find(json, key);
	char *end;

	if (!p)
		return -ENOENT;
	p += strlen(key);
	p += strspn(p, " ");
	if (*p < '0' || *p > '9')
		return -EINVAL;
	errno = 0;
	*out = strtoull(p, &end, 10);
	if (errno || (*end != ',' && *end != '}' && *end != ' ' && *end != '\n'))
		return -EINVAL;
	return 0;
}

/* The string after "key": (our own paths: no escapes), or "". */
void ublk_record_str(const char *json, const char *key, char *out, size_t len)
{
	const char *p = ublk_record_find(json, key), *end;

	out[0] = 0;
	if (!p || !(p = strchr(p + strlen(key), '"')) || !(end = strchr(++p, '"')))
		return;
	if ((size_t)(end - p) < len) {
		memcpy(out, p, (size_t)(end - p));
		out[end - p] = 0;
	}
}

/* Device id's record, whole (malloc'd, NUL-terminated), or NULL: none,
 * unreadable, or longer than any we write. */
char *ublk_record_read(uint32_t id)
{
	char path[64], *json;
	struct stat st;
	size_t got = 0;
	int fd;

	ublk_record_path(path, sizeof(path), id);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) < 0 || st.st_size <= 0 || (uint64_t)st.st_size > RECORD_MAX ||
	    !(json = malloc((size_t)st.st_size + 1))) {
		close(fd);
		return NULL;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, json + got, (size_t)st.st_size - got);

		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	json[got] = 0;
	return json;
}

/* The server a record names: 0, or -EINVAL for a record that is not whole
 * or names no valid pid (it is then trusted with nothing). */
int ublk_record_owner(const char *json, struct ublk_owner *o)
{
	unsigned long long pid, start;
	int ret;

	memset(o, 0, sizeof(*o));
	if (!json_whole(json) || json_uint(json, "\"pid\":", &pid) < 0 || pid == 0 ||
	    pid > 4194304)
		return -EINVAL;
	o->pid = (int)pid;
	ret = json_uint(json, "\"start\":", &start);
	if (ret == -EINVAL)
		return ret;
	o->has_start = ret == 0;
	o->start = o->has_start ? start : 0;
	return 0;
}

/* Writes json with the number after "key": set to v (added after the
 * opening brace when absent) into a new malloc'd string. */
char *ublk_record_with_num(const char *json, const char *key, unsigned long long v)
{
	const char *p = ublk_record_find(json, key), *rest;
	char *out;
	size_t at;

	if (p) {
		p += strlen(key);
		p += strspn(p, " ");
		at = (size_t)(p - json);
		rest = p + strspn(p, "-0123456789");
		if (asprintf(&out, "%.*s%llu%s", (int)at, json, v, rest) < 0)
			return NULL;
	} else {
		p = strchr(json, '{');
		at = (size_t)(p - json) + 1;
		if (asprintf(&out, "%.*s%s %llu,%s", (int)at, json, key, v, p + 1) < 0)
			return NULL;
	}
	return out;
}

int ublk_dev_read_owner(uint32_t id, struct ublk_owner *o, char *store, size_t len)
{
	char *json = ublk_record_read(id);
	struct ublk_owner tmp;
	char path[64];
	int ret;

	if (store && len)
		store[0] = 0;
	if (!json) {
		ublk_record_path(path, sizeof(path), id);
		return access(path, F_OK) == 0 ? -EINVAL : 0;
	}
	ret = ublk_record_owner(json, o ? o : &tmp);
	if (ret == 0 && store && len) {
		ublk_record_str(json, "\"store\":", store, len);
		if (store[0] && !ublk_dev_our_path(store))
			ret = -EINVAL;
	}
	free(json);
	return ret < 0 ? ret : 1;
}
