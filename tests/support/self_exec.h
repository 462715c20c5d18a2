/* SPDX-License-Identifier: Apache-2.0 */
/* Running a test program again, as a child, for a scenario that needs a
 * process of its own (its own environment, its own initialisation, a fork
 * or a kill): env holds "NAME=value" settings ("NAME=" alone unsets), args
 * the arguments after the program's own path; both NULL-terminated (env may
 * be NULL). */
#ifndef GPUCAP_TEST_SELF_EXEC_H
#define GPUCAP_TEST_SELF_EXEC_H

#include "check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* In a forked child: apply env, then run self with args; never returns. */
static inline void self_exec(const char *self, const char *const *env, const char *const *args)
{
	for (const char *const *e = env; e && *e; e++) {
		char name[256];
		const char *eq = strchr(*e, '=');
		snprintf(name, sizeof(name), "%.*s", (int)(eq - *e), *e);
		if (eq[1])
			setenv(name, eq + 1, 1);
		else
			unsetenv(name);
	}
	char *argv[16];
	int n = 0;
	argv[n++] = (char *)self;
	for (const char *const *a = args; *a && n < 15; a++)
		argv[n++] = (char *)*a;
	argv[n] = NULL;
	execv(self, argv);
	_exit(127);
}

/* The exit status of a child, or 128 + the signal that ended it. */
static inline int self_wait(pid_t pid)
{
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Start self as a child; returns its PID. */
static inline pid_t self_spawn(const char *self, const char *const *env, const char *const *args)
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0)
		self_exec(self, env, args);
	return pid;
}

/* Run self as a child and wait for it; its stderr goes into err (err_len
 * bytes, NUL-terminated) when err is given; before_exec (when given) runs in
 * the child first, e.g. to become another user. Returns the exit status. */
static inline int self_run_as(const char *self, char *err, size_t err_len, const char *const *env,
                              const char *const *args, void (*before_exec)(void))
{
	int pipefd[2];
	CHECK(pipe(pipefd) == 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(pipefd[0]);
		if (err)
			dup2(pipefd[1], STDERR_FILENO);
		if (before_exec)
			before_exec();
		self_exec(self, env, args);
	}
	close(pipefd[1]);
	size_t used = 0;
	char buf[512];
	ssize_t got;
	while ((got = read(pipefd[0], buf, sizeof(buf))) > 0) {
		if (err && used + (size_t)got < err_len) {
			memcpy(err + used, buf, (size_t)got);
			used += (size_t)got;
		}
	}
	if (err)
		err[used] = '\0';
	close(pipefd[0]);
	return self_wait(pid);
}

static inline int self_run(const char *self, char *err, size_t err_len, const char *const *env,
                           const char *const *args)
{
	return self_run_as(self, err, err_len, env, args, NULL);
}

#endif
