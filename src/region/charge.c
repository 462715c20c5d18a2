/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The charge protocol: how a device's charged total and one lane's granted
 * amount move together, with no lock, such that a process dying at any
 * instruction leaves a state others complete exactly. layout.h describes the
 * words; this file is the only code that changes a device charge word or a
 * granted word. docs/region-protocol.md argues it; the labels in the comments
 * below (R5, A9, I1, ...) are that document's.
 */
#include <assert.h>
#include <stdatomic.h>

#include "crash_point.h"
#include "region_internal.h"

static bool tag_to_lane(const struct gpucap_region *r, uint32_t tag, uint32_t *slot, uint32_t *lane)
{
	if (tag == 0)
		return false;
	uint32_t index = tag - 1;
	/* The tag comes from the shared file: check it before using it. */
	if (index >= r->geo.slot_capacity * r->geo.lanes)
		return false;
	*slot = index / r->geo.lanes;
	*lane = index % r->geo.lanes;
	return true;
}

/* Apply an operation to its lane's granted word exactly once: the CAS only
 * succeeds from the sequence number just before the operation's. */
static void apply_to_granted(struct lane_device *lane_device, uint32_t seq, int64_t amount)
{
	/* A10: pairs with the R10 CAS of whoever applied the last operation,
	 * so the amount added to is the applied one (I4). */
	uint64_t word = atomic_load_explicit(&lane_device->granted, memory_order_acquire);
	for (;;) {
		if (granted_seq(word) == seq)
			return; /* applied already, by the owner or a helper */
		if (granted_seq(word) != ((seq - 1) & 0xffffu))
			return; /* not the operation this word expects: a damaged file */
		uint64_t next = granted_word(granted_amount(word) + amount, seq);
		/* R10 (acq_rel): keyed by seq-1, so of the user and all helpers
		 * exactly one applies the operation (I4); its release publishes the
		 * new ledger to A10 loads in movers, reclaimers and readers. */
		if (atomic_compare_exchange_weak_explicit(&lane_device->granted, &word, next,
		                                          memory_order_acq_rel, memory_order_acquire))
			return;
	}
}

/* Read the tagged lane's operation and check it is the one the tag names. */
static bool read_tagged_op(const struct gpucap_region *r, uint32_t device, uint64_t observed, uint32_t *slot,
                           uint32_t *lane, uint32_t *seq, int64_t *amount)
{
	if (!tag_to_lane(r, charge_tag(observed), slot, lane))
		return false;
	struct lane_header *header = region_lane(r, *slot, *lane);
	/* A9: pairs with the user's R9 store of op in lane_move, so the amount
	 * read next is at least as new as the record. */
	uint64_t op = atomic_load_explicit(&header->op, memory_order_acquire);
	*amount = atomic_load_explicit(&header->op_amount, memory_order_relaxed);
	if (!(op & OP_VALID) || op_device(op) != device)
		return false;
	/* The owner writes a new record only after clearing its tag, so if the
	 * word still holds this value the record read above is the tagged one
	 * (or a later one whose CAS has landed, restoring the same value). */
	const struct device_entry *entry = region_device(r, device);
	/* A5: the re-read that ties the record to the tag (see above). */
	if (atomic_load_explicit(&entry->charge, memory_order_acquire) != observed)
		return false;
	*seq = op_seq(op);
	return true;
}

void settle_tagged(struct gpucap_region *r, uint32_t device, uint64_t observed)
{
	uint32_t slot, lane, seq;
	int64_t amount;
	if (!read_tagged_op(r, device, observed, &slot, &lane, &seq, &amount))
		return;
	GPUCAP_CRASH_POINT("charge.helper_settling");
	apply_to_granted(region_lane_device(r, slot, lane, device), seq, amount);
}

int64_t pending_tagged_amount(const struct gpucap_region *r, uint32_t device, uint64_t observed)
{
	uint32_t slot, lane, seq;
	int64_t amount;
	if (!read_tagged_op(r, device, observed, &slot, &lane, &seq, &amount))
		return 0;
	const struct lane_device *lane_device = region_lane_device(r, slot, lane, device);
	/* A10: pairs with R10; applied means no longer pending in I1. */
	uint64_t granted = atomic_load_explicit(&lane_device->granted, memory_order_acquire);
	return granted_seq(granted) == seq ? 0 : amount;
}

static void clear_own_tag(struct device_entry *entry, uint32_t tag)
{
	/* A5 load, R5 CAS below: the clear is ordered after this lane's R10
	 * apply, so whoever sees the tag gone sees the operation applied (I1
	 * without the pending term). */
	uint64_t word = atomic_load_explicit(&entry->charge, memory_order_acquire);
	/* Only this lane writes this tag, so any other change to the word
	 * replaced the tag: at most one retry. */
	while (charge_tag(word) == tag) {
		if (atomic_compare_exchange_weak_explicit(&entry->charge, &word,
		                                          charge_word(charge_total(word), 0),
		                                          memory_order_acq_rel, memory_order_acquire))
			return;
	}
}

static void raise_peak(struct device_entry *entry, uint64_t total)
{
	uint64_t peak = atomic_load_explicit(&entry->peak, memory_order_relaxed);
	while (peak < total && !atomic_compare_exchange_weak_explicit(
	                           &entry->peak, &peak, total, memory_order_relaxed, memory_order_relaxed)) {
	}
}

gpucap_status lane_move(struct gpucap_region *r, uint32_t slot, uint32_t lane, uint32_t device,
                        int64_t amount, bool check_limit)
{
	struct device_entry *entry = region_device(r, device);
	struct lane_header *header = region_lane(r, slot, lane);
	struct lane_device *lane_device = region_lane_device(r, slot, lane, device);
	uint32_t tag = lane_tag(r, slot, lane);

	/* A previous owner of this lane may have died with its tag in place.
	 * A5: pairs with the R5 CAS that put it there. */
	uint64_t word = atomic_load_explicit(&entry->charge, memory_order_acquire);
	if (charge_tag(word) == tag) {
		settle_tagged(r, device, word);
		clear_own_tag(entry, tag);
	}
	if (amount == 0)
		return GPUCAP_OK;

	/* A10: the lane's ledger as last applied (by us or a helper); the next
	 * operation follows its sequence. */
	uint32_t seq =
	    (granted_seq(atomic_load_explicit(&lane_device->granted, memory_order_acquire)) + 1) & 0xffffu;
	atomic_store_explicit(&header->op_amount, amount, memory_order_relaxed);
	/* R9: publishes op_amount with the record; partner A9 in
	 * read_tagged_op. Our R5 CAS below comes after it in this thread, so a
	 * helper that sees our tag (A5) sees this record. */
	atomic_store_explicit(&header->op, op_word(device, seq), memory_order_release);
	GPUCAP_CRASH_POINT("charge.record_written");

	gpucap_status status = GPUCAP_OK;
	for (;;) {
		/* A5: pairs with the R5 CAS of the last mover, whose record we may
		 * have to apply (help) before ours can land. */
		word = atomic_load_explicit(&entry->charge, memory_order_acquire);
		if (charge_tag(word) != 0)
			settle_tagged(r, device, word); /* help whoever moved it last */
		uint64_t total = charge_total(word);
		uint64_t next;
		if (amount > 0) {
			uint64_t limit = check_limit ? effective_limit(r, device) : GPUCAP_BYTES_MAX;
			if ((uint64_t)amount > limit || total > limit - (uint64_t)amount) {
				status = GPUCAP_ERR_OVER_LIMIT;
				break;
			}
			next = total + (uint64_t)amount;
			/* The cap: a growth lands only at or under the limit. */
			assert(next <= limit);
		} else {
			uint64_t decrease = (uint64_t)(-amount);
			if (decrease > total) {
				/* More returned than charged: a caller bug. Keep the
				 * total exact by returning only what is charged; our
				 * tag is not on the word, so the record may change. */
				atomic_fetch_add_explicit(&r->header->underflows, 1, memory_order_relaxed);
				amount = -(int64_t)total;
				/* R9 again (no tag of ours is on the word, so no
				 * helper reads this record until our CAS, R5). */
				atomic_store_explicit(&header->op_amount, amount, memory_order_release);
				if (amount == 0)
					break;
				continue;
			}
			next = total - decrease;
		}
		/* R5 (acq_rel): the linearization point of the move. Acquire: we
		 * computed from the last mover's total; release: our record (R9)
		 * is visible to whoever sees our tag. I1 holds with our operation
		 * pending; I2: next <= limit. */
		if (atomic_compare_exchange_weak_explicit(&entry->charge, &word, charge_word(next, tag),
		                                          memory_order_acq_rel, memory_order_acquire)) {
			GPUCAP_CRASH_POINT("charge.total_moved");
			apply_to_granted(lane_device, seq, amount);
			GPUCAP_CRASH_POINT("charge.granted_applied");
			clear_own_tag(entry, tag);
			GPUCAP_CRASH_POINT("charge.tag_cleared");
			if (amount > 0)
				raise_peak(entry, next);
			break;
		}
	}
	/* R9: the record is done; helpers that read it later find no valid op. */
	atomic_store_explicit(&header->op, 0, memory_order_release);
	return status;
}
