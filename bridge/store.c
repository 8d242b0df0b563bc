/* store: SQLite persistence of the model and the event log, and restarts. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "context.h"
#include "pricing.h"
#include "telemetry.h"


struct store {
	sqlite3 *db;        /* the writer: used with orch.lock held */
	sqlite3 *rdb;       /* replays for event readers, from any thread */
	pthread_mutex_t rlock;
	int lockfd;
	uint64_t flushed;   /* last seq written */
	struct telemetry *tm;
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

int store_open(const char *state_dir, bool durable, struct store **out, struct orch_err *err)
{
	char path[4096], lockpath[4096];
	snprintf(path, sizeof path, "%s/orchfs.db", state_dir);
	snprintf(lockpath, sizeof lockpath, "%s/orchfs.lock", state_dir);
	int lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lockfd < 0)
		return err_set(err, EIO, "cannot open %s: %s", lockpath, strerror(errno));
	if (flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
		close(lockfd);
		return err_set(err, EBUSY, "%s is in use by another orchfs", state_dir);
	}
	struct store *s = xcalloc(1, sizeof *s);
	s->lockfd = lockfd;
	pthread_mutex_init(&s->rlock, NULL);
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
	*out = s;
	return 0;
fail:
	store_close(s);
	return rc;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	sqlite3_close(s->rdb);
	sqlite3_close(s->db);
	pthread_mutex_destroy(&s->rlock);
	close(s->lockfd);
	free(s);
}

/* --- the model as documents --- */

static cJSON *strv_json(char *const *v, size_t n)
{
	cJSON *a = cJSON_CreateArray();
	for (size_t i = 0; i < n; i++)
		cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
	return a;
}

static cJSON *usage_json(const struct usage_set *set)
{
	cJSON *a = cJSON_CreateArray();
	for (size_t i = 0; i < set->n; i++) {
		const struct usage *u = &set->v[i];
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "model", u->model);
		json_add_i64(o, "in", u->input);
		json_add_i64(o, "out", u->output);
		json_add_i64(o, "cr", u->cache_read);
		json_add_i64(o, "cw", u->cache_write);
		json_add_i64(o, "n", u->reports);
		cJSON_AddItemToArray(a, o);
	}
	return a;
}

static cJSON *track_doc(const struct track *k)
{
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "id", k->id);
	cJSON_AddStringToObject(d, "title", k->title);
	json_add_i64(d, "budget", k->budget_micro);
	cJSON_AddNumberToObject(d, "status", k->status);
	json_add_i64(d, "created", k->created_ms);
	cJSON_AddItemToObject(d, "usage", usage_json(&k->usage));
	return d;
}

static cJSON *task_doc(const struct task *t)
{
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "id", t->id);
	cJSON_AddStringToObject(d, "track", t->track->id);
	cJSON_AddStringToObject(d, "title", t->title);
	cJSON_AddStringToObject(d, "command", t->command);
	json_add_str_or_null(d, "cwd", t->cwd);
	json_add_str_or_null(d, "model", t->model);
	cJSON_AddItemToObject(d, "env", strv_json(t->env, t->nenv));
	cJSON_AddNumberToObject(d, "retries", t->retries);
	cJSON_AddNumberToObject(d, "retries_initial", t->retries_initial);
	cJSON_AddNumberToObject(d, "timeout_s", t->timeout_s);
	cJSON_AddNumberToObject(d, "priority", t->priority);
	json_add_i64(d, "order", (int64_t)t->order);
	cJSON_AddNumberToObject(d, "status", t->status);
	cJSON *deps = cJSON_AddArrayToObject(d, "deps");
	for (size_t i = 0; i < t->ndeps; i++)
		cJSON_AddItemToArray(deps, cJSON_CreateString(t->deps[i]->id));
	cJSON *ws = cJSON_AddArrayToObject(d, "workers");
	for (size_t i = 0; i < t->nworkers; i++)
		cJSON_AddItemToArray(ws, cJSON_CreateNumber(t->workers[i]));
	json_add_i64(d, "created", t->created_ms);
	return d;
}

static cJSON *worker_doc(const struct worker *w)
{
	cJSON *d = cJSON_CreateObject();
	cJSON_AddNumberToObject(d, "id", w->id);
	cJSON_AddNumberToObject(d, "status", w->status);
	cJSON_AddStringToObject(d, "task", w->task_id);
	cJSON_AddStringToObject(d, "track", w->track_id);
	cJSON_AddStringToObject(d, "command", w->command);
	cJSON_AddStringToObject(d, "cwd", w->cwd);
	json_add_str_or_null(d, "model", w->model);
	cJSON_AddItemToObject(d, "env", strv_json(w->env, w->nenv));
	cJSON_AddNumberToObject(d, "pid", w->pid);
	json_add_i64(d, "started", w->started_ms);
	json_add_i64(d, "ended", w->ended_ms);
	cJSON_AddNumberToObject(d, "timeout_s", w->timeout_s);
	cJSON_AddNumberToObject(d, "exit_code", w->exit_code);
	cJSON_AddNumberToObject(d, "signal", w->term_signal);
	cJSON_AddBoolToObject(d, "timed_out", w->timed_out);
	cJSON_AddBoolToObject(d, "kill_requested", w->kill_requested);
	cJSON_AddStringToObject(d, "log", w->log_path);
	cJSON_AddItemToObject(d, "usage", usage_json(&w->usage));
	return d;
}

static int64_t doc_i64(const cJSON *d, const char *key, int64_t fallback)
{
	int64_t v;
	return json_int(cJSON_GetObjectItemCaseSensitive(d, key), INT64_MIN / 2, INT64_MAX / 2, &v)
		       ? v : fallback;
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

/* --- flushing --- */

struct dirty {
	struct hashmap *tasks, *tracks;
	int *workers;
	size_t nworkers;
	bool context;
};

static void dirty_from_event(struct dirty *d, unsigned channel, const char *line)
{
	cJSON *ev = cJSON_Parse(line);
	const cJSON *data = cJSON_GetObjectItemCaseSensitive(ev, "data");
	const char *task = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "task"));
	const char *track = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "track"));
	const cJSON *worker = cJSON_GetObjectItemCaseSensitive(data, "worker");
	if (!worker && channel == EV_WORKERS)
		worker = cJSON_GetObjectItemCaseSensitive(data, "id");
	if (task)
		hashmap_put(d->tasks, task, d);
	if (track)
		hashmap_put(d->tracks, track, d);
	if (cJSON_IsNumber(worker)) {
		d->workers = xrealloc(d->workers, (d->nworkers + 1) * sizeof *d->workers);
		d->workers[d->nworkers++] = (int)worker->valuedouble;
	}
	if (channel == EV_CONTEXT)
		d->context = true;
	cJSON_Delete(ev);
}

static int put_doc(sqlite3_stmt *st, const char *key, int64_t ikey, int64_t ord, cJSON *doc,
		   uint64_t *bytes)
{
	char *text = cJSON_PrintUnformatted(doc);
	cJSON_Delete(doc);
	sqlite3_reset(st);
	if (key)
		sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_int64(st, 1, ikey);
	int col = 2;
	if (ord >= 0)
		sqlite3_bind_int64(st, col++, ord);
	sqlite3_bind_text(st, col, text, -1, SQLITE_TRANSIENT);
	*bytes += strlen(text);
	cJSON_free(text);
	return sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
}

static int del_key(sqlite3 *db, const char *sql, const char *key)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
	sqlite3_finalize(st);
	return rc;
}

struct flush_ctx {
	struct store *s;
	struct orch *o;
	sqlite3_stmt *put;
	int rc;
	uint64_t bytes;
	int64_t ord;
};

static void flush_content(void *arg, const char *name, const char *data, size_t len)
{
	struct flush_ctx *f = arg;
	sqlite3_reset(f->put);
	sqlite3_bind_text(f->put, 1, name, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(f->put, 2, f->ord++);
	sqlite3_bind_blob(f->put, 3, data ? data : "", (int)len, SQLITE_TRANSIENT);
	f->bytes += len;
	if (sqlite3_step(f->put) != SQLITE_DONE)
		f->rc = -1;
}

static int put_meta(sqlite3 *db, const char *key, const char *value, uint64_t *bytes)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", -1,
			       &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(st, 2, value, -1, SQLITE_TRANSIENT);
	*bytes += strlen(value);
	int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
	sqlite3_finalize(st);
	return rc;
}

static int flush_objects(struct store *s, struct orch *o, struct dirty *d, uint64_t *bytes)
{
	sqlite3 *db = s->db;
	sqlite3_stmt *put_task = NULL, *put_track = NULL, *put_worker = NULL;
	int rc = 0;
	if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO tasks (id, ord, doc) VALUES (?1, ?2, ?3)",
			       -1, &put_task, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO tracks (id, doc) VALUES (?1, ?2)", -1,
			       &put_track, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO workers (id, doc) VALUES (?1, ?2)", -1,
			       &put_worker, NULL) != SQLITE_OK) {
		rc = -1;
		goto out;
	}
	for (struct task *t = o->tasks; t && !rc; t = t->next)
		if (hashmap_get(d->tasks, t->id)) {
			rc = put_doc(put_task, t->id, 0, (int64_t)t->order, task_doc(t), bytes);
			hashmap_del(d->tasks, t->id);
		}
	for (struct track *k = o->tracks; k && !rc; k = k->next)
		if (hashmap_get(d->tracks, k->id))
			rc = put_doc(put_track, k->id, 0, -1, track_doc(k), bytes);
	for (size_t i = 0; i < d->nworkers && !rc; i++) {
		struct worker *w = worker_find(o, d->workers[i]);
		if (w)
			rc = put_doc(put_worker, NULL, w->id, -1, worker_doc(w), bytes);
	}
out:
	sqlite3_finalize(put_task);
	sqlite3_finalize(put_track);
	sqlite3_finalize(put_worker);
	return rc;
}

static void collect_key(void *arg, const char *key)
{
	struct buf *b = arg;
	buf_append(b, key, strlen(key) + 1);
}

int store_flush(struct store *s, struct orch *o)
{
	struct events *ev = &o->events;
	/* Copy the new lines out; the ring may be written meanwhile by others. */
	pthread_mutex_lock(&ev->lock);
	uint64_t last = ev->seq;
	uint64_t first_kept = ev->count ? ev->ring[ev->head].seq : ev->seq + 1;
	if (last == s->flushed) {
		pthread_mutex_unlock(&ev->lock);
		return 0;
	}
	if (s->flushed + 1 < first_kept)
		s->flushed = first_kept - 1;   /* cannot happen with flushes every tick */
	size_t n = (size_t)(last - s->flushed);
	struct event_rec *recs = xcalloc(n, sizeof *recs);
	for (size_t i = 0; i < n; i++) {
		const struct event_rec *r =
			&ev->ring[(ev->head + (s->flushed + 1 + i - first_kept)) % ev->cap];
		recs[i] = *r;
		recs[i].line = xstrndup(r->line, r->len);
	}
	pthread_mutex_unlock(&ev->lock);

	struct dirty d = {.tasks = hashmap_new(), .tracks = hashmap_new()};
	for (size_t i = 0; i < n; i++)
		dirty_from_event(&d, recs[i].channel, recs[i].line);

	uint64_t bytes = 0;
	sqlite3 *db = s->db;
	int rc = exec(db, "BEGIN IMMEDIATE") == SQLITE_OK ? 0 : -1;
	if (!rc)
		rc = flush_objects(s, o, &d, &bytes);
	if (!rc) {
		/* tasks named by an event that no longer exist were removed */
		struct buf gone = BUF_INIT;
		/* hashmap has no iteration: walk the events again for task names */
		for (size_t i = 0; i < n; i++) {
			cJSON *e = cJSON_Parse(recs[i].line);
			const char *type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "type"));
			const char *task = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
				cJSON_GetObjectItemCaseSensitive(e, "data"), "task"));
			if (type && task && !strcmp(type, "dag.task_removed") && !task_find(o, task))
				collect_key(&gone, task);
			cJSON_Delete(e);
		}
		for (size_t off = 0; off < gone.len && !rc; off += strlen(gone.data + off) + 1)
			rc = del_key(db, "DELETE FROM tasks WHERE id = ?1", gone.data + off);
		buf_free(&gone);
	}
	if (!rc && d.context) {
		cJSON *doc = ctx_export(o->ctx);
		char *text = cJSON_PrintUnformatted(doc);
		cJSON_Delete(doc);
		rc = put_meta(db, "context", text, &bytes);
		cJSON_free(text);
		struct flush_ctx f = {.s = s, .o = o};
		if (!rc && (exec(db, "DELETE FROM context") != SQLITE_OK ||
			    sqlite3_prepare_v2(db, "INSERT INTO context (name, ord, content) VALUES (?1, ?2, ?3)",
					       -1, &f.put, NULL) != SQLITE_OK))
			rc = -1;
		if (!rc) {
			ctx_export_contents(o->ctx, flush_content, &f);
			rc = f.rc;
			bytes += f.bytes;
		}
		sqlite3_finalize(f.put);
	}
	if (!rc) {
		char num[32];
		snprintf(num, sizeof num, "%llu", (unsigned long long)last);
		rc = put_meta(db, "seq", num, &bytes);
		if (!rc)
			rc = put_meta(db, "pipeline", pipeline_status_name(o->pipeline), &bytes);
		snprintf(num, sizeof num, "%d", o->max_workers);
		if (!rc)
			rc = put_meta(db, "max_workers", num, &bytes);
	}
	sqlite3_stmt *ins = NULL;
	if (!rc && sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO events (seq, channel, worker, line) "
					  "VALUES (?1, ?2, ?3, ?4)", -1, &ins, NULL) != SQLITE_OK)
		rc = -1;
	for (size_t i = 0; i < n && !rc; i++) {
		sqlite3_reset(ins);
		sqlite3_bind_int64(ins, 1, (sqlite3_int64)recs[i].seq);
		sqlite3_bind_int(ins, 2, (int)recs[i].channel);
		sqlite3_bind_int(ins, 3, recs[i].worker);
		sqlite3_bind_text(ins, 4, recs[i].line, (int)recs[i].len, SQLITE_STATIC);
		bytes += recs[i].len;
		if (sqlite3_step(ins) != SQLITE_DONE)
			rc = -1;
	}
	sqlite3_finalize(ins);
	if (!rc && exec(db, "COMMIT") != SQLITE_OK)
		rc = -1;
	if (rc) {
		fprintf(stderr, "orchfs: store: %s\n", sqlite3_errmsg(db));
		exec(db, "ROLLBACK");
	} else {
		s->flushed = last;
		tm_store_write(o->tm, bytes);
		events_commit(ev, last);
	}
	for (size_t i = 0; i < n; i++)
		free(recs[i].line);
	free(recs);
	hashmap_free(d.tasks);
	hashmap_free(d.tracks);
	free(d.workers);
	return rc ? -EIO : 0;
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
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *key = (const char *)sqlite3_column_text(st, 0);
		const char *value = (const char *)sqlite3_column_text(st, 1);
		if (!strcmp(key, "seq"))
			*seq = strtoull(value, NULL, 10);
		else if (!strcmp(key, "pipeline"))
			o->pipeline = !strcmp(value, "frozen") ? PIPE_FROZEN
				      : !strcmp(value, "paused") ? PIPE_PAUSED : PIPE_RUNNING;
		else if (!strcmp(key, "max_workers") && !o->cfg.max_workers_given)
			o->max_workers = atoi(value) > 0 ? atoi(value) : o->max_workers;
		else if (!strcmp(key, "context") && !*ctx_doc)
			*ctx_doc = cJSON_Parse(value);   /* imported with the contents, below */
	}
	sqlite3_finalize(st);
	return 0;
}

static int load_tracks(struct store *s, struct orch *o)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "SELECT doc FROM tracks ORDER BY rowid", -1, &st, NULL) !=
	    SQLITE_OK)
		return -1;
	while (sqlite3_step(st) == SQLITE_ROW) {
		cJSON *d = cJSON_Parse((const char *)sqlite3_column_text(st, 0));
		char id[ID_MAX + 1];
		if (d && copy_id(id, d, "id") && id_valid(id) && !track_find(o, id)) {
			char *title = doc_str(d, "title");
			struct track *k = track_new(o, id, title, doc_i64(d, "budget", -1));
			free(title);
			k->status = (enum track_status)doc_i64(d, "status", TRACK_ACTIVE);
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
	cJSON *docs = cJSON_CreateArray();
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
		t->command = doc_str(d, "command");
		if (!t->title)
			t->title = xstrdup(id);
		if (!t->command)
			t->command = xstrdup("false");
		t->cwd = doc_str(d, "cwd");
		t->model = doc_str(d, "model");
		t->env = doc_strv(d, "env", &t->nenv);
		t->retries = (int)doc_i64(d, "retries", 0);
		t->retries_initial = (int)doc_i64(d, "retries_initial", 0);
		t->timeout_s = (int)doc_i64(d, "timeout_s", 0);
		t->priority = (int)doc_i64(d, "priority", 0);
		t->order = (uint64_t)doc_i64(d, "order", 0);
		t->status = (enum task_status)doc_i64(d, "status", TASK_BLOCKED);
		t->created_ms = doc_i64(d, "created", 0);
		const cJSON *w;
		cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(d, "workers")) {
			t->workers = xrealloc(t->workers, (t->nworkers + 1) * sizeof *t->workers);
			t->workers[t->nworkers++] = (int)w->valuedouble;
		}
		if (t->order >= o->next_order)
			o->next_order = t->order + 1;
		task_link(o, t);
		cJSON_AddItemToArray(docs, d);
	}
	sqlite3_finalize(st);
	/* Edges once every node is back. */
	const cJSON *d;
	cJSON_ArrayForEach(d, docs) {
		struct task *t = task_find(o, cJSON_GetStringValue(cJSON_GetObjectItem(d, "id")));
		const cJSON *dep;
		cJSON_ArrayForEach(dep, cJSON_GetObjectItemCaseSensitive(d, "deps")) {
			struct task *x = cJSON_IsString(dep) ? task_find(o, dep->valuestring) : NULL;
			if (!x)
				continue;
			task_dep_add(o, t, x);
		}
	}
	cJSON_Delete(docs);
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
		w->status = (enum worker_status)doc_i64(d, "status", WORKER_LOST);
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
		w->pidfd = w->stdin_fd = -1;
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
	for (size_t i = 0; i < o->nworkers; i++) {
		if (o->workers[i])
			continue;
		struct worker *w = xcalloc(1, sizeof *w);
		w->id = (int)i + 1;
		w->status = WORKER_LOST;
		w->command = xstrdup("");
		w->cwd = xstrdup("/");
		w->log_path = xstrdup("/dev/null");
		w->pidfd = w->stdin_fd = -1;
		w->exit_code = -1;
		o->workers[i] = w;
	}
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
	/* Each worker's trace: its events, from the whole log. */
	if (sqlite3_prepare_v2(s->db, "SELECT worker, line FROM events WHERE worker > 0 ORDER BY seq",
			       -1, &st, NULL) != SQLITE_OK)
		return -1;
	while (sqlite3_step(st) == SQLITE_ROW) {
		struct worker *w = worker_find(o, sqlite3_column_int(st, 0));
		if (w)
			buf_append(&w->trace, sqlite3_column_text(st, 1),
				   (size_t)sqlite3_column_bytes(st, 1));
	}
	sqlite3_finalize(st);
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
	s->flushed = seq;
	s->tm = o->tm;
	o->events.autocommit = false;
	o->events.backfill = store_backfill;
	o->events.backfill_arg = s;
	return 0;
}
