/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The live-allocation map (src/memory/track.c), compiled into this program so
 * that the tests can choose keys sharing one home bucket and look at the
 * chains. "unit" checks the contract from one thread; "stress" has threads
 * insert, remove and put back distinct and colliding keys at once and checks
 * that every entry comes back exactly once, to the one thread that asked.
 * Under ASan a lost entry is a leak and one returned twice a double free;
 * under TSan every access to a slot is checked for races.
 *
 *   tracktest unit
 *   tracktest stress [--threads N] [--rounds N]
 */
#define _POSIX_C_SOURCE 200809L /* pthread barriers */
#include "track.c"
#include "check.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* ---- Helpers ---------------------------------------------------------------- */

static struct gpucap_track_entry *make(enum gpucap_track_tag tag, uint64_t key, uint64_t bytes)
{
	struct gpucap_track_entry *e = gpucap_track_new();
	CHECK(e != NULL);
	e->tag = (uint8_t)tag;
	e->key = key;
	e->bytes = bytes;
	return e;
}

/* The next key at or after *cursor whose home is heads[home]. */
static uint64_t key_in(unsigned tag, unsigned home, uint64_t *cursor)
{
	while (home_of(tag, *cursor) != &heads[home])
		(*cursor)++;
	return (*cursor)++;
}

static int chain_length(unsigned home)
{
	int n = 0;
	for (struct bucket *b = atomic_load(&heads[home].next); b; b = atomic_load(&b->next))
		n++;
	return n;
}

/* A small xorshift generator per thread: reproducible, no shared state. */
static uint64_t next_random(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void shuffle(uint64_t *v, int n, uint64_t *seed)
{
	for (int i = n - 1; i > 0; i--) {
		int j = (int)(next_random(seed) % (uint64_t)(i + 1));
		uint64_t t = v[i];
		v[i] = v[j];
		v[j] = t;
	}
}

static void must_insert(struct gpucap_track_entry *e)
{
	CHECK(gpucap_track_insert(e));
}

/* ---- Unit -------------------------------------------------------------------- */

static void unit_basics(void)
{
	CHECK(gpucap_track_remove(GPUCAP_TRACK_PTR, 42) == NULL);
	struct gpucap_track_entry *e = make(GPUCAP_TRACK_PTR, 42, 7);
	must_insert(e);
	CHECK(gpucap_track_remove(GPUCAP_TRACK_HANDLE, 42) == NULL);
	CHECK(gpucap_track_remove(GPUCAP_TRACK_PTR, 43) == NULL);
	CHECK(gpucap_track_remove(GPUCAP_TRACK_PTR, 42) == e);
	CHECK(e->bytes == 7 && e->key == 42);
	CHECK(gpucap_track_remove(GPUCAP_TRACK_PTR, 42) == NULL);
	free(e);
}

/* One key under every tag: five different entries. */
static void unit_tags(void)
{
	struct gpucap_track_entry *e[GPUCAP_TRACK_CTX + 1];
	for (int t = GPUCAP_TRACK_PTR; t <= GPUCAP_TRACK_CTX; t++)
		must_insert(e[t] = make((enum gpucap_track_tag)t, 0x1000, (uint64_t)t));
	for (int t = GPUCAP_TRACK_CTX; t >= GPUCAP_TRACK_PTR; t--) {
		CHECK(gpucap_track_remove((enum gpucap_track_tag)t, 0x1000) == e[t]);
		free(e[t]);
	}
	for (int t = GPUCAP_TRACK_PTR; t <= GPUCAP_TRACK_CTX; t++)
		CHECK(gpucap_track_remove((enum gpucap_track_tag)t, 0x1000) == NULL);
}

/* The same key twice (a put-back racing a new allocation can do that):
 * both entries come back, once each. */
static void unit_duplicates(void)
{
	struct gpucap_track_entry *a = make(GPUCAP_TRACK_PTR, 9, 1), *b = make(GPUCAP_TRACK_PTR, 9, 2);
	must_insert(a);
	must_insert(b);
	struct gpucap_track_entry *x = gpucap_track_remove(GPUCAP_TRACK_PTR, 9);
	struct gpucap_track_entry *y = gpucap_track_remove(GPUCAP_TRACK_PTR, 9);
	CHECK(x && y && x != y && (x == a || x == b) && (y == a || y == b));
	CHECK(gpucap_track_remove(GPUCAP_TRACK_PTR, 9) == NULL);
	free(a);
	free(b);
}

/* 200 keys in one home bucket: the chain grows to hold them, every one comes
 * back, and refilling reuses the slots instead of growing again. */
static void unit_chain(void)
{
	enum { N = 200, HOME = 17 };
	uint64_t keys[N], cursor = 1, seed = 1;
	struct gpucap_track_entry *e[N];
	for (int i = 0; i < N; i++) {
		keys[i] = key_in(GPUCAP_TRACK_PTR, HOME, &cursor);
		must_insert(e[i] = make(GPUCAP_TRACK_PTR, keys[i], (uint64_t)i));
	}
	int grown = chain_length(HOME);
	CHECK(grown == (N + SLOTS_PER_BUCKET - 1) / SLOTS_PER_BUCKET - 1);
	for (int round = 0; round < 3; round++) {
		uint64_t order[N];
		for (int i = 0; i < N; i++)
			order[i] = (uint64_t)i;
		shuffle(order, N, &seed);
		for (int i = 0; i < N; i++) {
			int k = (int)order[i];
			CHECK(gpucap_track_remove(GPUCAP_TRACK_PTR, keys[k]) == e[k]);
		}
		for (int i = 0; i < N; i++)
			CHECK(gpucap_track_remove(GPUCAP_TRACK_PTR, keys[i]) == NULL);
		for (int i = 0; i < N; i++)
			must_insert(e[i]);
		CHECK(chain_length(HOME) == grown);
	}
	for (int i = 0; i < N; i++) {
		CHECK(gpucap_track_remove(GPUCAP_TRACK_PTR, keys[i]) == e[i]);
		free(e[i]);
	}
}

/* More entries than the home buckets hold, spread as device pointers are. */
static void unit_many(void)
{
	enum { N = 50000 };
	struct gpucap_track_entry **e = calloc(N, sizeof(*e));
	CHECK(e != NULL);
	for (int i = 0; i < N; i++)
		must_insert(e[i] = make(GPUCAP_TRACK_PTR, UINT64_C(0x7f0000000000) + (uint64_t)i * 512, 0));
	for (int i = N - 1; i >= 0; i--) {
		CHECK(gpucap_track_remove(GPUCAP_TRACK_PTR, e[i]->key) == e[i]);
		free(e[i]);
	}
	free(e);
}

/* The overflow buckets of every chain, handed to the test before a forget
 * drops them (in a forked child they stay behind, unreachable). */
static void free_chains(struct bucket **chains)
{
	for (int i = 0; i < HEADS; i++)
		for (struct bucket *b = chains[i], *next; b; b = next) {
			next = atomic_load(&b->next);
			free(b);
		}
}

static void unit_forget_all(void)
{
	enum { N = 30 };
	uint64_t cursor = 1;
	struct gpucap_track_entry *e[N];
	for (int i = 0; i < N; i++)
		must_insert(e[i] = make(GPUCAP_TRACK_ARRAY, key_in(GPUCAP_TRACK_ARRAY, 5, &cursor), 0));
	CHECK(chain_length(5) > 0);
	struct bucket **chains = calloc(HEADS, sizeof(*chains));
	CHECK(chains != NULL);
	for (int i = 0; i < HEADS; i++)
		chains[i] = atomic_load(&heads[i].next);
	gpucap_track_forget_all();
	for (int i = 0; i < N; i++)
		CHECK(gpucap_track_remove(GPUCAP_TRACK_ARRAY, e[i]->key) == NULL);
	CHECK(chain_length(5) == 0);
	/* The map works as new. */
	must_insert(e[0]);
	CHECK(gpucap_track_remove(GPUCAP_TRACK_ARRAY, e[0]->key) == e[0]);
	for (int i = 0; i < N; i++)
		free(e[i]);
	free_chains(chains);
	free(chains);
}

/* A remover that read a slot, then slept while the entry left and another
 * (same tag, even the same address) took the slot, must not claim it. */
static void unit_stale_claim(void)
{
	enum { HOME = 100 };
	uint64_t cursor = 1;
	struct slot *s = &heads[HOME].slot[0];
	struct gpucap_track_entry *e =
	    make(GPUCAP_TRACK_HANDLE, key_in(GPUCAP_TRACK_HANDLE, HOME, &cursor), 0);
	must_insert(e);
	uint64_t stale = atomic_load(&s->state);
	CHECK(phase_of(stale) == READY && atomic_load(&s->key) == e->key);
	CHECK(gpucap_track_remove(GPUCAP_TRACK_HANDLE, e->key) == e);
	e->key = key_in(GPUCAP_TRACK_HANDLE, HOME, &cursor);
	must_insert(e);
	CHECK(atomic_load(&s->key) == e->key && phase_of(atomic_load(&s->state)) == READY);
	CHECK(!atomic_compare_exchange_strong(&s->state, &stale, next_state(stale, CLAIMED, 0)));
	CHECK(gpucap_track_remove(GPUCAP_TRACK_HANDLE, e->key) == e);
	free(e);
}

static int run_unit(void)
{
	unit_basics();
	unit_stale_claim();
	unit_tags();
	unit_duplicates();
	unit_chain();
	unit_many();
	unit_forget_all();
	printf("tracktest unit: ok\n");
	return 0;
}

/* ---- Stress ------------------------------------------------------------------ */

/* Homes shared by every thread, so that they fill and grow the same chains. */
#define SHARED_HOMES 4
#define OWN_KEYS     120 /* per thread, all in the shared homes */
#define SHARED_KEYS  24  /* keys every thread inserts and removes */

struct stress {
	int threads;
	int rounds;
	pthread_barrier_t barrier;
	uint64_t shared_keys[SHARED_KEYS];
	uint64_t own_keys[64][OWN_KEYS];
	/* Per shared key: entries inserted and removed, by every thread. */
	_Atomic uint64_t inserted[SHARED_KEYS];
	_Atomic uint64_t removed[SHARED_KEYS];
	/* Shared entries inserted or being inserted, not yet wholly removed,
	 * and the most there ever were at once. */
	_Atomic uint64_t shared_live;
	_Atomic uint64_t shared_peak;
	/* Phase three: how many removers got the one entry of each round. */
	_Atomic uint64_t race_wins;
};

struct worker {
	struct stress *s;
	int index;
};

/* The entry of a shared key records who made it; claimed proves a single
 * owner: it is set by the one remover and freed right after. */
struct shared_mark {
	_Atomic int claimed;
};

/* Phase one: each thread's own keys, in chains every thread is filling.
 * Each remove must return this thread's entry: nobody else has the key. */
static void own_round(struct worker *w, struct gpucap_track_entry **e, uint64_t *seed)
{
	const uint64_t *keys = w->s->own_keys[w->index];
	for (int i = 0; i < OWN_KEYS; i++)
		must_insert(e[i]);
	uint64_t order[OWN_KEYS];
	for (int i = 0; i < OWN_KEYS; i++)
		order[i] = (uint64_t)i;
	shuffle(order, OWN_KEYS, seed);
	for (int i = 0; i < OWN_KEYS; i++) {
		int k = (int)order[i];
		struct gpucap_track_entry *got = gpucap_track_remove(GPUCAP_TRACK_PTR, keys[k]);
		CHECK(got == e[k]);
		CHECK(got->key == keys[k] && got->bytes == (uint64_t)w->index);
		/* A driver that refuses the free: the entry goes back, then out. */
		if (i % 7 == 0) {
			must_insert(got);
			CHECK(gpucap_track_remove(GPUCAP_TRACK_PTR, keys[k]) == got);
		}
	}
}

static void shared_insert(struct stress *s, int k)
{
	struct gpucap_track_entry *e = make(GPUCAP_TRACK_HANDLE, s->shared_keys[k], 0);
	struct shared_mark *mark = calloc(1, sizeof(*mark));
	CHECK(mark != NULL);
	e->pool = (struct gpucap_pool *)(void *)mark;
	/* Counted first: a remover may take it the instant it is in. */
	atomic_fetch_add(&s->inserted[k], 1);
	uint64_t live = atomic_fetch_add(&s->shared_live, 1) + 1;
	uint64_t peak = atomic_load(&s->shared_peak);
	while (peak < live && !atomic_compare_exchange_weak(&s->shared_peak, &peak, live))
		;
	must_insert(e);
}

static bool shared_remove(struct stress *s, int k)
{
	struct gpucap_track_entry *e = gpucap_track_remove(GPUCAP_TRACK_HANDLE, s->shared_keys[k]);
	if (!e)
		return false;
	CHECK(e->key == s->shared_keys[k] && e->tag == GPUCAP_TRACK_HANDLE);
	struct shared_mark *mark = (struct shared_mark *)(void *)e->pool;
	CHECK(atomic_exchange(&mark->claimed, 1) == 0);
	atomic_fetch_add(&s->removed[k], 1);
	free(mark);
	free(e);
	atomic_fetch_sub(&s->shared_live, 1);
	return true;
}

/* Phase two: every thread inserts and removes the same few keys. */
static void shared_round(struct worker *w, uint64_t *seed)
{
	for (int i = 0; i < 64; i++) {
		int k = (int)(next_random(seed) % SHARED_KEYS);
		if (next_random(seed) % 2)
			shared_insert(w->s, k);
		else
			shared_remove(w->s, k);
	}
}

/* Phase three: thread 0 inserts one entry, all threads remove it at once;
 * exactly one of them gets it. */
static void race_round(struct worker *w, int round)
{
	struct stress *s = w->s;
	uint64_t key = UINT64_C(0xdead0000) + (uint64_t)round;
	if (w->index == 0)
		must_insert(make(GPUCAP_TRACK_CTX, key, 0));
	pthread_barrier_wait(&s->barrier);
	struct gpucap_track_entry *e = gpucap_track_remove(GPUCAP_TRACK_CTX, key);
	if (e) {
		CHECK(e->key == key);
		atomic_fetch_add(&s->race_wins, 1);
		free(e);
	}
	pthread_barrier_wait(&s->barrier);
}

static void *stress_worker(void *arg)
{
	struct worker *w = arg;
	uint64_t seed = UINT64_C(0x9e3779b97f4a7c15) * (uint64_t)(w->index + 1);
	struct gpucap_track_entry *own[OWN_KEYS];
	for (int i = 0; i < OWN_KEYS; i++)
		own[i] = make(GPUCAP_TRACK_PTR, w->s->own_keys[w->index][i], (uint64_t)w->index);
	pthread_barrier_wait(&w->s->barrier);
	for (int r = 0; r < w->s->rounds; r++) {
		own_round(w, own, &seed);
		shared_round(w, &seed);
	}
	for (int i = 0; i < OWN_KEYS; i++)
		free(own[i]);
	pthread_barrier_wait(&w->s->barrier);
	for (int r = 0; r < w->s->rounds; r++)
		race_round(w, r);
	return NULL;
}

static void stress_keys(struct stress *s)
{
	uint64_t cursor = UINT64_C(0x7f0000000000);
	for (int k = 0; k < SHARED_KEYS; k++)
		s->shared_keys[k] = key_in(GPUCAP_TRACK_HANDLE, (unsigned)k % SHARED_HOMES, &cursor);
	for (int t = 0; t < s->threads; t++)
		for (int i = 0; i < OWN_KEYS; i++)
			s->own_keys[t][i] =
			    key_in(GPUCAP_TRACK_PTR, (unsigned)(t + i) % SHARED_HOMES, &cursor);
}

/* Whatever is left of the shared keys, removed by one thread: with the
 * removals made by the workers, every insert is accounted for once. */
static void stress_drain(struct stress *s)
{
	for (int k = 0; k < SHARED_KEYS; k++) {
		while (shared_remove(s, k))
			;
		CHECK(atomic_load(&s->inserted[k]) == atomic_load(&s->removed[k]));
	}
}

/* A chain grows only when an insert finds all its slots in use, so its
 * length follows the most entries it had at once. The margin covers inserts
 * that saw slots in use which emptied behind them before they appended. */
static void stress_check_chains(struct stress *s)
{
	uint64_t most = (uint64_t)s->threads * OWN_KEYS + atomic_load(&s->shared_peak);
	for (unsigned h = 0; h < SHARED_HOMES; h++)
		CHECK((uint64_t)chain_length(h) <= 2 * most / SLOTS_PER_BUCKET + 2 * (uint64_t)s->threads);
}

static int run_stress(int threads, int rounds)
{
	CHECK(threads > 0 && threads <= 64 && rounds > 0);
	struct stress *s = calloc(1, sizeof(*s));
	CHECK(s != NULL);
	s->threads = threads;
	s->rounds = rounds;
	stress_keys(s);
	CHECK(pthread_barrier_init(&s->barrier, NULL, (unsigned)threads) == 0);
	pthread_t th[64];
	struct worker w[64];
	for (int t = 0; t < threads; t++) {
		w[t] = (struct worker){s, t};
		CHECK(pthread_create(&th[t], NULL, stress_worker, &w[t]) == 0);
	}
	for (int t = 0; t < threads; t++)
		CHECK(pthread_join(th[t], NULL) == 0);
	stress_drain(s);
	CHECK(atomic_load(&s->race_wins) == (uint64_t)rounds);
	stress_check_chains(s);
	pthread_barrier_destroy(&s->barrier);
	uint64_t ins = 0;
	for (int k = 0; k < SHARED_KEYS; k++)
		ins += atomic_load(&s->inserted[k]);
	printf("tracktest stress: ok (%d threads, %d rounds, %llu shared inserts, chains %d %d %d %d)\n",
	       threads, rounds, (unsigned long long)ins, chain_length(0), chain_length(1), chain_length(2),
	       chain_length(3));
	free(s);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "unit") == 0)
		return run_unit();
	if (argc >= 2 && strcmp(argv[1], "stress") == 0) {
		int threads = 8, rounds = 400;
		if (!check_thread_options(argc, argv, 2, &threads, &rounds))
			return 2;
		return run_stress(threads, rounds);
	}
	fprintf(stderr, "usage: tracktest unit | stress [--threads N] [--rounds N]\n");
	return 2;
}
