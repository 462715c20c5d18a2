/* SPDX-License-Identifier: Apache-2.0 */
/* When a process that could not attach (another process was initialising
 * the file for too long) tries again: a pure schedule on the caller's clock,
 * so that the retry stays off the allocation path and is testable. The
 * words are only touched through __atomic builtins (the public struct is
 * plain, for C++ callers); relaxed, as they guard no other data. */
#include "gpucap/region.h"

#define RETRY_FIRST_NS UINT64_C(1000000000)
#define RETRY_MAX_NS   (UINT64_C(60) * RETRY_FIRST_NS)

bool gpucap_attach_retry_due(struct gpucap_attach_retry *retry, uint64_t now_ns)
{
	uint32_t tries = __atomic_load_n(&retry->tries, __ATOMIC_RELAXED);
	if (tries >= GPUCAP_ATTACH_RETRIES)
		return false;
	uint64_t due = __atomic_load_n(&retry->next_ns, __ATOMIC_RELAXED);
	if (due == 0) {
		/* The first ask starts the clock: the attach just failed. */
		__atomic_compare_exchange_n(&retry->next_ns, &due, now_ns + RETRY_FIRST_NS, false,
		                            __ATOMIC_RELAXED, __ATOMIC_RELAXED);
		return false;
	}
	if (now_ns < due)
		return false;
	uint64_t delay = RETRY_FIRST_NS << (tries < 6 ? tries + 1 : 6);
	if (delay > RETRY_MAX_NS)
		delay = RETRY_MAX_NS;
	/* One caller per due time: the CAS elects it. */
	if (!__atomic_compare_exchange_n(&retry->next_ns, &due, now_ns + delay, false, __ATOMIC_RELAXED,
	                                 __ATOMIC_RELAXED))
		return false;
	__atomic_fetch_add(&retry->tries, 1, __ATOMIC_RELAXED);
	return true;
}
