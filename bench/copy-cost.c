/* SPDX-License-Identifier: MIT */
/*
 * bench/copy-cost.c - what a 128 KiB copy, clear and checksum cost on
 * this CPU, one line each in microseconds (`make bench-copy` runs it in
 * the guest).  Why it exists: QEMU's TCG (7.2, the harness's) runs
 * `rep movsb` and `rep stosb` one byte per emulated step, so on a guest
 * CPU that advertises ERMS (-cpu max) glibc's memcpy and the kernel's
 * copies and page clearing are about 8x dearer than 8-byte moves, which
 * real CPUs with ERMS do not show.  Copy-heavy paths (the recorder, the
 * memory backend at 128k) then look worse beside kernel devices than
 * they would on hardware; UBLK_VM_CPU_MODEL=max,-erms hides ERMS from the
 * guest (spec/harness/vm/README.md, docs/performance.md).
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../runtime/base/xxh64.h"

#define LEN (128 * 1024)
#define ROUNDS 200

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* through a volatile pointer, so that the compiler keeps glibc's call */
static void *(*volatile libc_memcpy)(void *, const void *, size_t) = memcpy;
static void *(*volatile libc_memset)(void *, int, size_t) = memset;

static void with_memcpy(void *d, const void *s)
{
	libc_memcpy(d, s, LEN);
}

static void with_memset(void *d, const void *s)
{
	(void)s;
	libc_memset(d, 0, LEN);
}

static void with_movsb(void *d, const void *s)
{
	size_t n = LEN;

	__asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
}

static void with_movsq(void *d, const void *s)
{
	size_t n = LEN / 8;

	__asm__ volatile("rep movsq" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
}

/* how the kernel clears a page without ERMS (clear_page_rep) */
static void with_stosq(void *d, const void *s)
{
	size_t n = LEN / 8;

	(void)s;
	__asm__ volatile("rep stosq" : "+D"(d), "+c"(n) : "a"(0) : "memory");
}

static volatile uint64_t sink;

static void with_xxh64(void *d, const void *s)
{
	(void)d;
	sink += ublk_xxh64(s, LEN, 0);
}

int main(void)
{
	static const struct {
		const char *what;
		void (*run)(void *, const void *);
	} ways[] = {
		{ "memcpy (glibc)", with_memcpy }, { "memset (glibc)", with_memset },
		{ "rep movsb", with_movsb },	   { "rep movsq", with_movsq },
		{ "rep stosq", with_stosq },	   { "xxh64", with_xxh64 },
	};
	char *src = aligned_alloc(4096, LEN), *dst = aligned_alloc(4096, LEN);

	if (!src || !dst)
		return 1;
	memset(src, 1, LEN);
	memset(dst, 2, LEN);
	for (size_t i = 0; i < sizeof(ways) / sizeof(ways[0]); i++) {
		double t = now_us();

		for (int r = 0; r < ROUNDS; r++)
			ways[i].run(dst, src);
		printf("%-15s %7.1f us per 128 KiB\n", ways[i].what, (now_us() - t) / ROUNDS);
	}
	free(src);
	free(dst);
	return 0;
}
