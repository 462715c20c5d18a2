/* SPDX-License-Identifier: Apache-2.0 */
/* gpucap top: the pieces its files share. top.c reads the options, loads a
 * frame and runs the loop (keys, redraw); top_scan.c finds the region files
 * below a directory; top_text.c draws a frame for a terminal or a pipe. */
#ifndef GPUCAP_CLI_TOP_H
#define GPUCAP_CLI_TOP_H

#include <gpucap/region.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* How the process rows are ordered. */
enum top_sort {
	TOP_SORT_MEMORY,  /* most memory first (the default) */
	TOP_SORT_PID,     /* ascending */
	TOP_SORT_COMMAND, /* by name */
	TOP_SORT_KERNEL,  /* most recent kernel launch first */
	TOP_SORT_COUNT,
};

/* The --sort names, in enum order. */
extern const char *const top_sort_names[TOP_SORT_COUNT];

/* One region of a frame: attached and copied, or why not. */
struct top_region {
	char path[4096];
	const char *label;                /* path below --dir (into path); the path itself with --file */
	struct gpucap_snapshot *snapshot; /* NULL: see error */
	char error[1024];
};

struct top_frame {
	uint64_t time_ns;
	struct top_region *regions;
	size_t count;
	size_t not_regions; /* --dir: files that are not gpucap regions */
	bool truncated;     /* --dir: the walk stopped at its depth or file bound */
};

/* What the text view needs besides the frame. */
struct top_view {
	const char *dir; /* --dir, or NULL */
	double interval; /* seconds between frames */
	bool live;       /* refreshing (not --once) */
	bool keys;       /* q and s are read from the terminal */
	enum top_sort sort;
	size_t width;  /* columns to fit; 0: no limit */
	size_t height; /* rows to fit; 0: no limit */
};

/* ---- top_scan.c ---------------------------------------------------------- */

/* The bounds of a walk below --dir: a node directory has a level or two of
 * per-container folders; these leave room for any layout and stop a walk
 * into a wrong, huge tree. */
#define TOP_SCAN_MAX_DEPTH 8
#define TOP_SCAN_MAX_FILES 4096

struct top_scan {
	char **paths; /* regular files, sorted */
	size_t count;
	bool truncated; /* a bound was hit: some files were not looked at */
};

/* Every regular file below dir (audit logs left out), depth first, sorted
 * by path. Symbolic links are neither followed nor read; directories that
 * cannot be opened below dir are skipped. Returns false with errno set when
 * dir itself cannot be read or memory runs out. */
bool top_scan_dir(const char *dir, struct top_scan *scan);
void top_scan_free(struct top_scan *scan);

/* ---- top_text.c ---------------------------------------------------------- */

/* Sort the process rows of every snapshot in the frame by view->sort. */
void top_sort_processes(struct top_frame *frame, enum top_sort sort);

/* Draw the frame: a per-GPU summary (with --dir), then each region. False
 * when memory runs out. */
bool top_render_text(const struct top_frame *frame, const struct top_view *view, FILE *out);

/* In use over every device, for a process. */
uint64_t top_process_memory(const struct gpucap_snapshot *s, const struct gpucap_process_view *p);

#endif
