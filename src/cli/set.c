/* SPDX-License-Identifier: Apache-2.0 */
/* gpucap set: change the memory and SM limits of devices in a live region,
 * and record every change in the region's audit log. */
#define _POSIX_C_SOURCE 200809L

#include "audit.h"
#include "cli.h"
#include "default_paths.h"
#include "format.h"
#include "json.h"
#include "options.h"
#include "parse.h"
#include "policy.h"
#include "region_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

struct set_request {
	bool json;
	const char *file;
	const char *memory; /* as typed; NULL: unchanged */
	uint64_t memory_bytes;
	const char *sm; /* as typed; NULL: unchanged */
	uint32_t sm_limit;
	const char *device; /* "all", an index or a UUID (prefix) */
};

/* What was done to one device, for the report. */
struct set_result {
	const struct gpucap_device_view *device;
	uint64_t old_limit, new_limit;
	uint32_t old_sm, new_sm;
};

static int parse_request(int argc, char **argv, struct set_request *req, bool *done)
{
	const char *command = cli_command_set.name;
	memset(req, 0, sizeof(*req));
	req->device = "all";
	const struct cli_option set_options[] = {
	    CLI_STORE_FLAG("json", 0, &req->json),        CLI_STORE_VALUE("file", 'f', &req->file),
	    CLI_STORE_VALUE("memory", 'm', &req->memory), CLI_STORE_VALUE("sm", 0, &req->sm),
	    CLI_STORE_VALUE("device", 'd', &req->device),
	};
	struct cli_option_loop loop = CLI_OPTION_LOOP(&cli_command_set, argc, argv, set_options, false);
	*done = !cli_option_loop_run(&loop);
	if (*done)
		return loop.exit_code;
	if (!req->memory && !req->sm)
		return cli_usage_error(command,
		                       "nothing to change: give --memory SIZE, --sm PERCENT or both");
	if (req->memory) {
		if (strcmp(req->memory, "unlimited") == 0) {
			req->memory_bytes = GPUCAP_UNLIMITED;
		} else if (!gpucap_parse_size(req->memory, &req->memory_bytes)) {
			return cli_usage_error(command,
			                       "invalid -m/--memory value '%s': expected " GPUCAP_SIZE_FORMS
			                       ", or unlimited",
			                       req->memory);
		} else if (req->memory_bytes == 0) {
			return cli_usage_error(
			    command,
			    "-m/--memory must be more than 0 bytes; write 'unlimited' to remove the limit");
		} else if (req->memory_bytes >= GPUCAP_BYTES_MAX) {
			return cli_usage_error(
			    command,
			    "-m/--memory '%s' is not below the largest limit (256 TiB - 1 byte); write 'unlimited' to remove the limit",
			    req->memory);
		}
	}
	if (req->sm && !gpucap_parse_percent(req->sm, &req->sm_limit))
		return cli_usage_error(command, "invalid --sm value '%s': expected " GPUCAP_PERCENT_FORMS,
		                       req->sm);
	if (!req->device[0])
		return cli_usage_error(command, "--device needs a value: all, a device index or a GPU UUID");
	return CLI_EXIT_OK;
}

/* The snapshot devices the request names; count in *count. Prints the error
 * and returns false when none matches. */
static bool select_devices(const struct gpucap_snapshot *snapshot, const char *which, const char *path,
                           const struct gpucap_device_view **out, uint32_t *count)
{
	const char *command = cli_command_set.name;
	*count = 0;
	if (snapshot->device_count == 0) {
		cli_failure(
		    command,
		    "no devices are registered in region %s yet; start a gpucap-limited process on the GPU first",
		    path);
		return false;
	}
	if (strcmp(which, "all") == 0) {
		for (uint32_t i = 0; i < snapshot->device_count; i++)
			out[(*count)++] = &snapshot->devices[i];
		return true;
	}
	char *end;
	long index = strtol(which, &end, 10);
	bool numeric = *which >= '0' && *which <= '9' && *end == '\0';
	size_t len = strlen(which);
	for (uint32_t i = 0; i < snapshot->device_count; i++) {
		const struct gpucap_device_view *d = &snapshot->devices[i];
		bool hit = numeric ? d->index == index : strncmp(d->uuid, which, len) == 0;
		if (!hit)
			continue;
		if (*count == 1 && !numeric) {
			cli_failure(
			    command,
			    "--device '%s' matches more than one device in %s; give more of the UUID or the device index",
			    which, path);
			return false;
		}
		out[(*count)++] = d;
		if (!numeric && strlen(d->uuid) == len)
			break;
	}
	if (*count == 0) {
		cli_failure(command,
		            "no device '%s' in region %s; 'gpucap status --file %s' lists the devices", which,
		            path, path);
		return false;
	}
	return true;
}

static void print_text(const struct set_result *results, uint32_t count, const struct set_request *req,
                       uint64_t file_cap, const struct gpucap_limits_file *file)
{
	for (uint32_t i = 0; i < count; i++) {
		const struct set_result *r = &results[i];
		int index = r->device->index;
		char old_text[CLI_CELL_MAX], new_text[CLI_CELL_MAX], charged[CLI_CELL_MAX], cap[CLI_CELL_MAX];
		if (req->memory) {
			printf("device %d (%s): memory limit %s -> %s\n", index, r->device->uuid,
			       cli_format_limit(r->old_limit, old_text, sizeof(old_text)),
			       cli_format_limit(r->new_limit, new_text, sizeof(new_text)));
			if (!cli_limit_is_unlimited(r->new_limit) && r->new_limit < r->device->charged_bytes)
				printf(
				    "device %d: limit %s is below the %s charged; new allocations are refused until usage falls\n",
				    index, new_text,
				    cli_format_bytes(r->device->charged_bytes, charged, sizeof(charged)));
			if (r->new_limit > file_cap)
				printf(
				    "device %d: limit %s has no effect beyond the limits file's cap of %s (%s:%u); processes keep the file's cap\n",
				    index, new_text, cli_format_bytes(file_cap, cap, sizeof(cap)), file->path,
				    file->memory_all.line);
		}
		if (req->sm) {
			printf("device %d (%s): SM limit %s -> %s (running processes follow within 1 s)\n",
			       index, r->device->uuid,
			       cli_format_sm_limit(r->old_sm, old_text, sizeof(old_text)),
			       cli_format_sm_limit(r->new_sm, new_text, sizeof(new_text)));
		}
	}
}

static void json_limit(struct json_writer *w, const char *key, uint64_t bytes)
{
	json_key(w, key);
	if (cli_limit_is_unlimited(bytes))
		json_null(w);
	else
		json_uint(w, bytes);
}

static void json_sm(struct json_writer *w, const char *key, uint32_t sm)
{
	json_key(w, key);
	if (cli_sm_limit_is_none(sm))
		json_null(w);
	else
		json_uint(w, sm);
}

static bool print_json(const struct set_result *results, uint32_t count, const struct set_request *req,
                       const char *path, const char *audit_path, uint64_t file_cap)
{
	struct json_writer w;
	json_init(&w, stdout);
	json_object_begin(&w);
	json_member_uint(&w, "schema_version", 1);
	json_member_string(&w, "path", path);
	json_member_string(&w, "audit_log", audit_path);
	json_key(&w, "devices");
	json_array_begin(&w);
	for (uint32_t i = 0; i < count; i++) {
		const struct set_result *r = &results[i];
		json_object_begin(&w);
		json_member_int(&w, "index", r->device->index);
		json_key(&w, "uuid");
		json_string_bounded(&w, r->device->uuid, GPUCAP_UUID_MAX);
		json_member_uint(&w, "charged_bytes", r->device->charged_bytes);
		if (req->memory) {
			json_limit(&w, "old_limit_bytes", r->old_limit);
			json_limit(&w, "new_limit_bytes", r->new_limit);
			json_member_bool(&w, "below_charged",
			                 !cli_limit_is_unlimited(r->new_limit) &&
			                     r->new_limit < r->device->charged_bytes);
			json_limit(&w, "limits_file_cap_bytes", file_cap);
		}
		if (req->sm) {
			json_sm(&w, "old_sm_limit_percent", r->old_sm);
			json_sm(&w, "new_sm_limit_percent", r->new_sm);
		}
		json_object_end(&w);
	}
	json_array_end(&w);
	json_object_end(&w);
	return json_finish(&w);
}

/* One limit change; it writes the mapping, so it runs under the SIGBUS
 * guard with its result kept here. */
struct limit_job {
	gpucap_region *region;
	int device;
	bool sm;
	uint64_t memory_bytes;
	uint32_t sm_limit;
	gpucap_status status;
};

static void set_limit_guarded(void *arg)
{
	struct limit_job *job = arg;
	job->status = job->sm ? gpucap_region_set_sm_limit(job->region, job->device, job->sm_limit)
	                      : gpucap_region_set_limit(job->region, job->device, job->memory_bytes);
}

/* GPUCAP_ERR_IO when the file shrank under the change (already reported). */
static gpucap_status set_limit(gpucap_region *region, int device, bool sm, uint64_t memory_bytes,
                               uint32_t sm_limit, bool *faulted)
{
	struct limit_job job = {.region = region,
	                        .device = device,
	                        .sm = sm,
	                        .memory_bytes = memory_bytes,
	                        .sm_limit = sm_limit,
	                        .status = GPUCAP_ERR_IO};
	*faulted = !cli_region_guarded(cli_command_set.name, region, set_limit_guarded, &job);
	return job.status;
}

static int apply(gpucap_region *region, const struct set_request *req, const struct cli_region_path *where,
                 const struct gpucap_snapshot *snapshot, const struct gpucap_limits_file *file)
{
	const char *command = cli_command_set.name;
	const struct gpucap_device_view *chosen[64];
	uint32_t count;
	if (!select_devices(snapshot, req->device, where->path, chosen, &count))
		return CLI_EXIT_FAILURE;

	/* The audit log opens before anything changes: a change that cannot be
	 * recorded is not made. */
	struct cli_audit audit;
	if (!cli_audit_open(command, where->path, &audit))
		return CLI_EXIT_FAILURE;

	/* What a process on this node would be capped at by the limits file,
	 * for the report. Per-device entries depend on each process's CUDA
	 * ordinals, so only the file-wide "memory" is compared. */
	uint64_t file_cap = file->state == GPUCAP_LIMITS_FILE_LOADED && file->memory_all.set
	                        ? file->memory_all.value
	                        : GPUCAP_UNLIMITED;

	struct set_result results[64];
	int rc = CLI_EXIT_OK;
	for (uint32_t i = 0; i < count && rc == CLI_EXIT_OK; i++) {
		const struct gpucap_device_view *d = chosen[i];
		struct set_result *r = &results[i];
		r->device = d;
		r->old_limit = r->new_limit = d->limit_bytes;
		r->old_sm = r->new_sm = d->sm_limit;
		if (req->memory) {
			bool faulted;
			gpucap_status st = set_limit(region, d->index, false, req->memory_bytes, 0, &faulted);
			if (faulted) {
				rc = CLI_EXIT_FAILURE;
				break;
			}
			if (st != GPUCAP_OK) {
				rc =
				    cli_failure(command, "cannot set the memory limit of device %d in %s: %s",
				                d->index, where->path, gpucap_status_text(st));
				break;
			}
			r->new_limit = req->memory_bytes;
			if (!cli_audit_record(&audit, d, "memory_bytes", r->old_limit, r->new_limit, true))
				rc = CLI_EXIT_FAILURE;
		}
		if (req->sm && rc == CLI_EXIT_OK) {
			bool faulted;
			gpucap_status st = set_limit(region, d->index, true, 0, req->sm_limit, &faulted);
			if (faulted) {
				rc = CLI_EXIT_FAILURE;
				break;
			}
			if (st != GPUCAP_OK) {
				rc = cli_failure(command, "cannot set the SM limit of device %d in %s: %s",
				                 d->index, where->path, gpucap_status_text(st));
				break;
			}
			r->new_sm = req->sm_limit == 100 ? 0 : req->sm_limit;
			if (!cli_audit_record(&audit, d, "sm_percent", r->old_sm, r->new_sm, false))
				rc = CLI_EXIT_FAILURE;
		}
	}
	cli_audit_close(&audit);
	if (rc != CLI_EXIT_OK)
		return rc;
	if (req->json) {
		if (!print_json(results, count, req, where->path, audit.path, file_cap))
			return cli_failure(command, "cannot format the report for %s", where->path);
	} else {
		print_text(results, count, req, file_cap, file);
	}
	return cli_finish_output(command);
}

static int set_run(int argc, char **argv)
{
	const char *command = cli_command_set.name;
	struct set_request req;
	bool done;
	int rc = parse_request(argc, argv, &req, &done);
	if (rc != CLI_EXIT_OK || done)
		return rc;

	/* The region as the library would pick it: --file, else the limits
	 * file's, else the environment's. */
	static struct gpucap_limits_file file;
	static struct gpucap_policy policy;
	gpucap_policy_load_file(environ, false, &file);
	struct gpucap_policy_input input = {.env = environ, .file = &file, .region_flag = req.file};
	gpucap_policy_resolve(&input, &policy);
	for (unsigned i = 0; policy.region_refused && i < policy.diag_count; i++) {
		if (policy.diags[i].setting == GPUCAP_SETTING_REGION)
			return cli_failure(command, "%s; or name the region with --file",
			                   policy.diags[i].text);
	}
	struct cli_region_path where = {policy.region_path, policy.region_from.origin == GPUCAP_FROM_FILE
	                                                        ? "the limits file's region line"
	                                                    : policy.region_from.name[0]
	                                                        ? policy.region_from.name
	                                                        : "default"};
	gpucap_region *region;
	struct gpucap_snapshot *snapshot;
	rc = cli_region_attach_snapshot(command, &where, false, &region, &snapshot);
	if (rc != CLI_EXIT_OK)
		return rc;
	rc = apply(region, &req, &where, snapshot, &file);
	gpucap_snapshot_free(snapshot);
	gpucap_region_detach(region);
	return rc;
}

const struct cli_command cli_command_set = {
    .name = "set",
    .summary = "change device limits in a live region",
    .usage = "usage: gpucap set [--memory SIZE] [--sm PERCENT] [--device all|INDEX|UUID] [--json]\n"
             "                  [--file PATH]\n"
             "\n"
             "Change the limits the running processes share. A new memory limit applies to the\n"
             "next allocation of every process at once; lowering it below what is charged is\n"
             "allowed (new allocations are refused until usage falls). Running processes follow a\n"
             "new SM limit within 1 s. A limits file still caps every process at its own value.\n"
             "Each change is appended to the audit log <region path>.audit.\n"
             "\n"
             "  -m, --memory SIZE    new memory limit: a byte count with an optional k, m, g or t\n"
             "                       suffix (8g, 512m), or 'unlimited'\n"
             "      --sm PERCENT     new SM limit, 1 to 99; 0 or 100 for none\n"
             "  -d, --device DEV     'all' (the default), a device index as 'gpucap status' shows\n"
             "                       it, or a GPU UUID (a unique prefix is enough)\n"
             "      --json           print one JSON object (schema in docs/cli.md)\n"
             "  -f, --file PATH      region file (default: $GPUCAP_REGION, then\n"
             "                       $CUDA_DEVICE_MEMORY_SHARED_CACHE, then\n"
             "                       " GPUCAP_DEFAULT_REGION_HELP ")\n"
             "  -h, --help           show this help\n",
    .run = set_run,
};
