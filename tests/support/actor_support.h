/* SPDX-License-Identifier: Apache-2.0 */
/* What the stand-ins for a limited process (region_actor for the CLI tests,
 * exporter_actor for the exporter tests) do alike. A failing step prints one
 * line, "PROGRAM: WHAT: DETAIL", and the actor exits 1, which is how the
 * tests learn why it did not get ready. */
#ifndef GPUCAP_ACTOR_SUPPORT_H
#define GPUCAP_ACTOR_SUPPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "gpucap/region.h"

/* Prints the error line; returns 1, the actor's exit code. */
int actor_fail(const char *what, const char *detail);

/* The "reserve KIND BYTES" step: charges BYTES of KIND ("context",
 * "module", "data" or "driver") to device. parse_bytes reads BYTES as the
 * actor's tests write it. Returns 0, or the exit code after the error line. */
int actor_reserve(gpucap_region *region, int device, const char *kind_text, const char *bytes_text,
                  bool (*parse_bytes)(const char *, uint64_t *));

/* Attaches to path and claims a slot for this process under comm (NULL:
 * none); NULL after printing the error line. */
gpucap_region *actor_attach_claim(const char *path, const char *comm);

/* The "share DELIVERED ASKED" step: takes the device's controller lease for
 * a minute and publishes, as the library's controller does, the SM share
 * delivered and the share asked for (both in ppm), measured as source says.
 * Returns 0, or the exit code after the error line. */
int actor_publish_share(gpucap_region *region, int device, const char *delivered_text, const char *asked_text,
                        gpucap_sm_source source);

/* Prints "ready SLOT" and waits to be killed. */
_Noreturn void actor_ready(gpucap_region *region);

#endif
