/* fuzz_parsers: every control grammar's parser, the pricing file and the
 * events' `since`, on the same bytes. Beyond not crashing: a refusal has a
 * message and renders as a valid UTF-8 JSON error object; what is accepted is
 * within its documented bounds (README, "Bounds", "Errors").
 *   build-fuzz/tests/fuzz/fuzz_parsers -max_total_time=60 tests/fuzz/corpus/parsers */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cmd.h"
#include "events.h"
#include "pricing.h"

/* A refusal: a message, and an error object every client can read. */
static void refused(int rc, const struct orch_err *err)
{
	CHECK(rc < 0 && err->errnum == -rc && err->message[0]);
	struct buf out = BUF_INIT;
	err_render(err, "mma/fuzz", &out);
	check_json(out.data, out.len);
	buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	struct orch_err err = {0};
	int rc;

	struct cmd_plan plan;
	if ((rc = cmd_parse_plan(in, size, &plan, &err)) == 0)
		cmd_plan_free(&plan);
	else
		refused(rc, &err);

	struct cmd_spawn spawn;
	if ((rc = cmd_parse_spawn(in, size, &spawn, &err)) == 0) {
		CHECK(spawn.nenv <= ENV_VARS_MAX && strlen(spawn.command) > 0);
		cmd_spawn_free(&spawn);
	} else {
		refused(rc, &err);
	}

	for (int per_worker = 0; per_worker < 2; per_worker++) {
		struct cmd_kill kill;
		if ((rc = cmd_parse_kill(in, size, per_worker, &kill, &err)))
			refused(rc, &err);
	}

	struct cmd_mutate mutate;
	if ((rc = cmd_parse_mutate(in, size, &mutate, &err)) == 0)
		cmd_mutate_free(&mutate);
	else
		refused(rc, &err);

	struct usage u;
	if ((rc = cmd_parse_usage(in, size, &u, &err)) == 0)
		CHECK(u.input >= 0 && u.input <= USAGE_REPORT_MAX && u.output >= 0 &&
		      u.output <= USAGE_REPORT_MAX && u.cache_read >= 0 &&
		      u.cache_read <= USAGE_REPORT_MAX && u.cache_write >= 0 &&
		      u.cache_write <= USAGE_REPORT_MAX && u.reports == 1);
	else
		refused(rc, &err);

	int64_t micro;
	if ((rc = cmd_parse_usd(in, size, &micro, &err)) == 0)
		CHECK(micro >= 0);
	else
		refused(rc, &err);

	struct price *prices = NULL;
	size_t n = 0;
	if ((rc = pricing_parse(in, size, &prices, &n, &err)) == 0) {
		for (size_t i = 0; i < n; i++) {
			const int64_t p[] = {prices[i].input, prices[i].output, prices[i].cache_read,
					     prices[i].cache_write};
			for (size_t k = 0; k < 4; k++)
				CHECK(p[k] >= 0 && p[k] <= (int64_t)PRICE_MAX_USD * 1000000);
		}
		free(prices);
	} else {
		refused(rc, &err);
	}

	/* `since` against a history of 10 events */
	static struct events *ev;
	if (!ev) {
		ev = xcalloc(1, sizeof *ev);
		events_init(ev, 64);
		for (int i = 0; i < 10; i++)
			events_publish(ev, EVK_PIPELINE_STATUS, NULL, NULL, NULL);
		events_commit(ev, events_seq(ev));
	}
	uint64_t cursor = 0;
	char msg[256];
	if (events_since(ev, in, size, &cursor, msg, sizeof msg) == 0)
		CHECK(cursor <= 10);
	else
		CHECK(msg[0] != '\0');
	return 0;
}
