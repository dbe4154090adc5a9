/* SPDX-License-Identifier: MIT */
/*
 * backend.c - what every backend shares: the registry of built-in C
 * backends (adding one is a file plus a line here), the op names, and
 * the copy modes of null and file.  (Options are read in conf.c.)
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "backends.h"

/* The registry, one line a backend, in the order users see them (the
 * first is the default backend).  UBLK_TEST_BACKEND lines name backends
 * that exist only to test the runtime (spec/backends/): they are built
 * into build/ublk-lua-test, which compiles this file with
 * UBLK_TEST_BACKENDS, and are in no other binary.  UBLK_POLICY lines name
 * policies over a base backend (policy.h): found by name, but not listed
 * with the backends, since none serves a device by its name alone. */
#define UBLK_BACKENDS(X, T, P) \
	X(memory) \
	X(null) \
	X(file) \
	X(nbd) \
	X(rbd) \
	X(plugin_loader) \
	T(pattern) \
	P(record) \
	P(lying)

#ifdef UBLK_TEST_BACKENDS
#define UBLK_TEST_BACKEND(name) UBLK_BUILTIN(name)
#else
#define UBLK_TEST_BACKEND(name)
#endif

#define UBLK_BUILTIN(name) extern const struct ublk_backend_ops ublk_backend_##name;
#define UBLK_POLICY(name) UBLK_BUILTIN(name)
UBLK_BACKENDS(UBLK_BUILTIN, UBLK_TEST_BACKEND, UBLK_POLICY)
#undef UBLK_BUILTIN
#undef UBLK_POLICY

#define UBLK_BUILTIN(name) { &ublk_backend_##name, true },
#define UBLK_POLICY(name) { &ublk_backend_##name, false },
static const struct {
	const struct ublk_backend_ops *ops;
	bool listed;
} builtin[] = {
	UBLK_BACKENDS(UBLK_BUILTIN, UBLK_TEST_BACKEND, UBLK_POLICY)
};
#undef UBLK_BUILTIN
#undef UBLK_POLICY

#define NR_BUILTIN (sizeof(builtin) / sizeof(builtin[0]))

const struct ublk_backend_ops *ublk_backend_find(const char *name)
{
	for (size_t i = 0; i < NR_BUILTIN; i++)
		if (!strcmp(builtin[i].ops->name, name))
			return builtin[i].ops;
	return NULL;
}

const char *const *ublk_backend_names(void)
{
	static const char *names[NR_BUILTIN + 1];
	size_t n = 0;

	for (size_t i = 0; i < NR_BUILTIN; i++)
		if (builtin[i].listed)
			names[n++] = builtin[i].ops->name;
	return names;
}

/* By UBLK_IO_OP_*; 4 (WRITE_SAME) is never sent by the ublk driver. */
static const struct {
	const char *name, *stat;
} ops[UBLK_NR_OPS] = {
	[0] = { "read", "reads" },
	[1] = { "write", "writes" },
	[2] = { "flush", "flushes" },
	[3] = { "discard", "discards" },
	[5] = { "write_zeroes", "write_zeroes" },
};

const char *ublk_op_name(unsigned op)
{
	return op < UBLK_NR_OPS ? ops[op].name : NULL;
}

const char *ublk_op_stat_name(unsigned op)
{
	return op < UBLK_NR_OPS ? ops[op].stat : NULL;
}

int ublk_backend_copy_mode(struct ublk_backend *b, const struct ublk_backend_conf *conf)
{
	/* by each one's place in UBLK_COPY_MODES */
	static const struct {
		unsigned caps;
		enum ublk_zc zc_only;
	} modes[] = {
		{ 0, UBLK_ZC_NONE },
		{ UBLK_CAN_USER_COPY, UBLK_ZC_NONE },
		{ UBLK_CAN_ZERO_COPY, UBLK_ZC_AUTO_REG },
		{ UBLK_CAN_ZERO_COPY, UBLK_ZC_REGISTER },
	};
	unsigned i;
	int ret = ublk_conf_choice(b, conf, "copy", &i);

	if (ret > 0 && i < sizeof(modes) / sizeof(modes[0])) {
		b->caps |= modes[i].caps;
		b->zc_only = modes[i].zc_only;
	}
	return ret;
}
