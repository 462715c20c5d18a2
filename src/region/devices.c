/* SPDX-License-Identifier: Apache-2.0 */
/* The device table: entries keyed by GPU UUID, claimed without locks by
 * open addressing on a hash of the UUID, and their limits. */
#include <stdatomic.h>
#include <string.h>

#include "region_internal.h"

static uint64_t uuid_key(const char *uuid)
{
	uint64_t hash = UINT64_C(1469598103934665603);
	for (const unsigned char *p = (const unsigned char *)uuid; *p; p++) {
		hash ^= *p;
		hash *= UINT64_C(1099511628211);
	}
	return hash | 1; /* 0 marks a free entry */
}

static bool uuid_valid(const char *uuid)
{
	size_t len = uuid ? strlen(uuid) : 0;
	if (len == 0 || len >= GPUCAP_UUID_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (uuid[i] <= ' ' || uuid[i] > '~')
			return false;
	return true;
}

bool device_index_valid(const struct gpucap_region *r, int device)
{
	if (device < 0 || (uint32_t)device >= r->geo.device_capacity)
		return false;
	/* A2: pairs with the registrant's R2 key CAS. */
	return atomic_load_explicit(&region_device(r, (uint32_t)device)->key, memory_order_acquire) != 0;
}

void device_uuid_read(const struct device_entry *entry, char *out)
{
	uint64_t words[UUID_WORDS];
	for (unsigned i = 0; i < UUID_WORDS; i++)
		words[i] = atomic_load_explicit(&entry->uuid_words[i], memory_order_relaxed);
	memcpy(out, words, GPUCAP_UUID_MAX);
	out[GPUCAP_UUID_MAX - 1] = '\0';
}

/* Every registrant writes the same text, so racing writers agree. */
static void uuid_write(struct device_entry *entry, const char *uuid)
{
	uint64_t words[UUID_WORDS];
	memset(words, 0, sizeof(words));
	memcpy(words, uuid, strlen(uuid));
	for (unsigned i = 0; i < UUID_WORDS; i++)
		atomic_store_explicit(&entry->uuid_words[i], words[i], memory_order_relaxed);
	/* R3: the words above are complete before uuid_ready; partner A3 in
	 * uuid_matches. */
	atomic_store_explicit(&entry->uuid_ready, 1, memory_order_release);
}

static bool uuid_matches(const struct device_entry *entry, const char *uuid)
{
	/* A3: pairs with R3 in uuid_write. */
	if (!atomic_load_explicit(&entry->uuid_ready, memory_order_acquire))
		return false;
	char text[GPUCAP_UUID_MAX];
	device_uuid_read(entry, text);
	return strcmp(text, uuid) == 0;
}

static uint64_t clamp_limit(uint64_t limit)
{
	return limit > GPUCAP_BYTES_MAX ? GPUCAP_BYTES_MAX : limit;
}

static uint32_t clamp_sm(uint32_t sm_limit)
{
	return (sm_limit == 0 || sm_limit > 100) ? 100 : sm_limit;
}

static int register_unchecked(gpucap_region *r, const char *uuid, uint64_t limit_bytes, uint32_t sm_limit);

int gpucap_region_device_register(gpucap_region *r, const char *uuid, uint64_t limit_bytes, uint32_t sm_limit)
{
	if (!r || r->observer || !uuid_valid(uuid))
		return -GPUCAP_ERR_INVALID;
	if (region_failed(r))
		return -GPUCAP_ERR_CORRUPT;
	int index = register_unchecked(r, uuid, limit_bytes, sm_limit);
	return region_failed(r) ? -GPUCAP_ERR_CORRUPT : index;
}

static int register_unchecked(gpucap_region *r, const char *uuid, uint64_t limit_bytes, uint32_t sm_limit)
{
	uint64_t key = uuid_key(uuid);
	uint32_t capacity = r->geo.device_capacity;
	for (uint32_t probe = 0; probe < capacity; probe++) {
		uint32_t index = (uint32_t)((key + probe) % capacity);
		struct device_entry *entry = region_device(r, index);
		/* A2: pairs with R2 below, in another registrant. */
		uint64_t current = atomic_load_explicit(&entry->key, memory_order_acquire);
		if (current == 0 &&
		    /* R2 (acq_rel): claims the entry; loads of key (A2) see it claimed.
		     * Two registrants of one UUID race here and one wins: both then use
		     * the entry (same key, same text). */
		    atomic_compare_exchange_strong_explicit(&entry->key, &current, key, memory_order_acq_rel,
		                                            memory_order_acquire))
			current = key;
		if (current != key)
			continue;
		/* A registrant that died between claiming the key and writing
		 * the text leaves it to us. */
		/* A3: pairs with R3; a registrant that died before R3 leaves the
		 * text to us. */
		if (!atomic_load_explicit(&entry->uuid_ready, memory_order_acquire))
			uuid_write(entry, uuid);
		if (!uuid_matches(entry, uuid))
			continue; /* a different UUID with the same hash */
		uint64_t unset = 0;
		/* R4 (acq_rel CAS from unset): the first registrant sets the limit;
		 * partner A4 in effective_limit. */
		atomic_compare_exchange_strong_explicit(&entry->limit, &unset, clamp_limit(limit_bytes) + 1,
		                                        memory_order_acq_rel, memory_order_relaxed);
		uint32_t unset_sm = 0;
		/* R4 for the SM limit; launch paths read it relaxed (one word). */
		atomic_compare_exchange_strong_explicit(&entry->sm_limit, &unset_sm, clamp_sm(sm_limit) + 1,
		                                        memory_order_acq_rel, memory_order_relaxed);
		return (int)index;
	}
	return -GPUCAP_ERR_FULL;
}

int gpucap_region_device_find(const gpucap_region *r, const char *uuid)
{
	if (!r || region_failed(r) || !uuid_valid(uuid))
		return -1;
	uint64_t key = uuid_key(uuid);
	uint32_t capacity = r->geo.device_capacity;
	for (uint32_t probe = 0; probe < capacity; probe++) {
		uint32_t index = (uint32_t)((key + probe) % capacity);
		const struct device_entry *entry = region_device(r, index);
		/* A2: pairs with R2. */
		uint64_t current = atomic_load_explicit(&entry->key, memory_order_acquire);
		if (current == 0)
			return -1;
		if (current == key && uuid_matches(entry, uuid))
			return (int)index;
	}
	return -1;
}

gpucap_status gpucap_region_set_limit(gpucap_region *r, int device, uint64_t limit_bytes)
{
	if (!r || r->observer || region_failed(r) || !device_index_valid(r, device))
		return GPUCAP_ERR_INVALID;
	/* R4: partner A4 in effective_limit; reservations admitted after
	 * they see it use the new limit (I2). */
	atomic_store_explicit(&region_device(r, (uint32_t)device)->limit, clamp_limit(limit_bytes) + 1,
	                      memory_order_release);
	return GPUCAP_OK;
}

gpucap_status gpucap_region_set_sm_limit(gpucap_region *r, int device, uint32_t sm_limit)
{
	if (!r || r->observer || region_failed(r) || !device_index_valid(r, device) || sm_limit > 100)
		return GPUCAP_ERR_INVALID;
	/* R4 for the SM limit. */
	atomic_store_explicit(&region_device(r, (uint32_t)device)->sm_limit, clamp_sm(sm_limit) + 1,
	                      memory_order_release);
	return GPUCAP_OK;
}

bool gpucap_region_device_usage(const gpucap_region *r, int device, uint64_t *limit_bytes,
                                uint64_t *charged_bytes)
{
	if (!r || region_failed(r) || !device_index_valid(r, device))
		return false;
	const struct device_entry *entry = region_device(r, (uint32_t)device);
	if (limit_bytes)
		*limit_bytes = effective_limit(r, (uint32_t)device);
	if (charged_bytes) {
		/* A5: pairs with the last mover's R5. */
		uint64_t charged = charge_total(atomic_load_explicit(&entry->charge, memory_order_acquire));
		/* The caller's own idle reserve is memory it can still use. */
		int64_t own_credit = 0;
		for (uint32_t lane = 0; r->slot >= 0 && lane < r->geo.lanes; lane++)
			own_credit = sat_add_i64(
			    own_credit,
			    atomic_load_explicit(
			        &region_lane_device(r, (uint32_t)r->slot, lane, (uint32_t)device)->credit,
			        memory_order_relaxed));
		*charged_bytes = own_credit > 0 && (uint64_t)own_credit < charged
		                     ? charged - (uint64_t)own_credit
		                     : (own_credit > 0 ? 0 : charged);
	}
	return true;
}

void gpucap_region_set_local_cap(gpucap_region *r, int device, uint64_t cap)
{
	if (!r || device < 0 || (uint32_t)device >= r->geo.device_capacity)
		return;
	uint64_t current = atomic_load_explicit(&r->local_cap[device], memory_order_relaxed);
	while (cap < current &&
	       !atomic_compare_exchange_weak_explicit(&r->local_cap[device], &current, cap,
	                                              memory_order_relaxed, memory_order_relaxed)) {
	}
}

bool gpucap_region_own_kind_bytes(const gpucap_region *r, int device, int64_t out[GPUCAP_KIND_COUNT])
{
	for (unsigned kind = 0; kind < GPUCAP_KIND_COUNT; kind++)
		out[kind] = 0;
	if (!r || r->slot < 0 || !device_index_valid(r, device))
		return false;
	for (uint32_t lane = 0; lane < r->geo.lanes; lane++) {
		const struct lane_device *lane_device =
		    region_lane_device(r, (uint32_t)r->slot, lane, (uint32_t)device);
		for (unsigned kind = 0; kind < GPUCAP_KIND_COUNT; kind++)
			out[kind] +=
			    atomic_load_explicit(&lane_device->kind_bytes[kind], memory_order_relaxed);
	}
	return true;
}

uint64_t gpucap_region_context_bytes(const gpucap_region *r, int device)
{
	if (!r || !device_index_valid(r, device))
		return 0;
	/* From the shared file: anything outside the bounds is treated as unset. */
	uint64_t bytes = (uint64_t)atomic_load_explicit(&region_device(r, (uint32_t)device)->context_kib,
	                                                memory_order_relaxed)
	                 << 10;
	return bytes >= GPUCAP_CONTEXT_BYTES_MIN && bytes <= GPUCAP_CONTEXT_BYTES_MAX ? bytes : 0;
}

void gpucap_region_note_context_bytes(gpucap_region *r, int device, uint64_t bytes)
{
	if (!r || r->observer || !device_index_valid(r, device) || bytes < GPUCAP_CONTEXT_BYTES_MIN ||
	    bytes > GPUCAP_CONTEXT_BYTES_MAX)
		return;
	atomic_store_explicit(&region_device(r, (uint32_t)device)->context_kib,
	                      (uint32_t)((bytes + 1023) >> 10), memory_order_relaxed);
}
