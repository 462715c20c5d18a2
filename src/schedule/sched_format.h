/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The bytes of a tenant's schedule file, private to src/schedule: one header
 * and GPUCAP_SCHED_RECORDS process records, each checked by its own
 * checksum so that a torn or forged read is skipped, never believed.
 */
#ifndef GPUCAP_SCHED_FORMAT_H
#define GPUCAP_SCHED_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gpucap/schedule.h"

#define SCHED_MAGIC       UINT64_C(0x0032534143555047) /* "GPUCAS2\0" little-endian */
#define SCHED_HEADER_SIZE 64u
#define SCHED_RECORD_SIZE 64u
#define SCHED_FILE_SIZE   ((uint64_t)SCHED_HEADER_SIZE + (uint64_t)GPUCAP_SCHED_RECORDS * SCHED_RECORD_SIZE)

/* Lock byte offsets, far past the end of the file so they never alias data.
 * Every process using its tenant's file holds a shared lock on USERS for as
 * long as it does; the file is removed only under the exclusive one. */
#define SCHED_LEASE_BASE          (UINT64_C(1) << 40)
#define SCHED_LEASE_USERS         SCHED_LEASE_BASE
#define SCHED_LEASE_RECORD(index) (SCHED_LEASE_BASE + 4096 + (uint64_t)(index))

struct sched_file_header {
	uint64_t magic;
	uint32_t format_version;
	uint32_t header_size;
	uint32_t record_size;
	uint32_t record_count;
	uint64_t tenant; /* the tenant named in the file name, again */
	uint64_t created_ns;
	uint8_t pad[16];
	uint64_t checksum; /* of the bytes before it */
};
_Static_assert(sizeof(struct sched_file_header) == SCHED_HEADER_SIZE, "schedule header layout");

struct sched_record {
	uint64_t tenant;    /* 0: never used */
	uint64_t active_ns; /* CLOCK_MONOTONIC of the owner's last ON phase; 0: idle */
	uint64_t seq;       /* bumped at every write, for people reading the file */
	uint32_t duty_ppm;
	uint32_t cap_ppm; /* 0: unknown */
	int32_t pid;      /* for people reading the file; never trusted */
	uint8_t pad[20];
	uint64_t checksum; /* of the bytes before it */
};
_Static_assert(sizeof(struct sched_record) == SCHED_RECORD_SIZE, "schedule record layout");

/* FNV-1a, 64 bits: a torn read mixes two writes and fails it. */
static inline uint64_t sched_checksum(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t h = UINT64_C(0xcbf29ce484222325);
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

static inline void sched_seal_header(struct sched_file_header *h)
{
	h->checksum = sched_checksum(h, offsetof(struct sched_file_header, checksum));
}

static inline void sched_seal_record(struct sched_record *r)
{
	r->checksum = sched_checksum(r, offsetof(struct sched_record, checksum));
}

static inline bool sched_header_ok(const struct sched_file_header *h, uint64_t tenant)
{
	return h->magic == SCHED_MAGIC && h->format_version == GPUCAP_SCHED_FORMAT_VERSION &&
	       h->header_size == SCHED_HEADER_SIZE && h->record_size == SCHED_RECORD_SIZE &&
	       h->record_count == GPUCAP_SCHED_RECORDS && h->tenant == tenant &&
	       h->checksum == sched_checksum(h, offsetof(struct sched_file_header, checksum));
}

static inline bool sched_record_ok(const struct sched_record *r)
{
	return r->checksum == sched_checksum(r, offsetof(struct sched_record, checksum));
}

static inline uint32_t sched_clamp_ppm(uint32_t ppm)
{
	if (ppm == 0)
		return 1;
	return ppm > GPUCAP_SCHED_PPM ? GPUCAP_SCHED_PPM : ppm;
}

#endif
