/* SPDX-License-Identifier: Apache-2.0 */
/* The toolkit side: the real cuda.h, with the pre-3.2 names visible so the
 * 32-bit descriptors can be compared too; or, with ABI_NVML, the real
 * nvml.h with its versioned names as they are. */
#ifdef ABI_NVML
#define NVML_NO_UNVERSIONED_FUNC_DEFS 1
#include <nvml.h>
#else
#define __CUDA_API_VERSION_INTERNAL 1
#include <cuda.h>
#endif

#include "abi_side.h"

void abi_real(uint64_t *out)
{
	size_t i = 0;
#define SIZE(type)           out[i++] = sizeof(type);
#define OFFSET(type, member) out[i++] = offsetof(type, member);
#define VALUE(name)          out[i++] = (uint64_t)(name);
#include ABI_CHECKS_DEF
}
