/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
#include "sem_region.h"

#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEM_REGION_MAGIC    UINT64_C(0x53454d5245474e31)
#define SEM_REGION_UUID_MAX 96

struct sem_device {
	char uuid[SEM_REGION_UUID_MAX];
	uint64_t limit;
	uint64_t charged;
};

struct sem_slot {
	int32_t pid;
	uint32_t unused;
	uint64_t used[SEM_REGION_DEVICES];
};

struct sem_region_file {
	/* Written last by the initialiser; a reader that sees it may use sem. */
	_Atomic uint64_t magic;
	sem_t sem;
	uint32_t device_count;
	struct sem_device devices[SEM_REGION_DEVICES];
	struct sem_slot slots[SEM_REGION_SLOTS];
};

struct sem_region {
	int fd;
	struct sem_region_file *file;
	int slot;
};

static void lock(struct sem_region_file *file)
{
	while (sem_wait(&file->sem) != 0 && errno == EINTR)
		;
}

static void unlock(struct sem_region_file *file)
{
	sem_post(&file->sem);
}

/* The old design initialised the semaphore once per file, serialised by a
 * whole-file lock that every attaching process takes. */
static bool initialise_once(int fd, struct sem_region_file *file)
{
	if (lockf(fd, F_LOCK, 0) != 0)
		return false;
	if (atomic_load_explicit(&file->magic, memory_order_acquire) != SEM_REGION_MAGIC) {
		memset((char *)file + sizeof file->magic, 0, sizeof *file - sizeof file->magic);
		if (sem_init(&file->sem, 1, 1) != 0) {
			lockf(fd, F_ULOCK, 0);
			return false;
		}
		atomic_store_explicit(&file->magic, SEM_REGION_MAGIC, memory_order_release);
	}
	lockf(fd, F_ULOCK, 0);
	return true;
}

static void clear_slot(struct sem_region_file *file, int slot)
{
	for (uint32_t d = 0; d < file->device_count; d++)
		file->devices[d].charged -= file->slots[slot].used[d];
	memset(&file->slots[slot], 0, sizeof file->slots[slot]);
}

/* The liveness sweep: one kill(pid, 0) per recorded PID, under the lock. */
static int sweep_and_take_slot(struct sem_region_file *file, int32_t self)
{
	int free_slot = -1;
	for (int i = 0; i < SEM_REGION_SLOTS; i++) {
		int32_t pid = file->slots[i].pid;
		if (pid != 0 && kill(pid, 0) != 0 && errno == ESRCH) {
			clear_slot(file, i);
			pid = 0;
		}
		if (pid == 0 && free_slot < 0)
			free_slot = i;
	}
	if (free_slot >= 0)
		file->slots[free_slot].pid = self;
	return free_slot;
}

static int register_device(struct sem_region_file *file, const char *uuid, uint64_t limit_bytes)
{
	for (uint32_t d = 0; d < file->device_count; d++)
		if (!strncmp(file->devices[d].uuid, uuid, SEM_REGION_UUID_MAX))
			return (int)d;
	if (file->device_count == SEM_REGION_DEVICES)
		return -1;
	struct sem_device *dev = &file->devices[file->device_count];
	snprintf(dev->uuid, sizeof dev->uuid, "%s", uuid);
	dev->limit = limit_bytes;
	dev->charged = 0;
	return (int)file->device_count++;
}

bool sem_region_attach(const char *path, const char *uuid, uint64_t limit_bytes, sem_region **out,
                       int *device)
{
	sem_region *region = calloc(1, sizeof *region);
	if (!region)
		return false;
	region->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (region->fd < 0)
		goto fail_free;
	struct stat st;
	if (fstat(region->fd, &st) != 0)
		goto fail_close;
	/* Concurrent creators all extend to the same size, which is harmless. */
	if ((size_t)st.st_size < sizeof(struct sem_region_file) &&
	    ftruncate(region->fd, (off_t)sizeof(struct sem_region_file)) != 0)
		goto fail_close;
	region->file =
	    mmap(NULL, sizeof(struct sem_region_file), PROT_READ | PROT_WRITE, MAP_SHARED, region->fd, 0);
	if (region->file == MAP_FAILED)
		goto fail_close;
	if (!initialise_once(region->fd, region->file))
		goto fail_unmap;

	struct sem_region_file *file = region->file;
	lock(file);
	region->slot = sweep_and_take_slot(file, (int32_t)getpid());
	int dev = region->slot >= 0 ? register_device(file, uuid, limit_bytes) : -1;
	unlock(file);
	if (dev < 0)
		goto fail_unmap;
	*device = dev;
	*out = region;
	return true;

fail_unmap:
	munmap(region->file, sizeof(struct sem_region_file));
fail_close:
	close(region->fd);
fail_free:
	free(region);
	return false;
}

bool sem_region_reserve(sem_region *region, int device, uint64_t bytes)
{
	struct sem_region_file *file = region->file;
	lock(file);
	struct sem_device *dev = &file->devices[device];
	bool fits = dev->charged + bytes <= dev->limit;
	if (fits) {
		dev->charged += bytes;
		file->slots[region->slot].used[device] += bytes;
	}
	unlock(file);
	return fits;
}

void sem_region_release(sem_region *region, int device, uint64_t bytes)
{
	struct sem_region_file *file = region->file;
	lock(file);
	file->devices[device].charged -= bytes;
	file->slots[region->slot].used[device] -= bytes;
	unlock(file);
}

uint64_t sem_region_charged(sem_region *region, int device)
{
	lock(region->file);
	uint64_t value = region->file->devices[device].charged;
	unlock(region->file);
	return value;
}

uint64_t sem_region_slot_used(sem_region *region, int device)
{
	lock(region->file);
	uint64_t value = region->file->slots[region->slot].used[device];
	unlock(region->file);
	return value;
}

void sem_region_detach(sem_region *region)
{
	lock(region->file);
	clear_slot(region->file, region->slot);
	unlock(region->file);
	munmap(region->file, sizeof(struct sem_region_file));
	close(region->fd);
	free(region);
}
