/* SPDX-License-Identifier: MIT */
/* log.c - every message on stderr in one shape, "ublk-lua[PID]: LEVEL:
 * text" (the "[PID]" only in a background server, whose log every server
 * shares, as the CLI's own lines there say it), a message of several lines
 * (a Lua traceback) with its following lines indented under the first.
 * One write(2) a message, so that messages from queue threads never
 * interleave. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

int ublk_log_level = UBLK_LOG_WARN;
static int log_pid; /* say the pid: a background server (UBLK_SERVE) */

void ublk_log_set_level(int level)
{
	ublk_log_level = level;
}

void ublk_log_init_from_env(void)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	const char *v = getenv("UBLK_LOG");

	log_pid = getenv("UBLK_SERVE") != NULL;
	if (!v)
		return;
	for (int i = 0; i < 4; i++)
		if (!strcmp(v, names[i]))
			ublk_log_level = i;
}

void ublk_log_write(int level, const char *fmt, ...)
{
	static const char *const tags[] = { "error", "warning", "info", "debug" };
	/* at most PIPE_BUF: one write to a pipe or an O_APPEND log is whole */
	char text[2048], line[4096];
	size_t n, cap = sizeof(line) - 1;
	va_list ap;
	int len;

	if (log_pid)
		len = snprintf(line, sizeof(line), "ublk-lua[%d]: %s: ", (int)getpid(),
			       tags[level < 0 ? 0 : level > 3 ? 3 : level]);
	else
		len = snprintf(line, sizeof(line), "ublk-lua: %s: ",
			       tags[level < 0 ? 0 : level > 3 ? 3 : level]);
	n = len > 0 ? (size_t)len : 0;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	/* following lines indented under the first, a tab as two spaces */
	for (const char *c = text; *c && n < cap - 4; c++) {
		if (*c == '\n' && c[1]) {
			memcpy(line + n, "\n    ", 5);
			n += 5;
		} else if (*c == '\t') {
			memcpy(line + n, "  ", 2);
			n += 2;
		} else if (*c != '\n') {
			line[n++] = *c;
		}
	}
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0)
		return; /* nowhere left to report it */
}
