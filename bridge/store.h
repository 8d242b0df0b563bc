/* store: the durable state, in SQLite (WAL) in the state directory.
 *   sqlite3 ~/.local/state/orchfs/orchfs.db 'select seq, line from events order by seq desc limit 3'
 * Every change is an event, so a flush persists exactly the objects the new
 * events name (tasks, tracks, workers, context, pipeline) together with the
 * events themselves, in one transaction; only after COMMIT are those events
 * visible to readers. A control write returns after its flush, so it survives
 * kill -9 (WAL with synchronous=NORMAL); --durable adds an fsync per commit
 * (synchronous=FULL) so it also survives power loss. All the events of one
 * command or one scheduler tick share one commit. */
#ifndef ORCHFS_STORE_H
#define ORCHFS_STORE_H

#include <stdbool.h>

#include "orch.h"

struct store;

/* Opens (creating or migrating) STATE_DIR/orchfs.db, locking the directory.
 * A corrupt or locked database is an error with a clear message. */
int store_open(const char *state_dir, bool durable, struct store **out, struct orch_err *err);
void store_close(struct store *s);
/* Loads everything into a freshly initialised orch (no threads running yet)
 * and takes over committing its events. */
int store_load(struct store *s, struct orch *o, struct orch_err *err);
/* orch.lock held: persists what the events since the last flush changed. */
int store_flush(struct store *s, struct orch *o);

#endif
