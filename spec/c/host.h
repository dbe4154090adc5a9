/* SPDX-License-Identifier: MIT */
/*
 * spec/c/host.h - what the C test programs share: one host queue (queue.h)
 * on this machine's real io_uring, no ublk driver needed, running each
 * request through the real path to its commit, tag 1's buffer, byte
 * patterns, and a capture of the log lines a test expects.  One program a
 * backend or concern (test_<name>.c -> build/test-<name>), as liburing's
 * test/ has; each prints TAP (tap.h).  Header only: the helpers are
 * static inline so a program that needs fewer builds without warnings.
 */
#ifndef UBLK_SPEC_HOST_H
#define UBLK_SPEC_HOST_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <liburing.h>

#include "../../runtime/backends/backends.h"
#include "../../runtime/base/log.h"
#include "../../runtime/queue/queue.h"
#include "../../runtime/queue/queue_private.h"
#include "tap.h"

#define DEPTH 4
#define MAX_IO (1u << 20)

/* Log lines a test expects go to a file, not the run's output: the test
 * reads them back (what stderr_end returns, up to n - 1 bytes) and checks
 * them.  stdout is flushed first so TAP lines keep their order. */
static int saved_stderr = -1;
static FILE *captured;

static inline void stderr_begin(void)
{
	fflush(stdout);
	captured = tmpfile();
	saved_stderr = dup(STDERR_FILENO);
	if (captured)
		dup2(fileno(captured), STDERR_FILENO);
}

static inline const char *stderr_end(char *out, size_t n)
{
	size_t got = 0;

	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	if (captured) {
		rewind(captured);
		got = fread(out, 1, n - 1, captured);
		fclose(captured);
	}
	out[got] = 0;
	return out;
}

static struct ublk_queue *q;

static inline void queue_open(struct ublk_backend *b)
{
	if (ublk_host_queue_open(&q, b, DEPTH, MAX_IO) < 0) {
		printf("Bail out! no io_uring here\n");
		exit(1);
	}
}

static inline void queue_close(struct ublk_backend *b)
{
	ublk_host_queue_close(q);
	b->ops->destroy(b);
}

static inline void *buf(void)
{
	return ublk_host_queue_buf(q, 1);
}

/* Runs one request on tag 1 to its commit, as the queue loop would. */
static inline int run(uint8_t op, uint32_t flags, uint64_t off, uint32_t len)
{
	return ublk_host_queue_io(q, 1, op, flags, off, len);
}

static inline void fill(uint32_t len, unsigned seed)
{
	unsigned char *p = buf();

	for (uint32_t i = 0; i < len; i++)
		p[i] = (unsigned char)(seed + i * 7);
}

static inline int is_pattern(const void *buf, uint32_t len, unsigned seed)
{
	const unsigned char *p = buf;

	for (uint32_t i = 0; i < len; i++)
		if (p[i] != (unsigned char)(seed + i * 7))
			return 0;
	return 1;
}

static inline int is_zero(const void *buf, uint32_t len)
{
	const unsigned char *p = buf;

	for (uint32_t i = 0; i < len; i++)
		if (p[i])
			return 0;
	return 1;
}

#endif
