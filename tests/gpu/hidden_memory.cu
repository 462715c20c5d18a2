/* SPDX-License-Identifier: Apache-2.0 */
// Kernels for hidden_memory.c, built twice into fatbins: with -DBIG the
// module holds a 1.5 GiB __device__ array (placed when the module loads, or
// at its first launch under lazy loading); without it, kernels that use the
// device malloc heap, the per-thread stack and the printf FIFO.
#ifdef BIG
__device__ char big[1536ull << 20];

extern "C" __global__ void touch_big(void)
{
	size_t i = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) << 20;
	if (i < sizeof(big))
		big[i] = 1;
}
#else
extern "C" __global__ void heap_user(void)
{
	char *p = (char *)malloc(1 << 20);
	if (p) {
		p[0] = 1;
		free(p);
	}
}

// A local array indexed at run time lives on the stack: 4 KiB a thread,
// more than the default stack, so the driver grows it at the launch (about
// 1 GiB on an H100) and never shrinks it.
extern "C" __global__ void stack_user(int n, int *out)
{
	volatile int local[1024];
	for (int i = 0; i < 1024; i++)
		local[i] = i * n;
	out[0] = local[(n * 7) & 1023];
}

extern "C" __global__ void printf_user(void)
{
	if (threadIdx.x == 0)
		printf("printf_user ran\n");
}

extern "C" __global__ void nothing(void)
{
}
#endif
