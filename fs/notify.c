/* notify: the notifier that makes inotify work on the mount.
 * The kernel raises no inotify event for a change made inside the daemon, so
 * ordinary calls are made on the mount purely for their side effect
 * (truncate -> IN_MODIFY, mkdir/mknod -> IN_CREATE, rmdir/unlink -> IN_DELETE),
 * and fs/ops.c turns those calls into no-ops once notifier_owns recognises the
 * caller. The calls are made by a small helper process (the hand), told what
 * to do by the notifier thread over a pipe: a daemon thread blocked in a call
 * on its own mount would keep a killed daemon from ever exiting (it waits for
 * an answer only the dying process could give), wedging the mount; a separate
 * process is released when the daemon's end of the connection closes.
 * What to announce comes from the committed events themselves: each names
 * its kind and objects, and the node table says which files that touches
 * (node_touched), so nothing is rendered or compared and a lone change is
 * announced at once. A burst committed while a pass runs is the next pass.
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
#include "render.h"

/* Logs grow without events: they are looked at this often. */
#define NOTIFIER_LOG_POLL_MS 100
/* A pass starts at least a gap after the last one started, so that the
 * commits of a stream (writers at thousands a second, workers ending every
 * few milliseconds) share a pass, which costs the hand a call on the mount
 * per file, instead of one pass each. A change after 8 ms of quiet is
 * announced at once; each pass that follows its predecessor within 8 ms
 * doubles the gap, from 1 ms up to 8 ms: a steady stream is announced in
 * passes 8 ms apart, and a pass waits at most 8 ms. */
#define NOTIFIER_PASS_GAP_MIN_NS 1000000LL
#define NOTIFIER_PASS_GAP_MAX_NS 8000000LL
/* The fragments of the big documents are let go after this long unread. */
#define DOC_CACHE_IDLE_S 30
#define NOTIFIER_FUSE_MAGIC 0x65735546   /* statfs f_type of every FUSE mount */
/* truncates the hand makes in a row before it answers for them all */
#define HAND_BATCH_MAX 64

/* A running worker's log, watched by size: its bytes reach the file on disk
 * without the daemon seeing them. */
struct notifier_log {
	int id;
	char *path;
	off_t size;
};

struct notifier {
	struct orch *o;
	struct fs *fs;
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
	uint64_t announced;         /* under lock: every event up to it is announced */
	pthread_cond_t announced_cond;

	/* The rest belongs to the thread alone. */
	uint64_t seq;               /* the last event announced */
	uint64_t errors;            /* orch.errors announced */
	struct notifier_log *logs;  /* running workers' logs */
	size_t nlogs, logs_cap;
	size_t workers_seen;        /* o->workers[0 .. workers_seen) are known */
	struct buf batch;           /* requests for the hand: empty but while hand_send sends them */
	char *batch_paths[HAND_BATCH_MAX];
	size_t nbatch;
};

/* One pass: what the events since the last one touched, each path once. */
struct notifier_pass {
	struct hashmap *seen;       /* path -> how (enum node_touch + 1) */
	struct pass_item {
		char *path;
		enum node_touch how;
		bool dir;
	} *items;
	size_t n, cap;
	struct node_change *changes;  /* the events' changes, copied out of the ring */
	size_t nchanges, changes_cap;
};

static bool notifier_stopping(struct notifier *n)
{
	return __atomic_load_n(&n->stop, __ATOMIC_ACQUIRE);
}

static void pass_add(void *arg, enum node_touch how, const char *path, bool dir)
{
	struct notifier_pass *p = arg;
	uintptr_t was = (uintptr_t)hashmap_get(p->seen, path);
	if (was == (uintptr_t)how + 1)
		return;
	hashmap_put(p->seen, path, (void *)((uintptr_t)how + 1));
	if (p->n == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 32;
		p->items = xrealloc(p->items, p->cap * sizeof *p->items);
	}
	p->items[p->n++] = (struct pass_item){xstrdup(path), how, dir};
}

static const char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

/* Under the events' lock, which the scheduler takes to publish: only a copy
 * is made here, the paths are worked out after. */
static void pass_event(void *arg, const struct event_rec *rec)
{
	struct notifier_pass *p = arg;
	struct node_change c = node_change_of(rec);
	ARRAY_GROW(p->changes, p->changes_cap, p->nchanges + 1);
	p->changes[p->nchanges++] = (struct node_change){c.kinds, c.worker, dup_or_null(c.task),
							  dup_or_null(c.track), dup_or_null(c.name)};
}

/* --- calls on the mount, made by the hand --- */

/* What the notifier thread asks of the hand; answered with an int errno. */
struct hand_request {
	int intent;
	int dir;
	int64_t size;
	uint32_t len;   /* the path (relative to the mount) follows */
	uint32_t more;  /* more follow: answer for them all after the last */
};

/* The mount's root, opened only for the length of one batch of calls: a
 * descriptor kept open would make a plain `fusermount3 -u` fail with EBUSY.
 * Once the mount is gone the path is the directory underneath, whose device
 * differs: nothing there may be touched. */
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
	prctl(PR_SET_NAME, "orchfs-hand");   /* not "exe", as /proc/self/exe would have it */
	dev_t dev = 0;
	int root = hand_root(mount, &dev);   /* learn the device while surely mounted */
	if (root >= 0)
		close(root);
	struct hand_request rq;
	char path[PATH_MAX];
	int errs[HAND_BATCH_MAX];
	size_t nerrs = 0;
	root = -1;
	while (read_full(0, &rq, sizeof rq)) {
		if (rq.len >= sizeof path || !read_full(0, path, rq.len))
			return 1;
		path[rq.len] = '\0';
		int rc = -1, e = ENOTCONN;
		/* opened once for a batch, as it is answered at once */
		if (root < 0)
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
		}
		errs[nerrs++] = e;
		if (rq.more && nerrs < HAND_BATCH_MAX)
			continue;
		if (root >= 0)
			close(root);
		root = -1;
		if (!write_full(1, errs, nerrs * sizeof *errs))
			return 1;
		nerrs = 0;
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
	char *const argv[] = {(char *)"orchfs-notify", (char *)"--notify-hand", n->mount, NULL};
	extern char **environ;
	pid_t pid;
	int rc = runner_spawn_cmd(&pid, "/proc/self/exe", false, &fa, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(to[0]);
	close(from[1]);
	if (rc) {
		close(to[1]);
		close(from[0]);
		orch_log(n->o, ORCH_LOG_ERROR, "cannot start the notifier's helper: %s", strerror(rc));
		return false;
	}
	n->to_hand = to[1];
	n->from_hand = from[0];
	__atomic_store_n(&n->tid, (int)pid, __ATOMIC_RELEASE);
	return true;
}

static void hand_gone(struct notifier *n)
{
	/* no more announcements, but nothing else breaks */
	orch_log(n->o, ORCH_LOG_ERROR, "the notifier's helper stopped; inotify events end here");
	close(n->to_hand);
	n->to_hand = -1;
}

/* Many calls fail in the ordinary run of things (a file gone since): told
 * only to who asked. */
static void call_failed(struct notifier *n, enum notify_intent intent, const char *rel, int e)
{
	if (e && (n->debug || log_enabled(&n->o->cfg.log, ORCH_LOG_DEBUG)))
		log_write(&n->o->cfg.log, n->debug ? ORCH_LOG_INFO : ORCH_LOG_DEBUG, "notify %s %s: %s",
			intent == NOTIFY_CREATE ? "create" : intent == NOTIFY_DELETE ? "delete" : "modify",
			rel, strerror(e));
}

static void batch_add(struct buf *b, enum notify_intent intent, const char *rel, bool dir,
		      bool more)
{
	struct hand_request rq;
	memset(&rq, 0, sizeof rq);   /* its padding goes down the pipe too */
	rq.intent = intent;
	rq.dir = dir;
	rq.len = (uint32_t)strlen(rel);
	rq.more = more;
	buf_append(b, &rq, sizeof rq);
	buf_append(b, rel, rq.len);
}

/* Sends the calls in n->batch (count of them, the last with more = 0) and
 * waits for the hand's answers; intent and path are what the FUSE handlers
 * see meanwhile (notifier_owns). */
static void hand_send(struct notifier *n, enum notify_intent intent, const char *path,
		      size_t count, int *errs)
{
	pthread_mutex_lock(&n->lock);
	n->intent = intent;
	snprintf(n->path, sizeof n->path, "%s", path);
	pthread_mutex_unlock(&n->lock);
	bool ok = write_full(n->to_hand, n->batch.data, n->batch.len) &&
		  read_full(n->from_hand, errs, count * sizeof *errs);
	pthread_mutex_lock(&n->lock);
	n->intent = NOTIFY_NONE;
	n->path[0] = '\0';
	pthread_mutex_unlock(&n->lock);
	n->batch.len = 0;
	if (!ok)
		hand_gone(n);
}

/* The truncates gathered so far (IN_MODIFY), made by the hand in a row: one
 * round trip for them all. Their size is of no matter: fs/ops.c answers the
 * hand's truncate as a getattr, whatever the path. */
static void notifier_flush(struct notifier *n)
{
	size_t count = n->nbatch;
	n->nbatch = 0;
	if (count && !notifier_stopping(n) && n->to_hand >= 0) {
		for (size_t i = 0; i < count; i++)
			batch_add(&n->batch, NOTIFY_MODIFY, n->batch_paths[i], false, i + 1 < count);
		int errs[HAND_BATCH_MAX];
		hand_send(n, NOTIFY_MODIFY, "", count, errs);
		for (size_t i = 0; n->to_hand >= 0 && i < count; i++)
			call_failed(n, NOTIFY_MODIFY, n->batch_paths[i], errs[i]);
	}
	for (size_t i = 0; i < count; i++)
		free(n->batch_paths[i]);
}

/* IN_MODIFY on rel, made with the next flush. */
static void notifier_modify(struct notifier *n, const char *rel)
{
	n->batch_paths[n->nbatch++] = xstrdup(rel);
	if (n->nbatch == HAND_BATCH_MAX)
		notifier_flush(n);
}

/* An entry's IN_CREATE or IN_DELETE, made at once (after the truncates
 * gathered before it): the FUSE handlers must know which entry the hand's
 * lookup is for. dir: the entry is a directory. */
static void notifier_call(struct notifier *n, enum notify_intent intent, const char *rel,
			  bool dir)
{
	notifier_flush(n);
	if (notifier_stopping(n) || n->to_hand < 0)
		return;
	batch_add(&n->batch, intent, rel, dir, false);
	int e = EPIPE;
	hand_send(n, intent, rel, 1, &e);
	if (n->to_hand >= 0)
		call_failed(n, intent, rel, e);
}

/* --- one pass --- */

/* Is path inside (or) a directory born in this pass? Nobody can be watching
 * what is in it yet, so its files need no announcement. */
static bool pass_in_new_dir(const struct notifier_pass *p, const char *path)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", path);
	for (char *slash; (slash = strrchr(dir, '/'));) {
		*slash = '\0';
		if ((uintptr_t)hashmap_get(p->seen, dir) == NODE_BORN + 1)
			return true;
	}
	return false;
}

static void notifier_pass(struct notifier *n)
{
	struct orch *o = n->o;
	struct notifier_pass p = {.seen = hashmap_new()};
	/* Taken first: an error recorded during the pass is the next pass's. */
	uint64_t errors = __atomic_load_n(&o->errors, __ATOMIC_ACQUIRE);
	bool lost = false;
	uint64_t seq = events_each(&o->events, n->seq, pass_event, &p, &lost);
	for (size_t i = 0; i < p.nchanges; i++) {
		struct node_change *c = &p.changes[i];
		node_touched(c, pass_add, &p);
		free((char *)c->task);
		free((char *)c->track);
		free((char *)c->name);
	}
	free(p.changes);
	if (lost) {
		/* some are gone from memory: every shared document may have changed */
		struct node_change all = {(UINT64_C(1) << EVK_COUNT) - 1, 0, NULL, NULL, NULL};
		node_touched(&all, pass_add, &p);
	}
	if (errors != n->errors) {
		struct node_change err = {NODE_DEP_ERROR, 0, NULL, NULL, NULL};
		node_touched(&err, pass_add, &p);
	}
	/* entries first, so a watcher of a new directory's parent hears of it
	 * before anything else; entries that go, last */
	for (int how = NODE_BORN; how <= NODE_GONE; how++)
		for (size_t i = 0; i < p.n; i++) {
			struct pass_item *it = &p.items[i];
			if (it->how != (enum node_touch)how || !fs_kernel_may_watch(n->fs, it->path))
				continue;
			if (how == NODE_BORN) {
				notifier_call(n, NOTIFY_CREATE, it->path, it->dir);
				/* the call made the kernel hold the new entry; a watcher
				 * who wants it looks it up again */
				fs_let_go(n->fs, it->path);
			} else if (how == NODE_MODIFIED) {
				if (!pass_in_new_dir(&p, it->path))
					notifier_modify(n, it->path);
			} else {
				notifier_call(n, NOTIFY_DELETE, it->path, it->dir);
			}
		}
	notifier_flush(n);
	n->seq = seq;
	n->errors = errors;
	pthread_mutex_lock(&n->lock);
	n->announced = seq;
	pthread_cond_broadcast(&n->announced_cond);
	pthread_mutex_unlock(&n->lock);
	for (size_t i = 0; i < p.n; i++)
		free(p.items[i].path);
	free(p.items);
	hashmap_free(p.seen);
}

/* --- worker logs --- */

static void notifier_log_add(struct notifier *n, int id, const char *path, off_t size)
{
	if (n->nlogs == n->logs_cap) {
		n->logs_cap = n->logs_cap ? n->logs_cap * 2 : 16;
		n->logs = xrealloc(n->logs, n->logs_cap * sizeof *n->logs);
	}
	n->logs[n->nlogs++] = (struct notifier_log){id, xstrdup(path), size};
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
			if (fs_kernel_may_watch(n->fs, path))
				notifier_modify(n, path);
		}
		/* looked at once more after its writer ended: its last lines */
		if (running[i])
			n->logs[keep++] = *l;
		else
			free(l->path);
	}
	n->nlogs = keep;
	free(running);
	notifier_flush(n);
}

/* --- the thread --- */

static void *notifier_main(void *arg)
{
	struct notifier *n = arg;
	struct orch *o = n->o;
	pthread_setname_np(pthread_self(), "orchfs-notify");
	int64_t next_logs = time_mono_ns() + NOTIFIER_LOG_POLL_MS * 1000000LL;
	int64_t next_trim = next_logs, last_pass = 0, gap = NOTIFIER_PASS_GAP_MIN_NS;
	while (!notifier_stopping(n)) {
		if (events_committed(&o->events) > n->seq ||
		    __atomic_load_n(&o->errors, __ATOMIC_ACQUIRE) != n->errors) {
			int64_t since = time_mono_ns() - last_pass;
			if (since < NOTIFIER_PASS_GAP_MAX_NS) {
				gap = gap * 2 < NOTIFIER_PASS_GAP_MAX_NS ? gap * 2 : NOTIFIER_PASS_GAP_MAX_NS;
				if (gap > since)
					nanosleep(&(struct timespec){.tv_nsec = gap - since}, NULL);
			} else {
				gap = NOTIFIER_PASS_GAP_MIN_NS;
			}
			last_pass = time_mono_ns();
			notifier_pass(n);
		} else {
			/* until a commit, a failed write (orch_record_error wakes the
			 * events' waiters too), or the logs' turn */
			int64_t wait_ms = (next_logs - time_mono_ns()) / 1000000;
			if (wait_ms > 0)
				events_wait(&o->events, n->seq, (int)wait_ms);
		}
		if (time_mono_ns() >= next_logs) {
			notifier_poll_logs(n);
			next_logs = time_mono_ns() + NOTIFIER_LOG_POLL_MS * 1000000LL;
		}
		/* The daemon's one periodic thread besides the scheduler (which
		 * must not wait on the allocator): its turn also lets go the
		 * document fragments nobody has read for a while. */
		if (time_mono_ns() >= next_trim) {
			render_trim(o, DOC_CACHE_IDLE_S * 1000000000LL);
			next_trim = time_mono_ns() + 1000000000LL;
		}
	}
	return NULL;
}

void notifier_wait(struct notifier *n, uint64_t seq, int timeout_ms)
{
	if (!n)
		return;
	struct timespec until = time_mono_deadline(timeout_ms);
	pthread_mutex_lock(&n->lock);
	while (n->announced < seq && !notifier_stopping(n) &&
	       pthread_cond_timedwait(&n->announced_cond, &n->lock, &until) == 0)
		;
	pthread_mutex_unlock(&n->lock);
}

struct notifier *notifier_start(struct orch *o, struct fs *fs, const char *mount)
{
	struct notifier *n = xcalloc(1, sizeof *n);
	n->o = o;
	n->fs = fs;
	n->mount = xstrdup(mount);
	const char *debug = getenv("ORCHFS_DEBUG");
	n->debug = debug && *debug;
	pthread_mutex_init(&n->lock, NULL);
	cond_init_mono(&n->announced_cond);
	n->to_hand = n->from_hand = -1;
	if (!hand_start(n)) {
		pthread_cond_destroy(&n->announced_cond);
		pthread_mutex_destroy(&n->lock);
		free(n->mount);
		free(n);
		return NULL;
	}

	/* The baseline, taken before the FUSE loop runs: what exists now was never
	 * announced and needs no announcement. */
	n->errors = __atomic_load_n(&o->errors, __ATOMIC_ACQUIRE);
	n->seq = n->announced = events_committed(&o->events);
	pthread_mutex_lock(&o->lock);
	for (int i = 0; i < o->running; i++) {
		struct worker *w = o->run[i];
		struct stat st;
		if (w->log_path)
			notifier_log_add(n, w->id, w->log_path,
					 stat(w->log_path, &st) == 0 ? st.st_size : 0);
	}
	n->workers_seen = o->nworkers;
	pthread_mutex_unlock(&o->lock);

	/* Signals go to other threads: an interrupted call on the mount would
	 * leave its FUSE handler reading a path that has moved on. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&n->thread, NULL, notifier_main, n);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		orch_log(o, ORCH_LOG_ERROR, "cannot start the notifier: %s", strerror(rc));
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
	pthread_mutex_lock(&n->lock);
	pthread_cond_broadcast(&n->announced_cond);   /* nobody waits for a stopped notifier */
	pthread_mutex_unlock(&n->lock);
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
	for (size_t i = 0; i < n->nlogs; i++)
		free(n->logs[i].path);
	free(n->logs);
	for (size_t i = 0; i < n->nbatch; i++)
		free(n->batch_paths[i]);
	buf_free(&n->batch);
	pthread_cond_destroy(&n->announced_cond);
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
