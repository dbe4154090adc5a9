/* SPDX-License-Identifier: MIT */
/*
 * spec/fuzz/fuzz_requests.c - libFuzzer target: whatever descriptors the
 * kernel could hand us (any op, flags, sector and length, in any order)
 * run through the real request path of a host queue on the memory, null
 * and file backends: any op byte, sectors inside, just past and far past
 * the end, lengths up to twice max_io.  Invariants: no crash or sanitizer report, every
 * request commits exactly one result, and that result is -errno or at
 * most the request's length.  Build and run: make fuzz.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../runtime/backends/backends.h"
#include "../../runtime/base/log.h"
#include "../../runtime/queue/queue.h"

#define DEPTH 4
#define MAX_IO (128u << 10)
#define SIZE (4u << 20)

struct target {
	struct ublk_backend b;
	struct ublk_queue *q;
};

static struct target targets[3];
static char path[] = "/tmp/ublk-fuzz-XXXXXX";

static void open_target(struct target *t, const char *name, const char *const *opts)
{
	struct ublk_backend_conf conf = { .size = SIZE, .block_size = 512, .opts = opts };

	t->b.ops = ublk_backend_find(name);
	if (!t->b.ops || t->b.ops->create(&t->b, &conf) < 0 ||
	    ublk_host_queue_open(&t->q, &t->b, DEPTH, MAX_IO) < 0) {
		fprintf(stderr, "fuzz: cannot set up the %s backend\n", name);
		abort();
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *file_opts[] = { "path", path, "create", "1", NULL };
	int fd = mkstemp(path);

	(void)argc;
	(void)argv;
	if (fd < 0)
		abort();
	close(fd);
	ublk_log_set_level(-1); /* errors are the point here, not news */
	open_target(&targets[0], "memory", NULL);
	open_target(&targets[1], "null", NULL);
	open_target(&targets[2], "file", file_opts);
	unlink(path); /* the open fd keeps it while we run */
	return 0;
}

/* 12 bytes a request: target, op, tag, flags byte, sector (4), sectors (4). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (; size >= 12; data += 12, size -= 12) {
		struct target *t = &targets[data[0] % 3];
		/* mostly the 6 real ops and two that are not; any byte at times */
		uint8_t op = data[1] & 0x80 ? data[1] : data[1] % 8;
		uint16_t tag = data[2] % DEPTH;
		uint32_t flags = (uint32_t)data[3] << 8; /* FUA, NOUNMAP, ... */
		uint32_t sector, sectors;
		int ret;

		memcpy(&sector, data + 4, 4);
		memcpy(&sectors, data + 8, 4);
		if (!(data[3] & 1)) /* mostly inside, sometimes just past the end */
			sector %= (SIZE >> 9) + 64;
		sectors %= 2 * (MAX_IO >> 9) + 16;
		ret = ublk_host_queue_io(t->q, tag, op, flags, (uint64_t)sector << 9, sectors << 9);
		if (ret == -EDEADLK) /* a request that never committed */
			abort();
		if (ret > (int)(sectors << 9))
			abort();
	}
	return 0;
}
