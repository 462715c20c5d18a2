/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpucap exporter: the Prometheus exporter behind "gpucap exporter"
 * (docs/exporter.md). The CLI parses options and calls in here; everything
 * else (listening, HTTP through libmicrohttpd, reading regions, the
 * exposition) lives in this library.
 */
#ifndef GPUCAP_EXPORTER_H
#define GPUCAP_EXPORTER_H

#include "labels.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

enum exporter_result {
	EXPORTER_OK = 0,
	EXPORTER_FAILURE = 1, /* runtime: cannot resolve, bind, start */
	EXPORTER_USAGE = 2,   /* the caller's input is malformed */
};

/* HAMi's node monitor listens on this port; so does the exporter by default. */
#define EXPORTER_DEFAULT_LISTEN ":9394"

struct exporter_address {
	struct sockaddr_storage addr;
	socklen_t len;
};

/*
 * Parse "HOST:PORT", ":PORT" (every IPv4 address) or "[IPV6]:PORT". HOST may
 * be a name. PORT 0 picks a free port (the one chosen is logged). Malformed
 * text gives EXPORTER_USAGE, a name that does not resolve EXPORTER_FAILURE;
 * either with one line in err.
 */
enum exporter_result exporter_parse_listen(const char *text, struct exporter_address *out, char *err,
                                           size_t err_len);

struct exporter_config {
	struct exporter_address listen;
	const char *regions;              /* glob(3) pattern */
	const struct exp_path_rule *rule; /* path -> namespace/pod/container */
	bool hami_metrics;                /* also emit HAMi's metric names */
	bool resolve_host_pids;           /* record container processes' host PIDs */
};

/*
 * Bind, serve /metrics and / until SIGINT or SIGTERM, then stop. Logs one
 * line when listening ("listening on http://ADDR/metrics") and one per region
 * error change. Returns EXPORTER_OK after a signal, EXPORTER_FAILURE with
 * one line in err when it cannot start.
 */
enum exporter_result exporter_serve(const struct exporter_config *config, char *err, size_t err_len);

#endif
