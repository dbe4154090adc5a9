/* SPDX-License-Identifier: MIT */
/*
 * spec/c/test_record.c - the recorder over a memory base: a server taking
 * a device over (`recover`) continues the log of the one that died,
 * cutting an entry the kill left half written, and refuses a log that is
 * not this device's; a killed server's log, which ends in the room its
 * writer mapped ahead, is continued after its last entry; queue threads
 * logging at once lose no entry and tear none.  (What the log holds and
 * the states rebuilt from it: spec/record_spec.lua.)  On a host queue
 * (host.h).  Prints TAP.
 * Build: make build/test-record
 */
#include <pthread.h>
#include <sys/file.h>
#include <sys/wait.h>

#include "../../runtime/backends/record_log.h"
#include "../../runtime/base/xxh64.h"
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

/* The first write of a server that took the log over (where the log is
 * continued), at 4096 with pattern `seed`, on a queue over b left open:
 * served?  What it said goes to msg. */
static bool first_write(struct ublk_backend *b, unsigned seed, char *msg, size_t len)
{
	bool ok;

	queue_open(b);
	fill(4096, seed);
	stderr_begin();
	ok = run(UBLK_IO_OP_WRITE, 0, 4096, 4096) == 4096;
	stderr_end(msg, len);
	return ok;
}

static void test_continue(void)
{
	char log[] = "/tmp/ublk-test-record-XXXXXX", msg[1024];
	struct ublk_backend b;
	bool ok;
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
	ok = first_write(&b, 2, msg, sizeof(msg));
	check(ok, "record: a write after the takeover");
	check(strstr(msg, "a torn last entry cut") != NULL, "record: which says it cut the tail");
	queue_close(&b);
	check(entries(log) == 3, "record: appended after the last whole entry");

	check(make(&b, log, true, 2 * SIZE) == -EINVAL && strstr(b.err, "records a device of"),
	      "record: a log of another size is refused, naming both");
	unlink(log);
	check(make(&b, log, true, SIZE) == -ENOENT, "record: recovering without its log fails");
}

/* A server killed while it recorded: its log goes on in zeros after the
 * last entry (room mapped ahead), which a reader and a server taking
 * over treat as the end, not as a torn entry. */
static void test_killed(void)
{
	char log[] = "/tmp/ublk-test-record-XXXXXX";
	struct ublk_backend b;
	struct stat st;
	int fd = mkstemp(log), status = -1, holding[2];
	char msg[1024];
	bool ok;
	pid_t pid;

	close(fd);
	if (pipe(holding) < 0)
		return;
	unlink(log);
	pid = fork();
	if (pid == 0) {
		if (make(&b, log, false, SIZE) < 0)
			_exit(1);
		queue_open(&b);
		fill(4096, 3);
		_exit(run(UBLK_IO_OP_WRITE, 0, 0, 4096) == 4096 ? 0 : 1); /* never closed */
	}
	check(pid > 0 && waitpid(pid, &status, 0) == pid && status == 0,
	      "killed: a server that recorded a write and died");
	check(stat(log, &st) == 0 && st.st_size > (off_t)(64 + 40 + 4096),
	      "killed: its log ends in the room its writer mapped ahead");
	check(make(&b, log, true, SIZE) == 0, "killed: a server taking over continues it");
	/* as a reload's old server does until it has handed over: holds the
	 * log a while; the new one's first entry waits for it */
	pid = fork();
	if (pid == 0) {
		fd = open(log, O_RDONLY);
		flock(fd, LOCK_EX);
		write(holding[1], "h", 1);
		usleep(300 * 1000);
		_exit(0);
	}
	check(read(holding[0], msg, 1) == 1, "killed: another process holds the log");
	ok = first_write(&b, 4, msg, sizeof(msg));
	check(ok, "killed: a write after the takeover, once the other let go");
	check(strstr(msg, "torn") == NULL, "killed: the zeros are no torn entry");
	waitpid(pid, &status, 0);
	queue_close(&b);
	check(entries(log) == 2, "killed: both writes logged, the second after the first");
	unlink(log);
}

#define THREADS 2
#define PER_THREAD 2500 /* 2 x 2500 x 4136 bytes: past the first chunk mapped */

struct writer {
	struct ublk_record_log *log;
	unsigned id;
	int failed;
};

static void *write_entries(void *arg)
{
	struct writer *w = arg;
	static __thread uint32_t data[1024];

	for (unsigned i = 0; i < PER_THREAD; i++) {
		struct ublk_io io = { .op = UBLK_IO_OP_WRITE, .len = sizeof(data), .buf = data,
				      .offset = ((uint64_t)w->id * PER_THREAD + i) * 4096 };

		for (unsigned k = 0; k < 1024; k++)
			data[k] = w->id << 24 | i;
		if (ublk_record_log_io(w->log, NULL, &io, UBLK_CAN_FLUSH | UBLK_CAN_FUA) != 0)
			w->failed++;
	}
	return NULL;
}

/* Two threads log at once, as two queues do: every entry whole, its check
 * right, its data the one its offset says. */
static void test_threads(void)
{
	char log[] = "/tmp/ublk-test-record-XXXXXX";
	struct ublk_backend b = { 0 };
	struct ublk_record_log l;
	struct writer w[THREADS];
	pthread_t t[THREADS];
	struct ublk_log_head e;
	static uint32_t data[1024];
	unsigned n = 0, bad = 0, lost = 0;
	off_t pos = sizeof(struct ublk_log_header);
	int fd = mkstemp(log);

	close(fd);
	unlink(log);
	check(ublk_record_log_open(&l, log, false, 512, 1ull << 30, &b) == 0, "threads: a log");
	for (unsigned i = 0; i < THREADS; i++) {
		w[i] = (struct writer){ .log = &l, .id = i };
		pthread_create(&t[i], NULL, write_entries, &w[i]);
	}
	for (unsigned i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		lost += w[i].failed;
	}
	ublk_record_log_close(&l);
	check(lost == 0, "threads: every write logged");
	fd = open(log, O_RDONLY);
	while (pread(fd, &e, sizeof(e), pos) == (ssize_t)sizeof(e) &&
	       pread(fd, data, sizeof(data), pos + sizeof(e)) == (ssize_t)sizeof(data)) {
		uint32_t want = e.check, id = (uint32_t)(e.offset / 4096 / PER_THREAD),
			 i = (uint32_t)(e.offset / 4096 % PER_THREAD);

		e.check = 0;
		if (e.magic != UBLK_LOG_ENTRY_MAGIC || e.data_len != sizeof(data) ||
		    (uint32_t)ublk_xxh64(data, sizeof(data), ublk_xxh64(&e, sizeof(e), 0)) != want ||
		    data[0] != (id << 24 | i) || data[1023] != data[0])
			bad++;
		n++;
		pos += sizeof(e) + sizeof(data);
	}
	if (n != THREADS * PER_THREAD || bad)
		fprintf(stderr, "# %u entries, %u of them bad\n", n, bad);
	check(n == THREADS * PER_THREAD && bad == 0, "threads: every entry whole, checked, in place");
	close(fd);
	unlink(log);
}

int main(void)
{
	test_continue();
	test_killed();
	test_threads();
	printf("1..%d\n", checks);
	return failed ? 1 : 0;
}
