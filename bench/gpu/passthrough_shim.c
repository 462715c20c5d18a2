/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The least an LD_PRELOAD library can add to a launch: one exported
 * cuLaunchKernel that calls the driver's through a pointer found once. The
 * launch benchmark runs it beside native and gpucap, so the cost of
 * interposition itself is told apart from the cost of gpucap's wrapper.
 *   cc -shared -fPIC -O2 passthrough_shim.c -ldl -o passthrough_shim.so
 */
#define _GNU_SOURCE
#include <cuda.h>
#include <dlfcn.h>

typedef CUresult (*launch_fn)(CUfunction, unsigned int, unsigned int, unsigned int, unsigned int,
                              unsigned int, unsigned int, unsigned int, CUstream, void **, void **);

static launch_fn real_launch;

__attribute__((constructor)) static void find_real(void)
{
	real_launch = (launch_fn)dlsym(RTLD_NEXT, "cuLaunchKernel");
}

CUresult cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                        unsigned int by, unsigned int bz, unsigned int shared, CUstream stream, void **params,
                        void **extra)
{
	if (!real_launch)
		return CUDA_ERROR_NOT_INITIALIZED;
	return real_launch(f, gx, gy, gz, bx, by, bz, shared, stream, params, extra);
}
