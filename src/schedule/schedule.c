/*
 * The node schedule file (include/gpucap/schedule.h): its format, creation,
 * slot leases, and the window layout every process computes alike.
 */
#define _GNU_SOURCE
#include "gpucap/schedule.h"
#include "platform.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHED_MAGIC       UINT64_C(0x0031534143555047) /* "GPUCAS1\0" little-endian */
#define SCHED_HEADER_SIZE 64u
#define SCHED_SLOT_SIZE   64u
#define SCHED_FILE_SIZE   ((uint64_t)SCHED_HEADER_SIZE + (uint64_t)GPUCAP_SCHED_SLOTS * SCHED_SLOT_SIZE)
/* A slot written this far in the future is not believed (clock reads of two
 * processes race by far less). */
#define SCHED_FUTURE_SLACK_NS UINT64_C(10000000)

/* Lease byte offsets, far past the end of the file so they never alias data. */
#define SCHED_LEASE_BASE        (UINT64_C(1) << 40)
#define SCHED_LEASE_INIT        SCHED_LEASE_BASE
#define SCHED_LEASE_SLOT(index) (SCHED_LEASE_BASE + 4096 + (uint64_t)(index))

struct sched_header {
	_Atomic uint64_t magic; /* written last by the creator */
	uint32_t format_version;
	uint32_t slot_count;
	uint32_t header_size;
	uint32_t slot_size;
	uint64_t period_ns;
	uint64_t created_ns;
	uint8_t pad[SCHED_HEADER_SIZE - 40];
};
_Static_assert(sizeof(struct sched_header) == SCHED_HEADER_SIZE, "schedule header layout");

struct sched_slot {
	_Atomic uint64_t tenant;    /* 0: never used */
	_Atomic uint64_t active_ns; /* CLOCK_MONOTONIC of the owner's last ON phase */
	_Atomic uint32_t duty_ppm;
	_Atomic int32_t pid;      /* for people reading the file; never trusted */
	_Atomic uint32_t cap_ppm; /* 0: unknown */
	uint8_t pad[SCHED_SLOT_SIZE - 28];
};
_Static_assert(sizeof(struct sched_slot) == SCHED_SLOT_SIZE, "schedule slot layout");

struct gpucap_sched {
	int fd;
	int slot;
	uint64_t tenant;
	uint64_t period_ns;
	struct sched_header *header;
	struct sched_slot *slots;
};

static void say(char *why, size_t why_len, const char *fmt, ...)
{
	if (!why || why_len == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, why_len, fmt, ap);
	va_end(ap);
}

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

static gpucap_status open_error(int error, const char *path, char *why, size_t why_len)
{
	switch (error) {
	case ELOOP:
		say(why, why_len,
		    "gpucap: schedule file %s is a symbolic link; gpucap does not follow links there (remove it; it is recreated)",
		    path);
		return GPUCAP_ERR_PERMISSION;
	case ENOENT:
	case ENOTDIR:
		say(why, why_len,
		    "gpucap: cannot create schedule file %s: GPUCAP_NODE_DIR is not an existing directory; create it (a host directory mounted into every container) or unset GPUCAP_NODE_DIR",
		    path);
		return GPUCAP_ERR_IO;
	case EISDIR:
		say(why, why_len,
		    "gpucap: schedule file %s is not a regular file; remove it, it is recreated", path);
		return GPUCAP_ERR_PERMISSION;
	case EACCES:
	case EPERM:
	case EROFS:
		say(why, why_len,
		    "gpucap: cannot open schedule file %s for writing: %s; make GPUCAP_NODE_DIR and the file writable by every container's user, or unset GPUCAP_NODE_DIR",
		    path, strerror(error));
		return GPUCAP_ERR_PERMISSION;
	default:
		say(why, why_len, "gpucap: cannot open schedule file %s: %s", path, strerror(error));
		return GPUCAP_ERR_IO;
	}
}

/* The header as the creator writes it; magic last, so a reader that sees
 * the magic sees the rest. */
static void write_header(struct sched_header *h)
{
	h->format_version = GPUCAP_SCHED_FORMAT_VERSION;
	h->slot_count = GPUCAP_SCHED_SLOTS;
	h->header_size = SCHED_HEADER_SIZE;
	h->slot_size = SCHED_SLOT_SIZE;
	h->period_ns = GPUCAP_SCHED_PERIOD_NS;
	h->created_ns = gpucap_clock_monotonic_ns();
	atomic_store_explicit(&h->magic, SCHED_MAGIC, memory_order_release);
}

static gpucap_status check_header(const struct sched_header *h, const char *path, char *why, size_t why_len)
{
	if (h->format_version != GPUCAP_SCHED_FORMAT_VERSION) {
		say(why, why_len,
		    "gpucap: schedule file %s has format version %u, this gpucap writes %u; stop the processes of the other gpucap version on this GPU, or remove the file",
		    path, h->format_version, GPUCAP_SCHED_FORMAT_VERSION);
		return GPUCAP_ERR_VERSION;
	}
	if (h->slot_count != GPUCAP_SCHED_SLOTS || h->header_size != SCHED_HEADER_SIZE ||
	    h->slot_size != SCHED_SLOT_SIZE || h->period_ns < GPUCAP_SCHED_PERIOD_MIN_NS ||
	    h->period_ns > GPUCAP_SCHED_PERIOD_MAX_NS) {
		say(why, why_len,
		    "gpucap: schedule file %s has a damaged header (slots %u, period %llu ns); remove the file, it is recreated",
		    path, h->slot_count, (unsigned long long)h->period_ns);
		return GPUCAP_ERR_CORRUPT;
	}
	return GPUCAP_OK;
}

/* Map the file, creating its contents when this process holds the init
 * lease and finds it empty (or left half-made by a creator that died). */
static gpucap_status map_file(int fd, const char *path, struct sched_header **out, char *why, size_t why_len)
{
	struct gpucap_file_info info;
	int rc = gpucap_platform_fstat(fd, &info);
	if (rc < 0)
		return open_error(-rc, path, why, why_len);
	if (!info.regular) {
		say(why, why_len,
		    "gpucap: schedule file %s is not a regular file; remove it, it is recreated", path);
		return GPUCAP_ERR_PERMISSION;
	}
	bool init_lease = false;
	if (info.size != SCHED_FILE_SIZE || info.size == 0) {
		rc = gpucap_lease_try(fd, SCHED_LEASE_INIT);
		if (rc == -EAGAIN) {
			say(why, why_len, "gpucap: schedule file %s is being created by another process",
			    path);
			return GPUCAP_ERR_BUSY;
		}
		if (rc < 0)
			return open_error(-rc, path, why, why_len);
		init_lease = true;
		if (gpucap_platform_fstat(fd, &info) == 0 && info.size != 0 && info.size != SCHED_FILE_SIZE) {
			gpucap_lease_drop(fd, SCHED_LEASE_INIT);
			say(why, why_len,
			    "gpucap: schedule file %s is %llu bytes, not %llu: it is not a gpucap schedule file or it was truncated; remove it, it is recreated",
			    path, (unsigned long long)info.size, (unsigned long long)SCHED_FILE_SIZE);
			return GPUCAP_ERR_CORRUPT;
		}
		if (info.size == 0) {
			rc = gpucap_platform_reset_file(fd, SCHED_FILE_SIZE);
			if (rc < 0) {
				gpucap_lease_drop(fd, SCHED_LEASE_INIT);
				return open_error(-rc, path, why, why_len);
			}
		}
	}
	int error = 0;
	struct sched_header *h = gpucap_platform_map(fd, SCHED_FILE_SIZE, true, &error);
	if (!h) {
		if (init_lease)
			gpucap_lease_drop(fd, SCHED_LEASE_INIT);
		return open_error(error, path, why, why_len);
	}
	uint64_t magic = atomic_load_explicit(&h->magic, memory_order_acquire);
	if (magic == 0 && !init_lease) {
		/* Made but not yet stamped: its creator is at work, or died. */
		rc = gpucap_lease_try(fd, SCHED_LEASE_INIT);
		if (rc < 0) {
			gpucap_platform_unmap(h, SCHED_FILE_SIZE);
			say(why, why_len, "gpucap: schedule file %s is being created by another process",
			    path);
			return GPUCAP_ERR_BUSY;
		}
		init_lease = true;
		magic = atomic_load_explicit(&h->magic, memory_order_acquire);
	}
	if (magic == 0) {
		/* Ours to make: all zero (reset_file, or a creator that died
		 * before stamping, whose slots nobody used). */
		memset((char *)h + sizeof(h->magic), 0, SCHED_FILE_SIZE - sizeof(h->magic));
		write_header(h);
	}
	if (init_lease)
		gpucap_lease_drop(fd, SCHED_LEASE_INIT);
	if (magic != 0 && magic != SCHED_MAGIC) {
		gpucap_platform_unmap(h, SCHED_FILE_SIZE);
		say(why, why_len,
		    "gpucap: %s is not a gpucap schedule file (bad magic); remove it, or point GPUCAP_NODE_DIR at a directory of gpucap's own",
		    path);
		return GPUCAP_ERR_CORRUPT;
	}
	gpucap_status st = check_header(h, path, why, why_len);
	if (st != GPUCAP_OK) {
		gpucap_platform_unmap(h, SCHED_FILE_SIZE);
		return st;
	}
	*out = h;
	return GPUCAP_OK;
}

/* A slot is free when nobody holds its lease, whatever it says: a dead
 * owner's words are simply overwritten. */
static int claim_slot(struct gpucap_sched *s, uint64_t tenant)
{
	for (uint32_t i = 0; i < GPUCAP_SCHED_SLOTS; i++) {
		if (gpucap_lease_try(s->fd, SCHED_LEASE_SLOT(i)) != 0)
			continue;
		struct sched_slot *slot = &s->slots[i];
		atomic_store_explicit(&slot->active_ns, 0, memory_order_relaxed);
		atomic_store_explicit(&slot->duty_ppm, 0, memory_order_relaxed);
		atomic_store_explicit(&slot->cap_ppm, 0, memory_order_relaxed);
		atomic_store_explicit(&slot->pid, gpucap_platform_pid(), memory_order_relaxed);
		atomic_store_explicit(&slot->tenant, tenant, memory_order_release);
		return (int)i;
	}
	return -1;
}

gpucap_status gpucap_sched_open(const char *dir, const char *gpu_uuid, uint64_t tenant, gpucap_sched **out,
                                char *why, size_t why_len)
{
	if (out)
		*out = NULL;
	if (!out || !dir || !*dir || !gpu_uuid || tenant == 0) {
		say(why, why_len, "gpucap: schedule: bad arguments");
		return GPUCAP_ERR_INVALID;
	}
	if (!uuid_ok(gpu_uuid)) {
		say(why, why_len, "gpucap: schedule: GPU UUID \"%.40s\" cannot name a file", gpu_uuid);
		return GPUCAP_ERR_INVALID;
	}
	char path[4096];
	int n = snprintf(path, sizeof(path), "%s/%s%s", dir, GPUCAP_SCHED_FILE_PREFIX, gpu_uuid);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		say(why, why_len, "gpucap: GPUCAP_NODE_DIR is too long (%zu bytes)", strlen(dir));
		return GPUCAP_ERR_INVALID;
	}
	int fd = gpucap_platform_open(path, true, true, 0666);
	if (fd < 0)
		return open_error(-fd, path, why, why_len);
	/* A file with another name may be someone's private file linked here:
	 * never sized, written or opened up. */
	struct gpucap_file_info info;
	int rc = gpucap_platform_fstat(fd, &info);
	if (rc == 0 && info.links > 1) {
		gpucap_platform_close(fd);
		say(why, why_len,
		    "gpucap: schedule file %s has %u names (hard links); remove it, it is recreated", path,
		    info.links);
		return GPUCAP_ERR_PERMISSION;
	}
	struct sched_header *h = NULL;
	gpucap_status st = map_file(fd, path, &h, why, why_len);
	if (st != GPUCAP_OK) {
		gpucap_platform_close(fd);
		return st;
	}
	/* Every container's user takes part: the directory decides who may.
	 * Only a file that proved to be a schedule file, and has no other
	 * name, is opened up: never a private file linked here by someone. */
	if (rc == 0 && info.uid == gpucap_platform_euid() && info.mode != 0666)
		gpucap_platform_chmod(fd, 0666);
	struct gpucap_sched *s = calloc(1, sizeof(*s));
	if (!s) {
		gpucap_platform_unmap(h, SCHED_FILE_SIZE);
		gpucap_platform_close(fd);
		say(why, why_len, "gpucap: schedule: out of memory");
		return GPUCAP_ERR_IO;
	}
	s->fd = fd;
	s->tenant = tenant;
	s->header = h;
	s->period_ns = h->period_ns;
	s->slots = (struct sched_slot *)((char *)h + SCHED_HEADER_SIZE);
	s->slot = claim_slot(s, tenant);
	if (s->slot < 0) {
		say(why, why_len,
		    "gpucap: schedule file %s has no free slot (%u processes use this GPU); this process keeps its cap without taking turns",
		    path, GPUCAP_SCHED_SLOTS);
		gpucap_sched_close(s);
		return GPUCAP_ERR_FULL;
	}
	*out = s;
	return GPUCAP_OK;
}

void gpucap_sched_close(gpucap_sched *s)
{
	if (!s)
		return;
	if (s->slot >= 0) {
		atomic_store_explicit(&s->slots[s->slot].active_ns, 0, memory_order_relaxed);
		gpucap_lease_drop(s->fd, SCHED_LEASE_SLOT(s->slot));
	}
	gpucap_platform_unmap(s->header, SCHED_FILE_SIZE);
	gpucap_platform_close(s->fd);
	free(s);
}

void gpucap_sched_forget(gpucap_sched *s)
{
	if (!s)
		return;
	/* The child's copy of the descriptor shares the parent's open file,
	 * and so its leases: closing it would not drop them, and nothing of
	 * the slot is the child's to change. */
	gpucap_platform_unmap(s->header, SCHED_FILE_SIZE);
	gpucap_platform_close(s->fd);
	free(s);
}

int gpucap_sched_slot(const gpucap_sched *s)
{
	return s ? s->slot : -1;
}

static uint32_t clamp_ppm(uint32_t ppm)
{
	if (ppm == 0)
		return 1;
	return ppm > GPUCAP_SCHED_PPM ? GPUCAP_SCHED_PPM : ppm;
}

void gpucap_sched_touch(gpucap_sched *s, uint32_t duty_ppm, uint32_t cap_ppm, uint64_t now_ns)
{
	if (!s || s->slot < 0)
		return;
	struct sched_slot *slot = &s->slots[s->slot];
	/* Only stores when something changed, so the line stays shared in the
	 * other processes' caches between phases. */
	uint32_t duty = clamp_ppm(duty_ppm);
	if (atomic_load_explicit(&slot->duty_ppm, memory_order_relaxed) != duty)
		atomic_store_explicit(&slot->duty_ppm, duty, memory_order_relaxed);
	uint32_t cap = clamp_ppm(cap_ppm);
	if (atomic_load_explicit(&slot->cap_ppm, memory_order_relaxed) != cap)
		atomic_store_explicit(&slot->cap_ppm, cap, memory_order_relaxed);
	if (atomic_load_explicit(&slot->tenant, memory_order_relaxed) != s->tenant)
		atomic_store_explicit(&slot->tenant, s->tenant, memory_order_relaxed);
	uint64_t was = atomic_load_explicit(&slot->active_ns, memory_order_relaxed);
	if (now_ns > was + UINT64_C(1000000) || now_ns < was)
		atomic_store_explicit(&slot->active_ns, now_ns, memory_order_relaxed);
}

struct tenant_entry {
	uint64_t id;
	uint32_t duty_ppm;
	uint32_t cap_ppm;
};

void gpucap_sched_window(const gpucap_sched *s, uint32_t duty_ppm, uint64_t now_ns,
                         struct gpucap_sched_window *out)
{
	memset(out, 0, sizeof(*out));
	out->tenants = 1;
	if (!s)
		return;
	out->period_ns = s->period_ns;
	uint32_t own = clamp_ppm(duty_ppm);
	/* The active tenants, each once (its lowest slot speaks for it), this
	 * one always, kept sorted by id: every process derives the same order. */
	struct tenant_entry t[GPUCAP_SCHED_SLOTS + 1];
	uint32_t count = 0;
	uint32_t own_cap = atomic_load_explicit(&s->slots[s->slot].cap_ppm, memory_order_relaxed);
	t[count++] = (struct tenant_entry){s->tenant, own, own_cap ? clamp_ppm(own_cap) : own};
	for (uint32_t i = 0; i < GPUCAP_SCHED_SLOTS; i++) {
		const struct sched_slot *slot = &s->slots[i];
		uint64_t id = atomic_load_explicit(&slot->tenant, memory_order_relaxed);
		if (id == 0 || id == s->tenant)
			continue;
		uint64_t active = atomic_load_explicit(&slot->active_ns, memory_order_relaxed);
		if (active == 0 || active > now_ns + SCHED_FUTURE_SLACK_NS ||
		    (now_ns > active && now_ns - active > GPUCAP_SCHED_ACTIVE_NS))
			continue;
		bool seen = false;
		for (uint32_t k = 0; k < count && !seen; k++)
			seen = t[k].id == id;
		if (seen)
			continue;
		uint32_t duty = clamp_ppm(atomic_load_explicit(&slot->duty_ppm, memory_order_relaxed));
		uint32_t cap = atomic_load_explicit(&slot->cap_ppm, memory_order_relaxed);
		struct tenant_entry e = {id, duty, cap ? clamp_ppm(cap) : duty};
		uint32_t at = count++;
		while (at > 0 && t[at - 1].id > e.id) {
			t[at] = t[at - 1];
			at--;
		}
		t[at] = e;
	}
	out->tenants = count;
	uint64_t duties = 0, caps = 0;
	for (uint32_t k = 0; k < count; k++) {
		duties += t[k].duty_ppm;
		caps += t[k].cap_ppm;
	}
	out->total_ppm = duties > UINT32_MAX ? UINT32_MAX : (uint32_t)duties;
	out->caps_ppm = caps > UINT32_MAX ? UINT32_MAX : (uint32_t)caps;
	if (count < 2)
		return;
	/* Windows end to end in id order; shrunk in proportion when the duties
	 * ask for more than the period. */
	uint64_t sum = 0, before = 0;
	for (uint32_t k = 0; k < count; k++) {
		if (t[k].id == s->tenant)
			before = sum;
		sum += t[k].duty_ppm;
	}
	uint64_t scale_den = sum > GPUCAP_SCHED_PPM ? sum : GPUCAP_SCHED_PPM;
	out->shared = true;
	out->offset_ns = (uint64_t)((unsigned __int128)before * s->period_ns / scale_den);
	out->length_ns = (uint64_t)((unsigned __int128)own * s->period_ns / scale_den);
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
