/* SPDX-License-Identifier: MIT */
/* log.c - one line per message on stderr, written with a single write(2)
 * so that lines from queue threads never interleave mid-line. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

int ublk_log_level = UBLK_LOG_WARN;

void ublk_log_set_level(int level)
{
	ublk_log_level = level;
}

void ublk_log_init_from_env(void)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	const char *v = getenv("UBLK_LOG");

	if (!v)
		return;
	for (int i = 0; i < 4; i++)
		if (!strcmp(v, names[i]))
			ublk_log_level = i;
}

void ublk_log_write(int level, const char *fmt, ...)
{
	static const char *const tags[] = { "error", "warning", "info", "debug" };
	char line[1024];
	int n = snprintf(line, sizeof(line), "ublk-lua: %s: ",
			 tags[level < 0 ? 0 : level > 3 ? 3 : level]);
	va_list ap;

	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return; /* nowhere left to report it */
}
