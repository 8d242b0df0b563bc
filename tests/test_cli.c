/* test_cli: the orchfs command's pieces that need no daemon: which argv is
 * a command, exit statuses, formats, the tables made from the daemon's JSON,
 * top's state kept from events, URLs and error objects (bridge/cli.c,
 * bridge/client.c). The command against a real mount: integration/test_cli.sh. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"
#include "client.h"

/* -Wwrite-strings makes literals const; argv's are not */
#define S(literal) ((char *)(literal))

static void test_cli_wanted(void **state)
{
	(void)state;
	char *ps[] = {S("orchfs"), S("ps"), NULL};
	char *url[] = {S("orchfs"), S("--url"), S("http://h:1"), S("--json"), S("tracks"), NULL};
	char *eq[] = {S("orchfs"), S("--mount=/m"), S("kill"), S("3"), NULL};
	char *daemon[] = {S("orchfs"), S("--state-dir"), S("/s"), S("/mnt"), NULL};
	char *daemon_f[] = {S("orchfs"), S("-f"), S("ps"), NULL};   /* -f is the daemon's: mount ./ps */
	char *bare[] = {S("orchfs"), NULL};
	assert_true(cli_wanted(2, ps));
	assert_true(cli_wanted(5, url));
	assert_true(cli_wanted(4, eq));
	assert_false(cli_wanted(4, daemon));
	assert_false(cli_wanted(3, daemon_f));
	assert_false(cli_wanted(1, bare));
}

static void test_exit_status(void **state)
{
	(void)state;
	assert_int_equal(cli_exit_status(EINVAL), 3);
	assert_int_equal(cli_exit_status(ENOENT), 4);
	assert_int_equal(cli_exit_status(EBUSY), 6);
	assert_int_equal(cli_exit_status(ELOOP), 7);
	assert_int_equal(cli_exit_status(EACCES), 8);
	assert_int_equal(cli_exit_status(ENOTCONN), 13);
	assert_int_equal(cli_exit_status(EIO), 1);
}

static void test_formats(void **state)
{
	(void)state;
	char d[24];
	cli_format_duration(0.85, d, sizeof d);
	assert_string_equal(d, "850ms");
	cli_format_duration(12.34, d, sizeof d);
	assert_string_equal(d, "12.3s");
	cli_format_duration(245, d, sizeof d);
	assert_string_equal(d, "4m05s");
	cli_format_duration(7380, d, sizeof d);
	assert_string_equal(d, "2h03m");
	cli_format_duration(3 * 86400 + 4 * 3600, d, sizeof d);
	assert_string_equal(d, "3d04h");
	cli_format_duration(-1, d, sizeof d);
	assert_string_equal(d, "-");

	struct buf q = BUF_INIT;
	cli_shell_quote("plain-arg_1.txt", &q);
	buf_putc(&q, ' ');
	cli_shell_quote("it's two", &q);
	buf_putc(&q, ' ');
	cli_shell_quote("", &q);
	buf_putc(&q, ' ');
	cli_shell_quote("$HOME", &q);
	assert_string_equal(q.data, "plain-arg_1.txt 'it'\\''s two' '' '$HOME'");
	buf_free(&q);

	assert_int_equal(cli_parse_time("2026-12-06T14:39:39.641Z"), 1796567979641LL);
	assert_int_equal(cli_parse_time("yesterday"), -1);
	assert_int_equal(cli_parse_time(NULL), -1);
}

static cJSON *parse(const char *json)
{
	cJSON *v = cJSON_Parse(json);
	assert_non_null(v);
	return v;
}

static void test_workers_table(void **state)
{
	(void)state;
	cJSON *w = parse("[{\"id\":1,\"task\":\"plan\",\"track\":\"demo\",\"status\":\"exited\","
			 "\"runtime_s\":2.034,\"exit_code\":0,\"signal\":null,\"usage\":{\"cost_usd\":0.0258}},"
			 "{\"id\":12,\"task\":null,\"track\":null,\"status\":\"killed\",\"runtime_s\":0.5,"
			 "\"exit_code\":null,\"signal\":\"KILL\",\"usage\":{\"cost_usd\":0}},"
			 "{\"id\":13,\"task\":\"café\",\"track\":\"demo\",\"status\":\"running\","
			 "\"started_at\":\"2026-12-06T14:00:00.000Z\",\"runtime_s\":null,\"exit_code\":null,"
			 "\"signal\":null,\"usage\":{\"cost_usd\":1.5}}]");
	int64_t now = cli_parse_time("2026-12-06T14:01:05.000Z");
	struct buf out = BUF_INIT;
	cli_workers_table(w, false, now, &out);
	assert_string_equal(out.data, "ID  TASK  TRACK  STATUS   RUNTIME  COST     EXIT\n"
				      "13  café  demo   running  1m05s    $1.5000  -\n");
	buf_reset(&out);
	cli_workers_table(w, true, now, &out);
	assert_string_equal(out.data, "ID  TASK  TRACK  STATUS   RUNTIME  COST     EXIT\n"
				      "1   plan  demo   exited   2.0s     $0.0258  0\n"
				      "12  -     -      killed   500ms    $0.0000  SIGKILL\n"
				      "13  café  demo   running  1m05s    $1.5000  -\n");
	buf_free(&out);
	cJSON_Delete(w);
}

static void test_tracks_and_tasks_tables(void **state)
{
	(void)state;
	cJSON *k = parse("[{\"id\":\"demo\",\"title\":\"Ship it\",\"status\":\"active\",\"budget_usd\":1,"
			 "\"cost_usd\":0.0258,\"task_count\":9,\"tasks_by_status\":{\"done\":2,\"skipped\":1,"
			 "\"running\":2,\"failed\":1,\"killed\":1}},"
			 "{\"id\":\"x\",\"title\":\"x\",\"status\":\"done\",\"budget_usd\":null,\"cost_usd\":0,"
			 "\"task_count\":0,\"tasks_by_status\":{}}]");
	struct buf out = BUF_INIT;
	cli_tracks_table(k, &out);
	assert_string_equal(out.data,
			    "TRACK  STATUS  PROGRESS  RUNNING  FAILED  COST     BUDGET   TITLE\n"
			    "demo   active  3/9  33%  2        2       $0.0258  $1.0000  Ship it\n"
			    "x      done    0/0 100%  0        0       $0.0000  -        x\n");
	cJSON_Delete(k);
	cJSON *t = parse("[{\"id\":\"b\",\"track\":\"demo\",\"status\":\"ready\",\"priority\":5,\"worker\":null,"
			 "\"retries\":2,\"retries_left\":1,\"deps\":[\"a\",\"c\"],"
			 "\"waiting\":{\"reason\":\"budget\",\"message\":\"...\"}}]");
	buf_reset(&out);
	cli_tasks_table(t, &out);
	assert_string_equal(out.data, "TASK  TRACK  STATUS  PRIO  WORKER  RETRIES  DEPS  WAITING\n"
				      "b     demo   ready   5     -       1/2      a,c   budget\n");
	cJSON_Delete(t);
	buf_reset(&out);
	cli_event_line("{\"seq\":7,\"ts\":\"2026-12-06T14:39:42.688Z\",\"channel\":\"dag\","
		       "\"type\":\"task.status\",\"data\":{\"task\":\"a\",\"to\":\"done\"}}", &out);
	assert_string_equal(out.data, "7 14:39:42.688Z dag task.status {\"task\":\"a\",\"to\":\"done\"}\n");
	buf_free(&out);
}

static void test_top(void **state)
{
	(void)state;
	struct top t = {.pipeline = "running", .max_workers = 4};
	t.tracks = parse("[{\"id\":\"demo\",\"status\":\"active\",\"task_count\":4,\"cost_usd\":0.5,"
			 "\"budget_usd\":2,\"tasks_by_status\":{\"done\":2,\"running\":1}}]");
	assert_false(cli_top_apply(&t, "{\"seq\":5,\"ts\":\"2026-12-06T14:00:00.000Z\",\"channel\":\"workers\","
				       "\"type\":\"worker.spawned\",\"data\":{\"id\":7,\"task\":\"build\","
				       "\"track\":\"demo\"}}"));
	assert_false(cli_top_apply(&t, "{\"seq\":6,\"ts\":\"2026-12-06T14:00:00.000Z\",\"channel\":\"workers\","
				       "\"type\":\"worker.spawned\",\"data\":{\"id\":8,\"task\":null,\"track\":null}}"));
	/* a replayed event changes nothing */
	cli_top_apply(&t, "{\"seq\":6,\"ts\":\"2026-12-06T14:00:00.000Z\",\"channel\":\"workers\","
			  "\"type\":\"worker.spawned\",\"data\":{\"id\":8}}");
	assert_int_equal(t.nworkers, 2);
	assert_true(cli_top_apply(&t, "{\"seq\":7,\"channel\":\"metrics\",\"type\":\"usage.reported\","
				      "\"data\":{\"worker\":7,\"cost_usd\":0.25}}"));
	assert_true(cli_top_apply(&t, "{\"seq\":8,\"channel\":\"dag\",\"type\":\"task.status\","
				      "\"data\":{\"task\":\"x\",\"to\":\"done\"}}"));
	cli_top_apply(&t, "{\"seq\":9,\"channel\":\"workers\",\"type\":\"worker.exited\",\"data\":{\"id\":8}}");
	cli_top_apply(&t, "{\"seq\":10,\"channel\":\"pipeline\",\"type\":\"pipeline.status\","
			  "\"data\":{\"from\":\"running\",\"to\":\"paused\"}}");
	cli_top_apply(&t, "{\"channel\":\"telemetry\",\"data\":{\"loop\":{\"rate_hz\":9.5},"
			  "\"process\":{\"cpu_percent\":3.25}}}");
	assert_int_equal(t.nworkers, 1);
	assert_int_equal((int)t.seq, 10);
	struct buf out = BUF_INIT;
	cli_top_render(&t, cli_parse_time("2026-12-06T14:00:03.500Z"), 80, 24, &out);
	assert_non_null(strstr(out.data, "pipeline paused  workers 1/4  cost $0.2500\nticks 9.5/s  cpu 3.2%  seq 10\n"));
	assert_non_null(strstr(out.data, "demo             active      [########........] 2/4  1 run  $0.5000 of $2.0000\n"));
	assert_non_null(strstr(out.data, "7       build                demo                 3.5s      $0.2500\n"));
	/* a narrow terminal: every line cut to its width, none wraps */
	buf_reset(&out);
	cli_top_render(&t, cli_parse_time("2026-12-06T14:00:03.500Z"), 30, 24, &out);
	for (char *line = out.data, *nl; (nl = strchr(line, '\n')); line = nl + 1)
		assert_true(nl - line <= 30);
	assert_non_null(strstr(out.data, "orchfs top  pipeline paused  w\n"));
	/* max_workers from its event */
	cli_top_apply(&t, "{\"seq\":11,\"channel\":\"pipeline\",\"type\":\"pipeline.max_workers\","
			  "\"data\":{\"from\":4,\"to\":9}}");
	assert_int_equal(t.max_workers, 9);
	assert_string_equal(t.pipeline, "paused");
	buf_free(&out);
	cli_top_free(&t);
}

static void test_client_url_and_errors(void **state)
{
	(void)state;
	struct client c;
	struct orch_err err = {0};
	assert_int_equal(client_use_url(&c, "http://127.0.0.1:8999", "tok", &err), 0);
	assert_string_equal(c.host, "127.0.0.1");
	assert_string_equal(c.port, "8999");
	client_close(&c);
	assert_int_equal(client_use_url(&c, "http://[::1]:9/", NULL, &err), 0);
	assert_string_equal(c.host, "::1");
	assert_string_equal(c.port, "9");
	client_close(&c);
	assert_int_equal(client_use_url(&c, "https://h:1", NULL, &err), -ENOTSUP);
	assert_int_equal(client_use_url(&c, "http://h:1/api", NULL, &err), -EINVAL);
	assert_int_equal(client_use_url(&c, "http://h:x", NULL, &err), -EINVAL);
	assert_int_equal(client_use_url(&c, "ftp://h", NULL, &err), -EINVAL);
	assert_int_equal(client_use_url(&c, "http://[::1]x:80", NULL, &err), -EINVAL);

	const char *obj = "{\"error\":{\"status\":409,\"errno\":\"ELOOP\",\"message\":\"a cycle\",\"path\":\"p\"}}";
	assert_int_equal(client_error_of(obj, strlen(obj), 409, &err), -ELOOP);
	assert_string_equal(err.message, "a cycle");
	assert_int_equal(client_error_of("<html>", 6, 404, &err), -ENOTCONN);
	assert_string_equal(err.message, "not an orchfs API (HTTP 404)");
	const char *odd = "{\"error\":{\"errno\":\"EWHAT\"}}";
	assert_int_equal(client_error_of(odd, strlen(odd), 500, &err), -EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cli_wanted),
		cmocka_unit_test(test_exit_status),
		cmocka_unit_test(test_formats),
		cmocka_unit_test(test_workers_table),
		cmocka_unit_test(test_tracks_and_tasks_tables),
		cmocka_unit_test(test_top),
		cmocka_unit_test(test_client_url_and_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
