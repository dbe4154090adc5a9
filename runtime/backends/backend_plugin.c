/* SPDX-License-Identifier: MIT */
/*
 * backend_plugin.c - a C backend built outside the tree: `backend =
 * "plugin", path = "./x.so"` loads the shared object, checks the contract
 * version it was built for (UBLK_BACKEND_ABI) and takes the ops table it
 * exports (UBLK_BACKEND_PLUGIN, backend.h).  The device is then the
 * plugin's own: create() hands the backend over to the plugin's ops, so
 * every later call goes straight to it, with nothing in between.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "backends.h"

/* Makes the runtime's functions (ublk_io_sqe, ublk_conf_get, ...) visible
 * to what is loaded next.  ublk-lua exports them already (-Wl,-E); LuaJIT's
 * require() opens ublk/core.so with RTLD_LOCAL, which hides them from a
 * plugin, so the object holding this function is opened again, globally.
 * The extra reference is never dropped: neither is a plugin's. */
static void export_runtime(void)
{
	Dl_info self;

	if (dladdr((void *)export_runtime, &self) && self.dli_fname)
		dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
}

int ublk_plugin_load(const char *path, const struct ublk_backend_ops **out, char *err,
		     size_t errlen)
{
	const struct ublk_backend_ops *const *ops;
	const unsigned *abi;
	void *h;

	export_runtime();
	/* Never closed: devices, host queues and delegates made from it may
	 * outlive any one user of it, and dlopen() counts the same path's
	 * loads, so loading it again costs nothing. */
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(err, errlen, "plugin %s: %s", path, dlerror());
		return -ENOENT;
	}
	abi = dlsym(h, "ublk_backend_abi");
	if (!abi) {
		snprintf(err, errlen, "plugin %s exports no ublk_backend_abi: build it with"
			 " UBLK_BACKEND_PLUGIN(ops) from ublk-lua/backend.h", path);
		return -ENOEXEC;
	}
	if (*abi != UBLK_BACKEND_ABI) {
		snprintf(err, errlen, "plugin %s was built for backend ABI %u, this ublk-lua"
			 " has %u", path, *abi, UBLK_BACKEND_ABI);
		return -ENOEXEC;
	}
	ops = dlsym(h, "ublk_backend_plugin");
	if (!ops || !*ops) {
		snprintf(err, errlen, "plugin %s exports no ublk_backend_plugin: build it"
			 " with UBLK_BACKEND_PLUGIN(ops) from ublk-lua/backend.h", path);
		return -ENOEXEC;
	}
	if (!(*ops)->name || !(*ops)->create || !(*ops)->destroy || !(*ops)->handle_io) {
		snprintf(err, errlen, "plugin %s: its ops table lacks a name, create, destroy"
			 " or handle_io", path);
		return -ENOEXEC;
	}
	/* its "path" would be taken for the plugin's own */
	for (const struct ublk_backend_opt *o = (*ops)->opts; o && o->name; o++)
		if (!strcmp(o->name, "path")) {
			snprintf(err, errlen, "plugin %s declares an option 'path', which"
				 " names the plugin itself: rename it", path);
			return -EINVAL;
		}
	*out = *ops;
	return 0;
}

/* The device's backend becomes the plugin's: b->ops is replaced before
 * its create() runs, so its destroy(), handle_io() and the rest are
 * called by the runtime as a built-in backend's would be. */
static int plugin_create(struct ublk_backend *b, const struct ublk_backend_conf *conf)
{
	const struct ublk_backend_ops *ops;
	const char *path;
	int ret = ublk_conf_string(b, conf, "path", &path);

	if (ret < 0)
		return ret;
	ret = ublk_plugin_load(path, &ops, b->err, sizeof(b->err));
	if (ret < 0)
		return ret;
	b->ops = ops;
	return ops->create(b, conf);
}

/* Never reached: a successful create() has replaced b->ops. */
static void plugin_destroy(struct ublk_backend *b)
{
	(void)b;
}

static int plugin_handle_io(struct ublk_backend *b, struct ublk_queue *q, struct ublk_io *io)
{
	(void)b;
	(void)q;
	(void)io;
	return -EIO;
}

static const struct ublk_backend_opt plugin_opts[] = {
	{ .name = "path", .kind = UBLK_OPT_STRING, .flags = UBLK_OPT_REQUIRED | UBLK_OPT_PLUGIN,
	  .help = "the plugin: a shared object built with UBLK_BACKEND_PLUGIN (docs/c-backends.md)" },
	{ 0 }
};

const struct ublk_backend_ops ublk_backend_plugin_loader = {
	.name = "plugin",
	.opts = plugin_opts,
	.create = plugin_create,
	.destroy = plugin_destroy,
	.handle_io = plugin_handle_io,
};
