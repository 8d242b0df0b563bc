/* dag: atomic DAG mutation batches with an undo log, and cycle paths. */
#include "dag.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pricing.h"
#include "render.h"
#include "scheduler.h"
#include "store.h"

enum undo_kind {
	U_ADD_TASK, U_REMOVE_TASK, U_ADD_DEP, U_REMOVE_DEP, U_STATUS, U_ADD_TRACK, U_REMOVE_TRACK,
};

struct undo {
	enum undo_kind kind;
	struct task *task;
	struct task *other;        /* dep for *_DEP; predecessor in the list for U_REMOVE_TASK */
	size_t index;              /* dep position for U_REMOVE_DEP */
	enum task_status old_status;
	struct track *track;
	struct track *prev_track;  /* U_REMOVE_TRACK: where it was in the list */
	struct archived_track *archived;   /* U_REMOVE_TRACK by archive: its record */
};

struct batch {
	struct orch *o;
	struct undo *log;
	size_t n, cap;
	struct {
		enum event_kind kind;
		cJSON *data;
	} *events;                 /* published on commit */
	size_t nevents;
	/* workers killed on commit, by id: the batch may free their tasks */
	int *cancel;
	size_t ncancel;
};

static void undo_push(struct batch *b, struct undo u)
{
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 16;
		b->log = xrealloc(b->log, b->cap * sizeof *b->log);
	}
	b->log[b->n++] = u;
}

static void batch_event(struct batch *b, enum event_kind kind, cJSON *data)
{
	b->events = xrealloc(b->events, (b->nevents + 1) * sizeof *b->events);
	b->events[b->nevents].kind = kind;
	b->events[b->nevents++].data = data;
}

static cJSON *event_data(const char *task, const char *dep)
{
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "task", task);
	if (dep)
		cJSON_AddStringToObject(d, "dep", dep);
	return d;
}

/* Finds a path of deps from `from` to `to` (DFS, iterative so a long chain
 * cannot overflow the stack). On success path holds from..to. */
static bool dag_find_path(struct orch *o, struct task *from, struct task *to,
			  struct task ***path, size_t *plen)
{
	unsigned gen = ++o->visit_gen;
	size_t cap = 64, depth = 0;
	struct task **stack = xmalloc(cap * sizeof *stack);
	size_t *next = xmalloc(cap * sizeof *next);
	stack[0] = from;
	next[0] = 0;
	from->visit = gen;
	depth = 1;
	while (depth) {
		struct task *t = stack[depth - 1];
		if (t == to) {
			free(next);
			*path = stack;
			*plen = depth;
			return true;
		}
		if (next[depth - 1] == t->ndeps) {
			depth--;
			continue;
		}
		struct task *d = t->deps[next[depth - 1]++];
		if (d->visit == gen)
			continue;
		d->visit = gen;
		if (depth == cap) {
			cap *= 2;
			stack = xrealloc(stack, cap * sizeof *stack);
			next = xrealloc(next, cap * sizeof *next);
		}
		stack[depth] = d;
		next[depth] = 0;
		depth++;
	}
	free(stack);
	free(next);
	return false;
}

static int op_add_dep(struct batch *b, struct task *t, struct task *d, struct orch_err *err)
{
	for (size_t i = 0; i < t->ndeps; i++)
		if (t->deps[i] == d)
			return 0;   /* already there: writing the same edge twice is harmless */
	/* The message draws edges as dag.dot does, dep -> task: the new edge
	 * first, then the way back along what depends on what. */
	if (t == d)
		return err_set(err, ELOOP, "%s cannot depend on itself: %s -> %s makes a cycle", t->id,
			       t->id, t->id);
	/* A cycle needs a way back from d to t through deps, so through one of
	 * t's dependents: a task nothing depends on yet (each new task of a
	 * plan) needs no search, and a plan's chain is linear, not quadratic. */
	struct task **path;
	size_t n;
	if (t->nrdeps && dag_find_path(b->o, d, t, &path, &n)) {
		/* path: d, its dep, ..., t (each a dep of the one before) */
		struct buf msg = BUF_INIT;
		buf_printf(&msg, "%s depending on %s makes a cycle (as dag.dot draws it): %s -> %s",
			   t->id, d->id, d->id, t->id);
		for (size_t i = n - 1; i-- > 0;)
			buf_printf(&msg, " -> %s", path[i]->id);
		err_set(err, ELOOP, "%s", msg.data);
		buf_free(&msg);
		free(path);
		return -ELOOP;
	}
	task_dep_add(b->o, t, d);
	undo_push(b, (struct undo){.kind = U_ADD_DEP, .task = t, .other = d});
	batch_event(b, EVK_DEP_ADDED, event_data(t->id, d->id));
	return 0;
}

static int op_add_task(struct batch *b, const struct task_spec *s, const char *track_id,
		       struct orch_err *err)
{
	struct orch *o = b->o;
	struct track *k = track_find(o, track_id);
	if (!track_id[0])
		return err_set(err, EINVAL, "add_task %s: \"track\" is required", s->id);
	if (!k)
		return err_set(err, ENOENT, "add_task %s: no track \"%s\"%s", s->id, track_id,
			       archive_find(o, track_id) ? " (it is archived)" : "");
	if (task_find(o, s->id))
		return err_set(err, EEXIST, "task \"%s\" already exists", s->id);
	for (size_t i = 0; i < s->ndeps; i++)
		if (strcmp(s->deps[i], s->id) && !task_find(o, s->deps[i]))
			return err_set(err, ENOENT, "task %s: no task \"%s\" to depend on", s->id,
				       s->deps[i]);

	struct task *t = xcalloc(1, sizeof *t);
	strcpy(t->id, s->id);
	t->track = k;
	t->title = s->title && strcmp(s->title, s->id) ? xstrdup(s->title) : NULL;
	t->command = xstrdup(s->command);
	t->cwd = s->cwd ? xstrdup(s->cwd) : NULL;
	t->model = s->model ? xstrdup(s->model) : NULL;
	t->env = strv_dup(s->env, s->nenv);
	t->nenv = s->nenv;
	t->retries = t->retries_initial = s->retries;
	t->timeout_s = s->timeout_s;
	t->priority = s->priority;
	t->runner = s->runner;
	t->slurm = strv_dup(s->slurm, s->nslurm);
	t->nslurm = s->nslurm;
	t->order = o->next_order++;
	t->status = TASK_BLOCKED;
	t->created_ms = time_now_ms();
	task_link(o, t);
	undo_push(b, (struct undo){.kind = U_ADD_TASK, .task = t});
	cJSON *d = event_data(t->id, NULL);
	cJSON_AddStringToObject(d, "track", k->id);
	batch_event(b, EVK_TASK_ADDED, d);
	for (size_t i = 0; i < s->ndeps; i++) {
		int rc = op_add_dep(b, t, task_find(o, s->deps[i]), err);
		if (rc)
			return rc;
	}
	return 0;
}

/* The task's newest worker while it still runs, whatever the task's status
 * says (a cancelled task is killed at once, its worker only stopping): a
 * task must outlive its worker, which ends into it. NULL: none runs. */
static struct worker *task_live_worker(struct orch *o, const struct task *t)
{
	struct worker *w = t->nworkers ? worker_find(o, t->workers[t->nworkers - 1]) : NULL;
	return w && w->status == WORKER_RUNNING ? w : NULL;
}

/* EBUSY while t runs or its worker is still stopping; what names the
 * refused change ("task t1", "cannot archive track k: its task t1"). */
static int refuse_live(struct orch *o, const struct task *t, const char *what,
		       struct orch_err *err)
{
	struct worker *w = task_live_worker(o, t);
	if (t->status == TASK_RUNNING)
		return err_set(err, EBUSY, "%s is running (worker %d); cancel it first", what,
			       w ? w->id : t->nworkers ? t->workers[t->nworkers - 1] : 0);
	if (w)
		return err_set(err, EBUSY, "%s is %s but its worker %d is still stopping; "
			       "try again once it has ended", what, task_status_name(t->status), w->id);
	return 0;
}

static int op_remove_task(struct batch *b, struct task *t, struct orch_err *err)
{
	struct orch *o = b->o;
	char what[ID_MAX + 16];
	snprintf(what, sizeof what, "task %s", t->id);
	int rc = refuse_live(o, t, what, err);
	if (rc)
		return rc;
	if (t->nrdeps) {
		/* the oldest first, as they were added */
		struct task *first[4];
		size_t n = 0;
		for (struct task *x = o->tasks; x && n < 4 && n < t->nrdeps; x = x->next)
			for (size_t i = 0; i < t->nrdeps; i++)
				if (t->rdeps[i] == x) {
					first[n++] = x;
					break;
				}
		struct buf msg = BUF_INIT;
		for (size_t i = 0; i < n; i++)
			buf_printf(&msg, "%s%s", i ? ", " : "", first[i]->id);
		err_set(err, EBUSY, "task %s is a dep of %s%s; remove those edges first", t->id,
			msg.data, t->nrdeps > 4 ? ", ..." : "");
		buf_free(&msg);
		return -EBUSY;
	}
	task_unlink(o, t);
	undo_push(b, (struct undo){.kind = U_REMOVE_TASK, .task = t});
	cJSON *d = event_data(t->id, NULL);
	cJSON_AddStringToObject(d, "track", t->track->id);   /* its track's counts change */
	batch_event(b, EVK_TASK_REMOVED, d);
	return 0;
}

/* remove_track and archive: the track and its tasks leave the live tree
 * together, or nothing does. Refused while one of its tasks runs (its
 * worker would end into nothing) or a task of another track depends on one
 * of its (that edge would dangle). Its workers' records stay. */
static int op_remove_track(struct batch *b, const char *id, bool archive, struct orch_err *err)
{
	struct orch *o = b->o;
	const char *verb = archive ? "archive" : "remove";
	struct track *k = track_find(o, id);
	if (!k)
		return archive_find(o, id)
			       ? err_set(err, ENOENT, "track \"%s\" is archived already", id)
			       : err_set(err, ENOENT, "no track \"%s\"", id);
	for (struct task *t = k->first; t; t = t->tnext) {
		char what[2 * ID_MAX + 48];
		snprintf(what, sizeof what, "cannot %s track %s: its task %s", verb, k->id, t->id);
		int rc = refuse_live(o, t, what, err);
		if (rc)
			return rc;
		for (size_t i = 0; i < t->nrdeps; i++)
			if (t->rdeps[i]->track != k)
				return err_set(err, EBUSY,
					       "cannot %s track %s: task %s of track %s depends on its "
					       "task %s; remove that edge first", verb, k->id,
					       t->rdeps[i]->id, t->rdeps[i]->track->id, t->id);
	}
	struct archived_track *a = NULL;
	if (archive) {
		/* what is kept of it is taken now, as the batch has made it so far */
		a = xcalloc(1, sizeof *a);
		strcpy(a->id, k->id);
		a->title = xstrdup(k->title);
		a->created_ms = k->created_ms;
		a->archived_ms = time_now_ms();
		a->budget_micro = k->budget_micro;
		a->cost_micro = usage_set_cost(&k->usage, o->prices, o->nprices);
		/* k->status is settled only after the batch: a `skip` before
		 * the archive in it may have finished k */
		a->status = sched_track_status(o, k);
		memcpy(a->counts, k->counts, sizeof a->counts);
		a->ntasks = k->ntasks;
		a->doc = store_archived_doc(k, a);
	}
	size_t n = 0;
	/* Its tasks go in creation order; a dependent within the track may go
	 * after its dep: unlinking forgets only a task's own edges, and the
	 * undo log puts each back in reverse. */
	for (struct task *t = k->first, *next; t; t = next, n++) {
		next = t->tnext;
		task_unlink(o, t);
		undo_push(b, (struct undo){.kind = U_REMOVE_TASK, .task = t});
		cJSON *d = event_data(t->id, NULL);
		cJSON_AddStringToObject(d, "track", k->id);
		batch_event(b, EVK_TASK_REMOVED, d);
	}
	struct track *prev = track_unlink(o, k);
	undo_push(b, (struct undo){.kind = U_REMOVE_TRACK, .track = k, .prev_track = prev,
				   .archived = a});
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "track", k->id);
	json_add_i64(d, "tasks", (int64_t)n);
	if (a)
		json_add_time(d, "archived_at", a->archived_ms);
	batch_event(b, archive ? EVK_TRACK_ARCHIVED : EVK_TRACK_REMOVED, d);
	return 0;
}

static int op_remove_dep(struct batch *b, struct task *t, struct task *d, struct orch_err *err)
{
	for (size_t i = 0; i < t->ndeps; i++) {
		if (t->deps[i] != d)
			continue;
		task_dep_remove(b->o, t, i);
		undo_push(b, (struct undo){.kind = U_REMOVE_DEP, .task = t, .other = d, .index = i});
		batch_event(b, EVK_DEP_REMOVED, event_data(t->id, d->id));
		return 0;
	}
	return err_set(err, ENOENT, "task %s does not depend on %s", t->id, d->id);
}

static void set_status(struct batch *b, struct task *t, enum task_status s)
{
	undo_push(b, (struct undo){.kind = U_STATUS, .task = t, .old_status = t->status});
	cJSON *d = event_data(t->id, NULL);
	cJSON_AddStringToObject(d, "track", t->track->id);
	cJSON_AddStringToObject(d, "from", task_status_name(t->status));
	cJSON_AddStringToObject(d, "to", task_status_name(s));
	batch_event(b, EVK_TASK_STATUS, d);
	task_set_status(b->o, t, s);
}

static int op_status(struct batch *b, const struct dag_op *op, struct task *t,
		     struct orch_err *err)
{
	enum task_status s = t->status;
	switch (op->kind) {
	case DAG_RETRY:
		if (s != TASK_FAILED && s != TASK_KILLED)
			return err_set(err, EBUSY, "task %s is %s; only failed or killed tasks can be retried",
				       t->id, task_status_name(s));
		set_status(b, t, TASK_BLOCKED);
		return 0;
	case DAG_SKIP:
		if (s == TASK_RUNNING || s == TASK_DONE)
			return err_set(err, EBUSY, "task %s is %s and cannot be skipped%s", t->id,
				       task_status_name(s), s == TASK_RUNNING ? "; cancel it first" : "");
		if (s != TASK_SKIPPED)
			set_status(b, t, TASK_SKIPPED);
		return 0;
	case DAG_HOLD:
		if (s == TASK_HELD)
			return 0;
		if (s != TASK_BLOCKED && s != TASK_READY)
			return err_set(err, EBUSY, "task %s is %s; only blocked or ready tasks can be held",
				       t->id, task_status_name(s));
		set_status(b, t, TASK_HELD);
		return 0;
	case DAG_RELEASE:
		if (s != TASK_HELD)
			return err_set(err, EBUSY, "task %s is %s, not held", t->id, task_status_name(s));
		set_status(b, t, TASK_BLOCKED);
		return 0;
	case DAG_CANCEL:
		if (s != TASK_BLOCKED && s != TASK_READY && s != TASK_HELD && s != TASK_RUNNING)
			return err_set(err, EBUSY, "task %s is %s; there is nothing to cancel", t->id,
				       task_status_name(s));
		if (s == TASK_RUNNING && t->nworkers) {
			b->cancel = xrealloc(b->cancel, (b->ncancel + 1) * sizeof *b->cancel);
			b->cancel[b->ncancel++] = t->workers[t->nworkers - 1];
		}
		set_status(b, t, TASK_KILLED);
		return 0;
	default:
		return err_set(err, EINVAL, "unknown operation");
	}
}

static int op_apply(struct batch *b, const struct dag_op *op, struct orch_err *err)
{
	struct orch *o = b->o;
	if (op->kind == DAG_ADD_TASK)
		return op_add_task(b, &op->spec, op->track, err);
	if (op->kind == DAG_REMOVE_TRACK || op->kind == DAG_ARCHIVE)
		return op_remove_track(b, op->track, op->kind == DAG_ARCHIVE, err);
	struct task *t = task_find(o, op->task);
	if (!t)
		return err_set(err, ENOENT, "no task \"%s\"", op->task);
	struct task *d = NULL;
	if (op->kind == DAG_ADD_DEP || op->kind == DAG_REMOVE_DEP) {
		d = task_find(o, op->dep);
		if (!d)
			return err_set(err, ENOENT, "no task \"%s\"", op->dep);
	}
	switch (op->kind) {
	case DAG_REMOVE_TASK:
		return op_remove_task(b, t, err);
	case DAG_ADD_DEP:
		return op_add_dep(b, t, d, err);
	case DAG_REMOVE_DEP:
		return op_remove_dep(b, t, d, err);
	default:
		return op_status(b, op, t, err);
	}
}

/* Undoes the batch; what it marked for sched_recompute is settled again, which
 * changes nothing but leaves no marks behind. */
static void batch_rollback(struct batch *b)
{
	struct orch *o = b->o;
	for (size_t i = b->n; i-- > 0;) {
		struct undo *u = &b->log[i];
		struct task *t = u->task;
		switch (u->kind) {
		case U_ADD_TASK:
			task_unlink(o, t);
			task_free(t);
			break;
		case U_REMOVE_TASK:
			task_relink(o, t);
			break;
		case U_ADD_DEP:
			task_dep_remove(o, t, t->ndeps - 1);  /* undone in reverse: the last one */
			break;
		case U_REMOVE_DEP:
			task_dep_insert(o, t, u->index, u->other);
			break;
		case U_STATUS:
			task_set_status(o, t, u->old_status);
			break;
		case U_ADD_TRACK:
			track_drop(o, u->track);
			break;
		case U_REMOVE_TRACK:
			track_relink(o, u->track, u->prev_track);
			archived_free(u->archived);
			break;
		}
	}
	sched_recompute(o);
}

static void batch_commit(struct batch *b)
{
	struct orch *o = b->o;
	for (size_t i = 0; i < b->n; i++)
		if (b->log[i].kind == U_REMOVE_TASK)
			task_free(b->log[i].task);
	for (size_t i = 0; i < b->n; i++)
		if (b->log[i].kind == U_REMOVE_TRACK) {
			if (b->log[i].archived)
				archive_add(o, b->log[i].archived);
			track_free(b->log[i].track);
		}
	for (size_t i = 0; i < b->nevents; i++) {
		orch_event(o, NULL, b->events[i].kind, b->events[i].data);
		b->events[i].data = NULL;
	}
	for (size_t i = 0; i < b->ncancel; i++) {
		struct worker *w = worker_find(o, b->cancel[i]);
		if (w && w->status == WORKER_RUNNING)
			sched_kill(o, w, SIGTERM, -1, NULL);
	}
	sched_recompute(o);
}

static void batch_free(struct batch *b)
{
	free(b->log);
	free(b->cancel);
	for (size_t i = 0; i < b->nevents; i++)
		cJSON_Delete(b->events[i].data);
	free(b->events);
}

int dag_mutate(struct orch *o, const struct cmd_mutate *m, struct buf *result,
	       struct orch_err *err)
{
	struct batch b = {.o = o};
	sched_wait_started(o);
	for (size_t i = 0; i < m->nops; i++) {
		int rc = op_apply(&b, &m->ops[i], err);
		if (rc) {
			if (m->nops > 1) {
				struct buf msg = BUF_INIT;
				buf_printf(&msg, "operation %zu of %zu: %s; nothing was changed", i + 1,
					   m->nops, err->message);
				err_set(err, err->errnum, "%s", msg.data);
				buf_free(&msg);
			}
			batch_rollback(&b);
			batch_free(&b);
			return rc;
		}
	}
	batch_commit(&b);
	batch_free(&b);
	cJSON *r = cJSON_CreateObject();
	json_add_i64(r, "applied", (int64_t)m->nops);
	json_add_i64(r, "seq", (int64_t)events_seq(&o->events));
	json_emit(r, result);
	return 0;
}

int dag_create_track(struct orch *o, const struct cmd_plan *p, struct buf *result,
		     struct orch_err *err)
{
	if (track_find(o, p->id))
		return err_set(err, EEXIST, "track \"%s\" already exists", p->id);
	if (archive_find(o, p->id))
		return err_set(err, EEXIST, "track \"%s\" is archived (mma/archive.json): its id stays taken",
			       p->id);
	struct batch b = {.o = o};
	struct track *k = track_new(o, p->id, p->title, p->budget_micro);
	undo_push(&b, (struct undo){.kind = U_ADD_TRACK, .track = k});
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "track", k->id);
	cJSON_AddStringToObject(d, "title", k->title);
	json_add_i64(d, "tasks", (int64_t)p->ntasks);
	batch_event(&b, EVK_TRACK_CREATED, d);

	/* Nodes first, edges second: a plan may list a task before its deps. */
	int rc = 0;
	for (size_t i = 0; i < p->ntasks && !rc; i++) {
		struct task_spec node = p->tasks[i];
		node.ndeps = 0;
		rc = op_add_task(&b, &node, k->id, err);
	}
	for (size_t i = 0; i < p->ntasks && !rc; i++) {
		const struct task_spec *s = &p->tasks[i];
		struct task *t = task_find(o, s->id);
		for (size_t j = 0; j < s->ndeps && !rc; j++) {
			struct task *dep = task_find(o, s->deps[j]);
			rc = dep ? op_add_dep(&b, t, dep, err)
				 : err_set(err, ENOENT, "task %s: no task \"%s\" to depend on", s->id,
					   s->deps[j]);
		}
	}
	if (rc) {
		batch_rollback(&b);
		batch_free(&b);
		return rc;
	}
	batch_commit(&b);
	batch_free(&b);
	render_track(o, k, true, result);
	buf_putc(result, '\n');
	return 0;
}
