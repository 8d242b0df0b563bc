/* orch: creating, starting and stopping the core. */
#include "orch.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "context.h"
#include "nodes.h"
#include "pricing.h"
#include "render.h"
#include "scheduler.h"
#include "sha256.h"
#include "store.h"
#include "telemetry.h"

/* Events kept in memory (and at most EVENTS_MAX_BYTES of them): enough for
 * every reader that keeps up; one further behind reads the store's copy. */
#define EVENT_HISTORY 16384

int orch_mkdir_p(const char *path)
{
	char *p = xstrdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST) {
			free(p);
			return -errno;
		}
		*s = '/';
	}
	int rc = mkdir(p, 0700) < 0 && errno != EEXIST ? -errno : 0;
	free(p);
	return rc;
}

int orch_init(struct orch *o, const struct orch_config *cfg, struct orch_err *err)
{
	memset(o, 0, sizeof *o);
	o->cfg = *cfg;
	if (!o->cfg.max_write)
		o->cfg.max_write = 1u << 20;
	if (o->cfg.pricing_file &&
	    pricing_load(o->cfg.pricing_file, &o->prices, &o->nprices, err))
		return -err->errnum;
	char logs[4096], run[4096];
	snprintf(logs, sizeof logs, "%s/logs", o->cfg.state_dir);
	snprintf(run, sizeof run, "%s/run", o->cfg.state_dir);
	int rc = orch_mkdir_p(logs);
	const char *dir = logs;
	if (!rc) {
		rc = orch_mkdir_p(run);
		dir = run;
	}
	if (rc) {
		free(o->prices);
		return err_set(err, -rc, "cannot create %s: %s", dir, strerror(-rc));
	}
	/* orchfs's cgroup is named after the state: a restart on it finds what
	 * a crash left */
	char key[65];
	sha256_hex(o->cfg.state_dir, strlen(o->cfg.state_dir), key);
	key[12] = '\0';
	mutex_init_pi(&o->lock);
	o->started_ms = time_now_ms();
	o->max_workers = cfg->max_workers > 0 ? cfg->max_workers : 1;
	o->pipeline = PIPE_RUNNING;
	o->tracks_tail = &o->tracks;
	o->task_index = hashmap_new();
	o->track_index = hashmap_new();
	o->archive_index = hashmap_new();
	o->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_cond_init(&o->spawned, NULL);
	events_init(&o->events, o->cfg.event_history ? o->cfg.event_history : EVENT_HISTORY);
	o->ctx = ctx_create(&o->events, o->cfg.mount, o->cfg.max_write * 16);
	o->tm = tm_create();
	node_cache_init(o);
	render_init(o);
	if (!o->cfg.no_store) {
		struct buf warning = BUF_INIT;
		store_check_mode(o->cfg.state_dir, &warning);
		if (warning.len)
			orch_log(o, ORCH_LOG_WARN, "%s", warning.data);
		buf_free(&warning);
	}
	if (!o->cfg.no_store &&
	    (store_open(o->cfg.state_dir, o->cfg.durable, &o->store, err) ||
	     store_load(o->store, o, err))) {
		orch_destroy(o);
		return -err->errnum;
	}
	/* ids go on from the last one stored */
	if (runner_local_create(o->cfg.isolation, key, run, logs,
				o->cfg.supervisor ? o->cfg.supervisor : "/proc/self/exe",
				(int)o->nworkers + 1, &o->runner, err) ||
	    runner_slurm_create(o->cfg.slurm_poll_ms, &o->slurm, err)) {
		orch_destroy(o);
		return -err->errnum;
	}
	if (o->cfg.no_store)
		return 0;
	store_set_log(o->store, &o->cfg.log);
	int rc_start = store_start(o->store, &o->events);
	if (rc_start) {
		orch_destroy(o);
		return err_set(err, -rc_start, "cannot start the store thread: %s", strerror(-rc_start));
	}
	pthread_mutex_lock(&o->lock);
	sched_recover(o);
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "version", ORCHFS_VERSION);
	cJSON_AddNumberToObject(d, "pid", getpid());
	orch_event(o, NULL, EVK_DAEMON_STARTED, d);
	uint64_t ticket = orch_commit_waited(o);
	struct buf lines = orch_log_take(o);
	pthread_mutex_unlock(&o->lock);
	orch_log_put(o, &lines);
	if (orch_wait(o, ticket)) {
		orch_destroy(o);
		return err_set(err, EIO, "cannot write the store in %s", o->cfg.state_dir);
	}
	return 0;
}

uint64_t orch_commit(struct orch *o)
{
	return o->store ? store_queue(o->store, o, false) : 0;
}

uint64_t orch_commit_waited(struct orch *o)
{
	return o->store ? store_queue(o->store, o, true) : 0;
}

void orch_trace(struct orch *o, int worker, struct buf *out)
{
	if (o->store)
		store_trace(o->store, worker, out);
	else
		events_trace(&o->events, worker, out);
}

int orch_wait(struct orch *o, uint64_t ticket)
{
	return o->store && ticket ? store_wait(o->store, ticket) : 0;
}

int orch_wait_journaled(struct orch *o, uint64_t ticket)
{
	return o->store && ticket ? store_wait_journaled(o->store, ticket) : 0;
}

int orch_start(struct orch *o)
{
	int rc = pthread_create(&o->sched_thread, NULL, sched_main, o);
	if (rc)
		return -rc;
	o->sched_started = true;
	return 0;
}

void orch_shutdown(struct orch *o)
{
	pthread_mutex_lock(&o->lock);
	if (o->stopping) {
		pthread_mutex_unlock(&o->lock);
		return;
	}
	o->stopping = true;
	for (int i = 0; i < o->running && !o->cfg.live_restore; i++)
		sched_kill(o, o->run[i], SIGTERM, -1, NULL);
	orch_event(o, NULL, EVK_DAEMON_STOPPING, NULL);
	pthread_mutex_unlock(&o->lock);
	orch_wake(o);
	if (o->sched_started)
		pthread_join(o->sched_thread, NULL);
	o->sched_started = false;
	pthread_mutex_lock(&o->lock);
	orch_event(o, NULL, EVK_DAEMON_STOPPED, NULL);
	uint64_t ticket = orch_commit_waited(o);
	struct buf lines = orch_log_take(o);
	pthread_mutex_unlock(&o->lock);
	orch_log_put(o, &lines);
	orch_wait(o, ticket);
}

void orch_destroy(struct orch *o)
{
	for (struct task *t = o->tasks, *next; t; t = next) {
		next = t->next;
		task_free(t);
	}
	for (struct track *k = o->tracks, *next; k; k = next) {
		next = k->next;
		track_free(k);
	}
	for (size_t i = 0; i < o->narchive; i++)
		archived_free(o->archive[i]);
	free(o->archive);
	free(o->run);
	free(o->ready);
	free(o->dirty_tasks);
	free(o->dirty_tracks);
	for (size_t i = 0; i < o->nworkers; i++) {
		struct worker *w = o->workers[i];
		if (w->job)
			orch_runner(o, w->runner)->ops->forget(orch_runner(o, w->runner), w->job);
		worker_free(w);
	}
	free(o->workers);
	/* what runs now was left to the next daemon (--live-restore), or is
	 * what a failed start found (re-adopted by the next one) */
	runner_destroy(o->runner, true);
	runner_destroy(o->slurm, true);
	/* first: the store thread may still be writing what was queued */
	store_close(o->store);
	o->store = NULL;
	hashmap_free(o->task_index);
	hashmap_free(o->track_index);
	hashmap_free(o->archive_index);
	usage_set_free(&o->usage);
	free(o->prices);
	buf_free(&o->last_error);
	orch_log_put(o, &o->log_later);   /* no thread is left to hold the lock */
	node_cache_free(o);
	render_free(o);
	free(o->task_at);
	free(o->track_at);
	ctx_destroy(o->ctx);
	tm_destroy(o->tm);
	events_destroy(&o->events);
	close(o->wake_fd);
	pthread_cond_destroy(&o->spawned);
	pthread_mutex_destroy(&o->lock);
}

struct runner *orch_runner(const struct orch *o, enum runner_kind k)
{
	if (k == RUNNER_DEFAULT)
		k = o->cfg.runner;
	return k == RUNNER_SLURM ? o->slurm : o->runner;
}

void orch_wake(struct orch *o)
{
	uint64_t one = 1;
	(void)!write(o->wake_fd, &one, sizeof one);
}

void orch_set_error(struct orch *o, const char *object, size_t len)
{
	buf_reset(&o->last_error);
	buf_append(&o->last_error, object, len);
	/* the store sees it moved (store_queue), and so does the render cache */
	__atomic_add_fetch(&o->errors, 1, __ATOMIC_RELEASE);
}

void orch_record_error(struct orch *o, const char *object, size_t len)
{
	pthread_mutex_lock(&o->lock);
	orch_set_error(o, object, len);
	/* the store thread journals it: callers answer from threads (the events
	 * pump) that must not lead a journal write */
	orch_commit(o);
	pthread_mutex_unlock(&o->lock);
	/* not an event, but the notifier waits on them: last_error is announced */
	events_wake_all(&o->events);
}
