/* fake: model objects made by hand, for tests and fuzzers that need a
 * finished worker without starting a process. Header-only, no cmocka. */
#ifndef ORCHFS_TEST_FAKE_H
#define ORCHFS_TEST_FAKE_H

#include <string.h>

#include "orch.h"

/* A worker of task (an existing id) that ran `true` and exited 0. */
static inline struct worker *fake_worker(struct orch *o, const char *task)
{
	struct worker *w = xcalloc(1, sizeof *w);
	w->id = (int)o->nworkers + 1;
	w->status = WORKER_EXITED;
	w->exit_code = 0;
	w->cpu_us = -1;
	w->memory_peak = -1;
	w->command = xstrdup("true");
	w->cwd = xstrdup("/tmp");
	w->log_path = xstrdup("/tmp/none.log");
	w->started_ms = 1000;
	w->ended_ms = 2500;
	struct task *t = task_find(o, task);
	strcpy(w->task_id, task);
	strcpy(w->track_id, t->track->id);
	t->workers = xrealloc(t->workers, (t->nworkers + 1) * sizeof *t->workers);
	t->workers[t->nworkers++] = w->id;
	o->workers = xrealloc(o->workers, (o->nworkers + 1) * sizeof *o->workers);
	o->workers[o->nworkers++] = w;
	return w;
}

#endif
