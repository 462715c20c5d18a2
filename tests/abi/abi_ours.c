/* SPDX-License-Identifier: Apache-2.0 */
/* The gpucap side: src/driver/cuda_abi.h. */
#include "abi_side.h"
#include "cuda_abi.h"

void abi_ours(uint64_t *out)
{
	size_t i = 0;
#define SIZE(type)           out[i++] = sizeof(type);
#define OFFSET(type, member) out[i++] = offsetof(type, member);
#define VALUE(name)          out[i++] = (uint64_t)(name);
#include ABI_CHECKS_DEF
}
