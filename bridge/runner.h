/* runner: real worker processes. posix_spawn keeps fork's copy of a
 * multi-threaded daemon out of the picture; each worker leads its own process
 * group (so a kill reaches its children too), writes stdout and stderr to its
 * log file, and reads stdin from a pipe the daemon holds. */
#ifndef ORCHFS_RUNNER_H
#define ORCHFS_RUNNER_H

#include <sys/types.h>

#include "err.h"

struct runner_proc {
	pid_t pid;
	int pidfd;      /* readable when the process has exited */
	int stdin_fd;   /* write end, O_NONBLOCK */
};

/* Runs `/bin/sh -c command` in cwd with envp, its output to logfd (the
 * worker's log file, open for append; closed here, whatever happens). */
int runner_start(const char *command, const char *cwd, char *const envp[], int logfd,
		 struct runner_proc *out, struct orch_err *err);
/* Sends sig to the process group; 0, or -errno (ESRCH when it is gone). */
int runner_signal(pid_t pgid, int sig);
/* Non-blocking reap of pid. 1 = reaped (status in *wstatus), 0 = still running. */
int runner_reap(pid_t pid, int *wstatus);

#endif
