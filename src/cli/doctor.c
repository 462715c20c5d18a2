/* SPDX-License-Identifier: Apache-2.0 */
/* gpucap doctor: check what gpucap depends on, one line per check, each
 * with its fix. */
#define _GNU_SOURCE

#include "binding.h"
#include "cli.h"
#include "default_paths.h"
#include "format.h"
#include "json.h"
#include "options.h"
#include "policy.h"
#include "preload_library.h"
#include "region_file.h"

#include <region_reader.h>

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* The symbol libgpucap.so exports for this check (src/hook/config.c). */
#define PROBE_SYMBOL "gpucap_preload_probe"
/* Exit codes of the probe child. */
#define PROBE_LOADED     0
#define PROBE_NOT_LOADED 3

enum check_status { CHECK_OK, CHECK_WARN, CHECK_FAIL };

static const char *const status_names[] = {"ok", "warn", "fail"};

struct check {
	enum check_status status;
	char name[32];
	char message[1536];
	char fix[512];
};

struct doctor {
	struct check *checks;
	size_t count;
	bool out_of_memory;
};

__attribute__((format(printf, 5, 6))) static void add(struct doctor *d, enum check_status status,
                                                      const char *name, const char *fix, const char *fmt, ...)
{
	struct check *grown = realloc(d->checks, (d->count + 1) * sizeof(*grown));
	if (!grown) {
		d->out_of_memory = true;
		return;
	}
	d->checks = grown;
	struct check *c = &d->checks[d->count++];
	c->status = status;
	snprintf(c->name, sizeof(c->name), "%s", name);
	snprintf(c->fix, sizeof(c->fix), "%s", fix ? fix : "");
	va_list args;
	va_start(args, fmt);
	vsnprintf(c->message, sizeof(c->message), fmt, args);
	va_end(args);
	for (char *p = c->message; *p; p++) {
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	}
}

/* ---- Driver libraries ---------------------------------------------------- */

static void check_library(struct doctor *d, const char *name, const char *soname, const char *override_var,
                          const char *what)
{
	const char *override = gpucap_policy_env_get(environ, override_var);
	const char *path = override && override[0] ? override : soname;
	void *handle = dlopen(path, RTLD_LAZY | RTLD_LOCAL);
	if (handle) {
		dlclose(handle);
		add(d, CHECK_OK, name, NULL, "%s loads", path);
		return;
	}
	/* No GPU here (a CI machine, a login node): worth knowing, not fatal. */
	add(d, CHECK_WARN, name,
	    "install the NVIDIA driver, or start the container with the NVIDIA runtime so that it is mounted",
	    "%s cannot be loaded, so %s", path, what);
}

/* ---- Preload ------------------------------------------------------------- */

/* Run in the child: is libgpucap.so in this process? */
static int probe_child(void)
{
	return dlsym(RTLD_DEFAULT, PROBE_SYMBOL) ? PROBE_LOADED : PROBE_NOT_LOADED;
}

/* cli_find_preload_library reports on stderr; keep its line for the check. */
static bool find_library(char *path, size_t path_len, char *why, size_t why_len)
{
	int pipefd[2];
	if (pipe(pipefd) != 0) {
		snprintf(why, why_len, "cannot create a pipe: %s", strerror(errno));
		return false;
	}
	fflush(stderr);
	int saved = dup(STDERR_FILENO);
	dup2(pipefd[1], STDERR_FILENO);
	int rc = cli_find_preload_library(cli_command_doctor.name, path, path_len);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(pipefd[1]);
	ssize_t got = read(pipefd[0], why, why_len - 1);
	close(pipefd[0]);
	why[got > 0 ? got : 0] = '\0';
	why[strcspn(why, "\n")] = '\0';
	const char *prefix = "gpucap doctor: ";
	if (strncmp(why, prefix, strlen(prefix)) == 0)
		memmove(why, why + strlen(prefix), strlen(why) - strlen(prefix) + 1);
	return rc == CLI_EXIT_OK;
}

static void check_preload(struct doctor *d)
{
	char library[PATH_MAX], why[2048];
	if (!find_library(library, sizeof(library), why, sizeof(why))) {
		add(d, CHECK_FAIL, "preload", NULL, "%s", why);
		return;
	}
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0) {
		add(d, CHECK_FAIL, "preload", "run gpucap where /proc is mounted",
		    "cannot find the gpucap binary to start a child (/proc/self/exe: %s)", strerror(errno));
		return;
	}
	self[n] = '\0';
	char *value = cli_preload_prepend(library, getenv("LD_PRELOAD"));
	int pipefd[2];
	if (!value || pipe(pipefd) != 0) {
		free(value);
		add(d, CHECK_FAIL, "preload", NULL, "cannot start the probe child: out of resources");
		return;
	}
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid == 0) {
		close(pipefd[0]);
		dup2(pipefd[1], STDERR_FILENO);
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0)
			dup2(null, STDOUT_FILENO);
		setenv("LD_PRELOAD", value, 1);
		execl(self, self, "doctor", "--preload-probe", (char *)NULL);
		_exit(127);
	}
	free(value);
	close(pipefd[1]);
	char loader[1024] = "";
	size_t used = 0;
	ssize_t got;
	char buf[256];
	while ((got = read(pipefd[0], buf, sizeof(buf))) > 0) {
		size_t take =
		    (size_t)got < sizeof(loader) - 1 - used ? (size_t)got : sizeof(loader) - 1 - used;
		memcpy(loader + used, buf, take);
		used += take;
	}
	loader[used] = '\0';
	loader[strcspn(loader, "\n")] = '\0';
	close(pipefd[0]);
	int status = 0;
	if (pid < 0 || waitpid(pid, &status, 0) != pid) {
		add(d, CHECK_FAIL, "preload", NULL, "cannot start the probe child: %s", strerror(errno));
		return;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == PROBE_LOADED) {
		add(d, CHECK_OK, "preload", NULL, "%s is loaded into a child started with LD_PRELOAD",
		    library);
		return;
	}
	add(d, CHECK_FAIL, "preload",
	    "check that the file is a libgpucap.so built for this machine, or set GPUCAP_LIBRARY to one",
	    "%s was not loaded into a child started with LD_PRELOAD%s%s%s", library, loader[0] ? " (" : "",
	    loader, loader[0] ? ")" : "");
}

/* ---- Region --------------------------------------------------------------- */

/* The directories HAMi's device plugin makes 0777: the per-container one
 * (/usr/local/vgpu in the container, /usr/local/vgpu/containers/<pod
 * uid>_<container> on the host) and its lock directory /tmp/vgpulock. Also
 * under a host root mounted elsewhere (/host/usr/local/vgpu/...). */
static bool ends_with(const char *s, const char *suffix)
{
	size_t len = strlen(s), suffix_len = strlen(suffix);
	return len >= suffix_len && strcmp(s + len - suffix_len, suffix) == 0;
}

static bool hami_directory(const char *dir)
{
	return ends_with(dir, "/usr/local/vgpu") || ends_with(dir, "/tmp/vgpulock") ||
	       strstr(dir, "/usr/local/vgpu/containers/") != NULL;
}

static void check_permissions(struct doctor *d, const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return;
	unsigned mode = (unsigned)(st.st_mode & 07777);
	if (st.st_mode & S_IWOTH)
		add(d, CHECK_FAIL, "permissions", "chmod o-w on the region file",
		    "region %s has mode %04o: anyone can write it and change its limits and charges", path,
		    mode);
	else if (st.st_uid != geteuid() && !(st.st_mode & S_IWGRP))
		add(d, CHECK_WARN, "permissions",
		    "run as the file's owner, or have the owner share it with your group",
		    "region %s is owned by uid %u, not by you (uid %u): your processes would fail closed",
		    path, (unsigned)st.st_uid, (unsigned)geteuid());
	else
		add(d, CHECK_OK, "permissions", NULL, "region %s: owner uid %u, mode %04o", path,
		    (unsigned)st.st_uid, mode);

	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == dir)
		dir[1] = '\0';
	else
		*slash = '\0';
	struct stat ds;
	if (stat(dir, &ds) != 0)
		return;
	if ((ds.st_mode & S_IWOTH) && !(ds.st_mode & S_ISVTX) && hami_directory(dir))
		add(d, CHECK_WARN, "permissions",
		    "accept it on a HAMi node, or give gpucap its own region directory (docs/deploy-hami.md)",
		    "directory %s is HAMi's, mode %04o: any process that can reach it (every process of the container, any user on the host) can delete or replace the region and so reset its charges; HAMi's device plugin creates it so",
		    dir, (unsigned)(ds.st_mode & 07777));
	else if ((ds.st_mode & S_IWOTH) && !(ds.st_mode & S_ISVTX))
		add(d, CHECK_FAIL, "permissions", "chmod +t on the directory, or move the region elsewhere",
		    "directory %s is writable by everyone without the sticky bit: anyone can replace the region",
		    dir);
	else
		add(d, CHECK_OK, "permissions", NULL, "directory %s: mode %04o%s", dir,
		    (unsigned)(ds.st_mode & 07777), (ds.st_mode & S_ISVTX) ? " (sticky)" : "");
}

/* A device's entry in the region holds for every process on it, whatever
 * their environment says: the first process registered it, and only
 * "gpucap set" changes it. So the limits in force are the region's; where
 * this shell sets one memory limit for every device and it differs, say so. */
static void check_region_limits(struct doctor *d, const struct gpucap_snapshot *s, const char *path,
                                const struct gpucap_policy *policy)
{
	const struct gpucap_policy_device *shell = &policy->device[0];
	for (int i = 1; i < GPUCAP_MAX_DEVICES && shell; i++) {
		if (policy->device[i].memory_bytes != shell->memory_bytes)
			shell = NULL; /* per-ordinal settings: no one value to compare with */
	}
	/* Nothing set in this shell: it asks for nothing, so nothing differs. */
	if (shell && (shell->memory_closed || (!shell->env_memory.name[0] && !shell->file_memory.name[0])))
		shell = NULL;
	for (uint32_t i = 0; i < s->device_count; i++) {
		const struct gpucap_device_view *dev = &s->devices[i];
		char limit[CLI_CELL_MAX], sm[CLI_CELL_MAX], asked[CLI_CELL_MAX];
		cli_format_limit(dev->limit_bytes, limit, sizeof(limit));
		cli_format_sm_limit(dev->sm_limit > 0 && dev->sm_limit < 100 ? dev->sm_limit : 0, sm,
		                    sizeof(sm));
		if (!shell || shell->memory_bytes == dev->limit_bytes) {
			add(d, CHECK_OK, "limits", NULL,
			    "in force on device %d (%.*s) of the region: memory %s, SM %s (the region's entry holds for every process on it)",
			    dev->index, GPUCAP_UUID_MAX, dev->uuid, limit, sm);
			continue;
		}
		cli_format_limit(shell->memory_bytes, asked, sizeof(asked));
		char fix[512];
		snprintf(
		    fix, sizeof(fix),
		    "to apply this shell's limit there, run 'gpucap set --memory SIZE --device %d --file %s'",
		    dev->index, path);
		add(d, CHECK_WARN, "limits", fix,
		    "in force on device %d (%.*s) of region %s: memory %s, SM %s; a process started from this shell asks for memory %s (%s), which does not apply there (the region's entry holds)",
		    dev->index, GPUCAP_UUID_MAX, dev->uuid, path, limit, sm, asked,
		    shell->env_memory.name[0] ? shell->env_memory.name : shell->file_memory.name);
	}
}

/* Under a limits file: whether processes of another region still run
 * under it, which makes new processes of this region fail closed. */
static void check_binding(struct doctor *d, const char *limits_file, const char *region_path,
                          uint64_t identity)
{
	int other = gpucap_binding_other_held(limits_file, gpucap_binding_scope(), identity);
	if (other < 0)
		add(d, CHECK_WARN, "binding",
		    "check that the limits file is readable and on a local filesystem",
		    "cannot ask which regions the processes under limits file %s use: %s", limits_file,
		    strerror(errno));
	else if (other)
		add(d, CHECK_FAIL, "binding", "stop the processes started before the region was made again",
		    "a live process under limits file %s uses another region than %s (it was deleted and made again): new processes fail closed until it exits",
		    limits_file, region_path);
	else
		add(d, CHECK_OK, "binding", NULL, "every live process under limits file %s uses region %s",
		    limits_file, region_path);
}

static void check_region(struct doctor *d, const struct gpucap_policy *policy, const char *limits_file)
{
	char origin[128];
	if (policy->region_from.origin == GPUCAP_FROM_FILE)
		snprintf(origin, sizeof(origin), "the limits file's region line %u",
		         policy->region_from.line);
	else
		snprintf(origin, sizeof(origin), "%s",
		         policy->region_from.name[0] ? policy->region_from.name : "default");
	/* Refused: the policy's line says why and what to change. */
	if (policy->region_refused)
		return;
	struct cli_region_path where = {policy->region_path, origin};
	struct stat st;
	if (lstat(where.path, &st) != 0 && errno == ENOENT) {
		add(d, CHECK_WARN, "region",
		    "none needed: the first gpucap-limited process creates it; or name the right file with --file",
		    "no region file at %s yet (path from %s)", where.path, where.origin);
		return;
	}
	check_permissions(d, where.path);
	struct gpucap_snapshot *s = NULL;
	char err[1024] = "";
	struct reader_attach how = {.observer = true, .init_timeout_ms = 0};
	gpucap_region *region = NULL;
	gpucap_status status;
	if (reader_attach(where.path, &how, &region, &status, err, sizeof(err)) != READER_OK) {
		add(d, CHECK_FAIL, "region", NULL, "%s (path from %s)", err, where.origin);
		return;
	}
	if (limits_file)
		check_binding(d, limits_file, where.path, gpucap_region_created_ns(region));
	s = reader_snapshot(region, err, sizeof(err));
	gpucap_region_detach(region);
	if (!s) {
		add(d, CHECK_FAIL, "region", NULL, "%s (path from %s)", err, where.origin);
		return;
	}
	uint32_t dead = 0, unknown_host = 0;
	for (uint32_t i = 0; i < s->process_count; i++) {
		dead += !s->processes[i].alive;
		unknown_host += s->processes[i].host_pid_source == GPUCAP_HOST_PID_UNKNOWN;
	}
	add(d, CHECK_OK, "region", NULL, "%s attaches (path from %s): format %u, %u devices, %u processes",
	    where.path, where.origin, (unsigned)s->format_version, (unsigned)s->device_count,
	    (unsigned)s->process_count);
	if (s->consistent)
		add(d, CHECK_OK, "region", NULL,
		    "snapshot is consistent: each device's total matches its slots");
	else
		add(d, CHECK_WARN, "region", "run doctor again; a persistent mismatch is worth a bug report",
		    "snapshot is not consistent: the region changed while it was read");
	if (dead)
		add(d, CHECK_WARN, "region", "run 'gpucap reap'",
		    "%u dead slot%s awaiting reclaim still hold%s memory", (unsigned)dead,
		    dead == 1 ? "" : "s", dead == 1 ? "s" : "");
	else
		add(d, CHECK_OK, "region", NULL, "no dead slots awaiting reclaim");
	if (unknown_host)
		add(d, CHECK_WARN, "host-pid",
		    "run 'gpucap resolve --watch --regions GLOB' or 'gpucap exporter --resolve-host-pids' on the host (hostPID: true in Kubernetes); memory and compute caps do not depend on it",
		    "%u of %u processes run in a PID namespace and have no host PID yet: host-side per-process attribution (nvidia-smi, exporter host_pid labels) cannot name them",
		    (unsigned)unknown_host, (unsigned)s->process_count);
	else
		add(d, CHECK_OK, "host-pid", NULL, "every process has a host PID (%u processes)",
		    (unsigned)s->process_count);
	check_region_limits(d, s, where.path, policy);
	gpucap_snapshot_free(s);
}

/* ---- Limits --------------------------------------------------------------- */

/* A problem the policy found with a setting. Those that fail devices closed
 * fail the check; the others (the default is used instead) warn. */
static void add_diag(struct doctor *d, const struct gpucap_diag *g)
{
	/* The file's own verdict has its own line in check_limits_file. */
	if (g->setting == GPUCAP_SETTING_LIMITS_FILE)
		return;
	bool closes = g->setting == GPUCAP_SETTING_MEMORY_LIMIT || g->setting == GPUCAP_SETTING_SM_LIMIT ||
	              g->setting == GPUCAP_SETTING_CONTEXT_BYTES || g->setting == GPUCAP_SETTING_REGION;
	bool fail = g->level == GPUCAP_DIAG_ERROR && closes;
	const char *name =
	    g->setting == GPUCAP_SETTING_REGION                                                  ? "region"
	    : g->setting == GPUCAP_SETTING_MEMORY_LIMIT || g->setting == GPUCAP_SETTING_SM_LIMIT ? "limits"
	                                                                                         : "settings";
	add(d, fail ? CHECK_FAIL : CHECK_WARN, name,
	    g->level == GPUCAP_DIAG_ERROR ? "correct or unset the variable" : "rename or unset the variable",
	    "%s", g->text);
}

static void check_limits_file(struct doctor *d, const struct gpucap_limits_file *file)
{
	if (file->state == GPUCAP_LIMITS_FILE_ABSENT) {
		add(d, CHECK_OK, "limits-file", NULL,
		    "no limits file (%s absent, GPUCAP_LIMITS_FILE unset): limits come from the environment",
		    GPUCAP_LIMITS_FILE_DEFAULT);
		return;
	}
	if (file->state == GPUCAP_LIMITS_FILE_REFUSED) {
		add(d, CHECK_FAIL, "limits-file", NULL,
		    "%s; limited processes fail closed (every device capped at 0)", file->error);
		return;
	}
	add(d, CHECK_OK, "limits-file", NULL,
	    "%s (from %s) is trusted: owned by root, not writable by others", file->path, file->origin);
	if (file->override_ignored)
		add(d, CHECK_WARN, "limits-file", "unset GPUCAP_LIMITS_FILE",
		    "GPUCAP_LIMITS_FILE is ignored: %s exists and always applies",
		    GPUCAP_LIMITS_FILE_DEFAULT);
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", file->path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir)
		*slash = '\0';
	struct stat st;
	if (slash && stat(dir, &st) == 0 && (st.st_uid != 0 || (st.st_mode & (S_IWGRP | S_IWOTH))))
		add(d, CHECK_WARN, "limits-file",
		    "make the directory root's and not writable by others (chmod go-w)",
		    "directory %s can be written by others than root: the limits file could be removed", dir);
}

static bool per_device(const struct gpucap_policy_device *c)
{
	const char *underscore = strrchr(c->env_memory.name, '_');
	bool env_dev = underscore && underscore[1] >= '0' && underscore[1] <= '9';
	return env_dev || strchr(c->file_memory.name, '.') || strchr(c->sm_file.name, '.') ||
	       (c->memory_closed && strstr(c->why_closed, "LIMIT_"));
}

static void describe_choice(struct doctor *d, const char *who, const struct gpucap_policy_device *c,
                            const struct gpucap_limits_file *file)
{
	char limit[CLI_CELL_MAX], env[CLI_CELL_MAX], sm[CLI_CELL_MAX];
	if (c->memory_closed) {
		add(d, CHECK_FAIL, "limits", "fix the setting named here",
		    "%s: capped at 0 bytes (fail closed) because %s", who, c->why_closed);
		return;
	}
	char from[256] = "";
	size_t used = 0;
	if (c->file_memory.name[0])
		used += (size_t)snprintf(from + used, sizeof(from) - used, "%s (%s:%u)", c->file_memory.name,
		                         file->path, c->file_memory.line);
	if (c->env_memory.name[0] && used < sizeof(from)) {
		bool env_wins = c->env_bytes < c->file_cap_bytes;
		used += (size_t)snprintf(
		    from + used, sizeof(from) - used, "%s%s=%s%s", used ? ", " : "", c->env_memory.name,
		    cli_format_limit(c->env_bytes, env, sizeof(env)),
		    c->file_memory.name[0] ? (env_wins ? " (lower, wins)" : " (cannot raise it)") : "");
	}
	add(d, CHECK_OK, "limits", NULL, "%s: memory %s%s%s; SM %s%s%s", who,
	    cli_format_limit(c->memory_bytes, limit, sizeof(limit)),
	    from[0] ? " from " : " (nothing sets it)", from,
	    cli_format_sm_limit(c->sm_register, sm, sizeof(sm)), c->sm_file.name[0] ? " from " : "",
	    c->sm_file.name);
}

static void check_limits(struct doctor *d, const struct gpucap_policy *policy,
                         const struct gpucap_limits_file *file)
{
	check_limits_file(d, file);
	for (unsigned i = 0; i < policy->diag_count; i++)
		add_diag(d, &policy->diags[i]);
	int shared = -1;
	bool any_per_device = false;
	for (int i = 0; i < GPUCAP_MAX_DEVICES; i++) {
		if (!per_device(&policy->device[i])) {
			if (shared < 0)
				shared = i;
			continue;
		}
		char who[32];
		snprintf(who, sizeof(who), "device %d", i);
		describe_choice(d, who, &policy->device[i], file);
		any_per_device = true;
	}
	if (shared >= 0)
		describe_choice(d, any_per_device ? "other devices" : "every device", &policy->device[shared],
		                file);
}

/* ---- Output --------------------------------------------------------------- */

static void print_text(const struct doctor *d)
{
	for (size_t i = 0; i < d->count; i++) {
		const struct check *c = &d->checks[i];
		printf("%-4s  %s: %s", status_names[c->status], c->name, c->message);
		if (c->fix[0])
			printf("; fix: %s", c->fix);
		putchar('\n');
	}
}

static bool print_json(const struct doctor *d, bool healthy)
{
	struct json_writer w;
	json_init(&w, stdout);
	json_object_begin(&w);
	json_member_uint(&w, "schema_version", 1);
	json_member_bool(&w, "ok", healthy);
	json_key(&w, "checks");
	json_array_begin(&w);
	for (size_t i = 0; i < d->count; i++) {
		const struct check *c = &d->checks[i];
		json_object_begin(&w);
		json_member_string(&w, "status", status_names[c->status]);
		json_member_string(&w, "check", c->name);
		json_member_string(&w, "message", c->message);
		json_key(&w, "fix");
		if (c->fix[0])
			json_string(&w, c->fix);
		else
			json_null(&w);
		json_object_end(&w);
	}
	json_array_end(&w);
	json_object_end(&w);
	return json_finish(&w);
}

enum { OPT_PROBE };

static int doctor_run(int argc, char **argv)
{
	const char *command = cli_command_doctor.name;
	bool json = false;
	const char *file = NULL;
	const struct cli_option doctor_options[] = {
	    CLI_STORE_FLAG("json", 0, &json), CLI_STORE_VALUE("file", 'f', &file),
	    CLI_OPTION_FLAG("preload-probe", 0, OPT_PROBE), /* internal: the child of the preload check */
	};
	struct cli_option_loop loop = CLI_OPTION_LOOP(&cli_command_doctor, argc, argv, doctor_options, false);
	if (cli_option_loop_next(&loop) == OPT_PROBE)
		return probe_child();
	if (loop.stop)
		return loop.exit_code;

	struct doctor d;
	memset(&d, 0, sizeof(d));
	check_library(&d, "cuda-driver", "libcuda.so.1", "GPUCAP_REAL_LIBCUDA",
	              "CUDA programs cannot run here");
	check_library(&d, "nvml", "libnvidia-ml.so.1", "GPUCAP_REAL_LIBNVML",
	              "nvidia-smi and NVML memory queries cannot run here");
	check_preload(&d);
	/* Decided as the library would decide it, with --file for the region. */
	static struct gpucap_limits_file limits;
	static struct gpucap_policy policy;
	gpucap_policy_load_file(environ, false, &limits);
	struct gpucap_policy_input input = {.env = environ, .file = &limits, .region_flag = file};
	gpucap_policy_resolve(&input, &policy);
	check_region(&d, &policy, policy.file_in_force && !file ? limits.path : NULL);
	check_limits(&d, &policy, &limits);
	if (d.out_of_memory) {
		free(d.checks);
		return cli_failure(command, "out of memory while running the checks");
	}
	bool healthy = true;
	for (size_t i = 0; i < d.count; i++)
		healthy &= d.checks[i].status != CHECK_FAIL;
	bool printed = true;
	if (json)
		printed = print_json(&d, healthy);
	else
		print_text(&d);
	free(d.checks);
	if (!printed)
		return cli_failure(command, "cannot format the report");
	int rc = cli_finish_output(command);
	return rc != CLI_EXIT_OK ? rc : healthy ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

const struct cli_command cli_command_doctor = {
    .name = "doctor",
    .summary = "check the driver, the preload, the region and where limits come from",
    .usage = "usage: gpucap doctor [--json] [--file PATH]\n"
             "\n"
             "Run the checks gpucap depends on and print one line per check: ok, warn or fail,\n"
             "with the fix. Checks: the CUDA driver and NVML load; libgpucap.so is preloaded\n"
             "into a child process; the region attaches, reads consistently and has no dead\n"
             "slots; file and directory permissions; host PIDs; the limits file; and, for each\n"
             "device, the limit a process started from here would get and what sets it.\n"
             "Exits 1 when any check fails (warnings do not).\n"
             "\n"
             "  --json           print one JSON object (schema in docs/cli.md)\n"
    /* -f and -h read as in every command on one region */
    CLI_FILE_AND_HELP_USAGE,
    .run = doctor_run,
};
