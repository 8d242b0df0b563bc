/* test_dag: cycles and their paths, atomic batches, readiness and statuses. */
#include "fixture.h"
#include "fake.h"

#include <pthread.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "pricing.h"
#include "render.h"
#include "scheduler.h"

#define CHAIN "{\"id\":\"k\",\"tasks\":[" \
	"{\"id\":\"t1\",\"command\":\"true\"}," \
	"{\"id\":\"t2\",\"command\":\"true\",\"deps\":[\"t1\"]}," \
	"{\"id\":\"t3\",\"command\":\"true\",\"deps\":[\"t2\"]}]}"

static const char *status_of(struct orch *o, const char *id)
{
	struct task *t = task_find(o, id);
	return t ? task_status_name(t->status) : "absent";
}

/* The DAG as text, to prove a refused write changed nothing. */
static char *dag_text(struct orch *o)
{
	struct buf b = BUF_INIT;
	render_doc(o, RENDER_DAG, NULL, &b);
	return buf_steal(&b);
}

static void test_plan_readiness(void **state)
{
	struct fixture *f = *state;
	struct orch_err err = {0};
	assert_int_equal(fixture_plan(&f->o, CHAIN, &err), 0);
	assert_string_equal(status_of(&f->o, "t1"), "ready");
	assert_string_equal(status_of(&f->o, "t2"), "blocked");
	task_set_status(&f->o, task_find(&f->o, "t1"), TASK_DONE);
	sched_recompute(&f->o);
	assert_string_equal(status_of(&f->o, "t2"), "ready");
	assert_int_equal(fixture_mutate(&f->o, "skip t2\n", &err), 0);
	assert_string_equal(status_of(&f->o, "t3"), "ready");
}

static void test_plan_out_of_order_and_missing(void **state)
{
	struct fixture *f = *state;
	struct orch_err err = {0};
	/* a task may name a dep listed after it */
	assert_int_equal(fixture_plan(&f->o, "{\"id\":\"k\",\"tasks\":["
				     "{\"id\":\"b\",\"command\":\"x\",\"deps\":[\"a\"]},"
				     "{\"id\":\"a\",\"command\":\"x\"}]}", &err), 0);
	assert_string_equal(status_of(&f->o, "b"), "blocked");
	assert_int_equal(fixture_plan(&f->o, "{\"id\":\"k2\",\"tasks\":["
				     "{\"id\":\"c\",\"command\":\"x\",\"deps\":[\"nope\"]}]}", &err), ENOENT);
	assert_null(track_find(&f->o, "k2"));
	assert_null(task_find(&f->o, "c"));
	assert_int_equal(fixture_plan(&f->o, "{\"id\":\"k\",\"tasks\":[]}", &err), EEXIST);
	/* a task id already used by another track */
	assert_int_equal(fixture_plan(&f->o, "{\"id\":\"k3\",\"tasks\":[{\"id\":\"a\",\"command\":\"x\"}]}",
				      &err), EEXIST);
	assert_null(track_find(&f->o, "k3"));
}

static void test_cycle_path(void **state)
{
	struct fixture *f = *state;
	struct orch_err err = {0};
	assert_int_equal(fixture_plan(&f->o, CHAIN, &err), 0);
	char *before = dag_text(&f->o);
	assert_int_equal(fixture_mutate(&f->o, "add_dep t1 t3", &err), ELOOP);
	/* t2 depends on t1 and t3 on t2: dag.dot has t1 -> t2 -> t3, and the
	 * new edge t3 -> t1 closes the cycle */
	assert_string_equal(err.message, "t1 depending on t3 makes a cycle (as dag.dot draws it): "
					 "t3 -> t1 -> t2 -> t3");
	assert_int_equal(fixture_mutate(&f->o, "add_dep t2 t2", &err), ELOOP);
	assert_non_null(strstr(err.message, "t2"));   /* the parser refuses a self-edge */
	char *after = dag_text(&f->o);
	assert_string_equal(before, after);
	free(before);
	free(after);
}

static void test_plan_cycle_refused_whole(void **state)
{
	struct fixture *f = *state;
	struct orch_err err = {0};
	assert_int_equal(fixture_plan(&f->o, "{\"id\":\"k\",\"tasks\":["
				     "{\"id\":\"a\",\"command\":\"x\",\"deps\":[\"c\"]},"
				     "{\"id\":\"b\",\"command\":\"x\",\"deps\":[\"a\"]},"
				     "{\"id\":\"c\",\"command\":\"x\",\"deps\":[\"b\"]}]}", &err), ELOOP);
	assert_non_null(strstr(err.message, "makes a cycle"));
	assert_null(track_find(&f->o, "k"));
	assert_int_equal(f->o.ntasks, 0);
	assert_null(f->o.tasks);
}

static void test_atomic_batch(void **state)
{
	struct fixture *f = *state;
	struct orch_err err = {0};
	assert_int_equal(fixture_plan(&f->o, CHAIN, &err), 0);
	char *before = dag_text(&f->o);
	/* ops 1-3 are fine alone; op 4 fails: all are undone, in reverse */
	assert_int_equal(fixture_mutate(&f->o, "remove_dep t3 t2\nremove_task t3\nhold t2\n"
				       "add_dep t1 nope\n", &err), ENOENT);
	assert_non_null(strstr(err.message, "operation 4 of 4"));
	char *after = dag_text(&f->o);
	assert_string_equal(before, after);
	assert_string_equal(status_of(&f->o, "t2"), "blocked");
	free(before);
	free(after);
	/* the same with a JSON batch that adds a task then fails */
	const char *json = "[{\"op\":\"add_task\",\"track\":\"k\",\"task\":{\"id\":\"t4\",\"command\":\"x\","
			   "\"deps\":[\"t3\"]}},{\"op\":\"add_dep\",\"task\":\"t1\",\"dep\":\"t4\"}]";
	assert_int_equal(fixture_mutate(&f->o, json, &err), ELOOP);
	assert_null(task_find(&f->o, "t4"));
	assert_int_equal(f->o.ntasks, 3);
}

static void test_remove_rules(void **state)
{
	struct fixture *f = *state;
	struct orch_err err = {0};
	assert_int_equal(fixture_plan(&f->o, CHAIN, &err), 0);
	assert_int_equal(fixture_mutate(&f->o, "remove_task t1", &err), EBUSY);
	assert_non_null(strstr(err.message, "t2"));
	task_set_status(&f->o, task_find(&f->o, "t3"), TASK_RUNNING);
	assert_int_equal(fixture_mutate(&f->o, "remove_task t3", &err), EBUSY);
	task_set_status(&f->o, task_find(&f->o, "t3"), TASK_BLOCKED);
	assert_int_equal(fixture_mutate(&f->o, "remove_task t3\nremove_dep t2 t1\nremove_task t1", &err), 0);
	assert_null(task_find(&f->o, "t1"));
	assert_string_equal(status_of(&f->o, "t2"), "ready");
	assert_int_equal(fixture_mutate(&f->o, "remove_dep t2 t1", &err), ENOENT);
	/* the list stays consistent: new tasks append after removals */
	assert_int_equal(fixture_mutate(&f->o, "{\"op\":\"add_task\",\"track\":\"k\",\"task\":"
				       "{\"id\":\"t9\",\"command\":\"x\"}}", &err), 0);
	assert_ptr_equal(f->o.tasks->next, task_find(&f->o, "t9"));
}

/* remove_track and archive: refused while a task of it runs or another
 * track depends on it, atomic with the rest of a batch, and an archived id
 * stays taken. */
static void test_remove_and_archive_track(void **state)
{
	struct fixture *f = *state;
	struct orch *o = &f->o;
	struct orch_err err = {0};
	assert_int_equal(fixture_plan(o, CHAIN, &err), 0);
	assert_int_equal(fixture_plan(o, "{\"id\":\"j\",\"title\":\"J\",\"budget_usd\":1,\"tasks\":["
				     "{\"id\":\"u1\",\"command\":\"x\"},"
				     "{\"id\":\"u2\",\"command\":\"x\",\"deps\":[\"u1\",\"t1\"]}]}", &err), 0);
	assert_int_equal(fixture_plan(o, "{\"id\":\"z\",\"tasks\":[{\"id\":\"z1\",\"command\":\"x\"}]}",
				     &err), 0);
	assert_int_equal(fixture_mutate(o, "remove_track nope", &err), ENOENT);
	/* u2 (track j) depends on t1 (track k) */
	assert_int_equal(fixture_mutate(o, "archive k", &err), EBUSY);
	assert_string_equal(err.message, "cannot archive track k: task u2 of track j depends on its "
					 "task t1; remove that edge first");
	task_set_status(o, task_find(o, "u1"), TASK_RUNNING);
	assert_int_equal(fixture_mutate(o, "remove_track j", &err), EBUSY);
	assert_non_null(strstr(err.message, "its task u1 is running"));
	task_set_status(o, task_find(o, "u1"), TASK_DONE);
	sched_recompute(o);
	char *before = dag_text(o);
	/* a batch that fails late undoes a removal and an archive */
	assert_int_equal(fixture_mutate(o, "hold z1; remove_track j; archive z; hold nope", &err), ENOENT);
	char *after = dag_text(o);
	assert_string_equal(after, before);
	free(after);
	assert_non_null(track_find(o, "j"));
	assert_non_null(track_find(o, "z"));
	assert_string_equal(status_of(o, "u2"), "blocked");
	assert_string_equal(status_of(o, "z1"), "ready");
	assert_int_equal(o->narchive, 0);
	assert_int_equal(o->ntracks, 3);
	assert_int_equal(o->ntasks, 6);
	assert_int_equal(task_find(o, "t1")->nrdeps, 2);
	assert_ptr_equal(task_find(o, "t1")->rdeps[1], task_find(o, "u2"));

	/* j goes, with the edge into k; its id may come back */
	assert_int_equal(fixture_mutate(o, "remove_track j", &err), 0);
	assert_null(track_find(o, "j"));
	assert_null(task_find(o, "u1"));
	assert_null(task_find(o, "u2"));
	assert_int_equal(task_find(o, "t1")->nrdeps, 1);   /* t2 alone */
	assert_int_equal(o->ntracks, 2);
	assert_int_equal(o->ntasks, 4);
	assert_int_equal(o->counts[TASK_DONE], 0);
	/* k's own chain goes whole; z is archived in the same batch */
	assert_int_equal(fixture_mutate(o, "skip t3; archive k; {\"op\":\"archive\",\"track\":\"z\"}",
				       &err), EINVAL);   /* a line is not JSON */
	assert_int_equal(fixture_mutate(o, "[{\"op\":\"skip\",\"task\":\"t3\"},"
				       "{\"op\":\"archive\",\"track\":\"k\"},"
				       "{\"op\":\"archive\",\"track\":\"z\"}]", &err), 0);
	assert_null(track_find(o, "k"));
	assert_null(task_find(o, "t1"));
	assert_int_equal(o->ntracks, 0);
	assert_int_equal(o->ntasks, 0);
	assert_null(o->tracks);
	assert_int_equal(o->nready, 0);
	assert_int_equal(o->narchive, 2);
	struct archived_track *a = archive_find(o, "k");
	assert_non_null(a);
	assert_int_equal(a->ntasks, 3);
	assert_int_equal(a->counts[TASK_SKIPPED], 1);   /* as the batch had made it */
	assert_int_equal(a->counts[TASK_READY], 1);
	assert_non_null(a->doc);
	assert_non_null(strstr(a->doc, "\"archived\":"));
	assert_non_null(strstr(a->doc, "\"id\":\"t3\""));
	struct buf doc = BUF_INIT;
	render_archive(o, &doc);
	cJSON *arch = cJSON_Parse(doc.data);
	assert_non_null(arch);
	cJSON *k0 = cJSON_GetArrayItem(cJSON_GetObjectItem(arch, "tracks"), 0);
	assert_string_equal(cJSON_GetObjectItem(k0, "id")->valuestring, "k");
	assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(k0, "tasks_by_status"), "blocked")->valueint, 1);
	assert_int_equal(cJSON_GetObjectItem(k0, "task_count")->valueint, 3);
	assert_non_null(cJSON_GetObjectItem(k0, "archived_at"));
	cJSON_Delete(arch);
	buf_free(&doc);
	/* an archived id stays taken; a removed one comes back */
	assert_int_equal(fixture_plan(o, "{\"id\":\"k\",\"tasks\":[]}", &err), EEXIST);
	assert_non_null(strstr(err.message, "archived"));
	assert_int_equal(fixture_mutate(o, "archive k", &err), ENOENT);
	assert_int_equal(fixture_plan(o, "{\"id\":\"j\",\"tasks\":[{\"id\":\"t1\",\"command\":\"x\"}]}",
				     &err), 0);
	assert_string_equal(status_of(o, "t1"), "ready");
	free(before);
}

/* A cancelled task's worker is still stopping until the scheduler reaps it:
 * removing the task (alone or with its track) before then would free what
 * the worker ends into, and in one batch with the cancel what the commit
 * reads to kill it. Refused, nothing changed. */
static void test_remove_while_worker_stops(void **state)
{
	struct fixture *f = *state;
	struct orch *o = &f->o;
	struct orch_err err = {0};
	assert_int_equal(fixture_plan(o, CHAIN, &err), 0);
	assert_int_equal(fixture_plan(o, "{\"id\":\"z\",\"tasks\":[{\"id\":\"z1\",\"command\":\"x\"}]}",
				     &err), 0);
	struct worker *w = fake_worker(o, "z1");
	w->status = WORKER_RUNNING;
	w->starting = true;   /* no process: a signal is only noted */
	task_set_status(o, task_find(o, "z1"), TASK_RUNNING);
	sched_recompute(o);
	char *before = dag_text(o);
	const char *batches[] = {"cancel z1; remove_track z", "cancel z1; remove_task z1",
				 "cancel z1; archive z"};
	for (size_t i = 0; i < sizeof batches / sizeof *batches; i++) {
		assert_int_equal(fixture_mutate(o, batches[i], &err), EBUSY);
		assert_non_null(strstr(err.message, "worker 1 is still stopping"));
		assert_non_null(strstr(err.message, "nothing was changed"));
		char *after = dag_text(o);
		assert_string_equal(after, before);
		free(after);
		assert_int_equal(w->pending_signal, 0);
	}
	assert_int_equal(fixture_mutate(o, "cancel z1", &err), 0);
	assert_int_equal(w->pending_signal, SIGTERM);
	assert_string_equal(status_of(o, "z1"), "killed");
	assert_int_equal(fixture_mutate(o, "remove_task z1", &err), EBUSY);
	assert_string_equal(err.message, "task z1 is killed but its worker 1 is still stopping; "
					 "try again once it has ended");
	assert_int_equal(fixture_mutate(o, "archive z", &err), EBUSY);
	assert_int_equal(o->narchive, 0);
	w->status = WORKER_KILLED;   /* reaped */
	assert_int_equal(fixture_mutate(o, "remove_track z", &err), 0);
	assert_null(track_find(o, "z"));
	free(before);
}

/* The status archived is the one the batch made, though the track's own
 * status settles only after it. */
static void test_archive_status(void **state)
{
	struct fixture *f = *state;
	struct orch *o = &f->o;
	struct orch_err err = {0};
	assert_int_equal(fixture_plan(o, CHAIN, &err), 0);
	assert_int_equal(fixture_plan(o, "{\"id\":\"z\",\"tasks\":[{\"id\":\"z1\",\"command\":\"x\"},"
				     "{\"id\":\"z2\",\"command\":\"x\",\"deps\":[\"z1\"]}]}", &err), 0);
	assert_int_equal(track_find(o, "k")->status, TRACK_ACTIVE);
	assert_int_equal(fixture_mutate(o, "skip t1; skip t2; skip t3; archive k", &err), 0);
	assert_int_equal(archive_find(o, "k")->status, TRACK_DONE);
	/* z1 failed, z2 waits on it and nothing else moves */
	task_set_status(o, task_find(o, "z1"), TASK_FAILED);
	sched_recompute(o);
	assert_int_equal(track_find(o, "z")->status, TRACK_FAILED);
	assert_int_equal(fixture_mutate(o, "retry z1; archive z", &err), 0);
	assert_int_equal(archive_find(o, "z")->status, TRACK_ACTIVE);
	struct buf doc = BUF_INIT;
	render_archive(o, &doc);
	assert_non_null(strstr(doc.data, "{\"id\":\"k\",\"title\":\"k\",\"status\":\"done\""));
	buf_free(&doc);
}

static void test_status_ops(void **state)
{
	struct fixture *f = *state;
	struct orch_err err = {0};
	assert_int_equal(fixture_plan(&f->o, CHAIN, &err), 0);
	assert_int_equal(fixture_mutate(&f->o, "retry t1", &err), EBUSY);
	assert_int_equal(fixture_mutate(&f->o, "release t1", &err), EBUSY);
	assert_int_equal(fixture_mutate(&f->o, "hold t1", &err), 0);
	assert_string_equal(status_of(&f->o, "t1"), "held");
	assert_int_equal(fixture_mutate(&f->o, "release t1", &err), 0);
	assert_string_equal(status_of(&f->o, "t1"), "ready");
	assert_int_equal(fixture_mutate(&f->o, "cancel t2", &err), 0);
	assert_string_equal(status_of(&f->o, "t2"), "killed");
	assert_int_equal(fixture_mutate(&f->o, "cancel t2", &err), EBUSY);
	assert_int_equal(fixture_mutate(&f->o, "retry t2", &err), 0);
	assert_string_equal(status_of(&f->o, "t2"), "blocked");
	assert_int_equal(fixture_mutate(&f->o, "hold nope", &err), ENOENT);
}

static void test_track_status(void **state)
{
	struct fixture *f = *state;
	struct orch_err err = {0};
	assert_int_equal(fixture_plan(&f->o, CHAIN, &err), 0);
	struct track *k = track_find(&f->o, "k");
	assert_int_equal(k->status, TRACK_ACTIVE);
	task_set_status(&f->o, task_find(&f->o, "t1"), TASK_FAILED);
	sched_recompute(&f->o);
	/* t2 and t3 wait on a failed task: nothing can run, the track failed */
	assert_int_equal(k->status, TRACK_FAILED);
	assert_int_equal(fixture_mutate(&f->o, "retry t1", &err), 0);
	assert_int_equal(k->status, TRACK_ACTIVE);
	assert_int_equal(fixture_mutate(&f->o, "skip t1\nskip t2\nskip t3", &err), 0);
	assert_int_equal(k->status, TRACK_DONE);
}

struct chain_job {
	struct orch *o;
	int rc_plan, rc_cycle, rc_reverse;
};

static void *chain_thread(void *arg)
{
	struct chain_job *j = arg;
	struct orch_err err = {0};
	struct buf plan = BUF_INIT;
	buf_puts(&plan, "{\"id\":\"k\",\"tasks\":[{\"id\":\"n0\",\"command\":\"x\"}");
	for (int i = 1; i < 20000; i++)
		buf_printf(&plan, ",{\"id\":\"n%d\",\"command\":\"x\",\"deps\":[\"n%d\"]}", i, i - 1);
	buf_puts(&plan, "]}");
	j->rc_plan = fixture_plan(j->o, plan.data, &err);
	buf_free(&plan);
	j->rc_cycle = fixture_mutate(j->o, "add_dep n0 n19999", &err);
	j->rc_reverse = fixture_mutate(j->o, "add_dep n19999 n0", &err);
	return NULL;
}

/* A chain 20,000 deep, on a thread of 256 KiB of stack: a walk that recursed
 * per level (a frame of even 16 bytes) would overflow it, so passing proves
 * the plan's checks, the cycle search and the recount are iterative. */
static void test_long_chain(void **state)
{
	struct fixture *f = *state;
	struct chain_job j = {.o = &f->o};
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	pthread_t t;
	assert_int_equal(pthread_create(&t, &attr, chain_thread, &j), 0);
	pthread_join(t, NULL);
	pthread_attr_destroy(&attr);
	assert_int_equal(j.rc_plan, 0);
	assert_int_equal(j.rc_cycle, ELOOP);
	assert_int_equal(j.rc_reverse, 0);
}

/* --- the incremental model against a recount from scratch --- */

static bool naive_viable(const struct task *t)
{
	if (t->status == TASK_FAILED || t->status == TASK_KILLED)
		return false;
	if (t->status != TASK_BLOCKED && t->status != TASK_HELD)
		return true;
	for (size_t i = 0; i < t->ndeps; i++)
		if (!naive_viable(t->deps[i]))
			return false;
	return true;
}

static enum track_status naive_track_status(struct orch *o, const struct track *k)
{
	bool all_done = true, any_failed = false, can_progress = false;
	if (k->budget_micro >= 0 && usage_set_cost(&k->usage, o->prices, o->nprices) > k->budget_micro)
		return TRACK_OVER_BUDGET;
	for (struct task *t = o->tasks; t; t = t->next) {
		if (t->track != k)
			continue;
		bool finished = t->status == TASK_DONE || t->status == TASK_SKIPPED;
		all_done &= finished;
		any_failed |= t->status == TASK_FAILED;
		can_progress |= !finished && naive_viable(t);
	}
	return all_done ? TRACK_DONE : any_failed && !can_progress ? TRACK_FAILED : TRACK_ACTIVE;
}

static void check_model(struct orch *o)
{
	size_t counts[TASK_HELD + 1] = {0}, n = 0, nready = 0;
	for (struct task *t = o->tasks; t; t = t->next) {
		counts[t->status]++;
		n++;
		assert_ptr_equal(task_find(o, t->id), t);
		assert_true(t->next == NULL ? o->tasks_last == t : t->next->prev == t);
		if (t->status == TASK_READY) {
			nready++;
			assert_true(t->heap_pos >= 1 && t->heap_pos <= o->nready);
			assert_ptr_equal(o->ready[t->heap_pos - 1], t);
		} else {
			assert_int_equal(t->heap_pos, 0);
		}
		if (t->status == TASK_READY || t->status == TASK_BLOCKED) {
			bool ready = true;
			for (size_t i = 0; i < t->ndeps; i++)
				ready &= task_dep_satisfied(t->deps[i]);
			assert_int_equal(t->status, ready ? TASK_READY : TASK_BLOCKED);
		}
		/* every edge once each way */
		for (size_t i = 0; i < t->ndeps; i++) {
			size_t back = 0;
			for (size_t j = 0; j < t->deps[i]->nrdeps; j++)
				back += t->deps[i]->rdeps[j] == t;
			assert_int_equal(back, 1);
		}
		for (size_t j = 0; j < t->nrdeps; j++) {
			size_t fwd = 0;
			for (size_t i = 0; i < t->rdeps[j]->ndeps; i++)
				fwd += t->rdeps[j]->deps[i] == t;
			assert_int_equal(fwd, 1);
		}
	}
	assert_int_equal(n, o->ntasks);
	assert_int_equal(nready, o->nready);
	assert_memory_equal(counts, o->counts, sizeof counts);
	for (size_t i = 1; i < o->nready; i++) {
		const struct task *a = o->ready[(i - 1) / 2], *b = o->ready[i];
		assert_true(a->priority > b->priority ||
			    (a->priority == b->priority && a->order < b->order));
	}
	for (struct track *k = o->tracks; k; k = k->next) {
		size_t kc[TASK_HELD + 1] = {0}, kn = 0;
		struct task *expect = o->tasks;
		for (struct task *t = k->first; t; t = t->tnext) {
			while (expect && expect->track != k)
				expect = expect->next;
			assert_ptr_equal(t, expect);
			expect = expect ? expect->next : NULL;
			kc[t->status]++;
			kn++;
		}
		while (expect && expect->track != k)
			expect = expect->next;
		assert_null(expect);
		assert_int_equal(kn, k->ntasks);
		assert_memory_equal(kc, k->counts, sizeof kc);
		assert_int_equal(k->status, naive_track_status(o, k));
	}
	assert_int_equal(o->ndirty_tasks, 0);
	assert_int_equal(o->ndirty_tracks, 0);
}

static void test_incremental_model(void **state)
{
	struct fixture *f = *state;
	struct orch *o = &f->o;
	struct orch_err err = {0};
	unsigned seed = 12345;
	for (int k = 0; k < 3; k++) {
		struct buf plan = BUF_INIT;
		buf_printf(&plan, "{\"id\":\"k%d\",\"tasks\":[", k);
		for (int i = 0; i < 30; i++) {
			buf_printf(&plan, "%s{\"id\":\"k%dt%d\",\"command\":\"x\",\"priority\":%d,\"deps\":[",
				   i ? "," : "", k, i, (int)(rand_r(&seed) % 3));
			for (int d = 0, nd = 0; d < i && nd < 3; d++)
				if (rand_r(&seed) % 8 == 0)
					buf_printf(&plan, "%s\"k%dt%d\"", nd++ ? "," : "", k, d);
			buf_puts(&plan, "]}");
		}
		buf_puts(&plan, "]}");
		assert_int_equal(fixture_plan(o, plan.data, &err), 0);
		buf_free(&plan);
		check_model(o);
	}
	static const char *const ops[] = {"add_dep", "remove_dep", "hold", "release", "skip",
					  "retry", "cancel", "remove_task"};
	for (int round = 0; round < 3000; round++) {
		char a[16], b[16], line[96];
		snprintf(a, sizeof a, "k%ut%u", rand_r(&seed) % 3, rand_r(&seed) % 30);
		snprintf(b, sizeof b, "k%ut%u", rand_r(&seed) % 3, rand_r(&seed) % 30);
		unsigned what = rand_r(&seed) % 12;
		struct task *t = task_find(o, a);
		if (what < 8) {
			snprintf(line, sizeof line, "%s %s%s%s", ops[what], a, what < 2 ? " " : "",
				 what < 2 ? b : "");
			/* one batch in four ends with an operation that fails: all rolls back */
			if (rand_r(&seed) % 4 == 0)
				strcat(line, "\nretry nosuchtask");
			fixture_mutate(o, line, &err);
		} else if (t && (t->status == TASK_READY || t->status == TASK_RUNNING)) {
			/* what the scheduler does: start it, end it */
			static const enum task_status ends[] = {TASK_RUNNING, TASK_DONE, TASK_FAILED,
								TASK_DONE};
			task_set_status(o, t, t->status == TASK_READY ? TASK_RUNNING : ends[what - 8]);
			sched_recompute(o);
		}
		check_model(o);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_plan_readiness, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_plan_out_of_order_and_missing, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_cycle_path, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_plan_cycle_refused_whole, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_atomic_batch, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_remove_rules, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_status_ops, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_remove_and_archive_track, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_remove_while_worker_stops, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_archive_status, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_track_status, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_long_chain, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_incremental_model, fixture_setup, fixture_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
