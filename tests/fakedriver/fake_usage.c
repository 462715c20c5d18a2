/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
/*
 * What a process really holds on a fake device beyond its allocations, as
 * the driver's own per-process figure (fakenvml's
 * nvmlDeviceGetComputeRunningProcesses_v3) reports it:
 *
 *   - each context (primary, cuCtxCreate, green) costs FAKECUDA_CONTEXT_BYTES
 *     (518 MiB was measured on an H100 with CUDA 13; default 0, so tests
 *     that do not ask for it see only their allocations);
 *   - cuCtxSetLimit reserves the malloc heap, the printf FIFO, the stack of
 *     every resident thread (FAKECUDA_RESIDENT_THREADS, default 132 x 2048)
 *     and the device runtime's pending launches (2 KiB each) above their
 *     defaults; a launch whose kernels need more stack
 *     (FAKECUDA_LAUNCH_STACK_BYTES) grows the stack by itself, for good;
 *   - a loaded module or library places FAKECUDA_MODULE_GLOBAL_BYTES of
 *     __device__ globals, at its first launch unless FAKECUDA_MODULE_LAZY=0;
 *   - graph allocation nodes reserve from the device's graph pool at upload
 *     and launch; the pool keeps it until cuDeviceGraphMemTrim;
 *   - fakecuda_hidden_take: memory taken through no API gpucap names;
 *   - FAKECUDA_ALLOC_GROWTH_BYTES: what the driver takes by itself once the
 *     process holds any allocation on the device (page tables, the unfilled
 *     part of a page of small allocations), beyond what it asked for;
 *   - FAKECUDA_UNLISTED_QUERIES=N: the first N per-process queries of the
 *     process (fakenvml) do not list it yet, as a driver that has not caught
 *     up with a context just created;
 *   - FAKECUDA_ALLOC_TAKES_NS (fakecuda.c): how long cuMemAlloc takes before
 *     the memory is held, on the fake clock; default 0;
 *   - FAKECUDA_CONTEXT_CREATE_NS: how long the creation of a context takes
 *     on the fake clock (32 processes starting together on an H100 took
 *     5.2 to 5.5 s each); default 0.
 *
 * Also the simulated clock of gpucap's reconciler: gpucap sleeps through
 * gpucap_test_reconcile_sleep when GPUCAP_TEST_CLOCK=simulated, and the test
 * moves time on with fakecuda_clock_advance.
 */
#include "fake_usage.h"
#include "fake_clock.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FAKE_EXPORT __attribute__((visibility("default")))
#define MAX_DEV     16
#define MAX_MODULES 256
#define MAX_GRAPHS  256
#define MIB         (UINT64_C(1) << 20)
/* Functions of fake modules: handles in a range no plain fake kernel (its
 * duration in microseconds) reaches. */
#define FUNC_BASE UINT64_C(0x7ead00000000)

/* The driver's defaults; what a context costs already covers them. */
static const uint64_t limit_default[5] = {1024, MIB, 8 * MIB, 2, 2048};

struct usage_dev {
	int contexts;
	bool limits_set;
	uint64_t limit[5];
	uint64_t modules;
	uint64_t graph_reserved;
	uint64_t graph_high;
	uint64_t hidden;
};

struct fake_module {
	bool live;
	bool placed;
	int ordinal;
	uint64_t globals;
};

#define GRAPH_NODES 8
struct graph_allocs {
	const void *key;
	uint64_t bytes;
	int nodes; /* allocation nodes (the first GRAPH_NODES can be listed) */
	uint64_t node_bytes[GRAPH_NODES];
	int node_ordinal[GRAPH_NODES];
};

static pthread_mutex_t usage_lock = PTHREAD_MUTEX_INITIALIZER;
static struct usage_dev udev[MAX_DEV];
static struct fake_module modules[MAX_MODULES];
static struct graph_allocs graphs[MAX_GRAPHS];
static uint64_t next_node = 1;

static uint64_t env_u64(const char *name, uint64_t fallback)
{
	const char *v = getenv(name);
	return v && *v ? strtoull(v, NULL, 0) : fallback;
}

static uint64_t context_bytes(void)
{
	return env_u64("FAKECUDA_CONTEXT_BYTES", 0);
}

static uint64_t limit_value(struct usage_dev *d, int limit)
{
	return d->limits_set ? d->limit[limit] : limit_default[limit];
}

/* Bytes a limit reserves above its default. */
static uint64_t limit_reserve(int limit, uint64_t value)
{
	if (limit < 0 || limit > 4 || value <= limit_default[limit])
		return 0;
	uint64_t above = value - limit_default[limit];
	switch (limit) {
	case CU_LIMIT_STACK_SIZE:
		return above * env_u64("FAKECUDA_RESIDENT_THREADS", 132 * 2048);
	case CU_LIMIT_DEV_RUNTIME_PENDING_LAUNCH_COUNT:
		return above * 2048;
	case CU_LIMIT_DEV_RUNTIME_SYNC_DEPTH:
		return 0;
	default:
		return above;
	}
}

static uint64_t extras_locked(int ordinal)
{
	struct usage_dev *d = &udev[ordinal];
	uint64_t total = (uint64_t)d->contexts * context_bytes() + d->modules + d->graph_reserved + d->hidden;
	for (int l = 0; l < 5; l++)
		total += limit_reserve(l, limit_value(d, l));
	return total;
}

static uint64_t device_total(void)
{
	return env_u64("FAKECUDA_TOTAL_BYTES", UINT64_C(16) << 30);
}

static bool valid_ordinal(int ordinal)
{
	return ordinal >= 0 && ordinal < MAX_DEV && ordinal < fake_visible_count();
}

void fake_usage_context(int ordinal, int delta)
{
	if (!valid_ordinal(ordinal))
		return;
	uint64_t creation_ns = env_u64("FAKECUDA_CONTEXT_CREATE_NS", 0);
	if (delta > 0 && creation_ns)
		fakeclock_sleep(creation_ns);
	pthread_mutex_lock(&usage_lock);
	udev[ordinal].contexts += delta;
	pthread_mutex_unlock(&usage_lock);
}

/* What this process holds on a CUDA ordinal, all told. */
FAKE_EXPORT uint64_t fakecuda_process_used(int ordinal)
{
	if (!valid_ordinal(ordinal))
		return 0;
	uint64_t used = fakecuda_device_used(ordinal);
	if (used > 0)
		used += env_u64("FAKECUDA_ALLOC_GROWTH_BYTES", 0);
	pthread_mutex_lock(&usage_lock);
	used += extras_locked(ordinal);
	pthread_mutex_unlock(&usage_lock);
	return used;
}

/* The same for a physical device (fakenvml's view): whether this process
 * has anything there, and how much. */
FAKE_EXPORT int fakecuda_process_used_physical(int physical, uint64_t *bytes)
{
	static _Atomic uint64_t queries;
	int present = 0;
	*bytes = 0;
	if (queries++ < env_u64("FAKECUDA_UNLISTED_QUERIES", 0))
		return 0;
	for (int i = 0; i < fake_visible_count() && i < MAX_DEV; i++) {
		if (fake_physical_of(i) != physical)
			continue;
		uint64_t used = fakecuda_process_used(i);
		pthread_mutex_lock(&usage_lock);
		if (udev[i].contexts > 0 || used > 0)
			present = 1;
		pthread_mutex_unlock(&usage_lock);
		*bytes += used;
	}
	return present;
}

FAKE_EXPORT uint64_t fakecuda_graph_pool_reserved(int ordinal)
{
	if (!valid_ordinal(ordinal))
		return 0;
	pthread_mutex_lock(&usage_lock);
	uint64_t reserved = udev[ordinal].graph_reserved;
	pthread_mutex_unlock(&usage_lock);
	return reserved;
}

FAKE_EXPORT void fakecuda_hidden_take(int ordinal, uint64_t bytes)
{
	if (!valid_ordinal(ordinal))
		return;
	pthread_mutex_lock(&usage_lock);
	udev[ordinal].hidden += bytes;
	pthread_mutex_unlock(&usage_lock);
}

/* ---- Limits ---------------------------------------------------------------- */

FAKE_EXPORT CUresult cuCtxSetLimit(CUlimit limit, size_t value)
{
	int ordinal = fake_current_ordinal();
	if (ordinal < 0)
		return CUDA_ERROR_INVALID_CONTEXT;
	if ((int)limit < 0 || (int)limit > 4)
		return CUDA_ERROR_NOT_SUPPORTED;
	uint64_t used = fakecuda_device_used(ordinal);
	pthread_mutex_lock(&usage_lock);
	struct usage_dev *d = &udev[ordinal];
	if (!d->limits_set) {
		memcpy(d->limit, limit_default, sizeof(d->limit));
		d->limits_set = true;
	}
	uint64_t old = d->limit[limit];
	d->limit[limit] = value;
	CUresult r = CUDA_SUCCESS;
	if (used + extras_locked(ordinal) > device_total()) {
		d->limit[limit] = old; /* the driver could not reserve it */
		r = CUDA_ERROR_OUT_OF_MEMORY;
	}
	pthread_mutex_unlock(&usage_lock);
	return r;
}

FAKE_EXPORT CUresult cuCtxGetLimit(size_t *pvalue, CUlimit limit)
{
	int ordinal = fake_current_ordinal();
	if (!pvalue)
		return CUDA_ERROR_INVALID_VALUE;
	if (ordinal < 0)
		return CUDA_ERROR_INVALID_CONTEXT;
	if ((int)limit < 0 || (int)limit > 4)
		return CUDA_ERROR_NOT_SUPPORTED;
	pthread_mutex_lock(&usage_lock);
	*pvalue = limit_value(&udev[ordinal], (int)limit);
	pthread_mutex_unlock(&usage_lock);
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev)
{
	if (!pi)
		return CUDA_ERROR_INVALID_VALUE;
	if (!valid_ordinal(dev))
		return CUDA_ERROR_INVALID_DEVICE;
	switch (attrib) {
	case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT:
		*pi = 132;
		return CUDA_SUCCESS;
	case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR:
		*pi = (int)(env_u64("FAKECUDA_RESIDENT_THREADS", 132 * 2048) / 132);
		return CUDA_SUCCESS;
	default:
		return CUDA_ERROR_INVALID_VALUE;
	}
}

/* ---- Modules and libraries ---------------------------------------------------- */

static CUresult module_load(void **out, const void *image)
{
	if (!out || !image)
		return CUDA_ERROR_INVALID_VALUE;
	int ordinal = fake_current_ordinal();
	if (ordinal < 0)
		return CUDA_ERROR_INVALID_CONTEXT;
	uint64_t globals = env_u64("FAKECUDA_MODULE_GLOBAL_BYTES", 0);
	bool lazy = env_u64("FAKECUDA_MODULE_LAZY", 1) != 0;
	uint64_t used = fakecuda_device_used(ordinal);
	pthread_mutex_lock(&usage_lock);
	CUresult r = CUDA_ERROR_OUT_OF_MEMORY;
	for (int i = 0; i < MAX_MODULES; i++) {
		if (modules[i].live)
			continue;
		if (!lazy && used + extras_locked(ordinal) + globals > device_total())
			break;
		modules[i] = (struct fake_module){true, !lazy, ordinal, globals};
		if (!lazy)
			udev[ordinal].modules += globals;
		*out = (void *)(uintptr_t)(i + 1);
		r = CUDA_SUCCESS;
		break;
	}
	pthread_mutex_unlock(&usage_lock);
	return r;
}

static CUresult module_unload(const void *handle)
{
	uintptr_t i = (uintptr_t)handle;
	if (i == 0 || i > MAX_MODULES)
		return CUDA_ERROR_INVALID_HANDLE;
	pthread_mutex_lock(&usage_lock);
	struct fake_module *m = &modules[i - 1];
	CUresult r = m->live ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
	if (m->live && m->placed)
		udev[m->ordinal].modules -= m->globals;
	m->live = false;
	pthread_mutex_unlock(&usage_lock);
	return r;
}

FAKE_EXPORT CUresult cuModuleLoad(CUmodule *module, const char *fname)
{
	return module_load((void **)module, fname);
}

FAKE_EXPORT CUresult cuModuleLoadData(CUmodule *module, const void *image)
{
	return module_load((void **)module, image);
}

FAKE_EXPORT CUresult cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned int numOptions,
                                        CUjit_option *options, void **optionValues)
{
	(void)numOptions, (void)options, (void)optionValues;
	return module_load((void **)module, image);
}

FAKE_EXPORT CUresult cuModuleLoadFatBinary(CUmodule *module, const void *fatCubin)
{
	return module_load((void **)module, fatCubin);
}

FAKE_EXPORT CUresult cuModuleUnload(CUmodule hmod)
{
	return module_unload(hmod);
}

FAKE_EXPORT CUresult cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name)
{
	uintptr_t i = (uintptr_t)hmod;
	if (!hfunc || !name || i == 0 || i > MAX_MODULES)
		return CUDA_ERROR_INVALID_VALUE;
	*hfunc = (CUfunction)(uintptr_t)(FUNC_BASE + i - 1);
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuLibraryLoadData(CUlibrary *library, const void *code, CUjit_option *jitOptions,
                                       void **jitOptionsValues, unsigned int numJitOptions,
                                       CUlibraryOption *libraryOptions, void **libraryOptionValues,
                                       unsigned int numLibraryOptions)
{
	(void)jitOptions, (void)jitOptionsValues, (void)numJitOptions;
	(void)libraryOptions, (void)libraryOptionValues, (void)numLibraryOptions;
	return module_load((void **)library, code);
}

FAKE_EXPORT CUresult cuLibraryLoadFromFile(CUlibrary *library, const char *fileName, CUjit_option *jitOptions,
                                           void **jitOptionsValues, unsigned int numJitOptions,
                                           CUlibraryOption *libraryOptions, void **libraryOptionValues,
                                           unsigned int numLibraryOptions)
{
	(void)jitOptions, (void)jitOptionsValues, (void)numJitOptions;
	(void)libraryOptions, (void)libraryOptionValues, (void)numLibraryOptions;
	return module_load((void **)library, fileName);
}

FAKE_EXPORT CUresult cuLibraryUnload(CUlibrary library)
{
	return module_unload(library);
}

uint64_t fake_usage_launch(CUfunction f)
{
	uint64_t value = (uint64_t)(uintptr_t)f;
	int ordinal = fake_current_ordinal();
	uint64_t stack = env_u64("FAKECUDA_LAUNCH_STACK_BYTES", 0);
	bool module_fn = value >= FUNC_BASE && value < FUNC_BASE + MAX_MODULES;
	if (ordinal < 0 || (!module_fn && stack == 0))
		return module_fn ? 1000 : value * 1000u;
	pthread_mutex_lock(&usage_lock);
	struct usage_dev *d = &udev[ordinal];
	if (stack > limit_value(d, CU_LIMIT_STACK_SIZE)) {
		/* The driver grows the stack for a kernel that needs more and
		 * never shrinks it. */
		if (!d->limits_set) {
			memcpy(d->limit, limit_default, sizeof(d->limit));
			d->limits_set = true;
		}
		d->limit[CU_LIMIT_STACK_SIZE] = stack;
	}
	if (module_fn) {
		struct fake_module *m = &modules[value - FUNC_BASE];
		if (m->live && !m->placed) {
			m->placed = true;
			udev[m->ordinal].modules += m->globals;
		}
	}
	pthread_mutex_unlock(&usage_lock);
	return module_fn ? 1000 : value * 1000u;
}

/* ---- Graph memory ---------------------------------------------------------------- */

static struct graph_allocs *graph_slot_locked(const void *key, bool create)
{
	struct graph_allocs *free_slot = NULL;
	for (int i = 0; i < MAX_GRAPHS; i++) {
		if (graphs[i].key == key)
			return &graphs[i];
		if (!graphs[i].key && !free_slot)
			free_slot = &graphs[i];
	}
	if (create && free_slot)
		free_slot->key = key;
	return create ? free_slot : NULL;
}

static CUgraphNode node_handle(const struct graph_allocs *g, int index);

/* Add an allocation node of bytes on device ordinal to graph (caller holds
 * usage_lock); NULL when the fake's tables are full. */
static CUgraphNode graph_add_alloc_locked(const void *graph, uint64_t bytes, int ordinal)
{
	struct graph_allocs *g = graph_slot_locked(graph, true);
	if (!g)
		return NULL;
	int i = g->nodes < GRAPH_NODES ? g->nodes : GRAPH_NODES - 1;
	g->bytes += bytes;
	if (g->nodes < GRAPH_NODES) {
		g->node_bytes[i] = bytes;
		g->node_ordinal[i] = ordinal;
		g->nodes++;
	} else {
		g->node_bytes[i] += bytes; /* folded into the last listed node */
	}
	return node_handle(g, i);
}

/* Static, so that the generic form does not call back through the
 * preloaded cuGraphAddMemAllocNode: each entry point is tested on its own. */
static CUresult add_alloc_node(CUgraphNode *phGraphNode, CUgraph hGraph,
                               CUDA_MEM_ALLOC_NODE_PARAMS *nodeParams)
{
	if (!phGraphNode || !hGraph || !nodeParams || nodeParams->bytesize == 0)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&usage_lock);
	CUgraphNode node =
	    graph_add_alloc_locked(hGraph, nodeParams->bytesize, nodeParams->poolProps.location.id);
	CUresult r = node ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
	if (node) {
		nodeParams->dptr = UINT64_C(0x7e0000000000) + (next_node++ << 32);
		*phGraphNode = node;
	}
	pthread_mutex_unlock(&usage_lock);
	return r;
}

FAKE_EXPORT CUresult cuGraphAddMemAllocNode(CUgraphNode *phGraphNode, CUgraph hGraph,
                                            const CUgraphNode *dependencies, size_t numDependencies,
                                            CUDA_MEM_ALLOC_NODE_PARAMS *nodeParams)
{
	(void)dependencies, (void)numDependencies;
	return add_alloc_node(phGraphNode, hGraph, nodeParams);
}

/* The generic forms: only allocation nodes are modelled. */
static CUresult add_generic_node(CUgraphNode *phGraphNode, CUgraph hGraph, CUgraphNodeParams *nodeParams)
{
	if (!nodeParams || nodeParams->type != CU_GRAPH_NODE_TYPE_MEM_ALLOC)
		return CUDA_ERROR_NOT_SUPPORTED;
	return add_alloc_node(phGraphNode, hGraph, &nodeParams->alloc);
}

FAKE_EXPORT CUresult cuGraphAddNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                    size_t numDependencies, CUgraphNodeParams *nodeParams)
{
	(void)dependencies, (void)numDependencies;
	return add_generic_node(phGraphNode, hGraph, nodeParams);
}

FAKE_EXPORT CUresult cuGraphAddNode_v2(CUgraphNode *phGraphNode, CUgraph hGraph,
                                       const CUgraphNode *dependencies, const CUgraphEdgeData *dependencyData,
                                       size_t numDependencies, CUgraphNodeParams *nodeParams)
{
	(void)dependencies, (void)dependencyData, (void)numDependencies;
	return add_generic_node(phGraphNode, hGraph, nodeParams);
}

void fake_usage_graph_captured_alloc(CUgraph graph, uint64_t bytes, int ordinal)
{
	pthread_mutex_lock(&usage_lock);
	graph_add_alloc_locked(graph, bytes, ordinal);
	pthread_mutex_unlock(&usage_lock);
}

/* A node handle names its graph's slot and its index there. */
static CUgraphNode node_handle(const struct graph_allocs *g, int index)
{
	return (CUgraphNode)(uintptr_t)((uintptr_t)(g - graphs + 1) << 8 | (uintptr_t)(index + 1));
}

static struct graph_allocs *node_graph(CUgraphNode node, int *index)
{
	uintptr_t v = (uintptr_t)node;
	uintptr_t slot = v >> 8, i = v & 0xff;
	if (slot == 0 || slot > MAX_GRAPHS || i == 0 || i > GRAPH_NODES || !graphs[slot - 1].key ||
	    (int)i > graphs[slot - 1].nodes)
		return NULL;
	*index = (int)i - 1;
	return &graphs[slot - 1];
}

FAKE_EXPORT CUresult cuGraphGetNodes(CUgraph hGraph, CUgraphNode *nodes, size_t *numNodes)
{
	if (!hGraph || !numNodes)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&usage_lock);
	struct graph_allocs *g = graph_slot_locked(hGraph, false);
	size_t n = g ? (size_t)(g->nodes < GRAPH_NODES ? g->nodes : GRAPH_NODES) : 0;
	if (nodes) {
		for (size_t i = 0; i < n && i < *numNodes; i++)
			nodes[i] = node_handle(g, (int)i);
		if (*numNodes > n)
			*numNodes = n;
	} else {
		*numNodes = n;
	}
	pthread_mutex_unlock(&usage_lock);
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuGraphNodeGetType(CUgraphNode hNode, CUgraphNodeType *type)
{
	/* The only nodes the fake lists are allocation nodes. */
	CUDA_MEM_ALLOC_NODE_PARAMS params;
	if (!type || cuGraphMemAllocNodeGetParams(hNode, &params) != CUDA_SUCCESS)
		return CUDA_ERROR_INVALID_VALUE;
	*type = CU_GRAPH_NODE_TYPE_MEM_ALLOC;
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuGraphMemAllocNodeGetParams(CUgraphNode hNode, CUDA_MEM_ALLOC_NODE_PARAMS *params_out)
{
	if (!params_out)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&usage_lock);
	int index;
	struct graph_allocs *g = node_graph(hNode, &index);
	if (g) {
		memset(params_out, 0, sizeof(*params_out));
		params_out->poolProps.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
		params_out->poolProps.location.id = g->node_ordinal[index];
		params_out->bytesize = g->node_bytes[index];
	}
	pthread_mutex_unlock(&usage_lock);
	return g ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

FAKE_EXPORT CUresult cuGraphChildGraphNodeGetGraph(CUgraphNode hNode, CUgraph *phGraph)
{
	(void)hNode, (void)phGraph;
	return CUDA_ERROR_INVALID_VALUE; /* the fake makes no child graph nodes */
}

void fake_usage_graph_instantiated(CUgraph graph, CUgraphExec exec)
{
	pthread_mutex_lock(&usage_lock);
	struct graph_allocs *g = graph_slot_locked(graph, false);
	if (g && g->bytes) {
		struct graph_allocs *e = graph_slot_locked(exec, true);
		if (e) {
			const void *key = e->key;
			*e = *g;
			e->key = key;
		}
	}
	pthread_mutex_unlock(&usage_lock);
}

void fake_usage_graph_forget(const void *graph_or_exec)
{
	pthread_mutex_lock(&usage_lock);
	struct graph_allocs *g = graph_slot_locked(graph_or_exec, false);
	if (g)
		memset(g, 0, sizeof(*g));
	pthread_mutex_unlock(&usage_lock);
}

/* Upload and launch reserve the graph's allocations in the device's graph
 * pool, which keeps them until trimmed. */
static void graph_reserve(CUgraphExec exec)
{
	int ordinal = fake_current_ordinal();
	if (ordinal < 0)
		return;
	pthread_mutex_lock(&usage_lock);
	struct graph_allocs *e = graph_slot_locked(exec, false);
	struct usage_dev *d = &udev[ordinal];
	if (e && e->bytes > d->graph_reserved)
		d->graph_reserved = e->bytes;
	if (d->graph_reserved > d->graph_high)
		d->graph_high = d->graph_reserved;
	pthread_mutex_unlock(&usage_lock);
}

void fake_usage_graph_launched(CUgraphExec exec)
{
	graph_reserve(exec);
}

FAKE_EXPORT CUresult cuGraphUpload(CUgraphExec hGraphExec, CUstream hStream)
{
	(void)hStream;
	if (!hGraphExec)
		return CUDA_ERROR_INVALID_VALUE;
	graph_reserve(hGraphExec);
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuGraphInstantiateWithParams(CUgraphExec *phGraphExec, CUgraph hGraph,
                                                  CUDA_GRAPH_INSTANTIATE_PARAMS *instantiateParams)
{
	if (!instantiateParams)
		return CUDA_ERROR_INVALID_VALUE;
	CUresult r = cuGraphInstantiateWithFlags(phGraphExec, hGraph, instantiateParams->flags);
	instantiateParams->result_out = CUDA_GRAPH_INSTANTIATE_SUCCESS;
	return r;
}

FAKE_EXPORT CUresult cuGraphUpload_ptsz(CUgraphExec hGraphExec, CUstream hStream)
{
	return cuGraphUpload(hGraphExec, hStream);
}

FAKE_EXPORT CUresult cuGraphInstantiateWithParams_ptsz(CUgraphExec *phGraphExec, CUgraph hGraph,
                                                       CUDA_GRAPH_INSTANTIATE_PARAMS *instantiateParams)
{
	return cuGraphInstantiateWithParams(phGraphExec, hGraph, instantiateParams);
}

FAKE_EXPORT CUresult cuDeviceGraphMemTrim(CUdevice device)
{
	if (!valid_ordinal(device))
		return CUDA_ERROR_INVALID_DEVICE;
	pthread_mutex_lock(&usage_lock);
	udev[device].graph_reserved = 0; /* nothing stays in use after a fake launch */
	pthread_mutex_unlock(&usage_lock);
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuDeviceGetGraphMemAttribute(CUdevice device, CUgraphMem_attribute attr, void *value)
{
	if (!value)
		return CUDA_ERROR_INVALID_VALUE;
	if (!valid_ordinal(device))
		return CUDA_ERROR_INVALID_DEVICE;
	pthread_mutex_lock(&usage_lock);
	CUresult r = CUDA_SUCCESS;
	switch (attr) {
	case CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT:
		*(cuuint64_t *)value = 0;
		break;
	case CU_GRAPH_MEM_ATTR_USED_MEM_HIGH:
	case CU_GRAPH_MEM_ATTR_RESERVED_MEM_HIGH:
		*(cuuint64_t *)value = udev[device].graph_high;
		break;
	case CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT:
		*(cuuint64_t *)value = udev[device].graph_reserved;
		break;
	default:
		r = CUDA_ERROR_INVALID_VALUE;
	}
	pthread_mutex_unlock(&usage_lock);
	return r;
}

/* ---- Green contexts -------------------------------------------------------------- */

struct fake_green {
	unsigned magic;
	int ordinal;
};
#define GREEN_MAGIC 0x9ee0c7a1u

FAKE_EXPORT CUresult cuGreenCtxCreate(CUgreenCtx *phCtx, CUdevResourceDesc desc, CUdevice dev,
                                      unsigned int flags)
{
	(void)desc, (void)flags;
	if (!phCtx)
		return CUDA_ERROR_INVALID_VALUE;
	if (!valid_ordinal(dev))
		return CUDA_ERROR_INVALID_DEVICE;
	struct fake_green *g = calloc(1, sizeof(*g));
	if (!g)
		return CUDA_ERROR_OUT_OF_MEMORY;
	*g = (struct fake_green){GREEN_MAGIC, dev};
	fake_usage_context(dev, +1);
	*phCtx = (CUgreenCtx)g;
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuGreenCtxDestroy(CUgreenCtx hCtx)
{
	struct fake_green *g = (struct fake_green *)hCtx;
	if (!g || g->magic != GREEN_MAGIC)
		return CUDA_ERROR_INVALID_CONTEXT;
	g->magic = 0;
	fake_usage_context(g->ordinal, -1);
	free(g);
	return CUDA_SUCCESS;
}
