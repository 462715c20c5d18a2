/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers of the node schedule's unit tests: a node directory per test, the
 * file format as a hostile writer sees it (src/schedule/sched_format.h), and
 * handles that settle on a layout. Functions named *_raw never assert: they
 * are for forked children. */
#ifndef GPUCAP_SCHED_TEST_H
#define GPUCAP_SCHED_TEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gpucap/schedule.h"
#include "sched_format.h"
#include "test_support.h"

#define MS  UINT64_C(1000000)
#define SEC UINT64_C(1000000000)
/* A "now" far from 0, as CLOCK_MONOTONIC is on a running machine; a whole
 * number of periods, so window offsets read directly off it. */
#define T0              (UINT64_C(5000) * SEC)
#define PERIOD          GPUCAP_SCHED_PERIOD_NS
#define SENTINEL_HANDLE ((gpucap_sched *)(uintptr_t)0x1)

/* A fresh directory named name in the scratch directory. */
const char *node_dir(const char *name);
const char *tenant_name(const char *uuid, uint64_t tenant);
const char *tenant_path(const char *dir, const char *uuid, uint64_t tenant);
/* Names in dir other than . and .. */
int dir_entries(const char *dir);

gpucap_sched *sched_open_ok(const char *dir, const char *uuid, uint64_t tenant);
void expect_open_fails(const char *dir, const char *uuid, uint64_t tenant, gpucap_status want,
                       const char *needle);
/* Refresh every handle twice, so each sees the others' latest records. */
void settle(gpucap_sched **handles, int n, uint64_t now_ns);
struct gpucap_sched_window window_of(const gpucap_sched *s, uint32_t duty_ppm, uint64_t now_ns);

void raw_pread(const char *path, off_t offset, void *data, size_t len);
void raw_pwrite(const char *path, off_t offset, const void *data, size_t len);
struct sched_record record_read(const char *dir, const char *uuid, uint64_t tenant, unsigned index);
void record_write(const char *dir, const char *uuid, uint64_t tenant, unsigned index,
                  const struct sched_record *r);
/* Set path's mtime seconds before now. */
void set_mtime_ago(const char *path, int seconds);
/* A file of len zero bytes at path with mode. */
void make_file(const char *path, size_t len, mode_t mode);

/* A whole, valid file for tenant with one record at duty_ppm stamped
 * active_ns (0: idle), as a peer (or an attacker who knows the format)
 * writes it. 0 or -errno. */
int forge_peer_raw(const char *dir, const char *uuid, uint64_t tenant, uint32_t duty_ppm, uint64_t active_ns);
void forge_peer(const char *dir, const char *uuid, uint64_t tenant, uint32_t duty_ppm, uint64_t active_ns);
void remove_peer(const char *dir, const char *uuid, uint64_t tenant);

#endif
