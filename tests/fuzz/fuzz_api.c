/* fuzz_api: the API's requests as the transports hand them on
 * (bridge/request.h). The first byte picks the transport: even, a WebSocket
 * session, each further line one message, the subscription carried from one
 * to the next; odd, an HTTP request whose lines are Host, Origin,
 * Authorization, ?token=, Content-Length, the path, ?channels=, ?since= and,
 * when the byte is 1 mod 4, a POST's body. Beyond not crashing: every reply,
 * document and error object is valid UTF-8 JSON; a refused write leaves every
 * document as it was; a subscription never points past the last event; only
 * this listener's Host with the token is let in; a Content-Length taken is
 * digits only.
 *   build-fuzz/tests/fuzz/fuzz_api -max_total_time=60 tests/fuzz/corpus/api */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "check.h"
#include "request.h"

#define TOKEN "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* A write the reply refused leaves the documents as they were. */
static void ws_session(struct orch *o, const char *in, size_t size)
{
	struct req_ws sub = {0};
	struct buf reply = BUF_INIT, before = BUF_INIT, after = BUF_INIT;
	for (int msgs = 0; size > 0 && msgs < 16; msgs++) {
		const char *nl = memchr(in, '\n', size);
		size_t len = nl ? (size_t)(nl - in) : size;
		fuzz_views(o, &before);
		buf_reset(&reply);
		req_ws_message(o, &sub, in, len, &reply);
		check_json(reply.data, reply.len);
		cJSON *doc = cJSON_ParseWithLength(reply.data, reply.len);
		const cJSON *ok = cJSON_GetObjectItemCaseSensitive(doc, "ok");
		CHECK(cJSON_IsBool(ok));
		if (cJSON_IsFalse(ok)) {
			CHECK(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(doc, "error")));
			fuzz_views(o, &after);
			CHECK(before.len == after.len && !memcmp(before.data, after.data, before.len));
		}
		cJSON_Delete(doc);
		CHECK(sub.cursor <= events_committed(&o->events));
		CHECK(sub.subscribed == (sub.mask != 0));
		in += nl ? len + 1 : len;
		size -= nl ? len + 1 : len;
	}
	buf_free(&reply);
	buf_free(&before);
	buf_free(&after);
}

/* The next line as a C string (a header stops at a NUL, as lws hands it on);
 * NULL when the input has no more lines. */
static char *next_field(const char **in, size_t *size)
{
	if (*size == 0)
		return NULL;
	const char *nl = memchr(*in, '\n', *size);
	size_t len = nl ? (size_t)(nl - *in) : *size;
	char *field = strndup(*in, len);
	CHECK(field);
	*in += nl ? len + 1 : len;
	*size -= nl ? len + 1 : len;
	return field;
}

static void http_request(struct orch *o, const char *in, size_t size, bool post)
{
	char *f[8];
	for (size_t i = 0; i < 8; i++)
		f[i] = next_field(&in, &size);
	struct req_site site = {.addr = "127.0.0.1", .port = 8999, .ports = {8999, 9000}, .token = TOKEN};
	struct req_headers h = {.host = f[0], .origin = f[1], .authorization = f[2], .token_arg = f[3]};
	char why[300] = "";
	int worker = -1;
	int refuse = req_admit(&site, &h, &worker, why, sizeof why);
	if (refuse) {
		CHECK((refuse == 401 || refuse == 403) && why[0]);
		struct orch_err err;
		struct buf out = BUF_INIT;
		err_set(&err, EACCES, "%s", why);
		err_render_status(&err, f[5] ? f[5] : "", refuse, &out);
		check_json(out.data, out.len);
		buf_free(&out);
	} else {
		const char *sent = h.authorization && h.authorization[0] ? h.authorization : h.token_arg;
		CHECK(h.host && auth_host_ok(h.host, site.addr, site.port));
		/* the daemon's token, or one made from it for a worker */
		char mine[AUTH_WORKER_TOKEN_MAX];
		if (worker > 0)
			auth_worker_token(TOKEN, worker, mine);
		CHECK(worker >= 0 && sent && strstr(sent, worker > 0 ? mine : TOKEN));
	}

	unsigned long long n;
	if (f[4] && req_content_length(f[4], &n))
		CHECK(strspn(f[4], "0123456789") == strlen(f[4]) && strlen(f[4]) <= 19 &&
		      n == strtoull(f[4], NULL, 10));

	const char *path = f[5] ? f[5] : "";
	struct buf out = BUF_INIT, before = BUF_INIT, after = BUF_INIT;
	if (post) {
		fuzz_views(o, &before);
		/* as worker 1's token half the time: its own usage is all it may write */
		int as = size & 1;
		int rc = req_write(o, as, path, in, size, &out);
		CHECK(!as || !strcmp(path, "mma/workers/1/usage") || rc);
		if (rc) {
			fuzz_views(o, &after);
			CHECK(before.len == after.len && !memcmp(before.data, after.data, before.len));
			CHECK(req_status_of(&out) >= 400);
		}
		if (out.len)
			check_json(out.data, out.len);
	} else {
		bool is_json;
		struct req_body body;
		int rc = req_read(o, path, &out, &is_json, &body);
		if (rc) {
			check_json(out.data, out.len);
			CHECK(req_status_of(&out) >= 400 && body.fd < 0 && !body.doc);
		} else if (body.doc) {
			CHECK(body.len == body.doc->len && !out.len);
			if (is_json)
				check_json(body.doc->data, body.doc->len);
			else
				CHECK(utf8_check(body.doc->data, body.doc->len) == body.doc->len);
		} else if (body.fd < 0) {
			if (is_json)
				check_json(out.data, out.len);
			else
				CHECK(utf8_check(out.data, out.len) == out.len);
		}
		req_body_done(&body);
	}

	unsigned mask;
	uint64_t cursor;
	if (req_stream_open(&o->events, f[6], f[7], NULL, &mask, &cursor, why, sizeof why) == 0)
		CHECK(mask != 0 && cursor <= events_committed(&o->events));
	else
		CHECK(why[0]);

	buf_free(&out);
	buf_free(&before);
	buf_free(&after);
	for (size_t i = 0; i < 8; i++)
		free(f[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	char dir[] = "/tmp/orchfs-fuzz-api-XXXXXX";
	struct orch o;
	fuzz_model_open(&o, dir);
	if (data[0] % 2 == 0)
		ws_session(&o, (const char *)data + 1, size - 1);
	else
		http_request(&o, (const char *)data + 1, size - 1, data[0] % 4 == 1);
	fuzz_model_close(&o, dir);
	return 0;
}
