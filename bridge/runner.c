/* runner: the local runner: workers started by the supervisor, in process
 * groups and cgroups (see runner.h). */
#include "runner.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "json.h"
#include "supervisor.h"

/* How soon the prep thread looks again at an ended worker's cgroup that its
 * killed processes have not left yet. */
#define RUNNER_RETRY_MS 50

/* What a start needs made first, made ahead for the next ids (ids are
 * handed out in order and never reused) by the prep thread, on another CPU. */
struct runner_prepared {
	int id;
	int logfd;      /* its log file, new, open for append */
	int cgroup;     /* its cgroup's directory, and cgroup.procs in it; -1: none */
	int procs;
};

/* A worker the supervisor had when this daemon connected. */
struct runner_adopted {
	int id;
	pid_t pid;
	int stdin_fd;
};

struct runner_job {
	int id;
	pid_t pid;
	int stdin_fd;   /* write end, O_NONBLOCK (the supervisor holds another) */
	int cgroup;     /* its cgroup's directory; -1: none */
};

/* A start waiting for the supervisor's answer. */
struct pending_start {
	int id;
	bool answered;
	int error;      /* 0: started */
	pid_t pid;
	int stdin_fd;
	char what[128];
	struct pending_start *next;
};

struct local {
	struct runner base;
	int cgroup_dir;            /* orchfs's cgroup of workers; -1: process groups only */
	char *cgroup_path;
	char *log_dir, *run_dir, *exe;
	int run_fd;
	pthread_mutex_t lock;      /* all that follows but the connection */
	pthread_cond_t wanted;     /* the prep thread: room ahead, a cgroup to remove, or stop */
	pthread_cond_t made;       /* a start waits for what is being made for it */
	pthread_t thread;
	bool started, stop;
	int next, making, taken;   /* the next id to make, the one being made (0: none), the last taken */
	struct runner_prepared ready[RUNNER_AHEAD];
	int nready;
	/* ended workers' cgroups, removed behind by the prep thread (once what
	 * they left running has gone) */
	int *retired;
	size_t nretired, retired_cap;
	/* The supervisor: the connection is sent on under send_lock (which
	 * also starts a supervisor) and read only by the reader thread, which
	 * answers starts and queues ends. */
	pthread_mutex_t send_lock;
	int sv;                    /* -1: none */
	bool sv_dead;              /* the reader saw its end */
	pthread_t reader;
	bool reading;
	pthread_cond_t answered;
	struct pending_start *pending;
	int *live;                 /* ids started and not ended */
	size_t nlive, live_cap;
	struct runner_adopted *adopted;   /* until adopt_end */
	size_t nadopted;
	int last_id;               /* the highest id any supervisor of this state started */
};

/* --- cgroups --- */

/* mountinfo's octal escapes (\040 for a space) undone in place */
static void unescape_octal(char *s)
{
	char *w = s;
	for (char *r = s; *r;) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 4;
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
}

bool runner_find_mount(const char *fstype, const char *point, char *out, size_t size)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false;
	char *line = NULL;
	size_t cap = 0;
	bool found = false;
	while (!found && getline(&line, &cap, f) > 0) {
		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS... - FSTYPE SOURCE SUPER */
		char *save, *field = strtok_r(line, " ", &save), *at = NULL;
		for (int i = 0; field && i < 4; i++) {
			field = strtok_r(NULL, " ", &save);
			if (i == 3)
				at = field;
		}
		while (field && strcmp(field, "-"))
			field = strtok_r(NULL, " ", &save);
		char *type = field ? strtok_r(NULL, " ", &save) : NULL;
		if (!at || !type || strcmp(type, fstype))
			continue;
		unescape_octal(at);
		found = !point || !strcmp(at, point);
		if (found)
			snprintf(out, size, "%s", at);
	}
	free(line);
	fclose(f);
	return found;
}

/* The daemon's own cgroup v2 path ("0::/path" in /proc/self/cgroup). */
static bool own_cgroup(char *out, size_t size)
{
	FILE *f = fopen("/proc/self/cgroup", "re");
	if (!f)
		return false;
	char line[4096];
	bool found = false;
	while (!found && fgets(line, sizeof line, f))
		if (!strncmp(line, "0::", 3)) {
			line[strcspn(line, "\n")] = '\0';
			const char *path = strcmp(line + 3, "/") ? line + 3 : "";
			found = strlen(path) < size;   /* longer: not one of ours to use */
			if (found)
				memcpy(out, path, strlen(path) + 1);
		}
	fclose(f);
	return found;
}

static int write_at(int dir, const char *file, const char *value)
{
	int fd = openat(dir, file, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t n = write(fd, value, strlen(value));
	int rc = n == (ssize_t)strlen(value) ? 0 : n < 0 ? -errno : -EIO;
	close(fd);
	return rc;
}

/* Kills what is in cgroup name (under dir) and removes it, waiting a moment
 * for the kill to land; false when it is still there. */
static bool cgroup_remove(int dir, const char *name, int wait_ms)
{
	int fd = openat(dir, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		(void)write_at(fd, "cgroup.kill", "1");
		close(fd);
	}
	for (int i = 0;; i++) {
		if (unlinkat(dir, name, AT_REMOVEDIR) == 0 || errno == ENOENT)
			return true;
		if (errno != EBUSY || i * 10 >= wait_ms)
			return false;
		nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
	}
}

/* Workers a crash left behind (their cgroups say they are ours), but for
 * the ones being re-adopted (keep, nkeep ids). */
static void cgroup_sweep(int dir, const struct runner_adopted *keep, size_t nkeep)
{
	int fd = dup(dir);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	rewinddir(d);   /* the copy shares the offset that an earlier sweep moved */
	for (struct dirent *e; (e = readdir(d));) {
		if (e->d_name[0] != 'w' || e->d_type != DT_DIR)
			continue;
		bool kept = false;
		for (size_t i = 0; i < nkeep && !kept; i++)
			kept = keep[i].id == atoi(e->d_name + 1);
		if (!kept)
			cgroup_remove(dir, e->d_name, 1000);
	}
	closedir(d);
}

/* --- made ahead, removed behind: the prep thread --- */

static int log_open(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	return fd < 0 ? -errno : fd;
}

static void prepared_close(struct runner_prepared *w)
{
	if (w->logfd >= 0)
		close(w->logfd);
	if (w->cgroup >= 0)
		close(w->cgroup);
	if (w->procs >= 0)
		close(w->procs);
	*w = (struct runner_prepared){.logfd = -1, .cgroup = -1, .procs = -1};
}

/* Worker id's log file (at path) and cgroup; 0, or -errno with what failed
 * in *what. */
static int prepare(const struct local *r, int id, const char *path, struct runner_prepared *out,
		   const char **what)
{
	*out = (struct runner_prepared){.id = id, .logfd = -1, .cgroup = -1, .procs = -1};
	out->logfd = log_open(path);
	if (out->logfd < 0) {
		*what = "its log";
		return out->logfd;
	}
	if (r->cgroup_dir < 0)
		return 0;
	char name[32];
	snprintf(name, sizeof name, "w%d", id);
	if (mkdirat(r->cgroup_dir, name, 0755) == 0 || errno == EEXIST)
		out->cgroup = openat(r->cgroup_dir, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (out->cgroup >= 0)
		out->procs = openat(out->cgroup, "cgroup.procs", O_WRONLY | O_CLOEXEC);
	if (out->procs < 0) {
		int e = -errno;
		prepared_close(out);
		unlinkat(r->cgroup_dir, name, AT_REMOVEDIR);
		*what = "its cgroup";
		return e;
	}
	return 0;
}

static void log_path_of(const struct local *r, int id, char *out, size_t size)
{
	snprintf(out, size, "%s/%d.log", r->log_dir, id);
}

/* What was made for a worker that will not start: removed. */
static void prepared_drop(const struct local *r, struct runner_prepared *w)
{
	char path[4200], name[32];
	log_path_of(r, w->id, path, sizeof path);
	unlink(path);
	snprintf(name, sizeof name, "w%d", w->id);
	prepared_close(w);
	if (r->cgroup_dir >= 0)
		unlinkat(r->cgroup_dir, name, AT_REMOVEDIR);
}

/* r->lock held, and dropped meanwhile: the cgroups of ended workers that
 * can go now (their last processes, killed, may take a moment) */
static void retired_remove(struct local *r)
{
	size_t n = r->nretired;
	int *ids = xmalloc((n ? n : 1) * sizeof *ids);
	memcpy(ids, r->retired, n * sizeof *ids);
	r->nretired = 0;
	pthread_mutex_unlock(&r->lock);
	size_t keep = 0;
	for (size_t i = 0; i < n; i++) {
		char name[32];
		snprintf(name, sizeof name, "w%d", ids[i]);
		if (!cgroup_remove(r->cgroup_dir, name, 0))
			ids[keep++] = ids[i];
	}
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < keep; i++) {
		ARRAY_GROW(r->retired, r->retired_cap, r->nretired + 1);
		r->retired[r->nretired++] = ids[i];
	}
	free(ids);
}

static void *prep_main(void *arg)
{
	struct local *r = arg;
	pthread_setname_np(pthread_self(), "orchfs-prep");
	pthread_mutex_lock(&r->lock);
	while (!r->stop) {
		bool failed = false;
		if (r->nretired)
			retired_remove(r);
		if (r->nready < RUNNER_AHEAD && r->next <= r->taken + RUNNER_AHEAD) {
			int id = r->next++;
			r->making = id;
			pthread_mutex_unlock(&r->lock);
			char path[4200];
			log_path_of(r, id, path, sizeof path);
			struct runner_prepared w;
			const char *what;
			failed = prepare(r, id, path, &w, &what) != 0;
			pthread_mutex_lock(&r->lock);
			r->making = 0;
			if (!failed)
				r->ready[r->nready++] = w;
			pthread_cond_broadcast(&r->made);
			if (!failed)
				continue;
		}
		/* nothing to make (or a full disk: starts find out for
		 * themselves); cgroups still busy are looked at again soon. The
		 * lock was let go above: a stop may have come meanwhile. */
		if (r->stop)
			break;
		if (r->nretired) {
			struct timespec until = time_mono_deadline(RUNNER_RETRY_MS);
			pthread_cond_timedwait(&r->wanted, &r->lock, &until);
		} else {
			pthread_cond_wait(&r->wanted, &r->lock);
		}
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* What was made ahead for id, or made now (-errno, and what failed). */
static int take(struct local *r, int id, const char *path, struct runner_prepared *out,
		const char **what)
{
	out->logfd = -1;
	pthread_mutex_lock(&r->lock);
	while (r->started && r->making == id)
		pthread_cond_wait(&r->made, &r->lock);
	for (int i = 0; i < r->nready; i++)
		if (r->ready[i].id == id) {
			*out = r->ready[i];
			r->ready[i] = r->ready[--r->nready];
			break;
		}
	if (id > r->taken)
		r->taken = id;
	if (r->next <= id)
		r->next = id + 1;   /* made here, below: the thread must not truncate it after */
	/* made for ids far behind the last taken: they will not come (a jump,
	 * as when ids were taken elsewhere), and would hold the room ahead */
	struct runner_prepared stale[RUNNER_AHEAD];
	int nstale = 0;
	for (int i = 0; i < r->nready;)
		if (r->ready[i].id < r->taken - RUNNER_AHEAD) {
			stale[nstale++] = r->ready[i];
			r->ready[i] = r->ready[--r->nready];
		} else {
			i++;
		}
	pthread_cond_signal(&r->wanted);
	pthread_mutex_unlock(&r->lock);
	for (int i = 0; i < nstale; i++)
		prepared_drop(r, &stale[i]);
	return out->logfd >= 0 ? 0 : prepare(r, id, path, out, what);
}

/* --- the supervisor's connection --- */

static void live_remove(struct local *r, int id)
{
	for (size_t i = 0; i < r->nlive; i++)
		if (r->live[i] == id) {
			r->live[i] = r->live[--r->nlive];
			return;
		}
}

static struct pending_start *pending_of(struct local *r, int id)
{
	for (struct pending_start *p = r->pending; p; p = p->next)
		if (p->id == id && !p->answered)
			return p;
	return NULL;
}

/* The reader thread: the supervisor's answers and the workers' ends. */
static void *reader_main(void *arg)
{
	struct local *r = arg;
	pthread_setname_np(pthread_self(), "orchfs-reader");
	/* between an exit and the next start, as the scheduler is */
	runner_raise_priority();
	for (;;) {
		struct sv_msg m;
		char *text;
		int fds[2];
		if (sv_recv(r->sv, &m, &text, fds))
			break;
		pthread_mutex_lock(&r->lock);
		struct pending_start *p = pending_of(r, m.id);
		if ((m.type == SV_STARTED || m.type == SV_FAILED) && p) {
			p->answered = true;
			p->error = m.type == SV_FAILED ? (m.a > 0 ? m.a : EIO) : 0;
			p->pid = m.a;
			p->stdin_fd = fds[0];
			fds[0] = -1;
			snprintf(p->what, sizeof p->what, "%s", text ? text : "");
			if (!p->error) {
				ARRAY_GROW(r->live, r->live_cap, r->nlive + 1);
				r->live[r->nlive++] = m.id;
			}
			pthread_cond_broadcast(&r->answered);
		} else if (m.type == SV_EXITED) {
			live_remove(r, m.id);
			runner_tell(&r->base, (struct runner_end){m.id, m.a, false, false});
		}
		pthread_mutex_unlock(&r->lock);
		free(text);
		for (int i = 0; i < 2; i++)
			if (fds[i] >= 0)
				close(fds[i]);
	}
	/* The supervisor has gone (killed: it never leaves a daemon): the ends
	 * of its workers can no longer be known. The next start starts another. */
	pthread_mutex_lock(&r->lock);
	r->sv_dead = true;
	for (size_t i = 0; i < r->nlive; i++)
		runner_tell(&r->base, (struct runner_end){r->live[i], 0, true, false});
	r->nlive = 0;
	for (struct pending_start *p = r->pending; p; p = p->next)
		if (!p->answered) {
			p->answered = true;
			p->error = ECONNRESET;
			snprintf(p->what, sizeof p->what, "the supervisor");
		}
	pthread_cond_broadcast(&r->answered);
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* Its socket's address, short whatever the state directory's length. */
static void socket_addr(const struct local *r, struct sockaddr_un *a)
{
	*a = (struct sockaddr_un){.sun_family = AF_UNIX};
	snprintf(a->sun_path, sizeof a->sun_path, "/proc/self/fd/%d/supervisor.sock", r->run_fd);
}

/* A daemon's hello: the workers the supervisor has are kept for adopt.
 * Before the reader runs. */
static int hello(struct local *r, int sock)
{
	int rc = sv_send(sock, SV_HELLO, 0, 0, NULL, 0, NULL, 0);
	for (;;) {
		struct sv_msg m;
		char *text;
		int fds[2];
		if (rc || (rc = sv_recv(sock, &m, &text, fds)))
			break;
		free(text);
		if (fds[1] >= 0)
			close(fds[1]);
		if (m.type == SV_READY) {
			if (m.a > r->last_id)
				r->last_id = m.a;
			return 0;
		}
		if (m.type == SV_ADOPT) {
			r->adopted = xrealloc(r->adopted, (r->nadopted + 1) * sizeof *r->adopted);
			r->adopted[r->nadopted++] = (struct runner_adopted){m.id, m.a, fds[0]};
		} else if (fds[0] >= 0) {
			close(fds[0]);
		}
	}
	for (size_t i = 0; i < r->nadopted; i++)
		if (r->adopted[i].stdin_fd >= 0)
			close(r->adopted[i].stdin_fd);
	r->nadopted = 0;
	return rc;
}

static int sv_connect(struct local *r)
{
	struct sockaddr_un a;
	socket_addr(r, &a);
	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return -errno;
	if (connect(sock, (struct sockaddr *)&a, sizeof a) < 0) {
		int e = -errno;
		close(sock);
		return e;
	}
	return sock;
}

/* Connected: the reader reads from now on. */
static void sv_attach(struct local *r, int sock)
{
	r->sv = sock;
	r->sv_dead = false;
	r->reading = pthread_create(&r->reader, NULL, reader_main, r) == 0;
	if (!r->reading) {
		close(sock);
		r->sv = -1;
	}
}

/* send_lock held: a supervisor to talk to, started if none is (lazily: a
 * daemon that starts no worker needs none). 0, or -errno. */
static int sv_ensure(struct local *r)
{
	if (r->sv >= 0 && !r->sv_dead)
		return 0;
	if (r->reading) {
		pthread_join(r->reader, NULL);
		r->reading = false;
	}
	if (r->sv >= 0)
		close(r->sv);
	r->sv = -1;
	struct sockaddr_un a;
	socket_addr(r, &a);
	int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listener < 0)
		return -errno;
	/* what is there is a dead one's (a live one was connected to at create) */
	unlinkat(r->run_fd, "supervisor.sock", 0);
	int rc = 0;
	if (bind(listener, (struct sockaddr *)&a, sizeof a) < 0 || listen(listener, 8) < 0)
		rc = -errno;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, listener, 3);
	char *const argv[] = {(char *)"orchfs", (char *)SUPERVISOR_ARG, r->run_dir, NULL};
	char *const envp[] = {NULL};
	pid_t pid = 0;
	if (!rc)
		rc = -runner_spawn_cmd(&pid, r->exe, false, &fa, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	close(listener);
	int wstatus = 0;
	/* it forks its supervisor off and exits at once */
	if (!rc && (waitpid(pid, &wstatus, 0) != pid || !WIFEXITED(wstatus) ||
		    WEXITSTATUS(wstatus)))
		rc = -ECHILD;
	int sock = rc ? rc : sv_connect(r);
	if (sock < 0)
		return sock;
	rc = hello(r, sock);
	if (rc) {
		close(sock);
		return rc;
	}
	sv_attach(r, sock);
	return r->sv >= 0 ? 0 : -EAGAIN;
}

/* The exit the supervisor recorded for id while no daemon was there. */
static bool exit_recorded(const struct local *r, int id, int *wstatus)
{
	int fd = openat(r->run_fd, "exits", O_RDONLY | O_CLOEXEC);
	struct sv_exit rec = {0};
	ssize_t n = fd >= 0 ? pread(fd, &rec, sizeof rec,
				    (off_t)(id % SUPERVISOR_EXIT_SLOTS) * (off_t)sizeof rec)
			    : -1;
	if (fd >= 0)
		close(fd);
	if (n != (ssize_t)sizeof rec || rec.id != id)
		return false;
	*wstatus = rec.wstatus;
	return true;
}

/* The highest id in the record of exits (a supervisor that has exited
 * leaves only that). */
static int exits_last_id(int run_fd)
{
	int fd = openat(run_fd, "exits", O_RDONLY | O_CLOEXEC), last = 0;
	struct sv_exit *recs = xmalloc(SUPERVISOR_EXIT_SLOTS * sizeof *recs);
	ssize_t n = fd >= 0 ? pread(fd, recs, SUPERVISOR_EXIT_SLOTS * sizeof *recs, 0) : -1;
	for (ssize_t i = 0; i < n / (ssize_t)sizeof *recs; i++)
		if (recs[i].id > last)
			last = recs[i].id;
	free(recs);
	if (fd >= 0)
		close(fd);
	return last;
}

/* --- the runner's operations --- */

static struct local *local_of(struct runner *r)
{
	return (struct local *)r;
}

/* One start of a batch: what was made for it, then the supervisor's answer. */
struct start {
	const struct runner_spec *spec;
	struct runner_prepared made;
	struct pending_start answer;
	int error;              /* errno, before or after asking */
	const char *what;       /* what failed before asking */
};

/* Asks the supervisor for every start at once, then waits for all the
 * answers: a burst of starts is one round trip, not one each. */
static void sv_spawn(struct local *r, struct start *s, size_t n)
{
	struct buf payload = BUF_INIT;
	pthread_mutex_lock(&r->send_lock);
	int rc = sv_ensure(r);
	for (size_t i = 0; i < n; i++) {
		struct start *x = &s[i];
		x->answer = (struct pending_start){.id = x->spec->id, .stdin_fd = -1};
		if (x->error)
			continue;
		if (rc) {
			x->error = -rc;
			x->what = "the supervisor";
			continue;
		}
		const struct runner_spec *spec = x->spec;
		buf_reset(&payload);
		buf_append(&payload, spec->command, strlen(spec->command) + 1);
		const char *cwd = spec->cwd ? spec->cwd : "";
		buf_append(&payload, cwd, strlen(cwd) + 1);
		for (char *const *e = spec->envp; e && *e; e++)
			buf_append(&payload, *e, strlen(*e) + 1);
		pthread_mutex_lock(&r->lock);
		x->answer.next = r->pending;
		r->pending = &x->answer;
		pthread_mutex_unlock(&r->lock);
		int fds[2] = {x->made.logfd, x->made.procs};
		int sent = payload.len > SV_MSG_MAX ? -E2BIG
			: sv_send(r->sv, SV_SPAWN, spec->id, 0, payload.data, payload.len, fds,
				  x->made.procs >= 0 ? 2 : 1);
		if (sent) {
			pthread_mutex_lock(&r->lock);
			x->answer.answered = true;
			x->answer.error = -sent;
			snprintf(x->answer.what, sizeof x->answer.what, "the supervisor");
			pthread_mutex_unlock(&r->lock);
		}
	}
	pthread_mutex_unlock(&r->send_lock);
	buf_free(&payload);
	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < n; i++) {
		struct pending_start *p = &s[i].answer;
		if (s[i].error)
			continue;
		while (!p->answered)
			pthread_cond_wait(&r->answered, &r->lock);
		for (struct pending_start **at = &r->pending; *at; at = &(*at)->next)
			if (*at == p) {
				*at = p->next;
				break;
			}
		s[i].error = p->error;
		s[i].what = p->what;
	}
	pthread_mutex_unlock(&r->lock);
}

static void retire(struct local *r, int id);

/* The job, or the error that says why there is none. */
static int start_end(struct local *r, struct start *x, struct runner_job **out,
		     struct orch_err *err)
{
	const struct runner_spec *spec = x->spec;
	int cgroup = x->made.cgroup;
	x->made.cgroup = -1;   /* the worker's from now on */
	prepared_close(&x->made);
	*out = NULL;
	if (x->error) {
		if (cgroup >= 0) {
			close(cgroup);
			retire(r, spec->id);
		}
		int e = x->error;
		return err_set(err, e == ENOENT && spec->cwd ? ENOENT : EIO,
			       "cannot start worker %d%s%s: %s%s%s", spec->id, spec->cwd ? " in " : "",
			       spec->cwd ? spec->cwd : "", x->what, x->what[0] ? ": " : "", strerror(e));
	}
	struct runner_job *job = xmalloc(sizeof *job);
	*job = (struct runner_job){spec->id, x->answer.pid, x->answer.stdin_fd, cgroup};
	*out = job;
	return 0;
}

static int local_start(struct runner *base, const struct runner_spec *specs, size_t n,
			     struct runner_job **out, int *rc, struct orch_err *err)
{
	struct local *r = local_of(base);
	struct start *s = xcalloc(n ? n : 1, sizeof *s);
	for (size_t i = 0; i < n; i++) {
		s[i].spec = &specs[i];
		int made = take(r, specs[i].id, specs[i].log_path, &s[i].made, &s[i].what);
		if (made) {
			s[i].error = -made;
			s[i].what = s[i].what ? s[i].what : "";
		}
	}
	sv_spawn(r, s, n);
	int failed = 0;
	for (size_t i = 0; i < n; i++)
		if ((rc[i] = start_end(r, &s[i], &out[i], &err[i])))
			failed++;
	free(s);
	return failed;
}

/* A small file under dir into text; false when it cannot be read. */
static bool read_at(int dir, const char *file, char *text, size_t size)
{
	int fd = openat(dir, file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, text, size - 1);
	close(fd);
	if (n <= 0)
		return false;
	text[n] = '\0';
	return true;
}

/* usage_usec of the cgroup's cpu.stat; -1 when it cannot be read */
static int64_t cgroup_cpu_us(int cgroup)
{
	char text[512];
	int64_t us = -1;
	const char *at = read_at(cgroup, "cpu.stat", text, sizeof text) ? strstr(text, "usage_usec ")
									 : NULL;
	if (at)
		sscanf(at, "usage_usec %" SCNd64, &us);
	return us;
}

/* Worker id's cgroup goes, with anything still in it (the prep thread
 * does it, once its processes have left). */
static void retire(struct local *r, int id)
{
	if (r->cgroup_dir < 0)
		return;
	pthread_mutex_lock(&r->lock);
	ARRAY_GROW(r->retired, r->retired_cap, r->nretired + 1);
	r->retired[r->nretired++] = id;
	pthread_cond_signal(&r->wanted);
	pthread_mutex_unlock(&r->lock);
	if (!r->started) {   /* no thread to do it */
		char name[32];
		snprintf(name, sizeof name, "w%d", id);
		cgroup_remove(r->cgroup_dir, name, 0);
	}
}

/* sig to id's process group, by the supervisor: it alone knows whether the
 * group's leader has been reaped, and its pid someone else's */
static int group_signal(struct local *r, int id, int sig)
{
	pthread_mutex_lock(&r->send_lock);
	int rc = r->sv >= 0 && !r->sv_dead ? sv_send(r->sv, SV_SIGNAL, id, sig, NULL, 0, NULL, 0)
					   : -ESRCH;
	pthread_mutex_unlock(&r->send_lock);
	return rc;
}

static int cgroup_signal(int cgroup, int sig)
{
	if (sig == SIGKILL)
		return write_at(cgroup, "cgroup.kill", "1");
	int fd = openat(cgroup, "cgroup.procs", O_RDONLY | O_CLOEXEC);
	FILE *f = fd >= 0 ? fdopen(fd, "re") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	int rc = -ESRCH;
	for (long pid; fscanf(f, "%ld", &pid) == 1;)
		if (kill((pid_t)pid, sig) == 0)
			rc = 0;
	fclose(f);
	return rc;
}

static int local_signal(struct runner *base, struct runner_job *job, int sig)
{
	return job->cgroup >= 0 ? cgroup_signal(job->cgroup, sig)
				: group_signal(local_of(base), job->id, sig);
}

static int local_freeze(struct runner *base, struct runner_job *job, bool frozen)
{
	if (job->cgroup < 0)
		return group_signal(local_of(base), job->id, frozen ? SIGSTOP : SIGCONT);
	return write_at(job->cgroup, "cgroup.freeze", frozen ? "1" : "0");
}

static ssize_t local_write_stdin(struct runner *base, struct runner_job *job, const void *data,
				 size_t len)
{
	(void)base;
	if (job->stdin_fd < 0)
		return -EPIPE;
	ssize_t n = write(job->stdin_fd, data, len);
	return n < 0 ? -errno : n;
}

/* memory.peak (Linux 5.19) of a cgroup with the memory controller; -1 */
static int64_t cgroup_memory_peak(int cgroup)
{
	char text[32];
	return read_at(cgroup, "memory.peak", text, sizeof text) ? strtoll(text, NULL, 10) : -1;
}

/* What it left running goes with it, as a container's does, then its
 * cgroup: by the prep thread, off the scheduler's way. */
static void local_release(struct runner *base, struct runner_job *job, struct runner_usage *used)
{
	struct local *r = local_of(base);
	struct runner_usage u = {-1, -1};
	if (job->cgroup >= 0) {
		u.cpu_us = cgroup_cpu_us(job->cgroup);
		u.memory_peak = cgroup_memory_peak(job->cgroup);
		close(job->cgroup);
		retire(r, job->id);
	}
	if (used)
		*used = u;
	if (job->stdin_fd >= 0)
		close(job->stdin_fd);
	free(job);
}

static void local_forget(struct runner *base, struct runner_job *job)
{
	(void)base;
	if (job->cgroup >= 0)
		close(job->cgroup);
	if (job->stdin_fd >= 0)
		close(job->stdin_fd);
	free(job);
}

static enum runner_found local_adopt(struct runner *base, int id, const char *ref,
				     struct runner_job **out, int *wstatus)
{
	struct local *r = local_of(base);
	*out = NULL;
	for (size_t i = 0; i < r->nadopted; i++) {
		struct runner_adopted *a = &r->adopted[i];
		if (a->id != id)
			continue;
		struct runner_job *job = xmalloc(sizeof *job);
		char name[32];
		snprintf(name, sizeof name, "w%d", id);
		*job = (struct runner_job){id, a->pid, a->stdin_fd, -1};
		if (r->cgroup_dir >= 0)
			job->cgroup = openat(r->cgroup_dir, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		*a = r->adopted[--r->nadopted];
		pthread_mutex_lock(&r->lock);
		ARRAY_GROW(r->live, r->live_cap, r->nlive + 1);
		r->live[r->nlive++] = id;
		pthread_mutex_unlock(&r->lock);
		*out = job;
		return RUNNER_RUNNING;
	}
	return exit_recorded(r, id, wstatus) ? RUNNER_ENDED : RUNNER_GONE;
}

/* Workers the store does not know (it lost their start to a crash): killed,
 * as the cgroups of unknown workers are. */
static void local_adopt_end(struct runner *base)
{
	struct local *r = local_of(base);
	for (size_t i = 0; i < r->nadopted; i++) {
		struct runner_adopted *a = &r->adopted[i];
		char name[32];
		snprintf(name, sizeof name, "w%d", a->id);
		int cgroup = r->cgroup_dir >= 0 ? openat(r->cgroup_dir, name,
							 O_RDONLY | O_DIRECTORY | O_CLOEXEC)
						: -1;
		if (cgroup >= 0) {
			cgroup_signal(cgroup, SIGKILL);
			close(cgroup);
			retire(r, a->id);
		} else {
			group_signal(r, a->id, SIGKILL);
		}
		if (a->stdin_fd >= 0)
			close(a->stdin_fd);
	}
	free(r->adopted);
	r->adopted = NULL;
	r->nadopted = 0;
}

static bool local_queued(struct runner *base, const struct runner_job *job)
{
	return false;
}

static const char *local_ref(const struct runner_job *job)
{
	return NULL;
}

static void local_describe(struct runner *base, const struct runner_job *job, const char *ref,
			   struct buf *b)
{
	char path[4200];
	jw_lit(b, ",\"cgroup\":");
	if (job && runner_cgroup_path(base, job->id, path, sizeof path))
		jw_str(b, path);
	else
		jw_lit(b, "null");
}

static void local_destroy(struct runner *base, bool keep)
{
	struct local *r = local_of(base);
	if (r->started) {
		pthread_mutex_lock(&r->lock);
		r->stop = true;
		pthread_cond_broadcast(&r->wanted);
		pthread_mutex_unlock(&r->lock);
		pthread_join(r->thread, NULL);
		r->started = false;
	}
	/* what was made ahead and not taken goes */
	for (int i = 0; i < r->nready; i++)
		prepared_drop(r, &r->ready[i]);
	r->nready = 0;
	if (!keep) {
		local_adopt_end(base);
	} else {
		for (size_t i = 0; i < r->nadopted; i++)
			if (r->adopted[i].stdin_fd >= 0)
				close(r->adopted[i].stdin_fd);
		free(r->adopted);
	}
	/* without keep, what still runs is killed: by its cgroup, or its
	 * process group (the supervisor exits once they are reaped) */
	if (!keep && r->cgroup_dir < 0) {
		pthread_mutex_lock(&r->lock);
		size_t n = r->nlive;
		int *ids = xmalloc((n ? n : 1) * sizeof *ids);
		if (n)
			memcpy(ids, r->live, n * sizeof *ids);
		pthread_mutex_unlock(&r->lock);
		for (size_t i = 0; i < n; i++)
			group_signal(r, ids[i], SIGKILL);
		free(ids);
	}
	/* the supervisor sees this daemon go: it exits once its workers have */
	if (r->sv >= 0)
		shutdown(r->sv, SHUT_RDWR);
	if (r->reading)
		pthread_join(r->reader, NULL);
	if (r->sv >= 0)
		close(r->sv);
	if (r->cgroup_dir >= 0) {
		for (size_t i = 0; i < r->nretired; i++) {
			char name[32];
			snprintf(name, sizeof name, "w%d", r->retired[i]);
			cgroup_remove(r->cgroup_dir, name, 1000);
		}
		if (!keep)
			cgroup_sweep(r->cgroup_dir, NULL, 0);
		close(r->cgroup_dir);
		/* busy while workers are left running; else, if it will not go,
		 * the next start sweeps it */
		rmdir(r->cgroup_path);
	}
	for (struct pending_start *p = r->pending; p; p = p->next)
		if (p->stdin_fd >= 0)
			close(p->stdin_fd);
	runner_base_fini(&r->base);
	if (r->run_fd >= 0)
		close(r->run_fd);
	free(r->cgroup_path);
	free(r->log_dir);
	free(r->run_dir);
	free(r->exe);
	free(r->retired);
	free(r->live);
	pthread_mutex_destroy(&r->lock);
	pthread_mutex_destroy(&r->send_lock);
	pthread_cond_destroy(&r->wanted);
	pthread_cond_destroy(&r->made);
	pthread_cond_destroy(&r->answered);
	free(r);
}

static const struct runner_ops local_ops = {
	.name = "local",
	.start = local_start,
	.signal = local_signal,
	.freeze = local_freeze,
	.write_stdin = local_write_stdin,
	.release = local_release,
	.forget = local_forget,
	.adopt = local_adopt,
	.adopt_end = local_adopt_end,
	.queued = local_queued,
	.ref = local_ref,
	.describe = local_describe,
	.destroy = local_destroy,
};

int runner_base_init(struct runner *r, const struct runner_ops *ops)
{
	*r = (struct runner){.ops = ops, .event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
	if (r->event_fd < 0)
		return -errno;
	pthread_mutex_init(&r->ends_lock, NULL);
	return 0;
}

void runner_base_fini(struct runner *r)
{
	close(r->event_fd);
	free(r->ends);
	pthread_mutex_destroy(&r->ends_lock);
}

void runner_tell(struct runner *r, struct runner_end end)
{
	pthread_mutex_lock(&r->ends_lock);
	ARRAY_GROW(r->ends, r->ends_cap, r->nends + 1);
	r->ends[r->nends++] = end;
	pthread_mutex_unlock(&r->ends_lock);
	uint64_t one = 1;
	(void)!write(r->event_fd, &one, sizeof one);
}

size_t runner_collect(struct runner *r, struct runner_end **out)
{
	uint64_t drain;
	(void)!read(r->event_fd, &drain, sizeof drain);
	pthread_mutex_lock(&r->ends_lock);
	size_t n = r->nends;
	*out = r->ends;
	r->ends = NULL;
	r->nends = r->ends_cap = 0;
	pthread_mutex_unlock(&r->ends_lock);
	return n;
}

int runner_spawn_cmd(pid_t *pid, const char *path, bool search,
		     const posix_spawn_file_actions_t *fa, char *const argv[], char *const envp[])
{
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	sigset_t none;
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
	int rc = search ? posix_spawnp(pid, path, fa, &attr, argv, envp)
			: posix_spawn(pid, path, fa, &attr, argv, envp);
	posix_spawnattr_destroy(&attr);
	return rc;
}

void runner_raise_priority(void)
{
	struct sched_param rt = {.sched_priority = 1}, normal = {0};
	if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &rt) != 0 &&
	    sched_setscheduler(0, SCHED_OTHER | SCHED_RESET_ON_FORK, &normal) == 0)
		(void)setpriority(PRIO_PROCESS, (id_t)gettid(), -5);
}

const char *runner_kind_name(enum runner_kind k)
{
	return k == RUNNER_LOCAL ? "local" : k == RUNNER_SLURM ? "slurm" : NULL;
}

pid_t runner_job_pid(const struct runner_job *job)
{
	return job ? job->pid : 0;
}

/* Where workers' cgroups go: under orchfs's own, named after the state; or
 * why there is none. */
static const char *cgroup_find(enum runner_isolation want, const char *state_key, char *path,
			       size_t size, int *dir)
{
	char mnt[2048], own[2048];
	*dir = -1;
	if (want == ISOLATION_PGROUP)
		return "process groups asked for";
	if (!runner_find_mount("cgroup2", NULL, mnt, sizeof mnt))   /* the unified hierarchy */
		return "no cgroup v2 hierarchy is mounted";
	if (!own_cgroup(own, sizeof own))
		return "the daemon's cgroup v2 is unknown";
	snprintf(path, size, "%s%s/orchfs-%s", mnt, own, state_key);
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		return strerror(errno);
	*dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*dir < 0)
		return strerror(errno);
	/* cgroup.kill came with Linux 5.14, after cgroup.freeze (5.2) */
	if (faccessat(*dir, "cgroup.kill", W_OK, 0) < 0) {
		close(*dir);
		*dir = -1;
		return "the kernel has no cgroup.kill";
	}
	return NULL;
}

int runner_local_create(enum runner_isolation want, const char *state_key, const char *run_dir,
			const char *log_dir, const char *exe, int first_id, struct runner **out,
			struct orch_err *err)
{
	*out = NULL;
	char path[4200];
	int dir;
	const char *why = cgroup_find(want, state_key, path, sizeof path, &dir);
	if (why && want == ISOLATION_CGROUP)
		return err_set(err, EOPNOTSUPP, "--isolation cgroup: %s", why);
	struct local *r = xmalloc(sizeof *r);
	int run_fd = open(run_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int e = run_fd < 0 ? errno : -runner_base_init(&r->base, &local_ops);
	if (e) {
		if (dir >= 0)
			close(dir);
		if (run_fd >= 0)
			close(run_fd);
		free(r);
		return err_set(err, EIO, "cannot open %s: %s", run_dir, strerror(e));
	}
	struct runner base = r->base;
	*r = (struct local){.base = base, .cgroup_dir = dir,
			    .cgroup_path = dir >= 0 ? xstrdup(path) : NULL,
			    .log_dir = xstrdup(log_dir), .run_dir = xstrdup(run_dir),
			    .exe = xstrdup(exe), .run_fd = run_fd, .next = first_id,
			    .taken = first_id - 1, .sv = -1};
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->send_lock, NULL);
	cond_init_mono(&r->wanted);
	pthread_cond_init(&r->made, NULL);
	pthread_cond_init(&r->answered, NULL);
	/* the memory controller, where the daemon's cgroup has it to give
	 * (systemd's Delegate=), counts each worker's peak */
	if (dir >= 0)
		(void)write_at(dir, "cgroup.subtree_control", "+memory");
	/* a daemon before this one left workers: they wait for adopt */
	int sock = sv_connect(r);
	if (sock >= 0 && hello(r, sock) == 0)
		sv_attach(r, sock);
	else if (sock >= 0)
		close(sock);
	/* Ids are never reused, even those a crash lost from the store before
	 * their processes started: the next is past every one a supervisor
	 * of this state started */
	int last = exits_last_id(run_fd);
	if (last > r->last_id)
		r->last_id = last;
	for (size_t i = 0; i < r->nadopted; i++)
		if (r->adopted[i].id > r->last_id)
			r->last_id = r->adopted[i].id;
	if (r->last_id >= r->next)
		r->next = r->last_id + 1;
	r->taken = r->next - 1;
	/* cgroups of workers nobody has any more: a crash's, with the supervisor */
	if (dir >= 0)
		cgroup_sweep(dir, r->adopted, r->nadopted);
	/* without it, each start makes its own */
	r->started = pthread_create(&r->thread, NULL, prep_main, r) == 0;
	*out = &r->base;
	return 0;
}

void runner_local_skip(struct runner *base, int id)
{
	struct local *r = local_of(base);
	struct runner_prepared w;
	const char *what;
	char path[4200];
	log_path_of(r, id, path, sizeof path);
	if (take(r, id, path, &w, &what) == 0) {
		if (w.cgroup >= 0)
			retire(r, id);
		prepared_close(&w);
	}
}

int runner_local_last_id(const struct runner *base)
{
	return ((const struct local *)base)->last_id;
}

const char *runner_isolation(const struct runner *base)
{
	return ((const struct local *)base)->cgroup_dir >= 0 ? "cgroup" : "process-group";
}

bool runner_cgroup_path(const struct runner *base, int id, char *out, size_t size)
{
	const struct local *r = (const struct local *)base;
	if (r->cgroup_dir < 0)
		return false;
	snprintf(out, size, "%s/w%d", r->cgroup_path, id);
	return true;
}
