/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Damages a region the way a broken or hostile writer of the file could, for
 * the CLI tests of `gpucap reap`: it writes the file's words directly
 * (white-box, through src/region/layout.h), never through the region API.
 *
 * usage: region_damage PATH STEP...
 *   state SLOT VALUE          store VALUE in the slot's state word
 *   ledger SLOT DEVICE BYTES  put a signed amount (e.g. -20m) in an empty
 *                             lane of the slot's ledger for the device
 *   total DEVICE BYTES        set the device's charged total (untagged)
 * Prints one error line and exits 1 on a bad step.
 */
#define _POSIX_C_SOURCE 200809L

#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "layout.h"
#include "parse.h"

struct raw {
	uint8_t *base;
	size_t size;
	struct region_geometry geo;
};

static int fail(const char *what, const char *detail)
{
	fprintf(stderr, "region_damage: %s: %s\n", what, detail);
	return 1;
}

static bool parse_u32(const char *text, uint32_t limit, uint32_t *out)
{
	char *end;
	unsigned long value = strtoul(text, &end, 10);
	if (end == text || *end != '\0' || value >= limit)
		return false;
	*out = (uint32_t)value;
	return true;
}

static bool parse_signed_size(const char *text, int64_t *out)
{
	bool negative = text[0] == '-';
	uint64_t bytes;
	if (!gpucap_parse_size(text + negative, &bytes) || bytes > GPUCAP_BYTES_MAX)
		return false;
	*out = negative ? -(int64_t)bytes : (int64_t)bytes;
	return true;
}

static struct lane_device *lane_device(const struct raw *raw, uint32_t slot, uint32_t lane, uint32_t device)
{
	uint8_t *slot_base = raw->base + raw->geo.slots_offset + (uint64_t)slot * raw->geo.slot_size;
	uint8_t *lane_base = slot_base + sizeof(struct slot_header) + (uint64_t)lane * raw->geo.lane_size;
	return (struct lane_device *)(lane_base + sizeof(struct lane_header)) + device;
}

static struct device_entry *device_entry(const struct raw *raw, uint32_t device)
{
	return (struct device_entry *)(raw->base + raw->geo.devices_offset) + device;
}

static int run_steps(const struct raw *raw, int argc, char **argv)
{
	uint32_t slots = raw->geo.slot_capacity, devices = raw->geo.device_capacity;
	for (int i = 2; i < argc;) {
		uint32_t slot, device, value;
		int64_t amount;
		if (strcmp(argv[i], "state") == 0 && i + 2 < argc) {
			if (!parse_u32(argv[i + 1], slots, &slot) ||
			    !parse_u32(argv[i + 2], UINT32_MAX, &value))
				return fail("bad state step", argv[i + 1]);
			_Atomic uint32_t *states =
			    (_Atomic uint32_t *)(raw->base + raw->geo.slot_states_offset);
			atomic_store(&states[slot], value);
			i += 3;
		} else if (strcmp(argv[i], "ledger") == 0 && i + 3 < argc) {
			if (!parse_u32(argv[i + 1], slots, &slot) ||
			    !parse_u32(argv[i + 2], devices, &device) ||
			    !parse_signed_size(argv[i + 3], &amount))
				return fail("bad ledger step", argv[i + 1]);
			uint32_t lane = 0;
			while (lane < raw->geo.lanes &&
			       granted_amount(atomic_load(&lane_device(raw, slot, lane, device)->granted)) !=
			           0)
				lane++;
			if (lane == raw->geo.lanes)
				return fail("ledger", "every lane of the slot holds bytes");
			_Atomic uint64_t *granted = &lane_device(raw, slot, lane, device)->granted;
			atomic_store(granted, granted_word(amount, granted_seq(atomic_load(granted))));
			i += 4;
		} else if (strcmp(argv[i], "total") == 0 && i + 2 < argc) {
			if (!parse_u32(argv[i + 1], devices, &device) ||
			    !parse_signed_size(argv[i + 2], &amount) || amount < 0)
				return fail("bad total step", argv[i + 1]);
			atomic_store(&device_entry(raw, device)->charge, charge_word((uint64_t)amount, 0));
			i += 3;
		} else {
			return fail("bad step", argv[i]);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return fail("usage", "region_damage PATH STEP...");
	int fd = open(argv[1], O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return fail("cannot open", argv[1]);
	struct stat st;
	if (fstat(fd, &st) != 0 || (size_t)st.st_size < REGION_HEADER_SIZE) {
		close(fd);
		return fail("not a region", argv[1]);
	}
	struct raw raw;
	raw.size = (size_t)st.st_size;
	raw.base = mmap(NULL, raw.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (raw.base == MAP_FAILED)
		return fail("cannot map", argv[1]);
	const struct region_header *header = (const struct region_header *)raw.base;
	raw.geo = region_geometry_for(header->device_capacity, header->slot_capacity);
	if (raw.geo.layout_size > raw.size)
		return fail("truncated region", argv[1]);
	int rc = run_steps(&raw, argc, argv);
	munmap(raw.base, raw.size);
	return rc;
}
