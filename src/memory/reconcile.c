/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ledger anchored to the driver's truth.
 *
 * The ledger (what the intercepted calls charged) is the hot path. What the
 * driver holds for the process beyond it (context growth, limits, module
 * globals, graph pools, a library's own allocations) is learnt from the
 * driver's own per-process figure, NVML's used memory for getpid() (inside
 * a PID namespace NVML names processes as the namespace sees them), and
 * charged as GPUCAP_KIND_DRIVER: truth - (every other kind this process
 * holds), never below 0. Where NVML cannot say, the graph pool's reserved
 * size (cuDeviceGetGraphMemAttribute) is what is charged; pools follow
 * their own reserved size in pools.c.
 *
 * This runs off the allocation paths only: on gpucap's reconciler thread
 * (every GPUCAP_RECONCILE_MS, 100 ms by default, while launches come, else
 * once a second; started with the first context) and right
 * after the calls that take memory behind the allocation APIs (behind.c).
 * One mutex per device orders this process's steps for that device; no
 * allocation or free ever takes it, and nothing here is shared between
 * processes other than the region's own lock-free charge.
 */
#define _GNU_SOURCE
#include "clock.h"
#include "driver.h"
#include "log.h"
#include "memory_internal.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The reconciler's period: GPUCAP_RECONCILE_MS, resolved by the policy
 * (100 ms unless set); the same 100 ms where no configuration is given. */
static uint64_t period_ns(void)
{
	uint32_t ms =
	    memory_env.config && memory_env.config->reconcile_ms ? memory_env.config->reconcile_ms : 100u;
	return (uint64_t)ms * 1000000u;
}
#define MAX_PROCESSES 1024

struct truth_dev {
	pthread_mutex_t lock;
	atomic_bool active;      /* a context exists: the thread looks at it */
	uint64_t driver_charged; /* charged as GPUCAP_KIND_DRIVER; under lock */
	bool measured;           /* a context was measured; under lock */
	bool over_logged;
	/* This process's first context on the device, charged at its estimate
	 * because it could not be measured at its creation: the reconciler
	 * measures it (enum gpucap_context_which; written under lock, read
	 * without it to skip the lock when nothing waits). */
	atomic_int pending_which;
	uint64_t pending_key; /* its handle when tracked; under lock */
	/* Reconciliations that found it still unmeasured (written under lock;
	 * read by gpucap_context_estimate_settle without it). */
	atomic_uint pending_tries;
	/* The pending context's charge is a size some process of the region
	 * measured, not the blind default: its measurement can lower it by
	 * little, so peers do not wait for it and the reconciler asks for it
	 * at the quiet pace only. */
	atomic_bool adopted;
};

/* Taken before an NVML query whose figure the ledger is subtracted from
 * (gpucap_ledger_quiet). */
struct ledger_mark {
	bool quiet;
	uint64_t begun;
};

static struct ledger_mark ledger_mark_now(void)
{
	struct ledger_mark m;
	m.quiet = gpucap_ledger_quiet(&m.begun);
	return m;
}

/* After this many reconciliations (3 s of the thread's periods, the default GPUCAP_CONTEXT_WAIT_MS) that
 * could not measure it, a context stops telling other processes to wait for its measurement (a driver that
 * never lists this process: a PID it cannot translate). Its charge stays at the estimate. Counted in steps,
 * not time, so the hint's life does not depend on the machine's load. */
#define CONTEXT_HINT_MS 3000u
static unsigned context_hint_tries(void)
{
	unsigned tries = (unsigned)(CONTEXT_HINT_MS * UINT64_C(1000000) / period_ns());
	return tries ? tries : 1;
}

static struct truth_dev truth[GPUCAP_MAX_DEVICES] = {
    [0 ... GPUCAP_MAX_DEVICES - 1] = {.lock = PTHREAD_MUTEX_INITIALIZER},
};
static atomic_bool thread_started;
/* At exit the driver libraries' destructors may run: the thread must not be
 * inside NVML or the driver then. stopping and in_step are a Dekker pair
 * (both seq_cst): the thread raises in_step then reads stopping; exit raises
 * stopping then reads in_step. So either the thread sees stopping and takes
 * no step, or exit sees the step and waits (bounded) for its end. */
static atomic_bool stopping;
static atomic_bool in_step;
static atomic_bool atexit_registered;
static atomic_int nvml_state; /* 0 unknown, 1 ready, -1 unavailable */

/* The thread sleeps one period between steps, through the platform's clock
 * seam (src/platform/clock.h): a test runs it on the test double's
 * simulated time, as it does the compute threads. */

/* ---- The truth ------------------------------------------------------------------ */

static bool nvml_ready(void)
{
	int state = atomic_load(&nvml_state);
	if (state == 0) {
		gpucap_fn_nvmlInit_v2 init = GPUCAP_REAL(nvmlInit_v2);
		state = init && init() == NVML_SUCCESS && GPUCAP_REAL(nvmlDeviceGetHandleByUUID) &&
		                GPUCAP_REAL(nvmlDeviceGetComputeRunningProcesses_v3)
		            ? 1
		            : -1;
		atomic_store(&nvml_state, state);
	}
	return state > 0;
}

enum truth_answer {
	TRUTH_KNOWN,       /* *bytes is NVML's figure */
	TRUTH_UNSUPPORTED, /* NVML cannot say here: use the driver's attributes */
	TRUTH_FAILED,      /* this query failed: change nothing */
};

/* NVML's used memory for this process on dev; *listed (when asked): NVML
 * named the process (else it holds nothing there, as far as NVML knows). */
static enum truth_answer nvml_truth(const struct gpucap_device *dev, uint64_t *bytes, bool *listed)
{
	if (listed)
		*listed = false;
	if (!nvml_ready())
		return TRUTH_UNSUPPORTED;
	nvmlDevice_t handle;
	if (GPUCAP_REAL(nvmlDeviceGetHandleByUUID)(dev->uuid, &handle) != NVML_SUCCESS)
		return TRUTH_FAILED;
	nvmlProcessInfo_t *infos = calloc(MAX_PROCESSES, sizeof(*infos));
	if (!infos)
		return TRUTH_FAILED;
	unsigned int count = MAX_PROCESSES;
	nvmlReturn_t r = GPUCAP_REAL(nvmlDeviceGetComputeRunningProcesses_v3)(handle, &count, infos);
	enum truth_answer answer = TRUTH_KNOWN;
	if (r != NVML_SUCCESS) {
		answer = r == NVML_ERROR_NOT_SUPPORTED || r == NVML_ERROR_FUNCTION_NOT_FOUND
		             ? TRUTH_UNSUPPORTED
		             : TRUTH_FAILED;
		count = 0;
	}
	*bytes = 0; /* not listed: holds nothing */
	pid_t self = getpid();
	for (unsigned int i = 0; i < count && i < MAX_PROCESSES; i++) {
		if ((pid_t)infos[i].pid != self)
			continue;
		if (listed)
			*listed = true;
		/* Some drivers cannot tell per-process figures: all ones. */
		if (infos[i].usedGpuMemory == ~0ull)
			answer = TRUTH_UNSUPPORTED;
		else
			*bytes = infos[i].usedGpuMemory;
		break;
	}
	free(infos);
	return answer;
}

/* Memory this process holds on dev, as the ledger says, by kind. */
static uint64_t ledger_of(const struct gpucap_device *dev, int64_t kinds[GPUCAP_KIND_COUNT])
{
	gpucap_region_own_kind_bytes(memory_env.region, dev->region_index, kinds);
	int64_t sum = 0;
	for (int k = 0; k < GPUCAP_KIND_COUNT; k++)
		if (k != GPUCAP_KIND_DRIVER)
			sum += kinds[k];
	return sum > 0 ? (uint64_t)sum : 0;
}

/* What the driver holds beyond the ledger, from NVML's answer (truth_bytes
 * when known), else (where NVML cannot say at all) the graph pool. False:
 * nothing known this time. */
static bool driver_target(const struct gpucap_device *dev, enum truth_answer answer, uint64_t truth_bytes,
                          uint64_t *target)
{
	int64_t kinds[GPUCAP_KIND_COUNT];
	switch (answer) {
	case TRUTH_KNOWN: {
		uint64_t ledger = ledger_of(dev, kinds);
		*target = truth_bytes > ledger ? truth_bytes - ledger : 0;
		return true;
	}
	case TRUTH_FAILED:
		return false;
	case TRUTH_UNSUPPORTED:
		break;
	}
	gpucap_fn_cuDeviceGetGraphMemAttribute graph = GPUCAP_REAL(cuDeviceGetGraphMemAttribute);
	cuuint64_t reserved = 0;
	if (graph && graph(dev->ordinal, CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT, &reserved) == CUDA_SUCCESS) {
		*target = reserved;
		return true;
	}
	return false;
}

/* Move the driver charge to target (caller holds t->lock). False when the
 * container has no room for all of it: what fits is charged, so every
 * further allocation is refused until memory is given back. */
static bool settle_locked(struct gpucap_device *dev, struct truth_dev *t, uint64_t target)
{
	if (target < t->driver_charged) {
		gpucap_unadmit_correction(dev->region_index, GPUCAP_KIND_DRIVER, t->driver_charged - target);
		t->driver_charged = target;
		t->over_logged = false;
		return true;
	}
	uint64_t need = target - t->driver_charged;
	if (need == 0 || gpucap_admit_index(dev->region_index, GPUCAP_KIND_DRIVER, need) == CUDA_SUCCESS) {
		t->driver_charged = target;
		return true;
	}
	uint64_t limit, charged;
	if (gpucap_device_usage(dev->region_index, &limit, &charged) && charged < limit) {
		uint64_t room = limit - charged < need ? limit - charged : need;
		if (gpucap_admit_index(dev->region_index, GPUCAP_KIND_DRIVER, room) == CUDA_SUCCESS)
			t->driver_charged += room;
	}
	if (!t->over_logged) {
		t->over_logged = true;
		gpucap_log(
		    GPUCAP_LOG_WARN,
		    "device %d: the driver holds %llu bytes for this process that no allocation call asked for, and the container has no room for them; further allocations are refused until memory is freed",
		    dev->ordinal, (unsigned long long)target);
	}
	return false;
}

static void measure_pending_locked(struct gpucap_device *dev, struct truth_dev *t, uint64_t truth_bytes,
                                   const struct ledger_mark *mark);

bool gpucap_reconcile(struct gpucap_device *dev)
{
	if (dev->fail_closed || dev->region_index < 0 || dev->ordinal < 0 ||
	    dev->ordinal >= GPUCAP_MAX_DEVICES)
		return true;
	struct truth_dev *t = &truth[dev->ordinal];
	/* A primary context waiting to be measured is read under its own lock,
	 * taken first as the retain path does (primary_lock, then t->lock). */
	bool primary = atomic_load(&t->pending_which) == CONTEXT_PENDING_PRIMARY;
	if (primary)
		pthread_mutex_lock(&dev->primary_lock);
	pthread_mutex_lock(&t->lock);
	uint64_t truth_bytes = 0, target;
	struct ledger_mark mark = ledger_mark_now();
	enum truth_answer answer = nvml_truth(dev, &truth_bytes, NULL);
	/* One line per query at debug level: how often a process asks NVML
	 * is then read from its log (bench/gpu/run.sh counts them). */
	if (answer == TRUTH_KNOWN)
		GPUCAP_LOG(GPUCAP_LOG_DEBUG,
		           "device %d: reconciling: NVML's figure for this process is %llu bytes",
		           dev->ordinal, (unsigned long long)truth_bytes);
	else
		GPUCAP_LOG(GPUCAP_LOG_DEBUG, "device %d: reconciling: NVML gave no figure for this process",
		           dev->ordinal);
	/* Under t->lock, where the pending mark is written. */
	int pending = atomic_load(&t->pending_which);
	if (answer == TRUTH_KNOWN &&
	    (pending == CONTEXT_PENDING_TRACKED || (pending == CONTEXT_PENDING_PRIMARY && primary)))
		measure_pending_locked(dev, t, truth_bytes, &mark);
	if (pending != CONTEXT_PENDING_NONE && atomic_load(&t->pending_which) != CONTEXT_PENDING_NONE &&
	    atomic_fetch_add(&t->pending_tries, 1) + 1 == context_hint_tries()) {
		gpucap_context_estimate_settle(dev);
		GPUCAP_LOG(
		    GPUCAP_LOG_DETAIL,
		    "device %d: the context is still not measured after %u tries (%s); other processes "
		    "no longer wait for it",
		    dev->ordinal, context_hint_tries(),
		    answer == TRUTH_KNOWN ? "no usable figure for this process" : "NVML cannot say");
	}
	bool fits = true;
	if (driver_target(dev, answer, truth_bytes, &target)) {
		/* An allocation or free under way makes NVML's figure lag the
		 * ledger: such a step may raise the driver charge, never lower
		 * it (a lower one would admit the bytes in flight twice). */
		bool steady = mark.quiet && gpucap_ledger_still(mark.begun);
		if (!steady && target < t->driver_charged)
			target = t->driver_charged;
		fits = settle_locked(dev, t, target);
	}
	pthread_mutex_unlock(&t->lock);
	if (primary)
		pthread_mutex_unlock(&dev->primary_lock);
	return fits;
}

void gpucap_reconcile_before_refusal(int region_index)
{
	/* A context of this process still charged at its estimate (the driver
	 * listed the process too late to measure it at its creation) is
	 * measured now, so that the refusal is judged on the truth: processes
	 * that start together and fill the cap at once would otherwise be
	 * refused for the estimates' excess. One NVML query, only on the way
	 * to a refusal and only while a measurement is pending. It never
	 * waits: a lock held elsewhere, or by this very thread (a charge made
	 * under it), leaves the measurement to the reconciler. */
	for (int i = 0; i < GPUCAP_MAX_DEVICES; i++) {
		struct truth_dev *t = &truth[i];
		int pending = atomic_load(&t->pending_which);
		struct gpucap_device *dev;
		if (pending == CONTEXT_PENDING_NONE || gpucap_device_get(i, &dev) != CUDA_SUCCESS ||
		    dev->region_index != region_index || dev->fail_closed)
			continue;
		bool primary = pending == CONTEXT_PENDING_PRIMARY;
		if (primary && pthread_mutex_trylock(&dev->primary_lock) != 0)
			continue;
		if (pthread_mutex_trylock(&t->lock) == 0) {
			uint64_t truth_bytes = 0;
			int now_pending = atomic_load(&t->pending_which);
			struct ledger_mark mark = ledger_mark_now();
			if ((now_pending == CONTEXT_PENDING_TRACKED ||
			     (now_pending == CONTEXT_PENDING_PRIMARY && primary)) &&
			    nvml_truth(dev, &truth_bytes, NULL) == TRUTH_KNOWN)
				measure_pending_locked(dev, t, truth_bytes, &mark);
			pthread_mutex_unlock(&t->lock);
		}
		if (primary)
			pthread_mutex_unlock(&dev->primary_lock);
	}
}

CUresult gpucap_reconcile_declare(struct gpucap_device *dev, uint64_t bytes)
{
	if (bytes == 0 || dev->fail_closed || dev->region_index < 0)
		return dev->fail_closed ? CUDA_ERROR_OUT_OF_MEMORY : CUDA_SUCCESS;
	struct truth_dev *t = &truth[dev->ordinal];
	pthread_mutex_lock(&t->lock);
	CUresult r = gpucap_admit_index(dev->region_index, GPUCAP_KIND_DRIVER, bytes);
	if (r == CUDA_SUCCESS)
		t->driver_charged += bytes;
	pthread_mutex_unlock(&t->lock);
	return r;
}

void gpucap_reconcile_undeclare(struct gpucap_device *dev, uint64_t bytes)
{
	if (bytes == 0 || dev->fail_closed || dev->region_index < 0)
		return;
	struct truth_dev *t = &truth[dev->ordinal];
	pthread_mutex_lock(&t->lock);
	if (bytes > t->driver_charged)
		bytes = t->driver_charged;
	gpucap_unadmit_correction(dev->region_index, GPUCAP_KIND_DRIVER, bytes);
	t->driver_charged -= bytes;
	pthread_mutex_unlock(&t->lock);
}

/* ---- Contexts ------------------------------------------------------------------- */

uint64_t gpucap_context_estimate(const struct gpucap_device *dev)
{
	if (memory_env.config->context_bytes_set || dev->region_index < 0)
		return memory_env.config->context_bytes;
	uint64_t measured = gpucap_region_context_bytes(memory_env.region, dev->region_index);
	return measured ? measured + GPUCAP_CONTEXT_GROWTH_BYTES : memory_env.config->context_bytes;
}

void gpucap_context_estimate_settle(const struct gpucap_device *dev)
{
	if (memory_env.config->context_bytes_set || dev->region_index < 0)
		return;
	const struct truth_dev *t = &truth[dev->ordinal];
	bool pending = atomic_load(&t->pending_which) != CONTEXT_PENDING_NONE && !atomic_load(&t->adopted) &&
	               atomic_load(&t->pending_tries) < context_hint_tries();
	gpucap_region_mark_context_estimate(memory_env.region, dev->region_index, pending);
	gpucap_region_mark_context_creating(memory_env.region, dev->region_index, false);
}

/* Contexts measured below this are not believed (a driver that reports
 * nothing per process, or a process it does not list yet). */
#define CONTEXT_MEASURED_MIN GPUCAP_CONTEXT_BYTES_MIN
/* At a context's creation the driver's figure is asked this many times,
 * CONTEXT_RETRY_NS apart, doubling, until it lists the process: at most
 * 7 ms more at start-up, and only where the first answer was unusable. */
#define CONTEXT_TRIES    4
#define CONTEXT_RETRY_NS UINT64_C(1000000)

/* The size of a context charged `charged`, from the driver's figure truth:
 * truth less everything else the process is charged on dev (caller holds
 * t->lock, so the driver charge does not move). False: not believable, or
 * (*disturbed) an allocation or free of another thread was under way
 * between the caller's mark (gpucap_ledger_quiet, taken before the query)
 * and the ledger's read, so truth and ledger disagree by its bytes: ask
 * again later. */
static bool context_size_locked(const struct gpucap_device *dev, const struct truth_dev *t,
                                uint64_t truth_bytes, uint64_t charged, const struct ledger_mark *mark,
                                uint64_t *size, bool *disturbed)
{
	int64_t kinds[GPUCAP_KIND_COUNT];
	uint64_t ledger = ledger_of(dev, kinds) + t->driver_charged;
	*disturbed = !mark->quiet || !gpucap_ledger_still(mark->begun);
	if (*disturbed)
		return false;
	uint64_t others = ledger > charged ? ledger - charged : 0;
	uint64_t measured = truth_bytes > others ? truth_bytes - others : 0;
	if (measured < CONTEXT_MEASURED_MIN || measured > GPUCAP_CONTEXT_BYTES_MAX)
		return false;
	*size = measured;
	return true;
}

/* Move a context's charge from `charged` to its measured size plus the
 * growth allowance. A raise that does not fit is left to the driver charge
 * (reconciliation). Returns the context's charge now. */
static uint64_t move_context_charge(const struct gpucap_device *dev, uint64_t charged, uint64_t measured)
{
	uint64_t bytes = measured + GPUCAP_CONTEXT_GROWTH_BYTES;
	if (bytes > charged &&
	    gpucap_admit_index(dev->region_index, GPUCAP_KIND_CONTEXT, bytes - charged) != CUDA_SUCCESS)
		return charged;
	if (bytes < charged)
		gpucap_unadmit_correction(dev->region_index, GPUCAP_KIND_CONTEXT, charged - bytes);
	return bytes;
}

static uint64_t adopt_region_size(const struct gpucap_device *dev, uint64_t charged);

/* The pending context on dev is now charged `charge`: at or below a size
 * the region measured, it is adopted (struct truth_dev). Its caller then
 * settles the estimate mark (gpucap_context_estimate_settle). */
static void note_adopted(const struct gpucap_device *dev, uint64_t charge)
{
	uint64_t noted = gpucap_region_context_bytes(memory_env.region, dev->region_index);
	atomic_store(&truth[dev->ordinal].adopted, noted && charge <= noted + GPUCAP_CONTEXT_GROWTH_BYTES);
}

static uint64_t measure_new_context(struct gpucap_device *dev, uint64_t charged,
                                    enum gpucap_context_which which, uint64_t key)
{
	if (memory_env.config->context_bytes_set || dev->fail_closed || dev->region_index < 0)
		return charged;
	struct truth_dev *t = &truth[dev->ordinal];
	uint64_t retry_ns = CONTEXT_RETRY_NS;
	const char *why = "NVML cannot say";
	bool left_pending = false;
	for (int attempt = 0; attempt < CONTEXT_TRIES; attempt++) {
		if (attempt > 0) {
			/* Not under t->lock: the reconciler thread may need it
			 * to reach its own wait (a simulated clock moves only
			 * when every thread waits). */
			gpucap_clock_sleep(retry_ns);
			retry_ns *= 2;
		}
		pthread_mutex_lock(&t->lock);
		if (t->measured || atomic_load(&t->pending_which) != CONTEXT_PENDING_NONE) {
			/* Measured already, or an earlier context waits for
			 * the reconciler: this one keeps the estimate. */
			pthread_mutex_unlock(&t->lock);
			return charged;
		}
		uint64_t truth_bytes, measured;
		bool listed, disturbed = false;
		struct ledger_mark mark = ledger_mark_now();
		enum truth_answer answer = nvml_truth(dev, &truth_bytes, &listed);
		if (answer == TRUTH_KNOWN &&
		    context_size_locked(dev, t, truth_bytes, charged, &mark, &measured, &disturbed)) {
			t->measured = true;
			gpucap_region_note_context_bytes(memory_env.region, dev->region_index, measured);
			pthread_mutex_unlock(&t->lock);
			GPUCAP_LOG(GPUCAP_LOG_DETAIL, "device %d: a context measured %llu bytes",
			           dev->ordinal, (unsigned long long)measured);
			return move_context_charge(dev, charged, measured);
		}
		why = disturbed                         ? "another thread's allocation or free was under way"
		      : answer == TRUTH_KNOWN && listed ? "the driver's figure is too small to be a context"
		      : answer == TRUTH_KNOWN           ? "the process is not listed yet"
		      : answer == TRUTH_FAILED          ? "the query failed"
		                                        : "NVML cannot say";
		/* Asked again only where the driver may not have caught up:
		 * the process not listed yet, the query failed, or another
		 * thread's allocation was under way. */
		bool again = disturbed || answer == TRUTH_FAILED || (answer == TRUTH_KNOWN && !listed);
		bool last = !again || attempt == CONTEXT_TRIES - 1;
		if (last && answer != TRUTH_UNSUPPORTED) {
			/* The reconciler measures it at its next steps. */
			t->pending_key = key;
			atomic_store(&t->pending_tries, 0);
			atomic_store(&t->adopted, false);
			atomic_store(&t->pending_which, which); /* partner: the loads in reconcile/forget */
			left_pending = true;
		}
		pthread_mutex_unlock(&t->lock);
		if (last)
			break;
	}
	GPUCAP_LOG(
	    GPUCAP_LOG_DETAIL,
	    "device %d: the new context could not be measured (%s); it is charged %llu bytes until it is",
	    dev->ordinal, why, (unsigned long long)charged);
	/* Its estimate was charged before the driver made it, often before any
	 * peer had measured one: 32 processes starting together on an H100
	 * spent 5 s inside the creation, and meanwhile others measured theirs.
	 * Their size is taken now rather than at the reconciler's next step,
	 * since this process allocates at once and its peers do too: three of
	 * the 32 were refused 16 MiB while contexts the driver had finished sat
	 * at the 640 MiB estimate. Safe without t->lock: the caller stores the
	 * charge returned here before the reconciler can see this context (the
	 * primary context under dev->primary_lock, a created one once it is
	 * tracked). */
	if (!left_pending)
		return charged;
	uint64_t bytes = adopt_region_size(dev, charged);
	note_adopted(dev, bytes);
	return bytes;
}

uint64_t gpucap_context_measure(struct gpucap_device *dev, uint64_t charged, enum gpucap_context_which which,
                                uint64_t key)
{
	uint64_t bytes = measure_new_context(dev, charged, which, key);
	/* Measured, or left to the reconciler: peers refused a context
	 * wait only for the latter (context_admit.c). */
	gpucap_context_estimate_settle(dev);
	return bytes;
}

/* A context the driver does not list yet (on an H100, 6 of 8 processes
 * that started together were listed neither at their creation nor at their
 * first refusal) is charged the size another process of the region has
 * measured on this device, when that is less than its charge; what this
 * one holds beyond that is charged as driver memory once the driver lists
 * it (driver_target). Without this, every process started before the first
 * measurement kept the estimate's excess, and peers were refused for it.
 * Returns the context's charge now. */
static uint64_t adopt_region_size(const struct gpucap_device *dev, uint64_t charged)
{
	uint64_t noted = gpucap_region_context_bytes(memory_env.region, dev->region_index);
	if (!noted || noted + GPUCAP_CONTEXT_GROWTH_BYTES >= charged)
		return charged;
	uint64_t bytes = move_context_charge(dev, charged, noted);
	GPUCAP_LOG(
	    GPUCAP_LOG_DETAIL,
	    "device %d: a context not listed by the driver yet is charged %llu bytes, the size measured "
	    "by another process, instead of %llu",
	    dev->ordinal, (unsigned long long)bytes, (unsigned long long)charged);
	return bytes;
}

/* The context still charged at its estimate, measured now from truth_bytes
 * (caller holds t->lock and, for a primary context, dev->primary_lock). A
 * measurement below the charge lowers it; above it the driver charge takes
 * the rest. */
static void measure_pending_locked(struct gpucap_device *dev, struct truth_dev *t, uint64_t truth_bytes,
                                   const struct ledger_mark *mark)
{
	int which = atomic_load(&t->pending_which);
	uint64_t measured;
	bool disturbed;
	if (which == CONTEXT_PENDING_PRIMARY) {
		if (dev->primary_refs == 0) {
			atomic_store(&t->pending_which, CONTEXT_PENDING_NONE);
			gpucap_context_estimate_settle(dev);
			return;
		}
		if (!context_size_locked(dev, t, truth_bytes, dev->primary_bytes, mark, &measured,
		                         &disturbed)) {
			if (disturbed)
				return; /* asked again at the next step */
			dev->primary_bytes = adopt_region_size(dev, dev->primary_bytes);
			note_adopted(dev, dev->primary_bytes);
			gpucap_context_estimate_settle(dev);
			return;
		}
		if (measured + GPUCAP_CONTEXT_GROWTH_BYTES < dev->primary_bytes)
			dev->primary_bytes = move_context_charge(dev, dev->primary_bytes, measured);
	} else if (which == CONTEXT_PENDING_TRACKED) {
		/* Out of the map while it is corrected: a destroy waits for
		 * t->lock (gpucap_context_forget) before it looks for it. */
		struct gpucap_track_entry *entry = gpucap_track_remove(GPUCAP_TRACK_CTX, t->pending_key);
		if (!entry)
			return; /* not tracked yet: the creation is finishing */
		bool believed =
		    context_size_locked(dev, t, truth_bytes, entry->bytes, mark, &measured, &disturbed);
		if (disturbed) {
			gpucap_track_put(entry);
			return; /* asked again at the next step */
		}
		if (believed && measured + GPUCAP_CONTEXT_GROWTH_BYTES < entry->bytes)
			entry->bytes = move_context_charge(dev, entry->bytes, measured);
		else if (!believed)
			entry->bytes = adopt_region_size(dev, entry->bytes);
		if (!believed)
			note_adopted(dev, entry->bytes);
		gpucap_track_put(entry);
		if (!believed) {
			gpucap_context_estimate_settle(dev);
			return;
		}
	} else {
		return;
	}
	t->measured = true;
	atomic_store(&t->pending_which, CONTEXT_PENDING_NONE);
	atomic_store(&t->adopted, false);
	gpucap_context_estimate_settle(dev);
	/* Measured late, the figure may hold what the driver took since
	 * (module globals placed at a launch): it only ever lowers the size
	 * the next processes start from. */
	uint64_t noted = gpucap_region_context_bytes(memory_env.region, dev->region_index);
	if (!noted || measured < noted)
		gpucap_region_note_context_bytes(memory_env.region, dev->region_index, measured);
	GPUCAP_LOG(GPUCAP_LOG_DETAIL, "device %d: a context measured %llu bytes after its creation",
	           dev->ordinal, (unsigned long long)measured);
}

void gpucap_context_forget(uint64_t key)
{
	for (int i = 0; i < GPUCAP_MAX_DEVICES; i++) {
		struct truth_dev *t = &truth[i];
		/* partner: the seq_cst store in gpucap_context_measure; a
		 * context being destroyed was created (and its pending mark
		 * stored) before its handle reached the destroying thread. */
		if (atomic_load(&t->pending_which) != CONTEXT_PENDING_TRACKED)
			continue;
		pthread_mutex_lock(&t->lock);
		if (t->pending_key == key) {
			atomic_store(&t->pending_which, CONTEXT_PENDING_NONE);
			struct gpucap_device *dev;
			if (gpucap_device_get(i, &dev) == CUDA_SUCCESS)
				gpucap_context_estimate_settle(dev);
		}
		pthread_mutex_unlock(&t->lock);
	}
}

/* ---- The thread --------------------------------------------------------------- */

/* The thread sleeps on this pair so that exit can wake it: a thread left
 * asleep in a clock (a test's simulated one is shared between processes)
 * when its process exits would leave that clock waiting for it. */
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sleep_cond = PTHREAD_COND_INITIALIZER;
static atomic_bool thread_done;

/* Sleep one period unless exit asks the thread to stop; true: stop. */
static bool sleep_period(void)
{
	pthread_mutex_lock(&sleep_lock);
	uint64_t until = gpucap_clock_now(GPUCAP_CLOCK_MONOTONIC) + period_ns();
	/* Under sleep_lock, so stop_at_exit's wake cannot fall between this
	 * check and the wait (its store and wake are under the same lock). */
	while (!atomic_load(&stopping) && gpucap_clock_now(GPUCAP_CLOCK_MONOTONIC) < until)
		gpucap_clock_wait(&sleep_cond, &sleep_lock, until);
	bool stop = atomic_load(&stopping);
	pthread_mutex_unlock(&sleep_lock);
	return stop;
}

atomic_bool gpucap_launched_lately;

/* Without launches, the growth gpucap knows of comes at the calls behind.c
 * reconciles at once; a query a second is the backstop for growth no call
 * names (and for memory the driver gives back unasked, an unloaded module's). After a launch the reconciler
 * asks at each of its next two periods, so growth the driver makes just after the launch call returns is seen
 * too. A context still waiting for its measurement is asked for every period. */
#define QUIET_BACKSTOP_NS    UINT64_C(1000000000)
#define PERIODS_AFTER_LAUNCH 2u

static bool any_pending(void)
{
	for (int i = 0; i < GPUCAP_MAX_DEVICES; i++)
		if (atomic_load_explicit(&truth[i].active, memory_order_relaxed) &&
		    atomic_load(&truth[i].pending_which) != CONTEXT_PENDING_NONE &&
		    !atomic_load(&truth[i].adopted))
			return true;
	return false;
}

/* Whether this period's step asks NVML; *after_launch counts down the
 * periods owed to the last launch, *last_ns is the last step's time. */
static bool step_due(uint64_t now, uint64_t *last_ns, unsigned *after_launch)
{
	if (atomic_exchange_explicit(&gpucap_launched_lately, false, memory_order_relaxed))
		*after_launch = PERIODS_AFTER_LAUNCH;
	uint64_t backstop = period_ns() > QUIET_BACKSTOP_NS ? period_ns() : QUIET_BACKSTOP_NS;
	if (*after_launch == 0 && !any_pending() && now - *last_ns < backstop)
		return false;
	if (*after_launch > 0)
		(*after_launch)--;
	*last_ns = now;
	return true;
}

static void *reconciler(void *arg)
{
	(void)arg;
	gpucap_clock_thread_begin();
	uint64_t last_ns = gpucap_clock_now(GPUCAP_CLOCK_MONOTONIC);
	unsigned after_launch = PERIODS_AFTER_LAUNCH; /* the first context's launches may be under way */
	for (;;) {
		if (sleep_period())
			break;
		if (!step_due(gpucap_clock_now(GPUCAP_CLOCK_MONOTONIC), &last_ns, &after_launch))
			continue;
		atomic_store(&in_step, true); /* partner: stop_at_exit's load of in_step */
		if (atomic_load(&stopping)) { /* partner: stop_at_exit's store of stopping */
			atomic_store(&in_step, false);
			break;
		}
		for (int i = 0; i < GPUCAP_MAX_DEVICES; i++) {
			if (!atomic_load_explicit(&truth[i].active, memory_order_relaxed))
				continue;
			struct gpucap_device *dev;
			if (gpucap_device_get(i, &dev) == CUDA_SUCCESS)
				gpucap_reconcile(dev);
		}
		atomic_store(&in_step, false);
	}
	atomic_store(&thread_done, true); /* partner: stop_at_exit's load of thread_done */
	return NULL;
}

/* At exit: stop the thread and let it leave its sleep (bounded: 200 ms of
 * real time for a step in progress). */
static void stop_at_exit(void)
{
	pthread_mutex_lock(&sleep_lock);
	atomic_store(&stopping, true); /* partner: the thread's loads of stopping */
	gpucap_clock_wake_all(&sleep_cond);
	pthread_mutex_unlock(&sleep_lock);
	for (int i = 0; i < 200 && !atomic_load(&thread_done); i++) { /* partner: the thread's store */
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
}

void gpucap_reconcile_device_active(const struct gpucap_device *dev)
{
	if (dev->fail_closed || dev->region_index < 0 || dev->ordinal < 0 ||
	    dev->ordinal >= GPUCAP_MAX_DEVICES)
		return;
	atomic_store_explicit(&truth[dev->ordinal].active, true, memory_order_relaxed);
	if (atomic_exchange(&thread_started, true))
		return;
	if (!atomic_exchange(&atexit_registered, true))
		atexit(stop_at_exit);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* The application's signals are not ours to take. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_t thread;
	atomic_store(&thread_done, false);
	gpucap_clock_thread_starting();
	int err = pthread_create(&thread, &attr, reconciler, NULL);
	if (err != 0) {
		gpucap_clock_thread_start_failed();
		atomic_store(&thread_done, true);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (err != 0)
		gpucap_log(
		    GPUCAP_LOG_WARN,
		    "cannot start the memory reconciler thread (error %d): memory the driver takes behind the allocation calls is charged only at the calls gpucap knows",
		    err);
}

void gpucap_reconcile_after_fork(void)
{
	for (int i = 0; i < GPUCAP_MAX_DEVICES; i++) {
		pthread_mutex_init(&truth[i].lock, NULL);
		atomic_store(&truth[i].active, false);
		truth[i].driver_charged = 0;
		truth[i].measured = false;
		truth[i].over_logged = false;
		atomic_store(&truth[i].pending_which, CONTEXT_PENDING_NONE);
		atomic_store(&truth[i].adopted, false);
		truth[i].pending_key = 0;
	}
	/* The child has no reconciler thread (its exit must not wait for one)
	 * and may have copied the lock held. */
	pthread_mutex_init(&sleep_lock, NULL);
	pthread_cond_init(&sleep_cond, NULL);
	atomic_store(&thread_done, true);
	atomic_store(&thread_started, false);
}
