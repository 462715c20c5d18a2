/* SPDX-License-Identifier: Apache-2.0 */
/* Device list shared by the fake libcuda and the fake NVML: physical
 * devices from FAKECUDA_DEVICES, and the CUDA ordinal order that
 * CUDA_VISIBLE_DEVICES gives them. */
#ifndef FAKE_COMMON_H
#define FAKE_COMMON_H

#include <stdint.h>

#define FAKE_MAX_DEVICES 16

/* Parse FAKECUDA_DEVICES (once per call; cheap). */
void fake_devices_load(void);
int fake_device_count(void);
const char *fake_device_uuid(int physical);                /* "GPU-..." or "MIG-..." */
const unsigned char *fake_device_uuid_bytes(int physical); /* 16 bytes */
/* Fill order[] with physical indices in CUDA ordinal order; returns count. */
int fake_visible_order(int *order, int max);

#endif
