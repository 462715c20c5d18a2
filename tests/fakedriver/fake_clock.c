/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
/*
 * The fake driver's clock (fake_clock.h): the system's, or simulated time
 * under GPUCAP_TEST_CLOCK=simulated.
 *
 * Simulated time is a small discrete-event scheduler over real threads.
 * Every thread that has used the clock is either running or waiting in it
 * (a sleep, a timed wait on a channel, an idle section). All of it is one
 * structure under one mutex, so there is no ordering subtlety: whoever
 * makes the last running thread wait moves the clock to the earliest
 * deadline and wakes the waiters due then, counting them as running before
 * it lets go of the mutex. A wake on a channel (gpucap's condition
 * variables) counts its waiters as running in the same way, so the clock
 * never jumps past a thread that has been woken but has not run yet.
 *
 * Shared through a file (GPUCAP_TEST_CLOCK_FILE), the structure holds a
 * process-shared mutex and condition variable and counts running threads
 * per process; a process that exits leaves (destructor), and one that died
 * is dropped when the clock stalls. A wall-clock timeout here is only a
 * hang guard: it reports a stall, it never moves time.
 */
#include "fake_clock.h"
#include "clock.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FAKE_EXPORT     __attribute__((visibility("default")))
#define SIM_WAITERS     256
#define SIM_PROCS       16
#define SIM_MAGIC       UINT64_C(0x73696d636c6f636b)
#define STALL_REPORT_NS UINT64_C(20000000000) /* wall time without progress before saying so */

struct waiter {
	int32_t pid; /* 0: free */
	int32_t proc;
	uint64_t chan; /* 0: a plain sleep */
	uint64_t deadline;
	int32_t woken;
};

struct proc {
	int32_t pid; /* 0: free */
	int32_t running;
	int32_t starting; /* threads created, counted as running, not yet seen */
};

struct sim {
	uint64_t magic;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t now;
	uint64_t real_offset; /* realtime - monotonic */
	uint64_t moves;       /* how often time moved or a waiter was woken */
	int32_t parties;      /* shared: time stands until this many processes joined */
	int32_t joined;
	struct proc procs[SIM_PROCS];
	struct waiter waiters[SIM_WAITERS];
};

static struct sim private_sim;
static struct sim *sim; /* NULL: the system's clock */
static bool shared_sim;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t thread_key;
static _Thread_local bool registered;
static int my_proc = -1; /* under sim->mu */

static uint64_t system_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

static void init_sync(struct sim *s, bool shared)
{
	pthread_mutexattr_t ma;
	pthread_condattr_t ca;
	pthread_mutexattr_init(&ma);
	pthread_condattr_init(&ca);
	if (shared) {
		pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
		pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
	}
	pthread_mutex_init(&s->mu, &ma);
	pthread_cond_init(&s->cv, &ca);
	pthread_mutexattr_destroy(&ma);
	pthread_condattr_destroy(&ca);
}

static void init_time(struct sim *s)
{
	s->now = system_ns(CLOCK_MONOTONIC);
	s->real_offset = system_ns(CLOCK_REALTIME) - s->now;
}

static struct sim *map_shared(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "fake clock: cannot open %s (%s); this process keeps a clock of its own\n",
		        path, strerror(errno));
		return NULL;
	}
	struct sim *s = NULL;
	struct stat st;
	if (flock(fd, LOCK_EX) == 0 && fstat(fd, &st) == 0 &&
	    (st.st_size >= (off_t)sizeof(struct sim) || ftruncate(fd, sizeof(struct sim)) == 0)) {
		void *map = mmap(NULL, sizeof(struct sim), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (map != MAP_FAILED) {
			s = map;
			if (s->magic != SIM_MAGIC) {
				memset(s, 0, sizeof(*s));
				init_time(s);
				init_sync(s, true);
				const char *parties = getenv(FAKE_CLOCK_PARTIES_ENV);
				s->parties = parties ? atoi(parties) : 0;
				s->magic = SIM_MAGIC;
			}
		}
	}
	/* Unlocked by hand: the mapping keeps the open file, so closing the
	 * descriptor alone would not release the lock. */
	flock(fd, LOCK_UN);
	close(fd);
	return s;
}

static void thread_gone(void *arg);

static void setup(void)
{
	const char *value = getenv(GPUCAP_TEST_CLOCK_ENV);
	if (!value || strcmp(value, GPUCAP_TEST_CLOCK_VALUE) != 0)
		return;
	pthread_key_create(&thread_key, thread_gone);
	const char *path = getenv(FAKE_CLOCK_FILE_ENV);
	struct sim *s = path && *path ? map_shared(path) : NULL;
	shared_sim = s != NULL;
	if (!s) {
		s = &private_sim;
		init_time(s);
		init_sync(s, false);
		s->magic = SIM_MAGIC;
	}
	sim = s;
}

/* Set once this process has left a shared clock (its destructor ran): what
 * runs after it (other libraries' destructors: gpucap's own retires its
 * slot at exit) uses the system's clock, so a leaving process can never
 * count itself in again and hold the other parties' time still. */
static bool left_shared;

static struct sim *get(void)
{
	pthread_once(&once, setup);
	return __atomic_load_n(&left_shared, __ATOMIC_ACQUIRE) ? NULL : sim;
}

/* ---- Under sim->mu ------------------------------------------------------ */

static int proc_index(struct sim *s)
{
	int32_t pid = (int32_t)getpid();
	if (my_proc >= 0 && s->procs[my_proc].pid == pid)
		return my_proc;
	for (int i = 0; i < SIM_PROCS; i++)
		if (s->procs[i].pid == pid)
			return my_proc = i;
	for (int i = 0; i < SIM_PROCS; i++) {
		if (s->procs[i].pid == 0) {
			s->procs[i].pid = pid;
			s->procs[i].running = 0;
			s->joined++;
			return my_proc = i;
		}
	}
	fprintf(stderr, "fake clock: more than %d processes share one clock\n", SIM_PROCS);
	abort();
}

static int32_t running(const struct sim *s)
{
	int32_t n = 0;
	for (int i = 0; i < SIM_PROCS; i++)
		if (s->procs[i].pid)
			n += s->procs[i].running;
	return n;
}

static void enter(struct sim *s)
{
	if (registered)
		return;
	registered = true;
	s->procs[proc_index(s)].running++;
	pthread_setspecific(thread_key, (void *)1);
}

static void wake(struct sim *s, struct waiter *w)
{
	w->woken = 1;
	s->procs[w->proc].running++;
	s->moves++;
}

/* Nobody runs: move to the earliest deadline and wake who is due. */
static void advance(struct sim *s)
{
	while (running(s) == 0 && s->joined >= s->parties) {
		uint64_t next = UINT64_MAX;
		for (int i = 0; i < SIM_WAITERS; i++)
			if (s->waiters[i].pid && !s->waiters[i].woken && s->waiters[i].deadline < next)
				next = s->waiters[i].deadline;
		if (next == UINT64_MAX)
			return; /* everyone waits for a wake that only a running thread could give */
		if (next > s->now)
			s->now = next;
		for (int i = 0; i < SIM_WAITERS; i++)
			if (s->waiters[i].pid && !s->waiters[i].woken && s->waiters[i].deadline <= s->now)
				wake(s, &s->waiters[i]);
		pthread_cond_broadcast(&s->cv);
	}
}

/* A process that died while it used the shared clock stops counting. */
static void drop_dead(struct sim *s)
{
	for (int i = 0; i < SIM_PROCS; i++) {
		int32_t pid = s->procs[i].pid;
		if (!pid || pid == (int32_t)getpid() || kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		for (int j = 0; j < SIM_WAITERS; j++)
			if (s->waiters[j].pid == pid)
				s->waiters[j].pid = 0;
		s->procs[i].pid = 0;
		s->procs[i].running = 0;
	}
	advance(s);
}

/* The calling thread (registered) waits until deadline or a wake on chan. */
static void wait_here(struct sim *s, uint64_t chan, uint64_t deadline)
{
	if (deadline <= s->now)
		return;
	int p = proc_index(s);
	struct waiter *w = NULL;
	for (int i = 0; i < SIM_WAITERS && !w; i++)
		if (s->waiters[i].pid == 0)
			w = &s->waiters[i];
	if (!w) {
		fprintf(stderr, "fake clock: more than %d threads wait at once\n", SIM_WAITERS);
		abort();
	}
	*w = (struct waiter){(int32_t)getpid(), p, chan, deadline, 0};
	s->procs[p].running--;
	advance(s);
	uint64_t moves = s->moves, still_since = system_ns(CLOCK_MONOTONIC);
	bool said = false;
	while (!w->woken) {
		uint64_t at = system_ns(CLOCK_REALTIME) + UINT64_C(1000000000);
		struct timespec ts = {(time_t)(at / UINT64_C(1000000000)), (long)(at % UINT64_C(1000000000))};
		pthread_cond_timedwait(&s->cv, &s->mu, &ts);
		if (w->woken || w->pid == 0)
			break;
		if (s->moves != moves) {
			moves = s->moves;
			still_since = system_ns(CLOCK_MONOTONIC);
			continue;
		}
		if (shared_sim)
			drop_dead(s);
		if (!said && system_ns(CLOCK_MONOTONIC) - still_since > STALL_REPORT_NS) {
			said = true;
			fprintf(
			    stderr,
			    "fake clock: simulated time has stood still for 20 s of wall time; %d thread(s) block outside the clock\n",
			    running(s));
		}
	}
	w->pid = 0;
}

static void wake_channel(struct sim *s, uint64_t chan)
{
	bool any = false;
	int32_t pid = (int32_t)getpid();
	for (int i = 0; i < SIM_WAITERS; i++) {
		struct waiter *w = &s->waiters[i];
		if (w->pid == pid && !w->woken && w->chan == chan) {
			wake(s, w);
			any = true;
		}
	}
	if (any)
		pthread_cond_broadcast(&s->cv);
}

static void thread_gone(void *arg)
{
	(void)arg;
	struct sim *s = sim;
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	if (registered) {
		registered = false;
		s->procs[proc_index(s)].running--;
		advance(s);
	}
	pthread_mutex_unlock(&s->mu);
}

/* A process leaving a shared clock takes its threads with it. */
__attribute__((destructor)) static void process_gone(void)
{
	struct sim *s = sim;
	if (!s || !shared_sim)
		return;
	/* Release: partner of the acquire load in get(). */
	__atomic_store_n(&left_shared, true, __ATOMIC_RELEASE);
	pthread_mutex_lock(&s->mu);
	int32_t pid = (int32_t)getpid();
	for (int i = 0; i < SIM_PROCS; i++) {
		if (s->procs[i].pid == pid) {
			s->procs[i].pid = 0;
			s->procs[i].running = 0;
		}
	}
	for (int j = 0; j < SIM_WAITERS; j++)
		if (s->waiters[j].pid == pid)
			s->waiters[j].pid = 0;
	advance(s);
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* ---- The API ------------------------------------------------------------ */

FAKE_EXPORT bool fakeclock_simulated(void)
{
	return get() != NULL;
}

FAKE_EXPORT uint64_t fakeclock_now(void)
{
	struct sim *s = get();
	if (!s)
		return system_ns(CLOCK_MONOTONIC);
	pthread_mutex_lock(&s->mu);
	enter(s);
	uint64_t now = s->now;
	pthread_mutex_unlock(&s->mu);
	return now;
}

FAKE_EXPORT uint64_t fakeclock_realtime_now(void)
{
	struct sim *s = get();
	if (!s)
		return system_ns(CLOCK_REALTIME);
	return fakeclock_now() + s->real_offset;
}

FAKE_EXPORT void fakeclock_sleep_until(uint64_t deadline_ns)
{
	struct sim *s = get();
	if (!s) {
		struct timespec ts = {(time_t)(deadline_ns / UINT64_C(1000000000)),
		                      (long)(deadline_ns % UINT64_C(1000000000))};
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
		}
		return;
	}
	pthread_mutex_lock(&s->mu);
	enter(s);
	wait_here(s, 0, deadline_ns);
	pthread_mutex_unlock(&s->mu);
}

FAKE_EXPORT void fakeclock_sleep(uint64_t ns)
{
	fakeclock_sleep_until(fakeclock_now() + ns);
}

FAKE_EXPORT void fakeclock_thread_starting(void)
{
	struct sim *s = get();
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	enter(s); /* the creator itself, before it counts the new thread */
	struct proc *p = &s->procs[proc_index(s)];
	p->running++;
	p->starting++;
	pthread_mutex_unlock(&s->mu);
}

FAKE_EXPORT void fakeclock_thread_begin(void)
{
	struct sim *s = get();
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	if (!registered) {
		registered = true;
		pthread_setspecific(thread_key, (void *)1);
		struct proc *p = &s->procs[proc_index(s)];
		if (p->starting > 0)
			p->starting--; /* its creator counted it already */
		else
			p->running++;
	}
	pthread_mutex_unlock(&s->mu);
}

FAKE_EXPORT void fakeclock_thread_start_failed(void)
{
	struct sim *s = get();
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	struct proc *p = &s->procs[proc_index(s)];
	if (p->starting > 0) {
		p->starting--;
		p->running--;
		advance(s);
	}
	pthread_mutex_unlock(&s->mu);
}

FAKE_EXPORT void fakeclock_idle_begin(void)
{
	struct sim *s = get();
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	enter(s);
	s->procs[proc_index(s)].running--;
	advance(s);
	pthread_mutex_unlock(&s->mu);
}

FAKE_EXPORT void fakeclock_idle_end(void)
{
	struct sim *s = get();
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->procs[proc_index(s)].running++;
	pthread_mutex_unlock(&s->mu);
}

void fake_clock_fork_prepare(void)
{
	if (sim)
		pthread_mutex_lock(&sim->mu);
}

void fake_clock_fork_parent(void)
{
	if (sim)
		pthread_mutex_unlock(&sim->mu);
}

void fake_clock_fork_child(void)
{
	struct sim *s = sim;
	if (!s)
		return;
	my_proc = -1;
	if (!shared_sim) {
		/* Only this thread came along: the others' waits are gone. */
		init_sync(s, false);
		memset(s->procs, 0, sizeof(s->procs));
		memset(s->waiters, 0, sizeof(s->waiters));
	}
	if (registered)
		s->procs[proc_index(s)].running++;
	if (shared_sim)
		pthread_mutex_unlock(&s->mu);
}

/* ---- libgpucap's clock seam (src/platform/clock.h) ------------------------ */

static uint64_t seam_now(enum gpucap_clock_id id)
{
	return id == GPUCAP_CLOCK_REALTIME ? fakeclock_realtime_now() : fakeclock_now();
}

static void seam_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, uint64_t deadline_ns)
{
	struct sim *s = get();
	if (!s) {
		uint64_t now = system_ns(CLOCK_MONOTONIC);
		if (deadline_ns <= now)
			return;
		uint64_t at = system_ns(CLOCK_REALTIME) + (deadline_ns - now);
		struct timespec ts = {(time_t)(at / UINT64_C(1000000000)), (long)(at % UINT64_C(1000000000))};
		pthread_cond_timedwait(cond, mutex, &ts);
		return;
	}
	/* Registered before the caller's mutex is let go: a waker takes that
	 * mutex, then ours, so it finds this waiter in the table. */
	pthread_mutex_lock(&s->mu);
	enter(s);
	pthread_mutex_unlock(mutex);
	wait_here(s, (uint64_t)(uintptr_t)cond, deadline_ns);
	pthread_mutex_unlock(&s->mu);
	pthread_mutex_lock(mutex);
}

static void seam_wake_all(pthread_cond_t *cond)
{
	struct sim *s = get();
	if (!s) {
		pthread_cond_broadcast(cond);
		return;
	}
	pthread_mutex_lock(&s->mu);
	wake_channel(s, (uint64_t)(uintptr_t)cond);
	pthread_mutex_unlock(&s->mu);
}

FAKE_EXPORT const struct gpucap_clock_ops gpucap_test_clock = {
    .magic = GPUCAP_TEST_CLOCK_MAGIC,
    .version = GPUCAP_TEST_CLOCK_VERSION,
    .size = sizeof(struct gpucap_clock_ops),
    .now = seam_now,
    .sleep_until = fakeclock_sleep_until,
    .wait = seam_wait,
    .wake_all = seam_wake_all,
    .thread_starting = fakeclock_thread_starting,
    .thread_start_failed = fakeclock_thread_start_failed,
    .thread_begin = fakeclock_thread_begin,
};
