/*
 * Launch handlers: every path that runs work on the SM takes the gate
 * (throttle.h) before the driver: kernels, extensible and cooperative
 * launches, graphs, and each one's per-thread-stream (_ptsz) entry.
 *
 * Without a cap the gate is one load and a branch. The real function is
 * read after it: an armed flag of 0 is only ever published after the
 * initialisation has filled the table, and while it is not 0 the gate
 * initialises first.
 */
#include "hook.h"
#include "throttle.h"

/* The real function of row id, or NULL: after the gate, the table is filled. */
#define REAL_AFTER_GATE(type) ((type)gpucap_real[id])

CUresult on_launch_kernel(int id, CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                          unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
                          unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,
                          void **kernelParams, void **extra)
{
	if (gpucap_sm_gate_armed())
		gpucap_sm_gate(hStream, id == GPUCAP_ID_cuLaunchKernel_ptsz);
	gpucap_fn_cuLaunchKernel real = REAL_AFTER_GATE(gpucap_fn_cuLaunchKernel);
	if (__builtin_expect(!real, 0))
		return gpucap_ensure_init() ? CUDA_ERROR_NOT_FOUND : CUDA_ERROR_NOT_INITIALIZED;
	return real(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,
	            kernelParams, extra);
}

CUresult on_launch_kernel_ex(int id, const CUlaunchConfig *config, CUfunction f, void **kernelParams,
                             void **extra)
{
	/* No configuration: the driver's own error, without a gate. */
	if (gpucap_sm_gate_armed() && config)
		gpucap_sm_gate(config->hStream, id == GPUCAP_ID_cuLaunchKernelEx_ptsz);
	gpucap_fn_cuLaunchKernelEx real = REAL_AFTER_GATE(gpucap_fn_cuLaunchKernelEx);
	if (__builtin_expect(!real, 0))
		return gpucap_ensure_init() ? CUDA_ERROR_NOT_FOUND : CUDA_ERROR_NOT_INITIALIZED;
	return real(config, f, kernelParams, extra);
}

CUresult on_launch_cooperative_kernel(int id, CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
                                      unsigned int gridDimZ, unsigned int blockDimX, unsigned int blockDimY,
                                      unsigned int blockDimZ, unsigned int sharedMemBytes, CUstream hStream,
                                      void **kernelParams)
{
	if (gpucap_sm_gate_armed())
		gpucap_sm_gate(hStream, id == GPUCAP_ID_cuLaunchCooperativeKernel_ptsz);
	gpucap_fn_cuLaunchCooperativeKernel real = REAL_AFTER_GATE(gpucap_fn_cuLaunchCooperativeKernel);
	if (__builtin_expect(!real, 0))
		return gpucap_ensure_init() ? CUDA_ERROR_NOT_FOUND : CUDA_ERROR_NOT_INITIALIZED;
	return real(f, gridDimX, gridDimY, gridDimZ, blockDimX, blockDimY, blockDimZ, sharedMemBytes, hStream,
	            kernelParams);
}

CUresult on_graph_launch(int id, CUgraphExec hGraphExec, CUstream hStream)
{
	if (gpucap_sm_gate_armed())
		gpucap_sm_gate(hStream, id == GPUCAP_ID_cuGraphLaunch_ptsz);
	gpucap_fn_cuGraphLaunch real = REAL_AFTER_GATE(gpucap_fn_cuGraphLaunch);
	if (__builtin_expect(!real, 0))
		return gpucap_ensure_init() ? CUDA_ERROR_NOT_FOUND : CUDA_ERROR_NOT_INITIALIZED;
	return real(hGraphExec, hStream);
}

CUresult on_stream_destroy(int id, CUstream hStream)
{
	gpucap_fn_cuStreamDestroy_v2 real = GPUCAP_REAL_OF(id, gpucap_fn_cuStreamDestroy_v2);
	if (!gpucap_ensure_init())
		return real ? real(hStream) : CUDA_ERROR_NOT_INITIALIZED;
	real = REAL_AFTER_GATE(gpucap_fn_cuStreamDestroy_v2);
	if (!real)
		return CUDA_ERROR_NOT_FOUND;
	/* Before the driver frees it: no drain may record on it afterwards. */
	gpucap_sm_stream_gone(hStream);
	return real(hStream);
}
