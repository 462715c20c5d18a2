/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The handlers of hooks.def's rows, one prototype per row, generated:
 * handler(real, args...), real being the row's own real function. Memory's
 * handlers are defined in src/memory and declared in memory.h as well; a
 * definition that disagrees with its row does not compile (table.c sees
 * both declarations).
 */
#ifndef GPUCAP_HOOK_HANDLERS_H
#define GPUCAP_HOOK_HANDLERS_H

#include "hook.h"
#include "memory.h"

/* Rows sharing a handler declare it again with their own (identical)
 * pointer type, which C allows. */
#define HOOK(lib, name, ret, params, args, handler)              ret handler(gpucap_fn_##name real, GPUCAP_UNPAREN params);
#define NARROW(lib, name, ret, params, args, wide, handler, ...) /* served by wide's handler */
#include "hooks.def"
#undef NARROW
#undef HOOK

#endif
