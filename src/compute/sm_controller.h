/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpucap's two threads for compute caps (sm_controller.c): the gate thread,
 * which runs the gates' drains and keeps the armed flag current, and the
 * controller thread, which sets each capped device's duty.
 */
#ifndef GPUCAP_COMPUTE_SM_CONTROLLER_H
#define GPUCAP_COMPUTE_SM_CONTROLLER_H

/* Start the gate thread and the controller thread if they are not running
 * (once per process and fork). Cheap after the first call. */
void gpucap_sm_controller_start(void);

/* Forked child: the threads are the parent's. */
void gpucap_sm_controller_after_fork(void);

#endif
