/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The node schedule handle (include/gpucap/schedule.h): what touch records,
 * what refresh writes, reads and publishes, and the window read from it.
 */
#define _GNU_SOURCE
#include "gpucap/schedule.h"
#include "platform.h"
#include "sched_file.h"
#include "sched_layout.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The own record is rewritten at least this often while active, so that it
 * never looks idle to others (GPUCAP_SCHED_ACTIVE_NS). */
#define SCHED_HEARTBEAT_NS (GPUCAP_SCHED_ACTIVE_NS / 10)
/* How often window retries a layout being published before it gives up
 * for this call (and runs on the tenant's own duty cycle). */
#define SCHED_READ_TRIES 4

/* The layout as refresh publishes it: a sequence lock in process memory,
 * one writer (refresh), readers that never wait (window). */
struct published {
	_Atomic uint32_t seq; /* odd while refresh writes */
	_Atomic uint64_t at_ns;
	_Atomic uint32_t offset_ppm;
	_Atomic uint32_t tenants;
	_Atomic uint32_t total_ppm;
	_Atomic uint32_t caps_ppm;
	_Atomic bool shared;
};

struct gpucap_sched {
	int dirfd;
	DIR *dir;
	char dir_name[4096];
	char uuid[GPUCAP_UUID_MAX];
	uint32_t euid;
	uint64_t tenant;
	struct sched_own own;
	/* Stored by touch (any thread), read by refresh. */
	_Atomic uint32_t duty_ppm;
	_Atomic uint32_t cap_ppm;
	_Atomic uint64_t touched_ns;
	/* refresh's own. */
	struct sched_record written;
	bool ever_written;
	struct sched_entry entries[GPUCAP_SCHED_PEERS_MAX + 1];
	struct published layout;
};

/* UUIDs become file names: letters, digits and '-' only. */
static bool uuid_ok(const char *uuid)
{
	size_t n = strlen(uuid);
	if (n == 0 || n >= GPUCAP_UUID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = uuid[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-'))
			return false;
	}
	return true;
}

static gpucap_status dir_error(int error, const char *dir, char *why, size_t why_len)
{
	if (error == ENOENT || error == ENOTDIR) {
		/* clang-format off */
		sched_say(why, why_len,
		    "gpucap: GPUCAP_NODE_DIR %s is not an existing directory; create it (a host directory mounted into every container, mode 1777) or unset GPUCAP_NODE_DIR",
		    dir);
		/* clang-format on */
		return GPUCAP_ERR_IO;
	}
	if (error == EACCES || error == EPERM) {
		/* clang-format off */
		sched_say(why, why_len,
		    "gpucap: cannot read GPUCAP_NODE_DIR %s: %s; make it readable and writable by every container's user (mode 1777), or unset GPUCAP_NODE_DIR",
		    dir, strerror(error));
		/* clang-format on */
		return GPUCAP_ERR_PERMISSION;
	}
	sched_say(why, why_len, "gpucap: cannot open GPUCAP_NODE_DIR %s: %s", dir, strerror(error));
	return GPUCAP_ERR_IO;
}

static void free_handle(struct gpucap_sched *s)
{
	if (s->dir)
		closedir(s->dir);
	if (s->dirfd >= 0)
		close(s->dirfd);
	free(s);
}

gpucap_status gpucap_sched_open(const char *dir, const char *gpu_uuid, uint64_t tenant, gpucap_sched **out,
                                char *why, size_t why_len)
{
	if (out)
		*out = NULL;
	if (!out || !dir || !*dir || !gpu_uuid || tenant == 0) {
		sched_say(why, why_len, "gpucap: schedule: bad arguments");
		return GPUCAP_ERR_INVALID;
	}
	if (!uuid_ok(gpu_uuid)) {
		sched_say(why, why_len, "gpucap: schedule: GPU UUID \"%.40s\" cannot name a file", gpu_uuid);
		return GPUCAP_ERR_INVALID;
	}
	struct gpucap_sched *s = calloc(1, sizeof(*s));
	if (!s) {
		sched_say(why, why_len, "gpucap: schedule: out of memory");
		return GPUCAP_ERR_IO;
	}
	s->dirfd = -1;
	s->own.fd = -1;
	if (strlen(dir) >= sizeof(s->dir_name)) {
		free(s);
		sched_say(why, why_len, "gpucap: GPUCAP_NODE_DIR is too long (%zu bytes)", strlen(dir));
		return GPUCAP_ERR_INVALID;
	}
	snprintf(s->dir_name, sizeof(s->dir_name), "%s", dir);
	snprintf(s->uuid, sizeof(s->uuid), "%s", gpu_uuid);
	s->euid = gpucap_platform_euid();
	s->tenant = tenant;
	/* The directory is the node agent's choice and may be a link; every
	 * file in it is then reached through this descriptor, never by path. */
	s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dirfd < 0) {
		gpucap_status st = dir_error(errno, dir, why, why_len);
		free_handle(s);
		return st;
	}
	int listing = fcntl(s->dirfd, F_DUPFD_CLOEXEC, 0);
	s->dir = listing >= 0 ? fdopendir(listing) : NULL;
	if (!s->dir) {
		int error = errno;
		if (listing >= 0)
			close(listing);
		gpucap_status st = dir_error(error, dir, why, why_len);
		free_handle(s);
		return st;
	}
	gpucap_status st = sched_own_open(s->dirfd, dir, gpu_uuid, tenant, &s->own, why, why_len);
	if (st != GPUCAP_OK) {
		free_handle(s);
		return st;
	}
	*out = s;
	return GPUCAP_OK;
}

void gpucap_sched_close(gpucap_sched *s)
{
	if (!s)
		return;
	sched_own_close(s->dirfd, &s->own);
	free_handle(s);
}

void gpucap_sched_forget(gpucap_sched *s)
{
	if (!s)
		return;
	/* The child's copy of the descriptor shares the parent's open file,
	 * and so its leases: closing it does not drop them, and nothing of the
	 * record is the child's to change. */
	sched_own_forget(&s->own);
	free_handle(s);
}

int gpucap_sched_slot(const gpucap_sched *s)
{
	return s ? s->own.record : -1;
}

void gpucap_sched_touch(gpucap_sched *s, uint32_t duty_ppm, uint32_t cap_ppm, uint64_t now_ns)
{
	if (!s)
		return;
	/* Relaxed: refresh reads each value on its own, and a value one
	 * refresh late is one heartbeat late, nothing more. Stores only when
	 * something changed, so the line stays shared between phases. */
	uint32_t duty = sched_clamp_ppm(duty_ppm);
	if (atomic_load_explicit(&s->duty_ppm, memory_order_relaxed) != duty)
		atomic_store_explicit(&s->duty_ppm, duty, memory_order_relaxed);
	uint32_t cap = sched_clamp_ppm(cap_ppm);
	if (atomic_load_explicit(&s->cap_ppm, memory_order_relaxed) != cap)
		atomic_store_explicit(&s->cap_ppm, cap, memory_order_relaxed);
	uint64_t was = atomic_load_explicit(&s->touched_ns, memory_order_relaxed);
	if (now_ns > was + UINT64_C(1000000) || now_ns < was)
		atomic_store_explicit(&s->touched_ns, now_ns, memory_order_relaxed);
}

/* The own record, written when it changed or its heartbeat is due. */
static void write_own(struct gpucap_sched *s, uint32_t duty, uint32_t cap, uint64_t touched, uint64_t now_ns)
{
	struct sched_record r = s->written;
	r.tenant = s->tenant;
	r.pid = gpucap_platform_pid();
	r.duty_ppm = duty;
	r.cap_ppm = cap;
	bool recent = touched != 0 && touched + GPUCAP_SCHED_ACTIVE_NS > now_ns;
	/* While the process runs phases its record carries the latest; a
	 * stamp older than the heartbeat is brought up to the touch. */
	r.active_ns = recent ? touched : 0;
	bool changed = !s->ever_written || r.duty_ppm != s->written.duty_ppm ||
	               r.cap_ppm != s->written.cap_ppm || (r.active_ns == 0) != (s->written.active_ns == 0) ||
	               (r.active_ns > s->written.active_ns + SCHED_HEARTBEAT_NS);
	if (!changed)
		return;
	r.seq = s->written.seq + 1;
	if (sched_own_write(&s->own, &r) == 0) {
		s->written = r;
		s->ever_written = true;
	}
}

static void publish(struct gpucap_sched *s, const struct sched_placement *p, uint64_t now_ns)
{
	struct published *l = &s->layout;
	uint32_t seq = atomic_load_explicit(&l->seq, memory_order_relaxed);
	atomic_store_explicit(&l->seq, seq + 1, memory_order_relaxed);
	/* Partner: the acquire fence in read_layout. Orders the odd sequence
	 * before the fields, so a reader that saw a field of this write sees
	 * the sequence changed when it checks again. */
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit(&l->at_ns, now_ns, memory_order_relaxed);
	atomic_store_explicit(&l->offset_ppm, p->offset_ppm, memory_order_relaxed);
	atomic_store_explicit(&l->tenants, p->tenants, memory_order_relaxed);
	atomic_store_explicit(&l->total_ppm, p->total_ppm, memory_order_relaxed);
	atomic_store_explicit(&l->caps_ppm, p->caps_ppm, memory_order_relaxed);
	atomic_store_explicit(&l->shared, p->shared, memory_order_relaxed);
	/* Partner: the acquire load of seq in read_layout. A reader that sees
	 * this even sequence sees every field stored above. */
	atomic_store_explicit(&l->seq, seq + 2, memory_order_release);
}

uint32_t gpucap_sched_refresh(gpucap_sched *s, uint64_t now_ns, char *why, size_t why_len)
{
	if (why && why_len)
		why[0] = '\0';
	if (!s)
		return 0;
	uint32_t duty = atomic_load_explicit(&s->duty_ppm, memory_order_relaxed);
	uint32_t cap = atomic_load_explicit(&s->cap_ppm, memory_order_relaxed);
	uint64_t touched = atomic_load_explicit(&s->touched_ns, memory_order_relaxed);
	if (sched_own_lost(&s->own)) {
		/* Removed under us: made anew, or the others would stop seeing
		 * this tenant. Until that works the tenant only reads. */
		sched_own_forget(&s->own);
		if (sched_own_open(s->dirfd, s->dir_name, s->uuid, s->tenant, &s->own, NULL, 0) == GPUCAP_OK)
			s->ever_written = false;
	}
	write_own(s, duty, cap, touched, now_ns);

	struct sched_scan_result scan =
	    sched_scan_peers(s->dir, s->dirfd, s->dir_name, s->uuid, s->tenant, s->euid, now_ns,
	                     s->entries + 1, GPUCAP_SCHED_PEERS_MAX, why, why_len);
	/* The own entry comes from this process's memory, never from a file:
	 * nothing anyone writes changes its length. */
	uint32_t own_duty = sched_clamp_ppm(duty);
	s->entries[0] =
	    (struct sched_entry){s->tenant, s->euid, own_duty, cap ? sched_clamp_ppm(cap) : own_duty, 0};
	struct sched_placement p;
	sched_layout(s->entries, scan.peers + 1, s->tenant, &p);
	publish(s, &p, now_ns);
	return scan.refused;
}

/* The latest layout, or false when refresh was writing it at every try. */
static bool read_layout(const struct gpucap_sched *s, struct sched_placement *p, uint64_t *at_ns)
{
	const struct published *l = &s->layout;
	for (int i = 0; i < SCHED_READ_TRIES; i++) {
		/* Partner: the release store of the even sequence in publish. */
		uint32_t before = atomic_load_explicit(&l->seq, memory_order_acquire);
		if (before & 1)
			continue;
		*at_ns = atomic_load_explicit(&l->at_ns, memory_order_relaxed);
		p->offset_ppm = atomic_load_explicit(&l->offset_ppm, memory_order_relaxed);
		p->tenants = atomic_load_explicit(&l->tenants, memory_order_relaxed);
		p->total_ppm = atomic_load_explicit(&l->total_ppm, memory_order_relaxed);
		p->caps_ppm = atomic_load_explicit(&l->caps_ppm, memory_order_relaxed);
		p->shared = atomic_load_explicit(&l->shared, memory_order_relaxed);
		/* Partner: the release fence in publish. Orders the field
		 * loads before the second look at the sequence. */
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&l->seq, memory_order_relaxed) == before)
			return true;
	}
	return false;
}

void gpucap_sched_window(const gpucap_sched *s, uint32_t duty_ppm, uint64_t now_ns,
                         struct gpucap_sched_window *out)
{
	memset(out, 0, sizeof(*out));
	out->tenants = 1;
	if (!s)
		return;
	out->period_ns = GPUCAP_SCHED_PERIOD_NS;
	uint32_t own = sched_clamp_ppm(duty_ppm);
	out->total_ppm = own;
	out->caps_ppm = own;
	struct sched_placement p;
	uint64_t at = 0;
	if (!read_layout(s, &p, &at) || at == 0 || now_ns > at + GPUCAP_SCHED_LAYOUT_STALE_NS ||
	    at > now_ns + GPUCAP_SCHED_LAYOUT_STALE_NS)
		return;
	out->tenants = p.tenants ? p.tenants : 1;
	out->total_ppm = p.total_ppm;
	out->caps_ppm = p.caps_ppm;
	if (!p.shared)
		return;
	/* The length is the caller's duty, whatever the layout was made with;
	 * the window is kept inside the period. */
	uint32_t offset = sched_fit_offset(p.offset_ppm, own);
	out->shared = true;
	out->offset_ns = (uint64_t)offset * GPUCAP_SCHED_PERIOD_NS / GPUCAP_SCHED_PPM;
	out->length_ns = (uint64_t)own * GPUCAP_SCHED_PERIOD_NS / GPUCAP_SCHED_PPM;
	if (out->length_ns == 0)
		out->length_ns = 1; /* a window too short for any work, never "no window" */
}

uint64_t gpucap_sched_next_open(const struct gpucap_sched_window *w, uint64_t now_ns, uint64_t *until_ns)
{
	if (!w->shared || w->period_ns == 0 || w->length_ns == 0) {
		*until_ns = UINT64_MAX;
		return now_ns;
	}
	uint64_t base = now_ns - now_ns % w->period_ns;
	uint64_t open = base + w->offset_ns;
	if (now_ns >= open + w->length_ns)
		open += w->period_ns;
	/* offset + length <= period: a window never wraps into the next. */
	if (now_ns >= open) {
		*until_ns = open + w->length_ns;
		return now_ns;
	}
	*until_ns = open + w->length_ns;
	return open;
}
