/* scheduler: the scheduler loop and the life of workers. One thread polls its
 * wake eventfd and each runner's (raised when workers end: the supervisor
 * reaps local ones); each tick it collects the ends, enforces timeouts and
 * kill graces, and starts ready tasks (priority, then creation order) while
 * fewer than max_workers run. Every function here expects orch.lock held. */
#ifndef ORCHFS_SCHEDULER_H
#define ORCHFS_SCHEDULER_H

#include "cmd.h"
#include "orch.h"

/* Readiness of blocked/ready tasks and every track's status; publishes changes. */
void sched_recompute(struct orch *o);
/* What sched_recompute would make k's status now, without setting it or
 * publishing anything: for a batch that is not committed yet. */
enum track_status sched_track_status(struct orch *o, struct track *k);
/* Starts a worker for a spawn command (task NULL) or for task t, running
 * command (NULL: the task's or the request's). orch.lock is released while
 * the process starts (the worker is `running` with no pid meanwhile), and
 * held again on return. A process that cannot start leaves a failed worker
 * (and, for a task, a failed task) and is an error. */
int sched_spawn(struct orch *o, const struct cmd_spawn *req, struct task *t, const char *command,
		struct worker **out, struct orch_err *err);
/* Sends sig to the worker's process group; KILL follows after grace_s (-1 =
 * --kill-grace) unless sig is KILL or a non-terminating signal. err may be NULL. */
int sched_kill(struct orch *o, struct worker *w, int sig, int grace_s, struct orch_err *err);
/* Until the workers whose start was decided have started (orch.lock is
 * released meanwhile). A change that would have changed that decision (a
 * pause, an edge, a new plan) waits for it, so the events say what happened
 * in the order it did: no worker.spawned after a pause, or after an edge that
 * would have held it back. */
void sched_wait_started(struct orch *o);
int sched_pause(struct orch *o, bool freeze);
int sched_resume(struct orch *o);
int sched_set_max_workers(struct orch *o, int n);
/* Adds a usage report to the worker, its task and track; may flip a track to over_budget. */
/* Refused (EOVERFLOW, nothing changed) past the bounds of pricing.h. */
int sched_report_usage(struct orch *o, struct worker *w, const struct usage *u,
		       struct orch_err *err);
/* After a restart: workers that were running are lost; their tasks are
 * retried if retries remain, else failed. */
void sched_recover(struct orch *o);
/* The thread body; returns when orch.stopping is set. */
void *sched_main(void *arg);

#endif
