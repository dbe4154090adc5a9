/* SPDX-License-Identifier: MIT */
/*
 * log.h - a level-gated logger.  The level test is inline so that a
 * disabled debug line costs one compare, never a call or a format.
 */
#ifndef UBLK_LOG_H
#define UBLK_LOG_H

enum ublk_log_level {
	UBLK_LOG_ERROR = 0,
	UBLK_LOG_WARN = 1,
	UBLK_LOG_INFO = 2,
	UBLK_LOG_DEBUG = 3,
};

extern int ublk_log_level;

void ublk_log_set_level(int level);
/* Reads UBLK_LOG=error|warn|info|debug once; default warn. */
void ublk_log_init_from_env(void);
void ublk_log_write(int level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define ublk_log(level, ...)                                                \
	do {                                                                \
		if ((level) <= ublk_log_level)                              \
			ublk_log_write((level), __VA_ARGS__);               \
	} while (0)

#define ublk_err(...) ublk_log(UBLK_LOG_ERROR, __VA_ARGS__)
#define ublk_warn(...) ublk_log(UBLK_LOG_WARN, __VA_ARGS__)
#define ublk_info(...) ublk_log(UBLK_LOG_INFO, __VA_ARGS__)
#define ublk_dbg(...) ublk_log(UBLK_LOG_DEBUG, __VA_ARGS__)

#endif
