/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SM share: the per-device words that let the processes of a container hold
 * one compute cap together (include/gpucap/region.h, "SM share"): the
 * virtual clock the gates charge, the controller lease, and the controller's
 * published output (duty, delivered share, asked share, weight). Every word
 * is validated on read: the file is shared with processes that may be buggy,
 * stale or dead.
 */
#include <stdatomic.h>
#include <string.h>

#include "region_internal.h"

/* sm_state: the share source in the low 4 bits, GPUCAP_SM_FLAG_* above. */
#define SM_SOURCE_MASK 0xfu
#define SM_FLAGS_MASK  (GPUCAP_SM_FLAG_OPEN_LOOP | GPUCAP_SM_FLAG_ELASTIC_OPEN | GPUCAP_SM_FLAG_OVERLAP)

/* Lease word: expiry in milliseconds above 16 bits of owner (slot + 1). */
#define LEASE_OWNER_BITS 16
#define LEASE_OWNER_MASK ((UINT64_C(1) << LEASE_OWNER_BITS) - 1)
/* A lease that claims to last longer than this is corrupt. */
#define LEASE_MAX_MS UINT64_C(60000)

static const struct device_entry *entry_of(const struct gpucap_region *r, int device)
{
	if (!r || !device_index_valid(r, device))
		return NULL;
	return region_device(r, (uint32_t)device);
}

uint32_t gpucap_region_sm_limit(const gpucap_region *r, int device)
{
	if (!r || device < 0 || (uint32_t)device >= r->geo.device_capacity)
		return 100;
	/* percent + 1; 0: unset. Anything else out of range is no cap: a
	 * corrupt word must not stop the device, and the file's writer could as
	 * well have written 100. */
	uint32_t stored =
	    atomic_load_explicit(&region_device(r, (uint32_t)device)->sm_limit, memory_order_relaxed);
	return stored >= 2 && stored <= 101 ? stored - 1 : 100;
}

uint32_t gpucap_region_sm_duty(const gpucap_region *r, int device)
{
	if (!r || device < 0 || (uint32_t)device >= r->geo.device_capacity)
		return 0;
	/* S3 acquire: pairs with the release store in sm_publish. */
	uint32_t duty =
	    atomic_load_explicit(&region_device(r, (uint32_t)device)->sm_duty_ppm, memory_order_acquire);
	return duty <= GPUCAP_SM_PPM ? duty : 0;
}

uint32_t gpucap_region_sm_flags(const gpucap_region *r, int device)
{
	const struct device_entry *entry = entry_of(r, device);
	/* Relaxed: a flag only chooses how the next phase is laid out; one
	 * read a phase late changes nothing that must stay consistent. */
	return entry ? atomic_load_explicit(&entry->sm_state, memory_order_relaxed) & SM_FLAGS_MASK : 0;
}

/* The clock as it may be used at now: never more than one debt ahead. */
static uint64_t sane_tat(uint64_t tat, uint64_t now_ns)
{
	uint64_t ceiling = now_ns + GPUCAP_SM_MAX_DEBT_NS;
	return tat > ceiling ? ceiling : tat;
}

uint64_t gpucap_region_sm_tat(gpucap_region *r, int device, uint64_t now_ns)
{
	const struct device_entry *ro = entry_of(r, device);
	if (!ro)
		return 0;
	struct device_entry *entry = region_device(r, (uint32_t)device);
	/* S1 acquire: pairs with the S1 CAS of the last charge. */
	uint64_t tat = atomic_load_explicit(&entry->sm_tat_ns, memory_order_acquire);
	uint64_t sane = sane_tat(tat, now_ns);
	/* Repair a corrupt far-future clock once, so that every later reader
	 * sees a sane one (a peer's concurrent charge wins the CAS and is sane
	 * by construction). */
	if (sane != tat && !r->observer)
		/* S1 (acq_rel CAS): a concurrent charge wins and is sane by
		 * construction. */
		atomic_compare_exchange_strong_explicit(&entry->sm_tat_ns, &tat, sane, memory_order_acq_rel,
		                                        memory_order_acquire);
	return sane;
}

uint64_t gpucap_region_sm_charge(gpucap_region *r, int device, uint64_t on_start_ns, uint64_t busy_ns,
                                 uint32_t duty_ppm, uint64_t now_ns)
{
	if (!entry_of(r, device) || r->observer || region_failed(r))
		return 0;
	struct device_entry *entry = region_device(r, (uint32_t)device);
	if (duty_ppm == 0 || duty_ppm > GPUCAP_SM_PPM)
		duty_ppm = GPUCAP_SM_PPM;
	if (busy_ns > GPUCAP_SM_MAX_BUSY_NS)
		busy_ns = GPUCAP_SM_MAX_BUSY_NS;
	/* busy <= 1e10 and PPM = 1e6: the product fits in 64 bits. */
	uint64_t debt = busy_ns * GPUCAP_SM_PPM / duty_ppm;
	uint64_t ceiling = now_ns + GPUCAP_SM_MAX_DEBT_NS;
	/* S1 acquire: the clock as the last charge left it. */
	uint64_t tat = atomic_load_explicit(&entry->sm_tat_ns, memory_order_acquire);
	uint64_t next;
	/* S1 (acq_rel CAS): every concurrent charge lands, each on the clock
	 * the previous one left. */
	do {
		uint64_t base = sane_tat(tat, now_ns);
		if (base < on_start_ns)
			base = on_start_ns;
		next = base + debt;
		if (next > ceiling || next < base)
			next = ceiling;
	} while (!atomic_compare_exchange_weak_explicit(&entry->sm_tat_ns, &tat, next, memory_order_acq_rel,
	                                                memory_order_acquire));
	atomic_fetch_add_explicit(&entry->sm_busy_ns, busy_ns, memory_order_relaxed);
	return next;
}

bool gpucap_region_sm_lease(gpucap_region *r, int device, uint64_t now_ns, uint64_t ttl_ns)
{
	if (!entry_of(r, device) || r->observer || r->slot < 0 || region_failed(r))
		return false;
	struct device_entry *entry = region_device(r, (uint32_t)device);
	uint64_t me = (uint64_t)r->slot + 1;
	uint64_t now_ms = now_ns / 1000000u;
	uint64_t ttl_ms = ttl_ns / 1000000u;
	if (ttl_ms == 0)
		ttl_ms = 1;
	if (ttl_ms > LEASE_MAX_MS)
		ttl_ms = LEASE_MAX_MS;
	uint64_t want = ((now_ms + ttl_ms) << LEASE_OWNER_BITS) | me;
	/* S2 acquire: pairs with the S2 CAS of the last lease holder. */
	uint64_t current = atomic_load_explicit(&entry->sm_lease, memory_order_acquire);
	for (;;) {
		uint64_t until = current >> LEASE_OWNER_BITS;
		uint64_t owner = current & LEASE_OWNER_MASK;
		bool corrupt = until > now_ms + LEASE_MAX_MS;
		if (owner != me && owner != 0 && until > now_ms && !corrupt)
			return false;
		/* S2 (acq_rel CAS): one holder at a time; the holder's later
		 * publishes (S3) follow its taking the lease. */
		if (atomic_compare_exchange_weak_explicit(&entry->sm_lease, &current, want,
		                                          memory_order_acq_rel, memory_order_acquire))
			return true;
	}
}

static uint32_t clamp_ppm(uint32_t ppm)
{
	return ppm > GPUCAP_SM_PPM ? GPUCAP_SM_PPM : ppm;
}

void gpucap_region_sm_publish(gpucap_region *r, int device, uint32_t duty_ppm, uint32_t share_ppm,
                              gpucap_sm_source source, uint32_t flags, int32_t integral_ppm)
{
	if (!entry_of(r, device) || r->observer)
		return;
	struct device_entry *entry = region_device(r, (uint32_t)device);
	if (integral_ppm > (int32_t)GPUCAP_SM_PPM)
		integral_ppm = (int32_t)GPUCAP_SM_PPM;
	if (integral_ppm < -(int32_t)GPUCAP_SM_PPM)
		integral_ppm = -(int32_t)GPUCAP_SM_PPM;
	uint32_t state = ((uint32_t)source & SM_SOURCE_MASK) | (flags & SM_FLAGS_MASK);
	atomic_store_explicit(&entry->sm_share_ppm, clamp_ppm(share_ppm), memory_order_relaxed);
	atomic_store_explicit(&entry->sm_state, state, memory_order_relaxed);
	atomic_store_explicit(&entry->sm_integral_ppm, integral_ppm, memory_order_relaxed);
	/* S3 release: the share, state and integral stored above are visible
	 * to a reader whose acquire load of the duty (gpucap_region_sm_duty)
	 * sees this value. */
	atomic_store_explicit(&entry->sm_duty_ppm, clamp_ppm(duty_ppm), memory_order_release);
}

void gpucap_region_sm_publish_weight(gpucap_region *r, int device, uint32_t weight_ppm)
{
	if (!entry_of(r, device) || r->observer)
		return;
	if (weight_ppm != 0 && weight_ppm < GPUCAP_SM_WEIGHT_MIN_PPM)
		weight_ppm = GPUCAP_SM_WEIGHT_MIN_PPM;
	if (weight_ppm > GPUCAP_SM_WEIGHT_MAX_PPM)
		weight_ppm = GPUCAP_SM_WEIGHT_MAX_PPM;
	atomic_store_explicit(&region_device(r, (uint32_t)device)->sm_weight_ppm, weight_ppm,
	                      memory_order_relaxed);
}

void gpucap_region_sm_publish_asked(gpucap_region *r, int device, uint32_t asked_ppm)
{
	if (!entry_of(r, device) || r->observer)
		return;
	/* Relaxed: the figure is read on its own, for reports; nothing is
	 * derived from it together with another word. */
	atomic_store_explicit(&region_device(r, (uint32_t)device)->sm_asked_ppm, clamp_ppm(asked_ppm),
	                      memory_order_relaxed);
}

bool gpucap_region_sm_read(const gpucap_region *r, int device, uint64_t now_ns, struct gpucap_sm_state *out)
{
	const struct device_entry *entry = entry_of(r, device);
	if (!entry || !out)
		return false;
	memset(out, 0, sizeof(*out));
	out->sm_limit = gpucap_region_sm_limit(r, device);
	out->duty_ppm = gpucap_region_sm_duty(r, device);
	uint32_t state = atomic_load_explicit(&entry->sm_state, memory_order_relaxed);
	uint32_t source = state & SM_SOURCE_MASK;
	out->share_source =
	    source <= GPUCAP_SM_SOURCE_LAUNCHES ? (gpucap_sm_source)source : GPUCAP_SM_SOURCE_NONE;
	out->share_ppm = out->share_source == GPUCAP_SM_SOURCE_NONE
	                     ? 0
	                     : clamp_ppm(atomic_load_explicit(&entry->sm_share_ppm, memory_order_relaxed));
	out->asked_ppm = clamp_ppm(atomic_load_explicit(&entry->sm_asked_ppm, memory_order_relaxed));
	out->flags = state & SM_FLAGS_MASK;
	int32_t integral = atomic_load_explicit(&entry->sm_integral_ppm, memory_order_relaxed);
	out->integral_ppm =
	    integral > (int32_t)GPUCAP_SM_PPM || integral < -(int32_t)GPUCAP_SM_PPM ? 0 : integral;
	uint32_t weight = atomic_load_explicit(&entry->sm_weight_ppm, memory_order_relaxed);
	out->weight_ppm =
	    weight >= GPUCAP_SM_WEIGHT_MIN_PPM && weight <= GPUCAP_SM_WEIGHT_MAX_PPM ? weight : 0;
	out->busy_ns = atomic_load_explicit(&entry->sm_busy_ns, memory_order_relaxed);
	/* S1 acquire. */
	out->tat_ns = sane_tat(atomic_load_explicit(&entry->sm_tat_ns, memory_order_acquire), now_ns);
	/* S2 acquire. */
	uint64_t lease = atomic_load_explicit(&entry->sm_lease, memory_order_acquire);
	uint64_t until_ms = lease >> LEASE_OWNER_BITS;
	uint64_t owner = lease & LEASE_OWNER_MASK;
	out->lease_slot = -1;
	if (owner != 0 && owner <= r->geo.slot_capacity && until_ms <= now_ns / 1000000u + LEASE_MAX_MS) {
		out->lease_until_ns = until_ms * 1000000u;
		out->lease_slot = (int32_t)(owner - 1);
	}
	/* A3: pairs with R3 in uuid_write. */
	if (atomic_load_explicit(&entry->uuid_ready, memory_order_acquire))
		device_uuid_read(entry, out->uuid);
	return true;
}
