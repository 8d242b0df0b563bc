/* dag: the one global task DAG. A batch of mutations is applied in order to the
 * live model with an undo log; the first failure rolls everything back, so a
 * write is all or nothing. Side effects (signals to workers, events) happen
 * only after the whole batch has been applied.
 *   printf 'add_dep t3 t1\nremove_dep t3 t2\n' > mma/dag/mutate
 * All functions expect orch.lock held. */
#ifndef ORCHFS_DAG_H
#define ORCHFS_DAG_H

#include "cmd.h"
#include "orch.h"

int dag_mutate(struct orch *o, const struct cmd_mutate *m, struct buf *result,
	       struct orch_err *err);
/* tracks/create: the track and its tasks in one atomic batch. Result: the track. */
int dag_create_track(struct orch *o, const struct cmd_plan *p, struct buf *result,
		     struct orch_err *err);

#endif
