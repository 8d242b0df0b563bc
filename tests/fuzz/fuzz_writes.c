/* fuzz_writes: control writes against a live model (no mount, no store, no
 * scheduler thread): the first byte picks the control file, the rest is what
 * is written. Beyond not crashing: every result and error object is valid
 * UTF-8 JSON; a refused write leaves every document as it was; money is never
 * negative (README, "Errors", "Bounds").
 *   build-fuzz/tests/fuzz/fuzz_writes -max_total_time=60 tests/fuzz/corpus/writes */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "nodes.h"

static const char *const files[] = {
	"mma/dag/mutate", "mma/tracks/create", "mma/workers/1/usage", "mma/tracks/k/budget",
	"mma/pipeline/max_workers", "mma/pipeline/pause", "mma/pipeline/resume",
	"mma/workers/kill", "context/inject", "mma/tasks/t2/status",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *file = files[data[0] % (sizeof files / sizeof *files)];
	char dir[] = "/tmp/orchfs-fuzz-XXXXXX";
	struct orch o;
	fuzz_model_open(&o, dir);
	struct buf result = BUF_INIT, before = BUF_INIT, after = BUF_INIT;
	fuzz_views(&o, &before);
	struct node n;
	CHECK(node_resolve(&o, file, &n) == 0);
	int rc = node_write(&o, &n, file, (const char *)data + 1, size - 1, "/tmp", &result);
	if (result.len)
		check_json(result.data, result.len);
	else
		CHECK(rc == 0);   /* a refusal always says why */
	fuzz_views(&o, &after);
	if (rc)
		CHECK(before.len == after.len && !memcmp(before.data, after.data, before.len));
	cJSON *fin = cJSON_Parse(strstr(after.data, "{\"currency\""));
	const cJSON *total = cJSON_GetObjectItemCaseSensitive(fin, "total");
	CHECK(cJSON_GetObjectItemCaseSensitive(total, "cost_usd")->valuedouble >= 0);
	cJSON_Delete(fin);

	buf_free(&result);
	buf_free(&before);
	buf_free(&after);
	fuzz_model_close(&o, dir);
	return 0;
}
