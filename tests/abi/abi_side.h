/* SPDX-License-Identifier: Apache-2.0 */
/* One side of the ABI comparison: each side is compiled against one header
 * (ours or the real cuda.h / nvml.h) and fills the same table of numbers, in
 * the order of abi_checks.def (abi_nvml_checks.def when built with
 * ABI_NVML). */
#ifndef GPUCAP_ABI_SIDE_H
#define GPUCAP_ABI_SIDE_H

#include <stddef.h>
#include <stdint.h>

#ifdef ABI_NVML
#define ABI_CHECKS_DEF "abi_nvml_checks.def"
#define ABI_HEADER     "nvml.h"
#else
#define ABI_CHECKS_DEF "abi_checks.def"
#define ABI_HEADER     "cuda.h"
#endif

#define ABI_FILL(out)                                                                                        \
	do {                                                                                                 \
		size_t i_ = 0;                                                                               \
		ABI_CHECKS(out, i_)                                                                          \
	} while (0)

void abi_ours(uint64_t *out);
void abi_real(uint64_t *out);

#endif
