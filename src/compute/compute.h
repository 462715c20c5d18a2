/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The public interface of src/compute: SM caps. The gate on every launch
 * path, the controller that sets its duty, the work weight, and the node
 * schedule of containers taking turns (docs/compute-caps.md).
 *
 * The interception layer (src/hook) calls in here and nowhere deeper.
 */
#ifndef GPUCAP_COMPUTE_H
#define GPUCAP_COMPUTE_H

#include "config.h"
#include "cuda_abi.h"
#include "gpucap/region.h"

#include <stdatomic.h>
#include <stdbool.h>

/* The region device of a CUDA ordinal and its UUID; false when the device
 * is not charged (the layer above answers it from the memory layer). */
typedef bool (*gpucap_compute_device_fn)(int ordinal, int *region_index, char uuid[GPUCAP_UUID_MAX]);

/* What the compute layer needs to know about the process, given at every
 * initialisation (a forked child initialises again). config stays valid for
 * the life of the process; region is NULL when nothing is shared. */
void gpucap_compute_start(const struct gpucap_config *config, gpucap_region *region,
                          gpucap_compute_device_fn device_of);
/* The region, attached after start-up (the attach at start-up timed out on
 * another process initialising the file): from now on the SM caps it holds
 * apply. Once per process. */
void gpucap_compute_region_arrived(gpucap_region *region);

/* Nonzero: some launch may have to be throttled (or nothing is known yet);
 * launches take the slow path. Starts at 1 so that the first launch looks;
 * the gate thread keeps it current. */
extern atomic_uint gpucap_sm_armed;

static inline bool gpucap_sm_gate_armed(void)
{
	/* Acquire: pairs with the release store that clears or sets the flag
	 * (gate.c); one plain load on x86-64. */
	return __builtin_expect(atomic_load_explicit(&gpucap_sm_armed, memory_order_acquire) != 0, 0);
}

/* The slow path of a launch on hStream, once the library is ready.
 * per_thread: the call came through a _ptsz entry point, where a NULL
 * stream means the per-thread stream. Waits while the device's duty cycle
 * is off (bounded); never fails. Starts gpucap's threads on first use. */
void gpucap_compute_gate(CUstream hStream, bool per_thread);

/* A stream is being destroyed: forget it in every gate, and wait (at most
 * microseconds) for a drain that is recording on it. */
void gpucap_sm_stream_gone(CUstream hStream);

/* A context is being destroyed (or a device's primary context released for
 * the last time): forget its streams in every gate, as for a stream. */
void gpucap_sm_context_gone(CUcontext ctx);
void gpucap_sm_device_gone(int ordinal);

/* Forked child: forget the gates' phases and streams, the schedule handles
 * and gpucap's threads (the child has none); the next launch starts them
 * again. */
void gpucap_compute_after_fork(void);

#endif
