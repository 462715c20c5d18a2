/* Compare src/driver/cuda_abi.h with the installed cuda.h. */
#include "abi_side.h"

#include <stdio.h>

static const char *const names[] = {
#define SIZE(type)           "sizeof(" #type ")",
#define OFFSET(type, member) "offsetof(" #type ", " #member ")",
#define VALUE(name)          #name,
#include "abi_checks.def"
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
			printf("MISMATCH %s: gpucap %llu, cuda.h %llu\n", names[i],
			       (unsigned long long)ours[i], (unsigned long long)real[i]);
			bad++;
		}
	}
	printf("%zu layout facts and constants compared, %d mismatches; hook signatures checked: %d\n", COUNT,
	       bad, abi_signatures_compiled());
	return bad ? 1 : 0;
}
