/* SPDX-License-Identifier: Apache-2.0 */
/* Leased files (leased_file.h): safe open, create-once, magic checks, slot
 * leases and guarded mappings. */
#define _GNU_SOURCE
#include "leased_file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

gpucap_file_check gpucap_file_check_fd(int fd, const struct gpucap_file_rules *rules,
                                       struct gpucap_file_info *info, int *error)
{
	*error = 0;
	int rc = gpucap_platform_fstat(fd, info);
	if (rc != 0) {
		*error = -rc;
		return GPUCAP_FILE_OPEN_FAILED;
	}
	if (!info->regular)
		return GPUCAP_FILE_NOT_REGULAR;
	/* A second name lets whoever made it swap what the first name reaches,
	 * or make root tools act on a file they never named. */
	if (info->links != 1)
		return GPUCAP_FILE_LINKS;
	if (!rules->any_owner && info->uid != gpucap_platform_euid() &&
	    !(rules->group_shared && gpucap_platform_in_group(info->gid) && (info->mode & 0060) == 0060))
		return GPUCAP_FILE_OWNER;
	return GPUCAP_FILE_OK;
}

gpucap_file_check gpucap_file_openat(int dirfd, const char *name, const struct gpucap_file_rules *rules,
                                     int *fd, struct gpucap_file_info *info, int *error)
{
	*fd = -1;
	*error = 0;
	int opened = gpucap_platform_openat(dirfd, name, rules->create, rules->writable, rules->mode);
	if (opened < 0) {
		*error = -opened;
		return opened == -ELOOP ? GPUCAP_FILE_SYMLINK : GPUCAP_FILE_OPEN_FAILED;
	}
	gpucap_file_check verdict = gpucap_file_check_fd(opened, rules, info, error);
	if (verdict != GPUCAP_FILE_OK) {
		gpucap_platform_close(opened);
		return verdict;
	}
	*fd = opened;
	return GPUCAP_FILE_OK;
}

gpucap_file_check gpucap_file_open(const char *path, const struct gpucap_file_rules *rules, int *fd,
                                   struct gpucap_file_info *info, int *error)
{
	return gpucap_file_openat(AT_FDCWD, path, rules, fd, info, error);
}

gpucap_magic_verdict gpucap_magic_check(uint64_t found, uint64_t expected, unsigned family_bits)
{
	if (found == expected)
		return GPUCAP_MAGIC_MATCH;
	if (found == 0)
		return GPUCAP_MAGIC_EMPTY;
	uint64_t family = family_bits >= 64 ? ~UINT64_C(0) : (UINT64_C(1) << family_bits) - 1;
	return (found & family) == (expected & family) ? GPUCAP_MAGIC_OTHER_VERSION : GPUCAP_MAGIC_FOREIGN;
}

int gpucap_file_init_once(int fd, uint64_t lease_offset, bool may_initialise, uint32_t timeout_ms,
                          bool (*is_ready)(int fd, void *arg), int (*initialise)(int fd, void *arg),
                          void *arg)
{
	uint64_t deadline = gpucap_clock_monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
	uint64_t backoff_ns = 20000;
	for (;;) {
		if (is_ready(fd, arg))
			return 0;
		if (may_initialise) {
			int rc = gpucap_lease_try(fd, lease_offset);
			if (rc == 0) {
				/* Look again under the lease: it may be ready now. */
				int result = is_ready(fd, arg) ? 0 : initialise(fd, arg);
				gpucap_lease_drop(fd, lease_offset);
				if (result != 0)
					return result;
				continue;
			}
			if (rc != -EAGAIN)
				return rc;
		} else if (gpucap_lease_probe(fd, lease_offset) == 0 && !is_ready(fd, arg)) {
			return -EPERM; /* not ready, and nobody is making it so */
		}
		if (gpucap_clock_monotonic_ns() >= deadline)
			return -EBUSY;
		gpucap_sleep_ns(backoff_ns);
		if (backoff_ns < 1000000)
			backoff_ns *= 2;
	}
}

bool gpucap_slot_lease_take(int fd, _Atomic uint8_t *claim, uint64_t offset)
{
	uint8_t unclaimed = 0;
	/* A11 (docs/region-protocol.md): pairs with the release in
	 * gpucap_slot_lease_drop, so this thread sees every write the previous
	 * claimant of this descriptor made under the lease. */
	if (!atomic_compare_exchange_strong_explicit(claim, &unclaimed, 1, memory_order_acquire,
	                                             memory_order_relaxed))
		return false; /* another thread of this process holds it */
	if (gpucap_lease_try(fd, offset) == 0)
		return true;
	/* R11: nothing was written; the claim is free again. */
	atomic_store_explicit(claim, 0, memory_order_release);
	return false;
}

void gpucap_slot_lease_drop(int fd, _Atomic uint8_t *claim, uint64_t offset)
{
	gpucap_lease_drop(fd, offset);
	/* R11: partner A11 in gpucap_slot_lease_take. The lease is dropped
	 * first: the next claimant must not find it still ours, half dropped. */
	atomic_store_explicit(claim, 0, memory_order_release);
}

bool gpucap_slot_reclaim_take(int fd, _Atomic uint8_t *claim, uint64_t offset, uint64_t mark)
{
	uint8_t unclaimed = 0;
	/* A11: as in gpucap_slot_lease_take. The claim comes first, so the
	 * mark, like the lease, is taken by one thread of this descriptor at a
	 * time (an OFD lock cannot tell our threads apart: a second thread's
	 * failed attempt must not drop the first one's mark). */
	if (!atomic_compare_exchange_strong_explicit(claim, &unclaimed, 1, memory_order_acquire,
	                                             memory_order_relaxed))
		return false;
	/* A live owner's slot: one probe, and no mark a claimer could take
	 * for a reclaim. */
	if (gpucap_lease_probe(fd, offset) == 0 && gpucap_lease_try(fd, mark) == 0) {
		if (gpucap_lease_try(fd, offset) == 0)
			return true;
		gpucap_lease_drop(fd, mark); /* an owner or claimer took it meanwhile */
	}
	/* R11: nothing was written; the claim is free again. */
	atomic_store_explicit(claim, 0, memory_order_release);
	return false;
}

void gpucap_slot_reclaim_drop(int fd, _Atomic uint8_t *claim, uint64_t offset, uint64_t mark)
{
	gpucap_lease_drop(fd, offset);
	/* The mark goes after the lease: a claimer that failed on the lease
	 * and then finds no mark finds the lease free when it looks again. */
	gpucap_lease_drop(fd, mark);
	/* R11: partner A11 in the next take. */
	atomic_store_explicit(claim, 0, memory_order_release);
}

bool gpucap_slot_being_reclaimed(int fd, const _Atomic uint8_t *claim, uint64_t mark)
{
	return atomic_load_explicit(claim, memory_order_relaxed) != 0 || gpucap_lease_probe(fd, mark) == 1;
}

void *gpucap_map_guarded(int fd, size_t len, bool writable, _Atomic uint32_t *failed, int *error)
{
	void *base = gpucap_platform_map(fd, len, writable, error);
	if (!base)
		return NULL;
	int rc = gpucap_mapping_guard(base, len, failed);
	if (rc != 0) {
		gpucap_platform_unmap(base, len);
		*error = -rc;
		return NULL;
	}
	return base;
}

bool gpucap_guarded_copy(void *dst, const void *src, size_t len, const _Atomic uint32_t *failed)
{
	if (atomic_load_explicit(failed, memory_order_relaxed))
		return false;
	memcpy(dst, src, len);
	/* A cut during the copy raised the flag in this thread (the guard runs
	 * on the faulting thread) before the copy went on over zero pages. */
	return atomic_load_explicit(failed, memory_order_relaxed) == 0;
}
