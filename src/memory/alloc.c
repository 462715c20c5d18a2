/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Admission on every allocation path. The rule everywhere: charge the region
 * before the driver allocates, give the charge back when the driver fails,
 * and forget a tracked object before the driver frees it (so its address
 * cannot be reused and re-tracked under us), putting it back if the driver
 * refuses the free.
 */
#include "log.h"
#include "memory_internal.h"

#include <limits.h>
#include <sched.h>
#include <stdlib.h>

/* ---- Linear allocations ---------------------------------------------------- */

CUresult on_mem_alloc(CUresult (*real)(CUdeviceptr *, size_t), CUdeviceptr *dptr, size_t bytesize)
{
	if (!dptr)
		return CUDA_ERROR_INVALID_VALUE;
	struct simple_alloc a = {GPUCAP_TRACK_PTR, GPUCAP_KIND_DATA, bytesize, NULL, "cuMemAlloc"};
	struct gpucap_device *dev;
	if (bytesize == 0 || gpucap_device_current(&dev) != CUDA_SUCCESS)
		return real(dptr, bytesize); /* the driver reports the error */
	a.dev = dev;
	struct gpucap_track_entry *entry;
	CUresult r = gpucap_simple_admit(&a, &entry);
	if (r != CUDA_SUCCESS)
		return r;
	r = real(dptr, bytesize);
	gpucap_simple_done(&a, entry, r, r == CUDA_SUCCESS ? *dptr : 0);
	return r;
}

/* The driver chooses the pitch, so the charge is made for width x height
 * first and topped up to pitch x height after; if the padding does not fit,
 * the allocation is freed and the answer is out of memory. (The 32-bit
 * cuMemAllocPitch reaches here through its widening adapter.) */
CUresult on_mem_alloc_pitch(CUresult (*real)(CUdeviceptr *, size_t *, size_t, size_t, unsigned int),
                            CUdeviceptr *dptr, size_t *pPitch, size_t WidthInBytes, size_t Height,
                            unsigned int ElementSizeBytes)
{
	if (!dptr || !pPitch)
		return CUDA_ERROR_INVALID_VALUE;
	struct gpucap_device *dev;
	uint64_t first = gpucap_mul_sat(WidthInBytes, Height);
	if (first == 0 || gpucap_device_current(&dev) != CUDA_SUCCESS)
		return real(dptr, pPitch, WidthInBytes, Height, ElementSizeBytes);
	struct simple_alloc a = {GPUCAP_TRACK_PTR, GPUCAP_KIND_DATA, first, dev, "cuMemAllocPitch"};
	struct gpucap_track_entry *entry;
	CUresult r = gpucap_simple_admit(&a, &entry);
	if (r != CUDA_SUCCESS)
		return r;
	r = real(dptr, pPitch, WidthInBytes, Height, ElementSizeBytes);
	if (r == CUDA_SUCCESS) {
		uint64_t exact = gpucap_mul_sat(*pPitch, Height);
		if (exact > first) {
			if (gpucap_admit(dev, GPUCAP_KIND_DATA, exact - first) != CUDA_SUCCESS) {
				gpucap_refusal_note(dev->region_index, dev, exact, a.api);
				gpucap_fn_cuMemFree_v2 real_free = GPUCAP_REAL(cuMemFree_v2);
				if (real_free)
					real_free(*dptr);
				r = CUDA_ERROR_OUT_OF_MEMORY;
			} else {
				a.bytes = exact;
			}
		}
	}
	gpucap_simple_done(&a, entry, r, r == CUDA_SUCCESS ? *dptr : 0);
	return r;
}

/* Managed memory may migrate to the host, but it can all be resident on the
 * device at once, so it is charged in full to the current device. */
CUresult on_mem_alloc_managed(CUresult (*real)(CUdeviceptr *, size_t, unsigned int), CUdeviceptr *dptr,
                              size_t bytesize, unsigned int flags)
{
	if (!dptr)
		return CUDA_ERROR_INVALID_VALUE;
	struct gpucap_device *dev;
	if (bytesize == 0 || gpucap_device_current(&dev) != CUDA_SUCCESS)
		return real(dptr, bytesize, flags);
	struct simple_alloc a = {GPUCAP_TRACK_PTR, GPUCAP_KIND_DATA, bytesize, dev, "cuMemAllocManaged"};
	struct gpucap_track_entry *entry;
	CUresult r = gpucap_simple_admit(&a, &entry);
	if (r != CUDA_SUCCESS)
		return r;
	r = real(dptr, bytesize, flags);
	gpucap_simple_done(&a, entry, r, r == CUDA_SUCCESS ? *dptr : 0);
	return r;
}

/* ---- Frees of pointers ------------------------------------------------------ */

/* After the driver answered the free of a tracked pointer (plain or from a
 * pool): its charge goes back, or, the free refused, the entry is put back;
 * the ledger move of gpucap_track_take ends. */
static void settle_pointer(struct gpucap_track_entry *entry, CUresult r)
{
	if (entry && entry->pool && r == CUDA_SUCCESS) {
		struct gpucap_pool *pool = entry->pool;
		uint64_t bytes = entry->bytes;
		free(entry);
		gpucap_pool_return(pool, bytes);
		gpucap_ledger_move_end();
	} else {
		gpucap_track_settle(entry, r);
	}
}

CUresult on_mem_free(CUresult (*real)(CUdeviceptr), CUdeviceptr dptr)
{
	struct gpucap_track_entry *entry = gpucap_track_take(GPUCAP_TRACK_PTR, dptr);
	CUresult r = real(dptr);
	settle_pointer(entry, r);
	return r;
}

CUresult on_mem_free_async(CUresult (*real)(CUdeviceptr, CUstream), CUdeviceptr dptr, CUstream hStream)
{
	struct gpucap_track_entry *entry = gpucap_track_take(GPUCAP_TRACK_PTR, dptr);
	CUresult r = real(dptr, hStream);
	settle_pointer(entry, r);
	return r;
}

/* ---- Virtual memory management ------------------------------------------ */

/* Physical memory is created by cuMemCreate and returned by cuMemRelease;
 * mapping and unmapping cost nothing. Handles imported from another process
 * (cuMemImportFromShareableHandle) are the exporter's memory and are never
 * tracked, so their release returns nothing. */
CUresult on_mem_create(CUresult (*real)(CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *,
                                        unsigned long long),
                       CUmemGenericAllocationHandle *handle, size_t size, const CUmemAllocationProp *prop,
                       unsigned long long flags)
{
	if (!handle || !prop)
		return CUDA_ERROR_INVALID_VALUE;
	struct gpucap_device *dev;
	if (size == 0 || prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE ||
	    gpucap_device_get(prop->location.id, &dev) != CUDA_SUCCESS)
		return real(handle, size, prop, flags);
	struct simple_alloc a = {GPUCAP_TRACK_HANDLE, GPUCAP_KIND_DATA, size, dev, "cuMemCreate"};
	struct gpucap_track_entry *entry;
	CUresult r = gpucap_simple_admit(&a, &entry);
	if (r != CUDA_SUCCESS)
		return r;
	r = real(handle, size, prop, flags);
	gpucap_simple_done(&a, entry, r, r == CUDA_SUCCESS ? *handle : 0);
	return r;
}

CUresult on_mem_release(CUresult (*real)(CUmemGenericAllocationHandle), CUmemGenericAllocationHandle handle)
{
	struct gpucap_track_entry *entry = gpucap_track_take(GPUCAP_TRACK_HANDLE, handle);
	CUresult r = real(handle);
	gpucap_track_settle(entry, r);
	return r;
}

/* ---- Arrays ---------------------------------------------------------------- */

/* Bytes of one element, or of one 4x4 block for block-compressed formats
 * (*block set). Planar video formats are given per luma sample, rounded up
 * to cover their chroma planes. */
static uint64_t format_bytes(CUarray_format format, unsigned int channels, bool *block)
{
	*block = false;
	switch (format) {
	case CU_AD_FORMAT_UNSIGNED_INT8:
	case CU_AD_FORMAT_SIGNED_INT8:
		return channels;
	case CU_AD_FORMAT_UNSIGNED_INT16:
	case CU_AD_FORMAT_SIGNED_INT16:
	case CU_AD_FORMAT_HALF:
		return 2ull * channels;
	case CU_AD_FORMAT_UNSIGNED_INT32:
	case CU_AD_FORMAT_SIGNED_INT32:
	case CU_AD_FORMAT_FLOAT:
		return 4ull * channels;
	case CU_AD_FORMAT_UNORM_INT8X1:
	case CU_AD_FORMAT_SNORM_INT8X1:
		return 1;
	case CU_AD_FORMAT_UNORM_INT8X2:
	case CU_AD_FORMAT_SNORM_INT8X2:
	case CU_AD_FORMAT_UNORM_INT16X1:
	case CU_AD_FORMAT_SNORM_INT16X1:
		return 2;
	case CU_AD_FORMAT_UNORM_INT8X4:
	case CU_AD_FORMAT_SNORM_INT8X4:
	case CU_AD_FORMAT_UNORM_INT16X2:
	case CU_AD_FORMAT_SNORM_INT16X2:
	case CU_AD_FORMAT_UNORM_INT_101010_2:
		return 4;
	case CU_AD_FORMAT_UNORM_INT16X4:
	case CU_AD_FORMAT_SNORM_INT16X4:
		return 8;
	case CU_AD_FORMAT_BC1_UNORM:
	case CU_AD_FORMAT_BC1_UNORM_SRGB:
	case CU_AD_FORMAT_BC4_UNORM:
	case CU_AD_FORMAT_BC4_SNORM:
		*block = true;
		return 8;
	case CU_AD_FORMAT_BC2_UNORM:
	case CU_AD_FORMAT_BC2_UNORM_SRGB:
	case CU_AD_FORMAT_BC3_UNORM:
	case CU_AD_FORMAT_BC3_UNORM_SRGB:
	case CU_AD_FORMAT_BC5_UNORM:
	case CU_AD_FORMAT_BC5_SNORM:
	case CU_AD_FORMAT_BC6H_UF16:
	case CU_AD_FORMAT_BC6H_SF16:
	case CU_AD_FORMAT_BC7_UNORM:
	case CU_AD_FORMAT_BC7_UNORM_SRGB:
		*block = true;
		return 16;
	case CU_AD_FORMAT_NV12: /* 8-bit 4:2:0: 1.5 bytes per sample */
	case CU_AD_FORMAT_NV16: /* 8-bit 4:2:2: 2 */
	case CU_AD_FORMAT_YUY2:
		return 2;
	case CU_AD_FORMAT_P010: /* 16-bit containers, 4:2:0: 3 */
	case CU_AD_FORMAT_P016:
	case CU_AD_FORMAT_Y444_PLANAR8:
	case CU_AD_FORMAT_YUV444_8bit_SemiPlanar:
		return 3;
	case CU_AD_FORMAT_P210: /* 16-bit 4:2:2: 4 */
	case CU_AD_FORMAT_P216:
	case CU_AD_FORMAT_Y210:
	case CU_AD_FORMAT_Y216:
	case CU_AD_FORMAT_AYUV:
	case CU_AD_FORMAT_Y410:
		return 4;
	case CU_AD_FORMAT_Y416:
	case CU_AD_FORMAT_Y444_PLANAR10:
	case CU_AD_FORMAT_YUV444_16bit_SemiPlanar:
		return 8;
	default:
		/* Unknown format: count 16 bytes per channel, more than any
		 * known format needs. */
		return 16ull * (channels ? channels : 1);
	}
}

/* Bytes of one level: width x height x depth elements (a zero height or
 * depth means 1). Layered and cubemap arrays carry their layers/faces in
 * depth. Driver padding and alignment are not counted. */
static uint64_t level_bytes(uint64_t width, uint64_t height, uint64_t depth, CUarray_format format,
                            unsigned int channels)
{
	bool block;
	uint64_t unit = format_bytes(format, channels, &block);
	if (height == 0)
		height = 1;
	if (depth == 0)
		depth = 1;
	if (block) {
		width = (width + 3) / 4;
		height = (height + 3) / 4;
	}
	return gpucap_mul_sat(gpucap_mul_sat(gpucap_mul_sat(width, height), depth), unit);
}

static CUresult array_path(CUresult (*call)(void *), void *ctx, uint64_t bytes, enum gpucap_track_tag tag,
                           const char *api, const void *out_handle, bool *passthrough)
{
	struct gpucap_device *dev;
	*passthrough = false;
	if (bytes == 0 || gpucap_device_current(&dev) != CUDA_SUCCESS) {
		*passthrough = true;
		return CUDA_SUCCESS;
	}
	struct simple_alloc a = {tag, GPUCAP_KIND_DATA, bytes, dev, api};
	struct gpucap_track_entry *entry;
	CUresult r = gpucap_simple_admit(&a, &entry);
	if (r != CUDA_SUCCESS)
		return r;
	r = call(ctx);
	gpucap_simple_done(&a, entry, r,
	                   r == CUDA_SUCCESS ? (uint64_t)(uintptr_t) * (void *const *)out_handle : 0);
	return r;
}

struct array_call {
	union {
		CUresult (*create)(CUarray *, const CUDA_ARRAY_DESCRIPTOR *);
		CUresult (*create3d)(CUarray *, const CUDA_ARRAY3D_DESCRIPTOR *);
		CUresult (*mipmapped)(CUmipmappedArray *, const CUDA_ARRAY3D_DESCRIPTOR *, unsigned int);
	} real;
	void *handle_out;
	const void *desc;
	unsigned int levels;
};

static CUresult call_array_create(void *p)
{
	struct array_call *c = p;
	return c->real.create(c->handle_out, c->desc);
}

static CUresult call_array3d_create(void *p)
{
	struct array_call *c = p;
	return c->real.create3d(c->handle_out, c->desc);
}

static CUresult call_mipmapped_create(void *p)
{
	struct array_call *c = p;
	return c->real.mipmapped(c->handle_out, c->desc, c->levels);
}

CUresult on_array_create(CUresult (*real)(CUarray *, const CUDA_ARRAY_DESCRIPTOR *), CUarray *pHandle,
                         const CUDA_ARRAY_DESCRIPTOR *desc)
{
	if (!pHandle || !desc)
		return CUDA_ERROR_INVALID_VALUE;
	struct array_call c = {{.create = real}, pHandle, desc, 0};
	bool pass;
	uint64_t bytes = level_bytes(desc->Width, desc->Height, 1, desc->Format, desc->NumChannels);
	CUresult r =
	    array_path(call_array_create, &c, bytes, GPUCAP_TRACK_ARRAY, "cuArrayCreate", pHandle, &pass);
	return pass ? real(pHandle, desc) : r;
}

CUresult on_array3d_create(CUresult (*real)(CUarray *, const CUDA_ARRAY3D_DESCRIPTOR *), CUarray *pHandle,
                           const CUDA_ARRAY3D_DESCRIPTOR *desc)
{
	if (!pHandle || !desc)
		return CUDA_ERROR_INVALID_VALUE;
	struct array_call c = {{.create3d = real}, pHandle, desc, 0};
	bool pass;
	uint64_t bytes = level_bytes(desc->Width, desc->Height, desc->Depth, desc->Format, desc->NumChannels);
	CUresult r =
	    array_path(call_array3d_create, &c, bytes, GPUCAP_TRACK_ARRAY, "cuArray3DCreate", pHandle, &pass);
	return pass ? real(pHandle, desc) : r;
}

/* A mipmapped array holds every level: each halves width and height (and
 * depth, unless layered or a cubemap, where depth counts layers or faces),
 * never below 1. */
static uint64_t mipmapped_bytes(const CUDA_ARRAY3D_DESCRIPTOR *d, unsigned int levels)
{
	uint64_t total = 0;
	uint64_t w = d->Width, h = d->Height, z = d->Depth;
	bool depth_is_layers = (d->Flags & (CUDA_ARRAY3D_LAYERED | CUDA_ARRAY3D_CUBEMAP)) != 0;
	for (unsigned int l = 0; l < levels && l < 64; l++) {
		uint64_t b = level_bytes(w, h, z, d->Format, d->NumChannels);
		total = total + b < total ? UINT64_MAX : total + b;
		w = w > 1 ? w / 2 : 1;
		h = h > 1 ? h / 2 : (h ? 1 : 0);
		if (!depth_is_layers)
			z = z > 1 ? z / 2 : (z ? 1 : 0);
	}
	return total;
}

CUresult on_mipmapped_array_create(CUresult (*real)(CUmipmappedArray *, const CUDA_ARRAY3D_DESCRIPTOR *,
                                                    unsigned int),
                                   CUmipmappedArray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR *desc,
                                   unsigned int numMipmapLevels)
{
	if (!pHandle || !desc)
		return CUDA_ERROR_INVALID_VALUE;
	struct array_call c = {{.mipmapped = real}, pHandle, desc, numMipmapLevels};
	bool pass;
	uint64_t bytes = mipmapped_bytes(desc, numMipmapLevels);
	CUresult r = array_path(call_mipmapped_create, &c, bytes, GPUCAP_TRACK_MIPMAP,
	                        "cuMipmappedArrayCreate", pHandle, &pass);
	return pass ? real(pHandle, desc, numMipmapLevels) : r;
}

CUresult on_array_destroy(CUresult (*real)(CUarray), CUarray hArray)
{
	struct gpucap_track_entry *entry = gpucap_track_take(GPUCAP_TRACK_ARRAY, (uint64_t)(uintptr_t)hArray);
	CUresult r = real(hArray);
	gpucap_track_settle(entry, r);
	return r;
}

CUresult on_mipmapped_array_destroy(CUresult (*real)(CUmipmappedArray), CUmipmappedArray hMipmappedArray)
{
	struct gpucap_track_entry *entry =
	    gpucap_track_take(GPUCAP_TRACK_MIPMAP, (uint64_t)(uintptr_t)hMipmappedArray);
	CUresult r = real(hMipmappedArray);
	gpucap_track_settle(entry, r);
	return r;
}

/* ---- Contexts ---------------------------------------------------------------
 *
 * A context costs device memory by itself. It is charged, at cuCtxCreate
 * (every version) and cuGreenCtxCreate until its destroy, and for a primary
 * context from this process's first retain until its last release, at the
 * size measured on the device (gpucap_context_estimate); this process's
 * first context on a device is measured from the driver's own figure and its
 * charge moved to what it really takes.
 *
 * A driver may create a context through another entry point of its own (a
 * cuCtxCreate_v4 that calls the older versions by their exported names, or
 * retains the primary context): a context creation already under way on
 * this thread passes straight to the driver, so one context is charged
 * once, and tracked under its handle once. Without this guard the nested
 * call charged a second (and third) context and tracked the same handle
 * twice: creations were refused with room left, and a destroy gave back only
 * one of the charges. */

static _Thread_local int creating_context;

/* The charge for a created or green context, tracked under its handle. */
static CUresult context_admit(struct simple_alloc *a, struct gpucap_track_entry **entry)
{
	*entry = gpucap_track_new();
	if (!*entry)
		return CUDA_ERROR_OUT_OF_MEMORY;
	/* A ledger move, like any allocation's; context_created ends it
	 * (gpucap_simple_done). The creation's own measurement, on this
	 * thread, subtracts this very charge, so the move does not disturb
	 * it. */
	gpucap_ledger_move_begin();
	CUresult r = gpucap_context_admit(a->dev, &a->bytes, a->api);
	if (r != CUDA_SUCCESS) {
		gpucap_ledger_move_end();
		free(*entry);
		*entry = NULL;
	}
	return r;
}

static void context_created(struct gpucap_device *dev, struct simple_alloc *a,
                            struct gpucap_track_entry *entry, CUresult r, uint64_t key)
{
	if (r == CUDA_SUCCESS) {
		gpucap_reconcile_device_active(dev);
		a->bytes = gpucap_context_measure(dev, a->bytes, CONTEXT_PENDING_TRACKED, key);
	}
	gpucap_simple_done(a, entry, r, key);
	if (r != CUDA_SUCCESS)
		gpucap_context_estimate_settle(a->dev);
}

struct ctx_call {
	union {
		CUresult (*v2)(CUcontext *, unsigned int, CUdevice);
		CUresult (*v3)(CUcontext *, CUexecAffinityParam *, int, unsigned int, CUdevice);
		CUresult (*v4)(CUcontext *, CUctxCreateParams *, unsigned int, CUdevice);
	} real;
	CUcontext *pctx;
	unsigned int flags;
	CUdevice dev;
	CUexecAffinityParam *params;
	int num_params;
	CUctxCreateParams *create_params;
};

static CUresult call_ctx_create_v2(void *p)
{
	struct ctx_call *c = p;
	return c->real.v2(c->pctx, c->flags, c->dev);
}

static CUresult call_ctx_create_v3(void *p)
{
	struct ctx_call *c = p;
	return c->real.v3(c->pctx, c->params, c->num_params, c->flags, c->dev);
}

static CUresult call_ctx_create_v4(void *p)
{
	struct ctx_call *c = p;
	return c->real.v4(c->pctx, c->create_params, c->flags, c->dev);
}

static CUresult ctx_create(CUresult (*call)(void *), struct ctx_call *c)
{
	if (!c->pctx)
		return CUDA_ERROR_INVALID_VALUE;
	struct gpucap_device *dev;
	if (creating_context || gpucap_device_get(c->dev, &dev) != CUDA_SUCCESS)
		return call(c); /* nested in a creation under way, or a bad device the driver reports */
	struct simple_alloc a = {GPUCAP_TRACK_CTX, GPUCAP_KIND_CONTEXT, 0, dev, "cuCtxCreate"};
	struct gpucap_track_entry *entry;
	CUresult r = context_admit(&a, &entry);
	if (r != CUDA_SUCCESS)
		return r;
	creating_context++;
	r = call(c);
	creating_context--;
	context_created(dev, &a, entry, r, r == CUDA_SUCCESS ? (uint64_t)(uintptr_t)*c->pctx : 0);
	return r;
}

CUresult on_ctx_create_v2(CUresult (*real)(CUcontext *, unsigned int, CUdevice), CUcontext *pctx,
                          unsigned int flags, CUdevice dev)
{
	struct ctx_call c = {{.v2 = real}, pctx, flags, dev, NULL, 0, NULL};
	return ctx_create(call_ctx_create_v2, &c);
}

CUresult on_ctx_create_v3(CUresult (*real)(CUcontext *, CUexecAffinityParam *, int, unsigned int, CUdevice),
                          CUcontext *pctx, CUexecAffinityParam *paramsArray, int numParams,
                          unsigned int flags, CUdevice dev)
{
	struct ctx_call c = {{.v3 = real}, pctx, flags, dev, paramsArray, numParams, NULL};
	return ctx_create(call_ctx_create_v3, &c);
}

CUresult on_ctx_create_v4(CUresult (*real)(CUcontext *, CUctxCreateParams *, unsigned int, CUdevice),
                          CUcontext *pctx, CUctxCreateParams *ctxCreateParams, unsigned int flags,
                          CUdevice dev)
{
	struct ctx_call c = {{.v4 = real}, pctx, flags, dev, NULL, 0, ctxCreateParams};
	return ctx_create(call_ctx_create_v4, &c);
}

CUresult on_ctx_destroy(CUresult (*real)(CUcontext), CUcontext ctx)
{
	if (ctx)
		gpucap_context_forget((uint64_t)(uintptr_t)ctx);
	struct gpucap_track_entry *entry = gpucap_track_take(GPUCAP_TRACK_CTX, (uint64_t)(uintptr_t)ctx);
	if (memory_env.observer.context_gone)
		memory_env.observer.context_gone(ctx); /* the SM gate must not drain its streams later */
	CUresult r = real(ctx);
	gpucap_track_settle(entry, r);
	return r;
}

CUresult on_primary_ctx_retain(CUresult (*real)(CUcontext *, CUdevice), CUcontext *pctx, CUdevice ordinal)
{
	if (!pctx)
		return CUDA_ERROR_INVALID_VALUE;
	struct gpucap_device *dev;
	if (creating_context || gpucap_device_get(ordinal, &dev) != CUDA_SUCCESS)
		return real(pctx, ordinal);
	CUresult r = CUDA_SUCCESS;
	pthread_mutex_lock(&dev->primary_lock);
	bool first = dev->primary_refs == 0;
	uint64_t bytes = dev->primary_bytes;
	if (first)
		r = gpucap_context_admit(dev, &bytes, "cuDevicePrimaryCtxRetain");
	if (r == CUDA_SUCCESS) {
		creating_context++;
		r = real(pctx, ordinal);
		creating_context--;
		if (r == CUDA_SUCCESS) {
			dev->primary_refs++;
			if (first) {
				gpucap_reconcile_device_active(dev);
				dev->primary_bytes =
				    gpucap_context_measure(dev, bytes, CONTEXT_PENDING_PRIMARY, 0);
			}
		} else if (first) {
			gpucap_unadmit_index(dev->region_index, GPUCAP_KIND_CONTEXT, bytes);
			gpucap_context_estimate_settle(dev);
		}
	}
	pthread_mutex_unlock(&dev->primary_lock);
	return r;
}

CUresult on_primary_ctx_release(CUresult (*real)(CUdevice), CUdevice ordinal)
{
	struct gpucap_device *dev;
	if (gpucap_device_get(ordinal, &dev) != CUDA_SUCCESS)
		return real(ordinal);
	pthread_mutex_lock(&dev->primary_lock);
	if (dev->primary_refs == 1)
		if (memory_env.observer.device_gone)
			memory_env.observer.device_gone(ordinal); /* the last release destroys the context */
	CUresult r = real(ordinal);
	if (r == CUDA_SUCCESS && dev->primary_refs > 0) {
		dev->primary_refs--;
		if (dev->primary_refs == 0) {
			gpucap_unadmit_index(dev->region_index, GPUCAP_KIND_CONTEXT, dev->primary_bytes);
			dev->primary_bytes = 0;
		}
	}
	pthread_mutex_unlock(&dev->primary_lock);
	return r;
}

/* Green contexts: charged like any context, tracked by handle. */
CUresult on_green_ctx_create(CUresult (*real)(CUgreenCtx *, CUdevResourceDesc, CUdevice, unsigned int),
                             CUgreenCtx *phCtx, CUdevResourceDesc desc, CUdevice ordinal, unsigned int flags)
{
	struct gpucap_device *dev;
	if (!phCtx || creating_context || gpucap_device_get(ordinal, &dev) != CUDA_SUCCESS)
		return real(phCtx, desc, ordinal, flags);
	struct simple_alloc a = {GPUCAP_TRACK_CTX, GPUCAP_KIND_CONTEXT, 0, dev, "cuGreenCtxCreate"};
	struct gpucap_track_entry *entry;
	CUresult r = context_admit(&a, &entry);
	if (r != CUDA_SUCCESS)
		return r;
	creating_context++;
	r = real(phCtx, desc, ordinal, flags);
	creating_context--;
	context_created(dev, &a, entry, r, r == CUDA_SUCCESS ? (uint64_t)(uintptr_t)*phCtx : 0);
	return r;
}

CUresult on_green_ctx_destroy(CUresult (*real)(CUgreenCtx), CUgreenCtx hCtx)
{
	if (hCtx)
		gpucap_context_forget((uint64_t)(uintptr_t)hCtx);
	struct gpucap_track_entry *entry = gpucap_track_take(GPUCAP_TRACK_CTX, (uint64_t)(uintptr_t)hCtx);
	CUresult r = real(hCtx);
	gpucap_track_settle(entry, r);
	return r;
}
