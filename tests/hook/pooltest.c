/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Stream-ordered pools under many threads, with libgpucap.so preloaded over
 * the fake driver. Threads allocate from the device's pool (racing to meet
 * it first), from a shared pool and from pools of their own that they
 * create and destroy (so handles are reused), free, trim and synchronise,
 * while plain allocations are refused and reconcile every pool. At the end
 * every pool is trimmed or destroyed: the process must then hold exactly
 * nothing, in the region and in the driver, and the device never went over
 * its cap. A charge returned twice, or kept by a pool state nobody finds,
 * shows up as a non-zero total.
 *
 *   pooltest [--threads N] [--rounds N]
 */
#define _GNU_SOURCE
#include "check.h"
#include "cuda_api.h"
#include "gpucap/region.h"
#include "hook_scratch.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MiB   (UINT64_C(1) << 20)
#define LIMIT (48 * MiB)

/* Success, or the cap refusing: nothing else is expected. */
#define CU_OR_OOM(call)                                                                                      \
	do {                                                                                                 \
		CUresult r_ = (call);                                                                        \
		CHECK(r_ == CUDA_SUCCESS || r_ == CUDA_ERROR_OUT_OF_MEMORY);                                 \
	} while (0)

static char region_dir[64];
static char region_path[96];

static void fresh_region(void)
{
	hook_scratch_region("pooltest", NULL, region_dir, sizeof(region_dir), region_path,
	                    sizeof(region_path));
	setenv("CUDA_DEVICE_MEMORY_LIMIT", "48m", 1);
	setenv("GPUCAP_CONTEXT_BYTES", "0", 1);
}

static struct gpucap_snapshot *snapshot(gpucap_region **r)
{
	struct gpucap_region_options o;
	memset(&o, 0, sizeof(o));
	o.path = region_path;
	o.observer = true;
	char err[256];
	CHECK(gpucap_region_attach(&o, r, err, sizeof(err)) == GPUCAP_OK);
	struct gpucap_snapshot *s = gpucap_region_snapshot(*r);
	CHECK(s != NULL);
	return s;
}

/* Data bytes this process has charged, on every device. */
static int64_t my_data(void)
{
	gpucap_region *r;
	struct gpucap_snapshot *s = snapshot(&r);
	int64_t data = 0;
	for (uint32_t p = 0; p < s->process_count; p++) {
		if (s->processes[p].pid != getpid() || !s->processes[p].alive)
			continue;
		for (uint32_t d = 0; d < s->device_count; d++)
			data += s->processes[p].devices[s->devices[d].index].kind_bytes[GPUCAP_KIND_DATA];
	}
	gpucap_snapshot_free(s);
	gpucap_region_detach(r);
	return data;
}

static void check_peaks(void)
{
	gpucap_region *r;
	struct gpucap_snapshot *s = snapshot(&r);
	for (uint32_t d = 0; d < s->device_count; d++)
		CHECK(s->devices[d].peak_bytes <= s->devices[d].limit_bytes);
	gpucap_snapshot_free(s);
	gpucap_region_detach(r);
}

/* ---- Workers ----------------------------------------------------------------- */

struct shared {
	CUcontext ctx;
	CUmemoryPool pool; /* created before the workers start */
	int rounds;
	pthread_barrier_t start;
};

#define LIVE 8

struct worker {
	struct shared *sh;
	uint64_t seed;
	CUdeviceptr live[LIVE];
	int count;
};

static uint64_t next_random(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static size_t some_bytes(struct worker *w)
{
	return (size_t)(4096 + next_random(&w->seed) % (2 * MiB));
}

/* p is read after the call that fills it. */
static void keep(struct worker *w, CUresult r, const CUdeviceptr *p)
{
	CHECK(r == CUDA_SUCCESS || r == CUDA_ERROR_OUT_OF_MEMORY);
	if (r == CUDA_SUCCESS)
		w->live[w->count++] = *p;
}

static void free_one(struct worker *w)
{
	int i = (int)(next_random(&w->seed) % (uint64_t)w->count);
	CU(cuMemFreeAsync(w->live[i], NULL));
	w->live[i] = w->live[--w->count];
}

/* A pool of this thread's own: two allocations, destroyed with one live.
 * The fake driver reuses a destroyed pool's address, so handles repeat. */
static void own_pool_cycle(struct worker *w)
{
	CUmemPoolProps props;
	memset(&props, 0, sizeof(props));
	props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
	props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	props.location.id = 0;
	CUmemoryPool own;
	CU(cuMemPoolCreate(&own, &props));
	CUdeviceptr a = 0, b = 0;
	CUresult ra = cuMemAllocFromPoolAsync(&a, some_bytes(w), own, NULL);
	CUresult rb = cuMemAllocFromPoolAsync(&b, some_bytes(w), own, NULL);
	CHECK(ra == CUDA_SUCCESS || ra == CUDA_ERROR_OUT_OF_MEMORY);
	CHECK(rb == CUDA_SUCCESS || rb == CUDA_ERROR_OUT_OF_MEMORY);
	if (ra == CUDA_SUCCESS)
		CU(cuMemFreeAsync(a, NULL));
	CU(cuMemPoolDestroy(own));
	if (rb == CUDA_SUCCESS)
		CU(cuMemFreeAsync(b, NULL));
}

static void step(struct worker *w)
{
	CUdeviceptr p = 0;
	CUmemoryPool device_pool;
	switch (next_random(&w->seed) % 12) {
	case 0:
	case 1:
	case 2:
		if (w->count < LIVE)
			keep(w, cuMemAllocAsync(&p, some_bytes(w), NULL), &p);
		break;
	case 3:
		if (w->count < LIVE)
			keep(w, cuMemAllocFromPoolAsync(&p, some_bytes(w), w->sh->pool, NULL), &p);
		break;
	case 4:
	case 5:
	case 6:
		if (w->count > 0)
			free_one(w);
		break;
	case 7:
		CU(cuDeviceGetMemPool(&device_pool, 0));
		CU(cuMemPoolTrimTo(device_pool, (size_t)(next_random(&w->seed) % (4 * MiB))));
		break;
	case 8:
		CU(cuStreamSynchronize(NULL));
		break;
	case 9:
	case 10:
		/* A refusal here first reconciles every pool of the device. */
		if (cuMemAlloc_v2(&p, 16 * MiB) == CUDA_SUCCESS)
			CU(cuMemFree_v2(p));
		break;
	default:
		own_pool_cycle(w);
	}
}

static void *work(void *arg)
{
	struct worker *w = arg;
	CU(cuCtxSetCurrent(w->sh->ctx));
	pthread_barrier_wait(&w->sh->start);
	/* First call of every thread at once: they race to meet the device's
	 * pool, and exactly one state must come of it. */
	CUdeviceptr p;
	keep(w, cuMemAllocAsync(&p, some_bytes(w), NULL), &p);
	for (int i = 0; i < w->sh->rounds; i++)
		step(w);
	while (w->count > 0)
		free_one(w);
	return NULL;
}

int main(int argc, char **argv)
{
	int threads = 8, rounds = 2000;
	if (!check_thread_options(argc, argv, 1, &threads, &rounds))
		return 2;
	CHECK(threads > 0 && threads <= 64 && rounds > 0);
	fresh_region();
	CU(cuInit(0));
	struct shared sh;
	memset(&sh, 0, sizeof(sh));
	sh.rounds = rounds;
	CU(cuDevicePrimaryCtxRetain(&sh.ctx, 0));
	CU(cuCtxSetCurrent(sh.ctx));
	CUmemPoolProps props;
	memset(&props, 0, sizeof(props));
	props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
	props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	props.location.id = 0;
	CU(cuMemPoolCreate(&sh.pool, &props));
	CHECK(pthread_barrier_init(&sh.start, NULL, (unsigned)threads) == 0);

	pthread_t th[64];
	struct worker *w = calloc((size_t)threads, sizeof(*w));
	CHECK(w != NULL);
	for (int t = 0; t < threads; t++) {
		w[t].sh = &sh;
		w[t].seed = UINT64_C(0x9e3779b97f4a7c15) * (uint64_t)(t + 1);
		CHECK(pthread_create(&th[t], NULL, work, &w[t]) == 0);
	}
	for (int t = 0; t < threads; t++)
		CHECK(pthread_join(th[t], NULL) == 0);

	CUmemoryPool device_pool;
	CU(cuDeviceGetMemPool(&device_pool, 0));
	CU(cuMemPoolTrimTo(device_pool, 0));
	CU(cuMemPoolDestroy(sh.pool));
	int64_t data = my_data();
	uint64_t used = fakecuda_device_used(0);
	printf("pooltest: %d threads, %d rounds: data %lld, driver %llu\n", threads, rounds, (long long)data,
	       (unsigned long long)used);
	CHECK(data == 0);
	CHECK(used == 0);
	check_peaks();
	pthread_barrier_destroy(&sh.start);
	free(w);
	return 0;
}
