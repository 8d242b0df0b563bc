/* orch: the one context struct and the model (tracks, tasks,
 * workers, pipeline, usage). Every field here is guarded by orch.lock unless a
 * comment says otherwise; sub-stores (events, context, telemetry) have locks of
 * their own and never take this one, so the order is always orch -> sub-store. */
#ifndef ORCHFS_ORCH_H
#define ORCHFS_ORCH_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "err.h"
#include "events.h"
#include "json.h"
#include "log.h"
#include "runner.h"

#define ID_MAX 64            /* [a-z0-9][a-z0-9_-]{0,63} */
#define MODEL_MAX 128

enum task_status {
	TASK_BLOCKED, TASK_READY, TASK_RUNNING, TASK_DONE, TASK_FAILED,
	TASK_KILLED, TASK_SKIPPED, TASK_HELD,
};
enum worker_status { WORKER_RUNNING, WORKER_EXITED, WORKER_FAILED, WORKER_KILLED, WORKER_LOST };
enum track_status { TRACK_ACTIVE, TRACK_DONE, TRACK_FAILED, TRACK_OVER_BUDGET };
enum pipeline_status { PIPE_RUNNING, PIPE_PAUSED, PIPE_FROZEN };

/* Token counts of one model; cost is derived from these and the price table. */
struct usage {
	char model[MODEL_MAX + 1];
	int64_t input, output, cache_read, cache_write;
	int64_t reports;
};

struct usage_set {
	struct usage *v;
	size_t n;
};

struct track {
	char id[ID_MAX + 1];
	char *title;
	int64_t budget_micro;      /* -1: no budget */
	enum track_status status;  /* recomputed by sched_recompute */
	struct usage_set usage;    /* every report of its workers */
	int64_t created_ms;
	struct track *next;        /* creation order */
	/* Kept on every transition, so a status or a count costs O(1). */
	size_t counts[TASK_HELD + 1];
	size_t ntasks;
	struct task *first, *last; /* its tasks, creation order (task.tprev/tnext) */
	size_t pos;                /* its slot in orch.track_at */
	size_t dirty_pos;          /* 1 + index in orch.dirty_tracks; 0 when clean */
};

struct task {
	char id[ID_MAX + 1];
	struct track *track;
	char *title, *command, *cwd, *model;   /* title NULL: the id (task_title) */
	char **env;                /* "KEY=VALUE" */
	size_t nenv;
	int retries;               /* retries left */
	int retries_initial;
	int timeout_s;
	int priority;
	enum runner_kind runner;   /* RUNNER_DEFAULT: the daemon's --runner */
	char **slurm;              /* sbatch's options, as checked */
	size_t nslurm;
	uint64_t order;            /* creation order, the scheduler's tie-break */
	enum task_status status;
	struct task **deps;
	size_t ndeps;
	int *workers;              /* every attempt, oldest first */
	size_t nworkers;
	int64_t created_ms;
	unsigned visit;            /* DFS mark, compared with orch.visit_gen */
	signed char viable;        /* sched_recompute's memo: can it still complete? */
	struct task *next, *prev;  /* every task, creation order */
	struct task *tnext, *tprev;/* its track's tasks */
	struct task **rdeps;       /* tasks that list this one as a dep */
	size_t nrdeps;
	size_t heap_pos;           /* 1 + index in orch.ready while ready; 0 otherwise */
	size_t pos;                /* its slot in orch.task_at: creation order, never reused */
	size_t dirty_pos;          /* 1 + index in orch.dirty_tasks; 0 when clean */
};

struct worker {
	int id;
	enum worker_status status;
	char task_id[ID_MAX + 1];  /* "" when spawned by hand */
	char track_id[ID_MAX + 1];
	char *command, *cwd, *model;
	char **env;
	size_t nenv;
	/* as its runner knows it, while it runs (NULL otherwise); its pid, for
	 * the record (0: none) */
	struct runner_job *job;
	pid_t pid;
	enum runner_kind runner;   /* never RUNNER_DEFAULT */
	char *runner_ref;          /* what its runner adopts it by (a Slurm job id); NULL: none */
	char **runner_options;     /* its task's, for its start */
	size_t nrunner_options;
	/* an end the runner told while its start was being answered */
	bool end_early;
	struct runner_end early;
	int64_t cpu_us;            /* CPU time of all its processes, once ended; -1 unknown */
	int64_t memory_peak;       /* their peak memory in bytes, once ended; -1 unknown */
	int64_t started_ms, ended_ms;
	int64_t started_ns;        /* monotonic, for the timeout */
	int timeout_s;
	int exit_code;             /* -1 unless it exited */
	int term_signal;           /* 0 unless a signal ended it */
	bool timed_out;
	bool kill_requested;       /* a kill command: the end status is `killed` */
	int64_t kill_deadline_ns;  /* SIGKILL after this (0 = none pending) */
	size_t run_pos;            /* 1 + index in orch.run while running; 0 otherwise */
	/* Its process is being started, without orch.lock: no pid yet. What is
	 * read of it meanwhile (command, cwd, env, log path) does not change. */
	bool starting;
	int pending_signal;        /* a kill that came while it was starting */
	char *log_path;
	struct usage_set usage;
};

/* A track taken out of the live tree by `archive` (mma/archive.json): what
 * is left of it in memory is this summary; the store keeps the whole of it
 * (the track and its tasks, in the track's row). Its id stays taken. */
struct archived_track {
	char id[ID_MAX + 1];
	char *title;
	int64_t created_ms, archived_ms;
	int64_t budget_micro;      /* -1: none */
	int64_t cost_micro;
	enum track_status status;  /* when it was archived */
	size_t counts[TASK_HELD + 1];
	size_t ntasks;
	char *doc;                 /* its store row, until the next commit takes it */
};

struct price {
	char model[MODEL_MAX + 1];
	/* pico-dollars per token == micro-dollars per million tokens: integers keep
	 * the arithmetic exact for any price quoted to 1e-6 USD per Mtok */
	int64_t input, output, cache_read, cache_write;
};

struct orch_config {
	char *mount;               /* absolute mountpoint */
	char *state_dir;
	char *workdir;             /* default cwd of workers: where the daemon was started */
	char *pricing_file;
	char *api_url;             /* ORCHFS_API for workers; NULL when HTTP is off */
	char *token_file;
	char *api_token;           /* the API's token, whence each worker's own (NULL: none asked) */
	int max_workers;
	bool max_workers_given;    /* on the command line: wins over the stored value */
	bool durable;              /* --durable: fsync every commit */
	bool no_store;             /* keep nothing on disk (unit tests) */
	int kill_grace_s;
	enum runner_isolation isolation;   /* --isolation: auto (default), cgroup, process-group */
	bool live_restore;         /* --live-restore: a clean stop leaves workers running */
	enum runner_kind runner;   /* --runner: where tasks without their own go; default local */
	int slurm_poll_ms;         /* --slurm-poll: how often Slurm is asked; default 1000 */
	char *slurm_log_dir;       /* --slurm-log-dir: logs of Slurm workers; default STATE_DIR/logs */
	const char *supervisor;    /* the program run as the supervisor; default /proc/self/exe */
	int telemetry_hz;
	size_t max_write;          /* EFBIG above; default 1 MiB */
	size_t event_history;      /* events kept in memory; default 65536 */
	struct orch_log log;       /* the daemon's log (log.h); zeroed: none */
};

struct ctx_store;
struct telemetry;
struct store;
struct hashmap;
struct render_cache;
struct render_sections;

struct orch {
	pthread_mutex_t lock;
	struct orch_config cfg;
	int64_t started_ms;

	enum pipeline_status pipeline;
	int max_workers;
	struct track *tracks, **tracks_tail;
	struct task *tasks, *tasks_last;
	struct hashmap *task_index, *track_index;
	size_t ntasks, ntracks;
	struct archived_track **archive;   /* archive order */
	size_t narchive, archive_cap;
	struct hashmap *archive_index;      /* id -> struct archived_track */
	/* Every task and track ever made has a slot (NULL once removed): the
	 * render caches are per run of slots. */
	struct task **task_at;
	size_t ntask_slots, task_at_cap;
	struct track **track_at;
	size_t ntrack_slots, track_at_cap;
	size_t counts[TASK_HELD + 1];   /* tasks by status, all tracks */
	uint64_t next_order;
	unsigned visit_gen;
	struct worker **workers;   /* workers[id - 1]; ids are never reused */
	size_t nworkers, workers_cap;
	int running;               /* workers in WORKER_RUNNING */
	struct worker **run;       /* exactly those, in no order */
	size_t run_cap;
	/* Ready tasks as a heap (priority, then creation order): the next one to
	 * start is at ready[0]. */
	struct task **ready;
	size_t nready, ready_cap;
	/* What sched_recompute must look at: tasks whose readiness may have
	 * changed, tracks whose status may have. */
	struct task **dirty_tasks;
	size_t ndirty_tasks, dirty_tasks_cap;
	struct track **dirty_tracks;
	size_t ndirty_tracks, dirty_tracks_cap;
	/* A task became (or stopped being) failed or killed, or an edge moved:
	 * tracks downstream of it may have lost (or regained) their way to done. */
	bool downstream_dirty;

	struct price *prices;
	size_t nprices;
	struct usage_set usage;    /* every report of every worker */

	struct buf last_error;     /* the error object of the last failed write (kept by the store) */
	uint64_t errors;           /* atomic: failed writes so far (last_error moved) */
	struct buf log_later;      /* log lines made under the lock, not written yet */

	int wake_fd;               /* eventfd: wakes the scheduler */
	int starting;              /* workers whose process is being started */
	pthread_cond_t spawned;    /* broadcast when one of those has started */
	pthread_t sched_thread;
	bool sched_started, stopping;

	struct events events;
	struct ctx_store *ctx;
	struct telemetry *tm;
	struct store *store;       /* NULL when nothing is kept on disk */
	struct runner *runner;     /* how workers run: the local runner */
	struct runner *slurm;      /* and the Slurm one */
	struct render_cache *rcache; /* nodes.c: last renders, keyed by node and version */
	struct render_sections *sections; /* render.c: the fragments of the big documents */
};

/* orch.c: life cycle */
int orch_init(struct orch *o, const struct orch_config *cfg, struct orch_err *err);
int orch_start(struct orch *o);          /* starts the scheduler thread */
/* No new workers; TERM to running ones, KILL after the grace (unless
 * --live-restore: left to the next daemon); joins threads. */
void orch_shutdown(struct orch *o);
void orch_destroy(struct orch *o);
void orch_wake(struct orch *o);
/* the runner of a kind (RUNNER_DEFAULT: the daemon's default) */
struct runner *orch_runner(const struct orch *o, enum runner_kind k);
int orch_mkdir_p(const char *path);      /* mkdir -p, mode 0700; -errno */          /* any thread; nudges the scheduler */
/* Lock NOT held: last_error := this rendered error object, queued for the
 * store (the next daemon on the state directory reads it back). */
void orch_record_error(struct orch *o, const char *object, size_t len);
/* Lock held: the same, stored with the next commit (a write's own). */
void orch_set_error(struct orch *o, const char *object, size_t len);
/* Lock held: queues every change so far for the store thread; returns the
 * ticket (0: nothing to commit). */
uint64_t orch_commit(struct orch *o);
/* The same for a caller that orch_waits for it next, and writes it then in its
 * own thread unless another writer took it along. */
uint64_t orch_commit_waited(struct orch *o);
/* Lock NOT held: until the commit of ticket is durable and its events are
 * visible to readers. -EIO when the store failed (the change stays in memory). */
int orch_wait(struct orch *o, uint64_t ticket);
/* The same, until it is in the journal: it survives kill -9, and with
 * --durable orch_wait then waits for the disk (and the events). */
int orch_wait_journaled(struct orch *o, uint64_t ticket);
/* A worker's trace: its events, from the store (memory without one). */
void orch_trace(struct orch *o, int worker, struct buf *out);

/* log.c: the daemon's log (log.h). orch_log: lock NOT held, it writes. */
void orch_log(struct orch *o, enum orch_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Lock held: the line is made now, with this time, and written by whoever
 * takes it (orch_log_take) and puts it once the lock is released. */
void orch_log_later(struct orch *o, enum orch_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
struct buf orch_log_take(struct orch *o);              /* lock held */
void orch_log_put(struct orch *o, struct buf *lines);  /* lock NOT held; frees lines */

/* model.c: lookups and names (lock held) */
bool id_valid(const char *id);
struct task *task_find(struct orch *o, const char *id);
const char *task_title(const struct task *t);
struct track *track_find(struct orch *o, const char *id);
struct worker *worker_find(struct orch *o, int id);
const char *task_status_name(enum task_status s);
const char *worker_status_name(enum worker_status s);
const char *track_status_name(enum track_status s);
const char *pipeline_status_name(enum pipeline_status s);
struct track *track_new(struct orch *o, const char *id, const char *title, int64_t budget_micro);
/* Undoes track_new of the newest track (a failed create). */
void track_drop(struct orch *o, struct track *k);
/* Takes k (its tasks already unlinked) out of the list, the index and its
 * slot; returns the track before it, for track_relink, which undoes it. */
struct track *track_unlink(struct orch *o, struct track *k);
void track_relink(struct orch *o, struct track *k, struct track *prev);
void track_free(struct track *k);
struct archived_track *archive_find(struct orch *o, const char *id);
/* Appends a (the model's from now on) to the archive. */
void archive_add(struct orch *o, struct archived_track *a);
void archived_free(struct archived_track *a);
void task_free(struct task *t);

/* model.c: the incremental model (lock held). Every change of a task's status,
 * edges or membership goes through these, which keep the counts, the ready
 * heap, the reverse edges and what sched_recompute must look at. */
void task_set_status(struct orch *o, struct task *t, enum task_status s);
/* Appends a new task (status set) to the lists, the index and the counts. */
void task_link(struct orch *o, struct task *t);
/* Takes t out of everything task_link put it in; its own deps forget it. */
void task_unlink(struct orch *o, struct task *t);
/* Undoes the last task_unlink of t exactly (undo logs replay in reverse). */
void task_relink(struct orch *o, struct task *t);
void task_dep_add(struct orch *o, struct task *t, struct task *d);
void task_dep_insert(struct orch *o, struct task *t, size_t i, struct task *d);
void task_dep_remove(struct orch *o, struct task *t, size_t i);
bool task_dep_satisfied(const struct task *dep);
/* sched_recompute must look at t / k. */
void task_mark(struct orch *o, struct task *t);
void track_mark(struct orch *o, struct track *k);
/* The ready task to start next (NULL: none), and taking it off the heap. */
struct task *ready_peek(struct orch *o);
void ready_remove(struct orch *o, struct task *t);
void ready_insert(struct orch *o, struct task *t);
void run_add(struct orch *o, struct worker *w);
void run_remove(struct orch *o, struct worker *w);
void worker_free(struct worker *w);
/* The record of worker id when nothing more is known of it (a hole): lost. */
struct worker *worker_placeholder(int id);
char **strv_dup(char *const *v, size_t n);
void strv_free(char **v, size_t n);
/* Publishes an event; w, when not NULL, is the worker it is about (its
 * trace, its task and track). */
uint64_t orch_event(struct orch *o, struct worker *w, enum event_kind kind, cJSON *data);

/* hashmap: string -> pointer, for task and track ids */
struct hashmap *hashmap_new(void);
void hashmap_free(struct hashmap *m);
void *hashmap_get(struct hashmap *m, const char *key);
void hashmap_put(struct hashmap *m, const char *key, void *value);
void hashmap_del(struct hashmap *m, const char *key);
size_t hashmap_size(const struct hashmap *m);
/* Calls fn on every value, then empties the map. */
void hashmap_clear(struct hashmap *m, void (*fn)(void *value));
/* The same with each key too. */
void hashmap_clear_each(struct hashmap *m, void (*fn)(void *arg, const char *key, void *value),
			void *arg);

#endif
