/* fuzz_writes: control writes against a live model (no mount, no store, no
 * scheduler thread): the first byte picks the control file, the rest is what
 * is written. Beyond not crashing: every result and error object is valid
 * UTF-8 JSON; a refused write leaves every document as it was; money is never
 * negative (README, "Errors", "Bounds").
 *   build-fuzz/tests/fuzz/fuzz_writes -max_total_time=60 tests/fuzz/corpus/writes */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cmd.h"
#include "dag.h"
#include "../fake.h"
#include "nodes.h"
#include "render.h"

static const char *const files[] = {
	"mma/dag/mutate", "mma/tracks/create", "mma/workers/1/usage", "mma/tracks/k/budget",
	"mma/pipeline/max_workers", "mma/pipeline/pause", "mma/pipeline/resume",
	"mma/workers/kill", "context/inject", "mma/tasks/t2/status",
};

#define PLAN "{\"id\":\"k\",\"budget_usd\":1,\"tasks\":[{\"id\":\"t1\",\"command\":\"true\"}," \
	     "{\"id\":\"t2\",\"command\":\"true\",\"deps\":[\"t1\"]}," \
	     "{\"id\":\"t3\",\"command\":\"true\",\"deps\":[\"t1\",\"t2\"]}]}"

/* Everything a refused write must leave as it was. */
static void views(struct orch *o, struct buf *out)
{
	static const enum render_doc_kind kinds[] = {RENDER_WORKERS, RENDER_TRACKS, RENDER_DAG,
						     RENDER_FINANCIAL};
	buf_reset(out);
	for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
		render_doc(o, kinds[i], NULL, out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *file = files[data[0] % (sizeof files / sizeof *files)];
	char dir[] = "/tmp/orchfs-fuzz-XXXXXX";
	CHECK(mkdtemp(dir));
	struct orch_config cfg = {.mount = (char *)"/nonexistent-mount", .state_dir = dir,
				  .workdir = (char *)"/tmp", .max_workers = 2, .kill_grace_s = 1,
				  .no_store = true};
	struct orch o;
	struct orch_err err = {0};
	CHECK(orch_init(&o, &cfg, &err) == 0);
	struct cmd_plan plan;
	CHECK(cmd_parse_plan(PLAN, strlen(PLAN), &plan, &err) == 0);
	struct buf result = BUF_INIT, before = BUF_INIT, after = BUF_INIT;
	CHECK(dag_create_track(&o, &plan, &result, &err) == 0);
	cmd_plan_free(&plan);
	fake_worker(&o, "t1");

	views(&o, &before);
	struct node n;
	CHECK(node_resolve(&o, file, &n) == 0);
	buf_reset(&result);
	int rc = node_write(&o, &n, file, (const char *)data + 1, size - 1, "/tmp", &result);
	if (result.len)
		check_json(result.data, result.len);
	else
		CHECK(rc == 0);   /* a refusal always says why */
	views(&o, &after);
	if (rc)
		CHECK(before.len == after.len && !memcmp(before.data, after.data, before.len));
	cJSON *fin = cJSON_Parse(strstr(after.data, "{\"currency\""));
	const cJSON *total = cJSON_GetObjectItemCaseSensitive(fin, "total");
	CHECK(cJSON_GetObjectItemCaseSensitive(total, "cost_usd")->valuedouble >= 0);
	cJSON_Delete(fin);

	buf_free(&result);
	buf_free(&before);
	buf_free(&after);
	orch_destroy(&o);
	char logs[sizeof dir + 8];
	snprintf(logs, sizeof logs, "%s/logs", dir);
	(void)rmdir(logs);   /* all orch_init made: no store, no worker ran */
	(void)rmdir(dir);
	return 0;
}
