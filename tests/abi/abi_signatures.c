/* Every CUDA row of src/hook/hooks.def and src/driver/calls.def, checked against the prototype in the
 * real cuda.h: the wrapper gpucap exports must have exactly the driver's
 * type. Compiling this file is the test. */
#define __CUDA_API_VERSION_INTERNAL 1
#include <cuda.h>

#define SIGNATURE_OK(name, ret, params)                                                                      \
	_Static_assert(_Generic(&name, ret(*) params : 1, default : 0), #name " differs from cuda.h");

#define HOOK_CUDA(name, ret, params) SIGNATURE_OK(name, ret, params)
#define HOOK_NVML(name, ret, params)
#define HOOK(lib, name, ret, params, args, handler) HOOK_##lib(name, ret, params)
#define CALL(lib, name, ret, params)                HOOK_##lib(name, ret, params)
#include "calls.def"
#include "hooks.def"

int abi_signatures_compiled(void);
int abi_signatures_compiled(void)
{
	return 1;
}
