/* fixture: a core without threads or mount, for unit tests that call the
 * bridge directly. Header-only so each test binary stays one file. */
#ifndef ORCHFS_TEST_FIXTURE_H
#define ORCHFS_TEST_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cmd.h"
#include "dag.h"
#include "orch.h"
#include "runner.h"

struct fixture {
	struct orch o;
	char dir[64];
};

static inline int fixture_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	strcpy(f->dir, "/tmp/orchfs-unit-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	struct orch_config cfg = {.mount = (char *)"/nonexistent-mount", .state_dir = f->dir,
				  .workdir = (char *)"/tmp", .max_workers = 2, .kill_grace_s = 1,
				  .no_store = true};
	struct orch_err err = {0};
	if (orch_init(&f->o, &cfg, &err))
		return -1;
	*state = f;
	return 0;
}

static inline int fixture_teardown(void **state)
{
	struct fixture *f = *state;
	/* No scheduler reaps what a test started: it goes now, with its
	 * cgroup, which the state directory's removal would leave behind. */
	for (size_t i = 0; i < f->o.nworkers; i++) {
		struct worker *w = f->o.workers[i];
		if (w->job) {
			runner_release(orch_runner(&f->o, w->runner), w->job, NULL);
			w->job = NULL;
		}
	}
	orch_destroy(&f->o);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

/* Creates a track from a JSON plan; returns the errno (0 on success). */
static inline int fixture_plan(struct orch *o, const char *json, struct orch_err *err)
{
	struct cmd_plan p;
	int rc = cmd_parse_plan(json, strlen(json), &p, err);
	if (rc)
		return -rc;
	struct buf result = BUF_INIT;
	rc = dag_create_track(o, &p, &result, err);
	buf_free(&result);
	cmd_plan_free(&p);
	return -rc;
}

static inline int fixture_mutate(struct orch *o, const char *text, struct orch_err *err)
{
	struct cmd_mutate m;
	int rc = cmd_parse_mutate(text, strlen(text), &m, err);
	if (rc)
		return -rc;
	struct buf result = BUF_INIT;
	rc = dag_mutate(o, &m, &result, err);
	buf_free(&result);
	cmd_mutate_free(&m);
	return -rc;
}

#endif
