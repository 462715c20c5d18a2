/* SPDX-License-Identifier: Apache-2.0 */
#define _POSIX_C_SOURCE 200809L
/*
 * Takes device memory through one surface the allocation calls do not name,
 * then fills what is left of the cap with cuMemAlloc until refused, and holds
 * it all while tests/gpu/run.sh reads the process's real usage from outside
 * (nvidia-smi, without the preload). Prints "holding" and waits for its
 * standard input to close ("holding PID").
 *
 *   hidden_memory MODE [FATBIN]
 *   module FATBIN  load a module with a 1.5 GiB __device__ array and launch
 *                  from it (CUDA_MODULE_LOADING decides when it is placed)
 *   library FATBIN the same array through cuLibraryLoadFromFile and a kernel
 *                  handle of the library
 *   heap FATBIN    malloc heap 3 GiB (must be refused), then 512 MiB and a
 *                  kernel that calls malloc
 *   stack FATBIN   stack 32 KiB per thread (must be refused), then a kernel
 *   printf FATBIN  printf FIFO 3 GiB (must be refused), then 256 MiB and a
 *                  kernel that prints
 *   pending FATBIN 1M pending device-runtime launches (the call declares no
 *                  size: out of memory or success, whichever the device
 *                  allows under the cap), then a kernel
 *   stack-grow FATBIN  a kernel that needs 4 KiB of stack a thread: the driver
 *                  grows the stack at the launch, caught by reconciliation
 *   pool FATBIN    the default pool keeps everything (release threshold
 *                  UINT64_MAX), 64 rounds of 256 MiB async alloc, kernel, free
 *   ctx8           8 contexts by cuCtxCreate (CUDA 13: v4, NULL params)
 *   ctx8-v2        8 contexts by cuCtxCreate_v2, the form of CUDA 11 and 12
 *   green          4 green contexts of 16 SMs each (as many as the device has
 *                  room for, at least one)
 *   graph          graph memory nodes: a 3 GiB node (must be refused), a graph
 *                  of two live 1 GiB nodes whose upload must be refused
 *                  (each fits the room, together they do not), then a graph
 *                  that allocates and frees 512 MiB, uploaded and launched
 *                  twice (the graph pool keeps the 512 MiB)
 *   graph-generic  the same through cuGraphAddNode (CUgraphNodeParams): a
 *                  3 GiB node (must be refused), then a graph that allocates
 *                  and frees 512 MiB, uploaded and launched twice
 *   host-pool      a pool on the host: 3 GiB from it must succeed under the
 *                  2 GiB cap (host memory is not charged)
 *   graph-capture  the same 512 MiB graph made by capturing cuMemAllocAsync,
 *                  cuMemsetD8Async and cuMemFreeAsync, launched twice
 *   graph-launch   a graph captured the same way with 1 GiB, instantiated
 *                  while it fits; then 768 MiB of cuMemAlloc (with the
 *                  context, under 1 GiB of the 2 GiB cap is left), so its first
 *                  launch (no upload) must be refused; freed, it must run
 *
 * Exit 0 when the fill ended with CUDA_ERROR_OUT_OF_MEMORY and the process
 * could still allocate under the cap afterwards, and each refusal asked of
 * the mode came (out of memory, not another error).
 */
#include <cuda.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MiB (UINT64_C(1) << 20)

/* The CUDA 11 and 12 form of cuCtxCreate, still exported by the driver; CUDA
 * 13's cuda.h declares it only for its own build. */
CUresult CUDAAPI cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev);

static int failures;

static void expect(const char *what, CUresult got, CUresult want)
{
	printf("%s: %d%s\n", what, (int)got, got == want ? "" : " (unexpected)");
	failures += got != want;
}

static void pause_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static CUfunction function(CUmodule *module, const char *fatbin, const char *name)
{
	CUfunction f = NULL;
	CUresult r = cuModuleLoad(module, fatbin);
	printf("load %s: %d\n", fatbin, (int)r);
	if (r == CUDA_SUCCESS && cuModuleGetFunction(&f, *module, name) != CUDA_SUCCESS)
		f = NULL;
	return f;
}

/* Fill the cap: 64 MiB chunks, then 1 MiB ones. */
static void fill(void)
{
	static CUdeviceptr held[1 << 16];
	size_t n = 0;
	uint64_t bytes = 0;
	CUresult r = CUDA_SUCCESS;
	for (uint64_t chunk = 64 * MiB; chunk >= MiB; chunk /= 64) {
		while (n < sizeof(held) / sizeof(held[0]) &&
		       (r = cuMemAlloc(&held[n], chunk)) == CUDA_SUCCESS) {
			n++;
			bytes += chunk;
		}
	}
	printf("filled %llu MiB\n", (unsigned long long)(bytes >> 20));
	expect("the fill ends", r, CUDA_ERROR_OUT_OF_MEMORY);
	if (n > 0) {
		cuMemFree(held[--n]);
		CUresult again = cuMemAlloc(&held[n], MiB);
		expect("still allocates under the cap", again, CUDA_SUCCESS);
		if (again == CUDA_SUCCESS)
			n++;
	}
	printf("holding %d\n", (int)getpid());
	fflush(stdout);
	char c;
	while (read(0, &c, 1) > 0) {
	}
}

/* A graph of n allocation nodes of bytes each, one after the other, and,
 * if freed, a free node for each at the end. */
static CUgraph graph_of_allocs(CUdevice dev, int n, uint64_t bytes, int freed)
{
	CUgraph graph;
	if (cuGraphCreate(&graph, 0) != CUDA_SUCCESS)
		return NULL;
	CUgraphNode last = NULL, nodes[8];
	CUdeviceptr at[8];
	for (int i = 0; i < n && i < 8; i++) {
		CUDA_MEM_ALLOC_NODE_PARAMS p;
		memset(&p, 0, sizeof(p));
		p.poolProps.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
		p.poolProps.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
		p.poolProps.location.id = dev;
		p.bytesize = bytes;
		CUresult r = cuGraphAddMemAllocNode(&nodes[i], graph, last ? &last : NULL, last ? 1 : 0, &p);
		expect("alloc node", r, CUDA_SUCCESS);
		if (r != CUDA_SUCCESS)
			return graph;
		at[i] = p.dptr;
		last = nodes[i];
	}
	for (int i = 0; freed && i < n && i < 8; i++) {
		CUgraphNode node;
		if (cuGraphAddMemFreeNode(&node, graph, &last, 1, at[i]) == CUDA_SUCCESS)
			last = node;
	}
	return graph;
}

/* Instantiate graph, upload it and launch it twice on stream: every step
 * must succeed. */
static void run_graph(CUgraph graph, CUstream stream)
{
	CUgraphExec exec;
	CUresult r = cuGraphInstantiateWithFlags(&exec, graph, 0);
	expect("instantiate", r, CUDA_SUCCESS);
	if (r != CUDA_SUCCESS)
		return;
	expect("upload", cuGraphUpload(exec, stream), CUDA_SUCCESS);
	for (int i = 0; i < 2; i++)
		expect("launch", cuGraphLaunch(exec, stream), CUDA_SUCCESS);
	expect("synchronise", cuStreamSynchronize(stream), CUDA_SUCCESS);
	cuGraphExecDestroy(exec);
}

/* A graph captured on a new stream (*stream): cuMemAllocAsync of bytes,
 * cuMemsetD8Async over it, cuMemFreeAsync. NULL when it cannot be made. */
static CUgraph captured_graph(uint64_t bytes, CUstream *stream)
{
	CUgraph graph = NULL;
	CUdeviceptr d = 0;
	if (cuStreamCreate(stream, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS ||
	    cuStreamBeginCapture(*stream, CU_STREAM_CAPTURE_MODE_GLOBAL) != CUDA_SUCCESS)
		return NULL;
	expect("captured cuMemAllocAsync", cuMemAllocAsync(&d, bytes, *stream), CUDA_SUCCESS);
	expect("captured cuMemsetD8Async", cuMemsetD8Async(d, 1, bytes, *stream), CUDA_SUCCESS);
	expect("captured cuMemFreeAsync", cuMemFreeAsync(d, *stream), CUDA_SUCCESS);
	expect("end capture", cuStreamEndCapture(*stream, &graph), CUDA_SUCCESS);
	return graph;
}

/* The 1.5 GiB array's kernel through a library, launched once. */
static void library_launch(const char *fatbin)
{
	CUlibrary library;
	CUkernel kernel;
	CUresult r = cuLibraryLoadFromFile(&library, fatbin, NULL, NULL, 0, NULL, NULL, 0);
	printf("load library %s: %d\n", fatbin, (int)r);
	if (r != CUDA_SUCCESS || cuLibraryGetKernel(&kernel, library, "touch_big") != CUDA_SUCCESS)
		return;
	expect("launch touch_big from the library",
	       cuLaunchKernel((CUfunction)kernel, 1536, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL), CUDA_SUCCESS);
	cuCtxSynchronize();
	pause_ms(300); /* the reconciler's period is 100 ms */
}

/* A limit of 3 GiB, which the 2 GiB cap must refuse, then one of granted
 * bytes, then a warp of the kernel that uses what the limit sized. */
static void limit_then_kernel(const char *fatbin, CUlimit limit, const char *what, uint64_t granted,
                              const char *kernel)
{
	printf("%s:\n", what);
	expect("  3 GiB", cuCtxSetLimit(limit, 3072 * MiB), CUDA_ERROR_OUT_OF_MEMORY);
	expect("  granted", cuCtxSetLimit(limit, granted), CUDA_SUCCESS);
	CUmodule module;
	CUfunction f = function(&module, fatbin, kernel);
	if (f)
		expect("  launch", cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL), CUDA_SUCCESS);
	cuCtxSynchronize();
	pause_ms(300);
}

/* 8 contexts, each created and then all destroyed: by CUDA 13's cuCtxCreate
 * (v4, NULL params) or by the v2 form of CUDA 11 and 12. */
static void eight_contexts(CUdevice dev, bool v2)
{
	CUcontext c[8];
	int made = 0;
	for (int i = 0; i < 8; i++) {
		CUresult r = v2 ? cuCtxCreate_v2(&c[i], 0, dev) : cuCtxCreate(&c[i], NULL, 0, dev);
		expect(v2 ? "cuCtxCreate_v2" : "cuCtxCreate", r, CUDA_SUCCESS);
		if (r != CUDA_SUCCESS)
			break;
		made++;
	}
	printf("contexts created: %d\n", made);
	for (int i = 0; i < made; i++)
		cuCtxDestroy(c[i]);
}

/* Up to 4 green contexts of 16 SMs each; at least one must be made. */
static void green_contexts(CUdevice dev)
{
	CUdevResource all, groups[4], rest;
	unsigned int n = 4;
	if (cuDeviceGetDevResource(dev, &all, CU_DEV_RESOURCE_TYPE_SM) != CUDA_SUCCESS ||
	    cuDevSmResourceSplitByCount(groups, &n, &all, &rest, 0, 16) != CUDA_SUCCESS || n == 0) {
		expect("split the SMs into groups of 16", CUDA_ERROR_NOT_SUPPORTED, CUDA_SUCCESS);
		return;
	}
	int made = 0;
	for (unsigned int i = 0; i < n; i++) {
		CUdevResourceDesc desc;
		CUgreenCtx green;
		if (cuDevResourceGenerateDesc(&desc, &groups[i], 1) != CUDA_SUCCESS)
			break;
		CUresult r = cuGreenCtxCreate(&green, desc, dev, CU_GREEN_CTX_DEFAULT_STREAM);
		expect("cuGreenCtxCreate", r, CUDA_SUCCESS);
		made += r == CUDA_SUCCESS;
	}
	printf("green contexts created: %d of %u\n", made, n);
}

/* Graph memory through the generic cuGraphAddNode. */
static CUresult add_alloc_node(CUgraphNode *node, CUgraph graph, CUdevice dev, uint64_t bytes,
                               CUdeviceptr *at)
{
	CUgraphNodeParams p;
	memset(&p, 0, sizeof(p));
	p.type = CU_GRAPH_NODE_TYPE_MEM_ALLOC;
	p.alloc.poolProps.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
	p.alloc.poolProps.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	p.alloc.poolProps.location.id = dev;
	p.alloc.bytesize = bytes;
	CUresult r = cuGraphAddNode(node, graph, NULL, NULL, 0, &p);
	*at = p.alloc.dptr;
	return r;
}

static void generic_graph(CUdevice dev)
{
	CUstream stream;
	CUgraph big, one;
	CUgraphNode node, freed;
	CUdeviceptr at;
	if (cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS ||
	    cuGraphCreate(&big, 0) != CUDA_SUCCESS || cuGraphCreate(&one, 0) != CUDA_SUCCESS)
		return;
	expect("generic alloc node of 3 GiB", add_alloc_node(&node, big, dev, 3072 * MiB, &at),
	       CUDA_ERROR_OUT_OF_MEMORY);
	CUresult r = add_alloc_node(&node, one, dev, 512 * MiB, &at);
	expect("generic alloc node of 512 MiB", r, CUDA_SUCCESS);
	if (r != CUDA_SUCCESS)
		return;
	CUgraphNodeParams f;
	memset(&f, 0, sizeof(f));
	f.type = CU_GRAPH_NODE_TYPE_MEM_FREE;
	f.free.dptr = at;
	expect("generic free node", cuGraphAddNode(&freed, one, &node, NULL, 1, &f), CUDA_SUCCESS);
	run_graph(one, stream);
	pause_ms(300);
}

/* 3 GiB from a pool on the host, which is not device memory. */
static void host_pool(void)
{
	CUmemPoolProps props;
	memset(&props, 0, sizeof(props));
	props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
	props.location.type = CU_MEM_LOCATION_TYPE_HOST;
	CUmemoryPool pool;
	CUresult r = cuMemPoolCreate(&pool, &props);
	expect("host pool", r, CUDA_SUCCESS);
	if (r != CUDA_SUCCESS)
		return;
	CUdeviceptr p;
	expect("3 GiB from the host pool", cuMemAllocFromPoolAsync(&p, 3072 * MiB, pool, NULL), CUDA_SUCCESS);
	expect("synchronise", cuCtxSynchronize(), CUDA_SUCCESS);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: hidden_memory MODE [FATBIN]\n");
		return 2;
	}
	const char *mode = argv[1], *fatbin = argc > 2 ? argv[2] : "";
	CUdevice dev;
	CUcontext primary;
	if (cuInit(0) || cuDeviceGet(&dev, 0) || cuDevicePrimaryCtxRetain(&primary, dev) ||
	    cuCtxSetCurrent(primary))
		return 3;
	CUmodule module;
	if (strcmp(mode, "module") == 0) {
		CUfunction f = function(&module, fatbin, "touch_big");
		if (f) {
			expect("launch touch_big",
			       cuLaunchKernel(f, 1536, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL), CUDA_SUCCESS);
			cuCtxSynchronize();
			pause_ms(300); /* the reconciler's period is 100 ms */
		}
	} else if (strcmp(mode, "library") == 0) {
		library_launch(fatbin);
	} else if (strcmp(mode, "heap") == 0) {
		limit_then_kernel(fatbin, CU_LIMIT_MALLOC_HEAP_SIZE, "malloc heap", 512 * MiB, "heap_user");
	} else if (strcmp(mode, "stack") == 0) {
		expect("stack 32 KiB", cuCtxSetLimit(CU_LIMIT_STACK_SIZE, 32 * 1024),
		       CUDA_ERROR_OUT_OF_MEMORY);
		CUfunction f = function(&module, fatbin, "nothing");
		if (f)
			expect("launch nothing", cuLaunchKernel(f, 132, 1, 1, 256, 1, 1, 0, NULL, NULL, NULL),
			       CUDA_SUCCESS);
		cuCtxSynchronize();
	} else if (strcmp(mode, "printf") == 0) {
		limit_then_kernel(fatbin, CU_LIMIT_PRINTF_FIFO_SIZE, "printf FIFO", 256 * MiB, "printf_user");
	} else if (strcmp(mode, "pending") == 0) {
		CUresult r = cuCtxSetLimit(CU_LIMIT_DEV_RUNTIME_PENDING_LAUNCH_COUNT, 1u << 20);
		printf("1M pending launches: %d\n", (int)r);
		if (r != CUDA_SUCCESS && r != CUDA_ERROR_OUT_OF_MEMORY)
			expect("1M pending launches", r, CUDA_SUCCESS);
		CUfunction f = function(&module, fatbin, "nothing");
		if (f)
			expect("launch nothing", cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL),
			       CUDA_SUCCESS);
		cuCtxSynchronize();
		pause_ms(300);
	} else if (strcmp(mode, "stack-grow") == 0) {
		CUfunction f = function(&module, fatbin, "stack_user");
		CUdeviceptr out;
		if (f && cuMemAlloc(&out, 4096) == CUDA_SUCCESS) {
			int n = 3;
			void *params[] = {&n, &out};
			expect("launch stack_user",
			       cuLaunchKernel(f, 132, 1, 1, 256, 1, 1, 0, NULL, params, NULL), CUDA_SUCCESS);
		}
		cuCtxSynchronize();
		pause_ms(300); /* the stack the launch grew is reconciled */
	} else if (strcmp(mode, "pool") == 0) {
		CUmemoryPool pool;
		cuuint64_t keep_all = UINT64_MAX;
		expect("default pool", cuDeviceGetDefaultMemPool(&pool, dev), CUDA_SUCCESS);
		expect("release threshold",
		       cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &keep_all),
		       CUDA_SUCCESS);
		CUfunction f = function(&module, fatbin, "nothing");
		for (int round = 0; round < 64; round++) {
			CUdeviceptr p;
			CUresult r = cuMemAllocAsync(&p, 256 * MiB, NULL);
			if (r != CUDA_SUCCESS) {
				expect("async alloc", r, CUDA_SUCCESS);
				break;
			}
			if (f)
				cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL);
			cuMemFreeAsync(p, NULL);
		}
		cuCtxSynchronize();
	} else if (strcmp(mode, "ctx8") == 0) {
		eight_contexts(dev, false);
		cuCtxSetCurrent(primary);
	} else if (strcmp(mode, "ctx8-v2") == 0) {
		eight_contexts(dev, true);
		cuCtxSetCurrent(primary);
	} else if (strcmp(mode, "green") == 0) {
		green_contexts(dev);
		cuCtxSetCurrent(primary);
	} else if (strcmp(mode, "graph-generic") == 0) {
		generic_graph(dev);
	} else if (strcmp(mode, "host-pool") == 0) {
		host_pool();
	} else if (strcmp(mode, "graph") == 0) {
		CUstream stream;
		if (cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS)
			return 3;
		CUgraph big;
		CUgraphNode node;
		CUDA_MEM_ALLOC_NODE_PARAMS p;
		memset(&p, 0, sizeof(p));
		p.poolProps.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
		p.poolProps.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
		p.poolProps.location.id = dev;
		p.bytesize = 3072 * MiB;
		if (cuGraphCreate(&big, 0) == CUDA_SUCCESS)
			expect("alloc node of 3 GiB", cuGraphAddMemAllocNode(&node, big, NULL, 0, &p),
			       CUDA_ERROR_OUT_OF_MEMORY);
		CUgraph two = graph_of_allocs(dev, 2, 1024 * MiB, 0);
		CUgraphExec exec;
		if (two && cuGraphInstantiateWithFlags(&exec, two, 0) == CUDA_SUCCESS) {
			expect("upload of two live 1 GiB nodes", cuGraphUpload(exec, stream),
			       CUDA_ERROR_OUT_OF_MEMORY);
			cuGraphExecDestroy(exec);
		}
		cuDeviceGraphMemTrim(dev);
		CUgraph one = graph_of_allocs(dev, 1, 512 * MiB, 1);
		if (one)
			run_graph(one, stream);
		pause_ms(300);
	} else if (strcmp(mode, "graph-capture") == 0) {
		CUstream stream;
		CUgraph graph = captured_graph(512 * MiB, &stream);
		if (!graph)
			return 3;
		run_graph(graph, stream);
		pause_ms(300); /* the pool's memory taken at the launches is reconciled */
	} else if (strcmp(mode, "graph-launch") == 0) {
		CUstream stream;
		CUgraph graph = captured_graph(1024 * MiB, &stream);
		CUgraphExec exec;
		CUdeviceptr held = 0;
		if (!graph || cuGraphInstantiateWithFlags(&exec, graph, 0) != CUDA_SUCCESS)
			return 3;
		expect("cuMemAlloc of 768 MiB", cuMemAlloc(&held, 768 * MiB), CUDA_SUCCESS);
		expect("first launch with under 1 GiB left", cuGraphLaunch(exec, stream),
		       CUDA_ERROR_OUT_OF_MEMORY);
		expect("synchronise", cuStreamSynchronize(stream), CUDA_SUCCESS);
		cuMemFree(held);
		expect("launch with room", cuGraphLaunch(exec, stream), CUDA_SUCCESS);
		expect("synchronise", cuStreamSynchronize(stream), CUDA_SUCCESS);
		pause_ms(300);
	} else {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	fill();
	return failures ? 1 : 0;
}
