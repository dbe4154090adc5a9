/* SPDX-License-Identifier: MIT */
/*
 * device_shmem.c - the files a device's requests may name data in
 * (UBLK_F_SHMEM_ZC, 7.1+).  Each is mapped shared before ADD_DEV, so a
 * bad path is refused before any device exists, and registered after it
 * (REG_BUF pins its pages).  A request whose pages all lie in one comes
 * with its place there: the kernel copies nothing, and the queue hands
 * the backend that place as io->buf (queue.c).  A client gets this by
 * doing O_DIRECT I/O from its own mapping of the same file.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "device_private.h"

/* The kernel's limit for one buffer (UBLK_SHMEM_BUF_SIZE_MAX, 7.3). */
#define SHMEM_LEN_MAX (4ull << 30)

int ublk_dev_map_shmem(struct ublk_dev *d, const struct ublk_dev_conf *conf)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);

	for (unsigned i = 0; i < conf->nr_shmem_zc; i++) {
		const char *path = conf->shmem_zc[i];
		struct stat st;
		void *p;
		int fd = open(path, O_RDWR | O_CLOEXEC);

		if (fd < 0)
			return ublk_dev_fail(d, -errno, "shmem_zc: cannot open %s: %s", path,
					     strerror(errno));
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || !st.st_size ||
		    (uint64_t)st.st_size % page || (uint64_t)st.st_size > SHMEM_LEN_MAX) {
			close(fd);
			return ublk_dev_fail(d, -EINVAL, "shmem_zc: %s must be a file of whole "
					     "pages, 4 KiB to 4 GiB (it has %lld bytes)", path,
					     (long long)st.st_size);
		}
		p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		close(fd);
		if (p == MAP_FAILED)
			return ublk_dev_fail(d, -errno, "shmem_zc: cannot map %s: %s", path,
					     strerror(errno));
		d->shmem[i] = (struct ublk_shmem_region){ .base = p, .len = (uint64_t)st.st_size };
		d->nr_shmem = i + 1;
	}
	return 0;
}

/* The kernel gives a new device's buffers the lowest free index, so the
 * i-th registered is i, as the queues look them up. */
int ublk_dev_register_shmem(struct ublk_dev *d, const struct ublk_dev_conf *conf)
{
	for (unsigned i = 0; i < d->nr_shmem; i++) {
		int ret = ublk_ctrl_reg_buf(&d->ctrl, d->info.dev_id, d->shmem[i].base,
					    d->shmem[i].len);

		if (ret < 0)
			return ublk_dev_fail(d, ret, "shmem_zc: REG_BUF of %s refused: %s",
					     conf->shmem_zc[i], strerror(-ret));
		if ((unsigned)ret != i)
			return ublk_dev_fail(d, -EINVAL, "shmem_zc: the kernel registered %s as "
					     "buffer %d, not %u", conf->shmem_zc[i], ret, i);
	}
	return 0;
}

void ublk_dev_unmap_shmem(struct ublk_dev *d)
{
	for (unsigned i = 0; i < d->nr_shmem; i++)
		munmap(d->shmem[i].base, (size_t)d->shmem[i].len);
	d->nr_shmem = 0;
}
