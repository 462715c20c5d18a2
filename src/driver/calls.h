/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The real functions gpucap calls (calls.def), for every layer above the
 * driver seam: the memory admission, the SM gate and its controller.
 */
#ifndef GPUCAP_DRIVER_CALLS_H
#define GPUCAP_DRIVER_CALLS_H

#include "driver.h"

#include <stdbool.h>

enum gpucap_call_id {
#define CALL(lib, name, ret, params) GPUCAP_CALL_##name,
#include "calls.def"
#undef CALL
	GPUCAP_CALL_COUNT
};

/* One function-pointer type per row. A name that is also a hook row
 * (src/hook/hooks.def) gets the same typedef twice, which C11 allows. */
#define CALL(lib, name, ret, params) typedef ret(*gpucap_fn_##name) params;
#include "calls.def"
#undef CALL

/* Filled by gpucap_calls_resolve before the library is ready; read-only
 * after (a forked child fills it again with the same values). */
extern void *gpucap_calls[GPUCAP_CALL_COUNT];

#define GPUCAP_REAL(name) ((gpucap_fn_##name)gpucap_calls[GPUCAP_CALL_##name])

/* Look every row up in the real libraries. is_own(fn) says whether fn is
 * one of gpucap's own exported functions (a real library that is itself
 * preloaded could hand one back): such a row stays NULL, so gpucap never
 * calls itself. */
void gpucap_calls_resolve(bool (*is_own)(const void *fn));

#endif
