/* SPDX-License-Identifier: Apache-2.0 */
/* The node schedule's reader of other tenants' files: the input is a peer
 * tenant's file in the node directory, the one thing another container
 * writes. This process opens its own tenant's schedule, touches it,
 * refreshes (which reads the peer with pread and lays the tenants out) and
 * computes its window, as a launching process does. */
#include "fuzz_schedule.h"
#include "fuzz_file.h"

#include <gpucap/schedule.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Eight bytes of the input from offset at (zeros past its end). */
static uint64_t input_word(const uint8_t *data, size_t size, size_t at)
{
	uint64_t word = 0;
	if (at < size)
		memcpy(&word, data + at, size - at < sizeof(word) ? size - at : sizeof(word));
	return word;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_write_file(FUZZ_SCHED_PEER_NAME, data, size);
	gpucap_sched *sched = NULL;
	char why[512];
	if (gpucap_sched_open(fuzz_dir(), FUZZ_SCHED_GPU, FUZZ_SCHED_OWN_TENANT, &sched, why, sizeof(why)) !=
	    GPUCAP_OK)
		abort(); /* the own file is the harness's: it must open */
	uint64_t now = FUZZ_SCHED_NOW_NS;
	gpucap_sched_touch(sched, 300000, 300000, now - 1000000);
	gpucap_sched_refresh(sched, now, why, sizeof(why));
	struct gpucap_sched_window window;
	gpucap_sched_window(sched, 300000, now, &window);
	uint64_t until = 0;
	gpucap_sched_next_open(&window, now, &until);
	/* The gate's arithmetic must hold at any time under this window: the
	 * header's creation time is a free word of the peer's. */
	gpucap_sched_next_open(&window, input_word(data, size, 32), &until);
	gpucap_sched_close(sched);
	return 0;
}
