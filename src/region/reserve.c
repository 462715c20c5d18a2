/* SPDX-License-Identifier: Apache-2.0 */
/* Reserve and release: the hot path. A thread first uses its lane's credit,
 * touching only its own cache line; only when the credit runs out does it
 * move the device total (charge.c), taking a little extra credit while the
 * device is far from its limit. */
#include <assert.h>
#include <stdatomic.h>

#include "crash_point.h"
#include "region_internal.h"

static bool arguments_valid(const struct gpucap_region *r, int device, gpucap_kind kind, uint64_t bytes)
{
	return r && r->slot >= 0 && device_index_valid(r, device) && (unsigned)kind < GPUCAP_KIND_COUNT &&
	       bytes <= GPUCAP_BYTES_MAX;
}

static bool take_credit(struct lane_device *lane_device, uint64_t bytes)
{
	int64_t credit = atomic_load_explicit(&lane_device->credit, memory_order_relaxed);
	while (credit >= (int64_t)bytes) {
		/* A12: pairs with the R12 release of the thread that returned
		 * this credit (gpucap_release). The CAS is the linearization
		 * point of a reserve from credit: the bytes are counted already. */
		if (atomic_compare_exchange_weak_explicit(&lane_device->credit, &credit,
		                                          credit - (int64_t)bytes, memory_order_acquire,
		                                          memory_order_relaxed))
			return true;
	}
	return false;
}

/* How much idle credit a lane may hold on this device now, besides `bytes`
 * it is about to use. It shrinks with the room left under the limit, so near
 * the limit every byte is granted exactly and no process's idle credit can
 * starve another's reservations. */
static uint64_t credit_allowance(const struct gpucap_region *r, uint32_t device, uint64_t bytes)
{
	uint64_t limit = effective_limit(r, device);
	uint64_t total =
	    charge_total(atomic_load_explicit(&region_device(r, device)->charge, memory_order_relaxed));
	if (total >= limit || limit - total <= bytes)
		return 0;
	uint64_t share = (limit - total - bytes) / 64;
	if (share < CREDIT_MIN)
		return 0; /* within 4 MiB of the limit: exact grants only */
	return share < CREDIT_CHUNK ? share : CREDIT_CHUNK;
}

static uint64_t extra_credit(const struct gpucap_region *r, uint32_t device, uint64_t bytes)
{
	return bytes >= CREDIT_CHUNK ? 0 : credit_allowance(r, device, bytes);
}

static gpucap_status grant(struct gpucap_region *r, uint32_t device, gpucap_kind kind, uint64_t bytes)
{
	uint32_t lane = lane_acquire(r);
	if (lane == LANE_NONE)
		return GPUCAP_ERR_NO_SLOT; /* the slot went back as the process exits */
	uint32_t slot = (uint32_t)r->slot;
	struct lane_device *lane_device = region_lane_device(r, slot, lane, device);
	uint64_t extra = extra_credit(r, device, bytes);
	gpucap_status status = lane_move(r, slot, lane, device, (int64_t)(bytes + extra), true);
	if (status == GPUCAP_ERR_OVER_LIMIT && extra) {
		extra = 0;
		status = lane_move(r, slot, lane, device, (int64_t)bytes, true);
	}
	if (status == GPUCAP_OK) {
		GPUCAP_CRASH_POINT("reserve.granted");
		if (extra)
			atomic_fetch_add_explicit(&lane_device->credit, (int64_t)extra, memory_order_relaxed);
		atomic_fetch_add_explicit(&lane_device->kind_bytes[kind], (int64_t)bytes,
		                          memory_order_relaxed);
	}
	lane_release(r, lane);
	return status;
}

static gpucap_status reserve_unchecked(gpucap_region *r, int device, gpucap_kind kind, uint64_t bytes);

gpucap_status gpucap_reserve(gpucap_region *r, int device, gpucap_kind kind, uint64_t bytes)
{
	if (r && region_failed(r))
		return GPUCAP_ERR_CORRUPT;
	gpucap_status status = reserve_unchecked(r, device, kind, bytes);
	/* A truncation during the operation ran it on the guard's zero pages:
	 * its answer is not the file's, so refuse. */
	return r && region_failed(r) ? GPUCAP_ERR_CORRUPT : status;
}

static gpucap_status reserve_unchecked(gpucap_region *r, int device, gpucap_kind kind, uint64_t bytes)
{
	if (!arguments_valid(r, device, kind, bytes))
		return (r && r->slot < 0) ? GPUCAP_ERR_NO_SLOT : GPUCAP_ERR_INVALID;
	if (bytes == 0)
		return GPUCAP_OK;
	struct lane_device *own =
	    region_lane_device(r, (uint32_t)r->slot, lane_of_this_thread(r), (uint32_t)device);
	if (take_credit(own, bytes)) {
		atomic_fetch_add_explicit(&own->kind_bytes[kind], (int64_t)bytes, memory_order_relaxed);
		return GPUCAP_OK;
	}
	gpucap_status status = grant(r, (uint32_t)device, kind, bytes);
	if (status != GPUCAP_ERR_OVER_LIMIT)
		return status;
	/* Before refusing: give back our own idle credit and reclaim what dead
	 * processes hold, then try once more. */
	gpucap_region_return_credit(r, device);
	gpucap_region_reclaim_dead(r, NULL);
	return grant(r, (uint32_t)device, kind, bytes);
}

static void trim_credit(struct gpucap_region *r, uint32_t lane, uint32_t device)
{
	if (!lane_try_acquire(r, lane))
		return; /* the thread holding it, or the next release, trims */
	struct lane_device *lane_device = region_lane_device(r, (uint32_t)r->slot, lane, device);
	int64_t credit = atomic_load_explicit(&lane_device->credit, memory_order_relaxed);
	while (credit > (int64_t)CREDIT_KEEP) {
		/* A12/R12 (acq_rel): takes the excess from every release before it;
		 * only the lane's holder (A8) moves it to the device total. */
		if (atomic_compare_exchange_weak_explicit(&lane_device->credit, &credit, (int64_t)CREDIT_KEEP,
		                                          memory_order_acq_rel, memory_order_relaxed)) {
			/* Only credit above the keep is returned: a positive amount. */
			assert(credit - (int64_t)CREDIT_KEEP > 0);
			GPUCAP_CRASH_POINT("release.credit_trimmed");
			lane_move(r, (uint32_t)r->slot, lane, device, -(credit - (int64_t)CREDIT_KEEP),
			          false);
			break;
		}
	}
	lane_release(r, lane);
}

void gpucap_release(gpucap_region *r, int device, gpucap_kind kind, uint64_t bytes)
{
	if (!r || region_failed(r) || !arguments_valid(r, device, kind, bytes) || bytes == 0)
		return;
	uint32_t lane = lane_of_this_thread(r);
	struct lane_device *own = region_lane_device(r, (uint32_t)r->slot, lane, (uint32_t)device);
	atomic_fetch_sub_explicit(&own->kind_bytes[kind], (int64_t)bytes, memory_order_relaxed);
	/* R12: the linearization point of a release (the bytes stay counted, as
	 * idle credit); partners A12 in take_credit, trim_credit and
	 * return_credit. */
	int64_t credit =
	    atomic_fetch_add_explicit(&own->credit, (int64_t)bytes, memory_order_release) + (int64_t)bytes;
	if (credit > (int64_t)CREDIT_HIGH)
		trim_credit(r, lane, (uint32_t)device);
}

void gpucap_region_return_credit(gpucap_region *r, int device)
{
	if (!r || r->slot < 0 || region_failed(r) || !device_index_valid(r, device))
		return;
	for (uint32_t lane = 0; lane < r->geo.lanes; lane++) {
		struct lane_device *lane_device =
		    region_lane_device(r, (uint32_t)r->slot, lane, (uint32_t)device);
		if (atomic_load_explicit(&lane_device->credit, memory_order_relaxed) <= 0)
			continue;
		if (!lane_try_acquire(r, lane))
			continue;
		/* A12/R12: takes every release's credit before returning it. */
		int64_t credit = atomic_exchange_explicit(&lane_device->credit, 0, memory_order_acq_rel);
		GPUCAP_CRASH_POINT("return_credit.taken");
		if (credit > 0)
			lane_move(r, (uint32_t)r->slot, lane, (uint32_t)device, -credit, false);
		else if (credit < 0)
			atomic_fetch_add_explicit(&lane_device->credit, credit, memory_order_relaxed);
		lane_release(r, lane);
	}
}
