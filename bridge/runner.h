/* runner: real worker processes, each leading its own process group and, where
 * a writable cgroup v2 is there, in a cgroup of its own: then a kill reaches
 * every process the worker made (a `setsid` one too), a freeze is
 * cgroup.freeze, and its CPU time is counted. Workers write stdout and stderr
 * to their log file and read stdin from a pipe the daemon holds. The process
 * is made with clone(CLONE_VM | CLONE_VFORK), as posix_spawn does, so a
 * multi-threaded daemon's memory is never copied; the child joins its cgroup
 * before it execs, so nothing it starts is outside.
 *   cat $(jq -r .cgroup mma/workers/7/info.json)/cpu.stat */
#ifndef ORCHFS_RUNNER_H
#define ORCHFS_RUNNER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

enum runner_isolation { ISOLATION_AUTO, ISOLATION_CGROUP, ISOLATION_PGROUP };

/* What a start needs made first, made ahead for the next ids (ids are
 * handed out in order and never reused) by the prep thread (orchfs-prep),
 * on another CPU: making a file or a cgroup is the costliest step of
 * starting `true`. */
struct runner_prepared {
	int id;
	int logfd;      /* its log file, new, open for append */
	int cgroup;     /* its cgroup's directory, and cgroup.procs in it; -1: none */
	int procs;
};

#define RUNNER_AHEAD 32

/* The runners' context (one per daemon). */
struct runner {
	int cgroup_dir;            /* orchfs's cgroup of workers; -1: process groups only */
	char *cgroup_path;
	char *log_dir;
	pthread_mutex_t lock;      /* the rest */
	pthread_cond_t wanted;     /* the thread: room ahead, a cgroup to remove, or stop */
	pthread_cond_t made;       /* a start waits for what is being made for it */
	pthread_t thread;
	bool started, stop;
	int next, making, taken;   /* the next id to make, the one being made (0: none), the last taken */
	struct runner_prepared ready[RUNNER_AHEAD];
	int nready;
	/* ended workers' cgroups, removed behind by the thread (once what they
	 * left running has gone) */
	int *retired;
	size_t nretired, retired_cap;
};

struct runner_proc {
	int id;         /* the worker's */
	pid_t pid;
	int pidfd;      /* readable when the process has exited */
	int stdin_fd;   /* write end, O_NONBLOCK */
	int cgroup;     /* the worker's cgroup directory; -1: none */
};

/* want ISOLATION_AUTO: a cgroup per worker where one can be made under the
 * daemon's own (STATE_KEY names orchfs's, so that a restart on the same state
 * finds the cgroups of workers a crash left, and kills what is in them),
 * else process groups. ISOLATION_CGROUP: an error without. Log files are
 * LOG_DIR/<id>.log; FIRST_ID is the next worker's. Starts the prep thread. */
int runner_init(struct runner *r, enum runner_isolation want, const char *state_key,
		const char *log_dir, int first_id, struct orch_err *err);
/* Ends the thread; what was made ahead and not taken is removed, and so is
 * orchfs's cgroup, with anything still in it. */
void runner_fini(struct runner *r);
/* "cgroup" or "process-group" */
const char *runner_isolation(const struct runner *r);
/* Runs `/bin/sh -c command` in cwd with envp as worker id, its output to
 * log_path (made anew: ids are never reused, so anything there is left over
 * from a state directory whose store was removed). Any thread. */
int runner_start(struct runner *r, int id, const char *command, const char *cwd,
		 char *const envp[], const char *log_path, struct runner_proc *out,
		 struct orch_err *err);
/* Sends sig to every process of the worker (its cgroup's, else its process
 * group's; SIGKILL with a cgroup is cgroup.kill); 0, or -errno (ESRCH when
 * none is left). */
int runner_signal(const struct runner_proc *p, int sig);
/* Freezes or thaws every process of the worker (cgroup.freeze, else
 * SIGSTOP/SIGCONT to its process group). */
int runner_freeze(const struct runner_proc *p, bool frozen);
/* Non-blocking reap of the worker's first process. 1 = reaped (status in
 * *wstatus), 0 = still running. */
int runner_reap(const struct runner_proc *p, int *wstatus);
/* After the reap: what is left of the worker (processes it left behind) is
 * killed, its CPU time is returned in microseconds (-1 without a cgroup),
 * and its cgroup goes once empty. Closes p's descriptors. */
int64_t runner_end(struct runner *r, struct runner_proc *p);
/* Worker id's cgroup goes, with anything still in it (the prep thread
 * does it, once its processes have left). */
void runner_retire(struct runner *r, int id);
/* The path of worker id's cgroup into out; false without one. */
bool runner_cgroup_path(const struct runner *r, int id, char *out, size_t size);

#endif
