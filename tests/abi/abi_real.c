/* The toolkit side: the real cuda.h, with the pre-3.2 names visible so the
 * 32-bit descriptors can be compared too. */
#define __CUDA_API_VERSION_INTERNAL 1
#include <cuda.h>

#include "abi_side.h"

void abi_real(uint64_t *out)
{
	size_t i = 0;
#define SIZE(type)           out[i++] = sizeof(type);
#define OFFSET(type, member) out[i++] = offsetof(type, member);
#define VALUE(name)          out[i++] = (uint64_t)(name);
#include "abi_checks.def"
}
