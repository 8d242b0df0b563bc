/* render: the JSON (and Graphviz) views of the model. Each returns a new cJSON
 * tree built while orch.lock is held; callers print it after unlocking when
 * they can. Field names are the contract of SPEC section 2. */
#ifndef ORCHFS_RENDER_H
#define ORCHFS_RENDER_H

#include "orch.h"

cJSON *render_usage(const struct orch *o, const struct usage_set *set);
cJSON *render_worker(struct orch *o, const struct worker *w);
cJSON *render_workers(struct orch *o);
cJSON *render_task(struct orch *o, const struct task *t, bool with_workers);
cJSON *render_track(struct orch *o, const struct track *k, bool with_tasks);
cJSON *render_tracks(struct orch *o);
cJSON *render_pipeline(struct orch *o);
cJSON *render_dag(struct orch *o);
void render_dag_dot(struct orch *o, struct buf *out);
cJSON *render_financial(struct orch *o);
/* state.json without context and telemetry, which are added unlocked. */
cJSON *render_state(struct orch *o);

#endif
