/* SPDX-License-Identifier: Apache-2.0 */
/* The real functions gpucap calls (calls.def), looked up once. */
#include "calls.h"

#include <stddef.h>

void *gpucap_calls[GPUCAP_CALL_COUNT];

static const struct {
	const char *name;
	enum gpucap_lib lib;
} rows[GPUCAP_CALL_COUNT] = {
#define CALL(lib, name, ret, params) [GPUCAP_CALL_##name] = {#name, GPUCAP_LIB_##lib},
#include "calls.def"
#undef CALL
};

void gpucap_calls_resolve(bool (*is_own)(const void *fn))
{
	for (int i = 0; i < GPUCAP_CALL_COUNT; i++) {
		void *fn = gpucap_driver_symbol(rows[i].lib, rows[i].name);
		gpucap_calls[i] = fn && is_own && is_own(fn) ? NULL : fn;
	}
}
