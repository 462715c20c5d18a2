/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The generated widening adapters of hooks.def's NARROW rows (table.c).
 *
 * A NARROW row is a pre-3.2 32-bit form of an API whose native row has the
 * handler. Its wrapper widens the arguments, calls that handler, and
 * narrows what comes back; the handler's "real function" is a shim of the
 * native type that narrows the arguments again and calls the 32-bit real
 * function. So the 32-bit entry point reaches the driver through itself,
 * and only one handler body exists per API.
 *
 * Each parameter is described by (KIND, narrow type, wide type, name):
 *   SAME  passed as it is (the two types are the same)
 *   VAL   a value: widened going in, narrowed (saturating) for the driver
 *   OUT   a pointer the driver writes through: a wide copy for the handler,
 *         a narrow one for the driver, copied back both ways
 *   DESC  a pointer to a descriptor: converted with gpucap_widen_desc /
 *         gpucap_narrow_desc
 */
#ifndef GPUCAP_HOOK_NARROW_H
#define GPUCAP_HOOK_NARROW_H

#include "cuda_abi.h"

#include <stddef.h>

/* value as the unsigned type n, saturating (n is never wider than value). */
#define GPUCAP_SAT(n, value) ((value) > (n) ~(n)0 ? (n) ~(n)0 : (n)(value))

static inline void widen_array_desc(const CUDA_ARRAY_DESCRIPTOR_v1 *in, CUDA_ARRAY_DESCRIPTOR *out)
{
	out->Width = in->Width;
	out->Height = in->Height;
	out->Format = in->Format;
	out->NumChannels = in->NumChannels;
}

static inline void narrow_array_desc(const CUDA_ARRAY_DESCRIPTOR *in, CUDA_ARRAY_DESCRIPTOR_v1 *out)
{
	out->Width = GPUCAP_SAT(unsigned int, in->Width);
	out->Height = GPUCAP_SAT(unsigned int, in->Height);
	out->Format = in->Format;
	out->NumChannels = in->NumChannels;
}

static inline void widen_array3d_desc(const CUDA_ARRAY3D_DESCRIPTOR_v1 *in, CUDA_ARRAY3D_DESCRIPTOR *out)
{
	out->Width = in->Width;
	out->Height = in->Height;
	out->Depth = in->Depth;
	out->Format = in->Format;
	out->NumChannels = in->NumChannels;
	out->Flags = in->Flags;
}

static inline void narrow_array3d_desc(const CUDA_ARRAY3D_DESCRIPTOR *in, CUDA_ARRAY3D_DESCRIPTOR_v1 *out)
{
	out->Width = GPUCAP_SAT(unsigned int, in->Width);
	out->Height = GPUCAP_SAT(unsigned int, in->Height);
	out->Depth = GPUCAP_SAT(unsigned int, in->Depth);
	out->Format = in->Format;
	out->NumChannels = in->NumChannels;
	out->Flags = in->Flags;
}

#define gpucap_widen_desc(in, out)                                                                           \
	_Generic((in), const CUDA_ARRAY_DESCRIPTOR_v1 *: widen_array_desc,                                   \
	         const CUDA_ARRAY3D_DESCRIPTOR_v1 *: widen_array3d_desc)(in, out)
#define gpucap_narrow_desc(in, out)                                                                          \
	_Generic((in), const CUDA_ARRAY_DESCRIPTOR *: narrow_array_desc,                                     \
	         const CUDA_ARRAY3D_DESCRIPTOR *: narrow_array3d_desc)(in, out)

/* ---- One macro per parameter and step ----------------------------------- */

/* The adapter (the exported 32-bit wrapper). */
#define NARROW_ADAPT_DECL_SAME(n, w, x)
#define NARROW_ADAPT_DECL_VAL(n, w, x)
#define NARROW_ADAPT_DECL_OUT(n, w, x) w wide_##x = x ? (w)*x : 0;
#define NARROW_ADAPT_DECL_DESC(n, w, x)                                                                      \
	w wide_##x;                                                                                          \
	if (x)                                                                                               \
		gpucap_widen_desc(x, &wide_##x);
#define NARROW_ADAPT_ARG_SAME(n, w, x) x
#define NARROW_ADAPT_ARG_VAL(n, w, x)  (w) x
#define NARROW_ADAPT_ARG_OUT(n, w, x)  x ? &wide_##x : NULL
#define NARROW_ADAPT_ARG_DESC(n, w, x) x ? &wide_##x : NULL
#define NARROW_ADAPT_BACK_SAME(n, w, x)
#define NARROW_ADAPT_BACK_VAL(n, w, x)
#define NARROW_ADAPT_BACK_OUT(n, w, x)                                                                       \
	if (x)                                                                                               \
		*x = GPUCAP_SAT(n, wide_##x);
#define NARROW_ADAPT_BACK_DESC(n, w, x)

/* The shim handed to the handler as its real function. */
#define NARROW_SHIM_PARAM_SAME(n, w, x) w x
#define NARROW_SHIM_PARAM_VAL(n, w, x)  w x
#define NARROW_SHIM_PARAM_OUT(n, w, x)  w *x
#define NARROW_SHIM_PARAM_DESC(n, w, x) const w *x
#define NARROW_SHIM_DECL_SAME(n, w, x)
#define NARROW_SHIM_DECL_VAL(n, w, x)
#define NARROW_SHIM_DECL_OUT(n, w, x) n narrow_##x = x ? GPUCAP_SAT(n, *x) : 0;
#define NARROW_SHIM_DECL_DESC(n, w, x)                                                                       \
	n narrow_##x;                                                                                        \
	if (x)                                                                                               \
		gpucap_narrow_desc(x, &narrow_##x);
#define NARROW_SHIM_ARG_SAME(n, w, x) x
#define NARROW_SHIM_ARG_VAL(n, w, x)  GPUCAP_SAT(n, x)
#define NARROW_SHIM_ARG_OUT(n, w, x)  x ? &narrow_##x : NULL
#define NARROW_SHIM_ARG_DESC(n, w, x) x ? &narrow_##x : NULL
#define NARROW_SHIM_BACK_SAME(n, w, x)
#define NARROW_SHIM_BACK_VAL(n, w, x)
#define NARROW_SHIM_BACK_OUT(n, w, x)                                                                        \
	if (x)                                                                                               \
		*x = narrow_##x;
#define NARROW_SHIM_BACK_DESC(n, w, x)

/* step(tuple) for one (KIND, narrow, wide, name) tuple. */
#define NARROW_APPLY(m, t)                 m t
#define NARROW_ADAPT_DECL_T(kind, n, w, x) NARROW_ADAPT_DECL_##kind(n, w, x)
#define NARROW_ADAPT_DECL(t)               NARROW_APPLY(NARROW_ADAPT_DECL_T, t)
#define NARROW_ADAPT_ARG_T(kind, n, w, x)  NARROW_ADAPT_ARG_##kind(n, w, x)
#define NARROW_ADAPT_ARG(t)                NARROW_APPLY(NARROW_ADAPT_ARG_T, t)
#define NARROW_ADAPT_BACK_T(kind, n, w, x) NARROW_ADAPT_BACK_##kind(n, w, x)
#define NARROW_ADAPT_BACK(t)               NARROW_APPLY(NARROW_ADAPT_BACK_T, t)
#define NARROW_SHIM_PARAM_T(kind, n, w, x) NARROW_SHIM_PARAM_##kind(n, w, x)
#define NARROW_SHIM_PARAM(t)               NARROW_APPLY(NARROW_SHIM_PARAM_T, t)
#define NARROW_SHIM_DECL_T(kind, n, w, x)  NARROW_SHIM_DECL_##kind(n, w, x)
#define NARROW_SHIM_DECL(t)                NARROW_APPLY(NARROW_SHIM_DECL_T, t)
#define NARROW_SHIM_ARG_T(kind, n, w, x)   NARROW_SHIM_ARG_##kind(n, w, x)
#define NARROW_SHIM_ARG(t)                 NARROW_APPLY(NARROW_SHIM_ARG_T, t)
#define NARROW_SHIM_BACK_T(kind, n, w, x)  NARROW_SHIM_BACK_##kind(n, w, x)
#define NARROW_SHIM_BACK(t)                NARROW_APPLY(NARROW_SHIM_BACK_T, t)

/* m applied to each of up to 5 tuples: joined by nothing (EACH) or by
 * commas (LIST). */
#define NARROW_EACH_1(m, a)                        m(a)
#define NARROW_EACH_2(m, a, ...)                   m(a) NARROW_EACH_1(m, __VA_ARGS__)
#define NARROW_EACH_3(m, a, ...)                   m(a) NARROW_EACH_2(m, __VA_ARGS__)
#define NARROW_EACH_4(m, a, ...)                   m(a) NARROW_EACH_3(m, __VA_ARGS__)
#define NARROW_EACH_5(m, a, ...)                   m(a) NARROW_EACH_4(m, __VA_ARGS__)
#define NARROW_LIST_1(m, a)                        m(a)
#define NARROW_LIST_2(m, a, ...)                   m(a), NARROW_LIST_1(m, __VA_ARGS__)
#define NARROW_LIST_3(m, a, ...)                   m(a), NARROW_LIST_2(m, __VA_ARGS__)
#define NARROW_LIST_4(m, a, ...)                   m(a), NARROW_LIST_3(m, __VA_ARGS__)
#define NARROW_LIST_5(m, a, ...)                   m(a), NARROW_LIST_4(m, __VA_ARGS__)
#define NARROW_PICK(_1, _2, _3, _4, _5, name, ...) name
#define NARROW_EACH(m, ...)                                                                                  \
	NARROW_PICK(__VA_ARGS__, NARROW_EACH_5, NARROW_EACH_4, NARROW_EACH_3, NARROW_EACH_2,                 \
	            NARROW_EACH_1, )                                                                         \
	(m, __VA_ARGS__)
#define NARROW_LIST(m, ...)                                                                                  \
	NARROW_PICK(__VA_ARGS__, NARROW_LIST_5, NARROW_LIST_4, NARROW_LIST_3, NARROW_LIST_2,                 \
	            NARROW_LIST_1, )                                                                         \
	(m, __VA_ARGS__)

#endif
