/* The node schedule file: open an arbitrary file image as a tenant, touch
 * the slot and compute the window, as a launching process does. */
#include "fuzz_file.h"

#include <gpucap/schedule.h>

#include <string.h>

#define FUZZ_GPU "GPU-fuzz"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_write_file(GPUCAP_SCHED_FILE_PREFIX FUZZ_GPU, data, size);
	gpucap_sched *sched = NULL;
	char why[512];
	if (gpucap_sched_open(fuzz_dir(), FUZZ_GPU, 7, &sched, why, sizeof(why)) != GPUCAP_OK)
		return 0;
	/* Times from the input too: the window arithmetic must hold for any. */
	uint64_t now = 0;
	memcpy(&now, data, size < sizeof(now) ? size : sizeof(now));
	gpucap_sched_touch(sched, 300000, 300000, now);
	struct gpucap_sched_window window;
	gpucap_sched_window(sched, 300000, now, &window);
	uint64_t until = 0;
	gpucap_sched_next_open(&window, now, &until);
	gpucap_sched_close(sched);
	return 0;
}
