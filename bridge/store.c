/* store: SQLite persistence of the model and the event log, and restarts. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "context.h"
#include "journal.h"
#include "log.h"
#include "pricing.h"
#include "telemetry.h"

/* Statements prepared once: the writer runs them for every commit. */
enum stmt {
	ST_PUT_TASK, ST_DEL_TASK, ST_PUT_TRACK, ST_DEL_TRACK, ST_PUT_WORKER, ST_PUT_META, ST_PUT_EVENT,
	ST_DEL_CONTEXT, ST_PUT_CONTEXT, ST_BEGIN, ST_COMMIT, ST_COUNT
};

struct commit;

struct store {
	sqlite3 *db;        /* the writer's: the loader's, then the store thread's */
	sqlite3 *rdb;       /* replays for event readers, from any thread */
	sqlite3 *cdb;       /* the store thread's, for checkpoints */
	/* atomic: the WAL's frames after the last commit, and what the last
	 * checkpoint had copied; one is due STORE_CHECKPOINT_PAGES past that */
	int wal_pages, checkpointed;
	bool checkpoint_due;
	pthread_mutex_t rlock;
	int lockfd;
	const struct orch_log *log;   /* where its failures are told; NULL: nowhere */
	struct journal *journal;
	uint64_t gathered;  /* last seq queued (orch.lock) */
	/* the pipeline's state as last queued (orch.lock): a commit writes it
	 * only when it changed */
	int queued_pipeline, queued_max_workers;   /* -1: none stored yet */
	uint64_t queued_errors;    /* orch.errors when last_error was last queued */
	struct telemetry *tm;
	struct events *ev;
	sqlite3_stmt *stmts[ST_COUNT];

	/* A commit goes queued -> journaled (acknowledged: its events are
	 * visible) -> applied (in SQLite). A committer that waits for its commit
	 * journals the queue itself when nobody is journaling (it leads the
	 * group), so an acknowledged write costs one write(2) and no hand-off;
	 * the thread journals the commits nobody waits for, and applies every
	 * journaled one, a batch per transaction. One journal writer at a time:
	 * writing. */
	pthread_mutex_t qlock;
	pthread_cond_t qcond;      /* the idle thread is wanted: work, or stop */
	pthread_cond_t qdone;      /* applied moved */
	struct store_waiter *waiters;   /* in wait_for */
	struct commit *qhead, *qtail;   /* queued */
	struct commit *ahead, *atail;   /* journaled, to apply */
	struct buf record;         /* the journal writer's */
	uint64_t queued, done, failed, applied;   /* tickets */
	/* --durable: a journaled commit is on the disk once synced reaches its
	 * ticket. The sync is a step of its own (journal_sync), so commits go
	 * on being journaled while one runs and the next covers them all; a
	 * write through the mount waits for it at close (fs/ops.c). Its events
	 * are seen only once synced. One sync at a time: syncing. */
	bool durable, syncing;
	uint64_t synced, sync_failed, journaled_seq;
	pthread_t thread;
	bool running, stop, writing, idle, wanted;
	bool apply_now;            /* a reader waits for SQLite: no gap */
	/* monotonic ns: when the thread may next journal and apply, and when,
	 * idle, it wakes by itself (INT64_MAX: only when woken) */
	int64_t journal_after, apply_after, wake_at;
	store_hook_fn hook;        /* under qlock */
	void *hook_arg;
};

/* Each entry moves the schema from version i to i + 1 (PRAGMA user_version). */
static const char *const migrations[] = {
	"CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE tracks (id TEXT PRIMARY KEY, doc TEXT NOT NULL);"
	"CREATE TABLE tasks (id TEXT PRIMARY KEY, ord INTEGER NOT NULL, doc TEXT NOT NULL);"
	"CREATE TABLE workers (id INTEGER PRIMARY KEY, doc TEXT NOT NULL);"
	"CREATE TABLE context (name TEXT PRIMARY KEY, ord INTEGER NOT NULL, content BLOB NOT NULL);"
	"CREATE TABLE events (seq INTEGER PRIMARY KEY, channel INTEGER NOT NULL,"
	"  worker INTEGER NOT NULL, line TEXT NOT NULL);"
	"CREATE INDEX events_by_worker ON events (worker) WHERE worker > 0;",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

static int db_error(struct orch_err *err, sqlite3 *db, const char *what, const char *path)
{
	int code = db ? sqlite3_errcode(db) : SQLITE_ERROR;
	const char *msg = db ? sqlite3_errmsg(db) : "cannot open";
	if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
		return err_set(err, EBUSY, "%s: %s is locked by another process (%s)", what, path, msg);
	if (code == SQLITE_NOTADB || code == SQLITE_CORRUPT)
		return err_set(err, EIO, "%s: %s is corrupt (%s); move it away to start afresh", what,
			       path, msg);
	return err_set(err, EIO, "%s: %s: %s", what, path, msg);
}

static int exec(sqlite3 *db, const char *sql)
{
	return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static int user_version(sqlite3 *db, int *v)
{
	sqlite3_stmt *st;
	*v = 0;
	int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
	if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		*v = sqlite3_column_int(st, 0);
		rc = SQLITE_OK;
	}
	sqlite3_finalize(st);
	return rc;
}

static int migrate(sqlite3 *db, const char *path, struct orch_err *err)
{
	int v = 0;
	if (user_version(db, &v) != SQLITE_OK)
		return db_error(err, db, "reading the schema version", path);
	if (v > SCHEMA_VERSION)
		return err_set(err, EIO, "%s has schema version %d, newer than this orchfs (%d)", path,
			       v, SCHEMA_VERSION);
	for (; v < SCHEMA_VERSION; v++) {
		char pragma[64];
		snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", v + 1);
		if (exec(db, "BEGIN IMMEDIATE") != SQLITE_OK || exec(db, migrations[v]) != SQLITE_OK ||
		    exec(db, pragma) != SQLITE_OK || exec(db, "COMMIT") != SQLITE_OK) {
			int rc = db_error(err, db, "migrating the schema", path);
			exec(db, "ROLLBACK");
			return rc;
		}
	}
	return 0;
}

/* The WAL is copied into the database (checkpointed) by the store thread on
 * its own connection, never by a committer: the copy ends in an fsync, which
 * would stall whichever acknowledged write crossed the threshold (a p99 of
 * milliseconds for writes of 50 us). A PASSIVE checkpoint each time the WAL
 * grows by STORE_CHECKPOINT_PAGES lets writers go on; once writes pause, the
 * next one starts the WAL afresh. Under writes that never pause it would grow
 * without end: past STORE_WAL_MAX_PAGES (16 MiB) the checkpoint is RESTART,
 * for which writers wait a moment. */
#define STORE_CHECKPOINT_PAGES 1000
#define STORE_WAL_MAX_PAGES 4096

/* The journal starts afresh once everything in it is applied and it holds
 * this much. The thread's own steps are spaced, so that under a steady stream
 * of changes (a task a millisecond) each carries many of them; a lone change
 * after a quiet spell goes at once. It journals the commits nobody waits for
 * (the scheduler's) at most every STORE_JOURNAL_GAP_NS: one write and one
 * round of cache invalidations for all of them. It applies to SQLite at most
 * every STORE_APPLY_GAP_NS: a transaction's commit writes the same index
 * pages again whatever it carries, and nothing waits for it (an acknowledged
 * change is in the journal; a reader of SQLite asks for the batch at once).
 * A step that failed is tried again after STORE_RETRY_NS. The journal writer
 * keeps a record buffer up to STORE_RECORD_KEEP for the next. */
#define STORE_JOURNAL_RESET (4u << 20)
#define STORE_JOURNAL_GAP_NS 1000000LL
#define STORE_APPLY_GAP_NS 10000000LL
#define STORE_RETRY_NS 1000000000LL
#define STORE_RECORD_KEEP (1u << 20)
#define STORE_TRACE_WAIT_MS 2000

static int wal_grew(void *arg, sqlite3 *db, const char *name, int pages)
{
	struct store *s = arg;
	(void)db;
	(void)name;
	int done = __atomic_load_n(&s->checkpointed, __ATOMIC_ACQUIRE);
	__atomic_store_n(&s->wal_pages, pages, __ATOMIC_RELEASE);
	if (pages < done)   /* the WAL started afresh */
		__atomic_store_n(&s->checkpointed, done = 0, __ATOMIC_RELEASE);
	if (pages - done >= STORE_CHECKPOINT_PAGES)
		__atomic_store_n(&s->checkpoint_due, true, __ATOMIC_RELEASE);
	return SQLITE_OK;
}

static void checkpoint(struct store *s)
{
	bool full = __atomic_load_n(&s->wal_pages, __ATOMIC_ACQUIRE) >= STORE_WAL_MAX_PAGES;
	int log = -1, copied = -1;
	int rc = sqlite3_wal_checkpoint_v2(s->cdb, NULL, full ? SQLITE_CHECKPOINT_RESTART
							     : SQLITE_CHECKPOINT_PASSIVE,
					   &log, &copied);
	/* a RESTART that readers kept from ending is tried again at the next
	 * threshold, not at once: writers wait for each try */
	if (rc == SQLITE_OK && full)
		copied = 0;
	if (copied >= 0)
		__atomic_store_n(&s->checkpointed, copied, __ATOMIC_RELEASE);
}

static bool checkpoint_due(struct store *s)
{
	return __atomic_load_n(&s->checkpoint_due, __ATOMIC_ACQUIRE);
}

/* Apart from journal_reset: a log write may be slow, and is never made
 * under qlock (store_queue takes it with the model lock held). */
static void journal_reset_log(struct store *s, int rc)
{
	if (rc)
		log_error(s->log, "store: cannot start the journal afresh: %s", strerror(-rc));
}

static int journal_recover(struct store *s, const char *path, bool durable,
			   struct orch_err *err);

void store_check_mode(const char *state_dir, struct buf *warning)
{
	struct stat dir;
	if (stat(state_dir, &dir) == 0 && (dir.st_mode & 077))
		buf_printf(warning, "%s is open to others (mode %03o): the store and the logs hold "
			   "commands and their output; chmod 700 it", state_dir,
			   (unsigned)(dir.st_mode & 0777));
}

int store_open(const char *state_dir, bool durable, struct store **out, struct orch_err *err)
{
	char path[4096], lockpath[4096], journal_path[4096];
	snprintf(path, sizeof path, "%s/orchfs.db", state_dir);
	snprintf(journal_path, sizeof journal_path, "%s/orchfs.journal", state_dir);
	snprintf(lockpath, sizeof lockpath, "%s/orchfs.lock", state_dir);
	int lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lockfd < 0)
		return err_set(err, EIO, "cannot open %s: %s", lockpath, strerror(errno));
	if (flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
		close(lockfd);
		return err_set(err, EBUSY, "%s is in use by another orchfs", state_dir);
	}
	/* Commands and env values are in it: the owner's alone. SQLite gives its
	 * -wal and -shm files the database's mode, so making it first is enough;
	 * one made by an older orchfs is put right. */
	int dbfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (dbfd < 0 || fchmod(dbfd, 0600) < 0) {
		int e = errno;
		if (dbfd >= 0)
			close(dbfd);
		close(lockfd);
		return err_set(err, EIO, "cannot create %s: %s", path, strerror(e));
	}
	close(dbfd);
	for (size_t i = 0; i < 2; i++) {
		char side[4096 + 8];
		snprintf(side, sizeof side, "%s%s", path, i ? "-shm" : "-wal");
		(void)chmod(side, 0600);   /* absent: SQLite makes it with the mode above */
	}
	struct store *s = xcalloc(1, sizeof *s);
	s->lockfd = lockfd;
	s->durable = durable;
	pthread_mutex_init(&s->rlock, NULL);
	mutex_init_pi(&s->qlock);
	cond_init_mono(&s->qcond);
	cond_init_mono(&s->qdone);
	int rc;
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
						  SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		rc = db_error(err, s->db, "opening the store", path);
		goto fail;
	}
	sqlite3_busy_timeout(s->db, 2000);
	/* journal_mode answers with a row; a corrupt file fails here or at quick_check */
	if (exec(s->db, "PRAGMA journal_mode = WAL") != SQLITE_OK ||
	    exec(s->db, durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL") !=
		    SQLITE_OK) {
		rc = db_error(err, s->db, "opening the store", path);
		goto fail;
	}
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "PRAGMA quick_check", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		rc = db_error(err, s->db, "checking the store", path);
		goto fail;
	}
	if (strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0) {
		rc = err_set(err, EIO, "the store %s is corrupt (%s); move it away to start afresh",
			     path, sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
		goto fail;
	}
	sqlite3_finalize(st);
	if ((rc = migrate(s->db, path, err)))
		goto fail;
	if (sqlite3_open_v2(path, &s->rdb, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		rc = db_error(err, s->rdb, "opening the store for replays", path);
		goto fail;
	}
	sqlite3_busy_timeout(s->rdb, 2000);
	if (sqlite3_open_v2(path, &s->cdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
		    SQLITE_OK ||
	    exec(s->cdb, durable ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL") !=
		    SQLITE_OK) {
		rc = db_error(err, s->cdb, "opening the store for checkpoints", path);
		goto fail;
	}
	sqlite3_busy_timeout(s->cdb, 100);   /* how long a RESTART may hold writers up */
	sqlite3_wal_hook(s->db, wal_grew, s);   /* and no automatic checkpoint */
	if ((rc = journal_recover(s, journal_path, durable, err)))
		goto fail;
	*out = s;
	return 0;
fail:
	store_close(s);
	return rc;
}

/* --- the model as documents --- */

/* The model's rows, written straight as JSON (the loaders below read them). */

static void usage_doc(struct buf *b, const struct usage_set *set)
{
	buf_putc(b, '[');
	for (size_t i = 0; i < set->n; i++) {
		const struct usage *u = &set->v[i];
		jw_lit(b, "{\"model\":");
		jw_str(b, u->model);
		jw_lit(b, ",\"in\":");
		jw_i64(b, u->input);
		jw_lit(b, ",\"out\":");
		jw_i64(b, u->output);
		jw_lit(b, ",\"cr\":");
		jw_i64(b, u->cache_read);
		jw_lit(b, ",\"cw\":");
		jw_i64(b, u->cache_write);
		jw_lit(b, ",\"n\":");
		jw_i64(b, u->reports);
		buf_putc(b, '}');
		if (i + 1 < set->n)
			buf_putc(b, ',');
	}
	buf_putc(b, ']');
}

static char *track_doc(const struct track *k)
{
	struct buf b = BUF_INIT;
	jw_lit(&b, "{\"id\":");
	jw_str(&b, k->id);
	jw_lit(&b, ",\"title\":");
	jw_str(&b, k->title);
	jw_lit(&b, ",\"budget\":");
	jw_i64(&b, k->budget_micro);
	jw_lit(&b, ",\"status\":");
	jw_i64(&b, k->status);
	jw_lit(&b, ",\"created\":");
	jw_i64(&b, k->created_ms);
	jw_lit(&b, ",\"usage\":");
	usage_doc(&b, &k->usage);
	buf_putc(&b, '}');
	return buf_steal(&b);
}

static char *task_doc(const struct task *t)
{
	struct buf b = BUF_INIT;
	jw_lit(&b, "{\"id\":");
	jw_str(&b, t->id);
	jw_lit(&b, ",\"track\":");
	jw_str(&b, t->track->id);
	jw_lit(&b, ",\"title\":");
	jw_str(&b, task_title(t));
	jw_lit(&b, ",\"command\":");
	jw_str(&b, t->command);
	jw_lit(&b, ",\"cwd\":");
	jw_str_or_null(&b, t->cwd);
	jw_lit(&b, ",\"model\":");
	jw_str_or_null(&b, t->model);
	jw_lit(&b, ",\"env\":");
	jw_strv(&b, t->env, t->nenv);
	jw_lit(&b, ",\"retries\":");
	jw_i64(&b, t->retries);
	jw_lit(&b, ",\"retries_initial\":");
	jw_i64(&b, t->retries_initial);
	jw_lit(&b, ",\"timeout_s\":");
	jw_i64(&b, t->timeout_s);
	jw_lit(&b, ",\"priority\":");
	jw_i64(&b, t->priority);
	jw_lit(&b, ",\"runner\":");
	jw_i64(&b, t->runner);
	jw_lit(&b, ",\"slurm\":");
	jw_strv(&b, t->slurm, t->nslurm);
	jw_lit(&b, ",\"order\":");
	jw_i64(&b, (int64_t)t->order);
	jw_lit(&b, ",\"status\":");
	jw_i64(&b, t->status);
	jw_lit(&b, ",\"deps\":[");
	for (size_t i = 0; i < t->ndeps; i++) {
		if (i)
			buf_putc(&b, ',');
		jw_str(&b, t->deps[i]->id);
	}
	jw_lit(&b, "],\"workers\":[");
	for (size_t i = 0; i < t->nworkers; i++) {
		if (i)
			buf_putc(&b, ',');
		jw_i64(&b, t->workers[i]);
	}
	jw_lit(&b, "],\"created\":");
	jw_i64(&b, t->created_ms);
	buf_putc(&b, '}');
	return buf_steal(&b);
}

static char *worker_doc(const struct worker *w)
{
	struct buf b = BUF_INIT;
	jw_lit(&b, "{\"id\":");
	jw_i64(&b, w->id);
	jw_lit(&b, ",\"status\":");
	jw_i64(&b, w->status);
	jw_lit(&b, ",\"task\":");
	jw_str(&b, w->task_id);
	jw_lit(&b, ",\"track\":");
	jw_str(&b, w->track_id);
	jw_lit(&b, ",\"command\":");
	jw_str(&b, w->command);
	jw_lit(&b, ",\"cwd\":");
	jw_str(&b, w->cwd);
	jw_lit(&b, ",\"model\":");
	jw_str_or_null(&b, w->model);
	jw_lit(&b, ",\"env\":");
	jw_strv(&b, w->env, w->nenv);
	jw_lit(&b, ",\"pid\":");
	jw_i64(&b, w->pid);
	jw_lit(&b, ",\"runner\":");
	jw_i64(&b, w->runner);
	jw_lit(&b, ",\"ref\":");
	jw_str_or_null(&b, w->runner_ref);
	jw_lit(&b, ",\"started\":");
	jw_i64(&b, w->started_ms);
	jw_lit(&b, ",\"ended\":");
	jw_i64(&b, w->ended_ms);
	jw_lit(&b, ",\"timeout_s\":");
	jw_i64(&b, w->timeout_s);
	jw_lit(&b, ",\"exit_code\":");
	jw_i64(&b, w->exit_code);
	jw_lit(&b, ",\"signal\":");
	jw_i64(&b, w->term_signal);
	jw_lit(&b, ",\"timed_out\":");
	jw_bool(&b, w->timed_out);
	jw_lit(&b, ",\"kill_requested\":");
	jw_bool(&b, w->kill_requested);
	jw_lit(&b, ",\"cpu_us\":");
	jw_i64(&b, w->cpu_us);
	jw_lit(&b, ",\"memory_peak\":");
	jw_i64(&b, w->memory_peak);
	jw_lit(&b, ",\"log\":");
	jw_str(&b, w->log_path);
	jw_lit(&b, ",\"usage\":");
	usage_doc(&b, &w->usage);
	buf_putc(&b, '}');
	return buf_steal(&b);
}

static int64_t doc_i64(const cJSON *d, const char *key, int64_t fallback)
{
	int64_t v;
	return json_int(cJSON_GetObjectItemCaseSensitive(d, key), INT64_MIN / 2, INT64_MAX / 2, &v)
		       ? v : fallback;
}

/* A status or kind stored as its number: one out of [min, max] (a damaged
 * or a newer daemon's row) is taken as fallback, with a warning, so it is
 * never used as an index into a table of names. */
static int doc_enum(struct store *s, const cJSON *d, const char *key, int min, int max,
		    int fallback, const char *fallback_name, const char *what, const char *id)
{
	int64_t v = doc_i64(d, key, fallback);
	if (v >= min && v <= max)
		return (int)v;
	log_warn(s->log, "store: %s %s: stored %s %lld is not known; taken as %s", what, id, key,
		 (long long)v, fallback_name);
	return fallback;
}

static char *doc_str(const cJSON *d, const char *key)
{
	const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, key));
	return s ? xstrdup(s) : NULL;
}

static char **doc_strv(const cJSON *d, const char *key, size_t *n)
{
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(d, key), *e;
	*n = 0;
	char **v = NULL;
	cJSON_ArrayForEach(e, a) {
		if (!cJSON_IsString(e))
			continue;
		v = xrealloc(v, (*n + 1) * sizeof *v);
		v[(*n)++] = xstrdup(e->valuestring);
	}
	return v;
}

static void doc_usage(const cJSON *d, struct usage_set *set)
{
	const cJSON *e;
	cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(d, "usage")) {
		struct usage u = {0};
		snprintf(u.model, sizeof u.model, "%s",
			 cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "model")) ?: "");
		u.input = doc_i64(e, "in", 0);
		u.output = doc_i64(e, "out", 0);
		u.cache_read = doc_i64(e, "cr", 0);
		u.cache_write = doc_i64(e, "cw", 0);
		u.reports = doc_i64(e, "n", 0);
		usage_add(set, &u);
	}
}

static bool copy_id(char *dst, const cJSON *d, const char *key)
{
	const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(d, key));
	if (!s || strlen(s) > ID_MAX)
		return false;
	strcpy(dst, s);
	return true;
}

/* --- commits: gathered under orch.lock, written by one writer at a time --- */

char *store_archived_doc(const struct track *k, const struct archived_track *a)
{
	char *own = track_doc(k);
	struct buf b = BUF_INIT;
	buf_append(&b, own, strlen(own) - 1);   /* its '}' comes after the rest */
	free(own);
	jw_lit(&b, ",\"archived\":");
	jw_i64(&b, a->archived_ms);
	jw_lit(&b, ",\"cost\":");
	jw_i64(&b, a->cost_micro);
	jw_lit(&b, ",\"ntasks\":");
	jw_i64(&b, (int64_t)a->ntasks);
	jw_lit(&b, ",\"counts\":[");
	for (int s = 0; s <= TASK_HELD; s++) {
		if (s)
			buf_putc(&b, ',');
		jw_i64(&b, (int64_t)a->counts[s]);
	}
	jw_lit(&b, "],\"tasks\":[");
	for (const struct task *t = k->first; t; t = t->tnext) {
		char *doc = task_doc(t);
		buf_puts(&b, doc);
		free(doc);
		if (t->tnext)
			buf_putc(&b, ',');
	}
	jw_lit(&b, "]}");
	return buf_steal(&b);
}

enum row_table { ROW_TASK, ROW_TRACK, ROW_WORKER, ROW_META, ROW_CONTEXT_DOC };

/* One row to write (doc) or delete (doc NULL). */
struct row {
	enum row_table table;
	char *key;                 /* tasks, tracks, meta */
	int64_t ikey;              /* workers */
	int64_t ord;               /* tasks */
	char *doc;
};

struct blob {
	char *name, *data;
	size_t len;
};

struct commit {
	uint64_t ticket;
	uint64_t last_seq;         /* its events end here: readers may see them once written */
	struct event_rec *lines;
	size_t nlines;
	struct row *rows;
	size_t nrows;
	bool context;              /* the context table is replaced by blobs */
	struct blob *blobs;
	size_t nblobs;
	bool waited;               /* its writer will lead it to the journal */
	struct commit *next;
};

static void commit_free(struct commit *c)
{
	for (size_t i = 0; i < c->nlines; i++) {
		free(c->lines[i].line);
		free(c->lines[i].task);
		free(c->lines[i].track);
		free(c->lines[i].name);
	}
	free(c->lines);
	for (size_t i = 0; i < c->nrows; i++) {
		free(c->rows[i].key);
		free(c->rows[i].doc);
	}
	free(c->rows);
	for (size_t i = 0; i < c->nblobs; i++) {
		free(c->blobs[i].name);
		free(c->blobs[i].data);
	}
	free(c->blobs);
	free(c);
}

/* doc: owned by the row (NULL: the row is deleted). */
static void commit_row(struct commit *c, enum row_table table, const char *key, int64_t ikey,
		       int64_t ord, char *doc)
{
	c->rows = xrealloc(c->rows, (c->nrows + 1) * sizeof *c->rows);
	c->rows[c->nrows++] = (struct row){table, key ? xstrdup(key) : NULL, ikey, ord, doc};
}

static void commit_meta(struct commit *c, const char *key, const char *value)
{
	commit_row(c, ROW_META, key, 0, 0, xstrdup(value));
}

/* --- a commit as a journal record --- */

#define NO_STRING UINT32_MAX

static void put_u64(struct buf *b, uint64_t v)
{
	buf_append(b, &v, sizeof v);
}

static void put_u32(struct buf *b, uint32_t v)
{
	buf_append(b, &v, sizeof v);
}

static void put_bytes(struct buf *b, const char *s, size_t len)
{
	put_u32(b, s ? (uint32_t)len : NO_STRING);
	if (s)
		buf_append(b, s, len);
}

/* Only what applying it needs: the rows and blobs, and of each event its
 * seq, channel, worker and line. */
static void commit_encode(struct buf *b, const struct commit *c)
{
	put_u32(b, (uint32_t)c->nrows);
	put_u32(b, (uint32_t)c->nblobs);
	put_u32(b, (uint32_t)c->nlines);
	put_u32(b, c->context);
	for (size_t i = 0; i < c->nrows; i++) {
		const struct row *r = &c->rows[i];
		put_u32(b, (uint32_t)r->table);
		put_u64(b, (uint64_t)r->ikey);
		put_u64(b, (uint64_t)r->ord);
		put_bytes(b, r->key, r->key ? strlen(r->key) : 0);
		put_bytes(b, r->doc, r->doc ? strlen(r->doc) : 0);
	}
	for (size_t i = 0; i < c->nblobs; i++) {
		put_bytes(b, c->blobs[i].name, strlen(c->blobs[i].name));
		put_bytes(b, c->blobs[i].data, c->blobs[i].len);
	}
	for (size_t i = 0; i < c->nlines; i++) {
		const struct event_rec *e = &c->lines[i];
		put_u64(b, e->seq);
		put_u32(b, e->channel);
		put_u32(b, (uint32_t)e->worker);
		put_bytes(b, e->line, e->len);
	}
}

struct cursor {
	const char *p, *end;
	bool bad;   /* read past the end: the record is not one of ours */
};

static void take(struct cursor *cur, void *out, size_t len)
{
	if (cur->bad || (size_t)(cur->end - cur->p) < len) {
		cur->bad = true;
		memset(out, 0, len);
		return;
	}
	memcpy(out, cur->p, len);
	cur->p += len;
}

static uint32_t take_u32(struct cursor *cur)
{
	uint32_t v;
	take(cur, &v, sizeof v);
	return v;
}

static uint64_t take_u64(struct cursor *cur)
{
	uint64_t v;
	take(cur, &v, sizeof v);
	return v;
}

/* NUL-terminated, *len bytes before it; NULL for none */
static char *take_bytes(struct cursor *cur, size_t *len)
{
	uint32_t n = take_u32(cur);
	if (len)
		*len = 0;
	if (cur->bad || n == NO_STRING)
		return NULL;
	if ((size_t)(cur->end - cur->p) < n) {
		cur->bad = true;
		return NULL;
	}
	char *s = xstrndup(cur->p, n);
	cur->p += n;
	if (len)
		*len = n;
	return s;
}

/* NULL when the bytes are not a commit (a record written by another build). */
static struct commit *commit_decode(struct cursor *cur)
{
	struct commit *c = xcalloc(1, sizeof *c);
	uint32_t nrows = take_u32(cur), nblobs = take_u32(cur), nlines = take_u32(cur);
	c->context = take_u32(cur) != 0;
	/* each item takes at least 4 bytes: counts past that are not ours */
	if ((size_t)nrows + nblobs + nlines > (size_t)(cur->end - cur->p) / 4)
		cur->bad = true;
	for (uint32_t i = 0; i < nrows && !cur->bad; i++) {
		uint32_t table = take_u32(cur);
		int64_t ikey = (int64_t)take_u64(cur), ord = (int64_t)take_u64(cur);
		char *key = take_bytes(cur, NULL);
		char *doc = take_bytes(cur, NULL);
		if (table > ROW_CONTEXT_DOC)
			cur->bad = true;
		commit_row(c, cur->bad ? ROW_META : (enum row_table)table, key, ikey, ord, doc);
		free(key);
	}
	if (!cur->bad && nblobs)
		c->blobs = xcalloc(nblobs, sizeof *c->blobs);
	for (uint32_t i = 0; i < nblobs && !cur->bad; i++) {
		struct blob *bl = &c->blobs[c->nblobs++];
		bl->name = take_bytes(cur, NULL);
		bl->data = take_bytes(cur, &bl->len);
		if (!bl->name || !bl->data)
			cur->bad = true;
	}
	if (!cur->bad && nlines)
		c->lines = xcalloc(nlines, sizeof *c->lines);
	for (uint32_t i = 0; i < nlines && !cur->bad; i++) {
		struct event_rec *e = &c->lines[c->nlines++];
		e->seq = take_u64(cur);
		e->channel = take_u32(cur);
		e->worker = (int)take_u32(cur);
		e->line = take_bytes(cur, &e->len);
		if (!e->line)
			cur->bad = true;
	}
	if (cur->bad) {
		commit_free(c);
		return NULL;
	}
	return c;
}

static void gather_blob(void *arg, const char *name, const char *data, size_t len)
{
	struct commit *c = arg;
	c->blobs = xrealloc(c->blobs, (c->nblobs + 1) * sizeof *c->blobs);
	c->blobs[c->nblobs++] = (struct blob){xstrdup(name), xstrndup(data ? data : "", len), len};
}

struct gather {
	struct orch *o;
	struct commit *c;
	enum row_table table;
};

static void gather_id(void *arg, const char *id, void *value)
{
	struct gather *g = arg;
	if (g->table == ROW_TASK) {
		struct task *t = task_find(g->o, id);
		commit_row(g->c, ROW_TASK, id, 0, t ? (int64_t)t->order : 0, t ? task_doc(t) : NULL);
	} else {
		struct track *k = track_find(g->o, id);
		struct archived_track *a = k ? NULL : archive_find(g->o, id);
		if (k) {
			commit_row(g->c, ROW_TRACK, id, 0, 0, track_doc(k));
		} else if (a && a->doc) {
			/* archived: its row holds it all from now on, written once */
			commit_row(g->c, ROW_TRACK, id, 0, 0, a->doc);
			a->doc = NULL;
		} else if (!a) {
			commit_row(g->c, ROW_TRACK, id, 0, 0, NULL);   /* removed */
		}
	}
}

static int int_cmp(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

/* A committer in wait_for. It is woken alone, when its ticket is reached
 * or when it may lead the next group or sync, not by every move of the
 * queue: a broadcast woke every waiting writer at each group and each sync,
 * most of them to sleep again (a fifth of the context switches of a write
 * at 8 writers under --durable). */
struct store_waiter {
	uint64_t ticket;
	bool synced;               /* it waits for the sync as well */
	pthread_cond_t cond;
	struct store_waiter *next;
};

/* qlock held: what wait_for would do now for w, were it awake */
enum waiter_next { WAITER_SLEEPS, WAITER_RETURNS, WAITER_JOURNALS, WAITER_SYNCS };

static enum waiter_next waiter_next(const struct store *s, const struct store_waiter *w)
{
	if (!s->running)
		return WAITER_RETURNS;
	if (s->done < w->ticket) {
		if (s->failed >= w->ticket)
			return WAITER_RETURNS;
		/* nobody writing and ours still queued: lead, journaling all that is */
		if (!s->writing && s->qhead && s->qhead->ticket <= w->ticket && !s->stop)
			return WAITER_JOURNALS;
		return WAITER_SLEEPS;
	}
	if (!w->synced || s->synced >= w->ticket || s->sync_failed >= w->ticket)
		return WAITER_RETURNS;
	return s->syncing ? WAITER_SLEEPS : WAITER_SYNCS;   /* the thread has not got to it: lead */
}

/* qlock held, the queue moved: wakes the waiters that return, and one that
 * may lead what nobody runs */
static void waiters_wake(struct store *s)
{
	bool leader = false;
	for (struct store_waiter *w = s->waiters; w; w = w->next) {
		enum waiter_next next = waiter_next(s, w);
		if (next == WAITER_RETURNS || (next != WAITER_SLEEPS && !leader)) {
			leader = leader || next != WAITER_RETURNS;
			pthread_cond_signal(&w->cond);
		}
	}
}

/* qlock held: there is work for the thread, due at the monotonic time due
 * (0: now). It is woken only when idle, and only if it would sleep past due. */
static void wake_thread(struct store *s, int64_t due)
{
	s->wanted = true;
	if (s->idle && due < s->wake_at)
		pthread_cond_signal(&s->qcond);
}

uint64_t store_queue(struct store *s, struct orch *o, bool waited)
{
	struct events *ev = &o->events;
	struct commit *c = xcalloc(1, sizeof *c);
	struct hashmap *tasks = hashmap_new(), *tracks = hashmap_new();
	/* Copy the new lines out; the ring may be written meanwhile by others. */
	pthread_mutex_lock(&ev->lock);
	uint64_t last = ev->seq;
	uint64_t first_kept = ev->count ? ev->ring[ev->head].seq : ev->seq + 1;
	c->nlines = (size_t)(last - s->gathered);
	c->lines = xcalloc(c->nlines ? c->nlines : 1, sizeof *c->lines);
	for (size_t i = 0; i < c->nlines; i++) {
		const struct event_rec *r =
			&ev->ring[(ev->head + (s->gathered + 1 + i - first_kept)) % ev->cap];
		c->lines[i] = *r;
		c->lines[i].line = xstrndup(r->line, r->len);
		c->lines[i].task = r->task ? xstrdup(r->task) : NULL;
		c->lines[i].track = r->track ? xstrdup(r->track) : NULL;
		c->lines[i].name = r->name ? xstrdup(r->name) : NULL;
		/* the objects it names are the rows to write */
		if (r->task)
			hashmap_put(tasks, r->task, c);
		if (r->track)
			hashmap_put(tracks, r->track, c);
	}
	pthread_mutex_unlock(&ev->lock);

	/* a failed write is no event, but its last_error is a row to keep */
	bool error_moved = __atomic_load_n(&o->errors, __ATOMIC_ACQUIRE) != s->queued_errors;
	if (!c->nlines && !error_moved) {
		hashmap_free(tasks);
		hashmap_free(tracks);
		commit_free(c);
		pthread_mutex_lock(&s->qlock);
		uint64_t ticket = s->queued;   /* what is in flight may hold what the caller saw */
		pthread_mutex_unlock(&s->qlock);
		return ticket;
	}
	s->gathered = last;
	c->last_seq = last;

	/* Only the objects the change named: rows proportional to it, not to history. */
	struct gather g = {o, c, ROW_TASK};
	hashmap_clear_each(tasks, gather_id, &g);
	g.table = ROW_TRACK;
	hashmap_clear_each(tracks, gather_id, &g);
	hashmap_free(tasks);
	hashmap_free(tracks);
	int *ids = xmalloc((c->nlines ? c->nlines : 1) * sizeof *ids);
	size_t nids = 0;
	for (size_t i = 0; i < c->nlines; i++) {
		if (c->lines[i].worker > 0)
			ids[nids++] = c->lines[i].worker;
		if (c->lines[i].channel == EV_CONTEXT)
			c->context = true;
	}
	qsort(ids, nids, sizeof *ids, int_cmp);
	for (size_t i = 0; i < nids; i++) {
		struct worker *w = i && ids[i] == ids[i - 1] ? NULL : worker_find(o, ids[i]);
		if (w)
			commit_row(c, ROW_WORKER, NULL, w->id, 0, worker_doc(w));
	}
	free(ids);
	if (c->context) {
		struct buf doc = BUF_INIT;
		cJSON *ctx = ctx_export(o->ctx);
		json_write(&doc, ctx);
		cJSON_Delete(ctx);
		commit_row(c, ROW_CONTEXT_DOC, "context", 0, 0, buf_steal(&doc));
		ctx_export_contents(o->ctx, gather_blob, c);
	}
	/* the seq is the events' own (load_meta): no row of its own each time */
	if ((int)o->pipeline != s->queued_pipeline) {
		commit_meta(c, "pipeline", pipeline_status_name(o->pipeline));
		s->queued_pipeline = (int)o->pipeline;
	}
	if (error_moved) {
		s->queued_errors = __atomic_load_n(&o->errors, __ATOMIC_ACQUIRE);
		commit_meta(c, "last_error", o->last_error.data);
	}
	if (o->max_workers != s->queued_max_workers) {
		char num[32];
		snprintf(num, sizeof num, "%d", o->max_workers);
		commit_meta(c, "max_workers", num);
		s->queued_max_workers = o->max_workers;
	}

	c->waited = waited;
	pthread_mutex_lock(&s->qlock);
	uint64_t ticket = c->ticket = ++s->queued;   /* c is the store's once queued */
	*(s->qtail ? &s->qtail->next : &s->qhead) = c;
	s->qtail = c;
	if (!waited)
		wake_thread(s, s->journal_after);
	pthread_mutex_unlock(&s->qlock);
	return ticket;
}

static const char *const stmt_sql[ST_COUNT] = {
	[ST_PUT_TASK] = "INSERT OR REPLACE INTO tasks (id, ord, doc) VALUES (?1, ?2, ?3)",
	[ST_DEL_TASK] = "DELETE FROM tasks WHERE id = ?1",
	/* an upsert keeps the row (REPLACE would delete and insert it) */
	[ST_PUT_TRACK] = "INSERT INTO tracks (id, doc) VALUES (?1, ?3) "
			 "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
	[ST_DEL_TRACK] = "DELETE FROM tracks WHERE id = ?1",
	[ST_PUT_WORKER] = "INSERT OR REPLACE INTO workers (id, doc) VALUES (?4, ?3)",
	[ST_PUT_META] = "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?3)",
	[ST_PUT_EVENT] = ("INSERT OR REPLACE INTO events (seq, channel, worker, line) "
			  "VALUES (?4, ?2, ?5, ?3)"),
	[ST_DEL_CONTEXT] = "DELETE FROM context",
	[ST_PUT_CONTEXT] = "INSERT INTO context (name, ord, content) VALUES (?1, ?2, ?6)",
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
};

/* Runs statement st with the values it names (?1 text key, ?2 ord, ?3 text,
 * ?4 integer key, ?5 worker, ?6 blob); -1 on failure. */
static int run(struct store *s, enum stmt st, const char *key, int64_t ord, const char *text,
	       size_t len, int64_t ikey, int worker, uint64_t *bytes)
{
	sqlite3_stmt *q = s->stmts[st];
	if (!q && sqlite3_prepare_v3(s->db, stmt_sql[st], -1, SQLITE_PREPARE_PERSISTENT,
				     &s->stmts[st], NULL) != SQLITE_OK)
		return -1;
	q = s->stmts[st];
	sqlite3_reset(q);
	sqlite3_clear_bindings(q);
	int n = sqlite3_bind_parameter_count(q);
	for (int i = 1; i <= n; i++) {
		const char *name = sqlite3_bind_parameter_name(q, i);
		switch (name ? name[1] : 0) {
		case '1': sqlite3_bind_text(q, i, key, -1, SQLITE_STATIC); break;
		case '2': sqlite3_bind_int64(q, i, ord); break;
		case '3': sqlite3_bind_text(q, i, text, (int)len, SQLITE_STATIC); break;
		case '4': sqlite3_bind_int64(q, i, ikey); break;
		case '5': sqlite3_bind_int(q, i, worker); break;
		case '6': sqlite3_bind_blob(q, i, text ? text : "", (int)len, SQLITE_STATIC); break;
		default: break;
		}
	}
	*bytes += len;
	int rc = sqlite3_step(q) == SQLITE_DONE ? 0 : -1;
	sqlite3_reset(q);   /* done with: nothing of it stays open */
	return rc;
}

static int write_commit(struct store *s, const struct commit *c, uint64_t *bytes)
{
	static const enum stmt put[] = {[ROW_TASK] = ST_PUT_TASK, [ROW_TRACK] = ST_PUT_TRACK,
					[ROW_WORKER] = ST_PUT_WORKER, [ROW_META] = ST_PUT_META,
					[ROW_CONTEXT_DOC] = ST_PUT_META};
	int rc = 0;
	for (size_t i = 0; i < c->nrows && !rc; i++) {
		const struct row *r = &c->rows[i];
		if (!r->doc)
			rc = run(s, r->table == ROW_TRACK ? ST_DEL_TRACK : ST_DEL_TASK, r->key, 0, NULL,
				 0, 0, 0, bytes);
		else
			rc = run(s, put[r->table], r->key, r->ord, r->doc, strlen(r->doc), r->ikey, 0,
				 bytes);
	}
	if (!rc && c->context)
		rc = run(s, ST_DEL_CONTEXT, NULL, 0, NULL, 0, 0, 0, bytes);
	for (size_t i = 0; i < c->nblobs && !rc; i++)
		rc = run(s, ST_PUT_CONTEXT, c->blobs[i].name, (int64_t)i, c->blobs[i].data,
			 c->blobs[i].len, 0, 0, bytes);
	for (size_t i = 0; i < c->nlines && !rc; i++) {
		const struct event_rec *e = &c->lines[i];
		rc = run(s, ST_PUT_EVENT, NULL, e->channel, e->line, e->len, (int64_t)e->seq,
			 e->worker, bytes);
	}
	return rc;
}

static int replay_record(void *arg, const char *data, size_t len)
{
	struct store *s = arg;
	struct cursor cur = {data, data + len, false};
	uint64_t bytes = 0;
	while (cur.p < cur.end) {
		struct commit *c = commit_decode(&cur);
		if (!c)
			return -EPROTO;
		int rc = write_commit(s, c, &bytes);
		commit_free(c);
		if (rc)
			return -EIO;
	}
	return 0;
}

/* What the journal holds that SQLite may not (a crash): applied in order, in
 * one transaction, then the journal starts afresh. Applying a record twice
 * is harmless: each holds whole rows. */
static int journal_recover(struct store *s, const char *path, bool durable, struct orch_err *err)
{
	if (journal_open(path, durable, &s->journal, err))
		return -EIO;
	uint64_t bytes = 0;
	int rc = run(s, ST_BEGIN, NULL, 0, NULL, 0, 0, 0, &bytes);
	if (!rc)
		rc = journal_replay(s->journal, replay_record, s);
	if (!rc)
		rc = run(s, ST_COMMIT, NULL, 0, NULL, 0, 0, 0, &bytes);
	if (rc) {
		exec(s->db, "ROLLBACK");
		return err_set(err, EIO, "replaying %s into the store: %s", path,
			       rc == -EPROTO ? "a record is not one of this orchfs's" : sqlite3_errmsg(s->db));
	}
	if (journal_bytes(s->journal) && (rc = journal_reset(s->journal)))
		return err_set(err, EIO, "cannot write %s: %s", path, strerror(-rc));
	return 0;
}

/* qlock held, the queue not empty, nobody writing: journals every queued
 * commit as one record (group commit; qlock dropped meanwhile), then lets
 * their events be read and their writers go on; the thread applies them to
 * SQLite later. false when the write failed: the group is back at the
 * queue's head, to be tried again. */
static bool journal_group(struct store *s)
{
	struct commit *group = s->qhead, *tail = s->qtail;
	s->qhead = s->qtail = NULL;
	s->writing = true;
	store_hook_fn hook = s->hook;
	void *hook_arg = s->hook_arg;
	pthread_mutex_unlock(&s->qlock);

	buf_reset(&s->record);
	for (struct commit *c = group; c; c = c->next)
		commit_encode(&s->record, c);
	int rc = journal_append(s->journal, s->record.data, s->record.len);
	if (s->record.cap > STORE_RECORD_KEEP)
		buf_free(&s->record);   /* a plan of thousands of tasks: not kept for the next */
	if (rc) {
		log_error(s->log, "store: cannot write the journal: %s", strerror(-rc));
	} else {
		/* before anyone can see the events or get the acknowledgement */
		for (struct commit *c = group; c && hook; c = c->next)
			for (size_t i = 0; i < c->nlines; i++)
				hook(hook_arg, &c->lines[i]);
		if (hook)
			hook(hook_arg, NULL);   /* the group's end */
		if (!s->durable)
			events_commit(s->ev, tail->last_seq);   /* else once synced */
	}

	pthread_mutex_lock(&s->qlock);
	s->writing = false;
	if (rc) {
		s->failed = tail->ticket;
		/* back at the head, before anything queued meanwhile */
		tail->next = s->qhead;
		if (!s->qhead)
			s->qtail = tail;
		s->qhead = group;
		waiters_wake(s);
		wake_thread(s, 0);   /* stopping: the thread journals what is left */
		return false;
	}
	s->done = tail->ticket;
	s->journaled_seq = tail->last_seq;
	*(s->atail ? &s->atail->next : &s->ahead) = group;
	s->atail = tail;
	waiters_wake(s);
	wake_thread(s, s->durable ? 0 : s->apply_after);   /* to apply; a sync is urgent */
	return true;
}

/* qlock held, --durable, something journaled and not synced, nobody
 * syncing: makes it durable (qlock dropped meanwhile), then lets its events
 * be read and its writers go on. A failed sync fails its writers, and is
 * tried again with the next commit. */
static void sync_journaled(struct store *s)
{
	uint64_t target = s->done, seq = s->journaled_seq;
	s->syncing = true;
	pthread_mutex_unlock(&s->qlock);
	int rc = journal_sync(s->journal);
	tm_store_sync(s->tm);
	if (rc)
		log_error(s->log, "store: cannot sync the journal: %s", strerror(-rc));
	else
		events_commit(s->ev, seq);
	pthread_mutex_lock(&s->qlock);
	s->syncing = false;
	*(rc ? &s->sync_failed : &s->synced) = target;
	waiters_wake(s);
}

/* qlock held: journaled commits wait for a sync that nobody runs */
static bool sync_due(const struct store *s)
{
	return s->durable && !s->syncing && s->synced < s->done && s->sync_failed < s->done;
}

/* The thread's, qlock held, something journaled: applies every journaled
 * commit to SQLite in one transaction (qlock dropped meanwhile), then lets
 * their events leave memory, and starts the journal afresh when it holds
 * nothing else. false when SQLite failed: the batch stays, to be tried
 * again (the journal keeps it meanwhile, across a restart too). */
static bool apply_journaled(struct store *s)
{
	struct commit *batch = s->ahead, *tail = s->atail;
	s->ahead = s->atail = NULL;
	pthread_mutex_unlock(&s->qlock);

	uint64_t bytes = 0;
	int rc = run(s, ST_BEGIN, NULL, 0, NULL, 0, 0, 0, &bytes);
	for (struct commit *c = batch; c && !rc; c = c->next)
		rc = write_commit(s, c, &bytes);
	if (!rc)
		rc = run(s, ST_COMMIT, NULL, 0, NULL, 0, 0, 0, &bytes);
	if (rc) {
		log_error(s->log, "store: applying the journal: %s", sqlite3_errmsg(s->db));
		exec(s->db, "ROLLBACK");
	} else {
		tm_store_write(s->tm, bytes);
		pthread_mutex_lock(&s->ev->lock);
		s->ev->gathered = tail->last_seq;   /* the store has them: they may leave memory */
		pthread_mutex_unlock(&s->ev->lock);
	}

	pthread_mutex_lock(&s->qlock);
	if (rc) {
		tail->next = s->ahead;
		if (!s->ahead)
			s->atail = tail;
		s->ahead = batch;
		return false;
	}
	s->applied = tail->ticket;
	pthread_cond_broadcast(&s->qdone);
	/* a journal writer takes qlock to start: none can begin meanwhile */
	int reset_rc = 0;
	if (!s->ahead && !s->writing && journal_bytes(s->journal) >= STORE_JOURNAL_RESET)
		reset_rc = journal_reset(s->journal);
	pthread_mutex_unlock(&s->qlock);
	journal_reset_log(s, reset_rc);
	for (struct commit *c = batch, *next; c; c = next) {
		next = c->next;
		commit_free(c);
	}
	pthread_mutex_lock(&s->qlock);
	return true;
}

/* qlock held: a commit in the queue nobody leads (the scheduler's) */
static bool unled_queued(const struct store *s)
{
	for (const struct commit *c = s->qhead; c; c = c->next)
		if (!c->waited)
			return true;
	return false;
}

static void *store_main(void *arg)
{
	struct store *s = arg;
	pthread_setname_np(pthread_self(), "orchfs-store");
	pthread_mutex_lock(&s->qlock);
	for (;;) {
		s->wanted = false;
		if (checkpoint_due(s) && !s->stop) {
			__atomic_store_n(&s->checkpoint_due, false, __ATOMIC_RELEASE);
			pthread_mutex_unlock(&s->qlock);
			checkpoint(s);
			pthread_mutex_lock(&s->qlock);
		}
		if (sync_due(s)) {
			sync_journaled(s);
			continue;
		}
		int64_t now = time_mono_ns(), wake_at = INT64_MAX;
		/* stopping, everything queued is journaled first */
		if (s->qhead && !s->writing && (s->stop || unled_queued(s))) {
			if (s->stop || now >= s->journal_after) {
				bool journaled = journal_group(s);
				if (!journaled && s->stop)
					break;
				s->journal_after = time_mono_ns() + (journaled ? STORE_JOURNAL_GAP_NS
									     : STORE_RETRY_NS);
				continue;
			}
			wake_at = s->journal_after;
		}
		if (s->ahead) {
			if (s->stop || s->apply_now || now >= s->apply_after) {
				s->apply_now = false;
				bool applied = apply_journaled(s);
				if (!applied && s->stop)
					break;   /* the journal keeps it: the next start applies it */
				s->apply_after = time_mono_ns() + (applied ? STORE_APPLY_GAP_NS
									   : STORE_RETRY_NS);
				continue;
			}
			if (s->apply_after < wake_at)
				wake_at = s->apply_after;
		}
		if (s->stop && !s->writing && !s->syncing && !s->qhead)
			break;
		if (s->wanted)
			continue;
		s->idle = true;
		s->wake_at = wake_at;
		if (wake_at == INT64_MAX) {
			pthread_cond_wait(&s->qcond, &s->qlock);
		} else {
			struct timespec until = {wake_at / 1000000000, wake_at % 1000000000};
			pthread_cond_timedwait(&s->qcond, &s->qlock, &until);
		}
		s->idle = false;
	}
	pthread_mutex_unlock(&s->qlock);
	return NULL;
}

/* synced: with --durable, until it is on the disk as well */
static int wait_for(struct store *s, uint64_t ticket, bool synced)
{
	struct store_waiter self = {.ticket = ticket, .cond = PTHREAD_COND_INITIALIZER};
	pthread_mutex_lock(&s->qlock);
	self.synced = synced && s->durable;
	self.next = s->waiters;
	s->waiters = &self;
	for (enum waiter_next next; (next = waiter_next(s, &self)) != WAITER_RETURNS;) {
		if (next == WAITER_JOURNALS)
			journal_group(s);
		else if (next == WAITER_SYNCS)
			sync_journaled(s);
		else
			pthread_cond_wait(&self.cond, &s->qlock);
	}
	struct store_waiter **at = &s->waiters;
	while (*at != &self)
		at = &(*at)->next;
	*at = self.next;
	int rc = s->done >= ticket && (!self.synced || s->synced >= ticket) ? 0 : -EIO;
	pthread_mutex_unlock(&s->qlock);
	pthread_cond_destroy(&self.cond);
	return rc;
}

int store_wait(struct store *s, uint64_t ticket)
{
	return wait_for(s, ticket, true);
}

int store_wait_journaled(struct store *s, uint64_t ticket)
{
	return wait_for(s, ticket, false);
}

void store_set_hook(struct store *s, store_hook_fn fn, void *arg)
{
	pthread_mutex_lock(&s->qlock);
	s->hook = fn;
	s->hook_arg = arg;
	pthread_mutex_unlock(&s->qlock);
}

void store_set_log(struct store *s, const struct orch_log *log)
{
	s->log = log;
}

int store_start(struct store *s, struct events *ev)
{
	s->ev = ev;
	int rc = pthread_create(&s->thread, NULL, store_main, s);
	if (rc)
		return -rc;
	s->running = true;
	return 0;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	if (s->running) {
		/* what is queued is written first */
		pthread_mutex_lock(&s->qlock);
		s->stop = true;
		pthread_cond_broadcast(&s->qcond);
		pthread_mutex_unlock(&s->qlock);
		pthread_join(s->thread, NULL);
		s->running = false;
		if (!s->qhead && !s->ahead && journal_bytes(s->journal))
			journal_reset_log(s, journal_reset(s->journal));   /* all of it is in SQLite */
	}
	for (struct commit *c = s->ahead, *next; c; c = next) {
		next = c->next;
		commit_free(c);
	}
	for (struct commit *c = s->qhead, *next; c; c = next) {
		next = c->next;
		commit_free(c);
	}
	for (size_t i = 0; i < sizeof s->stmts / sizeof s->stmts[0]; i++)
		sqlite3_finalize(s->stmts[i]);
	sqlite3_close(s->rdb);
	sqlite3_close(s->cdb);
	sqlite3_close(s->db);   /* the last one: it checkpoints what is left */
	journal_close(s->journal);
	buf_free(&s->record);
	pthread_mutex_destroy(&s->rlock);
	pthread_mutex_destroy(&s->qlock);
	pthread_cond_destroy(&s->qcond);
	pthread_cond_destroy(&s->qdone);
	close(s->lockfd);
	free(s);
}

void store_trace(struct store *s, int worker, struct buf *out)
{
	/* what was acknowledged before is in SQLite first (the thread applies
	 * it at once, not after the gap; bounded, should SQLite be failing) */
	pthread_mutex_lock(&s->qlock);
	uint64_t acknowledged = s->done;
	if (s->applied < acknowledged) {
		s->apply_now = true;
		wake_thread(s, 0);
	}
	struct timespec until = time_mono_deadline(STORE_TRACE_WAIT_MS);
	while (s->applied < acknowledged && s->running &&
	       pthread_cond_timedwait(&s->qdone, &s->qlock, &until) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&s->qlock);
	sqlite3_stmt *st;
	pthread_mutex_lock(&s->rlock);
	if (sqlite3_prepare_v2(s->rdb, "SELECT line FROM events WHERE worker = ?1 ORDER BY seq", -1,
			       &st, NULL) == SQLITE_OK) {
		sqlite3_bind_int(st, 1, worker);
		while (sqlite3_step(st) == SQLITE_ROW)
			buf_append(out, sqlite3_column_text(st, 0), (size_t)sqlite3_column_bytes(st, 0));
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->rlock);
}

/* --- replays older than memory --- */

static int store_backfill(void *arg, uint64_t after, unsigned mask, size_t max, struct buf *out,
			  uint64_t *last, uint64_t *oldest)
{
	struct store *s = arg;
	int rc = 0;
	pthread_mutex_lock(&s->rlock);
	sqlite3_stmt *st;
	*oldest = 0;
	if (sqlite3_prepare_v2(s->rdb, "SELECT MIN(seq) FROM events", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		*oldest = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (!*oldest || after + 1 < *oldest) {
		pthread_mutex_unlock(&s->rlock);
		return -ERANGE;
	}
	size_t start = out->len;
	*last = after;
	if (sqlite3_prepare_v2(s->rdb, "SELECT seq, channel, line FROM events WHERE seq > ?1 "
				       "ORDER BY seq LIMIT 4096", -1, &st, NULL) != SQLITE_OK) {
		pthread_mutex_unlock(&s->rlock);
		return -EIO;
	}
	sqlite3_bind_int64(st, 1, (sqlite3_int64)after);
	while (sqlite3_step(st) == SQLITE_ROW) {
		uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
		unsigned channel = (unsigned)sqlite3_column_int(st, 1);
		const char *line = (const char *)sqlite3_column_text(st, 2);
		size_t len = (size_t)sqlite3_column_bytes(st, 2);
		if (channel & mask) {
			if (out->len > start && out->len + len > max)
				break;
			buf_append(out, line, len);
		}
		*last = seq;
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&s->rlock);
	return rc;
}

/* --- loading --- */

static int load_meta(struct store *s, struct orch *o, uint64_t *seq, cJSON **ctx_doc)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "SELECT key, value FROM meta", -1, &st, NULL) != SQLITE_OK)
		return -1;
	s->queued_pipeline = s->queued_max_workers = -1;
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *key = (const char *)sqlite3_column_text(st, 0);
		const char *value = (const char *)sqlite3_column_text(st, 1);
		if (!strcmp(key, "seq")) {
			*seq = strtoull(value, NULL, 10);
		} else if (!strcmp(key, "pipeline")) {
			o->pipeline = !strcmp(value, "frozen") ? PIPE_FROZEN
				      : !strcmp(value, "paused") ? PIPE_PAUSED : PIPE_RUNNING;
			s->queued_pipeline = (int)o->pipeline;
		} else if (!strcmp(key, "max_workers")) {
			s->queued_max_workers = atoi(value);
			if (!o->cfg.max_workers_given && atoi(value) > 0)
				o->max_workers = atoi(value);
		} else if (!strcmp(key, "last_error") && value[0] == '{') {
			buf_reset(&o->last_error);
			buf_puts(&o->last_error, value);
		} else if (!strcmp(key, "context") && !*ctx_doc) {
			*ctx_doc = cJSON_Parse(value);   /* imported with the contents, below */
		}
	}
	sqlite3_finalize(st);
	/* the last event's seq ("seq" above: stores written before it was) */
	if (sqlite3_prepare_v2(s->db, "SELECT MAX(seq) FROM events", -1, &st, NULL) != SQLITE_OK)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW && (uint64_t)sqlite3_column_int64(st, 0) > *seq)
		*seq = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return 0;
}

static int load_tracks(struct store *s, struct orch *o)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "SELECT doc FROM tracks ORDER BY "
			       /* live tracks as they were made, archived ones as archived */
			       "coalesce(json_extract(doc, '$.archived'), json_extract(doc, '$.created')), rowid", -1, &st, NULL) !=
	    SQLITE_OK)
		return -1;
	while (sqlite3_step(st) == SQLITE_ROW) {
		cJSON *d = cJSON_Parse((const char *)sqlite3_column_text(st, 0));
		char id[ID_MAX + 1];
		if (d && copy_id(id, d, "id") && id_valid(id) && !track_find(o, id) &&
		    !archive_find(o, id) && cJSON_GetObjectItemCaseSensitive(d, "archived")) {
			/* in the archive: its summary; the rest stays in the row */
			struct archived_track *a = xcalloc(1, sizeof *a);
			strcpy(a->id, id);
			a->title = doc_str(d, "title");
			if (!a->title)
				a->title = xstrdup(id);
			a->created_ms = doc_i64(d, "created", 0);
			a->archived_ms = doc_i64(d, "archived", 0);
			a->budget_micro = doc_i64(d, "budget", -1);
			a->cost_micro = doc_i64(d, "cost", 0);
			a->status = (enum track_status)doc_enum(s, d, "status", 0, TRACK_OVER_BUDGET,
								TRACK_ACTIVE, "active", "track", id);
			a->ntasks = (size_t)doc_i64(d, "ntasks", 0);
			const cJSON *c = cJSON_GetObjectItemCaseSensitive(d, "counts");
			for (int i = 0; i <= TASK_HELD && i < cJSON_GetArraySize(c); i++)
				a->counts[i] = (size_t)cJSON_GetArrayItem(c, i)->valuedouble;
			archive_add(o, a);
		} else if (d && copy_id(id, d, "id") && id_valid(id) && !track_find(o, id) &&
			   !archive_find(o, id)) {
			char *title = doc_str(d, "title");
			struct track *k = track_new(o, id, title, doc_i64(d, "budget", -1));
			free(title);
			k->status = (enum track_status)doc_enum(s, d, "status", 0, TRACK_OVER_BUDGET,
								TRACK_ACTIVE, "active", "track", id);
			k->created_ms = doc_i64(d, "created", 0);
			doc_usage(d, &k->usage);
		}
		cJSON_Delete(d);
	}
	sqlite3_finalize(st);
	return 0;
}

static int load_tasks(struct store *s, struct orch *o)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "SELECT doc FROM tasks ORDER BY ord", -1, &st, NULL) !=
	    SQLITE_OK)
		return -1;
	/* Edges wait until every node is back: "task\0dep\0" pairs in one
	 * buffer, not the parsed rows (kept, 100,000 of them would be most of
	 * the heap, and what they leave behind cannot be given back). */
	struct buf edges = BUF_INIT;
	while (sqlite3_step(st) == SQLITE_ROW) {
		cJSON *d = cJSON_Parse((const char *)sqlite3_column_text(st, 0));
		char id[ID_MAX + 1], track[ID_MAX + 1];
		struct track *k;
		if (!d || !copy_id(id, d, "id") || !copy_id(track, d, "track") ||
		    !(k = track_find(o, track)) || task_find(o, id)) {
			cJSON_Delete(d);
			continue;
		}
		struct task *t = xcalloc(1, sizeof *t);
		strcpy(t->id, id);
		t->track = k;
		t->title = doc_str(d, "title");
		if (t->title && !strcmp(t->title, id)) {
			free(t->title);
			t->title = NULL;
		}
		t->command = doc_str(d, "command");
		if (!t->command)
			t->command = xstrdup("false");
		t->cwd = doc_str(d, "cwd");
		t->model = doc_str(d, "model");
		t->env = doc_strv(d, "env", &t->nenv);
		t->retries = (int)doc_i64(d, "retries", 0);
		t->retries_initial = (int)doc_i64(d, "retries_initial", 0);
		t->timeout_s = (int)doc_i64(d, "timeout_s", 0);
		t->priority = (int)doc_i64(d, "priority", 0);
		t->runner = (enum runner_kind)doc_enum(s, d, "runner", 0, RUNNER_SLURM, RUNNER_DEFAULT,
						       "the default", "task", id);
		t->slurm = doc_strv(d, "slurm", &t->nslurm);
		t->order = (uint64_t)doc_i64(d, "order", 0);
		t->status = (enum task_status)doc_enum(s, d, "status", 0, TASK_HELD, TASK_BLOCKED,
						       "blocked", "task", id);
		t->created_ms = doc_i64(d, "created", 0);
		const cJSON *w;
		cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(d, "workers")) {
			t->workers = xrealloc(t->workers, (t->nworkers + 1) * sizeof *t->workers);
			t->workers[t->nworkers++] = (int)w->valuedouble;
		}
		if (t->order >= o->next_order)
			o->next_order = t->order + 1;
		task_link(o, t);
		const cJSON *dep;
		cJSON_ArrayForEach(dep, cJSON_GetObjectItemCaseSensitive(d, "deps")) {
			if (!cJSON_IsString(dep))
				continue;
			buf_append(&edges, id, strlen(id) + 1);
			buf_append(&edges, dep->valuestring, strlen(dep->valuestring) + 1);
		}
		cJSON_Delete(d);
	}
	sqlite3_finalize(st);
	for (size_t at = 0; at < edges.len;) {
		const char *id = edges.data + at, *dep = id + strlen(id) + 1;
		at = (size_t)(dep - edges.data) + strlen(dep) + 1;
		struct task *t = task_find(o, id), *x = task_find(o, dep);
		if (t && x)
			task_dep_add(o, t, x);
	}
	buf_free(&edges);
	return 0;
}

static int load_workers(struct store *s, struct orch *o)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "SELECT id, doc FROM workers ORDER BY id", -1, &st, NULL) !=
	    SQLITE_OK)
		return -1;
	while (sqlite3_step(st) == SQLITE_ROW) {
		int id = sqlite3_column_int(st, 0);
		cJSON *d = cJSON_Parse((const char *)sqlite3_column_text(st, 1));
		if (!d || id < 1 || id > 100000000) {
			cJSON_Delete(d);
			continue;
		}
		if ((size_t)id > o->workers_cap) {
			size_t cap = o->workers_cap ? o->workers_cap : 64;
			while (cap < (size_t)id)
				cap *= 2;
			o->workers = xrealloc(o->workers, cap * sizeof *o->workers);
			memset(o->workers + o->workers_cap, 0, (cap - o->workers_cap) * sizeof *o->workers);
			o->workers_cap = cap;
		}
		struct worker *w = xcalloc(1, sizeof *w);
		w->id = id;
		char wid[24];
		snprintf(wid, sizeof wid, "%d", id);
		w->status = (enum worker_status)doc_enum(s, d, "status", 0, WORKER_LOST, WORKER_LOST,
							 "lost", "worker", wid);
		copy_id(w->task_id, d, "task");
		copy_id(w->track_id, d, "track");
		w->command = doc_str(d, "command");
		w->cwd = doc_str(d, "cwd");
		if (!w->command)
			w->command = xstrdup("");
		if (!w->cwd)
			w->cwd = xstrdup("/");
		w->model = doc_str(d, "model");
		w->env = doc_strv(d, "env", &w->nenv);
		w->pid = (pid_t)doc_i64(d, "pid", 0);
		w->runner = (enum runner_kind)doc_enum(s, d, "runner", RUNNER_LOCAL, RUNNER_SLURM,
						       RUNNER_LOCAL, "local", "worker", wid);
		w->runner_ref = doc_str(d, "ref");
		w->cpu_us = doc_i64(d, "cpu_us", -1);
		w->memory_peak = doc_i64(d, "memory_peak", -1);
		w->started_ms = doc_i64(d, "started", 0);
		w->ended_ms = doc_i64(d, "ended", 0);
		w->timeout_s = (int)doc_i64(d, "timeout_s", 0);
		w->exit_code = (int)doc_i64(d, "exit_code", -1);
		w->term_signal = (int)doc_i64(d, "signal", 0);
		w->timed_out = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "timed_out"));
		w->kill_requested = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "kill_requested"));
		w->log_path = doc_str(d, "log");
		if (!w->log_path)
			w->log_path = xstrdup("/dev/null");
		doc_usage(d, &w->usage);
		o->workers[id - 1] = w;
		if ((size_t)id > o->nworkers)
			o->nworkers = (size_t)id;
		usage_merge(&o->usage, &w->usage);   /* the grand total is theirs summed */
		cJSON_Delete(d);
	}
	sqlite3_finalize(st);
	/* Ids are never reused: a hole (a row lost to damage) stays a hole, as a
	 * record that says so. */
	for (size_t i = 0; i < o->nworkers; i++)
		if (!o->workers[i])
			o->workers[i] = worker_placeholder((int)i + 1);
	return 0;
}

static int load_events(struct store *s, struct orch *o, uint64_t seq)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "SELECT seq, channel, worker, line FROM events WHERE seq > ?1 "
				      "ORDER BY seq", -1, &st, NULL) != SQLITE_OK)
		return -1;
	/* as many as memory keeps; older ones are served from the table */
	uint64_t keep = o->events.cap;
	sqlite3_bind_int64(st, 1, (sqlite3_int64)(seq > keep ? seq - keep : 0));
	while (sqlite3_step(st) == SQLITE_ROW)
		events_restore(&o->events, (uint64_t)sqlite3_column_int64(st, 0),
			       (unsigned)sqlite3_column_int(st, 1), sqlite3_column_int(st, 2),
			       (const char *)sqlite3_column_text(st, 3),
			       (size_t)sqlite3_column_bytes(st, 3));
	sqlite3_finalize(st);
	events_restore_done(&o->events, seq);
	return 0;
}

static bool load_content(void *arg, const char *name, char **data, size_t *len)
{
	struct store *s = arg;
	sqlite3_stmt *st;
	bool ok = false;
	if (sqlite3_prepare_v2(s->db, "SELECT content FROM context WHERE name = ?1", -1, &st, NULL) !=
	    SQLITE_OK)
		return false;
	sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(st) == SQLITE_ROW) {
		*len = (size_t)sqlite3_column_bytes(st, 0);
		*data = xstrndup(sqlite3_column_blob(st, 0) ? sqlite3_column_blob(st, 0) : "", *len);
		ok = true;
	}
	sqlite3_finalize(st);
	return ok;
}

int store_load(struct store *s, struct orch *o, struct orch_err *err)
{
	uint64_t seq = 0;
	cJSON *ctx_doc = NULL;
	if (load_meta(s, o, &seq, &ctx_doc) || load_tracks(s, o) || load_tasks(s, o) ||
	    load_workers(s, o) || load_events(s, o, seq)) {
		cJSON_Delete(ctx_doc);
		return err_set(err, EIO, "loading the store: %s", sqlite3_errmsg(s->db));
	}
	if (ctx_doc)
		ctx_import(o->ctx, ctx_doc, load_content, s);
	cJSON_Delete(ctx_doc);
	s->gathered = seq;
	o->events.gathered = seq;
	s->tm = o->tm;
	o->events.autocommit = false;
	o->events.backfill = store_backfill;
	o->events.backfill_arg = s;
	return 0;
}
