/* SPDX-License-Identifier: Apache-2.0 */
/* Host-PID resolution against a fake /proc: the match needs the slot's PID
 * namespace, its PID and a mapping of the region file, and a write that
 * races with the slot's reuse never names the new owner. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "host_pids.h"
#include "test_support.h"

#define HOST_NS      UINT64_C(4026531836)
#define CONTAINER_NS UINT64_C(4026532999)

static char proc_root[512];

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* A fake /proc/<pid>: ns/pid names ns, NSpid lists nspid, maps maps the
 * region file when map_region. */
static void fake_process(const char *pid, uint64_t ns, const char *nspid, const char *region, bool map_region)
{
	char path[1024], text[1024];
	snprintf(path, sizeof(path), "%s/%s", proc_root, pid);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/ns", proc_root, pid);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/%s/ns/pid", proc_root, pid);
	snprintf(text, sizeof(text), "pid:[%llu]", (unsigned long long)ns);
	unlink(path);
	assert_int_equal(symlink(text, path), 0);
	snprintf(path, sizeof(path), "%s/%s/status", proc_root, pid);
	snprintf(text, sizeof(text), "Name:\tworker\nNSpid:\t%s\nPPid:\t1\n", nspid);
	write_file(path, text);
	struct stat st;
	assert_int_equal(stat(region, &st), 0);
	snprintf(path, sizeof(path), "%s/%s/maps", proc_root, pid);
	if (map_region)
		snprintf(text, sizeof(text),
		         "7f0000000000-7f0000001000 r-xp 00000000 00:00 0 [vdso]\n"
		         "7f1000000000-7f1000100000 rw-s 00000000 %02x:%02x %llu %s\n",
		         major(st.st_dev), minor(st.st_dev), (unsigned long long)st.st_ino, region);
	else
		snprintf(text, sizeof(text), "7f0000000000-7f0000001000 r-xp 00000000 00:00 0 [vdso]\n");
	write_file(path, text);
}

static int setup(void **state)
{
	(void)state;
	snprintf(proc_root, sizeof(proc_root), "%s", scratch_path("proc"));
	mkdir(proc_root, 0755);
	gpucap_resolver_set_proc_root(proc_root);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	gpucap_resolver_set_proc_root(NULL);
	scratch_remove();
	return 0;
}

/* A process in the container namespace with in-namespace pid. */
static gpucap_region *claim_as(const char *path, int32_t pid, uint64_t ns)
{
	gpucap_region *r = test_attach(path);
	struct gpucap_slot_identity id = {.pid = pid, .pid_ns_inode = ns, .comm = "worker"};
	char err[512];
	assert_int_equal(gpucap_region_claim_slot(r, &id, err, sizeof(err)), GPUCAP_OK);
	return r;
}

static const struct gpucap_process_view *find_pid(const struct gpucap_snapshot *s, int32_t pid)
{
	for (uint32_t i = 0; i < s->process_count; i++) {
		if (s->processes[i].pid == pid)
			return &s->processes[i];
	}
	fail_msg("no process with pid %d", pid);
	return NULL;
}

static void test_resolves_only_the_matching_process(void **state)
{
	(void)state;
	const char *path = scratch_path("region");
	gpucap_region *a = claim_as(path, 7, CONTAINER_NS);
	gpucap_region *b = claim_as(path, 8, CONTAINER_NS);
	gpucap_region *c = claim_as(path, 9, CONTAINER_NS);
	fake_process("self", HOST_NS, "100", path, false);
	fake_process("4242", CONTAINER_NS, "4242\t7", path, true);
	/* Same PID in another namespace: must not be taken for pid 7. */
	fake_process("5000", CONTAINER_NS + 1, "5000\t8", path, true);
	fake_process("5001", CONTAINER_NS, "5001\t8", path, true);
	/* Right namespace and PID, but it does not map the region file. */
	fake_process("5002", CONTAINER_NS, "5002\t9", path, false);

	gpucap_region *resolver = test_attach(path);
	struct gpucap_resolve_counts counts;
	assert_int_equal(gpucap_resolve_host_pids(resolver, &counts), GPUCAP_OK);
	assert_int_equal(counts.unknown, 3);
	assert_int_equal(counts.resolved, 2);
	assert_int_equal(counts.not_found, 1);

	struct gpucap_snapshot *s = gpucap_region_snapshot(resolver);
	assert_int_equal(find_pid(s, 7)->host_pid, 4242);
	assert_int_equal(find_pid(s, 7)->host_pid_source, GPUCAP_HOST_PID_HOST_RESOLVER);
	assert_int_equal(find_pid(s, 8)->host_pid, 5001);
	assert_int_equal(find_pid(s, 9)->host_pid, 0);
	assert_int_equal(find_pid(s, 9)->host_pid_source, GPUCAP_HOST_PID_UNKNOWN);
	assert_int_equal(find_pid(s, 7)->pid_ns_inode, CONTAINER_NS);
	gpucap_snapshot_free(s);

	/* A second pass finds nothing left to do for the resolved ones. */
	assert_int_equal(gpucap_resolve_host_pids(resolver, &counts), GPUCAP_OK);
	assert_int_equal(counts.unknown, 1);
	gpucap_region_detach(a);
	gpucap_region_detach(b);
	gpucap_region_detach(c);
	gpucap_region_detach(resolver);
}

static void test_late_write_never_names_the_next_owner(void **state)
{
	(void)state;
	const char *path = scratch_path("region");
	gpucap_region *a = claim_as(path, 7, CONTAINER_NS);
	gpucap_region *resolver = test_attach(path);
	struct gpucap_snapshot *s = gpucap_region_snapshot(resolver);
	uint32_t slot = find_pid(s, 7)->slot, generation = find_pid(s, 7)->generation;
	gpucap_snapshot_free(s);

	/* The slot is freed and taken by another process before the resolver
	 * writes what it found for the first one. */
	gpucap_region_detach(a);
	assert_int_equal(gpucap_region_resolve_host_pid(resolver, slot, generation, 4242), GPUCAP_ERR_STALE);
	/* Claim until some handle lands on the freed slot (claims start at a
	 * random place); the others are let go afterwards. */
	gpucap_region *claimed[64], *b = NULL;
	unsigned claims = 0;
	while (!b && claims < 64) {
		claimed[claims] = claim_as(path, 7, CONTAINER_NS);
		if (gpucap_region_slot_index(claimed[claims]) == (int)slot)
			b = claimed[claims];
		claims++;
	}
	assert_non_null(b);
	for (unsigned i = 0; i < claims; i++) {
		if (claimed[i] != b)
			gpucap_region_detach(claimed[i]);
	}
	assert_int_equal(gpucap_region_resolve_host_pid(resolver, slot, generation, 4242), GPUCAP_ERR_STALE);
	s = gpucap_region_snapshot(resolver);
	assert_int_equal(find_pid(s, 7)->host_pid, 0);
	assert_int_equal(find_pid(s, 7)->host_pid_source, GPUCAP_HOST_PID_UNKNOWN);
	gpucap_snapshot_free(s);

	/* Bad arguments are refused, an observer cannot write. */
	assert_int_equal(gpucap_region_resolve_host_pid(resolver, 100000, generation + 1, 4242),
	                 GPUCAP_ERR_INVALID);
	assert_int_equal(gpucap_region_resolve_host_pid(resolver, slot, generation + 1, 0),
	                 GPUCAP_ERR_INVALID);
	struct gpucap_region_options observer = {.path = path, .observer = true};
	gpucap_region *o = NULL;
	char err[512];
	assert_int_equal(gpucap_region_attach(&observer, &o, err, sizeof(err)), GPUCAP_OK);
	assert_int_equal(gpucap_region_resolve_host_pid(o, slot, generation + 1, 4242), GPUCAP_ERR_INVALID);
	gpucap_region_detach(o);
	gpucap_region_detach(b);
	gpucap_region_detach(resolver);
}

static void test_refuses_off_the_host(void **state)
{
	(void)state;
	const char *path = scratch_path("region");
	gpucap_region *a = claim_as(path, 7, CONTAINER_NS);
	fake_process("self", CONTAINER_NS, "7", path, true);
	assert_false(gpucap_resolver_on_host());
	gpucap_region *resolver = test_attach(path);
	assert_int_equal(gpucap_resolve_host_pids(resolver, NULL), GPUCAP_ERR_INVALID);
	gpucap_region_detach(a);
	gpucap_region_detach(resolver);
}

static void test_existing_only_never_creates(void **state)
{
	(void)state;
	const char *path = scratch_path("absent");
	struct gpucap_region_options options = {.path = path, .existing_only = true};
	gpucap_region *r = NULL;
	char err[512];
	assert_int_not_equal(gpucap_region_attach(&options, &r, err, sizeof(err)), GPUCAP_OK);
	assert_null(r);
	struct stat st;
	assert_int_not_equal(stat(path, &st), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_resolves_only_the_matching_process, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_late_write_never_names_the_next_owner, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refuses_off_the_host, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_existing_only_never_creates, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
