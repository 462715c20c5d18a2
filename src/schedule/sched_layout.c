/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The placement rule (sched_layout.h).
 */
#include "sched_layout.h"
#include "gpucap/schedule.h"

#include <stdlib.h>

static int by_uid(const void *a, const void *b)
{
	const struct sched_entry *x = a, *y = b;
	if (x->uid != y->uid)
		return x->uid < y->uid ? -1 : 1;
	return x->tenant < y->tenant ? -1 : x->tenant > y->tenant;
}

static int by_group(const void *a, const void *b)
{
	const struct sched_entry *x = a, *y = b;
	if (x->group_ppm != y->group_ppm)
		return x->group_ppm < y->group_ppm ? -1 : 1;
	return by_uid(a, b);
}

uint32_t sched_fit_offset(uint64_t offset_ppm, uint32_t len_ppm)
{
	if (len_ppm >= GPUCAP_SCHED_PPM)
		return 0;
	uint64_t at = offset_ppm % GPUCAP_SCHED_PPM;
	if (at + len_ppm > GPUCAP_SCHED_PPM)
		at = GPUCAP_SCHED_PPM - len_ppm;
	return (uint32_t)at;
}

static uint32_t saturate(uint64_t v)
{
	return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

void sched_layout(struct sched_entry *e, uint32_t n, uint64_t own_tenant, struct sched_placement *out)
{
	*out = (struct sched_placement){false, 0, n, 0, 0};
	if (n == 0)
		return;
	qsort(e, n, sizeof(*e), by_uid);
	uint64_t total = 0, caps = 0;
	for (uint32_t begin = 0; begin < n;) {
		uint32_t end = begin;
		uint64_t group = 0;
		while (end < n && e[end].uid == e[begin].uid)
			group += e[end++].duty_ppm;
		for (uint32_t k = begin; k < end; k++)
			e[k].group_ppm = group;
		total += group;
		begin = end;
	}
	for (uint32_t k = 0; k < n; k++)
		caps += e[k].cap_ppm;
	out->total_ppm = saturate(total);
	out->caps_ppm = saturate(caps);
	out->shared = n > 1;
	qsort(e, n, sizeof(*e), by_group);
	/* Entries are at most GPUCAP_SCHED_PEERS_MAX + 1 of at most 10^6 ppm:
	 * the cursor cannot overflow. */
	uint64_t cursor = 0;
	for (uint32_t k = 0; k < n; k++) {
		if (e[k].tenant == own_tenant) {
			out->offset_ppm = sched_fit_offset(cursor, e[k].duty_ppm);
			return;
		}
		cursor += e[k].duty_ppm;
	}
}
