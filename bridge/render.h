/* render: the JSON (and Graphviz) views of the model, written straight into
 * a buf (json.h's jw). Field names are the contract the README documents.
 *
 * The big documents (state.json, workers.json, tracks.json, dag.json,
 * financial.json) are lists of one fragment per object. Fragments are kept,
 * joined per chunk of RENDER_CHUNK objects, and a chunk is written again only
 * when one of its objects changed (render_mark, called for every object an
 * event names). Under orch.lock a document costs a reference per chunk; the
 * joining, the copying and everything else happens after the lock is
 * released, so a reader of a large document never holds up the scheduler.
 *   render_doc(o, RENDER_STATE, &buf);   (takes orch.lock itself) */
#ifndef ORCHFS_RENDER_H
#define ORCHFS_RENDER_H

#include "orch.h"

#define RENDER_CHUNK 64

/* The lists objects are kept in: a task's slot is task.pos, a track's
 * track.pos, a worker's its id - 1. */
enum render_list { RL_TASKS, RL_TRACKS, RL_WORKERS, RL_COUNT };

enum render_doc_kind { RENDER_STATE, RENDER_WORKERS, RENDER_TRACKS, RENDER_DAG, RENDER_FINANCIAL };

void render_init(struct orch *o);
void render_free(struct orch *o);
/* Takes orch.lock: lets go the fragments no document has needed for idle_ns,
 * so a state.json read once is not held for good (the next read makes them
 * again). */
void render_trim(struct orch *o, int64_t idle_ns);
/* Lock held: the object in slot pos of list changed (or came, or went). */
void render_mark(struct orch *o, enum render_list list, size_t pos);
/* Takes orch.lock for the gathering only. state.json here lacks context and
 * telemetry: extra (may be NULL) is written before its closing brace. */
void render_doc(struct orch *o, enum render_doc_kind kind, const char *extra, struct buf *out);

/* Small views, lock held; each appends one JSON value (no newline). */
void render_usage(const struct orch *o, const struct usage_set *set, struct buf *out);
void render_worker(const struct orch *o, const struct worker *w, struct buf *out);
/* Its status as readers see it: "pending" while its cluster queues it. */
const char *worker_status_shown(const struct orch *o, const struct worker *w);
/* with_workers: the task's info.json (its workers in full, and their usage). */
/* A task; with its workers whole (and their usage) or as ids, and with why
 * it waits (its own info.json and its track's) or not (state.json). */
enum { TASK_WITH_WORKERS = 1, TASK_WITH_WAITING = 2 };
void render_task(struct orch *o, const struct task *t, unsigned with, struct buf *out);
/* with_tasks: the track's info.json (its tasks, and its usage). */
void render_track(struct orch *o, const struct track *k, bool with_tasks, struct buf *out);
void render_pipeline(const struct orch *o, struct buf *out);
/* mma/archive.json: {"tracks":[{"id","title","status","budget_usd","cost_usd",
 * "created_at","archived_at","tasks_by_status":{STATUS:N,...},"task_count"}]}, the
 * counts as tracks.json has them */
void render_archive(const struct orch *o, struct buf *out);
/* Lock held. A cluster per track: it is small next to the JSON documents. */
void render_dag_dot(struct orch *o, struct buf *out);

#endif
