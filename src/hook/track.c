/*
 * Live allocations: (tag, key) -> bytes, device, kind. A striped hash map:
 * 256 stripes, each its own mutex and buckets, so threads allocating at once
 * almost never meet, and no lock is shared by the whole process.
 */
#include "hook.h"

#include <stdlib.h>
#include <string.h>

#define STRIPES            256
#define BUCKETS_PER_STRIPE 64

struct stripe {
	pthread_mutex_t lock;
	struct gpucap_track_entry *buckets[BUCKETS_PER_STRIPE];
} __attribute__((aligned(64)));

static struct stripe stripes[STRIPES] = {
    [0 ... STRIPES - 1] = {.lock = PTHREAD_MUTEX_INITIALIZER},
};

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

static struct stripe *stripe_of(uint64_t hash)
{
	return &stripes[hash % STRIPES];
}

static struct gpucap_track_entry **bucket_of(struct stripe *s, uint64_t hash)
{
	return &s->buckets[(hash / STRIPES) % BUCKETS_PER_STRIPE];
}

struct gpucap_track_entry *gpucap_track_new(void)
{
	return calloc(1, sizeof(struct gpucap_track_entry));
}

void gpucap_track_insert(struct gpucap_track_entry *entry)
{
	uint64_t hash = mix(entry->key, entry->tag);
	struct stripe *s = stripe_of(hash);
	pthread_mutex_lock(&s->lock);
	struct gpucap_track_entry **bucket = bucket_of(s, hash);
	entry->next = *bucket;
	*bucket = entry;
	pthread_mutex_unlock(&s->lock);
}

static struct gpucap_track_entry **find_locked(struct stripe *s, uint64_t hash, unsigned tag, uint64_t key)
{
	struct gpucap_track_entry **link = bucket_of(s, hash);
	while (*link && !((*link)->key == key && (*link)->tag == tag))
		link = &(*link)->next;
	return link;
}

struct gpucap_track_entry *gpucap_track_insert_unique(struct gpucap_track_entry *entry)
{
	uint64_t hash = mix(entry->key, entry->tag);
	struct stripe *s = stripe_of(hash);
	pthread_mutex_lock(&s->lock);
	struct gpucap_track_entry *existing = *find_locked(s, hash, entry->tag, entry->key);
	if (!existing) {
		struct gpucap_track_entry **bucket = bucket_of(s, hash);
		entry->next = *bucket;
		*bucket = entry;
	}
	pthread_mutex_unlock(&s->lock);
	return existing;
}

struct gpucap_track_entry *gpucap_track_remove(enum gpucap_track_tag tag, uint64_t key)
{
	uint64_t hash = mix(key, tag);
	struct stripe *s = stripe_of(hash);
	pthread_mutex_lock(&s->lock);
	struct gpucap_track_entry **link = find_locked(s, hash, tag, key);
	struct gpucap_track_entry *entry = *link;
	if (entry)
		*link = entry->next;
	pthread_mutex_unlock(&s->lock);
	if (entry)
		entry->next = NULL;
	return entry;
}

bool gpucap_track_with(enum gpucap_track_tag tag, uint64_t key,
                       void (*fn)(struct gpucap_track_entry *, void *), void *arg)
{
	uint64_t hash = mix(key, tag);
	struct stripe *s = stripe_of(hash);
	pthread_mutex_lock(&s->lock);
	struct gpucap_track_entry *entry = *find_locked(s, hash, tag, key);
	if (entry)
		fn(entry, arg);
	pthread_mutex_unlock(&s->lock);
	return entry != NULL;
}

/* In a forked child: the parent's allocations belong to the parent's slot
 * and must never be released by the child. Another thread of the parent may
 * have held a stripe, or been half way through a list update, at the
 * instant of fork, so nothing is walked: the stripes are re-created empty
 * and the parent's nodes are left where they are (copy-on-write pages the
 * child never touches). */
void gpucap_track_forget_all(void)
{
	for (int i = 0; i < STRIPES; i++) {
		pthread_mutex_init(&stripes[i].lock, NULL);
		memset(stripes[i].buckets, 0, sizeof(stripes[i].buckets));
	}
}
