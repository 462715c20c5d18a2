/* SPDX-License-Identifier: Apache-2.0 */
/* Attaching to a region: opening the file safely, creating and initialising
 * it exactly once, validating everything read from it, and detaching. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crash_point.h"
#include "leased_file.h"
#include "platform.h"
#include "region_internal.h"

#define DEFAULT_INIT_TIMEOUT_MS 2000u

__attribute__((format(printf, 3, 4))) static void say(char *err, size_t err_len, const char *fmt, ...)
{
	if (!err || err_len == 0)
		return;
	va_list args;
	va_start(args, fmt);
	vsnprintf(err, err_len, fmt, args);
	va_end(args);
}

/* Record a refusal: its problem and a line naming the file and what is
 * wrong, without the hint (the caller adds it: gpucap_region_problem_hint). */
__attribute__((format(printf, 3, 4))) static void fail(struct gpucap_region_error *e,
                                                       gpucap_region_problem problem, const char *fmt, ...)
{
	e->problem = problem;
	va_list args;
	va_start(args, fmt);
	vsnprintf(e->detail, sizeof(e->detail), fmt, args);
	va_end(args);
}

static uint64_t layout_checksum(const struct region_header *h)
{
	/* Plain copies of the immutable fields, in a fixed order. */
	uint64_t fields[] = {h->format_version,    h->layout_size,    h->header_size,
	                     h->device_capacity,   h->slot_capacity,  h->lanes_per_slot,
	                     h->device_entry_size, h->slot_size,      h->lane_size,
	                     h->lane_device_size,  h->devices_offset, h->slot_states_offset,
	                     h->slots_offset,      h->created_unix_ns};
	uint64_t hash = UINT64_C(1469598103934665603);
	const unsigned char *bytes = (const unsigned char *)fields;
	for (size_t i = 0; i < sizeof(fields); i++) {
		hash ^= bytes[i];
		hash *= UINT64_C(1099511628211);
	}
	return hash;
}

static void fill_header(struct region_header *h, const struct region_geometry *g)
{
	h->format_version = GPUCAP_REGION_FORMAT_VERSION;
	h->layout_size = g->layout_size;
	h->header_size = REGION_HEADER_SIZE;
	h->device_capacity = g->device_capacity;
	h->slot_capacity = g->slot_capacity;
	h->lanes_per_slot = g->lanes;
	h->device_entry_size = sizeof(struct device_entry);
	h->slot_size = g->slot_size;
	h->lane_size = g->lane_size;
	h->lane_device_size = sizeof(struct lane_device);
	h->devices_offset = g->devices_offset;
	h->slot_states_offset = g->slot_states_offset;
	h->slots_offset = g->slots_offset;
	h->created_unix_ns = gpucap_clock_realtime_ns();
	h->layout_checksum = layout_checksum(h);
}

/* Check a header copy read from the file. Returns the geometry it implies. */
static gpucap_status validate_header(const struct region_header *h, uint64_t file_size, const char *path,
                                     struct region_geometry *geo, struct gpucap_region_error *e)
{
	if (h->format_version != GPUCAP_REGION_FORMAT_VERSION) {
		fail(e, GPUCAP_PROBLEM_VERSION,
		     "region %s has format version %u but this gpucap reads version %u", path,
		     h->format_version, GPUCAP_REGION_FORMAT_VERSION);
		return GPUCAP_ERR_VERSION;
	}
	const char *bad = NULL;
	if (h->device_capacity == 0 || h->device_capacity > REGION_MAX_DEVICES)
		bad = "device capacity";
	else if (h->slot_capacity == 0 || h->slot_capacity > REGION_MAX_SLOTS)
		bad = "slot capacity";
	else if (h->lanes_per_slot != REGION_LANES)
		bad = "lanes per slot";
	else if (h->header_size != REGION_HEADER_SIZE)
		bad = "header size";
	if (!bad) {
		*geo = region_geometry_for(h->device_capacity, h->slot_capacity);
		if (h->device_entry_size != sizeof(struct device_entry) || h->slot_size != geo->slot_size ||
		    h->lane_size != geo->lane_size || h->lane_device_size != sizeof(struct lane_device))
			bad = "record sizes";
		else if (h->devices_offset != geo->devices_offset ||
		         h->slot_states_offset != geo->slot_states_offset ||
		         h->slots_offset != geo->slots_offset)
			bad = "table offsets";
		else if (h->layout_size != geo->layout_size)
			bad = "layout size";
		else if (h->layout_checksum != layout_checksum(h))
			bad = "header checksum";
	}
	if (bad) {
		fail(e, GPUCAP_PROBLEM_CORRUPT, "region %s is corrupt (its %s is invalid)", path, bad);
		return GPUCAP_ERR_CORRUPT;
	}
	if (file_size != geo->layout_size) {
		fail(e, GPUCAP_PROBLEM_TRUNCATED,
		     "region %s is %llu bytes but its header says %llu: it was truncated or modified", path,
		     (unsigned long long)file_size, (unsigned long long)geo->layout_size);
		return GPUCAP_ERR_CORRUPT;
	}
	return GPUCAP_OK;
}

static gpucap_status open_error(int error, const char *path, bool writable, struct gpucap_region_error *e)
{
	switch (error) {
	case ELOOP:
		fail(e, GPUCAP_PROBLEM_SYMLINK,
		     "region %s is a symbolic link; gpucap does not follow links there", path);
		return GPUCAP_ERR_PERMISSION;
	case ENOENT:
		fail(e, writable ? GPUCAP_PROBLEM_NO_DIRECTORY : GPUCAP_PROBLEM_MISSING,
		     writable ? "cannot create region %s: its directory does not exist"
		              : "region %s does not exist",
		     path);
		return GPUCAP_ERR_IO;
	case EACCES:
	case EPERM:
		fail(e, GPUCAP_PROBLEM_ACCESS, "cannot open region %s%s: permission denied", path,
		     writable ? " for writing" : "");
		return GPUCAP_ERR_PERMISSION;
	case EROFS:
		fail(e, GPUCAP_PROBLEM_READ_ONLY, "cannot create region %s: read-only file system", path);
		return GPUCAP_ERR_IO;
	case ENOSPC:
	case EDQUOT:
		fail(e, GPUCAP_PROBLEM_NO_SPACE, "cannot create region %s: no space left on the device",
		     path);
		return GPUCAP_ERR_IO;
	case EISDIR:
		fail(e, GPUCAP_PROBLEM_NOT_REGULAR, "region %s is a directory", path);
		return GPUCAP_ERR_IO;
	default:
		fail(e, GPUCAP_PROBLEM_SYSTEM, "cannot open region %s: %s", path, strerror(error));
		return GPUCAP_ERR_IO;
	}
}

/* The one-line message for a file the safe open refused. */
static gpucap_status file_refused(gpucap_file_check check, int error, const struct gpucap_file_info *info,
                                  const char *path, bool writable, struct gpucap_region_error *e)
{
	switch (check) {
	case GPUCAP_FILE_OK:
		return GPUCAP_OK;
	case GPUCAP_FILE_OPEN_FAILED:
		return open_error(error, path, writable, e);
	case GPUCAP_FILE_SYMLINK:
		return open_error(ELOOP, path, writable, e);
	case GPUCAP_FILE_NOT_REGULAR:
		fail(e, GPUCAP_PROBLEM_NOT_REGULAR, "region %s is not a regular file", path);
		return GPUCAP_ERR_PERMISSION;
	case GPUCAP_FILE_LINKS:
		fail(e, GPUCAP_PROBLEM_LINKS,
		     "region %s has %u names (hard links); gpucap uses only a file with one name", path,
		     info->links);
		return GPUCAP_ERR_PERMISSION;
	case GPUCAP_FILE_OWNER:
		fail(e, GPUCAP_PROBLEM_OWNER, "region %s is owned by uid %u, not by you (uid %u)", path,
		     info->uid, gpucap_platform_euid());
		return GPUCAP_ERR_PERMISSION;
	}
	return GPUCAP_ERR_IO;
}

static bool all_zero(const void *data, size_t len)
{
	const unsigned char *bytes = data;
	for (size_t i = 0; i < len; i++)
		if (bytes[i])
			return false;
	return true;
}

/* Called with the init lease held and the file not ready. */
static gpucap_status initialise(int fd, const struct gpucap_region_options *o, const char *path,
                                struct gpucap_region_error *e)
{
	uint32_t devices = o->device_capacity ? o->device_capacity : REGION_DEFAULT_DEVICES;
	uint32_t slots = o->slot_capacity ? o->slot_capacity : REGION_DEFAULT_SLOTS;
	if (devices > REGION_MAX_DEVICES || slots > REGION_MAX_SLOTS) {
		fail(e, GPUCAP_PROBLEM_CAPACITY,
		     "region %s: capacity too large (at most %u devices and %u slots)", path,
		     REGION_MAX_DEVICES, REGION_MAX_SLOTS);
		return GPUCAP_ERR_INVALID;
	}
	struct region_geometry geo = region_geometry_for(devices, slots);
	GPUCAP_CRASH_POINT("init.lease_taken");
	int rc = gpucap_platform_reset_file(fd, geo.layout_size);
	if (rc != 0) {
		if (rc == -ENOSPC || rc == -EDQUOT || rc == -EFBIG) {
			fail(e, GPUCAP_PROBLEM_NO_SPACE,
			     "cannot create region %s: no space for its %llu bytes", path,
			     (unsigned long long)geo.layout_size);
			return GPUCAP_ERR_IO;
		}
		fail(e, GPUCAP_PROBLEM_SYSTEM, "cannot size region %s: %s", path, strerror(-rc));
		return GPUCAP_ERR_IO;
	}
	int map_error = 0;
	_Atomic uint32_t truncated = 0;
	uint8_t *base = gpucap_map_guarded(fd, geo.layout_size, true, &truncated, &map_error);
	if (!base) {
		fail(e, GPUCAP_PROBLEM_SYSTEM, "cannot map region %s: %s", path,
		     map_error == ENOSPC ? "too many regions mapped in this process" : strerror(map_error));
		return GPUCAP_ERR_IO;
	}
	GPUCAP_CRASH_POINT("init.file_sized");
	struct region_header *h = (struct region_header *)base;
	atomic_store_explicit(&h->magic, REGION_MAGIC, memory_order_relaxed);
	/* Not ready yet (the first store of R1's pair; READY below is the one
	 * readers act on): a peer that reads this state (look_at_header,
	 * through pread of the same page) waits for the init lease. */
	atomic_store_explicit(&h->state, REGION_INITIALIZING, memory_order_release);
	GPUCAP_CRASH_POINT("init.magic_written");
	fill_header(h, &geo);
	GPUCAP_CRASH_POINT("init.header_filled");
	/* The tables are all zeros: free devices and free slots. R1: the
	 * header fields above are complete before READY; an attacher reads READY
	 * (pread after the init lease is dropped, which orders it) and then
	 * validates the mapped header again before any use (map_ready). */
	atomic_store_explicit(&h->state, REGION_READY, memory_order_release);
	GPUCAP_CRASH_POINT("init.ready");
	gpucap_platform_unmap(base, geo.layout_size);
	if (atomic_load(&truncated)) {
		fail(e, GPUCAP_PROBLEM_TRUNCATED,
		     "region %s was truncated by another process while it was being created", path);
		return GPUCAP_ERR_CORRUPT;
	}
	gpucap_platform_chmod(fd, o->group_shared ? 0660 : 0600);
	return GPUCAP_OK;
}

enum header_verdict { HEADER_READY, HEADER_NEEDS_INIT, HEADER_FOREIGN, HEADER_TRUNCATED };

static enum header_verdict look_at_header(int fd, uint64_t size, struct region_header *copy)
{
	memset(copy, 0, sizeof(*copy));
	if (size == 0)
		return HEADER_NEEDS_INIT;
	if (size < sizeof(*copy))
		return HEADER_TRUNCATED;
	if (gpucap_platform_pread(fd, copy, sizeof(*copy), 0) != (ssize_t)sizeof(*copy))
		return HEADER_TRUNCATED;
	uint64_t magic = atomic_load_explicit(&copy->magic, memory_order_relaxed);
	if (magic == 0 && all_zero(copy, sizeof(*copy)))
		return HEADER_NEEDS_INIT; /* an initialiser died before writing */
	if (magic != REGION_MAGIC)
		return HEADER_FOREIGN;
	uint32_t state = atomic_load_explicit(&copy->state, memory_order_relaxed);
	return state == REGION_READY ? HEADER_READY : HEADER_NEEDS_INIT;
}

static gpucap_status map_ready(struct gpucap_region *r, const struct region_header *copy, uint64_t size,
                               struct gpucap_region_error *e)
{
	struct region_geometry geo;
	gpucap_status status = validate_header(copy, size, r->path, &geo, e);
	if (status != GPUCAP_OK)
		return status;
	int map_error = 0;
	r->base = gpucap_map_guarded(r->fd, geo.layout_size, !r->observer, &r->failed, &map_error);
	if (!r->base) {
		fail(e, GPUCAP_PROBLEM_SYSTEM, "cannot map region %s: %s", r->path,
		     map_error == ENOSPC ? "too many regions mapped in this process" : strerror(map_error));
		return GPUCAP_ERR_IO;
	}
	r->map_size = geo.layout_size;
	r->geo = geo;
	r->header = (struct region_header *)r->base;
	GPUCAP_CRASH_POINT("attach.mapped");
	/* Validate the mapped header too: the file may have changed since. */
	struct region_geometry mapped;
	status = validate_header(r->header, size, r->path, &mapped, e);
	if (region_failed(r)) {
		fail(e, GPUCAP_PROBLEM_TRUNCATED, "region %s was truncated while it was being attached",
		     r->path);
		return GPUCAP_ERR_CORRUPT;
	}
	return status;
}

void region_check_file(struct gpucap_region *r)
{
	if (region_failed(r))
		return;
	struct gpucap_file_info info;
	/* A file cut and grown back to its size no longer holds our magic. */
	if (gpucap_platform_fstat(r->fd, &info) != 0 || info.size != r->map_size ||
	    atomic_load_explicit(&r->header->magic, memory_order_relaxed) != REGION_MAGIC ||
	    atomic_load_explicit(&r->header->state, memory_order_relaxed) != REGION_READY)
		atomic_store_explicit(&r->failed, 1, memory_order_relaxed);
}

bool gpucap_region_failed(const gpucap_region *r, char *err, size_t err_len)
{
	if (!r || !region_failed(r))
		return false;
	say(err, err_len,
	    "gpucap: region %s was truncated or replaced while this process used it; failing closed (GPU memory allocations are refused): stop the processes using it and remove the file",
	    r->path);
	return true;
}

static gpucap_status attach_loop(struct gpucap_region *r, const struct gpucap_region_options *o,
                                 struct gpucap_file_info info, struct gpucap_region_error *e)
{
	uint32_t timeout_ms = o->init_timeout_ms ? o->init_timeout_ms : DEFAULT_INIT_TIMEOUT_MS;
	r->claim_wait_ms = timeout_ms;
	uint64_t deadline = gpucap_clock_monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
	uint64_t backoff_ns = 20000;
	int idle_looks = 0;
	for (bool first = true;; first = false) {
		int rc = first ? 0 : gpucap_platform_fstat(r->fd, &info);
		if (rc != 0)
			return open_error(-rc, r->path, !r->observer, e);
		struct region_header copy;
		enum header_verdict verdict = look_at_header(r->fd, info.size, &copy);
		/* An initialiser may be half way: what looks foreign or truncated
		 * is only judged once nobody holds the init lease. */
		if ((verdict == HEADER_FOREIGN || verdict == HEADER_TRUNCATED) &&
		    gpucap_lease_probe(r->fd, LEASE_INIT) == 1)
			verdict = HEADER_NEEDS_INIT;
		switch (verdict) {
		case HEADER_READY:
			return map_ready(r, &copy, info.size, e);
		case HEADER_FOREIGN:
			if ((atomic_load_explicit(&copy.magic, memory_order_relaxed) &
			     UINT64_C(0x0000ffffffffffff)) == (REGION_MAGIC & UINT64_C(0x0000ffffffffffff))) {
				fail(e, GPUCAP_PROBLEM_VERSION,
				     "region %s was written by another gpucap format", r->path);
				return GPUCAP_ERR_VERSION;
			}
			fail(e, GPUCAP_PROBLEM_FOREIGN,
			     "%s is not a gpucap region (unknown contents); refusing to overwrite it",
			     r->path);
			return GPUCAP_ERR_CORRUPT;
		case HEADER_TRUNCATED:
			fail(e, GPUCAP_PROBLEM_TRUNCATED, "region %s is truncated (%llu bytes)", r->path,
			     (unsigned long long)info.size);
			return GPUCAP_ERR_CORRUPT;
		case HEADER_NEEDS_INIT:
			break;
		}
		if (r->observer || o->existing_only) {
			/* Readers and tools that act on regions they found never
			 * initialise one: they wait only for an initialiser that
			 * holds the init lease now. */
			/* Look twice: an initialiser may have finished between
			 * the look at the header and the probe. */
			if (gpucap_lease_probe(r->fd, LEASE_INIT) == 0 && ++idle_looks >= 2) {
				fail(
				    e, GPUCAP_PROBLEM_EMPTY,
				    "region %s is empty or half made and no process is initialising it; nothing to read",
				    r->path);
				return GPUCAP_ERR_BUSY;
			}
		} else {
			rc = gpucap_lease_try(r->fd, LEASE_INIT);
			if (rc == 0) {
				/* Look again under the lease: it may be ready now. */
				gpucap_status status = GPUCAP_OK;
				if (gpucap_platform_fstat(r->fd, &info) == 0 &&
				    look_at_header(r->fd, info.size, &copy) == HEADER_NEEDS_INIT) {
					status = initialise(r->fd, o, r->path, e);
					r->initialised_here = status == GPUCAP_OK;
				}
				gpucap_lease_drop(r->fd, LEASE_INIT);
				if (status != GPUCAP_OK)
					return status;
				continue;
			}
			if (rc != -EAGAIN) {
				fail(e, GPUCAP_PROBLEM_SYSTEM, "cannot lock region %s: %s", r->path,
				     strerror(-rc));
				return GPUCAP_ERR_IO;
			}
		}
		if (gpucap_clock_monotonic_ns() >= deadline) {
			fail(e, GPUCAP_PROBLEM_INIT_TIMEOUT,
			     "region %s is still being initialised by another process after %u ms", r->path,
			     timeout_ms);
			return GPUCAP_ERR_BUSY;
		}
		gpucap_sleep_ns(backoff_ns);
		if (backoff_ns < 1000000)
			backoff_ns *= 2;
	}
}

gpucap_status gpucap_region_attach_detailed(const struct gpucap_region_options *options, gpucap_region **out,
                                            struct gpucap_region_error *e)
{
	static const struct gpucap_region_options defaults;
	const struct gpucap_region_options *o = options ? options : &defaults;
	struct gpucap_region_error ignored;
	if (!e)
		e = &ignored;
	memset(e, 0, sizeof(*e));
	if (!out) {
		fail(e, GPUCAP_PROBLEM_INVALID, "region attach: no output handle");
		return GPUCAP_ERR_INVALID;
	}
	*out = NULL;
	const char *path = o->path ? o->path : GPUCAP_REGION_DEFAULT_PATH;
	if (path[0] == '\0' || strlen(path) >= sizeof(((struct gpucap_region *)0)->path)) {
		fail(e, GPUCAP_PROBLEM_PATH, "region path is empty or too long");
		return GPUCAP_ERR_INVALID;
	}
	if ((o->device_capacity && o->device_capacity > REGION_MAX_DEVICES) ||
	    (o->slot_capacity && o->slot_capacity > REGION_MAX_SLOTS)) {
		fail(e, GPUCAP_PROBLEM_CAPACITY,
		     "region %s: capacity too large (at most %u devices and %u slots)", path,
		     REGION_MAX_DEVICES, REGION_MAX_SLOTS);
		return GPUCAP_ERR_INVALID;
	}
	struct gpucap_region *r = calloc(1, sizeof(*r));
	if (!r) {
		fail(e, GPUCAP_PROBLEM_SYSTEM, "region %s: out of memory", path);
		return GPUCAP_ERR_IO;
	}
	snprintf(r->path, sizeof(r->path), "%s", path);
	for (unsigned d = 0; d < REGION_MAX_DEVICES; d++)
		atomic_init(&r->local_cap[d], GPUCAP_BYTES_MAX);
	r->observer = o->observer;
	r->slot = -1;
	/* Observers read any file; root tools (gpucap set, reap, resolve on a
	 * node) act on regions that containers' users own, taking no slot and
	 * creating nothing. */
	struct gpucap_file_rules rules = {
	    .create = !o->observer && !o->existing_only,
	    .writable = !o->observer,
	    .mode = o->group_shared ? 0660 : 0600,
	    .group_shared = o->group_shared,
	    .any_owner = o->observer || (o->existing_only && gpucap_platform_euid() == 0),
	};
	struct gpucap_file_info info;
	int error = 0;
	gpucap_file_check check = gpucap_file_open(path, &rules, &r->fd, &info, &error);
	gpucap_status status = file_refused(check, error, &info, path, !o->observer, e);
	if (status == GPUCAP_OK)
		status = attach_loop(r, o, info, e);
	if (status != GPUCAP_OK) {
		gpucap_platform_unmap(r->base, r->map_size);
		gpucap_platform_close(r->fd);
		free(r);
		e->status = status;
		return status;
	}
	*out = r;
	return GPUCAP_OK;
}

gpucap_status gpucap_region_attach(const struct gpucap_region_options *options, gpucap_region **out,
                                   char *err, size_t err_len)
{
	struct gpucap_region_error e;
	gpucap_status status = gpucap_region_attach_detailed(options, out, &e);
	if (err && err_len) {
		err[0] = '\0';
		if (status != GPUCAP_OK) {
			const char *hint = gpucap_region_problem_hint(e.problem);
			say(err, err_len, "gpucap: %s%s%s", e.detail, hint[0] ? "; " : "", hint);
		}
	}
	return status;
}

const char *gpucap_region_problem_hint(gpucap_region_problem problem)
{
	switch (problem) {
	case GPUCAP_PROBLEM_NONE:
	case GPUCAP_PROBLEM_SYSTEM:
	case GPUCAP_PROBLEM_INVALID:
	case GPUCAP_PROBLEM_CAPACITY:
		return "";
	case GPUCAP_PROBLEM_PATH:
		return "set CUDA_DEVICE_MEMORY_SHARED_CACHE to a file path";
	case GPUCAP_PROBLEM_SYMLINK:
		return "remove the link, or point CUDA_DEVICE_MEMORY_SHARED_CACHE at a regular file";
	case GPUCAP_PROBLEM_NOT_REGULAR:
		return "point CUDA_DEVICE_MEMORY_SHARED_CACHE at a file path";
	case GPUCAP_PROBLEM_LINKS:
		return "remove the other links, or remove the file and let gpucap create it";
	case GPUCAP_PROBLEM_OWNER:
		return "use a path of your own, or have its owner share it with your group (GPUCAP_REGION_GROUP=1)";
	case GPUCAP_PROBLEM_MISSING:
		return "no gpucap process has used this path yet";
	case GPUCAP_PROBLEM_NO_DIRECTORY:
		return "create it or point CUDA_DEVICE_MEMORY_SHARED_CACHE at an existing directory";
	case GPUCAP_PROBLEM_ACCESS:
		return "the file must be yours and its directory writable, or point CUDA_DEVICE_MEMORY_SHARED_CACHE at a path you own";
	case GPUCAP_PROBLEM_READ_ONLY:
		return "point CUDA_DEVICE_MEMORY_SHARED_CACHE at a writable directory such as /tmp";
	case GPUCAP_PROBLEM_NO_SPACE:
		return "free space or point CUDA_DEVICE_MEMORY_SHARED_CACHE elsewhere";
	case GPUCAP_PROBLEM_VERSION:
		return "stop the processes using it and remove the file, or point CUDA_DEVICE_MEMORY_SHARED_CACHE elsewhere";
	case GPUCAP_PROBLEM_FOREIGN:
		return "remove it or point CUDA_DEVICE_MEMORY_SHARED_CACHE elsewhere";
	case GPUCAP_PROBLEM_CORRUPT:
	case GPUCAP_PROBLEM_TRUNCATED:
		return "stop the processes using it and remove the file";
	case GPUCAP_PROBLEM_EMPTY:
		return "a gpucap process creates it when it starts";
	case GPUCAP_PROBLEM_INIT_TIMEOUT:
		return "if no gpucap process is starting, remove the file";
	}
	return "";
}

void gpucap_region_detach(gpucap_region *r)
{
	if (!r)
		return;
	slot_release_own(r);
	gpucap_platform_unmap(r->base, r->map_size);
	gpucap_platform_close(r->fd);
	free(r);
}

void gpucap_region_abandon(gpucap_region *r)
{
	if (!r)
		return;
	/* Closing our copy of the descriptor leaves the parent's lease with
	 * the parent alone; nothing shared is touched. */
	gpucap_platform_unmap(r->base, r->map_size);
	gpucap_platform_close(r->fd);
	free(r);
}

bool gpucap_region_initialised_here(const gpucap_region *r)
{
	return r && r->initialised_here;
}

const char *gpucap_region_path(const gpucap_region *r)
{
	return r ? r->path : "";
}

uint64_t gpucap_region_created_ns(const gpucap_region *r)
{
	return r ? r->header->created_unix_ns : 0;
}

const char *gpucap_status_text(gpucap_status status)
{
	switch (status) {
	case GPUCAP_OK:
		return "ok";
	case GPUCAP_ERR_OVER_LIMIT:
		return "over the device limit";
	case GPUCAP_ERR_INVALID:
		return "invalid argument";
	case GPUCAP_ERR_IO:
		return "file system error";
	case GPUCAP_ERR_CORRUPT:
		return "region file corrupt";
	case GPUCAP_ERR_VERSION:
		return "region format version mismatch";
	case GPUCAP_ERR_FULL:
		return "region full";
	case GPUCAP_ERR_BUSY:
		return "region busy initialising";
	case GPUCAP_ERR_PERMISSION:
		return "permission denied";
	case GPUCAP_ERR_NO_SLOT:
		return "no slot held";
	case GPUCAP_ERR_STALE:
		return "slot no longer held by that process";
	}
	return "unknown status";
}
