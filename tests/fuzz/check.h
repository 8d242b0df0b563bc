/* check: the properties the fuzzers assert. A failed CHECK aborts, which
 * libFuzzer reports as a crash with the input that caused it. */
#ifndef ORCHFS_FUZZ_CHECK_H
#define ORCHFS_FUZZ_CHECK_H

#include <ftw.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cmd.h"
#include "dag.h"
#include "../fake.h"
#include "json.h"
#include "render.h"

/* libFuzzer's entry point, one per target */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                       \
	do {                                                                              \
		if (!(cond)) {                                                            \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                          \
		}                                                                         \
	} while (0)

/* Every byte orchfs emits is valid UTF-8 JSON (a trailing newline allowed). */
static inline void check_json(const char *s, size_t len)
{
	CHECK(s && len > 0);
	CHECK(utf8_check(s, len) == len);
	cJSON *doc = cJSON_ParseWithLength(s, len);
	CHECK(doc != NULL);
	cJSON_Delete(doc);
}

/* A model to fuzz against (no mount, no store, no scheduler thread): track
 * k of t1, t2 after t1, t3 after both, with a finished worker of t1, and its
 * events committed. A fuzzer must not run what it writes: no write of it
 * starts a process (it is "shutting down"). */
#define FUZZ_PLAN "{\"id\":\"k\",\"title\":\"caf\\u00e9\",\"budget_usd\":1,\"tasks\":[" \
		  "{\"id\":\"t1\",\"command\":\"true\"}," \
		  "{\"id\":\"t2\",\"command\":\"true\",\"deps\":[\"t1\"]}," \
		  "{\"id\":\"t3\",\"command\":\"true\",\"deps\":[\"t1\",\"t2\"]}]}"

static inline void fuzz_model_open(struct orch *o, char *dir)
{
	CHECK(mkdtemp(dir));
	struct orch_config cfg = {.mount = (char *)"/nonexistent-mount", .state_dir = dir,
				  .workdir = (char *)"/tmp", .max_workers = 2, .kill_grace_s = 1,
				  .no_store = true};
	struct orch_err err = {0};
	CHECK(orch_init(o, &cfg, &err) == 0);
	struct cmd_plan plan;
	struct buf result = BUF_INIT;
	CHECK(cmd_parse_plan(FUZZ_PLAN, sizeof FUZZ_PLAN - 1, &plan, &err) == 0);
	CHECK(dag_create_track(o, &plan, &result, &err) == 0);
	cmd_plan_free(&plan);
	buf_free(&result);
	fake_worker(o, "t1");
	events_commit(&o->events, events_seq(&o->events));
	o->stopping = true;
}

static inline int fuzz_remove_one(const char *path, const struct stat *st, int type,
				  struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path);
}

/* The model goes, and its state directory with everything orch_init made in
 * it: a run makes one directory an input, hundreds of thousands of them. */
static inline void fuzz_model_close(struct orch *o, const char *dir)
{
	orch_destroy(o);
	nftw(dir, fuzz_remove_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* Everything a refused write must leave as it was. */
static inline void fuzz_views(struct orch *o, struct buf *out)
{
	static const enum render_doc_kind kinds[] = {RENDER_WORKERS, RENDER_TRACKS, RENDER_DAG,
						     RENDER_FINANCIAL};
	buf_reset(out);
	for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
		render_doc(o, kinds[i], NULL, out);
	render_archive(o, out);   /* single-threaded: no lock to take */
}

#endif
