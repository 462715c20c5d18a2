/* /etc/gpucap/limits.conf: parse arbitrary text, then resolve it against a
 * fixed environment as the library does at start-up. */
#include "limits_file.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void ignore(void *ctx, enum gpucap_limits_level level, const char *message)
{
	(void)ctx;
	(void)level;
	(void)message;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct gpucap_limits_file file;
	memset(&file, 0, sizeof(file));
	gpucap_limits_file_parse((const char *)data, size, "/etc/gpucap/limits.conf", &file);
	static char *const env[] = {"CUDA_DEVICE_MEMORY_LIMIT=8g", "GPUCAP_MEMORY_LIMIT_1=1g", NULL};
	static struct gpucap_limit_choice choice[GPUCAP_LIMITS_DEVICES];
	gpucap_limits_resolve(env, &file, choice, ignore, NULL);
	return 0;
}
