/* store: the durable state, in SQLite (WAL) in the state directory, behind a
 * journal of commits (journal.h).
 *   sqlite3 ~/.local/state/orchfs/orchfs.db 'select seq, line from events order by seq desc limit 3'
 * Every change is an event, so a commit persists exactly the objects the new
 * events name (tasks, tracks, workers, context, pipeline) together with the
 * events themselves. Commits are gathered under orch.lock and journaled by
 * one writer at a time, the committer that waits for its commit or else the
 * store thread, several in one record when they queue up (group commit);
 * only then are their events visible and their writers answered. A control
 * write returns after its commit is in the journal (one write(2)), so it
 * survives kill -9; with --durable a sync of its own (one for all the
 * records written before it) makes it survive power loss before the write is
 * acknowledged for good (store_wait) and its events are seen. The store thread applies the journal to SQLite
 * behind, a batch per transaction, and a start replays what it had not. The
 * model lock is never held while the disk is written. */
#ifndef ORCHFS_STORE_H
#define ORCHFS_STORE_H

#include <stdbool.h>

#include "orch.h"

struct store;
struct orch_log;

/* Opens (creating or migrating) STATE_DIR/orchfs.db, locking the directory,
 * and applies what STATE_DIR/orchfs.journal holds of a daemon that did not
 * stop cleanly. A corrupt or locked database is an error with a clear message. */
/* Appends a warning when others may read or write the state directory. */
void store_check_mode(const char *state_dir, struct buf *warning);
int store_open(const char *state_dir, bool durable, struct store **out, struct orch_err *err);
void store_close(struct store *s);
/* Loads everything into a freshly initialised orch (no threads running yet)
 * and takes over committing its events. */
int store_load(struct store *s, struct orch *o, struct orch_err *err);
/* Called by the store's writer for each event it has written, before the event
 * is visible and before its writer is answered (with no lock held), then
 * once with NULL when a group's events have all been passed (one writer at
 * a time): fs/ops.c drops the kernel's copies of what the group changed,
 * each once, so nobody reads them stale. */
typedef void (*store_hook_fn)(void *arg, const struct event_rec *rec);
void store_set_hook(struct store *s, store_hook_fn fn, void *arg);
/* Where the store tells its failures from now on (a write, a replay). */
void store_set_log(struct store *s, const struct orch_log *log);
/* Starts the store thread; from now on it and the committers that wait write. */
int store_start(struct store *s, struct events *ev);
/* orch.lock held: queues what the events since the last call changed (the
 * rows of the objects they name, and the events), and returns its ticket.
 * Costs what the change touched, never what is stored. waited: the caller
 * will store_wait for it, and write it then if nobody else has (the thread
 * is not woken); else the store thread writes it. */
uint64_t store_queue(struct store *s, struct orch *o, bool waited);
/* orch.lock held: the row an archived track leaves in the store: k's own
 * (before its tasks are unlinked), a's summary, and every task of k whole. */
char *store_archived_doc(const struct track *k, const struct archived_track *a);
/* A worker's trace: the lines of its events, oldest first (any thread; waits
 * until what was acknowledged is applied). */
void store_trace(struct store *s, int worker, struct buf *out);
/* Without orch.lock: until the commit of ticket is in the journal and, with
 * --durable, synced to the disk (0), or has failed (-EIO; it is tried again
 * with the next commit). When nobody is writing and the commit is still
 * queued, the caller writes the queue itself, in its own thread; so with a
 * sync due that nobody runs. */
int store_wait(struct store *s, uint64_t ticket);
/* The same, until it is in the journal (it survives kill -9), synced or not. */
int store_wait_journaled(struct store *s, uint64_t ticket);

#endif
