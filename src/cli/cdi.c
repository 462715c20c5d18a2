/* SPDX-License-Identifier: Apache-2.0 */
/* gpucap cdi: write a Container Device Interface spec whose one device gives
 * a container gpucap: the library, /etc/ld.so.preload, a region directory,
 * the node directory, the limits file and the caps in the environment.
 * containerd and CRI-O apply such specs, and DRA drivers name their devices.
 *
 * CDI has no per-container templating. The region directory is per
 * container by construction: a fresh tmpfs for every container the device is
 * given to, unless --region-dir names a host directory (one region shared by
 * every container given this device: what a DRA driver writing one spec per
 * claim wants, and what the exporter on the host can read). */
#define _POSIX_C_SOURCE 200809L

#include "cli.h"
#include "json.h"
#include "options.h"
#include "parse.h"
#include "preload_library.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* cdiVersion 0.5.0: the newest the reference library in Debian 12 knows; the
 * runtimes of today accept it too. */
#define CDI_VERSION           "0.5.0"
#define CDI_KIND              "gpucap.io/cap"
#define CONTAINER_LIBRARY     "/usr/local/vgpu/libvgpu.so"
#define CONTAINER_PRELOAD     "/etc/ld.so.preload"
#define CONTAINER_REGION_DIR  "/run/gpucap"
#define CONTAINER_REGION      CONTAINER_REGION_DIR "/cudevshr.cache"
#define CONTAINER_NODE_DIR    "/run/gpucap-node"
#define CONTAINER_LIMITS_FILE "/etc/gpucap/limits.conf"
#define DEFAULT_PRELOAD_FILE  "/etc/gpucap/cdi/ld.so.preload"

enum { OPT_MEMORY, OPT_SM };

struct cdi_request {
	const char *name;
	bool has_memory, has_sm;
	uint64_t memory_bytes;
	uint32_t sm_percent;
	const char *library; /* host path; NULL: the installed one */
	const char *preload_file;
	const char *region_dir; /* NULL: a tmpfs per container */
	const char *node_dir;
	const char *limits_file;
	const char *output; /* NULL or "-": stdout */
};

/* CDI device names: letters, digits, '_', '.', ':' and '-', starting with a
 * letter or digit. */
static bool device_name_valid(const char *name)
{
	if (!name[0] || !((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z') ||
	                  (name[0] >= '0' && name[0] <= '9')))
		return false;
	for (const char *p = name; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == ':' || c == '-'))
			return false;
	}
	return true;
}

static int need_absolute(const char *option, const char *path)
{
	if (path && path[0] != '/')
		return cli_usage_error(cli_command_cdi.name, "--%s '%s' must be an absolute host path",
		                       option, path);
	return CLI_EXIT_OK;
}

static int parse_request(int argc, char **argv, struct cdi_request *req, int *exit_code)
{
	const char *command = cli_command_cdi.name;
	memset(req, 0, sizeof(*req));
	req->preload_file = DEFAULT_PRELOAD_FILE;
	const struct cli_option cdi_options[] = {
	    CLI_STORE_VALUE("name", 'n', &req->name),
	    CLI_OPTION_VALUE("memory", 'm', OPT_MEMORY),
	    CLI_OPTION_VALUE("sm", 0, OPT_SM),
	    CLI_STORE_VALUE("library", 0, &req->library),
	    CLI_STORE_VALUE("preload-file", 0, &req->preload_file),
	    CLI_STORE_VALUE("region-dir", 0, &req->region_dir),
	    CLI_STORE_VALUE("node-dir", 0, &req->node_dir),
	    CLI_STORE_VALUE("limits-file", 0, &req->limits_file),
	    CLI_STORE_VALUE("output", 'o', &req->output),
	};
	struct cli_option_loop loop = CLI_OPTION_LOOP(&cli_command_cdi, argc, argv, cdi_options, false);
	int id;
	while ((id = cli_option_loop_next(&loop)) >= 0) {
		const char *value = loop.value;
		if (id == OPT_MEMORY) {
			if (!gpucap_parse_size(value, &req->memory_bytes)) {
				*exit_code = cli_usage_error(command, "--memory '%s' is not %s", value,
				                             GPUCAP_SIZE_FORMS);
				return false;
			}
			req->has_memory = true;
		} else {
			if (!gpucap_parse_percent(value, &req->sm_percent)) {
				*exit_code = cli_usage_error(command, "--sm '%s' is not %s", value,
				                             GPUCAP_PERCENT_FORMS);
				return false;
			}
			req->has_sm = true;
		}
	}
	if (loop.stop) {
		*exit_code = loop.exit_code;
		return false;
	}
	if (!req->name) {
		*exit_code =
		    cli_usage_error(command, "--name NAME is required: the device's name in " CDI_KIND
		                             "=NAME, e.g. --name mem8g");
		return false;
	}
	if (!device_name_valid(req->name)) {
		*exit_code = cli_usage_error(
		    command,
		    "--name '%s' is not a CDI device name: letters, digits, '_', '.', ':' and '-', starting with a letter or digit",
		    req->name);
		return false;
	}
	const char *paths[][2] = {{"library", req->library},
	                          {"preload-file", req->preload_file},
	                          {"region-dir", req->region_dir},
	                          {"node-dir", req->node_dir},
	                          {"limits-file", req->limits_file}};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		int rc = need_absolute(paths[i][0], paths[i][1]);
		if (rc != CLI_EXIT_OK) {
			*exit_code = rc;
			return false;
		}
	}
	return true;
}

/* mkdir -p of path's directory (0755): /etc/cdi and /etc/gpucap/cdi need
 * not exist yet on a fresh node. */
static void make_parents(const char *path)
{
	char dir[PATH_MAX];
	if ((size_t)snprintf(dir, sizeof(dir), "%s", path) >= sizeof(dir))
		return;
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return;
	*slash = '\0';
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		mkdir(dir, 0755);
		*p = '/';
	}
	mkdir(dir, 0755); /* errors show when the file is created */
}

/* Write content to path through a temporary file in the same directory and
 * rename(2), so a runtime never mounts a half-written file. */
static int write_atomically(const char *path, const char *content, size_t len)
{
	const char *command = cli_command_cdi.name;
	make_parents(path);
	char tmp[PATH_MAX];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= sizeof(tmp))
		return cli_failure(command, "%s: path too long", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0)
		return cli_failure(command,
		                   "cannot create %s: %s; create its directory or choose another path", tmp,
		                   strerror(errno));
	size_t done = 0;
	while (done < len) {
		ssize_t n = write(fd, content + done, len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int err = errno;
			close(fd);
			unlink(tmp);
			return cli_failure(command, "cannot write %s: %s", tmp, strerror(err));
		}
		done += (size_t)n;
	}
	if (fsync(fd) != 0 || close(fd) != 0) {
		int err = errno;
		unlink(tmp);
		return cli_failure(command, "cannot write %s: %s", tmp, strerror(err));
	}
	if (rename(tmp, path) != 0) {
		int err = errno;
		unlink(tmp);
		return cli_failure(command, "cannot rename %s to %s: %s", tmp, path, strerror(err));
	}
	return CLI_EXIT_OK;
}

static void mount_edit(struct json_writer *w, const char *host, const char *container, const char *type,
                       const char *const *options)
{
	json_object_begin(w);
	json_member_string(w, "hostPath", host);
	json_member_string(w, "containerPath", container);
	if (type)
		json_member_string(w, "type", type);
	json_key(w, "options");
	json_array_begin(w);
	for (const char *const *o = options; *o; o++)
		json_string(w, *o);
	json_array_end(w);
	json_object_end(w);
}

static void env_uint(struct json_writer *w, const char *name, uint64_t value)
{
	char entry[64];
	snprintf(entry, sizeof(entry), "%s=%" PRIu64, name, value);
	json_string(w, entry);
}

static void env_string(struct json_writer *w, const char *name, const char *value)
{
	size_t len = strlen(name) + 1 + strlen(value) + 1;
	char *entry = malloc(len);
	if (!entry) {
		w->misused = true; /* reported by json_finish as a failed write */
		return;
	}
	snprintf(entry, len, "%s=%s", name, value);
	json_string(w, entry);
	free(entry);
}

static bool write_spec(FILE *out, const struct cdi_request *req, const char *library)
{
	static const char *const read_only[] = {"ro", "nosuid", "nodev", "bind", NULL};
	static const char *const read_write[] = {"rw", "nosuid", "nodev", "bind", NULL};
	/* mode 1777: any user of the container can create the region; the file
	 * itself is then private to its creator (0600). */
	static const char *const scratch[] = {"nosuid", "nodev", "noexec", "mode=1777", NULL};

	struct json_writer w;
	json_init(&w, out);
	json_object_begin(&w);
	json_member_string(&w, "cdiVersion", CDI_VERSION);
	json_member_string(&w, "kind", CDI_KIND);
	json_key(&w, "devices");
	json_array_begin(&w);
	json_object_begin(&w);
	json_member_string(&w, "name", req->name);
	json_key(&w, "containerEdits");
	json_object_begin(&w);

	json_key(&w, "env");
	json_array_begin(&w);
	env_string(&w, "GPUCAP_REGION", CONTAINER_REGION);
	if (req->has_memory)
		env_uint(&w, "CUDA_DEVICE_MEMORY_LIMIT", req->memory_bytes);
	if (req->has_sm)
		env_uint(&w, "CUDA_DEVICE_SM_LIMIT", req->sm_percent);
	/* Set, even empty: an empty GPUCAP_NODE_DIR keeps the library from
	 * taking turns in a /tmp/vgpulock that another injector mounted. */
	env_string(&w, "GPUCAP_NODE_DIR", req->node_dir ? CONTAINER_NODE_DIR : "");
	json_array_end(&w);

	json_key(&w, "mounts");
	json_array_begin(&w);
	mount_edit(&w, library, CONTAINER_LIBRARY, NULL, read_only);
	mount_edit(&w, req->preload_file, CONTAINER_PRELOAD, NULL, read_only);
	if (req->region_dir)
		mount_edit(&w, req->region_dir, CONTAINER_REGION_DIR, NULL, read_write);
	else
		mount_edit(&w, "tmpfs", CONTAINER_REGION_DIR, "tmpfs", scratch);
	if (req->node_dir)
		mount_edit(&w, req->node_dir, CONTAINER_NODE_DIR, NULL, read_write);
	if (req->limits_file)
		mount_edit(&w, req->limits_file, CONTAINER_LIMITS_FILE, NULL, read_only);
	json_array_end(&w);

	json_object_end(&w);
	json_object_end(&w);
	json_array_end(&w);
	json_object_end(&w);
	return json_finish(&w);
}

static int cdi_run(int argc, char **argv)
{
	const char *command = cli_command_cdi.name;
	struct cdi_request req;
	int exit_code = CLI_EXIT_OK;
	if (!parse_request(argc, argv, &req, &exit_code))
		return exit_code;

	char library[PATH_MAX];
	if (req.library) {
		snprintf(library, sizeof(library), "%s", req.library);
	} else {
		int rc = cli_find_preload_library(command, library, sizeof(library));
		if (rc != CLI_EXIT_OK)
			return rc;
	}

	/* /etc/ld.so.preload in the container: a one-line host file. */
	static const char preload_line[] = CONTAINER_LIBRARY "\n";
	int rc = write_atomically(req.preload_file, preload_line, sizeof(preload_line) - 1);
	if (rc != CLI_EXIT_OK)
		return rc;

	char *spec = NULL;
	size_t spec_len = 0;
	FILE *buffer = open_memstream(&spec, &spec_len);
	if (!buffer)
		return cli_failure(command, "out of memory");
	bool ok = write_spec(buffer, &req, library);
	if (fclose(buffer) != 0 || !ok) {
		free(spec);
		return cli_failure(command, "cannot compose the spec (out of memory)");
	}
	if (!req.output || strcmp(req.output, "-") == 0) {
		fwrite(spec, 1, spec_len, stdout);
		free(spec);
		return cli_finish_output(command);
	}
	rc = write_atomically(req.output, spec, spec_len);
	free(spec);
	return rc;
}

const struct cli_command cli_command_cdi = {
    .name = "cdi",
    .summary = "write a CDI spec that injects gpucap into containers",
    .usage =
        "usage: gpucap cdi --name NAME [--memory SIZE] [--sm PERCENT] [--output FILE]\n"
        "                  [--library PATH] [--preload-file PATH] [--region-dir DIR]\n"
        "                  [--node-dir DIR] [--limits-file PATH]\n"
        "\n"
        "Write a Container Device Interface spec (cdiVersion " CDI_VERSION ") with one device,\n" CDI_KIND
        "=NAME. A container given that device gets the library at\n" CONTAINER_LIBRARY
        ", an " CONTAINER_PRELOAD " that loads it, a region\n"
        "directory at " CONTAINER_REGION_DIR " and the caps in its environment. Also writes\n"
        "the one-line preload file the spec mounts. Paths are host paths.\n"
        "\n"
        "  -n, --name NAME      the device name, e.g. mem8g (request " CDI_KIND "=mem8g)\n"
        "  -m, --memory SIZE    memory cap per device: CUDA_DEVICE_MEMORY_LIMIT\n"
        "  --sm PERCENT         SM cap per device: CUDA_DEVICE_SM_LIMIT\n"
        "  -o, --output FILE    where to write the spec, e.g.\n"
        "                       /etc/cdi/gpucap.io-cap-mem8g.json (default: stdout)\n"
        "  --library PATH       the library on the host (default: the installed one)\n"
        "  --preload-file PATH  the preload file to write and mount\n"
        "                       (default " DEFAULT_PRELOAD_FILE ")\n"
        "  --region-dir DIR     a host directory for the region, shared by every\n"
        "                       container given this device (default: a fresh tmpfs\n"
        "                       per container)\n"
        "  --node-dir DIR       the node directory, mounted read-write, where capped\n"
        "                       containers on one GPU take turns (GPUCAP_NODE_DIR)\n"
        "  --limits-file PATH   a limits file, mounted read-only at\n"
        "                       " CONTAINER_LIMITS_FILE "\n"
        "  -h, --help           show this help\n"
        "\n"
        "exit status: 0 written, 1 cannot write, 2 usage error.\n",
    .run = cdi_run,
};
