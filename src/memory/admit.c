/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Admission: the charge to the region before an allocation, within the
 * region's limit (which the region lowers to the limits file's cap), and
 * its return; and the common shape of the simple allocation paths (charge,
 * allocate, track).
 */
#include "log.h"
#include "memory_internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Registered once by the pools (gpucap_memory_start), before any charge. */
static void (*before_refusal)(int region_index);

void gpucap_admit_before_refusal(void (*reclaim)(int region_index))
{
	before_refusal = reclaim;
}

/* The region file was truncated or replaced under this process: every
 * charge fails closed from now on. Said once, in the region's own words;
 * only refusals come here, never the success path. */
static void report_failed_region(void)
{
	static atomic_bool reported;
	if (atomic_exchange_explicit(&reported, true, memory_order_relaxed))
		return;
	char why[512];
	if (!gpucap_region_failed(memory_env.region, why, sizeof(why)))
		return;
	gpucap_log(GPUCAP_LOG_ERROR, "%s", strncmp(why, "gpucap: ", 8) == 0 ? why + 8 : why);
}

/* ---- Ledger moves in flight ------------------------------------------------ */

/* An allocation is charged before the driver makes it, and a free given back
 * after the driver frees it: in between, the ledger holds bytes the driver
 * does not. A context measured as NVML's figure less the ledger is then too
 * small by those bytes, and the region would keep that size for every later
 * process (once seen on the test driver under load: 64 MiB past the cap).
 * So the paths that move the ledger around a driver call count themselves
 * here, per process, and a measurement is believed only if no move of
 * another thread was under way from before its NVML query to after its
 * ledger read. A move of the measuring thread itself (a refusal measures
 * the pending context on the way out) changed nothing: its charge was
 * refused. */
static atomic_uint_fast64_t moves_begun;
static atomic_uint_fast64_t moves_ended;
static _Thread_local unsigned moves_open_here;

void gpucap_ledger_move_begin(void)
{
	moves_open_here++;
	/* seq_cst, before the reservation or the driver's free. Partner: the
	 * loads of gpucap_ledger_quiet and gpucap_ledger_still. Invariant: a
	 * measurement that finds begun == ended + its own moves, and begun
	 * unchanged after its ledger read, overlapped no move. */
	atomic_fetch_add(&moves_begun, 1);
}

void gpucap_ledger_move_end(void)
{
	/* seq_cst, after the driver answered and the ledger was settled.
	 * Partner: the load of moves_ended in gpucap_ledger_quiet. */
	atomic_fetch_add(&moves_ended, 1);
	moves_open_here--;
}

bool gpucap_ledger_quiet(uint64_t *mark)
{
	/* Ended first: a move that begins and ends between the two loads
	 * leaves begun ahead, which reads as a move under way (never as
	 * quiet). */
	uint64_t ended = atomic_load(&moves_ended);
	uint64_t begun = atomic_load(&moves_begun);
	*mark = begun;
	return begun - ended == moves_open_here;
}

bool gpucap_ledger_still(uint64_t mark)
{
	/* Partner: the fetch_add in gpucap_ledger_move_begin. The fence keeps
	 * the ledger's loads before this one. */
	atomic_thread_fence(memory_order_seq_cst);
	return atomic_load(&moves_begun) == mark;
}

void gpucap_ledger_moves_after_fork(void)
{
	/* The child has only the forking thread, which is inside no move:
	 * moves other threads had under way never end here, and counted as
	 * open they would stop every measurement of the child for good. */
	atomic_store(&moves_ended, atomic_load(&moves_begun));
	moves_open_here = 0;
}

/* Data refused while other processes' contexts still sit at their blind
 * estimate is asked for again as those are measured (context_admit.c):
 * processes that start together would otherwise be refused for the
 * estimates' excess. Only data: a context waits in its own admission, and
 * the driver's charges are made under the reconciler's lock, which must not
 * wait. */
static gpucap_status reserve_beside_estimates(int region_index, uint64_t bytes)
{
	gpucap_status st = GPUCAP_ERR_OVER_LIMIT;
	struct gpucap_estimates_wait wait = {0, 0};
	/* This thread's ledger move (gpucap_simple_admit) has reserved nothing
	 * yet: it is closed while the thread waits, so that this process's
	 * reconciler can measure its own pending context meanwhile (peers may
	 * be waiting for that very measurement), and opened again before each
	 * reservation. */
	bool open = moves_open_here > 0;
	while (st == GPUCAP_ERR_OVER_LIMIT) {
		if (open)
			gpucap_ledger_move_end();
		bool again = gpucap_estimates_wait(&wait, region_index);
		if (open)
			gpucap_ledger_move_begin();
		if (!again)
			break;
		st = gpucap_reserve(memory_env.region, region_index, GPUCAP_KIND_DATA, bytes);
	}
	if (wait.waited_ns && st == GPUCAP_OK)
		GPUCAP_LOG(
		    GPUCAP_LOG_DETAIL,
		    "region device %d: %llu bytes admitted after %llu ms of waiting for contexts beside them to be "
		    "measured",
		    region_index, (unsigned long long)bytes, (unsigned long long)(wait.waited_ns / 1000000));
	else if (wait.waited_ns)
		GPUCAP_LOG(
		    GPUCAP_LOG_DETAIL,
		    "region device %d: %llu bytes refused after %llu ms of waiting for contexts beside them to be "
		    "measured (%s)",
		    region_index, (unsigned long long)bytes, (unsigned long long)(wait.waited_ns / 1000000),
		    gpucap_estimates_wait_end(&wait));
	return st;
}

CUresult gpucap_admit_index(int region_index, gpucap_kind kind, uint64_t bytes)
{
	if (bytes == 0)
		return CUDA_SUCCESS;
	if (!memory_region()) {
		/* The attach may be due again (rate-limited); this charge has no
		 * device entry to go to either way. */
		gpucap_region_retry();
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	if (region_index < 0)
		return CUDA_ERROR_OUT_OF_MEMORY;
	gpucap_status st = gpucap_reserve(memory_env.region, region_index, kind, bytes);
	if (st == GPUCAP_ERR_OVER_LIMIT && before_refusal) {
		/* Pools may have released memory since they were last asked. */
		before_refusal(region_index);
		st = gpucap_reserve(memory_env.region, region_index, kind, bytes);
	}
	if (st == GPUCAP_ERR_OVER_LIMIT && kind == GPUCAP_KIND_DATA && !memory_env.config->context_bytes_set)
		st = reserve_beside_estimates(region_index, bytes);
	if (st == GPUCAP_ERR_CORRUPT)
		report_failed_region();
	return st == GPUCAP_OK ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

CUresult gpucap_admit(const struct gpucap_device *dev, gpucap_kind kind, uint64_t bytes)
{
	if (bytes == 0)
		return CUDA_SUCCESS;
	/* A device waiting for a region that has come (or comes now) is
	 * registered and charged. */
	if (dev->fail_closed && !gpucap_device_retry(dev))
		return CUDA_ERROR_OUT_OF_MEMORY;
	return gpucap_admit_index(dev->region_index, kind, bytes);
}

void gpucap_unadmit_index(int region_index, gpucap_kind kind, uint64_t bytes)
{
	if (bytes == 0 || region_index < 0 || !memory_env.region)
		return;
	gpucap_release(memory_env.region, region_index, kind, bytes);
}

void gpucap_unadmit_correction(int region_index, gpucap_kind kind, uint64_t bytes)
{
	gpucap_unadmit_index(region_index, kind, bytes);
	/* A correction (a context measured smaller, driver memory given back)
	 * frees nothing the application could reuse: its bytes go back to the
	 * device total at once instead of waiting as this thread's idle credit,
	 * so a limit lowered meanwhile refuses the very next allocation. */
	gpucap_region *region = memory_region();
	if (bytes && region_index >= 0 && region)
		gpucap_region_return_credit(region, region_index);
}

bool gpucap_device_usage(int region_index, uint64_t *limit, uint64_t *charged)
{
	if (region_index < 0 || !memory_env.region)
		return false;
	/* A peer that exited still counts until someone sweeps; queries are
	 * where users look, so let them start the (rate-limited) sweep. */
	gpucap_region_maintain(memory_env.region);
	/* The limit reported is the region's, already lowered to the limits
	 * file's cap. */
	return gpucap_region_device_usage(memory_env.region, region_index, limit, charged);
}

/* ---- Tracking helpers ------------------------------------------------------ */

/* Put entry in the map. Should the map be unable to grow (the host is out of
 * memory), the allocation keeps its charge until the process exits: counted
 * too high, never too low. */
void gpucap_track_put(struct gpucap_track_entry *entry)
{
	if (gpucap_track_insert(entry))
		return;
	GPUCAP_LOG(GPUCAP_LOG_WARN,
	           "out of host memory: %llu bytes stay charged on region device %d until exit",
	           (unsigned long long)entry->bytes, entry->region_index);
	free(entry);
}

void gpucap_track(struct gpucap_track_entry *entry, enum gpucap_track_tag tag, uint64_t key, int region_index,
                  gpucap_kind kind, uint64_t bytes, struct gpucap_pool *pool)
{
	entry->tag = (uint8_t)tag;
	entry->key = key;
	entry->region_index = (int16_t)region_index;
	entry->kind = (uint8_t)kind;
	entry->bytes = bytes;
	entry->pool = pool;
	gpucap_track_put(entry);
}

struct gpucap_track_entry *gpucap_track_take(enum gpucap_track_tag tag, uint64_t key)
{
	gpucap_ledger_move_begin();
	return key ? gpucap_track_remove(tag, key) : NULL;
}

void gpucap_track_settle(struct gpucap_track_entry *entry, CUresult r)
{
	if (entry && r == CUDA_SUCCESS)
		gpucap_track_release(entry);
	else if (entry)
		gpucap_track_put(entry);
	gpucap_ledger_move_end();
}

void gpucap_track_release(struct gpucap_track_entry *entry)
{
	gpucap_unadmit_index(entry->region_index, (gpucap_kind)entry->kind, entry->bytes);
	free(entry);
}

CUresult gpucap_simple_admit(const struct simple_alloc *a, struct gpucap_track_entry **entry)
{
	*entry = gpucap_track_new();
	if (!*entry)
		return CUDA_ERROR_OUT_OF_MEMORY;
	gpucap_ledger_move_begin();
	CUresult r = gpucap_admit(a->dev, a->kind, a->bytes);
	if (r != CUDA_SUCCESS) {
		gpucap_ledger_move_end();
		free(*entry);
		*entry = NULL;
		gpucap_refusal_note(a->dev->region_index, a->dev, a->bytes, a->api);
	}
	return r;
}

void gpucap_simple_done(const struct simple_alloc *a, struct gpucap_track_entry *entry, CUresult r,
                        uint64_t key)
{
	if (r != CUDA_SUCCESS) {
		gpucap_unadmit_index(a->dev->region_index, a->kind, a->bytes);
		free(entry);
	} else {
		gpucap_track(entry, a->tag, key, a->dev->region_index, a->kind, a->bytes, NULL);
	}
	gpucap_ledger_move_end();
}
