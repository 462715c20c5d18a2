/* SPDX-License-Identifier: Apache-2.0 */
/* /etc/gpucap/limits.conf: parse arbitrary text, then resolve it against a
 * fixed environment as the library does at start-up, and as gpucap doctor
 * does with a --file flag. */
#include "policy.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Static: both are kilobytes, too large for a fuzzer's stack. */
	static struct gpucap_limits_file file;
	static struct gpucap_policy policy;
	memset(&file, 0, sizeof(file));
	snprintf(file.path, sizeof(file.path), "%s", GPUCAP_LIMITS_FILE_DEFAULT);
	file.origin = "default";
	gpucap_limits_file_parse((const char *)data, size, file.path, &file);

	/* Per-device and all-device limits, an SM share and a region other than
	 * the file's: every rule where the file meets the environment. */
	static char *const env[] = {"CUDA_DEVICE_MEMORY_LIMIT=8g", "GPUCAP_MEMORY_LIMIT_1=1g",
	                            "CUDA_DEVICE_SM_LIMIT_2=40",   "GPUCAP_REGION=/tmp/gpucap-fuzz-region",
	                            "GPUCAP_LOG_LEVEL=2",          NULL};
	struct gpucap_policy_input in;
	memset(&in, 0, sizeof(in));
	in.env = env;
	in.file = &file;
	gpucap_policy_resolve(&in, &policy);
	char hint[512];
	gpucap_policy_region_hint(&policy, hint, sizeof(hint));

	/* A command's --file beats every other region. */
	in.region_flag = "/tmp/gpucap-fuzz-flag";
	in.secure = true;
	gpucap_policy_resolve(&in, &policy);
	return 0;
}
