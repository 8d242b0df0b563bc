/* test_render: the node table (resolve, list, write, errors) and the renders
 * behind it, called directly with no mount and no scheduler thread; and the
 * JSON writer every event line is made with. */
#include "fixture.h"
#include "fake.h"

#include <errno.h>
#include <math.h>

#include "nodes.h"
#include "pricing.h"
#include "render.h"
#include "scheduler.h"
#include "telemetry.h"
#include "supervisor.h"

#define PLAN "{\"id\":\"k\",\"title\":\"K \\\"q\\\"\",\"budget_usd\":2.5,\"tasks\":[" \
	"{\"id\":\"t1\",\"command\":\"true\",\"model\":\"m1\"}," \
	"{\"id\":\"t2\",\"command\":\"true\",\"deps\":[\"t1\"],\"env\":{\"A\":\"1\"}}]}"

static int write_node(struct orch *o, const char *path, const char *data, struct buf *result)
{
	struct node n;
	int rc = node_resolve(o, path, &n);
	if (rc)
		return rc;
	buf_reset(result);
	return node_write(o, &n, path, data, strlen(data), NULL, result);
}

static char *read_node(struct orch *o, const char *path)
{
	struct node n;
	if (node_resolve(o, path, &n))
		return NULL;
	struct buf b = BUF_INIT;
	if (node_render(o, &n, &b)) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b);
}

static cJSON *read_json(struct orch *o, const char *path)
{
	char *s = read_node(o, path);
	cJSON *j = s ? cJSON_Parse(s) : NULL;
	free(s);
	return j;
}

static void test_resolve(void **state)
{
	struct fixture *f = *state;
	struct orch_err err = {0};
	struct node n;
	assert_int_equal(fixture_plan(&f->o, PLAN, &err), 0);
	assert_int_equal(node_resolve(&f->o, "", &n), 0);
	assert_int_equal(node_type(&n), NODE_DIR);
	assert_int_equal(node_resolve(&f->o, "mma/pipeline/status", &n), 0);
	assert_int_equal(node_resolve(&f->o, "mma/tasks/t1/status", &n), 0);
	assert_string_equal(n.arg, "t1");
	assert_int_equal(node_resolve(&f->o, "mma/tasks/zz/status", &n), -ENOENT);
	assert_int_equal(node_resolve(&f->o, "mma/workers/1", &n), -ENOENT);
	assert_int_equal(node_resolve(&f->o, "mma/tasks/t1/worker", &n), -ENOENT); /* no attempt yet */
	fake_worker(&f->o, "t1");
	assert_int_equal(node_resolve(&f->o, "mma/workers/1/log", &n), 0);
	assert_int_equal(node_resolve(&f->o, "mma/workers/01/status", &n), -ENOENT);
	assert_int_equal(node_resolve(&f->o, "mma/tasks/t1/worker", &n), 0);
	struct buf target = BUF_INIT;
	assert_int_equal(node_readlink(&f->o, &n, &target), 0);
	assert_string_equal(target.data, "../../workers/1");
	buf_free(&target);
	assert_int_equal(node_resolve(&f->o, "mma/nope", &n), -ENOENT);
	assert_int_equal(node_resolve(&f->o, "mma/pipeline/status/x", &n), -ENOENT);
}

static void collect(void *arg, const char *name, const struct node *child)
{
	buf_printf(arg, "%s ", name);
}

static void test_list(void **state)
{
	struct fixture *f = *state;
	struct orch_err err = {0};
	assert_int_equal(fixture_plan(&f->o, PLAN, &err), 0);
	struct node n;
	struct buf names = BUF_INIT;
	assert_int_equal(node_resolve(&f->o, "", &n), 0);
	node_list(&f->o, &n, collect, &names);
	assert_string_equal(names.data, "state.json events last_error README mma context metrics system ");
	buf_reset(&names);
	assert_int_equal(node_resolve(&f->o, "mma/tasks", &n), 0);
	node_list(&f->o, &n, collect, &names);
	assert_string_equal(names.data, "t1 t2 ");
	buf_reset(&names);
	assert_int_equal(node_resolve(&f->o, "mma/tasks/t1", &n), 0);
	node_list(&f->o, &n, collect, &names);
	assert_string_equal(names.data, "status info.json deps ");
	buf_free(&names);
}

static void test_control_errors_change_nothing(void **state)
{
	struct fixture *f = *state;
	struct orch_err err = {0};
	struct buf r = BUF_INIT;
	assert_int_equal(fixture_plan(&f->o, PLAN, &err), 0);
	char *before = read_node(&f->o, "mma/dag.json");
	assert_int_equal(write_node(&f->o, "mma/dag.json", "x", &r), -EACCES);
	assert_int_equal(write_node(&f->o, "mma/dag/mutate", "frob t1", &r), -EINVAL);
	cJSON *e = cJSON_Parse(r.data);
	cJSON *obj = cJSON_GetObjectItem(e, "error");
	assert_int_equal(cJSON_GetObjectItem(obj, "status")->valueint, 400);
	assert_string_equal(cJSON_GetObjectItem(obj, "errno")->valuestring, "EINVAL");
	assert_string_equal(cJSON_GetObjectItem(obj, "path")->valuestring, "mma/dag/mutate");
	cJSON_Delete(e);
	/* last_error holds the same object */
	char *last = read_node(&f->o, "last_error");
	assert_string_equal(last, r.data);
	free(last);
	assert_int_equal(write_node(&f->o, "mma/dag/mutate", "add_dep t1 t2", &r), -ELOOP);
	assert_int_equal(write_node(&f->o, "mma/tracks/create", PLAN, &r), -EEXIST);
	assert_int_equal(write_node(&f->o, "mma/workers/kill", "7", &r), -ENOENT);
	assert_int_equal(write_node(&f->o, "mma/pipeline/max_workers", "0", &r), -EINVAL);
	assert_int_equal(write_node(&f->o, "context/remove", "nothing", &r), -ENOENT);
	char *big = xmalloc((1u << 20) + 2);
	memset(big, 'x', (1u << 20) + 1);
	big[(1u << 20) + 1] = '\0';
	assert_int_equal(write_node(&f->o, "mma/dag/mutate", big, &r), -EFBIG);
	free(big);
	char *after = read_node(&f->o, "mma/dag.json");
	assert_string_equal(before, after);
	free(before);
	free(after);
	buf_free(&r);
}

static void test_pipeline_and_budget(void **state)
{
	struct fixture *f = *state;
	struct orch_err err = {0};
	struct buf r = BUF_INIT;
	assert_int_equal(fixture_plan(&f->o, PLAN, &err), 0);
	assert_int_equal(write_node(&f->o, "mma/pipeline/pause", "freeze\n", &r), 0);
	char *s = read_node(&f->o, "mma/pipeline/status");
	assert_string_equal(s, "frozen\n");
	free(s);
	assert_int_equal(write_node(&f->o, "mma/pipeline/resume", "", &r), 0);
	assert_int_equal(write_node(&f->o, "mma/pipeline/max_workers", "7\n", &r), 0);
	s = read_node(&f->o, "mma/pipeline/max_workers");
	assert_string_equal(s, "7\n");
	free(s);
	s = read_node(&f->o, "mma/tracks/k/budget");
	assert_string_equal(s, "2.500000\n");
	free(s);
	assert_int_equal(write_node(&f->o, "mma/tracks/k/budget", "0.25", &r), 0);
	s = read_node(&f->o, "mma/tracks/k/budget");
	assert_string_equal(s, "0.250000\n");
	free(s);
	buf_free(&r);
}

static void test_usage_and_money(void **state)
{
	struct fixture *f = *state;
	struct orch_err err = {0};
	struct buf r = BUF_INIT;
	const char *prices = "{\"m1\":{\"input_per_mtok\":3,\"output_per_mtok\":15}}";
	assert_int_equal(pricing_parse(prices, strlen(prices), &f->o.prices, &f->o.nprices, &err), 0);
	assert_int_equal(fixture_plan(&f->o, PLAN, &err), 0);
	fake_worker(&f->o, "t1");
	assert_int_equal(write_node(&f->o, "mma/workers/1/usage", "model=m1 in=1000 out=200", &r), 0);
	assert_int_equal(write_node(&f->o, "mma/workers/1/usage",
				    "{\"model\":\"m1\",\"input_tokens\":500,\"output_tokens\":100}", &r), 0);
	assert_int_equal(write_node(&f->o, "mma/workers/1/usage", "model=other in=5 out=5", &r), 0);
	char *raw = read_node(&f->o, "metrics/financial.json");
	/* 1500*3 + 300*15 = 9000 µ$, printed with 6 decimals; "other" is unpriced */
	assert_non_null(strstr(raw, "\"total\":{\"input_tokens\":1505,\"output_tokens\":305,"
				    "\"cache_read_tokens\":0,\"cache_write_tokens\":0,\"reports\":3,"
				    "\"cost_usd\":0.009000,"));
	free(raw);
	cJSON *fin = read_json(&f->o, "metrics/financial.json");
	assert_non_null(fin);
	cJSON *total = cJSON_GetObjectItem(fin, "total");
	assert_int_equal(cJSON_GetObjectItem(total, "input_tokens")->valuedouble, 1505);
	cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(total, "models"), "other");
	assert_false(cJSON_IsTrue(cJSON_GetObjectItem(m, "priced")));
	cJSON *k = cJSON_GetObjectItem(cJSON_GetObjectItem(fin, "tracks"), "k");
	assert_int_equal(cJSON_GetObjectItem(k, "reports")->valueint, 3);
	cJSON_Delete(fin);
	/* a budget below the cost stops the track */
	assert_int_equal(write_node(&f->o, "mma/tracks/k/budget", "0.008", &r), 0);
	char *s = read_node(&f->o, "mma/tracks/k/status");
	assert_string_equal(s, "over_budget\n");
	free(s);
	/* its ready task says why it does not start; its blocked one, what it waits for */
	cJSON *t1 = read_json(&f->o, "mma/tasks/t1/info.json");
	cJSON *wt = cJSON_GetObjectItem(t1, "waiting");
	assert_string_equal(cJSON_GetObjectItem(wt, "reason")->valuestring, "budget");
	assert_string_equal(cJSON_GetObjectItem(wt, "message")->valuestring,
			    "track k spent $0.009000 of its $0.008000 budget; "
			    "raise mma/tracks/k/budget to go on");
	cJSON_Delete(t1);
	cJSON *t2 = read_json(&f->o, "mma/tasks/t2/info.json");
	wt = cJSON_GetObjectItem(t2, "waiting");
	assert_string_equal(cJSON_GetObjectItem(wt, "reason")->valuestring, "deps");
	assert_string_equal(cJSON_GetObjectItem(wt, "message")->valuestring, "waiting for t1 (ready)");
	assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(wt, "tasks"), 0)->valuestring, "t1");
	cJSON_Delete(t2);
	/* the crossing is one event; a lower budget again is no second crossing */
	assert_int_equal(write_node(&f->o, "mma/tracks/k/budget", "0.007", &r), 0);
	struct buf ev = BUF_INIT;
	uint64_t last, oldest;
	assert_int_equal(events_read(&f->o.events, 0, EV_ALL_EVENTS, 1 << 20, &ev, &last, &oldest), 0);
	const char *want = "\"channel\":\"dag\",\"type\":\"track.budget_exhausted\","
			   "\"data\":{\"track\":\"k\",\"spent_usd\":0.009000,\"budget_usd\":0.008000}";
	char *at = strstr(ev.data, want);
	assert_non_null(at);
	assert_null(strstr(at + strlen(want), "track.budget_exhausted"));
	buf_free(&ev);
	/* raised above the cost: it goes on, and says nothing more */
	assert_int_equal(write_node(&f->o, "mma/tracks/k/budget", "1", &r), 0);
	t1 = read_json(&f->o, "mma/tasks/t1/info.json");
	assert_true(cJSON_IsNull(cJSON_GetObjectItem(t1, "waiting")));
	cJSON_Delete(t1);
	assert_int_equal(write_node(&f->o, "mma/pipeline/pause", "x", &r), 0);
	t1 = read_json(&f->o, "mma/tasks/t1/info.json");
	wt = cJSON_GetObjectItem(t1, "waiting");
	assert_string_equal(cJSON_GetObjectItem(wt, "reason")->valuestring, "paused");
	cJSON_Delete(t1);
	assert_int_equal(write_node(&f->o, "mma/workers/1/usage", "model=m1 in=-1 out=0", &r), -EINVAL);
	assert_int_equal(write_node(&f->o, "mma/workers/1/stdin", "x", &r), -EBUSY);
	assert_int_equal(write_node(&f->o, "mma/workers/1/kill", "", &r), -EBUSY);
	buf_free(&r);
}

static void test_documents(void **state)
{
	struct fixture *f = *state;
	struct orch_err err = {0};
	assert_int_equal(fixture_plan(&f->o, PLAN, &err), 0);
	fake_worker(&f->o, "t1");
	cJSON *info = read_json(&f->o, "mma/tasks/t2/info.json");
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(info, "env"), "A")->valuestring, "1");
	assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(info, "deps"), 0)->valuestring, "t1");
	cJSON_Delete(info);
	cJSON *w = read_json(&f->o, "mma/workers/1/info.json");
	assert_int_equal(cJSON_GetObjectItem(w, "runtime_s")->valuedouble * 1000, 1500);
	assert_string_equal(cJSON_GetObjectItem(w, "started_at")->valuestring, "1970-01-01T00:00:01.000Z");
	cJSON_Delete(w);
	char *deps = read_node(&f->o, "mma/tasks/t2/deps");
	assert_string_equal(deps, "t1\n");
	free(deps);
	char *dot = read_node(&f->o, "mma/dag.dot");
	assert_non_null(strstr(dot, "\"t1\" -> \"t2\";"));
	assert_non_null(strstr(dot, "label=\"K \\\"q\\\"\""));
	free(dot);
	cJSON *dag = read_json(&f->o, "mma/dag.json");
	cJSON *e = cJSON_GetArrayItem(cJSON_GetObjectItem(dag, "edges"), 0);
	assert_string_equal(cJSON_GetObjectItem(e, "from")->valuestring, "t1");
	cJSON_Delete(dag);
	cJSON *st = read_json(&f->o, "state.json");
	assert_non_null(cJSON_GetObjectItem(st, "seq"));
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(st, "tasks")), 2);
	assert_non_null(cJSON_GetObjectItem(st, "context"));
	assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(st, "telemetry"), "loop"));
	cJSON_Delete(st);
	/* the WebSocket side of telemetry: each client's queue, as the API reports it */
	uint64_t depths[] = {5, 70000};
	tm_ws(f->o.tm, 2, 70000, 9, 1, depths, 2);
	cJSON *tel = read_json(&f->o, "system/telemetry.json");
	cJSON *ws = cJSON_GetObjectItem(tel, "websocket");
	assert_int_equal(cJSON_GetObjectItem(ws, "clients")->valueint, 2);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(ws, "queue_bytes")), 2);
	assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(ws, "queue_bytes"), 1)->valueint, 70000);
	assert_int_equal(cJSON_GetObjectItem(ws, "clients_dropped")->valueint, 1);
	assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(tel, "events"), "high_water"));
	cJSON_Delete(tel);
	char *status = read_node(&f->o, "mma/workers/1/status");
	assert_string_equal(status, "exited\n");
	free(status);
}

/* Documents made of cached chunks are byte for byte what a cold cache makes,
 * after any mix of changes: a change to one object re-makes its chunk only,
 * and never leaves a stale one behind. */
static void expect_cold_equal(struct orch *o)
{
	static const enum render_doc_kind kinds[] = {RENDER_WORKERS, RENDER_TRACKS, RENDER_DAG,
						     RENDER_FINANCIAL, RENDER_STATE};
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		struct buf warm = BUF_INIT, cold = BUF_INIT;
		render_doc(o, kinds[i], NULL, &warm);
		render_trim(o, 0);   /* every fragment let go, as after a long rest */
		render_doc(o, kinds[i], NULL, &cold);
		if (kinds[i] == RENDER_STATE) {
			/* it carries the seq, equal here: nothing was published between */
			assert_non_null(strstr(warm.data, "\"seq\":"));
		}
		assert_string_equal(warm.data, cold.data);
		cJSON *j = cJSON_Parse(warm.data);
		assert_non_null(j);
		cJSON_Delete(j);
		buf_free(&warm);
		buf_free(&cold);
	}
}

static void test_chunked_documents(void **state)
{
	struct fixture *f = *state;
	struct orch *o = &f->o;
	struct buf r = BUF_INIT;
	struct orch_err err = {0};
	/* three chunks of tasks and a bit */
	struct buf plan = BUF_INIT;
	buf_puts(&plan, "{\"id\":\"big\",\"tasks\":[{\"id\":\"b0\",\"command\":\"true\"}");
	for (int i = 1; i < 3 * RENDER_CHUNK + 5; i++)
		buf_printf(&plan, ",{\"id\":\"b%d\",\"command\":\"true\",\"deps\":[\"b%d\"]}", i, i / 2);
	buf_puts(&plan, "]}");
	assert_int_equal(fixture_plan(o, plan.data, &err), 0);
	buf_free(&plan);
	assert_int_equal(fixture_plan(o, PLAN, &err), 0);
	expect_cold_equal(o);
	/* workers come, end, report; tasks change, go, come back */
	pthread_mutex_lock(&o->lock);
	struct worker *w;
	assert_int_equal(sched_spawn(o, NULL, task_find(o, "b0"), NULL, &w, &err), 0);
	pthread_mutex_unlock(&o->lock);
	expect_cold_equal(o);
	assert_int_equal(write_node(o, "mma/workers/1/usage", "model=m1 in=5 out=7", &r), 0);
	assert_int_equal(write_node(o, "mma/dag/mutate", "hold b70\nskip b100\nremove_task b194", &r), 0);
	expect_cold_equal(o);
	assert_int_equal(write_node(o, "mma/dag/mutate",
				    "{\"op\":\"add_task\",\"track\":\"k\",\"task\":{\"id\":\"b194\",\"command\":\"x\"}}",
				    &r), 0);
	assert_int_equal(write_node(o, "mma/tracks/k/budget", "0.000001", &r), 0);
	assert_int_equal(write_node(o, "mma/workers/kill", "1 KILL", &r), 0);
	expect_cold_equal(o);
	buf_free(&r);
}

/* json_write and time_iso: what every event line is made of */
static void test_json_writer(void **state)
{
	(void)state;
	cJSON *d = cJSON_CreateObject();
	cJSON_AddNumberToObject(d, "n", 3);
	cJSON_AddNumberToObject(d, "neg", -42);
	cJSON_AddNumberToObject(d, "half", 1.5);
	cJSON_AddNumberToObject(d, "big", 1e300);
	cJSON_AddNumberToObject(d, "nan", nan(""));
	cJSON_AddStringToObject(d, "bad\xff", "a\xc3(\"\n\x01");
	json_add_i64(d, "i64", INT64_MAX);
	json_add_usd(d, "usd", 1250000);
	cJSON *a = cJSON_AddArrayToObject(d, "a");
	cJSON_AddItemToArray(a, cJSON_CreateTrue());
	cJSON_AddItemToArray(a, cJSON_CreateNull());
	cJSON_AddItemToArray(a, cJSON_CreateObject());
	struct buf b = BUF_INIT;
	json_emit(d, &b);
	assert_string_equal(b.data,
			    "{\"n\":3,\"neg\":-42,\"half\":1.5,\"big\":1e+300,\"nan\":null,"
			    "\"bad\xef\xbf\xbd\":\"a\xef\xbf\xbd(\\\"\\n\\u0001\","
			    "\"i64\":9223372036854775807,\"usd\":1.250000,\"a\":[true,null,{}]}\n");
	buf_free(&b);

	static const struct { int64_t ms; const char *iso; } dates[] = {
		{0, "1970-01-01T00:00:00.000Z"},
		{951782400000, "2000-02-29T00:00:00.000Z"},
		{1709251199999, "2024-02-29T23:59:59.999Z"},
		{1796553600123, "2026-12-06T10:40:00.123Z"},
		{253402300799999, "9999-12-31T23:59:59.999Z"},
	};
	for (size_t i = 0; i < sizeof dates / sizeof *dates; i++) {
		char iso[40];
		time_iso(dates[i].ms, iso, sizeof iso);
		assert_string_equal(iso, dates[i].iso);
	}
}

int main(int argc, char **argv)
{
	/* a worker's start runs this binary again as its supervisor */
	if (argc == 3 && strcmp(argv[1], SUPERVISOR_ARG) == 0)
		return supervisor_main(argc, argv);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_resolve, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_list, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_control_errors_change_nothing, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_pipeline_and_budget, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_usage_and_money, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_documents, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_chunked_documents, fixture_setup, fixture_teardown),
		cmocka_unit_test(test_json_writer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
