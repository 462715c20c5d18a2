/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The public interface of src/memory: admission on every allocation path,
 * the CUDA ordinal -> region device mapping, the tracking of live
 * allocations and pools, and the virtualised memory views.
 *
 * The interception layer (src/hook) calls in here and nowhere deeper. The
 * handlers below are the ones hooks.def names; each gets the real function
 * of its row (never NULL) and runs only once the library is ready.
 */
#ifndef GPUCAP_MEMORY_H
#define GPUCAP_MEMORY_H

#include "config.h"
#include "cuda_abi.h"
#include "gpucap/region.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* ---- Life cycle -------------------------------------------------------------- */

/* What the memory layer needs to know about the process, given at every
 * initialisation (a forked child initialises again). config stays valid for
 * the life of the process; region is NULL when every device fails closed. */
void gpucap_memory_start(const struct gpucap_config *config, gpucap_region *region);

/* How to try the region's attach again, when the one at start-up timed out
 * on another process initialising the file: called on refusal paths only,
 * true when it attached (and published the region through
 * gpucap_memory_region_arrived). Set before the library is ready. */
void gpucap_memory_retry_with(bool (*attach_again)(void));
/* The region, attached after start-up, bound and holding its slot: from now
 * on devices are charged, those resolved without it included (each is
 * registered at its next use). Once per process. */
void gpucap_memory_region_arrived(gpucap_region *region);

/* Told before a context is destroyed and before a device's primary context
 * is released for the last time (the SM gate forgets their streams). Set by
 * the layer above; NULL: nobody to tell. */
struct gpucap_memory_observer {
	void (*context_gone)(CUcontext ctx);
	void (*device_gone)(int ordinal);
};
void gpucap_memory_observe(const struct gpucap_memory_observer *observer);

/* Forked child: forget the parent's allocations, pools, devices and region
 * (another thread may have held them at the instant of fork). */
void gpucap_memory_after_fork(void);

/* ---- Devices ----------------------------------------------------------------- */

/* The region device of a CUDA ordinal (resolved on first use) and its UUID;
 * false when the ordinal cannot be queried or the device is not charged
 * (*region_index is then -1). uuid may be NULL. */
bool gpucap_memory_device(int ordinal, int *region_index, char uuid[GPUCAP_UUID_MAX]);

/* ---- Launches ----------------------------------------------------------------- */

/* Raised after every launch: the driver may have grown this process's
 * memory behind the ledger (lazy module loading, the stack it grows at
 * launch). The reconciler asks NVML each period while launches come, and
 * once a second otherwise: each query takes the driver's locks that every
 * allocation of every process on the node also takes (8 processes querying
 * every 100 ms put 1 MiB allocations' p99 12% over native on an H100).
 * Relaxed: the flag carries no data; the reconciler reads the driver's own
 * state, and a raise it sees a tick late is still within that tick. */
extern atomic_bool gpucap_launched_lately;
static inline void gpucap_memory_note_launch(void)
{
	/* Load first: the line stays shared while the flag is already up. */
	if (!atomic_load_explicit(&gpucap_launched_lately, memory_order_relaxed))
		atomic_store_explicit(&gpucap_launched_lately, true, memory_order_relaxed);
}

/* ---- Handlers (hooks.def) ---------------------------------------------------- */

CUresult on_mem_alloc(CUresult (*real)(CUdeviceptr *, size_t), CUdeviceptr *dptr, size_t bytesize);
CUresult on_mem_alloc_v1(CUresult (*real)(CUdeviceptr_v1 *, unsigned int), CUdeviceptr_v1 *dptr,
                         unsigned int bytesize);
CUresult on_mem_alloc_pitch(CUresult (*real)(CUdeviceptr *, size_t *, size_t, size_t, unsigned int),
                            CUdeviceptr *dptr, size_t *pPitch, size_t WidthInBytes, size_t Height,
                            unsigned int ElementSizeBytes);
CUresult on_mem_alloc_pitch_v1(CUresult (*real)(CUdeviceptr_v1 *, unsigned int *, unsigned int, unsigned int,
                                                unsigned int),
                               CUdeviceptr_v1 *dptr, unsigned int *pPitch, unsigned int WidthInBytes,
                               unsigned int Height, unsigned int ElementSizeBytes);
CUresult on_mem_alloc_managed(CUresult (*real)(CUdeviceptr *, size_t, unsigned int), CUdeviceptr *dptr,
                              size_t bytesize, unsigned int flags);
CUresult on_mem_free(CUresult (*real)(CUdeviceptr), CUdeviceptr dptr);
CUresult on_mem_free_v1(CUresult (*real)(CUdeviceptr_v1), CUdeviceptr_v1 dptr);
CUresult on_mem_create(CUresult (*real)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *,
                                        unsigned long long),
                       CUmemGenericAllocationHandle *handle, size_t size, const CUmemAllocationProp *prop,
                       unsigned long long flags);
CUresult on_mem_release(CUresult (*real)(CUmemGenericAllocationHandle), CUmemGenericAllocationHandle handle);
CUresult on_mem_alloc_async(CUresult (*real)(CUdeviceptr *, size_t, CUstream), CUdeviceptr *dptr,
                            size_t bytesize, CUstream hStream);
CUresult on_mem_alloc_async_ptsz(CUresult (*real)(CUdeviceptr *, size_t, CUstream), CUdeviceptr *dptr,
                                 size_t bytesize, CUstream hStream);
CUresult on_mem_alloc_from_pool_async(CUresult (*real)(CUdeviceptr *, size_t, CUmemoryPool, CUstream),
                                      CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool,
                                      CUstream hStream);
CUresult on_mem_alloc_from_pool_async_ptsz(CUresult (*real)(CUdeviceptr *, size_t, CUmemoryPool, CUstream),
                                           CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool,
                                           CUstream hStream);
CUresult on_mem_free_async(CUresult (*real)(CUdeviceptr, CUstream), CUdeviceptr dptr, CUstream hStream);
CUresult on_mem_pool_create(CUresult (*real)(CUmemoryPool *, const CUmemPoolProps *), CUmemoryPool *pool,
                            const CUmemPoolProps *poolProps);
CUresult on_mem_pool_trim_to(CUresult (*real)(CUmemoryPool, size_t), CUmemoryPool pool,
                             size_t minBytesToKeep);
CUresult on_mem_pool_destroy(CUresult (*real)(CUmemoryPool), CUmemoryPool pool);
CUresult on_array_create(CUresult (*real)(CUarray *, const CUDA_ARRAY_DESCRIPTOR *), CUarray *pHandle,
                         const CUDA_ARRAY_DESCRIPTOR *pAllocateArray);
CUresult on_array_create_v1(CUresult (*real)(CUarray *, const CUDA_ARRAY_DESCRIPTOR_v1 *), CUarray *pHandle,
                            const CUDA_ARRAY_DESCRIPTOR_v1 *pAllocateArray);
CUresult on_array3d_create(CUresult (*real)(CUarray *, const CUDA_ARRAY3D_DESCRIPTOR *), CUarray *pHandle,
                           const CUDA_ARRAY3D_DESCRIPTOR *pAllocateArray);
CUresult on_array3d_create_v1(CUresult (*real)(CUarray *, const CUDA_ARRAY3D_DESCRIPTOR_v1 *),
                              CUarray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR_v1 *pAllocateArray);
CUresult
on_mipmapped_array_create(CUresult (*real)(CUmipmappedArray *, const CUDA_ARRAY3D_DESCRIPTOR *, unsigned int),
                          CUmipmappedArray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR *pMipmappedArrayDesc,
                          unsigned int numMipmapLevels);
CUresult on_array_destroy(CUresult (*real)(CUarray), CUarray hArray);
CUresult on_mipmapped_array_destroy(CUresult (*real)(CUmipmappedArray), CUmipmappedArray hMipmappedArray);
CUresult on_ctx_create_v2(CUresult (*real)(CUcontext *, unsigned int, CUdevice), CUcontext *pctx,
                          unsigned int flags, CUdevice dev);
CUresult on_ctx_create_v3(CUresult (*real)(CUcontext *, CUexecAffinityParam *, int, unsigned int, CUdevice),
                          CUcontext *pctx, CUexecAffinityParam *paramsArray, int numParams,
                          unsigned int flags, CUdevice dev);
CUresult on_ctx_create_v4(CUresult (*real)(CUcontext *, CUctxCreateParams *, unsigned int, CUdevice),
                          CUcontext *pctx, CUctxCreateParams *ctxCreateParams, unsigned int flags,
                          CUdevice dev);
CUresult on_ctx_destroy(CUresult (*real)(CUcontext), CUcontext ctx);
CUresult on_primary_ctx_retain(CUresult (*real)(CUcontext *, CUdevice), CUcontext *pctx, CUdevice dev);
CUresult on_primary_ctx_release(CUresult (*real)(CUdevice), CUdevice dev);
CUresult on_green_ctx_create(CUresult (*real)(CUgreenCtx *, CUdevResourceDesc, CUdevice, unsigned int),
                             CUgreenCtx *phCtx, CUdevResourceDesc desc, CUdevice dev, unsigned int flags);
CUresult on_green_ctx_destroy(CUresult (*real)(CUgreenCtx), CUgreenCtx hCtx);
CUresult on_ctx_set_limit(CUresult (*real)(CUlimit, size_t), CUlimit limit, size_t value);
CUresult on_module_load(CUresult (*real)(CUmodule *, const char *), CUmodule *module, const char *fname);
CUresult on_module_load_data(CUresult (*real)(CUmodule *, const void *), CUmodule *module, const void *image);
CUresult on_module_load_data_ex(CUresult (*real)(CUmodule *, const void *, unsigned int, CUjit_option *,
                                                 void **),
                                CUmodule *module, const void *image, unsigned int numOptions,
                                CUjit_option *options, void **optionValues);
CUresult on_module_load_fat_binary(CUresult (*real)(CUmodule *, const void *), CUmodule *module,
                                   const void *fatCubin);
CUresult on_library_load_data(CUresult (*real)(CUlibrary *, const void *, CUjit_option *, void **,
                                               unsigned int, CUlibraryOption *, void **, unsigned int),
                              CUlibrary *library, const void *code, CUjit_option *jitOptions,
                              void **jitOptionsValues, unsigned int numJitOptions,
                              CUlibraryOption *libraryOptions, void **libraryOptionValues,
                              unsigned int numLibraryOptions);
CUresult on_library_load_from_file(CUresult (*real)(CUlibrary *, const char *, CUjit_option *, void **,
                                                    unsigned int, CUlibraryOption *, void **, unsigned int),
                                   CUlibrary *library, const char *fileName, CUjit_option *jitOptions,
                                   void **jitOptionsValues, unsigned int numJitOptions,
                                   CUlibraryOption *libraryOptions, void **libraryOptionValues,
                                   unsigned int numLibraryOptions);
CUresult on_graph_add_mem_alloc_node(CUresult (*real)(CUgraphNode *, CUgraph, const CUgraphNode *, size_t,
                                                      CUDA_MEM_ALLOC_NODE_PARAMS *),
                                     CUgraphNode *phGraphNode, CUgraph hGraph,
                                     const CUgraphNode *dependencies, size_t numDependencies,
                                     CUDA_MEM_ALLOC_NODE_PARAMS *nodeParams);
CUresult on_graph_add_node(CUresult (*real)(CUgraphNode *, CUgraph, const CUgraphNode *, size_t,
                                            CUgraphNodeParams *),
                           CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                           size_t numDependencies, CUgraphNodeParams *nodeParams);
CUresult on_graph_add_node_v2(CUresult (*real)(CUgraphNode *, CUgraph, const CUgraphNode *,
                                               const CUgraphEdgeData *, size_t, CUgraphNodeParams *),
                              CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                              const CUgraphEdgeData *dependencyData, size_t numDependencies,
                              CUgraphNodeParams *nodeParams);
CUresult on_graph_instantiate_with_flags(CUresult (*real)(CUgraphExec *, CUgraph, unsigned long long),
                                         CUgraphExec *phGraphExec, CUgraph hGraph, unsigned long long flags);
CUresult on_graph_instantiate_with_params(CUresult (*real)(CUgraphExec *, CUgraph,
                                                           CUDA_GRAPH_INSTANTIATE_PARAMS *),
                                          CUgraphExec *phGraphExec, CUgraph hGraph,
                                          CUDA_GRAPH_INSTANTIATE_PARAMS *instantiateParams);
CUresult on_graph_upload(CUresult (*real)(CUgraphExec, CUstream), CUgraphExec hGraphExec, CUstream hStream);
CUresult on_graph_exec_destroy(CUresult (*real)(CUgraphExec), CUgraphExec hGraphExec);

/* The first upload or launch of an executable graph that allocates
 * (graph_runs.c): gpucap_graph_run_admit charges what its allocation nodes
 * will add to the graph pool, or answers CUDA_ERROR_OUT_OF_MEMORY (api names
 * the call in the warning); the caller then runs it and hands the driver's
 * answer to gpucap_graph_run_done. Nothing to do for any other graph. */
struct gpucap_track_entry;
struct gpucap_graph_run {
	struct gpucap_track_entry *entry;
	uint64_t held;
};
CUresult gpucap_graph_run_admit(CUgraphExec exec, const char *api, struct gpucap_graph_run *run);
void gpucap_graph_run_done(struct gpucap_graph_run *run, CUresult r);
CUresult on_device_graph_mem_trim(CUresult (*real)(CUdevice), CUdevice device);
CUresult on_mem_pool_set_attribute(CUresult (*real)(CUmemoryPool, CUmemPool_attribute, void *),
                                   CUmemoryPool pool, CUmemPool_attribute attr, void *value);
CUresult on_mem_get_info(CUresult (*real)(size_t *, size_t *), size_t *freeBytes, size_t *totalBytes);
CUresult on_mem_get_info_v1(CUresult (*real)(unsigned int *, unsigned int *), unsigned int *freeBytes,
                            unsigned int *totalBytes);
CUresult on_device_total_mem(CUresult (*real)(size_t *, CUdevice), size_t *bytes, CUdevice dev);
CUresult on_device_total_mem_v1(CUresult (*real)(unsigned int *, CUdevice), unsigned int *bytes,
                                CUdevice dev);
nvmlReturn_t on_nvml_memory_info(nvmlReturn_t (*real)(nvmlDevice_t, nvmlMemory_t *), nvmlDevice_t device,
                                 nvmlMemory_t *memory);
nvmlReturn_t on_nvml_memory_info_v2(nvmlReturn_t (*real)(nvmlDevice_t, nvmlMemory_v2_t *),
                                    nvmlDevice_t device, nvmlMemory_v2_t *memory);

#endif
