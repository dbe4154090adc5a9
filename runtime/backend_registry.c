/* SPDX-License-Identifier: MIT */
/* backend_registry.c - the one place that lists built-in backends.  Adding a
 * backend is one file plus one line here; the data plane never changes. */
#include <string.h>

#include "backend.h"

extern const struct ublk_backend_ops ublk_backend_memory;
extern const struct ublk_backend_ops ublk_backend_null;
extern const struct ublk_backend_ops ublk_backend_file;
extern const struct ublk_backend_ops ublk_backend_lua;

static const struct ublk_backend_ops *const builtin[] = {
	&ublk_backend_memory,
	&ublk_backend_null,
	&ublk_backend_file,
	&ublk_backend_lua,
};

const struct ublk_backend_ops *ublk_backend_find(const char *name)
{
	for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
		if (!strcmp(builtin[i]->name, name))
			return builtin[i];
	return NULL;
}

const char *const *ublk_backend_names(void)
{
	static const char *names[sizeof(builtin) / sizeof(builtin[0]) + 1];

	for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
		names[i] = builtin[i]->name;
	return names;
}
