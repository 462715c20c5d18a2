/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The plumbing around the SM controller (docs/compute-caps.md): gpucap's
 * two background threads, NVML, the region's controller lease. The control
 * law itself is the pure step in sm_control.c.
 *
 * Two threads, both off every launch path, started by the first gated
 * launch (never by a process that does not launch; a forked child starts
 * its own on its first launch):
 *
 * The gate thread ("gpucap-gate") keeps gpucap_sm_armed current (launches
 * take the gate only while some device of the region is throttled, so
 * `gpucap set --sm` reaches running processes within a tick) and runs the
 * drains of the gates (gate.c) in relaxed capture mode.
 *
 * The controller thread ("gpucap-sm"), every SM_TICK_NS, tries for each
 * throttled device the device's controller lease in the region. The one
 * holder per container and device reads NVML's per-process utilisation
 * every SM_STEP_NS, sums its container's processes and the others, hands
 * that to the pure control step (sm_control.h) and carries out its
 * decision: the duty the gates apply, a calibration burst, the weight.
 * Without NVML the step runs open loop and this file says so.
 *
 * NVML calls can be slow (initialisation takes up to a second); they never
 * hold up a drain, which is why the two are separate threads.
 */
#define _GNU_SOURCE
#include "sm_controller.h"
#include "clock.h"
#include "gate.h"
#include "log.h"
#include "proc_ids.h"
#include "sm_control.h"
#include "sm_schedule.h"
#include "wake.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SM_TICK_NS       UINT64_C(250000000)  /* armed flag, lease renewal */
#define SM_NAP_NS        UINT64_C(10000000)   /* the controller thread's sleep, checking for exit */
#define SM_LEASE_TTL_NS  UINT64_C(1200000000) /* a dead owner is replaced after this */
#define SM_PEERS_NS      UINT64_C(2000000000) /* refresh of the container's PIDs */
#define OTHERS_LAUNCH_NS UINT64_C(2000000000) /* a peer that launched this recently is active */
#define SM_MAX_SAMPLES   1024u
#define SM_MAX_PEERS     1024u

/* ---- Thread state ---------------------------------------------------------------- */

static atomic_int started;
static atomic_bool stopping;
static atomic_bool ctl_running;
static atomic_bool atexit_registered;

/* Per region device, owned by the controller thread alone. */
struct ctl_device {
	bool owner;
	struct sm_control_state control;
	int ordinal; /* this process's CUDA ordinal of the device; -1: unknown */
	unsigned long long last_sample_us;
	unsigned long long last_device_sample_us;
	char uuid[GPUCAP_UUID_MAX];
	nvmlDevice_t nvml;
	int nvml_state; /* 0 unknown, 1 usable, -1 unusable (open loop) */
	bool logged;
};

static struct ctl_device ctl[GPUCAP_MAX_DEVICES];
static int nvml_state; /* 0 untried, 1 initialised, -1 unavailable */
static bool nvml_logged;
static bool elastic_logged;

/* The container's processes as NVML names them. */
static unsigned int peers[SM_MAX_PEERS];
static unsigned peer_count;
static uint64_t peers_at_ns;
static uint64_t own_ns_inode;

static nvmlProcessUtilizationSample_t samples[SM_MAX_SAMPLES];
static nvmlSample_t device_samples[SM_MAX_SAMPLES];

static uint64_t mono_ns(void)
{
	return gpucap_clock_now(GPUCAP_CLOCK_MONOTONIC);
}

static unsigned long long real_us(void)
{
	return (unsigned long long)(gpucap_clock_now(GPUCAP_CLOCK_REALTIME) / 1000u);
}

/* ---- Who belongs to the container --------------------------------------------------- */

/* The inode of this process's PID namespace; 0: unknown. */
static uint64_t pid_ns_inode(void)
{
	return gpucap_pid_namespace_inode("/proc/self/ns/pid");
}

/*
 * NVML names processes in the caller's PID namespace: a process of ours by
 * its PID here, one it cannot see by its host PID. So the container is this
 * process, the live slots of the region that share its PID namespace (their
 * recorded PID), and live slots elsewhere whose host PID is known.
 */
static void refresh_peers(uint64_t now)
{
	if (peer_count && now - peers_at_ns < SM_PEERS_NS)
		return;
	peers_at_ns = now;
	peer_count = 0;
	peers[peer_count++] = (unsigned int)getpid();
	if (!own_ns_inode)
		own_ns_inode = pid_ns_inode();
	struct gpucap_snapshot *snap = gpucap_region_snapshot(compute_env.region);
	if (!snap)
		return;
	for (uint32_t i = 0; i < snap->process_count && peer_count < SM_MAX_PEERS; i++) {
		const struct gpucap_process_view *p = &snap->processes[i];
		if (!p->alive || p->self)
			continue;
		if (own_ns_inode && p->pid_ns_inode == own_ns_inode && p->pid > 0)
			peers[peer_count++] = (unsigned int)p->pid;
		else if (p->host_pid > 0 && p->host_pid_source != GPUCAP_HOST_PID_UNKNOWN)
			peers[peer_count++] = (unsigned int)p->host_pid;
	}
	gpucap_snapshot_free(snap);
}

static bool is_peer(unsigned int pid)
{
	for (unsigned i = 0; i < peer_count; i++)
		if (peers[i] == pid)
			return true;
	return false;
}

/* ---- NVML ------------------------------------------------------------------------ */

static void say_open_loop(const char *why)
{
	if (nvml_logged)
		return;
	nvml_logged = true;
	gpucap_log(
	    GPUCAP_LOG_WARN,
	    "SM cap: %s; running open loop: the duty is the cap, uncorrected, and the share shown is estimated from launch timing (another tenant on the GPU lowers what this container gets)",
	    why);
}

static bool nvml_ready(void)
{
	if (nvml_state == 0) {
		gpucap_fn_nvmlInit_v2 init = GPUCAP_REAL(nvmlInit_v2);
		nvmlReturn_t r = init ? init() : NVML_ERROR_FUNCTION_NOT_FOUND;
		nvml_state = r == NVML_SUCCESS && GPUCAP_REAL(nvmlDeviceGetProcessUtilization) &&
		                     GPUCAP_REAL(nvmlDeviceGetHandleByUUID)
		                 ? 1
		                 : -1;
		if (nvml_state < 0)
			say_open_loop(init ? "NVML could not be initialised"
			                   : "NVML (libnvidia-ml.so.1) is not available");
	}
	return nvml_state > 0;
}

/* Per-process utilisation since the last step: the container's and the
 * others' SM share, in ppm. False when NVML cannot tell (open loop). */
static bool measure(struct ctl_device *c, uint32_t *mine, uint32_t *foreign)
{
	*mine = *foreign = 0;
	if (!nvml_ready() || c->nvml_state < 0)
		return false;
	if (c->nvml_state == 0) {
		gpucap_fn_nvmlDeviceGetHandleByUUID by_uuid = GPUCAP_REAL(nvmlDeviceGetHandleByUUID);
		if (by_uuid(c->uuid, &c->nvml) != NVML_SUCCESS) {
			c->nvml_state = -1;
			say_open_loop("NVML does not know this device (a MIG instance needs no compute cap)");
			return false;
		}
		c->nvml_state = 1;
	}
	gpucap_fn_nvmlDeviceGetProcessUtilization get = GPUCAP_REAL(nvmlDeviceGetProcessUtilization);
	unsigned int count = SM_MAX_SAMPLES;
	nvmlReturn_t r = get(c->nvml, samples, &count, c->last_sample_us);
	if (r == NVML_ERROR_NOT_FOUND)
		return true; /* no process ran a kernel since the last sample */
	if (r != NVML_SUCCESS) {
		if (r == NVML_ERROR_NOT_SUPPORTED || r == NVML_ERROR_NO_PERMISSION) {
			c->nvml_state = -1;
			say_open_loop(r == NVML_ERROR_NOT_SUPPORTED
			                  ? "NVML has no per-process utilisation on this device"
			                  : "NVML refuses per-process utilisation to this user");
		}
		return false;
	}
	if (count > SM_MAX_SAMPLES)
		count = SM_MAX_SAMPLES;
	/* Average each process over its samples, then sum. */
	uint64_t mine_sum = 0, foreign_sum = 0;
	for (unsigned int i = 0; i < count; i++) {
		if (samples[i].timeStamp <= c->last_sample_us || samples[i].pid == 0)
			continue;
		unsigned int pid = samples[i].pid;
		uint64_t sum = 0, n = 0;
		for (unsigned int j = i; j < count; j++) {
			if (samples[j].pid != pid || samples[j].timeStamp <= c->last_sample_us)
				continue;
			sum += samples[j].smUtil > 100 ? 100 : samples[j].smUtil;
			n++;
			if (j > i)
				samples[j].pid = 0; /* counted */
		}
		uint64_t ppm = n ? sum * 10000u / n : 0;
		if (is_peer(pid))
			mine_sum += ppm;
		else
			foreign_sum += ppm;
	}
	unsigned long long newest = c->last_sample_us;
	for (unsigned int i = 0; i < count; i++)
		if (samples[i].timeStamp > newest)
			newest = samples[i].timeStamp;
	c->last_sample_us = newest;
	*mine = mine_sum > GPUCAP_SM_PPM ? GPUCAP_SM_PPM : (uint32_t)mine_sum;
	*foreign = foreign_sum > GPUCAP_SM_PPM ? GPUCAP_SM_PPM : (uint32_t)foreign_sum;
	return true;
}

/* The device's utilisation over the window since the last step: the mean
 * of the driver's utilisation samples taken in it (each the share of one
 * sample period, 1/6 s to 1 s, in which any kernel ran), in ppm. One
 * reading of the last period alone aliases with work that comes in bursts
 * of tens of milliseconds (it reads 0% and 100% by turns); where the
 * samples cannot be had, that reading is still better than none. False
 * when NVML cannot tell. */
static bool measure_device(struct ctl_device *c, uint32_t *busy_ppm)
{
	*busy_ppm = 0;
	if (c->nvml_state <= 0)
		return false;
	gpucap_fn_nvmlDeviceGetSamples get_samples = GPUCAP_REAL(nvmlDeviceGetSamples);
	nvmlValueType_t type;
	unsigned int count = SM_MAX_SAMPLES;
	nvmlReturn_t r = get_samples ? get_samples(c->nvml, NVML_GPU_UTILIZATION_SAMPLES,
	                                           c->last_device_sample_us, &type, &count, device_samples)
	                             : NVML_ERROR_FUNCTION_NOT_FOUND;
	if (r == NVML_SUCCESS && type == NVML_VALUE_TYPE_UNSIGNED_INT) {
		uint64_t sum = 0, n = 0;
		unsigned long long newest = c->last_device_sample_us;
		for (unsigned int i = 0; i < count && i < SM_MAX_SAMPLES; i++) {
			if (device_samples[i].timeStamp <= c->last_device_sample_us)
				continue;
			unsigned int v = device_samples[i].sampleValue.uiVal;
			sum += v > 100 ? 100 : v;
			n++;
			if (device_samples[i].timeStamp > newest)
				newest = device_samples[i].timeStamp;
		}
		c->last_device_sample_us = newest;
		if (n > 0) {
			*busy_ppm = (uint32_t)(sum * (GPUCAP_SM_PPM / 100) / n);
			return true;
		}
	}
	gpucap_fn_nvmlDeviceGetUtilizationRates get = GPUCAP_REAL(nvmlDeviceGetUtilizationRates);
	nvmlUtilization_t u;
	if (!get || get(c->nvml, &u) != NVML_SUCCESS)
		return false;
	*busy_ppm = (u.gpu > 100 ? 100 : u.gpu) * (GPUCAP_SM_PPM / 100);
	return true;
}

/* Whether no other process of the container launched recently: a burst
 * must be the container's only work, and the gate measures this process's. */
static bool only_launcher(void)
{
	struct gpucap_snapshot *snap = gpucap_region_snapshot(compute_env.region);
	if (!snap)
		return false;
	uint64_t now = gpucap_clock_now(GPUCAP_CLOCK_REALTIME);
	bool alone = true;
	for (uint32_t i = 0; i < snap->process_count && alone; i++) {
		const struct gpucap_process_view *p = &snap->processes[i];
		if (p->alive && !p->self && p->last_launch_unix_ns &&
		    p->last_launch_unix_ns + OTHERS_LAUNCH_NS > now)
			alone = false;
	}
	gpucap_snapshot_free(snap);
	return alone;
}

/* ---- One control step: the inputs in, the decision out ------------------------------- */

static void control_inputs(const struct ctl_device *c, const struct gpucap_sm_state *st, uint64_t now,
                           struct sm_control_inputs *in)
{
	memset(in, 0, sizeof(*in));
	in->now_ns = now;
	in->cap_ppm = st->sm_limit * (GPUCAP_SM_PPM / 100);
	in->duty_ppm = st->duty_ppm;
	in->busy_ns = st->busy_ns;
	in->tat_ns = st->tat_ns;
	in->elastic = compute_env.config->sm.policy == GPUCAP_SM_POLICY_ELASTIC;
	in->calibrate = compute_env.config->sm.calibrate;
	in->launching = c->ordinal >= 0;
}

static void say_step(int d, const struct ctl_device *c, const struct sm_control_inputs *in,
                     const struct sm_control_decision *out)
{
	uint32_t weight = c->control.weight.weight_ppm ? c->control.weight.weight_ppm : GPUCAP_SM_PPM;
	bool frozen = out->weight.frozen && !out->turns;
	GPUCAP_LOG(
	    GPUCAP_LOG_DEBUG,
	    "SM step device %d: cap %.1f%% weight %.3f target %.1f%% busy %.1f%% (process %.1f%%, device %.1f%%, gates %.1f%%) others %.1f%%%s%.1f%% duty %.1f%% asked %.1f%%%s",
	    d, in->cap_ppm / 1e4, weight / 1e6, out->target_ppm / 1e4, out->busy_ppm / 1e4,
	    in->mine_ppm / 1e4, in->device_known ? in->device_ppm / 1e4 : -1.0, out->gate_ppm / 1e4,
	    in->foreign_ppm / 1e4, out->by_work ? " work by launches " : " work ",
	    (out->by_work ? out->work_ppm : out->busy_ppm) / 1e4, out->duty_ppm / 1e4, out->asked_ppm / 1e4,
	    frozen                                ? " (calibrating)"
	    : out->turns                          ? " (taking turns)"
	    : out->flags & GPUCAP_SM_FLAG_OVERLAP ? " (overlapping: the work leaves gaps)"
	                                          : "");
	if (out->weight.publish)
		GPUCAP_LOG(
		    GPUCAP_LOG_DEBUG,
		    "SM work weight of device %d: %.3f (this burst %.3f: %.1f us per launch at full load, %.1f us capped)",
		    d, out->weight.weight_ppm / 1e6, out->weight.measured_ppm / 1e6,
		    out->weight.full_per_launch_ns / 1e3, out->weight.capped_per_launch_ns / 1e3);
}

static void step(int d, struct ctl_device *c, const struct gpucap_sm_state *st, uint64_t now)
{
	struct sm_control_inputs in;
	control_inputs(c, st, now, &in);
	in.measured = measure(c, &in.mine_ppm, &in.foreign_ppm);
	in.device_known = in.measured && measure_device(c, &in.device_ppm);
	uint32_t applied = in.duty_ppm ? in.duty_ppm : in.cap_ppm;
	in.turns = gpucap_sm_schedule_shared(c->ordinal, applied, now, &in.turns_caps_ppm);
	gpucap_sm_work_totals(c->ordinal, &in.work);
	gpucap_sm_burst_result(c->ordinal, &in.burst);
	/* A snapshot, only when a burst could start from this step. */
	in.alone = in.calibrate && in.launching && in.measured && !in.turns && only_launcher();

	struct sm_control_decision out;
	sm_control_step(&in, &c->control, &out);
	if (!out.publish)
		return;
	if (out.warn_mismatch && !c->logged) {
		c->logged = true;
		gpucap_log(
		    GPUCAP_LOG_WARN,
		    "SM cap on %s: NVML shows no utilisation for this container's processes while they launch; the last duty is held for %u s, then the duty returns to the cap until NVML shows them again",
		    c->uuid, (unsigned)(SM_MISMATCH_HOLD * SM_STEP_NS / UINT64_C(1000000000)));
	}
	if (out.warn_elastic_blind && !elastic_logged) {
		elastic_logged = true;
		gpucap_log(GPUCAP_LOG_WARN,
		           "SM policy elastic needs NVML to see other tenants; holding the cap strictly");
	}
	if (out.weight.start)
		gpucap_sm_burst_start(c->ordinal, out.weight.hold_ns, out.weight.measure_ns,
		                      out.weight.end_ns);
	if (out.weight.publish)
		gpucap_region_sm_publish_weight(compute_env.region, d, out.weight.weight_ppm);
	say_step(d, c, &in, &out);
	gpucap_region_sm_publish_asked(compute_env.region, d, out.asked_ppm);
	gpucap_region_sm_publish(compute_env.region, d, out.duty_ppm, out.share_ppm, out.source, out.flags,
	                         out.integral_ppm);
}

static void control(uint64_t now)
{
	if (!compute_env.region)
		return;
	bool peers_fresh = false;
	for (int d = 0; d < GPUCAP_MAX_DEVICES; d++) {
		struct ctl_device *c = &ctl[d];
		struct gpucap_sm_state st;
		if (!gpucap_region_sm_read(compute_env.region, d, now, &st))
			continue;
		if (st.sm_limit >= 100) {
			/* The cap was lifted: the last holder clears its output, so
			 * that a cap set later starts from the feed-forward. */
			if (c->owner)
				gpucap_region_sm_publish(compute_env.region, d, 0, 0, GPUCAP_SM_SOURCE_NONE,
				                         0, 0);
			c->owner = false;
			continue;
		}
		if (!gpucap_region_sm_lease(compute_env.region, d, now, SM_LEASE_TTL_NS)) {
			c->owner = false;
			continue;
		}
		if (!c->owner || strcmp(c->uuid, st.uuid) != 0) {
			/* New holder: carry on from the published state; judge
			 * elastic from now on (others may be busy). */
			memset(c, 0, sizeof(*c));
			c->owner = true;
			snprintf(c->uuid, sizeof(c->uuid), "%s", st.uuid);
			c->ordinal = -1;
			struct sm_control_inputs in;
			control_inputs(c, &st, now, &in);
			sm_control_reset(&c->control, &in, st.integral_ppm, st.weight_ppm);
			c->last_sample_us = real_us();
			continue;
		}
		if (!sm_control_due(&c->control, now))
			continue;
		if (c->ordinal < 0)
			c->ordinal = gpucap_sm_ordinal_of(d);
		if (!peers_fresh) {
			refresh_peers(now);
			peers_fresh = true;
		}
		step(d, c, &st, now);
	}
}

/* ---- The threads ------------------------------------------------------------------ */

static void *gate_main(void *arg)
{
	(void)arg;
	gpucap_clock_thread_begin();
	pthread_setname_np(pthread_self(), "gpucap-gate");
	gpucap_sm_thread_relaxed();
	while (!atomic_load_explicit(&stopping, memory_order_acquire)) {
		gpucap_sm_refresh_armed();
		gpucap_sm_wake_pass();
		uint64_t now = mono_ns();
		uint64_t wake = gpucap_sm_service(now);
		now = mono_ns();
		if (wake > now + SM_TICK_NS)
			wake = now + SM_TICK_NS;
		gpucap_sm_wake_sleep(wake, &stopping);
	}
	atomic_store_explicit(&gpucap_sm_gate_running, false, memory_order_seq_cst);
	gpucap_sm_service_stop();
	return NULL;
}

/* Joined devices publish their records and read the other tenants';
 * capped devices this process launched on join the node schedule. */
static void join_schedules(uint64_t now)
{
	if (!gpucap_sm_schedule_wanted() || !gpucap_sm_any_gate_used())
		return;
	gpucap_sm_schedule_refresh_all(now);
	for (int d = 0; d < GPUCAP_MAX_DEVICES; d++) {
		int region_index = gpucap_sm_region_index_of(d);
		if (region_index < 0 || gpucap_sm_cap_of(d, region_index) >= 100)
			continue;
		gpucap_sm_schedule_join(d, region_index, now);
	}
}

static void *controller_main(void *arg)
{
	(void)arg;
	gpucap_clock_thread_begin();
	pthread_setname_np(pthread_self(), "gpucap-sm");
	while (!atomic_load_explicit(&stopping, memory_order_acquire)) {
		control(mono_ns());
		join_schedules(mono_ns());
		for (uint64_t slept = 0;
		     slept < SM_TICK_NS && !atomic_load_explicit(&stopping, memory_order_acquire);
		     slept += SM_NAP_NS)
			gpucap_clock_sleep(SM_NAP_NS);
	}
	atomic_store_explicit(&ctl_running, false, memory_order_release);
	return NULL;
}

/* At exit the driver and NVML are torn down: stop calling them first (a
 * short, bounded wait for a step in progress). */
static void stop_at_exit(void)
{
	atomic_store_explicit(&stopping, true, memory_order_release);
	gpucap_sm_wake_interrupt();
	for (int i = 0; i < 100 && (atomic_load_explicit(&gpucap_sm_gate_running, memory_order_acquire) ||
	                            atomic_load_explicit(&ctl_running, memory_order_acquire));
	     i++)
		gpucap_clock_sleep(UINT64_C(1000000));
}

static bool start_thread(void *(*fn)(void *), atomic_bool *running, const char *what)
{
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_t thread;
	atomic_store_explicit(running, true, memory_order_seq_cst);
	gpucap_clock_thread_starting();
	int rc = pthread_create(&thread, &attr, fn, NULL);
	pthread_attr_destroy(&attr);
	if (rc == 0)
		return true;
	gpucap_clock_thread_start_failed();
	atomic_store_explicit(running, false, memory_order_seq_cst);
	gpucap_log(GPUCAP_LOG_WARN, "SM cap: cannot start the %s thread (%s); %s", what, strerror(rc),
	           running == &gpucap_sm_gate_running ? "launching threads drain their own phases"
	                                              : "throttling at the cap without correction");
	return false;
}

void gpucap_sm_controller_start(void)
{
	if (atomic_load_explicit(&started, memory_order_relaxed))
		return;
	int expected = 0;
	if (!atomic_compare_exchange_strong(&started, &expected, 1))
		return;
	bool no = false;
	if (atomic_compare_exchange_strong(&atexit_registered, &no, true))
		atexit(stop_at_exit);
	/* The threads take no signal: the application's handlers run on its
	 * own threads, as they did before gpucap. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	start_thread(gate_main, &gpucap_sm_gate_running, "gate");
	start_thread(controller_main, &ctl_running, "controller");
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void gpucap_sm_controller_after_fork(void)
{
	atomic_store_explicit(&started, 0, memory_order_relaxed);
	atomic_store_explicit(&ctl_running, false, memory_order_relaxed);
	memset(ctl, 0, sizeof(ctl));
	/* NVML's state after fork is the parent's; initialise again. */
	nvml_state = 0;
	peer_count = 0;
	own_ns_inode = 0;
}
