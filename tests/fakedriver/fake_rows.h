/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Included at the end of fakecuda.c (FAKE_ROWS_CUDA) and fakenvml.c
 * (FAKE_ROWS_NVML): the fake library defines every row of gpucap's tables
 * (src/hook/hooks.def, src/driver/calls.def) and of fake_api.def that
 * belongs to it, with exactly the row's type. A missing function or a
 * different signature does not compile.
 */
#ifndef GPUCAP_FAKE_ROWS_H
#define GPUCAP_FAKE_ROWS_H

#define FAKE_ROW_OK(name, ret, params)                                                                       \
	_Static_assert(_Generic(&name, ret(*) params : 1, default : 0), #name " differs from its table "     \
	                                                                      "row");

#ifdef FAKE_ROWS_CUDA
#define FAKE_ROW_CUDA(name, ret, params) FAKE_ROW_OK(name, ret, params)
#define FAKE_ROW_NVML(name, ret, params)
#else
#define FAKE_ROW_CUDA(name, ret, params)
#define FAKE_ROW_NVML(name, ret, params) FAKE_ROW_OK(name, ret, params)
#endif

#define HOOK(lib, name, ret, params, args, handler) FAKE_ROW_##lib(name, ret, params)
#include "hooks.def"
#undef HOOK
#define CALL(lib, name, ret, params) FAKE_ROW_##lib(name, ret, params)
#include "calls.def"
#undef CALL
#define FAKE_API(lib, name, ret, params) FAKE_ROW_##lib(name, ret, params)
#include "fake_api.def"
#undef FAKE_API

#endif
