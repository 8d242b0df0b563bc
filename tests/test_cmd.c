/* test_cmd: the control-write grammar of cmd.c, line forms and JSON, and the
 * errno and message of every kind of bad input. Inputs are handed over in
 * exact-size heap copies with no NUL after them, as FUSE and HTTP hand them,
 * so a sanitizer build catches any read past the length. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd.h"
#include "pricing.h"

/* ---- helpers ---- */

static char *exact(const char *s, size_t n)
{
	char *b = malloc(n ? n : 1);
	assert_non_null(b);
	memcpy(b, s, n);
	return b;
}

static int plan(const char *s, struct cmd_plan *p, struct orch_err *e)
{
	size_t n = strlen(s);
	char *b = exact(s, n);
	int rc = cmd_parse_plan(b, n, p, e);
	free(b);
	return rc;
}

static int spawn(const char *s, struct cmd_spawn *p, struct orch_err *e)
{
	size_t n = strlen(s);
	char *b = exact(s, n);
	int rc = cmd_parse_spawn(b, n, p, e);
	free(b);
	return rc;
}

static int kill_(const char *s, bool per_worker, struct cmd_kill *p, struct orch_err *e)
{
	size_t n = strlen(s);
	char *b = exact(s, n);
	int rc = cmd_parse_kill(b, n, per_worker, p, e);
	free(b);
	return rc;
}

static int mutate(const char *s, struct cmd_mutate *p, struct orch_err *e)
{
	size_t n = strlen(s);
	char *b = exact(s, n);
	int rc = cmd_parse_mutate(b, n, p, e);
	free(b);
	return rc;
}

static int usage(const char *s, struct usage *p, struct orch_err *e)
{
	size_t n = strlen(s);
	char *b = exact(s, n);
	int rc = cmd_parse_usage(b, n, p, e);
	free(b);
	return rc;
}

static int inject(const char *s, const char *cwd, struct ctx_inject_req *p, struct orch_err *e)
{
	size_t n = strlen(s);
	char *b = exact(s, n);
	int rc = cmd_parse_inject(b, n, cwd, p, e);
	free(b);
	return rc;
}

static int name(const char *s, char out[ID_MAX + 1], struct orch_err *e)
{
	size_t n = strlen(s);
	char *b = exact(s, n);
	int rc = cmd_parse_name(b, n, out, e);
	free(b);
	return rc;
}

static int int_(const char *s, int64_t min, int64_t max, int64_t *out, struct orch_err *e)
{
	size_t n = strlen(s);
	char *b = exact(s, n);
	int rc = cmd_parse_int(b, n, min, max, out, e);
	free(b);
	return rc;
}

static int usd(const char *s, int64_t *out, struct orch_err *e)
{
	size_t n = strlen(s);
	char *b = exact(s, n);
	int rc = cmd_parse_usd(b, n, out, e);
	free(b);
	return rc;
}

static bool freeze(const char *s)
{
	size_t n = strlen(s);
	char *b = exact(s, n);
	bool f;
	struct orch_err e;
	assert_int_equal(cmd_parse_pause(b, n, &f, &e), 0);
	free(b);
	return f;
}

static bool all_zero(const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		if (c[i])
			return false;
	return true;
}

/* ---- plan ---- */

static void test_plan_full(void **state)
{
	(void)state;
	struct cmd_plan p;
	struct orch_err e = {0};
	const char *in =
		"{\"id\":\"build\",\"title\":\"Build it\",\"budget_usd\":12.5,\"tasks\":[\n"
		" {\"id\":\"t1\",\"command\":\"make\",\"title\":\"compile\",\"cwd\":\"/src\",\n"
		"  \"env\":{\"CC\":\"gcc\",\"_X1\":\"a=b\"},\"retries\":2,\"timeout_s\":60,\n"
		"  \"model\":\"claude-x\",\"priority\":-5},\n"
		" {\"id\":\"t2\",\"command\":\"make test\",\"deps\":[\"t1\",\"other\",\"t1\"],\"priority\":7}\n"
		"]}\n";
	assert_int_equal(plan(in, &p, &e), 0);
	assert_string_equal(p.id, "build");
	assert_string_equal(p.title, "Build it");
	assert_int_equal(p.budget_micro, 12500000);
	assert_int_equal(p.ntasks, 2);
	struct task_spec *a = &p.tasks[0], *b = &p.tasks[1];
	assert_string_equal(a->id, "t1");
	assert_string_equal(a->command, "make");
	assert_string_equal(a->title, "compile");
	assert_string_equal(a->cwd, "/src");
	assert_string_equal(a->model, "claude-x");
	assert_int_equal(a->nenv, 2);
	assert_string_equal(a->env[0], "CC=gcc");
	assert_string_equal(a->env[1], "_X1=a=b");
	assert_int_equal(a->retries, 2);
	assert_int_equal(a->timeout_s, 60);
	assert_int_equal(a->priority, -5);
	assert_int_equal(a->ndeps, 0);
	assert_string_equal(b->id, "t2");
	assert_null(b->title);
	assert_null(b->cwd);
	assert_null(b->model);
	assert_int_equal(b->nenv, 0);
	/* a repeated dep is kept once */
	assert_int_equal(b->ndeps, 2);
	assert_string_equal(b->deps[0], "t1");
	assert_string_equal(b->deps[1], "other");
	assert_int_equal(b->retries, 0);
	assert_int_equal(b->timeout_s, 0);
	assert_int_equal(b->priority, 7);
	cmd_plan_free(&p);
	assert_true(all_zero(&p, sizeof p));
	cmd_plan_free(&p);   /* freeing twice is harmless */
}

static void test_plan_minimal(void **state)
{
	(void)state;
	struct cmd_plan p;
	struct orch_err e = {0};
	assert_int_equal(plan("  {\"id\":\"x\",\"tasks\":[]}", &p, &e), 0);
	assert_string_equal(p.id, "x");
	assert_null(p.title);
	assert_int_equal(p.budget_micro, -1);
	assert_int_equal(p.ntasks, 0);
	cmd_plan_free(&p);

	/* null is the same as absent for optional fields */
	assert_int_equal(plan("{\"id\":\"x\",\"title\":null,\"budget_usd\":null,\"tasks\":["
			      "{\"id\":\"a\",\"command\":\"true\",\"deps\":null,\"retries\":null}]}",
			      &p, &e), 0);
	assert_null(p.title);
	assert_int_equal(p.budget_micro, -1);
	assert_int_equal(p.tasks[0].ndeps, 0);
	cmd_plan_free(&p);

	assert_int_equal(plan("{\"id\":\"x\",\"budget_usd\":0,\"tasks\":[{\"id\":\"a\",\"command\":\"true\","
			      "\"priority\":2147483647,\"timeout_s\":31536000,\"retries\":1000}]}",
			      &p, &e), 0);
	assert_int_equal(p.budget_micro, 0);
	assert_int_equal(p.tasks[0].priority, INT_MAX);
	assert_int_equal(p.tasks[0].timeout_s, 31536000);
	assert_int_equal(p.tasks[0].retries, 1000);
	cmd_plan_free(&p);
}

/* "runner" per plan and per task, "slurm" as sbatch's options, each value
 * checked: what orchfs sets itself cannot be changed by an "extra". */
static void test_plan_runners(void **state)
{
	struct cmd_plan p;
	struct orch_err e = {0};
	assert_int_equal(plan("{\"id\":\"k\",\"runner\":\"slurm\",\"tasks\":["
			      "{\"id\":\"a\",\"command\":\"x\"},"
			      "{\"id\":\"b\",\"command\":\"x\",\"runner\":\"local\"},"
			      "{\"id\":\"c\",\"command\":\"x\",\"slurm\":{\"partition\":\"gpu,debug\","
			      "\"time\":\"1-02:00:00\",\"cpus\":4,\"mem\":\"4G\",\"gres\":\"gpu:1\","
			      "\"account\":\"lab\",\"qos\":\"high\",\"extra\":[\"--nice=5\",\"--exclusive\"]}},"
			      "{\"id\":\"d\",\"command\":\"x\",\"slurm\":{\"time\":30,\"mem\":512}}]}",
			      &p, &e), 0);
	assert_int_equal(p.tasks[0].runner, RUNNER_SLURM);   /* the plan's */
	assert_int_equal(p.tasks[1].runner, RUNNER_LOCAL);   /* its own */
	assert_int_equal(p.tasks[2].runner, RUNNER_SLURM);
	const char *want[] = {"--partition=gpu,debug", "--time=1-02:00:00", "--cpus-per-task=4",
			      "--mem=4G", "--gres=gpu:1", "--account=lab", "--qos=high",
			      "--nice=5", "--exclusive"};
	assert_int_equal(p.tasks[2].nslurm, 9);
	for (size_t i = 0; i < 9; i++)
		assert_string_equal(p.tasks[2].slurm[i], want[i]);
	assert_int_equal(p.tasks[3].nslurm, 2);
	assert_string_equal(p.tasks[3].slurm[0], "--time=30");
	assert_string_equal(p.tasks[3].slurm[1], "--mem=512");
	cmd_plan_free(&p);
	/* "slurm" alone says where it runs, even when the plan says local */
	assert_int_equal(plan("{\"id\":\"k\",\"runner\":\"local\",\"tasks\":[{\"id\":\"a\","
			      "\"command\":\"x\",\"slurm\":{\"cpus\":1}}]}", &p, &e), 0);
	assert_int_equal(p.tasks[0].runner, RUNNER_SLURM);
	cmd_plan_free(&p);

	static const struct {
		const char *task, *message;
	} bad[] = {
		{"\"runner\":\"k8s\"", "\"runner\" must be \"local\" or \"slurm\""},
		{"\"runner\":\"local\",\"slurm\":{}", "are for \"runner\": \"slurm\""},
		{"\"slurm\":[]", "\"slurm\" must be an object"},
		{"\"slurm\":{\"nodes\":2}", "unknown field \"nodes\""},
		{"\"slurm\":{\"partition\":\"a b\"}", "\"partition\" must be a name"},
		{"\"slurm\":{\"partition\":\"\"}", "\"partition\" must be a name"},
		{"\"slurm\":{\"time\":\"soon\"}", "\"time\" must be minutes"},
		{"\"slurm\":{\"cpus\":0}", "\"cpus\" must be a whole number"},
		{"\"slurm\":{\"cpus\":\"4\"}", "\"cpus\" must be a whole number"},
		{"\"slurm\":{\"mem\":\"4 G\"}", "\"mem\" must be megabytes"},
		{"\"slurm\":{\"extra\":\"--nice\"}", "\"extra\" must be an array"},
		{"\"slurm\":{\"extra\":[\"-p debug\"]}", "one sbatch option --name"},
		{"\"slurm\":{\"extra\":[\"--comment=a;rm\"]}", "one sbatch option --name"},
		{"\"slurm\":{\"extra\":[\"--output=/tmp/x\"]}", "cannot set --output"},
		{"\"slurm\":{\"extra\":[\"--wrap=x\"]}", "cannot set --wrap"},
		{"\"slurm\":{\"extra\":[\"--export=NONE\"]}", "cannot set --export"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char text[512];
		snprintf(text, sizeof text,
			 "{\"id\":\"k\",\"tasks\":[{\"id\":\"a\",\"command\":\"x\",%s}]}", bad[i].task);
		assert_int_equal(plan(text, &p, &e), -EINVAL);
		if (!strstr(e.message, bad[i].message))
			fail_msg("%s: got \"%s\", want \"%s\"", bad[i].task, e.message, bad[i].message);
		assert_non_null(strstr(e.message, "task a: "));
	}
	assert_int_equal(plan("{\"id\":\"k\",\"runner\":3,\"tasks\":[]}", &p, &e), -EINVAL);
}

static void test_plan_messages(void **state)
{
	(void)state;
	struct cmd_plan p;
	struct orch_err e = {0};
	assert_int_equal(plan("{\"id\":\"x\",\"tasks\":[{\"id\":\"t1\",\"command\":\"a\",\"deps\":[\"t1\"]}]}",
			      &p, &e), -ELOOP);
	assert_int_equal(e.errnum, ELOOP);
	assert_string_equal(e.message, "task t1 depends on itself");
	assert_true(all_zero(&p, sizeof p));

	assert_int_equal(plan("{\"id\":\"x\",\"tasks\":[{\"id\":\"t1\",\"command\":\"a\"},"
			      "{\"id\":\"t2\",\"command\":\"b\"},{\"id\":\"t1\",\"command\":\"c\"}]}",
			      &p, &e), -EEXIST);
	assert_non_null(strstr(e.message, "t1"));

	assert_int_equal(plan("{\"id\":\"x\",\"tasks\":[{\"id\":\"t1\",\"command\":\"a\",\"retries\":-1}]}",
			      &p, &e), -EINVAL);
	assert_non_null(strstr(e.message, "task t1: "));
	assert_non_null(strstr(e.message, "\"retries\" must be a whole number"));

	assert_int_equal(plan("{\"id\":\"x\",\"tasks\":[{\"id\":\"t1\",\"command\":\"a\"},"
			      "{\"id\":\"T2\",\"command\":\"b\"}]}", &p, &e), -EINVAL);
	assert_string_equal(e.message,
			    "task 2 of the plan: bad task id \"T2\": ids are [a-z0-9][a-z0-9_-]{0,63}");

	assert_int_equal(plan("{\"id\":\"x\",\"tasks\":[{\"id\":\"t1\",\"command\":\"a\",\"retires\":1}]}",
			      &p, &e), -EINVAL);
	assert_string_equal(e.message, "task t1: unknown field \"retires\"");

	assert_int_equal(plan("{\"id\":\"x\",\n\"tasks\":[}", &p, &e), -EINVAL);
	assert_string_equal(e.message, "bad JSON at line 2, column 10");

	assert_int_equal(plan("{\"id\":\"x\",\"tasks\":[]} {}", &p, &e), -EINVAL);
	assert_non_null(strstr(e.message, "after the document"));
}

/* ---- spawn ---- */

static void test_spawn_line(void **state)
{
	(void)state;
	struct cmd_spawn s;
	struct orch_err e = {0};
	assert_int_equal(spawn("make test\n", &s, &e), 0);
	assert_string_equal(s.command, "make test");
	assert_string_equal(s.task, "");
	assert_string_equal(s.track, "");
	assert_null(s.cwd);
	assert_null(s.model);
	assert_int_equal(s.nenv, 0);
	cmd_spawn_free(&s);

	/* only one trailing newline is the writer's; the rest is the command's */
	assert_int_equal(spawn("  echo 'a  b' | wc -c\n\n", &s, &e), 0);
	assert_string_equal(s.command, "  echo 'a  b' | wc -c\n");
	cmd_spawn_free(&s);

	/* '[' starts a shell test, not JSON */
	assert_int_equal(spawn("[ -f x ] && make", &s, &e), 0);
	assert_string_equal(s.command, "[ -f x ] && make");
	cmd_spawn_free(&s);

	assert_int_equal(spawn("printf 'a\\nb'\nsleep 1", &s, &e), 0);
	assert_string_equal(s.command, "printf 'a\\nb'\nsleep 1");
	cmd_spawn_free(&s);
}

static void test_spawn_json(void **state)
{
	(void)state;
	struct cmd_spawn s;
	struct orch_err e = {0};
	assert_int_equal(spawn("{\"command\":\"sleep 5\",\"task\":\"t1\",\"track\":\"tr\",\"cwd\":\"/tmp\","
			       "\"env\":{\"A\":\"1\",\"B\":\"\"},\"model\":\"m1\"}\n", &s, &e), 0);
	assert_string_equal(s.command, "sleep 5");
	assert_string_equal(s.task, "t1");
	assert_string_equal(s.track, "tr");
	assert_string_equal(s.cwd, "/tmp");
	assert_string_equal(s.model, "m1");
	assert_int_equal(s.nenv, 2);
	assert_string_equal(s.env[0], "A=1");
	assert_string_equal(s.env[1], "B=");
	cmd_spawn_free(&s);
	assert_true(all_zero(&s, sizeof s));

	assert_int_equal(spawn("{\"command\":\"true\",\"env\":{}}", &s, &e), 0);
	assert_int_equal(s.nenv, 0);
	cmd_spawn_free(&s);
}

/* ---- kill ---- */

static void test_kill_line(void **state)
{
	(void)state;
	struct cmd_kill k;
	struct orch_err e = {0};
	assert_int_equal(kill_("7\n", false, &k, &e), 0);
	assert_int_equal(k.id, 7);
	assert_int_equal(k.signal, SIGTERM);
	assert_int_equal(k.grace_s, -1);

	assert_int_equal(kill_("7 KILL grace=2", false, &k, &e), 0);
	assert_int_equal(k.id, 7);
	assert_int_equal(k.signal, SIGKILL);
	assert_int_equal(k.grace_s, 2);

	assert_int_equal(kill_("\t12  sigint ", false, &k, &e), 0);
	assert_int_equal(k.id, 12);
	assert_int_equal(k.signal, SIGINT);
	assert_int_equal(k.grace_s, -1);

	assert_int_equal(kill_("3 9", false, &k, &e), 0);
	assert_int_equal(k.signal, 9);

	assert_int_equal(kill_("3 grace=0", false, &k, &e), 0);
	assert_int_equal(k.signal, SIGTERM);
	assert_int_equal(k.grace_s, 0);

	assert_int_equal(kill_("3 grace=3600 SIGUSR1", false, &k, &e), 0);
	assert_int_equal(k.signal, SIGUSR1);
	assert_int_equal(k.grace_s, 3600);

	assert_int_equal(kill_("2147483647 STOP\r\n", false, &k, &e), 0);
	assert_int_equal(k.id, INT_MAX);
	assert_int_equal(k.signal, SIGSTOP);
}

static void test_kill_per_worker(void **state)
{
	(void)state;
	struct cmd_kill k;
	struct orch_err e = {0};
	assert_int_equal(kill_("", true, &k, &e), 0);
	assert_int_equal(k.id, 0);
	assert_int_equal(k.signal, SIGTERM);
	assert_int_equal(k.grace_s, -1);

	assert_int_equal(kill_("\n", true, &k, &e), 0);
	assert_int_equal(k.signal, SIGTERM);

	assert_int_equal(kill_("Hup", true, &k, &e), 0);
	assert_int_equal(k.signal, SIGHUP);

	assert_int_equal(kill_("grace=5", true, &k, &e), 0);
	assert_int_equal(k.signal, SIGTERM);
	assert_int_equal(k.grace_s, 5);

	assert_int_equal(kill_("CONT grace=1\n", true, &k, &e), 0);
	assert_int_equal(k.signal, SIGCONT);
	assert_int_equal(k.grace_s, 1);

	assert_int_equal(kill_("{\"signal\":\"QUIT\",\"grace_s\":4}", true, &k, &e), 0);
	assert_int_equal(k.id, 0);
	assert_int_equal(k.signal, SIGQUIT);
	assert_int_equal(k.grace_s, 4);

	assert_int_equal(kill_("{}", true, &k, &e), 0);
	assert_int_equal(k.signal, SIGTERM);
	assert_int_equal(k.grace_s, -1);
}

static void test_kill_json(void **state)
{
	(void)state;
	struct cmd_kill k;
	struct orch_err e = {0};
	assert_int_equal(kill_("{\"id\":3,\"signal\":\"KILL\",\"grace_s\":0}", false, &k, &e), 0);
	assert_int_equal(k.id, 3);
	assert_int_equal(k.signal, SIGKILL);
	assert_int_equal(k.grace_s, 0);

	assert_int_equal(kill_("{\"id\":4,\"signal\":10}", false, &k, &e), 0);
	assert_int_equal(k.id, 4);
	assert_int_equal(k.signal, 10);
	assert_int_equal(k.grace_s, -1);

	assert_int_equal(kill_("{\"id\":5}", false, &k, &e), 0);
	assert_int_equal(k.signal, SIGTERM);

	assert_int_equal(kill_("{\"id\":5,\"signal\":null,\"grace_s\":null}", false, &k, &e), 0);
	assert_int_equal(k.signal, SIGTERM);
	assert_int_equal(k.grace_s, -1);
}

/* ---- mutate ---- */

static void test_mutate_semicolons(void **state)
{
	(void)state;
	struct cmd_mutate m;
	struct orch_err e = {0};
	assert_int_equal(mutate("hold a; add_dep b a ;release c;", &m, &e), 0);
	assert_int_equal(m.nops, 3);
	assert_int_equal(m.ops[0].kind, DAG_HOLD);
	assert_int_equal(m.ops[1].kind, DAG_ADD_DEP);
	assert_string_equal(m.ops[1].dep, "a");
	assert_string_equal(m.ops[2].task, "c");
	cmd_mutate_free(&m);
	assert_int_equal(mutate("hold a; frob b", &m, &e), -EINVAL);
	assert_non_null(strstr(e.message, "operation 2"));
}

static void test_mutate_lines(void **state)
{
	(void)state;
	struct cmd_mutate m;
	struct orch_err e = {0};
	const char *in = "# fix up the plan\n"
			 "add_dep t2 t1\n"
			 "\n"
			 "   \t\n"
			 "  remove_dep\tt3   t1\r\n"
			 "remove_task t9\n"
			 "retry t4\n"
			 "    # indented comment\n"
			 "skip t5\n"
			 "hold t6\n"
			 "release t7\n"
			 "cancel t8\n";
	assert_int_equal(mutate(in, &m, &e), 0);
	assert_int_equal(m.nops, 8);
	static const enum dag_op_kind kinds[] = {DAG_ADD_DEP, DAG_REMOVE_DEP, DAG_REMOVE_TASK,
						 DAG_RETRY, DAG_SKIP, DAG_HOLD, DAG_RELEASE, DAG_CANCEL};
	static const char *const tasks[] = {"t2", "t3", "t9", "t4", "t5", "t6", "t7", "t8"};
	for (size_t i = 0; i < 8; i++) {
		assert_int_equal(m.ops[i].kind, kinds[i]);
		assert_string_equal(m.ops[i].task, tasks[i]);
	}
	assert_string_equal(m.ops[0].dep, "t1");
	assert_string_equal(m.ops[1].dep, "t1");
	assert_string_equal(m.ops[2].dep, "");
	cmd_mutate_free(&m);
	assert_true(all_zero(&m, sizeof m));

	assert_int_equal(mutate("hold t1", &m, &e), 0);
	assert_int_equal(m.nops, 1);
	assert_int_equal(m.ops[0].kind, DAG_HOLD);
	cmd_mutate_free(&m);
}

static void test_mutate_line_messages(void **state)
{
	(void)state;
	struct cmd_mutate m;
	struct orch_err e = {0};
	assert_int_equal(mutate("hold t1\nfrob t2\n", &m, &e), -EINVAL);
	assert_string_equal(e.message, "operation 2: unknown operation \"frob\"");
	assert_true(all_zero(&m, sizeof m));

	assert_int_equal(mutate("# c\nhold t1\nadd_task t2\n", &m, &e), -EINVAL);
	assert_non_null(strstr(e.message, "operation 3: add_task needs the JSON form"));

	assert_int_equal(mutate("skip Bad!", &m, &e), -EINVAL);
	assert_string_equal(e.message,
			    "operation 1: bad task id \"Bad!\": ids are [a-z0-9][a-z0-9_-]{0,63}");

	assert_int_equal(mutate("hold t1\nadd_dep t1 t1", &m, &e), -ELOOP);
	assert_string_equal(e.message, "operation 2: task t1 depends on itself");

	assert_int_equal(mutate("add_dep t1", &m, &e), -EINVAL);
	assert_string_equal(e.message, "operation 1: add_dep takes 2 task ids: add_dep T D");
}

static void test_mutate_json(void **state)
{
	(void)state;
	struct cmd_mutate m;
	struct orch_err e = {0};
	assert_int_equal(mutate("{\"op\":\"add_task\",\"track\":\"tr\",\"task\":{\"id\":\"n1\","
				"\"command\":\"echo hi\",\"deps\":[\"t1\"],\"retries\":1}}", &m, &e), 0);
	assert_int_equal(m.nops, 1);
	assert_int_equal(m.ops[0].kind, DAG_ADD_TASK);
	assert_string_equal(m.ops[0].task, "n1");
	assert_string_equal(m.ops[0].track, "tr");
	assert_string_equal(m.ops[0].spec.id, "n1");
	assert_string_equal(m.ops[0].spec.command, "echo hi");
	assert_int_equal(m.ops[0].spec.ndeps, 1);
	assert_string_equal(m.ops[0].spec.deps[0], "t1");
	assert_int_equal(m.ops[0].spec.retries, 1);
	cmd_mutate_free(&m);

	static const struct {
		const char *json;
		enum dag_op_kind kind;
		const char *dep;
	} one[] = {
		{"{\"op\":\"remove_task\",\"task\":\"t1\"}", DAG_REMOVE_TASK, ""},
		{"{\"op\":\"add_dep\",\"task\":\"t1\",\"dep\":\"t0\"}", DAG_ADD_DEP, "t0"},
		{"{\"op\":\"remove_dep\",\"task\":\"t1\",\"dep\":\"t0\"}", DAG_REMOVE_DEP, "t0"},
		{"{\"op\":\"retry\",\"task\":\"t1\"}", DAG_RETRY, ""},
		{"{\"op\":\"skip\",\"task\":\"t1\"}", DAG_SKIP, ""},
		{"{\"op\":\"hold\",\"task\":\"t1\"}", DAG_HOLD, ""},
		{"{\"op\":\"release\",\"task\":\"t1\"}", DAG_RELEASE, ""},
		{"{\"op\":\"cancel\",\"task\":\"t1\"}\n", DAG_CANCEL, ""},
	};
	for (size_t i = 0; i < sizeof one / sizeof one[0]; i++) {
		assert_int_equal(mutate(one[i].json, &m, &e), 0);
		assert_int_equal(m.nops, 1);
		assert_int_equal(m.ops[0].kind, one[i].kind);
		assert_string_equal(m.ops[0].task, "t1");
		assert_string_equal(m.ops[0].dep, one[i].dep);
		cmd_mutate_free(&m);
	}

	assert_int_equal(mutate("[{\"op\":\"hold\",\"task\":\"a\"},\n"
				" {\"op\":\"add_task\",\"track\":\"tr\",\"task\":{\"id\":\"b\",\"command\":\"x\"}},\n"
				" {\"op\":\"add_dep\",\"task\":\"b\",\"dep\":\"a\"}]", &m, &e), 0);
	assert_int_equal(m.nops, 3);
	assert_int_equal(m.ops[0].kind, DAG_HOLD);
	assert_int_equal(m.ops[1].kind, DAG_ADD_TASK);
	assert_string_equal(m.ops[1].task, "b");
	assert_int_equal(m.ops[2].kind, DAG_ADD_DEP);
	assert_string_equal(m.ops[2].dep, "a");
	cmd_mutate_free(&m);

	/* the track ops: a track id, in both forms */
	assert_int_equal(mutate("remove_track k1; archive k2", &m, &e), 0);
	assert_int_equal(m.nops, 2);
	assert_int_equal(m.ops[0].kind, DAG_REMOVE_TRACK);
	assert_string_equal(m.ops[0].track, "k1");
	assert_int_equal(m.ops[1].kind, DAG_ARCHIVE);
	assert_string_equal(m.ops[1].track, "k2");
	cmd_mutate_free(&m);
	assert_int_equal(mutate("[{\"op\":\"archive\",\"track\":\"k2\"},"
				"{\"op\":\"remove_track\",\"track\":\"k1\"}]", &m, &e), 0);
	assert_int_equal(m.ops[0].kind, DAG_ARCHIVE);
	assert_string_equal(m.ops[0].track, "k2");
	assert_int_equal(m.ops[1].kind, DAG_REMOVE_TRACK);
	assert_string_equal(m.ops[1].track, "k1");
	cmd_mutate_free(&m);
	assert_int_equal(mutate("archive", &m, &e), -EINVAL);
	assert_string_equal(e.message, "operation 1: archive takes 1 track id: archive K");
	assert_int_equal(mutate("remove_track K!", &m, &e), -EINVAL);
	assert_int_equal(mutate("{\"op\":\"archive\",\"task\":\"k\"}", &m, &e), -EINVAL);
	assert_int_equal(mutate("{\"op\":\"archive\"}", &m, &e), -EINVAL);
	assert_int_equal(mutate("{\"op\":\"remove_track\",\"track\":7}", &m, &e), -EINVAL);

	/* a failure late in a batch frees what the earlier entries built */
	assert_int_equal(mutate("[{\"op\":\"add_task\",\"track\":\"tr\",\"task\":{\"id\":\"b\",\"command\":\"x\","
				"\"env\":{\"A\":\"1\"},\"deps\":[\"q\"]}},{\"op\":\"hold\",\"task\":\"B\"}]",
				&m, &e), -EINVAL);
	assert_string_equal(e.message,
			    "operation 2: bad task id \"B\": ids are [a-z0-9][a-z0-9_-]{0,63}");
	assert_true(all_zero(&m, sizeof m));
}

/* ---- usage ---- */

static void test_usage(void **state)
{
	(void)state;
	struct usage u;
	struct orch_err e = {0};
	assert_int_equal(usage("model=m1 in=1200 out=300\n", &u, &e), 0);
	assert_string_equal(u.model, "m1");
	assert_int_equal(u.input, 1200);
	assert_int_equal(u.output, 300);
	assert_int_equal(u.cache_read, 0);
	assert_int_equal(u.cache_write, 0);
	assert_int_equal(u.reports, 1);

	assert_int_equal(usage("out=0 cache_write=7 in=0 model=claude-3.5/x@y cache_read=9", &u, &e), 0);
	assert_string_equal(u.model, "claude-3.5/x@y");
	assert_int_equal(u.cache_read, 9);
	assert_int_equal(u.cache_write, 7);

	/* USAGE_REPORT_MAX tokens a kind is the most one report carries */
	assert_int_equal(usage("{\"model\":\"m2\",\"input_tokens\":1000000000000,\"output_tokens\":5,"
			       "\"cache_read_tokens\":1,\"cache_write_tokens\":2}", &u, &e), 0);
	assert_string_equal(u.model, "m2");
	assert_int_equal(u.input, USAGE_REPORT_MAX);
	assert_int_equal(u.output, 5);
	assert_int_equal(u.cache_read, 1);
	assert_int_equal(u.cache_write, 2);
	assert_int_equal(u.reports, 1);

	assert_int_equal(usage("{\"model\":\"m2\",\"input_tokens\":1,\"output_tokens\":2,"
			       "\"cache_read_tokens\":null}", &u, &e), 0);
	assert_int_equal(u.cache_read, 0);

	char line[300], model[MODEL_MAX + 2];
	memset(model, 'm', MODEL_MAX);
	model[MODEL_MAX] = '\0';
	snprintf(line, sizeof line, "model=%s in=1 out=1", model);
	assert_int_equal(usage(line, &u, &e), 0);
	assert_int_equal(strlen(u.model), MODEL_MAX);
	model[MODEL_MAX] = 'm';
	model[MODEL_MAX + 1] = '\0';
	snprintf(line, sizeof line, "model=%s in=1 out=1", model);
	assert_int_equal(usage(line, &u, &e), -EINVAL);
	assert_true(all_zero(&u, sizeof u));
	snprintf(line, sizeof line, "{\"model\":\"%s\",\"input_tokens\":1,\"output_tokens\":1}", model);
	assert_int_equal(usage(line, &u, &e), -EINVAL);
}

/* ---- inject ---- */

static void test_inject_line(void **state)
{
	(void)state;
	struct ctx_inject_req r;
	struct orch_err e = {0};
	assert_int_equal(inject("src/main.c\n", "/home/u/proj", &r, &e), 0);
	assert_int_equal(r.kind, CTX_FILE);
	assert_string_equal(r.path, "/home/u/proj/src/main.c");
	assert_string_equal(r.name, "");
	assert_null(r.text);
	ctx_inject_req_free(&r);

	assert_int_equal(inject("skeleton /etc/../src//lib.c", NULL, &r, &e), 0);
	assert_int_equal(r.kind, CTX_SKELETON);
	assert_string_equal(r.path, "/src/lib.c");
	ctx_inject_req_free(&r);

	assert_int_equal(inject("src/main.c as entry", "/w", &r, &e), 0);
	assert_int_equal(r.kind, CTX_FILE);
	assert_string_equal(r.path, "/w/src/main.c");
	assert_string_equal(r.name, "entry");
	ctx_inject_req_free(&r);

	assert_int_equal(inject("skeleton ./a.c as A_1.outline", "/w/", &r, &e), 0);
	assert_int_equal(r.kind, CTX_SKELETON);
	assert_string_equal(r.path, "/w/a.c");
	assert_string_equal(r.name, "A_1.outline");
	ctx_inject_req_free(&r);

	assert_int_equal(inject("text be brief, and   kind\n", NULL, &r, &e), 0);
	assert_int_equal(r.kind, CTX_TEXT);
	assert_string_equal(r.text, "be brief, and   kind");
	assert_null(r.path);
	assert_string_equal(r.name, "");
	ctx_inject_req_free(&r);

	/* "[draft].md" is a file, not JSON */
	assert_int_equal(inject("[draft].md", "/w", &r, &e), 0);
	assert_string_equal(r.path, "/w/[draft].md");
	ctx_inject_req_free(&r);

	/* a file named text or skeleton is reached with ./ */
	assert_int_equal(inject("./text", "/w", &r, &e), 0);
	assert_int_equal(r.kind, CTX_FILE);
	assert_string_equal(r.path, "/w/text");
	ctx_inject_req_free(&r);
}

static void test_inject_paths(void **state)
{
	(void)state;
	static const struct {
		const char *cwd, *in, *want;
	} cases[] = {
		{"/a/b", "c", "/a/b/c"},
		{"/a/b", "./c/./d", "/a/b/c/d"},
		{"/a/b", "../c", "/a/c"},
		{"/a/b", "../../../../c", "/c"},
		{"/a/b", "..", "/a"},
		{"/a/b", ".", "/a/b"},
		{"/", "x", "/x"},
		{"//a//b//", "c//", "/a/b/c"},
		{NULL, "/x/y/../z/", "/x/z"},
		{NULL, "/", "/"},
		{NULL, "/..", "/"},
		{NULL, "///a/./b/..", "/a"},
		{"/w", "...", "/w/..."},
		{"/w", "a/..b/c..", "/w/a/..b/c.."},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct ctx_inject_req r;
		struct orch_err e = {0};
		assert_int_equal(inject(cases[i].in, cases[i].cwd, &r, &e), 0);
		assert_string_equal(r.path, cases[i].want);
		ctx_inject_req_free(&r);
	}
}

static void test_inject_json(void **state)
{
	(void)state;
	struct ctx_inject_req r;
	struct orch_err e = {0};
	assert_int_equal(inject("{\"text\":\"be brief\",\"name\":\"style\"}", NULL, &r, &e), 0);
	assert_int_equal(r.kind, CTX_TEXT);
	assert_string_equal(r.text, "be brief");
	assert_string_equal(r.name, "style");
	ctx_inject_req_free(&r);

	assert_int_equal(inject("{\"text\":\"line 1\\nline 2\\n\",\"kind\":\"text\"}", NULL, &r, &e), 0);
	assert_string_equal(r.text, "line 1\nline 2\n");
	assert_string_equal(r.name, "");
	ctx_inject_req_free(&r);

	assert_int_equal(inject("{\"path\":\"my notes.md\"}", "/home/u", &r, &e), 0);
	assert_int_equal(r.kind, CTX_FILE);
	assert_string_equal(r.path, "/home/u/my notes.md");
	ctx_inject_req_free(&r);

	assert_int_equal(inject("{\"path\":\"/s/x.c\",\"kind\":\"skeleton\",\"name\":\"x\"}", NULL, &r, &e), 0);
	assert_int_equal(r.kind, CTX_SKELETON);
	assert_string_equal(r.path, "/s/x.c");
	assert_string_equal(r.name, "x");
	ctx_inject_req_free(&r);

	assert_int_equal(inject("{\"path\":\"/s/x.c\",\"kind\":\"file\",\"name\":null}", NULL, &r, &e), 0);
	assert_int_equal(r.kind, CTX_FILE);
	ctx_inject_req_free(&r);
	assert_true(all_zero(&r, sizeof r));

	assert_int_equal(inject("src/x.c", NULL, &r, &e), -EINVAL);
	assert_string_equal(e.message,
			    "a relative path needs the writer's working directory; give an absolute path");
}

/* ---- one-value files ---- */

static void test_name(void **state)
{
	(void)state;
	char out[ID_MAX + 1];
	struct orch_err e = {0};
	assert_int_equal(name("style\n", out, &e), 0);
	assert_string_equal(out, "style");
	assert_int_equal(name("  A.b-c_1 \r\n", out, &e), 0);
	assert_string_equal(out, "A.b-c_1");
	assert_int_equal(name("{\"name\":\"main.c\"}", out, &e), 0);
	assert_string_equal(out, "main.c");
	char long_name[66];
	memset(long_name, 'n', 64);
	long_name[64] = '\0';
	assert_int_equal(name(long_name, out, &e), 0);
	assert_string_equal(out, long_name);
}

static void test_int(void **state)
{
	(void)state;
	int64_t v = 0;
	struct orch_err e = {0};
	assert_int_equal(int_("4\n", 1, 1024, &v, &e), 0);
	assert_int_equal(v, 4);
	assert_int_equal(int_(" +7 ", 1, 1024, &v, &e), 0);
	assert_int_equal(v, 7);
	assert_int_equal(int_("-3", -5, 5, &v, &e), 0);
	assert_int_equal(v, -3);
	assert_int_equal(int_("-9223372036854775808", INT64_MIN, INT64_MAX, &v, &e), 0);
	assert_true(v == INT64_MIN);
	assert_int_equal(int_("9223372036854775807", INT64_MIN, INT64_MAX, &v, &e), 0);
	assert_true(v == INT64_MAX);
	v = 42;
	assert_int_equal(int_("9223372036854775808", INT64_MIN, INT64_MAX, &v, &e), -EINVAL);
	assert_int_equal(v, 42);
	assert_int_equal(int_("1025", 1, 1024, &v, &e), -EINVAL);
	assert_string_equal(e.message, "1025 is out of range 1..1024");
}

static void test_usd(void **state)
{
	(void)state;
	static const struct {
		const char *in;
		int64_t micro;
	} ok[] = {
		{"12", 12000000}, {"12.5", 12500000}, {"0.000001", 1}, {"0", 0},
		{" 3.25 \n", 3250000}, {".5", 500000}, {"007.010", 7010000},
		{"1000000000000", 1000000000000000000LL}, {"0.999999", 999999},
	};
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		int64_t m = -7;
		struct orch_err e = {0};
		assert_int_equal(usd(ok[i].in, &m, &e), 0);
		assert_true(m == ok[i].micro);
	}
}

static void test_freeze(void **state)
{
	(void)state;
	assert_true(freeze("freeze"));
	assert_true(freeze("freeze\n"));
	assert_true(freeze("  FREEZE  "));
	assert_true(freeze("{\"freeze\":true}"));
	assert_false(freeze(""));
	assert_false(freeze("\n"));
	assert_false(freeze("pause"));
	assert_false(freeze("freezer"));
	assert_false(freeze("{\"freeze\":false}"));
	assert_false(freeze("{\"freeze\":1}"));
	assert_false(freeze("{\"freeze\":true"));
	assert_false(freeze("{}"));
	bool f;
	struct orch_err e;
	assert_int_equal(cmd_parse_pause("freeze\0x", 8, &f, &e), -EINVAL);
	assert_int_equal(cmd_parse_pause("\xff", 1, &f, &e), -EINVAL);
	assert_int_equal(cmd_parse_text("go\xc3", 3, &e), -EINVAL);
	assert_int_equal(cmd_parse_text("go", 2, &e), 0);
}

/* ---- signals ---- */

static void test_signals(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		int sig;
	} named[] = {
		{"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"KILL", SIGKILL},
		{"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"STOP", SIGSTOP},
		{"CONT", SIGCONT}, {"ALRM", SIGALRM}, {"CHLD", SIGCHLD}, {"WINCH", SIGWINCH},
	};
	for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
		char buf[32];
		assert_string_equal(signal_name(named[i].sig), named[i].name);
		assert_int_equal(signal_from_name(named[i].name), named[i].sig);
		snprintf(buf, sizeof buf, "SIG%s", named[i].name);
		assert_int_equal(signal_from_name(buf), named[i].sig);
		snprintf(buf, sizeof buf, "sig%s", named[i].name);
		for (char *c = buf; *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		assert_int_equal(signal_from_name(buf), named[i].sig);
		assert_int_equal(signal_from_name(buf + 3), named[i].sig);
		snprintf(buf, sizeof buf, "%d", named[i].sig);
		assert_int_equal(signal_from_name(buf), named[i].sig);
	}
	/* every signal number survives name -> number, named or not */
	for (int s = 1; s <= 64; s++) {
		const char *n = signal_name(s);
		assert_non_null(n);
		assert_int_equal(signal_from_name(n), s);
	}
	assert_string_equal(signal_name(40), "40");
	assert_int_equal(signal_from_name("SigTerm"), SIGTERM);
	assert_int_equal(signal_from_name("64"), 64);
	assert_int_equal(signal_from_name("09"), 9);
	assert_int_equal(signal_from_name("0"), -1);
	assert_int_equal(signal_from_name("65"), -1);
	assert_int_equal(signal_from_name("-9"), -1);
	assert_int_equal(signal_from_name("FOO"), -1);
	assert_int_equal(signal_from_name("SIG"), -1);
	assert_int_equal(signal_from_name("SIGSIGTERM"), -1);
	assert_int_equal(signal_from_name(""), -1);
	assert_int_equal(signal_from_name(NULL), -1);
	assert_int_equal(signal_from_name("9x"), -1);
	assert_non_null(signal_name(0));
	assert_non_null(signal_name(65));
	assert_non_null(signal_name(-1));
}

/* ---- bad input, table-driven ---- */

enum parser { P_PLAN, P_SPAWN, P_KILL, P_KILLW, P_MUTATE, P_USAGE, P_INJECT, P_INJECT_NOCWD,
	      P_NAME, P_INT, P_USD };

struct bad {
	enum parser p;
	const char *in;
	int errnum;
};

#define T1(extra) "{\"id\":\"x\",\"tasks\":[{\"id\":\"t1\",\"command\":\"c\"" extra "}]}"

static const struct bad bad_inputs[] = {
	/* plan */
	{P_PLAN, "", EINVAL},
	{P_PLAN, "hello", EINVAL},
	{P_PLAN, "{", EINVAL},
	{P_PLAN, "{\"id\":\"x\",\"tasks\":[]} x", EINVAL},
	{P_PLAN, "{\"id\":\"x\",\"tasks\":[]}{}", EINVAL},
	{P_PLAN, "[]", EINVAL},
	{P_PLAN, "{\"tasks\":[]}", EINVAL},
	{P_PLAN, "{\"id\":\"T1\",\"tasks\":[]}", EINVAL},
	{P_PLAN, "{\"id\":\"-x\",\"tasks\":[]}", EINVAL},
	{P_PLAN, "{\"id\":\"x\",\"tasks\":[],\"budget\":5}", EINVAL},
	{P_PLAN, "{\"id\":\"x\",\"tasks\":{}}", EINVAL},
	{P_PLAN, "{\"id\":\"x\"}", EINVAL},
	{P_PLAN, "{\"id\":\"x\",\"budget_usd\":-1,\"tasks\":[]}", EINVAL},
	{P_PLAN, "{\"id\":\"x\",\"budget_usd\":\"5\",\"tasks\":[]}", EINVAL},
	{P_PLAN, "{\"id\":\"x\",\"title\":5,\"tasks\":[]}", EINVAL},
	{P_PLAN, "{\"id\":5,\"tasks\":[]}", EINVAL},
	{P_PLAN, "{\"id\":\"x\",\"id\":\"y\",\"tasks\":[]}", EINVAL},
	{P_PLAN, "{\"id\":\"x\",\"tasks\":[5]}", EINVAL},
	{P_PLAN, "{\"id\":\"x\",\"tasks\":[{\"id\":\"t1\"}]}", EINVAL},
	{P_PLAN, "{\"id\":\"x\",\"tasks\":[{\"command\":\"c\"}]}", EINVAL},
	{P_PLAN, "{\"id\":\"x\",\"tasks\":[{\"id\":\"t1\",\"command\":\"\"}]}", EINVAL},
	{P_PLAN, "{\"id\":\"x\",\"tasks\":[{\"id\":\"t1\",\"command\":\" \\n\"}]}", EINVAL},
	{P_PLAN, "{\"id\":\"x\",\"tasks\":[{\"id\":\"t1\",\"command\":[\"c\"]}]}", EINVAL},
	{P_PLAN, T1(",\"retries\":-1"), EINVAL},
	{P_PLAN, T1(",\"retries\":1.5"), EINVAL},
	{P_PLAN, T1(",\"retries\":\"3\""), EINVAL},
	{P_PLAN, T1(",\"retries\":1001"), EINVAL},
	{P_PLAN, T1(",\"timeout_s\":31536001"), EINVAL},
	{P_PLAN, T1(",\"timeout_s\":-1"), EINVAL},
	{P_PLAN, T1(",\"priority\":2147483648"), EINVAL},
	{P_PLAN, T1(",\"priority\":1e300"), EINVAL},
	{P_PLAN, T1(",\"deps\":\"t0\""), EINVAL},
	{P_PLAN, T1(",\"deps\":[1]"), EINVAL},
	{P_PLAN, T1(",\"deps\":[\"Bad\"]"), EINVAL},
	{P_PLAN, T1(",\"deps\":[\"\"]"), EINVAL},
	{P_PLAN, T1(",\"env\":[\"A=1\"]"), EINVAL},
	{P_PLAN, T1(",\"env\":{\"1A\":\"x\"}"), EINVAL},
	{P_PLAN, T1(",\"env\":{\"A=B\":\"x\"}"), EINVAL},
	{P_PLAN, T1(",\"env\":{\"A\":1}"), EINVAL},
	{P_PLAN, T1(",\"env\":{\"A\":\"1\",\"A\":\"2\"}"), EINVAL},
	{P_PLAN, T1(",\"cwd\":\"rel/dir\""), EINVAL},
	{P_PLAN, T1(",\"cwd\":7"), EINVAL},
	{P_PLAN, T1(",\"model\":\"has space\""), EINVAL},
	{P_PLAN, T1(",\"model\":\"\""), EINVAL},
	{P_PLAN, T1(",\"title\":false"), EINVAL},
	{P_PLAN, T1(",\"retires\":1"), EINVAL},
	{P_PLAN, T1(",\"ID\":\"t1\""), EINVAL},
	{P_PLAN, T1(",\"deps\":[\"t1\"]"), ELOOP},
	{P_PLAN, "{\"id\":\"x\",\"tasks\":[{\"id\":\"a\",\"command\":\"c\"},{\"id\":\"a\",\"command\":\"d\"}]}",
	 EEXIST},
	/* spawn */
	{P_SPAWN, "", EINVAL},
	{P_SPAWN, "\n", EINVAL},
	{P_SPAWN, "  \t \n", EINVAL},
	{P_SPAWN, "{}", EINVAL},
	{P_SPAWN, "{\"command\":\"\"}", EINVAL},
	{P_SPAWN, "{\"cmd\":\"x\"}", EINVAL},
	{P_SPAWN, "{\"command\":[\"x\"]}", EINVAL},
	{P_SPAWN, "{\"command\":\"x\",\"task\":\"BAD\"}", EINVAL},
	{P_SPAWN, "{\"command\":\"x\",\"track\":7}", EINVAL},
	{P_SPAWN, "{\"command\":\"x\",\"env\":{\"A-B\":\"1\"}}", EINVAL},
	{P_SPAWN, "{\"command\":\"x\",\"env\":{\"\":\"1\"}}", EINVAL},
	{P_SPAWN, "{\"command\":\"x\",\"cwd\":\"tmp\"}", EINVAL},
	{P_SPAWN, "{\"command\":\"x\",\"model\":\"a\\tb\"}", EINVAL},
	{P_SPAWN, "{\"command\":\"x\"} trailing", EINVAL},
	{P_SPAWN, "{ echo hi; }", EINVAL},
	/* kill */
	{P_KILL, "", EINVAL},
	{P_KILL, "\n", EINVAL},
	{P_KILL, "0", EINVAL},
	{P_KILL, "-1", EINVAL},
	{P_KILL, "+1", EINVAL},
	{P_KILL, "abc", EINVAL},
	{P_KILL, "2147483648", EINVAL},
	{P_KILL, "7 FOO", EINVAL},
	{P_KILL, "7 KILL TERM", EINVAL},
	{P_KILL, "7 grace=-1", EINVAL},
	{P_KILL, "7 grace=3601", EINVAL},
	{P_KILL, "7 grace=x", EINVAL},
	{P_KILL, "7 grace=", EINVAL},
	{P_KILL, "7 grace=1 grace=2", EINVAL},
	{P_KILL, "7 KILL grace=1 extra", EINVAL},
	{P_KILL, "7 65", EINVAL},
	{P_KILL, "7 0", EINVAL},
	{P_KILL, "7 SIGVERYLONGNAMEINDEED", EINVAL},
	{P_KILL, "{\"signal\":\"KILL\"}", EINVAL},
	{P_KILL, "{\"id\":\"7\"}", EINVAL},
	{P_KILL, "{\"id\":0}", EINVAL},
	{P_KILL, "{\"id\":7.5}", EINVAL},
	{P_KILL, "{\"id\":7,\"signal\":true}", EINVAL},
	{P_KILL, "{\"id\":7,\"signal\":\"NOPE\"}", EINVAL},
	{P_KILL, "{\"id\":7,\"signal\":0}", EINVAL},
	{P_KILL, "{\"id\":7,\"grace_s\":1.5}", EINVAL},
	{P_KILL, "{\"id\":7,\"grace_s\":3601}", EINVAL},
	{P_KILL, "{\"id\":7,\"sig\":\"KILL\"}", EINVAL},
	{P_KILL, "[7]", EINVAL},
	{P_KILLW, "FOO", EINVAL},
	{P_KILLW, "KILL grace=1 x", EINVAL},
	{P_KILLW, "KILL INT", EINVAL},
	{P_KILLW, "{\"id\":7}", EINVAL},
	{P_KILLW, "{\"signal\":\"KILL\",\"extra\":1}", EINVAL},
	/* mutate */
	{P_MUTATE, "", EINVAL},
	{P_MUTATE, "\n\n   \n", EINVAL},
	{P_MUTATE, "# only a comment\n", EINVAL},
	{P_MUTATE, "frob t1", EINVAL},
	{P_MUTATE, "HOLD t1", EINVAL},
	{P_MUTATE, "hold t1\nfrob t2", EINVAL},
	{P_MUTATE, "add_task t1", EINVAL},
	{P_MUTATE, "hold", EINVAL},
	{P_MUTATE, "hold t1 t2", EINVAL},
	{P_MUTATE, "hold t1 # why", EINVAL},
	{P_MUTATE, "add_dep t1", EINVAL},
	{P_MUTATE, "add_dep t1 t2 t3", EINVAL},
	{P_MUTATE, "remove_dep t1", EINVAL},
	{P_MUTATE, "hold T1", EINVAL},
	{P_MUTATE, "cancel t1 t2 t3 t4 t5 t6 t7 t8 t9 t10", EINVAL},
	{P_MUTATE, "add_dep t1 t1", ELOOP},
	{P_MUTATE, "[]", EINVAL},
	{P_MUTATE, "42", EINVAL},
	{P_MUTATE, "{\"task\":\"t1\"}", EINVAL},
	{P_MUTATE, "{\"op\":1,\"task\":\"t1\"}", EINVAL},
	{P_MUTATE, "{\"op\":\"frob\",\"task\":\"t1\"}", EINVAL},
	{P_MUTATE, "{\"op\":\"hold\"}", EINVAL},
	{P_MUTATE, "{\"op\":\"hold\",\"task\":\"t1\",\"dep\":\"t2\"}", EINVAL},
	{P_MUTATE, "{\"op\":\"hold\",\"task\":[\"t1\"]}", EINVAL},
	{P_MUTATE, "{\"op\":\"add_dep\",\"task\":\"t1\"}", EINVAL},
	{P_MUTATE, "{\"op\":\"add_dep\",\"task\":\"t1\",\"dep\":\"t1\"}", ELOOP},
	{P_MUTATE, "{\"op\":\"add_task\",\"task\":{\"id\":\"t1\",\"command\":\"x\"}}", EINVAL},
	{P_MUTATE, "{\"op\":\"add_task\",\"track\":\"a\"}", EINVAL},
	{P_MUTATE, "{\"op\":\"add_task\",\"track\":\"a\",\"task\":\"t1\"}", EINVAL},
	{P_MUTATE, "{\"op\":\"add_task\",\"track\":\"a\",\"task\":{\"id\":\"t1\"}}", EINVAL},
	{P_MUTATE, "{\"op\":\"add_task\",\"track\":\"a\",\"task\":{\"id\":\"t1\",\"command\":\"x\","
		   "\"deps\":[\"t1\"]}}", ELOOP},
	{P_MUTATE, "{\"op\":\"add_task\",\"track\":\"a\",\"dep\":\"b\",\"task\":{\"id\":\"t1\","
		   "\"command\":\"x\"}}", EINVAL},
	{P_MUTATE, "[{\"op\":\"hold\",\"task\":\"t1\"},5]", EINVAL},
	{P_MUTATE, "[{\"op\":\"hold\",\"task\":\"t1\"}", EINVAL},
	/* usage */
	{P_USAGE, "", EINVAL},
	{P_USAGE, "model=m1 in=1", EINVAL},
	{P_USAGE, "model=m1 out=1", EINVAL},
	{P_USAGE, "in=1 out=1", EINVAL},
	{P_USAGE, "model=m1 in=-1 out=1", EINVAL},
	{P_USAGE, "model=m1 in=1.5 out=1", EINVAL},
	{P_USAGE, "model=m1 in= out=1", EINVAL},
	{P_USAGE, "model=m1 in=1 out=1 foo=2", EINVAL},
	{P_USAGE, "model=m1 in=1 in=2 out=1", EINVAL},
	{P_USAGE, "model= in=1 out=1", EINVAL},
	{P_USAGE, "model=m1 in=9007199254740993 out=1", EINVAL},
	{P_USAGE, "model=m1 in=1000000000001 out=1", EINVAL},
	{P_USAGE, "{\"model\":\"m1\",\"input_tokens\":1,\"output_tokens\":1000000000001}", EINVAL},
	{P_USAGE, "model m1 in=1 out=1", EINVAL},
	{P_USAGE, "model=m1 in=1 out=1 cache_read=1 cache_write=1 x=1", EINVAL},
	{P_USAGE, "{\"model\":\"m1\",\"input_tokens\":1}", EINVAL},
	{P_USAGE, "{\"model\":\"m1\",\"output_tokens\":1}", EINVAL},
	{P_USAGE, "{\"input_tokens\":1,\"output_tokens\":1}", EINVAL},
	{P_USAGE, "{\"model\":\"m1\",\"input_tokens\":-1,\"output_tokens\":1}", EINVAL},
	{P_USAGE, "{\"model\":\"m1\",\"input_tokens\":\"1\",\"output_tokens\":1}", EINVAL},
	{P_USAGE, "{\"model\":\"m1\",\"input_tokens\":1,\"output_tokens\":1e16}", EINVAL},
	{P_USAGE, "{\"model\":\"m1\",\"input_tokens\":1,\"output_tokens\":1,\"cost\":3}", EINVAL},
	{P_USAGE, "{\"model\":\"m1\",\"input_tokens\":1,\"output_tokens\":1,\"cache_read_tokens\":0.5}",
	 EINVAL},
	{P_USAGE, "{\"model\":7,\"input_tokens\":1,\"output_tokens\":1}", EINVAL},
	{P_USAGE, "{\"model\":\"m 1\",\"input_tokens\":1,\"output_tokens\":1}", EINVAL},
	/* inject */
	{P_INJECT, "", EINVAL},
	{P_INJECT, "   \n", EINVAL},
	{P_INJECT, "text", EINVAL},
	{P_INJECT, "text   ", EINVAL},
	{P_INJECT, "skeleton", EINVAL},
	{P_INJECT, "a b", EINVAL},
	{P_INJECT, "a as", EINVAL},
	{P_INJECT, "a as .hidden", EINVAL},
	{P_INJECT, "a as bad/name", EINVAL},
	{P_INJECT, "a as x y", EINVAL},
	{P_INJECT, "skeleton a b", EINVAL},
	{P_INJECT, "text one\ntwo", EINVAL},
	{P_INJECT, "a.c\nb.c", EINVAL},
	{P_INJECT, "{\"path\":\"a\",\"text\":\"b\"}", EINVAL},
	{P_INJECT, "{}", EINVAL},
	{P_INJECT, "{\"name\":\"x\"}", EINVAL},
	{P_INJECT, "{\"text\":\"\"}", EINVAL},
	{P_INJECT, "{\"text\":5}", EINVAL},
	{P_INJECT, "{\"path\":\"\"}", EINVAL},
	{P_INJECT, "{\"path\":5}", EINVAL},
	{P_INJECT, "{\"text\":\"x\",\"kind\":\"file\"}", EINVAL},
	{P_INJECT, "{\"text\":\"x\",\"kind\":\"skeleton\"}", EINVAL},
	{P_INJECT, "{\"path\":\"a\",\"kind\":\"text\"}", EINVAL},
	{P_INJECT, "{\"path\":\"a\",\"kind\":\"dir\"}", EINVAL},
	{P_INJECT, "{\"path\":\"a\",\"kind\":1}", EINVAL},
	{P_INJECT, "{\"path\":\"a\",\"name\":\"x y\"}", EINVAL},
	{P_INJECT, "{\"path\":\"a\",\"name\":\"\"}", EINVAL},
	{P_INJECT, "{\"path\":\"a\",\"name\":3}", EINVAL},
	{P_INJECT, "{\"path\":\"a\",\"size\":1}", EINVAL},
	{P_INJECT_NOCWD, "src/main.c", EINVAL},
	{P_INJECT_NOCWD, "skeleton a.c as a", EINVAL},
	{P_INJECT_NOCWD, "{\"path\":\"x\"}", EINVAL},
	/* name */
	{P_NAME, "", EINVAL},
	{P_NAME, "\n", EINVAL},
	{P_NAME, ".hidden", EINVAL},
	{P_NAME, "a b", EINVAL},
	{P_NAME, "a/b", EINVAL},
	{P_NAME, "ünï", EINVAL},
	{P_NAME, "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn", EINVAL},
	{P_NAME, "{\"name\":5}", EINVAL},
	{P_NAME, "{\"nom\":\"x\"}", EINVAL},
	{P_NAME, "{\"name\":\"x\"", EINVAL},
	/* int, in 1..1024 */
	{P_INT, "", EINVAL},
	{P_INT, "0", EINVAL},
	{P_INT, "1025", EINVAL},
	{P_INT, "-1", EINVAL},
	{P_INT, "abc", EINVAL},
	{P_INT, "4.0", EINVAL},
	{P_INT, "1e3", EINVAL},
	{P_INT, "0x10", EINVAL},
	{P_INT, "99999999999999999999999", EINVAL},
	{P_INT, "- 4", EINVAL},
	{P_INT, "4 5", EINVAL},
	{P_INT, "+", EINVAL},
	/* usd */
	{P_USD, "", EINVAL},
	{P_USD, "-1", EINVAL},
	{P_USD, "-0.5", EINVAL},
	{P_USD, "1.2345678", EINVAL},
	{P_USD, "0.0000001", EINVAL},
	{P_USD, "1e3", EINVAL},
	{P_USD, "abc", EINVAL},
	{P_USD, "1.", EINVAL},
	{P_USD, ".", EINVAL},
	{P_USD, "1.2.3", EINVAL},
	{P_USD, "$5", EINVAL},
	{P_USD, "+5", EINVAL},
	{P_USD, "5 USD", EINVAL},
	{P_USD, "1000000000000.000001", EINVAL},
	{P_USD, "99999999999999999999999", EINVAL},
};

static int run_bad(const struct bad *b, struct orch_err *e)
{
	int rc;
	switch (b->p) {
	case P_PLAN: {
		struct cmd_plan p;
		rc = plan(b->in, &p, e);
		assert_true(all_zero(&p, sizeof p));
		cmd_plan_free(&p);
		return rc;
	}
	case P_SPAWN: {
		struct cmd_spawn s;
		rc = spawn(b->in, &s, e);
		assert_true(all_zero(&s, sizeof s));
		cmd_spawn_free(&s);
		return rc;
	}
	case P_KILL:
	case P_KILLW: {
		struct cmd_kill k;
		rc = kill_(b->in, b->p == P_KILLW, &k, e);
		assert_true(all_zero(&k, sizeof k));
		return rc;
	}
	case P_MUTATE: {
		struct cmd_mutate m;
		rc = mutate(b->in, &m, e);
		assert_true(all_zero(&m, sizeof m));
		cmd_mutate_free(&m);
		return rc;
	}
	case P_USAGE: {
		struct usage u;
		rc = usage(b->in, &u, e);
		assert_true(all_zero(&u, sizeof u));
		return rc;
	}
	case P_INJECT:
	case P_INJECT_NOCWD: {
		struct ctx_inject_req r;
		rc = inject(b->in, b->p == P_INJECT ? "/home/u" : NULL, &r, e);
		assert_true(all_zero(&r, sizeof r));
		ctx_inject_req_free(&r);
		return rc;
	}
	case P_NAME: {
		char out[ID_MAX + 1];
		rc = name(b->in, out, e);
		assert_string_equal(out, "");
		return rc;
	}
	case P_INT: {
		int64_t v = 77;
		rc = int_(b->in, 1, 1024, &v, e);
		assert_int_equal(v, 77);
		return rc;
	}
	case P_USD: {
		int64_t v = 77;
		rc = usd(b->in, &v, e);
		assert_int_equal(v, 77);
		return rc;
	}
	}
	fail();
	return 0;
}

static void test_bad_inputs(void **state)
{
	(void)state;
	size_t n = sizeof bad_inputs / sizeof bad_inputs[0];
	assert_true(n >= 40);
	for (size_t i = 0; i < n; i++) {
		struct orch_err e = {0};
		int rc = run_bad(&bad_inputs[i], &e);
		if (rc != -bad_inputs[i].errnum || e.errnum != bad_inputs[i].errnum ||
		    e.message[0] == '\0')
			fail_msg("bad input %zu (%s): rc %d errnum %d message \"%s\", want -%d",
				 i, bad_inputs[i].in, rc, e.errnum, e.message, bad_inputs[i].errnum);
	}
}

/* NUL bytes would cut strings short downstream: every parser refuses them. */
static void test_nul_bytes(void **state)
{
	(void)state;
	static const char in[] = "make\0 test";
	size_t n = sizeof in - 1;
	struct orch_err e = {0};
	struct cmd_plan p;
	struct cmd_spawn s;
	struct cmd_kill k;
	struct cmd_mutate m;
	struct usage u;
	struct ctx_inject_req r;
	char out[ID_MAX + 1];
	int64_t v;
#define LIT(s) s, sizeof s - 1
	assert_int_equal(cmd_parse_plan(LIT("{\"id\":\"x\",\0\"tasks\":[]}"), &p, &e), -EINVAL);
	assert_int_equal(cmd_parse_spawn(in, n, &s, &e), -EINVAL);
	assert_int_equal(cmd_parse_spawn(LIT("{\"command\":\"a\0b\"}"), &s, &e), -EINVAL);
	assert_int_equal(cmd_parse_kill(LIT("7\0"), false, &k, &e), -EINVAL);
	assert_int_equal(cmd_parse_mutate(LIT("hold t1\0"), &m, &e), -EINVAL);
	assert_int_equal(cmd_parse_usage(LIT("model=m\0 in=1 out=1"), &u, &e), -EINVAL);
	assert_int_equal(cmd_parse_inject(LIT("/a\0/b"), NULL, &r, &e), -EINVAL);
	assert_int_equal(cmd_parse_name(LIT("a\0b"), out, &e), -EINVAL);
	assert_int_equal(cmd_parse_int(LIT("1\0"), 0, 9, &v, &e), -EINVAL);
	assert_int_equal(cmd_parse_usd(LIT("1\0"), &v, &e), -EINVAL);
#undef LIT
	assert_non_null(strstr(e.message, "NUL"));
}

/* Parsers never read past len: exact() copies carry no terminator, and a
 * long message is cut to the buffer, never past it. */
static void test_long_inputs(void **state)
{
	(void)state;
	size_t n = 20000;
	char *big = malloc(n + 1);
	assert_non_null(big);
	memset(big, 'x', n);
	big[n] = '\0';
	struct orch_err e = {0};
	struct cmd_mutate m;
	assert_int_equal(mutate(big, &m, &e), -EINVAL);
	assert_true(strlen(e.message) < sizeof e.message);
	char out[ID_MAX + 1];
	assert_int_equal(name(big, out, &e), -EINVAL);
	struct cmd_spawn s;
	assert_int_equal(spawn(big, &s, &e), 0);
	assert_int_equal(strlen(s.command), n);
	cmd_spawn_free(&s);

	/* many operations in one write */
	struct buf b = BUF_INIT;
	for (int i = 0; i < 500; i++)
		buf_printf(&b, "hold t%d\n", i);
	assert_int_equal(mutate(b.data, &m, &e), 0);
	assert_int_equal(m.nops, 500);
	assert_string_equal(m.ops[499].task, "t499");
	cmd_mutate_free(&m);
	buf_free(&b);
	free(big);
}

/* A 1 MiB write can hold ~100k keys, deps or lines; the duplicate checks must
 * not be quadratic in them (this test takes minutes if they are). */
static void test_many_items(void **state)
{
	(void)state;
	enum { N = 100000 };
	struct orch_err e = {0};
	struct buf b = BUF_INIT;

	/* an env is bounded: ENV_VARS_MAX names, duplicates found by sorting */
	buf_puts(&b, "{\"command\":\"x\",\"env\":{");
	for (int i = 0; i < ENV_VARS_MAX; i++)
		buf_printf(&b, "%s\"K%d\":\"v\"", i ? "," : "", i);
	buf_puts(&b, "}}");
	struct cmd_spawn s;
	assert_int_equal(spawn(b.data, &s, &e), 0);
	assert_int_equal(s.nenv, ENV_VARS_MAX);
	assert_string_equal(s.env[ENV_VARS_MAX - 1], "K1023=v");
	cmd_spawn_free(&s);
	b.len -= 2;
	buf_puts(&b, ",\"K5\":\"again\"}}");
	assert_int_equal(spawn(b.data, &s, &e), -EINVAL);
	assert_string_equal(e.message, "\"env\" holds 1025 names; at most 1024");
	b.len -= 2 + strlen(",\"K5\":\"again\"") + strlen(",\"K1023\":\"v\"");
	buf_puts(&b, ",\"K5\":\"again\"}}");
	assert_int_equal(spawn(b.data, &s, &e), -EINVAL);
	assert_string_equal(e.message, "\"env\" gives \"K5\" twice");
	buf_free(&b);

	buf_puts(&b, "{\"id\":\"x\",\"tasks\":[{\"id\":\"t\",\"command\":\"c\",\"deps\":[");
	for (int i = 0; i < N; i++)
		buf_printf(&b, "%s\"d%d\"", i ? "," : "", (N - i) % 3);
	buf_puts(&b, "]}]}");
	struct cmd_plan p;
	assert_int_equal(plan(b.data, &p, &e), 0);
	assert_int_equal(p.tasks[0].ndeps, 3);
	assert_string_equal(p.tasks[0].deps[0], "d1");   /* first-seen order */
	assert_string_equal(p.tasks[0].deps[1], "d0");
	assert_string_equal(p.tasks[0].deps[2], "d2");
	cmd_plan_free(&p);
	buf_free(&b);

	buf_puts(&b, "{\"id\":\"x\",\"tasks\":[");
	for (int i = 0; i < N / 4; i++)
		buf_printf(&b, "%s{\"id\":\"t%d\",\"command\":\"c\"}", i ? "," : "", i);
	buf_puts(&b, "]}");
	assert_int_equal(plan(b.data, &p, &e), 0);
	assert_int_equal(p.ntasks, N / 4);
	cmd_plan_free(&p);
	buf_free(&b);

	for (int i = 0; i < N; i++)
		buf_printf(&b, "hold t%d\n", i);
	struct cmd_mutate m;
	assert_int_equal(mutate(b.data, &m, &e), 0);
	assert_int_equal(m.nops, N);
	assert_string_equal(m.ops[N - 1].task, "t99999");
	cmd_mutate_free(&m);
	buf_free(&b);
}

/* Every *_free leaves its struct zeroed, so a second free (an error path
 * that frees again) does nothing; and NULL is taken. */
static void test_free_zeroed(void **state)
{
	(void)state;
	struct orch_err e = {0};
	struct cmd_plan p;
	assert_int_equal(plan("{\"id\":\"k\",\"title\":\"t\",\"tasks\":[{\"id\":\"a\",\"command\":\"x\","
			      "\"env\":{\"A\":\"1\"},\"deps\":[\"b\"]},{\"id\":\"b\",\"command\":\"y\"}]}", &p, &e), 0);
	cmd_plan_free(&p);
	assert_true(all_zero(&p, sizeof p));
	cmd_plan_free(&p);
	struct cmd_spawn s;
	assert_int_equal(spawn("{\"command\":\"x\",\"cwd\":\"/tmp\",\"model\":\"m\",\"env\":{\"A\":\"1\"}}", &s, &e), 0);
	cmd_spawn_free(&s);
	assert_true(all_zero(&s, sizeof s));
	cmd_spawn_free(&s);
	struct cmd_mutate m;
	assert_int_equal(mutate("hold a; add_dep a b", &m, &e), 0);
	cmd_mutate_free(&m);
	assert_true(all_zero(&m, sizeof m));
	cmd_mutate_free(&m);
	struct task_spec t = {0};
	task_spec_free(&t);
	assert_true(all_zero(&t, sizeof t));
	struct ctx_inject_req r = {0};
	ctx_inject_req_free(&r);
	assert_true(all_zero(&r, sizeof r));
	task_spec_free(NULL);
	cmd_plan_free(NULL);
	cmd_spawn_free(NULL);
	cmd_mutate_free(NULL);
	ctx_inject_req_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plan_full),
		cmocka_unit_test(test_plan_minimal),
		cmocka_unit_test(test_plan_messages),
		cmocka_unit_test(test_plan_runners),
		cmocka_unit_test(test_spawn_line),
		cmocka_unit_test(test_spawn_json),
		cmocka_unit_test(test_kill_line),
		cmocka_unit_test(test_kill_per_worker),
		cmocka_unit_test(test_kill_json),
		cmocka_unit_test(test_mutate_lines),
		cmocka_unit_test(test_mutate_semicolons),
		cmocka_unit_test(test_mutate_line_messages),
		cmocka_unit_test(test_mutate_json),
		cmocka_unit_test(test_usage),
		cmocka_unit_test(test_inject_line),
		cmocka_unit_test(test_inject_paths),
		cmocka_unit_test(test_inject_json),
		cmocka_unit_test(test_name),
		cmocka_unit_test(test_int),
		cmocka_unit_test(test_usd),
		cmocka_unit_test(test_freeze),
		cmocka_unit_test(test_signals),
		cmocka_unit_test(test_bad_inputs),
		cmocka_unit_test(test_nul_bytes),
		cmocka_unit_test(test_long_inputs),
		cmocka_unit_test(test_many_items),
		cmocka_unit_test(test_free_zeroed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
