/* SPDX-License-Identifier: Apache-2.0 */
/* The driver and NVML functions the hook tests call by name, declared from
 * the tables: every row gpucap hooks (src/hook/hooks.def) or calls
 * (src/driver/calls.def), and the fake driver's extra entry points
 * (tests/fakedriver/fake_api.def). The tests link against the fake
 * libcuda.so.1 / libnvidia-ml.so.1; with libgpucap.so preloaded, the names
 * gpucap hooks resolve to its wrappers. */
#ifndef GPUCAP_TEST_CUDA_API_H
#define GPUCAP_TEST_CUDA_API_H

#include "cuda_abi.h"

#include <stdint.h>

#define HOOK(lib, name, ret, params, args, handler) ret name params;
#include "hooks.def"
#undef HOOK
#define CALL(lib, name, ret, params) ret name params;
#include "calls.def"
#undef CALL
#define FAKE_API(lib, name, ret, params) ret name params;
#include "fake_api.def"
#undef FAKE_API

#endif
