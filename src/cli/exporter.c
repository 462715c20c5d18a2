/* SPDX-License-Identifier: Apache-2.0 */
/* gpucap exporter: parse the options and hand over to the exporter library
 * (src/exporter), which serves Prometheus metrics until stopped. */
#include "cli.h"
#include "options.h"

#include <stdio.h>

#ifdef GPUCAP_HAVE_EXPORTER
#include <exporter.h>
#include <host_pids.h>
#include <render.h>

enum { OPT_HAMI_LEGACY };

static int exporter_run(int argc, char **argv)
{
	const char *command = cli_command_exporter.name;
	const char *listen = EXPORTER_DEFAULT_LISTEN, *regions = NULL, *label_regex = NULL;
	const char *pod_log_root = NULL;
	bool hami = false, resolve = false, hami_legacy = false;
	const struct cli_option exporter_options[] = {
	    CLI_STORE_VALUE("listen", 'l', &listen),
	    CLI_STORE_VALUE("regions", 'r', &regions),
	    CLI_STORE_FLAG("hami-metrics", 0, &hami),
	    CLI_STORE_VALUE("label-from-path", 0, &label_regex),
	    CLI_STORE_FLAG("resolve-host-pids", 0, &resolve),
	    CLI_OPTION_FLAG("hami-legacy-metrics", 0, OPT_HAMI_LEGACY),
	    CLI_STORE_VALUE("pod-log-root", 0, &pod_log_root),
	};
	struct cli_option_loop loop =
	    CLI_OPTION_LOOP(&cli_command_exporter, argc, argv, exporter_options, false);
	/* --hami-legacy-metrics is the one option the loop returns: it turns on
	 * both kinds of HAMi metrics. */
	while (cli_option_loop_next(&loop) == OPT_HAMI_LEGACY)
		hami = hami_legacy = true;
	if (loop.stop)
		return loop.exit_code;
	if (!regions || !regions[0])
		return cli_usage_error(
		    command, "--regions GLOB is required, e.g. --regions '/var/lib/gpucap/*/cudevshr.cache'");

	if (resolve && !gpucap_resolver_on_host())
		return cli_failure(
		    command,
		    "--resolve-host-pids needs the host's PID namespace, where /proc shows host PIDs; run the exporter on the host (Kubernetes: hostPID: true)");

	char err[1024];
	struct exporter_config config;
	enum exporter_result result = exporter_parse_listen(listen, &config.listen, err, sizeof(err));
	if (result == EXPORTER_USAGE)
		return cli_usage_error(command, "%s", err);
	if (result != EXPORTER_OK)
		return cli_failure(command, "%s", err);

	struct exp_path_rule rule;
	if (label_regex) {
		if (!exp_path_rule_compile(&rule, label_regex, err, sizeof(err)))
			return cli_usage_error(command, "%s", err);
	} else {
		exp_path_rule_default(&rule);
	}
	rule.pod_log_root = pod_log_root;
	exp_render_set_hami_legacy(hami_legacy);
	config.regions = regions;
	config.rule = &rule;
	config.hami_metrics = hami;
	config.resolve_host_pids = resolve;
	result = exporter_serve(&config, err, sizeof(err));
	exp_path_rule_free(&rule);
	if (result != EXPORTER_OK)
		return cli_failure(command, "%s", err);
	return CLI_EXIT_OK;
}

#else
/* Built without libmicrohttpd: the command exists and says why it cannot run. */
#define EXPORTER_DEFAULT_LISTEN ":9394"

static int exporter_run(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	return cli_failure(
	    cli_command_exporter.name,
	    "this gpucap was built without the exporter (libmicrohttpd was not found at build time); install libmicrohttpd-dev and rebuild");
}
#endif

const struct cli_command cli_command_exporter = {
    .name = "exporter",
    .summary = "serve the regions' figures as Prometheus metrics",
    .usage = "usage: gpucap exporter --regions GLOB [--listen ADDR] [--hami-metrics]\n"
             "                       [--hami-legacy-metrics] [--label-from-path REGEX]\n"
             "                       [--pod-log-root DIR] [--resolve-host-pids]\n"
             "\n"
             "Serve Prometheus metrics (text format 0.0.4) at http://ADDR/metrics. On each\n"
             "scrape every file matching GLOB is read as an observer (read-only, no slot)\n"
             "and closed again; unreadable files are reported as gpucap_region_up 0.\n"
             "Runs until SIGINT or SIGTERM. Metrics and labels: docs/exporter.md.\n"
             "\n"
             "  -r, --regions GLOB       region files, a glob(3) pattern (quote it),\n"
             "                           e.g. '/var/lib/gpucap/*/cudevshr.cache'\n"
             "  -l, --listen ADDR        HOST:PORT, :PORT (all IPv4 addresses) or\n"
             "                           [IPV6]:PORT; port 0 picks a free one\n"
             "                           (default " EXPORTER_DEFAULT_LISTEN ", the port of HAMi's monitor)\n"
             "  --hami-metrics           also emit HAMi's monitor's metrics (hami_vgpu_*,\n"
             "                           hami_container_*) for existing dashboards\n"
             "  --hami-legacy-metrics    --hami-metrics, plus HAMi's names from before 2026\n"
             "                           (vGPU_device_memory_usage_in_bytes, ...)\n"
             "  --label-from-path REGEX  POSIX extended regex matched against each region\n"
             "                           path; capture groups 1, 2, 3 become the namespace,\n"
             "                           pod and container labels (default: the deepest\n"
             "                           directory named NAMESPACE_POD_CONTAINER, or\n"
             "                           PODUID_CONTAINER as HAMi names them)\n"
             "  --pod-log-root DIR       the kubelet's pod log directory, whose\n"
             "                           NAMESPACE_POD_UID entries name HAMi's pod UIDs\n"
             "                           (default /var/log/pods)\n"
             "  --resolve-host-pids      on each scrape, first record the host PIDs of\n"
             "                           processes in containers (as gpucap resolve does);\n"
             "                           opens the regions writable; run on the host\n"
             "  -h, --help               show this help\n"
             "\n"
             "exit status: 0 stopped by a signal, 1 cannot listen or start, 2 usage error.\n",
    .run = exporter_run,
};
