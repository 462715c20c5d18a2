/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fake driver's model of what a process really holds on each device
 * beyond its allocations (fake_usage.c), and the few points where
 * fakecuda.c tells it what happened.
 */
#ifndef FAKE_USAGE_H
#define FAKE_USAGE_H

#include "cuda_abi.h"

#include <stdbool.h>
#include <stdint.h>

/* From fakecuda.c: the calling thread's current device (-1: no context),
 * the number of CUDA-visible devices and the bytes a device's allocations
 * and pools hold. */
int fake_current_ordinal(void);
int fake_visible_count(void);
int fake_physical_of(int ordinal);
uint64_t fakecuda_device_used(int ordinal);

/* A context on ordinal came (+1) or went (-1). */
void fake_usage_context(int ordinal, int delta);
/* A launch of f on the current device: places a lazily loaded module's
 * globals, grows the stack if kernels need more. Returns the kernel's
 * simulated duration in ns (f's own for a plain fake kernel). */
uint64_t fake_usage_launch(CUfunction f);
/* A graph with allocation nodes was instantiated, launched or destroyed. */
void fake_usage_graph_instantiated(CUgraph graph, CUgraphExec exec);
void fake_usage_graph_launched(CUgraphExec exec);
/* An allocation node of bytes on device ordinal, captured into graph. */
void fake_usage_graph_captured_alloc(CUgraph graph, uint64_t bytes, int ordinal);
void fake_usage_graph_forget(const void *graph_or_exec);
/* From fakecuda.c, for cuGraphInstantiateWithParams. */
CUresult cuGraphInstantiateWithFlags(CUgraphExec *exec, CUgraph graph, unsigned long long flags);

/* The driver entry points fake_usage.c defines (fakecuda.c checks them
 * against gpucap's tables). */
CUresult cuCtxSetLimit(CUlimit limit, size_t value);
CUresult cuCtxGetLimit(size_t *pvalue, CUlimit limit);
CUresult cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev);
CUresult cuModuleLoad(CUmodule *module, const char *fname);
CUresult cuModuleLoadData(CUmodule *module, const void *image);
CUresult cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned int numOptions,
                            CUjit_option *options, void **optionValues);
CUresult cuModuleLoadFatBinary(CUmodule *module, const void *fatCubin);
CUresult cuModuleUnload(CUmodule hmod);
CUresult cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name);
CUresult cuLibraryLoadData(CUlibrary *library, const void *code, CUjit_option *jitOptions,
                           void **jitOptionsValues, unsigned int numJitOptions,
                           CUlibraryOption *libraryOptions, void **libraryOptionValues,
                           unsigned int numLibraryOptions);
CUresult cuLibraryLoadFromFile(CUlibrary *library, const char *fileName, CUjit_option *jitOptions,
                               void **jitOptionsValues, unsigned int numJitOptions,
                               CUlibraryOption *libraryOptions, void **libraryOptionValues,
                               unsigned int numLibraryOptions);
CUresult cuLibraryUnload(CUlibrary library);
CUresult cuGraphAddMemAllocNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                size_t numDependencies, CUDA_MEM_ALLOC_NODE_PARAMS *nodeParams);
CUresult cuGraphAddNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                        size_t numDependencies, CUgraphNodeParams *nodeParams);
CUresult cuGraphAddNode_v2(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                           const CUgraphEdgeData *dependencyData, size_t numDependencies,
                           CUgraphNodeParams *nodeParams);
CUresult cuGraphInstantiateWithParams(CUgraphExec *phGraphExec, CUgraph hGraph,
                                      CUDA_GRAPH_INSTANTIATE_PARAMS *instantiateParams);
CUresult cuGraphUpload(CUgraphExec hGraphExec, CUstream hStream);
CUresult cuGraphInstantiateWithParams_ptsz(CUgraphExec *phGraphExec, CUgraph hGraph,
                                           CUDA_GRAPH_INSTANTIATE_PARAMS *instantiateParams);
CUresult cuGraphUpload_ptsz(CUgraphExec hGraphExec, CUstream hStream);
CUresult cuDeviceGraphMemTrim(CUdevice device);
CUresult cuDeviceGetGraphMemAttribute(CUdevice device, CUgraphMem_attribute attr, void *value);
CUresult cuGraphGetNodes(CUgraph hGraph, CUgraphNode *nodes, size_t *numNodes);
CUresult cuGraphNodeGetType(CUgraphNode hNode, CUgraphNodeType *type);
CUresult cuGraphMemAllocNodeGetParams(CUgraphNode hNode, CUDA_MEM_ALLOC_NODE_PARAMS *params_out);
CUresult cuGraphChildGraphNodeGetGraph(CUgraphNode hNode, CUgraph *phGraph);
CUresult cuGreenCtxCreate(CUgreenCtx *phCtx, CUdevResourceDesc desc, CUdevice dev, unsigned int flags);
CUresult cuGreenCtxDestroy(CUgreenCtx hCtx);
uint64_t fakecuda_process_used(int ordinal);
void fakecuda_hidden_take(int ordinal, uint64_t bytes);
/* What the device's graph pool holds (for tests). */
uint64_t fakecuda_graph_pool_reserved(int ordinal);

#endif
