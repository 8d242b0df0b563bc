/* sched: readiness, the scheduler thread, spawning, reaping and killing. */
#include "scheduler.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dag.h"
#include "pricing.h"
#include "runner.h"
#include "telemetry.h"

extern char **environ;

static void publish_task_status(struct orch *o, struct task *t, enum task_status from)
{
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "task", t->id);
	cJSON_AddStringToObject(d, "track", t->track->id);
	cJSON_AddStringToObject(d, "from", task_status_name(from));
	cJSON_AddStringToObject(d, "to", task_status_name(t->status));
	orch_event(o, NULL, EVK_TASK_STATUS, d);
}

static void task_set(struct orch *o, struct task *t, enum task_status s)
{
	enum task_status from = t->status;
	if (from == s)
		return;
	task_set_status(o, t, s);
	publish_task_status(o, t, from);
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
	}
}

static void env_push(char ***envp, size_t *n, size_t *cap, char *entry)
{
	/* Later entries override earlier ones with the same name. */
	size_t klen = strcspn(entry, "=");
	for (size_t i = 0; i < *n; i++)
		if (strncmp((*envp)[i], entry, klen) == 0 && (*envp)[i][klen] == '=') {
			free((*envp)[i]);
			(*envp)[i] = entry;
			return;
		}
	if (*n + 2 > *cap) {
		*cap = *cap ? *cap * 2 : 64;
		*envp = xrealloc(*envp, *cap * sizeof **envp);
	}
	(*envp)[(*n)++] = entry;
	(*envp)[*n] = NULL;
}

static char *env_fmt(const char *key, const char *value)
{
	struct buf b = BUF_INIT;
	buf_printf(&b, "%s=%s", key, value ? value : "");
	return buf_steal(&b);
}

static char **worker_envp(struct orch *o, const struct worker *w, char *const *extra1,
			  size_t n1, char *const *extra2, size_t n2)
{
	char **envp = NULL;
	size_t n = 0, cap = 0;
	for (char **e = environ; e && *e; e++)
		if (strncmp(*e, "ORCHFS_", 7) != 0)
			env_push(&envp, &n, &cap, xstrdup(*e));
	char id[16];
	snprintf(id, sizeof id, "%d", w->id);
	env_push(&envp, &n, &cap, env_fmt("ORCHFS_MOUNT", o->cfg.mount));
	env_push(&envp, &n, &cap, env_fmt("ORCHFS_WORKER_ID", id));
	env_push(&envp, &n, &cap, env_fmt("ORCHFS_TASK_ID", w->task_id));
	env_push(&envp, &n, &cap, env_fmt("ORCHFS_TRACK", w->track_id));
	if (o->cfg.api_url)
		env_push(&envp, &n, &cap, env_fmt("ORCHFS_API", o->cfg.api_url));
	if (o->cfg.token_file)
		env_push(&envp, &n, &cap, env_fmt("ORCHFS_TOKEN_FILE", o->cfg.token_file));
	for (size_t i = 0; i < n1; i++)
		env_push(&envp, &n, &cap, xstrdup(extra1[i]));
	for (size_t i = 0; i < n2; i++)
		env_push(&envp, &n, &cap, xstrdup(extra2[i]));
	return envp;
}

static int log_ahead_take(struct orch *o, int id)
{
	int fd = -1;
	pthread_mutex_lock(&o->logs_ahead.lock);
	size_t slot = (size_t)id % 16;
	if (o->logs_ahead.id[slot] == id) {
		fd = o->logs_ahead.fd[slot];
		o->logs_ahead.fd[slot] = -1;
		o->logs_ahead.id[slot] = 0;
	}
	pthread_mutex_unlock(&o->logs_ahead.lock);
	return fd;
}

/* Called without orch.lock: creates the logs of the next few worker ids. */
static void log_ahead_fill(struct orch *o)
{
	int next = (int)__atomic_load_n(&o->nworkers, __ATOMIC_ACQUIRE) + 1;
	int want = o->max_workers < 15 ? o->max_workers + 1 : 16;
	for (int id = next; id < next + want; id++) {
		size_t slot = (size_t)id % 16;
		pthread_mutex_lock(&o->logs_ahead.lock);
		bool have = o->logs_ahead.id[slot] == id;
		pthread_mutex_unlock(&o->logs_ahead.lock);
		if (have)
			continue;
		char path[4096];
		snprintf(path, sizeof path, "%s/logs/%d.log", o->cfg.state_dir, id);
		int fd = runner_open_log(path);
		if (fd < 0)
			return;
		pthread_mutex_lock(&o->logs_ahead.lock);
		/* a slot still holding an older id was passed by: that worker made its own */
		if (o->logs_ahead.fd[slot] >= 0)
			close(o->logs_ahead.fd[slot]);
		o->logs_ahead.id[slot] = id;
		o->logs_ahead.fd[slot] = fd;
		pthread_mutex_unlock(&o->logs_ahead.lock);
	}
}

int sched_spawn(struct orch *o, const struct cmd_spawn *req, struct task *t, struct worker **out,
		struct orch_err *err)
{
	if (o->stopping)
		return err_set(err, EBUSY, "orchfs is shutting down");
	if (t && t->status == TASK_RUNNING)
		return err_set(err, EBUSY, "task %s is already running", t->id);

	struct worker *w = xcalloc(1, sizeof *w);
	w->id = (int)o->nworkers + 1;
	w->exit_code = -1;
	w->pidfd = w->stdin_fd = -1;
	const char *cwd = t ? t->cwd : req->cwd;
	const char *model = t ? t->model : req->model;
	w->command = xstrdup(t ? t->command : req->command);
	w->cwd = xstrdup(cwd ? cwd : o->cfg.workdir);
	w->model = model ? xstrdup(model) : NULL;
	if (t) {
		strcpy(w->task_id, t->id);
		strcpy(w->track_id, t->track->id);
		w->env = strv_dup(t->env, t->nenv);
		w->nenv = t->nenv;
		w->timeout_s = t->timeout_s;
	} else {
		strcpy(w->task_id, req->task);
		strcpy(w->track_id, req->track);
		w->env = strv_dup(req->env, req->nenv);
		w->nenv = req->nenv;
	}
	struct buf path = BUF_INIT;
	buf_printf(&path, "%s/logs/%d.log", o->cfg.state_dir, w->id);
	w->log_path = buf_steal(&path);

	char **envp = worker_envp(o, w, w->env, w->nenv, NULL, 0);
	struct runner_proc p;
	int rc = runner_start(w->command, w->cwd, envp, log_ahead_take(o, w->id), w->log_path, &p,
			      err);
	for (char **e = envp; *e; e++)
		free(*e);
	free(envp);
	if (rc) {
		unlink(w->log_path);
		worker_free(w);
		return rc;
	}
	if (o->pipeline == PIPE_FROZEN)
		runner_signal(p.pid, SIGSTOP);

	w->pid = p.pid;
	w->pidfd = p.pidfd;
	w->stdin_fd = p.stdin_fd;
	w->status = WORKER_RUNNING;
	w->started_ms = time_now_ms();
	w->started_ns = time_mono_ns();
	if (o->nworkers == o->workers_cap) {
		o->workers_cap = o->workers_cap ? o->workers_cap * 2 : 64;
		o->workers = xrealloc(o->workers, o->workers_cap * sizeof *o->workers);
	}
	/* atomic: log_ahead_fill reads it without the lock */
	o->workers[o->nworkers] = w;
	__atomic_store_n(&o->nworkers, o->nworkers + 1, __ATOMIC_RELEASE);
	run_add(o, w);

	cJSON *d = cJSON_CreateObject();
	cJSON_AddNumberToObject(d, "id", w->id);
	json_add_str_or_null(d, "task", w->task_id);
	json_add_str_or_null(d, "track", w->track_id);
	cJSON_AddNumberToObject(d, "pid", w->pid);
	cJSON_AddStringToObject(d, "command", w->command);
	orch_event(o, w, EVK_WORKER_SPAWNED, d);
	if (t) {
		t->workers = xrealloc(t->workers, (t->nworkers + 1) * sizeof *t->workers);
		t->workers[t->nworkers++] = w->id;
		task_set(o, t, TASK_RUNNING);
	}
	orch_wake(o);
	*out = w;
	return 0;
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
	int rc = runner_signal(w->pid, sig);
	if (rc && rc != -ESRCH)
		return err_set(err, EIO, "kill worker %d: %s", w->id, strerror(-rc));
	bool ends = signal_ends_process(sig);
	if (ends) {
		w->kill_requested = true;
		/* A stopped group would hold the signal pending until resumed. */
		if (o->pipeline == PIPE_FROZEN)
			runner_signal(w->pid, SIGCONT);
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
	int sig = s == PIPE_FROZEN ? SIGSTOP : from == PIPE_FROZEN ? SIGCONT : 0;
	for (int i = 0; sig && i < o->running; i++)
		runner_signal(o->run[i]->pid, sig);
	o->pipeline = s;
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "from", pipeline_status_name(from));
	cJSON_AddStringToObject(d, "to", pipeline_status_name(s));
	orch_event(o, NULL, EVK_PIPELINE_STATUS, d);
	orch_wake(o);
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
	orch_wake(o);
	return 0;
}

void sched_report_usage(struct orch *o, struct worker *w, const struct usage *u)
{
	usage_add(&w->usage, u);
	usage_add(&o->usage, u);
	struct track *k = w->track_id[0] ? track_find(o, w->track_id) : NULL;
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
}

/* --- the loop --- */

static void task_after_attempt(struct orch *o, struct worker *w);

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
	close(w->pidfd);
	w->pidfd = -1;
	if (w->stdin_fd >= 0)
		close(w->stdin_fd);
	w->stdin_fd = -1;
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
	task_after_attempt(o, w);
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
	for (size_t i = 0; i < o->nworkers; i++) {
		struct worker *w = o->workers[i];
		if (w->status != WORKER_RUNNING)
			continue;
		/* Its pid may belong to someone else by now: it is not signalled. */
		run_remove(o, w);
		w->status = WORKER_LOST;
		w->ended_ms = time_now_ms();
		cJSON *d = cJSON_CreateObject();
		cJSON_AddNumberToObject(d, "id", w->id);
		cJSON_AddNumberToObject(d, "pid", w->pid);
		orch_event(o, w, EVK_WORKER_LOST, d);
		task_after_attempt(o, w);
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

static void sched_tick(struct orch *o)
{
	int64_t now = time_mono_ns();
	bool changed = false;
	for (int i = 0; i < o->running; i++) {
		struct worker *w = o->run[i];
		int wstatus;
		if (runner_reap(w->pid, &wstatus)) {
			worker_ended(o, w, wstatus);   /* run[i] is now another worker */
			i--;
			changed = true;
			continue;
		}
		if (w->timeout_s && !w->timed_out &&
		    now - w->started_ns >= (int64_t)w->timeout_s * 1000000000) {
			w->timed_out = true;
			cJSON *d = cJSON_CreateObject();
			cJSON_AddNumberToObject(d, "id", w->id);
			cJSON_AddNumberToObject(d, "timeout_s", w->timeout_s);
			orch_event(o, w, EVK_WORKER_TIMEOUT, d);
			runner_signal(w->pid, SIGTERM);
			if (o->pipeline == PIPE_FROZEN)
				runner_signal(w->pid, SIGCONT);
			w->kill_deadline_ns = now + (int64_t)o->cfg.kill_grace_s * 1000000000;
		}
		if (w->kill_deadline_ns && now >= w->kill_deadline_ns) {
			w->kill_deadline_ns = 0;
			runner_signal(w->pid, SIGKILL);
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
		struct worker *w;
		struct orch_err err = {0};
		if (sched_spawn(o, NULL, t, &w, &err)) {
			cJSON *d = cJSON_CreateObject();
			cJSON_AddStringToObject(d, "task", t->id);
			cJSON_AddStringToObject(d, "error", err.message);
			orch_event(o, NULL, EVK_TASK_SPAWN_FAILED, d);
			task_set(o, t, TASK_FAILED);
		}
		changed = true;
	}
	for (size_t i = 0; i < nskipped; i++)
		ready_insert(o, skipped[i]);
	free(skipped);
	if (changed)
		sched_recompute(o);
	/* One commit for everything this tick did. */
	orch_commit(o);
}

void *sched_main(void *arg)
{
	struct orch *o = arg;
	struct pollfd *fds = NULL;
	size_t cap = 0;
	pthread_setname_np(pthread_self(), "orchfs-sched");
	pthread_mutex_lock(&o->lock);
	while (!(o->stopping && o->running == 0)) {
		size_t n = 1;
		if (cap < (size_t)o->running + 1) {
			cap = (size_t)o->running + 16;
			fds = xrealloc(fds, cap * sizeof *fds);
		}
		fds[0] = (struct pollfd){.fd = o->wake_fd, .events = POLLIN};
		for (int i = 0; i < o->running; i++)
			fds[n++] = (struct pollfd){.fd = o->run[i]->pidfd, .events = POLLIN};
		pthread_mutex_unlock(&o->lock);
		log_ahead_fill(o);
		/* 100 ms bounds how late a timeout or a kill grace can fire. */
		poll(fds, n, 100);
		uint64_t drain;
		if (fds[0].revents & POLLIN)
			(void)!read(o->wake_fd, &drain, sizeof drain);
		pthread_mutex_lock(&o->lock);
		int64_t t0 = time_mono_ns();
		sched_tick(o);
		tm_tick(o->tm, time_mono_ns() - t0);
	}
	pthread_mutex_unlock(&o->lock);
	free(fds);
	return NULL;
}
