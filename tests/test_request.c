/* test_request: the API's requests without a socket (bridge/request.h): who
 * is let in, a Content-Length, an event stream's start, and WebSocket
 * messages answered as the protocol says. */
#include <errno.h>

#include "auth.h"
#include "fake.h"
#include "fixture.h"
#include "request.h"
#include "sha256.h"

#define TOKEN "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static const struct req_site site = {.addr = "127.0.0.1", .port = 8999, .ports = {8999, 9000},
				     .token = TOKEN};

static int admit(const char *host, const char *origin, const char *authz, const char *arg)
{
	char why[300] = "";
	struct req_headers h = {host, origin, authz, arg};
	int worker = -1;
	int rc = req_admit(&site, &h, &worker, why, sizeof why);
	assert_true(rc == 0 || why[0]);
	return rc ? rc : -worker;   /* admitted: 0, or -N for worker N's token */
}

static void test_admit(void **state)
{
	(void)state;
	assert_int_equal(admit("127.0.0.1:8999", NULL, "Bearer " TOKEN, NULL), 0);
	assert_int_equal(admit("localhost:8999", "http://127.0.0.1:9000", NULL, TOKEN), 0);
	assert_int_equal(admit(NULL, NULL, "Bearer " TOKEN, NULL), 403);
	assert_int_equal(admit("evil.example:8999", NULL, "Bearer " TOKEN, NULL), 403);
	assert_int_equal(admit("127.0.0.1:8999", "http://evil.example", "Bearer " TOKEN, NULL), 403);
	assert_int_equal(admit("127.0.0.1:8999", NULL, NULL, NULL), 401);
	assert_int_equal(admit("127.0.0.1:8999", NULL, "Bearer " TOKEN "0", NULL), 401);
	assert_int_equal(admit("127.0.0.1:8999", NULL, "Basic " TOKEN, NULL), 401);
	char origin[400];
	snprintf(origin, sizeof origin, "http://127.0.0.1:8999/%0300d", 0);
	assert_int_equal(admit("127.0.0.1:8999", origin, "Bearer " TOKEN, NULL), 403);
	struct req_site open = site;
	open.token = NULL;
	char why[300];
	struct req_headers h = {"127.0.0.1:8999", NULL, NULL, NULL};
	int worker = -1;
	assert_int_equal(req_admit(&open, &h, &worker, why, sizeof why), 0);
	assert_int_equal(worker, 0);

	/* a worker's own token names it; one not made from ours names nobody */
	char w7[AUTH_WORKER_TOKEN_MAX], bearer[AUTH_WORKER_TOKEN_MAX + 8];
	auth_worker_token(TOKEN, 7, w7);
	assert_true(strncmp(w7, "w7.", 3) == 0 && strlen(w7) == 3 + 64);
	snprintf(bearer, sizeof bearer, "Bearer %s", w7);
	assert_int_equal(admit("127.0.0.1:8999", NULL, bearer, NULL), -7);
	assert_int_equal(admit("127.0.0.1:8999", NULL, NULL, w7), -7);
	w7[10] = w7[10] == 'a' ? 'b' : 'a';
	assert_int_equal(admit("127.0.0.1:8999", NULL, NULL, w7), 401);
	assert_int_equal(admit("127.0.0.1:8999", NULL, NULL, "w7." TOKEN), 401);
	assert_int_equal(admit("127.0.0.1:8999", NULL, NULL, "w0.x"), 401);
	assert_int_equal(admit("127.0.0.1:8999", NULL, NULL, "w99999999999.x"), 401);
	char w8[AUTH_WORKER_TOKEN_MAX];
	auth_worker_token(TOKEN, 8, w8);
	w8[1] = '7';   /* worker 8's mac with worker 7's name */
	assert_int_equal(admit("127.0.0.1:8999", NULL, NULL, w8), 401);

	/* RFC 4231, test case 2 */
	uint8_t mac[SHA256_DIGEST_LEN];
	char hex[65];
	hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac);
	sha256_digest_hex(mac, hex);
	assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

/* --allow-origin: the listed page is let in (with its token still asked),
 * and its preflight answered; any other foreign page is refused as before. */
static void test_allow_origin(void **state)
{
	(void)state;
	static const char *const allowed[] = {"http://localhost:3000"};
	struct req_site s = site;
	s.allow_origins = allowed;
	s.n_allow_origins = 1;
	char why[300];
	int worker;
	struct req_headers page = {"127.0.0.1:8999", "http://localhost:3000", "Bearer " TOKEN, NULL};
	struct req_headers notoken = {"127.0.0.1:8999", "http://localhost:3000", NULL, NULL};
	struct req_headers other = {"127.0.0.1:8999", "http://localhost:3001", "Bearer " TOKEN, NULL};
	struct req_headers badhost = {"evil.example:8999", "http://localhost:3000", NULL, NULL};
	struct req_headers none = {"127.0.0.1:8999", NULL, NULL, NULL};
	assert_int_equal(req_admit(&site, &page, &worker, why, sizeof why), 403);
	assert_int_equal(req_admit(&s, &page, &worker, why, sizeof why), 0);
	assert_int_equal(req_admit(&s, &notoken, &worker, why, sizeof why), 401);
	assert_int_equal(req_admit(&s, &other, &worker, why, sizeof why), 403);
	assert_string_equal(req_cors_origin(&s, &page), "http://localhost:3000");
	assert_null(req_cors_origin(&s, &other));
	assert_null(req_cors_origin(&s, &none));
	assert_null(req_cors_origin(&site, &page));
	assert_int_equal(req_preflight(&s, &notoken, why, sizeof why), 204);
	assert_int_equal(req_preflight(&s, &other, why, sizeof why), 403);
	assert_non_null(strstr(why, "--allow-origin"));
	assert_int_equal(req_preflight(&s, &none, why, sizeof why), 403);
	assert_int_equal(req_preflight(&s, &badhost, why, sizeof why), 403);
	assert_int_equal(req_preflight(&site, &notoken, why, sizeof why), 403);
}

static void test_content_length(void **state)
{
	(void)state;
	unsigned long long n = 99;
	assert_true(req_content_length("0", &n) && n == 0);
	assert_true(req_content_length("1048576", &n) && n == 1048576);
	assert_true(req_content_length("9999999999999999999", &n) && n == 9999999999999999999ULL);
	static const char *const bad[] = {"", "-1", "+5", " 5", "5 ", "0x10", "1e3",
					  "18446744073709551616", "12345678901234567890"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		assert_false(req_content_length(bad[i], &n));
}

static void test_stream_open(void **state)
{
	struct fixture *f = *state;
	struct events *ev = &f->o.events;
	for (int i = 0; i < 5; i++)
		events_publish(ev, EVK_PIPELINE_STATUS, NULL, NULL, NULL);
	events_commit(ev, events_seq(ev));
	unsigned mask;
	uint64_t cursor;
	char why[200];
	assert_int_equal(req_stream_open(ev, NULL, NULL, NULL, &mask, &cursor, why, sizeof why), 0);
	assert_int_equal(mask, EV_ALL_EVENTS);
	assert_int_equal(cursor, 5);
	assert_int_equal(req_stream_open(ev, "dag,workers", "2", NULL, &mask, &cursor, why, sizeof why), 0);
	assert_int_equal(mask, EV_DAG | EV_WORKERS);
	assert_int_equal(cursor, 2);
	/* Last-Event-ID when there is no ?since=, and ?since= first */
	assert_int_equal(req_stream_open(ev, NULL, NULL, "3", &mask, &cursor, why, sizeof why), 0);
	assert_int_equal(cursor, 3);
	assert_int_equal(req_stream_open(ev, NULL, "1", "3", &mask, &cursor, why, sizeof why), 0);
	assert_int_equal(cursor, 1);
	assert_int_equal(req_stream_open(ev, "dag,nope", NULL, NULL, &mask, &cursor, why, sizeof why),
			 -EINVAL);
	assert_non_null(strstr(why, "nope"));
	assert_int_equal(req_stream_open(ev, NULL, "6", NULL, &mask, &cursor, why, sizeof why), -EINVAL);
}

/* One message's reply, parsed. */
static cJSON *ws(struct orch *o, struct req_ws *c, const char *msg)
{
	struct buf reply = BUF_INIT;
	req_ws_message(o, c, msg, strlen(msg), &reply);
	assert_true(utf8_check(reply.data, reply.len) == reply.len);
	cJSON *d = cJSON_ParseWithLength(reply.data, reply.len);
	assert_non_null(d);
	buf_free(&reply);
	return d;
}

static const char *error_errno(const cJSON *d)
{
	return cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(d, "error"), "errno"));
}

/* A worker's token writes its own usage, and nothing else (403, unchanged);
 * it reads what the daemon's token reads. */
static void test_worker_scope(void **state)
{
	struct fixture *f = *state;
	struct orch *o = &f->o;
	struct orch_err err;
	assert_int_equal(fixture_plan(o, "{\"id\":\"k\",\"tasks\":[{\"id\":\"t1\",\"command\":\"true\"}]}",
				      &err), 0);
	fake_worker(o, "t1");
	fake_worker(o, "t1");
	struct buf out = BUF_INIT;
	assert_int_equal(req_write(o, 1, "mma/workers/1/usage", "model=m1 in=5 out=7", 19, &out), 0);
	static const char *const not_its[] = {"mma/workers/2/usage", "mma/pipeline/pause",
					      "mma/workers/spawn", "mma/workers/1/kill"};
	for (size_t i = 0; i < sizeof not_its / sizeof *not_its; i++) {
		buf_reset(&out);
		assert_int_equal(req_write(o, 1, not_its[i], "x", 1, &out), -EACCES);
		assert_int_equal(req_status_of(&out), 403);
		assert_non_null(strstr(out.data, "worker 1's"));
	}
	assert_int_equal(o->pipeline, PIPE_RUNNING);
	assert_int_equal(o->workers[1]->usage.n, 0);
	buf_free(&out);

	struct req_ws c = {.worker = 1};
	cJSON *d = ws(o, &c, "{\"op\":\"write\",\"path\":\"mma/pipeline/pause\",\"body\":\"x\"}");
	assert_string_equal(error_errno(d), "EACCES");
	cJSON_Delete(d);
	d = ws(o, &c, "{\"op\":\"read\",\"path\":\"mma/pipeline/status\"}");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(d, "ok")));
	cJSON_Delete(d);
	assert_int_equal(o->pipeline, PIPE_RUNNING);
}

static void test_ws_messages(void **state)
{
	struct fixture *f = *state;
	struct orch *o = &f->o;
	struct orch_err err;
	assert_int_equal(fixture_plan(o, "{\"id\":\"k\",\"tasks\":[{\"id\":\"t1\",\"command\":\"true\"}]}",
				      &err), 0);
	events_commit(&o->events, events_seq(&o->events));
	uint64_t committed = events_committed(&o->events);
	struct req_ws c = {0};

	cJSON *d = ws(o, &c, "{\"op\":\"subscribe\",\"channels\":[\"dag\"],\"id\":7}");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(d, "ok")));
	assert_int_equal(cJSON_GetObjectItem(d, "id")->valueint, 7);
	assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(d, "result"), "seq")->valuedouble,
			 (double)committed);
	assert_true(c.subscribed && c.mask == EV_DAG && c.cursor == committed);
	cJSON_Delete(d);

	d = ws(o, &c, "{\"op\":\"subscribe\",\"channels\":[\"workers\"],\"since\":1}");
	assert_true(c.mask == (EV_DAG | EV_WORKERS) && c.cursor == 1);
	cJSON_Delete(d);
	d = ws(o, &c, "{\"op\":\"subscribe\",\"since\":999999}");
	assert_string_equal(error_errno(d), "EINVAL");
	assert_int_equal(c.cursor, 1);   /* a refused subscribe changes nothing */
	cJSON_Delete(d);
	d = ws(o, &c, "{\"op\":\"unsubscribe\",\"channels\":[\"dag\",\"workers\"]}");
	assert_false(c.subscribed);
	cJSON_Delete(d);

	d = ws(o, &c, "{\"op\":\"read\",\"path\":\"mma/tasks/t1/status\",\"id\":\"r\"}");
	assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(d, "result")), "ready\n");
	cJSON_Delete(d);
	d = ws(o, &c, "{\"op\":\"read\",\"path\":\"mma/tracks/k/info.json\"}");
	assert_true(cJSON_IsObject(cJSON_GetObjectItem(d, "result")));
	cJSON_Delete(d);

	d = ws(o, &c, "{\"op\":\"write\",\"path\":\"mma/pipeline/max_workers\",\"body\":5}");
	assert_true(cJSON_IsTrue(cJSON_GetObjectItem(d, "ok")));
	assert_int_equal(o->max_workers, 5);
	cJSON_Delete(d);
	d = ws(o, &c, "{\"op\":\"write\",\"path\":\"mma/pipeline/max_workers\",\"body\":\"3\\u0000junk\"}");
	assert_string_equal(error_errno(d), "EINVAL");
	assert_int_equal(o->max_workers, 5);
	cJSON_Delete(d);
	d = ws(o, &c, "{\"op\":\"write\",\"path\":\"mma/pipeline/status\",\"body\":\"x\"}");
	assert_string_equal(error_errno(d), "EACCES");
	assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(d, "error"), "status")->valueint, 405);
	cJSON_Delete(d);

	static const char *const bad[] = {"[1]", "not json", "{}", "{\"op\":\"fly\"}",
					  "{\"op\":\"read\"}", "{\"op\":\"write\",\"path\":\"mma/pipeline/pause\"}",
					  "{\"op\":\"subscribe\",\"channels\":\"dag\"}"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		d = ws(o, &c, bad[i]);
		assert_false(cJSON_IsTrue(cJSON_GetObjectItem(d, "ok")));
		assert_string_equal(error_errno(d), "EINVAL");
		cJSON_Delete(d);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_admit),
		cmocka_unit_test(test_allow_origin),
		cmocka_unit_test(test_content_length),
		cmocka_unit_test_setup_teardown(test_stream_open, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_ws_messages, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_worker_scope, fixture_setup, fixture_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
