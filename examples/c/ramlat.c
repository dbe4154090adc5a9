/* SPDX-License-Identifier: MIT */
/*
 * ramlat.c - an example plugin: a RAM disk that keeps a histogram of how
 * long it takes to serve each read and write, written out when the device
 * goes (to the file named by its `report` option, else to stderr).
 * Built outside ublk-lua against the installed contract (Makefile here):
 *
 *   ublk-lua add -t plugin --path ./ramlat.so -s 64MiB --fill 7 --report /tmp/h
 *
 * and in a script: { backend = "plugin", path = "./ramlat.so", size = "64MiB" }
 * or ublk.plugin{ path = "./ramlat.so", fill = 7 } as a Lua backend's delegate.
 *
 * Its data outlives the server, so that `recover` and `reload` keep it:
 * the `store` option is declared UBLK_OPT_STORE, so with recovery on the
 * runtime names a file in /dev/shm for it, records it with the device,
 * deletes it with the device, and passes "recover" = "1" to the server
 * that takes the device over.  Without a store (recovery off) the data is
 * anonymous memory and goes with the process.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <ublk-lua/backend.h>

/* Bucket i counts requests served in [2^i, 2^(i+1)) ns. */
#define BUCKETS 32

struct ramlat {
	unsigned char *data;	/* mapped: the store file's, or anonymous */
	size_t size;
	char *report;
	/* bumped from every queue's thread at once: atomics, no lock */
	unsigned long long hist[2][BUCKETS];	/* [0] reads, [1] writes */
};

static unsigned long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

/* The store at `path`, taken over (`recover`: it must exist, holding the
 * device's data) or made anew; all of it allocated now, so that a full
 * /dev/shm is an error here rather than a SIGBUS at some later write. */
static int map_store(struct ublk_backend *b, struct ramlat *r, const char *path, bool recover)
{
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (recover ? 0 : O_CREAT | O_EXCL),
		      0600);
	int ret;

	if (fd < 0) {
		ret = -errno;
		snprintf(b->err, sizeof(b->err), "store %s: %s", path, strerror(errno));
		return ret;
	}
	ret = -posix_fallocate(fd, 0, (off_t)r->size);
	if (!ret) {
		r->data = mmap(NULL, r->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (r->data == MAP_FAILED)
			ret = -errno;
	}
	close(fd);
	if (ret < 0) {
		r->data = NULL;
		snprintf(b->err, sizeof(b->err), "store %s: %s", path, strerror(-ret));
		if (!recover)
			unlink(path);
		return ret;
	}
	/* recorded with the device and deleted with it */
	snprintf(b->store, sizeof(b->store), "%s", path);
	return 0;
}

static int ramlat_create(struct ublk_backend *b, const struct ublk_backend_conf *conf)
{
	const char *report = NULL, *store = NULL;
	bool recover = ublk_conf_flag(conf, "recover");
	unsigned fill = 0;
	struct ramlat *r;
	int ret;

	/* read by their declarations (ramlat_opts): fill from 0 to 255 */
	if ((ret = ublk_conf_uint(b, conf, "fill", &fill)) < 0 ||
	    (ret = ublk_conf_string(b, conf, "report", &report)) < 0 ||
	    (ret = ublk_conf_string(b, conf, "store", &store)) < 0)
		return ret;
	if (!conf->size) {
		snprintf(b->err, sizeof(b->err), "ramlat needs a size");
		return -EINVAL;
	}
	if (store && strlen(store) >= sizeof(b->store)) {
		snprintf(b->err, sizeof(b->err), "store: a path of at most %zu bytes",
			 sizeof(b->store) - 1);
		return -ENAMETOOLONG;
	}
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	ret = -ENOMEM;
	r->size = conf->size;
	if (store) {
		ret = map_store(b, r, store, recover);
		if (ret < 0)
			goto fail;
	} else {
		r->data = mmap(NULL, r->size, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (r->data == MAP_FAILED) {
			r->data = NULL;
			goto fail;
		}
	}
	if (report) {
		r->report = strdup(report);
		if (!r->report)
			goto fail;
	}
	/* new memory reads as zeroes, and a store taken over keeps what it
	 * holds */
	if (!recover && fill)
		memset(r->data, (int)fill, conf->size);
	b->priv = r;
	b->size = conf->size;
	b->caps = UBLK_CAN_DISCARD | UBLK_CAN_WRITE_ZEROES;
	return 0;
fail:
	if (r->data)
		munmap(r->data, r->size);
	if (store && !recover && r->data)
		unlink(store);
	b->store[0] = '\0';
	free(r);
	return ret;
}

static void write_report(const struct ramlat *r, FILE *f)
{
	static const char *const names[2] = { "read", "write" };

	for (int op = 0; op < 2; op++)
		for (int i = 0; i < BUCKETS; i++)
			if (r->hist[op][i])
				fprintf(f, "%s %llu-%llu ns: %llu\n", names[op], 1ull << i,
					(1ull << (i + 1)) - 1, r->hist[op][i]);
}

static void ramlat_destroy(struct ublk_backend *b)
{
	struct ramlat *r = b->priv;
	FILE *f = r->report ? fopen(r->report, "w") : stderr;

	if (f) {
		write_report(r, f);
		if (f != stderr)
			fclose(f);
	} else {
		fprintf(stderr, "ramlat: cannot write %s: %s\n", r->report, strerror(errno));
	}
	free(r->report);
	munmap(r->data, r->size);
	free(r);
}

static void count(struct ramlat *r, int op, unsigned long long ns)
{
	int i = 0;

	while (i < BUCKETS - 1 && ns >> (i + 1))
		i++;
	__atomic_fetch_add(&r->hist[op][i], 1, __ATOMIC_RELAXED);
}

/* No UBLK_CAN_USER_COPY nor ZERO_COPY: io->buf is always the data. */
static int ramlat_handle_io(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io)
{
	struct ramlat *r = b->priv;
	unsigned long long t0 = now_ns();

	(void)q;
	if (io->offset > b->size || io->len > b->size - io->offset)
		return -EIO;
	switch (io->op) {
	case UBLK_IO_OP_READ:
		memcpy(io->buf, r->data + io->offset, io->len);
		count(r, 0, now_ns() - t0);
		return (int)io->len;
	case UBLK_IO_OP_WRITE:
		memcpy(r->data + io->offset, io->buf, io->len);
		count(r, 1, now_ns() - t0);
		return (int)io->len;
	case UBLK_IO_OP_DISCARD:
	case UBLK_IO_OP_WRITE_ZEROES:
		memset(r->data + io->offset, 0, io->len);
		return (int)io->len;
	case UBLK_IO_OP_FLUSH:
		return 0;
	default:
		return -EOPNOTSUPP;
	}
}

static const struct ublk_backend_opt ramlat_opts[] = {
	{ .name = "fill", .kind = UBLK_OPT_INT, .min = 0, .max = 255, .def = "0",
	  .help = "the byte every block holds before it is written" },
	{ .name = "report", .kind = UBLK_OPT_STRING, .def = "stderr",
	  .help = "the file the latency histogram is written to when the device goes" },
	{ .name = "store", .kind = UBLK_OPT_STRING, .flags = UBLK_OPT_STORE,
	  .def = "one in /dev/shm with recovery on",
	  .help = "the file holding the data, so that recover and reload keep it" },
	{ 0 }
};

static const struct ublk_backend_ops ramlat_ops = {
	.name = "ramlat",
	.opts = ramlat_opts,
	.create = ramlat_create,
	.destroy = ramlat_destroy,
	.handle_io = ramlat_handle_io,
};

UBLK_BACKEND_PLUGIN(ramlat_ops);
