/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Live allocations: (tag, key) -> entry. A hash map with no lock at all: the
 * hot paths (every allocation and every free) only load and CAS words.
 *
 * Each home bucket holds a few slots and, when they are all in use, a chain
 * of overflow buckets appended with one CAS. Buckets are never freed (a
 * forked child drops the chains, see gpucap_track_forget_all), so a thread
 * walking a chain can never reach freed memory. A chain grows only when an
 * insert finds every slot of it in use, so its length follows the peak
 * number of entries that hash there, and emptied slots are reused.
 *
 * Inserting needs memory only to grow a chain. Should that fail, the insert
 * says so and the caller keeps the entry (admit.c then leaves the
 * allocation charged: counted too high, never too low).
 *
 * A slot keeps its own copy of the key, so a lookup never dereferences an
 * entry. Entries are the callers' memory: whoever wins the CAS that claims a
 * slot owns its entry from that instant and may free it, since nothing else
 * can reach it any more.
 *
 * The slot's state word carries its phase, the entry's tag and a version
 * bumped on every change. A remover reads the state, then the key, and
 * claims the slot with a CAS on the exact state it read: if the slot was
 * emptied and refilled in between (even with the same entry address), the
 * version differs and the CAS fails, so a key read from a slot is trusted only
 * when the claim proves the slot did not move.
 */
#include "track.h"

#include <stdatomic.h>
#include <stdlib.h>

enum phase { EMPTY = 0, WRITING = 1, READY = 2, CLAIMED = 3 };

#define PHASE_BITS    2
#define TAG_BITS      6
#define VERSION_SHIFT (PHASE_BITS + TAG_BITS)

_Static_assert(GPUCAP_TRACK_CTX < (1 << TAG_BITS), "every tag must fit the slot state");

struct slot {
	_Atomic uint64_t state; /* version << VERSION_SHIFT | tag << PHASE_BITS | phase */
	_Atomic uint64_t key;   /* read by every scan, so atomic; valid while READY */
	/* Written while WRITING and read while CLAIMED, each by the one thread
	 * that owns the slot then: the state word orders both. */
	struct gpucap_track_entry *entry;
};

#define SLOTS_PER_BUCKET 5

/* Two cache lines: five slots and the link to the next bucket. */
struct bucket {
	struct slot slot[SLOTS_PER_BUCKET];
	_Atomic(struct bucket *) next;
};

/* 10,240 entries fit before any chain grows. The array is zero (every slot
 * EMPTY) and costs memory only where a page is written. */
#define HEADS 2048

static struct bucket heads[HEADS] __attribute__((aligned(64)));

static uint64_t mix(uint64_t key, unsigned tag)
{
	uint64_t h = key ^ ((uint64_t)tag << 56);
	h ^= h >> 33;
	h *= UINT64_C(0xff51afd7ed558ccd);
	h ^= h >> 33;
	h *= UINT64_C(0xc4ceb9fe1a85ec53);
	h ^= h >> 33;
	return h;
}

static struct bucket *home_of(unsigned tag, uint64_t key)
{
	return &heads[mix(key, tag) % HEADS];
}

static enum phase phase_of(uint64_t state)
{
	return (enum phase)(state & ((1u << PHASE_BITS) - 1));
}

static unsigned tag_of(uint64_t state)
{
	return (unsigned)(state >> PHASE_BITS) & ((1u << TAG_BITS) - 1);
}

/* The state after s in which the slot is in phase p with tag. */
static uint64_t next_state(uint64_t s, enum phase p, unsigned tag)
{
	uint64_t version = (s >> VERSION_SHIFT) + 1;
	return version << VERSION_SHIFT | (uint64_t)tag << PHASE_BITS | (uint64_t)p;
}

/* The bucket after b, appended when b is the last. NULL only when the
 * allocation fails. A bucket that loses the race to be appended was never
 * seen by anyone and is freed at once. */
static struct bucket *next_bucket(struct bucket *b)
{
	struct bucket *n = atomic_load_explicit(&b->next, memory_order_acquire);
	if (n)
		return n;
	struct bucket *fresh = calloc(1, sizeof(*fresh));
	if (!fresh)
		return NULL;
	if (atomic_compare_exchange_strong_explicit(&b->next, &n, fresh, memory_order_acq_rel,
	                                            memory_order_acquire))
		return fresh;
	free(fresh);
	return n;
}

/* Take s if it is empty and publish entry in it. The acquire on taking it
 * pairs with the release that emptied it: every key read by the remover
 * that emptied it happens before the key is overwritten here. */
static bool slot_fill(struct slot *s, struct gpucap_track_entry *entry)
{
	uint64_t state = atomic_load_explicit(&s->state, memory_order_relaxed);
	if (phase_of(state) != EMPTY)
		return false;
	uint64_t writing = next_state(state, WRITING, 0);
	if (!atomic_compare_exchange_strong_explicit(&s->state, &state, writing, memory_order_acquire,
	                                             memory_order_relaxed))
		return false;
	atomic_store_explicit(&s->key, entry->key, memory_order_relaxed);
	s->entry = entry;
	atomic_store_explicit(&s->state, next_state(writing, READY, entry->tag), memory_order_release);
	return true;
}

bool gpucap_track_insert(struct gpucap_track_entry *entry)
{
	for (struct bucket *b = home_of(entry->tag, entry->key); b; b = next_bucket(b)) {
		for (int i = 0; i < SLOTS_PER_BUCKET; i++)
			if (slot_fill(&b->slot[i], entry))
				return true;
	}
	return false;
}

/* Claim s if it holds (tag, key): the entry, now the caller's, or NULL. */
static struct gpucap_track_entry *slot_claim(struct slot *s, unsigned tag, uint64_t key)
{
	uint64_t state = atomic_load_explicit(&s->state, memory_order_acquire);
	uint64_t claimed;
	do {
		if (phase_of(state) != READY || tag_of(state) != tag ||
		    atomic_load_explicit(&s->key, memory_order_relaxed) != key)
			return NULL;
		claimed = next_state(state, CLAIMED, 0);
		/* On failure the slot moved: look at what it holds now. */
	} while (!atomic_compare_exchange_weak_explicit(&s->state, &state, claimed, memory_order_acq_rel,
	                                                memory_order_acquire));
	struct gpucap_track_entry *entry = s->entry;
	s->entry = NULL;
	atomic_store_explicit(&s->state, next_state(claimed, EMPTY, 0), memory_order_release);
	return entry;
}

struct gpucap_track_entry *gpucap_track_remove(enum gpucap_track_tag tag, uint64_t key)
{
	for (struct bucket *b = home_of(tag, key); b;
	     b = atomic_load_explicit(&b->next, memory_order_acquire)) {
		for (int i = 0; i < SLOTS_PER_BUCKET; i++) {
			struct gpucap_track_entry *entry = slot_claim(&b->slot[i], tag, key);
			if (entry)
				return entry;
		}
	}
	return NULL;
}

struct gpucap_track_entry *gpucap_track_new(void)
{
	return calloc(1, sizeof(struct gpucap_track_entry));
}

/* In a forked child: the parent's allocations belong to the parent's slot
 * and must never be released by the child. Another thread of the parent may
 * have been half way through a slot at the instant of fork, so nothing is
 * walked: the home buckets are emptied and the chains, with the parent's
 * entries, are left where they are (copy-on-write pages the child never
 * touches). The child has one thread here. */
void gpucap_track_forget_all(void)
{
	for (int i = 0; i < HEADS; i++) {
		for (int j = 0; j < SLOTS_PER_BUCKET; j++) {
			atomic_store_explicit(&heads[i].slot[j].state, 0, memory_order_relaxed);
			atomic_store_explicit(&heads[i].slot[j].key, 0, memory_order_relaxed);
			heads[i].slot[j].entry = NULL;
		}
		atomic_store_explicit(&heads[i].next, NULL, memory_order_relaxed);
	}
}
