/* test_nodes: what a change touches, as the node table says (node_touched),
 * the one source the notifier announces from. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nodes.h"

struct touched {
	struct buf text;   /* "born mma/tasks/t/\n", "modified state.json\n", ... */
};

static void collect(void *arg, enum node_touch how, const char *path, bool dir)
{
	static const char *const names[] = {"born", "modified", "gone"};
	struct touched *t = arg;
	buf_printf(&t->text, "%s %s%s\n", names[how], path, dir ? "/" : "");
}

/* The lines node_touched gives for one change, as one string (caller frees). */
static char *touched(uint64_t kinds, int worker, const char *task, const char *track,
		     const char *name)
{
	struct touched t = {BUF_INIT};
	struct node_change c = {kinds, worker, task, track, name};
	node_touched(&c, collect, &t);
	buf_putc(&t.text, '\0');
	return buf_steal(&t.text);
}

static bool has(const char *all, const char *line)
{
	char want[256];
	snprintf(want, sizeof want, "%s\n", line);
	return strstr(all, want) != NULL;
}

static void test_worker_exit(void **state)
{
	char *t = touched(UINT64_C(1) << EVK_WORKER_EXITED, 3, "t1", "k", NULL);
	assert_true(has(t, "modified mma/workers/3/status"));
	assert_true(has(t, "modified mma/workers/3/info.json"));
	assert_true(has(t, "modified mma/workers/3/trace"));
	/* its task shows its attempts */
	assert_true(has(t, "modified mma/tasks/t1/info.json"));
	assert_true(has(t, "modified mma/workers.json"));
	assert_true(has(t, "modified state.json"));
	/* and nothing it did not change */
	assert_false(has(t, "modified mma/workers/3/usage"));
	assert_false(has(t, "modified mma/tasks/t1/status"));
	assert_false(has(t, "modified mma/pipeline/status"));
	assert_false(has(t, "modified system/telemetry.json"));
	assert_null(strstr(t, "born"));
	free(t);
}

static void test_entries_come_and_go(void **state)
{
	char *t = touched(UINT64_C(1) << EVK_TASK_ADDED, 0, "t9", "k", NULL);
	assert_true(has(t, "born mma/tasks/t9/"));
	assert_true(has(t, "modified mma/dag.json"));
	free(t);
	t = touched(UINT64_C(1) << EVK_TASK_REMOVED, 0, "t9", "k", NULL);
	assert_true(has(t, "gone mma/tasks/t9/"));
	assert_true(has(t, "modified mma/tracks/k/info.json"));
	free(t);
	t = touched(UINT64_C(1) << EVK_WORKER_SPAWNED, 12, NULL, NULL, NULL);
	assert_true(has(t, "born mma/workers/12/"));
	free(t);
	t = touched(UINT64_C(1) << EVK_CONTEXT_INJECTED, 0, NULL, NULL, "notes.md");
	assert_true(has(t, "born context/files/notes.md"));
	assert_false(has(t, "modified context/files/notes.md"));
	assert_true(has(t, "modified context/aggregate"));
	free(t);
	/* injected again under the same name: the file changes, it is not new */
	t = touched(UINT64_C(1) << EVK_CONTEXT_REPLACED, 0, NULL, NULL, "notes.md");
	assert_true(has(t, "modified context/files/notes.md"));
	assert_null(strstr(t, "born"));
	free(t);
	t = touched(UINT64_C(1) << EVK_CONTEXT_REMOVED, 0, NULL, NULL, "notes.md");
	assert_true(has(t, "gone context/files/notes.md"));
	free(t);
}

static void test_pipeline_and_errors(void **state)
{
	char *t = touched(UINT64_C(1) << EVK_PIPELINE_STATUS, 0, NULL, NULL, NULL);
	assert_true(has(t, "modified mma/pipeline/status"));
	assert_false(has(t, "modified mma/pipeline/max_workers"));
	free(t);
	t = touched(NODE_DEP_ERROR, 0, NULL, NULL, NULL);
	assert_string_equal(t, "modified last_error\n");
	free(t);
	/* a name that could leave its directory touches nothing of that kind */
	t = touched(UINT64_C(1) << EVK_CONTEXT_REMOVED, 0, NULL, NULL, "../x");
	assert_null(strstr(t, "context/files"));
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_worker_exit),
		cmocka_unit_test(test_entries_come_and_go),
		cmocka_unit_test(test_pipeline_and_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
