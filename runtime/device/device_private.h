/* SPDX-License-Identifier: MIT */
/*
 * device_private.h - what device.c shares with device_recover.c and
 * device_flags.c: the steps a new device and a recovered one have in
 * common; and what device_owner.c takes from device_record.c.
 */
#ifndef UBLK_DEVICE_PRIVATE_H
#define UBLK_DEVICE_PRIVATE_H

#include "device.h"

/* Writes the user's sentence into d->err; returns ret. */
int ublk_dev_fail(struct ublk_dev *d, int ret, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Zeroes d and creates its backend (recovering: nothing will delete the
 * device or its store). */
int ublk_dev_init_backend(struct ublk_dev *d, bool recovering,
			  const struct ublk_backend_ops *ops,
			  const struct ublk_backend_conf *bconf);
/* Opens /dev/ublkcN for d->info.dev_id into d->cdev_fd. */
int ublk_dev_open_cdev(struct ublk_dev *d);
/* Opens /dev/ublk-control, explaining a missing driver; reads features. */
int ublk_dev_open_ctrl(struct ublk_dev *d);
/* device_unpriv.c: without CAP_SYS_ADMIN, waits (up to 10 s) until udev
 * has given node `path` to this user; 0 or -errno with d->err saying so,
 * and `then` after it. */
int ublk_dev_wait_node(struct ublk_dev *d, const char *path, const char *then);
/* device_shmem.c: conf->shmem_zc mapped into d->shmem before ADD_DEV,
 * registered (REG_BUF) after it; unmapped at release. */
int ublk_dev_map_shmem(struct ublk_dev *d, const struct ublk_dev_conf *conf);
int ublk_dev_register_shmem(struct ublk_dev *d, const struct ublk_dev_conf *conf);
void ublk_dev_unmap_shmem(struct ublk_dev *d);
/* One queue per d->info.nr_hw_queues, over d->cdev_fd. */
int ublk_dev_alloc_queues(struct ublk_dev *d, const struct ublk_dev_conf *conf);
/* Asks the first nr queue threads to leave and joins them. */
void ublk_dev_stop_queues(struct ublk_dev *d, unsigned nr);
/* device_flags.c: the flags to ask ADD_DEV for; refuses (before it) what
 * the user asked that this kernel lacks; checks what ADD_DEV granted. */
uint64_t ublk_dev_wanted_flags(const struct ublk_dev *d, const struct ublk_dev_conf *conf);
int ublk_dev_check_kernel(struct ublk_dev *d, const struct ublk_dev_conf *conf);
int ublk_dev_check_granted(struct ublk_dev *d, const struct ublk_dev_conf *conf);
/* device_recover.c: whether what GET_DEV_INFO and GET_PARAMS said of device
 * id (in d->info, d->params) can be served by d's backend: queues, depth
 * and buffer size within the kernel's limits, recovery on, not DEAD, the
 * same size, read-only as d->read_only, no flag our queues do not
 * implement, a copy mode the backend can.  0, or -EINVAL with d->err
 * naming the field, its value and what is allowed.  Reads nothing else
 * (spec/fuzz/fuzz_recovery.c). */
int ublk_dev_check_recovered(struct ublk_dev *d, uint32_t id);
/* device_record.c: the records device_owner.c keeps.  ublk_record_path:
 * ublk_state_dir()/devN; _write: replaces it in one rename; _new: a new
 * device's {id, pid, start, store}; _read: the whole file (malloc'd,
 * NUL-terminated), NULL if none or longer than any we write; _owner: the
 * server it names, 0 or -EINVAL for one that is not a whole object with a
 * valid pid; _find: where "key": is as a top-level key; _str: its string
 * value (our paths: no escapes); _with_num: a copy (malloc'd) with that
 * key's number set, added after the brace when absent. */
void ublk_record_path(char *buf, size_t len, uint32_t id);
void ublk_record_write(uint32_t id, const char *buf, size_t len);
void ublk_record_new(uint32_t id, const char *store);
char *ublk_record_read(uint32_t id);
int ublk_record_owner(const char *json, struct ublk_owner *o);
const char *ublk_record_find(const char *json, const char *key);
void ublk_record_str(const char *json, const char *key, char *out, size_t len);
char *ublk_record_with_num(const char *json, const char *key, unsigned long long v);
/* This process as records name it (read once); whether a and b are one. */
struct ublk_owner ublk_owner_self(void);
bool ublk_owner_same(const struct ublk_owner *a, const struct ublk_owner *b);
/* device_recover.c: lets go of the lock a recovery holds on its device
 * (none: nothing). */
void ublk_dev_recover_unlock(struct ublk_dev *d);
/* Frees what exists; `added`: deletes the device too. */
void ublk_dev_release(struct ublk_dev *d, bool added);

#endif
