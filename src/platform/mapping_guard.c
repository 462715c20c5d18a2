/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Mapping guard: a region or schedule file that another party truncates
 * while it is mapped must not kill the processes mapping it. Touching a page
 * past the new end of a shared file mapping raises SIGBUS; the guard answers
 * such a fault, and only such a fault, by putting private zero pages in
 * place of the whole guarded mapping and raising the mapping's failed flag.
 * The faulting instruction then runs again on the zero pages and completes;
 * the code that owns the mapping checks the flag after each operation that
 * could have faulted and fails closed.
 *
 * The guard is address-scoped, not time-scoped: a SIGBUS at any other
 * address goes to the handler that was installed before ours (or gets the
 * default action), so the host application's own faults are untouched. The
 * handler is installed at the first guarded mapping and again at a later one
 * if something replaced it meanwhile (the previous handler is then the one
 * chained to); it is never removed, never longjmps and never blocks. A
 * handler that chains back to ours would make a cycle: a per-thread depth
 * count cuts it, giving the fault the default action.
 *
 * Async-signal-safety: the handler reads the range table with atomic loads,
 * stores one atomic flag, and calls mmap(2) and, for a fault it does not own,
 * sigaction(2) and raise(3); errno is saved and restored.
 */
#define _GNU_SOURCE
#include "platform.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#define GUARDED_RANGES 256
#define RANGE_RESERVED ((uintptr_t)1) /* being filled in by gpucap_mapping_guard */

struct guarded_range {
	_Atomic uintptr_t base; /* 0: free; RANGE_RESERVED: being filled */
	_Atomic size_t len;
	_Atomic uint32_t *_Atomic failed;
};

static struct guarded_range ranges[GUARDED_RANGES];
/* The handler chained to: previous[previous_index]. An installer fills the
 * other entry, then publishes its index (release; the handler's load is
 * acquire), so a fault on another thread never reads a half-written one. */
static struct sigaction previous[2];
static atomic_int previous_index;
static atomic_int installing; /* installers exclude each other (attach time only) */
static _Thread_local int passing_on;

static bool replace_with_zero_pages(uintptr_t addr)
{
	for (unsigned i = 0; i < GUARDED_RANGES; i++) {
		/* acquire: pairs with the release store of base in
		 * gpucap_mapping_guard, so len and failed are the range's own. */
		uintptr_t base = atomic_load_explicit(&ranges[i].base, memory_order_acquire);
		if (base <= RANGE_RESERVED)
			continue;
		size_t len = atomic_load_explicit(&ranges[i].len, memory_order_relaxed);
		if (addr < base || addr - base >= len)
			continue;
		_Atomic uint32_t *failed = atomic_load_explicit(&ranges[i].failed, memory_order_relaxed);
		/* The flag is raised before the pages are replaced: the faulting
		 * thread, on return, runs on zero pages and then sees the flag
		 * (program order on one thread); other threads see it at their
		 * next check. */
		if (failed)
			atomic_store_explicit(failed, 1, memory_order_seq_cst);
		void *zero = mmap((void *)base, len, PROT_READ | PROT_WRITE,
		                  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		return zero != MAP_FAILED;
	}
	return false;
}

static void on_sigbus(int sig, siginfo_t *info, void *context);

static void pass_on(int sig, siginfo_t *info, void *context)
{
	const struct sigaction *prev = &previous[atomic_load_explicit(&previous_index, memory_order_acquire)];
	bool chained = passing_on == 0 && (prev->sa_flags & SA_SIGINFO)
	                   ? prev->sa_sigaction != NULL && prev->sa_sigaction != on_sigbus
	                   : passing_on == 0 && prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN;
	if (chained) {
		passing_on++;
		if (prev->sa_flags & SA_SIGINFO)
			prev->sa_sigaction(sig, info, context);
		else
			prev->sa_handler(sig);
		passing_on--;
		return;
	}
	/* The default action: restore it. A fault re-runs its instruction on
	 * return and then terminates as it would have without us; a SIGBUS
	 * sent by kill(2) is raised again, to be delivered on return. */
	struct sigaction fallback;
	memset(&fallback, 0, sizeof(fallback));
	fallback.sa_handler = SIG_DFL;
	sigemptyset(&fallback.sa_mask);
	sigaction(sig, &fallback, NULL);
	if (info && info->si_code <= 0)
		raise(sig);
}

static void on_sigbus(int sig, siginfo_t *info, void *context)
{
	int saved_errno = errno;
	bool ours = info && info->si_code > 0 && replace_with_zero_pages((uintptr_t)info->si_addr);
	if (!ours)
		pass_on(sig, info, context);
	errno = saved_errno;
}

static void install_handler(void)
{
	int idle = 0;
	if (!atomic_compare_exchange_strong(&installing, &idle, 1))
		return; /* another thread installs it now */
	struct sigaction current;
	if (sigaction(SIGBUS, NULL, &current) == 0 &&
	    !((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == on_sigbus)) {
		int next = 1 - atomic_load_explicit(&previous_index, memory_order_relaxed);
		previous[next] = current;
		atomic_store_explicit(&previous_index, next, memory_order_release);
		struct sigaction action;
		memset(&action, 0, sizeof(action));
		action.sa_sigaction = on_sigbus;
		sigemptyset(&action.sa_mask);
		action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
		sigaction(SIGBUS, &action, NULL);
	}
	atomic_store(&installing, 0);
}

int gpucap_mapping_guard(void *base, size_t len, _Atomic uint32_t *failed)
{
	if (!base || len == 0)
		return -EINVAL;
	install_handler();
	for (unsigned i = 0; i < GUARDED_RANGES; i++) {
		uintptr_t free_entry = 0;
		if (!atomic_compare_exchange_strong_explicit(&ranges[i].base, &free_entry, RANGE_RESERVED,
		                                             memory_order_acquire, memory_order_relaxed))
			continue;
		atomic_store_explicit(&ranges[i].len, len, memory_order_relaxed);
		atomic_store_explicit(&ranges[i].failed, failed, memory_order_relaxed);
		/* release: pairs with the handler's acquire load of base. */
		atomic_store_explicit(&ranges[i].base, (uintptr_t)base, memory_order_release);
		return 0;
	}
	return -ENOSPC;
}

void gpucap_mapping_unguard(void *base)
{
	if (!base)
		return;
	for (unsigned i = 0; i < GUARDED_RANGES; i++) {
		uintptr_t expected = (uintptr_t)base;
		/* release: the entry is free again only after its user is done. */
		if (atomic_compare_exchange_strong_explicit(&ranges[i].base, &expected, 0,
		                                            memory_order_release, memory_order_relaxed))
			return;
	}
}
