/* runner: where and how workers run, behind one interface (struct
 * runner_ops) so that the model holds an opaque job, never a pid.
 *
 * The local runner starts each worker through the daemon's supervisor
 * (supervisor.h), which outlives the daemon: a worker survives a crash or an
 * upgrade of orchfs, and the next daemon re-adopts it, exit status included.
 * Each worker leads its own process group and, where a writable cgroup v2
 * is there, has a cgroup of its own: then a kill reaches every process the
 * worker made (a `setsid` one too), a freeze is cgroup.freeze, and its CPU
 * time is counted. Workers write stdout and stderr to their log file and
 * read stdin from a pipe the supervisor holds open.
 *   cat $(jq -r .cgroup mma/workers/7/info.json)/cpu.stat */
#ifndef ORCHFS_RUNNER_H
#define ORCHFS_RUNNER_H

#include <pthread.h>
#include <spawn.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "err.h"

struct runner;       /* a kind of runner, one per daemon */
struct runner_job;   /* a worker, as the runner that started it knows it */
struct buf;

/* What a start needs. */
struct runner_spec {
	int id;                    /* the worker's */
	const char *command;       /* run as /bin/sh -c command */
	const char *cwd;
	char *const *envp;
	const char *log_path;      /* made anew: ids are never reused */
	const char *name;          /* TRACK-TASK, to name it by (NULL: none) */
	char *const *options;      /* the runner's own, as checked (Slurm: sbatch's) */
	size_t noptions;
};

/* What a job used, known once it has ended; -1: unknown. */
struct runner_usage {
	int64_t cpu_us;            /* CPU time of all its processes */
	int64_t memory_peak;       /* bytes, at most, at once */
};

/* A job that ended, as the runner tells the scheduler. */
struct runner_end {
	int id;
	int wstatus;               /* as wait(2) gives it */
	bool lost;                 /* its end cannot be known */
	bool changed;              /* not an end: what describe says has changed */
};

/* What a restarted daemon finds of a worker its store says runs. */
enum runner_found {
	RUNNER_GONE,       /* nothing: it vanished (the machine rebooted) */
	RUNNER_RUNNING,    /* re-adopted: *job */
	RUNNER_ENDED,      /* it ended while no daemon was there: *wstatus */
};

struct runner_ops {
	const char *name;
	/* n starts at once (a scheduler's burst): out[i] the job, or rc[i] the
	 * -errno and err[i] why; returns how many failed. Any thread, no lock
	 * of the model's held (a start may be slow). */
	int (*start)(struct runner *r, const struct runner_spec *specs, size_t n,
		     struct runner_job **out, int *rc, struct orch_err *err);
	/* sig to every process of the job; 0, or -errno (ESRCH: none left) */
	int (*signal)(struct runner *r, struct runner_job *job, int sig);
	int (*freeze)(struct runner *r, struct runner_job *job, bool frozen);
	/* without blocking: bytes taken, or -errno (EAGAIN: full; EOPNOTSUPP) */
	ssize_t (*write_stdin)(struct runner *r, struct runner_job *job, const void *data,
			       size_t len);
	/* after its end: what it used (used may be NULL), then the job is freed */
	void (*release)(struct runner *r, struct runner_job *job, struct runner_usage *used);
	/* frees the job of a worker left running (to the next daemon) */
	void (*forget)(struct runner *r, struct runner_job *job);
	/* at a restart, for each worker the store says runs, with the ref its
	 * record kept */
	enum runner_found (*adopt)(struct runner *r, int id, const char *ref,
				   struct runner_job **out, int *wstatus);
	/* after the adopts: what runs and nobody claimed is killed */
	void (*adopt_end)(struct runner *r);
	/* is it still waiting in its cluster's queue? */
	bool (*queued)(struct runner *r, const struct runner_job *job);
	/* what the worker's record keeps to adopt it by (NULL: its id is enough) */
	const char *(*ref)(const struct runner_job *job);
	/* `,"key":value` pairs for the job's info.json (job NULL: ended; ref:
	 * what its record kept) */
	void (*describe)(struct runner *r, const struct runner_job *job, const char *ref,
			 struct buf *json);
	/* the end: running jobs are killed, unless keep (left to the next daemon) */
	void (*destroy)(struct runner *r, bool keep);
};

/* Which runner a task's workers go to ("runner" in a plan or add_task). */
enum runner_kind { RUNNER_DEFAULT, RUNNER_LOCAL, RUNNER_SLURM };

/* "local", "slurm"; NULL for RUNNER_DEFAULT */
const char *runner_kind_name(enum runner_kind k);

/* The calling thread above the workers (the scheduler's, the supervisor and
 * the thread that reads its answers):
 * real-time priority 1 where allowed (root), else nice -5 where allowed,
 * else as it is; their work is bounded, so this cannot starve the machine.
 * What they start does not inherit it (reset on fork). */
void runner_raise_priority(void);

/* The part every runner shares: what it tells the scheduler, queued. */
struct runner {
	const struct runner_ops *ops;
	int event_fd;   /* readable when runner_collect has something (the scheduler polls it) */
	pthread_mutex_t ends_lock;
	struct runner_end *ends;
	size_t nends, ends_cap;
};

/* A runner's own create and destroy set up and free the shared part. */
int runner_base_init(struct runner *r, const struct runner_ops *ops);
void runner_base_fini(struct runner *r);
/* The runner tells the scheduler of an end (or a change); any thread. */
void runner_tell(struct runner *r, struct runner_end end);
/* The scheduler: what was told since its last call (malloc'd), its count. */
size_t runner_collect(struct runner *r, struct runner_end **out);

/* posix_spawn(p) (search: in PATH) with every signal unblocked, whatever the
 * calling thread blocks. */
int runner_spawn_cmd(pid_t *pid, const char *path, bool search,
		     const posix_spawn_file_actions_t *fa, char *const argv[], char *const envp[]);

/* The job's pid, for the record (0: not a local process). */
pid_t runner_job_pid(const struct runner_job *job);

static inline int runner_start(struct runner *r, const struct runner_spec *spec,
			       struct runner_job **out, struct orch_err *err)
{
	int rc;
	r->ops->start(r, spec, 1, out, &rc, err);
	return rc;
}

static inline int runner_signal(struct runner *r, struct runner_job *job, int sig)
{
	return r->ops->signal(r, job, sig);
}

static inline int runner_freeze(struct runner *r, struct runner_job *job, bool frozen)
{
	return r->ops->freeze(r, job, frozen);
}

static inline void runner_release(struct runner *r, struct runner_job *job,
				  struct runner_usage *used)
{
	r->ops->release(r, job, used);
}

static inline void runner_destroy(struct runner *r, bool keep)
{
	if (r)
		r->ops->destroy(r, keep);
}

/* --- the local runner --- */

enum runner_isolation { ISOLATION_AUTO, ISOLATION_CGROUP, ISOLATION_PGROUP };

/* How many log files and cgroups are made ahead, for the next ids, by the
 * prep thread (orchfs-prep): making them is the costliest step of starting
 * `true`. */
#define RUNNER_AHEAD 32

/* want ISOLATION_AUTO: a cgroup per worker where one can be made under the
 * daemon's own (STATE_KEY names orchfs's, so that a restart on the same
 * state finds the workers' cgroups), else process groups. ISOLATION_CGROUP:
 * an error without. Log files are LOG_DIR/<id>.log; FIRST_ID is the next
 * worker's. RUN_DIR holds the supervisor's socket and its record of exits;
 * EXE is the program run as the supervisor (the daemon's own binary, which
 * runs supervisor_main when its argv[1] is SUPERVISOR_ARG). A supervisor
 * already there (a daemon before this one) is connected to, its workers
 * waiting for adopt. */
int runner_local_create(enum runner_isolation want, const char *state_key, const char *run_dir,
			const char *log_dir, const char *exe, int first_id, struct runner **out,
			struct orch_err *err);
/* --- the Slurm runner (slurm.c) --- */

/* Jobs' states are polled every POLL_MS. */
int runner_slurm_create(int poll_ms, struct runner **out, struct orch_err *err);

/* Worker id runs elsewhere (another runner): what was made ahead for it
 * goes, but for its log, which that runner writes. */
void runner_local_skip(struct runner *r, int id);
/* The highest worker id a supervisor of this state directory ever started
 * (0: none): the store may have lost the record of some to a crash. */
int runner_local_last_id(const struct runner *r);
/* "cgroup" or "process-group" */
const char *runner_isolation(const struct runner *r);
/* The path of worker id's cgroup into out; false without one. */
bool runner_cgroup_path(const struct runner *r, int id, char *out, size_t size);

/* Where a file system of type fstype is mounted (its first mount, point
 * NULL), or whether point is one, from /proc/self/mountinfo: the mount point
 * into out. The runner's cgroup2; who serves an orchfs mount (daemon_info). */
bool runner_find_mount(const char *fstype, const char *point, char *out, size_t size);

#endif
