/* The two renderings of a region snapshot for "gpucap status". */
#ifndef GPUCAP_CLI_STATUS_RENDER_H
#define GPUCAP_CLI_STATUS_RENDER_H

#include <gpucap/region.h>

#include <stdbool.h>
#include <stdio.h>

/* Aligned tables for people. False when memory runs out. */
bool status_render_text(const struct gpucap_snapshot *snapshot, FILE *out);

/* One JSON object; the schema is documented in docs/cli.md. False on a
 * writer misuse (a bug). */
bool status_render_json(const struct gpucap_snapshot *snapshot, FILE *out);

#endif
