/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The first run of an executable graph that allocates: its allocation
 * nodes declare their sizes, so the memory the graph pool must add for them
 * is charged before the upload or launch that takes it, and a run that
 * would pass the cap is refused with CUDA_ERROR_OUT_OF_MEMORY before the
 * driver sees it. A captured cudaMallocAsync (PyTorch's cudaMallocAsync
 * backend) makes such a node too.
 *
 * The graph's allocation bytes are summed at instantiation (child graphs
 * included) and kept in the allocation map under the executable graph until
 * its first successful run. Later runs find the pool holding the memory
 * (the pool keeps it until trimmed, and the reconciler charges what it
 * holds), so a replay costs one map lookup while some graph that allocates
 * has not run yet, and nothing otherwise. CUDA graph objects are not
 * thread-safe, so no two threads run the same executable graph at once.
 */
#include "memory_internal.h"

#include <stdlib.h>

#define CHILD_DEPTH_MAX 8

/* Executable graphs in the map, not yet run: launches skip the lookup at 0. */
static atomic_uint pending_runs;

/* Device allocation bytes of graph's nodes, child graphs included; the
 * device of the first one in *ordinal. */
static uint64_t alloc_bytes(CUgraph graph, int depth, int *ordinal)
{
	gpucap_fn_cuGraphGetNodes get_nodes = GPUCAP_REAL(cuGraphGetNodes);
	gpucap_fn_cuGraphNodeGetType get_type = GPUCAP_REAL(cuGraphNodeGetType);
	gpucap_fn_cuGraphMemAllocNodeGetParams get_params = GPUCAP_REAL(cuGraphMemAllocNodeGetParams);
	gpucap_fn_cuGraphChildGraphNodeGetGraph get_child = GPUCAP_REAL(cuGraphChildGraphNodeGetGraph);
	size_t n = 0;
	if (depth > CHILD_DEPTH_MAX || !get_nodes || !get_type || !get_params ||
	    get_nodes(graph, NULL, &n) != CUDA_SUCCESS || n == 0)
		return 0;
	CUgraphNode *nodes = calloc(n, sizeof(*nodes));
	if (!nodes || get_nodes(graph, nodes, &n) != CUDA_SUCCESS) {
		free(nodes);
		return 0;
	}
	uint64_t sum = 0;
	for (size_t i = 0; i < n; i++) {
		CUgraphNodeType type;
		if (get_type(nodes[i], &type) != CUDA_SUCCESS)
			continue;
		if (type == CU_GRAPH_NODE_TYPE_MEM_ALLOC) {
			CUDA_MEM_ALLOC_NODE_PARAMS p = {0};
			if (get_params(nodes[i], &p) != CUDA_SUCCESS ||
			    p.poolProps.location.type != CU_MEM_LOCATION_TYPE_DEVICE)
				continue;
			if (*ordinal < 0)
				*ordinal = p.poolProps.location.id;
			if (p.poolProps.location.id == *ordinal)
				sum = gpucap_add_sat(sum, p.bytesize);
		} else if (type == CU_GRAPH_NODE_TYPE_GRAPH && get_child) {
			CUgraph child;
			if (get_child(nodes[i], &child) == CUDA_SUCCESS)
				sum = gpucap_add_sat(sum, alloc_bytes(child, depth + 1, ordinal));
		}
	}
	free(nodes);
	return sum;
}

void gpucap_graph_instantiated(CUgraphExec exec, CUgraph graph)
{
	if (!memory_region())
		return; /* no memory cap: nothing to charge, no walk */
	int ordinal = -1;
	uint64_t bytes = alloc_bytes(graph, 0, &ordinal);
	struct gpucap_device *dev;
	if (bytes == 0 || gpucap_device_get(ordinal, &dev) != CUDA_SUCCESS || dev->region_index < 0)
		return;
	struct gpucap_track_entry *entry = gpucap_track_new();
	if (!entry)
		return; /* unknown: its run is caught by the truth taken after it */
	entry->tag = GPUCAP_TRACK_GRAPH_EXEC;
	entry->key = (uint64_t)(uintptr_t)exec;
	entry->region_index = (int16_t)dev->region_index;
	entry->ordinal = (int16_t)ordinal;
	entry->bytes = bytes;
	atomic_fetch_add_explicit(&pending_runs, 1, memory_order_relaxed);
	if (!gpucap_track_insert(entry)) {
		atomic_fetch_sub_explicit(&pending_runs, 1, memory_order_relaxed);
		free(entry);
	}
}

void gpucap_graph_forget(CUgraphExec exec)
{
	if (!atomic_load_explicit(&pending_runs, memory_order_relaxed))
		return;
	struct gpucap_track_entry *entry =
	    gpucap_track_remove(GPUCAP_TRACK_GRAPH_EXEC, (uint64_t)(uintptr_t)exec);
	if (entry) {
		atomic_fetch_sub_explicit(&pending_runs, 1, memory_order_relaxed);
		free(entry);
	}
}

CUresult gpucap_graph_run_admit(CUgraphExec exec, const char *api, struct gpucap_graph_run *run)
{
	*run = (struct gpucap_graph_run){0};
	if (!atomic_load_explicit(&pending_runs, memory_order_relaxed))
		return CUDA_SUCCESS;
	struct gpucap_track_entry *entry =
	    gpucap_track_remove(GPUCAP_TRACK_GRAPH_EXEC, (uint64_t)(uintptr_t)exec);
	if (!entry)
		return CUDA_SUCCESS;
	run->entry = entry;
	/* What the pool holds and no live graph allocation uses serves first. */
	gpucap_fn_cuDeviceGetGraphMemAttribute attr = GPUCAP_REAL(cuDeviceGetGraphMemAttribute);
	cuuint64_t reserved = 0, used = 0;
	if (!attr ||
	    attr(entry->ordinal, CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT, &reserved) != CUDA_SUCCESS ||
	    attr(entry->ordinal, CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT, &used) != CUDA_SUCCESS)
		reserved = used = 0;
	uint64_t spare = reserved > used ? reserved - used : 0;
	uint64_t need = entry->bytes > spare ? entry->bytes - spare : 0;
	if (need == 0)
		return CUDA_SUCCESS;
	if (gpucap_admit_index(entry->region_index, GPUCAP_KIND_DATA, need) != CUDA_SUCCESS) {
		struct gpucap_device *dev = NULL;
		gpucap_device_get(entry->ordinal, &dev);
		gpucap_refusal_note(entry->region_index, dev, need, api);
		gpucap_track_put(entry);
		run->entry = NULL;
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	run->held = need;
	return CUDA_SUCCESS;
}

void gpucap_graph_run_done(struct gpucap_graph_run *run, CUresult r)
{
	struct gpucap_track_entry *entry = run->entry;
	if (!entry)
		return;
	if (run->held)
		gpucap_unadmit_correction(entry->region_index, GPUCAP_KIND_DATA, run->held);
	if (r != CUDA_SUCCESS) {
		gpucap_track_put(entry); /* not run: its first run is still to come */
		return;
	}
	atomic_fetch_sub_explicit(&pending_runs, 1, memory_order_relaxed);
	/* The hold becomes the pool's memory as the driver reports it. */
	struct gpucap_device *dev;
	if (run->held && gpucap_device_get(entry->ordinal, &dev) == CUDA_SUCCESS)
		gpucap_reconcile(dev);
	free(entry);
}

void gpucap_graph_runs_after_fork(void)
{
	atomic_store_explicit(&pending_runs, 0, memory_order_relaxed);
}
