/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The two lookup routes besides direct linking:
 *   dlsym              code that dlopens libcuda.so.1 / libnvidia-ml.so.1
 *   cuGetProcAddress*  the CUDA runtime, PyTorch, CuPy, JAX, NCCL
 * Both ask the real lookup first and swap a real function gpucap hooks for
 * its wrapper; everything else is returned untouched.
 */
#define _GNU_SOURCE
#include "handlers.h"
#include "log.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

/* Only names that could be driver or NVML entry points are looked at.
 * These run inside every dlsym of the process, possibly before a sanitizer
 * runtime is ready: no instrumentation, no library calls. */
GPUCAP_NO_SANITIZE static bool maybe_hooked(const char *symbol)
{
	/* Driver API names are "cu" and a capital: cuMemAlloc, not cudaMalloc. */
	return symbol && symbol[0] == 'c' && symbol[1] == 'u' && symbol[2] >= 'A' && symbol[2] <= 'Z';
}

GPUCAP_NO_SANITIZE static bool maybe_nvml(const char *symbol)
{
	return symbol && symbol[0] == 'n' && symbol[1] == 'v' && symbol[2] == 'm' && symbol[3] == 'l';
}

/* The row table's lookups, by name and by real function. */

int gpucap_hook_find(const char *symbol)
{
	if (!symbol || symbol[0] == '\0')
		return -1;
	for (int i = 0; i < GPUCAP_HOOK_COUNT; i++)
		if (strcmp(gpucap_hooks[i].name, symbol) == 0)
			return i;
	return -1;
}

void *gpucap_wrapper_for_real(void *real)
{
	if (!real)
		return NULL;
	for (int i = 0; i < GPUCAP_HOOK_COUNT; i++)
		if (gpucap_real[i] == real)
			return gpucap_hooks[i].wrapper;
	return NULL;
}

/*
 * A lookup that found an intercepted name answers with the wrapper. The
 * decision is by name alone, so it needs no initialisation: dlsym may run
 * inside a library constructor with the loader lock held, where waiting for
 * another thread's initialisation (which itself calls dlopen) could
 * deadlock. The wrapper initialises on its first call.
 */
static void *swap_for_wrapper(const char *symbol, void *found)
{
	if (!found)
		return found; /* not in this handle's scope: the driver's answer */
	int id = gpucap_hook_find(symbol);
	return id < 0 ? found : gpucap_hooks[id].wrapper;
}

/*
 * dlsym itself.
 *
 * glibc resolves RTLD_NEXT relative to the object that called dlsym, found
 * from the return address. A C wrapper would make every RTLD_NEXT lookup
 * relative to libgpucap instead, which breaks other interposers (sanitizer
 * runtimes, profilers, allocator shims) loaded around it. So the exported
 * entry is a few instructions: RTLD_NEXT jumps straight into glibc's dlsym
 * with the caller's return address untouched, everything else goes to
 * gpucap_dlsym below. Other architectures use the C wrapper alone.
 */
void *gpucap_dlsym(void *handle, const char *symbol);

GPUCAP_NO_SANITIZE void *gpucap_dlsym(void *handle, const char *symbol)
{
	void *found = gpucap_real_dlsym(handle, symbol);
	if (!maybe_hooked(symbol) && !maybe_nvml(symbol))
		return found;
	return swap_for_wrapper(symbol, found);
}

#if defined(__x86_64__)
__asm__(".text\n"
        ".globl dlsym\n"
        ".type dlsym, @function\n"
        "dlsym:\n"
        "	cmpq $-1, %rdi\n" /* RTLD_NEXT */
        "	jne gpucap_dlsym\n"
        "	movq gpucap_real_dlsym_slot(%rip), %rax\n"
        "	testq %rax, %rax\n"
        "	jz 1f\n"
        "	jmp *%rax\n"
        "1:	pushq %rdi\n"
        "	pushq %rsi\n"
        "	subq $8, %rsp\n" /* keep the stack 16-byte aligned at the call */
        "	call gpucap_real_dlsym_resolve\n"
        "	addq $8, %rsp\n"
        "	popq %rsi\n"
        "	popq %rdi\n"
        "	testq %rax, %rax\n"
        "	jz 2f\n"
        "	jmp *%rax\n"
        "2:	ret\n" /* no dlsym at all: NULL */
        ".size dlsym, .-dlsym\n");
#elif defined(__aarch64__)
__asm__(".text\n"
        ".globl dlsym\n"
        ".type dlsym, %function\n"
        "dlsym:\n"
        "	cmn x0, #1\n" /* RTLD_NEXT */
        "	b.ne gpucap_dlsym\n"
        "	adrp x16, gpucap_real_dlsym_slot\n"
        "	ldr x16, [x16, :lo12:gpucap_real_dlsym_slot]\n"
        "	cbz x16, 1f\n"
        "	br x16\n"
        "1:	stp x0, x1, [sp, #-32]!\n"
        "	str x30, [sp, #16]\n"
        "	bl gpucap_real_dlsym_resolve\n"
        "	mov x16, x0\n"
        "	ldr x30, [sp, #16]\n"
        "	ldp x0, x1, [sp], #32\n"
        "	cbz x16, 2f\n"
        "	br x16\n"
        "2:	mov x0, #0\n"
        "	ret\n"
        ".size dlsym, .-dlsym\n");
#else
GPUCAP_EXPORT void *dlsym(void *handle, const char *symbol);

void *dlsym(void *handle, const char *symbol)
{
	return gpucap_dlsym(handle, symbol);
}
#endif

/* ---- cuGetProcAddress ---------------------------------------------------- */

/* True when symbol names an intercepted API under its base name: some row
 * is symbol itself or symbol followed by _v<digit>, _ptsz or _ptds. */
static bool hooked_family(const char *symbol)
{
	size_t len = strlen(symbol);
	for (int i = 0; i < GPUCAP_HOOK_COUNT; i++) {
		const char *name = gpucap_hooks[i].name;
		if (strncmp(name, symbol, len) != 0)
			continue;
		const char *rest = name + len;
		if (rest[0] == '\0' || strcmp(rest, "_ptsz") == 0 || strcmp(rest, "_ptds") == 0 ||
		    (rest[0] == '_' && rest[1] == 'v' && rest[2] >= '0' && rest[2] <= '9'))
			return true;
	}
	return false;
}

/* Entry points already reported: libraries look the same symbol up again
 * and again (once per thread, per library), and one line each is enough. */
#define UNHOOKED_SEEN 64
static _Atomic(void *) unhooked_seen[UNHOOKED_SEEN];

/* True the first time fn is offered (or when the set is full: said enough). */
static bool first_report(void *fn)
{
	for (int i = 0; i < UNHOOKED_SEEN; i++) {
		void *seen = atomic_load_explicit(&unhooked_seen[i], memory_order_relaxed);
		if (seen == fn)
			return false;
		/* Relaxed: the set orders nothing else. A CAS that loses reads
		 * the winner's entry point, so each is said once. */
		if (!seen && atomic_compare_exchange_strong_explicit(
		                 &unhooked_seen[i], &seen, fn, memory_order_relaxed, memory_order_relaxed))
			return true;
		if (seen == fn)
			return false;
	}
	return false;
}

static void swap_proc(const char *symbol, void **pfn, int cuda_version, cuuint64_t flags)
{
	if (!pfn || !*pfn)
		return;
	void *wrapper = gpucap_wrapper_for_real(*pfn);
	if (wrapper) {
		*pfn = wrapper;
		return;
	}
	/* The driver answered an intercepted API with a function gpucap has no
	 * row for: calls through it would not be capped. Say so, once per entry
	 * point (at start-up; never on a hot path). */
	if (symbol && hooked_family(symbol) && first_report(*pfn))
		gpucap_log(
		    GPUCAP_LOG_WARN,
		    "cuGetProcAddress(\"%s\", %d, %llu) returned an entry point gpucap does not intercept; memory allocated through it is not capped",
		    symbol, cuda_version, (unsigned long long)flags);
}

CUresult on_get_proc_address(gpucap_fn_cuGetProcAddress_v2 real, const char *symbol, void **pfn,
                             int cudaVersion, cuuint64_t flags, CUdriverProcAddressQueryResult *symbolStatus)
{
	CUresult r = real(symbol, pfn, cudaVersion, flags, symbolStatus);
	if (r == CUDA_SUCCESS)
		swap_proc(symbol, pfn, cudaVersion, flags);
	return r;
}

CUresult on_get_proc_address_v1(gpucap_fn_cuGetProcAddress real, const char *symbol, void **pfn,
                                int cudaVersion, cuuint64_t flags)
{
	CUresult r = real(symbol, pfn, cudaVersion, flags);
	if (r == CUDA_SUCCESS)
		swap_proc(symbol, pfn, cudaVersion, flags);
	return r;
}
