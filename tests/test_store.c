/* test_store: schema migrations, a refused corrupt or locked store, a full
 * round trip of the model through a restart, replays older than memory,
 * commits from many threads at once, and the journal: a failed append,
 * SQLite held up, a replay after kill -9, torn and stale records, and the
 * journal starting afresh under --durable. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "context.h"
#include "journal.h"
#include "nodes.h"
#include "scheduler.h"
#include "store.h"
#include "supervisor.h"

struct dir {
	char path[64];
};

static int dir_setup(void **state)
{
	struct dir *d = calloc(1, sizeof *d);
	strcpy(d->path, "/tmp/orchfs-store-XXXXXX");
	if (!mkdtemp(d->path))
		return -1;
	*state = d;
	return 0;
}

static int dir_teardown(void **state)
{
	struct dir *d = *state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", d->path);
	int rc = system(cmd);
	free(d);
	return rc ? -1 : 0;
}

static char *db_path(const struct dir *d)
{
	static char p[128];
	snprintf(p, sizeof p, "%s/orchfs.db", d->path);
	return p;
}

static int db_int(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	int v = -1;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static void test_migrations(void **state)
{
	struct dir *d = *state;
	struct store *s;
	struct orch_err err = {0};
	/* a version-0 file (an empty database) is migrated to the current schema */
	sqlite3 *db;
	assert_int_equal(sqlite3_open(db_path(d), &db), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(store_open(d->path, false, &s, &err), 0);
	store_close(s);
	assert_int_equal(db_int(db_path(d), "PRAGMA user_version"), 1);
	assert_int_equal(db_int(db_path(d), "SELECT count(*) FROM sqlite_master WHERE type='table'"), 6);
	/* opening again changes nothing */
	assert_int_equal(store_open(d->path, false, &s, &err), 0);
	store_close(s);
	/* a newer schema than this build knows is refused, not rewritten */
	assert_int_equal(sqlite3_open(db_path(d), &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(store_open(d->path, false, &s, &err), -EIO);
	assert_non_null(strstr(err.message, "newer"));
	assert_int_equal(db_int(db_path(d), "PRAGMA user_version"), 99);
}

static void test_corrupt_and_locked(void **state)
{
	struct dir *d = *state;
	struct store *s, *s2;
	struct orch_err err = {0};
	assert_int_equal(store_open(d->path, false, &s, &err), 0);
	assert_int_equal(store_open(d->path, false, &s2, &err), -EBUSY);
	assert_non_null(strstr(err.message, "in use"));
	store_close(s);

	char garbage[8192];
	memset(garbage, 'x', sizeof garbage);
	unlink(db_path(d));
	int fd = open(db_path(d), O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(write(fd, garbage, sizeof garbage) == (ssize_t)sizeof garbage);
	close(fd);
	assert_int_equal(store_open(d->path, false, &s, &err), -EIO);
	assert_non_null(strstr(err.message, "corrupt"));
}

static struct orch_config config(const struct dir *d)
{
	return (struct orch_config){.mount = (char *)"/nonexistent-mount", .state_dir = (char *)d->path,
				    .workdir = (char *)"/tmp", .max_workers = 2, .kill_grace_s = 1,
				    .event_history = 8};
}

static int write_node(struct orch *o, const char *path, const char *data)
{
	struct node n;
	struct buf r = BUF_INIT;
	int rc = node_resolve(o, path, &n);
	if (!rc)
		rc = node_write(o, &n, path, data, strlen(data), NULL, &r);
	buf_free(&r);
	return rc;
}

static char *read_node(struct orch *o, const char *path)
{
	struct node n;
	struct buf b = BUF_INIT;
	if (node_resolve(o, path, &n) || node_render(o, &n, &b)) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b);
}

static void test_round_trip(void **state)
{
	struct dir *d = *state;
	struct orch_config cfg = config(d);
	struct orch o;
	struct orch_err err = {0};
	assert_int_equal(orch_init(&o, &cfg, &err), 0);
	assert_int_equal(write_node(&o, "mma/tracks/create",
				    "{\"id\":\"k\",\"budget_usd\":3,\"tasks\":["
				    "{\"id\":\"a\",\"command\":\"sleep 30\",\"retries\":1},"
				    "{\"id\":\"b\",\"command\":\"true\",\"deps\":[\"a\"],\"env\":{\"X\":\"1\"}}]}"), 0);
	assert_int_equal(write_node(&o, "mma/dag/mutate", "hold b"), 0);
	assert_int_equal(write_node(&o, "context/inject", "text remember the milk"), 0);
	assert_int_equal(write_node(&o, "mma/pipeline/max_workers", "5"), 0);
	/* start a, as the scheduler would: a real process, a running worker */
	pthread_mutex_lock(&o.lock);
	struct worker *w;
	assert_int_equal(sched_spawn(&o, NULL, task_find(&o, "a"), NULL, &w, &err), 0);
	pid_t pid = w->pid;
	uint64_t ticket = orch_commit(&o);
	pthread_mutex_unlock(&o.lock);
	assert_int_equal(orch_wait(&o, ticket), 0);
	assert_int_equal(write_node(&o, "mma/workers/1/usage", "model=m in=7 out=3"), 0);
	char *dag = read_node(&o, "mma/dag.json");
	uint64_t seq = events_seq(&o.events);
	/* no orderly shutdown: as after kill -9, the worker is still running */
	orch_destroy(&o);

	/* the worker outlived the daemon: the next one adopts it */
	assert_int_equal(orch_init(&o, &cfg, &err), 0);
	w = worker_find(&o, 1);
	assert_int_equal(w->status, WORKER_RUNNING);
	assert_int_equal(w->pid, pid);
	assert_int_equal(task_find(&o, "a")->status, TASK_RUNNING);
	char *adopted = read_node(&o, "mma/workers/1/trace");
	assert_non_null(strstr(adopted, "worker.adopted"));
	free(adopted);
	orch_destroy(&o);
	/* then it vanishes with its supervisor, as in a reboot */
	char kill_all[256];
	snprintf(kill_all, sizeof kill_all, "pkill -KILL -f -- '%s %s/run$'", SUPERVISOR_ARG, d->path);
	assert_int_equal(system(kill_all), 0);
	kill(-pid, SIGKILL);

	assert_int_equal(orch_init(&o, &cfg, &err), 0);
	struct task *a = task_find(&o, "a"), *b = task_find(&o, "b");
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(b->ndeps, 1);
	assert_ptr_equal(b->deps[0], a);
	assert_string_equal(b->env[0], "X=1");
	assert_int_equal(b->status, TASK_HELD);
	/* a's worker was lost; a had a retry left, so it is queued again */
	w = worker_find(&o, 1);
	assert_int_equal(w->status, WORKER_LOST);
	assert_int_equal(w->usage.v[0].input, 7);
	assert_int_equal(a->status, TASK_READY);
	assert_int_equal(a->retries, 0);
	assert_int_equal(o.max_workers, 5);
	assert_int_equal(track_find(&o, "k")->budget_micro, 3000000);
	assert_true(events_seq(&o.events) > seq);   /* the seq goes on: lost, retry, started */
	char *text = read_node(&o, "context/files/text-1");
	assert_string_equal(text, "remember the milk");
	free(text);
	/* the trace of worker 1 came back from the log */
	char *trace = read_node(&o, "mma/workers/1/trace");
	assert_non_null(strstr(trace, "worker.spawned"));
	assert_non_null(strstr(trace, "worker.lost"));
	free(trace);
	/* deps and nodes are the same; only statuses moved */
	char *dag2 = read_node(&o, "mma/dag.json");
	assert_non_null(strstr(dag2, "\"edges\":[{\"from\":\"a\",\"to\":\"b\"}]"));
	free(dag);
	free(dag2);

	/* memory keeps 8 events; older ones are replayed from the store, in order */
	struct buf out = BUF_INIT;
	uint64_t last = 0, oldest = 0, want = 1;
	while (last < events_committed(&o.events)) {
		buf_reset(&out);
		assert_int_equal(events_read(&o.events, last, EV_ALL_EVENTS, 1 << 20, &out, &last, &oldest), 0);
		for (char *line = out.data; line && *line; line = strchr(line, '\n') + 1) {
			cJSON *e = cJSON_Parse(line);
			assert_int_equal((uint64_t)cJSON_GetObjectItem(e, "seq")->valuedouble, want++);
			cJSON_Delete(e);
		}
	}
	assert_int_equal(want, events_committed(&o.events) + 1);
	buf_free(&out);
	orch_destroy(&o);
	/* ids continue: the next worker is 2 */
	assert_int_equal(orch_init(&o, &cfg, &err), 0);
	assert_int_equal(o.nworkers, 1);
	orch_destroy(&o);
}

static off_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? st.st_size : -1;
}

static char *journal_path(const struct dir *d)
{
	static char p[128];
	snprintf(p, sizeof p, "%s/orchfs.journal", d->path);
	return p;
}

struct collected {
	char items[8][16];
	int n;
};

static int collect(void *arg, const char *data, size_t len)
{
	struct collected *c = arg;
	if (c->n == 8 || len >= sizeof c->items[0])
		return -1;
	memcpy(c->items[c->n], data, len);
	c->items[c->n++][len] = 0;
	return 0;
}

/* A daemon's model on d's state, started. */
static void orch_open_as(const struct dir *d, struct orch *o, bool durable)
{
	struct orch_config cfg = config(d);
	cfg.durable = durable;
	struct orch_err err = {0};
	assert_int_equal(orch_init(o, &cfg, &err), 0);
}

static void orch_open(const struct dir *d, struct orch *o)
{
	orch_open_as(d, o, false);
}

/* last_error, with its time, is the failed write's commit's: a daemon
 * killed right after (no orderly stop) reads back the very same object,
 * and one that fails outside a write (queued for the store thread) too. */
static void test_last_error_kept(void **state)
{
	struct dir *d = *state;
	struct orch o;
	orch_open(d, &o);
	char *none = read_node(&o, "last_error");
	assert_string_equal(none, "{\"error\":null}\n");
	free(none);
	assert_int_equal(write_node(&o, "mma/dag/mutate", "hold nosuch"), -ENOENT);
	char *before = read_node(&o, "last_error");
	cJSON *doc = cJSON_Parse(before);
	const char *ts = cJSON_GetStringValue(
		cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "error"), "ts"));
	assert_non_null(ts);
	assert_int_equal(strlen(ts), strlen("2026-12-06T14:40:00.123Z"));
	assert_int_equal(ts[10], 'T');
	assert_int_equal(ts[23], 'Z');
	cJSON_Delete(doc);
	orch_destroy(&o);   /* as after kill -9: nothing but what was acknowledged */
	orch_open(d, &o);
	char *after = read_node(&o, "last_error");
	assert_string_equal(after, before);
	free(after);
	free(before);
	/* one recorded outside a write: with the store thread's next journal */
	struct buf r = BUF_INIT;
	assert_int_equal(node_write_error(&o, "mma/workers/spawn", EFBIG, "too big", &r), -EFBIG);
	orch_shutdown(&o);
	orch_destroy(&o);
	orch_open(d, &o);
	after = read_node(&o, "last_error");
	assert_string_equal(after, r.data);
	free(after);
	buf_free(&r);
	orch_destroy(&o);
}

/* A removed track leaves no row; an archived one leaves one row holding it
 * all (its tasks' rows go), read back into the archive, its id still taken. */
static void test_archive_kept(void **state)
{
	struct dir *d = *state;
	struct orch o;
	orch_open(d, &o);
	assert_int_equal(write_node(&o, "mma/tracks/create",
				    "{\"id\":\"old\",\"title\":\"Old\",\"budget_usd\":2,\"tasks\":["
				    "{\"id\":\"o1\",\"command\":\"x\"},"
				    "{\"id\":\"o2\",\"command\":\"x\",\"deps\":[\"o1\"]}]}"), 0);
	assert_int_equal(write_node(&o, "mma/tracks/create",
				    "{\"id\":\"gone\",\"tasks\":[{\"id\":\"g1\",\"command\":\"x\"}]}"), 0);
	assert_int_equal(write_node(&o, "mma/dag/mutate", "hold o2; hold o1; archive old; remove_track gone"), 0);
	char *arch = read_node(&o, "mma/archive.json");
	orch_destroy(&o);   /* as after kill -9 */
	orch_open(d, &o);
	assert_null(track_find(&o, "old"));
	assert_null(task_find(&o, "o1"));
	assert_null(track_find(&o, "gone"));
	char *again = read_node(&o, "mma/archive.json");
	assert_string_equal(again, arch);
	assert_non_null(strstr(again, "\"id\":\"old\",\"title\":\"Old\",\"status\":\"active\","
				      "\"budget_usd\":2.000000"));
	assert_non_null(strstr(again, "\"held\":2},\"task_count\":2"));
	free(again);
	free(arch);
	assert_int_equal(write_node(&o, "mma/tracks/create", "{\"id\":\"old\",\"tasks\":[]}"), -EEXIST);
	/* a task id of an archived track is free again; a removed track's id too */
	assert_int_equal(write_node(&o, "mma/tracks/create",
				    "{\"id\":\"gone\",\"tasks\":[{\"id\":\"o1\",\"command\":\"x\"}]}"), 0);
	orch_shutdown(&o);
	orch_destroy(&o);
	assert_int_equal(db_int(db_path(d), "SELECT COUNT(*) FROM tracks"), 2);
	assert_int_equal(db_int(db_path(d), "SELECT COUNT(*) FROM tasks"), 1);
	assert_int_equal(db_int(db_path(d), "SELECT COUNT(*) FROM tracks WHERE id = 'old' AND "
					    "doc LIKE '%\"tasks\":[{\"id\":\"o1\"%'"), 1);
}

static void db_exec(const char *path, const char *sql)
{
	sqlite3 *db;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/* A status or runner number no daemon wrote (a damaged row, a newer
 * daemon's) loads as a default, never as an index past a table's end. */
static void test_bad_enums_load_as_defaults(void **state)
{
	struct dir *d = *state;
	struct orch o;
	orch_open(d, &o);
	assert_int_equal(write_node(&o, "mma/tracks/create",
				    "{\"id\":\"old\",\"tasks\":[{\"id\":\"o1\",\"command\":\"x\"}]}"), 0);
	assert_int_equal(write_node(&o, "mma/tracks/create",
				    "{\"id\":\"k\",\"tasks\":[{\"id\":\"t1\",\"command\":\"x\"}]}"), 0);
	assert_int_equal(write_node(&o, "mma/dag/mutate", "hold o1; archive old; hold t1"), 0);
	orch_shutdown(&o);
	orch_destroy(&o);
	db_exec(db_path(d), "UPDATE tracks SET doc = json_set(doc, '$.status', 1000000);"
			    "UPDATE tasks SET doc = json_set(doc, '$.status', -3, '$.runner', 77)");
	orch_open(d, &o);
	assert_int_equal(archive_find(&o, "old")->status, TRACK_ACTIVE);
	assert_int_equal(track_find(&o, "k")->status, TRACK_ACTIVE);
	assert_int_equal(task_find(&o, "t1")->status, TASK_READY);   /* blocked, then settled */
	assert_int_equal(task_find(&o, "t1")->runner, RUNNER_DEFAULT);
	char *arch = read_node(&o, "mma/archive.json");
	assert_non_null(strstr(arch, "\"id\":\"old\",\"title\":\"old\",\"status\":\"active\""));
	free(arch);
	orch_shutdown(&o);
	orch_destroy(&o);
}

/* Another connection holding SQLite's write lock (the store thread may be
 * applying the start meanwhile: it is waited for). */
static sqlite3 *hold_sqlite(const struct dir *d)
{
	sqlite3 *other;
	assert_int_equal(sqlite3_open(db_path(d), &other), SQLITE_OK);
	sqlite3_busy_timeout(other, 5000);
	assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	return other;
}

/* A write the journal cannot take (the file may not grow: a full disk, say)
 * fails with EIO and its events stay unseen; once the journal can grow, it
 * is written after all with the next commit, before it. */
static void test_journal_fails_then_retried(void **state)
{
	struct dir *d = *state;
	struct orch o;
	orch_open(d, &o);
	/* SQLite held up, so that it meets the full disk too, once let go */
	sqlite3 *other = hold_sqlite(d);
	assert_int_equal(write_node(&o, "mma/pipeline/max_workers", "3"), 0);
	uint64_t seen = events_committed(&o.events);

	struct rlimit was;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &was), 0);
	struct rlimit full = {(rlim_t)file_size(journal_path(d)), was.rlim_max};
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &full), 0);
	assert_int_equal(write_node(&o, "mma/pipeline/max_workers", "4"), -EIO);
	assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(other);
	usleep(50 * 1000);   /* the thread's apply meets the full disk */
	char *err_doc = read_node(&o, "last_error");
	assert_non_null(strstr(err_doc, "could not be stored"));
	free(err_doc);
	/* applied in memory, not yet visible as an event: it is not durable */
	assert_int_equal(events_committed(&o.events), seen);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &was), 0);

	assert_int_equal(write_node(&o, "mma/pipeline/max_workers", "5"), 0);
	assert_true(events_committed(&o.events) > seen + 1);
	orch_destroy(&o);
	assert_int_equal(db_int(db_path(d), "SELECT value FROM meta WHERE key = 'max_workers'"), 5);
	/* the failed commit's event was written too, before the later one */
	assert_int_equal(db_int(db_path(d), "SELECT COUNT(*) FROM events WHERE line LIKE "
					    "'%pipeline.max_workers%\"to\":4%' AND seq < (SELECT seq FROM "
					    "events WHERE line LIKE '%pipeline.max_workers%\"to\":5%')"), 1);
	/* a clean stop leaves nothing to replay */
	struct journal *j;
	struct collected c = {0};
	struct orch_err err = {0};
	assert_int_equal(journal_open(journal_path(d), false, &j, &err), 0);
	assert_int_equal(journal_replay(j, collect, &c), 0);
	assert_int_equal(c.n, 0);
	journal_close(j);
}

/* SQLite cannot take the journaled commits (another process holds its write
 * lock): the writes are acknowledged all the same, from the journal, and
 * SQLite has them once the lock goes. */
static void test_apply_waits_for_sqlite(void **state)
{
	struct dir *d = *state;
	struct orch o;
	orch_open(d, &o);
	sqlite3 *other = hold_sqlite(d);
	uint64_t seen = events_committed(&o.events);
	assert_int_equal(write_node(&o, "mma/pipeline/max_workers", "4"), 0);
	assert_int_equal(write_node(&o, "mma/pipeline/max_workers", "6"), 0);
	assert_int_equal(events_committed(&o.events), seen + 2);
	assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(other);
	orch_destroy(&o);
	assert_int_equal(db_int(db_path(d), "SELECT value FROM meta WHERE key = 'max_workers'"), 6);
	assert_int_equal(db_int(db_path(d), "SELECT MAX(seq) FROM events"), (int)seen + 2);
}

/* kill -9 while SQLite has none of the acknowledged writes (its lock was
 * held elsewhere): the next start has them all, from the journal. */
static void test_journal_replayed_after_kill(void **state)
{
	struct dir *d = *state;
	struct orch_config cfg = config(d);
	struct orch_err err = {0};
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct orch o;
		if (orch_init(&o, &cfg, &err))
			_exit(2);
		hold_sqlite(d);
		for (int i = 1; i <= 50; i++) {
			char num[16];
			snprintf(num, sizeof num, "%d", i);
			if (write_node(&o, "mma/pipeline/max_workers", num))
				_exit(3);
		}
		kill(getpid(), SIGKILL);
		_exit(4);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* none of it reached SQLite */
	assert_int_equal(db_int(db_path(d), "SELECT COUNT(*) FROM events WHERE line LIKE "
					    "'%pipeline.max_workers%'"), 0);
	struct orch o;
	assert_int_equal(orch_init(&o, &cfg, &err), 0);
	assert_int_equal(o.max_workers, 50);
	orch_destroy(&o);
	assert_int_equal(db_int(db_path(d), "SELECT COUNT(*) FROM events WHERE line LIKE "
					    "'%pipeline.max_workers%'"), 50);
}

static int replay(const char *path, bool durable, struct collected *c, struct journal **keep)
{
	struct journal *j;
	struct orch_err err = {0};
	memset(c, 0, sizeof *c);
	assert_int_equal(journal_open(path, durable, &j, &err), 0);
	assert_int_equal(journal_replay(j, collect, c), 0);
	if (keep)
		*keep = j;
	else
		journal_close(j);
	return c->n;
}

/* Replay stops at a torn tail, at a corrupt record, and at what a reset
 * left behind; appends go after the last whole record. */
static void test_journal_records(void **state)
{
	struct dir *d = *state;
	const char *path = journal_path(d);
	for (int durable = 0; durable < 2; durable++) {
		unlink(path);
		struct collected c;
		struct journal *j;
		assert_int_equal(replay(path, durable, &c, &j), 0);
		assert_int_equal(journal_append(j, "a", 1), 0);
		assert_int_equal(journal_append(j, "bb", 2), 0);
		assert_int_equal(journal_append(j, "ccc", 3), 0);
		journal_close(j);
		assert_int_equal(replay(path, durable, &c, NULL), 3);
		assert_string_equal(c.items[2], "ccc");

		/* torn: the last record lost its last byte */
		off_t whole = durable ? 16 + 3 * 20 + 6 : file_size(path);
		assert_int_equal(truncate(path, whole - 1), 0);
		assert_int_equal(replay(path, durable, &c, &j), 2);
		assert_int_equal(journal_append(j, "dd", 2), 0);
		journal_close(j);
		assert_int_equal(replay(path, durable, &c, NULL), 3);
		assert_string_equal(c.items[1], "bb");
		assert_string_equal(c.items[2], "dd");

		/* corrupt: a byte of the second record's payload */
		int fd = open(path, O_RDWR);
		assert_true(fd >= 0);
		assert_int_equal(pwrite(fd, "x", 1, 16 + 20 + 1 + 20), 1);
		close(fd);
		assert_int_equal(replay(path, durable, &c, &j), 1);
		assert_string_equal(c.items[0], "a");

		/* reset: the bytes stay, of an older generation, and are not read */
		assert_int_equal(journal_reset(j), 0);
		assert_int_equal(journal_bytes(j), 0);
		journal_close(j);
		assert_int_equal(replay(path, durable, &c, &j), 0);
		assert_int_equal(journal_append(j, "e", 1), 0);
		journal_close(j);
		assert_int_equal(replay(path, durable, &c, NULL), 1);
		assert_string_equal(c.items[0], "e");
	}
	/* not a journal: refused, not started afresh */
	int fd = open(path, O_WRONLY | O_TRUNC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "something else entirely", 23), 23);
	close(fd);
	struct journal *j;
	struct orch_err err = {0};
	assert_int_equal(journal_open(path, false, &j, &err), -EIO);
	assert_non_null(strstr(err.message, "not an orchfs journal"));
}

struct writer {
	struct orch *o;
	int failures;
};

static void *write_many(void *arg)
{
	struct writer *w = arg;
	for (int i = 0; i < 200; i++)
		w->failures += write_node(w->o, "mma/pipeline/max_workers", i % 2 ? "3" : "4") != 0;
	return NULL;
}

/* Writers that wait lead their own commits, the thread writes the rest, and
 * the WAL is copied into the database file meanwhile, by the thread. */
static void test_concurrent_commits(void **state)
{
	struct dir *d = *state;
	struct orch o;
	orch_open(d, &o);
	off_t db_before = file_size(db_path(d));
	struct writer w[8];
	pthread_t t[8];
	for (int i = 0; i < 8; i++) {
		w[i] = (struct writer){&o, 0};
		assert_int_equal(pthread_create(&t[i], NULL, write_many, &w[i]), 0);
	}
	/* the scheduler's way meanwhile: commits nobody waits for */
	for (int i = 0; i < 200; i++) {
		pthread_mutex_lock(&o.lock);
		orch_event(&o, NULL, EVK_PIPELINE_STATUS, NULL);
		orch_commit(&o);
		pthread_mutex_unlock(&o.lock);
	}
	for (int i = 0; i < 8; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(w[i].failures, 0);
	}
	/* the last commit nobody waited for is written too */
	for (int i = 0; i < 200 && events_committed(&o.events) < events_seq(&o.events); i++)
		usleep(10000);
	assert_int_equal(events_committed(&o.events), events_seq(&o.events));
	/* commits one at a time until the WAL has been copied into the
	 * database file: the thread does it past 1,000 pages, and a batch it
	 * applies (every 10 ms under a stream of writes) writes a few */
	int64_t give_up = time_mono_ns() + 30 * 1000000000LL;
	for (int i = 0; time_mono_ns() < give_up && file_size(db_path(d)) <= db_before; i++) {
		assert_int_equal(write_node(&o, "mma/pipeline/max_workers", i % 2 ? "3" : "4"), 0);
		if (i > 1000)
			usleep(1000);   /* the thread's turn */
	}
	assert_true(file_size(db_path(d)) > db_before);
	uint64_t seq = events_seq(&o.events);
	orch_destroy(&o);
	assert_int_equal(db_int(db_path(d), "SELECT COUNT(*) FROM events"), (int)seq);
	assert_int_equal(db_int(db_path(d), "SELECT MAX(seq) FROM events"), (int)seq);
}

/* --durable: a journaled write is acknowledged for good, and its event seen,
 * only once synced; node_write (HTTP's) waits for the sync itself, the
 * mount's at close (node_write_synced). Both survive a kill. */
static void test_durable_sync(void **state)
{
	struct dir *d = *state;
	struct orch o;
	orch_open_as(d, &o, true);
	struct node n;
	struct buf r = BUF_INIT;
	const char *path = "mma/pipeline/max_workers";
	assert_int_equal(node_resolve(&o, path, &n), 0);
	uint64_t ticket = 0;
	assert_int_equal(node_write_journaled(&o, &n, path, "3", 1, NULL, &r, &ticket), 0);
	assert_true(ticket > 0);
	uint64_t seq = events_seq(&o.events);
	assert_int_equal(node_write_synced(&o, path, ticket, &r), 0);
	assert_true(events_committed(&o.events) >= seq);
	assert_int_equal(node_write(&o, &n, path, "4", 1, NULL, &r), 0);
	assert_int_equal(events_committed(&o.events), events_seq(&o.events));
	buf_free(&r);
	orch_destroy(&o);   /* as after kill -9 */
	orch_open(d, &o);
	char *mw = read_node(&o, path);
	assert_string_equal(mw, "4\n");
	free(mw);
	orch_destroy(&o);
}

/* The journal's generation: it moves when the journal starts afresh. */
static uint64_t journal_generation(const struct dir *d)
{
	char path[128];
	snprintf(path, sizeof path, "%s/orchfs.journal", d->path);
	uint64_t gen = 0;
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &gen, sizeof gen, 8), (ssize_t)sizeof gen);
	close(fd);
	return gen;
}

/* --durable: the journal starts afresh past its limit once SQLite has all
 * it held, and what it held is in SQLite after a kill. */
static void test_durable_reset(void **state)
{
	struct dir *d = *state;
	struct orch o;
	orch_open_as(d, &o, true);
	uint64_t gen = journal_generation(d);
	enum { TEXT = 256 << 10 };
	char *cmd = malloc(TEXT + 64);
	int n = 0;
	for (; n < 40 && journal_generation(d) == gen; n++) {
		int len = snprintf(cmd, 64, "{\"name\":\"big%d\",\"text\":\"", n);
		memset(cmd + len, 'a' + n % 26, TEXT);
		strcpy(cmd + len + TEXT, "\"}");
		assert_int_equal(write_node(&o, "context/inject", cmd), 0);
		usleep(20000);   /* the store thread's turn to apply it */
	}
	free(cmd);
	assert_true(journal_generation(d) != gen);
	orch_destroy(&o);   /* as after kill -9 */
	orch_open(d, &o);
	for (int i = 0; i < n; i++) {
		char path[64];
		snprintf(path, sizeof path, "context/files/big%d", i);
		char *text = read_node(&o, path);
		assert_non_null(text);
		assert_int_equal(strlen(text), TEXT);
		assert_int_equal(text[TEXT - 1], 'a' + i % 26);
		free(text);
	}
	orch_destroy(&o);
}

int main(int argc, char **argv)
{
	/* a worker's start runs this binary again as its supervisor */
	if (argc == 3 && strcmp(argv[1], SUPERVISOR_ARG) == 0)
		return supervisor_main(argc, argv);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_migrations, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_and_locked, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_round_trip, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_journal_fails_then_retried, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_last_error_kept, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_archive_kept, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_bad_enums_load_as_defaults, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_apply_waits_for_sqlite, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_journal_replayed_after_kill, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_journal_records, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_commits, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_durable_sync, dir_setup, dir_teardown),
		cmocka_unit_test_setup_teardown(test_durable_reset, dir_setup, dir_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
