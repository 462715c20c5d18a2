/* SPDX-License-Identifier: Apache-2.0 */
/* Every row of src/hook/hooks.def and src/driver/calls.def, checked against
 * the prototype in the real header: the wrapper gpucap exports (and the
 * pointer type it calls the driver through) must have exactly the driver's
 * type. CUDA rows against cuda.h; built with ABI_NVML, NVML rows against
 * nvml.h. Compiling this file is the test. */
#ifdef ABI_NVML
#define NVML_NO_UNVERSIONED_FUNC_DEFS 1
#include <nvml.h>
#define HEADER "nvml.h"
#else
#define __CUDA_API_VERSION_INTERNAL 1
#include <cuda.h>
#define HEADER "cuda.h"
#endif

#define SIGNATURE_OK(name, ret, params)                                                                      \
	_Static_assert(_Generic(&name, ret(*) params : 1, default : 0), #name " differs from " HEADER);

#ifdef ABI_NVML
#define ROW_CUDA(name, ret, params)
#define ROW_NVML(name, ret, params) SIGNATURE_OK(name, ret, params)
#else
#define ROW_CUDA(name, ret, params) SIGNATURE_OK(name, ret, params)
#define ROW_NVML(name, ret, params)
#endif
#define HOOK(lib, name, ret, params, args, handler) ROW_##lib(name, ret, params)
#define CALL(lib, name, ret, params)                ROW_##lib(name, ret, params)
#include "calls.def"
#include "hooks.def"

int abi_signatures_compiled(void);
int abi_signatures_compiled(void)
{
	return 1;
}
