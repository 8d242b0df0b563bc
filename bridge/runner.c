/* runner: worker processes, in process groups and cgroups (see runner.h). */
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
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "json.h"

/* The child runs on a stack of its own until it execs: a few system calls. */
#define SPAWN_STACK (64 * 1024)
/* How soon the prep thread looks again at an ended worker's cgroup that its
 * killed processes have not left yet. */
#define RUNNER_RETRY_MS 50

/* --- cgroups --- */

/* Where cgroup v2 is mounted (the unified hierarchy), from mountinfo. */
static bool cgroup2_mount(char *out, size_t size)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false;
	char line[4096];
	bool found = false;
	while (!found && fgets(line, sizeof line, f)) {
		/* id parent major:minor root mountpoint options ... - fstype source ... */
		char mnt[2048], fstype[64];
		const char *dash = strstr(line, " - ");
		if (dash && sscanf(dash, " - %63s", fstype) == 1 && !strcmp(fstype, "cgroup2") &&
		    sscanf(line, "%*s %*s %*s %*s %2047s", mnt) == 1) {
			snprintf(out, size, "%s", mnt);
			found = true;
		}
	}
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

/* Workers a crash left behind: their cgroups say they are ours. */
static void cgroup_sweep(int dir)
{
	int fd = dup(dir);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return;
	}
	rewinddir(d);   /* the copy shares the offset that an earlier sweep moved */
	for (struct dirent *e; (e = readdir(d));)
		if (e->d_name[0] == 'w' && e->d_type == DT_DIR)
			cgroup_remove(dir, e->d_name, 1000);
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
static int prepare(const struct runner *r, int id, const char *path, struct runner_prepared *out,
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

static void log_path_of(const struct runner *r, int id, char *out, size_t size)
{
	snprintf(out, size, "%s/%d.log", r->log_dir, id);
}

/* What was made for a worker that will not start: removed. */
static void prepared_drop(const struct runner *r, struct runner_prepared *w)
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
static void retired_remove(struct runner *r)
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
	struct runner *r = arg;
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
static int take(struct runner *r, int id, const char *path, struct runner_prepared *out,
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

int runner_init(struct runner *r, enum runner_isolation want, const char *state_key,
		const char *log_dir, int first_id, struct orch_err *err)
{
	*r = (struct runner){.cgroup_dir = -1, .log_dir = xstrdup(log_dir), .next = first_id,
			     .taken = first_id - 1};
	pthread_mutex_init(&r->lock, NULL);
	cond_init_mono(&r->wanted);
	pthread_cond_init(&r->made, NULL);
	char mnt[2048], own[2048], path[sizeof mnt + sizeof own + 64];
	const char *why = NULL;
	if (want == ISOLATION_PGROUP)
		why = "process groups asked for";
	else if (!cgroup2_mount(mnt, sizeof mnt))
		why = "no cgroup v2 hierarchy is mounted";
	else if (!own_cgroup(own, sizeof own))
		why = "the daemon's cgroup v2 is unknown";
	if (!why) {
		snprintf(path, sizeof path, "%s%s/orchfs-%s", mnt, own, state_key);
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			why = strerror(errno);
	}
	int dir = why ? -1 : open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!why && dir < 0)
		why = strerror(errno);
	/* cgroup.kill came with Linux 5.14, after cgroup.freeze (5.2) */
	if (!why && faccessat(dir, "cgroup.kill", W_OK, 0) < 0)
		why = "the kernel has no cgroup.kill";
	if (why && dir >= 0)
		close(dir);
	if (why && want == ISOLATION_CGROUP) {
		runner_fini(r);
		return err_set(err, EOPNOTSUPP, "--isolation cgroup: %s", why);
	}
	if (!why) {
		cgroup_sweep(dir);
		r->cgroup_dir = dir;
		r->cgroup_path = xstrdup(path);
	}
	/* without it, each start makes its own */
	r->started = pthread_create(&r->thread, NULL, prep_main, r) == 0;
	return 0;
}

void runner_fini(struct runner *r)
{
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
	if (r->cgroup_dir >= 0) {
		for (size_t i = 0; i < r->nretired; i++) {
			char name[32];
			snprintf(name, sizeof name, "w%d", r->retired[i]);
			cgroup_remove(r->cgroup_dir, name, 1000);
		}
		cgroup_sweep(r->cgroup_dir);
		close(r->cgroup_dir);
		rmdir(r->cgroup_path);   /* if it will not go, the next start sweeps it */
	}
	free(r->cgroup_path);
	free(r->log_dir);
	free(r->retired);
	pthread_mutex_destroy(&r->lock);
	pthread_cond_destroy(&r->wanted);
	pthread_cond_destroy(&r->made);
	*r = (struct runner){.cgroup_dir = -1};
}

const char *runner_isolation(const struct runner *r)
{
	return r->cgroup_dir >= 0 ? "cgroup" : "process-group";
}

bool runner_cgroup_path(const struct runner *r, int id, char *out, size_t size)
{
	if (r->cgroup_dir < 0)
		return false;
	snprintf(out, size, "%s/w%d", r->cgroup_path, id);
	return true;
}

/* --- the process --- */

struct spawn_args {
	const char *command, *cwd;
	char *const *envp;
	int stdin_fd, logfd, procs_fd;
	int error;                 /* set by the child when it fails before exec */
	const char *failed;        /* what failed */
};

/* The child: it shares the daemon's memory until it execs (CLONE_VM), with
 * every signal blocked, so only system calls here, nothing that takes a lock
 * or allocates. */
static int spawn_child(void *arg)
{
	struct spawn_args *a = arg;
	/* handlers of the daemon's must not run in here: defaults, as the
	 * worker will have them */
	struct sigaction dfl = {.sa_handler = SIG_DFL};
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			sigaction(sig, &dfl, NULL);
	if (a->procs_fd >= 0 && write(a->procs_fd, "0", 1) != 1) {
		a->failed = "joining its cgroup";
		goto fail;
	}
	if (setpgid(0, 0) < 0) {
		a->failed = "setpgid";
		goto fail;
	}
	/* dup2 clears close-on-exec on the copies: only 0, 1 and 2 stay */
	if (dup2(a->stdin_fd, 0) < 0 || dup2(a->logfd, 1) < 0 || dup2(a->logfd, 2) < 0) {
		a->failed = "dup2";
		goto fail;
	}
	if (a->cwd && chdir(a->cwd) < 0) {
		a->failed = "chdir";
		goto fail;
	}
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	char *const argv[] = {(char *)"sh", (char *)"-c", (char *)a->command, NULL};
	execve("/bin/sh", argv, a->envp);
	a->failed = "exec /bin/sh";
fail:
	a->error = errno ? errno : EIO;
	_exit(127);
}

int runner_start(struct runner *r, int id, const char *command, const char *cwd,
		 char *const envp[], const char *log_path, struct runner_proc *out,
		 struct orch_err *err)
{
	*out = (struct runner_proc){.id = id, .pid = -1, .pidfd = -1, .stdin_fd = -1, .cgroup = -1};
	struct runner_prepared w;
	const char *what = NULL;
	int rc = take(r, id, log_path, &w, &what);
	if (rc)
		return err_set(err, EIO, "cannot make %s for worker %d: %s", what, id, strerror(-rc));
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		rc = errno;
		prepared_close(&w);
		return err_set(err, EIO, "pipe: %s", strerror(rc));
	}
	struct spawn_args a = {command, cwd, envp, pipefd[0], w.logfd, w.procs, 0, NULL};
	void *stack = mmap(NULL, SPAWN_STACK, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	pid_t pid = -1;
	int pidfd = -1, e = 0;
	if (stack == MAP_FAILED) {
		e = errno;
	} else {
		/* every signal blocked around the clone: none may run a handler
		 * of ours in the child, on our memory */
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		pid = clone(spawn_child, (char *)stack + SPAWN_STACK,
			    CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &a, &pidfd);
		e = errno;
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		munmap(stack, SPAWN_STACK);
	}
	close(pipefd[0]);
	int cgroup = w.cgroup;
	w.cgroup = -1;   /* the worker's from now on */
	prepared_close(&w);
	if (pid > 0 && a.error) {
		/* it failed before exec and has exited: reaped here */
		waitpid(pid, NULL, 0);
		close(pidfd);
		e = a.error;
		pid = -1;
	}
	if (pid < 0) {
		close(pipefd[1]);
		if (cgroup >= 0) {
			close(cgroup);
			runner_retire(r, id);
		}
		return err_set(err, e == ENOENT && cwd ? ENOENT : EIO, "cannot start worker%s%s: %s%s%s",
			       cwd ? " in " : "", cwd ? cwd : "", a.failed ? a.failed : "",
			       a.failed ? ": " : "", strerror(e));
	}
	fcntl(pipefd[1], F_SETFL, O_NONBLOCK);
	out->pid = pid;
	out->pidfd = pidfd;
	out->stdin_fd = pipefd[1];
	out->cgroup = cgroup;
	return 0;
}

int runner_signal(const struct runner_proc *p, int sig)
{
	if (p->cgroup < 0)
		return kill(-p->pid, sig) < 0 ? -errno : 0;
	if (sig == SIGKILL)
		return write_at(p->cgroup, "cgroup.kill", "1");
	int fd = openat(p->cgroup, "cgroup.procs", O_RDONLY | O_CLOEXEC);
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

int runner_freeze(const struct runner_proc *p, bool frozen)
{
	if (p->cgroup < 0)
		return kill(-p->pid, frozen ? SIGSTOP : SIGCONT) < 0 ? -errno : 0;
	return write_at(p->cgroup, "cgroup.freeze", frozen ? "1" : "0");
}

int runner_reap(const struct runner_proc *p, int *wstatus)
{
	pid_t r = waitpid(p->pid, wstatus, WNOHANG);
	return r == p->pid ? 1 : 0;
}

/* usage_usec of the cgroup's cpu.stat; -1 when it cannot be read */
static int64_t cgroup_cpu_us(int cgroup)
{
	int fd = openat(cgroup, "cpu.stat", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	char text[512];
	ssize_t n = read(fd, text, sizeof text - 1);
	close(fd);
	if (n <= 0)
		return -1;
	text[n] = '\0';
	int64_t us = -1;
	const char *at = strstr(text, "usage_usec ");
	if (at)
		sscanf(at, "usage_usec %" SCNd64, &us);
	return us;
}

void runner_retire(struct runner *r, int id)
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

int64_t runner_end(struct runner *r, struct runner_proc *p)
{
	int64_t cpu_us = -1;
	if (p->cgroup >= 0) {
		cpu_us = cgroup_cpu_us(p->cgroup);
		close(p->cgroup);
		p->cgroup = -1;
		/* what it left running goes with it, as a container's does,
		 * then its cgroup: by the prep thread, off the scheduler's way */
		runner_retire(r, p->id);
	}
	if (p->pidfd >= 0)
		close(p->pidfd);
	if (p->stdin_fd >= 0)
		close(p->stdin_fd);
	p->pidfd = p->stdin_fd = -1;
	return cpu_us;
}
