/* One side of the ABI comparison: each side is compiled against one header
 * (ours or the real cuda.h) and fills the same table of numbers, in the
 * order of abi_checks.def. */
#ifndef GPUCAP_ABI_SIDE_H
#define GPUCAP_ABI_SIDE_H

#include <stddef.h>
#include <stdint.h>

#define ABI_FILL(out)                                                                                        \
	do {                                                                                                 \
		size_t i_ = 0;                                                                               \
		ABI_CHECKS(out, i_)                                                                          \
	} while (0)

void abi_ours(uint64_t *out);
void abi_real(uint64_t *out);

#endif
