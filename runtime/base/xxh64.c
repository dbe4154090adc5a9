/* SPDX-License-Identifier: MIT */
/*
 * xxh64.c - XXH64 (xxh64.h): four lanes over 32-byte stripes, merged,
 * then the tail in 8-, 4- and 1-byte steps and a final avalanche, as the
 * algorithm is published.  Little-endian loads (the machines ublk runs
 * on); unaligned ones through memcpy, which compiles to one load.
 */
#include <string.h>

#include "xxh64.h"

static const uint64_t P1 = 0x9E3779B185EBCA87ULL, P2 = 0xC2B2AE3D27D4EB4FULL,
		      P3 = 0x165667B19E3779F9ULL, P4 = 0x85EBCA77C2B2AE63ULL,
		      P5 = 0x27D4EB2F165667C5ULL;

static inline uint64_t rotl(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

static inline uint64_t load64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint32_t load32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint64_t round64(uint64_t acc, uint64_t lane)
{
	return rotl(acc + lane * P2, 31) * P1;
}

static inline uint64_t merge(uint64_t h, uint64_t acc)
{
	return (h ^ round64(0, acc)) * P1 + P4;
}

uint64_t ublk_xxh64(const void *in, size_t len, uint64_t seed)
{
	const unsigned char *p = in, *end = p + len;
	uint64_t h;

	if (len >= 32) {
		uint64_t a = seed + P1 + P2, b = seed + P2, c = seed, d = seed - P1;

		for (; end - p >= 32; p += 32) {
			a = round64(a, load64(p));
			b = round64(b, load64(p + 8));
			c = round64(c, load64(p + 16));
			d = round64(d, load64(p + 24));
		}
		h = rotl(a, 1) + rotl(b, 7) + rotl(c, 12) + rotl(d, 18);
		h = merge(merge(merge(merge(h, a), b), c), d);
	} else {
		h = seed + P5;
	}
	h += len;
	for (; end - p >= 8; p += 8)
		h = rotl(h ^ round64(0, load64(p)), 27) * P1 + P4;
	if (end - p >= 4) {
		h = rotl(h ^ (load32(p) * P1), 23) * P2 + P3;
		p += 4;
	}
	for (; p < end; p++)
		h = rotl(h ^ (*p * P5), 11) * P1;
	h ^= h >> 33;
	h *= P2;
	h ^= h >> 29;
	h *= P3;
	h ^= h >> 32;
	return h;
}
