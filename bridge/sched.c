/* sched: readiness, the scheduler thread, spawning, reaping and killing. */
#include "scheduler.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "auth.h"
#include "dag.h"
#include "pricing.h"
#include "runner.h"
#include "telemetry.h"

extern char **environ;


/* worker: the attempt that makes it running (0: none). Naming it puts the
 * worker's record in the same commit, before its process has even started. */
static void publish_task_status(struct orch *o, struct task *t, enum task_status from, int worker)
{
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "task", t->id);
	cJSON_AddStringToObject(d, "track", t->track->id);
	cJSON_AddStringToObject(d, "from", task_status_name(from));
	cJSON_AddStringToObject(d, "to", task_status_name(t->status));
	if (worker)
		cJSON_AddNumberToObject(d, "worker", worker);
	orch_event(o, NULL, EVK_TASK_STATUS, d);
}

static void task_set(struct orch *o, struct task *t, enum task_status s)
{
	enum task_status from = t->status;
	if (from == s)
		return;
	task_set_status(o, t, s);
	publish_task_status(o, t, from, 0);
}

/* Can t still reach done (or skipped)? Failed and killed tasks need a human. */
static bool task_viable(struct orch *o, struct task *t, unsigned gen)
{
	if (t->visit == gen)
		return t->viable > 0;
	t->visit = gen;
	t->viable = 1;   /* the DAG is acyclic, so this provisional answer is never read */
	switch (t->status) {
	case TASK_FAILED:
	case TASK_KILLED:
		t->viable = 0;
		break;
	case TASK_BLOCKED:
	case TASK_HELD:
		for (size_t i = 0; i < t->ndeps; i++)
			if (!task_viable(o, t->deps[i], gen)) {
				t->viable = 0;
				break;
			}
		break;
	default:
		break;
	}
	return t->viable > 0;
}

static enum track_status track_compute(struct orch *o, struct track *k, unsigned gen)
{
	int64_t cost = usage_set_cost(&k->usage, o->prices, o->nprices);
	if (k->budget_micro >= 0 && cost > k->budget_micro)
		return TRACK_OVER_BUDGET;
	const size_t *c = k->counts;
	if (c[TASK_DONE] + c[TASK_SKIPPED] == k->ntasks)
		return TRACK_DONE;
	if (!c[TASK_FAILED] || c[TASK_READY] || c[TASK_RUNNING])
		return TRACK_ACTIVE;
	/* Something failed and nothing moves: can any unfinished task still get there? */
	for (struct task *t = k->first; t; t = t->tnext)
		if ((t->status == TASK_BLOCKED || t->status == TASK_HELD) && task_viable(o, t, gen))
			return TRACK_ACTIVE;
	return TRACK_FAILED;
}

enum track_status sched_track_status(struct orch *o, struct track *k)
{
	return track_compute(o, k, ++o->visit_gen);
}

void sched_recompute(struct orch *o)
{
	/* Settling one task may mark others (never itself again): loop until quiet. */
	while (o->ndirty_tasks) {
		struct task *t = o->dirty_tasks[--o->ndirty_tasks];
		t->dirty_pos = 0;
		if (t->status != TASK_BLOCKED && t->status != TASK_READY)
			continue;
		bool ready = true;
		for (size_t i = 0; i < t->ndeps && ready; i++)
			ready = task_dep_satisfied(t->deps[i]);
		task_set(o, t, ready ? TASK_READY : TASK_BLOCKED);
	}
	if (o->downstream_dirty) {
		o->downstream_dirty = false;
		for (struct track *k = o->tracks; k; k = k->next)
			if (k->counts[TASK_FAILED] || k->status == TRACK_FAILED)
				track_mark(o, k);
	}
	unsigned gen = ++o->visit_gen;
	while (o->ndirty_tracks) {
		struct track *k = o->dirty_tracks[--o->ndirty_tracks];
		k->dirty_pos = 0;
		enum track_status s = track_compute(o, k, gen);
		if (s == k->status)
			continue;
		cJSON *d = cJSON_CreateObject();
		cJSON_AddStringToObject(d, "track", k->id);
		cJSON_AddStringToObject(d, "from", track_status_name(k->status));
		cJSON_AddStringToObject(d, "to", track_status_name(s));
		k->status = s;
		orch_event(o, NULL, EVK_TRACK_STATUS, d);
		if (s == TRACK_OVER_BUDGET) {
			/* once per crossing: why its ready tasks stop starting */
			cJSON *b = cJSON_CreateObject();
			cJSON_AddStringToObject(b, "track", k->id);
			json_add_usd(b, "spent_usd", usage_set_cost(&k->usage, o->prices, o->nprices));
			json_add_usd(b, "budget_usd", k->budget_micro);
			orch_event(o, NULL, EVK_TRACK_BUDGET_EXHAUSTED, b);
		}
	}
}

/* What a worker gets of the daemon's own environment (README, "Workers"):
 * enough to find programs, its user and the locale, nothing else (no
 * secrets the daemon was started with). */
static bool env_passed(const char *entry)
{
	static const char *const names[] = {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG",
					    "LANGUAGE", "TZ", "TMPDIR", "TERM"};
	size_t klen = strcspn(entry, "=");
	if (klen > 3 && !strncmp(entry, "LC_", 3))
		return true;
	for (size_t i = 0; i < sizeof names / sizeof *names; i++)
		if (strlen(names[i]) == klen && !memcmp(names[i], entry, klen))
			return true;
	return false;
}

static char *env_fmt(const char *key, const char *value)
{
	struct buf b = BUF_INIT;
	buf_printf(&b, "%s=%s", key, value ? value : "");
	return buf_steal(&b);
}

/* The worker's environment: the passed-through variables, then orchfs's,
 * then its own (own, unique by name), each name once, the later winning.
 * Linear: a name is looked up in a map of own's names. */
static char **worker_envp(struct orch *o, const struct worker *w, char *const *own, size_t nown)
{
	struct hashmap *mine = hashmap_new();
	char key[ENV_NAME_MAX + 1];
	for (size_t i = 0; i < nown; i++) {
		size_t klen = strcspn(own[i], "=");
		snprintf(key, sizeof key, "%.*s", (int)klen, own[i]);
		hashmap_put(mine, key, (void *)own[i]);
	}
	char id[16], token[AUTH_WORKER_TOKEN_MAX];
	snprintf(id, sizeof id, "%d", w->id);
	if (o->cfg.api_token)
		auth_worker_token(o->cfg.api_token, w->id, token);
	const char *const ours[][2] = {
		{"ORCHFS_MOUNT", o->cfg.mount}, {"ORCHFS_WORKER_ID", id},
		{"ORCHFS_TASK_ID", w->task_id}, {"ORCHFS_TRACK", w->track_id},
		{"ORCHFS_URL", o->cfg.api_url}, {"ORCHFS_API", o->cfg.api_url},
		{"ORCHFS_TOKEN", o->cfg.api_url && o->cfg.api_token ? token : NULL},
	};
	size_t cap = nown + sizeof ours / sizeof *ours + 1, n = 0;
	for (char **e = environ; e && *e; e++)
		cap++;
	char **envp = xcalloc(cap, sizeof *envp);
	for (char **e = environ; e && *e; e++) {
		size_t klen = strcspn(*e, "=");
		if (!env_passed(*e) || klen > ENV_NAME_MAX)
			continue;
		snprintf(key, sizeof key, "%.*s", (int)klen, *e);
		if (!hashmap_get(mine, key))
			envp[n++] = xstrdup(*e);
	}
	for (size_t i = 0; i < sizeof ours / sizeof *ours; i++)
		if (ours[i][1] && !hashmap_get(mine, ours[i][0]))
			envp[n++] = env_fmt(ours[i][0], ours[i][1]);
	for (size_t i = 0; i < nown; i++)
		envp[n++] = xstrdup(own[i]);
	envp[n] = NULL;
	hashmap_free(mine);
	return envp;
}

/* --- starting a worker: its record under the lock, the process without --- */

static struct runner *worker_runner(const struct orch *o, const struct worker *w)
{
	return orch_runner(o, w->runner);
}

static void worker_over(struct orch *o, struct worker *w, const struct runner_end *end);

/* Lock held: the log's lines of a worker's start and end, written once the
 * lock is released (a write may block; the scheduler must not). */
static void worker_log_start(struct orch *o, struct worker *w, const char *how)
{
	orch_log_later(o, ORCH_LOG_INFO, "worker %d %s (task %s, track %s, pid %d, runner %s%s%s)",
		       w->id, how, w->task_id[0] ? w->task_id : "-", w->track_id[0] ? w->track_id : "-",
		       (int)w->pid, worker_runner(o, w)->ops->name, w->runner_ref ? ", job " : "",
		       w->runner_ref ? w->runner_ref : "");
}

static void worker_log_end(struct orch *o, const struct worker *w)
{
	char how[64] = "";
	if (w->exit_code >= 0)
		snprintf(how, sizeof how, ", exit code %d", w->exit_code);
	else if (w->term_signal)
		snprintf(how, sizeof how, ", signal %s", signal_name(w->term_signal));
	int64_t ms = w->ended_ms > w->started_ms && w->started_ms ? w->ended_ms - w->started_ms : 0;
	orch_log_later(o, ORCH_LOG_INFO, "worker %d ended: %s%s%s, after %" PRId64 ".%03d s (task %s)",
		       w->id, worker_status_name(w->status), how, w->timed_out ? ", timed out" : "",
		       ms / 1000, (int)(ms % 1000), w->task_id[0] ? w->task_id : "-");
}

struct spawn_job {
	struct worker *w;
	struct task *t;            /* NULL for a hand spawn without a task */
	struct runner_job *job;
	int rc;
	struct orch_err err;
};

/* Lock held: the worker's record, running but still starting (no pid yet),
 * counted against max_workers; its task, if any, is running from now on. */
static struct worker *spawn_begin(struct orch *o, const struct cmd_spawn *req, struct task *t,
				  const char *command)
{
	struct worker *w = xcalloc(1, sizeof *w);
	w->id = (int)o->nworkers + 1;
	w->exit_code = -1;
	w->cpu_us = -1;
	w->memory_peak = -1;
	w->starting = true;
	const char *cwd = t ? t->cwd : req->cwd;
	const char *model = t ? t->model : req->model;
	w->command = xstrdup(command);
	w->cwd = xstrdup(cwd ? cwd : o->cfg.workdir);
	w->model = model ? xstrdup(model) : NULL;
	w->runner = o->cfg.runner == RUNNER_SLURM ? RUNNER_SLURM : RUNNER_LOCAL;
	if (t) {
		strcpy(w->task_id, t->id);
		strcpy(w->track_id, t->track->id);
		w->env = strv_dup(t->env, t->nenv);
		w->nenv = t->nenv;
		w->timeout_s = t->timeout_s;
		if (t->runner != RUNNER_DEFAULT)
			w->runner = t->runner;
		if (w->runner == RUNNER_SLURM) {
			w->runner_options = strv_dup(t->slurm, t->nslurm);
			w->nrunner_options = t->nslurm;
		}
	} else {
		strcpy(w->task_id, req->task);
		strcpy(w->track_id, req->track);
		w->env = strv_dup(req->env, req->nenv);
		w->nenv = req->nenv;
	}
	struct buf path = BUF_INIT;
	if (w->runner == RUNNER_SLURM && o->cfg.slurm_log_dir)
		buf_printf(&path, "%s/%d.log", o->cfg.slurm_log_dir, w->id);
	else
		buf_printf(&path, "%s/logs/%d.log", o->cfg.state_dir, w->id);
	w->log_path = buf_steal(&path);
	w->status = WORKER_RUNNING;
	w->started_ms = time_now_ms();
	ARRAY_GROW(o->workers, o->workers_cap, o->nworkers + 1);
	o->workers[o->nworkers++] = w;
	run_add(o, w);
	o->starting++;
	if (t) {
		t->workers = xrealloc(t->workers, (t->nworkers + 1) * sizeof *t->workers);
		t->workers[t->nworkers++] = w->id;
		enum task_status from = t->status;
		task_set_status(o, t, TASK_RUNNING);
		publish_task_status(o, t, from, w->id);
	}
	return w;
}

/* No lock: the processes, all asked for at once. Everything read of the
 * workers is fixed while they start. */
static void spawn_run(struct orch *o, struct spawn_job *jobs, size_t n)
{
	struct runner_spec *specs = xcalloc(n, sizeof *specs);
	struct runner_job **started = xcalloc(n, sizeof *started);
	int *rc = xcalloc(n, sizeof *rc);
	struct orch_err *errs = xcalloc(n, sizeof *errs);
	/* each runner's in one call: the local ones first (a batch of Slurm
	 * submissions is slower) */
	size_t nlocal = 0;
	for (size_t i = 0; i < n; i++)
		if (jobs[i].w->runner == RUNNER_LOCAL) {
			struct spawn_job j = jobs[nlocal];
			jobs[nlocal++] = jobs[i];
			jobs[i] = j;
		}
	char (*names)[2 * ID_MAX + 2] = xcalloc(n, sizeof *names);
	for (size_t i = 0; i < n; i++) {
		struct worker *w = jobs[i].w;
		/* what a cluster's queue shows of it: its track and task */
		snprintf(names[i], sizeof names[i], "%s%s%s", w->track_id, w->track_id[0] ? "-" : "",
			 w->task_id);
		specs[i] = (struct runner_spec){w->id, w->command, w->cwd,
						worker_envp(o, w, w->env, w->nenv), w->log_path,
						names[i][0] ? names[i] : NULL, w->runner_options,
						w->nrunner_options};
		if (w->runner != RUNNER_LOCAL)
			runner_local_skip(o->runner, w->id);
	}
	if (nlocal)
		o->runner->ops->start(o->runner, specs, nlocal, started, rc, errs);
	if (n > nlocal)
		o->slurm->ops->start(o->slurm, specs + nlocal, n - nlocal, started + nlocal,
				     rc + nlocal, errs + nlocal);
	for (size_t i = 0; i < n; i++) {
		jobs[i].job = started[i];
		jobs[i].rc = rc[i];
		jobs[i].err = errs[i];
		for (char *const *e = specs[i].envp; *e; e++)
			free(*e);
		free((void *)specs[i].envp);
	}
	free(specs);
	free(names);
	free(started);
	free(rc);
	free(errs);
}

/* Lock held: the worker runs, or it failed to start (a failed worker, and
 * its task failed: a command that cannot start will not start on a retry). */
static void spawn_end(struct orch *o, struct spawn_job *j)
{
	struct worker *w = j->w;
	w->starting = false;
	o->starting--;
	pthread_cond_broadcast(&o->spawned);
	if (j->rc) {
		run_remove(o, w);
		w->status = WORKER_FAILED;
		w->ended_ms = time_now_ms();
		cJSON *d = cJSON_CreateObject();
		cJSON_AddNumberToObject(d, "id", w->id);
		cJSON_AddStringToObject(d, "status", worker_status_name(w->status));
		cJSON_AddNullToObject(d, "exit_code");
		cJSON_AddStringToObject(d, "error", j->err.message);
		orch_event(o, w, EVK_WORKER_EXITED, d);
		orch_log_later(o, ORCH_LOG_INFO, "worker %d ended: failed, it could not start (task %s, track %s): %s",
			       w->id, w->task_id[0] ? w->task_id : "-", w->track_id[0] ? w->track_id : "-",
			       j->err.message);
		struct task *t = j->t;
		if (t && t->status == TASK_RUNNING && t->workers[t->nworkers - 1] == w->id) {
			cJSON *f = cJSON_CreateObject();
			cJSON_AddStringToObject(f, "task", t->id);
			cJSON_AddStringToObject(f, "error", j->err.message);
			orch_event(o, NULL, EVK_TASK_SPAWN_FAILED, f);
			task_set(o, t, TASK_FAILED);
		}
		return;
	}
	w->job = j->job;
	w->pid = runner_job_pid(w->job);
	const char *ref = worker_runner(o, w)->ops->ref(w->job);
	w->runner_ref = ref ? xstrdup(ref) : NULL;
	w->started_ns = time_mono_ns();
	if (o->pipeline == PIPE_FROZEN)
		runner_freeze(worker_runner(o, w), w->job, true);
	cJSON *d = cJSON_CreateObject();
	cJSON_AddNumberToObject(d, "id", w->id);
	json_add_str_or_null(d, "task", w->task_id);
	json_add_str_or_null(d, "track", w->track_id);
	cJSON_AddNumberToObject(d, "pid", w->pid);
	cJSON_AddStringToObject(d, "runner", worker_runner(o, w)->ops->name);
	json_add_str_or_null(d, "job_id", w->runner_ref);
	cJSON_AddStringToObject(d, "command", w->command);
	orch_event(o, w, EVK_WORKER_SPAWNED, d);
	worker_log_start(o, w, "started");
	if (w->end_early) {
		/* it is over already (`true`): no signal to send */
		w->end_early = false;
		worker_over(o, w, &w->early);
	} else if (w->pending_signal) {
		/* a kill that came while it started */
		runner_signal(worker_runner(o, w), w->job, w->pending_signal);
		if (o->pipeline == PIPE_FROZEN)
			runner_freeze(worker_runner(o, w), w->job, false);
	}
	orch_wake(o);
}

int sched_spawn(struct orch *o, const struct cmd_spawn *req, struct task *t, const char *command,
		struct worker **out, struct orch_err *err)
{
	if (o->stopping)
		return err_set(err, EBUSY, "orchfs is shutting down");
	if (t && t->status == TASK_RUNNING)
		return err_set(err, EBUSY, "task %s is already running", t->id);
	struct spawn_job j = {.t = t};
	j.w = spawn_begin(o, req, t, command ? command : t ? t->command : req->command);
	pthread_mutex_unlock(&o->lock);
	spawn_run(o, &j, 1);
	pthread_mutex_lock(&o->lock);
	spawn_end(o, &j);
	*out = j.w;
	return j.rc ? err_set(err, j.err.errnum, "%s", j.err.message) : 0;
}

static bool signal_ends_process(int sig)
{
	return sig != SIGSTOP && sig != SIGCONT && sig != SIGTSTP && sig != SIGCHLD &&
	       sig != SIGWINCH && sig != SIGURG;
}

int sched_kill(struct orch *o, struct worker *w, int sig, int grace_s, struct orch_err *err)
{
	struct orch_err ignored;
	if (!err)
		err = &ignored;
	if (w->status != WORKER_RUNNING)
		return err_set(err, EBUSY, "worker %d has already ended (%s)", w->id,
			       worker_status_name(w->status));
	if (grace_s < 0)
		grace_s = o->cfg.kill_grace_s;
	/* still starting: it gets the signal the moment it has a pid */
	if (w->starting && (w->pending_signal != SIGKILL))
		w->pending_signal = sig;
	int rc = w->starting ? 0 : runner_signal(worker_runner(o, w), w->job, sig);
	if (rc && rc != -ESRCH)
		return err_set(err, EIO, "kill worker %d: %s", w->id, strerror(-rc));
	bool ends = signal_ends_process(sig);
	if (ends) {
		w->kill_requested = true;
		/* A frozen worker would hold the signal pending until thawed. */
		if (o->pipeline == PIPE_FROZEN && !w->starting)
			runner_freeze(worker_runner(o, w), w->job, false);
		if (sig != SIGKILL) {
			int64_t deadline = time_mono_ns() + (int64_t)grace_s * 1000000000;
			if (!w->kill_deadline_ns || deadline < w->kill_deadline_ns)
				w->kill_deadline_ns = deadline;
		}
	}
	cJSON *d = cJSON_CreateObject();
	cJSON_AddNumberToObject(d, "id", w->id);
	cJSON_AddStringToObject(d, "signal", signal_name(sig));
	if (ends && sig != SIGKILL)
		cJSON_AddNumberToObject(d, "grace_s", grace_s);
	orch_event(o, w, EVK_WORKER_SIGNAL, d);
	orch_wake(o);
	return 0;
}

static void pipeline_set(struct orch *o, enum pipeline_status s)
{
	enum pipeline_status from = o->pipeline;
	if (from == s)
		return;
	sched_wait_started(o);
	if (s == PIPE_FROZEN || from == PIPE_FROZEN)
		for (int i = 0; i < o->running; i++)
			runner_freeze(worker_runner(o, o->run[i]), o->run[i]->job, s == PIPE_FROZEN);
	o->pipeline = s;
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "from", pipeline_status_name(from));
	cJSON_AddStringToObject(d, "to", pipeline_status_name(s));
	orch_event(o, NULL, EVK_PIPELINE_STATUS, d);
	orch_wake(o);
}

void sched_wait_started(struct orch *o)
{
	while (o->starting)
		pthread_cond_wait(&o->spawned, &o->lock);
}

int sched_pause(struct orch *o, bool freeze)
{
	pipeline_set(o, freeze ? PIPE_FROZEN : PIPE_PAUSED);
	return 0;
}

int sched_resume(struct orch *o)
{
	pipeline_set(o, PIPE_RUNNING);
	return 0;
}

int sched_set_max_workers(struct orch *o, int n)
{
	if (n == o->max_workers)
		return 0;
	cJSON *d = cJSON_CreateObject();
	cJSON_AddNumberToObject(d, "from", o->max_workers);
	cJSON_AddNumberToObject(d, "to", n);
	o->max_workers = n;
	orch_event(o, NULL, EVK_PIPELINE_MAX_WORKERS, d);
	/* only room for a ready task gives the scheduler something to do (and
	 * a paused pipeline starts none: resume wakes it) */
	if (o->nready && o->running < n && o->pipeline == PIPE_RUNNING)
		orch_wake(o);
	return 0;
}

int sched_report_usage(struct orch *o, struct worker *w, const struct usage *u,
		       struct orch_err *err)
{
	struct track *k = w->track_id[0] ? track_find(o, w->track_id) : NULL;
	char who[32];
	snprintf(who, sizeof who, "worker %d", w->id);
	int rc = usage_check_add(&w->usage, u, o->prices, o->nprices, who, err);
	if (!rc && k)
		rc = usage_check_add(&k->usage, u, o->prices, o->nprices, "its track", err);
	if (!rc)
		rc = usage_check_add(&o->usage, u, o->prices, o->nprices, "the daemon", err);
	if (rc)
		return rc;
	usage_add(&w->usage, u);
	usage_add(&o->usage, u);
	if (k)
		usage_add(&k->usage, u);
	cJSON *d = cJSON_CreateObject();
	cJSON_AddNumberToObject(d, "worker", w->id);
	json_add_str_or_null(d, "task", w->task_id);
	json_add_str_or_null(d, "track", w->track_id);
	cJSON_AddStringToObject(d, "model", u->model);
	json_add_i64(d, "input_tokens", u->input);
	json_add_i64(d, "output_tokens", u->output);
	json_add_i64(d, "cache_read_tokens", u->cache_read);
	json_add_i64(d, "cache_write_tokens", u->cache_write);
	json_add_usd(d, "cost_usd",
		     pricing_cost(pricing_find(o->prices, o->nprices, u->model), u));
	orch_event(o, w, EVK_USAGE_REPORTED, d);
	if (k) {
		track_mark(o, k);
		sched_recompute(o);
	}
	return 0;
}

/* --- the loop --- */

static void task_after_attempt(struct orch *o, struct worker *w);

/* Its job, ended, goes; what it used stays in its record. */
static void worker_used(struct orch *o, struct worker *w)
{
	if (!w->job)
		return;   /* it never started, or it was lost before */
	struct runner_usage used;
	runner_release(worker_runner(o, w), w->job, &used);
	w->job = NULL;
	w->cpu_us = used.cpu_us;
	w->memory_peak = used.memory_peak;
}

/* Its end can never be known (its runner lost it, or the machine rebooted
 * while the daemon was away): its pid is not signalled, it may be anyone's. */
static void worker_lost(struct orch *o, struct worker *w)
{
	worker_used(o, w);
	run_remove(o, w);
	w->status = WORKER_LOST;
	w->ended_ms = time_now_ms();
	cJSON *d = cJSON_CreateObject();
	cJSON_AddNumberToObject(d, "id", w->id);
	cJSON_AddNumberToObject(d, "pid", w->pid);
	orch_event(o, w, EVK_WORKER_LOST, d);
	worker_log_end(o, w);
	task_after_attempt(o, w);
}

static void worker_ended(struct orch *o, struct worker *w, int wstatus)
{
	w->ended_ms = time_now_ms();
	if (WIFEXITED(wstatus))
		w->exit_code = WEXITSTATUS(wstatus);
	else if (WIFSIGNALED(wstatus))
		w->term_signal = WTERMSIG(wstatus);
	if (w->kill_requested)
		w->status = WORKER_KILLED;
	else if (!w->timed_out && w->exit_code == 0)
		w->status = WORKER_EXITED;
	else
		w->status = WORKER_FAILED;
	worker_used(o, w);
	w->kill_deadline_ns = 0;
	run_remove(o, w);

	cJSON *d = cJSON_CreateObject();
	cJSON_AddNumberToObject(d, "id", w->id);
	cJSON_AddStringToObject(d, "status", worker_status_name(w->status));
	if (w->exit_code >= 0)
		cJSON_AddNumberToObject(d, "exit_code", w->exit_code);
	else
		cJSON_AddNullToObject(d, "exit_code");
	json_add_str_or_null(d, "signal", w->term_signal ? signal_name(w->term_signal) : NULL);
	if (w->timed_out)
		cJSON_AddBoolToObject(d, "timed_out", 1);
	orch_event(o, w, EVK_WORKER_EXITED, d);
	worker_log_end(o, w);
	task_after_attempt(o, w);
}

static void worker_over(struct orch *o, struct worker *w, const struct runner_end *end)
{
	if (end->lost)
		worker_lost(o, w);
	else
		worker_ended(o, w, end->wstatus);
}

/* The task of an attempt that ended: done, killed, re-queued or failed. */
static void task_after_attempt(struct orch *o, struct worker *w)
{
	struct task *t = w->task_id[0] ? task_find(o, w->task_id) : NULL;
	if (!t || t->status != TASK_RUNNING || !t->nworkers || t->workers[t->nworkers - 1] != w->id)
		return;
	if (w->status == WORKER_EXITED) {
		task_set(o, t, TASK_DONE);
	} else if (w->status == WORKER_KILLED) {
		task_set(o, t, TASK_KILLED);
	} else if (t->retries > 0) {
		t->retries--;
		cJSON *r = cJSON_CreateObject();
		cJSON_AddStringToObject(r, "task", t->id);
		cJSON_AddNumberToObject(r, "worker", w->id);
		cJSON_AddNumberToObject(r, "retries_left", t->retries);
		orch_event(o, NULL, EVK_TASK_RETRY, r);
		task_set(o, t, TASK_BLOCKED);
	} else {
		task_set(o, t, TASK_FAILED);
	}
}

void sched_recover(struct orch *o)
{
	/* Workers a crash lost the record of, before their start reached the
	 * store: their ids stay theirs (lost; what runs of them is killed at
	 * adopt_end), so that no log, cgroup or exit record is taken for
	 * another's. */
	for (int id = (int)o->nworkers + 1; id <= runner_local_last_id(o->runner); id++) {
		struct worker *w = worker_placeholder(id);
		w->ended_ms = time_now_ms();
		ARRAY_GROW(o->workers, o->workers_cap, o->nworkers + 1);
		o->workers[o->nworkers++] = w;
		cJSON *d = cJSON_CreateObject();
		cJSON_AddNumberToObject(d, "id", w->id);
		cJSON_AddNumberToObject(d, "pid", 0);
		orch_event(o, w, EVK_WORKER_LOST, d);
	}
	/* What the store says runs: re-adopted from the runner, ended while no
	 * daemon was there, or lost. */
	for (size_t i = 0; i < o->nworkers; i++) {
		struct worker *w = o->workers[i];
		if (w->status != WORKER_RUNNING)
			continue;
		int wstatus = 0;
		struct runner_job *job;
		struct runner *r = worker_runner(o, w);
		switch (r->ops->adopt(r, w->id, w->runner_ref, &job, &wstatus)) {
		case RUNNER_RUNNING: {
			run_add(o, w);
			w->job = job;
			w->pid = runner_job_pid(job);
			/* its timeout counts from its start, not from ours */
			w->started_ns = time_mono_ns() - (time_now_ms() - w->started_ms) * 1000000;
			if (o->pipeline == PIPE_FROZEN)
				runner_freeze(r, w->job, true);
			cJSON *d = cJSON_CreateObject();
			cJSON_AddNumberToObject(d, "id", w->id);
			cJSON_AddNumberToObject(d, "pid", w->pid);
			orch_event(o, w, EVK_WORKER_ADOPTED, d);
			worker_log_start(o, w, "adopted");
			break;
		}
		case RUNNER_ENDED:
			worker_ended(o, w, wstatus);
			break;
		case RUNNER_GONE:
			worker_lost(o, w);
			break;
		}
	}
	o->runner->ops->adopt_end(o->runner);
	o->slurm->ops->adopt_end(o->slurm);
	/* A task still running here lost an attempt whose record never reached
	 * the disk: it ends as that attempt would have. */
	for (struct task *t = o->tasks; t; t = t->next) {
		struct worker *w = t->nworkers ? worker_find(o, t->workers[t->nworkers - 1]) : NULL;
		if (t->status == TASK_RUNNING && w && w->status == WORKER_LOST)
			task_after_attempt(o, w);
		else if (t->status == TASK_RUNNING && !w)
			task_set(o, t, TASK_FAILED);
	}
	sched_recompute(o);
}

/* The ready task to start next, skipping tracks over their budget (their
 * tasks stay ready, set aside in skipped until the caller puts them back). */
static struct task *pick_ready(struct orch *o, struct task ***skipped, size_t *nskipped)
{
	struct task *t;
	while ((t = ready_peek(o)) && t->track->status == TRACK_OVER_BUDGET) {
		ready_remove(o, t);
		*skipped = xrealloc(*skipped, (*nskipped + 1) * sizeof **skipped);
		(*skipped)[(*nskipped)++] = t;
	}
	return t;
}

/* What its runner says of it changed (a Slurm job's queue state): its
 * info.json is new, and watchers hear of it. */
static void runner_state_event(struct orch *o, struct worker *w)
{
	struct buf b = BUF_INIT;
	worker_runner(o, w)->ops->describe(worker_runner(o, w), w->job, w->runner_ref, &b);
	/* describe gives `,"key":value`: made an object of */
	b.data[0] = '{';
	buf_putc(&b, '}');
	cJSON *d = cJSON_Parse(b.data);
	buf_free(&b);
	if (!d)
		d = cJSON_CreateObject();
	cJSON_AddNumberToObject(d, "id", w->id);
	orch_event(o, w, EVK_WORKER_RUNNER_STATE, d);
}

/* Lock held: reaps, enforces timeouts and kill graces, and makes the records
 * of the workers to start (jobs), whose processes start after the lock is
 * released: a fork is never made while others wait for the model. */
static void sched_tick(struct orch *o, struct spawn_job **jobs, size_t *njobs)
{
	int64_t now = time_mono_ns();
	bool changed = false;
	struct runner *runners[] = {o->runner, o->slurm};
	for (size_t k = 0; k < sizeof runners / sizeof *runners; k++) {
		struct runner_end *ends;
		size_t nends = runner_collect(runners[k], &ends);
		for (size_t i = 0; i < nends; i++) {
			struct worker *w = worker_find(o, ends[i].id);
			if (!w || w->status != WORKER_RUNNING)
				continue;   /* one the store did not know, killed at the restart */
			if (ends[i].changed) {
				if (w->starting)
					continue;   /* its spawn event says it all */
				runner_state_event(o, w);
				/* a job its cluster started only now, the pipeline
				 * frozen: suspended as the others were */
				if (o->pipeline == PIPE_FROZEN &&
				    !runners[k]->ops->queued(runners[k], w->job))
					runner_freeze(runners[k], w->job, true);
				continue;
			}
			if (w->starting) {
				w->end_early = true;   /* its start's end sees to it */
				w->early = ends[i];
				continue;
			}
			worker_over(o, w, &ends[i]);
			changed = true;
		}
		free(ends);
	}
	for (int i = 0; i < o->running; i++) {
		struct worker *w = o->run[i];
		if (w->starting)
			continue;   /* nothing to signal yet */
		if (w->timeout_s && !w->timed_out &&
		    now - w->started_ns >= (int64_t)w->timeout_s * 1000000000) {
			w->timed_out = true;
			cJSON *d = cJSON_CreateObject();
			cJSON_AddNumberToObject(d, "id", w->id);
			cJSON_AddNumberToObject(d, "timeout_s", w->timeout_s);
			orch_event(o, w, EVK_WORKER_TIMEOUT, d);
			runner_signal(worker_runner(o, w), w->job, SIGTERM);
			if (o->pipeline == PIPE_FROZEN)
				runner_freeze(worker_runner(o, w), w->job, false);
			w->kill_deadline_ns = now + (int64_t)o->cfg.kill_grace_s * 1000000000;
		}
		if (w->kill_deadline_ns && now >= w->kill_deadline_ns) {
			w->kill_deadline_ns = 0;
			runner_signal(worker_runner(o, w), w->job, SIGKILL);
			cJSON *d = cJSON_CreateObject();
			cJSON_AddNumberToObject(d, "id", w->id);
			cJSON_AddStringToObject(d, "signal", "KILL");
			orch_event(o, w, EVK_WORKER_SIGNAL, d);
		}
	}
	if (changed)
		sched_recompute(o);
	struct task **skipped = NULL;
	size_t nskipped = 0;
	while (!o->stopping && o->pipeline == PIPE_RUNNING && o->running < o->max_workers) {
		struct task *t = pick_ready(o, &skipped, &nskipped);
		if (!t)
			break;
		*jobs = xrealloc(*jobs, (*njobs + 1) * sizeof **jobs);
		(*jobs)[*njobs] = (struct spawn_job){.t = t};
		(*jobs)[(*njobs)++].w = spawn_begin(o, NULL, t, t->command);
		changed = true;
	}
	for (size_t i = 0; i < nskipped; i++)
		ready_insert(o, skipped[i]);
	free(skipped);
	if (changed)
		sched_recompute(o);
	/* One commit for everything this tick did (the starts' end commits it
	 * when there are some). */
	if (!*njobs)
		orch_commit(o);
}

/* Lock held: the workers the tick started have their processes now. */
static void sched_tick_end(struct orch *o, struct spawn_job *jobs, size_t njobs)
{
	for (size_t i = 0; i < njobs; i++)
		spawn_end(o, &jobs[i]);
	sched_recompute(o);
	orch_commit(o);
}

void *sched_main(void *arg)
{
	struct orch *o = arg;
	pthread_setname_np(pthread_self(), "orchfs-sched");
	/* Its time under the lock is what every reader and writer waits on: on a
	 * machine busy with clients it should not be the one preempted. */
	runner_raise_priority();
	pthread_mutex_lock(&o->lock);
	/* a stop waits for the workers to end, unless they are left running to
	 * the next daemon */
	while (!(o->stopping && (o->running == 0 || o->cfg.live_restore))) {
		struct pollfd fds[3] = {{.fd = o->wake_fd, .events = POLLIN},
					{.fd = o->runner->event_fd, .events = POLLIN},
					{.fd = o->slurm->event_fd, .events = POLLIN}};
		struct buf lines = orch_log_take(o);
		pthread_mutex_unlock(&o->lock);
		orch_log_put(o, &lines);
		/* 100 ms bounds how late a timeout or a kill grace can fire. */
		poll(fds, 3, 100);
		uint64_t drain;
		if (fds[0].revents & POLLIN)
			(void)!read(o->wake_fd, &drain, sizeof drain);
		struct spawn_job *jobs = NULL;
		size_t njobs = 0;
		pthread_mutex_lock(&o->lock);
		/* a tick is its time under the lock, the processes' start left out */
		int64_t t0 = time_mono_ns();
		sched_tick(o, &jobs, &njobs);
		int64_t ticked = time_mono_ns() - t0;
		if (njobs) {
			pthread_mutex_unlock(&o->lock);
			spawn_run(o, jobs, njobs);
			pthread_mutex_lock(&o->lock);
			t0 = time_mono_ns();
			sched_tick_end(o, jobs, njobs);
			ticked += time_mono_ns() - t0;
		}
		free(jobs);
		tm_tick(o->tm, ticked);
	}
	pthread_mutex_unlock(&o->lock);
	return NULL;
}
