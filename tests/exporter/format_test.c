/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the exporter's exposition: label escaping, the metric lines
 * of a synthetic snapshot, path-to-label rules, --listen parsing, and one
 * scrape over real files (good, corrupt, FIFO, directory, deleted). */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "collect.h"
#include "exporter.h"
#include "labels.h"
#include "region_reader.h"
#include "render.h"
#include "text.h"

#include <gpucap/region.h>

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

static char *escaped(const char *value, size_t max_len)
{
	struct exp_text t;
	exp_text_init(&t);
	exp_text_label_value(&t, value, max_len);
	char *s = exp_text_take(&t, NULL);
	assert_non_null(s);
	return s;
}

static void assert_escaped(const char *value, size_t max_len, const char *expected)
{
	char *s = escaped(value, max_len);
	assert_string_equal(s, expected);
	free(s);
}

static void assert_has_line(const char *text, const char *line)
{
	size_t len = strlen(line);
	for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
		if ((p == text || p[-1] == '\n') && p[len] == '\n')
			return;
	}
	fail_msg("line not found: %s\n--- in ---\n%s", line, text);
}

static void assert_no_substring(const char *text, const char *needle)
{
	if (strstr(text, needle))
		fail_msg("unexpected '%s' in:\n%s", needle, text);
}

/* Every family's samples form one block right after its HELP and TYPE. */
static void assert_families_grouped(const char *text)
{
	char seen[64][96];
	int seen_count = 0;
	char current[96] = "";
	const char *line = text;
	while (*line) {
		const char *end = strchr(line, '\n');
		assert_non_null(end);
		char name[96];
		size_t n = 0;
		if (strncmp(line, "# TYPE ", 7) == 0) {
			const char *s = line + 7;
			while (s[n] != ' ' && n < sizeof(name) - 1) {
				name[n] = s[n];
				n++;
			}
			name[n] = '\0';
			for (int i = 0; i < seen_count; i++)
				assert_string_not_equal(seen[i], name);
			snprintf(seen[seen_count++], sizeof(seen[0]), "%s", name);
			snprintf(current, sizeof(current), "%s", name);
		} else if (line[0] != '#') {
			while (line[n] != '{' && line[n] != ' ' && n < sizeof(name) - 1) {
				name[n] = line[n];
				n++;
			}
			name[n] = '\0';
			assert_string_equal(name, current);
		}
		line = end + 1;
	}
}

/* ---- label values ------------------------------------------------------- */

static void test_escape_specials(void **state)
{
	(void)state;
	assert_escaped("plain", 64, "plain");
	assert_escaped("a\\b", 64, "a\\\\b");
	assert_escaped("say \"hi\"", 64, "say \\\"hi\\\"");
	assert_escaped("two\nlines", 64, "two\\nlines");
	assert_escaped("\\\"\n", 64, "\\\\\\\"\\n");
	assert_escaped("", 64, "");
}

static void test_escape_utf8(void **state)
{
	(void)state;
	assert_escaped("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x9A\x80", 64,
	               "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x9A\x80");
	/* Stray continuation byte, truncated sequence, overlong, surrogate. */
	assert_escaped("a\x80z", 64, "a\xEF\xBF\xBDz");
	assert_escaped("a\xC3", 64, "a\xEF\xBF\xBD");
	assert_escaped("\xC0\xAF", 64, "\xEF\xBF\xBD\xEF\xBF\xBD");
	assert_escaped("\xED\xA0\x80", 64, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
}

static void test_escape_bounded(void **state)
{
	(void)state;
	/* A fixed-size field that fills its buffer has no NUL. */
	char field[4] = {'a', 'b', 'c', 'd'};
	char *s = escaped(field, sizeof(field));
	assert_string_equal(s, "abcd");
	free(s);
	/* A multi-byte character cut by the bound becomes U+FFFD. */
	assert_escaped("ab\xC3\xA9", 3, "ab\xEF\xBF\xBD");
}

static void test_text_grows(void **state)
{
	(void)state;
	struct exp_text t;
	exp_text_init(&t);
	for (int i = 0; i < 10000; i++)
		exp_text_printf(&t, "%d,", i);
	char big[1000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	exp_text_printf(&t, "[%s]", big);
	size_t len = 0;
	char *s = exp_text_take(&t, &len);
	assert_non_null(s);
	assert_int_equal(len, strlen(s));
	assert_true(strncmp(s, "0,1,2,", 6) == 0);
	assert_non_null(strstr(s, ",9999,["));
	assert_int_equal(s[len - 1], ']');
	free(s);
}

/* ---- a synthetic snapshot ----------------------------------------------- */

/* When process slot 4 last launched a kernel, and "now" for the renders:
 * 12.75 s later. */
#define FIXTURE_LAUNCH_NS 1795240049123456789ull
#define FIXTURE_NOW_NS    (FIXTURE_LAUNCH_NS + 12750000000ull)

struct fixture {
	struct gpucap_snapshot snap;
	struct gpucap_device_view devices[2];
	struct gpucap_process_view processes[2];
	struct gpucap_process_device_view usage[2][8];
};

static void make_snapshot(struct fixture *f)
{
	memset(f, 0, sizeof(*f));
	f->snap.format_version = GPUCAP_REGION_FORMAT_VERSION;
	f->snap.slot_capacity = 8;
	f->snap.device_capacity = 8;
	f->snap.reclaimed_slots_total = 3;
	f->snap.reclaimed_bytes_total = 12345;
	f->snap.consistent = true;
	f->snap.device_count = 2;
	f->snap.devices = f->devices;
	f->devices[0] = (struct gpucap_device_view){.index = 2,
	                                            .limit_bytes = GPUCAP_UNLIMITED,
	                                            .charged_bytes = 10485760,
	                                            .in_use_bytes = 10485760,
	                                            .peak_bytes = 20971520,
	                                            .sm_limit = 0};
	snprintf(f->devices[0].uuid, sizeof(f->devices[0].uuid), "GPU-bbbb");
	f->devices[1] = (struct gpucap_device_view){.index = 5,
	                                            .limit_bytes = 1073741824,
	                                            .charged_bytes = 106954752,
	                                            .in_use_bytes = 104857600,
	                                            .peak_bytes = 110000000,
	                                            .sm_limit = 30,
	                                            .sm_duty_ppm = 412500,
	                                            .sm_share_ppm = 297000,
	                                            .sm_share_known = true,
	                                            .sm_asked_ppm = 642000,
	                                            .sm_asked_known = true};
	snprintf(f->devices[1].uuid, sizeof(f->devices[1].uuid), "GPU-aaaa");
	f->snap.process_count = 2;
	f->snap.processes = f->processes;
	f->processes[0] = (struct gpucap_process_view){.slot = 4,
	                                               .pid = 17,
	                                               .host_pid = 4242,
	                                               .host_pid_source = GPUCAP_HOST_PID_NVML,
	                                               .alive = true,
	                                               .last_launch_unix_ns = FIXTURE_LAUNCH_NS,
	                                               .devices = f->usage[0]};
	snprintf(f->processes[0].comm, sizeof(f->processes[0].comm), "tr\"ain\\er");
	f->usage[0][5].charged_bytes = 106954752;
	f->usage[0][5].in_use_bytes = 104857600;
	f->usage[0][5].kind_bytes[GPUCAP_KIND_DATA] = 100663296;
	f->usage[0][5].kind_bytes[GPUCAP_KIND_DRIVER] = 4194304;
	f->processes[1] = (struct gpucap_process_view){.slot = 6,
	                                               .pid = 18,
	                                               .host_pid = 0,
	                                               .host_pid_source = GPUCAP_HOST_PID_UNKNOWN,
	                                               .alive = false,
	                                               .devices = f->usage[1]};
	snprintf(f->processes[1].comm, sizeof(f->processes[1].comm), "py");
	f->usage[1][2].charged_bytes = 10485760;
	f->usage[1][2].in_use_bytes = 10485760;
}

static char *render_one(const struct gpucap_snapshot *snap, const struct exp_pod_labels *labels, bool hami,
                        uint64_t errors)
{
	struct exp_render r;
	exp_render_init(&r, hami);
	r.now_unix_ns = FIXTURE_NOW_NS;
	exp_render_region(&r, "/var/lib/gpucap/ns_pod_ctr/region", labels, snap, errors);
	struct exp_text out;
	exp_text_init(&out);
	assert_true(exp_render_finish(&r, 0.25, &out));
	char *text = exp_text_take(&out, NULL);
	assert_non_null(text);
	return text;
}

#define R "region=\"/var/lib/gpucap/ns_pod_ctr/region\",namespace=\"ns\",pod=\"pod\",container=\"ctr\""

static void test_render_snapshot(void **state)
{
	(void)state;
	struct fixture f;
	make_snapshot(&f);
	struct exp_pod_labels labels;
	memset(&labels, 0, sizeof(labels));
	strcpy(labels.kube_namespace, "ns");
	strcpy(labels.pod, "pod");
	strcpy(labels.container, "ctr");
	char *text = render_one(&f.snap, &labels, false, 2);

	assert_has_line(text, "# TYPE gpucap_region_up gauge");
	assert_has_line(text, "gpucap_region_up{" R "} 1");
	assert_has_line(text, "# TYPE gpucap_region_read_errors_total counter");
	assert_has_line(text, "gpucap_region_read_errors_total{" R "} 2");
	assert_has_line(text, "gpucap_region_processes{" R ",state=\"alive\"} 1");
	assert_has_line(text, "gpucap_region_processes{" R ",state=\"dead\"} 1");
	assert_has_line(text, "# TYPE gpucap_region_reclaimed_slots_total counter");
	assert_has_line(text, "gpucap_region_reclaimed_slots_total{" R "} 3");
	assert_has_line(text, "gpucap_region_reclaimed_bytes_total{" R "} 12345");

	/* The unlimited device has no limit sample; the limited one has. */
	assert_has_line(text, "gpucap_device_memory_limit_bytes{" R
	                      ",device_uuid=\"GPU-aaaa\",device_index=\"5\"} 1073741824");
	assert_no_substring(text, "gpucap_device_memory_limit_bytes{" R ",device_uuid=\"GPU-bbbb\"");
	assert_has_line(text, "gpucap_device_memory_charged_bytes{" R
	                      ",device_uuid=\"GPU-aaaa\",device_index=\"5\"} 106954752");
	assert_has_line(text, "gpucap_device_memory_in_use_bytes{" R
	                      ",device_uuid=\"GPU-aaaa\",device_index=\"5\"} 104857600");
	assert_has_line(text, "gpucap_device_memory_peak_bytes{" R
	                      ",device_uuid=\"GPU-aaaa\",device_index=\"5\"} 110000000");
	assert_has_line(text, "gpucap_device_memory_charged_bytes{" R
	                      ",device_uuid=\"GPU-bbbb\",device_index=\"2\"} 10485760");
	assert_has_line(text, "gpucap_device_sm_limit_ratio{" R
	                      ",device_uuid=\"GPU-aaaa\",device_index=\"5\"} 0.30");
	assert_has_line(text, "gpucap_device_sm_limit_ratio{" R
	                      ",device_uuid=\"GPU-bbbb\",device_index=\"2\"} 1.00");
	/* Duty: the throttle's figure under a limit, 1 without one. Share: only
	 * where it was measured. */
	assert_has_line(text, "# TYPE gpucap_device_sm_duty_ratio gauge");
	assert_has_line(text, "gpucap_device_sm_duty_ratio{" R
	                      ",device_uuid=\"GPU-aaaa\",device_index=\"5\"} 0.4125");
	assert_has_line(text,
	                "gpucap_device_sm_duty_ratio{" R ",device_uuid=\"GPU-bbbb\",device_index=\"2\"} 1");
	assert_has_line(text, "# TYPE gpucap_device_sm_share_ratio gauge");
	assert_has_line(text, "gpucap_device_sm_share_ratio{" R
	                      ",device_uuid=\"GPU-aaaa\",device_index=\"5\"} 0.297");
	assert_no_substring(text, "gpucap_device_sm_share_ratio{" R ",device_uuid=\"GPU-bbbb\"");
	/* Asked: what the work would have used unthrottled, beside the
	 * delivered share, only where it is known. */
	assert_has_line(text, "# TYPE gpucap_device_sm_asked_ratio gauge");
	assert_has_line(text, "gpucap_device_sm_asked_ratio{" R
	                      ",device_uuid=\"GPU-aaaa\",device_index=\"5\"} 0.642");
	assert_no_substring(text, "gpucap_device_sm_asked_ratio{" R ",device_uuid=\"GPU-bbbb\"");

	/* Processes: the escaped name, host_pid only when known, one in-use
	 * sample per device the process touches. */
	assert_has_line(text, "gpucap_process_alive{" R
	                      ",slot=\"4\",pid=\"17\",host_pid=\"4242\",comm=\"tr\\\"ain\\\\er\"} 1");
	assert_has_line(text, "gpucap_process_alive{" R ",slot=\"6\",pid=\"18\",comm=\"py\"} 0");
	assert_has_line(text, "gpucap_process_memory_in_use_bytes{" R
	                      ",slot=\"4\",pid=\"17\",host_pid=\"4242\",comm=\"tr\\\"ain\\\\er\","
	                      "device_uuid=\"GPU-aaaa\",device_index=\"5\"} 104857600");
	assert_has_line(
	    text, "gpucap_process_memory_in_use_bytes{" R
	          ",slot=\"6\",pid=\"18\",comm=\"py\",device_uuid=\"GPU-bbbb\",device_index=\"2\"} 10485760");
	assert_no_substring(text,
	                    "slot=\"4\",pid=\"17\",host_pid=\"4242\",comm=\"tr\\\"ain\\\\er\",device_uuid="
	                    "\"GPU-bbbb\"");
	/* What the driver holds beyond the ledger, only where there is some. */
	assert_has_line(text, "gpucap_process_memory_driver_bytes{" R
	                      ",slot=\"4\",pid=\"17\",host_pid=\"4242\",comm=\"tr\\\"ain\\\\er\","
	                      "device_uuid=\"GPU-aaaa\",device_index=\"5\"} 4194304");
	assert_no_substring(text, "gpucap_process_memory_driver_bytes{" R ",slot=\"6\"");
	/* The last launch as a Unix time in seconds (to the microsecond), only
	 * for a process that launched something. */
	assert_has_line(text, "# TYPE gpucap_process_last_launch_timestamp_seconds gauge");
	assert_has_line(text, "gpucap_process_last_launch_timestamp_seconds{" R
	                      ",slot=\"4\",pid=\"17\",host_pid=\"4242\",comm=\"tr\\\"ain\\\\er\"} "
	                      "1795240049.123456");
	assert_no_substring(text, "gpucap_process_last_launch_timestamp_seconds{" R ",slot=\"6\"");
	assert_has_line(text, "gpucap_exporter_scrape_duration_seconds 0.250000");
	assert_no_substring(text, "hami_");
	assert_families_grouped(text);
	free(text);
}

static void test_render_hami(void **state)
{
	(void)state;
	struct fixture f;
	make_snapshot(&f);
	struct exp_pod_labels labels;
	memset(&labels, 0, sizeof(labels));
	strcpy(labels.kube_namespace, "ns");
	strcpy(labels.pod, "pod");
	strcpy(labels.container, "ctr");
	char *text = render_one(&f.snap, &labels, true, 0);
	assert_has_line(text, "# TYPE hami_vgpu_memory_used_bytes gauge");
	assert_has_line(text, "hami_vgpu_memory_used_bytes{" R
	                      ",vdevice_index=\"0\",device_uuid=\"GPU-bbbb\"} 10485760");
	assert_has_line(text, "hami_vgpu_memory_used_bytes{" R
	                      ",vdevice_index=\"1\",device_uuid=\"GPU-aaaa\"} 106954752");
	assert_has_line(text, "hami_vgpu_memory_limit_bytes{" R
	                      ",vdevice_index=\"1\",device_uuid=\"GPU-aaaa\"} 1073741824");
	assert_no_substring(text, "hami_vgpu_memory_limit_bytes{" R ",vdevice_index=\"0\"");
	/* HAMi's utilisation is the achieved SM share in percent (0-100), only
	 * where measured. */
	assert_has_line(text, "# TYPE hami_container_device_utilization_ratio gauge");
	assert_has_line(text, "hami_container_device_utilization_ratio{" R
	                      ",vdevice_index=\"1\",device_uuid=\"GPU-aaaa\"} 29.7");
	assert_no_substring(text, "hami_container_device_utilization_ratio{" R ",vdevice_index=\"0\"");
	/* Seconds since the container's latest launch, whole seconds as HAMi,
	 * on every device of the container. */
	assert_has_line(text, "hami_container_last_kernel_elapsed_seconds{" R
	                      ",vdevice_index=\"0\",device_uuid=\"GPU-bbbb\"} 12");
	assert_has_line(text, "hami_container_last_kernel_elapsed_seconds{" R
	                      ",vdevice_index=\"1\",device_uuid=\"GPU-aaaa\"} 12");
	assert_families_grouped(text);
	free(text);
}

/* A share published by a controller that writes no demand: the delivered
 * share is exported, the asked one is absent, family and all. */
static void test_render_asked_unknown(void **state)
{
	(void)state;
	struct fixture f;
	make_snapshot(&f);
	f.devices[1].sm_asked_known = false;
	f.devices[1].sm_asked_ppm = 0;
	struct exp_pod_labels none;
	memset(&none, 0, sizeof(none));
	char *text = render_one(&f.snap, &none, false, 0);
	assert_has_line(text, "gpucap_device_sm_share_ratio{region=\"/var/lib/gpucap/ns_pod_ctr/region\","
	                      "device_uuid=\"GPU-aaaa\",device_index=\"5\"} 0.297");
	assert_no_substring(text, "gpucap_device_sm_asked_ratio");
	assert_families_grouped(text);
	free(text);
}

static void test_render_down_and_many(void **state)
{
	(void)state;
	struct fixture f;
	make_snapshot(&f);
	struct exp_pod_labels none;
	memset(&none, 0, sizeof(none));
	struct exp_render r;
	exp_render_init(&r, true);
	exp_render_region(&r, "/a/good", &none, &f.snap, 0);
	exp_render_region(&r, "/a/bad\"\n", &none, NULL, 7);
	exp_render_region(&r, "/b/good", &none, &f.snap, 1);
	struct exp_text out;
	exp_text_init(&out);
	assert_true(exp_render_finish(&r, 0.5, &out));
	char *text = exp_text_take(&out, NULL);
	assert_has_line(text, "gpucap_region_up{region=\"/a/good\"} 1");
	assert_has_line(text, "gpucap_region_up{region=\"/a/bad\\\"\\n\"} 0");
	assert_has_line(text, "gpucap_region_read_errors_total{region=\"/a/bad\\\"\\n\"} 7");
	assert_has_line(text, "gpucap_region_up{region=\"/b/good\"} 1");
	/* A region that cannot be read has no other samples. */
	assert_no_substring(text, "gpucap_region_processes{region=\"/a/bad");
	assert_no_substring(text, "gpucap_device_memory_charged_bytes{region=\"/a/bad");
	assert_has_line(
	    text,
	    "gpucap_device_memory_charged_bytes{region=\"/b/good\",device_uuid=\"GPU-aaaa\",device_index=\"5\"} 106954752");
	assert_families_grouped(text);
	free(text);
}

static void test_render_nothing(void **state)
{
	(void)state;
	struct exp_render r;
	exp_render_init(&r, false);
	struct exp_text out;
	exp_text_init(&out);
	assert_true(exp_render_finish(&r, 0.001, &out));
	char *text = exp_text_take(&out, NULL);
	assert_string_equal(
	    text,
	    "# HELP gpucap_exporter_scrape_duration_seconds Time spent reading every region for this scrape, in seconds.\n"
	    "# TYPE gpucap_exporter_scrape_duration_seconds gauge\n"
	    "gpucap_exporter_scrape_duration_seconds 0.001000\n");
	free(text);
}

/* ---- path labels --------------------------------------------------------- */

static void assert_labels(const struct exp_path_rule *rule, const char *path, const char *ns, const char *pod,
                          const char *container)
{
	struct exp_pod_labels l;
	exp_path_labels(rule, path, &l);
	assert_string_equal(l.kube_namespace, ns);
	assert_string_equal(l.pod, pod);
	assert_string_equal(l.container, container);
}

static void test_default_rule(void **state)
{
	(void)state;
	struct exp_path_rule rule;
	exp_path_rule_default(&rule);
	assert_labels(&rule, "/var/lib/gpucap/kube-system_web-7d9f.x_main/cudevshr.cache", "kube-system",
	              "web-7d9f.x", "main");
	/* The deepest matching directory wins; the file name never counts. */
	assert_labels(&rule, "/var/lib/gpucap/a_b_c/sub/region", "a", "b", "c");
	assert_labels(&rule, "/x_y_z/var/lib/gpucap/a_b_c/region", "a", "b", "c");
	assert_labels(&rule, "/x_y_z/plain/region", "x", "y", "z");
	assert_labels(&rule, "a_b_c/region", "a", "b", "c");
	assert_labels(&rule, "/var/lib/gpucap/a_b_c", "", "", "");
	assert_labels(&rule, "/tmp/cudevshr.cache", "", "", "");
	assert_labels(&rule, "region", "", "", "");
	/* Not NAMESPACE_POD_CONTAINER: too few or many parts, empty parts,
	 * characters Kubernetes names never have. */
	assert_labels(&rule, "/var/lib/gpu_cap/region", "", "", "");
	assert_labels(&rule, "/var/lib/a_b_c_d/region", "", "", "");
	assert_labels(&rule, "/var/lib/a__c/region", "", "", "");
	assert_labels(&rule, "/var/lib/_b_c/region", "", "", "");
	assert_labels(&rule, "/var/lib/a_b_/region", "", "", "");
	assert_labels(&rule, "/var/lib/NS_pod_ctr/region", "", "", "");
	assert_labels(&rule, "/var/lib/ns_p od_ctr/region", "", "", "");
	assert_labels(&rule, "//a_b_c//region", "a", "b", "c");
	exp_path_rule_free(&rule);
}

static void test_regex_rule(void **state)
{
	(void)state;
	struct exp_path_rule rule;
	char err[512];
	assert_true(exp_path_rule_compile(&rule, "^/run/gpucap/([^/]+)/([^/]+)/([^/]+)/", err, sizeof(err)));
	assert_labels(&rule, "/run/gpucap/prod/api-0/server/region", "prod", "api-0", "server");
	assert_labels(&rule, "/run/gpucap/prod/api-0/region", "", "", "");
	assert_labels(&rule, "/var/lib/gpucap/a_b_c/region", "", "", "");
	exp_path_rule_free(&rule);

	/* Fewer groups: only those labels; an optional group that did not
	 * take part gives no label; extra groups are ignored. */
	assert_true(exp_path_rule_compile(&rule, "^/pods/([^/]+)/([^/]+)/", err, sizeof(err)));
	assert_labels(&rule, "/pods/ns1/p1/region", "ns1", "p1", "");
	exp_path_rule_free(&rule);
	assert_true(exp_path_rule_compile(&rule, "^/r/([a-z]+)/(x)?([0-9]*)/(.*)$", err, sizeof(err)));
	assert_labels(&rule, "/r/ns/42/tail", "ns", "", "42");
	exp_path_rule_free(&rule);
	/* Uppercase and other characters are kept as matched; label values
	 * are escaped at output. */
	assert_true(exp_path_rule_compile(&rule, "^/data/([^/]+)_([^/]+)/", err, sizeof(err)));
	assert_labels(&rule, "/data/Team A_Job\"1/region", "Team A", "Job\"1", "");
	exp_path_rule_free(&rule);

	assert_false(exp_path_rule_compile(&rule, "^/run/gpucap/[^/]+/", err, sizeof(err)));
	assert_non_null(strstr(err, "no capture group"));
	assert_false(exp_path_rule_compile(&rule, "^/run/(unclosed", err, sizeof(err)));
	assert_non_null(strstr(err, "not a valid extended regular expression"));
	assert_null(strchr(err, '\n'));
}

/* ---- --listen ------------------------------------------------------------ */

static void test_parse_listen(void **state)
{
	(void)state;
	struct exporter_address a;
	char err[256];
	assert_int_equal(exporter_parse_listen(":9394", &a, err, sizeof(err)), EXPORTER_OK);
	assert_int_equal(a.addr.ss_family, AF_INET);
	const struct sockaddr_in *v4 = (const struct sockaddr_in *)&a.addr;
	assert_int_equal(ntohs(v4->sin_port), 9394);
	assert_int_equal(ntohl(v4->sin_addr.s_addr), INADDR_ANY);
	assert_int_equal(exporter_parse_listen("127.0.0.1:0", &a, err, sizeof(err)), EXPORTER_OK);
	assert_int_equal(ntohl(v4->sin_addr.s_addr), INADDR_LOOPBACK);
	assert_int_equal(exporter_parse_listen("[::1]:8080", &a, err, sizeof(err)), EXPORTER_OK);
	assert_int_equal(a.addr.ss_family, AF_INET6);
	assert_int_equal(ntohs(((const struct sockaddr_in6 *)&a.addr)->sin6_port), 8080);

	const char *bad[] = {"9394",   ":",       ":abc",  ":65536", ":-1",    "127.0.0.1:",
	                     "::1:80", "[::1]80", "[]:80", "[::1",   ":123456"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(exporter_parse_listen(bad[i], &a, err, sizeof(err)), EXPORTER_USAGE);
		assert_true(err[0] != '\0');
		assert_non_null(strstr(err, "--listen"));
	}
}

/* ---- one scrape over real files ------------------------------------------ */

static char dir[256];

static void make_region(const char *path, const char *uuid, uint64_t limit, uint64_t bytes)
{
	struct gpucap_region_options o;
	memset(&o, 0, sizeof(o));
	o.path = path;
	o.slot_capacity = 8;
	o.device_capacity = 4;
	gpucap_region *r;
	char err[512];
	assert_int_equal(gpucap_region_attach(&o, &r, err, sizeof(err)), GPUCAP_OK);
	assert_int_equal(gpucap_region_claim_slot(r, NULL, err, sizeof(err)), GPUCAP_OK);
	int d = gpucap_region_device_register(r, uuid, limit, 0);
	assert_true(d >= 0);
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, bytes), GPUCAP_OK);
	/* Detach would return the charge. Abandon keeps it: the slot is then
	 * dead (its lease gone) with its bytes still charged. */
	gpucap_region_abandon(r);
}

static char *scrape(struct exp_collector *c)
{
	size_t len = 0;
	char *text = exp_collector_scrape(c, &len);
	assert_non_null(text);
	assert_int_equal(strlen(text), len);
	assert_families_grouped(text);
	return text;
}

static void test_collector_files(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/gpucap-exporter-test-XXXXXX");
	assert_non_null(mkdtemp(dir));
	char good[512], corrupt[512], fifo[512], subdir[512], empty[512], pattern[512], line[2048];
	snprintf(good, sizeof(good), "%s/good", dir);
	snprintf(corrupt, sizeof(corrupt), "%s/corrupt", dir);
	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	snprintf(subdir, sizeof(subdir), "%s/subdir", dir);
	snprintf(empty, sizeof(empty), "%s/empty", dir);
	snprintf(pattern, sizeof(pattern), "%s/*", dir);
	make_region(good, "GPU-1234", 1 << 30, 5 << 20);
	FILE *file = fopen(corrupt, "w");
	assert_non_null(file);
	for (int i = 0; i < 4096; i++)
		fputc((i * 7919 + 13) & 0xff, file);
	fclose(file);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(mkdir(subdir, 0700), 0);
	file = fopen(empty, "w"); /* a region nobody finished creating */
	assert_non_null(file);
	fclose(file);

	struct exp_path_rule rule;
	exp_path_rule_default(&rule);
	struct exp_collector *c = exp_collector_new(pattern, &rule, false);
	assert_non_null(c);
	char *text = scrape(c);
	snprintf(line, sizeof(line), "gpucap_region_up{region=\"%s\"} 1", good);
	assert_has_line(text, line);
	/* The device index is a hash position: match up to it. */
	snprintf(line, sizeof(line),
	         "gpucap_device_memory_charged_bytes{region=\"%s\",device_uuid=\"GPU-1234\"", good);
	assert_non_null(strstr(text, line));
	assert_non_null(strstr(strstr(text, line), "} 5242880\n"));
	snprintf(line, sizeof(line), "gpucap_region_processes{region=\"%s\",state=\"dead\"} 1", good);
	assert_has_line(text, line);
	const char *bad[] = {corrupt, fifo, subdir, empty};
	for (size_t i = 0; i < 4; i++) {
		snprintf(line, sizeof(line), "gpucap_region_up{region=\"%s\"} 0", bad[i]);
		assert_has_line(text, line);
		snprintf(line, sizeof(line), "gpucap_region_read_errors_total{region=\"%s\"} 1", bad[i]);
		assert_has_line(text, line);
	}
	free(text);

	/* Counters keep counting; a deleted region disappears. */
	assert_int_equal(unlink(good), 0);
	text = scrape(c);
	snprintf(line, sizeof(line), "gpucap_region_read_errors_total{region=\"%s\"} 2", corrupt);
	assert_has_line(text, line);
	assert_null(strstr(text, good));
	free(text);

	exp_collector_free(c);
	unlink(corrupt);
	unlink(fifo);
	unlink(empty);
	rmdir(subdir);
	rmdir(dir);
}

/* ---- the SIGBUS guard ---------------------------------------------------- */

struct truncation {
	const char *path;
	volatile int sum;
	volatile bool finished;
};

/* A clock that advances one second each time it is read. */
static uint64_t stepping_clock(void *context)
{
	uint64_t *now = context;
	*now += 1000000000u;
	return *now;
}

/* How many of the paths are reported up (1), and which (bit i: paths[i]). */
static unsigned regions_up(const char *text, char paths[][512], int count, unsigned *which)
{
	unsigned up = 0;
	*which = 0;
	for (int i = 0; i < count; i++) {
		char line[3072];
		snprintf(line, sizeof(line), "\ngpucap_region_up{region=\"%s\"} 1\n", paths[i]);
		if (strstr(text, line)) {
			up++;
			*which |= 1u << i;
		}
	}
	return up;
}

static void test_collector_budget(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/gpucap-exporter-budget-XXXXXX");
	assert_non_null(mkdtemp(dir));
	enum { REGIONS = 5 };
	char paths[REGIONS][512], pattern[512];
	for (int i = 0; i < REGIONS; i++) {
		snprintf(paths[i], sizeof(paths[i]), "%s/r%d", dir, i);
		make_region(paths[i], "GPU-budget", 1 << 30, 1 << 20);
	}
	/* r0 gets two more processes and a second device: the largest. */
	make_region(paths[0], "GPU-budget-2", 1 << 30, 1 << 20);
	make_region(paths[0], "GPU-budget", 1 << 30, 1 << 20);
	snprintf(pattern, sizeof(pattern), "%s/r*", dir);
	struct exp_path_rule rule;
	exp_path_rule_default(&rule);
	unsigned which;

	/* Samples per region: r0 (3 processes, 2 devices) is over, the others
	 * (1 process, 1 device) are not. */
	struct exp_collector *c = exp_collector_new(pattern, &rule, false);
	assert_non_null(c);
	struct exp_budget budget = exp_budget_default();
	budget.region_series = 30;
	exp_collector_set_budget(c, &budget);
	char *text = scrape(c);
	assert_int_equal(regions_up(text, paths, REGIONS, &which), REGIONS - 1);
	assert_int_equal(which, (1u << REGIONS) - 2);
	char line[3072];
	snprintf(line, sizeof(line), "gpucap_region_up{region=\"%s\"} 0", paths[0]);
	assert_has_line(text, line);
	free(text);
	exp_collector_free(c);

	/* Time: each clock read is a second later; 2.5 s lets two regions be
	 * read, the rest are reported down and read first on the next scrape. */
	c = exp_collector_new(pattern, &rule, false);
	assert_non_null(c);
	uint64_t now = 0;
	exp_collector_set_clock(c, stepping_clock, &now);
	budget = exp_budget_default();
	budget.scrape_ns = 2500000000u;
	exp_collector_set_budget(c, &budget);
	unsigned seen = 0;
	for (int round = 0; round < 3; round++) {
		text = scrape(c);
		assert_int_equal(regions_up(text, paths, REGIONS, &which), 2);
		if (round < 2)
			assert_int_equal(which & seen, 0); /* different regions each time */
		seen |= which;
		for (int i = 0; i < REGIONS; i++) {
			snprintf(line, sizeof(line), "gpucap_region_up{region=\"%s\"}", paths[i]);
			assert_non_null(strstr(text, line)); /* every region has its sample */
		}
		free(text);
	}
	assert_int_equal(seen, (1u << REGIONS) - 1); /* every region read in turn */
	exp_collector_free(c);

	/* Bytes: past the first region the exposition is over budget. */
	c = exp_collector_new(pattern, &rule, false);
	assert_non_null(c);
	budget = exp_budget_default();
	budget.scrape_bytes = 1;
	exp_collector_set_budget(c, &budget);
	text = scrape(c);
	assert_int_equal(regions_up(text, paths, REGIONS, &which), 1);
	free(text);
	exp_collector_free(c);

	for (int i = 0; i < REGIONS; i++)
		unlink(paths[i]);
	rmdir(dir);
}

/* Map two pages of a file, truncate it, read the second page: SIGBUS. */
static void read_truncated(void *arg)
{
	struct truncation *t = arg;
	long page = sysconf(_SC_PAGESIZE);
	FILE *file = fopen(t->path, "w+");
	assert_non_null(file);
	assert_int_equal(ftruncate(fileno(file), 2 * page), 0);
	volatile unsigned char *map = mmap(NULL, (size_t)(2 * page), PROT_READ, MAP_SHARED, fileno(file), 0);
	assert_true(map != MAP_FAILED);
	assert_int_equal(ftruncate(fileno(file), 0), 0);
	fclose(file);
	t->sum += map[page + 1];
	t->finished = true;
}

static void add_one(void *arg)
{
	struct truncation *t = arg;
	t->sum += 1;
	t->finished = true;
}

static void test_fault_guard(void **state)
{
	(void)state;
	char path[] = "/tmp/gpucap-exporter-sigbus-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	for (int round = 0; round < 3; round++) {
		struct truncation t = {.path = path};
		assert_false(reader_run_guarded(read_truncated, &t));
		assert_false(t.finished);
		t.sum = 0;
		assert_true(reader_run_guarded(add_one, &t));
		assert_true(t.finished);
		assert_int_equal(t.sum, 1);
	}
	unlink(path);
}

/* A handler installed before the guard: it gets the faults outside guarded
 * calls (the region code guards its own mappings this way). */
static sigjmp_buf previous_jump;
static volatile sig_atomic_t previous_calls;

static void previous_handler(int sig, siginfo_t *info, void *context)
{
	(void)sig;
	(void)info;
	(void)context;
	previous_calls++;
	siglongjmp(previous_jump, 1);
}

static void test_fault_guard_chains(void **state)
{
	(void)state;
	char path[] = "/tmp/gpucap-exporter-chain-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	struct sigaction action, saved;
	memset(&action, 0, sizeof(action));
	action.sa_sigaction = previous_handler;
	action.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&action.sa_mask);
	assert_int_equal(sigaction(SIGBUS, &action, &saved), 0);
	reader_install_fault_guard();

	struct truncation t = {.path = path};
	assert_false(reader_run_guarded(read_truncated, &t)); /* inside: the guard's */
	assert_int_equal(previous_calls, 0);
	if (sigsetjmp(previous_jump, 1) == 0) {
		read_truncated(&t); /* outside: the previous handler's */
		fail_msg("reading past the end of a truncated file did not fault");
	}
	assert_int_equal(previous_calls, 1);
	assert_false(t.finished);

	sigaction(SIGBUS, &saved, NULL);
	unlink(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_escape_specials),      cmocka_unit_test(test_escape_utf8),
	    cmocka_unit_test(test_escape_bounded),       cmocka_unit_test(test_text_grows),
	    cmocka_unit_test(test_render_snapshot),      cmocka_unit_test(test_render_hami),
	    cmocka_unit_test(test_render_down_and_many), cmocka_unit_test(test_render_nothing),
	    cmocka_unit_test(test_default_rule),         cmocka_unit_test(test_regex_rule),
	    cmocka_unit_test(test_parse_listen),         cmocka_unit_test(test_collector_files),
	    cmocka_unit_test(test_fault_guard),          cmocka_unit_test(test_fault_guard_chains),
	    cmocka_unit_test(test_collector_budget),     cmocka_unit_test(test_render_asked_unknown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
