/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The SM gate (gate.h): per process and CUDA device, an ON phase of
 * launches, then a drain that measures how long the GPU was busy with them,
 * a charge of busy / duty to the device's virtual clock in the region, and
 * no new ON phase before the clock.
 *
 * Phase state per device is one word: phase number << 1 | closing. The
 * thread whose launch ends a phase wins a CAS to set "closing", drains,
 * charges and opens the next phase; launches of other threads wait for the
 * number to change (bounded). The first launch of a phase waits for the
 * virtual clock the same way, so the processes of a container (one clock)
 * take turns.
 *
 * The drain itself runs on gpucap's gate thread (sm_controller.c), in
 * relaxed capture mode: polling an event (cuEventQuery) from a thread that
 * is, or whose process is, capturing in global mode would invalidate the
 * capture. The closing application thread only records an event on its
 * own per-thread stream when it used it (recording is capture-safe), then
 * waits for the phase to reopen like the others. Without the gate thread
 * (it could not start, or the process is exiting) the closer drains itself.
 *
 * Streams of a phase are kept in a small lock-free set per device, so the
 * drain records one event per stream. A stream that is capturing is never
 * touched: its launches are recorded into a graph, not run (the graph's
 * launch is gated), and an event recorded there would change the user's
 * graph. The per-thread default stream of another thread cannot be named
 * here, so such a phase is charged its wall time instead (an upper bound).
 */
#define _GNU_SOURCE
#include "gate.h"
#include "clock.h"
#include "log.h"
#include "sm_schedule.h"
#include "wake.h"

#include <pthread.h>
#include <sched.h>
#include <string.h>

atomic_uint gpucap_sm_armed = 1;

/* Waiting for a drain to leave a stream being destroyed. */
#define SM_GONE_WAIT_NS UINT64_C(100000000)

struct stream_slot {
	/* 0: free. Otherwise a stream handle, or a context | 1 standing for
	 * that context's legacy NULL stream (handles are aligned pointers). */
	_Atomic uintptr_t key;
	/* The context current at the launch (events live in it); 0 while the
	 * slot is being written. */
	_Atomic uintptr_t ctx;
};

struct gate {
	_Atomic uint64_t state;       /* phase number << 1 | closing */
	_Atomic uint64_t on_start_ns; /* first launch of the phase; 0: none yet */
	_Atomic uint64_t last_launch_ns;
	_Atomic uint32_t launches; /* admitted in this phase */
	_Atomic uint32_t budget;   /* launches per phase, learnt */
	_Atomic uint32_t overflow; /* a stream did not fit in the set */
	_Atomic int recording;     /* a drain is recording events on the set */
	/* What finished phases did, and a calibration burst (gate.h). */
	_Atomic uint64_t work_busy_ns;
	_Atomic uint64_t work_sure_ns;
	_Atomic uint64_t work_launches;
	_Atomic uint64_t work_held_ns;
	_Atomic uint64_t burst_hold_ns;
	_Atomic uint64_t burst_measure_ns;
	_Atomic uint64_t burst_end_ns;
	_Atomic uint64_t burst_busy_ns;
	_Atomic uint64_t burst_launches;
	/* A phase inside a node-schedule window (sm_schedule.h) ends by the
	 * window's end and with a budget cut to fit; 0: an ordinal phase. Such
	 * a phase is not charged to the virtual clock: the window is the duty. */
	_Atomic uint64_t phase_end_ns;
	_Atomic uint32_t phase_budget;
	/* The wall time of the open ON phase (sm_gate_quantum of its duty). */
	_Atomic uint64_t phase_quantum_ns;
	/* Busy time per launch of the last phases (an average): how many
	 * launches fill what is left of a window. */
	_Atomic uint64_t per_launch_ns;
	_Atomic int region_index;
	atomic_bool used;
	struct stream_slot streams[SM_STREAMS];
	pthread_mutex_t lock; /* only for waiting: the phase word is the state */
	pthread_cond_t cond;
	/* The drain of a closing phase. The closer writes the job_ fields, then
	 * job = JOB_REQUESTED (release); from then on they are the gate
	 * thread's, until it reopens the phase. */
	_Atomic int job;
	uint64_t job_state; /* the phase word being closed */
	bool job_by_launch;
	int job_n;
	CUevent job_events[SM_STREAMS + 1];
	uintptr_t job_drained[SM_STREAMS];
	uint64_t job_begin_ns;
	uint64_t job_poll_ns;    /* next poll */
	uint64_t job_pending_ns; /* the last poll that found work pending; 0: none */
};

enum { JOB_NONE = 0, JOB_REQUESTED = 1, JOB_RUNNING = 2 };

static struct gate gates[GPUCAP_MAX_DEVICES] = {
    [0 ... GPUCAP_MAX_DEVICES - 1] = {.budget = SM_BUDGET_INITIAL,
                                      .region_index = -1,
                                      .lock = PTHREAD_MUTEX_INITIALIZER,
                                      .cond = PTHREAD_COND_INITIALIZER},
};
static atomic_bool any_gate_used;

/* Phase number + 1 in which this thread launched on its per-thread default
 * stream, per device: only this thread can drain that stream. */
static _Thread_local uint64_t tls_pt_phase[GPUCAP_MAX_DEVICES];

static _Atomic uint64_t last_note_ns;
static atomic_bool drain_timeout_logged;

static uint64_t mono_ns(void)
{
	return gpucap_clock_now(GPUCAP_CLOCK_MONOTONIC);
}

static uint64_t real_ns(void)
{
	return gpucap_clock_now(GPUCAP_CLOCK_REALTIME);
}

static void sleep_ns(uint64_t ns)
{
	gpucap_clock_sleep(ns);
}

/* ---- The armed flag (kept current by the gate thread)
 * --------------------------------------------------------------- */

void gpucap_sm_refresh_armed(void)
{
	bool armed = false;
	for (int i = 0; i < GPUCAP_MAX_DEVICES && !armed; i++)
		armed = compute_env.config->sm.local_cap[i] != 0;
	for (int d = 0; d < GPUCAP_MAX_DEVICES && !armed && compute_env.region; d++) {
		uint32_t cap = gpucap_region_sm_limit(compute_env.region, d);
		if (cap >= 100)
			continue;
		uint32_t duty = gpucap_region_sm_duty(compute_env.region, d);
		armed = duty < GPUCAP_SM_PPM; /* 0: unset, the cap applies */
	}
	atomic_store_explicit(&gpucap_sm_armed, armed ? 1u : 0u, memory_order_release);
}

/* ---- Caps and duty ----------------------------------------------------------- */

uint32_t gpucap_sm_cap_of(int ordinal, int region_index)
{
	uint32_t cap = compute_env.region && region_index >= 0
	                   ? gpucap_region_sm_limit(compute_env.region, region_index)
	                   : 100;
	uint32_t local =
	    ordinal >= 0 && ordinal < GPUCAP_MAX_DEVICES ? compute_env.config->sm.local_cap[ordinal] : 0;
	return local && local < cap ? local : cap;
}

/* The duty (ppm) this process applies on a device whose cap is cap. The
 * region's duty is the controller's, for the region's limit; a lower ceiling
 * of this process's own (the limits file) is applied as it is, open loop:
 * no integral trims it and the elastic policy never lifts it. */
static uint32_t duty_of(int region_index, uint32_t cap)
{
	if (cap >= 100)
		return GPUCAP_SM_PPM;
	return sm_gate_duty(cap, gpucap_region_sm_limit(compute_env.region, region_index),
	                    gpucap_region_sm_duty(compute_env.region, region_index));
}

/* ---- Driver helpers ------------------------------------------------------------ */

/* Whether a stream is capturing; an error (the legacy stream while another
 * stream captures in global mode, a bad handle) counts as capturing: leave
 * the stream alone. */
static bool stream_capturing(CUstream stream)
{
	gpucap_fn_cuStreamIsCapturing is_capturing = GPUCAP_REAL(cuStreamIsCapturing);
	if (!is_capturing)
		return false; /* a driver without capture */
	CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_NONE;
	if (is_capturing(stream, &status) != CUDA_SUCCESS)
		return true;
	return status != CU_STREAM_CAPTURE_STATUS_NONE;
}

/* This thread's capture mode while it records or polls: relaxed, so that
 * another thread's global-mode capture does not forbid the calls (and they
 * cannot invalidate it). Returns the mode to restore. */
static CUstreamCaptureMode relaxed_begin(void)
{
	CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_RELAXED;
	gpucap_fn_cuThreadExchangeStreamCaptureMode exchange = GPUCAP_REAL(cuThreadExchangeStreamCaptureMode);
	if (exchange && exchange(&mode) != CUDA_SUCCESS)
		mode = CU_STREAM_CAPTURE_MODE_RELAXED;
	return mode;
}

static void relaxed_end(CUstreamCaptureMode mode)
{
	gpucap_fn_cuThreadExchangeStreamCaptureMode exchange = GPUCAP_REAL(cuThreadExchangeStreamCaptureMode);
	if (exchange && mode != CU_STREAM_CAPTURE_MODE_RELAXED)
		exchange(&mode);
}

void gpucap_sm_thread_relaxed(void)
{
	relaxed_begin();
}

enum record_result { RECORD_OK, RECORD_SKIPPED, RECORD_FAILED };

/* Record an event after the work queued on stream in ctx (current: the
 * calling thread's current context). */
static enum record_result record_on(CUcontext ctx, CUcontext current, CUstream stream, CUevent *out)
{
	gpucap_fn_cuEventCreate create = GPUCAP_REAL(cuEventCreate);
	gpucap_fn_cuEventRecord record = GPUCAP_REAL(cuEventRecord);
	gpucap_fn_cuEventDestroy_v2 destroy = GPUCAP_REAL(cuEventDestroy_v2);
	gpucap_fn_cuCtxPushCurrent_v2 push = GPUCAP_REAL(cuCtxPushCurrent_v2);
	gpucap_fn_cuCtxPopCurrent_v2 pop = GPUCAP_REAL(cuCtxPopCurrent_v2);
	if (!create || !record || !destroy)
		return RECORD_FAILED;
	bool pushed = false;
	if (ctx != current) {
		if (!push || !pop || push(ctx) != CUDA_SUCCESS)
			return RECORD_FAILED;
		pushed = true;
	}
	enum record_result result = RECORD_FAILED;
	if (stream_capturing(stream)) {
		result = RECORD_SKIPPED;
	} else if (create(out, CU_EVENT_DISABLE_TIMING) == CUDA_SUCCESS) {
		if (record(*out, stream) == CUDA_SUCCESS) {
			result = RECORD_OK;
		} else {
			destroy(*out);
		}
	}
	if (pushed) {
		CUcontext popped;
		pop(&popped);
	}
	return result;
}

/* One pass over the events: destroys those done (or failed: nothing more
 * to wait for). Returns how many are still pending. */
static int poll_events(CUevent *events, int n)
{
	gpucap_fn_cuEventQuery query = GPUCAP_REAL(cuEventQuery);
	gpucap_fn_cuEventDestroy_v2 destroy = GPUCAP_REAL(cuEventDestroy_v2);
	int pending = 0;
	for (int i = 0; i < n; i++) {
		if (!events[i])
			continue;
		if (query && query(events[i]) == CUDA_ERROR_NOT_READY) {
			pending++;
			continue;
		}
		destroy(events[i]);
		events[i] = NULL;
	}
	return pending;
}

/* Give up on events still pending (the driver frees them once their work is
 * done), saying once why the cap gets coarse. */
static void abandon_events(CUevent *events, int n)
{
	gpucap_fn_cuEventDestroy_v2 destroy = GPUCAP_REAL(cuEventDestroy_v2);
	for (int i = 0; i < n; i++) {
		if (events[i])
			destroy(events[i]);
		events[i] = NULL;
	}
	bool expected = false;
	if (atomic_compare_exchange_strong(&drain_timeout_logged, &expected, true))
		gpucap_log(
		    GPUCAP_LOG_WARN,
		    "SM cap: the GPU work of one phase took more than %llu ms; charging it up to now and going on (kernels this long make the cap coarse)",
		    (unsigned long long)(SM_DRAIN_MAX_NS / 1000000u));
}

/* The next poll of a drain that began at begin: soon at first, then less
 * often, so that the measured busy time is at most ~3% long. */
static uint64_t poll_step(uint64_t begin, uint64_t now)
{
	return sm_gate_poll_step(begin, now);
}

/* Poll until all are done or the drain's time is up; returns when they were
 * seen done, and in pending_at the last poll that found work pending (0:
 * none). For the closer that drains itself. */
static uint64_t wait_events(CUevent *events, int n, uint64_t begin, uint64_t *pending_at)
{
	*pending_at = 0;
	for (;;) {
		int pending = poll_events(events, n);
		uint64_t now = mono_ns();
		if (pending == 0)
			return now;
		*pending_at = now;
		if (now - begin >= SM_DRAIN_MAX_NS) {
			abandon_events(events, n);
			return now;
		}
		sleep_ns(poll_step(begin, now));
	}
}

/* ---- The stream set -------------------------------------------------------------- */

static void note_stream(struct gate *g, int ordinal, CUstream stream, CUcontext ctx, uint64_t phase)
{
	if (stream == CU_STREAM_PER_THREAD) {
		tls_pt_phase[ordinal] = phase + 1;
		return;
	}
	if (!ctx) {
		atomic_store_explicit(&g->overflow, 1, memory_order_relaxed);
		return;
	}
	uintptr_t key = stream ? (uintptr_t)stream : ((uintptr_t)ctx | 1);
	for (int i = 0; i < SM_STREAMS; i++)
		if (atomic_load_explicit(&g->streams[i].key, memory_order_relaxed) == key)
			return;
	for (int i = 0; i < SM_STREAMS; i++) {
		uintptr_t expected = 0;
		if (atomic_load_explicit(&g->streams[i].key, memory_order_relaxed) == 0 &&
		    atomic_compare_exchange_strong_explicit(&g->streams[i].key, &expected, key,
		                                            memory_order_seq_cst, memory_order_relaxed)) {
			atomic_store_explicit(&g->streams[i].ctx, (uintptr_t)ctx, memory_order_release);
			return;
		}
	}
	atomic_store_explicit(&g->overflow, 1, memory_order_relaxed);
}

/* Empty a slot: context first, so that a slot someone claims right after
 * the key is cleared is never left with our zero context. */
static void clear_slot(struct stream_slot *slot, uintptr_t key)
{
	atomic_store_explicit(&slot->ctx, 0, memory_order_relaxed);
	atomic_compare_exchange_strong_explicit(&slot->key, &key, 0, memory_order_seq_cst,
	                                        memory_order_relaxed);
}

/* Clear the slots for which forget(key, ctx, arg) is true in gate g, then
 * wait (bounded) for a drain that may be recording on one of them. */
static void forget_streams(struct gate *g, bool (*forget)(uintptr_t key, uintptr_t ctx, uintptr_t arg),
                           uintptr_t arg)
{
	bool found = false;
	for (int i = 0; i < SM_STREAMS; i++) {
		uintptr_t key = atomic_load_explicit(&g->streams[i].key, memory_order_seq_cst);
		uintptr_t ctx = atomic_load_explicit(&g->streams[i].ctx, memory_order_acquire);
		if (key && forget(key, ctx, arg)) {
			clear_slot(&g->streams[i], key);
			found = true;
		}
	}
	/* A drain that read the key before we cleared it is recording on the
	 * stream now: the stream must outlive that (microseconds). */
	uint64_t give_up = mono_ns() + SM_GONE_WAIT_NS;
	while (found && atomic_load_explicit(&g->recording, memory_order_seq_cst) && mono_ns() < give_up)
		sched_yield();
}

static bool is_stream(uintptr_t key, uintptr_t ctx, uintptr_t stream)
{
	(void)ctx;
	return key == stream;
}

static bool in_context(uintptr_t key, uintptr_t ctx, uintptr_t context)
{
	/* A slot being written (ctx still 0) with the context's NULL stream is
	 * recognised by its key. */
	return ctx == context || key == (context | 1);
}

static bool any_stream(uintptr_t key, uintptr_t ctx, uintptr_t arg)
{
	(void)key;
	(void)ctx;
	(void)arg;
	return true;
}

void gpucap_sm_stream_gone(CUstream stream)
{
	if (!stream || stream == CU_STREAM_LEGACY || stream == CU_STREAM_PER_THREAD ||
	    !atomic_load_explicit(&any_gate_used, memory_order_acquire))
		return;
	for (int d = 0; d < GPUCAP_MAX_DEVICES; d++)
		if (atomic_load_explicit(&gates[d].used, memory_order_acquire))
			forget_streams(&gates[d], is_stream, (uintptr_t)stream);
}

void gpucap_sm_context_gone(CUcontext ctx)
{
	if (!ctx || !atomic_load_explicit(&any_gate_used, memory_order_acquire))
		return;
	for (int d = 0; d < GPUCAP_MAX_DEVICES; d++)
		if (atomic_load_explicit(&gates[d].used, memory_order_acquire))
			forget_streams(&gates[d], in_context, (uintptr_t)ctx);
}

void gpucap_sm_device_gone(int ordinal)
{
	if (ordinal < 0 || ordinal >= GPUCAP_MAX_DEVICES ||
	    !atomic_load_explicit(&gates[ordinal].used, memory_order_acquire))
		return;
	forget_streams(&gates[ordinal], any_stream, 0);
}

/* ---- Phases ----------------------------------------------------------------------- */

/* Record an event on every stream of the set (and on the caller's own
 * per-thread stream when it used it in phase) into events; the slots read
 * into drained. Returns the number of events. */
static int record_phase(struct gate *g, int ordinal, uint64_t phase, bool own_stream, CUevent *events,
                        uintptr_t drained[SM_STREAMS])
{
	int n = 0;
	CUcontext current = NULL;
	gpucap_fn_cuCtxGetCurrent get_current = GPUCAP_REAL(cuCtxGetCurrent);
	if (get_current)
		get_current(&current);
	/* Announce the recording before reading the keys: a stream's destroyer
	 * clears its key before it looks at this flag (both seq_cst), so either
	 * it waits for us or we never see its stream. */
	atomic_store_explicit(&g->recording, 1, memory_order_seq_cst);
	for (int i = 0; i < SM_STREAMS; i++) {
		drained[i] = 0;
		uintptr_t key = atomic_load_explicit(&g->streams[i].key, memory_order_seq_cst);
		uintptr_t ctx = key ? atomic_load_explicit(&g->streams[i].ctx, memory_order_acquire) : 0;
		if (!key || !ctx)
			continue; /* free, or being written by a launch racing this drain */
		drained[i] = key;
		CUstream stream = (key & 1) ? NULL : (CUstream)key;
		if (record_on((CUcontext)ctx, current, stream, &events[n]) == RECORD_OK)
			n++;
	}
	atomic_store_explicit(&g->recording, 0, memory_order_seq_cst);
	if (own_stream && tls_pt_phase[ordinal] == phase + 1 && current &&
	    record_on(current, current, CU_STREAM_PER_THREAD, &events[n]) == RECORD_OK)
		n++;
	/* The phase ends when the GPU is seen done with what was recorded.
	 * Work nothing could name (another thread's per-thread default stream,
	 * streams past the set) counts only up to that moment; what it still
	 * had queued is charged with a later phase, or not at all
	 * (docs/compute-caps.md, accuracy limits). */
	return n;
}

/* Open the next phase and wake the launches waiting for it. */
static void open_next(struct gate *g, uint64_t st)
{
	atomic_store_explicit(&g->state, (st | 1) + 1, memory_order_release);
	pthread_mutex_lock(&g->lock);
	gpucap_clock_wake_all(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

static void learn_budget(struct gate *g, uint32_t launches, uint64_t busy)
{
	uint32_t budget = atomic_load_explicit(&g->budget, memory_order_relaxed);
	atomic_store_explicit(&g->budget, sm_gate_budget_next(budget, launches, busy), memory_order_relaxed);
}

/* The drain of phase st is over at end: charge busy = end - phase start,
 * learn, empty the set and open the next phase. pending_at: the last poll
 * that found the phase's work pending (0: none). */
static void finish_phase(struct gate *g, int ordinal, uint64_t st, bool by_launch, uint64_t end,
                         uint64_t pending_at, const uintptr_t drained[SM_STREAMS])
{
	uint64_t start = atomic_load_explicit(&g->on_start_ns, memory_order_acquire);
	uint32_t launches = atomic_load_explicit(&g->launches, memory_order_relaxed);
	if (start == 0 || start > end)
		start = end;
	uint64_t busy = end - start;
	uint64_t sure = sm_gate_sure_busy(
	    start, atomic_load_explicit(&g->last_launch_ns, memory_order_relaxed), pending_at);
	int region_index = atomic_load_explicit(&g->region_index, memory_order_relaxed);
	uint32_t cap = gpucap_sm_cap_of(ordinal, region_index);
	uint32_t duty = duty_of(region_index, cap);
	struct sm_gate_phase phase = {
	    .start_ns = start,
	    .busy_ns = busy,
	    .launches = launches,
	    .duty_ppm = duty,
	    .windowed = atomic_load_explicit(&g->phase_end_ns, memory_order_relaxed) != 0,
	    /* Acquire: pairs with the release stores of gpucap_sm_burst_start, so
	     * a burst's bounds are seen together with its reset sums. */
	    .burst_hold_ns = atomic_load_explicit(&g->burst_hold_ns, memory_order_acquire),
	    .burst_measure_ns = atomic_load_explicit(&g->burst_measure_ns, memory_order_relaxed),
	    .burst_end_ns = atomic_load_explicit(&g->burst_end_ns, memory_order_relaxed),
	};
	struct sm_gate_account account;
	sm_gate_account(&phase, &account);
	if (compute_env.region && region_index >= 0 && account.charge)
		gpucap_region_sm_charge(compute_env.region, region_index, start, busy, duty, mono_ns());
	if (account.count) {
		atomic_fetch_add_explicit(&g->work_busy_ns, busy, memory_order_relaxed);
		atomic_fetch_add_explicit(&g->work_sure_ns, sure, memory_order_relaxed);
		atomic_fetch_add_explicit(&g->work_launches, launches, memory_order_relaxed);
	}
	if (account.burst_work) {
		atomic_fetch_add_explicit(&g->burst_busy_ns, busy, memory_order_relaxed);
		atomic_fetch_add_explicit(&g->burst_launches, launches, memory_order_relaxed);
	}
	/* A phase the gate thread closed (the program stopped launching) says
	 * little of the launch rate, unless its work was surely queued past a
	 * quantum: then the budget let in too much (on an H100, four 50 ms
	 * kernels and a synchronisation made every phase 200 ms long, whose
	 * charge at a 10% duty ran past the clock's 1 s bound). */
	if (by_launch || sure > SM_QUANTUM_NS)
		learn_budget(g, launches, busy);
	if (launches > 0 && busy > 0) {
		uint64_t sample = busy / launches;
		uint64_t avg = atomic_load_explicit(&g->per_launch_ns, memory_order_relaxed);
		atomic_store_explicit(&g->per_launch_ns, avg ? (3 * avg + sample) / 4 : sample,
		                      memory_order_relaxed);
	}
	for (int i = 0; i < SM_STREAMS; i++)
		if (drained[i])
			clear_slot(&g->streams[i], drained[i]);
	atomic_store_explicit(&g->launches, 0, memory_order_relaxed);
	atomic_store_explicit(&g->overflow, 0, memory_order_relaxed);
	atomic_store_explicit(&g->phase_end_ns, 0, memory_order_relaxed);
	atomic_store_explicit(&g->on_start_ns, 0, memory_order_release);
	open_next(g, st);
}

/* The caller holds the closing bit of phase st and drains it itself (no
 * gate thread): record, wait, finish. */
static void close_phase_here(struct gate *g, int ordinal, uint64_t st, bool by_launch)
{
	CUstreamCaptureMode mode = relaxed_begin();
	uint64_t begin = mono_ns();
	CUevent events[SM_STREAMS + 1];
	uintptr_t drained[SM_STREAMS];
	int n = record_phase(g, ordinal, st >> 1, true, events, drained);
	uint64_t pending_at;
	uint64_t end = wait_events(events, n, begin, &pending_at);
	relaxed_end(mode);
	finish_phase(g, ordinal, st, by_launch, end, pending_at, drained);
}

/* The caller holds the closing bit of phase st: hand its drain to the gate
 * thread (after recording on its own per-thread stream, which only this
 * thread can name), or drain it here when there is no gate thread. */
static void close_phase(struct gate *g, int ordinal, uint64_t st, bool by_launch)
{
	if (!gpucap_sm_gate_thread_running()) {
		close_phase_here(g, ordinal, st, by_launch);
		return;
	}
	g->job_state = st;
	g->job_by_launch = by_launch;
	g->job_n = 0;
	g->job_begin_ns = mono_ns();
	if (tls_pt_phase[ordinal] == (st >> 1) + 1) {
		CUstreamCaptureMode mode = relaxed_begin();
		CUcontext current = NULL;
		gpucap_fn_cuCtxGetCurrent get_current = GPUCAP_REAL(cuCtxGetCurrent);
		if (get_current)
			get_current(&current);
		if (current &&
		    record_on(current, current, CU_STREAM_PER_THREAD, &g->job_events[0]) == RECORD_OK)
			g->job_n = 1;
		relaxed_end(mode);
	}
	atomic_store_explicit(&g->job, JOB_REQUESTED, memory_order_seq_cst);
	gpucap_sm_gate_thread_kick(0);
	/* The thread may have stopped meanwhile (exit): then take the job back.
	 * It takes the job with the same CAS when it stops, so one of us does. */
	int requested = JOB_REQUESTED;
	if (!gpucap_sm_gate_thread_running() &&
	    atomic_compare_exchange_strong_explicit(&g->job, &requested, JOB_NONE, memory_order_seq_cst,
	                                            memory_order_seq_cst)) {
		CUevent events[SM_STREAMS + 1];
		uintptr_t drained[SM_STREAMS];
		CUstreamCaptureMode mode = relaxed_begin();
		int n = record_phase(g, ordinal, st >> 1, false, events, drained);
		if (g->job_n)
			events[n++] = g->job_events[0];
		uint64_t pending_at;
		uint64_t end = wait_events(events, n, g->job_begin_ns, &pending_at);
		relaxed_end(mode);
		finish_phase(g, ordinal, st, by_launch, end, pending_at, drained);
	}
}

/* ---- The gate thread's side (sm_controller.c runs it) ----------------------------- */

/* Start a requested drain: record on the phase's streams. */
static void start_job(struct gate *g, int ordinal, uint64_t now)
{
	int n = g->job_n;
	n += record_phase(g, ordinal, g->job_state >> 1, false, &g->job_events[n], g->job_drained);
	g->job_n = n;
	g->job_poll_ns = now;
	g->job_pending_ns = 0;
	atomic_store_explicit(&g->job, JOB_RUNNING, memory_order_relaxed);
}

/* Poll a running drain; finish it when done or out of time. Returns when
 * to poll it next (0: finished). */
static uint64_t poll_job(struct gate *g, int ordinal, uint64_t now)
{
	if (now < g->job_poll_ns)
		return g->job_poll_ns;
	int pending = poll_events(g->job_events, g->job_n);
	now = mono_ns();
	if (pending > 0)
		g->job_pending_ns = now;
	if (pending > 0 && now - g->job_begin_ns < SM_DRAIN_MAX_NS) {
		g->job_poll_ns = now + poll_step(g->job_begin_ns, now);
		return g->job_poll_ns;
	}
	if (pending > 0)
		abandon_events(g->job_events, g->job_n);
	uintptr_t drained[SM_STREAMS];
	memcpy(drained, g->job_drained, sizeof(drained));
	uint64_t st = g->job_state;
	bool by_launch = g->job_by_launch;
	atomic_store_explicit(&g->job, JOB_NONE, memory_order_relaxed);
	finish_phase(g, ordinal, st, by_launch, now, g->job_pending_ns, drained);
	return 0;
}

uint64_t gpucap_sm_service(uint64_t now)
{
	uint64_t next = UINT64_MAX;
	if (!atomic_load_explicit(&any_gate_used, memory_order_acquire))
		return next;
	for (int d = 0; d < GPUCAP_MAX_DEVICES; d++) {
		struct gate *g = &gates[d];
		if (!atomic_load_explicit(&g->used, memory_order_acquire))
			continue;
		int job = atomic_load_explicit(&g->job, memory_order_seq_cst);
		if (job == JOB_REQUESTED) {
			int requested = JOB_REQUESTED;
			if (!atomic_compare_exchange_strong_explicit(
			        &g->job, &requested, JOB_RUNNING, memory_order_seq_cst, memory_order_seq_cst))
				continue; /* the closer took it back */
			start_job(g, d, now);
			job = JOB_RUNNING;
		}
		if (job == JOB_RUNNING) {
			uint64_t at = poll_job(g, d, now);
			if (at)
				next = at < next ? at : next;
			continue;
		}
		/* A phase nobody closed: drain it now, so that the idle time after
		 * its work is not charged as busy. The sleep is left to the next
		 * launch (it waits for the clock). */
		uint64_t st = atomic_load_explicit(&g->state, memory_order_acquire);
		uint64_t start = atomic_load_explicit(&g->on_start_ns, memory_order_acquire);
		if ((st & 1) || start == 0)
			continue;
		uint64_t last = atomic_load_explicit(&g->last_launch_ns, memory_order_relaxed);
		uint64_t quantum = atomic_load_explicit(&g->phase_quantum_ns, memory_order_relaxed);
		uint64_t due = start + (quantum ? quantum : SM_QUANTUM_NS) + SM_IDLE_CLOSE_NS;
		if (last + SM_IDLE_CLOSE_NS > due)
			due = last + SM_IDLE_CLOSE_NS; /* launches still coming: they close it */
		if (now < due) {
			next = due < next ? due : next;
			continue;
		}
		if (!atomic_compare_exchange_strong_explicit(&g->state, &st, st | 1, memory_order_acq_rel,
		                                             memory_order_acquire))
			continue;
		g->job_state = st;
		g->job_by_launch = false;
		g->job_n = 0;
		g->job_begin_ns = now;
		start_job(g, d, now);
		next = now + SM_POLL_MIN_NS < next ? now + SM_POLL_MIN_NS : next;
	}
	return next;
}

void gpucap_sm_service_stop(void)
{
	/* The thread is stopping (exit): reopen what it was draining, uncharged,
	 * and let closers that request from now on drain themselves. */
	for (int d = 0; d < GPUCAP_MAX_DEVICES; d++) {
		struct gate *g = &gates[d];
		if (!atomic_load_explicit(&g->used, memory_order_acquire))
			continue;
		int job = atomic_load_explicit(&g->job, memory_order_seq_cst);
		if (job == JOB_REQUESTED &&
		    !atomic_compare_exchange_strong_explicit(&g->job, &job, JOB_RUNNING, memory_order_seq_cst,
		                                             memory_order_seq_cst))
			continue;
		if (job == JOB_NONE)
			continue;
		uint64_t st = g->job_state;
		atomic_store_explicit(&g->job, JOB_NONE, memory_order_relaxed);
		open_next(g, st);
	}
}

/* When a first launch may open a new phase of g (now: at once). A
 * calibration hold comes first; then, while the node schedule shares the
 * GPU with another tenant, this tenant's window, which must have room for at
 * least one launch's work (*end_ns and *budget: the phase's limits there);
 * otherwise the device's virtual clock, except during a calibration burst.
 * Work the controller found gappy (GPUCAP_SM_FLAG_OVERLAP) takes no window
 * and stamps no record: the others lay out their windows without it. */
static uint64_t phase_not_before(struct gate *g, int ordinal, int region_index, uint32_t cap, uint32_t duty,
                                 uint64_t now, uint64_t *end_ns, uint32_t *budget)
{
	*end_ns = 0;
	*budget = 0;
	uint64_t hold = atomic_load_explicit(&g->burst_hold_ns, memory_order_acquire);
	if (now < hold)
		return hold;
	gpucap_sched *sched = gpucap_sm_schedule_of(ordinal);
	if (sched && !(gpucap_region_sm_flags(compute_env.region, region_index) & GPUCAP_SM_FLAG_OVERLAP)) {
		struct gpucap_sched_window w;
		gpucap_sched_touch(sched, duty, cap * (GPUCAP_SM_PPM / 100), now);
		gpucap_sched_window(sched, duty, now, &w);
		if (w.shared) {
			uint64_t until;
			uint64_t open = gpucap_sched_next_open(&w, now, &until);
			if (open == now) {
				uint64_t per = atomic_load_explicit(&g->per_launch_ns, memory_order_relaxed);
				uint32_t learnt = atomic_load_explicit(&g->budget, memory_order_relaxed);
				if (sm_gate_window_phase(now, until, per, learnt, end_ns, budget))
					return now;
				open = gpucap_sched_next_open(&w, until, &until);
			}
			return open;
		}
	}
	if (now < atomic_load_explicit(&g->burst_end_ns, memory_order_relaxed))
		return now; /* in a burst: back to back */
	return sm_gate_clock_open(gpucap_region_sm_tat(compute_env.region, region_index, now), now);
}

/* The caller holds the closing bit: wait until a phase may start, in steps
 * at which a lifted cap or a changed schedule is seen. Bounded by
 * SM_SLEEP_MAX_NS whatever the clock or the schedule says. */
static void wait_to_start(struct gate *g, int ordinal, int region_index)
{
	uint64_t begin = mono_ns();
	for (;;) {
		uint64_t now = mono_ns();
		if (now - begin >= SM_SLEEP_MAX_NS)
			return;
		uint32_t cap = gpucap_sm_cap_of(ordinal, region_index);
		uint32_t duty = duty_of(region_index, cap);
		if (cap >= 100 || duty >= GPUCAP_SM_PPM)
			return;
		uint64_t end_ns;
		uint32_t budget;
		uint64_t at = phase_not_before(g, ordinal, region_index, cap, duty, now, &end_ns, &budget);
		if (at <= now)
			return;
		uint64_t left = at - now;
		sleep_ns(left < SM_SLEEP_STEP_NS ? left : SM_SLEEP_STEP_NS);
	}
}

/* Wait (bounded) for phase word st to change. */
static void wait_phase(struct gate *g, uint64_t st, uint64_t give_up)
{
	pthread_mutex_lock(&g->lock);
	while (atomic_load_explicit(&g->state, memory_order_acquire) == st) {
		uint64_t now = mono_ns();
		if (now >= give_up)
			break;
		/* Short steps keep a jump of the wall clock harmless (the
		 * condition variable runs on it); the wake normally ends the wait. */
		uint64_t step = give_up - now < UINT64_C(50000000) ? give_up - now : UINT64_C(50000000);
		gpucap_clock_wait(&g->cond, &g->lock, now + step);
	}
	pthread_mutex_unlock(&g->lock);
}

static void gate_enter(struct gate *g, int ordinal, int region_index, uint32_t cap, uint32_t duty,
                       CUstream stream, CUcontext ctx)
{
	uint64_t entered = mono_ns();
	uint64_t give_up = entered + SM_WAIT_MAX_NS;
	uint64_t st, now;
	for (;;) {
		st = atomic_load_explicit(&g->state, memory_order_acquire);
		now = mono_ns();
		if (now >= give_up)
			break; /* never wait past the bound: admit */
		if (st & 1) {
			wait_phase(g, st, give_up);
			continue;
		}
		uint64_t start = atomic_load_explicit(&g->on_start_ns, memory_order_acquire);
		if (start == 0) {
			uint64_t end_ns;
			uint32_t budget;
			if (phase_not_before(g, ordinal, region_index, cap, duty, now, &end_ns, &budget) >
			    now) {
				if (atomic_compare_exchange_strong_explicit(
				        &g->state, &st, st | 1, memory_order_acq_rel, memory_order_acquire)) {
					wait_to_start(g, ordinal, region_index);
					open_next(g, st);
				}
				continue;
			}
			/* The limits go in before the phase opens; threads racing
			 * here computed the same ones. */
			uint64_t quantum = sm_gate_quantum(duty);
			atomic_store_explicit(&g->phase_budget, budget, memory_order_relaxed);
			atomic_store_explicit(&g->phase_end_ns, end_ns, memory_order_relaxed);
			atomic_store_explicit(&g->phase_quantum_ns, quantum, memory_order_relaxed);
			uint64_t zero = 0;
			if (atomic_compare_exchange_strong_explicit(
			        &g->on_start_ns, &zero, now, memory_order_acq_rel, memory_order_acquire))
				gpucap_sm_gate_thread_kick(now + quantum + SM_IDLE_CLOSE_NS);
		} else {
			/* A phase in a window has its own limits (phase_not_before). */
			uint64_t end = atomic_load_explicit(&g->phase_end_ns, memory_order_relaxed);
			uint32_t budget = atomic_load_explicit(&g->phase_budget, memory_order_relaxed);
			if (!end || !budget) {
				end = start + sm_gate_quantum(duty);
				budget = sm_gate_phase_budget(
				    atomic_load_explicit(&g->budget, memory_order_relaxed), duty);
			}
			if (now >= end ||
			    atomic_load_explicit(&g->launches, memory_order_relaxed) >= budget) {
				if (atomic_compare_exchange_strong_explicit(
				        &g->state, &st, st | 1, memory_order_acq_rel, memory_order_acquire))
					close_phase(g, ordinal, st, true);
				continue;
			}
		}
		break;
	}
	if (now > entered)
		atomic_fetch_add_explicit(&g->work_held_ns, now - entered, memory_order_relaxed);
	note_stream(g, ordinal, stream, ctx, st >> 1);
	atomic_fetch_add_explicit(&g->launches, 1, memory_order_relaxed);
	atomic_store_explicit(&g->last_launch_ns, now, memory_order_relaxed);
}

/* When this process last launched, for `gpucap status` (about once per ms). */
static void note_launch(uint64_t now)
{
	uint64_t last = atomic_load_explicit(&last_note_ns, memory_order_relaxed);
	if (now - last < UINT64_C(1000000) ||
	    !atomic_compare_exchange_strong_explicit(&last_note_ns, &last, now, memory_order_relaxed,
	                                             memory_order_relaxed))
		return;
	gpucap_region_note_launch(compute_env.region, real_ns());
}

void gpucap_sm_gate(CUstream stream, bool per_thread)
{
	/* The stream as any thread can name it: NULL is the legacy stream, a
	 * _ptsz entry's NULL the per-thread one. */
	if (per_thread && stream == NULL)
		stream = CU_STREAM_PER_THREAD;
	else if (stream == CU_STREAM_LEGACY)
		stream = NULL;

	gpucap_fn_cuCtxGetDevice get_device = GPUCAP_REAL(cuCtxGetDevice);
	CUdevice ordinal;
	if (!get_device || get_device(&ordinal) != CUDA_SUCCESS || ordinal < 0 ||
	    ordinal >= GPUCAP_MAX_DEVICES)
		return; /* no context: the launch fails in the driver anyway */
	int region_index = -1;
	if (!compute_env.device_of || !compute_env.device_of(ordinal, &region_index, NULL) ||
	    region_index < 0 || !compute_env.region)
		return; /* without a region nothing is shared to throttle against */
	struct gate *g = &gates[ordinal];
	if (!atomic_load_explicit(&g->used, memory_order_relaxed)) {
		atomic_store_explicit(&g->region_index, region_index, memory_order_relaxed);
		atomic_store_explicit(&g->used, true, memory_order_release);
		atomic_store_explicit(&any_gate_used, true, memory_order_release);
	}
	uint32_t cap = gpucap_sm_cap_of(ordinal, region_index);
	uint32_t duty = duty_of(region_index, cap);
	if (cap >= 100 || duty >= GPUCAP_SM_PPM)
		return;
	/* Work launched into a capture runs when its graph is launched (gated
	 * then); a capture must never wait for a drain. */
	if (stream_capturing(stream))
		return;
	CUcontext ctx = NULL;
	gpucap_fn_cuCtxGetCurrent get_current = GPUCAP_REAL(cuCtxGetCurrent);
	if (get_current)
		get_current(&ctx);
	gate_enter(g, ordinal, region_index, cap, duty, stream, ctx);
	note_launch(atomic_load_explicit(&g->last_launch_ns, memory_order_relaxed));
}

/* ---- For the controller thread ------------------------------------------------------ */

int gpucap_sm_region_index_of(int ordinal)
{
	if (ordinal < 0 || ordinal >= GPUCAP_MAX_DEVICES ||
	    !atomic_load_explicit(&gates[ordinal].used, memory_order_acquire))
		return -1;
	return atomic_load_explicit(&gates[ordinal].region_index, memory_order_relaxed);
}

int gpucap_sm_ordinal_of(int region_index)
{
	for (int d = 0; d < GPUCAP_MAX_DEVICES; d++)
		if (atomic_load_explicit(&gates[d].used, memory_order_acquire) &&
		    atomic_load_explicit(&gates[d].region_index, memory_order_relaxed) == region_index)
			return d;
	return -1;
}

void gpucap_sm_work_totals(int ordinal, struct gpucap_sm_work *out)
{
	memset(out, 0, sizeof(*out));
	if (ordinal < 0 || ordinal >= GPUCAP_MAX_DEVICES)
		return;
	out->busy_ns = atomic_load_explicit(&gates[ordinal].work_busy_ns, memory_order_relaxed);
	out->sure_ns = atomic_load_explicit(&gates[ordinal].work_sure_ns, memory_order_relaxed);
	out->launches = atomic_load_explicit(&gates[ordinal].work_launches, memory_order_relaxed);
	out->held_ns = atomic_load_explicit(&gates[ordinal].work_held_ns, memory_order_relaxed);
}

bool gpucap_sm_burst_start(int ordinal, uint64_t hold_ns, uint64_t measure_ns, uint64_t end_ns)
{
	if (ordinal < 0 || ordinal >= GPUCAP_MAX_DEVICES ||
	    !atomic_load_explicit(&gates[ordinal].used, memory_order_acquire))
		return false;
	struct gate *g = &gates[ordinal];
	/* The window before the hold: a phase that finishes now started before
	 * measure_ns and never adds to the new sums. */
	atomic_store_explicit(&g->burst_busy_ns, 0, memory_order_relaxed);
	atomic_store_explicit(&g->burst_launches, 0, memory_order_relaxed);
	atomic_store_explicit(&g->burst_measure_ns, measure_ns, memory_order_relaxed);
	atomic_store_explicit(&g->burst_end_ns, end_ns, memory_order_release);
	/* Release, last: pairs with the acquire loads of burst_hold_ns in
	 * phase_not_before and finish_phase. A launch or drain that sees the new
	 * hold also sees the new end and measure bounds and the zeroed sums, so
	 * no phase of the new burst is summed against the old bounds. */
	atomic_store_explicit(&g->burst_hold_ns, hold_ns, memory_order_release);
	return true;
}

void gpucap_sm_burst_result(int ordinal, struct gpucap_sm_work *out)
{
	memset(out, 0, sizeof(*out));
	if (ordinal < 0 || ordinal >= GPUCAP_MAX_DEVICES)
		return;
	out->busy_ns = atomic_load_explicit(&gates[ordinal].burst_busy_ns, memory_order_relaxed);
	out->launches = atomic_load_explicit(&gates[ordinal].burst_launches, memory_order_relaxed);
}

bool gpucap_sm_any_gate_used(void)
{
	return atomic_load_explicit(&any_gate_used, memory_order_acquire);
}

void gpucap_sm_gates_after_fork(void)
{
	for (int d = 0; d < GPUCAP_MAX_DEVICES; d++) {
		struct gate *g = &gates[d];
		/* A phase another thread of the parent was closing is nobody's now. */
		uint64_t st = atomic_load_explicit(&g->state, memory_order_relaxed);
		atomic_store_explicit(&g->state, (st | 1) + 1, memory_order_relaxed);
		atomic_store_explicit(&g->on_start_ns, 0, memory_order_relaxed);
		atomic_store_explicit(&g->launches, 0, memory_order_relaxed);
		atomic_store_explicit(&g->overflow, 0, memory_order_relaxed);
		atomic_store_explicit(&g->recording, 0, memory_order_relaxed);
		atomic_store_explicit(&g->work_busy_ns, 0, memory_order_relaxed);
		atomic_store_explicit(&g->work_sure_ns, 0, memory_order_relaxed);
		atomic_store_explicit(&g->work_launches, 0, memory_order_relaxed);
		atomic_store_explicit(&g->work_held_ns, 0, memory_order_relaxed);
		atomic_store_explicit(&g->burst_hold_ns, 0, memory_order_relaxed);
		atomic_store_explicit(&g->burst_end_ns, 0, memory_order_relaxed);
		atomic_store_explicit(&g->job, JOB_NONE, memory_order_relaxed);
		atomic_store_explicit(&g->budget, SM_BUDGET_INITIAL, memory_order_relaxed);
		atomic_store_explicit(&g->phase_end_ns, 0, memory_order_relaxed);
		atomic_store_explicit(&g->per_launch_ns, 0, memory_order_relaxed);
		atomic_store_explicit(&g->region_index, -1, memory_order_relaxed);
		atomic_store_explicit(&g->used, false, memory_order_relaxed);
		for (int i = 0; i < SM_STREAMS; i++) {
			atomic_store_explicit(&g->streams[i].key, 0, memory_order_relaxed);
			atomic_store_explicit(&g->streams[i].ctx, 0, memory_order_relaxed);
		}
		pthread_mutex_init(&g->lock, NULL);
		pthread_cond_init(&g->cond, NULL);
	}
	atomic_store_explicit(&any_gate_used, false, memory_order_relaxed);
	atomic_store_explicit(&last_note_ns, 0, memory_order_relaxed);
	atomic_store_explicit(&gpucap_sm_armed, 1, memory_order_release);
}
