/* SPDX-License-Identifier: Apache-2.0 */
/* The work of a launch, learnt alone (sm_launch_cost.h). */
#include "sm_launch_cost.h"

#include "gpucap/region.h"

void sm_launch_cost_learn(struct sm_launch_cost *c, uint64_t busy_ns, uint64_t launches)
{
	if (launches == 0)
		return;
	c->busy_ns = c->busy_ns * SM_COST_DECAY_PPM / GPUCAP_SM_PPM + busy_ns;
	c->milli_launches = c->milli_launches * SM_COST_DECAY_PPM / GPUCAP_SM_PPM + launches * SM_COST_MILLI;
	if (c->windows < SM_COST_WINDOWS)
		c->windows++;
}

bool sm_launch_cost_known(const struct sm_launch_cost *c)
{
	return c->windows >= SM_COST_WINDOWS && c->milli_launches > 0;
}

uint32_t sm_launch_cost_share(const struct sm_launch_cost *c, uint64_t launches, uint64_t window_ns)
{
	if (!sm_launch_cost_known(c) || window_ns < 1000u)
		return 0;
	/* Picoseconds per launch: the cost of a launch of a few microseconds
	 * keeps its digits. */
	uint64_t cost_ps = c->busy_ns * (1000u * SM_COST_MILLI) / c->milli_launches;
	uint64_t window_us = window_ns / 1000u;
	if (cost_ps && launches > UINT64_MAX / cost_ps)
		return GPUCAP_SM_PPM;
	/* ps of work over us of window: ppm. */
	uint64_t ppm = launches * cost_ps / window_us;
	return ppm > GPUCAP_SM_PPM ? GPUCAP_SM_PPM : (uint32_t)ppm;
}
