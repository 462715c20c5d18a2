/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The old design, as the baseline every benchmark compares against: one
 * struct in a MAP_SHARED file mapping, guarded by a single process-shared
 * POSIX semaphore. Every reserve and release takes the semaphore; attach
 * sweeps all process slots, probing each recorded PID with kill(pid, 0).
 *
 * Kept minimal but faithful: the costs that matter (one global lock shared
 * by all processes and threads, an O(slots) PID sweep on attach) are all
 * here. Where the old code did more work (searching its slot by PID on every
 * update, summing all slots to check the limit) this version does less, so
 * the baseline numbers are, if anything, flattering to the old design.
 */
#ifndef GPUCAP_BENCH_SEM_REGION_H
#define GPUCAP_BENCH_SEM_REGION_H

#include <stdbool.h>
#include <stdint.h>

#define SEM_REGION_SLOTS   1024
#define SEM_REGION_DEVICES 16

typedef struct sem_region sem_region;

/* Open or create the file, initialise it once (under a file lock), then under
 * the semaphore: sweep the slots for dead PIDs, take a slot, and register the
 * device. Returns the device index through *device. */
bool sem_region_attach(const char *path, const char *uuid, uint64_t limit_bytes, sem_region **out,
                       int *device);

/* Charge bytes to this process's slot if the device total stays within its
 * limit; false if it would not. */
bool sem_region_reserve(sem_region *region, int device, uint64_t bytes);
void sem_region_release(sem_region *region, int device, uint64_t bytes);

/* Read under the semaphore: the device total and this process's slot usage. */
uint64_t sem_region_charged(sem_region *region, int device);
uint64_t sem_region_slot_used(sem_region *region, int device);

/* Free the slot (returning its charges) and unmap. */
void sem_region_detach(sem_region *region);

#endif
