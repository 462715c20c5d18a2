/* SPDX-License-Identifier: Apache-2.0 */
/* Compare src/driver/cuda_abi.h with the installed cuda.h (or, built with
 * ABI_NVML, its NVML part with the installed nvml.h). */
#include "abi_side.h"

#include <stdio.h>

static const char *const names[] = {
#define SIZE(type)           "sizeof(" #type ")",
#define OFFSET(type, member) "offsetof(" #type ", " #member ")",
#define VALUE(name)          #name,
#include ABI_CHECKS_DEF
};

#define COUNT (sizeof(names) / sizeof(names[0]))

int abi_signatures_compiled(void);

int main(void)
{
	uint64_t ours[COUNT], real[COUNT];
	abi_ours(ours);
	abi_real(real);
	int bad = 0;
	for (size_t i = 0; i < COUNT; i++) {
		if (ours[i] != real[i]) {
			printf("MISMATCH %s: gpucap %llu, %s %llu\n", names[i], (unsigned long long)ours[i],
			       ABI_HEADER, (unsigned long long)real[i]);
			bad++;
		}
	}
	printf("%s: %zu layout facts and constants compared, %d mismatches; table signatures checked: %d\n",
	       ABI_HEADER, COUNT, bad, abi_signatures_compiled());
	return bad ? 1 : 0;
}
