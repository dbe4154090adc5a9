/* SPDX-License-Identifier: MIT */
/*
 * spec/c/test_record.c - the recorder over a memory base: a server taking
 * a device over (`recover`) continues the log of the one that died,
 * cutting an entry the kill left half written, and refuses a log that is
 * not this device's.  (What the log holds and the states rebuilt from it:
 * spec/record_spec.lua.)  On a host queue (host.h).  Prints TAP.
 * Build: make build/test-record
 */
#include "../../runtime/backends/record_log.h"
#include "host.h"

#define SIZE (1u << 20)

/* Makes a recorder over memory logging to `log`; `recover`: continuing. */
static int make(struct ublk_backend *b, const char *log, bool recover, uint64_t size)
{
	const char *opts[] = { "log", log, "base.backend", "memory", "base.copy", "buffer",
			       recover ? "recover" : NULL, "1", NULL };
	struct ublk_backend_conf conf = { .size = size, .block_size = 512, .opts = opts };

	memset(b, 0, sizeof(*b));
	b->ops = ublk_backend_find("record");
	return b->ops->create(b, &conf);
}

/* The entries of `log`, walked as a reader does: heads by their lengths;
 * -1 when its tail is not a whole entry. */
static int entries(const char *log)
{
	struct ublk_log_head e;
	off_t pos = sizeof(struct ublk_log_header);
	int fd = open(log, O_RDONLY), n = 0;
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0)
		return -1;
	while (pos < st.st_size) {
		if (pread(fd, &e, sizeof(e), pos) != (ssize_t)sizeof(e) ||
		    e.magic != UBLK_LOG_ENTRY_MAGIC ||
		    pos + (off_t)sizeof(e) + e.data_len > st.st_size) {
			n = -1;
			break;
		}
		pos += (off_t)sizeof(e) + e.data_len;
		n++;
	}
	close(fd);
	return n;
}

static void test_continue(void)
{
	char log[] = "/tmp/ublk-test-record-XXXXXX";
	struct ublk_backend b;
	int fd = mkstemp(log);

	close(fd);
	unlink(log); /* the recorder makes its log itself */
	check(make(&b, log, false, SIZE) == 0, "record: a new log");
	queue_open(&b);
	fill(4096, 1);
	check(run(UBLK_IO_OP_WRITE, 0, 0, 4096) == 4096, "record: a write");
	check(run(UBLK_IO_OP_FLUSH, 0, 0, 0) == 0, "record: a flush");
	queue_close(&b);
	check(entries(log) == 2, "record: two entries logged");

	/* the kill cut the next entry short: half a head and nothing more */
	fd = open(log, O_WRONLY | O_APPEND);
	check(fd >= 0 && write(fd, "\x42\x4b\x45\x52 torn", 9) == 9, "record: a torn tail added");
	close(fd);
	check(entries(log) == -1, "record: which a reader sees as torn");

	check(make(&b, log, false, SIZE) == -EEXIST, "record: a new device never takes an old log");
	check(make(&b, log, true, SIZE) == 0, "record: a recovering server continues it");
	check(strstr(b.note, "a torn last entry cut") != NULL, "record: and says it cut the tail");
	queue_open(&b);
	fill(4096, 2);
	check(run(UBLK_IO_OP_WRITE, 0, 4096, 4096) == 4096, "record: a write after the takeover");
	queue_close(&b);
	check(entries(log) == 3, "record: appended after the last whole entry");

	check(make(&b, log, true, 2 * SIZE) == -EINVAL && strstr(b.err, "records a device of"),
	      "record: a log of another size is refused, naming both");
	unlink(log);
	check(make(&b, log, true, SIZE) == -ENOENT, "record: recovering without its log fails");
}

int main(void)
{
	test_continue();
	printf("1..%d\n", checks);
	return failed ? 1 : 0;
}
