/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The calls that take device memory behind the allocation APIs: limits,
 * module and library loads, graph memory, pool thresholds. Where the call
 * declares the amount it is charged (as GPUCAP_KIND_DRIVER) before the call;
 * where it does not, the driver's own figure is taken right after it
 * (reconcile.c). A call that leaves the container over its cap is undone
 * (the old limit restored, the module unloaded, the executable graph
 * destroyed) and answered with CUDA_ERROR_OUT_OF_MEMORY; the process keeps
 * working under the cap.
 *
 * Lazy module loading (globals placed at the first launch) and the stack
 * the driver grows at launch are caught by the reconciler thread: the
 * launch path is left as it is.
 */
#include "log.h"
#include "memory_internal.h"

/* ---- cuCtxSetLimit ------------------------------------------------------------ */

/* Bytes a limit's value reserves, as far as the driver declares it: the heap
 * and FIFO are their size, the stack is per resident thread. Others (the
 * device runtime's pending launches) are measured after the call. */
static uint64_t limit_bytes(const struct gpucap_device *dev, CUlimit limit, size_t value)
{
	switch (limit) {
	case CU_LIMIT_MALLOC_HEAP_SIZE:
	case CU_LIMIT_PRINTF_FIFO_SIZE:
		return value;
	case CU_LIMIT_STACK_SIZE: {
		gpucap_fn_cuDeviceGetAttribute attr = GPUCAP_REAL(cuDeviceGetAttribute);
		int sms = 0, threads = 0;
		if (!attr ||
		    attr(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev->ordinal) != CUDA_SUCCESS ||
		    attr(&threads, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR, dev->ordinal) !=
		        CUDA_SUCCESS ||
		    sms <= 0 || threads <= 0)
			return 0;
		return gpucap_mul_sat(value, (uint64_t)sms * (uint64_t)threads);
	}
	default:
		return 0;
	}
}

CUresult on_ctx_set_limit(CUresult (*real)(CUlimit, size_t), CUlimit limit, size_t value)
{
	struct gpucap_device *dev;
	gpucap_fn_cuCtxGetLimit get = GPUCAP_REAL(cuCtxGetLimit);
	size_t old;
	if (gpucap_device_current(&dev) != CUDA_SUCCESS || !get || get(&old, limit) != CUDA_SUCCESS)
		return real(limit, value); /* the driver reports the error */
	uint64_t before = limit_bytes(dev, limit, old), after = limit_bytes(dev, limit, value);
	if (after > before && gpucap_reconcile_declare(dev, after - before) != CUDA_SUCCESS) {
		gpucap_refusal_note(dev->region_index, dev, after - before, "cuCtxSetLimit");
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	CUresult r = real(limit, value);
	if (r != CUDA_SUCCESS) {
		if (after > before)
			gpucap_reconcile_undeclare(dev, after - before);
		return r;
	}
	if (after < before)
		gpucap_reconcile_undeclare(dev, before - after);
	if (!gpucap_reconcile(dev) && value > old) {
		/* Over the cap with what the driver really took: undo. */
		real(limit, old);
		if (after > before)
			gpucap_reconcile_undeclare(dev, after - before);
		gpucap_reconcile(dev);
		gpucap_refusal_note(dev->region_index, dev, after > before ? after - before : 0,
		                    "cuCtxSetLimit");
		return CUDA_ERROR_OUT_OF_MEMORY;
	}
	return r;
}

/* ---- Modules and libraries --------------------------------------------------- */

/* After a load answered r: take the truth; over the cap, unload it. */
static CUresult after_load(struct gpucap_device *dev, CUresult r, void (*unload)(void *), void *handle)
{
	if (r != CUDA_SUCCESS || !dev || gpucap_reconcile(dev))
		return r;
	unload(handle);
	gpucap_reconcile(dev);
	gpucap_refusal_note(dev->region_index, dev, 0, "module load (its globals)");
	return CUDA_ERROR_OUT_OF_MEMORY;
}

static struct gpucap_device *current_or_null(void)
{
	struct gpucap_device *dev;
	return gpucap_device_current(&dev) == CUDA_SUCCESS ? dev : NULL;
}

static void unload_module(void *m)
{
	gpucap_fn_cuModuleUnload unload = GPUCAP_REAL(cuModuleUnload);
	if (unload)
		unload((CUmodule)m);
}

static void unload_library(void *l)
{
	gpucap_fn_cuLibraryUnload unload = GPUCAP_REAL(cuLibraryUnload);
	if (unload)
		unload((CUlibrary)l);
}

CUresult on_module_load(CUresult (*real)(CUmodule *, const char *), CUmodule *module, const char *fname)
{
	CUresult r = real(module, fname);
	return after_load(current_or_null(), r, unload_module, r == CUDA_SUCCESS ? *module : NULL);
}

CUresult on_module_load_data(CUresult (*real)(CUmodule *, const void *), CUmodule *module, const void *image)
{
	CUresult r = real(module, image);
	return after_load(current_or_null(), r, unload_module, r == CUDA_SUCCESS ? *module : NULL);
}

CUresult on_module_load_data_ex(CUresult (*real)(CUmodule *, const void *, unsigned int, CUjit_option *,
                                                 void **),
                                CUmodule *module, const void *image, unsigned int numOptions,
                                CUjit_option *options, void **optionValues)
{
	CUresult r = real(module, image, numOptions, options, optionValues);
	return after_load(current_or_null(), r, unload_module, r == CUDA_SUCCESS ? *module : NULL);
}

CUresult on_module_load_fat_binary(CUresult (*real)(CUmodule *, const void *), CUmodule *module,
                                   const void *fatCubin)
{
	CUresult r = real(module, fatCubin);
	return after_load(current_or_null(), r, unload_module, r == CUDA_SUCCESS ? *module : NULL);
}

CUresult on_library_load_data(CUresult (*real)(CUlibrary *, const void *, CUjit_option *, void **,
                                               unsigned int, CUlibraryOption *, void **, unsigned int),
                              CUlibrary *library, const void *code, CUjit_option *jitOptions,
                              void **jitOptionsValues, unsigned int numJitOptions,
                              CUlibraryOption *libraryOptions, void **libraryOptionValues,
                              unsigned int numLibraryOptions)
{
	CUresult r = real(library, code, jitOptions, jitOptionsValues, numJitOptions, libraryOptions,
	                  libraryOptionValues, numLibraryOptions);
	return after_load(current_or_null(), r, unload_library, r == CUDA_SUCCESS ? *library : NULL);
}

CUresult on_library_load_from_file(CUresult (*real)(CUlibrary *, const char *, CUjit_option *, void **,
                                                    unsigned int, CUlibraryOption *, void **, unsigned int),
                                   CUlibrary *library, const char *fileName, CUjit_option *jitOptions,
                                   void **jitOptionsValues, unsigned int numJitOptions,
                                   CUlibraryOption *libraryOptions, void **libraryOptionValues,
                                   unsigned int numLibraryOptions)
{
	CUresult r = real(library, fileName, jitOptions, jitOptionsValues, numJitOptions, libraryOptions,
	                  libraryOptionValues, numLibraryOptions);
	return after_load(current_or_null(), r, unload_library, r == CUDA_SUCCESS ? *library : NULL);
}

/* ---- Graph memory ---------------------------------------------------------------- */

/* An allocation node declares its size: one that cannot fit the room left
 * is refused at once, whichever form adds it. The graph pool takes the
 * memory at upload or launch, where the truth is taken. */
static bool alloc_node_refused(const CUDA_MEM_ALLOC_NODE_PARAMS *params, const char *api)
{
	struct gpucap_device *dev;
	uint64_t limit, charged;
	if (!params || params->poolProps.location.type != CU_MEM_LOCATION_TYPE_DEVICE ||
	    gpucap_device_get(params->poolProps.location.id, &dev) != CUDA_SUCCESS || dev->fail_closed ||
	    !gpucap_device_usage(dev->region_index, &limit, &charged) ||
	    (charged < limit && params->bytesize <= limit - charged))
		return false;
	gpucap_refusal_note(dev->region_index, dev, params->bytesize, api);
	return true;
}

CUresult on_graph_add_mem_alloc_node(CUresult (*real)(CUgraphNode *, CUgraph, const CUgraphNode *, size_t,
                                                      CUDA_MEM_ALLOC_NODE_PARAMS *),
                                     CUgraphNode *phGraphNode, CUgraph hGraph,
                                     const CUgraphNode *dependencies, size_t numDependencies,
                                     CUDA_MEM_ALLOC_NODE_PARAMS *nodeParams)
{
	if (alloc_node_refused(nodeParams, "cuGraphAddMemAllocNode"))
		return CUDA_ERROR_OUT_OF_MEMORY;
	return real(phGraphNode, hGraph, dependencies, numDependencies, nodeParams);
}

static const CUDA_MEM_ALLOC_NODE_PARAMS *alloc_params(const CUgraphNodeParams *node)
{
	return node && node->type == CU_GRAPH_NODE_TYPE_MEM_ALLOC ? &node->alloc : NULL;
}

CUresult on_graph_add_node(CUresult (*real)(CUgraphNode *, CUgraph, const CUgraphNode *, size_t,
                                            CUgraphNodeParams *),
                           CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                           size_t numDependencies, CUgraphNodeParams *nodeParams)
{
	if (alloc_node_refused(alloc_params(nodeParams), "cuGraphAddNode (an allocation node)"))
		return CUDA_ERROR_OUT_OF_MEMORY;
	return real(phGraphNode, hGraph, dependencies, numDependencies, nodeParams);
}

CUresult on_graph_add_node_v2(CUresult (*real)(CUgraphNode *, CUgraph, const CUgraphNode *,
                                               const CUgraphEdgeData *, size_t, CUgraphNodeParams *),
                              CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                              const CUgraphEdgeData *dependencyData, size_t numDependencies,
                              CUgraphNodeParams *nodeParams)
{
	if (alloc_node_refused(alloc_params(nodeParams), "cuGraphAddNode (an allocation node)"))
		return CUDA_ERROR_OUT_OF_MEMORY;
	return real(phGraphNode, hGraph, dependencies, dependencyData, numDependencies, nodeParams);
}

static CUresult after_instantiate(CUresult r, CUgraphExec *exec, CUgraph graph)
{
	if (r != CUDA_SUCCESS)
		return r;
	gpucap_graph_instantiated(*exec, graph);
	struct gpucap_device *dev = current_or_null();
	if (!dev || gpucap_reconcile(dev))
		return r;
	gpucap_graph_forget(*exec);
	gpucap_fn_cuGraphExecDestroy destroy = GPUCAP_REAL(cuGraphExecDestroy);
	if (destroy)
		destroy(*exec);
	gpucap_reconcile(dev);
	gpucap_refusal_note(dev->region_index, dev, 0, "cuGraphInstantiate (its graph memory)");
	return CUDA_ERROR_OUT_OF_MEMORY;
}

CUresult on_graph_instantiate_with_flags(CUresult (*real)(CUgraphExec *, CUgraph, unsigned long long),
                                         CUgraphExec *phGraphExec, CUgraph hGraph, unsigned long long flags)
{
	return after_instantiate(real(phGraphExec, hGraph, flags), phGraphExec, hGraph);
}

CUresult on_graph_instantiate_with_params(CUresult (*real)(CUgraphExec *, CUgraph,
                                                           CUDA_GRAPH_INSTANTIATE_PARAMS *),
                                          CUgraphExec *phGraphExec, CUgraph hGraph,
                                          CUDA_GRAPH_INSTANTIATE_PARAMS *instantiateParams)
{
	return after_instantiate(real(phGraphExec, hGraph, instantiateParams), phGraphExec, hGraph);
}

/* The first upload of a graph that allocates is charged before it
 * (graph_runs.c). One that still leaves the container over its cap (a graph
 * not known to allocate): the graph pool gives back what no graph uses, and
 * the upload is answered out of memory (the launch would take the same
 * memory). */
CUresult on_graph_upload(CUresult (*real)(CUgraphExec, CUstream), CUgraphExec hGraphExec, CUstream hStream)
{
	struct gpucap_graph_run run;
	CUresult r = gpucap_graph_run_admit(hGraphExec, "cuGraphUpload (its allocation nodes)", &run);
	if (r != CUDA_SUCCESS)
		return r;
	r = real(hGraphExec, hStream);
	gpucap_graph_run_done(&run, r);
	struct gpucap_device *dev = current_or_null();
	if (r != CUDA_SUCCESS || !dev || gpucap_reconcile(dev))
		return r;
	gpucap_refusal_note(dev->region_index, dev, 0, "cuGraphUpload (its graph memory)");
	return CUDA_ERROR_OUT_OF_MEMORY;
}

CUresult on_graph_exec_destroy(CUresult (*real)(CUgraphExec), CUgraphExec hGraphExec)
{
	gpucap_graph_forget(hGraphExec);
	return real(hGraphExec);
}

CUresult on_device_graph_mem_trim(CUresult (*real)(CUdevice), CUdevice device)
{
	CUresult r = real(device);
	struct gpucap_device *dev;
	if (r == CUDA_SUCCESS && gpucap_device_get(device, &dev) == CUDA_SUCCESS)
		gpucap_reconcile(dev);
	return r;
}

/* ---- Pools ------------------------------------------------------------------------ */

/* A pool's retained memory is charged as the pool's own (pools.c); a new
 * release threshold changes what it keeps at the next synchronisation, so
 * the truth is taken again. */
CUresult on_mem_pool_set_attribute(CUresult (*real)(CUmemoryPool, CUmemPool_attribute, void *),
                                   CUmemoryPool pool, CUmemPool_attribute attr, void *value)
{
	CUresult r = real(pool, attr, value);
	struct gpucap_device *dev;
	if (r == CUDA_SUCCESS && attr == CU_MEMPOOL_ATTR_RELEASE_THRESHOLD &&
	    gpucap_device_current(&dev) == CUDA_SUCCESS)
		gpucap_reconcile(dev);
	return r;
}
