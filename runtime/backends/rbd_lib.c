/* SPDX-License-Identifier: MIT */
/*
 * rbd_lib.c - librbd and librados, loaded at the first rbd device
 * (rbd_lib.h says why).  Never unloaded: the Ceph client keeps threads.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

#include "rbd_lib.h"

struct ublk_rbd_lib ublk_rbd;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int loaded; /* 1 once every call is in ublk_rbd */

/* The shared objects Debian's librados2 and librbd1 install, by the
 * library names UBLK_RBD_CALLS gives */
enum { rados, rbd };
static const char *const sonames[] = { [rados] = "librados.so.2", [rbd] = "librbd.so.1" };

int ublk_rbd_lib_load(char *err, size_t len)
{
	void *h[2] = { NULL, NULL };
	int ret = 0;

	pthread_mutex_lock(&lock);
	if (loaded)
		goto out;
	for (int i = rados; i <= rbd; i++) {
		h[i] = dlopen(sonames[i], RTLD_NOW | RTLD_LOCAL);
		if (!h[i]) {
			snprintf(err, len, "the rbd backend needs %s (Debian librbd1): %s",
				 sonames[i], dlerror());
			ret = -ENOENT;
			goto out;
		}
	}
#define UBLK_RBD_LOAD(lib, fn)                                                          \
	ublk_rbd.fn = (__typeof__(fn) *)dlsym(h[lib], #fn);                              \
	if (!ublk_rbd.fn) {                                                             \
		snprintf(err, len, "the rbd backend needs %s from %s, which has none",  \
			 #fn, sonames[lib]);                                            \
		ret = -ENOENT;                                                          \
		goto out;                                                               \
	}
	UBLK_RBD_CALLS(UBLK_RBD_LOAD)
#undef UBLK_RBD_LOAD
	loaded = 1;
out:
	/* a failed load keeps no reference: the next try starts afresh */
	for (int i = rados; ret < 0 && i <= rbd; i++)
		if (h[i])
			dlclose(h[i]);
	pthread_mutex_unlock(&lock);
	return ret;
}
