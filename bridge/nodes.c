/* nodes: the namespace table, its renders and its control-file handlers. */
#include "nodes.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmd.h"
#include "context.h"
#include "dag.h"
#include "pricing.h"
#include "render.h"
#include "scheduler.h"
#include "telemetry.h"

/* The kind of object a wildcard segment names. */
enum wild { W_NONE, W_WORKER, W_TRACK, W_TASK, W_CTX };

typedef int (*render_fn)(struct orch *o, const struct node *n, struct buf *out);
typedef int (*apply_fn)(struct orch *o, const struct node *n, const char *in, size_t len,
			const char *cwd, struct buf *result, struct orch_err *err);

struct node_def {
	const char *pattern;    /* one segment may be "*", the wildcard */
	enum node_type type;
	unsigned flags;
	enum wild wild;
	render_fn render;
	apply_fn apply;
	/* Which kinds of change touch this file (for one with a wildcard: when
	 * the event names its object), which make it (an entry) appear, and
	 * which make it go: what inotify hears and what caches drop. */
	uint64_t deps, born, dies;
};

/* --- helpers --- */

/* A worker id is its decimal digits and nothing else: no sign, no space, no
 * leading zero (strtol would take "+1" and " 1" for 1). 0 if it is not one. */
static int arg_id(const char *arg)
{
	int id = 0;
	if (arg[0] < '1' || arg[0] > '9')
		return 0;
	for (const char *c = arg; *c; c++) {
		if (*c < '0' || *c > '9' || id > (INT_MAX - (*c - '0')) / 10)
			return 0;
		id = id * 10 + (*c - '0');
	}
	return id;
}

static struct worker *arg_worker(struct orch *o, const struct node *n)
{
	int id = arg_id(n->arg);
	return id ? worker_find(o, id) : NULL;
}

static bool wild_exists(struct orch *o, enum wild w, const char *arg)
{
	struct node n;
	snprintf(n.arg, sizeof n.arg, "%s", arg);
	switch (w) {
	case W_WORKER: return arg_worker(o, &n) != NULL;
	case W_TRACK: return id_valid(arg) && track_find(o, arg) != NULL;
	case W_TASK: return id_valid(arg) && task_find(o, arg) != NULL;
	case W_CTX: return ctx_exists(o->ctx, arg);
	default: return true;
	}
}

/* --- renders --- */

static const char readme_text[] =
	"orchfs: an orchestration daemon whose state is this file system.\n"
	"\n"
	"state.json            everything, with the current event seq\n"
	"last_error            the last failed write, as an error object (with its ts)\n"
	"mma/pipeline/         status, max_workers (writable), pause (\"freeze\" freezes), resume\n"
	"mma/workers.json      all workers;  mma/workers/spawn  \"COMMAND\" or JSON\n"
	"mma/workers/kill      \"ID [SIGNAL] [grace=SECONDS]\"\n"
	"mma/workers/ID/       status info.json log trace usage stdin kill\n"
	"mma/tracks/create     a plan: {\"id\",\"title\",\"budget_usd\"?,\"tasks\":[...]}\n"
	"mma/tracks/ID/        status info.json budget (writable, USD)\n"
	"mma/tasks/ID/         status info.json (\"waiting\": why not started) deps worker\n"
	"mma/archive.json      the tracks archived out of the live tree\n"
	"mma/dag.json dag.dot  the DAG;  mma/dag/mutate  one operation a line:\n"
	"                      remove_task T | add_dep T D | remove_dep T D | retry T\n"
	"                      skip T | hold T | release T | cancel T\n"
	"                      remove_track K | archive K  (or JSON, with add_task)\n"
	"context/              state.json aggregate files/NAME\n"
	"context/inject        \"PATH\" | \"skeleton PATH\" | \"PATH as NAME\" | \"text TEXT\" | JSON\n"
	"context/remove        \"NAME\"\n"
	"metrics/financial.json  tokens and cost;  system/telemetry.json  the daemon's vitals\n"
	"\n"
	"A write to a control file is one command; read the same descriptor back for the\n"
	"result, or the error object. Usage reports go to mma/workers/ID/usage:\n"
	"  model=NAME in=N out=N [cache_read=N] [cache_write=N]   (or JSON)\n";

static int r_readme(struct orch *o, const struct node *n, struct buf *out)
{
	buf_puts(out, readme_text);
	return 0;
}

static cJSON *telemetry_doc(struct orch *o)
{
	cJSON *t = tm_json(o->tm);
	pthread_mutex_lock(&o->lock);
	cJSON *w = cJSON_AddObjectToObject(t, "workers");
	cJSON_AddNumberToObject(w, "running", o->running);
	cJSON_AddNumberToObject(w, "total", (double)o->nworkers);
	pthread_mutex_unlock(&o->lock);
	cJSON *e = cJSON_AddObjectToObject(t, "events");
	pthread_mutex_lock(&o->events.lock);
	json_add_i64(e, "seq", (int64_t)o->events.seq);
	json_add_i64(e, "depth", (int64_t)o->events.count);
	json_add_i64(e, "high_water", (int64_t)o->events.high_water);
	json_add_i64(e, "capacity", (int64_t)o->events.cap);
	json_add_i64(e, "dropped", (int64_t)o->events.evicted);   /* from memory; the store keeps them */
	pthread_mutex_unlock(&o->events.lock);
	return t;
}

static int r_state(struct orch *o, const struct node *n, struct buf *out)
{
	/* context and telemetry have their own locks: written first, outside orch.lock */
	struct buf extra = BUF_INIT;
	cJSON *rest = cJSON_CreateObject();
	cJSON_AddItemToObject(rest, "context", ctx_state_json(o->ctx));
	cJSON_AddItemToObject(rest, "telemetry", telemetry_doc(o));
	json_emit(rest, &extra);
	extra.data[0] = ',';                 /* {"context":...}\n -> ,"context":... */
	extra.data[extra.len - 2] = '\0';
	render_doc(o, RENDER_STATE, extra.data, out);
	buf_free(&extra);
	return 0;
}

static int r_telemetry(struct orch *o, const struct node *n, struct buf *out)
{
	json_emit(telemetry_doc(o), out);
	return 0;
}

static int r_last_error(struct orch *o, const struct node *n, struct buf *out)
{
	pthread_mutex_lock(&o->lock);
	if (o->last_error.len)
		buf_append(out, o->last_error.data, o->last_error.len);
	else
		buf_puts(out, "{\"error\":null}\n");
	pthread_mutex_unlock(&o->lock);
	return 0;
}

static int r_pipeline_status(struct orch *o, const struct node *n, struct buf *out)
{
	pthread_mutex_lock(&o->lock);
	buf_printf(out, "%s\n", pipeline_status_name(o->pipeline));
	pthread_mutex_unlock(&o->lock);
	return 0;
}

static int r_max_workers(struct orch *o, const struct node *n, struct buf *out)
{
	pthread_mutex_lock(&o->lock);
	buf_printf(out, "%d\n", o->max_workers);
	pthread_mutex_unlock(&o->lock);
	return 0;
}

static int r_workers(struct orch *o, const struct node *n, struct buf *out)
{
	render_doc(o, RENDER_WORKERS, NULL, out);
	return 0;
}

static int r_tracks(struct orch *o, const struct node *n, struct buf *out)
{
	render_doc(o, RENDER_TRACKS, NULL, out);
	return 0;
}

static int r_dag(struct orch *o, const struct node *n, struct buf *out)
{
	render_doc(o, RENDER_DAG, NULL, out);
	return 0;
}

static int r_financial(struct orch *o, const struct node *n, struct buf *out)
{
	render_doc(o, RENDER_FINANCIAL, NULL, out);
	return 0;
}

static int r_archive(struct orch *o, const struct node *n, struct buf *out)
{
	pthread_mutex_lock(&o->lock);
	render_archive(o, out);
	pthread_mutex_unlock(&o->lock);
	buf_putc(out, '\n');
	return 0;
}

static int r_dag_dot(struct orch *o, const struct node *n, struct buf *out)
{
	pthread_mutex_lock(&o->lock);
	render_dag_dot(o, out);
	pthread_mutex_unlock(&o->lock);
	return 0;
}

/* Per-object renders: look the object up under the lock, ENOENT if it went. */
enum obj_view { V_STATUS, V_INFO, V_TRACE, V_USAGE, V_DEPS, V_BUDGET };

static int r_worker_view(struct orch *o, const struct node *n, struct buf *out, enum obj_view v)
{
	int id = 0;
	pthread_mutex_lock(&o->lock);
	struct worker *w = arg_worker(o, n);
	if (w && v == V_STATUS)
		buf_printf(out, "%s\n", worker_status_shown(o, w));
	else if (w && v == V_INFO)
		render_worker(o, w, out);
	else if (w && v == V_TRACE)
		id = w->id;   /* read after the lock: it is the store's */
	else if (w && v == V_USAGE)
		render_usage(o, &w->usage, out);
	if (w && (v == V_INFO || v == V_USAGE))
		buf_putc(out, '\n');
	pthread_mutex_unlock(&o->lock);
	if (id)
		orch_trace(o, id, out);
	return w ? 0 : -ENOENT;
}

static int r_worker_status(struct orch *o, const struct node *n, struct buf *out)
{
	return r_worker_view(o, n, out, V_STATUS);
}
static int r_worker_info(struct orch *o, const struct node *n, struct buf *out)
{
	return r_worker_view(o, n, out, V_INFO);
}
static int r_worker_trace(struct orch *o, const struct node *n, struct buf *out)
{
	return r_worker_view(o, n, out, V_TRACE);
}
static int r_worker_usage(struct orch *o, const struct node *n, struct buf *out)
{
	return r_worker_view(o, n, out, V_USAGE);
}

static int r_track_view(struct orch *o, const struct node *n, struct buf *out, enum obj_view v)
{
	pthread_mutex_lock(&o->lock);
	struct track *k = track_find(o, n->arg);
	if (k && v == V_STATUS) {
		buf_printf(out, "%s\n", track_status_name(k->status));
	} else if (k && v == V_INFO) {
		render_track(o, k, true, out);
		buf_putc(out, '\n');
	} else if (k && v == V_BUDGET) {
		if (k->budget_micro >= 0)
			buf_printf(out, "%lld.%06lld\n", (long long)(k->budget_micro / 1000000),
				   (long long)(k->budget_micro % 1000000));
		else
			buf_puts(out, "none\n");
	}
	pthread_mutex_unlock(&o->lock);
	return k ? 0 : -ENOENT;
}

static int r_track_status(struct orch *o, const struct node *n, struct buf *out)
{
	return r_track_view(o, n, out, V_STATUS);
}
static int r_track_info(struct orch *o, const struct node *n, struct buf *out)
{
	return r_track_view(o, n, out, V_INFO);
}
static int r_track_budget(struct orch *o, const struct node *n, struct buf *out)
{
	return r_track_view(o, n, out, V_BUDGET);
}

static int r_task_view(struct orch *o, const struct node *n, struct buf *out, enum obj_view v)
{
	pthread_mutex_lock(&o->lock);
	struct task *t = task_find(o, n->arg);
	if (t && v == V_STATUS) {
		buf_printf(out, "%s\n", task_status_name(t->status));
	} else if (t && v == V_INFO) {
		render_task(o, t, TASK_WITH_WORKERS | TASK_WITH_WAITING, out);
		buf_putc(out, '\n');
	} else if (t && v == V_DEPS) {
		for (size_t i = 0; i < t->ndeps; i++)
			buf_printf(out, "%s\n", t->deps[i]->id);
	}
	pthread_mutex_unlock(&o->lock);
	return t ? 0 : -ENOENT;
}

static int r_task_status(struct orch *o, const struct node *n, struct buf *out)
{
	return r_task_view(o, n, out, V_STATUS);
}
static int r_task_info(struct orch *o, const struct node *n, struct buf *out)
{
	return r_task_view(o, n, out, V_INFO);
}
static int r_task_deps(struct orch *o, const struct node *n, struct buf *out)
{
	return r_task_view(o, n, out, V_DEPS);
}

static int r_ctx_state(struct orch *o, const struct node *n, struct buf *out)
{
	json_emit(ctx_state_json(o->ctx), out);
	return 0;
}

static int r_ctx_aggregate(struct orch *o, const struct node *n, struct buf *out)
{
	ctx_render_aggregate(o->ctx, out);
	return 0;
}

static int r_ctx_file(struct orch *o, const struct node *n, struct buf *out)
{
	return ctx_render_file(o->ctx, n->arg, out);
}

/* --- control handlers --- */

static int a_pause(struct orch *o, const struct node *n, const char *in, size_t len,
		   const char *cwd, struct buf *result, struct orch_err *err)
{
	bool freeze;
	int rc = cmd_parse_pause(in, len, &freeze, err);
	if (rc)
		return rc;
	pthread_mutex_lock(&o->lock);
	sched_pause(o, freeze);
	render_pipeline(o, result);
	buf_putc(result, '\n');
	pthread_mutex_unlock(&o->lock);
	return 0;
}

static int a_resume(struct orch *o, const struct node *n, const char *in, size_t len,
		    const char *cwd, struct buf *result, struct orch_err *err)
{
	int rc = cmd_parse_text(in, len, err);
	if (rc)
		return rc;
	pthread_mutex_lock(&o->lock);
	sched_resume(o);
	render_pipeline(o, result);
	buf_putc(result, '\n');
	pthread_mutex_unlock(&o->lock);
	return 0;
}

static int a_max_workers(struct orch *o, const struct node *n, const char *in, size_t len,
			 const char *cwd, struct buf *result, struct orch_err *err)
{
	int64_t v;
	int rc = cmd_parse_int(in, len, 1, 4096, &v, err);
	if (rc)
		return rc;
	pthread_mutex_lock(&o->lock);
	sched_set_max_workers(o, (int)v);
	render_pipeline(o, result);
	buf_putc(result, '\n');
	pthread_mutex_unlock(&o->lock);
	return 0;
}

static int a_spawn(struct orch *o, const struct node *n, const char *in, size_t len,
		   const char *cwd, struct buf *result, struct orch_err *err)
{
	struct cmd_spawn s;
	int rc = cmd_parse_spawn(in, len, &s, err);
	if (rc)
		return rc;
	pthread_mutex_lock(&o->lock);
	struct task *t = NULL;
	struct worker *w;
	/* Like a shell: a command typed on the mount runs where its writer stands,
	 * unless that is inside the mount itself (it would keep it busy). */
	size_t mlen = strlen(o->cfg.mount);
	if (!s.cwd && cwd && !(strncmp(cwd, o->cfg.mount, mlen) == 0 &&
			       (cwd[mlen] == '/' || cwd[mlen] == '\0')))
		s.cwd = xstrdup(cwd);
	if (s.task[0] && !(t = task_find(o, s.task)))
		rc = err_set(err, ENOENT, "no task \"%s\"", s.task);
	else if (s.track[0] && !track_find(o, s.track))
		rc = err_set(err, ENOENT, "no track \"%s\"", s.track);
	else if (t && s.track[0] && strcmp(t->track->id, s.track))
		rc = err_set(err, EINVAL, "task %s belongs to track %s, not %s", t->id,
			     t->track->id, s.track);
	else if (t && t->status != TASK_READY && t->status != TASK_BLOCKED &&
		 t->status != TASK_FAILED && t->status != TASK_KILLED && t->status != TASK_HELD)
		rc = err_set(err, EBUSY, "task %s is %s", t->id, task_status_name(t->status));
	if (!rc) {
		/* A hand spawn for a task runs the given command as that task's attempt. */
		rc = sched_spawn(o, &s, t, s.command, &w, err);
	}
	if (!rc) {
		if (t)
			sched_recompute(o);
		render_worker(o, w, result);
		buf_putc(result, '\n');
	}
	pthread_mutex_unlock(&o->lock);
	cmd_spawn_free(&s);
	return rc;
}

static int kill_worker(struct orch *o, int id, const struct cmd_kill *k, struct buf *result,
		       struct orch_err *err)
{
	pthread_mutex_lock(&o->lock);
	struct worker *w = worker_find(o, id);
	int rc = w ? sched_kill(o, w, k->signal, k->grace_s, err)
		   : err_set(err, ENOENT, "no worker %d", id);
	if (!rc) {
		render_worker(o, w, result);
		buf_putc(result, '\n');
	}
	pthread_mutex_unlock(&o->lock);
	return rc;
}

static int a_kill(struct orch *o, const struct node *n, const char *in, size_t len,
		  const char *cwd, struct buf *result, struct orch_err *err)
{
	struct cmd_kill k;
	int rc = cmd_parse_kill(in, len, false, &k, err);
	return rc ? rc : kill_worker(o, k.id, &k, result, err);
}

static int a_worker_kill(struct orch *o, const struct node *n, const char *in, size_t len,
			 const char *cwd, struct buf *result, struct orch_err *err)
{
	struct cmd_kill k;
	int rc = cmd_parse_kill(in, len, true, &k, err);
	return rc ? rc : kill_worker(o, arg_id(n->arg), &k, result, err);
}

static int a_usage(struct orch *o, const struct node *n, const char *in, size_t len,
		   const char *cwd, struct buf *result, struct orch_err *err)
{
	struct usage u;
	int rc = cmd_parse_usage(in, len, &u, err);
	if (rc)
		return rc;
	pthread_mutex_lock(&o->lock);
	struct worker *w = arg_worker(o, n);
	if (w) {
		rc = sched_report_usage(o, w, &u, err);
		if (!rc) {
			render_usage(o, &w->usage, result);
			buf_putc(result, '\n');
		}
	} else {
		rc = err_set(err, ENOENT, "no worker %s", n->arg);
	}
	pthread_mutex_unlock(&o->lock);
	return rc;
}

static int a_stdin(struct orch *o, const struct node *n, const char *in, size_t len,
		   const char *cwd, struct buf *result, struct orch_err *err)
{
	int rc = 0;
	pthread_mutex_lock(&o->lock);
	struct worker *w = arg_worker(o, n);
	if (!w) {
		rc = err_set(err, ENOENT, "no worker %s", n->arg);
	} else if (w->status != WORKER_RUNNING || !w->job) {
		rc = err_set(err, EBUSY, "worker %d has %s (%s)", w->id,
			     w->status == WORKER_RUNNING ? "not started yet" : "ended",
			     worker_status_name(w->status));
	} else {
		struct runner *runner = orch_runner(o, w->runner);
		ssize_t r = runner->ops->write_stdin(runner, w->job, in, len);
		if (r == -EAGAIN)
			rc = err_set(err, EAGAIN, "worker %d is not reading its stdin (pipe full)", w->id);
		else if (r == -EOPNOTSUPP)
			rc = err_set(err, EOPNOTSUPP, "worker %d runs under %s: it has no stdin", w->id,
				     runner->ops->name);
		else if (r < 0)
			rc = err_set(err, EBUSY, "worker %d stdin: %s", w->id, strerror((int)-r));
		else if ((size_t)r < len)
			rc = err_set(err, EAGAIN, "worker %d took %zd of %zu bytes (pipe full)", w->id, r, len);
		else
			buf_printf(result, "{\"worker\":%d,\"bytes\":%zu}\n", w->id, len);
	}
	pthread_mutex_unlock(&o->lock);
	return rc;
}

static int a_create(struct orch *o, const struct node *n, const char *in, size_t len,
		    const char *cwd, struct buf *result, struct orch_err *err)
{
	struct cmd_plan p;
	int rc = cmd_parse_plan(in, len, &p, err);
	if (rc)
		return rc;
	pthread_mutex_lock(&o->lock);
	rc = dag_create_track(o, &p, result, err);
	pthread_mutex_unlock(&o->lock);
	cmd_plan_free(&p);
	return rc;
}

static int a_budget(struct orch *o, const struct node *n, const char *in, size_t len,
		    const char *cwd, struct buf *result, struct orch_err *err)
{
	int64_t micro;
	int rc = cmd_parse_usd(in, len, &micro, err);
	if (rc)
		return rc;
	pthread_mutex_lock(&o->lock);
	struct track *k = track_find(o, n->arg);
	if (k) {
		cJSON *d = cJSON_CreateObject();
		cJSON_AddStringToObject(d, "track", k->id);
		json_add_usd(d, "budget_usd", micro);
		k->budget_micro = micro;
		orch_event(o, NULL, EVK_TRACK_BUDGET, d);
		track_mark(o, k);
		sched_recompute(o);
		orch_wake(o);
		render_track(o, k, false, result);
		buf_putc(result, '\n');
	} else {
		rc = err_set(err, ENOENT, "no track \"%s\"", n->arg);
	}
	pthread_mutex_unlock(&o->lock);
	return rc;
}

static int a_mutate(struct orch *o, const struct node *n, const char *in, size_t len,
		    const char *cwd, struct buf *result, struct orch_err *err)
{
	struct cmd_mutate m;
	int rc = cmd_parse_mutate(in, len, &m, err);
	if (rc)
		return rc;
	pthread_mutex_lock(&o->lock);
	rc = dag_mutate(o, &m, result, err);
	pthread_mutex_unlock(&o->lock);
	cmd_mutate_free(&m);
	return rc;
}

static int a_inject(struct orch *o, const struct node *n, const char *in, size_t len,
		    const char *cwd, struct buf *result, struct orch_err *err)
{
	struct ctx_inject_req req;
	int rc = cmd_parse_inject(in, len, cwd, &req, err);
	if (rc)
		return rc;
	rc = ctx_inject(o->ctx, &req, result, err);
	ctx_inject_req_free(&req);
	return rc;
}

static int a_remove(struct orch *o, const struct node *n, const char *in, size_t len,
		    const char *cwd, struct buf *result, struct orch_err *err)
{
	char name[ID_MAX + 1];
	int rc = cmd_parse_name(in, len, name, err);
	if (!rc)
		rc = ctx_remove(o->ctx, name, result, err);
	return rc;
}

/* --- the table --- */

#define K(kind) (UINT64_C(1) << EVK_##kind)
/* a worker's life: each of these changes its status or what it shows */
#define K_WORKER (K(WORKER_SPAWNED) | K(WORKER_SIGNAL) | K(WORKER_TIMEOUT) | K(WORKER_EXITED) | \
		  K(WORKER_LOST) | K(WORKER_ADOPTED) | K(WORKER_RUNNER_STATE))
#define K_TASKS (K(TASK_STATUS) | K(TASK_ADDED) | K(TASK_REMOVED))
#define K_TRACK_GONE (K(TRACK_REMOVED) | K(TRACK_ARCHIVED))
#define K_EDGES (K(DEP_ADDED) | K(DEP_REMOVED))
#define K_TRACKS (K(TRACK_STATUS) | K(TRACK_CREATED) | K(TRACK_BUDGET) | K_TRACK_GONE)
#define K_CONTEXT (K(CONTEXT_INJECTED) | K(CONTEXT_REPLACED) | K(CONTEXT_REMOVED))
#define K_ALL ((UINT64_C(1) << EVK_COUNT) - 1)

#define DIR_(p, w) {p, NODE_DIR, 0, w, NULL, NULL, 0, 0, 0}
#define DOC(p, w, r, deps) {p, NODE_FILE, NODE_DOC, w, r, NULL, deps, 0, 0}
#define JSON(p, w, r, deps) {p, NODE_FILE, NODE_DOC | NODE_JSON, w, r, NULL, deps, 0, 0}
#define VOL(p, w, r, deps) {p, NODE_FILE, NODE_DOC | NODE_VOLATILE | NODE_JSON, w, r, NULL, deps, 0, 0}
#define CTL(p, w, a) {p, NODE_FILE, NODE_CTL, w, NULL, a, 0, 0, 0}
#define CWD_CTL(p, w, a) {p, NODE_FILE, NODE_CTL | NODE_CWD, w, NULL, a, 0, 0, 0}
#define VAL(p, w, r, a, deps) {p, NODE_FILE, NODE_DOC | NODE_CTL, w, r, a, deps, 0, 0}
/* an entry whose object comes and goes with these kinds */
#define ENTRY(p, type, flags, w, r, deps, born, dies) {p, type, flags, w, r, NULL, deps, born, dies}

static const struct node_def node_table[] = {
	DIR_("", W_NONE),
	/* it carries telemetry and the seq: every change is one */
	VOL("state.json", W_NONE, r_state, K_ALL),
	{"events", NODE_FILE, NODE_STREAM, W_NONE, NULL, NULL, 0, 0, 0},
	JSON("last_error", W_NONE, r_last_error, NODE_DEP_ERROR),
	DOC("README", W_NONE, r_readme, 0),
	DIR_("mma", W_NONE),
	DIR_("mma/pipeline", W_NONE),
	DOC("mma/pipeline/status", W_NONE, r_pipeline_status, K(PIPELINE_STATUS)),
	VAL("mma/pipeline/max_workers", W_NONE, r_max_workers, a_max_workers,
	    K(PIPELINE_MAX_WORKERS)),
	CTL("mma/pipeline/pause", W_NONE, a_pause),
	CTL("mma/pipeline/resume", W_NONE, a_resume),
	JSON("mma/workers.json", W_NONE, r_workers, K_WORKER | K(USAGE_REPORTED)),
	DIR_("mma/workers", W_NONE),
	CWD_CTL("mma/workers/spawn", W_NONE, a_spawn),
	CTL("mma/workers/kill", W_NONE, a_kill),
	ENTRY("mma/workers/*", NODE_DIR, 0, W_WORKER, NULL, 0, K(WORKER_SPAWNED), 0),
	DOC("mma/workers/*/status", W_WORKER, r_worker_status,
	    K(WORKER_EXITED) | K(WORKER_LOST) | K(WORKER_RUNNER_STATE)),
	JSON("mma/workers/*/info.json", W_WORKER, r_worker_info, K_WORKER | K(USAGE_REPORTED)),
	{"mma/workers/*/log", NODE_FILE, NODE_LOG, W_WORKER, NULL, NULL, 0, 0, 0},
	/* its events, so every event about it */
	DOC("mma/workers/*/trace", W_WORKER, r_worker_trace, K_WORKER | K(USAGE_REPORTED)),
	VAL("mma/workers/*/usage", W_WORKER, r_worker_usage, a_usage, K(USAGE_REPORTED)),
	CTL("mma/workers/*/stdin", W_WORKER, a_stdin),
	CTL("mma/workers/*/kill", W_WORKER, a_worker_kill),
	/* status, budget, cost and task counts of every track */
	JSON("mma/tracks.json", W_NONE, r_tracks, K_TRACKS | K_TASKS | K(USAGE_REPORTED)),
	DIR_("mma/tracks", W_NONE),
	CTL("mma/tracks/create", W_NONE, a_create),
	ENTRY("mma/tracks/*", NODE_DIR, 0, W_TRACK, NULL, 0, K(TRACK_CREATED), K_TRACK_GONE),
	DOC("mma/tracks/*/status", W_TRACK, r_track_status, K(TRACK_STATUS)),
	JSON("mma/tracks/*/info.json", W_TRACK, r_track_info,
	    K_TRACKS | K_TASKS | K(USAGE_REPORTED) | K(TASK_RETRY)),
	VAL("mma/tracks/*/budget", W_TRACK, r_track_budget, a_budget, K(TRACK_BUDGET)),
	DIR_("mma/tasks", W_NONE),
	ENTRY("mma/tasks/*", NODE_DIR, 0, W_TASK, NULL, 0, K(TASK_ADDED), K(TASK_REMOVED)),
	DOC("mma/tasks/*/status", W_TASK, r_task_status, K(TASK_STATUS)),
	/* it shows its workers and their usage */
	/* and why it waits: its deps', its track's, the pipeline's state */
	JSON("mma/tasks/*/info.json", W_TASK, r_task_info,
	    K(TASK_STATUS) | K(TASK_RETRY) | K(TASK_SPAWN_FAILED) | K_EDGES | K_WORKER |
		    K(USAGE_REPORTED) | K(TRACK_STATUS) | K(TRACK_BUDGET) | K(PIPELINE_STATUS) |
		    K(PIPELINE_MAX_WORKERS)),
	DOC("mma/tasks/*/deps", W_TASK, r_task_deps, K_EDGES),
	{"mma/tasks/*/worker", NODE_LINK, 0, W_TASK, NULL, NULL, 0, 0, 0},
	JSON("mma/dag.json", W_NONE, r_dag, K_TASKS | K_EDGES),
	DOC("mma/dag.dot", W_NONE, r_dag_dot, K_TASKS | K_EDGES | K(TRACK_CREATED) | K_TRACK_GONE),
	/* the tracks `archive` took out of the live tree */
	JSON("mma/archive.json", W_NONE, r_archive, K(TRACK_ARCHIVED)),
	DIR_("mma/dag", W_NONE),
	CTL("mma/dag/mutate", W_NONE, a_mutate),
	DIR_("context", W_NONE),
	/* volatile: each read checks the sources again */
	VOL("context/state.json", W_NONE, r_ctx_state, K_CONTEXT),
	DOC("context/aggregate", W_NONE, r_ctx_aggregate, K_CONTEXT),
	DIR_("context/files", W_NONE),
	ENTRY("context/files/*", NODE_FILE, NODE_DOC, W_CTX, r_ctx_file, K(CONTEXT_REPLACED),
	      K(CONTEXT_INJECTED), K(CONTEXT_REMOVED)),
	CWD_CTL("context/inject", W_NONE, a_inject),
	CTL("context/remove", W_NONE, a_remove),
	DIR_("metrics", W_NONE),
	JSON("metrics/financial.json", W_NONE, r_financial,
	    K(USAGE_REPORTED) | K(TRACK_STATUS) | K(TRACK_CREATED) | K(TRACK_BUDGET) | K_TRACK_GONE),
	DIR_("system", W_NONE),
	/* changes all the time and is never announced: read it when you want it */
	VOL("system/telemetry.json", W_NONE, r_telemetry, 0),
};

#define NODE_COUNT (sizeof node_table / sizeof node_table[0])

/* The path of def with its wildcard filled in by the object the change names;
 * false when it names none of that kind. */
static bool touched_path(const struct node_def *d, const struct node_change *c, char *out,
			 size_t size)
{
	char num[16];
	const char *arg = NULL;
	switch (d->wild) {
	case W_NONE:
		snprintf(out, size, "%s", d->pattern);
		return true;
	case W_WORKER:
		if (c->worker > 0)
			snprintf(num, sizeof num, "%d", c->worker);
		arg = c->worker > 0 ? num : NULL;
		break;
	case W_TASK: arg = c->task; break;
	case W_TRACK: arg = c->track; break;
	case W_CTX: arg = c->name; break;
	}
	/* ids come from the model, names from context: neither can hold a '/' */
	if (!arg || !*arg || strchr(arg, '/'))
		return false;
	const char *star = strchr(d->pattern, '*');
	snprintf(out, size, "%.*s%s%s", (int)(star - d->pattern), d->pattern, arg, star + 1);
	return true;
}

struct node_change node_change_of(const struct event_rec *rec)
{
	uint64_t kinds = rec->kind < EVK_COUNT ? UINT64_C(1) << rec->kind : 0;
	return (struct node_change){kinds, rec->worker, rec->task, rec->track, rec->name};
}

void node_touched(const struct node_change *c,
		  void (*fn)(void *arg, enum node_touch how, const char *path, bool dir), void *arg)
{
	char path[PATH_MAX];
	for (size_t i = 0; i < NODE_COUNT; i++) {
		const struct node_def *d = &node_table[i];
		uint64_t hit = c->kinds & (d->deps | d->born | d->dies);
		if (!hit || !touched_path(d, c, path, sizeof path))
			continue;
		bool dir = d->type == NODE_DIR;
		if (hit & d->born)
			fn(arg, NODE_BORN, path, dir);
		if (hit & d->deps)
			fn(arg, NODE_MODIFIED, path, dir);
		if (hit & d->dies)
			fn(arg, NODE_GONE, path, dir);
	}
}

/* Matches path against pattern; the one '*' segment's value goes to arg. */
static bool pattern_match(const char *pattern, const char *path, char *arg, size_t argsize)
{
	while (*pattern && *path) {
		if (*pattern == '*') {
			size_t n = strcspn(path, "/");
			if (n == 0 || n >= argsize)
				return false;
			memcpy(arg, path, n);
			arg[n] = '\0';
			path += n;
			pattern++;
			continue;
		}
		if (*pattern++ != *path++)
			return false;
	}
	return *pattern == *path;
}

int node_resolve(struct orch *o, const char *path, struct node *out)
{
	for (size_t i = 0; i < NODE_COUNT; i++) {
		const struct node_def *d = &node_table[i];
		char arg[ID_MAX + 1] = "";
		if (!pattern_match(d->pattern, path, arg, sizeof arg))
			continue;
		if (d->wild != W_NONE) {
			bool ok;
			if (d->wild == W_CTX) {
				ok = ctx_exists(o->ctx, arg);
			} else {
				pthread_mutex_lock(&o->lock);
				ok = wild_exists(o, d->wild, arg);
				if (ok && d->type == NODE_LINK)
					ok = task_find(o, arg)->nworkers > 0;
				pthread_mutex_unlock(&o->lock);
			}
			if (!ok)
				return -ENOENT;
		}
		out->def = d;
		memcpy(out->arg, arg, sizeof arg);
		return 0;
	}
	return -ENOENT;
}

int node_resolve_api(struct orch *o, const char *path, struct node *out, char *resolved,
		     size_t size)
{
	char p[512];
	size_t n = strlen(path);
	while (n && path[n - 1] == '/')
		n--;
	if (n >= sizeof p - 16)
		return -ENOENT;
	memcpy(p, path, n);
	p[n] = '\0';
	if (strcmp(p, "gui/state") == 0)
		strcpy(p, "state");
	int rc = node_resolve(o, p, out);
	if (!rc && node_type(out) != NODE_DIR) {
		snprintf(resolved, size, "%s", p);
		return 0;
	}
	static const char *const suffixes[] = {".json", "/info.json"};
	for (size_t i = 0; i < 2; i++) {
		char q[540];
		snprintf(q, sizeof q, "%s%s", p, suffixes[i]);
		struct node alt;
		if (node_resolve(o, q, &alt) == 0 && node_type(&alt) == NODE_FILE) {
			*out = alt;
			snprintf(resolved, size, "%s", q);
			return 0;
		}
	}
	if (!rc)
		snprintf(resolved, size, "%s", p);
	return rc;
}

static void listing_entry(void *arg, const char *name, const struct node *child)
{
	cJSON *arr = arg, *e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "name", name);
	static const char *const types[] = {"dir", "file", "link"};
	cJSON_AddStringToObject(e, "type", types[node_type(child)]);
	cJSON_AddItemToArray(arr, e);
}

int node_render_listing(struct orch *o, const struct node *dir, const char *path, struct buf *out)
{
	cJSON *doc = cJSON_CreateObject();
	cJSON_AddStringToObject(doc, "path", path);
	int rc = node_list(o, dir, listing_entry, cJSON_AddArrayToObject(doc, "entries"));
	if (rc) {
		cJSON_Delete(doc);
		return rc;
	}
	json_emit(doc, out);
	return 0;
}

enum node_type node_type(const struct node *n)
{
	return n->def->type;
}

unsigned node_flags(const struct node *n)
{
	return n->def->flags;
}

mode_t node_mode(const struct node *n)
{
	const struct node_def *d = n->def;
	if (d->type == NODE_DIR)
		return S_IFDIR | 0555;
	if (d->type == NODE_LINK)
		return S_IFLNK | 0777;
	if ((d->flags & (NODE_DOC | NODE_CTL)) == (NODE_DOC | NODE_CTL))
		return S_IFREG | 0644;
	if (d->flags & (NODE_CTL | NODE_STREAM))
		return S_IFREG | 0600;   /* read back the result on the same descriptor */
	return S_IFREG | 0444;
}

int node_render(struct orch *o, const struct node *n, struct buf *out)
{
	if (!n->def->render)
		return -EINVAL;
	return n->def->render(o, n, out);
}

struct render_cache {
	pthread_mutex_t lock;
	struct hashmap *map;       /* "def/arg" -> struct cached_render */
};

struct cached_render {
	uint64_t version;
	struct node_body *body;
};

/* Renders of objects that are gone are never asked for again; past this many
 * entries the cache starts over rather than track which. */
#define RENDER_CACHE_MAX 8192

/* A render straight into a body: the buffer keeps room for its header. */
static int body_render(struct orch *o, const struct node *n, int refs, struct node_body **out)
{
	const size_t head = offsetof(struct node_body, data);
	struct buf b = BUF_INIT;
	buf_reserve(&b, head + 256);
	b.len = head;
	int err = node_render(o, n, &b);
	if (err) {
		buf_free(&b);
		return err;
	}
	size_t len = b.len - head;
	/* kept for as long as the document holds: no room to grow */
	*out = xrealloc(buf_steal(&b), head + len + 1);
	(*out)->refs = refs;
	(*out)->len = len;
	return 0;
}

void node_body_put(struct node_body *b)
{
	if (b && __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) == 0)
		free(b);
}

static void cached_free(void *v)
{
	struct cached_render *c = v;
	node_body_put(c->body);
	free(c);
}

void node_cache_init(struct orch *o)
{
	o->rcache = xcalloc(1, sizeof *o->rcache);
	pthread_mutex_init(&o->rcache->lock, NULL);
	o->rcache->map = hashmap_new();
}

void node_cache_free(struct orch *o)
{
	if (!o->rcache)
		return;
	hashmap_clear(o->rcache->map, cached_free);
	hashmap_free(o->rcache->map);
	pthread_mutex_destroy(&o->rcache->lock);
	free(o->rcache);
	o->rcache = NULL;
}

/* The document's version: the last seq of the kinds of change it depends on
 * (the count of failed writes for last_error). Unchanged while none moved. */
static uint64_t node_version(struct orch *o, const struct node *n)
{
	/* an id may come back (a task removed, then added again): its files are
	 * a new object's */
	static const uint64_t made[] = {[W_WORKER] = K(WORKER_SPAWNED), [W_TASK] = K(TASK_ADDED),
					[W_TRACK] = K(TRACK_CREATED), [W_CTX] = K(CONTEXT_INJECTED)};
	uint64_t deps = n->def->deps | made[n->def->wild], v = 0;
	if (deps & NODE_DEP_ERROR)
		v = __atomic_load_n(&o->errors, __ATOMIC_ACQUIRE);
	for (int k = 0; k < EVK_COUNT; k++)
		if (deps & (UINT64_C(1) << k)) {
			uint64_t seq = __atomic_load_n(&o->events.kind_seq[k], __ATOMIC_ACQUIRE);
			v = seq > v ? seq : v;
		}
	return v;
}

int node_render_shared(struct orch *o, const struct node *n, struct node_body **out)
{
	int err;
	if ((n->def->flags & NODE_VOLATILE) || !o->rcache)
		return body_render(o, n, 1, out);
	char key[ID_MAX + 32];
	snprintf(key, sizeof key, "%p/%s", (const void *)n->def, n->arg);
	struct render_cache *rc = o->rcache;
	uint64_t version = node_version(o, n);
	pthread_mutex_lock(&rc->lock);
	struct cached_render *c = hashmap_get(rc->map, key);
	if (c && c->version == version) {
		__atomic_add_fetch(&c->body->refs, 1, __ATOMIC_ACQ_REL);
		*out = c->body;
		pthread_mutex_unlock(&rc->lock);
		return 0;
	}
	pthread_mutex_unlock(&rc->lock);
	struct node_body *body;
	if ((err = body_render(o, n, 2, &body)))   /* the cache's reference and the caller's */
		return err;
	/* Labelled with the version read before rendering: if a change raced the
	 * render, the label is older than the content and the next read renders. */
	pthread_mutex_lock(&rc->lock);
	c = hashmap_get(rc->map, key);
	if (!c) {
		if (hashmap_size(rc->map) >= RENDER_CACHE_MAX)
			hashmap_clear(rc->map, cached_free);
		c = xcalloc(1, sizeof *c);
		hashmap_put(rc->map, key, c);
	}
	node_body_put(c->body);   /* readers of the old one keep it until they are done */
	c->body = body;
	c->version = version;
	pthread_mutex_unlock(&rc->lock);
	*out = body;
	return 0;
}

int node_render_cached(struct orch *o, const struct node *n, struct buf *out)
{
	struct node_body *b;
	int err = node_render_shared(o, n, &b);
	if (!err) {
		buf_append(out, b->data, b->len);
		node_body_put(b);
	}
	return err;
}

/* Every refusal, whichever way it came (mount, HTTP, WebSocket); EIO is not
 * the writer's doing but ours (the store). */
static void log_refusal(struct orch *o, const char *path, int errnum, int status, const char *message)
{
	orch_log(o, errnum == EIO ? ORCH_LOG_ERROR : ORCH_LOG_WARN, "refused write to %s: %s (%d) %s",
		 *path ? path : "/", err_name(errnum), status, message);
}

/* A write's commit could not be stored (wait's result, 0 or -EIO). */
static int stored_or_error(struct orch *o, const char *path, int wait, struct buf *result)
{
	if (!wait)
		return 0;
	return node_write_error(o, path, EIO, "the change was applied but could not be stored",
				result);
}

int node_write(struct orch *o, const struct node *n, const char *path, const char *data,
	       size_t len, const char *cwd, struct buf *result)
{
	uint64_t ticket;
	int rc = node_write_journaled(o, n, path, data, len, cwd, result, &ticket);
	return rc ? rc : node_write_synced(o, path, ticket, result);
}

int node_write_synced(struct orch *o, const char *path, uint64_t ticket, struct buf *result)
{
	return stored_or_error(o, path, orch_wait(o, ticket), result);
}

int node_write_journaled(struct orch *o, const struct node *n, const char *path, const char *data,
			 size_t len, const char *cwd, struct buf *result, uint64_t *ticket)
{
	struct orch_err err = {0};
	int rc;
	if (!(n->def->flags & NODE_CTL) || !n->def->apply)
		rc = err_set(&err, EACCES, "%s is read-only", path);
	else if (len > o->cfg.max_write)
		rc = err_set(&err, EFBIG, "a write of %zu bytes is over the limit of %zu", len,
			     o->cfg.max_write);
	else
		rc = n->def->apply(o, n, data, len, cwd, result, &err);
	if (rc) {
		/* its last_error goes to the disk with the write's own commit */
		if (!err.errnum)
			err_set(&err, -rc, "%s", strerror(-rc));
		buf_reset(result);
		err_render(&err, path, result);
	}
	/* Acknowledged means stored: the write returns only after the commit is
	 * journaled (and node_write's, with --durable, after the sync). */
	pthread_mutex_lock(&o->lock);
	if (rc)
		orch_set_error(o, result->data, result->len);
	*ticket = orch_commit_waited(o);
	pthread_mutex_unlock(&o->lock);
	int stored = orch_wait_journaled(o, *ticket);
	if (rc) {
		events_wake_all(&o->events);   /* the notifier announces last_error */
		log_refusal(o, path, err.errnum, err_http_status(err.errnum), err.message);
		return -err.errnum;   /* nothing was changed: its own error, stored or not */
	}
	return stored_or_error(o, path, stored, result);
}

int node_write_error(struct orch *o, const char *path, int errnum, const char *message,
		     struct buf *result)
{
	return node_write_error_status(o, path, errnum, err_http_status(errnum), message, result);
}

int node_write_error_status(struct orch *o, const char *path, int errnum, int status,
			    const char *message, struct buf *result)
{
	struct orch_err err;
	err_set(&err, errnum, "%s", message);
	buf_reset(result);
	err_render_status(&err, path, status, result);
	orch_record_error(o, result->data, result->len);
	log_refusal(o, path, errnum, status, message);
	return -errnum;
}

struct list_ctx {
	struct orch *o;
	const struct node_def *def;
	void (*fn)(void *, const char *, const struct node *);
	void *arg;
};

static void list_ctx_name(void *arg, const char *name)
{
	struct list_ctx *c = arg;
	struct node child = {.def = c->def};
	snprintf(child.arg, sizeof child.arg, "%s", name);
	c->fn(c->arg, name, &child);
}

int node_list(struct orch *o, const struct node *dir,
	      void (*fn)(void *arg, const char *name, const struct node *child), void *arg)
{
	if (dir->def->type != NODE_DIR)
		return -ENOTDIR;
	/* The directory's own path, with its wildcard filled in. */
	char prefix[256];
	const char *star = strchr(dir->def->pattern, '*');
	if (star)
		snprintf(prefix, sizeof prefix, "%.*s%s%s", (int)(star - dir->def->pattern),
			 dir->def->pattern, dir->arg, star + 1);
	else
		snprintf(prefix, sizeof prefix, "%s", dir->def->pattern);
	size_t plen = strlen(dir->def->pattern);

	for (size_t i = 0; i < NODE_COUNT; i++) {
		const struct node_def *d = &node_table[i];
		const char *rest;
		if (plen == 0) {
			rest = d->pattern;
			if (!*rest)
				continue;
		} else {
			if (strncmp(d->pattern, dir->def->pattern, plen) || d->pattern[plen] != '/')
				continue;
			rest = d->pattern + plen + 1;
		}
		if (strchr(rest, '/'))
			continue;
		if (strcmp(rest, "*") == 0) {
			struct list_ctx c = {o, d, fn, arg};
			if (d->wild == W_CTX) {
				ctx_names(o->ctx, list_ctx_name, &c);
				continue;
			}
			/* Collect names under the lock, call back without it. */
			struct buf names = BUF_INIT;
			pthread_mutex_lock(&o->lock);
			if (d->wild == W_WORKER)
				for (size_t k = 0; k < o->nworkers; k++)
					buf_printf(&names, "%d%c", o->workers[k]->id, '\0');
			else if (d->wild == W_TRACK)
				for (struct track *k = o->tracks; k; k = k->next)
					buf_append(&names, k->id, strlen(k->id) + 1);
			else if (d->wild == W_TASK)
				for (struct task *t = o->tasks; t; t = t->next)
					buf_append(&names, t->id, strlen(t->id) + 1);
			pthread_mutex_unlock(&o->lock);
			for (size_t off = 0; off < names.len; off += strlen(names.data + off) + 1)
				list_ctx_name(&c, names.data + off);
			buf_free(&names);
			continue;
		}
		struct node child = {.def = d};
		snprintf(child.arg, sizeof child.arg, "%s", dir->arg);
		if (d->type == NODE_LINK) {
			char path[320];
			snprintf(path, sizeof path, "%s/%s", prefix, rest);
			struct node probe;
			if (node_resolve(o, path, &probe))
				continue;   /* a task with no worker yet has no link */
		}
		fn(arg, rest, &child);
	}
	return 0;
}

int node_readlink(struct orch *o, const struct node *n, struct buf *out)
{
	if (n->def->type != NODE_LINK)
		return -EINVAL;
	pthread_mutex_lock(&o->lock);
	struct task *t = task_find(o, n->arg);
	int rc = t && t->nworkers ? 0 : -ENOENT;
	if (!rc)
		buf_printf(out, "../../workers/%d", t->workers[t->nworkers - 1]);
	pthread_mutex_unlock(&o->lock);
	return rc;
}

int node_log_path(struct orch *o, const struct node *n, char **path)
{
	if (!(n->def->flags & NODE_LOG))
		return -EINVAL;
	pthread_mutex_lock(&o->lock);
	struct worker *w = arg_worker(o, n);
	if (w)
		*path = xstrdup(w->log_path);
	pthread_mutex_unlock(&o->lock);
	return w ? 0 : -ENOENT;
}
