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

/* The child runs on a stack of its own until it execs: a few system calls. */
#define SPAWN_STACK (64 * 1024)

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

int runner_init(struct runner *r, enum runner_isolation want, const char *state_key,
		struct orch_err *err)
{
	*r = (struct runner){.cgroup_dir = -1};
	if (want == ISOLATION_PGROUP)
		return 0;
	char mnt[2048], own[2048], path[sizeof mnt + sizeof own + 64];
	const char *why = NULL;
	if (!cgroup2_mount(mnt, sizeof mnt))
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
	if (why) {
		if (dir >= 0)
			close(dir);
		if (want == ISOLATION_CGROUP)
			return err_set(err, EOPNOTSUPP, "--isolation cgroup: %s", why);
		return 0;
	}
	cgroup_sweep(dir);
	r->cgroup_dir = dir;
	r->cgroup_path = xstrdup(path);
	return 0;
}

static void leftovers_tidy(struct runner *r, int wait_ms)
{
	if (!r->nleftover)
		return;
	size_t keep = 0;
	for (size_t i = 0; i < r->nleftover; i++) {
		char name[32];
		snprintf(name, sizeof name, "w%d", r->leftover[i]);
		if (!cgroup_remove(r->cgroup_dir, name, wait_ms))
			r->leftover[keep++] = r->leftover[i];
	}
	r->nleftover = keep;
}

void runner_fini(struct runner *r)
{
	if (r->cgroup_dir >= 0) {
		leftovers_tidy(r, 1000);
		cgroup_sweep(r->cgroup_dir);
		close(r->cgroup_dir);
		rmdir(r->cgroup_path);   /* if it will not go, the next start sweeps it */
	}
	free(r->cgroup_path);
	free(r->leftover);
	*r = (struct runner){.cgroup_dir = -1};
}

void runner_tidy(struct runner *r)
{
	leftovers_tidy(r, 0);
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
		 char *const envp[], int logfd, struct runner_proc *out, struct orch_err *err)
{
	*out = (struct runner_proc){.id = id, .pid = -1, .pidfd = -1, .stdin_fd = -1, .cgroup = -1};
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		close(logfd);
		return err_set(err, EIO, "pipe: %s", strerror(errno));
	}
	struct spawn_args a = {command, cwd, envp, pipefd[0], logfd, -1, 0, NULL};
	int cgroup = -1;
	if (r && r->cgroup_dir >= 0) {
		char name[32];
		snprintf(name, sizeof name, "w%d", id);
		if (mkdirat(r->cgroup_dir, name, 0755) == 0 || errno == EEXIST)
			cgroup = openat(r->cgroup_dir, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		a.procs_fd = cgroup >= 0 ? openat(cgroup, "cgroup.procs", O_WRONLY | O_CLOEXEC) : -1;
		if (a.procs_fd < 0) {
			int e = errno;
			if (cgroup >= 0)
				close(cgroup);
			close(logfd);
			close(pipefd[0]);
			close(pipefd[1]);
			return err_set(err, EIO, "cannot make the cgroup of worker %d in %s: %s", id,
				       r->cgroup_path, strerror(e));
		}
	}
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
	close(logfd);
	close(pipefd[0]);
	if (a.procs_fd >= 0)
		close(a.procs_fd);
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
			char name[32];
			snprintf(name, sizeof name, "w%d", id);
			unlinkat(r->cgroup_dir, name, AT_REMOVEDIR);
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

int64_t runner_end(struct runner *r, struct runner_proc *p)
{
	int64_t cpu_us = -1;
	if (p->cgroup >= 0) {
		cpu_us = cgroup_cpu_us(p->cgroup);
		/* what it left running goes with it, as a container's does */
		(void)write_at(p->cgroup, "cgroup.kill", "1");
		close(p->cgroup);
		p->cgroup = -1;
		ARRAY_GROW(r->leftover, r->leftover_cap, r->nleftover + 1);
		r->leftover[r->nleftover++] = p->id;
		leftovers_tidy(r, 0);
	}
	if (p->pidfd >= 0)
		close(p->pidfd);
	if (p->stdin_fd >= 0)
		close(p->stdin_fd);
	p->pidfd = p->stdin_fd = -1;
	return cpu_us;
}
