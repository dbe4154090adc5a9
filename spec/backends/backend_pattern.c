/* SPDX-License-Identifier: MIT */
/*
 * backend_pattern.c - a test-only backend: a RAM disk that starts out
 * holding a pattern of its `seed` option (byte at offset o is
 * (o + seed) % 251), so a reader can tell that the option reached it.
 * It exists to prove what adding a C backend takes: this one file and
 * one line in the registry (runtime/backends/backend.c); from its
 * declaration alone come ublk.pattern{}, backend = "pattern" and
 * `ublk-lua add -t pattern --seed N` (spec/guest/test_backend_spec.lua).
 * Built only into build/ublk-lua-test.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../../runtime/include/backend.h"

struct pattern {
	unsigned char *data;
};

static int pattern_create(struct ublk_backend *b, const struct ublk_backend_conf *conf)
{
	unsigned s = 0;
	struct pattern *p;
	int ret = ublk_conf_uint(b, conf, "seed", &s);

	if (ret < 0)
		return ret;
	if (!conf->size)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->data = malloc(conf->size);
	if (!p->data) {
		free(p);
		return -ENOMEM;
	}
	for (uint64_t o = 0; o < conf->size; o++)
		p->data[o] = (unsigned char)((o + s) % 251);
	b->priv = p;
	b->size = conf->size;
	b->caps = UBLK_CAN_DISCARD | UBLK_CAN_WRITE_ZEROES;
	return 0;
}

static void pattern_destroy(struct ublk_backend *b)
{
	struct pattern *p = b->priv;

	free(p->data);
	free(p);
}

/* No UBLK_CAN_USER_COPY nor ZERO_COPY: io->buf is always the data. */
static int pattern_handle_io(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io)
{
	struct pattern *p = b->priv;

	(void)q;
	if (io->offset > b->size || io->len > b->size - io->offset)
		return -EIO;
	switch (io->op) {
	case UBLK_IO_OP_READ:
		memcpy(io->buf, p->data + io->offset, io->len);
		return (int)io->len;
	case UBLK_IO_OP_WRITE:
		memcpy(p->data + io->offset, io->buf, io->len);
		return (int)io->len;
	case UBLK_IO_OP_DISCARD:
	case UBLK_IO_OP_WRITE_ZEROES:
		memset(p->data + io->offset, 0, io->len);
		return (int)io->len;
	case UBLK_IO_OP_FLUSH:
		return 0;
	default:
		return -EOPNOTSUPP;
	}
}

static const struct ublk_backend_opt pattern_opts[] = {
	{ .name = "seed", .kind = UBLK_OPT_INT, .min = 0, .max = 250, .def = "0",
	  .help = "the pattern's start: byte o holds (o + seed) % 251" },
	{ 0 }
};

const struct ublk_backend_ops ublk_backend_pattern = {
	.name = "pattern",
	.opts = pattern_opts,
	.create = pattern_create,
	.destroy = pattern_destroy,
	.handle_io = pattern_handle_io,
};
