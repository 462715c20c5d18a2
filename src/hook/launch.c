/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Launch handlers: every path that runs work on the SM takes the gate
 * (src/compute) before the driver: kernels, extensible and cooperative
 * launches, graphs, and each one's per-thread-stream (_ptsz) entry.
 *
 * Without a cap the gate is one load and a branch; after the driver's call,
 * one more load (and a store at most once per reconciler tick) tells the
 * memory reconciler that the driver may have grown memory at the launch.
 *
 * A _ptsz row shares its handler with the plain one: the real function it
 * is handed is the driver's _ptsz entry point, and that is how the handler
 * knows that a NULL stream means the per-thread stream.
 */
#include "compute.h"
#include "handlers.h"
#include "memory.h"

/* Whether real is the row's _ptsz real function (looked at only when a
 * launch takes the gate). */
#define PER_THREAD(real, ptsz_row) ((void *)(real) == gpucap_real[GPUCAP_ID_##ptsz_row])

CUresult on_launch_kernel(gpucap_fn_cuLaunchKernel real, CUfunction f, unsigned int gridDimX,
                          unsigned int gridDimY, unsigned int gridDimZ, unsigned int blockDimX,
                          unsigned int blockDimY, unsigned int blockDimZ, unsigned int sharedMemBytes,
                          CUstream hStream, void **kernelParams, void **extra)
{
	if (gpucap_sm_gate_armed())
		gpucap_compute_gate(hStream, PER_THREAD(real, cuLaunchKernel_ptsz));
	CUresult r = real(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes,
	                  hStream, kernelParams, extra);
	gpucap_memory_note_launch();
	return r;
}

CUresult on_launch_kernel_ex(gpucap_fn_cuLaunchKernelEx real, const CUlaunchConfig *config, CUfunction f,
                             void **kernelParams, void **extra)
{
	/* No configuration: the driver's own error, without a gate. */
	if (gpucap_sm_gate_armed() && config)
		gpucap_compute_gate(config->hStream, PER_THREAD(real, cuLaunchKernelEx_ptsz));
	CUresult r = real(config, f, kernelParams, extra);
	gpucap_memory_note_launch();
	return r;
}

CUresult on_launch_cooperative_kernel(gpucap_fn_cuLaunchCooperativeKernel real, CUfunction f,
                                      unsigned int gridDimX, unsigned int gridDimY, unsigned int gridDimZ,
                                      unsigned int blockDimX, unsigned int blockDimY, unsigned int blockDimZ,
                                      unsigned int sharedMemBytes, CUstream hStream, void **kernelParams)
{
	if (gpucap_sm_gate_armed())
		gpucap_compute_gate(hStream, PER_THREAD(real, cuLaunchCooperativeKernel_ptsz));
	CUresult r = real(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes,
	                  hStream, kernelParams);
	gpucap_memory_note_launch();
	return r;
}

/* A graph's first launch may take memory for its allocation nodes: that is
 * charged (or refused) before the gate, so a refused launch never waits. */
CUresult on_graph_launch(gpucap_fn_cuGraphLaunch real, CUgraphExec hGraphExec, CUstream hStream)
{
	struct gpucap_graph_run run;
	CUresult r = gpucap_graph_run_admit(hGraphExec, "cuGraphLaunch (its allocation nodes)", &run);
	if (r != CUDA_SUCCESS)
		return r;
	if (gpucap_sm_gate_armed())
		gpucap_compute_gate(hStream, PER_THREAD(real, cuGraphLaunch_ptsz));
	r = real(hGraphExec, hStream);
	gpucap_memory_note_launch();
	gpucap_graph_run_done(&run, r);
	return r;
}

CUresult on_stream_destroy(gpucap_fn_cuStreamDestroy_v2 real, CUstream hStream)
{
	/* Before the driver frees it: no drain may record on it afterwards. */
	gpucap_sm_stream_gone(hStream);
	return real(hStream);
}
