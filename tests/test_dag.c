/* test_dag: cycles and their paths, atomic batches, readiness and statuses. */
#include "fixture.h"

#include <errno.h>

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
	json_emit(render_dag(o), &b);
	return buf_steal(&b);
}

static void test_plan_readiness(void **state)
{
	struct fixture *f = *state;
	struct orch_err err = {0};
	assert_int_equal(fixture_plan(&f->o, CHAIN, &err), 0);
	assert_string_equal(status_of(&f->o, "t1"), "ready");
	assert_string_equal(status_of(&f->o, "t2"), "blocked");
	task_find(&f->o, "t1")->status = TASK_DONE;
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
	assert_string_equal(err.message, "adding t1 -> t3 makes a cycle: t1 -> t3 -> t2 -> t1");
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
	task_find(&f->o, "t3")->status = TASK_RUNNING;
	assert_int_equal(fixture_mutate(&f->o, "remove_task t3", &err), EBUSY);
	task_find(&f->o, "t3")->status = TASK_BLOCKED;
	assert_int_equal(fixture_mutate(&f->o, "remove_task t3\nremove_dep t2 t1\nremove_task t1", &err), 0);
	assert_null(task_find(&f->o, "t1"));
	assert_string_equal(status_of(&f->o, "t2"), "ready");
	assert_int_equal(fixture_mutate(&f->o, "remove_dep t2 t1", &err), ENOENT);
	/* the list stays consistent: new tasks append after removals */
	assert_int_equal(fixture_mutate(&f->o, "{\"op\":\"add_task\",\"track\":\"k\",\"task\":"
				       "{\"id\":\"t9\",\"command\":\"x\"}}", &err), 0);
	assert_ptr_equal(f->o.tasks->next, task_find(&f->o, "t9"));
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
	task_find(&f->o, "t1")->status = TASK_FAILED;
	sched_recompute(&f->o);
	/* t2 and t3 wait on a failed task: nothing can run, the track failed */
	assert_int_equal(k->status, TRACK_FAILED);
	assert_int_equal(fixture_mutate(&f->o, "retry t1", &err), 0);
	assert_int_equal(k->status, TRACK_ACTIVE);
	assert_int_equal(fixture_mutate(&f->o, "skip t1\nskip t2\nskip t3", &err), 0);
	assert_int_equal(k->status, TRACK_DONE);
}

static void test_long_chain(void **state)
{
	/* a deep chain: the cycle search must not recurse per level */
	struct fixture *f = *state;
	struct orch_err err = {0};
	struct buf plan = BUF_INIT;
	buf_puts(&plan, "{\"id\":\"k\",\"tasks\":[{\"id\":\"n0\",\"command\":\"x\"}");
	for (int i = 1; i < 5000; i++)
		buf_printf(&plan, ",{\"id\":\"n%d\",\"command\":\"x\",\"deps\":[\"n%d\"]}", i, i - 1);
	buf_puts(&plan, "]}");
	assert_int_equal(fixture_plan(&f->o, plan.data, &err), 0);
	buf_free(&plan);
	assert_int_equal(fixture_mutate(&f->o, "add_dep n0 n4999", &err), ELOOP);
	assert_int_equal(fixture_mutate(&f->o, "add_dep n4999 n0", &err), 0);
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
		cmocka_unit_test_setup_teardown(test_track_status, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_long_chain, fixture_setup, fixture_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
