/* notify: the notifier that makes inotify work on the mount (SPEC 4).
 * The kernel raises no inotify event for a change made inside the daemon, so
 * ordinary calls are made on the mount purely for their side effect
 * (truncate -> IN_MODIFY, mkdir/mknod -> IN_CREATE, rmdir/unlink -> IN_DELETE),
 * and fs/ops.c turns those calls into no-ops once notifier_owns recognises the
 * caller. The calls are made by a small helper process (the hand), told what
 * to do by the notifier thread over a pipe: a daemon thread blocked in a call
 * on its own mount would keep a killed daemon from ever exiting (it waits for
 * an answer only the dying process could give), wedging the mount; a separate
 * process is released when the daemon's end of the connection closes. A pass compares renders with the previous pass, so a
 * watcher hears only of files whose bytes changed; state.json (it carries
 * telemetry) is announced on every change, system/telemetry.json never.
 *   inotifywait -m ~/orchfs/mma/pipeline & echo > ~/orchfs/mma/pipeline/pause */
#include "notify.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "nodes.h"

/* SPEC 4 allows 100 ms from change to event. last_error moves without an
 * event, so the version counter is polled at half of that. */
#define NOTIFIER_TICK_MS 50
#define NOTIFIER_COALESCE_NS (20 * 1000000LL)
#define NOTIFIER_LOG_POLL_NS (100 * 1000000LL)
#define NOTIFIER_READ_CHUNK (64 * 1024)
#define NOTIFIER_FUSE_MAGIC 0x65735546   /* statfs f_type of every FUSE mount */

/* Collections whose entries come and go, each with the files of one entry. */
enum { NOTIFIER_WORKERS, NOTIFIER_TASKS, NOTIFIER_TRACKS, NOTIFIER_CONTEXT, NOTIFIER_NDIRS };

static const char *const notifier_worker_files[] = {"/status", "/info.json", "/trace", "/usage", NULL};
static const char *const notifier_task_files[] = {"/status", "/info.json", "/deps", NULL};
static const char *const notifier_track_files[] = {"/status", "/info.json", "/budget", NULL};
static const char *const notifier_context_files[] = {"", NULL};

static const struct notifier_dir {
	const char *path;
	bool entries_are_dirs;   /* false: the entries are files (context) */
	const char *const *files;
} notifier_dirs[NOTIFIER_NDIRS] = {
	[NOTIFIER_WORKERS] = {"mma/workers", true, notifier_worker_files},
	[NOTIFIER_TASKS] = {"mma/tasks", true, notifier_task_files},
	[NOTIFIER_TRACKS] = {"mma/tracks", true, notifier_track_files},
	[NOTIFIER_CONTEXT] = {"context/files", false, notifier_context_files},
};

static const char *const notifier_globals[] = {
	"last_error", "mma/workers.json", "mma/tracks.json", "mma/dag.json", "mma/dag.dot",
	"mma/pipeline/status", "mma/pipeline/max_workers", "metrics/financial.json",
	"context/state.json", "context/aggregate", NULL,
};

struct notifier_names {
	char **v;   /* sorted */
	size_t n, cap;
};

/* A running worker's log, watched by size: its bytes reach the file on disk
 * without the daemon seeing them. */
struct notifier_log {
	int id;
	char *path;
	off_t size;
	uint64_t ended_seq;   /* once it ended: the last seq published by then */
};

struct notifier {
	struct orch *o;
	char *mount;
	pthread_t thread;
	int tid;                    /* the hand's pid (its only thread); atomic, 0 until it runs */
	int to_hand, from_hand;     /* the thread's ends of the pipes */
	bool stop;                  /* atomic */
	bool debug;

	/* What the thread is doing on the mount right now: FUSE handlers read it
	 * while the thread waits in that very call. */
	pthread_mutex_t lock;
	enum notify_intent intent;
	char path[PATH_MAX];

	/* The rest belongs to the thread alone. */
	uint64_t seq, version;      /* what the last pass covered */
	struct notifier_names names[NOTIFIER_NDIRS];
	struct hashmap *hashes;     /* path -> (void *)(hash of its last render | 1) */
	struct notifier_log *logs;
	size_t nlogs, logs_cap;
	size_t workers_seen;        /* o->workers[0 .. workers_seen) are known */
	struct buf render;
};

/* The candidates of one pass, each once. */
struct notifier_batch {
	struct hashmap *seen;       /* path -> NOTIFIER_ANNOUNCE or NOTIFIER_RECORD */
	char **paths;
	size_t n, cap;
	struct notifier_names created[NOTIFIER_NDIRS], deleted[NOTIFIER_NDIRS];
};

#define NOTIFIER_ANNOUNCE ((void *)1)
#define NOTIFIER_RECORD ((void *)2)   /* a new entry's file: nobody can watch it yet */

static bool notifier_stopping(struct notifier *n)
{
	return __atomic_load_n(&n->stop, __ATOMIC_ACQUIRE);
}

/* --- name sets --- */

static void notifier_names_add(struct notifier_names *s, const char *name)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 16;
		s->v = xrealloc(s->v, s->cap * sizeof *s->v);
	}
	s->v[s->n++] = xstrdup(name);
}

static void notifier_names_free(struct notifier_names *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	*s = (struct notifier_names){0};
}

static int notifier_names_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

struct notifier_list_arg {
	struct notifier_names *out;
	bool dirs_only;
};

static void notifier_list_one(void *arg, const char *name, const struct node *child)
{
	struct notifier_list_arg *a = arg;
	/* mma/workers also lists its control files; they never come or go */
	if (a->dirs_only && node_type(child) != NODE_DIR)
		return;
	notifier_names_add(a->out, name);
}

static void notifier_list(struct orch *o, int dir, struct notifier_names *out)
{
	struct node d;
	if (node_resolve(o, notifier_dirs[dir].path, &d))
		return;
	struct notifier_list_arg a = {out, notifier_dirs[dir].entries_are_dirs};
	node_list(o, &d, notifier_list_one, &a);
	if (out->n > 1)
		qsort(out->v, out->n, sizeof *out->v, notifier_names_cmp);
}

/* --- candidates --- */

static void notifier_batch_add(struct notifier_batch *b, const char *path, void *how)
{
	void *was = hashmap_get(b->seen, path);
	if (was) {
		/* a new entry stays record-only whatever its events say */
		if (how == NOTIFIER_RECORD && was != NOTIFIER_RECORD)
			hashmap_put(b->seen, path, how);
		return;
	}
	hashmap_put(b->seen, path, how);
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 32;
		b->paths = xrealloc(b->paths, b->cap * sizeof *b->paths);
	}
	b->paths[b->n++] = xstrdup(path);
}

/* Ids and names come from event lines: refuse anything that could leave its
 * directory before it is ever joined into a path. */
static bool notifier_name_ok(const char *name)
{
	size_t len = strlen(name);
	return len > 0 && len <= ID_MAX && !strchr(name, '/') && strcmp(name, ".") &&
	       strcmp(name, "..");
}

static void notifier_add_entry(struct notifier_batch *b, int dir, const char *name, void *how)
{
	if (!notifier_name_ok(name))
		return;
	char path[PATH_MAX];
	for (const char *const *f = notifier_dirs[dir].files; *f; f++) {
		snprintf(path, sizeof path, "%s/%s%s", notifier_dirs[dir].path, name, *f);
		notifier_batch_add(b, path, how);
	}
}

static void notifier_add_worker(struct notifier_batch *b, int id)
{
	char name[24];
	snprintf(name, sizeof name, "%d", id);
	notifier_add_entry(b, NOTIFIER_WORKERS, name, NOTIFIER_ANNOUNCE);
}

struct notifier_ids {
	int *v;
	size_t n, cap;
};

static void notifier_ids_add(struct notifier_ids *ids, const cJSON *v)
{
	int64_t id;
	if (!json_int(v, 1, INT_MAX, &id))
		return;
	if (ids->n == ids->cap) {
		ids->cap = ids->cap ? ids->cap * 2 : 16;
		ids->v = xrealloc(ids->v, ids->cap * sizeof *ids->v);
	}
	ids->v[ids->n++] = (int)id;
}

/* One event line: the objects it names become candidates. */
static void notifier_parse_event(struct notifier_batch *b, const char *line, size_t len,
				 struct notifier_ids *workers)
{
	cJSON *ev = cJSON_ParseWithLength(line, len);
	if (!ev)
		return;
	const char *channel = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "channel"));
	const cJSON *data = cJSON_GetObjectItemCaseSensitive(ev, "data");
	if (cJSON_IsObject(data) && channel) {
		const char *s;
		if ((s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "task"))))
			notifier_add_entry(b, NOTIFIER_TASKS, s, NOTIFIER_ANNOUNCE);
		if ((s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "track"))))
			notifier_add_entry(b, NOTIFIER_TRACKS, s, NOTIFIER_ANNOUNCE);
		notifier_ids_add(workers, cJSON_GetObjectItemCaseSensitive(data, "worker"));
		if (!strcmp(channel, "workers"))
			notifier_ids_add(workers, cJSON_GetObjectItemCaseSensitive(data, "id"));
		if (!strcmp(channel, "context") &&
		    (s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(data, "name"))))
			notifier_add_entry(b, NOTIFIER_CONTEXT, s, NOTIFIER_ANNOUNCE);
	}
	cJSON_Delete(ev);
}

/* A worker's change shows in its task's and track's documents too, and its
 * events do not always name them. */
static void notifier_add_workers(struct notifier *n, struct notifier_batch *b,
				 const struct notifier_ids *ids)
{
	if (!ids->n)
		return;
	struct buf owners = BUF_INIT;   /* "task\0track\0" per worker */
	pthread_mutex_lock(&n->o->lock);
	for (size_t i = 0; i < ids->n; i++) {
		struct worker *w = worker_find(n->o, ids->v[i]);
		if (!w)
			continue;
		buf_append(&owners, w->task_id, strlen(w->task_id) + 1);
		buf_append(&owners, w->track_id, strlen(w->track_id) + 1);
	}
	pthread_mutex_unlock(&n->o->lock);
	for (size_t i = 0; i < ids->n; i++)
		notifier_add_worker(b, ids->v[i]);
	for (size_t off = 0; off < owners.len;) {
		const char *task = owners.data + off;
		off += strlen(task) + 1;
		const char *track = owners.data + off;
		off += strlen(track) + 1;
		if (*task)
			notifier_add_entry(b, NOTIFIER_TASKS, task, NOTIFIER_ANNOUNCE);
		if (*track)
			notifier_add_entry(b, NOTIFIER_TRACKS, track, NOTIFIER_ANNOUNCE);
	}
	buf_free(&owners);
}

/* Reads the events after n->seq into candidates; returns the last seq read.
 * *lost is set when the history no longer holds some of them. */
static uint64_t notifier_read_events(struct notifier *n, struct notifier_batch *b, bool *lost)
{
	struct events *ev = &n->o->events;
	uint64_t at = n->seq, upto = events_committed(ev);
	struct buf lines = BUF_INIT;
	struct notifier_ids workers = {0};
	while (at < upto) {
		uint64_t last = at, oldest = 0;
		buf_reset(&lines);
		int rc = events_read(ev, at, EV_ALL_EVENTS, NOTIFIER_READ_CHUNK, &lines, &last, &oldest);
		if (rc == -ERANGE && oldest > at + 1) {
			*lost = true;
			at = oldest - 1;
			continue;
		}
		if (rc || last <= at)
			break;
		for (size_t off = 0; off < lines.len;) {
			const char *nl = memchr(lines.data + off, '\n', lines.len - off);
			size_t len = nl ? (size_t)(nl - lines.data) - off : lines.len - off;
			notifier_parse_event(b, lines.data + off, len, &workers);
			off += len + 1;
		}
		at = last;
	}
	notifier_add_workers(n, b, &workers);
	free(workers.v);
	buf_free(&lines);
	return at;
}

/* --- calls on the mount, made by the hand --- */

/* What the notifier thread asks of the hand; answered with an int errno. */
struct hand_request {
	int intent;
	int dir;
	int64_t size;
	uint32_t len;   /* the path (relative to the mount) follows */
};

/* The mount's root, opened only for the length of one call: a descriptor kept
 * open would make a plain `fusermount3 -u` fail with EBUSY. Once the mount is
 * gone the path is the directory underneath, whose device differs: nothing
 * there may be touched. */
static int hand_root(const char *mount, dev_t *dev)
{
	int fd = open(mount, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat st;
	struct statfs sfs;
	if (fstat(fd, &st) == 0) {
		/* the first look is taken while mounted; make sure of it */
		if (!*dev && fstatfs(fd, &sfs) == 0 && sfs.f_type == NOTIFIER_FUSE_MAGIC)
			*dev = st.st_dev;
		if (*dev && st.st_dev == *dev)
			return fd;
	}
	close(fd);
	return -1;
}

static bool read_full(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len) {
		ssize_t r = read(fd, p, len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		p += r;
		len -= (size_t)r;
	}
	return true;
}

static bool write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		p += w;
		len -= (size_t)w;
	}
	return true;
}

int notifier_hand_main(const char *mount)
{
	/* gone with the daemon, even when it is killed */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	dev_t dev = 0;
	int root = hand_root(mount, &dev);   /* learn the device while surely mounted */
	if (root >= 0)
		close(root);
	struct hand_request rq;
	char path[PATH_MAX];
	while (read_full(0, &rq, sizeof rq)) {
		if (rq.len >= sizeof path || !read_full(0, path, rq.len))
			return 1;
		path[rq.len] = '\0';
		int rc = -1, e = ENOTCONN;
		root = hand_root(mount, &dev);
		if (root >= 0) {
			if (rq.intent == NOTIFY_CREATE) {
				rc = rq.dir ? mkdirat(root, path, 0555)
					    : mknodat(root, path, S_IFREG | 0444, 0);
			} else if (rq.intent == NOTIFY_DELETE) {
				rc = unlinkat(root, path, rq.dir ? AT_REMOVEDIR : 0);
			} else {
				/* there is no truncateat: the descriptor's magic link stands in */
				char via[PATH_MAX + 32];
				snprintf(via, sizeof via, "/proc/self/fd/%d/%s", root, path);
				rc = truncate(via, (off_t)rq.size);
			}
			e = rc ? errno : 0;
			close(root);
		}
		if (!write_full(1, &e, sizeof e))
			return 1;
	}
	return 0;   /* the daemon closed the pipe: it is stopping */
}

static bool hand_start(struct notifier *n)
{
	int to[2], from[2];
	if (pipe2(to, O_CLOEXEC) < 0)
		return false;
	if (pipe2(from, O_CLOEXEC) < 0) {
		close(to[0]);
		close(to[1]);
		return false;
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, to[0], 0);
	posix_spawn_file_actions_adddup2(&fa, from[1], 1);
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	sigset_t none;
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
	char *const argv[] = {(char *)"orchfs-notify", (char *)"--notify-hand", n->mount, NULL};
	extern char **environ;
	pid_t pid;
	int rc = posix_spawn(&pid, "/proc/self/exe", &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(to[0]);
	close(from[1]);
	if (rc) {
		close(to[1]);
		close(from[0]);
		fprintf(stderr, "orchfs: cannot start the notifier's helper: %s\n", strerror(rc));
		return false;
	}
	n->to_hand = to[1];
	n->from_hand = from[0];
	__atomic_store_n(&n->tid, (int)pid, __ATOMIC_RELEASE);
	return true;
}

/* One call on the mount for its inotify side effect; its result is of no use
 * beyond debugging. dir: the entry is a directory (CREATE, DELETE). */
static void notifier_call(struct notifier *n, enum notify_intent intent, const char *rel,
			  bool dir, off_t size)
{
	if (notifier_stopping(n) || n->to_hand < 0)
		return;
	pthread_mutex_lock(&n->lock);
	n->intent = intent;
	snprintf(n->path, sizeof n->path, "%s", rel);
	pthread_mutex_unlock(&n->lock);
	struct hand_request rq = {.intent = intent, .dir = dir, .size = size,
				  .len = (uint32_t)strlen(n->path)};
	int e = EPIPE;
	bool ok = write_full(n->to_hand, &rq, sizeof rq) && write_full(n->to_hand, n->path, rq.len) &&
		  read_full(n->from_hand, &e, sizeof e);
	pthread_mutex_lock(&n->lock);
	n->intent = NOTIFY_NONE;
	n->path[0] = '\0';
	pthread_mutex_unlock(&n->lock);
	if (!ok) {
		/* the hand is gone: no more announcements, but nothing else breaks */
		fprintf(stderr, "orchfs: the notifier's helper stopped; inotify events end here\n");
		close(n->to_hand);
		n->to_hand = -1;
		return;
	}
	if (e && n->debug)
		fprintf(stderr, "orchfs: notify %s %s: %s\n",
			intent == NOTIFY_CREATE ? "create" : intent == NOTIFY_DELETE ? "delete" : "modify",
			rel, strerror(e));
}

/* --- one pass --- */

static uintptr_t notifier_hash(const struct buf *b)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < b->len; i++)
		h = (h ^ (unsigned char)b->data[i]) * 1099511628211ULL;
	h ^= b->len * 0x9E3779B97F4A7C15ULL;
	return (uintptr_t)h | 1;   /* never NULL: NULL means "never seen" */
}

/* Renders path; announces it when its bytes differ from the last render.
 * force: announce even so (state.json changes with every telemetry frame). */
static void notifier_compare(struct notifier *n, const char *path, void *how, bool force)
{
	struct node nd;
	buf_reset(&n->render);
	if (node_resolve(n->o, path, &nd) || !(node_flags(&nd) & NODE_DOC) ||
	    node_render(n->o, &nd, &n->render)) {
		hashmap_del(n->hashes, path);
		return;
	}
	uintptr_t h = notifier_hash(&n->render);
	uintptr_t was = (uintptr_t)hashmap_get(n->hashes, path);
	if (h == was && !force)
		return;
	hashmap_put(n->hashes, path, (void *)h);
	if (how != NOTIFIER_RECORD)
		notifier_call(n, NOTIFY_MODIFY, path, false, (off_t)n->render.len);
}

static void notifier_forget_entry(struct notifier *n, int dir, const char *name)
{
	char path[PATH_MAX];
	for (const char *const *f = notifier_dirs[dir].files; *f; f++) {
		snprintf(path, sizeof path, "%s/%s%s", notifier_dirs[dir].path, name, *f);
		hashmap_del(n->hashes, path);
	}
}

/* Current entries against the last pass's: new ones go to created, gone ones
 * to deleted, and the current set becomes the last. */
static void notifier_diff(struct notifier *n, int dir, struct notifier_batch *b)
{
	struct notifier_names cur = {0}, *old = &n->names[dir];
	notifier_list(n->o, dir, &cur);
	size_t i = 0, j = 0;
	while (i < old->n || j < cur.n) {
		int c = i == old->n ? 1 : j == cur.n ? -1 : strcmp(old->v[i], cur.v[j]);
		if (c < 0)
			notifier_names_add(&b->deleted[dir], old->v[i++]);
		else if (c > 0)
			notifier_names_add(&b->created[dir], cur.v[j++]);
		else
			i++, j++;
	}
	notifier_names_free(old);
	*old = cur;
}

static void notifier_pass(struct notifier *n)
{
	struct orch *o = n->o;
	/* Taken before anything is read: a change after this moves the version
	 * again, so the next pass sees it. */
	uint64_t version = __atomic_load_n(&o->version, __ATOMIC_ACQUIRE);
	struct notifier_batch b = {.seen = hashmap_new()};
	bool lost = false;
	uint64_t seq = notifier_read_events(n, &b, &lost);
	bool events = seq > n->seq || lost;

	/* Entries come and go only with events. */
	if (events) {
		for (int d = 0; d < NOTIFIER_NDIRS; d++) {
			notifier_diff(n, d, &b);
			for (size_t i = 0; i < b.created[d].n; i++)
				notifier_add_entry(&b, d, b.created[d].v[i], NOTIFIER_RECORD);
			if (lost)
				for (size_t i = 0; i < n->names[d].n; i++)
					notifier_add_entry(&b, d, n->names[d].v[i], NOTIFIER_ANNOUNCE);
		}
	}
	for (const char *const *g = notifier_globals; *g; g++)
		notifier_batch_add(&b, *g, NOTIFIER_ANNOUNCE);

	for (int d = 0; d < NOTIFIER_NDIRS; d++) {
		char path[PATH_MAX];
		for (size_t i = 0; i < b.created[d].n; i++) {
			snprintf(path, sizeof path, "%s/%s", notifier_dirs[d].path, b.created[d].v[i]);
			notifier_call(n, NOTIFY_CREATE, path, notifier_dirs[d].entries_are_dirs, 0);
		}
	}
	for (size_t i = 0; i < b.n; i++)
		notifier_compare(n, b.paths[i], hashmap_get(b.seen, b.paths[i]), false);
	notifier_compare(n, "state.json", NOTIFIER_ANNOUNCE, true);
	for (int d = 0; d < NOTIFIER_NDIRS; d++) {
		char path[PATH_MAX];
		for (size_t i = 0; i < b.deleted[d].n; i++) {
			snprintf(path, sizeof path, "%s/%s", notifier_dirs[d].path, b.deleted[d].v[i]);
			notifier_call(n, NOTIFY_DELETE, path, notifier_dirs[d].entries_are_dirs, 0);
			notifier_forget_entry(n, d, b.deleted[d].v[i]);
		}
	}

	n->seq = seq;
	n->version = version;
	for (int d = 0; d < NOTIFIER_NDIRS; d++) {
		notifier_names_free(&b.created[d]);
		notifier_names_free(&b.deleted[d]);
	}
	for (size_t i = 0; i < b.n; i++)
		free(b.paths[i]);
	free(b.paths);
	hashmap_free(b.seen);
}

/* --- worker logs --- */

static void notifier_log_add(struct notifier *n, int id, const char *path, off_t size)
{
	if (n->nlogs == n->logs_cap) {
		n->logs_cap = n->logs_cap ? n->logs_cap * 2 : 16;
		n->logs = xrealloc(n->logs, n->logs_cap * sizeof *n->logs);
	}
	n->logs[n->nlogs++] = (struct notifier_log){id, xstrdup(path), size, 0};
}

/* Takes on the workers spawned since the last look; returns, in running, which
 * watched logs still have a live writer. */
static bool *notifier_log_scan(struct notifier *n)
{
	struct orch *o = n->o;
	pthread_mutex_lock(&o->lock);
	/* A worker that ended before this look still gets one: its output may
	 * have gone unseen. */
	for (; n->workers_seen < o->nworkers; n->workers_seen++) {
		struct worker *w = o->workers[n->workers_seen];
		if (w->log_path)
			notifier_log_add(n, w->id, w->log_path, 0);
	}
	bool *running = xcalloc(n->nlogs ? n->nlogs : 1, sizeof *running);
	for (size_t i = 0; i < n->nlogs; i++) {
		struct worker *w = worker_find(o, n->logs[i].id);
		running[i] = w && w->status == WORKER_RUNNING;
	}
	pthread_mutex_unlock(&o->lock);
	return running;
}

static void notifier_poll_logs(struct notifier *n)
{
	bool *running = notifier_log_scan(n);
	size_t keep = 0;
	for (size_t i = 0; i < n->nlogs; i++) {
		struct notifier_log *l = &n->logs[i];
		struct stat st;
		if (stat(l->path, &st) == 0 && st.st_size != l->size) {
			char path[64];
			snprintf(path, sizeof path, "mma/workers/%d/log", l->id);
			l->size = st.st_size;
			notifier_call(n, NOTIFY_MODIFY, path, false, st.st_size);
		}
		if (!running[i] && !l->ended_seq)
			l->ended_seq = events_seq(&n->o->events);
		/* Kept until a pass has covered the events of its end, so that its
		 * documents' last renders are in and can be forgotten for good. */
		if (running[i] || n->seq < l->ended_seq) {
			n->logs[keep++] = *l;
			continue;
		}
		/* Its documents will hardly change again: forgetting their renders
		 * keeps memory bounded by the running workers, at worst at the price
		 * of one needless event later. */
		char name[24];
		snprintf(name, sizeof name, "%d", l->id);
		notifier_forget_entry(n, NOTIFIER_WORKERS, name);
		free(l->path);
	}
	n->nlogs = keep;
	free(running);
}

/* --- the thread --- */

static void notifier_sleep_ns(int64_t ns)
{
	struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void *notifier_main(void *arg)
{
	struct notifier *n = arg;
	pthread_setname_np(pthread_self(), "orchfs-notify");
	int64_t next_logs = time_mono_ns() + NOTIFIER_LOG_POLL_NS;
	while (!notifier_stopping(n)) {
		int64_t t0 = time_mono_ns();
		uint64_t committed = events_wait(&n->o->events, n->seq, NOTIFIER_TICK_MS);
		if (notifier_stopping(n))
			break;
		bool woken = time_mono_ns() - t0 < NOTIFIER_TICK_MS * 1000000LL;
		if (committed > n->seq ||
		    __atomic_load_n(&n->o->version, __ATOMIC_ACQUIRE) != n->version) {
			/* A burst becomes one pass; whatever arrives during the pass is
			 * left for the next one, so the last change is never lost. A
			 * change found by the tick (last_error) has waited long enough. */
			if (woken)
				notifier_sleep_ns(NOTIFIER_COALESCE_NS);
			notifier_pass(n);
		}
		if (time_mono_ns() >= next_logs) {
			notifier_poll_logs(n);
			next_logs = time_mono_ns() + NOTIFIER_LOG_POLL_NS;
		}
	}
	return NULL;
}

struct notifier *notifier_start(struct orch *o, const char *mount)
{
	struct notifier *n = xcalloc(1, sizeof *n);
	n->o = o;
	n->mount = xstrdup(mount);
	const char *debug = getenv("ORCHFS_DEBUG");
	n->debug = debug && *debug;
	pthread_mutex_init(&n->lock, NULL);
	n->hashes = hashmap_new();
	n->to_hand = n->from_hand = -1;
	if (!hand_start(n)) {
		pthread_mutex_destroy(&n->lock);
		hashmap_free(n->hashes);
		free(n->mount);
		free(n);
		return NULL;
	}

	/* The baseline, taken before the FUSE loop runs: what exists now was never
	 * announced and needs no announcement. */
	n->version = __atomic_load_n(&o->version, __ATOMIC_ACQUIRE);
	n->seq = events_committed(&o->events);
	for (int d = 0; d < NOTIFIER_NDIRS; d++)
		notifier_list(o, d, &n->names[d]);
	for (const char *const *g = notifier_globals; *g; g++)
		notifier_compare(n, *g, NOTIFIER_RECORD, false);
	pthread_mutex_lock(&o->lock);
	for (; n->workers_seen < o->nworkers; n->workers_seen++) {
		struct worker *w = o->workers[n->workers_seen];
		if (w->status != WORKER_RUNNING || !w->log_path)
			continue;
		struct stat st;
		notifier_log_add(n, w->id, w->log_path, stat(w->log_path, &st) == 0 ? st.st_size : 0);
	}
	pthread_mutex_unlock(&o->lock);

	/* Signals go to other threads: an interrupted call on the mount would
	 * leave its FUSE handler reading a path that has moved on. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&n->thread, NULL, notifier_main, n);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		fprintf(stderr, "orchfs: cannot start the notifier: %s\n", strerror(rc));
		n->stop = true;
		notifier_stop(n);
		return NULL;
	}
	return n;
}

void notifier_stop(struct notifier *n)
{
	if (!n)
		return;
	bool started = !__atomic_exchange_n(&n->stop, true, __ATOMIC_ACQ_REL);
	if (started) {
		events_wake_all(&n->o->events);
		pthread_join(n->thread, NULL);
	}
	/* EOF tells the hand to go; a call it still had on the mount failed when
	 * the session closed (main stops us after that) */
	if (n->to_hand >= 0)
		close(n->to_hand);
	if (n->from_hand >= 0)
		close(n->from_hand);
	int pid = __atomic_load_n(&n->tid, __ATOMIC_ACQUIRE);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	for (int d = 0; d < NOTIFIER_NDIRS; d++)
		notifier_names_free(&n->names[d]);
	for (size_t i = 0; i < n->nlogs; i++)
		free(n->logs[i].path);
	free(n->logs);
	hashmap_free(n->hashes);
	buf_free(&n->render);
	pthread_mutex_destroy(&n->lock);
	free(n->mount);
	free(n);
}

bool notifier_owns(struct notifier *n, fuse_req_t req, enum notify_intent *intent,
		   const char **path)
{
	if (!n)
		return false;
	int tid = __atomic_load_n(&n->tid, __ATOMIC_ACQUIRE);
	if (!tid || fuse_req_ctx(req)->pid != tid)
		return false;
	pthread_mutex_lock(&n->lock);
	if (intent)
		*intent = n->intent;
	if (path)
		*path = n->path;
	pthread_mutex_unlock(&n->lock);
	return true;
}
