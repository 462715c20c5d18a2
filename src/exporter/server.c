/* SPDX-License-Identifier: Apache-2.0 */
#define _POSIX_C_SOURCE 200809L

#include "exporter.h"

#include "collect.h"
#include "exp_log.h"
#include "render.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PORT_TEXT_MAX 6
/* HOST_TEXT_MAX and SERV_TEXT_MAX are not POSIX. */
#define HOST_TEXT_MAX 1025
#define SERV_TEXT_MAX 32

static bool parse_port(const char *text, char port[PORT_TEXT_MAX])
{
	size_t len = strlen(text);
	if (len == 0 || len > 5)
		return false;
	unsigned long value = 0;
	for (size_t i = 0; i < len; i++) {
		if (text[i] < '0' || text[i] > '9')
			return false;
		value = value * 10 + (unsigned long)(text[i] - '0');
	}
	if (value > 65535)
		return false;
	snprintf(port, PORT_TEXT_MAX, "%lu", value);
	return true;
}

enum exporter_result exporter_parse_listen(const char *text, struct exporter_address *out, char *err,
                                           size_t err_len)
{
	char host[256];
	char port[PORT_TEXT_MAX];
	const char *port_text;
	memset(out, 0, sizeof(*out));
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (!close || close[1] != ':' || (size_t)(close - text - 1) >= sizeof(host) ||
		    close == text + 1) {
			snprintf(err, err_len, "--listen '%s' is not [IPV6]:PORT", text);
			return EXPORTER_USAGE;
		}
		memcpy(host, text + 1, (size_t)(close - text - 1));
		host[close - text - 1] = '\0';
		port_text = close + 2;
	} else {
		const char *colon = strrchr(text, ':');
		if (!colon) {
			snprintf(err, err_len,
			         "--listen '%s' has no port; expected HOST:PORT or :PORT, e.g. :9394", text);
			return EXPORTER_USAGE;
		}
		size_t host_len = (size_t)(colon - text);
		if (host_len >= sizeof(host)) {
			snprintf(err, err_len, "--listen '%s': the host is too long", text);
			return EXPORTER_USAGE;
		}
		memcpy(host, text, host_len);
		host[host_len] = '\0';
		if (strchr(host, ':')) {
			snprintf(err, err_len,
			         "--listen '%s': put an IPv6 address in brackets, e.g. [::1]:9394", text);
			return EXPORTER_USAGE;
		}
		port_text = colon + 1;
	}
	if (!parse_port(port_text, port)) {
		snprintf(err, err_len, "--listen '%s': the port must be a number from 0 to 65535", text);
		return EXPORTER_USAGE;
	}
	struct addrinfo hints, *found = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = host[0] ? AF_UNSPEC : AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	int rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &found);
	if (rc != 0 || !found) {
		snprintf(err, err_len, "--listen '%s': cannot resolve '%s': %s", text, host,
		         gai_strerror(rc));
		if (found)
			freeaddrinfo(found);
		return EXPORTER_FAILURE;
	}
	memcpy(&out->addr, found->ai_addr, found->ai_addrlen);
	out->len = found->ai_addrlen;
	freeaddrinfo(found);
	return EXPORTER_OK;
}

/* The address actually bound, as "127.0.0.1:9394" or "[::1]:9394". */
static void describe(int fd, char *out, size_t out_len)
{
	struct sockaddr_storage addr;
	socklen_t len = sizeof(addr);
	char host[HOST_TEXT_MAX], serv[SERV_TEXT_MAX];
	if (getsockname(fd, (struct sockaddr *)&addr, &len) != 0 ||
	    getnameinfo((struct sockaddr *)&addr, len, host, sizeof(host), serv, sizeof(serv),
	                NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
		snprintf(out, out_len, "?");
		return;
	}
	snprintf(out, out_len, addr.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
}

static int open_listener(const struct exporter_address *where, char *err, size_t err_len)
{
	int family = where->addr.ss_family;
	int fd = socket(family, SOCK_STREAM, 0);
	if (fd < 0) {
		snprintf(err, err_len, "cannot create a socket: %s", strerror(errno));
		return -1;
	}
	int flags = fcntl(fd, F_GETFD);
	if (flags >= 0)
		fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
	flags = fcntl(fd, F_GETFL);
	if (flags >= 0)
		fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&where->addr, where->len) != 0) {
		int saved = errno;
		char host[HOST_TEXT_MAX] = "?", serv[SERV_TEXT_MAX] = "?";
		getnameinfo((const struct sockaddr *)&where->addr, where->len, host, sizeof(host), serv,
		            sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV);
		snprintf(err, err_len, "cannot listen on %s port %s: %s%s", host, serv, strerror(saved),
		         saved == EADDRINUSE
		             ? "; another process (HAMi's monitor?) uses the port: pick another with --listen"
		             : "");
		close(fd);
		return -1;
	}
	if (listen(fd, 64) != 0) {
		snprintf(err, err_len, "cannot listen: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static const char index_page[] =
    "<!DOCTYPE html>\n<html><head><title>gpucap exporter</title></head><body>\n"
    "<h1>gpucap exporter</h1>\n"
    "<p>Prometheus metrics of the gpucap accounting regions on this node: <a href=\"/metrics\">/metrics</a></p>\n"
    "</body></html>\n";

static enum MHD_Result respond(struct MHD_Connection *connection, unsigned status, const char *content_type,
                               void *body, size_t len, enum MHD_ResponseMemoryMode mode)
{
	struct MHD_Response *response = MHD_create_response_from_buffer(len, body, mode);
	if (!response) {
		if (mode == MHD_RESPMEM_MUST_FREE)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	enum MHD_Result result = MHD_queue_response(connection, status, response);
	MHD_destroy_response(response);
	return result;
}

/* Several threads serve connections; scrapes take turns on the lock. */
struct scrape_server {
	struct exp_collector *collector;
	pthread_mutex_t scrape_lock;
};

/* Connections: a few threads, so that a client that is slow to send its
 * request or to read the answer holds a connection, never the server; a
 * limit per client address, so that one client cannot take every
 * connection; and a timeout that closes idle ones. */
#define SERVER_THREADS            4u
#define SERVER_CONNECTIONS        256u
#define SERVER_CONNECTIONS_PER_IP 16u
#define SERVER_IDLE_TIMEOUT_S     10u

static enum MHD_Result handle(void *cls, struct MHD_Connection *connection, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **request_state)
{
	(void)version;
	(void)upload_data;
	(void)request_state;
	struct scrape_server *server = cls;
	static const char text_type[] = "text/plain; charset=utf-8";
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
		static char not_allowed[] = "only GET and HEAD are served\n";
		return respond(connection, MHD_HTTP_METHOD_NOT_ALLOWED, text_type, not_allowed,
		               sizeof(not_allowed) - 1, MHD_RESPMEM_PERSISTENT);
	}
	if (*upload_data_size != 0) {
		*upload_data_size = 0; /* a GET with a body: ignore it */
		return MHD_YES;
	}
	if (strcmp(url, "/metrics") == 0) {
		size_t len = 0;
		/* The collector reads one scrape at a time; the budget bounds how
		 * long another request waits here. */
		pthread_mutex_lock(&server->scrape_lock);
		char *body = exp_collector_scrape(server->collector, &len);
		pthread_mutex_unlock(&server->scrape_lock);
		if (!body) {
			static char oom[] = "gpucap exporter: out of memory while reading the regions\n";
			exp_log("out of memory while reading the regions");
			return respond(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, text_type, oom,
			               sizeof(oom) - 1, MHD_RESPMEM_PERSISTENT);
		}
		return respond(connection, MHD_HTTP_OK, EXP_CONTENT_TYPE, body, len, MHD_RESPMEM_MUST_FREE);
	}
	if (strcmp(url, "/") == 0) {
		return respond(connection, MHD_HTTP_OK, "text/html; charset=utf-8", (void *)index_page,
		               sizeof(index_page) - 1, MHD_RESPMEM_PERSISTENT);
	}
	static char not_found[] = "not found; metrics are at /metrics\n";
	return respond(connection, MHD_HTTP_NOT_FOUND, text_type, not_found, sizeof(not_found) - 1,
	               MHD_RESPMEM_PERSISTENT);
}

static void mhd_logger(void *cls, const char *fmt, va_list args)
{
	(void)cls;
	exp_vlog(fmt, args);
}

enum exporter_result exporter_serve(const struct exporter_config *config, char *err, size_t err_len)
{
	struct exp_collector *collector =
	    exp_collector_new(config->regions, config->rule, config->hami_metrics);
	if (!collector) {
		snprintf(err, err_len, "out of memory");
		return EXPORTER_FAILURE;
	}
	exp_collector_resolve_host_pids(collector, config->resolve_host_pids);
	int fd = open_listener(&config->listen, err, err_len);
	if (fd < 0) {
		exp_collector_free(collector);
		return EXPORTER_FAILURE;
	}
	char where[HOST_TEXT_MAX + SERV_TEXT_MAX + 4];
	describe(fd, where, sizeof(where));

	/* The HTTP thread inherits this mask: the stop signals are taken here,
	 * by sigwait, and nowhere else. A peer closing early must not kill us. */
	sigset_t stop, previous;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	signal(SIGPIPE, SIG_IGN);
	pthread_sigmask(SIG_BLOCK, &stop, &previous);

	struct scrape_server server = {.collector = collector};
	pthread_mutex_init(&server.scrape_lock, NULL);
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
	if (config->listen.addr.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	struct MHD_Daemon *daemon =
	    MHD_start_daemon(flags, 0, NULL, NULL, handle, &server, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger,
	                     NULL, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_THREAD_POOL_SIZE, SERVER_THREADS,
	                     MHD_OPTION_CONNECTION_TIMEOUT, SERVER_IDLE_TIMEOUT_S,
	                     MHD_OPTION_CONNECTION_LIMIT, SERVER_CONNECTIONS,
	                     MHD_OPTION_PER_IP_CONNECTION_LIMIT, SERVER_CONNECTIONS_PER_IP, MHD_OPTION_END);
	if (!daemon) {
		pthread_mutex_destroy(&server.scrape_lock);
		pthread_sigmask(SIG_SETMASK, &previous, NULL);
		close(fd);
		exp_collector_free(collector);
		snprintf(err, err_len, "cannot start the HTTP server on %s", where);
		return EXPORTER_FAILURE;
	}
	exp_log("listening on http://%s/metrics (regions: %s)", where, config->regions);

	int sig = 0;
	while (sigwait(&stop, &sig) != 0)
		;
	exp_log("stopping on signal %d", sig);
	MHD_stop_daemon(daemon); /* closes the listening socket */
	pthread_mutex_destroy(&server.scrape_lock);
	pthread_sigmask(SIG_SETMASK, &previous, NULL);
	exp_collector_free(collector);
	return EXPORTER_OK;
}
